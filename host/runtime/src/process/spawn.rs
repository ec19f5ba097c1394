//! Creating a process: instantiate with fresh memories, run `init`, write
//! the first (full) checkpoint, and only then make the directory visible.
//!
//! ```text
//!   <data>/.NAME.spawning-PID/  component.wasm, process.json, ckpt-1 (full, fsynced)
//!        │ rename (atomic)            a crash before it leaves only the
//!        ▼                            hidden directory, which is cleaned up
//!   <data>/NAME/
//! ```

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use phantom_snapshots::CheckpointStore;

use super::{Process, ProcessMeta, valid_name};
use crate::bindings::{GuestFile, Status};
use crate::component::{LoadedComponent, cache_dir};
use crate::error::{CheckpointError, SpawnError};
use crate::exit::Output;
use crate::iface::wasi::{GuestExit, WasiState};
use crate::persist::{HostState, TimerTable};
use crate::runtime::Runtime;

/// What to spawn besides the component.
#[derive(Clone, Debug, Default)]
pub struct SpawnRequest {
    /// The process name (a directory of the data directory).
    pub name: String,
    /// Arguments for `init`.
    pub args: Vec<String>,
    /// Files for `init`, by name.
    pub files: Vec<(String, Vec<u8>)>,
    /// The WASI environment (`--env K=V`).
    pub env: Vec<(String, String)>,
    /// The device manifest (`--devices FILE`): its TOML text, stored as
    /// `devices.toml` in the process directory.
    pub devices: Option<String>,
    /// What drives the simulated devices (`--scenario FILE`): its TOML
    /// text, stored as `scenario.toml`.
    pub scenario: Option<String>,
}

/// The name of the stored device manifest in a process directory.
pub const DEVICES_FILE: &str = "devices.toml";

