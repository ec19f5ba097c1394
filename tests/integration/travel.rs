//! Images that travel: `phantom export` and `phantom import` move a process
//! (its checkpoint chain, its journal tail, its component) to another data
//! directory, where it runs on from where it was; damaged, truncated,
//! crafted or future bundles are refused and change nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use phantom_runtime::process::Process;
use phantom_runtime::runtime::Runtime;
use phantom_snapshots::bundle::{BundleReader, BundleWriter, RecordKind};

use super::common::*;
use super::journal::dump;

/// The memories of the process in `dir`, restored in this test process
/// (its journal tail replayed).
fn memory_of(dir: &Path) -> Vec<Vec<u8>> {
    let rt = Runtime::new(Default::default()).unwrap();
    let (mut p, _) = Process::restore(&rt, dir).unwrap();
    p.memory_bytes().unwrap()
}

fn export(data: &Path, name: &str, out: &Path) -> serde_json::Value {
    let o = run(&["export", "--data", s(data), name, "-o", s(out), "--json"]);
    ok(&o);
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn import(bundle: &Path, data: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import", s(bundle), "--data", s(data)];
    args.extend_from_slice(extra);
    run(&args)
}

/// Every file under `dir` with its bytes (the lock and socket excepted).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), Vec::new());
                stack.push(p);
            } else if t.is_file() && e.file_name() != ".lock" {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// A process with a journal tail: a mailbox sent three messages while no
/// host ran (they are in its journal, after its only checkpoint).
fn mailbox_with_tail(data: &Path) {
    spawn(data, phantom_tests::MAILBOX, "box", &[]);
    for m in ["m1", "m2", "m3"] {
        ok(&run(&["send", "--data", s(data), "box", m]));
    }
}

#[test]
fn a_bundle_carries_the_image_and_the_journal_tail() {
    let src = data_dir();
    let dst = data_dir();
    mailbox_with_tail(src.path());
    let bundle = src.path().join("box.phb");
    let report = export(src.path(), "box", &bundle);
    assert_eq!(report["journal_entries"], 3, "{report:#}");
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        std::fs::metadata(&bundle).unwrap().len()
    );
    let o = import(&bundle, dst.path(), &["--json"]);
    ok(&o);
    let imported: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(imported["name"], "box");
    assert_eq!(imported["journal_entries"], 3);
    assert_eq!(imported["checkpoint"], report["checkpoint"]);
    let (a, b) = (src.path().join("box"), dst.path().join("box"));
    assert!(
        memory_of(&a) == memory_of(&b),
        "the imported process's memory differs from the source's"
    );
    ok(&run(&["fsck", "--data", s(dst.path())]));
    let want = |texts: &[&str]| -> Vec<(String, String)> {
        texts
            .iter()
            .map(|t| ("-".to_string(), t.to_string()))
            .collect()
    };
    assert_eq!(dump(dst.path(), "box"), want(&["m1", "m2", "m3"]));
    // The two run on independently.
    ok(&run(&["send", "--data", s(src.path()), "box", "only-src"]));
    ok(&run(&["send", "--data", s(dst.path()), "box", "only-dst"]));
    assert_eq!(
        dump(src.path(), "box"),
        want(&["m1", "m2", "m3", "only-src"])
    );
    assert_eq!(
        dump(dst.path(), "box"),
        want(&["m1", "m2", "m3", "only-dst"])
    );
}

