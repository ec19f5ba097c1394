//! `phantom:devices/serial`: ports opened by logical name, at the rates the
//! grant allows.
//!
//! ```text
//!   open / set-baud ─► policy ─► device_op (gate: journaled) ─► the port
//!   read ───────────► device_op: what has arrived (journaled; replay: the record)
//!   watch ──────────► drive loop, every turn: poll_serial ─► the port ─► admit
//!                     Input::SerialData (journal: admit, input kind 6) ─►
//!                     handle-device-event(serial-data)
//!   write ──────────► exit: DeviceEffect::SerialWrite (held until the call is
//!                     durable) ─► release ─► apply_serial_write: what fits now;
//!                     the rest waits for the next turn (the release stops there)
//!   close ──────────► the number is gone at once; the port is let go by
//!                     DeviceEffect::SerialClose, after the writes before it
//! ```
//! What arrives is read only when the queue has room for it, so bytes wait
//! in the port (the kernel's buffer), never in the host: a full queue is
//! backpressure, and nothing read from a port is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use phantom_devices::serial::{PortRef, SerialFault, SerialPort, open_port};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::{Acquired, CODE_LOST, CODE_OTHER, DeviceEffect, Devices, OpenDevice, OpenKind};
use crate::ctx::ProcessCtx;
use crate::exit::Output;
use crate::gate::Input;
use crate::journal::entry::MAX_DEVICE_READ;

/// The interface's name in the linker.
const INTERFACE: &str = "phantom:devices/serial@0.1.0";
/// Most bytes one `write` takes (the effect is held, and saved in a
/// checkpoint while held, until the call is durable).
pub const MAX_WRITE: usize = 64 << 10;
/// Most bytes of writes one call may make, like the console's limit.
pub const MAX_WRITE_PER_CALL: usize = crate::exit::MAX_OUTPUT_PER_CALL;
/// Most bytes one `serial-data` event carries: what is read from a port at
/// once (a UART's buffer is a few KiB).
pub const CHUNK: usize = 4096;
/// Chunks read from one watched port per turn of the drive loop (turns are
/// at most 50 ms apart: up to 1.3 MB/s, ten times a 1 Mbaud line).
const CHUNKS_PER_TURN: usize = 16;

/// An open port, shared by the clones of its `Acquired`.
pub(crate) type SharedPort = Arc<Mutex<Box<dyn SerialPort>>>;

/// What the host keeps about serial ports for the run, not persisted.
#[derive(Default)]
pub(crate) struct SerialLive {
    /// Bytes read from a watched port that the queue then did not take (a
    /// journal write failed): delivered first at the next look, or by `read`.
    carry: BTreeMap<u32, Vec<u8>>,
    /// A rate change waiting for the line to drain: since when the bytes
    /// the driver holds last went down, and how many it held then.
    draining: BTreeMap<u32, (std::time::Instant, usize)>,
}

/// How long a rate change waits on a line whose driver sends nothing more
/// (a pty nobody reads, a stalled adapter) before the rate changes anyway.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `serial.serial-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum SerialError {
    /// No grant of that name.
    #[component(name = "not-granted")]
    NotGranted,
    /// The grant does not allow that rate.
    #[component(name = "baud-not-allowed")]
    BaudNotAllowed,
    /// No such open port.
    #[component(name = "not-open")]
    NotOpen,
    /// The process holds the port open already.
    #[component(name = "already-open")]
    AlreadyOpen,
    /// Over a write's or a call's limit.
    #[component(name = "too-long")]
    TooLong,
    /// The port is gone.
    #[component(name = "device-lost")]
    DeviceLost,
    /// The port failed.
    #[component(name = "other")]
    Other,
}

/// `events.serial-data`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq, Eq)]
#[component(record)]
pub struct WitSerialData {
    /// The port.
    pub port: u32,
    /// The bytes.
    pub data: Vec<u8>,
    /// Process time the host read them.
    #[component(name = "time-ns")]
    pub time_ns: u64,
}

fn error(code: u8) -> SerialError {
    if code == CODE_LOST {
        SerialError::DeviceLost
    } else {
        SerialError::Other
    }
}

fn fault(f: &SerialFault) -> u8 {
    match f {
        SerialFault::Lost(_) => CODE_LOST,
        SerialFault::Failed(_) => CODE_OTHER,
    }
}

