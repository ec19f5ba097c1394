//! Gives the host a getter and a setter for every mutable global of every
//! core module of a component, the way Wizer reads a component's state.
//!
//! ```text
//!   core module m (defines mutable global i)
//!     + (export "phantom-global-i" (global i))          appended export
//!   accessor core module (appended)
//!     (import "m<k>" "phantom-global-i" (global (mut t)))
//!     get-<j>: global.get   (f32/f64 reinterpreted as i32/i64 bits)
//!     set-<j>: global.set
//!   core instance: accessor instantiated with the modules' instances
//!   canon lift get-<j> / set-<j> ─► (export "phantom-global-get-g<j>")
//!                                  (export "phantom-global-set-g<j>")
//! ```
//! Everything is appended after the component's own items, so no existing
//! index moves and the original core code is untouched. Globals are not in
//! linear memory and wasmtime offers no API to read or write a core
//! instance's globals inside a component; these exports are how a
//! checkpoint reads them (after the call that left them) and how a restore
//! puts them back (before any other call).

use std::collections::BTreeMap;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmparser::{
    CanonicalFunction, ComponentAlias, ComponentExternalKind, ComponentOuterAliasKind, Parser,
    Payload, ValType,
};

/// A mutable global the accessor reaches, in accessor order (`j`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The nested component the module is in: component indices from the
    /// top level down (empty: the top level).
    pub path: Vec<u32>,
    /// Core module index (in its component's module index space).
    pub module: u32,
    /// Global index within the module.
    pub index: u32,
    /// Its type; floats travel as their bits.
    pub ty: GlobalType,
}

/// The value types a captured global may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalType {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `f32` (as its bits).
    F32,
    /// `f64` (as its bits).
    F64,
}

impl GlobalType {
    /// Whether it travels as 64 bits.
    pub fn wide(self) -> bool {
        matches!(self, GlobalType::I64 | GlobalType::F64)
    }

    fn val(self) -> wasm_encoder::ValType {
        match self {
            GlobalType::I32 => wasm_encoder::ValType::I32,
            GlobalType::I64 => wasm_encoder::ValType::I64,
            GlobalType::F32 => wasm_encoder::ValType::F32,
            GlobalType::F64 => wasm_encoder::ValType::F64,
        }
    }

    /// From a core value type; None for those a checkpoint cannot carry.
    pub fn from_val(ty: ValType) -> Option<Self> {
        match ty {
            ValType::I32 => Some(GlobalType::I32),
            ValType::I64 => Some(GlobalType::I64),
            ValType::F32 => Some(GlobalType::F32),
            ValType::F64 => Some(GlobalType::F64),
            _ => None,
        }
    }
}

/// The export names of global `j`'s accessors.
pub fn getter_name(j: usize) -> String {
    format!("phantom-global-get-g{j}")
}

/// See [`getter_name`].
pub fn setter_name(j: usize) -> String {
    format!("phantom-global-set-g{j}")
}

fn global_export(index: u32) -> String {
    format!("phantom-global-{index}")
}

/// Counts of a component's index spaces the appended items extend.
#[derive(Default)]
struct Counts {
    modules: u32,
    core_instances: u32,
    core_funcs: u32,
    types: u32,
    funcs: u32,
    components: u32,
    component_instances: u32,
    /// Module index → the core instances made from it.
    instantiated: BTreeMap<u32, Vec<u32>>,
    /// Component index → the component instances made from it.
    instantiated_components: BTreeMap<u32, Vec<u32>>,
}

/// Instruments `bytes` for the globals in `plan` (from inspection; empty:
/// nothing to do). Returns the new component.
///
/// A nested component with planned globals is instrumented the same way
/// (its accessors become its exports), and the component around it
/// re-exports them from the nested component's instance, up to the top
/// level, which exports global `j` of `plan` as `phantom-global-get-g<j>`.
pub fn instrument(bytes: &[u8], plan: &[Plan]) -> Result<Vec<u8>, String> {
    let refs: Vec<&Plan> = plan.iter().collect();
    instrument_component(bytes, &refs, 0)
}

