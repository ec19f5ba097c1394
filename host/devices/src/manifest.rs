//! Device manifests: what a process is granted.
//!
//! ```text
//!   devices.toml ─► DeviceManifest::parse ─► gpio: name ─► GpioGrant { pin, modes }
//!   (spawn --devices,     (every error names      i2c:  name ─► I2cGrant { bus, addresses }
//!    stored as DIR/NAME/   its line and key)      display: name ─► DisplayGrant { device, size, format }
//!    devices.toml)        ─► gpio_open / i2c_open / I2cGrant::allows / display_open: the policy
//! ```
//! A manifest maps logical names, which the guest opens, to backends and what
//! the process may do with them:
//!
//! ```toml
//! gpio.relay = { pin = "sim:0/17", modes = ["output"] }
//! i2c.env = { bus = "sim:bme280", addresses = [0x76] }
//! serial.log = { port = "linux:/dev/ttyUSB0", baud = 115200 }   # serial.rs
//! display.screen = { device = "sim:framebuffer", width = 320, height = 240, format = "rgb888" }
//! spi.env = { device = "sim:bme280", max_hz = 10_000_000, modes = [0, 3] }   # spi.rs
//! sensor.room = { device = "sim:bme280", max_rate_mhz = 10000 }  # sensor.rs
//! ```
//! Nothing is granted that the manifest does not say: an unknown key or
//! table is an error (not ignored), a grant with no modes or no addresses is
//! an error (not "everything"), and the policy functions answer only from
//! what was parsed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Most grants of one kind in a manifest.
pub const MAX_GRANTS: usize = 256;
/// Longest logical name.
pub const MAX_NAME_BYTES: usize = 64;

/// A manifest that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML of the manifest's shape; the message names the line, column
    /// and key (from the TOML parser).
    #[error("invalid device manifest: {0}")]
    Invalid(String),
    /// Two grants name the same pin or bus.
    #[error("invalid device manifest: `{first}` and `{second}` both grant {what}")]
    Duplicate {
        /// The first grant's key (`gpio.relay`).
        first: String,
        /// The second grant's key.
        second: String,
        /// The pin or bus.
        what: String,
    },
    /// More grants of one kind than a manifest may hold.
    #[error("invalid device manifest: more than {MAX_GRANTS} `{0}` grants")]
    TooMany(&'static str),
}

/// How a pin is used (the WIT `gpio.pin-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinMode {
    /// Input, floating.
    Input,
    /// Input with the pull-up on.
    #[serde(alias = "input-pullup")]
    InputPullUp,
    /// Input with the pull-down on.
    #[serde(alias = "input-pulldown")]
    InputPullDown,
    /// Push-pull output.
    Output,
    /// Open-drain output.
    OutputOpenDrain,
}

impl PinMode {
    /// Every mode, in WIT order.
    pub const ALL: [PinMode; 5] = [
        PinMode::Input,
        PinMode::InputPullUp,
        PinMode::InputPullDown,
        PinMode::Output,
        PinMode::OutputOpenDrain,
    ];

    /// Whether the process drives the pin in this mode.
    pub fn is_output(self) -> bool {
        matches!(self, PinMode::Output | PinMode::OutputOpenDrain)
    }

    /// The manifest's spelling.
    pub fn name(self) -> &'static str {
        match self {
            PinMode::Input => "input",
            PinMode::InputPullUp => "input-pull-up",
            PinMode::InputPullDown => "input-pull-down",
            PinMode::Output => "output",
            PinMode::OutputOpenDrain => "output-open-drain",
        }
    }
}

/// Where a device is: simulated in the host, or a Linux device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A simulated device (`sim:`).
    Sim,
    /// A Linux character device (`linux:`).
    Linux,
}

