//! `phantom checkpoints`: a process's checkpoint files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_runtime::status;

/// Arguments of `phantom checkpoints`.
#[derive(Args)]
pub struct CheckpointsArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process name.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `phantom checkpoints`.
pub fn run(a: CheckpointsArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::open(&a.data)?.process_dir(&a.name)?;
    let rows = status::checkpoints(&dir)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>8} {:>8} {:>24} {:>12} {:>14} {:>10}",
        "ID", "PARENT", "TIME (UTC)", "DIRTY PAGES", "BYTES WRITTEN", "PAUSE us"
    );
    let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in &rows {
        match &r.error {
            None => println!(
                "{:>8} {:>8} {:>24} {:>12} {:>14} {:>10}",
                r.id,
                r.parent.map(|p| p.to_string()).unwrap_or("full".into()),
                r.time_unix_ns.map(utc).unwrap_or_default(),
                n(r.dirty_pages),
                n(r.bytes_written),
                n(r.pause_us)
            ),
            Some(e) => println!("{:>8} invalid: {e}", r.id),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Formats Unix nanoseconds as `YYYY-MM-DD HH:MM:SS.mmm`, UTC.
fn utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ns / 1_000_000 % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            super::utc(1_709_210_096_123_000_000),
            "2024-02-29 12:34:56.123"
        );
    }
}
