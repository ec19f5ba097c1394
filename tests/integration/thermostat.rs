//! The thermostat demo (`guests/thermostat`): a BME280 read over I2C, a
//! relay switched with hysteresis, an hour of readings in memory. Killed
//! with `kill -9` 20 times on a scripted temperature curve, its decisions
//! are those of a run that was never interrupted, its history is whole, the
//! relay pin holds the level it last chose and its chart shows every
//! reading.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::common::*;

const MANIFEST: &str = "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\ni2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\ndisplay.screen = { device = \"sim:framebuffer\", width = 240, height = 120, format = \"rgb888\" }\n";
/// 18 °C up to 24 °C and back, over 8 s of process time: 0.15 °C per
/// reading.
const SCENARIO: &str = "temperature = [{ at_s = 0, value = 18.0 }, { at_s = 4, value = 24.0 }, { at_s = 8, value = 18.0 }]\n";
/// Readings compared: 10 s at one per 100 ms.
const READINGS: u64 = 100;
/// The band, each half way between two readings' temperatures (19.95 and
/// 20.10, 21.90 and 22.05), so a reading taken up to 50 ms late (the
/// sensor is read at the process time of the call) makes the same
/// decision.
const BAND: [&str; 4] = ["--low", "20.025", "--high", "21.975"];
const KILLS: u64 = 20;

fn spawn_thermostat(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let (m, sc) = (data.join("grants.toml"), data.join("scenario.toml"));
    std::fs::write(&m, MANIFEST).unwrap();
    std::fs::write(&sc, SCENARIO).unwrap();
    ok(&run(&[
        "spawn",
        phantom_tests::THERMOSTAT,
        "--data",
        s(data),
        "--name",
        "thermo",
        "--devices",
        s(&m),
        "--scenario",
        s(&sc),
        "--",
        "--period-ms",
        "100",
        BAND[0],
        BAND[1],
        BAND[2],
        BAND[3],
    ]));
}

/// `reading N ...` lines of a log, by N: every line seen for it.
fn readings(text: &str, into: &mut BTreeMap<u64, Vec<String>>) {
    for line in text.lines() {
        let Some(rest) = line.find("reading ").map(|i| &line[i..]) else {
            continue;
        };
        let n: u64 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("a reading line without a number: {line}"));
        into.entry(n).or_default().push(rest.to_string());
    }
}

