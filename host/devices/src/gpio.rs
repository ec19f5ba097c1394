//! GPIO pins as the host drives them: one type over the backends, behind
//! embedded-hal's digital traits.
//!
//! ```text
//!   open_pin(PinRef, mode, level, sim, linux) ─► GpioPin (InputPin, OutputPin,
//!        │                                        StatefulOutputPin; configure)
//!        ├─ sim:<chip>/<line>   ─► sim/gpio.rs SimPin (a simulated bank)
//!        └─ linux:<chip>/<line> ─► gpio_linux.rs LinuxPin (the GPIO character
//!                                  device through gpiocdev; one request per
//!                                  line, shared through LinuxLines)
//! ```
//! A failure is `Lost` (the device is gone or cannot be opened: the guest
//! gets `device-lost`) or `Failed` (it is there and refused: `other`); both
//! carry a message naming the device and, for Linux, the OS error.

use std::sync::{Arc, Mutex, MutexGuard};

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin, StatefulOutputPin};

pub use crate::gpio_linux::LinuxLines;
use crate::gpio_linux::LinuxPin;
use crate::manifest::{Backend, PinMode, PinRef};
use crate::sim::{SimGpioError, SimPin, SimWorld};

/// Why a pin did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GpioFault {
    /// The pin's device is gone, or cannot be opened (no such chip or line,
    /// no permission, held by another program).
    #[error("the pin is gone: {0}")]
    Lost(String),
    /// The device is there and refused the operation.
    #[error("the pin failed: {0}")]
    Failed(String),
}

