//! `CheckpointStore`: one process directory of checkpoint files. Naming,
//! the commit protocol (temp file, fsync, rename, fsync the directory),
//! chain resolution with fallback, retention and fsck.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::error::{CheckpointWriteError, ImageError, RestoreError, StoreError};
use crate::image::ImageFile;
use crate::restore::{LoadedCheckpoint, RestoredMemory};
use crate::write::{plan, write_planned};
use crate::{CheckpointInfo, NewCheckpoint};

/// Checkpoint files are `ckpt-<id as 20 decimal digits>.phi`, so names sort
/// like ids.
const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".phi";
const ID_DIGITS: usize = 20;
/// Temporary files are `.ckpt-<id>.<writer pid>.tmp`: hidden, and named
/// after their writer so `open` removes only those whose writer is gone.
const TEMP_PREFIX: &str = ".ckpt-";
const TEMP_SUFFIX: &str = ".tmp";
/// A temporary file this old is stale even if its writer's pid is alive
/// (pids are reused; no write takes this long).
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The checkpoint files of one process directory.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    /// Serialises writers sharing this store, so ids and retention see a
    /// consistent directory.
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
        fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(parent) = dir.parent() {
            // Make the new directory's entry durable; best effort, as
            // some filesystems refuse to sync directories.
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
        let store = Self::at(dir);
        if !store.scan()?.is_empty() {
            return Err(StoreError::NotEmpty {
                path: dir.to_path_buf(),
            });
        }
        store.remove_stale_temps();
        Ok(store)
    }

    /// Opens an existing process directory and removes temporary files
    /// left by writers that died.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::Missing {
                path: dir.to_path_buf(),
            });
        }
        let store = Self::at(dir);
        store.remove_stale_temps();
        Ok(store)
    }

    fn at(dir: &Path) -> Self {
        CheckpointStore {
            dir: dir.to_path_buf(),
            writing: Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where checkpoint `id` lives (whether or not it exists).
    pub fn checkpoint_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{id:0ID_DIGITS$}{SUFFIX}"))
    }

    fn temp_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!(
            "{TEMP_PREFIX}{id:0ID_DIGITS$}.{}{TEMP_SUFFIX}",
            std::process::id()
        ))
    }

    fn open_image(&self, id: u64) -> Result<ImageFile, ImageError> {
        let path = self.checkpoint_path(id);
        let file = File::open(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        ImageFile::open(Box::new(file), path, Some(id))
    }

    /// Ids of the checkpoint files present, oldest first.
    fn scan(&self) -> Result<Vec<u64>, StoreError> {
        let rd = |source| StoreError::ReadDir {
            path: self.dir.clone(),
            source,
        };
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(rd)? {
            let entry = entry.map_err(rd)?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The newest checkpoint file's id, without verifying anything.
    pub fn latest_id(&self) -> Option<u64> {
        self.scan().ok()?.last().copied()
    }

    /// Writes and atomically commits one checkpoint: a temporary file in
    /// the same directory is written and synced, renamed to its final name,
    /// and the directory synced. A crash at any point leaves the previous
    /// checkpoints as they were. After a FULL checkpoint, chains older than
    /// the previous full one are deleted.
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
        let tmp = self.temp_path(ckpt.id);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| CheckpointWriteError::Write {
                path: tmp.clone(),
                source,
            })?;
        let mut file = file;
        let header = match write_planned(&mut file, &tmp, &plan).and_then(|h| {
            file.sync_all()
                .map_err(|source| CheckpointWriteError::Write {
                    path: tmp.clone(),
                    source,
                })?;
            Ok(h)
        }) {
            Ok(h) => h,
            Err(e) => {
                drop(file);
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        drop(file);
        let path = self.checkpoint_path(ckpt.id);
        if let Err(source) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(CheckpointWriteError::Commit { path, source });
        }
        // The rename is durable only once the directory is synced; until
        // then a crash leaves either the old or the new state, both valid.
        sync_dir(&self.dir).map_err(|source| CheckpointWriteError::Commit {
            path: path.clone(),
            source,
        })?;
        let info = header.info();
        if ckpt.parent.is_none() {
            // The checkpoint is committed whatever happens here; a file
            // that could not be deleted is retried after the next full one.
            let _ = self.retain(ckpt.id);
        }
        Ok(info)
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
            removed |= fs::remove_file(self.checkpoint_path(id)).is_ok();
        }
        if removed {
            let _ = sync_dir(&self.dir);
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
    /// base) verifies, and says which newer ones were skipped and why.
    pub fn load_latest(&self) -> Result<LoadedCheckpoint, RestoreError> {
        let ids = self.scan()?;
        if ids.is_empty() {
            return Err(RestoreError::NoCheckpoints {
                dir: self.dir.clone(),
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
            return Ok(LoadedCheckpoint {
                info: newest.info(),
                sections,
                memories,
                skipped,
            });
        }
        Err(RestoreError::NoneUsable {
            dir: self.dir.clone(),
            reasons: skipped,
        })
    }

    /// The state sections of the newest restorable checkpoint.
    pub fn latest_sections(
        &self,
    ) -> Result<(CheckpointInfo, std::collections::BTreeMap<String, Vec<u8>>), RestoreError> {
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

    /// Removes temporary files whose writer is gone. Errors are ignored:
    /// temporary files are never read, so one left behind is harmless.
    fn remove_stale_temps(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(middle) = name
                .strip_prefix(TEMP_PREFIX)
                .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
            else {
                continue;
            };
            let pid = middle
                .rsplit_once('.')
                .and_then(|(_, pid)| pid.parse::<u32>().ok());
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_TEMP_AGE);
            if old || !pid.is_some_and(writer_alive) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether a temporary file's writer may still be writing it.
fn writer_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    // Without /proc we cannot tell; keep the file until it is old.
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// The id a checkpoint file name encodes, if it is one.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let store = CheckpointStore::at(Path::new("/x"));
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
