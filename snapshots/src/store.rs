//! `CheckpointStore`: the checkpoint images of one process, in a
//! `StoreBackend` (a local directory unless told otherwise). Naming, the
//! write and commit sequence, chain resolution with fallback, retention
//! and fsck.
//!
//! ```text
//!  write ── checks (ids, parent) ── plan ── create_temp ── write_planned
//!        ── sync ── commit ── (FULL) retain: drop chains before the
//!                                     previous verifying FULL
//!  restore_newest(accept) ── newest id first: chain verifies? ── accept?
//!        └─ no: skipped (id, why), try the next older ── none: NoneUsable
//!  load_latest = restore_newest accepting every candidate
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

use crate::backend::{LocalDir, StoreBackend};
use crate::error::{CheckpointWriteError, ImageError, RestoreError, StoreError};
use crate::format::{PAGE_SIZE, page_count};
use crate::image::ImageFile;
use crate::manifest::{PageTable, encode_table};
use crate::pages::{
    PackWriter, PageHash, Pool, RecordReader, hash_page, hex, pack_name, parse_pack_name,
};
use crate::restore::{LoadedCheckpoint, PagedPages, Restored, RestoredMemory};
use crate::write::{plan, write_planned};
use crate::{CheckpointInfo, NewCheckpoint};

/// The file naming pinned checkpoints: their ids, one per line.
const PINS: &str = "pins";
/// The file holding the keep policy: `last=N`, `hourly=N`, `daily=N` lines.
const KEEP: &str = "keep";
/// The store's settings files (the keep policy, the pins): a copy of the
/// process (fork, rollback) takes them along.
pub const SETTINGS_FILES: [&str; 2] = [KEEP, PINS];

/// Checks a settings file (`keep`, `pins`) that comes from elsewhere (a
/// bundle, a migration) before it is written: what is wrong, as a phrase.
pub fn check_setting(name: &str, bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("its {name} file is not text"))?;
    match name {
        KEEP => {
            parse_policy(text).ok_or_else(|| {
                "its keep policy does not parse (`last=N`, `hourly=N`, `daily=N` lines)".to_string()
            })?;
            // `phantom keep` never writes it: the newest is always kept.
            let zero_last = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .any(|(k, v)| k.trim() == "last" && v.trim().parse::<u32>() == Ok(0));
            if zero_last {
                return Err(
                    "its keep policy says last=0 (at least the newest checkpoint is kept)".into(),
                );
            }
            Ok(())
        }
        PINS => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .try_for_each(|l| match l.parse::<u64>() {
                Ok(_) => Ok(()),
                Err(_) => Err(format!("its pins file names '{l}', not a checkpoint id")),
            }),
        _ => Err(format!("'{name}' is not a settings file")),
    }
}

/// Reads a saved keep policy (None if any line is malformed).
fn parse_policy(text: &str) -> Option<KeepPolicy> {
    let mut p = KeepPolicy::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once('=')?;
        let v: u32 = v.trim().parse().ok()?;
        match k.trim() {
            "last" => p.last = v.max(1),
            "hourly" => p.hourly = v,
            "daily" => p.daily = v,
            _ => return None,
        }
    }
    Some(p)
}

/// Which checkpoints retention keeps (besides the newest, pinned ones, and
/// the chains of kept version 1 deltas).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The newest `last` checkpoints: the recovery window (the journal is
    /// kept back to the oldest of them).
    pub last: u32,
    /// The newest checkpoint of each of the last `hourly` hours that have one.
    pub hourly: u32,
    /// The newest checkpoint of each of the last `daily` days (UTC) that have one.
    pub daily: u32,
}

impl Default for KeepPolicy {
    fn default() -> Self {
        KeepPolicy {
            last: 10,
            hourly: 24,
            daily: 7,
        }
    }
}

/// What one garbage collection of pages did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Pages referenced by the checkpoints kept.
    pub referenced_pages: u64,
    /// Packs deleted whole (nothing in them referenced).
    pub packs_deleted: u64,
    /// Packs whose referenced pages were copied into a new pack first.
    pub packs_compacted: u64,
    /// Pages freed.
    pub pages_freed: u64,
    /// Bytes of pack files before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Checkpoint files are `ckpt-<id as 20 decimal digits>.phi`, so names sort
/// like ids.
const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".phi";
const ID_DIGITS: usize = 20;

/// The checkpoint images of one process.
#[derive(Debug)]
pub struct CheckpointStore {
    backend: Arc<dyn StoreBackend>,
    /// Serialises writers sharing this store, so ids and retention see a
    /// consistent set of images.
    writing: Mutex<()>,
    /// Where every stored page is (loaded on first use).
    pool: Mutex<Option<Pool>>,
    /// The page tables of the newest checkpoint written, the base of the
    /// next one.
    last_tables: Mutex<Option<(u64, Tables)>>,
    policy: Mutex<KeepPolicy>,
    /// Checkpoints deleted since pages were last collected.
    removed_since_gc: Mutex<u64>,
    write_version: Mutex<u32>,
}

/// Pages are collected after this many checkpoints were deleted (each
/// collection reads every kept manifest).
const GC_AFTER_REMOVALS: u64 = 8;

/// Pages read from a memory at once when writing.
const READ_PAGES: usize = 64;

static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// Where a write puts the pages no pack holds yet: one new pack, created
/// on the first such page.
struct PageSink<'a> {
    pool: &'a mut Pool,
    backend: &'a dyn StoreBackend,
    seq: u64,
    pack: Option<PackWriter>,
}

impl PageSink<'_> {
    /// The hash of `page` (None if it is all zero), stored if new.
    fn store(&mut self, page: &[u8]) -> Result<Option<PageHash>, CheckpointWriteError> {
        if page == &ZERO_PAGE[..] {
            return Ok(None);
        }
        let h = hash_page(page);
        if self.pool.get(&h).is_none() && !self.pack.as_ref().is_some_and(|p| p.has(&h)) {
            let werr = |source| CheckpointWriteError::Write {
                path: self.backend.path_of(&pack_name(self.seq)),
                source,
            };
            if self.pack.is_none() {
                self.pack = Some(PackWriter::create(self.backend, self.seq).map_err(werr)?);
            }
            self.pack
                .as_mut()
                .expect("created")
                .add(h, page)
                .map_err(werr)?;
        }
        Ok(Some(h))
    }

    /// Commits the new pack, if any: (pages, bytes).
    fn finish(self) -> Result<(u64, u64), CheckpointWriteError> {
        let Some(pack) = self.pack else {
            return Ok((0, 0));
        };
        let (entries, size) =
            pack.finish(self.seq)
                .map_err(|source| CheckpointWriteError::Commit {
                    path: self.backend.path_of(&pack_name(self.seq)),
                    source,
                })?;
        self.pool.add(self.seq, &entries, size);
        Ok((entries.len() as u64, size))
    }
}

