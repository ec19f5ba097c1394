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
        "{:<16} {:>8} {:>24} {:>12} {:>14} {:>10}",
        "TREE", "ID", "TIME (UTC)", "DIRTY PAGES", "BYTES WRITTEN", "PAUSE us"
    );
    let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let by_id: std::collections::BTreeMap<u64, &status::CheckpointRow> =
        rows.iter().map(|r| (r.id, r)).collect();
    for (branch, id) in tree(&rows) {
        let r = by_id[&id];
        let pin = if r.pinned { " pinned" } else { "" };
        match &r.error {
            None => println!(
                "{:<16} {:>8} {:>24} {:>12} {:>14} {:>10}{pin}",
                branch,
                r.id,
                r.time_unix_ns.map(utc).unwrap_or_default(),
                n(r.dirty_pages),
                n(r.bytes_written),
                n(r.pause_us)
            ),
            Some(e) => println!("{branch:<16} {:>8} invalid: {e}{pin}", r.id),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The checkpoints as a tree, oldest first: each line's branch drawing
/// and id. A checkpoint's parent is the one it was made from; a line of
/// descent goes on in the same column, and where a checkpoint has several
/// children (a rollback went back to it), the older lines branch off to
/// the right (`└─`) before the newest goes on.
fn tree(rows: &[status::CheckpointRow]) -> Vec<(String, u64)> {
    use std::collections::{BTreeMap, BTreeSet};
    let ids: BTreeSet<u64> = rows.iter().map(|r| r.id).collect();
    let mut children: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut roots = Vec::new();
    for r in rows {
        match r.parent.filter(|p| ids.contains(p) && *p < r.id) {
            Some(p) => children.entry(p).or_default().push(r.id),
            None => roots.push(r.id),
        }
    }
    roots.sort_unstable();
    // The newest id under each checkpoint picks the line that goes on.
    fn newest(id: u64, children: &BTreeMap<u64, Vec<u64>>) -> u64 {
        let mut max = id;
        let mut stack = vec![id];
        while let Some(c) = stack.pop() {
            max = max.max(c);
            stack.extend(children.get(&c).into_iter().flatten());
        }
        max
    }
    let mut out = Vec::new();
    // (id, indent, marker), depth first without recursion.
    let mut stack: Vec<(u64, usize, &str)> = roots.iter().rev().map(|&r| (r, 0, "")).collect();
    while let Some((id, indent, marker)) = stack.pop() {
        out.push((format!("{}{marker}*", " ".repeat(indent)), id));
        let column = indent + marker.chars().count();
        let mut kids = children.get(&id).cloned().unwrap_or_default();
        kids.sort_by_key(|&k| newest(k, &children));
        if let Some(main) = kids.pop() {
            // Pushed first, popped last: the side lines print before it.
            stack.push((main, column, ""));
            for &k in kids.iter().rev() {
                stack.push((k, column, "└─"));
            }
        }
    }
    out
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
    fn row(id: u64, parent: Option<u64>) -> super::status::CheckpointRow {
        super::status::CheckpointRow {
            id,
            parent,
            time_unix_ns: None,
            dirty_pages: None,
            bytes_uncompressed: None,
            bytes_written: None,
            pause_us: None,
            valid: true,
            pinned: false,
            error: None,
        }
    }

    #[test]
    fn a_rollback_branches_the_tree() {
        // 1-2-3-4-5, rolled back to 3, then 6-7 from 3.
        let rows: Vec<_> = [
            (7, Some(6)),
            (6, Some(3)),
            (5, Some(4)),
            (4, Some(3)),
            (3, Some(2)),
            (2, Some(1)),
            (1, None),
        ]
        .into_iter()
        .map(|(i, p)| row(i, p))
        .collect();
        let t = super::tree(&rows);
        let lines: Vec<String> = t.iter().map(|(b, id)| format!("{b}{id}")).collect();
        assert_eq!(lines, ["*1", "*2", "*3", "└─*4", "  *5", "*6", "*7"]);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            super::utc(1_709_210_096_123_000_000),
            "2024-02-29 12:34:56.123"
        );
    }
}
