//! What a newcomer hit, tried as a new user would: each gets a test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

/// With two processes and no `--input`, stdin was silently ignored.
#[test]
fn stdin_not_read_with_two_processes_says_so_and_names_them() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::KV, "alpha", &[]);
    spawn(data.path(), phantom_tests::KV, "beta", &[]);
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--until-idle"],
        "set a 1\n",
    );
    let err = stderr(ok(&o));
    assert!(
        err.contains("not reading stdin") && err.contains("alpha, beta") && err.contains("--input"),
        "{err}"
    );
    // With --input the line reaches the named one.
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--until-idle",
            "--input",
            "beta",
        ],
        "set a 1\n",
    );
    assert_eq!(stdout(ok(&o)), "[beta] ok\n");
    assert!(!stderr(&o).contains("not reading stdin"));
}

/// A run whose input could not all be delivered exited 0.
#[test]
fn run_that_did_not_deliver_input_exits_non_zero() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MISBEHAVE, "m", &[]);
    // The process exits after the first line: the others are refused.
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--until-idle"],
        "exit 0\necho one\necho two\n",
    );
    assert!(!o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("2 line(s) of input were not delivered"),
        "{err}"
    );
    assert!(err.contains("'m' exited before handling them"), "{err}");
    assert!(!stdout(&o).contains("one"));
    // A line longer than the limit is refused and reported too, and the
    // lines around it are delivered.
    let data = data_dir();
    spawn(data.path(), phantom_tests::KV, "kv", &[]);
    let long = "x".repeat(2 << 20);
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--until-idle"],
        &format!("set a 1\nset b {long}\nget a\n"),
    );
    assert!(!o.status.success());
    assert_eq!(stdout(&o), "ok\n1\n");
    assert!(
        stderr(&o).contains("longer than the limit"),
        "{}",
        stderr(&o)
    );
}

/// A panic inside `init` lost its message (only the wasm backtrace was
/// shown), and `ps` showed only the first line of a failure (the location).
#[test]
fn guest_panic_message_is_shown_by_spawn_and_ps() {
    let data = data_dir();
    let o = try_spawn(
        data.path(),
        phantom_tests::MISBEHAVE,
        "p",
        &["--panic-in-init"],
    );
    fails_with(&o, "misbehave was told to panic in init");
    let first = stderr(&o).lines().next().unwrap_or("").to_string();
    assert!(
        first.contains("init of 'p' panicked: misbehave was told to panic in init"),
        "{first}"
    );
    assert!(!data.path().join("p").exists());
    // A panic while handling an event: ps shows the message.
    spawn(data.path(), phantom_tests::MISBEHAVE, "m", &[]);
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--until-idle"],
        "panic\n",
    );
    fails_with(&o, "panicked: misbehave asked to panic");
    let text = stdout(ok(&run(&["ps", "--data", s(data.path())])));
    assert!(
        text.contains("failed (trap): process 'm' panicked: misbehave asked to panic"),
        "{text}"
    );
    let json: serde_json::Value = ps_json(data.path());
    assert_eq!(json[0]["failure"]["kind"], "trap");
    assert!(
        json[0]["error"]
            .as_str()
            .unwrap()
            .contains("misbehave asked to panic")
    );
}

/// `spawn` was refused while a host ran the data directory; it now hands
/// the new process to the running host, which starts running it.
#[test]
fn spawn_while_a_host_runs_hands_the_process_to_it() {
    let data = data_dir();
    spawn(
        data.path(),
        phantom_tests::COUNTER,
        "first",
        &["--period-ms", "5"],
    );
    let log = data.path().join("host.log");
    let mut host = start_logged_run(data.path(), "100ms", &log);
    // Wait for the host to run.
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("count=")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the host did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = spawn(
        data.path(),
        phantom_tests::COUNTER,
        "second",
        &["--period-ms", "5"],
    );
    assert!(stderr(&o).contains("has started it"), "{}", stderr(&o));
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("[second] count=3") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the host never ran the new process:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ps: serde_json::Value = ps_json(data.path());
    for row in ps.as_array().unwrap() {
        assert_eq!(row["state"], "running", "{row}");
    }
    // The name is still unique while the host runs.
    fails_with(
        &run(&[
            "spawn",
            phantom_tests::COUNTER,
            "--data",
            s(data.path()),
            "--name",
            "second",
        ]),
        "already exists",
    );
    sigterm(&mut host);
    // Both resume in the next run.
    let o = run_for(data.path(), "0.3");
    let out = stdout(ok(&o));
    assert!(
        out.contains("[first] count=") && out.contains("[second] count="),
        "{out}"
    );
}

/// Messages that misled.
#[test]
fn error_messages_say_what_is_wrong() {
    let data = data_dir();
    // A wasm header followed by garbage is not "a core WebAssembly module".
    let garbage = data.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0this is not wasm at all").unwrap();
    let o = run(&[
        "spawn",
        s(&garbage),
        "--data",
        s(data.path()),
        "--name",
        "g",
    ]);
    fails_with(&o, "not valid WebAssembly");
    assert!(
        !stderr(&o).contains("a core WebAssembly module"),
        "{}",
        stderr(&o)
    );
    // `pvm run` without a boot class does not name an internal process.
    let empty = data.path().join("classes");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&["pvm", "run", "--classes", s(&empty)]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(!err.contains("oneshot") && !err.contains("'pvm'"), "{err}");
    assert!(err.contains(s(&empty)), "names the class directory: {err}");
    // fsck text says whether a damaged process is still restorable.
    spawn(data.path(), phantom_tests::KV, "kv", &[]);
    ok(&run_with_input(
        &["run", "--data", s(data.path()), "--until-idle"],
        "set a 1\n",
    ));
    let files = checkpoint_files(&data.path().join("kv"));
    let newest = files.last().unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let o = run(&["fsck", "--data", s(data.path())]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("kv: DAMAGED, still restorable from checkpoint 1"),
        "{}",
        stdout(&o)
    );
    std::fs::write(&files[0], b"junk").unwrap();
    let o = run(&["fsck", "--data", s(data.path())]);
    assert!(
        stdout(&o).contains("kv: DAMAGED, NOT restorable"),
        "{}",
        stdout(&o)
    );
}

