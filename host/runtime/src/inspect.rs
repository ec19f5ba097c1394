//! Checks a component before it becomes a persistent process: that it is a
//! component at all, that it imports only what the host can persist, which
//! mutable globals its core modules have, and which memories it creates.
//!
//! ```text
//!   bytes ─► magic/version ─► component sections (nested ones too)
//!              ├─ imports ─────────► every one checked, all refusals named
//!              ├─ core modules ────► mutable globals (accepted or refused),
//!              │                     defined memories (limits)
//!              └─ core instances ──► the order wasmtime creates memories in
//! ```
//! Globals are not in linear memory, and the component API gives the host no
//! way to read a core instance's globals. So every mutable global of every
//! core module, at the top level or in a nested component (the parts of a
//! composition), is planned for capture: `instrument/globals.rs` adds a
//! getter and a setter for each, a checkpoint stores their values and a
//! restore puts them back. What still cannot be captured is refused with
//! its name: globals of a type other than i32/i64/f32/f64, and globals of a
//! module (or nested component) instantiated more than once, whose
//! instances cannot be told apart.
//!
//! The memories are what a restored image is checked against before it is
//! instantiated: their number and each one's limits.

use wasmparser::{Parser, Payload};

use crate::instrument::globals::Plan;

/// Interfaces a persistent process may import (without version suffix).
pub const ALLOWED_IMPORTS: &[&str] = &[
    "phantom:os/console",
    "phantom:os/clocks",
    "phantom:os/timers",
    "phantom:os/process",
    "phantom:os/messages",
    "phantom:os/types",
    "phantom:devices/gpio",
    "phantom:devices/i2c",
    "phantom:devices/serial",
    "phantom:devices/display",
    "phantom:devices/spi",
    "phantom:devices/sensor",
    "phantom:devices/events",
];

/// The package of device interfaces (`wit/phantom-devices.wit`); importing
/// one of its interfaces needs a grant in the device manifest.
pub const DEVICES_PACKAGE: &str = "phantom:devices/";

/// The `phantom:devices` interfaces whose functions a component imports at
/// its top level (empty for anything that is not a readable component:
/// inspection reports that). An interface imported for its types only
/// (`events` uses `gpio`'s, `serial`'s and `sensor`'s, so a guest of any
/// imports all three) reaches no device and needs no grant.
pub fn device_imports(bytes: &[u8]) -> Vec<String> {
    let found = device_imports_by_name(bytes);
    if found.is_empty() {
        return found;
    }
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    let Ok(types) = validator.validate_all(bytes) else {
        // Unreadable: every import counts (the instantiation reports it).
        return found;
    };
    found
        .into_iter()
        .filter(
            |name| match types.component_item_for_import(name).map(|i| i.ty) {
                Some(wasmparser::component_types::ComponentEntityType::Instance(id)) => {
                    types[id].exports.values().any(|e| {
                        matches!(
                            e.ty,
                            wasmparser::component_types::ComponentEntityType::Func(_)
                        )
                    })
                }
                _ => true,
            },
        )
        .collect()
}

/// The `phantom:devices` interfaces a component imports at its top level,
/// by name.
fn device_imports_by_name(bytes: &[u8]) -> Vec<String> {
    top_level_names(bytes, true)
        .into_iter()
        .filter(|n| n.starts_with(DEVICES_PACKAGE))
        .collect()
}

/// The names a component imports (`imports`) or exports at its top level
/// (as far as it parses).
pub fn top_level_names(bytes: &[u8], imports: bool) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(r) if depth == 0 && imports => {
                names.extend(r.into_iter().flatten().map(|i| i.name.name.to_string()));
            }
            Payload::ComponentExportSection(r) if depth == 0 && !imports => {
                names.extend(r.into_iter().flatten().map(|e| e.name.name.to_string()));
            }
            _ => {}
        }
    }
    names
}

/// Whether `import` is a WASI interface (which the host either provides
/// or refuses: no composition can add it).
pub fn is_wasi(import: &str) -> bool {
    import.starts_with("wasi:")
}

