//! `phantom:os/console`: bytes out through the process's exit.

use crate::bindings::phantom::os::console::Host;
use crate::ctx::ProcessCtx;
use crate::exit::Output;

impl Host for ProcessCtx {
    fn write(&mut self, bytes: Vec<u8>) {
        self.exit(Output::Console(bytes));
    }
}
