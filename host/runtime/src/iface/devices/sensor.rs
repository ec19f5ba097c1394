//! `phantom:devices/sensor`: typed readings (quantity, value in its unit,
//! process time) from a sensor opened by logical name, read on demand or
//! sampled by the host at a rate the grant allows.
//!
//! ```text
//!   open ─────► policy ─► device_op (gate) ─► the chip checked, calibration read
//!   info ─────► the grant and the state: no device (the same in a replay)
//!   read ─────► device_op: measure ─► journal: the readings (replay: the record)
//!   set-rate ─► policy ─► state: rate, next sample = call time + period
//!   drive loop, every turn (it wakes for the next sample): poll_sensors ─►
//!        due and the queue has room ─► measure ─► admit Input::SensorSample
//!        (journal: admit, input kind 7) ─► handle-device-event(sample-ready)
//!   admit (live or replayed) ─► note_admitted: the schedule moves on one
//!        period (past now: from now, so no burst); a failed sample stops it
//! ```
//! The schedule is in process time and lives in the `devices` section, and
//! it moves only when a sample is admitted, which a replay repeats: after a
//! restore sampling goes on where the journal ends. Process time does not
//! run while no host does, so a restore delivers no burst of the samples
//! missed meanwhile: the first sample after it is at most one period late.

use std::sync::{Arc, Mutex};

use phantom_devices::sensor::{Quantity, Reading, SensorFault, SensorGrant, SensorPort, SensorRef};
use serde::{Deserialize, Serialize};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::{Acquired, CODE_LOST, CODE_OTHER, Devices, OpenDevice, OpenKind};
use crate::ctx::ProcessCtx;
use crate::gate::Input;

/// The interface's name in the linker.
const INTERFACE: &str = "phantom:devices/sensor@0.1.0";
/// Most samples of one sensor waiting in the process's queue: a guest that
/// does not keep up gets its samples late (the next is taken when one has
/// been handled), not a queue full of stale ones; none admitted is dropped.
pub const MAX_QUEUED_SAMPLES: usize = 16;
/// Most readings one sample or read holds (the journal's bound).
pub const MAX_READINGS: usize = 16;
/// Bytes of one reading in a `device-read` entry: quantity u8, value
/// (f64 bits) u64, time u64.
const READING_BYTES: usize = 17;

/// An open sensor, shared by the clones of its `Acquired`.
pub(crate) type SharedSensor = Arc<Mutex<Box<dyn SensorPort>>>;

/// One value of a sample, as queued and journaled (the value's bits, so
/// an input stays `Eq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleValue {
    /// What it measures.
    pub quantity: Quantity,
    /// `f64::to_bits` of the value, in the quantity's unit.
    pub bits: u64,
}

impl From<Reading> for SampleValue {
    fn from(r: Reading) -> Self {
        SampleValue {
            quantity: r.quantity,
            bits: r.value.to_bits(),
        }
    }
}

/// `sensor.quantity`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum WitQuantity {
    /// °C.
    #[component(name = "temperature")]
    Temperature,
    /// %.
    #[component(name = "relative-humidity")]
    RelativeHumidity,
    /// Pa.
    #[component(name = "pressure")]
    Pressure,
}

/// `sensor.unit`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum WitUnit {
    /// °C.
    #[component(name = "degree-celsius")]
    DegreeCelsius,
    /// %.
    #[component(name = "percent")]
    Percent,
    /// Pa.
    #[component(name = "pascal")]
    Pascal,
}

/// `sensor.measure`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(record)]
pub struct WitMeasure {
    /// The quantity.
    pub quantity: WitQuantity,
    /// Its unit.
    pub unit: WitUnit,
}

/// `sensor.sensor-info`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq, Eq)]
#[component(record)]
pub struct WitSensorInfo {
    /// The chip.
    pub model: String,
    /// What it measures.
    pub measures: Vec<WitMeasure>,
    /// The rate set.
    #[component(name = "rate-millihertz")]
    pub rate_millihertz: u32,
    /// The grant's limit.
    #[component(name = "max-rate-millihertz")]
    pub max_rate_millihertz: u32,
}

/// `sensor.reading`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq)]
#[component(record)]
pub struct WitReading {
    /// The quantity.
    pub quantity: WitQuantity,
    /// Its value.
    pub value: f64,
    /// When.
    #[component(name = "time-ns")]
    pub time_ns: u64,
}

