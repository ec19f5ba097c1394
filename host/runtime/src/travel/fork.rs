//! `phantom fork`: a new process of the same data directory that starts as
//! another one is (or was, at a chosen checkpoint) and then runs on its
//! own. Cheap: checkpoint files never change once committed, so the fork
//! hard-links the chain it starts from instead of copying it (a copy only
//! where the filesystem has no links); the two processes share those bytes
//! until retention drops them from one side.
//!
//! ```text
//!  NAME: chain of the chosen checkpoint (verified) ─► hard links into
//!        DATA/.NEW.spawning-PID/ + component.wasm, devices.toml, scenario.toml
//!        (linked) + process.json
//!        (renamed NEW) + the journal after the checkpoint (newest only,
//!        appended to a new journal) ─► restored once, message ids moved
//!        on past now, checkpointed ─► rename to DATA/NEW ─► hand over
//! ```

use std::fs::{self, File};
use std::path::Path;

use phantom_snapshots::CheckpointStore;
use serde::Serialize;

use super::{COMPONENT, METADATA, TravelError, io};
use crate::datadir::{DataDir, HandOver, hand_over};
use crate::journal::journal_dir;
use crate::journal::log::{self, Log, LogConfig};
use crate::process::{ProcessMeta, spawning_dir, unix_ns, valid_name};
use crate::runtime::Runtime;

/// What a fork made.
#[derive(Debug, Serialize)]
pub struct ForkReport {
    /// The new process.
    pub name: String,
    /// The process it was forked from.
    pub from: String,
    /// The checkpoint it starts from, and the files of its chain.
    pub checkpoint: u64,
    pub chain: Vec<u64>,
    /// Journal entries after the checkpoint it carries (only when forked
    /// from the newest checkpoint).
    pub journal_entries: u64,
    /// Bytes shared with the parent through hard links, and bytes copied.
    pub linked_bytes: u64,
    pub copied_bytes: u64,
    /// The fork's own first checkpoint: restored once, its message ids
    /// moved on past the time of the fork (receivers remember the last id
    /// of each sender name, and this name may have sent before).
    pub own_checkpoint: u64,
    /// A host was running the data directory: what became of the hand-over.
    #[serde(skip)]
    pub handed_over: Option<HandOver>,
}

/// Forks process `name` of `data` as `new`: from checkpoint `at`, or from
/// the newest checkpoint with the journal after it (so the fork is where
/// `name` was at its last durable input).
pub fn fork(
    rt: &Runtime,
    data: &Path,
    name: &str,
    at: Option<u64>,
    new: &str,
) -> Result<ForkReport, TravelError> {
    let data_dir = DataDir::open(data)?;
    let dir = data_dir.process_dir(name)?;
    if !valid_name(new) {
        return Err(TravelError::InvalidName(new.into()));
    }
    let exists = || TravelError::Exists {
        name: new.into(),
        data: data.to_path_buf(),
    };
    if data.join(new).exists() {
        return Err(exists());
    }
    let nothing = |source| TravelError::NothingToExport {
        name: name.into(),
        cause: source,
    };
    let store = CheckpointStore::open(&dir).map_err(|e| nothing(e.into()))?;
    let chain = store.usable_chain(at).map_err(nothing)?;
    let checkpoint = *chain.last().expect("a chain has a file");
    let with_tail = store.usable_chain(None).map_err(nothing)?.last() == Some(&checkpoint);
    super::check_contents(&dir, &store, name, checkpoint, "forked")?;

    let stage = spawning_dir(data, new, std::process::id());
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir(&stage).map_err(io(format!("cannot create {}", stage.display())))?;
    let result = fork_into(&dir, &store, &chain, with_tail, &stage, new);
    let (journal_entries, linked_bytes, copied_bytes) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    // Its message ids go on after the time now: a process of this name
    // may have sent before (removed since), and receivers drop ids they
    // have seen from a name. Done in the stage, so no host sees it first;
    // a fork that does not restore would never run, and is not made.
    let own_checkpoint = match super::rollback::restore_change_checkpoint(
        rt,
        &stage,
        "the fork",
        Some(checkpoint),
        |p| p.message_ids_after(unix_ns()),
    ) {
        Ok(id) => id,
        Err(e) => {
            let _ = fs::remove_dir_all(&stage);
            return Err(TravelError::Refused(format!(
                "checkpoint {checkpoint} of '{name}' cannot be forked: {e}{}",
                if with_tail {
                    " (an older checkpoint may fork: --at ID, see `phantom checkpoints`)"
                } else {
                    ""
                }
            )));
        }
    };
    let dest = data.join(new);
    if dest.exists() {
        let _ = fs::remove_dir_all(&stage);
        return Err(exists());
    }
    if let Err(e) = crate::datadir::move_into_place(&stage, &dest) {
        let _ = fs::remove_dir_all(&stage);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(exists());
        }
        return Err(io(format!("cannot move the fork into {}", dest.display()))(
            e,
        ));
    }
    File::open(data)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync {}", data.display())))?;
    Ok(ForkReport {
        name: new.into(),
        from: name.into(),
        checkpoint,
        chain,
        journal_entries,
        linked_bytes,
        copied_bytes,
        own_checkpoint,
        handed_over: hand_over(&data_dir, new),
    })
}

