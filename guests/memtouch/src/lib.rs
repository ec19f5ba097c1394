//! `memtouch`: owns a buffer of N MiB and dirties chosen pages of it, for the
//! checkpoint benchmark and the differential tests.
//!
//! Init args: `--mib N` (default 1). Console lines:
//!
//! | line             | does                                                 |
//! |------------------|------------------------------------------------------|
//! | `touch <k> <s>`  | writes one byte into each of k distinct pages spread |
//! |                  | evenly across the buffer, values derived from seed s;|
//! |                  | prints `touched <k>` (k capped at the page count)    |
//! | `fill <s>`       | fills the whole buffer with pseudo-random bytes from |
//! |                  | seed s (incompressible); prints `filled <bytes>`     |
//! | `sum`            | prints `sum=<hex>`, FNV-1a 64 of the whole buffer    |
//! | `info`           | prints `bytes=<size> pages=<count>`                  |
//!
//! Everything is a pure function of the args and the lines received, so "run
//! N lines" and "run k, checkpoint, restore, run N-k" end with the same bytes.

use phantom_sdk::args::Options;
use phantom_sdk::{File, Process, println};

/// The page `touch` dirties: the host's dirty-tracking granularity (the OS
/// page), a sixteenth of a Wasm page.
const PAGE_SIZE: usize = 4096;

/// The buffer size when `--mib` is not given.
const DEFAULT_MIB: usize = 1;

/// The largest buffer accepted: a Rust slice may span at most `isize::MAX`
/// bytes, 2 GiB less one on wasm32.
const MAX_MIB: usize = 2047;

/// A Wasm page, the unit of `memory.grow`.
const WASM_PAGE_SIZE: usize = 65536;

struct MemTouch {
    buffer: &'static mut [u8],
}

impl Process for MemTouch {
    fn init(args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        let mib = Options::parse(&args, &["mib"])?
            .get("mib")?
            .unwrap_or(DEFAULT_MIB);
        if mib == 0 || mib > MAX_MIB {
            return Err(format!("--mib must be 1..={MAX_MIB}, not {mib}"));
        }
        let buffer =
            grow_buffer(mib << 20).ok_or_else(|| format!("cannot grow memory by {mib} MiB"))?;
        Ok(MemTouch { buffer })
    }

    fn on_line(&mut self, line: String) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["touch", k, seed] => match (k.parse::<usize>(), seed.parse::<u64>()) {
                (Ok(k), Ok(seed)) => println!("touched {}", self.touch(k, seed)),
                _ => println!("error: usage: touch <pages> <seed>"),
            },
            ["fill", seed] => match seed.parse::<u64>() {
                Ok(seed) => println!("filled {}", self.fill(seed)),
                _ => println!("error: usage: fill <seed>"),
            },
            ["sum"] => println!("sum={:016x}", fnv1a64(self.buffer)),
            ["info"] => println!(
                "bytes={} pages={}",
                self.buffer.len(),
                self.buffer.len() / PAGE_SIZE
            ),
            [] => {}
            [other, ..] => println!("error: unknown command '{other}'"),
        }
    }
}

impl MemTouch {
    /// Fills the whole buffer with pseudo-random bytes from `seed`
    /// (xorshift64): memory that does not compress, as a busy process's
    /// heap; returns the bytes written.
    fn fill(&mut self, seed: u64) -> usize {
        let mut x = seed | 1;
        for chunk in self.buffer.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        self.buffer.len()
    }

    /// Writes one byte into each of `k` distinct pages spread evenly across the
    /// buffer; returns how many pages were touched.
    fn touch(&mut self, k: usize, seed: u64) -> usize {
        let pages = self.buffer.len() / PAGE_SIZE;
        let k = k.min(pages);
        for i in 0..k {
            // i * pages / k is strictly increasing in i when k <= pages, so
            // the pages are distinct.
            let page = i * pages / k;
            let mix = splitmix64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let offset = page * PAGE_SIZE + (mix as usize % PAGE_SIZE);
            // Never zero, so a touch of a fresh page always changes it.
            self.buffer[offset] = (mix >> 56) as u8 | 1;
        }
        k
    }
}

/// A zeroed buffer of `len` bytes in fresh pages from `memory.grow`; `None` if
/// the memory cannot grow that far.
///
/// Not a `vec![0; len]`: the allocator writes those zeros, which would dirty
/// every page of the buffer before the first checkpoint. Fresh Wasm pages are
/// zero already and stay clean until touched.
fn grow_buffer(len: usize) -> Option<&'static mut [u8]> {
    let pages = len.div_ceil(WASM_PAGE_SIZE);
    let old_pages = core::arch::wasm32::memory_grow::<0>(pages);
    if old_pages == usize::MAX {
        return None;
    }
    let start = (old_pages * WASM_PAGE_SIZE) as *mut u8;
    // SAFETY: `memory.grow` just added `pages * WASM_PAGE_SIZE >= len` bytes at
    // `start`, zero-initialised. The allocator only hands out memory it grew
    // itself, and linear memory never shrinks, so this region is valid for the
    // rest of the program and aliased by nothing else. `start` is nonzero
    // (it is past the module's data) and `len <= MAX_MIB MiB <= isize::MAX`.
    Some(unsafe { core::slice::from_raw_parts_mut(start, len) })
}

/// SplitMix64's output function: a well-mixed value from a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bit: simple enough for a test to recompute from a memory dump.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

phantom_sdk::export_process!(MemTouch);
