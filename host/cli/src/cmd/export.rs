//! `phantom export`: writes one process as a bundle (component, the chain
//! of its newest or a chosen checkpoint, the journal after it, metadata),
//! to a file (written aside and renamed, so a failed export leaves none)
//! or to stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use phantom_runtime::travel::ExportPlan;

use crate::terminal::Progress;

/// Arguments of `phantom export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process to export.
    name: String,
    /// The bundle to write (`-`: stdout; a directory: NAME.phb in it). An
    /// existing file is replaced, once the new bundle is whole.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Export this checkpoint (see `phantom checkpoints`) instead of the
    /// newest: the process as it was then, without the journal after it.
    #[arg(long)]
    at: Option<u64>,
    /// Print what was written as JSON on stdout (on stderr with `-o -`).
    #[arg(long)]
    json: bool,
}

/// Runs `phantom export`.
pub fn run(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let plan = ExportPlan::prepare(&a.data, &a.name, a.at)?;
    let mut progress = Progress::new("export", Some(plan.bytes()));
    let to_stdout = a.output.as_os_str() == "-";
    let report = if to_stdout {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            bail!("stdout is a terminal: give a file with -o FILE, or redirect stdout");
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let report = plan.write(&mut out, &mut |b| progress.update(b))?;
        out.flush().context("cannot write the bundle to stdout")?;
        report
    } else {
        // A directory: the bundle goes in it, named after the process.
        let output = if a.output.is_dir() {
            a.output.join(format!("{}.phb", a.name))
        } else {
            a.output.clone()
        };
        let file_name = output
            .file_name()
            .with_context(|| format!("{} is not a file name", output.display()))?;
        remove_stale_temporaries(&output);
        let tmp = output.with_file_name(format!(
            ".{}.{}.tmp",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let write = || -> anyhow::Result<_> {
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let report = plan.write(&mut out, &mut |b| progress.update(b))?;
            let file = out
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            file.sync_all()
                .with_context(|| format!("cannot sync {}", tmp.display()))?;
            std::fs::rename(&tmp, &output)
                .with_context(|| format!("cannot create {}", output.display()))?;
            Ok(report)
        };
        match write() {
            Ok(r) => r,
            Err(e) => {
                progress.finish();
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    };
    progress.finish();
    for w in &report.warnings {
        eprintln!("phantom: warning: {w}");
    }
    if a.json {
        let json = serde_json::to_string_pretty(&report)?;
        if to_stdout {
            eprintln!("{json}");
        } else {
            println!("{json}");
        }
    } else {
        let target = if to_stdout {
            "stdout".to_string()
        } else if a.output.is_dir() {
            a.output
                .join(format!("{}.phb", a.name))
                .display()
                .to_string()
        } else {
            a.output.display().to_string()
        };
        eprintln!(
            "phantom: exported '{}' to {target}: checkpoint {} ({} file{}), {} journal entr{} after it, {:.1} MiB",
            report.name,
            report.checkpoint,
            report.chain.len(),
            if report.chain.len() == 1 { "" } else { "s" },
            report.journal_entries,
            if report.journal_entries == 1 {
                "y"
            } else {
                "ies"
            },
            report.bytes as f64 / (1 << 20) as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes `.<file>.<pid>.tmp` files beside `output` left by exports that
/// were killed (their pid no longer runs).
fn remove_stale_temporaries(output: &std::path::Path) {
    let (Some(dir), Some(name)) = (output.parent(), output.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = n
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
