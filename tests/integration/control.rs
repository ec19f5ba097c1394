//! The control socket: a Unix socket next to the lock file, JSON lines,
//! mode 0600. `phantom checkpoint` uses it and returns once the checkpoint
//! is durable; `spawn` hands processes to the running host through it
//! (`newcomer.rs`); `ps` asks it what runs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::common::*;

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(socket: &Path, line: &str) -> serde_json::Value {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(line.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap()
}

/// A counter running under a verbose host, once its socket listens;
/// returns the host, the socket and the host's log.
fn counter_host(data: &Path) -> (HostChild, std::path::PathBuf, std::path::PathBuf) {
    spawn(data, phantom_tests::COUNTER, "c", &["--period-ms", "5"]);
    let log = data.join("log");
    let host = start_logged_run(data, "1h", &log);
    let socket = data.join(".control.sock");
    wait_for("the socket appears", || socket.exists());
    (host, socket, log)
}

#[test]
fn checkpoint_through_the_socket_is_durable_when_it_returns() {
    // A long path: the socket's address goes through /proc/self/fd.
    let base = data_dir();
    let data = base.path().join(
        "a-directory-name-long-enough-that-the-socket-path-exceeds-sun-path-limits-of-108-bytes",
    );
    spawn(&data, phantom_tests::COUNTER, "c", &["--period-ms", "5"]);
    let socket = data.join(".control.sock");
    assert!(socket.as_os_str().len() > 108);
    let log = base.path().join("log");
    let mut host = start_logged_run(&data, "1h", &log);
    wait_for("the socket appears", || socket.exists());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    wait_for("the guest runs", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("count=2")
    });
    let o = run(&["checkpoint", "--data", s(&data), "--json"]);
    let reply: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
    let id = reply[0]["checkpoint"].as_u64().expect("a checkpoint id");
    assert!(id >= 2, "{reply}");
    assert_eq!(reply[0]["name"], "c");
    // Durable already: the file is there and verifies.
    let files = checkpoint_files(&data.join("c"));
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with(&format!("{id:020}.phi"))),
        "{files:?}"
    );
    ok(&run(&["fsck", "--data", s(&data)]));
    sigterm(&mut host);
    assert!(!socket.exists(), "the socket is removed at a graceful stop");
}

#[test]
fn bad_requests_get_errors_and_the_host_runs_on() {
    let data = data_dir();
    let (mut host, socket, log) = counter_host(data.path());
    for bad in [
        "not json",
        "{}",
        r#"{"op":"format-disk"}"#,
        r#"{"op":"adopt"}"#,
    ] {
        let reply = send(&socket, bad);
        assert_eq!(reply["ok"], false, "{bad}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains("bad request"),
            "{reply}"
        );
    }
    let reply = send(&socket, r#"{"op":"adopt","name":"../etc"}"#);
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("invalid process name"),
        "{reply}"
    );
    let reply = send(&socket, r#"{"op":"adopt","name":"nobody"}"#);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("no process named 'nobody'"),
        "{reply}"
    );
    let reply = send(&socket, r#"{"op":"status"}"#);
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["processes"][0]["name"], "c");
    assert_eq!(reply["processes"][0]["state"], "running");
    // Still running.
    let before = counts(&std::fs::read_to_string(&log).unwrap()).len();
    wait_for("the guest runs on", || {
        counts(&std::fs::read_to_string(&log).unwrap_or_default()).len() > before + 5
    });
    sigterm(&mut host);
}

#[test]
fn a_socket_left_by_kill_9_does_not_stop_the_next_host() {
    let data = data_dir();
    let (mut host, socket, log) = counter_host(data.path());
    host.kill().unwrap();
    host.wait().unwrap();
    assert!(socket.exists(), "kill -9 leaves the socket file");
    // No host: a clear answer, not a hang.
    fails_with(
        &run(&["checkpoint", "--data", s(data.path())]),
        "no phantom host is running",
    );
    let mut host = start_logged_run(data.path(), "1h", &log);
    wait_for("the new host answers", || {
        run(&["checkpoint", "--data", s(data.path())])
            .status
            .success()
    });
    sigterm(&mut host);
}
