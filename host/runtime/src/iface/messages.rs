//! `phantom:os/messages`: messages between the processes of one data
//! directory. `send` leaves through the exit (an effect, released once the
//! call that sent it is durable); a message arrives through the gate
//! (`Input::Message`, journaled by the receiver) and is handed to the
//! guest's `handle-message` export.

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use crate::ctx::ProcessCtx;
use crate::exit::Output;
use crate::gate::MAX_LINE_BYTES;

/// The interface's name in the linker.
const INTERFACE: &str = "phantom:os/messages@0.1.0";

/// `messages.send-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum SendError {
    /// The receiver's name cannot be a process name.
    #[component(name = "invalid-name")]
    InvalidName,
    /// The message is over the size limit (1 MiB).
    #[component(name = "too-large")]
    TooLarge,
    /// The call already sent the most messages one call may send.
    #[component(name = "too-many")]
    TooMany,
}

/// `messages.message`, as handed to `handle-message`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq, Eq)]
#[component(record)]
pub struct GuestMessage {
    /// The sending process (empty: from outside).
    pub sender: String,
    /// The sender's id for it.
    pub id: u64,
    /// Its bytes.
    pub data: Vec<u8>,
}

impl ProcessCtx {
    /// `send`: checks what it can now, numbers the message and hands it
    /// to the exit.
    pub fn send_message(&mut self, to: String, data: Vec<u8>) -> Result<u64, SendError> {
        if !crate::process::valid_name(&to) {
            return Err(SendError::InvalidName);
        }
        if data.len() + self.state.name.len() > MAX_LINE_BYTES {
            return Err(SendError::TooLarge);
        }
        if self.messages_left() == 0 {
            return Err(SendError::TooMany);
        }
        self.state.next_message_id += 1;
        let id = self.state.next_message_id;
        self.exit(Output::Message { to, id, data });
        Ok(id)
    }
}

/// Adds `phantom:os/messages` to the linker.
pub fn add_to_linker(linker: &mut Linker<ProcessCtx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    i.func_wrap(
        "send",
        |mut s: StoreContextMut<'_, ProcessCtx>, (to, data): (String, Vec<u8>)| {
            Ok((s.data_mut().send_message(to, data),))
        },
    )?;
    Ok(())
}
