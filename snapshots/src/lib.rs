//! The Phantom image store: checkpoint images of page-addressed memory and
//! small named state sections, one store (a directory, or any
//! `StoreBackend`) per persistent process. It knows nothing of wasmtime;
//! the format is in DESIGN.md ("Image format").
//!
//! ```text
//!  NewCheckpoint (owned, Send) ── write ──▶ CheckpointStore ── dyn StoreBackend
//!   ├─ sections: (name, bytes)               │ ckpt-<id>.phi, each FULL     (LocalDir:
//!   └─ MemoryDelta: size, dirty PageRuns,    │ (no parent) or DELTA of its   one dir)
//!      source file                           │ parent; temp, sync, commit
//!                                            │
//!  Restored<R> / LoadedCheckpoint ◀─ restore_newest(accept) / load_latest
//!   ├─ sections (of the newest file)           newest chain that verifies
//!   └─ RestoredMemory ── write_into(dest) ──▶ pages, newest wins, block by block
//!                     └─ page_reader() ───▶ PageReader::read_page(p): one page on demand
//!
//!  without a store: write_image_to(Write + Seek) / read_image_from(Read + Seek)
//!                   ──▶ ImageReader (verify, sections, memories)
//!
//!  format.rs   header and table of contents, caps    (bytes ⇄ structs)
//!  write.rs    check the request, stream it          (NewCheckpoint → Write + Seek)
//!  image.rs    open, verify and read one image       (Read + Seek → checked parts)
//!  backend.rs  where images live: StoreBackend, LocalDir
//!  store.rs    naming, commit, chains, fallback, retention, fsck
//!  restore.rs  LoadedCheckpoint, Restored, RestoredMemory::write_into, PageReader
//!  raw.rs      parts ⇄ bytes with no checks, for fuzzing
//!  bundle.rs   the container export/import stream records into
//! ```

#![forbid(unsafe_code)]

mod backend;
pub mod bundle;
mod error;
mod format;
mod image;
mod manifest;
pub mod pages;
pub mod raw;
mod restore;
mod store;
mod write;

use std::fs::File;

pub use backend::{LocalDir, StoreBackend, TempImage};
pub use error::{CheckpointWriteError, ImageError, RestoreError, StoreError};
pub use format::{
    BLOCK_PAGES, FORMAT_VERSION, MAX_FILE_BYTES, MAX_MEMORIES, MAX_MEMORY_BYTES, MAX_SECTION_BYTES,
    MAX_SECTION_NAME, MAX_SECTIONS, MAX_SECTIONS_TOTAL, MAX_TOC_BYTES, PAGE_SIZE,
};
pub use image::{ImageReader, ImageSource, read_image_from};
pub use restore::{LoadedCheckpoint, PageReader, Restored, RestoredMemory};
pub use store::{
    CheckpointListing, CheckpointStore, FsckProblem, FsckReport, GcReport, KeepPolicy,
    SETTINGS_FILES, check_setting,
};
pub use write::write_image_to;

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A run of consecutive pages: page numbers, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    pub first: u64,
    pub count: u64,
}

/// One checkpoint to write. It owns its parts, so a writer thread can take
/// it whole.
#[derive(Debug)]
pub struct NewCheckpoint {
    /// Greater than every checkpoint already in the store.
    pub id: u64,
    /// `None` for a FULL checkpoint (every non-zero page of every memory);
    /// `Some` for a DELTA holding only pages changed since that checkpoint.
    pub parent: Option<u64>,
    pub created_unix_ns: u64,
    pub pause_us: u64,
    /// Named state sections; names are unique, path-like by convention
    /// (`host`, `host/timers`), and readers ignore names they do not know.
    pub sections: Vec<(String, Vec<u8>)>,
    pub memories: Vec<MemoryDelta>,
}

/// One memory of a checkpoint: its size and the pages to store.
#[derive(Debug)]
pub struct MemoryDelta {
    pub index: u32,
    pub size_bytes: u64,
    /// Pages to store (overlaps and order do not matter). For a FULL
    /// checkpoint, every page that may be non-zero; all-zero ones are
    /// skipped.
    pub dirty: Vec<PageRun>,
    /// Page `p` is read at byte `p * PAGE_SIZE` (positioned reads: the
    /// file's offset is not used). The host passes a dup of the memory's
    /// memfd.
    pub source: File,
}

// The host hands a checkpoint to its writer thread.
const _: () = {
    const fn send<T: Send>() {}
    send::<NewCheckpoint>();
    send::<MemoryDelta>();
};

/// What a checkpoint's header says, plus its size on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointInfo {
    pub id: u64,
    pub parent: Option<u64>,
    pub created_unix_ns: u64,
    pub pause_us: u64,
    /// Pages the writer was asked to store (for a FULL checkpoint, before
    /// all-zero pages were skipped).
    pub dirty_pages: u64,
    /// Header, sections, page index and stored page bytes, before
    /// compression.
    pub bytes_uncompressed: u64,
    /// Size of the file.
    pub bytes_written: u64,
}
