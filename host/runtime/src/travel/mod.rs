//! Images that travel: a process leaves its data directory as one bundle
//! (`phantom export`) and arrives in another, on this host or another one
//! (`phantom import`). The container is `phantom_snapshots::bundle`; this
//! module decides what goes in and checks everything that comes out before
//! the process becomes visible.
//!
//! ```text
//!  export.rs  ExportPlan::prepare: the chain of the chosen checkpoint (every
//!             file verified, all opened first), its journal tail, metadata
//!             ─► write: metadata | component | ckpt (oldest first) | journal
//!                        | failure ─► end record
//!  import.rs  records ─► .import.spawning-PID/NAME (a private data directory)
//!             ─► checks: one of each, names, metadata, every image deep
//!                (fsck), the journal tail starts where the newest
//!                checkpoint ends, a trial restore that replays the tail
//!             ─► rename into DATA/NAME ─► hand over to a running host
//!  fork.rs    the chain hard-linked into DATA/.NEW.spawning-PID, the journal
//!             tail appended to a new journal ─► rename to DATA/NEW
//!  rollback.rs a fork of NAME at ID, checkpointed once, exchanged with NAME
//!             (renameat2); the state left kept for --undo
//!  fallback.rs the host's policy after a guest fault: retry, then roll back
//!             past a persistent error (`run --fallback`)
//! ```

mod export;
pub mod fallback;
mod fork;
mod import;
mod rollback;

pub(crate) use export::encode_journal;
pub use export::{ExportPlan, ExportReport};
pub use fork::{ForkReport, fork};
pub use import::{ImportReport, import};
pub(crate) use import::{adopt_cache, seed_cache, write_journal};
pub use rollback::{
    RollbackReport, UndoReport, kept_states, move_on_after_cut, rollback, undo_rollback,
};

use std::path::PathBuf;

use phantom_snapshots::bundle::BundleError;

use crate::datadir::DataDirError;

/// The record names of the files a bundle carries.
const METADATA: &str = "process.json";
const COMPONENT: &str = "component.wasm";
const FAILURE: &str = "failed.json";
const JOURNAL: &str = "journal";

/// The per-process settings a bundle carries: the keep policy, the device
/// grants and the simulated devices' scenario. (Not the pins: a bundle
/// holds one chain, not the history they name.)
pub(crate) const BUNDLE_SETTINGS: [&str; 3] = [
    phantom_snapshots::SETTINGS_FILES[0],
    crate::process::DEVICES_FILE,
    crate::iface::devices::SCENARIO_FILE,
];

/// The settings a migration carries: a bundle's and the pins (it carries
/// the history).
pub(crate) const MIGRATED_SETTINGS: [&str; 4] = [
    phantom_snapshots::SETTINGS_FILES[0],
    phantom_snapshots::SETTINGS_FILES[1],
    crate::process::DEVICES_FILE,
    crate::iface::devices::SCENARIO_FILE,
];

/// Checks a settings file that came from elsewhere before it is written:
/// it must parse as what its name says (a device manifest as a manifest,
/// with the errors `spawn --devices` gives).
pub(crate) fn check_setting(name: &str, bytes: &[u8]) -> Result<(), String> {
    let text = || std::str::from_utf8(bytes).map_err(|_| format!("its {name} is not text"));
    if name == crate::process::DEVICES_FILE {
        phantom_devices::DeviceManifest::parse(text()?)
            .map(|_| ())
            .map_err(|e| format!("its {name}: {e}"))
    } else if name == crate::iface::devices::SCENARIO_FILE {
        phantom_devices::scenario::Scenario::parse(text()?)
            .map(|_| ())
            .map_err(|e| format!("its {name}: {e}"))
    } else {
        phantom_snapshots::check_setting(name, bytes)
    }
}

