//! The drive loop: the one loop that runs processes, used by `phantom run`,
//! `phantom pvm run` and the benchmarks.
//!
//! ```text
//!   loop ─┬─ control requests (checkpoint, adopt, status) ─► replies
//!         ├─ input feed ─► the target's gate, while it has room (backpressure:
//!         │                a line that does not fit waits; none is dropped)
//!         ├─ each process: due timers ─► gate; up to 64 inputs or 20 ms of
//!         │                calls; outputs ─► the sink; failure ─► failed.json
//!         ├─ stop? (signal, --for, idle, nothing left)
//!         ├─ checkpoints: every `checkpoint_every`, when asked
//!         └─ sleep until the next timer, checkpoint, input or 50 ms
//!   end ─► final checkpoint of every process, writes waited for
//! ```
//! One thread runs every guest in turn, so a process's calls never overlap
//! and a checkpoint is always taken between calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::control::{PendingRequest, Request};
use crate::datadir::{clear_failure, mark_failed, process_name, read_failure};
use crate::error::{CheckpointError, Failure, RestoreError};
use crate::exit::{Output, OutputSink};
use crate::gate::{Input, InputRefused};
use crate::process::{CaptureReport, Process};
use crate::runtime::Runtime;

/// Inputs one process may handle per round before the others get a turn.
const STEPS_PER_ROUND: usize = 64;
/// Time one process may take per round, so a guest that is always busy
/// cannot delay signals, input or checkpoints by more than this.
const ROUND_TIME: Duration = Duration::from_millis(20);
/// Longest the loop sleeps without looking at signals and requests.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// At the end, input still arriving is counted as not delivered for at most
/// this long, and until it pauses for `DRAIN_GAP`.
const DRAIN_TIME: Duration = Duration::from_secs(1);
const DRAIN_GAP: Duration = Duration::from_millis(100);

/// How a drive runs and ends.
#[derive(Clone, Debug)]
pub struct DriveOptions {
    /// Checkpoint interval (None: only when asked and at the end).
    pub checkpoint_every: Option<Duration>,
    /// Stop after this much time.
    pub run_for: Option<Duration>,
    /// Stop once nothing is left to do: no input queued or coming, no
    /// timer, no busy process.
    pub until_idle: bool,
    /// Stop when no process is left (all exited or failed).
    pub stop_when_empty: bool,
    /// Checkpoint every process at the end, and a process when it exits.
    pub final_checkpoint: bool,
    /// Set from outside to stop gracefully (SIGTERM, SIGINT).
    pub stop: Arc<AtomicBool>,
    /// Set from outside to checkpoint now (SIGUSR1).
    pub checkpoint_now: Arc<AtomicBool>,
}

impl Default for DriveOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: Some(Duration::from_secs(1)),
            run_for: None,
            until_idle: false,
            stop_when_empty: true,
            final_checkpoint: true,
            stop: Arc::default(),
            checkpoint_now: Arc::default(),
        }
    }
}

/// Something the drive loop reports as it goes.
#[derive(Debug)]
pub enum Note<'a> {
    /// A process was restored.
    Restored {
        /// The process.
        name: &'a str,
        /// The checkpoint it came from.
        checkpoint: u64,
        /// Its restore count.
        restore_count: u64,
    },
    /// A checkpoint was captured (the pause is over; the write goes on).
    Captured {
        /// The process.
        name: &'a str,
        /// What the capture did.
        report: &'a CaptureReport,
    },
    /// A checkpoint is durable.
    Committed {
        /// The process.
        name: &'a str,
        /// The checkpoint.
        id: u64,
    },
    /// A checkpoint failed; the previous ones are intact.
    CheckpointFailed {
        /// The process.
        name: &'a str,
        /// Why.
        error: &'a CheckpointError,
    },
    /// A process failed and is marked so.
    Failed {
        /// The process.
        name: &'a str,
        /// Why.
        failure: &'a Failure,
    },
    /// A process exited.
    Exited {
        /// The process.
        name: &'a str,
        /// Its exit code.
        code: i32,
    },
    /// Input that could not be delivered.
    InputRefused {
        /// The process it was for.
        name: &'a str,
        /// Why.
        why: &'a str,
    },
    /// Anything else worth telling.
    Warning(&'a str),
}

