//! A structure-aware image fuzzer: it mutates the fields of valid images
//! (memory sizes and indices, page runs and blocks, section names and
//! contents, JSON fields inside the host state, header ids), re-encodes them
//! with every checksum recomputed so the mutation reaches past the checksum
//! checks, and restores each. Every outcome must be a clear error or a
//! restore after which the process runs, takes a checkpoint and fails
//! cleanly if it fails at all: no panic, no hang.
//!
//! ```text
//!   kv process, chain of checkpoints ─► pick a file ─► RawImage::parse
//!     ─► 1..4 mutations ─► encode (checksums recomputed) ─► copy of the dir
//!     ─► Process::restore ─► offer a line, step, checkpoint   (a worker thread:
//!        a panic or a hang names the seed that reproduces it)
//!     ─► every 25th case: the `phantom` binary runs the copy too
//! ```
//! `just test` runs a few hundred cases; `just soak` runs it for an hour
//! (`PHANTOM_FUZZ_SECS=3600`). `PHANTOM_FUZZ_SEED=N` replays one case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use phantom_runtime::gate::Input;
use phantom_runtime::process::{Process, SpawnRequest};
use phantom_runtime::runtime::{Runtime, RuntimeConfig};
use phantom_snapshots::PageRun;
use phantom_snapshots::raw::{RawBlock, RawImage, RawMemory};
use serde_json::Value;

use super::common::*;

/// Cases when no time budget is given (the brief run of `just test`).
const DEFAULT_CASES: u64 = 300;
/// Longest one case may take before it counts as a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// xorshift64*: small, deterministic, enough for choosing mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Interesting integers: limits, off-by-ones, page multiples.
fn interesting(rng: &mut Rng, near: u64) -> u64 {
    let choices = [
        0,
        1,
        near,
        near.wrapping_add(1),
        near.wrapping_sub(1),
        near.wrapping_add(4096),
        near.wrapping_sub(4096),
        near.wrapping_add(65536),
        near.wrapping_mul(2),
        near / 2,
        4096,
        65536,
        1 << 32,
        (1 << 32) + 65536,
        u32::MAX as u64,
        i64::MAX as u64,
        u64::MAX,
        rng.next(),
        rng.below(1 << 20) * 65536,
    ];
    *rng.pick(&choices)
}

/// A JSON value to put where another was.
fn json_value(rng: &mut Rng) -> Value {
    let choices = [
        Value::Null,
        Value::Bool(true),
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(u64::MAX),
        serde_json::json!(1e300),
        serde_json::json!(4096),
        serde_json::json!(""),
        serde_json::json!("x".repeat(rng.below(5000) as usize)),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!(["console-closed"]),
        serde_json::json!([{"console-line": "hi"}, {"timer": 4_000_000_000u64}, "resume"]),
        serde_json::json!({"1": {"due_ns": 0, "period_ns": 1_000_000}}),
        serde_json::json!({"0": {"due_ns": u64::MAX, "period_ns": null}}),
    ];
    rng.pick(&choices).clone()
}

/// Mutates one field somewhere inside a JSON document.
fn mutate_json(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(map) if !map.is_empty() && rng.chance(80) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            match rng.below(4) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(key, json_value(rng));
                }
                _ => mutate_json(rng, map.get_mut(&key).unwrap()),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.chance(70) => match rng.below(4) {
            0 => {
                items.pop();
            }
            1 => {
                let copy = items[0].clone();
                for _ in 0..rng.below(6000) {
                    items.push(copy.clone());
                }
            }
            _ => {
                let i = rng.below(items.len() as u64) as usize;
                mutate_json(rng, &mut items[i]);
            }
        },
        _ => *v = json_value(rng),
    }
}

