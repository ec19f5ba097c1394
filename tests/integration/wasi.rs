//! WASI 0.2 guests as persistent processes: Rust std (`println!`,
//! `eprintln!`, `Instant`, `SystemTime`, `HashMap`, `Vec`) over WASI
//! handles that wasi-libc caches in linear memory, which must name the same
//! streams after every restore.

use super::common::*;
use super::kill_loop::kill_cycles;

/// Checks every whole `count=` line of a `wasi-std` log: the map holds
/// exactly keys 1..=n with their values.
fn check_wasi_std_log(text: &str) {
    check_count_lines(text, "map", "true");
}

#[test]
fn a_rust_std_guest_survives_kill_9_with_its_wasi_handles() {
    let data = data_dir();
    let o = phantom()
        .args([
            "spawn",
            phantom_tests::WASI_STD,
            "--data",
            s(data.path()),
            "--name",
            "w",
            "--env",
            "GREETING=hi there",
            "--",
            "--period-ms",
            "2",
        ])
        .output()
        .unwrap();
    ok(&o);
    assert!(
        stdout(&o).contains("started greeting=hi there"),
        "{}",
        stdout(&o)
    );
    kill_cycles(data.path(), &check_wasi_std_log);
    // stderr (eprintln!) leaves through the exit too, and the clock never
    // went backwards across all those restores.
    let o = run_with_input(
        &["run", "--data", s(data.path()), "--for", "0.3"],
        "clock\nenv\n",
    );
    ok(&o);
    let out = stdout(&o);
    assert!(out.contains("note="), "{out}");
    assert!(out.contains("clock went_back=false"), "{out}");
    assert!(out.contains("wall_after_init=true"), "{out}");
    assert!(out.contains("env GREETING=Some(\"hi there\")"), "{out}");
}

mod handles {
    use phantom_runtime::gate::Input;
    use phantom_runtime::process::{Process, SpawnRequest};
    use phantom_runtime::runtime::{Runtime, RuntimeConfig};
    use proptest::prelude::*;

    use super::super::common::data_dir;

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Kind {
        Out,
        In,
        Poll(Option<usize>),
    }

    /// Turns raw choices into commands the guest can run without trapping:
    /// a model of its slots keeps drops of a stream with live pollables out
    /// (the component model makes that a trap) and polls non-empty.
    fn commands(choices: &[(u8, u8)]) -> Vec<String> {
        let mut slots: Vec<Option<Kind>> = Vec::new();
        let mut out = Vec::new();
        for &(op, arg) in choices {
            let live: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].is_some()).collect();
            let pick = |want: &dyn Fn(Kind) -> bool| -> Option<usize> {
                let c: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|&i| want(slots[i].unwrap()))
                    .collect();
                (!c.is_empty()).then(|| c[arg as usize % c.len()])
            };
            let cmd = match op % 9 {
                0 => {
                    slots.push(Some(Kind::Out));
                    "stdout".to_string()
                }
                1 => {
                    slots.push(Some(Kind::Out));
                    "stderr".to_string()
                }
                2 => {
                    slots.push(Some(Kind::In));
                    "stdin".to_string()
                }
                3 => {
                    slots.push(Some(Kind::Poll(None)));
                    "after 0".to_string()
                }
                4 => match pick(&|k| matches!(k, Kind::Out | Kind::In)) {
                    Some(i) => {
                        slots.push(Some(Kind::Poll(Some(i))));
                        format!("sub {i}")
                    }
                    None => "ready 999".to_string(),
                },
                5 | 6 => {
                    let has_children = |i: usize| slots.contains(&Some(Kind::Poll(Some(i))));
                    match pick(&|_| true) {
                        Some(i) if !has_children(i) => {
                            slots[i] = None;
                            format!("drop {i}")
                        }
                        _ => "drop 999".to_string(),
                    }
                }
                7 => match pick(&|k| k == Kind::Out) {
                    Some(i) => format!("write {i} line {}", out.len()),
                    None => match pick(&|k| k == Kind::In) {
                        Some(i) => format!("read {i}"),
                        None => "write 999 x".to_string(),
                    },
                },
                _ => {
                    let polls: Vec<usize> = live
                        .iter()
                        .copied()
                        .filter(|&i| matches!(slots[i], Some(Kind::Poll(_))))
                        .collect();
                    if polls.is_empty() {
                        "ready 999".to_string()
                    } else if arg % 2 == 0 {
                        format!("ready {}", polls[arg as usize % polls.len()])
                    } else {
                        let list: Vec<String> = polls.iter().map(|p| p.to_string()).collect();
                        format!("poll {}", list.join(" "))
                    }
                }
            };
            out.push(cmd);
        }
        out
    }

    fn deliver(rt: &Runtime, p: &mut Process, line: &str) -> String {
        p.offer(Input::ConsoleLine(line.to_string()))
            .expect("queued");
        let mut out = Vec::new();
        while let Some(o) = p.step(rt).expect("step") {
            out.extend(phantom_runtime::exit::console_text(&o));
        }
        String::from_utf8(out).unwrap()
    }

    fn spawn(rt: &Runtime, data: &std::path::Path) -> Process {
        let bytes = std::fs::read(phantom_tests::WASI_HANDLES).unwrap();
        let request = SpawnRequest {
            name: "h".into(),
            ..Default::default()
        };
        Process::spawn(rt, &bytes, data, request).unwrap().0
    }

    /// Runs `commands` straight, or with a checkpoint, a drop of the
    /// process (what kill -9 leaves) and a restore before every command.
    fn run(rt: &Runtime, commands: &[String], restore_each: bool) -> String {
        let data = data_dir();
        let mut p = spawn(rt, data.path());
        let mut out = String::new();
        for c in commands {
            if restore_each {
                p.checkpoint(rt).unwrap();
                p.wait_for_write().unwrap().unwrap();
                drop(p);
                p = Process::restore(rt, &data.path().join("h")).unwrap().0;
            }
            out.push_str(&deliver(rt, &mut p, c));
        }
        out
    }

    #[test]
    fn restored_handles_and_next_indices_equal_a_straight_run() {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        // A fixed sequence first: freed indices are reused last-in first-out.
        let fixed: Vec<String> = [
            "stdout",
            "stderr",
            "stdin",
            "sub 0",
            "after 0",
            "drop 1",
            "drop 4",
            "stdout",
            "after 0",
            "write 0 hello",
            "write 5 again",
            "poll 3 6",
            "ready 3",
            "read 2",
            "drop 3",
            "drop 0",
            "stdout",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let straight = run(&rt, &fixed, false);
        assert!(straight.contains("op=drop 4 -> dropped=5"), "{straight}");
        assert!(straight.contains("op=stdout -> handle=5"), "{straight}");
        assert!(straight.contains("op=after 0 -> handle=2"), "{straight}");
        assert!(!straight.contains("error"), "{straight}");
        assert_eq!(run(&rt, &fixed, true), straight);

        let cases = std::env::var("PHANTOM_HANDLE_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(
                &proptest::collection::vec((any::<u8>(), any::<u8>()), 1..24),
                |choices| {
                    let commands = commands(&choices);
                    let straight = run(&rt, &commands, false);
                    prop_assert!(!straight.contains("trapped"));
                    prop_assert_eq!(run(&rt, &commands, true), straight, "{:?}", commands);
                    Ok(())
                },
            )
            .unwrap();
    }
}

