//! Language interop: an application in one language and a library in
//! another (guests/interop/stats.wit), composed with `phantom compose` into
//! one persistent process. Each part keeps its state in its own linear
//! memory, with its own globals and WASI handles; after every kill -9 both
//! parts are back exactly as they were at the checkpoint.

use std::path::{Path, PathBuf};

use super::c_guests::build_c_project;
use super::common::*;
use super::kill_loop::kill_cycles;

/// Checks every tick line: the app's count, list and sum (as for the other
/// guests), and that the library, in the other component, agrees.
fn check_interop_log(text: &str) {
    check_count_lines(text, "list", "1");
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    for line in whole.lines().filter(|l| l.starts_with("count=")) {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {k}= in {line}"))
        };
        assert_eq!(field("lib"), field("count"), "{line}");
        assert_eq!(field("total"), field("sum"), "{line}");
        // The library's own description, from its memory: n and total.
        assert!(
            line.contains(&format!("n={} total={}", field("count"), field("sum"))),
            "{line}"
        );
    }
}

/// The Rust app composed with the Rust library, in `dir`: a composition
/// for tests of the instrumentation (WASI handles and globals nested).
pub fn rust_app_with_rust_library(dir: &Path) -> PathBuf {
    let out = dir.join("composed.wasm");
    compose(
        Path::new(phantom_tests::RUST_STATS_APP),
        Path::new(phantom_tests::RUST_STATS),
        &out,
    );
    out
}

fn compose(app: &Path, lib: &Path, out: &Path) {
    ok(&run(&["compose", s(app), "--with", s(lib), "-o", s(out)]));
}

/// Spawns `component` ticking every 2 ms, runs the kill loop, then checks
/// the state through console commands.
fn kill_and_check(data: &Path, component: &Path, app: &str, lib: &str) {
    let o = run(&[
        "spawn",
        s(component),
        "--data",
        s(data),
        "--name",
        "app",
        "--",
        "--period-ms",
        "2",
    ]);
    ok(&o);
    assert!(
        stdout(&o).contains(&format!("{lib} n=0 total=0")),
        "{}",
        stdout(&o)
    );
    kill_cycles(data, &check_interop_log);
    // Numbers from the console go through both parts too, and their sums
    // agree with everything before.
    // (The timer keeps ticking, so the run is bounded in time, not idle.)
    let o = run_with_input(
        &["run", "--data", s(data), "--for", "1"],
        "-1000000\nget\nnot-a-number\n",
    );
    ok(&o);
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("app={app} ")))
        .unwrap_or_else(|| panic!("{out}"));
    let field = |k: &str| -> i64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {k}= in {line}"))
            .parse()
            .unwrap()
    };
    assert_eq!(field("lines"), field("count"), "{line}");
    assert_eq!(field("sum"), field("total"), "{line}");
    assert!(
        line.contains(&format!("{lib} n={}", field("count"))),
        "{line}"
    );
    assert!(line.contains("min=-1000000"), "{line}");
    assert!(out.contains("error: not a number: 'not-a-number'"), "{out}");
}

/// Rust application (phantom SDK, wasm32-wasip2) + C library (wasi-libc,
/// the preview-1 adapter: its globals and WASI handles are nested ones).
#[test]
fn a_rust_app_using_a_c_library_survives_kill_9_in_both_parts() {
    let data = data_dir();
    let lib = build_c_project("c-stats", data.path(), &["--lib"]);
    let composed = data.path().join("rust-app+c.wasm");
    compose(Path::new(phantom_tests::RUST_STATS_APP), &lib, &composed);
    kill_and_check(data.path(), &composed, "rust", "c-stats");
}

/// C application (the C SDK, printf, a malloc'd list) + Rust library.
#[test]
fn a_c_app_using_a_rust_library_survives_kill_9_in_both_parts() {
    let data = data_dir();
    let app = build_c_project("c-stats-app", data.path(), &[]);
    let composed = data.path().join("c-app+rust.wasm");
    compose(&app, Path::new(phantom_tests::RUST_STATS), &composed);
    kill_and_check(data.path(), &composed, "c", "rust-stats");
}

