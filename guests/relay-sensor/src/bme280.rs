//! A BME280 over `phantom:devices/i2c`: a forced temperature measurement
//! with the datasheet's compensation (BST-BME280-DS002). Shared with the
//! thermostat guest (`#[path]`): both generate the same bindings.

use crate::phantom::devices::i2c;

/// The BME280's address (SDO to ground).
pub const ADDRESS: u16 = 0x76;
/// Registers.
pub const REG_ID: u8 = 0xd0;
const REG_CALIB00: u8 = 0x88;
const REG_CTRL_HUM: u8 = 0xf2;
const REG_CTRL_MEAS: u8 = 0xf4;
const REG_DATA: u8 = 0xf7;

/// The datasheet's temperature compensation, in 0.01 °C.
pub fn temperature(cal: &[u8], adc_t: i32) -> i32 {
    let t1 = i32::from(u16::from_le_bytes([cal[0], cal[1]]));
    let t2 = i32::from(i16::from_le_bytes([cal[2], cal[3]]));
    let t3 = i32::from(i16::from_le_bytes([cal[4], cal[5]]));
    let var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11;
    let d = (adc_t >> 4) - t1;
    let var2 = (((d * d) >> 12) * t3) >> 14;
    ((var1 + var2) * 5 + 128) >> 8
}

/// One forced measurement: the temperature in 0.01 °C.
pub fn measure(bus: i2c::Bus) -> Result<i32, i2c::I2cError> {
    let cal = i2c::write_read(bus, ADDRESS, &[REG_CALIB00], 6)?;
    // Humidity x1, then temperature x1, pressure x1, forced mode.
    i2c::write(bus, ADDRESS, &[REG_CTRL_HUM, 1, REG_CTRL_MEAS, 0x25])?;
    let d = i2c::write_read(bus, ADDRESS, &[REG_DATA], 8)?;
    let adc_t = (i32::from(d[3]) << 12) | (i32::from(d[4]) << 4) | (i32::from(d[5]) >> 4);
    Ok(temperature(&cal, adc_t))
}
