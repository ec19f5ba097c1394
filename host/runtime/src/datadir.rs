//! A data directory: one subdirectory per process, the lock that lets one
//! host run them, the control socket next to it, failure markers, and the
//! compiled-component cache.
//!
//! ```text
//!   DATA/
//!   ├─ .lock                 exclusive flock of the running host (holds its pid)
//!   ├─ .control.sock         the running host's control socket (0600)
//!   ├─ .cache/*.cwasm        compiled components
//!   ├─ .NAME.spawning-PID/   a spawn in progress (removed if PID is gone)
//!   └─ NAME/                 process.json, component.wasm, ckpt-*.phi, failed.json
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Failure;
use crate::process::valid_name;

/// The data directory's lock file.
const LOCK_FILE: &str = ".lock";
/// A process's failure marker.
const FAILURE_FILE: &str = "failed.json";
/// How long taking the lock waits for a command other than a host to
/// let it go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A process directory (its metadata and component) is no data directory:
/// processes made in it would be mixed with its files.
fn refuse_process_dir(path: &Path) -> Result<(), DataDirError> {
    if path.join("process.json").is_file() && path.join("component.wasm").is_file() {
        return Err(DataDirError::ProcessDir(path.to_path_buf()));
    }
    Ok(())
}

/// The command line of process `pid` (its program by its file name, then
/// up to three arguments), if it can be read.
pub fn command_of(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let program = args.next()?;
    let program = program.rsplit('/').next().unwrap_or(&program).to_string();
    Some(
        std::iter::once(program)
            .chain(args.take(3))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Whether a command line (`command_of`) is a host: `phantom run`,
/// `phantom serve`, `phantom pvm run` (or a program not phantom's, which
/// may hold the lock for as long).
pub fn is_host_command(command: &str) -> bool {
    let mut words = command.split(' ');
    let program = words.next().unwrap_or_default();
    let sub: Vec<&str> = words.take(2).collect();
    !program.starts_with("phantom")
        || matches!(sub.as_slice(), ["run", ..] | ["serve", ..] | ["pvm", "run"])
}

/// A data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// It does not exist.
    #[error("data directory {} does not exist", .0.display())]
    Missing(PathBuf),
    /// It exists but is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// Another host runs it, or another command holds it for longer than
    /// a command waits.
    #[error("another phantom {holder} is using {} (pid {pid})", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The holder's pid, as its lock file says.
        pid: String,
        /// What holds it: `host`, or the command (`command: phantom send`).
        holder: String,
    },
    /// It is a process's directory, inside a data directory.
    #[error("{} is the directory of a process, not a data directory (use its parent, {})", .0.display(), .0.parent().map_or_else(|| ".".into(), |p| p.display().to_string()))]
    ProcessDir(PathBuf),
    /// No such process.
    #[error("no process named '{name}' in {}", data.display())]
    NoProcess {
        /// The name asked for.
        name: String,
        /// The data directory.
        data: PathBuf,
    },
    /// The process moved to another host.
    #[error("'{name}' has moved to {to} (migration {id}): it is no longer run here")]
    Moved {
        /// The process.
        name: String,
        /// Where it went.
        to: String,
        /// The migration id.
        id: String,
    },
    /// The process is being migrated and the outcome is not known here.
    #[error(
        "'{name}' is being migrated to {to} (migration {id}) and this host does not know the outcome yet: wait for its `phantom migrate` to end; if that command is gone (killed), `phantom migrate --data {data} {name} --resolve` asks the target (and ends a migration still under way)"
    )]
    Migrating {
        /// The process.
        name: String,
        /// The target.
        to: String,
        /// The migration id.
        id: String,
        /// The data directory.
        data: String,
    },
    /// The name cannot be a process.
    #[error(
        "invalid process name '{0}': use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    InvalidName(String),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A data directory that exists.
#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
}

/// Holds the exclusive lock of a data directory while it lives.
pub struct DataLock {
    _file: fs::File,
}

