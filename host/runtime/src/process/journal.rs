//! A process's journal: opening it on restore, replaying its tail, holding
//! effects until their causes are durable, and truncating it behind the
//! oldest checkpoint kept.
//!
//! ```text
//!   restore: checkpoint (position P) ─► Log::open (torn tail cut) ─► entries >= P
//!     replay: admit ─► queue   released ─► skip those effects   call ─► the guest,
//!             its reads fed from the entries that follow ─► call-end: status and
//!             digest must match (else: divergence at that entry, process failed)
//!     the journal ends inside a call: the call goes on live and is recorded
//!   live:  step ─► held (call, call-end) ─► take_ready once call-end is durable
//!          ─► the drive loop releases them ─► mark_released ─► journal: released
//!   commit of checkpoint N ─► truncate_before(position of the oldest kept)
//! ```

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, TypedFunc};

use super::Process;
use crate::bindings::Status;
use crate::ctx::ProcessCtx;
use crate::error::{Failure, FailureKind};
use crate::exit::Output;
use crate::gate::Input;
use crate::iface::messages::GuestMessage;
use crate::journal::log::{self, Log, LogConfig};
use crate::journal::{CallKind, Entry, Held, JournalState, journal_dir};
use crate::persist::Section;
use crate::runtime::Runtime;

/// The guest's `handle-message` export.
pub(crate) type HandleMessage = TypedFunc<(GuestMessage,), (Status,)>;

/// The guest's `handle-device-event` export.
pub(crate) type HandleDeviceEvent =
    TypedFunc<(crate::iface::devices::gpio::WitDeviceEvent,), (Status,)>;

/// The `handle-device-event` export, if the component has one of the right
/// type.
pub(super) fn find_handle_device_event(
    store: &mut Store<ProcessCtx>,
    instance: &Instance,
) -> wasmtime::Result<Option<HandleDeviceEvent>> {
    let Some(func) = instance.get_func(&mut *store, "handle-device-event") else {
        return Ok(None);
    };
    func.typed::<(crate::iface::devices::gpio::WitDeviceEvent,), (Status,)>(&*store)
        .map(Some)
        .map_err(|e| {
            e.context(
                "its `handle-device-event` export is not `func(event: device-event) -> status`",
            )
        })
}

/// What one call did.
pub(crate) struct CallDone {
    /// What it sent out.
    pub outputs: Vec<Output>,
    /// How it ended.
    pub ended: crate::journal::Ended,
    /// Its digest.
    pub digest: u64,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries after the checkpoint.
    pub entries: usize,
    /// Calls replayed.
    pub calls: usize,
    /// Inputs queued again.
    pub admitted: usize,
    /// Effects not performed again (released before the crash).
    pub skipped_effects: usize,
    /// Effects to release (not released before the crash).
    pub pending_effects: usize,
    /// Calls that had failed, whose inputs were consumed without running.
    pub failed_calls: usize,
}

/// The `handle-message` export, if the component has one of the right type.
pub(super) fn find_handle_message(
    store: &mut Store<ProcessCtx>,
    instance: &Instance,
) -> wasmtime::Result<Option<HandleMessage>> {
    let Some(func) = instance.get_func(&mut *store, "handle-message") else {
        return Ok(None);
    };
    func.typed::<(GuestMessage,), (Status,)>(&*store)
        .map(Some)
        .map_err(|e| {
            e.context("its `handle-message` export is not `func(message: message) -> status`")
        })
}

fn divergence(seq: u64, why: impl std::fmt::Display) -> Failure {
    divergence_cut(seq, seq, why)
}

/// A divergence at entry `seq`, whose way past is a cut at entry `cut`
/// (for a call, the call's own entry: cutting at its end would replay the
/// call with the recorded values, one of which may be what changed).
fn divergence_cut(seq: u64, cut: u64, why: impl std::fmt::Display) -> Failure {
    Failure::new(
        FailureKind::Divergence,
        format!(
            "replaying the journal diverged at entry {seq}: {why} ({})",
            cut_hint(cut)
        ),
    )
}

fn cut_hint(cut: u64) -> String {
    format!(
        "`phantom journal --cut-at {cut}` keeps the entries before it and runs on from there; `phantom run --retry-failed --fallback` drops the whole tail"
    )
}

