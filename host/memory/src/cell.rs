//! One linear memory: a memfd, the guest's private view of it, the host's
//! shared view, its size and its dirty tracker.
//!
//! ```text
//!   MemoryCell ├ memfd (the last checkpoint's bytes)
//!              ├ private view (what the guest sees)
//!              ├ shared view (the host writes the memfd through it)
//!              ├ DirtyTracker
//!              └ LazyFill (restored lazily: fills the memfd on faults and
//!                in the background)
//! ```
//! `capture` runs at a quiescent point: it finds the dirty pages, copies them
//! into the memfd through the shared view and discards the private copies.
//! The memfd then holds exactly the checkpoint's memory, and the background
//! writer reads the dirty pages from it while the guest runs on.
//!
//! A cell is shared (`Arc`) between wasmtime's `GuestMemory` and the host's
//! `Memories`; it never leaves this crate, so only `Memories` (which asks for
//! proof of quiescence) and `StandaloneMemory` (which owns its cell alone)
//! can reach its bytes.

use std::fs::File;
use std::io;
use std::sync::{Mutex, MutexGuard};

use phantom_snapshots::{MemoryDelta, PageRun};

use crate::lazy::{LazyFill, LazySource, LazyStats};
use crate::sys::{MappedRegion, PAGE_SIZE};
use crate::tracker::{DirtyTracker, TrackerKind};

/// One linear memory, shared between wasmtime (which owns the
/// `LinearMemory`) and the process (which checkpoints it).
pub(crate) struct MemoryCell {
    inner: Mutex<MemoryInner>,
}

struct MemoryInner {
    /// The filler of a lazily restored memory (first, so its thread stops
    /// before the views are unmapped).
    lazy: Option<LazyFill>,
    /// Holds the bytes of the last checkpoint (plus zeroes past it).
    file: File,
    /// The guest's view: `MAP_PRIVATE` of `file`.
    private: MappedRegion,
    /// The host's writable view: `MAP_SHARED` of `file`.
    shared: MappedRegion,
    /// Accessible bytes.
    size: usize,
    /// Largest size the memory type allows, if any.
    maximum: Option<usize>,
    tracker: Box<dyn DirtyTracker>,
}

