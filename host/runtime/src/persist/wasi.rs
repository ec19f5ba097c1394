//! The `wasi` section: the WASI handles a process holds (with the free
//! list, so later handles get the indices they would have got without a
//! restore), its environment and its insecure seed. Images written before
//! WASI existed have no such section and restore with an empty one.

use super::{Section, from_json, to_json};
use crate::iface::wasi::WasiState;

/// Most environment variables kept.
const MAX_ENV: usize = 4096;
/// Longest environment entry kept.
const MAX_ENV_BYTES: usize = 64 << 10;

impl Section for WasiState {
    const NAME: &'static str = "wasi";

    fn save(&self) -> Vec<u8> {
        to_json(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut state: WasiState = from_json(bytes)?;
        if state.env.len() > MAX_ENV
            || state
                .env
                .iter()
                .any(|(k, v)| k.len() + v.len() > MAX_ENV_BYTES)
        {
            return Err(format!(
                "its environment has over {MAX_ENV} entries or one over {MAX_ENV_BYTES} bytes"
            ));
        }
        state.handles = std::mem::take(&mut state.handles)
            .checked()
            .map_err(|e| format!("its handle table is bad: {e}"))?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::wasi::{Resource, WitType};

    #[test]
    fn round_trip() {
        let mut w = WasiState {
            env: vec![("K".into(), "V".into())],
            insecure_seed: (1, 2),
            ..Default::default()
        };
        let out = w.handles.insert(Resource::Stdout).unwrap();
        w.handles
            .insert(Resource::StreamReady { parent: out })
            .unwrap();
        w.handles
            .insert(Resource::Deadline { deadline_ns: 9 })
            .unwrap();
        w.handles.remove(3, WitType::Pollable).unwrap();
        let back = WasiState::restore(&w.save()).unwrap();
        assert_eq!(back, w);
        assert!(
            WasiState::restore(br#"{"handles":{"slots":[null,null],"free":[]}}"#)
                .unwrap_err()
                .contains("handle table")
        );
    }
}
