//! Native PVM speed: `cargo run -p pvm-wasm --release --example bench [N]`.
//! Runs the benchmark class's call/field/allocation loop and its pure
//! integer loop separately and prints bytecodes per second and GC stats.
#![forbid(unsafe_code)]

use pvm::bench::{BENCH_CLASS, bench_class_text_with};
use pvm::{PvmProcess, VmConfig};

fn measure(label: &str, run_n: u32, spin_n: u32) {
    let bytes = pvm::asm::assemble(&bench_class_text_with(run_n, spin_n)).expect("bench class");
    let files = vec![(format!("{}.pc", &BENCH_CLASS[1..]), bytes)];
    let args: Vec<String> = ["--class", BENCH_CLASS, "--method", "8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut p = PvmProcess::init(&args, files, VmConfig::default()).expect("init");
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    let outcome = p.run_to_end(10_000_000, 100_000, &mut out);
    let secs = start.elapsed().as_secs_f64();
    let n = p.instructions_executed();
    let gc = p.gc_stats();
    let pause = std::time::Instant::now();
    p.vm_mut().collect_garbage();
    println!(
        "{label}: {n} bytecodes in {secs:.3} s = {:.1} M bytecodes/s ({outcome:?}); \
         gc: {} collections, {} allocated, max pause work {} slots, one full collection {:?}",
        n as f64 / secs / 1e6,
        gc.collections,
        gc.allocated,
        gc.max_pause_work,
        pause.elapsed()
    );
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000u32);
    measure("integer loop      ", 0, n);
    measure("calls+fields+alloc", n, 0);
    measure("mixed             ", n, n);
}
