//! Running a process: inputs in through the gate, one call per input, what
//! the guest sent out back from the exit.
//!
//! ```text
//!   offer(input) ─► ProcessCtx::admit ─► queue
//!   step: queue empty and busy? admit(resume) ─► next input ─► handle(event)
//!         ─► outbox (outputs of this call) ─► returned to the drive loop
//!         trap / timeout / out of memory ─► Failure (the process stops; its
//!         last checkpoint is intact)
//! ```

use super::Process;
use crate::bindings::Status;
use crate::error::{Failure, FailureKind};
use crate::exit::{Output, console_text};
use crate::gate::{Input, InputRefused};
use crate::iface::wasi::GuestExit;
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

    /// Console lines admitted that the guest will never handle: queued when
    /// it exited, or when it failed. Taken, so each is counted once.
    pub fn take_undelivered_lines(&mut self) -> u64 {
        let ctx = self.store.data_mut();
        let queued = if ctx.state.exit_code.is_none() {
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

    /// The earliest timer deadline, in process time.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.timers().next_due_ns()
    }

    /// Runs one unit of work: the next queued input, else a `resume` for a
    /// busy guest. Returns what the guest sent out, or `None` if there was
    /// nothing to do. A failure stops the process (its last checkpoint
    /// stays intact).
    pub fn step(&mut self, rt: &Runtime) -> Result<Option<Vec<Output>>, Failure> {
        if self.exited().is_some() {
            return Ok(None);
        }
        let ctx = self.store.data_mut();
        if ctx.state.pending.is_empty() {
            if !ctx.state.busy {
                return Ok(None);
            }
            // A busy guest's next slice is an input like any other.
            if let Err(e) = ctx.admit(Input::Resume) {
                return Err(Failure::new(
                    FailureKind::HostIo,
                    format!("process '{}' cannot be resumed: {e}", self.name),
                ));
            }
        }
        let Some(input) = self.store.data_mut().next_input() else {
            return Ok(None);
        };
        self.deliver(rt, &input).map(Some)
    }

    fn deliver(&mut self, rt: &Runtime, input: &Input) -> Result<Vec<Output>, Failure> {
        self.begin_call(rt);
        let result = self
            .bindings
            .call_handle(&mut self.store, &input.to_event());
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
                    "process '{name}' ran out of memory: it asked for {} MiB, more than the limit of {} MiB",
                    bytes >> 20,
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
