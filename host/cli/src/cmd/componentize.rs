//! `phantom componentize <core.wasm> -o <component.wasm>`: turns a core
//! module (a C build against wasi-libc and the phantom:os bindings, for
//! example) into a component of the `persistent-process` world, in process.
//!
//! ```text
//!   core module ─► component-type sections (wit-bindgen's .o files) are kept;
//!               │  unless their worlds already export `init`, phantom:os's
//!               │  `persistent-process` world is embedded too (this binary
//!               │  carries the WIT), and wit-component merges them all
//!               ─► imports wasi_snapshot_preview1? add wasmtime 48's reactor adapter
//!               ─► wit-component (validated) ─► checked as `spawn` would check it
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

/// The phantom:os WIT this binary serves.
pub const PHANTOM_OS_WIT: &str = include_str!("../../../../wit/phantom-os.wit");
/// The `phantom:devices` WIT (a package nested in `wit/`'s).
pub const PHANTOM_DEVICES_WIT: &str = include_str!("../../../../wit/phantom-devices.wit");

/// Arguments of `phantom componentize`.
#[derive(Args)]
pub struct ComponentizeArgs {
    /// The core module (.wasm).
    core: PathBuf,
    /// Where to write the component.
    #[arg(short, long)]
    output: PathBuf,
    /// A WIT file or directory whose world the module implements instead of
    /// phantom:os's `persistent-process` (a library component, for
    /// composition); needs --world.
    #[arg(long, requires = "world")]
    wit: Option<PathBuf>,
    /// The world of --wit.
    #[arg(long, requires = "wit")]
    world: Option<String>,
}