impl embedded_hal::digital::Error for GpioFault {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl From<SimGpioError> for GpioFault {
    fn from(e: SimGpioError) -> Self {
        match e {
            SimGpioError::Lost => GpioFault::Lost(e.to_string()),
            SimGpioError::NotOutput => GpioFault::Failed(e.to_string()),
        }
    }
}

/// An open pin of any backend; clones are the same pin.
#[derive(Clone)]
pub enum GpioPin {
    /// A pin of a simulated bank.
    Sim(SimPin),
    /// A line of a Linux GPIO chip.
    Linux(Arc<Mutex<LinuxPin>>),
}

fn lock(p: &Mutex<LinuxPin>) -> MutexGuard<'_, LinuxPin> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens `pin` in `mode`, an output driving `high` from the start. A
/// Linux line already requested by this host (another open number of the
/// same pin) is the same request, put in `mode`.
pub fn open_pin(
    pin: &PinRef,
    mode: PinMode,
    high: bool,
    sim: &mut SimWorld,
    linux: &mut LinuxLines,
) -> Result<GpioPin, GpioFault> {
    let mut p = match pin.backend {
        Backend::Sim => GpioPin::Sim(sim.bank(&pin.chip).pin(pin.line)),
        Backend::Linux => match linux.get(&pin.chip, pin.line) {
            Some(p) => GpioPin::Linux(p),
            None => {
                let p = Arc::new(Mutex::new(LinuxPin::open(&pin.chip, pin.line, mode, high)?));
                linux.insert(&pin.chip, pin.line, &p);
                // Requested in its mode and level: nothing left to apply.
                return Ok(GpioPin::Linux(p));
            }
        },
    };
    p.configure(mode, high)?;
    Ok(p)
}

impl GpioPin {
    /// Puts the pin in `mode`; an output then drives `high`.
    pub fn configure(&mut self, mode: PinMode, high: bool) -> Result<(), GpioFault> {
        match self {
            GpioPin::Sim(p) => {
                p.configure(mode)?;
                if mode.is_output() {
                    p.set_state(high.into())?;
                }
                Ok(())
            }
            // One reconfiguration: mode and level together, no glitch.
            GpioPin::Linux(p) => lock(p).configure(mode, high),
        }
    }
}

impl ErrorType for GpioPin {
    type Error = GpioFault;
}

impl OutputPin for GpioPin {
    fn set_low(&mut self) -> Result<(), GpioFault> {
        match self {
            GpioPin::Sim(p) => Ok(p.set_low()?),
            GpioPin::Linux(p) => lock(p).drive(false),
        }
    }
    fn set_high(&mut self) -> Result<(), GpioFault> {
        match self {
            GpioPin::Sim(p) => Ok(p.set_high()?),
            GpioPin::Linux(p) => lock(p).drive(true),
        }
    }
}

impl StatefulOutputPin for GpioPin {
    fn is_set_high(&mut self) -> Result<bool, GpioFault> {
        match self {
            GpioPin::Sim(p) => Ok(p.is_set_high()?),
            // The kernel reports an output's driven level.
            GpioPin::Linux(p) => lock(p).level(),
        }
    }
    fn is_set_low(&mut self) -> Result<bool, GpioFault> {
        self.is_set_high().map(|h| !h)
    }
}

impl InputPin for GpioPin {
    fn is_high(&mut self) -> Result<bool, GpioFault> {
        match self {
            GpioPin::Sim(p) => Ok(p.is_high()?),
            GpioPin::Linux(p) => lock(p).level(),
        }
    }
    fn is_low(&mut self) -> Result<bool, GpioFault> {
        self.is_high().map(|h| !h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// A simulated pin through `GpioPin`: the bank sees the mode, then the
    /// level, and an unplugged bank is `Lost`.
    #[test]
    fn a_sim_pin_is_configured_then_driven_and_lost_when_unplugged() {
        let mut sim = SimWorld::new(Scenario::default());
        let mut linux = LinuxLines::default();
        let pin: PinRef = "sim:0/17".parse().unwrap();
        let mut p = open_pin(&pin, PinMode::Output, true, &mut sim, &mut linux).unwrap();
        let bank = sim.bank("0");
        assert_eq!(
            bank.log(),
            vec![
                crate::sim::GpioOp::Configure {
                    line: 17,
                    mode: PinMode::Output
                },
                crate::sim::GpioOp::Drive {
                    line: 17,
                    high: true
                },
            ]
        );
        assert!(p.is_set_high().unwrap());
        p.set_low().unwrap();
        assert!(p.is_set_low().unwrap());
        p.configure(PinMode::InputPullUp, false).unwrap();
        assert!(p.is_high().unwrap(), "pull-up, nothing drives it");
        assert!(matches!(p.set_high(), Err(GpioFault::Failed(_))));
        bank.unplug();
        assert!(matches!(p.is_high(), Err(GpioFault::Lost(_))));
        assert!(matches!(
            open_pin(&pin, PinMode::Output, false, &mut sim, &mut linux),
            Err(GpioFault::Lost(_))
        ));
    }

    /// A Linux pin on a chip that does not exist is `Lost`, naming the
    /// chip and the OS error, in both spellings of the chip.
    #[test]
    fn a_linux_pin_on_a_missing_chip_is_lost_naming_it() {
        let mut sim = SimWorld::new(Scenario::default());
        let mut linux = LinuxLines::default();
        for (pin, path) in [
            (
                "linux:/dev/phantom-no-such-gpiochip/17",
                "/dev/phantom-no-such-gpiochip",
            ),
            (
                "linux:phantom-no-such-gpiochip/3",
                "/dev/phantom-no-such-gpiochip",
            ),
        ] {
            let pin: PinRef = pin.parse().unwrap();
            match open_pin(&pin, PinMode::Output, true, &mut sim, &mut linux) {
                Err(GpioFault::Lost(m)) => {
                    assert!(m.contains(path), "{m}");
                    assert!(m.contains("No such file or directory"), "{m}");
                    assert!(m.contains(&format!("line {}", pin.line)), "{m}");
                }
                Err(e) => panic!("{pin}: {e}"),
                Ok(_) => panic!("{pin}: opened"),
            }
        }
        assert!(sim.banks().is_empty(), "no simulated bank was made");
    }
}
