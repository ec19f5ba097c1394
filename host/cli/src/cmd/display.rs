//! `phantom display`: renders what a process's display shows to a PNG.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_runtime::devices::rendered_frame;

/// Arguments of `phantom display`.
///
/// A simulated display (`sim:<name>`) is read live: the host writes each
/// frame it shows to `DIR/NAME/sim-<name>.fb` (once the flush is durable),
/// so this works while `phantom run` holds the directory. Without that file
/// (the process never ran with the display, or a Linux display), or with
/// `--checkpoint`, it renders the last frame flushed as of the newest
/// checkpoint.
#[derive(Args)]
pub struct DisplayArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process name.
    name: String,
    /// The display's grant name (needed if the process has several).
    #[arg(long)]
    device: Option<String>,
    /// Render the newest checkpoint's frame, not the live one.
    #[arg(long)]
    checkpoint: bool,
    /// Where to write the PNG.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

/// Runs `phantom display`.
pub fn run(a: DisplayArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::open(&a.data)?.process_dir(&a.name)?;
    let frame = rendered_frame(&dir, a.device.as_deref(), a.checkpoint)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot render the display of '{}'", a.name))?;
    let png = phantom_devices::display::encode_png(frame.geometry, &frame.pixels)
        .map_err(anyhow::Error::msg)
        .context("cannot encode the PNG")?;
    std::fs::write(&a.output, png)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    println!(
        "{}: display {} ({}), {}",
        a.output.display(),
        frame.name,
        frame.geometry,
        frame.source
    );
    Ok(ExitCode::SUCCESS)
}
