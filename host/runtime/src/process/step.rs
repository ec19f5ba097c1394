//! Running a process: inputs in through the gate, one call per input, what
//! the guest sent out back from the exit.
//!
//! ```text
//!   offer(input) ─► ProcessCtx::admit ─► journal: admit ─► queue
//!   step: next input (or resume for a busy guest) ─► journal: call
//!         ─► handle(event) / handle-message ─► journal: call-end (digest)
//!         ─► outbox (outputs of this call) ─► held until durable (journal
//!         on) or returned to the drive loop (off)
//!         trap / timeout / out of memory ─► Failure (the process stops; its
//!         last checkpoint is intact)
//! ```

use super::Process;
use super::journal::CallDone;
use crate::bindings::Status;
use crate::error::{Failure, FailureKind};
use crate::exit::{Output, console_text};
use crate::gate::{Input, InputRefused};
use crate::iface::messages::GuestMessage;
use crate::iface::wasi::GuestExit;
use crate::journal::{CallKind, Ended, Entry};
use crate::runtime::Runtime;

impl Process {
    /// Offers an input from outside through the gate. `QueueFull` means
    /// "later": the caller keeps the input and offers it again.
    pub fn offer(&mut self, input: Input) -> Result<(), InputRefused> {
        self.store.data_mut().admit(input)
    }

