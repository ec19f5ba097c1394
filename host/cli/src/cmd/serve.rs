//! `phantom serve`: a host that runs a data directory (as `phantom run
//! --no-stdin` does) and accepts processes migrating to it over TCP.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_runtime::migrate::{MigrationKey, security_from};

use crate::cmd::run::{Listen, RunArgs};
use crate::{EngineArgs, parse_duration};

/// Arguments of `phantom serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The data directory (created if missing).
    #[arg(long, required_unless_present = "new_key")]
    data: Option<PathBuf>,
    /// Where to accept migrations, `host:port` (port 0: any free port; the
    /// address is printed).
    #[arg(long, required_unless_present = "new_key")]
    listen: Option<String>,
    /// The file holding the key shared with the sources (default:
    /// $PHANTOM_MIGRATE_KEY_FILE).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Accept unauthenticated, unencrypted migrations (anyone who can
    /// reach the port can then hand this host a process).
    #[arg(long)]
    insecure_plaintext: bool,
    /// Accept processes whose device manifest grants this host's own
    /// hardware (`linux:` pins, buses, ports); without it, such a
    /// migration is refused (the process stays on its source).
    #[arg(long)]
    allow_host_devices: bool,
    /// Write a new random key (hex) to this file, mode 0600, and exit.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data", "listen"])]
    new_key: Option<PathBuf>,
    /// Checkpoint interval (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    checkpoint_every: Duration,
    /// Log restores and checkpoints to stderr.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Runs `phantom serve`.
pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &a.new_key {
        let key = MigrationKey::generate_hex().map_err(anyhow::Error::msg)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(f, "{key}").with_context(|| format!("cannot write {}", path.display()))?;
        f.sync_all()?;
        note!(
            "phantom: wrote a new migration key to {} (copy it to the other hosts; keep it secret)",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (data, addr) = match (a.data, a.listen) {
        (Some(d), Some(l)) => (d, l),
        _ => anyhow::bail!("--data and --listen are required"),
    };
    let (security, _) =
        security_from(a.key_file.as_deref(), a.insecure_plaintext).map_err(anyhow::Error::msg)?;
    if a.insecure_plaintext {
        note!(
            "phantom: warning: --insecure-plaintext: migrations to {addr} are neither authenticated nor encrypted"
        );
    }
    DataDir::create(&data)?;
    crate::cmd::run::run(RunArgs::serve(
        data,
        a.checkpoint_every,
        a.verbose,
        a.engine,
        Listen {
            addr,
            security,
            allow_host_devices: a.allow_host_devices,
        },
    ))
}
