//! The drive loop: the one loop that runs processes, used by `phantom run`,
//! `phantom pvm run` and the benchmarks.
//!
//! ```text
//!   loop ─┬─ control requests (checkpoint, adopt, status, send, migrate) ─► replies
//!         ├─ migration workers' steps (round: checkpoint now; stop: park the
//!         │                process after a last checkpoint; finish) ─► replies
//!         ├─ sends waiting for room ─► the target's gate (journaled; the
//!         │                reply leaves once the journal is durable)
//!         ├─ input feed ─► the target's gate, while it has room (backpressure:
//!         │                a line that does not fit waits; none is dropped)
//!         ├─ each process: due timers ─► gate; up to 64 inputs or 20 ms of
//!         │                calls; failure ─► failed.json
//!         ├─ effects whose causes are durable ─► the sink (console) or the
//!         │                receiver's gate (messages) ─► journal: released
//!         ├─ stop? (signal, --for, idle, nothing left)
//!         ├─ checkpoints: every `checkpoint_every`, when asked
//!         └─ sleep until woken (request, input, journal durable), the next
//!            timer or checkpoint, or 50 ms
//!   end ─► journals synced, effects released, final checkpoint of every
//!          process, writes waited for
//! ```
//! One thread runs every guest in turn, so a process's calls never overlap
//! and a checkpoint is always taken between calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::control::{PendingRequest, ReplyTo, Request, Waker};
use crate::datadir::{clear_failure, mark_failed, process_name, read_failure};
use crate::error::{CheckpointError, Failure, RestoreError};
use crate::exit::{Output, OutputSink};
use crate::gate::{Input, InputRefused};
use crate::journal::Held;
use crate::migrate::source::{Finish, LiveOp, LiveRequest, LiveSource, OfflineSource};
use crate::process::{CaptureReport, Process, ReplayReport};
use crate::runtime::Runtime;

/// Inputs one process may handle per round before the others get a turn.
const STEPS_PER_ROUND: usize = 64;
/// Time one process may take per round, so a guest that is always busy
/// cannot delay signals, input or checkpoints by more than this.
const ROUND_TIME: Duration = Duration::from_millis(20);
/// Longest the loop sleeps without looking at signals and requests.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Longest the drive loop waits for a receiver's journal before it records
/// a message as released.
const RECEIVER_SYNC: Duration = Duration::from_secs(30);
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
    /// Retry, then roll back, a process that fails right after it resumes
    /// (None: a failed process stays failed).
    pub fallback: Option<crate::travel::fallback::FallbackPolicy>,
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
            fallback: None,
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
    /// A process's journal was replayed after its restore.
    Replayed {
        /// The process.
        name: &'a str,
        /// What the replay did.
        report: &'a ReplayReport,
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
    /// Lines a failed process had queued, kept in its journal: handed to
    /// it when it runs again (`--retry-failed`), so not to be sent again.
    pub kept: Vec<(String, u64)>,
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

/// A `send` request still delivering (its target's queue was full).
struct PendingSend {
    name: String,
    messages: std::collections::VecDeque<String>,
    total: usize,
    /// The request's idempotency key.
    key: Option<String>,
    /// Messages left out: an earlier attempt with the same key delivered
    /// them.
    already: usize,
    first: Option<u64>,
    last: Option<u64>,
    deadline: Instant,
    reply: ReplyTo,
}

/// What became of a message to a process not running here.
enum Elsewhere {
    /// Durable in its journal.
    Delivered,
    /// Not yet: try again at the next release.
    Wait,
}

struct Driven {
    process: Process,
    /// Ran anything since the last checkpoint.
    touched: bool,
    /// Wall instant at which the process clock was read, with its value.
    clock_anchor: (Instant, u64),
    /// Events handled since it resumed (the fallback policy's measure of
    /// health).
    handled: u64,
    /// Its console log, once opened (`--console-log`); `Err` once it
    /// failed (reported once, not retried).
    log: Option<Result<crate::console_log::ConsoleLog, ()>>,
}

/// Runs processes.
pub struct Drive<'rt> {
    rt: &'rt Runtime,
    /// Where adopted processes are looked for.
    data: Option<PathBuf>,
    procs: Vec<Driven>,
    summary: RunSummary,
    waker: Waker,
    sends: Vec<PendingSend>,
    /// Processes stopped for a migration's last round, until its outcome.
    parked: Vec<Driven>,
    /// Processes whose migration worker runs.
    migrating: std::collections::BTreeSet<String>,
    /// Adoptions asked while their process was being migrated from its
    /// files (it did not run here when the migration started): answered
    /// when the migration is over, by running it if it stayed.
    deferred_adopts: Vec<(String, ReplyTo)>,
    /// The workers' steps.
    live_tx: mpsc::Sender<LiveRequest>,
    live_rx: mpsc::Receiver<LiveRequest>,
    /// Console output also goes to each process's `console.log`, exactly
    /// once (`console_log.rs`).
    console_log: bool,
}

