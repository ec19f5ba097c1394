//! Serial ports (issue 12): the guest `serial-echo` against the simulated
//! loopback in the host (policy, journaled reads, restore), and against a
//! pty pair made by the test through real `phantom run`s (lines both ways,
//! `kill -9` mid-stream, a full port, a port gone after a restore).

use std::io::{Read, Write};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use super::common::*;

/// A loopback the tests open by hand (`open loop`), at 9600 or 115200.
const LOOPBACK: &str = "serial.loop = { port = \"sim:loopback\", bauds = [9600, 115200] }\n";

#[test]
fn a_serial_import_without_a_grant_is_refused_at_spawn() {
    let data = data_dir();
    let manifest = data.path().join("manifest.toml");
    std::fs::write(
        &manifest,
        "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\n",
    )
    .unwrap();
    let o = run(&[
        "spawn",
        phantom_tests::SERIAL_ECHO,
        "--data",
        s(data.path()),
        "--name",
        "dev",
        "--devices",
        s(&manifest),
    ]);
    fails_with(&o, "imports `phantom:devices/serial@0.1.0`");
    assert!(!data.path().join("dev").exists());
    for (text, needle) in [
        (
            "serial.log = { port = \"linux:/dev/ttyUSB0\" }\n",
            "`baud = N`",
        ),
        (
            "serial.log = { port = \"linux:/dev/ttyUSB0\", baud = 0 }\n",
            "not a baud rate",
        ),
        (
            "serial.log = { port = \"sim:uart\", baud = 9600 }\n",
            "sim:loopback",
        ),
    ] {
        std::fs::write(&manifest, text).unwrap();
        let o = run(&[
            "spawn",
            phantom_tests::SERIAL_ECHO,
            "--data",
            s(data.path()),
            "--name",
            "dev",
            "--devices",
            s(&manifest),
        ]);
        fails_with(&o, "invalid device manifest");
        fails_with(&o, "line 1");
        fails_with(&o, needle);
        assert!(!data.path().join("dev").exists());
    }
}

mod in_process {
    use phantom_devices::sim::SerialOp;
    use phantom_runtime::process::Process;
    use phantom_runtime::runtime::{Runtime, RuntimeConfig};

    use super::super::common::*;
    use super::LOOPBACK;

    use crate::common::say_step as say;

    fn spawn(rt: &Runtime, data: &std::path::Path) -> Process {
        let (p, out) = spawn_in_process(
            rt,
            phantom_tests::SERIAL_ECHO,
            data,
            "dev",
            LOOPBACK,
            None,
            &[],
        );
        assert_eq!(out, "link: error not-granted\n");
        p
    }

    fn log(p: &Process) -> Vec<SerialOp> {
        p.devices()
            .sim()
            .serial_ports()
            .get("loopback")
            .map(|port| port.log())
            .unwrap_or_default()
    }

    /// Runs `p`'s turns until `until` has been printed.
    fn run_until(rt: &Runtime, p: &mut Process, until: &str) -> String {
        turns_until(rt, p, |text| text.contains(until))
    }

