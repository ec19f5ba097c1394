//! SPI devices: the grant (`spi.env = { device = "sim:bme280", max_hz =
//! 10_000_000, modes = [0, 3] }`), its policy, and the backends behind one
//! small trait over embedded-hal's `SpiDevice`.
//!
//! ```text
//!   devices.toml spi.NAME ─► SpiGrant { device: SpiRef, max_hz, modes } ─► policy:
//!                                        spi_open(name), check(SpiConfig)
//!   open_spi(SpiRef, SpiConfig) ─► Box<dyn SpiPort>
//!        ├─ sim:bme280    ─► sim/spi.rs SimSpiDevice (a BME280 on its SPI
//!        │                   interface: the same register map as on I2C)
//!        └─ linux:<path>  ─► spi_linux.rs LinuxSpiPort (spidev, through
//!                            linux-embedded-hal's SpidevDevice)
//!   run_operations(any embedded-hal SpiDevice, &[SpiOperation]) ─► the bytes
//!        clocked in by each read and transfer, in order
//! ```
//! A device is one chip select: every transaction asserts it for its
//! whole length (embedded-hal's `SpiDevice`), so a register read (address
//! byte, then data) is one transaction. Bit order is MSB first: many
//! controllers (a Raspberry Pi's) cannot do otherwise, and no grant or WIT
//! call changes it.

use std::collections::BTreeSet;

use embedded_hal::spi::{ErrorKind, Operation, SpiDevice};
use serde::{Deserialize, Deserializer, Serialize};

use crate::manifest::{Backend, DeviceManifest, PolicyError};
use crate::sim::SimWorld;

/// The fastest clock a grant may name (spidev controllers top out well
/// below; the limit only keeps nonsense out of a manifest).
pub const MAX_SPI_HZ: u32 = 200_000_000;
/// The clock a device opens at when its grant allows it: slow enough for
/// any wiring, the rate a guest raises with `configure`.
pub const DEFAULT_HZ: u32 = 1_000_000;
/// Simulated SPI devices `sim:<kind>` may name.
pub const SIM_SPI_DEVICES: &[&str] = &["bme280"];
/// Longest time all `delay-ns` operations of one transaction may ask for:
/// the host's thread waits through them (10 ms).
pub const MAX_DELAY_NS: u64 = 10_000_000;

device_ref!(
    /// A device: `sim:bme280` or `linux:<absolute path>` (`linux:/dev/spidev0.0`).
    SpiRef,
    "SPI device",
    SIM_SPI_DEVICES,
    "the simulated SPI devices are",
    "a Linux SPI device is an absolute device path (`linux:/dev/spidev0.0`)"
);

/// An SPI mode, 0 to 3: clock polarity (CPOL) is bit 1, clock phase
/// (CPHA) bit 0, as spidev and the datasheets number them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SpiMode(u8);

impl SpiMode {
    /// Every mode, 0 to 3.
    pub const ALL: [SpiMode; 4] = [SpiMode(0), SpiMode(1), SpiMode(2), SpiMode(3)];

    /// Checks `m`.
    pub fn new(m: u64) -> Result<Self, String> {
        u8::try_from(m)
            .ok()
            .filter(|&m| m <= 3)
            .map(SpiMode)
            .ok_or_else(|| format!("{m} is not an SPI mode (0 to 3)"))
    }

    /// The mode's number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// embedded-hal's description of the mode.
    pub fn hal(self) -> embedded_hal::spi::Mode {
        use embedded_hal::spi::{Phase, Polarity};
        embedded_hal::spi::Mode {
            polarity: if self.0 & 2 == 0 {
                Polarity::IdleLow
            } else {
                Polarity::IdleHigh
            },
            phase: if self.0 & 1 == 0 {
                Phase::CaptureOnFirstTransition
            } else {
                Phase::CaptureOnSecondTransition
            },
        }
    }
}

