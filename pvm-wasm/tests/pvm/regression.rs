//! Spec §4.6: the compiled regression tests, method by method, with the
//! exact transcripts, plus the negative check with a patched constant.

use pvm::{SliceOutcome, VmConfig};

use crate::{BOOT, REGRESSION_TESTS, file, run, run_method};

const CLASS: &str = ".ru.dz.phantom.system.regression_tests";

#[test]
fn test_do_while_runs_silently() {
    assert_eq!(
        run_method(CLASS, REGRESSION_TESTS, 20),
        (SliceOutcome::Finished { exit_code: 0 }, String::new())
    );
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
    assert_eq!(
        out,
        "Checking arrays... Beeping: beep two! beep one! beep zero! \npassed\n"
    );
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
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("2+2==4 check");
    bytes[at + needle.len() - 1] = 5;
    (name, bytes)
}

#[test]
fn patched_constant_throws_unhandled() {
    let (o, out) = run(
        &["--class", CLASS, "--method", "18"],
        vec![patched()],
        VmConfig::default(),
    );
    assert_eq!(
        out,
        "Checking int math... Unhandled exception: int + math error\n"
    );
    assert_eq!(
        o,
        SliceOutcome::Failed {
            message: "Unhandled exception: int + math error".into()
        }
    );
}

#[test]
fn boot_runs_the_tests() {
    let files = vec![
        file(".ru.dz.phantom.system.boot", BOOT),
        file(CLASS, REGRESSION_TESTS),
    ];
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
    assert!(
        out.ends_with("Finished compiler regression tests\n"),
        "{out}"
    );
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

/// `PVM_DUMP_DIR=/tmp/x cargo test … dump_test_classes` writes the test
/// classes as `.pc` files, to run them on the reference prototype.
#[test]
fn dump_test_classes() {
    let Ok(dir) = std::env::var("PVM_DUMP_DIR") else {
        return;
    };
    for (name, bytes) in [
        file(".ru.dz.phantom.system.boot", BOOT),
        file(CLASS, REGRESSION_TESTS),
    ] {
        std::fs::write(std::path::Path::new(&dir).join(name), bytes).unwrap();
    }
    let (name, bytes) = patched();
    std::fs::write(
        std::path::Path::new(&dir).join(format!("patched.{name}")),
        bytes,
    )
    .unwrap();
}

const LOADER: &str = r#"class ".t.loader" fields 1 methods 17 base ".internal.object"
method "get_class" 8
    arg_count 1
    os_load8 0
    sconst_bin "[load "
    call_10 1
    os_drop
    os_load8 0
    os_get32 0
    call_10 1
    os_drop
    os_load8 0
    sconst_bin "]"
    call_10 1
    os_drop
    os_load8 0
    os_get32 0
    call_08 1
    ret
end
method "init" 16
    arg_count 1
    os_get32 0
    os_save8 0
    summon_null
    ret
end
"#;

const OTHER: &str = "class \".t.other\" fields 0 methods 17 base \".internal.object\"\n\
    method \"name\" 16\n    arg_count 0\n    sconst_bin \"other!\"\n    ret\nend\n";

fn loader_main(summon: &str) -> String {
    format!(
        r#"class ".t.main" fields 1 methods 9 base ".internal.object"
method "main" 8
    arg_count 1
    os_get32 0
    sconst_bin ".t.loader"
    call_08 1
    new
    os_dup
    os_get32 0
    call_10 1
    os_drop
    os_get32 0
    os_pull32 1
    call_11 1
    os_drop
    os_drop
    summon_by_name "{summon}"
    new
    call_10 0
    os_get32 0
    os_pull32 1
    call_10 1
    os_drop
    os_drop
    summon_by_name "{summon}"
    os_drop
    summon_null
    ret
end
signature "main" 8 returns "" args "boot" ""
"#
    )
}

/// Spec §4.4: after `boot.setClassLoader`, `summon_by_name` runs the
/// loader's method 8 on a nested interpreter, and caches the result.
#[test]
fn summon_by_name_goes_through_the_registered_loader_once() {
    let files = vec![
        file(".t.main", &loader_main(".t.other")),
        file(".t.loader", LOADER),
        file(".t.other", OTHER),
    ];
    let (o, out) = run(
        &["--class", ".t.main", "--method", "8"],
        files,
        VmConfig::default(),
    );
    assert_eq!(out, "[load .t.other]other!");
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

/// Exceptions do not cross nested runs: the loader's failure is fatal.
#[test]
fn a_throw_inside_a_nested_run_is_fatal() {
    let files = vec![
        file(".t.main", &loader_main(".t.missing")),
        file(".t.loader", LOADER),
    ];
    let (o, out) = run(
        &["--class", ".t.main", "--method", "8"],
        files,
        VmConfig::default(),
    );
    assert!(out.starts_with("[load .t.missing]pvm panic: Unhandled exception in nested run: .t.missing - class load error"), "{out}");
    assert!(matches!(o, SliceOutcome::Failed { .. }));
}
