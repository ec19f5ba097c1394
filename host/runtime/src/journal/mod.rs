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
use std::ops::Bound;
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
/// Of those, most keys of `phantom send` (outside senders); the oldest
/// goes first, and only a send retried after that many others could be
/// taken twice.
pub const MAX_OUTSIDE_KEYS: usize = 1024;
/// How the sender of a message from outside that carries an idempotency
/// key (`phantom send`, which resends after a host died under it) begins
/// in the journal: `.send-<key>/<n>`, `n` counting the request's messages
/// from 1. No process name begins with `.`, and the guest sees an empty
/// sender, as for any message from outside.
pub const OUTSIDE_KEY_PREFIX: &str = ".send-";

/// A `phantom send` key: 32 lowercase hex digits, the first 16 the time it
/// was made (so the oldest sorts first).
pub fn valid_outside_key(key: &str) -> bool {
    key.len() == 32
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The sender field of message `n` (from 1) of the `phantom send` request
/// with `key`.
pub fn outside_sender(key: &str, n: u64) -> String {
    format!("{OUTSIDE_KEY_PREFIX}{key}/{n}")
}

/// What a message's sender is remembered by, and its number: a process
/// and the id it gave, or a `phantom send` key and the message's place in
/// its request. None: a message from outside without a key (or not a
/// message), never taken as a duplicate.
pub fn dedupe_key(input: &Input) -> Option<(&str, u64)> {
    let Input::Message { from, id, .. } = input else {
        return None;
    };
    if from.is_empty() {
        return None;
    }
    if let Some(rest) = from.strip_prefix(OUTSIDE_KEY_PREFIX)
        && let Some((key, n)) = rest.split_once('/')
        && valid_outside_key(key)
        && let Ok(n) = n.parse::<u64>()
    {
        return Some((&from[..OUTSIDE_KEY_PREFIX.len() + key.len()], n));
    }
    Some((from, *id))
}

/// Records that message `n` of `sender` was taken, within the bounds: at
/// most `MAX_OUTSIDE_KEYS` keys of `phantom send` (the oldest forgotten
/// first) and `MAX_SENDERS` senders in all (the one with the lowest id).
pub fn remember_sender(senders: &mut BTreeMap<String, u64>, sender: &str, n: u64) {
    if !senders.contains_key(sender) {
        if sender.starts_with('.') {
            // Keys sort by the time they were made, and before every
            // process name (which never begins with `.`).
            let outside: Vec<String> = senders
                .range::<str, _>((Bound::Included("."), Bound::Excluded("/")))
                .map(|(k, _)| k.clone())
                .collect();
            if outside.len() >= MAX_OUTSIDE_KEYS {
                senders.remove(&outside[0]);
            }
        }
        if senders.len() >= MAX_SENDERS
            && let Some(oldest) = senders
                .iter()
                .min_by_key(|(_, v)| **v)
                .map(|(k, _)| k.clone())
        {
            senders.remove(&oldest);
        }
    }
    senders.insert(sender.to_string(), n);
}

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

/// The largest journal position a checkpoint may cover: an entry a
/// nanosecond would take a century to reach it, and positions past it
/// would leave no room to number on (a crafted image).
pub const MAX_POSITION: u64 = 1 << 53;

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
        if state.position > MAX_POSITION {
            return Err(format!(
                "its journal position {} is past the largest a journal reaches ({MAX_POSITION})",
                state.position
            ));
        }
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
        dedupe_key(input).is_some_and(|(sender, n)| {
            self.state
                .senders
                .get(sender)
                .is_some_and(|last| n <= *last)
        })
    }

    /// Remembers the number of a message taken.
    pub(crate) fn note_admitted(&mut self, input: &Input) {
        if let Some((sender, n)) = dedupe_key(input) {
            remember_sender(&mut self.state.senders, sender, n);
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

    /// Records a live read. Not once the call is in trouble: a replay
    /// that diverged writes nothing more (the call fails; a retry would
    /// otherwise find the journal longer each time).
    pub(crate) fn record_read(&mut self, entry: &Entry) {
        let bytes = entry.encode();
        self.digest.update(&bytes);
        if self.trouble.is_some() {
            return;
        }
        if let Some(log) = &self.log
            && let Err(e) = log.append(&bytes)
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
        use crate::iface::devices::DeviceEffect;
        // A rate change became an effect after calls were recorded without
        // one: hashed as before, without it, the writes around it as the
        // one write they then were.
        let is_rate = |o: &Output| matches!(o, Output::Device(DeviceEffect::SerialSetBaud { .. }));
        if outputs.iter().any(is_rate) {
            let mut joined: Vec<Output> = Vec::with_capacity(outputs.len());
            for o in outputs.iter().filter(|o| !is_rate(o)) {
                // As the exit joins them: console output in a row, writes
                // to one port in a row.
                let absorbed = match (joined.last_mut(), o) {
                    (Some(Output::Device(last)), Output::Device(next)) => last.absorb(next),
                    (Some(Output::Console(last)), Output::Console(next)) => {
                        last.extend_from_slice(next);
                        true
                    }
                    _ => false,
                };
                if !absorbed {
                    joined.push(o.clone());
                }
            }
            return self.hash_outputs(&joined);
        }
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
                // Left out above.
                Output::Device(crate::iface::devices::DeviceEffect::SerialSetBaud { .. }) => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal position with no room to number on after it is refused.
    #[test]
    fn positions_past_the_bound_are_refused() {
        let at = |p: u64| JournalState::restore(format!("{{\"position\":{p}}}").as_bytes());
        assert!(at(MAX_POSITION).is_ok());
        assert!(
            at(MAX_POSITION + 1)
                .unwrap_err()
                .contains("past the largest")
        );
        assert!(at(u64::MAX).is_err());
    }

    /// A call that wrote, changed the rate and wrote again hashes as it
    /// did when the rate change was no effect (one write of both), so
    /// journals recorded then still replay.
    #[test]
    fn a_rate_change_leaves_a_calls_digest_as_it_was() {
        use crate::iface::devices::DeviceEffect::{SerialSetBaud, SerialWrite};
        let write = |bytes: &[u8]| {
            Output::Device(SerialWrite {
                handle: 1,
                bytes: bytes.to_vec(),
            })
        };
        let digest = |outputs: &[Output]| {
            let mut j = JournalCtx::default();
            j.hash_outputs(outputs);
            j.digest.digest()
        };
        let now = [
            write(b"rate 115200\n"),
            Output::Device(SerialSetBaud {
                handle: 1,
                baud: 115200,
            }),
            write(b"fast\n"),
        ];
        assert_eq!(digest(&now), digest(&[write(b"rate 115200\nfast\n")]));
        assert_ne!(digest(&now), digest(&[write(b"rate 115200\n")]));
        // Console output around it was one output too.
        let said = [
            Output::Console(b"switching\n".to_vec()),
            Output::Device(SerialSetBaud {
                handle: 1,
                baud: 9600,
            }),
            Output::Console(b"switched\n".to_vec()),
        ];
        assert_eq!(
            digest(&said),
            digest(&[Output::Console(b"switching\nswitched\n".to_vec())])
        );
    }

    fn message(from: &str, id: u64) -> Input {
        Input::Message {
            from: from.into(),
            id,
            data: b"x".to_vec(),
        }
    }

    #[test]
    fn messages_are_remembered_by_process_and_id_or_by_send_key_and_place() {
        let key = "0000000000000001ffffffffffffffff";
        assert_eq!(dedupe_key(&message("", 7)), None);
        assert_eq!(dedupe_key(&message("pinger", 7)), Some(("pinger", 7)));
        let from = outside_sender(key, 3);
        assert_eq!(
            dedupe_key(&message(&from, 42)),
            Some((&from[..OUTSIDE_KEY_PREFIX.len() + 32], 3))
        );
        // Not a key after all: remembered whole, by its id.
        assert_eq!(
            dedupe_key(&message(".send-xyz/3", 9)),
            Some((".send-xyz/3", 9))
        );
        assert!(!valid_outside_key(&key.to_uppercase()));
        assert!(!valid_outside_key(&key[1..]));

        let mut j = JournalCtx::default();
        for n in 1..=3 {
            let m = message(&outside_sender(key, n), 100 + n);
            assert!(!j.is_duplicate(&m));
            j.note_admitted(&m);
        }
        assert!(j.is_duplicate(&message(&outside_sender(key, 2), 500)));
        assert!(!j.is_duplicate(&message(&outside_sender(key, 4), 1)));
        assert!(
            !j.is_duplicate(&message("", 1)),
            "no key: never a duplicate"
        );
    }

    #[test]
    fn send_keys_are_forgotten_oldest_first_and_never_push_out_processes() {
        let mut senders = BTreeMap::new();
        for p in 0..10u64 {
            remember_sender(&mut senders, &format!("p{p}"), 1);
        }
        let key = |t: usize| format!("{OUTSIDE_KEY_PREFIX}{t:016x}{:016x}", 7);
        for t in 0..MAX_OUTSIDE_KEYS + 5 {
            remember_sender(&mut senders, &key(t), 2);
        }
        assert_eq!(senders.len(), 10 + MAX_OUTSIDE_KEYS);
        for p in 0..10 {
            assert!(senders.contains_key(&format!("p{p}")));
        }
        for t in 0..5 {
            assert!(
                !senders.contains_key(&key(t)),
                "key {t} is among the oldest"
            );
        }
        assert!(senders.contains_key(&key(5)));
        assert!(senders.contains_key(&key(MAX_OUTSIDE_KEYS + 4)));
        // Remembering a known sender again forgets nobody.
        remember_sender(&mut senders, &key(9), 3);
        assert_eq!(senders.len(), 10 + MAX_OUTSIDE_KEYS);
    }
}