impl<'de> Deserialize<'de> for SpiMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = i64::deserialize(d)?;
        u64::try_from(m)
            .map_err(|_| format!("{m} is not an SPI mode (0 to 3)"))
            .and_then(SpiMode::new)
            .map_err(serde::de::Error::custom)
    }
}

/// How a device is clocked: what `spi.configure` sets, persisted and
/// re-applied after a restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpiConfig {
    /// The mode.
    pub mode: SpiMode,
    /// The clock, in Hz.
    pub hz: u32,
}

/// An SPI device the process may open, and how it may clock it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SpiGrantText", into = "SpiGrantText")]
pub struct SpiGrant {
    /// The device (one chip select).
    pub device: SpiRef,
    /// The fastest clock the process may set, in Hz.
    pub max_hz: u32,
    /// The modes the process may set (at least one).
    pub modes: BTreeSet<SpiMode>,
}

/// An SPI grant as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpiGrantText {
    device: SpiRef,
    max_hz: u32,
    #[serde(deserialize_with = "crate::manifest::non_empty")]
    modes: BTreeSet<SpiMode>,
}

impl TryFrom<SpiGrantText> for SpiGrant {
    type Error = String;
    fn try_from(t: SpiGrantText) -> Result<Self, String> {
        if t.max_hz == 0 || t.max_hz > MAX_SPI_HZ {
            return Err(format!(
                "max_hz {} is not an SPI clock (1 to {MAX_SPI_HZ} Hz)",
                t.max_hz
            ));
        }
        Ok(SpiGrant {
            device: t.device,
            max_hz: t.max_hz,
            modes: t.modes,
        })
    }
}

impl From<SpiGrant> for SpiGrantText {
    fn from(g: SpiGrant) -> Self {
        SpiGrantText {
            device: g.device,
            max_hz: g.max_hz,
            modes: g.modes,
        }
    }
}

/// Why the grant refused a configuration (nothing happened on the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpiRefusal {
    /// The grant does not list the mode.
    #[error("SPI mode not allowed")]
    ModeNotAllowed,
    /// The clock is 0 or above the grant's `max_hz`.
    #[error("SPI clock not allowed")]
    FrequencyNotAllowed,
}

impl SpiGrant {
    /// What `spi.open` applies: the lowest granted mode, at 1 MHz or the
    /// grant's `max_hz` if lower.
    pub fn default_config(&self) -> SpiConfig {
        SpiConfig {
            mode: self.modes.first().copied().unwrap_or(SpiMode(0)),
            hz: self.max_hz.min(DEFAULT_HZ),
        }
    }

    /// The policy of `spi.configure`.
    pub fn check(&self, config: &SpiConfig) -> Result<(), SpiRefusal> {
        if !self.modes.contains(&config.mode) {
            return Err(SpiRefusal::ModeNotAllowed);
        }
        if config.hz == 0 || config.hz > self.max_hz {
            return Err(SpiRefusal::FrequencyNotAllowed);
        }
        Ok(())
    }
}

impl DeviceManifest {
    /// The policy of `spi.open(name)`; `configure` then asks the grant
    /// (`SpiGrant::check`).
    pub fn spi_open(&self, name: &str) -> Result<&SpiGrant, PolicyError> {
        self.spi
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, g)| g)
            .ok_or(PolicyError::NotGranted)
    }
}

/// One part of a transaction, as the host takes it from a guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpiOperation {
    /// Clocks in this many bytes (sending zeroes).
    Read(u32),
    /// Clocks out these bytes (what comes in is dropped).
    Write(Vec<u8>),
    /// Clocks out these bytes and keeps what comes in (full duplex).
    Transfer(Vec<u8>),
    /// Waits this long with the chip selected.
    DelayNs(u32),
}

impl SpiOperation {
    /// Bytes the operation gives back.
    pub fn returns(&self) -> usize {
        match self {
            SpiOperation::Read(n) => *n as usize,
            SpiOperation::Transfer(b) => b.len(),
            _ => 0,
        }
    }
}

