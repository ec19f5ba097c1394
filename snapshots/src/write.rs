//! Writing one checkpoint image: check the request against the caps the
//! reader enforces, then stream it into any `Write + Seek` and write the
//! header last. Committing a file is the store's job.
//!
//! ```text
//!  NewCheckpoint ─ plan ─▶ Plan (sorted, merged, capped)
//!                            │ write_planned (through a BufWriter)
//!                            ▼
//!  byte 0: placeholder ─ sections ─ blocks (read source, drop zero pages
//!          (zeroes: not   in name   of a FULL, compress 256 pages)
//!           an image)     order     ─ TOC ─ seek 0: the real header
//! ```

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64;

use crate::error::CheckpointWriteError;
use crate::format::{
    BLOCK_BYTES, BLOCK_PAGES, BlockEntry, HEADER_SIZE, Header, MAX_BLOCK_COMPRESSED,
    MAX_FILE_BYTES, MAX_MEMORIES, MAX_MEMORY_BYTES, MAX_SECTION_BYTES, MAX_SECTION_NAME,
    MAX_SECTIONS, MAX_SECTIONS_TOTAL, MAX_TOC_BYTES, MemoryEntry, PAGE_SIZE, SectionEntry,
    TableEntry, Toc, ZSTD_LEVEL, page_count,
};
use crate::image::read_full_at;
use crate::{CheckpointInfo, NewCheckpoint, PageRun};

/// Buffers the small writes (sections, the TOC, blocks of a few pages);
/// a block larger than this goes straight through.
const WRITE_BUFFER: usize = 256 << 10;

/// How `write_image_to`'s errors name its output.
const STREAM_NAME: &str = "the image stream";

/// Writes checkpoint `ckpt` as one image into `out`, from its byte 0: a
/// placeholder header, the sections, the compressed page blocks and the
/// table of contents, then the real header at offset 0, so the bytes are
/// an image only once everything is in place. `out` should be empty (bytes
/// past the image are not cut off); on success it is positioned at the
/// image's end, flushed but not synced (that is the caller's job).
///
/// The request is checked against the caps exactly as
/// `CheckpointStore::write` checks it (and a parent must be older than the
/// checkpoint), so nothing is written that a reader would refuse. A FULL
/// checkpoint (no parent) skips all-zero pages.
pub fn write_image_to<W: Write + Seek>(
    out: &mut W,
    ckpt: &NewCheckpoint,
) -> Result<CheckpointInfo, CheckpointWriteError> {
    let plan = plan(ckpt)?;
    write_planned(out, Path::new(STREAM_NAME), &plan, None).map(|h| h.info())
}

static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// A checked request: sections sorted by name, memories by index, each
/// memory's dirty runs sorted, merged and within its size.
pub struct Plan<'a> {
    who: Identity,
    sections: Vec<(&'a str, &'a [u8])>,
    pub(crate) memories: Vec<PlannedMemory<'a>>,
    /// Pages named by the dirty runs, after merging.
    pub dirty_pages: u64,
}

pub(crate) struct PlannedMemory<'a> {
    pub index: u32,
    pub size_bytes: u64,
    pub runs: Vec<PageRun>,
    pub source: &'a File,
}

fn invalid(what: String) -> CheckpointWriteError {
    CheckpointWriteError::Invalid { what }
}

