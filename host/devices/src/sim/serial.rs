//! A simulated serial port: a loopback (what is written comes back to be
//! read), with a bounded buffer like a UART's, and a log of every operation.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::serial::{SerialFault, SerialPort};

/// Bytes the loopback holds before a write finds no room (a UART's FIFO
/// and driver buffer are a few KiB; small enough that tests reach it).
pub const LOOPBACK_BYTES: usize = 4096;

/// One operation that reached the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialOp {
    /// The port was opened at a rate.
    Open {
        /// Bits per second.
        baud: u32,
    },
    /// The rate was changed.
    SetBaud {
        /// Bits per second.
        baud: u32,
    },
    /// Bytes were written (those that fit).
    Write(Vec<u8>),
    /// Bytes were read (empty reads are not logged: the drive loop looks
    /// at watched ports every turn).
    Read(Vec<u8>),
}

struct PortState {
    buffer: VecDeque<u8>,
    baud: u32,
    log: Vec<SerialOp>,
    lost: bool,
}

/// A loopback port; clones share it.
#[derive(Clone)]
pub struct SimSerialPort {
    state: Arc<Mutex<PortState>>,
}

impl Default for SimSerialPort {
    fn default() -> Self {
        Self::new()
    }
}

impl SimSerialPort {
    /// An empty, unopened port.
    pub fn new() -> Self {
        SimSerialPort {
            state: Arc::new(Mutex::new(PortState {
                buffer: VecDeque::new(),
                baud: 0,
                log: Vec::new(),
                lost: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PortState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(s: &PortState) -> Result<(), SerialFault> {
        if s.lost {
            Err(SerialFault::Lost("the simulated port was unplugged".into()))
        } else {
            Ok(())
        }
    }

    /// Opens it at `baud`.
    pub fn open(&self, baud: u32) -> Result<(), SerialFault> {
        let mut s = self.lock();
        Self::check(&s)?;
        s.baud = baud;
        super::push_log(&mut s.log, SerialOp::Open { baud });
        Ok(())
    }

    /// Bytes arrive from the far end (tests), beyond the buffer's bound.
    pub fn receive(&self, bytes: &[u8]) {
        self.lock().buffer.extend(bytes);
    }

    /// Unplugs the port: every later operation fails as lost.
    pub fn unplug(&self) {
        self.lock().lost = true;
    }

    /// Its rate.
    pub fn baud(&self) -> u32 {
        self.lock().baud
    }

    /// Bytes waiting to be read.
    pub fn buffered(&self) -> usize {
        self.lock().buffer.len()
    }

    /// Every operation so far.
    pub fn log(&self) -> Vec<SerialOp> {
        self.lock().log.clone()
    }
}

impl SerialPort for SimSerialPort {
    fn set_baud(&mut self, baud: u32) -> Result<(), SerialFault> {
        let mut s = self.lock();
        Self::check(&s)?;
        s.baud = baud;
        super::push_log(&mut s.log, SerialOp::SetBaud { baud });
        Ok(())
    }

    fn read_ready(&mut self, buf: &mut [u8]) -> Result<usize, SerialFault> {
        let mut s = self.lock();
        Self::check(&s)?;
        let n = buf.len().min(s.buffer.len());
        for (slot, b) in buf.iter_mut().zip(s.buffer.drain(..n)) {
            *slot = b;
        }
        if n > 0 {
            let read = buf[..n].to_vec();
            super::push_log(&mut s.log, SerialOp::Read(read));
        }
        Ok(n)
    }

    fn write_ready(&mut self, data: &[u8]) -> Result<usize, SerialFault> {
        let mut s = self.lock();
        Self::check(&s)?;
        let n = data
            .len()
            .min(LOOPBACK_BYTES.saturating_sub(s.buffer.len()));
        s.buffer.extend(&data[..n]);
        if n > 0 {
            super::push_log(&mut s.log, SerialOp::Write(data[..n].to_vec()));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_comes_back_in_order_and_a_full_port_takes_nothing() {
        let mut p = SimSerialPort::new();
        p.open(9600).unwrap();
        assert_eq!(p.write_ready(b"hello ").unwrap(), 6);
        assert_eq!(p.write_ready(b"world").unwrap(), 5);
        let mut buf = [0u8; 8];
        assert_eq!(p.read_ready(&mut buf).unwrap(), 8);
        assert_eq!(&buf, b"hello wo");
        assert_eq!(p.read_ready(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"rld");
        assert_eq!(p.read_ready(&mut buf).unwrap(), 0, "nothing waits");
        // Bounded: the rest of a big write does not fit until read.
        let big = vec![7u8; LOOPBACK_BYTES + 10];
        assert_eq!(p.write_ready(&big).unwrap(), LOOPBACK_BYTES);
        assert_eq!(p.write_ready(b"x").unwrap(), 0);
        assert_eq!(p.read_ready(&mut buf).unwrap(), 8);
        assert_eq!(p.write_ready(&big[..10]).unwrap(), 8);
        p.set_baud(115200).unwrap();
        assert_eq!(p.baud(), 115200);
        assert_eq!(
            p.log()[..4],
            [
                SerialOp::Open { baud: 9600 },
                SerialOp::Write(b"hello ".to_vec()),
                SerialOp::Write(b"world".to_vec()),
                SerialOp::Read(b"hello wo".to_vec()),
            ]
        );
    }

    #[test]
    fn an_unplugged_port_is_lost_for_every_operation() {
        let mut p = SimSerialPort::new();
        p.open(9600).unwrap();
        p.unplug();
        let log = p.log();
        assert!(matches!(p.write_ready(b"x"), Err(SerialFault::Lost(_))));
        assert!(matches!(
            p.read_ready(&mut [0; 4]),
            Err(SerialFault::Lost(_))
        ));
        assert!(matches!(p.set_baud(1200), Err(SerialFault::Lost(_))));
        assert!(matches!(p.open(1200), Err(SerialFault::Lost(_))));
        assert_eq!(p.log(), log, "nothing reached it");
    }
}
