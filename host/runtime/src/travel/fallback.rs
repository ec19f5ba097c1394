//! Automatic fallback past a persistent error (`phantom run --fallback`):
//! a process that fails again and again right after it resumes is rolled
//! back to an earlier checkpoint instead of staying failed.
//!
//! ```text
//!  guest fault (trap, timeout, out of memory) ─► streak: failures with
//!  fewer than HEALTHY events handled between them
//!   streak ≤ tries ─► retry: resume from the newest checkpoint (the failing
//!                     input was consumed; the next one may succeed)
//!   streak > tries ─► the checkpoints since the streak began are marked bad,
//!                     and so are older ones with the same memory (deltas
//!                     that stored no page); rollback to the newest good
//!                     checkpoint older than all of them (and than what the
//!                     streak's first was rolled back from), at most
//!                     `depth` checkpoints back
//!                     ─► resume from there; `rollback --undo` reverses it
//!   restore fails (its replay traps or diverges) ─► straight to the rollback
//!                     (a retry would replay the same entries)
//!   nothing to go back to ─► failed, as without the policy
//!  every decision ─► DIR/fallback.json (`ps --json` shows it) and a note
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use phantom_snapshots::CheckpointStore;
use serde::{Deserialize, Serialize};

use super::rollback::rollback_locked;
use crate::datadir::DataDir;
use crate::error::{Failure, FailureKind};
use crate::runtime::Runtime;

/// The file a process's fallback state is kept in.
pub const FALLBACK_FILE: &str = "fallback.json";
/// Events handled after a resume that end a streak of failures: a process
/// that gets this far is healthy again.
pub const HEALTHY: u64 = 8;

/// How far the host goes to keep a failing process running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FallbackPolicy {
    /// Resumes from the newest checkpoint before rolling back.
    pub tries: u32,
    /// Most checkpoints a rollback may step back past.
    pub depth: u32,
}

/// One decision, as `fallback.json` and `ps --json` show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    /// When (Unix seconds).
    pub time_unix: u64,
    /// `retry`, `rollback` or `give-up`.
    pub action: String,
    /// The newest checkpoint when the process failed.
    pub checkpoint: u64,
    /// A rollback's target and the checkpoint that now holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_checkpoint: Option<u64>,
    /// The failure, and why this action.
    pub why: String,
}

/// What `fallback.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FallbackState {
    /// Failures in the current streak, and the newest checkpoint when it
    /// began.
    pub streak: u32,
    pub streak_from: Option<u64>,
    /// Checkpoints marked bad (never chosen as a rollback target again).
    pub bad: BTreeSet<u64>,
    /// Checkpoints a rollback wrote, with the checkpoint each holds.
    pub origins: BTreeMap<u64, u64>,
    /// Every decision, oldest first (the last 100).
    pub decisions: Vec<Decision>,
}

