//! `phantom bench devices`: what a device costs a persistent process, each
//! against its baseline in the same run (the `relay-sensor` guest on the
//! simulated devices):
//!
//! ```text
//!   gpio.set-level from the guest    vs  SimPin::set_state called directly
//!   i2c.write-read from the guest    vs  SimI2cBus::write_read called directly
//!   restore with 16 open pins        vs  restore with none
//! ```
//! A host call's cost is (time of one call doing N operations - time of one
//! call doing none) / N: the guest loop, the policy check, the gate's
//! journal entry, the effect and its release to the pin.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use embedded_hal::digital::OutputPin;
use embedded_hal::i2c::I2c;
use phantom_devices::PinMode;
use phantom_devices::scenario::Scenario;
use phantom_devices::sim::SimWorld;
use phantom_runtime::gate::Input;
use phantom_runtime::process::{Process, SpawnRequest};
use phantom_runtime::runtime::{Runtime, RuntimeConfig};

use super::{median, tempdir, us};

/// Arguments of `phantom bench devices`.
#[derive(Args, Debug)]
pub struct DevicesBenchArgs {
    /// The relay-sensor guest component.
    #[arg(long)]
    pub component: PathBuf,
    /// Operations per measured call.
    #[arg(long, default_value_t = 1000)]
    pub ops: usize,
    /// Rounds (the median is reported).
    #[arg(long, default_value_t = 21)]
    pub rounds: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Open pins in the restore measurement.
const OPEN_DEVICES: usize = 16;

fn manifest() -> String {
    let mut m = String::from(
        "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\ni2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\n",
    );
    for k in 0..OPEN_DEVICES {
        m += &format!("gpio.p{k} = {{ pin = \"sim:1/{k}\", modes = [\"output\"] }}\n");
    }
    m
}

fn deliver(rt: &Runtime, p: &mut Process, line: &str) -> anyhow::Result<String> {
    p.offer(Input::ConsoleLine(line.to_string()))?;
    let mut text = Vec::new();
    while let Some(out) = p.step(rt)? {
        text.extend(phantom_runtime::exit::console_text(&out));
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Median time of `line` as one call.
fn call_time(rt: &Runtime, p: &mut Process, line: &str, rounds: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let out = deliver(rt, p, line)?;
        times.push(start.elapsed());
        anyhow::ensure!(out.starts_with("looped"), "{line}: {out}");
    }
    Ok(median(times))
}

/// Median time of `f` run `n` times, per run.
fn direct(n: usize, rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        times.push(start.elapsed() / n as u32);
    }
    median(times)
}

/// Median time to restore `dir` and handle one event.
fn restore_time(rt: &Runtime, dir: &std::path::Path) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let (mut p, _) = Process::restore(rt, dir)?;
    deliver(rt, &mut p, "level")?;
    Ok(start.elapsed())
}

/// Runs the benchmark and prints JSON.
pub fn run(args: &DevicesBenchArgs) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let data = tempdir()?;
    let rt = Runtime::new(RuntimeConfig::default())?;
    let spawn = |name: &str| -> anyhow::Result<Process> {
        let request = SpawnRequest {
            name: name.into(),
            devices: Some(manifest()),
            ..Default::default()
        };
        Ok(Process::spawn(&rt, &bytes, &data, request)?.0)
    };
    let rounds = args.rounds.max(1);
    let n = args.ops.max(1);

    // Host calls from the guest against the backend called directly.
    let mut p = spawn("calls")?;
    let none = call_time(&rt, &mut p, "gpio-loop 0", rounds)?;
    let gpio = call_time(&rt, &mut p, &format!("gpio-loop {n}"), rounds)?;
    let i2c = call_time(&rt, &mut p, &format!("i2c-loop {n}"), rounds)?;
    let per = |t: Duration| t.saturating_sub(none) / n as u32;
    let (gpio_guest, i2c_guest) = (per(gpio), per(i2c));
    drop(p);
    let mut world = SimWorld::new(Scenario::default());
    let mut pin = world.bank("0").pin(17);
    pin.configure(PinMode::Output)?;
    let mut high = false;
    let gpio_direct = direct(n, rounds, || {
        high = !high;
        let _ = pin.set_state(high.into());
    });
    let mut bus = world.bus("bme280").context("no simulated BME280")?;
    let mut id = [0u8];
    let i2c_direct = direct(n, rounds, || {
        let _ = bus.write_read(0x76, &[0xd0], &mut id);
    });

    // Restore with 16 open pins against none.
    let mut held = spawn("held")?;
    for k in 0..OPEN_DEVICES {
        let out = deliver(&rt, &mut held, &format!("open p{k} output"))?;
        anyhow::ensure!(out.starts_with("ok"), "open p{k}: {out}");
    }
    held.checkpoint(&rt)?;
    held.wait_for_write().context("no write")??;
    drop(held);
    let mut empty = spawn("empty")?;
    empty.checkpoint(&rt)?;
    empty.wait_for_write().context("no write")??;
    drop(empty);
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..rounds {
        with.push(restore_time(&rt, &data.join("held"))?);
        without.push(restore_time(&rt, &data.join("empty"))?);
    }
    let (with, without) = (median(with), median(without));
    let _ = std::fs::remove_dir_all(&data);
    let added = with.saturating_sub(without);
    let gpio_over = gpio_guest.saturating_sub(gpio_direct);
    let i2c_over = i2c_guest.saturating_sub(i2c_direct);
    let result = serde_json::json!({
        "benchmark": "devices",
        "host_call": {
            "ops_per_call": n,
            "gpio_set_level_us": us(gpio_guest),
            "gpio_direct_us": us(gpio_direct),
            "gpio_overhead_us": us(gpio_over),
            "i2c_write_read_us": us(i2c_guest),
            "i2c_direct_us": us(i2c_direct),
            "i2c_overhead_us": us(i2c_over),
            "within_2us": gpio_over <= Duration::from_micros(2) && i2c_over <= Duration::from_micros(2),
        },
        "restore": {
            "open_devices": OPEN_DEVICES,
            "with_devices_us": us(with),
            "without_devices_us": us(without),
            "added_us": us(added),
            "added_within_1ms": added <= Duration::from_millis(1),
        },
    });
    if args.json {
        println!("{result}");
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(result)
}
