//! The Phantom VM as a persistent process.
//!
//! `init` loads the class files handed to it and starts the boot thread (or
//! the `--class`/`--method` thread); every `handle(resume)` runs one bounded
//! slice of the VM's green threads. All VM state is Rust data in this
//! component's linear memory, so the host's checkpoints between slices
//! persist the Phantom threads exactly where they stopped. A slice where all
//! threads sleep sets a one-shot timer for the earliest wake-up and goes
//! idle.

use pvm_vm::natives::NativeClass;

mod driver;

/// The plain VM has no internal classes beyond the spec's.
static NATIVES: [NativeClass; 0] = [];

/// Windows are drawn in the VM's memory only (`pvm-display` shows them).
type ScreenImpl = driver::NoScreen;

phantom_sdk::export_process!(driver::Pvm);
