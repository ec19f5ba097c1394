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
//!     the host dies under it ─► again (either way), same key: what the
//!                        process took already is left out, nothing twice
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

/// How long `send` keeps trying while a host starts, stops or dies under
/// it (at least; `--timeout` if longer).
const RETRY_WINDOW: Duration = Duration::from_secs(10);

/// A new idempotency key: the time in nanoseconds, then 64 random bits
/// (`journal::valid_outside_key`).
fn new_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut random = [0u8; 8];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
        .is_ok();
    let random = if from_os {
        u64::from_le_bytes(random)
    } else {
        // Seeded per process by the standard library.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(nanos);
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("{nanos:016x}{random:016x}")
}

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
    /// (the host's backpressure; with no host, how long to wait for one to
    /// drain it), e.g. 30s. A guest call under way finishes first (the
    /// host's --call-timeout at most).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the journal positions as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom send`; with `--json`, a failure is printed as JSON too
/// (`{"ok": false, "error": ...}` on stdout).
pub fn run(a: SendArgs) -> anyhow::Result<ExitCode> {
    let json = a.json;
    let name = a.name.clone();
    send(a).inspect_err(|e| {
        if json {
            println!(
                "{}",
                serde_json::json!({"ok": false, "process": name, "error": crate::terminal::error_text(e)})
            );
        }
    })
}

fn send(a: SendArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(&a.data)?;
    let dir = data.process_dir(&a.name)?;
    let messages: Vec<String> = match a.text.as_deref() {
        Some("-") | None => {
            let mut lines = Vec::new();
            for (i, line) in std::io::stdin().lock().split(b'\n').enumerate() {
                let mut line = line.context("cannot read messages from stdin")?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let text = String::from_utf8(line).map_err(|e| {
                    anyhow::anyhow!(
                        "line {} of stdin is not UTF-8 ({e}): no message was sent",
                        i + 1
                    )
                })?;
                lines.push(text);
            }
            lines
        }
        Some(text) => vec![text.to_string()],
    };
    if messages.is_empty() {
        bail!("no messages to send (stdin was empty)");
    }
    // Each attempt carries the same key: one the host died under may have
    // delivered some messages; the next leaves those out.
    let key = new_key();
    let request = Request::Send {
        name: a.name.clone(),
        messages: messages.clone(),
        timeout_ms: Some(a.timeout.as_millis() as u64),
        key: Some(key.clone()),
    };
    // A host may start, stop or die meanwhile: try both ways for a while.
    let started = Instant::now();
    let until = started + RETRY_WINDOW.max(a.timeout);
    // A full queue with no host to drain it: a host may start.
    let queue_until = started + a.timeout;
    let mut retries = 0u32;
    let mut waiting_noted = false;
    let (first, last, already, host) = loop {
        match control::request_within(data.path(), &request, a.timeout + Duration::from_secs(130)) {
            Ok(reply) => {
                if let Some(note) = reply["note"].as_str() {
                    eprintln!("phantom: note: {note}");
                }
                break (
                    reply["first_position"].as_u64(),
                    reply["position"].as_u64(),
                    reply["already_delivered"].as_u64().unwrap_or(0),
                    true,
                );
            }
            Err(ControlError::NoHost(_)) => {}
            Err(ControlError::Broken { why, .. }) => {
                if Instant::now() >= until {
                    bail!(
                        "the host of {} went away before it acknowledged the messages ({why}); they may or may not have been delivered",
                        a.data.display()
                    );
                }
                retries += 1;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        match data.lock() {
            Ok(lock) => {
                let bytes: Vec<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
                let d = match offline::send_offline(&dir, Some(&key), &bytes) {
                    Ok(d) => d,
                    Err(offline::OfflineSendError::Full(why)) => {
                        if Instant::now() >= queue_until {
                            bail!(
                                "{why} (waited {:.1} s, --timeout)",
                                started.elapsed().as_secs_f64()
                            );
                        }
                        if !waiting_noted {
                            waiting_noted = true;
                            eprintln!(
                                "phantom: {why}; waiting up to {:.0} s (--timeout) for a host to take them",
                                a.timeout.as_secs_f64()
                            );
                        }
                        drop(lock);
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    Err(e) => bail!("{e}"),
                };
                if let Some(f) = phantom_runtime::datadir::read_failure(&dir) {
                    eprintln!(
                        "phantom: note: {}",
                        offline::failed_receiver_note(&a.name, &f)
                    );
                }
                let new = d.map_or(0, |d| d.last - d.first + 1);
                break (
                    d.map(|d| d.first),
                    d.map(|d| d.last),
                    (messages.len() as u64).saturating_sub(new),
                    false,
                );
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
                "ok": true,
                "process": a.name,
                "messages": messages.len(),
                "first_position": first,
                "position": last,
                "through_host": host,
                "retries": retries,
                "already_delivered": already,
            })
        );
    } else {
        let at = match (first, last) {
            (Some(f), Some(l)) if f == l => format!(" (journal entry {l})"),
            (Some(f), Some(l)) => format!(" (journal entries {f} to {l})"),
            _ => String::new(),
        };
        let again = if retries > 0 {
            format!(
                "; sent again after the host went away ({retries}x), {already} of them were already there and were not delivered twice"
            )
        } else {
            String::new()
        };
        eprintln!(
            "phantom: {} message(s) delivered to '{}'{at}{again}",
            messages.len(),
            a.name
        );
    }
    Ok(ExitCode::SUCCESS)
}