/// Links (or copies) `from` to `to`; returns (linked, copied) bytes.
fn link_or_copy(from: &Path, to: &Path) -> Result<(u64, u64), TravelError> {
    if fs::hard_link(from, to).is_ok() {
        let len = fs::metadata(to)
            .map_err(io(format!("cannot read {}", to.display())))?
            .len();
        return Ok((len, 0));
    }
    let len = fs::copy(from, to).map_err(io(format!(
        "cannot copy {} to {}",
        from.display(),
        to.display()
    )))?;
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("cannot sync {}", to.display())))?;
    Ok((0, len))
}

/// Fills the staging directory; returns (journal entries, linked, copied).
pub(super) fn fork_into(
    dir: &Path,
    store: &CheckpointStore,
    chain: &[u64],
    with_tail: bool,
    stage: &Path,
    new: &str,
) -> Result<(u64, u64, u64), TravelError> {
    let (mut linked, mut copied) = link_or_copy(&dir.join(COMPONENT), &stage.join(COMPONENT))?;
    // The device grants and the scenario go with it: a fork holds the same
    // open devices, so it needs the same grants.
    for file in [crate::process::DEVICES_FILE, crate::devices::SCENARIO_FILE] {
        if dir.join(file).exists() {
            let (l, c) = link_or_copy(&dir.join(file), &stage.join(file))?;
            linked += l;
            copied += c;
        }
    }
    // The chain's images and, for format 2, the packs holding their pages
    // (hard links: the fork shares every page with its parent).
    let files = store
        .files_for(chain)
        .map_err(|source| TravelError::NothingToExport {
            name: new.into(),
            cause: source,
        })?;
    for file in files {
        let (l, c) = link_or_copy(&store.dir().join(&file), &stage.join(&file))?;
        linked += l;
        copied += c;
    }
    // The keep policy and the pins go along (copied: each side changes
    // its own).
    for file in phantom_snapshots::SETTINGS_FILES {
        let from = store.dir().join(file);
        if from.exists() {
            let to = stage.join(file);
            fs::copy(&from, &to).map_err(io(format!("cannot copy {}", from.display())))?;
            copied += fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
        }
    }
    let meta_path = dir.join(METADATA);
    let bytes = fs::read(&meta_path).map_err(io(format!("cannot read {}", meta_path.display())))?;
    let mut meta: ProcessMeta = serde_json::from_slice(&bytes).map_err(|e| {
        TravelError::Refused(format!("{} cannot be read: {e}", meta_path.display()))
    })?;
    meta.name = new.into();
    let out = stage.join(METADATA);
    let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
    fs::write(&out, json).map_err(io(format!("cannot write {}", out.display())))?;
    File::open(&out)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("cannot sync {}", out.display())))?;

    let mut entries = 0;
    if with_tail {
        let checkpoint = *chain.last().expect("a chain has a file");
        let position = super::journal_position(store, checkpoint)?;
        let journal_err = |e: log::LogError| TravelError::Refused(format!("the journal: {e}"));
        let scan = log::scan(&journal_dir(dir), position).map_err(journal_err)?;
        // A journal that starts at the checkpoint's position, even with no
        // entries after it (a process that stopped cleanly).
        let (log, _) =
            Log::open(&journal_dir(stage), LogConfig::default(), position).map_err(journal_err)?;
        // A call the parent's host is in (no end yet) is abandoned in the
        // copy: the fork's restore skips it and leaves its input queued,
        // instead of finishing it live on devices that host drives.
        let mut open_call = None;
        for e in &scan.entries {
            log.append(&e.payload).map_err(journal_err)?;
            match crate::journal::entry::Entry::decode(&e.payload) {
                Ok(crate::journal::entry::Entry::Call { .. }) => open_call = Some(e.seq),
                Ok(
                    crate::journal::entry::Entry::CallEnd { .. }
                    | crate::journal::entry::Entry::CallFailed { .. }
                    | crate::journal::entry::Entry::CallAbandoned { .. },
                ) => open_call = None,
                _ => {}
            }
        }
        if let Some(call) = open_call {
            log.append(&crate::journal::entry::Entry::CallAbandoned { call }.encode())
                .map_err(journal_err)?;
        }
        log.sync().map_err(journal_err)?;
        entries = scan.entries.len() as u64;
    }
    Ok((entries, linked, copied))
}
