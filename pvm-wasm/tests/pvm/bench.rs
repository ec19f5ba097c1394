//! The benchmark class runs, and the instruction counter agrees with it.

use pvm::bench::{BENCH_CLASS, RUN_INSNS_PER_ITERATION, SPIN_INSNS_PER_ITERATION, bench_files};
use pvm::{PvmProcess, SliceOutcome, VmConfig};

fn expected(n: u32) -> (i32, i32) {
    let (mut acc, mut i) = (0i32, n as i32);
    while i != 0 {
        acc = (acc.wrapping_add(i.wrapping_mul(3)) ^ 5).wrapping_add(1);
        i -= 1;
    }
    let (mut s, mut i) = (0i32, n as i32);
    while i != 0 {
        s = s.wrapping_add(i) ^ 7;
        i -= 1;
    }
    (acc, s)
}

fn run_bench(n: u32) -> (PvmProcess, String) {
    let args: Vec<String> = ["--class", BENCH_CLASS, "--method", "8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut p = PvmProcess::init(&args, bench_files(n), VmConfig::default()).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        p.run_to_end(1_000_000, 1_000_000, &mut out),
        SliceOutcome::Finished { exit_code: 0 }
    );
    (p, String::from_utf8(out).unwrap())
}

#[test]
fn bench_class_computes_and_counts() {
    let n = 50_000;
    let (p, out) = run_bench(n);
    let (r, s) = expected(n);
    assert_eq!(out, format!("bench run={r} spin={s}\n"));
    let loops = u64::from(n) * (RUN_INSNS_PER_ITERATION + SPIN_INSNS_PER_ITERATION);
    let total = p.instructions_executed();
    assert!(total >= loops && total < loops + 500, "{total} vs {loops}");
    assert!(p.vm().gc_stats().allocated >= u64::from(n) * 2);
}

/// `PVM_BENCH=1 cargo test -p pvm-wasm --release bench_speed -- --nocapture`
#[test]
fn bench_speed() {
    let n: u32 = std::env::var("PVM_BENCH")
        .ok()
        .map_or(200_000, |_| 3_000_000);
    let start = std::time::Instant::now();
    let (mut p, _) = run_bench(n);
    let secs = start.elapsed().as_secs_f64();
    let insns = p.instructions_executed();
    let gc_start = std::time::Instant::now();
    p.vm_mut().collect_garbage();
    let gc = gc_start.elapsed();
    let stats = p.vm().gc_stats();
    eprintln!(
        "bench: {insns} bytecodes in {secs:.3}s = {:.1} M bytecodes/s; gc: {} collections, last live {}, max pause work {} slots, full collect {:?}",
        insns as f64 / secs / 1e6,
        stats.collections,
        stats.last_live,
        stats.max_pause_work,
        gc
    );
}
