//! Every dirty-tracking backend agrees with the page-compare oracle, for
//! random sequences of writes and reads (property test).

use phantom_host::memory::MemoryCell;
use phantom_host::tracker::TrackerKind;
use proptest::prelude::*;

const PAGES: usize = 256;

fn cells() -> Vec<MemoryCell> {
    TrackerKind::ALL
        .iter()
        .filter(|k| k.create().is_ok())
        .map(|&k| MemoryCell::standalone(PAGES * 4096, 1 << 30, k).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn backends_agree_with_oracle(rounds in prop::collection::vec(
        (prop::collection::btree_set(0..PAGES, 0..40), prop::collection::vec(0..PAGES, 0..40)), 1..6))
    {
        let cells = cells();
        prop_assert!(cells.len() >= 2, "at least pagemap and the oracle");
        for (writes, reads) in rounds {
            for cell in &cells {
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
            for cell in &cells {
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

#[test]
fn best_available_backend_is_a_kernel_one() {
    assert_ne!(TrackerKind::best_available(), TrackerKind::PageCompare);
}
