//! `phantom rollback`: a process goes back to one of its checkpoints, and
//! the state it leaves is kept so the rollback can be undone.
//!
//! ```text
//!  lock DATA (no host may run it) ─► restore NAME as it is now (its
//!  message ids so far) ─► fork_into DATA/.NAME.rollback-<ns> at ID
//!  ─► restore there, prepare_rollback, one full checkpoint numbered after
//!     every checkpoint NAME has ─► renameat2(EXCHANGE) NAME ⇄ the rollback
//!     dir: NAME is the rolled-back process, .NAME.rollback-<ns> the state
//!     it left (`--undo` exchanges them back)
//! ```
//!
//! The exchange is one atomic rename: a crash leaves NAME either as it was
//! or rolled back, never missing. What goes back: memory, host state,
//! timers, handles, the journal position (the entries after the checkpoint
//! stay with the state left behind). What does not: effects that already
//! left (held effects of the checkpoint are dropped, not released again),
//! message ids (they go on, so receivers take the new messages), checkpoint
//! ids (they go on).
//!
//! The rolled-back process names the directory keeping the state it left
//! (`rollback-undo`, written into the rollback dir before the exchange), so
//! `--undo` brings back that state only, never one an earlier process of
//! the same name left. An undo exchanges the two again, the state coming
//! back first restored and checkpointed once more so that its message ids
//! and checkpoint ids go on after those of the state leaving.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use phantom_snapshots::CheckpointStore;
use rustix::fs::{CWD, RenameFlags, renameat_with};
use serde::Serialize;

use super::{TravelError, io};
use crate::datadir::{DataDir, clear_failure};
use crate::process::Process;
use crate::runtime::Runtime;

/// What a rollback did.
#[derive(Debug, Serialize)]
pub struct RollbackReport {
    /// The process.
    pub name: String,
    /// The checkpoint it went back to.
    pub to: u64,
    /// The newest checkpoint it had before.
    pub from: u64,
    /// The full checkpoint that now holds the rolled-back state.
    pub checkpoint: u64,
    /// Where the state it left is kept (`--undo` brings it back).
    pub kept: PathBuf,
}

const ROLLBACK: &str = ".rollback-";

/// The file of a process directory naming the directory that keeps the
/// state its newest rollback (or undo) left.
const UNDO_FILE: &str = "rollback-undo";

/// What an undo did.
#[derive(Debug, Serialize)]
pub struct UndoReport {
    /// Where the state it left (the rolled-back one) is kept.
    pub kept: PathBuf,
    /// The checkpoint the state that came back goes on from (its message
    /// ids after those of the state that left); None if it did not
    /// restore (see `warning`).
    pub checkpoint: Option<u64>,
    /// Why its ids could not be moved on.
    pub warning: Option<String>,
}

/// Makes `stage` (a rollback dir) name itself as the directory to undo
/// to: after the exchange, it is the one keeping the state left. Durable
/// before the exchange, so the exchange carries it.
fn write_undo_pointer(stage: &Path) -> Result<(), TravelError> {
    let name = stage
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = stage.join(format!("{UNDO_FILE}.tmp"));
    let written = File::create(&tmp)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(name.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, stage.join(UNDO_FILE)));
    written.map_err(io(format!("cannot write {}", tmp.display())))?;
    sync_dir(stage)
}

/// The directory keeping the state `dir` (process `name` of `data`) would
/// go back to with `--undo`, as its newest rollback or undo recorded it.
fn undo_target(data: &Path, dir: &Path, name: &str) -> Option<PathBuf> {
    let pointer = fs::read_to_string(dir.join(UNDO_FILE)).ok()?;
    let pointer = pointer.trim();
    let ns = pointer.strip_prefix(&format!(".{name}{ROLLBACK}"))?;
    if ns.is_empty() || !ns.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kept = data.join(pointer);
    kept.join("process.json").exists().then_some(kept)
}

