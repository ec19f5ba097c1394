//! Instantiating a component whose memories are memfd-backed: the engine's
//! `MemoryCreator`, the memories a restore prepares, and `instantiate`, the
//! one function that ties the memories it creates to the store they live in.
//!
//! ```text
//!   instantiate(store, linker, component, prepared)
//!     ├─ slot for this thread ◄── prepared memfds (restore) or none (spawn)
//!     ├─ linker.instantiate(store) ── wasmtime calls new_memory per memory ──►
//!     │      PhantomMemoryCreator::create_memory: next prepared memfd, or a new one
//!     └─ Memories { cells, the store's identity }  (+ the component Instance)
//! ```
//! Binding the memories to the store inside one function is what lets
//! `Memories` check a `Quiescent` token: the token proves its store is
//! borrowed, and the memories know which store that must be.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use wasmtime::component::{Component, Instance, Linker};
use wasmtime::{LinearMemory, MemoryType, Store};

use crate::cell::{MemoryCell, fill_eagerly, new_memfd};
use crate::lazy::{LazySource, PageSource};
use crate::linear::GuestMemory;
use crate::memories::{Memories, store_identity};
use crate::sys::uffd::Userfaultfd;
use crate::tracker::TrackerKind;

/// Address space reserved per memory when wasmtime does not ask for a
/// specific reservation: 4 GiB covers every 32-bit linear memory, so growth
/// never moves the base.
const DEFAULT_RESERVATION: usize = 4 << 30;

/// A WebAssembly page: every linear memory's size is a multiple of it.
pub const WASM_PAGE: u64 = 65536;

/// A restored memory, ready to be mapped at instantiation.
pub struct PreparedMemory {
    file: File,
    size: usize,
    lazy: Option<LazySource>,
}

/// A lazy restore this kernel cannot do (no userfaultfd for memfds): the
/// source comes back so the caller can restore eagerly instead.
pub struct LazyUnavailable {
    /// Why.
    pub error: io::Error,
    /// The page source, unused.
    pub source: Box<dyn PageSource>,
}

fn check_size(size: u64) -> io::Result<usize> {
    if !size.is_multiple_of(WASM_PAGE) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a memory of {size} bytes is not a whole number of 64 KiB WebAssembly pages"),
        ));
    }
    usize::try_from(size)
        .ok()
        .filter(|&s| s <= DEFAULT_RESERVATION)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a memory of {size} bytes is larger than a 32-bit memory can be"),
            )
        })
}

impl PreparedMemory {
    /// A memory whose bytes `file` (from `new_memfd`) already holds.
    pub fn filled(file: File, size: u64) -> io::Result<Self> {
        let size = check_size(size)?;
        if file.metadata()?.len() < size as u64 {
            file.set_len(size as u64)?;
        }
        Ok(Self {
            file,
            size,
            lazy: None,
        })
    }

    /// A memory filled from `source` on first touch (userfaultfd) and, with
    /// `prefetch`, in the background.
    pub fn lazy(
        size: u64,
        source: Box<dyn PageSource>,
        prefetch: bool,
    ) -> Result<Self, LazyUnavailable> {
        let fail = |error, source| Err(LazyUnavailable { error, source });
        let size = match check_size(size) {
            Ok(s) => s,
            Err(e) => return fail(e, source),
        };
        if source.page_count() != (size as u64).div_ceil(crate::sys::PAGE_SIZE as u64) {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the page source has {} pages for a memory of {size} bytes",
                    source.page_count()
                ),
            );
            return fail(e, source);
        }
        let uffd = match Userfaultfd::open() {
            Ok(u) => u,
            Err(e) => return fail(e, source),
        };
        let file = match new_memfd().and_then(|f| f.set_len(size as u64).map(|()| f)) {
            Ok(f) => f,
            Err(e) => return fail(e, source),
        };
        Ok(Self {
            file,
            size,
            lazy: Some(LazySource {
                uffd,
                reader: source,
                prefetch,
            }),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size as u64
    }
}

/// Collects the memories wasmtime creates while one process instantiates.
#[derive(Default)]
struct InstantiationSlot {
    prepared: VecDeque<PreparedMemory>,
    created: Vec<Arc<MemoryCell>>,
    tracker: Option<TrackerKind>,
    /// The first memory that could not be made, and why.
    error: Option<InstantiateError>,
}

/// The engine-wide `MemoryCreator`. wasmtime calls it on the thread that
/// instantiates, so each thread has its own slot and instantiations on
/// different threads do not mix their memories.
#[derive(Default)]
pub struct PhantomMemoryCreator {
    slots: Mutex<HashMap<ThreadId, InstantiationSlot>>,
}

