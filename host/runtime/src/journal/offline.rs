//! The journal without a running host: `phantom journal` (the entries after
//! the last checkpoint), `phantom send` straight into a journal (the caller
//! holds the data directory's lock), and the journal part of `fsck`.
//!
//! ```text
//!   newest checkpoint whose chain verifies ─► its `journal` section: position P
//!   journal/ ─► scan(P) ─► entries (or damage: where, why)
//!   send: checks (exited? takes messages? room in the queue once replayed?)
//!         ─► Log::open ─► admit entries ─► sync ─► durable: acknowledged
//! ```

use std::path::Path;
use std::time::Duration;

use phantom_snapshots::CheckpointStore;

use super::log::{self, Log, LogConfig};
use super::{CallKind, Ended, Entry, journal_dir};
use crate::gate::{Input, MAX_LINE_BYTES, MAX_PENDING_BYTES, MAX_PENDING_INPUTS};
use crate::persist::HostParts;

/// A journal's entries after the newest checkpoint.
#[derive(Debug)]
pub struct Tail {
    /// The checkpoint.
    pub checkpoint: u64,
    /// The position it covers.
    pub position: u64,
    /// The entries from there on, decoded (or why an entry is not valid).
    pub entries: Vec<(u64, Result<Entry, String>)>,
    /// Where reading stopped early, and why (a torn tail: a restore cuts it).
    pub damage: Option<String>,
    /// The host part of the checkpoint.
    pub parts: HostParts,
}

/// Reads the journal tail of the process in `dir`.
pub fn tail(dir: &Path) -> Result<Tail, String> {
    let store = CheckpointStore::open(dir).map_err(|e| e.to_string())?;
    let (info, sections) = store.latest_sections().map_err(|e| e.to_string())?;
    let parts =
        HostParts::restore(&sections).map_err(|e| format!("checkpoint {}: {e}", info.id))?;
    let position = parts.journal.position;
    let scan = log::scan(&journal_dir(dir), position).map_err(|e| e.to_string())?;
    let damage = scan.damage.map(|d| d.to_string());
    let entries = scan
        .entries
        .into_iter()
        .map(|e| (e.seq, Entry::decode(&e.payload)))
        .collect();
    Ok(Tail {
        checkpoint: info.id,
        position,
        entries,
        damage,
        parts,
    })
}

/// Why `send_offline` did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum OfflineSendError {
    /// The queue has no room for them (its inputs as a replay rebuilds
    /// them): a host running the process would let it drain.
    #[error("{0}")]
    Full(String),
    /// They cannot be delivered (no such process, it exited, a message too
    /// long, a damaged journal, ...).
    #[error("{0}")]
    Refused(String),
}

impl From<String> for OfflineSendError {
    fn from(why: String) -> Self {
        OfflineSendError::Refused(why)
    }
}

/// What `phantom send` says of messages to failed process `name`: they
/// went into its journal and wait there.
pub fn failed_receiver_note(name: &str, failure: &crate::error::Failure) -> String {
    format!(
        "'{name}' has failed ({}): the messages wait in its journal until it runs again (`phantom run --retry-failed`)",
        failure.kind.name()
    )
}

/// Where `send_offline` put the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The first message's journal entry (and id).
    pub first: u64,
    /// The last one's.
    pub last: u64,
}

/// Appends `messages` to the journal of the process in `dir` (no host runs
/// it: the caller holds the data directory's lock) and returns once they
/// are durable. The process gets them when it runs next. With `key` (see
/// `journal::OUTSIDE_KEY_PREFIX`), those an earlier attempt with the same
/// key delivered are left out: None if that was all of them (they are
/// durable too).
pub fn send_offline(
    dir: &Path,
    key: Option<&str>,
    messages: &[Vec<u8>],
) -> Result<Option<Delivered>, OfflineSendError> {
    if messages.is_empty() {
        return Err("no messages to send".to_string().into());
    }
    if let Some(key) = key
        && !super::valid_outside_key(key)
    {
        return Err(format!("'{key}' is not a send key (32 hex digits)").into());
    }
    let items: Vec<(String, Option<u64>, &[u8])> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let from = key.map_or_else(String::new, |k| super::outside_sender(k, i as u64 + 1));
            (from, None, &m[..])
        })
        .collect();
    append_messages(dir, &items)
}