/// What the drive loop tells its front end.
pub trait DriveHooks: OutputSink {
    /// A note about the run.
    fn note(&mut self, note: Note<'_>);
}

/// An item of a feed of console input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedItem {
    /// A line, without its terminator.
    Line(String),
    /// A line the feed could not take (too long), and why: reported as not
    /// delivered.
    Refused(String),
    /// The input ended.
    Closed,
}

/// Console input from outside, pulled only when the target can take it.
pub trait InputFeed {
    /// The next item, if one is ready.
    fn try_next(&mut self) -> Option<FeedItem>;
    /// Waits up to `timeout` for the next item.
    fn wait_next(&mut self, timeout: Duration) -> Option<FeedItem>;
}

/// A feed filled by another thread through a bounded channel: the thread
/// blocks while the channel is full, so input is read no faster than the
/// guest takes it.
pub struct ChannelFeed(pub mpsc::Receiver<FeedItem>);

impl InputFeed for ChannelFeed {
    fn try_next(&mut self) -> Option<FeedItem> {
        match self.0.try_recv() {
            Ok(item) => Some(item),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(FeedItem::Closed),
        }
    }

    fn wait_next(&mut self, timeout: Duration) -> Option<FeedItem> {
        match self.0.recv_timeout(timeout) {
            Ok(item) => Some(item),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(FeedItem::Closed),
        }
    }
}

/// Console input for one process.
pub struct Console<'a> {
    /// The process that gets it.
    pub target: String,
    /// Where it comes from.
    pub feed: &'a mut dyn InputFeed,
}

/// How a drive ended.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Processes that failed, with why.
    pub failed: Vec<(String, Failure)>,
    /// Processes that exited, with their codes.
    pub exited: Vec<(String, i32)>,
    /// Checkpoints captured.
    pub checkpoints: u64,
    /// Checkpoints that failed (the previous ones are intact).
    pub checkpoint_failures: Vec<(String, String)>,
    /// Lines of input read but not delivered, and why the first was not.
    pub undelivered: u64,
    /// Why input was not delivered.
    pub undelivered_reason: Option<String>,
    /// The run stopped at `run_for`.
    pub timed_out: bool,
}

impl RunSummary {
    /// Whether anything went wrong: a failure, a lost checkpoint, input
    /// not delivered.
    pub fn clean(&self) -> bool {
        self.failed.is_empty() && self.checkpoint_failures.is_empty() && self.undelivered == 0
    }
}

struct Driven {
    process: Process,
    /// Ran anything since the last checkpoint.
    touched: bool,
    /// Wall instant at which the process clock was read, with its value.
    clock_anchor: (Instant, u64),
}

/// Runs processes.
pub struct Drive<'rt> {
    rt: &'rt Runtime,
    /// Where adopted processes are looked for.
    data: Option<PathBuf>,
    procs: Vec<Driven>,
    summary: RunSummary,
}

impl<'rt> Drive<'rt> {
    /// A drive over `rt`; `data` is where `adopt` requests look.
    pub fn new(rt: &'rt Runtime, data: Option<PathBuf>) -> Self {
        Self {
            rt,
            data,
            procs: Vec::new(),
            summary: RunSummary::default(),
        }
    }

    /// Adds a process.
    pub fn add(&mut self, process: Process) {
        let anchor = (Instant::now(), process.now_ns());
        self.procs.push(Driven {
            process,
            touched: true,
            clock_anchor: anchor,
        });
    }

