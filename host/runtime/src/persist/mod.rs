//! Host state that persists itself: each stateful part of a process has a
//! save-to-section / restore-from-section pair, and a checkpoint is the
//! memories plus one named section per part.
//!
//! ```text
//!   part            section     file         restore checks
//!   HostState       "host"      host.rs      bounds of the input queue, name, args
//!   TimerTable      "timers"    timers.rs    count, ids, periods (older images: in "host")
//!   GlobalsCheck    "globals"   globals.rs   equal to what the component has
//!   WasiState       "wasi"      wasi.rs      handle table consistent, env bounds (older images: empty)
//!   JournalState    "journal"   journal/     held effects inside the covered journal, bounds (older: position 0)
//!   DevicesState    "devices"   devices.rs   numbers, order opened, pin and bus names (older: nothing open)
//!   DisplaysState   "display"   display.rs   frames of each open display's size (older: none)
//! ```
//! Adding a part adds a section (and a row here), never a format break: a
//! reader ignores sections it does not know, and a part whose section an
//! older image lacks restores from what that image had (see `timers.rs`).
//! The image store's format version does not change for it. Every part
//! restores untrusted bytes: a section that does not parse or breaks a bound
//! is a bad image, reported with the section's name, never a panic.

mod devices;
mod display;
mod globals;
mod host;
mod timers;
mod wasi;

use std::collections::BTreeMap;

use crate::iface::devices::{DevicesState, DisplaysState};
use crate::iface::wasi::WasiState;
use crate::journal::JournalState;

pub use globals::GlobalsCheck;
pub use host::{HostState, MAX_CHECKPOINT_ID, MAX_PROCESS_TIME_NS};
pub use timers::{MAX_TIMERS, MIN_TIMER_PERIOD_NS, TimerRefused, TimerState, TimerTable};

/// A part of host state stored as one named section of an image.
pub trait Section: Sized {
    /// The section's name in the image.
    const NAME: &'static str;

    /// The section's bytes.
    fn save(&self) -> Vec<u8>;

    /// Reads the section back, checking everything a crafted image could
    /// get wrong; the error says what (the caller names the section).
    fn restore(bytes: &[u8]) -> Result<Self, String>;
}

/// Parses JSON of a part, with serde's message on failure.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("it does not parse: {e}"))
}

/// Serialises a part as JSON; these types always serialise.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Everything a checkpoint stores besides memory.
#[derive(Clone, Debug, PartialEq)]
pub struct HostParts {
    /// The `host` section.
    pub host: HostState,
    /// The `timers` section.
    pub timers: TimerTable,
    /// The `globals` section.
    pub globals: GlobalsCheck,
    /// The `wasi` section.
    pub wasi: WasiState,
    /// The `journal` section.
    pub journal: JournalState,
    /// The `devices` section.
    pub devices: DevicesState,
    /// The `display` section.
    pub displays: DisplaysState,
}

impl HostParts {
    /// Every part as its section.
    pub fn save(&self) -> Vec<(String, Vec<u8>)> {
        vec![
            (HostState::NAME.to_string(), self.host.save()),
            (TimerTable::NAME.to_string(), self.timers.save()),
            (GlobalsCheck::NAME.to_string(), self.globals.save()),
            (WasiState::NAME.to_string(), self.wasi.save()),
            (JournalState::NAME.to_string(), self.journal.save()),
            (DevicesState::NAME.to_string(), self.devices.save()),
            (DisplaysState::NAME.to_string(), self.displays.save()),
        ]
    }

    /// Every part from an image's sections. `host` and `globals` are
    /// required; `timers` falls back to what an image written before it
    /// existed kept in `host`.
    pub fn restore(sections: &BTreeMap<String, Vec<u8>>) -> Result<HostParts, String> {
        let mut host: HostState = restore_required(sections)?;
        let globals: GlobalsCheck = restore_required(sections)?;
        let timers = match sections.get(TimerTable::NAME) {
            Some(bytes) => TimerTable::restore(bytes)
                .map_err(|e| format!("its `{}` section is bad: {e}", TimerTable::NAME))?,
            None => host
                .legacy_timers()
                .map_err(|e| format!("its `{}` section is bad: {e}", HostState::NAME))?,
        };
        let wasi = match sections.get(WasiState::NAME) {
            Some(bytes) => WasiState::restore(bytes)
                .map_err(|e| format!("its `{}` section is bad: {e}", WasiState::NAME))?,
            None => WasiState::default(),
        };
        let journal = match sections.get(JournalState::NAME) {
            Some(bytes) => JournalState::restore(bytes)
                .map_err(|e| format!("its `{}` section is bad: {e}", JournalState::NAME))?,
            None => JournalState::default(),
        };
        let devices = match sections.get(DevicesState::NAME) {
            Some(bytes) => DevicesState::restore(bytes)
                .map_err(|e| format!("its `{}` section is bad: {e}", DevicesState::NAME))?,
            None => DevicesState::default(),
        };
        let displays = match sections.get(DisplaysState::NAME) {
            Some(bytes) => DisplaysState::restore(bytes)
                .map_err(|e| format!("its `{}` section is bad: {e}", DisplaysState::NAME))?,
            None => DisplaysState::default(),
        };
        display::check_against(&devices, &displays)
            .map_err(|e| format!("its `{}` section is bad: {e}", DisplaysState::NAME))?;
        // Timers live in their own section from now on.
        host.legacy_timers = None;
        host.legacy_next_timer_id = None;
        Ok(HostParts {
            host,
            timers,
            globals,
            wasi,
            journal,
            devices,
            displays,
        })
    }
}

