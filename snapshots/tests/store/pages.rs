//! Format version 2: content-addressed pages in packs, manifests per
//! checkpoint, the keep policy, pins, collection of unreferenced pages
//! (also with a crash at every step), fsck of packs, and the checked-in
//! version 2 fixture.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use phantom_snapshots::pages::{parse_pack_name, read_pack};
use phantom_snapshots::{
    CheckpointStore, FsckProblem, ImageSource, KeepPolicy, LocalDir, PAGE_SIZE, StoreBackend,
    TempImage,
};

use super::common::*;

/// Pages stored in all packs of `dir`.
fn pack_pages(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| parse_pack_name(&e.file_name().to_string_lossy()).is_some())
        .map(|e| {
            let f = fs::File::open(e.path()).unwrap();
            read_pack(Box::new(f)).unwrap().0.pages
        })
        .sum()
}

fn pack_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| parse_pack_name(&e.file_name().to_string_lossy()).is_some())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Loads checkpoint `id` (refusing newer ones) and compares with `model`.
fn assert_checkpoint(store: &CheckpointStore, id: u64, model: &Model) {
    let r = store
        .restore_newest(|c| {
            if c.info.id == id {
                assert_restores(c, model);
                Ok(())
            } else {
                Err("newer".into())
            }
        })
        .unwrap_or_else(|e| panic!("checkpoint {id}: {e}"));
    assert_eq!(r.info.id, id);
    assert_eq!(r.chain_len, 1, "a manifest stands alone");
}

/// A memory of `pages` pages, each distinct, and `steps` checkpoints each
/// changing `per_step` pages; returns the models (index = id).
fn history(store: &CheckpointStore, pages: u64, steps: u64, per_step: u64) -> Vec<Model> {
    let mut m = Model::default();
    m.memories.insert(0, vec![0; pages as usize * PAGE_SIZE]);
    m.sections.insert("host".into(), b"h".to_vec());
    for p in 0..pages {
        m.touch(0, p, p + 1);
    }
    let mut models = vec![Model::default(), m.clone()];
    write(store, 1, None, &m, &BTreeMap::new());
    for id in 2..=steps {
        let changed: Vec<u64> = (0..per_step).map(|k| (id * 7 + k * 13) % pages).collect();
        for &p in &changed {
            m.touch(0, p, id * 1000 + p);
        }
        write(
            store,
            id,
            Some(id - 1),
            &m,
            &BTreeMap::from([(0, runs(&changed))]),
        );
        models.push(m.clone());
    }
    models
}

