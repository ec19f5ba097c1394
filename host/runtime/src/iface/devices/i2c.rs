//! `phantom:devices/i2c`: buses opened by logical name, transactions to the
//! 7-bit addresses the grant lists. The policy is checked before anything
//! reaches the bus. Every transaction, writes included, runs live through
//! the gate and its result is journaled: a write cannot wait for the call
//! to be durable like a pin level, because a read later in the same call
//! (a measurement after `ctrl_meas`) depends on it; a replay touches no
//! bus.

use embedded_hal::i2c::{ErrorKind, I2c, NoAcknowledgeSource};
use phantom_devices::{I2cFault, PolicyError};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::{CODE_LOST, CODE_OTHER, OpenDevice, OpenKind};
use crate::ctx::ProcessCtx;
use crate::journal::entry::MAX_DEVICE_READ;

/// The interface's name in the linker.
const INTERFACE: &str = "phantom:devices/i2c@0.1.0";
/// Most operations in one transaction.
const MAX_OPERATIONS: usize = 256;
/// Most bytes one transaction writes.
const MAX_WRITE: usize = 64 << 10;

/// `i2c.no-acknowledge-source`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum NoAckSource {
    /// The address.
    #[component(name = "address")]
    Address,
    /// A data byte.
    #[component(name = "data")]
    Data,
    /// Unknown.
    #[component(name = "unknown")]
    Unknown,
}

/// `i2c.i2c-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(variant)]
pub enum I2cError {
    /// Bus error.
    #[component(name = "bus")]
    Bus,
    /// Arbitration lost.
    #[component(name = "arbitration-loss")]
    ArbitrationLoss,
    /// Not acknowledged.
    #[component(name = "no-acknowledge")]
    NoAcknowledge(NoAckSource),
    /// Overrun.
    #[component(name = "overrun")]
    Overrun,
    /// Another failure.
    #[component(name = "other")]
    Other,
    /// No grant of that name.
    #[component(name = "not-granted")]
    NotGranted,
    /// The grant does not list the address.
    #[component(name = "address-not-allowed")]
    AddressNotAllowed,
    /// No such open bus.
    #[component(name = "not-open")]
    NotOpen,
    /// The bus is gone.
    #[component(name = "device-lost")]
    DeviceLost,
}

/// `i2c.operation`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq, Eq)]
#[component(variant)]
pub enum WitOperation {
    /// Read this many bytes.
    #[component(name = "read")]
    Read(u32),
    /// Write these bytes.
    #[component(name = "write")]
    Write(Vec<u8>),
}

/// The journal code of an embedded-hal error kind.
fn code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Bus => 1,
        ErrorKind::ArbitrationLoss => 2,
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address) => 3,
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data) => 4,
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown) => 5,
        ErrorKind::Overrun => 6,
        _ => CODE_OTHER,
    }
}

/// The WIT error of a journal code.
fn error(code: u8) -> I2cError {
    match code {
        1 => I2cError::Bus,
        2 => I2cError::ArbitrationLoss,
        3 => I2cError::NoAcknowledge(NoAckSource::Address),
        4 => I2cError::NoAcknowledge(NoAckSource::Data),
        5 => I2cError::NoAcknowledge(NoAckSource::Unknown),
        6 => I2cError::Overrun,
        CODE_LOST => I2cError::DeviceLost,
        _ => I2cError::Other,
    }
}

fn policy(e: PolicyError) -> I2cError {
    match e {
        PolicyError::NotGranted | PolicyError::ModeNotAllowed => I2cError::NotGranted,
        PolicyError::AddressNotAllowed => I2cError::AddressNotAllowed,
    }
}

impl ProcessCtx {
    /// `i2c.open`.
    pub fn i2c_open(&mut self, name: &str) -> Result<u32, I2cError> {
        let bus = self
            .devices
            .manifest
            .i2c_open(name)
            .map_err(policy)?
            .bus
            .clone();
        let handle = self.devices.next_handle().ok_or(I2cError::Other)?;
        self.device_op("an I2C open", |d| match d.acquire_bus(&bus) {
            Ok(a) => {
                d.acquired.insert(handle, a);
                Ok(Vec::new())
            }
            Err(why) => {
                d.warn(format!(
                    "i2c.open(`{name}`): {bus} cannot be opened ({why}): the guest gets `device-lost`"
                ));
                Err(CODE_LOST)
            }
        })
        .map_err(error)?;
        let d = &mut self.devices;
        d.state.last_handle = handle;
        d.state.open.push(OpenDevice {
            handle,
            name: name.to_string(),
            kind: OpenKind::I2c {
                bus: bus.to_string(),
            },
        });
        Ok(handle)
    }

