//! `phantom bench restore`: restore time of a spawned memtouch image to the
//! first event handled, lazy against eager in the same run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::{median, tempdir, us};

/// Arguments of `phantom bench restore`.
#[derive(Args, Debug)]
pub struct RestoreBenchArgs {
    /// The memtouch guest component.
    #[arg(long)]
    pub component: PathBuf,
    /// Size of the guest's buffer in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_mib: usize,
    /// Pages the guest touches before the image is written (0 = all pages).
    #[arg(long, default_value_t = 655)]
    pub touched_pages: u64,
    /// Restores measured (the median is reported).
    #[arg(long, default_value_t = 11)]
    pub rounds: usize,
    /// Restore modes to measure (comma-separated: lazy, eager,
    /// lazy-no-prefetch); each is measured on the same image.
    #[arg(long, value_delimiter = ',', default_value = "lazy,eager")]
    pub restore: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the restore benchmark and prints JSON.
pub fn run(args: &RestoreBenchArgs) -> anyhow::Result<serde_json::Value> {
    use phantom_runtime::gate::Input;
    use phantom_runtime::process::{Process, SpawnRequest};
    use phantom_runtime::runtime::{RestoreMode, Runtime, RuntimeConfig};
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let data = tempdir()?;
    let mut rt = Runtime::new(RuntimeConfig::default())?;
    let compile_start = Instant::now();
    let request = SpawnRequest {
        name: "bench".into(),
        args: vec!["--mib".into(), args.memory_mib.to_string()],
        files: vec![],
        env: Vec::new(),
        devices: None,
        scenario: None,
    };
    let (mut p, _) = Process::spawn(&rt, &bytes, &data, request)?;
    let spawn_time = compile_start.elapsed();
    let pages = (args.memory_mib as u64) << 8;
    let touched = if args.touched_pages == 0 {
        pages
    } else {
        args.touched_pages.min(pages)
    };
    p.offer(Input::ConsoleLine(format!("touch {touched} 1")))?;
    p.step(&rt)?;
    p.checkpoint(&rt)?;
    p.wait_for_write().transpose()?;
    drop(p);
    let dir = data.join("bench");
    let mut results = Vec::new();
    for mode in &args.restore {
        let mode = RestoreMode::parse(mode).map_err(anyhow::Error::msg)?;
        rt.set_restore_mode(mode);
        let mut times = Vec::new();
        let mut first = Vec::new();
        let mut filled = Vec::new();
        let mut stats = Vec::new();
        for _ in 0..args.rounds.max(1) {
            let t = Instant::now();
            let (mut p, warnings) = Process::restore(&rt, &dir)?;
            let restored = t.elapsed();
            p.offer(Input::ConsoleLine("info".into()))?;
            let out = p.step(&rt)?.unwrap_or_default();
            times.push(t.elapsed());
            first.push(restored);
            anyhow::ensure!(!out.is_empty(), "the restored guest printed nothing");
            // What the lazy restore had done by the first event, then how
            // long the rest took in the background.
            stats = p.lazy_stats();
            p.wait_filled()?;
            filled.push(t.elapsed());
            for w in warnings {
                eprintln!("phantom: {w}");
            }
            // No checkpoint is written: every round restores the same image.
        }
        let total = median(times);
        results.push(serde_json::json!({
            "restore": mode,
            "restore_to_first_event_us_median": us(total),
            "restore_only_us_median": us(median(first)),
            "restore_to_all_pages_filled_us_median": us(median(filled)),
            "lazy_at_first_event": stats,
            "ratio_spawn_over_restore": spawn_time.as_secs_f64() / total.as_secs_f64().max(1e-9),
            // The target is for the default (lazy) restore; eager is the
            // baseline it is compared with.
            "pass": if mode == RestoreMode::Eager { serde_json::Value::Null } else { (us(total) <= 10000.0).into() },
        }));
    }
    let _ = std::fs::remove_dir_all(&data);
    let first_event = |name: &str| {
        results
            .iter()
            .find(|r| r["restore"].as_str() == Some(name))
            .and_then(|r| r["restore_to_first_event_us_median"].as_f64())
    };
    let ratio = match (first_event("eager"), first_event("lazy")) {
        (Some(e), Some(l)) => serde_json::json!(e / l.max(1e-9)),
        _ => serde_json::Value::Null,
    };
    let out = serde_json::json!({
        "benchmark": "restore",
        "ratio_eager_over_lazy": ratio,
        "memory_mib": args.memory_mib,
        "touched_pages": touched,
        "rounds": args.rounds,
        "spawn_with_compile_us": us(spawn_time),
        "targets": { "restore_to_first_event_us_max": 10000.0 },
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(out)
}
