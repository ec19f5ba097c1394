//! Helpers: the `phantom` binary, data directories, guest components.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `phantom` binary built next to this test (`just test` builds it).
pub fn phantom_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/integration-<hash> -> target/<profile>/phantom
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("phantom");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --release -p phantom-host`, which `just test` does)",
        bin.display()
    );
    bin
}

/// A `phantom` command.
pub fn phantom() -> Command {
    Command::new(phantom_bin())
}

/// Runs `phantom` with `args`, stdin closed.
pub fn run(args: &[&str]) -> Output {
    phantom()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run phantom")
}

/// Runs `phantom` with `args` and the given stdin.
pub fn run_with_input(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = phantom()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start phantom");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait phantom")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing both streams otherwise.
#[track_caller]
pub fn ok(o: &Output) -> &Output {
    assert!(
        o.status.success(),
        "phantom failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    o
}

/// A fresh data directory.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("phantom-test-")
        .tempdir()
        .expect("temp dir")
}

/// The path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Spawns `component` as `name` with init `args`.
#[track_caller]
pub fn spawn(data: &Path, component: &str, name: &str, args: &[&str]) -> Output {
    let mut v = vec!["spawn", component, "--data", s(data), "--name", name];
    if !args.is_empty() {
        v.push("--");
        v.extend_from_slice(args);
    }
    let o = run(&v);
    ok(&o);
    o
}

/// Checkpoint files (`*.phi` or whatever the store names them) of a process,
/// newest last.
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let store = phantom_snapshots::CheckpointStore::open(dir).expect("open store");
    let mut ids: Vec<u64> = store.list().expect("list").iter().map(|l| l.id).collect();
    ids.sort();
    ids.iter().map(|id| store.checkpoint_path(*id)).collect()
}
