//! `phantom build [<DIR>] [-o <FILE>] [--lib]`: builds a guest project into
//! a component, for either language: a persistent process, or with `--lib`
//! a library component that exports a WIT interface for `phantom compose`.
//!
//! ```text
//!   DIR/Cargo.toml ─► cargo build --release --target wasm32-wasip2 ─► the cdylib
//!                     (already a component: rustc links it with the adapter-free
//!                     wasip2 libc)                         ─► DIR/<name>.wasm
//!   DIR/*.c        ─► clang --target=wasm32-wasi -mexec-model=reactor
//!                     (with DIR/phantom/ or the built-in C SDK; not with --lib)
//!                     linking DIR/*.o (wit-bindgen's `<world>_component_type.o`)
//!                                                          ─► core module
//!                  ─► componentize (the worlds of the .o files, plus phantom:os's
//!                     unless --lib; the preview-1 adapter)  ─► DIR/<name>.wasm
//! ```
//! Bindings for other interfaces (what a process imports, or what a
//! library exports) come from `wit-bindgen c <wit> --world <world>`: put the
//! `.c`, `.h` and `_component_type.o` it writes in DIR.

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
    /// Build a library component (it exports the interfaces of its own WIT
    /// world, for `phantom compose`) instead of a persistent process: no
    /// phantom SDK, and no `init`/`handle` needed.
    #[arg(long)]
    lib: bool,
}

/// Runs `phantom build`.
pub fn run(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let dir = &a.dir;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let (name, component) = if dir.join("Cargo.toml").is_file() {
        let built = build_rust(dir)?;
        if !a.lib {
            super::componentize::check_process(&built.1)?;
        }
        built
    } else if has_c_sources(dir)? {
        build_c(dir, a.lib)?
    } else {
        bail!(
            "{} holds neither a Cargo.toml nor .c files: make a project with `phantom new {} --lang rust|c`",
            dir.display(),
            dir.display()
        );
    };
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
    files_ending(dir, "c")
}

/// The files in `dir` (not below) with extension `ext`, sorted.
fn files_ending(dir: &Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == ext) && path.is_file() {
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

fn build_c(dir: &Path, lib: bool) -> anyhow::Result<(String, Vec<u8>)> {
    let name = super::new::guest_name(
        &dir.canonicalize()?
            .file_name()
            .context("the directory has no name")?
            .to_string_lossy(),
    )?;
    let target = dir.join("target");
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    // The project's copy of the SDK, else the one this binary carries; a
    // library has none.
    let sdk = if lib {
        dir.to_path_buf()
    } else if dir.join("phantom").join("phantom.h").is_file() {
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
    if !lib {
        let sdk_sources: Vec<PathBuf> = c_sources(&sdk)?
            .into_iter()
            .filter(|p| !sources.iter().any(|s| s.file_name() == p.file_name()))
            .collect();
        sources.extend(sdk_sources);
    }
    // Objects in the project: wit-bindgen's component-type objects, which
    // carry the worlds of the bindings next to them.
    sources.extend(files_ending(dir, "o")?);
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
        // The hint only when wasi-libc looks missing (where Debian puts
        // it); otherwise the compiler's own errors above say it all.
        if Path::new("/usr/include/wasm32-wasi/stdio.h").exists() {
            bail!(
                "{cc} failed to compile {} (its errors are above)",
                dir.display()
            );
        }
        bail!(
            "{cc} failed (see above); it needs wasi-libc for wasm32-wasi (on Debian 12: `apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32`)"
        );
    }
    let bytes = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = if lib {
        super::componentize::componentize_library(&bytes)?
    } else {
        super::componentize::componentize(&bytes)?
    };
    Ok((name, component))
}