/// Why `instantiate` failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum InstantiateError {
    /// The prepared memories do not fit the component: a size outside its
    /// memory type, or more memories than it creates. A problem of the
    /// image.
    #[error("{0}")]
    Image(String),
    /// A memory could not be made here (a memfd, a mapping, a tracker).
    #[error("{0}")]
    Host(String),
    /// wasmtime refused (a trap in a start function, a missing import).
    #[error("{0}")]
    Wasmtime(String),
}

/// Instantiates `component` into `store`, its memories memfd-backed: the
/// `prepared` ones in creation order (a restore), then new ones. Returns the
/// instance and the handle on its memories, bound to `store`.
pub fn instantiate<T: 'static>(
    creator: &PhantomMemoryCreator,
    store: &mut Store<T>,
    linker: &Linker<T>,
    component: &Component,
    prepared: Vec<PreparedMemory>,
    tracker: TrackerKind,
) -> Result<(Instance, Memories), InstantiateError> {
    if std::mem::size_of::<T>() == 0 {
        // A zero-sized store data has no address of its own to tell stores
        // apart by.
        return Err(InstantiateError::Host(
            "the store's data must not be zero-sized".into(),
        ));
    }
    let me = std::thread::current().id();
    creator.lock().insert(
        me,
        InstantiationSlot {
            prepared: prepared.into(),
            created: Vec::new(),
            tracker: Some(tracker),
            error: None,
        },
    );
    let instance = linker.instantiate(&mut *store, component);
    let slot = creator.lock().remove(&me).unwrap_or_default();
    if let Some(e) = slot.error {
        return Err(e);
    }
    let instance = instance.map_err(|e| InstantiateError::Wasmtime(format!("{e:#}")))?;
    if !slot.prepared.is_empty() {
        return Err(InstantiateError::Image(format!(
            "the image has {} more memories than the component creates",
            slot.prepared.len()
        )));
    }
    Ok((instance, Memories::new(slot.created, store_identity(store))))
}

impl PhantomMemoryCreator {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThreadId, InstantiationSlot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `MemoryCreator::new_memory` (the unsafe trait impl is at the end of
    /// this file): the next prepared memfd, or a new one, as a `GuestMemory`.
    pub(crate) fn create_memory(
        &self,
        ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(&std::thread::current().id()) else {
            return Err("memory created outside a Phantom instantiation".into());
        };
        let result = Self::create_in(
            slot,
            ty,
            minimum,
            maximum,
            reserved_size_in_bytes,
            guard_size_in_bytes,
        );
        match result {
            Ok(memory) => Ok(memory),
            Err(e) => {
                let message = e.to_string();
                slot.error.get_or_insert(e);
                Err(message)
            }
        }
    }

    fn create_in(
        slot: &mut InstantiationSlot,
        ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, InstantiateError> {
        if ty.is_shared() || ty.is_64() {
            return Err(InstantiateError::Host(
                "shared and 64-bit memories are not supported by Phantom yet".into(),
            ));
        }
        let index = slot.created.len();
        let reserve = reserved_size_in_bytes
            .unwrap_or(DEFAULT_RESERVATION)
            .max(minimum);
        let (file, size, lazy) = match slot.prepared.pop_front() {
            Some(p) => {
                if p.size < minimum || maximum.is_some_and(|m| p.size > m) || p.size > reserve {
                    return Err(InstantiateError::Image(format!(
                        "the image's memory {index} has {} bytes, which does not fit the component's memory type ({minimum} bytes at least{})",
                        p.size,
                        maximum
                            .map(|m| format!(", {m} at most"))
                            .unwrap_or_default()
                    )));
                }
                (p.file, p.size, p.lazy)
            }
            None => (
                new_memfd()
                    .map_err(|e| InstantiateError::Host(format!("cannot create a memfd: {e}")))?,
                minimum,
                None,
            ),
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
            .map_err(|e| InstantiateError::Host(format!("cannot create memory {index}: {e}")))?,
        );
        slot.created.push(cell.clone());
        let base = cell.base();
        Ok(Box::new(GuestMemory::new(cell, base, reserve)))
    }
}

/// Fills `file` with every page of `source` now (the eager restore of a
/// memory whose lazy restore the kernel refused).
pub fn fill_from(source: Box<dyn PageSource>, file: &File) -> io::Result<()> {
    fill_eagerly(source, file)
}

// SAFETY: every memory returned is a `GuestMemory` (above), made by
// `create_memory`, which reserves `reserved_size_in_bytes` (or 4 GiB) plus
// `guard_size_in_bytes` of address space and never maps the guard.
unsafe impl wasmtime::MemoryCreator for PhantomMemoryCreator {
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
