//! The control socket: how commands talk to the host running a data
//! directory. A Unix socket next to the lock file, JSON lines, mode 0600.
//!
//! ```text
//!   phantom checkpoint ─┐                         ┌─ server thread (epoll): every
//!   phantom spawn ──────┼─► DATA/.control.sock ───┤  connection; a line in, a
//!   phantom ps ─────────┘   {"op":"checkpoint"}   │  request to the drive loop;
//!                           ◄── {"ok":true,...}   └─ answers from any thread
//!                                                    (outbox + eventfd) out
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
//! to a call's timeout; a `send` is answered by the journal's writer right
//! after the sync that makes it durable, not by the drive loop. One thread
//! serves every connection (a thread per connection cost two extra thread
//! wake-ups per request: 16 clients sending one message at a time went from
//! 35k to 40k/s), each connection's requests answered one at a time, in
//! order. (Writing each answer to the socket from the thread that has it,
//! the journal writer for a send, saved no measurable time for one client
//! and cost 10 % with 16, by delaying the writer's next sync: answers go
//! through the server thread.)

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, epoll, eventfd};

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
        /// An idempotency key (32 hex digits, `journal::valid_outside_key`):
        /// sent again with the same key and messages (after a host died
        /// under the request), messages the process already took are not
        /// delivered again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
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
    pub reply: ReplyTo,
}

/// Where a request's reply goes: a channel (in-process callers), or the
/// control socket's connection it came on. Any thread may answer (the
/// drive loop, the journal's writer once a send is durable, a migration
/// worker); the first answer counts. A connection's request dropped
/// unanswered (the drive loop ended) is answered `stopping`.
#[derive(Clone)]
pub struct ReplyTo(Route);

#[derive(Clone)]
enum Route {
    Channel(mpsc::Sender<Reply>),
    Conn(Arc<ConnReply>),
}

impl ReplyTo {
    /// A reply that arrives on the returned receiver.
    pub fn channel() -> (ReplyTo, mpsc::Receiver<Reply>) {
        let (tx, rx) = mpsc::channel();
        (ReplyTo(Route::Channel(tx)), rx)
    }

    /// Answers the request (Err: nobody waits for the answer any more).
    pub fn send(&self, value: Reply) -> Result<(), Reply> {
        match &self.0 {
            Route::Channel(tx) => tx.send(value).map_err(|e| e.0),
            Route::Conn(c) => {
                c.answer(value);
                Ok(())
            }
        }
    }
}

/// The answer to one request of one connection.
struct ConnReply {
    outbox: Arc<Outbox>,
    conn: u64,
    serial: u64,
    answered: AtomicBool,
}

impl ConnReply {
    fn answer(&self, value: Reply) {
        if !self.answered.swap(true, Ordering::AcqRel) {
            self.outbox.push(self.conn, self.serial, value);
        }
    }
}

impl Drop for ConnReply {
    fn drop(&mut self) {
        self.answer(stopping());
    }
}

/// A reply line, or why it is not one (none at all: the host went away).
fn parse_reply(reply: &str) -> Result<Value, String> {
    if reply.trim().is_empty() {
        return Err(
            "the host closed the connection without answering (it stopped, or was killed)".into(),
        );
    }
    serde_json::from_str(reply.trim()).map_err(|e| format!("bad reply: {e}"))
}

fn stopping() -> Value {
    json!({"ok": false, "stopping": true, "error": "the host is stopping"})
}

/// Answers on their way to the server thread, which writes them out; an
/// eventfd wakes it (once per batch: only the push into an empty box
/// writes it).
struct Outbox {
    answers: Mutex<Vec<(u64, u64, Reply)>>,
    event: OwnedFd,
}

impl Outbox {
    fn push(&self, conn: u64, serial: u64, value: Reply) {
        let mut a = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = a.is_empty();
        a.push((conn, serial, value));
        drop(a);
        if was_empty {
            self.wake();
        }
    }