/// Splits a device reference `s` into its backend and the rest:
/// `sim:<one of sims>` or `linux:<absolute path>`. The errors name the
/// reference as `what` (`port`), the simulated ones as `sim_phrase` (`the
/// simulated serial ports are`) and say `linux` of a bad Linux path.
pub(crate) fn parse_device_ref(
    s: &str,
    what: &str,
    sims: &[&str],
    sim_phrase: &str,
    linux: &str,
) -> Result<(Backend, String), String> {
    if let Some(rest) = s.strip_prefix("sim:") {
        if !sims.contains(&rest) {
            let names: Vec<String> = sims.iter().map(|k| format!("`sim:{k}`")).collect();
            return Err(format!("{what} `{s}`: {sim_phrase} {}", names.join(", ")));
        }
        Ok((Backend::Sim, rest.to_string()))
    } else if let Some(rest) = s.strip_prefix("linux:") {
        if !rest.starts_with('/') || rest.contains('\0') {
            return Err(format!("{what} `{s}`: {linux}"));
        }
        Ok((Backend::Linux, rest.to_string()))
    } else {
        Err(format!(
            "{what} `{s}` names no backend: it must start with `sim:` or `linux:`"
        ))
    }
}

/// A pin: `sim:<chip>/<line>` or `linux:<chip>/<line>`, the chip a device
/// path or a name under `/dev` (`linux:/dev/gpiochip0/17`,
/// `linux:gpiochip0/17`; `gpio_linux.rs`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PinRef {
    /// Its backend.
    pub backend: Backend,
    /// The chip (bank).
    pub chip: String,
    /// The line (offset) on the chip.
    pub line: u32,
}

/// A bus: `sim:<device>` (`sim:bme280`) or `linux:<path>` (`linux:/dev/i2c-1`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusRef {
    /// Its backend.
    pub backend: Backend,
    /// The simulated bus's kind or the device path.
    pub path: String,
}

fn split_backend(s: &str) -> Result<(Backend, &str), String> {
    if let Some(rest) = s.strip_prefix("sim:") {
        Ok((Backend::Sim, rest))
    } else if let Some(rest) = s.strip_prefix("linux:") {
        Ok((Backend::Linux, rest))
    } else {
        Err(format!(
            "`{s}` names no backend: it must start with `sim:` or `linux:`"
        ))
    }
}

impl std::str::FromStr for PinRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (backend, rest) = split_backend(s)?;
        let (chip, line) = rest
            .rsplit_once('/')
            .ok_or_else(|| format!("pin `{s}` is not `<backend>:<chip>/<line>`"))?;
        let line = line
            .parse()
            .map_err(|_| format!("pin `{s}`: line `{line}` is not a number"))?;
        if chip.is_empty() {
            return Err(format!("pin `{s}` names no chip"));
        }
        Ok(PinRef {
            backend,
            chip: chip.to_string(),
            line,
        })
    }
}

impl std::str::FromStr for BusRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // Lenient, as stored manifests of running processes were written;
        // a new grant is checked by `DeviceManifest::check_new`.
        let (backend, path) = split_backend(s)?;
        if path.is_empty() {
            return Err(format!("bus `{s}` names no device"));
        }
        Ok(BusRef {
            backend,
            path: path.to_string(),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sim => "sim",
            Backend::Linux => "linux",
        })
    }
}

impl fmt::Display for PinRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.backend, self.chip, self.line)
    }
}

impl fmt::Display for BusRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.backend, self.path)
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(PinRef);
string_serde!(BusRef);

/// A logical name: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GrantName(String);