/// Instruments the component `bytes`, nested `depth` levels deep, for
/// `plan` (the globals in it and in the components nested in it).
fn instrument_component(bytes: &[u8], plan: &[&Plan], depth: usize) -> Result<Vec<u8>, String> {
    let err = |e: wasmparser::BinaryReaderError| format!("malformed component: {e}");
    let mut by_module: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut nested: BTreeMap<u32, Vec<&Plan>> = BTreeMap::new();
    for p in plan {
        match p.path.get(depth) {
            None => by_module.entry(p.module).or_default().push(p.index),
            Some(&k) => nested.entry(k).or_default().push(p),
        }
    }
    let mut out = wasm_encoder::Component::new();
    let mut counts = Counts::default();
    for (id, at, data) in top_level_sections(bytes)? {
        let reader = || wasmparser::BinaryReader::new(data, at);
        let mut replaced = false;
        match id {
            // Nested component.
            4 => {
                let k = counts.components;
                counts.components += 1;
                if let Some(sub) = nested.get(&k) {
                    let instrumented = instrument_component(data, sub, depth + 1)?;
                    out.section(&wasm_encoder::RawSection {
                        id,
                        data: &instrumented,
                    });
                    replaced = true;
                }
            }
            // Component instances.
            5 => {
                for i in wasmparser::ComponentInstanceSectionReader::new(reader()).map_err(err)? {
                    if let wasmparser::ComponentInstance::Instantiate {
                        component_index, ..
                    } = i.map_err(err)?
                    {
                        counts
                            .instantiated_components
                            .entry(component_index)
                            .or_default()
                            .push(counts.component_instances);
                    }
                    counts.component_instances += 1;
                }
            }
            // Core module.
            1 => {
                let m = counts.modules;
                counts.modules += 1;
                if let Some(globals) = by_module.get(&m) {
                    let instrumented = export_globals(data, globals)?;
                    out.section(&wasm_encoder::RawSection {
                        id,
                        data: &instrumented,
                    });
                    replaced = true;
                }
            }
            // Core instances.
            2 => {
                for i in wasmparser::InstanceSectionReader::new(reader()).map_err(err)? {
                    if let wasmparser::Instance::Instantiate { module_index, .. } =
                        i.map_err(err)?
                    {
                        counts
                            .instantiated
                            .entry(module_index)
                            .or_default()
                            .push(counts.core_instances);
                    }
                    counts.core_instances += 1;
                }
            }
            // Aliases.
            6 => {
                for a in wasmparser::ComponentAliasSectionReader::new(reader()).map_err(err)? {
                    match a.map_err(err)? {
                        ComponentAlias::InstanceExport { kind, .. } => counts.add(kind),
                        ComponentAlias::CoreInstanceExport { kind, .. } => {
                            // `FuncExact` (custom descriptors) is a core
                            // function too.
                            if matches!(
                                kind,
                                wasmparser::ExternalKind::Func
                                    | wasmparser::ExternalKind::FuncExact
                            ) {
                                counts.core_funcs += 1;
                            }
                        }
                        ComponentAlias::Outer { kind, .. } => match kind {
                            ComponentOuterAliasKind::Type => counts.types += 1,
                            ComponentOuterAliasKind::CoreModule => counts.modules += 1,
                            ComponentOuterAliasKind::Component => counts.components += 1,
                            ComponentOuterAliasKind::CoreType => {}
                        },
                    }
                }
            }
            // Types.
            7 => {
                counts.types += wasmparser::ComponentTypeSectionReader::new(reader())
                    .map_err(err)?
                    .count();
            }
            // Canonical functions.
            8 => {
                for c in wasmparser::ComponentCanonicalSectionReader::new(reader()).map_err(err)? {
                    match c.map_err(err)? {
                        CanonicalFunction::Lift { .. } => counts.funcs += 1,
                        _ => counts.core_funcs += 1,
                    }
                }
            }
            // Imports.
            10 => {
                for i in wasmparser::ComponentImportSectionReader::new(reader()).map_err(err)? {
                    match i.map_err(err)?.ty {
                        wasmparser::ComponentTypeRef::Func(_) => counts.funcs += 1,
                        wasmparser::ComponentTypeRef::Type(_) => counts.types += 1,
                        wasmparser::ComponentTypeRef::Module(_) => counts.modules += 1,
                        wasmparser::ComponentTypeRef::Component(_) => counts.components += 1,
                        wasmparser::ComponentTypeRef::Instance(_) => {
                            counts.component_instances += 1
                        }
                        wasmparser::ComponentTypeRef::Value(_) => {}
                    }
                }
            }
            // Exports.
            11 => {
                for e in wasmparser::ComponentExportSectionReader::new(reader()).map_err(err)? {
                    counts.add(e.map_err(err)?.kind);
                }
            }
            _ => {}
        }
        if !replaced {
            out.section(&wasm_encoder::RawSection { id, data });
        }
    }
    let local: Vec<&Plan> = plan
        .iter()
        .filter(|p| p.path.len() == depth)
        .copied()
        .collect();
    append_accessor(&mut out, &local, &counts)?;
    // The accessors' component functions: the local ones were just lifted,
    // those of nested components are aliased from their instances.
    let mut next = counts.funcs + 2 * local.len() as u32;
    let mut aliases = wasm_encoder::ComponentAliasSection::new();
    let mut nested_funcs: BTreeMap<u32, u32> = BTreeMap::new();
    for (&k, sub) in &nested {
        let instance = match counts.instantiated_components.get(&k).map(Vec::as_slice) {
            Some([one]) => *one,
            Some(many) => {
                return Err(format!(
                    "nested component {k} is instantiated {} times; the mutable globals of its modules cannot be told apart",
                    many.len()
                ));
            }
            None => return Err(format!("nested component {k} is never instantiated")),
        };
        nested_funcs.insert(k, next);
        for i in 0..sub.len() {
            for name in [getter_name(i), setter_name(i)] {
                aliases.alias(wasm_encoder::Alias::InstanceExport {
                    instance,
                    kind: wasm_encoder::ComponentExportKind::Func,
                    name: &name,
                });
            }
            next += 2;
        }
    }
    if !aliases.is_empty() {
        out.section(&aliases);
    }
    if !plan.is_empty() {
        let mut exports = wasm_encoder::ComponentExportSection::new();
        let mut local_seen = 0u32;
        let mut nested_seen: BTreeMap<u32, u32> = BTreeMap::new();
        for (j, p) in plan.iter().enumerate() {
            let f = match p.path.get(depth) {
                None => {
                    local_seen += 1;
                    counts.funcs + 2 * (local_seen - 1)
                }
                Some(k) => {
                    let seen = nested_seen.entry(*k).or_default();
                    *seen += 1;
                    nested_funcs[k] + 2 * (*seen - 1)
                }
            };
            exports.export(
                getter_name(j),
                wasm_encoder::ComponentExportKind::Func,
                f,
                None,
            );
            exports.export(
                setter_name(j),
                wasm_encoder::ComponentExportKind::Func,
                f + 1,
                None,
            );
        }
        out.section(&exports);
    }
    Ok(out.finish())
}