    fn take(&self) -> Vec<(u64, u64, Reply)> {
        std::mem::take(&mut *self.answers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn wake(&self) {
        let _ = rustix::io::write(&self.event, &1u64.to_ne_bytes());
    }
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

/// The server side: one thread serving every connection (epoll) until
/// dropped.
pub struct ControlServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    outbox: Arc<Outbox>,
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
        listener.set_nonblocking(true)?;
        let outbox = Arc::new(Outbox {
            answers: Mutex::new(Vec::new()),
            event: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        });
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &epoll,
            &listener,
            epoll::EventData::new_u64(LISTENER),
            epoll::EventFlags::IN,
        )?;
        epoll::add(
            &epoll,
            &outbox.event,
            epoll::EventData::new_u64(OUTBOX),
            epoll::EventFlags::IN,
        )?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = Server {
            epoll,
            listener,
            outbox: outbox.clone(),
            requests: tx,
            waker,
            stop: stop.clone(),
            conns: HashMap::new(),
            next_id: FIRST_CONN,
            next_serial: 0,
        };
        let thread = std::thread::Builder::new()
            .name("phantom-control".into())
            .spawn(move || server.run())?;
        Ok((
            ControlServer {
                stop,
                thread: Some(thread),
                path: final_path,
                outbox,
            },
            rx,
        ))
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.outbox.wake();
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

/// epoll tokens: the listener, the outbox's eventfd, then connections.
const LISTENER: u64 = 0;
const OUTBOX: u64 = 1;
const FIRST_CONN: u64 = 2;
/// A connection with nothing in flight and nothing sent for this long is
/// closed.
const IDLE: Duration = Duration::from_secs(30);

/// One connection: bytes read but not yet a whole request, bytes to
/// write, and the one request in flight (requests on a connection are
/// answered in order, one at a time).
struct Conn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    inflight: Option<Inflight>,
    active: Instant,
    /// The peer closed its side: no more requests come.
    closed: bool,
    /// Reading or writing failed: the connection ends.
    broken: bool,
    interest: epoll::EventFlags,
}

struct Inflight {
    serial: u64,
    deadline: Instant,
    on_timeout: Value,
}

struct Server {
    epoll: OwnedFd,
    listener: UnixListener,
    outbox: Arc<Outbox>,
    requests: mpsc::Sender<PendingRequest>,
    waker: Waker,
    stop: Arc<AtomicBool>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    next_serial: u64,
}

impl Server {
    fn run(&mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
        let mut buf = vec![0u8; 64 << 10];
        let mut touched: Vec<u64> = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            let wait = self
                .conns
                .values()
                .map(|c| match &c.inflight {
                    Some(f) => f.deadline,
                    None => c.active + IDLE,
                })
                .min()
                .map_or(IDLE, |t| t.saturating_duration_since(now))
                .min(IDLE);
            let timeout = rustix::time::Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&timeout),
            ) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                // Nothing else is expected; a pause keeps a persistent
                // failure from spinning.
                Err(_) => std::thread::sleep(Duration::from_millis(25)),
            }
            touched.clear();
            for ev in &events {
                // Copied out: the kernel's struct is packed.
                let (flags, data) = (ev.flags, ev.data);
                match data.u64() {
                    LISTENER => self.accept(&mut touched),
                    OUTBOX => {
                        let mut buf = [0u8; 8];
                        let _ = rustix::io::read(&self.outbox.event, &mut buf);
                    }
                    id => {
                        if let Some(c) = self.conns.get_mut(&id) {
                            if flags.intersects(
                                epoll::EventFlags::IN
                                    | epoll::EventFlags::HUP
                                    | epoll::EventFlags::RDHUP
                                    | epoll::EventFlags::ERR,
                            ) {
                                c.read(&mut buf);
                            }
                            touched.push(id);
                        }
                    }
                }
            }
            // Answers that arrived (any thread), in order per connection;
            // one that lost its connection or came after its timeout is
            // dropped.
            for (id, serial, value) in self.outbox.take() {
                if let Some(c) = self.conns.get_mut(&id)
                    && c.inflight.as_ref().is_some_and(|f| f.serial == serial)
                {
                    c.inflight = None;
                    c.queue(&value);
                    touched.push(id);
                }
            }
            let now = Instant::now();
            for (id, c) in &mut self.conns {
                if let Some(f) = &c.inflight
                    && now >= f.deadline
                {
                    let value = f.on_timeout.clone();
                    c.inflight = None;
                    c.queue(&value);
                    touched.push(*id);
                } else if c.inflight.is_none() && now >= c.active + IDLE {
                    c.broken = true;
                    touched.push(*id);
                }
            }
            touched.sort_unstable();
            touched.dedup();
            let mut woke = false;
            for &id in &touched {
                woke |= self.serve(id);
            }
            if woke {
                self.waker.wake();
            }
        }
        self.finish();
    }

    /// The host stops: what was answered leaves, every request still in
    /// flight is answered `stopping` (its client then goes on without a
    /// host), each connection given a moment to take it.
    fn finish(&mut self) {
        for (id, serial, value) in self.outbox.take() {
            if let Some(c) = self.conns.get_mut(&id)
                && c.inflight.as_ref().is_some_and(|f| f.serial == serial)
            {
                c.inflight = None;
                c.queue(&value);
            }
        }
        for c in self.conns.values_mut() {
            if c.inflight.take().is_some() {
                c.queue(&stopping());
            }
            if !c.output.is_empty()
                && c.stream.set_nonblocking(false).is_ok()
                && c.stream
                    .set_write_timeout(Some(Duration::from_millis(100)))
                    .is_ok()
            {
                let _ = (&c.stream).write_all(&c.output);
            }
        }
        self.conns.clear();
    }

    fn accept(&mut self, touched: &mut Vec<u64>) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let interest = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
                    if epoll::add(
                        &self.epoll,
                        &stream,
                        epoll::EventData::new_u64(id),
                        interest,
                    )
                    .is_err()
                    {
                        continue;
                    }
                    self.conns.insert(
                        id,
                        Conn {
                            stream,
                            input: Vec::new(),
                            output: Vec::new(),
                            inflight: None,
                            active: Instant::now(),
                            closed: false,
                            broken: false,
                            interest,
                        },
                    );
                    touched.push(id);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Out of descriptors, or the like: the listener stays
                // readable, so the next wait tries again; a pause keeps
                // that from spinning.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(25));
                    return;
                }
            }
        }
    }

    /// Starts the connection's next request if none is in flight, writes
    /// what it can, and closes it when it is over. True if a request went
    /// to the drive loop.
    fn serve(&mut self, id: u64) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        let mut sent = false;
        while c.inflight.is_none() && !c.broken {
            let Some(end) = c.input.iter().position(|&b| b == b'\n') else {
                if c.input.len() >= MAX_REQUEST_BYTES {
                    // A request longer than the limit: the connection ends.
                    c.broken = true;
                }
                break;
            };
            let line: Vec<u8> = c.input.drain(..=end).collect();
            c.active = Instant::now();
            let parsed = std::str::from_utf8(&line)
                .map_err(|e| e.to_string())
                .and_then(|l| parse_request(l.trim()).map_err(|e| e.to_string()));
            let request = match parsed {
                Ok(r) => r,
                Err(e) => {
                    c.queue(&json!({"ok": false, "error": format!("bad request: {e}")}));
                    continue;
                }
            };
            // A send waits for its queue (backpressure), then for the sync
            // that makes it durable.
            let (wait, on_timeout) = match &request {
                Request::Migrate { .. } => (
                    MIGRATE_TIMEOUT,
                    json!({"ok": false, "error": "the host did not answer in time"}),
                ),
                Request::Send { timeout_ms, .. } => (
                    timeout_ms.map_or(SEND_QUEUE_TIMEOUT, Duration::from_millis) + REPLY_TIMEOUT,
                    json!({"ok": false, "error":
                        "the host did not acknowledge in time: the messages may or may not have been delivered"}),
                ),
                _ => (
                    REPLY_TIMEOUT,
                    json!({"ok": false, "error": "the host did not answer in time"}),
                ),
            };
            self.next_serial += 1;
            let serial = self.next_serial;
            let reply = ReplyTo(Route::Conn(Arc::new(ConnReply {
                outbox: self.outbox.clone(),
                conn: id,
                serial,
                answered: AtomicBool::new(false),
            })));
            c.inflight = Some(Inflight {
                serial,
                deadline: Instant::now() + wait,
                on_timeout,
            });
            if let Err(mpsc::SendError(p)) = self.requests.send(PendingRequest { request, reply }) {
                // The drive loop is gone: answered at once, not on drop.
                c.inflight = None;
                if let Route::Conn(r) = &p.reply.0 {
                    r.answered.store(true, Ordering::Release);
                }
                c.queue(&stopping());
            } else {
                sent = true;
            }
        }
        c.flush();
        // A peer that closed sends nothing more and may be gone: its answer
        // in flight is written (what the socket takes) when it comes, and
        // the connection ends. It leaves epoll now: a hung-up socket is
        // reported ready again and again (level triggered) and would spin
        // this thread until then.
        let done = c.broken || (c.closed && c.inflight.is_none());
        if done || c.closed {
            if !c.interest.is_empty() {
                let _ = epoll::delete(&self.epoll, &c.stream);
                c.interest = epoll::EventFlags::empty();
            }
            if done {
                self.conns.remove(&id);
            }
            return sent;
        }
        let mut want = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        if !c.output.is_empty() {
            want |= epoll::EventFlags::OUT;
        }
        if want != c.interest
            && epoll::modify(&self.epoll, &c.stream, epoll::EventData::new_u64(id), want).is_ok()
        {
            c.interest = want;
        }
        sent
    }
}

