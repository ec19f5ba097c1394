//! Live migration: a process moves to another host while it runs, and
//! exactly one host owns it afterwards, whichever side is killed when.
//!
//! ```text
//!   source.rs  rounds: checkpoint (the dirty tracker's pages since the last
//!              one) ─► ship the new checkpoint files while the guest runs on
//!              ─► intent (migrating.json) ─► stop ─► last delta + journal
//!              tail ─► commit ─► committed: moved.json (a tombstone)
//!   target.rs  `phantom serve`: stage into DATA/.migrate-ID.spawning-PID/NAME,
//!              check every file as it comes, verify each round, at commit:
//!              chain, journal, trial restore, arrived.json, rename into
//!              place (THE decision) ─► the host running DATA adopts it
//!   wire.rs    TCP, shared-key handshake, sealed frames
//!   protocol.rs the messages
//! ```
//! Ownership is decided by one durable act: the target's rename of the
//! staged process into its data directory. Before it the source owns the
//! process; after it the target does. The source's markers only record
//! what it knows: `migrating.json` (it stopped running the process and
//! asked a target to take it: the outcome must be asked of the target
//! before the process may run again) and `moved.json` (the target took
//! it: never run here again). DESIGN.md, "Live migration", has the table
//! of crash points.

pub mod protocol;
pub mod source;
pub mod target;
pub mod wire;

use std::fs;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use source::{LiveOp, LiveReply, MigrateOptions, MigrateReport, SourceSide, migrate};
pub use target::{MigrationServer, ServerOptions};
pub use wire::{MigrationKey, Security, WireError, security_from};

/// The source's intent marker.
pub const INTENT_FILE: &str = "migrating.json";
/// The source's tombstone.
pub const MOVED_FILE: &str = "moved.json";
/// The target's record of the migration that brought a process.
pub const ARRIVED_FILE: &str = "arrived.json";

/// How long a connection attempt waits.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The channel failed (network, wrong key, a bad peer).
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The target cannot be reached.
    #[error("cannot reach the target {to}: {why}")]
    Connect {
        /// The address.
        to: String,
        /// Why.
        why: String,
    },
    /// The target refused the process; nothing changed there.
    #[error("the target refused the process: {0}")]
    Refused(String),
    /// The process cannot be migrated (not here, not owned, not usable).
    #[error("{0}")]
    Source(String),
    /// The outcome is unknown: the process runs nowhere until resolved.
    #[error(
        "the outcome of migration {id} of '{name}' to {to} is unknown ({why}); '{name}' stays stopped here: once {to} answers, run `phantom migrate --data {data} {name} --resolve`"
    )]
    Unresolved {
        /// The migration id.
        id: String,
        /// The process.
        name: String,
        /// The target.
        to: String,
        /// The source's data directory.
        data: String,
        /// Why.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// `migrating.json`: the source stopped running the process and asked `to`
/// to take it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Intent {
    /// The migration id.
    pub id: String,
    /// The target's address.
    pub to: String,
    /// The key file the migration used (to ask the target the outcome
    /// after a restart), if any.
    pub key_file: Option<PathBuf>,
    /// The link was plaintext.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// When (Unix ns).
    pub unix_ns: u64,
}

/// `moved.json`: the process belongs to another host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Moved {
    /// The migration id.
    pub id: String,
    /// Where it went.
    pub to: String,
    /// When it was known (Unix ns).
    pub unix_ns: u64,
}

/// `arrived.json`: the migration that brought the process here.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Arrived {
    /// The migration id.
    pub id: String,
    /// The source's address as the target saw it.
    pub from: String,
    /// When it was committed (Unix ns).
    pub unix_ns: u64,
}

/// Who owns a process directory, as its markers say.
#[derive(Clone, Debug)]
pub enum Ownership {
    /// This host.
    Owned,
    /// A migration's outcome is not known here yet.
    Migrating(Intent),
    /// Another host.
    Moved(Moved),
}

/// Reads a process directory's markers. A marker that cannot be read is
/// treated as what its name says, never as ownership.
pub fn ownership(dir: &Path) -> Ownership {
    if let Ok(body) = fs::read(dir.join(MOVED_FILE)) {
        return Ownership::Moved(serde_json::from_slice(&body).unwrap_or(Moved {
            id: "?".into(),
            to: "?".into(),
            unix_ns: 0,
        }));
    }
    if let Ok(body) = fs::read(dir.join(INTENT_FILE)) {
        return Ownership::Migrating(serde_json::from_slice(&body).unwrap_or(Intent {
            id: "?".into(),
            to: "?".into(),
            key_file: None,
            insecure_plaintext: false,
            unix_ns: 0,
        }));
    }
    Ownership::Owned
}

/// Writes `value` as `dir/name` durably: a temporary file, synced,
/// renamed, the directory synced.
pub fn write_marker<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), MigrateError> {
    let io = |what: String| move |source| MigrateError::Io { what, source };
    let tmp = dir.join(format!(".{name}.tmp"));
    let body = serde_json::to_vec_pretty(value).expect("markers serialise");
    {
        use std::io::Write;
        let mut f =
            fs::File::create(&tmp).map_err(io(format!("cannot write {}", tmp.display())))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(io(format!("cannot write {}", tmp.display())))?;
    }
    fs::rename(&tmp, dir.join(name)).map_err(io(format!("cannot write {name}")))?;
    sync_dir(dir)
}

