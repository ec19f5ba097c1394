//! The journal: nothing acknowledged is lost and no effect happens twice,
//! across real `kill -9`s; torn tails are cut; a changed recorded value is
//! a divergence. (Console output across kills: `kill_loop.rs`.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phantom_runtime::error::{FailureKind, RestoreError};
use phantom_runtime::process::Process;
use phantom_runtime::runtime::Runtime;

use super::common::*;
use super::kill_loop::kills;

/// A small deterministic generator for kill instants.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Kills hosts of `data` at random instants until `done` and at least
/// `min_kills` kills; returns the kills made.
fn kill_hosts(data: &Path, done: &AtomicBool, min_kills: usize, seed: u64) -> usize {
    let mut seed = seed;
    let mut killed = 0;
    while !done.load(Ordering::Relaxed) || killed < min_kills {
        let mut child = quiet_host(data, "20ms");
        std::thread::sleep(Duration::from_millis(20 + next(&mut seed) % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        killed += 1;
        // Sometimes no host runs for a while: sends go straight into the
        // journal then.
        if next(&mut seed).is_multiple_of(3) {
            std::thread::sleep(Duration::from_millis(next(&mut seed) % 60));
        }
    }
    killed
}

/// The messages a mailbox holds, as `(sender, text)`, read with `dump`.
pub(crate) fn dump(data: &Path, name: &str) -> Vec<(String, String)> {
    let ps = ps_json(data);
    assert!(
        ps.as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] != "failed"),
        "a process failed: {ps:#}"
    );
    let o = run_with_input(
        &["run", "--data", s(data), "--input", name, "--until-idle"],
        "dump\n",
    );
    ok(&o);
    let out = stdout(&o);
    let mut msgs = Vec::new();
    let mut end = None;
    for line in out.lines() {
        let line = line.strip_prefix(&format!("[{name}] ")).unwrap_or(line);
        if let Some(rest) = line.strip_prefix("msg ") {
            let mut f = rest.splitn(3, ' ');
            let _i = f.next();
            let from = f.next().unwrap_or("").to_string();
            let text = f.next().unwrap_or("").to_string();
            msgs.push((from, text));
        } else if let Some(n) = line.strip_prefix("end ") {
            end = n.trim().parse::<usize>().ok();
        }
    }
    assert_eq!(end, Some(msgs.len()), "dump incomplete:\n{out}");
    msgs
}

/// 500 messages sent with `phantom send` while hosts are killed at random
/// instants (some in checkpoints, some in group commits, some with no host
/// at all, some in the middle of a batch): every send is acknowledged, and
/// every message is in the guest's list exactly once, in order.
#[test]
fn acknowledged_messages_survive_kill_9() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MAILBOX, "box", &[]);
    let total = 500;
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let data = data.path().to_path_buf();
        let done = done.clone();
        let acked = acked.clone();
        std::thread::spawn(move || {
            // One message per send, and every fourth send a batch of five
            // from stdin (a host killed in the middle of a batch).
            let mut i = 0;
            let mut sends = 0;
            let mut failures = Vec::new();
            let mut resent = 0;
            while i < total {
                let n = if sends % 4 == 3 { 5.min(total - i) } else { 1 };
                sends += 1;
                let lines: String = (i..i + n).map(|k| format!("m{k}\n")).collect();
                let o = run_with_input(
                    &["send", "--data", s(&data), "box", "-", "--timeout", "5s"],
                    &lines,
                );
                if o.status.success() {
                    acked.lock().unwrap().extend(i..i + n);
                    if String::from_utf8_lossy(&o.stderr).contains("sent again") {
                        resent += 1;
                    }
                } else {
                    failures.push(String::from_utf8_lossy(&o.stderr).into_owned());
                }
                i += n;
            }
            done.store(true, Ordering::Relaxed);
            (failures, resent)
        })
    };
    let killed = kill_hosts(data.path(), &done, kills().max(30), 0x5eed_1234_abcd_0001);
    let (failures, resent) = sender.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(killed >= 30, "{killed} kills");
    // A send whose host dies under it sends again with the same key (none
    // twice): each is acknowledged within its time.
    assert!(
        failures.is_empty(),
        "{} sends failed: {failures:?}",
        failures.len()
    );
    assert_eq!(acked.len(), total);
    let got: Vec<usize> = dump(data.path(), "box")
        .into_iter()
        .map(|(from, text)| {
            assert_eq!(from, "-", "a message from outside");
            text.strip_prefix('m').unwrap().parse().unwrap()
        })
        .collect();
    // In order (sends were one after the other), none twice.
    for w in got.windows(2) {
        assert!(w[0] < w[1], "out of order or twice: {} then {}", w[0], w[1]);
    }
    for i in &acked {
        assert!(got.contains(i), "acknowledged message m{i} is lost");
    }
    eprintln!(
        "{killed} kills, {} of {total} acknowledged, {} delivered, {resent} sends sent again",
        acked.len(),
        got.len()
    );
    ok(&run(&["fsck", "--data", s(data.path())]));
}

