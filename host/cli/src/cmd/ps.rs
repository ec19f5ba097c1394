//! `phantom ps`: the processes of a data directory, as the runtime's
//! `status` describes them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_runtime::status;

/// Arguments of `phantom ps`.
#[derive(Args)]
pub struct PsArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom ps`.
pub fn run(a: PsArgs) -> anyhow::Result<ExitCode> {
    let rows = status::status(&DataDir::open(&a.data)?)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<14} {:>10} {:>8} {:>12}",
        "NAME", "STATE", "CHECKPOINT", "RESTORES", "IMAGE BYTES"
    );
    for r in &rows {
        println!(
            "{:<20} {:<14} {:>10} {:>8} {:>12}",
            r.name,
            r.state,
            r.checkpoint.map(|c| c.to_string()).unwrap_or("-".into()),
            r.restores.map(|c| c.to_string()).unwrap_or("-".into()),
            r.image_bytes
        );
        match (&r.failure, &r.error) {
            // The first line says what happened, with a guest's panic
            // message; `--json` has the rest.
            (Some(f), _) => println!("    {} ({}): {}", r.state, f.kind.name(), f.summary()),
            (None, Some(e)) => {
                for line in e.lines() {
                    println!("    {line}");
                }
            }
            (None, None) => {}
        }
        for s in &r.skipped {
            println!("    skips {s}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
