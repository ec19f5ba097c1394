//! Old-version fixtures: a small format version 1 chain (a full image and a
//! delta) is checked in under tests/fixtures/v1 and must keep loading with
//! exactly these contents. Re-bless with `BLESS=1` only when the format
//! version changes (and then keep the old directory for the new reader).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use phantom_snapshots::{CheckpointInfo, CheckpointStore, PAGE_SIZE};

use super::common::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// The chain the fixture holds: models after checkpoint 1 (full) and 2.
fn models() -> (Model, Model, Vec<u64>) {
    let mut m = Model::default();
    m.memories.insert(0, vec![0; 20 * PAGE_SIZE]);
    m.memories.insert(1, vec![0; 2 * PAGE_SIZE]);
    m.sections
        .insert("host".into(), b"{\"restore_count\":0}".to_vec());
    m.sections.insert("globals".into(), b"[]".to_vec());
    for p in [0, 1, 2, 7, 19] {
        m.touch(0, p, p + 100);
    }
    m.touch(1, 1, 5);
    let full = m.clone();
    let dirty = vec![2, 3, 19];
    for &p in &dirty {
        m.touch(0, p, p + 200);
    }
    m.sections
        .insert("host".into(), b"{\"restore_count\":1}".to_vec());
    m.sections.insert("host/new-component".into(), vec![9; 10]);
    (full, m, dirty)
}

#[test]
fn v1_fixture_still_loads() {
    let (full, delta, dirty) = models();
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        let (_dir, store) = store();
        write(&store, 1, None, &full, &BTreeMap::new());
        write(
            &store,
            2,
            Some(1),
            &delta,
            &BTreeMap::from([(0, runs(&dirty))]),
        );
        let _ = fs::remove_dir_all(fixture_dir());
        fs::create_dir_all(fixture_dir()).unwrap();
        for id in [1, 2] {
            let p = store.checkpoint_path(id);
            fs::copy(&p, fixture_dir().join(p.file_name().unwrap())).unwrap();
        }
    }
    // Work on a copy: opening a store may tidy its directory.
    let dir = tempfile::tempdir().unwrap();
    let mut total = 0;
    for entry in fs::read_dir(fixture_dir()).expect("fixture missing: run with BLESS=1") {
        let entry = entry.unwrap();
        total += entry.metadata().unwrap().len();
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    assert!(
        total < 20 * 1024,
        "fixture too large to commit: {total} bytes"
    );
    let store = CheckpointStore::open(dir.path()).unwrap();
    let file_len = |id| fs::metadata(store.checkpoint_path(id)).unwrap().len();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[1].info.as_ref().unwrap(),
        &CheckpointInfo {
            id: 1,
            parent: None,
            created_unix_ns: 1001,
            pause_us: 3,
            dirty_pages: 22,
            // Header, sections, TOC (counts, 2 section entries, 2 memory
            // entries, 2 blocks with 3 + 1 runs), 6 pages.
            bytes_uncompressed: 128
                + 21
                + (8 + (26 + 7) + (26 + 4) + 2 * 16 + (24 + 3 * 12) + (24 + 12))
                + 6 * 4096,
            bytes_written: file_len(1),
        }
    );
    let loaded = store.load_latest().unwrap();
    assert_eq!(
        loaded.info,
        CheckpointInfo {
            id: 2,
            parent: Some(1),
            created_unix_ns: 1002,
            pause_us: 6,
            dirty_pages: 3,
            // Header, 3 sections, TOC (counts, 3 section entries, 2 memory
            // entries, 1 block with 2 runs), 3 pages.
            bytes_uncompressed: 128
                + 31
                + (8 + (26 + 7) + (26 + 4) + (26 + 18) + 2 * 16 + (24 + 2 * 12))
                + 3 * 4096,
            bytes_written: file_len(2),
        }
    );
    assert!(loaded.skipped.is_empty());
    assert_restores(&loaded, &delta);
    assert!(store.fsck().unwrap().is_clean());
}
