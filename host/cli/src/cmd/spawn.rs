//! `phantom spawn`: create a process. The data directory is created if
//! missing. When a host runs the directory, the new process is handed to it
//! through the control socket and starts running there at once.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use phantom_runtime::control::{self, Request};
use phantom_runtime::datadir::DataDir;
use phantom_runtime::exit::OutputSink;
use phantom_runtime::process::{Process, SpawnRequest};

use crate::EngineArgs;
use crate::terminal::Terminal;

/// Arguments of `phantom spawn`.
#[derive(Args)]
pub struct SpawnArgs {
    /// The component (.wasm) to run; `pvm` names the Phantom VM component
    /// (give it the class directory with --classes).
    component: PathBuf,
    /// The data directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// The process name (a directory in DATA).
    #[arg(long)]
    name: String,
    /// A file handed to `init` (repeatable).
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// A directory whose files are all handed to `init` (for the PVM: the
    /// class directory).
    #[arg(long = "files", visible_alias = "classes")]
    files_dir: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Arguments for `init`.
    #[arg(last = true)]
    args: Vec<String>,
}

/// Runs `phantom spawn`.
pub fn run(a: SpawnArgs) -> anyhow::Result<ExitCode> {
    let component = if a.component.as_os_str() == "pvm" && !a.component.exists() {
        crate::pvm_component(None)?
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
    let data = DataDir::create(&a.data)?;
    let rt = a.engine.runtime()?;
    if data.lock_holder().is_none() {
        data.clean_stale_spawns();
    }
    let request = SpawnRequest {
        name: a.name.clone(),
        args: a.args,
        files,
    };
    let (process, outputs) = Process::spawn(&rt, &bytes, data.path(), request)
        .with_context(|| format!("cannot spawn {}", a.component.display()))?;
    let mut terminal = Terminal::new(false);
    for o in &outputs {
        terminal.emit(&a.name, o);
    }
    let checkpoint = process.last_committed().map(|c| c.id).unwrap_or(0);
    let dir = process.dir().to_path_buf();
    drop(process);
    let spawned = format!(
        "spawned '{}' in {} (checkpoint {checkpoint})",
        a.name,
        dir.display()
    );
    let Some(pid) = data.lock_holder() else {
        eprintln!("phantom: {spawned}");
        return Ok(ExitCode::SUCCESS);
    };
    // A host runs the directory: it starts the new process now.
    let adopt = Request::Adopt {
        name: a.name.clone(),
    };
    let mut answer = control::request(data.path(), &adopt);
    for _ in 0..40 {
        // A host that is just starting may not listen yet.
        if !matches!(answer, Err(control::ControlError::NoHost(_))) || data.lock_holder().is_none()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        answer = control::request(data.path(), &adopt);
    }
    match answer {
        Ok(_) => {
            eprintln!("phantom: {spawned}; the host running it (pid {pid}) has started it");
            Ok(ExitCode::SUCCESS)
        }
        Err(control::ControlError::NoHost(_)) => {
            eprintln!("phantom: {spawned}; it starts with the next `phantom run`");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "phantom: {spawned}, but the host running the directory (pid {pid}) could not start it: {e}"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
