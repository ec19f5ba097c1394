//! `ProcessCtx`: the data of a process's wasmtime `Store`. It holds the
//! parts of host state the guest can reach through its imports; `gate.rs`
//! (inputs and nondeterministic reads) and `exit.rs` (everything the guest
//! sends out) are the only ways in and out of it.

use std::time::{Duration, Instant};

use crate::exit::Outbox;
use crate::iface::wasi::WasiState;
use crate::journal::JournalCtx;
use crate::persist::{HostState, TimerTable};

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

    /// Restarts the clock at `base_ns` (a replay sets it to each recorded
    /// call's time).
    pub fn reset_to(&mut self, base_ns: u64) {
        *self = Self::starting_at(base_ns);
    }

    /// Nanoseconds of process time.
    pub fn now_ns(&self) -> u64 {
        self.base_ns
            .saturating_add(self.started.elapsed().as_nanos() as u64)
    }
}

/// Bounds a guest's memory and tables.
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
    /// Persisted: identity, clock at capture, status, queued inputs.
    pub state: HostState,
    /// Persisted: timers.
    pub timers: TimerTable,
    /// Bytes of console lines queued in `state.pending`.
    pub(crate) pending_bytes: usize,
    /// Console lines admitted but dropped unhandled when the guest exited.
    pub(crate) undelivered_lines: u64,
    /// The queued lines were counted as kept (a failed process's journal
    /// holds them), not as undelivered.
    pub(crate) queued_counted: bool,
    /// Console lines of calls abandoned (the host or the image failed
    /// them): back at the head of the queue after the next restore.
    pub(crate) abandoned_lines: u64,
    /// The process clock.
    pub clock: ProcessClock,
    /// What the guest sent out during the current call.
    pub outbox: Outbox,
    /// The guest asked for a checkpoint.
    pub checkpoint_requested: bool,
    /// Memory bounds.
    pub limiter: MemoryLimiter,
    /// Persisted: WASI handles, environment and seed.
    pub wasi: WasiState,
    /// When the current call must have returned (pollables wait no longer).
    pub(crate) call_deadline: Option<Instant>,
    /// The runtime's call timeout, for messages.
    pub(crate) call_timeout: Duration,
    /// Process time at which the current call began (timers set in it
    /// count from here, live and in a replay alike).
    pub(crate) call_time_ns: u64,
    /// The journal, and the replay when one runs.
    pub journal: JournalCtx,
    /// The component exports `handle-message`.
    pub(crate) takes_messages: bool,
    /// The component exports `handle-device-event`.
    pub(crate) takes_device_events: bool,
    /// Persisted (`devices`): the granted devices and what the guest holds.
    pub devices: crate::iface::devices::Devices,
}

impl ProcessCtx {
    /// A context for restored (or new) state, whose clock resumes at the
    /// state's time.
    pub fn new(
        state: HostState,
        timers: TimerTable,
        wasi: WasiState,
        max_memory_bytes: usize,
    ) -> Self {
        let clock = ProcessClock::starting_at(state.process_time_ns);
        let pending_bytes = state.pending.iter().map(|i| i.bytes()).sum();
        Self {
            state,
            timers,
            pending_bytes,
            undelivered_lines: 0,
            queued_counted: false,
            abandoned_lines: 0,
            clock,
            outbox: Outbox::default(),
            checkpoint_requested: false,
            limiter: MemoryLimiter {
                max_bytes: max_memory_bytes,
                refused: None,
            },
            wasi,
            call_deadline: None,
            call_timeout: Duration::ZERO,
            call_time_ns: 0,
            journal: JournalCtx::default(),
            takes_messages: false,
            takes_device_events: false,
            devices: Default::default(),
        }
    }
}
