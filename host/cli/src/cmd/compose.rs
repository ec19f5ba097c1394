//! `phantom compose <APP> --with <LIB>... -o <OUT>`: makes one component of
//! an application and the library components that implement what it
//! imports, in process (with `wasm-compose`, the library behind
//! `wasm-tools compose`). The result is spawned like any guest: one
//! persistent process, whose every part (each with its own linear memory,
//! globals and WASI handles) is checkpointed and restored together.
//!
//! ```text
//!   APP imports demo:interop/stats ◄── LIB exports demo:interop/stats
//!   APP imports wasi:*, phantom:os ─┐   LIB imports wasi:* ─┐
//!                                   ▼                       ▼
//!   OUT: imports wasi:*, phantom:os (shared by both), nests APP and LIB,
//!        instantiates LIB, then APP with LIB's instance; exports APP's exports
//! ```
//! An import of APP that no library exports stays an import of OUT, and is
//! reported if a persistent process may not have it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

/// Arguments of `phantom compose`.
#[derive(Args)]
pub struct ComposeArgs {
    /// The application component (a persistent process: it exports `init`
    /// and `handle`).
    app: PathBuf,
    /// A library component whose exports satisfy imports of the application
    /// (or of another library) by interface name; repeat for several.
    #[arg(long = "with", required = true, value_name = "LIB")]
    with: Vec<PathBuf>,
    /// Where to write the composed component.
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs `phantom compose`.
pub fn run(a: ComposeArgs) -> anyhow::Result<ExitCode> {
    let composed = compose(&a.app, &a.with)?;
    std::fs::write(&a.output, &composed)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    eprintln!(
        "phantom: wrote {} ({} bytes): {} composed with {}",
        a.output.display(),
        composed.len(),
        a.app.display(),
        a.with
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

/// Composes `app` with `libs` and checks the result as `spawn` will.
pub fn compose(app: &Path, libs: &[PathBuf]) -> anyhow::Result<Vec<u8>> {
    for path in std::iter::once(app).chain(libs.iter().map(PathBuf::as_path)) {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            bail!("{} is not a WebAssembly file", path.display());
        }
        if !wasmparser::Parser::is_component(&bytes) {
            bail!(
                "{} is a core module, not a component (make it one with `phantom build --lib` or `phantom componentize --wit <wit> --world <world>`)",
                path.display()
            );
        }
    }
    // Each interface the application (or a library) imports comes from one
    // library: two that export it are ambiguous, and a library that gives
    // none of them is a mistake on the command line.
    let mut wanted = phantom_runtime::inspect::top_level_names(&std::fs::read(app)?, true);
    for lib in libs {
        wanted.extend(phantom_runtime::inspect::top_level_names(
            &std::fs::read(lib)?,
            true,
        ));
    }
    let mut from: std::collections::BTreeMap<String, &Path> = Default::default();
    for lib in libs {
        let exports = phantom_runtime::inspect::top_level_names(&std::fs::read(lib)?, false);
        let used: Vec<&String> = exports.iter().filter(|e| wanted.contains(*e)).collect();
        if used.is_empty() {
            bail!(
                "{} exports nothing {} or the other libraries import (it exports: {}; they import: {})",
                lib.display(),
                app.display(),
                list(&exports),
                list(&wanted)
            );
        }
        for e in used {
            if let Some(first) = from.insert(e.clone(), lib) {
                bail!(
                    "both {} and {} export `{e}`, which is imported: compose with one of them",
                    first.display(),
                    lib.display()
                );
            }
        }
    }
    let app = app
        .canonicalize()
        .with_context(|| format!("cannot read {}", app.display()))?;
    // wasm-compose names each library after its file, in kebab case, and
    // also looks for a file named after each import in its directory: an
    // empty directory holding copies under kebab names makes --with the
    // only source.
    let empty = EmptyDir::new()?;
    let mut definitions = Vec::new();
    for (i, lib) in libs.iter().enumerate() {
        let stem = lib
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copy = empty.0.join(format!("{}.wasm", kebab(&stem, i)));
        std::fs::copy(lib, &copy).with_context(|| format!("cannot read {}", lib.display()))?;
        definitions.push(copy);
    }
    let config = wasm_compose::config::Config {
        dir: empty.0.join("nothing-here"),
        definitions,
        ..Default::default()
    };
    let composed = wasm_compose::composer::ComponentComposer::new(&app, &config)
        .compose()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .with_context(|| {
            format!(
                "cannot compose {} with {} (does a library export an interface the application imports, under the same name and version?)",
                app.display(),
                libs.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    phantom_runtime::inspect::inspect_component(&composed)
        .context("the composed component cannot be a persistent process")?;
    Ok(composed)
}

/// A kebab-case name for library `i` from its file name: `rust_stats` →
/// `rust-stats`; a name with nothing usable becomes `lib-<i>`.
fn kebab(stem: &str, i: usize) -> String {
    let words: Vec<String> = stem
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let name = words.join("-");
    if name.starts_with(|c: char| c.is_ascii_lowercase()) {
        format!("{name}-{i}")
    } else {
        format!("lib-{i}")
    }
}

/// An empty directory, removed when dropped.
struct EmptyDir(PathBuf);

impl EmptyDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("phantom-compose-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(EmptyDir(dir))
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
