//! A device process: a bell button (an input the process watches) rings a
//! chime (an output it toggles). Its state is this struct; the pins it
//! holds stay valid across restarts and `kill -9`: the host opens them
//! again and puts the chime back at the level last set.
//!
//! Build: `phantom build {name}` (from the directory above this project).
//! Run: `phantom spawn {name}/{name}.wasm --data data --name {name}
//! --devices {name}/devices.toml --scenario {name}/scenario.toml`, then
//! `phantom run --data data` (type `status`; Ctrl-C; run again).

use phantom_device_sdk::gpio::{self, Edge, Level, PinMode};
use phantom_device_sdk::{DeviceEvent, DeviceProcess};
use phantom_sdk::{File, Process, println};

struct Bell {
    button: gpio::Pin,
    chime: gpio::Pin,
    rings: u64,
}

impl Process for Bell {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        let button = gpio::open("bell", PinMode::Input, Level::Low)
            .map_err(|e| format!("cannot open the pin granted as `bell`: {e:?}"))?;
        gpio::watch(button, Some(Edge::Rising)).map_err(|e| format!("cannot watch it: {e:?}"))?;
        let chime = gpio::open("chime", PinMode::Output, Level::Low)
            .map_err(|e| format!("cannot open the pin granted as `chime`: {e:?}"))?;
        println!("waiting for the bell");
        Ok(Bell {
            button,
            chime,
            rings: 0,
        })
    }

    fn on_line(&mut self, line: String) {
        if line.trim() == "status" {
            println!("rings so far: {}", self.rings);
        }
    }
}

impl DeviceProcess for Bell {
    fn on_device_event(&mut self, event: DeviceEvent) {
        if let DeviceEvent::GpioEdge(edge) = event
            && edge.pin == self.button
            && edge.level == Level::High
        {
            self.rings += 1;
            let level = if self.rings % 2 == 1 { Level::High } else { Level::Low };
            if let Err(e) = gpio::set_level(self.chime, level) {
                println!("the chime failed: {e:?}");
            }
            println!("ring {}", self.rings);
        }
    }
}

phantom_device_sdk::export_device_process!(Bell);
