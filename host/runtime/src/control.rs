//! The control socket: how commands talk to the host running a data
//! directory. A Unix socket next to the lock file, JSON lines, mode 0600.
//!
//! ```text
//!   phantom checkpoint ─┐                         ┌─ server thread: accept, one
//!   phantom spawn ──────┼─► DATA/.control.sock ───┤  thread per connection, a
//!   phantom ps ─────────┘   {"op":"checkpoint"}   │  line in, a request to the
//!                           ◄── {"ok":true,...}   └─ drive loop, its reply out
//! ```
//! Requests (`op`): `checkpoint` (every process that ran since its last
//! checkpoint, replies once the checkpoints are durable), `adopt` (`name`: a
//! process spawned into the directory while the host runs), `status` (what
//! the host is running), `send` (`name`, `messages`: texts, `timeout_ms`:
//! messages into the process's journal, replied to once they are durable),
//! `migrate` (`name`, `to`, `key_file`: move a running process to another
//! host, replied to when the migration is over).
//! Every reply has `ok`, and `error` when it is false. The drive loop
//! answers between guest calls (a request wakes it), so a reply can wait up
//! to a call's timeout; a `send` reply waits on the journal itself, not on
//! the drive loop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::datadir::{DataDir, DataLock};

/// The socket's name in the data directory.
pub const SOCKET_NAME: &str = ".control.sock";
/// Longest request line read (a `send` batch may be large).
const MAX_REQUEST_BYTES: usize = 64 << 20;
/// Longest a connection waits for the drive loop's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a full queue may make a `send` wait when it names no limit.
pub(crate) const SEND_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// A migration's reply comes when it is over.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(900);
/// The pause after an accept that failed (descriptors run out).
const ACCEPT_RETRY: Duration = Duration::from_millis(25);
/// `sun_path` holds 108 bytes; longer paths go through `/proc/self/fd`.
const MAX_SOCKET_PATH: usize = 100;

/// A request to the running host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Checkpoint every process that ran since its last checkpoint.
    Checkpoint,
    /// Start running process `name`, spawned into the directory.
    Adopt {
        /// The process name.
        name: String,
    },
    /// What the host is running.
    Status,
    /// The devices process `name` holds open now, with what it set.
    Devices {
        /// The process name.
        name: String,
    },
    /// Deliver messages to process `name`, in order.
    Send {
        /// The process.
        name: String,
        /// The messages' texts.
        messages: Vec<String>,
        /// How long a full queue may make the request wait (default 30 s).
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Move process `name` to the host listening at `to` (live: the drive
    /// loop runs the pre-copy rounds); replied to when it is over.
    Migrate {
        /// The process.
        name: String,
        /// The target's address.
        to: String,
        /// The shared key's file (absolute).
        #[serde(default)]
        key_file: Option<std::path::PathBuf>,
        /// No key: an unauthenticated, unencrypted link.
        #[serde(default)]
        insecure_plaintext: bool,
        /// Most pre-copy rounds after the first.
        #[serde(default)]
        max_rounds: Option<u32>,
    },
}

/// A reply from the drive loop (`{"ok": ...}`): a send's comes once its
/// messages are durable.
pub type Reply = Value;

/// A request waiting for the drive loop, with where its reply goes.
pub struct PendingRequest {
    /// The request.
    pub request: Request,
    /// The reply (`{"ok": ...}`).
    pub reply: mpsc::Sender<Reply>,
}

/// Wakes a sleeping drive loop (a request arrived, a journal became
/// durable, input arrived).
#[derive(Clone, Default)]
pub struct Waker(Arc<(Mutex<bool>, Condvar)>);

impl Waker {
    /// Wakes the loop (or makes its next wait return at once).
    pub fn wake(&self) {
        let (flag, cv) = &*self.0;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// Waits until woken or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let (flag, cv) = &*self.0;
        let mut woken = flag.lock().unwrap_or_else(|e| e.into_inner());
        if !*woken {
            woken = cv
                .wait_timeout(woken, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *woken = false;
    }
}

/// The server side: a thread accepting connections until dropped.
pub struct ControlServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    /// The listener, to wake its accept when dropped.
    waking: UnixListener,
}

/// Talking to the host failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No host listens.
    #[error("no phantom host is running on {}", .0.display())]
    NoHost(PathBuf),
    /// The connection failed or the reply did not parse.
    #[error("the host running {} did not answer: {why}", data.display())]
    Broken {
        /// The data directory.
        data: PathBuf,
        /// Why.
        why: String,
    },
    /// The host answered with an error.
    #[error("{0}")]
    Refused(String),
}

/// The path to use for `name` in `dir`: the plain path, or one through an
/// open descriptor of `dir` when the plain one is too long for `sun_path`.
fn socket_address(dir: &Path, name: &str) -> std::io::Result<(PathBuf, Option<std::fs::File>)> {
    let plain = dir.join(name);
    if plain.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok((plain, None));
    }
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    let via = PathBuf::from(format!("/proc/self/fd/{}/{name}", handle.as_raw_fd()));
    Ok((via, Some(handle)))
}

