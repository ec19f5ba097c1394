//! The host's handle on a process's memories, and the proof it asks for
//! before anyone touches guest bytes.
//!
//! ```text
//!   Store<T> ──&mut──► Quiescent<'_>  (no guest code of that store can run
//!                          │           while the token lives)
//!                          ▼
//!   Memories::{capture, revert_to_file, copy_bytes, with_bytes}(&Quiescent, ..)
//!                          │ checks the token names the store the memories live in
//!                          ▼
//!                     MemoryCell (shared with wasmtime's GuestMemory)
//! ```
//! Guest code runs only through `&mut Store` (every call, every
//! instantiation). A `Quiescent` can only be made from `&mut Store<T>`, and
//! holds that borrow, so while it lives no call into that store is running on
//! any thread, and none can start. `Memories` records which store its cells
//! live in when `instantiate` creates them, and refuses a token of another
//! store. Reading guest bytes from another thread while a call runs is
//! therefore not expressible in safe code.
//!
//! `StandaloneMemory` is a memory no guest uses (benchmarks and tests play
//! the guest): it owns its cell alone, so `&mut self` is the proof.

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;

use phantom_snapshots::MemoryDelta;
use wasmtime::Store;

use crate::cell::{MemoryCell, new_memfd};
use crate::lazy::LazyStats;
use crate::tracker::TrackerKind;

/// Identifies a store while it lives: the address of its data, which wasmtime
/// keeps boxed (it does not move when the `Store` value moves). After a store
/// is dropped another may reuse the address; by then no guest of the old
/// store can run, so a token of the new one reading the old memories races
/// with nothing.
pub(crate) fn store_identity<T>(store: &Store<T>) -> usize {
    std::ptr::from_ref(store.data()).addr()
}

/// Proof that no guest code of one store runs while this token lives.
pub struct Quiescent<'a> {
    store: usize,
    _borrow: PhantomData<&'a mut ()>,
}

impl<'a> Quiescent<'a> {
    /// Borrows `store` exclusively for as long as the token lives.
    pub fn new<T>(store: &'a mut Store<T>) -> Self {
        Self {
            store: store_identity(store),
            _borrow: PhantomData,
        }
    }
}

/// The linear memories of one instance, in creation order.
pub struct Memories {
    cells: Vec<Arc<MemoryCell>>,
    store: usize,
}

impl Memories {
    pub(crate) fn new(cells: Vec<Arc<MemoryCell>>, store: usize) -> Self {
        Self { cells, store }
    }

    fn check(&self, q: &Quiescent<'_>) -> io::Result<()> {
        if q.store != self.store {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the quiescence token belongs to another store",
            ));
        }
        Ok(())
    }

    /// Number of memories.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the instance has no memory.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Size of each memory in bytes.
    pub fn sizes(&self) -> Vec<usize> {
        self.cells.iter().map(|c| c.size()).collect()
    }

    /// The tracking backend of each memory.
    pub fn tracker_kinds(&self) -> Vec<TrackerKind> {
        self.cells.iter().map(|c| c.tracker_kind()).collect()
    }

    /// The capture: per memory, finds the dirty pages (all pages with
    /// `full`), makes its memfd hold the current bytes and returns the
    /// delta the image store writes.
    pub fn capture(&self, q: &Quiescent<'_>, full: bool) -> io::Result<Vec<MemoryDelta>> {
        self.check(q)?;
        self.cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.capture(i as u32, full).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot capture memory {i}: {e}"))
                })
            })
            .collect()
    }

    /// Drops every private copy, so the memories read what their memfds
    /// hold: after instantiating a restored process, whose data segments
    /// wasmtime wrote over the restored bytes.
    pub fn revert_to_file(&self, q: &Quiescent<'_>) -> io::Result<()> {
        self.check(q)?;
        self.cells.iter().try_for_each(|c| c.revert_to_file())
    }

    /// Copies of every memory's bytes, for a reader that needs them after
    /// the guest runs again (tests, differential checks).
    pub fn copy_bytes(&self, q: &Quiescent<'_>) -> io::Result<Vec<Vec<u8>>> {
        self.check(q)?;
        self.cells
            .iter()
            .map(|c| c.with_bytes(|b| b.to_vec()))
            .collect()
    }

    /// Runs `f` on memory `index`'s bytes.
    pub fn with_bytes<R>(
        &self,
        q: &Quiescent<'_>,
        index: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<R> {
        self.check(q)?;
        let cell = self.cells.get(index).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no memory {index}"))
        })?;
        cell.with_bytes(f)
    }

    /// How each memory's lazy restore went so far (None: not lazy).
    pub fn lazy_stats(&self) -> Vec<Option<LazyStats>> {
        self.cells.iter().map(|c| c.lazy_stats()).collect()
    }

    /// Why a lazily restored memory no longer holds its image, if one does
    /// not (a page could not be read and reads as zero).
    pub fn lazy_error(&self) -> Option<String> {
        self.cells.iter().find_map(|c| c.lazy_error())
    }

    /// Waits until every lazily restored page is in its memfd.
    pub fn wait_filled(&self) -> io::Result<()> {
        self.cells.iter().try_for_each(|c| c.wait_filled())
    }

    /// Bytes each memfd holds (holes excluded): how much of a lazily
    /// restored memory is filled.
    pub fn file_allocated_bytes(&self) -> io::Result<Vec<u64>> {
        self.cells
            .iter()
            .map(|c| c.file_allocated_bytes())
            .collect()
    }
}

/// A memfd-backed memory that no guest uses: the benchmarks and tests play
/// the guest through `with_bytes_mut`. It owns its cell alone.
pub struct StandaloneMemory {
    cell: MemoryCell,
}

impl StandaloneMemory {
    /// A memory of `size` bytes (a multiple of 4 KiB) in a reservation of
    /// `reserve` bytes.
    pub fn new(size: usize, reserve: usize, tracker: TrackerKind) -> io::Result<Self> {
        Ok(Self {
            cell: MemoryCell::new(new_memfd()?, size, reserve, None, tracker, None)?,
        })
    }

    /// The tracking backend.
    pub fn tracker_kind(&self) -> TrackerKind {
        self.cell.tracker_kind()
    }

    /// Runs `f` on the bytes.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        self.cell.with_bytes(f)
    }

    /// Runs `f` on the bytes, writable (playing the guest).
    pub fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
        self.cell.with_bytes_mut(f)
    }

    /// Captures as `Memories::capture` does, as memory 0.
    pub fn capture(&mut self, full: bool) -> io::Result<MemoryDelta> {
        self.cell.capture(0, full)
    }
}
