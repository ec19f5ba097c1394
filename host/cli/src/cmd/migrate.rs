//! `phantom migrate`: move a process to the host serving another data
//! directory (`phantom serve`). A process a host runs moves live (the host
//! does the pre-copy rounds while it runs); one that no host runs moves
//! from its newest checkpoint and journal. `--resolve` settles a migration
//! whose outcome this side does not know (a side was killed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use phantom_runtime::control::{self, Request};
use phantom_runtime::datadir::{DataDir, HandOver, hand_over};
use phantom_runtime::migrate::source::OfflineSource;
use phantom_runtime::migrate::{MigrateOptions, MigrateReport, Resolution, resolve, security_from};

/// Arguments of `phantom migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    /// The process.
    name: String,
    /// The data directory it is in.
    #[arg(long)]
    data: PathBuf,
    /// The target: the `host:port` a `phantom serve` listens on.
    #[arg(long, required_unless_present = "resolve")]
    to: Option<String>,
    /// The file holding the key shared with the target (default:
    /// $PHANTOM_MIGRATE_KEY_FILE).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Migrate over an unauthenticated, unencrypted link (the target must
    /// allow it too).
    #[arg(long)]
    insecure_plaintext: bool,
    /// Most pre-copy rounds after the first (0: stop and copy at once).
    #[arg(long)]
    max_rounds: Option<u32>,
    /// Settle a migration whose outcome is unknown here: ask the target
    /// (the intent's address and key file), then either mark the process
    /// moved or take it back.
    #[arg(long, conflicts_with = "to")]
    resolve: bool,
    /// With --resolve: if the target cannot be reached, take the process
    /// back anyway (only if the target is gone for good: were it to come
    /// back having committed, two hosts would own the process).
    #[arg(long, requires = "resolve")]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom migrate`.
pub fn run(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(&a.data)?;
    if a.resolve {
        return settle(&a, &data);
    }
    let to = a.to.clone().context("--to is required")?;
    // Checked here first, for a clear error before anything starts.
    let (security, key_file) =
        security_from(a.key_file.as_deref(), a.insecure_plaintext).map_err(anyhow::Error::msg)?;
    let dir = data.process_dir(&a.name)?;
    let report: MigrateReport = if data.lock_holder().is_some() {
        let request = Request::Migrate {
            name: a.name.clone(),
            to: to.clone(),
            key_file: key_file.clone(),
            insecure_plaintext: a.insecure_plaintext,
            max_rounds: a.max_rounds,
        };
        match control::request_within(data.path(), &request, Duration::from_secs(905)) {
            Ok(reply) => serde_json::from_value(reply["report"].clone())
                .context("the host's report does not parse")?,
            Err(control::ControlError::NoHost(_)) => {
                bail!(
                    "the host running {} stopped; try again",
                    data.path().display()
                )
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot migrate '{}'", a.name)));
            }
        }
    } else {
        let _lock = data.lock()?;
        let mut opts = MigrateOptions::new(to.clone(), security, key_file);
        if let Some(r) = a.max_rounds {
            opts.max_rounds = r;
        }
        let mut side = OfflineSource { dir: dir.clone() };
        phantom_runtime::migrate::migrate(&mut side, &dir, &opts)
            .with_context(|| format!("cannot migrate '{}'", a.name))?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    eprintln!(
        "phantom: '{}' moved to {} (migration {}, checkpoint {}, {} round(s), {} bytes sent, stopped {:.1} ms)",
        report.name,
        report.to,
        report.id,
        report.checkpoint,
        report.rounds.len(),
        report.bytes_sent,
        report.stopped_ms
    );
    Ok(ExitCode::SUCCESS)
}

/// `--resolve`.
fn settle(a: &MigrateArgs, data: &DataDir) -> anyhow::Result<ExitCode> {
    let dir = data.any_process_dir(&a.name)?;
    let security = if a.key_file.is_some() || a.insecure_plaintext {
        Some(
            security_from(a.key_file.as_deref(), a.insecure_plaintext)
                .map_err(anyhow::Error::msg)?
                .0,
        )
    } else {
        None
    };
    let host = data.lock_holder().is_some();
    let _lock = if host { None } else { Some(data.lock()?) };
    let outcome = resolve(&dir, security.as_ref(), a.force)?;
    let what = match outcome {
        Resolution::Owned => format!("'{}' has no migration pending: it is owned here", a.name),
        Resolution::Moved => format!("'{}' moved: the target took it; it is not run here", a.name),
        Resolution::Resumed => {
            let started = match hand_over(data, &a.name) {
                Some(HandOver::Started(pid)) => format!("; host {pid} runs it again"),
                Some(HandOver::Refused(_, why)) => format!("; the host did not start it: {why}"),
                Some(HandOver::LeftFailed(pid)) => {
                    format!("; host {pid} holds it failed, as it was (`--retry-failed`)")
                }
                _ => "; the next `phantom run` runs it".into(),
            };
            format!(
                "'{}' is owned here again (the target never took it){started}",
                a.name
            )
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "name": a.name, "resolution": outcome })
        );
    }
    eprintln!("phantom: {what}");
    Ok(ExitCode::SUCCESS)
}
