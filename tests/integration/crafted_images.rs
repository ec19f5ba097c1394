//! Images whose checksums are valid but whose contents are wrong: each is
//! refused before anything is instantiated, with a message naming the
//! checkpoint and the problem, and the host falls back to the previous good
//! checkpoint, exactly as for a corrupt file. None panics the host.
//!
//! The images are rewritten with the image store's raw codec, which
//! recomputes every checksum, so the mutation reaches past the checksum
//! checks.

use std::fs;
use std::path::{Path, PathBuf};

use phantom_snapshots::raw::{RawImage, RawMemory};

use super::common::*;

/// A `kv` process with checkpoints 1 (spawn), 2 (`a` set) and 3 (`b` set).
fn kv_with_history(data: &Path) -> PathBuf {
    spawn(data, phantom_tests::KV, "kv", &[]);
    for line in ["set a 1\n", "set b 2\n"] {
        ok(&run_with_input(
            &["run", "--data", s(data), "--until-idle"],
            line,
        ));
    }
    let dir = data.join("kv");
    assert_eq!(checkpoint_files(&dir).len(), 3);
    dir
}

/// Rewrites the newest checkpoint of `dir` with `edit`; returns its id.
pub fn rewrite_newest(dir: &Path, edit: impl FnOnce(&mut RawImage)) -> u64 {
    let newest = checkpoint_files(dir).pop().expect("a checkpoint");
    let mut raw = RawImage::parse(&fs::read(&newest).unwrap()).unwrap();
    edit(&mut raw);
    fs::write(&newest, raw.encode()).unwrap();
    raw.id
}

fn section<'a>(raw: &'a mut RawImage, name: &str) -> &'a mut Vec<u8> {
    &mut raw
        .sections
        .iter_mut()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no section {name}"))
        .1
}

type Edit = fn(&mut RawImage);

/// Each crafted image, the words its refusal must contain, and extra
/// arguments for `run`.
fn cases() -> Vec<(&'static str, Edit, &'static str, &'static [&'static str])> {
    vec![
        (
            "memory size not a multiple of 4 KiB",
            |r| r.memories[0].size_bytes -= 100,
            "not a whole number of 64 KiB",
            &[],
        ),
        (
            "memory size a multiple of 4 KiB but not of 64 KiB",
            |r| r.memories[0].size_bytes += 4096,
            "not a whole number of 64 KiB",
            &[],
        ),
        (
            "memory larger than a 32-bit memory",
            |r| r.memories[0].size_bytes = 8 << 30,
            "more than the component allows",
            &[],
        ),
        (
            "memory over --max-memory-mib",
            |r| r.memories[0].size_bytes = 3 << 30,
            "--max-memory-mib",
            &["--max-memory-mib", "64"],
        ),
        (
            "memory smaller than the component's minimum",
            |r| {
                r.memories[0].size_bytes = 65536;
                r.memories[0].blocks.clear();
                if r.memories[0].table.is_some() {
                    r.memories[0].table = Some((0, Vec::new()));
                }
            },
            "less than the component's minimum",
            &[],
        ),
        (
            "a memory the component does not have",
            |r| {
                let table = (r.version >= 2).then(|| (0, Vec::new()));
                r.memories.push(RawMemory {
                    index: 1,
                    size_bytes: 65536,
                    blocks: Vec::new(),
                    table,
                })
            },
            "but the component creates 1",
            &[],
        ),
        (
            "memories not numbered from 0",
            |r| r.memories[0].index = 3,
            "not numbered",
            &[],
        ),
        (
            "an unparsable host section",
            |r| *section(r, "host") = b"{\"name\": [broken".to_vec(),
            "`host` section is bad",
            &[],
        ),
        (
            "a host section of the wrong shape",
            |r| *section(r, "host") = br#"{"pending": "not a list"}"#.to_vec(),
            "`host` section is bad",
            &[],
        ),
        (
            "no host section",
            |r| r.sections.retain(|(n, _)| n != "host"),
            "no `host` section",
            &[],
        ),
        (
            "no globals section",
            |r| r.sections.retain(|(n, _)| n != "globals"),
            "no `globals` section",
            &[],
        ),
        (
            "globals of another component",
            |r| *section(r, "globals") = b"[]".to_vec(),
            "was component.wasm replaced",
            &[],
        ),
        (
            "a timer with a period of zero",
            |r| {
                *section(r, "timers") =
                    br#"{"timers":{"1":{"due_ns":5,"period_ns":0}},"next_id":2}"#.to_vec()
            },
            "`timers` section is bad",
            &[],
        ),
        (
            "a queue longer than the limit",
            |r| {
                let lines = vec!["\"console-closed\""; 5000].join(",");
                *section(r, "host") = format!("{{\"pending\":[{lines}]}}").into_bytes();
            },
            "`host` section is bad",
            &[],
        ),
    ]
}

