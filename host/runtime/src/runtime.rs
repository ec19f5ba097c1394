//! The runtime shared by every process of one host: the wasmtime engine with
//! Phantom's memory creator, the linker holding the `phantom:os` imports, the
//! cache of compiled components (`component.rs`), the epoch ticker that
//! bounds guest calls, and the background checkpoint writer.
//!
//! ```text
//!   Runtime ─┬─ Engine (memfd memories via PhantomMemoryCreator, epochs)
//!            ├─ Linker<ProcessCtx> (phantom:os)
//!            ├─ component cache: memory map + <data>/.cache/*.cwasm
//!            ├─ epoch ticker thread (every EPOCH_TICK)
//!            └─ CheckpointWriter thread: compress, checksum, commit
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phantom_memory::{PhantomMemoryCreator, TrackerKind};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::PersistentProcess;
use crate::component::LoadedComponent;
use crate::ctx::ProcessCtx;
use crate::writer::CheckpointWriter;

/// How often the epoch advances; a call's time budget is counted in these.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of a runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Dirty-tracking backend for every memory.
    pub tracker: TrackerKind,
    /// Longest a single guest call (`init` or `handle`) may run.
    pub call_timeout: Duration,
    /// Largest size of one linear memory.
    pub max_memory_bytes: usize,
    /// How a restore fills memories.
    pub restore: RestoreMode,
    /// Keep a journal of inputs and nondeterministic reads (the default):
    /// nothing acknowledged is lost and no effect happens twice. Off, a
    /// crash loses what happened since the last checkpoint (benchmarks).
    pub journal: bool,
}

/// How a restore puts the image's pages into the memories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreMode {
    /// Every page is written before the process starts.
    Eager,
    /// Pages are written on first touch (userfaultfd) and by a background
    /// prefetch; eager where the kernel has no userfaultfd for memfds.
    Lazy,
    /// Lazy without the prefetch: only touched pages are written (until a
    /// full checkpoint needs them all). For tests.
    LazyNoPrefetch,
}

impl RestoreMode {
    /// Parses a `--restore` value.
    pub fn parse(s: &str) -> Result<RestoreMode, String> {
        match s {
            "eager" => Ok(Self::Eager),
            "lazy" => Ok(Self::Lazy),
            "lazy-no-prefetch" => Ok(Self::LazyNoPrefetch),
            other => Err(format!(
                "unknown restore mode '{other}' (eager, lazy, lazy-no-prefetch)"
            )),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            tracker: TrackerKind::best_available(),
            call_timeout: Duration::from_secs(10),
            max_memory_bytes: 2 << 30,
            restore: RestoreMode::Lazy,
            journal: true,
        }
    }
}

/// The host's shared machinery.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) creator: Arc<PhantomMemoryCreator>,
    pub(crate) linker: Linker<ProcessCtx>,
    pub(crate) config: RuntimeConfig,
    pub(crate) components: Mutex<HashMap<u64, LoadedComponent>>,
    pub(crate) writer: CheckpointWriter,
    ticker_stop: Arc<AtomicBool>,
}

/// The runtime could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the runtime: {0}")]
pub struct RuntimeError(String);

impl Runtime {
    /// Makes a runtime.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let creator = Arc::new(PhantomMemoryCreator::default());
        let mut wasm = Config::new();
        wasm.wasm_component_model(true);
        wasm.with_host_memory(creator.clone());
        // wasmtime 48 panics on data segments with host memory unless
        // copy-on-write initialisation is off; our memfd is the CoW anyway.
        wasm.memory_init_cow(false);
        wasm.epoch_interruption(true);
        // Our memories never move: each lives in a 4 GiB reservation and
        // grows in place. Saying so lets compiled code treat the heap base
        // as read-only and hoist it out of loops.
        wasm.memory_may_move(false);
        // `PHANTOM_PERFMAP=1` writes /tmp/perf-<pid>.map so `perf report`
        // names the guests' compiled functions.
        if std::env::var_os("PHANTOM_PERFMAP").is_some() {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let err = |e: wasmtime::Error| RuntimeError(format!("{e:#}"));
        let engine = Engine::new(&wasm).map_err(err)?;
        let mut linker = Linker::new(&engine);
        PersistentProcess::add_to_linker::<ProcessCtx, HasSelf<ProcessCtx>>(&mut linker, |ctx| ctx)
            .map_err(err)?;
        crate::iface::wasi::add_to_linker(&mut linker).map_err(err)?;
        crate::iface::messages::add_to_linker(&mut linker).map_err(err)?;
        crate::iface::devices::add_to_linker(&mut linker).map_err(err)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("phantom-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError(e.to_string()))?;
        }
        Ok(Self {
            engine,
            creator,
            linker,
            config,
            components: Mutex::new(HashMap::new()),
            writer: CheckpointWriter::start().map_err(|e| RuntimeError(e.to_string()))?,
            ticker_stop,
        })
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Changes how later restores fill memories (benchmarks compare modes).
    pub fn set_restore_mode(&mut self, mode: RestoreMode) {
        self.config.restore = mode;
    }

    /// The epoch deadline of one call, in ticks.
    pub(crate) fn call_ticks(&self) -> u64 {
        (self.config.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A component instantiated by plain wasmtime: default engine, no memfds,
/// no instrumentation, no gate or journal around the call (the dispatch
/// benchmark's baseline).
#[doc(hidden)]
pub struct PlainInstance {
    store: wasmtime::Store<ProcessCtx>,
    bindings: PersistentProcess,
}

impl PlainInstance {
    /// Instantiates `bytes` and runs its `init` with `args`.
    pub fn new(bytes: &[u8], args: &[String]) -> Result<PlainInstance, RuntimeError> {
        let err = |e: wasmtime::Error| RuntimeError(format!("{e:#}"));
        let engine = Engine::default();
        let component = wasmtime::component::Component::new(&engine, bytes).map_err(err)?;
        let mut linker = Linker::new(&engine);
        PersistentProcess::add_to_linker::<ProcessCtx, HasSelf<ProcessCtx>>(&mut linker, |ctx| ctx)
            .map_err(err)?;
        crate::iface::wasi::add_to_linker(&mut linker).map_err(err)?;
        crate::iface::messages::add_to_linker(&mut linker).map_err(err)?;
        crate::iface::devices::add_to_linker(&mut linker).map_err(err)?;
        let ctx = ProcessCtx::new(
            crate::persist::HostState::default(),
            Default::default(),
            Default::default(),
            usize::MAX,
        );
        let mut store = wasmtime::Store::new(&engine, ctx);
        let bindings =
            PersistentProcess::instantiate(&mut store, &component, &linker).map_err(err)?;
        bindings
            .call_init(&mut store, args, &[])
            .map_err(err)?
            .map_err(RuntimeError)?;
        Ok(PlainInstance { store, bindings })
    }

    /// Calls `handle(event)`.
    pub fn handle(&mut self, event: &crate::bindings::Event) -> Result<(), RuntimeError> {
        self.bindings
            .call_handle(&mut self.store, event)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        self.store.data_mut().outbox.take();
        Ok(())
    }
}
