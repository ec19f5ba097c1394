//! `sensor-logger`: a sensor and SPI guest. At `init` it opens the sensor
//! granted as `room` and the SPI device granted as `env` (a BME280), and,
//! if its first argument is a number, samples `room` at that many
//! millihertz. Each sample is logged to the console as
//! `sample <n> sensor=<h> t=<°C> h=<%> p=<Pa> at=<process ns>`, `n`
//! counting samples from 1 in the guest's memory (it survives restores
//! like everything else); a failed sample prints `sample <n> error <e>`.
//!
//! Console lines drive the other calls (each prints `ok ...`, a result, or
//! `error <error>`, for the policy tests):
//! `rate MHZ` and `rate-of H MHZ` (`set-rate`), `read` and `read-of H`
//! (`read`: `read t=.. h=.. p=.. at=..`), `info` (`info <model> <quantity:unit,...>
//! rate=<r> max=<m>`), `open-sensor NAME`, `close-sensor H`, `count`;
//! SPI: `open-spi NAME`, `id` (the chip id by one full-duplex `transfer`),
//! `id-txn H` (by a `transaction`: write the address, read a byte),
//! `configure H MODE HZ`, `config H`, `spi-temp` (a forced measurement over
//! SPI, compensated here: `spi-temp <centi-degrees>`), `close-spi H`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "phantom:devices/device-process",
    generate_all,
});

use phantom::devices::events::SensorSample;
use phantom::devices::{sensor, spi};
use phantom::os::console;

use std::sync::Mutex;

/// BME280 registers (datasheet BST-BME280-DS002); on SPI bit 7 of the
/// control byte is the direction (1 read, 0 write).
const REG_ID: u8 = 0xd0;
const REG_CALIB00: u8 = 0x88;
const REG_CTRL_HUM: u8 = 0xf2;
const REG_CTRL_MEAS: u8 = 0xf4;
const REG_DATA: u8 = 0xf7;

struct State {
    room: Option<sensor::Sensor>,
    env: Option<spi::Device>,
    samples: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    room: None,
    env: None,
    samples: 0,
});

fn say(text: &str) {
    console::write(format!("{text}\n").as_bytes());
}

fn value(readings: &[sensor::Reading], q: sensor::Quantity) -> f64 {
    readings
        .iter()
        .find(|r| r.quantity == q)
        .map_or(f64::NAN, |r| r.value)
}

/// `t=.. h=.. p=.. at=..` of a list of readings.
fn describe(readings: &[sensor::Reading]) -> String {
    format!(
        "t={:.2} h={:.2} p={:.1} at={}",
        value(readings, sensor::Quantity::Temperature),
        value(readings, sensor::Quantity::RelativeHumidity),
        value(readings, sensor::Quantity::Pressure),
        readings.first().map_or(0, |r| r.time_ns)
    )
}

fn answer<T: std::fmt::Display, E: WitName>(r: Result<T, E>) {
    match r {
        Ok(v) => say(&format!("ok {v}")),
        Err(e) => say(&format!("error {}", wit_name(&e))),
    }
}

/// A WIT enum's case name (`not-granted`).
trait WitName {
    fn wit(&self) -> &'static str;
}

macro_rules! wit_names {
    ($($t:ty),*) => {
        $(impl WitName for $t {
            fn wit(&self) -> &'static str {
                self.name()
            }
        })*
    };
}
wit_names!(sensor::SensorError, spi::SpiError);

impl WitName for sensor::Quantity {
    fn wit(&self) -> &'static str {
        match self {
            sensor::Quantity::Temperature => "temperature",
            sensor::Quantity::RelativeHumidity => "relative-humidity",
            sensor::Quantity::Pressure => "pressure",
        }
    }
}

impl WitName for sensor::Unit {
    fn wit(&self) -> &'static str {
        match self {
            sensor::Unit::DegreeCelsius => "degree-celsius",
            sensor::Unit::Percent => "percent",
            sensor::Unit::Pascal => "pascal",
        }
    }
}

impl WitName for spi::Mode {
    fn wit(&self) -> &'static str {
        match self {
            spi::Mode::Mode0 => "mode0",
            spi::Mode::Mode1 => "mode1",
            spi::Mode::Mode2 => "mode2",
            spi::Mode::Mode3 => "mode3",
        }
    }
}

fn wit_name<E: WitName>(e: &E) -> &'static str {
    e.wit()
}

fn number<T: std::str::FromStr>(w: &str) -> T
where
    T: Default,
{
    w.parse().unwrap_or_default()
}

fn mode(m: u8) -> spi::Mode {
    match m {
        0 => spi::Mode::Mode0,
        1 => spi::Mode::Mode1,
        2 => spi::Mode::Mode2,
        _ => spi::Mode::Mode3,
    }
}

/// The datasheet's temperature compensation, in 0.01 °C.
fn temperature(cal: &[u8], adc_t: i32) -> i32 {
    let t1 = i32::from(u16::from_le_bytes([cal[0], cal[1]]));
    let t2 = i32::from(i16::from_le_bytes([cal[2], cal[3]]));
    let t3 = i32::from(i16::from_le_bytes([cal[4], cal[5]]));
    let var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11;
    let d = (adc_t >> 4) - t1;
    let var2 = (((d * d) >> 12) * t3) >> 14;
    ((var1 + var2) * 5 + 128) >> 8
}

