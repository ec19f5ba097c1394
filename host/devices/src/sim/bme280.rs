//! A simulated BME280: the register map of `crate::bme280`, measuring the
//! scenario's environment when the controller asks for a measurement.
//!
//! - Writes are a register address, then data bytes; each further pair is
//!   (register, data), as on the real chip (no auto-increment on writes).
//!   Writable: `ctrl_hum`, `ctrl_meas`, `config`, `reset` (0xb6 resets).
//! - Reads start at the last address written and auto-increment.
//! - Writing `ctrl_meas` with mode forced (01 or 10) measures at that time
//!   and returns to sleep; in normal mode (11) every read that starts in the
//!   measurement registers measures. A quantity with oversampling 0 reads as
//!   skipped (0x80000, humidity 0x8000). `ctrl_hum` takes effect at the next
//!   `ctrl_meas` write.
//! - Raw readings are the inverse of the datasheet's compensation for the
//!   chip's calibration words (a binary search), so a driver that
//!   compensates gets the scenario's values back to the formulas' precision.
//! - On SPI (datasheet 6.3; modes 0 and 3, up to 10 MHz) each frame is a
//!   control byte, bit 7 set to read and clear to write, bits 6..0 the
//!   register's address without its bit 7 (every register is at 0x80 or
//!   above); a read then returns bytes from that register on,
//!   auto-incrementing, and a write takes one data byte, after which the
//!   next byte is a control byte again (pairs, as on I2C). MISO is not
//!   driven during control and write bytes (it reads 0xff).

#![allow(
    clippy::unusual_byte_groupings,
    reason = "ctrl_meas literals are grouped by its fields: osrs_t, osrs_p, mode"
)]

use std::sync::Arc;

use embedded_hal::i2c::ErrorKind;

use super::i2c::SimI2cDevice;
use crate::bme280::*;
use crate::scenario::Scenario;

/// A simulated BME280.
pub struct SimBme280 {
    regs: [u8; 256],
    pointer: u8,
    /// `ctrl_hum` as written (applied at the next `ctrl_meas` write).
    ctrl_hum_written: u8,
    calibration: Calibration,
    scenario: Arc<Scenario>,
    /// Where the current SPI frame is.
    spi: SpiPhase,
}

/// Where an SPI frame is: what the next byte means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpiPhase {
    /// A control byte (R/W bit, address).
    Control,
    /// The data byte for this register.
    Write(u8),
    /// Data out, from the pointer on.
    Read,
}

