//! Spec §4.6: the compiled regression tests, method by method, with the
//! exact transcripts, plus the negative check with a patched constant.

use pvm::{SliceOutcome, VmConfig};

use crate::{BOOT, REGRESSION_TESTS, file, run, run_method};

const CLASS: &str = ".ru.dz.phantom.system.regression_tests";

#[test]
fn test_do_while_runs_silently() {
    assert_eq!(run_method(CLASS, REGRESSION_TESTS, 20), (SliceOutcome::Finished { exit_code: 0 }, String::new()));
}

#[test]
fn flow_test() {
    let (o, out) = run_method(CLASS, REGRESSION_TESTS, 21);
    assert_eq!(out, "Checking flow control operators... passed\n");
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

#[test]
fn math_test() {
    let (o, out) = run_method(CLASS, REGRESSION_TESTS, 18);
    assert_eq!(out, "Checking int math... passed\n");
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

#[test]
fn array_test() {
    let (o, out) = run_method(CLASS, REGRESSION_TESTS, 17);
    assert_eq!(out, "Checking arrays... Beeping: beep two! beep one! beep zero! \npassed\n");
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

#[test]
fn run_prints_the_exact_transcript() {
    let (o, out) = run_method(CLASS, REGRESSION_TESTS, 19);
    assert_eq!(
        out,
        "Phantom language regression tests are running\n\
         Checking flow control operators... passed\n\
         Checking int math... passed\n\
         Checking arrays... Beeping: beep two! beep one! beep zero! \n\
         passed\n"
    );
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

/// The regression class with the `4` of `2+2==4` patched to `5`.
fn patched() -> (String, Vec<u8>) {
    let (name, mut bytes) = file(CLASS, REGRESSION_TESTS);
    let needle = [0x23, 0, 0, 0, 2, 0x23, 0, 0, 0, 2, 0x42, 0x23, 0, 0, 0, 4];
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("2+2==4 check");
    bytes[at + needle.len() - 1] = 5;
    (name, bytes)
}

#[test]
fn patched_constant_throws_unhandled() {
    let (o, out) = run(&["--class", CLASS, "--method", "18"], vec![patched()], VmConfig::default());
    assert_eq!(out, "Checking int math... Unhandled exception: int + math error\n");
    assert_eq!(o, SliceOutcome::Failed { message: "Unhandled exception: int + math error".into() });
}

#[test]
fn boot_runs_the_tests() {
    let files = vec![file(".ru.dz.phantom.system.boot", BOOT), file(CLASS, REGRESSION_TESTS)];
    let (o, out) = run(&[], files, VmConfig::default());
    assert_eq!(
        out,
        "Phantom System Envirinment Setup is running\n\
         Phantom language regression tests are running\n\
         Checking flow control operators... passed\n\
         Checking int math... passed\n\
         Checking arrays... Beeping: beep two! beep one! beep zero! \n\
         passed\n\
         Finished compiler regression tests\n"
    );
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

#[test]
fn boot_catches_the_patched_failure() {
    let files = vec![file(".ru.dz.phantom.system.boot", BOOT), patched()];
    let (o, out) = run(&[], files, VmConfig::default());
    assert!(
        out.ends_with("Checking flow control operators... passed\nChecking int math... \r\nException: 'int + math error'"),
        "{out:?}"
    );
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

#[test]
fn bulk_container_and_case_insensitive_lookup() {
    let (_, boot) = file(".ru.dz.phantom.system.boot", BOOT);
    let (_, tests) = file(CLASS, REGRESSION_TESTS);
    let bulk = pvm::classfile::write_bulk(&[
        ("ru.dz.phantom.system.boot", &boot),
        ("RU.DZ.Phantom.System.Regression_Tests", &tests),
    ]);
    let (o, out) = run(&[], vec![("classes".into(), bulk)], VmConfig::default());
    assert!(out.ends_with("Finished compiler regression tests\n"), "{out}");
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}
