//! A simulated SPI device: one chip behind one chip select, the
//! embedded-hal `SpiDevice` trait, and a log of every operation that
//! reached it.
//!
//! Full duplex, byte by byte: each byte clocked out (MOSI) gives one byte
//! back (MISO) from the chip (`SimSpiChip`), and a transaction is one frame
//! (the chip select low from its first byte to its last). A chip clocked
//! in a mode or at a rate it does not follow sees noise: it ignores the
//! frame and its MISO floats high (0xff), as a mis-wired real one would.

use std::sync::{Arc, Mutex, MutexGuard};

use embedded_hal::spi::{ErrorKind, ErrorType, Operation, SpiDevice};

use crate::spi::{SpiConfig, SpiFault, SpiOperation, SpiPort, run_operations};

/// What MISO reads when the chip does not drive it.
pub const MISO_IDLE: u8 = 0xff;

/// A chip on a simulated SPI device.
pub trait SimSpiChip: Send {
    /// The chip select went low: a frame begins.
    fn select(&mut self);
    /// One byte: `mosi` clocked in at process time `now_ns`; returns MISO.
    fn exchange(&mut self, mosi: u8, now_ns: u64) -> u8;
    /// Whether the chip follows this mode and clock.
    fn follows(&self, config: &SpiConfig) -> bool;
}

/// One operation that reached the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpiOp {
    /// The controller set the mode and clock.
    Configure(SpiConfig),
    /// One transaction: every byte out, and every byte back.
    Frame {
        /// MOSI, in order.
        mosi: Vec<u8>,
        /// MISO, in order.
        miso: Vec<u8>,
    },
}

/// Why a simulated SPI operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimSpiError {
    /// The device was unplugged.
    #[error("the SPI device is gone")]
    Lost,
}

impl embedded_hal::spi::Error for SimSpiError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

struct SpiState {
    chip: Box<dyn SimSpiChip>,
    config: Option<SpiConfig>,
    log: Vec<SpiOp>,
    lost: bool,
    now_ns: u64,
}

/// A device; clones share it.
#[derive(Clone)]
pub struct SimSpiDevice {
    state: Arc<Mutex<SpiState>>,
}

impl SimSpiDevice {
    /// `chip` behind a chip select, not yet configured (a frame before
    /// the first `configure` is noise).
    pub fn new(chip: Box<dyn SimSpiChip>) -> Self {
        SimSpiDevice {
            state: Arc::new(Mutex::new(SpiState {
                chip,
                config: None,
                log: Vec::new(),
                lost: false,
                now_ns: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SpiState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the device's time (the chip measures at it).
    pub fn set_time(&self, now_ns: u64) {
        self.lock().now_ns = now_ns;
    }

    /// Unplugs the device: every later operation fails as lost.
    pub fn unplug(&self) {
        self.lock().lost = true;
    }

    /// Every operation so far.
    pub fn log(&self) -> Vec<SpiOp> {
        self.lock().log.clone()
    }

    /// The mode and clock last set.
    pub fn config(&self) -> Option<SpiConfig> {
        self.lock().config
    }
}

impl ErrorType for SimSpiDevice {
    type Error = SimSpiError;
}

impl SpiDevice<u8> for SimSpiDevice {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), SimSpiError> {
        let mut guard = self.lock();
        let s = &mut *guard;
        if s.lost {
            return Err(SimSpiError::Lost);
        }
        let now = s.now_ns;
        let heard = s.config.is_some_and(|c| s.chip.follows(&c));
        if heard {
            s.chip.select();
        }
        let (mut mosi, mut miso) = (Vec::new(), Vec::new());
        let mut clock = |out: u8| -> u8 {
            let back = if heard {
                s.chip.exchange(out, now)
            } else {
                MISO_IDLE
            };
            mosi.push(out);
            miso.push(back);
            back
        };
        for op in operations.iter_mut() {
            match op {
                Operation::Read(buf) => {
                    for b in buf.iter_mut() {
                        *b = clock(0);
                    }
                }
                Operation::Write(bytes) => {
                    for &b in bytes.iter() {
                        clock(b);
                    }
                }
                // As long as the longer of the two; zeroes are sent past
                // the end of `write`, bytes past the end of `read` dropped.
                Operation::Transfer(read, write) => {
                    for k in 0..read.len().max(write.len()) {
                        let back = clock(write.get(k).copied().unwrap_or(0));
                        if let Some(r) = read.get_mut(k) {
                            *r = back;
                        }
                    }
                }
                Operation::TransferInPlace(buf) => {
                    for b in buf.iter_mut() {
                        *b = clock(*b);
                    }
                }
                Operation::DelayNs(_) => {}
            }
        }
        super::push_log(&mut s.log, SpiOp::Frame { mosi, miso });
        Ok(())
    }
}

impl SpiPort for SimSpiDevice {
    fn configure(&mut self, config: &SpiConfig) -> Result<(), SpiFault> {
        let mut s = self.lock();
        if s.lost {
            return Err(SpiFault::Lost(
                "the simulated SPI device is unplugged".into(),
            ));
        }
        s.config = Some(*config);
        super::push_log(&mut s.log, SpiOp::Configure(*config));
        Ok(())
    }

    fn run(&mut self, operations: &[SpiOperation]) -> Result<Vec<u8>, SpiFault> {
        run_operations(self, operations).map_err(|SimSpiError::Lost| {
            SpiFault::Lost("the simulated SPI device is unplugged".into())
        })
    }
}
