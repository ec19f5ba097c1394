//! `phantom:os/timers`: timers live in the persisted host state; they fire
//! as events in process time.

use crate::bindings::phantom::os::timers::{Host, TimerError, TimerId};
use crate::ctx::ProcessCtx;
use crate::state::{MAX_TIMERS, MIN_TIMER_PERIOD_NS, TimerState};

impl ProcessCtx {
    fn add_timer(&mut self, delay_ns: u64, period_ns: Option<u64>) -> Result<TimerId, TimerError> {
        if self.state.timers.len() >= MAX_TIMERS {
            return Err(TimerError::TooManyTimers);
        }
        let mut id = self.state.next_timer_id.max(1);
        while self.state.timers.contains_key(&id) {
            id = id.wrapping_add(1).max(1);
        }
        self.state.next_timer_id = id.wrapping_add(1).max(1);
        let due_ns = self.clock.now_ns().saturating_add(delay_ns);
        self.state
            .timers
            .insert(id, TimerState { due_ns, period_ns });
        Ok(id)
    }
}

impl Host for ProcessCtx {
    fn one_shot(&mut self, delay_ns: u64) -> Result<TimerId, TimerError> {
        self.add_timer(delay_ns, None)
    }

    fn periodic(&mut self, period_ns: u64) -> Result<TimerId, TimerError> {
        if period_ns < MIN_TIMER_PERIOD_NS {
            return Err(TimerError::PeriodTooShort);
        }
        self.add_timer(period_ns, Some(period_ns))
    }

    fn cancel(&mut self, id: TimerId) -> bool {
        self.state.timers.remove(&id).is_some()
    }
}
