//! Bad input gets a clear error and loses nothing: malformed components,
//! corrupt or truncated images, bad arguments, guests that loop or eat
//! memory.

use std::fs;

use super::common::*;

#[test]
fn non_component_files_are_refused() {
    let data = data_dir();
    let text = data.path().join("hello.txt");
    fs::write(&text, "hello").unwrap();
    fails_with(
        &run(&["spawn", s(&text), "--data", s(data.path()), "--name", "x"]),
        "not a WebAssembly file",
    );
    let core = data.path().join("core.wasm");
    fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    fails_with(
        &run(&["spawn", s(&core), "--data", s(data.path()), "--name", "x"]),
        "core WebAssembly module",
    );
    let truncated = data.path().join("truncated.wasm");
    let counter = fs::read(phantom_tests::COUNTER).unwrap();
    fs::write(&truncated, &counter[..counter.len() / 2]).unwrap();
    fails_with(
        &run(&[
            "spawn",
            s(&truncated),
            "--data",
            s(data.path()),
            "--name",
            "x",
        ]),
        "malformed component",
    );
    // Nothing was left behind.
    assert!(!data.path().join("x").exists());
}

#[test]
fn unsupported_import_is_named() {
    let data = data_dir();
    let o = run(&[
        "spawn",
        phantom_tests::BAD_IMPORT,
        "--data",
        s(data.path()),
        "--name",
        "bad",
    ]);
    fails_with(&o, "imports `evil:");
    assert!(!data.path().join("bad").exists());
}

#[test]
fn bad_arguments() {
    let data = data_dir();
    let missing = data.path().join("missing");
    for command in [
        &["run", "--data", s(&missing), "--for", "0.1"][..],
        &["ps", "--data", s(&missing)],
        &["fsck", "--data", s(&missing)],
        &["checkpoint", "--data", s(&missing)],
        &["checkpoints", "--data", s(&missing), "c"],
    ] {
        fails_with(&run(command), "does not exist");
    }
    assert!(!missing.exists(), "only spawn creates a data directory");
    fails_with(
        &run(&[
            "spawn",
            phantom_tests::COUNTER,
            "--data",
            s(data.path()),
            "--name",
            "../x",
        ]),
        "invalid process name",
    );
    spawn(data.path(), phantom_tests::COUNTER, "c", &[]);
    fails_with(
        &run(&[
            "spawn",
            phantom_tests::COUNTER,
            "--data",
            s(data.path()),
            "--name",
            "c",
        ]),
        "already exists",
    );
    fails_with(
        &run(&[
            "run",
            "--data",
            s(data.path()),
            "--checkpoint-every",
            "soon",
        ]),
        "invalid duration",
    );
    fails_with(
        &run(&["checkpoints", "--data", s(data.path()), "nobody"]),
        "no process named 'nobody'",
    );
    // init's own error is reported.
    fails_with(
        &run(&[
            "spawn",
            phantom_tests::COUNTER,
            "--data",
            s(data.path()),
            "--name",
            "d",
            "--",
            "--period-ms",
            "x",
        ]),
        "init of 'd' failed",
    );
    // With what it printed.
    let o = try_spawn(
        data.path(),
        phantom_tests::MISBEHAVE,
        "r",
        &["--refuse-in-init"],
    );
    fails_with(&o, "init of 'r' failed: refused");
    assert!(
        stderr(&o).contains("the configuration says no"),
        "{}",
        stderr(&o)
    );
}

/// Spawns counter, runs it so several checkpoints exist, and returns the
/// last count printed.
fn counter_with_history(data: &std::path::Path) -> u64 {
    spawn(data, phantom_tests::COUNTER, "c", &["--period-ms", "5"]);
    let o = run(&[
        "run",
        "--data",
        s(data),
        "--for",
        "0.3",
        "--checkpoint-every",
        "50ms",
        "--no-stdin",
    ]);
    ok(&o);
    stdout(&o)
        .lines()
        .filter_map(|l| l.strip_prefix("count="))
        .next_back()
        .unwrap()
        .parse()
        .unwrap()
}

