//! The runtime shared by every process of one host: the wasmtime engine with
//! Phantom's memory creator, the linker holding the `phantom:os` imports, the
//! cache of compiled components, the epoch ticker that bounds guest calls,
//! and the background thread that writes checkpoints.
//!
//! ```text
//!   Runtime ─┬─ Engine (memfd memories via PhantomMemoryCreator, epochs)
//!            ├─ Linker<ProcessCtx> (phantom:os)
//!            ├─ component cache: memory map + <data>/.cache/*.cwasm
//!            ├─ epoch ticker thread (every EPOCH_TICK)
//!            └─ CheckpointWriter thread: compress, checksum, commit
//! ```

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use phantom_snapshots::{CheckpointInfo, CheckpointStore, MemoryDelta, NewCheckpoint, PageRun};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::PersistentProcess;
use crate::ctx::ProcessCtx;
use crate::inspect::{self, CheckedGlobal};
use crate::memory::PhantomMemoryCreator;
use crate::tracker::TrackerKind;

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
}

/// How `Process::restore` puts the image's pages into the memories.
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
        }
    }
}

/// A compiled component plus what inspection found.
#[derive(Clone)]
pub struct LoadedComponent {
    /// The compiled component.
    pub component: Component,
    /// Accepted mutable globals.
    pub globals: Vec<CheckedGlobal>,
}

/// The host's shared machinery.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) creator: Arc<PhantomMemoryCreator>,
    pub(crate) linker: Linker<ProcessCtx>,
    pub(crate) config: RuntimeConfig,
    components: HashMap<u64, LoadedComponent>,
    pub(crate) writer: CheckpointWriter,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Makes a runtime.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
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
        let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut linker = Linker::new(&engine);
        PersistentProcess::add_to_linker::<ProcessCtx, HasSelf<ProcessCtx>>(&mut linker, |ctx| ctx)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
                })?;
        }
        Ok(Self {
            engine,
            creator,
            linker,
            config,
            components: HashMap::new(),
            writer: CheckpointWriter::start()?,
            ticker_stop,
        })
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Compiles (or loads from the cache in `cache_dir`) the component in
    /// `bytes`, after checking that it can be a persistent process.
    pub fn load_component(
        &mut self,
        bytes: &[u8],
        cache_dir: Option<&Path>,
    ) -> anyhow::Result<LoadedComponent> {
        let key = component_key(&self.engine, bytes);
        if let Some(loaded) = self.components.get(&key) {
            return Ok(loaded.clone());
        }
        let globals = inspect::inspect_component(bytes)?;
        let cached = cache_dir.map(|d| d.join(format!("{key:016x}.cwasm")));
        let component = match cached.as_deref().filter(|p| p.exists()) {
            Some(path) => match crate::sys::load_precompiled(&self.engine, path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("phantom: ignoring compiled cache {}: {e}", path.display());
                    self.compile_and_cache(bytes, cached.as_deref())?
                }
            },
            None => self.compile_and_cache(bytes, cached.as_deref())?,
        };
        // Belt and braces: the component model's own view of the imports.
        for (name, item) in component.component_type().imports(&self.engine) {
            if !matches!(item.ty, wasmtime::component::types::ComponentItem::Type(_)) {
                inspect::check_import(name)?;
            }
        }
        let loaded = LoadedComponent { component, globals };
        self.components.insert(key, loaded.clone());
        Ok(loaded)
    }

    fn compile_and_cache(&self, bytes: &[u8], cached: Option<&Path>) -> anyhow::Result<Component> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| anyhow::anyhow!("cannot compile: {e}"))?;
        if let Some(path) = cached
            && let Ok(serialized) = component.serialize()
        {
            // The cache is an optimisation: failing to write it is not an error.
            let _ = path.parent().map(std::fs::create_dir_all);
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, serialized).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
        Ok(component)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Identifies a component's bytes compiled by this engine's configuration.
fn component_key(engine: &Engine, bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    xxhash_rust::xxh3::xxh3_64(bytes).hash(&mut h);
    h.finish()
}

/// A captured checkpoint on its way to disk.
pub struct WriteJob {
    /// The process's store.
    pub store: Arc<CheckpointStore>,
    /// Checkpoint id.
    pub id: u64,
    /// Parent id (None: full image).
    pub parent: Option<u64>,
    /// Capture time.
    pub created_unix_ns: u64,
    /// The pause the capture cost.
    pub pause_us: u64,
    /// State sections.
    pub sections: Vec<(String, Vec<u8>)>,
    /// Per memory: index, size, dirty runs, memfd.
    pub memories: Vec<(u32, u64, Vec<PageRun>, std::fs::File)>,
    /// Where the result goes.
    pub reply: mpsc::Sender<Result<CheckpointInfo, String>>,
}

/// The background writer: the guest runs on while its checkpoint is
/// compressed, checksummed and committed.
pub struct CheckpointWriter {
    jobs: mpsc::Sender<WriteJob>,
}

impl CheckpointWriter {
    fn start() -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("phantom-writer".into())
            .spawn(move || {
                for job in rx {
                    let result = write_job(&job);
                    let _ = job.reply.send(result);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Queues a job; the result arrives on the job's reply channel.
    pub fn submit(&self, job: WriteJob) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            let _ = job
                .reply
                .send(Err("the checkpoint writer has stopped".into()));
        }
    }
}

/// Writes one job synchronously (also used by `spawn`).
pub fn write_job(job: &WriteJob) -> Result<CheckpointInfo, String> {
    let memories = job
        .memories
        .iter()
        .map(|(index, size, dirty, file)| MemoryDelta {
            index: *index,
            size_bytes: *size,
            dirty,
            source: file,
        })
        .collect();
    let ckpt = NewCheckpoint {
        id: job.id,
        parent: job.parent,
        created_unix_ns: job.created_unix_ns,
        pause_us: job.pause_us,
        sections: job.sections.clone(),
        memories,
    };
    job.store.write(&ckpt).map_err(|e| e.to_string())
}

/// Where the compiled-component cache of a data directory lives.
pub fn cache_dir(data: &Path) -> PathBuf {
    data.join(".cache")
}
