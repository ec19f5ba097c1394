//! `phantom run`: resume every process of a data directory and run them in
//! the runtime's drive loop, with stdin as console input (read no faster
//! than the guest takes it), signals, and the control socket.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use phantom_runtime::control::{self, ControlServer, Waker};
use phantom_runtime::datadir::{DataDir, DataDirError, DataLock};
use phantom_runtime::drive::{
    ChannelFeed, Console, Drive, DriveOptions, FeedItem, restore_all_with,
};
use phantom_runtime::gate::MAX_LINE_BYTES;
use phantom_runtime::travel::fallback::FallbackPolicy;

use crate::terminal::Terminal;
use crate::{EngineArgs, parse_duration};

/// Lines read ahead of the guest: the reader thread blocks beyond this.
const READ_AHEAD_LINES: usize = 1024;

/// Arguments of `phantom run`.
#[derive(Args)]
pub struct RunArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// Stop after this long (with a final checkpoint), e.g. 10, 2.5s, 1m.
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
    /// Stop once no process has input, timers or work left.
    #[arg(long)]
    until_idle: bool,
    /// Resume processes that failed earlier.
    #[arg(long)]
    retry_failed: bool,
    /// Keep failing processes running: a guest fault is retried from the
    /// newest checkpoint, and a process that fails again right after it
    /// resumes (a persistent error) is rolled back to an earlier checkpoint
    /// (`phantom rollback --undo` reverses it; `ps --json` shows every
    /// decision).
    #[arg(long)]
    fallback: bool,
    /// With --fallback: resumes from the newest checkpoint before a rollback.
    #[arg(long, default_value_t = 2)]
    fallback_tries: u32,
    /// With --fallback: most checkpoints a rollback steps back past.
    #[arg(long, default_value_t = 8)]
    fallback_depth: u32,
    /// Also append each process's console output to `console.log` in its
    /// directory, exactly once across crashes (stdout may repeat the
    /// output in flight at a crash; the log never does).
    #[arg(long)]
    console_log: bool,
    /// Log restores and checkpoints to stderr.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    engine: EngineArgs,
    /// `phantom serve`: accept migrating processes, and never stop on
    /// an empty directory.
    #[arg(skip)]
    listen: Option<Listen>,
}

/// What `phantom serve` adds to a run: the migration listener.
pub struct Listen {
    /// `host:port`.
    pub addr: String,
    /// The channel's protection.
    pub security: phantom_runtime::migrate::Security,
    /// Accept `linux:` device grants.
    pub allow_host_devices: bool,
}

impl RunArgs {
    /// The arguments of a `phantom serve` host.
    pub fn serve(
        data: PathBuf,
        checkpoint_every: Duration,
        verbose: bool,
        engine: EngineArgs,
        listen: Listen,
    ) -> RunArgs {
        RunArgs {
            data,
            run_for: None,
            checkpoint_every,
            input: None,
            no_stdin: true,
            until_idle: false,
            retry_failed: false,
            fallback: false,
            fallback_tries: 2,
            fallback_depth: 8,
            console_log: false,
            verbose,
            engine,
            listen: Some(listen),
        }
    }
}

/// SIGTERM and SIGINT stop gracefully; SIGUSR1 checkpoints now.
pub(crate) fn install_signals() -> std::io::Result<(Arc<AtomicBool>, Arc<AtomicBool>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let checkpoint_now = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, checkpoint_now.clone())?;
    Ok((stop, checkpoint_now))
}

