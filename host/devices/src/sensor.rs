//! Sensors: a typed view of a measuring chip, with the grant
//! (`sensor.room = { device = "sim:bme280", max_rate_mhz = 10000 }`), its
//! policy, and the backends.
//!
//! ```text
//!   devices.toml sensor.NAME ─► SensorGrant { device: SensorRef, address,
//!                                             max_rate_mhz } ─► policy:
//!                                             sensor_open(name), allows_rate(mhz)
//!   open_sensor(grant) ─► Box<dyn SensorPort> = Bme280Sensor over an
//!        embedded-hal I2C bus (bme280.rs's driver and formulas):
//!        ├─ sim:bme280       ─► the simulated BME280 bus (sim/i2c.rs, 0x76)
//!        └─ linux:/dev/i2c-N ─► i2c-dev through linux-embedded-hal's I2cdev
//!   read() ─► [(temperature, °C), (relative humidity, %), (pressure, Pa)]
//! ```
//! What a sensor measures is known from its grant alone (every backend is a
//! BME280 for now), so `info` needs no device and is the same in a replay.

use std::fmt;

use embedded_hal::i2c::I2c;
use serde::{Deserialize, Serialize};

use crate::bme280::{Bme280, DriverError};
use crate::manifest::{Backend, DeviceManifest, I2cAddress, PolicyError};
use crate::sim::{SimI2cBus, SimI2cError, SimWorld};

/// The fastest sampling a grant may allow, in millihertz (100 Hz): each
/// sample is a journal entry and a guest call, and a BME280 in forced mode
/// takes about 8 ms to measure.
pub const MAX_RATE_MHZ: u32 = 100_000;
/// Simulated sensors `sim:<kind>` may name.
pub const SIM_SENSORS: &[&str] = &["bme280"];
/// The BME280's two I2C addresses (SDO low, SDO high).
pub const BME280_ADDRESSES: [u8; 2] = [0x76, 0x77];

/// A quantity a sensor measures, each in one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantity {
    /// Temperature, in degrees Celsius.
    Temperature,
    /// Relative humidity, in percent.
    RelativeHumidity,
    /// Pressure, in pascals.
    Pressure,
}

impl Quantity {
    /// Every quantity, in WIT order.
    pub const ALL: [Quantity; 3] = [
        Quantity::Temperature,
        Quantity::RelativeHumidity,
        Quantity::Pressure,
    ];

    /// The journal's code (1, 2, 3).
    pub fn code(self) -> u8 {
        match self {
            Quantity::Temperature => 1,
            Quantity::RelativeHumidity => 2,
            Quantity::Pressure => 3,
        }
    }

    /// The quantity of a journal code.
    pub fn from_code(c: u8) -> Option<Self> {
        Quantity::ALL.into_iter().find(|q| q.code() == c)
    }

    /// Its unit's symbol.
    pub fn unit(self) -> &'static str {
        match self {
            Quantity::Temperature => "°C",
            Quantity::RelativeHumidity => "%",
            Quantity::Pressure => "Pa",
        }
    }
}

/// One value a sensor read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// What it is.
    pub quantity: Quantity,
    /// Its value, in the quantity's unit.
    pub value: f64,
}

device_ref!(
    /// A sensor: `sim:bme280` or `linux:<absolute path of an I2C bus>`.
    SensorRef,
    "sensor",
    SIM_SENSORS,
    "the simulated sensors are",
    "a Linux sensor is the absolute path of its I2C bus (`linux:/dev/i2c-1`)"
);

impl SensorRef {
    /// The chip's model.
    pub fn model(&self) -> &'static str {
        "bme280"
    }

    /// What the chip measures, in WIT order.
    pub fn quantities(&self) -> &'static [Quantity] {
        &Quantity::ALL
    }
}

/// A sensor the process may open, and how fast it may sample it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SensorGrantText", into = "SensorGrantText")]
pub struct SensorGrant {
    /// The sensor.
    pub device: SensorRef,
    /// The chip's I2C address (0x76 unless written).
    pub address: u8,
    /// The fastest sampling `set-rate` may ask for, in millihertz; 0:
    /// reads only, no sampling.
    pub max_rate_mhz: u32,
}

/// A sensor grant as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SensorGrantText {
    device: SensorRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<I2cAddress>,
    max_rate_mhz: u32,
}

impl TryFrom<SensorGrantText> for SensorGrant {
    type Error = String;
    fn try_from(t: SensorGrantText) -> Result<Self, String> {
        let address = t.address.map_or(BME280_ADDRESSES[0], I2cAddress::get);
        if !BME280_ADDRESSES.contains(&address) {
            return Err(format!(
                "address {address:#04x}: a BME280 answers at 0x76 or 0x77"
            ));
        }
        if t.max_rate_mhz > MAX_RATE_MHZ {
            return Err(format!(
                "max_rate_mhz {} is faster than sampling allows (0 to {MAX_RATE_MHZ} mHz)",
                t.max_rate_mhz
            ));
        }
        Ok(SensorGrant {
            device: t.device,
            address,
            max_rate_mhz: t.max_rate_mhz,
        })
    }
}