impl Counts {
    /// An item of `kind` was added (by an alias or an export).
    fn add(&mut self, kind: ComponentExternalKind) {
        match kind {
            ComponentExternalKind::Func => self.funcs += 1,
            ComponentExternalKind::Type => self.types += 1,
            ComponentExternalKind::Module => self.modules += 1,
            ComponentExternalKind::Component => self.components += 1,
            ComponentExternalKind::Instance => self.component_instances += 1,
            ComponentExternalKind::Value => {}
        }
    }
}

/// A top-level section: (id, offset of the contents, contents).
pub(crate) type RawTopSection<'a> = (u8, usize, &'a [u8]);

/// The top-level sections of a component.
pub(crate) fn top_level_sections(bytes: &[u8]) -> Result<Vec<RawTopSection<'_>>, String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a component".into());
    }
    let mut reader = wasmparser::BinaryReader::new(&bytes[8..], 8);
    let mut out = Vec::new();
    while !reader.eof() {
        let id = reader.read_u8().map_err(|e| e.to_string())?;
        let len = reader.read_var_u32().map_err(|e| e.to_string())? as usize;
        let at = reader.original_position();
        let data = reader
            .read_bytes(len)
            .map_err(|_| "a section runs past the end of the file".to_string())?;
        out.push((id, at, data));
    }
    Ok(out)
}

/// Re-encodes a core module with an export for each of `globals`.
fn export_globals(module: &[u8], globals: &[u32]) -> Result<Vec<u8>, String> {
    let err = |e: wasmparser::BinaryReaderError| format!("malformed core module: {e}");
    let mut out = wasm_encoder::Module::new();
    let mut exported = false;
    let add = |exports: &mut wasm_encoder::ExportSection| {
        for &g in globals {
            exports.export(&global_export(g), wasm_encoder::ExportKind::Global, g);
        }
    };
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(err)?;
        match &payload {
            Payload::ExportSection(s) => {
                let mut exports = wasm_encoder::ExportSection::new();
                for e in s.clone() {
                    RoundtripReencoder
                        .parse_export(&mut exports, e.map_err(err)?)
                        .map_err(|e| e.to_string())?;
                }
                add(&mut exports);
                out.section(&exports);
                exported = true;
                continue;
            }
            // Sections that come after the export section: make one first
            // if the module had none.
            Payload::StartSection { .. }
            | Payload::ElementSection(_)
            | Payload::DataCountSection { .. }
            | Payload::CodeSectionStart { .. }
            | Payload::DataSection(_)
                if !exported =>
            {
                let mut exports = wasm_encoder::ExportSection::new();
                add(&mut exports);
                out.section(&exports);
                exported = true;
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            out.section(&wasm_encoder::RawSection {
                id,
                data: &module[range],
            });
        }
    }
    if !exported {
        let mut exports = wasm_encoder::ExportSection::new();
        add(&mut exports);
        out.section(&exports);
    }
    Ok(out.finish())
}