/// Why a device did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpiFault {
    /// The device is gone (unplugged, no such device): every later use
    /// fails the same way.
    #[error("the SPI device is gone: {0}")]
    Lost(String),
    /// An embedded-hal error.
    #[error("SPI error: {0:?}")]
    Kind(ErrorKind),
}

/// An SPI device as the host drives it.
pub trait SpiPort: Send {
    /// Sets the mode and clock.
    fn configure(&mut self, config: &SpiConfig) -> Result<(), SpiFault>;
    /// Runs `operations` as one transaction (chip selected throughout);
    /// returns the bytes of each read and transfer, joined in order.
    fn run(&mut self, operations: &[SpiOperation]) -> Result<Vec<u8>, SpiFault>;
}

/// Runs `operations` on any embedded-hal `SpiDevice` as one transaction:
/// the one place guest operations become embedded-hal ones, for every
/// backend. Returns the bytes of each read and transfer, in order.
pub fn run_operations<S: SpiDevice<u8>>(
    device: &mut S,
    operations: &[SpiOperation],
) -> Result<Vec<u8>, S::Error> {
    let mut bufs: Vec<Vec<u8>> = operations
        .iter()
        .map(|o| match o {
            SpiOperation::Read(n) => vec![0u8; *n as usize],
            SpiOperation::Transfer(b) => vec![0u8; b.len()],
            _ => Vec::new(),
        })
        .collect();
    let mut ops: Vec<Operation<'_, u8>> = operations
        .iter()
        .zip(bufs.iter_mut())
        .map(|(o, buf)| match o {
            SpiOperation::Read(_) => Operation::Read(buf.as_mut_slice()),
            SpiOperation::Write(b) => Operation::Write(b),
            SpiOperation::Transfer(b) => Operation::Transfer(buf.as_mut_slice(), b),
            SpiOperation::DelayNs(ns) => Operation::DelayNs(*ns),
        })
        .collect();
    device.transaction(&mut ops)?;
    drop(ops);
    Ok(bufs.concat())
}

