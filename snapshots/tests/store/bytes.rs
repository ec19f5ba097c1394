//! `bytes_uncompressed` of a delta of K dirty pages stays within
//! 1.1 x K x 4096 plus a small constant, even with every page its own run.

use std::collections::BTreeMap;

use phantom_snapshots::PAGE_SIZE;

use super::common::*;

/// What the host's test allows for headers, sections and the page index of
/// an empty checkpoint.
const SMALL_CONSTANT: u64 = 16 * 1024;

#[test]
fn bytes_follow_dirty_pages() {
    let (_dir, store) = store();
    let mut model = Model::default();
    model.memories.insert(0, vec![0; 4096 * PAGE_SIZE]);
    model.sections.insert("host".into(), vec![1; 300]);
    model.sections.insert("globals".into(), vec![2; 300]);
    write(&store, 1, None, &model, &BTreeMap::new());
    let mut id = 1;
    for k in [0u64, 1, 10, 100, 1000, 2000] {
        // Every other page: K separate runs, the worst case for the index.
        let pages: Vec<u64> = (0..k).map(|i| i * 2).collect();
        for &p in &pages {
            model.touch(0, p, id * 7 + p);
        }
        id += 1;
        let info = write(
            &store,
            id,
            Some(id - 1),
            &model,
            &BTreeMap::from([(0, runs(&pages))]),
        );
        assert_eq!(info.dirty_pages, k);
        let bound = (1.1 * k as f64 * PAGE_SIZE as f64) as u64 + SMALL_CONSTANT;
        assert!(
            info.bytes_uncompressed <= bound,
            "{k} pages: {} bytes (bound {bound})",
            info.bytes_uncompressed
        );
        assert!(info.bytes_uncompressed >= k * PAGE_SIZE as u64);
        assert_eq!(
            info.bytes_written,
            std::fs::metadata(store.checkpoint_path(id)).unwrap().len()
        );
        eprintln!(
            "K={k}: uncompressed {} (page bytes {}, overhead {}), written {}",
            info.bytes_uncompressed,
            k * PAGE_SIZE as u64,
            info.bytes_uncompressed - k * PAGE_SIZE as u64,
            info.bytes_written
        );
    }
    assert_restores(&store.load_latest().unwrap(), &model);
}
