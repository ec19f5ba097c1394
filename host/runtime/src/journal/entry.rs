//! The journal's entries: what each one records, and its bytes (the
//! payload of one log frame; `log.rs` adds length, sequence number and
//! checksum around it).
//!
//! ```text
//!   byte 0: kind     then, little-endian:
//!   1 admit          time u64 | input (below)        an input joined the queue
//!   2 call           time u64 | what u8 (0 next, 1 resume)   a call began
//!   3 call-end       status u8 (0 idle, 1 busy, 2 exit) | code i32 | digest u64
//!   4 random-bytes   len u32 | bytes
//!   5 random-u64     value u64
//!   6 wall-clock     seconds u64 | nanoseconds u32
//!   7 monotonic      nanoseconds u64
//!   8 host-value     which u8 (1 restore-count, 2 checkpoint-id) | value u64
//!   9 released       call u64: every effect of calls up to this one left
//!  10 call-failed    call u64: that call trapped (or timed out): its input
//!                    is consumed, its effects and state changes are not
//!  11 call-abandoned call u64: that call never finished (the host died in
//!                    it) and entries followed without a host: a replay
//!                    skips it and leaves its input at the head of the queue
//!  12 device-read    status u8 (0 ok, else the error's code) | len u32 | bytes:
//!                    what a device operation returned (a pin's level, the
//!                    bytes of an I2C transaction's reads, what a serial
//!                    read took)
//!
//!   input: 1 timer id u32 | 2 console-line len u32, UTF-8 | 3 console-closed
//!          | 4 message from-len u16, from (UTF-8) | id u64 | len u32, data
//!          | 5 gpio-edge pin u32 | level u8 (0 low, 1 high) | time u64
//!          | 6 serial-data port u32 | len u32 (<= 64 KiB), bytes | time u64
//!          | 7 sensor-sample sensor u32 | time u64 | status u8 (0 ok, else the
//!            error's code) | if ok: count u8 (<= 16), count x (quantity u8
//!            (1 temperature, 2 relative humidity, 3 pressure), value f64 bits u64)
//! ```
//! Decoding checks every length against what is left and against the
//! runtime's bounds, so a crafted entry gives an error, never a panic.

use crate::gate::{Input, MAX_LINE_BYTES};

/// The input kind of a sensor sample (`admit` entries). Taken by the
/// sensor interface after serial's 6; renumber here (and in DESIGN.md's
/// journal table) if another input took 7 first.
const INPUT_SENSOR_SAMPLE: u8 = 7;

/// Longest sender name kept in a message.
pub const MAX_SENDER_BYTES: usize = 256;

/// What a call was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// The input at the head of the queue.
    Next,
    /// `resume` (the guest returned `busy` and the queue was empty).
    Resume,
}

/// How a call ended, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// `idle`.
    Idle,
    /// `busy`.
    Busy,
    /// `exit(code)`.
    Exit(i32),
}

/// Which host value a `host-value` entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostValue {
    /// `process.restore-count`.
    RestoreCount,
    /// `process.checkpoint-id`.
    CheckpointId,
}

/// Most bytes one device read records (an I2C transaction's reads).
pub const MAX_DEVICE_READ: usize = 64 << 10;

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An input joined the process's queue at process time `time_ns`.
    Admit {
        /// Process time.
        time_ns: u64,
        /// The input.
        input: Input,
    },
    /// A call began at process time `time_ns`.
    Call {
        /// Process time.
        time_ns: u64,
        /// What it was given.
        kind: CallKind,
    },
    /// The call ended; `digest` hashes what it was given and what it sent
    /// out (the check a replay must pass).
    CallEnd {
        /// How it ended.
        ended: Ended,
        /// xxh3 of the call's inputs, recorded values and outputs.
        digest: u64,
    },
    /// Random bytes the guest read.
    RandomBytes(Vec<u8>),
    /// A random u64 the guest read.
    RandomU64(u64),
    /// A wall-clock reading.
    WallClock {
        /// Seconds since the Unix epoch.
        seconds: u64,
        /// Nanoseconds.
        nanoseconds: u32,
    },
    /// A reading of the process clock.
    Monotonic(u64),
    /// A host value the guest read.
    HostValue(HostValue, u64),
    /// Every effect of the calls up to (and including) the call entry `call`
    /// has been released.
    Released {
        /// The call entry's sequence number.
        call: u64,
    },
    /// [`Entry::Released`], and the console log (`phantom run
    /// --console-log`) holds exactly the console output of those calls:
    /// its first `offset` bytes.
    ReleasedLogged {
        /// The call entry's sequence number.
        call: u64,
        /// The console log's length once they were written (and synced).
        offset: u64,
    },
    /// The call at entry `call` failed (trap, timeout, out of memory): a
    /// replay consumes its input without running it, so the process comes
    /// back as it was before that call (and `--retry-failed` goes on).
    CallFailed {
        /// The call entry's sequence number.
        call: u64,
    },
    /// What a device operation returned: `Ok(bytes)` or the error's code
    /// (`iface::devices`), performed live and replayed from here.
    DeviceRead(Result<Vec<u8>, u8>),
    /// The call at entry `call` never finished (the host died in it), and
    /// `phantom send` appended entries after it: a replay skips the call
    /// and leaves its input at the head of the queue, for the next call.
    CallAbandoned {
        /// The call entry's sequence number.
        call: u64,
    },
}

