//! Regression tests, each named after the defect it guards (the host-layout
//! issue). The crafted image is in `crafted_images.rs`.

use std::io::Write;
use std::process::Stdio;

use super::common::*;

/// `phantom run --until-idle < lines.txt` with 200,000 `set` lines processed
/// 5,824 and dropped the rest ("input queue of 'kv' is full"). Reading stdin
/// now waits while the queue is full: every line is processed.
#[test]
fn piped_200000_lines_are_all_processed() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::KV, "kv", &[]);
    let mut input = String::with_capacity(200_000 * 20);
    for i in 0..200_000 {
        input.push_str(&format!("set k{i} v{i}\n"));
    }
    input.push_str("len\nget k199999\nget k0\n");
    let mut child = phantom()
        .args(["run", "--data", s(data.path()), "--until-idle"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("dropped"), "{err}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 200_003, "every line answered");
    assert!(lines[..200_000].iter().all(|l| *l == "ok"));
    assert_eq!(lines[200_000..], ["200000", "v199999", "v0"]);
    // And they are in the image: a new run sees them.
    let o = run_with_input(&["run", "--data", s(data.path()), "--until-idle"], "len\n");
    assert_eq!(stdout(ok(&o)), "200000\n");
}

/// `spawn` needed the data directory to exist, so the README's first
/// `spawn` failed for a newcomer. It creates it, with its parents.
#[test]
fn spawn_into_a_missing_data_directory_creates_it() {
    let data = data_dir();
    let nested = data.path().join("a/b/data");
    let o = spawn(&nested, phantom_tests::KV, "kv", &[]);
    assert!(stderr(&o).contains("spawned 'kv'"), "{}", stderr(&o));
    assert!(nested.join("kv/process.json").exists());
    let o = run_with_input(
        &["run", "--data", s(&nested), "--until-idle"],
        "set x 1\nget x\n",
    );
    assert_eq!(stdout(ok(&o)), "ok\n1\n");
    // A file where the directory should be is a clear error.
    let file = data.path().join("file");
    std::fs::write(&file, "x").unwrap();
    fails_with(
        &run(&[
            "spawn",
            phantom_tests::KV,
            "--data",
            s(&file),
            "--name",
            "kv",
        ]),
        "is not a directory",
    );
}
