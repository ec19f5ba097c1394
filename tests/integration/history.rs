//! History (issue 11, item 1) through the CLI: the keep policy, pins, the
//! checkpoint tree, `gc`, and collection killed with `kill -9` at random
//! points (no named page lost: `fsck` clean, memory bytes unchanged).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use phantom_runtime::process::Process;
use phantom_runtime::runtime::Runtime;

use super::common::*;

fn memory_of(dir: &Path) -> Vec<Vec<u8>> {
    let rt = Runtime::new(Default::default()).unwrap();
    let (mut p, _) = Process::restore(&rt, dir).unwrap();
    p.memory_bytes().unwrap()
}

fn ids(data: &Path, name: &str) -> Vec<u64> {
    let o = ok(&run(&["checkpoints", "--data", s(data), name, "--json"])).clone();
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let mut v: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    v.sort_unstable();
    v
}

/// Keeps the last `n` checkpoints of `name` and nothing by hour or day.
fn keep_last(data: &Path, name: &str, n: u32) {
    ok(&run(&[
        "keep",
        "--data",
        s(data),
        name,
        "--keep-last",
        &n.to_string(),
        "--keep-hourly",
        "0",
        "--keep-daily",
        "0",
    ]));
}

#[test]
fn keep_policy_pins_and_gc_through_the_cli() {
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::MEMTOUCH, "m", &["--mib", "2"]);
    keep_last(d, "m", 3);
    ok(&feed(d, "m", "fill 1\n"));
    let pinned = *ids(d, "m").last().unwrap();
    let pinned_memory = memory_of(&d.join("m"));
    let o = ok(&run(&[
        "pin",
        "--data",
        s(d),
        "m",
        &pinned.to_string(),
        "--json",
    ]))
    .clone();
    assert!(stdout(&o).contains(&pinned.to_string()), "{}", stdout(&o));
    for seed in 2..9 {
        ok(&feed(d, "m", &format!("touch 5 {seed}\n")));
    }
    let kept = ids(d, "m");
    assert_eq!(kept.len(), 4, "pinned + the last 3: {kept:?}");
    assert_eq!(kept[0], pinned);
    // The tree and the pin show.
    let text = stdout(ok(&run(&["checkpoints", "--data", s(d), "m"]))).to_string();
    assert!(text.contains("TREE") && text.contains("pinned"), "{text}");
    let o = ok(&run(&["gc", "--data", s(d), "--json"])).clone();
    let gc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        gc[0]["bytes_after"].as_u64() <= gc[0]["bytes_before"].as_u64(),
        "{gc}"
    );
    ok(&run(&["fsck", "--data", s(d)]));
    // The pinned checkpoint still has exactly its bytes.
    ok(&run(&[
        "fork",
        "--data",
        s(d),
        "m",
        "--at",
        &pinned.to_string(),
        "--as",
        "old",
    ]));
    assert_eq!(memory_of(&d.join("old")), pinned_memory);
    // The fork takes the keep policy along; so does a rollback, and the
    // pin too.
    let policy = |name: &str| -> serde_json::Value {
        let o = run(&["keep", "--data", s(d), name, "--json"]);
        serde_json::from_str(&stdout(ok(&o))).unwrap()
    };
    assert_eq!(policy("old")["last"], 3);
    ok(&run(&[
        "rollback",
        "--data",
        s(d),
        "m",
        "--to",
        &pinned.to_string(),
    ]));
    assert_eq!(policy("m")["last"], 3);
    assert_eq!(policy("m")["pinned"], serde_json::json!([pinned]));
    ok(&run(&["rollback", "--data", s(d), "m", "--undo"]));
    // Pinning what is gone is a clear error; --keep-last 0 is refused.
    let o = run(&["pin", "--data", s(d), "m", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("checkpoint 1"), "{}", stderr(&o));
    let o = run(&["keep", "--data", s(d), "m", "--keep-last", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at least 1"), "{}", stderr(&o));
    // Unpinned, it goes with the next checkpoint.
    ok(&run(&[
        "pin",
        "--data",
        s(d),
        "m",
        &pinned.to_string(),
        "--unpin",
    ]));
    ok(&feed(d, "m", "touch 1 99\n"));
    assert!(!ids(d, "m").contains(&pinned));
}

#[test]
fn gc_killed_at_random_points_loses_no_named_page() {
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::MEMTOUCH, "m", &["--mib", "8"]);
    keep_last(d, "m", 1000);
    ok(&feed(d, "m", "fill 7\n"));
    for seed in 0..12 {
        ok(&feed(
            d,
            "m",
            &format!("touch 200 {seed}\nfill {}\n", seed + 100),
        ));
    }
    // Only the last 2 stay: most packs become dead or sparse.
    keep_last(d, "m", 2);
    let expected = memory_of(&d.join("m"));
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..12 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = phantom()
            .args(["gc", "--data", s(d), "m"])
            .env("PHANTOM_TEST_GC_PAUSE_MS", "40")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + rng % 200));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let o = run(&["fsck", "--data", s(d), "--json"]);
        assert!(o.status.success(), "round {round}: {}", stdout(&o));
        assert_eq!(memory_of(&d.join("m")), expected, "round {round}");
    }
    ok(&run(&["gc", "--data", s(d)]));
    ok(&run(&["fsck", "--data", s(d)]));
    assert_eq!(memory_of(&d.join("m")), expected);
    assert_eq!(ids(d, "m").len(), 2);
}

/// `phantom gc` and `phantom pin` while a host runs and checkpoints every
/// 20 ms: the store's lock orders them against the host's writes; nothing
/// breaks and the counter goes on.
#[test]
fn gc_and_pin_while_a_host_runs() {
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::COUNTER, "c", &["--period-ms", "2"]);
    keep_last(d, "c", 3);
    let mut host = quiet_host(d, "20ms");
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..15 {
        ok(&run(&["gc", "--data", s(d), "c"]));
        let newest = *ids(d, "c").last().unwrap();
        // The newest may be deleted by the host between the two commands:
        // then pinning it is a clear refusal, never a broken store.
        let o = run(&["pin", "--data", s(d), "c", &newest.to_string()]);
        assert!(
            o.status.success() || stderr(&o).contains("no such checkpoint"),
            "{}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let _ = host.kill();
    let _ = host.wait();
    ok(&run(&["fsck", "--data", s(d)]));
    let kept = ids(d, "c");
    assert!(kept.len() >= 3, "{kept:?}");
}
