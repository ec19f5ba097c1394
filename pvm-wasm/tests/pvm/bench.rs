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

/// The benchmark loops allocate two boxed ints per iteration and keep none:
/// after a full collection the live set is the same whether the loops ran a
/// thousand times or fifty thousand (a leak in the interpreter's allocation
/// path, or a root that keeps the loop's boxes, would grow it), and the
/// collection freed every box the loops made.
#[test]
fn bench_run_leaves_no_garbage_behind() {
    let live_after = |n: u32| {
        let (mut p, _) = run_bench(n);
        p.vm_mut().collect_garbage();
        let stats = p.vm().gc_stats();
        (stats.last_live, stats)
    };
    let (small, _) = live_after(1_000);
    let (large, stats) = live_after(50_000);
    assert_eq!(small, large, "the live set grew with the iterations");
    assert!(stats.freed >= 2 * 50_000 - 100, "{stats:?}");
}
