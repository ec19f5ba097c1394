//! WASI 0.2 guests as persistent processes: Rust std (`println!`,
//! `eprintln!`, `Instant`, `SystemTime`, `HashMap`, `Vec`) over WASI
//! handles that wasi-libc caches in linear memory, which must name the same
//! streams after every restore.

use super::common::*;
use super::kill_loop::kill_cycles;

/// Checks every whole `count=` line of a `wasi-std` log: the map holds
/// exactly keys 1..=n with their values.
fn check_wasi_std_log(text: &str) {
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    for line in whole.lines().filter(|l| l.starts_with("count=")) {
        let fields: Vec<(&str, &str)> = line
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .collect();
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let n: u64 = get("count").unwrap().parse().unwrap();
        assert_eq!(get("map"), Some(n.to_string().as_str()), "{line}");
        assert_eq!(
            get("sum"),
            Some((n * (n + 1) / 2).to_string().as_str()),
            "{line}"
        );
        assert_eq!(get("ok"), Some("true"), "{line}");
    }
    assert!(!text.contains("unknown handle"), "{text}");
    assert!(!text.contains("trapped"), "{text}");
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
