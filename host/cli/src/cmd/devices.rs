//! `phantom devices`: a process's device grants, and the devices it holds
//! open (mode, level, bus, port, rate, display): now, if a host runs it,
//! else at its newest checkpoint. A running host also says which are lost,
//! and why (the device and the OS error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_runtime::devices::{OpenKind, report_live};

/// Arguments of `phantom devices`.
#[derive(Args)]
pub struct DevicesArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process name.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom devices`.
pub fn run(a: DevicesArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::open(&a.data)?.process_dir(&a.name)?;
    let r = report_live(&a.data, &a.name, &dir).map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    if r.grants.is_empty() {
        println!("no devices granted");
    }
    for (name, g) in &r.grants.gpio {
        let modes: Vec<&str> = g.modes.iter().map(|m| m.name()).collect();
        println!(
            "grant gpio.{} pin {} modes {}",
            name.as_str(),
            g.pin,
            modes.join(",")
        );
    }
    for (name, g) in &r.grants.i2c {
        let addrs: Vec<String> = g
            .addresses
            .iter()
            .map(|a| format!("{:#04x}", a.get()))
            .collect();
        println!(
            "grant i2c.{} bus {} addresses {}",
            name.as_str(),
            g.bus,
            addrs.join(",")
        );
    }
    for (name, g) in &r.grants.serial {
        let bauds: Vec<String> = g.bauds.iter().map(u32::to_string).collect();
        println!(
            "grant serial.{} port {} baud {} bauds {}",
            name.as_str(),
            g.port,
            g.baud,
            bauds.join(",")
        );
    }
    for (name, g) in &r.grants.display {
        println!(
            "grant display.{} device {} {}",
            name.as_str(),
            g.device,
            g.geometry()
        );
    }
    for (name, g) in &r.grants.spi {
        let modes: Vec<String> = g.modes.iter().map(|m| m.get().to_string()).collect();
        println!(
            "grant spi.{} device {} max_hz {} modes {}",
            name.as_str(),
            g.device,
            g.max_hz,
            modes.join(",")
        );
    }
    for (name, g) in &r.grants.sensor {
        println!(
            "grant sensor.{} device {} address {:#04x} max_rate_mhz {}",
            name.as_str(),
            g.device,
            g.address,
            g.max_rate_mhz
        );
    }
    let at = match (r.live, r.checkpoint) {
        (true, _) => "now (running)".to_string(),
        (false, Some(c)) => format!("checkpoint {c}"),
        (false, None) => "no checkpoint".to_string(),
    };
    println!("open {at}: {}", r.open.len());
    for d in &r.open {
        match &d.kind {
            OpenKind::Gpio {
                pin,
                mode,
                high,
                watch,
            } => println!(
                "  {} {} gpio {pin} {} {}{}",
                d.handle,
                d.name,
                mode.name(),
                if *high { "high" } else { "low" },
                watch.map_or(String::new(), |w| format!(" watch {w:?}").to_lowercase())
            ),
            OpenKind::I2c { bus } => println!("  {} {} i2c {bus}", d.handle, d.name),
            OpenKind::Serial { port, baud, watch } => println!(
                "  {} {} serial {port} {baud}{}",
                d.handle,
                d.name,
                if *watch { " watch" } else { "" }
            ),
            OpenKind::Display { device, geometry } => {
                println!("  {} {} display {device} {geometry}", d.handle, d.name)
            }
            OpenKind::Spi { device, config } => println!(
                "  {} {} spi {device} mode {} {} Hz",
                d.handle,
                d.name,
                config.mode.get(),
                config.hz
            ),
            OpenKind::Sensor {
                device,
                address,
                rate_mhz,
                ..
            } => println!(
                "  {} {} sensor {device} {address:#04x} rate {rate_mhz} mHz",
                d.handle, d.name
            ),
        }
        if let Some(why) = r.lost.get(&d.handle) {
            println!("    lost: {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
