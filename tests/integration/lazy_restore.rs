//! Lazy restore: a restored memory is filled on first touch (userfaultfd)
//! and reads back every page of its image; pages filled that way are clean;
//! a full checkpoint taken before the filling finished is complete.

use std::path::Path;

use phantom_runtime::gate::Input;
use phantom_runtime::process::{Process, SpawnRequest};
use phantom_runtime::runtime::{RestoreMode, Runtime, RuntimeConfig};

use super::common::*;

const MIB: u64 = 16;

fn runtime(restore: RestoreMode) -> Runtime {
    Runtime::new(RuntimeConfig {
        restore,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn say(rt: &Runtime, p: &mut Process, line: &str) -> String {
    p.offer(Input::ConsoleLine(line.into())).expect("queued");
    let mut out = Vec::new();
    while let Some(o) = p.step(rt).expect("step") {
        out.extend(phantom_runtime::exit::console_text(&o));
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn memory_bytes(p: &mut Process) -> Vec<Vec<u8>> {
    p.memory_bytes().unwrap()
}

#[track_caller]
fn assert_same(want: &[Vec<u8>], got: &[Vec<u8>], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: memory count");
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: memory {i} size");
        if a != b {
            let page = a.iter().zip(b).position(|(x, y)| x != y).unwrap() / 4096;
            panic!("{what}: memory {i} differs at page {page}");
        }
    }
}

/// Spawns memtouch with every page of its buffer written and checkpointed;
/// returns its memory bytes and its `sum` as the straight run saw them.
fn spawn_touched(data: &Path) -> (Vec<Vec<u8>>, String) {
    let rt = runtime(RestoreMode::Lazy);
    let bytes = std::fs::read(phantom_tests::MEMTOUCH).unwrap();
    let request = SpawnRequest {
        name: "m".into(),
        args: vec!["--mib".into(), MIB.to_string()],
        files: vec![],
        env: Vec::new(),
        devices: None,
        scenario: None,
    };
    let (mut p, _) = Process::spawn(&rt, &bytes, data, request).unwrap();
    say(&rt, &mut p, &format!("touch {} 5", MIB << 8));
    let sum = say(&rt, &mut p, "sum");
    assert!(sum.starts_with("sum="), "{sum}");
    p.checkpoint(&rt).unwrap();
    p.wait_for_write().unwrap().unwrap();
    (memory_bytes(&mut p), sum)
}

#[test]
fn lazily_restored_memory_reads_back_every_page_and_stays_clean() {
    let data = data_dir();
    let (want, sum) = spawn_touched(data.path());
    let rt = runtime(RestoreMode::LazyNoPrefetch);
    let (mut p, warnings) = Process::restore(&rt, &data.path().join("m")).unwrap();
    if warnings.iter().any(|w| w.contains("restoring eagerly")) {
        eprintln!("skipped: {warnings:?}");
        return;
    }
    assert!(warnings.is_empty(), "{warnings:?}");
    let stats = p.lazy_stats()[0].expect("restored lazily");
    // Only the pages wasmtime's data segments touched are in the memfd yet.
    let allocated = p.memory_file_bytes().unwrap()[0];
    let size = p.memory_sizes()[0] as u64;
    assert!(
        allocated < size / 4,
        "{allocated} of {size} bytes filled right after the restore: not lazy ({stats:?})"
    );
    assert_eq!(stats.prefetched, 0, "{stats:?}");
    assert!(stats.faulted > 0, "data segments fault: {stats:?}");
    assert!(!stats.complete);
    // Reading every page faults each one in: the bytes are the image's.
    assert_same(&want, &memory_bytes(&mut p), "after a lazy restore");
    p.wait_filled().unwrap();
    let stats = p.lazy_stats()[0].unwrap();
    assert_eq!(stats.faulted, stats.pages, "{stats:?}");
    assert!(stats.complete, "{stats:?}");
    // Pages filled on a fault map the memfd: nothing is dirty.
    let report = p.checkpoint(&rt).unwrap();
    assert_eq!(report.dirty_pages, 0, "{report:?}");
    p.wait_for_write().unwrap().unwrap();
    assert_eq!(say(&rt, &mut p, "sum"), sum);
}

#[test]
fn guest_runs_on_a_lazily_restored_memory() {
    let data = data_dir();
    let (_, sum) = spawn_touched(data.path());
    let rt = runtime(RestoreMode::LazyNoPrefetch);
    let (mut p, _) = Process::restore(&rt, &data.path().join("m")).unwrap();
    // The guest's own accesses fault the pages in (its `sum` reads them all).
    assert_eq!(say(&rt, &mut p, "sum"), sum);
    // Its writes are dirty as usual: one page per touch, plus its stack.
    say(&rt, &mut p, "touch 3 9");
    let report = p.checkpoint(&rt).unwrap();
    assert!(
        (3..64).contains(&report.dirty_pages),
        "{} dirty pages after touching 3",
        report.dirty_pages
    );
    p.wait_for_write().unwrap().unwrap();
}

#[test]
fn full_checkpoint_right_after_a_lazy_restore_is_complete() {
    let data = data_dir();
    let (want, sum) = spawn_touched(data.path());
    {
        let rt = runtime(RestoreMode::LazyNoPrefetch);
        let (mut p, _) = Process::restore(&rt, &data.path().join("m")).unwrap();
        p.require_full();
        let report = p.checkpoint(&rt).unwrap();
        assert!(report.full);
        p.wait_for_write().unwrap().unwrap();
    }
    // Restore the full image eagerly and lazily: both read the original.
    for mode in [RestoreMode::Eager, RestoreMode::Lazy] {
        let rt = runtime(mode);
        let (mut p, _) = Process::restore(&rt, &data.path().join("m")).unwrap();
        assert!(
            p.last_committed().unwrap().parent.is_none(),
            "restored the full image"
        );
        assert_same(
            &want,
            &memory_bytes(&mut p),
            &format!("{mode:?} after full"),
        );
        assert_eq!(say(&rt, &mut p, "sum"), sum);
    }
}

#[test]
fn prefetch_fills_the_whole_memory() {
    let data = data_dir();
    let (want, _) = spawn_touched(data.path());
    let rt = runtime(RestoreMode::Lazy);
    let (mut p, _) = Process::restore(&rt, &data.path().join("m")).unwrap();
    p.wait_filled().unwrap();
    for stats in p.lazy_stats() {
        let stats = stats.unwrap();
        assert!(stats.complete, "{stats:?}");
        assert_eq!(stats.faulted + stats.prefetched, stats.pages, "{stats:?}");
    }
    assert_same(&want, &memory_bytes(&mut p), "after the prefetch");
}

/// Pack `path` opened for reading and writing, with its page count and
/// where its index starts (DESIGN.md, "Pack").
fn open_pack(path: &Path) -> (std::fs::File, u64, u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut head = [0u8; 64];
    f.read_exact_at(&mut head, 0).unwrap();
    let field = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap());
    (f, field(24), field(32))
}

#[test]
fn image_unreadable_after_a_lazy_restore_fails_the_process_not_the_host() {
    let data = data_dir();
    spawn_touched(data.path());
    let dir = data.path().join("m");
    let rt = runtime(RestoreMode::LazyNoPrefetch);
    let (mut p, _) = Process::restore(&rt, &dir).unwrap();
    // The image's page blocks change under the restored process (its
    // header and table of contents were read already).
    for path in checkpoint_files(&dir) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let len = f.metadata().unwrap().len();
        f.write_all_at(&vec![0x5A; (len - 256) as usize], 128)
            .unwrap();
    }
    // Format 2: the pages are in packs; their records change too.
    for path in pack_files(&dir) {
        use std::os::unix::fs::FileExt;
        let (f, _, index) = open_pack(&path);
        f.write_all_at(&vec![0x5A; (index - 64) as usize], 64)
            .unwrap();
    }
    p.offer(Input::ConsoleLine("sum".into())).unwrap();
    let err = p.step(&rt).expect_err("the guest read pages that are gone");
    assert!(
        err.to_string()
            .contains("cannot be restored from its image"),
        "{err}"
    );
    let err = p
        .checkpoint(&rt)
        .expect_err("no checkpoint of a broken memory");
    assert!(
        format!("{err:#}").contains("not restored correctly"),
        "{err:#}"
    );
}

/// A damaged page found by a lazy restore fails the call as a bad image
/// without consuming its input (the guest is not at fault), and
/// `--retry-failed` restores that process eagerly: every page checked, the
/// damaged checkpoint passed over for an older one, the journal replayed
/// from there, and the input handled after all.
#[test]
fn a_damaged_page_read_lazily_loses_no_input() {
    use std::os::unix::fs::FileExt;
    let data = data_dir();
    let d = data.path();
    spawn(d, phantom_tests::KV, "kv", &[]);
    ok(&feed(d, "kv", "set a 1\n"));
    // Every record of the newest pack damaged (the index and header still
    // verify; a record is checked when it is read).
    let pack = pack_files(&d.join("kv")).pop().expect("a pack");
    let (f, pages, index) = open_pack(&pack);
    for i in 0..pages {
        let mut e = [0u8; 32];
        f.read_exact_at(&mut e, index + 32 * i).unwrap();
        let offset = u64::from_le_bytes(e[16..24].try_into().unwrap());
        let len = u32::from_le_bytes(e[24..28].try_into().unwrap()) as u64;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset + len / 2).unwrap();
        f.write_all_at(&[b[0] ^ 0x55], offset + len / 2).unwrap();
    }
    drop(f);
    // `phantom run` of kv with `extra` arguments, `text` as its input.
    let feed_with = |extra: &[&str], text: &str| {
        let mut args = vec!["run", "--data", s(d), "--input", "kv", "--until-idle"];
        args.extend_from_slice(extra);
        run_with_input(&args, text)
    };
    let o = feed_with(&["--restore", "lazy-no-prefetch"], "set x 42\n");
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot be restored from its image"),
        "{}",
        stderr(&o)
    );
    let j = run(&["journal", "--data", s(d), "kv", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(ok(&j))).unwrap();
    let kinds: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(!kinds.contains(&"call-failed"), "{kinds:?}");
    let o = feed_with(&["--retry-failed"], "get x\nget a\n");
    let out = stdout(ok(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        ["42", "1"],
        "{out}\n{}",
        stderr(&o)
    );
    ok(&run(&["ps", "--data", s(d)]));
}
