//! `TimerTable`, the `timers` section: the process's timers, in process time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Section, from_json, to_json};

/// Minimum period of a periodic timer.
pub const MIN_TIMER_PERIOD_NS: u64 = 1_000_000;
/// Most timers one process may hold; bounds what a guest can make the host
/// store.
pub const MAX_TIMERS: usize = 1024;

/// A timer, in process time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimerState {
    /// When it fires next (process clock, ns).
    pub due_ns: u64,
    /// Period for a periodic timer.
    pub period_ns: Option<u64>,
}

/// A process's timers by id, and the id the next one gets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimerTable {
    /// Active timers.
    pub timers: BTreeMap<u32, TimerState>,
    /// The id the next timer gets (ids start at 1 and skip active ones).
    pub next_id: u32,
}

impl Default for TimerTable {
    fn default() -> Self {
        Self {
            timers: BTreeMap::new(),
            next_id: 1,
        }
    }
}

/// Why a timer was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerRefused {
    /// The table holds `MAX_TIMERS`.
    TooMany,
    /// A period under `MIN_TIMER_PERIOD_NS`.
    PeriodTooShort,
}

impl TimerTable {
    /// Number of active timers.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    /// Whether no timer is active.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// Adds a timer due `delay_ns` after `now_ns`; returns its id.
    pub fn add(
        &mut self,
        now_ns: u64,
        delay_ns: u64,
        period_ns: Option<u64>,
    ) -> Result<u32, TimerRefused> {
        if self.timers.len() >= MAX_TIMERS {
            return Err(TimerRefused::TooMany);
        }
        if period_ns.is_some_and(|p| p < MIN_TIMER_PERIOD_NS) {
            return Err(TimerRefused::PeriodTooShort);
        }
        let mut id = self.next_id.max(1);
        while self.timers.contains_key(&id) {
            id = id.wrapping_add(1).max(1);
        }
        self.next_id = id.wrapping_add(1).max(1);
        let due_ns = now_ns.saturating_add(delay_ns);
        self.timers.insert(id, TimerState { due_ns, period_ns });
        Ok(id)
    }

    /// Cancels a timer; whether it was active.
    pub fn cancel(&mut self, id: u32) -> bool {
        self.timers.remove(&id).is_some()
    }

    /// Removes every timer (the process exited).
    pub fn clear(&mut self) {
        self.timers.clear();
    }

    /// The earliest deadline, if any.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.timers.values().map(|t| t.due_ns).min()
    }

    /// Ids of the timers due at `now_ns`, in id order.
    pub fn due(&self, now_ns: u64) -> Vec<u32> {
        self.timers
            .iter()
            .filter(|(_, t)| t.due_ns <= now_ns)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Timer `id` fired at `now_ns`: a one-shot goes, a periodic one is
    /// rescheduled one period on, or from now if it fell behind (no burst).
    pub fn fired(&mut self, id: u32, now_ns: u64) {
        let Some(timer) = self.timers.get_mut(&id) else {
            return;
        };
        match timer.period_ns {
            Some(period) => {
                timer.due_ns = timer.due_ns.saturating_add(period);
                if timer.due_ns <= now_ns {
                    timer.due_ns = now_ns.saturating_add(period);
                }
            }
            None => {
                self.timers.remove(&id);
            }
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if self.timers.len() > MAX_TIMERS {
            return Err(format!(
                "it holds {} timers, over the limit of {MAX_TIMERS}",
                self.timers.len()
            ));
        }
        if self.timers.contains_key(&0) {
            return Err("it holds a timer with id 0".into());
        }
        if let Some((id, _)) = self
            .timers
            .iter()
            .find(|(_, t)| t.period_ns.is_some_and(|p| p < MIN_TIMER_PERIOD_NS))
        {
            return Err(format!(
                "timer {id} has a period under the minimum of {MIN_TIMER_PERIOD_NS} ns"
            ));
        }
        Ok(())
    }
}

impl Section for TimerTable {
    const NAME: &'static str = "timers";

    fn save(&self) -> Vec<u8> {
        to_json(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let table: TimerTable = from_json(bytes)?;
        table.check()?;
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut t = TimerTable::default();
        t.add(0, 5, None).unwrap();
        t.add(0, 10, Some(MIN_TIMER_PERIOD_NS)).unwrap();
        assert_eq!(TimerTable::restore(&t.save()).unwrap(), t);
    }

    #[test]
    fn late_periodic_timer_fires_once() {
        let mut t = TimerTable::default();
        let id = t.add(0, 10_000_000, Some(10_000_000)).unwrap();
        assert_eq!(t.due(1_000_000_000), [id]);
        t.fired(id, 1_000_000_000);
        assert_eq!(t.next_due_ns(), Some(1_010_000_000));
    }

    #[test]
    fn one_shot_timer_is_removed() {
        let mut t = TimerTable::default();
        let id = t.add(0, 10, None).unwrap();
        assert!(t.due(9).is_empty());
        assert_eq!(t.due(10), [id]);
        t.fired(id, 10);
        assert!(t.is_empty());
    }

    #[test]
    fn crafted_values_are_refused_or_saturate() {
        assert!(
            TimerTable::restore(br#"{"timers":{"0":{"due_ns":1,"period_ns":null}},"next_id":1}"#)
                .is_err()
        );
        assert!(
            TimerTable::restore(br#"{"timers":{"1":{"due_ns":1,"period_ns":0}},"next_id":1}"#)
                .is_err()
        );
        // A deadline at the end of time does not overflow.
        let mut t = TimerTable::restore(
            br#"{"timers":{"1":{"due_ns":18446744073709551615,"period_ns":1000000}},"next_id":0}"#,
        )
        .unwrap();
        t.fired(1, u64::MAX);
        assert_eq!(t.next_due_ns(), Some(u64::MAX));
        assert_eq!(t.add(0, u64::MAX, None), Ok(2));
    }
}
