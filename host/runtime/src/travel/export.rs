//! `phantom export`: one process of a data directory as a bundle.
//!
//! Everything is opened before the first byte is written, so a host that
//! keeps running the process (and deletes old chains after a new full
//! image) cannot pull a file out from under the export: the chosen chain
//! is read through open descriptors. The newest chain is never deleted by
//! retention anyway; the journal's tail is read up to its last whole entry.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use phantom_snapshots::CheckpointStore;
use phantom_snapshots::bundle::{BundleSummary, BundleWriter, RecordKind};
use serde::Serialize;

use super::{COMPONENT, FAILURE, JOURNAL, METADATA, TravelError, io};
use crate::datadir::DataDir;
use crate::journal::{journal_dir, log};

/// Bytes of a bundle's header, a record's head and checksum, the end record.
const HEADER: u64 = phantom_snapshots::bundle::BUNDLE_HEADER as u64;
const PER_RECORD: u64 = 16 + 8;
const END: u64 = 16 + 16 + 8;

/// One record to write: its kind, name, length and where its bytes come
/// from.
struct Part {
    kind: RecordKind,
    name: String,
    len: u64,
    source: Source,
}

enum Source {
    Bytes(Vec<u8>),
    File(File),
}

impl Source {
    fn reader(&mut self) -> Box<dyn Read + '_> {
        match self {
            Source::Bytes(b) => Box::new(&b[..]),
            Source::File(f) => Box::new(f),
        }
    }
}

/// An export with everything it will write opened and checked.
pub struct ExportPlan {
    name: String,
    checkpoint: u64,
    chain: Vec<u64>,
    journal_from: u64,
    journal_entries: u64,
    parts: Vec<Part>,
    warnings: Vec<String>,
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    /// The process.
    pub name: String,
    /// The checkpoint the bundle restores to (before its journal tail).
    pub checkpoint: u64,
    /// The checkpoint files it carries, oldest first (a full image, then
    /// the deltas up to `checkpoint`).
    pub chain: Vec<u64>,
    /// The journal entries after the checkpoint that it carries, and where
    /// they start.
    pub journal_entries: u64,
    pub journal_from: u64,
    /// Records (not counting the end record) and bytes of the bundle.
    pub records: u64,
    pub bytes: u64,
    /// The bundle's whole-stream checksum (XXH3-64, hex).
    pub checksum: String,
    /// What was left out, and why.
    pub warnings: Vec<String>,
}