/// The message of `InspectError::UnsupportedImports`: WASI the host
/// refuses (sockets, HTTP: no network state survives a restore) is said
/// apart from interfaces of one's own, which a library component provides
/// once composed.
pub fn unsupported_imports(imports: &[String]) -> String {
    let list = |v: &[&String]| {
        v.iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (wasi, own): (Vec<&String>, Vec<&String>) = imports.iter().partition(|i| is_wasi(i));
    let os = ALLOWED_IMPORTS
        .iter()
        .filter_map(|i| i.strip_prefix("phantom:os/"))
        .collect::<Vec<_>>()
        .join(", ");
    let devices = ALLOWED_IMPORTS
        .iter()
        .filter_map(|i| i.strip_prefix(DEVICES_PACKAGE))
        .collect::<Vec<_>>()
        .join(", ");
    let mut why = Vec::new();
    if !wasi.is_empty() {
        why.push(format!(
            "it imports {}, which Phantom does not give a persistent process (no socket, connection or request survives a restore): in Rust, do not use std::net or crates that reach for sockets or HTTP; in C, do not call socket functions",
            list(&wasi)
        ));
    }
    if !own.is_empty() {
        why.push(format!(
            "it imports {}, which the host does not provide: compose it with a library component that exports {} (`phantom compose app.wasm --with lib.wasm -o out.wasm`)",
            list(&own),
            if own.len() == 1 { "it" } else { "them" }
        ));
    }
    format!(
        "{}. A persistent process may import phantom:os ({os}), phantom:devices ({devices}, each with a grant: `spawn --devices`) and WASI 0.2.x ({}; `wasi:filesystem` finds no files: nothing is preopened, files reach `init` as bytes)",
        why.join("; "),
        crate::iface::wasi::WASI_INTERFACES.join(", ")
    )
}

/// Why a component cannot become a persistent process.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Not WebAssembly.
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic number)")]
    NotWasm,
    /// A valid core module.
    #[error(
        "a core WebAssembly module, not a component: a persistent process is a component of the `phantom:os` world (a C build against phantom.h becomes one with `phantom componentize core.wasm -o guest.wasm`; `phantom new DIR --lang rust|c` makes a ready project)"
    )]
    CoreModule,
    /// A core module header followed by bytes that are not a module.
    #[error("not valid WebAssembly: it has a core module header, but {0}")]
    MalformedModule(String),
    /// Malformed.
    #[error("malformed component: {0}")]
    Malformed(String),
    /// Imports something the host cannot restore.
    #[error("{}", unsupported_imports(.0))]
    UnsupportedImports(Vec<String>),
    /// Does not export the world's `init` and `handle`.
    #[error(
        "the component does not export `init` and `handle` of the phantom:os `persistent-process` world (it exports {}); a program with `fn main` (a `wasi:cli/run` command) is not a persistent process: write it with the SDK (`phantom new DIR --lang rust|c` makes a ready project)",
        if .0.is_empty() { "nothing".to_string() } else { .0.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ") }
    )]
    NotAProcess(Vec<String>),
    /// Has a mutable global a checkpoint cannot capture.
    #[error(
        "core module {module} has mutable global {index}{name}, whose value a checkpoint cannot capture: {why}"
    )]
    UnsupportedGlobal {
        /// Index of the core module in the component.
        module: usize,
        /// Index of the global.
        index: u32,
        /// ` (`name`)` or empty.
        name: String,
        /// Why not.
        why: String,
    },
}

/// A component being inspected: where it is, and what moves its indices.
#[derive(Default)]
struct Frame {
    /// Component indices from the top level down to it (empty: the top).
    path: Vec<u32>,
    /// Core modules so far.
    modules: u32,
    /// Nested components so far.
    components: u32,
}