impl Entry {
    /// The kind's name (`phantom journal`, divergence messages).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Entry::Admit { .. } => "admit",
            Entry::Call { .. } => "call",
            Entry::CallEnd { .. } => "call-end",
            Entry::RandomBytes(_) => "random-bytes",
            Entry::RandomU64(_) => "random-u64",
            Entry::WallClock { .. } => "wall-clock",
            Entry::Monotonic(_) => "monotonic",
            Entry::HostValue(HostValue::RestoreCount, _) => "restore-count",
            Entry::HostValue(HostValue::CheckpointId, _) => "checkpoint-id",
            Entry::Released { .. } => "released",
            Entry::ReleasedLogged { .. } => "released-logged",
            Entry::CallFailed { .. } => "call-failed",
            Entry::CallAbandoned { .. } => "call-abandoned",
            Entry::DeviceRead(_) => "device-read",
        }
    }

    /// Whether the entry records a nondeterministic result read in a call.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Entry::RandomBytes(_)
                | Entry::RandomU64(_)
                | Entry::WallClock { .. }
                | Entry::Monotonic(_)
                | Entry::HostValue(..)
                | Entry::DeviceRead(_)
        )
    }

    /// The entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24);
        match self {
            Entry::Admit { time_ns, input } => {
                b.push(1);
                b.extend_from_slice(&time_ns.to_le_bytes());
                encode_input(&mut b, input);
            }
            Entry::Call { time_ns, kind } => {
                b.push(2);
                b.extend_from_slice(&time_ns.to_le_bytes());
                b.push(match kind {
                    CallKind::Next => 0,
                    CallKind::Resume => 1,
                });
            }
            Entry::CallEnd { ended, digest } => {
                b.push(3);
                let (status, code) = match ended {
                    Ended::Idle => (0u8, 0i32),
                    Ended::Busy => (1, 0),
                    Ended::Exit(c) => (2, *c),
                };
                b.push(status);
                b.extend_from_slice(&code.to_le_bytes());
                b.extend_from_slice(&digest.to_le_bytes());
            }
            Entry::RandomBytes(bytes) => {
                b.push(4);
                b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                b.extend_from_slice(bytes);
            }
            Entry::RandomU64(v) => {
                b.push(5);
                b.extend_from_slice(&v.to_le_bytes());
            }
            Entry::WallClock {
                seconds,
                nanoseconds,
            } => {
                b.push(6);
                b.extend_from_slice(&seconds.to_le_bytes());
                b.extend_from_slice(&nanoseconds.to_le_bytes());
            }
            Entry::Monotonic(v) => {
                b.push(7);
                b.extend_from_slice(&v.to_le_bytes());
            }
            Entry::HostValue(which, v) => {
                b.push(8);
                b.push(match which {
                    HostValue::RestoreCount => 1,
                    HostValue::CheckpointId => 2,
                });
                b.extend_from_slice(&v.to_le_bytes());
            }
            Entry::Released { call } => {
                b.push(9);
                b.extend_from_slice(&call.to_le_bytes());
            }
            Entry::ReleasedLogged { call, offset } => {
                b.push(13);
                b.extend_from_slice(&call.to_le_bytes());
                b.extend_from_slice(&offset.to_le_bytes());
            }
            Entry::CallFailed { call } => {
                b.push(10);
                b.extend_from_slice(&call.to_le_bytes());
            }
            Entry::CallAbandoned { call } => {
                b.push(11);
                b.extend_from_slice(&call.to_le_bytes());
            }
            Entry::DeviceRead(result) => {
                b.push(12);
                let (status, bytes): (u8, &[u8]) = match result {
                    Ok(bytes) => (0, bytes),
                    Err(code) => (*code, &[]),
                };
                b.push(status);
                b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                b.extend_from_slice(bytes);
            }
        }
        b
    }

    /// Reads an entry's bytes; the error says what is wrong.
    /// (Process times past `MAX_PROCESS_TIME_NS` are refused.)
    pub fn decode(bytes: &[u8]) -> Result<Entry, String> {
        let mut r = Reader { b: bytes, at: 0 };
        let entry = match r.u8()? {
            1 => {
                let time_ns = process_time(r.u64()?)?;
                let input = decode_input(&mut r)?;
                Entry::Admit { time_ns, input }
            }
            2 => {
                let time_ns = process_time(r.u64()?)?;
                let kind = match r.u8()? {
                    0 => CallKind::Next,
                    1 => CallKind::Resume,
                    k => return Err(format!("a call of unknown kind {k}")),
                };
                Entry::Call { time_ns, kind }
            }
            3 => {
                let status = r.u8()?;
                let code = r.u32()? as i32;
                let digest = r.u64()?;
                let ended = match (status, code) {
                    (0, 0) => Ended::Idle,
                    (1, 0) => Ended::Busy,
                    (2, c) => Ended::Exit(c),
                    (s, c) => return Err(format!("a call end with status {s} and code {c}")),
                };
                Entry::CallEnd { ended, digest }
            }
            4 => {
                let len = r.u32()? as usize;
                if len > crate::iface::wasi::MAX_READ as usize {
                    return Err(format!("{len} random bytes, more than a guest may read"));
                }
                Entry::RandomBytes(r.take(len)?.to_vec())
            }
            5 => Entry::RandomU64(r.u64()?),
            6 => {
                let seconds = r.u64()?;
                let nanoseconds = r.u32()?;
                if nanoseconds >= 1_000_000_000 {
                    return Err(format!("a wall-clock reading of {nanoseconds} nanoseconds"));
                }
                Entry::WallClock {
                    seconds,
                    nanoseconds,
                }
            }
            7 => Entry::Monotonic(r.u64()?),
            8 => {
                let which = match r.u8()? {
                    1 => HostValue::RestoreCount,
                    2 => HostValue::CheckpointId,
                    w => return Err(format!("a host value of unknown kind {w}")),
                };
                Entry::HostValue(which, r.u64()?)
            }
            9 => Entry::Released { call: r.u64()? },
            10 => Entry::CallFailed { call: r.u64()? },
            11 => Entry::CallAbandoned { call: r.u64()? },
            13 => Entry::ReleasedLogged {
                call: r.u64()?,
                offset: r.u64()?,
            },
            12 => {
                let status = r.u8()?;
                let len = r.u32()? as usize;
                if len > MAX_DEVICE_READ {
                    return Err(format!(
                        "a device read of {len} bytes, more than a guest may read"
                    ));
                }
                let bytes = r.take(len)?.to_vec();
                match status {
                    0 => Entry::DeviceRead(Ok(bytes)),
                    code if bytes.is_empty() => Entry::DeviceRead(Err(code)),
                    code => return Err(format!("a failed device read (code {code}) with bytes")),
                }
            }
            k => return Err(format!("an entry of unknown kind {k}")),
        };
        if r.at != bytes.len() {
            return Err(format!(
                "a {} entry with {} bytes left over",
                entry.kind_name(),
                bytes.len() - r.at
            ));
        }
        Ok(entry)
    }
}

