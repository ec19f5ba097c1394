//! What `ps` and `fsck` show, as data: every front end (the CLI, later the
//! dashboard) asks here instead of deriving states itself.
//!
//! ```text
//!   process dir ─► process.json (args) ─► image store: files, bytes, newest
//!     checkpoint that verifies and fits the component ─► failed.json ─►
//!     the running host's view (control socket `status`) ─► ProcessStatus
//! ```

use std::path::Path;
use std::time::Duration;

use phantom_snapshots::CheckpointStore;
use serde::Serialize;

use crate::control::{self, Request};
use crate::datadir::{DataDir, DataDirError, process_name, read_failure};
use crate::error::{Failure, FailureKind};
use crate::inspect::{ComponentFacts, inspect_component};
use crate::process::ProcessMeta;
use crate::process::check_image_contents;

/// One process as `ps` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessStatus {
    /// Its name.
    pub name: String,
    /// `running` (a host runs it now), `ready` (it would resume),
    /// `exited(N)`, `failed`, `unrestorable` or `unreadable`.
    pub state: String,
    /// The checkpoint it resumes from.
    pub checkpoint: Option<u64>,
    /// When that checkpoint was taken.
    pub checkpoint_unix_ns: Option<u64>,
    /// How often it was restored (as of that checkpoint).
    pub restores: Option<u64>,
    /// Checkpoint files on disk.
    pub checkpoints_on_disk: usize,
    /// Bytes of those files.
    pub image_bytes: u64,
    /// Arguments of its `init`.
    pub args: Vec<String>,
    /// Why it failed or cannot resume (the whole message).
    pub error: Option<String>,
    /// Its failure, with the kind (`trap`, `timeout`, `out-of-memory`,
    /// `bad-image`, `host-io`).
    pub failure: Option<Failure>,
    /// Newer checkpoints it would skip, with why.
    pub skipped: Vec<String>,
    /// What `run --fallback` decided about it (retries, rollbacks, the
    /// checkpoints it marked bad), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<crate::travel::fallback::FallbackState>,
}

/// The status of every process of `data`.
pub fn status(data: &DataDir) -> Result<Vec<ProcessStatus>, DataDirError> {
    let live = live_status(data);
    let mut rows = Vec::new();
    for dir in data.process_dirs()? {
        let mut row = disk_status(&dir);
        if let Some(live) = &live {
            let found = live.iter().find(|v| v["name"] == row.name.as_str());
            match found.and_then(|v| v["state"].as_str()) {
                Some("migrating") => row.state = "migrating".into(),
                Some("running") => {
                    row.state = "running".into();
                    if let Some(c) = found.and_then(|v| v["checkpoint"].as_u64()) {
                        row.checkpoint = Some(c);
                    }
                }
                Some("failed") => {
                    if let Some(f) = found
                        .and_then(|v| serde_json::from_value::<Failure>(v["failure"].clone()).ok())
                    {
                        row.state = "failed".into();
                        row.error = Some(f.message.clone());
                        row.failure = Some(f);
                    }
                }
                _ => {}
            }
        } else if row.state == "ready" && data.lock_holder().is_some() {
            row.state = "running".into();
        }
        rows.push(row);
    }
    Ok(rows)
}

/// What the running host says it runs, if a host runs `data` and answers.
fn live_status(data: &DataDir) -> Option<Vec<serde_json::Value>> {
    data.lock_holder()?;
    let reply =
        control::request_within(data.path(), &Request::Status, Duration::from_secs(2)).ok()?;
    reply["processes"].as_array().cloned()
}

