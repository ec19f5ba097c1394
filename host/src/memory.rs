//! Linear memories backed by a memfd, with dirty-page tracking.
//!
//! ```text
//!   PhantomMemoryCreator (wasmtime::MemoryCreator, one per Engine)
//!        │ new_memory() during instantiation: takes the next prepared
//!        │ memfd from the InstantiationSlot (restore) or makes a new one
//!        ▼
//!   GuestMemory (wasmtime::LinearMemory) ──Arc──► MemoryCell ◄── Process
//!                                                  ├ memfd (the last checkpoint's bytes)
//!                                                  ├ private view (what the guest sees)
//!                                                  ├ shared view (the host writes the memfd)
//!                                                  ├ DirtyTracker
//!                                                  └ LazyFill (restored lazily: fills the memfd
//!                                                    on faults and in the background)
//! ```
//! `capture` runs at a quiescent point: it finds the dirty pages, copies them
//! into the memfd through the shared view and discards the private copies.
//! The memfd then holds exactly the checkpoint's memory, and the background
//! writer reads the dirty pages from it while the guest runs on.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use phantom_snapshots::PageRun;
use wasmtime::{LinearMemory, MemoryType};

use crate::lazy::{LazyFill, LazySource, LazyStats};
use crate::sys::{GuestMemory, MappedRegion, PAGE_SIZE};
use crate::tracker::{DirtyTracker, TrackerKind};

/// Address space reserved per memory when wasmtime does not ask for a
/// specific reservation: 4 GiB covers every 32-bit linear memory, so growth
/// never moves the base.
const DEFAULT_RESERVATION: usize = 4 << 30;

/// One linear memory, shared between wasmtime (which owns the
/// `LinearMemory`) and the process (which checkpoints it).
pub struct MemoryCell {
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

/// What one memory looked like at a capture.
pub struct CapturedMemory {
    /// Size in bytes.
    pub size_bytes: u64,
    /// Pages written since the previous capture (or all pages for a full
    /// capture).
    pub dirty: Vec<PageRun>,
    /// The memfd, holding exactly the captured bytes until the next capture.
    pub file: File,
}

impl MemoryCell {
    fn new(
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

    /// Creates a standalone memory of `size` bytes (tests and benchmarks).
    pub fn standalone(size: usize, reserve: usize, tracker: TrackerKind) -> io::Result<Self> {
        Self::new(new_memfd()?, size, reserve, None, tracker, None)
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave the mapping half-made in
        // a way later users could observe, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.lock().size
    }

    /// The tracking backend.
    pub fn tracker_kind(&self) -> TrackerKind {
        self.lock().tracker.kind()
    }

    /// How the lazy restore of this memory went so far (None: not restored
    /// lazily).
    pub fn lazy_stats(&self) -> Option<LazyStats> {
        self.lock().lazy.as_ref().map(|l| l.stats())
    }

    /// Why this lazily restored memory no longer holds its image, if it
    /// does not: a page could not be read, and reads as zero.
    pub fn lazy_error(&self) -> Option<String> {
        self.lock().lazy.as_ref().and_then(|l| l.error())
    }

    /// Waits until every page of a lazily restored memory is in its memfd.
    pub fn wait_filled(&self) -> io::Result<()> {
        match &self.lock().lazy {
            Some(l) => l.wait_filled(),
            None => Ok(()),
        }
    }

    /// Bytes of memory the memfd holds (holes excluded): shows how much of
    /// a lazily restored memory is filled.
    pub fn file_allocated_bytes(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.lock().file.metadata()?.blocks() * 512)
    }

    /// Finds the dirty pages and makes the memfd hold the current bytes.
    ///
    /// With `full`, reports every page as dirty (for a full image), after
    /// waiting for a lazy restore to fill the memfd. Must be called at a
    /// quiescent point.
    pub fn capture(&self, full: bool) -> io::Result<CapturedMemory> {
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
        Ok(CapturedMemory {
            size_bytes: inner.size as u64,
            dirty,
            file: inner.file.try_clone()?,
        })
    }

