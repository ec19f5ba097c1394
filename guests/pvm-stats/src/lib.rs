//! The Phantom VM with one more internal class, `.internal.demo.stats`,
//! whose methods call the imported `demo:interop/stats` interface
//! (guests/interop/stats.wit). Composed with a library component that
//! exports it (`phantom compose pvm-stats.wasm --with rust-stats.wasm`),
//! Phantom bytecode calls into a component written in Rust or C, and the
//! whole is one persistent process: the Phantom objects (in this
//! component's memory) and the library's state (in its own) are
//! checkpointed and restored together.
//!
//! ```text
//!   Phantom bytecode: summon ".internal.demo.stats"; new; call_10 1 (add)
//!     └─► sys 16 on an internal object ─► natives::call ─► add() below
//!           └─► demo:interop/stats.add (import) ─► the library component
//! ```
//! Ordinals: 16 `add(int|long) -> int` (the count), 17 `count() -> int`,
//! 18 `total() -> long`, 19 `describe() -> string`; the others are those of
//! `.internal.void` (toString, equals, ...).

use pvm_vm::Ref;
use pvm_vm::heap::Kind;
use pvm_vm::natives::{self, Native, NativeClass};
use pvm_vm::vm::{Trap, Vm};

#[path = "../../pvm/src/driver.rs"]
mod driver;

/// Windows are drawn in the VM's memory only (`pvm-display` shows them).
type ScreenImpl = driver::NoScreen;

wit_bindgen::generate!({
    path: "../interop",
    world: "demo:interop/user",
});

use demo::interop::stats;

fn add(vm: &mut Vm, _this: Ref, args: &[Ref]) -> Result<Native, Trap> {
    let value = match vm.heap.get(natives::arg(args, 0)?).kind {
        Kind::Int(v) => i64::from(v),
        Kind::Long(v) => v,
        _ => return Err(natives::throw("stats.add: not an integer")),
    };
    natives::ret_int(vm, stats::add(value) as i32)
}

fn count(vm: &mut Vm, _this: Ref, _args: &[Ref]) -> Result<Native, Trap> {
    natives::ret_int(vm, stats::count() as i32)
}

fn total(vm: &mut Vm, _this: Ref, _args: &[Ref]) -> Result<Native, Trap> {
    Ok(Native::Return(vm.new_long(stats::total())))
}

fn describe(vm: &mut Vm, _this: Ref, _args: &[Ref]) -> Result<Native, Trap> {
    natives::ret_str(vm, stats::describe())
}

/// The classes this VM adds.
static NATIVES: [NativeClass; 1] = [NativeClass {
    name: ".internal.demo.stats",
    methods: &[(16, add), (17, count), (18, total), (19, describe)],
}];

phantom_sdk::export_process!(driver::Pvm);
