//! C guests: built with `phantom build` from the examples in `guests/`
//! (clang for wasm32-wasi, wasi-libc, the preview-1 adapter), run as
//! persistent processes with their malloc'd state, stdio and clocks.

use std::path::{Path, PathBuf};

use super::common::*;
use super::kill_loop::kill_cycles;

/// Builds `guests/<example>` (copied into `dir`, so tests never write into
/// the repository) and returns the component's path.
pub fn build_c_example(example: &str, dir: &Path) -> PathBuf {
    build_c_project(example, dir, &[])
}

/// [`build_c_example`] with more arguments for `phantom build` (`--lib`).
/// The project's sources, headers and wit-bindgen objects are copied.
pub fn build_c_project(example: &str, dir: &Path, args: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests")
        .join(example);
    let project = dir.join(example);
    std::fs::create_dir_all(&project).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.path()
            .extension()
            .is_some_and(|x| x == "c" || x == "h" || x == "o")
        {
            std::fs::copy(e.path(), project.join(e.file_name())).unwrap();
        }
    }
    let out = dir.join(format!("{example}.wasm"));
    let mut argv = vec!["build", s(&project), "-o", s(&out)];
    argv.extend_from_slice(args);
    ok(&run(&argv));
    out
}

fn check_counter_log(text: &str) {
    check_count_lines(text, "list", "1");
}

#[test]
fn a_c_guest_survives_kill_9_with_its_heap_stdio_and_clock() {
    let data = data_dir();
    let component = build_c_example("c-counter", data.path());
    let o = run(&[
        "spawn",
        s(&component),
        "--data",
        s(data.path()),
        "--name",
        "cc",
        "--",
        "--period-ms",
        "2",
    ]);
    ok(&o);
    assert!(
        stdout(&o).contains("c-counter started as cc"),
        "{}",
        stdout(&o)
    );
    kill_cycles(data.path(), &check_counter_log);
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--for", "0.3"],
        "clock\n",
    );
    ok(&o);
    let out = stdout(&o);
    assert!(out.contains("clock went_back=0"), "{out}");
    assert!(out.contains("note="), "stderr lines leave too: {out}");
    // Work in slices (phantom_busy) goes on across the events that come
    // in between (lines, ticks) until its last slice.
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--for", "2"],
        "work 50\nget\nget\n",
    );
    ok(&o);
    assert!(stdout(&o).contains("work done slices=50"), "{}", stdout(&o));
}

