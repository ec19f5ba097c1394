//! The `phantom` command line: spawn, run and inspect persistent processes.
//!
//! ```text
//!   main.rs (clap) ─► cmd/<command>.rs ─► phantom-runtime (processes, drive loop,
//!                     │                    control socket, status)
//!                     └─ terminal.rs: what a run prints (outputs, notes)
//!   bench/           `phantom bench checkpoint | restore | pvm` (JSON)
//! ```
//! Everything a second front end would also need (states, the drive loop,
//! the control protocol) lives in the runtime; this crate parses arguments
//! and prints.
#![forbid(unsafe_code)]

/// `eprintln!` that never panics: a host (`run`, `serve`) whose stderr is
/// closed or on a full disk goes on running its processes.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod cmd;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use phantom_runtime::TrackerKind;
use phantom_runtime::runtime::{RestoreMode, Runtime, RuntimeConfig};

/// Phantom: Wasm components as persistent processes. Their memory survives
/// restarts and `kill -9`, checkpointed incrementally.
#[derive(Parser)]
#[command(name = "phantom", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a persistent process: run its `init` and write its first checkpoint.
    Spawn(cmd::spawn::SpawnArgs),
    /// Resume every process in a data directory and run them.
    Run(cmd::run::RunArgs),
    /// List the processes of a data directory.
    Ps(cmd::ps::PsArgs),
    /// List a process's checkpoints.
    Checkpoints(cmd::checkpoints::CheckpointsArgs),
    /// Show a process's device grants and the devices it holds open.
    Devices(cmd::devices::DevicesArgs),
    /// Render what a process's display shows to a PNG.
    Display(cmd::display::DisplayArgs),
    /// Ask the host running a data directory to checkpoint every process now.
    Checkpoint(cmd::checkpoint::CheckpointArgs),
    /// Verify every checkpoint file and journal of every process (or of one).
    Fsck(cmd::fsck::FsckArgs),
    /// Send a message to a process; returns once it is durable.
    Send(cmd::send::SendArgs),
    /// List the journal entries after a process's last checkpoint (or cut the journal before a bad one: --cut-at).
    Journal(cmd::journal::JournalArgs),
    /// Write a process as one bundle, to restore it on another host with `import`.
    Export(cmd::export::ExportArgs),
    /// Make a bundle a process of a data directory, after checking all of it.
    Import(cmd::import::ImportArgs),
    /// A new process that starts as another is (or was) and runs on its own.
    Fork(cmd::fork::ForkArgs),
    /// Take a process back to one of its checkpoints (undoable).
    Rollback(cmd::rollback::RollbackArgs),
    /// Keep a checkpoint whatever the keep policy says (or --unpin it).
    Pin(cmd::pin::PinArgs),
    /// Show or set which checkpoints a process keeps.
    Keep(cmd::keep::KeepCmdArgs),
    /// Apply the keep policy and collect pages no kept checkpoint names.
    Gc(cmd::gc::GcArgs),
    /// Host a data directory and accept processes migrating to it over TCP.
    Serve(cmd::serve::ServeArgs),
    /// Move a process to another host while it runs (live migration).
    Migrate(cmd::migrate::MigrateArgs),
    /// Create a guest project (Rust or C) ready for `phantom build`.
    New(cmd::new::NewArgs),
    /// Build a guest project into a component.
    Build(cmd::build::BuildArgs),
    /// Turn a core module (a C build, say) into a persistent-process component.
    Componentize(cmd::componentize::ComponentizeArgs),
    /// Compose an application with library components into one component.
    Compose(cmd::compose::ComposeArgs),
    /// Benchmarks, printing JSON.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The Phantom VM: run Phantom class files, assemble and disassemble them.
    #[command(subcommand)]
    Pvm(cmd::pvm::PvmCommand),
}

