//! Write a phantom persistent process as a Rust type.
//!
//! ```text
//!   your type: impl Process          state lives in a global in linear memory,
//!        │                           so the host's checkpoints carry it
//!        ▼
//!   export_process!(YourType)        defines the `init`/`handle` exports
//!        │
//!        ▼
//!   bindings (wit-bindgen)           phantom:os@0.1.0, world messaging-process
//!        ▲
//!        │
//!   console / clocks / timers /      thin wrappers over the imports;
//!   process, println!, print!        nothing kept across calls
//! ```
//!
//! A process is written like a sketch: a constructor and a few event
//! handlers, every one optional but `init`.
//!
//! ```ignore
//! use phantom_sdk::{Process, File, println, timers};
//!
//! struct Hello;
//!
//! impl Process for Hello {
//!     fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
//!         Ok(Hello)
//!     }
//!     fn on_line(&mut self, line: String) {
//!         println!("hello, {line}");
//!     }
//! }
//!
//! phantom_sdk::export_process!(Hello);
//! ```
//!
//! There is no persistence code: the host checkpoints the whole linear
//! memory between calls and restores it after a restart, so plain Rust
//! values (globals, `Vec`, `BTreeMap`, ...) simply survive. `init` runs once,
//! when the process is created, never on restore.

pub mod args;
pub mod clocks;
pub mod console;
pub mod messages;
pub mod process;
pub mod timers;

/// Bindings generated from `wit/phantom-os.wit`; the wrappers in this crate
/// cover all of it, so a guest rarely needs these directly.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "phantom:os/messaging-process",
        pub_export_macro: true,
        export_macro_name: "export_persistent_process",
        default_bindings_module: "::phantom_sdk::bindings",
    });
}

pub use bindings::phantom::os::messages::{Message, SendError};
pub use bindings::phantom::os::timers::{TimerError, TimerId};
pub use bindings::{Event, File, Status};

/// A persistent process: its state is `Self`, created by [`Process::init`]
/// and handed every event after that.
///
/// Every handler has a no-op default. After `init` and after every event
/// the host is told [`Process::status`], which is [`Status::Idle`] unless
/// overridden: return [`Status::Busy`] to be called again with
/// [`Process::on_resume`] (one time slice of long work, with checkpoints
/// possible in between), or [`Status::Exit`] to finish.
pub trait Process: Sized + 'static {
    /// Creates the process from its arguments and files. Runs once, when the
    /// process is spawned; never on restore. An error fails the spawn with
    /// that message.
    fn init(args: Vec<String>, files: Vec<File>) -> Result<Self, String>;

    /// A timer set with [`timers::one_shot`] or [`timers::periodic`] fired.
    fn on_timer(&mut self, id: TimerId) {
        let _ = id;
    }

    /// A line of console input arrived, without its line terminator.
    fn on_line(&mut self, line: String) {
        let _ = line;
    }

    /// Console input has ended.
    fn on_console_closed(&mut self) {}

    /// A message arrived from another process ([`messages::send`]) or from
    /// outside (`phantom send`). Each arrives exactly once.
    fn on_message(&mut self, message: Message) {
        let _ = message;
    }

    /// The previous call reported [`Status::Busy`]: do the next slice of
    /// work.
    fn on_resume(&mut self) {}

    /// What the process wants next; asked after `init` and after every event.
    fn status(&self) -> Status {
        Status::Idle
    }
}

/// Defines the component's `init` and `handle` exports for a type that
/// implements [`Process`], keeping its value in a global in linear memory.
///
/// Use it once per guest crate, at the top level.
#[macro_export]
macro_rules! export_process {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                // wasm32-unknown-unknown has one thread and no TLS: this is a
                // plain static in linear memory, checkpointed with the rest.
                static STATE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct PhantomExports;

            impl $crate::bindings::Guest for PhantomExports {
                fn init(
                    args: ::std::vec::Vec<::std::string::String>,
                    files: ::std::vec::Vec<$crate::File>,
                ) -> ::core::result::Result<$crate::Status, ::std::string::String> {
                    $crate::__private::init::<$ty>(&STATE, args, files)
                }

                fn handle(event: $crate::Event) -> $crate::Status {
                    $crate::__private::handle::<$ty>(&STATE, event)
                }

                fn handle_message(message: $crate::Message) -> $crate::Status {
                    $crate::__private::handle_message::<$ty>(&STATE, message)
                }
            }

            $crate::bindings::export_persistent_process!(PhantomExports);
        };
    };
}

/// Prints to the process's console, like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::write_str(&::std::format!($($arg)*))
    };
}

/// Prints a line to the process's console, like `std::println!`.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_str("\n")
    };
    ($($arg:tt)*) => {{
        let mut line = ::std::format!($($arg)*);
        line.push('\n');
        $crate::console::write_str(&line)
    }};
}

/// What [`export_process!`] expands to calls; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::{Event, File, Message, Process, Status};
    use std::cell::RefCell;
    use std::thread::LocalKey;

    /// Where `export_process!` keeps the process's value.
    pub type StateCell<P> = LocalKey<RefCell<Option<P>>>;

    pub fn init<P: Process>(
        state: &'static StateCell<P>,
        args: Vec<String>,
        files: Vec<File>,
    ) -> Result<Status, String> {
        crate::console::install_panic_hook();
        state.with_borrow_mut(|slot| {
            if slot.is_some() {
                return Err("init called twice".to_string());
            }
            let process = P::init(args, files)?;
            let status = process.status();
            *slot = Some(process);
            Ok(status)
        })
    }

    pub fn handle<P: Process>(state: &'static StateCell<P>, event: Event) -> Status {
        state.with_borrow_mut(|slot| {
            // The host calls `init` before any event; an event without it
            // is a host bug, and a trap is the honest answer.
            let process = slot.as_mut().expect("event delivered before init");
            match event {
                Event::Timer(id) => process.on_timer(id),
                Event::ConsoleLine(line) => process.on_line(line),
                Event::ConsoleClosed => process.on_console_closed(),
                Event::Resume => process.on_resume(),
            }
            process.status()
        })
    }

    pub fn handle_message<P: Process>(state: &'static StateCell<P>, message: Message) -> Status {
        state.with_borrow_mut(|slot| {
            let process = slot.as_mut().expect("message delivered before init");
            process.on_message(message);
            process.status()
        })
    }
}
