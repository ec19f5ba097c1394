//! Retention: after a FULL checkpoint commits, chains older than the
//! previous (verifying) full checkpoint are deleted; the two newest chains
//! stay for fallback.

use std::collections::BTreeMap;

use super::common::*;

fn ids(store: &phantom_snapshots::CheckpointStore) -> Vec<u64> {
    let mut v: Vec<u64> = store.list().unwrap().iter().map(|l| l.id).collect();
    v.reverse();
    v
}

#[test]
fn full_checkpoint_deletes_chains_before_the_previous_full() {
    let (_dir, store) = store();
    let mut m = small_model();
    let d = |p| BTreeMap::from([(0, runs(&[p]))]);
    write(&store, 1, None, &m, &BTreeMap::new());
    m.touch(0, 0, 2);
    write(&store, 2, Some(1), &m, &d(0));
    write(&store, 3, None, &m, &BTreeMap::new());
    assert_eq!(ids(&store), vec![1, 2, 3], "two chains kept");
    m.touch(0, 1, 4);
    write(&store, 4, Some(3), &m, &d(1));
    write(&store, 5, None, &m, &BTreeMap::new());
    assert_eq!(ids(&store), vec![3, 4, 5]);
    m.touch(0, 2, 6);
    write(&store, 6, Some(5), &m, &d(2));
    assert_eq!(ids(&store), vec![3, 4, 5, 6], "deltas delete nothing");
    assert_restores(&store.load_latest().unwrap(), &m);
    // The previous chain really is a usable fallback.
    flip(&store.checkpoint_path(5), 140, 0);
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 4);
}

#[test]
fn corrupt_previous_full_keeps_the_one_before() {
    let (_dir, store) = store();
    let m = small_model();
    write(&store, 1, None, &m, &BTreeMap::new());
    write(&store, 2, None, &m, &BTreeMap::new());
    let len = std::fs::metadata(store.checkpoint_path(2)).unwrap().len() as usize;
    flip(&store.checkpoint_path(2), len - 3, 5);
    write(&store, 3, None, &m, &BTreeMap::new());
    assert_eq!(
        ids(&store),
        vec![1, 2, 3],
        "1 is the newest older full that verifies"
    );
    write(&store, 4, None, &m, &BTreeMap::new());
    assert_eq!(ids(&store), vec![3, 4]);
    assert!(store.fsck().unwrap().is_clean());
}
