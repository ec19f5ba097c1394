//! Checks a component before it becomes a persistent process: that it is a
//! component at all, that it imports only what the host can persist, and
//! which mutable globals its core modules have.
//!
//! Globals are not in linear memory, and the component API gives the host no
//! way to read a core instance's globals. So instead of assuming, the host
//! checks: LLVM-built guests have exactly one mutable global, the shadow
//! stack pointer (`__stack_pointer`), which every export restores before it
//! returns, so between calls it always holds its initial value and a fresh
//! instance has the right one. Any other mutable global would carry state a
//! checkpoint cannot see, so such a component is refused with its name.

use wasmparser::{Parser, Payload};

/// Interfaces a persistent process may import (without version suffix).
pub const ALLOWED_IMPORTS: &[&str] = &[
    "phantom:os/console",
    "phantom:os/clocks",
    "phantom:os/timers",
    "phantom:os/process",
    "phantom:os/types",
];

/// Why a component cannot become a persistent process.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Not WebAssembly.
    #[error("not a WebAssembly file (bad magic number)")]
    NotWasm,
    /// A core module.
    #[error(
        "a core WebAssembly module, not a component (make one with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Malformed.
    #[error("malformed component: {0}")]
    Malformed(String),
    /// Imports something the host cannot restore.
    #[error(
        "the component imports `{0}`, which Phantom cannot persist across restarts; a persistent process may import only {list}",
        list = ALLOWED_IMPORTS.join(", ")
    )]
    UnsupportedImport(String),
    /// Has a mutable global other than the stack pointer.
    #[error(
        "core module {module} has mutable global {index}{name}, whose value a checkpoint cannot capture (only LLVM's __stack_pointer is supported)"
    )]
    UnsupportedGlobal {
        /// Index of the core module in the component.
        module: usize,
        /// Index of the global.
        index: u32,
        /// ` (`name`)` or empty.
        name: String,
    },
}

/// A mutable global that was found and accepted.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CheckedGlobal {
    /// Core module index within the component (in parse order).
    pub module: usize,
    /// Global index within the module.
    pub index: u32,
    /// Its name, if the name section has one.
    pub name: Option<String>,
    /// Why its value need not be captured.
    pub reason: String,
}

/// Checks an import name against the allowed interfaces.
pub fn check_import(name: &str) -> Result<(), InspectError> {
    let unversioned = name.split('@').next().unwrap_or(name);
    if ALLOWED_IMPORTS.contains(&unversioned) {
        Ok(())
    } else {
        Err(InspectError::UnsupportedImport(name.to_string()))
    }
}

/// Checks the bytes of a component file; returns the mutable globals found.
pub fn inspect_component(bytes: &[u8]) -> Result<Vec<CheckedGlobal>, InspectError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(InspectError::NotWasm);
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(InspectError::CoreModule);
    }
    let mut found = Vec::new();
    let mut module = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InspectError::Malformed(e.to_string()))?;
        match payload {
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(|e| InspectError::Malformed(e.to_string()))?;
                    // Type imports (the world's `use types.{event, ...}`)
                    // carry no state.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        check_import(import.name.name)?;
                    }
                }
            }
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                let module_bytes = bytes
                    .get(unchecked_range.start..unchecked_range.end)
                    .ok_or_else(|| {
                        InspectError::Malformed(
                            "a core module runs past the end of the file".into(),
                        )
                    })?;
                found.extend(module_globals(module, module_bytes)?);
                module += 1;
            }
            _ => {}
        }
    }
    Ok(found)
}

/// The mutable globals of one core module, each accepted or refused.
fn module_globals(module: usize, bytes: &[u8]) -> Result<Vec<CheckedGlobal>, InspectError> {
    let malformed = |e: wasmparser::BinaryReaderError| InspectError::Malformed(e.to_string());
    let mut imported_globals = 0u32;
    let mut mutable = Vec::new();
    let mut names = std::collections::HashMap::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(malformed)?;
                    if let wasmparser::TypeRef::Global(g) = import.ty {
                        if g.mutable {
                            // An imported mutable global lives in another
                            // module, which is checked on its own.
                        }
                        imported_globals += 1;
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    let global = global.map_err(malformed)?;
                    if global.ty.mutable {
                        mutable.push((imported_globals + i as u32, global.ty.content_type));
                    }
                }
            }
            Payload::CustomSection(c) if c.name() == "name" => {
                if let wasmparser::KnownCustom::Name(reader) = c.as_known() {
                    for sub in reader.into_iter().flatten() {
                        if let wasmparser::Name::Global(map) = sub {
                            for naming in map.into_iter().flatten() {
                                names.insert(naming.index, naming.name.to_string());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (n, (index, ty)) in mutable.iter().enumerate() {
        let name = names.get(index).cloned();
        // LLVM's stack pointer: named `__stack_pointer`, or (in a stripped
        // module) the sole mutable i32 global.
        let is_stack_pointer = match &name {
            Some(name) => name == "__stack_pointer",
            None => mutable.len() == 1 && n == 0 && *ty == wasmparser::ValType::I32,
        };
        if !is_stack_pointer {
            return Err(InspectError::UnsupportedGlobal {
                module,
                index: *index,
                name: name.map(|n| format!(" (`{n}`)")).unwrap_or_default(),
            });
        }
        out.push(CheckedGlobal {
            module,
            index: *index,
            name,
            reason:
                "LLVM shadow stack pointer: back at its initial value whenever no call is running"
                    .into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_wasm_and_core_modules() {
        assert!(matches!(
            inspect_component(b"hello world"),
            Err(InspectError::NotWasm)
        ));
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(
            inspect_component(core),
            Err(InspectError::CoreModule)
        ));
    }

    #[test]
    fn truncated_component_is_an_error_not_a_panic() {
        // A component header followed by a module section claiming more
        // bytes than the file has.
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend_from_slice(&[1, 0x80, 0x80, 0x04]);
        bytes.extend_from_slice(b"\0asm\x01\0\0\0");
        assert!(matches!(
            inspect_component(&bytes),
            Err(InspectError::Malformed(_))
        ));
    }

    #[test]
    fn import_names() {
        check_import("phantom:os/console@0.1.0").unwrap();
        let err = check_import("wasi:filesystem/types@0.2.0").unwrap_err();
        assert!(
            err.to_string().contains("`wasi:filesystem/types@0.2.0`"),
            "{err}"
        );
    }
}
