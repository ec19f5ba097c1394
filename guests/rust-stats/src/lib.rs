//! `rust-stats`: the `demo:interop/stats` interface in Rust, a library
//! component for composition (see guests/interop/stats.wit). Every number
//! added is kept in a `Vec` on the heap; `describe` reports their count,
//! total, minimum, maximum and median, computed from the vector, so a
//! vector that lost or garbled an entry across a restore shows.

use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../interop",
    world: "demo:interop/provider",
});

use exports::demo::interop::stats::Guest;

thread_local! {
    static VALUES: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
}

struct Stats;

impl Guest for Stats {
    fn add(value: i64) -> u32 {
        VALUES.with_borrow_mut(|v| {
            v.push(value);
            v.len() as u32
        })
    }

    fn count() -> u32 {
        VALUES.with_borrow(|v| v.len() as u32)
    }

    fn total() -> i64 {
        VALUES.with_borrow(|v| v.iter().sum())
    }

    fn describe() -> String {
        VALUES.with_borrow(|v| {
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
            format!(
                "rust-stats n={} total={} min={} max={} median={}",
                v.len(),
                v.iter().sum::<i64>(),
                sorted.first().copied().unwrap_or(0),
                sorted.last().copied().unwrap_or(0),
                median
            )
        })
    }
}

export!(Stats);
