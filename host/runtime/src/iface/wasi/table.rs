//! `HandleTable`: the WASI resources a process holds, at the indices the
//! guest knows them by.
//!
//! ```text
//!   guest memory (wasi-libc, the adapter, std) keeps plain u32 ids
//!        │  every WASI call passes them to the host (instrument/handles.rs
//!        ▼  turned own/borrow handles into u32 at spawn)
//!   HandleTable   slot 0 reserved │ 1: stdout │ 2: free │ 3: pollable(deadline) │ ...
//!                 free list (LIFO): [2]
//! ```
//! The table follows the component model's canonical ABI table exactly:
//! index 0 is never used, a new handle takes the most recently freed index,
//! else the next index past the end. Each slot records how its resource was
//! made (its genealogy: which stream, which deadline, which parent), which
//! is all the host needs to make an equivalent live resource again. The
//! table is persisted in the `wasi` section, free list included, so after a
//! restore every id the guest holds names the same resource and the next
//! ids handed out are the ones a run without the restore would hand out.

use serde::{Deserialize, Serialize};

/// Most handles a process may hold at once (the canonical ABI allows 2^28;
/// the table is persisted with every checkpoint, so it is kept smaller).
pub const MAX_HANDLES: usize = 1 << 16;

/// What a handle names: the resource and how it was made.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Resource {
    /// `wasi:io/streams.input-stream` of standard input (at end of stream).
    Stdin,
    /// `wasi:io/streams.output-stream` of standard output.
    Stdout,
    /// `wasi:io/streams.output-stream` of standard error.
    Stderr,
    /// `wasi:io/poll.pollable` ready once the process clock reaches
    /// `deadline_ns` (from `wasi:clocks/monotonic-clock.subscribe-*`).
    Deadline {
        /// Process time at which it is ready.
        deadline_ns: u64,
    },
    /// `wasi:io/poll.pollable` of a stream (`subscribe`), a child of
    /// handle `parent`: always ready (standard input is at its end,
    /// output is never full).
    StreamReady {
        /// The stream subscribed to.
        parent: u32,
    },
}

impl Resource {
    /// The WIT resource type (for error messages and type checks).
    pub fn wit_type(&self) -> WitType {
        match self {
            Resource::Stdin => WitType::InputStream,
            Resource::Stdout | Resource::Stderr => WitType::OutputStream,
            Resource::Deadline { .. } | Resource::StreamReady { .. } => WitType::Pollable,
        }
    }

    fn parent(&self) -> Option<u32> {
        match self {
            Resource::StreamReady { parent } => Some(*parent),
            _ => None,
        }
    }
}

/// The WASI resource types a guest can hold a handle to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WitType {
    /// `wasi:io/streams.input-stream`.
    InputStream,
    /// `wasi:io/streams.output-stream`.
    OutputStream,
    /// `wasi:io/poll.pollable`.
    Pollable,
    /// `wasi:io/error.error` (the host never makes one: standard streams
    /// do not fail).
    Error,
    /// `wasi:cli/terminal-input.terminal-input` (never made: the process
    /// has no terminal).
    TerminalInput,
    /// `wasi:cli/terminal-output.terminal-output` (never made).
    TerminalOutput,
    /// `wasi:filesystem/types.descriptor` (never made: no directory is
    /// preopened).
    Descriptor,
    /// `wasi:filesystem/types.directory-entry-stream` (never made).
    DirectoryEntryStream,
}

impl WitType {
    /// The resource's WIT name.
    pub fn name(&self) -> &'static str {
        match self {
            WitType::InputStream => "input-stream",
            WitType::OutputStream => "output-stream",
            WitType::Pollable => "pollable",
            WitType::Error => "error",
            WitType::TerminalInput => "terminal-input",
            WitType::TerminalOutput => "terminal-output",
            WitType::Descriptor => "descriptor",
            WitType::DirectoryEntryStream => "directory-entry-stream",
        }
    }
}

/// A guest used a handle wrongly: a trap, with the message wasmtime gives
/// for the same mistake on a real handle table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// No live handle at that index.
    #[error("unknown handle index {0}")]
    Unknown(u32),
    /// A handle of another type.
    #[error("handle index {index} is a `{found}`, not a `{expected}`")]
    WrongType {
        /// The index.
        index: u32,
        /// The type the call takes.
        expected: &'static str,
        /// The type of the handle there.
        found: &'static str,
    },
    /// Dropping a handle that others were made from.
    #[error("cannot drop handle index {0}: a pollable made from it is still alive")]
    HasChildren(u32),
    /// The table is full.
    #[error("the process holds {MAX_HANDLES} WASI handles, the most it may")]
    Full,
}

/// The WASI handles of one process.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HandleTable {
    /// Slot `i` holds handle `i`; slot 0 is always empty.
    slots: Vec<Option<Resource>>,
    /// Freed indices; the last one is reused first.
    free: Vec<u32>,
    /// Live children per slot (derived, not persisted).
    #[serde(skip)]
    children: Vec<u32>,
}