impl<'rt> Drive<'rt> {
    /// A drive over `rt`; `data` is where `adopt` requests look.
    pub fn new(rt: &'rt Runtime, data: Option<PathBuf>) -> Self {
        let (live_tx, live_rx) = mpsc::channel();
        Self {
            rt,
            data,
            procs: Vec::new(),
            summary: RunSummary::default(),
            waker: Waker::default(),
            sends: Vec::new(),
            parked: Vec::new(),
            migrating: Default::default(),
            deferred_adopts: Vec::new(),
            live_tx,
            live_rx,
            console_log: false,
        }
    }

    /// Also appends every process's console output to its `console.log`,
    /// exactly once across crashes (`phantom run --console-log`).
    pub fn log_console(&mut self, on: bool) {
        self.console_log = on;
    }

    /// What wakes the loop from its sleep: give it to the control server
    /// and to whatever fills the input feed.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Adds a process.
    pub fn add(&mut self, process: Process) {
        if let Some(log) = process.journal_log() {
            // Effects wait for durability: wake the loop to release them.
            let waker = self.waker.clone();
            log.on_durable(Box::new(move |_| waker.wake()));
        }
        let anchor = (Instant::now(), process.now_ns());
        self.procs.push(Driven {
            process,
            touched: true,
            clock_anchor: anchor,
            handled: 0,
            log: None,
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
        self.restore_filling(dir, self.rt.config().restore, hooks)
    }

    /// [`Drive::restore`], filling memories as `mode` says.
    pub fn restore_filling(
        &mut self,
        dir: &std::path::Path,
        mode: crate::runtime::RestoreMode,
        hooks: &mut dyn DriveHooks,
    ) -> Result<bool, RestoreError> {
        let (process, warnings) = Process::restore_filling(self.rt, dir, mode)?;
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
        if let Some(report) = process.last_replay() {
            hooks.note(Note::Replayed {
                name: process.name(),
                report,
            });
        }
        self.add(process);
        Ok(true)
    }

    /// Applies the fallback policy to a process that failed (already marked
    /// failed and settled): what it did (anything but `No`: the failure was
    /// dealt with, it runs again or its resume failure is recorded).
    fn fall_back(
        &mut self,
        gone: Driven,
        policy: crate::travel::fallback::FallbackPolicy,
        failure: &Failure,
        hooks: &mut dyn DriveHooks,
    ) -> FellBack {
        use crate::travel::fallback::{Fallback, after_failure};
        let Some(data) = self.data.clone() else {
            return FellBack::No;
        };
        let Ok(data) = crate::datadir::DataDir::open(&data) else {
            return FellBack::No;
        };
        let dir = gone.process.dir().to_path_buf();
        let name = gone.process.name().to_string();
        let handled = gone.handled;
        drop(gone);
        let decision = match after_failure(self.rt, &data, &dir, policy, failure, handled, false) {
            Fallback::GiveUp(d) => {
                hooks.note(Note::Warning(&format!("'{name}' stays failed: {}", d.why)));
                return FellBack::No;
            }
            Fallback::Retry(d) => (
                false,
                format!(
                    "'{name}' failed; resuming it from checkpoint {}: {}",
                    d.checkpoint, d.why
                ),
            ),
            Fallback::RolledBack(d) => (
                true,
                format!(
                    "'{name}' keeps failing; rolled back to checkpoint {} (now checkpoint {}): {}",
                    d.to.unwrap_or(0),
                    d.new_checkpoint.unwrap_or(0),
                    d.why
                ),
            ),
        };
        let (rolled_back, decision) = decision;
        hooks.note(Note::Warning(&decision));
        clear_failure(&dir);
        if let Err(e) = self.restore(&dir, hooks) {
            let failure = Failure::new(e.kind(), format!("cannot resume '{name}': {e}"));
            hooks.note(Note::Failed {
                name: &name,
                failure: &failure,
            });
            mark_failed(&dir, &failure);
            self.summary.failed.push((name, failure));
            if !rolled_back {
                return FellBack::StaysFailed;
            }
        }
        if rolled_back {
            FellBack::RolledBack
        } else {
            FellBack::Resumed
        }
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
                    self.answer(pending, hooks);
                }
            }
            while let Ok(live) = self.live_rx.try_recv() {
                self.answer_live(live, hooks);
            }
            self.push_sends();
            if let Some(console) = console.as_mut() {
                self.feed(console, &mut held, &mut input_open, hooks);
            }
            self.run_round(opts, hooks);
            self.release_all(hooks);
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
            let sends_waiting = !self.sends.is_empty();
            let next_timer = self
                .procs
                .iter()
                .filter_map(|p| {
                    let due = p.process.next_due_ns()?;
                    let (at, ns) = p.clock_anchor;
                    Some(at + Duration::from_nanos(due.saturating_sub(ns)))
                })
                .min();
            let input_waiting = input_open || held.is_some() || sends_waiting;
            // A migration in progress ends first (its worker answers here).
            let migrating = !self.migrating.is_empty() || !self.parked.is_empty();
            if self.procs.is_empty()
                && !migrating
                && (opts.stop_when_empty || !input_waiting && opts.until_idle)
            {
                break;
            }
            let effects_waiting = self.procs.iter().any(|p| p.process.held_effects() > 0);
            if opts.until_idle && next_timer.is_none() && !input_waiting && !effects_waiting {
                break;
            }
            let mut wake = now + MAX_SLEEP;
            for t in [next_checkpoint, next_timer, deadline]
                .into_iter()
                .flatten()
            {
                wake = wake.min(t);
            }
            if sends_waiting {
                // A full queue drains as the guests run: look again soon.
                wake = wake.min(now + Duration::from_millis(1));
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            match console.as_mut() {
                Some(c) if input_open && held.is_none() => {
                    held = c.feed.try_next();
                    if held.is_none() {
                        self.waker.wait(timeout.min(Duration::from_millis(5)));
                    }
                }
                _ => self.waker.wait(timeout),
            }
        }
        // What is durable leaves before the end; sends still waiting are
        // answered with what was delivered.
        for p in &self.procs {
            if let Some(log) = p.process.journal_log() {
                let _ = log.sync();
            }
        }
        self.release_all(hooks);
        for send in std::mem::take(&mut self.sends) {
            self.finish_send(
                send,
                Some("the host stopped before they were delivered"),
                true,
            );
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
            p.process.poll_device_events();
            let mut failed = None;
            let round = Instant::now();
            for _ in 0..STEPS_PER_ROUND {
                match p.process.step_held(rt) {
                    Ok(Some(())) => {
                        p.touched = true;
                        p.handled += 1;
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
            for w in p.process.take_device_warnings() {
                hooks.note(Note::Warning(&format!("'{}': {w}", p.process.name())));
            }
            if let Some(failure) = failed {
                let name = p.process.name().to_string();
                hooks.note(Note::Failed {
                    name: &name,
                    failure: &failure,
                });
                mark_failed(p.process.dir(), &failure);
                // Queued lines are durable in its journal: it gets them
                // when it runs again. (Without a journal they are lost.)
                let kept = if p.process.journal_log().is_some() {
                    p.process.take_queued_lines()
                } else {
                    0
                };
                let lost = p.process.take_undelivered_lines();
                if lost > 0 {
                    self.summary.undelivered += lost;
                    self.summary
                        .undelivered_reason
                        .get_or_insert_with(|| format!("'{name}' failed before handling them"));
                }
                // What its earlier calls sent out leaves (their entries are
                // in the journal); its last checkpoint stays what it was; a
                // write in flight finishes (it holds state from before the
                // failure).
                self.sync_and_release(i, hooks);
                let mut gone = self.procs.remove(i);
                settle(&mut gone.process, &name, &mut self.summary, hooks, true);
                let fell_back = match opts.fallback {
                    Some(policy) => self.fall_back(gone, policy, &failure, hooks),
                    None => FellBack::No,
                };
                match fell_back {
                    // Handed to it again in this run.
                    FellBack::Resumed => {}
                    // Rolled back past the journal that held them.
                    FellBack::RolledBack if kept > 0 => {
                        self.summary.undelivered += kept;
                        self.summary
                            .undelivered_reason
                            .get_or_insert_with(|| format!("'{name}' was rolled back past them"));
                    }
                    FellBack::RolledBack => {}
                    FellBack::No | FellBack::StaysFailed => {
                        if kept > 0 {
                            self.summary.kept.push((name.clone(), kept));
                        }
                    }
                }
                if fell_back == FellBack::No {
                    self.summary.failed.push((name, failure));
                }
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
                self.sync_and_release(i, hooks);
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

    /// Starts a migration worker for process `name` (live if this loop runs
    /// it, else from its files); the worker answers `reply` when it is over.
    fn start_migration(
        &mut self,
        name: String,
        to: String,
        key_file: Option<PathBuf>,
        insecure_plaintext: bool,
        max_rounds: Option<u32>,
        reply: &ReplyTo,
    ) -> Result<(), String> {
        let data = self
            .data
            .clone()
            .ok_or("this host runs no data directory")?;
        let dir = crate::datadir::DataDir::open(&data)
            .and_then(|d| d.process_dir(&name))
            .map_err(|e| e.to_string())?;
        if self.migrating.contains(&name) {
            return Err(format!("'{name}' is already being migrated"));
        }
        let (security, key_file) =
            crate::migrate::security_from(key_file.as_deref(), insecure_plaintext)?;
        let mut opts = crate::migrate::MigrateOptions::new(to, security, key_file);
        if let Some(r) = max_rounds {
            opts.max_rounds = r;
        }
        let live = self.procs.iter().any(|p| p.process.name() == name);
        let mut side: Box<dyn crate::migrate::SourceSide + Send> = if live {
            Box::new(LiveSource {
                name: name.clone(),
                tx: self.live_tx.clone(),
                waker: self.waker.clone(),
            })
        } else {
            Box::new(OfflineSource { dir: dir.clone() })
        };
        let reply = reply.clone();
        let done = LiveSource {
            name: name.clone(),
            tx: self.live_tx.clone(),
            waker: self.waker.clone(),
        };
        self.migrating.insert(name.clone());
        let spawned = std::thread::Builder::new()
            .name("phantom-migrate-out".into())
            .spawn(move || {
                let result = crate::migrate::migrate(side.as_mut(), &dir, &opts);
                let value = match result {
                    Ok(report) => json!({"ok": true, "report": report}),
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                };
                let _ = reply.send(value);
                let (tx, _rx) = mpsc::channel();
                let _ = done.tx.send(LiveRequest {
                    name: done.name.clone(),
                    op: LiveOp::Done,
                    reply: tx,
                });
                done.waker.wake();
            });
        if let Err(e) = spawned {
            self.migrating.remove(&name);
            return Err(format!("cannot start the migration: {e}"));
        }
        Ok(())
    }

    /// One step of a migration worker.
    fn answer_live(&mut self, req: LiveRequest, hooks: &mut dyn DriveHooks) {
        let LiveRequest { name, op, reply } = req;
        let answer = match op {
            LiveOp::Round | LiveOp::Stop => {
                match self.procs.iter().position(|p| p.process.name() == name) {
                    None => Err(format!("'{name}' is no longer running here")),
                    Some(i) => {
                        if matches!(op, LiveOp::Stop) {
                            // What its calls sent out leaves first; nothing
                            // runs after the last checkpoint.
                            self.sync_and_release(i, hooks);
                        }
                        let answer = self.checkpoint_now(i, hooks);
                        if answer.is_ok() && matches!(op, LiveOp::Stop) {
                            let p = self.procs.remove(i);
                            self.parked.push(p);
                        }
                        answer
                    }
                }
            }
            LiveOp::Finish(outcome) => {
                if let Some(k) = self.parked.iter().position(|p| p.process.name() == name) {
                    let p = self.parked.remove(k);
                    match outcome {
                        Finish::Aborted => {
                            hooks.note(Note::Warning(&format!(
                                "the migration of '{name}' did not complete: it runs here again"
                            )));
                            self.add(p.process);
                        }
                        Finish::Moved => {
                            hooks.note(Note::Warning(&format!("'{name}' moved to another host")))
                        }
                        Finish::Unknown => hooks.note(Note::Warning(&format!(
                            "'{name}' stays stopped: its migration's outcome is not known"
                        ))),
                    }
                }
                Ok(0)
            }
            LiveOp::Done => {
                self.migrating.remove(&name);
                let (waiting, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred_adopts)
                    .into_iter()
                    .partition(|(n, _)| *n == name);
                self.deferred_adopts = others;
                for (n, reply) in waiting {
                    // Stayed: it runs here now; moved: the files say so.
                    let value = self.answer_now(Request::Adopt { name: n }, hooks);
                    let _ = reply.send(value);
                }
                Ok(0)
            }
        };
        let _ = reply.send(answer);
    }

    /// Checkpoints process `i` now and waits until it is durable; its id.
    fn checkpoint_now(&mut self, i: usize, hooks: &mut dyn DriveHooks) -> Result<u64, String> {
        let rt = self.rt;
        let p = &mut self.procs[i];
        let name = p.process.name().to_string();
        settle(&mut p.process, &name, &mut self.summary, hooks, true);
        let report = p.process.checkpoint(rt).map_err(|e| e.to_string())?;
        p.touched = false;
        self.summary.checkpoints += 1;
        hooks.note(Note::Captured {
            name: &name,
            report: &report,
        });
        match p.process.wait_for_write() {
            Some(Ok(info)) => {
                hooks.note(Note::Committed {
                    name: &name,
                    id: info.id,
                });
                Ok(info.id)
            }
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the checkpoint was not written".into()),
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

    /// Answers a control request (a `send` may answer later).
    fn answer(&mut self, pending: PendingRequest, hooks: &mut dyn DriveHooks) {
        let PendingRequest { request, reply } = pending;
        // Adopted while a migration takes it from its files, it would run
        // here and there: it waits for the migration's outcome.
        if let Request::Adopt { name } = &request
            && self.migrating.contains(name)
            && !self.procs.iter().any(|p| p.process.name() == *name)
            && !self.parked.iter().any(|p| p.process.name() == *name)
        {
            self.deferred_adopts.push((name.clone(), reply));
            return;
        }
        if let Request::Send {
            name,
            messages,
            timeout_ms,
            key,
        } = request
        {
            let timeout =
                timeout_ms.map_or(crate::control::SEND_QUEUE_TIMEOUT, Duration::from_millis);
            self.start_send(name, messages, key, timeout, reply);
            return;
        }
        if let Request::Migrate {
            name,
            to,
            key_file,
            insecure_plaintext,
            max_rounds,
        } = request
        {
            if let Err(why) =
                self.start_migration(name, to, key_file, insecure_plaintext, max_rounds, &reply)
            {
                let _ = reply.send(json!({"ok": false, "error": why}));
            }
            return;
        }
        let value = self.answer_now(request, hooks);
        let _ = reply.send(value);
    }

    /// Starts delivering a `send` request's messages.
    fn start_send(
        &mut self,
        name: String,
        messages: Vec<String>,
        key: Option<String>,
        timeout: Duration,
        reply: ReplyTo,
    ) {
        let refuse = |why: String| {
            let _ = reply.send(json!({"ok": false, "error": why}));
        };
        if let Some(k) = &key
            && !crate::journal::valid_outside_key(k)
        {
            return refuse(format!("'{k}' is not a send key (32 lowercase hex digits)"));
        }
        if !self.procs.iter().any(|p| p.process.name() == name) {
            let why = if self.parked.iter().any(|p| p.process.name() == name) {
                format!(
                    "process '{name}' is moving to another host (its migration's last round): the messages were not delivered; send them to its new host"
                )
            } else if self.summary.exited.iter().any(|(n, _)| *n == name) {
                format!("process '{name}' has exited: it takes no more messages")
            } else if let Some(data) = &self.data
                && let Some(failure) = self
                    .summary
                    .failed
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| f.clone())
                    .or_else(|| crate::datadir::read_failure(&data.join(&name)))
            {
                // As without a host: straight into its journal (this host
                // holds the lock), where they wait until it runs again.
                let texts: Vec<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
                let total = texts.len();
                let value = match crate::journal::offline::send_offline(
                    &data.join(&name),
                    key.as_deref(),
                    &texts,
                ) {
                    Ok(d) => {
                        let new = d.map_or(0, |d| d.last - d.first + 1) as usize;
                        json!({
                            "ok": true,
                            "process": name,
                            "messages": total,
                            "first_position": d.map(|d| d.first),
                            "position": d.map(|d| d.last),
                            "already_delivered": total - new,
                            "note": crate::journal::offline::failed_receiver_note(&name, &failure),
                        })
                    }
                    Err(e) => json!({"ok": false, "error": format!("'{name}' has failed and {e}")}),
                };
                let _ = reply.send(value);
                return;
            } else if self.summary.failed.iter().any(|(n, _)| *n == name) {
                format!(
                    "process '{name}' has failed (see `phantom ps`): the messages were not delivered"
                )
            } else if self
                .data
                .as_ref()
                .is_some_and(|d| d.join(&name).join("process.json").exists())
            {
                format!(
                    "process '{name}' is not running on this host: the messages were not delivered"
                )
            } else {
                format!("no process named '{name}' runs here")
            };
            return refuse(why);
        }
        if messages.is_empty() {
            return refuse("no messages to send".into());
        }
        self.sends.push(PendingSend {
            name,
            total: messages.len(),
            messages: messages.into(),
            key,
            already: 0,
            first: None,
            last: None,
            deadline: Instant::now() + timeout,
            reply,
        });
        self.push_sends();
    }

    /// Delivers what the waiting sends can deliver now; answers those done
    /// (once their journal is durable) or out of time.
    fn push_sends(&mut self) {
        if self.sends.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.sends.len() {
            let send = &mut self.sends[i];
            let Some(p) = self
                .procs
                .iter_mut()
                .find(|p| p.process.name() == send.name)
            else {
                let send = self.sends.remove(i);
                self.finish_send(send, Some("the process stopped running"), false);
                continue;
            };
            let mut error = None;
            // Someone waits for what is appended next: asked before the
            // append, the writer writes and syncs it in one pass instead of
            // writing it when woken and syncing when asked.
            if !send.messages.is_empty()
                && let Some(log) = p.process.journal_log()
            {
                log.request_durable(log.next_seq());
            }
            while let Some(text) = send.messages.front() {
                let at = p.process.journal_log().map_or(0, |l| l.next_seq());
                // Its place in the request, from 1.
                let n = (send.total - send.messages.len()) as u64 + 1;
                let input = Input::Message {
                    from: send
                        .key
                        .as_deref()
                        .map_or_else(String::new, |k| crate::journal::outside_sender(k, n)),
                    id: at,
                    data: text.as_bytes().to_vec(),
                };
                match p.process.offer(input) {
                    Ok(()) => {
                        send.messages.pop_front();
                        // Not appended: the process had it already.
                        let appended = p.process.journal_log().is_none_or(|l| l.next_seq() > at);
                        if appended {
                            send.first.get_or_insert(at);
                            send.last = Some(at);
                        } else {
                            send.already += 1;
                        }
                    }
                    Err(InputRefused::QueueFull) => break,
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            let done = send.messages.is_empty();
            let late = !done && Instant::now() >= send.deadline;
            if done || late || error.is_some() {
                let send = self.sends.remove(i);
                let why = match (error, late) {
                    (Some(e), _) => Some(e),
                    (None, true) => Some("its queue stayed full (backpressure)".to_string()),
                    _ => None,
                };
                self.finish_send(send, why.as_deref(), false);
                continue;
            }
            i += 1;
        }
    }

    /// Answers a send: once what it delivered is durable. `stopped`: the
    /// host is stopping under it.
    fn finish_send(&self, send: PendingSend, error: Option<&str>, stopped: bool) {
        let delivered = send.total - send.messages.len();
        let mut value = json!({
            "ok": error.is_none(),
            "process": send.name,
            "messages": delivered,
            "first_position": send.first,
            "position": send.last,
            "already_delivered": send.already,
        });
        if stopped {
            // The client goes on without this host (its key leaves out
            // what was delivered here): `control::request` reads this as
            // no host.
            value["stopping"] = json!(true);
        }
        if let Some(why) = error {
            value["error"] = json!(format!(
                "'{}': {why}; {delivered} of {} messages were delivered{}",
                send.name,
                send.total,
                match (send.first, send.last) {
                    (Some(f), Some(l)) => format!(" (journal entries {f} to {l})"),
                    _ => String::new(),
                }
            ));
        }
        let log = self
            .procs
            .iter()
            .find(|p| p.process.name() == send.name)
            .and_then(|p| p.process.journal_log().cloned());
        // Left out as already taken: taken by an earlier attempt, maybe
        // not durable yet (its answer was lost, not its host).
        let wait_for = send.last.or_else(|| {
            (send.already > 0)
                .then(|| log.as_ref().and_then(|l| l.next_seq().checked_sub(1)))
                .flatten()
        });
        match (log, wait_for) {
            // The writer answers right after the sync that makes the
            // last message durable (asked now, it syncs in the pass that
            // writes the entries); the control thread writes the answer.
            (Some(log), Some(seq)) => {
                let reply = send.reply;
                log.when_durable(
                    seq,
                    Box::new(move |durable| {
                        let value = match durable {
                            Ok(()) => value,
                            Err(e) => json!({"ok": false, "error": format!(
                                "the journal failed before the messages were durable (they may be lost): {e}"
                            )}),
                        };
                        let _ = reply.send(value);
                    }),
                );
            }
            _ => {
                let _ = send.reply.send(value);
            }
        }
    }

    /// Makes process `i`'s journal durable and releases its effects.
    fn sync_and_release(&mut self, i: usize, hooks: &mut dyn DriveHooks) {
        if let Some(log) = self.procs[i].process.journal_log() {
            let _ = log.sync();
        }
        self.release(i, hooks);
    }

    /// Releases every process's effects whose causes are durable.
    fn release_all(&mut self, hooks: &mut dyn DriveHooks) {
        for i in 0..self.procs.len() {
            self.release(i, hooks);
        }
    }

    /// Releases process `i`'s ready effects in order: console output to the
    /// sink, messages into their receivers' journals (durable before the
    /// sender records them released, so a crash in between resends them and
    /// the receiver drops the duplicate).
    fn release(&mut self, i: usize, hooks: &mut dyn DriveHooks) {
        let ready = self.procs[i].process.take_ready();
        if ready.is_empty() {
            return;
        }
        let sender = self.procs[i].process.name().to_string();
        let mut receivers: Vec<(Arc<crate::journal::Log>, u64)> = Vec::new();
        let mut stopped_at = None;
        // What is left of a device effect the device had no room for.
        let mut unfinished = None;
        // Console output for the log: (call, bytes).
        let mut logged: Vec<(u64, &[u8])> = Vec::new();
        for (k, held) in ready.iter().enumerate() {
            match &held.output {
                out @ Output::Console(bytes) => {
                    hooks.emit(&sender, out);
                    if self.console_log {
                        logged.push((held.call, bytes));
                    }
                }
                Output::Device(effect) => {
                    if let Some(rest) = self.procs[i].process.apply_device(effect) {
                        unfinished = Some(rest);
                        stopped_at = Some(k);
                        break;
                    }
                }
                Output::Message { to, id, data } => {
                    let Some(j) = self.procs.iter().position(|p| p.process.name() == to) else {
                        match self.deliver_not_running(&sender, to, *id, data) {
                            Ok(Elsewhere::Delivered) => {}
                            // Being migrated from here: held (with what
                            // follows) until the outcome is known.
                            Ok(Elsewhere::Wait) => {
                                stopped_at = Some(k);
                                break;
                            }
                            Err(why) => hooks.note(Note::Warning(&format!(
                                "message {id} from '{sender}' to '{to}' was not delivered: {why}"
                            ))),
                        }
                        continue;
                    };
                    let input = Input::Message {
                        from: sender.clone(),
                        id: *id,
                        data: data.clone(),
                    };
                    let receiver = &mut self.procs[j].process;
                    match receiver.offer(input) {
                        Ok(()) => {
                            if let Some(log) = receiver.journal_log()
                                && j != i
                            {
                                receivers.push((log.clone(), log.next_seq()));
                            }
                        }
                        Err(InputRefused::QueueFull) => {
                            stopped_at = Some(k);
                            break;
                        }
                        Err(e) => hooks.note(Note::Warning(&format!(
                            "message {id} from '{sender}' to '{to}' was not delivered: {e}"
                        ))),
                    }
                }
            }
        }
        // Everything up to the last call whose effects all left.
        let (done, mut rest): (&[Held], Vec<Held>) = match stopped_at {
            Some(k) => (&ready[..k], ready[k..].to_vec()),
            None => (&ready[..], Vec::new()),
        };
        if let (Some(effect), Some(first)) = (unfinished, rest.first_mut()) {
            first.output = Output::Device(effect);
        }
        let upto = match rest.first() {
            Some(next) => done.iter().rev().map(|h| h.call).find(|&c| c < next.call),
            None => done.last().map(|h| h.call),
        };
        for (log, next) in receivers {
            if next > 0 {
                let _ = log.wait_durable(next - 1, RECEIVER_SYNC);
            }
        }
        let logged_to = if self.console_log {
            self.write_console_log(i, &logged, upto, hooks)
        } else {
            None
        };
        let p = &mut self.procs[i].process;
        if !rest.is_empty() {
            p.put_back(rest);
        }
        match (upto, logged_to) {
            (Some(call), Some(offset)) => p.mark_released_logged(call, offset),
            (Some(call), None) => p.mark_released(call),
            _ => {}
        }
        self.procs[i].touched = true;
    }

    /// Delivers a message to process `to`, which is not among those
    /// running: into its journal straight away when it is a process of this
    /// data directory that failed or is not taken back yet (this host holds
    /// the lock), so it gets the message when it runs again; `Wait` while
    /// it is being migrated from here.
    fn deliver_not_running(
        &self,
        from: &str,
        to: &str,
        id: u64,
        data: &[u8],
    ) -> Result<Elsewhere, String> {
        // Being migrated (parked for its last round, or taken from its
        // files): its journal is not to be touched until the outcome.
        if self.parked.iter().any(|p| p.process.name() == to) || self.migrating.contains(to) {
            return Ok(Elsewhere::Wait);
        }
        if self.summary.exited.iter().any(|(n, _)| n == to) {
            return Err(format!("'{to}' has exited: it takes no more messages"));
        }
        let Some(data_path) = &self.data else {
            return Err(format!("no process '{to}' runs here"));
        };
        let dir = crate::datadir::DataDir::open(data_path)
            .and_then(|d| d.process_dir(to))
            .map_err(|e| e.to_string())?;
        crate::journal::offline::deliver_offline(&dir, from, id, data)?;
        Ok(Elsewhere::Delivered)
    }

    /// Appends process `i`'s released console output to its console log
    /// and syncs it; the log's length to record with `upto` (None if the
    /// log cannot be written: then the release is recorded without it).
    fn write_console_log(
        &mut self,
        i: usize,
        logged: &[(u64, &[u8])],
        upto: Option<u64>,
        hooks: &mut dyn DriveHooks,
    ) -> Option<u64> {
        let d = &mut self.procs[i];
        if d.log.is_none() {
            let recorded = d.process.console_log_offset();
            d.log = Some(
                match crate::console_log::ConsoleLog::open(d.process.dir(), recorded) {
                    Ok((log, warning)) => {
                        if let Some(w) = warning {
                            hooks.note(Note::Warning(&w));
                        }
                        Ok(log)
                    }
                    Err(e) => {
                        hooks.note(Note::Warning(&format!(
                            "'{}': cannot open its console log: {e}; its output is not logged",
                            d.process.name()
                        )));
                        Err(())
                    }
                },
            );
        }
        let Some(Ok(log)) = &mut d.log else {
            return None;
        };
        let written = logged
            .iter()
            .try_for_each(|&(call, bytes)| log.append(call, bytes))
            .and_then(|()| {
                if logged.is_empty() {
                    Ok(())
                } else {
                    log.sync()
                }
            });
        if let Err(e) = written {
            hooks.note(Note::Warning(&format!(
                "'{}': cannot write {}: {e}; its output is no longer logged",
                d.process.name(),
                log.path().display()
            )));
            d.log = Some(Err(()));
            return None;
        }
        upto.map(|call| log.recorded_for(call))
    }

    /// Answers a control request now.
    fn answer_now(&mut self, request: Request, hooks: &mut dyn DriveHooks) -> Value {
        match request {
            // `answer` starts sends (their reply waits for the journal).
            Request::Send { .. } | Request::Migrate { .. } => {
                json!({"ok": false, "error": "answered when it is over, not here"})
            }
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
                if self.parked.iter().any(|p| p.process.name() == name) {
                    return json!({"ok": false, "error": format!("'{name}' is being migrated to another host")});
                }
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
                // Failed where it was (an import or a migration of a
                // failed process): it stays failed here too, as a restart
                // leaves it, until `--retry-failed`.
                if let Some(f) = crate::datadir::read_failure(&dir) {
                    return json!({"ok": true, "already_running": false, "failed": true, "failure": f});
                }
                clear_failure(&dir);
                crate::migrate::pause_at("adopt-received");
                let restored = self.restore(&dir, hooks);
                crate::migrate::pause_at("adopt-restored");
                match restored {
                    Ok(_) => json!({"ok": true, "already_running": false}),
                    Err(e) => {
                        let failure = Failure::new(e.kind(), e.to_string());
                        mark_failed(&dir, &failure);
                        json!({"ok": false, "error": e.to_string()})
                    }
                }
            }
            Request::Devices { name } => match self.procs.iter().find(|p| p.process.name() == name)
            {
                Some(p) => json!({
                    "ok": true,
                    "running": true,
                    "checkpoint": p.process.last_committed().map(|c| c.id),
                    "open": p.process.devices().state.open,
                    "lost": p.process.devices().lost(),
                }),
                None => json!({"ok": true, "running": false}),
            },
            Request::Status => {
                let running: Vec<Value> = self
                    .procs
                    .iter()
                    .map(|p| {
                        let s = p.process.state();
                        let journal = p
                            .process
                            .journal_log()
                            .map(|l| json!({"next": l.next_seq(), "durable": l.durable(), "syncs": l.syncs()}));
                        json!({
                            "name": p.process.name(),
                            "state": "running",
                            "checkpoint": p.process.last_committed().map(|c| c.id),
                            "restores": s.restore_count,
                            "queued_inputs": s.pending.len(),
                            "held_effects": p.process.held_effects(),
                            "journal": journal,
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
                let parked = self
                    .parked
                    .iter()
                    .map(|p| json!({"name": p.process.name(), "state": "migrating"}));
                let running: Vec<Value> = running.into_iter().chain(parked).collect();
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
    restore_all_with(drive, data, retry_failed, None, hooks)
}

/// `restore_all`, with the fallback policy of `run --fallback`: a process
/// whose restore fails because its replay traps or diverges is rolled back
/// to an earlier checkpoint (each decision in its `fallback.json`) and
/// restored from there.
pub fn restore_all_with(
    drive: &mut Drive<'_>,
    data: &crate::datadir::DataDir,
    retry_failed: bool,
    fallback: Option<crate::travel::fallback::FallbackPolicy>,
    hooks: &mut dyn DriveHooks,
) -> Result<Vec<(String, Failure)>, crate::datadir::DataDirError> {
    let mut failed = Vec::new();
    for dir in data.process_dirs()? {
        let name = process_name(&dir);
        if !owned_here(&dir, &name, hooks) {
            continue;
        }
        // A process that failed on a damaged page of its image (read
        // lazily) is restored eagerly: every page is checked up front, and
        // a damaged checkpoint is passed over for an older one.
        let mut mode = drive.rt.config().restore;
        if let Some(failure) = read_failure(&dir) {
            if !retry_failed {
                hooks.note(Note::Warning(&format!(
                    "skipping failed process '{name}' (see `phantom ps`; --retry-failed resumes it)"
                )));
                continue;
            }
            if failure.kind == crate::error::FailureKind::BadImage {
                mode = crate::runtime::RestoreMode::Eager;
            }
            clear_failure(&dir);
        }
        let mut result = drive.restore_filling(&dir, mode, hooks);
        // Each rollback steps back at least one checkpoint; `depth` bounds
        // how far, so this ends.
        let mut rollbacks = 0;
        while let (Err(e), Some(policy)) = (&result, fallback) {
            use crate::travel::fallback::{Fallback, after_failure};
            let failure = Failure::new(e.kind(), format!("cannot resume '{name}': {e}"));
            if rollbacks > policy.depth {
                break;
            }
            match after_failure(drive.rt, data, &dir, policy, &failure, 0, true) {
                Fallback::RolledBack(d) => {
                    rollbacks += 1;
                    hooks.note(Note::Warning(&format!(
                        "'{name}' does not resume; rolled back to checkpoint {} (now checkpoint {}): {}",
                        d.to.unwrap_or(0),
                        d.new_checkpoint.unwrap_or(0),
                        d.why
                    )));
                    result = drive.restore_filling(&dir, mode, hooks);
                }
                Fallback::GiveUp(d) | Fallback::Retry(d) => {
                    hooks.note(Note::Warning(&format!("'{name}' stays failed: {}", d.why)));
                    break;
                }
            }
        }
        if let Err(e) = result {
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

/// What the fallback policy did with a failed process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FellBack {
    /// Nothing: it stays failed, as it was.
    No,
    /// Resumed from its checkpoint and journal: it runs on.
    Resumed,
    /// Rolled back to an earlier checkpoint (its journal tail left), and
    /// resumed or recorded failed.
    RolledBack,
    /// Tried again, and its resume failed (recorded).
    StaysFailed,
}

/// Whether this host owns the process in `dir` and may run it: a process
/// that moved away is not run; one whose migration's outcome is unknown
/// is asked about at its target first (and not run if the target cannot
/// answer).
fn owned_here(dir: &std::path::Path, name: &str, hooks: &mut dyn DriveHooks) -> bool {
    use crate::migrate::{Ownership, Resolution, ownership, resolve};
    match ownership(dir) {
        Ownership::Owned => true,
        Ownership::Moved(m) => {
            hooks.note(Note::Warning(&format!(
                "'{name}' moved to {} (migration {}): it is not run here",
                m.to, m.id
            )));
            false
        }
        Ownership::Migrating(i) => match resolve(dir, None, false) {
            Ok(Resolution::Moved) => {
                hooks.note(Note::Warning(&format!(
                    "'{name}' moved to {} (migration {} completed there): it is not run here",
                    i.to, i.id
                )));
                false
            }
            Ok(_) => {
                hooks.note(Note::Warning(&format!(
                    "the migration of '{name}' to {} did not complete ({} never took it): it resumes here",
                    i.to, i.to
                )));
                true
            }
            Err(e) => {
                hooks.note(Note::Warning(&format!("not running '{name}': {e}")));
                false
            }
        },
    }
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
