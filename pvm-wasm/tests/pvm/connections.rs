//! `.internal.connection` with the hosted VM's kernel parts: `tmr:`
//! (sleep in `block`, a one-shot callback thread from `invoke`) and `stt:`
//! (statistics), as the real shell's loop uses them.

use pvm::{PvmProcess, SliceOutcome, VmConfig};

use crate::file;

const CALLBACK: &str = r#"
class ".t.cb" fields 1 methods 18 base ".internal.object"
method "init" 16
    is_drop
    os_get32 0
    os_save8 0
    summon_null
    ret
end
method "run" 17
    is_drop
    os_load8 0
    sconst_bin "callback at "
    call_10 1
    os_drop
    os_load8 0
    os_get32 0
    call_10 1
    os_drop
    summon_null
    ret
end
"#;

/// `boot.consolePrint(<value of expr>)` then a space.
fn print(expr: &str) -> String {
    format!(
        "    os_load8 0\n{expr}\n    call_10 1\n    os_drop\n    os_load8 0\n    sconst_bin \" \"\n    call_10 1\n    os_drop\n"
    )
}

fn int(v: i32) -> String {
    format!("    iconst_32bit {v}\n    i2o\n")
}

fn program() -> String {
    let mut t = String::from(
        "class \".t.conn\" fields 5 methods 17 base \".internal.object\"\nmethod \"main\" 16\n    is_drop\n",
    );
    let new_conn = |field: u8| {
        format!("    summon_by_name \".internal.connection\"\n    new\n    os_save8 {field}\n")
    };
    t += &new_conn(1);
    t += &print("    os_load8 1\n    sconst_bin \"tmr:\"\n    call_08 1");
    t += "    summon_by_name \".t.cb\"\n    new\n    os_save8 2\n";
    t += "    os_load8 2\n    os_load8 0\n    call_10 1\n    os_drop\n";
    t += &format!(
        "    os_load8 1\n    os_load8 2\n{}    call_0c 2\n    os_drop\n",
        int(17)
    );
    // invoke(50, 0): the callback in 50 ms; invoke(5, 3): no such op.
    t += &print(&format!(
        "    os_load8 1\n{}{}    call_0b 2",
        int(50),
        int(0)
    ));
    t += &print(&format!(
        "    os_load8 1\n{}{}    call_0b 2",
        int(5),
        int(3)
    ));
    t += &new_conn(3);
    t += &print("    os_load8 3\n    sconst_bin \"stt:\"\n    call_08 1");
    for (counter, op) in [(26, 0), (0, 5), (0, 9)] {
        t += &print(&format!(
            "    os_load8 3\n{}{}    call_0d 2",
            int(counter),
            int(op)
        ));
    }
    t += &new_conn(4);
    t += &print("    os_load8 4\n    sconst_bin \"xyz:\"\n    call_08 1");
    // block(null, 20): sleeps 20 ms.
    t += &format!(
        "    os_load8 1\n    summon_null\n{}    call_0d 2\n    os_drop\n",
        int(20)
    );
    t += &print("    sconst_bin \"slept\"");
    t += "    summon_null\n    ret\nend\n";
    t
}

#[test]
fn timer_and_statistics_connections_serve_the_shell_loop() {
    let args: Vec<String> = ["--class", ".t.conn", "--method", "16"]
        .map(String::from)
        .to_vec();
    let files = vec![file(".t.conn", &program()), file(".t.cb", CALLBACK)];
    let mut p = PvmProcess::init(&args, files, VmConfig::default()).unwrap();
    let mut out = Vec::new();
    let mut now = 1_000_000_000u64;
    let mut sleeps = Vec::new();
    let outcome = loop {
        match p.run_slice(now, 100_000, &mut out) {
            SliceOutcome::Busy => {}
            SliceOutcome::Sleeping { until_ns } => {
                sleeps.push(until_ns - now);
                now = until_ns;
            }
            other => break other,
        }
    };
    let out = String::from_utf8_lossy(&out);
    assert_eq!(outcome, SliceOutcome::Finished { exit_code: 0 }, "{out}");
    // connect 0; invoke 0, then EINVAL; stt: connect 0, a counter 0, idle
    // 100, a bad op -1; an unknown name ENXIO; the sleep; then, with no
    // thread left but the armed timer, the callback with the time (s).
    assert_eq!(out, "0 0 22 0 0 100 -1 6 slept callback at 1");
    // The main thread slept 20 ms; the VM then waited 30 ms more for the
    // timer rather than finishing.
    assert_eq!(sleeps, [20_000_000, 30_000_000]);
}

#[test]
fn disconnect_cancels_the_timer_and_bad_arguments_throw() {
    let text = format!(
        "class \".t.c2\" fields 3 methods 17 base \".internal.object\"\nmethod \"main\" 16\n    is_drop\n\
         \x20   summon_by_name \".internal.connection\"\n    new\n    os_save8 1\n\
         \x20   os_load8 1\n    sconst_bin \"tmr:\"\n    call_08 1\n    os_drop\n\
         \x20   os_load8 1\n    os_load8 0\n{}    call_0c 2\n    os_drop\n\
         \x20   os_load8 1\n{}{}    call_0b 2\n    os_drop\n\
         \x20   os_load8 1\n    call_09 0\n    os_drop\n\
         \x20   os_load8 1\n{}{}    call_0d 2\n    summon_null\n    ret\nend\n",
        int(17),
        int(50),
        int(0),
        int(1),
        int(1)
    );
    let args: Vec<String> = ["--class", ".t.c2", "--method", "16"]
        .map(String::from)
        .to_vec();
    let mut p = PvmProcess::init(&args, vec![file(".t.c2", &text)], VmConfig::default()).unwrap();
    let mut out = Vec::new();
    let outcome = p.run_slice(0, 100_000, &mut out);
    // Disconnected: no timer is left to wait for, and block throws.
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("Unhandled exception: connection: not connected"),
        "{out}"
    );
    assert!(
        matches!(outcome, SliceOutcome::Failed { .. }),
        "{outcome:?}"
    );
    assert!(p.vm().conn_timers.is_empty());
    // connect with a non-string.
    let text = "class \".t.c3\" fields 2 methods 17 base \".internal.object\"\nmethod \"main\" 16\n    is_drop\n\
                \x20   summon_by_name \".internal.connection\"\n    new\n    iconst_1\n    i2o\n    call_08 1\n    summon_null\n    ret\nend\n";
    let args: Vec<String> = ["--class", ".t.c3", "--method", "16"]
        .map(String::from)
        .to_vec();
    let mut p = PvmProcess::init(&args, vec![file(".t.c3", text)], VmConfig::default()).unwrap();
    let mut out = Vec::new();
    p.run_slice(0, 100_000, &mut out);
    assert!(String::from_utf8_lossy(&out).contains("connection.connect: not a string arg"));
}