/// `phantom run` of `data` for a second, without stdin, with `extra`.
fn run_a_second(data: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--data", s(data), "--no-stdin", "--for", "1"];
    args.extend_from_slice(extra);
    run(&args)
}

/// Runs `data` until idle (with `extra`), then what mailbox `b` got.
fn run_until_idle_and_dump_b(data: &Path, extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["run", "--data", s(data), "--no-stdin", "--until-idle"];
    args.extend_from_slice(extra);
    ok(&run(&args));
    dump(data, "b")
}

/// What `b` gets from `a` of `spawn_pinger_and_mailbox`.
fn pings(n: usize) -> Vec<(String, String)> {
    (1..=n).map(|k| ("a".into(), format!("ping {k}"))).collect()
}

/// Mailbox `b`, and mailbox `a` sending it `ping 1..=n`, one every 2 ms.
fn spawn_pinger_and_mailbox(data: &Path, n: usize) {
    spawn(data, phantom_tests::MAILBOX, "b", &[]);
    let limit = n.to_string();
    let args = ["--send-to", "b", "--period-ms", "2", "--limit", &limit];
    spawn(data, phantom_tests::MAILBOX, "a", &args);
}

/// Two processes, one sending `ping 1..N` to the other on a timer, the
/// host killed again and again: every message arrives exactly once, in
/// order.
#[test]
fn messages_between_processes_arrive_exactly_once_across_kills() {
    let data = data_dir();
    let n = 300;
    spawn_pinger_and_mailbox(data.path(), n);
    // `done` from the start: exactly this many kills.
    let done = AtomicBool::new(true);
    let killed = kill_hosts(data.path(), &done, kills().max(20), 0x77);
    // Let it finish without kills.
    let got = run_until_idle_and_dump_b(data.path(), &[]);
    let want = pings(n);
    assert_eq!(got.len(), want.len(), "{killed} kills");
    assert_eq!(got, want, "{killed} kills");
    ok(&run(&["fsck", "--data", s(data.path())]));
}

/// A receiver that fails (its guest traps) while another process sends
/// to it: the messages go straight into its journal, and once it is
/// retried it has every one, exactly once, in order (they used to be
/// dropped with a warning).
#[test]
fn messages_to_a_failed_process_wait_in_its_journal() {
    let data = data_dir();
    let n = 40;
    spawn_pinger_and_mailbox(data.path(), n);
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "b",
            "--until-idle",
        ],
        "trap\n",
    );
    let err = stderr(&o);
    assert!(err.contains("asked to trap"), "{err}");
    assert!(!err.contains("was not delivered"), "{err}");
    let b = ps_of(data.path(), "b");
    assert_eq!(b["state"], "failed", "{b}");
    // The pings wait in b's journal, whatever b had taken before it failed.
    let o = run(&["journal", "--data", s(data.path()), "b", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let admitted = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["input"] == "message")
        .count();
    assert!(admitted > 0, "{v}");
    // `phantom send` to it through a host that did not take it back: into
    // its journal too, with a note, as without a host.
    // (Until the host listens they go straight in: sent again then.)
    let mut host = quiet_host(data.path(), "1h");
    let mut want = pings(n);
    for i in 0..50 {
        let text = format!("late {i}");
        let o = run(&["send", "--data", s(data.path()), "b", &text, "--json"]);
        ok(&o);
        assert!(stderr(&o).contains("has failed"), "{}", stderr(&o));
        want.push(("-".to_string(), text));
        if stdout(&o).contains("\"through_host\":true") {
            break;
        }
        assert!(i < 49, "the host never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&mut host.0);
    let got = run_until_idle_and_dump_b(data.path(), &["--retry-failed"]);
    assert_eq!(got, want);
    ok(&run(&["fsck", "--data", s(data.path())]));
}

/// The frames of a journal segment: (offset, seq, payload range).
fn frames(bytes: &[u8]) -> Vec<(usize, u64, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = 32;
    while at + 20 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        let seq = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap());
        out.push((at, seq, at + 20..at + 20 + len));
        at += 20 + len;
    }
    out
}

