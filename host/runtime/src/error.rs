//! Typed errors of the runtime, one per operation, and the failure of a
//! process, whose kind is kept all the way to `ps --json`.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::inspect::InspectError;

/// What made a process fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The guest trapped (a panic is a trap).
    Trap,
    /// A call ran past `--call-timeout`.
    Timeout,
    /// The guest asked for more memory than `--max-memory-mib`.
    OutOfMemory,
    /// Its image cannot be restored.
    BadImage,
    /// The host failed around it (I/O, the image store, the journal).
    HostIo,
    /// Replaying its journal did not reproduce what was recorded.
    Divergence,
}

impl FailureKind {
    /// The kind's name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfMemory => "out-of-memory",
            FailureKind::BadImage => "bad-image",
            FailureKind::HostIo => "host-io",
            FailureKind::Divergence => "divergence",
        }
    }
}

/// A failed process: the others go on; its last checkpoint stays intact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, in sentences: the first line says it all (with a
    /// guest's panic message), later lines give details (the trap's
    /// backtrace, the guest's last output).
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The first line of the message.
    pub fn summary(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
}

/// A component that cannot become a persistent process.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// Inspection refused it.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// wasmtime cannot compile it.
    #[error("cannot compile the component: {0}")]
    Compile(String),
    /// The host cannot instrument it for persistence.
    #[error("cannot prepare the component for persistence: {0}")]
    Instrument(String),
}

/// `spawn` failed; nothing was left in the data directory.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The name cannot be a directory name.
    #[error(
        "invalid process name '{0}': use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    InvalidName(String),
    /// The name is taken.
    #[error("a process named '{name}' already exists in {}", data.display())]
    Exists {
        /// The name.
        name: String,
        /// The data directory.
        data: PathBuf,
    },
    /// The component cannot be used.
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// The device manifest is malformed, or does not grant a device
    /// interface the component imports.
    #[error("process '{name}': {message}")]
    Devices {
        /// The process name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The component could not be instantiated.
    #[error("cannot instantiate '{name}': {message}")]
    Instantiate {
        /// The process name.
        name: String,
        /// Why.
        message: String,
    },
    /// `init` returned an error.
    #[error("init of '{name}' failed: {message}")]
    InitFailed {
        /// The process name.
        name: String,
        /// The guest's error.
        message: String,
    },
    /// `init` trapped, panicked, ran out of time or memory.
    #[error("init of '{name}' {}", failure.message.trim_start_matches(&format!("process '{name}' ")))]
    InitTrapped {
        /// The process name.
        name: String,
        /// What happened.
        failure: Failure,
    },
    /// The first checkpoint could not be written.
    #[error("cannot write the first checkpoint of '{name}': {source}")]
    Checkpoint {
        /// The process name.
        name: String,
        /// Why.
        source: CheckpointError,
    },
    /// Files of the process directory could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

/// `restore` failed: the process cannot run now. Its files are untouched.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Its `component.wasm` cannot be read or used.
    #[error("{}: cannot use its component: {source}", dir.display())]
    Component {
        /// The process directory.
        dir: PathBuf,
        /// Why.
        source: ComponentError,
    },
    /// A file of the process could not be read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// No checkpoint is usable: each one's reason is listed.
    #[error(transparent)]
    NoUsableImage(#[from] phantom_snapshots::RestoreError),
    /// The host failed while restoring checkpoint `id` (not a problem of
    /// the image, so older checkpoints are not tried: falling back would
    /// roll the process back for no fault of its own).
    #[error("cannot restore checkpoint {id} of {}: {message}", dir.display())]
    Host {
        /// The process directory.
        dir: PathBuf,
        /// The checkpoint.
        id: u64,
        /// Why.
        message: String,
    },
    /// Its journal cannot be opened, or replaying it failed (a divergence,
    /// an entry that is not valid): the process must not go on.
    #[error("{}: {failure}", dir.display())]
    Journal {
        /// The process directory.
        dir: PathBuf,
        /// What happened.
        failure: Failure,
    },
}

impl RestoreError {
    /// The kind of process failure this is.
    pub fn kind(&self) -> FailureKind {
        match self {
            RestoreError::Component { .. } | RestoreError::NoUsableImage(_) => {
                FailureKind::BadImage
            }
            RestoreError::Io { .. } | RestoreError::Host { .. } => FailureKind::HostIo,
            RestoreError::Journal { failure, .. } => failure.kind,
        }
    }
}

/// A checkpoint could not be captured or written. The previous checkpoints
/// are intact.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The capture failed (reading page tables, copying pages).
    #[error("cannot capture: {0}")]
    Capture(io::Error),
    /// The memory does not hold the image it was restored from (a page could
    /// not be read during a lazy restore): it must never become a checkpoint.
    #[error("the memory was not restored correctly: {0}")]
    BrokenMemory(String),
    /// The image store refused or failed the write.
    #[error(transparent)]
    Write(#[from] phantom_snapshots::CheckpointWriteError),
    /// The journal the checkpoint covers could not be made durable.
    #[error("the journal failed: {0}")]
    Journal(String),
    /// The writer thread is gone.
    #[error("the checkpoint writer has stopped")]
    WriterStopped,
    /// The globals could not be read.
    #[error("cannot read the guest's globals: {0}")]
    Globals(String),
    /// No checkpoint id is left (a crafted checkpoint file took the last).
    #[error("{0}")]
    NoIdLeft(String),
}
