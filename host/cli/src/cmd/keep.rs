//! `phantom keep`: show or set which checkpoints a process keeps (the last
//! N, the newest of each recent hour and day; pinned ones always). Saved
//! with the process; a running host applies it from its next checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_snapshots::{CheckpointStore, KeepPolicy};
use serde_json::json;

/// The `--keep-*` options, shared with `phantom spawn`.
#[derive(Args, Clone, Debug, Default)]
pub struct KeepArgs {
    /// Keep the newest N checkpoints (the recovery window; at least 1;
    /// default 10).
    #[arg(long = "keep-last", value_name = "N")]
    pub last: Option<u32>,
    /// Keep the newest checkpoint of each of the last N hours (default 24).
    #[arg(long = "keep-hourly", value_name = "N")]
    pub hourly: Option<u32>,
    /// Keep the newest checkpoint of each of the last N days (default 7).
    #[arg(long = "keep-daily", value_name = "N")]
    pub daily: Option<u32>,
}

impl KeepArgs {
    pub fn given(&self) -> bool {
        self.last.is_some() || self.hourly.is_some() || self.daily.is_some()
    }

    /// `base` with the options given applied.
    pub fn apply(&self, base: KeepPolicy) -> anyhow::Result<KeepPolicy> {
        if self.last == Some(0) {
            anyhow::bail!("--keep-last must be at least 1: the newest checkpoint is always kept");
        }
        Ok(KeepPolicy {
            last: self.last.unwrap_or(base.last),
            hourly: self.hourly.unwrap_or(base.hourly),
            daily: self.daily.unwrap_or(base.daily),
        })
    }
}

/// Arguments of `phantom keep`.
#[derive(Args)]
pub struct KeepCmdArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process.
    name: String,
    #[command(flatten)]
    keep: KeepArgs,
    /// Print the policy as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom keep`.
pub fn run(a: KeepCmdArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::open(&a.data)?.process_dir(&a.name)?;
    let store = CheckpointStore::open(&dir)?;
    let mut policy = store.policy();
    if a.keep.given() {
        policy = a.keep.apply(policy)?;
        store.save_policy(policy)?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "name": a.name,
                "last": policy.last,
                "hourly": policy.hourly,
                "daily": policy.daily,
                "pinned": store.pins(),
            }))?
        );
    } else {
        println!(
            "'{}' keeps the last {}, the newest of each of the last {} hours and {} days, and pinned ones ({})",
            a.name,
            policy.last,
            policy.hourly,
            policy.daily,
            store.pins().len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
