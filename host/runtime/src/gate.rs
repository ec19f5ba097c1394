//! The gate: everything nondeterministic that reaches a guest enters here,
//! and the journal records it here before the guest sees it.
//!
//! ```text
//!   console line ─┐
//!   console closed┤
//!   message ──────┼─► ProcessCtx::admit(Input) ─► journal: admit ─► queue (persisted)
//!   timer fired ──┤        (refuses when full: the caller waits)
//!   GPIO edge ────┤        (poll_device_events: watched inputs,
//!   serial data ──┤         watched serial ports
//!   sensor sample ┘         and sampled sensors)
//!   step: journal: call ─► handle(event) ─► journal: call-end (digest)
//!   clock reads ─────► gate_wall_now / gate_monotonic_now ─┐
//!   random numbers ──► gate_random_bytes / gate_random_u64 ├► journal: the value
//!   restore count, checkpoint id ─► gate_host_value ───────┘
//!   replay: the same functions hand out the recorded values instead
//! ```
//! Inputs from outside (the drive loop's stdin feed, messages, `phantom
//! send`) and the timers the host fires pass through `admit`; every host
//! call whose result the host does not control passes through a `gate_*`
//! function, which records it (`journal::JournalCtx::read`) or, during a
//! replay, returns what was recorded and checks that the guest asked for
//! the same kind of value.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::bindings::Event;
use crate::ctx::ProcessCtx;
use crate::journal::{Entry, HostValue};

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
    /// A message (`handle-message`): from a process of the same data
    /// directory (empty: from outside, `phantom send`), with the sender's id.
    Message {
        /// The sending process; empty for `phantom send`, or the request's
        /// key and the message's place in it (`.send-<key>/<n>`, see
        /// `journal::OUTSIDE_KEY_PREFIX`), which the guest sees as empty.
        from: String,
        /// The sender's id for it.
        id: u64,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A watched input pin changed level (`handle-device-event`).
    GpioEdge {
        /// The pin's number.
        pin: u32,
        /// Its level after the edge.
        high: bool,
        /// Process time at which the host saw it.
        time_ns: u64,
    },
    /// Bytes arrived on a watched serial port (`handle-device-event`).
    SerialData {
        /// The port's number.
        port: u32,
        /// The bytes, in order.
        bytes: Vec<u8>,
        /// Process time at which the host read them.
        time_ns: u64,
    },
    /// A sampled sensor was measured (`handle-device-event`,
    /// `iface/devices/sensor.rs`).
    SensorSample {
        /// The sensor's number.
        sensor: u32,
        /// What it read, or the error's journal code.
        readings: Result<Vec<crate::iface::devices::sensor::SampleValue>, u8>,
        /// Process time of the sample.
        time_ns: u64,
    },
}

impl Input {
    /// The WIT value.
    pub fn to_event(&self) -> Event {
        match self {
            Input::Timer(id) => Event::Timer(*id),
            Input::ConsoleLine(s) => Event::ConsoleLine(s.clone()),
            Input::ConsoleClosed => Event::ConsoleClosed,
            Input::Resume => Event::Resume,
            // Delivered through `handle-message` and
            // `handle-device-event`, never as events.
            Input::Message { .. }
            | Input::GpioEdge { .. }
            | Input::SerialData { .. }
            | Input::SensorSample { .. } => Event::Resume,
        }
    }

    /// Bytes the input holds (for the queue's byte bound).
    pub fn bytes(&self) -> usize {
        match self {
            Input::ConsoleLine(s) => s.len(),
            // The key of a `phantom send` (a sender beginning with `.`)
            // is not counted: a message from outside may take the whole
            // limit, keyed or not.
            Input::Message { from, data, .. } if from.starts_with('.') => data.len(),
            Input::Message { from, data, .. } => from.len() + data.len(),
            Input::SerialData { bytes, .. } => bytes.len(),
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
    /// The process takes no messages (its component does not export
    /// `handle-message`).
    #[error(
        "it does not take messages: its component does not export `handle-message` (write it with the SDK's `on_message`)"
    )]
    NoMessages,
    /// The process takes no device events.
    #[error("it does not take device events: its component does not export `handle-device-event`")]
    NoDeviceEvents,
    /// The journal cannot record it.
    #[error("{0}")]
    Journal(String),
}

impl ProcessCtx {
    /// The one entry of inputs: records `input` in the journal, then
    /// queues it for the guest. A message from a process whose id is not
    /// newer than the last one taken from that sender is a duplicate (a
    /// sender resending after a crash): taken, and dropped.
    pub fn admit(&mut self, input: Input) -> Result<(), InputRefused> {
        let now = self.clock.now_ns();
        self.admit_at(input, now)
    }

    /// `admit` at process time `time_ns` (a timer's firing time).
    fn admit_at(&mut self, input: Input, time_ns: u64) -> Result<(), InputRefused> {
        self.check_admit(&input)?;
        if self.journal.is_duplicate(&input) {
            return Ok(());
        }
        self.journal
            .append(&crate::journal::Entry::Admit {
                time_ns,
                input: input.clone(),
            })
            .map_err(InputRefused::Journal)?;
        self.enqueue(input);
        Ok(())
    }