#[test]
fn every_checkpoint_restores_exactly_and_pages_are_stored_once() {
    let (_d, store) = store_v2();
    let models = small_chain(&store);
    for id in 1..=3 {
        assert_checkpoint(&store, id, &models[id as usize]);
    }
    // small_model has 3 non-zero pages; each delta adds one new page.
    assert_eq!(pack_pages(store.dir()), 5);
    // Lazy reads give the same pages.
    let loaded = store.load_latest().unwrap();
    let mut r = loaded.memories[0].page_reader().unwrap();
    let mut page = [0u8; PAGE_SIZE];
    for p in 0..8u64 {
        let stored = r.read_page(p, &mut page).unwrap();
        let want = &models[3].memories[&0][p as usize * PAGE_SIZE..(p as usize + 1) * PAGE_SIZE];
        assert_eq!(&page[..], want, "page {p}");
        assert_eq!(stored, want.iter().any(|&b| b != 0));
    }
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn identical_pages_share_one_record_and_a_full_rewrite_adds_nothing() {
    let (_d, store) = store_v2();
    let mut m = Model::default();
    m.memories.insert(0, vec![0; 16 * PAGE_SIZE]);
    for p in 0..16 {
        m.touch(0, p, 42); // the same bytes in every page
    }
    write(&store, 1, None, &m, &BTreeMap::new());
    assert_eq!(pack_pages(store.dir()), 1);
    let before = pack_bytes(store.dir());
    let info = write(&store, 2, None, &m, &BTreeMap::new());
    assert_eq!(
        pack_bytes(store.dir()),
        before,
        "a full checkpoint of known pages"
    );
    assert!(info.bytes_written < 2048, "a manifest only: {info:?}");
    assert_checkpoint(&store, 2, &m);
}

#[test]
fn storage_grows_by_the_pages_that_differ() {
    let (_d, store) = store_v2();
    store.set_policy(KeepPolicy {
        last: 1000,
        hourly: 0,
        daily: 0,
    });
    let models = history(&store, 256, 40, 3);
    assert_eq!(pack_pages(store.dir()), 256 + 39 * 3);
    for id in [1, 2, 17, 40] {
        assert_checkpoint(&store, id, &models[id as usize]);
    }
}

#[test]
fn a_delta_on_a_version_1_image_becomes_a_whole_manifest() {
    let (_d, store) = store();
    let mut models = small_chain(&store); // version 1: full 1, deltas 2 and 3
    store.set_write_version(2);
    let mut m = models[3].clone();
    m.touch(1, 0, 77);
    write(&store, 4, Some(3), &m, &BTreeMap::from([(1, runs(&[0]))]));
    models.push(m);
    for id in 1..=4 {
        let r = store
            .restore_newest(|c| {
                if c.info.id == id {
                    assert_restores(c, &models[id as usize]);
                    Ok(())
                } else {
                    Err("newer".into())
                }
            })
            .unwrap();
        assert_eq!(r.info.id, id);
    }
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn the_keep_policy_keeps_the_last_pinned_and_the_chains_they_need() {
    let (_d, store) = store_v2();
    store.set_policy(KeepPolicy {
        last: 4,
        hourly: 0,
        daily: 0,
    });
    let mut models = history(&store, 64, 6, 2);
    store.pin(3, true).unwrap();
    let mut m = models.last().unwrap().clone();
    for id in 7..=30u64 {
        m.touch(0, id % 64, id);
        write(
            &store,
            id,
            Some(id - 1),
            &m,
            &BTreeMap::from([(0, runs(&[id % 64]))]),
        );
        models.push(m.clone());
    }
    assert_eq!(store.ids().unwrap(), vec![3, 27, 28, 29, 30]);
    assert!(
        store.pin(5, true).is_err(),
        "a deleted checkpoint cannot be pinned"
    );
    for id in [3, 27, 30] {
        assert_checkpoint(&store, id, &models[id as usize]);
    }
    let before = pack_bytes(store.dir());
    let gc = store.collect_garbage().unwrap();
    assert!(gc.bytes_after <= before, "{gc:?}");
    for id in [3, 27, 30] {
        assert_checkpoint(&store, id, &models[id as usize]);
    }
    assert!(store.fsck().unwrap().is_clean());
    // Unpinned, it goes at the next write.
    store.pin(3, false).unwrap();
    m.touch(0, 1, 99);
    write(&store, 31, Some(30), &m, &BTreeMap::from([(0, runs(&[1]))]));
    assert_eq!(store.ids().unwrap(), vec![28, 29, 30, 31]);
    assert_eq!(store.recovery_floor(), Some(28));
}

#[test]
fn hourly_and_daily_keep_the_newest_of_each_period() {
    let (_d, store) = store_v2();
    store.set_policy(KeepPolicy {
        last: 2,
        hourly: 3,
        daily: 0,
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let hour = 3_600_000_000_000u64;
    let mut m = small_model();
    // Two per hour over the last five hours, oldest first.
    let mut id = 0;
    for h in (0..5u64).rev() {
        for k in 0..2u64 {
            id += 1;
            m.touch(0, 3, id);
            let mut c = checkpoint(
                id,
                (id > 1).then(|| id - 1),
                &m,
                &BTreeMap::from([(0, runs(&[3]))]),
            );
            // Anchored at the start of the current hour (not at now, or
            // a run in an hour's first minute splits a pair).
            c.created_unix_ns = now / hour * hour - h * hour + k * 60_000_000_000 + 1;
            store.write(&c).unwrap();
        }
    }
    // The last 2 (9, 10; 10 is also the newest of this hour), and the
    // newest of the two hours before: 8 and 6.
    assert_eq!(store.ids().unwrap(), vec![6, 8, 9, 10]);
}

/// A local directory that "crashes" after a number of mutations: from then
/// on every commit and removal fails, as if the process had died there.
#[derive(Debug)]
struct Crashing {
    inner: LocalDir,
    budget: Arc<AtomicI64>,
}

impl Crashing {
    fn spend(&self) -> io::Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(io::Error::other("crashed"));
        }
        Ok(())
    }
}

struct CrashingTemp {
    inner: Box<dyn TempImage>,
    budget: Arc<AtomicI64>,
}

impl Write for CrashingTemp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
impl Seek for CrashingTemp {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}
impl TempImage for CrashingTemp {
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn commit(self: Box<Self>) -> io::Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(io::Error::other("crashed"));
        }
        self.inner.commit()
    }
}

