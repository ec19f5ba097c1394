//! Bundles: one self-contained, checksummed stream that carries a process
//! from one host to another (`phantom export` / `phantom import`). This
//! file is the container only: a header, then named records, then an end
//! record; what the records mean (metadata, component, checkpoint images,
//! journal tail) is the runtime's business. The byte tables are in
//! DESIGN.md ("Bundle format").
//!
//! ```text
//!  BundleWriter<W: Write>                      BundleReader<R: Read>
//!   new: header ─────────────────────────────▶ new: magic, version, flags, checksum
//!   record(kind, name, len, &mut Read) ──────▶ next_record() ─▶ RecordHead (caps checked)
//!     head | name | payload | xxh3               copy_payload(&mut Write): streams,
//!   finish: end record (count, bytes,                checks the record's xxh3
//!           xxh3 of the whole stream) ───────▶ next_record() ─▶ None: end record checked,
//!                                                    nothing after it
//! ```
//!
//! Every record has its own checksum, so damage is named where it is; the
//! end record's count and whole-stream checksum catch a record removed,
//! repeated or reordered and a stream cut anywhere. Nothing is allocated
//! from a length before it is checked against a cap.

use std::io::{self, Read, Write};

use thiserror::Error;
use xxhash_rust::xxh3::Xxh3Default;

/// The first 8 bytes of every bundle.
pub const BUNDLE_MAGIC: &[u8; 8] = b"PHBUNDLE";
/// The bundle format version this code writes and the newest it reads.
pub const BUNDLE_VERSION: u32 = 1;
/// Header size: magic, version, flags, creation time, producer, checksum.
pub const BUNDLE_HEADER: usize = 64;
/// Bytes of the producer field (the `phantom` version, NUL-padded).
const PRODUCER_BYTES: usize = 32;
/// A record's head: kind, name length, payload length.
const RECORD_HEAD: usize = 16;
/// Longest record name (a file name).
pub const MAX_RECORD_NAME: usize = 255;
/// Most records in one bundle (a process keeps a few hundred checkpoints
/// at most); bounds the work a crafted bundle can ask for.
pub const MAX_RECORDS: u64 = 1 << 20;
/// Copy buffer.
const CHUNK: usize = 1 << 20;

/// What a record holds. The numbers are the format; new kinds get new
/// numbers, and a reader refuses a kind it does not know (it would lose
/// what the record carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// `process.json`: what the process was spawned with.
    Metadata,
    /// `component.wasm`.
    Component,
    /// One checkpoint image file (`ckpt-<id>.phi`), byte for byte.
    Checkpoint,
    /// The journal's entries after the newest checkpoint in the bundle.
    Journal,
    /// `failed.json`: the process is marked failed.
    Failure,
    /// One page pack (`pack-<seq>.php`) holding pages of format 2
    /// checkpoints, byte for byte.
    Pages,
    /// A per-process settings file (the keep policy, the device grants and
    /// scenario), named as in the process directory.
    Setting,
}

impl RecordKind {
    fn code(self) -> u32 {
        match self {
            RecordKind::Metadata => 1,
            RecordKind::Component => 2,
            RecordKind::Checkpoint => 3,
            RecordKind::Journal => 4,
            RecordKind::Failure => 5,
            RecordKind::Pages => 6,
            RecordKind::Setting => 7,
        }
    }

    fn from_code(code: u32) -> Option<RecordKind> {
        Some(match code {
            1 => RecordKind::Metadata,
            2 => RecordKind::Component,
            3 => RecordKind::Checkpoint,
            4 => RecordKind::Journal,
            5 => RecordKind::Failure,
            6 => RecordKind::Pages,
            7 => RecordKind::Setting,
            _ => return None,
        })
    }

