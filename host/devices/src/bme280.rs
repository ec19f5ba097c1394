//! The BME280 (Bosch temperature, pressure and humidity sensor): its register
//! map, its calibration words and the datasheet's integer compensation
//! formulas (BST-BME280-DS002, section 4.2.3), plus a small driver over any
//! `embedded-hal` 1.0 I2C bus. The simulated sensor (`sim::bme280`) and the
//! guests speak the same register map.

#![allow(
    clippy::unusual_byte_groupings,
    reason = "ctrl_meas literals are grouped by its fields: osrs_t, osrs_p, mode"
)]

use embedded_hal::i2c::I2c;

/// The chip id register; it reads [`CHIP_ID`].
pub const REG_ID: u8 = 0xd0;
/// What `REG_ID` reads on a BME280.
pub const CHIP_ID: u8 = 0x60;
/// Soft reset: writing [`RESET_WORD`] resets the chip.
pub const REG_RESET: u8 = 0xe0;
/// The word that resets.
pub const RESET_WORD: u8 = 0xb6;
/// First calibration block: `dig_T1` .. `dig_P9`, then `dig_H1` at 0xa1.
pub const REG_CALIB00: u8 = 0x88;
/// Second calibration block: `dig_H2` .. `dig_H6`.
pub const REG_CALIB26: u8 = 0xe1;
/// Humidity oversampling (takes effect at the next `ctrl_meas` write).
pub const REG_CTRL_HUM: u8 = 0xf2;
/// Status: bit 3 measuring, bit 0 copying calibration.
pub const REG_STATUS: u8 = 0xf3;
/// Temperature and pressure oversampling, and the mode (bits 1..0).
pub const REG_CTRL_MEAS: u8 = 0xf4;
/// Standby time, filter, SPI 3-wire.
pub const REG_CONFIG: u8 = 0xf5;
/// First measurement register: press_msb; then press_lsb, press_xlsb,
/// temp_msb, temp_lsb, temp_xlsb, hum_msb, hum_lsb.
pub const REG_DATA: u8 = 0xf7;
/// The primary I2C address (SDO to ground).
pub const ADDRESS: u8 = 0x76;

/// The calibration words of one chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Calibration {
    pub t1: u16,
    pub t2: i16,
    pub t3: i16,
    pub p1: u16,
    pub p2: i16,
    pub p3: i16,
    pub p4: i16,
    pub p5: i16,
    pub p6: i16,
    pub p7: i16,
    pub p8: i16,
    pub p9: i16,
    pub h1: u8,
    pub h2: i16,
    pub h3: u8,
    pub h4: i16,
    pub h5: i16,
    pub h6: i8,
}

impl Calibration {
    /// The datasheet's example words (temperature and pressure) and typical
    /// humidity words of a real part.
    pub const TYPICAL: Calibration = Calibration {
        t1: 27504,
        t2: 26435,
        t3: -1000,
        p1: 36477,
        p2: -10685,
        p3: 3024,
        p4: 2855,
        p5: 140,
        p6: -7,
        p7: 15500,
        p8: -14600,
        p9: 6000,
        h1: 75,
        h2: 370,
        h3: 0,
        h4: 300,
        h5: 50,
        h6: 30,
    };

    /// Decodes the 26 bytes at `REG_CALIB00` and the 7 at `REG_CALIB26`.
    pub fn from_registers(a: &[u8; 26], b: &[u8; 7]) -> Self {
        let u = |i: usize| u16::from_le_bytes([a[i], a[i + 1]]);
        let s = |i: usize| i16::from_le_bytes([a[i], a[i + 1]]);
        Calibration {
            t1: u(0),
            t2: s(2),
            t3: s(4),
            p1: u(6),
            p2: s(8),
            p3: s(10),
            p4: s(12),
            p5: s(14),
            p6: s(16),
            p7: s(18),
            p8: s(20),
            p9: s(22),
            h1: a[25],
            h2: i16::from_le_bytes([b[0], b[1]]),
            h3: b[2],
            // 12-bit signed words packed around the nibbles of 0xe5.
            h4: ((i16::from(b[3] as i8)) << 4) | i16::from(b[4] & 0x0f),
            h5: ((i16::from(b[5] as i8)) << 4) | i16::from(b[4] >> 4),
            h6: b[6] as i8,
        }
    }

