//! The journal: every input a process was given since its last checkpoint
//! and every nondeterministic value it read, durable before any effect of
//! them leaves; replayed after a restore so nothing acknowledged is lost and
//! no effect happens twice.
//!
//! ```text
//!   gate ──► JournalCtx::append / record_read ──► Log (log.rs): buffer ─► writer
//!                                                   thread: write + fdatasync
//!   exit ──► held effects (Held: call, call-end) ──► released once the
//!            call-end is durable ──► journal: released
//!   restore: checkpoint (section `journal`: position, released, held,
//!            senders) ─► replay entries >= position (process/journal.rs)
//! ```
//! Bytes: `log.rs` (frames and segments), `entry.rs` (what a frame holds);
//! both are tabled in DESIGN.md.

pub mod entry;
pub mod log;
pub mod offline;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

pub use entry::{CallKind, Ended, Entry, HostValue};
pub use log::{Log, LogConfig};

use crate::error::{Failure, FailureKind};
use crate::exit::Output;
use crate::gate::Input;
use crate::persist::{Section, from_json, to_json};

/// The journal's directory inside a process directory.
pub const JOURNAL_DIR: &str = "journal";
/// Most effects held (not yet released) per process; beyond it the process
/// gets no more input until some are released.
pub const MAX_HELD: usize = 4096;
/// Most sending processes whose last message id a process remembers.
pub const MAX_SENDERS: usize = 4096;

/// The journal of process directory `dir`.
pub fn journal_dir(dir: &Path) -> std::path::PathBuf {
    dir.join(JOURNAL_DIR)
}

/// An effect a call produced, held until the call's entries are durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The call entry that produced it.
    pub call: u64,
    /// Its call-end entry: durable before the effect leaves.
    pub end: u64,
    /// The effect.
    pub output: Output,
}

/// The `journal` section of a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JournalState {
    /// The journal position the checkpoint covers: replay starts here.
    pub position: u64,
    /// Effects of every call up to this call entry were released.
    pub released: Option<u64>,
    /// The last message id taken from each sending process.
    pub senders: BTreeMap<String, u64>,
    /// Effects captured before they were released.
    pub held: Vec<Held>,
    /// The console log's length as last recorded (`--console-log`): it
    /// holds exactly the console output of the released calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<u64>,
}

impl Section for JournalState {
    const NAME: &'static str = "journal";

    fn save(&self) -> Vec<u8> {
        to_json(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let state: JournalState = from_json(bytes)?;
        if state.senders.len() > MAX_SENDERS {
            return Err(format!(
                "it remembers {} senders, over the limit of {MAX_SENDERS}",
                state.senders.len()
            ));
        }
        if state.held.len() > MAX_HELD * 2 {
            return Err(format!(
                "it holds {} effects, over the limit of {}",
                state.held.len(),
                MAX_HELD * 2
            ));
        }
        for h in &state.held {
            if h.end <= h.call || h.end > state.position {
                return Err(format!(
                    "it holds an effect of call {} ended at {}, outside the journal before position {}",
                    h.call, h.end, state.position
                ));
            }
        }
        Ok(state)
    }
}

/// The journal as a process's context sees it.
pub struct JournalCtx {
    /// The log (None: the journal is off).
    pub(crate) log: Option<Arc<Log>>,
    /// What the checkpoint section keeps.
    pub(crate) state: JournalState,
    /// During a replay: the entries not yet replayed.
    pub(crate) replay: VecDeque<(u64, Entry)>,
    /// A replay is running.
    pub(crate) replaying: bool,
    /// Hash of the current call's inputs, reads and outputs.
    pub(crate) digest: Xxh3,
    /// What went wrong in the current call (divergence, journal failure).
    pub(crate) trouble: Option<Failure>,
}

impl Default for JournalCtx {
    fn default() -> Self {
        Self {
            log: None,
            state: JournalState::default(),
            replay: VecDeque::new(),
            replaying: false,
            digest: Xxh3::new(),
            trouble: None,
        }
    }
}

impl JournalCtx {
    /// Appends `entry` (nothing when the journal is off); returns its
    /// sequence number.
    pub(crate) fn append(&mut self, entry: &Entry) -> Result<Option<u64>, String> {
        let Some(log) = &self.log else {
            return Ok(None);
        };
        log.append(&entry.encode())
            .map(Some)
            .map_err(|e| format!("the journal cannot be written: {e}"))
    }