    /// The largest payload a reader accepts for this kind.
    pub fn max_payload(self) -> u64 {
        match self {
            // Small JSON files.
            RecordKind::Metadata | RecordKind::Failure | RecordKind::Setting => 1 << 20,
            // wasmtime's own limit on a module is far below this.
            RecordKind::Component => 1 << 30,
            RecordKind::Checkpoint | RecordKind::Pages => crate::MAX_FILE_BYTES,
            // A tail of at most MAX entries of 32 MiB is unbounded in
            // principle; 16 GiB is far beyond any checkpoint interval.
            RecordKind::Journal => 16 << 30,
        }
    }

    /// How messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Metadata => "metadata",
            RecordKind::Component => "component",
            RecordKind::Checkpoint => "checkpoint",
            RecordKind::Journal => "journal",
            RecordKind::Failure => "failure",
            RecordKind::Pages => "page pack",
            RecordKind::Setting => "settings",
        }
    }
}

/// The header of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleHeader {
    /// Its format version.
    pub version: u32,
    /// When it was written (Unix nanoseconds).
    pub created_unix_ns: u64,
    /// The `phantom` version that wrote it.
    pub producer: String,
}

/// One record, as `BundleReader::next` returns it (its payload not read yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHead {
    /// Its place in the bundle, from 0.
    pub index: u64,
    pub kind: RecordKind,
    pub name: String,
    /// Payload bytes.
    pub len: u64,
}

/// What a finished bundle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleSummary {
    /// Records, not counting the end record.
    pub records: u64,
    /// Bytes of the whole bundle.
    pub bytes: u64,
    /// The whole-stream checksum in the end record.
    pub checksum: u64,
}

