//! `phantom rollback`: a process goes back to one of its checkpoints (no
//! host may run the data directory meanwhile); the state it leaves is kept,
//! and `--undo` brings it back.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use phantom_runtime::travel;

use crate::EngineArgs;

/// Arguments of `phantom rollback`.
#[derive(Args)]
pub struct RollbackArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process.
    name: String,
    /// The checkpoint to go back to (see `phantom checkpoints`).
    #[arg(long, required_unless_present = "undo", conflicts_with = "undo")]
    to: Option<u64>,
    /// Undo the newest rollback: the state it left comes back (and the
    /// current one is kept in its place).
    #[arg(long)]
    undo: bool,
    /// Print what was done as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Runs `phantom rollback`.
pub fn run(a: RollbackArgs) -> anyhow::Result<ExitCode> {
    let rt = a.engine.runtime()?;
    if a.undo {
        let undo = travel::undo_rollback(&rt, &a.data, &a.name)?;
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "name": a.name,
                    "undone": true,
                    "kept": undo.kept,
                    "checkpoint": undo.checkpoint,
                    "warning": undo.warning,
                })
            );
        } else {
            eprintln!(
                "phantom: '{}' is back to the state its newest rollback left{}; the rolled-back state is kept in {}",
                a.name,
                undo.checkpoint
                    .map(|c| format!(", now checkpoint {c}"))
                    .unwrap_or_default(),
                undo.kept.display()
            );
        }
        if let Some(w) = &undo.warning {
            eprintln!("phantom: warning: {w}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(to) = a.to else {
        bail!("give --to ID (or --undo)");
    };
    let report = travel::rollback(&rt, &a.data, &a.name, to)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!(
            "phantom: rolled '{}' back to checkpoint {} (it was at {}), now checkpoint {}; the state it left is kept in {} (`phantom rollback --undo` brings it back)",
            report.name,
            report.to,
            report.from,
            report.checkpoint,
            report.kept.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
