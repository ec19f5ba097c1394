//! A Linux SPI device (`linux:/dev/spidevB.C`): spidev through
//! `linux-embedded-hal`'s `SpidevDevice`, which implements embedded-hal's
//! `SpiDevice` (the kernel drives the chip select). The ioctls are the
//! dependency's; nothing here needs `unsafe`.

use std::io;

use embedded_hal::spi::ErrorKind;
use linux_embedded_hal::SpidevDevice;
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};

use crate::spi::{SpiConfig, SpiFault, SpiOperation, SpiPort, run_operations};

/// An open spidev device.
pub struct LinuxSpiPort {
    device: SpidevDevice,
    path: String,
}

/// Whether an I/O error means the device is gone rather than refusing.
pub(crate) fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(libc::ENODEV | libc::ENXIO | libc::ESHUTDOWN | libc::ENOENT)
        )
}

fn fault(path: &str, e: &io::Error) -> SpiFault {
    if is_gone(e) {
        SpiFault::Lost(format!("{path}: {e}"))
    } else {
        SpiFault::Kind(ErrorKind::Other)
    }
}

impl LinuxSpiPort {
    /// Opens the device at `path`.
    pub fn open(path: &str) -> Result<Self, SpiFault> {
        let device = SpidevDevice::open(path).map_err(|e| {
            // Anything that stops the open (no such file, no permission,
            // not a spidev node) leaves the guest without the device.
            SpiFault::Lost(format!("{path}: {}", e.inner()))
        })?;
        Ok(LinuxSpiPort {
            device,
            path: path.to_string(),
        })
    }
}

impl SpiPort for LinuxSpiPort {
    fn configure(&mut self, config: &SpiConfig) -> Result<(), SpiFault> {
        let mode = match config.mode.get() {
            0 => SpiModeFlags::SPI_MODE_0,
            1 => SpiModeFlags::SPI_MODE_1,
            2 => SpiModeFlags::SPI_MODE_2,
            _ => SpiModeFlags::SPI_MODE_3,
        };
        let options = SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(config.hz)
            .lsb_first(false)
            .mode(mode)
            .build();
        self.device
            .configure(&options)
            .map_err(|e| fault(&self.path, &e))
    }

    fn run(&mut self, operations: &[SpiOperation]) -> Result<Vec<u8>, SpiFault> {
        run_operations(&mut self.device, operations).map_err(|e| fault(&self.path, e.inner()))
    }
}
