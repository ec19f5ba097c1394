//! The target of a migration (`phantom serve`): a TCP listener whose
//! connections stage incoming processes, check everything they receive,
//! and commit with one rename.
//!
//! ```text
//!   accept ─► handshake (a wrong key: refused, nothing written)
//!   begin ─► id new, name free (or a tombstone), producer not newer
//!        ─► DATA/.migrate-ID.spawning-PID/NAME (hidden; a dead PID's is removed)
//!   file ─► caps, names, exact length, XXH3 ─► synced; the component compiles
//!   round-end ─► the round's images verified deeply (checksums, decompression)
//!   commit ─► state: committing (unless a status question aborted it)
//!        ─► chain whole, journal tail from the newest checkpoint, trial
//!           restore, arrived.json ─► rename into DATA/NAME (THE decision)
//!        ─► committed ─► the host running DATA adopts it
//!   status ─► committed | aborted (a migration still receiving is aborted
//!             by the question, so the answer never changes)
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use phantom_snapshots::CheckpointStore;

use super::protocol::{
    DELTA_MAX, Delta, FRAME_DATA, FileKind, Msg, decode, recv_msg, send_msg, valid_id,
};
use super::wire::{Channel, Security};
use super::{ARRIVED_FILE, Arrived, MOVED_FILE, pause_at, write_marker};
use crate::component::cache_dir;
use crate::datadir::{DataDir, hand_over, move_into_place};
use crate::journal::journal_dir;
use crate::process::{Process, ProcessMeta, spawning_dir, valid_name};
use crate::runtime::Runtime;

/// How long a connection may stay silent.
const IDLE: Duration = Duration::from_secs(30);
/// The pause after an accept that failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// What `phantom serve` listens with.
pub struct ServerOptions {
    /// The data directory (its host holds the lock).
    pub data: PathBuf,
    /// `host:port`.
    pub listen: String,
    /// The channel's protection.
    pub security: Security,
    /// Accept processes granted this host's own devices (`linux:`), as
    /// `import --allow-host-devices` does.
    pub allow_host_devices: bool,
    /// Hand committed processes to the host running the data directory.
    pub hand_over: bool,
    /// Where to report what happens (one line each).
    pub log: Arc<dyn Fn(&str) + Send + Sync>,
}

/// Where a migration is, as the target knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Receiving,
    Committing,
    Committed,
    Aborted,
}

struct Shared {
    data: DataDir,
    security: Security,
    allow_host_devices: bool,
    rt: Arc<Runtime>,
    hand_over: bool,
    log: Arc<dyn Fn(&str) + Send + Sync>,
    states: Mutex<HashMap<String, State>>,
    changed: Condvar,
}

/// A running listener; stops when dropped.
pub struct MigrationServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    waking: TcpListener,
    /// The address it listens on.
    pub local_addr: SocketAddr,
}

impl MigrationServer {
    /// Binds `opts.listen` and serves until dropped.
    pub fn start(rt: Arc<Runtime>, opts: ServerOptions) -> std::io::Result<MigrationServer> {
        let listener = TcpListener::bind(&opts.listen)?;
        // Accepts block (a poll added its period to every migration); Drop
        // wakes them through this clone.
        let waking = listener.try_clone()?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            data: DataDir::open(&opts.data).map_err(std::io::Error::other)?,
            security: opts.security,
            allow_host_devices: opts.allow_host_devices,
            rt,
            hand_over: opts.hand_over,
            log: opts.log,
            states: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("phantom-migrate-listen".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                let shared = shared.clone();
                                let _ = std::thread::Builder::new()
                                    .name("phantom-migrate-in".into())
                                    .spawn(move || connection(&shared, stream));
                            }
                            // Woken to stop, or descriptors ran out.
                            Err(_) => std::thread::sleep(ACCEPT_RETRY),
                        }
                    }
                })?
        };
        Ok(MigrationServer {
            stop,
            thread: Some(thread),
            waking,
            local_addr,
        })
    }
}

