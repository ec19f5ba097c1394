//! The Phantom runtime: runs Wasm components as persistent processes.
//!
//! ```text
//!   Drive (drive.rs: the one loop of run, pvm run, benchmarks)
//!    │  control socket requests (control.rs), console input feed
//!    ▼
//!   Process (process/: spawn, restore, step, checkpoint)
//!    ├─ Store<ProcessCtx> (ctx.rs) ── iface/* (phantom:os, one file per interface)
//!    │     ├─ gate.rs: every input and nondeterministic read comes in here
//!    │     │     └─ journal/: recorded before the guest sees it, replayed on restore
//!    │     └─ exit.rs: everything the guest sends out leaves here (held until durable)
//!    ├─ persist/: host state as image sections (host, timers, globals)
//!    ├─ Memories (phantom-memory: memfds, dirty tracking, lazy fill; all unsafe)
//!    └─ CheckpointStore (phantom-snapshots: image files; no wasmtime)
//!   Runtime (runtime.rs): engine, linker, component cache (component.rs,
//!    inspect.rs), epoch ticker, checkpoint writer (writer.rs)
//! ```
#![forbid(unsafe_code)]

pub mod bindings;
pub mod component;
pub mod console_log;
pub mod control;
pub mod ctx;
pub mod datadir;
pub mod drive;
pub mod error;
pub mod exit;
pub mod gate;
mod iface;
pub mod inspect;
mod instrument;
pub mod journal;
pub mod migrate;
pub mod persist;
pub mod process;
pub mod runtime;
pub mod status;
pub mod travel;
mod writer;

pub use iface::devices;
pub use phantom_memory::{LazyStats, TrackerKind};

/// Inspection and instrumentation of component bytes, as `load_component`
/// does them before compiling (for tests and fuzzing: any bytes must give an
/// error, never a panic).
#[doc(hidden)]
pub fn inspect_and_instrument(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let facts = inspect::inspect_component(bytes).map_err(|e| e.to_string())?;
    instrument::instrument(bytes, &facts)
}
