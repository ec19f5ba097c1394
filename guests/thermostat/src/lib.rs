//! `thermostat`: the demo of devices that never forget. Every period it
//! reads the BME280 granted as `env` (I2C), switches the relay granted as
//! `relay` (a GPIO output) with hysteresis, keeps the last hour of
//! readings in memory, draws them as a chart on the display granted as
//! `screen` (if any: the newest readings on the right, the band as two
//! lines, the relay as a bar at the top) and logs each decision:
//!
//! ```text
//!   reading 17 temp 19.87 relay on switches 1
//! ```
//! Console lines: `status` (`status readings N kept K min M max X relay
//! on|off switches S`), `history N` (the last N readings, oldest first).
//!
//! Arguments: `--low C` and `--high C` (the band, default 20 and 22 °C:
//! heat below `low`, stop above `high`), `--period-ms N` (default 1000).
//! Nothing in it is about persistence: after `kill -9` the host brings the
//! readings, the relay and the schedule back.

wit_bindgen::generate!({
    path: "../../wit",
    world: "phantom:devices/device-process",
    generate_all,
});

#[path = "../../relay-sensor/src/bme280.rs"]
mod bme280;

use std::collections::VecDeque;
use std::sync::Mutex;

use phantom::devices::{display, gpio, i2c};
use phantom::os::{console, timers};

/// An hour of readings at one per second.
const KEPT: usize = 3600;

struct Thermostat {
    relay: Option<gpio::Pin>,
    env: Option<i2c::Bus>,
    /// The chart's display and its size (an RGB888 canvas is drawn).
    screen: Option<(display::Display, display::DisplayInfo)>,
    /// The band, in 0.01 °C.
    low: i32,
    high: i32,
    heating: bool,
    switches: u64,
    /// Readings taken, and the last `KEPT` of them (0.01 °C).
    count: u64,
    readings: VecDeque<i32>,
}

static STATE: Mutex<Thermostat> = Mutex::new(Thermostat {
    relay: None,
    env: None,
    screen: None,
    low: 2000,
    high: 2200,
    heating: false,
    switches: 0,
    count: 0,
    readings: VecDeque::new(),
});

fn say(text: &str) {
    console::write(format!("{text}\n").as_bytes());
}