/// One structure-aware mutation; returns what it did.
fn mutate(rng: &mut Rng, raw: &mut RawImage) -> String {
    match rng.below(14) {
        0 if !raw.memories.is_empty() => {
            let m = rng.below(raw.memories.len() as u64) as usize;
            let size = interesting(rng, raw.memories[m].size_bytes);
            raw.memories[m].size_bytes = size;
            format!("memory {m} size = {size}")
        }
        1 if !raw.memories.is_empty() => {
            let m = rng.below(raw.memories.len() as u64) as usize;
            let index = rng.below(4) as u32;
            raw.memories[m].index = index;
            format!("memory {m} index = {index}")
        }
        2 => {
            let index = raw.memories.len() as u32 + rng.below(2) as u32;
            let size = rng.below(64) * 65536;
            let table = (raw.version >= 2).then(|| (0, Vec::new()));
            raw.memories.push(RawMemory {
                index,
                size_bytes: size,
                blocks: Vec::new(),
                table,
            });
            format!("extra memory {index} of {size} bytes")
        }
        3 if !raw.memories.is_empty() => {
            raw.memories.remove(0);
            "memory 0 removed".into()
        }
        4 | 5 => mutate_block(rng, raw),
        6..=9 if !raw.sections.is_empty() => {
            let s = rng.below(raw.sections.len() as u64) as usize;
            let name = raw.sections[s].0.clone();
            match serde_json::from_slice::<Value>(&raw.sections[s].1) {
                Ok(mut v) if rng.chance(85) => {
                    mutate_json(rng, &mut v);
                    raw.sections[s].1 = serde_json::to_vec(&v).unwrap();
                    format!("section {name}: a JSON field")
                }
                _ => {
                    let bytes = &mut raw.sections[s].1;
                    if bytes.is_empty() {
                        bytes.push(b'{');
                    } else {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] ^= 1 << rng.below(8);
                    }
                    format!("section {name}: a flipped bit")
                }
            }
        }
        10 if !raw.sections.is_empty() => {
            let s = rng.below(raw.sections.len() as u64) as usize;
            let name = raw.sections[s].0.clone();
            match rng.below(3) {
                0 => {
                    raw.sections.remove(s);
                    format!("section {name} removed")
                }
                1 => {
                    let copy = raw.sections[s].clone();
                    raw.sections.push(copy);
                    format!("section {name} twice")
                }
                _ => {
                    raw.sections[s].0 = rng
                        .pick(&["host", "timers", "globals", "", "hostx"])
                        .to_string();
                    format!("section {name} renamed")
                }
            }
        }
        11 => {
            let parent = match rng.below(3) {
                0 => None,
                1 => Some(raw.id.saturating_sub(1 + rng.below(3))),
                _ => Some(interesting(rng, raw.id)),
            };
            raw.parent = parent;
            format!("parent = {parent:?}")
        }
        12 => {
            raw.dirty_pages = interesting(rng, raw.dirty_pages);
            raw.bytes_uncompressed = interesting(rng, raw.bytes_uncompressed);
            raw.created_unix_ns = rng.next();
            "header counters".into()
        }
        _ => {
            raw.id = interesting(rng, raw.id);
            format!("id = {}", raw.id)
        }
    }
}

/// Mutates a page block: its runs, its page count, or its contents.
/// Format 2: a page table's bytes (page numbers, run counts, hashes), or
/// its claimed page count, with every checksum recomputed.
fn mutate_table(rng: &mut Rng, raw: &mut RawImage) -> String {
    let with_tables: Vec<usize> = (0..raw.memories.len())
        .filter(|&m| raw.memories[m].table.is_some())
        .collect();
    if with_tables.is_empty() {
        return "no block or page table to mutate".into();
    }
    let m = *rng.pick(&with_tables);
    let (pages, bytes) = raw.memories[m].table.as_mut().expect("picked");
    match rng.below(4) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= 1 << rng.below(8);
            format!("memory {m}: a flipped bit at byte {i} of its page table")
        }
        1 if bytes.len() >= 8 => {
            let v = interesting(rng, u64::from_le_bytes(bytes[0..8].try_into().unwrap()));
            bytes[0..8].copy_from_slice(&v.to_le_bytes());
            format!("memory {m}: first run moved to page {v}")
        }
        2 => {
            *pages = interesting(rng, *pages);
            format!("memory {m}: page table claims {pages} pages")
        }
        _ => {
            let cut = rng.below(bytes.len() as u64 + 1) as usize;
            bytes.truncate(cut);
            format!("memory {m}: page table cut to {cut} bytes")
        }
    }
}