/// The message ids the process in `dir` has used so far, journal tail
/// included. A process that no longer restores (the reason to roll back)
/// has used at most what its newest readable checkpoint says.
fn message_ids_used(rt: &Runtime, dir: &Path, store: &CheckpointStore) -> u64 {
    match Process::restore(rt, dir) {
        Ok((p, _)) => p.state().next_message_id,
        Err(_) => store
            .ids()
            .unwrap_or_default()
            .iter()
            .filter_map(|&id| store.sections_of(id).ok())
            .filter_map(|s| crate::persist::HostParts::restore(&s).ok())
            .map(|p| p.host.next_message_id)
            .max()
            .unwrap_or(0),
    }
}

/// Restores the process in `dir` (without its devices: a running host may
/// drive them), lets `change` change it and checkpoints it: the
/// checkpoint's id. The restore must come from checkpoint `from` when
/// given (not fall back past it). `what` names the state in errors.
pub(super) fn restore_change_checkpoint(
    rt: &Runtime,
    dir: &Path,
    what: &str,
    from: Option<u64>,
    change: impl FnOnce(&mut Process),
) -> Result<u64, TravelError> {
    let (mut p, warnings) = Process::restore_without_devices(rt, dir)
        .map_err(|e| TravelError::Refused(format!("{what} does not restore: {e}")))?;
    if let Some(from) = from
        && p.state().checkpoint_id != from
    {
        return Err(TravelError::Refused(format!(
            "{what} does not restore from checkpoint {from} (checkpoint {} would have been used): {}",
            p.state().checkpoint_id,
            warnings.join("; ")
        )));
    }
    change(&mut p);
    let failed = |e: String| TravelError::Refused(format!("cannot checkpoint {what}: {e}"));
    p.checkpoint(rt).map_err(|e| failed(e.to_string()))?;
    let info = p
        .wait_for_write()
        .transpose()
        .map_err(|e| failed(e.to_string()))?;
    Ok(info.map_or(0, |i| i.id))
}

/// Restores the process in `dir`, makes it go on with message ids after
/// `ids` and checkpoint ids after `last_id` (`Process::move_on`), and
/// checkpoints it: the checkpoint's id.
pub(crate) fn move_on(
    rt: &Runtime,
    dir: &Path,
    ids: u64,
    last_id: u64,
) -> Result<u64, TravelError> {
    restore_change_checkpoint(rt, dir, "it", None, |p| p.move_on(ids, last_id))
}

/// After `phantom journal --cut-at` (the caller holds the lock): the
/// process in `dir` goes on from the cut with message ids after every id
/// it may have used in the entries cut away (receivers that took those
/// would drop reused ones), from a new checkpoint.
pub fn move_on_after_cut(rt: &Runtime, dir: &Path) -> Result<u64, TravelError> {
    move_on(rt, dir, crate::process::unix_ns(), 0)
}

/// The hidden directories that keep states a rollback of `name` left,
/// oldest first.
pub fn kept_states(data: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!(".{name}{ROLLBACK}");
    let mut out: Vec<(u128, PathBuf)> = fs::read_dir(data)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let ns = n.strip_prefix(&prefix)?.parse().ok()?;
            e.path()
                .join("process.json")
                .exists()
                .then(|| (ns, e.path()))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, p)| p).collect()
}

fn exchange(a: &Path, b: &Path) -> Result<(), TravelError> {
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(|e| {
        io(format!(
            "cannot exchange {} and {}",
            a.display(),
            b.display()
        ))(e.into())
    })
}

fn sync_dir(dir: &Path) -> Result<(), TravelError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync {}", dir.display())))
}

/// Rolls process `name` of `data` back to checkpoint `to`. No host may run
/// the directory meanwhile.
pub fn rollback(
    rt: &Runtime,
    data: &Path,
    name: &str,
    to: u64,
) -> Result<RollbackReport, TravelError> {
    let data_dir = DataDir::open(data)?;
    let _lock = data_dir.lock()?;
    rollback_locked(rt, &data_dir, name, to)
}