    #[test]
    fn a_loopback_port_through_the_host() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path());
        assert_eq!(say(&rt, &mut p, "open loop"), "ok 1\n");
        assert_eq!(say(&rt, &mut p, "open loop"), "error already-open\n");
        assert_eq!(say(&rt, &mut p, "send 1 hello"), "ok sent\n");
        assert_eq!(say(&rt, &mut p, "read 1"), "read hello\\n\n");
        assert_eq!(say(&rt, &mut p, "read 1"), "read \n", "nothing waits");
        assert_eq!(say(&rt, &mut p, "baud 1 115200"), "ok baud 115200\n");
        assert_eq!(
            say(&rt, &mut p, "send-big 1 65537"),
            "error too-long\n",
            "one write is at most 64 KiB"
        );
        assert_eq!(say(&rt, &mut p, "watch 1 on"), "ok watch on\n");
        assert_eq!(say(&rt, &mut p, "send 1 abc"), "ok sent\n");
        assert_eq!(run_until(&rt, &mut p, "data 1"), "data 1 abc\\n\n");
        assert_eq!(say(&rt, &mut p, "close 1"), "closed true\n");
        assert_eq!(say(&rt, &mut p, "send 1 x"), "error not-open\n");
        assert_eq!(say(&rt, &mut p, "close 1"), "closed false\n");
        assert_eq!(
            log(&p),
            [
                SerialOp::Open { baud: 9600 },
                SerialOp::Write(b"hello\n".to_vec()),
                SerialOp::Read(b"hello\n".to_vec()),
                SerialOp::SetBaud { baud: 115200 },
                SerialOp::Write(b"abc\n".to_vec()),
                SerialOp::Read(b"abc\n".to_vec()),
            ]
        );
        // Open again after the close: a new number.
        assert_eq!(say(&rt, &mut p, "open loop"), "ok 2\n");
    }

    /// A rate change happens after the writes before it, even in one
    /// call: they leave at the rate they were written at.
    #[test]
    fn a_rate_change_waits_for_the_writes_before_it() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path());
        assert_eq!(say(&rt, &mut p, "open loop"), "ok 1\n");
        assert_eq!(say(&rt, &mut p, "switch 1 115200"), "ok switched 115200\n");
        assert_eq!(say(&rt, &mut p, "send 1 fast"), "ok sent\n");
        assert_eq!(
            log(&p),
            [
                SerialOp::Open { baud: 9600 },
                SerialOp::Write(b"rate 115200\n".to_vec()),
                SerialOp::SetBaud { baud: 115200 },
                SerialOp::Write(b"fast\n".to_vec()),
            ]
        );
    }

    /// Each kind of ungranted access returns the policy error, and the
    /// port sees no operation for it.
    #[test]
    fn ungranted_serial_access_is_refused_and_touches_nothing() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path());
        assert_eq!(say(&rt, &mut p, "open gps"), "error not-granted\n");
        assert!(log(&p).is_empty(), "no port was even made");
        assert_eq!(say(&rt, &mut p, "open loop"), "ok 1\n");
        let before = log(&p);
        for (line, want) in [
            ("baud 1 57600", "error baud-not-allowed\n"),
            ("baud 1 0", "error baud-not-allowed\n"),
            ("open link", "error not-granted\n"),
            ("send 7 x", "error not-open\n"),
            ("read 7", "error not-open\n"),
            ("watch 7 on", "error not-open\n"),
        ] {
            assert_eq!(say(&rt, &mut p, line), want, "{line}");
        }
        assert_eq!(log(&p), before);
    }

    /// After a restore the port is opened again at the rate the guest set
    /// and stays watched; what the journal's tail read (a `read`, watched
    /// bytes) is replayed from the journal, touching no port.
    #[test]
    fn a_port_comes_back_after_a_restore() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path());
        assert_eq!(say(&rt, &mut p, "open loop"), "ok 1\n");
        assert_eq!(say(&rt, &mut p, "baud 1 115200"), "ok baud 115200\n");
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        // In the journal's tail only: a read, then watched bytes.
        assert_eq!(say(&rt, &mut p, "send 1 one"), "ok sent\n");
        assert_eq!(say(&rt, &mut p, "read 1"), "read one\\n\n");
        assert_eq!(say(&rt, &mut p, "watch 1 on"), "ok watch on\n");
        assert_eq!(say(&rt, &mut p, "send 1 two"), "ok sent\n");
        assert_eq!(run_until(&rt, &mut p, "data 1"), "data 1 two\\n\n");
        p.journal_log().unwrap().sync().unwrap();
        drop(p);
        let (mut p, warnings) = Process::restore(&rt, &data.path().join("dev")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            log(&p),
            [SerialOp::Open { baud: 115200 }],
            "re-opened at the rate set; the replay read nothing and wrote nothing again"
        );
        assert_eq!(say(&rt, &mut p, "send 1 three"), "ok sent\n");
        assert_eq!(
            run_until(&rt, &mut p, "data 1"),
            "data 1 three\\n\n",
            "still watched"
        );
    }

    /// A port gone while running, or after a restore (its grant taken out
    /// of the stored manifest), is `device-lost` on next use, not a trap.
    #[test]
    fn a_port_gone_is_device_lost_never_a_trap() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path());
        assert_eq!(say(&rt, &mut p, "open loop"), "ok 1\n");
        p.unplug_devices();
        assert_eq!(say(&rt, &mut p, "read 1"), "error device-lost\n");
        // The host says so, naming the port and why.
        let warnings = p.take_device_warnings();
        assert!(
            warnings.iter().any(|w| w.contains("`loop` is gone")),
            "{warnings:?}"
        );
        assert_eq!(say(&rt, &mut p, "baud 1 115200"), "error device-lost\n");
        // (The journal's tail would replay `baud` against the changed
        // manifest below: a checkpoint first.)
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        drop(p);
        let dir = data.path().join("dev");
        std::fs::write(
            dir.join("devices.toml"),
            "serial.other = { port = \"sim:loopback\", baud = 9600 }\n",
        )
        .unwrap();
        let (mut p, warnings) = Process::restore(&rt, &dir).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("`loop` is gone")),
            "{warnings:?}"
        );
        assert_eq!(say(&rt, &mut p, "send 1 x"), "error device-lost\n");
        assert_eq!(say(&rt, &mut p, "read 1"), "error device-lost\n");
        assert_eq!(say(&rt, &mut p, "close 1"), "closed true\n");
    }
}

