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
    let o = try_spawn(data, component, name, args);
    ok(&o);
    o
}

/// `spawn`, which may fail: what it did.
pub fn try_spawn(data: &Path, component: &str, name: &str, args: &[&str]) -> Output {
    let mut v = vec!["spawn", component, "--data", s(data), "--name", name];
    if !args.is_empty() {
        v.push("--");
        v.extend_from_slice(args);
    }
    run(&v)
}

/// Checkpoint files (`*.phi` or whatever the store names them) of a process,
/// newest last.
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let store = phantom_snapshots::CheckpointStore::open(dir).expect("open store");
    let mut ids: Vec<u64> = store.list().expect("list").iter().map(|l| l.id).collect();
    ids.sort();
    ids.iter().map(|id| store.checkpoint_path(*id)).collect()
}

/// The page packs (format 2) of the process in `dir`, oldest first.
pub fn pack_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("process dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            phantom_snapshots::pages::parse_pack_name(&p.file_name().unwrap().to_string_lossy())
                .is_some()
        })
        .collect();
    v.sort();
    v
}

/// Counts printed as `count=<n>` lines.
pub fn counts(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("count="))
        .map(|n| n.trim().parse().expect("count"))
        .collect()
}

/// What one verbose `phantom run` of a counting process printed, stdout and
/// stderr through one file description, so in the order it happened.
pub struct RunLog {
    /// Checkpoint id the run restored from (0: it did not get that far).
    pub restored_from: u64,
    /// Counts printed, in order.
    pub counts: Vec<u64>,
    /// For each checkpoint captured in the run: the last count before it,
    /// which is the count the checkpoint holds.
    pub captured: std::collections::BTreeMap<u64, u64>,
    /// Checkpoints the run logged as committed.
    pub committed: Vec<u64>,
}

