//! The host-side state of a process: what a checkpoint stores besides memory.
//!
//! `HostState` is persisted as the image's `host` section (JSON, so a field
//! added later reads old images with its default). Everything a guest can
//! observe through the `phantom:os` imports that is not in its memory lives
//! here: timers, queued events, metadata, and the process clock.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::bindings::Event;

/// Name of the image section holding `HostState`.
pub const HOST_SECTION: &str = "host";
/// Name of the image section describing the guest's globals.
pub const GLOBALS_SECTION: &str = "globals";

/// Minimum period of a periodic timer.
pub const MIN_TIMER_PERIOD_NS: u64 = 1_000_000;
/// Most timers one process may hold; bounds what a guest can make the host
/// store.
pub const MAX_TIMERS: usize = 1024;
/// Most queued events per process; input beyond it is dropped with a warning
/// rather than growing without bound.
pub const MAX_PENDING_EVENTS: usize = 4096;

/// Persisted host state of one process.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HostState {
    /// The name given at spawn.
    pub name: String,
    /// Arguments given to `init`.
    pub args: Vec<String>,
    /// How many times the process was restored.
    pub restore_count: u64,
    /// Id of the last checkpoint captured (or restored from).
    pub checkpoint_id: u64,
    /// The process clock at capture, in nanoseconds.
    pub process_time_ns: u64,
    /// Active timers by id.
    pub timers: BTreeMap<u32, TimerState>,
    /// The id the next timer gets.
    pub next_timer_id: u32,
    /// Events accepted but not yet delivered.
    pub pending: VecDeque<EventState>,
    /// The guest returned `busy` and wants `resume`.
    pub busy: bool,
    /// Set when the guest returned `exit`.
    pub exit_code: Option<i32>,
}

/// A timer, in process time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimerState {
    /// When it fires next (process clock, ns).
    pub due_ns: u64,
    /// Period for a periodic timer.
    pub period_ns: Option<u64>,
}

/// A queued event, in a form that serialises.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum EventState {
    /// `event.timer`.
    Timer(u32),
    /// `event.console-line`.
    ConsoleLine(String),
    /// `event.console-closed`.
    ConsoleClosed,
}

impl EventState {
    /// The WIT value.
    pub fn to_event(&self) -> Event {
        match self {
            EventState::Timer(id) => Event::Timer(*id),
            EventState::ConsoleLine(s) => Event::ConsoleLine(s.clone()),
            EventState::ConsoleClosed => Event::ConsoleClosed,
        }
    }
}

impl HostState {
    /// The earliest timer deadline, if any.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.timers.values().map(|t| t.due_ns).min()
    }

    /// Queues an event for every timer due at `now_ns`; a periodic timer that
    /// fell behind fires once and is rescheduled from now (no burst).
    pub fn fire_due_timers(&mut self, now_ns: u64) {
        let due: Vec<u32> = self
            .timers
            .iter()
            .filter(|(_, t)| t.due_ns <= now_ns)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(timer) = self.timers.get_mut(&id) else {
                continue;
            };
            match timer.period_ns {
                Some(period) => {
                    timer.due_ns += period;
                    if timer.due_ns <= now_ns {
                        timer.due_ns = now_ns + period;
                    }
                }
                None => {
                    self.timers.remove(&id);
                }
            }
            self.push_event(EventState::Timer(id));
        }
    }

    /// Queues an event; returns false when the queue is full.
    pub fn push_event(&mut self, event: EventState) -> bool {
        if self.pending.len() >= MAX_PENDING_EVENTS {
            return false;
        }
        self.pending.push_back(event);
        true
    }

    /// Serialises for the image.
    pub fn save(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("host state always serialises")
    }

    /// Reads the image's host section.
    pub fn restore(bytes: &[u8]) -> Result<HostState, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_restore_round_trip() {
        let mut s = HostState {
            name: "p".into(),
            args: vec!["a".into()],
            next_timer_id: 3,
            ..Default::default()
        };
        s.timers.insert(
            2,
            TimerState {
                due_ns: 50,
                period_ns: Some(10),
            },
        );
        s.pending.push_back(EventState::ConsoleLine("hi".into()));
        s.exit_code = Some(3);
        assert_eq!(HostState::restore(&s.save()).unwrap(), s);
    }

    #[test]
    fn late_periodic_timer_fires_once() {
        let mut s = HostState::default();
        s.timers.insert(
            1,
            TimerState {
                due_ns: 10,
                period_ns: Some(10),
            },
        );
        s.fire_due_timers(1000);
        assert_eq!(s.pending.len(), 1);
        assert_eq!(s.timers[&1].due_ns, 1010);
    }

    #[test]
    fn one_shot_timer_is_removed() {
        let mut s = HostState::default();
        s.timers.insert(
            1,
            TimerState {
                due_ns: 10,
                period_ns: None,
            },
        );
        s.fire_due_timers(9);
        assert!(s.pending.is_empty());
        s.fire_due_timers(10);
        assert_eq!(s.pending, [EventState::Timer(1)]);
        assert!(s.timers.is_empty());
    }
}
