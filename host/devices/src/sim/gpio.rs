//! A simulated GPIO bank: pins with modes, driven levels, inputs from the
//! scenario or set by a test, and a log of every operation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin, StatefulOutputPin};

use crate::manifest::PinMode;
use crate::scenario::Scenario;

/// One operation that reached the bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpioOp {
    /// A pin was put in a mode.
    Configure {
        /// The line.
        line: u32,
        /// The mode.
        mode: PinMode,
    },
    /// An output was driven.
    Drive {
        /// The line.
        line: u32,
        /// High or low.
        high: bool,
    },
    /// A pin was read.
    Read {
        /// The line.
        line: u32,
        /// What it read.
        high: bool,
    },
}

/// Why a simulated pin operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimGpioError {
    /// The bank was unplugged.
    #[error("the GPIO bank is gone")]
    Lost,
    /// Driving a pin that is not an output.
    #[error("the pin is not an output")]
    NotOutput,
}

impl embedded_hal::digital::Error for SimGpioError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// One pin's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimPinState {
    /// Its mode (None: never configured).
    pub mode: Option<PinMode>,
    /// The level it drives (outputs).
    pub driven: bool,
    /// The level set from outside (inputs), if any.
    pub input: Option<bool>,
}

struct BankState {
    pins: BTreeMap<u32, SimPinState>,
    log: Vec<GpioOp>,
    lost: bool,
    now_ns: u64,
}

/// A bank of pins; clones share it.
#[derive(Clone)]
pub struct SimGpioBank {
    chip: String,
    scenario: Arc<Scenario>,
    state: Arc<Mutex<BankState>>,
}

