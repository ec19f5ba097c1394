//! A Linux serial port (`linux:/dev/ttyUSB0`, or a pty slave `/dev/pts/N`).
//!
//! ```text
//!   LinuxSerialPort ─┬─ config: serialport::TTYPort  raw mode, 8N1, no flow
//!                    │          control, the rate; set-baud later (termios
//!                    │          belong to the tty, not to a descriptor)
//!                    └─ io: File (O_NONBLOCK)        the bytes: a read or write
//!                               that cannot go on now returns at once
//! ```
//! `serialport` waits with `poll` and then reads or writes a blocking
//! descriptor: a write bigger than the room left blocks until the far end
//! drains it, and the host must never wait on a device. Making its
//! descriptor non-blocking needs `unsafe` (it exposes only a raw fd), so the
//! bytes go through a second descriptor of the same tty, opened
//! non-blocking with safe `std` calls. Both are opened shared (no
//! `TIOCEXCL`): an exclusive tty stays exclusive while anyone holds it, and
//! a host restarted after `kill -9` must be able to open it again.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use crate::serial::{SerialFault, SerialPort};

/// An open Linux serial port.
pub struct LinuxSerialPort {
    path: String,
    config: serialport::TTYPort,
    io: File,
}

impl LinuxSerialPort {
    /// Opens the tty at `path` raw, 8N1, at `baud`.
    pub fn open(path: &str, baud: u32) -> Result<Self, SerialFault> {
        let config = serialport::new(path, baud)
            .exclusive(false)
            .open_native()
            .map_err(|e| SerialFault::Lost(format!("cannot open {path}: {e}")))?;
        let io = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| SerialFault::Lost(format!("cannot open {path}: {e}")))?;
        Ok(LinuxSerialPort {
            path: path.to_string(),
            config,
            io,
        })
    }

    fn lost(&self, e: std::io::Error) -> SerialFault {
        SerialFault::Lost(format!("{}: {e}", self.path))
    }
}

impl SerialPort for LinuxSerialPort {
    fn set_baud(&mut self, baud: u32) -> Result<(), SerialFault> {
        serialport::SerialPort::set_baud_rate(&mut self.config, baud)
            .map_err(|e| SerialFault::Failed(format!("{}: rate {baud}: {e}", self.path)))
    }

    fn output_pending(&mut self) -> usize {
        // TIOCOUTQ: what the driver still holds to send.
        serialport::SerialPort::bytes_to_write(&self.config).map_or(0, |n| n as usize)
    }

    fn read_ready(&mut self, buf: &mut [u8]) -> Result<usize, SerialFault> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            return match self.io.read(buf) {
                // A tty in raw mode reads 0 only once it is hung up.
                Ok(0) => Err(SerialFault::Lost(format!("{}: hung up", self.path))),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(self.lost(e)),
            };
        }
    }

    fn write_ready(&mut self, data: &[u8]) -> Result<usize, SerialFault> {
        if data.is_empty() {
            return Ok(0);
        }
        loop {
            return match self.io.write(data) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(self.lost(e)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pty pair: the master, and the slave's path (`/dev/pts/N`). The
    /// slave `serialport` opened for it is dropped: the host opens its own.
    fn pty() -> (serialport::TTYPort, String) {
        let (master, slave) = serialport::TTYPort::pair().unwrap();
        let name = serialport::SerialPort::name(&slave).unwrap();
        (master, name)
    }

    fn read_some(p: &mut LinuxSerialPort, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let start = std::time::Instant::now();
        while got.len() < want && start.elapsed().as_secs() < 5 {
            let mut buf = [0u8; 64];
            let n = p.read_ready(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        got
    }

    /// A pty slave is a serial port: bytes both ways, raw (no echo, no
    /// line editing), reads that never wait, and `Lost` once the master
    /// is closed.
    #[test]
    fn a_pty_pair_carries_bytes_both_ways_and_a_closed_master_is_lost() {
        let (mut master, slave) = pty();
        let mut port = LinuxSerialPort::open(&slave, 115_200).unwrap();
        assert_eq!(port.read_ready(&mut [0; 16]).unwrap(), 0, "nothing waits");
        master.write_all(b"hello\r\n\x03\x7f").unwrap();
        assert_eq!(
            read_some(&mut port, 9),
            b"hello\r\n\x03\x7f",
            "raw: no line discipline"
        );
        assert_eq!(port.write_ready(b"back\n").unwrap(), 5);
        let mut buf = [0u8; 5];
        master.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"back\n", "no output processing (\\n stays \\n)");
        port.set_baud(9600).unwrap();
        // A port nobody drains fills up; a write then takes what fits, never waits.
        let chunk = vec![b'x'; 4096];
        let mut total = 0;
        loop {
            let n = port.write_ready(&chunk).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            assert!(total < 64 << 20, "a pty's buffer is bounded");
        }
        drop(master);
        assert!(matches!(
            port.read_ready(&mut [0; 16]),
            Err(SerialFault::Lost(_))
        ));
        assert!(matches!(port.write_ready(b"x"), Err(SerialFault::Lost(_))));
        assert!(matches!(
            LinuxSerialPort::open(&slave, 9600),
            Err(SerialFault::Lost(_))
        ));
    }
}