/// Runs `phantom componentize`.
pub fn run(a: ComponentizeArgs) -> anyhow::Result<ExitCode> {
    let core =
        std::fs::read(&a.core).with_context(|| format!("cannot read {}", a.core.display()))?;
    let component = match (&a.wit, &a.world) {
        (Some(wit), Some(world)) => componentize_world(&core, Chosen::Wit(wit, world)),
        _ => componentize(&core),
    }
    .with_context(|| format!("cannot make {} a component", a.core.display()))?;
    std::fs::write(&a.output, &component)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    eprintln!(
        "phantom: wrote {} ({} bytes)",
        a.output.display(),
        component.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// A core module made a persistent-process component.
pub fn componentize(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    let component = componentize_world(core, Chosen::Process)?;
    check_process(&component)?;
    Ok(component)
}

/// Says now what `spawn` would refuse. Imports the host does not provide
/// are what a library must, in a composition still to come: a note, not an
/// error.
pub fn check_process(component: &[u8]) -> anyhow::Result<()> {
    match phantom_runtime::inspect::inspect_component(component) {
        Ok(_) => Ok(()),
        Err(phantom_runtime::inspect::InspectError::UnsupportedImports(imports))
            if !imports.iter().any(|i| phantom_runtime::inspect::is_wasi(i)) =>
        {
            eprintln!(
                "phantom: note: it imports {}, which the host does not provide: compose it with library components that export them (`phantom compose <it>.wasm --with <lib>.wasm -o <out>.wasm`) before spawning",
                imports
                    .iter()
                    .map(|i| format!("`{i}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(
            "the component cannot be a persistent process (a library component for `phantom compose` is built with --lib)",
        )),
    }
}

/// A core module made a library component: only the worlds its own
/// component-type sections carry (wit-bindgen's `.o`), no phantom:os.
pub fn componentize_library(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    if !has_component_type(core)? {
        bail!(
            "it carries no WIT world: link the `<world>_component_type.o` that `wit-bindgen c` writes (put it in the project directory), or use `phantom componentize --wit <wit> --world <world>`"
        );
    }
    componentize_world(core, Chosen::OwnOnly)
}

/// Whether the worlds a core module carries (merged) export `init`, as a
/// module built with phantom:os's own bindings object does.
fn own_world_exports_init(core: &[u8]) -> anyhow::Result<bool> {
    if !has_component_type(core)? {
        return Ok(false);
    }
    let (_, bindgen) = wit_component::metadata::decode(core)
        .context("its component-type sections (from wit-bindgen) do not decode")?;
    let world = &bindgen.resolve.worlds[bindgen.world];
    Ok(world
        .exports
        .keys()
        .any(|k| bindgen.resolve.name_world_key(k) == "init"))
}

/// Whether a core module exports a function named `name`.
fn exports_function(core: &[u8], name: &str) -> anyhow::Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        if let wasmparser::Payload::ExportSection(s) = payload.context("not a valid core module")? {
            for export in s {
                let export = export?;
                if export.name == name && export.kind == wasmparser::ExternalKind::Func {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Whether a core module carries a component-type section.
fn has_component_type(core: &[u8]) -> anyhow::Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        if let wasmparser::Payload::CustomSection(c) = payload.context("not a valid core module")?
            && c.name().starts_with("component-type")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Which WIT world a core module is made a component of.
enum Chosen<'a> {
    /// A persistent process: the worlds of its own component-type sections,
    /// plus phantom:os's `persistent-process` unless those export `init`.
    Process,
    /// A library: only the worlds of its own component-type sections.
    OwnOnly,
    /// The world named in the WIT at a path (besides its own sections').
    Wit(&'a PathBuf, &'a str),
}

/// A core module made a component of the world `chosen` says.
fn componentize_world(core: &[u8], chosen: Chosen<'_>) -> anyhow::Result<Vec<u8>> {
    if core.len() < 8 || &core[..4] != b"\0asm" {
        bail!("not a WebAssembly file (it does not start with the `\\0asm` magic number)");
    }
    if wasmparser::Parser::is_component(core) {
        bail!("it is already a component: spawn it as it is");
    }
    let mut module = core.to_vec();
    let mut imports_preview1 = false;
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        if let wasmparser::Payload::ImportSection(s) = payload.context("not a valid core module")? {
            for import in s.into_imports() {
                if import?.module == WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME {
                    imports_preview1 = true;
                }
            }
        }
    }
    // The world to embed, if any.
    let mut resolve = wit_parser::Resolve::default();
    let embed = match chosen {
        Chosen::Wit(wit, name) => {
            let (pkg, _) = resolve
                .push_path(wit)
                .with_context(|| format!("cannot read the WIT at {}", wit.display()))?;
            Some((pkg, name))
        }
        Chosen::Process if !own_world_exports_init(core)? => {
            // phantom:os with the nested phantom:devices, as `wit/` holds
            // them (one package directory).
            let mut sources = wit_parser::SourceMap::default();
            sources.push_str("phantom-os.wit", PHANTOM_OS_WIT);
            sources.push_str("phantom-devices.wit", PHANTOM_DEVICES_WIT);
            let group = sources.parse().map_err(|(_, e)| {
                anyhow::anyhow!("the built-in phantom WIT does not parse: {e}")
            })?;
            let pkg = resolve
                .push_group(group)
                .context("the built-in phantom WIT does not resolve")?;
            // The C SDK's phantom.c exports `handle-device-event` (a device
            // process), an earlier one `handle-message` (a messaging
            // process) or neither.
            if exports_function(core, "handle-device-event")? {
                Some((pkg, "phantom:devices/device-process"))
            } else if exports_function(core, "handle-message")? {
                Some((pkg, "messaging-process"))
            } else {
                Some((pkg, "persistent-process"))
            }
        }
        Chosen::Process | Chosen::OwnOnly => None,
    };
    if let Some((pkg, name)) = embed {
        let world = resolve.select_world(&[pkg], Some(name))?;
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )?;
    }
    let mut encoder = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)?;
    if imports_preview1 {
        encoder = encoder.adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?;
    }
    let component = encoder.encode().map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n(a persistent process exports `init` and `handle` of the phantom:os `persistent-process` world (and `handle-message` of `messaging-process`): build C with the SDK that `phantom new --lang c` writes)"
        )
    })?;
    Ok(component)
}