/// The newest `released` entry's call, after checking each: it names a
/// call that ended before it (in the tail, or before the checkpoint), no
/// earlier than the one released before it. A crafted one that named a
/// call not ended yet would skip its effects; one that went back would
/// release effects twice.
fn check_released(
    entries: &[(u64, Entry)],
    position: u64,
    mut released: Option<u64>,
) -> Result<Option<u64>, Failure> {
    let mut ended = std::collections::HashSet::new();
    let mut open = None;
    for (seq, e) in entries {
        match e {
            Entry::Call { .. } => open = Some(*seq),
            Entry::CallEnd { .. } => {
                ended.extend(open.take());
            }
            Entry::CallFailed { call } | Entry::CallAbandoned { call } => {
                ended.insert(*call);
                open = None;
            }
            Entry::Released { call } | Entry::ReleasedLogged { call, .. } => {
                let why = if *call >= *seq {
                    Some("a call at or after it".to_string())
                } else if let Some(r) = released.filter(|r| call < r) {
                    Some(format!("an earlier call than the {r} released before it"))
                } else if *call >= position && !ended.contains(call) {
                    Some("an entry that is not a call that ended before it".to_string())
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(divergence(
                        *seq,
                        format!(
                            "it records the effects of calls up to entry {call} as released, but names {why}"
                        ),
                    ));
                }
                released = Some(*call);
            }
            _ => {}
        }
    }
    Ok(released)
}

impl Process {
    /// The journal's log, when the journal is on.
    pub fn journal_log(&self) -> Option<&Arc<Log>> {
        self.store.data().journal.log.as_ref()
    }