impl GrantName {
    /// Checks `s`.
    pub fn new(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME_BYTES
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(GrantName(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a device name: 1 to {MAX_NAME_BYTES} of a-z, 0-9, `-`, `_`, starting with a letter"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for GrantName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GrantName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A 7-bit I2C address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct I2cAddress(u8);

impl I2cAddress {
    /// Checks `a`.
    pub fn new(a: u64) -> Result<Self, String> {
        u8::try_from(a)
            .ok()
            .filter(|&a| a <= 0x7f)
            .map(I2cAddress)
            .ok_or_else(|| format!("{a:#x} is not a 7-bit I2C address (0x00 to 0x7f)"))
    }

    /// The address.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for I2cAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let a = i64::deserialize(d)?;
        u64::try_from(a)
            .map_err(|_| format!("{a} is not a 7-bit I2C address (0x00 to 0x7f)"))
            .and_then(I2cAddress::new)
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) fn non_empty<'de, D, T>(d: D) -> Result<BTreeSet<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord,
{
    let set = BTreeSet::<T>::deserialize(d)?;
    if set.is_empty() {
        return Err(serde::de::Error::custom(
            "the list is empty: a grant of nothing is refused rather than read as everything",
        ));
    }
    Ok(set)
}

/// A pin the process may open, and its modes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioGrant {
    /// The pin.
    pub pin: PinRef,
    /// The modes the process may use it in (at least one).
    #[serde(deserialize_with = "non_empty")]
    pub modes: BTreeSet<PinMode>,
}

/// A bus the process may open, and the addresses it may talk to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct I2cGrant {
    /// The bus.
    pub bus: BusRef,
    /// The 7-bit addresses the process may talk to (at least one).
    #[serde(deserialize_with = "non_empty")]
    pub addresses: BTreeSet<I2cAddress>,
}

impl I2cGrant {
    /// Whether the grant lists `address`.
    pub fn allows(&self, address: u16) -> bool {
        self.addresses.iter().any(|a| u16::from(a.get()) == address)
    }
}

/// Why the policy refused an operation (nothing happened on a device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No grant of that name.
    #[error("not granted")]
    NotGranted,
    /// The grant does not allow that mode.
    #[error("mode not allowed")]
    ModeNotAllowed,
    /// The grant does not list that address.
    #[error("address not allowed")]
    AddressNotAllowed,
}

/// What a process is granted. The default grants nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceManifest {
    /// Pins by logical name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpio: BTreeMap<GrantName, GpioGrant>,
    /// I2C buses by logical name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub i2c: BTreeMap<GrantName, I2cGrant>,
    /// Serial ports by logical name (`serial.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub serial: BTreeMap<GrantName, crate::serial::SerialGrant>,
    /// Displays by logical name (`display.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub display: BTreeMap<GrantName, crate::display::DisplayGrant>,
    /// SPI devices by logical name (`spi.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spi: BTreeMap<GrantName, crate::spi::SpiGrant>,
    /// Sensors by logical name (`sensor.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sensor: BTreeMap<GrantName, crate::sensor::SensorGrant>,
}

