//! Crash atomicity: whatever instant a writer dies at, the previous
//! checkpoint loads. A dead writer leaves at most a temporary file (ignored,
//! then removed on open); a file cut short by a lying disk is detected.

use std::fs;

use std::io::Write;

use phantom_snapshots::{CheckpointStore, LocalDir, RestoreError, StoreBackend};

use super::common::*;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn leftover_temp_file_is_ignored_and_removed_on_open() {
    let (_dir, store) = store();
    let models = small_chain(&store);
    // What a writer killed before its rename leaves: a partial image under
    // a temporary name. 4294967295 is above any Linux pid_max: a dead pid.
    let newest = fs::read(store.checkpoint_path(3)).unwrap();
    let dead = store
        .dir()
        .join(".ckpt-00000000000000000004.4294967295.tmp");
    fs::write(&dead, &newest[..newest.len() / 2]).unwrap();
    let garbage = store.dir().join(".ckpt-junk.tmp");
    fs::write(&garbage, b"junk").unwrap();
    // Our own pid: maybe a writer in this process, so it is left alone.
    let live = store.dir().join(format!(
        ".ckpt-00000000000000000005.{}.tmp",
        std::process::id()
    ));
    fs::write(&live, b"in progress").unwrap();
    // Before any open, it is simply not a checkpoint.
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 3);
    assert!(loaded.skipped.is_empty());
    assert_eq!(store.list().unwrap().len(), 3);
    assert_eq!(store.latest_id(), Some(3));
    assert!(store.fsck().unwrap().is_clean());

    let reopened = CheckpointStore::open(store.dir()).unwrap();
    assert!(
        !dead.exists() && !garbage.exists(),
        "stale temp files removed: {:?}",
        entries(store.dir())
    );
    assert!(live.exists(), "a live writer's temp file is kept");
    assert_restores(&reopened.load_latest().unwrap(), &models[3]);
    // The next write still works.
    let mut m = models[3].clone();
    m.touch(0, 0, 99);
    write(
        &reopened,
        4,
        Some(3),
        &m,
        &std::collections::BTreeMap::from([(0, runs(&[0]))]),
    );
    assert_restores(&reopened.load_latest().unwrap(), &m);
}

#[test]
fn truncated_newest_file_at_every_length_falls_back() {
    let (dir, store) = store();
    let models = small_chain(&store);
    let newest = store.checkpoint_path(3);
    let bytes = fs::read(&newest).unwrap();
    assert!(bytes.len() < 4096, "keep the file small: {}", bytes.len());
    let scratch = dir.path().join("scratch");
    for len in 0..bytes.len() {
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir(&scratch).unwrap();
        for id in [1, 2] {
            let p = store.checkpoint_path(id);
            fs::copy(&p, scratch.join(p.file_name().unwrap())).unwrap();
        }
        fs::write(scratch.join(newest.file_name().unwrap()), &bytes[..len]).unwrap();
        let s = CheckpointStore::open(&scratch).unwrap();
        let loaded = s.load_latest().unwrap();
        assert_eq!(loaded.info.id, 2, "length {len}");
        assert_eq!(loaded.skipped.len(), 1);
        let (id, why) = &loaded.skipped[0];
        assert_eq!(*id, 3);
        assert!(
            why.contains("ckpt-00000000000000000003.phi"),
            "length {len}: {why}"
        );
        assert!(why.contains("truncated"), "length {len}: {why}");
        assert_restores(&loaded, &models[2]);
        let listed = s.list().unwrap();
        assert!(listed[0].info.is_err() && listed[1].info.is_ok());
        assert!(!s.fsck().unwrap().is_clean());
    }
}

#[test]
fn every_file_truncated_is_a_clear_error() {
    let (_dir, store) = store();
    small_chain(&store);
    for id in 1..=3 {
        let p = store.checkpoint_path(id);
        let len = fs::metadata(&p).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
    }
    match store.load_latest() {
        Err(RestoreError::NoneUsable { reasons, .. }) => {
            assert_eq!(
                reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
                vec![3, 2, 1]
            );
            assert!(
                reasons.iter().all(|r| r.1.contains("truncated")),
                "{reasons:?}"
            );
        }
        other => panic!("expected NoneUsable, got {other:?}"),
    }
    let msg = store.load_latest().unwrap_err().to_string();
    assert!(
        msg.starts_with("no checkpoint in ") && msg.contains("checkpoint 1: "),
        "{msg}"
    );
}

