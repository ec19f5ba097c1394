//! Sensors and SPI (issue 12): the guest `sensor-logger` against the
//! simulated BME280 (a sensor over its I2C bus, the chip on SPI): readings
//! follow the scenario, every ungranted access is refused and touches
//! nothing, samples arrive at the rate set and go on across restores and
//! `kill -9` (none twice, no burst), and a device gone after a restore is
//! `device-lost`.

use super::common::*;

/// The grants of the sensor tests: the simulated BME280 as a sensor
/// (sampled at up to 20 Hz) and on SPI.
const MANIFEST: &str = "sensor.room = { device = \"sim:bme280\", max_rate_mhz = 20000 }\nspi.env = { device = \"sim:bme280\", max_hz = 10_000_000, modes = [0, 3] }\n";

/// A steep curve (3 °C/s), so a reading shows the time it was taken at.
const STEEP: &str = "temperature = [{ at_s = 0, value = 10.0 }, { at_s = 10, value = 40.0 }]\nhumidity = [{ at_s = 0, value = 55.0 }]\npressure = [{ at_s = 0, value = 100000.0 }]";

/// `STEEP`'s temperature at `at_ns`.
fn steep(at_ns: u64) -> f64 {
    let t = at_ns as f64 / 1e9;
    10.0 + 3.0 * t.clamp(0.0, 10.0)
}

/// One logged sample: (n, temperature, process time).
fn samples(text: &str) -> Vec<(u64, f64, u64)> {
    text.lines()
        .filter_map(|l| {
            let l = &l[l.find("sample ")?..];
            let n = l.split_whitespace().nth(1)?.parse().ok()?;
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .map(str::to_string)
            };
            Some((n, field("t=")?.parse().ok()?, field("at=")?.parse().ok()?))
        })
        .collect()
}

/// A component importing a device interface needs a grant of that kind;
/// a malformed SPI or sensor grant is refused naming its line and key.
#[test]
fn spi_and_sensor_imports_need_grants_and_bad_grants_are_refused_at_spawn() {
    let data = data_dir();
    let manifest = data.path().join("manifest.toml");
    let spawn = |text: &str| {
        std::fs::write(&manifest, text).unwrap();
        run(&[
            "spawn",
            phantom_tests::SENSOR_LOGGER,
            "--data",
            s(data.path()),
            "--name",
            "dev",
            "--devices",
            s(&manifest),
        ])
    };
    let o = spawn("sensor.room = { device = \"sim:bme280\", max_rate_mhz = 1000 }\n");
    fails_with(&o, "imports `phantom:devices/spi@0.1.0`");
    let o = spawn("spi.env = { device = \"sim:bme280\", max_hz = 1000, modes = [0] }\n");
    fails_with(&o, "imports `phantom:devices/sensor@0.1.0`");
    for (text, needle) in [
        (
            "sensor.room = { device = \"sim:bme280\", max_rate_mhz = 1000 }\nspi.env = { device = \"sim:bme280\", max_hz = 1000, modes = [4] }\n",
            "line 2",
        ),
        (
            "sensor.room = { device = \"sim:bme280\" }\nspi.env = { device = \"sim:bme280\", max_hz = 1000, modes = [0] }\n",
            "max_rate_mhz",
        ),
        (
            "sensor.room = { device = \"sim:bme280\", max_rate_mhz = 1000 }\nspi.env = { device = \"sim:flash\", max_hz = 1000, modes = [0] }\n",
            "sim:bme280",
        ),
    ] {
        let o = spawn(text);
        fails_with(&o, "invalid device manifest");
        fails_with(&o, needle);
    }
    assert!(!data.path().join("dev").exists());
    ok(&spawn(MANIFEST));
}

mod in_process {
    use phantom_devices::sim::{I2cOp, SpiOp};
    use phantom_devices::{SpiConfig, SpiMode};
    use phantom_runtime::exit::console_text;
    use phantom_runtime::process::Process;
    use phantom_runtime::runtime::{Runtime, RuntimeConfig};

    use super::super::common::*;
    use super::{MANIFEST, STEEP, samples, steep};

    use crate::common::i2c_log;
    use crate::common::say_step as say;

    fn spawn(rt: &Runtime, data: &std::path::Path, scenario: &str, args: &[&str]) -> Process {
        let (p, out) = spawn_in_process(
            rt,
            phantom_tests::SENSOR_LOGGER,
            data,
            "dev",
            MANIFEST,
            Some(scenario),
            args,
        );
        assert_eq!(out, "", "init opens both");
        p
    }

