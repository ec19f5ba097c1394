//! The messages of a migration, inside the channel's frames: control
//! messages as JSON (capped), file bytes as data frames of at most 1 MiB.
//!
//! ```text
//!   source                                   target
//!   begin {id, name, producer, meta} ──────► checks, staging dir ─► ready
//!   file {kind, name, len} data* end {xxh3} ► written, counted, checked
//!   round-end {round} ─────────────────────► new images verified ─► round-ok
//!   ... (rounds while the process runs)
//!   file* (last delta, journal tail) commit {newest} ──►
//!        chain, journal, trial restore, rename (THE decision) ─► committed
//!   status {id} (another connection) ──────► committed | aborted
//! ```

use serde::{Deserialize, Serialize};

use super::wire::{Channel, WireError};

/// A control message (JSON).
pub const FRAME_MSG: u8 = 1;
/// File bytes.
pub const FRAME_DATA: u8 = 2;
/// Bytes of file data per frame.
pub const CHUNK: usize = 1 << 20;
/// Largest control message.
const MAX_MSG: usize = 1 << 20;

/// What a file record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// `component.wasm`.
    Component,
    /// A checkpoint file `ckpt-<id>.phi`, byte for byte.
    Checkpoint,
    /// A page pack `pack-<seq>.php` (format 2), byte for byte.
    Pages,
    /// The journal entries after the newest checkpoint (the bundle's
    /// journal record encoding).
    Journal,
    /// `failed.json`.
    Failure,
}

impl FileKind {
    /// The most bytes a file of this kind may have (checked before the
    /// first byte is written).
    pub fn cap(self) -> u64 {
        match self {
            FileKind::Component => 1 << 30,
            FileKind::Checkpoint | FileKind::Pages => 64 << 30,
            FileKind::Journal => 16 << 30,
            FileKind::Failure => 1 << 20,
        }
    }
}

/// A control message.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Msg {
    /// Source: a migration starts.
    Begin {
        /// The migration id (32 hex digits).
        id: String,
        /// The process name.
        name: String,
        /// The source's phantom version.
        producer: String,
        /// The process's `process.json`.
        meta: serde_json::Value,
    },
    /// Target: go on.
    Ready,
    /// Source: a file follows as data frames, then `FileEnd`.
    File {
        /// What it is.
        kind: FileKind,
        /// Its name in the process directory.
        name: String,
        /// Its length.
        len: u64,
    },
    /// Source: the file's data ended; its XXH3-64.
    FileEnd {
        /// Checksum of the whole file.
        xxh3: u64,
    },
    /// Source: a pre-copy round ended.
    RoundEnd {
        /// Its number (0 first).
        round: u32,
    },
    /// Target: every file of the round is checked.
    RoundOk,
    /// Source: the process is stopped and everything is sent; take it.
    Commit {
        /// The checkpoint it resumes from.
        newest: u64,
    },
    /// Target: it is ours now (the decision is durable).
    Committed {
        /// Name in the target.
        name: String,
        /// The checkpoint it resumed from.
        checkpoint: u64,
    },
    /// Target: refused; nothing of it is kept.
    Refused {
        /// Why.
        error: String,
    },
    /// Anyone: what became of migration `id`? (The target answers; a
    /// migration still receiving is aborted by the question, so the answer
    /// is final.)
    Status {
        /// The migration id.
        id: String,
    },
    /// Target: the answer.
    Outcome {
        /// `committed` or `aborted`.
        outcome: String,
    },
}

/// Sends a control message.
pub fn send_msg(ch: &mut Channel, msg: &Msg) -> Result<(), WireError> {
    let body = serde_json::to_vec(msg).expect("messages serialise");
    ch.send(FRAME_MSG, &body)
}

/// Receives a frame expected to be a control message.
pub fn recv_msg(ch: &mut Channel) -> Result<Msg, WireError> {
    let (kind, body) = ch.recv()?;
    decode(kind, &body)
}

/// Decodes a control message frame (a data frame or bad JSON is refused).
pub fn decode(kind: u8, body: &[u8]) -> Result<Msg, WireError> {
    if kind != FRAME_MSG {
        return Err(WireError::BadFrame(format!(
            "a frame of kind {kind} where a control message was expected"
        )));
    }
    if body.len() > MAX_MSG {
        return Err(WireError::BadFrame(format!(
            "a control message of {} bytes",
            body.len()
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| WireError::BadFrame(format!("a control message that does not parse: {e}")))
}

/// A migration id is 32 lower-case hex digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
