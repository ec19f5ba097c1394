//! The dispatch loop charges its budget a window at a time (from where it
//! enters up to the next jump or exit, `Code::window`) and counts one by
//! one only at the end of a slice. Slices of one instruction are counted
//! entirely one by one, so comparing them with big slices checks that the
//! windows count exactly: one instruction too many or too few moves the IP.

use pvm::{PvmProcess, SliceOutcome, VmConfig};

use crate::fuzz::{Rng, cases, random_well_formed_class};
use crate::start_method;

fn start(class: &str, text: &str, method: u32) -> Option<PvmProcess> {
    let config = VmConfig {
        max_call_depth: 64,
        ..VmConfig::default()
    };
    start_method(class, text, method, config)
}

/// Runs `slices` slices of `budget` instructions, or until the process is
/// no longer busy; returns the last outcome and the output.
fn run_slices(p: &mut PvmProcess, budget: u64, slices: u64) -> (SliceOutcome, Vec<u8>) {
    let mut out = Vec::new();
    let mut outcome = SliceOutcome::Busy;
    for _ in 0..slices {
        outcome = p.run_slice(0, budget, &mut out);
        if outcome != SliceOutcome::Busy {
            break;
        }
    }
    (outcome, out)
}

/// Every thread's frames: method, IP, integer stack, object stack depth and
/// catchers (object references are left out: collections run at slice
/// ends, so they number objects differently in differently cut runs).
fn frames(p: &PvmProcess) -> String {
    let mut s = String::new();
    for t in &p.vm().threads {
        s += &format!("thread {}:", t.id);
        for f in &t.frames {
            s += &format!(
                " [{} @{} is {:?} os {} es {}]",
                f.ordinal,
                f.ip,
                f.is.as_slice(),
                f.os.len(),
                f.es.len()
            );
        }
        s += "\n";
    }
    s
}

/// Runs `text` (method `method` of `class`) for `total` instructions in
/// slices of `big` and in slices of 1, and requires the same state.
fn assert_same_as_stepwise(class: &str, text: &str, method: u32, big: u64, total: u64) {
    let (Some(mut a), Some(mut b)) = (start(class, text, method), start(class, text, method))
    else {
        return;
    };
    let (outcome_a, out_a) = run_slices(&mut a, big, total / big);
    let (outcome_b, out_b) = run_slices(&mut b, 1, total);
    let busy = outcome_a == SliceOutcome::Busy && outcome_b == SliceOutcome::Busy;
    // A nested run (printing an object) is not cut by the budget, so busy
    // runs are comparable only when both ran exactly `total`.
    if busy && (a.instructions_executed() != total || b.instructions_executed() != total) {
        return;
    }
    assert_eq!(
        (
            &outcome_a,
            a.instructions_executed(),
            String::from_utf8_lossy(&out_a),
            frames(&a)
        ),
        (
            &outcome_b,
            b.instructions_executed(),
            String::from_utf8_lossy(&out_b),
            frames(&b)
        ),
        "slices of {big} (left) and of 1 (right) differ after {total} instructions\n{text}"
    );
}

/// Random well-formed code (jumps, calls, faults, prefixes, natives), cut
/// into slices of several sizes.
#[test]
fn windows_count_random_code_exactly() {
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    for _ in 0..cases() / 5 {
        let text = random_well_formed_class(&mut rng);
        let big = [7, 64, 1000][rng.below(3) as usize];
        assert_same_as_stepwise(".t.f", &text, 16, big, big * 3);
    }
}

/// A loop whose windows are 1 to 9 instructions long, stopped at every
/// instruction count from 1 to 200: each stop lands at a different place
/// in a window.
#[test]
fn windows_count_a_loop_exactly_at_every_stop() {
    let text = "class \".t.w\" fields 1 methods 17 base \".internal.object\"\n\
        method \"m\" 16\n\
            iconst_32bit 1000\n\
        Lloop:\n\
            is_dup\n\
            jz Ldone\n\
            iconst_1\n    iconst_1\n    isum\n    is_drop\n\
            iconst_32bit 3\n    iconst_32bit 4\n    imul\n    is_drop\n\
            iconst_1\n    isublu\n\
            jmp Lloop\n\
        Ldone:\n\
            summon_null\n    ret\nend\n";
    for total in 1..=200 {
        assert_same_as_stepwise(".t.w", text, 16, total, total);
    }
}

/// Windows longer than 255 instructions do not fit an entry: that code is
/// counted one by one, and must still stop exactly.
#[test]
fn windows_too_long_to_measure_still_count_exactly() {
    for n in [126, 127, 128, 200] {
        let mut text =
            "class \".t.l\" fields 1 methods 17 base \".internal.object\"\nmethod \"m\" 16\n"
                .to_string();
        // 2 instructions a pair, then a loop back: a window of 2n + 1.
        text += "Ltop:\n";
        for _ in 0..n {
            text += "    iconst_1\n    is_drop\n";
        }
        text += "    jmp Ltop\nend\n";
        for total in [1, 2, 254, 255, 256, 257, 1000, 1001] {
            assert_same_as_stepwise(".t.l", &text, 16, total, total * 2);
        }
    }
}
