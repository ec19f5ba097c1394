//! `phantom:devices`: the devices a process is granted, one file per
//! interface (`gpio.rs`, `i2c.rs`, `serial.rs`, `display.rs`, `spi.rs`,
//! `sensor.rs`), over the backends of `phantom-devices`.
//!
//! ```text
//!   guest call ─► policy (the manifest: DIR/NAME/devices.toml) ─► refused: the policy
//!        │                                                        error, nothing touched
//!        ▼
//!   ProcessCtx::device_op ─► gate: journal `device-read` (live: the backend; replay:
//!        │                   the recorded result, no backend touched)
//!        ▼
//!   DevicesState (persisted section `devices`): open devices in the order opened,
//!        │       each with its mode and the output level the guest set;
//!        │       DisplaysState (section `display`): each display's canvas and frame
//!        ▼
//!   gpio.set-level, display.flush ─► exit: Output::Device (held until the call is
//!                     durable) ─► drive loop release ─► Devices::apply ─► the pin,
//!                     the framebuffer
//!   restore ─► replay ─► Devices::reacquire: each device in the order opened,
//!                        its state re-applied; gone ─► `device-lost` on next use
//!   backends: pins (GpioPin) and buses (I2cBus) are simulated or Linux
//!   (gpiocdev, i2c-dev); one that cannot be opened or is gone is `Lost`, and
//!   why (the device, the OS error) is kept for a warning and `phantom devices`
//! ```
//! Device numbers are plain `u32`s, not WIT resources: what a number names
//! is host state persisted with the guest's memory, like timers, so nothing
//! about the component's handle tables has to be rebuilt (see DESIGN.md,
//! "Devices").

pub(crate) mod display;
pub(crate) mod gpio;
pub(crate) mod i2c;
pub(crate) mod sensor;
pub(crate) mod serial;
pub(crate) mod spi;

use std::collections::BTreeMap;
use std::path::Path;

use phantom_devices::display::Geometry;
use phantom_devices::manifest::{BusRef, PinRef};
use phantom_devices::scenario::Scenario;
use phantom_devices::sim::{SimFramebuffer, SimWorld};
use phantom_devices::{
    DeviceManifest, GpioFault, GpioPin, I2cBus, I2cFault, LinuxLines, PinMode, open_bus, open_pin,
};
use serde::{Deserialize, Serialize};

use crate::ctx::ProcessCtx;
use crate::journal::Entry;

pub use display::{DisplayFrames, DisplaysState, FrameBytes, RenderedFrame, rendered_frame};

/// Most devices a process may hold open at once.
pub const MAX_OPEN_DEVICES: usize = 1024;
/// The stored scenario of a process's simulated devices.
pub const SCENARIO_FILE: &str = "scenario.toml";

/// Most warnings kept for the drive loop to print (a guest that opens a
/// missing device in a loop must not grow them without bound).
const MAX_WARNINGS: usize = 64;

/// Journal codes of device failures (`device-read` entries). 1 to 6 are the
/// I2C kinds (`i2c.rs`).
pub(crate) const CODE_OTHER: u8 = 7;
/// The device is gone.
pub(crate) const CODE_LOST: u8 = 8;

/// An open device, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDevice {
    /// The number the guest holds.
    pub handle: u32,
    /// The grant's logical name.
    pub name: String,
    /// What it is and what the guest set.
    #[serde(flatten)]
    pub kind: OpenKind,
}

