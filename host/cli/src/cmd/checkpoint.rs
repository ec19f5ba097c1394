//! `phantom checkpoint`: asks the host running a data directory to
//! checkpoint its processes, through the control socket, and waits until
//! the checkpoints are durable. A host without a socket gets SIGUSR1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use phantom_runtime::control::{self, ControlError, Request};
use phantom_runtime::datadir::DataDir;

/// Arguments of `phantom checkpoint`.
#[derive(Args)]
pub struct CheckpointArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom checkpoint`.
pub fn run(a: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(&a.data)?;
    let Some(pid) = data.lock_holder() else {
        bail!("no phantom host is running on {}", data.path().display());
    };
    match control::request(data.path(), &Request::Checkpoint) {
        Ok(reply) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&reply["processes"])?);
            } else {
                for p in reply["processes"].as_array().into_iter().flatten() {
                    eprintln!(
                        "phantom: '{}' is at checkpoint {}",
                        p["name"].as_str().unwrap_or("?"),
                        p["checkpoint"]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ControlError::NoHost(_)) => {
            // An older host, or its socket is gone: the signal still works,
            // though nothing tells when the checkpoint is durable.
            let rc = std::process::Command::new("kill")
                .arg("-USR1")
                .arg(pid.to_string())
                .status()?;
            if !rc.success() {
                bail!("cannot signal the host (pid {pid})");
            }
            eprintln!("phantom: asked host {pid} to checkpoint (SIGUSR1)");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}