/// Reads stdin line by line on a thread; the bounded channel makes the
/// thread wait while the guest is behind.
fn stdin_feed(waker: Waker) -> std::io::Result<ChannelFeed> {
    let (tx, rx) = mpsc::sync_channel(READ_AHEAD_LINES);
    std::thread::Builder::new()
        .name("phantom-stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut reader = stdin.lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                let limit = MAX_LINE_BYTES as u64 + 2;
                let n = match (&mut reader).take(limit).read_until(b'\n', &mut line) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                if n == 0 {
                    break;
                }
                let ended = line.last() == Some(&b'\n');
                if ended {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                let item = if !ended && line.len() > MAX_LINE_BYTES {
                    // Skip the rest of the line; it is reported, not
                    // delivered cut.
                    let mut skipped = line.len() as u64;
                    let mut rest = Vec::new();
                    while let Ok(k) = (&mut reader).take(1 << 20).read_until(b'\n', &mut rest) {
                        skipped += k as u64;
                        if k == 0 || rest.last() == Some(&b'\n') {
                            break;
                        }
                        rest.clear();
                    }
                    FeedItem::Refused(format!(
                        "a line of {skipped} bytes is longer than the limit of {MAX_LINE_BYTES}"
                    ))
                } else {
                    FeedItem::Line(String::from_utf8_lossy(&line).into_owned())
                };
                if tx.send(item).is_err() {
                    return;
                }
                waker.wake();
            }
            let _ = tx.send(FeedItem::Closed);
            waker.wake();
        })?;
    Ok(ChannelFeed(rx))
}

