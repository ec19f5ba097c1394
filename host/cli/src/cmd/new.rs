//! `phantom new <DIR> --lang rust|c`: a ready guest project, which
//! `phantom build <DIR>` turns into a component. The SDK travels inside the
//! project (this binary carries it), so nothing else needs to be found.
//!
//! ```text
//!   rust: Cargo.toml (cdylib, [workspace]), src/lib.rs, phantom-sdk/ (+ wit/)
//!         --devices: + phantom-device-sdk/, devices.toml, scenario.toml
//!   c --devices: a GPIO main.c, devices.toml, scenario.toml
//!   c:    main.c, phantom/ (phantom.h, phantom.c, the wit-bindgen bindings)
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// The languages a guest can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with std, built for wasm32-wasip2.
    Rust,
    /// C with wasi-libc, built with clang for wasm32-wasi.
    C,
}

/// Arguments of `phantom new`.
#[derive(Args)]
pub struct NewArgs {
    /// The directory to create (it must not exist, or be empty).
    dir: PathBuf,
    /// The language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The guest's name (default: the directory's name).
    #[arg(long)]
    name: Option<String>,
    /// A device process: a GPIO example (with phantom-device-sdk for
    /// Rust) and the manifest and scenario that run it on simulated pins.
    #[arg(long)]
    devices: bool,
}

/// What `--devices` adds to a Rust project (a C one takes the last two).
const RUST_DEVICE_FILES: &[(&str, &str)] = &[
    (
        "phantom-device-sdk/Cargo.toml",
        include_str!("../../templates/rust-devices/device-sdk-Cargo.toml"),
    ),
    (
        "phantom-device-sdk/src/lib.rs",
        include_str!("../../../../guests/device-sdk/src/lib.rs"),
    ),
    (
        "phantom-sdk/wit/phantom-devices.wit",
        include_str!("../../../../wit/phantom-devices.wit"),
    ),
    (
        "devices.toml",
        include_str!("../../templates/rust-devices/devices.toml"),
    ),
    (
        "scenario.toml",
        include_str!("../../templates/rust-devices/scenario.toml"),
    ),
];

const RUST_FILES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../templates/rust/lib.rs")),
    (
        "phantom-sdk/Cargo.toml",
        include_str!("../../templates/rust/sdk-Cargo.toml"),
    ),
    (
        "phantom-sdk/src/lib.rs",
        include_str!("../../../../guests/sdk/src/lib.rs"),
    ),
    (
        "phantom-sdk/src/args.rs",
        include_str!("../../../../guests/sdk/src/args.rs"),
    ),
    (
        "phantom-sdk/src/clocks.rs",
        include_str!("../../../../guests/sdk/src/clocks.rs"),
    ),
    (
        "phantom-sdk/src/console.rs",
        include_str!("../../../../guests/sdk/src/console.rs"),
    ),
    (
        "phantom-sdk/src/messages.rs",
        include_str!("../../../../guests/sdk/src/messages.rs"),
    ),
    (
        "phantom-sdk/src/process.rs",
        include_str!("../../../../guests/sdk/src/process.rs"),
    ),
    (
        "phantom-sdk/src/timers.rs",
        include_str!("../../../../guests/sdk/src/timers.rs"),
    ),
    (
        "phantom-sdk/wit/phantom-os.wit",
        super::componentize::PHANTOM_OS_WIT,
    ),
    (".gitignore", include_str!("../../templates/gitignore")),
];

/// The C SDK, written into a project's `phantom/` (and used by `phantom
/// build` when a project has none).
pub const C_SDK: &[(&str, &str)] = &[
    (
        "phantom.h",
        include_str!("../../../../guests/c-sdk/phantom.h"),
    ),
    (
        "phantom.c",
        include_str!("../../../../guests/c-sdk/phantom.c"),
    ),
    (
        "device_process.h",
        include_str!("../../../../guests/c-sdk/device_process.h"),
    ),
    (
        "device_process.c",
        include_str!("../../../../guests/c-sdk/device_process.c"),
    ),
    (
        "README.md",
        include_str!("../../../../guests/c-sdk/README.md"),
    ),
];

