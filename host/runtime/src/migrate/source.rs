//! The source of a migration: pre-copy rounds while the process runs, the
//! short stop, the commit, and what the source records at each step.
//!
//! ```text
//!   connect + handshake (a wrong key stops here: nothing changed anywhere)
//!   begin ─► component ─► round 0: checkpoint now, ship its whole chain
//!   round k: checkpoint now (the pages dirtied since round k-1), ship the
//!            new delta; the guest runs between rounds; stop when a round
//!            is small or after max_rounds
//!   intent (migrating.json, durable) ─► stop: the drive loop parks the
//!            process, writes a last delta, syncs its journal
//!   last delta + journal tail ─► commit ─► committed ─► moved.json
//!                                       └► refused ─► intent removed, resume
//!                                       └► silence ─► ask the target (status)
//! ```
//! Every checkpoint shipped is one the source also keeps, so a migration
//! that fails leaves the source with a whole, newer chain and the process
//! resumes where it stopped.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use phantom_snapshots::CheckpointStore;
use serde::{Deserialize, Serialize};

use super::protocol::{
    CHUNK, DELTA_MAX, Delta, FRAME_DATA, FileKind, Msg, delta_encode, recv_msg, send_msg,
};
use super::wire::{Channel, Security};
use super::{
    INTENT_FILE, Intent, MOVED_FILE, MigrateError, Moved, ask_outcome, connect, new_id, pause_at,
    remove_marker, write_marker,
};
use crate::journal::{journal_dir, log};

/// How a migration runs.
#[derive(Clone, Debug)]
pub struct MigrateOptions {
    /// The target's address (`host:port`).
    pub to: String,
    /// The channel's protection.
    pub security: Security,
    /// The key file (recorded in the intent, to ask the outcome later).
    pub key_file: Option<PathBuf>,
    /// Most pre-copy rounds after round 0.
    pub max_rounds: u32,
    /// A round that ships no more than this many page bytes ends the
    /// pre-copy: the last round will be about as small.
    pub small_round_bytes: u64,
    /// Pause between rounds, so the guest runs (and dirties) between them.
    pub round_gap: Duration,
    /// How long to keep asking the target after the commit's answer was
    /// lost.
    pub resolve_for: Duration,
}

impl MigrateOptions {
    /// Defaults for `to` with `security`.
    pub fn new(to: String, security: Security, key_file: Option<PathBuf>) -> Self {
        Self {
            to,
            security,
            key_file,
            max_rounds: 8,
            small_round_bytes: 4 << 20,
            round_gap: Duration::from_millis(20),
            resolve_for: Duration::from_secs(20),
        }
    }
}

/// How a migration ended for the source side's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The target took it: drop it.
    Moved,
    /// The target did not: run it again.
    Aborted,
    /// Not known: do not run it (the intent stays; resolve later).
    Unknown,
}

/// A request of a live migration's worker to the drive loop.
#[derive(Clone, Copy, Debug)]
pub enum LiveOp {
    /// Checkpoint the process now; reply with the committed id.
    Round,
    /// Stop running it: a last checkpoint, the journal synced; reply with
    /// the checkpoint's id.
    Stop,
    /// The outcome.
    Finish(Finish),
    /// The worker is done (sent whatever happened).
    Done,
}

/// The drive loop's answer: a checkpoint id, or why not.
pub type LiveReply = Result<u64, String>;

/// A live operation on its way to the drive loop.
pub struct LiveRequest {
    /// The process.
    pub name: String,
    /// What to do.
    pub op: LiveOp,
    /// Where the answer goes.
    pub reply: mpsc::Sender<LiveReply>,
}

/// What the source side does at each step: the drive loop running the
/// process (live), or nothing but the files (a process no host runs).
pub trait SourceSide {
    /// Makes the process's state now a durable checkpoint; its id.
    fn round(&mut self) -> Result<u64, String>;
    /// Stops running the process; the id of its last checkpoint.
    fn stop(&mut self) -> Result<u64, String>;
    /// The outcome.
    fn finish(&mut self, outcome: Finish);
    /// Whether the process runs while the rounds go on.
    fn live(&self) -> bool;
}

/// A process no host runs: its newest checkpoint is all there is.
pub struct OfflineSource {
    /// The process directory.
    pub dir: PathBuf,
}