/// The smallest `x` in `lo..=hi` with `f(x) >= target` for an increasing
/// `f` (or `hi`).
fn search(lo: i32, hi: i32, target: i64, f: impl Fn(i32) -> i64) -> i32 {
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if f(mid) >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

impl SimBme280 {
    /// A chip with typical calibration words, after power-on.
    pub fn new(scenario: Arc<Scenario>) -> Self {
        let mut s = SimBme280 {
            regs: [0; 256],
            pointer: 0,
            ctrl_hum_written: 0,
            calibration: Calibration::TYPICAL,
            scenario,
            spi: SpiPhase::Control,
        };
        s.reset();
        s
    }

    fn reset(&mut self) {
        self.regs = [0; 256];
        self.regs[usize::from(REG_ID)] = CHIP_ID;
        let (a, b) = self.calibration.to_registers();
        let c0 = usize::from(REG_CALIB00);
        self.regs[c0..c0 + 26].copy_from_slice(&a);
        let c26 = usize::from(REG_CALIB26);
        self.regs[c26..c26 + 7].copy_from_slice(&b);
        self.ctrl_hum_written = 0;
        self.store_raw(0x80000, 0x80000, 0x8000);
    }

    fn store_raw(&mut self, p: i32, t: i32, h: i32) {
        let d = usize::from(REG_DATA);
        let p = p as u32;
        let t = t as u32;
        self.regs[d] = (p >> 12) as u8;
        self.regs[d + 1] = (p >> 4) as u8;
        self.regs[d + 2] = ((p & 0xf) << 4) as u8;
        self.regs[d + 3] = (t >> 12) as u8;
        self.regs[d + 4] = (t >> 4) as u8;
        self.regs[d + 5] = ((t & 0xf) << 4) as u8;
        self.regs[d + 6] = (h >> 8) as u8;
        self.regs[d + 7] = h as u8;
    }

    /// Measures the scenario's environment at `now_ns` into the registers.
    fn measure(&mut self, now_ns: u64) {
        let env = self.scenario.environment_at(now_ns);
        let c = self.calibration;
        let meas = self.regs[usize::from(REG_CTRL_MEAS)];
        let (osrs_t, osrs_p) = (meas >> 5, (meas >> 2) & 7);
        let osrs_h = self.regs[usize::from(REG_CTRL_HUM)] & 7;
        let target_t = (env.celsius * 100.0).round() as i64;
        let adc_t = search(0, 0xfffff, target_t, |x| i64::from(c.temperature(x).0));
        let t_fine = c.temperature(adc_t).1;
        // Pressure falls as the raw reading rises.
        let target_p = (env.pascal * 256.0).round() as i64;
        let adc_p = search(0, 0xfffff, -target_p, |x| -i64::from(c.pressure(x, t_fine)));
        let target_h = (env.humidity.clamp(0.0, 100.0) * 1024.0).round() as i64;
        let adc_h = search(0, 0xffff, target_h, |x| i64::from(c.humidity(x, t_fine)));
        let skip = |osrs: u8, v: i32, skipped: i32| if osrs == 0 { skipped } else { v };
        self.store_raw(
            skip(osrs_p, adc_p, 0x80000),
            skip(osrs_t, adc_t, 0x80000),
            skip(osrs_h, adc_h, 0x8000),
        );
    }

    fn write_register(&mut self, reg: u8, value: u8, now_ns: u64) {
        match reg {
            REG_RESET if value == RESET_WORD => self.reset(),
            REG_CTRL_HUM => self.ctrl_hum_written = value & 7,
            REG_CTRL_MEAS => {
                self.regs[usize::from(REG_CTRL_HUM)] = self.ctrl_hum_written;
                self.regs[usize::from(REG_CTRL_MEAS)] = value;
                if matches!(value & 3, 1 | 2) {
                    self.measure(now_ns);
                    // Back to sleep once the forced measurement is done.
                    self.regs[usize::from(REG_CTRL_MEAS)] = value & !3;
                }
            }
            REG_CONFIG => self.regs[usize::from(REG_CONFIG)] = value,
            // Read-only registers ignore writes, as on the chip.
            _ => {}
        }
    }
}

impl SimI2cDevice for SimBme280 {
    fn write(&mut self, bytes: &[u8], now_ns: u64) -> Result<(), ErrorKind> {
        let Some((&first, rest)) = bytes.split_first() else {
            return Ok(());
        };
        self.pointer = first;
        let mut reg = first;
        for (k, &b) in rest.iter().enumerate() {
            if k % 2 == 0 {
                self.write_register(reg, b, now_ns);
            } else {
                reg = b;
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], now_ns: u64) -> Result<(), ErrorKind> {
        let normal = self.regs[usize::from(REG_CTRL_MEAS)] & 3 == 3;
        if normal && (REG_DATA..=REG_DATA + 7).contains(&self.pointer) {
            self.measure(now_ns);
        }
        for b in buf.iter_mut() {
            *b = self.regs[usize::from(self.pointer)];
            self.pointer = self.pointer.wrapping_add(1);
        }
        Ok(())
    }
}

impl super::spi::SimSpiChip for SimBme280 {
    fn select(&mut self) {
        self.spi = SpiPhase::Control;
    }

    fn exchange(&mut self, mosi: u8, now_ns: u64) -> u8 {
        match self.spi {
            SpiPhase::Control => {
                let reg = mosi | 0x80;
                if mosi & 0x80 != 0 {
                    self.pointer = reg;
                    let normal = self.regs[usize::from(REG_CTRL_MEAS)] & 3 == 3;
                    if normal && (REG_DATA..=REG_DATA + 7).contains(&reg) {
                        self.measure(now_ns);
                    }
                    self.spi = SpiPhase::Read;
                } else {
                    self.spi = SpiPhase::Write(reg);
                }
                super::spi::MISO_IDLE
            }
            SpiPhase::Write(reg) => {
                self.write_register(reg, mosi, now_ns);
                self.spi = SpiPhase::Control;
                super::spi::MISO_IDLE
            }
            SpiPhase::Read => {
                let b = self.regs[usize::from(self.pointer)];
                self.pointer = self.pointer.wrapping_add(1);
                b
            }
        }
    }

    fn follows(&self, config: &crate::spi::SpiConfig) -> bool {
        matches!(config.mode.get(), 0 | 3) && config.hz <= SPI_MAX_HZ
    }
}

/// The BME280's fastest SPI clock (datasheet table 1).
pub const SPI_MAX_HZ: u32 = 10_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{I2cOp, SimI2cBus, SimWorld};
    use embedded_hal::i2c::{I2c, NoAcknowledgeSource};

    fn world(text: &str) -> (SimI2cBus, Bme280<SimI2cBus>) {
        let mut w = SimWorld::new(Scenario::parse(text).unwrap());
        let bus = w.bus("bme280").unwrap();
        let dev = Bme280::new(bus.clone(), ADDRESS).unwrap();
        (bus, dev)
    }

    /// The driver reads back the scenario's curve through the register map
    /// and the datasheet's formulas.
    #[test]
    fn the_driver_reads_the_scenario() {
        let (bus, mut dev) = world(
            "temperature = [{ at_s = 0, value = 18.0 }, { at_s = 100, value = 28.0 }]\nhumidity = [{ at_s = 0, value = 55.5 }]\npressure = [{ at_s = 0, value = 98000.0 }]",
        );
        assert_eq!(*dev.calibration(), Calibration::TYPICAL);
        for (s, want) in [(0u64, 18.0), (50, 23.0), (100, 28.0), (500, 28.0)] {
            bus.set_time(s * 1_000_000_000);
            let m = dev.measure().unwrap();
            assert!((m.celsius - want).abs() <= 0.011, "{s}s: {m:?}");
            assert!((m.humidity - 55.5).abs() < 0.05, "{m:?}");
            assert!((m.pascal - 98000.0).abs() < 1.0, "{m:?}");
        }
    }

    #[test]
    fn registers_behave_like_the_chip() {
        let (mut bus, _) = world("");
        let mut id = [0u8];
        bus.write_read(ADDRESS, &[REG_ID], &mut id).unwrap();
        assert_eq!(id[0], CHIP_ID);
        // Sleep mode with nothing measured: skipped readings.
        let mut d = [0u8; 8];
        bus.write_read(ADDRESS, &[REG_DATA], &mut d).unwrap();
        assert_eq!(raw_readings(&d), (0x80000, 0x80000, 0x8000));
        // Forced with temperature only: pressure and humidity skipped.
        bus.write(ADDRESS, &[REG_CTRL_MEAS, 0b001_000_01]).unwrap();
        bus.write_read(ADDRESS, &[REG_DATA], &mut d).unwrap();
        let (p, t, h) = raw_readings(&d);
        assert_eq!((p, h), (0x80000, 0x8000));
        assert_ne!(t, 0x80000);
        let mut meas = [0u8];
        bus.write_read(ADDRESS, &[REG_CTRL_MEAS], &mut meas)
            .unwrap();
        assert_eq!(meas[0], 0b001_000_00, "back to sleep");
        // Read-only registers ignore writes; reset restores power-on state.
        bus.write(ADDRESS, &[REG_ID, 0x12, REG_CONFIG, 0xa0])
            .unwrap();
        bus.write_read(ADDRESS, &[REG_ID], &mut id).unwrap();
        assert_eq!(id[0], CHIP_ID);
        bus.write(ADDRESS, &[REG_RESET, RESET_WORD]).unwrap();
        let mut cfg = [0u8];
        bus.write_read(ADDRESS, &[REG_CONFIG], &mut cfg).unwrap();
        assert_eq!(cfg[0], 0);
        // Nobody at 0x77.
        let e = bus.write(0x77, &[0]).unwrap_err();
        assert_eq!(
            embedded_hal::i2c::Error::kind(&e),
            embedded_hal::i2c::ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
        );
        assert!(bus.log().contains(&I2cOp::Write {
            address: ADDRESS,
            bytes: vec![REG_RESET, RESET_WORD]
        }));
        bus.unplug();
        assert_eq!(bus.write(ADDRESS, &[0]), Err(crate::sim::SimI2cError::Lost));
    }
}