impl ExportPlan {
    /// Plans the export of process `name` of data directory `data`: the
    /// chain of checkpoint `at`, or of the newest checkpoint whose chain
    /// verifies together with the journal entries after it (so the copy
    /// is where the process was at its last durable input).
    pub fn prepare(data: &Path, name: &str, at: Option<u64>) -> Result<ExportPlan, TravelError> {
        let data = DataDir::open(data)?;
        let dir = data.process_dir(name)?;
        let host_runs = data.lock_holder().is_some();
        let store = CheckpointStore::open(&dir).map_err(|e| TravelError::NothingToExport {
            name: name.into(),
            cause: e.into(),
        })?;
        let nothing = |source| TravelError::NothingToExport {
            name: name.into(),
            cause: source,
        };
        let chain = store.usable_chain(at).map_err(nothing)?;
        let checkpoint = *chain.last().expect("a chain has a file");
        let newest = store.usable_chain(None).map_err(nothing)?;
        let with_tail = newest.last() == Some(&checkpoint);
        super::check_contents(&dir, &store, name, checkpoint, "exported")?;

        let mut parts = Vec::new();
        let mut warnings = Vec::new();
        let read = |file: &str| -> Result<Vec<u8>, TravelError> {
            let path = dir.join(file);
            std::fs::read(&path).map_err(io(format!("cannot read {}", path.display())))
        };
        let meta = read(METADATA)?;
        parts.push(Part {
            kind: RecordKind::Metadata,
            name: METADATA.into(),
            len: meta.len() as u64,
            source: Source::Bytes(meta),
        });
        for setting in super::BUNDLE_SETTINGS {
            match std::fs::read(dir.join(setting)) {
                Ok(bytes) => parts.push(Part {
                    kind: RecordKind::Setting,
                    name: setting.into(),
                    len: bytes.len() as u64,
                    source: Source::Bytes(bytes),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(io(format!("cannot read {}", dir.join(setting).display()))(
                        e,
                    ));
                }
            }
        }
        let component_path = dir.join(COMPONENT);
        let component = File::open(&component_path)
            .map_err(io(format!("cannot open {}", component_path.display())))?;
        let len = component
            .metadata()
            .map_err(io(format!("cannot read {}", component_path.display())))?
            .len();
        parts.push(Part {
            kind: RecordKind::Component,
            name: COMPONENT.into(),
            len,
            source: Source::File(component),
        });
        // The chain's images, and the page packs of format 2 ones.
        for file in store.files_for(&chain).map_err(nothing)? {
            let path = store.dir().join(&file);
            let f = File::open(&path).map_err(io(format!("cannot open {}", path.display())))?;
            let len = f
                .metadata()
                .map_err(io(format!("cannot read {}", path.display())))?
                .len();
            let kind = if CheckpointStore::id_of_name(&file).is_some() {
                RecordKind::Checkpoint
            } else {
                RecordKind::Pages
            };
            parts.push(Part {
                kind,
                name: file,
                len,
                source: Source::File(f),
            });
        }

        let position = super::journal_position(&store, checkpoint)?;
        let mut journal_entries = 0;
        if with_tail {
            let jdir = journal_dir(&dir);
            let scan = log::scan(&jdir, position).map_err(|e| {
                TravelError::Invalid(format!("the journal of '{name}' cannot be read: {e}"))
            })?;
            if let Some(d) = &scan.damage
                && !host_runs
            {
                // With a host running, the entry being written is not whole
                // yet; without one, this is what a restore would cut.
                warnings.push(format!(
                    "the journal ends early: {d}; the entries before it are exported"
                ));
            }
            if !scan.entries.is_empty() {
                journal_entries = scan.entries.len() as u64;
                let payload = encode_journal(position, &scan.entries);
                parts.push(Part {
                    kind: RecordKind::Journal,
                    name: JOURNAL.into(),
                    len: payload.len() as u64,
                    source: Source::Bytes(payload),
                });
            }
        } else if at.is_some() {
            warnings.push(format!(
                "checkpoint {checkpoint} is not the newest: the bundle holds the process as it was then, without the journal after it"
            ));
        }
        if let Ok(failure) = std::fs::read(dir.join(FAILURE)) {
            parts.push(Part {
                kind: RecordKind::Failure,
                name: FAILURE.into(),
                len: failure.len() as u64,
                source: Source::Bytes(failure),
            });
        }
        Ok(ExportPlan {
            name: name.to_string(),
            checkpoint,
            chain,
            journal_from: position,
            journal_entries,
            parts,
            warnings,
        })
    }

    /// The exact size the bundle will have.
    pub fn bytes(&self) -> u64 {
        HEADER
            + END
            + self
                .parts
                .iter()
                .map(|p| PER_RECORD + p.name.len() as u64 + p.len)
                .sum::<u64>()
    }

    /// Writes the bundle to `out`; `progress` sees the bytes written so far.
    pub fn write(
        self,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ExportReport, TravelError> {
        let producer = env!("CARGO_PKG_VERSION");
        let mut w = BundleWriter::new(out, producer, crate::process::unix_ns())?;
        for mut part in self.parts {
            let mut reader = part.source.reader();
            w.record(part.kind, &part.name, part.len, &mut reader, progress)?;
        }
        let (
            _,
            BundleSummary {
                records,
                bytes,
                checksum,
            },
        ) = w.finish()?;
        Ok(ExportReport {
            name: self.name,
            checkpoint: self.checkpoint,
            chain: self.chain,
            journal_entries: self.journal_entries,
            journal_from: self.journal_from,
            records,
            bytes,
            checksum: format!("{checksum:016x}"),
            warnings: self.warnings,
        })
    }
}

/// The journal record: the first entry's sequence number, the count, then
/// each entry as its length and payload (DESIGN.md, "Bundle format").
pub(crate) fn encode_journal(first: u64, entries: &[log::Entry]) -> Vec<u8> {
    let len = 16 + entries.iter().map(|e| 4 + e.payload.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.payload);
    }
    out
}
