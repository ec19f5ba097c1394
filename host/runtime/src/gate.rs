//! The gate: everything nondeterministic that reaches a guest enters here.
//!
//! ```text
//!   console line ─┐
//!   console closed┤
//!   timer fired ──┼─► ProcessCtx::admit(Input) ─► queue (persisted) ─► step: handle(event)
//!   resume ───────┘        (refuses when full: the caller waits)
//!   clock reads ─────► ProcessCtx::gate_wall_now / gate_monotonic_now
//!   random numbers ──► ProcessCtx::gate_random_bytes / gate_random_u64
//! ```
//! Inputs from outside (the drive loop's stdin feed, later messages and
//! journal replay), the timers the host fires, and the `resume` a busy
//! guest asks for all pass through `admit`; every host call whose result the
//! host does not control passes through a `gate_*` function. The journal of
//! a later issue records at exactly these places.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::bindings::Event;
use crate::ctx::ProcessCtx;

/// Most inputs queued per process. Bounds what a process holds in memory
/// and in its `host` section; a full queue makes the sender wait.
pub const MAX_PENDING_INPUTS: usize = 4096;
/// Most bytes of console lines queued per process: the queue is saved in
/// the `host` section, whose size the image store caps.
pub const MAX_PENDING_BYTES: usize = 16 << 20;
/// The longest console line a process accepts.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One input to a guest, in a form that is persisted while queued.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    /// `event.timer`.
    Timer(u32),
    /// `event.console-line`.
    ConsoleLine(String),
    /// `event.console-closed`.
    ConsoleClosed,
    /// `event.resume`: the guest returned `busy`.
    Resume,
}

impl Input {
    /// The WIT value.
    pub fn to_event(&self) -> Event {
        match self {
            Input::Timer(id) => Event::Timer(*id),
            Input::ConsoleLine(s) => Event::ConsoleLine(s.clone()),
            Input::ConsoleClosed => Event::ConsoleClosed,
            Input::Resume => Event::Resume,
        }
    }

    /// Bytes the input holds (for the queue's byte bound).
    pub fn bytes(&self) -> usize {
        match self {
            Input::ConsoleLine(s) => s.len(),
            _ => 0,
        }
    }
}

/// Why the gate did not take an input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputRefused {
    /// The queue is full: try again once the guest has handled some.
    #[error("the input queue is full")]
    QueueFull,
    /// The process has exited; it takes no more input.
    #[error("the process has exited")]
    Exited,
    /// The input can never be taken (a line over the size limit).
    #[error("{0}")]
    TooLarge(String),
}

impl ProcessCtx {
    /// The one entry of inputs: queues `input` for the guest.
    pub fn admit(&mut self, input: Input) -> Result<(), InputRefused> {
        if self.state.exit_code.is_some() {
            return Err(InputRefused::Exited);
        }
        let size = input.bytes();
        if size > MAX_LINE_BYTES {
            return Err(InputRefused::TooLarge(format!(
                "a console line of {size} bytes is longer than the limit of {MAX_LINE_BYTES}"
            )));
        }
        if !self.has_room(size) {
            return Err(InputRefused::QueueFull);
        }
        self.pending_bytes += size;
        self.state.pending.push_back(input);
        Ok(())
    }

    /// The next queued input, taken off the queue for delivery.
    pub(crate) fn next_input(&mut self) -> Option<Input> {
        let input = self.state.pending.pop_front()?;
        self.pending_bytes = self.pending_bytes.saturating_sub(input.bytes());
        Some(input)
    }

    /// Whether `admit` would take an input of `bytes` bytes now.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.state.exit_code.is_none()
            && self.state.pending.len() < MAX_PENDING_INPUTS
            && self.pending_bytes + bytes <= MAX_PENDING_BYTES
    }

    /// Admits a `timer` input for every timer due in process time; a
    /// periodic timer that fell behind fires once and is rescheduled from
    /// now (no burst). A timer whose input the queue cannot take now fires
    /// at the next look instead.
    pub fn fire_due_timers(&mut self) {
        let now = self.clock.now_ns();
        for id in self.timers.due(now) {
            if self.admit(Input::Timer(id)).is_ok() {
                self.timers.fired(id, now);
            }
        }
    }

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
}

/// A random u64 from the host's random source.
pub(crate) fn host_random_u64() -> std::io::Result<u64> {
    getrandom::u64()
        .map_err(|e| std::io::Error::other(format!("the host's random source failed: {e}")))
}

impl ProcessCtx {
    /// Random bytes read by the guest (WASI `random` and `insecure`).
    pub fn gate_random_bytes(&mut self, len: usize) -> wasmtime::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        getrandom::fill(&mut buf)
            .map_err(|e| wasmtime::Error::msg(format!("the host's random source failed: {e}")))?;
        Ok(buf)
    }

    /// A random u64 read by the guest.
    pub fn gate_random_u64(&mut self) -> wasmtime::Result<u64> {
        host_random_u64().map_err(wasmtime::Error::msg)
    }
}