/// What an open device is, and the state the guest set on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "interface", rename_all = "kebab-case")]
pub enum OpenKind {
    /// A pin.
    Gpio {
        /// The pin (`sim:0/17`).
        pin: String,
        /// Its mode.
        mode: PinMode,
        /// The level the guest last set (outputs; re-applied at restore).
        high: bool,
        /// The edges delivered as events (inputs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watch: Option<WatchEdge>,
    },
    /// An I2C bus.
    I2c {
        /// The bus (`sim:bme280`).
        bus: String,
    },
    /// A serial port (`serial.rs`).
    Serial {
        /// The port (`linux:/dev/ttyUSB0`).
        port: String,
        /// The rate the guest set (re-applied at restore).
        baud: u32,
        /// Whether what arrives is delivered as events.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        watch: bool,
    },
    /// A display (its pixels are in the `display` section).
    Display {
        /// The display (`sim:framebuffer`).
        device: String,
        /// Its size and pixel format, as granted when opened.
        geometry: Geometry,
    },
    /// An SPI device (`spi.rs`).
    Spi {
        /// The device (`sim:bme280`, `linux:/dev/spidev0.0`).
        device: String,
        /// The mode and clock the guest set (re-applied at restore).
        config: phantom_devices::SpiConfig,
    },
    /// A sensor (`sensor.rs`).
    Sensor {
        /// The sensor (`sim:bme280`, `linux:/dev/i2c-1`).
        device: String,
        /// Its I2C address.
        address: u8,
        /// The sampling rate the guest set, in millihertz (0: none).
        rate_mhz: u32,
        /// Process time of the next sample (when `rate_mhz` > 0).
        next_ns: u64,
    },
}

/// Which edges of a watched input are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchEdge {
    /// Low to high.
    Rising,
    /// High to low.
    Falling,
    /// Either.
    Both,
}

/// The `devices` section: what the guest holds open, in the order opened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesState {
    /// Open devices, oldest first.
    pub open: Vec<OpenDevice>,
    /// The last number handed out (numbers are never reused).
    pub last_handle: u32,
}

/// An effect on a device, released once the call that made it is durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceEffect {
    /// Drive output `handle` to a level.
    GpioLevel {
        /// The pin's number.
        handle: u32,
        /// High or low.
        high: bool,
    },
    /// Write bytes to port `handle` (`serial.rs`).
    SerialWrite {
        /// The port's number.
        handle: u32,
        /// What is left to write.
        bytes: Vec<u8>,
    },
    /// Set port `handle`'s line rate, after the writes before it (they
    /// leave at the rate they were written at).
    SerialSetBaud {
        /// The port's number.
        handle: u32,
        /// The rate (the grant allows it).
        baud: u32,
    },
    /// Let go of closed port `handle`, after the writes before it.
    SerialClose {
        /// The port's number.
        handle: u32,
    },
    /// Show a frame on display `handle` (`display.rs`).
    DisplayFrame {
        /// The display's number.
        handle: u32,
        /// Which flush of the display made it (1, 2, ...).
        flush: u64,
        /// Its pixels; None once a newer frame superseded it, and in an
        /// effect restored from a checkpoint (the restore shows the newest
        /// frame itself, so a checkpoint never holds pixels twice).
        #[serde(skip)]
        frame: Option<FrameBytes>,
    },
}

/// A device the host holds for an open number.
#[derive(Clone)]
enum Acquired {
    Pin(GpioPin),
    Bus(I2cBus),
    Serial(serial::SharedPort),
    Display(SimFramebuffer),
    Spi(spi::SharedSpi),
    Sensor(sensor::SharedSensor),
    /// Gone: every use is `device-lost`.
    Lost,
}

/// A process's devices: its grants, what it holds, and the backends.
#[derive(Default)]
pub struct Devices {
    /// What the process is granted (fixed at spawn).
    pub manifest: DeviceManifest,
    /// Persisted: what the process holds.
    pub state: DevicesState,
    /// Persisted: the pixels of the open displays.
    pub displays: DisplaysState,
    /// The backends acquired for open numbers (made again after a restore).
    acquired: BTreeMap<u32, Acquired>,
    /// The simulated devices.
    sim: SimWorld,
    /// The level each watched input had at the last look (not persisted:
    /// after a restore the first look sets it, so edges while the host was
    /// down are not delivered; the guest can read the level).
    baselines: BTreeMap<u32, bool>,
    /// Serial state of the run (not persisted).
    serial: serial::SerialLive,
    /// The Linux GPIO lines held (a line is requested once, whatever the
    /// numbers open on it).
    linux_lines: LinuxLines,
    /// Why each lost number is lost, where the backend said (the device and
    /// the OS error): `phantom devices` shows it.
    lost_why: BTreeMap<u32, String>,
    /// Devices found gone, or that could not be opened, since the drive
    /// loop last took them (it prints them as warnings).
    warnings: Vec<String>,
}