impl ControlServer {
    /// Binds the socket of `data` (the caller holds its lock, so a socket
    /// file left there is stale) and starts serving. Requests arrive on the
    /// returned receiver.
    pub fn start(
        data: &DataDir,
        _lock: &DataLock,
        waker: Waker,
    ) -> std::io::Result<(ControlServer, mpsc::Receiver<PendingRequest>)> {
        let dir = data.path();
        let final_path = dir.join(SOCKET_NAME);
        let _ = std::fs::remove_file(&final_path);
        // Bound under a temporary name and made 0600 before it gets its
        // real one, so it is never reachable with wider permissions.
        let tmp_name = format!("{SOCKET_NAME}.{}", std::process::id());
        let (tmp_addr, _dir_handle) = socket_address(dir, &tmp_name)?;
        let _ = std::fs::remove_file(dir.join(&tmp_name));
        let listener = UnixListener::bind(&tmp_addr)?;
        std::fs::set_permissions(dir.join(&tmp_name), std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(dir.join(&tmp_name), &final_path)?;
        // Accepts block: a request is taken the instant it arrives (a poll
        // every 25 ms cost a migration's adoption 12 ms on average). Drop
        // wakes the accept with shutdown(2) of this clone.
        let waking = listener.try_clone()?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("phantom-control".into())
                .spawn(move || serve(listener, tx, stop, waker))?
        };
        Ok((
            ControlServer {
                stop,
                thread: Some(thread),
                path: final_path,
                waking,
            },
            rx,
        ))
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        wake_accept(&self.waking);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Wakes a thread blocked in `accept` on `listener` (or a clone of it):
/// on Linux, shutdown(2) of a listening socket makes its accepts fail.
pub(crate) fn wake_accept(listener: &impl std::os::fd::AsFd) {
    let _ = rustix::net::shutdown(listener, rustix::net::Shutdown::Both);
}

fn serve(
    listener: UnixListener,
    requests: mpsc::Sender<PendingRequest>,
    stop: Arc<AtomicBool>,
    waker: Waker,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let requests = requests.clone();
                let waker = waker.clone();
                let _ = std::thread::Builder::new()
                    .name("phantom-control-conn".into())
                    .spawn(move || connection(stream, requests, waker));
            }
            // Woken by `wake_accept` (the loop sees the stop), or a
            // transient failure (out of descriptors): a short pause.
            Err(_) => std::thread::sleep(ACCEPT_RETRY),
        }
    }
}

fn connection(stream: UnixStream, requests: mpsc::Sender<PendingRequest>, waker: Waker) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_REQUEST_BYTES as u64)
            .read_line(&mut line)
        {
            Ok(0) | Err(_) => return,
            // A request longer than the limit: the connection ends.
            Ok(_) if !line.ends_with('\n') && line.len() >= MAX_REQUEST_BYTES => return,
            Ok(_) => {}
        }
        let reply = match parse_request(line.trim()) {
            Ok(request) => {
                let (tx, rx) = mpsc::channel();
                // A send waits for its queue (backpressure), then for the
                // sync that makes it durable.
                let sending = matches!(request, Request::Send { .. });
                let wait = match &request {
                    Request::Migrate { .. } => MIGRATE_TIMEOUT,
                    Request::Send { timeout_ms, .. } => {
                        timeout_ms.map_or(SEND_QUEUE_TIMEOUT, Duration::from_millis) + REPLY_TIMEOUT
                    }
                    _ => REPLY_TIMEOUT,
                };
                let stopping =
                    json!({"ok": false, "stopping": true, "error": "the host is stopping"});
                if requests
                    .send(PendingRequest { request, reply: tx })
                    .is_err()
                {
                    stopping
                } else {
                    waker.wake();
                    match rx.recv_timeout(wait) {
                        Ok(reply) => reply,
                        // The drive loop ended with the request unanswered.
                        Err(mpsc::RecvTimeoutError::Disconnected) => stopping,
                        Err(mpsc::RecvTimeoutError::Timeout) if sending => {
                            json!({"ok": false, "error":
                            "the host did not acknowledge in time: the messages may or may not have been delivered"})
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            json!({"ok": false, "error": "the host did not answer in time"})
                        }
                    }
                }
            }
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        let mut out = reply.to_string();
        out.push('\n');
        if writer.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

/// Parses a request line. `op` names the operation (`command` and `cmd`
/// are accepted for it too).
fn parse_request(line: &str) -> Result<Request, serde_json::Error> {
    let mut value: Value = serde_json::from_str(line)?;
    if let Value::Object(map) = &mut value
        && !map.contains_key("op")
        && let Some(op) = map.remove("command").or_else(|| map.remove("cmd"))
    {
        map.insert("op".into(), op);
    }
    serde_json::from_value(value)
}

/// A connection to the host running a data directory, for many requests
/// one after the other (the benchmarks' clients).
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    data: PathBuf,
}

