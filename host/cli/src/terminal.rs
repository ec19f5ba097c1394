//! What a run prints on a terminal: guest output on stdout (prefixed with
//! `[name] ` when several processes share it), notes on stderr (restores,
//! checkpoints with `-v`; failures, exits and refused input always).

use std::io::Write;

use phantom_runtime::drive::{DriveHooks, Note};
use phantom_runtime::exit::{Output, OutputSink};

/// The CLI's drive hooks.
pub struct Terminal {
    /// Prefix lines with the process name.
    pub multi: bool,
    /// Log restores and checkpoints.
    pub verbose: bool,
    /// Rewrites "process 'NAME'" in messages (for `pvm run`, whose process
    /// is internal).
    pub rename: Option<(String, String)>,
    /// Processes restored so far: a second one turns prefixes on.
    seen: std::collections::BTreeSet<String>,
}

impl Terminal {
    /// Prints to the terminal.
    pub fn new(verbose: bool) -> Self {
        Self {
            multi: false,
            verbose,
            rename: None,
            seen: Default::default(),
        }
    }

    fn text(&self, message: &str) -> String {
        match &self.rename {
            Some((from, to)) => message.replace(from.as_str(), to),
            None => message.to_string(),
        }
    }
}

impl OutputSink for Terminal {
    fn emit(&mut self, process: &str, output: &Output) {
        let Output::Console(bytes) = output else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if self.multi {
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                let _ = write!(out, "[{process}] ");
                let _ = out.write_all(line);
            }
        } else {
            let _ = out.write_all(bytes);
        }
        let _ = out.flush();
    }
}

impl DriveHooks for Terminal {
    fn note(&mut self, note: Note<'_>) {
        match note {
            Note::Restored {
                name,
                checkpoint,
                restore_count,
            } => {
                self.seen.insert(name.to_string());
                self.multi |= self.seen.len() > 1;
                if self.verbose {
                    note!(
                        "phantom: restored '{name}' from checkpoint {checkpoint} (restore #{restore_count})"
                    );
                }
            }
            Note::Replayed { name, report } => {
                if self.verbose {
                    note!(
                        "phantom: replayed the journal of '{name}': {} entries, {} calls, {} inputs queued again, {} effects not repeated, {} to release",
                        report.entries,
                        report.calls,
                        report.admitted,
                        report.skipped_effects,
                        report.pending_effects
                    );
                }
            }
            Note::Captured { name, report } => {
                if self.verbose {
                    note!(
                        "phantom: captured checkpoint {} of '{name}' ({} dirty pages{}, pause {} us)",
                        report.id,
                        report.dirty_pages,
                        if report.full { ", full" } else { "" },
                        report.pause.as_micros()
                    );
                }
            }
            Note::Committed { name, id } => {
                if self.verbose {
                    note!("phantom: committed checkpoint {id} of '{name}'");
                }
            }
            Note::CheckpointFailed { name, error } => {
                note!("phantom: checkpoint of '{name}' failed: {error}");
            }
            Note::Failed { name, failure } => {
                note!("phantom: {}", self.text(&failure.message));
                if self.rename.is_none() {
                    note!(
                        "phantom: '{name}' is marked failed ({}); its checkpoints are untouched (`phantom run --retry-failed` tries it again)",
                        failure.kind.name()
                    );
                }
            }
            Note::Exited { name, code } => {
                if self.verbose || code != 0 {
                    note!("phantom: '{name}' exited with code {code}");
                }
            }
            Note::InputRefused { name, why } => {
                note!("phantom: input for '{name}' is not delivered: {why}");
            }
            Note::Warning(w) => note!("phantom: warning: {w}"),
        }
    }
}

/// Says what became of a new process (spawned or imported) and of its
/// hand-over to a host running the directory; false when the host refused
/// it (the command then fails).
pub fn report_hand_over(
    what: &str,
    handed_over: &Option<phantom_runtime::datadir::HandOver>,
    quiet: bool,
) -> bool {
    use phantom_runtime::datadir::HandOver;
    match handed_over {
        None if !quiet => note!("phantom: {what}"),
        None => {}
        Some(HandOver::Started(pid)) => {
            note!("phantom: {what}; the host running it (pid {pid}) has started it")
        }
        Some(HandOver::LeftFailed(pid)) => {
            note!(
                "phantom: {what}; the host running the directory (pid {pid}) leaves it failed, as any failed process (stop the host and `phantom run --retry-failed` to try it again)"
            )
        }
        Some(HandOver::HostGone) => {
            note!("phantom: {what}; it starts with the next `phantom run`")
        }
        Some(HandOver::Refused(pid, why)) => {
            note!(
                "phantom: {what}, but the host running the directory (pid {pid}) could not start it: {why}"
            );
            return false;
        }
    }
    true
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal
/// (at most ten times a second); `finish` clears it.
pub struct Progress {
    verb: &'static str,
    total: Option<u64>,
    start: std::time::Instant,
    last: Option<std::time::Instant>,
    shown: bool,
}

impl Progress {
    /// A bar for `verb` over `total` bytes (if known); silent unless stderr
    /// is a terminal.
    pub fn new(verb: &'static str, total: Option<u64>) -> Progress {
        use std::io::IsTerminal;
        Progress {
            verb,
            total,
            start: std::time::Instant::now(),
            last: (!std::io::stderr().is_terminal()).then(std::time::Instant::now),
            shown: std::io::stderr().is_terminal(),
        }
    }

    /// `done` bytes so far.
    pub fn update(&mut self, done: u64) {
        if !self.shown {
            return;
        }
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < std::time::Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        let line = match self.total {
            Some(total) if total > 0 => {
                let frac = (done as f64 / total as f64).min(1.0);
                let width = 30;
                let filled = (frac * width as f64) as usize;
                format!(
                    "{} [{}{}] {:.1}/{:.1} MiB {:3.0}% {:.0} MiB/s",
                    self.verb,
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    mib(done),
                    mib(total),
                    frac * 100.0,
                    mib(done) / secs
                )
            }
            _ => format!(
                "{} {:.1} MiB {:.0} MiB/s",
                self.verb,
                mib(done),
                mib(done) / secs
            ),
        };
        let _ = write!(std::io::stderr(), "\r{line}\x1b[K");
    }

    /// Clears the bar.
    pub fn finish(&mut self) {
        if self.shown && self.last.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
        self.shown = false;
    }
}

/// An error with its causes, each said once: a cause whose text the
/// message already holds (an error that prints its source, and also
/// chains it) is not repeated.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text = format!("{text}: {c}");
        }
    }
    text
}
