//! `phantom build [<DIR>] [-o <FILE>]`: builds a guest project into a
//! component, for either language.
//!
//! ```text
//!   DIR/Cargo.toml ─► cargo build --release --target wasm32-wasip2 ─► the cdylib
//!                     (already a component: rustc links it with the adapter-free
//!                     wasip2 libc)                         ─► DIR/<name>.wasm
//!   DIR/*.c        ─► clang --target=wasm32-wasi -mexec-model=reactor
//!                     (with DIR/phantom/ or the built-in C SDK) ─► core module
//!                  ─► componentize (phantom:os world + preview-1 adapter) ─► DIR/<name>.wasm
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::Args;

/// Arguments of `phantom build`.
#[derive(Args)]
pub struct BuildArgs {
    /// The project directory (default: the current one).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where to write the component (default: DIR/<name>.wasm).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Runs `phantom build`.
pub fn run(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let dir = &a.dir;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let (name, component) = if dir.join("Cargo.toml").is_file() {
        build_rust(dir)?
    } else if has_c_sources(dir)? {
        build_c(dir)?
    } else {
        bail!(
            "{} holds neither a Cargo.toml nor .c files: make a project with `phantom new {} --lang rust|c`",
            dir.display(),
            dir.display()
        );
    };
    // Check it as `spawn` will.
    phantom_runtime::inspect::inspect_component(&component)
        .context("the built component cannot be a persistent process")?;
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| dir.join(format!("{name}.wasm")));
    std::fs::write(&out, &component).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "phantom: built {} ({} bytes)",
        out.display(),
        component.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn has_c_sources(dir: &Path) -> anyhow::Result<bool> {
    Ok(!c_sources(dir)?.is_empty())
}

fn c_sources(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "c") && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn build_rust(dir: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    const TARGET: &str = "wasm32-wasip2";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run `{cargo}` (is Rust installed? https://rustup.rs)"))?;
    if !output.status.success() {
        bail!(
            "`cargo build --release --target {TARGET}` failed in {} (see above); if the target is missing: `rustup target add {TARGET}`",
            dir.display()
        );
    }
    // The cdylib's .wasm, from cargo's own report.
    let mut found = None;
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let cdylib = msg["target"]["crate_types"]
            .as_array()
            .is_some_and(|t| t.iter().any(|k| k == "cdylib"));
        if !cdylib {
            continue;
        }
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or("guest")
            .to_string();
        if let Some(file) = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        {
            found = Some((name, PathBuf::from(file)));
        }
    }
    let Some((name, wasm)) = found else {
        bail!(
            "cargo built no cdylib in {}: a guest's Cargo.toml needs `[lib] crate-type = [\"cdylib\"]`",
            dir.display()
        );
    };
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    if !wasmparser::Parser::is_component(&bytes) {
        bail!(
            "{} is a core module, not a component: build for {TARGET}",
            wasm.display()
        );
    }
    Ok((name.replace('_', "-"), bytes))
}

/// The C compiler: `$CC`, else clang-19, else clang.
fn c_compiler() -> anyhow::Result<String> {
    if let Ok(cc) = std::env::var("CC") {
        return Ok(cc);
    }
    for cc in ["clang-19", "clang"] {
        if Command::new(cc)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(cc.to_string());
        }
    }
    bail!(
        "no C compiler for WebAssembly: install clang with wasi-libc (on Debian 12: `apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32`, which ./dev does), or set CC"
    )
}

fn build_c(dir: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let name = super::new::guest_name(
        &dir.canonicalize()?
            .file_name()
            .context("the directory has no name")?
            .to_string_lossy(),
    )?;
    let target = dir.join("target");
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    // The project's copy of the SDK, else the one this binary carries.
    let sdk = if dir.join("phantom").join("phantom.h").is_file() {
        dir.join("phantom")
    } else {
        let sdk = target.join("phantom-sdk");
        std::fs::create_dir_all(&sdk)?;
        for (file, text) in super::new::C_SDK {
            std::fs::write(sdk.join(file), text)?;
        }
        sdk
    };
    let mut sources = c_sources(dir)?;
    let sdk_sources: Vec<PathBuf> = c_sources(&sdk)?
        .into_iter()
        .filter(|p| !sources.iter().any(|s| s.file_name() == p.file_name()))
        .collect();
    sources.extend(sdk_sources);
    let core = target.join(format!("{name}.core.wasm"));
    let cc = c_compiler()?;
    let status = Command::new(&cc)
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-Wall",
            "-mexec-model=reactor",
        ])
        .arg("-I")
        .arg(&sdk)
        .arg("-o")
        .arg(&core)
        .args(&sources)
        .status()
        .with_context(|| format!("cannot run {cc}"))?;
    if !status.success() {
        bail!(
            "{cc} failed (see above); it needs wasi-libc for wasm32-wasi (on Debian 12: `apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32`)"
        );
    }
    let bytes = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    Ok((name, super::componentize::componentize(&bytes)?))
}
