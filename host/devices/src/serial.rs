//! Serial ports: the grant (`serial.log = { port = "linux:/dev/ttyUSB0",
//! baud = 115200 }`), its policy, and the backends behind one small trait.
//!
//! ```text
//!   devices.toml serial.NAME ─► SerialGrant { port: PortRef, baud, bauds } ─► policy:
//!                                             serial_open(name), allows_baud(b)
//!   open_port(PortRef, baud) ─► Box<dyn SerialPort>
//!        ├─ sim:loopback  ─► sim/serial.rs SimSerialPort (what is written comes back)
//!        └─ linux:<path>  ─► serial_linux.rs LinuxSerialPort (serialport configures,
//!                            a non-blocking descriptor carries the bytes; a pty
//!                            slave /dev/pts/N works like a UART)
//! ```
//! Nothing behind `SerialPort` waits: a read takes what has arrived, a write
//! puts what fits. The host's drive loop calls them between guest calls, so
//! a slow or stuck port must never hold it (and with it every process).
//! `embedded-io`'s `Read` waits for at least one byte and its `Write` for
//! room, which is why this is a trait of its own.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::manifest::{Backend, DeviceManifest, PolicyError};
use crate::sim::SimWorld;

/// The fastest rate a grant may name (a UART's clock sets the real limit).
pub const MAX_BAUD: u32 = 16_000_000;
/// Simulated serial ports `sim:<kind>` may name.
pub const SIM_PORTS: &[&str] = &["loopback"];

device_ref!(
    /// A port: `sim:loopback` or `linux:<absolute path>` (`linux:/dev/ttyUSB0`).
    PortRef,
    "port",
    SIM_PORTS,
    "the simulated serial ports are",
    "a Linux port is an absolute device path (`linux:/dev/ttyUSB0`)"
);

/// A serial port the process may open, and the rates it may set.
///
/// Written `baud = N` (that rate only), `bauds = [a, b, ...]` (those; the
/// port opens at the first), or both (`baud` is where it opens, `bauds`
/// what `set-baud` may choose).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SerialGrantText", into = "SerialGrantText")]
pub struct SerialGrant {
    /// The port.
    pub port: PortRef,
    /// The rate the port opens at.
    pub baud: u32,
    /// Every rate `set-baud` may choose (`baud` among them).
    pub bauds: BTreeSet<u32>,
}

impl SerialGrant {
    /// Whether the grant allows `baud`.
    pub fn allows_baud(&self, baud: u32) -> bool {
        self.bauds.contains(&baud)
    }
}

/// A serial grant as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SerialGrantText {
    port: PortRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    baud: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bauds: Option<Vec<u32>>,
}

impl TryFrom<SerialGrantText> for SerialGrant {
    type Error = String;
    fn try_from(t: SerialGrantText) -> Result<Self, String> {
        let listed = t.bauds.unwrap_or_default();
        let baud = match (t.baud, listed.first()) {
            (Some(b), _) => b,
            (None, Some(&b)) => b,
            (None, None) => {
                return Err(
                    "a serial grant names its rate: `baud = N`, or `bauds = [...]` (a grant of no rate is refused rather than read as any)"
                        .into(),
                );
            }
        };
        let bauds: BTreeSet<u32> = listed.iter().copied().chain([baud]).collect();
        if let Some(bad) = bauds.iter().find(|&&b| b == 0 || b > MAX_BAUD) {
            return Err(format!(
                "{bad} is not a baud rate (1 to {MAX_BAUD} bits per second)"
            ));
        }
        Ok(SerialGrant {
            port: t.port,
            baud,
            bauds,
        })
    }
}

impl From<SerialGrant> for SerialGrantText {
    fn from(g: SerialGrant) -> Self {
        SerialGrantText {
            port: g.port,
            baud: Some(g.baud),
            bauds: Some(g.bauds.into_iter().collect()),
        }
    }
}

impl DeviceManifest {
    /// The policy of `serial.open(name)`; `set-baud` then asks the grant
    /// (`SerialGrant::allows_baud`).
    pub fn serial_open(&self, name: &str) -> Result<&SerialGrant, PolicyError> {
        self.serial
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, g)| g)
            .ok_or(PolicyError::NotGranted)
    }
}

/// Why a port did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SerialFault {
    /// The port is gone (unplugged, the other end of a pty closed, no such
    /// device): every later use fails the same way.
    #[error("the serial port is gone: {0}")]
    Lost(String),
    /// The port refused the operation (a rate the driver cannot set).
    #[error("the serial port failed: {0}")]
    Failed(String),
}

