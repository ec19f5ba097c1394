//! Messages to the other processes of the data directory.
//!
//! A message is an effect like console output: it leaves once the call that
//! sent it is durable, and arrives exactly once (a resend after a crash
//! carries the same id; the receiver's host drops it). Receive them with
//! [`crate::Process::on_message`].

use crate::bindings::phantom::os::messages;

pub use messages::{Message, SendError};

/// Sends `data` to process `to`; returns the message's id (increasing).
pub fn send(to: &str, data: &[u8]) -> Result<u64, SendError> {
    messages::send(to, data)
}
