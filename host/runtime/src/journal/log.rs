//! The journal's log: checksummed, consecutively numbered entries in
//! pre-allocated segment files, appended from the drive loop and made
//! durable by a writer thread with group commit.
//!
//! ```text
//!   DIR/seg-<first seq, 20 digits>.log       (pre-allocated with zeros)
//!   ┌──────────────────────── header, 32 bytes ───────────────────────┐
//!   │ "PHJOURN\0" │ version u32 = 1 │ header len u32 = 32 │ first seq u64 │ xxh3 of the 24 before u64 │
//!   └─────────────────────────────────────────────────────────────────┘
//!   frames, back to back:  len u32 │ seq u64 │ xxh3(len ‖ seq ‖ payload) u64 │ payload
//!   then zeros: a zero length (or under 20 bytes left) ends the segment
//!
//!   append (any thread) ─► frame into the buffer ─► writer thread: the whole
//!   buffer in one positioned write (rolling to a new segment at a frame
//!   boundary), one fdatasync per file touched ─► durable = last seq + 1
//!   ─► waiters and the on-durable callback
//! ```
//! Reading stops at the first frame that is not whole and valid (length,
//! sequence number, checksum): a torn tail is cut, never misread. Opening
//! for appending makes the cut real: the damaged segment is zeroed from
//! the cut to its end and later segments are deleted, so stale frames can
//! never be read as new ones. Numbers are little-endian.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

/// The largest payload of one entry.
pub const MAX_ENTRY_BYTES: usize = 32 << 20;
/// The segment format's version.
pub const VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"PHJOURN\0";
const HEADER: u64 = 32;
const FRAME: u64 = 20;
/// Longest entries stay written but not synced when nobody waits for them
/// (a waiter, an effect held, a checkpoint makes the writer sync at once).
const MAX_UNSYNCED: Duration = Duration::from_millis(5);
/// Zeros written at a time when a segment is pre-allocated or cut.
const ZEROS: usize = 1 << 20;
/// Bytes of a segment made while entries wait for it (no spare was ready:
/// the first append after a restore, an import or a migration). Zeroing
/// and syncing a full segment took 20-30 ms, all of it added to the first
/// event's latency; this takes about a millisecond, and the full-size
/// spare is prepared once the entries are durable.
const QUICK_SEGMENT_BYTES: u64 = 256 << 10;

/// How a log is laid out.
#[derive(Clone, Copy, Debug)]
pub struct LogConfig {
    /// Bytes of one segment file (a larger entry gets a segment of its own).
    pub segment_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 8 << 20,
        }
    }
}

/// A log cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// Entries asked for were truncated away.
    #[error("the journal starts at entry {first_seq}, so entries {from_seq} to {} are gone", first_seq - 1)]
    Gap {
        /// The first entry asked for.
        from_seq: u64,
        /// The oldest entry present.
        first_seq: u64,
    },
    /// The entry cannot be appended.
    #[error("{0}")]
    Refused(String),
    /// The writer failed earlier; nothing more is appended.
    #[error("the journal cannot be written: {0}")]
    Failed(String),
    /// A segment of another format version (a newer phantom's): refused,
    /// not guessed at, and never cut.
    #[error("{0}")]
    Unsupported(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LogError {
    let what = what.into();
    move |source| LogError::Io { what, source }
}

/// One entry read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Where reading stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// The byte offset in it.
    pub offset: u64,
    /// The sequence number expected there.
    pub seq: u64,
    /// What is wrong.
    pub why: String,
    /// Segments after it, all ignored.
    pub later_segments: usize,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entry {} at {} byte {} is not whole or not valid ({})",
            self.seq,
            self.segment.display(),
            self.offset,
            self.why
        )?;
        if self.later_segments > 0 {
            write!(f, "; {} later segment(s) are ignored", self.later_segments)?;
        }
        Ok(())
    }
}

/// What `scan` read.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// The oldest entry present (equal to `next_seq` when there is none).
    pub first_seq: u64,
    /// One past the last valid entry.
    pub next_seq: u64,
    /// The valid entries from the `from_seq` asked for, in order.
    pub entries: Vec<Entry>,
    /// Where reading stopped early, if it did.
    pub damage: Option<Damage>,
}

fn segment_name(first: u64) -> String {
    format!("seg-{first:020}.log")
}

/// The segment files of `dir`, by first sequence number.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(format!("cannot read {}", dir.display()))(e)),
    };
    for e in rd {
        let e = e.map_err(io_err(format!("cannot read {}", dir.display())))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".log"))
        else {
            continue;
        };
        if num.len() == 20
            && let Ok(first) = num.parse::<u64>()
        {
            out.push((first, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn header(first: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER as u32).to_le_bytes());
    h[16..24].copy_from_slice(&first.to_le_bytes());
    let sum = xxh3_64(&h[..24]);
    h[24..32].copy_from_slice(&sum.to_le_bytes());
    h
}

/// A frame header's fields: payload length, sequence number, checksum.
fn frame_fields(head: &[u8]) -> (usize, u64, u64) {
    let u64_at = |r: std::ops::Range<usize>| {
        head.get(r)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let len = head
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    (len as usize, u64_at(4..12), u64_at(12..20))
}

fn frame_checksum(len: &[u8], seq: &[u8], payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(len);
    h.update(seq);
    h.update(payload);
    h.digest()
}

/// What reading one segment found.
struct SegmentRead {
    /// One past its last valid entry.
    next_seq: u64,
    /// The offset after its last valid frame.
    end: u64,
    /// Where and why it stopped early.
    damage: Option<(u64, String)>,
}

/// A segment's bytes, read from the file as the parser gets to them: a
/// pre-allocated segment is mostly zeros after its last frame, and those
/// are never read (a restore read 8 MiB per segment before, twice).
struct SegmentBytes {
    file: File,
    /// The file's length.
    len: usize,
    /// Its first bytes, as far as read.
    buf: Vec<u8>,
}

/// Bytes read from a segment at a time, at least.
const READ_CHUNK: usize = 256 << 10;

impl SegmentBytes {
    fn open(path: &Path) -> io::Result<SegmentBytes> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        Ok(SegmentBytes {
            file,
            len,
            buf: Vec::new(),
        })
    }

    /// Bytes `range` of the file (the caller keeps it within `len`).
    fn get(&mut self, range: std::ops::Range<usize>) -> io::Result<&[u8]> {
        if range.end > self.buf.len() {
            let want = range
                .end
                .max(self.buf.len().saturating_add(READ_CHUNK))
                .min(self.len);
            let from = self.buf.len();
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf[from..], from as u64)?;
        }
        Ok(&self.buf[range])
    }
}

