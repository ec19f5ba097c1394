//! Old images keep loading: `tests/fixtures/v1-data` is a data directory
//! written by the host before timers had a section of their own (format
//! version 1 image files; the `host` section held the timers). A `counter`
//! stopped at count 55 with a periodic timer, and a `kv` holding `a` and `b`.

use std::path::{Path, PathBuf};

use super::common::*;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1-data")
}

/// Copies the fixture into a fresh data directory (it is never written).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn data_directory_written_before_the_timers_section_still_runs() {
    let data = data_dir();
    copy_dir(&fixture(), data.path());
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "kv",
            "--for",
            "0.5",
            "-v",
        ],
        "get a\nget b\nget c\nset d 4\n",
    );
    ok(&o);
    let out = stdout(&o);
    let kv: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("[kv] "))
        .collect();
    assert_eq!(kv, ["1", "two", "(nil)", "ok"], "{out}");
    // The counter's periodic timer came back from the old `host` section:
    // it ticks on from where it stopped.
    let counts: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("[counter] count="))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(counts.len() > 5, "{out}");
    assert_eq!(counts[0], 56, "{out}");
    let err = stderr(&o);
    assert!(
        err.contains("restored 'counter' from checkpoint 3"),
        "{err}"
    );
    assert!(!err.contains("skipped"), "{err}");
    // Written back in today's layout, it restores again.
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "kv",
            "--for",
            "0.3",
        ],
        "get d\n",
    );
    assert!(stdout(ok(&o)).contains("[kv] 4"));
    ok(&run(&["fsck", "--data", s(data.path())]));
}
