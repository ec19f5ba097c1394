//! Round trip: full and delta checkpoints of random pages restore to
//! exactly the naive model, page by page.

use std::collections::{BTreeMap, BTreeSet};

use phantom_snapshots::{CheckpointStore, MemoryDelta, NewCheckpoint, PAGE_SIZE, PageRun};
use proptest::prelude::*;

use super::common::*;

#[derive(Clone, Debug)]
struct Step {
    full: bool,
    /// Pages each memory grows by (new pages are zero).
    grow: Vec<u64>,
    /// (memory selector, page selector, zero the page instead of filling it).
    touches: Vec<(u32, u64, bool)>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::bool::weighted(0.2),
        prop::collection::vec(0u64..3, 2),
        prop::collection::vec((0u32..2, any::<u64>(), prop::bool::weighted(0.15)), 0..40),
    )
        .prop_map(|(full, grow, touches)| Step {
            full,
            grow,
            touches,
        })
}

fn run_steps(initial: [u64; 2], steps: &[Step], version: u32) {
    let (_dir, store) = store();
    store.set_write_version(version);
    let mut model = Model::default();
    for (i, pages) in initial.iter().enumerate() {
        model
            .memories
            .insert(i as u32, vec![0; *pages as usize * PAGE_SIZE]);
    }
    let mut parent = None;
    for (n, s) in steps.iter().enumerate() {
        let id = n as u64 * 2 + 1; // ids need only increase
        let mut dirty: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        for (mem, g) in s.grow.iter().enumerate() {
            let m = model.memories.get_mut(&(mem as u32)).unwrap();
            m.resize(m.len() + *g as usize * PAGE_SIZE, 0);
        }
        for (k, &(mem, page, zero)) in s.touches.iter().enumerate() {
            let pages = model.memories[&mem].len() as u64 / PAGE_SIZE as u64;
            if pages == 0 {
                continue;
            }
            let page = page % pages;
            if zero {
                let m = model.memories.get_mut(&mem).unwrap();
                m[page as usize * PAGE_SIZE..][..PAGE_SIZE].fill(0);
            } else {
                model.touch(mem, page, id * 1000 + k as u64);
            }
            dirty.entry(mem).or_default().insert(page);
        }
        model
            .sections
            .insert("host".into(), format!("state after {id}").into_bytes());
        let full = parent.is_none() || s.full;
        let dirty_runs: BTreeMap<u32, Vec<PageRun>> = dirty
            .iter()
            .map(|(m, ps)| (*m, runs(&ps.iter().copied().collect::<Vec<_>>())))
            .collect();
        let info = write(
            &store,
            id,
            if full { None } else { parent },
            &model,
            &dirty_runs,
        );
        assert_eq!(info.id, id);
        if !full {
            assert_eq!(
                info.dirty_pages,
                dirty.values().map(|s| s.len() as u64).sum::<u64>()
            );
        }
        parent = Some(id);
        let loaded = store.load_latest().unwrap();
        assert_eq!(loaded.info, info);
        assert!(loaded.skipped.is_empty());
        assert_restores(&loaded, &model);
    }
    // A fresh store on the same directory sees the same thing.
    let reopened = CheckpointStore::open(store.dir()).unwrap();
    assert_restores(&reopened.load_latest().unwrap(), &model);
    assert!(reopened.fsck().unwrap().is_clean());
    assert!(reopened.list().unwrap().iter().all(|l| l.info.is_ok()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_pages_round_trip(initial in [0u64..40, 1u64..600], steps in prop::collection::vec(step(), 1..7)) {
        run_steps(initial, &steps, 1);
    }

    #[test]
    fn random_pages_round_trip_v2(initial in [0u64..40, 1u64..600], steps in prop::collection::vec(step(), 1..7)) {
        run_steps(initial, &steps, 2);
    }
}

#[test]
fn long_chain_many_blocks() {
    // 1000 pages: full image over four blocks, deltas spanning blocks.
    let (_dir, store) = store();
    let mut model = Model::default();
    model.memories.insert(0, vec![0; 1000 * PAGE_SIZE]);
    for p in (0..1000).step_by(3) {
        model.touch(0, p, p);
    }
    let info = write(&store, 1, None, &model, &BTreeMap::new());
    assert_eq!(info.dirty_pages, 1000);
    for id in 2..30u64 {
        let pages: Vec<u64> = (0..1000).filter(|p| p % (id + 1) == 0).collect();
        for &p in &pages {
            model.touch(0, p, id * 10_000 + p);
        }
        write(
            &store,
            id,
            Some(id - 1),
            &model,
            &BTreeMap::from([(0, runs(&pages))]),
        );
    }
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 29);
    assert_restores(&loaded, &model);
    assert_eq!(loaded.memories[0].page_count(), 1000);
}

#[test]
fn full_skips_zero_pages_and_restores_them_as_zero() {
    let (_dir, store) = store();
    let mut model = Model::default();
    model.memories.insert(0, vec![0; 2000 * PAGE_SIZE]);
    model.touch(0, 7, 1);
    model.touch(0, 1999, 2);
    let info = write(&store, 1, None, &model, &BTreeMap::new());
    assert_eq!(info.dirty_pages, 2000);
    assert!(info.bytes_uncompressed < 3 * PAGE_SIZE as u64, "{info:?}");
    let loaded = store.load_latest().unwrap();
    let dest = tempfile::tempfile().unwrap();
    dest.set_len(loaded.memories[0].size_bytes).unwrap();
    assert_eq!(
        loaded.memories[0].write_into(&dest).unwrap(),
        2,
        "only stored pages are written"
    );
    assert_restores(&loaded, &model);
}

#[test]
fn delta_stores_pages_zeroed_since_parent() {
    let (_dir, store) = store();
    let mut model = small_model();
    write(&store, 1, None, &model, &BTreeMap::new());
    model.memories.get_mut(&0).unwrap()[PAGE_SIZE..2 * PAGE_SIZE].fill(0);
    write(
        &store,
        2,
        Some(1),
        &model,
        &BTreeMap::from([(0, runs(&[1]))]),
    );
    assert_restores(&store.load_latest().unwrap(), &model);
}

#[test]
fn partial_last_page_and_unsorted_overlapping_runs() {
    let (_dir, store) = store();
    let size = 5 * PAGE_SIZE + 100;
    let mut bytes = vec![0u8; size];
    fill(&mut bytes, 9);
    let src = source(&bytes);
    let dirty = vec![
        PageRun { first: 3, count: 3 },
        PageRun { first: 0, count: 2 },
        PageRun { first: 1, count: 3 },
    ];
    let info = store
        .write(&NewCheckpoint {
            id: 4,
            parent: None,
            created_unix_ns: 0,
            pause_us: 0,
            sections: vec![],
            memories: vec![MemoryDelta {
                index: 0,
                size_bytes: size as u64,
                dirty,
                source: src,
            }],
        })
        .unwrap();
    assert_eq!(info.dirty_pages, 6);
    let mut model = Model::default();
    model.memories.insert(0, bytes);
    assert_restores(&store.load_latest().unwrap(), &model);
}

#[test]
fn write_refuses_bad_requests_and_leaves_nothing() {
    let (_dir, store) = store();
    let model = small_model();
    write(&store, 5, None, &model, &BTreeMap::new());
    let src = source(&[0u8; PAGE_SIZE]);
    let ok_runs = || vec![PageRun { first: 0, count: 1 }];
    let bad_runs = || vec![PageRun { first: 1, count: 1 }];
    let mk = |id, parent, dirty, sections: Vec<(String, Vec<u8>)>| NewCheckpoint {
        id,
        parent,
        created_unix_ns: 0,
        pause_us: 0,
        sections,
        memories: vec![MemoryDelta {
            index: 0,
            size_bytes: PAGE_SIZE as u64,
            dirty,
            source: src.try_clone().unwrap(),
        }],
    };
    let cases = [
        (
            mk(5, None, ok_runs(), vec![]),
            "is not newer than the latest checkpoint 5",
        ),
        (
            mk(6, Some(4), ok_runs(), vec![]),
            "parent checkpoint 4 does not exist",
        ),
        (mk(6, Some(6), ok_runs(), vec![]), "which is not older"),
        (mk(6, None, bad_runs(), vec![]), "lie beyond its 1 pages"),
        (
            mk(
                6,
                None,
                ok_runs(),
                vec![("a".into(), vec![]), ("a".into(), vec![])],
            ),
            "appears twice",
        ),
        (
            mk(6, None, ok_runs(), vec![(String::new(), vec![])]),
            "section name",
        ),
    ];
    for (ckpt, needle) in cases {
        let err = store.write(&ckpt).unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
    let names: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(store.latest_id(), Some(5));
}