/// Recomputes a frame's checksum (as DESIGN.md documents it).
fn reseal(bytes: &mut [u8], at: usize, payload: std::ops::Range<usize>) {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&bytes[at..at + 12]);
    h.update(&bytes[payload]);
    let sum = h.digest();
    bytes[at + 12..at + 20].copy_from_slice(&sum.to_le_bytes());
}

fn segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    segs.pop().expect("a journal segment")
}

fn copy_process(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("journal")).unwrap();
    for sub in ["", "journal"] {
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
}

/// A mailbox that got messages after its last checkpoint, as a crash
/// leaves it: returns its directory, and a runtime.
fn mailbox_with_tail(data: &Path, args: &[&str], messages: usize) -> (PathBuf, Runtime) {
    spawn(data, phantom_tests::MAILBOX, "box", args);
    for i in 0..messages {
        ok(&run(&["send", "--data", s(data), "box", &format!("m{i}")]));
    }
    let rt = Runtime::new(Default::default()).unwrap();
    let dir = data.join("box");
    // Restore (replaying the admits), deliver them, and stop without a
    // checkpoint: the journal holds the calls and their reads.
    let (mut p, _) = Process::restore(&rt, &dir).unwrap();
    while p.step(&rt).unwrap().is_some() {}
    p.journal_log().unwrap().sync().unwrap();
    drop(p);
    (dir, rt)
}

/// A journal cut at every byte of its last entries, or with its last
/// entries zeroed from any byte on (a torn write), restores to the last
/// whole entry: the messages whose admits are whole, no others.
#[test]
fn a_torn_journal_tail_restores_to_the_last_whole_entry() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MAILBOX, "box", &[]);
    for i in 0..6 {
        ok(&run(&[
            "send",
            "--data",
            s(data.path()),
            "box",
            &format!("m{i}"),
        ]));
    }
    let dir = data.path().join("box");
    let seg = segment(&dir);
    let bytes = std::fs::read(&seg).unwrap();
    let fr = frames(&bytes);
    assert_eq!(fr.len(), 6);
    let rt = Runtime::new(Default::default()).unwrap();
    let from = fr[3].0;
    let end = fr[5].2.end;
    for cut in (from..=end).step_by(1) {
        let whole = fr.iter().filter(|f| f.2.end <= cut).count();
        for zero in [false, true] {
            let copy = data_dir();
            let d = copy.path().join("box");
            copy_process(&dir, &d);
            let seg_copy = d.join("journal").join(seg.file_name().unwrap());
            let mut b = bytes.clone();
            if zero {
                b[cut..].iter_mut().for_each(|x| *x = 0);
            } else {
                b.truncate(cut);
            }
            std::fs::write(&seg_copy, &b).unwrap();
            let (p, warnings) = Process::restore(&rt, &d)
                .unwrap_or_else(|e| panic!("cut at {cut} (zeroed {zero}): {e}"));
            assert_eq!(
                p.state().pending.len(),
                whole,
                "cut at {cut} (zeroed {zero}): {warnings:?}"
            );
            let torn = cut < end && fr.iter().all(|f| f.0 != cut);
            if torn {
                assert!(
                    warnings.iter().any(|w| w.contains("was cut")),
                    "cut at {cut}: {warnings:?}"
                );
            }
        }
    }
    // Flipped bits in the last entry: it is cut, the others stay.
    let last = &fr[5];
    for byte in last.0..last.2.end {
        let copy = data_dir();
        let d = copy.path().join("box");
        copy_process(&dir, &d);
        let mut b = bytes.clone();
        b[byte] ^= 0x10;
        std::fs::write(d.join("journal").join(seg.file_name().unwrap()), &b).unwrap();
        let (p, _) = Process::restore(&rt, &d).unwrap();
        assert_eq!(p.state().pending.len(), 5, "bit flipped in byte {byte}");
    }
}