/// A mutable global that was found and accepted.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CheckedGlobal {
    /// The nested component it is in: component indices from the top
    /// level down (empty: the top level).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<u32>,
    /// Core module index within the component (in parse order).
    pub module: usize,
    /// Global index within the module.
    pub index: u32,
    /// Its name, if the name section has one.
    pub name: Option<String>,
    /// Why its value need not be captured.
    pub reason: String,
}

/// The limits of a memory the component defines, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Initial size.
    pub minimum: u64,
    /// Declared maximum (None: the 4 GiB of a 32-bit memory).
    pub maximum: Option<u64>,
}

impl MemoryLimits {
    /// The largest size the memory can have.
    pub fn largest(&self) -> u64 {
        self.maximum
            .unwrap_or(WASM32_MAX_BYTES)
            .min(WASM32_MAX_BYTES)
    }
}

/// The largest 32-bit linear memory.
pub const WASM32_MAX_BYTES: u64 = 1 << 32;

/// What inspecting a component found.
#[derive(Clone, Debug, Default)]
pub struct ComponentFacts {
    /// Accepted mutable globals.
    pub globals: Vec<CheckedGlobal>,
    /// How each of `globals` is reached (same order): what
    /// `instrument/globals.rs` gives a getter and a setter.
    pub global_plan: Vec<crate::instrument::globals::Plan>,
    /// The memories the component creates when instantiated, in creation
    /// order; None when the component's structure hides the order (nested
    /// components, imported or aliased core modules).
    pub memories: Option<Vec<MemoryLimits>>,
    /// Names the component exports at its top level (`handle-message`
    /// says it takes messages).
    pub exports: Vec<String>,
    /// XXH3-64 of the component's bytes: checkpoints record it, so an
    /// image is never restored under another component.
    pub digest: u64,
}

/// Whether `name` is an import a persistent process may have.
pub fn import_allowed(name: &str) -> bool {
    let (unversioned, version) = name.split_once('@').unwrap_or((name, ""));
    if ALLOWED_IMPORTS.contains(&unversioned) {
        return true;
    }
    // WASI: any 0.2.x patch version (0.2.0, 0.2.6, 0.2.12, ...).
    crate::iface::wasi::WASI_INTERFACES.contains(&unversioned)
        && version
            .strip_prefix("0.2.")
            .is_some_and(|patch| !patch.is_empty() && patch.chars().all(|c| c.is_ascii_digit()))
}