impl DeviceManifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let m: DeviceManifest =
            toml::from_str(text).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        if m.gpio.len() > MAX_GRANTS {
            return Err(ManifestError::TooMany("gpio"));
        }
        if m.i2c.len() > MAX_GRANTS {
            return Err(ManifestError::TooMany("i2c"));
        }
        if m.serial.len() > MAX_GRANTS {
            return Err(ManifestError::TooMany("serial"));
        }
        if m.spi.len() > MAX_GRANTS {
            return Err(ManifestError::TooMany("spi"));
        }
        if m.sensor.len() > MAX_GRANTS {
            return Err(ManifestError::TooMany("sensor"));
        }
        // One chip select, one holder; one chip, one sensor grant. Two
        // spellings of one Linux path are one place.
        let mut spi = BTreeMap::new();
        for (name, g) in &m.spi {
            if let Some(first) = spi.insert(same_place(&g.device.to_string()), name) {
                return Err(ManifestError::Duplicate {
                    first: format!("spi.{}", first.as_str()),
                    second: format!("spi.{}", name.as_str()),
                    what: format!("SPI device {}", g.device),
                });
            }
        }
        let mut sensors = BTreeMap::new();
        for (name, g) in &m.sensor {
            if let Some(first) =
                sensors.insert((same_place(&g.device.to_string()), g.address), name)
            {
                return Err(ManifestError::Duplicate {
                    first: format!("sensor.{}", first.as_str()),
                    second: format!("sensor.{}", name.as_str()),
                    what: format!("sensor {} at {:#04x}", g.device, g.address),
                });
            }
        }
        let mut ports = BTreeMap::new();
        for (name, g) in &m.serial {
            if let Some(first) = ports.insert(same_place(&g.port.to_string()), name) {
                return Err(ManifestError::Duplicate {
                    first: format!("serial.{}", first.as_str()),
                    second: format!("serial.{}", name.as_str()),
                    what: format!("port {}", g.port),
                });
            }
        }
        crate::display::check_grants(&m.display)?;
        let mut pins: BTreeMap<(Backend, String, u32), &GrantName> = BTreeMap::new();
        for (name, g) in &m.gpio {
            let chip = match g.pin.backend {
                Backend::Linux => same_place(&format!("linux:{}", g.pin.chip)),
                _ => g.pin.chip.clone(),
            };
            if let Some(first) = pins.insert((g.pin.backend, chip, g.pin.line), name) {
                return Err(ManifestError::Duplicate {
                    first: format!("gpio.{}", first.as_str()),
                    second: format!("gpio.{}", name.as_str()),
                    what: format!("pin {}", g.pin),
                });
            }
        }
        Ok(m)
    }

    /// The manifest as TOML that `parse` reads back equal.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The grants that reach this host's own hardware (`linux:` devices),
    /// each as `kind.name.field = linux:...`.
    pub fn host_devices(&self) -> Vec<String> {
        fn walk(path: &str, v: &toml::Value, out: &mut Vec<String>) {
            match v {
                toml::Value::String(s) if s.starts_with("linux:") => {
                    out.push(format!("{path} = {s}"));
                }
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let path = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        walk(&path, v, out);
                    }
                }
                toml::Value::Array(a) => {
                    for v in a {
                        walk(path, v, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let Ok(v) = toml::Value::try_from(self) {
            walk("", &v, &mut out);
        }
        out
    }

    /// Whether it grants nothing.
    pub fn is_empty(&self) -> bool {
        self.gpio.is_empty()
            && self.i2c.is_empty()
            && self.serial.is_empty()
            && self.display.is_empty()
            && self.spi.is_empty()
            && self.sensor.is_empty()
    }

    /// The policy of `gpio.open(name, mode)`.
    pub fn gpio_open(&self, name: &str, mode: PinMode) -> Result<&GpioGrant, PolicyError> {
        let grant = self.gpio_grant(name).ok_or(PolicyError::NotGranted)?;
        if !grant.modes.contains(&mode) {
            return Err(PolicyError::ModeNotAllowed);
        }
        Ok(grant)
    }

    /// The pin granted as `name`.
    pub fn gpio_grant(&self, name: &str) -> Option<&GpioGrant> {
        self.gpio
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, g)| g)
    }

    /// What a manifest given to a spawn must also hold (a stored one of
    /// a running process is read without it, as it was accepted): an I2C
    /// bus is a simulated bus that exists or a Linux bus by its absolute
    /// path (never one that depends on the directory the host started
    /// in), as ports and sensors are.
    pub fn check_new(&self) -> Result<(), String> {
        for (name, grant) in &self.i2c {
            parse_device_ref(
                &grant.bus.to_string(),
                "bus",
                crate::sim::SIM_BUSES,
                "the simulated I2C buses are",
                "a Linux bus is an absolute device path (`linux:/dev/i2c-1`)",
            )
            .map_err(|e| format!("i2c.{}: {e}", name.as_str()))?;
        }
        Ok(())
    }

    /// The policy of `i2c.open(name)`.
    pub fn i2c_open(&self, name: &str) -> Result<&I2cGrant, PolicyError> {
        self.i2c
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, g)| g)
            .ok_or(PolicyError::NotGranted)
    }

    /// The policy of an I2C operation on the bus granted as `name`.
    pub fn i2c_access(&self, name: &str, address: u16) -> Result<&I2cGrant, PolicyError> {
        let grant = self.i2c_open(name)?;
        if !grant.allows(address) {
            return Err(PolicyError::AddressNotAllowed);
        }
        Ok(grant)
    }

    /// The policy of `display.open(name)`.
    pub fn display_open(&self, name: &str) -> Result<&crate::display::DisplayGrant, PolicyError> {
        self.display
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, g)| g)
            .ok_or(PolicyError::NotGranted)
    }

    /// The device interfaces (`gpio`, `i2c`, `serial`, `display`, `spi`,
    /// `sensor`) that have at least one grant.
    pub fn granted_interfaces(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if !self.gpio.is_empty() {
            v.push("gpio");
        }
        if !self.i2c.is_empty() {
            v.push("i2c");
        }
        if !self.serial.is_empty() {
            v.push("serial");
        }
        if !self.display.is_empty() {
            v.push("display");
        }
        if !self.spi.is_empty() {
            v.push("spi");
        }
        if !self.sensor.is_empty() {
            v.push("sensor");
        }
        v
    }
}

