//! `HostState`, the `host` section: who the process is, its clock, its
//! status and the inputs queued for it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Section, TimerState, TimerTable, from_json, to_json};
use crate::gate::{Input, MAX_LINE_BYTES, MAX_PENDING_BYTES, MAX_PENDING_INPUTS};

/// Longest name or argument kept (a guest sees them; a crafted image must
/// not make them huge).
const MAX_STRING_BYTES: usize = 64 << 10;
/// Most arguments kept.
const MAX_ARGS: usize = 4096;
/// The largest checkpoint id a process reaches (one a microsecond for 285
/// years); an image past it was not made by a host.
pub const MAX_CHECKPOINT_ID: u64 = 1 << 53;
/// The longest a process clock runs: 2^62 ns, 146 years. Timers due
/// "never" (saturated at `u64::MAX`) stay beyond it.
pub const MAX_PROCESS_TIME_NS: u64 = 1 << 62;
/// The latest a restored clock may show: half of `MAX_PROCESS_TIME_NS`,
/// so a process restored at it still runs 73 years before its host
/// writes a time its reader refuses (one restored right at the limit
/// would write refused journal entries at its first read).
pub const MAX_RESTORED_TIME_NS: u64 = MAX_PROCESS_TIME_NS / 2;

/// Persisted host state of one process, besides timers and globals.
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
    /// Inputs admitted but not yet delivered.
    pub pending: VecDeque<Input>,
    /// The guest returned `busy` and wants `resume`.
    pub busy: bool,
    /// Set when the guest returned `exit`.
    pub exit_code: Option<i32>,
    /// The id of the last message the process sent.
    pub next_message_id: u64,
    /// XXH3-64 of the component the process was spawned with (images
    /// written before it was recorded have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_digest: Option<u64>,
    /// Timers as images written before the `timers` section kept them;
    /// read, never written.
    #[serde(rename = "timers", skip_serializing)]
    pub(crate) legacy_timers: Option<std::collections::BTreeMap<u32, TimerState>>,
    /// The next timer id, likewise.
    #[serde(rename = "next_timer_id", skip_serializing)]
    pub(crate) legacy_next_timer_id: Option<u32>,
}

impl HostState {
    /// The timers an image without a `timers` section kept here.
    pub(super) fn legacy_timers(&self) -> Result<TimerTable, String> {
        let table = TimerTable {
            timers: self.legacy_timers.clone().unwrap_or_default(),
            next_id: self.legacy_next_timer_id.unwrap_or(1),
        };
        table.check()?;
        Ok(table)
    }

    fn check(&self) -> Result<(), String> {
        if self.name.len() > MAX_STRING_BYTES {
            return Err(format!("its name is over {MAX_STRING_BYTES} bytes"));
        }
        if self.args.len() > MAX_ARGS || self.args.iter().any(|a| a.len() > MAX_STRING_BYTES) {
            return Err(format!(
                "its arguments are over {MAX_ARGS} or one is over {MAX_STRING_BYTES} bytes"
            ));
        }
        if self.checkpoint_id > MAX_CHECKPOINT_ID {
            return Err(format!(
                "its checkpoint id {} is past the largest a process reaches ({MAX_CHECKPOINT_ID})",
                self.checkpoint_id
            ));
        }
        if self.process_time_ns > MAX_RESTORED_TIME_NS {
            return Err(format!(
                "its clock ({} ns) is past the latest a process is restored at ({MAX_RESTORED_TIME_NS} ns, 73 years)",
                self.process_time_ns
            ));
        }
        if self.pending.len() > MAX_PENDING_INPUTS {
            return Err(format!(
                "it queues {} inputs, over the limit of {MAX_PENDING_INPUTS}",
                self.pending.len()
            ));
        }
        let mut bytes = 0;
        for input in &self.pending {
            if input.bytes() > MAX_LINE_BYTES {
                return Err(format!(
                    "it queues a console line of {} bytes, over the limit of {MAX_LINE_BYTES}",
                    input.bytes()
                ));
            }
            if *input == Input::Resume {
                return Err("it queues a `resume`, which is never queued".into());
            }
            bytes += input.bytes();
        }
        if bytes > MAX_PENDING_BYTES {
            return Err(format!(
                "it queues {bytes} bytes of input, over the limit of {MAX_PENDING_BYTES}"
            ));
        }
        Ok(())
    }
}

impl Section for HostState {
    const NAME: &'static str = "host";

    fn save(&self) -> Vec<u8> {
        to_json(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut state: HostState = from_json(bytes)?;
        state.check()?;
        if state.exit_code.is_some() {
            // An exited process handles nothing more (hosts before the
            // queue was cleared at exit left inputs queued).
            state.busy = false;
            state.pending.clear();
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut s = HostState {
            name: "p".into(),
            args: vec!["a".into()],
            exit_code: None,
            busy: true,
            ..Default::default()
        };
        s.pending.push_back(Input::ConsoleLine("hi".into()));
        s.pending.push_back(Input::Timer(3));
        s.pending.push_back(Input::ConsoleClosed);
        assert_eq!(HostState::restore(&s.save()).unwrap(), s);
    }

    #[test]
    fn crafted_values_are_refused() {
        let too_many = format!(
            "{{\"pending\":[{}]}}",
            vec!["\"console-closed\""; MAX_PENDING_INPUTS + 1].join(",")
        );
        assert!(
            HostState::restore(too_many.as_bytes())
                .unwrap_err()
                .contains("queues")
        );
        assert!(HostState::restore(br#"{"pending":["resume"]}"#).is_err());
        let exited =
            HostState::restore(br#"{"exit_code":3,"busy":true,"pending":["console-closed"]}"#)
                .unwrap();
        assert!(!exited.busy && exited.pending.is_empty(), "{exited:?}");
        assert!(HostState::restore(br#"{"restore_count":-1}"#).is_err());
        assert!(
            HostState::restore(br#"{"process_time_ns":18446744073709551000}"#)
                .unwrap_err()
                .contains("clock")
        );
        // A clock a host could not go on from (it writes up to 2^62).
        let at = |ns: u64| HostState::restore(format!("{{\"process_time_ns\":{ns}}}").as_bytes());
        assert!(at(MAX_RESTORED_TIME_NS).is_ok());
        assert!(at(MAX_RESTORED_TIME_NS + 1).unwrap_err().contains("clock"));
        assert!(at(MAX_PROCESS_TIME_NS).unwrap_err().contains("clock"));
        assert!(
            HostState::restore(br#"{"checkpoint_id":18446744073709551615}"#)
                .unwrap_err()
                .contains("checkpoint id")
        );
        assert!(HostState::restore(b"[1,2]").is_err());
        // Unknown fields (from a newer host) are ignored.
        assert!(HostState::restore(br#"{"name":"x","new_field":7}"#).is_ok());
    }
}
