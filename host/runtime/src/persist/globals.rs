//! `GlobalsCheck`, the `globals` section: the mutable globals of the
//! component's core modules when the image was taken, with their values.
//! A restore refuses an image whose list differs from the component's (a
//! replaced `component.wasm`) and puts the values back before the first
//! call.
//!
//! Images written before globals were captured list them without values
//! (a JSON array); those could only hold LLVM's stack pointer, whose value
//! between calls is its initial one, so they restore unchanged. The image
//! of a process that has exited holds no values either: its instance cannot
//! be entered after the exit, and it never runs again.

use serde::{Deserialize, Serialize};

use super::{Section, from_json, to_json};
use crate::inspect::CheckedGlobal;

/// Most globals listed (a component has a handful).
const MAX_GLOBALS: usize = 65536;

/// The mutable globals of a component and their values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlobalsCheck {
    /// Which globals, in the component's order.
    pub list: Vec<CheckedGlobal>,
    /// Their values (floats as bits), or None in an image from before
    /// globals were captured.
    pub values: Option<Vec<u64>>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Captured {
        list: Vec<CheckedGlobal>,
        values: Vec<u64>,
    },
    Listed(Vec<CheckedGlobal>),
}

impl GlobalsCheck {
    /// Whether the image's globals fit the component's: the same list, and
    /// a value for each (or, from an older image, only globals that need
    /// none; or the process had exited, and never runs again).
    pub fn matches(&self, component: &[CheckedGlobal], exited: bool) -> Result<(), String> {
        if self.list != component {
            return Err(format!(
                "its globals ({} listed) are not the component's ({} found): was component.wasm replaced?",
                self.list.len(),
                component.len()
            ));
        }
        match &self.values {
            Some(v) if v.len() != self.list.len() => Err(format!(
                "it lists {} globals but holds {} values",
                self.list.len(),
                v.len()
            )),
            Some(_) => Ok(()),
            None if exited => Ok(()),
            None => match self
                .list
                .iter()
                .find(|g| g.reason != crate::inspect::STACK_POINTER_REASON)
            {
                Some(g) => Err(format!(
                    "it holds no value for global {} of core module {}{}",
                    g.index,
                    g.module,
                    crate::inspect::nested_in(&g.component)
                )),
                None => Ok(()),
            },
        }
    }
}

impl Section for GlobalsCheck {
    const NAME: &'static str = "globals";

    fn save(&self) -> Vec<u8> {
        match &self.values {
            Some(values) => to_json(&Stored::Captured {
                list: self.list.clone(),
                values: values.clone(),
            }),
            None => to_json(&Stored::Listed(self.list.clone())),
        }
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let (list, values) = match from_json::<Stored>(bytes)? {
            Stored::Captured { list, values } => (list, Some(values)),
            Stored::Listed(list) => (list, None),
        };
        if list.len() > MAX_GLOBALS || values.as_ref().is_some_and(|v| v.len() > MAX_GLOBALS) {
            return Err(format!("it lists over {MAX_GLOBALS} globals"));
        }
        Ok(GlobalsCheck { list, values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp() -> CheckedGlobal {
        CheckedGlobal {
            component: Vec::new(),
            module: 0,
            index: 0,
            name: Some("__stack_pointer".into()),
            reason: crate::inspect::STACK_POINTER_REASON.into(),
        }
    }

    #[test]
    fn round_trip_and_match() {
        let other = CheckedGlobal {
            component: vec![2, 0],
            module: 1,
            index: 3,
            name: Some("state".into()),
            reason: "captured".into(),
        };
        let g = GlobalsCheck {
            list: vec![sp(), other.clone()],
            values: Some(vec![1 << 20, u64::MAX]),
        };
        let back = GlobalsCheck::restore(&g.save()).unwrap();
        assert_eq!(back, g);
        back.matches(&g.list, false).unwrap();
        assert!(back.matches(&[], false).unwrap_err().contains("replaced"));
        let short = GlobalsCheck {
            list: g.list.clone(),
            values: Some(vec![1]),
        };
        assert!(
            short
                .matches(&g.list, false)
                .unwrap_err()
                .contains("values")
        );
        // An older image: a bare list, fine for the stack pointer alone.
        let old = GlobalsCheck::restore(&serde_json::to_vec(&vec![sp()]).unwrap()).unwrap();
        assert_eq!(old.values, None);
        old.matches(&[sp()], false).unwrap();
        let old = GlobalsCheck {
            list: vec![sp(), other],
            values: None,
        };
        assert!(
            old.matches(&old.list, false)
                .unwrap_err()
                .contains("no value")
        );
        old.matches(&old.list, true).unwrap();
    }
}