    fn spi_log(p: &Process) -> Vec<SpiOp> {
        p.devices()
            .sim()
            .spi_devices()
            .get("bme280")
            .map(|d| d.log())
            .unwrap_or_default()
    }

    /// Runs `p`'s turns until it has logged `n` more samples.
    fn run_samples(rt: &Runtime, p: &mut Process, n: usize) -> String {
        turns_until(rt, p, |text| samples(text).len() >= n)
    }

    /// `read` gives typed readings at the scenario's values for the time
    /// they were taken; `info` names the quantities and units; the SPI
    /// device reads the chip id (a full-duplex transfer and a transaction)
    /// and measures.
    #[test]
    fn readings_follow_the_scenario_and_spi_reads_the_chip() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path(), STEEP, &[]);
        assert_eq!(
            say(&rt, &mut p, "info"),
            "info bme280 temperature:degree-celsius,relative-humidity:percent,pressure:pascal rate=0 max=20000\n"
        );
        for _ in 0..3 {
            let text = say(&rt, &mut p, "read");
            let fields: Vec<&str> = text.split_whitespace().collect();
            let t: f64 = fields[1].strip_prefix("t=").unwrap().parse().unwrap();
            let at: u64 = fields[4].strip_prefix("at=").unwrap().parse().unwrap();
            assert!((t - steep(at)).abs() < 0.02, "{text}: want {}", steep(at));
            let h: f64 = fields[2].strip_prefix("h=").unwrap().parse().unwrap();
            assert!((h - 55.0).abs() < 0.05, "{text}");
            let pa: f64 = fields[3].strip_prefix("p=").unwrap().parse().unwrap();
            assert!(
                (pa - 100000.0).abs() < 1.0,
                "{text}: the formulas' precision"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(say(&rt, &mut p, "id"), "id 0x60\n");
        assert_eq!(say(&rt, &mut p, "id-txn 2"), "id 0x60\n");
        assert_eq!(say(&rt, &mut p, "config 2"), "config mode0 hz=1000000\n");
        assert_eq!(
            say(&rt, &mut p, "configure 2 3 10000000"),
            "ok configured\n"
        );
        assert_eq!(say(&rt, &mut p, "config 2"), "config mode3 hz=10000000\n");
        assert_eq!(say(&rt, &mut p, "id"), "id 0x60\n");
        let log = spi_log(&p);
        assert_eq!(
            log[0],
            SpiOp::Configure(SpiConfig {
                mode: SpiMode::new(0).unwrap(),
                hz: 1_000_000
            })
        );
        assert!(log.contains(&SpiOp::Frame {
            mosi: vec![0xd0, 0],
            miso: vec![0xff, 0x60]
        }));
    }

    /// A forced measurement over SPI (configuration written as control and
    /// data pairs, then a register read) reads the scenario.
    #[test]
    fn a_measurement_over_spi() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(
            &rt,
            data.path(),
            "temperature = [{ at_s = 0, value = 21.5 }]",
            &[],
        );
        assert_eq!(say(&rt, &mut p, "spi-temp"), "spi-temp 2150\n");
        assert!(spi_log(&p).contains(&SpiOp::Frame {
            mosi: vec![0x72, 1, 0x74, 0x25],
            miso: vec![0xff; 4]
        }));
    }

    /// Each kind of ungranted access returns the policy error, and neither
    /// the sensor's bus nor the SPI device sees any operation for it.
    #[test]
    fn ungranted_access_is_refused_and_touches_nothing() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path(), "", &[]);
        let (i2c_before, spi_before) = (i2c_log(&p), spi_log(&p));
        assert!(!i2c_before.is_empty() && !spi_before.is_empty(), "opened");
        for (line, want) in [
            ("open-sensor cellar", "error not-granted\n"),
            ("open-spi flash", "error not-granted\n"),
            // Held open already: one chip select, one holder.
            ("open-spi env", "error other\n"),
            ("rate 20001", "error rate-not-allowed\n"),
            ("rate 4000000000", "error rate-not-allowed\n"),
            ("configure 2 1 1000000", "error mode-not-allowed\n"),
            ("configure 2 2 1000000", "error mode-not-allowed\n"),
            ("configure 2 0 10000001", "error frequency-not-allowed\n"),
            ("configure 2 3 0", "error frequency-not-allowed\n"),
            ("read-of 2", "error not-open\n"),
            ("rate-of 2 1000", "error not-open\n"),
            ("id-txn 1", "error not-open\n"),
            ("configure 1 0 1000", "error not-open\n"),
            ("read-of 99", "error not-open\n"),
            // A number of the other interface is not closed either.
            ("close-sensor 2", "closed false\n"),
            ("close-spi 1", "closed false\n"),
        ] {
            assert_eq!(say(&rt, &mut p, line), want, "{line}");
        }
        assert_eq!(i2c_log(&p), i2c_before);
        assert_eq!(spi_log(&p), spi_before);
        assert_eq!(say(&rt, &mut p, "config 2"), "config mode0 hz=1000000\n");
        assert_eq!(say(&rt, &mut p, "count"), "count 0\n", "no sampling");
        assert!(say(&rt, &mut p, "read").starts_with("read t=20.00 "));
    }

    /// Samples arrive at the rate set, each at the scenario's value for its
    /// time; they are journaled, so a restore replays them without touching
    /// the bus, and the count and schedule go on from there.
    #[test]
    fn samples_follow_the_curve_and_go_on_after_a_restore() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path(), STEEP, &[]);
        assert_eq!(say(&rt, &mut p, "configure 2 3 8000000"), "ok configured\n");
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        let started = p.now_ns();
        assert_eq!(say(&rt, &mut p, "rate 20000"), "ok rate\n");
        assert_eq!(
            say(&rt, &mut p, "info"),
            "info bme280 temperature:degree-celsius,relative-humidity:percent,pressure:pascal rate=20000 max=20000\n"
        );
        let text = run_samples(&rt, &mut p, 6);
        let got = samples(&text);
        for (k, &(n, t, at)) in got.iter().enumerate() {
            assert_eq!(n, k as u64 + 1, "{text}");
            assert!((t - steep(at)).abs() < 0.02, "{text}");
            assert!(at >= started + 50_000_000 * (k as u64 + 1), "{text}");
        }
        assert!(got.windows(2).all(|w| w[0].2 < w[1].2), "{text}");
        p.journal_log().unwrap().sync().unwrap();
        drop(p);
        let (mut p, warnings) = Process::restore(&rt, &data.path().join("dev")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // The replayed samples read no register: the bus saw only the
        // sensor being opened again (its id and calibration).
        assert!(
            i2c_log(&p).iter().all(
                |op| !matches!(op, I2cOp::Write { bytes, .. } if bytes.first() == Some(&0xf2))
            ),
            "{:?}",
            i2c_log(&p)
        );
        // The SPI device is configured again as the guest left it.
        assert_eq!(
            spi_log(&p),
            [SpiOp::Configure(SpiConfig {
                mode: SpiMode::new(3).unwrap(),
                hz: 8_000_000
            })]
        );
        assert_eq!(say(&rt, &mut p, "count"), "count 6\n");
        let last = got.last().unwrap().2;
        let text = run_samples(&rt, &mut p, 3);
        let more = samples(&text);
        assert_eq!(
            more.iter().map(|s| s.0).collect::<Vec<_>>(),
            [7, 8, 9],
            "{text}"
        );
        assert!(more[0].2 > last, "{text}");
        for &(_, t, at) in &more {
            assert!((t - steep(at)).abs() < 0.02, "{text}");
        }
        assert_eq!(say(&rt, &mut p, "rate 0"), "ok rate\n");
        assert_eq!(say(&rt, &mut p, "config 2"), "config mode3 hz=8000000\n");
    }

    /// A grant taken away while the process is down: the restore warns,
    /// each use is `device-lost` (never a trap), and the sampled sensor's
    /// next sample is an error, after which sampling stops.
    #[test]
    fn a_device_gone_after_a_restore_is_device_lost() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path(), "", &["20000"]);
        let text = run_samples(&rt, &mut p, 2);
        assert_eq!(samples(&text).len(), 2, "{text}");
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        drop(p);
        let dir = data.path().join("dev");
        std::fs::write(
            dir.join("devices.toml"),
            "i2c.other = { bus = \"sim:bme280\", addresses = [0x76] }\n",
        )
        .unwrap();
        let (mut p, warnings) = Process::restore(&rt, &dir).unwrap();
        for name in ["`room` is gone", "`env` is gone"] {
            assert!(warnings.iter().any(|w| w.contains(name)), "{warnings:?}");
        }
        assert!(spi_log(&p).is_empty() && i2c_log(&p).is_empty());
        for (line, want) in [
            ("read", "error device-lost\n"),
            ("id", "error device-lost\n"),
            ("configure 2 0 1000", "error device-lost\n"),
            ("rate 1000", "error device-lost\n"),
        ] {
            assert_eq!(say(&rt, &mut p, line), want, "{line}");
        }
        let start = std::time::Instant::now();
        let mut text = String::new();
        while !text.contains("device-lost") {
            assert!(start.elapsed().as_secs() < 10, "{text}");
            p.poll_device_events();
            while let Some(out) = p.step(&rt).unwrap() {
                text += &String::from_utf8(console_text(&out)).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            text.starts_with("sample 3 sensor=1 error device-lost"),
            "{text}"
        );
        // Sampling stopped: no more events, and `info` says so.
        std::thread::sleep(std::time::Duration::from_millis(150));
        p.poll_device_events();
        assert!(p.step(&rt).unwrap().is_none());
        assert!(say(&rt, &mut p, "info").contains("rate=0 max=0"));
    }
}

