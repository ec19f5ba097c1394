//! The CLI forms of the issue, end to end: spawn, run, ps, checkpoints, kv.

use super::common::*;

#[test]
fn kv_store_keeps_its_data_across_runs() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::KV, "kv", &[]);
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--until-idle"],
        "set a 1\nset b two\nget a\ndel a\nlen\n",
    );
    assert_eq!(stdout(ok(&o)), "ok\nok\n1\n1\n1\n");
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--until-idle"],
        "get b\nget a\nkeys\n",
    );
    assert_eq!(stdout(ok(&o)), "two\n(nil)\nb\n");
}

#[test]
fn ps_and_checkpoints_report_json() {
    let data = data_dir();
    spawn(
        data.path(),
        phantom_tests::COUNTER,
        "c",
        &["--period-ms", "10"],
    );
    ok(&run(&[
        "run",
        "--data",
        s(data.path()),
        "--for",
        "0.35",
        "--checkpoint-every",
        "100ms",
        "--no-stdin",
    ]));
    let ps: serde_json::Value = ps_json(data.path());
    let row = &ps[0];
    assert_eq!(row["name"], "c");
    assert_eq!(row["state"], "ready");
    assert_eq!(row["restores"], 1);
    assert_eq!(row["args"], serde_json::json!(["--period-ms", "10"]));
    let list: serde_json::Value = serde_json::from_str(&stdout(ok(&run(&[
        "checkpoints",
        "--data",
        s(data.path()),
        "c",
        "--json",
    ]))))
    .unwrap();
    let list = list.as_array().unwrap();
    assert!(list.len() >= 4, "{list:?}");
    for c in list {
        for field in [
            "id",
            "time_unix_ns",
            "dirty_pages",
            "bytes_written",
            "pause_us",
        ] {
            assert!(c.get(field).is_some(), "missing {field} in {c}");
        }
    }
    assert!(list.iter().all(|c| c["valid"] == true));
    // Human forms work too.
    assert!(stdout(ok(&run(&["ps", "--data", s(data.path())]))).contains("ready"));
    assert!(
        stdout(ok(&run(&["checkpoints", "--data", s(data.path()), "c"]))).contains("DIRTY PAGES")
    );
}

/// The commands that take `--data`, in `--help`'s order.
const DATA_COMMANDS: &[&str] = &[
    "spawn",
    "run",
    "ps",
    "checkpoints",
    "devices",
    "display",
    "checkpoint",
    "fsck",
    "send",
    "journal",
    "export",
    "import",
    "fork",
    "rollback",
    "pin",
    "keep",
    "gc",
    "serve",
    "migrate",
];

/// `--help` lists exactly the commands, each with its one-line summary, and
/// every command's own `--help` works.
#[test]
fn help_lists_the_commands() {
    let out = stdout(ok(&run(&["--help"])));
    let section = out
        .split("Commands:")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .unwrap();
    let listed: Vec<&str> = section
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        listed,
        [
            DATA_COMMANDS,
            &[
                "new",
                "build",
                "componentize",
                "compose",
                "bench",
                "pvm",
                "help"
            ]
        ]
        .concat(),
        "{out}"
    );
    for line in section
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("help"))
    {
        assert!(
            line.split_whitespace().count() > 2,
            "command without a summary: {line:?}"
        );
    }
    for command in DATA_COMMANDS {
        let help = stdout(ok(&run(&[command, "--help"])));
        assert!(help.contains("--data"), "{command} --help:\n{help}");
    }
    for (command, option) in [
        ("new", "--lang"),
        ("build", "--output"),
        ("componentize", "--output"),
    ] {
        let help = stdout(ok(&run(&[command, "--help"])));
        assert!(help.contains(option), "{command} --help:\n{help}");
    }
}

