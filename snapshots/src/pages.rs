//! Content-addressed pages (format version 2): every page a process stores
//! lives once, in a pack file, under the BLAKE3 hash of its bytes; a
//! version 2 checkpoint is a manifest naming, per memory, the hash of each
//! non-zero page. DESIGN.md ("Image format", version 2) has the byte
//! tables.
//!
//! ```text
//!  pack-<seq>.php   immutable once committed
//!  ┌──────────┬──────────────────────────────┬──────────────────────────┐
//!  │ header   │ page records, each raw 4 KiB │ index: one 32-byte entry │
//!  │ 64 B     │ or one zstd frame            │ per page, sorted by hash │
//!  └──────────┴──────────────────────────────┴──────────────────────────┘
//!  Pool: every pack's index in one map hash ─▶ (pack, offset, len, enc);
//!  the lowest pack sequence number holding a hash is where it is read.
//!  A record is checked when read: it must decompress to 4 KiB whose hash
//!  is the one asked for.
//! ```
//!
//! BLAKE3 rather than xxh3: a guest chooses its bytes, and a collision
//! would silently restore other bytes; with BLAKE3 that is infeasible.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use xxhash_rust::xxh3::xxh3_64;

use crate::backend::{StoreBackend, TempImage};
use crate::format::{PAGE_SIZE, ZSTD_LEVEL};
use crate::image::ImageSource;

/// A page's content hash: the first 16 bytes of its BLAKE3 hash.
pub type PageHash = [u8; 16];

/// Hashes one page (exactly `PAGE_SIZE` bytes).
pub fn hash_page(page: &[u8]) -> PageHash {
    let full = blake3::hash(page);
    let mut h = [0u8; 16];
    h.copy_from_slice(&full.as_bytes()[..16]);
    h
}

/// Hashes a `PageHash` for maps by its first eight bytes: they are
/// already uniformly distributed (BLAKE3 output), and SipHash over 16 bytes
/// per page is what made loading a 256 MiB pool's index slow.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageHasher(u64);

