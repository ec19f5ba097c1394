//! `phantom:devices/gpio`: pins opened by logical name. The policy (grant,
//! modes) is checked before anything reaches a device; opening, reading and
//! changing a mode go through the gate (`device_op`); a level the guest sets
//! is host state at once and reaches the pin as an effect
//! (`DeviceEffect::GpioLevel`) when the call is durable.

use phantom_devices::{PinMode, PolicyError};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::{CODE_LOST, DeviceEffect, OpenDevice, OpenKind};
use crate::ctx::ProcessCtx;
use crate::exit::Output;

/// The interface's name in the linker.
const INTERFACE: &str = "phantom:devices/gpio@0.1.0";

/// `gpio.pin-mode`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum WitPinMode {
    /// Input.
    #[component(name = "input")]
    Input,
    /// Input, pull-up.
    #[component(name = "input-pull-up")]
    InputPullUp,
    /// Input, pull-down.
    #[component(name = "input-pull-down")]
    InputPullDown,
    /// Output.
    #[component(name = "output")]
    Output,
    /// Open-drain output.
    #[component(name = "output-open-drain")]
    OutputOpenDrain,
}

impl From<WitPinMode> for PinMode {
    fn from(m: WitPinMode) -> PinMode {
        match m {
            WitPinMode::Input => PinMode::Input,
            WitPinMode::InputPullUp => PinMode::InputPullUp,
            WitPinMode::InputPullDown => PinMode::InputPullDown,
            WitPinMode::Output => PinMode::Output,
            WitPinMode::OutputOpenDrain => PinMode::OutputOpenDrain,
        }
    }
}

/// `gpio.level`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum WitLevel {
    /// Low.
    #[component(name = "low")]
    Low,
    /// High.
    #[component(name = "high")]
    High,
}

/// `gpio.edge`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum WitEdge {
    /// Rising.
    #[component(name = "rising")]
    Rising,
    /// Falling.
    #[component(name = "falling")]
    Falling,
    /// Both.
    #[component(name = "both")]
    Both,
}

/// `events.gpio-edge`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(record)]
pub struct WitGpioEdge {
    /// The pin.
    pub pin: u32,
    /// Its level after the edge.
    pub level: WitLevel,
    /// Process time of the edge.
    #[component(name = "time-ns")]
    pub time_ns: u64,
}

/// `events.device-event`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq)]
#[component(variant)]
pub enum WitDeviceEvent {
    /// A watched input changed level.
    #[component(name = "gpio-edge")]
    GpioEdge(WitGpioEdge),
    /// Bytes arrived on a watched serial port.
    #[component(name = "serial-data")]
    SerialData(super::serial::WitSerialData),
    /// A sampled sensor was measured.
    #[component(name = "sample-ready")]
    SampleReady(super::sensor::WitSensorSample),
}

/// `gpio.gpio-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum GpioError {
    /// No grant of that name.
    #[component(name = "not-granted")]
    NotGranted,
    /// Mode not allowed.
    #[component(name = "mode-not-allowed")]
    ModeNotAllowed,
    /// No such open pin.
    #[component(name = "not-open")]
    NotOpen,
    /// The device is gone.
    #[component(name = "device-lost")]
    DeviceLost,
    /// The device failed.
    #[component(name = "other")]
    Other,
}

fn policy(e: PolicyError) -> GpioError {
    match e {
        PolicyError::NotGranted => GpioError::NotGranted,
        PolicyError::ModeNotAllowed | PolicyError::AddressNotAllowed => GpioError::ModeNotAllowed,
    }
}

/// The WIT error of a journal code.
fn device(code: u8) -> GpioError {
    match code {
        CODE_LOST => GpioError::DeviceLost,
        _ => GpioError::Other,
    }
}

impl ProcessCtx {
    /// The open pin `handle`: its grant name, mode and level.
    fn pin(&self, handle: u32) -> Result<(String, PinMode, bool), GpioError> {
        match self.devices.find(handle) {
            Some(OpenDevice {
                name,
                kind: OpenKind::Gpio { mode, high, .. },
                ..
            }) => Ok((name.clone(), *mode, *high)),
            _ => Err(GpioError::NotOpen),
        }
    }

    /// `gpio.open`.
    pub fn gpio_open(&mut self, name: &str, mode: PinMode, high: bool) -> Result<u32, GpioError> {
        let pin = self
            .devices
            .manifest
            .gpio_open(name, mode)
            .map_err(policy)?
            .pin
            .clone();
        let handle = self.devices.next_handle().ok_or(GpioError::Other)?;
        self.device_op("a GPIO open", |d| match d.acquire_pin(&pin, mode, high) {
            Ok(a) => {
                d.acquired.insert(handle, a);
                Ok(Vec::new())
            }
            Err(why) => {
                d.warn(format!(
                    "gpio.open(`{name}`): {pin} cannot be opened ({why}): the guest gets `device-lost`"
                ));
                Err(CODE_LOST)
            }
        })
        .map_err(device)?;
        let d = &mut self.devices;
        d.state.last_handle = handle;
        d.state.open.push(OpenDevice {
            handle,
            name: name.to_string(),
            kind: OpenKind::Gpio {
                pin: pin.to_string(),
                mode,
                high: high && mode.is_output(),
                watch: None,
            },
        });
        Ok(handle)
    }

