//! Phantom's guest memory: memfd-backed linear memories, the dirty-page
//! trackers, lazy fill over a page source, the wasmtime memory traits, and
//! **all** `unsafe` code of the host (in `sys`). Every other crate of the
//! workspace forbids `unsafe`.
//!
//! ```text
//!   instantiate(store, linker, component, prepared) ─► (Instance, Memories)
//!        │ wasmtime calls PhantomMemoryCreator::new_memory per memory
//!        ▼
//!   GuestMemory (wasmtime::LinearMemory) ──Arc──► MemoryCell ◄──Arc── Memories
//!                                                  ├ memfd + private view + shared view
//!                                                  ├ DirtyTracker (pagemap | PAGEMAP_SCAN | page-compare)
//!                                                  └ LazyFill ◄── PageSource (an image's pages)
//!   Memories::{capture, copy_bytes, ..}(&Quiescent) ◄── Quiescent::new(&mut Store)
//! ```
//! Guest bytes are reachable only with a `Quiescent` token (made from
//! `&mut Store`, so no guest call of that store is running), or in a
//! `StandaloneMemory` that no guest uses.
//!
//! Modules depend downwards only: `sys` (mmap, pagemap, userfaultfd) ←
//! `tracker` ← `lazy` ← `cell` ← `linear` (the `LinearMemory`) ←
//! `memories` (`Memories`, `Quiescent`) ← `creator` (the `MemoryCreator`,
//! `instantiate`).

mod cell;
mod creator;
mod lazy;
mod linear;
mod memories;
mod precompiled;
mod sys;
mod tracker;

pub use cell::new_memfd;
pub use creator::{
    InstantiateError, LazyUnavailable, PhantomMemoryCreator, PreparedMemory, WASM_PAGE, fill_from,
    instantiate,
};
pub use lazy::{LazyStats, PageSource};
pub use memories::{Memories, Quiescent, StandaloneMemory};
pub use precompiled::load_precompiled;
pub use sys::PAGE_SIZE;
pub use tracker::TrackerKind;