    /// Whether `input` is a message already taken from its sender.
    pub(crate) fn is_duplicate(&self, input: &Input) -> bool {
        match input {
            Input::Message { from, id, .. } if !from.is_empty() => {
                self.state.senders.get(from).is_some_and(|last| id <= last)
            }
            _ => false,
        }
    }

    /// Remembers the id of a message taken.
    pub(crate) fn note_admitted(&mut self, input: &Input) {
        if let Input::Message { from, id, .. } = input
            && !from.is_empty()
        {
            if self.state.senders.len() >= MAX_SENDERS && !self.state.senders.contains_key(from) {
                // Forget the sender with the oldest id (a bounded memory:
                // its resends would no longer be recognised).
                if let Some(oldest) = self
                    .state
                    .senders
                    .iter()
                    .min_by_key(|(_, v)| **v)
                    .map(|(k, _)| k.clone())
                {
                    self.state.senders.remove(&oldest);
                }
            }
            self.state.senders.insert(from.clone(), *id);
        }
    }

    /// During a replay, the next recorded read if it is what the guest
    /// asks for. None: not replaying (or nothing recorded is left: the
    /// call goes on live), or a divergence (recorded as trouble).
    pub(crate) fn next_read<T>(
        &mut self,
        what: &str,
        from_entry: &impl Fn(&Entry) -> Option<T>,
    ) -> Option<T> {
        if !self.replaying || self.trouble.is_some() {
            return None;
        }
        let (seq, entry) = self.replay.front()?;
        if entry.is_read()
            && let Some(value) = from_entry(entry)
        {
            let bytes = entry.encode();
            self.digest.update(&bytes);
            self.replay.pop_front();
            return Some(value);
        }
        let found = if entry.is_read() {
            format!("a {} entry", entry.kind_name())
        } else {
            format!("no more reads in this call (a {} entry)", entry.kind_name())
        };
        self.diverge(format!(
            "entry {seq}: the guest read {what}, but the journal recorded {found}"
        ));
        None
    }

    /// Records a live read.
    pub(crate) fn record_read(&mut self, entry: &Entry) {
        let bytes = entry.encode();
        self.digest.update(&bytes);
        if let Some(log) = &self.log
            && let Err(e) = log.append(&bytes)
            && self.trouble.is_none()
        {
            self.trouble = Some(Failure::new(
                FailureKind::HostIo,
                format!("the journal cannot be written: {e}"),
            ));
        }
    }

    /// Marks the replay as diverged.
    pub(crate) fn diverge(&mut self, why: String) {
        if self.trouble.is_none() {
            self.trouble = Some(Failure::new(
                FailureKind::Divergence,
                format!("replaying the journal diverged at {why}"),
            ));
        }
    }

    /// Hashes bytes into the current call's digest.
    pub(crate) fn hash(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// Hashes the outputs of the current call into its digest.
    pub(crate) fn hash_outputs(&mut self, outputs: &[Output]) {
        for o in outputs {
            match o {
                Output::Console(b) => {
                    self.digest.update(&[1]);
                    self.digest.update(&(b.len() as u64).to_le_bytes());
                    self.digest.update(b);
                }
                Output::Message { to, id, data } => {
                    self.digest.update(&[2]);
                    self.digest.update(&(to.len() as u64).to_le_bytes());
                    self.digest.update(to.as_bytes());
                    self.digest.update(&id.to_le_bytes());
                    self.digest.update(&(data.len() as u64).to_le_bytes());
                    self.digest.update(data);
                }
                Output::Device(crate::iface::devices::DeviceEffect::GpioLevel { handle, high }) => {
                    self.digest.update(&[3]);
                    self.digest.update(&handle.to_le_bytes());
                    self.digest.update(&[u8::from(*high)]);
                }
                Output::Device(crate::iface::devices::DeviceEffect::SerialWrite {
                    handle,
                    bytes,
                }) => {
                    self.digest.update(&[4]);
                    self.digest.update(&handle.to_le_bytes());
                    self.digest.update(&(bytes.len() as u64).to_le_bytes());
                    self.digest.update(bytes);
                }
                Output::Device(crate::iface::devices::DeviceEffect::SerialClose { handle }) => {
                    self.digest.update(&[5]);
                    self.digest.update(&handle.to_le_bytes());
                }
                Output::Device(crate::iface::devices::DeviceEffect::DisplayFrame {
                    handle,
                    flush,
                    ..
                }) => {
                    self.digest.update(&[6]);
                    self.digest.update(&handle.to_le_bytes());
                    self.digest.update(&flush.to_le_bytes());
                }
            }
        }
    }
}
