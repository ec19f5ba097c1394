//! Bad programs and bad files fail that process with a clear message,
//! never a Rust panic.

use pvm::{PvmProcess, SliceOutcome, VmConfig};

use crate::{file, run, run_method};

fn one_method(body: &str) -> String {
    format!(
        "class \".t.bad\" fields 1 methods 17 base \".internal.object\"\nmethod \"m\" 16\n{body}end\n"
    )
}

fn failed(o: &SliceOutcome) -> &str {
    match o {
        SliceOutcome::Failed { message } => message,
        other => panic!("expected failure, got {other:?}"),
    }
}

#[test]
fn runaway_recursion_hits_the_depth_limit() {
    let text = one_method("    summon_this\n    call_10 0\n    ret\n");
    let config = VmConfig {
        max_call_depth: 100,
        ..VmConfig::default()
    };
    let (o, out) = run(
        &["--class", ".t.bad", "--method", "16"],
        vec![file(".t.bad", &text)],
        config,
    );
    assert!(
        failed(&o).starts_with("call depth limit 100 exceeded calling .t.bad.16"),
        "{o:?}"
    );
    assert!(out.starts_with("pvm panic: call depth limit"));
}

#[test]
fn dynamic_invoke_init_recursion_hits_the_depth_limit() {
    // The Soot-translated classes' `<init>` calls `<init>` on itself (spec §4.8).
    let text = "class \".t.bad\" fields 0 methods 17 base \".internal.object\"\nmethod \"<init>\" 16\n    \
                summon_this\n    sconst_bin \"<init>\"\n    iconst_0\n    dynamic_invoke\n    ret\nend\n";
    let (o, _) = run_method(".t.bad", text, 16);
    assert!(failed(&o).contains("call depth limit 4096"), "{o:?}");
}

#[test]
fn unknown_opcode_is_an_error() {
    let (o, _) = run_method(".t.bad", &one_method("    nop\n    raw \"\\x9f\"\n"), 16);
    assert!(failed(&o).starts_with("unknown opcode 0x9F at 1"), "{o:?}");
}

#[test]
fn running_off_the_end_of_the_code_is_an_error() {
    let (o, _) = run_method(".t.bad", &one_method("    nop\n"), 16);
    assert!(failed(&o).starts_with("IP 1 is outside the code"), "{o:?}");
}

#[test]
fn bad_method_ordinals_are_errors() {
    let (o, _) = run_method(
        ".t.bad",
        &one_method("    summon_this\n    call_1f 0\n    ret\n"),
        16,
    );
    assert!(
        failed(&o).starts_with("method index 31 is out of bounds in .t.bad"),
        "{o:?}"
    );
    let (o, _) = run_method(
        ".t.bad",
        &one_method("    summon_this\n    short_call_3\n    ret\n    sys 3\n"),
        16,
    );
    // Ordinal 3 is the inherited stub `sys 3; ret`: only ordinal 0 may
    // fall through from a user class to a native (spec §2.4).
    assert!(
        failed(&o).starts_with("find_syscall: not internal class in SYS > 0 (in .t.bad.3"),
        "{o:?}"
    );
    let (o, _) = run_method(".t.bad", &one_method("    sys 5\n"), 16);
    assert!(
        failed(&o).starts_with("find_syscall: not internal class in SYS > 0"),
        "{o:?}"
    );
    let args: Vec<String> = ["--class", ".t.bad", "--method", "99"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let e = PvmProcess::init(
        &args,
        vec![file(".t.bad", &one_method("    ret\n"))],
        VmConfig::default(),
    )
    .unwrap_err();
    assert!(e.contains("method index 99 is out of bounds"), "{e}");
}

#[test]
fn invalid_syscall_on_an_int_throws() {
    // Java-translated arrays are ints (spec §4.8): set/get throw.
    let body = "    summon_int_class\n    new\n    summon_null\n    iconst_0\n    i2o\n    call_0b 2\n    ret\n";
    let (o, out) = run_method(".t.bad", &one_method(body), 16);
    assert_eq!(
        o,
        SliceOutcome::Failed {
            message: "Unhandled exception: invalid syscall called".into()
        }
    );
    assert_eq!(out, "Unhandled exception: invalid syscall called\n");
}

#[test]
fn stack_underflow_and_bad_slots_are_errors() {
    for (body, msg) in [
        ("    os_drop\n", "stack underflow"),
        ("    is_drop\n    is_drop\n", "stack underflow"),
        ("    os_get32 7\n", "o abs_get: out of stack"),
        (
            "    summon_this\n    is_set32 -1\n",
            "i abs_set: out of stack",
        ),
        ("    os_load8 9\n", "load: slot 9 is out of bounds"),
        ("    summon_null\n    new\n", "new: not a class"),
        (
            "    summon_by_name \".no.such\"\n",
            "summon by name: no class found: .no.such",
        ),
    ] {
        let (o, _) = run_method(".t.bad", &one_method(body), 16);
        assert!(failed(&o).starts_with(msg), "{body}: {o:?}");
    }
}

#[test]
fn division_by_zero_throws_a_string() {
    let (o, _) = run_method(
        ".t.bad",
        &one_method("    iconst_1\n    iconst_0\n    idivlu\n    ret\n"),
        16,
    );
    assert_eq!(
        o,
        SliceOutcome::Failed {
            message: "Unhandled exception: division by zero".into()
        }
    );
}

#[test]
fn bad_files_and_arguments_fail_init() {
    let (name, bytes) = file(".t.bad", &one_method("    ret\n"));
    let init = |args: &[&str], files| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        PvmProcess::init(&args, files, VmConfig::default())
    };
    let a = ["--class", ".t.bad", "--method", "16"];
    for cut in [1, 9, 20, bytes.len() - 1] {
        let e = init(&a, vec![(name.clone(), bytes[..cut].to_vec())]).unwrap_err();
        assert!(e.starts_with("cannot load .t.bad"), "{e}");
    }
    assert!(init(&["--bogus"], vec![]).is_err());
    assert!(init(&[], vec![]).unwrap_err().contains("not found"));
    assert!(init(&a, vec![("classes".into(), vec![1, 2, 3])]).is_err());
}