impl Devices {
    /// Opens `port` at `baud`.
    pub(super) fn acquire_serial(&mut self, port: &PortRef, baud: u32) -> Result<Acquired, String> {
        match open_port(port, baud, &mut self.sim) {
            Ok(p) => Ok(Acquired::Serial(Arc::new(Mutex::new(p)))),
            Err(e) => Err(format!("{port}: {e}")),
        }
    }

    /// Performs a released serial effect; returns the part of a write the
    /// port has no room for now.
    pub(super) fn apply_serial(&mut self, effect: &DeviceEffect) -> Option<DeviceEffect> {
        match effect {
            DeviceEffect::SerialWrite { handle, bytes } => {
                // A port the guest closed is still held until its close
                // effect: the writes before it go out.
                let port = match self.acquired.get(handle) {
                    Some(a) => a.clone(),
                    None => self.acquired(*handle),
                };
                let Acquired::Serial(port) = port else {
                    // Gone: the guest gets `device-lost` on its next use.
                    return None;
                };
                let mut at = 0;
                while at < bytes.len() {
                    let wrote = port
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .write_ready(&bytes[at..]);
                    match wrote {
                        Ok(0) => break,
                        Ok(n) => at += n,
                        Err(f) => {
                            let why = match f {
                                SerialFault::Lost(why) => why,
                                SerialFault::Failed(why) => format!("a write failed: {why}"),
                            };
                            self.lose(*handle, why);
                            return None;
                        }
                    }
                }
                (at < bytes.len()).then(|| DeviceEffect::SerialWrite {
                    handle: *handle,
                    bytes: bytes[at..].to_vec(),
                })
            }
            DeviceEffect::SerialSetBaud { handle, baud } => {
                // After the bytes before it have left the line, as long as
                // the line keeps sending them.
                if let Acquired::Serial(port) = self.acquired(*handle) {
                    let pending = port
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .output_pending();
                    if pending > 0 {
                        let now = std::time::Instant::now();
                        let (since, held) = self
                            .serial
                            .draining
                            .entry(*handle)
                            .or_insert((now, pending));
                        if pending < *held {
                            (*since, *held) = (now, pending);
                        }
                        if now.duration_since(*since) < DRAIN_WAIT {
                            return Some(effect.clone());
                        }
                        let name = self.find(*handle).map_or("?", |d| d.name.as_str());
                        let warning = format!(
                            "serial port `{name}` sent nothing for {} s with {pending} bytes still to send: its rate changes to {baud} now",
                            DRAIN_WAIT.as_secs()
                        );
                        self.warn(warning);
                    }
                }
                self.serial.draining.remove(handle);
                self.set_baud_now(*handle, *baud);
                None
            }
            DeviceEffect::SerialClose { handle } => {
                // Numbers are never reused: a replayed close finds its
                // number closed too.
                self.acquired.remove(handle);
                self.serial.carry.remove(handle);
                None
            }
            DeviceEffect::GpioLevel { .. } | DeviceEffect::DisplayFrame { .. } => None,
        }
    }

    /// Sets open port `handle`'s rate now (a released `set-baud`); a port
    /// that fails is named in a warning.
    fn set_baud_now(&mut self, handle: u32, baud: u32) {
        let Acquired::Serial(port) = self.acquired(handle) else {
            return;
        };
        let set = port
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_baud(baud);
        match set {
            Ok(()) => {}
            Err(SerialFault::Lost(why)) => {
                self.lose(handle, why);
            }
            Err(SerialFault::Failed(why)) => {
                let name = self.find(handle).map_or("?", |d| d.name.as_str());
                let warning =
                    format!("serial port `{name}` did not change its rate to {baud}: {why}");
                self.warn(warning);
            }
        }
    }

    /// Takes up to `max` bytes that have arrived on open port `handle`:
    /// first any carried over, then the port's.
    fn serial_take(&mut self, handle: u32, max: usize) -> Result<Vec<u8>, u8> {
        let mut out = Vec::new();
        if let Some(mut carried) = self.serial.carry.remove(&handle) {
            if carried.len() > max {
                let rest = carried.split_off(max);
                self.serial.carry.insert(handle, rest);
            }
            out = carried;
        }
        if out.len() < max {
            let Acquired::Serial(port) = self.acquired(handle) else {
                return if out.is_empty() {
                    Err(CODE_LOST)
                } else {
                    Ok(out)
                };
            };
            let mut buf = vec![0u8; max - out.len()];
            let read = port
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .read_ready(&mut buf);
            match read {
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(f) => {
                    if let SerialFault::Lost(why) = &f {
                        // Named in a warning and kept for `phantom devices`.
                        self.lose(handle, why.clone());
                    }
                    // What was carried is the guest's: give it, the error
                    // comes with the next read.
                    if out.is_empty() {
                        return Err(fault(&f));
                    }
                }
            }
        }
        Ok(out)
    }
}