/// Checks a device manifest against the device interfaces the component
/// imports: each must have at least one grant.
fn check_device_grants(
    name: &str,
    bytes: &[u8],
    manifest: Option<&str>,
) -> Result<phantom_devices::DeviceManifest, SpawnError> {
    let manifest = match manifest {
        Some(text) => phantom_devices::DeviceManifest::parse(text)
            .map_err(|e| e.to_string())
            .and_then(|m| m.check_new().map(|()| m))
            .map_err(|message| SpawnError::Devices {
                name: name.to_string(),
                message,
            })?,
        None => phantom_devices::DeviceManifest::default(),
    };
    let granted = manifest.granted_interfaces();
    let ungranted: Vec<String> = crate::inspect::device_imports(bytes)
        .into_iter()
        .filter(|import| {
            let iface = import
                .trim_start_matches(crate::inspect::DEVICES_PACKAGE)
                .split('@')
                .next()
                .unwrap_or_default();
            // `events` only declares types.
            iface != "events" && !granted.contains(&iface)
        })
        .collect();
    // A component cut short (or otherwise not whole) may still show its
    // imports: the load that follows says what is wrong with it, which
    // is the error that helps.
    let whole = wasmparser::Parser::new(0)
        .parse_all(bytes)
        .all(|payload| payload.is_ok());
    if !ungranted.is_empty() && whole {
        return Err(SpawnError::Devices {
            name: name.to_string(),
            message: format!(
                "the component imports {} but its device manifest grants no such device (give one with `--devices FILE`, e.g. `gpio.relay = {{ pin = \"sim:0/17\", modes = [\"output\"] }}`)",
                ungranted
                    .iter()
                    .map(|i| format!("`{i}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(manifest)
}

/// The hidden directory a spawn by process `pid` builds `name` in.
pub fn spawning_dir(data: &Path, name: &str, pid: u32) -> std::path::PathBuf {
    data.join(format!(".{name}.spawning-{pid}"))
}

pub(crate) fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Process {
    /// Creates a persistent process in `data/<name>` (`data` must exist):
    /// runs `init`, writes the first (full) checkpoint, and only then makes
    /// the directory visible. Returns the process and what `init` sent out.
    pub fn spawn(
        rt: &Runtime,
        component_bytes: &[u8],
        data: &Path,
        request: SpawnRequest,
    ) -> Result<(Process, Vec<Output>), SpawnError> {
        let SpawnRequest {
            name,
            args,
            files,
            env,
            devices,
            scenario,
        } = request;
        if !valid_name(&name) {
            return Err(SpawnError::InvalidName(name));
        }
        let manifest = check_device_grants(&name, component_bytes, devices.as_deref())?;
        let scenario_parsed = match scenario.as_deref() {
            Some(text) => phantom_devices::scenario::Scenario::parse(text)
                .and_then(|s| s.check().map(|()| s))
                .map_err(|message| SpawnError::Devices {
                    name: name.clone(),
                    message,
                })?,
            None => Default::default(),
        };
        // A scripted pin no grant names would never change anything.
        let sim_pins: std::collections::BTreeSet<String> = manifest
            .gpio
            .values()
            .filter(|g| g.pin.backend == phantom_devices::Backend::Sim)
            .map(|g| format!("{}/{}", g.pin.chip, g.pin.line))
            .collect();
        if let Some(pin) = scenario_parsed
            .pins()
            .into_iter()
            .find(|p| !sim_pins.contains(*p))
        {
            return Err(SpawnError::Devices {
                name: name.clone(),
                message: format!(
                    "the scenario drives pin `sim:{pin}`, which no gpio grant of the device manifest names (it would never reach the process)"
                ),
            });
        }
        let mut granted = crate::iface::devices::Devices::new(manifest, scenario_parsed);
        let dir = data.join(&name);
        if dir.exists() {
            return Err(SpawnError::Exists {
                name,
                data: data.to_path_buf(),
            });
        }
        let loaded = rt.load_component(component_bytes, Some(&cache_dir(data)))?;
        let tmp = spawning_dir(data, &name, std::process::id());
        let _ = fs::remove_dir_all(&tmp);
        // Simulated devices keep their files (a framebuffer's frame) in the
        // process directory: the hidden one until it is moved into place.
        granted.set_dir(&tmp);
        let result = Self::spawn_in(
            rt,
            &loaded,
            component_bytes,
            &tmp,
            &dir,
            &name,
            args,
            files,
            env,
            [
                (DEVICES_FILE, devices.as_deref()),
                (crate::iface::devices::SCENARIO_FILE, scenario.as_deref()),
            ],
            granted,
        );
        let (mut process, output) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let io = |what: String| move |source| SpawnError::Io { what, source };
        if let Err(e) = crate::datadir::move_into_place(&tmp, &dir) {
            let _ = fs::remove_dir_all(&tmp);
            // Another spawn of the same name won the race.
            if dir.exists() {
                return Err(SpawnError::Exists {
                    name,
                    data: data.to_path_buf(),
                });
            }
            return Err(io(format!(
                "cannot move the new process into {}",
                dir.display()
            ))(e));
        }
        fs::File::open(data)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("cannot sync {}", data.display())))?;
        process.dir = dir.clone();
        process.store.data_mut().devices.set_dir(&dir);
        process.images =
            Arc::new(CheckpointStore::open(&dir).map_err(|e| {
                io(format!("cannot open {}", dir.display()))(std::io::Error::other(e))
            })?);
        if let Some(id) = process.last_committed.as_ref().map(|c| c.id) {
            process.positions.insert(id, 0);
        }
        process
            .open_journal(rt, &mut Vec::new())
            .map_err(|f| SpawnError::Io {
                what: format!("cannot start the journal of '{name}'"),
                source: std::io::Error::other(f.message),
            })?;
        Ok((process, output))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one spawn, used once"
    )]
    fn spawn_in(
        rt: &Runtime,
        loaded: &LoadedComponent,
        component_bytes: &[u8],
        tmp: &Path,
        dir: &Path,
        name: &str,
        args: Vec<String>,
        files: Vec<(String, Vec<u8>)>,
        env: Vec<(String, String)>,
        stored: [(&str, Option<&str>); 2],
        devices: crate::iface::devices::Devices,
    ) -> Result<(Process, Vec<Output>), SpawnError> {
        let io = |what: String| move |source| SpawnError::Io { what, source };
        for (file, text) in stored {
            if let Some(text) = text {
                fs::create_dir_all(tmp)
                    .and_then(|()| fs::write(tmp.join(file), text))
                    .map_err(io(format!("cannot write {}/{file}", tmp.display())))?;
            }
        }
        let images = CheckpointStore::create(tmp).map_err(|e| {
            io(format!("cannot create {}", tmp.display()))(std::io::Error::other(e))
        })?;
        fs::write(tmp.join("component.wasm"), component_bytes)
            .map_err(io(format!("cannot write {}/component.wasm", tmp.display())))?;
        let meta = ProcessMeta {
            name: name.to_string(),
            args: args.clone(),
            files: files.iter().map(|(n, _)| n.clone()).collect(),
            spawned_unix: unix_ns() / 1_000_000_000,
            component_bytes: component_bytes.len() as u64,
        };
        let meta_json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        fs::write(tmp.join("process.json"), meta_json)
            .map_err(io(format!("cannot write {}/process.json", tmp.display())))?;
        let state = HostState {
            name: name.to_string(),
            args: args.clone(),
            component_digest: Some(loaded.facts.digest),
            // Message ids go on from the time of the spawn (in ns), above
            // every id an earlier process of this name could have used, so
            // receivers that remember that one take this one's messages.
            next_message_id: unix_ns(),
            ..Default::default()
        };
        let seed =
            crate::gate::host_random_u64().and_then(|a| Ok((a, crate::gate::host_random_u64()?)));
        let wasi = WasiState {
            env,
            insecure_seed: seed.map_err(io("cannot read the host's random source".into()))?,
            ..Default::default()
        };
        let mut process = Self::instantiate(
            rt,
            loaded,
            dir.to_path_buf(),
            Arc::new(images),
            state,
            TimerTable::default(),
            wasi,
            Vec::new(),
        )
        .map_err(|e| SpawnError::Instantiate {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        process.store.data_mut().devices = devices;
        let guest_files: Vec<GuestFile> = files
            .into_iter()
            .map(|(name, data)| GuestFile { name, data })
            .collect();
        process.begin_call(rt);
        let result = process
            .bindings
            .call_init(&mut process.store, &args, &guest_files);
        let output = process.store.data_mut().outbox.take();
        let status = match result {
            Ok(Ok(status)) => status,
            Err(e) if e.downcast_ref::<GuestExit>().is_some() => {
                Status::Exit(e.downcast_ref::<GuestExit>().map_or(1, |x| x.0))
            }
            Ok(Err(mut message)) => {
                // What it printed tells why, as for a trap.
                let text = String::from_utf8_lossy(&crate::exit::console_text(&output))
                    .trim_end()
                    .to_string();
                if !text.is_empty() {
                    message.push_str("\nits output in init:\n");
                    message.push_str(&text);
                }
                return Err(SpawnError::InitFailed {
                    name: name.to_string(),
                    message,
                });
            }
            Err(trap) => {
                return Err(SpawnError::InitTrapped {
                    name: name.to_string(),
                    failure: process.trap_failure(rt, &trap, &output),
                });
            }
        };
        process.apply_status(status);
        // The first checkpoint is a full image, written before the process
        // becomes visible.
        let checkpoint = process
            .capture(true)
            .map_err(|source| SpawnError::Checkpoint {
                name: name.to_string(),
                source,
            })?;
        let info = process
            .images
            .write(&checkpoint.1)
            .map_err(|e| SpawnError::Checkpoint {
                name: name.to_string(),
                source: CheckpointError::from(e),
            })?;
        process.last_committed = Some(info);
        // `init`'s pin levels are durable with the first checkpoint.
        for o in &output {
            if let Output::Device(effect) = o {
                process.apply_device_now(effect);
            }
        }
        Ok((process, output))
    }

    pub(super) fn apply_status(&mut self, status: Status) {
        let ctx = self.store.data_mut();
        match status {
            Status::Idle => ctx.state.busy = false,
            Status::Busy => ctx.state.busy = true,
            Status::Exit(code) => {
                ctx.state.busy = false;
                ctx.state.exit_code = Some(code);
                ctx.timers.clear();
                // What was queued will never be handled: the drive loop
                // reports the lines as not delivered.
                let lines = ctx
                    .state
                    .pending
                    .iter()
                    .filter(|i| matches!(i, crate::gate::Input::ConsoleLine(_)))
                    .count();
                ctx.undelivered_lines += lines as u64;
                ctx.state.pending.clear();
                ctx.pending_bytes = 0;
            }
        }
    }
}