fn restore_required<S: Section>(sections: &BTreeMap<String, Vec<u8>>) -> Result<S, String> {
    let bytes = sections
        .get(S::NAME)
        .ok_or_else(|| format!("it has no `{}` section", S::NAME))?;
    S::restore(bytes).map_err(|e| format!("its `{}` section is bad: {e}", S::NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Input;

    fn parts() -> HostParts {
        let mut host = HostState {
            name: "p".into(),
            args: vec!["a".into()],
            restore_count: 2,
            checkpoint_id: 9,
            process_time_ns: 1234,
            busy: true,
            ..Default::default()
        };
        host.pending.push_back(Input::ConsoleLine("hi".into()));
        let mut timers = TimerTable::default();
        timers.add(10, 50, Some(MIN_TIMER_PERIOD_NS)).unwrap();
        let mut wasi = WasiState {
            env: vec![("A".into(), "b".into())],
            ..Default::default()
        };
        wasi.handles
            .insert(crate::iface::wasi::Resource::Stdout)
            .unwrap();
        let journal = JournalState {
            position: 40,
            released: Some(31),
            senders: [("a".to_string(), 3)].into_iter().collect(),
            held: vec![crate::journal::Held {
                call: 33,
                end: 35,
                output: crate::exit::Output::Console(b"hi".to_vec()),
            }],
            console_log: Some(1234),
        };
        HostParts {
            host,
            timers,
            globals: GlobalsCheck::default(),
            wasi,
            journal,
            devices: DevicesState {
                open: vec![crate::iface::devices::OpenDevice {
                    handle: 2,
                    name: "relay".into(),
                    kind: crate::iface::devices::OpenKind::Gpio {
                        pin: "sim:0/17".into(),
                        mode: phantom_devices::PinMode::Input,
                        high: false,
                        watch: Some(crate::iface::devices::WatchEdge::Both),
                    },
                }],
                last_handle: 2,
            },
            displays: DisplaysState::default(),
        }
    }

    #[test]
    fn every_part_round_trips_through_its_section() {
        let p = parts();
        let sections: BTreeMap<String, Vec<u8>> = p.save().into_iter().collect();
        assert_eq!(sections.len(), 7, "one section per part");
        assert_eq!(HostParts::restore(&sections).unwrap(), p);
    }

    #[test]
    fn unknown_sections_are_ignored() {
        let p = parts();
        let mut sections: BTreeMap<String, Vec<u8>> = p.save().into_iter().collect();
        sections.insert("from-the-future".into(), vec![1, 2, 3]);
        assert_eq!(HostParts::restore(&sections).unwrap(), p);
    }

    #[test]
    fn missing_or_bad_required_sections_are_named() {
        let p = parts();
        let all: BTreeMap<String, Vec<u8>> = p.save().into_iter().collect();
        for name in ["host", "globals"] {
            let mut s = all.clone();
            s.remove(name);
            let e = HostParts::restore(&s).unwrap_err();
            assert!(e.contains(&format!("no `{name}` section")), "{e}");
            s.insert(name.into(), b"{not json".to_vec());
            let e = HostParts::restore(&s).unwrap_err();
            assert!(e.contains(&format!("`{name}` section is bad")), "{e}");
        }
        let mut s = all;
        s.insert("timers".into(), b"[]".to_vec());
        let e = HostParts::restore(&s).unwrap_err();
        assert!(e.contains("`timers` section is bad"), "{e}");
    }

    /// An image written before timers had their own section kept them in
    /// `host`: it restores them from there.
    #[test]
    fn images_without_a_timers_section_restore_timers_from_host() {
        let old_host = br#"{"name":"c","args":[],"restore_count":0,"checkpoint_id":1,
            "process_time_ns":5,"timers":{"1":{"due_ns":7,"period_ns":200000000}},
            "next_timer_id":2,"pending":[{"timer":1}],"busy":false,"exit_code":null}"#;
        let mut s = BTreeMap::new();
        s.insert("host".to_string(), old_host.to_vec());
        s.insert("globals".to_string(), b"[]".to_vec());
        let parts = HostParts::restore(&s).unwrap();
        assert_eq!(parts.timers.len(), 1);
        assert_eq!(parts.timers.next_id, 2);
        assert_eq!(parts.host.pending, [Input::Timer(1)]);
        // Written back, timers go to their own section.
        let saved: BTreeMap<String, Vec<u8>> = parts.save().into_iter().collect();
        assert!(!String::from_utf8_lossy(&saved["host"]).contains("due_ns"));
        assert_eq!(HostParts::restore(&saved).unwrap(), parts);
    }
}