/// A forced measurement over SPI: the calibration and the data by
/// register reads, the configuration by (control, data) pairs.
fn spi_temperature(dev: spi::Device) -> Result<i32, spi::SpiError> {
    let mut cal = spi::transfer(dev, &[REG_CALIB00 | 0x80, 0, 0, 0, 0, 0, 0])?;
    cal.remove(0);
    spi::write(dev, &[REG_CTRL_HUM & 0x7f, 1, REG_CTRL_MEAS & 0x7f, 0x25])?;
    let d = spi::transaction(
        dev,
        &[
            spi::Operation::Write(vec![REG_DATA | 0x80]),
            spi::Operation::Read(8),
        ],
    )?;
    let d = &d[0];
    let adc_t = (i32::from(d[3]) << 12) | (i32::from(d[4]) << 4) | (i32::from(d[5]) >> 4);
    Ok(temperature(&cal, adc_t))
}

fn command(s: &mut State, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let room = s.room.unwrap_or(u32::MAX);
    let env = s.env.unwrap_or(u32::MAX);
    match words.as_slice() {
        ["rate", mhz] => answer(sensor::set_rate(room, number(mhz)).map(|()| "rate")),
        ["rate-of", h, mhz] => answer(sensor::set_rate(number(h), number(mhz)).map(|()| "rate")),
        ["read"] => match sensor::read(room) {
            Ok(r) => say(&format!("read {}", describe(&r))),
            Err(e) => say(&format!("error {}", wit_name(&e))),
        },
        ["read-of", h] => match sensor::read(number(h)) {
            Ok(r) => say(&format!("read {}", describe(&r))),
            Err(e) => say(&format!("error {}", wit_name(&e))),
        },
        ["info"] => match sensor::info(room) {
            Ok(i) => {
                let m: Vec<String> = i
                    .measures
                    .iter()
                    .map(|m| format!("{}:{}", wit_name(&m.quantity), wit_name(&m.unit)))
                    .collect();
                say(&format!(
                    "info {} {} rate={} max={}",
                    i.model,
                    m.join(","),
                    i.rate_millihertz,
                    i.max_rate_millihertz
                ))
            }
            Err(e) => say(&format!("error {}", wit_name(&e))),
        },
        ["open-sensor", name] => answer(sensor::open(name)),
        ["close-sensor", h] => say(&format!("closed {}", sensor::close(number(h)))),
        ["count"] => say(&format!("count {}", s.samples)),
        ["open-spi", name] => answer(spi::open(name)),
        ["id"] => match spi::transfer(env, &[REG_ID | 0x80, 0]) {
            Ok(b) => say(&format!("id {:#04x}", b.get(1).copied().unwrap_or(0))),
            Err(e) => say(&format!("error {}", wit_name(&e))),
        },
        ["id-txn", h] => match spi::transaction(
            number(h),
            &[
                spi::Operation::Write(vec![REG_ID | 0x80]),
                spi::Operation::DelayNs(100),
                spi::Operation::Read(1),
            ],
        ) {
            Ok(r) => say(&format!("id {:#04x}", r[0][0])),
            Err(e) => say(&format!("error {}", wit_name(&e))),
        },
        ["configure", h, m, hz] => answer(
            spi::configure(
                number(h),
                spi::Config {
                    mode: mode(number(m)),
                    frequency_hz: number(hz),
                },
            )
            .map(|()| "configured"),
        ),
        ["config", h] => match spi::get_config(number(h)) {
            Ok(c) => say(&format!(
                "config {} hz={}",
                wit_name(&c.mode),
                c.frequency_hz
            )),
            Err(e) => say(&format!("error {}", wit_name(&e))),
        },
        ["spi-temp"] => match spi_temperature(env) {
            Ok(t) => say(&format!("spi-temp {t}")),
            Err(e) => say(&format!("error {}", wit_name(&e))),
        },
        ["close-spi", h] => say(&format!("closed {}", spi::close(number(h)))),
        _ => say(&format!("unknown command {line:?}")),
    }
}

struct SensorLogger;

impl Guest for SensorLogger {
    fn init(args: Vec<String>, _files: Vec<File>) -> Result<Status, String> {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        // A missing grant is reported, not fatal: the policy tests spawn it
        // with other grants.
        match sensor::open("room") {
            Ok(h) => s.room = Some(h),
            Err(e) => say(&format!("room: error {}", wit_name(&e))),
        }
        match spi::open("env") {
            Ok(h) => s.env = Some(h),
            Err(e) => say(&format!("env: error {}", wit_name(&e))),
        }
        if let (Some(room), Some(Ok(mhz))) = (s.room, args.first().map(|a| a.parse::<u32>())) {
            if let Err(e) = sensor::set_rate(room, mhz) {
                say(&format!("rate: error {}", wit_name(&e)));
            }
        }
        Ok(Status::Idle)
    }

    fn handle(event: Event) -> Status {
        if let Event::ConsoleLine(line) = event {
            let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
            command(&mut s, &line);
        }
        Status::Idle
    }

    fn handle_message(_message: phantom::os::messages::Message) -> Status {
        Status::Idle
    }

    fn handle_device_event(event: DeviceEvent) -> Status {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        if let DeviceEvent::SampleReady(SensorSample {
            sensor,
            readings,
            time_ns,
        }) = event
        {
            s.samples += 1;
            match readings {
                Ok(r) => say(&format!(
                    "sample {} sensor={sensor} {}",
                    s.samples,
                    describe(&r)
                )),
                Err(e) => say(&format!(
                    "sample {} sensor={sensor} error {} at={time_ns}",
                    s.samples,
                    wit_name(&e)
                )),
            }
        }
        Status::Idle
    }
}

export!(SensorLogger);
