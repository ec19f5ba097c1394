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
//!        │          │                      │
//!        │     code (bytes + pre-decoded)  process (PvmProcess: slices, scheduling)
//!        │     stack (operand stacks)
//!   heap (arena + mark & sweep)
//! ```
//!
//! The specification is `pvm-spec.md`; deliberate departures from the C VM
//! are listed in DESIGN.md ("The Phantom VM").
//!
//! ```
//! use pvm::{PvmProcess, SliceOutcome, VmConfig};
//!
//! let text = r#"
//! class ".hello" fields 1 methods 17 base ".internal.object"
//! method "main" 16
//!     os_load8 0              ; the boot object, stored in field 0
//!     sconst_bin "hello\n"
//!     call_10 1               ; boot.consolePrint("hello\n")
//!     ret
//! end
//! "#;
//! let files = vec![("hello.pc".to_string(), pvm::asm::assemble(text).unwrap())];
//! let args: Vec<String> = ["--class", ".hello", "--method", "16"].map(String::from).to_vec();
//! let mut process = PvmProcess::init(&args, files, VmConfig::default()).unwrap();
//! let mut out = Vec::new();
//! let outcome = process.run_slice(0, 1_000_000, &mut out);
//! assert_eq!(outcome, SliceOutcome::Finished { exit_code: 0 });
//! assert_eq!(out, b"hello\n");
//! ```
#![forbid(unsafe_code)]

pub mod asm;
pub mod bench;
pub mod classfile;
pub mod code;
pub mod disasm;
pub mod heap;
mod interp;
pub mod natives;
pub mod opcode;
pub mod process;
pub mod screen;
pub mod stack;
pub mod vm;

pub use heap::{GcStats, Ref};
pub use process::{PvmProcess, SliceOutcome};
pub use vm::VmConfig;