/// Checks a request against the caps, so nothing is written that the
/// reader would refuse.
pub fn plan(ckpt: &NewCheckpoint) -> Result<Plan<'_>, CheckpointWriteError> {
    if let Some(parent) = ckpt.parent
        && parent >= ckpt.id
    {
        return Err(CheckpointWriteError::ParentNotOlder {
            id: ckpt.id,
            parent,
        });
    }
    if ckpt.sections.len() > MAX_SECTIONS {
        return Err(invalid(format!(
            "it has {} sections, over the cap of {MAX_SECTIONS}",
            ckpt.sections.len()
        )));
    }
    let mut sections: Vec<(&str, &[u8])> = ckpt
        .sections
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    sections.sort_by(|a, b| a.0.cmp(b.0));
    let mut total = 0u64;
    for (i, (name, bytes)) in sections.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_SECTION_NAME {
            return Err(invalid(format!(
                "section name '{name}' is not 1 to {MAX_SECTION_NAME} bytes long"
            )));
        }
        if i > 0 && sections[i - 1].0 == *name {
            return Err(invalid(format!("section '{name}' appears twice")));
        }
        if bytes.len() as u64 > MAX_SECTION_BYTES {
            return Err(invalid(format!(
                "section '{name}' is over the cap of {MAX_SECTION_BYTES} bytes"
            )));
        }
        total += bytes.len() as u64;
    }
    if total > MAX_SECTIONS_TOTAL {
        return Err(invalid(format!(
            "its sections are over the cap of {MAX_SECTIONS_TOTAL} bytes in all"
        )));
    }
    if ckpt.memories.len() > MAX_MEMORIES {
        return Err(invalid(format!(
            "it has {} memories, over the cap of {MAX_MEMORIES}",
            ckpt.memories.len()
        )));
    }
    let mut memories = Vec::with_capacity(ckpt.memories.len());
    let mut dirty_pages = 0;
    for m in &ckpt.memories {
        if m.size_bytes > MAX_MEMORY_BYTES {
            return Err(invalid(format!(
                "memory {} has {} bytes, over the cap of {MAX_MEMORY_BYTES}",
                m.index, m.size_bytes
            )));
        }
        let pages = page_count(m.size_bytes);
        let mut runs: Vec<PageRun> = m.dirty.iter().copied().filter(|r| r.count > 0).collect();
        runs.sort_by_key(|r| r.first);
        let mut merged: Vec<PageRun> = Vec::with_capacity(runs.len());
        for r in runs {
            if r.first.checked_add(r.count).is_none_or(|end| end > pages) {
                return Err(invalid(format!(
                    "dirty pages {}..{} of memory {} lie beyond its {pages} pages",
                    r.first,
                    r.first.saturating_add(r.count),
                    m.index
                )));
            }
            match merged.last_mut() {
                Some(last) if last.first + last.count >= r.first => {
                    last.count = last.count.max(r.first + r.count - last.first);
                }
                _ => merged.push(r),
            }
        }
        dirty_pages += merged.iter().map(|r| r.count).sum::<u64>();
        memories.push(PlannedMemory {
            index: m.index,
            size_bytes: m.size_bytes,
            runs: merged,
            source: &m.source,
        });
    }
    memories.sort_by_key(|m| m.index);
    if let Some(w) = memories.windows(2).find(|w| w[0].index == w[1].index) {
        return Err(invalid(format!("memory {} appears twice", w[0].index)));
    }
    Ok(Plan {
        who: Identity {
            id: ckpt.id,
            parent: ckpt.parent,
            created_unix_ns: ckpt.created_unix_ns,
            pause_us: ckpt.pause_us,
        },
        sections,
        memories,
        dirty_pages,
    })
}

/// What the header needs besides what the writer computes.
struct Identity {
    id: u64,
    parent: Option<u64>,
    created_unix_ns: u64,
    pause_us: u64,
}

/// What a version 2 manifest holds besides the plan: one encoded page
/// table and its page count per planned memory, and the pack it added.
pub struct V2Parts {
    pub tables: Vec<(u64, Vec<u8>)>,
    pub pack_bytes: u64,
    pub new_pages: u64,
}