/// A bundle could not be read (or written). Every message says where.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error("not a Phantom bundle (it does not start with PHBUNDLE)")]
    NotABundle,
    #[error(
        "the bundle has format version {version}, from a newer phantom ({producer}); this phantom reads versions up to {BUNDLE_VERSION}"
    )]
    FutureVersion { version: u32, producer: String },
    #[error("the bundle's header is damaged: {0}")]
    BadHeader(String),
    #[error("the bundle is truncated: it ends at byte {offset}, inside {what}")]
    Truncated { offset: u64, what: String },
    #[error("record {index} ({what}) is damaged: its checksum does not match")]
    Checksum { index: u64, what: String },
    #[error("record {index} at byte {offset} is invalid: {why}")]
    BadRecord {
        index: u64,
        offset: u64,
        why: String,
    },
    #[error("the bundle's end record does not match what came before: {0}")]
    BadEnd(String),
    #[error("the bundle has bytes after its end record (at byte {offset})")]
    Trailing { offset: u64 },
    #[error("cannot read the bundle")]
    Read(#[source] io::Error),
    #[error("cannot write {what}")]
    Write {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// Writes a bundle to a stream, record by record; nothing is held in memory
/// but one copy buffer.
pub struct BundleWriter<W: Write> {
    inner: W,
    stream: Xxh3Default,
    bytes: u64,
    records: u64,
    buf: Vec<u8>,
}

impl<W: Write> BundleWriter<W> {
    /// Writes the header.
    pub fn new(inner: W, producer: &str, created_unix_ns: u64) -> Result<Self, BundleError> {
        let mut w = BundleWriter {
            inner,
            stream: Xxh3Default::new(),
            bytes: 0,
            records: 0,
            buf: Vec::new(),
        };
        let header = encode_header(producer, created_unix_ns);
        w.put(&header, "the bundle's header")?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8], what: &str) -> Result<(), BundleError> {
        self.inner
            .write_all(bytes)
            .map_err(|source| BundleError::Write {
                what: what.to_string(),
                source,
            })?;
        self.stream.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Appends one record: exactly `len` bytes read from `payload` (a
    /// source that ends early or has more is an error: the length is
    /// written first). `progress` sees the bundle's bytes so far.
    pub fn record(
        &mut self,
        kind: RecordKind,
        name: &str,
        len: u64,
        payload: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), BundleError> {
        let what = format!("{} {name}", kind.as_str());
        let bad = |why: String| BundleError::Write {
            what: what.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, why),
        };
        if name.len() > MAX_RECORD_NAME {
            return Err(bad(format!(
                "a record name is at most {MAX_RECORD_NAME} bytes"
            )));
        }
        if len > kind.max_payload() {
            return Err(bad(format!(
                "{len} bytes is more than a bundle takes ({})",
                kind.max_payload()
            )));
        }
        if self.records >= MAX_RECORDS {
            return Err(bad(format!("a bundle holds at most {MAX_RECORDS} records")));
        }
        let mut record = Xxh3Default::new();
        let mut head = [0u8; RECORD_HEAD];
        head[0..4].copy_from_slice(&kind.code().to_le_bytes());
        head[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
        head[8..16].copy_from_slice(&len.to_le_bytes());
        record.update(&head);
        record.update(name.as_bytes());
        self.put(&head, &what)?;
        self.put(name.as_bytes(), &what)?;
        self.buf.resize(CHUNK, 0);
        let mut left = len;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            let got = match payload.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(BundleError::Write {
                        what: what.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("its source ended {left} bytes early (did it change?)"),
                        ),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(source) => {
                    return Err(BundleError::Write {
                        what: what.clone(),
                        source,
                    });
                }
            };
            record.update(&buf[..got]);
            let r = self.put(&buf[..got], &what);
            self.buf = buf;
            r?;
            left -= got as u64;
            progress(self.bytes);
        }
        self.put(&record.digest().to_le_bytes(), &what)?;
        self.records += 1;
        progress(self.bytes);
        Ok(())
    }

    /// Writes the end record and flushes; returns the stream and what the
    /// bundle is.
    pub fn finish(mut self) -> Result<(W, BundleSummary), BundleError> {
        let what = "the bundle's end record";
        let mut end = [0u8; RECORD_HEAD + 16];
        end[0..4].copy_from_slice(&0u32.to_le_bytes());
        end[8..16].copy_from_slice(&16u64.to_le_bytes());
        end[16..24].copy_from_slice(&self.records.to_le_bytes());
        end[24..32].copy_from_slice(&self.bytes.to_le_bytes());
        self.put(&end, what)?;
        let checksum = self.stream.digest();
        self.put(&checksum.to_le_bytes(), what)?;
        self.inner.flush().map_err(|source| BundleError::Write {
            what: what.into(),
            source,
        })?;
        Ok((
            self.inner,
            BundleSummary {
                records: self.records,
                bytes: self.bytes,
                checksum,
            },
        ))
    }
}

fn encode_header(producer: &str, created_unix_ns: u64) -> [u8; BUNDLE_HEADER] {
    let mut h = [0u8; BUNDLE_HEADER];
    h[0..8].copy_from_slice(BUNDLE_MAGIC);
    h[8..12].copy_from_slice(&BUNDLE_VERSION.to_le_bytes());
    // 12..16: flags, none defined.
    h[16..24].copy_from_slice(&created_unix_ns.to_le_bytes());
    let p = producer.as_bytes();
    let n = p.len().min(PRODUCER_BYTES);
    h[24..24 + n].copy_from_slice(&p[..n]);
    let sum = xxhash_rust::xxh3::xxh3_64(&h[..56]);
    h[56..64].copy_from_slice(&sum.to_le_bytes());
    h
}

/// Reads a bundle from a stream, checking as it goes.
pub struct BundleReader<R: Read> {
    inner: R,
    header: BundleHeader,
    stream: Xxh3Default,
    offset: u64,
    records: u64,
    /// The record `next_record` returned whose payload is still to be read.
    pending: Option<(RecordHead, Xxh3Default)>,
    done: bool,
    buf: Vec<u8>,
}

impl<R: Read> BundleReader<R> {
    /// Reads and checks the header.
    pub fn new(mut inner: R) -> Result<Self, BundleError> {
        let mut h = [0u8; BUNDLE_HEADER];
        let got = read_full(&mut inner, &mut h).map_err(BundleError::Read)?;
        if got < 8 || &h[0..8] != BUNDLE_MAGIC {
            return Err(BundleError::NotABundle);
        }
        if got < BUNDLE_HEADER {
            return Err(BundleError::Truncated {
                offset: got as u64,
                what: "the header".into(),
            });
        }
        let sum = u64::from_le_bytes(h[56..64].try_into().expect("8 bytes"));
        if sum != xxhash_rust::xxh3::xxh3_64(&h[..56]) {
            return Err(BundleError::BadHeader("its checksum does not match".into()));
        }
        let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        let producer_bytes = &h[24..24 + PRODUCER_BYTES];
        let end = producer_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(PRODUCER_BYTES);
        let producer = String::from_utf8_lossy(&producer_bytes[..end]).into_owned();
        if version > BUNDLE_VERSION {
            return Err(BundleError::FutureVersion { version, producer });
        }
        if version == 0 {
            return Err(BundleError::BadHeader(
                "format version 0 does not exist".into(),
            ));
        }
        let flags = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
        if flags != 0 {
            return Err(BundleError::BadHeader(format!(
                "flags {flags:#x} are set, and version {version} defines none"
            )));
        }
        if std::str::from_utf8(&producer_bytes[..end]).is_err() || end == 0 {
            return Err(BundleError::BadHeader(
                "the producer field is not a UTF-8 phantom version".into(),
            ));
        }
        if producer_bytes[end..].iter().any(|&b| b != 0) {
            return Err(BundleError::BadHeader(
                "the producer field is not NUL-padded".into(),
            ));
        }
        let mut stream = Xxh3Default::new();
        stream.update(&h);
        Ok(BundleReader {
            inner,
            header: BundleHeader {
                version,
                created_unix_ns: u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")),
                producer,
            },
            stream,
            offset: BUNDLE_HEADER as u64,
            records: 0,
            pending: None,
            done: false,
            buf: Vec::new(),
        })
    }

    /// The header.
    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads exactly `buf.len()` bytes (hashed into the stream), or says
    /// the bundle ends inside `what`.
    fn take(&mut self, buf: &mut [u8], what: &dyn Fn() -> String) -> Result<(), BundleError> {
        let got = read_full(&mut self.inner, buf).map_err(BundleError::Read)?;
        self.stream.update(&buf[..got]);
        self.offset += got as u64;
        if got < buf.len() {
            return Err(BundleError::Truncated {
                offset: self.offset,
                what: what(),
            });
        }
        Ok(())
    }

    /// The next record's head, or `None` once the end record has been read
    /// and checked (and nothing follows it). The previous record's payload
    /// must have been read with `copy_payload`.
    pub fn next_record(&mut self) -> Result<Option<RecordHead>, BundleError> {
        if self.done {
            return Ok(None);
        }
        if let Some((head, _)) = &self.pending {
            return Err(BundleError::BadRecord {
                index: head.index,
                offset: self.offset,
                why: "its payload was not read (a caller error)".into(),
            });
        }
        let index = self.records;
        let start = self.offset;
        let mut head = [0u8; RECORD_HEAD];
        self.take(&mut head, &|| format!("the head of record {index}"))?;
        let code = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
        let name_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let len = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let bad = |why: String| BundleError::BadRecord {
            index,
            offset: start,
            why,
        };
        if code == 0 {
            return self.end(&head, start).map(|()| None);
        }
        let Some(kind) = RecordKind::from_code(code) else {
            return Err(bad(format!(
                "its kind {code} is unknown (written by a newer phantom?)"
            )));
        };
        if index >= MAX_RECORDS {
            return Err(bad(format!("a bundle holds at most {MAX_RECORDS} records")));
        }
        if name_len == 0 || name_len > MAX_RECORD_NAME {
            return Err(bad(format!(
                "its name is {name_len} bytes (1 to {MAX_RECORD_NAME})"
            )));
        }
        if len > kind.max_payload() {
            return Err(bad(format!(
                "its {} payload of {len} bytes is more than the {} allowed",
                kind.as_str(),
                kind.max_payload()
            )));
        }
        let mut name = vec![0u8; name_len];
        self.take(&mut name, &|| format!("the name of record {index}"))?;
        let name = String::from_utf8(name).map_err(|_| bad("its name is not UTF-8".into()))?;
        let mut record = Xxh3Default::new();
        record.update(&head);
        record.update(name.as_bytes());
        let head = RecordHead {
            index,
            kind,
            name,
            len,
        };
        self.pending = Some((head.clone(), record));
        Ok(Some(head))
    }

    /// Streams the pending record's payload into `out` and checks its
    /// checksum. On a checksum error `out` has seen damaged bytes: discard
    /// it. `progress` sees the bundle's bytes read so far.
    pub fn copy_payload(
        &mut self,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), BundleError> {
        let Some((head, mut record)) = self.pending.take() else {
            return Err(BundleError::BadRecord {
                index: self.records,
                offset: self.offset,
                why: "no record is pending (a caller error)".into(),
            });
        };
        let what = format!("{} {}", head.kind.as_str(), head.name);
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(CHUNK, 0);
        let mut left = head.len;
        let result = (|| {
            while left > 0 {
                let want = left.min(CHUNK as u64) as usize;
                self.take(&mut buf[..want], &|| {
                    format!("record {} ({what})", head.index)
                })?;
                record.update(&buf[..want]);
                out.write_all(&buf[..want])
                    .map_err(|source| BundleError::Write {
                        what: what.clone(),
                        source,
                    })?;
                left -= want as u64;
                progress(self.offset);
            }
            let mut sum = [0u8; 8];
            self.take(&mut sum, &|| {
                format!("the checksum of record {} ({what})", head.index)
            })?;
            if u64::from_le_bytes(sum) != record.digest() {
                return Err(BundleError::Checksum {
                    index: head.index,
                    what: what.clone(),
                });
            }
            Ok(())
        })();
        self.buf = buf;
        result?;
        self.records += 1;
        Ok(())
    }

    /// Checks the end record (its head already read) and that nothing
    /// follows.
    fn end(&mut self, head: &[u8; RECORD_HEAD], start: u64) -> Result<(), BundleError> {
        let name_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        if name_len != 0 || len != 16 {
            return Err(BundleError::BadEnd(format!(
                "it has a {name_len}-byte name and {len} bytes of payload (0 and 16)"
            )));
        }
        let mut payload = [0u8; 16];
        self.take(&mut payload, &|| "the end record".into())?;
        let expected = self.stream.digest();
        let mut sum = [0u8; 8];
        let got = read_full(&mut self.inner, &mut sum).map_err(BundleError::Read)?;
        if got < 8 {
            return Err(BundleError::Truncated {
                offset: self.offset + got as u64,
                what: "the end record".into(),
            });
        }
        self.offset += 8;
        let records = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
        let bytes = u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes"));
        if records != self.records {
            return Err(BundleError::BadEnd(format!(
                "it counts {records} records, and {} came before it",
                self.records
            )));
        }
        if bytes != start {
            return Err(BundleError::BadEnd(format!(
                "it says {bytes} bytes came before it, and {start} did"
            )));
        }
        if u64::from_le_bytes(sum) != expected {
            return Err(BundleError::BadEnd(
                "the checksum of the whole bundle does not match".into(),
            ));
        }
        let mut one = [0u8; 1];
        if read_full(&mut self.inner, &mut one).map_err(BundleError::Read)? != 0 {
            return Err(BundleError::Trailing {
                offset: self.offset,
            });
        }
        self.done = true;
        Ok(())
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = BundleWriter::new(Vec::new(), "0.1.0", 42).unwrap();
        let parts: [(RecordKind, &str, Vec<u8>); 3] = [
            (
                RecordKind::Metadata,
                "process.json",
                b"{\"name\":\"c\"}".to_vec(),
            ),
            (RecordKind::Component, "component.wasm", vec![7u8; 3000]),
            (
                RecordKind::Checkpoint,
                "ckpt-1.phi",
                (0..5000u32).map(|i| i as u8).collect(),
            ),
        ];
        for (kind, name, bytes) in parts {
            w.record(kind, name, bytes.len() as u64, &mut &bytes[..], &mut |_| {})
                .unwrap();
        }
        let (out, summary) = w.finish().unwrap();
        assert_eq!(summary.records, 3);
        assert_eq!(summary.bytes, out.len() as u64);
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(RecordHead, Vec<u8>)>, BundleError> {
        let mut r = BundleReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(head) = r.next_record()? {
            let mut payload = Vec::new();
            r.copy_payload(&mut payload, &mut |_| {})?;
            out.push((head, payload));
        }
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let r = BundleReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().producer, "0.1.0");
        assert_eq!(r.header().created_unix_ns, 42);
        let records = read_all(&bytes).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].0.kind, RecordKind::Component);
        assert_eq!(records[1].1, vec![7u8; 3000]);
        assert_eq!(records[2].0.name, "ckpt-1.phi");
        assert_eq!(records[2].1.len(), 5000);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let r = read_all(&bytes[..cut]);
            assert!(r.is_err(), "a bundle cut at byte {cut} was accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            read_all(&longer),
            Err(BundleError::Trailing { .. })
        ));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let bytes = sample();
        for i in 0..bytes.len() {
            for bit in [0u8, 3, 7] {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(
                    read_all(&b).is_err(),
                    "a bundle with bit {bit} of byte {i} flipped was accepted"
                );
            }
        }
    }

    #[test]
    fn a_removed_record_is_caught_by_the_end_record() {
        // Records 0 and 2 only, written by a writer that saw 3: splice the
        // bytes of a bundle with record 1 taken out.
        let bytes = sample();
        let mut r = BundleReader::new(&bytes[..]).unwrap();
        let mut spans = Vec::new();
        loop {
            let start = r.offset();
            let Some(_) = r.next_record().unwrap() else {
                break;
            };
            r.copy_payload(&mut io::sink(), &mut |_| {}).unwrap();
            spans.push((start, r.offset()));
        }
        let (a, b) = spans[1];
        let mut cut = bytes[..a as usize].to_vec();
        cut.extend_from_slice(&bytes[b as usize..]);
        assert!(matches!(read_all(&cut), Err(BundleError::BadEnd(_))));
    }

    #[test]
    fn a_future_version_is_refused_by_name() {
        let mut bytes = sample();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..56]);
        bytes[56..64].copy_from_slice(&sum.to_le_bytes());
        let err = read_all(&bytes).unwrap_err();
        assert!(matches!(err, BundleError::FutureVersion { version: 2, .. }));
        assert!(err.to_string().contains("newer phantom"), "{err}");
    }

    #[test]
    fn not_a_bundle() {
        assert!(matches!(read_all(b""), Err(BundleError::NotABundle)));
        assert!(matches!(
            read_all(b"\0asm\x01\0\0\0 and more"),
            Err(BundleError::NotABundle)
        ));
    }

    #[test]
    fn a_lying_length_allocates_nothing() {
        // A checkpoint record claiming 2^60 bytes is refused from its head.
        let mut bytes = encode_header("x", 0).to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        bytes.extend_from_slice(b"ckpt");
        assert!(matches!(
            read_all(&bytes),
            Err(BundleError::BadRecord { .. })
        ));
    }

    #[test]
    fn a_short_source_is_a_write_error() {
        let mut w = BundleWriter::new(Vec::new(), "x", 0).unwrap();
        let err = w
            .record(
                RecordKind::Component,
                "c",
                10,
                &mut &[1u8, 2][..],
                &mut |_| {},
            )
            .unwrap_err();
        assert!(err.to_string().contains("component c"), "{err}");
    }
}
