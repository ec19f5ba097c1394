//! Builds the guests in `guests/` into components and writes their paths to
//! `OUT_DIR/guests.rs`.
//!
//! ```text
//!   guests/<name>/          nested `cargo build --release
//!   (cdylib crates)   ───►    --target wasm32-unknown-unknown`
//!                             into target/guests/
//!                                  │  core module (+ wit-bindgen type section)
//!                                  ▼
//!                           wit_component::ComponentEncoder
//!                                  │
//!                                  ▼
//!                           target/guests/components/<name>.wasm
//!                                  │  imports checked: phantom:os (and phantom:devices)
//!                                  ▼
//!                           OUT_DIR/guests.rs: pub const <NAME>: &str = "...";
//! ```
//!
//! Every `cdylib` crate directly under `guests/` is a guest; a guest whose
//! name starts with `bad-` is one the host must refuse, so it is required to
//! import something outside `phantom:os` instead of being forbidden to.
//!
//! A guest whose Cargo.toml says `[package.metadata.phantom] target =
//! "wasm32-wasip2"` is built for that target instead: rustc makes the
//! component itself, importing WASI 0.2 besides `phantom:os`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the guests are built for: no WASI, so a component imports only
/// what its WIT world names.
const GUEST_TARGET: &str = "wasm32-unknown-unknown";
/// Imports that a library component provides once composed (the
/// interop demos: guests/interop/stats.wit), not the host.
const COMPOSED_IMPORT_PREFIX: &str = "demo:interop/";
/// The target of guests that use Rust std over WASI 0.2.
const WASI_TARGET: &str = "wasm32-wasip2";
/// The package a WASI guest may import from besides `phantom:os`.
const WASI_IMPORT_PREFIX: &str = "wasi:";

/// The only package a spawnable guest may import from.
const ALLOWED_IMPORT_PREFIX: &str = "phantom:os/";
/// Device interfaces, which a guest may import too (spawned with a grant).
const DEVICES_IMPORT_PREFIX: &str = "phantom:devices/";

/// Names of guests that exist to be refused.
const REFUSED_PREFIX: &str = "bad-";