impl From<SensorGrant> for SensorGrantText {
    fn from(g: SensorGrant) -> Self {
        SensorGrantText {
            device: g.device,
            address: I2cAddress::new(u64::from(g.address)).ok(),
            max_rate_mhz: g.max_rate_mhz,
        }
    }
}

impl SensorGrant {
    /// Whether `set-rate(millihertz)` is allowed (0, stopping, always is).
    pub fn allows_rate(&self, millihertz: u32) -> bool {
        millihertz <= self.max_rate_mhz
    }
}

impl DeviceManifest {
    /// The policy of `sensor.open(name)`; `set-rate` then asks the grant
    /// (`SensorGrant::allows_rate`).
    pub fn sensor_open(&self, name: &str) -> Result<&SensorGrant, PolicyError> {
        self.sensor
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, g)| g)
            .ok_or(PolicyError::NotGranted)
    }
}

/// Why a sensor did not measure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SensorFault {
    /// The sensor is gone (unplugged, nothing answers at its address, no
    /// such bus).
    #[error("the sensor is gone: {0}")]
    Lost(String),
    /// The sensor answered wrongly (another chip, a bus error).
    #[error("the sensor failed: {0}")]
    Failed(String),
}

/// A sensor as the host drives it.
pub trait SensorPort: Send {
    /// Measures every quantity once, in `SensorRef::quantities` order.
    fn read(&mut self) -> Result<Vec<Reading>, SensorFault>;
}

/// A BME280 on an I2C bus, as a sensor: forced-mode measurements through
/// `bme280::Bme280`.
pub struct Bme280Sensor<I: I2c> {
    driver: Bme280<I>,
    /// Whether a bus error means the chip is gone.
    gone: fn(&I::Error) -> bool,
}

fn driver_fault<E: fmt::Debug>(e: DriverError<E>, gone: fn(&E) -> bool) -> SensorFault {
    match e {
        DriverError::Bus(b) if gone(&b) => SensorFault::Lost(format!("{b:?}")),
        DriverError::Bus(b) => SensorFault::Failed(format!("{b:?}")),
        DriverError::NotABme280(id) => {
            SensorFault::Failed(format!("chip id {id:#04x} is not a BME280's"))
        }
    }
}

impl<I: I2c + Send> Bme280Sensor<I>
where
    I::Error: fmt::Debug,
{
    /// Checks the chip at `address` and reads its calibration.
    pub fn open(bus: I, address: u8, gone: fn(&I::Error) -> bool) -> Result<Self, SensorFault> {
        let driver = Bme280::new(bus, address).map_err(|e| driver_fault(e, gone))?;
        Ok(Bme280Sensor { driver, gone })
    }
}

impl<I: I2c + Send> SensorPort for Bme280Sensor<I>
where
    I::Error: fmt::Debug,
{
    fn read(&mut self) -> Result<Vec<Reading>, SensorFault> {
        let m = self
            .driver
            .measure()
            .map_err(|e| driver_fault(e, self.gone))?;
        Ok(vec![
            Reading {
                quantity: Quantity::Temperature,
                value: m.celsius,
            },
            Reading {
                quantity: Quantity::RelativeHumidity,
                value: m.humidity,
            },
            Reading {
                quantity: Quantity::Pressure,
                value: m.pascal,
            },
        ])
    }
}

fn sim_gone(e: &SimI2cError) -> bool {
    use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
    matches!(
        e,
        SimI2cError::Lost
            | SimI2cError::Kind(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address))
    )
}

fn linux_gone(e: &linux_embedded_hal::I2CError) -> bool {
    use linux_embedded_hal::i2cdev::linux::LinuxI2CError;
    let errno = match e.inner() {
        LinuxI2CError::Errno(n) => Some(*n),
        LinuxI2CError::Io(io) => io.raw_os_error(),
    };
    // No acknowledge of the address (ENXIO), or the adapter is gone.
    matches!(
        errno,
        Some(libc::ENXIO | libc::ENOENT | libc::ENODEV | libc::ESHUTDOWN)
    )
}