/// Delivers message `id` of process `from` into the journal of the process
/// in `dir`, which does not run (it failed, or has not been taken back by
/// the host yet; the caller holds the data directory's lock, as the host
/// does), and returns once it is durable. The process gets it when it runs
/// next. None: it already has it (a sender resending after a crash).
pub fn deliver_offline(
    dir: &Path,
    from: &str,
    id: u64,
    data: &[u8],
) -> Result<Option<Delivered>, String> {
    append_messages(dir, &[(from.to_string(), Some(id), data)]).map_err(|e| e.to_string())
}

/// Appends messages `(from, id, data)` (id None: numbered by its
/// position, as from outside) after checking what a replay will accept;
/// those the process already took from their sender (`dedupe_key`) are
/// left out. None: nothing was left to append, and what is there is made
/// durable.
fn append_messages(
    dir: &Path,
    messages: &[(String, Option<u64>, &[u8])],
) -> Result<Option<Delivered>, OfflineSendError> {
    let name = crate::datadir::process_name(dir);
    let bytes = std::fs::read(dir.join("component.wasm"))
        .map_err(|e| format!("cannot read the component of '{name}': {e}"))?;
    let facts = crate::inspect::inspect_component(&bytes).map_err(|e| e.to_string())?;
    if !facts.exports.iter().any(|e| e == "handle-message") {
        return Err(format!(
            "process '{name}' does not take messages: its component does not export `handle-message` (write it with the SDK's `on_message`)"
        ).into());
    }
    let tail = tail(dir)?;
    if let Some(why) = &tail.damage {
        return Err(format!(
            "the journal of '{name}' is damaged ({why}): check it with `phantom fsck`; running it once cuts the journal there (keeping what follows a damaged entry in journal-damaged-*)"
        ).into());
    }
    // The queue as a replay will rebuild it, the latest process time, and
    // what was taken from each sender, as a replay remembers it.
    let mut queued: Vec<usize> = tail.parts.host.pending.iter().map(Input::bytes).collect();
    let mut head: usize = 0;
    let mut time_ns = tail.parts.host.process_time_ns;
    let mut exited = tail.parts.host.exit_code.is_some();
    let mut senders = tail.parts.journal.senders.clone();
    let taken = |senders: &std::collections::BTreeMap<String, u64>, input: &Input| {
        super::dedupe_key(input).is_some_and(|(k, n)| senders.get(k).is_some_and(|t| n <= *t))
    };
    // A call the host died in (no end recorded): abandoned before anything
    // is appended after it, its input back at the head of the queue.
    let mut open_call: Option<(u64, CallKind)> = None;
    for (seq, entry) in &tail.entries {
        match entry {
            // An abandoned call (the host or the image failed it) left its
            // input at the head of the queue.
            Ok(Entry::CallAbandoned { call }) => {
                if open_call == Some((*call, CallKind::Next)) {
                    head = head.saturating_sub(1);
                }
                open_call = None;
            }
            Ok(Entry::CallEnd { .. } | Entry::CallFailed { .. }) => {
                open_call = None;
            }
            Ok(Entry::Call { kind, .. }) => open_call = Some((*seq, *kind)),
            _ => {}
        }
        match entry {
            Ok(Entry::Admit { time_ns: t, input }) => {
                time_ns = time_ns.max(*t);
                if !taken(&senders, input) {
                    queued.push(input.bytes());
                    if let Some((k, n)) = super::dedupe_key(input) {
                        super::remember_sender(&mut senders, k, n);
                    }
                }
            }
            Ok(Entry::Call { time_ns: t, kind }) => {
                time_ns = time_ns.max(*t);
                if *kind == CallKind::Next {
                    head += 1;
                }
            }
            Ok(Entry::CallEnd {
                ended: Ended::Exit(_),
                ..
            }) => exited = true,
            Ok(_) => {}
            Err(why) => {
                return Err(
                    format!("entry {seq} of the journal of '{name}' is not valid: {why}").into(),
                );
            }
        }
    }
    if exited {
        return Err(format!("process '{name}' has exited: it takes no more messages").into());
    }
    // What the receiver already has (a resend after a crash): left out.
    // Each with whether its id is its position (from outside).
    let mut fresh: Vec<(Input, bool)> = Vec::new();
    for (from, id, data) in messages {
        let input = Input::Message {
            from: from.clone(),
            id: id.unwrap_or(0),
            data: data.to_vec(),
        };
        if taken(&senders, &input) {
            continue;
        }
        if let Some((k, n)) = super::dedupe_key(&input) {
            super::remember_sender(&mut senders, k, n);
        }
        fresh.push((input, id.is_none()));
    }
    if fresh.is_empty() {
        // Taken by an attempt whose host died: written, maybe not synced.
        log::sync_files(&journal_dir(dir))
            .map_err(|e| format!("cannot sync the journal of '{name}': {e}"))?;
        return Ok(None);
    }
    if let Some((_, CallKind::Next)) = open_call {
        head = head.saturating_sub(1);
    }
    let waiting = &queued[head.min(queued.len())..];
    let mut count = waiting.len();
    let mut total: usize = waiting.iter().sum();
    for (m, _) in &fresh {
        if m.bytes() > MAX_LINE_BYTES {
            return Err(format!(
                "a message of {} bytes is longer than the limit of {MAX_LINE_BYTES}",
                m.bytes()
            )
            .into());
        }
        count += 1;
        total += m.bytes();
    }
    let batch = fresh.len();
    let batch_bytes: usize = fresh.iter().map(|(m, _)| m.bytes()).sum();
    // Taken already (by an attempt of the same request through a host
    // that went away): said, since sending the batch again as a new
    // request would deliver those twice.
    let already = match messages.len() - batch {
        0 => String::new(),
        n => format!(
            "; {n} of its {} messages were delivered already (the first ones), so send only the rest again",
            messages.len()
        ),
    };
    if batch > MAX_PENDING_INPUTS || batch_bytes > MAX_PENDING_BYTES {
        // It would not fit an empty queue: only a host, letting the guest
        // take them as they come, can deliver it.
        return Err(OfflineSendError::Full(format!(
            "a batch of {batch} messages ({batch_bytes} bytes) is more than the queue of '{name}' holds (at most {MAX_PENDING_INPUTS} inputs and {} MiB) while no host runs it: send it while `phantom run` runs the directory, or in smaller batches{already}",
            MAX_PENDING_BYTES >> 20
        )));
    }
    if count > MAX_PENDING_INPUTS || total > MAX_PENDING_BYTES {
        return Err(OfflineSendError::Full(format!(
            "the queue of '{name}' is full ({} inputs waiting, at most {MAX_PENDING_INPUTS} and {} MiB): run the host so it catches up, then send again{already}",
            waiting.len(),
            MAX_PENDING_BYTES >> 20
        )));
    }
    let jdir = journal_dir(dir);
    let (log, _) = Log::open(&jdir, LogConfig::default(), tail.position)
        .map_err(|e| format!("cannot open the journal of '{name}': {e}"))?;
    if let Some((call, _)) = open_call {
        log.append(&Entry::CallAbandoned { call }.encode())
            .map_err(|e| format!("cannot write the journal of '{name}': {e}"))?;
    }
    let mut first = None;
    let mut last = 0;
    for (mut input, numbered_by_position) in fresh {
        if let Input::Message { id, .. } = &mut input
            && numbered_by_position
        {
            *id = log.next_seq();
        }
        let entry = Entry::Admit { time_ns, input };
        last = log
            .append(&entry.encode())
            .map_err(|e| format!("cannot write the journal of '{name}': {e}"))?;
        first.get_or_insert(last);
    }
    match log.wait_durable(last, Duration::from_secs(60)) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!("the journal of '{name}' did not become durable in time").into());
        }
        Err(e) => return Err(format!("the journal of '{name}' failed: {e}").into()),
    }
    Ok(Some(Delivered {
        first: first.unwrap_or(last),
        last,
    }))
}

