//! The Phantom host: runs Wasm components as persistent processes.
//!
//! ```text
//!   cli (phantom binary)
//!    └─ supervisor ── many ──► Process ──► Store<ProcessCtx> ── iface/* (phantom:os)
//!                               │            └─ ctx: the gate (inputs) and the exit (outputs)
//!                               ├─ MemoryCell (memory.rs) ── DirtyTracker (tracker.rs) ── sys.rs (all unsafe)
//!                               │    └─ LazyFill (lazy.rs): restored pages on first touch (userfaultfd)
//!                               └─ CheckpointStore (phantom-snapshots crate, no wasmtime)
//!   Runtime: Engine + PhantomMemoryCreator + Linker + compile cache + writer thread
//! ```

pub mod bench;
pub mod bindings;
pub mod ctx;
mod iface;
pub mod inspect;
pub mod lazy;
pub mod memory;
pub mod oneshot;
pub mod process;
pub mod runtime;
pub mod state;
pub mod supervisor;
pub mod sys;
pub mod tracker;

/// A number that differs between calls, for temporary names.
pub fn bench_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t as u64) << 16 | N.fetch_add(1, Ordering::Relaxed)
}
