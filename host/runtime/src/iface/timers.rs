//! `phantom:os/timers`: timers live in the persisted timer table; they fire
//! as inputs through the gate, in process time.

use crate::bindings::phantom::os::timers::{Host, TimerError, TimerId};
use crate::ctx::ProcessCtx;
use crate::persist::TimerRefused;

fn timers_refusal(r: TimerRefused) -> TimerError {
    match r {
        TimerRefused::TooMany => TimerError::TooManyTimers,
        TimerRefused::PeriodTooShort => TimerError::PeriodTooShort,
    }
}

impl Host for ProcessCtx {
    fn one_shot(&mut self, delay_ns: u64) -> Result<TimerId, TimerError> {
        let now = self.call_time_ns;
        self.timers.add(now, delay_ns, None).map_err(timers_refusal)
    }

    fn periodic(&mut self, period_ns: u64) -> Result<TimerId, TimerError> {
        let now = self.call_time_ns;
        self.timers
            .add(now, period_ns, Some(period_ns))
            .map_err(timers_refusal)
    }

    fn cancel(&mut self, id: TimerId) -> bool {
        self.timers.cancel(id)
    }
}
