//! Scenarios: what the simulated world does over time, so tests and demos
//! are reproducible.
//!
//! ```toml
//! temperature = [{ at_s = 0, value = 18.0 }, { at_s = 60, value = 24.0 }]
//! humidity = [{ at_s = 0, value = 45.0 }]
//! gpio = [{ at_s = 5, pin = "0/4", level = "high" }]
//! ```
//! Temperature (°C), humidity (%) and pressure (Pa) are linear between their
//! points and held before the first and after the last; a GPIO input takes
//! its scripted level at that time. Time is the process time the host gives
//! the device, in seconds.

use serde::Deserialize;

/// One point of a curve.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// Seconds.
    pub at_s: f64,
    /// The value then.
    pub value: f64,
}

/// A scripted input level.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioChange {
    /// Seconds.
    pub at_s: f64,
    /// `<chip>/<line>` of a simulated bank.
    pub pin: String,
    /// `high` or `low`.
    pub level: Level,
}

/// A level, as a scenario spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Low.
    Low,
    /// High.
    High,
}

/// What the environment is at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Environment {
    /// °C.
    pub celsius: f64,
    /// % relative humidity.
    pub humidity: f64,
    /// Pa.
    pub pascal: f64,
}

/// A scenario (the default: 20 °C, 40 %, 101325 Pa, no inputs).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// °C over time.
    #[serde(default)]
    pub temperature: Vec<Point>,
    /// % relative humidity over time.
    #[serde(default)]
    pub humidity: Vec<Point>,
    /// Pa over time.
    #[serde(default)]
    pub pressure: Vec<Point>,
    /// Scripted input levels.
    #[serde(default)]
    pub gpio: Vec<GpioChange>,
}

fn at(points: &[Point], t: f64, default: f64) -> f64 {
    let Some(first) = points.first() else {
        return default;
    };
    if t <= first.at_s {
        return first.value;
    }
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        if t <= b.at_s {
            if b.at_s <= a.at_s {
                return b.value;
            }
            return a.value + (b.value - a.value) * (t - a.at_s) / (b.at_s - a.at_s);
        }
    }
    points.last().map_or(default, |p| p.value)
}

/// A scenario time: a finite number of seconds, not negative.
fn check_time(what: &str, at_s: f64) -> Result<(), String> {
    if !at_s.is_finite() || at_s < 0.0 {
        return Err(format!(
            "invalid scenario: a {what} point at {at_s} s (times are seconds from 0)"
        ));
    }
    Ok(())
}

impl Scenario {
    /// Parses a scenario; errors name the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| format!("invalid scenario: {e}"))?;
        // Spelled as in the manifest (`sim:0/4`) or bare (`0/4`).
        for c in &mut s.gpio {
            if let Some(bare) = c.pin.strip_prefix("sim:") {
                c.pin = bare.to_string();
            }
        }
        for v in [&mut s.temperature, &mut s.humidity, &mut s.pressure] {
            v.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        }
        s.gpio.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        Ok(s)
    }

    /// The environment at `time_ns`.
    pub fn environment_at(&self, time_ns: u64) -> Environment {
        let t = time_ns as f64 / 1e9;
        Environment {
            celsius: at(&self.temperature, t, 20.0),
            humidity: at(&self.humidity, t, 40.0),
            pascal: at(&self.pressure, t, 101325.0),
        }
    }

    /// What a scenario given to a spawn must also hold (a stored one of a
    /// running process is read without it, as it was accepted): times
    /// finite and not negative, values the simulated BME280 measures (its
    /// datasheet's ranges: past them its readings come back clamped or
    /// wrapped), pins written `<chip>/<line>`.
    pub fn check(&self) -> Result<(), String> {
        let curves: [(&str, &Vec<Point>, f64, f64, &str); 3] = [
            ("temperature", &self.temperature, -40.0, 85.0, "°C"),
            ("humidity", &self.humidity, 0.0, 100.0, "%"),
            ("pressure", &self.pressure, 30_000.0, 110_000.0, "Pa"),
        ];
        for (what, points, low, high, unit) in curves {
            for p in points {
                check_time(what, p.at_s)?;
                if !(low..=high).contains(&p.value) {
                    return Err(format!(
                        "invalid scenario: {what} {} at {} s is outside what the simulated sensor measures ({low} to {high} {unit})",
                        p.value, p.at_s
                    ));
                }
            }
        }
        for c in &self.gpio {
            check_time("gpio", c.at_s)?;
            let well_formed = c
                .pin
                .rsplit_once('/')
                .is_some_and(|(chip, line)| !chip.is_empty() && line.parse::<u32>().is_ok());
            if !well_formed {
                return Err(format!(
                    "invalid scenario: gpio pin `{}` is not `<chip>/<line>` of a simulated pin (`0/4`)",
                    c.pin
                ));
            }
        }
        Ok(())
    }

    /// The pins (`chip/line`) the scenario drives.
    pub fn pins(&self) -> std::collections::BTreeSet<&str> {
        self.gpio.iter().map(|c| c.pin.as_str()).collect()
    }

    /// The scripted level of input `chip/line` at `time_ns`, if any.
    pub fn input_at(&self, chip: &str, line: u32, time_ns: u64) -> Option<bool> {
        let t = time_ns as f64 / 1e9;
        let name = format!("{chip}/{line}");
        self.gpio
            .iter()
            .rev()
            .find(|c| c.pin == name && c.at_s <= t)
            .map(|c| c.level == Level::High)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_scenarios_are_refused_and_manifest_pins_read() {
        for (text, needle) in [
            ("temperature = [{ at_s = 0, value = nan }]", "outside"),
            ("pressure = [{ at_s = 0, value = 5.0 }]", "outside"),
            ("humidity = [{ at_s = -1, value = 50.0 }]", "seconds from 0"),
            (
                "gpio = [{ at_s = nan, pin = \"0/4\", level = \"low\" }]",
                "seconds",
            ),
            (
                "gpio = [{ at_s = 1, pin = \"0/x\", level = \"low\" }]",
                "<chip>/<line>",
            ),
            (
                "gpio = [{ at_s = 1, pin = \"/4\", level = \"low\" }]",
                "<chip>/<line>",
            ),
        ] {
            let e = Scenario::parse(text).and_then(|s| s.check()).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let s =
            Scenario::parse("gpio = [{ at_s = 1, pin = \"sim:0/4\", level = \"high\" }]").unwrap();
        assert_eq!(s.pins().into_iter().collect::<Vec<_>>(), ["0/4"]);
        assert_eq!(s.input_at("0", 4, 2_000_000_000), Some(true));
    }

    #[test]
    fn curves_are_linear_and_held() {
        let s = Scenario::parse(
            "temperature = [{ at_s = 10, value = 20.0 }, { at_s = 0, value = 10.0 }]\ngpio = [{ at_s = 1, pin = \"0/4\", level = \"high\" }, { at_s = 2, pin = \"0/4\", level = \"low\" }]",
        )
        .unwrap();
        let c = |s_: f64| s.environment_at((s_ * 1e9) as u64).celsius;
        assert_eq!(c(0.0), 10.0);
        assert_eq!(c(5.0), 15.0);
        assert_eq!(c(100.0), 20.0);
        assert_eq!(s.environment_at(0).humidity, 40.0);
        assert_eq!(s.input_at("0", 4, 500_000_000), None);
        assert_eq!(s.input_at("0", 4, 1_500_000_000), Some(true));
        assert_eq!(s.input_at("0", 4, 2_000_000_000), Some(false));
        let e = Scenario::parse("\ntemperature = 3").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }
}