/// `sensor.sensor-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum SensorError {
    /// No grant of that name.
    #[component(name = "not-granted")]
    NotGranted,
    /// Above the grant's rate.
    #[component(name = "rate-not-allowed")]
    RateNotAllowed,
    /// No such open sensor.
    #[component(name = "not-open")]
    NotOpen,
    /// The sensor is gone.
    #[component(name = "device-lost")]
    DeviceLost,
    /// The sensor failed, or no `handle-device-event`.
    #[component(name = "other")]
    Other,
}

/// `events.sensor-sample`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq)]
#[component(record)]
pub struct WitSensorSample {
    /// The sensor.
    pub sensor: u32,
    /// Its readings, or why there are none.
    pub readings: Result<Vec<WitReading>, SensorError>,
    /// When.
    #[component(name = "time-ns")]
    pub time_ns: u64,
}

fn wit_quantity(q: Quantity) -> WitQuantity {
    match q {
        Quantity::Temperature => WitQuantity::Temperature,
        Quantity::RelativeHumidity => WitQuantity::RelativeHumidity,
        Quantity::Pressure => WitQuantity::Pressure,
    }
}

fn wit_unit(q: Quantity) -> WitUnit {
    match q {
        Quantity::Temperature => WitUnit::DegreeCelsius,
        Quantity::RelativeHumidity => WitUnit::Percent,
        Quantity::Pressure => WitUnit::Pascal,
    }
}

fn fault(f: &SensorFault) -> u8 {
    match f {
        SensorFault::Lost(_) => CODE_LOST,
        SensorFault::Failed(_) => CODE_OTHER,
    }
}

fn error(code: u8) -> SensorError {
    if code == CODE_LOST {
        SensorError::DeviceLost
    } else {
        SensorError::Other
    }
}

/// Nanoseconds between samples at `millihertz` (> 0).
fn period_ns(millihertz: u32) -> u64 {
    1_000_000_000_000 / u64::from(millihertz.max(1))
}

/// The WIT value of a queued sample.
pub(crate) fn wit_sample(
    sensor: u32,
    readings: &Result<Vec<SampleValue>, u8>,
    time_ns: u64,
) -> WitSensorSample {
    WitSensorSample {
        sensor,
        readings: match readings {
            Ok(v) => Ok(v
                .iter()
                .map(|r| WitReading {
                    quantity: wit_quantity(r.quantity),
                    value: f64::from_bits(r.bits),
                    time_ns,
                })
                .collect()),
            Err(code) => Err(error(*code)),
        },
        time_ns,
    }
}

impl Devices {
    /// Opens the sensor `device` at `address` (checks the chip, reads its
    /// calibration).
    pub(super) fn acquire_sensor(
        &mut self,
        device: &SensorRef,
        address: u8,
    ) -> Result<Acquired, u8> {
        let grant = SensorGrant {
            device: device.clone(),
            address,
            max_rate_mhz: 0,
        };
        phantom_devices::sensor::open_sensor(&grant, &mut self.sim)
            .map(|p| Acquired::Sensor(Arc::new(Mutex::new(p))))
            .map_err(|f| fault(&f))
    }

    /// Measures open sensor `handle` now.
    fn sensor_measure(&mut self, handle: u32) -> Result<Vec<Reading>, u8> {
        let Acquired::Sensor(s) = self.acquired(handle) else {
            return Err(CODE_LOST);
        };
        let r = s.lock().unwrap_or_else(|e| e.into_inner()).read();
        r.map_err(|f| {
            if matches!(f, SensorFault::Lost(_)) {
                self.acquired.insert(handle, Acquired::Lost);
            }
            fault(&f)
        })
    }

    /// The process time of the next sample of any sampled sensor.
    pub(crate) fn next_sample_ns(&self) -> Option<u64> {
        self.state
            .open
            .iter()
            .filter_map(|d| match d.kind {
                OpenKind::Sensor {
                    rate_mhz, next_ns, ..
                } if rate_mhz > 0 => Some(next_ns),
                _ => None,
            })
            .min()
    }