fn leading_number(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// Parses a verbose run's log. A log cut by `kill -9` may end in the middle
/// of a line: only lines that ended (with `\n`) are read.
pub fn parse_run_log(text: &str) -> RunLog {
    let mut run = RunLog {
        restored_from: 0,
        counts: Vec::new(),
        captured: Default::default(),
        committed: Vec::new(),
    };
    let whole = match text.rfind('\n') {
        Some(end) => &text[..end + 1],
        None => "",
    };
    for line in whole.lines() {
        if let Some(n) = line.strip_prefix("count=") {
            // `count=<n>`, perhaps followed by more fields.
            run.counts.push(
                leading_number(n)
                    .unwrap_or_else(|| panic!("a whole line with a bad count: {line:?}")),
            );
        } else if let Some(rest) = line.strip_prefix("phantom: restored '") {
            if let Some((_, id)) = rest.split_once("' from checkpoint ") {
                run.restored_from = leading_number(id).unwrap_or(0);
            }
        } else if let Some(rest) = line.strip_prefix("phantom: captured checkpoint ") {
            if let Some(id) = leading_number(rest) {
                run.captured
                    .insert(id, run.counts.last().copied().unwrap_or(0));
            }
        } else if let Some(rest) = line.strip_prefix("phantom: committed checkpoint ")
            && let Some(id) = leading_number(rest)
        {
            run.committed.push(id);
        }
    }
    run
}

/// A `phantom run` started by a test: killed when dropped, so a failing
/// test leaves no host behind.
pub struct HostChild(pub std::process::Child);

impl std::ops::Deref for HostChild {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for HostChild {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for HostChild {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A `phantom run` of `data` that prints nothing, checkpointing every
/// `every`.
pub fn quiet_host(data: &Path, every: &str) -> HostChild {
    HostChild(
        phantom()
            .args([
                "run",
                "--data",
                s(data),
                "--no-stdin",
                "--checkpoint-every",
                every,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `phantom run --until-idle` with `text` as input for process `name`.
pub fn feed(data: &Path, name: &str, text: &str) -> std::process::Output {
    run_with_input(
        &["run", "--data", s(data), "--input", name, "--until-idle"],
        text,
    )
}

/// `phantom run --until-idle` with `text` as input (one process in `data`).
pub fn feed_all(data: &Path, text: &str) -> std::process::Output {
    run_with_input(&["run", "--data", s(data), "--until-idle"], text)
}

/// Starts a verbose `phantom run` whose stdout and stderr both go to
/// `log` through one open file description.
pub fn start_logged_run(data: &Path, checkpoint_every: &str, log: &Path) -> HostChild {
    let file = std::fs::File::create(log).expect("log file");
    HostChild(
        phantom()
            .args([
                "run",
                "--data",
                s(data),
                "--checkpoint-every",
                checkpoint_every,
                "--no-stdin",
                "-v",
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .spawn()
            .expect("start phantom run"),
    )
}

/// `phantom run --data DATA --for SECS --no-stdin`.
pub fn run_for(data: &Path, secs: &str) -> Output {
    run(&["run", "--data", s(data), "--for", secs, "--no-stdin"])
}

/// Asserts a clean failure: non-zero, `needle` in stderr, no panic.
#[track_caller]
pub fn fails_with(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure, got success:\n{}",
        stdout(o)
    );
    let err = stderr(o);
    assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    assert!(!host_panicked(&err), "the host panicked:\n{err}");
}

/// Whether `stderr` shows a panic of the host itself (a guest's panic
/// message is reported, and is not one).
pub fn host_panicked(stderr: &str) -> bool {
    stderr
        .lines()
        .any(|l| l.starts_with("thread '") && l.contains("panicked"))
}

#[test]
fn run_log_parser_ignores_a_line_cut_by_the_kill() {
    let whole = "phantom: restored 'c' from checkpoint 7 (restore #2)\n\
                 count=5\n\
                 phantom: captured checkpoint 8 of 'c' (3 dirty pages, pause 90 us)\n\
                 phantom: committed checkpoint 8 of 'c'\n\
                 count=6\n";
    for cut in [
        "",
        "count=1",
        "phantom: captured checkp",
        "phantom: captured checkpoint ",
        "phantom: restored 'c' from checkpoint 1",
        "phantom: committed checkpoint 9",
    ] {
        let run = parse_run_log(&format!("{whole}{cut}"));
        assert_eq!(run.restored_from, 7, "{cut:?}");
        assert_eq!(run.counts, [5, 6], "{cut:?}");
        assert_eq!(run.captured.get(&8), Some(&5), "{cut:?}");
        assert_eq!(run.captured.len(), 1, "{cut:?}");
        assert_eq!(run.committed, [8], "{cut:?}");
    }
}

/// `phantom ps --data DATA --json`, parsed.
#[track_caller]
pub fn ps_json(data: &Path) -> serde_json::Value {
    serde_json::from_str(&stdout(ok(&run(&["ps", "--data", s(data), "--json"])))).expect("ps JSON")
}

/// Process `name`'s row of `ps --json` (panics if it is not listed).
#[track_caller]
pub fn ps_of(data: &Path, name: &str) -> serde_json::Value {
    let ps = ps_json(data);
    ps.as_array()
        .and_then(|rows| rows.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no process '{name}' in {ps:#}"))
}

/// Fills process `name` of `data` (a key-value store: `set KEY VALUE`
/// lines) with 40 values of 1000 KiB, then runs it under
/// `--max-memory-mib 16` with `input`: what that run did.
pub fn fill_then_run_under_16_mib(data: &Path, input: &str) -> Output {
    let big = "v".repeat(1000 << 10);
    let sets: String = (0..40).map(|i| format!("set k{i} {big}\n")).collect();
    ok(&run_with_input(
        &["run", "--data", s(data), "--until-idle"],
        &sets,
    ));
    run_with_input(
        &[
            "run",
            "--data",
            s(data),
            "--until-idle",
            "--max-memory-mib",
            "16",
        ],
        input,
    )
}

/// Stops a host with SIGTERM (a graceful stop) and checks it exits 0.
#[track_caller]
pub fn sigterm(child: &mut std::process::Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    assert!(child.wait().expect("wait").success(), "the host failed");
}

/// Checks every whole `count=<n> ... <list>=<n> sum=<n(n+1)/2> ok=<ok>` line
/// of a log (lines cut by a kill are skipped): `list` names the field that
/// must equal the count, `ok` the value of `ok` that means "intact".
pub fn check_count_lines(text: &str, list: &str, ok: &str) {
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    for line in whole.lines().filter(|l| l.starts_with("count=")) {
        let fields: Vec<(&str, &str)> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let n: u64 = get("count").and_then(|c| c.parse().ok()).expect("count");
        assert_eq!(get(list), Some(n.to_string().as_str()), "{line}");
        assert_eq!(
            get("sum"),
            Some((n * (n + 1) / 2).to_string().as_str()),
            "{line}"
        );
        assert_eq!(get("ok"), Some(ok), "{line}");
    }
    assert!(!text.contains("unknown handle"), "{text}");
    assert!(!text.contains("trapped"), "{text}");
}

/// Sends one console line to a process in this test and returns what the
/// guest printed in that one call (its effects are released at once:
/// `step`).
pub fn say_step(
    rt: &phantom_runtime::runtime::Runtime,
    p: &mut phantom_runtime::process::Process,
    line: &str,
) -> String {
    p.offer(phantom_runtime::gate::Input::ConsoleLine(line.into()))
        .unwrap();
    let out = p.step(rt).unwrap().unwrap();
    String::from_utf8(phantom_runtime::exit::console_text(&out)).unwrap()
}

/// Every operation that reached the simulated BME280's I2C bus.
pub fn i2c_log(p: &phantom_runtime::process::Process) -> Vec<phantom_devices::sim::I2cOp> {
    p.devices()
        .sim()
        .buses()
        .get("bme280")
        .map(|b| b.log())
        .unwrap_or_default()
}

/// A `phantom run` of a data directory talked to line by line: its stdin
/// goes to one process (`--input`), its stdout lines arrive as they come.
pub struct Conversation {
    /// The host.
    pub host: HostChild,
    /// Its stdin (dropped to close the console).
    pub stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Conversation {
    /// Starts `phantom run --data DATA --input INPUT`; stderr goes to
    /// `stderr` if given, else nowhere.
    pub fn start(data: &Path, input: &str, stderr: Option<&Path>) -> Conversation {
        let err = match stderr {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        };
        let mut host = HostChild(
            phantom()
                .args(["run", "--data", s(data), "--input", input])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(err)
                .spawn()
                .unwrap(),
        );
        let out = host.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = host.stdin.take();
        Conversation {
            host,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Writes `text` to the process's console.
    pub fn say(&mut self, text: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// The next stdout line (30 s at most, else the test fails).
    pub fn next_line(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no answer from the host; saw {:?}", self.seen));
        self.seen.push(line.clone());
        line
    }

    /// Reads lines until one satisfies `done`; returns every line so far.
    pub fn until(&mut self, done: impl Fn(&str) -> bool) -> &[String] {
        while !self.seen.iter().any(|l| done(l)) {
            self.next_line();
        }
        &self.seen
    }

    /// Kills the host (SIGKILL) and returns the lines it printed before,
    /// the last ones included.
    pub fn kill(mut self) -> Vec<String> {
        self.host.kill().unwrap();
        self.host.wait().unwrap();
        self.stdin = None;
        while let Ok(line) = self
            .lines
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }
}

/// `phantom devices --data DATA NAME --json`, parsed.
pub fn devices_json(data: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&stdout(ok(&run(&[
        "devices",
        "--data",
        s(data),
        name,
        "--json",
    ]))))
    .unwrap()
}

/// Runs an in-process `p`'s turns (device polls, then its queue) until
/// what it printed satisfies `done`, for at most 10 s; returns what it
/// printed.
pub fn turns_until(
    rt: &phantom_runtime::runtime::Runtime,
    p: &mut phantom_runtime::process::Process,
    done: impl Fn(&str) -> bool,
) -> String {
    let start = std::time::Instant::now();
    let mut text = String::new();
    while !done(&text) {
        assert!(
            start.elapsed().as_secs() < 10,
            "waited 10 s for the process to print what the test expects; it printed {text:?}"
        );
        p.poll_device_events();
        while let Some(out) = p.step(rt).unwrap() {
            text += &String::from_utf8(phantom_runtime::exit::console_text(&out)).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    text
}

/// Spawns `component` in process as `name` with a device manifest (and a
/// scenario, and `init` arguments); returns it and what `init` printed.
pub fn spawn_in_process(
    rt: &phantom_runtime::runtime::Runtime,
    component: &str,
    data: &Path,
    name: &str,
    manifest: &str,
    scenario: Option<&str>,
    args: &[&str],
) -> (phantom_runtime::process::Process, String) {
    let bytes = std::fs::read(component).unwrap();
    let request = phantom_runtime::process::SpawnRequest {
        name: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        devices: Some(manifest.into()),
        scenario: scenario.map(Into::into),
        ..Default::default()
    };
    let (p, out) = phantom_runtime::process::Process::spawn(rt, &bytes, data, request).unwrap();
    (
        p,
        String::from_utf8(phantom_runtime::exit::console_text(&out)).unwrap(),
    )
}