/// A component importing the named instances (with empty instance types).
fn importing(names: &[&str]) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut c = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    c.section(&types);
    let mut imports = ComponentImportSection::new();
    for n in names {
        imports.import(*n, ComponentTypeRef::Instance(0));
    }
    c.section(&imports);
    c.finish()
}

#[test]
fn sockets_http_and_other_versions_are_refused_by_name() {
    let data = data_dir();
    let path = data.path().join("net.wasm");
    std::fs::write(
        &path,
        importing(&[
            "wasi:cli/stdout@0.2.0",
            "wasi:sockets/tcp@0.2.0",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:io/streams@0.3.0",
        ]),
    )
    .unwrap();
    let o = run(&["spawn", s(&path), "--data", s(data.path()), "--name", "net"]);
    fails_with(&o, "`wasi:sockets/tcp@0.2.0`");
    let err = stderr(&o);
    // Every refused import is named, the accepted one is not.
    assert!(err.contains("`wasi:http/outgoing-handler@0.2.6`"), "{err}");
    assert!(err.contains("`wasi:io/streams@0.3.0`"), "{err}");
    assert!(!err.contains("`wasi:cli/stdout@0.2.0`"), "{err}");
    assert!(!data.path().join("net").exists());
}

/// `std::process::exit` (WASI `exit`) ends the process with its code, its
/// output delivered; the exit is persisted like any other state.
#[test]
fn wasi_exit_ends_the_process_with_its_code() {
    for (line, code) in [("exit 0", 0), ("exit 7", 1)] {
        let data = data_dir();
        spawn(
            data.path(),
            phantom_tests::WASI_STD,
            "w",
            &["--period-ms", "1000"],
        );
        let o = run_with_input(
            &["run", "--data", s(data.path()), "--until-idle"],
            &format!("{line}\n"),
        );
        ok(&o);
        assert!(stdout(&o).contains("exiting"), "{}", stdout(&o));
        let ps = ps_json(data.path());
        let text = ps.to_string();
        assert!(text.contains(&format!("exited({code})")), "{line}: {text}");
    }
    // In init: the spawn succeeds, and the process is there, exited.
    let data = data_dir();
    let o = spawn(
        data.path(),
        phantom_tests::WASI_STD,
        "w",
        &["--exit-in-init"],
    );
    assert!(stdout(&o).contains("exiting in init"), "{}", stdout(&o));
    let text = ps_json(data.path()).to_string();
    assert!(text.contains("exited(0)"), "{text}");
}
