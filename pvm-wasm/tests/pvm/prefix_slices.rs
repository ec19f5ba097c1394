//! A type prefix (`prefix_long`, `prefix_float`, `prefix_double`) and the
//! opcode it prefixes always run in the same slice and the same quantum: a
//! budget that runs out right after the prefix byte does not lose it.
//!
//! Regression: the interpreter used to keep the pending prefix in a local of
//! its dispatch loop. When the budget ran out right after a prefix byte the
//! loop returned, the local was dropped, and the next slice (or quantum) ran
//! the following opcode *plain*: `prefix_long; isum` became an int `isum` of
//! the two low cells, `prefix_long; iconst_32bit` pushed one cell instead of
//! two, and so on, leaving the integer stack misaligned.

use pvm::{PvmProcess, SliceOutcome, VmConfig};

use crate::file;

const CLASS: &str = ".t.prefix";

/// The straight-line start of `main`, one instruction per entry and no call
/// before the last entry, so entry `i` is the `i`-th instruction the thread
/// runs. Each block leaves one number object on the object stack (slots 1..);
/// the integer stack is empty after each block.
const BODY: &[&str] = &[
    "is_drop", // the argument count
    // long: (2_000_000_000 + 2_000_000_000) * 3 - 1 = 11_999_999_999
    "prefix_long",
    "iconst_32bit 2000000000",
    "prefix_long",
    "iconst_32bit 2000000000",
    "prefix_long",
    "isum",
    "prefix_long",
    "iconst_32bit 3",
    "prefix_long",
    "imul",
    "prefix_long",
    "iconst_1",
    "prefix_long",
    "isublu",
    "prefix_long",
    "i2o",
    // long shift: 3 << 40 = 3_298_534_883_328
    "iconst_32bit 40",
    "iconst_64bit 3",
    "prefix_long",
    "ishl",
    "prefix_long",
    "i2o",
    // long compare: 2^32 > 1
    "iconst_64bit 4294967296",
    "prefix_long",
    "iconst_1",
    "prefix_long",
    "igt",
    "i2o",
    // double: 7.0 + 7.0
    "iconst_32bit 7",
    "prefix_double",
    "fromi",
    "prefix_double",
    "is_dup",
    "prefix_double",
    "isum",
    "prefix_double",
    "i2o",
    // float: 1.0 / 4.0
    "iconst_1",
    "prefix_float",
    "fromi",
    "iconst_32bit 4",
    "prefix_float",
    "fromi",
    "prefix_float",
    "idivlu",
    "prefix_float",
    "i2o",
    // long → int: (2^32 + 5) as i32 = 5, through a long object
    "iconst_64bit 4294967301",
    "prefix_long",
    "i2o",
    "prefix_long",
    "o2i",
    "froml",
    "i2o",
];

/// Number objects the blocks of [`BODY`] leave at object-stack slots 1..=N.
const VALUES: usize = 6;

/// What `main` prints when every prefix is honoured.
const EXPECTED: &str = "11999999999 3298534883328 1 14.000000 0.250000 5 ";

/// The class: `body` followed by code printing the values, each then a space.
fn class(body: &[&str]) -> String {
    let mut t = format!(
        "class \"{CLASS}\" fields 1 methods 9 base \".internal.object\"\nmethod \"main\" 8\n"
    );
    for insn in body {
        t += &format!("    {insn}\n");
    }
    for slot in 1..=VALUES {
        t += &format!("    os_get32 0\n    os_get32 {slot}\n    call_10 1\n    os_drop\n");
        t += "    os_get32 0\n    sconst_bin \" \"\n    call_10 1\n    os_drop\n";
    }
    t += "    summon_null\n    ret\nend\nsignature \"main\" 8 returns \"\" args \"boot\" \"\"\n";
    t
}

