//! Typed errors, one per operation. Messages are sentences that name the
//! file and what failed, and do not repeat their source.
//!
//! ```text
//!  CheckpointStore::create / open ─────────▶ StoreError
//!  CheckpointStore::write, write_image_to ─▶ CheckpointWriteError
//!  restore_newest, load_latest ────────────▶ RestoreError (reasons per id)
//!  one image: open, verify, read ──────────▶ ImageError (names the image)
//! ```

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::format::{FORMAT_VERSION, HEADER_SIZE, OLDEST_VERSION};

/// Opening, creating or scanning a process directory failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot create the image directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the image directory {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("{} already holds checkpoints", path.display())]
    NotEmpty { path: PathBuf },
    #[error("cannot read the image directory {}", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writing or committing a checkpoint failed. In a store, the previous
/// checkpoints are untouched and the temporary is gone; a stream given to
/// `write_image_to` holds a partial image, to be discarded.
#[derive(Debug, Error)]
pub enum CheckpointWriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint id {id} is not newer than the latest checkpoint {latest}")]
    IdNotNewer { id: u64, latest: u64 },
    #[error("checkpoint {id} cannot build on checkpoint {parent}, which is not older")]
    ParentNotOlder { id: u64, parent: u64 },
    #[error("the parent checkpoint {parent} does not exist")]
    MissingParent { parent: u64 },
    #[error("the parent checkpoint {parent} is unreadable")]
    BadParent {
        parent: u64,
        #[source]
        source: ImageError,
    },
    #[error("the checkpoint is invalid: {what}")]
    Invalid { what: String },
    #[error("cannot read page {page} of memory {memory} from its source file")]
    ReadSource {
        memory: u32,
        page: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up the zstd compressor")]
    Compressor {
        #[source]
        source: io::Error,
    },
    #[error("cannot compress pages of memory {memory}")]
    Compress {
        memory: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot commit {}", path.display())]
    Commit {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// No checkpoint of a process directory could be restored.
#[derive(Debug, Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{} holds no checkpoints", dir.display())]
    NoCheckpoints { dir: PathBuf },
    #[error("no checkpoint in {} can be restored: {}", dir.display(), list_reasons(reasons))]
    NoneUsable {
        dir: PathBuf,
        /// Each checkpoint tried, newest first, with why it was unusable
        /// or why `restore_newest`'s `accept` refused it.
        reasons: Vec<(u64, String)>,
    },
}

fn list_reasons(reasons: &[(u64, String)]) -> String {
    reasons
        .iter()
        .map(|(id, why)| format!("checkpoint {id}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One checkpoint file failed verification. Every variant names the file.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a Phantom image (bad magic number)", path.display())]
    NotAnImage { path: PathBuf },
    #[error(
        "{} has format version {version}, which this build cannot read (it reads versions {OLDEST_VERSION} to {FORMAT_VERSION})",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{} is truncated: it has {actual} bytes, {}", path.display(), expected_text(*expected))]
    Truncated {
        path: PathBuf,
        actual: u64,
        expected: Option<u64>,
    },
    #[error("{} is corrupt: the checksum of {what} does not match", path.display())]
    Checksum { path: PathBuf, what: String },
    #[error("{} is corrupt: {what} does not decompress to its pages", path.display())]
    Decompress { path: PathBuf, what: String },
    #[error("{} is malformed: {what}", path.display())]
    Malformed { path: PathBuf, what: String },
}

fn expected_text(expected: Option<u64>) -> String {
    match expected {
        Some(n) => format!("its header says {n}"),
        None => format!("fewer than its {HEADER_SIZE}-byte header"),
    }
}

impl ImageError {
    /// As an `io::Error`, for `RestoredMemory::write_into`.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            ImageError::Io { path, source } => io::Error::new(
                source.kind(),
                format!("cannot read {}: {source}", path.display()),
            ),
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}