impl SourceSide for OfflineSource {
    fn round(&mut self) -> Result<u64, String> {
        let store = CheckpointStore::open(&self.dir).map_err(|e| e.to_string())?;
        let chain = store.usable_chain(None).map_err(|e| e.to_string())?;
        chain.last().copied().ok_or_else(|| "no checkpoint".into())
    }
    fn stop(&mut self) -> Result<u64, String> {
        self.round()
    }
    fn finish(&mut self, _: Finish) {}
    fn live(&self) -> bool {
        false
    }
}

/// A process the drive loop runs: each step is a request to it.
pub struct LiveSource {
    /// The process.
    pub name: String,
    /// The drive loop's queue.
    pub tx: mpsc::Sender<LiveRequest>,
    /// Wakes the drive loop.
    pub waker: crate::control::Waker,
}

impl LiveSource {
    fn ask(&self, op: LiveOp) -> Result<u64, String> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(LiveRequest {
                name: self.name.clone(),
                op,
                reply,
            })
            .map_err(|_| "the host is stopping".to_string())?;
        self.waker.wake();
        rx.recv_timeout(Duration::from_secs(300))
            .map_err(|_| "the host did not answer".to_string())?
    }
}

impl SourceSide for LiveSource {
    fn round(&mut self) -> Result<u64, String> {
        self.ask(LiveOp::Round)
    }
    fn stop(&mut self) -> Result<u64, String> {
        self.ask(LiveOp::Stop)
    }
    fn finish(&mut self, outcome: Finish) {
        let _ = self.ask(LiveOp::Finish(outcome));
    }
    fn live(&self) -> bool {
        true
    }
}

/// One round as shipped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundReport {
    /// 0 first; the last one is the stop-and-copy.
    pub round: u32,
    /// Checkpoint files shipped.
    pub checkpoints: Vec<u64>,
    /// Their page bytes before compression (header and index included).
    pub page_bytes: u64,
    /// Bytes on the wire.
    pub wire_bytes: u64,
    /// How long it took.
    pub ms: f64,
}

/// What a migration did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MigrateReport {
    /// The migration id.
    pub id: String,
    /// The process.
    pub name: String,
    /// Where it went.
    pub to: String,
    /// The checkpoint it resumes from there.
    pub checkpoint: u64,
    /// Pre-copy rounds, then the last round.
    pub rounds: Vec<RoundReport>,
    /// Journal entries after the last checkpoint it carried.
    pub journal_entries: u64,
    /// Bytes written to the connection, all included.
    pub bytes_sent: u64,
    /// Page bytes of round 0 (the image) and of the later rounds (what was
    /// dirtied meanwhile), before compression.
    pub image_bytes: u64,
    pub dirtied_bytes: u64,
    /// From the stop of the process here to the target's commit.
    pub stopped_ms: f64,
    /// When the process stopped here (Unix ns).
    pub stopped_unix_ns: u64,
    /// The process ran during the pre-copy.
    pub live: bool,
}

