//! `phantom spawn`: create a process. The data directory is created if
//! missing. When a host runs the directory, the new process is handed to it
//! through the control socket and starts running there at once.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use phantom_runtime::datadir::spawn_process;
use phantom_runtime::exit::OutputSink;
use phantom_runtime::process::SpawnRequest;

use crate::EngineArgs;
use crate::terminal::Terminal;

/// Arguments of `phantom spawn`.
#[derive(Args)]
pub struct SpawnArgs {
    /// The component (.wasm) to run; `pvm` names the Phantom VM component
    /// (give it the class directory with --classes); with a manifest that
    /// grants a display, the VM shows its windows on the one granted as
    /// `screen` (or the grant named by `-- --display NAME`).
    component: PathBuf,
    /// The data directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// The process name (a directory in DATA).
    #[arg(long)]
    name: String,
    /// A file handed to `init` (repeatable; in the order given, before
    /// those of --files).
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// A directory whose files are all handed to `init`, sorted by name
    /// (for the PVM: the class directory; subdirectories are not).
    #[arg(long = "files", visible_alias = "classes")]
    files_dir: Option<PathBuf>,
    /// A WASI environment variable, `KEY=VALUE` (repeatable); the guest
    /// reads it with `std::env::var` or `getenv`.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// The process's device manifest (TOML): the devices it is granted, by
    /// logical name, e.g. `gpio.relay = { pin = "sim:0/17", modes =
    /// ["output"] }`. Stored with the process.
    #[arg(long, value_name = "FILE")]
    devices: Option<PathBuf>,
    /// What drives the process's simulated devices (TOML): temperatures
    /// over time, scripted inputs. Stored with the process.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    keep: super::keep::KeepArgs,
    /// Arguments for `init`.
    #[arg(last = true)]
    args: Vec<String>,
}

/// Reads `what` (a manifest, a scenario: text a person writes) from
/// `path`, refusing more than 1 MiB (`/dev/zero` is not a manifest).
fn read_text(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    use std::io::Read;
    const LIMIT: u64 = 1 << 20;
    let cannot = || format!("cannot read {what} {}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(LIMIT + 1).read_to_end(&mut bytes))
        .with_context(cannot)?;
    if bytes.len() as u64 > LIMIT {
        bail!("{}: it is over 1 MiB", cannot());
    }
    String::from_utf8(bytes).with_context(|| format!("{}: it is not UTF-8", cannot()))
}

/// Runs `phantom spawn`.
pub fn run(mut a: SpawnArgs) -> anyhow::Result<ExitCode> {
    let devices = match &a.devices {
        Some(path) => Some(read_text(path, "the device manifest")?),
        None => None,
    };
    let component = if a.component.as_os_str() == "pvm" && !a.component.is_file() {
        // The VM shows its windows when the manifest grants a display (an
        // invalid manifest is refused by the spawn itself, with its error).
        let displays: Vec<String> = devices
            .as_deref()
            .and_then(|t| phantom_devices::manifest::DeviceManifest::parse(t).ok())
            .map(|m| m.display.keys().map(|k| k.as_str().to_string()).collect())
            .unwrap_or_default();
        if displays.is_empty() {
            crate::pvm_component(None)?
        } else {
            // It draws on `screen`; a single display of another name is
            // the one meant (unless the arguments name one).
            if let [only] = displays.as_slice()
                && only != "screen"
                && a.args.first().map(String::as_str) != Some("--display")
            {
                a.args.splice(0..0, ["--display".to_string(), only.clone()]);
            }
            crate::pvm_component_named(None, "pvm-display")?
        }
    } else {
        a.component.clone()
    };
    let bytes = std::fs::read(&component)
        .with_context(|| format!("cannot read {}", component.display()))?;
    let mut files = Vec::new();
    for path in &a.files {
        let name = path
            .file_name()
            .context("--file needs a file name")?
            .to_string_lossy()
            .into_owned();
        files.push((
            name,
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        ));
    }
    if let Some(dir) = &a.files_dir {
        files.extend(super::read_dir_files(dir)?);
    }
    // The guest finds a file by its name: two of one name are ambiguous.
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in &files {
        if !seen.insert(name.as_str()) {
            bail!(
                "two files named '{name}' would be handed to init (by --file or --files): rename one"
            );
        }
    }
    let scenario = match &a.scenario {
        Some(path) => Some(read_text(path, "the scenario")?),
        None => None,
    };
    let policy = a.keep.apply(phantom_snapshots::KeepPolicy::default())?;
    let rt = a.engine.runtime()?;
    let request = SpawnRequest {
        name: a.name.clone(),
        args: a.args,
        files,
        env: a.env,
        devices,
        scenario,
    };
    let spawned = spawn_process(&rt, &a.data, &bytes, request)
        .with_context(|| format!("cannot spawn {}", a.component.display()))?;
    if a.keep.given() {
        phantom_snapshots::CheckpointStore::open(&spawned.dir)?.save_policy(policy)?;
    }
    let mut terminal = Terminal::new(false);
    for o in &spawned.outputs {
        terminal.emit(&a.name, o);
    }
    for w in &spawned.device_warnings {
        eprintln!("phantom: warning: '{}': {w}", a.name);
    }
    let what = format!(
        "spawned '{}' in {} (checkpoint {})",
        a.name,
        spawned.dir.display(),
        spawned.checkpoint
    );
    if !crate::terminal::report_hand_over(&what, &spawned.handed_over, false) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `KEY=VALUE` of `--env`.
fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!(
            "`{s}` is not KEY=VALUE (a non-empty name, an equals sign, then the value)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_env;

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), String::new()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }
}
