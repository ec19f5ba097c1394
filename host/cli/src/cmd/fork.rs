//! `phantom fork`: a new process that starts as another one is (or was, at
//! a chosen checkpoint) and runs on independently. The chain it starts from
//! is hard-linked, not copied.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::travel;

use crate::EngineArgs;

/// Arguments of `phantom fork`.
#[derive(Args)]
pub struct ForkArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process to fork.
    name: String,
    /// The new process's name.
    #[arg(long = "as")]
    as_name: String,
    /// Fork from this checkpoint (see `phantom checkpoints`) instead of the
    /// newest: the process as it was then, without the journal after it.
    #[arg(long)]
    at: Option<u64>,
    /// Print what was made as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Runs `phantom fork`.
pub fn run(a: ForkArgs) -> anyhow::Result<ExitCode> {
    let rt = a.engine.runtime()?;
    let report = travel::fork(&rt, &a.data, &a.name, a.at, &a.as_name)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let what = format!(
        "forked '{}' as '{}' from checkpoint {}{} ({:.1} MiB shared, {:.1} MiB copied)",
        report.from,
        report.name,
        report.checkpoint,
        match report.journal_entries {
            0 => String::new(),
            1 => " and the 1 journal entry after it".into(),
            n => format!(" and the {n} journal entries after it"),
        },
        report.linked_bytes as f64 / (1 << 20) as f64,
        report.copied_bytes as f64 / (1 << 20) as f64,
    );
    if !crate::terminal::report_hand_over(&what, &report.handed_over, a.json) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