    /// Drops every private copy, so the memory reads what the memfd holds.
    /// Used after instantiating a restored process, whose data segments
    /// wasmtime wrote over the restored bytes.
    pub fn revert_to_file(&self) -> io::Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let pages = (inner.size / PAGE_SIZE) as u64;
        if pages > 0 {
            inner.private.discard(0, pages)?;
        }
        inner.tracker.reset(&inner.private, pages)
    }

    /// Runs `f` on the guest-visible bytes (tests, benchmarks, differential
    /// checks). Must be called at a quiescent point.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        let inner = self.lock();
        let pages = (inner.size / PAGE_SIZE) as u64;
        Ok(f(inner.private.pages(0, pages)?))
    }

    /// Runs `f` on the guest-visible bytes, writable: tests and benchmarks
    /// play the guest with it.
    pub fn with_bytes_mut<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
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
fn fill_eagerly(mut reader: phantom_snapshots::PageReader, file: &File) -> io::Result<()> {
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

/// A restored memory, ready to be mapped at instantiation.
pub struct PreparedMemory {
    /// The memfd holding the restored bytes.
    pub file: File,
    /// Size in bytes.
    pub size: usize,
    /// Fill the memfd on demand from this, instead of it being filled
    /// already.
    pub lazy: Option<LazySource>,
}

/// Collects the memories wasmtime creates while one process instantiates.
#[derive(Default)]
struct InstantiationSlot {
    prepared: VecDeque<PreparedMemory>,
    created: Vec<Arc<MemoryCell>>,
    tracker: Option<TrackerKind>,
}

/// The engine-wide `MemoryCreator`. Instantiation is serialised through it:
/// `begin` before instantiating a process, `finish` after.
#[derive(Default)]
pub struct PhantomMemoryCreator {
    slot: Mutex<Option<InstantiationSlot>>,
}

impl PhantomMemoryCreator {
    /// Prepares to instantiate one process whose memories are `prepared` (in
    /// creation order; empty for a new process).
    pub fn begin(&self, prepared: Vec<PreparedMemory>, tracker: TrackerKind) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(InstantiationSlot {
            prepared: prepared.into(),
            created: Vec::new(),
            tracker: Some(tracker),
        });
    }

    /// Returns the memories created since `begin`, in creation order.
    pub fn finish(&self) -> Result<Vec<Arc<MemoryCell>>, String> {
        let slot = self
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        if !slot.prepared.is_empty() {
            return Err(format!(
                "the image has {} more memories than the component creates",
                slot.prepared.len()
            ));
        }
        Ok(slot.created)
    }
}

impl PhantomMemoryCreator {
    /// `MemoryCreator::new_memory` (the unsafe trait impl is in `sys.rs`):
    /// the next prepared memfd, or a new one, as a `GuestMemory`.
    pub(crate) fn create_memory(
        &self,
        ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if ty.is_shared() || ty.is_64() {
            return Err("shared and 64-bit memories are not supported by Phantom yet".into());
        }
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = slot.as_mut() else {
            return Err("memory created outside a Phantom instantiation".into());
        };
        let reserve = reserved_size_in_bytes
            .unwrap_or(DEFAULT_RESERVATION)
            .max(minimum);
        let (file, size, lazy) = match slot.prepared.pop_front() {
            Some(p) => {
                if p.size < minimum || maximum.is_some_and(|m| p.size > m) {
                    return Err(format!(
                        "the image's memory of {} bytes does not fit the component's memory type",
                        p.size
                    ));
                }
                (p.file, p.size, p.lazy)
            }
            None => (new_memfd().map_err(|e| e.to_string())?, minimum, None),
        };
        let tracker = slot.tracker.unwrap_or(TrackerKind::Pagemap);
        let cell = Arc::new(
            MemoryCell::new(
                file,
                size,
                reserve + guard_size_in_bytes,
                maximum.or(Some(reserve)),
                tracker,
                lazy,
            )
            .map_err(|e| format!("cannot create a memfd-backed memory: {e}"))?,
        );
        slot.created.push(cell.clone());
        let base = cell.lock().private.base();
        Ok(Box::new(GuestMemory::new(cell, base, reserve)))
    }
}
