//! `relay-sensor`: a device guest. It opens the pin granted as `relay`
//! (output, low) and the I2C bus granted as `env` at `init`, keeps how many
//! times it switched the relay, and answers console lines:
//!
//! - `on`, `off`, `toggle`: sets the relay, prints `relay high|low switches=<n>`;
//! - `level`: prints `level high|low` (the level the host says the pin has);
//!   `get H`: the same for open pin H (an input is read from the device);
//! - `id`: prints `id <chip id>` (0x60 for a BME280);
//! - `read`: one forced BME280 measurement: `temp <centi-degrees>`;
//! - `open NAME MODE`: `gpio.open`; `i2c-open NAME`; `i2c ADDR`: a write-read
//!   at that address on `env`; `set-input`: `set-level` on a pin opened as an
//!   input (each prints `ok <value>` or `error <error>`, for the policy tests);
//! - `watch H rising|falling|both|none`: `gpio.watch`; each edge then prints
//!   `edge pin=<H> level=<high|low>` (`handle-device-event`);
//! - `gpio-loop N`, `i2c-loop N`: N set-levels or chip-id reads in one call,
//!   then `looped N` (`phantom bench devices`).
//!
//! It uses the WIT bindings directly (the SDK is for `messaging-process`).

wit_bindgen::generate!({
    path: "../../wit",
    world: "phantom:devices/device-process",
    generate_all,
});

use phantom::devices::{gpio, i2c};
use phantom::os::console;

use std::sync::Mutex;

mod bme280;
use bme280::{ADDRESS, REG_ID, measure};

struct State {
    relay: Option<gpio::Pin>,
    env: Option<i2c::Bus>,
    high: bool,
    switches: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    relay: None,
    env: None,
    high: false,
    switches: 0,
});

fn say(text: &str) {
    console::write(format!("{text}\n").as_bytes());
}

fn level_name(l: gpio::Level) -> &'static str {
    match l {
        gpio::Level::High => "high",
        gpio::Level::Low => "low",
    }
}

/// A WIT error as its WIT name (`not-granted`, `no-acknowledge-address`).
trait WitName {
    fn wit(&self) -> String;
}

impl WitName for gpio::GpioError {
    fn wit(&self) -> String {
        self.name().to_string()
    }
}

impl WitName for i2c::I2cError {
    fn wit(&self) -> String {
        use i2c::I2cError as E;
        match self {
            E::Bus => "bus".into(),
            E::ArbitrationLoss => "arbitration-loss".into(),
            E::NoAcknowledge(s) => format!("no-acknowledge-{s:?}").to_lowercase(),
            E::Overrun => "overrun".into(),
            E::Other => "other".into(),
            E::NotGranted => "not-granted".into(),
            E::AddressNotAllowed => "address-not-allowed".into(),
            E::NotOpen => "not-open".into(),
            E::DeviceLost => "device-lost".into(),
        }
    }
}

fn mode(name: &str) -> Option<gpio::PinMode> {
    Some(match name {
        "input" => gpio::PinMode::Input,
        "input-pull-up" => gpio::PinMode::InputPullUp,
        "input-pull-down" => gpio::PinMode::InputPullDown,
        "output" => gpio::PinMode::Output,
        "output-open-drain" => gpio::PinMode::OutputOpenDrain,
        _ => return None,
    })
}

