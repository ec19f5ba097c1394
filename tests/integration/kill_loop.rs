//! The kill loop: `counter` survives `kill -9` at random instants, and
//! with the journal nothing it printed is lost or printed twice (but an
//! effect in flight at the instant of the kill).
//!
//! Each run's stdout and stderr go to one file through one open file
//! description, so guest output (flushed after every call) and the host's
//! `captured checkpoint N` lines appear in the order they happened: the
//! counts printed before `captured checkpoint N` are exactly those in
//! checkpoint N.

use std::collections::BTreeMap;
use std::time::Duration;

use super::common::*;

/// Kills per test run (more with PHANTOM_KILLS).
const DEFAULT_KILLS: usize = 24;

/// A small deterministic generator for the kill instants.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn counter_survives_kill_9_at_random_instants() {
    let data = data_dir();
    spawn(
        data.path(),
        phantom_tests::COUNTER,
        "counter",
        &["--period-ms", "2"],
    );
    kill_cycles(data.path(), &|_| {});
}

/// Kills of one test run (more with PHANTOM_KILLS).
pub fn kills() -> usize {
    std::env::var("PHANTOM_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KILLS)
}

/// Runs the only process of `data` (one printing `count=<n>` lines, n from
/// 1, one per event) and kills the host with SIGKILL at random instants,
/// [`kills`] times, checking after every run that it restored the newest
/// committed checkpoint and, replaying its journal, continued right after
/// the last count printed before the kill.
/// `check` sees every run's whole log too.
pub fn kill_cycles(data: &std::path::Path, check: &dyn Fn(&str)) {
    let kills = kills();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // Count stored in each checkpoint id, from every run so far.
    let mut count_at: BTreeMap<u64, u64> = BTreeMap::new();
    count_at.insert(1, 0); // the spawn's checkpoint: before the first tick
    let mut newest_committed = 1u64;
    let mut highest_printed = 0u64;
    let mut restarts_that_progressed = 0;
    let mut killed_mid_write = 0;
    let mut repeats = 0;
    for i in 0..kills {
        let log_path = data.join(format!("run-{i}.log"));
        let mut child = start_logged_run(data, "15ms", &log_path);
        if i % 3 == 2 {
            // Aim at a write in flight: kill as soon as a capture is logged
            // (the writer thread is then compressing, fsyncing, renaming).
            let started = std::time::Instant::now();
            let wanted = 1 + next(&mut seed) % 4;
            loop {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let captures = text.matches("captured checkpoint").count() as u64;
                if captures >= wanted || started.elapsed() > Duration::from_secs(3) {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        } else {
            // Kill between 5 and 300 ms in: sometimes before the first
            // checkpoint, often in the middle of one.
            std::thread::sleep(Duration::from_millis(5 + next(&mut seed) % 295));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let text = std::fs::read_to_string(&log_path).unwrap();
        check(&text);
        let run = parse_run_log(&text);
        if run.counts.is_empty() && run.restored_from == 0 {
            // Killed before the restore finished: nothing to check but that
            // the next run can still restore.
            continue;
        }
        assert!(run.restored_from > 0, "run {i} did not report its restore");
        // It restored at least the newest checkpoint known to be committed.
        assert!(
            run.restored_from >= newest_committed,
            "run {i} restored checkpoint {} although {newest_committed} was committed",
            run.restored_from
        );
        // The journal replays past the checkpoint: the run continues right
        // after the last count printed before the kill. The one repeat
        // allowed is an effect in flight at the kill (printed, its
        // `released` entry not yet written): it is printed again
        // (at-least-once for the console, see DESIGN.md), and only at the
        // start of the next run.
        if let Some(&first) = run.counts.first() {
            assert!(
                first <= highest_printed + 1,
                "run {i} starts at {first}, but {highest_printed} was the last count printed: output was lost"
            );
            let repeated = highest_printed + 1 - first;
            assert!(
                repeated <= 64,
                "run {i} repeats {repeated} counts: more than the effects in flight at a kill"
            );
            repeats += repeated;
        }
        // Counts within a run are consecutive.
        for w in run.counts.windows(2) {
            assert_eq!(w[1], w[0] + 1, "run {i}: counts jump");
        }
        if let Some(&first) = run.counts.first() {
            // Never back before a committed checkpoint, never beyond what ran.
            assert!(
                first > count_at[&newest_committed],
                "run {i} went back to {first}"
            );
            assert!(
                first <= highest_printed + 1,
                "run {i} starts at {first} beyond anything computed"
            );
            if first > 1 {
                restarts_that_progressed += 1;
            }
        }
        let last_captured = run.captured.keys().max().copied();
        if last_captured.is_some_and(|c| !run.committed.contains(&c)) {
            killed_mid_write += 1;
        }
        for (&id, &count) in &run.captured {
            count_at.insert(id, count);
        }
        if let Some(&c) = run.committed.iter().max() {
            newest_committed = newest_committed.max(c);
        }
        highest_printed = highest_printed.max(run.counts.last().copied().unwrap_or(0));
    }
    assert!(
        restarts_that_progressed >= kills / 2,
        "too few restarts made progress: {restarts_that_progressed}"
    );
    assert!(
        killed_mid_write >= kills / 6,
        "only {killed_mid_write} kills landed while a checkpoint was being written"
    );
    eprintln!("{kills} kills, {repeats} counts printed again (in flight at a kill)");
    // The image is readable and consistent after all of it.
    ok(&run(&["fsck", "--data", s(data)]));
    // A graceful run then continues from where the last one was killed.
    let o = run(&["run", "--data", s(data), "--for", "0.3", "--no-stdin", "-v"]);
    ok(&o);
    let graceful = parse_run_log(&(stdout(&o) + &stderr(&o)));
    assert!(!graceful.counts.is_empty());
    // After a graceful stop nothing is lost: the next run starts right after
    // the last count printed.
    let o = run_for(data, "0.1");
    ok(&o);
    let after = parse_run_log(&stdout(&o));
    assert_eq!(
        after.counts.first(),
        Some(&(graceful.counts.last().unwrap() + 1))
    );
}

/// The exactly-once file sink (`phantom run --console-log`): across
/// [`kills`] kills at random instants, stdout may print the count in
/// flight at a kill twice, but `console.log` holds every count exactly
/// once, in order, with nothing missing: a file can confirm what it holds
/// (its length is recorded with each release in the journal, and what the
/// restored process writes again over bytes written before the crash is
/// skipped, not repeated).
#[test]
fn the_console_log_holds_every_count_exactly_once_across_kills() {
    let data = data_dir();
    spawn(
        data.path(),
        phantom_tests::COUNTER,
        "counter",
        &["--period-ms", "1"],
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut printed_max = 0u64;
    let mut stdout_repeats = 0u64;
    for i in 0..kills() {
        let out_path = data.path().join(format!("out-{i}.log"));
        let out = std::fs::File::create(&out_path).unwrap();
        let mut child = HostChild(
            phantom()
                .args([
                    "run",
                    "--data",
                    s(data.path()),
                    "--no-stdin",
                    "--console-log",
                ])
                .args(["--checkpoint-every", "20ms"])
                .stdin(std::process::Stdio::null())
                .stdout(out)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(5 + next(&mut seed) % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        let printed = counts(&std::fs::read_to_string(&out_path).unwrap_or_default());
        if let Some(&first) = printed.first() {
            stdout_repeats += (printed_max + 1).saturating_sub(first);
        }
        printed_max = printed.iter().copied().max().unwrap_or(0).max(printed_max);
    }
    // A graceful end: everything released is in the log.
    let o = run(&[
        "run",
        "--data",
        s(data.path()),
        "--no-stdin",
        "--console-log",
        "--for",
        "0.2",
    ]);
    printed_max = counts(&stdout(ok(&o)))
        .into_iter()
        .max()
        .unwrap_or(0)
        .max(printed_max);
    let log = std::fs::read_to_string(data.path().join("counter/console.log")).unwrap();
    let logged = counts(&log);
    assert!(log.ends_with('\n'), "the log ends in the middle of a line");
    assert_eq!(
        logged,
        (1..=logged.len() as u64).collect::<Vec<_>>(),
        "the log does not hold 1..n exactly once, in order"
    );
    assert!(
        logged.len() as u64 >= printed_max,
        "stdout printed {printed_max}, the log holds {}",
        logged.len()
    );
    eprintln!(
        "console.log: {} counts exactly once; stdout repeated {stdout_repeats} over {} kills",
        logged.len(),
        kills()
    );
}