impl Conn {
    /// Reads what is there (the socket is non-blocking; epoll is level
    /// triggered, so a read that did not fill `buf` took everything).
    fn read(&mut self, buf: &mut [u8]) {
        loop {
            match (&self.stream).read(buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    if n < buf.len() || self.input.len() > MAX_REQUEST_BYTES + buf.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
    }

    fn queue(&mut self, value: &Value) {
        let mut line = value.to_string();
        line.push('\n');
        self.output.extend_from_slice(line.as_bytes());
        self.active = Instant::now();
    }

    /// Writes what the socket takes now.
    fn flush(&mut self) {
        while !self.output.is_empty() {
            match (&self.stream).write(&self.output) {
                Ok(0) => {
                    self.broken = true;
                    return;
                }
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
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
        let value: Value = parse_reply(&reply).map_err(broken)?;
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
    let value: Value = parse_reply(&reply).map_err(broken)?;
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

    /// Held by the tests that start a server: one measures the CPU time of
    /// every thread named `phantom-control`.
    static ONE_SERVER: Mutex<()> = Mutex::new(());

    /// What a test server needs kept alive: the one-server guard, its
    /// directory and its lock.
    struct Kept {
        _one: std::sync::MutexGuard<'static, ()>,
        _dir: tempfile::TempDir,
        _lock: DataLock,
    }

    /// Starts a server of a new data directory (holding `ONE_SERVER`):
    /// what to keep, the server, its requests and its socket.
    fn start_server() -> (Kept, ControlServer, mpsc::Receiver<PendingRequest>, PathBuf) {
        let one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
        let t = tempfile::tempdir().unwrap();
        let data = DataDir::create(t.path()).unwrap();
        let lock = data.lock().unwrap();
        let (server, rx) = ControlServer::start(&data, &lock, Waker::default()).unwrap();
        let sock = t.path().join(SOCKET_NAME);
        let kept = Kept {
            _one: one,
            _dir: t,
            _lock: lock,
        };
        (kept, server, rx, sock)
    }

    /// CPU time (clock ticks) of this process's threads named `name`.
    fn thread_ticks(name: &str) -> u64 {
        let mut total = 0;
        let mut found = false;
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // After the command's closing parenthesis: state is field 3,
            // utime and stime fields 14 and 15.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            total += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
            found = true;
        }
        assert!(found, "no thread named {name}");
        total
    }

    fn exchange(path: &Path, line: &str) -> Value {
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    }

    /// Requests are answered in order per connection, from any thread, a
    /// bad line gets an error, a peer that hangs up while its request is in
    /// flight costs no CPU while it waits, and a request still in flight
    /// when the server stops is answered `stopping`.
    #[test]
    fn the_server_answers_in_order_from_any_thread_and_idles_for_gone_peers() {
        let (_kept, server, rx, sock) = start_server();
        // Answered from another thread, in the order asked.
        let answerer = std::thread::spawn(move || {
            let mut n = 0;
            while let Ok(p) = rx.recv() {
                n += 1;
                let reply = p.reply;
                let request = format!("{:?}", p.request);
                std::thread::spawn(move || {
                    let _ = reply.send(json!({"ok": true, "n": n, "request": request}));
                });
                if n == 3 {
                    // The next two are held, never answered while the
                    // server runs.
                    let held = (rx.recv().ok(), rx.recv().ok());
                    return Some((held, rx));
                }
            }
            None
        });
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"{\"op\":\"status\"}\nnot json\n{\"op\":\"checkpoint\"}\n")
            .unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            lines.push(serde_json::from_str::<Value>(&l).unwrap());
        }
        assert_eq!(lines[0]["n"], 1, "{lines:?}");
        assert!(lines[0]["request"].as_str().unwrap().contains("Status"));
        assert!(lines[1]["error"].as_str().unwrap().contains("bad request"));
        assert!(lines[2]["request"].as_str().unwrap().contains("Checkpoint"));
        assert_eq!(exchange(&sock, "{\"op\":\"status\"}\n")["n"], 3);
        // A request held in flight, its peer gone.
        let mut gone = UnixStream::connect(&sock).unwrap();
        gone.write_all(b"{\"op\":\"status\"}\n").unwrap();
        drop(gone);
        std::thread::sleep(Duration::from_millis(100));
        let before = thread_ticks("phantom-control");
        std::thread::sleep(Duration::from_millis(500));
        let spent = thread_ticks("phantom-control") - before;
        assert!(
            spent <= 5,
            "the server spun for {spent} ticks while waiting"
        );
        // Stopping: a request in flight is answered `stopping`.
        let mut waiting = UnixStream::connect(&sock).unwrap();
        waiting.write_all(b"{\"op\":\"status\"}\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let held = answerer.join().unwrap().unwrap();
        assert!(held.0.0.is_some() && held.0.1.is_some());
        drop(server);
        let mut l = String::new();
        BufReader::new(waiting).read_line(&mut l).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&l).unwrap()["stopping"],
            true,
            "{l}"
        );
        drop(held);
    }

    /// Answers from any thread stay whole and in order: many requests sent
    /// at once, each answered from its own thread, and answers larger than
    /// the socket takes at once while the client is not reading.
    #[test]
    fn answers_written_by_any_thread_stay_whole_and_in_order() {
        let (_kept, server, rx, sock) = start_server();
        const N: usize = 200;
        let answerer = std::thread::spawn(move || {
            for n in 0..N {
                let Ok(p) = rx.recv() else { return };
                // Every tenth answer is 1 MiB, far more than a socket
                // buffer holds.
                let big = "x".repeat(if n % 10 == 3 { 1 << 20 } else { 1 });
                std::thread::spawn(move || {
                    let _ = p.reply.send(json!({"ok": true, "n": n, "big": big}));
                });
            }
        });
        let mut s = UnixStream::connect(&sock).unwrap();
        let requests = "{\"op\":\"status\"}\n".repeat(N);
        s.write_all(requests.as_bytes()).unwrap();
        // Not reading yet: the large answers cannot go out at once.
        std::thread::sleep(Duration::from_millis(200));
        let mut r = BufReader::new(s);
        for n in 0..N {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            let v: Value = serde_json::from_str(&l).unwrap();
            assert_eq!(v["n"], n, "answer {n} out of order");
            let len = if n % 10 == 3 { 1 << 20 } else { 1 };
            assert_eq!(v["big"].as_str().unwrap().len(), len, "answer {n} cut");
        }
        answerer.join().unwrap();
        drop(server);
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