#[test]
fn unbounded_stack_growth_is_stopped() {
    let config = VmConfig {
        max_stack_cells: 100_000,
        ..VmConfig::default()
    };
    let text = one_method("Lx:\n    stack_reserve 255 255\n    jmp Lx\n");
    let (o, _) = run(
        &["--class", ".t.bad", "--method", "16"],
        vec![file(".t.bad", &text)],
        config,
    );
    assert!(failed(&o).starts_with("stack overflow"), "{o:?}");
}

#[test]
fn cyclic_base_classes_are_an_error() {
    let a = "class \".t.a\" fields 0 methods 17 base \".t.b\"\nmethod \"m\" 16\n    ret\nend\n";
    let b = "class \".t.b\" fields 0 methods 17 base \".t.a\"\n";
    let args: Vec<String> = ["--class", ".t.a", "--method", "16"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let e = PvmProcess::init(
        &args,
        vec![file(".t.a", a), file(".t.b", b)],
        VmConfig::default(),
    )
    .unwrap_err();
    assert!(e.contains("too deep or cyclic"), "{e}");
}

#[test]
fn inherited_methods_and_parent_interfaces() {
    let base = "class \".t.base\" fields 1 methods 18 base \".internal.object\"\n\
        method \"hello\" 16\n    sconst_bin \"base16 \"\n    ret\nend\n\
        method \"over\" 17\n    sconst_bin \"base17 \"\n    ret\nend\n";
    let child = "class \".t.child\" fields 2 methods 19 base \".t.base\"\n\
        method \"over\" 17\n    sconst_bin \"child17 \"\n    ret\nend\n\
        method \"main\" 18\n    is_drop\n\
            os_get32 0\n    summon_this\n    call_10 0\n    call_10 1\n    os_drop\n\
            os_get32 0\n    summon_this\n    call_11 0\n    call_10 1\n    os_drop\n\
            os_get32 0\n    summon_this\n    summon_by_name \".t.base\"\n    static_invoke 17 0\n    call_10 1\n    os_drop\n\
            os_get32 0\n    summon_by_name \".t.base\"\n    summon_this\n    call_0e 1\n    call_10 1\n    os_drop\n\
            summon_null\n    ret\nend\nsignature \"main\" 18 returns \"\" args \"b\" \"\"\n";
    let (o, out) = run(
        &["--class", ".t.child", "--method", "18"],
        vec![file(".t.base", base), file(".t.child", child)],
        VmConfig::default(),
    );
    assert_eq!(out, "base16 child17 base17 1");
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 });
}

#[test]
fn nested_runs_are_bounded() {
    // toString prints `this`, which calls toString on a nested run, …
    let text = "class \".t.rec\" fields 1 methods 17 base \".internal.object\"\n\
        method \"toString\" 5\n    os_load8 0\n    summon_this\n    call_10 1\n    ret\nend\n\
        method \"main\" 16\n    os_load8 0\n    summon_this\n    call_10 1\n    ret\nend\n";
    let (o, _) = run_method(".t.rec", text, 16);
    assert!(failed(&o).starts_with("nested run limit exceeded"), "{o:?}");
    // Located once, where it happened (not once per nested run).
    assert_eq!(failed(&o).matches(" near IP ").count(), 1, "{o:?}");
}

/// A program that keeps allocating (a linked list of arrays, every one
/// reachable) is stopped at the object limit with a `pvm panic` on the
/// console, as every other VM panic is, not a bare exit.
#[test]
fn unbounded_allocation_is_stopped_and_said() {
    let config = VmConfig {
        max_heap_objects: 5_000,
        ..VmConfig::default()
    };
    let text = "class \".t.bad\" fields 2 methods 17 base \".internal.object\"\nmethod \"m\" 16\n    stack_reserve 1 0\n    summon_null\n    os_set32 0\nL8:\n    summon_array_class\n    new\n    os_dup\n    os_get32 0\n    iconst_0\n    i2o\n    call_0b 2\n    os_drop\n    os_set32 0\n    jmp L8\nend\n";
    let (o, console) = run(
        &["--class", ".t.bad", "--method", "16"],
        vec![file(".t.bad", text)],
        config,
    );
    assert!(failed(&o).starts_with("out of memory"), "{o:?}");
    assert!(console.contains("pvm panic: out of memory"), "{console}");
}