    /// The inverse of `from_registers`.
    pub fn to_registers(&self) -> ([u8; 26], [u8; 7]) {
        let mut a = [0u8; 26];
        let words: [[u8; 2]; 12] = [
            self.t1.to_le_bytes(),
            self.t2.to_le_bytes(),
            self.t3.to_le_bytes(),
            self.p1.to_le_bytes(),
            self.p2.to_le_bytes(),
            self.p3.to_le_bytes(),
            self.p4.to_le_bytes(),
            self.p5.to_le_bytes(),
            self.p6.to_le_bytes(),
            self.p7.to_le_bytes(),
            self.p8.to_le_bytes(),
            self.p9.to_le_bytes(),
        ];
        for (i, w) in words.iter().enumerate() {
            a[2 * i..2 * i + 2].copy_from_slice(w);
        }
        a[25] = self.h1;
        let h2 = self.h2.to_le_bytes();
        let b = [
            h2[0],
            h2[1],
            self.h3,
            (self.h4 >> 4) as u8,
            ((self.h4 & 0x0f) as u8) | (((self.h5 & 0x0f) as u8) << 4),
            (self.h5 >> 4) as u8,
            self.h6 as u8,
        ];
        (a, b)
    }

    /// Temperature in 0.01 °C, and `t_fine` for the other two.
    pub fn temperature(&self, adc_t: i32) -> (i32, i32) {
        let (t1, t2, t3) = (i32::from(self.t1), i32::from(self.t2), i32::from(self.t3));
        let var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11;
        let d = (adc_t >> 4) - t1;
        let var2 = (((d * d) >> 12) * t3) >> 14;
        let t_fine = var1 + var2;
        ((t_fine * 5 + 128) >> 8, t_fine)
    }

    /// Pressure in Pa as Q24.8 (divide by 256).
    pub fn pressure(&self, adc_p: i32, t_fine: i32) -> u32 {
        let mut var1 = i64::from(t_fine) - 128000;
        let mut var2 = var1 * var1 * i64::from(self.p6);
        var2 += (var1 * i64::from(self.p5)) << 17;
        var2 += i64::from(self.p4) << 35;
        var1 = ((var1 * var1 * i64::from(self.p3)) >> 8) + ((var1 * i64::from(self.p2)) << 12);
        var1 = (((1i64 << 47) + var1) * i64::from(self.p1)) >> 33;
        if var1 == 0 {
            return 0;
        }
        let mut p: i64 = 1048576 - i64::from(adc_p);
        p = (((p << 31) - var2) * 3125) / var1;
        let var1 = (i64::from(self.p9) * (p >> 13) * (p >> 13)) >> 25;
        let var2 = (i64::from(self.p8) * p) >> 19;
        (((p + var1 + var2) >> 8) + (i64::from(self.p7) << 4)) as u32
    }

    /// Relative humidity in % as Q22.10 (divide by 1024).
    pub fn humidity(&self, adc_h: i32, t_fine: i32) -> u32 {
        let (h1, h2, h3) = (i64::from(self.h1), i64::from(self.h2), i64::from(self.h3));
        let (h4, h5, h6) = (i64::from(self.h4), i64::from(self.h5), i64::from(self.h6));
        let adc_h = i64::from(adc_h);
        let mut v = i64::from(t_fine) - 76800;
        v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15)
            * (((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192)
                >> 14);
        v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4;
        (v.clamp(0, 419430400) >> 12) as u32
    }
}

/// One compensated measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// °C.
    pub celsius: f64,
    /// Pa.
    pub pascal: f64,
    /// % relative humidity.
    pub humidity: f64,
}

/// Decodes the 8 measurement bytes at `REG_DATA` into raw readings
/// (pressure, temperature: 20 bits; humidity: 16 bits).
pub fn raw_readings(d: &[u8; 8]) -> (i32, i32, i32) {
    let p = (i32::from(d[0]) << 12) | (i32::from(d[1]) << 4) | (i32::from(d[2]) >> 4);
    let t = (i32::from(d[3]) << 12) | (i32::from(d[4]) << 4) | (i32::from(d[5]) >> 4);
    let h = (i32::from(d[6]) << 8) | i32::from(d[7]);
    (p, t, h)
}

/// Compensates raw readings.
pub fn compensate(cal: &Calibration, d: &[u8; 8]) -> Measurement {
    let (p, t, h) = raw_readings(d);
    let (centi, t_fine) = cal.temperature(t);
    Measurement {
        celsius: f64::from(centi) / 100.0,
        pascal: f64::from(cal.pressure(p, t_fine)) / 256.0,
        humidity: f64::from(cal.humidity(h, t_fine)) / 1024.0,
    }
}

