//! `phantom:os/clocks`: wall and process time, read through the gate.

use crate::bindings::phantom::os::clocks::{Datetime, Host};
use crate::ctx::ProcessCtx;

impl Host for ProcessCtx {
    fn wall_now(&mut self) -> Datetime {
        let (seconds, nanoseconds) = self.gate_wall_now();
        Datetime {
            seconds,
            nanoseconds,
        }
    }

    fn monotonic_now(&mut self) -> u64 {
        self.gate_monotonic_now()
    }
}
