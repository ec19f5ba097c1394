//! The exit: everything a guest sends to the outside leaves through here.
//!
//! ```text
//!   console.write ─► ProcessCtx::exit(Output::Console) ─► Outbox (this call)
//!   gpio.set-level, display.flush ─► ProcessCtx::exit(Output::Device) ─┘
//!        step returns the call's outputs ─► the drive loop ─► OutputSink (stdout, a test, ...)
//! ```
//! A call's outputs are released only after it returns; with the journal
//! on, the process holds them (`journal::Held`) until the call's entries
//! are durable, and a replay skips those already released.

use crate::ctx::ProcessCtx;

/// Console bytes one call may emit; beyond it output is cut with a marker,
/// so a runaway guest cannot make the host buffer without bound.
pub const MAX_OUTPUT_PER_CALL: usize = 1 << 20;

/// Messages one call may send.
pub const MAX_MESSAGES_PER_CALL: usize = 1024;

/// Something a guest sent out.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    /// Bytes written to the console.
    Console(Vec<u8>),
    /// A message to another process of the data directory.
    Message {
        /// The receiving process.
        to: String,
        /// The sender's id for it (increasing).
        id: u64,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A change to a device (a pin's level, a display's frame), made once
    /// the call is durable.
    Device(crate::iface::devices::DeviceEffect),
}

/// What the guest sent out during one call.
#[derive(Debug, Default)]
pub struct Outbox {
    outputs: Vec<Output>,
    console_bytes: usize,
    /// The call's console output was cut (the note is written once).
    console_cut: bool,
    messages: usize,
    /// The guest's bytes in device effects (serial writes) this call.
    device_bytes: usize,
}

impl Outbox {
    /// The outputs of the current call so far (a newer frame of a display
    /// drops the pixels of an older one).
    pub(crate) fn outputs_mut(&mut self) -> &mut [Output] {
        &mut self.outputs
    }

    /// Takes the outputs of the call that just returned.
    pub fn take(&mut self) -> Vec<Output> {
        self.console_bytes = 0;
        self.console_cut = false;
        self.messages = 0;
        self.device_bytes = 0;
        std::mem::take(&mut self.outputs)
    }
}

/// Where a drive loop releases what processes send out.
pub trait OutputSink {
    /// `process` sent `output`.
    fn emit(&mut self, process: &str, output: &Output);
}

/// The console bytes among `outputs`, concatenated.
pub fn console_text(outputs: &[Output]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in outputs {
        if let Output::Console(b) = o {
            out.extend_from_slice(b);
        }
    }
    out
}

impl ProcessCtx {
    /// The one exit: the guest sends `output` out.
    pub fn exit(&mut self, output: Output) {
        match output {
            Output::Console(bytes) => self.exit_console(&bytes),
            Output::Device(effect) => {
                self.outbox.device_bytes += effect.bytes_len();
                // A run of writes to one port is one effect.
                let absorbed = match self.outbox.outputs.last_mut() {
                    Some(Output::Device(last)) => last.absorb(&effect),
                    _ => false,
                };
                if !absorbed {
                    self.outbox.outputs.push(Output::Device(effect));
                }
            }
            message @ Output::Message { .. } => {
                self.outbox.messages += 1;
                self.outbox.outputs.push(message);
            }
        }
    }

    /// The guest's bytes in device effects the current call made.
    pub(crate) fn device_bytes(&self) -> usize {
        self.outbox.device_bytes
    }

    /// Messages the current call may still send.
    pub(crate) fn messages_left(&self) -> usize {
        MAX_MESSAGES_PER_CALL.saturating_sub(self.outbox.messages)
    }

    /// `exit(Output::Console(bytes))` for bytes the caller only borrows.
    pub(crate) fn exit_console(&mut self, bytes: &[u8]) {
        let outbox = &mut self.outbox;
        if outbox.console_cut || bytes.is_empty() {
            return;
        }
        let room = MAX_OUTPUT_PER_CALL.saturating_sub(outbox.console_bytes);
        let mut push = |b: &[u8]| {
            outbox.console_bytes += b.len();
            match outbox.outputs.last_mut() {
                Some(Output::Console(last)) => last.extend_from_slice(b),
                _ => outbox.outputs.push(Output::Console(b.to_vec())),
            }
        };
        if bytes.len() <= room {
            push(bytes);
        } else {
            // Whether the limit falls inside this write or the writes
            // before it filled it exactly (a long line written in pieces).
            push(&bytes[..room]);
            push(b"\n[phantom: console output of this call cut at 1 MiB]\n");
            outbox.console_cut = true;
        }
    }
}
