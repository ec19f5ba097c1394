//! A Linux GPIO line (`linux:/dev/gpiochip0/17`, or `linux:gpiochip0/17`
//! for `/dev/gpiochip0`): the GPIO character device through `gpiocdev`
//! (uAPI v2, Linux 5.10 or later), one line per request, the consumer
//! label `phantom`. The ioctls are the dependency's; nothing here needs
//! `unsafe`.
//!
//! ```text
//!   PinMode ─► line_config ─► gpiocdev line::Config (direction, bias, drive, value)
//!   LinuxPin::open ─► Request (the line held until dropped) ─► configure:
//!        one reconfiguration (mode and level together) ─► drive / level
//!   gpiocdev::Error ─► fault ─► GpioFault::Lost (gone, cannot be opened) or Failed
//! ```
//! The line stays requested while any open number of it is held; when the
//! last goes the request is dropped and the kernel releases the line (most
//! chips keep the level last driven, none promises it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use gpiocdev::line::{Bias, Config as LineConfig, Direction, Drive, Value};

use crate::gpio::GpioFault;
use crate::manifest::PinMode;

/// The label the kernel shows for lines this host holds (`gpioinfo`).
const CONSUMER: &str = "phantom";

/// A requested line of a Linux GPIO chip.
pub struct LinuxPin {
    request: gpiocdev::Request,
    line: u32,
    /// `/dev/gpiochip0 line 17`, for messages.
    what: String,
}

/// The chip device of a pin's chip: an absolute path as written, else a
/// name under `/dev` (`gpiochip0`).
pub(crate) fn chip_path(chip: &str) -> PathBuf {
    if chip.starts_with('/') {
        PathBuf::from(chip)
    } else {
        Path::new("/dev").join(chip)
    }
}

/// The line's configuration for `mode`, driving `high` if an output. An
/// input's bias is always written (disabled when floating), so a mode
/// change from a pulled input to a floating one takes the pull away.
pub(crate) fn line_config(mode: PinMode, high: bool) -> LineConfig {
    let mut c = LineConfig::default();
    match mode {
        PinMode::Input | PinMode::InputPullUp | PinMode::InputPullDown => {
            c.direction = Some(Direction::Input);
            c.bias = Some(match mode {
                PinMode::InputPullUp => Bias::PullUp,
                PinMode::InputPullDown => Bias::PullDown,
                _ => Bias::Disabled,
            });
        }
        PinMode::Output | PinMode::OutputOpenDrain => {
            c.direction = Some(Direction::Output);
            c.drive = Some(if mode == PinMode::Output {
                Drive::PushPull
            } else {
                Drive::OpenDrain
            });
            c.value = Some(Value::from(high));
        }
    }
    c
}

/// The OS error number inside a gpiocdev error, if it carries one.
fn errno(e: &gpiocdev::Error) -> Option<i32> {
    match e {
        gpiocdev::Error::Os(n) => Some(n.0),
        gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(n)) => Some(n.0),
        _ => None,
    }
}

/// What a gpiocdev error means to the guest. Anything that stops an open
/// (no such chip or line, no permission, not a GPIO chip, the line held
/// by another program) leaves it without the pin: `Lost`. Once open, a
/// chip that went away (`ENODEV`, `ENXIO`, `ESHUTDOWN`, `ENOENT`) is
/// `Lost`; any other refusal is `Failed`. The message names the line and
/// the OS error.
pub(crate) fn fault(what: &str, e: &gpiocdev::Error, opening: bool) -> GpioFault {
    let message = format!("{what}: {e}");
    let gone = matches!(
        errno(e),
        Some(libc::ENODEV | libc::ENXIO | libc::ESHUTDOWN | libc::ENOENT)
    );
    if opening || gone {
        GpioFault::Lost(message)
    } else {
        GpioFault::Failed(message)
    }
}

impl LinuxPin {
    /// Requests line `line` of `chip` in `mode`, an output driving `high`
    /// from the start.
    pub fn open(chip: &str, line: u32, mode: PinMode, high: bool) -> Result<Self, GpioFault> {
        let path = chip_path(chip);
        let what = format!("{} line {line}", path.display());
        let request = gpiocdev::Request::builder()
            .on_chip(&path)
            .with_consumer(CONSUMER)
            .with_line(line)
            .from_line_config(&line_config(mode, high))
            .request()
            .map_err(|e| fault(&what, &e, true))?;
        Ok(LinuxPin {
            request,
            line,
            what,
        })
    }

    /// Puts the line in `mode`, an output driving `high`: one
    /// reconfiguration, so an output never shows another level between.
    pub fn configure(&mut self, mode: PinMode, high: bool) -> Result<(), GpioFault> {
        let mut c = gpiocdev::request::Config::default();
        c.with_line(self.line)
            .from_line_config(&line_config(mode, high));
        self.request
            .reconfigure(&c)
            .map_err(|e| fault(&self.what, &e, false))
    }

    /// Drives an output.
    pub fn drive(&mut self, high: bool) -> Result<(), GpioFault> {
        self.request
            .set_value(self.line, high.into())
            .map_err(|e| fault(&self.what, &e, false))
    }

    /// The line's level: an input's as read, an output's as driven.
    pub fn level(&mut self) -> Result<bool, GpioFault> {
        self.request
            .value(self.line)
            .map(bool::from)
            .map_err(|e| fault(&self.what, &e, false))
    }
}