/// Opens the sensor of `grant`: the simulated BME280's bus from `sim`
/// (made on first use), or the Linux I2C bus at its path.
pub fn open_sensor(
    grant: &SensorGrant,
    sim: &mut SimWorld,
) -> Result<Box<dyn SensorPort>, SensorFault> {
    match grant.device.backend {
        Backend::Sim => {
            let bus: SimI2cBus = sim.bus(&grant.device.path).ok_or_else(|| {
                SensorFault::Lost(format!("no simulated sensor `{}`", grant.device))
            })?;
            Ok(Box::new(Bme280Sensor::open(bus, grant.address, sim_gone)?))
        }
        Backend::Linux => {
            let bus = linux_embedded_hal::I2cdev::new(&grant.device.path)
                .map_err(|e| SensorFault::Lost(format!("{}: {e}", grant.device.path)))?;
            Ok(Box::new(Bme280Sensor::open(
                bus,
                grant.address,
                linux_gone,
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn the_issue_example_parses() {
        let m = DeviceManifest::parse(
            "sensor.room = { device = \"sim:bme280\", max_rate_mhz = 10000 }\nsensor.attic = { device = \"linux:/dev/i2c-1\", address = 0x77, max_rate_mhz = 0 }\n",
        )
        .unwrap();
        let room = m.sensor_open("room").unwrap();
        assert_eq!(room.device.to_string(), "sim:bme280");
        assert_eq!(room.address, 0x76);
        assert!(room.allows_rate(0) && room.allows_rate(10_000) && !room.allows_rate(10_001));
        let attic = m.sensor_open("attic").unwrap();
        assert_eq!(attic.address, 0x77);
        assert!(attic.allows_rate(0) && !attic.allows_rate(1), "reads only");
        assert_eq!(m.sensor_open("cellar"), Err(PolicyError::NotGranted));
        assert_eq!(m.granted_interfaces(), vec!["sensor"]);
        assert_eq!(DeviceManifest::parse(&m.to_toml()).unwrap(), m);
    }

    #[test]
    fn malformed_sensor_grants_name_the_line_and_key() {
        let cases: &[(&str, &[&str])] = &[
            (
                "sensor.room = { device = \"sim:bme280\" }",
                &["line 1", "max_rate_mhz"],
            ),
            (
                "\nsensor.room = { device = \"sim:bme280\", max_rate_mhz = 200000 }",
                &["line 2", "max_rate_mhz"],
            ),
            (
                "sensor.room = { device = \"sim:bme280\", max_rate_mhz = -1 }",
                &["line 1"],
            ),
            (
                "sensor.room = { device = \"sim:bme280\", address = 0x40, max_rate_mhz = 1 }",
                &["line 1", "0x76 or 0x77"],
            ),
            (
                "sensor.room = { device = \"sim:bme280\", address = 0x80, max_rate_mhz = 1 }",
                &["line 1", "7-bit"],
            ),
            (
                "sensor.room = { device = \"sim:dht22\", max_rate_mhz = 1 }",
                &["line 1", "sim:bme280"],
            ),
            (
                "sensor.room = { device = \"linux:i2c-1\", max_rate_mhz = 1 }",
                &["line 1", "absolute"],
            ),
            (
                "sensor.room = { device = \"sim:bme280\", max_rate_mhz = 1, unit = \"F\" }",
                &["line 1", "unit"],
            ),
            ("sensor.room = { max_rate_mhz = 1 }", &["line 1", "device"]),
        ];
        for (text, wants) in cases {
            let e = DeviceManifest::parse(text).unwrap_err().to_string();
            for w in *wants {
                assert!(e.contains(w), "{text:?}: {e:?} does not contain {w:?}");
            }
        }
    }

    /// The simulated sensor reads the scenario's curve; a chip at another
    /// address, or an unplugged bus, is gone.
    #[test]
    fn the_simulated_sensor_reads_the_scenario() {
        let mut sim = SimWorld::new(
            Scenario::parse(
                "temperature = [{ at_s = 0, value = 20.0 }, { at_s = 10, value = 30.0 }]\nhumidity = [{ at_s = 0, value = 50.0 }]\npressure = [{ at_s = 0, value = 99000.0 }]",
            )
            .unwrap(),
        );
        let grant = |address| SensorGrant {
            device: "sim:bme280".parse().unwrap(),
            address,
            max_rate_mhz: 1000,
        };
        let mut s = open_sensor(&grant(0x76), &mut sim).unwrap();
        sim.bus("bme280").unwrap().set_time(5_000_000_000);
        let r = s.read().unwrap();
        assert_eq!(
            r.iter().map(|r| r.quantity).collect::<Vec<_>>(),
            Quantity::ALL
        );
        assert!((r[0].value - 25.0).abs() < 0.011, "{r:?}");
        assert!((r[1].value - 50.0).abs() < 0.05, "{r:?}");
        assert!((r[2].value - 99000.0).abs() < 1.0, "{r:?}");
        assert!(matches!(
            open_sensor(&grant(0x77), &mut sim),
            Err(SensorFault::Lost(_))
        ));
        sim.bus("bme280").unwrap().unplug();
        assert!(matches!(s.read(), Err(SensorFault::Lost(_))));
    }

    #[test]
    fn a_linux_bus_that_does_not_exist_is_lost() {
        let grant = SensorGrant {
            device: "linux:/dev/phantom-no-such-i2c".parse().unwrap(),
            address: 0x76,
            max_rate_mhz: 0,
        };
        assert!(matches!(
            open_sensor(&grant, &mut SimWorld::default()),
            Err(SensorFault::Lost(_))
        ));
    }
}
