//! `doorbell`: a device process written with `phantom-device-sdk`. It
//! watches the input granted as `bell` for rising edges; each press counts
//! a ring and toggles the output granted as `chime` (high after an odd
//! number of rings), printing `ring <n> chime <high|low> at <ms>`. The
//! console line `status` prints `rings <n> chime <high|low>`.
//!
//! There is no persistence code: the count is a field, the pin numbers are
//! kept as they are, and after `kill -9` the host brings the pins back
//! (the chime at the level last set) and the journal delivers every edge
//! once. `guests/doorbell/demo/` has a manifest and a scenario of five
//! presses.

use phantom_device_sdk::gpio::{self, Edge, Level, PinMode};
use phantom_device_sdk::{DeviceEvent, DeviceProcess};
use phantom_sdk::{File, Process, println};

struct Doorbell {
    bell: gpio::Pin,
    chime: gpio::Pin,
    rings: u64,
}

fn level_name(high: bool) -> &'static str {
    if high { "high" } else { "low" }
}

impl Doorbell {
    fn chime_high(&self) -> bool {
        self.rings % 2 == 1
    }
}

impl Process for Doorbell {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        let bell = gpio::open("bell", PinMode::Input, Level::Low)
            .map_err(|e| format!("cannot open the pin granted as `bell`: {e:?}"))?;
        gpio::watch(bell, Some(Edge::Rising)).map_err(|e| format!("cannot watch `bell`: {e:?}"))?;
        let chime = gpio::open("chime", PinMode::Output, Level::Low)
            .map_err(|e| format!("cannot open the pin granted as `chime`: {e:?}"))?;
        Ok(Doorbell {
            bell,
            chime,
            rings: 0,
        })
    }

    fn on_line(&mut self, line: String) {
        if line.trim() == "status" {
            println!(
                "rings {} chime {}",
                self.rings,
                level_name(self.chime_high())
            );
        }
    }
}

impl DeviceProcess for Doorbell {
    fn on_device_event(&mut self, event: DeviceEvent) {
        let DeviceEvent::GpioEdge(edge) = event else {
            return;
        };
        if edge.pin != self.bell || edge.level != Level::High {
            return;
        }
        self.rings += 1;
        let high = self.chime_high();
        let level = if high { Level::High } else { Level::Low };
        if let Err(e) = gpio::set_level(self.chime, level) {
            println!("chime error {e:?}");
        }
        println!(
            "ring {} chime {} at {}",
            self.rings,
            level_name(high),
            edge.time_ns / 1_000_000
        );
    }
}

phantom_device_sdk::export_device_process!(Doorbell);
