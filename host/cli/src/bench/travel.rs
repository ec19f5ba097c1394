//! `phantom bench travel`: export and import throughput of a process whose
//! memory does not compress, against `cp` of the same bytes in the same
//! run (the bundle file for export, the process directory for import).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;

use super::{median, tempdir};

/// Arguments of `phantom bench travel`.
#[derive(Args, Debug)]
pub struct TravelBenchArgs {
    /// The memtouch guest component.
    #[arg(long)]
    pub component: PathBuf,
    /// Size of the guest's buffer in MiB (filled with pseudo-random bytes).
    #[arg(long, default_value_t = 256)]
    pub memory_mib: usize,
    /// Rounds of each (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn cp(from: &Path, to: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .context("cannot run cp")?;
    let took = t.elapsed();
    ensure!(status.success(), "cp failed");
    Ok(took)
}

/// `cp -r`, then `sync -f` of the copy: a copy that is durable, as an
/// import is.
fn cp_synced(from: &Path, to: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    cp(from, to)?;
    let status = Command::new("sync")
        .arg("-f")
        .arg(to)
        .status()
        .context("cannot run sync")?;
    ensure!(status.success(), "sync failed");
    Ok(t.elapsed())
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

/// Runs the benchmark and prints JSON.
pub fn run(args: &TravelBenchArgs) -> anyhow::Result<serde_json::Value> {
    use phantom_runtime::gate::Input;
    use phantom_runtime::process::{Process, SpawnRequest};
    use phantom_runtime::runtime::{Runtime, RuntimeConfig};
    use phantom_runtime::travel::{ExportPlan, import};
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let root = tempdir()?;
    let src = root.join("src");
    std::fs::create_dir_all(&src)?;
    let rt = Runtime::new(RuntimeConfig::default())?;
    let request = SpawnRequest {
        name: "bench".into(),
        args: vec!["--mib".into(), args.memory_mib.to_string()],
        files: vec![],
        env: Vec::new(),
        devices: None,
        scenario: None,
    };
    let (mut p, _) = Process::spawn(&rt, &bytes, &src, request)?;
    p.offer(Input::ConsoleLine("fill 7".into()))?;
    p.step(&rt)?;
    p.require_full();
    p.checkpoint(&rt)?;
    p.wait_for_write().transpose()?;
    drop(p);
    let dir = src.join("bench");
    let dir_bytes: u64 = std::fs::read_dir(&dir)?
        .flatten()
        .filter_map(|e| e.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()))
        .sum();

    let (mut export_t, mut cp_bundle_t, mut import_t, mut cp_dir_t, mut cp_sync_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bundle_bytes = 0;
    for round in 0..args.rounds.max(1) {
        let bundle = root.join(format!("b{round}.phb"));
        let t = Instant::now();
        let plan = ExportPlan::prepare(&src, "bench", None)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&bundle)?);
        let report = plan.write(&mut out, &mut |_| {})?;
        drop(out);
        export_t.push(t.elapsed());
        bundle_bytes = report.bytes;
        cp_bundle_t.push(cp(&bundle, &root.join(format!("copy{round}.phb")))?);

        let data = root.join(format!("dst{round}"));
        let t = Instant::now();
        let mut input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&bundle)?);
        import(&rt, &data, &mut input, None, false, &mut |_| {})?;
        import_t.push(t.elapsed());
        cp_dir_t.push(cp(&dir, &root.join(format!("cpdir{round}")))?);
        cp_sync_t.push(cp_synced(&dir, &root.join(format!("cpsync{round}")))?);
        for p in [
            bundle,
            root.join(format!("copy{round}.phb")),
            data,
            root.join(format!("cpdir{round}")),
            root.join(format!("cpsync{round}")),
        ] {
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    let (e, cb, i, cd, cs) = (
        median(export_t),
        median(cp_bundle_t),
        median(import_t),
        median(cp_dir_t),
        median(cp_sync_t),
    );
    let out = serde_json::json!({
        "benchmark": "travel",
        "memory_mib": args.memory_mib,
        "rounds": args.rounds,
        "bundle_bytes": bundle_bytes,
        "process_dir_bytes": dir_bytes,
        "export_mib_s": mib_s(bundle_bytes, e),
        "cp_bundle_mib_s": mib_s(bundle_bytes, cb),
        "ratio_export_over_cp": cb.as_secs_f64() / e.as_secs_f64().max(1e-9),
        "import_mib_s": mib_s(bundle_bytes, i),
        "cp_process_dir_mib_s": mib_s(dir_bytes, cd),
        "ratio_import_over_cp": cd.as_secs_f64() / i.as_secs_f64().max(1e-9),
        "cp_synced_process_dir_mib_s": mib_s(dir_bytes, cs),
        "ratio_import_over_cp_synced": cs.as_secs_f64() / i.as_secs_f64().max(1e-9),
        "note": "ratios are throughput against cp of the same bytes (1.0 = as fast as cp; cp_synced: cp then sync -f, durable as an import is); import also verifies every image (checksums and decompression), syncs every file, and restores the process once to replay its journal",
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(out)
}
