//! `phantom bench checkpoint`: the capture the host performs between two
//! guest calls (find the dirty pages, copy them into the memfd, drop the
//! private copies), played directly on a memfd-backed memory with no
//! component in the way. The baseline is what a non-incremental snapshot
//! pauses for: copying the whole memory into a new buffer.

use std::time::Instant;

use anyhow::Context;
use clap::Args;
use phantom_memory::{PAGE_SIZE, StandaloneMemory, TrackerKind};

use super::{median, us};

/// Writes one byte into `k` pages spread evenly over `bytes`.
fn touch_spread(bytes: &mut [u8], k: u64, seed: u8) {
    let pages = (bytes.len() / PAGE_SIZE) as u64;
    let k = k.min(pages).max(1);
    for i in 0..k {
        let page = i * pages / k;
        let b = &mut bytes[page as usize * PAGE_SIZE + (i as usize % PAGE_SIZE)];
        *b = b.wrapping_add(seed | 1);
    }
}

/// Arguments of `phantom bench checkpoint`.
#[derive(Args, Debug)]
pub struct CheckpointBenchArgs {
    /// Memory sizes in MiB (comma-separated to compare sizes in one run).
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub memory_mib: Vec<usize>,
    /// Pages the guest dirties between two checkpoints.
    #[arg(long, default_value_t = 655)]
    pub dirty_pages: u64,
    /// Checkpoints measured per size (the median is reported).
    #[arg(long, default_value_t = 21)]
    pub rounds: usize,
    /// Trackers to measure (comma-separated; `auto` is the best available).
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    pub tracker: Vec<String>,
    /// Print JSON (the only format; accepted for symmetry with other commands).
    #[arg(long)]
    pub json: bool,
}

/// Runs the checkpoint benchmark and prints JSON.
pub fn run(args: &CheckpointBenchArgs) -> anyhow::Result<serde_json::Value> {
    let mut results = Vec::new();
    for tracker in &args.tracker {
        let kind = TrackerKind::parse(tracker).map_err(anyhow::Error::msg)?;
        for &mib in &args.memory_mib {
            results.push(checkpoint_one(
                kind,
                mib,
                args.dirty_pages,
                args.rounds.max(1),
            )?);
        }
    }
    let out = serde_json::json!({ "benchmark": "checkpoint", "results": results });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(out)
}

fn checkpoint_one(
    kind: TrackerKind,
    mib: usize,
    dirty: u64,
    rounds: usize,
) -> anyhow::Result<serde_json::Value> {
    let size = mib.checked_mul(1 << 20).context("memory size too large")?;
    let mut cell = StandaloneMemory::new(size, size.next_power_of_two().max(1 << 30), kind)?;
    // A guest that has used all of its memory: every page holds data and has
    // been checkpointed once.
    cell.with_bytes_mut(|b| {
        for (i, page) in b.chunks_mut(PAGE_SIZE).enumerate() {
            page[0] = i as u8 | 1;
        }
    })?;
    cell.capture(false)?;
    let mut pauses = Vec::with_capacity(rounds);
    let mut found = 0;
    for round in 0..rounds {
        cell.with_bytes_mut(|b| touch_spread(b, dirty, round as u8))?;
        let t = Instant::now();
        let c = cell.capture(false)?;
        pauses.push(t.elapsed());
        found = c.dirty.iter().map(|r| r.count).sum::<u64>();
    }
    anyhow::ensure!(
        found == dirty.min((size / PAGE_SIZE) as u64),
        "tracker found {found} dirty pages, expected {dirty}"
    );
    // Baseline: a full copy of the same memory into a new buffer, the pause
    // of a snapshot that is not incremental.
    let mut copies = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let copy = cell.with_bytes(|b| b.to_vec())?;
        copies.push(t.elapsed());
        std::hint::black_box(&copy);
    }
    // Also our own capture with every page written (a full capture through
    // the same path), for reference.
    cell.with_bytes_mut(|b| touch_spread(b, u64::MAX, 7))?;
    let t = Instant::now();
    cell.capture(false)?;
    let all_dirty = t.elapsed();
    let pause = median(pauses.clone());
    let baseline = median(copies);
    Ok(serde_json::json!({
        "tracker": kind.name(),
        "memory_mib": mib,
        "dirty_pages": dirty,
        "rounds": rounds,
        "pause_us_median": us(pause),
        "pause_us_max": us(*pauses.iter().max().unwrap_or(&pause)),
        "baseline_full_copy_us": us(baseline),
        "ratio_baseline_over_pause": baseline.as_secs_f64() / pause.as_secs_f64().max(1e-9),
        "capture_all_pages_dirty_us": us(all_dirty),
        // The targets are stated for 256 MiB; other sizes show how
        // the pause scales.
        "targets": { "memory_mib": 256, "pause_us_max": 2000.0, "ratio_min": 100.0 },
        "pass": if mib == 256 {
            (us(pause) <= 2000.0 && baseline.as_secs_f64() / pause.as_secs_f64().max(1e-9) >= 100.0).into()
        } else {
            serde_json::Value::Null
        },
    }))
}
