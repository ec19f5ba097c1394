//! `phantom:devices/spi`: devices (one chip select each) opened by logical
//! name, clocked in the modes and up to the rate the grant allows.
//!
//! ```text
//!   open / configure ─► policy ─► device_op (gate: journaled) ─► SpiPort::configure
//!   transfer / read / write / transaction ─► policy (open, limits) ─► device_op:
//!        SpiPort::run (embedded-hal SpiDevice::transaction) ─► journal: the bytes
//!        clocked in (live); replay: the recorded bytes, no device touched
//!   restore ─► Devices::reacquire ─► opened again, the configuration the
//!        guest set re-applied
//! ```
//! Every operation, writes included, runs live through the gate like an
//! I2C transaction: SPI is full duplex, so what a frame returns depends on
//! what it sends, and a write cannot wait for the call to be durable.

use std::sync::{Arc, Mutex};

use embedded_hal::spi::ErrorKind;
use phantom_devices::spi::{
    MAX_DELAY_NS, SpiConfig, SpiFault, SpiMode, SpiOperation, SpiPort, SpiRef, SpiRefusal, open_spi,
};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::{Acquired, CODE_LOST, CODE_OTHER, Devices, OpenDevice, OpenKind};
use crate::ctx::ProcessCtx;
use crate::journal::entry::MAX_DEVICE_READ;

/// The interface's name in the linker.
const INTERFACE: &str = "phantom:devices/spi@0.1.0";
/// Most operations in one transaction.
const MAX_OPERATIONS: usize = 256;
/// Most bytes one transaction clocks out.
const MAX_WRITE: usize = 64 << 10;

/// Journal codes of SPI failures (`device-read` entries; each interface
/// reads back only its own). `CODE_OTHER` and `CODE_LOST` are shared.
const CODE_OVERRUN: u8 = 1;
const CODE_MODE_FAULT: u8 = 2;
const CODE_FRAME_FORMAT: u8 = 3;
const CODE_CHIP_SELECT_FAULT: u8 = 4;

/// An open device, shared by the clones of its `Acquired`.
pub(crate) type SharedSpi = Arc<Mutex<Box<dyn SpiPort>>>;

/// `spi.mode`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum WitSpiMode {
    /// CPOL 0, CPHA 0.
    #[component(name = "mode0")]
    Mode0,
    /// CPOL 0, CPHA 1.
    #[component(name = "mode1")]
    Mode1,
    /// CPOL 1, CPHA 0.
    #[component(name = "mode2")]
    Mode2,
    /// CPOL 1, CPHA 1.
    #[component(name = "mode3")]
    Mode3,
}

/// `spi.config`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(record)]
pub struct WitSpiConfig {
    /// The mode.
    pub mode: WitSpiMode,
    /// The clock.
    #[component(name = "frequency-hz")]
    pub frequency_hz: u32,
}

/// `spi.spi-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum SpiError {
    /// Overrun.
    #[component(name = "overrun")]
    Overrun,
    /// Mode fault.
    #[component(name = "mode-fault")]
    ModeFault,
    /// Frame format.
    #[component(name = "frame-format")]
    FrameFormat,
    /// Chip select fault.
    #[component(name = "chip-select-fault")]
    ChipSelectFault,
    /// Another failure, or over a limit.
    #[component(name = "other")]
    Other,
    /// No grant of that name.
    #[component(name = "not-granted")]
    NotGranted,
    /// The grant does not list the mode.
    #[component(name = "mode-not-allowed")]
    ModeNotAllowed,
    /// The clock is 0 or above the grant's.
    #[component(name = "frequency-not-allowed")]
    FrequencyNotAllowed,
    /// No such open device.
    #[component(name = "not-open")]
    NotOpen,
    /// The device is gone.
    #[component(name = "device-lost")]
    DeviceLost,
}

/// `spi.operation`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq, Eq)]
#[component(variant)]
pub enum WitSpiOperation {
    /// Clock in this many bytes.
    #[component(name = "read")]
    Read(u32),
    /// Clock out these bytes.
    #[component(name = "write")]
    Write(Vec<u8>),
    /// Clock out these, keep what comes in.
    #[component(name = "transfer")]
    Transfer(Vec<u8>),
    /// Wait with the chip selected.
    #[component(name = "delay-ns")]
    DelayNs(u32),
}

impl From<WitSpiConfig> for SpiConfig {
    fn from(c: WitSpiConfig) -> Self {
        SpiConfig {
            mode: SpiMode::ALL[c.mode as usize],
            hz: c.frequency_hz,
        }
    }
}

impl From<SpiConfig> for WitSpiConfig {
    fn from(c: SpiConfig) -> Self {
        WitSpiConfig {
            mode: match c.mode.get() {
                0 => WitSpiMode::Mode0,
                1 => WitSpiMode::Mode1,
                2 => WitSpiMode::Mode2,
                _ => WitSpiMode::Mode3,
            },
            frequency_hz: c.hz,
        }
    }
}