/// Why the driver failed.
#[derive(Debug, PartialEq, Eq)]
pub enum DriverError<E> {
    /// The bus failed.
    Bus(E),
    /// The chip id is not a BME280's.
    NotABme280(u8),
}

/// A BME280 on an `embedded-hal` bus: reads the calibration once, then
/// takes forced-mode measurements (oversampling x1 each).
pub struct Bme280<I> {
    i2c: I,
    address: u8,
    calibration: Calibration,
}

impl<I: I2c> Bme280<I> {
    /// Checks the chip id and reads the calibration.
    pub fn new(mut i2c: I, address: u8) -> Result<Self, DriverError<I::Error>> {
        let mut id = [0u8];
        i2c.write_read(address, &[REG_ID], &mut id)
            .map_err(DriverError::Bus)?;
        if id[0] != CHIP_ID {
            return Err(DriverError::NotABme280(id[0]));
        }
        let mut a = [0u8; 26];
        let mut b = [0u8; 7];
        i2c.write_read(address, &[REG_CALIB00], &mut a)
            .map_err(DriverError::Bus)?;
        i2c.write_read(address, &[REG_CALIB26], &mut b)
            .map_err(DriverError::Bus)?;
        Ok(Bme280 {
            i2c,
            address,
            calibration: Calibration::from_registers(&a, &b),
        })
    }

    /// The calibration read from the chip.
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Takes one forced-mode measurement.
    pub fn measure(&mut self) -> Result<Measurement, DriverError<I::Error>> {
        // ctrl_hum first: it takes effect at the ctrl_meas write.
        self.i2c
            .write(
                self.address,
                &[REG_CTRL_HUM, 0b001, REG_CTRL_MEAS, 0b001_001_01],
            )
            .map_err(DriverError::Bus)?;
        let mut d = [0u8; 8];
        self.i2c
            .write_read(self.address, &[REG_DATA], &mut d)
            .map_err(DriverError::Bus)?;
        Ok(compensate(&self.calibration, &d))
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The datasheet's worked example (BMP280 datasheet 3.12): raw 519888
    /// is 25.08 °C, raw 415148 then 100653.27 Pa.
    #[test]
    fn compensation_matches_the_datasheet_example() {
        let c = Calibration::TYPICAL;
        let (centi, t_fine) = c.temperature(519888);
        assert_eq!(centi, 2508);
        assert_eq!(t_fine, 128422);
        let pa = f64::from(c.pressure(415148, t_fine)) / 256.0;
        assert!((pa - 100653.27).abs() < 1.0, "{pa}");
    }

    #[test]
    fn calibration_registers_round_trip() {
        let c = Calibration {
            h4: -300,
            h5: -7,
            h6: -3,
            ..Calibration::TYPICAL
        };
        let (a, b) = c.to_registers();
        assert_eq!(Calibration::from_registers(&a, &b), c);
        let (a, b) = Calibration::TYPICAL.to_registers();
        assert_eq!(Calibration::from_registers(&a, &b), Calibration::TYPICAL);
    }

    /// The driver's exact transactions, against `embedded-hal-mock`.
    #[test]
    fn the_driver_speaks_the_register_map() {
        use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};
        let (a, b) = Calibration::TYPICAL.to_registers();
        let data = [0x65, 0x5a, 0xc0, 0x7e, 0xed, 0x00, 0x80, 0x00];
        let expect = [
            T::write_read(ADDRESS, vec![REG_ID], vec![CHIP_ID]),
            T::write_read(ADDRESS, vec![REG_CALIB00], a.to_vec()),
            T::write_read(ADDRESS, vec![REG_CALIB26], b.to_vec()),
            T::write(ADDRESS, vec![REG_CTRL_HUM, 1, REG_CTRL_MEAS, 0x25]),
            T::write_read(ADDRESS, vec![REG_DATA], data.to_vec()),
        ];
        let mut bus = Mock::new(&expect);
        let mut s = Bme280::new(bus.clone(), ADDRESS).unwrap();
        assert_eq!(*s.calibration(), Calibration::TYPICAL);
        let m = s.measure().unwrap();
        assert!((m.celsius - 25.08).abs() < 0.01, "{m:?}");
        bus.done();
    }

    #[test]
    fn another_chip_is_refused() {
        use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};
        let mut bus = Mock::new(&[T::write_read(ADDRESS, vec![REG_ID], vec![0x58])]);
        assert!(matches!(
            Bme280::new(bus.clone(), ADDRESS),
            Err(DriverError::NotABme280(0x58))
        ));
        bus.done();
    }
}