/// What `cut` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The first entry removed (the next one written gets its number).
    pub at: u64,
    /// Entries removed.
    pub removed: u64,
    /// Where they are kept: a journal directory of their own, in the same
    /// segment format (its first segment starts at `at`).
    pub kept: std::path::PathBuf,
}

/// Cuts the journal of the process in `dir` (no host runs it: the caller
/// holds the data directory's lock) before entry `at`, so a restore
/// replays up to there and the process runs on live from that point: the
/// way past an entry that diverges or does not decode. Nothing is thrown
/// away: the entries removed are first written, durably, to
/// `journal-cut-<at>-<unix seconds>` in the process directory.
pub fn cut(dir: &Path, at: u64) -> Result<Cut, String> {
    let name = crate::datadir::process_name(dir);
    let tail = tail(dir)?;
    if at < tail.position {
        return Err(format!(
            "entry {at} of the journal of '{name}' is inside checkpoint {}, which holds the journal up to entry {}: cut at {} or later (or go back first with `phantom rollback`)",
            tail.checkpoint, tail.position, tail.position
        ));
    }
    let end = tail.position + tail.entries.len() as u64;
    if at >= end {
        return Err(match &tail.damage {
            Some(why) => format!(
                "the journal of '{name}' holds whole entries only up to entry {end} ({why}): nothing to cut at entry {at} (a run cuts the damaged tail by itself)"
            ),
            None => format!(
                "the journal of '{name}' ends before entry {at} (its next entry is {end}): nothing to cut"
            ),
        });
    }
    let jdir = journal_dir(dir);
    let removed = log::scan(&jdir, at)
        .map_err(|e| format!("cannot read the journal of '{name}': {e}"))?
        .entries;
    let kept = log::fresh_dir_beside(&jdir, "journal-cut", at);
    // The copy is whole and durable before the journal loses anything.
    let bytes: u64 = removed.iter().map(|e| e.payload.len() as u64 + 64).sum();
    let config = LogConfig {
        segment_bytes: (bytes + 4096).max(64 << 10),
    };
    {
        let (copy, _) = Log::open(&kept, config, at)
            .map_err(|e| format!("cannot keep the entries in {}: {e}", kept.display()))?;
        for e in &removed {
            copy.append(&e.payload)
                .map_err(|e| format!("cannot keep the entries in {}: {e}", kept.display()))?;
        }
        copy.sync()
            .map_err(|e| format!("cannot keep the entries in {}: {e}", kept.display()))?;
    }
    let gone = log::cut_at(&jdir, at, &kept)
        .map_err(|e| format!("cannot cut the journal of '{name}': {e}"))?;
    Ok(Cut {
        at,
        removed: gone.len() as u64,
        kept,
    })
}

