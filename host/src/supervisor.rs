//! `phantom run`: resumes every process of a data directory and runs them.
//!
//! One thread runs all guests in turn; timers fire in each process's own
//! clock; console input comes from stdin through a reader thread; a
//! checkpoint is captured every `checkpoint_every` of run time, when a guest
//! or a SIGUSR1 asks, and at the end (`--for`, SIGTERM, SIGINT, or idle).
//! A process that traps is marked failed in `failed.json` and the others go
//! on; its last checkpoint is untouched.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{Process, ProcessError};
use crate::runtime::Runtime;
use crate::state::EventState;

/// Events one process may handle per round before the others get a turn.
const STEPS_PER_ROUND: usize = 64;
/// Time one process may take per round, so a guest that is always busy
/// cannot delay signals, input or checkpoints by more than this.
const ROUND_TIME: Duration = Duration::from_millis(20);
/// Longest the loop sleeps without looking at signals.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// Options of `phantom run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Stop after this much run time (with a final checkpoint).
    pub run_for: Option<Duration>,
    /// Checkpoint interval.
    pub checkpoint_every: Duration,
    /// Which process gets stdin lines (default: the only one).
    pub input: Option<String>,
    /// Stop once no process has work, timers or input left.
    pub until_idle: bool,
    /// Log checkpoints to stderr.
    pub verbose: bool,
    /// Also resume processes marked failed.
    pub retry_failed: bool,
    /// Read stdin at all.
    pub read_stdin: bool,
}

/// Signals the loop watches.
#[derive(Clone, Default)]
pub struct Signals {
    /// Stop gracefully.
    pub stop: Arc<AtomicBool>,
    /// Checkpoint every process now.
    pub checkpoint_now: Arc<AtomicBool>,
}

impl Signals {
    /// Registers SIGTERM, SIGINT (stop) and SIGUSR1 (checkpoint now).
    pub fn install() -> std::io::Result<Self> {
        let s = Self::default();
        signal_hook::flag::register(signal_hook::consts::SIGTERM, s.stop.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGINT, s.stop.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, s.checkpoint_now.clone())?;
        Ok(s)
    }
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Processes that failed during the run.
    pub failed: Vec<String>,
    /// Checkpoints written.
    pub checkpoints: u64,
}

/// Holds the exclusive lock of a data directory.
pub struct DataLock {
    _file: fs::File,
}

/// Takes the data directory's lock, so two hosts never run the same
/// processes.
pub fn lock_data_dir(data: &Path) -> anyhow::Result<DataLock> {
    if !data.is_dir() {
        bail!("data directory {} does not exist", data.display());
    }
    let path = data.join(".lock");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        let holder = fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another phantom host is using {} (pid {})",
            data.display(),
            holder.trim()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(DataLock { _file: file })
}

/// The pid of the host holding the lock, if any.
pub fn lock_holder(data: &Path) -> Option<u32> {
    let path = data.join(".lock");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .ok()?;
    if file.try_lock().is_ok() {
        return None;
    }
    fs::read_to_string(&path).ok()?.trim().parse().ok()
}