impl HandleTable {
    /// Gives `resource` an index: the most recently freed one, else the next
    /// one past the end.
    pub fn insert(&mut self, resource: Resource) -> Result<u32, HandleError> {
        if self.slots.is_empty() {
            self.slots.push(None);
            self.children.push(0);
        }
        if let Some(parent) = resource.parent() {
            self.get(parent)?;
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() > MAX_HANDLES {
                    return Err(HandleError::Full);
                }
                self.slots.push(None);
                self.children.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[index as usize] = Some(resource);
        if let Some(parent) = resource.parent() {
            self.children[parent as usize] += 1;
        }
        Ok(index)
    }

    /// The resource at `index`.
    pub fn get(&self, index: u32) -> Result<Resource, HandleError> {
        self.slots
            .get(index as usize)
            .copied()
            .flatten()
            .ok_or(HandleError::Unknown(index))
    }

    /// The resource at `index`, which must be of type `expected`.
    pub fn get_as(&self, index: u32, expected: WitType) -> Result<Resource, HandleError> {
        let r = self.get(index)?;
        if r.wit_type() != expected {
            return Err(HandleError::WrongType {
                index,
                expected: expected.name(),
                found: r.wit_type().name(),
            });
        }
        Ok(r)
    }

    /// Drops the handle at `index` (of type `expected`), freeing the index.
    pub fn remove(&mut self, index: u32, expected: WitType) -> Result<Resource, HandleError> {
        let r = self.get_as(index, expected)?;
        if self.children[index as usize] > 0 {
            return Err(HandleError::HasChildren(index));
        }
        if let Some(parent) = r.parent() {
            self.children[parent as usize] -= 1;
        }
        self.slots[index as usize] = None;
        self.free.push(index);
        Ok(r)
    }

    /// Live handles.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether no handle is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a table read from an image (untrusted) and derives the
    /// children counts: slot 0 empty, every free index an empty slot and
    /// listed once, every empty slot listed, every parent a live stream.
    pub fn checked(mut self) -> Result<Self, String> {
        if self.slots.len() > MAX_HANDLES + 1 {
            return Err(format!("it holds over {MAX_HANDLES} handles"));
        }
        if self.slots.first().is_some_and(|s| s.is_some()) {
            return Err("it has a handle at index 0".into());
        }
        let mut listed = vec![false; self.slots.len()];
        for &i in &self.free {
            let i = i as usize;
            if i == 0 || i >= self.slots.len() || self.slots[i].is_some() || listed[i] {
                return Err(format!("its free list names index {i} wrongly"));
            }
            listed[i] = true;
        }
        let empty = self.slots.iter().skip(1).filter(|s| s.is_none()).count();
        if empty != self.free.len() {
            return Err("its free list does not list every free index".into());
        }
        self.children = vec![0; self.slots.len()];
        for slot in self.slots.iter().flatten() {
            if let Some(parent) = slot.parent() {
                let ok = self
                    .slots
                    .get(parent as usize)
                    .copied()
                    .flatten()
                    .is_some_and(|p| {
                        matches!(p.wit_type(), WitType::InputStream | WitType::OutputStream)
                    });
                if !ok {
                    return Err(format!(
                        "a pollable names {parent}, which is not a live stream"
                    ));
                }
                self.children[parent as usize] += 1;
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_the_canonical_abi() {
        let mut t = HandleTable::default();
        assert_eq!(t.insert(Resource::Stdout).unwrap(), 1);
        assert_eq!(t.insert(Resource::Stderr).unwrap(), 2);
        assert_eq!(t.insert(Resource::Stdin).unwrap(), 3);
        t.remove(1, WitType::OutputStream).unwrap();
        t.remove(3, WitType::InputStream).unwrap();
        // Last freed, first reused.
        assert_eq!(t.insert(Resource::Deadline { deadline_ns: 5 }).unwrap(), 3);
        assert_eq!(t.insert(Resource::Stdout).unwrap(), 1);
        assert_eq!(t.insert(Resource::Stdout).unwrap(), 4);
    }

    #[test]
    fn misuse_is_an_error_naming_the_handle() {
        let mut t = HandleTable::default();
        let out = t.insert(Resource::Stdout).unwrap();
        let p = t.insert(Resource::StreamReady { parent: out }).unwrap();
        assert_eq!(t.get(9), Err(HandleError::Unknown(9)));
        assert!(matches!(
            t.get_as(p, WitType::OutputStream),
            Err(HandleError::WrongType { .. })
        ));
        assert_eq!(
            t.remove(out, WitType::OutputStream),
            Err(HandleError::HasChildren(out))
        );
        t.remove(p, WitType::Pollable).unwrap();
        t.remove(out, WitType::OutputStream).unwrap();
        assert_eq!(
            t.remove(out, WitType::OutputStream),
            Err(HandleError::Unknown(out))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_persisted_table_hands_out_the_same_indices() {
        let mut t = HandleTable::default();
        for _ in 0..5 {
            t.insert(Resource::Stdout).unwrap();
        }
        t.remove(2, WitType::OutputStream).unwrap();
        t.remove(4, WitType::OutputStream).unwrap();
        let s = t.insert(Resource::Stdin).unwrap();
        t.insert(Resource::StreamReady { parent: s }).unwrap();
        let json = serde_json::to_vec(&t).unwrap();
        let mut back: HandleTable = serde_json::from_slice::<HandleTable>(&json)
            .unwrap()
            .checked()
            .unwrap();
        assert_eq!(
            back.remove(s, WitType::InputStream),
            Err(HandleError::HasChildren(s))
        );
        for _ in 0..3 {
            assert_eq!(back.insert(Resource::Stderr), t.insert(Resource::Stderr));
        }
    }

    #[test]
    fn crafted_tables_are_refused() {
        let bad = [
            r#"{"slots":[{"kind":"stdout"}],"free":[]}"#,
            r#"{"slots":[null,null],"free":[]}"#,
            r#"{"slots":[null,null],"free":[1,1]}"#,
            r#"{"slots":[null,{"kind":"stdout"}],"free":[1]}"#,
            r#"{"slots":[null,{"kind":"stream-ready","parent":1}],"free":[]}"#,
            r#"{"slots":[null,{"kind":"stream-ready","parent":7}],"free":[]}"#,
        ];
        for b in bad {
            let t: HandleTable = serde_json::from_str(b).unwrap();
            assert!(t.checked().is_err(), "{b}");
        }
    }
}