/// `rollback`, by the holder of the data directory's lock (the host's
/// automatic fallback).
pub(crate) fn rollback_locked(
    rt: &Runtime,
    data_dir: &DataDir,
    name: &str,
    to: u64,
) -> Result<RollbackReport, TravelError> {
    let data = data_dir.path();
    let dir = data_dir.process_dir(name)?;
    let nothing = |source| TravelError::NothingToExport {
        name: name.into(),
        cause: source,
    };
    let store = CheckpointStore::open(&dir).map_err(|e| nothing(e.into()))?;
    let ids = store.ids().unwrap_or_default();
    if !ids.contains(&to) {
        let listed: Vec<String> = ids.iter().map(u64::to_string).collect();
        return Err(TravelError::Refused(format!(
            "'{name}' has no checkpoint {to} (it has {}; `phantom checkpoints` lists them)",
            if listed.is_empty() {
                "none".to_string()
            } else {
                listed.join(", ")
            }
        )));
    }
    let chain = store.usable_chain(Some(to)).map_err(nothing)?;
    let from = store.latest_id().unwrap_or(to);
    // Its ids go on after every id it used, and after the time now (in
    // ns): the journal tail of a process that no longer restores may hold
    // sends its checkpoints do not count.
    let sent = message_ids_used(rt, &dir, &store).max(crate::process::unix_ns());
    let stamp = crate::process::unix_ns();
    let stage = data.join(format!(".{name}{ROLLBACK}{stamp}"));
    fs::create_dir(&stage).map_err(io(format!("cannot create {}", stage.display())))?;
    let built = (|| {
        super::fork::fork_into(&dir, &store, &chain, false, &stage, name)?;
        restore_change_checkpoint(
            rt,
            &stage,
            &format!("the rollback to checkpoint {to}"),
            Some(to),
            |p| p.prepare_rollback(sent, from),
        )
    })();
    let checkpoint = match built {
        Ok(id) => id,
        Err(e) => {
            let _ = fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    // Forked files share inodes; the full checkpoint alone is new and was
    // synced by its write.
    sync_dir(&stage)?;
    write_undo_pointer(&stage)?;
    exchange(&dir, &stage)?;
    sync_dir(data)?;
    clear_failure(&dir);
    Ok(RollbackReport {
        name: name.into(),
        to,
        from,
        checkpoint,
        kept: stage,
    })
}

/// Undoes the newest rollback of `name` (or undo): the state it left and
/// the current one change places (so an undo can be undone too). Only the
/// state this process's own rollback left comes back.
pub fn undo_rollback(rt: &Runtime, data: &Path, name: &str) -> Result<UndoReport, TravelError> {
    let data_dir = DataDir::open(data)?;
    let _lock = data_dir.lock()?;
    let dir = data_dir.process_dir(name)?;
    let Some(kept) = undo_target(data, &dir, name) else {
        let others = kept_states(data, name);
        return Err(TravelError::Refused(match others.last() {
            None => format!("'{name}' has no rollback to undo"),
            Some(k) => format!(
                "'{name}' has no rollback to undo: {} keeps a state a rollback of a process named '{name}' left, but not of this one (it was spawned, imported or migrated here since); it was left as it is",
                k.display()
            ),
        }));
    };
    // The state coming back goes on after the ids of the one leaving.
    let store = CheckpointStore::open(&dir).ok();
    let (sent, last) = store.as_ref().map_or((0, 0), |s| {
        (message_ids_used(rt, &dir, s), s.latest_id().unwrap_or(0))
    });
    let (checkpoint, warning) = match move_on(rt, &kept, sent.max(crate::process::unix_ns()), last)
    {
        Ok(id) => (Some(id), None),
        Err(e) => (
            None,
            Some(format!(
                "the state that came back was not checkpointed again ({e}): until it is rolled back, messages it sends may reuse ids of the state that left"
            )),
        ),
    };
    write_undo_pointer(&kept)?;
    exchange(&dir, &kept)?;
    sync_dir(data)?;
    Ok(UndoReport {
        kept,
        checkpoint,
        warning,
    })
}