/// Reads a process's fallback state (none yet: the default).
pub fn read_state(dir: &Path) -> FallbackState {
    fs::read(dir.join(FALLBACK_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_state(dir: &Path, state: &FallbackState) {
    let tmp = dir.join(format!("{FALLBACK_FILE}.tmp"));
    let body = serde_json::to_vec_pretty(state).unwrap_or_default();
    if fs::write(&tmp, body).is_ok() {
        let _ = fs::rename(&tmp, dir.join(FALLBACK_FILE));
    }
}

/// What the host does with a failed process.
#[derive(Debug, PartialEq)]
pub enum Fallback {
    /// Resume it again from its newest checkpoint.
    Retry(Decision),
    /// It was rolled back; resume it.
    RolledBack(Decision),
    /// Leave it failed.
    GiveUp(Decision),
}

/// Decides (and for a rollback, does) what becomes of the process in `dir`
/// of `data` (whose lock the caller holds) after `failure`, `handled`
/// events after it last resumed.
pub fn after_failure(
    rt: &Runtime,
    data: &DataDir,
    dir: &Path,
    policy: FallbackPolicy,
    failure: &Failure,
    handled: u64,
    at_restore: bool,
) -> Fallback {
    let mut state = read_state(dir);
    let newest = CheckpointStore::open(dir)
        .ok()
        .and_then(|s| s.usable_chain(None).ok())
        .and_then(|c| c.last().copied());
    let first_line = failure.message.lines().next().unwrap_or("").to_string();
    let mut decision = Decision {
        time_unix: crate::process::unix_ns() / 1_000_000_000,
        action: "give-up".into(),
        checkpoint: newest.unwrap_or(0),
        to: None,
        new_checkpoint: None,
        why: first_line.clone(),
    };
    // At restore, a replay that diverged (or trapped) does so again from
    // the same checkpoint: an older one is the only way on.
    let guest_fault = matches!(
        failure.kind,
        FailureKind::Trap | FailureKind::Timeout | FailureKind::OutOfMemory
    ) || (at_restore && failure.kind == FailureKind::Divergence);
    let record = |mut state: FallbackState, dir: &Path, d: &Decision| {
        state.decisions.push(d.clone());
        let excess = state.decisions.len().saturating_sub(100);
        state.decisions.drain(..excess);
        write_state(dir, &state);
    };
    let Some(newest) = newest.filter(|_| guest_fault) else {
        decision.why = format!("{first_line} (not a guest fault, or no usable checkpoint)");
        record(state, dir, &decision);
        return Fallback::GiveUp(decision);
    };
    if handled >= HEALTHY || state.streak_from.is_none() {
        state.streak = 0;
        state.streak_from = Some(newest);
    }
    state.streak += 1;
    let name = crate::datadir::process_name(dir);
    if at_restore && !state.bad.contains(&newest) {
        // The newest image is whole; its journal tail does not replay. Go
        // back to exactly that checkpoint, dropping the tail's inputs (the
        // least that can be lost); if that fails too, older ones follow.
        state.bad.insert(newest);
        return match rollback_locked(rt, data, &name, newest) {
            Ok(report) => {
                decision.action = "rollback".into();
                decision.to = Some(newest);
                decision.new_checkpoint = Some(report.checkpoint);
                decision.why = format!(
                    "{first_line} (its journal tail after checkpoint {newest} does not replay: the inputs it holds are dropped; the state it left is in {}, `phantom rollback --undo` brings it back)",
                    report.kept.display()
                );
                state.origins.insert(report.checkpoint, newest);
                state.streak = 0;
                state.streak_from = None;
                record(state, dir, &decision);
                Fallback::RolledBack(decision)
            }
            Err(e) => {
                decision.why = format!("{first_line} (the rollback to {newest} failed: {e})");
                record(state, dir, &decision);
                Fallback::GiveUp(decision)
            }
        };
    }
    if at_restore {
        // Retrying a restore replays the same entries: it fails the same way.
        state.streak = state.streak.max(policy.tries + 1);
    }
    if state.streak <= policy.tries {
        decision.action = "retry".into();
        decision.why = format!(
            "{first_line} (failure {} of {} before a rollback)",
            state.streak,
            policy.tries + 1
        );
        record(state, dir, &decision);
        return Fallback::Retry(decision);
    }
    // A persistent error: everything since the streak began is bad, and so
    // is the state it was rolled back from, if it was.
    let from = state.streak_from.unwrap_or(newest);
    let origin = state.origins.get(&from).copied().unwrap_or(from);
    let store = CheckpointStore::open(dir).ok();
    let ids = store
        .as_ref()
        .and_then(|s| s.ids().ok())
        .unwrap_or_default();
    for &id in ids.iter().filter(|&&id| id >= from) {
        state.bad.insert(id);
    }
    state.bad.insert(origin);
    // A delta that stored no page holds the memory of its parent (a host
    // that resumed the process and stopped wrote it): the parent is as
    // bad.
    let listing: BTreeMap<u64, phantom_snapshots::CheckpointInfo> = store
        .as_ref()
        .and_then(|s| s.list().ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| l.info.ok().map(|i| (l.id, i)))
        .collect();
    let mut same = origin;
    while let Some(info) = listing.get(&same)
        && info.dirty_pages == 0
        && let Some(parent) = info.parent
    {
        state.bad.insert(parent);
        same = parent;
    }
    let older: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&id| id < same && !state.bad.contains(&id))
        .collect();
    let target = older.iter().rev().take(policy.depth as usize).find(|&&id| {
        store
            .as_ref()
            .is_some_and(|s| s.usable_chain(Some(id)).is_ok())
    });
    let Some(&target) = target else {
        decision.why = format!(
            "{first_line} (failed {} times in a row; no good checkpoint older than {same} within {} checkpoints)",
            state.streak, policy.depth
        );
        state.streak = 0;
        state.streak_from = None;
        record(state, dir, &decision);
        return Fallback::GiveUp(decision);
    };
    match rollback_locked(rt, data, &name, target) {
        Ok(report) => {
            decision.action = "rollback".into();
            decision.to = Some(target);
            decision.new_checkpoint = Some(report.checkpoint);
            decision.why = format!(
                "{first_line} (failed {} times in a row since checkpoint {from}; the state it left is in {}, `phantom rollback --undo` brings it back)",
                state.streak,
                report.kept.display()
            );
            state.origins.insert(report.checkpoint, target);
            state.streak = 0;
            state.streak_from = None;
            // The state moves with the process: `dir` is now the rollback.
            record(state, dir, &decision);
            Fallback::RolledBack(decision)
        }
        Err(e) => {
            decision.why = format!("{first_line} (the rollback to {target} failed: {e})");
            record(state, dir, &decision);
            Fallback::GiveUp(decision)
        }
    }
}