/// A recorded value changed, with the frame's checksum recomputed so it
/// reads as valid: the replay reports a divergence at that call's end,
/// and `phantom run` marks the process failed (kind `divergence`).
#[test]
fn a_changed_recorded_value_is_a_divergence() {
    for (what, kind) in [
        ("wall clock", 6u8),
        ("message", 1u8),
        ("process clock", 7u8),
    ] {
        let data = data_dir();
        let (dir, rt) = mailbox_with_tail(data.path(), &["--random", "1"], 3);
        let seg = segment(&dir);
        let mut bytes = std::fs::read(&seg).unwrap();
        let fr = frames(&bytes);
        let (at, seq, payload) = fr
            .iter()
            .find(|f| bytes[f.2.start] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {what} entry"));
        // The last byte of the payload: the wall clock's nanoseconds (kept
        // below a second) or the message's text.
        // The process clock's read becomes a random number's (same size):
        // the guest reads another kind of value than recorded.
        match kind {
            6 => bytes[payload.end - 5] ^= 1,
            7 => bytes[payload.start] = 5,
            _ => bytes[payload.end - 1] ^= 1,
        }
        // The call it belongs to (the one after a message's admit): the
        // way past cuts there, not at the entry that showed it.
        let call = if kind == 1 {
            fr.iter().find(|f| f.1 > seq && bytes[f.2.start] == 2)
        } else {
            fr.iter().rev().find(|f| f.1 < seq && bytes[f.2.start] == 2)
        }
        .unwrap()
        .1;
        reseal(&mut bytes, at, payload);
        std::fs::write(&seg, &bytes).unwrap();
        let e = match Process::restore(&rt, &dir) {
            Ok(_) => panic!("{what}: a changed entry {seq} was accepted"),
            Err(e) => e,
        };
        let RestoreError::Journal { failure, .. } = &e else {
            panic!("{what}: {e}");
        };
        assert_eq!(failure.kind, FailureKind::Divergence, "{what}: {e}");
        assert!(failure.message.contains("diverged at entry"), "{e}");
        // The CLI: the process is marked failed, the others run on.
        let entries = || {
            let o = run(&["journal", "--data", s(data.path()), "box", "--json"]);
            let v: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
            v["entries"].as_array().unwrap().len()
        };
        let before = entries();
        let o = run_a_second(data.path(), &[]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("diverged at entry"), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("--cut-at {call}`")),
            "{what}: the hint names the call: {}",
            stderr(&o)
        );
        // Tried again, it fails the same way and writes nothing.
        let o = run_a_second(data.path(), &["--retry-failed"]);
        assert!(!o.status.success());
        assert_eq!(entries(), before, "{what}: a retry lengthened the journal");
        let o = run(&["fsck", "--data", s(data.path())]);
        assert!(!o.status.success());
        assert!(
            stdout(&o).contains("the last restore failed"),
            "{}",
            stdout(&o)
        );
        let ps = ps_json(data.path());
        let p = &ps[0];
        assert_eq!(p["state"], "failed", "{ps}");
        assert_eq!(p["failure"]["kind"], "divergence", "{ps}");
        // With --fallback, the process goes back to its newest checkpoint
        // without the tail that does not replay, says so, and runs.
        let o = run_a_second(data.path(), &["--retry-failed", "--fallback"]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains("does not replay"), "{}", stderr(&o));
        let ps = ps_json(data.path());
        assert_ne!(ps[0]["state"], "failed", "{ps}");
        let decisions = &ps[0]["fallback"]["decisions"];
        assert_eq!(decisions[0]["action"], "rollback", "{ps}");
        Process::restore(&rt, &dir).expect("it restores without the tail");
        let o = run(&["journal", "--data", s(data.path()), "box", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
        assert!(
            !v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "admit"),
            "the tail's inputs were dropped: {v}"
        );
    }
}

/// An entry that does not decode (a crafted kind, checksums recomputed)
/// stops the process with a message naming it; `phantom journal --cut-at`
/// keeps every entry before it, sets the removed ones aside, and the
/// process resumes from just before it and takes new messages.
#[test]
fn a_journal_cut_before_a_bad_entry_keeps_what_precedes_it() {
    let data = data_dir();
    let (dir, _rt) = mailbox_with_tail(data.path(), &[], 4);
    let seg = segment(&dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let fr = frames(&bytes);
    // The third message's admit.
    let admits: Vec<_> = fr
        .iter()
        .filter(|f| bytes[f.2.start] == 1)
        .cloned()
        .collect();
    assert_eq!(admits.len(), 4);
    let (at, bad, payload) = admits[2].clone();
    let total = fr.last().unwrap().1 + 1;
    bytes[payload.start] = 0xee;
    reseal(&mut bytes, at, payload.clone());
    std::fs::write(&seg, &bytes).unwrap();
    let o = run_a_second(data.path(), &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("entry {bad} of the journal")),
        "{err}"
    );
    assert!(err.contains(&format!("--cut-at {bad}")), "{err}");
    let o = run(&["fsck", "--data", s(data.path())]);
    assert!(
        !o.status.success(),
        "fsck passes a journal entry that does not decode"
    );
    let cut_at = |at: u64| {
        let at = at.to_string();
        run(&[
            "journal",
            "--data",
            s(data.path()),
            "box",
            "--json",
            "--cut-at",
            &at,
        ])
    };
    // Refused past the end.
    let o = cut_at(total + 5);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nothing to cut"), "{}", stderr(&o));
    let o = cut_at(bad);
    let v: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
    assert_eq!(v["removed"], total - bad, "{v}");
    assert_eq!(v["failed"], true, "{v}");
    // It goes on from a checkpoint of the state at the cut.
    assert!(v["checkpoint"].as_u64().is_some(), "{v}");
    // The removed entries are kept, byte for byte, the bad one first.
    let kept =
        phantom_runtime::journal::log::scan(Path::new(v["kept"].as_str().unwrap()), bad).unwrap();
    assert_eq!(kept.entries.len() as u64, total - bad);
    assert_eq!(kept.entries[0].payload, bytes[payload].to_vec());
    ok(&run(&["fsck", "--data", s(data.path())]));
    let o = run(&["journal", "--data", s(data.path()), "box", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 0, "{v}");
    // Resumed from the cut: the first two messages, then new ones.
    ok(&run_a_second(data.path(), &["--retry-failed"]));
    ok(&run(&["send", "--data", s(data.path()), "box", "after"]));
    let got: Vec<String> = dump(data.path(), "box")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(got, ["m0", "m1", "after"]);
}

/// `phantom journal` lists the entries after the checkpoint; `--json`
/// gives their kinds and positions; `send --json` gives the position.
#[test]
fn journal_and_send_report_positions() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MAILBOX, "box", &[]);
    let o = run(&["send", "--data", s(data.path()), "box", "hello", "--json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["position"], 0);
    let o = run_with_input(
        &["send", "--data", s(data.path()), "box", "-", "--json"],
        "a\nb\nc\n",
    );
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["first_position"].as_u64(), v["position"].as_u64()),
        (Some(1), Some(3))
    );
    let o = run(&["journal", "--data", s(data.path()), "box", "--json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[3]["kind"], "admit");
    assert_eq!(entries[3]["text"], "c");
    let text = stdout(&ok(&run(&["journal", "--data", s(data.path()), "box"])).clone());
    assert!(text.contains("4 entries after it"), "{text}");
    // Refusals: a process that takes no messages (a component built before
    // messages existed), a missing one.
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1-data/counter/component.wasm");
    spawn(data.path(), s(&old), "c", &[]);
    fails_with(
        &run(&["send", "--data", s(data.path()), "c", "x"]),
        "does not take messages",
    );
    fails_with(
        &run(&["send", "--data", s(data.path()), "nobody", "x"]),
        "no process named",
    );
}

/// `phantom send` sends again, with the same key, when its host dies under
/// it: what the process already took (durable in its journal, or covered
/// by a checkpoint) is left out, whether the attempt goes through a host or
/// straight into the journal.
#[test]
fn a_send_again_with_its_key_delivers_nothing_twice() {
    use phantom_runtime::control::{self, ControlError, Request};
    use phantom_runtime::journal::offline::send_offline;
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::MAILBOX, "box", &[]);
    let dir = d.join("box");
    let key = "0123456789abcdef0123456789abcdef";
    let texts = |n: usize| -> Vec<String> { (0..n).map(|i| format!("k{i}")).collect() };
    let offline = |n: usize| {
        let bytes: Vec<Vec<u8>> = texts(n).into_iter().map(String::into_bytes).collect();
        send_offline(&dir, Some(key), &bytes)
            .unwrap()
            .map(|d| (d.first, d.last))
    };
    let send = |n: usize, key: &str| {
        let request = Request::Send {
            name: "box".into(),
            messages: texts(n),
            timeout_ms: None,
            key: Some(key.into()),
        };
        loop {
            match control::request_within(d, &request, Duration::from_secs(30)) {
                Err(ControlError::NoHost(_)) => std::thread::sleep(Duration::from_millis(20)),
                r => return r,
            }
        }
    };
    // Straight into the journal.
    assert_eq!(offline(2), Some((0, 1)));
    assert_eq!(offline(2), None, "both were there");
    assert_eq!(offline(3), Some((2, 2)), "only the new one");
    // Through a host, which replayed them.
    let mut host = quiet_host(d, "1h");
    let v = send(4, key).unwrap();
    assert_eq!(
        (v["messages"].as_u64(), v["already_delivered"].as_u64()),
        (Some(4), Some(3))
    );
    assert!(
        v["position"].is_u64() && v["first_position"] == v["position"],
        "{v}"
    );
    match send(1, "not-a-key") {
        Err(ControlError::Refused(why)) => assert!(why.contains("not a send key"), "{why}"),
        r => panic!("a bad key was taken: {r:?}"),
    }
    // Covered by a checkpoint, then the host killed: the checkpoint and
    // the journal after it remember the key.
    ok(&run(&["checkpoint", "--data", s(d)]));
    let v = send(4, key).unwrap();
    assert_eq!(v["already_delivered"], 4);
    assert!(v["position"].is_null(), "{v}");
    let _ = host.0.kill();
    let _ = host.0.wait();
    let mut host = quiet_host(d, "1h");
    let v = send(5, key).unwrap();
    assert_eq!(v["already_delivered"], 4);
    let _ = host.0.kill();
    let _ = host.0.wait();
    assert_eq!(offline(5), None, "all five were there");
    let got: Vec<(String, String)> = dump(d, "box");
    let want: Vec<(String, String)> = texts(5).into_iter().map(|t| ("-".to_string(), t)).collect();
    assert_eq!(got, want, "each once, in order, from outside");
}

/// With no host, a full queue makes `phantom send` wait (up to
/// `--timeout`) for a host to start and let the guest drain it, instead of
/// failing at once; a batch no empty queue could hold says so.
#[test]
fn a_send_to_a_full_queue_waits_for_a_host() {
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::MAILBOX, "box", &[]);
    let full: String = (0..4096).map(|i| format!("f{i}\n")).collect();
    ok(&run_with_input(
        &["send", "--data", s(d), "box", "-"],
        &full,
    ));
    let waiting = phantom()
        .args([
            "send",
            "--data",
            s(d),
            "box",
            "last",
            "--timeout",
            "60s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut host = quiet_host(d, "1h");
    let o = waiting.wait_with_output().unwrap();
    ok(&o);
    assert!(stderr(&o).contains("waiting up to 60 s"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    sigterm(&mut host.0);
    let got = dump(d, "box");
    assert_eq!(got.len(), 4097);
    assert_eq!(got.last().unwrap().1, "last");
    // More than an empty queue holds, no host: refused after --timeout,
    // naming the limit, as JSON too; nothing was delivered.
    let big: String = (0..4097).map(|i| format!("b{i}\n")).collect();
    let o = run_with_input(
        &[
            "send",
            "--data",
            s(d),
            "box",
            "-",
            "--timeout",
            "300ms",
            "--json",
        ],
        &big,
    );
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    let why = v["error"].as_str().unwrap();
    assert!(
        why.contains("a batch of 4097 messages") && why.contains("at most 4096"),
        "{why}"
    );
    assert_eq!(dump(d, "box").len(), 4097);
}

/// The messages `a` sent to `b` that `b` holds, in order.
fn texts_from_a(data: &Path) -> Vec<String> {
    dump(data, "b")
        .into_iter()
        .filter(|(from, _)| from == "a")
        .map(|(_, t)| t)
        .collect()
}

/// Receivers drop message ids they have taken from a sender, so a sender
/// must never reuse one: its ids go on after those it may have used when
/// its history is cut (`journal --cut-at`), rolled back, undone, or when a
/// new process (spawned or forked) takes the name of a removed one. An
/// undo brings back only the state this process's own rollback left.
#[test]
fn message_ids_go_on_after_a_cut_an_undo_a_new_process_of_the_name_and_a_fork() {
    use std::io::Write;
    let data = data_dir();
    let d = data.path();
    // z, spawned first, has the lowest ids; forked later as a.
    spawn(d, phantom_tests::MAILBOX, "z", &[]);
    spawn(d, phantom_tests::MAILBOX, "b", &[]);
    spawn(d, phantom_tests::MAILBOX, "a", &[]);
    // c1 and c2 leave, then the host dies before any checkpoint.
    let mut host = HostChild(
        phantom()
            .args(["run", "--data", s(d), "--input", "a"])
            .args(["--checkpoint-every", "1h"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = host.stdin.take().unwrap();
    let entries = |name: &str| -> Vec<serde_json::Value> {
        let o = run(&["journal", "--data", s(d), name, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
        v["entries"].as_array().unwrap().clone()
    };
    // One line at a time, so the call of the first is before the cut.
    for (k, line) in [b"send b c1\n", b"send b c2\n"].iter().enumerate() {
        stdin.write_all(*line).unwrap();
        stdin.flush().unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while entries("b")
            .iter()
            .filter(|e| e["input"] == "message")
            .count()
            <= k
        {
            assert!(std::time::Instant::now() < until, "b never got message {k}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    host.kill().unwrap();
    host.wait().unwrap();
    drop(stdin);
    // Cut a's journal before the line that sent c2: a goes on as if it
    // had sent c1 only, and its next message is still taken.
    let at = entries("a")
        .iter()
        .find(|e| e["kind"] == "admit" && e["line"] == "send b c2")
        .and_then(|e| e["seq"].as_u64())
        .expect("the admit of the second line");
    ok(&run(&[
        "journal",
        "--data",
        s(d),
        "a",
        "--cut-at",
        &at.to_string(),
    ]));
    ok(&feed(d, "a", "send b c3\n"));
    assert_eq!(texts_from_a(d), ["c1", "c2", "c3"]);
    // Rolled back to its spawn, a sends r1; undone, it sends u1: both are
    // taken.
    let first = {
        let o = run(&["checkpoints", "--data", s(d), "a", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
        v.as_array()
            .or_else(|| v["checkpoints"].as_array())
            .unwrap()[0]["id"]
            .as_u64()
            .unwrap()
    };
    ok(&run(&[
        "rollback",
        "--data",
        s(d),
        "a",
        "--to",
        &first.to_string(),
    ]));
    ok(&feed(d, "a", "send b r1\n"));
    ok(&run(&["rollback", "--data", s(d), "a", "--undo"]));
    ok(&feed(d, "a", "send b u1\n"));
    assert_eq!(texts_from_a(d), ["c1", "c2", "c3", "r1", "u1"]);
    // A new process named a, after the old one was removed: its messages
    // are taken, and the states the old one's rollback kept are not its
    // to undo.
    std::fs::remove_dir_all(d.join("a")).unwrap();
    spawn(d, phantom_tests::MAILBOX, "a", &[]);
    ok(&feed(d, "a", "send b n1\n"));
    assert_eq!(texts_from_a(d), ["c1", "c2", "c3", "r1", "u1", "n1"]);
    let kept_before = std::fs::read_dir(d).unwrap().count();
    let o = run(&["rollback", "--data", s(d), "a", "--undo"]);
    assert!(!o.status.success(), "an undo to another process's state");
    assert!(stderr(&o).contains("not of this one"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(d).unwrap().count(), kept_before);
    ok(&feed(d, "a", "send b n2\n"));
    assert_eq!(texts_from_a(d), ["c1", "c2", "c3", "r1", "u1", "n1", "n2"]);
    // A fork named a, of the process spawned before all: its ids go on
    // after the time of the fork, so b takes its messages too.
    std::fs::remove_dir_all(d.join("a")).unwrap();
    let o = run(&["fork", "--data", s(d), "z", "--as", "a", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(ok(&o))).unwrap();
    assert!(v["own_checkpoint"].as_u64().is_some(), "{v}");
    ok(&feed(d, "a", "send b f1\n"));
    assert_eq!(
        texts_from_a(d),
        ["c1", "c2", "c3", "r1", "u1", "n1", "n2", "f1"]
    );
    ok(&run(&["fsck", "--data", s(d)]));
}