impl MemoryCell {
    pub(crate) fn new(
        file: File,
        size: usize,
        reserve: usize,
        maximum: Option<usize>,
        tracker: TrackerKind,
        lazy: Option<LazySource>,
    ) -> io::Result<Self> {
        if size > reserve {
            return Err(io::Error::other(format!(
                "memory of {size} bytes exceeds the {reserve}-byte reservation"
            )));
        }
        if (file.metadata()?.len() as usize) < size {
            file.set_len(size as u64)?;
        }
        let mut private = MappedRegion::reserve(reserve)?;
        private.map_file(&file, 0, size)?;
        let pages = (size / PAGE_SIZE) as u64;
        let lazy = match lazy {
            Some(source) => match source.uffd.register_missing(&private, 0, pages) {
                Ok(()) => Some(LazyFill::start(
                    source,
                    file.try_clone()?,
                    private.base() as u64,
                    pages,
                )?),
                // The kernel refused this mapping: fill it all now.
                Err(_) => {
                    fill_eagerly(source.reader, &file)?;
                    None
                }
            },
            None => None,
        };
        let mut shared = MappedRegion::reserve_shared(reserve)?;
        shared.map_file(&file, 0, size)?;
        let mut tracker = tracker.create()?;
        tracker.reset(&private, (size / PAGE_SIZE) as u64)?;
        Ok(Self {
            inner: Mutex::new(MemoryInner {
                lazy,
                file,
                private,
                shared,
                size,
                maximum,
                tracker,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave the mapping half-made in
        // a way later users could observe, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the guest's view starts (it never moves).
    pub(crate) fn base(&self) -> *mut u8 {
        self.lock().private.base()
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> usize {
        self.lock().size
    }

    /// The tracking backend.
    pub(crate) fn tracker_kind(&self) -> TrackerKind {
        self.lock().tracker.kind()
    }

    /// How the lazy restore of this memory went so far (None: not restored
    /// lazily).
    pub(crate) fn lazy_stats(&self) -> Option<LazyStats> {
        self.lock().lazy.as_ref().map(|l| l.stats())
    }

    /// Why this lazily restored memory no longer holds its image, if it
    /// does not: a page could not be read, and reads as zero.
    pub(crate) fn lazy_error(&self) -> Option<String> {
        self.lock().lazy.as_ref().and_then(|l| l.error())
    }

    /// Waits until every page of a lazily restored memory is in its memfd.
    pub(crate) fn wait_filled(&self) -> io::Result<()> {
        match &self.lock().lazy {
            Some(l) => l.wait_filled(),
            None => Ok(()),
        }
    }

    /// Bytes of memory the memfd holds (holes excluded): shows how much of
    /// a lazily restored memory is filled.
    pub(crate) fn file_allocated_bytes(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.lock().file.metadata()?.blocks() * 512)
    }

    /// Finds the dirty pages and makes the memfd hold the current bytes.
    ///
    /// With `full`, reports every page as dirty (for a full image), after
    /// waiting for a lazy restore to fill the memfd. Must be called at a
    /// quiescent point.
    pub(crate) fn capture(&self, index: u32, full: bool) -> io::Result<MemoryDelta> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Some(lazy) = &inner.lazy {
            if let Some(e) = lazy.error() {
                // The memory has zeroes where the image had bytes: never
                // make them a checkpoint.
                return Err(io::Error::other(format!(
                    "the memory was not restored correctly: {e}"
                )));
            }
            if full {
                // The writer reads every page from the memfd.
                lazy.wait_filled()?;
            }
        }
        let pages = (inner.size / PAGE_SIZE) as u64;
        let mut dirty = Vec::new();
        inner.tracker.collect(&inner.private, pages, &mut dirty)?;
        for run in &dirty {
            let from = inner.private.pages(run.first, run.count)?;
            inner
                .shared
                .pages_mut(run.first, run.count)?
                .copy_from_slice(from);
        }
        let runs: Vec<(u64, u64)> = dirty.iter().map(|r| (r.first, r.count)).collect();
        inner.private.discard_runs(&runs)?;
        inner.tracker.reset(&inner.private, pages)?;
        if full {
            dirty = vec![PageRun {
                first: 0,
                count: pages,
            }];
            dirty.retain(|r| r.count > 0);
        }
        Ok(MemoryDelta {
            index,
            size_bytes: inner.size as u64,
            dirty,
            source: inner.file.try_clone()?,
        })
    }

    /// Drops every private copy, so the memory reads what the memfd holds.
    /// Used after instantiating a restored process, whose data segments
    /// wasmtime wrote over the restored bytes.
    pub(crate) fn revert_to_file(&self) -> io::Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let pages = (inner.size / PAGE_SIZE) as u64;
        if pages > 0 {
            inner.private.discard(0, pages)?;
        }
        inner.tracker.reset(&inner.private, pages)
    }

    /// Runs `f` on the guest-visible bytes. The caller proves the memory is
    /// quiescent (`Memories` takes a `Quiescent`; `StandaloneMemory` owns
    /// its cell alone).
    pub(crate) fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        let inner = self.lock();
        let pages = (inner.size / PAGE_SIZE) as u64;
        Ok(f(inner.private.pages(0, pages)?))
    }

    /// Runs `f` on the guest-visible bytes, writable: `StandaloneMemory`
    /// plays the guest with it (tests and benchmarks).
    pub(crate) fn with_bytes_mut<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
        let mut inner = self.lock();
        let pages = (inner.size / PAGE_SIZE) as u64;
        Ok(f(inner.private.pages_mut(0, pages)?))
    }

    pub(crate) fn grow(&self, new_size: usize) -> io::Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if new_size <= inner.size {
            return Ok(());
        }
        if inner.maximum.is_some_and(|m| new_size > m) || new_size > inner.private.reserved() {
            return Err(io::Error::other(format!(
                "cannot grow memory to {new_size} bytes"
            )));
        }
        inner.file.set_len(new_size as u64)?;
        inner.private.map_file(&inner.file, inner.size, new_size)?;
        inner.shared.map_file(&inner.file, inner.size, new_size)?;
        inner.size = new_size;
        Ok(())
    }
}

/// Writes every page `reader` stores into `file` (the eager restore, for a
/// mapping the userfaultfd refused).
pub(crate) fn fill_eagerly(
    mut reader: Box<dyn crate::lazy::PageSource>,
    file: &File,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut page = [0u8; PAGE_SIZE];
    for p in 0..reader.page_count() {
        if reader.read_page(p, &mut page)? {
            file.write_all_at(&page, p * PAGE_SIZE as u64)?;
        }
    }
    Ok(())
}

/// Creates an empty memfd for a linear memory.
pub fn new_memfd() -> io::Result<File> {
    memfd::MemfdOptions::default()
        .close_on_exec(true)
        .create("phantom-memory")
        .map(|m| m.into_file())
        .map_err(|e| io::Error::other(e.to_string()))
}
