//! The `devices` section: the devices a process holds open, in the order it
//! opened them, with the mode and output level it set on each, and the
//! last number handed out. Images written before devices existed have no
//! such section and restore with nothing open.

use std::collections::BTreeSet;

use super::{Section, from_json, to_json};
use crate::iface::devices::{DevicesState, MAX_OPEN_DEVICES, OpenKind};

impl Section for DevicesState {
    const NAME: &'static str = "devices";

    fn save(&self) -> Vec<u8> {
        to_json(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let state: DevicesState = from_json(bytes)?;
        if state.open.len() > MAX_OPEN_DEVICES {
            return Err(format!("over {MAX_OPEN_DEVICES} open devices"));
        }
        let mut seen = BTreeSet::new();
        let mut last = 0;
        for d in &state.open {
            if d.handle == 0 || d.handle > state.last_handle || !seen.insert(d.handle) {
                return Err(format!(
                    "device number {} is 0, repeated or above the last handed out ({})",
                    d.handle, state.last_handle
                ));
            }
            // The order opened is the order of the numbers.
            if d.handle < last {
                return Err("its devices are not in the order opened".into());
            }
            last = d.handle;
            if phantom_devices::manifest::GrantName::new(&d.name).is_err() {
                return Err(format!("`{}` is not a device name", d.name));
            }
            let parsed = match &d.kind {
                OpenKind::Gpio { pin, .. } => pin.parse::<phantom_devices::PinRef>().map(|_| ()),
                OpenKind::I2c { bus } => bus.parse::<phantom_devices::BusRef>().map(|_| ()),
                OpenKind::Serial { port, .. } => {
                    port.parse::<phantom_devices::PortRef>().map(|_| ())
                }
                OpenKind::Display { device, geometry } => device
                    .parse::<phantom_devices::display::DisplayRef>()
                    .and_then(|_| {
                        phantom_devices::display::Geometry::new(
                            geometry.width,
                            geometry.height,
                            geometry.format,
                        )
                        .map(|_| ())
                    }),
                // The mode (0..=3) is checked as it is parsed.
                OpenKind::Spi { device, .. } => {
                    device.parse::<phantom_devices::SpiRef>().map(|_| ())
                }
                OpenKind::Sensor { device, .. } => {
                    device.parse::<phantom_devices::SensorRef>().map(|_| ())
                }
            };
            parsed.map_err(|e| format!("device {}: {e}", d.handle))?;
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::devices::OpenDevice;
    use phantom_devices::PinMode;

    #[test]
    fn round_trip() {
        let s = DevicesState {
            open: vec![
                OpenDevice {
                    handle: 1,
                    name: "relay".into(),
                    kind: OpenKind::Gpio {
                        pin: "sim:0/17".into(),
                        mode: PinMode::Output,
                        high: true,
                        watch: None,
                    },
                },
                OpenDevice {
                    handle: 3,
                    name: "env".into(),
                    kind: OpenKind::I2c {
                        bus: "sim:bme280".into(),
                    },
                },
            ],
            last_handle: 3,
        };
        assert_eq!(DevicesState::restore(&s.save()).unwrap(), s);
        let mut bad = s.clone();
        bad.last_handle = 2;
        assert!(
            DevicesState::restore(&bad.save())
                .unwrap_err()
                .contains("above")
        );
        let mut bad = s.clone();
        bad.open.swap(0, 1);
        assert!(
            DevicesState::restore(&bad.save())
                .unwrap_err()
                .contains("order")
        );
        let mut bad = s;
        bad.open[1].kind = OpenKind::I2c {
            bus: "usb:x".into(),
        };
        assert!(
            DevicesState::restore(&bad.save())
                .unwrap_err()
                .contains("backend")
        );
        assert!(DevicesState::restore(b"[").is_err());
    }

    #[test]
    fn a_serial_port_round_trips_and_a_bad_port_is_refused() {
        let port = |port: &str, watch| DevicesState {
            open: vec![OpenDevice {
                handle: 1,
                name: "link".into(),
                kind: OpenKind::Serial {
                    port: port.into(),
                    baud: 115200,
                    watch,
                },
            }],
            last_handle: 1,
        };
        for s in [port("sim:loopback", true), port("linux:/dev/pts/3", false)] {
            assert_eq!(DevicesState::restore(&s.save()).unwrap(), s);
        }
        for bad in ["sim:uart", "linux:ttyS0", "ttyS0"] {
            assert!(
                DevicesState::restore(&port(bad, false).save()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn spi_and_sensor_state_round_trips_and_bad_devices_are_refused() {
        let state = |spi: &str, sensor: &str| DevicesState {
            open: vec![
                OpenDevice {
                    handle: 1,
                    name: "env".into(),
                    kind: OpenKind::Spi {
                        device: spi.into(),
                        config: phantom_devices::SpiConfig {
                            mode: phantom_devices::SpiMode::new(3).unwrap(),
                            hz: 8_000_000,
                        },
                    },
                },
                OpenDevice {
                    handle: 2,
                    name: "room".into(),
                    kind: OpenKind::Sensor {
                        device: sensor.into(),
                        address: 0x76,
                        rate_mhz: 20_000,
                        next_ns: 1_234_567,
                    },
                },
            ],
            last_handle: 2,
        };
        for s in [
            state("sim:bme280", "sim:bme280"),
            state("linux:/dev/spidev0.0", "linux:/dev/i2c-1"),
        ] {
            assert_eq!(DevicesState::restore(&s.save()).unwrap(), s);
        }
        for (spi, sensor) in [("sim:flash", "sim:bme280"), ("sim:bme280", "i2c-1")] {
            assert!(
                DevicesState::restore(&state(spi, sensor).save()).is_err(),
                "{spi} {sensor}"
            );
        }
        // A mode outside 0..=3 in a crafted section is refused too.
        let text = String::from_utf8(state("sim:bme280", "sim:bme280").save())
            .unwrap()
            .replace("\"mode\":3", "\"mode\":9");
        assert!(DevicesState::restore(text.as_bytes()).is_err(), "{text}");
    }
}
