//! Every dirty-tracking backend agrees with the page-compare oracle, for
//! random sequences of writes and reads (property test).

use phantom_memory::{StandaloneMemory, TrackerKind};
use proptest::prelude::*;

const PAGES: usize = 256;

/// One memory per backend this kernel has.
fn cells() -> Vec<StandaloneMemory> {
    TrackerKind::ALL
        .iter()
        .filter_map(|&k| StandaloneMemory::new(PAGES * 4096, 1 << 30, k).ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn backends_agree_with_oracle(rounds in prop::collection::vec(
        (prop::collection::btree_set(0..PAGES, 0..40), prop::collection::vec(0..PAGES, 0..40)), 1..6))
    {
        let mut cells = cells();
        prop_assert!(cells.len() >= 2, "at least pagemap and the oracle");
        for (writes, reads) in rounds {
            for cell in &mut cells {
                cell.with_bytes_mut(|b| {
                    // Reads map pages without dirtying them.
                    let mut sum = 0u8;
                    for &p in &reads {
                        sum = sum.wrapping_add(b[p * 4096 + 7]);
                    }
                    std::hint::black_box(sum);
                    // Every write changes its byte, so the oracle sees it.
                    for &p in &writes {
                        let i = p * 4096 + (p % 4096);
                        b[i] = b[i].wrapping_add(1);
                    }
                }).unwrap();
            }
            let expected: Vec<u64> = writes.iter().map(|&p| p as u64).collect();
            for cell in &mut cells {
                let c = cell.capture(false).unwrap();
                let got: Vec<u64> = c.dirty.iter().flat_map(|r| r.first..r.first + r.count).collect();
                prop_assert_eq!(&got, &expected, "backend {:?}", cell.tracker_kind());
            }
        }
        // After the captures every backend's memory reads the same bytes.
        let first = cells[0].with_bytes(|b| b.to_vec()).unwrap();
        for cell in &cells[1..] {
            prop_assert!(cell.with_bytes(|b| b == first.as_slice()).unwrap());
        }
    }
}

/// `auto` picks PAGEMAP_SCAN exactly when this kernel can do it, and the
/// backend it picks finds a written page.
#[test]
fn best_available_backend_is_the_fastest_this_kernel_has() {
    let scan_works = StandaloneMemory::new(PAGES * 4096, 1 << 30, TrackerKind::PagemapScan).is_ok();
    let best = TrackerKind::best_available();
    assert_eq!(
        best == TrackerKind::PagemapScan,
        scan_works,
        "best_available chose {best:?} although PAGEMAP_SCAN {} here",
        if scan_works { "works" } else { "does not work" }
    );
    assert_eq!(TrackerKind::parse("auto"), Ok(best));
    let mut m = StandaloneMemory::new(PAGES * 4096, 1 << 30, best).unwrap();
    m.capture(false).unwrap();
    m.with_bytes_mut(|b| b[17 * 4096 + 5] = 1).unwrap();
    let c = m.capture(false).unwrap();
    assert_eq!(
        c.dirty,
        [phantom_snapshots::PageRun {
            first: 17,
            count: 1
        }]
    );
}