/// Reads one segment; `expected`: the first seq it must hold.
fn read_segment(
    path: &Path,
    named_first: u64,
    expected: Option<u64>,
    from_seq: u64,
    stop: u64,
    out: &mut Vec<Entry>,
) -> Result<SegmentRead, LogError> {
    let read_err = |e: io::Error| io_err(format!("cannot read {}", path.display()))(e);
    let mut seg = SegmentBytes::open(path).map_err(&read_err)?;
    let start = expected.unwrap_or(named_first);
    let bad = |why: String| SegmentRead {
        next_seq: start,
        end: 0,
        damage: Some((0, why)),
    };
    let total = seg.len;
    if (total as u64) < HEADER {
        return Ok(bad(format!(
            "it has {total} bytes, less than a segment header"
        )));
    }
    let head: [u8; HEADER as usize] = seg
        .get(0..HEADER as usize)
        .map_err(&read_err)?
        .try_into()
        .unwrap_or([0; HEADER as usize]);
    if &head[..8] != MAGIC {
        return Ok(bad("it is not a journal segment (wrong magic)".into()));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
    if xxh3_64(&head[..24]).to_le_bytes() != head[24..32] {
        return Ok(bad("its header checksum does not match".into()));
    }
    // A whole header of another format: refused, never cut.
    if version != VERSION {
        return Err(LogError::Unsupported(format!(
            "{} is of journal format version {version}; this phantom reads version {VERSION} (written by another phantom? it is left as it is)",
            path.display()
        )));
    }
    let header_len = u32::from_le_bytes(head[12..16].try_into().unwrap_or_default());
    if u64::from(header_len) != HEADER {
        return Err(LogError::Unsupported(format!(
            "{} has a header of {header_len} bytes, where version {VERSION} has {HEADER} (another format? it is left as it is)",
            path.display()
        )));
    }
    let first = u64::from_le_bytes(head[16..24].try_into().unwrap_or_default());
    if first != named_first {
        return Ok(bad(format!(
            "its header starts at entry {first}, but its name says {named_first}"
        )));
    }
    if let Some(e) = expected
        && first != e
    {
        return Ok(bad(format!(
            "it starts at entry {first}, but the segment before ends at entry {e}"
        )));
    }
    let mut seq = first;
    let mut at = HEADER as usize;
    let frame = FRAME as usize;
    let damage = loop {
        if total - at < frame {
            if seg
                .get(at..total)
                .map_err(&read_err)?
                .iter()
                .any(|&b| b != 0)
            {
                break Some((at as u64, "a frame header cut short".to_string()));
            }
            break None;
        }
        let head: [u8; FRAME as usize] = seg
            .get(at..at + frame)
            .map_err(&read_err)?
            .try_into()
            .unwrap_or([0; FRAME as usize]);
        let (len, got_seq, sum) = frame_fields(&head);
        if len == 0 {
            if head.iter().any(|&b| b != 0) {
                break Some((at as u64, "a frame of length 0".to_string()));
            }
            break None;
        }
        if len > MAX_ENTRY_BYTES {
            break Some((
                at as u64,
                format!("a frame of {len} bytes, over the limit of {MAX_ENTRY_BYTES}"),
            ));
        }
        let body = at + frame;
        if total - body < len {
            break Some((
                at as u64,
                format!("a frame of {len} bytes runs past the end of the file"),
            ));
        }
        let payload = seg.get(body..body + len).map_err(&read_err)?;
        if frame_checksum(&head[..4], &head[4..12], payload) != sum {
            break Some((at as u64, "the frame's checksum does not match".to_string()));
        }
        if got_seq != seq {
            break Some((
                at as u64,
                format!("the frame holds entry {got_seq} where entry {seq} belongs"),
            ));
        }
        if seq >= stop {
            break Some((at as u64, format!("cut on request at entry {seq}")));
        }
        if seq >= from_seq {
            out.push(Entry {
                seq,
                payload: payload.to_vec(),
            });
        }
        seq += 1;
        at = body + len;
    };
    Ok(SegmentRead {
        next_seq: seq,
        end: damage.as_ref().map_or(at as u64, |(o, _)| *o),
        damage,
    })
}

/// What `scan_full` knows about the last segment read.
struct Last {
    path: PathBuf,
    first: u64,
    end: u64,
}

fn scan_full(dir: &Path, from_seq: u64) -> Result<(Scan, Option<Last>), LogError> {
    scan_until(dir, from_seq, u64::MAX)
}

/// `scan_full`, reading as if the log ended before entry `stop` (which
/// shows as damage there, if the log holds it).
fn scan_until(dir: &Path, from_seq: u64, stop: u64) -> Result<(Scan, Option<Last>), LogError> {
    let segs = segments(dir)?;
    let Some(&(first_named, _)) = segs.first() else {
        return Ok((
            Scan {
                first_seq: from_seq,
                next_seq: from_seq,
                ..Scan::default()
            },
            None,
        ));
    };
    let mut scan = Scan {
        first_seq: first_named,
        next_seq: first_named,
        ..Scan::default()
    };
    let mut last = None;
    for (i, (first, path)) in segs.iter().enumerate() {
        let expected = (i > 0).then_some(scan.next_seq);
        let read = read_segment(path, *first, expected, from_seq, stop, &mut scan.entries)?;
        scan.next_seq = read.next_seq;
        last = Some(Last {
            path: path.clone(),
            first: *first,
            end: read.end,
        });
        if let Some((offset, why)) = read.damage {
            scan.damage = Some(Damage {
                segment: path.clone(),
                offset,
                seq: read.next_seq,
                why,
                later_segments: segs.len() - i - 1,
            });
            break;
        }
    }
    if from_seq < scan.first_seq {
        return Err(LogError::Gap {
            from_seq,
            first_seq: scan.first_seq,
        });
    }
    Ok((scan, last))
}

/// Reads the log in `dir` without changing anything: the valid entries
/// from `from_seq` on. An empty or missing directory is an empty log.
pub fn scan(dir: &Path, from_seq: u64) -> Result<Scan, LogError> {
    scan_full(dir, from_seq).map(|(s, _)| s)
}

/// A tail `Log::open` cut.
#[derive(Clone, Debug)]
pub struct CutTail {
    /// Where reading stopped.
    pub damage: Damage,
    /// What the damage looks like (`assess`).
    pub assessed: Assessed,
    /// Where what the cut removed is kept, when that was more than a
    /// crash leaves (valid entries after the damage, or a frame changed
    /// rather than torn).
    pub kept: Option<PathBuf>,
}

/// What `Log::open` found.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The oldest entry present.
    pub first_seq: u64,
    /// The next entry's sequence number.
    pub next_seq: u64,
    /// A torn or damaged tail that was cut.
    pub cut: Option<CutTail>,
    /// The log ended before `min_next_seq` and was started again there.
    pub reset: bool,
    /// The valid entries from `min_next_seq` on, as `scan(dir,
    /// min_next_seq)` would read them now (the open reads them anyway, so
    /// a restore does not read the log twice). None: the log starts after
    /// `min_next_seq` (`scan` reports that gap).
    pub tail: Option<Vec<Entry>>,
}

/// Copies the segment `d` names and every later one, as they are, into
/// `keep` (created; prefixed `raw-`, so they are never read as segments),
/// durably: what a cut is about to remove. Damage may have valid,
/// acknowledged entries after it (a flipped bit is not a torn write); a
/// cut never destroys them.
fn keep_raw(dir: &Path, d: &Damage, keep: &Path) -> Result<(), LogError> {
    let segs = segments(dir)?;
    let Some(k) = segs.iter().position(|(_, p)| *p == d.segment) else {
        return Ok(());
    };
    fs::create_dir_all(keep).map_err(io_err(format!("cannot create {}", keep.display())))?;
    for (_, path) in &segs[k..] {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("seg");
        let to = keep.join(format!("raw-{name}"));
        fs::copy(path, &to)
            .and_then(|_| File::open(&to)?.sync_all())
            .map_err(io_err(format!(
                "cannot keep {} in {}",
                path.display(),
                keep.display()
            )))?;
    }
    sync_dir(keep)?;
    if let Some(parent) = keep.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// A directory beside the journal `dir` that does not exist yet, named
/// `<prefix>-<seq>-<unix seconds>` (`-<n>` added if taken).
pub fn fresh_dir_beside(dir: &Path, prefix: &str, seq: u64) -> PathBuf {
    let parent = dir.parent().unwrap_or(dir);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut kept = parent.join(format!("{prefix}-{seq}-{secs}"));
    let mut n = 1;
    while kept.exists() {
        kept = parent.join(format!("{prefix}-{seq}-{secs}-{n}"));
        n += 1;
    }
    kept
}

/// Bytes a device writes whole or not at all (the smallest sector).
const SECTOR: usize = 512;

/// What a cut at damage `d` would remove, besides bytes a crash left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assessed {
    /// Frames that read as valid (or later segments) follow the damage:
    /// those entries may have been acknowledged.
    pub valid_after: bool,
    /// The damaged frame shows what an interrupted write leaves in a
    /// pre-allocated segment: a zero share of some sector it spans (or the
    /// file ends inside it).
    pub torn: bool,
}

