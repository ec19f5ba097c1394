//! Phantom's devices, without wasmtime: what a process is granted, and the
//! backends the host drives for it.
//!
//! ```text
//!   manifest.rs  DeviceManifest (TOML) ─► grants by logical name ─► the policy
//!   gpio.rs      pins behind embedded-hal's digital traits: a simulated
//!                pin, or gpio_linux.rs (a GPIO character device line)
//!   i2c.rs       buses behind embedded-hal's I2c: a simulated bus, or
//!                i2c_linux.rs (i2c-dev)
//!   sim/         simulated backends behind the embedded-hal 1.0 traits:
//!                gpio.rs (SimGpioBank: levels, modes, scripted inputs, a log),
//!                bme280.rs (SimBme280 on a SimI2cBus: the BME280 register map),
//!                serial.rs (SimSerialPort: a loopback),
//!                framebuffer.rs (SimFramebuffer: a frame shown, kept in a file)
//!   serial.rs    serial grants, and ports behind a trait that never waits:
//!                sim:loopback, or serial_linux.rs (a tty or pty slave)
//!   display.rs   display grants, pixel formats, the frame file, PNG
//!   spi.rs       SPI grants, and devices behind embedded-hal's SpiDevice:
//!                sim:bme280 (sim/spi.rs), or spi_linux.rs (spidev)
//!   sensor.rs    sensor grants, and typed readings (°C, %, Pa) from a BME280
//!                on the simulated bus or a Linux I2C bus
//!   scenario.rs  what drives the simulated devices over time (TOML)
//!   bme280.rs    the BME280's calibration words and compensation formulas
//!                (datasheet), and a driver over any embedded-hal I2C bus;
//!                bme280_spi.rs the same chip over SPI
//! ```
//! The runtime (`phantom-runtime`, `iface/devices/`) opens devices through
//! the policy, journals what the guest reads and persists what it set.

#![forbid(unsafe_code)]

/// A device reference of one kind (`sim:<kind>` of a list, or
/// `linux:<absolute path>`), with its parse errors in that kind's words,
/// its `Display` and its serde as a string. The serial port, SPI device and
/// sensor references are this one shape.
macro_rules! device_ref {
    ($(#[$doc:meta])* $name:ident, $what:literal, $sims:expr, $sim_phrase:literal, $linux:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            /// Its backend.
            pub backend: $crate::manifest::Backend,
            /// The simulated device's kind, or the device path.
            pub path: String,
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let (backend, path) =
                    $crate::manifest::parse_device_ref(s, $what, $sims, $sim_phrase, $linux)?;
                Ok($name { backend, path })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}:{}", self.backend, self.path)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod bme280;
pub mod bme280_spi;
pub mod display;
pub mod gpio;
mod gpio_linux;
pub mod i2c;
mod i2c_linux;
pub mod manifest;
pub mod scenario;
pub mod sensor;
pub mod serial;
mod serial_linux;
pub mod sim;
pub mod spi;
mod spi_linux;

pub use gpio::{GpioFault, GpioPin, LinuxLines, open_pin};
pub use i2c::{I2cBus, I2cFault, open_bus};
pub use manifest::{
    Backend, BusRef, DeviceManifest, GpioGrant, I2cGrant, ManifestError, PinMode, PinRef,
    PolicyError,
};
pub use sensor::{Quantity, SensorGrant, SensorRef};
pub use serial::{PortRef, SerialFault, SerialGrant, SerialPort};
pub use spi::{SpiConfig, SpiGrant, SpiMode, SpiRef};
