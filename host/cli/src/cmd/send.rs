//! `phantom send`: delivers messages to a process and returns once they are
//! durable in its journal (that is the acknowledgement), whether or not a
//! host runs the data directory.
//!
//! ```text
//!   TEXT, or stdin lines (`-`, or no TEXT) ─► one batch
//!     a host runs DIR ─► control socket {"op":"send"} ─► its drive loop admits
//!                        them (waits while the queue is full, up to --timeout)
//!                        ─► reply once the journal is durable
//!     no host ─────────► the lock ─► straight into the journal ─► fdatasync
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use phantom_runtime::control::{self, ControlError, Request};
use phantom_runtime::datadir::{DataDir, DataDirError};
use phantom_runtime::journal::offline;
use serde_json::json;

use crate::parse_duration;

/// Arguments of `phantom send`.
#[derive(Args)]
pub struct SendArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The receiving process.
    name: String,
    /// The message; `-` or nothing reads messages from stdin, one per line,
    /// sent as one batch.
    text: Option<String>,
    /// How long a full queue may hold the messages before `send` gives up
    /// (the host's backpressure), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the journal positions as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom send`.
pub fn run(a: SendArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(&a.data)?;
    let dir = data.process_dir(&a.name)?;
    let messages: Vec<String> = match a.text.as_deref() {
        Some("-") | None => std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .context("cannot read messages from stdin")?,
        Some(text) => vec![text.to_string()],
    };
    if messages.is_empty() {
        bail!("no messages to send (stdin was empty)");
    }
    let request = Request::Send {
        name: a.name.clone(),
        messages: messages.clone(),
        timeout_ms: Some(a.timeout.as_millis() as u64),
    };
    // A host may start or stop meanwhile: try both ways for a while.
    let until = Instant::now() + Duration::from_secs(10);
    let (first, last, host) = loop {
        match control::request_within(data.path(), &request, a.timeout + Duration::from_secs(130)) {
            Ok(reply) => {
                break (
                    reply["first_position"].as_u64(),
                    reply["position"].as_u64(),
                    true,
                );
            }
            Err(ControlError::NoHost(_)) => {}
            Err(e) => return Err(e.into()),
        }
        match data.lock() {
            Ok(_lock) => {
                let bytes: Vec<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
                let d = offline::send_offline(&dir, &bytes).map_err(anyhow::Error::msg)?;
                break (Some(d.first), Some(d.last), false);
            }
            Err(DataDirError::Locked { .. }) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    };
    if a.json {
        println!(
            "{}",
            json!({
                "process": a.name,
                "messages": messages.len(),
                "first_position": first,
                "position": last,
                "through_host": host,
            })
        );
    } else {
        let at = match (first, last) {
            (Some(f), Some(l)) if f == l => format!(" (journal entry {l})"),
            (Some(f), Some(l)) => format!(" (journal entries {f} to {l})"),
            _ => String::new(),
        };
        eprintln!(
            "phantom: {} message(s) delivered to '{}'{at}",
            messages.len(),
            a.name
        );
    }
    Ok(ExitCode::SUCCESS)
}