/// Writes a planned checkpoint into `out` from its byte 0 and flushes it;
/// `name` names `out` in errors. Returns the header written. With
/// `tables` (one encoded page table and its page count per planned
/// memory), a version 2 manifest: the pages live in packs.
pub fn write_planned<W: Write + Seek + ?Sized>(
    out: &mut W,
    name: &Path,
    plan: &Plan<'_>,
    tables: Option<&V2Parts>,
) -> Result<Header, CheckpointWriteError> {
    let werr = |source| CheckpointWriteError::Write {
        path: name.to_path_buf(),
        source,
    };
    let who = &plan.who;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, out);
    out.seek(SeekFrom::Start(0)).map_err(werr)?;
    // Zeroes have no magic number: until the real header replaces them,
    // the bytes are not an image.
    out.write_all(&[0u8; HEADER_SIZE]).map_err(werr)?;
    let skip_zero = who.parent.is_none();
    let mut pos = HEADER_SIZE as u64;
    let mut toc = Toc::default();

    let mut section_bytes = 0u64;
    for (name, bytes) in &plan.sections {
        let len = bytes.len() as u64;
        toc.sections.push(SectionEntry {
            name: name.to_string(),
            offset: pos,
            len,
            checksum: xxh3_64(bytes),
        });
        out.write_all(bytes).map_err(werr)?;
        pos += len;
        section_bytes += len;
    }

    let mut blocks = BlockWriter {
        out: &mut out,
        name,
        compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .map_err(|source| CheckpointWriteError::Compressor { source })?,
        plain: vec![0u8; BLOCK_BYTES],
        compressed: Vec::with_capacity(MAX_BLOCK_COMPRESSED),
        pages: 0,
        runs: Vec::new(),
        pos,
        stored_pages: 0,
    };
    let mut table_bytes = 0u64;
    for (mi, m) in plan.memories.iter().enumerate() {
        if let Some(v2) = tables {
            let (pages, bytes) = &v2.tables[mi];
            let len = bytes.len() as u64;
            blocks.out.write_all(bytes).map_err(werr)?;
            toc.memories.push(MemoryEntry {
                index: m.index,
                size_bytes: m.size_bytes,
                blocks: Vec::new(),
                table: Some(TableEntry {
                    offset: blocks.pos,
                    len,
                    checksum: xxh3_64(bytes),
                    pages: *pages,
                }),
            });
            blocks.pos += len;
            table_bytes += len;
            continue;
        }
        let mut entry = MemoryEntry {
            index: m.index,
            size_bytes: m.size_bytes,
            blocks: Vec::new(),
            table: None,
        };
        for run in &m.runs {
            let mut page = run.first;
            let end = run.first + run.count;
            while page < end {
                let take = (end - page).min((BLOCK_PAGES - blocks.pages) as u64);
                blocks.read_pages(m, page, take as usize, skip_zero)?;
                page += take;
                if blocks.pages == BLOCK_PAGES {
                    entry.blocks.push(blocks.flush(m.index)?);
                }
            }
        }
        if blocks.pages > 0 {
            entry.blocks.push(blocks.flush(m.index)?);
        }
        toc.memories.push(entry);
    }
    pos = blocks.pos;
    let stored_pages = blocks.stored_pages;

    let toc_bytes = toc.encode();
    if toc_bytes.len() as u64 > MAX_TOC_BYTES {
        return Err(invalid(format!(
            "its page index is over the cap of {MAX_TOC_BYTES} bytes"
        )));
    }
    out.write_all(&toc_bytes).map_err(werr)?;
    let header = Header {
        version: if tables.is_some() { 2 } else { 1 },
        id: who.id,
        parent: who.parent,
        created_unix_ns: who.created_unix_ns,
        pause_us: who.pause_us,
        dirty_pages: plan.dirty_pages,
        bytes_uncompressed: HEADER_SIZE as u64
            + section_bytes
            + toc_bytes.len() as u64
            + table_bytes
            + tables.map_or(0, |v2| v2.new_pages) * PAGE_SIZE as u64
            + stored_pages * PAGE_SIZE as u64,
        file_size: pos + toc_bytes.len() as u64,
        toc_offset: pos,
        toc_size: toc_bytes.len() as u64,
        toc_checksum: xxh3_64(&toc_bytes),
        pack_bytes: tables.map_or(0, |v2| v2.pack_bytes),
    };
    if header.file_size > MAX_FILE_BYTES {
        return Err(invalid(format!(
            "the image would be over the cap of {MAX_FILE_BYTES} bytes"
        )));
    }
    // Everything the header points to is written (BufWriter::seek flushes
    // first); now the header, and back to the end.
    out.seek(SeekFrom::Start(0)).map_err(werr)?;
    out.write_all(&header.encode()).map_err(werr)?;
    out.seek(SeekFrom::Start(header.file_size)).map_err(werr)?;
    out.flush().map_err(werr)?;
    Ok(header)
}