/// A host started on an empty data directory waits for processes instead
/// of exiting, so `spawn` can hand it one.
#[test]
fn a_host_started_on_an_empty_directory_runs_what_is_spawned() {
    let data = data_dir();
    let log = data.path().join("host.log");
    let mut host = start_logged_run(data.path(), "100ms", &log);
    let started = Instant::now();
    while !data.path().join(".control.sock").exists() {
        assert!(started.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(host.try_wait().unwrap().is_none(), "the host exited");
    spawn(
        data.path(),
        phantom_tests::COUNTER,
        "c",
        &["--period-ms", "5"],
    );
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("count=3")
    {
        assert!(started.elapsed() < Duration::from_secs(10), "not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigterm(&mut host);
}

/// The README's "Writing a guest" commands, run verbatim in an empty
/// directory with `phantom` on PATH, for Rust (as written) and for C (the
/// `--lang c` it offers): the project builds, spawns, ticks, takes a line,
/// and a second run carries on counting.
#[test]
fn the_readme_writing_a_guest_section_works_verbatim() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let section = &readme[readme.find("## Writing a guest").expect("the section")..];
    let start = section.find("```sh\n").expect("a sh block") + 6;
    let block = &section[start..start + section[start..].find("```").unwrap()];
    assert!(block.contains("--lang rust"), "{block}");
    let bin_dir = phantom_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (lang, said_hello, took_line) in [
        ("rust", "hello from a persistent process", "words so far"),
        (
            "c",
            "hello from hello, a persistent process",
            "1 lines so far",
        ),
    ] {
        let dir = data_dir();
        let script = block.replace("--lang rust", &format!("--lang {lang}"));
        let o = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .env("PATH", &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"a persistent word\n")?;
                c.wait_with_output()
            })
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{lang}: {out}\n{err}");
        assert!(out.contains(said_hello), "{lang}: {out}\n{err}");
        assert!(out.contains("tick 2"), "{lang}: {out}\n{err}");
        assert!(out.contains(took_line), "{lang}: {out}\n{err}");
        // Run it again: the count goes on from where it stopped.
        let o = Command::new("bash")
            .args(["-c", "phantom run --data data --for 1.5 --no-stdin"])
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        let again = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{lang}: {again}");
        let ticks = |text: &str| -> Vec<u64> {
            text.lines()
                .filter_map(|l| l.trim_start_matches("[hello] ").strip_prefix("tick "))
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        };
        let last = *ticks(&out).last().unwrap();
        assert_eq!(
            ticks(&again).first(),
            Some(&(last + 1)),
            "{lang}: {out}\n{again}"
        );
    }
}

/// `phantom new --lang rust|c --devices`: a device process project (with
/// phantom-device-sdk for Rust, a manifest and a scenario) builds outside
/// the repository, spawns with its own files and rings on the scripted
/// presses; after a restart it goes on counting.
#[test]
fn a_new_device_process_project_builds_and_runs_on_simulated_pins() {
    for lang in ["rust", "c"] {
        let dir = data_dir();
        let project = dir.path().join("bell");
        ok(&run(&["new", s(&project), "--lang", lang, "--devices"]));
        for f in ["devices.toml", "scenario.toml"] {
            assert!(project.join(f).is_file(), "{lang}: {f} is missing");
        }
        if lang == "rust" {
            // The SDK is copied as it is: its `{name}`s are formatting.
            let copied = std::fs::read_to_string(project.join("phantom-sdk/src/args.rs")).unwrap();
            let original = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/sdk/src/args.rs"),
            )
            .unwrap();
            assert!(
                original.contains("{name}"),
                "the check needs a `{{name}}` in args.rs"
            );
            assert_eq!(copied, original, "phantom new changed the SDK's args.rs");
        }
        ok(&run(&["build", s(&project)]));
        let data = dir.path().join("data");
        ok(&run(&[
            "spawn",
            s(&project.join("bell.wasm")),
            "--data",
            s(&data),
            "--name",
            "bell",
            "--devices",
            s(&project.join("devices.toml")),
            "--scenario",
            s(&project.join("scenario.toml")),
        ]));
        // The presses are at 0.5, 1.0 and 1.5 s of process time.
        let o = run(&["run", "--data", s(&data), "--for", "1.4", "--no-stdin"]);
        let first = stdout(ok(&o));
        assert!(first.contains("ring 2"), "{lang}: {first}");
        let o = run_with_input(
            &["run", "--data", s(&data), "--input", "bell", "--for", "1.2"],
            "",
        );
        let second = stdout(ok(&o));
        assert!(
            second.contains("ring 3") && !second.contains("ring 4"),
            "{lang}: {second}"
        );
    }
}
