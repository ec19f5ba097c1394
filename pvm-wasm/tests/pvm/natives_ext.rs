//! Native classes an embedder adds (`Vm::add_native_classes`): the
//! pvm-stats guest binds one to a WIT import; here a fake library in a
//! thread-local stands in for the component.

use pvm::heap::Kind;
use pvm::natives::{self, Native, NativeClass};
use pvm::vm::{Trap, Vm};
use pvm::{PvmProcess, Ref, SliceOutcome, VmConfig};
use std::cell::RefCell;

thread_local! { static LIB: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) }; }

fn add(vm: &mut Vm, _this: Ref, args: &[Ref]) -> Result<Native, Trap> {
    let v = match vm.heap.get(natives::arg(args, 0)?).kind {
        Kind::Int(v) => i64::from(v),
        Kind::Long(v) => v,
        _ => return Err(Trap::ThrowMsg("not an integer arg".into())),
    };
    let n = LIB.with_borrow_mut(|l| {
        l.push(v);
        l.len() as u32
    });
    natives::ret_int(vm, n as i32)
}
fn count(vm: &mut Vm, _this: Ref, _args: &[Ref]) -> Result<Native, Trap> {
    let n = LIB.with_borrow(|l| l.len()) as i32;
    natives::ret_int(vm, n)
}
fn total(vm: &mut Vm, _this: Ref, _args: &[Ref]) -> Result<Native, Trap> {
    let t = LIB.with_borrow(|l| l.iter().sum());
    Ok(Native::Return(vm.new_long(t)))
}
fn describe(vm: &mut Vm, _this: Ref, _args: &[Ref]) -> Result<Native, Trap> {
    let s = LIB.with_borrow(|l| format!("fake n={} total={}", l.len(), l.iter().sum::<i64>()));
    natives::ret_str(vm, s)
}

static STATS: [NativeClass; 1] = [NativeClass {
    name: ".internal.demo.stats",
    methods: &[(16, add), (17, count), (18, total), (19, describe)],
}];

/// The demo program of the pvm-stats guest.
const PROGRAM: &str = include_str!("../../../guests/pvm-stats/stats_app.pasm");

/// An embedder's native class, called from bytecode: arguments in, ints,
/// longs and strings out.
#[test]
fn an_embedders_native_class_is_called_from_bytecode() {
    let files = vec![(
        "demo.stats_app.pc".to_string(),
        pvm::asm::assemble(PROGRAM).unwrap(),
    )];
    let args: Vec<String> = ["--class", ".demo.stats_app", "--method", "8"]
        .map(String::from)
        .to_vec();
    let mut p = PvmProcess::init_with_natives(&args, files, VmConfig::default(), &STATS).unwrap();
    let mut out = Vec::new();
    let mut now = 0;
    for _ in 0..5 {
        match p.run_slice(now, 1_000_000, &mut out) {
            SliceOutcome::Sleeping { until_ns } => now = until_ns,
            o => panic!("{o:?} {}", String::from_utf8_lossy(&out)),
        }
    }
    let text = String::from_utf8(out).unwrap();
    print!("{text}");
    assert!(text.starts_with("count=1 list=1 sum=1 lib=1 total=1 ok=1 | fake n=1 total=1\ncount=2 list=2 sum=3 lib=2 total=3 ok=1 | fake n=2 total=3\n"), "{text}");
}