impl std::hash::Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 16]` arrives as its length, then its bytes.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

/// Builds `PageHasher`s.
pub type PageHashing = std::hash::BuildHasherDefault<PageHasher>;
/// A map keyed by page hash.
pub type PageMap<V> = HashMap<PageHash, V, PageHashing>;
/// A set of page hashes.
pub type PageSet = HashSet<PageHash, PageHashing>;

/// First eight bytes of every pack file.
pub const PACK_MAGIC: [u8; 8] = *b"PHPAGES\0";
/// Version of the pack layout.
pub const PACK_VERSION: u32 = 1;
/// Size of a pack's header.
pub const PACK_HEADER: usize = 64;
/// Size of one index entry.
pub const INDEX_ENTRY: usize = 32;
/// Most pages in one pack: a full 16 GiB memory.
pub const MAX_PACK_PAGES: u64 = 1 << 22;
/// Largest stored record: zstd's bound for one page.
pub const MAX_RECORD: u32 = (PAGE_SIZE + PAGE_SIZE / 128 + 64) as u32;
/// Record encodings.
pub const ENC_RAW: u32 = 0;
pub const ENC_ZSTD: u32 = 1;

const PACK_PREFIX: &str = "pack-";
const PACK_SUFFIX: &str = ".php";
const SEQ_DIGITS: usize = 20;

/// The largest pack sequence number a store uses (one pack a nanosecond
/// would take a century to reach it; a pack named past it is foreign).
pub const MAX_PACK_SEQ: u64 = 1 << 53;

/// The name of pack `seq`.
pub fn pack_name(seq: u64) -> String {
    format!("{PACK_PREFIX}{seq:0SEQ_DIGITS$}{PACK_SUFFIX}")
}

/// The sequence number a pack file name encodes, if it is one.
pub fn parse_pack_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PACK_PREFIX)?.strip_suffix(PACK_SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where one page's record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLoc {
    pub pack: u64,
    pub offset: u64,
    pub len: u32,
    pub enc: u32,
}

/// One index entry of a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub hash: PageHash,
    pub offset: u64,
    pub len: u32,
    pub enc: u32,
}

/// A pack's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackHeader {
    pub seq: u64,
    pub pages: u64,
    pub index_offset: u64,
    pub file_size: u64,
    pub index_checksum: u64,
}

impl PackHeader {
    pub fn encode(&self) -> [u8; PACK_HEADER] {
        let mut b = [0u8; PACK_HEADER];
        b[0..8].copy_from_slice(&PACK_MAGIC);
        b[8..12].copy_from_slice(&PACK_VERSION.to_le_bytes());
        let pre = xxh3_64(&b[0..12]) as u32;
        b[12..16].copy_from_slice(&pre.to_le_bytes());
        for (i, v) in [
            self.seq,
            self.pages,
            self.index_offset,
            self.file_size,
            self.index_checksum,
        ]
        .iter()
        .enumerate()
        {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let sum = xxh3_64(&b[0..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and checks a header against the file's real size.
    pub fn decode(b: &[u8], actual: u64) -> Result<PackHeader, String> {
        if b.len() < 16 {
            return Err(format!(
                "it is truncated: {actual} bytes, fewer than its {PACK_HEADER}-byte header"
            ));
        }
        if b[0..8] != PACK_MAGIC {
            return Err("it is not a Phantom page pack (bad magic number)".into());
        }
        if xxh3_64(&b[0..12]) as u32 != u32::from_le_bytes(b[12..16].try_into().unwrap()) {
            return Err("the checksum of its magic number and version does not match".into());
        }
        let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
        if version != PACK_VERSION {
            return Err(format!(
                "it has pack version {version}, which this build cannot read (it reads version {PACK_VERSION})"
            ));
        }
        if b.len() < PACK_HEADER {
            return Err(format!(
                "it is truncated: {actual} bytes, fewer than its {PACK_HEADER}-byte header"
            ));
        }
        if xxh3_64(&b[0..56]) != u64::from_le_bytes(b[56..64].try_into().unwrap()) {
            return Err("the checksum of its header does not match".into());
        }
        let f = |i: usize| u64::from_le_bytes(b[16 + 8 * i..24 + 8 * i].try_into().unwrap());
        let h = PackHeader {
            seq: f(0),
            pages: f(1),
            index_offset: f(2),
            file_size: f(3),
            index_checksum: f(4),
        };
        if h.pages > MAX_PACK_PAGES {
            return Err(format!(
                "it claims {} pages, over the cap of {MAX_PACK_PAGES}",
                h.pages
            ));
        }
        if actual < h.file_size {
            return Err(format!(
                "it is truncated: {actual} bytes, its header says {}",
                h.file_size
            ));
        }
        if actual > h.file_size {
            return Err(format!(
                "it has {actual} bytes but its header says {} (trailing bytes)",
                h.file_size
            ));
        }
        let index_len = h.pages * INDEX_ENTRY as u64;
        if h.index_offset < PACK_HEADER as u64
            || h.index_offset.checked_add(index_len) != Some(h.file_size)
        {
            return Err(format!(
                "its index ({index_len} bytes at {}) does not end the {}-byte file",
                h.index_offset, h.file_size
            ));
        }
        Ok(h)
    }
}

/// Decodes and checks an index: sorted by hash with no repeats, each record
/// of a valid length and encoding, the records tiling the bytes between the
/// header and the index exactly.
pub fn decode_index(bytes: &[u8], header: &PackHeader) -> Result<Vec<PackEntry>, String> {
    if xxh3_64(bytes) != header.index_checksum {
        return Err("the checksum of its index does not match".into());
    }
    let mut entries: Vec<PackEntry> = Vec::with_capacity(bytes.len() / INDEX_ENTRY);
    for (i, e) in bytes.chunks_exact(INDEX_ENTRY).enumerate() {
        let entry = PackEntry {
            hash: e[0..16].try_into().unwrap(),
            offset: u64::from_le_bytes(e[16..24].try_into().unwrap()),
            len: u32::from_le_bytes(e[24..28].try_into().unwrap()),
            enc: u32::from_le_bytes(e[28..32].try_into().unwrap()),
        };
        match entry.enc {
            ENC_RAW if entry.len as usize == PAGE_SIZE => {}
            ENC_ZSTD if entry.len > 0 && entry.len <= MAX_RECORD => {}
            _ => {
                return Err(format!(
                    "index entry {i} has encoding {} with {} bytes",
                    entry.enc, entry.len
                ));
            }
        }
        if let Some(prev) = entries.last()
            && prev.hash >= entry.hash
        {
            return Err(format!("index entry {i} is out of order or repeated"));
        }
        entries.push(entry);
    }
    let mut spans: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (e.offset, u64::from(e.len)))
        .collect();
    spans.sort_unstable();
    let mut next = PACK_HEADER as u64;
    for (offset, len) in spans {
        if offset != next {
            return Err(format!(
                "its records do not tile the file (a record at {offset}, expected {next})"
            ));
        }
        next = offset + len;
    }
    if next != header.index_offset {
        return Err(format!(
            "its records end at {next}, not at its index ({})",
            header.index_offset
        ));
    }
    Ok(entries)
}

/// Reads a pack's header and index from `source`.
pub fn read_pack(
    mut source: Box<dyn ImageSource>,
) -> io::Result<(PackHeader, Vec<PackEntry>, Box<dyn ImageSource>)> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let actual = source.seek(SeekFrom::End(0))?;
    source.seek(SeekFrom::Start(0))?;
    let mut head = vec![0u8; PACK_HEADER.min(actual as usize)];
    source.read_exact(&mut head)?;
    let header = PackHeader::decode(&head, actual).map_err(bad)?;
    let mut index = vec![0u8; (header.pages as usize) * INDEX_ENTRY];
    source.seek(SeekFrom::Start(header.index_offset))?;
    source.read_exact(&mut index)?;
    let entries = decode_index(&index, &header).map_err(bad)?;
    Ok((header, entries, source))
}

/// Writes one pack: records appended as pages come, the index and header
/// at the end, then committed under its name.
pub struct PackWriter {
    temp: Box<dyn TempImage>,
    entries: Vec<PackEntry>,
    seen: PageSet,
    pos: u64,
    compressor: zstd::bulk::Compressor<'static>,
    compressed: Vec<u8>,
    pub raw_bytes: u64,
}

impl PackWriter {
    pub fn create(backend: &dyn StoreBackend, seq: u64) -> io::Result<PackWriter> {
        let mut temp = backend.create_temp(&pack_name(seq))?;
        // Zeroes have no magic number: not a pack until the header lands.
        temp.write_all(&[0u8; PACK_HEADER])?;
        Ok(PackWriter {
            temp,
            entries: Vec::new(),
            seen: PageSet::default(),
            pos: PACK_HEADER as u64,
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            compressed: Vec::with_capacity(MAX_RECORD as usize),
            raw_bytes: 0,
        })
    }

    /// Pages added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `hash` was added to this pack.
    pub fn has(&self, hash: &PageHash) -> bool {
        self.seen.contains(hash)
    }

    /// Appends page `page` (exactly `PAGE_SIZE` bytes) under `hash`,
    /// compressed when that saves space.
    pub fn add(&mut self, hash: PageHash, page: &[u8]) -> io::Result<()> {
        if self.seen.contains(&hash) {
            return Ok(());
        }
        let mut compressed = std::mem::take(&mut self.compressed);
        compressed.clear();
        compressed.resize(MAX_RECORD as usize, 0);
        let result = match self.compressor.compress_to_buffer(page, &mut compressed) {
            Ok(n) if n < PAGE_SIZE => self.add_record(hash, ENC_ZSTD, &compressed[..n]),
            _ => self.add_record(hash, ENC_RAW, page),
        };
        self.compressed = compressed;
        self.raw_bytes += PAGE_SIZE as u64;
        result
    }

    /// Appends a record as stored (a page `add` encoded, or one copied
    /// from another pack by garbage collection).
    pub fn add_record(&mut self, hash: PageHash, enc: u32, bytes: &[u8]) -> io::Result<()> {
        if !self.seen.insert(hash) {
            return Ok(());
        }
        self.temp.write_all(bytes)?;
        self.entries.push(PackEntry {
            hash,
            offset: self.pos,
            len: bytes.len() as u32,
            enc,
        });
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Writes the index and header, syncs and commits the pack. Returns its
    /// entries and size.
    pub fn finish(mut self, seq: u64) -> io::Result<(Vec<PackEntry>, u64)> {
        self.entries.sort_unstable_by_key(|e| e.hash);
        let mut index = Vec::with_capacity(self.entries.len() * INDEX_ENTRY);
        for e in &self.entries {
            index.extend_from_slice(&e.hash);
            index.extend_from_slice(&e.offset.to_le_bytes());
            index.extend_from_slice(&e.len.to_le_bytes());
            index.extend_from_slice(&e.enc.to_le_bytes());
        }
        self.temp.write_all(&index)?;
        let header = PackHeader {
            seq,
            pages: self.entries.len() as u64,
            index_offset: self.pos,
            file_size: self.pos + index.len() as u64,
            index_checksum: xxh3_64(&index),
        };
        self.temp.seek(SeekFrom::Start(0))?;
        self.temp.write_all(&header.encode())?;
        self.temp.flush()?;
        self.temp.sync()?;
        self.temp.commit()?;
        Ok((self.entries, header.file_size))
    }
}

/// What the store knows of its packs: where each hash is, and the packs
/// that could not be read.
#[derive(Debug, Default)]
pub struct Pool {
    pub map: PageMap<PageLoc>,
    /// Each readable pack: its page count and size.
    pub packs: BTreeMap<u64, (u64, u64)>,
    /// Packs that could not be read, with why.
    pub bad: BTreeMap<u64, String>,
}

impl Pool {
    /// Reads every pack's index.
    pub fn load(backend: &dyn StoreBackend) -> io::Result<Pool> {
        let mut seqs: Vec<u64> = backend
            .list()?
            .iter()
            .filter_map(|n| parse_pack_name(n))
            .collect();
        seqs.sort_unstable();
        let mut pool = Pool::default();
        for seq in seqs {
            pool.read(backend, seq);
        }
        Ok(pool)
    }

    /// Reads pack `seq`'s index into the pool (or records why it cannot).
    pub fn read(&mut self, backend: &dyn StoreBackend, seq: u64) {
        if seq > MAX_PACK_SEQ {
            // Not one this store wrote: numbering on after it would wrap.
            self.bad.insert(
                seq,
                format!(
                    "its number is past the largest a store reaches ({MAX_PACK_SEQ}): it is not used; move it away"
                ),
            );
            return;
        }
        let opened = backend.open(&pack_name(seq)).and_then(read_pack);
        match opened {
            Ok((header, entries, _)) if header.seq == seq => {
                self.add(seq, &entries, header.file_size)
            }
            Ok((header, _, _)) => {
                self.bad.insert(
                    seq,
                    format!("its header says pack {}, its name {seq}", header.seq),
                );
            }
            Err(e) => {
                self.bad.insert(seq, e.to_string());
            }
        }
    }

    /// Adds a committed pack's entries (a hash already known stays where
    /// it is: the lowest sequence number wins).
    pub fn add(&mut self, seq: u64, entries: &[PackEntry], size: u64) {
        self.map.reserve(entries.len());
        for e in entries {
            self.map.entry(e.hash).or_insert(PageLoc {
                pack: seq,
                offset: e.offset,
                len: e.len,
                enc: e.enc,
            });
        }
        self.packs.insert(seq, (entries.len() as u64, size));
    }

    /// The next free sequence number (after every pack within
    /// `MAX_PACK_SEQ`, readable or not); an error once none is left.
    pub fn next_seq(&self) -> io::Result<u64> {
        let last = self
            .packs
            .keys()
            .chain(self.bad.keys())
            .copied()
            .filter(|&s| s <= MAX_PACK_SEQ)
            .max();
        let next = last.map_or(1, |s| s + 1);
        if next > MAX_PACK_SEQ {
            return Err(io::Error::other(format!(
                "no page pack number is left after {} (the largest is {MAX_PACK_SEQ}): move that pack away",
                pack_name(next - 1)
            )));
        }
        Ok(next)
    }

    pub fn get(&self, hash: &PageHash) -> Option<PageLoc> {
        self.map.get(hash).copied()
    }
}

/// Reads page records out of packs, keeping each pack open, and checks
/// every record against its hash.
pub struct RecordReader {
    backend: std::sync::Arc<dyn StoreBackend>,
    open: HashMap<u64, Box<dyn ImageSource>>,
    /// The bytes last read: (pack, offset, bytes).
    span: (Option<u64>, u64, Vec<u8>),
    dec: zstd::bulk::Decompressor<'static>,
}

/// Bytes read at once from a pack: records written together (a
/// checkpoint's pages, in page order) are read together.
const SPAN: usize = 256 << 10;

impl RecordReader {
    pub fn new(backend: std::sync::Arc<dyn StoreBackend>) -> io::Result<RecordReader> {
        Ok(RecordReader {
            backend,
            open: HashMap::new(),
            span: (None, 0, Vec::new()),
            dec: zstd::bulk::Decompressor::new()?,
        })
    }

    /// Where errors say pack `seq` is.
    pub fn path_of(&self, seq: u64) -> PathBuf {
        self.backend.path_of(&pack_name(seq))
    }

    /// Reads the raw record at `loc` (as stored).
    pub fn read_record(&mut self, loc: PageLoc) -> io::Result<&[u8]> {
        let at = self.locate(loc)?;
        Ok(&self.span.2[at..at + loc.len as usize])
    }

    /// Makes the span hold the record at `loc` (reading up to `SPAN` bytes
    /// from it on: records written together are read together); returns
    /// where the record starts in the span.
    fn locate(&mut self, loc: PageLoc) -> io::Result<usize> {
        let len = loc.len as usize;
        let (pack, start, data) = &self.span;
        if *pack == Some(loc.pack)
            && loc.offset >= *start
            && loc.offset + len as u64 <= *start + data.len() as u64
        {
            return Ok((loc.offset - start) as usize);
        }
        self.span.0 = None;
        let source = match self.open.entry(loc.pack) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(self.backend.open(&pack_name(loc.pack))?)
            }
        };
        let data = &mut self.span.2;
        data.clear();
        data.resize(len.max(SPAN), 0);
        source.seek(SeekFrom::Start(loc.offset))?;
        let mut got = 0;
        while got < data.len() {
            match source.read(&mut data[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ends inside the page record at offset {}",
                    self.path_of(loc.pack).display(),
                    loc.offset
                ),
            ));
        }
        data.truncate(got);
        self.span.0 = Some(loc.pack);
        self.span.1 = loc.offset;
        Ok(0)
    }

    /// Reads the page `hash` names from `loc` into `out` and checks it. If
    /// the pack is gone (collection copied its pages into a new pack and
    /// deleted it), the page is looked up again in the packs present.
    pub fn read_page(
        &mut self,
        hash: &PageHash,
        mut loc: PageLoc,
        out: &mut [u8; PAGE_SIZE],
    ) -> io::Result<()> {
        let at = match self.locate(loc) {
            Ok(at) => at,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let pool = Pool::load(&*self.backend)?;
                match pool.get(hash) {
                    Some(moved) if moved.pack != loc.pack => {
                        loc = moved;
                        self.locate(loc)?
                    }
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let record = &self.span.2[at..at + loc.len as usize];
        let ok = match loc.enc {
            ENC_RAW => {
                out.copy_from_slice(record);
                true
            }
            _ => {
                matches!(self.dec.decompress_to_buffer(record, &mut out[..]), Ok(n) if n == PAGE_SIZE)
            }
        };
        if !ok || hash_page(out) != *hash {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is corrupt: the page {} at offset {} does not match its hash",
                    self.path_of(loc.pack).display(),
                    hex(hash),
                    loc.offset
                ),
            ));
        }
        Ok(())
    }
}

/// A hash in hex, for messages.
pub fn hex(hash: &PageHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack named past `MAX_PACK_SEQ` (crafted, or from elsewhere) is
    /// not used and does not make the numbering wrap; the last number
    /// in range is refused with a clear error, never reused.
    #[test]
    fn pack_numbers_never_wrap() {
        let t = tempfile::tempdir().unwrap();
        let backend = crate::LocalDir::new(t.path().to_path_buf());
        std::fs::write(t.path().join(pack_name(u64::MAX)), b"garbage").unwrap();
        let mut pool = Pool::load(&backend).unwrap();
        assert!(
            pool.bad[&u64::MAX].contains("past the largest"),
            "{:?}",
            pool.bad
        );
        assert_eq!(pool.next_seq().unwrap(), 1);
        pool.add(7, &[], 64);
        assert_eq!(pool.next_seq().unwrap(), 8);
        pool.add(MAX_PACK_SEQ, &[], 64);
        let e = pool.next_seq().unwrap_err().to_string();
        assert!(e.contains("no page pack number is left"), "{e}");
    }

    #[test]
    fn pack_names_round_trip() {
        for seq in [0, 1, 77, u64::MAX] {
            assert_eq!(parse_pack_name(&pack_name(seq)), Some(seq));
        }
        for bad in [
            "pack-1.php",
            "ckpt-00000000000000000001.phi",
            "pack-0000000000000000000x.php",
        ] {
            assert_eq!(parse_pack_name(bad), None);
        }
    }

    #[test]
    fn header_round_trips_and_refuses_damage() {
        let h = PackHeader {
            seq: 3,
            pages: 2,
            index_offset: 64 + 8192,
            file_size: 64 + 8192 + 64,
            index_checksum: 9,
        };
        let b = h.encode();
        assert_eq!(PackHeader::decode(&b, h.file_size).unwrap(), h);
        assert!(
            PackHeader::decode(&b, h.file_size - 1)
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            PackHeader::decode(&b, h.file_size + 1)
                .unwrap_err()
                .contains("trailing")
        );
        let mut future = b;
        future[8] = 9;
        let pre = xxh3_64(&future[0..12]) as u32;
        future[12..16].copy_from_slice(&pre.to_le_bytes());
        assert!(
            PackHeader::decode(&future, h.file_size)
                .unwrap_err()
                .contains("version 9")
        );
        let mut flipped = b;
        flipped[20] ^= 1;
        assert!(
            PackHeader::decode(&flipped, h.file_size)
                .unwrap_err()
                .contains("checksum")
        );
    }
}
