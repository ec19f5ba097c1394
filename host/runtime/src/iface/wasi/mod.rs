//! WASI 0.2 for persistent processes: `wasi:cli`, `wasi:clocks`,
//! `wasi:random`, `wasi:io` and `wasi:filesystem`, over handles that survive
//! a restore.
//!
//! ```text
//!   guest (std, wasi-libc, the preview-1 adapter)
//!     │ calls with u32 ids (instrument/handles.rs rewrote own/borrow at load)
//!     ▼
//!   this module ── HandleTable (table.rs, persisted in the `wasi` section)
//!     ├─ stdout / stderr writes ─► ProcessCtx::exit(Output::Console)
//!     ├─ stdin: at end of stream (console input arrives as events)
//!     ├─ clocks, random ─► the gate (gate_monotonic_now, gate_random_*)
//!     ├─ pollables: deadlines in process time, waited within the call,
//!     │  never past the call timeout
//!     └─ filesystem: no directory is preopened, so no descriptor exists
//! ```
//! Every 0.2.x version of an interface resolves here: the linker matches
//! semver-compatible names (0.2.0 serves 0.2.6 and 0.2.12).
//!
//! Why not `wasmtime-wasi`'s bindings: they lower resources into wasmtime's
//! per-instance handle tables, which live outside linear memory and cannot
//! be restored; its streams write to host file descriptors rather than
//! through the process's exit; and its clocks read the host's clocks, not
//! the process clock through the gate. Its WIT is the WIT served here.

mod table;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, LinkerInstance, Lower, ResourceType, Val};

use crate::ctx::ProcessCtx;
use crate::instrument::handles::{drop_name, mangle};
pub use table::{HandleError, HandleTable, Resource, WitType};

/// Interfaces (without version) a persistent process may import from WASI.
pub const WASI_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// The version the host defines; every 0.2.x import resolves to it.
const VERSION: &str = "0.2.0";

/// Most bytes one `read` or random call returns.
pub(crate) const MAX_READ: u64 = 1 << 20;

/// What `check-write` allows at once.
const WRITE_BUDGET: u64 = 1 << 16;

/// WASI state of a process, the `wasi` section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WasiState {
    /// The environment (`phantom spawn --env K=V`).
    pub env: Vec<(String, String)>,
    /// The value `insecure-seed` returns, fixed for the process's life.
    pub insecure_seed: (u64, u64),
    /// The handles the guest holds.
    pub handles: HandleTable,
}

/// The guest called `wasi:cli/exit.exit`: the call ends here and the
/// process finishes with this code.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the process called wasi:cli/exit with code {0}")]
pub struct GuestExit(pub i32);

/// A pollable's wait would outlast the call's time limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "a WASI pollable waited until the call timeout ({0:?}): a process waits only within a call, so wait with phantom:os timers instead"
)]
pub struct WaitTimeout(pub Duration);

#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug)]
#[component(variant)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    #[allow(dead_code)]
    LastOperationFailed(u32),
    #[component(name = "closed")]
    Closed,
}

#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

type R<T> = wasmtime::Result<T>;
type Ctx<'a> = StoreContextMut<'a, ProcessCtx>;

fn trap(e: HandleError) -> wasmtime::Error {
    wasmtime::Error::msg(e.to_string())
}

impl ProcessCtx {
    fn handles(&mut self) -> &mut HandleTable {
        &mut self.wasi.handles
    }

    fn new_handle(&mut self, r: Resource) -> R<u32> {
        self.handles().insert(r).map_err(trap)
    }

    /// Whether pollable `id` is ready now.
    fn ready(&mut self, id: u32) -> R<bool> {
        Ok(
            match self.handles().get_as(id, WitType::Pollable).map_err(trap)? {
                Resource::Deadline { deadline_ns } => self.gate_monotonic_now() >= deadline_ns,
                _ => true,
            },
        )
    }

    /// Process time at which pollable `id` is ready.
    fn ready_at(&self, id: u32) -> R<u64> {
        Ok(
            match self
                .wasi
                .handles
                .get_as(id, WitType::Pollable)
                .map_err(trap)?
            {
                Resource::Deadline { deadline_ns } => deadline_ns,
                _ => 0,
            },
        )
    }

