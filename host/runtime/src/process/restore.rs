//! Restoring a process from its image store.
//!
//! ```text
//!   component.wasm ─► load (inspect, compile cache)
//!   for each checkpoint, newest first, whose whole chain verifies:
//!     check it against the component ── bad? ─► skip it, say why, try the older one
//!       sections (host, timers, globals) parse and keep their bounds,
//!       globals equal the component's, memories: count, 64 KiB multiples,
//!       within the component's limits and --max-memory-mib
//!     prepare memories: lazy (uffd + page reader) or eager (written now)
//!     instantiate ─► drop private pages (undo data segments)
//!   a failure of the host itself (a memfd, a mapping) stops here: falling
//!   back would roll the process back for no fault of its image
//! ```

use std::path::Path;
use std::sync::Arc;

use phantom_memory::{InstantiateError, PreparedMemory, WASM_PAGE, fill_from, new_memfd};
use phantom_snapshots::{CheckpointStore, LoadedCheckpoint};

use super::{Chain, Process};
use crate::component::{LoadedComponent, cache_dir};
use crate::error::{Failure, RestoreError};
use crate::persist::HostParts;
use crate::runtime::{RestoreMode, Runtime};

/// Why a candidate checkpoint was not restored.
enum Refusal {
    /// Its contents are wrong: try an older one.
    Image(String),
    /// The host failed: stop.
    Host(String),
}

impl Process {
    /// Restores the process in `dir` from its newest usable checkpoint.
    /// Returns the process and warnings about checkpoints that were skipped.
    pub fn restore(rt: &Runtime, dir: &Path) -> Result<(Process, Vec<String>), RestoreError> {
        Self::restore_filling(rt, dir, rt.config.restore)
    }

    /// [`Process::restore`], filling memories as `mode` says (eager
    /// verifies every page up front, so a damaged page makes the restore
    /// fall back to an older checkpoint instead of failing a call).
    pub fn restore_filling(
        rt: &Runtime,
        dir: &Path,
        mode: RestoreMode,
    ) -> Result<(Process, Vec<String>), RestoreError> {
        Self::restore_with(rt, dir, mode, true)
    }

    /// [`Process::restore`] without taking its devices back (nothing is
    /// opened or driven): for a copy restored only to be checkpointed
    /// again (a fork or rollback in its staging directory), which must
    /// not touch hardware a running host may be driving.
    pub(crate) fn restore_without_devices(
        rt: &Runtime,
        dir: &Path,
    ) -> Result<(Process, Vec<String>), RestoreError> {
        Self::restore_with(rt, dir, rt.config.restore, false)
    }

    fn restore_with(
        rt: &Runtime,
        dir: &Path,
        mode: RestoreMode,
        devices: bool,
    ) -> Result<(Process, Vec<String>), RestoreError> {
        let images =
            Arc::new(CheckpointStore::open(dir).map_err(|e| {
                RestoreError::NoUsableImage(phantom_snapshots::RestoreError::Store(e))
            })?);
        let component_path = dir.join("component.wasm");
        let bytes = std::fs::read(&component_path).map_err(|source| RestoreError::Io {
            what: format!("cannot read {}", component_path.display()),
            source,
        })?;
        let loaded = rt
            .load_component(&bytes, dir.parent().map(cache_dir).as_deref())
            .map_err(|source| RestoreError::Component {
                dir: dir.to_path_buf(),
                source,
            })?;
        let mut warnings = Vec::new();
        let mut host_failure: Option<(u64, String)> = None;
        let store = images.clone();
        let restored = images.restore_newest(|candidate| {
            if host_failure.is_some() {
                return Err("not tried: the host failed on a newer checkpoint".into());
            }
            let result = check_image(rt, &loaded, candidate).and_then(|parts| {
                Self::from_image(
                    rt,
                    mode,
                    &loaded,
                    dir,
                    store.clone(),
                    candidate,
                    parts,
                    &mut warnings,
                )
            });
            result.map_err(|refusal| match refusal {
                Refusal::Image(why) => why,
                Refusal::Host(why) => {
                    host_failure = Some((candidate.info.id, why.clone()));
                    why
                }
            })
        });
        let restored = match restored {
            Ok(r) => r,
            Err(e) => {
                return Err(match host_failure {
                    Some((id, message)) => RestoreError::Host {
                        dir: dir.to_path_buf(),
                        id,
                        message,
                    },
                    None => RestoreError::NoUsableImage(e),
                });
            }
        };
        let mut process = restored.value;
        for (id, why) in &restored.skipped {
            warnings.push(format!("{}: skipped checkpoint {id}: {why}", dir.display()));
        }
        let id = restored.info.id;
        process.chain = Chain {
            last_id: images.latest_id().unwrap_or(id).max(id),
            // The next delta builds on what was loaded, not on a newer file
            // that was skipped.
            parent: Some(id),
            needs_full: false,
            // The chain restored from counts towards the next full image
            // (else restarts that each write a few deltas would grow one
            // chain without end).
            since_full: restored.chain_len as u64,
        };
        process.last_committed = Some(restored.info);
        let position = process.store.data().journal.state.position;
        process.positions.insert(id, position);
        // The journal's tail after the checkpoint: replayed, so the process
        // is where it was when its last entry was written.
        // Said with the failure: a replay from an older checkpoint than the
        // newest fails for what made it older (a limit, say).
        let skipped: Vec<String> = restored
            .skipped
            .iter()
            .map(|(id, why)| format!("checkpoint {id}: {why}"))
            .collect();
        let journal_failed = |mut failure: Failure| {
            if !skipped.is_empty() {
                failure.message = format!(
                    "{} (restored from checkpoint {id}, an older one; skipped {})",
                    failure.message,
                    skipped.join("; ")
                );
            }
            RestoreError::Journal {
                dir: dir.to_path_buf(),
                failure,
            }
        };
        let entries = process
            .open_journal(rt, &mut warnings)
            .map_err(journal_failed)?;
        if !entries.is_empty() {
            let report = process.replay(rt, entries).map_err(journal_failed)?;
            process.last_replay = Some(report);
        }
        // Devices come back after the replay (which touched none), in the
        // order opened, with what the guest set re-applied.
        let gone = if devices {
            process.store.data_mut().devices.reacquire()
        } else {
            Vec::new()
        };
        for gone in gone {
            warnings.push(format!(
                "{}: device {gone}: the guest gets `device-lost` when it next uses it",
                dir.display()
            ));
        }
        Ok((process, warnings))
    }