impl Client {
    /// Connects to the host running `data`.
    pub fn connect(data: &Path) -> Result<Client, ControlError> {
        let (addr, _handle) = socket_address(data, SOCKET_NAME)
            .map_err(|_| ControlError::NoHost(data.to_path_buf()))?;
        let stream =
            UnixStream::connect(&addr).map_err(|_| ControlError::NoHost(data.to_path_buf()))?;
        let writer = stream.try_clone().map_err(|e| ControlError::Broken {
            data: data.to_path_buf(),
            why: e.to_string(),
        })?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
            data: data.to_path_buf(),
        })
    }

    /// Sends one request and reads its reply (whose `ok` was true).
    pub fn request(&mut self, request: &Request) -> Result<Value, ControlError> {
        let broken = |why: String| ControlError::Broken {
            data: self.data.clone(),
            why,
        };
        let mut line = serde_json::to_string(request).map_err(|e| broken(e.to_string()))?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| broken(e.to_string()))?;
        let mut reply = String::new();
        self.reader
            .read_line(&mut reply)
            .map_err(|e| broken(e.to_string()))?;
        let value: Value =
            serde_json::from_str(reply.trim()).map_err(|e| broken(format!("bad reply: {e}")))?;
        if value["ok"] != json!(true) {
            return Err(ControlError::Refused(
                value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
            ));
        }
        Ok(value)
    }
}

/// Sends `request` to the host running `data` and returns its reply (whose
/// `ok` was true).
pub fn request(data: &Path, request: &Request) -> Result<Value, ControlError> {
    request_within(data, request, REPLY_TIMEOUT + Duration::from_secs(5))
}

/// `request`, giving up on the reply after `timeout` (a host can be inside
/// a long guest call).
pub fn request_within(
    data: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Value, ControlError> {
    let broken = |why: String| ControlError::Broken {
        data: data.to_path_buf(),
        why,
    };
    let (addr, _handle) =
        socket_address(data, SOCKET_NAME).map_err(|_| ControlError::NoHost(data.to_path_buf()))?;
    let mut stream = match UnixStream::connect(&addr) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NoHost(data.to_path_buf()));
        }
        Err(e) => return Err(broken(e.to_string())),
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let mut line = serde_json::to_string(request).map_err(|e| broken(e.to_string()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| broken(e.to_string()))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| broken(e.to_string()))?;
    let value: Value =
        serde_json::from_str(reply.trim()).map_err(|e| broken(format!("bad reply: {e}")))?;
    if value["stopping"] == json!(true) {
        // As good as no host: the next one will see the request's effects
        // on disk (a spawned process) or there is nothing to checkpoint.
        return Err(ControlError::NoHost(data.to_path_buf()));
    }
    if value["ok"] != json!(true) {
        let why = value["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string();
        return Err(ControlError::Refused(why));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(r#"{"op":"checkpoint"}"#).unwrap(),
            Request::Checkpoint
        );
        assert_eq!(
            parse_request(r#"{"command":"status"}"#).unwrap(),
            Request::Status
        );
        assert_eq!(
            parse_request(r#"{"cmd":"adopt","name":"x"}"#).unwrap(),
            Request::Adopt { name: "x".into() }
        );
        assert_eq!(
            parse_request(r#"{"op":"devices","name":"x"}"#).unwrap(),
            Request::Devices { name: "x".into() }
        );
        assert!(parse_request(r#"{"op":"adopt"}"#).is_err());
        assert!(parse_request("[1]").is_err());
        assert!(parse_request("").is_err());
    }

    #[test]
    fn a_blocked_accept_is_woken_when_dropped() {
        let unix = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(unix.path().join("s")).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (w1, w2) = (l.try_clone().unwrap(), tcp.try_clone().unwrap());
        let t1 = std::thread::spawn(move || l.accept().is_err());
        let t2 = std::thread::spawn(move || tcp.accept().is_err());
        std::thread::sleep(Duration::from_millis(50));
        wake_accept(&w1);
        wake_accept(&w2);
        assert!(t1.join().unwrap(), "the unix accept failed once woken");
        assert!(t2.join().unwrap(), "the tcp accept failed once woken");
    }
}