    /// An input joined the queue (live or in a replay): a sample moves its
    /// sensor's schedule on one period, or to one period after the sample
    /// if it fell behind (no burst); a failed one stops the sampling.
    pub(crate) fn note_admitted(&mut self, input: &Input) {
        let Input::SensorSample {
            sensor,
            readings,
            time_ns,
        } = input
        else {
            return;
        };
        if let Some(OpenDevice {
            kind: OpenKind::Sensor {
                rate_mhz, next_ns, ..
            },
            ..
        }) = self.find_mut(*sensor)
        {
            if *rate_mhz == 0 {
                return;
            }
            if readings.is_err() {
                *rate_mhz = 0;
                return;
            }
            let period = period_ns(*rate_mhz);
            *next_ns = next_ns.saturating_add(period);
            if *next_ns <= *time_ns {
                *next_ns = time_ns.saturating_add(period);
            }
        }
    }
}

impl ProcessCtx {
    /// The open sensor `handle`: its grant's name, rate and sensor.
    fn sensor_device(&self, handle: u32) -> Result<(String, u32, SensorRef), SensorError> {
        match self.devices.find(handle) {
            Some(OpenDevice {
                name,
                kind: OpenKind::Sensor {
                    device, rate_mhz, ..
                },
                ..
            }) => Ok((
                name.clone(),
                *rate_mhz,
                device.parse().map_err(|_| SensorError::DeviceLost)?,
            )),
            _ => Err(SensorError::NotOpen),
        }
    }

    /// `sensor.open`.
    pub fn sensor_open(&mut self, name: &str) -> Result<u32, SensorError> {
        let grant = self
            .devices
            .manifest
            .sensor_open(name)
            .map_err(|_| SensorError::NotGranted)?;
        let (device, address) = (grant.device.clone(), grant.address);
        let handle = self.devices.next_handle().ok_or(SensorError::Other)?;
        self.device_op("a sensor open", |d| {
            let a = d.acquire_sensor(&device, address)?;
            d.acquired.insert(handle, a);
            Ok(Vec::new())
        })
        .map_err(error)?;
        let d = &mut self.devices;
        d.state.last_handle = handle;
        d.state.open.push(OpenDevice {
            handle,
            name: name.to_string(),
            kind: OpenKind::Sensor {
                device: device.to_string(),
                address,
                rate_mhz: 0,
                next_ns: 0,
            },
        });
        Ok(handle)
    }

    /// `sensor.info`: from the grant and the state, no device.
    pub fn sensor_info(&self, handle: u32) -> Result<WitSensorInfo, SensorError> {
        let (name, rate, device) = self.sensor_device(handle)?;
        let max = self
            .devices
            .manifest
            .sensor_open(&name)
            .map_or(0, |g| g.max_rate_mhz);
        Ok(WitSensorInfo {
            model: device.model().to_string(),
            measures: device
                .quantities()
                .iter()
                .map(|&q| WitMeasure {
                    quantity: wit_quantity(q),
                    unit: wit_unit(q),
                })
                .collect(),
            rate_millihertz: rate,
            max_rate_millihertz: max,
        })
    }

