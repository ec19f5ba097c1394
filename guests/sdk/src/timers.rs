//! Timers, delivered to [`crate::Process::on_timer`]. They are host state,
//! persisted with the process, so one set before a checkpoint still fires
//! after a restore.

use crate::bindings::phantom::os::timers;
use crate::{TimerError, TimerId};
use std::time::Duration;

/// Fires once, `delay` of process time from now.
pub fn one_shot(delay: Duration) -> Result<TimerId, TimerError> {
    timers::one_shot(saturating_nanos(delay))
}

/// Fires every `period` of process time, first one period from now. A host
/// that falls behind delivers one event, not a burst.
pub fn periodic(period: Duration) -> Result<TimerId, TimerError> {
    timers::periodic(saturating_nanos(period))
}

/// Cancels a timer; false if no such timer was active.
pub fn cancel(id: TimerId) -> bool {
    timers::cancel(id)
}

/// A `Duration` in nanoseconds; u64 holds 584 years, so saturating is exact
/// for every delay that could ever fire.
fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
