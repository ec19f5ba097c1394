//! A Linux I2C bus (`linux:/dev/i2c-1`): i2c-dev through
//! `linux-embedded-hal`'s `I2cdev`, which implements embedded-hal's `I2c`
//! (a transaction is one `I2C_RDWR`: repeated starts between its
//! operations). The ioctls are the dependency's; nothing here needs
//! `unsafe`.
//!
//! `I2cdev` opens the bus again with `I2C_SLAVE` whenever the address
//! changes, so an address a kernel driver holds is refused (`EBUSY`:
//! `other`), and a bus whose node is gone is found at the next change of
//! address if not before.

use embedded_hal::i2c::{ErrorKind, I2c, NoAcknowledgeSource, Operation, SevenBitAddress};
use linux_embedded_hal::I2cdev;
use linux_embedded_hal::i2cdev::linux::LinuxI2CError;

use crate::i2c::I2cFault;

/// An open i2c-dev bus.
pub struct LinuxI2cBus {
    bus: I2cdev,
    path: String,
}

/// What an OS error of an I2C transfer means, after the kernel's
/// `Documentation/i2c/fault-codes.rst`; None: the bus is gone.
pub(crate) fn error_kind(errno: i32) -> Option<ErrorKind> {
    Some(match errno {
        // The adapter went away (unbound, unplugged, suspended).
        libc::ENODEV | libc::ENOENT | libc::ESHUTDOWN => return None,
        // "the address was not acknowledged".
        libc::ENXIO => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
        // What several drivers (bcm2835, designware) return for a NAK,
        // without saying of which byte.
        libc::EREMOTEIO => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
        libc::EAGAIN => ErrorKind::ArbitrationLoss,
        libc::EIO | libc::EPROTO | libc::EBADMSG => ErrorKind::Bus,
        libc::EOVERFLOW => ErrorKind::Overrun,
        // EBUSY (a kernel driver holds the address, or the bus stayed
        // busy), ETIMEDOUT, EINVAL, EOPNOTSUPP and the rest.
        _ => ErrorKind::Other,
    })
}

fn errno(e: &LinuxI2CError) -> Option<i32> {
    match e {
        LinuxI2CError::Errno(n) => Some(*n),
        LinuxI2CError::Io(io) => io.raw_os_error(),
    }
}

/// A failed transfer of the bus at `path`.
pub(crate) fn fault(path: &str, e: &LinuxI2CError) -> I2cFault {
    match errno(e).map(error_kind) {
        Some(None) => I2cFault::Lost(format!("{path}: {e}")),
        Some(Some(kind)) => I2cFault::Kind(kind),
        None => I2cFault::Kind(ErrorKind::Other),
    }
}

impl LinuxI2cBus {
    /// Opens the bus at `path`. Anything that stops the open (no such
    /// file, no permission, not an i2c-dev node) leaves the guest without
    /// the bus.
    pub fn open(path: &str) -> Result<Self, I2cFault> {
        let bus = I2cdev::new(path).map_err(|e| I2cFault::Lost(format!("{path}: {e}")))?;
        Ok(LinuxI2cBus {
            bus,
            path: path.to_string(),
        })
    }

    /// Runs `operations` on the device at `address`.
    pub fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), I2cFault> {
        I2c::<SevenBitAddress>::transaction(&mut self.bus, address, operations)
            .map_err(|e| fault(&self.path, e.inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_to_embedded_hal_kinds_or_lost() {
        let cases = [
            (libc::ENODEV, None),
            (libc::ENOENT, None),
            (libc::ESHUTDOWN, None),
            (
                libc::ENXIO,
                Some(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)),
            ),
            (
                libc::EREMOTEIO,
                Some(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown)),
            ),
            (libc::EAGAIN, Some(ErrorKind::ArbitrationLoss)),
            (libc::EIO, Some(ErrorKind::Bus)),
            (libc::EPROTO, Some(ErrorKind::Bus)),
            (libc::EBADMSG, Some(ErrorKind::Bus)),
            (libc::EOVERFLOW, Some(ErrorKind::Overrun)),
            (libc::EBUSY, Some(ErrorKind::Other)),
            (libc::ETIMEDOUT, Some(ErrorKind::Other)),
            (libc::EOPNOTSUPP, Some(ErrorKind::Other)),
        ];
        for (n, want) in cases {
            assert_eq!(error_kind(n), want, "errno {n}");
        }
        // Both shapes of i2cdev's error, and the message of a lost bus.
        let path = "/dev/i2c-1";
        assert_eq!(
            fault(path, &LinuxI2CError::Errno(libc::ENXIO)),
            I2cFault::Kind(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address))
        );
        match fault(
            path,
            &LinuxI2CError::Io(std::io::Error::from_raw_os_error(libc::ENODEV)),
        ) {
            I2cFault::Lost(m) => assert!(m.starts_with("/dev/i2c-1: No such device"), "{m}"),
            f => panic!("{f:?}"),
        }
        assert_eq!(
            fault(path, &LinuxI2CError::Io(std::io::Error::other("no errno"))),
            I2cFault::Kind(ErrorKind::Other)
        );
    }

    /// A node that exists but is no I2C bus refuses `I2C_SLAVE`: lost,
    /// with the OS error (nix spells `ENOTTY` "Not a typewriter").
    #[test]
    fn a_file_that_is_not_an_i2c_bus_is_lost() {
        match LinuxI2cBus::open("/dev/null") {
            Err(I2cFault::Lost(m)) => {
                assert!(m.starts_with("/dev/null: ") && m.contains("ENOTTY"), "{m}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened"),
        }
    }
}
