//! I2C buses as the host drives them: one type over the backends, behind
//! embedded-hal's `I2c`.
//!
//! ```text
//!   open_bus(BusRef, sim) ─► I2cBus (embedded-hal I2c, 7-bit addresses)
//!        ├─ sim:<kind>    ─► sim/i2c.rs SimI2cBus (sim:bme280: a BME280 at 0x76)
//!        └─ linux:<path>  ─► i2c_linux.rs LinuxI2cBus (i2c-dev through
//!                            linux-embedded-hal's I2cdev)
//! ```
//! The address policy is not here: the runtime checks the grant's
//! addresses before a transaction reaches `I2c::transaction`.

use std::sync::{Arc, Mutex};

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, Operation, SevenBitAddress};

use crate::i2c_linux::LinuxI2cBus;
use crate::manifest::{Backend, BusRef};
use crate::sim::{SimI2cBus, SimI2cError, SimWorld};

/// Why a transaction did not complete.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum I2cFault {
    /// The bus is gone, or cannot be opened (no such bus, no permission).
    #[error("the I2C bus is gone: {0}")]
    Lost(String),
    /// The bus or a device on it answered with an error.
    #[error("I2C error {0:?}")]
    Kind(ErrorKind),
}

impl embedded_hal::i2c::Error for I2cFault {
    fn kind(&self) -> ErrorKind {
        match self {
            I2cFault::Lost(_) => ErrorKind::Other,
            I2cFault::Kind(k) => *k,
        }
    }
}

impl From<SimI2cError> for I2cFault {
    fn from(e: SimI2cError) -> Self {
        match e {
            SimI2cError::Lost => I2cFault::Lost(e.to_string()),
            SimI2cError::Kind(k) => I2cFault::Kind(k),
        }
    }
}

/// An open bus of any backend; clones are the same bus.
#[derive(Clone)]
pub enum I2cBus {
    /// A simulated bus.
    Sim(SimI2cBus),
    /// A Linux i2c-dev bus.
    Linux(Arc<Mutex<LinuxI2cBus>>),
}

/// Opens `bus`: the simulated bus of its kind (made on first use), or the
/// Linux bus at its path.
pub fn open_bus(bus: &BusRef, sim: &mut SimWorld) -> Result<I2cBus, I2cFault> {
    match bus.backend {
        Backend::Sim => sim
            .bus(&bus.path)
            .map(I2cBus::Sim)
            .ok_or_else(|| I2cFault::Lost(format!("no simulated I2C bus `{bus}`"))),
        Backend::Linux => Ok(I2cBus::Linux(Arc::new(Mutex::new(LinuxI2cBus::open(
            &bus.path,
        )?)))),
    }
}

impl ErrorType for I2cBus {
    type Error = I2cFault;
}

impl I2c<SevenBitAddress> for I2cBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), I2cFault> {
        match self {
            I2cBus::Sim(b) => Ok(b.transaction(address, operations)?),
            I2cBus::Linux(b) => b
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .transaction(address, operations),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use embedded_hal::i2c::NoAcknowledgeSource;

    /// The simulated bus through `I2cBus`: the chip id, a missing address
    /// not acknowledged, an unplugged bus `Lost`.
    #[test]
    fn the_sim_bus_answers_through_i2c_bus() {
        let mut sim = SimWorld::new(Scenario::default());
        let mut bus = open_bus(&"sim:bme280".parse().unwrap(), &mut sim).unwrap();
        let mut id = [0u8];
        bus.write_read(0x76, &[0xd0], &mut id).unwrap();
        assert_eq!(id, [0x60]);
        assert_eq!(
            bus.write(0x77, &[0]),
            Err(I2cFault::Kind(ErrorKind::NoAcknowledge(
                NoAcknowledgeSource::Address
            )))
        );
        sim.bus("bme280").unwrap().unplug();
        assert!(matches!(bus.read(0x76, &mut id), Err(I2cFault::Lost(_))));
        // A bus that is not simulated is refused by the manifest already;
        // one made by hand is lost, named.
        let nothing = BusRef {
            backend: Backend::Sim,
            path: "nothing".into(),
        };
        assert!(matches!(
            open_bus(&nothing, &mut sim),
            Err(I2cFault::Lost(m)) if m.contains("sim:nothing")
        ));
    }

    /// A Linux bus that does not exist is `Lost`, naming the path and the
    /// OS error.
    #[test]
    fn a_missing_linux_bus_is_lost_naming_it() {
        let mut sim = SimWorld::new(Scenario::default());
        match open_bus(&"linux:/dev/phantom-no-such-i2c".parse().unwrap(), &mut sim) {
            Err(I2cFault::Lost(m)) => {
                assert!(m.contains("/dev/phantom-no-such-i2c"), "{m}");
                assert!(m.contains("No such file or directory"), "{m}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened"),
        }
        assert!(sim.buses().is_empty(), "no simulated bus was made");
    }
}
