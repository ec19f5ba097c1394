//! A persistent process: a component instance, its host state, its memories
//! and its image store. The lifecycle stages are sibling modules:
//!
//! ```text
//!   spawn.rs      component ─► instantiate (fresh memfds) ─► init ─► full checkpoint 1
//!                 ─► rename .NAME.spawning-PID into place (visible only once durable)
//!   restore.rs    newest checkpoint whose chain verifies and whose contents fit the
//!                 component ─► memories prepared (lazy or eager) ─► instantiate
//!                 ─► drop private pages (undo data segments) ─► no init
//!   step.rs       the next input (through the gate) ─► handle ─► outputs (the exit)
//!   checkpoint.rs capture (the pause) ─► NewCheckpoint ─► writer thread ─► typed result
//! ```
//! A process directory (`<data>/<name>/`) holds `process.json` (what was
//! spawned), `component.wasm`, and the checkpoint files of its image store.

mod checkpoint;
mod globals;
mod journal;
mod restore;
mod spawn;
mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use phantom_memory::{InstantiateError, LazyStats, Memories, PreparedMemory, Quiescent};
use phantom_snapshots::{CheckpointInfo, CheckpointStore};
use serde::{Deserialize, Serialize};
use wasmtime::Store;

use crate::bindings::PersistentProcess;
use crate::component::LoadedComponent;
use crate::ctx::ProcessCtx;
use crate::iface::wasi::WasiState;
use crate::inspect::CheckedGlobal;
use crate::persist::{GlobalsCheck, HostParts, HostState, TimerTable};
use crate::runtime::Runtime;
use crate::writer::WriteReceipt;

pub use checkpoint::CaptureReport;
pub use journal::ReplayReport;
pub(crate) use restore::check_image_contents;
pub(crate) use spawn::unix_ns;
pub use spawn::{DEVICES_FILE, SpawnRequest, spawning_dir};

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

/// Checks a process name: it becomes a directory name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Where the next checkpoint goes in the chain of checkpoint files.
#[derive(Debug, Default)]
struct Chain {
    /// Highest checkpoint id used in this directory; the next is one more.
    last_id: u64,
    /// The checkpoint the next delta builds on.
    parent: Option<u64>,
    /// Whether the next checkpoint must be a full image.
    needs_full: bool,
    /// Checkpoints since the last full image.
    since_full: u64,
}

/// A running persistent process.
pub struct Process {
    name: String,
    dir: PathBuf,
    store: Store<ProcessCtx>,
    bindings: PersistentProcess,
    memories: Memories,
    images: Arc<CheckpointStore>,
    globals: Vec<CheckedGlobal>,
    /// Getters and setters of `globals`.
    global_access: globals::GlobalAccess,
    chain: Chain,
    in_flight: Option<WriteReceipt>,
    last_committed: Option<CheckpointInfo>,
    /// `handle-message`, if the component exports it.
    handle_message: Option<journal::HandleMessage>,
    /// `handle-device-event`, if the component exports it.
    handle_device_event: Option<journal::HandleDeviceEvent>,
    /// Journal positions of the checkpoints this host wrote or restored.
    positions: std::collections::BTreeMap<u64, u64>,
    /// What the replay of the last restore did.
    last_replay: Option<ReplayReport>,
}

impl Process {
    /// The process name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes this restored process the start of a rollback: its message
    /// ids go on after `next_message_id` (receivers ignore ids they have
    /// seen from a sender, so reused ids would be dropped), the effects
    /// its checkpoint held are forgotten (they left before the rollback),
    /// its next checkpoint is a full image numbered after `last_id`.
    pub(crate) fn prepare_rollback(&mut self, next_message_id: u64, last_id: u64) {
        self.store.data_mut().journal.state.held.clear();
        self.move_on(next_message_id, last_id);
    }

    /// Makes this restored process go on from a point its history left
    /// (an undone rollback, a cut journal): its message ids after
    /// `next_message_id`, its next checkpoint a full image numbered after
    /// `last_id`. Effects it holds stay held.
    pub(crate) fn move_on(&mut self, next_message_id: u64, last_id: u64) {
        self.message_ids_after(next_message_id);
        self.chain.last_id = self.chain.last_id.max(last_id);
        self.require_full();
    }

    /// Makes the message ids this process sends from now on go on after
    /// `next_message_id` (a fork, which may take the name of a process
    /// that receivers still remember as a sender).
    pub(crate) fn message_ids_after(&mut self, next_message_id: u64) {
        let ctx = self.store.data_mut();
        ctx.state.next_message_id = ctx.state.next_message_id.max(next_message_id);
    }