/// Gathers pages into a block, compresses and appends it.
struct BlockWriter<'f, W: Write> {
    out: &'f mut W,
    name: &'f Path,
    compressor: zstd::bulk::Compressor<'static>,
    plain: Vec<u8>,
    compressed: Vec<u8>,
    /// Pages gathered in `plain`.
    pages: usize,
    runs: Vec<PageRun>,
    /// Where the next block goes.
    pos: u64,
    stored_pages: u64,
}

impl<W: Write> BlockWriter<'_, W> {
    /// Reads pages `first..first + count` of `m` into the block (which has
    /// room for them), dropping all-zero pages if `skip_zero`.
    fn read_pages(
        &mut self,
        m: &PlannedMemory<'_>,
        first: u64,
        count: usize,
        skip_zero: bool,
    ) -> Result<(), CheckpointWriteError> {
        let at = self.pages * PAGE_SIZE;
        let dst = &mut self.plain[at..at + count * PAGE_SIZE];
        let offset = first * PAGE_SIZE as u64;
        // A partial last page reads what exists; the rest is zero.
        let avail = (m.size_bytes - offset).min(dst.len() as u64) as usize;
        let got = read_full_at(m.source, &mut dst[..avail], offset).map_err(|source| {
            CheckpointWriteError::ReadSource {
                memory: m.index,
                page: first,
                source,
            }
        })?;
        dst[got..].fill(0);
        if !skip_zero {
            self.push_run(first, count as u64);
            self.pages += count;
            return Ok(());
        }
        let mut slot = self.pages;
        for i in 0..count {
            let from = (self.pages + i) * PAGE_SIZE;
            if self.plain[from..from + PAGE_SIZE] == ZERO_PAGE {
                continue;
            }
            if slot != self.pages + i {
                self.plain
                    .copy_within(from..from + PAGE_SIZE, slot * PAGE_SIZE);
            }
            slot += 1;
            self.push_run(first + i as u64, 1);
        }
        self.pages = slot;
        Ok(())
    }

    fn push_run(&mut self, first: u64, count: u64) {
        match self.runs.last_mut() {
            Some(last) if last.first + last.count == first => last.count += count,
            _ => self.runs.push(PageRun { first, count }),
        }
    }

    /// Compresses and writes the gathered pages as one block.
    fn flush(&mut self, memory: u32) -> Result<BlockEntry, CheckpointWriteError> {
        self.compressed.clear();
        self.compressor
            .compress_to_buffer(&self.plain[..self.pages * PAGE_SIZE], &mut self.compressed)
            .map_err(|source| CheckpointWriteError::Compress { memory, source })?;
        let len = self.compressed.len();
        debug_assert!(len <= MAX_BLOCK_COMPRESSED);
        self.out
            .write_all(&self.compressed)
            .map_err(|source| CheckpointWriteError::Write {
                path: self.name.to_path_buf(),
                source,
            })?;
        let entry = BlockEntry {
            offset: self.pos,
            len: len as u32,
            checksum: xxh3_64(&self.compressed),
            runs: std::mem::take(&mut self.runs),
            pages: self.pages as u32,
        };
        self.pos += len as u64;
        self.stored_pages += self.pages as u64;
        self.pages = 0;
        Ok(entry)
    }
}
