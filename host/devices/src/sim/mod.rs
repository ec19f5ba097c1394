//! Simulated devices: what `sim:` in a manifest names.
//!
//! ```text
//!   SimWorld (one per process) ── scenario ──┐
//!     ├─ banks: "0" ─► SimGpioBank ─► SimPin (embedded-hal digital traits)
//!     ├─ buses: "bme280" ─► SimI2cBus (embedded-hal I2c) ─► 0x76: SimBme280
//!     ├─ serial: "loopback" ─► SimSerialPort (what is written comes back)
//!     ├─ spi: "bme280" ─► SimSpiDevice (embedded-hal SpiDevice) ─► SimBme280
//!     └─ framebuffers: "<name>" ─► SimFramebuffer ─► DIR/sim-<name>.fb
//! ```
//! Every device keeps a log of each operation that reached it, so a test can
//! prove that a refused operation touched nothing. A device can be unplugged
//! (`unplug`): from then on every operation on it fails as lost.

pub mod bme280;
pub mod framebuffer;
pub mod gpio;
pub mod i2c;
pub mod serial;
pub mod spi;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use bme280::SimBme280;
pub use framebuffer::{FramebufferOp, SimFramebuffer, SimFramebufferError};
pub use gpio::{GpioOp, SimGpioBank, SimGpioError, SimPin};
pub use i2c::{I2cOp, SimI2cBus, SimI2cDevice, SimI2cError};
pub use serial::{SerialOp, SimSerialPort};
pub use spi::{SimSpiChip, SimSpiDevice, SimSpiError, SpiOp};

use crate::scenario::Scenario;

/// Most operations a log keeps: a long run (a watched input is read every
/// turn of the drive loop) must not grow it without bound; the oldest half
/// goes.
pub const MAX_LOG: usize = 1 << 16;

pub(crate) fn push_log<T>(log: &mut Vec<T>, op: T) {
    if log.len() >= MAX_LOG {
        log.drain(..MAX_LOG / 2);
    }
    log.push(op);
}

/// The simulated devices of one process, made on first use.
#[derive(Clone, Default)]
pub struct SimWorld {
    scenario: Arc<Scenario>,
    banks: BTreeMap<String, SimGpioBank>,
    buses: BTreeMap<String, SimI2cBus>,
    serial: BTreeMap<String, SimSerialPort>,
    framebuffers: BTreeMap<String, SimFramebuffer>,
    /// Where simulated devices keep files (a framebuffer's frame); None:
    /// in memory only.
    dir: Option<PathBuf>,
    spi: BTreeMap<String, SimSpiDevice>,
}

/// Simulated bus kinds `sim:<kind>` may name.
pub const SIM_BUSES: &[&str] = &["bme280"];

impl SimWorld {
    /// A world driven by `scenario`.
    pub fn new(scenario: Scenario) -> Self {
        SimWorld {
            scenario: Arc::new(scenario),
            ..Default::default()
        }
    }

    /// The bank called `chip`.
    pub fn bank(&mut self, chip: &str) -> SimGpioBank {
        let scenario = self.scenario.clone();
        self.banks
            .entry(chip.to_string())
            .or_insert_with(|| SimGpioBank::new(chip, scenario))
            .clone()
    }

    /// The bus called `kind` (`bme280`: a BME280 at 0x76), or None for an
    /// unknown kind.
    pub fn bus(&mut self, kind: &str) -> Option<SimI2cBus> {
        if !SIM_BUSES.contains(&kind) {
            return None;
        }
        let scenario = self.scenario.clone();
        Some(
            self.buses
                .entry(kind.to_string())
                .or_insert_with(|| {
                    let bus = SimI2cBus::new();
                    bus.attach(
                        crate::bme280::ADDRESS,
                        Box::new(SimBme280::new(scenario.clone())),
                    );
                    bus
                })
                .clone(),
        )
    }

    /// The framebuffer called `name` (a `sim:<name>` display grant, checked
    /// by the manifest), keeping its frame in `DIR/sim-<name>.fb`.
    pub fn framebuffer(&mut self, name: &str) -> SimFramebuffer {
        let file = self.dir.as_deref().map(|d| framebuffer_file(d, name));
        self.framebuffers
            .entry(name.to_string())
            .or_insert_with(|| SimFramebuffer::new(file))
            .clone()
    }

    /// Where simulated devices keep files from now on (a spawn builds a
    /// process in a hidden directory, then renames it).
    pub fn set_dir(&mut self, dir: Option<&Path>) {
        self.dir = dir.map(Path::to_path_buf);
        for (name, fb) in &self.framebuffers {
            fb.set_file(dir.map(|d| framebuffer_file(d, name)));
        }
    }

    /// The framebuffers made so far.
    pub fn framebuffers(&self) -> &BTreeMap<String, SimFramebuffer> {
        &self.framebuffers
    }

    /// The banks made so far.
    pub fn banks(&self) -> &BTreeMap<String, SimGpioBank> {
        &self.banks
    }

    /// The buses made so far.
    pub fn buses(&self) -> &BTreeMap<String, SimI2cBus> {
        &self.buses
    }

    /// The serial port called `kind` (`loopback`), or None for an unknown
    /// kind.
    pub fn serial_port(&mut self, kind: &str) -> Option<SimSerialPort> {
        if !crate::serial::SIM_PORTS.contains(&kind) {
            return None;
        }
        Some(self.serial.entry(kind.to_string()).or_default().clone())
    }

    /// The serial ports made so far.
    pub fn serial_ports(&self) -> &BTreeMap<String, SimSerialPort> {
        &self.serial
    }

    /// The SPI device called `kind` (`bme280`: a BME280 on its SPI
    /// interface, a chip of its own), or None for an unknown kind.
    pub fn spi_device(&mut self, kind: &str) -> Option<SimSpiDevice> {
        if !crate::spi::SIM_SPI_DEVICES.contains(&kind) {
            return None;
        }
        let scenario = self.scenario.clone();
        Some(
            self.spi
                .entry(kind.to_string())
                .or_insert_with(|| SimSpiDevice::new(Box::new(SimBme280::new(scenario))))
                .clone(),
        )
    }

    /// The SPI devices made so far.
    pub fn spi_devices(&self) -> &BTreeMap<String, SimSpiDevice> {
        &self.spi
    }
}

/// The file simulated framebuffer `name` of the process in `dir` keeps its
/// frame in (`crate::display::FrameFile`).
pub fn framebuffer_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("sim-{name}.fb"))
}
