//! The Phantom VM as a persistent process: Phantom bytecode runs inside the
//! PVM component under the host, keeps running across `kill -9`, and prints
//! the spec's regression transcripts through the host's console.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::common::*;

/// The regression-tests class (spec 4.6), rebuilt method by method by the
/// PVM library's own tests.
const REGRESSION_TESTS: &str =
    include_str!("../../pvm-wasm/tests/pvm/classes/regression_tests.pasm");

/// A small boot class that runs the regression tests under a catcher.
const BOOT: &str = include_str!("../../pvm-wasm/tests/pvm/classes/boot.pasm");

/// A Phantom program that counts forever, printing `count=<n>`; between
/// counts it either sleeps `sleep_ms` (through `boot.15`) or, with 0, spins
/// through a busy loop, so it never blocks.
fn counter_class(class: &str, sleep_ms: u32) -> String {
    let pause = if sleep_ms > 0 {
        format!(
            "    os_get32 0\n    iconst_32bit {sleep_ms}\n    i2o\n    call_15 1\n    os_drop\n"
        )
    } else {
        "    iconst_32bit 100000\nLbusy:\n    djnz Lbusy\n    is_drop\n".to_string()
    };
    format!(
        r#"class "{class}" fields 1 methods 9 base ".internal.object"
method "main" 8
    iconst_32bit 1
    isublu
    jz Lok
    sconst_bin "arg count"
    throw
Lok:
    iconst_32bit 0
Lloop:
    iconst_32bit 1
    isum
    os_get32 0
    sconst_bin "count="
    call_10 1
    os_drop
    os_get32 0
    is_dup
    i2o
    call_10 1
    os_drop
    os_get32 0
    sconst_bin "\n"
    call_10 1
    os_drop
{pause}    jmp Lloop
end
signature "main" 8 returns "" args "boot" ""
"#
    )
}

/// Spawns the PVM component as process `name`, running `class` method 8.
fn spawn_pvm(data: &Path, classes: &Path, name: &str, class: &str) -> std::process::Output {
    run(&[
        "spawn",
        "pvm",
        "--classes",
        s(classes),
        "--data",
        s(data),
        "--name",
        name,
        "--",
        "--class",
        class,
        "--method",
        "8",
    ])
}

/// Writes `class` assembled from `text` into `dir` as the VM looks it up.
fn write_class(dir: &Path, class: &str, text: &str) {
    let bytes = pvm::asm::assemble(text).unwrap_or_else(|e| panic!("{class}: {e}"));
    std::fs::write(
        dir.join(format!("{}.pc", class.trim_start_matches('.'))),
        bytes,
    )
    .unwrap();
}

#[test]
fn regression_transcript_through_the_component() {
    let classes = data_dir();
    write_class(
        classes.path(),
        ".ru.dz.phantom.system.regression_tests",
        REGRESSION_TESTS,
    );
    let o = run(&[
        "pvm",
        "run",
        "--classes",
        s(classes.path()),
        "--class",
        ".ru.dz.phantom.system.regression_tests",
        "--method",
        "19",
    ]);
    assert_eq!(
        stdout(ok(&o)),
        "Phantom language regression tests are running\n\
         Checking flow control operators... passed\n\
         Checking int math... passed\n\
         Checking arrays... Beeping: beep two! beep one! beep zero! \n\
         passed\n"
    );
}

#[test]
fn boot_mode_runs_the_boot_class() {
    let classes = data_dir();
    write_class(classes.path(), ".ru.dz.phantom.system.boot", BOOT);
    write_class(
        classes.path(),
        ".ru.dz.phantom.system.regression_tests",
        REGRESSION_TESTS,
    );
    let o = run(&["pvm", "run", "--classes", s(classes.path())]);
    assert_eq!(
        stdout(ok(&o)),
        "Phantom System Envirinment Setup is running\n\
         Phantom language regression tests are running\n\
         Checking flow control operators... passed\n\
         Checking int math... passed\n\
         Checking arrays... Beeping: beep two! beep one! beep zero! \n\
         passed\n\
         Finished compiler regression tests\n"
    );
    // Missing class files: a clear error, non-zero, no panic.
    let empty = data_dir();
    let o = run(&["pvm", "run", "--classes", s(empty.path())]);
    fails_with(&o, "");
}