impl Devices {
    /// Devices for `manifest`, simulated ones driven by `scenario`.
    pub fn new(manifest: DeviceManifest, scenario: Scenario) -> Self {
        Devices {
            manifest,
            state: DevicesState::default(),
            displays: DisplaysState::default(),
            acquired: BTreeMap::new(),
            sim: SimWorld::new(scenario),
            baselines: BTreeMap::new(),
            serial: Default::default(),
            linux_lines: LinuxLines::default(),
            lost_why: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// The devices of the process in `dir` (its stored manifest and
    /// scenario; none: no grants).
    pub fn load(dir: &Path) -> Result<Self, String> {
        let read = |file: &str| match std::fs::read_to_string(dir.join(file)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", dir.join(file).display())),
        };
        let manifest = match read(crate::process::DEVICES_FILE)? {
            Some(t) => DeviceManifest::parse(&t).map_err(|e| e.to_string())?,
            None => DeviceManifest::default(),
        };
        let scenario = match read(SCENARIO_FILE)? {
            Some(t) => Scenario::parse(&t)?,
            None => Scenario::default(),
        };
        let mut devices = Self::new(manifest, scenario);
        devices.set_dir(dir);
        Ok(devices)
    }

    /// Where the simulated devices of the process keep files (a
    /// framebuffer's frame): its directory.
    pub fn set_dir(&mut self, dir: &Path) {
        self.sim.set_dir(Some(dir));
    }

    /// The simulated devices (for tests and `phantom devices`).
    pub fn sim(&self) -> &SimWorld {
        &self.sim
    }

    /// The open device `handle`.
    pub fn find(&self, handle: u32) -> Option<&OpenDevice> {
        self.state.open.iter().find(|d| d.handle == handle)
    }

    /// Takes open number `handle` out of the persisted state if it is of
    /// the kind `is` accepts (each interface closes only its own numbers);
    /// false if none. What else a close lets go of is the caller's.
    /// Whether the process holds the grant `name` open as a device that
    /// `is` (one holder per serial port, display, SPI chip select).
    fn holds_open(&self, name: &str, is: impl Fn(&OpenKind) -> bool) -> bool {
        self.state
            .open
            .iter()
            .any(|d| d.name == name && is(&d.kind))
    }

    fn forget(&mut self, handle: u32, is: impl Fn(&OpenKind) -> bool) -> bool {
        match self
            .state
            .open
            .iter()
            .position(|d| d.handle == handle && is(&d.kind))
        {
            Some(k) => {
                self.state.open.remove(k);
                true
            }
            None => false,
        }
    }

    fn find_mut(&mut self, handle: u32) -> Option<&mut OpenDevice> {
        self.state.open.iter_mut().find(|d| d.handle == handle)
    }

    fn set_time(&self, now_ns: u64) {
        for bank in self.sim.banks().values() {
            bank.set_time(now_ns);
        }
        for bus in self.sim.buses().values() {
            bus.set_time(now_ns);
        }
        for spi in self.sim.spi_devices().values() {
            spi.set_time(now_ns);
        }
    }

    /// Acquires a pin and puts it in `mode` (driving `high` if an output);
    /// Err: why it cannot be had.
    fn acquire_pin(&mut self, pin: &PinRef, mode: PinMode, high: bool) -> Result<Acquired, String> {
        open_pin(pin, mode, high, &mut self.sim, &mut self.linux_lines)
            .map(Acquired::Pin)
            .map_err(|f| gpio_why(&f))
    }

    /// Opens a bus; Err: why it cannot be had.
    fn acquire_bus(&mut self, bus: &BusRef) -> Result<Acquired, String> {
        open_bus(bus, &mut self.sim)
            .map(Acquired::Bus)
            .map_err(|f| i2c_why(&f))
    }

    /// Marks open number `handle` lost because of `why`, and warns once,
    /// naming it.
    fn lose(&mut self, handle: u32, why: String) -> Acquired {
        let name = self.find(handle).map_or("?", |d| d.name.as_str());
        let warning = format!("device `{name}` is gone ({why}): the guest gets `device-lost`");
        self.warn(warning);
        self.lost_why.insert(handle, why);
        self.acquired.insert(handle, Acquired::Lost);
        Acquired::Lost
    }

    /// Keeps a warning for the drive loop.
    pub(crate) fn warn(&mut self, warning: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(warning);
        }
    }

    /// The warnings since the last call: devices found gone, or that could
    /// not be opened, with the reason (the drive loop prints them).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The open numbers whose device is gone, with why where the backend
    /// said (`phantom devices`).
    pub fn lost(&self) -> BTreeMap<u32, String> {
        self.acquired
            .iter()
            .filter(|(_, a)| matches!(a, Acquired::Lost))
            .map(|(h, _)| {
                let why = self.lost_why.get(h).cloned();
                (*h, why.unwrap_or_else(|| "device-lost".to_string()))
            })
            .collect()
    }

    /// The backend of open number `handle`, acquired (and its state
    /// re-applied) if it was not yet since the last restore.
    fn acquired(&mut self, handle: u32) -> Acquired {
        if let Some(a) = self.acquired.get(&handle) {
            return a.clone();
        }
        let Some(dev) = self.find(handle).cloned() else {
            return Acquired::Lost;
        };
        let a = match &dev.kind {
            OpenKind::Gpio {
                pin, mode, high, ..
            } => match pin.parse::<PinRef>() {
                Ok(p) => self
                    .acquire_pin(&p, *mode, *high)
                    .unwrap_or_else(|why| self.lose(handle, why)),
                Err(_) => Acquired::Lost,
            },
            OpenKind::I2c { bus } => match bus.parse::<BusRef>() {
                Ok(b) => self
                    .acquire_bus(&b)
                    .unwrap_or_else(|why| self.lose(handle, why)),
                Err(_) => Acquired::Lost,
            },
            OpenKind::Serial { port, baud, .. } => match port.parse() {
                Ok(p) => self
                    .acquire_serial(&p, *baud)
                    .unwrap_or_else(|why| self.lose(handle, why)),
                Err(_) => Acquired::Lost,
            },
            OpenKind::Display { device, geometry } => {
                self.acquire_display(handle, device, *geometry)
            }
            OpenKind::Spi { device, config } => match device.parse() {
                Ok(d) => self.acquire_spi(&d, config),
                Err(_) => Acquired::Lost,
            },
            OpenKind::Sensor {
                device, address, ..
            } => match device.parse() {
                Ok(d) => self.acquire_sensor(&d, *address).unwrap_or(Acquired::Lost),
                Err(_) => Acquired::Lost,
            },
        };
        self.acquired.insert(handle, a.clone());
        a
    }

    /// After a restore: acquires every open device again, in the order
    /// opened, and re-applies what the guest set. Returns those that are
    /// gone (their next use is `device-lost`), each as "`name` is gone",
    /// with why in parentheses where the backend said (the device and the
    /// OS error).
    pub fn reacquire(&mut self) -> Vec<String> {
        self.acquired.clear();
        self.lost_why.clear();
        let handles: Vec<(u32, String, bool)> = self
            .state
            .open
            .iter()
            .map(|d| (d.handle, d.name.clone(), self.still_granted(d)))
            .collect();
        let mut lost = Vec::new();
        for (h, name, granted) in handles {
            // A grant taken out of the manifest is gone too, and so is one
            // that names another device now or no longer allows what the
            // guest set (the device opened is never driven again).
            if !granted {
                self.acquired.insert(h, Acquired::Lost);
                let why = if self.grant_named(h) {
                    "its grant in devices.toml now names another device, or no longer allows what the process set"
                } else {
                    "its grant was taken out of devices.toml"
                };
                self.lost_why.insert(h, why.to_string());
            }
            if matches!(self.acquired(h), Acquired::Lost) {
                lost.push(match self.lost_why.get(&h) {
                    Some(why) => format!("`{name}` is gone ({why})"),
                    None => format!("`{name}` is gone"),
                });
            }
        }
        // The restore reports these itself.
        self.warnings.clear();
        lost
    }

    /// Whether the manifest has a grant of open device `h`'s name and kind.
    fn grant_named(&self, h: u32) -> bool {
        let (m, Some(dev)) = (&self.manifest, self.find(h)) else {
            return false;
        };
        let name = dev.name.as_str();
        match dev.kind {
            OpenKind::Gpio { .. } => m.gpio_grant(name).is_some(),
            OpenKind::I2c { .. } => m.i2c_open(name).is_ok(),
            OpenKind::Serial { .. } => m.serial_open(name).is_ok(),
            OpenKind::Display { .. } => m.display_open(name).is_ok(),
            OpenKind::Spi { .. } => m.spi_open(name).is_ok(),
            OpenKind::Sensor { .. } => m.sensor_open(name).is_ok(),
        }
    }

    /// Whether the manifest still grants open device `dev` as it was
    /// opened: the same device, and what the guest set (a pin's mode, a
    /// port's rate, an SPI mode and clock, a sensor's address and rate)
    /// within what the grant allows now.
    fn still_granted(&self, dev: &OpenDevice) -> bool {
        let m = &self.manifest;
        let name = dev.name.as_str();
        match &dev.kind {
            OpenKind::Gpio { pin, mode, .. } => m
                .gpio_grant(name)
                .is_some_and(|g| g.pin.to_string() == *pin && g.modes.contains(mode)),
            OpenKind::I2c { bus } => m.i2c_open(name).is_ok_and(|g| g.bus.to_string() == *bus),
            OpenKind::Serial { port, baud, .. } => m
                .serial_open(name)
                .is_ok_and(|g| g.port.to_string() == *port && g.allows_baud(*baud)),
            OpenKind::Display { .. } => self.display_still_granted(dev),
            OpenKind::Spi { device, config } => m.spi_open(name).is_ok_and(|g| {
                g.device.to_string() == *device
                    && config.hz <= g.max_hz
                    && g.modes.contains(&config.mode)
            }),
            OpenKind::Sensor {
                device,
                address,
                rate_mhz,
                ..
            } => m.sensor_open(name).is_ok_and(|g| {
                g.device.to_string() == *device
                    && g.address == *address
                    && (*rate_mhz == 0 || g.allows_rate(*rate_mhz))
            }),
        }
    }

    /// Performs a released effect. A device that fails is marked lost.
    /// Returns what is left of it when the device has no room for all of
    /// it now (a serial write to a full port): the release stops there and
    /// goes on at the next turn.
    pub fn apply(&mut self, effect: &DeviceEffect) -> Option<DeviceEffect> {
        match *effect {
            DeviceEffect::DisplayFrame {
                handle, ref frame, ..
            } => {
                self.show_frame(handle, frame.as_ref());
                None
            }
            DeviceEffect::GpioLevel { handle, high } => {
                if let Acquired::Pin(mut p) = self.acquired(handle)
                    && let Err(f) = embedded_hal::digital::OutputPin::set_state(&mut p, high.into())
                {
                    self.lose(handle, gpio_why(&f));
                }
                None
            }
            _ => self.apply_serial(effect),
        }
    }

    /// Unplugs every simulated device (tests: a device gone).
    pub fn unplug_all(&mut self) {
        for bank in self.sim.banks().values() {
            bank.unplug();
        }
        for bus in self.sim.buses().values() {
            bus.unplug();
        }
        for port in self.sim.serial_ports().values() {
            port.unplug();
        }
        for fb in self.sim.framebuffers().values() {
            fb.unplug();
        }
        for spi in self.sim.spi_devices().values() {
            spi.unplug();
        }
    }

    /// The next number to hand out, if the process may open another.
    fn next_handle(&self) -> Option<u32> {
        (self.state.open.len() < MAX_OPEN_DEVICES)
            .then(|| self.state.last_handle.checked_add(1))
            .flatten()
    }

    /// Whether `handle` is still acquired and present (a live check).
    fn present(&mut self, handle: u32) -> Result<Vec<u8>, u8> {
        match self.acquired(handle) {
            Acquired::Lost => Err(CODE_LOST),
            // Asking a pin what it drives changes nothing on it.
            Acquired::Pin(mut p) => {
                match embedded_hal::digital::StatefulOutputPin::is_set_high(&mut p) {
                    Ok(_) => Ok(Vec::new()),
                    Err(f) => Err(self.pin_fault(handle, f)),
                }
            }
            Acquired::Bus(_) | Acquired::Serial(_) | Acquired::Spi(_) | Acquired::Sensor(_) => {
                Ok(Vec::new())
            }
            Acquired::Display(fb) => fb.present().map(|()| Vec::new()).map_err(|_| CODE_LOST),
        }
    }
}

/// Why a pin failed, as a warning or `phantom devices` says it: the
/// device and the OS error.
fn gpio_why(f: &GpioFault) -> String {
    match f {
        GpioFault::Lost(m) | GpioFault::Failed(m) => m.clone(),
    }
}

/// Why a bus failed, the same way.
fn i2c_why(f: &I2cFault) -> String {
    match f {
        I2cFault::Lost(m) => m.clone(),
        I2cFault::Kind(k) => format!("{k:?}"),
    }
}

impl Devices {
    /// The journal code of a pin's failure; a pin gone is marked lost.
    fn pin_fault(&mut self, handle: u32, f: GpioFault) -> u8 {
        match f {
            GpioFault::Lost(why) => {
                self.lose(handle, why);
                CODE_LOST
            }
            GpioFault::Failed(why) => {
                let name = self.find(handle).map_or("?", |d| d.name.as_str());
                let warning = format!("device `{name}` failed: {why}");
                self.warn(warning);
                CODE_OTHER
            }
        }
    }
}

impl ProcessCtx {
    /// One device operation through the gate: live, `live` runs on the
    /// backends and its result is journaled; in a replay the recorded
    /// result comes back and no device is touched.
    pub(crate) fn device_op(
        &mut self,
        what: &str,
        live: impl FnOnce(&mut Devices) -> Result<Vec<u8>, u8>,
    ) -> Result<Vec<u8>, u8> {
        let now = self.clock.now_ns();
        self.gate_read(
            what,
            |ctx| {
                // A replay that diverged touches no device.
                if ctx.journal.trouble.is_some() {
                    return Ok(Err(CODE_OTHER));
                }
                ctx.devices.set_time(now);
                Ok(live(&mut ctx.devices))
            },
            |r: &Result<Vec<u8>, u8>| Entry::DeviceRead(r.clone()),
            |e| match e {
                Entry::DeviceRead(r) => Some(r.clone()),
                _ => None,
            },
        )
        .unwrap_or(Err(CODE_OTHER))
    }

