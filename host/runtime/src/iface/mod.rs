//! Host implementations of the `phantom:os` interfaces, one file each.

mod clocks;
mod console;
pub mod devices;
pub(crate) mod messages;
mod process;
mod timers;
pub(crate) mod wasi;

impl crate::bindings::phantom::os::types::Host for crate::ctx::ProcessCtx {}
