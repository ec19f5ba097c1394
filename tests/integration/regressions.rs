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

/// The globals accessor counted core functions aliased from a core
/// instance only when their sort was `func`, not `func exact` (0x20, which
/// the validator accepts), so its lifts named the wrong core function and
/// the instrumented component was invalid ("lowered parameter types `[]` do
/// not match ..."); found by the instrumentation fuzzer at 10,000 cases.
#[test]
fn an_exact_func_alias_counts_as_a_core_function() {
    let dir = data_dir();
    let component = super::c_guests::build_c_example("c-counter", dir.path());
    let mut bytes = std::fs::read(&component).unwrap();
    // The first top-level `alias core export ... (core func)`: its core
    // sort byte, after the component sort byte 0x00.
    let mut at = None;
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ComponentAliasSection(reader) = payload.unwrap() {
            for item in reader.into_iter_with_offsets() {
                let (offset, alias) = item.unwrap();
                if let wasmparser::ComponentAlias::CoreInstanceExport {
                    kind: wasmparser::ExternalKind::Func,
                    ..
                } = alias
                {
                    at = Some(offset + 1);
                    break;
                }
            }
        }
        if at.is_some() {
            break;
        }
    }
    let at = at.expect("c-counter aliases a core function");
    assert_eq!(bytes[at], 0x00);
    bytes[at] = 0x20;
    let validate = |b: &[u8]| wasmparser::Validator::new().validate_all(b).map(|_| ());
    validate(&bytes).expect("the exact-func alias is valid");
    let out = phantom_runtime::inspect_and_instrument(&bytes)
        .unwrap()
        .expect("instrumented");
    validate(&out).unwrap();
}

/// A composition cut short inside its first nested component made the
/// handle rewrite panic (wasm-encoder's re-encoder slices by the size a
/// section claims); found by the instrumentation fuzzer at 50,000 cases.
/// It is now a malformed-component error, at the top level and nested.
#[test]
fn a_composition_cut_inside_a_nested_component_is_an_error() {
    let dir = data_dir();
    let composed = super::interop::rust_app_with_rust_library(dir.path());
    let bytes = std::fs::read(&composed).unwrap();
    let nested = wasmparser::Parser::new(0)
        .parse_all(&bytes)
        .find_map(|p| match p.unwrap() {
            wasmparser::Payload::ComponentSection {
                unchecked_range, ..
            } => Some(unchecked_range),
            _ => None,
        })
        .expect("a composition nests components");
    // Cuts at the end of each section inside it (the fuzzer's case: the
    // parser then sees no error) and in the middle of it.
    let mut cuts: Vec<usize> = wasmparser::Parser::new(0)
        .parse_all(&bytes)
        .filter_map(|p| p.ok()?.as_section().map(|(_, r)| r.end))
        .filter(|&end| end > nested.start && end < nested.end)
        .collect();
    cuts.extend([nested.start + 100, nested.start + nested.len() / 2]);
    assert!(cuts.len() > 10, "{cuts:?}");
    for cut in cuts {
        let result =
            std::panic::catch_unwind(|| phantom_runtime::inspect_and_instrument(&bytes[..cut]))
                .unwrap_or_else(|_| panic!("cut at {cut}: panicked"));
        assert!(result.is_err(), "cut at {cut}: {:?}", result.map(|_| ()));
    }
}
