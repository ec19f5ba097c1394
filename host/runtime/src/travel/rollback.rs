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
    let chain = store.usable_chain(Some(to)).map_err(nothing)?;
    let from = store.latest_id().unwrap_or(to);
    // The message ids it has used so far, journal tail included. A process
    // that no longer restores (the reason to roll back) has used at most
    // what its newest readable checkpoint says.
    let sent = match Process::restore(rt, &dir) {
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
    };
    let stamp = crate::process::unix_ns();
    let stage = data.join(format!(".{name}{ROLLBACK}{stamp}"));
    fs::create_dir(&stage).map_err(io(format!("cannot create {}", stage.display())))?;
    let built = (|| {
        super::fork::fork_into(&dir, &store, &chain, false, &stage, name)?;
        let (mut p, _) = Process::restore(rt, &stage)
            .map_err(|e| TravelError::Invalid(format!("checkpoint {to} does not restore: {e}")))?;
        p.prepare_rollback(sent, from);
        p.checkpoint(rt)
            .map_err(|e| TravelError::Invalid(format!("cannot checkpoint the rollback: {e}")))?;
        let info = p
            .wait_for_write()
            .transpose()
            .map_err(|e| TravelError::Invalid(format!("cannot checkpoint the rollback: {e}")))?;
        Ok::<_, TravelError>(info.map_or(0, |i| i.id))
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

/// Undoes the newest rollback of `name`: the state it left and the current
/// one change places (so an undo can be undone too).
pub fn undo_rollback(data: &Path, name: &str) -> Result<PathBuf, TravelError> {
    let data_dir = DataDir::open(data)?;
    let _lock = data_dir.lock()?;
    let dir = data_dir.process_dir(name)?;
    let Some(kept) = kept_states(data, name).pop() else {
        return Err(TravelError::Refused(format!(
            "'{name}' has no rollback to undo"
        )));
    };
    exchange(&dir, &kept)?;
    sync_dir(data)?;
    Ok(kept)
}
