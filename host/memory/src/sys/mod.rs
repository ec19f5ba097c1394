//! The operating system's side: the memfd-backed mapping of a linear
//! memory, reading `/proc/self/pagemap`, the `PAGEMAP_SCAN` ioctl and
//! userfaultfd. It uses nothing above it in this crate. (The wasmtime
//! traits are `linear.rs` and `creator.rs`; loading compiled code is
//! `precompiled.rs`.)
//!
//! ```text
//!   reservation (PROT_NONE, reserve + guard bytes)
//!   ┌──────────────────────────────┬───────────────┬───────┐
//!   │ memfd MAP_PRIVATE [0, size)  │ PROT_NONE     │ guard │
//!   └──────────────────────────────┴───────────────┴───────┘
//!     clean page  = the memfd's page (file-backed in the page tables)
//!     dirty page  = a private copy made by the guest's first write
//! ```
//! A checkpoint copies each private page into the memfd and drops the copy
//! (`MADV_DONTNEED`), so the next write is visible again.

pub mod pagemap;
pub mod region;
pub mod uffd;

pub use region::{MappedRegion, PAGE_SIZE};