/// Appends the accessor module of the component's own globals (`plan`),
/// its instance and its functions, lifted as component functions
/// `counts.funcs + 2i` (get) and `+ 1` (set).
fn append_accessor(
    out: &mut wasm_encoder::Component,
    plan: &[&Plan],
    counts: &Counts,
) -> Result<(), String> {
    use wasm_encoder::*;
    if plan.is_empty() {
        return Ok(());
    }
    // The accessor module.
    let mut module = Module::new();
    let mut types = TypeSection::new();
    let sigs = [ValType::I32, ValType::I64];
    for t in sigs {
        types.ty().function([], [t]); // get: 0 (i32), 2 (i64)
        types.ty().function([t], []); // set: 1 (i32), 3 (i64)
    }
    module.section(&types);
    let mut imports = ImportSection::new();
    for p in plan {
        imports.import(
            &format!("m{}", p.module),
            &global_export(p.index),
            EntityType::Global(GlobalType {
                val_type: p.ty.val(),
                mutable: true,
                shared: false,
            }),
        );
    }
    module.section(&imports);
    let mut functions = FunctionSection::new();
    for p in plan {
        let base = if p.ty.wide() { 2 } else { 0 };
        functions.function(base);
        functions.function(base + 1);
    }
    module.section(&functions);
    let mut exports = ExportSection::new();
    for j in 0..plan.len() {
        exports.export(&format!("get-{j}"), ExportKind::Func, 2 * j as u32);
        exports.export(&format!("set-{j}"), ExportKind::Func, 2 * j as u32 + 1);
    }
    module.section(&exports);
    let mut code = CodeSection::new();
    for (j, p) in plan.iter().enumerate() {
        let g = j as u32;
        let mut get = Function::new([]);
        get.instructions().global_get(g);
        match p.ty {
            super::globals::GlobalType::F32 => {
                get.instructions().i32_reinterpret_f32();
            }
            super::globals::GlobalType::F64 => {
                get.instructions().i64_reinterpret_f64();
            }
            _ => {}
        }
        get.instructions().end();
        code.function(&get);
        let mut set = Function::new([]);
        set.instructions().local_get(0);
        match p.ty {
            super::globals::GlobalType::F32 => {
                set.instructions().f32_reinterpret_i32();
            }
            super::globals::GlobalType::F64 => {
                set.instructions().f64_reinterpret_i64();
            }
            _ => {}
        }
        set.instructions().global_set(g).end();
        code.function(&set);
    }
    module.section(&code);
    out.section(&ModuleSection(&module));

    // Instantiate it with the instances of the modules whose globals it
    // reaches.
    let mut args = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in plan {
        if !seen.insert(p.module) {
            continue;
        }
        let instance = match counts.instantiated.get(&p.module).map(Vec::as_slice) {
            Some([one]) => *one,
            Some(many) => {
                return Err(format!(
                    "core module {} is instantiated {} times; its mutable globals cannot be told apart",
                    p.module,
                    many.len()
                ));
            }
            None => return Err(format!("core module {} is never instantiated", p.module)),
        };
        args.push((format!("m{}", p.module), instance));
    }
    let mut instances = InstanceSection::new();
    instances.instantiate(
        counts.modules,
        args.iter()
            .map(|(n, i)| (n.as_str(), ModuleArg::Instance(*i))),
    );
    out.section(&instances);
    let accessor = counts.core_instances;

    // Its functions, lifted and exported.
    let mut aliases = ComponentAliasSection::new();
    for j in 0..plan.len() {
        for name in [format!("get-{j}"), format!("set-{j}")] {
            aliases.alias(Alias::CoreInstanceExport {
                instance: accessor,
                kind: ExportKind::Func,
                name: &name,
            });
        }
    }
    out.section(&aliases);
    let mut ctypes = ComponentTypeSection::new();
    for prim in [PrimitiveValType::S32, PrimitiveValType::S64] {
        ctypes
            .function()
            .params([] as [(&str, ComponentValType); 0])
            .result(Some(ComponentValType::Primitive(prim)));
        ctypes
            .function()
            .params([("v", ComponentValType::Primitive(prim))])
            .result(None);
    }
    out.section(&ctypes);
    let mut canon = CanonicalFunctionSection::new();
    for (j, p) in plan.iter().enumerate() {
        let base = counts.types + if p.ty.wide() { 2 } else { 0 };
        canon.lift(counts.core_funcs + 2 * j as u32, base, []);
        canon.lift(counts.core_funcs + 2 * j as u32 + 1, base + 1, []);
    }
    out.section(&canon);
    Ok(())
}
