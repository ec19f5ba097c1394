//! `phantom:os/process`: what the process knows of itself.

use crate::bindings::phantom::os::process::Host;
use crate::ctx::ProcessCtx;

impl Host for ProcessCtx {
    fn name(&mut self) -> String {
        self.state.name.clone()
    }

    fn restore_count(&mut self) -> u64 {
        self.state.restore_count
    }

    fn checkpoint_id(&mut self) -> u64 {
        self.state.checkpoint_id
    }

    fn request_checkpoint(&mut self) {
        self.checkpoint_requested = true;
    }
}