impl SimGpioBank {
    /// A bank called `chip`, its inputs scripted by `scenario`.
    pub fn new(chip: &str, scenario: Arc<Scenario>) -> Self {
        SimGpioBank {
            chip: chip.to_string(),
            scenario,
            state: Arc::new(Mutex::new(BankState {
                pins: BTreeMap::new(),
                log: Vec::new(),
                lost: false,
                now_ns: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BankState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pin `line` of the bank (a handle: nothing happens until it is used).
    pub fn pin(&self, line: u32) -> SimPin {
        SimPin {
            bank: self.clone(),
            line,
        }
    }

    /// Sets the bank's time (the scenario's inputs follow it).
    pub fn set_time(&self, now_ns: u64) {
        self.lock().now_ns = now_ns;
    }

    /// Sets input `line` from outside (a test pressing a button).
    pub fn set_input(&self, line: u32, high: bool) {
        self.lock().pins.entry(line).or_default().input = Some(high);
    }

    /// Unplugs the bank: every later operation fails as lost.
    pub fn unplug(&self) {
        self.lock().lost = true;
    }

    /// Every operation so far.
    pub fn log(&self) -> Vec<GpioOp> {
        self.lock().log.clone()
    }

    /// The pins touched so far.
    pub fn pins(&self) -> BTreeMap<u32, SimPinState> {
        self.lock().pins.clone()
    }

    fn level_of(&self, s: &BankState, line: u32) -> bool {
        let pin = s.pins.get(&line).copied().unwrap_or_default();
        match pin.mode {
            Some(m) if m.is_output() => pin.driven,
            mode => pin
                .input
                .or_else(|| self.scenario.input_at(&self.chip, line, s.now_ns))
                .unwrap_or(mode == Some(PinMode::InputPullUp)),
        }
    }
}

/// One pin of a bank, behind the embedded-hal digital traits.
#[derive(Clone)]
pub struct SimPin {
    bank: SimGpioBank,
    line: u32,
}

impl SimPin {
    /// Puts the pin in `mode`.
    pub fn configure(&mut self, mode: PinMode) -> Result<(), SimGpioError> {
        let mut s = self.bank.lock();
        if s.lost {
            return Err(SimGpioError::Lost);
        }
        s.pins.entry(self.line).or_default().mode = Some(mode);
        super::push_log(
            &mut s.log,
            GpioOp::Configure {
                line: self.line,
                mode,
            },
        );
        Ok(())
    }

    fn drive(&mut self, high: bool) -> Result<(), SimGpioError> {
        let mut s = self.bank.lock();
        if s.lost {
            return Err(SimGpioError::Lost);
        }
        let pin = s.pins.entry(self.line).or_default();
        if !pin.mode.is_some_and(PinMode::is_output) {
            return Err(SimGpioError::NotOutput);
        }
        pin.driven = high;
        super::push_log(
            &mut s.log,
            GpioOp::Drive {
                line: self.line,
                high,
            },
        );
        Ok(())
    }

    fn read(&mut self) -> Result<bool, SimGpioError> {
        let mut s = self.bank.lock();
        if s.lost {
            return Err(SimGpioError::Lost);
        }
        let high = self.bank.level_of(&s, self.line);
        super::push_log(
            &mut s.log,
            GpioOp::Read {
                line: self.line,
                high,
            },
        );
        Ok(high)
    }
}

impl ErrorType for SimPin {
    type Error = SimGpioError;
}

impl OutputPin for SimPin {
    fn set_low(&mut self) -> Result<(), SimGpioError> {
        self.drive(false)
    }
    fn set_high(&mut self) -> Result<(), SimGpioError> {
        self.drive(true)
    }
}

impl StatefulOutputPin for SimPin {
    fn is_set_high(&mut self) -> Result<bool, SimGpioError> {
        let s = self.bank.lock();
        if s.lost {
            return Err(SimGpioError::Lost);
        }
        Ok(s.pins.get(&self.line).is_some_and(|p| p.driven))
    }
    fn is_set_low(&mut self) -> Result<bool, SimGpioError> {
        self.is_set_high().map(|h| !h)
    }
}

impl InputPin for SimPin {
    fn is_high(&mut self) -> Result<bool, SimGpioError> {
        self.read()
    }
    fn is_low(&mut self) -> Result<bool, SimGpioError> {
        self.read().map(|h| !h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Toggles any embedded-hal output: the bank sees exactly these writes.
    fn blink<P: OutputPin>(p: &mut P, n: usize) -> Result<(), P::Error> {
        for k in 0..n {
            p.set_state((k % 2 == 0).into())?;
        }
        Ok(())
    }

    #[test]
    fn outputs_inputs_and_the_log() {
        let s = Scenario::parse("gpio = [{ at_s = 1, pin = \"0/4\", level = \"high\" }]").unwrap();
        let bank = SimGpioBank::new("0", Arc::new(s));
        let mut relay = bank.pin(17);
        assert_eq!(relay.set_high(), Err(SimGpioError::NotOutput));
        relay.configure(PinMode::Output).unwrap();
        blink(&mut relay, 3).unwrap();
        assert!(relay.is_set_high().unwrap());
        let mut button = bank.pin(4);
        button.configure(PinMode::Input).unwrap();
        assert!(!button.is_high().unwrap());
        bank.set_time(1_000_000_000);
        assert!(button.is_high().unwrap());
        bank.set_input(4, false);
        assert!(button.is_low().unwrap());
        assert_eq!(
            bank.log(),
            vec![
                GpioOp::Configure {
                    line: 17,
                    mode: PinMode::Output
                },
                GpioOp::Drive {
                    line: 17,
                    high: true
                },
                GpioOp::Drive {
                    line: 17,
                    high: false
                },
                GpioOp::Drive {
                    line: 17,
                    high: true
                },
                GpioOp::Configure {
                    line: 4,
                    mode: PinMode::Input
                },
                GpioOp::Read {
                    line: 4,
                    high: false
                },
                GpioOp::Read {
                    line: 4,
                    high: true
                },
                GpioOp::Read {
                    line: 4,
                    high: false
                },
            ]
        );
        let mut pull = bank.pin(5);
        pull.configure(PinMode::InputPullUp).unwrap();
        assert!(pull.is_high().unwrap());
        bank.unplug();
        assert_eq!(relay.set_low(), Err(SimGpioError::Lost));
        assert!(bank.pins()[&17].driven);
    }

    /// The same driver code runs against embedded-hal-mock's pin.
    #[test]
    fn blink_against_the_mock() {
        use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};
        let mut pin = Mock::new(&[T::set(State::High), T::set(State::Low), T::set(State::High)]);
        blink(&mut pin, 3).unwrap();
        pin.done();
    }
}
