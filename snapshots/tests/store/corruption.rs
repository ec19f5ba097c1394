//! Corruption: a flipped bit anywhere in a file is detected by a checksum,
//! and restore falls back to the newest chain that verifies.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;

use phantom_snapshots::{CheckpointStore, FsckProblem, PAGE_SIZE};

use super::common::*;

/// Every bit of `id`'s file, flipped one at a time, is detected by
/// `list`, `fsck` and `load_latest`.
fn every_bit_detected(id: u64, expect_loaded: Option<u64>) {
    let (dir, store) = store();
    small_chain(&store);
    let path = store.checkpoint_path(id);
    let original = fs::read(&path).unwrap();
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    for other in 1..=3 {
        let p = store.checkpoint_path(other);
        fs::copy(&p, scratch.join(p.file_name().unwrap())).unwrap();
    }
    let s = CheckpointStore::open(&scratch).unwrap();
    let target = s.checkpoint_path(id);
    let file = fs::OpenOptions::new().write(true).open(&target).unwrap();
    for at in 0..original.len() {
        for bit in 0..8 {
            file.write_all_at(&[original[at] ^ (1 << bit)], at as u64)
                .unwrap();
            let listed = s.list().unwrap();
            let entry = listed.iter().find(|l| l.id == id).unwrap();
            let err = match &entry.info {
                Ok(_) => panic!("flip of byte {at} bit {bit} of checkpoint {id} went unnoticed"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(target.to_str().unwrap()), "{err}");
            // Restore's fallback once per byte (it verifies the same way).
            if bit == at % 8 {
                let loaded = s.load_latest().map(|l| l.info.id).ok();
                assert_eq!(loaded, expect_loaded, "byte {at} bit {bit}");
            }
        }
        file.write_all_at(&original[at..at + 1], at as u64).unwrap();
    }
    fs::write(&target, &original).unwrap();
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn bit_flips_in_newest_delta() {
    every_bit_detected(3, Some(2));
}

#[test]
fn bit_flips_in_full_base() {
    every_bit_detected(1, None);
}

#[test]
fn corrupt_middle_of_chain_falls_back_to_before_it() {
    let (_dir, store) = store();
    let models = small_chain(&store);
    let mut m = models[3].clone();
    m.touch(1, 0, 40);
    write(&store, 4, Some(3), &m, &BTreeMap::from([(1, runs(&[0]))]));
    let p2 = store.checkpoint_path(2);
    let len = fs::metadata(&p2).unwrap().len() as usize;
    flip(&p2, len / 2, 3);

    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 1);
    assert_restores(&loaded, &models[1]);
    let skipped: Vec<u64> = loaded.skipped.iter().map(|s| s.0).collect();
    assert_eq!(skipped, vec![4, 3, 2]);
    assert!(
        loaded.skipped[0]
            .1
            .contains("builds on checkpoint 2, which is unusable"),
        "{:?}",
        loaded.skipped
    );
    assert!(
        loaded.skipped[2].1.contains("is corrupt: the checksum of"),
        "{:?}",
        loaded.skipped
    );

    let report = store.fsck().unwrap();
    assert!(!report.is_clean());
    let problems: Vec<String> = report.problems().iter().map(|p| p.to_string()).collect();
    assert!(
        matches!(report.problems()[0], FsckProblem::BrokenChain { id: 4, .. }),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("checkpoint 2: ") && p.contains("corrupt")),
        "{problems:?}"
    );
    assert_eq!(report.checked(), 4);

    // The host resumes from 1 and writes its next delta on it: that chain
    // is now the newest valid one.
    let mut m1 = models[1].clone();
    m1.touch(0, 3, 77);
    write(&store, 5, Some(1), &m1, &BTreeMap::from([(0, runs(&[3]))]));
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 5);
    assert!(loaded.skipped.is_empty());
    assert_restores(&loaded, &m1);
}

#[test]
fn missing_parent_and_renamed_files() {
    let (_dir, store) = store();
    let models = small_chain(&store);
    fs::remove_file(store.checkpoint_path(2)).unwrap();
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 1);
    assert!(
        loaded.skipped[0]
            .1
            .contains("builds on checkpoint 2, which is missing"),
        "{:?}",
        loaded.skipped
    );
    assert_restores(&loaded, &models[1]);
    // A file renamed to another id is refused, not trusted.
    fs::rename(store.checkpoint_path(3), store.checkpoint_path(9)).unwrap();
    let listed = store.list().unwrap();
    let err = listed[0].info.as_ref().unwrap_err().to_string();
    assert!(
        err.contains("its name says checkpoint 9 but its header says 3"),
        "{err}"
    );
}

#[test]
fn random_bytes_never_panic() {
    let (_dir, store) = store();
    small_chain(&store);
    let original = fs::read(store.checkpoint_path(3)).unwrap();
    let mut x = 0x1234_5678_u64;
    for round in 0..2000 {
        let mut b = original.clone();
        // Overwrite a random stretch with random bytes, sometimes resize.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let start = (x as usize) % b.len();
        let n = 1 + (x >> 32) as usize % 64;
        for (i, v) in b.iter_mut().skip(start).take(n).enumerate() {
            *v = (x >> (i % 8 * 8)) as u8 ^ i as u8;
        }
        if round % 5 == 0 {
            b.resize((x >> 20) as usize % (original.len() * 2), 0xAB);
        }
        fs::write(store.checkpoint_path(3), &b).unwrap();
        let _ = store.list().unwrap();
        let _ = store.fsck().unwrap();
        if let Ok(l) = store.load_latest() {
            for m in &l.memories {
                let dest = tempfile::tempfile().unwrap();
                dest.set_len(m.size_bytes).unwrap();
                let _ = m.write_into(&dest);
                if let Ok(mut r) = m.page_reader() {
                    let mut page = [0u8; PAGE_SIZE];
                    for p in 0..r.page_count().min(64) {
                        let _ = r.read_page(p, &mut page);
                    }
                }
            }
        }
    }
}
