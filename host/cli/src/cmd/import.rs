//! `phantom import`: a bundle becomes a process of a data directory, after
//! everything in it has been checked (a damaged, truncated or incompatible
//! bundle is refused and the directory is left as it was). If a host runs
//! the directory, it starts the process at once.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use phantom_runtime::datadir::HandOver;
use phantom_runtime::travel;

use crate::EngineArgs;
use crate::terminal::Progress;

/// Arguments of `phantom import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The bundle (`-`: stdin).
    bundle: PathBuf,
    /// The data directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// The process's name here (default: the name it was exported under).
    #[arg(long = "as")]
    as_name: Option<String>,
    /// Print what was imported as JSON.
    #[arg(long)]
    json: bool,
    /// Let the process keep grants of this host's own devices (`linux:`
    /// pins, buses, ports) that its bundle carries; without it such a
    /// bundle is refused.
    #[arg(long)]
    allow_host_devices: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Runs `phantom import`.
pub fn run(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let rt = a.engine.runtime()?;
    let from_stdin = a.bundle.as_os_str() == "-";
    let (mut input, total): (Box<dyn std::io::Read>, Option<u64>) = if from_stdin {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = std::fs::File::open(&a.bundle)
            .with_context(|| format!("cannot open {}", a.bundle.display()))?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let mut input = std::io::BufReader::with_capacity(1 << 20, &mut input);
    let mut progress = Progress::new("import", total);
    let result = travel::import(
        &rt,
        &a.data,
        &mut input,
        a.as_name.as_deref(),
        a.allow_host_devices,
        &mut |b| progress.update(b),
    );
    progress.finish();
    let source = if from_stdin {
        "stdin".to_string()
    } else {
        a.bundle.display().to_string()
    };
    let report = result.with_context(|| format!("cannot import {source}"))?;
    if a.json {
        let mut json = serde_json::to_value(&report)?;
        json["host_pid"] = match &report.handed_over {
            Some(HandOver::Started(pid) | HandOver::LeftFailed(pid)) => (*pid).into(),
            _ => serde_json::Value::Null,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    let what = format!(
        "imported '{}' into {} (checkpoint {}{}{})",
        report.name,
        report.dir.display(),
        report.checkpoint,
        match report.journal_entries {
            0 => String::new(),
            1 => ", 1 journal entry replayed".into(),
            n => format!(", {n} journal entries replayed"),
        },
        if report.failed {
            "; it is marked failed, as it was"
        } else {
            ""
        }
    );
    if !report.host_devices.is_empty() && !a.json {
        eprintln!(
            "phantom: note: '{}' is granted this host's devices: {}",
            report.name,
            report.host_devices.join(", ")
        );
    }
    if !crate::terminal::report_hand_over(&what, &report.handed_over, a.json) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
