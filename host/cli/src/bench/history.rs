//! `phantom bench history`: the bytes 100 kept checkpoints cost when 1% of
//! the pages change between them, format 2 (content-addressed pages)
//! against format 1 chains (a FULL image every 64, deltas between) fed the
//! same checkpoints in the same run; and the time each takes to write.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use phantom_snapshots::{
    CheckpointStore, KeepPolicy, MemoryDelta, NewCheckpoint, PAGE_SIZE, PageRun,
};

use super::{median, tempdir, us};

/// Arguments of `phantom bench history`.
#[derive(Args, Debug)]
pub struct HistoryBenchArgs {
    /// Memory size in MiB (pseudo-random bytes: they do not compress).
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// Checkpoints kept.
    #[arg(long, default_value_t = 100)]
    pub checkpoints: u64,
    /// Percent of the pages that change between checkpoints.
    #[arg(long, default_value_t = 1.0)]
    pub change_percent: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}

/// Runs the benchmark and prints JSON.
pub fn run(args: &HistoryBenchArgs) -> anyhow::Result<serde_json::Value> {
    let root = tempdir()?;
    let pages = (args.memory_mib * (1 << 20) / PAGE_SIZE) as u64;
    let changed_per = ((pages as f64 * args.change_percent / 100.0).round() as u64).max(1);
    let memory = tempfile_in(&root)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut page = vec![0u8; PAGE_SIZE];
    for p in 0..pages {
        rng.fill(&mut page);
        memory.write_all_at(&page, p * PAGE_SIZE as u64)?;
    }
    let v2 = CheckpointStore::create(&root.join("v2"))?;
    let v1 = CheckpointStore::create(&root.join("v1"))?;
    v1.set_write_version(1);
    let keep_all = KeepPolicy {
        last: args.checkpoints as u32 + 1,
        hourly: 0,
        daily: 0,
    };
    v2.set_policy(keep_all);
    let (mut t2, mut t1) = (Vec::new(), Vec::new());
    let mut full_image_bytes = 0;
    let mut changed_pages = 0u64;
    for id in 1..=args.checkpoints {
        let dirty = if id == 1 {
            vec![PageRun {
                first: 0,
                count: pages,
            }]
        } else {
            let mut runs = Vec::with_capacity(changed_per as usize);
            for _ in 0..changed_per {
                let p = rng.next() % pages;
                rng.fill(&mut page);
                memory.write_all_at(&page, p * PAGE_SIZE as u64)?;
                runs.push(PageRun { first: p, count: 1 });
            }
            changed_pages += changed_per;
            runs
        };
        let request = |full: bool| -> anyhow::Result<NewCheckpoint> {
            Ok(NewCheckpoint {
                id,
                parent: (!full).then(|| id - 1),
                created_unix_ns: 0,
                pause_us: 0,
                sections: vec![("host".into(), b"{}".to_vec())],
                memories: vec![MemoryDelta {
                    index: 0,
                    size_bytes: pages * PAGE_SIZE as u64,
                    dirty: if full {
                        vec![PageRun {
                            first: 0,
                            count: pages,
                        }]
                    } else {
                        dirty.clone()
                    },
                    source: memory.try_clone()?,
                }],
            })
        };
        let t = Instant::now();
        v2.write(&request(id == 1)?)?;
        t2.push(t.elapsed());
        // Today's chains: a FULL image every 64 checkpoints, as the host
        // writes them.
        let full = (id - 1) % 64 == 0;
        let t = Instant::now();
        let info = v1.write(&request(full)?)?;
        t1.push(t.elapsed());
        if id == 1 {
            full_image_bytes = info.bytes_written;
        }
    }
    anyhow::ensure!(
        v2.ids()?.len() as u64 == args.checkpoints,
        "format 2 kept {} checkpoints",
        v2.ids()?.len()
    );
    let v2_bytes = dir_bytes(&root.join("v2"))?;
    let v1_bytes = dir_bytes(&root.join("v1"))?;
    let v1_kept = v1.ids()?.len();
    let bound = full_image_bytes + changed_pages * PAGE_SIZE as u64;
    let med = |v: Vec<Duration>| us(median(v));
    let out = serde_json::json!({
        "benchmark": "history",
        "memory_mib": args.memory_mib,
        "checkpoints": args.checkpoints,
        "pages_changed_between": changed_per,
        "one_full_image_bytes": full_image_bytes,
        "changed_page_bytes": changed_pages * PAGE_SIZE as u64,
        "format2_bytes": v2_bytes,
        "format2_over_image_plus_changes": v2_bytes as f64 / bound as f64,
        "format2_target": 2.0,
        "format1_chains_bytes": v1_bytes,
        "format1_checkpoints_kept": v1_kept,
        "format1_over_image_plus_changes": v1_bytes as f64 / bound as f64,
        "format2_over_format1": v2_bytes as f64 / v1_bytes as f64,
        "format2_delta_write_median_us": med(t2[1..].to_vec()),
        "format1_delta_write_median_us": med(t1[1..].to_vec()),
        "note": "bytes on disk of all kept checkpoints; format 1 keeps every checkpoint only while no third FULL image is written (its retention keeps two chains), so beyond 128 checkpoints it could not keep them at all",
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    let _ = std::fs::remove_dir_all(&root);
    Ok(out)
}

fn tempfile_in(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("memory");
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}