/// Collection stops on a manifest it cannot read.
fn gc_refused(id: u64, e: &ImageError) -> StoreError {
    StoreError::ReadDir {
        path: PathBuf::new(),
        source: std::io::Error::other(format!(
            "pages not collected: checkpoint {id} cannot be read, so what it names is unknown: {e}"
        )),
    }
}

/// Tests aim kills at collection: `PHANTOM_TEST_GC_PAUSE_MS` pauses
/// between its steps.
fn gc_pause() {
    if let Some(ms) = std::env::var("PHANTOM_TEST_GC_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The page table `old` with the pages in `changed` replaced (a `None`
/// hash removes the page: it is zero now), cut to `pages`: one linear merge
/// of two sorted lists.
fn merge_table(
    old: &[(u64, PageHash)],
    changed: &[(u64, Option<PageHash>)],
    pages: u64,
) -> PageTable {
    let mut out = Vec::with_capacity(old.len() + changed.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < changed.len() {
        let take_old = match (old.get(i), changed.get(j)) {
            (Some(o), Some(c)) => o.0 < c.0,
            (Some(_), None) => true,
            _ => false,
        };
        if take_old {
            out.push(old[i]);
            i += 1;
            continue;
        }
        let (page, hash) = changed[j];
        j += 1;
        // The last change of a page wins; an old entry for it is replaced.
        if changed.get(j).is_some_and(|c| c.0 == page) {
            continue;
        }
        if old.get(i).is_some_and(|o| o.0 == page) {
            i += 1;
        }
        if let Some(h) = hash {
            out.push((page, h));
        }
    }
    out.retain(|(p, _)| *p < pages);
    out
}

/// The images of `chain` (newest first) that hold memory `index`.
fn layers_of(chain: &[Arc<ImageFile>], index: u32) -> Vec<(Arc<ImageFile>, usize)> {
    chain
        .iter()
        .filter_map(|f| {
            f.toc
                .memories
                .binary_search_by_key(&index, |x| x.index)
                .ok()
                .map(|i| (f.clone(), i))
        })
        .collect()
}

/// Page tables by memory index, with each memory's size.
type Tables = BTreeMap<u32, (u64, PageTable)>;

/// One checkpoint file and what verifying it found.
#[derive(Debug)]
pub struct CheckpointListing {
    pub id: u64,
    pub path: PathBuf,
    pub info: Result<CheckpointInfo, ImageError>,
}

/// What `fsck` found.
#[derive(Debug)]
pub struct FsckReport {
    checked: usize,
    problems: Vec<FsckProblem>,
    usable: Vec<u64>,
    packs: usize,
}

impl FsckReport {
    /// No file failed verification and every checkpoint's chain is whole.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
    pub fn problems(&self) -> &[FsckProblem] {
        &self.problems
    }
    /// Checkpoint files examined.
    pub fn checked(&self) -> usize {
        self.checked
    }
    /// Checkpoints that can still be restored, newest first.
    pub fn usable(&self) -> &[u64] {
        &self.usable
    }
    /// Page packs examined.
    pub fn packs(&self) -> usize {
        self.packs
    }
}

/// One problem `fsck` found.
#[derive(Debug, Error)]
pub enum FsckProblem {
    #[error("checkpoint {id}: {error}")]
    Unreadable { id: u64, error: ImageError },
    #[error("checkpoint {id} cannot be restored: its parent checkpoint {parent} {why}")]
    BrokenChain { id: u64, parent: u64, why: String },
    #[error("page pack {}: {error}", path.display())]
    BadPack { path: PathBuf, error: String },
    #[error("checkpoint {id} cannot be restored: {why}")]
    MissingPages { id: u64, why: String },
}

impl CheckpointStore {
    /// Creates `dir` (and its parents) for a new process. Fails if it
    /// already holds checkpoints.
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        let store = Self::from_backend(Box::new(LocalDir::create(dir)?));
        if !store.scan()?.is_empty() {
            return Err(StoreError::NotEmpty {
                path: dir.to_path_buf(),
            });
        }
        store.backend.remove_stale_temps();
        Ok(store)
    }

    /// Opens an existing process directory and removes temporary files
    /// left by writers that died.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::with_backend(Box::new(LocalDir::open(dir)?)))
    }

    /// A store whose images live in `backend`. Like `open`, it removes
    /// temporaries left by writers that died.
    pub fn with_backend(backend: Box<dyn StoreBackend>) -> Self {
        let store = Self::from_backend(backend);
        store.backend.remove_stale_temps();
        store
    }

    fn from_backend(backend: Box<dyn StoreBackend>) -> Self {
        CheckpointStore {
            backend: Arc::from(backend),
            writing: Mutex::new(()),
            pool: Mutex::new(None),
            last_tables: Mutex::new(None),
            policy: Mutex::new(KeepPolicy::default()),
            removed_since_gc: Mutex::new(0),
            // `PHANTOM_IMAGE_FORMAT=1` writes format 1 (to compare the two
            // in benchmarks, or to hand images to an older build).
            write_version: Mutex::new(
                match std::env::var("PHANTOM_IMAGE_FORMAT").ok().as_deref() {
                    Some("1") => 1,
                    _ => crate::format::FORMAT_VERSION,
                },
            ),
        }
    }

    /// Sets which checkpoints retention keeps.
    pub fn set_policy(&self, policy: KeepPolicy) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// The keep policy: the one saved with the store (`save_policy`), else
    /// the one set on this handle (the default unless `set_policy`).
    pub fn policy(&self) -> KeepPolicy {
        use std::io::Read;
        let mut text = String::new();
        if let Ok(mut f) = self.backend.open(KEEP)
            && f.read_to_string(&mut text).is_ok()
            && let Some(p) = parse_policy(&text)
        {
            return p;
        }
        *self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Saves the keep policy with the store, so every writer (a running
    /// host included) applies it from its next checkpoint.
    pub fn save_policy(&self, policy: KeepPolicy) -> Result<(), StoreError> {
        use std::io::Write;
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let io_err = |source| StoreError::ReadDir {
            path: self.dir().to_path_buf(),
            source,
        };
        let _dir = self.backend.lock().map_err(io_err)?;
        let text = format!(
            "last={}\nhourly={}\ndaily={}\n",
            policy.last, policy.hourly, policy.daily
        );
        let mut temp = self.backend.create_temp(KEEP).map_err(io_err)?;
        temp.write_all(text.as_bytes()).map_err(io_err)?;
        temp.sync().map_err(io_err)?;
        temp.commit().map_err(io_err)?;
        self.set_policy(policy);
        Ok(())
    }

    /// The page pool, loaded on first use.
    fn pool(&self) -> Result<MutexGuard<'_, Option<Pool>>, std::io::Error> {
        let mut guard = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Pool::load(&*self.backend)?);
        }
        Ok(guard)
    }

    /// Forgets the loaded pool (another process may have changed packs).
    fn reload_pool(&self) {
        *self.pool.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Where the images live: a local store's directory (another backend's
    /// `location`).
    pub fn dir(&self) -> &Path {
        self.backend.location()
    }

    pub fn backend(&self) -> &dyn StoreBackend {
        &*self.backend
    }

    /// Where checkpoint `id` lives (whether or not it exists): its file in
    /// a local store (how another backend names it).
    pub fn checkpoint_path(&self, id: u64) -> PathBuf {
        self.backend.path_of(&checkpoint_name(id))
    }

    fn open_image(&self, id: u64) -> Result<ImageFile, ImageError> {
        let name = checkpoint_name(id);
        let path = self.backend.path_of(&name);
        let source = self.backend.open(&name).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        ImageFile::open(source, path, Some(id))
    }

    /// Ids of the checkpoint images present, oldest first.
    fn scan(&self) -> Result<Vec<u64>, StoreError> {
        let names = self.backend.list().map_err(|source| StoreError::ReadDir {
            path: self.dir().to_path_buf(),
            source,
        })?;
        let mut ids: Vec<u64> = names.iter().filter_map(|n| parse_name(n)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The newest checkpoint file's id, without verifying anything.
    pub fn latest_id(&self) -> Option<u64> {
        self.scan().ok()?.last().copied()
    }

    /// Writes and atomically commits one checkpoint (a version 2
    /// manifest): the pages it names that no pack holds yet go into one new
    /// pack, committed first (temporary, sync, rename, sync the directory),
    /// then the manifest the same way. A crash at any point leaves the
    /// previous checkpoints as they were (at worst an unreferenced pack,
    /// which collection removes). Then retention applies the keep policy.
    pub fn write(&self, ckpt: &NewCheckpoint) -> Result<CheckpointInfo, CheckpointWriteError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let dir_err = |source| CheckpointWriteError::Write {
            path: self.dir().to_path_buf(),
            source,
        };
        let _dir = self.backend.lock().map_err(dir_err)?;
        let ids = self.scan()?;
        if let Some(&latest) = ids.last()
            && ckpt.id <= latest
        {
            return Err(CheckpointWriteError::IdNotNewer {
                id: ckpt.id,
                latest,
            });
        }
        if let Some(parent) = ckpt.parent {
            if parent >= ckpt.id {
                return Err(CheckpointWriteError::ParentNotOlder {
                    id: ckpt.id,
                    parent,
                });
            }
            if ids.binary_search(&parent).is_err() {
                return Err(CheckpointWriteError::MissingParent { parent });
            }
            self.open_image(parent)
                .map_err(|source| CheckpointWriteError::BadParent { parent, source })?;
        }
        if *self.write_version.lock().unwrap_or_else(|e| e.into_inner()) == 1 {
            return self.write_v1(ckpt);
        }
        let plan = plan(ckpt)?;
        self.refresh_pool().map_err(dir_err)?;
        let mut pool_guard = self.pool().map_err(dir_err)?;
        let pool = pool_guard.as_mut().expect("loaded");
        let seq = pool.next_seq().map_err(dir_err)?;
        let mut sink = PageSink {
            pool,
            backend: &*self.backend,
            seq,
            pack: None,
        };
        let mut base = match ckpt.parent {
            Some(parent) => self.base_tables(parent, &mut sink)?,
            None => Tables::new(),
        };
        let mut tables = Tables::new();
        let mut buf = vec![0u8; READ_PAGES * PAGE_SIZE];
        for m in &plan.memories {
            let pages = page_count(m.size_bytes);
            let old: PageTable = base.remove(&m.index).map(|(_, t)| t).unwrap_or_default();
            // The pages named dirty, in page order (the plan's runs are
            // sorted and merged): the new hash, or None for a zero page.
            let mut changed: Vec<(u64, Option<PageHash>)> = Vec::new();
            for run in &m.runs {
                let mut page = run.first;
                let end = run.first + run.count;
                while page < end {
                    let n = (end - page).min(READ_PAGES as u64) as usize;
                    let offset = page * PAGE_SIZE as u64;
                    let avail = (m.size_bytes - offset).min((n * PAGE_SIZE) as u64) as usize;
                    let got = crate::image::read_full_at(m.source, &mut buf[..avail], offset)
                        .map_err(|source| CheckpointWriteError::ReadSource {
                            memory: m.index,
                            page,
                            source,
                        })?;
                    buf[got..n * PAGE_SIZE].fill(0);
                    for (i, bytes) in buf[..n * PAGE_SIZE].chunks_exact(PAGE_SIZE).enumerate() {
                        changed.push((page + i as u64, sink.store(bytes)?));
                    }
                    page += n as u64;
                }
            }
            tables.insert(m.index, (m.size_bytes, merge_table(&old, &changed, pages)));
        }
        let (new_pages, pack_bytes) = sink.finish()?;
        drop(pool_guard);
        let v2 = crate::write::V2Parts {
            tables: plan
                .memories
                .iter()
                .map(|m| {
                    let t = &tables[&m.index].1;
                    (t.len() as u64, encode_table(t))
                })
                .collect(),
            pack_bytes,
            new_pages,
        };
        let header = self.commit_image(ckpt.id, &plan, Some(&v2))?;
        *self.last_tables.lock().unwrap_or_else(|e| e.into_inner()) = Some((ckpt.id, tables));
        // The checkpoint is committed whatever happens here; what could not
        // be deleted is retried after the next one.
        let _ = self.retain_locked();
        Ok(header.info())
    }

    /// The page tables of checkpoint `id`, the base of a new checkpoint
    /// that names only its changed pages: read from a version 2 manifest,
    /// or, for a version 1 image, made by hashing its chain's pages (those
    /// no pack holds go into the new pack).
    fn base_tables(
        &self,
        id: u64,
        sink: &mut PageSink<'_>,
    ) -> Result<Tables, CheckpointWriteError> {
        if let Some((last, tables)) = self
            .last_tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            && last == id
        {
            return Ok(tables);
        }
        let bad = |source| CheckpointWriteError::BadParent { parent: id, source };
        let file = self.open_image(id).map_err(bad)?;
        let mut tables = Tables::new();
        if file.header.version >= 2 {
            for m in &file.toc.memories {
                tables.insert(m.index, (m.size_bytes, file.read_table(m).map_err(bad)?));
            }
            return Ok(tables);
        }
        let ids = self.scan()?;
        let chain = self
            .chain(id, &ids, &mut HashMap::new(), false)
            .map_err(|what| CheckpointWriteError::Invalid {
                what: format!("its parent checkpoint {id} is unusable: {what}"),
            })?;
        for m in chain[0].toc.memories.iter() {
            let memory = RestoredMemory {
                index: m.index,
                size_bytes: m.size_bytes,
                layers: layers_of(&chain, m.index),
                paged: None,
            };
            let read_err = |source| CheckpointWriteError::ReadSource {
                memory: m.index,
                page: 0,
                source,
            };
            let mut reader = memory.page_reader().map_err(read_err)?;
            let mut page = [0u8; PAGE_SIZE];
            let mut table = Vec::new();
            for p in 0..memory.page_count() {
                if reader.read_page(p, &mut page).map_err(read_err)?
                    && let Some(h) = sink.store(&page)?
                {
                    table.push((p, h));
                }
            }
            tables.insert(m.index, (m.size_bytes, table));
        }
        Ok(tables)
    }

    /// Reloads the pool if packs were added or removed by someone else.
    fn refresh_pool(&self) -> std::io::Result<()> {
        let mut present: Vec<u64> = self
            .backend
            .list()?
            .iter()
            .filter_map(|n| parse_pack_name(n))
            .collect();
        present.sort_unstable();
        let mut guard = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = guard.as_mut() {
            // Packs named past the bound are never used: they do not
            // decide what is new (one would make every refresh a reload).
            present.retain(|&s| s <= crate::pages::MAX_PACK_SEQ);
            let mut known: Vec<u64> = pool
                .packs
                .keys()
                .chain(pool.bad.keys())
                .copied()
                .filter(|&s| s <= crate::pages::MAX_PACK_SEQ)
                .collect();
            known.sort_unstable();
            let newest = known.last().copied();
            let (old, new) = present.split_at(present.partition_point(|&s| Some(s) <= newest));
            if old == known {
                // Only packs newer than every known one: read just those
                // (the lowest sequence number wins, so the result is a full
                // load's). Reloading all of them cost a migration's last
                // round 8 ms per 256 MiB.
                for &seq in new {
                    pool.read(&*self.backend, seq);
                }
            } else {
                *guard = None;
            }
        }
        Ok(())
    }

    /// Legacy retention of version 1 writes, after FULL checkpoint `full`
    /// committed: keep it and the newest older full checkpoint that
    /// verifies (with everything between), delete everything older. If no
    /// older full verifies, delete nothing.
    fn retain_chains(&self, full: u64) -> Result<(), StoreError> {
        let ids = self.scan()?;
        let keep_from = ids.iter().rev().filter(|&&id| id < full).find(|&&id| {
            self.open_image(id)
                .is_ok_and(|f| f.header.parent.is_none() && f.verify(false).is_ok())
        });
        let Some(&keep_from) = keep_from else {
            return Ok(());
        };
        // Newest first, so a crash part way leaves whole chains behind.
        let mut removed = false;
        for &id in ids.iter().rev().filter(|&&id| id < keep_from) {
            removed |= self.backend.remove(&checkpoint_name(id)).is_ok();
        }
        if removed {
            let _ = self.backend.sync_removals();
        }
        Ok(())
    }

    /// Writes a planned image (format 2 with `v2`, else format 1) under a
    /// temporary name, syncs it and commits it as checkpoint `id`.
    fn commit_image(
        &self,
        id: u64,
        plan: &crate::write::Plan<'_>,
        v2: Option<&crate::write::V2Parts>,
    ) -> Result<crate::format::Header, CheckpointWriteError> {
        let name = checkpoint_name(id);
        let path = self.backend.path_of(&name);
        let werr = |source| CheckpointWriteError::Write {
            path: path.clone(),
            source,
        };
        // On any error below, dropping the temporary removes it.
        let mut temp = self.backend.create_temp(&name).map_err(werr)?;
        let header = write_planned(&mut *temp, &path, plan, v2)?;
        temp.sync().map_err(werr)?;
        temp.commit()
            .map_err(|source| CheckpointWriteError::Commit {
                path: path.clone(),
                source,
            })?;
        Ok(header)
    }

    /// Writes checkpoint `ckpt` as a self-contained version 1 image.
    fn write_v1(&self, ckpt: &NewCheckpoint) -> Result<CheckpointInfo, CheckpointWriteError> {
        let plan = plan(ckpt)?;
        let header = self.commit_image(ckpt.id, &plan, None)?;
        if ckpt.parent.is_none() {
            let _ = self.retain_chains(ckpt.id);
        }
        Ok(header.info())
    }

    /// Which format `write` produces: 2 (the default: content-addressed
    /// pages) or 1 (self-contained FULL and DELTA images with the legacy
    /// retention of two chains; for tests of stores written by older
    /// builds).
    pub fn set_write_version(&self, version: u32) {
        *self.write_version.lock().unwrap_or_else(|e| e.into_inner()) = version.clamp(1, 2);
    }

    /// Retention by the keep policy: keeps the newest checkpoint, the last
    /// N, the newest of each recent hour and day, the pinned ones, and
    /// every file a kept version 1 delta builds on; deletes the rest
    /// (newest first), then collects pages no kept checkpoint names.
    pub fn retain(&self) -> Result<Vec<u64>, StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let _dir = self.backend.lock().map_err(|source| StoreError::ReadDir {
            path: self.dir().to_path_buf(),
            source,
        })?;
        self.retain_locked()
    }

    fn retain_locked(&self) -> Result<Vec<u64>, StoreError> {
        let ids = self.scan()?;
        let keep = self.kept(&ids)?;
        let mut removed = Vec::new();
        for &id in ids.iter().rev().filter(|id| !keep.contains(id)) {
            if self.backend.remove(&checkpoint_name(id)).is_ok() {
                removed.push(id);
            }
        }
        if !removed.is_empty() {
            let _ = self.backend.sync_removals();
            let mut pending = self
                .removed_since_gc
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *pending += removed.len() as u64;
            if *pending >= GC_AFTER_REMOVALS {
                *pending = 0;
                drop(pending);
                let _ = self.collect_locked();
            }
        }
        Ok(removed)
    }

    /// The ids the keep policy keeps among `ids`.
    fn kept(&self, ids: &[u64]) -> Result<BTreeSet<u64>, StoreError> {
        let policy = self.policy();
        let mut keep = BTreeSet::new();
        let Some(&newest) = ids.last() else {
            return Ok(keep);
        };
        keep.insert(newest);
        keep.extend(ids.iter().rev().take(policy.last as usize));
        keep.extend(
            self.pins()
                .into_iter()
                .filter(|id| ids.binary_search(id).is_ok()),
        );
        let headers: BTreeMap<u64, crate::format::Header> = ids
            .iter()
            .filter_map(|&id| self.open_image(id).ok().map(|f| (id, f.header)))
            .collect();
        let now = crate::now_unix_ns();
        for (period, count) in [
            (3_600_000_000_000u64, policy.hourly),
            (86_400_000_000_000, policy.daily),
        ] {
            let now_bucket = now / period;
            let mut seen = BTreeSet::new();
            for (&id, h) in headers.iter().rev() {
                let bucket = h.created_unix_ns / period;
                if bucket + u64::from(count) <= now_bucket || seen.len() >= count as usize {
                    continue;
                }
                if seen.insert(bucket) {
                    keep.insert(id);
                }
            }
        }
        // A kept version 1 delta needs its chain.
        let roots: Vec<u64> = keep.iter().copied().collect();
        for id in roots {
            let mut cur = headers.get(&id);
            while let Some(h) = cur {
                if h.version >= 2 {
                    break;
                }
                match h.parent {
                    Some(p) => {
                        keep.insert(p);
                        cur = headers.get(&p);
                    }
                    None => break,
                }
            }
        }
        Ok(keep)
    }

    /// The oldest checkpoint of the recovery window (the policy's last N):
    /// the journal must reach back to it.
    pub fn recovery_floor(&self) -> Option<u64> {
        let ids = self.scan().ok()?;
        let n = (self.policy().last.max(1) as usize).min(ids.len());
        ids.len().checked_sub(n).and_then(|k| ids.get(k)).copied()
    }

    /// The pinned checkpoint ids.
    pub fn pins(&self) -> BTreeSet<u64> {
        use std::io::Read;
        let mut text = String::new();
        match self.backend.open(PINS) {
            Ok(mut f) => {
                if f.read_to_string(&mut text).is_err() {
                    return BTreeSet::new();
                }
            }
            Err(_) => return BTreeSet::new(),
        }
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Pins (or unpins) checkpoint `id`: retention keeps it until unpinned.
    /// Pinning one that does not exist (or whose chain is broken) fails.
    pub fn pin(&self, id: u64, pinned: bool) -> Result<BTreeSet<u64>, RestoreError> {
        use std::io::Write;
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let io_err = |source| {
            RestoreError::Store(StoreError::ReadDir {
                path: self.dir().to_path_buf(),
                source,
            })
        };
        let _dir = self.backend.lock().map_err(io_err)?;
        let mut pins = self.pins();
        if pinned {
            self.usable_chain_locked(Some(id))?;
            pins.insert(id);
        } else {
            pins.remove(&id);
        }
        let text: String = pins.iter().map(|id| format!("{id}\n")).collect();
        let mut temp = self.backend.create_temp(PINS).map_err(io_err)?;
        temp.write_all(text.as_bytes()).map_err(io_err)?;
        temp.sync().map_err(io_err)?;
        temp.commit().map_err(io_err)?;
        Ok(pins)
    }

    /// Collects pages no checkpoint names: packs with nothing referenced
    /// are deleted; packs mostly unreferenced have their referenced pages
    /// copied into one new pack, committed before they are deleted. A crash
    /// at any point loses no referenced page (a page is deleted only after
    /// a durable copy exists, and duplicates are collected next time).
    pub fn collect_garbage(&self) -> Result<GcReport, StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let _dir = self.backend.lock().map_err(|source| StoreError::ReadDir {
            path: self.dir().to_path_buf(),
            source,
        })?;
        self.collect_locked()
    }

    fn collect_locked(&self) -> Result<GcReport, StoreError> {
        let read_err = |source| StoreError::ReadDir {
            path: self.dir().to_path_buf(),
            source,
        };
        self.reload_pool();
        let mut guard = self.pool().map_err(read_err)?;
        let pool = guard.as_mut().expect("loaded");
        let mut report = GcReport {
            bytes_before: pool.packs.values().map(|(_, size)| size).sum(),
            ..GcReport::default()
        };
        // Every page some manifest names. A manifest that cannot be read
        // stops collection: what it names is unknown.
        let mut referenced = crate::pages::PageSet::default();
        for id in self.scan()? {
            let file = self.open_image(id).map_err(|e| gc_refused(id, &e))?;
            if file.header.version < 2 {
                continue;
            }
            for m in &file.toc.memories {
                let table = file.read_table(m).map_err(|e| gc_refused(id, &e))?;
                referenced.extend(table.into_iter().map(|(_, h)| h));
            }
        }
        report.referenced_pages = referenced.len() as u64;
        let mut dead_packs = Vec::new();
        let mut sparse = Vec::new();
        for (&seq, &(pages, _)) in &pool.packs {
            let entries = self.pack_entries(seq).map_err(read_err)?;
            let live = entries
                .iter()
                .filter(|e| {
                    referenced.contains(&e.hash) && pool.get(&e.hash).is_some_and(|l| l.pack == seq)
                })
                .count() as u64;
            if live == 0 {
                dead_packs.push(seq);
                report.pages_freed += pages;
            } else if live * 2 < pages {
                // Copied in file order (the index is in hash order).
                let mut entries = entries;
                entries.sort_unstable_by_key(|e| e.offset);
                sparse.push((seq, entries));
                report.pages_freed += pages - live;
            }
        }
        gc_pause();
        if !sparse.is_empty() {
            let seq = pool.next_seq().map_err(read_err)?;
            let mut writer = PackWriter::create(&*self.backend, seq).map_err(read_err)?;
            let mut reader = RecordReader::new(self.backend.clone()).map_err(read_err)?;
            for (old, entries) in &sparse {
                for e in entries {
                    if referenced.contains(&e.hash)
                        && pool.get(&e.hash).is_some_and(|l| l.pack == *old)
                    {
                        let loc = pool.get(&e.hash).expect("checked");
                        let bytes = reader.read_record(loc).map_err(read_err)?.to_vec();
                        writer.add_record(e.hash, e.enc, &bytes).map_err(read_err)?;
                    }
                }
            }
            // Durable before anything it copies is deleted.
            let (entries, size) = writer.finish(seq).map_err(read_err)?;
            gc_pause();
            // The copies become where those pages are read.
            for e in &entries {
                if let Some(l) = pool.map.get_mut(&e.hash) {
                    *l = crate::pages::PageLoc {
                        pack: seq,
                        offset: e.offset,
                        len: e.len,
                        enc: e.enc,
                    };
                }
            }
            pool.packs.insert(seq, (entries.len() as u64, size));
            report.packs_compacted = sparse.len() as u64;
            dead_packs.extend(sparse.iter().map(|(s, _)| *s));
        }
        for seq in &dead_packs {
            gc_pause();
            if self.backend.remove(&pack_name(*seq)).is_ok() {
                pool.packs.remove(seq);
                report.packs_deleted += 1;
            }
        }
        if !dead_packs.is_empty() {
            let _ = self.backend.sync_removals();
        }
        report.packs_deleted -= report.packs_compacted.min(report.packs_deleted);
        drop(guard);
        // Locations changed: load them afresh next time.
        self.reload_pool();
        let guard = self.pool().map_err(read_err)?;
        report.bytes_after = guard
            .as_ref()
            .map_or(0, |p| p.packs.values().map(|(_, s)| s).sum());
        Ok(report)
    }

    /// The index entries of pack `seq`.
    fn pack_entries(&self, seq: u64) -> std::io::Result<Vec<crate::pages::PackEntry>> {
        crate::pages::read_pack(self.backend.open(&pack_name(seq))?).map(|(_, e, _)| e)
    }

    /// Resolves the pages of a version 2 image to their records; says which
    /// page no readable pack holds.
    fn resolve(&self, file: &ImageFile) -> Result<Vec<Arc<PagedPages>>, String> {
        let mut tables = Vec::with_capacity(file.toc.memories.len());
        for m in &file.toc.memories {
            tables.push(file.read_table(m).map_err(|e| e.to_string())?);
        }
        let guard = self
            .pool()
            .map_err(|e| format!("cannot read its page packs: {e}"))?;
        let pool = guard.as_ref().expect("loaded");
        let mut out = Vec::with_capacity(tables.len());
        for (m, table) in file.toc.memories.iter().zip(tables) {
            let mut entries = Vec::with_capacity(table.len());
            for (page, hash) in table {
                let Some(loc) = pool.get(&hash) else {
                    return Err(format!(
                        "page {page} of memory {} (content {}) is in no readable page pack{}",
                        m.index,
                        hex(&hash),
                        if pool.bad.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (unreadable: {})",
                                pool.bad
                                    .iter()
                                    .map(|(s, why)| format!("{}: {why}", pack_name(*s)))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            )
                        }
                    ));
                };
                entries.push((page, hash, loc));
            }
            out.push(Arc::new(PagedPages {
                entries,
                backend: self.backend.clone(),
            }));
        }
        Ok(out)
    }

    /// The files a copy of the checkpoints `ids` needs: each image (for a
    /// version 1 chain, pass the whole chain) and, for version 2 images,
    /// every pack holding a page they name.
    pub fn files_for(&self, ids: &[u64]) -> Result<Vec<String>, RestoreError> {
        self.files_of(ids, &mut HashMap::new())
    }

    /// `usable_chain(Some(id))` and `files_for` of that chain in one pass:
    /// each file is opened, verified and its page table resolved once
    /// (a migration's last round, which the process waits for, did all of
    /// it twice).
    pub fn usable_chain_files(&self, id: u64) -> Result<(Vec<u64>, Vec<String>), RestoreError> {
        let _shared = self.backend.lock_shared().map_err(|source| {
            RestoreError::Store(StoreError::ReadDir {
                path: self.dir().to_path_buf(),
                source,
            })
        })?;
        self.refresh_pool().map_err(|source| {
            RestoreError::Store(StoreError::ReadDir {
                path: self.dir().to_path_buf(),
                source,
            })
        })?;
        let ids = self.scan()?;
        if ids.binary_search(&id).is_err() {
            return Err(RestoreError::NoneUsable {
                dir: self.dir().to_path_buf(),
                reasons: vec![(id, "there is no such checkpoint".into())],
            });
        }
        let mut verified = HashMap::new();
        let chain =
            self.chain(id, &ids, &mut verified, false)
                .map_err(|why| RestoreError::NoneUsable {
                    dir: self.dir().to_path_buf(),
                    reasons: vec![(id, why)],
                })?;
        let chain: Vec<u64> = chain.iter().rev().map(|f| f.header.id).collect();
        // `files_of` resolves the manifest's pages: the check `chain` skipped.
        let files = self.files_of(&chain, &mut verified)?;
        Ok((chain, files))
    }

    fn files_of(
        &self,
        ids: &[u64],
        opened: &mut HashMap<u64, Result<Arc<ImageFile>, String>>,
    ) -> Result<Vec<String>, RestoreError> {
        let mut names = Vec::new();
        let mut packs = BTreeSet::new();
        for &id in ids {
            names.push(checkpoint_name(id));
            let file = opened
                .entry(id)
                .or_insert_with(|| self.open_image(id).map(Arc::new).map_err(|e| e.to_string()))
                .clone()
                .map_err(|why| RestoreError::NoneUsable {
                    dir: self.dir().to_path_buf(),
                    reasons: vec![(id, why)],
                })?;
            if file.header.version >= 2 {
                let paged = self
                    .resolve(&file)
                    .map_err(|why| RestoreError::NoneUsable {
                        dir: self.dir().to_path_buf(),
                        reasons: vec![(id, why)],
                    })?;
                for p in paged {
                    packs.extend(p.entries.iter().map(|e| e.2.pack));
                }
            }
        }
        names.extend(packs.into_iter().map(pack_name));
        Ok(names)
    }

    /// What checkpoint file `id` holds, once verified (the `info` of its
    /// `list` row, without reading every other file).
    pub fn info(&self, id: u64) -> Result<CheckpointInfo, ImageError> {
        let f = self.open_image(id)?;
        f.verify(false)?;
        Ok(f.info())
    }

    /// Every checkpoint file, newest first, each fully verified
    /// (checksums of header, table of contents, sections and page blocks).
    pub fn list(&self) -> Result<Vec<CheckpointListing>, StoreError> {
        Ok(self
            .scan()?
            .into_iter()
            .rev()
            .map(|id| {
                let path = self.checkpoint_path(id);
                let info = self
                    .open_image(id)
                    .and_then(|f| f.verify(false).map(|()| f.info()));
                CheckpointListing { id, path, info }
            })
            .collect())
    }

    /// Loads the newest checkpoint whose whole chain (back to its full
    /// base) verifies, and says which newer ones were skipped and why:
    /// `restore_newest` accepting every candidate.
    pub fn load_latest(&self) -> Result<LoadedCheckpoint, RestoreError> {
        self.restore_with(|_| Ok(())).map(|(_, loaded)| loaded)
    }

    /// Tries checkpoints newest first; each whose whole chain verifies is
    /// handed to `accept`; the first it accepts wins. A refusal
    /// (`Err(reason)`) is recorded in `skipped` like a corrupt file and the
    /// next older candidate is tried. `accept` can keep what it needs of
    /// the candidate in its value (`RestoredMemory` clones share the
    /// images).
    pub fn restore_newest<R>(
        &self,
        accept: impl FnMut(&LoadedCheckpoint) -> Result<R, String>,
    ) -> Result<Restored<R>, RestoreError> {
        self.restore_with(accept).map(|(value, loaded)| Restored {
            value,
            info: loaded.info,
            chain_len: loaded.chain_len,
            skipped: loaded.skipped,
        })
    }

    /// The fallback loop behind `load_latest` and `restore_newest`: the
    /// accepted value and candidate, its `skipped` filled in.
    fn restore_with<R>(
        &self,
        mut accept: impl FnMut(&LoadedCheckpoint) -> Result<R, String>,
    ) -> Result<(R, LoadedCheckpoint), RestoreError> {
        // Collection in another process waits until the candidates are
        // chosen (a page it moves meanwhile is found again when read).
        let _shared = self.backend.lock_shared().map_err(|source| {
            RestoreError::Store(StoreError::ReadDir {
                path: self.dir().to_path_buf(),
                source,
            })
        })?;
        self.refresh_pool().map_err(|source| {
            RestoreError::Store(StoreError::ReadDir {
                path: self.dir().to_path_buf(),
                source,
            })
        })?;
        let ids = self.scan()?;
        if ids.is_empty() {
            return Err(RestoreError::NoCheckpoints {
                dir: self.dir().to_path_buf(),
            });
        }
        let mut verified = HashMap::new();
        let mut skipped = Vec::new();
        for &id in ids.iter().rev() {
            // Format 2 pages are resolved below, once.
            let chain = match self.chain(id, &ids, &mut verified, false) {
                Ok(chain) => chain,
                Err(why) => {
                    skipped.push((id, why));
                    continue;
                }
            };
            let newest = &chain[0];
            let sections = match newest.read_sections() {
                Ok(s) => s,
                Err(e) => {
                    skipped.push((id, e.to_string()));
                    continue;
                }
            };
            let memories = if newest.header.version >= 2 {
                match self.resolve(newest) {
                    Ok(paged) => newest
                        .toc
                        .memories
                        .iter()
                        .zip(paged)
                        .map(|(m, p)| RestoredMemory {
                            index: m.index,
                            size_bytes: m.size_bytes,
                            layers: Vec::new(),
                            paged: Some(p),
                        })
                        .collect(),
                    Err(why) => {
                        skipped.push((id, why));
                        continue;
                    }
                }
            } else {
                newest
                    .toc
                    .memories
                    .iter()
                    .map(|m| RestoredMemory {
                        index: m.index,
                        size_bytes: m.size_bytes,
                        layers: layers_of(&chain, m.index),
                        paged: None,
                    })
                    .collect()
            };
            // `accept` sees what was skipped so far.
            let mut loaded = LoadedCheckpoint {
                info: newest.info(),
                sections,
                memories,
                chain_len: chain.len(),
                skipped: std::mem::take(&mut skipped),
            };
            match accept(&loaded) {
                Ok(value) => return Ok((value, loaded)),
                Err(why) => {
                    skipped = std::mem::take(&mut loaded.skipped);
                    skipped.push((id, why));
                }
            }
        }
        Err(RestoreError::NoneUsable {
            dir: self.dir().to_path_buf(),
            reasons: skipped,
        })
    }

    /// Ids of the checkpoint files present, oldest first (nothing verified).
    pub fn ids(&self) -> Result<Vec<u64>, StoreError> {
        self.scan()
    }

    /// The state sections of checkpoint `id` alone (its header, table of
    /// contents and sections verified; its pages and chain not read).
    pub fn sections_of(&self, id: u64) -> Result<BTreeMap<String, Vec<u8>>, ImageError> {
        self.open_image(id)?.read_sections()
    }

    /// The chain of checkpoint `at` (or of the newest checkpoint whose chain
    /// verifies), oldest first: the ids of the files a copy of it needs,
    /// every one verified (checksums of header, table of contents,
    /// sections and blocks).
    pub fn usable_chain(&self, at: Option<u64>) -> Result<Vec<u64>, RestoreError> {
        let _shared = self.backend.lock_shared().map_err(|source| {
            RestoreError::Store(StoreError::ReadDir {
                path: self.dir().to_path_buf(),
                source,
            })
        })?;
        self.usable_chain_locked(at)
    }

    /// `usable_chain` by a caller holding the store's lock.
    fn usable_chain_locked(&self, at: Option<u64>) -> Result<Vec<u64>, RestoreError> {
        self.refresh_pool().map_err(|source| {
            RestoreError::Store(StoreError::ReadDir {
                path: self.dir().to_path_buf(),
                source,
            })
        })?;
        let ids = self.scan()?;
        let mut verified = HashMap::new();
        let mut skipped = Vec::new();
        let candidates: Vec<u64> = match at {
            Some(id) if ids.binary_search(&id).is_ok() => vec![id],
            Some(id) => {
                return Err(RestoreError::NoneUsable {
                    dir: self.dir().to_path_buf(),
                    reasons: vec![(id, "there is no such checkpoint".into())],
                });
            }
            None => ids.iter().rev().copied().collect(),
        };
        if candidates.is_empty() {
            return Err(RestoreError::NoCheckpoints {
                dir: self.dir().to_path_buf(),
            });
        }
        for id in candidates {
            match self.chain(id, &ids, &mut verified, true) {
                Ok(chain) => {
                    return Ok(chain.iter().rev().map(|f| f.header.id).collect());
                }
                Err(why) => skipped.push((id, why)),
            }
        }
        Err(RestoreError::NoneUsable {
            dir: self.dir().to_path_buf(),
            reasons: skipped,
        })
    }

    /// Opens checkpoint file `id` as raw bytes (for copying it whole) with
    /// its length.
    pub fn open_raw(&self, id: u64) -> std::io::Result<(Box<dyn crate::ImageSource>, u64)> {
        use std::io::{Seek, SeekFrom};
        let mut source = self.backend.open(&checkpoint_name(id))?;
        let len = source.seek(SeekFrom::End(0))?;
        source.seek(SeekFrom::Start(0))?;
        Ok((source, len))
    }

    /// The file name of checkpoint `id` (`ckpt-<id>.phi`).
    pub fn file_name(id: u64) -> String {
        checkpoint_name(id)
    }

    /// The checkpoint id a file name names, if it is a checkpoint's name.
    pub fn id_of_name(name: &str) -> Option<u64> {
        parse_name(name)
    }

    /// The state sections of the newest restorable checkpoint.
    pub fn latest_sections(
        &self,
    ) -> Result<(CheckpointInfo, BTreeMap<String, Vec<u8>>), RestoreError> {
        self.load_latest().map(|l| (l.info, l.sections))
    }

    /// The chain of `id`, newest first, every file verified; or why not.
    fn chain(
        &self,
        id: u64,
        ids: &[u64],
        verified: &mut HashMap<u64, Result<Arc<ImageFile>, String>>,
        check_pages: bool,
    ) -> Result<Vec<Arc<ImageFile>>, String> {
        let mut chain = Vec::new();
        let mut cur = id;
        loop {
            let file = verified
                .entry(cur)
                .or_insert_with(|| {
                    self.open_image(cur)
                        .and_then(|f| f.verify(false).map(|()| Arc::new(f)))
                        .map_err(|e| e.to_string())
                })
                .clone()
                .map_err(|why| {
                    if cur == id {
                        why
                    } else {
                        format!("it builds on checkpoint {cur}, which is unusable: {why}")
                    }
                })?;
            let parent = file.header.parent;
            let version = file.header.version;
            if version >= 2 {
                // A manifest stands alone: its pages must all be in packs.
                if chain.is_empty() && check_pages {
                    self.resolve(&file)?;
                }
                chain.push(file);
                return Ok(chain);
            }
            chain.push(file);
            match parent {
                None => return Ok(chain),
                Some(p) if ids.binary_search(&p).is_ok() => cur = p,
                Some(p) => return Err(format!("it builds on checkpoint {p}, which is missing")),
            }
        }
    }

    /// Verifies every file deeply: every image (checksums, decompression,
    /// page tables), every pack (header, index, and every page record
    /// against its hash), every chain and every manifest's pages. Says
    /// exactly what is damaged and which checkpoints are still usable.
    pub fn fsck(&self) -> Result<FsckReport, StoreError> {
        let _shared = self
            .backend
            .lock_shared()
            .map_err(|source| StoreError::ReadDir {
                path: self.dir().to_path_buf(),
                source,
            })?;
        let ids = self.scan()?;
        let mut problems = Vec::new();
        self.reload_pool();
        let read_err = |source| StoreError::ReadDir {
            path: self.dir().to_path_buf(),
            source,
        };
        let (bad_packs, packs, pool_packs): (Vec<(u64, String)>, usize, Vec<u64>) = {
            let guard = self.pool().map_err(read_err)?;
            let pool = guard.as_ref().expect("loaded");
            (
                pool.bad.iter().map(|(s, w)| (*s, w.clone())).collect(),
                pool.packs.len() + pool.bad.len(),
                pool.packs.keys().copied().collect(),
            )
        };
        for (seq, error) in bad_packs {
            problems.push(FsckProblem::BadPack {
                path: self.backend.path_of(&pack_name(seq)),
                error,
            });
        }
        // Every record of every readable pack, against its hash.
        let mut damaged = crate::pages::PageSet::default();
        let mut reader = RecordReader::new(self.backend.clone()).map_err(read_err)?;
        let mut page = [0u8; PAGE_SIZE];
        for seq in pool_packs {
            let mut entries = match self.pack_entries(seq) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(FsckProblem::BadPack {
                        path: self.backend.path_of(&pack_name(seq)),
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            // In file order: the index is sorted by hash, and reading the
            // records in that order made the reader fetch a fresh 256 KiB
            // span for every 4 KiB page (an import of 256 MiB copied 16 GiB
            // and ran at 114 MiB/s).
            entries.sort_unstable_by_key(|e| e.offset);
            let mut bad = Vec::new();
            for e in &entries {
                let loc = crate::pages::PageLoc {
                    pack: seq,
                    offset: e.offset,
                    len: e.len,
                    enc: e.enc,
                };
                if reader.read_page(&e.hash, loc, &mut page).is_err() {
                    damaged.insert(e.hash);
                    bad.push(e.offset);
                }
            }
            if !bad.is_empty() {
                bad.sort_unstable();
                problems.push(FsckProblem::BadPack {
                    path: self.backend.path_of(&pack_name(seq)),
                    error: format!(
                        "{} of its {} page records do not match their hashes (at offsets {})",
                        bad.len(),
                        entries.len(),
                        bad.iter()
                            .take(8)
                            .map(|o| o.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let mut parents = HashMap::new();
        let mut good_v2 = BTreeSet::new();
        for &id in &ids {
            let file = match self.open_image(id).and_then(|f| f.verify(true).map(|()| f)) {
                Ok(f) => f,
                Err(error) => {
                    problems.push(FsckProblem::Unreadable { id, error });
                    continue;
                }
            };
            if file.header.version < 2 {
                parents.insert(id, file.header.parent);
                continue;
            }
            match self.resolve(&file) {
                Err(why) => problems.push(FsckProblem::MissingPages { id, why }),
                Ok(paged) => {
                    let hit = file.toc.memories.iter().zip(&paged).find_map(|(m, p)| {
                        let n = p.entries.iter().filter(|e| damaged.contains(&e.1)).count();
                        let first = p.entries.iter().find(|e| damaged.contains(&e.1))?;
                        Some((m.index, first.0, n))
                    });
                    match hit {
                        Some((memory, first, n)) => problems.push(FsckProblem::MissingPages {
                            id,
                            why: format!(
                                "{n} of its pages are damaged in their pack (the first: page {first} of memory {memory})"
                            ),
                        }),
                        None => {
                            good_v2.insert(id);
                        }
                    }
                }
            }
        }
        let mut usable: Vec<u64> = good_v2.iter().copied().collect();
        for (&id, parent) in &parents {
            let Some(p) = *parent else {
                usable.push(id);
                continue;
            };
            // Walk up until a full checkpoint or a break.
            let mut cur = Some(p);
            let mut whole = false;
            while let Some(c) = cur {
                if good_v2.contains(&c) {
                    whole = true;
                    break;
                }
                let state = if ids.binary_search(&c).is_err() {
                    "missing"
                } else if let Some(next) = parents.get(&c) {
                    cur = *next;
                    if cur.is_none() {
                        whole = true;
                    }
                    continue;
                } else {
                    "unusable"
                };
                let why = if c == p {
                    format!("is {state}")
                } else {
                    format!("needs checkpoint {c}, which is {state}")
                };
                problems.push(FsckProblem::BrokenChain { id, parent: p, why });
                break;
            }
            if whole {
                usable.push(id);
            }
        }
        usable.sort_unstable_by(|a, b| b.cmp(a));
        problems.sort_by_key(|p| match p {
            FsckProblem::Unreadable { id, .. }
            | FsckProblem::BrokenChain { id, .. }
            | FsckProblem::MissingPages { id, .. } => (1, std::cmp::Reverse(*id)),
            FsckProblem::BadPack { .. } => (0, std::cmp::Reverse(0)),
        });
        Ok(FsckReport {
            checked: ids.len(),
            problems,
            usable,
            packs,
        })
    }
}

/// The name of checkpoint `id`'s image.
fn checkpoint_name(id: u64) -> String {
    format!("{PREFIX}{id:0ID_DIGITS$}{SUFFIX}")
}

/// The id a checkpoint file name encodes, if it is one.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_a_table_replaces_adds_removes_and_cuts() {
        let h = |b: u8| [b; 16];
        let old = vec![(0, h(1)), (2, h(2)), (5, h(3)), (9, h(4))];
        let changed = vec![(1, Some(h(7))), (2, None), (5, Some(h(8))), (8, Some(h(9)))];
        assert_eq!(
            merge_table(&old, &changed, 9),
            vec![(0, h(1)), (1, h(7)), (5, h(8)), (8, h(9))]
        );
        assert_eq!(merge_table(&[], &changed, 100).len(), 3);
        assert_eq!(merge_table(&old, &[], 100), old);
    }

    #[test]
    fn names_round_trip() {
        let store = CheckpointStore::from_backend(Box::new(LocalDir::new("/x")));
        for id in [0, 1, 42, u64::MAX] {
            let path = store.checkpoint_path(id);
            assert_eq!(
                parse_name(path.file_name().unwrap().to_str().unwrap()),
                Some(id)
            );
        }
        for bad in [
            "ckpt-1.phi",
            "ckpt-0000000000000000000a.phi",
            "ckpt-00000000000000000001.phi.tmp",
            "x",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        assert_eq!(
            parse_name("ckpt-99999999999999999999.phi"),
            None,
            "overflows u64"
        );
    }
}