/// Checks the bytes of a component file.
pub fn inspect_component(bytes: &[u8]) -> Result<ComponentFacts, InspectError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(InspectError::NotWasm);
    }
    if Parser::is_core_wasm(bytes) {
        // Say which: a module someone forgot to componentize, or garbage
        // behind a valid header.
        return Err(match wasmparser::Validator::new().validate_all(bytes) {
            Ok(_) => InspectError::CoreModule,
            Err(e) => InspectError::MalformedModule(e.to_string()),
        });
    }
    let malformed = |e: wasmparser::BinaryReaderError| InspectError::Malformed(e.to_string());
    let mut globals = Vec::new();
    let mut refused = Vec::new();
    // Per top-level core module (in index order): its defined memories.
    let mut modules: Vec<Vec<MemoryLimits>> = Vec::new();
    let mut instantiated: Vec<u32> = Vec::new();
    let mut order_known = true;
    let mut plan = Vec::new();
    let mut top_exports = Vec::new();
    // The components being read: the top level first, then each nested one
    // while its payloads are read (None: a core module's payloads).
    let mut frames: Vec<Option<Frame>> = Vec::new();
    // The index the next nested component has in its parent.
    let mut next_path: Vec<u32> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(malformed)?;
        match &payload {
            Payload::Version { encoding, .. } => {
                frames.push(match encoding {
                    wasmparser::Encoding::Component => Some(Frame {
                        path: std::mem::take(&mut next_path),
                        ..Frame::default()
                    }),
                    wasmparser::Encoding::Module => None,
                });
                continue;
            }
            Payload::End(_) => {
                frames.pop();
                continue;
            }
            _ => {}
        }
        let top = frames.len() == 1;
        let Some(Some(frame)) = frames.last_mut() else {
            continue;
        };
        match payload {
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(malformed)?;
                    match import.ty {
                        wasmparser::ComponentTypeRef::Module(_) => {
                            order_known = false;
                            frame.modules += 1;
                        }
                        wasmparser::ComponentTypeRef::Component(_) => frame.components += 1,
                        _ => {}
                    }
                    // Type imports (the world's `use types.{event, ...}`)
                    // carry no state. Only the top level's imports reach
                    // the host; a nested component's are satisfied by the
                    // component around it.
                    if top
                        && !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_))
                        && !import_allowed(import.name.name)
                    {
                        refused.push(import.name.name.to_string());
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
                let module = frame.modules as usize;
                frame.modules += 1;
                let (found, m) = inspect_module(module_bytes)?;
                for g in found {
                    let Some(ty) = g.ty else {
                        return Err(g.refusal(module, "its type is not i32, i64, f32 or f64"));
                    };
                    plan.push(Plan {
                        path: frame.path.clone(),
                        module: module as u32,
                        index: g.index,
                        ty,
                    });
                    globals.push(CheckedGlobal {
                        component: frame.path.clone(),
                        module,
                        index: g.index,
                        reason: if g.stack_pointer {
                            STACK_POINTER_REASON.into()
                        } else {
                            CAPTURED_REASON.into()
                        },
                        name: g.name,
                    });
                }
                if top {
                    modules.push(m);
                }
            }
            Payload::InstanceSection(reader) if top => {
                for instance in reader {
                    if let wasmparser::Instance::Instantiate { module_index, .. } =
                        instance.map_err(malformed)?
                    {
                        instantiated.push(module_index);
                    }
                }
            }
            Payload::ComponentSection { .. } => {
                // A nested component creates memories of its own.
                order_known = false;
                next_path = frame.path.clone();
                next_path.push(frame.components);
                frame.components += 1;
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    // An aliased core module or component takes an index
                    // too (and hides the order memories are made in).
                    let (module_alias, component_alias) = match alias.map_err(malformed)? {
                        wasmparser::ComponentAlias::InstanceExport { kind, .. } => (
                            kind == wasmparser::ComponentExternalKind::Module,
                            kind == wasmparser::ComponentExternalKind::Component,
                        ),
                        wasmparser::ComponentAlias::Outer { kind, .. } => (
                            kind == wasmparser::ComponentOuterAliasKind::CoreModule,
                            kind == wasmparser::ComponentOuterAliasKind::Component,
                        ),
                        wasmparser::ComponentAlias::CoreInstanceExport { .. } => (false, false),
                    };
                    if top {
                        order_known &= !module_alias;
                    }
                    frame.modules += u32::from(module_alias);
                    frame.components += u32::from(component_alias);
                }
            }
            Payload::ComponentExportSection(reader) => {
                // An export takes an index of its kind too.
                for export in reader {
                    let export = export.map_err(malformed)?;
                    if top {
                        top_exports.push(export.name.name.to_string());
                    }
                    match export.kind {
                        wasmparser::ComponentExternalKind::Module => frame.modules += 1,
                        wasmparser::ComponentExternalKind::Component => frame.components += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !refused.is_empty() {
        return Err(InspectError::UnsupportedImports(refused));
    }
    let memories = if order_known {
        let mut out = Vec::new();
        for m in instantiated {
            match modules.get(m as usize) {
                Some(mems) => out.extend(mems.iter().copied()),
                None => {
                    order_known = false;
                    break;
                }
            }
        }
        order_known.then_some(out)
    } else {
        None
    };
    Ok(ComponentFacts {
        globals,
        global_plan: plan,
        memories,
        exports: top_exports,
        digest: xxhash_rust::xxh3::xxh3_64(bytes),
    })
}

/// ` in nested component 1/0` (component indices from the top level), or
/// nothing for the top level: where a core module is, for messages.
pub fn nested_in(path: &[u32]) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(
            " in nested component {}",
            path.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("/")
        )
    }
}

