//! The BME280 on its SPI interface (datasheet 6.3): the same registers as
//! on I2C (`bme280.rs`), addressed by a control byte whose bit 7 is the
//! direction (1 read, 0 write) in place of the address's own bit 7. A small
//! driver over any embedded-hal 1.0 `SpiDevice`, tested against the
//! simulated chip and, for its exact frames, against `embedded-hal-mock`.

#![allow(
    clippy::unusual_byte_groupings,
    reason = "ctrl_meas literals are grouped by its fields: osrs_t, osrs_p, mode"
)]

use embedded_hal::spi::{Operation, SpiDevice};

use crate::bme280::{
    CHIP_ID, Calibration, DriverError, Measurement, REG_CALIB00, REG_CALIB26, REG_CTRL_HUM,
    REG_CTRL_MEAS, REG_DATA, REG_ID, compensate,
};

/// The control byte that reads from `reg`.
pub const fn read_control(reg: u8) -> u8 {
    reg | 0x80
}

/// The control byte that writes `reg`.
pub const fn write_control(reg: u8) -> u8 {
    reg & 0x7f
}

/// Reads `buf.len()` registers from `reg` on, in one frame.
pub fn read_registers<S: SpiDevice<u8>>(
    spi: &mut S,
    reg: u8,
    buf: &mut [u8],
) -> Result<(), S::Error> {
    spi.transaction(&mut [Operation::Write(&[read_control(reg)]), Operation::Read(buf)])
}

/// Writes (register, value) pairs in one frame.
pub fn write_registers<S: SpiDevice<u8>>(spi: &mut S, pairs: &[(u8, u8)]) -> Result<(), S::Error> {
    let bytes: Vec<u8> = pairs
        .iter()
        .flat_map(|&(r, v)| [write_control(r), v])
        .collect();
    spi.write(&bytes)
}

/// A BME280 on an SPI device: reads the calibration once, then takes
/// forced-mode measurements (oversampling x1 each), like `bme280::Bme280`.
pub struct Bme280Spi<S> {
    spi: S,
    calibration: Calibration,
}

impl<S: SpiDevice<u8>> Bme280Spi<S> {
    /// Checks the chip id and reads the calibration.
    pub fn new(mut spi: S) -> Result<Self, DriverError<S::Error>> {
        let mut id = [0u8];
        read_registers(&mut spi, REG_ID, &mut id).map_err(DriverError::Bus)?;
        if id[0] != CHIP_ID {
            return Err(DriverError::NotABme280(id[0]));
        }
        let mut a = [0u8; 26];
        let mut b = [0u8; 7];
        read_registers(&mut spi, REG_CALIB00, &mut a).map_err(DriverError::Bus)?;
        read_registers(&mut spi, REG_CALIB26, &mut b).map_err(DriverError::Bus)?;
        Ok(Bme280Spi {
            spi,
            calibration: Calibration::from_registers(&a, &b),
        })
    }