#[test]
fn a_c_key_value_store_keeps_what_was_acknowledged_through_kill_9() {
    let data = data_dir();
    let component = build_c_example("c-kv", data.path());
    // Handed files seed it (the C SDK's phantom_file_*).
    let seed = data.path().join("seed.kv");
    std::fs::write(&seed, "seed1=one\nseed2=two words\nnot a pair\n").unwrap();
    let o = run(&[
        "spawn",
        s(&component),
        "--data",
        s(data.path()),
        "--name",
        "kv",
        "--file",
        s(&seed),
    ]);
    ok(&o);
    assert!(
        stdout(&o).contains("seeded 2 from seed.kv"),
        "{}",
        stdout(&o)
    );
    let mut input = String::new();
    for i in 0..200 {
        input.push_str(&format!("set key{i} value {i}\n"));
    }
    input.push_str("del key7\nset key3 three\n");
    let o = run_with_input(&["run", "--data", s(data.path()), "--until-idle"], &input);
    ok(&o);
    assert_eq!(stdout(&o).matches("ok\n").count(), 201, "{}", stdout(&o));
    // More writes in a host that is killed after an explicit checkpoint.
    let mut child = HostChild(
        phantom()
            .args(["run", "--data", s(data.path()), "--input", "kv"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(b"set late yes\ndel key9\n").unwrap();
        stdin.flush().unwrap();
    }
    // Once the host answers, give it time to handle the two lines, then
    // checkpoint: `phantom checkpoint` returns once the image is durable.
    let started = std::time::Instant::now();
    while !run(&["checkpoint", "--data", s(data.path())])
        .status
        .success()
    {
        assert!(started.elapsed().as_secs() < 20, "the host never answered");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&run(&["checkpoint", "--data", s(data.path())]));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--until-idle"],
        "count\nget key3\nget key7\nget late\nget key9\nget key199\nget seed2\ndump\n",
    );
    ok(&o);
    let out = stdout(&o);
    assert!(out.contains("count=201"), "{out}");
    assert!(out.contains("seed2=two words"), "{out}");
    assert!(out.contains("key3=three"), "{out}");
    assert!(out.contains("key7 not found"), "{out}");
    assert!(out.contains("late=yes"), "{out}");
    assert!(out.contains("key9 not found"), "{out}");
    assert!(out.contains("key199=value 199"), "{out}");
    assert_eq!(out.matches("=value ").count(), 197 + 1, "{out}");
}

/// `phantom componentize --wit --world` makes a component of a world of
/// one's own (a C library for composition): it exports the interface, and
/// `spawn` refuses it, saying it is not a process.
#[test]
fn componentize_makes_a_c_library_component_of_its_own_world() {
    let dir = data_dir();
    let d = dir.path();
    std::fs::write(
        d.join("lib.wit"),
        "package demo:lib@0.1.0;\n\ninterface tally {\n  add: func(n: u64) -> u64;\n}\n\nworld library {\n  export tally;\n}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("tally.c"),
        "static unsigned long long total;\n\
         __attribute__((export_name(\"demo:lib/tally@0.1.0#add\")))\n\
         unsigned long long add(unsigned long long n) { return total += n; }\n",
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "clang-19".into());
    let status = std::process::Command::new(&cc)
        .args(["--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-o"])
        .arg(d.join("tally.core.wasm"))
        .arg(d.join("tally.c"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc} (./dev installs clang-19): {e}"));
    assert!(status.success());
    let out = d.join("tally.wasm");
    ok(&run(&[
        "componentize",
        s(&d.join("tally.core.wasm")),
        "-o",
        s(&out),
        "--wit",
        s(&d.join("lib.wit")),
        "--world",
        "library",
    ]));
    let bytes = std::fs::read(&out).unwrap();
    let wit_component::DecodedWasm::Component(resolve, world) =
        wit_component::decode(&bytes).unwrap()
    else {
        panic!("not a component")
    };
    let exports: Vec<String> = resolve.worlds[world]
        .exports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    assert_eq!(exports, ["demo:lib/tally@0.1.0"]);
    let o = run(&["spawn", s(&out), "--data", s(d), "--name", "lib"]);
    fails_with(&o, "does not export `init` and `handle`");
    // Without the world, the module is no persistent process either.
    let o = run(&["componentize", s(&d.join("tally.core.wasm")), "-o", s(&out)]);
    assert!(!o.status.success());
}

/// Messages in C (`phantom_on_message`, `phantom_send`, guest
/// `guests/c-mailbox`): messages from outside, sent while a host runs and
/// with none, all arrive once, in order, across a `kill -9` of the host;
/// a C process sends to another one, and a bad name is an error value.
#[test]
fn a_c_guest_takes_and_sends_messages_exactly_once() {
    let data = data_dir();
    let component = build_c_example("c-mailbox", data.path());
    for name in ["a", "b"] {
        ok(&run(&[
            "spawn",
            s(&component),
            "--data",
            s(data.path()),
            "--name",
            name,
        ]));
    }
    // Half of them through a running host, killed with -9 after the
    // acknowledgements; the rest straight into the journal.
    let mut host = quiet_host(data.path(), "20ms");
    let sent: Vec<String> = (1..=40).map(|i| format!("m{i}")).collect();
    for m in &sent[..20] {
        let o = run(&["send", "--data", s(data.path()), "a", m, "--timeout", "30"]);
        ok(&o);
    }
    host.kill().unwrap();
    host.wait().unwrap();
    for m in &sent[20..] {
        ok(&run(&["send", "--data", s(data.path()), "a", m]));
    }
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "a",
            "--until-idle",
        ],
        "send b ping\nsend b pong\nsend bad/name x\nlist\n",
    );
    let out = stdout(ok(&o));
    assert!(
        out.contains(&format!("[a] count 40: {}\n", sent.join(" "))),
        "{out}"
    );
    // Ids go on from the spawn's time in ns, one per message.
    let ids: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("[a] sent "))
        .map(|id| id.parse().unwrap())
        .collect();
    assert!(ids.len() == 2 && ids[1] == ids[0] + 1, "{out}");
    assert!(out.contains("\n[a] send error -1\n"), "{out}");
    assert!(
        out.contains(&format!("[b] got a {} ping\n", ids[0]))
            && out.contains(&format!("[b] got a {} pong\n", ids[1])),
        "{out}"
    );
}

/// Devices in C (phantom.h's GPIO calls, `phantom_on_gpio_edge`; guest
/// `guests/c-doorbell`): the same kill loop as the Rust doorbell's.
#[test]
fn a_c_device_process_survives_kill_9() {
    let dir = data_dir();
    let component = build_c_example("c-doorbell", dir.path());
    super::devices::doorbell_survives_kill_9(&component);
}

/// A C guest whose `malloc` a smaller `--max-memory-mib` refuses goes
/// another way in the replay (c-kv says `error: out of memory`): the
/// restore names the limit as the cause (kind `out-of-memory`), not a
/// divergence to cut, and under the old limit everything comes back.
#[test]
fn a_c_guest_replayed_under_a_smaller_memory_limit_names_the_limit() {
    let data = data_dir();
    let d = data.path();
    let component = build_c_example("c-kv", d);
    ok(&run(&[
        "spawn",
        s(&component),
        "--data",
        s(d),
        "--name",
        "kv",
    ]));
    let o = fill_then_run_under_16_mib(d, "count\n");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("replaying the journal needs more memory"),
        "{err}"
    );
    assert!(!err.contains("--cut-at"), "{err}");
    let ps = ps_json(d);
    assert_eq!(ps[0]["failure"]["kind"], "out-of-memory", "{ps}");
    let o = run_with_input(
        &["run", "--data", s(d), "--until-idle", "--retry-failed"],
        "count\n",
    );
    assert!(stdout(ok(&o)).contains("count=40"), "{}", stdout(&o));
}