fn first_count(o: &std::process::Output) -> u64 {
    stdout(o)
        .lines()
        .find_map(|l| l.strip_prefix("count="))
        .expect("a count")
        .parse()
        .unwrap()
}

#[test]
fn truncated_newest_checkpoint_falls_back_to_previous() {
    let data = data_dir();
    let last = counter_with_history(data.path());
    let files = checkpoint_files(&data.path().join("c"));
    assert!(files.len() >= 3, "{files:?}");
    let newest = files.last().unwrap();
    let len = fs::metadata(newest).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let fsck = run(&["fsck", "--data", s(data.path())]);
    assert!(
        !fsck.status.success(),
        "fsck must report the truncated file"
    );
    let o = run_for(data.path(), "0.1");
    ok(&o);
    assert!(stderr(&o).contains("skipped checkpoint"), "{}", stderr(&o));
    let first = first_count(&o);
    // The previous checkpoint holds at most what the truncated one held
    // (`last`); when no tick came between the two, the count goes on at
    // exactly `last + 1`.
    assert!(
        first >= 2 && first <= last + 1,
        "resumed at {first}, last printed {last}"
    );
}

#[test]
fn bit_flipped_checkpoint_is_detected() {
    let data = data_dir();
    let last = counter_with_history(data.path());
    let files = checkpoint_files(&data.path().join("c"));
    let newest = files.last().unwrap();
    let mut bytes = fs::read(newest).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x10;
    fs::write(newest, &bytes).unwrap();
    let o = run_for(data.path(), "0.1");
    ok(&o);
    let err = stderr(&o);
    assert!(err.contains("skipped checkpoint"), "{err}");
    // The older checkpoint plus the journal's tail: it goes on right after
    // the last count printed.
    assert_eq!(first_count(&o), last + 1, "{err}");
    // Every file flipped: a clear error, non-zero exit, no panic.
    for f in checkpoint_files(&data.path().join("c")) {
        let mut b = fs::read(&f).unwrap();
        b[10] ^= 0xff;
        fs::write(&f, &b).unwrap();
    }
    let o = run_for(data.path(), "0.1");
    fails_with(&o, "cannot resume 'c'");
}

/// Arguments that would lose or mix things up are refused, naming why: a
/// process directory given as the data directory, two handed files of one
/// name, and input piped to a host whose every process failed.
#[test]
fn arguments_that_would_mix_up_or_lose_things_are_refused() {
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::MISBEHAVE, "m", &[]);
    let inner = d.join("m");
    for command in [
        &["ps", "--data", s(&inner)][..],
        &["run", "--data", s(&inner), "--for", "0.1"],
        &[
            "spawn",
            phantom_tests::COUNTER,
            "--data",
            s(&inner),
            "--name",
            "x",
        ],
    ] {
        fails_with(
            &run(command),
            "is the directory of a process, not a data directory",
        );
    }
    assert!(!inner.join("x").exists() && !inner.join(".lock").exists());
    for sub in ["a", "b"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
        std::fs::write(d.join(sub).join("seed.txt"), sub).unwrap();
    }
    fails_with(
        &run(&[
            "spawn",
            phantom_tests::COUNTER,
            "--data",
            s(d),
            "--name",
            "two",
            "--file",
            s(&d.join("a/seed.txt")),
            "--file",
            s(&d.join("b/seed.txt")),
        ]),
        "two files named 'seed.txt'",
    );
    assert!(!d.join("two").exists());
    // m fails; a host of nothing but failed processes does not swallow
    // the lines piped to it.
    fails_with(&feed(d, "m", "trap\n"), "");
    assert_eq!(ps_of(d, "m")["state"], "failed");
    let o = run_with_input(&["run", "--data", s(d), "--until-idle"], "echo lost?\n");
    fails_with(&o, "input on stdin would not be delivered");
    assert!(stderr(&o).contains("m failed"), "{}", stderr(&o));
}