    /// Queues an input the journal already holds (replay).
    pub(crate) fn admit_recorded(&mut self, input: Input) -> Result<(), InputRefused> {
        self.check_admit(&input)?;
        if self.journal.is_duplicate(&input) {
            return Ok(());
        }
        self.enqueue(input);
        Ok(())
    }

    fn check_admit(&self, input: &Input) -> Result<(), InputRefused> {
        if self.state.exit_code.is_some() {
            return Err(InputRefused::Exited);
        }
        let size = input.bytes();
        if size > MAX_LINE_BYTES {
            let what = match input {
                Input::Message { .. } => "a message",
                _ => "a console line",
            };
            return Err(InputRefused::TooLarge(format!(
                "{what} of {size} bytes is longer than the limit of {MAX_LINE_BYTES}"
            )));
        }
        if let Input::Message { from, .. } = input {
            if !self.takes_messages {
                return Err(InputRefused::NoMessages);
            }
            if from.len() > crate::journal::entry::MAX_SENDER_BYTES {
                return Err(InputRefused::TooLarge(format!(
                    "a sender name of {} bytes is longer than the limit",
                    from.len()
                )));
            }
        }
        if matches!(
            input,
            Input::GpioEdge { .. } | Input::SerialData { .. } | Input::SensorSample { .. }
        ) && !self.takes_device_events
        {
            return Err(InputRefused::NoDeviceEvents);
        }
        if *input == Input::Resume {
            return Err(InputRefused::TooLarge("`resume` is never queued".into()));
        }
        if !self.has_room(size) {
            return Err(InputRefused::QueueFull);
        }
        Ok(())
    }

    fn enqueue(&mut self, input: Input) {
        self.journal.note_admitted(&input);
        self.devices.note_admitted(&input);
        self.pending_bytes += input.bytes();
        self.state.pending.push_back(input);
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
            if self.admit_at(Input::Timer(id), now).is_ok() {
                self.timers.fired(id, now);
            }
        }
    }

    /// Wall-clock time read by the guest.
    pub fn gate_wall_now(&mut self) -> (u64, u32) {
        self.gate_read(
            "the wall clock",
            |_| {
                let d = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Ok((d.as_secs(), d.subsec_nanos()))
            },
            |&(seconds, nanoseconds)| Entry::WallClock {
                seconds,
                nanoseconds,
            },
            |e| match e {
                Entry::WallClock {
                    seconds,
                    nanoseconds,
                } => Some((*seconds, *nanoseconds)),
                _ => None,
            },
        )
        .unwrap_or_default()
    }

    /// Process time read by the guest. A replayed read may be later than
    /// the clock the replay set (the call's recorded start): the clock is
    /// moved up to it, so the next live read never goes back.
    pub fn gate_monotonic_now(&mut self) -> u64 {
        let v = self
            .gate_read(
                "the process clock",
                |ctx| Ok(ctx.clock.now_ns()),
                |&v| Entry::Monotonic(v),
                |e| match e {
                    Entry::Monotonic(v) => Some(*v),
                    _ => None,
                },
            )
            .unwrap_or_default();
        if self.clock.now_ns() < v {
            self.clock.reset_to(v);
        }
        v
    }

    /// A host value the guest reads that changes with restores and
    /// checkpoints (so a replay must see the recorded one).
    pub fn gate_host_value(&mut self, which: HostValue) -> u64 {
        self.gate_read(
            match which {
                HostValue::RestoreCount => "its restore count",
                HostValue::CheckpointId => "its checkpoint id",
            },
            |ctx| {
                Ok(match which {
                    HostValue::RestoreCount => ctx.state.restore_count,
                    HostValue::CheckpointId => ctx.state.checkpoint_id,
                })
            },
            |&v| Entry::HostValue(which, v),
            |e| match e {
                Entry::HostValue(w, v) if *w == which => Some(*v),
                _ => None,
            },
        )
        .unwrap_or_default()
    }

    /// One nondeterministic read: live, the value from `live`, recorded;
    /// in a replay, the recorded value (a different kind of entry is a
    /// divergence: the guest gets the live value and the call fails).
    pub(crate) fn gate_read<T>(
        &mut self,
        what: &str,
        live: impl FnOnce(&mut Self) -> Result<T, String>,
        to_entry: impl Fn(&T) -> Entry,
        from_entry: impl Fn(&Entry) -> Option<T>,
    ) -> Result<T, String> {
        if let Some(recorded) = self.journal.next_read(what, &from_entry) {
            return Ok(recorded);
        }
        let value = live(self)?;
        self.journal.record_read(&to_entry(&value));
        Ok(value)
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
        self.gate_read(
            "random bytes",
            |_| {
                let mut buf = vec![0u8; len];
                getrandom::fill(&mut buf)
                    .map_err(|e| format!("the host's random source failed: {e}"))?;
                Ok(buf)
            },
            |b| Entry::RandomBytes(b.clone()),
            |e| match e {
                Entry::RandomBytes(b) if b.len() == len => Some(b.clone()),
                _ => None,
            },
        )
        .map_err(wasmtime::Error::msg)
    }

    /// A random u64 read by the guest.
    pub fn gate_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.gate_read(
            "a random u64",
            |_| host_random_u64().map_err(|e| e.to_string()),
            |&v| Entry::RandomU64(v),
            |e| match e {
                Entry::RandomU64(v) => Some(*v),
                _ => None,
            },
        )
        .map_err(wasmtime::Error::msg)
    }
}