#[test]
fn a_kv_store_and_a_counter_go_on_where_they_were() {
    let src = data_dir();
    let dst = data_dir();
    spawn(src.path(), phantom_tests::KV, "kv", &[]);
    ok(&feed_all(src.path(), "set a 1\nset b two words\n"));
    spawn(
        src.path(),
        phantom_tests::COUNTER,
        "count",
        &["--period-ms", "10"],
    );
    let o = run_for(src.path(), "0.4");
    ok(&o);
    let last = *counts(&stdout(&o).replace("[count] ", ""))
        .last()
        .expect("the counter counted");

    // Through a pipe: export to stdout, import from stdin (each into a
    // directory of its own: a counter never lets a run go idle).
    let dst_count = data_dir();
    for (name, new, to) in [
        ("kv", "kv2", dst.path()),
        ("count", "count", dst_count.path()),
    ] {
        let mut exp = phantom()
            .args(["export", "--data", s(src.path()), name, "-o", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = exp.stdout.take().unwrap();
        let imp = phantom()
            .args(["import", "-", "--data", s(to), "--as", new])
            .stdin(pipe)
            .output()
            .unwrap();
        assert!(exp.wait().unwrap().success());
        ok(&imp);
        assert!(
            stderr(&imp).contains(&format!("imported '{new}'")),
            "{}",
            stderr(&imp)
        );
    }
    let o = feed(dst.path(), "kv2", "get b\nkeys\n");
    ok(&o);
    let out = stdout(&o);
    assert!(out.contains("two words"), "{out}");
    assert!(out.contains("a b"), "{out}");

    let o = run_for(dst_count.path(), "0.3");
    ok(&o);
    let next = counts(&stdout(&o));
    assert_eq!(
        next.first().copied(),
        Some(last + 1),
        "the counter did not go on from {last}: {next:?}"
    );
    // The source is untouched by all this.
    ok(&run(&["fsck", "--data", s(src.path())]));
}

/// The records of a bundle, to rewrite them.
type Records = Vec<(RecordKind, String, Vec<u8>)>;

fn records(bundle: &[u8]) -> (String, Records) {
    let mut r = BundleReader::new(bundle).unwrap();
    let producer = r.header().producer.clone();
    let mut out = Vec::new();
    while let Some(h) = r.next_record().unwrap() {
        let mut payload = Vec::new();
        r.copy_payload(&mut payload, &mut |_| {}).unwrap();
        out.push((h.kind, h.name, payload));
    }
    (producer, out)
}

/// A bundle of `records`, every checksum valid.
fn encode(producer: &str, records: &Records) -> Vec<u8> {
    let mut w = BundleWriter::new(Vec::new(), producer, 0).unwrap();
    for (kind, name, payload) in records {
        w.record(
            *kind,
            name,
            payload.len() as u64,
            &mut &payload[..],
            &mut |_| {},
        )
        .unwrap();
    }
    w.finish().unwrap().0
}

fn reseal_header(b: &mut [u8]) {
    let sum = xxhash_rust::xxh3::xxh3_64(&b[..56]);
    b[56..64].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn damaged_crafted_and_future_bundles_are_refused_and_change_nothing() {
    let src = data_dir();
    mailbox_with_tail(src.path());
    let bundle_path = src.path().join("box.phb");
    export(src.path(), "box", &bundle_path);
    let good = std::fs::read(&bundle_path).unwrap();

    let dst = data_dir();
    spawn(dst.path(), phantom_tests::KV, "other", &[]);
    let before = tree(dst.path());
    let missing = dst.path().join("not-yet");

    let mut cases: Vec<(String, Vec<u8>, &str)> = Vec::new();
    let len = good.len();
    for cut in [
        0,
        1,
        7,
        8,
        40,
        63,
        64,
        65,
        100,
        len / 3,
        len / 2,
        len - 41,
        len - 40,
        len - 9,
        len - 1,
    ] {
        cases.push((format!("cut at {cut}"), good[..cut].to_vec(), ""));
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"junk");
    cases.push(("trailing bytes".into(), longer, "after its end record"));
    for i in 0..24 {
        let at = 3 + i * (len - 4) / 24;
        let mut b = good.clone();
        b[at] ^= 0x10;
        cases.push((format!("bit flipped at {at}"), b, ""));
    }
    let mut future = good.clone();
    future[8..12].copy_from_slice(&2u32.to_le_bytes());
    reseal_header(&mut future);
    cases.push(("format version 2".into(), future, "newer phantom"));
    let mut newer = good.clone();
    newer[24..56].fill(0);
    newer[24..30].copy_from_slice(b"99.0.0");
    reseal_header(&mut newer);
    cases.push((
        "written by phantom 99.0.0".into(),
        newer,
        "newer than this one",
    ));
    let mut garbled = good.clone();
    garbled[24..56].fill(0);
    garbled[24..27].copy_from_slice(&[0xff, 0xfe, 0x80]);
    reseal_header(&mut garbled);
    cases.push((
        "a producer that is not UTF-8".into(),
        garbled,
        "producer field",
    ));

    // Crafted: the container is whole (every checksum recomputed), the
    // contents are wrong.
    let (producer, recs) = records(&good);
    let find = |kind: RecordKind| recs.iter().position(|r| r.0 == kind).unwrap();
    let mut crafted = |what: &str, needle: &'static str, f: &dyn Fn(&mut Records)| {
        let mut r = recs.clone();
        f(&mut r);
        cases.push((what.to_string(), encode(&producer, &r), needle));
    };
    let ck = find(RecordKind::Checkpoint);
    crafted(
        "a byte of a checkpoint image changed",
        "checkpoints are damaged",
        &|r| {
            let n = r[ck].2.len();
            r[ck].2[n / 2] ^= 0xff;
        },
    );
    crafted(
        "a checkpoint named ../escape.phi",
        "not a checkpoint file name",
        &|r| {
            r[ck].1 = "../escape.phi".into();
        },
    );
    crafted("no checkpoint", "no checkpoint", &|r| {
        r.retain(|x| x.0 != RecordKind::Checkpoint)
    });
    crafted("two components", "second component", &|r| {
        let c = r[find(RecordKind::Component)].clone();
        r.push(c);
    });
    crafted("metadata not first", "not the process metadata", &|r| {
        r.swap(0, 1)
    });
    crafted(
        "journal moved to another position",
        "starts at entry",
        &|r| {
            let j = find(RecordKind::Journal);
            let first = u64::from_le_bytes(r[j].2[..8].try_into().unwrap());
            r[j].2[..8].copy_from_slice(&(first + 1).to_le_bytes());
        },
    );
    crafted("a journal entry cut short", "its journal", &|r| {
        let j = find(RecordKind::Journal);
        r[j].2.pop();
    });
    let kv = std::fs::read(phantom_tests::KV).unwrap();
    crafted(
        "another component under the image",
        "made by another component",
        &|r| {
            let c = find(RecordKind::Component);
            r[c].2 = kv.clone();
            let m = find(RecordKind::Metadata);
            let mut meta: serde_json::Value = serde_json::from_slice(&r[m].2).unwrap();
            meta["component_bytes"] = kv.len().into();
            r[m].2 = serde_json::to_vec(&meta).unwrap();
        },
    );
    crafted(
        "metadata that is not JSON",
        "process.json cannot be read",
        &|r| {
            r[0].2 = b"{not json".to_vec();
        },
    );
    crafted(
        "a process name that climbs out",
        "not a valid process name",
        &|r| {
            let mut meta: serde_json::Value = serde_json::from_slice(&r[0].2).unwrap();
            meta["name"] = "../../x".into();
            r[0].2 = serde_json::to_vec(&meta).unwrap();
        },
    );

    crafted(
        "a page pack no checkpoint uses",
        "page packs no checkpoint",
        &|r| {
            let p = find(RecordKind::Pages);
            // A whole pack (its header renumbered and resealed) that no
            // checkpoint names.
            let mut extra = r[p].clone();
            extra.1 = phantom_snapshots::pages::pack_name(999_999);
            extra.2[16..24].copy_from_slice(&999_999u64.to_le_bytes());
            let sum = xxhash_rust::xxh3::xxh3_64(&extra.2[..56]);
            extra.2[56..64].copy_from_slice(&sum.to_le_bytes());
            r.push(extra);
        },
    );

    let setting = |name: &str, text: &str| {
        (
            RecordKind::Setting,
            name.to_string(),
            text.as_bytes().to_vec(),
        )
    };
    crafted(
        "a keep policy that does not parse",
        "keep policy does not parse",
        &|r| {
            r.insert(1, setting("keep", "last=ten\n"));
        },
    );
    crafted(
        "a device manifest that grants nonsense",
        "devices.toml",
        &|r| {
            r.insert(1, setting("devices.toml", "gpio.x = { pin = 7 }\n"));
        },
    );
    crafted(
        "a settings record outside the list",
        "settings record named",
        &|r| {
            r.insert(1, setting("../process.json", "{}"));
        },
    );
    crafted("a keep policy of last=0", "last=0", &|r| {
        r.insert(1, setting("keep", "last=0\n"));
    });
    crafted("two keep policies", "second settings", &|r| {
        r.insert(1, setting("keep", "last=3\n"));
        r.insert(1, setting("keep", "last=4\n"));
    });

    let scratch = dst.path().join(".case.phb");
    for (what, bytes, needle) in &cases {
        std::fs::write(&scratch, bytes).unwrap();
        for target in [dst.path(), missing.as_path()] {
            let o = import(&scratch, target, &[]);
            let err = stderr(&o);
            assert!(!o.status.success(), "{what}: accepted\n{err}");
            assert!(!host_panicked(&err), "{what}: {err}");
            assert!(err.contains("cannot import"), "{what}: {err}");
            assert!(err.contains(needle), "{what}: wanted '{needle}' in: {err}");
        }
        std::fs::remove_file(&scratch).unwrap();
        assert!(tree(dst.path()) == before, "{what}: the target changed");
        assert!(!missing.exists(), "{what}: the missing target was created");
    }
    // And the good bundle still goes in.
    ok(&import(&bundle_path, dst.path(), &[]));
}

#[test]
fn a_bundle_carries_the_keep_policy_and_the_device_grants() {
    let src = data_dir();
    let dst = data_dir();
    let manifest = src.path().join("grants.toml");
    std::fs::write(
        &manifest,
        "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\ngpio.button = { pin = \"sim:0/4\", modes = [\"input\"] }\ni2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\n",
    )
    .unwrap();
    ok(&run(&[
        "spawn",
        "--data",
        s(src.path()),
        phantom_tests::RELAY_SENSOR,
        "--name",
        "dev",
        "--devices",
        s(&manifest),
    ]));
    ok(&run(&[
        "keep",
        "--data",
        s(src.path()),
        "dev",
        "--keep-last",
        "4",
        "--keep-hourly",
        "0",
        "--keep-daily",
        "1",
    ]));
    let bundle = src.path().join("dev.phb");
    export(src.path(), "dev", &bundle);
    ok(&import(&bundle, dst.path(), &["--as", "copy"]));
    for file in ["keep", "devices.toml"] {
        assert_eq!(
            std::fs::read(src.path().join("dev").join(file)).unwrap(),
            std::fs::read(dst.path().join("copy").join(file)).unwrap(),
            "{file} did not travel"
        );
    }
    let o = run(&["keep", "--data", s(dst.path()), "copy", "--json"]);
    ok(&o);
    let policy: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(policy["last"], 4, "{policy}");
    assert_eq!(policy["daily"], 1, "{policy}");
}

#[test]
fn import_into_a_running_host_starts_it_and_names_do_not_collide() {
    let src = data_dir();
    let dst = data_dir();
    mailbox_with_tail(src.path());
    let bundle = src.path().join("box.phb");
    export(src.path(), "box", &bundle);

    let mut host = quiet_host(dst.path(), "50ms");
    std::thread::sleep(Duration::from_millis(300));
    let o = import(&bundle, dst.path(), &[]);
    ok(&o);
    assert!(stderr(&o).contains("has started it"), "{}", stderr(&o));
    ok(&run(&["send", "--data", s(dst.path()), "box", "m4"]));
    let o = import(&bundle, dst.path(), &[]);
    fails_with(&o, "already has a process named 'box'");
    ok(&import(&bundle, dst.path(), &["--as", "box2"]));
    fails_with(
        &import(&bundle, dst.path(), &["--as", "../x"]),
        "not a valid process name",
    );
    sigterm(&mut host.0);
    host.0.wait().unwrap();
    let want: Vec<(String, String)> = ["m1", "m2", "m3", "m4"]
        .iter()
        .map(|t| ("-".to_string(), t.to_string()))
        .collect();
    assert_eq!(dump(dst.path(), "box"), want);
    assert_eq!(dump(dst.path(), "box2"), want[..3].to_vec());
}

#[test]
fn export_while_the_host_runs_gives_whole_bundles() {
    let src = data_dir();
    spawn(
        src.path(),
        phantom_tests::COUNTER,
        "count",
        &["--period-ms", "2"],
    );
    let mut host = quiet_host(src.path(), "15ms");
    std::thread::sleep(Duration::from_millis(200));
    let mut last = 0;
    for i in 0..8 {
        let bundle = src.path().join(format!("b{i}.phb"));
        let report = export(src.path(), "count", &bundle);
        let dst = data_dir();
        ok(&import(&bundle, dst.path(), &[]));
        ok(&run(&["fsck", "--data", s(dst.path())]));
        let o = run_for(dst.path(), "0.1");
        ok(&o);
        let first = counts(&stdout(&o))[0];
        assert!(
            first > last,
            "bundle {i} went back in time: {first} after {last}"
        );
        last = first;
        let _ = report;
        std::thread::sleep(Duration::from_millis(40));
    }
    sigterm(&mut host.0);
    host.0.wait().unwrap();
}

#[test]
fn export_at_an_older_checkpoint_and_bad_arguments() {
    let src = data_dir();
    spawn(src.path(), phantom_tests::KV, "kv", &[]);
    ok(&feed_all(src.path(), "set a 1\n"));
    ok(&feed_all(src.path(), "set a 2\n"));
    let first = run(&["checkpoints", "--data", s(src.path()), "kv", "--json"]);
    ok(&first);
    let list: serde_json::Value = serde_json::from_str(&stdout(&first)).unwrap();
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    let oldest = *ids.iter().min().unwrap();
    let bundle = src.path().join("old.phb");
    let o = run(&[
        "export",
        "--data",
        s(src.path()),
        "kv",
        "-o",
        s(&bundle),
        "--at",
        &oldest.to_string(),
    ]);
    ok(&o);
    assert!(stderr(&o).contains("not the newest"), "{}", stderr(&o));
    let dst = data_dir();
    ok(&import(&bundle, dst.path(), &[]));
    let o = feed_all(dst.path(), "get a\n");
    ok(&o);
    assert!(stdout(&o).contains("(nil)"), "{}", stdout(&o));

    fails_with(
        &run(&[
            "export",
            "--data",
            s(src.path()),
            "kv",
            "-o",
            s(&bundle),
            "--at",
            "999999",
        ]),
        "no such checkpoint",
    );
    fails_with(
        &run(&["export", "--data", s(src.path()), "nope", "-o", s(&bundle)]),
        "nope",
    );
    let o = run(&[
        "import",
        s(&src.path().join("absent.phb")),
        "--data",
        s(dst.path()),
    ]);
    fails_with(&o, "cannot open");
    let not = src.path().join("kv").join("component.wasm");
    fails_with(&import(&not, dst.path(), &[]), "not a Phantom bundle");
    // A failed export leaves no partial file behind.
    assert!(
        !Command::new("ls")
            .arg(src.path())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(".tmp"))
            .unwrap()
    );
}

/// The memories of checkpoint `id` of the process in `dir`, read by the
/// image store alone (no guest runs).
fn checkpoint_memory(dir: &Path, id: u64) -> Vec<Vec<u8>> {
    use std::io::Read;
    let store = phantom_snapshots::CheckpointStore::open(dir).unwrap();
    let restored = store
        .restore_newest(|c| {
            if c.info.id == id {
                Ok(c.memories.clone())
            } else {
                Err("not the one".into())
            }
        })
        .unwrap();
    restored
        .value
        .iter()
        .map(|m| {
            let mut f = tempfile::tempfile().unwrap();
            f.set_len(m.size_bytes).unwrap();
            m.write_into(&f).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            bytes
        })
        .collect()
}

/// Spawns a kv store `kv` and runs it three times, setting `a` to 1, 2, 3
/// (one checkpoint per run).
fn kv_history(data: &Path) {
    spawn(data, phantom_tests::KV, "kv", &[]);
    for v in ["1", "2", "3"] {
        ok(&feed_all(data, &format!("set a {v}\n")));
    }
}

/// Memories equal, memory by memory.
fn same_memory(want: &[Vec<u8>], got: &[Vec<u8>], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: memory count");
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert!(w == g, "{what}: memory {i} differs from the checkpoint's");
    }
}

