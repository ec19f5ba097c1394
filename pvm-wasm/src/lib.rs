//! The Phantom virtual machine (PVM) as a plain Rust library: loads real
//! Phantom `.pc` class files, runs them on green threads in bounded slices,
//! and keeps all VM state in ordinary Rust data so a host that checkpoints
//! linear memory persists the VM as is.
//!
//! ```text
//!   classfile (parse/write .pc, bulk) ◄── asm (text → .pc)   disasm (.pc → text)
//!        │                                  └──── opcode (the one table) ────┘
//!        ▼
//!   vm (classes, threads, frames) ── interp (dispatch) ── natives (sys tables)
//!        │                                 │
//!   heap (arena + mark & sweep)      process (PvmProcess: slices, scheduling)
//! ```
//!
//! The specification is `pvm-spec.md`; deliberate departures from the C VM
//! are listed in `DECISIONS.md`.

pub mod asm;
pub mod bench;
pub mod classfile;
pub mod disasm;
pub mod heap;
mod interp;
pub mod natives;
pub mod opcode;
pub mod process;
pub mod vm;

pub use heap::{GcStats, Ref};
pub use process::{PvmProcess, SliceOutcome};
pub use vm::VmConfig;
