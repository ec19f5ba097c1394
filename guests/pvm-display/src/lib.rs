//! The Phantom VM on a display: the plain VM (`guests/pvm`'s driver), whose
//! screen (every live window and tty, on the desktop and the background
//! bitmap) is shown on the display granted as `screen`, or as the name
//! given with `--display NAME` before the VM's own arguments.
//!
//! ```text
//!   Phantom bytecode: win.drawLine(..); win.update()
//!     └─► window natives draw into the window's pixels (VM heap, linear memory)
//!   end of the slice: PvmProcess::take_frame ─► compose ─► DisplayScreen::show
//!     └─► phantom:devices/display draw (whole frame) + flush ─► the device
//! ```
//!
//! The world is `phantom:devices/device-process`, through
//! `phantom-device-sdk` (whose `phantom:os` interfaces are phantom-sdk's),
//! so the driver's `Process` code is the same as the plain VM's. A frame goes out at most once per slice and
//! only when something shown changed. After a restore the host brings the
//! display back with the last frame flushed (the VM's windows are in its
//! memory anyway); a display that is gone answers `device-lost`, which is
//! reported once on the console and never stops the VM.

use pvm_vm::natives::NativeClass;

#[path = "../../pvm/src/driver.rs"]
mod driver;

use phantom_device_sdk::display::{self, DisplayError, PixelFormat};

/// The plain VM's internal classes.
static NATIVES: [NativeClass; 0] = [];

/// The display the name given (or `screen`) is granted as.
type ScreenImpl = DisplayScreen;

/// The grant the VM draws on unless `--display NAME` says otherwise.
const DEFAULT_GRANT: &str = "screen";

/// An open display and how its pixels are stored.
pub struct DisplayScreen {
    display: display::Display,
    format: PixelFormat,
    width: u32,
    height: u32,
    /// The last error reported, so a lost display is reported once.
    reported: Option<DisplayError>,
}

impl driver::Screen for DisplayScreen {
    fn open(args: &mut Vec<String>) -> Result<Option<(Self, u32, u32)>, String> {
        let name = match args.first().map(String::as_str) {
            Some("--display") => {
                if args.len() < 2 || args[1].starts_with("--") {
                    return Err("--display needs the name of a display grant".into());
                }
                let name = args.remove(1);
                args.remove(0);
                name
            }
            _ => DEFAULT_GRANT.to_string(),
        };
        let display = display::open(&name).map_err(|e| match e {
            DisplayError::NotGranted => format!(
                "the PVM draws on the display granted as `{name}`, and the manifest grants \
                 no display by that name (grant one, or pass --display NAME)"
            ),
            e => format!("cannot open the display `{name}`: {e:?}"),
        })?;
        let info = display::info(display).map_err(|e| format!("display `{name}`: {e:?}"))?;
        let screen = DisplayScreen {
            display,
            format: info.format,
            width: info.width,
            height: info.height,
            reported: None,
        };
        Ok(Some((screen, info.width, info.height)))
    }

    fn show(&mut self, frame: &[u32]) {
        let mut bytes = Vec::with_capacity(frame.len() * 3);
        for &argb in frame {
            let [_, r, g, b] = argb.to_be_bytes();
            match self.format {
                PixelFormat::Rgb888 => bytes.extend_from_slice(&[r, g, b]),
                PixelFormat::Rgb565 => {
                    let v =
                        (u16::from(r >> 3) << 11) | (u16::from(g >> 2) << 5) | u16::from(b >> 3);
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                PixelFormat::Gray8 => {
                    let y = (77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8;
                    bytes.push(y as u8);
                }
            }
        }
        let shown = display::draw(self.display, 0, 0, self.width, self.height, &bytes)
            .and_then(|()| display::flush(self.display));
        match shown {
            Ok(()) => self.reported = None,
            Err(e) if self.reported != Some(e) => {
                phantom_sdk::println!("pvm: the display does not show the screen: {e:?}");
                self.reported = Some(e);
            }
            Err(_) => {}
        }
    }
}

// The VM watches no device (a display has no events): the default
// `on_device_event`.
impl phantom_device_sdk::DeviceProcess for driver::Pvm {}

phantom_device_sdk::export_device_process!(driver::Pvm);
