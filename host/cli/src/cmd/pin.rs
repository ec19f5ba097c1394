//! `phantom pin`: keep a checkpoint whatever the keep policy says (or
//! `--unpin` it). Works while a host runs the data directory: the store's
//! own lock orders the pin against the host's retention.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_snapshots::CheckpointStore;
use serde_json::json;

/// Arguments of `phantom pin`.
#[derive(Args)]
pub struct PinArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process.
    name: String,
    /// The checkpoint (see `phantom checkpoints`).
    id: u64,
    /// Unpin it instead: retention may delete it again.
    #[arg(long)]
    unpin: bool,
    /// Print the pinned checkpoints as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom pin`.
pub fn run(a: PinArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::open(&a.data)?.process_dir(&a.name)?;
    let store = CheckpointStore::open(&dir)?;
    let pins = store
        .pin(a.id, !a.unpin)
        .map_err(|e| anyhow::anyhow!("cannot pin checkpoint {} of '{}': {e}", a.id, a.name))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"name": a.name, "pinned": pins}))?
        );
    } else {
        let list: Vec<String> = pins.iter().map(u64::to_string).collect();
        println!(
            "{} checkpoint {} of '{}'; pinned: {}",
            if a.unpin { "unpinned" } else { "pinned" },
            a.id,
            a.name,
            if list.is_empty() {
                "none".into()
            } else {
                list.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