    /// Closes open pin (`gpio`) or bus `handle`; false if none. A number
    /// of another interface is not closed by this one's `close`.
    pub(crate) fn device_close(&mut self, handle: u32, gpio: bool) -> bool {
        let closed = self.devices.forget(handle, |k| match k {
            OpenKind::Gpio { .. } => gpio,
            OpenKind::I2c { .. } => !gpio,
            _ => false,
        });
        if !closed {
            return false;
        }
        self.devices.acquired.remove(&handle);
        self.devices.baselines.remove(&handle);
        self.devices.lost_why.remove(&handle);
        true
    }

    /// Looks at every watched input: a change of level that the watch asks
    /// for is admitted as an input (`Input::GpioEdge`, journaled like a
    /// console line), delivered to `handle-device-event`. A full queue
    /// leaves the edge for the next look.
    pub(crate) fn poll_device_events(&mut self) {
        if !self.takes_device_events || self.state.exit_code.is_some() {
            return;
        }
        self.poll_serial();
        self.poll_sensors();
        let watched: Vec<(u32, WatchEdge)> = self
            .devices
            .state
            .open
            .iter()
            .filter_map(|d| match d.kind {
                OpenKind::Gpio {
                    watch: Some(edge),
                    mode,
                    ..
                } if !mode.is_output() => Some((d.handle, edge)),
                _ => None,
            })
            .collect();
        if watched.is_empty() {
            return;
        }
        let now = self.clock.now_ns();
        self.devices.set_time(now);
        for (handle, edge) in watched {
            let Acquired::Pin(mut pin) = self.devices.acquired(handle) else {
                continue;
            };
            let high = match embedded_hal::digital::InputPin::is_high(&mut pin) {
                Ok(h) => h,
                // Gone: the guest learns it at its next use.
                Err(GpioFault::Lost(why)) => {
                    self.devices.lose(handle, why);
                    continue;
                }
                Err(GpioFault::Failed(_)) => continue,
            };
            match self.devices.baselines.insert(handle, high) {
                Some(before) if before != high => {}
                _ => continue,
            }
            let wanted = match edge {
                WatchEdge::Rising => high,
                WatchEdge::Falling => !high,
                WatchEdge::Both => true,
            };
            let edge = crate::gate::Input::GpioEdge {
                pin: handle,
                high,
                time_ns: now,
            };
            if wanted && self.admit(edge).is_err() {
                self.devices.baselines.insert(handle, !high);
            }
        }
    }
}

/// Adds `phantom:devices` to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<ProcessCtx>) -> wasmtime::Result<()> {
    gpio::add_to_linker(linker)?;
    i2c::add_to_linker(linker)?;
    serial::add_to_linker(linker)?;
    display::add_to_linker(linker)?;
    spi::add_to_linker(linker)?;
    sensor::add_to_linker(linker)
}