/// Runs the host until `reading {until}` is logged (or 60 s pass).
fn run_until(data: &Path, log: &Path, until: u64) {
    let mut host = start_logged_run(data, "200ms", log);
    let want = format!("reading {until} ");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(&want)
    {
        assert!(Instant::now() < deadline, "no {want:?} within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    host.kill().unwrap();
    host.wait().unwrap();
}

/// Runs the host with `lines` as console input until `until` is logged;
/// the log.
fn ask(data: &Path, log: &Path, lines: &str, until: &str) -> String {
    use std::io::Write;
    let file = std::fs::File::create(log).unwrap();
    let mut host = HostChild(
        phantom()
            .args(["run", "--data", s(data), "-v"])
            .stdin(std::process::Stdio::piped())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    );
    let mut stdin = host.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(until) {
            host.kill().unwrap();
            host.wait().unwrap();
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {until:?} within 30 s: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn twenty_kills_change_none_of_its_decisions() {
    let root = data_dir();
    let (straight, killed) = (root.path().join("straight"), root.path().join("killed"));

    // The uninterrupted run.
    spawn_thermostat(&straight);
    let log = root.path().join("straight.log");
    run_until(&straight, &log, READINGS);
    let mut want = BTreeMap::new();
    readings(&std::fs::read_to_string(&log).unwrap(), &mut want);

    // 20 runs killed at random instants, then one to the end.
    spawn_thermostat(&killed);
    let mut got = BTreeMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..KILLS {
        let log = root.path().join(format!("killed-{i}.log"));
        let mut host = start_logged_run(&killed, "200ms", &log);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 400));
        host.kill().unwrap();
        host.wait().unwrap();
        readings(&std::fs::read_to_string(&log).unwrap(), &mut got);
    }
    let last = root.path().join("killed-last.log");
    run_until(&killed, &last, READINGS);
    readings(&std::fs::read_to_string(&last).unwrap(), &mut got);

    // Every reading once, with the uninterrupted run's decision. A line
    // may come twice only as the same line: the console line in flight at
    // a kill (released, not yet marked released) is printed again. The
    // temperature is read at the process time of the call, which a timer
    // delivered a few ms late moves: it may differ by a hundredth or so.
    let parse = |line: &str| -> (f64, String) {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            (w[0], w[2], w[4], w[6]),
            ("reading", "temp", "relay", "switches"),
            "{line}"
        );
        (
            w[3].parse().unwrap(),
            format!("relay {} switches {}", w[5], w[7]),
        )
    };
    for n in 1..=READINGS {
        let w = &want
            .get(&n)
            .unwrap_or_else(|| panic!("the straight run lacks reading {n}"))[0];
        let g = got
            .get(&n)
            .unwrap_or_else(|| panic!("reading {n} was lost across the kills"));
        assert!(
            g.len() <= 2 && g.iter().all(|l| l == &g[0]),
            "reading {n}: {g:?}"
        );
        let ((tw, dw), (tg, dg)) = (parse(w), parse(&g[0]));
        assert_eq!(
            dg, dw,
            "reading {n}: a different decision: {g:?} against {w:?}"
        );
        assert!((tw - tg).abs() <= 0.1, "reading {n}: {g:?} against {w:?}");
    }
    let end = |m: &BTreeMap<u64, Vec<String>>| m[&READINGS][0].clone();
    assert!(
        end(&want).contains("switches 3"),
        "the curve leaves the band twice (on, off, on): {}",
        end(&want)
    );

    // Its history and relay after the kills: an hour of readings kept in
    // memory, the pin at the level of its last decision.
    // (`feed` would wait for an idle process: the thermostat never is.)
    let text = ask(
        &killed,
        &root.path().join("ask.log"),
        "status\nhistory 3\n",
        "history ",
    );
    let status = text
        .lines()
        .find_map(|l| l.find("status ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no status in {text}"));
    let count: u64 = status.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(count >= READINGS, "{status}");
    assert!(
        status.contains(&format!("kept {count} min 18.00 max 2")),
        "{status}"
    );
    let relay_on = status.contains("relay on");
    let devices = devices_json(&killed, "thermo");
    assert_eq!(devices["open"][0]["name"], "relay", "{devices}");
    assert_eq!(devices["open"][0]["high"], relay_on, "{devices}\n{status}");

    // The chart after that last kill: one column per reading (the newest
    // on the right), the relay's bar on top. The frame of the last reading
    // logged, or of the one after (its frame released, its line not yet).
    let last_logged = text
        .lines()
        .filter_map(|l| l.find("reading ").map(|i| &l[i..]))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .max()
        .unwrap_or(count);
    let png = root.path().join("chart.png");
    ok(&run(&[
        "display",
        "--data",
        s(&killed),
        "thermo",
        "-o",
        s(&png),
    ]));
    let (w, h, px) = phantom_devices::display::decode_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!((w, h), (240, 120));
    let at = |x: u32, y: u32| &px[((y * w + x) * 3) as usize..][..3];
    let columns = (0..w)
        .filter(|&x| (4..h).any(|y| at(x, y) == [255, 255, 255]))
        .count() as u64;
    assert!(
        columns == last_logged || columns == last_logged + 1,
        "the chart has {columns} readings, the log {last_logged}"
    );
    let bar_red = at(0, 0) == [220, 30, 30];
    let devices = devices_json(&killed, "thermo");
    assert_eq!(devices["open"][0]["high"], bar_red, "the chart's relay bar");
}