/// Moves the process in `dir` to `opts.to`.
pub fn migrate(
    side: &mut dyn SourceSide,
    dir: &Path,
    opts: &MigrateOptions,
) -> Result<MigrateReport, MigrateError> {
    let name = crate::datadir::process_name(dir);
    let io = |what: String| move |source| MigrateError::Io { what, source };
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("process.json")).map_err(io(format!(
            "cannot read {}",
            dir.join("process.json").display()
        )))?,
    )
    .map_err(|e| MigrateError::Source(format!("process.json of '{name}' does not parse: {e}")))?;
    let id = new_id()?;
    let mut ch = connect(&opts.to, &opts.security)?;
    pause_at("connected");
    send_msg(
        &mut ch,
        &Msg::Begin {
            id: id.clone(),
            name: name.clone(),
            producer: env!("CARGO_PKG_VERSION").into(),
            meta,
        },
    )?;
    expect(&mut ch, "ready", |m| matches!(m, Msg::Ready))?;
    let mut shipper = Shipper {
        store: CheckpointStore::open(dir)
            .map_err(|e| MigrateError::Source(format!("'{name}': {e}")))?,
        sent: BTreeSet::new(),
        rounds: Vec::new(),
        last_checkpoint: None,
    };
    let component = dir.join("component.wasm");
    send_file(&mut ch, FileKind::Component, "component.wasm", &component)?;

    // Pre-copy: the process runs on between rounds.
    let mut round = 0;
    loop {
        let started = Instant::now();
        let id_now = side.round().map_err(MigrateError::Source)?;
        pause_at("round");
        let page_bytes = shipper.ship(&mut ch, id_now, round, started)?;
        if !side.live()
            || round >= opts.max_rounds
            || (round > 0 && page_bytes <= opts.small_round_bytes)
        {
            break;
        }
        round += 1;
        std::thread::sleep(opts.round_gap);
    }

    // The intent, then the stop: from here the process runs nowhere until
    // the outcome is known.
    let intent = Intent {
        id: id.clone(),
        to: opts.to.clone(),
        key_file: opts.key_file.clone(),
        insecure_plaintext: matches!(opts.security, Security::Plaintext),
        unix_ns: crate::process::unix_ns(),
    };
    write_marker(dir, INTENT_FILE, &intent)?;
    pause_at("intent");
    let stopped = Instant::now();
    let stopped_unix_ns = crate::process::unix_ns();
    let abort = |side: &mut dyn SourceSide, e: MigrateError| -> MigrateError {
        // The target cannot have committed: it never got the commit.
        match remove_marker(dir, INTENT_FILE) {
            Ok(()) => side.finish(Finish::Aborted),
            Err(_) => side.finish(Finish::Unknown),
        }
        e
    };
    let last = match side.stop() {
        Ok(id) => id,
        Err(e) => return Err(abort(side, MigrateError::Source(e))),
    };
    pause_at("stopped");
    let mut journal_entries = 0;
    let finale = (|| -> Result<(), MigrateError> {
        shipper.ship_files(&mut ch, last, round + 1, stopped)?;
        pause_at("final-files-sent");
        journal_entries = send_journal(&mut ch, &shipper.store, dir, last)?;
        // The settings, as they are at the stop (a pin made during the
        // rounds goes along).
        for setting in crate::travel::MIGRATED_SETTINGS {
            let path = dir.join(setting);
            if path.is_file() {
                send_file(&mut ch, FileKind::Setting, setting, &path)?;
            }
        }
        if let Ok(meta) = std::fs::metadata(dir.join("failed.json"))
            && meta.is_file()
        {
            send_file(
                &mut ch,
                FileKind::Failure,
                "failed.json",
                &dir.join("failed.json"),
            )?;
        }
        pause_at("final-sent");
        Ok(())
    })();
    if let Err(e) = finale {
        return Err(abort(side, e));
    }
    // The commit: once it is on its way, only the target's answer (now or
    // later) tells what happened.
    let answer = send_msg(&mut ch, &Msg::Commit { newest: last })
        .map_err(MigrateError::from)
        .and_then(|()| {
            pause_at("commit-sent");
            recv_msg(&mut ch).map_err(MigrateError::from)
        });
    let stopped_ms = stopped.elapsed().as_secs_f64() * 1e3;
    let committed = match answer {
        Ok(Msg::Committed { .. }) => true,
        Ok(Msg::Refused { error }) => {
            return Err(abort(side, MigrateError::Refused(error)));
        }
        Ok(other) => {
            ch.shutdown();
            ask_until(opts, &id, format!("an unexpected answer {other:?}"))
                .map_err(|e| unknown(side, e))?
        }
        Err(e) => {
            ch.shutdown();
            ask_until(opts, &id, e.to_string()).map_err(|e| unknown(side, e))?
        }
    };
    if !committed {
        return Err(abort(
            side,
            MigrateError::Refused("the target did not complete the handover".into()),
        ));
    }
    pause_at("committed");
    let moved = Moved {
        id: id.clone(),
        to: opts.to.clone(),
        unix_ns: crate::process::unix_ns(),
    };
    write_marker(dir, MOVED_FILE, &moved)?;
    let _ = remove_marker(dir, INTENT_FILE);
    side.finish(Finish::Moved);
    let rounds = shipper.rounds;
    let image_bytes = rounds.first().map_or(0, |r| r.page_bytes);
    let dirtied_bytes = rounds.iter().skip(1).map(|r| r.page_bytes).sum();
    Ok(MigrateReport {
        id,
        name,
        to: opts.to.clone(),
        checkpoint: last,
        rounds,
        journal_entries,
        bytes_sent: ch.bytes_out,
        image_bytes,
        dirtied_bytes,
        stopped_ms,
        stopped_unix_ns,
        live: side.live(),
    })
}

/// The outcome is unknown: the process stays stopped.
fn unknown(side: &mut dyn SourceSide, e: MigrateError) -> MigrateError {
    side.finish(Finish::Unknown);
    e
}