impl Assessed {
    /// What the damage is, in words.
    pub fn what(&self) -> &'static str {
        if self.valid_after {
            "entries that read as valid follow it, so this is damage, not (only) a tail torn by a crash: they may have been acknowledged"
        } else if !self.torn {
            "it was changed, not torn by a crash: what it held may have been acknowledged"
        } else {
            "a tail torn by a crash, never acknowledged"
        }
    }

    /// Whether a cut keeps what it removes (more than a crash leaves).
    pub fn keeps(&self) -> bool {
        self.valid_after || !self.torn
    }
}

/// Looks at damage `d` (reading its segment whole): whether entries that
/// read as valid follow it, and whether it looks torn rather than changed.
/// A kill -9 part way through a write, or a power loss, leaves zeros where
/// the write did not land and nothing valid after them (except frames of
/// the same write, if the device wrote its sectors out of order); a
/// flipped bit leaves a frame with no zero sector share, followed by the
/// valid frames that were there.
pub fn assess(d: &Damage) -> io::Result<Assessed> {
    let bytes = fs::read(&d.segment)?;
    let at = d.offset as usize;
    if at < HEADER as usize {
        // A header is synced before the segment is named: only a file cut
        // short (shorter than a header) is what a crash may leave.
        return Ok(Assessed {
            valid_after: d.later_segments > 0,
            torn: bytes.len() < HEADER as usize,
        });
    }
    if at >= bytes.len() {
        return Ok(Assessed {
            valid_after: d.later_segments > 0,
            torn: true,
        });
    }
    // The next frame that reads as valid, numbered after the damaged one.
    let frame = FRAME as usize;
    let mut next = None;
    let mut p = at + 1;
    while p + frame <= bytes.len() {
        let (len, seq, sum) = frame_fields(&bytes[p..p + frame]);
        if seq >= d.seq
            && seq - d.seq < 1 << 32
            && (1..=MAX_ENTRY_BYTES).contains(&len)
            && p + frame + len <= bytes.len()
            && frame_checksum(
                &bytes[p..p + 4],
                &bytes[p + 4..p + 12],
                &bytes[p + frame..p + frame + len],
            ) == sum
        {
            next = Some(p);
            break;
        }
        p += 1;
    }
    // The damaged frame's extent: to the next valid frame, or as long as
    // its length says (a header's worth if that is not believable).
    let (len, _, _) = frame_fields(&bytes[at..(at + frame).min(bytes.len())]);
    let claimed = if (1..=MAX_ENTRY_BYTES).contains(&len) {
        at + frame + len
    } else {
        at + frame
    };
    let runs_past_end = claimed > bytes.len();
    let end = next.unwrap_or(claimed).min(bytes.len());
    let mut torn = false;
    let mut start = at;
    while start < end {
        let chunk_end = end.min((start / SECTOR + 1) * SECTOR);
        if bytes[start..chunk_end].iter().all(|&b| b == 0) {
            torn = true;
            break;
        }
        start = chunk_end;
    }
    // A file cut short inside the frame (what the issue's truncation does,
    // or a file system losing its end) counts as torn, unless zeros past
    // the frame's real end show the length itself was changed.
    if runs_past_end && next.is_none() {
        let first = at.div_ceil(SECTOR) * SECTOR;
        torn = !(first..bytes.len())
            .step_by(SECTOR)
            .any(|s| s + SECTOR <= bytes.len() && bytes[s..s + SECTOR].iter().all(|&b| b == 0));
    }
    Ok(Assessed {
        valid_after: next.is_some() || d.later_segments > 0,
        torn,
    })
}

/// Makes a cut real: the segments after the damaged one are deleted (later
/// ones first, so a crash part way leaves a log that still reads up to the
/// cut), and the damaged one is zeroed from the cut on (or deleted, if the
/// cut is in its header). With `keep`, they are copied there first. True
/// when the damaged one was deleted.
fn cut_tail(dir: &Path, d: &Damage, keep: Option<&Path>) -> Result<bool, LogError> {
    if let Some(keep) = keep {
        keep_raw(dir, d, keep)?;
    }
    let mut removed = false;
    // Later segments first, so a crash part way leaves a log that
    // still reads up to the cut.
    let segs = segments(dir)?;
    if let Some(k) = segs.iter().position(|(_, p)| *p == d.segment) {
        for (_, path) in segs[k + 1..].iter().rev() {
            fs::remove_file(path).map_err(io_err(format!("cannot remove {}", path.display())))?;
        }
    }
    if d.offset < HEADER {
        fs::remove_file(&d.segment)
            .map_err(io_err(format!("cannot remove {}", d.segment.display())))?;
        removed = true;
    } else {
        let file = OpenOptions::new()
            .write(true)
            .open(&d.segment)
            .map_err(io_err(format!("cannot open {}", d.segment.display())))?;
        let len = file
            .metadata()
            .map_err(io_err(format!("cannot read {}", d.segment.display())))?
            .len();
        write_zeros(&file, d.offset, len, &d.segment)?;
        file.sync_data()
            .map_err(io_err(format!("cannot sync {}", d.segment.display())))?;
    }
    sync_dir(dir)?;
    Ok(removed)
}

/// Cuts the log in `dir` (nobody has it open) before entry `seq`: the
/// entries from `seq` on are gone for good and the next append gets `seq`.
/// Returns the valid entries removed. A log that ends before `seq` is left
/// as it is.
/// Damage past `seq` (the valid entries end there) is kept as it is in
/// `keep`, as `raw-` copies of the segments from the cut on.
pub fn cut_at(dir: &Path, seq: u64, keep: &Path) -> Result<Vec<Entry>, LogError> {
    let full = scan(dir, seq)?;
    let (scan, _) = scan_until(dir, seq, seq)?;
    if let Some(d) = &scan.damage {
        cut_tail(dir, d, full.damage.is_some().then_some(keep))?;
    }
    Ok(full.entries)
}

/// Makes every segment of `dir` durable as it is: what a host that died
/// wrote but had not synced yet (the kernel still holds it).
pub fn sync_files(dir: &Path) -> Result<(), LogError> {
    for (_, path) in segments(dir)? {
        File::open(&path)
            .and_then(|f| f.sync_data())
            .map_err(io_err(format!("cannot sync {}", path.display())))?;
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("cannot sync {}", dir.display())))
}

fn write_zeros(file: &File, from: u64, to: u64, path: &Path) -> Result<(), LogError> {
    let zeros = vec![0u8; ZEROS];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(ZEROS);
        file.write_all_at(&zeros[..n], at)
            .map_err(io_err(format!("cannot write {}", path.display())))?;
        at += n as u64;
    }
    Ok(())
}

/// A segment being appended to.
struct Segment {
    file: File,
    path: PathBuf,
    first: u64,
    offset: u64,
    size: u64,
}