impl StoreBackend for Crashing {
    fn location(&self) -> &Path {
        self.inner.location()
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn open(&self, name: &str) -> io::Result<Box<dyn ImageSource>> {
        self.inner.open(name)
    }
    fn create_temp(&self, name: &str) -> io::Result<Box<dyn TempImage>> {
        Ok(Box::new(CrashingTemp {
            inner: self.inner.create_temp(name)?,
            budget: self.budget.clone(),
        }))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.spend()?;
        self.inner.remove(name)
    }
    fn remove_stale_temps(&self) {
        self.inner.remove_stale_temps()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn collection_crashed_at_every_step_loses_no_referenced_page() {
    let (d, store) = store_v2();
    store.set_policy(KeepPolicy {
        last: 1000,
        hourly: 0,
        daily: 0,
    });
    let models = history(&store, 64, 24, 4);
    // Drop most checkpoints, so most packs are dead or sparse.
    let keep = [1u64, 9, 24];
    for id in 2..24 {
        if !keep.contains(&id) {
            fs::remove_file(store.checkpoint_path(id)).unwrap();
        }
    }
    let base = d.path().join("base");
    copy_dir(store.dir(), &base);
    // What a collection that runs to its end leaves.
    let whole = d.path().join("whole");
    copy_dir(&base, &whole);
    let gc = CheckpointStore::open(&whole)
        .unwrap()
        .collect_garbage()
        .unwrap();
    assert!(gc.packs_deleted + gc.packs_compacted > 3, "{gc:?}");
    let complete = pack_bytes(&whole);
    assert!(complete < pack_bytes(&base));
    let mut budget = 0;
    loop {
        let scratch = d.path().join(format!("crash-{budget}"));
        copy_dir(&base, &scratch);
        let crashing = CheckpointStore::with_backend(Box::new(Crashing {
            inner: LocalDir::new(&scratch),
            budget: Arc::new(AtomicI64::new(budget)),
        }));
        let _ = crashing.collect_garbage();
        drop(crashing);
        let finished = pack_bytes(&scratch) == complete;
        // After the "restart": everything kept restores exactly, fsck is
        // clean, and a second collection finishes the job.
        let after = CheckpointStore::open(&scratch).unwrap();
        let report = after.fsck().unwrap();
        assert!(
            report.is_clean(),
            "budget {budget}: {:?}",
            report.problems()
        );
        for &id in &keep {
            assert_checkpoint(&after, id, &models[id as usize]);
        }
        after.collect_garbage().unwrap();
        assert!(after.fsck().unwrap().is_clean());
        for &id in &keep {
            assert_checkpoint(&after, id, &models[id as usize]);
        }
        fs::remove_dir_all(&scratch).unwrap();
        if finished {
            break;
        }
        budget += 1;
        assert!(budget < 500, "collection never finished");
    }
    assert!(budget > 3, "crashed at only {budget} points");
}

#[test]
fn fsck_names_a_damaged_pack_and_the_checkpoints_still_usable() {
    let (_d, store) = store_v2();
    store.set_policy(KeepPolicy {
        last: 100,
        hourly: 0,
        daily: 0,
    });
    let models = history(&store, 32, 5, 1);
    assert!(store.fsck().unwrap().is_clean());
    assert_eq!(store.fsck().unwrap().usable(), &[5, 4, 3, 2, 1]);
    // The pack checkpoint 5 added holds its one new page: damage it.
    let mut packs: Vec<PathBuf> = fs::read_dir(store.dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| parse_pack_name(&p.file_name().unwrap().to_string_lossy()).is_some())
        .collect();
    packs.sort();
    let newest = packs.last().unwrap().clone();
    flip(&newest, 70, 3);
    let report = store.fsck().unwrap();
    assert!(!report.is_clean());
    let text: Vec<String> = report.problems().iter().map(|p| p.to_string()).collect();
    assert!(
        report
            .problems()
            .iter()
            .any(|p| matches!(p, FsckProblem::BadPack { .. })),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("checkpoint 5") && t.contains("damaged")),
        "{text:?}"
    );
    assert_eq!(report.usable(), &[4, 3, 2, 1]);
    // Reading the damaged page is an error, never wrong bytes.
    let loaded = store.load_latest().unwrap();
    let out = tempfile::tempfile().unwrap();
    out.set_len(32 * PAGE_SIZE as u64).unwrap();
    let err = loaded.memories[0].write_into(&out).unwrap_err();
    assert!(err.to_string().contains("does not match its hash"), "{err}");
    assert_checkpoint(&store, 4, &models[4]);
}

#[test]
fn a_missing_or_future_pack_makes_its_checkpoints_unusable_with_a_reason() {
    let (_d, store) = store_v2();
    let models = small_chain(&store);
    let mut packs: Vec<PathBuf> = fs::read_dir(store.dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| parse_pack_name(&p.file_name().unwrap().to_string_lossy()).is_some())
        .collect();
    packs.sort();
    // A pack from the future (preamble check recomputed).
    let mut b = fs::read(&packs[2]).unwrap();
    b[8] = 7;
    let pre = xxhash_rust::xxh3::xxh3_64(&b[0..12]) as u32;
    b[12..16].copy_from_slice(&pre.to_le_bytes());
    fs::write(&packs[2], &b).unwrap();
    let store = CheckpointStore::open(store.dir()).unwrap();
    let r = store.restore_newest(|c| {
        assert_restores(c, &models[c.info.id as usize]);
        Ok(())
    });
    let r = r.unwrap();
    assert_eq!(r.info.id, 2);
    assert!(r.skipped[0].1.contains("pack version 7"), "{:?}", r.skipped);
    fs::remove_file(&packs[0]).unwrap();
    let store = CheckpointStore::open(store.dir()).unwrap();
    let err = store.load_latest().unwrap_err().to_string();
    assert!(err.contains("in no readable page pack"), "{err}");
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2")
}

/// The checked-in version 2 fixture: `small_chain` written as manifests
/// and packs. Re-bless with `BLESS=1` only when the format changes (and
/// then keep this directory for the new reader).
#[test]
fn v2_fixture_still_loads() {
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        let (_d, store) = store_v2();
        small_chain(&store);
        let _ = fs::remove_dir_all(fixture_dir());
        copy_dir(store.dir(), &fixture_dir());
    }
    let models = {
        let (_d, store) = store_v2();
        small_chain(&store)
    };
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), dir.path());
    let total: u64 = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        total < 20 * 1024,
        "fixture too large to commit: {total} bytes"
    );
    let store = CheckpointStore::open(dir.path()).unwrap();
    assert_eq!(store.ids().unwrap(), vec![1, 2, 3]);
    for id in 1..=3 {
        assert_checkpoint(&store, id, &models[id as usize]);
    }
    let report = store.fsck().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems());
    assert_eq!(report.packs(), 3);
}
