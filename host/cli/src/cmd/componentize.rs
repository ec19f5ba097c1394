//! `phantom componentize <core.wasm> -o <component.wasm>`: turns a core
//! module (a C build against wasi-libc and the phantom:os bindings, for
//! example) into a component of the `persistent-process` world, in process.
//!
//! ```text
//!   core module ─► has a component-type section (wit-bindgen's .o)? keep it
//!               │  otherwise: embed phantom:os's world (this binary carries the WIT)
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
        (Some(wit), Some(world)) => componentize_world(&core, Some((wit, world))),
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
    let component = componentize_world(core, None)?;
    // Say now what `spawn` would refuse.
    phantom_runtime::inspect::inspect_component(&component)?;
    Ok(component)
}

/// A core module made a component of `world` in the WIT at `wit` (None:
/// phantom:os's `persistent-process`, embedded unless the module carries
/// its own world).
fn componentize_world(core: &[u8], world: Option<(&PathBuf, &String)>) -> anyhow::Result<Vec<u8>> {
    if core.len() < 8 || &core[..4] != b"\0asm" {
        bail!("not a WebAssembly file (it does not start with the `\\0asm` magic number)");
    }
    if wasmparser::Parser::is_component(core) {
        bail!("it is already a component: spawn it as it is");
    }
    let mut module = core.to_vec();
    let mut has_metadata = false;
    let mut imports_preview1 = false;
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        match payload.context("not a valid core module")? {
            wasmparser::Payload::CustomSection(c) if c.name().starts_with("component-type") => {
                has_metadata = true;
            }
            wasmparser::Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    if import?.module == WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME {
                        imports_preview1 = true;
                    }
                }
            }
            _ => {}
        }
    }
    // The world to embed: the one asked for, else phantom:os's unless the
    // module carries its own.
    let mut resolve = wit_parser::Resolve::default();
    let chosen = match world {
        Some((wit, name)) => {
            let (pkg, _) = resolve
                .push_path(wit)
                .with_context(|| format!("cannot read the WIT at {}", wit.display()))?;
            Some((pkg, name.as_str()))
        }
        None if !has_metadata => {
            let pkg = resolve
                .push_str("phantom-os.wit", PHANTOM_OS_WIT)
                .context("the built-in phantom:os WIT does not parse")?;
            Some((pkg, "persistent-process"))
        }
        None => None,
    };
    if let Some((pkg, name)) = chosen {
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
            "{e:#}\n(a persistent process exports `init` and `handle` of the phantom:os `persistent-process` world: build C with the SDK that `phantom new --lang c` writes)"
        )
    })?;
    Ok(component)
}