    /// The process directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Persisted host state.
    pub fn state(&self) -> &HostState {
        &self.store.data().state
    }

    /// The process's timers.
    pub fn timers(&self) -> &TimerTable {
        &self.store.data().timers
    }

    /// The process clock now.
    pub fn now_ns(&self) -> u64 {
        self.store.data().clock.now_ns()
    }

    /// What the replay of the journal did at restore (None: nothing to
    /// replay).
    pub fn last_replay(&self) -> Option<&ReplayReport> {
        self.last_replay.as_ref()
    }

    /// The last checkpoint known to be on disk.
    pub fn last_committed(&self) -> Option<&CheckpointInfo> {
        self.last_committed.as_ref()
    }

    /// Whether the guest asked for a checkpoint during its last call.
    pub fn take_checkpoint_request(&mut self) -> bool {
        std::mem::take(&mut self.store.data_mut().checkpoint_requested)
    }

    /// The exit code, once the process has finished.
    pub fn exited(&self) -> Option<i32> {
        self.state().exit_code
    }

    /// Whether the process has work to do now: a queued input or a `busy`
    /// (and room to hold what it sends out).
    pub fn runnable(&self) -> bool {
        let ctx = self.store.data();
        let s = &ctx.state;
        s.exit_code.is_none()
            && (s.busy || !s.pending.is_empty())
            && ctx.journal.state.held.len() < crate::journal::MAX_HELD
    }

    /// Copies of the memories' bytes (for tests and differential checks).
    pub fn memory_bytes(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let q = Quiescent::new(&mut self.store);
        self.memories.copy_bytes(&q)
    }

    /// Number of linear memories.
    pub fn memory_count(&self) -> usize {
        self.memories.len()
    }

    /// Size of each memory in bytes.
    pub fn memory_sizes(&self) -> Vec<usize> {
        self.memories.sizes()
    }

    /// How each memory's lazy restore went so far (None: not lazy).
    pub fn lazy_stats(&self) -> Vec<Option<LazyStats>> {
        self.memories.lazy_stats()
    }

    /// Waits until every lazily restored page is in memory.
    pub fn wait_filled(&self) -> std::io::Result<()> {
        self.memories.wait_filled()
    }

    /// Bytes each memory's memfd holds (how much a lazy restore filled).
    pub fn memory_file_bytes(&self) -> std::io::Result<Vec<u64>> {
        self.memories.file_allocated_bytes()
    }