/// Where a device reference points, for telling two grants of one place
/// apart from two places: `linux:` paths lexically normalised (a name
/// without a directory is in /dev, `//` and `.` dropped, `..` taken back),
/// anything else as it is.
pub(crate) fn same_place(reference: &str) -> String {
    let Some(path) = reference.strip_prefix("linux:") else {
        return reference.to_string();
    };
    let full = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/dev/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("linux:/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new grant's bus must exist (stored manifests read as they were).
    #[test]
    fn a_new_bus_is_simulated_or_an_absolute_path() {
        for (text, want) in [
            (
                "i2c.env = { bus = \"sim:nosuch\", addresses = [0x76] }",
                "`sim:bme280`",
            ),
            (
                "i2c.env = { bus = \"linux:dev/i2c-1\", addresses = [0x76] }",
                "absolute device path",
            ),
        ] {
            let m = DeviceManifest::parse(text).expect("read as stored");
            let e = m.check_new().unwrap_err();
            assert!(e.contains("i2c.env") && e.contains(want), "{e}");
        }
        for ok in ["sim:bme280", "linux:/dev/i2c-1"] {
            let text = format!("i2c.env = {{ bus = \"{ok}\", addresses = [0x76] }}");
            DeviceManifest::parse(&text).unwrap().check_new().unwrap();
        }
    }
    use proptest::prelude::*;

    const EXAMPLE: &str = r#"
gpio.relay = { pin = "sim:0/17", modes = ["output"] }
gpio.button = { pin = "sim:0/4", modes = ["input", "input-pullup"] }
i2c.env = { bus = "sim:bme280", addresses = [0x76] }
"#;

    #[test]
    fn the_issue_example_parses() {
        let m = DeviceManifest::parse(EXAMPLE).unwrap();
        assert_eq!(m.gpio.len(), 2);
        let relay = m.gpio_open("relay", PinMode::Output).unwrap();
        assert_eq!(relay.pin.to_string(), "sim:0/17");
        assert_eq!(
            m.gpio_open("relay", PinMode::Input),
            Err(PolicyError::ModeNotAllowed)
        );
        assert!(m.gpio_open("button", PinMode::InputPullUp).is_ok());
        assert_eq!(
            m.gpio_open("fan", PinMode::Output).unwrap_err(),
            PolicyError::NotGranted
        );
        assert!(m.i2c_access("env", 0x76).is_ok());
        assert_eq!(
            m.i2c_access("env", 0x77).unwrap_err(),
            PolicyError::AddressNotAllowed
        );
        assert_eq!(
            m.i2c_access("other", 0x76).unwrap_err(),
            PolicyError::NotGranted
        );
        assert_eq!(m.granted_interfaces(), vec!["gpio", "i2c"]);
        assert_eq!(DeviceManifest::parse(&m.to_toml()).unwrap(), m);
        assert!(DeviceManifest::parse("").unwrap().is_empty());
    }

    /// Each malformed manifest is refused with a message naming where.
    #[test]
    fn malformed_manifests_name_the_line_and_key() {
        let cases: &[(&str, &[&str])] = &[
            ("gpio.relay = { pin = \"sim:0/17\" }", &["line 1", "modes"]),
            (
                "\n\ngpio.relay = { pin = \"sim:0/17\", modes = [\"sideways\"] }",
                &["line 3", "sideways"],
            ),
            (
                "gpio.relay = { pin = \"usb:0/17\", modes = [\"output\"] }",
                &["line 1", "sim:"],
            ),
            (
                "gpio.relay = { pin = \"sim:0/x\", modes = [\"output\"] }",
                &["line 1", "not a number"],
            ),
            (
                "gpio.relay = { pin = \"sim:0/1\", modes = [] }",
                &["line 1", "empty"],
            ),
            (
                "gpio.relay = { pin = \"sim:0/1\", modes = [\"output\"], speed = 3 }",
                &["line 1", "speed"],
            ),
            (
                "i2c.env = { bus = \"sim:bme280\", addresses = [0x80] }",
                &["line 1", "7-bit"],
            ),
            (
                "i2c.env = { bus = \"sim:bme280\", addresses = [-1] }",
                &["line 1", "7-bit"],
            ),
            (
                "i2c.env = { bus = \"sim:bme280\" }",
                &["line 1", "addresses"],
            ),
            ("spi.x = { dev = \"sim:y\" }", &["line 1", "spi"]),
            (
                "gpio.Relay = { pin = \"sim:0/1\", modes = [\"output\"] }",
                &["line 1", "Relay"],
            ),
            ("gpio.relay = { pin = ", &["line 1"]),
        ];
        for (text, wants) in cases {
            let e = DeviceManifest::parse(text).unwrap_err().to_string();
            for w in *wants {
                assert!(e.contains(w), "{text:?}: {e:?} does not contain {w:?}");
            }
        }
        let e = DeviceManifest::parse(
            "gpio.a = { pin = \"sim:0/1\", modes = [\"output\"] }\ngpio.b = { pin = \"sim:0/1\", modes = [\"input\"] }",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("gpio.a") && e.contains("gpio.b") && e.contains("sim:0/1"),
            "{e}"
        );
        // Two spellings of one Linux pin, port, SPI device or sensor bus
        // are one place.
        for (a, b) in [
            (
                "gpio.a = { pin = \"linux:gpiochip0/22\", modes = [\"input\"] }",
                "gpio.b = { pin = \"linux:/dev/gpiochip0/22\", modes = [\"input\"] }",
            ),
            (
                "serial.a = { port = \"linux:/dev/ttyS0\", baud = 9600 }",
                "serial.b = { port = \"linux:/dev//ttyS0\", baud = 9600 }",
            ),
            (
                "serial.a = { port = \"linux:/dev/ttyS0\", baud = 9600 }",
                "serial.b = { port = \"linux:/dev/../dev/./ttyS0\", baud = 9600 }",
            ),
        ] {
            let e = DeviceManifest::parse(&format!("{a}\n{b}\n"))
                .map(|_| String::new())
                .unwrap_or_else(|e| e.to_string());
            assert!(e.contains(".a") && e.contains(".b"), "{a} / {b}: {e:?}");
        }
        assert_eq!(same_place("linux:gpiochip0"), "linux:/dev/gpiochip0");
        assert_eq!(same_place("linux:/dev/x/../y"), "linux:/dev/y");
        assert_eq!(same_place("sim:bme280"), "sim:bme280");
    }

    /// A manifest as a test writes it: names to modes or addresses.
    #[derive(Debug, Clone)]
    struct Spec {
        gpio: BTreeMap<String, (u32, BTreeSet<usize>)>,
        i2c: BTreeMap<String, BTreeSet<u8>>,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let name = "[a-d][a-d0-9_-]{0,3}";
        (
            proptest::collection::btree_map(
                name,
                proptest::collection::btree_set(0usize..5, 1..4),
                0..5,
            ),
            proptest::collection::btree_map(
                name,
                proptest::collection::btree_set(0u8..0x80, 1..4),
                0..5,
            ),
        )
            .prop_map(|(g, i2c)| Spec {
                gpio: g
                    .into_iter()
                    .enumerate()
                    .map(|(k, (n, m))| (n, (k as u32, m)))
                    .collect(),
                i2c,
            })
    }

    fn text(spec: &Spec) -> String {
        let mut t = String::new();
        for (n, (line, modes)) in &spec.gpio {
            let modes: Vec<String> = modes
                .iter()
                .map(|&m| format!("\"{}\"", PinMode::ALL[m].name()))
                .collect();
            t += &format!(
                "gpio.{n} = {{ pin = \"sim:0/{line}\", modes = [{}] }}\n",
                modes.join(", ")
            );
        }
        for (n, addrs) in &spec.i2c {
            let a: Vec<String> = addrs.iter().map(|a| format!("{a:#04x}")).collect();
            t += &format!(
                "i2c.{n} = {{ bus = \"sim:bme280\", addresses = [{}] }}\n",
                a.join(", ")
            );
        }
        t
    }

    proptest! {
        /// The policy allows exactly what the manifest's text says: every
        /// name, mode and address asked about, granted or not.
        #[test]
        fn a_manifest_never_grants_more_than_it_says(
            spec in spec(),
            asks in proptest::collection::vec(("[a-e][a-d0-9_-]{0,3}", 0usize..5, 0u16..0x100), 0..40),
        ) {
            let m = DeviceManifest::parse(&text(&spec)).unwrap();
            // The random questions, and every granted name in every mode.
            let mut all = asks.clone();
            for n in spec.gpio.keys().chain(spec.i2c.keys()) {
                all.extend((0..5).map(|k| (n.clone(), k, 0x76)));
            }
            for (n, addrs) in &spec.i2c {
                all.extend(addrs.iter().map(|&a| (n.clone(), 0, u16::from(a))));
            }
            for (name, mode, addr) in &all {
                let mode_ok = spec.gpio.get(name).map(|(_, ms)| ms.contains(mode));
                match m.gpio_open(name, PinMode::ALL[*mode]) {
                    Ok(g) => {
                        prop_assert_eq!(mode_ok, Some(true));
                        prop_assert_eq!(g.pin.line, spec.gpio[name].0);
                    }
                    Err(PolicyError::ModeNotAllowed) => prop_assert_eq!(mode_ok, Some(false)),
                    Err(e) => {
                        prop_assert_eq!(e, PolicyError::NotGranted);
                        prop_assert_eq!(mode_ok, None);
                    }
                }
                let addr_ok = spec.i2c.get(name).map(|a| u8::try_from(*addr).is_ok_and(|x| a.contains(&x)));
                match m.i2c_access(name, *addr) {
                    Ok(_) => prop_assert_eq!(addr_ok, Some(true)),
                    Err(PolicyError::AddressNotAllowed) => prop_assert_eq!(addr_ok, Some(false)),
                    Err(e) => {
                        prop_assert_eq!(e, PolicyError::NotGranted);
                        prop_assert_eq!(addr_ok, None);
                    }
                }
            }
            // And it survives being written out and read back.
            prop_assert_eq!(DeviceManifest::parse(&m.to_toml()).unwrap(), m);
        }
    }

    /// SPI and sensor grants besides the others: names to clocks and
    /// modes, addresses and rates.
    #[derive(Debug, Clone)]
    struct MoreSpec {
        base: Spec,
        spi: BTreeMap<String, (u32, BTreeSet<u8>)>,
        sensor: BTreeMap<String, (bool, u32)>,
    }

    fn more_spec() -> impl Strategy<Value = MoreSpec> {
        let name = "[a-d][a-d0-9_-]{0,3}";
        (
            spec(),
            proptest::collection::btree_map(
                name,
                (
                    1u32..20_000_000,
                    proptest::collection::btree_set(0u8..4, 1..4),
                ),
                0..5,
            ),
            proptest::collection::btree_map(
                name,
                (any::<bool>(), 0u32..=crate::sensor::MAX_RATE_MHZ),
                0..5,
            ),
        )
            .prop_map(|(base, spi, sensor)| MoreSpec { base, spi, sensor })
    }

    fn more_text(spec: &MoreSpec) -> String {
        let mut t = text(&spec.base);
        for (k, (n, (hz, modes))) in spec.spi.iter().enumerate() {
            let m: Vec<String> = modes.iter().map(u8::to_string).collect();
            t += &format!(
                "spi.{n} = {{ device = \"linux:/dev/spidev0.{k}\", max_hz = {hz}, modes = [{}] }}\n",
                m.join(", ")
            );
        }
        for (k, (n, (high, rate))) in spec.sensor.iter().enumerate() {
            let address = if *high { 0x77 } else { 0x76 };
            t += &format!(
                "sensor.{n} = {{ device = \"linux:/dev/i2c-{k}\", address = {address:#04x}, max_rate_mhz = {rate} }}\n"
            );
        }
        t
    }

    proptest! {
        /// SPI and sensor grants allow exactly what the text says: every
        /// name, mode, clock and rate asked about, granted or not, and a
        /// grant of one kind opens nothing of another.
        #[test]
        fn spi_and_sensor_grants_never_grant_more_than_they_say(
            spec in more_spec(),
            asks in proptest::collection::vec(
                ("[a-e][a-d0-9_-]{0,3}", 0u8..4, 0u32..25_000_000, 0u32..150_000),
                0..40,
            ),
        ) {
            let m = DeviceManifest::parse(&more_text(&spec)).unwrap();
            let mut all = asks.clone();
            for (n, (hz, modes)) in &spec.spi {
                for &mode in modes {
                    all.extend([(n.clone(), mode, *hz, 0), (n.clone(), mode, hz + 1, 0)]);
                }
            }
            for (n, (_, rate)) in &spec.sensor {
                all.extend([(n.clone(), 0, 1, *rate), (n.clone(), 0, 1, rate + 1)]);
            }
            for n in spec.base.gpio.keys().chain(spec.base.i2c.keys()) {
                all.push((n.clone(), 0, 1, 0));
            }
            for (name, mode, hz, rate) in &all {
                let config = crate::spi::SpiConfig {
                    mode: crate::spi::SpiMode::new(u64::from(*mode)).unwrap(),
                    hz: *hz,
                };
                match (m.spi_open(name), spec.spi.get(name)) {
                    (Ok(g), Some((max, modes))) => {
                        let want = if !modes.contains(mode) {
                            Err(crate::spi::SpiRefusal::ModeNotAllowed)
                        } else if *hz == 0 || hz > max {
                            Err(crate::spi::SpiRefusal::FrequencyNotAllowed)
                        } else {
                            Ok(())
                        };
                        prop_assert_eq!(g.check(&config), want);
                        prop_assert_eq!(g.check(&g.default_config()), Ok(()));
                    }
                    (Err(e), None) => prop_assert_eq!(e, PolicyError::NotGranted),
                    (got, want) => prop_assert!(false, "{name}: {got:?} for {want:?}"),
                }
                match (m.sensor_open(name), spec.sensor.get(name)) {
                    (Ok(g), Some((high, max))) => {
                        prop_assert_eq!(g.allows_rate(*rate), rate <= max);
                        prop_assert_eq!(g.address, if *high { 0x77 } else { 0x76 });
                    }
                    (Err(e), None) => prop_assert_eq!(e, PolicyError::NotGranted),
                    (got, want) => prop_assert!(false, "{name}: {got:?} for {want:?}"),
                }
            }
            prop_assert_eq!(DeviceManifest::parse(&m.to_toml()).unwrap(), m);
        }
    }
}