/// An export, import or fork failed. An import that fails leaves the target
/// data directory as it was.
#[derive(Debug, thiserror::Error)]
pub enum TravelError {
    /// The data directory or the process cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The bundle's container is damaged, truncated or from the future.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The process has no checkpoint that can be used for this (exported,
    /// forked, rolled back to).
    #[error("'{name}': {cause}")]
    NothingToExport {
        /// The process.
        name: String,
        /// Why its checkpoints cannot be used (said in the message, not
        /// chained: printed once).
        cause: phantom_snapshots::RestoreError,
    },
    /// The bundle's container is whole, but what it holds is not a process
    /// this phantom can run.
    #[error("the bundle is not valid: {0}")]
    Invalid(String),
    /// The request cannot be done (no rollback to undo, ...).
    #[error("{0}")]
    Refused(String),
    /// The bundle was made by a newer phantom.
    #[error(
        "the bundle was written by phantom {producer}, newer than this one ({ours}); import it with phantom {producer} or later"
    )]
    Newer {
        /// The version that wrote it.
        producer: String,
        /// This version.
        ours: &'static str,
    },
    /// The target already has a process of that name.
    #[error(
        "{} already has a process named '{name}' (give it another name with --as NEW)",
        data.display()
    )]
    Exists {
        /// The name.
        name: String,
        /// The data directory.
        data: PathBuf,
    },
    /// A name that cannot be a process name.
    #[error(
        "'{0}' is not a valid process name (1 to 64 of A-Z a-z 0-9 . - _, not starting with '.')"
    )]
    InvalidName(String),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The journal position checkpoint `id` of `store` covers (where its
/// journal tail starts).
pub(crate) fn journal_position(
    store: &phantom_snapshots::CheckpointStore,
    id: u64,
) -> Result<u64, TravelError> {
    let bad = |e: String| TravelError::Invalid(format!("checkpoint {id}: {e}"));
    let sections = store.sections_of(id).map_err(|e| bad(e.to_string()))?;
    Ok(crate::persist::HostParts::restore(&sections)
        .map_err(bad)?
        .journal
        .position)
}

/// Refuses checkpoint `checkpoint` of process `name` (in `dir`) unless its
/// contents fit the process's component: a crafted or foreign checkpoint
/// would make a copy (`verb`: forked, exported) that never runs.
pub(crate) fn check_contents(
    dir: &std::path::Path,
    store: &phantom_snapshots::CheckpointStore,
    name: &str,
    checkpoint: u64,
    verb: &str,
) -> Result<(), TravelError> {
    let facts = std::fs::read(dir.join(COMPONENT))
        .map_err(|e| e.to_string())
        .and_then(|b| crate::inspect::inspect_component(&b).map_err(|e| e.to_string()))
        .map_err(|e| TravelError::Refused(format!("the component of '{name}': {e}")))?;
    let mut verdict = None;
    let _ = store.restore_newest(|c| {
        if c.info.id != checkpoint {
            return Err("not the one asked for".to_string());
        }
        verdict = Some(crate::process::check_image_contents(&facts, u64::MAX, c));
        Ok(())
    });
    match verdict {
        Some(Err(why)) => Err(TravelError::Refused(format!(
            "checkpoint {checkpoint} of '{name}' cannot be {verb}: {why}"
        ))),
        _ => Ok(()),
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TravelError {
    let what = what.into();
    move |source| TravelError::Io { what, source }
}

/// `a` is a newer version than `b` (dotted numbers; anything after a `-`
/// or `+` ignored; a part that is not a number counts as 0).
pub(crate) fn newer_version(a: &str, b: &str) -> bool {
    version_parts(a).is_none() || newer_version_lax(a, b)
}

/// The numbers of a version (`1.2.3`, with an optional `-pre` or `+build`
/// after them), or None if it is not one.
pub(crate) fn version_parts(v: &str) -> Option<Vec<u64>> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Option<Vec<u64>> = core
        .split('.')
        .map(|p| {
            (!p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect();
    parts.filter(|p| !p.is_empty())
}

fn newer_version_lax(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (mut a, mut b) = (parts(a), parts(b));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a > b
}

#[cfg(test)]
mod tests {
    use super::newer_version;

    #[test]
    fn versions_compare_by_number() {
        assert!(newer_version("0.2.0", "0.1.9"));
        assert!(newer_version("0.10.0", "0.9.0"));
        assert!(newer_version("1.0", "0.99.99"));
        assert!(!newer_version("0.1.0", "0.1.0"));
        // Not a version: treated as from an unknown (newer) phantom.
        assert!(newer_version("v99.0.0", "0.1.0"));
        assert!(newer_version("hello world", "0.1.0"));
        assert!(newer_version("", "0.1.0"));
        assert!(!newer_version("0.1.0-dev+abc", "0.1.0"));
        assert!(!newer_version("0.1.0-dev", "0.1.0"));
        assert!(!newer_version("0.0.9", "0.1.0"));
    }
}
