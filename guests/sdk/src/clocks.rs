//! Clocks, read through the host's gate for nondeterminism.

use crate::bindings::phantom::os::clocks;
use std::time::Duration;

pub use clocks::Datetime;

/// Wall-clock time (UTC) since the Unix epoch. It may jump, and it keeps
/// running while the process is not.
pub fn wall_now() -> Duration {
    let Datetime {
        seconds,
        nanoseconds,
    } = clocks::wall_now();
    Duration::new(seconds, nanoseconds)
}

/// The process's monotonic clock: the time it has been running. It never goes
/// backwards, not even across restores, and stands still while the host is
/// down.
pub fn monotonic_now() -> Duration {
    Duration::from_nanos(clocks::monotonic_now())
}