fn command(s: &mut State, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["on"] | ["off"] | ["toggle"] => {
            let Some(pin) = s.relay else {
                return say("error no relay");
            };
            let high = match words[0] {
                "on" => true,
                "off" => false,
                _ => !s.high,
            };
            let level = if high {
                gpio::Level::High
            } else {
                gpio::Level::Low
            };
            match gpio::set_level(pin, level) {
                Ok(()) => {
                    if high != s.high {
                        s.switches += 1;
                    }
                    s.high = high;
                    say(&format!(
                        "relay {} switches={}",
                        level_name(level),
                        s.switches
                    ));
                }
                Err(e) => say(&format!("error {}", e.wit())),
            }
        }
        ["level"] => match s.relay.map(gpio::get_level) {
            Some(Ok(l)) => say(&format!("level {}", level_name(l))),
            Some(Err(e)) => say(&format!("error {}", e.wit())),
            None => say("error no relay"),
        },
        ["get", h] => match h.parse().map(gpio::get_level) {
            Ok(Ok(l)) => say(&format!("level {}", level_name(l))),
            Ok(Err(e)) => say(&format!("error {}", e.wit())),
            Err(_) => say("error not a number"),
        },
        ["watch", h, edge] => {
            let edge = match *edge {
                "rising" => Some(gpio::Edge::Rising),
                "falling" => Some(gpio::Edge::Falling),
                "both" => Some(gpio::Edge::Both),
                _ => None,
            };
            match h.parse().map(|h| gpio::watch(h, edge)) {
                Ok(Ok(())) => say("ok watching"),
                Ok(Err(e)) => say(&format!("error {}", e.wit())),
                Err(_) => say("error not a number"),
            }
        }
        ["id"] => match s.env.map(|b| i2c::write_read(b, ADDRESS, &[REG_ID], 1)) {
            Some(Ok(id)) => say(&format!("id {:#04x}", id[0])),
            Some(Err(e)) => say(&format!("error {}", e.wit())),
            None => say("error no bus"),
        },
        ["read"] => match s.env.map(measure) {
            Some(Ok(t)) => say(&format!("temp {t}")),
            Some(Err(e)) => say(&format!("error {}", e.wit())),
            None => say("error no bus"),
        },
        ["open", name, m] => match mode(m).map(|m| gpio::open(name, m, gpio::Level::Low)) {
            Some(Ok(h)) => say(&format!("ok {h}")),
            Some(Err(e)) => say(&format!("error {}", e.wit())),
            None => say("error no such mode"),
        },
        ["i2c-open", name] => match i2c::open(name) {
            Ok(h) => say(&format!("ok {h}")),
            Err(e) => say(&format!("error {}", e.wit())),
        },
        ["i2c", addr] => {
            let addr = u16::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap_or(0);
            match s.env.map(|b| i2c::write_read(b, addr, &[REG_ID], 1)) {
                Some(Ok(v)) => say(&format!("ok {v:?}")),
                Some(Err(e)) => say(&format!("error {}", e.wit())),
                None => say("error no bus"),
            }
        }
        ["set-input", name] => match gpio::open(name, gpio::PinMode::Input, gpio::Level::Low) {
            Ok(h) => match gpio::set_level(h, gpio::Level::High) {
                Ok(()) => say("ok set"),
                Err(e) => say(&format!("error {}", e.wit())),
            },
            Err(e) => say(&format!("error {}", e.wit())),
        },
        ["gpio-loop", n] => {
            // `phantom bench devices`: n set-levels in one call.
            let n: u32 = n.parse().unwrap_or(0);
            let Some(pin) = s.relay else {
                return say("error no relay");
            };
            for k in 0..n {
                let level = if k % 2 == 0 {
                    gpio::Level::High
                } else {
                    gpio::Level::Low
                };
                if let Err(e) = gpio::set_level(pin, level) {
                    return say(&format!("error {}", e.wit()));
                }
            }
            say(&format!("looped {n}"));
        }
        ["i2c-loop", n] => {
            // `phantom bench devices`: n write-reads of the chip id.
            let n: u32 = n.parse().unwrap_or(0);
            let Some(bus) = s.env else {
                return say("error no bus");
            };
            for _ in 0..n {
                if let Err(e) = i2c::write_read(bus, ADDRESS, &[REG_ID], 1) {
                    return say(&format!("error {}", e.wit()));
                }
            }
            say(&format!("looped {n}"));
        }
        _ => say(&format!("unknown command {line:?}")),
    }
}

struct RelaySensor;

impl Guest for RelaySensor {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Status, String> {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        // A missing grant is reported, not fatal: the policy tests spawn it
        // with partial manifests.
        match gpio::open("relay", gpio::PinMode::Output, gpio::Level::Low) {
            Ok(h) => s.relay = Some(h),
            Err(e) => say(&format!("relay: error {}", e.wit())),
        }
        match i2c::open("env") {
            Ok(h) => s.env = Some(h),
            Err(e) => say(&format!("env: error {}", e.wit())),
        }
        Ok(Status::Idle)
    }

    fn handle(event: Event) -> Status {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::ConsoleLine(line) => command(&mut s, &line),
            _ => {}
        }
        Status::Idle
    }

    fn handle_message(_message: phantom::os::messages::Message) -> Status {
        Status::Idle
    }

    fn handle_device_event(event: phantom::devices::events::DeviceEvent) -> Status {
        if let phantom::devices::events::DeviceEvent::GpioEdge(e) = event {
            say(&format!("edge pin={} level={}", e.pin, level_name(e.level)));
        }
        Status::Idle
    }
}

export!(RelaySensor);