/// A pre-allocated file waiting to become the next segment.
struct Spare {
    file: File,
    path: PathBuf,
    size: u64,
}

/// What runs on the writer thread when entries become durable.
pub type DurableHook = Box<dyn Fn(u64) + Send + Sync>;

/// Called once, on the writer thread, when an entry became durable
/// (`Ok`) or the journal failed before it did (`Err`, why).
pub type DurableWaiter = Box<dyn FnOnce(Result<(), String>) + Send>;

struct State {
    buf: Vec<u8>,
    /// (seq, offset in buf) of each frame in `buf`.
    bounds: Vec<(u64, usize)>,
    next_seq: u64,
    /// Every entry below this is in the files (maybe not yet synced).
    written: u64,
    durable: u64,
    /// Someone waits for every entry below this to be durable.
    demand: u64,
    error: Option<String>,
    closing: bool,
    truncate: Option<u64>,
    /// Called when the entry they name is durable (see `when_durable`).
    waiters: Vec<(u64, DurableWaiter)>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    on_durable: Mutex<Option<DurableHook>>,
    syncs: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A log open for appending.
pub struct Log {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Log {
    /// Opens (creating `dir` if missing) for appending: a torn or damaged
    /// tail is cut for real; a log that ends before `min_next_seq` (entries
    /// a checkpoint already covers were lost, or it is new) starts again
    /// there.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        min_next_seq: u64,
    ) -> Result<(Log, Opened), LogError> {
        if dir.exists() && !dir.is_dir() {
            return Err(LogError::Io {
                what: format!("cannot open the journal {}", dir.display()),
                source: io::Error::new(io::ErrorKind::NotADirectory, "it is not a directory"),
            });
        }
        fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                if name
                    .to_str()
                    .is_some_and(|n| n.starts_with(".seg-") && n.ends_with(".tmp"))
                {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        // Where the log ends, whether it is damaged, and the entries from
        // `min_next_seq` on (none is at or after `u64::MAX`).
        let (mut scan, last, gap) = match scan_full(dir, min_next_seq) {
            Ok((scan, last)) => (scan, last, false),
            Err(LogError::Gap { .. }) => {
                let (scan, last) = scan_full(dir, u64::MAX)?;
                (scan, last, true)
            }
            Err(e) => return Err(e),
        };
        let tail = (!gap).then(|| std::mem::take(&mut scan.entries));
        if last.is_none() {
            // No segment: an empty log starts at 0 (not at `u64::MAX`).
            scan.first_seq = 0;
            scan.next_seq = 0;
        }
        let mut first_seq = scan.first_seq;
        let mut next_seq = scan.next_seq;
        let mut current = last;
        let mut cut = None;
        if let Some(d) = scan.damage.clone() {
            let assessed =
                assess(&d).map_err(io_err(format!("cannot read {}", d.segment.display())))?;
            let kept = assessed
                .keeps()
                .then(|| fresh_dir_beside(dir, "journal-damaged", d.seq));
            if cut_tail(dir, &d, kept.as_deref())? {
                current = None;
            }
            if segments(dir)?.is_empty() {
                first_seq = next_seq;
            }
            cut = Some(CutTail {
                damage: d,
                assessed,
                kept,
            });
        }
        let mut reset = false;
        if next_seq < min_next_seq {
            for (_, path) in segments(dir)? {
                fs::remove_file(&path)
                    .map_err(io_err(format!("cannot remove {}", path.display())))?;
                reset = true;
            }
            sync_dir(dir)?;
            first_seq = min_next_seq;
            next_seq = min_next_seq;
            current = None;
        }
        let segment = match current {
            Some(last) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&last.path)
                    .map_err(io_err(format!("cannot open {}", last.path.display())))?;
                let size = file
                    .metadata()
                    .map_err(io_err(format!("cannot read {}", last.path.display())))?
                    .len();
                // What an earlier host wrote may not have been synced.
                file.sync_data()
                    .map_err(io_err(format!("cannot sync {}", last.path.display())))?;
                Some(Segment {
                    file,
                    path: last.path,
                    first: last.first,
                    offset: last.end,
                    size,
                })
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::new(),
                bounds: Vec::new(),
                next_seq,
                written: next_seq,
                durable: next_seq,
                demand: 0,
                error: None,
                closing: false,
                truncate: None,
                waiters: Vec::new(),
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            on_durable: Mutex::new(None),
            syncs: AtomicU64::new(0),
        });
        let mut writer = Writer {
            shared: shared.clone(),
            dir: dir.to_path_buf(),
            config,
            segment,
            spare: None,
        };
        let thread = std::thread::Builder::new()
            .name("phantom-journal".into())
            .spawn(move || writer.run())
            .map_err(io_err("cannot start the journal writer"))?;
        Ok((
            Log {
                shared,
                thread: Some(thread),
            },
            Opened {
                first_seq,
                next_seq,
                cut,
                reset,
                tail,
            },
        ))
    }

    /// Buffers one entry and returns its sequence number; never waits for
    /// the disk.
    pub fn append(&self, payload: &[u8]) -> Result<u64, LogError> {
        if payload.is_empty() {
            return Err(LogError::Refused("an empty journal entry".into()));
        }
        if payload.len() > MAX_ENTRY_BYTES {
            return Err(LogError::Refused(format!(
                "a journal entry of {} bytes is over the limit of {MAX_ENTRY_BYTES}",
                payload.len()
            )));
        }
        let mut s = self.shared.lock();
        if let Some(e) = &s.error {
            return Err(LogError::Failed(e.clone()));
        }
        if s.closing {
            return Err(LogError::Failed("the journal is closing".into()));
        }
        let seq = s.next_seq;
        let len = (payload.len() as u32).to_le_bytes();
        let seq_bytes = seq.to_le_bytes();
        let sum = frame_checksum(&len, &seq_bytes, payload);
        let was_empty = s.buf.is_empty();
        let offset = s.buf.len();
        s.bounds.push((seq, offset));
        s.buf.extend_from_slice(&len);
        s.buf.extend_from_slice(&seq_bytes);
        s.buf.extend_from_slice(&sum.to_le_bytes());
        s.buf.extend_from_slice(payload);
        s.next_seq += 1;
        drop(s);
        if was_empty {
            self.shared.work.notify_one();
        }
        Ok(seq)
    }

    /// One past the last sequence number handed out.
    pub fn next_seq(&self) -> u64 {
        self.shared.lock().next_seq
    }

    /// Every entry below this is durable.
    pub fn durable(&self) -> u64 {
        self.shared.lock().durable
    }

