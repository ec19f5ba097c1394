//! `phantom fsck`: verifies every checkpoint file of every process (or of
//! one) and says whether each process is still restorable, and from which
//! checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_runtime::status;

/// Arguments of `phantom fsck`.
#[derive(Args)]
pub struct FsckArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// Only this process.
    name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom fsck`.
pub fn run(a: FsckArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(&a.data)?;
    let dirs = match &a.name {
        Some(n) => vec![data.process_dir(n)?],
        None => data.process_dirs()?,
    };
    let rows: Vec<status::FsckStatus> = dirs.iter().map(|d| status::fsck(d)).collect();
    let all_ok = rows.iter().all(|r| r.clean && r.restorable);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &rows {
            let verdict = match (r.clean, r.restorable_from) {
                (true, Some(id)) => format!("ok (restores from checkpoint {id})"),
                (false, Some(id)) => {
                    format!("DAMAGED, still restorable from checkpoint {id}")
                }
                (_, None) => "DAMAGED, NOT restorable".to_string(),
            };
            println!("{}: {verdict}", r.name);
            for p in &r.problems {
                println!("    {p}");
            }
            if !r.clean {
                let usable: Vec<String> = r.usable.iter().map(u64::to_string).collect();
                println!(
                    "    usable checkpoints: {}",
                    if usable.is_empty() {
                        "none".into()
                    } else {
                        usable.join(", ")
                    }
                );
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