    /// The processes being driven.
    pub fn names(&self) -> Vec<String> {
        self.procs
            .iter()
            .map(|p| p.process.name().to_string())
            .collect()
    }

    /// Restores the process in `dir` and adds it unless it has exited.
    /// Returns whether it was added.
    pub fn restore(
        &mut self,
        dir: &std::path::Path,
        hooks: &mut dyn DriveHooks,
    ) -> Result<bool, RestoreError> {
        let (process, warnings) = Process::restore(self.rt, dir)?;
        for w in &warnings {
            hooks.note(Note::Warning(w));
        }
        if process.exited().is_some() {
            return Ok(false);
        }
        hooks.note(Note::Restored {
            name: process.name(),
            checkpoint: process.state().checkpoint_id,
            restore_count: process.state().restore_count,
        });
        self.add(process);
        Ok(true)
    }

    /// Runs until the options say stop; returns how it went (also kept for
    /// `summary`).
    pub fn run(
        &mut self,
        opts: &DriveOptions,
        mut console: Option<Console<'_>>,
        control: Option<&mpsc::Receiver<PendingRequest>>,
        hooks: &mut dyn DriveHooks,
    ) -> &RunSummary {
        let started = Instant::now();
        let deadline = opts.run_for.map(|d| started + d);
        let mut next_checkpoint = opts.checkpoint_every.map(|e| started + e);
        let mut held: Option<FeedItem> = None;
        let mut input_open = console.is_some();
        loop {
            if let Some(control) = control {
                while let Ok(pending) = control.try_recv() {
                    let reply = self.answer(pending.request, hooks);
                    let _ = pending.reply.send(reply);
                }
            }
            if let Some(console) = console.as_mut() {
                self.feed(console, &mut held, &mut input_open, hooks);
            }
            self.run_round(opts, hooks);
            let now = Instant::now();
            if opts.stop.load(Ordering::Relaxed) {
                break;
            }
            if deadline.is_some_and(|d| now >= d) {
                self.summary.timed_out = true;
                break;
            }
            let asked = opts.checkpoint_now.swap(false, Ordering::Relaxed);
            if asked || next_checkpoint.is_some_and(|t| now >= t) {
                self.checkpoint_touched(hooks);
                next_checkpoint = opts.checkpoint_every.map(|e| Instant::now() + e);
            }
            if self.procs.iter().any(|p| p.process.runnable()) {
                continue;
            }
            let next_timer = self
                .procs
                .iter()
                .filter_map(|p| {
                    let due = p.process.next_due_ns()?;
                    let (at, ns) = p.clock_anchor;
                    Some(at + Duration::from_nanos(due.saturating_sub(ns)))
                })
                .min();
            let input_waiting = input_open || held.is_some();
            if self.procs.is_empty() && (opts.stop_when_empty || !input_waiting && opts.until_idle)
            {
                break;
            }
            if opts.until_idle && next_timer.is_none() && !input_waiting {
                break;
            }
            let mut wake = now + MAX_SLEEP;
            for t in [next_checkpoint, next_timer, deadline]
                .into_iter()
                .flatten()
            {
                wake = wake.min(t);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            match console.as_mut() {
                Some(c) if input_open && held.is_none() => {
                    held = c.feed.wait_next(timeout);
                }
                _ => std::thread::sleep(timeout),
            }
        }
        // Input read but never delivered is reported, never silently lost.
        if let Some(console) = console.as_mut() {
            let mut left = u64::from(matches!(
                held,
                Some(FeedItem::Line(_) | FeedItem::Refused(_))
            ));
            // What is already on its way (a pipe's rest arrives at once);
            // a terminal or an endless feed is not waited for long.
            let until = Instant::now() + DRAIN_TIME;
            while input_open && Instant::now() < until {
                match console.feed.wait_next(DRAIN_GAP) {
                    Some(FeedItem::Line(_) | FeedItem::Refused(_)) => left += 1,
                    Some(FeedItem::Closed) | None => break,
                }
            }
            if left > 0 {
                let target = &console.target;
                let reason = if self.summary.exited.iter().any(|(n, _)| n == target) {
                    format!("'{target}' exited before handling them")
                } else if self.summary.failed.iter().any(|(n, _)| n == target) {
                    format!("'{target}' failed before handling them")
                } else {
                    "the run stopped before they were delivered".to_string()
                };
                self.summary.undelivered += left;
                self.summary.undelivered_reason.get_or_insert(reason);
            }
        }
        if opts.final_checkpoint {
            for i in 0..self.procs.len() {
                self.checkpoint_one(i, hooks);
            }
            for p in &mut self.procs {
                let name = p.process.name().to_string();
                settle(&mut p.process, &name, &mut self.summary, hooks, true);
            }
        }
        &self.summary
    }

    /// How the run went so far.
    pub fn summary(&self) -> &RunSummary {
        &self.summary
    }

    /// Hands the console's input to its target while the target has room.
    fn feed(
        &mut self,
        console: &mut Console<'_>,
        held: &mut Option<FeedItem>,
        input_open: &mut bool,
        hooks: &mut dyn DriveHooks,
    ) {
        loop {
            if held.is_none() && *input_open {
                *held = console.feed.try_next();
            }
            let Some(item) = held.take() else {
                return;
            };
            if item == FeedItem::Closed {
                *input_open = false;
            }
            if let FeedItem::Refused(why) = &item {
                self.refuse(&console.target, why, hooks);
                continue;
            }
            let Some(target) = self
                .procs
                .iter_mut()
                .find(|p| p.process.name() == console.target)
            else {
                // The target has exited or failed: what is left of the
                // input cannot be delivered.
                if let FeedItem::Line(_) = item {
                    let why = if self
                        .summary
                        .exited
                        .iter()
                        .any(|(n, _)| *n == console.target)
                    {
                        "the process has exited"
                    } else {
                        "the process is no longer running"
                    };
                    self.refuse(&console.target, why, hooks);
                }
                continue;
            };
            let input = match &item {
                FeedItem::Line(l) => Input::ConsoleLine(l.clone()),
                _ => Input::ConsoleClosed,
            };
            match target.process.offer(input) {
                Ok(()) => {}
                Err(InputRefused::QueueFull) => {
                    // Backpressure: keep it, read nothing more, let the
                    // guest catch up.
                    if item == FeedItem::Closed {
                        *input_open = true;
                    }
                    *held = Some(item);
                    return;
                }
                Err(e) => {
                    if let FeedItem::Line(_) = item {
                        self.refuse(&console.target, &e.to_string(), hooks);
                    }
                }
            }
        }
    }

    fn refuse(&mut self, name: &str, why: &str, hooks: &mut dyn DriveHooks) {
        if self.summary.undelivered == 0 {
            hooks.note(Note::InputRefused { name, why });
            self.summary.undelivered_reason = Some(format!("'{name}': {why}"));
        }
        self.summary.undelivered += 1;
    }

    /// One turn of every process.
    fn run_round(&mut self, opts: &DriveOptions, hooks: &mut dyn DriveHooks) {
        let rt = self.rt;
        let mut i = 0;
        while i < self.procs.len() {
            let p = &mut self.procs[i];
            p.clock_anchor = (Instant::now(), p.process.now_ns());
            p.process.fire_due_timers();
            let mut failed = None;
            let round = Instant::now();
            for _ in 0..STEPS_PER_ROUND {
                match p.process.step(rt) {
                    Ok(Some(outputs)) => {
                        p.touched = true;
                        for o in &outputs {
                            hooks.emit(p.process.name(), o);
                        }
                    }
                    Ok(None) => break,
                    Err(f) => {
                        failed = Some(f);
                        break;
                    }
                }
                if round.elapsed() >= ROUND_TIME {
                    break;
                }
            }
            if p.process.take_checkpoint_request() {
                opts.checkpoint_now.store(true, Ordering::Relaxed);
            }
            if let Some(failure) = failed {
                let name = p.process.name().to_string();
                hooks.note(Note::Failed {
                    name: &name,
                    failure: &failure,
                });
                mark_failed(p.process.dir(), &failure);
                let lost = p.process.take_undelivered_lines();
                if lost > 0 {
                    self.summary.undelivered += lost;
                    self.summary
                        .undelivered_reason
                        .get_or_insert_with(|| format!("'{name}' failed before handling them"));
                }
                // Its last checkpoint stays what it was; a write in flight
                // finishes (it holds state from before the failure).
                let mut gone = self.procs.remove(i);
                settle(&mut gone.process, &name, &mut self.summary, hooks, true);
                self.summary.failed.push((name, failure));
                continue;
            }
            if let Some(code) = p.process.exited() {
                let lost = p.process.take_undelivered_lines();
                if lost > 0 {
                    let name = p.process.name().to_string();
                    self.summary.undelivered += lost;
                    self.summary
                        .undelivered_reason
                        .get_or_insert_with(|| format!("'{name}' exited before handling them"));
                }
                if opts.final_checkpoint {
                    self.checkpoint_one(i, hooks);
                }
                let mut gone = self.procs.remove(i);
                let name = gone.process.name().to_string();
                settle(&mut gone.process, &name, &mut self.summary, hooks, true);
                hooks.note(Note::Exited { name: &name, code });
                self.summary.exited.push((name, code));
                continue;
            }
            let name = p.process.name().to_string();
            settle(&mut p.process, &name, &mut self.summary, hooks, false);
            i += 1;
        }
    }

    fn checkpoint_touched(&mut self, hooks: &mut dyn DriveHooks) {
        for i in 0..self.procs.len() {
            if self.procs[i].touched {
                self.checkpoint_one(i, hooks);
            }
        }
    }

    fn checkpoint_one(&mut self, i: usize, hooks: &mut dyn DriveHooks) {
        let rt = self.rt;
        let p = &mut self.procs[i];
        let name = p.process.name().to_string();
        // Report the previous write before this capture replaces it.
        settle(&mut p.process, &name, &mut self.summary, hooks, true);
        match p.process.checkpoint(rt) {
            Ok(report) => {
                p.touched = false;
                self.summary.checkpoints += 1;
                hooks.note(Note::Captured {
                    name: &name,
                    report: &report,
                });
            }
            Err(error) => {
                hooks.note(Note::CheckpointFailed {
                    name: &name,
                    error: &error,
                });
                self.summary
                    .checkpoint_failures
                    .push((name, error.to_string()));
            }
        }
    }

    /// Answers a control request.
    fn answer(&mut self, request: Request, hooks: &mut dyn DriveHooks) -> Value {
        match request {
            Request::Checkpoint => {
                self.checkpoint_touched(hooks);
                let mut done = Vec::new();
                for p in &mut self.procs {
                    let name = p.process.name().to_string();
                    settle(&mut p.process, &name, &mut self.summary, hooks, true);
                    done.push(json!({
                        "name": name,
                        "checkpoint": p.process.last_committed().map(|c| c.id),
                    }));
                }
                json!({"ok": true, "processes": done})
            }
            Request::Adopt { name } => {
                if self.procs.iter().any(|p| p.process.name() == name) {
                    return json!({"ok": true, "already_running": true});
                }
                let Some(data) = self.data.clone() else {
                    return json!({"ok": false, "error": "this host runs no data directory"});
                };
                let dir =
                    match crate::datadir::DataDir::open(&data).and_then(|d| d.process_dir(&name)) {
                        Ok(dir) => dir,
                        Err(e) => return json!({"ok": false, "error": e.to_string()}),
                    };
                clear_failure(&dir);
                match self.restore(&dir, hooks) {
                    Ok(_) => json!({"ok": true, "already_running": false}),
                    Err(e) => {
                        let failure = Failure::new(e.kind(), e.to_string());
                        mark_failed(&dir, &failure);
                        json!({"ok": false, "error": e.to_string()})
                    }
                }
            }
            Request::Status => {
                let running: Vec<Value> = self
                    .procs
                    .iter()
                    .map(|p| {
                        let s = p.process.state();
                        json!({
                            "name": p.process.name(),
                            "state": "running",
                            "checkpoint": p.process.last_committed().map(|c| c.id),
                            "restores": s.restore_count,
                            "queued_inputs": s.pending.len(),
                            "busy": s.busy,
                        })
                    })
                    .collect();
                let failed: Vec<Value> = self
                    .summary
                    .failed
                    .iter()
                    .map(|(name, f)| json!({"name": name, "state": "failed", "failure": f}))
                    .collect();
                let exited: Vec<Value> = self
                    .summary
                    .exited
                    .iter()
                    .map(|(name, code)| json!({"name": name, "state": "exited", "code": code}))
                    .collect();
                json!({
                    "ok": true,
                    "pid": std::process::id(),
                    "processes": running.into_iter().chain(failed).chain(exited).collect::<Vec<_>>(),
                })
            }
        }
    }
}

/// Reports the process's write in flight once done (waiting for it with
/// `wait`).
fn settle(
    process: &mut Process,
    name: &str,
    summary: &mut RunSummary,
    hooks: &mut dyn DriveHooks,
    wait: bool,
) {
    let result = if wait {
        process.wait_for_write()
    } else {
        process.poll_write()
    };
    match result {
        Some(Ok(info)) => hooks.note(Note::Committed { name, id: info.id }),
        Some(Err(error)) => {
            hooks.note(Note::CheckpointFailed {
                name,
                error: &error,
            });
            summary
                .checkpoint_failures
                .push((name.to_string(), error.to_string()));
        }
        None => {}
    }
}

/// Restores every process of a data directory into `drive`; a failed one is
/// skipped (with `retry_failed`, its mark is cleared and it is tried again).
/// Returns the processes that could not be restored, marked failed.
pub fn restore_all(
    drive: &mut Drive<'_>,
    data: &crate::datadir::DataDir,
    retry_failed: bool,
    hooks: &mut dyn DriveHooks,
) -> Result<Vec<(String, Failure)>, crate::datadir::DataDirError> {
    let mut failed = Vec::new();
    for dir in data.process_dirs()? {
        let name = process_name(&dir);
        if read_failure(&dir).is_some() {
            if !retry_failed {
                hooks.note(Note::Warning(&format!(
                    "skipping failed process '{name}' (see `phantom ps`; --retry-failed resumes it)"
                )));
                continue;
            }
            clear_failure(&dir);
        }
        if let Err(e) = drive.restore(&dir, hooks) {
            let failure = Failure::new(e.kind(), format!("cannot resume '{name}': {e}"));
            hooks.note(Note::Failed {
                name: &name,
                failure: &failure,
            });
            mark_failed(&dir, &failure);
            failed.push((name, failure));
        }
    }
    drive.summary.failed.extend(failed.iter().cloned());
    Ok(failed)
}

/// An output sink that collects everything (tests, benchmarks).
#[derive(Default)]
pub struct Collect {
    /// Outputs by process, in order.
    pub outputs: Vec<(String, Output)>,
    /// Notes, rendered.
    pub notes: Vec<String>,
}

impl OutputSink for Collect {
    fn emit(&mut self, process: &str, output: &Output) {
        self.outputs.push((process.to_string(), output.clone()));
    }
}

impl DriveHooks for Collect {
    fn note(&mut self, note: Note<'_>) {
        self.notes.push(format!("{note:?}"));
    }
}