    /// Sleeps until the process clock reads `deadline_ns`, but not past
    /// the call's deadline (then the call fails as timed out).
    fn wait_until(&mut self, deadline_ns: u64) -> R<()> {
        let now = self.gate_monotonic_now();
        if deadline_ns <= now || self.journal.replaying && !self.journal.replay.is_empty() {
            // A replay does not wait: the clock readings after the wait
            // are recorded.
            return Ok(());
        }
        let wait = Duration::from_nanos(deadline_ns - now);
        if let Some(limit) = self.call_deadline {
            let left = limit.saturating_duration_since(Instant::now());
            if wait > left {
                std::thread::sleep(left);
                return Err(wasmtime::Error::new(WaitTimeout(self.call_timeout)));
            }
        }
        std::thread::sleep(wait);
        Ok(())
    }

    fn stream_write(&mut self, id: u32, bytes: &[u8]) -> R<Result<(), StreamError>> {
        match self
            .handles()
            .get_as(id, WitType::OutputStream)
            .map_err(trap)?
        {
            Resource::Stdout | Resource::Stderr => {
                if !bytes.is_empty() {
                    // The exit's console path, without a copy of its own.
                    self.exit_console(bytes);
                }
                Ok(Ok(()))
            }
            _ => Ok(Err(StreamError::Closed)),
        }
    }
}

fn resources(inst: &mut LinkerInstance<'_, ProcessCtx>, names: &[(&str, WitType)]) -> R<()> {
    for (name, ty) in names {
        let rt = match ty {
            WitType::InputStream => ResourceType::host::<InputStreamTag>(),
            WitType::OutputStream => ResourceType::host::<OutputStreamTag>(),
            WitType::Pollable => ResourceType::host::<PollableTag>(),
            WitType::Error => ResourceType::host::<ErrorTag>(),
            WitType::TerminalInput => ResourceType::host::<TerminalInputTag>(),
            WitType::TerminalOutput => ResourceType::host::<TerminalOutputTag>(),
            WitType::Descriptor => ResourceType::host::<DescriptorTag>(),
            WitType::DirectoryEntryStream => ResourceType::host::<DirectoryEntryStreamTag>(),
        };
        inst.resource(name, rt, |_, _| Ok(()))?;
    }
    Ok(())
}

// Resource types the instance types still declare. No handle of them ever
// reaches wasmtime (the guest holds u32 ids instead); they exist so the
// imports type-check.
struct InputStreamTag;
struct OutputStreamTag;
struct PollableTag;
struct ErrorTag;
struct TerminalInputTag;
struct TerminalOutputTag;
struct DescriptorTag;
struct DirectoryEntryStreamTag;

/// Defines the drop function of resource `ty`.
fn drop_fn(inst: &mut LinkerInstance<'_, ProcessCtx>, ty: WitType) -> R<()> {
    inst.func_wrap(
        &drop_name(ty.name()),
        move |mut s: Ctx<'_>, (id,): (u32,)| {
            s.data_mut().handles().remove(id, ty).map_err(trap)?;
            Ok(())
        },
    )
}

/// Defines methods of a resource that can never have a live handle: each
/// checks its handle, which always fails with the error wasmtime gives.
fn never_live(inst: &mut LinkerInstance<'_, ProcessCtx>, ty: WitType, methods: &[&str]) -> R<()> {
    for m in methods {
        inst.func_new(
            &mangle(m),
            move |s, _ty, params: &[Val], _results: &mut [Val]| {
                let id = match params.first() {
                    Some(Val::U32(id)) => *id,
                    _ => return Err(wasmtime::Error::msg("a WASI handle parameter is not a u32")),
                };
                s.data().wasi.handles.get_as(id, ty).map_err(trap)?;
                Err(wasmtime::Error::msg(format!(
                    "handle {id} cannot be a live {}",
                    ty.name()
                )))
            },
        )?;
    }
    Ok(())
}