fn main() {
    if let Err(message) = run() {
        // A build script reports failure by exiting non-zero; cargo prints
        // what it wrote to stderr.
        eprintln!("error: building the guests failed: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("tests/ has no parent directory")?
        .to_path_buf();
    let guests_dir = root.join("guests");
    let target_dir = root.join("target").join("guests");
    let components_dir = target_dir.join("components");
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    println!("cargo:rerun-if-changed={}", guests_dir.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // The PVM guest wraps the root workspace's VM library.
    println!("cargo:rerun-if-changed={}", root.join("pvm-wasm").display());

    let guests = discover_guests(&guests_dir)?;
    let (wasi, plain): (Vec<&Guest>, Vec<&Guest>) = guests.iter().partition(|g| g.wasi);
    build_core_modules(&guests_dir, &target_dir, GUEST_TARGET, &plain)?;
    build_core_modules(&guests_dir, &target_dir, WASI_TARGET, &wasi)?;

    fs::create_dir_all(&components_dir)
        .map_err(|e| format!("cannot create {}: {e}", components_dir.display()))?;
    let mut built = Vec::new();
    for guest in &guests {
        let name = &guest.name;
        let core_path = target_dir
            .join(if guest.wasi {
                WASI_TARGET
            } else {
                GUEST_TARGET
            })
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let component_path = components_dir.join(format!("{name}.wasm"));
        let interface = componentize(guest, &core_path, &component_path)?;
        built.push((name.clone(), component_path, interface));
    }

    let generated = out_dir.join("guests.rs");
    fs::write(&generated, render_constants(&built))
        .map_err(|e| format!("cannot write {}: {e}", generated.display()))?;
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

/// A guest crate.
struct Guest {
    name: String,
    /// Built for wasm32-wasip2 (it uses std over WASI).
    wasi: bool,
}

/// Every directory under `guests/` whose Cargo.toml builds a cdylib, sorted.
/// The directory name must be the package name (the core module is named
/// after the package).
fn discover_guests(guests_dir: &Path) -> Result<Vec<Guest>, String> {
    let entries = fs::read_dir(guests_dir)
        .map_err(|e| format!("cannot read {}: {e}", guests_dir.display()))?;
    let mut guests = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", guests_dir.display()))?;
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            continue;
        };
        if !text.contains("\"cdylib\"") {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !text.contains(&format!("name = \"{name}\"")) {
            return Err(format!(
                "{} must name its package \"{name}\", after its directory",
                manifest.display()
            ));
        }
        let wasi = text.contains(&format!("target = \"{WASI_TARGET}\""));
        guests.push(Guest { name, wasi });
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    if guests.is_empty() {
        return Err(format!("no guest crates in {}", guests_dir.display()));
    }
    Ok(guests)
}

/// Runs the nested cargo that compiles `guests` for `target`.
fn build_core_modules(
    guests_dir: &Path,
    target_dir: &Path,
    target: &str,
    guests: &[&Guest],
) -> Result<(), String> {
    if guests.is_empty() {
        return Ok(());
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target);
    for g in guests {
        command.arg("-p").arg(&g.name);
    }
    command
        .arg("--manifest-path")
        .arg(guests_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // What the outer cargo tells this build script describes the *host*
    // build (its target, profile, flags, wrappers such as clippy-driver) and
    // would leak into the guest build. Its own target dir would also mean
    // waiting on the lock the outer cargo holds. The jobserver
    // (CARGO_MAKEFLAGS) is kept on purpose, so the nested build shares the
    // outer build's job budget instead of adding its own.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if leaks_into_nested_build(key) {
            command.env_remove(key);
        }
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run `{cargo}`: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
        {
            format!("\nhint: run `rustup target add {target}` (or ./dev, which does)")
        } else {
            String::new()
        };
        return Err(format!(
            "`cargo build --release --target {target} --manifest-path {}` failed ({}):\n{stderr}{hint}",
            guests_dir.join("Cargo.toml").display(),
            output.status,
        ));
    }
    Ok(())
}

/// Whether an environment variable set for this build script would change
/// the nested guest build.
fn leaks_into_nested_build(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_TARGET_DIR",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "OUT_DIR",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_PKG_",
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_TARGET_",
        "DEP_",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// What a component imports and exports, as `package:name/interface@version`
/// (interfaces) or plain names (functions).
struct ComponentInterface {
    imports: Vec<String>,
    exports: Vec<String>,
}

/// Turns a core module into a component, checks its imports, and writes it.
fn componentize(
    guest: &Guest,
    core_path: &Path,
    component_path: &Path,
) -> Result<ComponentInterface, String> {
    let name = guest.name.as_str();
    let core = fs::read(core_path)
        .map_err(|e| format!("cannot read guest `{name}` at {}: {e}", core_path.display()))?;
    // rustc already made wasm32-wasip2 guests components.
    let component = if guest.wasi {
        core
    } else {
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(&core)
            .and_then(|mut encoder| encoder.encode())
            .map_err(|e| format!("cannot make guest `{name}` a component: {e:#}"))?
    };

    let decoded = wit_component::decode(&component)
        .map_err(|e| format!("cannot decode the component of guest `{name}`: {e:#}"))?;
    let wit_component::DecodedWasm::Component(resolve, world) = decoded else {
        return Err(format!(
            "guest `{name}` encoded as a WIT package, not a component"
        ));
    };
    let world = &resolve.worlds[world];
    // A world's imports include the types it `use`s (`event`, `status`,
    // `file`); those come with their interface and are not imports of their
    // own. wit-component does not re-export wit-parser's `WorldItem` to match
    // on, hence its Debug name.
    let imports: Vec<String> = world
        .imports
        .iter()
        .filter(|(_, item)| !format!("{item:?}").starts_with("Type"))
        .map(|(key, _)| resolve.name_world_key(key))
        .collect();
    let exports: Vec<String> = world
        .exports
        .keys()
        .map(|key| resolve.name_world_key(key))
        .collect();

    let foreign: Vec<&String> = imports
        .iter()
        .filter(|i| {
            !(i.starts_with(ALLOWED_IMPORT_PREFIX)
                || i.starts_with(DEVICES_IMPORT_PREFIX)
                || guest.wasi && i.starts_with(WASI_IMPORT_PREFIX)
                || i.starts_with(COMPOSED_IMPORT_PREFIX))
        })
        .collect();
    if name.starts_with(REFUSED_PREFIX) {
        if foreign.is_empty() {
            return Err(format!(
                "guest `{name}` exists to be refused, but imports only phantom:os: {imports:?}"
            ));
        }
    } else if !foreign.is_empty() {
        return Err(format!(
            "guest `{name}` imports {foreign:?}, which no phantom host provides \
             (was it built for a WASI target?)"
        ));
    }

    // Written beside, then renamed, so a test never reads half a component.
    let partial = component_path.with_extension("wasm.partial");
    fs::write(&partial, &component)
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    fs::rename(&partial, component_path)
        .map_err(|e| format!("cannot write {}: {e}", component_path.display()))?;
    Ok(ComponentInterface { imports, exports })
}

/// The contents of `guests.rs`.
fn render_constants(built: &[(String, PathBuf, ComponentInterface)]) -> String {
    let mut out =
        String::from("// Generated by tests/build.rs. Paths of the guest components.\n\n");
    for (name, path, interface) in built {
        let constant = name.to_uppercase().replace('-', "_");
        let _ = writeln!(out, "/// The `{name}` guest component.");
        if name.starts_with(REFUSED_PREFIX) {
            let _ = writeln!(out, "///\n/// The host must refuse to spawn it.");
        }
        let _ = writeln!(
            out,
            "///\n/// Imports: `{}`.",
            interface.imports.join("`, `")
        );
        let _ = writeln!(
            out,
            "///\n/// Exports: `{}`.",
            interface.exports.join("`, `")
        );
        let _ = writeln!(
            out,
            "pub const {constant}: &str = {:?};\n",
            path.display().to_string()
        );
    }
    let _ = writeln!(
        out,
        "/// Every guest, name to component path, sorted by name (the `bad-*` ones\n\
         /// included: the host must refuse those).\n\
         pub const ALL: &[(&str, &str)] = &["
    );
    for (name, _, _) in built {
        let constant = name.to_uppercase().replace('-', "_");
        let _ = writeln!(out, "    ({name:?}, {constant}),");
    }
    out.push_str("];\n");
    out
}