/// The journal code of a failure.
fn fault(f: &SpiFault) -> u8 {
    match f {
        SpiFault::Lost(_) => CODE_LOST,
        SpiFault::Kind(ErrorKind::Overrun) => CODE_OVERRUN,
        SpiFault::Kind(ErrorKind::ModeFault) => CODE_MODE_FAULT,
        SpiFault::Kind(ErrorKind::FrameFormat) => CODE_FRAME_FORMAT,
        SpiFault::Kind(ErrorKind::ChipSelectFault) => CODE_CHIP_SELECT_FAULT,
        SpiFault::Kind(_) => CODE_OTHER,
    }
}

/// The WIT error of a journal code.
fn error(code: u8) -> SpiError {
    match code {
        CODE_OVERRUN => SpiError::Overrun,
        CODE_MODE_FAULT => SpiError::ModeFault,
        CODE_FRAME_FORMAT => SpiError::FrameFormat,
        CODE_CHIP_SELECT_FAULT => SpiError::ChipSelectFault,
        CODE_LOST => SpiError::DeviceLost,
        _ => SpiError::Other,
    }
}

impl Devices {
    /// Opens `device` and applies `config`.
    pub(super) fn acquire_spi(&mut self, device: &SpiRef, config: &SpiConfig) -> Acquired {
        match open_spi(device, config, &mut self.sim) {
            Ok(p) => Acquired::Spi(Arc::new(Mutex::new(p))),
            Err(_) => Acquired::Lost,
        }
    }
}

impl ProcessCtx {
    /// The open device `handle`: its grant's name.
    fn spi_device(&self, handle: u32) -> Result<&OpenDevice, SpiError> {
        match self.devices.find(handle) {
            Some(
                d @ OpenDevice {
                    kind: OpenKind::Spi { .. },
                    ..
                },
            ) => Ok(d),
            _ => Err(SpiError::NotOpen),
        }
    }

    /// `spi.open`.
    pub fn spi_open(&mut self, name: &str) -> Result<u32, SpiError> {
        let grant = self
            .devices
            .manifest
            .spi_open(name)
            .map_err(|_| SpiError::NotGranted)?;
        let (device, config) = (grant.device.clone(), grant.default_config());
        // One chip select, one holder: a second handle would configure the
        // chip under the first one's feet. embedded-hal's error kinds have
        // no `already-open`: `other`, said on stderr.
        if self
            .devices
            .holds_open(name, |k| matches!(k, OpenKind::Spi { .. }))
        {
            self.devices.warn(format!(
                "spi.open(\"{name}\"): the process holds it open already (one chip select, one holder): the guest gets `other`"
            ));
            return Err(SpiError::Other);
        }
        let handle = self.devices.next_handle().ok_or(SpiError::Other)?;
        self.device_op("an SPI open", |d| {
            let a = d.acquire_spi(&device, &config);
            let lost = matches!(a, Acquired::Lost);
            d.acquired.insert(handle, a);
            if lost { Err(CODE_LOST) } else { Ok(Vec::new()) }
        })
        .map_err(error)?;
        let d = &mut self.devices;
        d.state.last_handle = handle;
        d.state.open.push(OpenDevice {
            handle,
            name: name.to_string(),
            kind: OpenKind::Spi {
                device: device.to_string(),
                config,
            },
        });
        Ok(handle)
    }

    /// `spi.configure`.
    pub fn spi_configure(&mut self, handle: u32, config: SpiConfig) -> Result<(), SpiError> {
        let name = self.spi_device(handle)?.name.clone();
        // A grant taken away after a restore: the device is gone.
        let grant = self
            .devices
            .manifest
            .spi_open(&name)
            .map_err(|_| SpiError::DeviceLost)?;
        grant.check(&config).map_err(|r| match r {
            SpiRefusal::ModeNotAllowed => SpiError::ModeNotAllowed,
            SpiRefusal::FrequencyNotAllowed => SpiError::FrequencyNotAllowed,
        })?;
        self.device_op("an SPI configuration", |d| match d.acquired(handle) {
            Acquired::Spi(p) => p
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .configure(&config)
                .map(|()| Vec::new())
                .map_err(|f| fault(&f)),
            _ => Err(CODE_LOST),
        })
        .map_err(error)?;
        if let Some(OpenDevice {
            kind: OpenKind::Spi { config: c, .. },
            ..
        }) = self.devices.find_mut(handle)
        {
            *c = config;
        }
        Ok(())
    }

    /// `spi.get-config`: the configuration the process set (host state).
    pub fn spi_get_config(&self, handle: u32) -> Result<SpiConfig, SpiError> {
        match &self.spi_device(handle)?.kind {
            OpenKind::Spi { config, .. } => Ok(*config),
            _ => Err(SpiError::NotOpen),
        }
    }