/// A real `phantom run` samples at the rate and is killed with `kill -9`;
/// the next run goes on: the sample count continues (the guest's memory),
/// no sample is delivered twice (only the console line in flight at the
/// kill may be printed again, identically), and no burst of the samples
/// missed while no host ran.
#[test]
fn sampling_survives_kill_9_without_repeats_or_bursts() {
    let data = data_dir();
    let manifest = data.path().join("manifest.toml");
    let scenario = data.path().join("scenario.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    std::fs::write(&scenario, STEEP).unwrap();
    ok(&run(&[
        "spawn",
        phantom_tests::SENSOR_LOGGER,
        "--data",
        s(data.path()),
        "--name",
        "dev",
        "--devices",
        s(&manifest),
        "--scenario",
        s(&scenario),
        "--",
        "20000",
    ]));
    let mut talk = Conversation::start(data.path(), "dev", None);
    talk.say("configure 2 3 5000000\n");
    while samples(&(talk.seen.join("\n") + "\n")).len() < 10 {
        talk.next_line();
    }
    // Killed; with whatever the reader still had.
    let first = talk.kill().join("\n") + "\n";
    assert!(first.contains("ok configured"), "{first}");

    let o = run(&[
        "run",
        "--data",
        s(data.path()),
        "--for",
        "1.5",
        "--no-stdin",
    ]);
    ok(&o);
    let second = stdout(&o);
    let (a, b) = (samples(&first), samples(&second));
    assert!(b.len() >= 10, "{second}");
    // The lines in flight at the kill (printed, their release not yet
    // journaled) may come again, identically: the same sample, not a new
    // one with the same number.
    let mut all = a.clone();
    for s in &b {
        if all.last().is_some_and(|l| l.0 >= s.0) {
            assert!(
                all.contains(s),
                "sample {} came twice, differently:\n{first}\n--\n{second}",
                s.0
            );
            continue;
        }
        all.push(*s);
    }
    for (k, w) in all.windows(2).enumerate() {
        assert_eq!(
            w[1].0,
            w[0].0 + 1,
            "count goes on at {k}:\n{first}\n--\n{second}"
        );
        assert!(
            w[1].2 > w[0].2,
            "time goes on at {k}:\n{first}\n--\n{second}"
        );
    }
    assert_eq!(all[0].0, 1);
    for &(_, t, at) in &all {
        assert!((t - steep(at)).abs() < 0.02, "{t} at {at}");
    }
    // No burst: the second run's samples are no more than its span of
    // process time holds at 20 Hz, plus the one a late start may owe.
    let span = b.last().unwrap().2 - b[0].2;
    assert!(
        (b.len() as u64) <= span / 50_000_000 + 2,
        "{} samples in {span} ns:\n{second}",
        b.len()
    );
    let v = devices_json(data.path(), "dev");
    let open = v["open"].as_array().unwrap();
    assert_eq!(open[0]["interface"], "sensor", "{v}");
    assert_eq!(open[0]["rate_mhz"], 20000, "{v}");
    assert_eq!(open[1]["interface"], "spi", "{v}");
    assert_eq!(open[1]["config"]["mode"], 3, "{v}");
    assert_eq!(open[1]["config"]["hz"], 5_000_000, "{v}");
    let human = stdout(ok(&run(&["devices", "--data", s(data.path()), "dev"])));
    assert!(
        human.contains("1 room sensor sim:bme280 0x76 rate 20000 mHz"),
        "{human}"
    );
    assert!(
        human.contains("2 env spi sim:bme280 mode 3 5000000 Hz"),
        "{human}"
    );
}
