//! `phantom:os/process`: what the process knows of itself.

use crate::bindings::phantom::os::process::Host;
use crate::ctx::ProcessCtx;
use crate::journal::HostValue;

impl Host for ProcessCtx {
    fn name(&mut self) -> String {
        self.state.name.clone()
    }

    fn restore_count(&mut self) -> u64 {
        self.gate_host_value(HostValue::RestoreCount)
    }

    fn checkpoint_id(&mut self) -> u64 {
        self.gate_host_value(HostValue::CheckpointId)
    }

    fn request_checkpoint(&mut self) {
        self.checkpoint_requested = true;
    }
}