/// Asks the target for the outcome until it answers or `resolve_for`
/// passes.
fn ask_until(opts: &MigrateOptions, id: &str, why: String) -> Result<bool, MigrateError> {
    let until = Instant::now() + opts.resolve_for;
    let mut asked = 0u32;
    loop {
        asked += 1;
        let last = match ask_outcome(&opts.to, &opts.security, id) {
            Ok(committed) => return Ok(committed),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= until {
            return Err(MigrateError::Source(format!(
                "the commit's answer was lost ({why}) and {} did not answer when asked for the outcome ({asked} times over {:.0} s; last: {}): the process stays stopped here until the outcome is known; once the target is back, `phantom migrate --resolve` asks it and runs the process on the side that has it",
                opts.to,
                opts.resolve_for.as_secs_f64(),
                last
            )));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn expect(ch: &mut Channel, what: &str, ok: impl Fn(&Msg) -> bool) -> Result<Msg, MigrateError> {
    match recv_msg(ch)? {
        Msg::Refused { error } => Err(MigrateError::Refused(error)),
        m if ok(&m) => Ok(m),
        m => Err(MigrateError::Wire(super::WireError::BadFrame(format!(
            "expected {what}, got {m:?}"
        )))),
    }
}

/// Ships checkpoint files, each once.
struct Shipper {
    store: CheckpointStore,
    /// Files sent so far (checkpoints and packs): each goes once.
    sent: BTreeSet<String>,
    rounds: Vec<RoundReport>,
    /// The checkpoint file sent last, the base of the next one's patch.
    last_checkpoint: Option<(String, Vec<u8>)>,
}

impl Shipper {
    /// One round: the files of `id`'s chain not sent yet, then the round's
    /// end; returns the round's page bytes.
    fn ship(
        &mut self,
        ch: &mut Channel,
        id: u64,
        round: u32,
        started: Instant,
    ) -> Result<u64, MigrateError> {
        self.ship_files(ch, id, round, started)?;
        send_msg(ch, &Msg::RoundEnd { round })?;
        expect(ch, "round-ok", |m| matches!(m, Msg::RoundOk))?;
        let r = self.rounds.last_mut().expect("a round was recorded");
        r.ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(r.page_bytes)
    }

    fn ship_files(
        &mut self,
        ch: &mut Channel,
        id: u64,
        round: u32,
        started: Instant,
    ) -> Result<(), MigrateError> {
        let wire_before = ch.bytes_out;
        let source = |e: phantom_snapshots::RestoreError| {
            MigrateError::Source(format!("checkpoint {id}: {e}"))
        };
        // The chain's files (format 2: the manifest and the packs holding
        // its pages); those not sent in an earlier round go.
        let (chain, files) = if round == 0 {
            // The history goes along: every older checkpoint that is usable
            // (rollback targets, pinned ones), sharing the packs.
            let mut chain = self.store.usable_chain(Some(id)).map_err(source)?;
            let older: Vec<u64> = self
                .store
                .ids()
                .unwrap_or_default()
                .into_iter()
                .filter(|&c| c < id && self.store.usable_chain(Some(c)).is_ok())
                .collect();
            chain.extend(older);
            chain.sort_unstable();
            chain.dedup();
            let files = self.store.files_for(&chain).map_err(source)?;
            (chain, files)
        } else {
            self.store.usable_chain_files(id).map_err(source)?
        };
        let new: Vec<u64> = chain
            .iter()
            .copied()
            .filter(|&c| !self.sent.contains(&CheckpointStore::file_name(c)))
            .collect();
        pause_at("files-listed");
        let mut page_bytes = 0;
        let unsent: Vec<String> = files
            .into_iter()
            .filter(|n| !self.sent.contains(n))
            .collect();
        for name in unsent {
            let path = self.store.dir().join(&name);
            let kind = match CheckpointStore::id_of_name(&name) {
                Some(c) => {
                    // (Only the new files are read: verifying every file
                    // of the history cost the last round 10 ms.)
                    page_bytes += match self.store.info(c) {
                        Ok(i) => i.bytes_uncompressed,
                        Err(_) => std::fs::metadata(&path).map_or(0, |m| m.len()),
                    };
                    FileKind::Checkpoint
                }
                None => FileKind::Pages,
            };
            if kind == FileKind::Checkpoint {
                self.send_checkpoint(ch, &name, &path)?;
            } else {
                send_file(ch, kind, &name, &path)?;
            }
            self.sent.insert(name);
        }
        self.rounds.push(RoundReport {
            round,
            checkpoints: new,
            page_bytes,
            wire_bytes: ch.bytes_out - wire_before,
            ms: started.elapsed().as_secs_f64() * 1e3,
        });
        Ok(())
    }
}

impl Shipper {
    /// Sends a checkpoint file, as a patch against the one sent before it
    /// when that is much smaller (successive manifests differ in a few
    /// hashes).
    fn send_checkpoint(
        &mut self,
        ch: &mut Channel,
        name: &str,
        path: &Path,
    ) -> Result<(), MigrateError> {
        let len = std::fs::metadata(path)
            .map_err(|source| MigrateError::Io {
                what: format!("cannot read {}", path.display()),
                source,
            })?
            .len();
        if len > DELTA_MAX {
            self.last_checkpoint = None;
            return send_file(ch, FileKind::Checkpoint, name, path);
        }
        let bytes = std::fs::read(path).map_err(|source| MigrateError::Io {
            what: format!("cannot read {}", path.display()),
            source,
        })?;
        let patch = self.last_checkpoint.as_ref().and_then(|(base_name, base)| {
            let patch = delta_encode(base, &bytes).ok()?;
            (patch.len() < bytes.len() / 2).then(|| (base_name.clone(), patch))
        });
        if std::env::var_os("PHANTOM_MIGRATE_TRACE").is_some() {
            eprintln!(
                "phantom: migrate sends {name}: {} bytes, as a patch {:?}",
                bytes.len(),
                patch.as_ref().map(|(b, p)| (b, p.len()))
            );
        }
        match patch {
            Some((base, patch)) => {
                let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
                send_msg(
                    ch,
                    &Msg::File {
                        kind: FileKind::Checkpoint,
                        name: name.into(),
                        len: bytes.len() as u64,
                        delta: Some(Delta {
                            base,
                            zlen: patch.len() as u64,
                        }),
                    },
                )?;
                for chunk in patch.chunks(CHUNK) {
                    ch.send(FRAME_DATA, chunk)?;
                }
                send_msg(ch, &Msg::FileEnd { xxh3: hash })?;
            }
            None => send_stream(
                ch,
                FileKind::Checkpoint,
                name,
                &mut &bytes[..],
                bytes.len() as u64,
            )?,
        }
        self.last_checkpoint = Some((name.to_string(), bytes));
        Ok(())
    }
}

fn send_file(
    ch: &mut Channel,
    kind: FileKind,
    name: &str,
    path: &Path,
) -> Result<(), MigrateError> {
    let mut f = std::fs::File::open(path).map_err(|source| MigrateError::Io {
        what: format!("cannot open {}", path.display()),
        source,
    })?;
    let len = f
        .metadata()
        .map_err(|source| MigrateError::Io {
            what: format!("cannot read {}", path.display()),
            source,
        })?
        .len();
    send_stream(ch, kind, name, &mut f, len)
}

/// Sends `len` bytes of `r` as one file: its head, data frames, its end
/// with the checksum.
fn send_stream(
    ch: &mut Channel,
    kind: FileKind,
    name: &str,
    r: &mut dyn Read,
    len: u64,
) -> Result<(), MigrateError> {
    send_msg(
        ch,
        &Msg::File {
            kind,
            name: name.into(),
            len,
            delta: None,
        },
    )?;
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        r.read_exact(&mut buf[..n])
            .map_err(|source| MigrateError::Io {
                what: format!("cannot read {name}"),
                source,
            })?;
        hash.update(&buf[..n]);
        ch.send(FRAME_DATA, &buf[..n])?;
        left -= n as u64;
    }
    send_msg(
        ch,
        &Msg::FileEnd {
            xxh3: hash.digest(),
        },
    )?;
    Ok(())
}

/// Sends the journal entries after checkpoint `last` (if any); their count.
fn send_journal(
    ch: &mut Channel,
    store: &CheckpointStore,
    dir: &Path,
    last: u64,
) -> Result<u64, MigrateError> {
    let position = crate::travel::journal_position(store, last)
        .map_err(|e| MigrateError::Source(e.to_string()))?;
    let scan = log::scan(&journal_dir(dir), position)
        .map_err(|e| MigrateError::Source(format!("the journal cannot be read: {e}")))?;
    if scan.entries.is_empty() {
        return Ok(0);
    }
    let payload = crate::travel::encode_journal(position, &scan.entries);
    send_stream(
        ch,
        FileKind::Journal,
        "journal",
        &mut &payload[..],
        payload.len() as u64,
    )?;
    Ok(scan.entries.len() as u64)
}
