//! Turns the WASI resource handles of a component into plain `u32` ids
//! that the host hands out and persists.
//!
//! ```text
//!   before:  import wasi:io/streams@0.2.6 (instance
//!              (export "output-stream" (type (sub resource)))
//!              (type $b (borrow $output-stream))
//!              (export "[method]output-stream.write" (func (param "self" $b) ...)))
//!            canon resource.drop $output-stream          ─► core func
//!
//!   after:   import wasi:io/streams@0.2.6 (instance
//!              (export "output-stream" (type (sub resource)))   kept, unused
//!              (type $b u32)
//!              (export "method-output-stream-write" (func (param "self" $b) ...))
//!              (export "drop-output-stream" (func (param "self" u32))))
//!            alias export $streams "drop-output-stream" (func $d)
//!            canon lower $d                               ─► core func
//! ```
//! At the core level nothing changes: a handle is an `i32` either way, so
//! the core modules (the guest's code, wasi-libc, the preview-1 adapter)
//! are copied byte for byte and call the same core signatures. What
//! changes is who allocates the numbers: instead of wasmtime's per-instance
//! handle table, which lives outside linear memory and which no API can
//! restore, the host's `HandleTable` (iface/wasi/table.rs), which is
//! persisted with every checkpoint. Method names change because the
//! component model reserves `[method]R.f` for functions whose first
//! parameter is `borrow<R>`.
//!
//! Every component is rewritten, the top level and each nested one (a
//! composition made by `phantom compose`, `wac` or `wasm-tools compose`
//! nests its parts): each has its own index spaces, kept in a `Scope`.
//! The parts of a composition share the one host table, so their handles
//! are numbered from one sequence instead of one table per part; a guest
//! never sees the difference, as a handle is opaque.

use std::collections::{BTreeMap, HashMap};

use wasm_encoder::reencode::{Error as ReError, Reencode, ReencodeComponent, component_utils};
use wasm_encoder::{Alias, ComponentExportKind, ComponentTypeRef, PrimitiveValType};
use wasmparser::{
    ComponentAlias, ComponentDefinedType, ComponentExternalKind, ComponentType,
    ComponentTypeRef as PComponentTypeRef, InstanceTypeDeclaration, Parser, Payload, TypeBounds,
};

/// The name a rewritten function has in the host's WASI instances:
/// `[method]R.f` → `method-R-f`, `[static]R.f` → `static-R-f`,
/// `[constructor]R` → `constructor-R`; other names are kept.
pub fn mangle(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("[method]") {
        format!("method-{}", rest.replacen('.', "-", 1))
    } else if let Some(rest) = name.strip_prefix("[static]") {
        format!("static-{}", rest.replacen('.', "-", 1))
    } else if let Some(rest) = name.strip_prefix("[constructor]") {
        format!("constructor-{rest}")
    } else {
        name.to_string()
    }
}

/// The name of the function that drops a handle of resource `r`.
pub fn drop_name(resource: &str) -> String {
    format!("drop-{resource}")
}

/// Whether an import name is a WASI interface (`wasi:` package).
fn is_wasi(name: &str) -> bool {
    name.starts_with("wasi:")
}

/// `wasi:io/streams@0.2.6` → `wasi:io/streams`.
fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// What a type index (top level) or a local type index (inside an instance
/// type) stands for, as far as the rewrite cares.
#[derive(Clone, Debug, PartialEq)]
enum Tag {
    Other,
    /// A resource defined by a WASI interface: (interface, resource name).
    Wasi(String, String),
}

/// Rewrites `bytes` if it imports WASI; returns None when there is nothing
/// to rewrite.
pub fn rewrite(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    if !imports_wasi_anywhere(bytes)? {
        return Ok(None);
    }
    // Every section must lie within the file: the re-encoder slices by the
    // sizes sections claim and panics past the end (wasm-encoder 0.254).
    super::globals::top_level_sections(bytes)?;
    let mut r = Rewriter {
        scopes: vec![Scope::new(scan_component(bytes)?)],
        nested_wasi: false,
        error: None,
    };
    let mut component = wasm_encoder::Component::new();
    let result = r.parse_component(&mut component, Parser::new(0), bytes);
    if let Some(e) = r.error.take() {
        return Err(e);
    }
    result.map_err(|e| format!("cannot rewrite its WASI handles: {e}"))?;
    let out = component.finish();
    if r.nested_wasi {
        // A nested component's WASI import is rewritten on the assumption
        // that the host's WASI satisfies it, through the outer component.
        // Something else may (a library exporting a virtualized
        // `wasi:cli/environment`, say): the types then disagree. Say so
        // rather than hand wasmtime an invalid component.
        wasmparser::Validator::new().validate_all(&out).map_err(|e| {
            format!(
                "a nested component imports WASI that the host does not provide to it directly ({e}); a composition persists when every WASI import of its parts is passed through from the host's"
            )
        })?;
    }
    Ok(Some(out))
}

