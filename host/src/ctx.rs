//! `ProcessCtx`: the data of a process's wasmtime `Store`, and the process's
//! single gate (everything nondeterministic the guest receives) and single
//! exit (everything it sends out).
//!
//! The journal (a later issue) records at the gate and holds effects at the
//! exit; keeping both single now makes that an addition, not a rewrite.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::state::HostState;

/// Console bytes one call may emit; beyond it output is cut with a marker,
/// so a runaway guest cannot make the host buffer without bound.
pub const MAX_OUTPUT_PER_CALL: usize = 1 << 20;

/// A process's clock: the time it has been running, across restores.
#[derive(Clone, Debug)]
pub struct ProcessClock {
    base_ns: u64,
    started: Instant,
}

impl ProcessClock {
    /// A clock that reads `base_ns` now.
    pub fn starting_at(base_ns: u64) -> Self {
        Self {
            base_ns,
            started: Instant::now(),
        }
    }

    /// Nanoseconds of process time.
    pub fn now_ns(&self) -> u64 {
        self.base_ns
            .saturating_add(self.started.elapsed().as_nanos() as u64)
    }
}

/// Bounds a guest's memory.
pub struct MemoryLimiter {
    /// Largest total size of one memory, in bytes.
    pub max_bytes: usize,
    /// Set when a grow was refused, for the error message of a later trap.
    pub refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The data of a process's `Store`.
pub struct ProcessCtx {
    /// Persisted host state.
    pub state: HostState,
    /// The process clock.
    pub clock: ProcessClock,
    /// Console output of the current call, flushed by the exit.
    pub output: Vec<u8>,
    /// The guest asked for a checkpoint.
    pub checkpoint_requested: bool,
    /// Memory bounds.
    pub limiter: MemoryLimiter,
}

impl ProcessCtx {
    /// A context for `state`, whose clock resumes at the state's time.
    pub fn new(state: HostState, max_memory_bytes: usize) -> Self {
        let clock = ProcessClock::starting_at(state.process_time_ns);
        Self {
            state,
            clock,
            output: Vec::new(),
            checkpoint_requested: false,
            limiter: MemoryLimiter {
                max_bytes: max_memory_bytes,
                refused: None,
            },
        }
    }

    // --- the gate -------------------------------------------------------

    /// Wall-clock time read by the guest.
    pub fn gate_wall_now(&mut self) -> (u64, u32) {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_secs(), d.subsec_nanos())
    }

    /// Process time read by the guest.
    pub fn gate_monotonic_now(&mut self) -> u64 {
        self.clock.now_ns()
    }

    // --- the exit -------------------------------------------------------

    /// Console bytes written by the guest.
    pub fn exit_console(&mut self, bytes: &[u8]) {
        let room = MAX_OUTPUT_PER_CALL.saturating_sub(self.output.len());
        if bytes.len() <= room {
            self.output.extend_from_slice(bytes);
        } else if room > 0 {
            self.output.extend_from_slice(&bytes[..room]);
            self.output
                .extend_from_slice(b"\n[phantom: console output of this call cut at 1 MiB]\n");
        }
    }

    /// Takes the output of the call that just returned.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }
}
