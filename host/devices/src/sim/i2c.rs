//! A simulated I2C bus: devices at 7-bit addresses, the embedded-hal `I2c`
//! trait, and a log of every operation that reached the bus.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

/// A device on a simulated bus.
pub trait SimI2cDevice: Send {
    /// The controller wrote `bytes` to the device at process time `now_ns`.
    fn write(&mut self, bytes: &[u8], now_ns: u64) -> Result<(), ErrorKind>;
    /// The controller reads `buf.len()` bytes.
    fn read(&mut self, buf: &mut [u8], now_ns: u64) -> Result<(), ErrorKind>;
}

/// One operation that reached the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum I2cOp {
    /// Bytes written to an address.
    Write {
        /// The address.
        address: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Bytes read from an address.
    Read {
        /// The address.
        address: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// Why a simulated bus operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimI2cError {
    /// The bus was unplugged.
    #[error("the I2C bus is gone")]
    Lost,
    /// An embedded-hal error.
    #[error("I2C error: {0:?}")]
    Kind(ErrorKind),
}

impl embedded_hal::i2c::Error for SimI2cError {
    fn kind(&self) -> ErrorKind {
        match self {
            SimI2cError::Lost => ErrorKind::Other,
            SimI2cError::Kind(k) => *k,
        }
    }
}

struct BusState {
    devices: BTreeMap<u8, Box<dyn SimI2cDevice>>,
    log: Vec<I2cOp>,
    lost: bool,
    now_ns: u64,
}

/// A bus; clones share it.
#[derive(Clone)]
pub struct SimI2cBus {
    state: Arc<Mutex<BusState>>,
}

impl Default for SimI2cBus {
    fn default() -> Self {
        Self::new()
    }
}

impl SimI2cBus {
    /// An empty bus.
    pub fn new() -> Self {
        SimI2cBus {
            state: Arc::new(Mutex::new(BusState {
                devices: BTreeMap::new(),
                log: Vec::new(),
                lost: false,
                now_ns: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BusState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `device` at `address`.
    pub fn attach(&self, address: u8, device: Box<dyn SimI2cDevice>) {
        self.lock().devices.insert(address, device);
    }

    /// Sets the bus's time (devices measure at it).
    pub fn set_time(&self, now_ns: u64) {
        self.lock().now_ns = now_ns;
    }

    /// Unplugs the bus: every later operation fails as lost.
    pub fn unplug(&self) {
        self.lock().lost = true;
    }

    /// Every operation so far.
    pub fn log(&self) -> Vec<I2cOp> {
        self.lock().log.clone()
    }
}

impl ErrorType for SimI2cBus {
    type Error = SimI2cError;
}

impl I2c<SevenBitAddress> for SimI2cBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), SimI2cError> {
        let mut guard = self.lock();
        let s = &mut *guard;
        if s.lost {
            return Err(SimI2cError::Lost);
        }
        let now = s.now_ns;
        let Some(dev) = s.devices.get_mut(&address) else {
            return Err(SimI2cError::Kind(ErrorKind::NoAcknowledge(
                NoAcknowledgeSource::Address,
            )));
        };
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    super::push_log(
                        &mut s.log,
                        I2cOp::Write {
                            address,
                            bytes: bytes.to_vec(),
                        },
                    );
                    dev.write(bytes, now).map_err(SimI2cError::Kind)?;
                }
                Operation::Read(buf) => {
                    dev.read(buf, now).map_err(SimI2cError::Kind)?;
                    super::push_log(
                        &mut s.log,
                        I2cOp::Read {
                            address,
                            bytes: buf.to_vec(),
                        },
                    );
                }
            }
        }
        Ok(())
    }
}