/// Why LLVM's stack pointer needs no capture (kept word for word: images
/// list it with this reason).
pub(crate) const STACK_POINTER_REASON: &str =
    "LLVM shadow stack pointer: back at its initial value whenever no call is running";
/// A global the host captures and restores.
const CAPTURED_REASON: &str = "captured in every image and restored before the first call";

/// A mutable global a core module defines.
struct FoundGlobal {
    index: u32,
    ty: Option<crate::instrument::globals::GlobalType>,
    name: Option<String>,
    stack_pointer: bool,
}

impl FoundGlobal {
    fn refusal(&self, module: usize, why: &str) -> InspectError {
        InspectError::UnsupportedGlobal {
            module,
            index: self.index,
            name: self
                .name
                .as_ref()
                .map(|n| format!(" (`{n}`)"))
                .unwrap_or_default(),
            why: why.into(),
        }
    }
}

/// The mutable globals and the defined memories of one core module.
fn inspect_module(bytes: &[u8]) -> Result<(Vec<FoundGlobal>, Vec<MemoryLimits>), InspectError> {
    let malformed = |e: wasmparser::BinaryReaderError| InspectError::Malformed(e.to_string());
    let mut imported_globals = 0u32;
    let mut mutable = Vec::new();
    let mut memories = Vec::new();
    let mut names = std::collections::HashMap::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    // An imported global or memory lives in another module,
                    // which is checked on its own.
                    if let wasmparser::TypeRef::Global(_) = import.map_err(malformed)?.ty {
                        imported_globals += 1;
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(malformed)?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    memories.push(MemoryLimits {
                        minimum: memory.initial.saturating_mul(page),
                        maximum: memory.maximum.map(|m| m.saturating_mul(page)),
                    });
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
        let stack_pointer = match &name {
            Some(name) => name == "__stack_pointer",
            None => mutable.len() == 1 && n == 0 && *ty == wasmparser::ValType::I32,
        };
        out.push(FoundGlobal {
            index: *index,
            ty: crate::instrument::globals::GlobalType::from_val(*ty),
            name,
            stack_pointer,
        });
    }
    Ok((out, memories))
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
    fn wasm_header_with_garbage_is_not_called_a_module() {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend_from_slice(b"this is not a module at all");
        let err = inspect_component(&bytes).unwrap_err();
        assert!(matches!(err, InspectError::MalformedModule(_)), "{err}");
        assert!(
            !err.to_string().contains("a core WebAssembly module"),
            "{err}"
        );
        assert!(err.to_string().contains("not valid WebAssembly"), "{err}");
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
        assert!(import_allowed("phantom:os/console@0.1.0"));
        for ok in [
            "wasi:filesystem/types@0.2.0",
            "wasi:io/streams@0.2.6",
            "wasi:cli/stdout@0.2.12",
        ] {
            assert!(import_allowed(ok), "{ok}");
        }
        for refused in [
            "wasi:sockets/tcp@0.2.0",
            "wasi:http/types@0.2.6",
            "wasi:io/streams@0.3.0",
            "wasi:io/streams@0.2.0-rc-2023-11-10",
            "wasi:io/streams",
            "wasi:clocks/timezone@0.2.0",
        ] {
            assert!(!import_allowed(refused), "{refused}");
        }
        let err = InspectError::UnsupportedImports(vec![
            "wasi:sockets/tcp@0.2.0".into(),
            "evil:x/y".into(),
        ]);
        let text = err.to_string();
        // WASI the host refuses is said apart from an interface of one's
        // own, which composition can provide.
        assert!(
            text.contains("it imports `wasi:sockets/tcp@0.2.0`, which Phantom does not give"),
            "{text}"
        );
        assert!(
            text.contains("it imports `evil:x/y`, which the host does not provide: compose it"),
            "{text}"
        );
        assert!(text.contains("wasi:io/streams"), "{text}");
    }
}
