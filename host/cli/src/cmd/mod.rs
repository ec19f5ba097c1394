//! One file per command.

pub mod build;
pub mod checkpoint;
pub mod checkpoints;
pub mod componentize;
pub mod compose;
pub mod devices;
pub mod display;
pub mod export;
pub mod fork;
pub mod fsck;
pub mod gc;
pub mod import;
pub mod journal;
pub mod keep;
pub mod migrate;
pub mod new;
pub mod pin;
pub mod ps;
pub mod pvm;
pub mod rollback;
pub mod run;
pub mod send;
pub mod serve;
pub mod spawn;

use std::path::Path;

use anyhow::Context;

/// Reads every regular file of `dir`, sorted by name.
pub fn read_dir_files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for e in entries {
        // Files, and links to files.
        if e.path().is_file() {
            let data = std::fs::read(e.path())
                .with_context(|| format!("cannot read {}", e.path().display()))?;
            files.push((e.file_name().to_string_lossy().into_owned(), data));
        } else {
            skipped.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    if !skipped.is_empty() {
        eprintln!(
            "phantom: note: only the files directly in {} are handed over; skipped: {}",
            dir.display(),
            skipped.join(", ")
        );
    }
    Ok(files)
}