impl DeviceEffect {
    /// The guest's bytes the effect carries (a call's limit counts them).
    pub(crate) fn bytes_len(&self) -> usize {
        match self {
            DeviceEffect::SerialWrite { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }

    /// Joins `next` to this effect if both write the same port (a call's
    /// run of writes is one effect, not one per write) or both set its
    /// rate; false if not.
    pub(crate) fn absorb(&mut self, next: &DeviceEffect) -> bool {
        match (self, next) {
            (
                DeviceEffect::SerialWrite { handle, bytes },
                DeviceEffect::SerialWrite {
                    handle: h,
                    bytes: more,
                },
            ) if handle == h && bytes.len() + more.len() <= MAX_WRITE_PER_CALL => {
                bytes.extend_from_slice(more);
                true
            }
            // Rate changes in a row: the last one is the rate (a loop of
            // them holds one effect, not one each).
            (
                DeviceEffect::SerialSetBaud { handle, baud },
                DeviceEffect::SerialSetBaud {
                    handle: h,
                    baud: next,
                },
            ) if handle == h => {
                *baud = *next;
                true
            }
            _ => false,
        }
    }
}

impl ProcessCtx {
    /// The open port `handle`: its grant's name.
    fn serial_port(&self, handle: u32) -> Result<String, SerialError> {
        match self.devices.find(handle) {
            Some(OpenDevice {
                name,
                kind: OpenKind::Serial { .. },
                ..
            }) => Ok(name.clone()),
            _ => Err(SerialError::NotOpen),
        }
    }

    /// `serial.open`.
    pub fn serial_open(&mut self, name: &str) -> Result<u32, SerialError> {
        let grant = self
            .devices
            .manifest
            .serial_open(name)
            .map_err(|_| SerialError::NotGranted)?;
        let (port, baud) = (grant.port.clone(), grant.baud);
        if self
            .devices
            .holds_open(name, |k| matches!(k, OpenKind::Serial { .. }))
        {
            return Err(SerialError::AlreadyOpen);
        }
        let handle = self.devices.next_handle().ok_or(SerialError::Other)?;
        self.device_op("a serial open", |d| match d.acquire_serial(&port, baud) {
            Ok(a) => {
                d.acquired.insert(handle, a);
                Ok(Vec::new())
            }
            Err(why) => {
                d.warn(format!(
                    "serial.open(`{name}`): {why}: the guest gets `device-lost`"
                ));
                d.acquired.insert(handle, Acquired::Lost);
                Err(CODE_LOST)
            }
        })
        .map_err(error)?;
        let d = &mut self.devices;
        d.state.last_handle = handle;
        d.state.open.push(OpenDevice {
            handle,
            name: name.to_string(),
            kind: OpenKind::Serial {
                port: port.to_string(),
                baud,
                watch: false,
            },
        });
        Ok(handle)
    }

    /// `serial.set-baud`.
    pub fn serial_set_baud(&mut self, handle: u32, baud: u32) -> Result<(), SerialError> {
        let name = self.serial_port(handle)?;
        let grant = self
            .devices
            .manifest
            .serial_open(&name)
            .map_err(|_| SerialError::NotGranted)?;
        if !grant.allows_baud(baud) {
            return Err(SerialError::BaudNotAllowed);
        }
        // The port is there (recorded, as before, so replays match); the
        // rate itself changes as an effect, after the writes before it
        // have left at the old rate (a "switch to 115200" command sent at
        // 9600, then the switch).
        self.device_op("a serial rate change", |d| match d.acquired(handle) {
            Acquired::Serial(_) => Ok(Vec::new()),
            _ => Err(CODE_LOST),
        })
        .map_err(error)?;
        self.exit(Output::Device(DeviceEffect::SerialSetBaud { handle, baud }));
        if let Some(OpenDevice {
            kind: OpenKind::Serial { baud: b, .. },
            ..
        }) = self.devices.find_mut(handle)
        {
            *b = baud;
        }
        Ok(())
    }

    /// `serial.write`: an effect, released once the call is durable.
    pub fn serial_write(&mut self, handle: u32, data: Vec<u8>) -> Result<(), SerialError> {
        self.serial_port(handle)?;
        if data.len() > MAX_WRITE || self.device_bytes() + data.len() > MAX_WRITE_PER_CALL {
            return Err(SerialError::TooLong);
        }
        self.device_op("a serial write", |d| d.present(handle))
            .map_err(error)?;
        if !data.is_empty() {
            self.exit(Output::Device(DeviceEffect::SerialWrite {
                handle,
                bytes: data,
            }));
        }
        Ok(())
    }

    /// `serial.read`: what has arrived, through the gate.
    pub fn serial_read(&mut self, handle: u32, max: u32) -> Result<Vec<u8>, SerialError> {
        self.serial_port(handle)?;
        let max = (max as usize).min(MAX_DEVICE_READ);
        self.device_op("a serial read", |d| d.serial_take(handle, max))
            .map_err(error)
    }

    /// `serial.watch`: the drive loop reads a watched port every turn
    /// (`poll_serial`); no device is touched in the call.
    pub fn serial_watch(&mut self, handle: u32, on: bool) -> Result<(), SerialError> {
        self.serial_port(handle)?;
        if on && !self.takes_device_events {
            // Nowhere to deliver them.
            return Err(SerialError::Other);
        }
        if let Some(OpenDevice {
            kind: OpenKind::Serial { watch, .. },
            ..
        }) = self.devices.find_mut(handle)
        {
            *watch = on;
        }
        Ok(())
    }

    /// `serial.close`: the number is gone now; the port is let go once the
    /// writes before the close have left.
    pub fn serial_close(&mut self, handle: u32) -> bool {
        if !self
            .devices
            .forget(handle, |k| matches!(k, OpenKind::Serial { .. }))
        {
            return false;
        }
        self.exit(Output::Device(DeviceEffect::SerialClose { handle }));
        true
    }

    /// Reads every watched port that has something, while the queue has
    /// room for a chunk, and admits what it read as `Input::SerialData`
    /// (journaled before the guest sees it). A full queue leaves the bytes
    /// in the port.
    pub(crate) fn poll_serial(&mut self) {
        let watched: Vec<u32> = self
            .devices
            .state
            .open
            .iter()
            .filter(|d| matches!(d.kind, OpenKind::Serial { watch: true, .. }))
            .map(|d| d.handle)
            .collect();
        let now = self.clock.now_ns();
        for handle in watched {
            for _ in 0..CHUNKS_PER_TURN {
                let bytes = match self.devices.serial.carry.remove(&handle) {
                    Some(b) => b,
                    None => {
                        if !self.has_room(CHUNK) {
                            break;
                        }
                        match self.devices.serial_take(handle, CHUNK) {
                            Ok(b) if !b.is_empty() => b,
                            _ => break,
                        }
                    }
                };
                let input = Input::SerialData {
                    port: handle,
                    bytes,
                    time_ns: now,
                };
                if let Err(_refused) = self.admit(input.clone()) {
                    if let Input::SerialData { bytes, .. } = input {
                        self.devices.serial.carry.insert(handle, bytes);
                    }
                    break;
                }
            }
        }
    }
}

/// Adds `phantom:devices/serial` to the linker.
pub fn add_to_linker(linker: &mut Linker<ProcessCtx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    i.func_wrap(
        "open",
        |mut s: StoreContextMut<'_, ProcessCtx>, (name,): (String,)| {
            Ok((s.data_mut().serial_open(&name),))
        },
    )?;
    i.func_wrap(
        "set-baud",
        |mut s: StoreContextMut<'_, ProcessCtx>, (port, baud): (u32, u32)| {
            Ok((s.data_mut().serial_set_baud(port, baud),))
        },
    )?;
    i.func_wrap(
        "write",
        |mut s: StoreContextMut<'_, ProcessCtx>, (port, data): (u32, Vec<u8>)| {
            Ok((s.data_mut().serial_write(port, data),))
        },
    )?;
    i.func_wrap(
        "read",
        |mut s: StoreContextMut<'_, ProcessCtx>, (port, max): (u32, u32)| {
            Ok((s.data_mut().serial_read(port, max),))
        },
    )?;
    i.func_wrap(
        "watch",
        |mut s: StoreContextMut<'_, ProcessCtx>, (port, on): (u32, bool)| {
            Ok((s.data_mut().serial_watch(port, on),))
        },
    )?;
    i.func_wrap(
        "close",
        |mut s: StoreContextMut<'_, ProcessCtx>, (port,): (u32,)| {
            Ok((s.data_mut().serial_close(port),))
        },
    )?;
    Ok(())
}