/// A pty pair made by the test: the master (the far end, read and written
/// by the test) and the slave, held open by the test so the pty keeps its
/// raw settings and the bytes written while no host runs, and so its
/// number is not handed out again while a host may open its path. Both
/// are close-on-exec: the tests run in parallel, and a master inherited
/// by another test's `phantom` would keep this pty alive.
struct Pty {
    master: Option<nix::pty::PtyMaster>,
    _slave: std::fs::File,
    path: String,
    /// Bytes read from the master, not yet a whole line.
    pending: Vec<u8>,
}

impl Pty {
    fn new() -> Pty {
        use nix::fcntl::OFlag;
        use nix::sys::termios;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let master =
            nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
        nix::pty::grantpt(&master).unwrap();
        nix::pty::unlockpt(&master).unwrap();
        let path = nix::pty::ptsname_r(&master).unwrap();
        // Not the test's controlling terminal; std adds close-on-exec.
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlag::O_NOCTTY.bits())
            .open(&path)
            .unwrap();
        let mut raw = termios::tcgetattr(slave.as_raw_fd()).unwrap();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(slave.as_raw_fd(), termios::SetArg::TCSANOW, &raw).unwrap();
        Pty {
            master: Some(master),
            _slave: slave,
            path,
            pending: Vec::new(),
        }
    }

    fn master(&mut self) -> &mut nix::pty::PtyMaster {
        self.master.as_mut().expect("the master is open")
    }

    /// Reads what the master has, waiting up to 100 ms for it.
    fn read_some(&mut self) -> Vec<u8> {
        use nix::poll::{PollFd, PollFlags, poll};
        use std::os::fd::AsRawFd;
        let fd = self.master().as_raw_fd();
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        if poll(&mut fds, 100).unwrap_or(0) == 0 {
            return Vec::new();
        }
        let mut buf = [0u8; 4096];
        match self.master().read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(e) => panic!("reading the pty's master: {e}"),
        }
    }

    /// The next line the master receives, waiting up to 30 s.
    fn next_line(&mut self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            let more = self.read_some();
            self.pending.extend_from_slice(&more);
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master().write_all(bytes).unwrap();
        self.master().flush().unwrap();
    }

    /// Closes the master: the slave's path is gone, and a host that holds
    /// the slave open is hung up.
    fn hang_up(&mut self) {
        self.master.take();
    }

    fn manifest(&self, data: &std::path::Path) -> std::path::PathBuf {
        let manifest = data.join("manifest.toml");
        std::fs::write(
            &manifest,
            format!(
                "serial.link = {{ port = \"linux:{}\", baud = 115200 }}\n",
                self.path
            ),
        )
        .unwrap();
        manifest
    }
}

fn spawn_echo(data: &std::path::Path, manifest: &std::path::Path) {
    let o = run(&[
        "spawn",
        phantom_tests::SERIAL_ECHO,
        "--data",
        s(data),
        "--name",
        "dev",
        "--devices",
        s(manifest),
    ]);
    ok(&o);
    assert_eq!(stdout(&o), "", "init opened and watched `link`");
}