    /// `i2c.transaction`: returns the bytes of each read.
    pub fn i2c_transaction(
        &mut self,
        handle: u32,
        address: u16,
        operations: &[WitOperation],
    ) -> Result<Vec<Vec<u8>>, I2cError> {
        let name = match self.devices.find(handle) {
            Some(OpenDevice {
                name,
                kind: OpenKind::I2c { .. },
                ..
            }) => name.clone(),
            _ => return Err(I2cError::NotOpen),
        };
        self.devices
            .manifest
            .i2c_access(&name, address)
            .map_err(policy)?;
        let reads: Vec<usize> = operations
            .iter()
            .filter_map(|o| match o {
                WitOperation::Read(n) => Some(*n as usize),
                WitOperation::Write(_) => None,
            })
            .collect();
        let written: usize = operations
            .iter()
            .map(|o| match o {
                WitOperation::Write(b) => b.len(),
                WitOperation::Read(_) => 0,
            })
            .sum();
        if operations.len() > MAX_OPERATIONS
            || reads.iter().sum::<usize>() > MAX_DEVICE_READ
            || written > MAX_WRITE
        {
            return Err(I2cError::Other);
        }
        let address = address as u8;
        let bytes = self
            .device_op("an I2C transaction", |d| {
                let super::Acquired::Bus(mut bus) = d.acquired(handle) else {
                    return Err(CODE_LOST);
                };
                let mut bufs: Vec<Vec<u8>> = reads.iter().map(|&n| vec![0u8; n]).collect();
                let mut it = bufs.iter_mut();
                let mut ops: Vec<embedded_hal::i2c::Operation<'_>> = operations
                    .iter()
                    .map(|o| match o {
                        WitOperation::Write(b) => embedded_hal::i2c::Operation::Write(b),
                        WitOperation::Read(_) => embedded_hal::i2c::Operation::Read(
                            it.next().map(|v| v.as_mut_slice()).unwrap_or_default(),
                        ),
                    })
                    .collect();
                match bus.transaction(address, &mut ops) {
                    Ok(()) => Ok(bufs.concat()),
                    Err(I2cFault::Lost(why)) => {
                        d.lose(handle, why);
                        Err(CODE_LOST)
                    }
                    Err(I2cFault::Kind(kind)) => Err(code(kind)),
                }
            })
            .map_err(error)?;
        // Split the journaled bytes back into the reads.
        if bytes.len() != reads.iter().sum::<usize>() {
            return Err(I2cError::Other);
        }
        let mut out = Vec::with_capacity(reads.len());
        let mut at = 0;
        for n in reads {
            out.push(bytes[at..at + n].to_vec());
            at += n;
        }
        Ok(out)
    }
}

/// Adds `phantom:devices/i2c` to the linker.
pub fn add_to_linker(linker: &mut Linker<ProcessCtx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    i.func_wrap(
        "open",
        |mut s: StoreContextMut<'_, ProcessCtx>, (name,): (String,)| {
            Ok((s.data_mut().i2c_open(&name),))
        },
    )?;
    i.func_wrap(
        "read",
        |mut s: StoreContextMut<'_, ProcessCtx>, (bus, address, len): (u32, u16, u32)| {
            let r = s
                .data_mut()
                .i2c_transaction(bus, address, &[WitOperation::Read(len)]);
            Ok((r.map(|mut v| v.pop().unwrap_or_default()),))
        },
    )?;
    i.func_wrap(
        "write",
        |mut s: StoreContextMut<'_, ProcessCtx>, (bus, address, data): (u32, u16, Vec<u8>)| {
            let r = s
                .data_mut()
                .i2c_transaction(bus, address, &[WitOperation::Write(data)]);
            Ok((r.map(|_| ()),))
        },
    )?;
    i.func_wrap(
        "write-read",
        |mut s: StoreContextMut<'_, ProcessCtx>,
         (bus, address, data, len): (u32, u16, Vec<u8>, u32)| {
            let r = s.data_mut().i2c_transaction(
                bus,
                address,
                &[WitOperation::Write(data), WitOperation::Read(len)],
            );
            Ok((r.map(|mut v| v.pop().unwrap_or_default()),))
        },
    )?;
    i.func_wrap(
        "transaction",
        |mut s: StoreContextMut<'_, ProcessCtx>,
         (bus, address, operations): (u32, u16, Vec<WitOperation>)| {
            Ok((s.data_mut().i2c_transaction(bus, address, &operations),))
        },
    )?;
    i.func_wrap(
        "close",
        |mut s: StoreContextMut<'_, ProcessCtx>, (bus,): (u32,)| {
            Ok((s.data_mut().device_close(bus, false),))
        },
    )?;
    Ok(())
}
