//! Restore with acceptance: a checkpoint whose checksums are valid but
//! whose contents the host rejects is skipped like a corrupt one, and the
//! next older one is tried.

use phantom_snapshots::{LoadedCheckpoint, RestoreError};

use super::common::*;

#[test]
fn refused_newest_falls_back_to_the_middle_one() {
    let (_dir, store) = store();
    let models = small_chain(&store);
    let mut offered = Vec::new();
    let restored = store
        .restore_newest(|l| {
            offered.push(l.info.id);
            if l.sections["host"] == b"host state 3" {
                return Err("its host state names a component that is gone".into());
            }
            // The value may keep the memories: clones share the images.
            Ok((l.sections.clone(), l.memories.clone()))
        })
        .unwrap();
    assert_eq!(offered, [3, 2]);
    assert_eq!(restored.info.id, 2);
    assert_eq!(
        restored.skipped,
        [(
            3,
            "its host state names a component that is gone".to_string()
        )]
    );
    let (sections, memories) = restored.value;
    let loaded = LoadedCheckpoint {
        info: restored.info,
        sections,
        memories,
        chain_len: restored.chain_len,
        skipped: vec![],
    };
    assert_restores(&loaded, &models[2]);
}

#[test]
fn refusals_and_corruption_are_skipped_alike() {
    let (_dir, store) = store();
    let models = small_chain(&store);
    flip(&store.checkpoint_path(3), 140, 2);
    let mut seen_skipped = Vec::new();
    let restored = store
        .restore_newest(|l| {
            seen_skipped.push(l.skipped.iter().map(|s| s.0).collect::<Vec<_>>());
            match l.info.id {
                2 => Err("refused".to_string()),
                id => Ok(id),
            }
        })
        .unwrap();
    assert_eq!(restored.value, 1);
    // 3 never reached `accept`; each candidate saw what was skipped so far.
    assert_eq!(seen_skipped, [vec![3], vec![3, 2]]);
    assert_eq!(
        restored.skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
        [3, 2]
    );
    assert!(
        restored.skipped[0].1.contains("is corrupt"),
        "{:?}",
        restored.skipped
    );
    assert_eq!(restored.skipped[1].1, "refused");
    // load_latest accepts everything: 2 loads, 3 is listed as skipped.
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 2);
    assert_eq!(loaded.skipped.len(), 1);
    assert_restores(&loaded, &models[2]);
}

#[test]
fn every_refusal_is_listed_when_none_is_accepted() {
    let (_dir, store) = store();
    small_chain(&store);
    let err = store
        .restore_newest(|l| Err::<(), _>(format!("no thanks to {}", l.info.id)))
        .unwrap_err();
    match &err {
        RestoreError::NoneUsable { reasons, .. } => assert_eq!(
            reasons,
            &[3, 2, 1].map(|id| (id, format!("no thanks to {id}")))
        ),
        other => panic!("expected NoneUsable, got {other:?}"),
    }
    assert!(
        err.to_string().contains("checkpoint 2: no thanks to 2"),
        "{err}"
    );
}