#[test]
fn unhandled_exception_exits_non_zero() {
    let classes = data_dir();
    let thrower = r#"class ".t.thrower" fields 1 methods 9 base ".internal.object"
method "main" 8
    sconst_bin "boom"
    throw
end
"#;
    write_class(classes.path(), ".t.thrower", thrower);
    let o = run(&[
        "pvm",
        "run",
        "--classes",
        s(classes.path()),
        "--class",
        ".t.thrower",
        "--method",
        "8",
    ]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("Unhandled exception: boom"),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn asm_disasm_round_trip_through_the_cli() {
    let dir = data_dir();
    let text = dir.path().join("counter.txt");
    std::fs::write(&text, counter_class(".t.counter", 5)).unwrap();
    let pc = dir.path().join("counter.pc");
    ok(&run(&["pvm", "asm", s(&text), "-o", s(&pc)]));
    let listing = stdout(ok(&run(&["pvm", "disasm", s(&pc)])));
    let again = dir.path().join("again.txt");
    std::fs::write(&again, &listing).unwrap();
    let pc2 = dir.path().join("again.pc");
    ok(&run(&["pvm", "asm", s(&again), "-o", s(&pc2)]));
    assert_eq!(std::fs::read(&pc).unwrap(), std::fs::read(&pc2).unwrap());
    // Garbage is an error, not a panic.
    let junk = dir.path().join("junk.pc");
    std::fs::write(&junk, b"not a class file at all").unwrap();
    let o = run(&["pvm", "disasm", s(&junk)]);
    fails_with(&o, "");
}

#[test]
fn phantom_program_survives_kill_9() {
    let data = data_dir();
    let classes = data_dir();
    write_class(
        classes.path(),
        ".t.counter",
        &counter_class(".t.counter", 5),
    );
    let o = spawn_pvm(data.path(), classes.path(), "pc", ".t.counter");
    ok(&o);
    // Counts of each captured checkpoint, from the host's log.
    let mut count_at: BTreeMap<u64, u64> = BTreeMap::new();
    let mut last_seen = 0;
    let mut resumed_later = 0;
    for i in 0..6u64 {
        let log_path = data.path().join(format!("run-{i}.log"));
        let mut child = start_logged_run(data.path(), "30ms", &log_path);
        std::thread::sleep(Duration::from_millis(250 + 37 * i));
        child.kill().unwrap();
        child.wait().unwrap();
        let log = parse_run_log(&std::fs::read_to_string(&log_path).unwrap());
        count_at.extend(log.captured.iter().map(|(&id, &c)| (id, c)));
        let printed = log.counts;
        let restored_from = (log.restored_from > 0).then_some(log.restored_from);
        let Some(from) = restored_from else { continue };
        let Some(&first) = printed.first() else {
            continue;
        };
        // The checkpoint plus the journal's tail: on from the last count
        // printed (an effect in flight at the kill may repeat, see
        // kill_loop.rs), never back before the checkpoint.
        if let Some(&stored) = count_at.get(&from) {
            assert!(
                first > stored && first + 64 > last_seen,
                "run {i}: the Phantom thread resumed at {first} from checkpoint {from} (stored {stored}, last printed {last_seen})"
            );
        }
        assert!(
            first <= last_seen + 1,
            "run {i} starts at {first}, beyond anything computed ({last_seen})"
        );
        if first > 1 {
            resumed_later += 1;
        }
        for w in printed.windows(2) {
            assert_eq!(w[1], w[0] + 1);
        }
        last_seen = last_seen.max(*printed.last().unwrap());
    }
    assert!(
        resumed_later >= 4,
        "the Phantom thread did not carry on across restarts"
    );
    assert!(last_seen > 50, "too little progress: {last_seen}");
    // A graceful stop loses nothing.
    let o = run_for(data.path(), "0.3");
    let before = counts(&stdout(ok(&o)));
    let o = run_for(data.path(), "0.1");
    assert_eq!(counts(&stdout(ok(&o)))[0], before.last().unwrap() + 1);
}

#[test]
fn busy_phantom_thread_is_checkpointed_between_slices() {
    let data = data_dir();
    let classes = data_dir();
    write_class(classes.path(), ".t.busy", &counter_class(".t.busy", 0));
    ok(&spawn_pvm(data.path(), classes.path(), "busy", ".t.busy"));
    let o = run(&[
        "run",
        "--data",
        s(data.path()),
        "--for",
        "1",
        "--checkpoint-every",
        "100ms",
        "--no-stdin",
        "-v",
    ]);
    let err = stderr(ok(&o));
    let captured = err.matches("captured checkpoint").count();
    assert!(
        captured >= 5,
        "a busy guest got {captured} checkpoints in 1 s at 100 ms:\n{err}"
    );
    let first = counts(&stdout(&o));
    assert!(
        first.len() > 20,
        "the busy thread made little progress: {}",
        first.len()
    );
    let o = run_for(data.path(), "0.2");
    assert_eq!(counts(&stdout(ok(&o)))[0], first.last().unwrap() + 1);
}

/// `bench pvm` runs the benchmark class natively and in the component (it
/// fails if their outputs differ) and reports both rates, both ratios and
/// the collector's pauses; the bytecode count is exact: each more iteration
/// of both loops counts exactly their bytecodes.
#[test]
fn pvm_benchmark_reports_both_builds() {
    use pvm::bench::{RUN_INSNS_PER_ITERATION, SPIN_INSNS_PER_ITERATION};
    let bench = |n: u64| {
        let o = run(&[
            "bench",
            "pvm",
            "--iterations",
            &n.to_string(),
            "--rounds",
            "3",
            "--json",
        ]);
        ok(&o);
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).expect("JSON")
    };
    let (small, j) = (bench(10_000), bench(20_000));
    let count = |j: &serde_json::Value| j["bytecodes"].as_u64().expect("bytecodes");
    assert_eq!(
        count(&j) - count(&small),
        10_000 * (RUN_INSNS_PER_ITERATION + SPIN_INSNS_PER_ITERATION)
    );
    assert!(
        j["output"].as_str().unwrap().starts_with("bench run="),
        "{j}"
    );
    for key in [
        "native_bytecodes_per_s",
        "wasm_bytecodes_per_s",
        "ratio_native_over_wasm",
        "ratio_fastest_rounds",
    ] {
        assert!(j[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {j}");
    }
    assert_eq!(j["round_ms"]["wasm"].as_array().map(Vec::len), Some(3));
    assert!(j["gc"]["pause_us_max"].as_f64().is_some(), "{j}");
}