fn mutate_block(rng: &mut Rng, raw: &mut RawImage) -> String {
    let with_blocks: Vec<usize> = (0..raw.memories.len())
        .filter(|&m| !raw.memories[m].blocks.is_empty())
        .collect();
    if with_blocks.is_empty() {
        return mutate_table(rng, raw);
    }
    let m = *rng.pick(&with_blocks);
    let b = rng.below(raw.memories[m].blocks.len() as u64) as usize;
    let block = &mut raw.memories[m].blocks[b];
    match rng.below(6) {
        0 if !block.runs.is_empty() => {
            let r = rng.below(block.runs.len() as u64) as usize;
            block.runs[r].first = interesting(rng, block.runs[r].first);
            format!("memory {m} block {b}: run {r} moved")
        }
        1 if !block.runs.is_empty() => {
            let r = rng.below(block.runs.len() as u64) as usize;
            block.runs[r].count = interesting(rng, block.runs[r].count);
            format!("memory {m} block {b}: run {r} resized")
        }
        2 => {
            block.pages = interesting(rng, u64::from(block.pages)) as u32;
            format!("memory {m} block {b}: page count {}", block.pages)
        }
        3 => {
            if !block.compressed.is_empty() {
                let i = rng.below(block.compressed.len() as u64) as usize;
                block.compressed[i] ^= 1 << rng.below(8);
            }
            format!("memory {m} block {b}: a flipped bit in the compressed bytes")
        }
        4 => {
            // Valid compression of different bytes: the memory restores with
            // contents the guest never wrote.
            let pages: u64 = block.runs.iter().map(|r| r.count).sum::<u64>().min(256);
            let mut plain = vec![0u8; pages as usize * 4096];
            for byte in plain.iter_mut().step_by(rng.below(97) as usize + 1) {
                *byte = rng.next() as u8;
            }
            let runs = block.runs.clone();
            *block = RawBlock::compress(runs, &plain);
            format!("memory {m} block {b}: other contents")
        }
        _ => {
            let first = rng.below(1 << 16);
            block.runs.push(PageRun {
                first,
                count: 1 + rng.below(3),
            });
            format!("memory {m} block {b}: an extra run at {first}")
        }
    }
}

/// How a case ended.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Outcome {
    /// Restore refused every checkpoint: a clear error.
    Refused,
    /// Restored from the newest checkpoint, mutated or not, and ran.
    Ran,
    /// Skipped the mutated checkpoint, restored an older one and ran.
    FellBack,
    /// Restored, then the guest or a checkpoint failed cleanly.
    FailedCleanly,
}

/// A kv process with a chain: checkpoint 1 (spawn, full), then deltas.
fn seed_image(rt: &Runtime, data: &Path) -> PathBuf {
    let bytes = std::fs::read(phantom_tests::KV).unwrap();
    let request = SpawnRequest {
        name: "kv".into(),
        ..Default::default()
    };
    let (mut p, _) = Process::spawn(rt, &bytes, data, request).unwrap();
    for round in 0..3 {
        for i in 0..40 {
            p.offer(Input::ConsoleLine(format!(
                "set k{round}-{i} {}",
                "v".repeat(i * 50)
            )))
            .unwrap();
        }
        while p.step(rt).unwrap().is_some() {}
        p.checkpoint(rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
    }
    p.dir().to_path_buf()
}

fn copy_process(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        } else if e.file_type().unwrap().is_dir() {
            // The journal.
            copy_process(&e.path(), &to.join(e.file_name()));
        }
    }
}

/// Restores `dir` and exercises the result; any panic propagates.
fn exercise(rt: &Runtime, dir: &Path) -> Outcome {
    let Ok((mut p, warnings)) = Process::restore(rt, dir) else {
        return Outcome::Refused;
    };
    let fell_back = !warnings.is_empty();
    if p.offer(Input::ConsoleLine("len".into())).is_err() {
        return Outcome::FailedCleanly;
    }
    let mut failed = false;
    loop {
        match p.step(rt) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(f) => {
                assert!(!f.message.is_empty());
                failed = true;
                break;
            }
        }
    }
    // A full image reads every page (the lazy fill's worst case).
    p.require_full();
    match p.checkpoint(rt) {
        Ok(_) => {
            if let Some(Err(_)) = p.wait_for_write() {
                failed = true;
            }
        }
        Err(_) => failed = true,
    }
    match (failed, fell_back) {
        (true, _) => Outcome::FailedCleanly,
        (false, true) => Outcome::FellBack,
        (false, false) => Outcome::Ran,
    }
}