/// A serial port as the host drives it. Nothing here waits.
pub trait SerialPort: Send {
    /// Sets the line rate.
    fn set_baud(&mut self, baud: u32) -> Result<(), SerialFault>;
    /// Reads what has arrived, up to `buf.len()` bytes; 0 if nothing has.
    fn read_ready(&mut self, buf: &mut [u8]) -> Result<usize, SerialFault>;
    /// Writes what fits now of `data`; 0 if the port's buffer is full.
    fn write_ready(&mut self, data: &[u8]) -> Result<usize, SerialFault>;
    /// Bytes written but not yet sent on the line (a rate change waits
    /// for them); 0 where the port cannot tell.
    fn output_pending(&mut self) -> usize {
        0
    }
}

/// Opens `port` at `baud`: simulated ports from `sim` (made on first use),
/// Linux ports from the device path.
pub fn open_port(
    port: &PortRef,
    baud: u32,
    sim: &mut SimWorld,
) -> Result<Box<dyn SerialPort>, SerialFault> {
    match port.backend {
        Backend::Sim => {
            let p = sim
                .serial_port(&port.path)
                .ok_or_else(|| SerialFault::Lost(format!("no simulated port `{port}`")))?;
            p.open(baud)?;
            Ok(Box::new(p))
        }
        Backend::Linux => Ok(Box::new(crate::serial_linux::LinuxSerialPort::open(
            &port.path, baud,
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses() {
        let m = DeviceManifest::parse(
            "serial.log = { port = \"linux:/dev/ttyUSB0\", baud = 115200 }\nserial.loop = { port = \"sim:loopback\", bauds = [9600, 115200] }\n",
        )
        .unwrap();
        let log = m.serial_open("log").unwrap();
        assert_eq!(log.port.to_string(), "linux:/dev/ttyUSB0");
        assert_eq!(log.baud, 115200);
        assert!(log.allows_baud(115200) && !log.allows_baud(9600));
        let lp = m.serial_open("loop").unwrap();
        assert_eq!(lp.baud, 9600, "opens at the first listed");
        assert!(lp.allows_baud(115200) && !lp.allows_baud(57600));
        assert_eq!(m.serial_open("gps"), Err(PolicyError::NotGranted));
        assert_eq!(m.granted_interfaces(), vec!["serial"]);
        assert_eq!(DeviceManifest::parse(&m.to_toml()).unwrap(), m);
        // Both: `baud` is where it opens.
        let both = DeviceManifest::parse(
            "serial.x = { port = \"sim:loopback\", baud = 57600, bauds = [9600] }",
        )
        .unwrap();
        let x = both.serial_open("x").unwrap();
        assert_eq!(x.baud, 57600);
        assert_eq!(x.bauds, BTreeSet::from([9600, 57600]));
    }

    #[test]
    fn malformed_serial_grants_name_the_line_and_key() {
        let cases: &[(&str, &[&str])] = &[
            (
                "serial.log = { port = \"sim:loopback\" }",
                &["line 1", "baud"],
            ),
            (
                "serial.log = { port = \"sim:loopback\", bauds = [] }",
                &["line 1", "baud"],
            ),
            (
                "\nserial.log = { port = \"sim:loopback\", baud = 0 }",
                &["line 2", "not a baud rate"],
            ),
            (
                "serial.log = { port = \"sim:loopback\", bauds = [9600, 99000000] }",
                &["line 1", "99000000"],
            ),
            (
                "serial.log = { port = \"sim:loopback\", baud = -5 }",
                &["line 1"],
            ),
            (
                "serial.log = { port = \"sim:pty\", baud = 9600 }",
                &["line 1", "sim:loopback"],
            ),
            (
                "serial.log = { port = \"linux:ttyUSB0\", baud = 9600 }",
                &["line 1", "absolute"],
            ),
            (
                "serial.log = { port = \"usb:0\", baud = 9600 }",
                &["line 1", "sim:"],
            ),
            (
                "serial.log = { port = \"sim:loopback\", baud = 9600, parity = \"even\" }",
                &["line 1", "parity"],
            ),
            ("serial.log = { baud = 9600 }", &["line 1", "port"]),
            (
                "serial.Log = { port = \"sim:loopback\", baud = 9600 }",
                &["line 1", "Log"],
            ),
        ];
        for (text, wants) in cases {
            let e = DeviceManifest::parse(text).unwrap_err().to_string();
            for w in *wants {
                assert!(e.contains(w), "{text:?}: {e:?} does not contain {w:?}");
            }
        }
        let e = DeviceManifest::parse(
            "serial.a = { port = \"linux:/dev/ttyS0\", baud = 9600 }\nserial.b = { port = \"linux:/dev/ttyS0\", baud = 9600 }",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("serial.a") && e.contains("serial.b") && e.contains("/dev/ttyS0"),
            "{e}"
        );
    }

    #[test]
    fn a_linux_port_that_does_not_exist_is_lost() {
        let port: PortRef = "linux:/dev/phantom-no-such-tty".parse().unwrap();
        let mut sim = SimWorld::default();
        assert!(matches!(
            open_port(&port, 9600, &mut sim),
            Err(SerialFault::Lost(_))
        ));
    }
}
