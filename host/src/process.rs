//! A persistent process: a component instance, its host state, its memories,
//! and its image store.
//!
//! ```text
//!   spawn:   component ─► instantiate (fresh memfds) ─► init ─► full checkpoint 1 ─► rename into place
//!   restore: load newest valid chain ─► memfds sized (lazy: filled on first touch
//!            and in the background; eager: filled now) ─► instantiate
//!            ─► drop private pages (undo data segments) ─► handle events (no init)
//!   run:     handle(event) … capture (pause) ─► writer thread (guest runs on)
//! ```
//! A process directory (`<data>/<name>/`) holds `process.json` (what was
//! spawned), `component.wasm`, and the checkpoint files of its image store.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use phantom_snapshots::{CheckpointInfo, CheckpointStore};
use serde::{Deserialize, Serialize};
use wasmtime::Store;

use crate::bindings::{Event, GuestFile, PersistentProcess, Status};
use crate::ctx::ProcessCtx;
use crate::inspect::CheckedGlobal;
use crate::lazy::LazySource;
use crate::memory::{MemoryCell, PreparedMemory, new_memfd};
use crate::runtime::{EPOCH_TICK, RestoreMode, Runtime, WriteJob, cache_dir, write_job};
use crate::state::{EventState, GLOBALS_SECTION, HOST_SECTION, HostState};
use crate::sys::uffd::Userfaultfd;

/// A full image is written at least this often (in checkpoints), so restore
/// never replays a long chain.
const FULL_EVERY: u64 = 64;

/// What `phantom spawn` recorded about a process (never changes after).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessMeta {
    /// The process name.
    pub name: String,
    /// Arguments given to `init`.
    pub args: Vec<String>,
    /// Names of the files given to `init`.
    pub files: Vec<String>,
    /// When it was spawned (Unix seconds).
    pub spawned_unix: u64,
    /// Size of `component.wasm`.
    pub component_bytes: u64,
}

/// Failure of one process; the host goes on with the others.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The guest trapped or ran out of time or memory.
    #[error("{0}")]
    Guest(String),
    /// The host failed (I/O, store).
    #[error(transparent)]
    Host(#[from] anyhow::Error),
}

/// What a capture did.
#[derive(Clone, Debug)]
pub struct CaptureReport {
    /// The checkpoint id.
    pub id: u64,
    /// Dirty pages captured.
    pub dirty_pages: u64,
    /// The stop-the-world pause.
    pub pause: std::time::Duration,
    /// Whether it is a full image.
    pub full: bool,
}

/// A running persistent process.
pub struct Process {
    name: String,
    dir: PathBuf,
    store: Store<ProcessCtx>,
    bindings: PersistentProcess,
    memories: Vec<Arc<MemoryCell>>,
    images: Arc<CheckpointStore>,
    globals: Vec<CheckedGlobal>,
    /// Highest checkpoint id used in this directory; the next is one more.
    last_id: u64,
    /// The checkpoint the next delta builds on.
    parent: Option<u64>,
    /// Whether the next checkpoint must be a full image.
    needs_full: bool,
    /// Checkpoints since the last full image.
    since_full: u64,
    in_flight: Option<mpsc::Receiver<Result<CheckpointInfo, String>>>,
    last_committed: Option<CheckpointInfo>,
}