/// Removes `dir/name` durably.
pub fn remove_marker(dir: &Path, name: &str) -> Result<(), MigrateError> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MigrateError::Io {
            what: format!("cannot remove {}", dir.join(name).display()),
            source,
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), MigrateError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| MigrateError::Io {
            what: format!("cannot sync {}", dir.display()),
            source,
        })
}

/// A new migration id: 128 random bits as hex.
pub fn new_id() -> Result<String, MigrateError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| MigrateError::Io {
        what: "no randomness for a migration id".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(wire::hex(&b))
}

/// Connects to `to` and runs the handshake.
pub fn connect(to: &str, security: &Security) -> Result<wire::Channel, MigrateError> {
    let fail = |why: String| MigrateError::Connect {
        to: to.to_string(),
        why,
    };
    let addrs: Vec<_> = to
        .to_socket_addrs()
        .map_err(|e| fail(format!("not an address: {e}")))?
        .collect();
    let mut last = "no address".to_string();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
                return wire::Channel::client(s, security).map_err(MigrateError::Wire);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(fail(last))
}

/// What a resolution found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    /// Nothing was pending: the process is owned here.
    Owned,
    /// The target took it: it is a tombstone here now.
    Moved,
    /// The target never took it: it is owned here again.
    Resumed,
}

/// Asks the target what became of the migration `dir`'s intent names, and
/// records the answer: `moved.json` if it committed, the intent removed if
/// it did not. `security` overrides the intent's key file. With `force`,
/// an unreachable target counts as "did not commit" (only safe when the
/// target is known to be gone for good).
pub fn resolve(
    dir: &Path,
    security: Option<&Security>,
    force: bool,
) -> Result<Resolution, MigrateError> {
    let intent = match ownership(dir) {
        Ownership::Owned => return Ok(Resolution::Owned),
        Ownership::Moved(_) => {
            let _ = remove_marker(dir, INTENT_FILE);
            return Ok(Resolution::Moved);
        }
        Ownership::Migrating(i) => i,
    };
    let name = crate::datadir::process_name(dir);
    let data = dir
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let unresolved = |why: String| MigrateError::Unresolved {
        id: intent.id.clone(),
        name: name.clone(),
        to: intent.to.clone(),
        data: data.clone(),
        why,
    };
    let security = match security {
        Some(s) => s.clone(),
        None if intent.insecure_plaintext => Security::Plaintext,
        None => match &intent.key_file {
            Some(f) => Security::Key(MigrationKey::load(f).map_err(unresolved)?),
            None => security_from(None, false).map_err(unresolved)?.0,
        },
    };
    let answer = ask_outcome(&intent.to, &security, &intent.id);
    let committed = match answer {
        Ok(committed) => committed,
        Err(_) if force => false,
        Err(e) => return Err(unresolved(e.to_string())),
    };
    if committed {
        write_marker(
            dir,
            MOVED_FILE,
            &Moved {
                id: intent.id.clone(),
                to: intent.to.clone(),
                unix_ns: crate::process::unix_ns(),
            },
        )?;
        let _ = remove_marker(dir, INTENT_FILE);
        Ok(Resolution::Moved)
    } else {
        remove_marker(dir, INTENT_FILE)?;
        Ok(Resolution::Resumed)
    }
}

/// Asks `to` whether migration `id` committed (true) or never will (false).
pub fn ask_outcome(to: &str, security: &Security, id: &str) -> Result<bool, MigrateError> {
    use protocol::{Msg, recv_msg, send_msg};
    let mut ch = connect(to, security)?;
    send_msg(&mut ch, &Msg::Status { id: id.to_string() })?;
    match recv_msg(&mut ch)? {
        Msg::Outcome { outcome } if outcome == "committed" => Ok(true),
        Msg::Outcome { outcome } if outcome == "aborted" => Ok(false),
        Msg::Refused { error } => Err(MigrateError::Refused(error)),
        other => Err(MigrateError::Wire(WireError::BadFrame(format!(
            "an unexpected answer {other:?}"
        )))),
    }
}

/// Test hook: `PHANTOM_MIGRATE_PAUSE=step=ms,step=ms` (or `*=ms`) sleeps at
/// the named steps of the protocol, so tests can aim a `kill -9` at them.
pub(crate) fn pause_at(step: &str) {
    // `PHANTOM_MIGRATE_TRACE=1`: each step with its time, to see where a
    // migration's downtime goes.
    if std::env::var_os("PHANTOM_MIGRATE_TRACE").is_some() {
        eprintln!(
            "phantom: migrate step {step} at {:.3} ms",
            crate::process::unix_ns() as f64 / 1e6 % 1e6
        );
    }
    let Ok(spec) = std::env::var("PHANTOM_MIGRATE_PAUSE") else {
        return;
    };
    for part in spec.split(',') {
        if let Some((s, ms)) = part.split_once('=')
            && (s == step || s == "*")
            && let Ok(ms) = ms.parse::<u64>()
        {
            std::thread::sleep(Duration::from_millis(ms.min(60_000)));
            return;
        }
    }
}
