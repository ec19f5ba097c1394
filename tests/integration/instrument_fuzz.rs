//! The instrumentation (globals accessors, WASI handles as ids) reads
//! untrusted component bytes at spawn: a real component instruments into a
//! valid one, and mutated components give an error or a valid component,
//! never a panic.

use super::common::*;

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn valid(bytes: &[u8]) -> Result<(), String> {
    wasmparser::Validator::new()
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn instrumentation_never_panics_and_keeps_components_valid() {
    let dir = data_dir();
    let c = super::c_guests::build_c_example("c-counter", dir.path());
    // A composition: WASI handles and globals in nested components.
    let composed = super::interop::rust_app_with_rust_library(dir.path());
    let cases: usize = std::env::var("PHANTOM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut seed = 0x1234_5678_9abc_def1u64;
    for path in [
        phantom_tests::WASI_STD.into(),
        phantom_tests::WASI_HANDLES.into(),
        phantom_tests::COUNTER.into(),
        c,
        composed,
    ] {
        let original = std::fs::read(&path).unwrap();
        let out = phantom_runtime::inspect_and_instrument(&original)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .expect("every guest has globals or WASI to instrument");
        valid(&out).unwrap_or_else(|e| panic!("{}: instrumented is invalid: {e}", path.display()));
        let mut instrumented_ok = 0;
        for case in 0..cases {
            let mut bytes = original.clone();
            match next(&mut seed) % 3 {
                0 => {
                    for _ in 0..1 + next(&mut seed) % 4 {
                        let i = (next(&mut seed) as usize) % bytes.len();
                        bytes[i] ^= 1 << (next(&mut seed) % 8);
                    }
                }
                1 => bytes.truncate((next(&mut seed) as usize) % bytes.len()),
                _ => {
                    let i = (next(&mut seed) as usize) % bytes.len();
                    bytes.insert(i, next(&mut seed) as u8);
                }
            }
            let result =
                std::panic::catch_unwind(|| phantom_runtime::inspect_and_instrument(&bytes));
            let result = result.unwrap_or_else(|_| {
                let file = dir.path().join(format!("panic-{case}.wasm"));
                std::fs::write(&file, &bytes).unwrap();
                if let Ok(keep) = std::env::var("PHANTOM_FUZZ_KEEP") {
                    std::fs::copy(&file, keep).unwrap();
                }
                panic!(
                    "{}: case {case} panicked (kept in {})",
                    path.display(),
                    file.display()
                )
            });
            // A mutation the validator accepts must instrument into a valid
            // component too (or be refused with an error).
            if let Ok(Some(out)) = result
                && valid(&bytes).is_ok()
            {
                valid(&out).unwrap_or_else(|e| {
                    let file = dir.path().join(format!("invalid-{case}.wasm"));
                    std::fs::write(&file, &bytes).unwrap();
                    let kept = std::env::var("PHANTOM_FUZZ_KEEP").map(std::path::PathBuf::from);
                    if let Ok(keep) = kept {
                        std::fs::copy(&file, keep).unwrap();
                    }
                    panic!(
                        "{}: case {case}: valid input, invalid output: {e} (input kept in {})",
                        path.display(),
                        file.display()
                    )
                });
                instrumented_ok += 1;
            }
        }
        eprintln!(
            "{}: {cases} cases, {instrumented_ok} valid mutants instrumented",
            path.display()
        );
    }
}
