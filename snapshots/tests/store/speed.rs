//! Write and restore speed, printed (run with `-- --ignored --nocapture`).
//! Ignored by default: timings belong to benchmarks, not to pass/fail.

use std::os::unix::fs::FileExt;
use std::time::Instant;

use phantom_snapshots::{MemoryDelta, NewCheckpoint, PAGE_SIZE, PageRun};

use super::common::*;

/// Restores go into memory (the host uses a memfd), not a disk file.
fn memory_file() -> std::fs::File {
    tempfile::tempfile_in("/dev/shm").unwrap_or_else(|_| tempfile::tempfile().unwrap())
}

#[test]
#[ignore = "timing report"]
fn speed() {
    let (_dir, store) = store();
    let pages = 65536u64; // 256 MiB
    let mut mem = vec![0u8; pages as usize * PAGE_SIZE];
    // Half the pages hold data (compressible like a heap), half are zero.
    for p in 0..pages as usize / 2 {
        fill(&mut mem[p * 2 * PAGE_SIZE..][..PAGE_SIZE], p as u64);
    }
    let src = source(&mem);
    let all = vec![PageRun {
        first: 0,
        count: pages,
    }];
    let ckpt = |id, parent, dirty: &Vec<PageRun>| NewCheckpoint {
        id,
        parent,
        created_unix_ns: 0,
        pause_us: 0,
        sections: vec![("host".into(), vec![0; 200])],
        memories: vec![MemoryDelta {
            index: 0,
            size_bytes: pages * PAGE_SIZE as u64,
            dirty: dirty.clone(),
            source: src.try_clone().unwrap(),
        }],
    };
    let t = Instant::now();
    let info = store.write(&ckpt(1, None, &all)).unwrap();
    let full = t.elapsed();
    eprintln!(
        "full 256 MiB (half zero): {full:?}, {} MiB written, {:.0} MiB/s of memory",
        info.bytes_written >> 20,
        256.0 / full.as_secs_f64()
    );

    let dirty: Vec<PageRun> = (0..655)
        .map(|i| PageRun {
            first: i * 97 % pages,
            count: 1,
        })
        .collect();
    for r in &dirty {
        let mut page = vec![0u8; PAGE_SIZE];
        fill(&mut page, r.first + 1);
        src.write_all_at(&page, r.first * PAGE_SIZE as u64).unwrap();
    }
    let mut times = Vec::new();
    for id in 2..12 {
        let t = Instant::now();
        store.write(&ckpt(id, Some(id - 1), &dirty)).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "delta of 655 scattered pages: median {:?}, max {:?}",
        times[5], times[9]
    );

    let t = Instant::now();
    let loaded = store.load_latest().unwrap();
    let verify = t.elapsed();
    let dest = memory_file();
    dest.set_len(pages * PAGE_SIZE as u64).unwrap();
    let t = Instant::now();
    let n = loaded.memories[0].write_into(&dest).unwrap();
    let write_into = t.elapsed();
    eprintln!(
        "restore of full + 10 deltas: load_latest (verify) {verify:?}, write_into {write_into:?} ({n} pages)"
    );
    let mut got = vec![0u8; mem.len()];
    dest.read_exact_at(&mut got, 0).unwrap();
    src.read_exact_at(&mut mem, 0).unwrap();
    assert!(got == mem);
    let t = Instant::now();
    assert!(store.fsck().unwrap().is_clean());
    eprintln!("fsck (deep): {:?}", t.elapsed());
}

#[test]
#[ignore = "timing report"]
fn speed_incompressible_full() {
    let (_dir, store) = store();
    let pages = 65536u64;
    let mut mem = vec![0u8; pages as usize * PAGE_SIZE];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in mem.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let src = source(&mem);
    let all = vec![PageRun {
        first: 0,
        count: pages,
    }];
    let t = Instant::now();
    let info = store
        .write(&NewCheckpoint {
            id: 1,
            parent: None,
            created_unix_ns: 0,
            pause_us: 0,
            sections: vec![],
            memories: vec![MemoryDelta {
                index: 0,
                size_bytes: pages * PAGE_SIZE as u64,
                dirty: all,
                source: src,
            }],
        })
        .unwrap();
    eprintln!(
        "full 256 MiB random: {:?}, {} MiB written",
        t.elapsed(),
        info.bytes_written >> 20
    );
    let t = Instant::now();
    let loaded = store.load_latest().unwrap();
    let dest = memory_file();
    dest.set_len(pages * PAGE_SIZE as u64).unwrap();
    loaded.memories[0].write_into(&dest).unwrap();
    eprintln!("restore 256 MiB random: {:?}", t.elapsed());
}
