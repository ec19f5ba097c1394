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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::backend::{LocalDir, StoreBackend};
use crate::error::{CheckpointWriteError, ImageError, RestoreError, StoreError};
use crate::image::ImageFile;
use crate::restore::{LoadedCheckpoint, Restored, RestoredMemory};
use crate::write::{plan, write_planned};
use crate::{CheckpointInfo, NewCheckpoint};

/// Checkpoint files are `ckpt-<id as 20 decimal digits>.phi`, so names sort
/// like ids.
const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".phi";
const ID_DIGITS: usize = 20;

/// The checkpoint images of one process.
#[derive(Debug)]
pub struct CheckpointStore {
    backend: Box<dyn StoreBackend>,
    /// Serialises writers sharing this store, so ids and retention see a
    /// consistent set of images.
    writing: Mutex<()>,
}

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
}

/// One problem `fsck` found.
#[derive(Debug, Error)]
pub enum FsckProblem {
    #[error("checkpoint {id}: {error}")]
    Unreadable { id: u64, error: ImageError },
    #[error("checkpoint {id} cannot be restored: its parent checkpoint {parent} {why}")]
    BrokenChain { id: u64, parent: u64, why: String },
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
            backend,
            writing: Mutex::new(()),
        }
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

    /// Writes and atomically commits one checkpoint: a temporary image is
    /// written and synced, then committed under its final name (local: a
    /// temporary file in the same directory, fsync, rename, fsync the
    /// directory). A crash at any point leaves the previous checkpoints as
    /// they were. After a FULL checkpoint, chains older than the previous
    /// full one are deleted.
    pub fn write(&self, ckpt: &NewCheckpoint) -> Result<CheckpointInfo, CheckpointWriteError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
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
        let plan = plan(ckpt)?;
        let name = checkpoint_name(ckpt.id);
        let path = self.backend.path_of(&name);
        let werr = |source| CheckpointWriteError::Write {
            path: path.clone(),
            source,
        };
        // On any error below, dropping the temporary removes it.
        let mut temp = self.backend.create_temp(&name).map_err(werr)?;
        let header = write_planned(&mut *temp, &path, &plan)?;
        temp.sync().map_err(werr)?;
        temp.commit()
            .map_err(|source| CheckpointWriteError::Commit {
                path: path.clone(),
                source,
            })?;
        if ckpt.parent.is_none() {
            // The checkpoint is committed whatever happens here; an image
            // that could not be deleted is retried after the next full one.
            let _ = self.retain(ckpt.id);
        }
        Ok(header.info())
    }

    /// Retention after FULL checkpoint `full` committed: keep it and the
    /// newest older full checkpoint that verifies (with everything between),
    /// delete everything older. If no older full verifies, delete nothing.
    fn retain(&self, full: u64) -> Result<(), StoreError> {
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
        let ids = self.scan()?;
        if ids.is_empty() {
            return Err(RestoreError::NoCheckpoints {
                dir: self.dir().to_path_buf(),
            });
        }
        let mut verified = HashMap::new();
        let mut skipped = Vec::new();
        for &id in ids.iter().rev() {
            let chain = match self.chain(id, &ids, &mut verified) {
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
            let memories = newest
                .toc
                .memories
                .iter()
                .map(|m| RestoredMemory {
                    index: m.index,
                    size_bytes: m.size_bytes,
                    layers: chain
                        .iter()
                        .filter_map(|f| {
                            f.toc
                                .memories
                                .binary_search_by_key(&m.index, |x| x.index)
                                .ok()
                                .map(|i| (f.clone(), i))
                        })
                        .collect(),
                })
                .collect();
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
            match self.chain(id, &ids, &mut verified) {
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
            chain.push(file);
            match parent {
                None => return Ok(chain),
                Some(p) if ids.binary_search(&p).is_ok() => cur = p,
                Some(p) => return Err(format!("it builds on checkpoint {p}, which is missing")),
            }
        }
    }

    /// Verifies every file deeply (checksums and decompression) and every
    /// chain.
    pub fn fsck(&self) -> Result<FsckReport, StoreError> {
        let ids = self.scan()?;
        let mut problems = Vec::new();
        let mut parents = HashMap::new();
        for &id in &ids {
            match self.open_image(id).and_then(|f| f.verify(true).map(|()| f)) {
                Ok(f) => {
                    parents.insert(id, f.header.parent);
                }
                Err(error) => problems.push(FsckProblem::Unreadable { id, error }),
            }
        }
        for (&id, parent) in &parents {
            let Some(p) = *parent else { continue };
            // Walk up until a full checkpoint or a break.
            let mut cur = Some(p);
            while let Some(c) = cur {
                let state = if ids.binary_search(&c).is_err() {
                    "missing"
                } else if let Some(next) = parents.get(&c) {
                    cur = *next;
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
        }
        problems.sort_by_key(|p| match p {
            FsckProblem::Unreadable { id, .. } | FsckProblem::BrokenChain { id, .. } => {
                std::cmp::Reverse(*id)
            }
        });
        Ok(FsckReport {
            checked: ids.len(),
            problems,
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
