//! Runs one component to completion in a throw-away data directory: the
//! engine of `phantom pvm run`, where a Phantom program runs like a command
//! (still as a real persistent process, checkpointed at the end).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::process::{Process, ProcessError};
use crate::runtime::Runtime;

/// How a one-shot run ended.
#[derive(Debug)]
pub enum OneshotEnd {
    /// The guest returned `exit(code)`.
    Exited(i32),
    /// The guest trapped (message).
    Failed(String),
    /// Nothing left to do: no events, no timers, not busy.
    Idle,
    /// `timeout` passed.
    TimedOut,
}

/// Spawns `component` with `args` and `files` in a temporary directory,
/// streams its console output to `out`, and runs it until it exits, fails,
/// goes idle for good, or `timeout` passes.
pub fn run_to_end(
    rt: &mut Runtime,
    component: &[u8],
    args: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    timeout: Option<Duration>,
    out: &mut dyn Write,
) -> anyhow::Result<OneshotEnd> {
    let dir = TempDir::new()?;
    let (mut p, output) = Process::spawn(rt, component, &dir.0, "oneshot", args, files)?;
    out.write_all(&output)?;
    out.flush()?;
    let started = std::time::Instant::now();
    loop {
        if let Some(code) = p.exited() {
            return Ok(OneshotEnd::Exited(code));
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Ok(OneshotEnd::TimedOut);
        }
        let now = p.now_ns();
        p.state_mut().fire_due_timers(now);
        match p.step(rt) {
            Ok(Some(output)) => {
                out.write_all(&output)?;
                out.flush()?;
            }
            Ok(None) => match p.state().next_due_ns() {
                Some(due) => std::thread::sleep(
                    Duration::from_nanos(due.saturating_sub(p.now_ns()))
                        .min(Duration::from_millis(50)),
                ),
                None => return Ok(OneshotEnd::Idle),
            },
            Err(ProcessError::Guest(message)) => return Ok(OneshotEnd::Failed(message)),
            Err(ProcessError::Host(e)) => return Err(e),
        }
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "phantom-oneshot-{}-{}",
            std::process::id(),
            crate::bench_nonce()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