/// What `phantom devices` shows: a process's grants, and the devices it
/// held open at its newest checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct DevicesReport {
    /// The stored manifest.
    pub grants: DeviceManifest,
    /// The newest checkpoint (live: the one the running process last
    /// committed).
    pub checkpoint: Option<u64>,
    /// The states are the running process's now (asked of the host that
    /// runs it), not its newest checkpoint's.
    pub live: bool,
    /// Open devices, in the order opened, with what the guest set.
    pub open: Vec<OpenDevice>,
    /// Of those, the ones whose device is gone, by number, with why (the
    /// device and the OS error). Known only to a host that runs the
    /// process (`live`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lost: BTreeMap<u32, String>,
}

/// The devices of process `name` of data directory `data`: live if a host
/// runs it (through the control socket), else as of its newest checkpoint.
pub fn report_live(data: &Path, name: &str, dir: &Path) -> Result<DevicesReport, String> {
    let mut r = report(dir)?;
    let asked = crate::control::request(
        data,
        &crate::control::Request::Devices {
            name: name.to_string(),
        },
    );
    if let Ok(v) = asked
        && v["running"] == true
    {
        r.open = serde_json::from_value(v["open"].clone())
            .map_err(|e| format!("the host's answer cannot be read: {e}"))?;
        r.checkpoint = v["checkpoint"].as_u64().or(r.checkpoint);
        r.lost = match v.get("lost") {
            Some(lost) => serde_json::from_value(lost.clone())
                .map_err(|e| format!("the host's answer cannot be read: {e}"))?,
            None => BTreeMap::new(),
        };
        r.live = true;
    }
    Ok(r)
}

