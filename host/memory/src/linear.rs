//! `GuestMemory`: the `LinearMemory` wasmtime owns for each linear memory,
//! a view of a `MemoryCell` whose base never moves.
//!
//! ```text
//!   wasmtime's VMMemory ── Box<GuestMemory> ──Arc──► MemoryCell ◄──Arc── Memories
//! ```

use std::sync::Arc;

use crate::cell::MemoryCell;

/// The `LinearMemory` wasmtime owns: a view of a `MemoryCell`.
pub struct GuestMemory {
    cell: Arc<MemoryCell>,
    base: *mut u8,
    capacity: usize,
}

impl GuestMemory {
    /// Wraps `cell`, whose guest view starts at `base` and may grow to
    /// `capacity` bytes without moving.
    pub(crate) fn new(cell: Arc<MemoryCell>, base: *mut u8, capacity: usize) -> Self {
        Self {
            cell,
            base,
            capacity,
        }
    }
}

// SAFETY: `base` points into the cell's reservation, which lives as long as
// the Arc; the cell itself is Send + Sync.
unsafe impl Send for GuestMemory {}
// SAFETY: see `Send`.
unsafe impl Sync for GuestMemory {}

// SAFETY: the base pointer never moves (growth maps inside the reservation),
// the first `byte_size()` bytes are always mapped read-write, and the guard
// region wasmtime asked for stays PROT_NONE (it is part of the reservation).
unsafe impl wasmtime::LinearMemory for GuestMemory {
    fn byte_size(&self) -> usize {
        self.cell.size()
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        self.cell.grow(new_size).map_err(wasmtime::Error::from)
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}
