//! Write a phantom device process in Rust: a [`phantom_sdk::Process`] that
//! also implements [`DeviceProcess`], and the typed device interfaces of
//! `wit/phantom-devices.wit` ([`gpio`], [`i2c`], [`serial`], [`display`],
//! [`spi`], [`sensor`]), granted per process by its manifest.
//!
//! ```text
//!   your type: impl Process + DeviceProcess      state in linear memory, so
//!        │                                      checkpoints carry it
//!        ▼
//!   export_device_process!(YourType)   init, handle, handle-message,
//!        │                             handle-device-event exports
//!        ▼
//!   bindings (wit-bindgen)             phantom:devices, world device-process;
//!                                      its phantom:os interfaces are
//!                                      phantom-sdk's (`with`), so console,
//!                                      timers, messages, println! are the same
//! ```
//!
//! A crate of its own, not a feature of `phantom-sdk`: the device world
//! adds an export (`handle-device-event`), and a component only gets it if
//! it links this crate.
//!
//! ```ignore
//! use phantom_device_sdk::{DeviceEvent, DeviceProcess, gpio};
//! use phantom_sdk::{File, Process, println};
//!
//! struct Door { bell: gpio::Pin, rings: u64 }
//!
//! impl Process for Door {
//!     fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
//!         let bell = gpio::open("bell", gpio::PinMode::InputPullUp, gpio::Level::High)
//!             .map_err(|e| format!("bell: {e:?}"))?;
//!         gpio::watch(bell, Some(gpio::Edge::Falling)).map_err(|e| format!("{e:?}"))?;
//!         Ok(Door { bell, rings: 0 })
//!     }
//! }
//!
//! impl DeviceProcess for Door {
//!     fn on_device_event(&mut self, event: DeviceEvent) {
//!         if let DeviceEvent::GpioEdge(e) = event && e.pin == self.bell {
//!             self.rings += 1;
//!             println!("ring {}", self.rings);
//!         }
//!     }
//! }
//!
//! phantom_device_sdk::export_device_process!(Door);
//! ```
//!
//! After `kill -9` the host re-acquires every device the process holds
//! open and re-applies what it set (DESIGN.md, *Devices*): the pin numbers
//! a process keeps stay valid, and a device that is gone answers
//! `device-lost`.

/// Bindings generated from `wit/phantom-devices.wit` (world
/// `device-process`), sharing phantom-sdk's `phantom:os` bindings.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "phantom:devices/device-process",
        with: {
            "phantom:os/console@0.1.0": phantom_sdk::bindings::phantom::os::console,
            "phantom:os/clocks@0.1.0": phantom_sdk::bindings::phantom::os::clocks,
            "phantom:os/timers@0.1.0": phantom_sdk::bindings::phantom::os::timers,
            "phantom:os/process@0.1.0": phantom_sdk::bindings::phantom::os::process,
            "phantom:os/messages@0.1.0": phantom_sdk::bindings::phantom::os::messages,
            "phantom:os/types@0.1.0": phantom_sdk::bindings::phantom::os::types,
        },
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_device_process_bindings",
        default_bindings_module: "::phantom_device_sdk::bindings",
    });
}

pub use bindings::phantom::devices::{display, events, gpio, i2c, sensor, serial, spi};
pub use events::DeviceEvent;
/// The SDK this one extends (`Process`, console, timers, messages).
pub use phantom_sdk;

/// What a device process adds to [`phantom_sdk::Process`]: the events of
/// the devices it watches (a GPIO edge, serial bytes, a sensor sample).
pub trait DeviceProcess: phantom_sdk::Process {
    /// A device the process watches did something: `gpio::watch`,
    /// `serial::watch`, `sensor::set-rate`. Each event arrives once.
    fn on_device_event(&mut self, event: DeviceEvent) {
        let _ = event;
    }
}

/// Defines the component's `init`, `handle`, `handle-message` and
/// `handle-device-event` exports for a type that implements
/// [`phantom_sdk::Process`] and [`DeviceProcess`], keeping its value in a
/// global in linear memory. Use it once per guest crate, at the top level.
#[macro_export]
macro_rules! export_device_process {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                // One thread and no TLS on this target: a plain static in
                // linear memory, checkpointed with the rest.
                static STATE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct PhantomDeviceExports;

            impl $crate::bindings::Guest for PhantomDeviceExports {
                fn init(
                    args: ::std::vec::Vec<::std::string::String>,
                    files: ::std::vec::Vec<$crate::phantom_sdk::File>,
                ) -> ::core::result::Result<$crate::phantom_sdk::Status, ::std::string::String>
                {
                    $crate::phantom_sdk::__private::init::<$ty>(&STATE, args, files)
                }

                fn handle(event: $crate::phantom_sdk::Event) -> $crate::phantom_sdk::Status {
                    $crate::phantom_sdk::__private::handle::<$ty>(&STATE, event)
                }

                fn handle_message(
                    message: $crate::phantom_sdk::Message,
                ) -> $crate::phantom_sdk::Status {
                    $crate::phantom_sdk::__private::handle_message::<$ty>(&STATE, message)
                }

                fn handle_device_event(event: $crate::DeviceEvent) -> $crate::phantom_sdk::Status {
                    $crate::__private::handle_device_event::<$ty>(&STATE, event)
                }
            }

            $crate::bindings::export_device_process_bindings!(PhantomDeviceExports);
        };
    };
}

/// What [`export_device_process!`] expands to calls; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::{DeviceEvent, DeviceProcess};
    use phantom_sdk::__private::StateCell;
    use phantom_sdk::Status;

    pub fn handle_device_event<P: DeviceProcess>(
        state: &'static StateCell<P>,
        event: DeviceEvent,
    ) -> Status {
        state.with_borrow_mut(|slot| {
            // The host calls `init` before any event.
            let process = slot.as_mut().expect("device event delivered before init");
            process.on_device_event(event);
            process.status()
        })
    }
}