/// Checks the journal of the process in `dir` against the checkpoint it
/// would restore from (position `position`): problems found, and how many
/// entries a restore would replay.
pub fn check(dir: &Path, position: u64) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let jdir = journal_dir(dir);
    if !jdir.exists() {
        if position > 0 {
            problems.push(format!(
                "journal: missing, but the checkpoint covers it up to entry {position}"
            ));
        }
        return (problems, 0);
    }
    // What a host could not append to, and files a journal does not have.
    if let Ok(rd) = std::fs::read_dir(&jdir) {
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let segment = name.len() == 28
                && name.starts_with("seg-")
                && name.ends_with(".log")
                && name[4..24].bytes().all(|b| b.is_ascii_digit());
            if !segment {
                if !(name.starts_with(".seg-") && name.ends_with(".tmp")) {
                    problems.push(format!(
                        "journal: {} is not a segment (named seg-<20 digits>.log): it is not read",
                        path.display()
                    ));
                }
            } else if let Err(e) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
            {
                problems.push(format!(
                    "journal: {} cannot be opened for writing ({e}): a host could not append to it",
                    path.display()
                ));
            }
        }
    }
    match log::scan(&jdir, position) {
        Ok(scan) => {
            if let Some(d) = &scan.damage {
                let what = match log::assess(d) {
                    Ok(a) if a.keeps() => format!(
                        "{}; a restore cuts the journal there, keeping what it removes in journal-damaged-*",
                        a.what()
                    ),
                    _ => "a restore cuts the journal there (a tail torn by a crash)".to_string(),
                };
                problems.push(format!("journal: {d}; {what}"));
            } else if scan.next_seq < position {
                problems.push(format!(
                    "journal: it ends at entry {}, before position {position}, which the checkpoint covers (the journal never ends before a checkpoint's position): entries after it are lost; a restore starts the journal again at {position}",
                    scan.next_seq
                ));
            }
            for e in &scan.entries {
                if let Err(why) = Entry::decode(&e.payload) {
                    problems.push(format!(
                        "journal: entry {} is not a valid entry: {why} (the process cannot resume past it; `phantom journal --cut-at {}` keeps the entries before it)",
                        e.seq, e.seq
                    ));
                }
            }
            (problems, scan.entries.len())
        }
        Err(e) => {
            problems.push(format!("journal: {e}"));
            (problems, 0)
        }
    }
}