    /// Instantiates `loaded` with `prepared` memories (none: fresh ones)
    /// and the given host state.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of a process, each persisted on its own"
    )]
    fn instantiate(
        rt: &Runtime,
        loaded: &LoadedComponent,
        dir: PathBuf,
        images: Arc<CheckpointStore>,
        state: HostState,
        timers: TimerTable,
        wasi: WasiState,
        prepared: Vec<PreparedMemory>,
    ) -> Result<Process, InstantiateError> {
        let name = state.name.clone();
        let mut store = Store::new(
            &rt.engine,
            ProcessCtx::new(state, timers, wasi, rt.config.max_memory_bytes),
        );
        store.limiter(|ctx| &mut ctx.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(rt.call_ticks());
        let (instance, memories) = phantom_memory::instantiate(
            &rt.creator,
            &mut store,
            &rt.linker,
            &loaded.component,
            prepared,
            rt.config.tracker,
        )?;
        let bindings = PersistentProcess::new(&mut store, &instance)
            .map_err(|e| InstantiateError::Wasmtime(format!("{e:#}")))?;
        let global_access =
            globals::GlobalAccess::find(&mut store, &instance, &loaded.facts.global_plan)
                .map_err(|e| InstantiateError::Wasmtime(format!("{e:#}")))?;
        let handle_message = journal::find_handle_message(&mut store, &instance)
            .map_err(|e| InstantiateError::Wasmtime(format!("{e:#}")))?;
        store.data_mut().takes_messages = handle_message.is_some();
        let handle_device_event = journal::find_handle_device_event(&mut store, &instance)
            .map_err(|e| InstantiateError::Wasmtime(format!("{e:#}")))?;
        store.data_mut().takes_device_events = handle_device_event.is_some();
        Ok(Process {
            name,
            dir,
            store,
            bindings,
            memories,
            images,
            globals: loaded.facts.globals.clone(),
            global_access,
            chain: Chain::default(),
            in_flight: None,
            last_committed: None,
            handle_message,
            handle_device_event,
            positions: Default::default(),
            last_replay: None,
        })
    }

    /// Arms the limits of one call: the epoch deadline, and the deadline
    /// a WASI pollable may wait until.
    pub(super) fn begin_call(&mut self, rt: &Runtime) {
        self.store.set_epoch_deadline(rt.call_ticks());
        let ctx = self.store.data_mut();
        ctx.call_timeout = rt.config.call_timeout;
        ctx.call_deadline = Some(std::time::Instant::now() + rt.config.call_timeout);
    }

    /// Performs a released device effect (a pin's level, a serial write);
    /// returns what is left of it when the device has no room now.
    pub(crate) fn apply_device(
        &mut self,
        effect: &crate::iface::devices::DeviceEffect,
    ) -> Option<crate::iface::devices::DeviceEffect> {
        self.store.data_mut().devices.apply(effect)
    }

    /// `apply_device` outside the drive loop (spawn's `init`, `step`),
    /// which may wait: a device with no room is waited on for as long as
    /// it keeps taking bytes; one that takes nothing for `APPLY_WAIT` has
    /// the rest dropped, with a warning that says how much.
    pub(crate) fn apply_device_now(&mut self, effect: &crate::iface::devices::DeviceEffect) {
        /// How long a caller outside the drive loop waits on a device that
        /// takes nothing.
        const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
        let mut since = std::time::Instant::now();
        let mut rest = self.apply_device(effect);
        while let Some(e) = rest {
            // A rate change gives up waiting on the line by itself.
            let rate = matches!(e, crate::iface::devices::DeviceEffect::SerialSetBaud { .. });
            if since.elapsed() > APPLY_WAIT && !rate {
                let dropped = e.bytes_len();
                let name = match &e {
                    crate::iface::devices::DeviceEffect::SerialWrite { handle, .. } => self
                        .devices()
                        .find(*handle)
                        .map_or("?".to_string(), |d| d.name.clone()),
                    _ => "?".to_string(),
                };
                self.store.data_mut().devices.warn(format!(
                    "serial port `{name}` took nothing for {} s: the last {dropped} bytes written were dropped (nothing reads the port yet?)",
                    APPLY_WAIT.as_secs()
                ));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            let left = e.bytes_len();
            rest = self.apply_device(&e);
            if rest.as_ref().is_none_or(|r| r.bytes_len() < left) {
                since = std::time::Instant::now();
            }
        }
    }

    /// The process's devices (grants, what it holds, the simulated
    /// devices).
    pub fn devices(&self) -> &crate::iface::devices::Devices {
        &self.store.data().devices
    }

    /// Admits an edge event for every watched input pin whose level changed
    /// the way it is watched (the drive loop calls this every turn).
    pub fn poll_device_events(&mut self) {
        self.store.data_mut().poll_device_events();
    }

    /// Devices found gone, or that could not be opened, since the last
    /// call, each naming the device and why (the drive loop warns).
    pub fn take_device_warnings(&mut self) -> Vec<String> {
        self.store.data_mut().devices.take_warnings()
    }

    /// Unplugs every simulated device of the process (tests).
    pub fn unplug_devices(&mut self) {
        self.store.data_mut().devices.unplug_all();
    }

    /// Quiescence proof for this process's memories (no call is running
    /// while `&mut self` is borrowed).
    pub(super) fn quiescent(&mut self) -> (Quiescent<'_>, &phantom_memory::Memories) {
        (Quiescent::new(&mut self.store), &self.memories)
    }

    /// Everything a checkpoint stores besides memory, as it is now, with
    /// `globals` as read from the instance.
    fn host_parts(&self, globals: Option<Vec<u64>>) -> HostParts {
        let ctx = self.store.data();
        HostParts {
            host: ctx.state.clone(),
            timers: ctx.timers.clone(),
            globals: GlobalsCheck {
                list: self.globals.clone(),
                values: globals,
            },
            wasi: ctx.wasi.clone(),
            journal: crate::journal::JournalState {
                position: ctx.journal.log.as_ref().map_or(0, |l| l.next_seq()),
                ..ctx.journal.state.clone()
            },
            devices: ctx.devices.state.clone(),
            displays: ctx.devices.displays.clone(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never leave a capture unwritten: the memfds die with us.
        self.wait_for_write();
    }
}
