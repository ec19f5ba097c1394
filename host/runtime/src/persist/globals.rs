//! `GlobalsCheck`, the `globals` section: the mutable globals the component
//! had when the image was taken, each with why its value need not be
//! captured. A restore refuses an image whose list differs from the
//! component's (a replaced `component.wasm`).

use serde::{Deserialize, Serialize};

use super::{Section, from_json, to_json};
use crate::inspect::CheckedGlobal;

/// Most globals listed (a component has a handful).
const MAX_GLOBALS: usize = 65536;

/// The accepted mutable globals of a component.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct GlobalsCheck(pub Vec<CheckedGlobal>);

impl GlobalsCheck {
    /// Whether the image's list matches the component's.
    pub fn matches(&self, component: &[CheckedGlobal]) -> Result<(), String> {
        if self.0 != component {
            return Err(format!(
                "its globals ({} listed) are not the component's ({} found): was component.wasm replaced?",
                self.0.len(),
                component.len()
            ));
        }
        Ok(())
    }
}

impl Section for GlobalsCheck {
    const NAME: &'static str = "globals";

    fn save(&self) -> Vec<u8> {
        to_json(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let list: GlobalsCheck = from_json(bytes)?;
        if list.0.len() > MAX_GLOBALS {
            return Err(format!("it lists over {MAX_GLOBALS} globals"));
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_match() {
        let g = GlobalsCheck(vec![CheckedGlobal {
            module: 0,
            index: 0,
            name: Some("__stack_pointer".into()),
            reason: "r".into(),
        }]);
        let back = GlobalsCheck::restore(&g.save()).unwrap();
        assert_eq!(back, g);
        back.matches(&g.0).unwrap();
        assert!(back.matches(&[]).unwrap_err().contains("replaced"));
    }
}