/// The Linux lines this host holds, by chip device and line: a second
/// open number of a line shares the first's request (the kernel grants a
/// line to one request at a time), as two numbers of a simulated pin
/// share it.
#[derive(Default)]
pub struct LinuxLines {
    lines: BTreeMap<(PathBuf, u32), Weak<Mutex<LinuxPin>>>,
}

impl LinuxLines {
    /// The held request of `line` of `chip`, if any.
    pub(crate) fn get(&mut self, chip: &str, line: u32) -> Option<Arc<Mutex<LinuxPin>>> {
        self.lines.retain(|_, w| w.strong_count() > 0);
        self.lines.get(&(chip_path(chip), line))?.upgrade()
    }

    /// Notes the request of `line` of `chip`.
    pub(crate) fn insert(&mut self, chip: &str, line: u32, pin: &Arc<Mutex<LinuxPin>>) {
        self.lines
            .insert((chip_path(chip), line), Arc::downgrade(pin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_are_paths_or_names_under_dev() {
        assert_eq!(chip_path("/dev/gpiochip0"), PathBuf::from("/dev/gpiochip0"));
        assert_eq!(chip_path("gpiochip3"), PathBuf::from("/dev/gpiochip3"));
        assert_eq!(
            chip_path("/dev/gpio/by-name/x"),
            PathBuf::from("/dev/gpio/by-name/x")
        );
    }

    /// Every mode of the WIT maps to the line settings it names.
    #[test]
    fn each_mode_maps_to_its_line_settings() {
        let cases = [
            (PinMode::Input, Direction::Input, Some(Bias::Disabled), None),
            (
                PinMode::InputPullUp,
                Direction::Input,
                Some(Bias::PullUp),
                None,
            ),
            (
                PinMode::InputPullDown,
                Direction::Input,
                Some(Bias::PullDown),
                None,
            ),
            (
                PinMode::Output,
                Direction::Output,
                None,
                Some(Drive::PushPull),
            ),
            (
                PinMode::OutputOpenDrain,
                Direction::Output,
                None,
                Some(Drive::OpenDrain),
            ),
        ];
        for (mode, direction, bias, drive) in cases {
            for high in [false, true] {
                let c = line_config(mode, high);
                assert_eq!(c.direction, Some(direction), "{mode:?}");
                assert_eq!(c.bias, bias, "{mode:?}");
                assert_eq!(c.drive, drive, "{mode:?}");
                assert!(!c.active_low, "{mode:?}: high is the physical level");
                assert_eq!(c.edge_detection, None, "{mode:?}: levels are polled");
                let value = mode.is_output().then_some(Value::from(high));
                assert_eq!(c.value, value, "{mode:?} {high}");
            }
        }
        assert_eq!(Value::from(true), Value::Active);
    }

    fn os(n: i32) -> gpiocdev::Error {
        gpiocdev::Error::Os(gpiocdev_uapi::Errno(n))
    }

    fn uapi(n: i32) -> gpiocdev::Error {
        gpiocdev::Error::Uapi(
            gpiocdev::UapiCall::GetLineValues,
            gpiocdev_uapi::Error::Os(gpiocdev_uapi::Errno(n)),
        )
    }

    /// An open that fails is always `Lost`; once open, only a chip gone is.
    #[test]
    fn errors_map_to_lost_or_failed_with_the_os_error() {
        let what = "/dev/gpiochip0 line 17";
        let not_gpio = gpiocdev::Error::GpioChip(
            "/dev/null".into(),
            gpiocdev::chip::ErrorKind::NotCharacterDevice,
        );
        for e in [
            os(libc::ENOENT),
            os(libc::EACCES),
            uapi(libc::EBUSY),
            uapi(libc::EINVAL),
            not_gpio.clone(),
        ] {
            assert!(
                matches!(fault(what, &e, true), GpioFault::Lost(m) if m.starts_with(what)),
                "{e}"
            );
        }
        for (e, lost) in [
            (uapi(libc::ENODEV), true),
            (uapi(libc::ENXIO), true),
            (uapi(libc::ESHUTDOWN), true),
            (os(libc::ENOENT), true),
            (uapi(libc::EPERM), false),
            (uapi(libc::EINVAL), false),
            (uapi(libc::EIO), false),
            (not_gpio, false),
        ] {
            let f = fault(what, &e, false);
            assert_eq!(matches!(f, GpioFault::Lost(_)), lost, "{e}: {f}");
        }
        let m = fault(what, &os(libc::EACCES), true).to_string();
        assert!(
            m.contains("/dev/gpiochip0 line 17") && m.contains("Permission denied"),
            "{m}"
        );
        let m = fault(what, &uapi(libc::EBUSY), true).to_string();
        assert!(m.contains("Device or resource busy"), "{m}");
    }

    /// A chip path that exists but is no GPIO chip is refused, naming it.
    #[test]
    fn a_file_that_is_not_a_gpio_chip_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gpiochip9");
        std::fs::write(&file, b"").unwrap();
        match LinuxPin::open(file.to_str().unwrap(), 0, PinMode::Input, false) {
            Err(GpioFault::Lost(m)) => assert!(m.contains("not a character device"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened"),
        }
        match LinuxPin::open("/dev/null", 0, PinMode::Input, false) {
            Err(GpioFault::Lost(m)) => assert!(m.contains("not a GPIO"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened"),
        }
    }
}