    /// `gpio.set-mode`.
    pub fn gpio_set_mode(&mut self, handle: u32, mode: PinMode) -> Result<(), GpioError> {
        let (name, _, high) = self.pin(handle)?;
        self.devices
            .manifest
            .gpio_open(&name, mode)
            .map_err(policy)?;
        self.device_op("a GPIO mode change", |d| match d.acquired(handle) {
            super::Acquired::Pin(mut p) => match p.configure(mode, high) {
                Ok(()) => Ok(Vec::new()),
                Err(f) => Err(d.pin_fault(handle, f)),
            },
            _ => Err(CODE_LOST),
        })
        .map_err(device)?;
        if let Some(OpenDevice {
            kind:
                OpenKind::Gpio {
                    mode: m,
                    high,
                    watch,
                    ..
                },
            ..
        }) = self.devices.find_mut(handle)
        {
            *m = mode;
            *high = *high && mode.is_output();
            if mode.is_output() {
                *watch = None;
            }
        }
        Ok(())
    }

    /// `gpio.set-level`: host state now, the pin when the call is durable.
    pub fn gpio_set_level(&mut self, handle: u32, high: bool) -> Result<(), GpioError> {
        let (_, mode, _) = self.pin(handle)?;
        if !mode.is_output() {
            return Err(GpioError::ModeNotAllowed);
        }
        self.device_op("a GPIO write", |d| d.present(handle))
            .map_err(device)?;
        if let Some(OpenDevice {
            kind: OpenKind::Gpio { high: h, .. },
            ..
        }) = self.devices.find_mut(handle)
        {
            *h = high;
        }
        self.exit(Output::Device(DeviceEffect::GpioLevel { handle, high }));
        Ok(())
    }

    /// `gpio.get-level`: an input is read through the gate; an output
    /// reads the level the process set.
    pub fn gpio_get_level(&mut self, handle: u32) -> Result<bool, GpioError> {
        let (_, mode, high) = self.pin(handle)?;
        if mode.is_output() {
            self.device_op("a GPIO output's level", |d| d.present(handle))
                .map_err(device)?;
            return Ok(high);
        }
        let r = self
            .device_op("a GPIO input's level", |d| match d.acquired(handle) {
                super::Acquired::Pin(mut p) => {
                    match embedded_hal::digital::InputPin::is_high(&mut p) {
                        Ok(h) => Ok(vec![u8::from(h)]),
                        Err(f) => Err(d.pin_fault(handle, f)),
                    }
                }
                _ => Err(CODE_LOST),
            })
            .map_err(device)?;
        Ok(r.first() == Some(&1))
    }

    /// `gpio.watch`: the drive loop looks at watched inputs every turn
    /// (`poll_device_events`); no device is touched in the call.
    pub fn gpio_watch(&mut self, handle: u32, edge: Option<WitEdge>) -> Result<(), GpioError> {
        let (_, mode, _) = self.pin(handle)?;
        let edge = match edge {
            None => None,
            Some(_) if mode.is_output() => return Err(GpioError::ModeNotAllowed),
            // Nowhere to deliver them.
            Some(_) if !self.takes_device_events => return Err(GpioError::Other),
            Some(WitEdge::Rising) => Some(super::WatchEdge::Rising),
            Some(WitEdge::Falling) => Some(super::WatchEdge::Falling),
            Some(WitEdge::Both) => Some(super::WatchEdge::Both),
        };
        if let Some(OpenDevice {
            kind: OpenKind::Gpio { watch, .. },
            ..
        }) = self.devices.find_mut(handle)
        {
            *watch = edge;
        }
        self.devices.baselines.remove(&handle);
        Ok(())
    }
}

/// Adds `phantom:devices/gpio` to the linker.
pub fn add_to_linker(linker: &mut Linker<ProcessCtx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    i.func_wrap(
        "open",
        |mut s: StoreContextMut<'_, ProcessCtx>,
         (name, mode, level): (String, WitPinMode, WitLevel)| {
            Ok((s
                .data_mut()
                .gpio_open(&name, mode.into(), level == WitLevel::High),))
        },
    )?;
    i.func_wrap(
        "set-mode",
        |mut s: StoreContextMut<'_, ProcessCtx>, (pin, mode): (u32, WitPinMode)| {
            Ok((s.data_mut().gpio_set_mode(pin, mode.into()),))
        },
    )?;
    i.func_wrap(
        "set-level",
        |mut s: StoreContextMut<'_, ProcessCtx>, (pin, level): (u32, WitLevel)| {
            Ok((s.data_mut().gpio_set_level(pin, level == WitLevel::High),))
        },
    )?;
    i.func_wrap(
        "get-level",
        |mut s: StoreContextMut<'_, ProcessCtx>, (pin,): (u32,)| {
            let r = s.data_mut().gpio_get_level(pin);
            Ok((r.map(|h| if h { WitLevel::High } else { WitLevel::Low }),))
        },
    )?;
    i.func_wrap(
        "watch",
        |mut s: StoreContextMut<'_, ProcessCtx>, (pin, edge): (u32, Option<WitEdge>)| {
            Ok((s.data_mut().gpio_watch(pin, edge),))
        },
    )?;
    i.func_wrap(
        "close",
        |mut s: StoreContextMut<'_, ProcessCtx>, (pin,): (u32,)| {
            Ok((s.data_mut().device_close(pin, true),))
        },
    )?;
    Ok(())
}