/// Checks a process name: it becomes a directory name.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        bail!(
            "invalid process name '{name}': use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
        );
    }
    Ok(())
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Process {
    /// Creates a persistent process in `data/name`: runs `init`, writes the
    /// first (full) checkpoint, and only then makes the directory visible.
    /// Returns the process and the console output of `init`.
    pub fn spawn(
        rt: &mut Runtime,
        component_bytes: &[u8],
        data: &Path,
        name: &str,
        args: Vec<String>,
        files: Vec<(String, Vec<u8>)>,
    ) -> anyhow::Result<(Process, Vec<u8>)> {
        check_name(name)?;
        if !data.is_dir() {
            bail!(
                "data directory {} does not exist (create it first)",
                data.display()
            );
        }
        let dir = data.join(name);
        if dir.exists() {
            bail!(
                "a process named '{name}' already exists in {}",
                data.display()
            );
        }
        let loaded = rt.load_component(component_bytes, Some(&cache_dir(data)))?;
        let tmp = data.join(format!(".{name}.spawning-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let result = (|| {
            let images = CheckpointStore::create(&tmp)?;
            fs::write(tmp.join("component.wasm"), component_bytes)?;
            let meta = ProcessMeta {
                name: name.to_string(),
                args: args.clone(),
                files: files.iter().map(|(n, _)| n.clone()).collect(),
                spawned_unix: unix_ns() / 1_000_000_000,
                component_bytes: component_bytes.len() as u64,
            };
            fs::write(tmp.join("process.json"), serde_json::to_vec_pretty(&meta)?)?;
            let state = HostState {
                name: name.to_string(),
                args: args.clone(),
                next_timer_id: 1,
                ..Default::default()
            };
            let mut process = Self::instantiate(
                rt,
                &loaded,
                dir.clone(),
                Arc::new(images),
                state,
                Vec::new(),
            )?;
            let guest_files: Vec<GuestFile> = files
                .into_iter()
                .map(|(name, data)| GuestFile { name, data })
                .collect();
            let timeout = ticks(rt);
            process.store.set_epoch_deadline(timeout);
            let result = process
                .bindings
                .call_init(&mut process.store, &args, &guest_files);
            let output = process.store.data_mut().take_output();
            let status = match result {
                Ok(Ok(status)) => status,
                Ok(Err(message)) => bail!("init of '{name}' failed: {message}"),
                Err(trap) => bail!("init of '{name}' {}", process.describe_trap(&trap, rt)),
            };
            process.apply_status(status);
            // The first checkpoint is a full image, written before the
            // process becomes visible.
            let job = process.capture(true)?.1;
            let info = write_job(&job)
                .map_err(|e| anyhow::anyhow!("cannot write the first checkpoint: {e}"))?;
            process.last_committed = Some(info);
            Ok((process, output))
        })();
        match result {
            Ok((mut process, output)) => {
                fs::rename(&tmp, &dir).with_context(|| {
                    format!("cannot move the new process into {}", dir.display())
                })?;
                fs::File::open(data).and_then(|d| d.sync_all())?;
                process.images = Arc::new(CheckpointStore::open(&dir)?);
                Ok((process, output))
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Restores the process in `dir` from its newest valid checkpoint.
    /// Returns the process and warnings about checkpoints that were skipped.
    pub fn restore(rt: &mut Runtime, dir: &Path) -> anyhow::Result<(Process, Vec<String>)> {
        let images = CheckpointStore::open(dir)?;
        let loaded = images
            .load_latest()
            .with_context(|| format!("cannot restore {}", dir.display()))?;
        let mut warnings: Vec<String> = loaded
            .skipped
            .iter()
            .map(|(id, why)| format!("{}: skipped checkpoint {id}: {why}", dir.display()))
            .collect();
        let host = loaded
            .sections
            .get(HOST_SECTION)
            .context("the image has no host section")
            .and_then(|b| {
                HostState::restore(b).context("the image's host section is unreadable")
            })?;
        let mut state = host;
        state.restore_count += 1;
        state.checkpoint_id = loaded.info.id;
        let mut prepared = Vec::new();
        let mut lazy = rt.config.restore != RestoreMode::Eager;
        let mut memories = loaded.memories;
        memories.sort_by_key(|m| m.index);
        for (i, m) in memories.iter().enumerate() {
            if m.index as usize != i {
                bail!("the image's memories are not numbered 0..n");
            }
            let size = usize::try_from(m.size_bytes).context("memory too large")?;
            let file = new_memfd()?;
            file.set_len(m.size_bytes)?;
            let source = if lazy {
                match Userfaultfd::open() {
                    Ok(uffd) => Some(LazySource {
                        uffd,
                        reader: m.page_reader()?,
                        prefetch: rt.config.restore == RestoreMode::Lazy,
                    }),
                    Err(e) => {
                        warnings.push(format!(
                            "{}: restoring eagerly: no userfaultfd for memfds here ({e})",
                            dir.display()
                        ));
                        lazy = false;
                        None
                    }
                }
            } else {
                None
            };
            if source.is_none() {
                m.write_into(&file)?;
            }
            prepared.push(PreparedMemory {
                file,
                size,
                lazy: source,
            });
        }
        let bytes = fs::read(dir.join("component.wasm")).context("cannot read component.wasm")?;
        let component = rt.load_component(&bytes, dir.parent().map(cache_dir).as_deref())?;
        if let Some(globals) = loaded.sections.get(GLOBALS_SECTION) {
            let saved: Vec<CheckedGlobal> = serde_json::from_slice(globals).unwrap_or_default();
            if saved != component.globals {
                bail!(
                    "the image's globals do not match the component's (was component.wasm replaced?)"
                );
            }
        }
        let images = Arc::new(images);
        let mut process = Self::instantiate(
            rt,
            &component,
            dir.to_path_buf(),
            images.clone(),
            state,
            prepared,
        )?;
        for m in &process.memories {
            m.revert_to_file()?;
        }
        process.last_id = images
            .latest_id()
            .unwrap_or(loaded.info.id)
            .max(loaded.info.id);
        // The next delta builds on what was loaded, not on a newer file that
        // failed verification.
        process.parent = Some(loaded.info.id);
        process.since_full = 1;
        process.last_committed = Some(loaded.info);
        Ok((process, warnings))
    }

    fn instantiate(
        rt: &mut Runtime,
        loaded: &crate::runtime::LoadedComponent,
        dir: PathBuf,
        images: Arc<CheckpointStore>,
        state: HostState,
        prepared: Vec<PreparedMemory>,
    ) -> anyhow::Result<Process> {
        let name = state.name.clone();
        let mut store = Store::new(
            &rt.engine,
            ProcessCtx::new(state, rt.config.max_memory_bytes),
        );
        store.limiter(|ctx| &mut ctx.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(rt));
        rt.creator.begin(prepared, rt.config.tracker);
        let instance = PersistentProcess::instantiate(&mut store, &loaded.component, &rt.linker);
        let memories = rt.creator.finish();
        let bindings = instance.map_err(|e| anyhow::anyhow!("cannot instantiate '{name}': {e}"))?;
        let memories = memories.map_err(|e| anyhow::anyhow!("cannot restore '{name}': {e}"))?;
        Ok(Process {
            name,
            dir,
            store,
            bindings,
            memories,
            images,
            globals: loaded.globals.clone(),
            last_id: 0,
            parent: None,
            needs_full: false,
            since_full: 0,
            in_flight: None,
            last_committed: None,
        })
    }
}

/// The epoch deadline of one call, in ticks.
fn ticks(rt: &Runtime) -> u64 {
    (rt.config.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

impl Process {
    /// The process name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Persisted host state.
    pub fn state(&self) -> &HostState {
        &self.store.data().state
    }

    /// Mutable host state (the supervisor queues events into it).
    pub fn state_mut(&mut self) -> &mut HostState {
        &mut self.store.data_mut().state
    }

    /// The process clock now.
    pub fn now_ns(&self) -> u64 {
        self.store.data().clock.now_ns()
    }

    /// The process's memories.
    pub fn memories(&self) -> &[Arc<MemoryCell>] {
        &self.memories
    }

    /// The last checkpoint known to be on disk.
    pub fn last_committed(&self) -> Option<&CheckpointInfo> {
        self.last_committed.as_ref()
    }

    /// Whether the guest asked for a checkpoint during its last call.
    pub fn take_checkpoint_request(&mut self) -> bool {
        std::mem::take(&mut self.store.data_mut().checkpoint_requested)
    }

    /// Whether the process has finished.
    pub fn exited(&self) -> Option<i32> {
        self.state().exit_code
    }

    /// Whether the process has work to do now: a queued event or a `busy`.
    pub fn runnable(&self) -> bool {
        let s = self.state();
        s.exit_code.is_none() && (s.busy || !s.pending.is_empty())
    }

    fn apply_status(&mut self, status: Status) {
        let state = self.state_mut();
        match status {
            Status::Idle => state.busy = false,
            Status::Busy => state.busy = true,
            Status::Exit(code) => {
                state.busy = false;
                state.exit_code = Some(code);
                state.timers.clear();
            }
        }
    }

    fn describe_trap(&mut self, trap: &wasmtime::Error, rt: &Runtime) -> String {
        if let Some(bytes) = self.store.data_mut().limiter.refused.take() {
            return format!(
                "ran out of memory: it asked for {} MiB, more than the limit of {} MiB ({trap})",
                bytes >> 20,
                rt.config.max_memory_bytes >> 20
            );
        }
        if matches!(
            trap.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            return format!(
                "ran longer than the call timeout of {:?} in one call (an endless loop?)",
                rt.config.call_timeout
            );
        }
        format!("trapped: {trap:?}")
    }

    /// Runs one unit of work: the next queued event, else a `resume` for a
    /// busy guest. Returns the console output, or `None` if there was nothing
    /// to do. A trap fails the process (its last checkpoint stays intact).
    pub fn step(&mut self, rt: &Runtime) -> Result<Option<Vec<u8>>, ProcessError> {
        if self.exited().is_some() {
            return Ok(None);
        }
        let event = match self.state_mut().pending.pop_front() {
            Some(e) => e.to_event(),
            None if self.state().busy => Event::Resume,
            None => return Ok(None),
        };
        self.deliver(rt, &event).map(Some)
    }

    /// Delivers one event now.
    pub fn deliver(&mut self, rt: &Runtime, event: &Event) -> Result<Vec<u8>, ProcessError> {
        self.store.set_epoch_deadline(ticks(rt));
        let result = self.bindings.call_handle(&mut self.store, event);
        let output = self.store.data_mut().take_output();
        if let Some(why) = self.memories.iter().find_map(|m| m.lazy_error()) {
            // The guest may have read zeroes where its image had bytes:
            // neither its output nor its state can be trusted.
            return Err(ProcessError::Host(anyhow::anyhow!(
                "process '{}' cannot be restored from its image: {why}",
                self.name
            )));
        }
        match result {
            Ok(status) => {
                self.apply_status(status);
                Ok(output)
            }
            Err(trap) => {
                let mut message = String::from_utf8_lossy(&output).into_owned();
                if !message.is_empty() && !message.ends_with('\n') {
                    message.push('\n');
                }
                let why = self.describe_trap(&trap, rt);
                message.push_str(&format!("process '{}' {why}", self.name));
                Err(ProcessError::Guest(message))
            }
        }
    }

    /// Queues a line of console input.
    pub fn push_line(&mut self, line: String) -> bool {
        self.state_mut().push_event(EventState::ConsoleLine(line))
    }

    /// Captures a checkpoint (the pause) and hands it to the background
    /// writer. Waits first for this process's previous write, because the
    /// memfds must not change under it.
    pub fn checkpoint(&mut self, rt: &Runtime) -> anyhow::Result<CaptureReport> {
        self.wait_for_write();
        let full = self.needs_full || self.parent.is_none() || self.since_full >= FULL_EVERY;
        let (report, job) = self.capture(full)?;
        let (tx, rx) = mpsc::channel();
        rt.writer.submit(WriteJob { reply: tx, ..job });
        self.in_flight = Some(rx);
        Ok(report)
    }

    /// Makes the next checkpoint a full image.
    pub fn require_full(&mut self) {
        self.needs_full = true;
    }

    /// Waits for the write in flight, if any; returns what it committed.
    pub fn wait_for_write(&mut self) -> Option<Result<CheckpointInfo, String>> {
        let rx = self.in_flight.take()?;
        let result = rx
            .recv()
            .unwrap_or_else(|_| Err("the checkpoint writer stopped".into()));
        Some(self.settle(result))
    }

    /// The write in flight's result, if it has finished.
    pub fn poll_write(&mut self) -> Option<Result<CheckpointInfo, String>> {
        let result = match self.in_flight.as_ref()?.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => Err("the checkpoint writer stopped".into()),
        };
        self.in_flight = None;
        Some(self.settle(result))
    }

    fn settle(&mut self, result: Result<CheckpointInfo, String>) -> Result<CheckpointInfo, String> {
        match &result {
            Ok(info) => self.last_committed = Some(info.clone()),
            // The pages of the failed delta are no longer tracked as dirty,
            // so only a full image can follow it.
            Err(_) => self.needs_full = true,
        }
        result
    }

    /// The pause: dirty pages into the memfds, host state serialised.
    fn capture(&mut self, full: bool) -> anyhow::Result<(CaptureReport, WriteJob)> {
        let started = Instant::now();
        let id = self.last_id + 1;
        let now = self.now_ns();
        {
            let state = self.state_mut();
            state.checkpoint_id = id;
            state.process_time_ns = now;
        }
        let mut memories = Vec::with_capacity(self.memories.len());
        let mut dirty_pages = 0;
        for (i, m) in self.memories.iter().enumerate() {
            let c = m
                .capture(full)
                .with_context(|| format!("cannot capture memory {i}"))?;
            dirty_pages += c.dirty.iter().map(|r| r.count).sum::<u64>();
            memories.push((i as u32, c.size_bytes, c.dirty, c.file));
        }
        let sections = vec![
            (HOST_SECTION.to_string(), self.state().save()),
            (
                GLOBALS_SECTION.to_string(),
                serde_json::to_vec(&self.globals)?,
            ),
        ];
        let pause = started.elapsed();
        let parent = if full { None } else { self.parent };
        self.last_id = id;
        self.parent = Some(id);
        if full {
            self.since_full = 1;
            self.needs_full = false;
        } else {
            self.since_full += 1;
        }
        let (reply, _) = mpsc::channel();
        let job = WriteJob {
            store: self.images.clone(),
            id,
            parent,
            created_unix_ns: unix_ns(),
            pause_us: pause.as_micros() as u64,
            sections,
            memories,
            reply,
        };
        Ok((
            CaptureReport {
                id,
                dirty_pages,
                pause,
                full,
            },
            job,
        ))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never leave a capture unwritten: the memfds die with us.
        self.wait_for_write();
    }
}