/// The data directory's lock. A short command that holds it (`send`
/// without a host, `spawn`, `journal --cut-at`...) is waited for, up to
/// `LOCK_WAIT`; a host (its control socket answers) is not.
fn lock_when_free(data: &DataDir) -> anyhow::Result<DataLock> {
    const LOCK_WAIT: Duration = Duration::from_secs(10);
    let until = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match data.lock() {
            Ok(lock) => return Ok(lock),
            Err(DataDirError::Locked { .. })
                if std::time::Instant::now() < until
                    && matches!(
                        control::request_within(
                            data.path(),
                            &control::Request::Status,
                            Duration::from_secs(2)
                        ),
                        Err(control::ControlError::NoHost(_))
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs `phantom run`.
pub fn run(mut a: RunArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(&a.data)?;
    let lock = lock_when_free(&data)?;
    data.clean_stale_spawns();
    let (stop, checkpoint_now) = install_signals()?;
    let rt = a.engine.runtime()?;
    let mut terminal = Terminal::new(a.verbose);
    // Listening before the processes are restored: a spawn that hands its
    // process over meanwhile is answered once the loop runs.
    let mut drive = Drive::new(&rt, Some(data.path().to_path_buf()));
    drive.log_console(a.console_log);
    let (server, requests) = match ControlServer::start(&data, &lock, drive.waker()) {
        Ok((s, r)) => (Some(s), Some(r)),
        Err(e) => {
            note!(
                "phantom: warning: no control socket in {} ({e}); `phantom checkpoint` falls back to SIGUSR1",
                data.path().display()
            );
            (None, None)
        }
    };
    // The listener of `phantom serve`: a process that arrives is handed to
    // this host through the control socket, like a spawn.
    let listener = match a.listen.take() {
        Some(listen) => {
            let server_rt = std::sync::Arc::new(a.engine.runtime()?);
            let server = phantom_runtime::migrate::MigrationServer::start(
                server_rt,
                phantom_runtime::migrate::ServerOptions {
                    data: data.path().to_path_buf(),
                    listen: listen.addr.clone(),
                    security: listen.security,
                    allow_host_devices: listen.allow_host_devices,
                    hand_over: true,
                    log: std::sync::Arc::new(|line: &str| note!("phantom: {line}")),
                },
            )
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", listen.addr))?;
            note!(
                "phantom: serving {} on {}",
                data.path().display(),
                server.local_addr
            );
            Some(server)
        }
        None => None,
    };
    let fallback = a.fallback.then_some(FallbackPolicy {
        tries: a.fallback_tries,
        depth: a.fallback_depth.max(1),
    });
    restore_all_with(&mut drive, &data, a.retry_failed, fallback, &mut terminal)?;
    let names = drive.names();
    terminal.multi = names.len() > 1;
    // Input piped to a host whose every process failed (skipped) would be
    // lost without a word. (A host of no process at all waits for spawns.)
    if names.is_empty() && !a.no_stdin && a.input.is_none() && {
        use std::io::IsTerminal;
        !std::io::stdin().is_terminal()
    } {
        let failed: Vec<String> = data
            .process_dirs()
            .unwrap_or_default()
            .iter()
            .filter(|d| phantom_runtime::datadir::read_failure(d).is_some())
            .map(|d| phantom_runtime::datadir::process_name(d))
            .collect();
        if !failed.is_empty() {
            bail!(
                "no process runs in {}: {} failed and {} skipped (see `phantom ps`; --retry-failed resumes them), so input on stdin would not be delivered; pass --no-stdin to run without it",
                data.path().display(),
                failed.join(", "),
                if failed.len() == 1 { "is" } else { "are" }
            );
        }
    }
    let target = match &a.input {
        Some(name) => {
            if !names.contains(name) {
                bail!(
                    "--input names '{name}', which is not a running process in {} (running: {})",
                    data.path().display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
            Some(name.clone())
        }
        None if names.len() == 1 => Some(names[0].clone()),
        None => {
            if !a.no_stdin && names.len() > 1 {
                note!(
                    "phantom: not reading stdin: {} holds {} processes ({}); name the one that gets it with --input NAME, or pass --no-stdin",
                    data.path().display(),
                    names.len(),
                    names.join(", ")
                );
            }
            None
        }
    };
    let mut feed = match &target {
        Some(_) if !a.no_stdin => Some(stdin_feed(drive.waker())?),
        _ => None,
    };
    let console = match (&target, feed.as_mut()) {
        (Some(target), Some(feed)) => Some(Console {
            target: target.clone(),
            feed,
        }),
        _ => None,
    };
    // A host started on a directory with nothing to run waits for
    // `phantom spawn` to hand it processes (until stopped); otherwise it
    // stops once its last process has exited or failed.
    let serving = listener.is_some();
    let started_empty = (serving || data.process_dirs()?.is_empty()) && !a.until_idle;
    if started_empty && a.run_for.is_none() && !serving {
        note!(
            "phantom: no process to run in {}; waiting for `phantom spawn` (Ctrl-C stops)",
            data.path().display()
        );
    }
    let opts = DriveOptions {
        checkpoint_every: Some(a.checkpoint_every.max(Duration::from_millis(1))),
        run_for: a.run_for,
        until_idle: a.until_idle,
        stop_when_empty: !started_empty,
        final_checkpoint: true,
        stop,
        checkpoint_now,
        fallback: a.fallback.then_some(FallbackPolicy {
            tries: a.fallback_tries,
            depth: a.fallback_depth.max(1),
        }),
    };
    let summary = drive.run(&opts, console, requests.as_ref(), &mut terminal);
    // Requests that came too late are answered "stopping" at once.
    drop(requests);
    drop(server);
    drop(listener);
    if a.verbose {
        note!("phantom: stopped after {} checkpoints", summary.checkpoints);
    }
    let mut clean = true;
    if !summary.failed.is_empty() {
        let names: Vec<&str> = summary.failed.iter().map(|(n, _)| n.as_str()).collect();
        note!("phantom: failed processes: {}", names.join(", "));
        clean = false;
    }
    for (name, e) in &summary.checkpoint_failures {
        note!("phantom: a checkpoint of '{name}' was not written: {e}");
        clean = false;
    }
    for (name, lines) in &summary.kept {
        note!(
            "phantom: {lines} line(s) of input wait in the journal of '{name}' (it failed before handling them): `phantom run --retry-failed` hands them to it; do not send them again"
        );
    }
    if summary.undelivered > 0 {
        note!(
            "phantom: {} line(s) of input were not delivered ({})",
            summary.undelivered,
            summary.undelivered_reason.as_deref().unwrap_or("unknown")
        );
        clean = false;
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