impl Drop for MigrationServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        crate::control::wake_accept(&self.waking);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connection(shared: &Shared, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_write_timeout(Some(IDLE));
    let mut ch = match Channel::server(stream, &shared.security) {
        Ok(ch) => ch,
        Err(e) => {
            (shared.log)(&format!("refused a migration connection from {peer}: {e}"));
            return;
        }
    };
    let first = match recv_msg(&mut ch) {
        Ok(m) => m,
        Err(e) => {
            (shared.log)(&format!("a migration connection from {peer} failed: {e}"));
            return;
        }
    };
    match first {
        Msg::Status { id } => {
            let outcome = if valid_id(&id) {
                shared.outcome(&id)
            } else {
                "aborted"
            };
            let _ = send_msg(
                &mut ch,
                &Msg::Outcome {
                    outcome: outcome.into(),
                },
            );
        }
        Msg::Begin {
            id,
            name,
            producer,
            meta,
        } => {
            let mut incoming = Incoming {
                shared,
                id: id.clone(),
                name: name.clone(),
                tmp: None,
                registered: false,
                peer: peer.clone(),
            };
            match incoming.receive(&mut ch, producer, meta) {
                Ok(checkpoint) => {
                    (shared.log)(&format!(
                        "took '{name}' from {peer} (migration {id}, checkpoint {checkpoint})"
                    ));
                    let _ = send_msg(
                        &mut ch,
                        &Msg::Committed {
                            name: name.clone(),
                            checkpoint,
                        },
                    );
                    pause_at("target-adopt-asked");
                    if shared.hand_over
                        && let Some(crate::datadir::HandOver::Refused(_, why)) =
                            hand_over(&shared.data, &name)
                    {
                        (shared.log)(&format!("'{name}' did not start here: {why}"));
                    }
                }
                Err(why) => {
                    (shared.log)(&format!(
                        "refused '{name}' from {peer} (migration {id}): {why}"
                    ));
                    let _ = send_msg(&mut ch, &Msg::Refused { error: why });
                }
            }
        }
        other => {
            let _ = send_msg(
                &mut ch,
                &Msg::Refused {
                    error: format!("unexpected first message {other:?}"),
                },
            );
        }
    }
}

impl Shared {
    /// The final answer about migration `id`.
    fn outcome(&self, id: &str) -> &'static str {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match states.get(id).copied() {
                Some(State::Committed) => return "committed",
                Some(State::Aborted) => return "aborted",
                Some(State::Committing) => {
                    states = self
                        .changed
                        .wait_timeout(states, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                Some(State::Receiving) | None => {
                    if self.committed_on_disk(id) {
                        states.insert(id.to_string(), State::Committed);
                        return "committed";
                    }
                    // Asked while receiving (the source gave up on that
                    // connection) or never heard of: it never commits now.
                    states.insert(id.to_string(), State::Aborted);
                    self.changed.notify_all();
                    return "aborted";
                }
            }
        }
    }

    /// Whether a process directory of DATA (tombstones and processes moved
    /// aside included) arrived by migration `id`.
    fn committed_on_disk(&self, id: &str) -> bool {
        let Ok(entries) = fs::read_dir(self.data.path()) else {
            return false;
        };
        entries.flatten().any(|e| {
            fs::read(e.path().join(ARRIVED_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<Arrived>(&b).ok())
                .is_some_and(|a| a.id == id)
        })
    }

    fn set(&self, id: &str, state: State) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.insert(id.to_string(), state);
        self.changed.notify_all();
    }
}

/// One incoming migration; what it staged is removed unless it committed.
struct Incoming<'a> {
    shared: &'a Shared,
    id: String,
    name: String,
    tmp: Option<PathBuf>,
    registered: bool,
    peer: String,
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_dir_all(tmp);
        }
        if self.registered {
            let mut states = self.shared.states.lock().unwrap_or_else(|e| e.into_inner());
            if states.get(&self.id) != Some(&State::Committed) {
                states.insert(self.id.clone(), State::Aborted);
            }
            self.shared.changed.notify_all();
        }
    }
}