fn celsius(centi: i32) -> String {
    let sign = if centi < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", centi.abs() / 100, centi.abs() % 100)
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// `--name value` pairs; a value in °C as 0.01 °C.
fn parse_args(args: &[String], t: &mut Thermostat) -> Result<u64, String> {
    let mut period_ms = 1000u64;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let centi = || -> Result<i32, String> {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && v.abs() < 1000.0)
                .map(|v| (v * 100.0).round() as i32)
                .ok_or_else(|| format!("{flag} {value}: not a temperature in °C"))
        };
        match flag.as_str() {
            "--low" => t.low = centi()?,
            "--high" => t.high = centi()?,
            "--period-ms" => {
                period_ms = value
                    .parse()
                    .ok()
                    .filter(|&p| p >= 1)
                    .ok_or_else(|| format!("--period-ms {value}: not a period"))?
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if t.low >= t.high {
        return Err(format!(
            "--low {} must be below --high {}",
            celsius(t.low),
            celsius(t.high)
        ));
    }
    Ok(period_ms)
}

impl Thermostat {
    /// One period: read, decide, log.
    fn tick(&mut self) {
        let Some(bus) = self.env else {
            return say("error no sensor");
        };
        let temp = match bme280::measure(bus) {
            Ok(t) => t,
            Err(e) => return say(&format!("error sensor {e:?}")),
        };
        self.count += 1;
        if self.readings.len() == KEPT {
            self.readings.pop_front();
        }
        self.readings.push_back(temp);
        let heat = if temp < self.low {
            true
        } else if temp > self.high {
            false
        } else {
            self.heating
        };
        if heat != self.heating {
            let level = if heat {
                gpio::Level::High
            } else {
                gpio::Level::Low
            };
            match self.relay.map(|p| gpio::set_level(p, level)) {
                Some(Ok(())) => {
                    self.heating = heat;
                    self.switches += 1;
                }
                Some(Err(e)) => say(&format!("error relay {e:?}")),
                None => say("error no relay"),
            }
        }
        self.draw();
        say(&format!(
            "reading {} temp {} relay {} switches {}",
            self.count,
            celsius(temp),
            on_off(self.heating),
            self.switches
        ));
    }

    /// The chart: one column per reading, the newest on the right, on a
    /// scale from 10 °C to 30 °C; the band in grey, the relay as a bar at
    /// the top (red: heating).
    fn draw(&self) {
        let Some((screen, info)) = self.screen else {
            return;
        };
        let (w, h) = (info.width as usize, info.height as usize);
        let mut px = vec![0u8; w * h * 3];
        let mut put = |x: usize, y: usize, rgb: [u8; 3]| {
            if x < w && y < h {
                px[(y * w + x) * 3..][..3].copy_from_slice(&rgb);
            }
        };
        let top = 4.min(h);
        let y_of = |centi: i32| -> usize {
            let span = (h - top).max(1) as i64;
            let v = i64::from(centi.clamp(1000, 3000) - 1000);
            top + (span - 1 - v * (span - 1) / 2000) as usize
        };
        for x in 0..w {
            put(x, y_of(self.low), [80, 80, 80]);
            put(x, y_of(self.high), [80, 80, 80]);
        }
        let shown = self.readings.len().min(w);
        for (i, &t) in self
            .readings
            .iter()
            .skip(self.readings.len() - shown)
            .enumerate()
        {
            let x = w - shown + i;
            let colour = if t < self.low {
                [60, 120, 255]
            } else if t > self.high {
                [255, 140, 40]
            } else {
                [60, 220, 90]
            };
            for y in y_of(t)..h {
                put(
                    x,
                    y,
                    if y == y_of(t) {
                        [255, 255, 255]
                    } else {
                        colour
                    },
                );
            }
        }
        let bar = if self.heating {
            [220, 30, 30]
        } else {
            [30, 30, 30]
        };
        for y in 0..top {
            for x in 0..w {
                put(x, y, bar);
            }
        }
        let drawn = display::draw(screen, 0, 0, info.width, info.height, &px)
            .and_then(|()| display::flush(screen));
        if let Err(e) = drawn {
            say(&format!("error display {e:?}"));
        }
    }

    fn command(&self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["status"] => {
                let min = self.readings.iter().min().copied().unwrap_or(0);
                let max = self.readings.iter().max().copied().unwrap_or(0);
                say(&format!(
                    "status readings {} kept {} min {} max {} relay {} switches {}",
                    self.count,
                    self.readings.len(),
                    celsius(min),
                    celsius(max),
                    on_off(self.heating),
                    self.switches
                ));
            }
            ["history", n] => {
                let n: usize = n.parse().unwrap_or(0).min(self.readings.len());
                let all: Vec<String> = self
                    .readings
                    .iter()
                    .skip(self.readings.len() - n)
                    .map(|&t| celsius(t))
                    .collect();
                say(&format!("history {}", all.join(" ")));
            }
            _ => say(&format!("unknown command {line:?}")),
        }
    }
}

struct ThermostatGuest;

impl Guest for ThermostatGuest {
    fn init(args: Vec<String>, _files: Vec<File>) -> Result<Status, String> {
        let mut t = STATE.lock().unwrap_or_else(|e| e.into_inner());
        let period_ms = parse_args(&args, &mut t)?;
        t.relay = Some(
            gpio::open("relay", gpio::PinMode::Output, gpio::Level::Low)
                .map_err(|e| format!("cannot open the relay: {e:?}"))?,
        );
        t.env = Some(i2c::open("env").map_err(|e| format!("cannot open the sensor bus: {e:?}"))?);
        // The chart is optional: without a `screen` grant it logs only.
        if let Ok(screen) = display::open("screen") {
            let info =
                display::info(screen).map_err(|e| format!("cannot size the display: {e:?}"))?;
            if info.format != display::PixelFormat::Rgb888 {
                return Err("the chart needs an rgb888 display".into());
            }
            t.screen = Some((screen, info));
        }
        timers::periodic(period_ms * 1_000_000)
            .map_err(|e| format!("cannot start the timer: {e:?}"))?;
        say(&format!(
            "thermostat: heat below {} °C, stop above {} °C, a reading every {period_ms} ms",
            celsius(t.low),
            celsius(t.high)
        ));
        Ok(Status::Idle)
    }

    fn handle(event: Event) -> Status {
        let mut t = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Timer(_) => t.tick(),
            Event::ConsoleLine(line) => t.command(&line),
            _ => {}
        }
        Status::Idle
    }

    fn handle_message(_message: phantom::os::messages::Message) -> Status {
        Status::Idle
    }

    fn handle_device_event(_event: phantom::devices::events::DeviceEvent) -> Status {
        Status::Idle
    }
}

export!(ThermostatGuest);