#[test]
fn checkpoint_on_request_and_graceful_sigterm() {
    use std::process::Stdio;
    let data = data_dir();
    spawn(
        data.path(),
        phantom_tests::COUNTER,
        "c",
        &["--period-ms", "5"],
    );
    let out_path = data.path().join("out.log");
    let child = phantom()
        .args([
            "run",
            "--data",
            s(data.path()),
            "--checkpoint-every",
            "1h",
            "--no-stdin",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoints = || {
        let o = run(&["checkpoints", "--data", s(data.path()), "c", "--json"]);
        serde_json::from_str::<serde_json::Value>(&stdout(ok(&o)))
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(checkpoints(), 1, "no periodic checkpoint within an hour");
    ok(&run(&["checkpoint", "--data", s(data.path())]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while checkpoints() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGUSR1 did not make a checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SIGTERM: a graceful stop with a final checkpoint.
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(checkpoints() >= 3);
    let before = counts(&std::fs::read_to_string(&out_path).unwrap());
    let o = run_for(data.path(), "0.1");
    let after = counts(&stdout(ok(&o)));
    assert_eq!(
        after[0],
        before.last().unwrap() + 1,
        "nothing is lost on SIGTERM"
    );
    // No host is running now.
    let o = run(&["checkpoint", "--data", s(data.path())]);
    assert!(!o.status.success() && stderr(&o).contains("no phantom host is running"));
}

/// `phantom run` waits for a short command that holds the data directory's
/// lock (a `send` straight into a journal, a `spawn`) instead of failing;
/// a host it does not wait for.
#[test]
fn run_waits_for_a_short_lock_holder_but_not_for_a_host() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MAILBOX, "box", &[]);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data.path().join(".lock"))
        .unwrap();
    lock.lock().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(600));
        drop(lock);
    });
    let run_briefly = || {
        run(&[
            "run",
            "--data",
            s(data.path()),
            "--no-stdin",
            "--for",
            "100ms",
        ])
    };
    let started = std::time::Instant::now();
    ok(&run_briefly());
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    release.join().unwrap();
    let _host = quiet_host(data.path(), "1h");
    let socket = data.path().join(".control.sock");
    while !socket.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fails_with(&run_briefly(), "another phantom host is using");
}

/// `phantom bench journal` runs end to end (tiny sizes), reports each
/// one-at-a-time measurement against the disk's floor measured beside it,
/// and measures recovery after a real kill -9.
#[test]
fn bench_journal_reports_the_disk_ceiling() {
    let o = run(&[
        "bench",
        "journal",
        "--component",
        phantom_tests::MAILBOX,
        "--json",
        "--no-redis",
        "--seconds",
        "0.3",
        "--batch",
        "50",
        "--processes",
        "1",
        "--clients",
        "1",
        "--events",
        "50",
        "--recovery-entries",
        "100",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
    let floor = v["disk_floor"]["per_second"].as_f64().unwrap();
    assert!(floor > 0.0, "{v:#}");
    let single = &v["one_message_at_a_time"][0];
    assert_eq!(single["disk_ceiling_per_second"].as_f64(), Some(floor));
    let ours = single["phantom"]["per_second"].as_f64().unwrap();
    assert!(ours > 0.0, "{v:#}");
    // Every acknowledgement waited for a sync of its own (one client
    // waits for each): at least as many syncs as messages.
    let messages = single["phantom"]["messages"].as_u64().unwrap();
    let syncs = single["phantom"]["journal_syncs"].as_u64().unwrap();
    assert!(messages > 0 && syncs >= messages, "{v:#}");
    // After a real kill -9 with no checkpoint since spawn, the next host
    // replays every entry the killed one wrote.
    let never = v["recovery_after_kill_9"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["checkpoint_every_s"].is_null())
        .unwrap();
    assert!(
        never["replayed_entries"].as_u64().unwrap() >= never["journal_entries"].as_u64().unwrap(),
        "{v:#}"
    );
    assert!(never["host_start_to_first_event_ms"].as_f64().unwrap() > 0.0);
}

/// `phantom checkpoint` signals nothing but a host: a lock held by another
/// program (here flock(1), as a `phantom send` straight into a journal
/// holds it) is reported, and its holder lives on.
#[test]
fn checkpoint_never_signals_a_lock_holder_that_is_not_a_host() {
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::COUNTER, "c", &[]);
    let lock = d.join(".lock");
    let mut holder = std::process::Command::new("flock")
        .args(["-x", s(&lock), "sleep", "30"])
        .spawn()
        .unwrap();
    std::fs::write(&lock, holder.id().to_string()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = run(&["checkpoint", "--data", s(d)]);
    fails_with(&o, &format!("is held by pid {}", holder.id()));
    assert!(stderr(&o).contains("flock"), "{}", stderr(&o));
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the lock holder was signalled"
    );
    let _ = holder.kill();
    let _ = holder.wait();
}