/// Opens `device` and applies `config`: simulated devices from `sim`
/// (made on first use), Linux ones from the device path.
pub fn open_spi(
    device: &SpiRef,
    config: &SpiConfig,
    sim: &mut SimWorld,
) -> Result<Box<dyn SpiPort>, SpiFault> {
    let mut port: Box<dyn SpiPort> = match device.backend {
        Backend::Sim => Box::new(
            sim.spi_device(&device.path)
                .ok_or_else(|| SpiFault::Lost(format!("no simulated SPI device `{device}`")))?,
        ),
        Backend::Linux => Box::new(crate::spi_linux::LinuxSpiPort::open(&device.path)?),
    };
    port.configure(config)?;
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses() {
        let m = DeviceManifest::parse(
            "spi.env = { device = \"sim:bme280\", max_hz = 10_000_000, modes = [0, 3] }\nspi.adc = { device = \"linux:/dev/spidev0.0\", max_hz = 500000, modes = [1] }\n",
        )
        .unwrap();
        let env = m.spi_open("env").unwrap();
        assert_eq!(env.device.to_string(), "sim:bme280");
        assert_eq!(
            env.default_config(),
            SpiConfig {
                mode: SpiMode(0),
                hz: 1_000_000
            }
        );
        let c = |mode, hz| SpiConfig {
            mode: SpiMode(mode),
            hz,
        };
        assert_eq!(env.check(&c(3, 10_000_000)), Ok(()));
        assert_eq!(env.check(&c(1, 1000)), Err(SpiRefusal::ModeNotAllowed));
        assert_eq!(
            env.check(&c(0, 10_000_001)),
            Err(SpiRefusal::FrequencyNotAllowed)
        );
        assert_eq!(env.check(&c(0, 0)), Err(SpiRefusal::FrequencyNotAllowed));
        let adc = m.spi_open("adc").unwrap();
        assert_eq!(adc.default_config(), c(1, 500_000), "below 1 MHz");
        assert_eq!(m.spi_open("flash"), Err(PolicyError::NotGranted));
        assert_eq!(m.granted_interfaces(), vec!["spi"]);
        assert_eq!(DeviceManifest::parse(&m.to_toml()).unwrap(), m);
    }

    #[test]
    fn malformed_spi_grants_name_the_line_and_key() {
        let cases: &[(&str, &[&str])] = &[
            (
                "spi.env = { device = \"sim:bme280\", modes = [0] }",
                &["line 1", "max_hz"],
            ),
            (
                "spi.env = { device = \"sim:bme280\", max_hz = 1000 }",
                &["line 1", "modes"],
            ),
            (
                "spi.env = { device = \"sim:bme280\", max_hz = 1000, modes = [] }",
                &["line 1", "empty"],
            ),
            (
                "\nspi.env = { device = \"sim:bme280\", max_hz = 1000, modes = [4] }",
                &["line 2", "SPI mode"],
            ),
            (
                "spi.env = { device = \"sim:bme280\", max_hz = 1000, modes = [-1] }",
                &["line 1", "SPI mode"],
            ),
            (
                "spi.env = { device = \"sim:bme280\", max_hz = 0, modes = [0] }",
                &["line 1", "max_hz"],
            ),
            (
                "spi.env = { device = \"sim:bme280\", max_hz = 900000000, modes = [0] }",
                &["line 1", "max_hz"],
            ),
            (
                "spi.env = { device = \"sim:flash\", max_hz = 1000, modes = [0] }",
                &["line 1", "sim:bme280"],
            ),
            (
                "spi.env = { device = \"linux:spidev0.0\", max_hz = 1000, modes = [0] }",
                &["line 1", "absolute"],
            ),
            (
                "spi.env = { device = \"sim:bme280\", max_hz = 1000, modes = [0], lsb_first = true }",
                &["line 1", "lsb_first"],
            ),
            (
                "spi.Env = { device = \"sim:bme280\", max_hz = 1000, modes = [0] }",
                &["line 1", "Env"],
            ),
        ];
        for (text, wants) in cases {
            let e = DeviceManifest::parse(text).unwrap_err().to_string();
            for w in *wants {
                assert!(e.contains(w), "{text:?}: {e:?} does not contain {w:?}");
            }
        }
        let e = DeviceManifest::parse(
            "spi.a = { device = \"linux:/dev/spidev0.0\", max_hz = 1000, modes = [0] }\nspi.b = { device = \"linux:/dev/spidev0.0\", max_hz = 1000, modes = [0] }",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("spi.a") && e.contains("spi.b") && e.contains("/dev/spidev0.0"),
            "{e}"
        );
    }

    /// The operations reach an embedded-hal `SpiDevice` exactly, as one
    /// transaction, and the reads come back in order.
    #[test]
    fn operations_become_one_embedded_hal_transaction() {
        use embedded_hal_mock::eh1::spi::{Mock, Transaction as T};
        let expect = [
            T::transaction_start(),
            T::write_vec(vec![0xd0]),
            T::read_vec(vec![0x60]),
            T::transfer(vec![0xf7, 0, 0], vec![0xff, 1, 2]),
            T::delay(500),
            T::transaction_end(),
        ];
        let mut spi = Mock::new(&expect);
        let got = run_operations(
            &mut spi,
            &[
                SpiOperation::Write(vec![0xd0]),
                SpiOperation::Read(1),
                SpiOperation::Transfer(vec![0xf7, 0, 0]),
                SpiOperation::DelayNs(500),
            ],
        )
        .unwrap();
        assert_eq!(got, [0x60, 0xff, 1, 2]);
        spi.done();
    }

    #[test]
    fn a_linux_device_that_does_not_exist_is_lost() {
        let dev: SpiRef = "linux:/dev/phantom-no-such-spidev".parse().unwrap();
        let config = SpiConfig {
            mode: SpiMode(0),
            hz: 1000,
        };
        assert!(matches!(
            open_spi(&dev, &config, &mut SimWorld::default()),
            Err(SpiFault::Lost(_))
        ));
    }
}
