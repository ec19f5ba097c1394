//! Opcode semantics beyond the regression tests: typed prefixes, switch,
//! the call forms, exceptions, and the natives the real files use.

use pvm::SliceOutcome;

use crate::run;

/// Runs `body` as `main(boot)` (boot at ostack slot 0, istack empty) with
/// extra methods; returns the output. `P <int expr>` lines print an int.
fn exec(body: &str, extra: &str) -> (SliceOutcome, String) {
    let mut t = "class \".t.op\" fields 2 methods 24 base \".internal.object\"\nmethod \"main\" 8\n    is_drop\n".to_string();
    for line in body.lines() {
        if let Some(expr) = line.trim().strip_prefix("P ") {
            t += "    os_get32 0\n";
            for insn in expr.split(';') {
                t += &format!("    {}\n", insn.trim());
            }
            t += "    call_10 1\n    os_drop\n    os_get32 0\n    sconst_bin \" \"\n    call_10 1\n    os_drop\n";
        } else {
            t += line;
            t += "\n";
        }
    }
    t += "    summon_null\n    ret\nend\nsignature \"main\" 8 returns \"\" args \"boot\" \"\"\n";
    t += extra;
    let files = vec![crate::file(".t.op", &t)];
    let result = run(
        &["--class", ".t.op", "--method", "8"],
        files.clone(),
        pvm::VmConfig::default(),
    );
    // `PVM_DUMP_DIR=…` saves each class and its output, to compare with the
    // reference prototype (`pvm-reference.py --arg-boot --method 8 .t.op`).
    if let Ok(dir) = std::env::var("PVM_DUMP_DIR") {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let i = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d = std::path::Path::new(&dir).join(format!("case{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("t.op.pc"), &files[0].1).unwrap();
        std::fs::write(d.join("expected"), &result.1).unwrap();
    }
    result
}

fn out(body: &str) -> String {
    let (o, out) = exec(body, "");
    assert_eq!(o, SliceOutcome::Finished { exit_code: 0 }, "{out}");
    out
}

#[test]
fn int_ops_and_operand_order() {
    assert_eq!(
        out("P iconst_32bit 7; iconst_32bit 2; isublu; i2o\n\
             P iconst_32bit 7; iconst_32bit 2; isubul; i2o\n\
             P iconst_32bit -7; iconst_32bit 2; idivlu; i2o\n\
             P iconst_32bit 2; iconst_32bit 7; idivul; i2o\n\
             P iconst_32bit -7; iconst_32bit 3; iremlu; i2o\n\
             P iconst_32bit 3; iconst_32bit 7; iremul; i2o\n\
             P iconst_32bit 6; iconst_32bit 3; ixor; i2o\n\
             P iconst_0; inot; i2o\n\
             P iconst_1; iconst_0; log_xor; i2o\n\
             P iconst_32bit 4; iconst_1; ishl; i2o\n\
             P iconst_32bit 1; iconst_32bit -8; ishr; i2o\n\
             P iconst_32bit 28; iconst_32bit -1; ushr; i2o\n\
             P iconst_8bit 200; i2o\n\
             P iconst_32bit 2147483647; iconst_1; isum; i2o"),
        "5 -5 -3 3 -1 1 5 -1 1 16 -4 15 200 -2147483648 "
    );
}

#[test]
fn long_double_float_prefixes() {
    assert_eq!(
        out(
            "P prefix_long; iconst_64bit 5000000000; prefix_long; iconst_32bit 3; prefix_long; imul; prefix_long; i2o\n\
             P prefix_long; iconst_64bit 10; prefix_long; iconst_32bit 3; prefix_long; idivlu; froml; i2o\n\
             P prefix_long; iconst_32bit -1; prefix_long; iconst_1; prefix_long; ilt; i2o\n\
             P iconst_32bit 7; prefix_double; fromi; prefix_double; is_dup; prefix_double; isum; prefix_double; i2o\n\
             P iconst_32bit 1; prefix_float; fromi; iconst_32bit 4; prefix_float; fromi; prefix_float; idivlu; prefix_float; i2o\n\
             P iconst_32bit 9; prefix_double; fromi; prefix_long; fromd; prefix_long; i2o\n\
             P iconst_1; prefix_long; iconst_64bit 1099511627776; prefix_long; ishr; prefix_long; i2o"
        ),
        "15000000000 3 1 14.000000 0.250000 9 549755813888 "
    );
}

#[test]
fn double_o2i_is_type_checked() {
    let (o, _) = exec("    iconst_1\n    i2o\n    prefix_double\n    o2i\n", "");
    assert_eq!(
        o,
        SliceOutcome::Failed {
            message: "Unhandled exception: type assert failed".into()
        }
    );
}

#[test]
fn long_locals_take_two_cells() {
    assert_eq!(
        out(
            "    prefix_long\n    iconst_64bit 4294967297\n    iconst_32bit 9\n\
             P prefix_long; is_get32 0; prefix_long; i2o\n\
             P is_get32 2; i2o\n\
             P prefix_long; iconst_64bit -2; prefix_long; is_set32 0; prefix_long; is_get32 0; prefix_long; i2o"
        ),
        "4294967297 9 -2 "
    );
}

#[test]
fn switch_and_djnz() {
    let body = "    iconst_32bit 7\n    switch -5 1 L0 L1 L2\n    sconst_bin \"default\"\n    jmp Lp\nL0:\n    sconst_bin \"zero\"\n    jmp Lp\n\
                L1:\n    sconst_bin \"one\"\n    jmp Lp\nL2:\n    sconst_bin \"two\"\nLp:\n    os_get32 0\n    os_pull32 1\n    call_10 1\n    os_drop\n    os_drop\n\
                    iconst_32bit 9\n    switch 0 1 L0b\n    sconst_bin \"-default\"\n    os_get32 0\n    os_pull32 1\n    call_10 1\n    os_drop\n    os_drop\nL0b:\n\
                    iconst_32bit 0\n    iconst_32bit 5\nLd:\n    is_get32 0\n    iconst_32bit 10\n    isum\n    is_set32 0\n    djnz Ld\n    is_drop\n\
                P is_get32 0; i2o";
    assert_eq!(out(body), "two-default50 ");
}

#[test]
fn static_and_dynamic_invoke() {
    let extra = "method \"twice\" 16\n    os_get32 0\n    o2i\n    iconst_32bit 2\n    imul\n    i2o\n    ret\nend\n\
                 method \"half\" 17\n    arg_count 1\n    os_get32 0\n    o2i\n    iconst_32bit 2\n    idivlu\n    i2o\n    ret\nend\n";
    let body = "P iconst_32bit 21; i2o; summon_this; summon_by_name \".t.op\"; static_invoke 16 1\n\
                P iconst_32bit 42; i2o; summon_this; sconst_bin \"half\"; iconst_1; dynamic_invoke\n\
                    summon_this\n    summon_int_class\n    static_invoke 16 0\n";
    let (o, text) = exec(body, extra);
    assert!(text.starts_with("42 21 pvm panic: static_invoke"), "{text}");
    assert!(
        matches!(o, SliceOutcome::Failed { message } if message.starts_with("static_invoke: non-related class"))
    );
    let (o, _) = exec("    summon_this\n    call_11 0\n", extra);
    assert_eq!(
        o,
        SliceOutcome::Failed {
            message: "Unhandled exception: invalid arg count".into()
        }
    );
}

#[test]
fn catchers_stay_installed_and_match_subclasses() {
    let body = "    summon_null\n    summon_string_class\n    push_catcher Lc\n    sconst_bin \"boom\"\n    throw\nLc:\n    os_set32 1\n\
                    os_get32 0\n    os_get32 1\n    call_10 1\n    os_drop\n\
                    iconst_1\n    i2o\n    throw\n";
    let (o, text) = exec(body, "");
    assert_eq!(text, "boomUnhandled exception: 1\n");
    assert_eq!(
        o,
        SliceOutcome::Failed {
            message: "Unhandled exception: 1".into()
        }
    );
    // A catch-all (.internal.object) catches ints across frames.
    let extra = "method \"thrower\" 16\n    iconst_32bit 77\n    i2o\n    throw\nend\n";
    let body = "    summon_by_name \".internal.object\"\n    push_catcher Lc\n    summon_this\n    call_10 0\n    ret\nLc:\n\
                    os_get32 0\n    os_pull32 1\n    call_10 1\n    os_drop\n    pop_catcher\n";
    assert_eq!(
        exec(body, extra),
        (SliceOutcome::Finished { exit_code: 0 }, "77".into())
    );
}

#[test]
fn cast_identity_and_nulls() {
    assert_eq!(
        out(
            "P summon_string_class; sconst_bin \"s\"; summon_string_class; cast; call_0e 1\n\
             P summon_null; os_isnull; i2o\n\
             P summon_null; summon_null; os_eq; i2o\n\
             P iconst_1; i2o; iconst_1; i2o; os_eq; i2o\n\
             P iconst_1; i2o; os_dup; os_neq; i2o\n\
             P summon_null; short_call_0; os_isnull; i2o\n\
             P summon_null; call_05 0"
        ),
        "1 1 1 0 0 1 (void) "
    );
    let (o, _) = exec("    summon_null\n    summon_string_class\n    cast\n", "");
    assert_eq!(
        o,
        SliceOutcome::Failed {
            message: "Unhandled exception: cast to not parent".into()
        }
    );
}

#[test]
fn string_directory_and_binary_natives() {
    assert_eq!(
        out(
            "P sconst_bin \"hello world\"; iconst_32bit 6; i2o; iconst_32bit 99; i2o; call_08 2\n\
             P sconst_bin \"hello\"; iconst_1; i2o; call_09 1; o2i; i2o\n\
             P sconst_bin \"ab\"; sconst_bin \"cd\"; call_0a 1\n\
             P sconst_bin \"hello\"; call_0b 0\n\
             P sconst_bin \"hello\"; sconst_bin \"ll\"; call_0c 1\n\
             P sconst_bin \" 42\"; call_10 0\n\
             P sconst_bin \"x\"; sconst_bin \"x\"; call_04 1\n\
             P iconst_32bit 12; i2o; call_05 0\n\
                 summon_null\n    summon_by_name \".internal.directory\"\n    new\n    os_set32 1\n\
             P os_get32 1; sconst_bin \"k\"; iconst_32bit 5; i2o; call_08 2\n\
             P os_get32 1; sconst_bin \"k\"; iconst_32bit 6; i2o; call_08 2\n\
             P os_get32 1; sconst_bin \"k\"; call_09 1\n\
             P os_get32 1; call_0b 0\n\
             P os_get32 1; sconst_bin \"zz\"; call_09 1; os_isnull; i2o\n\
             P os_get32 0; iconst_32bit 4; i2o; call_13 1; os_dup; iconst_32bit 2; i2o; iconst_32bit 255; i2o; call_09 2; os_drop; iconst_32bit 2; i2o; call_08 1"
        ),
        "world 101 abcd 5 2 42 1 12 0 17 5 1 1 255 "
    );
}

#[test]
fn thread_world_class_and_env_natives() {
    assert_eq!(
        out("P summon_thread; call_05 0\n\
             P summon_by_name \".internal.world\"; new; call_08 0; summon_thread; os_eq; i2o\n\
             P summon_string_class; sconst_bin \"s\"; call_0e 1\n\
             P summon_int_class; sconst_bin \"s\"; call_0e 1\n\
             P os_get32 0; call_17 0; call_0c 0\n\
             P os_get32 0; call_17 0; iconst_1; i2o; call_0a 1\n\
             P os_get32 0; call_05 0"),
        "thread 1 1 0 3 root.init=.ru.dz.phantom.system.init bootstrap "
    );
}
