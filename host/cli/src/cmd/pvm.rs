//! `phantom pvm`: run Phantom class files in the PVM component (a real
//! persistent process in a throw-away data directory, driven by the
//! runtime's drive loop until it exits or goes idle), assemble and
//! disassemble class files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use phantom_runtime::drive::{Drive, DriveOptions};
use phantom_runtime::error::SpawnError;
use phantom_runtime::exit::OutputSink;
use phantom_runtime::process::{Process, SpawnRequest};

use crate::terminal::Terminal;
use crate::{EngineArgs, parse_duration};

/// The internal process's name: messages say "the Phantom program" instead.
const INTERNAL_NAME: &str = "pvm";

/// `phantom pvm ...`.
#[derive(Subcommand)]
pub enum PvmCommand {
    /// Run Phantom classes in the PVM component: boot `.ru.dz.phantom.system.boot`
    /// (method 8), or call one method of one class.
    Run {
        /// Directory of `.pc` class files (and/or a bulk `classes` file).
        #[arg(long)]
        classes: PathBuf,
        /// Class to instantiate (with --method).
        #[arg(long, requires = "method")]
        class: Option<String>,
        /// Method ordinal to call on the new instance.
        #[arg(long, requires = "class")]
        method: Option<u32>,
        /// The PVM component (default: built next to this binary, or $PHANTOM_PVM).
        #[arg(long)]
        component: Option<PathBuf>,
        /// Give up after this long.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Print a `.pc` class file as assembler text.
    Disasm {
        /// The class file.
        file: PathBuf,
    },
    /// Assemble text into a `.pc` class file.
    Asm {
        /// The assembler text.
        file: PathBuf,
        /// The class file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("phantom-pvm-run-{}-{nonce}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `phantom pvm ...`.
pub fn run(command: PvmCommand) -> anyhow::Result<ExitCode> {
    match command {
        PvmCommand::Run {
            classes,
            class,
            method,
            component,
            timeout,
            engine,
        } => run_classes(classes, class, method, component, timeout, engine),
        PvmCommand::Disasm { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let text = pvm::disasm::disassemble(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        PvmCommand::Asm { file, output } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let bytes = pvm::asm::assemble(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            std::fs::write(&output, bytes)
                .with_context(|| format!("cannot write {}", output.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_classes(
    classes: PathBuf,
    class: Option<String>,
    method: Option<u32>,
    component: Option<PathBuf>,
    timeout: Option<Duration>,
    engine: EngineArgs,
) -> anyhow::Result<ExitCode> {
    let component = crate::pvm_component(component)?;
    let bytes = std::fs::read(&component)
        .with_context(|| format!("cannot read {}", component.display()))?;
    let files = super::read_dir_files(&classes)?;
    let args = match (class, method) {
        (Some(c), Some(m)) => vec![
            "--class".to_string(),
            c,
            "--method".to_string(),
            m.to_string(),
        ],
        _ => Vec::new(),
    };
    let rt = engine.runtime()?;
    let dir = TempDir::new()?;
    let mut terminal = Terminal::new(false);
    terminal.rename = Some((
        format!("process '{INTERNAL_NAME}'"),
        "the Phantom program".to_string(),
    ));
    let request = SpawnRequest {
        name: INTERNAL_NAME.into(),
        args,
        files,
        env: Vec::new(),
        devices: None,
        scenario: None,
    };
    let (process, outputs) = match Process::spawn(&rt, &bytes, &dir.0, request) {
        Ok(p) => p,
        Err(SpawnError::InitFailed { message, .. }) => {
            bail!("cannot run the classes in {}: {message}", classes.display())
        }
        Err(SpawnError::InitTrapped { failure, .. }) => bail!(
            "the Phantom program in {} failed while starting: {}",
            classes.display(),
            failure
                .message
                .replacen(&format!("process '{INTERNAL_NAME}' "), "", 1)
        ),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot start {}", component.display()))
            );
        }
    };
    for o in &outputs {
        terminal.emit(INTERNAL_NAME, o);
    }
    let mut drive = Drive::new(&rt, None);
    drive.add(process);
    let opts = DriveOptions {
        checkpoint_every: None,
        run_for: timeout,
        until_idle: true,
        stop_when_empty: true,
        final_checkpoint: false,
        ..DriveOptions::default()
    };
    let summary = drive.run(&opts, None, None, &mut terminal);
    if let Some((_, code)) = summary.exited.first() {
        return Ok(match *code {
            0 => ExitCode::SUCCESS,
            code => ExitCode::from(code.clamp(1, 255) as u8),
        });
    }
    if !summary.failed.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    if summary.timed_out {
        let after = timeout.map_or_else(|| "its time".to_string(), |t| format!("{t:?}"));
        bail!("the Phantom program was still running after {after} (--timeout)");
    }
    Ok(ExitCode::SUCCESS)
}