/// A call's console output is cut at 1 MiB with a note on a line of its
/// own, whether the limit falls inside a write or one long line fills it
/// exactly in pieces; the next call prints on a line of its own.
#[test]
fn console_output_past_1_mib_is_cut_with_a_note() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MISBEHAVE, "m", &[]);
    let o = feed(data.path(), "m", "long 2000000\necho after\nlong 10\n");
    ok(&o);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let long = lines
        .iter()
        .position(|l| l.contains("yyyy"))
        .expect("the long line");
    assert_eq!(lines[long].len(), 1 << 20, "the long line is cut at 1 MiB");
    assert_eq!(
        lines[long + 1],
        "[phantom: console output of this call cut at 1 MiB]"
    );
    assert_eq!(lines[long + 2], "after");
    assert_eq!(lines[long + 3], "yyyyyyyyyy");
}

#[test]
fn guest_that_loops_forever_fails_alone() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MISBEHAVE, "m", &[]);
    spawn(
        data.path(),
        phantom_tests::COUNTER,
        "c",
        &["--period-ms", "5"],
    );
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "m",
            "--for",
            "1.5",
            "--call-timeout",
            "300ms",
        ],
        "echo before\nspin\n",
    );
    fails_with(&o, "ran longer than the call timeout");
    let out = stdout(&o);
    assert!(out.contains("[m] before"), "{out}");
    // The other process kept running after the spin was stopped.
    let counts = out.lines().filter(|l| l.starts_with("[c] count=")).count();
    assert!(counts > 50, "counter stalled: {counts} counts");
    let ps = run(&["ps", "--data", s(data.path()), "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(ok(&ps))).unwrap();
    let m = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "m")
        .unwrap();
    assert_eq!(m["state"], "failed");
    assert!(m["error"].as_str().unwrap().contains("call timeout"));
    // Its image is intact: fsck is clean and it resumes on request.
    ok(&run(&["fsck", "--data", s(data.path()), "m"]));
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "m",
            "--retry-failed",
            "--for",
            "0.5",
        ],
        "echo after\n",
    );
    ok(&o);
    assert!(stdout(&o).contains("[m] after"));
}

#[test]
fn guest_that_eats_memory_fails_clearly() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MISBEHAVE, "m", &[]);
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--for",
            "3",
            "--max-memory-mib",
            "64",
            "--until-idle",
        ],
        "eat\n",
    );
    fails_with(&o, "ran out of memory");
    ok(&run(&["fsck", "--data", s(data.path()), "m"]));
}

#[test]
fn guest_trap_is_reported() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MISBEHAVE, "m", &[]);
    let o = run_with_input(&["run", "--data", s(data.path()), "--until-idle"], "trap\n");
    fails_with(&o, "trapped");
}

/// A process that grew under one `--max-memory-mib` and is restored under
/// a smaller one: its newest checkpoints are over the limit, and the
/// replay from an older one cannot grow as the journal did. That is the
/// limit (kind `out-of-memory`, the limit named, no cut suggested), not a
/// divergence; nothing is lost: under the old limit it comes back whole.
#[test]
fn a_smaller_memory_limit_than_the_journal_needs_is_named_not_a_divergence() {
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::KV, "kv", &[]);
    let o = fill_then_run_under_16_mib(d, "len\n");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("--max-memory-mib"), "{err}");
    assert!(!err.contains("--cut-at"), "{err}");
    assert!(!host_panicked(&err), "{err}");
    let ps = ps_json(d);
    assert_eq!(ps[0]["failure"]["kind"], "out-of-memory", "{ps}");
    let o = run_with_input(
        &["run", "--data", s(d), "--until-idle", "--retry-failed"],
        "len\nget k39\n",
    );
    ok(&o);
    assert!(
        stdout(&o).starts_with("40\n"),
        "{}",
        &stdout(&o)[..40.min(stdout(&o).len())]
    );
}