/// A `phantom run` with console input for `dev`; its stdout lines come
/// through the receiver.
fn start_host(data: &std::path::Path) -> (HostChild, std::process::ChildStdin, Receiver<String>) {
    let mut host = HostChild(
        phantom()
            .args(["run", "--data", s(data), "--input", "dev"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = host.stdout.take().unwrap();
    let stdin = host.stdin.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (host, stdin, rx)
}

/// Waits up to 30 s for a line ending with `want`; returns the lines seen.
fn wait_for(rx: &Receiver<String>, want: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.ends_with(want);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("waited for {want:?}; saw {seen:?}"),
        }
    }
}

/// Lines written on the master arrive at the guest (journaled as they
/// arrive), its answers come out on the master; `kill -9` of the host in
/// mid-stream (half a line received) and a new `phantom run` lose no byte
/// and deliver none twice: the line numbers the guest keeps in memory go
/// on, and the half line is completed by what is written while no host
/// runs.
///
/// The rule for writes in flight: an answer is written once the call that
/// made it is durable, and recorded as released afterwards; one written
/// but not yet recorded when the host dies is written again by the next
/// run (at least once). Here that can only be the last answer before the
/// kill, so the test accepts exactly that one twice; a receiver drops it
/// by its line number (the idempotency key the guest gives its answers).
#[test]
fn serial_through_a_pty_survives_kill_9_mid_stream() {
    let data = data_dir();
    let mut pty = Pty::new();
    spawn_echo(data.path(), &pty.manifest(data.path()));

    let (mut host, stdin, console) = start_host(data.path());
    for k in 1..=5 {
        pty.send(format!("line {k}\r\n").as_bytes());
        let got = pty
            .next_line()
            .unwrap_or_else(|| panic!("no answer to line {k}"));
        assert_eq!(got, format!("{k} LINE {k}"));
    }
    wait_for(&console, "echo 5 line 5");
    // Half a line: once the guest has logged it (console output leaves
    // only once the call is durable, and the bytes' admission is journaled
    // before the call), it is the process's, whatever happens to the host.
    pty.send(b"par");
    wait_for(&console, "partial 3");
    host.kill().unwrap();
    host.wait().unwrap();
    drop(stdin);

    // While no host runs, the rest of the line and another one wait in
    // the pty.
    pty.send(b"tial\nline 7\n");
    let (mut host, stdin, console) = start_host(data.path());
    wait_for(&console, "echo 7 line 7");
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("7 LINE 7") {
        let line = pty.next_line();
        got.push(line.unwrap_or_else(|| panic!("no more answers; got {got:?}")));
    }
    if got.first().map(String::as_str) == Some("5 LINE 5") {
        // The answer in flight at the kill, written again.
        got.remove(0);
    }
    assert_eq!(got, ["6 PARTIAL", "7 LINE 7"]);
    host.kill().unwrap();
    host.wait().unwrap();
    drop(stdin);

    // The journal holds the bytes as they arrived.
    let v: serde_json::Value = serde_json::from_str(&stdout(ok(&run(&[
        "journal",
        "--data",
        s(data.path()),
        "dev",
        "--json",
    ]))))
    .unwrap();
    let text = v.to_string();
    assert!(text.contains("serial-data"), "{text}");
}

/// A port whose far end does not read fills up: the host writes what fits
/// and goes on (its control socket answers at once); the rest follows, in
/// order, once the far end reads. The process's later outputs wait behind
/// the write (effects leave in order, as behind a message to a full
/// queue).
#[test]
fn a_full_port_never_holds_the_host() {
    let data = data_dir();
    let mut pty = Pty::new();
    spawn_echo(data.path(), &pty.manifest(data.path()));
    let (_host, mut stdin, console) = start_host(data.path());
    // Port 1 is `link`. 60 KiB is more than a pty holds (about 14 KiB).
    stdin.write_all(b"send-big 1 61440\nseq\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let ps = run(&["ps", "--data", s(data.path()), "--json"]);
    ok(&ps);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the host waited on the port"
    );
    assert!(stdout(&ps).contains("dev"), "{}", stdout(&ps));
    assert!(
        console.try_recv().is_err(),
        "the call's console output leaves after its write"
    );
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 61440 && Instant::now() < deadline {
        got.extend(pty.read_some());
    }
    assert_eq!(got.len(), 61440);
    assert!(got.iter().all(|&b| b == b'x'));
    wait_for(&console, "ok sent");
    wait_for(&console, "seq 0");
    drop(stdin);
}

/// A pty that is gone when the host comes back (its master closed, so its
/// path is gone): the restore warns naming it, and the guest gets
/// `device-lost` on its next use, never a trap.
#[test]
fn a_pty_gone_after_a_restore_is_device_lost() {
    let data = data_dir();
    let mut pty = Pty::new();
    spawn_echo(data.path(), &pty.manifest(data.path()));
    let (mut host, stdin, _console) = start_host(data.path());
    pty.send(b"hello\n");
    assert_eq!(pty.next_line().unwrap(), "1 HELLO");
    host.kill().unwrap();
    host.wait().unwrap();
    drop(stdin);
    pty.hang_up();

    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "dev",
            "--until-idle",
        ],
        "send 1 again\nread 1\nbaud 1 115200\nseq\n",
    );
    ok(&o);
    let text = stdout(&o);
    assert_eq!(
        text.matches("error device-lost").count(),
        3,
        "{text}\n{}",
        stderr(&o)
    );
    assert!(text.contains("seq 1"), "{text}");
    assert!(
        stderr(&o).contains("device `link` is gone"),
        "{}",
        stderr(&o)
    );
}
