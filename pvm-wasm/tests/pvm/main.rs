//! Integration tests of the PVM library, one module per feature.
#![forbid(unsafe_code)]

mod bench;
mod connections;
mod fuzz;
mod natives_ext;
mod opcodes;
mod prefix_slices;
mod regression;
mod robustness;
mod roundtrip;
mod screen;
mod threads;
mod windows;

use pvm::{PvmProcess, SliceOutcome, VmConfig};

/// The regression-tests class of spec §4.6, rebuilt method by method.
pub const REGRESSION_TESTS: &str = include_str!("classes/regression_tests.pasm");
/// A small boot class that runs the regression tests under a catcher.
pub const BOOT: &str = include_str!("classes/boot.pasm");

/// Assembles `text` into a class directory entry named after `class`.
pub fn file(class: &str, text: &str) -> (String, Vec<u8>) {
    let bytes = pvm::asm::assemble(text).unwrap_or_else(|e| panic!("{class}: {e}"));
    (format!("{}.pc", class.trim_start_matches('.')), bytes)
}

/// Starts `class.method` of a single class file; `None` if it does not load.
pub fn start_method(class: &str, text: &str, method: u32, config: VmConfig) -> Option<PvmProcess> {
    let m = method.to_string();
    let args: Vec<String> = ["--class", class, "--method", &m]
        .iter()
        .map(|s| s.to_string())
        .collect();
    PvmProcess::init(&args, vec![file(class, text)], config).ok()
}

/// Runs a process to the end with a fake clock; returns the outcome and output.
pub fn run(
    args: &[&str],
    files: Vec<(String, Vec<u8>)>,
    config: VmConfig,
) -> (SliceOutcome, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut p = PvmProcess::init(&args, files, config).expect("init");
    let mut out = Vec::new();
    let outcome = p.run_to_end(100_000, 100_000, &mut out);
    (outcome, String::from_utf8_lossy(&out).into_owned())
}

/// Runs `class.method` of a single class file.
pub fn run_method(class: &str, text: &str, method: u32) -> (SliceOutcome, String) {
    let m = method.to_string();
    run(
        &["--class", class, "--method", &m],
        vec![file(class, text)],
        VmConfig::default(),
    )
}

/// Prints a class's disassembly as a debugging aid when a test fails.
pub fn class_text(bytes: &[u8]) -> String {
    pvm::disasm::disassemble(bytes).unwrap_or_else(|e| e.to_string())
}
