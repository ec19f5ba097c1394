//! `phantom gc`: applies each process's keep policy and collects the pages
//! no kept checkpoint names. A host collects after its own checkpoints;
//! this runs it now (also while a host runs: the store's lock orders it
//! against the host's writes). Killed at any point, it loses no page a
//! checkpoint names.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_snapshots::CheckpointStore;
use serde_json::json;

/// Arguments of `phantom gc`.
#[derive(Args)]
pub struct GcArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// One process (default: every process).
    name: Option<String>,
    /// Print what was collected as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom gc`.
pub fn run(a: GcArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(&a.data)?;
    let dirs = match &a.name {
        Some(n) => vec![data.process_dir(n)?],
        None => data.process_dirs()?,
    };
    let mut rows = Vec::new();
    let mut ok = true;
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = CheckpointStore::open(&dir).and_then(|s| {
            let removed = s.retain()?;
            Ok((removed, s.collect_garbage()?))
        });
        match result {
            Ok((removed, r)) => {
                if !a.json {
                    println!(
                        "{name}: {} checkpoints deleted by the keep policy; {} packs deleted, {} compacted, {} pages freed; pages {} -> {} bytes",
                        removed.len(),
                        r.packs_deleted,
                        r.packs_compacted,
                        r.pages_freed,
                        r.bytes_before,
                        r.bytes_after
                    );
                }
                rows.push(json!({
                    "name": name,
                    "checkpoints_deleted": removed,
                    "referenced_pages": r.referenced_pages,
                    "packs_deleted": r.packs_deleted,
                    "packs_compacted": r.packs_compacted,
                    "pages_freed": r.pages_freed,
                    "bytes_before": r.bytes_before,
                    "bytes_after": r.bytes_after,
                }));
            }
            Err(e) => {
                ok = false;
                if !a.json {
                    println!("{name}: not collected: {e}");
                }
                rows.push(json!({"name": name, "error": e.to_string()}));
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
