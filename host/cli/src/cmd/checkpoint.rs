//! `phantom checkpoint`: asks the host running a data directory to
//! checkpoint its processes, through the control socket, and waits until
//! the checkpoints are durable. Whatever else holds the directory's lock
//! (a `phantom send` straight into a journal, a `rollback`) is left alone:
//! it is never signalled.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use phantom_runtime::control::{self, ControlError, Request};
use phantom_runtime::datadir::{self, DataDir};

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
    if data.lock_holder().is_none() {
        bail!("no phantom host is running on {}", data.path().display());
    }
    // A host that is just starting may not listen yet.
    let until = Instant::now() + Duration::from_secs(5);
    let reply = loop {
        match control::request(data.path(), &Request::Checkpoint) {
            Ok(reply) => break reply,
            Err(ControlError::NoHost(_)) => {
                let Some(pid) = data.lock_holder() else {
                    bail!("no phantom host is running on {}", data.path().display());
                };
                if Instant::now() >= until {
                    // A host whose socket could not be made (it said so
                    // when it started) still takes the signal; nothing
                    // else holding the lock is ever signalled.
                    if is_host(pid) {
                        let rc = std::process::Command::new("kill")
                            .arg("-USR1")
                            .arg(pid.to_string())
                            .status()?;
                        if !rc.success() {
                            bail!("cannot signal the host (pid {pid})");
                        }
                        eprintln!(
                            "phantom: host {pid} has no control socket: asked it to checkpoint with SIGUSR1 (nothing tells when the checkpoint is durable)"
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    bail!(
                        "{} is held by pid {pid}{}, which does not answer on its control socket: no checkpoint was taken (a `phantom run` also checkpoints on SIGUSR1)",
                        data.path().display(),
                        datadir::command_of(pid).map_or(String::new(), |c| format!(" (`{c}`)"))
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    };
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

/// Whether process `pid` is a host (`phantom run`, `phantom pvm run`,
/// `phantom serve`), which checkpoints on SIGUSR1.
fn is_host(pid: u32) -> bool {
    datadir::command_of(pid).is_some_and(|c| {
        c.split(' ')
            .next()
            .unwrap_or_default()
            .starts_with("phantom")
            && datadir::is_host_command(&c)
    })
}