    /// Takes one forced-mode measurement.
    pub fn measure(&mut self) -> Result<Measurement, DriverError<S::Error>> {
        write_registers(
            &mut self.spi,
            &[(REG_CTRL_HUM, 0b001), (REG_CTRL_MEAS, 0b001_001_01)],
        )
        .map_err(DriverError::Bus)?;
        let mut d = [0u8; 8];
        read_registers(&mut self.spi, REG_DATA, &mut d).map_err(DriverError::Bus)?;
        Ok(compensate(&self.calibration, &d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use crate::sim::{SimWorld, SpiOp};
    use crate::spi::{SpiConfig, SpiMode, SpiPort};

    /// The driver's exact frames, against `embedded-hal-mock`.
    #[test]
    fn the_driver_speaks_the_spi_register_map() {
        use embedded_hal_mock::eh1::spi::{Mock, Transaction as T};
        let (a, b) = Calibration::TYPICAL.to_registers();
        let data = [0x65, 0x5a, 0xc0, 0x7e, 0xed, 0x00, 0x80, 0x00];
        let frame = |out: Vec<u8>, back: Vec<u8>| {
            [
                T::transaction_start(),
                T::write_vec(out),
                T::read_vec(back),
                T::transaction_end(),
            ]
        };
        let mut expect = Vec::new();
        expect.extend(frame(vec![0xd0], vec![CHIP_ID]));
        expect.extend(frame(vec![0x88], a.to_vec()));
        expect.extend(frame(vec![0xe1], b.to_vec()));
        expect.extend([
            T::transaction_start(),
            T::write_vec(vec![0x72, 1, 0x74, 0x25]),
            T::transaction_end(),
        ]);
        expect.extend(frame(vec![0xf7], data.to_vec()));
        let mut spi = Mock::new(&expect);
        let mut s = Bme280Spi::new(spi.clone()).unwrap();
        let m = s.measure().unwrap();
        assert!((m.celsius - 25.08).abs() < 0.01, "{m:?}");
        spi.done();
    }

    /// Through the simulated chip's SPI interface the driver reads the
    /// scenario back, as it does over I2C.
    #[test]
    fn the_simulated_chip_answers_on_spi() {
        let mut w = SimWorld::new(
            Scenario::parse("temperature = [{ at_s = 0, value = 12.0 }, { at_s = 10, value = 22.0 }]\nhumidity = [{ at_s = 0, value = 61.0 }]")
                .unwrap(),
        );
        let mut dev = w.spi_device("bme280").unwrap();
        let config = |mode, hz| SpiConfig {
            mode: SpiMode::new(mode).unwrap(),
            hz,
        };
        // Before any configuration, and in a mode the chip does not
        // follow, a frame is noise: MISO floats high.
        let mut id = [0u8];
        read_registers(&mut dev, REG_ID, &mut id).unwrap();
        assert_eq!(id[0], 0xff);
        dev.configure(&config(1, 1_000_000)).unwrap();
        read_registers(&mut dev, REG_ID, &mut id).unwrap();
        assert_eq!(id[0], 0xff);
        dev.configure(&config(3, 20_000_000)).unwrap();
        read_registers(&mut dev, REG_ID, &mut id).unwrap();
        assert_eq!(id[0], 0xff, "above 10 MHz");
        dev.configure(&config(3, 10_000_000)).unwrap();
        let mut s = Bme280Spi::new(dev.clone()).unwrap();
        for (sec, want) in [(0u64, 12.0), (5, 17.0), (10, 22.0)] {
            dev.set_time(sec * 1_000_000_000);
            let m = s.measure().unwrap();
            assert!((m.celsius - want).abs() <= 0.011, "{sec}s: {m:?}");
            assert!((m.humidity - 61.0).abs() < 0.05, "{m:?}");
        }
        // A full-duplex read of the chip id, as the log saw it.
        let got = dev
            .run(&[crate::spi::SpiOperation::Transfer(vec![0xd0, 0])])
            .unwrap();
        assert_eq!(got, [0xff, CHIP_ID]);
        assert_eq!(
            dev.log().last(),
            Some(&SpiOp::Frame {
                mosi: vec![0xd0, 0],
                miso: vec![0xff, CHIP_ID]
            })
        );
        // Writes to read-only registers are ignored, reset works.
        write_registers(
            &mut dev,
            &[(REG_ID, 0x12), (crate::bme280::REG_CONFIG, 0xa0)],
        )
        .unwrap();
        let mut cfg = [0u8];
        read_registers(&mut dev, crate::bme280::REG_CONFIG, &mut cfg).unwrap();
        assert_eq!(cfg[0], 0xa0);
        read_registers(&mut dev, REG_ID, &mut id).unwrap();
        assert_eq!(id[0], CHIP_ID);
        dev.unplug();
        assert!(read_registers(&mut dev, REG_ID, &mut id).is_err());
    }
}