/// Settings of the engine, shared by the commands that run guests.
#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Dirty-page tracker: auto, pagemap, pagemap-scan, page-compare.
    #[arg(long, default_value = "auto", value_parser = TrackerKind::parse)]
    tracker: TrackerKind,
    /// Longest one guest call may run (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    call_timeout: Duration,
    /// Largest linear memory a guest may grow, in MiB.
    #[arg(long, default_value_t = 2048)]
    max_memory_mib: usize,
    /// How a restore fills memories: lazy (on first touch, then in the
    /// background) or eager (all before the first event).
    #[arg(long, default_value = "lazy", value_parser = RestoreMode::parse)]
    restore: RestoreMode,
    /// Run without the journal: a crash then loses what happened since the
    /// last checkpoint, and output may repeat (for measurements).
    #[arg(long)]
    no_journal: bool,
}

impl EngineArgs {
    /// A runtime with these settings.
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        if self.call_timeout.is_zero() {
            anyhow::bail!("--call-timeout must be more than zero");
        }
        let max_memory_bytes = self
            .max_memory_mib
            .checked_mul(1 << 20)
            .filter(|&b| b > 0)
            .context("--max-memory-mib must be between 1 and the address space")?;
        Ok(Runtime::new(RuntimeConfig {
            tracker: self.tracker,
            call_timeout: self.call_timeout,
            max_memory_bytes,
            restore: self.restore,
            journal: !self.no_journal,
        })?)
    }
}

/// Parses `1s`, `250ms`, `100us`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration '{s}' (try 1s, 250ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in '{s}' (use h, m, s, ms, us)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration '{s}' out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The PVM component: `--component`, `$PHANTOM_PVM`, or the guest build
/// next to this binary (`target/guests/components/pvm.wasm`).
pub fn pvm_component(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    pvm_component_named(explicit, "pvm")
}

/// [`pvm_component`] of a PVM build: `pvm`, or `pvm-display` (the VM
/// whose windows are shown on a display; `$PHANTOM_PVM` does not apply).
pub fn pvm_component_named(explicit: Option<PathBuf>, build: &str) -> anyhow::Result<PathBuf> {
    let from_env = (build == "pvm")
        .then(|| std::env::var_os("PHANTOM_PVM").map(PathBuf::from))
        .flatten();
    if let Some(p) = explicit.or(from_env) {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let guess = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|t| t.join(format!("guests/components/{build}.wasm")))
        .context("cannot locate the PVM component")?;
    if !guess.exists() {
        anyhow::bail!(
            "the PVM component is not at {} (build it with `just build`, or pass --component)",
            guess.display()
        );
    }
    Ok(guess)
}

/// `phantom journal | head`: stdout closed by the reader ends the command
/// quietly, with the status a SIGPIPE would give (Rust ignores SIGPIPE, so
/// `println!` panics instead). `phantom run` writes its guests' output
/// without `println!`, and goes on when nobody reads it.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload_as_str().unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() -> ExitCode {
    quiet_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Spawn(a) => cmd::spawn::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Ps(a) => cmd::ps::run(a),
        Command::Checkpoints(a) => cmd::checkpoints::run(a),
        Command::Devices(a) => cmd::devices::run(a),
        Command::Display(a) => cmd::display::run(a),
        Command::Checkpoint(a) => cmd::checkpoint::run(a),
        Command::Fsck(a) => cmd::fsck::run(a),
        Command::Send(a) => cmd::send::run(a),
        Command::Journal(a) => cmd::journal::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Import(a) => cmd::import::run(a),
        Command::Fork(a) => cmd::fork::run(a),
        Command::Rollback(a) => cmd::rollback::run(a),
        Command::Pin(a) => cmd::pin::run(a),
        Command::Keep(a) => cmd::keep::run(a),
        Command::Gc(a) => cmd::gc::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Migrate(a) => cmd::migrate::run(a),
        Command::Componentize(a) => cmd::componentize::run(a),
        Command::New(a) => cmd::new::run(a),
        Command::Build(a) => cmd::build::run(a),
        Command::Compose(a) => cmd::compose::run(a),
        Command::Bench(c) => bench::run(c),
        Command::Pvm(c) => cmd::pvm::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phantom: error: {}", terminal::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e99").is_err());
    }
}