#[test]
fn empty_and_missing_directories() {
    let (dir, store) = store();
    assert!(matches!(
        store.load_latest(),
        Err(RestoreError::NoCheckpoints { .. })
    ));
    assert_eq!(store.latest_id(), None);
    assert!(store.list().unwrap().is_empty());
    assert!(store.fsck().unwrap().is_clean());
    let err = CheckpointStore::open(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
    small_chain(&store);
    let err = CheckpointStore::create(store.dir())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds checkpoints"), "{err}");
}

#[test]
fn write_failing_mid_stream_leaves_previous_intact() {
    let (dir, store) = store();
    let models = small_chain(&store);
    // A source that cannot be read: the write fails after the temporary
    // file was created and partly written.
    let path = dir.path().join("write-only");
    fs::write(&path, vec![1u8; 8 * 4096]).unwrap();
    let src = fs::OpenOptions::new().write(true).open(&path).unwrap();
    let dirty = vec![phantom_snapshots::PageRun { first: 0, count: 8 }];
    let err = store
        .write(&phantom_snapshots::NewCheckpoint {
            id: 4,
            parent: Some(3),
            created_unix_ns: 0,
            pause_us: 0,
            sections: vec![("host".into(), vec![1; 100])],
            memories: vec![phantom_snapshots::MemoryDelta {
                index: 0,
                size_bytes: 8 * 4096,
                dirty,
                source: src,
            }],
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot read page 0 of memory 0"),
        "{err}"
    );
    assert_eq!(
        entries(store.dir()).len(),
        3,
        "no temporary file left: {:?}",
        entries(store.dir())
    );
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 3);
    assert_restores(&loaded, &models[3]);
    // A delta on a parent whose header is damaged is refused.
    flip(&store.checkpoint_path(3), 30, 0);
    let m = models[3].clone();
    let err = store
        .write(&phantom_snapshots::NewCheckpoint {
            id: 5,
            parent: Some(3),
            created_unix_ns: 0,
            pause_us: 0,
            sections: vec![],
            memories: vec![phantom_snapshots::MemoryDelta {
                index: 0,
                size_bytes: m.memories[&0].len() as u64,
                dirty: vec![],
                source: source(&m.memories[&0]),
            }],
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the parent checkpoint 3 is unreadable"),
        "{err}"
    );
}

#[test]
fn local_temp_is_invisible_until_commit_and_removed_if_dropped() {
    let (_dir, store) = store();
    let models = small_chain(&store);
    let newest = fs::read(store.checkpoint_path(3)).unwrap();
    let local = LocalDir::new(store.dir());
    let name = "ckpt-00000000000000000004.phi";
    // A whole, valid image written but not committed: not a checkpoint.
    let mut temp = local.create_temp(name).unwrap();
    temp.write_all(&newest).unwrap();
    temp.sync().unwrap();
    let temp_name = format!(".ckpt-00000000000000000004.{}.tmp", std::process::id());
    assert!(entries(store.dir()).contains(&temp_name));
    assert_eq!(store.latest_id(), Some(3));
    assert_eq!(store.load_latest().unwrap().info.id, 3);
    // A second writer of the same id in this process does not clobber it.
    assert!(local.create_temp(name).is_err());
    drop(temp);
    assert_eq!(entries(store.dir()).len(), 3, "{:?}", entries(store.dir()));
    // Committed, it is there under its name (its header says 3: refused
    // and skipped, never trusted).
    let mut temp = local.create_temp(name).unwrap();
    temp.write_all(&newest).unwrap();
    temp.commit().unwrap();
    assert!(entries(store.dir()).contains(&name.to_string()));
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 3);
    assert!(loaded.skipped[0].1.contains("its name says checkpoint 4"));
    assert_restores(&loaded, &models[3]);
}