/// What was received so far.
#[derive(Default)]
struct Received {
    component: bool,
    checkpoints: BTreeSet<u64>,
    packs: BTreeSet<u64>,
    /// Files received since the last check (checkpoints and packs).
    unverified: Vec<String>,
    journal: Option<PathBuf>,
    failed: bool,
    settings: BTreeSet<String>,
}

impl Incoming<'_> {
    /// Receives, checks and commits; the checkpoint it resumes from.
    fn receive(
        &mut self,
        ch: &mut Channel,
        producer: String,
        meta: serde_json::Value,
    ) -> Result<u64, String> {
        let shared = self.shared;
        let data = shared.data.path().to_path_buf();
        if !valid_id(&self.id) {
            return Err(format!("'{}' is not a migration id", self.id));
        }
        if !valid_name(&self.name) {
            return Err(format!("'{}' is not a valid process name", self.name));
        }
        let ours = env!("CARGO_PKG_VERSION");
        if producer.len() > 64 || crate::travel::newer_version(&producer, ours) {
            return Err(format!(
                "the source runs phantom {producer}, newer than this one ({ours})"
            ));
        }
        let mut meta: ProcessMeta = serde_json::from_value(meta)
            .map_err(|e| format!("its process.json cannot be read: {e}"))?;
        meta.name = self.name.clone();
        {
            let mut states = shared.states.lock().unwrap_or_else(|e| e.into_inner());
            if states.contains_key(&self.id) || shared.committed_on_disk(&self.id) {
                return Err(format!("migration {} is already known here", self.id));
            }
            states.insert(self.id.clone(), State::Receiving);
            self.registered = true;
        }
        self.name_free(&data)?;
        let tmp = spawning_dir(&data, &format!("migrate-{}", self.id), std::process::id());
        let _ = fs::remove_dir_all(&tmp);
        self.tmp = Some(tmp.clone());
        let stage = tmp.join(&self.name);
        fs::create_dir_all(&stage)
            .map_err(|e| format!("cannot create {}: {e}", stage.display()))?;
        write_synced(
            &stage.join("process.json"),
            &serde_json::to_vec_pretty(&meta).expect("metadata serialises"),
        )?;
        send_msg(ch, &Msg::Ready).map_err(|e| e.to_string())?;

        let mut got = Received::default();
        loop {
            let msg = recv_msg(ch).map_err(|e| e.to_string())?;
            match msg {
                Msg::File {
                    kind,
                    name,
                    len,
                    delta,
                } => {
                    let file = IncomingFile {
                        kind,
                        name: &name,
                        len,
                        delta,
                    };
                    self.file(ch, &tmp, &stage, &meta, &mut got, file)?;
                }
                Msg::RoundEnd { .. } => {
                    verify_new(&stage, &mut got)?;
                    send_msg(ch, &Msg::RoundOk).map_err(|e| e.to_string())?;
                }
                Msg::Commit { newest } => {
                    return self.commit(&tmp, &stage, &mut got, newest);
                }
                other => return Err(format!("unexpected message {other:?}")),
            }
        }
    }

    /// The name is free here, or held by a tombstone (a process that moved
    /// away and now comes back).
    fn name_free(&self, data: &Path) -> Result<(), String> {
        let dest = data.join(&self.name);
        if dest.exists() && !dest.join(MOVED_FILE).exists() {
            return Err(format!(
                "{} already has a process named '{}'",
                data.display(),
                self.name
            ));
        }
        Ok(())
    }

    fn file(
        &self,
        ch: &mut Channel,
        tmp: &Path,
        stage: &Path,
        meta: &ProcessMeta,
        got: &mut Received,
        file: IncomingFile<'_>,
    ) -> Result<(), String> {
        let IncomingFile {
            kind,
            name,
            len,
            delta,
        } = file;
        if len > kind.cap() {
            return Err(format!(
                "a {kind:?} file of {len} bytes (at most {})",
                kind.cap()
            ));
        }
        let once = |seen: bool| {
            if seen {
                Err(format!("a second {kind:?} file"))
            } else {
                Ok(())
            }
        };
        let path = match kind {
            FileKind::Component => {
                once(got.component)?;
                if name != "component.wasm" || len != meta.component_bytes {
                    return Err(format!(
                        "a component named '{name}' of {len} bytes (process.json says {})",
                        meta.component_bytes
                    ));
                }
                stage.join(name)
            }
            FileKind::Checkpoint => {
                let id = CheckpointStore::id_of_name(name)
                    .filter(|&id| CheckpointStore::file_name(id) == name)
                    .ok_or_else(|| format!("'{name}' is not a checkpoint file name"))?;
                if !got.component {
                    return Err("a checkpoint before the component".into());
                }
                if !got.checkpoints.insert(id) {
                    return Err(format!("checkpoint {id} twice"));
                }
                got.unverified.push(name.to_string());
                stage.join(name)
            }
            FileKind::Pages => {
                let seq = phantom_snapshots::pages::parse_pack_name(name)
                    .filter(|&s| phantom_snapshots::pages::pack_name(s) == name)
                    .ok_or_else(|| format!("'{name}' is not a page pack name"))?;
                if !got.component {
                    return Err("a page pack before the component".into());
                }
                if !got.packs.insert(seq) {
                    return Err(format!("page pack {seq} twice"));
                }
                got.unverified.push(name.to_string());
                stage.join(name)
            }
            FileKind::Journal => {
                once(got.journal.is_some())?;
                let p = tmp.join("journal.migrate");
                got.journal = Some(p.clone());
                p
            }
            FileKind::Failure => {
                once(got.failed)?;
                got.failed = true;
                stage.join("failed.json")
            }
            FileKind::Setting => {
                if !crate::travel::MIGRATED_SETTINGS.contains(&name) {
                    return Err(format!("a settings file named '{name}'"));
                }
                once(!got.settings.insert(name.to_string()))?;
                stage.join(name)
            }
        };
        match delta {
            None => receive_file(ch, &path, len)?,
            Some(delta) => {
                // A patch: only of a checkpoint file, against a checkpoint
                // file of this migration, within the size both sides hold.
                let base = CheckpointStore::id_of_name(&delta.base)
                    .filter(|&b| {
                        CheckpointStore::file_name(b) == delta.base && got.checkpoints.contains(&b)
                    })
                    .ok_or_else(|| {
                        format!("a patch against '{}', which was not sent", delta.base)
                    })?;
                if kind != FileKind::Checkpoint || len > DELTA_MAX || delta.zlen > DELTA_MAX {
                    return Err(format!(
                        "a {kind:?} patch of {} bytes for {len} bytes (at most {DELTA_MAX})",
                        delta.zlen
                    ));
                }
                receive_patch(ch, stage, base, &path, len, delta.zlen)?;
            }
        }
        match kind {
            FileKind::Component => {
                let bytes = fs::read(&path).map_err(|e| format!("cannot read it back: {e}"))?;
                crate::travel::seed_cache(&cache_dir(self.shared.data.path()), &cache_dir(tmp));
                self.shared
                    .rt
                    .load_component(&bytes, Some(&cache_dir(tmp)))
                    .map_err(|e| format!("its component cannot be used: {e}"))?;
                got.component = true;
            }
            FileKind::Failure => {
                let bytes = fs::read(&path).map_err(|e| format!("cannot read it back: {e}"))?;
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .map_err(|e| format!("its failed.json cannot be read: {e}"))?;
            }
            FileKind::Setting => {
                let bytes = fs::read(&path).map_err(|e| format!("cannot read it back: {e}"))?;
                crate::travel::check_setting(name, &bytes)?;
                if name == crate::process::DEVICES_FILE && !self.shared.allow_host_devices {
                    let host = std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|t| phantom_devices::DeviceManifest::parse(t).ok())
                        .map(|m| m.host_devices())
                        .unwrap_or_default();
                    if !host.is_empty() {
                        return Err(format!(
                            "it would be granted this host's own devices ({}): the target accepts such processes only with `phantom serve --allow-host-devices`",
                            host.join(", ")
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn commit(
        &mut self,
        tmp: &Path,
        stage: &Path,
        got: &mut Received,
        newest: u64,
    ) -> Result<u64, String> {
        let shared = self.shared;
        {
            let mut states = shared.states.lock().unwrap_or_else(|e| e.into_inner());
            if states.get(&self.id) != Some(&State::Receiving) {
                return Err("the migration was aborted (the source asked about it)".into());
            }
            states.insert(self.id.clone(), State::Committing);
        }
        pause_at("target-commit");
        if !got.component {
            return Err("no component".into());
        }
        verify_new(stage, got)?;
        pause_at("target-verified");
        if got.checkpoints.last() != Some(&newest) {
            return Err(format!(
                "the commit names checkpoint {newest}, and the newest received is {:?}",
                got.checkpoints.last()
            ));
        }
        let store = CheckpointStore::open(stage).map_err(|e| e.to_string())?;
        if got.failed {
            // Not restored here (it comes failed): its chain is checked.
            store
                .usable_chain(Some(newest))
                .map_err(|e| format!("checkpoint {newest} cannot be restored: {e}"))?;
        }
        if let Some(path) = &got.journal {
            let position =
                crate::travel::journal_position(&store, newest).map_err(|e| e.to_string())?;
            crate::travel::write_journal(path, &journal_dir(stage), position)
                .map_err(|e| e.to_string())?;
        }
        if !got.failed {
            // The trial restore verifies the chain of `newest` (every
            // checksum) and must restore exactly it.
            let (process, _) = Process::restore(&shared.rt, stage)
                .map_err(|e| format!("it does not restore: {e}"))?;
            let restored = process.last_committed().map(|c| c.id);
            drop(process);
            pause_at("target-trial-restored");
            if restored != Some(newest) {
                return Err(format!(
                    "checkpoint {newest} does not fit its component (checkpoint {restored:?} was restored instead)"
                ));
            }
        }
        write_marker(
            stage,
            ARRIVED_FILE,
            &Arrived {
                id: self.id.clone(),
                from: self.peer.clone(),
                unix_ns: crate::process::unix_ns(),
            },
        )
        .map_err(|e| e.to_string())?;
        let data = shared.data.path();
        let dest = data.join(&self.name);
        self.name_free(data)?;
        if dest.exists() {
            // A tombstone of the same name: kept aside, hidden.
            let aside = data.join(format!(
                ".{}.moved-{}",
                self.name,
                crate::process::unix_ns()
            ));
            fs::rename(&dest, &aside).map_err(|e| format!("cannot move the tombstone: {e}"))?;
        }
        // THE decision: from this rename on, the process is ours.
        move_into_place(stage, &dest).map_err(|e| format!("cannot move it into place: {e}"))?;
        File::open(data)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", data.display()))?;
        shared.set(&self.id, State::Committed);
        crate::travel::adopt_cache(&cache_dir(tmp), &cache_dir(data));
        pause_at("target-committed");
        Ok(newest)
    }
}

/// One `file` message's head.
struct IncomingFile<'a> {
    kind: FileKind,
    name: &'a str,
    len: u64,
    delta: Option<Delta>,
}

/// Receives a patch of `zlen` bytes, rebuilds the file of `len` bytes from
/// it and checkpoint `base` (already staged), checks it against the file's
/// end and writes it, synced, at `path`.
fn receive_patch(
    ch: &mut Channel,
    stage: &Path,
    base: u64,
    path: &Path,
    len: u64,
    zlen: u64,
) -> Result<(), String> {
    let mut patch = Vec::with_capacity(zlen as usize);
    while (patch.len() as u64) < zlen {
        let (kind, body) = ch.recv().map_err(|e| e.to_string())?;
        let left = zlen - patch.len() as u64;
        if kind != FRAME_DATA {
            return Err(format!("the patch ended {left} bytes early"));
        }
        if body.len() as u64 > left || body.is_empty() {
            return Err(format!(
                "a data frame of {} bytes with {left} left",
                body.len()
            ));
        }
        patch.extend_from_slice(&body);
    }
    let (kind, body) = ch.recv().map_err(|e| e.to_string())?;
    let Msg::FileEnd { xxh3 } = decode(kind, &body).map_err(|e| e.to_string())? else {
        return Err("expected the file's end after its patch".into());
    };
    let base_path = stage.join(CheckpointStore::file_name(base));
    let base =
        fs::read(&base_path).map_err(|e| format!("cannot read {}: {e}", base_path.display()))?;
    let bytes = super::protocol::delta_decode(&base, &patch, len as usize)
        .map_err(|e| format!("{}: its patch does not apply: {e}", path.display()))?;
    if bytes.len() as u64 != len || xxhash_rust::xxh3::xxh3_64(&bytes) != xxh3 {
        return Err(format!("{} arrived damaged (its patch)", path.display()));
    }
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Receives `len` bytes of data frames into a new file at `path`, then the
/// file's end with its checksum; syncs it.
fn receive_file(ch: &mut Channel, path: &Path, len: u64) -> Result<(), String> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    let mut left = len;
    while left > 0 {
        let (kind, body) = ch.recv().map_err(|e| e.to_string())?;
        if kind != FRAME_DATA {
            return Err(format!("the file ended {left} bytes early"));
        }
        if body.len() as u64 > left || body.is_empty() {
            return Err(format!(
                "a data frame of {} bytes with {left} left",
                body.len()
            ));
        }
        hash.update(&body);
        out.write_all(&body)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        left -= body.len() as u64;
    }
    let (kind, body) = ch.recv().map_err(|e| e.to_string())?;
    match decode(kind, &body).map_err(|e| e.to_string())? {
        Msg::FileEnd { xxh3 } if xxh3 == hash.digest() => {}
        Msg::FileEnd { .. } => return Err(format!("{} arrived damaged", path.display())),
        other => return Err(format!("expected the file's end, got {other:?}")),
    }
    let file = out
        .into_inner()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.sync_all()
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Verifies the checkpoint files received since the last check deeply
/// (every checksum, every block decompressed), each on its own: they are
/// linked into a scratch directory and checked there, so files already
/// verified are not read again.
fn verify_new(stage: &Path, got: &mut Received) -> Result<(), String> {
    if got.unverified.is_empty() {
        return Ok(());
    }
    let scratch = stage.with_file_name(".verify");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let result = (|| {
        for name in &got.unverified {
            fs::hard_link(stage.join(name), scratch.join(name))
                .map_err(|e| format!("cannot link {name}: {e}"))?;
        }
        let report = CheckpointStore::open(&scratch)
            .and_then(|s| s.fsck())
            .map_err(|e| e.to_string())?;
        let damaged: Vec<String> = report
            .problems()
            .iter()
            // A manifest's pages may be in packs of earlier rounds: those
            // are checked whole at the commit's trial restore.
            .filter(|p| {
                matches!(
                    p,
                    phantom_snapshots::FsckProblem::Unreadable { .. }
                        | phantom_snapshots::FsckProblem::BadPack { .. }
                )
            })
            .map(|p| p.to_string())
            .collect();
        if !damaged.is_empty() {
            return Err(format!("damaged checkpoints: {}", damaged.join("; ")));
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&scratch);
    result?;
    got.unverified.clear();
    Ok(())
}
