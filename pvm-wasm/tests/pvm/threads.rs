//! Green threads: two Phantom threads interleave, and a sleeping thread
//! does not stall the others.

use pvm::{PvmProcess, SliceOutcome, VmConfig};

use crate::file;

fn printer(class: &str, tag: &str, loops: u32, sleep_ms: u32) -> String {
    let mut t = format!(
        "class \"{class}\" fields 0 methods 9 base \".internal.object\"\nmethod \"run\" 8\n"
    );
    t += "    iconst_32bit 1\n    isublu\n    jz Lok\n    sconst_bin \"arg count\"\n    throw\nLok:\n";
    t += "    iconst_32bit 3\nLouter:\n";
    t += &format!("    os_get32 0\n    sconst_bin \"{tag}\"\n    call_10 1\n    os_drop\n");
    if sleep_ms > 0 {
        t += &format!(
            "    os_get32 0\n    iconst_32bit {sleep_ms}\n    i2o\n    call_15 1\n    os_drop\n"
        );
    }
    t += &format!("    iconst_32bit {loops}\nLbusy:\n    djnz Lbusy\n    is_drop\n");
    t += "    djnz Louter\n    summon_null\n    ret\nend\n";
    t
}

fn main_class(children: &[&str]) -> String {
    let mut t =
        "class \".t.main\" fields 1 methods 9 base \".internal.object\"\nmethod \"main\" 8\n"
            .to_string();
    for c in children {
        t += &format!(
            "    os_get32 0\n    summon_by_name \"{c}\"\n    new\n    call_12 1\n    os_drop\n"
        );
    }
    t += "    summon_null\n    ret\nend\nsignature \"main\" 8 returns \"\" args \"boot\" \"\"\n";
    t
}

fn start(files: Vec<(String, Vec<u8>)>, quantum: u64) -> PvmProcess {
    let args: Vec<String> = ["--class", ".t.main", "--method", "8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    PvmProcess::init(
        &args,
        files,
        VmConfig {
            quantum,
            ..VmConfig::default()
        },
    )
    .unwrap()
}

#[test]
fn two_threads_interleave() {
    let files = vec![
        file(".t.main", &main_class(&[".t.a", ".t.b"])),
        file(".t.a", &printer(".t.a", "a", 5000, 0)),
        file(".t.b", &printer(".t.b", "b", 5000, 0)),
    ];
    let mut p = start(files, 1000);
    let mut out = Vec::new();
    assert_eq!(
        p.run_to_end(1_000_000, 100, &mut out),
        SliceOutcome::Finished { exit_code: 0 }
    );
    assert_eq!(String::from_utf8(out).unwrap(), "ababab");
}

#[test]
fn a_sleeping_thread_does_not_stall_the_others() {
    let files = vec![
        file(".t.main", &main_class(&[".t.sleeper", ".t.busy"])),
        file(".t.sleeper", &printer(".t.sleeper", "s", 1, 1000)),
        file(".t.busy", &printer(".t.busy", "b", 20_000, 0)),
    ];
    let mut p = start(files, 10_000);
    let mut out = Vec::new();
    let mut now = 0;
    // The busy thread finishes all its work while the sleeper sleeps 1 s.
    loop {
        match p.run_slice(now, 5_000, &mut out) {
            SliceOutcome::Busy => {}
            SliceOutcome::Sleeping { until_ns } => {
                assert_eq!(until_ns, 1_000_000_000);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "sbbb");
    // Time moves on but not far enough: still asleep.
    now = 500_000_000;
    assert_eq!(
        p.run_slice(now, 5_000, &mut out),
        SliceOutcome::Sleeping {
            until_ns: 1_000_000_000
        }
    );
    let outcome = p.run_to_end(5_000, 100, &mut out);
    assert_eq!(outcome, SliceOutcome::Finished { exit_code: 0 });
    assert_eq!(String::from_utf8_lossy(&out), "sbbbss");
}

#[test]
fn slices_respect_the_budget() {
    let files = vec![
        file(".t.main", &main_class(&[".t.b"])),
        file(".t.b", &printer(".t.b", "b", 100_000, 0)),
    ];
    let mut p = start(files, 10_000);
    let mut out = Vec::new();
    let before = p.instructions_executed();
    assert_eq!(p.run_slice(0, 777, &mut out), SliceOutcome::Busy);
    assert_eq!(p.instructions_executed() - before, 777);
}

#[test]
fn mutex_serialises_threads() {
    let locker = "class \".t.locker\" fields 1 methods 17 base \".internal.object\"\n\
        method \"set\" 16\n    os_get32 0\n    os_save8 0\n    summon_null\n    ret\nend\n\
        method \"run\" 8\n    os_load8 0\n    call_08 0\n    os_drop\n\
            os_get32 0\n    sconst_bin \"L\"\n    call_10 1\n    os_drop\n\
            os_get32 0\n    iconst_32bit 100\n    i2o\n    call_15 1\n    os_drop\n\
            os_get32 0\n    sconst_bin \"U\"\n    call_10 1\n    os_drop\n\
            os_load8 0\n    call_09 0\n    os_drop\n    summon_null\n    ret\nend\n";
    let mut main =
        "class \".t.main\" fields 1 methods 9 base \".internal.object\"\nmethod \"main\" 8\n    \
        summon_null\n    summon_by_name \".internal.mutex\"\n    new\n    os_set32 1\n"
            .to_string();
    for _ in 0..2 {
        main += "    os_get32 0\n    summon_by_name \".t.locker\"\n    new\n    os_dup\n    os_get32 1\n    call_10 1\n    os_drop\n    call_12 1\n    os_drop\n";
    }
    main += "    summon_null\n    ret\nend\nsignature \"main\" 8 returns \"\" args \"boot\" \"\"\n";
    let mut p = start(
        vec![file(".t.main", &main), file(".t.locker", locker)],
        10_000,
    );
    let mut out = Vec::new();
    assert_eq!(
        p.run_to_end(10_000, 100, &mut out),
        SliceOutcome::Finished { exit_code: 0 }
    );
    assert_eq!(String::from_utf8(out).unwrap(), "LULU");
}

/// All VM state is plain data: a copy taken between slices continues
/// exactly like the original (what a linear-memory checkpoint relies on).
#[test]
fn a_copy_taken_between_slices_continues_identically() {
    let args: Vec<String> = ["--class", ".bench.loop", "--method", "8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let config = VmConfig {
        gc_min_interval: 1000,
        ..VmConfig::default()
    };
    let mut p = PvmProcess::init(&args, pvm::bench::bench_files(20_000), config).unwrap();
    let mut out = Vec::new();
    for _ in 0..37 {
        assert_eq!(p.run_slice(0, 7_919, &mut out), SliceOutcome::Busy);
    }
    let mut copy = p.clone();
    let mut out_copy = out.clone();
    let a = p.run_to_end(100_000, 1000, &mut out);
    let b = copy.run_to_end(100_000, 1000, &mut out_copy);
    assert_eq!((a, &out), (b, &out_copy));
    assert_eq!(p.instructions_executed(), copy.instructions_executed());
    assert!(p.gc_stats().collections > 10);
}