fn encode_input(b: &mut Vec<u8>, input: &Input) {
    match input {
        Input::Timer(id) => {
            b.push(1);
            b.extend_from_slice(&id.to_le_bytes());
        }
        Input::ConsoleLine(line) => {
            b.push(2);
            b.extend_from_slice(&(line.len() as u32).to_le_bytes());
            b.extend_from_slice(line.as_bytes());
        }
        Input::ConsoleClosed => b.push(3),
        Input::Message { from, id, data } => {
            b.push(4);
            b.extend_from_slice(&(from.len() as u16).to_le_bytes());
            b.extend_from_slice(from.as_bytes());
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
        }
        Input::GpioEdge { pin, high, time_ns } => {
            b.push(5);
            b.extend_from_slice(&pin.to_le_bytes());
            b.push(u8::from(*high));
            b.extend_from_slice(&time_ns.to_le_bytes());
        }
        Input::SerialData {
            port,
            bytes,
            time_ns,
        } => {
            b.push(6);
            b.extend_from_slice(&port.to_le_bytes());
            b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            b.extend_from_slice(bytes);
            b.extend_from_slice(&time_ns.to_le_bytes());
        }
        Input::SensorSample {
            sensor,
            readings,
            time_ns,
        } => {
            b.push(INPUT_SENSOR_SAMPLE);
            b.extend_from_slice(&sensor.to_le_bytes());
            b.extend_from_slice(&time_ns.to_le_bytes());
            match readings {
                Ok(values) => {
                    b.push(0);
                    b.push(values.len() as u8);
                    for v in values {
                        b.push(v.quantity.code());
                        b.extend_from_slice(&v.bits.to_le_bytes());
                    }
                }
                Err(code) => b.push(*code),
            }
        }
        // Never queued, so never admitted.
        Input::Resume => b.push(0),
    }
}