    /// `sensor.read`: one measurement, through the gate.
    pub fn sensor_read(&mut self, handle: u32) -> Result<Vec<WitReading>, SensorError> {
        self.sensor_device(handle)?;
        let now = self.clock.now_ns();
        let bytes = self
            .device_op("a sensor read", |d| {
                let readings = d.sensor_measure(handle)?;
                let mut b = Vec::with_capacity(readings.len() * READING_BYTES);
                for r in readings.iter().take(MAX_READINGS) {
                    b.push(r.quantity.code());
                    b.extend_from_slice(&r.value.to_bits().to_le_bytes());
                    b.extend_from_slice(&now.to_le_bytes());
                }
                Ok(b)
            })
            .map_err(error)?;
        if bytes.len() % READING_BYTES != 0 {
            return Err(SensorError::Other);
        }
        bytes
            .chunks_exact(READING_BYTES)
            .map(|c| {
                let quantity = Quantity::from_code(c[0]).ok_or(SensorError::Other)?;
                let word = |at: usize| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&c[at..at + 8]);
                    u64::from_le_bytes(a)
                };
                Ok(WitReading {
                    quantity: wit_quantity(quantity),
                    value: f64::from_bits(word(1)),
                    time_ns: word(9),
                })
            })
            .collect()
    }

    /// `sensor.set-rate`: the host samples the sensor from the call's time
    /// on, every period.
    pub fn sensor_set_rate(&mut self, handle: u32, millihertz: u32) -> Result<(), SensorError> {
        let (name, _, _) = self.sensor_device(handle)?;
        // A grant taken away after a restore: the sensor is gone.
        let grant = self
            .devices
            .manifest
            .sensor_open(&name)
            .map_err(|_| SensorError::DeviceLost)?;
        if !grant.allows_rate(millihertz) {
            return Err(SensorError::RateNotAllowed);
        }
        if millihertz > 0 && !self.takes_device_events {
            // Nowhere to deliver the samples.
            return Err(SensorError::Other);
        }
        self.device_op("a sensor's rate", |d| d.present(handle))
            .map_err(error)?;
        let next = self.call_time_ns.saturating_add(period_ns(millihertz));
        if let Some(OpenDevice {
            kind: OpenKind::Sensor {
                rate_mhz, next_ns, ..
            },
            ..
        }) = self.devices.find_mut(handle)
        {
            *rate_mhz = millihertz;
            *next_ns = if millihertz > 0 { next } else { 0 };
        }
        Ok(())
    }

    /// `sensor.close`: the number is gone, and its sampling with it.
    pub fn sensor_close(&mut self, handle: u32) -> bool {
        if !self
            .devices
            .forget(handle, |k| matches!(k, OpenKind::Sensor { .. }))
        {
            return false;
        }
        self.devices.acquired.remove(&handle);
        true
    }

    /// Samples every sensor whose next sample is due, while the queue has
    /// room for it and holds fewer than `MAX_QUEUED_SAMPLES` of that
    /// sensor's, and admits each as `Input::SensorSample` (journaled
    /// before the guest sees it; admitting it moves the schedule on).
    pub(crate) fn poll_sensors(&mut self) {
        let now = self.clock.now_ns();
        let due: Vec<u32> = self
            .devices
            .state
            .open
            .iter()
            .filter_map(|d| match d.kind {
                OpenKind::Sensor {
                    rate_mhz, next_ns, ..
                } if rate_mhz > 0 && next_ns <= now => Some(d.handle),
                _ => None,
            })
            .collect();
        if due.is_empty() {
            return;
        }
        self.devices.set_time(now);
        for handle in due {
            let queued = self
                .state
                .pending
                .iter()
                .filter(|i| matches!(i, Input::SensorSample { sensor, .. } if *sensor == handle))
                .count();
            if queued >= MAX_QUEUED_SAMPLES || !self.has_room(0) {
                continue;
            }
            let readings = self.devices.sensor_measure(handle).map(|v| {
                v.into_iter()
                    .take(MAX_READINGS)
                    .map(SampleValue::from)
                    .collect()
            });
            // Refused (the journal failed): nothing moved, the next turn
            // samples again.
            let _ = self.admit(Input::SensorSample {
                sensor: handle,
                readings,
                time_ns: now,
            });
        }
    }
}

/// Adds `phantom:devices/sensor` to the linker.
pub fn add_to_linker(linker: &mut Linker<ProcessCtx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    i.func_wrap(
        "open",
        |mut s: StoreContextMut<'_, ProcessCtx>, (name,): (String,)| {
            Ok((s.data_mut().sensor_open(&name),))
        },
    )?;
    i.func_wrap(
        "info",
        |s: StoreContextMut<'_, ProcessCtx>, (sensor,): (u32,)| Ok((s.data().sensor_info(sensor),)),
    )?;
    i.func_wrap(
        "read",
        |mut s: StoreContextMut<'_, ProcessCtx>, (sensor,): (u32,)| {
            Ok((s.data_mut().sensor_read(sensor),))
        },
    )?;
    i.func_wrap(
        "set-rate",
        |mut s: StoreContextMut<'_, ProcessCtx>, (sensor, millihertz): (u32, u32)| {
            Ok((s.data_mut().sensor_set_rate(sensor, millihertz),))
        },
    )?;
    i.func_wrap(
        "close",
        |mut s: StoreContextMut<'_, ProcessCtx>, (sensor,): (u32,)| {
            Ok((s.data_mut().sensor_close(sensor),))
        },
    )?;
    Ok(())
}
