//! Where image files live. A `StoreBackend` lists, opens, creates, commits
//! and removes named images; `CheckpointStore` does everything else (ids,
//! chains, retention) on top of it. `LocalDir` is one directory, with the
//! commit protocol of DESIGN.md ("Commit protocol").
//!
//! ```text
//!  CheckpointStore ── list, open, remove ──▶ dyn StoreBackend
//!        │ write                               ├─ LocalDir: a directory
//!        ▼                                     └─ (tests: a HashMap)
//!  create_temp(name) ──▶ TempImage ── sync ──▶ commit ──▶ visible as `name`
//!   local: .ckpt-<id>.<pid>.tmp,  (Write +    fsync       rename, fsync dir
//!          O_EXCL                  Seek)
//!  dropped uncommitted: removed; left by a crash: remove_stale_temps
//! ```

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::StoreError;
use crate::image::ImageSource;

/// Where a store's images live. Names are plain file names
/// (`ckpt-<id>.phi`); the store ignores names it does not know.
///
/// Crash safety rests on `TempImage::commit`: an image becomes visible
/// under its name only whole and durable, and until then the name keeps
/// what it held (the store never reuses a name).
pub trait StoreBackend: Send + Sync + fmt::Debug {
    /// How errors and listings name the store: a `LocalDir`'s directory.
    fn location(&self) -> &Path;

    /// How errors and listings name image `name`: a `LocalDir`'s file path.
    fn path_of(&self, name: &str) -> PathBuf {
        self.location().join(name)
    }

    /// The names present, in any order. Temporaries may be listed too (the
    /// store ignores what is not a checkpoint name).
    fn list(&self) -> io::Result<Vec<String>>;

    /// Opens image `name` for reading, from its first byte.
    fn open(&self, name: &str) -> io::Result<Box<dyn ImageSource>>;

    /// Creates an empty temporary object that `commit` will publish as
    /// `name`. It is not visible as `name` before; dropped uncommitted, it
    /// is removed.
    fn create_temp(&self, name: &str) -> io::Result<Box<dyn TempImage>>;

    /// Removes image `name`. The removal need not be durable until
    /// `sync_removals`.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Makes earlier removals durable (local: fsync the directory).
    fn sync_removals(&self) -> io::Result<()> {
        Ok(())
    }

    /// Removes temporaries whose writer is gone (it crashed). Errors are
    /// ignored: a temporary is never read, so one left behind is harmless.
    fn remove_stale_temps(&self);

    /// Excludes other processes sharing the store (writers, collection,
    /// pins) until the returned guard is dropped. Local: `flock` on the
    /// directory. Within one process the store's own mutex serialises.
    fn lock(&self) -> io::Result<Option<Box<dyn std::any::Any + Send>>> {
        Ok(None)
    }

    /// Like `lock`, shared: readers (restore, fsck, copies) exclude
    /// collection and writers, not each other.
    fn lock_shared(&self) -> io::Result<Option<Box<dyn std::any::Any + Send>>> {
        Ok(None)
    }
}

/// An image being written under a temporary name.
pub trait TempImage: Write + Seek + Send {
    /// Makes what was written durable (local: fsync the file).
    fn sync(&mut self) -> io::Result<()>;

    /// Publishes the image under its final name, atomically and durably
    /// (local: fsync the file if `sync` was not called since the last
    /// write, rename, fsync the directory). On error the final name holds
    /// either nothing or the whole image.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// Checkpoint files end in this; a temporary drops it.
const IMAGE_SUFFIX: &str = ".phi";
/// Temporary files are `.<name without .phi>.<writer pid>.tmp`, so
/// `.ckpt-<id>.<pid>.tmp`: hidden, and named after their writer so only
/// those whose writer is gone are removed.
const TEMP_PREFIXES: [&str; 4] = [".ckpt-", ".pack-", ".pins.", ".keep."];
const TEMP_SUFFIX: &str = ".tmp";
/// A temporary file this old is stale even if its writer's pid is alive
/// (pids are reused; no write takes this long).
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// A store backend that is one local directory.
#[derive(Clone, Debug)]
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    /// The directory `dir`, unchecked.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalDir { dir: dir.into() }
    }

    /// An existing directory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::Missing {
                path: dir.to_path_buf(),
            });
        }
        Ok(Self::new(dir))
    }

    /// Creates `dir` and its parents (it may exist), durably.
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(parent) = dir.parent() {
            // Make the new directory's entry durable; best effort, as
            // some filesystems refuse to sync directories.
            let _ = sync_dir(parent);
        }
        Ok(Self::new(dir))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn temp_path(&self, name: &str) -> PathBuf {
        let stem = name.strip_suffix(IMAGE_SUFFIX).unwrap_or(name);
        self.dir
            .join(format!(".{stem}.{}{TEMP_SUFFIX}", std::process::id()))
    }
}

impl StoreBackend for LocalDir {
    fn location(&self) -> &Path {
        &self.dir
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            // A name that is not UTF-8 is no checkpoint of ours.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn ImageSource>> {
        Ok(Box::new(File::open(self.dir.join(name))?))
    }

    fn create_temp(&self, name: &str) -> io::Result<Box<dyn TempImage>> {
        let temp = self.temp_path(name);
        // O_EXCL: never write into another writer's file.
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)?;
        Ok(Box::new(LocalTemp {
            file,
            temp,
            path: self.dir.join(name),
            dir: self.dir.clone(),
            synced: false,
            committed: false,
        }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))
    }

    fn sync_removals(&self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    fn lock(&self) -> io::Result<Option<Box<dyn std::any::Any + Send>>> {
        let dir = File::open(&self.dir)?;
        dir.lock()?;
        Ok(Some(Box::new(dir)))
    }

    fn lock_shared(&self) -> io::Result<Option<Box<dyn std::any::Any + Send>>> {
        let dir = File::open(&self.dir)?;
        dir.lock_shared()?;
        Ok(Some(Box::new(dir)))
    }

    fn remove_stale_temps(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(middle) = TEMP_PREFIXES
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
            else {
                continue;
            };
            let pid = middle
                .rsplit('.')
                .next()
                .and_then(|pid| pid.parse::<u32>().ok());
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

/// A temporary file of a `LocalDir`, removed if dropped uncommitted.
struct LocalTemp {
    file: File,
    temp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    /// Nothing was written since the last fsync.
    synced: bool,
    /// Renamed to `path`: nothing to remove on drop.
    committed: bool,
}

impl Write for LocalTemp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.synced = false;
        self.file.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.synced = false;
        self.file.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for LocalTemp {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl TempImage for LocalTemp {
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        self.synced = true;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        if !self.synced {
            self.sync()?;
        }
        // After the rename the name holds the whole, synced file; before
        // it, nothing. On failure the temporary is removed on drop.
        fs::rename(&self.temp, &self.path)?;
        self.committed = true;
        // The rename is durable only once the directory is synced; until
        // then a crash leaves either the old or the new state, both valid.
        sync_dir(&self.dir)
    }
}

impl Drop for LocalTemp {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
