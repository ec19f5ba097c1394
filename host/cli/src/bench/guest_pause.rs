//! `phantom bench guest-pause`: the checkpoint pause of a C guest against a
//! Rust guest's, the same pages dirtied in each (`c-memtouch` and
//! `memtouch`), measured interleaved in the same run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use phantom_runtime::gate::Input;
use phantom_runtime::process::{Process, SpawnRequest};
use phantom_runtime::runtime::{Runtime, RuntimeConfig};

use super::{median, tempdir, us};

/// Arguments of `phantom bench guest-pause`.
#[derive(Args, Debug)]
pub struct GuestPauseBenchArgs {
    /// The Rust memtouch component (the baseline).
    #[arg(long)]
    pub rust: PathBuf,
    /// The C c-memtouch component.
    #[arg(long)]
    pub c: PathBuf,
    /// Each guest's buffer, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// Pages dirtied before each checkpoint.
    #[arg(long, default_value_t = 655)]
    pub dirty_pages: usize,
    /// Checkpoints per guest (the median is reported).
    #[arg(long, default_value_t = 21)]
    pub rounds: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints JSON.
pub fn run(args: &GuestPauseBenchArgs) -> anyhow::Result<serde_json::Value> {
    let data = tempdir()?;
    let rt = Runtime::new(RuntimeConfig::default())?;
    let spawn = |name: &str, path: &PathBuf| -> anyhow::Result<Process> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let request = SpawnRequest {
            name: name.into(),
            args: vec!["--mib".into(), args.memory_mib.to_string()],
            ..Default::default()
        };
        Ok(Process::spawn(&rt, &bytes, &data, request)?.0)
    };
    let mut guests = [
        (spawn("rust", &args.rust)?, Vec::new()),
        (spawn("c", &args.c)?, Vec::new()),
    ];
    let mut dirty = [Vec::new(), Vec::new()];
    for round in 0..args.rounds.max(1) + 1 {
        // Alternate which goes first, so neither always follows the other's
        // write.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (p, pauses) = &mut guests[i];
            p.offer(Input::ConsoleLine(format!(
                "touch {} {round}",
                args.dirty_pages
            )))?;
            let out = p.step(&rt)?.unwrap_or_default();
            let text =
                String::from_utf8_lossy(&phantom_runtime::exit::console_text(&out)).into_owned();
            anyhow::ensure!(text.starts_with("touched"), "{} printed {text:?}", p.name());
            let report = p.checkpoint(&rt)?;
            p.wait_for_write().context("no write")??;
            // The first round also carries init's pages: not measured.
            if round > 0 {
                pauses.push(report.pause);
                dirty[i].push(report.dirty_pages);
            }
        }
    }
    let sizes: Vec<Vec<usize>> = guests.iter().map(|(p, _)| p.memory_sizes()).collect();
    let _ = std::fs::remove_dir_all(&data);
    let pause = |i: usize| -> Duration { median(guests[i].1.clone()) };
    let (rust, c) = (pause(0), pause(1));
    let least = |i: usize| guests[i].1.iter().min().copied().unwrap_or_default();
    let result = serde_json::json!({
        "benchmark": "guest-pause",
        "memory_mib": args.memory_mib,
        "dirty_pages": args.dirty_pages,
        "rounds": args.rounds,
        "rust_pause_us_median": us(rust),
        "c_pause_us_median": us(c),
        "memory_bytes": { "rust": sizes[0], "c": sizes[1] },
        "dirty_pages_captured": { "rust": dirty[0].iter().max(), "c": dirty[1].iter().max() },
        "rust_pause_us_min": us(least(0)),
        "c_pause_us_min": us(least(1)),
        "ratio_c_over_rust": us(c) / us(rust).max(1e-9),
        "ratio_c_over_rust_min": us(least(1)) / us(least(0)).max(1e-9),
    });
    if args.json {
        println!("{result}");
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(result)
}