#[test]
fn mutated_images_restore_or_fail_clearly() {
    let cases: Option<u64> = std::env::var("PHANTOM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    let budget: Option<Duration> = std::env::var("PHANTOM_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let only: Option<u64> = std::env::var("PHANTOM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok());
    let cases = match (only, budget) {
        (Some(_), _) => 1,
        (None, Some(_)) => u64::MAX,
        (None, None) => cases.unwrap_or(DEFAULT_CASES),
    };
    let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
    let work = data_dir();
    let original = seed_image(&rt, &work.path().join("seed"));
    let files = checkpoint_files(&original);
    let started = Instant::now();
    let mut outcomes: BTreeMap<Outcome, u64> = BTreeMap::new();
    let mut done = 0u64;
    while done < cases && budget.is_none_or(|b| started.elapsed() < b) {
        let seed = only.unwrap_or(done);
        let mut rng = Rng::new(seed);
        let dir = work.path().join(format!("case-{seed}")).join("kv");
        copy_process(&original, &dir);
        // Mostly the newest file (what a restore reads first), sometimes
        // one its chain depends on.
        let target = if rng.chance(70) {
            files.last().unwrap().clone()
        } else {
            rng.pick(&files).clone()
        };
        let packs = pack_files(&original);
        let mut did = Vec::new();
        let name = if !packs.is_empty() && rng.chance(25) {
            // Format 2: the page packs every checkpoint shares. A flipped
            // header or index byte makes the pack unreadable (its pages
            // missing); a flipped record byte fails that page's hash.
            let pack = rng.pick(&packs).clone();
            let name = pack.file_name().unwrap().to_owned();
            let mut bytes = std::fs::read(&pack).unwrap();
            let index = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
            for _ in 0..1 + rng.below(3) {
                // Half in the header or index, half anywhere.
                let i = if rng.chance(50) {
                    let meta = 64 + (bytes.len() - index);
                    let k = rng.below(meta as u64) as usize;
                    if k < 64 { k } else { index + k - 64 }
                } else {
                    rng.below(bytes.len() as u64) as usize
                };
                bytes[i] ^= 1 << rng.below(8);
                did.push(format!("pack byte {i} flipped"));
            }
            if rng.chance(20) {
                let cut = rng.below(bytes.len() as u64) as usize;
                bytes.truncate(cut);
                did.push(format!("pack cut to {cut} bytes"));
            }
            std::fs::write(dir.join(&name), bytes).unwrap();
            if rng.chance(25) {
                // Every pack's header damaged: no checkpoint has its pages.
                for other in &packs {
                    let path = dir.join(other.file_name().unwrap());
                    let mut b = std::fs::read(&path).unwrap();
                    let i = rng.below(64.min(b.len() as u64)) as usize;
                    b[i] ^= 1 << rng.below(8);
                    std::fs::write(&path, b).unwrap();
                }
                did.push("every pack's header damaged".into());
            }
            name
        } else {
            let name = target.file_name().unwrap().to_owned();
            let mut raw = RawImage::parse(&std::fs::read(&target).unwrap()).unwrap();
            for _ in 0..1 + rng.below(4) {
                did.push(mutate(&mut rng, &mut raw));
            }
            std::fs::write(dir.join(&name), raw.encode()).unwrap();
            name
        };
        let what = format!(
            "case {seed} ({}): {} (replay with PHANTOM_FUZZ_SEED={seed})",
            name.to_string_lossy(),
            did.join("; ")
        );
        let (tx, rx) = mpsc::channel();
        let worker = {
            let rt = rt.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = tx.send(exercise(&rt, &dir));
            })
        };
        let outcome = match rx.recv_timeout(CASE_TIMEOUT) {
            Ok(o) => o,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("hang: {what}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let why = worker.join().err().and_then(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                });
                panic!("panic {why:?}: {what}");
            }
        };
        worker.join().unwrap();
        *outcomes.entry(outcome).or_default() += 1;
        // The host binary on the same mutated directory, now and then.
        if seed.is_multiple_of(25) {
            let data = dir.parent().unwrap();
            let o = run_with_input(
                &[
                    "run",
                    "--data",
                    s(data),
                    "--until-idle",
                    // Bounded: a mutated timer table can keep a process
                    // from ever going idle, which is not a fault.
                    "--for",
                    "5",
                    "--call-timeout",
                    "5s",
                ],
                "len\n",
            );
            assert!(!host_panicked(&stderr(&o)), "{what}:\n{}", stderr(&o));
            assert!(o.status.code().is_some(), "{what}: killed by a signal");
        }
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
        done += 1;
    }
    eprintln!(
        "image fuzzer: {done} cases in {:.0?}: {outcomes:?}",
        started.elapsed()
    );
    assert!(done > 0);
    if only.is_none() && done >= 100 {
        // The mutations reach every stage: some are refused, some restore.
        assert!(outcomes.contains_key(&Outcome::Refused), "{outcomes:?}");
        assert!(outcomes.contains_key(&Outcome::Ran), "{outcomes:?}");
        assert!(outcomes.contains_key(&Outcome::FellBack), "{outcomes:?}");
    }
}