fn checkpoint_ids(data: &Path, name: &str) -> Vec<u64> {
    let o = run(&["checkpoints", "--data", s(data), name, "--json"]);
    ok(&o);
    let list: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let mut ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn a_fork_starts_where_its_parent_was_and_runs_on_independently() {
    use std::os::unix::fs::MetadataExt;
    let data = data_dir();
    mailbox_with_tail(data.path());
    let o = run(&[
        "fork",
        "--data",
        s(data.path()),
        "box",
        "--as",
        "twin",
        "--json",
    ]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["journal_entries"], 3, "{report:#}");
    assert_eq!(
        report["copied_bytes"], 0,
        "the chain was copied, not linked: {report:#}"
    );
    // Its own first checkpoint (ids moved on) is new; the chain under it
    // is shared.
    let own = report["own_checkpoint"]
        .as_u64()
        .expect("the fork checkpointed");
    for id in checkpoint_ids(data.path(), "twin")
        .into_iter()
        .filter(|&id| id != own)
    {
        let f = data
            .path()
            .join("twin")
            .join(phantom_snapshots::CheckpointStore::file_name(id));
        assert!(
            std::fs::metadata(&f).unwrap().nlink() >= 2,
            "{} is not shared",
            f.display()
        );
    }
    assert!(memory_of(&data.path().join("box")) == memory_of(&data.path().join("twin")));
    ok(&run(&["send", "--data", s(data.path()), "box", "parent"]));
    ok(&run(&["send", "--data", s(data.path()), "twin", "child"]));
    let texts = |name| -> Vec<String> {
        dump(data.path(), name)
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    };
    assert_eq!(texts("box"), ["m1", "m2", "m3", "parent"]);
    assert_eq!(texts("twin"), ["m1", "m2", "m3", "child"]);
    // Both keep checkpointing on their own; fsck is clean on both.
    ok(&run(&["fsck", "--data", s(data.path())]));
    fails_with(
        &run(&["fork", "--data", s(data.path()), "box", "--as", "twin"]),
        "already has a process named 'twin'",
    );
    fails_with(
        &run(&["fork", "--data", s(data.path()), "nope", "--as", "x"]),
        "nope",
    );
}

#[test]
fn a_fork_at_a_checkpoint_has_exactly_its_memory() {
    let data = data_dir();
    kv_history(data.path());
    let ids = checkpoint_ids(data.path(), "kv");
    assert!(ids.len() >= 3, "{ids:?}");
    let at = ids[ids.len() / 2];
    let o = run(&[
        "fork",
        "--data",
        s(data.path()),
        "kv",
        "--as",
        "old",
        "--at",
        &at.to_string(),
        "--json",
    ]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["checkpoint"], at);
    assert_eq!(report["journal_entries"], 0);
    let want = checkpoint_memory(&data.path().join("kv"), at);
    same_memory(&want, &memory_of(&data.path().join("old")), "the fork");
    // The parent is untouched: it still holds the newest value.
    let o = feed(data.path(), "kv", "get a\n");
    ok(&o);
    assert!(stdout(&o).contains('3'), "{}", stdout(&o));
    fails_with(
        &run(&[
            "fork",
            "--data",
            s(data.path()),
            "kv",
            "--as",
            "x",
            "--at",
            "999999",
        ]),
        "no such checkpoint",
    );
}

#[test]
fn rollback_gives_the_checkpoints_memory_keeps_what_it_left_and_undoes() {
    let data = data_dir();
    kv_history(data.path());
    let dir = data.path().join("kv");
    let ids = checkpoint_ids(data.path(), "kv");
    let newest = *ids.last().unwrap();
    // The checkpoint whose state is `a = 1`: the first after the spawn.
    let at = ids[1];
    let want = checkpoint_memory(&dir, at);
    let get = |data: &Path| -> String {
        let o = feed_all(data, "get a\n");
        ok(&o);
        stdout(&o)
    };

    // Not while a host runs the directory.
    let mut host = quiet_host(data.path(), "50ms");
    std::thread::sleep(Duration::from_millis(300));
    fails_with(
        &run(&[
            "rollback",
            "--data",
            s(data.path()),
            "kv",
            "--to",
            &at.to_string(),
        ]),
        "another phantom host is using",
    );
    sigterm(&mut host.0);
    host.0.wait().unwrap();
    let newest = checkpoint_ids(data.path(), "kv")
        .last()
        .copied()
        .unwrap_or(newest);

    let o = run(&[
        "rollback",
        "--data",
        s(data.path()),
        "kv",
        "--to",
        &at.to_string(),
        "--json",
    ]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["to"], at);
    assert!(
        report["checkpoint"].as_u64().unwrap() > newest,
        "{report:#}"
    );
    same_memory(&want, &memory_of(&dir), "after the rollback");
    assert!(get(data.path()).contains('1'), "not rolled back");
    ok(&run(&["fsck", "--data", s(data.path())]));
    // It runs on from there; then the undo brings back a = 3.
    ok(&feed_all(data.path(), "set b after\n"));
    ok(&run(&[
        "rollback",
        "--data",
        s(data.path()),
        "kv",
        "--undo",
    ]));
    assert!(
        get(data.path()).contains('3'),
        "the undo did not bring a = 3 back"
    );
    ok(&run(&[
        "rollback",
        "--data",
        s(data.path()),
        "kv",
        "--undo",
    ]));
    let o = feed_all(data.path(), "get a\nget b\n");
    ok(&o);
    assert!(stdout(&o).contains("after"), "{}", stdout(&o));
    fails_with(
        &run(&["rollback", "--data", s(data.path()), "kv", "--to", "999999"]),
        "'kv' has no checkpoint 999999 (it has ",
    );
}

#[test]
fn a_rolled_back_sender_is_still_heard() {
    // Receivers drop message ids they have seen from a sender; a rollback
    // must not make its next messages look like old ones.
    let data = data_dir();
    spawn(data.path(), phantom_tests::MAILBOX, "rx", &[]);
    spawn(data.path(), phantom_tests::MAILBOX, "tx", &[]);
    ok(&feed(data.path(), "tx", "send rx one\n"));
    let at = checkpoint_ids(data.path(), "tx")[0];
    ok(&feed(data.path(), "tx", "send rx two\nsend rx three\n"));
    ok(&run(&[
        "rollback",
        "--data",
        s(data.path()),
        "tx",
        "--to",
        &at.to_string(),
    ]));
    ok(&feed(data.path(), "tx", "send rx four\n"));
    let texts: Vec<String> = dump(data.path(), "rx")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
}

#[test]
fn an_import_killed_part_way_leaves_nothing_visible() {
    let src = data_dir();
    spawn(src.path(), phantom_tests::MEMTOUCH, "big", &["--mib", "48"]);
    ok(&feed_all(src.path(), "fill 7\n"));
    let bundle = src.path().join("big.phb");
    export(src.path(), "big", &bundle);
    let dst = data_dir();
    spawn(dst.path(), phantom_tests::KV, "other", &[]);
    for (i, ms) in [5u64, 30, 80, 150, 250].iter().enumerate() {
        let mut child = HostChild(
            phantom()
                .args(["import", s(&bundle), "--data", s(dst.path())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(*ms));
        child.kill().unwrap();
        let finished = child.wait().unwrap().success();
        let names: Vec<String> = ps_json(dst.path())
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        if finished {
            // It got all the way: then it is whole.
            assert_eq!(names, ["big", "other"], "kill {i}");
            ok(&run(&["fsck", "--data", s(dst.path())]));
            std::fs::remove_dir_all(dst.path().join("big")).unwrap();
        } else {
            assert!(
                names == ["other"] || names == ["big", "other"],
                "kill {i}: {names:?}"
            );
            if names.len() == 2 {
                ok(&run(&["fsck", "--data", s(dst.path())]));
                std::fs::remove_dir_all(dst.path().join("big")).unwrap();
            }
        }
    }
    // What the killed imports left is removed by the next one, which works.
    ok(&import(&bundle, dst.path(), &[]));
    let hidden: Vec<String> = std::fs::read_dir(dst.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".spawning-"))
        .collect();
    assert!(hidden.is_empty(), "left behind: {hidden:?}");
    ok(&run(&["fsck", "--data", s(dst.path())]));
}

#[test]
fn a_persistent_error_is_rolled_back_past_and_the_process_runs_on() {
    let data = data_dir();
    spawn(data.path(), phantom_tests::MISBEHAVE, "m", &[]);
    ok(&feed_all(data.path(), "echo fine\n"));
    let good = *checkpoint_ids(data.path(), "m").last().unwrap();
    // From this checkpoint on, every event traps: the error lives in the
    // image.
    ok(&feed_all(data.path(), "poison\n"));
    let poisoned = *checkpoint_ids(data.path(), "m").last().unwrap();
    assert!(poisoned > good);

    // Without the policy it just fails.
    let plain = data_dir();
    std::fs::remove_dir_all(plain.path()).unwrap();
    ok(&run(&["fork", "--data", s(data.path()), "m", "--as", "m2"]));
    let o = feed(data.path(), "m2", "echo x\n");
    assert!(!o.status.success());
    let m2 = ps_of(data.path(), "m2");
    assert_eq!(m2["state"], "failed", "{m2:#}");

    // With it: two retries from the poisoned checkpoint, then a rollback
    // past it; every decision is logged.
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "m",
            "--until-idle",
            "--fallback",
            "--fallback-tries",
            "2",
        ],
        "echo a\necho b\necho c\n",
    );
    let err = stderr(&o);
    assert!(!host_panicked(&err), "{err}");
    assert!(err.contains("rolled back to checkpoint"), "{err}");
    let m = ps_of(data.path(), "m");
    assert_ne!(m["state"], "failed", "{m:#}");
    let decisions = m["fallback"]["decisions"]
        .as_array()
        .expect("decisions in ps --json");
    let actions: Vec<&str> = decisions
        .iter()
        .map(|d| d["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["retry", "retry", "rollback"], "{m:#}");
    assert_eq!(decisions[2]["to"], good, "{m:#}");
    assert!(
        m["fallback"]["bad"]
            .as_array()
            .unwrap()
            .contains(&poisoned.into()),
        "{m:#}"
    );
    // It keeps running from the good state.
    let o = feed(data.path(), "m", "echo alive\n");
    ok(&o);
    assert!(stdout(&o).contains("alive"), "{}", stdout(&o));
    // And the rollback can be undone: the poisoned state comes back.
    ok(&run(&["rollback", "--data", s(data.path()), "m", "--undo"]));
    let o = feed(data.path(), "m", "echo again\n");
    assert!(!stdout(&o).contains("again"), "{}", stdout(&o));
}

/// A process that failed stays failed where it lands: imported into a data
/// directory whose host runs, that host holds it failed (as a restart
/// would) instead of running it, until `--retry-failed`.
#[test]
fn a_failed_process_imported_under_a_running_host_stays_failed() {
    let src = data_dir();
    spawn(src.path(), phantom_tests::MAILBOX, "fm", &[]);
    let o = run_with_input(&["run", "--data", s(src.path()), "--until-idle"], "trap\n");
    assert!(!o.status.success());
    let bundle = src.path().join("fm.phb");
    export(src.path(), "fm", &bundle);
    let dst = data_dir();
    spawn(dst.path(), phantom_tests::COUNTER, "other", &[]);
    let mut host = quiet_host(dst.path(), "1h");
    let mut o = import(&bundle, dst.path(), &[]);
    for _ in 0..50 {
        if stderr(&o).contains("leaves it failed") {
            break;
        }
        // Before the host listened: imported as failed, no host told.
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::remove_dir_all(dst.path().join("fm")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        o = import(&bundle, dst.path(), &[]);
    }
    ok(&o);
    assert!(stderr(&o).contains("leaves it failed"), "{}", stderr(&o));
    let fm = ps_of(dst.path(), "fm");
    assert_eq!(fm["state"], "failed", "{fm}");
    assert!(dst.path().join("fm/failed.json").exists());
    sigterm(&mut host.0);
    // (The counter never idles.)
    let o = run(&[
        "run",
        "--data",
        s(dst.path()),
        "--for",
        "0.5",
        "--no-stdin",
        "--retry-failed",
    ]);
    ok(&o);
    let fm = ps_of(dst.path(), "fm");
    assert_ne!(fm["state"], "failed", "{fm}");
}
