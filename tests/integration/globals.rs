//! Every mutable global persists: a hand-written core module keeps state
//! only in globals (an i64 counter, an f64, an i32, a bump pointer), which
//! must come back after a restore; an image whose component was replaced by
//! one with other globals is refused.

use super::common::*;

/// A persistent process in WAT whose state is all in globals. Each event
/// advances them and prints `count=<c> half2=<h*2> flag=<f> heap=<ok>`.
/// `EXTRA` is replaced by more global declarations (to make a variant
/// whose globals differ).
const WAT: &str = r#"
(module
  (import "phantom:os/console@0.1.0" "write" (func $write (param i32 i32)))
  (memory (export "memory") 1)
  (global $count (mut i64) (i64.const 0))
  (global $half (mut f64) (f64.const 0))
  (global $flag (mut i32) (i32.const 7))
  (global $heap (mut i32) (i32.const 8192))
  EXTRA
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    ;; bump allocation, aligned to 8
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  ;; writes the decimal digits of $v at $at, returns the end
  (func $fmt (param $v i64) (param $at i32) (result i32)
    (local $n i32) (local $i i32) (local $t i64)
    (local.set $t (local.get $v))
    (loop $count_digits
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (local.set $t (i64.div_u (local.get $t) (i64.const 10)))
      (br_if $count_digits (i64.ne (local.get $t) (i64.const 0))))
    (local.set $i (local.get $n))
    (local.set $t (local.get $v))
    (loop $digits
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (local.get $at) (local.get $i))
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $t) (i64.const 10)))))
      (local.set $t (i64.div_u (local.get $t) (i64.const 10)))
      (br_if $digits (i32.ne (local.get $i) (i32.const 0))))
    (i32.add (local.get $at) (local.get $n)))
  (func $text (param $at i32) (param $s i32) (param $len i32) (result i32)
    (memory.copy (local.get $at) (local.get $s) (local.get $len))
    (i32.add (local.get $at) (local.get $len)))
  (data (i32.const 0) "count= half2= flag= heap=ok\n")
  (func (export "init") (param i32 i32 i32 i32) (result i32)
    ;; result<status, string>: ok(idle)
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.store8 (i32.const 1028) (i32.const 0))
    (i32.const 1024))
  (func (export "handle") (param i32 i32 i32) (result i32)
    (local $at i32)
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (global.set $half (f64.add (global.get $half) (f64.const 0.5)))
    (global.set $flag (i32.mul (global.get $flag) (i32.const 3)))
    (local.set $at (i32.const 2048))
    (local.set $at (call $text (local.get $at) (i32.const 0) (i32.const 6)))
    (local.set $at (call $fmt (global.get $count) (local.get $at)))
    (local.set $at (call $text (local.get $at) (i32.const 6) (i32.const 7)))
    (local.set $at (call $fmt (i64.trunc_f64_u (f64.mul (global.get $half) (f64.const 2))) (local.get $at)))
    (local.set $at (call $text (local.get $at) (i32.const 13) (i32.const 6)))
    (local.set $at (call $fmt (i64.extend_i32_u (global.get $flag)) (local.get $at)))
    (local.set $at (call $text (local.get $at) (i32.const 19) (i32.const 9)))
    (call $write (i32.const 2048) (i32.sub (local.get $at) (i32.const 2048)))
    ;; status: idle
    (i32.store8 (i32.const 1536) (i32.const 0))
    (i32.const 1536))
)
"#;

/// The component of `WAT` with `extra` declarations.
fn component(extra: &str) -> Vec<u8> {
    let mut module = wat::parse_str(WAT.replace("EXTRA", extra)).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let (pkg, _) = resolve.push_dir(&wit).unwrap();
    let world = resolve
        .select_world(&[pkg], Some("persistent-process"))
        .unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .unwrap()
        .encode()
        .unwrap()
}

/// The `(count, half2, flag)` of each line.
fn lines(out: &str) -> Vec<(u64, u64, u32)> {
    out.lines()
        .filter(|l| l.starts_with("count="))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| w.split_once('=').and_then(|(_, v)| v.parse().ok()))
                .collect();
            (f[0], f[1], f[2] as u32)
        })
        .collect()
}

#[test]
fn extra_mutable_globals_keep_their_values_across_restores() {
    let data = data_dir();
    let path = data.path().join("globals.wasm");
    std::fs::write(&path, component("")).unwrap();
    ok(&run(&[
        "spawn",
        s(&path),
        "--data",
        s(data.path()),
        "--name",
        "g",
    ]));
    let mut expected_flag = 7u32;
    let mut all = Vec::new();
    for round in 0..4 {
        // Each run restores from the image its predecessor left at its
        // stop: three events (two lines and the end of input).
        let o = run_with_input(&["run", "--data", s(data.path()), "--for", "0.3"], "a\nb\n");
        ok(&o);
        all.extend(lines(&stdout(&o)));
        assert!(
            stdout(&o).contains("heap=ok"),
            "round {round}: {}",
            stdout(&o)
        );
    }
    assert_eq!(all.len(), 12, "{all:?}");
    for (i, &(count, half2, flag)) in all.iter().enumerate() {
        expected_flag = expected_flag.wrapping_mul(3);
        assert_eq!(count, i as u64 + 1, "the i64 counter restarted: {all:?}");
        assert_eq!(half2, i as u64 + 1, "the f64 went back: {all:?}");
        assert_eq!(flag, expected_flag, "the i32 went back: {all:?}");
    }
    // Another component with other globals in place of the original: the
    // image does not fit it, and it is not run.
    std::fs::write(
        data.path().join("g").join("component.wasm"),
        component("(global $more (mut i32) (i32.const 1))"),
    )
    .unwrap();
    let o = run_with_input(&["run", "--data", s(data.path()), "--for", "0.3"], "a\n");
    assert!(lines(&stdout(&o)).is_empty(), "{}", stdout(&o));
    let text = stderr(&o);
    assert!(text.contains("replaced"), "{text}");
}