    /// Makes the process of one checked candidate.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one restore's candidate, used once"
    )]
    fn from_image(
        rt: &Runtime,
        mode: RestoreMode,
        loaded: &LoadedComponent,
        dir: &Path,
        images: Arc<CheckpointStore>,
        candidate: &LoadedCheckpoint,
        parts: HostParts,
        warnings: &mut Vec<String>,
    ) -> Result<Process, Refusal> {
        let mut prepared = Vec::with_capacity(candidate.memories.len());
        let mut lazy = mode != RestoreMode::Eager;
        for m in &candidate.memories {
            let memory = if lazy {
                let source = m
                    .page_reader()
                    .map_err(|e| Refusal::Host(format!("cannot read memory {}: {e}", m.index)))?;
                match PreparedMemory::lazy(
                    m.size_bytes,
                    Box::new(source),
                    mode == RestoreMode::Lazy,
                ) {
                    Ok(p) => p,
                    Err(unavailable) => {
                        if unavailable.error.kind() == std::io::ErrorKind::InvalidData {
                            return Err(Refusal::Image(unavailable.error.to_string()));
                        }
                        warnings.push(format!(
                            "{}: restoring eagerly: no userfaultfd for memfds here ({})",
                            dir.display(),
                            unavailable.error
                        ));
                        lazy = false;
                        let file = new_memfd().map_err(|e| Refusal::Host(e.to_string()))?;
                        file.set_len(m.size_bytes)
                            .map_err(|e| Refusal::Host(e.to_string()))?;
                        fill_from(unavailable.source, &file).map_err(classify)?;
                        PreparedMemory::filled(file, m.size_bytes).map_err(classify)?
                    }
                }
            } else {
                let file = new_memfd().map_err(|e| Refusal::Host(e.to_string()))?;
                file.set_len(m.size_bytes)
                    .map_err(|e| Refusal::Host(e.to_string()))?;
                m.write_into(&file).map_err(classify)?;
                PreparedMemory::filled(file, m.size_bytes).map_err(classify)?
            };
            prepared.push(memory);
        }
        let expected = prepared.len();
        let HostParts {
            mut host,
            timers,
            wasi,
            globals,
            journal,
            devices,
            displays,
        } = parts;
        let mut granted = crate::iface::devices::Devices::load(dir)
            .map_err(|e| Refusal::Host(format!("its devices: {e}")))?;
        granted.state = devices;
        granted.displays = displays;
        host.restore_count += 1;
        host.checkpoint_id = candidate.info.id;
        // A process is named by its directory (an import or fork may have
        // given it a new name).
        host.name = crate::datadir::process_name(dir);
        let mut process = Self::instantiate(
            rt,
            loaded,
            dir.to_path_buf(),
            images,
            host,
            timers.clone(),
            wasi.clone(),
            prepared,
        )
        .map_err(|e| match e {
            InstantiateError::Image(why) => Refusal::Image(why),
            other => Refusal::Host(format!("cannot instantiate: {other}")),
        })?;
        // Instantiation may have run guest code: a start function (wit-component
        // runs a reactor's `_initialize`, which runs C constructors, and the
        // preview-1 adapter then opens the standard streams). That belongs to
        // the process's first instantiation, not to this one: whatever it did
        // to host state (handles, timers, output) is undone here, as its
        // memory writes are by `revert_to_file` and its globals below. (No
        // guest call changes `HostState`, so it needs no copy.)
        {
            let ctx = process.store.data_mut();
            ctx.timers = timers;
            ctx.wasi = wasi;
            ctx.outbox.take();
            ctx.checkpoint_requested = false;
            ctx.journal.state = journal;
            ctx.devices = granted;
        }
        if process.memories.len() != expected {
            return Err(Refusal::Image(format!(
                "it has {expected} memories, but the component creates {}",
                process.memories.len()
            )));
        }
        let (q, memories) = process.quiescent();
        memories
            .revert_to_file(&q)
            .map_err(|e| Refusal::Host(e.to_string()))?;
        // Globals back before any other call (none to put back in an older
        // image, which could only hold the stack pointer at its start, or in
        // an exited process's).
        if let Some(values) = &globals.values {
            process
                .global_access
                .write(&mut process.store, values)
                .map_err(|e| match e {
                    super::globals::WriteError::Image(why) => Refusal::Image(why),
                    super::globals::WriteError::Host(why) => {
                        Refusal::Host(format!("cannot restore the globals: {why}"))
                    }
                })?;
        }
        Ok(process)
    }
}