fn decode_input(r: &mut Reader<'_>) -> Result<Input, String> {
    Ok(match r.u8()? {
        1 => Input::Timer(r.u32()?),
        2 => {
            let len = r.u32()? as usize;
            if len > MAX_LINE_BYTES {
                return Err(format!("a console line of {len} bytes, over the limit"));
            }
            let line = std::str::from_utf8(r.take(len)?)
                .map_err(|_| "a console line that is not UTF-8".to_string())?;
            Input::ConsoleLine(line.to_string())
        }
        3 => Input::ConsoleClosed,
        4 => {
            let len = r.u16()? as usize;
            if len > MAX_SENDER_BYTES {
                return Err(format!("a sender name of {len} bytes, over the limit"));
            }
            let from = std::str::from_utf8(r.take(len)?)
                .map_err(|_| "a sender name that is not UTF-8".to_string())?
                .to_string();
            let id = r.u64()?;
            let len = r.u32()? as usize;
            if len > MAX_LINE_BYTES {
                return Err(format!("a message of {len} bytes, over the limit"));
            }
            Input::Message {
                from,
                id,
                data: r.take(len)?.to_vec(),
            }
        }
        5 => {
            let pin = r.u32()?;
            let high = match r.u8()? {
                0 => false,
                1 => true,
                l => return Err(format!("a GPIO edge to level {l}")),
            };
            Input::GpioEdge {
                pin,
                high,
                time_ns: r.u64()?,
            }
        }
        6 => {
            let port = r.u32()?;
            let len = r.u32()? as usize;
            if len > MAX_DEVICE_READ {
                return Err(format!("serial data of {len} bytes, over the limit"));
            }
            let bytes = r.take(len)?.to_vec();
            Input::SerialData {
                port,
                bytes,
                time_ns: r.u64()?,
            }
        }
        INPUT_SENSOR_SAMPLE => {
            let sensor = r.u32()?;
            let time_ns = r.u64()?;
            let readings = match r.u8()? {
                0 => {
                    let n = usize::from(r.u8()?);
                    if n > crate::iface::devices::sensor::MAX_READINGS {
                        return Err(format!("a sensor sample of {n} readings, over the limit"));
                    }
                    let mut values = Vec::with_capacity(n);
                    for _ in 0..n {
                        let q = r.u8()?;
                        let quantity = phantom_devices::Quantity::from_code(q)
                            .ok_or_else(|| format!("a reading of unknown quantity {q}"))?;
                        values.push(crate::iface::devices::sensor::SampleValue {
                            quantity,
                            bits: r.u64()?,
                        });
                    }
                    Ok(values)
                }
                code => Err(code),
            };
            Input::SensorSample {
                sensor,
                readings,
                time_ns,
            }
        }
        k => return Err(format!("an input of unknown kind {k}")),
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                format!(
                    "it ends early: {n} bytes wanted at byte {}, {} there",
                    self.at,
                    self.b.len().saturating_sub(self.at)
                )
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let mut a = [0; 2];
        a.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(a))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

/// A process time as an entry may hold it: within the longest a process
/// runs (a clock near `u64::MAX` would make every timer due at once).
fn process_time(ns: u64) -> Result<u64, String> {
    if ns > crate::persist::MAX_PROCESS_TIME_NS {
        return Err(format!(
            "a process time of {ns} ns, past the longest a process runs ({} ns)",
            crate::persist::MAX_PROCESS_TIME_NS
        ));
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Entry> {
        vec![
            Entry::Admit {
                time_ns: 7,
                input: Input::Timer(3),
            },
            Entry::Admit {
                time_ns: 8,
                input: Input::ConsoleLine("héllo".into()),
            },
            Entry::Admit {
                time_ns: 9,
                input: Input::ConsoleClosed,
            },
            Entry::Admit {
                time_ns: 10,
                input: Input::Message {
                    from: "a".into(),
                    id: 42,
                    data: vec![0, 1, 255],
                },
            },
            Entry::Call {
                time_ns: 11,
                kind: CallKind::Next,
            },
            Entry::Call {
                time_ns: 12,
                kind: CallKind::Resume,
            },
            Entry::CallEnd {
                ended: Ended::Exit(-3),
                digest: 99,
            },
            Entry::CallEnd {
                ended: Ended::Busy,
                digest: 1,
            },
            Entry::RandomBytes(vec![1, 2, 3]),
            Entry::RandomU64(5),
            Entry::WallClock {
                seconds: 1,
                nanoseconds: 2,
            },
            Entry::Monotonic(77),
            Entry::HostValue(HostValue::RestoreCount, 4),
            Entry::HostValue(HostValue::CheckpointId, 5),
            Entry::Released { call: 12 },
            Entry::ReleasedLogged {
                call: 12,
                offset: 1 << 40,
            },
            Entry::CallFailed { call: 11 },
            Entry::CallAbandoned { call: 11 },
            Entry::DeviceRead(Ok(vec![0x60, 1])),
            Entry::DeviceRead(Ok(Vec::new())),
            Entry::DeviceRead(Err(3)),
            Entry::Admit {
                time_ns: 13,
                input: Input::GpioEdge {
                    pin: 3,
                    high: true,
                    time_ns: 12,
                },
            },
            Entry::Admit {
                time_ns: 14,
                input: Input::SerialData {
                    port: 4,
                    bytes: b"line\n\0\xff".to_vec(),
                    time_ns: 14,
                },
            },
            Entry::Admit {
                time_ns: 15,
                input: Input::SerialData {
                    port: 4,
                    bytes: Vec::new(),
                    time_ns: 15,
                },
            },
            Entry::Admit {
                time_ns: 16,
                input: Input::SensorSample {
                    sensor: 5,
                    readings: Ok(vec![
                        crate::iface::devices::sensor::SampleValue {
                            quantity: phantom_devices::Quantity::Temperature,
                            bits: 21.5f64.to_bits(),
                        },
                        crate::iface::devices::sensor::SampleValue {
                            quantity: phantom_devices::Quantity::Pressure,
                            bits: (-0.0f64).to_bits(),
                        },
                    ]),
                    time_ns: 16,
                },
            },
            Entry::Admit {
                time_ns: 17,
                input: Input::SensorSample {
                    sensor: 5,
                    readings: Ok(Vec::new()),
                    time_ns: 17,
                },
            },
            Entry::Admit {
                time_ns: 18,
                input: Input::SensorSample {
                    sensor: 5,
                    readings: Err(8),
                    time_ns: 18,
                },
            },
        ]
    }

    #[test]
    fn every_entry_round_trips() {
        for e in all() {
            assert_eq!(Entry::decode(&e.encode()).unwrap(), e, "{e:?}");
        }
    }

    #[test]
    fn every_cut_and_every_extra_byte_is_an_error() {
        for e in all() {
            let b = e.encode();
            for cut in 0..b.len() {
                assert!(Entry::decode(&b[..cut]).is_err(), "{e:?} cut at {cut}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert!(Entry::decode(&longer).is_err());
        }
        assert!(Entry::decode(&[0]).is_err());
        assert!(Entry::decode(&[77]).is_err());
        // A huge length is refused before anything is allocated.
        let mut b = vec![4];
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Entry::decode(&b).is_err());
    }
}