/// The devices of the process in `dir`, as of its newest checkpoint.
pub fn report(dir: &Path) -> Result<DevicesReport, String> {
    let devices = Devices::load(dir)?;
    let store = phantom_snapshots::CheckpointStore::open(dir)
        .map_err(|e| format!("cannot open the checkpoints of {}: {e}", dir.display()))?;
    let checkpoint = store.latest_id();
    let open = match checkpoint {
        Some(id) => {
            let sections = store
                .sections_of(id)
                .map_err(|e| format!("checkpoint {id}: {e}"))?;
            match sections.get(<DevicesState as crate::persist::Section>::NAME) {
                Some(bytes) => {
                    <DevicesState as crate::persist::Section>::restore(bytes)
                        .map_err(|e| format!("checkpoint {id}: its devices section: {e}"))?
                        .open
                }
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    Ok(DevicesReport {
        grants: devices.manifest,
        checkpoint,
        live: false,
        open,
        lost: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants of a GPIO chip and an I2C bus that do not exist (this
    /// machine has neither).
    const MISSING: &str = "gpio.relay = { pin = \"linux:/dev/phantom-no-such-gpiochip/17\", modes = [\"output\"] }\ni2c.env = { bus = \"linux:/dev/phantom-no-such-i2c\", addresses = [0x76] }\n";

    /// What a restore does with open Linux devices that are not there:
    /// each is lost, the restore's warning names it with the device and
    /// the OS error, `lost` says why, and its next use is `device-lost`.
    #[test]
    fn linux_devices_missing_at_a_restore_are_lost_naming_the_os_error() {
        let manifest = DeviceManifest::parse(MISSING).unwrap();
        let mut d = Devices::new(manifest, Scenario::default());
        d.state.open = vec![
            OpenDevice {
                handle: 1,
                name: "relay".into(),
                kind: OpenKind::Gpio {
                    pin: "linux:/dev/phantom-no-such-gpiochip/17".into(),
                    mode: PinMode::Output,
                    high: true,
                    watch: None,
                },
            },
            OpenDevice {
                handle: 2,
                name: "env".into(),
                kind: OpenKind::I2c {
                    bus: "linux:/dev/phantom-no-such-i2c".into(),
                },
            },
        ];
        d.state.last_handle = 2;
        let gone = d.reacquire();
        assert_eq!(gone.len(), 2, "{gone:?}");
        assert!(
            gone[0].starts_with(
                "`relay` is gone (/dev/phantom-no-such-gpiochip line 17: No such file or directory"
            ),
            "{gone:?}"
        );
        assert!(
            gone[1]
                .starts_with("`env` is gone (/dev/phantom-no-such-i2c: No such file or directory"),
            "{gone:?}"
        );
        assert!(
            d.take_warnings().is_empty(),
            "the restore reports them, the drive loop not again"
        );
        let lost = d.lost();
        assert_eq!(lost.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert!(
            lost[&1].contains("line 17") && lost[&1].contains("os error 2"),
            "{lost:?}"
        );
        assert_eq!(d.present(1), Err(CODE_LOST));
        assert_eq!(d.present(2), Err(CODE_LOST));
        // The level the guest set is released to nothing, without a panic.
        assert_eq!(
            d.apply(&DeviceEffect::GpioLevel {
                handle: 1,
                high: false
            }),
            None
        );
        assert!(d.sim().banks().is_empty() && d.sim().buses().is_empty());
        // A grant taken out while down: lost, and why.
        d.manifest = DeviceManifest::parse(
            "i2c.env = { bus = \"linux:/dev/phantom-no-such-i2c\", addresses = [0x76] }\n",
        )
        .unwrap();
        let gone = d.reacquire();
        assert!(
            gone[0] == "`relay` is gone (its grant was taken out of devices.toml)",
            "{gone:?}"
        );
        assert!(d.lost()[&1].contains("devices.toml"));
    }
    /// A grant changed while no host ran (another pin, a mode taken out,
    /// another bus): the device opened is lost, never driven again, and
    /// the pin the grant names now is not touched either.
    #[test]
    fn a_grant_changed_while_down_loses_the_device_and_drives_nothing() {
        let open = |pin: &str, mode| OpenDevice {
            handle: 1,
            name: "relay".into(),
            kind: OpenKind::Gpio {
                pin: pin.into(),
                mode,
                high: true,
                watch: None,
            },
        };
        let bus = OpenDevice {
            handle: 2,
            name: "env".into(),
            kind: OpenKind::I2c {
                bus: "sim:bme280".into(),
            },
        };
        for (manifest, relay_granted, bus_granted) in [
            // As opened: both come back.
            (
                "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\ni2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\n",
                true,
                true,
            ),
            // The relay moved to pin 18, the bus to another device.
            (
                "gpio.relay = { pin = \"sim:0/18\", modes = [\"output\"] }\ni2c.env = { bus = \"linux:/dev/i2c-9\", addresses = [0x76] }\n",
                false,
                false,
            ),
            // Output no longer allowed on the pin.
            (
                "gpio.relay = { pin = \"sim:0/17\", modes = [\"input\"] }\ni2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\n",
                false,
                true,
            ),
        ] {
            let mut d = Devices::new(
                DeviceManifest::parse(manifest).unwrap(),
                Scenario::default(),
            );
            d.state.open = vec![open("sim:0/17", PinMode::Output), bus.clone()];
            d.state.last_handle = 2;
            let gone = d.reacquire();
            assert_eq!(
                gone.iter().any(|g| g.starts_with("`relay`")),
                !relay_granted,
                "{manifest}: {gone:?}"
            );
            assert_eq!(
                gone.iter().any(|g| g.starts_with("`env`")),
                !bus_granted,
                "{manifest}: {gone:?}"
            );
            let touched: Vec<_> = d.sim().banks().values().flat_map(|b| b.log()).collect();
            // Granted as opened: configured and driven again.
            assert_eq!(
                touched.is_empty(),
                !relay_granted,
                "{manifest}: {touched:?}"
            );
            if !relay_granted {
                assert!(
                    gone[0].contains("now names another device, or no longer allows"),
                    "{gone:?}"
                );
                assert_eq!(d.present(1), Err(CODE_LOST));
            }
        }
    }
}