/// What does not fit is refused with a message that says what to do.
#[test]
fn composition_refuses_what_does_not_fit() {
    let dir = data_dir();
    let d = dir.path();
    let app = PathBuf::from(phantom_tests::RUST_STATS_APP);
    let lib = PathBuf::from(phantom_tests::RUST_STATS);
    // The application alone imports what only a library provides.
    let o = run(&["spawn", s(&app), "--data", s(d), "--name", "alone"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`demo:interop/stats@0.1.0`"),
        "{}",
        stderr(&o)
    );
    // A library is not a process.
    let o = run(&["spawn", s(&lib), "--data", s(d), "--name", "lib"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("`init` and `handle`"), "{}", stderr(&o));
    // A library that exports nothing the application imports.
    let out = d.join("out.wasm");
    let o = run(&[
        "compose",
        s(&app),
        "--with",
        phantom_tests::COUNTER,
        "-o",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("exports nothing") && stderr(&o).contains("it exports: init, handle"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // Two libraries of the same interface: which one is meant?
    let other = d.join("other-stats.wasm");
    std::fs::copy(&lib, &other).unwrap();
    let o = run(&[
        "compose",
        s(&app),
        "--with",
        s(&lib),
        "--with",
        s(&other),
        "-o",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("export `demo:interop/stats@0.1.0`, which is imported"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // A core module, a missing file, garbage.
    std::fs::write(d.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(d.join("junk.wasm"), b"hello").unwrap();
    for (with, expect) in [
        ("core.wasm", "core module, not a component"),
        ("missing.wasm", "cannot read"),
        ("junk.wasm", "not a WebAssembly file"),
    ] {
        let o = run(&[
            "compose",
            s(&app),
            "--with",
            s(&d.join(with)),
            "-o",
            s(&out),
        ]);
        assert!(!o.status.success(), "{with}");
        assert!(stderr(&o).contains(expect), "{with}: {}", stderr(&o));
    }
    // Nothing to compose with.
    let o = run(&["compose", s(&app), "-o", s(&out)]);
    assert!(!o.status.success(), "--with is required");
}

/// Phantom bytecode calling a Wasm component: `.internal.demo.stats`, the
/// native class of the `pvm-stats` guest, is bound to its import of
/// `demo:interop/stats`, composed with the Rust library and with the C one.
/// After every kill -9 the Phantom objects (its array, its loop counters in
/// the thread's frame) and the library's state are both intact.
#[test]
fn phantom_bytecode_calling_a_component_survives_kill_9_in_both_parts() {
    let dir = data_dir();
    let d = dir.path();
    let classes = d.join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/pvm-stats/stats_app.pasm");
    ok(&run(&[
        "pvm",
        "asm",
        s(&program),
        "-o",
        s(&classes.join("demo.stats_app.pc")),
    ]));
    let c_lib = build_c_project("c-stats", d, &["--lib"]);
    for (lib, name) in [
        (PathBuf::from(phantom_tests::RUST_STATS), "rust-stats"),
        (c_lib, "c-stats"),
    ] {
        let data = d.join(format!("data-{name}"));
        let composed = d.join(format!("pvm+{name}.wasm"));
        compose(Path::new(phantom_tests::PVM_STATS), &lib, &composed);
        ok(&run(&[
            "spawn",
            s(&composed),
            "--classes",
            s(&classes),
            "--data",
            s(&data),
            "--name",
            "pvm",
            "--",
            "--class",
            ".demo.stats_app",
            "--method",
            "8",
        ]));
        kill_cycles(&data, &|text| {
            check_interop_log(text);
            assert!(
                text.lines()
                    .filter(|l| l.starts_with("count="))
                    .all(|l| l.contains(&format!("| {name} n="))),
                "{text}"
            );
        });
    }
}
