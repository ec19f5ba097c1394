//! The `phantom` command line: spawn, run and inspect persistent processes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use phantom_host::process::{Process, ProcessMeta};
use phantom_host::runtime::{RestoreMode, Runtime, RuntimeConfig};
use phantom_host::state::{HOST_SECTION, HostState};
use phantom_host::supervisor::{self, RunOptions, Signals};
use phantom_host::tracker::TrackerKind;
use phantom_snapshots::CheckpointStore;

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
    Spawn(SpawnArgs),
    /// Resume every process in a data directory and run them.
    Run(RunArgs),
    /// List the processes of a data directory.
    Ps {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a process's checkpoints.
    Checkpoints {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The process name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the host running a data directory to checkpoint every process now.
    Checkpoint {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Verify every checkpoint file of every process (or of one).
    Fsck {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// Only this process.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks, printing JSON.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The Phantom VM: run Phantom class files, assemble and disassemble them.
    #[command(subcommand)]
    Pvm(PvmCommand),
}

#[derive(Subcommand)]
enum PvmCommand {
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

#[derive(Args)]
struct EngineArgs {
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
}

impl EngineArgs {
    fn runtime(&self) -> anyhow::Result<Runtime> {
        Runtime::new(RuntimeConfig {
            tracker: self.tracker,
            call_timeout: self.call_timeout,
            max_memory_bytes: self
                .max_memory_mib
                .checked_mul(1 << 20)
                .context("--max-memory-mib too large")?,
            restore: self.restore,
        })
    }
}

#[derive(Args)]
struct SpawnArgs {
    /// The component (.wasm) to run; `pvm` names the Phantom VM component
    /// (give it the class directory with --classes).
    component: PathBuf,
    /// The data directory (must exist).
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

#[derive(Args)]
struct RunArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// Stop after this many seconds (with a final checkpoint).
    #[arg(long = "for", value_parser = parse_duration)]
    run_for: Option<Duration>,
    /// Checkpoint interval (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    checkpoint_every: Duration,
    /// The process that gets stdin lines (default: the only process).
    #[arg(long)]
    input: Option<String>,
    /// Do not read stdin.
    #[arg(long)]
    no_stdin: bool,
    /// Stop once no process has events, timers or input left.
    #[arg(long)]
    until_idle: bool,
    /// Resume processes that failed earlier.
    #[arg(long)]
    retry_failed: bool,
    /// Log restores and checkpoints to stderr.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Stop-the-world pause of an incremental checkpoint vs a full copy.
    Checkpoint(phantom_host::bench::CheckpointBenchArgs),
    /// Restore time of a spawned image, to the first event handled.
    Restore(phantom_host::bench::RestoreBenchArgs),
    /// PVM bytecodes per second, natively and inside the Wasm component.
    Pvm(phantom_host::bench::PvmBenchArgs),
}

/// Parses `1s`, `250ms`, `100us`, `2m` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phantom: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Spawn(a) => spawn(a),
        Command::Run(a) => run_processes(a),
        Command::Ps { data, json } => ps(&data, json),
        Command::Checkpoints { data, name, json } => checkpoints(&data, &name, json),
        Command::Checkpoint { data } => request_checkpoint(&data),
        Command::Fsck { data, name, json } => fsck(&data, name.as_deref(), json),
        Command::Bench(BenchCommand::Checkpoint(a)) => {
            phantom_host::bench::checkpoint(&a).map(|_| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Restore(a)) => {
            phantom_host::bench::restore(&a).map(|_| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Pvm(a)) => {
            let component = pvm_component(a.component.clone())?;
            phantom_host::bench::pvm(&a, &component).map(|_| ExitCode::SUCCESS)
        }
        Command::Pvm(c) => pvm(c),
    }
}

/// Where the PVM component is: `--component`, `$PHANTOM_PVM`, or the guest
/// build next to this binary (`target/guests/components/pvm.wasm`).
fn pvm_component(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("PHANTOM_PVM").map(PathBuf::from)) {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let guess = exe
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("guests/components/pvm.wasm"))
        .context("cannot locate the PVM component")?;
    if !guess.exists() {
        bail!(
            "the PVM component is not at {} (build it with `just build`, or pass --component)",
            guess.display()
        );
    }
    Ok(guess)
}

/// Reads every regular file of `dir`, sorted by name.
fn read_dir_files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut files = Vec::new();
    for e in entries {
        if e.file_type()?.is_file() {
            let data = std::fs::read(e.path())
                .with_context(|| format!("cannot read {}", e.path().display()))?;
            files.push((e.file_name().to_string_lossy().into_owned(), data));
        }
    }
    Ok(files)
}

fn pvm(command: PvmCommand) -> anyhow::Result<ExitCode> {
    match command {
        PvmCommand::Run {
            classes,
            class,
            method,
            component,
            timeout,
            engine,
        } => {
            let component = pvm_component(component)?;
            let bytes = std::fs::read(&component)
                .with_context(|| format!("cannot read {}", component.display()))?;
            let files = read_dir_files(&classes)?;
            let args = match (class, method) {
                (Some(c), Some(m)) => vec![
                    "--class".to_string(),
                    c,
                    "--method".to_string(),
                    m.to_string(),
                ],
                _ => Vec::new(),
            };
            let mut rt = engine.runtime()?;
            let mut stdout = std::io::stdout();
            use phantom_host::oneshot::{OneshotEnd, run_to_end};
            match run_to_end(&mut rt, &bytes, args, files, timeout, &mut stdout)? {
                OneshotEnd::Exited(0) | OneshotEnd::Idle => Ok(ExitCode::SUCCESS),
                OneshotEnd::Exited(code) => Ok(ExitCode::from(code.clamp(1, 255) as u8)),
                OneshotEnd::Failed(message) => {
                    eprintln!("phantom: {message}");
                    Ok(ExitCode::FAILURE)
                }
                OneshotEnd::TimedOut => {
                    bail!("the Phantom program was still running after {timeout:?}")
                }
            }
        }
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

fn spawn(a: SpawnArgs) -> anyhow::Result<ExitCode> {
    let component = if a.component.as_os_str() == "pvm" && !a.component.exists() {
        pvm_component(None)?
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
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read directory {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if e.file_type()?.is_file() {
                files.push((
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path())?,
                ));
            }
        }
    }
    let _lock = supervisor::lock_data_dir(&a.data)?;
    let mut rt = a.engine.runtime()?;
    let (process, output) = Process::spawn(&mut rt, &bytes, &a.data, &a.name, a.args, files)
        .with_context(|| format!("cannot spawn {}", a.component.display()))?;
    use std::io::Write;
    std::io::stdout().write_all(&output)?;
    eprintln!(
        "phantom: spawned '{}' in {} (checkpoint {})",
        a.name,
        process.dir().display(),
        process.last_committed().map(|c| c.id).unwrap_or(0)
    );
    Ok(ExitCode::SUCCESS)
}

fn run_processes(a: RunArgs) -> anyhow::Result<ExitCode> {
    let signals = Signals::install()?;
    let mut rt = a.engine.runtime()?;
    let opts = RunOptions {
        run_for: a.run_for,
        checkpoint_every: a.checkpoint_every.max(Duration::from_millis(1)),
        input: a.input,
        until_idle: a.until_idle,
        verbose: a.verbose,
        retry_failed: a.retry_failed,
        read_stdin: !a.no_stdin,
    };
    let summary = supervisor::run(&mut rt, &a.data, &opts, &signals)?;
    if a.verbose {
        eprintln!("phantom: stopped after {} checkpoints", summary.checkpoints);
    }
    if summary.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("phantom: failed processes: {}", summary.failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// What `ps` shows of one process.
#[derive(serde::Serialize)]
struct PsRow {
    name: String,
    state: String,
    checkpoint: Option<u64>,
    checkpoint_unix_ns: Option<u64>,
    restores: Option<u64>,
    checkpoints_on_disk: usize,
    image_bytes: u64,
    args: Vec<String>,
    error: Option<String>,
}

fn ps(data: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for dir in supervisor::process_dirs(data)? {
        let meta: Option<ProcessMeta> = std::fs::read(dir.join("process.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut row = PsRow {
            name,
            state: "unknown".into(),
            checkpoint: None,
            checkpoint_unix_ns: None,
            restores: None,
            checkpoints_on_disk: 0,
            image_bytes: 0,
            args: meta.map(|m| m.args).unwrap_or_default(),
            error: None,
        };
        match CheckpointStore::open(&dir).and_then(|s| Ok((s.list()?, s))) {
            Ok((list, store)) => {
                row.checkpoints_on_disk = list.len();
                row.image_bytes = list
                    .iter()
                    .filter_map(|l| l.info.as_ref().ok())
                    .map(|i| i.bytes_written)
                    .sum();
                match store.latest_sections() {
                    Ok((info, sections)) => {
                        row.checkpoint = Some(info.id);
                        row.checkpoint_unix_ns = Some(info.created_unix_ns);
                        let host = sections
                            .get(HOST_SECTION)
                            .and_then(|b| HostState::restore(b).ok());
                        row.restores = host.as_ref().map(|h| h.restore_count);
                        row.state = match host.and_then(|h| h.exit_code) {
                            Some(code) => format!("exited({code})"),
                            None => "ready".into(),
                        };
                    }
                    Err(e) => {
                        row.state = "unrestorable".into();
                        row.error = Some(e.to_string());
                    }
                }
            }
            Err(e) => {
                row.state = "unreadable".into();
                row.error = Some(e.to_string());
            }
        }
        if let Ok(body) = std::fs::read_to_string(supervisor::failure_path(&dir)) {
            row.state = "failed".into();
            row.error = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from));
        }
        if row.state == "ready" && supervisor::lock_holder(data).is_some() {
            row.state = "running".into();
        }
        rows.push(row);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<20} {:<14} {:>10} {:>8} {:>12}",
            "NAME", "STATE", "CHECKPOINT", "RESTORES", "IMAGE BYTES"
        );
        for r in &rows {
            println!(
                "{:<20} {:<14} {:>10} {:>8} {:>12}",
                r.name,
                r.state,
                r.checkpoint.map(|c| c.to_string()).unwrap_or("-".into()),
                r.restores.map(|c| c.to_string()).unwrap_or("-".into()),
                r.image_bytes
            );
            if let Some(e) = &r.error {
                println!("    {}", e.lines().next().unwrap_or(""));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn process_dir(data: &Path, name: &str) -> anyhow::Result<PathBuf> {
    phantom_host::process::check_name(name)?;
    let dir = data.join(name);
    if !dir.join("process.json").exists() {
        bail!("no process named '{name}' in {}", data.display());
    }
    Ok(dir)
}

fn checkpoints(data: &Path, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = CheckpointStore::open(&process_dir(data, name)?)?;
    let list = store.list()?;
    if json {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|l| match &l.info {
                Ok(i) => serde_json::json!({
                    "id": i.id, "parent": i.parent, "time_unix_ns": i.created_unix_ns,
                    "dirty_pages": i.dirty_pages, "bytes_uncompressed": i.bytes_uncompressed,
                    "bytes_written": i.bytes_written, "pause_us": i.pause_us, "valid": true,
                }),
                Err(e) => serde_json::json!({ "id": l.id, "valid": false, "error": e.to_string() }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:>8} {:>8} {:>24} {:>12} {:>14} {:>10}",
            "ID", "PARENT", "TIME (UTC)", "DIRTY PAGES", "BYTES WRITTEN", "PAUSE us"
        );
        for l in &list {
            match &l.info {
                Ok(i) => println!(
                    "{:>8} {:>8} {:>24} {:>12} {:>14} {:>10}",
                    i.id,
                    i.parent.map(|p| p.to_string()).unwrap_or("full".into()),
                    utc(i.created_unix_ns),
                    i.dirty_pages,
                    i.bytes_written,
                    i.pause_us
                ),
                Err(e) => println!("{:>8} invalid: {e}", l.id),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Formats Unix nanoseconds as `YYYY-MM-DD HH:MM:SS.mmm`, UTC.
fn utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ns / 1_000_000 % 1000
    )
}

fn request_checkpoint(data: &Path) -> anyhow::Result<ExitCode> {
    let Some(pid) = supervisor::lock_holder(data) else {
        bail!("no phantom host is running on {}", data.display());
    };
    let rc = std::process::Command::new("kill")
        .arg("-USR1")
        .arg(pid.to_string())
        .status()?;
    if !rc.success() {
        bail!("cannot signal the host (pid {pid})");
    }
    eprintln!("phantom: asked host {pid} to checkpoint");
    Ok(ExitCode::SUCCESS)
}

fn fsck(data: &Path, name: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let dirs = match name {
        Some(n) => vec![process_dir(data, n)?],
        None => supervisor::process_dirs(data)?,
    };
    let mut all_ok = true;
    let mut out = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let store = CheckpointStore::open(&dir)?;
        let report = store.fsck()?;
        let restorable = store.load_latest().is_ok();
        all_ok &= report.is_clean() && restorable;
        if json {
            out.push(serde_json::json!({
                "name": name, "restorable": restorable, "clean": report.is_clean(),
                "problems": report.problems().iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            }));
        } else {
            println!(
                "{name}: {}",
                if report.is_clean() { "ok" } else { "PROBLEMS" }
            );
            for p in report.problems() {
                println!("    {p}");
            }
            if !restorable {
                println!("    no restorable checkpoint");
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