/// An error reading an image's pages is the image's (bad data) or the
/// host's (anything else).
fn classify(e: std::io::Error) -> Refusal {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Refusal::Image(e.to_string())
    } else {
        Refusal::Host(e.to_string())
    }
}

/// Checks a candidate against the component before anything is made from
/// it; returns its host parts.
fn check_image(
    rt: &Runtime,
    loaded: &LoadedComponent,
    candidate: &LoadedCheckpoint,
) -> Result<HostParts, Refusal> {
    check_image_contents(&loaded.facts, rt.config.max_memory_bytes as u64, candidate)
        .map_err(Refusal::Image)
}

/// The checks of `check_image`, also used by `fsck` and `ps` to say whether
/// a process is restorable without instantiating it.
pub(crate) fn check_image_contents(
    facts: &crate::inspect::ComponentFacts,
    max_memory_bytes: u64,
    candidate: &LoadedCheckpoint,
) -> Result<HostParts, String> {
    if candidate.info.id > crate::persist::MAX_CHECKPOINT_ID {
        return Err(format!(
            "its id {} is past the largest a process reaches ({})",
            candidate.info.id,
            crate::persist::MAX_CHECKPOINT_ID
        ));
    }
    let parts = HostParts::restore(&candidate.sections)?;
    if let Some(d) = parts.host.component_digest
        && d != facts.digest
    {
        return Err(format!(
            "it was made by another component: component.wasm was replaced (XXH3 {d:016x} when checkpointed, {:016x} now)",
            facts.digest
        ));
    }
    parts
        .globals
        .matches(&facts.globals, parts.host.exit_code.is_some())?;
    if let Some(values) = &parts.globals.values {
        for (j, (p, v)) in facts.global_plan.iter().zip(values).enumerate() {
            if !p.ty.wide() && *v > u64::from(u32::MAX) {
                return Err(format!(
                    "global {j} (global {} of core module {}{}) is 32 bits wide but its value {v:#x} is not",
                    p.index,
                    p.module,
                    crate::inspect::nested_in(&p.path)
                ));
            }
        }
    }
    let memories = &candidate.memories;
    for (i, m) in memories.iter().enumerate() {
        if m.index as usize != i {
            return Err("its memories are not numbered 0, 1, 2, ...".into());
        }
    }
    if let Some(limits) = &facts.memories
        && limits.len() != memories.len()
    {
        return Err(format!(
            "it has {} memories, but the component creates {}",
            memories.len(),
            limits.len()
        ));
    }
    for (i, m) in memories.iter().enumerate() {
        let size = m.size_bytes;
        if !size.is_multiple_of(WASM_PAGE) {
            return Err(format!(
                "memory {i} has {size} bytes, not a whole number of 64 KiB WebAssembly pages"
            ));
        }
        if let Some(limits) = facts.memories.as_ref().and_then(|l| l.get(i)) {
            if size < limits.minimum {
                return Err(format!(
                    "memory {i} has {size} bytes, less than the component's minimum of {}",
                    limits.minimum
                ));
            }
            if size > limits.largest() {
                return Err(format!(
                    "memory {i} has {size} bytes, more than the component allows ({})",
                    limits.largest()
                ));
            }
        } else if size > crate::inspect::WASM32_MAX_BYTES {
            return Err(format!(
                "memory {i} has {size} bytes, more than a 32-bit memory can hold"
            ));
        }
        if size > max_memory_bytes {
            return Err(format!(
                "memory {i} has {} MiB, over the limit of {} MiB (--max-memory-mib; a larger limit would restore it)",
                size >> 20,
                max_memory_bytes >> 20
            ));
        }
    }
    Ok(parts)
}