    /// Opens the journal (cutting a torn tail) and reads the entries after
    /// the restored checkpoint's position.
    pub(super) fn open_journal(
        &mut self,
        rt: &Runtime,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<(u64, Entry)>, Failure> {
        if !rt.config.journal {
            return Ok(Vec::new());
        }
        let dir = journal_dir(&self.dir);
        let position = self.store.data().journal.state.position;
        let name = self.name.clone();
        let host_io = |e: log::LogError| {
            let kind = match e {
                log::LogError::Unsupported(_) => FailureKind::BadImage,
                _ => FailureKind::HostIo,
            };
            Failure::new(kind, format!("cannot open the journal of '{name}': {e}"))
        };
        let existed = dir.exists();
        let (log, opened) = Log::open(&dir, LogConfig::default(), position).map_err(host_io)?;
        if let Some(cut) = &opened.cut {
            let d = &cut.damage;
            let lost = if cut.assessed.keeps() {
                ", and the process does not get them"
            } else {
                ""
            };
            let what = format!("{}{lost}", cut.assessed.what());
            let kept = cut.kept.as_ref().map_or(String::new(), |k| {
                format!(
                    "; the journal from there on is kept as it was in {}",
                    k.display()
                )
            });
            warnings.push(format!(
                "{}: the journal was cut at {} byte {}: entry {} and after were not whole ({}): {what}{kept}",
                self.dir.display(),
                d.segment.display(),
                d.offset,
                d.seq,
                d.why
            ));
        }
        if position > 0 && (!existed || opened.reset) {
            warnings.push(format!(
                "{}: the journal {} before position {position}, which checkpoint {} covers: it starts again there",
                self.dir.display(),
                if existed { "ended" } else { "was missing, so it ended" },
                self.state().checkpoint_id
            ));
        }
        let tail = match opened.tail {
            Some(tail) => tail,
            None => {
                log::scan(&dir, position)
                    .map_err(|e| {
                        Failure::new(
                            FailureKind::BadImage,
                            format!("cannot replay the journal of '{}': {e}", self.name),
                        )
                    })?
                    .entries
            }
        };
        let mut entries = Vec::with_capacity(tail.len());
        for e in tail {
            let entry = Entry::decode(&e.payload).map_err(|why| {
                Failure::new(
                    FailureKind::BadImage,
                    format!(
                        "entry {seq} of the journal of '{name}' is not a valid entry: {why} (`phantom journal {name} --cut-at {seq}` keeps the entries before it)",
                        seq = e.seq,
                        name = self.name
                    ),
                )
            })?;
            entries.push((e.seq, entry));
        }
        self.store.data_mut().journal.log = Some(Arc::new(log));
        Ok(entries)
    }

    /// Replays the journal's tail: the process ends up where it was when
    /// the last entry was written. A divergence fails it.
    pub(super) fn replay(
        &mut self,
        rt: &Runtime,
        entries: Vec<(u64, Entry)>,
    ) -> Result<ReplayReport, Failure> {
        let mut report = ReplayReport {
            entries: entries.len(),
            ..Default::default()
        };
        {
            let j = &mut self.store.data_mut().journal;
            j.state.released = check_released(&entries, j.state.position, j.state.released)?;
            // The console log's length as last recorded.
            if let Some(offset) = entries.iter().rev().find_map(|(_, e)| match e {
                Entry::ReleasedLogged { offset, .. } => Some(*offset),
                _ => None,
            }) {
                j.state.console_log = Some(offset);
            }
            let released = j.state.released;
            let before = j.state.held.len();
            j.state.held.retain(|h| released.is_none_or(|r| h.call > r));
            report.skipped_effects += before - j.state.held.len();
            j.replay = entries.into();
            j.replaying = true;
        }
        let mut result = self.replay_entries(rt, &mut report);
        let ctx = self.store.data_mut();
        // A replay that diverged after a memory grow was refused: the run
        // that wrote the journal had a larger --max-memory-mib (the guest
        // got memory then, not now). A limit, not damage: no cut.
        if let Err(f) = &mut result
            && f.kind == FailureKind::Divergence
            && let Some(bytes) = ctx.limiter.refused.take()
        {
            *f = Failure::new(
                FailureKind::OutOfMemory,
                format!(
                    "replaying the journal needs more memory than this run's limit of {} MiB (--max-memory-mib): a replayed call asked to grow a memory to {} MiB and, refused, went another way ({}); run with the limit the journal was written under (nothing was lost)",
                    ctx.limiter.max_bytes >> 20,
                    bytes.div_ceil(1 << 20),
                    f.message
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .split(" (`phantom journal --cut-at")
                        .next()
                        .unwrap_or_default()
                        .split(" (the call of entry")
                        .next()
                        .unwrap_or_default()
                ),
            );
        }
        ctx.journal.replaying = false;
        ctx.journal.replay.clear();
        ctx.journal.trouble = None;
        result?;
        report.pending_effects = ctx.journal.state.held.len();
        Ok(report)
    }

    fn replay_entries(&mut self, rt: &Runtime, report: &mut ReplayReport) -> Result<(), Failure> {
        let mut latest_ns = self.store.data().state.process_time_ns;
        loop {
            let ctx = self.store.data_mut();
            let Some((seq, entry)) = ctx.journal.replay.pop_front() else {
                break;
            };
            match entry {
                Entry::Admit { time_ns, input } => {
                    latest_ns = latest_ns.max(time_ns);
                    if let Input::Timer(id) = input {
                        ctx.timers.fired(id, time_ns);
                    }
                    ctx.admit_recorded(input).map_err(|e| {
                        divergence(seq, format!("the recorded input was refused: {e}"))
                    })?;
                    report.admitted += 1;
                }
                Entry::Released { .. } | Entry::ReleasedLogged { .. } => {}
                Entry::Call { time_ns, kind } => {
                    latest_ns = latest_ns.max(time_ns);
                    // A call that failed: its input is consumed, the call
                    // not run (nor its recorded reads).
                    let reads = ctx
                        .journal
                        .replay
                        .iter()
                        .take_while(|(_, e)| e.is_read())
                        .count();
                    match ctx.journal.replay.get(reads) {
                        Some((_, Entry::CallFailed { call })) if *call == seq => {
                            ctx.journal.replay.drain(..=reads);
                            if kind == CallKind::Next && ctx.next_input().is_none() {
                                return Err(divergence(
                                    seq,
                                    "a call was recorded with no input queued",
                                ));
                            }
                            report.failed_calls += 1;
                            continue;
                        }
                        // Never finished: its input stays at the head.
                        Some((_, Entry::CallAbandoned { call })) if *call == seq => {
                            ctx.journal.replay.drain(..=reads);
                            continue;
                        }
                        _ => {}
                    }
                    ctx.clock.reset_to(time_ns);
                    let input = match kind {
                        CallKind::Next => ctx.next_input().ok_or_else(|| {
                            divergence(seq, "a call was recorded with no input queued")
                        })?,
                        CallKind::Resume if ctx.state.busy => Input::Resume,
                        CallKind::Resume => {
                            return Err(divergence(
                                seq,
                                "a `resume` was recorded for a guest that is not busy",
                            ));
                        }
                    };
                    if ctx.state.exit_code.is_some() {
                        return Err(divergence(
                            seq,
                            "a call was recorded after the guest exited",
                        ));
                    }
                    let done = match self.call(rt, kind, &input, time_ns) {
                        Ok(done) => done,
                        Err(mut failure) => {
                            // A read that diverged (`JournalCtx::diverge`):
                            // the way past drops this call.
                            if failure.kind == FailureKind::Divergence
                                && !failure.message.contains("--cut-at")
                            {
                                failure.message = format!(
                                    "{} (the call of entry {seq}: {})",
                                    failure.message,
                                    cut_hint(seq)
                                );
                            }
                            // The journal's last call (the host died in it)
                            // failed again: recorded, so a retry skips it
                            // (abandoned, its input kept, when the host or
                            // the image failed it: see `step`).
                            let j = &mut self.store.data_mut().journal;
                            if j.replay.is_empty() && failure.kind != FailureKind::Divergence {
                                j.trouble = None;
                                let end = if matches!(
                                    failure.kind,
                                    FailureKind::HostIo | FailureKind::BadImage
                                ) {
                                    Entry::CallAbandoned { call: seq }
                                } else {
                                    Entry::CallFailed { call: seq }
                                };
                                let _ = j.append(&end);
                                if let Some(log) = &j.log {
                                    let _ = log.sync();
                                }
                            }
                            return Err(failure);
                        }
                    };
                    report.calls += 1;
                    self.end_replayed_call(seq, done, report)?;
                }
                other => {
                    return Err(divergence(
                        seq,
                        format!("a {} entry outside a call", other.kind_name()),
                    ));
                }
            }
        }
        let clock = &mut self.store.data_mut().clock;
        if clock.now_ns() < latest_ns {
            clock.reset_to(latest_ns);
        }
        Ok(())
    }

    /// Checks a replayed call against its recorded end and holds or skips
    /// its effects.
    fn end_replayed_call(
        &mut self,
        call: u64,
        done: CallDone,
        report: &mut ReplayReport,
    ) -> Result<(), Failure> {
        let ctx = self.store.data_mut();
        let end = match ctx.journal.replay.front() {
            Some((end, Entry::CallEnd { ended, digest })) => {
                let end = *end;
                if *ended != done.ended {
                    return Err(divergence_cut(
                        end,
                        call,
                        format!(
                            "the call of entry {call} ended {:?}, but the journal recorded {:?}",
                            done.ended, ended
                        ),
                    ));
                }
                if *digest != done.digest {
                    return Err(divergence_cut(
                        end,
                        call,
                        format!(
                            "the call of entry {call} did not reproduce what was recorded (its digest of inputs, reads and outputs differs: the guest behaved differently, or a recorded value was changed)"
                        ),
                    ));
                }
                ctx.journal.replay.pop_front();
                end
            }
            Some((s, e)) if e.is_read() => {
                return Err(divergence_cut(
                    *s,
                    call,
                    format!(
                        "the call of entry {call} ended without reading the recorded {}",
                        e.kind_name()
                    ),
                ));
            }
            Some((s, e)) => {
                return Err(divergence_cut(
                    *s,
                    call,
                    format!(
                        "the call of entry {call} has no call-end before this {} entry",
                        e.kind_name()
                    ),
                ));
            }
            None => {
                // The journal ended inside this call (the host stopped
                // during it): the call went on live; record its end.
                ctx.journal
                    .append(&Entry::CallEnd {
                        ended: done.ended,
                        digest: done.digest,
                    })
                    .map_err(|e| Failure::new(FailureKind::HostIo, e))?
                    .unwrap_or(call + 1)
            }
        };
        let released = ctx.journal.state.released;
        if released.is_some_and(|r| call <= r) {
            report.skipped_effects += done.outputs.len();
        } else {
            self.hold(call, end, done.outputs);
        }
        Ok(())
    }

    /// Holds a call's effects until its call-end `end` is durable.
    pub(super) fn hold(&mut self, call: u64, end: u64, outputs: Vec<Output>) {
        let held = &mut self.store.data_mut().journal.state.held;
        held.extend(outputs.into_iter().map(|output| Held { call, end, output }));
    }

    /// Effects whose causes are durable, in order, taken for release. What
    /// cannot be released now goes back with `put_back`; once released,
    /// `mark_released`.
    pub fn take_ready(&mut self) -> Vec<Held> {
        let j = &mut self.store.data_mut().journal;
        if j.state.held.is_empty() {
            return Vec::new();
        }
        let durable = j.log.as_ref().map_or(u64::MAX, |l| l.durable());
        let n = j.state.held.iter().take_while(|h| h.end < durable).count();
        if let (Some(log), Some(last)) = (&j.log, j.state.held.last()) {
            // The writer syncs only what someone waits for: ask for all of
            // the held effects' causes.
            if last.end >= durable {
                log.request_durable(last.end);
            }
        }
        j.state.held.drain(..n).collect()
    }

    /// Effects taken by `take_ready` that could not be released yet, back
    /// at the front of the queue.
    pub fn put_back(&mut self, mut rest: Vec<Held>) {
        let held = &mut self.store.data_mut().journal.state.held;
        rest.append(held);
        *held = rest;
    }

    /// Every effect of the calls up to `call` has left: recorded, so a
    /// replay does not perform them again.
    pub fn mark_released(&mut self, call: u64) {
        let j = &mut self.store.data_mut().journal;
        if j.state.released.is_some_and(|r| r >= call) {
            return;
        }
        j.state.released = Some(call);
        // A lost marker only means the effect may happen again after a
        // crash (at-least-once); a failing journal fails the next call.
        let _ = j.append(&Entry::Released { call });
    }

    /// [`Process::mark_released`], with the console log's length once
    /// those calls' console output is in it (and synced).
    pub fn mark_released_logged(&mut self, call: u64, offset: u64) {
        let j = &mut self.store.data_mut().journal;
        if j.state.released.is_some_and(|r| r >= call) && j.state.console_log == Some(offset) {
            return;
        }
        j.state.released = Some(j.state.released.map_or(call, |r| r.max(call)));
        j.state.console_log = Some(offset);
        let _ = j.append(&Entry::ReleasedLogged {
            call: j.state.released.unwrap_or(call),
            offset,
        });
    }

    /// The console log's length as last recorded, if ever.
    pub fn console_log_offset(&self) -> Option<u64> {
        self.store.data().journal.state.console_log
    }

    /// Effects held, not yet released.
    pub fn held_effects(&self) -> usize {
        self.store.data().journal.state.held.len()
    }

    /// Deletes journal segments every kept checkpoint covers.
    pub(super) fn truncate_journal(&mut self) {
        let Some(log) = self.store.data().journal.log.clone() else {
            return;
        };
        // Back to the oldest checkpoint of the recovery window; older ones
        // kept by the policy are rollback targets, which discard later
        // inputs anyway.
        let Some(oldest) = self.images.recovery_floor() else {
            return;
        };
        let position = match self.positions.get(&oldest) {
            Some(p) => *p,
            None => match self.images.sections_of(oldest) {
                Ok(sections) => match sections.get(JournalState::NAME) {
                    Some(bytes) => match JournalState::restore(bytes) {
                        Ok(j) => j.position,
                        Err(_) => return,
                    },
                    None => 0,
                },
                Err(_) => return,
            },
        };
        self.positions.retain(|id, _| *id >= oldest);
        let _ = log.truncate_before(position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Ended;

    /// A tail from position 10: calls at 10 and 13 (ended at 12 and 15),
    /// then `released` entries naming `calls` at 16, 17, ...
    fn tail(calls: &[u64]) -> Vec<(u64, Entry)> {
        let call = Entry::Call {
            time_ns: 1,
            kind: CallKind::Next,
        };
        let end = Entry::CallEnd {
            ended: Ended::Idle,
            digest: 7,
        };
        let mut t = vec![
            (10, call.clone()),
            (11, Entry::Monotonic(5)),
            (12, end.clone()),
            (13, call),
            (14, Entry::Monotonic(6)),
            (15, end),
        ];
        for (i, &c) in calls.iter().enumerate() {
            t.push((16 + i as u64, Entry::Released { call: c }));
        }
        t
    }

    #[test]
    fn released_entries_must_name_a_call_that_ended_before_them() {
        // Calls of the tail, in order, or one before it (the checkpoint's
        // position is 10; the checkpoint released up to 4).
        for ok in [&[10][..], &[10, 13], &[13], &[6, 10], &[10, 10]] {
            assert_eq!(
                check_released(&tail(ok), 10, Some(4)).unwrap(),
                ok.last().copied(),
                "{ok:?}"
            );
        }
        for (bad, why) in [
            (&[11][..], "not a call"),
            (&[99], "at or after it"),
            (&[13, 10], "earlier call"),
            (&[3], "earlier call"),
            (&[16], "at or after it"),
        ] {
            let e = check_released(&tail(bad), 10, Some(4)).unwrap_err();
            assert_eq!(e.kind, FailureKind::Divergence, "{bad:?}");
            assert!(e.message.contains(why), "{bad:?}: {}", e.message);
        }
        // A call not ended yet when the entry was written.
        let mut t = tail(&[]);
        t.insert(3, (13, Entry::Released { call: 10 }));
        t.truncate(4);
        t.push((
            14,
            Entry::Call {
                time_ns: 2,
                kind: CallKind::Next,
            },
        ));
        t.push((15, Entry::Released { call: 14 }));
        assert!(check_released(&t, 10, None).is_err());
    }
}
