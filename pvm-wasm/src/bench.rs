//! The benchmark class: an integer loop with arithmetic, field access,
//! virtual calls and allocation (`run`), and a pure integer loop (`spin`).
//! Run it with `--class .bench.loop --method 8`; it prints both results.

/// Name of the benchmark class.
pub const BENCH_CLASS: &str = ".bench.loop";
/// Its entry method: `main(boot)`.
pub const BENCH_ENTRY: u32 = 8;
/// Bytecodes one `run` iteration executes (loop body + the `inc` call).
pub const RUN_INSNS_PER_ITERATION: u64 = 30;
/// Bytecodes one `spin` iteration executes.
pub const SPIN_INSNS_PER_ITERATION: u64 = 13;

fn prologue(name: &str, n: u32) -> String {
    format!(
        "    iconst_32bit {n}\n    isublu\n    jz Lok\n    sconst_bin \"arg count: {name} in {BENCH_CLASS}\"\n    throw\nLok:\n"
    )
}

/// The benchmark class as assembler text; `main` runs `run(iterations)` and
/// `spin(iterations)` and prints `bench run=<r> spin=<s>`.
pub fn bench_class_text(iterations: u32) -> String {
    bench_class_text_with(iterations, iterations)
}

/// The benchmark class with separate iteration counts for `run` (calls,
/// fields, allocation) and `spin` (pure integer loop).
pub fn bench_class_text_with(run_iterations: u32, spin_iterations: u32) -> String {
    let mut t = format!("class \"{BENCH_CLASS}\" fields 2 methods 19 base \".internal.object\"\n");
    t += "method \"main\" 8\n";
    t += &prologue("main", 1);
    t += &format!(
        r#"    os_get32 0
    sconst_bin "bench run="
    call_10 1
    os_drop
    os_get32 0
    summon_this
    iconst_32bit {run_iterations}
    i2o
    call_10 1
    call_10 1
    os_drop
    os_get32 0
    sconst_bin " spin="
    call_10 1
    os_drop
    os_get32 0
    summon_this
    iconst_32bit {spin_iterations}
    i2o
    call_12 1
    call_10 1
    os_drop
    os_get32 0
    sconst_bin "\n"
    call_10 1
    os_drop
    summon_null
    ret
end
"#
    );
    t += "method \"run\" 16\n";
    t += &prologue("run", 1);
    t += r#"    os_get32 0
    o2i
    iconst_0
Lloop:
    is_get32 0
    jz Ldone
    is_get32 1
    is_get32 0
    iconst_32bit 3
    imul
    isum
    iconst_32bit 5
    ixor
    i2o
    os_save8 1
    summon_this
    os_load8 1
    call_11 1
    o2i
    is_set32 1
    is_get32 0
    iconst_1
    isublu
    is_set32 0
    jmp Lloop
Ldone:
    is_get32 1
    i2o
    ret
end
"#;
    t += "method \"inc\" 17\n";
    t += &prologue("inc", 1);
    t += "    os_get32 0\n    o2i\n    iconst_1\n    isum\n    i2o\n    ret\nend\n";
    t += "method \"spin\" 18\n";
    t += &prologue("spin", 1);
    t += r#"    os_get32 0
    o2i
    iconst_0
Lloop:
    is_get32 0
    jz Ldone
    is_get32 1
    is_get32 0
    isum
    iconst_32bit 7
    ixor
    is_set32 1
    is_get32 0
    iconst_1
    isublu
    is_set32 0
    jmp Lloop
Ldone:
    is_get32 1
    i2o
    ret
end
signature "main" 8 ctor 0 returns ".internal.void" args "boot" ".internal.object"
signature "run" 16 ctor 0 returns ".internal.int" args "n" ".internal.int"
signature "inc" 17 ctor 0 returns ".internal.int" args "x" ".internal.int"
signature "spin" 18 ctor 0 returns ".internal.int" args "n" ".internal.int"
field "boot" 0 "" "scratch" 1 ".internal.int"
"#;
    t
}

/// The benchmark class as `.pc` bytes.
pub fn bench_class(iterations: u32) -> Vec<u8> {
    crate::asm::assemble(&bench_class_text(iterations)).expect("the benchmark class assembles")
}

/// The class directory holding only the benchmark class.
pub fn bench_files(iterations: u32) -> Vec<(String, Vec<u8>)> {
    bench_files_with(iterations, iterations)
}

/// The class directory holding only the benchmark class, with separate
/// iteration counts for `run` and `spin`.
pub fn bench_files_with(run_iterations: u32, spin_iterations: u32) -> Vec<(String, Vec<u8>)> {
    let class = crate::asm::assemble(&bench_class_text_with(run_iterations, spin_iterations))
        .expect("the benchmark class assembles");
    vec![(format!("{}.pc", &BENCH_CLASS[1..]), class)]
}
