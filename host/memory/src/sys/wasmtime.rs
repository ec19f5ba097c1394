//! The wasmtime side of a memfd-backed memory: the `LinearMemory` wasmtime
//! owns, the engine's `MemoryCreator`, and loading a precompiled component.
//! These are `unsafe` traits and functions of wasmtime, so they live here.
//!
//! ```text
//!   wasmtime instantiation ── MemoryCreator::new_memory ──► PhantomMemoryCreator::create_memory
//!                                                               │
//!   wasmtime's VMMemory ◄── Box<GuestMemory> ──Arc──► MemoryCell ◄── Memories (the host's handle)
//! ```

use std::path::Path;

/// The `LinearMemory` wasmtime owns: a view of a `MemoryCell`.
pub struct GuestMemory {
    cell: std::sync::Arc<crate::cell::MemoryCell>,
    base: *mut u8,
    capacity: usize,
}

impl GuestMemory {
    /// Wraps `cell`, whose guest view starts at `base` and may grow to
    /// `capacity` bytes without moving.
    pub(crate) fn new(
        cell: std::sync::Arc<crate::cell::MemoryCell>,
        base: *mut u8,
        capacity: usize,
    ) -> Self {
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

// SAFETY: every memory returned is a `GuestMemory` (above), made by
// `create_memory`, which reserves `reserved_size_in_bytes` (or 4 GiB) plus
// `guard_size_in_bytes` of address space and never maps the guard.
unsafe impl wasmtime::MemoryCreator for crate::creator::PhantomMemoryCreator {
    fn new_memory(
        &self,
        ty: wasmtime::MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn wasmtime::LinearMemory>, String> {
        self.create_memory(
            ty,
            minimum,
            maximum,
            reserved_size_in_bytes,
            guard_size_in_bytes,
        )
    }
}

/// Loads a component that this engine compiled earlier.
///
/// Returns an error (never undefined behaviour) when the file was written by
/// another wasmtime version or configuration: wasmtime checks its header.
pub fn load_precompiled(
    engine: &wasmtime::Engine,
    path: &Path,
) -> wasmtime::Result<wasmtime::component::Component> {
    // SAFETY: the file is one this host wrote with `Component::serialize` into
    // the process's own data directory (see DESIGN.md, threat model: the data
    // directory is trusted as the host's own, image files inside are
    // checksummed); wasmtime verifies the engine fingerprint in its header.
    unsafe { wasmtime::component::Component::deserialize_file(engine, path) }
}