impl DataDir {
    /// An existing data directory (`run`, `ps` and the others refuse a
    /// missing one: a typo must not look like an empty directory).
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        if !path.exists() {
            return Err(DataDirError::Missing(path.to_path_buf()));
        }
        if !path.is_dir() {
            return Err(DataDirError::NotADirectory(path.to_path_buf()));
        }
        refuse_process_dir(path)?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// A data directory, created with its parents if missing (`spawn`).
    pub fn create(path: &Path) -> Result<Self, DataDirError> {
        if path.exists() && !path.is_dir() {
            return Err(DataDirError::NotADirectory(path.to_path_buf()));
        }
        refuse_process_dir(path)?;
        fs::create_dir_all(path).map_err(|source| DataDirError::Io {
            what: format!("cannot create data directory {}", path.display()),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock, so two hosts never run the same processes.
    pub fn lock(&self) -> Result<DataLock, DataDirError> {
        let path = self.path.join(LOCK_FILE);
        let io = |what: String| move |source| DataDirError::Io { what, source };
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        // A host holds the lock for as long as it runs: refused at once.
        // Another command (`send` without a host, `fork`, `gc`...) holds
        // it for a moment: waited for, a while.
        let until = std::time::Instant::now() + LOCK_WAIT;
        while file.try_lock().is_err() {
            let pid = fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string();
            let command = pid.parse().ok().and_then(command_of);
            let host = command.as_deref().is_none_or(is_host_command);
            if host || std::time::Instant::now() >= until {
                return Err(DataDirError::Locked {
                    path: self.path.clone(),
                    pid,
                    holder: match command {
                        Some(c) if !host => format!("command (`{c}`)"),
                        _ => "host".into(),
                    },
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        file.set_len(0)
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(io(format!("cannot write {}", path.display())))?;
        Ok(DataLock { _file: file })
    }

    /// The pid of the host holding the lock, if one does.
    pub fn lock_holder(&self) -> Option<u32> {
        let path = self.path.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ok()?;
        if file.try_lock().is_ok() {
            return None;
        }
        fs::read_to_string(&path).ok()?.trim().parse().ok()
    }

    /// Process directories, sorted by name.
    pub fn process_dirs(&self) -> Result<Vec<PathBuf>, DataDirError> {
        let io = |source| DataDirError::Io {
            what: format!("cannot read {}", self.path.display()),
            source,
        };
        let mut dirs = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') || !entry.file_type().map_err(io)?.is_dir() {
                continue;
            }
            if entry.path().join("process.json").exists() {
                dirs.push(entry.path());
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// The directory of process `name`, which must exist and be owned by
    /// this data directory (not moved away, not in a migration whose
    /// outcome is unknown).
    pub fn process_dir(&self, name: &str) -> Result<PathBuf, DataDirError> {
        let dir = self.any_process_dir(name)?;
        match crate::migrate::ownership(&dir) {
            crate::migrate::Ownership::Owned => Ok(dir),
            crate::migrate::Ownership::Moved(m) => Err(DataDirError::Moved {
                name: name.to_string(),
                to: m.to,
                id: m.id,
            }),
            crate::migrate::Ownership::Migrating(i) => Err(DataDirError::Migrating {
                name: name.to_string(),
                to: i.to,
                id: i.id,
                data: self.path.display().to_string(),
            }),
        }
    }

    /// The directory of process `name`, which must exist, whoever owns it.
    pub fn any_process_dir(&self, name: &str) -> Result<PathBuf, DataDirError> {
        if !valid_name(name) {
            return Err(DataDirError::InvalidName(name.to_string()));
        }
        let dir = self.path.join(name);
        if !dir.join("process.json").exists() {
            return Err(DataDirError::NoProcess {
                name: name.to_string(),
                data: self.path.clone(),
            });
        }
        Ok(dir)
    }

    /// Removes what spawns that died left behind (a spawn in progress, whose
    /// process is alive, is left alone).
    pub fn clean_stale_spawns(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((_, pid)) = name.rsplit_once(".spawning-") else {
                continue;
            };
            let alive = pid
                .parse::<u32>()
                .is_ok_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
            if !alive {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Renames a new process directory into place, failing with
/// `AlreadyExists` if `to` exists in any form (a plain rename would replace
/// an empty directory another spawn just made).
pub fn move_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // A filesystem without renameat2 flags: check, then rename.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if to.exists() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// Name of a process directory.
pub fn process_name(dir: &Path) -> String {
    dir.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The failure recorded for a process, if it is marked failed. A marker
/// that does not parse (written by an older host: only a message) still
/// counts.
pub fn read_failure(dir: &Path) -> Option<Failure> {
    let body = fs::read(dir.join(FAILURE_FILE)).ok()?;
    if let Ok(f) = serde_json::from_slice::<Failure>(&body) {
        return Some(f);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    Some(Failure::new(crate::error::FailureKind::Trap, message))
}

/// Marks a process failed (atomically: a temp file renamed).
pub fn mark_failed(dir: &Path, failure: &Failure) {
    let body = serde_json::to_vec_pretty(failure).unwrap_or_default();
    let tmp = dir.join(format!("{FAILURE_FILE}.tmp"));
    if fs::write(&tmp, body).is_ok() {
        let _ = fs::rename(&tmp, dir.join(FAILURE_FILE));
    }
}

/// Clears a process's failure mark.
pub fn clear_failure(dir: &Path) {
    let _ = fs::remove_file(dir.join(FAILURE_FILE));
}

/// What became of a spawn.
#[derive(Debug)]
pub struct Spawned {
    /// The process directory.
    pub dir: PathBuf,
    /// Its first checkpoint.
    pub checkpoint: u64,
    /// What `init` sent out.
    pub outputs: Vec<crate::exit::Output>,
    /// Devices `init` could not open, each naming the device and why.
    pub device_warnings: Vec<String>,
    /// A host was running the data directory: what became of the hand-over.
    pub handed_over: Option<HandOver>,
}

/// The hand-over of a new process to the host running its directory.
#[derive(Debug)]
pub enum HandOver {
    /// The host (this pid) runs it now.
    Started(u32),
    /// The host stopped meanwhile: the next `phantom run` starts it.
    HostGone,
    /// The host could not start it (why); it stays on disk.
    Refused(u32, String),
    /// It is marked failed (it failed before it was exported or moved):
    /// the host (this pid) holds it failed, as `phantom run` would, until
    /// `--retry-failed`.
    LeftFailed(u32),
}

/// Spawns a process into `data` (created if missing). If a host runs the
/// directory, the process is handed to it through the control socket and
/// starts there at once. `spawn` never takes the lock: it builds the
/// process in a hidden directory and renames it into place.
pub fn spawn_process(
    rt: &crate::runtime::Runtime,
    data: &Path,
    component: &[u8],
    request: crate::process::SpawnRequest,
) -> Result<Spawned, SpawnIntoError> {
    let data = DataDir::create(data)?;
    if data.lock_holder().is_none() {
        data.clean_stale_spawns();
    }
    let name = request.name.clone();
    let (mut process, outputs) =
        crate::process::Process::spawn(rt, component, data.path(), request)?;
    let device_warnings = process.take_device_warnings();
    let spawned = |handed_over| Spawned {
        dir: process.dir().to_path_buf(),
        checkpoint: process.last_committed().map(|c| c.id).unwrap_or(0),
        outputs,
        device_warnings,
        handed_over,
    };
    Ok(spawned(hand_over(&data, &name)))
}

/// Hands the new process `name` (already in place in `data`) to the host
/// running the directory, if one does, through the control socket.
pub fn hand_over(data: &DataDir, name: &str) -> Option<HandOver> {
    use crate::control::{self, ControlError, Request};
    let pid = data.lock_holder()?;
    let adopt = Request::Adopt {
        name: name.to_string(),
    };
    let mut answer = control::request(data.path(), &adopt);
    for _ in 0..40 {
        // A host that is just starting may not listen yet.
        if !matches!(answer, Err(ControlError::NoHost(_))) || data.lock_holder().is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        answer = control::request(data.path(), &adopt);
    }
    Some(match answer {
        Ok(reply) if reply["failed"] == true => HandOver::LeftFailed(pid),
        Ok(_) => HandOver::Started(pid),
        Err(ControlError::NoHost(_)) => HandOver::HostGone,
        Err(e) => HandOver::Refused(pid, e.to_string()),
    })
}

/// `spawn_process` failed; nothing is left in the data directory.
#[derive(Debug, thiserror::Error)]
pub enum SpawnIntoError {
    /// The data directory cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The spawn failed.
    #[error(transparent)]
    Spawn(#[from] crate::error::SpawnError),
}
