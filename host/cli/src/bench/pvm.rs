//! `phantom bench pvm`: PVM bytecodes per second natively and inside the
//! component (a persistent process run by the runtime's drive loop), rounds
//! alternating in one run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::{median, tempdir, us};

/// Arguments of `phantom bench pvm`.
#[derive(Args, Debug)]
pub struct PvmBenchArgs {
    /// Loop iterations of the benchmark class per round.
    #[arg(long, default_value_t = 300_000)]
    pub iterations: u32,
    /// Rounds; native and Wasm runs alternate, and medians are compared, so
    /// the machine's drift does not land in the ratio.
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    /// The PVM component (default: built next to this binary).
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// What the benchmark class runs: `both` loops (the benchmark), or only
    /// `run` (calls, fields, allocation) or `spin` (integer loop: dispatch).
    #[arg(long, value_enum, default_value_t = PvmWorkload::Both)]
    pub workload: PvmWorkload,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The loops of the benchmark class a `bench pvm` run times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvmWorkload {
    /// `run` then `spin`, `iterations` times each.
    Both,
    /// Only `run` (`spin` does one iteration).
    Run,
    /// Only `spin` (`run` does one iteration).
    Spin,
}

/// One native run of the benchmark class.
struct NativeRun {
    time: Duration,
    output: Vec<u8>,
    bytecodes: u64,
    gc: pvm::GcStats,
    /// Extra time of the slices in which the collector ran.
    gc_pauses: Vec<Duration>,
}

fn native_run(call: &[String], files: Vec<(String, Vec<u8>)>) -> anyhow::Result<NativeRun> {
    let mut vm =
        pvm::PvmProcess::init(call, files, pvm::VmConfig::default()).map_err(anyhow::Error::msg)?;
    let mut output = Vec::new();
    // Slices of 100k bytecodes, timed one by one: a slice in which the
    // collector ran took longer than a plain one by its GC pause.
    let mut plain = Vec::new();
    let mut with_gc = Vec::new();
    let t = Instant::now();
    let end = loop {
        let before = vm.gc_stats().collections;
        let s = Instant::now();
        let outcome = vm.run_slice(0, 100_000, &mut output);
        let took = s.elapsed();
        if vm.gc_stats().collections > before {
            with_gc.push(took)
        } else {
            plain.push(took)
        }
        if !matches!(outcome, pvm::SliceOutcome::Busy) {
            break outcome;
        }
    };
    let time = t.elapsed();
    anyhow::ensure!(
        matches!(end, pvm::SliceOutcome::Finished { exit_code: 0 }),
        "native run ended with {end:?}: {}",
        String::from_utf8_lossy(&output)
    );
    let plain_slice = if plain.is_empty() {
        Duration::ZERO
    } else {
        median(plain)
    };
    Ok(NativeRun {
        time,
        output,
        bytecodes: vm.instructions_executed(),
        gc: vm.vm().gc_stats(),
        gc_pauses: with_gc
            .iter()
            .map(|d| d.saturating_sub(plain_slice))
            .collect(),
    })
}

/// Runs the benchmark class natively and inside the PVM component, in the
/// same run, alternating, and prints JSON.
pub fn run(args: &PvmBenchArgs, component: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    use phantom_runtime::drive::{Collect, Drive, DriveOptions};
    use phantom_runtime::exit::console_text;
    use phantom_runtime::process::{Process, SpawnRequest};
    use phantom_runtime::runtime::{Runtime, RuntimeConfig};
    use pvm::bench::{BENCH_CLASS, BENCH_ENTRY, bench_files_with};
    let call = vec![
        "--class".to_string(),
        BENCH_CLASS.to_string(),
        "--method".to_string(),
        BENCH_ENTRY.to_string(),
    ];
    let n = args.iterations;
    let files = match args.workload {
        PvmWorkload::Both => bench_files_with(n, n),
        PvmWorkload::Run => bench_files_with(n, 1),
        PvmWorkload::Spin => bench_files_with(1, n),
    };
    let bytes =
        std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    let data = tempdir()?;
    let rt = Runtime::new(RuntimeConfig::default())?;
    // The drive loop `phantom run` and `pvm run` use, with nothing but the
    // one process: no checkpoints, stop when it exits.
    let opts = DriveOptions {
        checkpoint_every: None,
        until_idle: true,
        stop_when_empty: true,
        final_checkpoint: false,
        ..DriveOptions::default()
    };
    let mut native_times = Vec::new();
    let mut wasm_times = Vec::new();
    let mut gc_pauses = Vec::new();
    let mut last_native = None;
    for round in 0..args.rounds.max(1) {
        let native = native_run(&call, files.clone())?;
        // Inside the component, as a persistent process: init, then slices
        // (the spawn's compile and first checkpoint are not timed).
        let request = SpawnRequest {
            name: format!("bench-{round}"),
            args: call.clone(),
            files: files.clone(),
            env: Vec::new(),
            devices: None,
            scenario: None,
        };
        let (p, init_out) = Process::spawn(&rt, &bytes, &data, request)?;
        let mut wasm_out = console_text(&init_out);
        let mut drive = Drive::new(&rt, None);
        drive.add(p);
        let mut sink = Collect::default();
        let t = Instant::now();
        let summary = drive.run(&opts, None, None, &mut sink);
        wasm_times.push(t.elapsed());
        if let Some((_, f)) = summary.failed.first() {
            anyhow::bail!("the PVM component failed: {f}");
        }
        anyhow::ensure!(
            summary.exited.first().map(|e| e.1) == Some(0),
            "the PVM component did not exit with 0: {:?}",
            summary.exited
        );
        let outputs: Vec<_> = sink.outputs.into_iter().map(|(_, o)| o).collect();
        wasm_out.extend(console_text(&outputs));
        anyhow::ensure!(wasm_out == native.output, "native and Wasm outputs differ");
        native_times.push(native.time);
        gc_pauses.extend(native.gc_pauses.iter().copied());
        last_native = Some(native);
    }
    let _ = std::fs::remove_dir_all(&data);
    let native = last_native.expect("at least one round");
    let ms = |v: &[Duration]| v.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>();
    // Every round, in order: how much this machine drifted during the run.
    let round_ms = serde_json::json!({ "native": ms(&native_times), "wasm": ms(&wasm_times) });
    let fastest = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    // Interference only adds time, so the fastest rounds estimate what the
    // code costs on a quiet machine; a slow patch of the machine slows the
    // component more than the native build (DESIGN.md, "The dispatch loop").
    let ratio_fastest = fastest(&wasm_times).as_secs_f64() / fastest(&native_times).as_secs_f64();
    let native_rate = native.bytecodes as f64 / median(native_times).as_secs_f64();
    let wasm_rate = native.bytecodes as f64 / median(wasm_times).as_secs_f64();
    let gc = native.gc;
    let gc_pause_max = gc_pauses.iter().max().copied().unwrap_or_default();
    let gc_pause_mean = gc_pauses.iter().sum::<Duration>() / gc_pauses.len().max(1) as u32;
    let out = serde_json::json!({
        "benchmark": "pvm",
        "iterations": args.iterations,
        "workload": format!("{:?}", args.workload).to_lowercase(),
        "rounds": args.rounds,
        "bytecodes": native.bytecodes,
        "native_bytecodes_per_s": native_rate,
        "wasm_bytecodes_per_s": wasm_rate,
        "ratio_native_over_wasm": native_rate / wasm_rate,
        "ratio_fastest_rounds": ratio_fastest,
        "round_ms": round_ms,
        "gc": { "collections": gc.collections, "objects_allocated": gc.allocated,
                "objects_freed": gc.freed, "largest_pause_work_slots": gc.max_pause_work,
                "pause_us_max": us(gc_pause_max), "pause_us_mean": us(gc_pause_mean) },
        "output": String::from_utf8_lossy(&native.output),
        "targets": { "native_bytecodes_per_s_min": 5.0e7, "ratio_native_over_wasm_max": 1.5 },
        "pass": native_rate >= 5.0e7 && native_rate / wasm_rate <= 1.5,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(out)
}