/// A process's status from its files alone.
pub fn disk_status(dir: &Path) -> ProcessStatus {
    let meta: Option<ProcessMeta> = std::fs::read(dir.join("process.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut row = ProcessStatus {
        name: process_name(dir),
        state: "unknown".into(),
        checkpoint: None,
        checkpoint_unix_ns: None,
        restores: None,
        checkpoints_on_disk: 0,
        image_bytes: 0,
        args: meta.map(|m| m.args).unwrap_or_default(),
        error: None,
        failure: None,
        skipped: Vec::new(),
        fallback: dir
            .join(crate::travel::fallback::FALLBACK_FILE)
            .exists()
            .then(|| crate::travel::fallback::read_state(dir)),
    };
    match CheckpointStore::open(dir).and_then(|s| Ok((s.list()?, s))) {
        Ok((list, store)) => {
            row.checkpoints_on_disk = list.len();
            row.image_bytes = list
                .iter()
                .filter_map(|l| l.info.as_ref().ok())
                .map(|i| i.bytes_written)
                .sum();
            match restorable(dir, &store) {
                Ok(r) => {
                    row.checkpoint = Some(r.id);
                    row.checkpoint_unix_ns = Some(r.created_unix_ns);
                    row.restores = Some(r.restores);
                    row.skipped = r
                        .skipped
                        .iter()
                        .map(|(id, why)| format!("checkpoint {id}: {why}"))
                        .collect();
                    row.state = match r.exit_code {
                        Some(code) => format!("exited({code})"),
                        None => "ready".into(),
                    };
                }
                Err(e) => {
                    row.state = "unrestorable".into();
                    row.error = Some(e);
                }
            }
        }
        Err(e) => {
            row.state = "unreadable".into();
            row.error = Some(e.to_string());
        }
    }
    if let Some(f) = read_failure(dir) {
        row.state = "failed".into();
        row.error = Some(f.message.clone());
        row.failure = Some(f);
    }
    match crate::migrate::ownership(dir) {
        crate::migrate::Ownership::Owned => {}
        crate::migrate::Ownership::Moved(m) => {
            row.state = "moved".into();
            row.error = Some(format!("moved to {} (migration {})", m.to, m.id));
        }
        crate::migrate::Ownership::Migrating(i) => {
            row.state = "migrating".into();
            row.error = Some(format!(
                "being migrated to {} (migration {}); if no host runs it, `phantom migrate --resolve` asks the outcome",
                i.to, i.id
            ));
        }
    }
    row
}

/// The checkpoint a restore would use, as far as can be told without
/// instantiating.
pub struct Restorable {
    /// Its id.
    pub id: u64,
    /// When it was taken.
    pub created_unix_ns: u64,
    /// Its restore count.
    pub restores: u64,
    /// Its exit code, if the process had exited.
    pub exit_code: Option<i32>,
    /// Newer checkpoints skipped, with why.
    pub skipped: Vec<(u64, String)>,
}

/// Which checkpoint of the process in `dir` would be restored: the newest
/// whose chain verifies and whose contents fit the component.
pub fn restorable(dir: &Path, store: &CheckpointStore) -> Result<Restorable, String> {
    let facts: ComponentFacts = std::fs::read(dir.join("component.wasm"))
        .map_err(|e| format!("cannot read component.wasm: {e}"))
        .and_then(|b| inspect_component(&b).map_err(|e| e.to_string()))?;
    let restored = store
        .restore_newest(|c| check_image_contents(&facts, u64::MAX, c))
        .map_err(|e| e.to_string())?;
    Ok(Restorable {
        id: restored.info.id,
        created_unix_ns: restored.info.created_unix_ns,
        restores: restored.value.host.restore_count,
        exit_code: restored.value.host.exit_code,
        skipped: restored.skipped,
    })
}

/// What `fsck` found in one process.
#[derive(Clone, Debug, Serialize)]
pub struct FsckStatus {
    /// The process.
    pub name: String,
    /// No file is damaged and every chain is whole.
    pub clean: bool,
    /// A restore would succeed.
    pub restorable: bool,
    /// The checkpoint it would restore from.
    pub restorable_from: Option<u64>,
    /// Every problem found.
    pub problems: Vec<String>,
    /// Journal entries a restore would replay.
    pub journal_entries: Option<usize>,
    /// Checkpoints that can still be restored (files whole, pages present,
    /// contents fit the component), newest first.
    pub usable: Vec<u64>,
    /// Checkpoint files and page packs examined.
    pub checkpoints_checked: usize,
    pub packs_checked: usize,
}

/// Verifies every checkpoint file of the process in `dir`.
pub fn fsck(dir: &Path) -> FsckStatus {
    let name = process_name(dir);
    let store = match CheckpointStore::open(dir) {
        Ok(s) => s,
        Err(e) => {
            return FsckStatus {
                name,
                clean: false,
                restorable: false,
                restorable_from: None,
                problems: vec![e.to_string()],
                journal_entries: None,
                usable: Vec::new(),
                checkpoints_checked: 0,
                packs_checked: 0,
            };
        }
    };
    let mut problems = Vec::new();
    let mut damaged = Vec::new();
    let mut usable = Vec::new();
    let mut packs = 0;
    match store.fsck() {
        Ok(report) => {
            for p in report.problems() {
                use phantom_snapshots::FsckProblem as P;
                if let P::Unreadable { id, .. }
                | P::BrokenChain { id, .. }
                | P::MissingPages { id, .. } = p
                {
                    damaged.push(*id);
                }
                problems.push(p.to_string());
            }
            usable = report.usable().to_vec();
            packs = report.packs();
        }
        Err(e) => problems.push(e.to_string()),
    }
    // Every checkpoint whose files verify: do its contents fit the
    // component? (Crafted sections, sizes it cannot have.) The first that
    // does, newest first, is what a restore would use.
    let facts = std::fs::read(dir.join("component.wasm"))
        .map_err(|e| format!("cannot read component.wasm: {e}"))
        .and_then(|b| inspect_component(&b).map_err(|e| e.to_string()));
    let mut from = None;
    let mut position = None;
    match facts {
        Ok(facts) => {
            let mut refused = Vec::new();
            let _ = store.restore_newest(|c| {
                match check_image_contents(&facts, u64::MAX, c) {
                    Ok(parts) => {
                        if from.is_none() {
                            from = Some(c.info.id);
                            position = Some(parts.journal.position);
                        }
                    }
                    Err(why) => refused.push((c.info.id, why)),
                }
                // Refuse every candidate, so every checkpoint is looked at.
                Err::<(), String>("looked at".into())
            });
            for (id, why) in refused {
                if !damaged.contains(&id) {
                    problems.push(format!("checkpoint {id}: {why}"));
                }
                usable.retain(|&u| u != id);
            }
            if from.is_none() {
                problems.push("no checkpoint can be restored".into());
            }
        }
        Err(e) => problems.push(e),
    }
    let mut journal_entries = None;
    if let Some(position) = position {
        let (journal_problems, entries) = crate::journal::offline::check(dir, position);
        problems.extend(journal_problems);
        journal_entries = Some(entries);
    }
    // What only a replay finds (a recorded value changed with its checksum
    // recomputed): the last restore's verdict, until a retry runs it again.
    if let Some(f) = read_failure(dir)
        && f.kind == FailureKind::Divergence
    {
        let first = f.message.lines().next().unwrap_or_default();
        problems.push(format!(
            "journal: the last restore failed ({first}); `phantom run --retry-failed` replays it again"
        ));
    }
    let restorable = from.is_some();
    FsckStatus {
        usable,
        checkpoints_checked: store.ids().map_or(0, |i| i.len()),
        packs_checked: packs,
        journal_entries,
        name,
        clean: problems.is_empty(),
        restorable,
        restorable_from: from,
        problems,
    }
}

/// One checkpoint file as `phantom checkpoints` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointRow {
    /// Its id.
    pub id: u64,
    /// The checkpoint it was made from: in format 1 the one it is a delta
    /// of (None: a full image); in format 2 the one it shares unchanged
    /// pages with (None: the first, or the first after a rollback or
    /// import). The tree `phantom checkpoints` draws.
    pub parent: Option<u64>,
    /// When it was captured.
    pub time_unix_ns: Option<u64>,
    /// Pages it stores.
    pub dirty_pages: Option<u64>,
    /// Its size before compression.
    pub bytes_uncompressed: Option<u64>,
    /// Its size on disk.
    pub bytes_written: Option<u64>,
    /// How long its capture paused the guest.
    pub pause_us: Option<u64>,
    /// Whether the file verifies.
    pub valid: bool,
    /// Kept until unpinned, whatever the keep policy says.
    pub pinned: bool,
    /// Why not.
    pub error: Option<String>,
}

/// The checkpoint files of the process in `dir`, newest first, each verified.
pub fn checkpoints(dir: &Path) -> Result<Vec<CheckpointRow>, phantom_snapshots::StoreError> {
    let store = CheckpointStore::open(dir)?;
    let pins = store.pins();
    Ok(store
        .list()?
        .into_iter()
        .map(|l| match l.info {
            Ok(i) => CheckpointRow {
                id: i.id,
                parent: i.parent,
                time_unix_ns: Some(i.created_unix_ns),
                dirty_pages: Some(i.dirty_pages),
                bytes_uncompressed: Some(i.bytes_uncompressed),
                bytes_written: Some(i.bytes_written),
                pause_us: Some(i.pause_us),
                valid: true,
                pinned: pins.contains(&i.id),
                error: None,
            },
            Err(e) => CheckpointRow {
                id: l.id,
                parent: None,
                time_unix_ns: None,
                dirty_pages: None,
                bytes_uncompressed: None,
                bytes_written: None,
                pause_us: None,
                valid: false,
                pinned: pins.contains(&l.id),
                error: Some(e.to_string()),
            },
        })
        .collect())
}