/// Adds every WASI interface a persistent process may import.
pub fn add_to_linker(linker: &mut Linker<ProcessCtx>) -> R<()> {
    let v = |iface: &str| format!("{iface}@{VERSION}");

    // wasi:io/error
    {
        let mut i = linker.instance(&v("wasi:io/error"))?;
        resources(&mut i, &[("error", WitType::Error)])?;
        never_live(&mut i, WitType::Error, &["[method]error.to-debug-string"])?;
        drop_fn(&mut i, WitType::Error)?;
    }
    // wasi:io/poll
    {
        let mut i = linker.instance(&v("wasi:io/poll"))?;
        resources(&mut i, &[("pollable", WitType::Pollable)])?;
        i.func_wrap("method-pollable-ready", |mut s: Ctx<'_>, (id,): (u32,)| {
            Ok((s.data_mut().ready(id)?,))
        })?;
        i.func_wrap("method-pollable-block", |mut s: Ctx<'_>, (id,): (u32,)| {
            let ctx = s.data_mut();
            let at = ctx.ready_at(id)?;
            ctx.wait_until(at)
        })?;
        i.func_wrap("poll", |mut s: Ctx<'_>, (ids,): (Vec<u32>,)| {
            let ctx = s.data_mut();
            if ids.is_empty() {
                return Err(wasmtime::Error::msg(
                    "wasi:io/poll.poll was given no pollables",
                ));
            }
            let mut at = Vec::with_capacity(ids.len());
            for &id in &ids {
                at.push(ctx.ready_at(id)?);
            }
            let first = at.iter().copied().min().unwrap_or(0);
            ctx.wait_until(first)?;
            let now = ctx.gate_monotonic_now();
            let ready: Vec<u32> = at
                .iter()
                .enumerate()
                .filter(|(_, t)| **t <= now)
                .map(|(i, _)| i as u32)
                .collect();
            Ok((ready,))
        })?;
        drop_fn(&mut i, WitType::Pollable)?;
    }
    // wasi:io/streams
    {
        let mut i = linker.instance(&v("wasi:io/streams"))?;
        resources(
            &mut i,
            &[
                ("error", WitType::Error),
                ("pollable", WitType::Pollable),
                ("input-stream", WitType::InputStream),
                ("output-stream", WitType::OutputStream),
            ],
        )?;
        for name in [
            "method-input-stream-read",
            "method-input-stream-blocking-read",
        ] {
            i.func_wrap(name, |mut s: Ctx<'_>, (id, _len): (u32, u64)| {
                s.data_mut()
                    .handles()
                    .get_as(id, WitType::InputStream)
                    .map_err(trap)?;
                Ok((Err::<Vec<u8>, _>(StreamError::Closed),))
            })?;
        }
        for name in [
            "method-input-stream-skip",
            "method-input-stream-blocking-skip",
        ] {
            i.func_wrap(name, |mut s: Ctx<'_>, (id, _len): (u32, u64)| {
                s.data_mut()
                    .handles()
                    .get_as(id, WitType::InputStream)
                    .map_err(trap)?;
                Ok((Err::<u64, _>(StreamError::Closed),))
            })?;
        }
        for (name, ty) in [
            ("method-input-stream-subscribe", WitType::InputStream),
            ("method-output-stream-subscribe", WitType::OutputStream),
        ] {
            i.func_wrap(name, move |mut s: Ctx<'_>, (id,): (u32,)| {
                let ctx = s.data_mut();
                ctx.handles().get_as(id, ty).map_err(trap)?;
                Ok((ctx.new_handle(Resource::StreamReady { parent: id })?,))
            })?;
        }
        i.func_wrap(
            "method-output-stream-check-write",
            |mut s: Ctx<'_>, (id,): (u32,)| {
                s.data_mut()
                    .handles()
                    .get_as(id, WitType::OutputStream)
                    .map_err(trap)?;
                Ok((Ok::<u64, StreamError>(WRITE_BUDGET),))
            },
        )?;
        for name in [
            "method-output-stream-write",
            "method-output-stream-blocking-write-and-flush",
        ] {
            i.func_wrap(name, |mut s: Ctx<'_>, (id, bytes): (u32, Vec<u8>)| {
                Ok((s.data_mut().stream_write(id, &bytes)?,))
            })?;
        }
        for name in [
            "method-output-stream-flush",
            "method-output-stream-blocking-flush",
        ] {
            i.func_wrap(name, |mut s: Ctx<'_>, (id,): (u32,)| {
                Ok((s.data_mut().stream_write(id, &[])?,))
            })?;
        }
        for name in [
            "method-output-stream-write-zeroes",
            "method-output-stream-blocking-write-zeroes-and-flush",
        ] {
            i.func_wrap(name, |mut s: Ctx<'_>, (id, len): (u32, u64)| {
                let len = len.min(WRITE_BUDGET) as usize;
                Ok((s.data_mut().stream_write(id, &vec![0; len])?,))
            })?;
        }
        for name in [
            "method-output-stream-splice",
            "method-output-stream-blocking-splice",
        ] {
            i.func_wrap(name, |mut s: Ctx<'_>, (id, src, _len): (u32, u32, u64)| {
                let ctx = s.data_mut();
                ctx.handles()
                    .get_as(id, WitType::OutputStream)
                    .map_err(trap)?;
                ctx.handles()
                    .get_as(src, WitType::InputStream)
                    .map_err(trap)?;
                // The only input stream is standard input, at its end.
                Ok((Err::<u64, _>(StreamError::Closed),))
            })?;
        }
        drop_fn(&mut i, WitType::InputStream)?;
        drop_fn(&mut i, WitType::OutputStream)?;
    }
    // wasi:cli
    {
        let mut i = linker.instance(&v("wasi:cli/environment"))?;
        i.func_wrap("get-environment", |s: Ctx<'_>, (): ()| {
            Ok((s.data().wasi.env.clone(),))
        })?;
        i.func_wrap("get-arguments", |s: Ctx<'_>, (): ()| {
            let state = &s.data().state;
            let mut args = vec![state.name.clone()];
            args.extend(state.args.iter().cloned());
            Ok((args,))
        })?;
        i.func_wrap("initial-cwd", |_s: Ctx<'_>, (): ()| Ok((None::<String>,)))?;
    }
    {
        let mut i = linker.instance(&v("wasi:cli/exit"))?;
        i.func_wrap(
            "exit",
            |_s: Ctx<'_>, (status,): (Result<(), ()>,)| -> R<()> {
                Err(wasmtime::Error::new(GuestExit(if status.is_ok() {
                    0
                } else {
                    1
                })))
            },
        )?;
        i.func_wrap("exit-with-code", |_s: Ctx<'_>, (code,): (u8,)| -> R<()> {
            Err(wasmtime::Error::new(GuestExit(code as i32)))
        })?;
    }
    for (iface, func, resource) in [
        ("wasi:cli/stdin", "get-stdin", Resource::Stdin),
        ("wasi:cli/stdout", "get-stdout", Resource::Stdout),
        ("wasi:cli/stderr", "get-stderr", Resource::Stderr),
    ] {
        let mut i = linker.instance(&v(iface))?;
        resources(&mut i, &[(resource.wit_type().name(), resource.wit_type())])?;
        i.func_wrap(func, move |mut s: Ctx<'_>, (): ()| {
            Ok((s.data_mut().new_handle(resource)?,))
        })?;
    }
    for (iface, ty) in [
        ("wasi:cli/terminal-input", WitType::TerminalInput),
        ("wasi:cli/terminal-output", WitType::TerminalOutput),
    ] {
        let mut i = linker.instance(&v(iface))?;
        resources(&mut i, &[(ty.name(), ty)])?;
        drop_fn(&mut i, ty)?;
    }
    for (iface, func, ty) in [
        (
            "wasi:cli/terminal-stdin",
            "get-terminal-stdin",
            WitType::TerminalInput,
        ),
        (
            "wasi:cli/terminal-stdout",
            "get-terminal-stdout",
            WitType::TerminalOutput,
        ),
        (
            "wasi:cli/terminal-stderr",
            "get-terminal-stderr",
            WitType::TerminalOutput,
        ),
    ] {
        let mut i = linker.instance(&v(iface))?;
        resources(&mut i, &[(ty.name(), ty)])?;
        // The process has no terminal: output leaves through its exit.
        i.func_wrap(func, |_s: Ctx<'_>, (): ()| Ok((None::<u32>,)))?;
    }
    // wasi:clocks
    {
        let mut i = linker.instance(&v("wasi:clocks/monotonic-clock"))?;
        resources(&mut i, &[("pollable", WitType::Pollable)])?;
        i.func_wrap("now", |mut s: Ctx<'_>, (): ()| {
            Ok((s.data_mut().gate_monotonic_now(),))
        })?;
        i.func_wrap("resolution", |_s: Ctx<'_>, (): ()| Ok((1u64,)))?;
        i.func_wrap("subscribe-instant", |mut s: Ctx<'_>, (when,): (u64,)| {
            Ok((s
                .data_mut()
                .new_handle(Resource::Deadline { deadline_ns: when })?,))
        })?;
        i.func_wrap("subscribe-duration", |mut s: Ctx<'_>, (d,): (u64,)| {
            let ctx = s.data_mut();
            let deadline_ns = ctx.gate_monotonic_now().saturating_add(d);
            Ok((ctx.new_handle(Resource::Deadline { deadline_ns })?,))
        })?;
    }
    {
        let mut i = linker.instance(&v("wasi:clocks/wall-clock"))?;
        i.func_wrap("now", |mut s: Ctx<'_>, (): ()| {
            let (seconds, nanoseconds) = s.data_mut().gate_wall_now();
            Ok((Datetime {
                seconds,
                nanoseconds,
            },))
        })?;
        i.func_wrap("resolution", |_s: Ctx<'_>, (): ()| {
            Ok((Datetime {
                seconds: 0,
                nanoseconds: 1,
            },))
        })?;
    }
    // wasi:random
    for (iface, bytes_fn, u64_fn) in [
        ("wasi:random/random", "get-random-bytes", "get-random-u64"),
        (
            "wasi:random/insecure",
            "get-insecure-random-bytes",
            "get-insecure-random-u64",
        ),
    ] {
        let mut i = linker.instance(&v(iface))?;
        i.func_wrap(bytes_fn, |mut s: Ctx<'_>, (len,): (u64,)| {
            if len > MAX_READ {
                return Err(wasmtime::Error::msg(format!(
                    "a guest asked for {len} random bytes at once, more than {MAX_READ}"
                )));
            }
            Ok((s.data_mut().gate_random_bytes(len as usize)?,))
        })?;
        i.func_wrap(u64_fn, |mut s: Ctx<'_>, (): ()| {
            Ok((s.data_mut().gate_random_u64()?,))
        })?;
    }
    {
        let mut i = linker.instance(&v("wasi:random/insecure-seed"))?;
        i.func_wrap("insecure-seed", |s: Ctx<'_>, (): ()| {
            Ok((s.data().wasi.insecure_seed,))
        })?;
    }
    // wasi:filesystem: nothing is preopened, so no descriptor exists.
    {
        let mut i = linker.instance(&v("wasi:filesystem/preopens"))?;
        resources(&mut i, &[("descriptor", WitType::Descriptor)])?;
        i.func_wrap("get-directories", |_s: Ctx<'_>, (): ()| {
            Ok((Vec::<(u32, String)>::new(),))
        })?;
    }
    {
        let mut i = linker.instance(&v("wasi:filesystem/types"))?;
        resources(
            &mut i,
            &[
                ("descriptor", WitType::Descriptor),
                ("directory-entry-stream", WitType::DirectoryEntryStream),
                ("error", WitType::Error),
                ("input-stream", WitType::InputStream),
                ("output-stream", WitType::OutputStream),
            ],
        )?;
        never_live(&mut i, WitType::Descriptor, DESCRIPTOR_METHODS)?;
        never_live(
            &mut i,
            WitType::DirectoryEntryStream,
            &["[method]directory-entry-stream.read-directory-entry"],
        )?;
        // Takes a `wasi:io/error` handle, of which none exists either.
        i.func_new(
            "filesystem-error-code",
            |s, _ty, params: &[Val], _r: &mut [Val]| {
                let id = match params.first() {
                    Some(Val::U32(id)) => *id,
                    _ => return Err(wasmtime::Error::msg("a WASI handle parameter is not a u32")),
                };
                s.data()
                    .wasi
                    .handles
                    .get_as(id, WitType::Error)
                    .map_err(trap)?;
                Err(wasmtime::Error::msg(format!(
                    "handle {id} cannot be a live error"
                )))
            },
        )?;
        drop_fn(&mut i, WitType::Descriptor)?;
        drop_fn(&mut i, WitType::DirectoryEntryStream)?;
    }
    Ok(())
}

/// `wasi:filesystem/types.descriptor`'s methods in 0.2.x.
const DESCRIPTOR_METHODS: &[&str] = &[
    "[method]descriptor.read-via-stream",
    "[method]descriptor.write-via-stream",
    "[method]descriptor.append-via-stream",
    "[method]descriptor.advise",
    "[method]descriptor.sync-data",
    "[method]descriptor.get-flags",
    "[method]descriptor.get-type",
    "[method]descriptor.set-size",
    "[method]descriptor.set-times",
    "[method]descriptor.read",
    "[method]descriptor.write",
    "[method]descriptor.read-directory",
    "[method]descriptor.sync",
    "[method]descriptor.create-directory-at",
    "[method]descriptor.stat",
    "[method]descriptor.stat-at",
    "[method]descriptor.set-times-at",
    "[method]descriptor.link-at",
    "[method]descriptor.open-at",
    "[method]descriptor.readlink-at",
    "[method]descriptor.remove-directory-at",
    "[method]descriptor.rename-at",
    "[method]descriptor.symlink-at",
    "[method]descriptor.unlink-file-at",
    "[method]descriptor.is-same-object",
    "[method]descriptor.metadata-hash",
    "[method]descriptor.metadata-hash-at",
];