#[test]
fn crafted_images_fall_back_to_the_previous_good_checkpoint() {
    for (what, edit, words, extra) in cases() {
        let data = data_dir();
        let dir = kv_with_history(data.path());
        let id = rewrite_newest(&dir, edit);
        let mut args = vec!["run", "--data", s(data.path()), "--until-idle"];
        args.extend_from_slice(extra);
        let o = run_with_input(&args, "get a\nget b\n");
        let err = stderr(&o);
        assert!(!host_panicked(&err), "{what}: the host panicked:\n{err}");
        assert!(o.status.success(), "{what}: {err}");
        assert!(
            err.contains(&format!("skipped checkpoint {id}")) && err.contains(words),
            "{what}: stderr should name checkpoint {id} and say {words:?}:\n{err}"
        );
        // Checkpoint 2 holds `a` but not `b`; the journal's tail after it
        // (kept: it reaches back to the oldest checkpoint) brings `b` back.
        assert_eq!(stdout(&o), "1\n2\n", "{what}");
        // fsck reports the crafted checkpoint, and that the process is
        // still restorable from the previous one (a limit of `run` is not
        // fsck's to know).
        if !extra.is_empty() {
            continue;
        }
        let fsck = run(&["fsck", "--data", s(data.path())]);
        assert!(!fsck.status.success(), "{what}: fsck must report it");
        let text = stdout(&fsck);
        assert!(
            text.contains("still restorable") && text.contains(&format!("checkpoint {id}")),
            "{what}:\n{text}"
        );
    }
}

/// The defect of the issue: an image whose memory size is not a multiple of
/// 4 KiB passed the restore checks and reached an `assert!`, and the whole
/// host panicked, stopping every process of the data directory.
#[test]
fn crafted_image_with_memory_not_a_page_multiple_does_not_panic_the_host() {
    let data = data_dir();
    let dir = kv_with_history(data.path());
    spawn(
        data.path(),
        phantom_tests::COUNTER,
        "other",
        &["--period-ms", "5"],
    );
    // Every checkpoint of kv crafted: it cannot resume at all.
    for f in checkpoint_files(&dir) {
        let mut raw = RawImage::parse(&fs::read(&f).unwrap()).unwrap();
        raw.memories[0].size_bytes -= 1;
        fs::write(&f, raw.encode()).unwrap();
    }
    let o = run(&[
        "run",
        "--data",
        s(data.path()),
        "--for",
        "0.5",
        "--no-stdin",
    ]);
    let err = stderr(&o);
    assert!(!host_panicked(&err), "the host panicked:\n{err}");
    assert!(
        !o.status.success(),
        "a process that cannot resume fails the run"
    );
    assert!(err.contains("cannot resume 'kv'"), "{err}");
    assert!(err.contains("not a whole number of 64 KiB"), "{err}");
    // The other process ran on.
    assert!(
        stdout(&o).lines().filter(|l| l.contains("count=")).count() > 10,
        "{}",
        stdout(&o)
    );
    let ps: serde_json::Value = ps_json(data.path());
    let kv = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "kv")
        .unwrap();
    assert_eq!(kv["state"], "failed", "{kv}");
    assert_eq!(kv["failure"]["kind"], "bad-image", "{kv}");
    let fsck = run(&["fsck", "--data", s(data.path()), "kv"]);
    assert!(
        stdout(&fsck).contains("NOT restorable"),
        "{}",
        stdout(&fsck)
    );
}