    /// Whether the gate would take an input of `bytes` bytes now.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.store.data().has_room(bytes)
    }

    /// Console lines queued now (admitted, not yet handled), taken from
    /// the count `take_undelivered_lines` gives (the lines stay queued).
    pub fn take_queued_lines(&mut self) -> u64 {
        let ctx = self.store.data_mut();
        let queued = ctx
            .state
            .pending
            .iter()
            .filter(|i| matches!(i, Input::ConsoleLine(_)))
            .count() as u64;
        ctx.queued_counted = true;
        queued + std::mem::take(&mut ctx.abandoned_lines)
    }

    /// Console lines admitted that the guest will never handle: queued when
    /// it exited, or when it failed. Taken, so each is counted once.
    pub fn take_undelivered_lines(&mut self) -> u64 {
        let ctx = self.store.data_mut();
        let queued = if ctx.state.exit_code.is_none() && !ctx.queued_counted {
            ctx.state
                .pending
                .iter()
                .filter(|i| matches!(i, Input::ConsoleLine(_)))
                .count() as u64
        } else {
            0
        };
        std::mem::take(&mut ctx.undelivered_lines) + queued
    }

    /// Admits a timer input for every timer due in process time.
    pub fn fire_due_timers(&mut self) {
        self.store.data_mut().fire_due_timers();
    }

    /// The earliest timer deadline or sensor sample, in process time.
    pub fn next_due_ns(&self) -> Option<u64> {
        // A sampled sensor's next sample wakes the drive loop like a timer.
        let sample = self.store.data().devices.next_sample_ns();
        match (self.timers().next_due_ns(), sample) {
            (Some(t), Some(s)) => Some(t.min(s)),
            (t, s) => t.or(s),
        }
    }

    /// `step_held`, then releases what the guest sent out at once, without
    /// waiting for the journal to be durable (tests, benchmarks and other
    /// callers that drive a process by hand; the drive loop releases
    /// effects only once their causes are durable). Returns the outputs, or
    /// `None` if there was nothing to do.
    pub fn step(&mut self, rt: &Runtime) -> Result<Option<Vec<Output>>, Failure> {
        if self.step_held(rt)?.is_none() {
            return Ok(None);
        }
        let held = std::mem::take(&mut self.store.data_mut().journal.state.held);
        if let Some(last) = held.last() {
            self.mark_released(last.call);
        }
        for h in &held {
            if let Output::Device(effect) = &h.output {
                self.apply_device_now(effect);
            }
        }
        Ok(Some(held.into_iter().map(|h| h.output).collect()))
    }

    /// Runs one unit of work: the next queued input, else a `resume` for a
    /// busy guest. What the guest sends out is held (see `take_ready`)
    /// until the call's journal entries are durable. Returns `None` if there
    /// was nothing to do. A failure stops the process (its last checkpoint
    /// stays intact).
    pub fn step_held(&mut self, rt: &Runtime) -> Result<Option<()>, Failure> {
        if self.exited().is_some() {
            return Ok(None);
        }
        let ctx = self.store.data_mut();
        if ctx.journal.state.held.len() >= crate::journal::MAX_HELD {
            // What it sent out has not left yet: no more work until it has.
            return Ok(None);
        }
        let (kind, input) = if ctx.state.pending.is_empty() {
            if !ctx.state.busy {
                return Ok(None);
            }
            // A busy guest's next slice.
            (CallKind::Resume, Input::Resume)
        } else {
            match ctx.next_input() {
                Some(input) => (CallKind::Next, input),
                None => return Ok(None),
            }
        };
        let time_ns = ctx.clock.now_ns();
        let call = ctx
            .journal
            .append(&Entry::Call { time_ns, kind })
            .map_err(|e| {
                Failure::new(
                    FailureKind::HostIo,
                    format!("process '{}' cannot run: {e}", self.name),
                )
            })?;
        let done = match self.call(rt, kind, &input, time_ns) {
            Ok(done) => done,
            Err(failure) => {
                // The input that made the guest fail is consumed: a replay
                // skips this call, so the process comes back as it was
                // before it (its checkpoint plus the journal up to here).
                // Not when the host or the image failed it (a damaged page
                // read lazily): the guest is not at fault, so the call is
                // abandoned (a replay drops it and the reads it made on
                // memory it could not trust, and the input goes to the
                // next call).
                if let Some(call) = call {
                    let abandoned =
                        matches!(failure.kind, FailureKind::HostIo | FailureKind::BadImage);
                    let end = if abandoned {
                        // Its line waits in the journal with the queued ones.
                        if matches!(input, Input::ConsoleLine(_)) {
                            self.store.data_mut().abandoned_lines += 1;
                        }
                        Entry::CallAbandoned { call }
                    } else {
                        Entry::CallFailed { call }
                    };
                    let j = &mut self.store.data_mut().journal;
                    j.trouble = None;
                    if j.append(&end).is_ok()
                        && let Some(log) = &j.log
                    {
                        let _ = log.sync();
                    }
                }
                return Err(failure);
            }
        };
        let Some(call) = call else {
            // No journal: released at once.
            self.hold(0, 0, done.outputs);
            return Ok(Some(()));
        };
        let ctx = self.store.data_mut();
        let end = ctx
            .journal
            .append(&Entry::CallEnd {
                ended: done.ended,
                digest: done.digest,
            })
            .map_err(|e| {
                Failure::new(FailureKind::HostIo, format!("process '{}': {e}", self.name))
            })?
            .unwrap_or(call + 1);
        self.hold(call, end, done.outputs);
        Ok(Some(()))
    }

    /// One call: `input` handed to the guest at process time `time_ns`
    /// (live or replayed), its digest computed, its status applied.
    pub(super) fn call(
        &mut self,
        rt: &Runtime,
        kind: CallKind,
        input: &Input,
        time_ns: u64,
    ) -> Result<CallDone, Failure> {
        {
            let ctx = self.store.data_mut();
            ctx.call_time_ns = time_ns;
            let j = &mut ctx.journal;
            j.digest.reset();
            j.hash(&time_ns.to_le_bytes());
            j.hash(&[kind as u8]);
            j.hash(
                &Entry::Admit {
                    time_ns: 0,
                    input: input.clone(),
                }
                .encode(),
            );
        }
        let outputs = self.deliver(rt, input)?;
        let ctx = self.store.data_mut();
        if let Some(trouble) = ctx.journal.trouble.take() {
            return Err(trouble);
        }
        let ended = match (ctx.state.exit_code, ctx.state.busy) {
            (Some(code), _) => Ended::Exit(code),
            (None, true) => Ended::Busy,
            (None, false) => Ended::Idle,
        };
        ctx.journal.hash_outputs(&outputs);
        ctx.journal
            .hash(&Entry::CallEnd { ended, digest: 0 }.encode());
        let digest = ctx.journal.digest.digest();
        Ok(CallDone {
            outputs,
            ended,
            digest,
        })
    }

    fn deliver(&mut self, rt: &Runtime, input: &Input) -> Result<Vec<Output>, Failure> {
        self.begin_call(rt);
        let result = match input {
            Input::Message { from, id, data } => match &self.handle_message {
                Some(f) => f
                    .call(
                        &mut self.store,
                        (GuestMessage {
                            // A `phantom send` key is the host's, not a
                            // sender the guest could answer.
                            sender: if from.starts_with('.') {
                                String::new()
                            } else {
                                from.clone()
                            },
                            id: *id,
                            data: data.clone(),
                        },),
                    )
                    .map(|(status,)| status),
                None => Err(wasmtime::Error::msg(
                    "a message arrived, but the component does not export `handle-message`",
                )),
            },
            Input::GpioEdge { pin, high, time_ns } => match &self.handle_device_event {
                Some(f) => {
                    let time_ns = *time_ns;
                    f.call(
                        &mut self.store,
                        (crate::iface::devices::gpio::WitDeviceEvent::GpioEdge(
                            crate::iface::devices::gpio::WitGpioEdge {
                                pin: *pin,
                                level: if *high {
                                    crate::iface::devices::gpio::WitLevel::High
                                } else {
                                    crate::iface::devices::gpio::WitLevel::Low
                                },
                                time_ns,
                            },
                        ),),
                    )
                    .map(|(status,)| status)
                }
                None => Err(wasmtime::Error::msg(
                    "a device event arrived, but the component does not export `handle-device-event`",
                )),
            },
            Input::SerialData {
                port,
                bytes,
                time_ns,
            } => match &self.handle_device_event {
                Some(f) => f
                    .call(
                        &mut self.store,
                        (crate::iface::devices::gpio::WitDeviceEvent::SerialData(
                            crate::iface::devices::serial::WitSerialData {
                                port: *port,
                                data: bytes.clone(),
                                time_ns: *time_ns,
                            },
                        ),),
                    )
                    .map(|(status,)| status),
                None => Err(wasmtime::Error::msg(
                    "a device event arrived, but the component does not export `handle-device-event`",
                )),
            },
            Input::SensorSample {
                sensor,
                readings,
                time_ns,
            } => match &self.handle_device_event {
                Some(f) => f
                    .call(
                        &mut self.store,
                        (crate::iface::devices::gpio::WitDeviceEvent::SampleReady(
                            crate::iface::devices::sensor::wit_sample(*sensor, readings, *time_ns),
                        ),),
                    )
                    .map(|(status,)| status),
                None => Err(wasmtime::Error::msg(
                    "a device event arrived, but the component does not export `handle-device-event`",
                )),
            },
            _ => self
                .bindings
                .call_handle(&mut self.store, &input.to_event()),
        };
        let output = self.store.data_mut().outbox.take();
        if let Some(why) = self.memories.lazy_error() {
            // The guest may have read zeroes where its image had bytes:
            // neither its output nor its state can be trusted.
            return Err(Failure::new(
                FailureKind::BadImage,
                format!(
                    "process '{}' cannot be restored from its image: {why}",
                    self.name
                ),
            ));
        }
        match result {
            Ok(status) => {
                self.apply_status(status);
                Ok(output)
            }
            Err(e) if e.downcast_ref::<GuestExit>().is_some() => {
                let code = e.downcast_ref::<GuestExit>().map_or(1, |x| x.0);
                self.apply_status(Status::Exit(code));
                Ok(output)
            }
            Err(trap) => Err(self.trap_failure(rt, &trap, &output)),
        }
    }

    /// Describes a failed call: its kind, a first line that says what
    /// happened (with a guest's panic message), then the details.
    pub(super) fn trap_failure(
        &mut self,
        rt: &Runtime,
        trap: &wasmtime::Error,
        output: &[Output],
    ) -> Failure {
        let name = &self.name;
        let text = String::from_utf8_lossy(&console_text(output)).into_owned();
        let (kind, summary) = if let Some(bytes) = self.store.data_mut().limiter.refused.take() {
            (
                FailureKind::OutOfMemory,
                format!(
                    "process '{name}' ran out of memory: it asked to grow a memory to {} MiB, more than the limit of {} MiB (--max-memory-mib)",
                    bytes.div_ceil(1 << 20),
                    rt.config.max_memory_bytes >> 20
                ),
            )
        } else if matches!(
            trap.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            (
                FailureKind::Timeout,
                format!(
                    "process '{name}' ran longer than the call timeout of {:?} in one call (an endless loop?)",
                    rt.config.call_timeout
                ),
            )
        } else if let Some(wait) = trap.downcast_ref::<crate::iface::wasi::WaitTimeout>() {
            (FailureKind::Timeout, format!("process '{name}': {wait}"))
        } else if let Some((message, location)) = panic_message(&text) {
            (
                FailureKind::Trap,
                format!("process '{name}' panicked: {message} (at {location})"),
            )
        } else {
            let why = match trap.downcast_ref::<wasmtime::Trap>() {
                Some(t) => t.to_string(),
                None => trap.to_string(),
            };
            (
                FailureKind::Trap,
                format!("process '{name}' trapped: {why}"),
            )
        };
        let mut message = summary;
        if !text.is_empty() {
            message.push_str("\nits output in that call:\n");
            message.push_str(text.trim_end());
        }
        message.push_str(&format!("\n{trap:?}"));
        Failure::new(kind, message)
    }
}

/// The message and location of a Rust panic in a guest's output: the SDK's
/// panic hook prints `panicked at <location>:\n<message>` before the abort.
fn panic_message(output: &str) -> Option<(String, String)> {
    let start = output.rfind("panicked at ")?;
    let rest = &output[start + "panicked at ".len()..];
    let (location, message) = rest.split_once(":\n")?;
    let message = message.trim_end();
    let message = if message.is_empty() {
        "(no message)".to_string()
    } else {
        message.lines().collect::<Vec<_>>().join(" / ")
    };
    Some((message, location.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn panic_messages_are_found() {
        assert_eq!(
            panic_message("hello\npanicked at src/lib.rs:50:22:\nmisbehave asked to panic\n"),
            Some((
                "misbehave asked to panic".to_string(),
                "src/lib.rs:50:22".to_string()
            ))
        );
        assert_eq!(panic_message("no panic here"), None);
    }
}