/// Runs `main` of `body`'s class to the end in slices of `budget`
/// instructions with the given quantum; returns the outcome and the output.
/// Checks that no slice of the body runs more than its budget, but for a
/// prefixed opcode that ends it (printing a number runs its toString on a
/// nested run, which the budget does not cut).
fn run_sliced(body: &[&str], budget: u64, quantum: u64) -> (SliceOutcome, String) {
    let args: Vec<String> = ["--class", CLASS, "--method", "8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let config = VmConfig {
        quantum,
        ..VmConfig::default()
    };
    let mut p = PvmProcess::init(&args, vec![file(CLASS, &class(body))], config).expect("init");
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let before = p.instructions_executed();
        let printed = !out.is_empty();
        let outcome = p.run_slice(0, budget, &mut out);
        let ran = p.instructions_executed() - before;
        if !printed && out.is_empty() {
            // One more when a prefix ends the slice: its opcode runs, and
            // counts, in the same slice.
            assert!(ran <= budget + 1, "a slice of budget {budget} ran {ran}");
        }
        if outcome != SliceOutcome::Busy {
            return (outcome, String::from_utf8_lossy(&out).into_owned());
        }
    }
    panic!("budget {budget}, quantum {quantum}: not finished after 100000 slices");
}

fn assert_expected(budget: u64, quantum: u64) {
    let (outcome, out) = run_sliced(BODY, budget, quantum);
    assert_eq!(
        (outcome, out.as_str()),
        (SliceOutcome::Finished { exit_code: 0 }, EXPECTED),
        "budget {budget}, quantum {quantum}\n{}",
        class(BODY)
    );
}

/// Slices of 1, 2 and 3 instructions put a slice boundary right after every
/// prefix byte (budget 1) or after every second/third instruction, which in
/// [`BODY`] falls right after several prefix bytes (see the last test); the
/// output must match a run in one big slice.
#[test]
fn a_slice_boundary_after_a_prefix_does_not_lose_it() {
    let (outcome, reference) = run_sliced(BODY, 1_000_000, 10_000);
    assert_eq!(outcome, SliceOutcome::Finished { exit_code: 0 });
    assert_eq!(reference, EXPECTED);
    for budget in [1, 2, 3] {
        assert_expected(budget, 10_000);
    }
}

/// The same with big slices cut into quanta of 1, 2 and 3 instructions.
#[test]
fn a_quantum_boundary_after_a_prefix_does_not_lose_it() {
    for quantum in [1, 2, 3] {
        assert_expected(1_000_000, quantum);
    }
}

/// The tests above can fail. The old interpreter, run in slices or quanta
/// of `b` instructions, ended one after instruction `i` of [`BODY`] whenever
/// `i % b == b - 1`; a prefix byte there was counted, then forgotten, and the
/// opcode after it ran plain in the next slice. Running [`BODY`] in one slice
/// with each such prefix replaced by `nop` does exactly that, and prints what
/// the old interpreter printed (checked against it, as of the parent of
/// commit 320c116, for every budget and quantum above). With `b = 1` every
/// prefix is lost and everything is int arithmetic on single cells: the first
/// block computes (2e9 + 2e9) * 3 - 1 in 32 bits, which wraps to -884_901_889;
/// the shift shifts the low cell 3 by the high cell 0; the compare finds the
/// low cell 0 of 2^32 not greater than 1; the double and float blocks give
/// 7 + 7 = 14 and 1 / 4 = 0. Budgets 2 and 3 lose some prefixes and not
/// others, which misaligns the integer stack differently.
#[test]
fn losing_the_prefixes_at_slice_boundaries_changes_the_output() {
    let old = [
        (1, "-884901889 3 0 14 0 5 "),
        (2, "-884901889 3 1 14.000000 0.000000 5 "),
        (
            3,
            "-7323059700585415680 3298534883328 0 0.000000 0.000000 5 ",
        ),
    ];
    for (budget, printed) in old {
        let lost: Vec<&str> = BODY
            .iter()
            .enumerate()
            .map(|(i, &insn)| {
                let at_boundary = i as u64 % budget == budget - 1;
                if at_boundary && insn.starts_with("prefix_") {
                    "nop"
                } else {
                    insn
                }
            })
            .collect();
        assert_eq!(
            run_sliced(&lost, 1_000_000, 10_000),
            (SliceOutcome::Finished { exit_code: 0 }, printed.to_string()),
            "budget {budget}"
        );
        assert_ne!(printed, EXPECTED);
    }
}
