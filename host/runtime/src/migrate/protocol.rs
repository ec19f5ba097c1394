//! The messages of a migration, inside the channel's frames: control
//! messages as JSON (capped), file bytes as data frames of at most 1 MiB.
//!
//! ```text
//!   source                                   target
//!   begin {id, name, producer, meta} ──────► checks, staging dir ─► ready
//!   file {kind, name, len} data* end {xxh3} ► written, counted, checked
//!   file {.., delta {base, zlen}} data* end ► rebuilt from `base` (a file
//!        of this migration) and the zstd patch, then as above
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
    /// A settings file of the process (keep policy, pins, device grants,
    /// scenario), named as in the process directory.
    Setting,
}

impl FileKind {
    /// The most bytes a file of this kind may have (checked before the
    /// first byte is written).
    pub fn cap(self) -> u64 {
        match self {
            FileKind::Component => 1 << 30,
            FileKind::Checkpoint | FileKind::Pages => 64 << 30,
            FileKind::Journal => 16 << 30,
            FileKind::Failure | FileKind::Setting => 1 << 20,
        }
    }
}

/// How a file comes as a patch: zstd with an earlier file of the same
/// migration as its prefix (`zstd --patch-from`). Successive manifests of a
/// large process differ in a few hashes, so the last round, which the
/// process waits for, sends kilobytes instead of a whole page table (1 MiB
/// per 256 MiB of memory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// The earlier file (a checkpoint file name of this migration).
    pub base: String,
    /// Bytes of the patch (the data frames).
    pub zlen: u64,
}

/// Largest file sent as a patch (both sides hold it, its base and the
/// patch in memory).
pub const DELTA_MAX: u64 = 64 << 20;

/// The patch that makes `new` from `base`.
pub fn delta_encode(base: &[u8], new: &[u8]) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut c = CCtx::create();
    let window = window_log(base.len() + new.len());
    c.set_parameter(CParameter::CompressionLevel(1))
        .and_then(|_| c.set_parameter(CParameter::WindowLog(window)))
        .and_then(|_| c.set_parameter(CParameter::EnableLongDistanceMatching(true)))
        .and_then(|_| c.ref_prefix(base))
        .map_err(zstd_error)?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(new.len()));
    c.compress2(&mut out, new).map_err(zstd_error)?;
    Ok(out)
}

/// `new` from `base` and its patch: exactly `len` bytes, or an error.
pub fn delta_decode(base: &[u8], patch: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::{DCtx, DParameter};
    let mut d = DCtx::create();
    d.set_parameter(DParameter::WindowLogMax(window_log(DELTA_MAX as usize * 2)))
        .and_then(|_| d.ref_prefix(base))
        .map_err(zstd_error)?;
    let mut out = Vec::with_capacity(len);
    let n = d.decompress(&mut out, patch).map_err(zstd_error)?;
    if n != len {
        return Err(std::io::Error::other(format!(
            "the patch makes {n} bytes, not {len}"
        )));
    }
    Ok(out)
}

fn zstd_error(code: usize) -> std::io::Error {
    std::io::Error::other(zstd::zstd_safe::get_error_name(code))
}

/// The window that reaches from the end of a `span`-byte input back to the
/// start of its base.
fn window_log(span: usize) -> u32 {
    (usize::BITS - span.max(1 << 10).leading_zeros()).clamp(10, 30)
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
        /// The data is a patch against a file sent before, not the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<Delta>,
    },
    /// Source: the file's data ended; its XXH3-64 (of the whole file, also
    /// when it came as a patch).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_rebuilds_the_file_and_is_small() {
        let base: Vec<u8> = (0..1u32 << 18)
            .flat_map(|i| (i.wrapping_mul(2654435761)).to_le_bytes())
            .collect();
        let mut new = base.clone();
        new[4096..4112].copy_from_slice(&[7; 16]);
        new.splice(9000..9000, [1, 2, 3]);
        let patch = delta_encode(&base, &new).unwrap();
        assert!(patch.len() < 4096, "{} bytes", patch.len());
        assert_eq!(delta_decode(&base, &patch, new.len()).unwrap(), new);
        // Against the wrong base it does not come out right, and a too-small
        // limit is an error, not a truncation.
        assert_ne!(
            delta_decode(&new, &patch, new.len()).ok(),
            Some(new.clone())
        );
        assert!(delta_decode(&base, &patch, new.len() - 1).is_err());
        assert!(delta_decode(&base, b"not zstd", 100).is_err());
    }
}