/// Whether the component or any component nested in it imports WASI.
fn imports_wasi_anywhere(bytes: &[u8]) -> Result<bool, String> {
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::ComponentImportSection(s) =
            payload.map_err(|e| format!("malformed component: {e}"))?
        {
            for import in s {
                if is_wasi(import.map_err(|e| e.to_string())?.name.name) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Finds which type indices of one component (not of those nested in it)
/// are the instance types of its WASI imports.
fn scan_component(bytes: &[u8]) -> Result<HashMap<u32, String>, String> {
    let mut found = HashMap::new();
    let mut depth = 0u32;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("malformed component: {e}"))?;
        match payload {
            Payload::ComponentSection { .. } | Payload::ModuleSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(s) if depth == 0 => {
                for import in s {
                    let import = import.map_err(|e| e.to_string())?;
                    let name = import.name.name;
                    if let (true, PComponentTypeRef::Instance(t)) = (is_wasi(name), import.ty) {
                        found.insert(t, unversioned(name).to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

/// The index spaces of one component, as far as the rewrite cares.
struct Scope {
    /// Type index → WASI interface, for the instance types of WASI imports.
    wasi_instance_types: HashMap<u32, String>,
    /// Types.
    types: Vec<Tag>,
    /// Instances: the instance type of a WASI import.
    instances: Vec<Option<u32>>,
    /// For each rewritten instance type: its resource exports → the
    /// resource they are.
    instance_type_resources: HashMap<u32, BTreeMap<String, (String, String)>>,
    /// Original function index → new index.
    func_map: Vec<u32>,
    next_func: u32,
    /// (interface, resource) → the new function that drops its handles.
    drops: HashMap<(String, String), u32>,
}

impl Scope {
    fn new(wasi_instance_types: HashMap<u32, String>) -> Self {
        Scope {
            wasi_instance_types,
            types: Vec::new(),
            instances: Vec::new(),
            instance_type_resources: HashMap::new(),
            func_map: Vec::new(),
            next_func: 0,
            drops: HashMap::new(),
        }
    }
}

struct Rewriter {
    /// The component being rewritten (last) and those it is nested in.
    scopes: Vec<Scope>,
    /// Whether a nested component's WASI imports were rewritten.
    nested_wasi: bool,
    error: Option<String>,
}

impl Reencode for Rewriter {
    type Error = std::convert::Infallible;
}

impl Rewriter {
    /// The component being rewritten.
    fn sc(&mut self) -> &mut Scope {
        self.scopes
            .last_mut()
            .expect("a scope per component being rewritten")
    }

    /// What type `index` of the component `count` levels out is.
    fn outer_tag(&self, count: u32, index: u32) -> Tag {
        self.scopes
            .len()
            .checked_sub(1 + count as usize)
            .and_then(|s| self.scopes[s].types.get(index as usize))
            .cloned()
            .unwrap_or(Tag::Other)
    }

    fn new_func(&mut self) {
        let sc = self.sc();
        sc.func_map.push(sc.next_func);
        sc.next_func += 1;
    }

    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    /// The instance type of a WASI interface, with handles as `u32`,
    /// methods renamed and a drop function per resource it defines.
    fn instance_type(
        &mut self,
        index: u32,
        interface: &str,
        decls: Box<[InstanceTypeDeclaration<'_>]>,
    ) -> Result<wasm_encoder::InstanceType, ReError<std::convert::Infallible>> {
        let mut out = wasm_encoder::InstanceType::new();
        let mut local: Vec<Tag> = Vec::new();
        let mut resources = BTreeMap::new();
        let mut defined: Vec<String> = Vec::new();
        self.push_depth();
        for decl in Vec::from(decls) {
            match decl {
                InstanceTypeDeclaration::Type(ComponentType::Defined(
                    ComponentDefinedType::Own(r) | ComponentDefinedType::Borrow(r),
                )) if matches!(local.get(r as usize), Some(Tag::Wasi(..))) => {
                    out.ty().defined_type().primitive(PrimitiveValType::U32);
                    local.push(Tag::Other);
                }
                InstanceTypeDeclaration::Type(t) => {
                    self.parse_component_type(out.ty(), t)?;
                    local.push(Tag::Other);
                }
                InstanceTypeDeclaration::CoreType(t) => {
                    self.parse_component_core_type(out.core_type(), t)?;
                }
                InstanceTypeDeclaration::Alias(a) => {
                    let tag = match a {
                        ComponentAlias::Outer {
                            kind: wasmparser::ComponentOuterAliasKind::Type,
                            count,
                            index,
                        } => Some(self.outer_tag(count.saturating_sub(1), index)),
                        ComponentAlias::InstanceExport {
                            kind: ComponentExternalKind::Type,
                            ..
                        } => Some(Tag::Other),
                        _ => None,
                    };
                    let a = self.component_alias(a)?;
                    out.alias(a);
                    if let Some(tag) = tag {
                        local.push(tag);
                    }
                }
                InstanceTypeDeclaration::Export { name: full, ty } => {
                    let name = full.name;
                    match ty {
                        PComponentTypeRef::Type(TypeBounds::SubResource) => {
                            local.push(Tag::Wasi(interface.to_string(), name.to_string()));
                            resources.insert(
                                name.to_string(),
                                (interface.to_string(), name.to_string()),
                            );
                            defined.push(name.to_string());
                            out.export(
                                full,
                                ComponentTypeRef::Type(wasm_encoder::TypeBounds::SubResource),
                            );
                        }
                        PComponentTypeRef::Type(TypeBounds::Eq(i)) => {
                            let tag = local.get(i as usize).cloned().unwrap_or(Tag::Other);
                            if let Tag::Wasi(iface, res) = &tag {
                                resources.insert(name.to_string(), (iface.clone(), res.clone()));
                            }
                            local.push(tag);
                            let ty = self.component_type_ref(ty)?;
                            out.export(full, ty);
                        }
                        _ => {
                            let ty = self.component_type_ref(ty)?;
                            let mut renamed = wasm_encoder::ComponentExternName::from(full);
                            renamed.name = std::borrow::Cow::Owned(mangle(name));
                            out.export(renamed, ty);
                        }
                    }
                }
            }
        }
        for resource in defined {
            let ty = local.len() as u32;
            out.ty()
                .function()
                .params([(
                    "self",
                    wasm_encoder::ComponentValType::Primitive(PrimitiveValType::U32),
                )])
                .result(None);
            local.push(Tag::Other);
            out.export(drop_name(&resource), ComponentTypeRef::Func(ty));
        }
        self.pop_depth();
        self.sc().instance_type_resources.insert(index, resources);
        Ok(out)
    }

    fn component_payload(
        &mut self,
        component: &mut wasm_encoder::Component,
        payload: Payload<'_>,
        whole: &[u8],
    ) -> Result<(), ReError<std::convert::Infallible>> {
        match payload {
            Payload::ComponentTypeSection(section) => {
                let mut types = wasm_encoder::ComponentTypeSection::new();
                for ty in section {
                    let ty = ty?;
                    let index = self.sc().types.len() as u32;
                    match ty {
                        ComponentType::Defined(
                            ComponentDefinedType::Own(r) | ComponentDefinedType::Borrow(r),
                        ) if matches!(self.sc().types.get(r as usize), Some(Tag::Wasi(..))) => {
                            types.defined_type().primitive(PrimitiveValType::U32);
                        }
                        ComponentType::Instance(decls)
                            if self.sc().wasi_instance_types.contains_key(&index) =>
                        {
                            let iface = self.sc().wasi_instance_types[&index].clone();
                            let t = self.instance_type(index, &iface, decls)?;
                            types.instance(&t);
                        }
                        other => self.parse_component_type(types.ty(), other)?,
                    }
                    self.sc().types.push(Tag::Other);
                }
                component.section(&types);
            }
            Payload::ComponentImportSection(section) => {
                let mut imports = wasm_encoder::ComponentImportSection::new();
                for import in section {
                    let import = import?;
                    match import.ty {
                        PComponentTypeRef::Instance(t) => {
                            let sc = self.sc();
                            let wasi = is_wasi(import.name.name)
                                && sc.wasi_instance_types.contains_key(&t);
                            sc.instances.push(wasi.then_some(t));
                        }
                        PComponentTypeRef::Func(_) => self.new_func(),
                        PComponentTypeRef::Type(_) => self.sc().types.push(Tag::Other),
                        _ => {}
                    }
                    let ty = self.component_type_ref(import.ty)?;
                    imports.import(import.name, ty);
                }
                component.section(&imports);
            }
            Payload::ComponentAliasSection(section) => {
                let mut aliases = wasm_encoder::ComponentAliasSection::new();
                for alias in section {
                    let alias = alias?;
                    if let ComponentAlias::InstanceExport {
                        kind,
                        instance_index,
                        name,
                    } = alias
                        && let Some(Some(ty)) =
                            self.sc().instances.get(instance_index as usize).copied()
                    {
                        match kind {
                            ComponentExternalKind::Func => {
                                self.new_func();
                                aliases.alias(Alias::InstanceExport {
                                    instance: instance_index,
                                    kind: ComponentExportKind::Func,
                                    name: &mangle(name),
                                });
                                continue;
                            }
                            ComponentExternalKind::Type => {
                                let tag = match self
                                    .sc()
                                    .instance_type_resources
                                    .get(&ty)
                                    .and_then(|m| m.get(name))
                                {
                                    Some((i, r)) => Tag::Wasi(i.clone(), r.clone()),
                                    None => Tag::Other,
                                };
                                self.sc().types.push(tag);
                                aliases.alias(self.component_alias(alias)?);
                                continue;
                            }
                            _ => {}
                        }
                    }
                    match alias {
                        ComponentAlias::InstanceExport { kind, .. } => match kind {
                            ComponentExternalKind::Func => self.new_func(),
                            ComponentExternalKind::Type => self.sc().types.push(Tag::Other),
                            ComponentExternalKind::Instance => self.sc().instances.push(None),
                            _ => {}
                        },
                        ComponentAlias::Outer {
                            kind: wasmparser::ComponentOuterAliasKind::Type,
                            count,
                            index,
                        } => {
                            let tag = self.outer_tag(count, index);
                            self.sc().types.push(tag);
                        }
                        _ => {}
                    }
                    aliases.alias(self.component_alias(alias)?);
                }
                component.section(&aliases);
            }
            Payload::ComponentCanonicalSection(section) => {
                let funcs: Vec<_> = section.into_iter().collect::<Result<_, _>>()?;
                // The drop functions this section needs, aliased first.
                let mut aliases = wasm_encoder::ComponentAliasSection::new();
                for f in &funcs {
                    if let wasmparser::CanonicalFunction::ResourceDrop { resource } = f
                        && let Some(Tag::Wasi(iface, res)) =
                            self.sc().types.get(*resource as usize).cloned()
                        && !self.sc().drops.contains_key(&(iface.clone(), res.clone()))
                    {
                        let Some(instance) = self.instance_of(&iface) else {
                            self.fail(format!(
                                "it drops `{iface}.{res}` handles without importing `{iface}` itself"
                            ));
                            continue;
                        };
                        aliases.alias(Alias::InstanceExport {
                            instance,
                            kind: ComponentExportKind::Func,
                            name: &drop_name(&res),
                        });
                        let sc = self.sc();
                        sc.drops.insert((iface, res), sc.next_func);
                        sc.next_func += 1;
                    }
                }
                if !aliases.is_empty() {
                    component.section(&aliases);
                }
                let mut canonical = wasm_encoder::CanonicalFunctionSection::new();
                for f in funcs {
                    match f {
                        wasmparser::CanonicalFunction::ResourceDrop { resource }
                            if matches!(
                                self.sc().types.get(resource as usize),
                                Some(Tag::Wasi(..))
                            ) =>
                        {
                            let Some(Tag::Wasi(iface, res)) =
                                self.sc().types.get(resource as usize).cloned()
                            else {
                                unreachable!()
                            };
                            let func = self.sc().drops.get(&(iface, res)).copied().unwrap_or(0);
                            canonical.lower(func, []);
                        }
                        wasmparser::CanonicalFunction::Lift { .. } => {
                            self.parse_component_canonical(&mut canonical, f)?;
                            self.new_func();
                        }
                        other => self.parse_component_canonical(&mut canonical, other)?,
                    }
                }
                component.section(&canonical);
            }
            Payload::ComponentExportSection(section) => {
                let mut exports = wasm_encoder::ComponentExportSection::new();
                for export in section {
                    let export = export?;
                    let (kind, index) = (export.kind, export.index);
                    self.parse_component_export(&mut exports, export)?;
                    match kind {
                        ComponentExternalKind::Func => self.new_func(),
                        ComponentExternalKind::Type => {
                            let tag = self
                                .sc()
                                .types
                                .get(index as usize)
                                .cloned()
                                .unwrap_or(Tag::Other);
                            self.sc().types.push(tag);
                        }
                        ComponentExternalKind::Instance => self.sc().instances.push(None),
                        _ => {}
                    }
                }
                component.section(&exports);
            }
            Payload::ComponentInstanceSection(section) => {
                let mut instances = wasm_encoder::ComponentInstanceSection::new();
                for instance in section {
                    self.parse_component_instance(&mut instances, instance?)?;
                    self.sc().instances.push(None);
                }
                component.section(&instances);
            }
            other => component_utils::parse_component_payload(self, component, other, whole)?,
        }
        Ok(())
    }

    /// The instance importing WASI interface `iface`.
    fn instance_of(&mut self, iface: &str) -> Option<u32> {
        let sc = self.sc();
        sc.instances
            .iter()
            .position(|i| {
                i.and_then(|t| sc.wasi_instance_types.get(&t))
                    .is_some_and(|name| name == iface)
            })
            .map(|i| i as u32)
    }
}

impl ReencodeComponent for Rewriter {
    fn component_func_index(&mut self, ty: u32) -> u32 {
        match self.sc().func_map.get(ty as usize) {
            Some(&i) => i,
            None => {
                self.fail(format!(
                    "it refers to component function {ty} before defining it"
                ));
                ty
            }
        }
    }

    fn parse_component_payload(
        &mut self,
        component: &mut wasm_encoder::Component,
        payload: Payload<'_>,
        whole_component: &[u8],
    ) -> Result<(), ReError<Self::Error>> {
        self.component_payload(component, payload, whole_component)
    }

    fn parse_component_subcomponent(
        &mut self,
        component: &mut wasm_encoder::Component,
        parser: Parser,
        subcomponent: &[u8],
        whole_component: &[u8],
    ) -> Result<(), ReError<Self::Error>> {
        // A section running past the nested component's end is an error
        // here; the re-encoder would slice past it and panic
        // (wasm-encoder 0.254).
        let wasi = match super::globals::top_level_sections(subcomponent)
            .and_then(|_| scan_component(subcomponent))
        {
            Ok(w) => w,
            Err(e) => {
                self.fail(e);
                return Ok(());
            }
        };
        self.nested_wasi |= !wasi.is_empty();
        self.scopes.push(Scope::new(wasi));
        let r = component_utils::parse_component_subcomponent(
            self,
            component,
            parser,
            subcomponent,
            whole_component,
        );
        self.scopes.pop();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_mangled_into_plain_kebab_names() {
        assert_eq!(
            mangle("[method]output-stream.blocking-write-and-flush"),
            "method-output-stream-blocking-write-and-flush"
        );
        assert_eq!(mangle("[static]descriptor.open"), "static-descriptor-open");
        assert_eq!(mangle("[constructor]fields"), "constructor-fields");
        assert_eq!(mangle("get-stdout"), "get-stdout");
        assert_eq!(drop_name("pollable"), "drop-pollable");
    }

    #[test]
    fn a_component_without_wasi_is_left_alone() {
        let c = wasm_encoder::Component::new().finish();
        assert_eq!(rewrite(&c).unwrap(), None);
    }
}