/// Runs `phantom new`.
pub fn run(a: NewArgs) -> anyhow::Result<ExitCode> {
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a
            .dir
            .canonicalize()
            .unwrap_or_else(|_| a.dir.clone())
            .file_name()
            .context("give the directory a name, or --name")?
            .to_string_lossy()
            .into_owned(),
    };
    let name = guest_name(&name)?;
    if a.dir.exists()
        && std::fs::read_dir(&a.dir)
            .with_context(|| format!("cannot read {}", a.dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", a.dir.display());
    }
    let write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let path = a.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text.replace("{name}", &name))
            .with_context(|| format!("cannot write {}", path.display()))
    };
    // Written verbatim: `{name}` is not a placeholder in SDK sources and WIT.
    let verbatim = |rel: &str, text: &str| -> anyhow::Result<()> {
        let path = a.dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    match a.lang {
        Lang::Rust => {
            let mut cargo = include_str!("../../templates/rust/Cargo.toml.in").to_string();
            if a.devices {
                cargo = cargo.replace(
                    "phantom-sdk = { path = \"phantom-sdk\" }\n",
                    "phantom-sdk = { path = \"phantom-sdk\" }\nphantom-device-sdk = { path = \"phantom-device-sdk\" }\n",
                );
            }
            write("Cargo.toml", &cargo)?;
            for (rel, text) in RUST_FILES {
                if a.devices && *rel == "src/lib.rs" {
                    write(rel, include_str!("../../templates/rust-devices/lib.rs"))?;
                    continue;
                }
                // The SDK's bindings read the WIT next to it.
                let text = if *rel == "phantom-sdk/src/lib.rs" {
                    text.replace("path: \"../../wit\"", "path: \"wit\"")
                } else {
                    text.to_string()
                };
                // The SDK's sources are copies: `{name}` in them is Rust
                // formatting (its error messages), not a placeholder.
                if rel.starts_with("phantom-sdk/src/") || rel.ends_with(".wit") {
                    verbatim(rel, &text)?;
                } else {
                    write(rel, &text)?;
                }
            }
            if a.devices {
                for (rel, text) in RUST_DEVICE_FILES {
                    // The device SDK's bindings read the WIT of phantom-sdk.
                    let text = text.replace("path: \"../../wit\"", "path: \"../phantom-sdk/wit\"");
                    verbatim(rel, &text)?;
                }
            }
        }
        Lang::C => {
            if a.devices {
                write(
                    "main.c",
                    include_str!("../../../../guests/c-doorbell/main.c"),
                )?;
                for (rel, text) in &RUST_DEVICE_FILES[3..] {
                    write(rel, text)?;
                }
            } else {
                write("main.c", include_str!("../../templates/c/main.c"))?;
            }
            for (rel, text) in C_SDK {
                let path = a.dir.join("phantom").join(rel);
                std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            write(".gitignore", include_str!("../../templates/gitignore"))?;
        }
    }
    let shown = a.dir.display().to_string();
    let arg = if shown
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@".contains(&b))
    {
        shown.clone()
    } else {
        format!("'{}'", shown.replace('\'', "'\\''"))
    };
    eprintln!(
        "phantom: created {} ({:?} {} `{name}`); build it with `phantom build {arg}`",
        shown,
        a.lang,
        if a.devices { "device process" } else { "guest" },
    );
    Ok(ExitCode::SUCCESS)
}

/// A guest name from a directory name: lowercase letters, digits and
/// dashes, starting with a letter (a Rust package name and a file name).
pub fn guest_name(raw: &str) -> anyhow::Result<String> {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_string();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!(
            "`{raw}` does not make a guest name (letters, digits and dashes, starting with a letter): pass --name"
        );
    }
    Ok(name)
}
