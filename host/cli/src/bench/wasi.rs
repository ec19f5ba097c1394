//! `phantom bench wasi`: what WASI costs a persistent process, each against
//! its baseline in the same run (the `wasi-handles` guest):
//!
//! ```text
//!   restore, 100 live handles  vs  restore, no handles    (handle table rebuilt)
//!   println! of 64 bytes/event vs  console.write of 64 bytes/event
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use phantom_runtime::gate::Input;
use phantom_runtime::process::{Process, SpawnRequest};
use phantom_runtime::runtime::{Runtime, RuntimeConfig};

use super::{median, tempdir, us};

/// Arguments of `phantom bench wasi`.
#[derive(Args, Debug)]
pub struct WasiBenchArgs {
    /// The wasi-handles guest component.
    #[arg(long)]
    pub component: PathBuf,
    /// Live handles in the measured image.
    #[arg(long, default_value_t = 100)]
    pub handles: usize,
    /// Events per output measurement.
    #[arg(long, default_value_t = 20000)]
    pub events: usize,
    /// Rounds (the median is reported).
    #[arg(long, default_value_t = 11)]
    pub rounds: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn deliver(rt: &Runtime, p: &mut Process, line: &str) -> anyhow::Result<usize> {
    p.offer(Input::ConsoleLine(line.to_string()))?;
    let mut bytes = 0;
    while let Some(out) = p.step(rt)? {
        bytes += phantom_runtime::exit::console_text(&out).len();
    }
    Ok(bytes)
}

/// Median time to restore `dir` and handle one event.
fn restore_time(rt: &Runtime, dir: &std::path::Path, rounds: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let (mut p, _) = Process::restore(rt, dir)?;
        deliver(rt, &mut p, "ready 999")?;
        times.push(start.elapsed());
    }
    Ok(median(times))
}

/// Runs the benchmark and prints JSON.
pub fn run(args: &WasiBenchArgs) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let data = tempdir()?;
    let rt = Runtime::new(RuntimeConfig::default())?;
    let spawn = |name: &str| -> anyhow::Result<Process> {
        let request = SpawnRequest {
            name: name.into(),
            ..Default::default()
        };
        Ok(Process::spawn(&rt, &bytes, &data, request)?.0)
    };

    // Restore: the same guest holding `handles` handles, and none.
    let mut held = spawn("held")?;
    for _ in 0..args.handles {
        deliver(&rt, &mut held, "stdout")?;
    }
    held.checkpoint(&rt)?;
    held.wait_for_write().context("no write")??;
    drop(held);
    let mut empty = spawn("empty")?;
    empty.checkpoint(&rt)?;
    empty.wait_for_write().context("no write")??;
    drop(empty);
    let rounds = args.rounds.max(1);
    // Interleaved, so drift in the machine's speed hits both alike.
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..rounds {
        with.push(restore_time(&rt, &data.join("held"), 1)?);
        without.push(restore_time(&rt, &data.join("empty"), 1)?);
    }
    let (with, without) = (median(with), median(without));

    // Output: println! through WASI against console.write.
    let mut p = spawn("print")?;
    let mut println_t = Vec::new();
    let mut console_t = Vec::new();
    let per_round = (args.events / rounds).max(1);
    for _ in 0..rounds {
        for (cmd, times) in [("p64", &mut println_t), ("c64", &mut console_t)] {
            let start = Instant::now();
            let mut out = 0;
            for _ in 0..per_round {
                out += deliver(&rt, &mut p, cmd)?;
            }
            anyhow::ensure!(out == 64 * per_round, "{cmd} printed {out} bytes");
            times.push(start.elapsed() / per_round as u32);
        }
    }
    let (println_t, console_t) = (median(println_t), median(console_t));
    let _ = std::fs::remove_dir_all(&data);
    let added = with.saturating_sub(without);
    let result = serde_json::json!({
        "benchmark": "wasi",
        "restore": {
            "handles": args.handles,
            "with_handles_us": us(with),
            "without_handles_us": us(without),
            "added_us": us(added),
            "ratio": us(with) / us(without),
            "added_within_1ms": added <= Duration::from_millis(1),
        },
        "output": {
            "bytes_per_event": 64,
            "events": per_round * rounds,
            "println_us_per_event": us(println_t),
            "console_write_us_per_event": us(console_t),
            "ratio": us(println_t) / us(console_t),
            "within_2x": us(println_t) <= 2.0 * us(console_t),
        },
    });
    if args.json {
        println!("{result}");
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(result)
}