/// Process directories in `data`, sorted by name.
pub fn process_dirs(data: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(data).with_context(|| format!("cannot read {}", data.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        if entry.path().join("process.json").exists() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Removes what crashed spawns left behind (the caller holds the lock).
fn clean_stale_spawns(data: &Path) {
    if let Ok(entries) = fs::read_dir(data) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().contains(".spawning-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The failure marker of a process.
pub fn failure_path(dir: &Path) -> PathBuf {
    dir.join("failed.json")
}

fn mark_failed(dir: &Path, message: &str) {
    let body = serde_json::json!({ "message": message });
    let tmp = dir.join("failed.json.tmp");
    if fs::write(&tmp, body.to_string()).is_ok() {
        let _ = fs::rename(&tmp, failure_path(dir));
    }
}

struct Running {
    process: Process,
    /// Delivered anything since the last checkpoint.
    touched: bool,
    /// Wall instant at which the process clock was read, with its value.
    clock_anchor: (Instant, u64),
}

enum Input {
    Line(String),
    Closed,
}

/// Runs every process in `data` until the run ends.
pub fn run(
    rt: &mut Runtime,
    data: &Path,
    opts: &RunOptions,
    signals: &Signals,
) -> anyhow::Result<RunSummary> {
    let _lock = lock_data_dir(data)?;
    clean_stale_spawns(data);
    let mut summary = RunSummary::default();
    let mut procs: Vec<Running> = Vec::new();
    for dir in process_dirs(data)? {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if failure_path(&dir).exists() {
            if !opts.retry_failed {
                eprintln!(
                    "phantom: skipping failed process '{name}' (see `phantom ps`; --retry-failed resumes it)"
                );
                continue;
            }
            let _ = fs::remove_file(failure_path(&dir));
        }
        match Process::restore(rt, &dir) {
            Ok((process, warnings)) => {
                for w in warnings {
                    eprintln!("phantom: warning: {w}");
                }
                if process.exited().is_some() {
                    continue;
                }
                if opts.verbose {
                    eprintln!(
                        "phantom: restored '{name}' from checkpoint {} (restore #{})",
                        process.state().checkpoint_id,
                        process.state().restore_count
                    );
                }
                let anchor = (Instant::now(), process.now_ns());
                procs.push(Running {
                    process,
                    touched: true,
                    clock_anchor: anchor,
                });
            }
            Err(e) => {
                eprintln!("phantom: cannot resume '{name}': {e:#}");
                summary.failed.push(name);
            }
        }
    }
    let input_target = match &opts.input {
        Some(name) => {
            if !procs.iter().any(|p| p.process.name() == name) {
                bail!(
                    "--input names '{name}', which is not a running process in {}",
                    data.display()
                );
            }
            Some(name.clone())
        }
        None if procs.len() == 1 => Some(procs[0].process.name().to_string()),
        None => None,
    };
    let (input_tx, input_rx) = mpsc::channel::<Input>();
    let mut input_open = false;
    if opts.read_stdin && input_target.is_some() {
        input_open = true;
        std::thread::Builder::new()
            .name("phantom-stdin".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                for line in stdin.lock().lines() {
                    match line {
                        Ok(l) => {
                            if input_tx.send(Input::Line(l)).is_err() {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = input_tx.send(Input::Closed);
            })?;
    }
    let prefix = procs.len() > 1;
    let started = Instant::now();
    let deadline = opts.run_for.map(|d| started + d);
    let mut next_checkpoint = started + opts.checkpoint_every;
    let mut pending_input: VecDeque<Input> = VecDeque::new();
    loop {
        // Input first, through the gate of its process.
        while let Ok(i) = input_rx.try_recv() {
            pending_input.push_back(i);
        }
        while let Some(i) = pending_input.pop_front() {
            let Some(target) = procs
                .iter_mut()
                .find(|p| Some(p.process.name()) == input_target.as_deref())
            else {
                break;
            };
            let event = match i {
                Input::Line(l) => EventState::ConsoleLine(l),
                Input::Closed => {
                    input_open = false;
                    EventState::ConsoleClosed
                }
            };
            if !target.process.state_mut().push_event(event) {
                eprintln!(
                    "phantom: input queue of '{}' is full; a line was dropped",
                    target.process.name()
                );
            }
        }
        // Run what is runnable.
        let mut i = 0;
        while i < procs.len() {
            let p = &mut procs[i];
            let now = p.process.now_ns();
            p.clock_anchor = (Instant::now(), now);
            p.process.state_mut().fire_due_timers(now);
            let mut failed = None;
            let round = Instant::now();
            for _ in 0..STEPS_PER_ROUND {
                if round.elapsed() >= ROUND_TIME {
                    break;
                }
                match p.process.step(rt) {
                    Ok(Some(output)) => {
                        p.touched = true;
                        emit(&output, prefix.then(|| p.process.name()));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if p.process.take_checkpoint_request() {
                signals.checkpoint_now.store(true, Ordering::Relaxed);
            }
            if let Some(e) = failed {
                let name = p.process.name().to_string();
                let message = match e {
                    ProcessError::Guest(m) => m,
                    ProcessError::Host(e) => format!("{e:#}"),
                };
                eprintln!("phantom: {message}");
                eprintln!("phantom: '{name}' is marked failed; its last checkpoint is intact");
                mark_failed(p.process.dir(), &message);
                summary.failed.push(name);
                procs.remove(i);
                continue;
            }
            if let Some(code) = p.process.exited() {
                let name = p.process.name().to_string();
                checkpoint(rt, p, opts.verbose, &mut summary);
                if let Some(Err(e)) = p.process.wait_for_write() {
                    eprintln!("phantom: final checkpoint of '{name}' failed: {e}");
                }
                if opts.verbose || code != 0 {
                    eprintln!("phantom: '{name}' exited with code {code}");
                }
                procs.remove(i);
                continue;
            }
            log_commits(&mut p.process, opts.verbose);
            i += 1;
        }
        let now = Instant::now();
        let stopping = signals.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d);
        if stopping {
            break;
        }
        if now >= next_checkpoint || signals.checkpoint_now.swap(false, Ordering::Relaxed) {
            for p in procs.iter_mut().filter(|p| p.touched) {
                checkpoint(rt, p, opts.verbose, &mut summary);
            }
            next_checkpoint = Instant::now() + opts.checkpoint_every;
        }
        let runnable = procs.iter().any(|p| p.process.runnable());
        if runnable {
            continue;
        }
        let next_timer = procs
            .iter()
            .filter_map(|p| {
                let due = p.process.state().next_due_ns()?;
                let (at, ns) = p.clock_anchor;
                Some(at + Duration::from_nanos(due.saturating_sub(ns)))
            })
            .min();
        if opts.until_idle && next_timer.is_none() && !input_open && pending_input.is_empty() {
            break;
        }
        if procs.is_empty() && !opts.until_idle && deadline.is_none() {
            break;
        }
        let mut wake = next_checkpoint.min(now + MAX_SLEEP);
        if let Some(t) = next_timer {
            wake = wake.min(t);
        }
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        if input_open {
            match input_rx.recv_timeout(timeout) {
                Ok(i) => pending_input.push_back(i),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => input_open = false,
            }
        } else {
            std::thread::sleep(timeout);
        }
    }
    // Graceful end: a final checkpoint of everything, written before exit.
    for p in procs.iter_mut() {
        checkpoint(rt, p, opts.verbose, &mut summary);
    }
    for p in procs.iter_mut() {
        match p.process.wait_for_write() {
            Some(Err(e)) => {
                eprintln!(
                    "phantom: final checkpoint of '{}' failed: {e}",
                    p.process.name()
                );
                summary.failed.push(p.process.name().to_string());
            }
            Some(Ok(info)) if opts.verbose => {
                eprintln!(
                    "phantom: committed checkpoint {} of '{}'",
                    info.id,
                    p.process.name()
                );
            }
            _ => {}
        }
    }
    Ok(summary)
}

fn checkpoint(rt: &Runtime, p: &mut Running, verbose: bool, summary: &mut RunSummary) {
    // Log the previous commit before this capture replaces it.
    if let Some(Ok(info)) = p.process.wait_for_write()
        && verbose
    {
        eprintln!(
            "phantom: committed checkpoint {} of '{}'",
            info.id,
            p.process.name()
        );
    }
    match p.process.checkpoint(rt) {
        Ok(report) => {
            p.touched = false;
            summary.checkpoints += 1;
            if verbose {
                eprintln!(
                    "phantom: captured checkpoint {} of '{}' ({} dirty pages{}, pause {} us)",
                    report.id,
                    p.process.name(),
                    report.dirty_pages,
                    if report.full { ", full" } else { "" },
                    report.pause.as_micros()
                );
            }
        }
        Err(e) => eprintln!("phantom: cannot checkpoint '{}': {e:#}", p.process.name()),
    }
}

fn log_commits(process: &mut Process, verbose: bool) {
    if let Some(result) = process.poll_write() {
        match result {
            Ok(info) if verbose => eprintln!(
                "phantom: committed checkpoint {} of '{}'",
                info.id,
                process.name()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("phantom: checkpoint of '{}' failed: {e}", process.name()),
        }
    }
}

/// The process's single exit to the host's stdout.
fn emit(output: &[u8], prefix: Option<&str>) {
    if output.is_empty() {
        return;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match prefix {
        None => {
            let _ = out.write_all(output);
        }
        Some(name) => {
            for line in output.split_inclusive(|&b| b == b'\n') {
                let _ = write!(out, "[{name}] ");
                let _ = out.write_all(line);
            }
        }
    }
    let _ = out.flush();
}