    /// `spi.transaction`: returns the bytes of each read and transfer.
    pub fn spi_transaction(
        &mut self,
        handle: u32,
        operations: Vec<WitSpiOperation>,
    ) -> Result<Vec<Vec<u8>>, SpiError> {
        self.spi_device(handle)?;
        let ops: Vec<SpiOperation> = operations
            .into_iter()
            .map(|o| match o {
                WitSpiOperation::Read(n) => SpiOperation::Read(n),
                WitSpiOperation::Write(b) => SpiOperation::Write(b),
                WitSpiOperation::Transfer(b) => SpiOperation::Transfer(b),
                WitSpiOperation::DelayNs(ns) => SpiOperation::DelayNs(ns),
            })
            .collect();
        let returns: Vec<usize> = ops
            .iter()
            .filter(|o| matches!(o, SpiOperation::Read(_) | SpiOperation::Transfer(_)))
            .map(SpiOperation::returns)
            .collect();
        let written: usize = ops
            .iter()
            .map(|o| match o {
                SpiOperation::Write(b) | SpiOperation::Transfer(b) => b.len(),
                _ => 0,
            })
            .sum();
        let delays: u64 = ops
            .iter()
            .map(|o| match o {
                SpiOperation::DelayNs(ns) => u64::from(*ns),
                _ => 0,
            })
            .sum();
        if ops.len() > MAX_OPERATIONS
            || returns.iter().sum::<usize>() > MAX_DEVICE_READ
            || written > MAX_WRITE
            || delays > MAX_DELAY_NS
        {
            return Err(SpiError::Other);
        }
        let bytes = self
            .device_op("an SPI transaction", |d| match d.acquired(handle) {
                Acquired::Spi(p) => p
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .run(&ops)
                    .map_err(|f| fault(&f)),
                _ => Err(CODE_LOST),
            })
            .map_err(error)?;
        // Split the journaled bytes back into the reads and transfers.
        if bytes.len() != returns.iter().sum::<usize>() {
            return Err(SpiError::Other);
        }
        let mut out = Vec::with_capacity(returns.len());
        let mut at = 0;
        for n in returns {
            out.push(bytes[at..at + n].to_vec());
            at += n;
        }
        Ok(out)
    }

    /// `spi.close`.
    pub fn spi_close(&mut self, handle: u32) -> bool {
        if !self
            .devices
            .forget(handle, |k| matches!(k, OpenKind::Spi { .. }))
        {
            return false;
        }
        self.devices.acquired.remove(&handle);
        true
    }
}

/// Adds `phantom:devices/spi` to the linker.
pub fn add_to_linker(linker: &mut Linker<ProcessCtx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    i.func_wrap(
        "open",
        |mut s: StoreContextMut<'_, ProcessCtx>, (name,): (String,)| {
            Ok((s.data_mut().spi_open(&name),))
        },
    )?;
    i.func_wrap(
        "configure",
        |mut s: StoreContextMut<'_, ProcessCtx>, (device, config): (u32, WitSpiConfig)| {
            Ok((s.data_mut().spi_configure(device, config.into()),))
        },
    )?;
    i.func_wrap(
        "get-config",
        |s: StoreContextMut<'_, ProcessCtx>, (device,): (u32,)| {
            Ok((s.data().spi_get_config(device).map(WitSpiConfig::from),))
        },
    )?;
    i.func_wrap(
        "transfer",
        |mut s: StoreContextMut<'_, ProcessCtx>, (device, data): (u32, Vec<u8>)| {
            let r = s
                .data_mut()
                .spi_transaction(device, vec![WitSpiOperation::Transfer(data)]);
            Ok((r.map(|mut v| v.pop().unwrap_or_default()),))
        },
    )?;
    i.func_wrap(
        "read",
        |mut s: StoreContextMut<'_, ProcessCtx>, (device, len): (u32, u32)| {
            let r = s
                .data_mut()
                .spi_transaction(device, vec![WitSpiOperation::Read(len)]);
            Ok((r.map(|mut v| v.pop().unwrap_or_default()),))
        },
    )?;
    i.func_wrap(
        "write",
        |mut s: StoreContextMut<'_, ProcessCtx>, (device, data): (u32, Vec<u8>)| {
            let r = s
                .data_mut()
                .spi_transaction(device, vec![WitSpiOperation::Write(data)]);
            Ok((r.map(|_| ()),))
        },
    )?;
    i.func_wrap(
        "transaction",
        |mut s: StoreContextMut<'_, ProcessCtx>,
         (device, operations): (u32, Vec<WitSpiOperation>)| {
            Ok((s.data_mut().spi_transaction(device, operations),))
        },
    )?;
    i.func_wrap(
        "close",
        |mut s: StoreContextMut<'_, ProcessCtx>, (device,): (u32,)| {
            Ok((s.data_mut().spi_close(device),))
        },
    )?;
    Ok(())
}