    /// fdatasync calls made so far.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Waits until entry `seq` is durable: Ok(false) on timeout.
    pub fn wait_durable(&self, seq: u64, timeout: Duration) -> Result<bool, LogError> {
        let until = Instant::now() + timeout;
        let mut s = self.shared.lock();
        if s.durable <= seq && s.demand <= seq {
            s.demand = seq + 1;
            self.shared.work.notify_one();
        }
        loop {
            if s.durable > seq {
                return Ok(true);
            }
            if let Some(e) = &s.error {
                return Err(LogError::Failed(e.clone()));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            s = self
                .shared
                .done
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Calls `f` once entry `seq` is durable (`Ok`), or once the journal
    /// failed before it was (`Err`): at once if either is already so, else
    /// on the writer thread right after the sync, which it asks for. A
    /// waiting thread is woken by nobody but `f` (no broadcast to every
    /// waiter at each sync).
    pub fn when_durable(&self, seq: u64, f: DurableWaiter) {
        let mut s = self.shared.lock();
        if s.durable > seq {
            drop(s);
            return f(Ok(()));
        }
        if let Some(e) = s.error.clone() {
            drop(s);
            return f(Err(e));
        }
        s.waiters.push((seq, f));
        if s.demand <= seq {
            s.demand = seq + 1;
            drop(s);
            self.shared.work.notify_one();
        }
    }

    /// Asks for entry `seq` to become durable soon, without waiting (the
    /// drive loop, for effects it holds). An entry not appended yet is
    /// synced in the pass that writes it (its append wakes the writer).
    pub fn request_durable(&self, seq: u64) {
        let mut s = self.shared.lock();
        if s.durable <= seq && s.demand <= seq {
            s.demand = seq + 1;
            let appended = seq < s.next_seq;
            drop(s);
            if appended {
                self.shared.work.notify_one();
            }
        }
    }

    /// Waits until everything appended so far is durable.
    pub fn sync(&self) -> Result<(), LogError> {
        let next = self.next_seq();
        if next == 0 || self.durable() >= next {
            return Ok(());
        }
        match self.wait_durable(next - 1, Duration::from_secs(120))? {
            true => Ok(()),
            false => Err(LogError::Failed(
                "the journal did not become durable within 120 s".into(),
            )),
        }
    }

    /// Asks the writer to delete every segment all of whose entries are
    /// below `seq` (never the one being appended to).
    pub fn truncate_before(&self, seq: u64) -> Result<(), LogError> {
        let mut s = self.shared.lock();
        s.truncate = Some(s.truncate.map_or(seq, |t| t.max(seq)));
        drop(s);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Runs `f` on the writer thread each time entries become durable.
    pub fn on_durable(&self, f: DurableHook) {
        *self
            .shared
            .on_durable
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(f);
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Removes and returns the waiters whose entry `done` says is durable.
fn take_waiters(
    waiters: &mut Vec<(u64, DurableWaiter)>,
    done: impl Fn(u64) -> bool,
) -> Vec<DurableWaiter> {
    if !waiters.iter().any(|(seq, _)| done(*seq)) {
        return Vec::new();
    }
    let (ready, left): (Vec<_>, Vec<_>) = std::mem::take(waiters)
        .into_iter()
        .partition(|(seq, _)| done(*seq));
    *waiters = left;
    ready.into_iter().map(|(_, f)| f).collect()
}

struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    config: LogConfig,
    segment: Option<Segment>,
    spare: Option<Spare>,
}

impl Writer {
    fn run(&mut self) {
        // Files written but not yet synced, and since when.
        let mut unsynced: Vec<File> = Vec::new();
        let mut unsynced_since: Option<Instant> = None;
        loop {
            let (buf, bounds, truncate, sync_now) = {
                let mut s = self.shared.lock();
                loop {
                    let pending = s.written > s.durable;
                    let overdue = unsynced_since.is_some_and(|t| t.elapsed() >= MAX_UNSYNCED);
                    let sync_now = pending && (s.demand > s.durable || s.closing || overdue);
                    if !s.buf.is_empty() || sync_now || s.truncate.is_some() || s.closing {
                        break;
                    }
                    s = match unsynced_since {
                        Some(t) if pending => {
                            let left = MAX_UNSYNCED.saturating_sub(t.elapsed());
                            self.shared
                                .work
                                .wait_timeout(s, left)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                        _ => self.shared.work.wait(s).unwrap_or_else(|e| e.into_inner()),
                    };
                }
                if s.error.is_some() {
                    // Nothing more is written; appends fail.
                    s.buf.clear();
                    s.bounds.clear();
                    s.truncate = None;
                    if s.closing {
                        return;
                    }
                    s = self.shared.work.wait(s).unwrap_or_else(|e| e.into_inner());
                    drop(s);
                    continue;
                }
                if s.buf.is_empty() && s.closing && s.written == s.durable {
                    return;
                }
                (
                    std::mem::take(&mut s.buf),
                    std::mem::take(&mut s.bounds),
                    s.truncate.take(),
                    s.closing,
                )
            };
            if let Some(seq) = truncate {
                self.truncate(seq);
            }
            let result = (|| -> Result<(), LogError> {
                if let Some(&(last, _)) = bounds.last() {
                    unsynced.extend(self.write(&buf, &bounds)?);
                    unsynced_since.get_or_insert_with(Instant::now);
                    self.shared.lock().written = last + 1;
                }
                let s = self.shared.lock();
                let overdue = unsynced_since.is_some_and(|t| t.elapsed() >= MAX_UNSYNCED);
                let sync = s.written > s.durable && (s.demand > s.durable || sync_now || overdue);
                let written = s.written;
                drop(s);
                if sync {
                    for f in unsynced.drain(..) {
                        f.sync_data().map_err(io_err(format!(
                            "cannot sync a segment of {}",
                            self.dir.display()
                        )))?;
                    }
                    if let Some(seg) = &self.segment {
                        seg.file
                            .sync_data()
                            .map_err(io_err(format!("cannot sync {}", seg.path.display())))?;
                    }
                    unsynced_since = None;
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                    let ready = {
                        let mut s = self.shared.lock();
                        s.durable = written;
                        take_waiters(&mut s.waiters, |seq| seq < written)
                    };
                    self.shared.done.notify_all();
                    for f in ready {
                        f(Ok(()));
                    }
                    if let Some(f) = &*self
                        .shared
                        .on_durable
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                    {
                        f(written);
                    }
                    self.prepare_spare();
                }
                Ok(())
            })();
            if let Err(e) = result {
                let why = e.to_string();
                let failed = {
                    let mut s = self.shared.lock();
                    s.error = Some(why.clone());
                    std::mem::take(&mut s.waiters)
                };
                self.shared.done.notify_all();
                for (_, f) in failed {
                    f(Err(why.clone()));
                }
            }
        }
    }

    /// Writes a batch of frames (not synced); returns the segments it
    /// left behind, which still need a sync.
    fn write(&mut self, buf: &[u8], bounds: &[(u64, usize)]) -> Result<Vec<File>, LogError> {
        let mut to_sync: Vec<File> = Vec::new();
        let mut i = 0;
        while i < bounds.len() {
            let (seq, start) = bounds[i];
            let frame_end = |k: usize| bounds.get(k + 1).map_or(buf.len(), |b| b.1);
            let first_len = (frame_end(i) - start) as u64;
            let fits = self
                .segment
                .as_ref()
                .is_some_and(|s| s.offset + first_len <= s.size);
            if !fits {
                if let Some(old) = self.segment.take()
                    && let Ok(f) = old.file.try_clone()
                {
                    to_sync.push(f);
                }
                self.segment = Some(self.new_segment(seq, first_len)?);
            }
            let seg = self
                .segment
                .as_mut()
                .ok_or_else(|| LogError::Failed("no segment to write to".into()))?;
            // As many frames as fit.
            let mut end = frame_end(i);
            let mut k = i + 1;
            while k < bounds.len() && seg.offset + (frame_end(k) - start) as u64 <= seg.size {
                end = frame_end(k);
                k += 1;
            }
            seg.file
                .write_all_at(&buf[start..end], seg.offset)
                .map_err(io_err(format!("cannot write {}", seg.path.display())))?;
            seg.offset += (end - start) as u64;
            i = k;
        }
        Ok(to_sync)
    }

    /// A pre-allocated file of `size` bytes under a temporary name.
    fn allocate(&self, size: u64) -> Result<Spare, LogError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = self.dir.join(format!(
            ".seg-{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(format!("cannot create {}", path.display())))?;
        write_zeros(&file, 0, size, &path)?;
        file.sync_all()
            .map_err(io_err(format!("cannot sync {}", path.display())))?;
        Ok(Spare { file, path, size })
    }

    /// Pre-allocates the next segment once the current one is half full.
    fn prepare_spare(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let half = self.segment.as_ref().is_none_or(|s| s.offset * 2 >= s.size);
        if half && let Ok(spare) = self.allocate(self.config.segment_bytes) {
            self.spare = Some(spare);
        }
    }

    /// Makes the segment that starts at entry `first` (big enough for a
    /// frame of `frame_len` bytes).
    fn new_segment(&mut self, first: u64, frame_len: u64) -> Result<Segment, LogError> {
        let need = HEADER + frame_len;
        let spare = match self.spare.take() {
            Some(s) if s.size >= need => s,
            other => {
                if let Some(s) = other {
                    let _ = fs::remove_file(&s.path);
                }
                self.allocate(QUICK_SEGMENT_BYTES.min(self.config.segment_bytes).max(need))?
            }
        };
        let path = self.dir.join(segment_name(first));
        spare
            .file
            .write_all_at(&header(first), 0)
            .map_err(io_err(format!("cannot write {}", path.display())))?;
        spare
            .file
            .sync_data()
            .map_err(io_err(format!("cannot sync {}", path.display())))?;
        fs::rename(&spare.path, &path)
            .map_err(io_err(format!("cannot create {}", path.display())))?;
        sync_dir(&self.dir)?;
        Ok(Segment {
            file: spare.file,
            path,
            first,
            offset: HEADER,
            size: spare.size,
        })
    }

    /// Deletes segments whose entries are all below `seq`.
    fn truncate(&mut self, seq: u64) {
        let Ok(segs) = segments(&self.dir) else {
            return;
        };
        let current = self.segment.as_ref().map(|s| s.first);
        let mut removed = false;
        for (i, (first, path)) in segs.iter().enumerate() {
            let Some((next_first, _)) = segs.get(i + 1) else {
                break;
            };
            if *next_first > seq || Some(*first) == current {
                break;
            }
            removed |= fs::remove_file(path).is_ok();
        }
        if removed {
            let _ = sync_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> LogConfig {
        LogConfig {
            segment_bytes: 4096,
        }
    }

    fn payload(i: u64) -> Vec<u8> {
        let len = 1 + (i * 37 % 300) as usize;
        (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
    }

    fn fill(dir: &Path, n: u64) {
        let (log, _) = Log::open(dir, small(), 0).unwrap();
        for i in 0..n {
            assert_eq!(log.append(&payload(i)).unwrap(), i);
        }
        log.sync().unwrap();
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    /// Segments are read a chunk at a time as the frames need them: frames
    /// that straddle chunk boundaries, a tail of zeros never read, and a
    /// torn frame past a boundary all read as they did when whole files
    /// were read.
    #[test]
    fn big_segments_read_in_chunks_give_every_entry() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("j");
        let config = LogConfig {
            segment_bytes: 8 << 20,
        };
        let big = |i: u64| -> Vec<u8> {
            let len = 1 + (i * 7919 % 90_000) as usize;
            (0..len).map(|k| (i as usize * 13 + k) as u8).collect()
        };
        let n = 120;
        {
            let (log, _) = Log::open(&dir, config, 0).unwrap();
            for i in 0..n {
                log.append(&big(i)).unwrap();
            }
            log.sync().unwrap();
        }
        let s = scan(&dir, 0).unwrap();
        assert_eq!((s.damage.clone(), s.next_seq), (None, n));
        for e in &s.entries {
            assert_eq!(e.payload, big(e.seq));
        }
        let total: usize = (0..n).map(|i| big(i).len()).sum();
        assert!(total > 4 * READ_CHUNK, "frames span several chunks");
        // Torn in the middle of its last frame: that frame is cut.
        let segs = segments(&dir).unwrap();
        let (_, last) = segs.last().unwrap();
        let end = {
            let (_, l) = scan_full(&dir, u64::MAX).unwrap();
            l.unwrap().end
        };
        let f = OpenOptions::new().write(true).open(last).unwrap();
        f.set_len(end - 10).unwrap();
        let s = scan(&dir, 0).unwrap();
        assert_eq!(s.next_seq, n - 1);
        assert!(s.damage.is_some());
        let (log, opened) = Log::open(&dir, config, 50).unwrap();
        assert_eq!((opened.next_seq, opened.cut.is_some()), (n - 1, true));
        // The entries a restore replays, read by the open itself.
        let tail = opened.tail.unwrap();
        assert_eq!(tail.len() as u64, n - 1 - 50);
        assert_eq!(tail, scan(&dir, 50).unwrap().entries);
        drop(log);
    }

    #[test]
    fn entries_round_trip_across_segments_and_reopens() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("j");
        fill(&dir, 200);
        assert!(segments(&dir).unwrap().len() > 3, "rolled over segments");
        let s = scan(&dir, 0).unwrap();
        assert_eq!(s.damage, None);
        assert_eq!((s.first_seq, s.next_seq), (0, 200));
        for (i, e) in s.entries.iter().enumerate() {
            assert_eq!((e.seq, &e.payload), (i as u64, &payload(i as u64)));
        }
        let (log, opened) = Log::open(&dir, small(), 0).unwrap();
        assert_eq!((opened.next_seq, opened.cut.is_none()), (200, true));
        assert_eq!(log.append(b"more").unwrap(), 200);
        drop(log);
        let s = scan(&dir, 150).unwrap();
        assert_eq!(s.entries.len(), 51);
        assert_eq!(s.entries[50].payload, b"more");
    }

    /// A torn tail, as a crash leaves it: the last entries cut at every byte
    /// (the rest zero, as the file was pre-allocated, or the file shorter).
    #[test]
    fn a_tail_cut_at_every_byte_recovers_the_whole_entries() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("j");
        fill(&dir, 40);
        let segs = segments(&dir).unwrap();
        let (last_first, last_path) = segs.last().unwrap().clone();
        let bytes = fs::read(&last_path).unwrap();
        // Frame starts in the last segment.
        let mut starts = vec![];
        let mut at = HEADER as usize;
        for seq in last_first..40 {
            starts.push((seq, at));
            at += FRAME as usize + payload(seq).len();
        }
        let end = at;
        let from = starts[starts.len().saturating_sub(3)].1;
        for cut in from..end {
            for zeroed in [true, false] {
                let d = t.path().join(format!("c{cut}-{zeroed}"));
                copy_dir(&dir, &d);
                let p = d.join(last_path.file_name().unwrap());
                if zeroed {
                    let mut b = bytes.clone();
                    b[cut..].iter_mut().for_each(|x| *x = 0);
                    fs::write(&p, b).unwrap();
                } else {
                    OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .unwrap()
                        .set_len(cut as u64)
                        .unwrap();
                }
                let whole = starts
                    .iter()
                    .filter(|(_, s)| {
                        let seq = starts.iter().find(|x| x.1 == *s).unwrap().0;
                        s + FRAME as usize + payload(seq).len() <= cut
                    })
                    .count() as u64
                    + last_first;
                let s = scan(&d, 0).unwrap();
                assert_eq!(s.next_seq, whole, "cut at {cut}");
                for e in &s.entries {
                    assert_eq!(e.payload, payload(e.seq));
                }
                let (log, opened) = Log::open(&d, small(), 0).unwrap();
                assert_eq!(opened.next_seq, whole);
                log.append(b"after").unwrap();
                drop(log);
                let s = scan(&d, 0).unwrap();
                assert_eq!(s.damage, None, "cut at {cut}");
                assert_eq!(s.next_seq, whole + 1);
                assert_eq!(s.entries.last().unwrap().payload, b"after");
            }
        }
    }

    #[test]
    fn flipped_bits_stop_reading_at_the_damaged_entry() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("j");
        fill(&dir, 30);
        let (last_first, last_path) = segments(&dir).unwrap().last().unwrap().clone();
        let bytes = fs::read(&last_path).unwrap();
        let mut starts = vec![];
        let mut at = HEADER as usize;
        for seq in last_first..30 {
            starts.push((seq, at));
            at += FRAME as usize + payload(seq).len();
        }
        let (victim_seq, from) = starts[starts.len() - 2];
        for byte in from..at {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[byte] ^= 1 << bit;
                let d = t.path().join("f");
                let _ = fs::remove_dir_all(&d);
                copy_dir(&dir, &d);
                fs::write(d.join(last_path.file_name().unwrap()), &b).unwrap();
                let s = scan(&d, 0).unwrap();
                let frame_of = |pos: usize| starts.iter().rev().find(|(_, s)| *s <= pos).unwrap().0;
                let expect = frame_of(byte);
                assert!(expect >= victim_seq);
                assert_eq!(s.next_seq, expect, "bit {bit} of byte {byte}");
                assert!(s.damage.is_some());
                for e in &s.entries {
                    assert_eq!(e.payload, payload(e.seq));
                }
            }
        }
    }

    #[test]
    fn cut_at_removes_exactly_the_entries_from_there_on() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fill(&src, 300);
        let firsts: Vec<u64> = segments(&src).unwrap().iter().map(|s| s.0).collect();
        assert!(firsts.len() > 2, "the test needs several segments");
        let mut cuts = vec![0, 1, 150, 299, firsts[1], firsts[1] + 1, firsts[2] - 1];
        cuts.sort();
        cuts.dedup();
        for at in cuts {
            let dir = t.path().join(format!("cut-{at}"));
            copy_dir(&src, &dir);
            let removed = cut_at(&dir, at, &dir.join("kept")).unwrap();
            assert_eq!(removed.len() as u64, 300 - at, "cut at {at}");
            assert_eq!(
                removed[0],
                Entry {
                    seq: at,
                    payload: payload(at)
                }
            );
            let s = scan(&dir, 0).unwrap();
            assert_eq!(s.next_seq, at, "cut at {at}");
            assert!(s.damage.is_none(), "cut at {at}: {:?}", s.damage);
            assert!(s.entries.iter().all(|e| e.payload == payload(e.seq)));
            // Appends go on from the cut; nothing removed ever reads again.
            let (log, opened) = Log::open(&dir, small(), 0).unwrap();
            assert_eq!(opened.next_seq, at);
            assert!(opened.cut.is_none());
            assert_eq!(log.append(b"after").unwrap(), at);
            drop(log);
            let s = scan(&dir, at).unwrap();
            assert_eq!(s.entries.len(), 1);
            assert_eq!(s.entries[0].payload, b"after");
        }
        // Past the end: nothing changes.
        let dir = t.path().join("past");
        copy_dir(&src, &dir);
        assert!(cut_at(&dir, 300, &dir.join("kept")).unwrap().is_empty());
        assert!(cut_at(&dir, 5000, &dir.join("kept")).unwrap().is_empty());
        assert_eq!(scan(&dir, 0).unwrap().next_seq, 300);
    }

    #[test]
    fn stale_frames_after_a_cut_are_never_read_again() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("j");
        let big = LogConfig {
            segment_bytes: 1 << 20,
        };
        let (log, _) = Log::open(&dir, big, 0).unwrap();
        for i in 0..100u64 {
            log.append(&[i as u8; 10]).unwrap();
        }
        drop(log);
        let (_, path) = segments(&dir).unwrap()[0].clone();
        let mut b = fs::read(&path).unwrap();
        let at50 = HEADER as usize + 50 * (FRAME as usize + 10);
        b[at50 + FRAME as usize] ^= 0xff;
        fs::write(&path, b).unwrap();
        let (log, opened) = Log::open(&dir, big, 0).unwrap();
        assert_eq!(opened.next_seq, 50);
        assert!(opened.cut.is_some());
        for i in 50..100u64 {
            log.append(&[200 + (i % 50) as u8; 10]).unwrap();
        }
        drop(log);
        let s = scan(&dir, 0).unwrap();
        assert_eq!(s.next_seq, 100);
        assert_eq!(s.damage, None);
        for e in &s.entries[50..] {
            assert_eq!(e.payload, vec![200 + (e.seq % 50) as u8; 10]);
        }
    }

    #[test]
    fn group_commit_batches_many_entries_per_sync() {
        let t = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(&t.path().join("j"), LogConfig::default(), 0).unwrap();
        let started = Instant::now();
        let n = 100_000u64;
        for _ in 0..n {
            log.append(&[7u8; 64]).unwrap();
        }
        log.sync().unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{n} entries in {secs:.3} s ({:.0}/s), {} syncs",
            n as f64 / secs,
            log.syncs()
        );
        assert!(log.syncs() < n / 10, "{} syncs", log.syncs());
        assert_eq!(log.durable(), n);
    }

    #[test]
    fn waiting_truncating_gaps_and_resets() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("j");
        let (log, _) = Log::open(&dir, small(), 0).unwrap();
        let log = Arc::new(log);
        let waiters: Vec<_> = (0..4)
            .map(|k| {
                let log = log.clone();
                std::thread::spawn(move || {
                    log.wait_durable(100 + k, Duration::from_secs(10)).unwrap()
                })
            })
            .collect();
        for i in 0..200 {
            log.append(&payload(i)).unwrap();
        }
        for w in waiters {
            assert!(w.join().unwrap());
        }
        log.sync().unwrap();
        assert!(!log.wait_durable(500, Duration::from_millis(10)).unwrap());
        let before = segments(&dir).unwrap();
        log.truncate_before(150).unwrap();
        log.append(b"x").unwrap();
        log.sync().unwrap();
        let after = segments(&dir).unwrap();
        assert!(after.len() < before.len());
        assert!(after[0].0 <= 150);
        assert_eq!(scan(&dir, 150).unwrap().entries.len(), 51);
        assert!(matches!(scan(&dir, 0), Err(LogError::Gap { .. })));
        drop(Arc::try_unwrap(log).ok().unwrap());
        let (log, opened) = Log::open(&dir, small(), 1000).unwrap();
        assert!(opened.reset);
        assert_eq!(log.append(b"y").unwrap(), 1000);
        drop(log);
        assert_eq!(scan(&dir, 1000).unwrap().entries.len(), 1);
    }

    #[test]
    fn when_durable_calls_back_once_after_the_sync_that_covers_the_entry() {
        let t = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(&t.path().join("j"), small(), 0).unwrap();
        let log = Arc::new(log);
        let (tx, rx) = std::sync::mpsc::channel();
        let first = log.append(&payload(0)).unwrap();
        for seq in [first, 40, 99] {
            let (tx, probe) = (tx.clone(), log.clone());
            log.when_durable(
                seq,
                Box::new(move |r| tx.send((seq, r, probe.durable())).unwrap()),
            );
        }
        for i in 1..100 {
            log.append(&payload(i)).unwrap();
        }
        let mut seen: Vec<u64> = Vec::new();
        for _ in 0..3 {
            let (seq, r, durable) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(r, Ok(()));
            assert!(durable > seq, "entry {seq} answered with durable {durable}");
            seen.push(seq);
        }
        seen.sort();
        assert_eq!(seen, [first, 40, 99]);
        // Already durable: answered at once, on the caller's thread.
        let tx2 = tx.clone();
        log.when_durable(7, Box::new(move |r| tx2.send((7, r, 0)).unwrap()));
        assert_eq!(rx.try_recv().unwrap().1, Ok(()));
        drop(tx);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }

    #[test]
    fn bad_headers_are_damage() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("j");
        fill(&dir, 5);
        let (_, path) = segments(&dir).unwrap()[0].clone();
        let good = fs::read(&path).unwrap();
        for (at, value, why) in [(0, b'X', "magic"), (8, 2, "checksum"), (16, 9, "checksum")] {
            let mut b = good.clone();
            b[at] = value;
            fs::write(&path, &b).unwrap();
            let s = scan(&dir, 0).unwrap();
            let d = s.damage.expect("damage");
            assert!(d.why.contains(why), "{}", d.why);
            assert_eq!(s.entries.len(), 0);
        }
        // Version 2 with a valid checksum.
        let mut b = good.clone();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let sum = xxh3_64(&b[..24]);
        b[24..32].copy_from_slice(&sum.to_le_bytes());
        fs::write(&path, &b).unwrap();
        // Refused, not cut: left as it is.
        let e = scan(&dir, 0).unwrap_err();
        assert!(
            matches!(&e, LogError::Unsupported(w) if w.contains("version 2")),
            "{e}"
        );
        assert!(matches!(
            Log::open(&dir, small(), 0),
            Err(LogError::Unsupported(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b);
        // So is a header of another length.
        let mut b = good.clone();
        b[12..16].copy_from_slice(&64u32.to_le_bytes());
        let sum = xxh3_64(&b[..24]);
        b[24..32].copy_from_slice(&sum.to_le_bytes());
        fs::write(&path, &b).unwrap();
        assert!(matches!(
            Log::open(&dir, small(), 0),
            Err(LogError::Unsupported(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b);
    }

    /// The directories a cut kept things in, beside the journal `dir`.
    fn kept_beside(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("journal-damaged-"))
            })
            .collect()
    }

    /// A changed frame with valid entries after it is damage, not a torn
    /// tail: the cut keeps the segments it changes or removes, as they
    /// were. A torn tail (zeros where a write did not land, or a file cut
    /// short) keeps nothing.
    #[test]
    fn a_cut_keeps_what_follows_damage_but_not_a_torn_tail() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src").join("j");
        fill(&src, 60);
        let segs = segments(&src).unwrap();
        assert!(segs.len() >= 3, "the test needs several segments");
        let (first, path) = segs[0].clone();
        let name = path.file_name().unwrap().to_owned();
        let good = fs::read(&path).unwrap();
        let victim = first + 2;
        let at = HEADER as usize
            + (first..victim)
                .map(|s| FRAME as usize + payload(s).len())
                .sum::<usize>();
        let last_at = {
            let (lf, lp) = segs.last().unwrap().clone();
            let mut a = HEADER as usize;
            for s in lf..59 {
                a += FRAME as usize + payload(s).len();
            }
            (lp, a)
        };
        let case = |label: &str,
                    edit: &dyn Fn(&Path)|
         -> (Scan, Option<(Assessed, Option<PathBuf>)>, PathBuf) {
            let dir = t.path().join(label).join("j");
            copy_dir(&src, &dir);
            edit(&dir);
            let before = scan(&dir, 0).unwrap();
            let (_, opened) = Log::open(&dir, small(), 0).unwrap();
            (before, opened.cut.map(|c| (c.assessed, c.kept)), dir)
        };
        // A bit flipped in the payload of entry 2 of the first segment.
        let (before, kept, dir) = case("flip", &|d| {
            let mut b = good.clone();
            b[at + FRAME as usize + 1] ^= 4;
            fs::write(d.join(&name), b).unwrap();
        });
        assert_eq!(before.next_seq, victim);
        let (a, keep) = kept.unwrap();
        assert!(a.valid_after && !a.torn, "{a:?}");
        let keep = keep.unwrap();
        assert_eq!(kept_beside(&dir), vec![keep.clone()]);
        for (_, p) in &segs {
            let n = p.file_name().unwrap().to_str().unwrap();
            let mut original = fs::read(p).unwrap();
            if p == &path {
                original[at + FRAME as usize + 1] ^= 4;
            }
            assert_eq!(
                fs::read(keep.join(format!("raw-{n}"))).unwrap(),
                original,
                "{n}"
            );
        }
        assert_eq!(scan(&dir, 0).unwrap().next_seq, victim);
        // Renumbered with its checksum recomputed: damage too.
        let (_, kept, _) = case("renumbered", &|d| {
            let mut b = good.clone();
            b[at + 4] ^= 1;
            let len = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let body = at + FRAME as usize;
            let sum = frame_checksum(&b[at..at + 4], &b[at + 4..at + 12], &b[body..body + len]);
            b[at + 12..at + 20].copy_from_slice(&sum.to_le_bytes());
            fs::write(d.join(&name), b).unwrap();
        });
        assert!(kept.unwrap().1.is_some());
        // A header changed: a crash cannot do that (headers are synced
        // before the segment is named).
        let (_, kept, _) = case("header", &|d| {
            let mut b = good.clone();
            b[0] ^= 1;
            fs::write(d.join(&name), b).unwrap();
        });
        let (a, keep) = kept.unwrap();
        assert!(!a.torn && keep.is_some(), "{a:?}");
        // The last entry changed: nothing follows, but it is not torn.
        let (lp, la) = last_at.clone();
        let (_, kept, _) = case("last", &|d| {
            let mut b = fs::read(&lp).unwrap();
            b[la + FRAME as usize] ^= 1;
            fs::write(d.join(lp.file_name().unwrap()), b).unwrap();
        });
        let (a, keep) = kept.unwrap();
        assert!(!a.valid_after && !a.torn && keep.is_some(), "{a:?}");
        // Torn: a write landed only up to a sector boundary inside one of
        // the last segment's frames (zeros from there, as pre-allocated),
        // or the file was cut short inside the last frame.
        let (lp, lf) = {
            let (f, p) = segs.last().unwrap().clone();
            (p, f)
        };
        let mut frames = vec![];
        let mut a = HEADER as usize;
        for s in lf..60 {
            let end = a + FRAME as usize + payload(s).len();
            frames.push((s, a, end));
            a = end;
        }
        let (torn_seq, torn_at) = frames
            .iter()
            .find_map(|&(s, start, end)| {
                let b = (start / SECTOR + 1) * SECTOR;
                (b < end).then_some((s, b))
            })
            .expect("a frame across a sector boundary");
        let (_, la) = last_at.clone();
        for (label, truncate) in [("torn", false), ("short", true)] {
            let (before, kept, dir) = case(label, &|d| {
                let p = d.join(lp.file_name().unwrap());
                let mut b = fs::read(&lp).unwrap();
                if truncate {
                    b.truncate(la + FRAME as usize + 1);
                } else {
                    b[torn_at..].iter_mut().for_each(|x| *x = 0);
                }
                fs::write(p, b).unwrap();
            });
            let expect = if truncate { 59 } else { torn_seq };
            assert_eq!(before.next_seq, expect, "{label}");
            let (a, keep) = kept.unwrap();
            assert!(a.torn && !a.valid_after && keep.is_none(), "{label}: {a:?}");
            assert!(kept_beside(&dir).is_empty(), "{label}");
        }
    }
}
