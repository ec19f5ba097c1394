//! A raw codec of the image format, for structure-aware fuzzing: `parse`
//! splits a valid image into plain parts; `encode` lays any parts out as
//! the format says and recomputes every offset, length, size and checksum,
//! but checks nothing, so a mutated part reaches past the checksums to the
//! checks behind them.
//!
//! ```text
//!  valid bytes ── RawImage::parse ──▶ RawImage { header fields,
//!   (checked decoders,                 sections (name, bytes),
//!    every checksum)                   memories ─ blocks (runs, pages,
//!                                                  compressed bytes) }
//!  RawImage, any values ── encode ──▶ header ─ sections ─ blocks ─ TOC
//!   (never panics: lengths that     offsets, lengths, file size, TOC and
//!    do not fit a field saturate     header checksums, each section's and
//!    or wrap as the field does)      block's checksum: recomputed
//! ```
//!
//! `encode(parse(f)) == f` for every image the store writes.

use std::io::Cursor;
use std::path::PathBuf;

use xxhash_rust::xxh3::xxh3_64;

use crate::PageRun;
use crate::format::{
    BLOCK_PAGES, BlockEntry, HEADER_SIZE, Header, MemoryEntry, PAGE_SIZE, SectionEntry, TableEntry,
    Toc, ZSTD_LEVEL,
};
use crate::image::ImageFile;

/// One image's parts. Nothing ties the fields together: a fuzzer may set
/// any of them (a parent not older than `id`, a size that is no page
/// multiple, duplicate section names, runs that overlap or do not match a
/// block's pages) and `encode` writes them as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawImage {
    /// Format version: 1 (memories hold blocks) or 2 (page tables).
    pub version: u32,
    pub id: u64,
    pub parent: Option<u64>,
    pub created_unix_ns: u64,
    pub pause_us: u64,
    pub dirty_pages: u64,
    pub bytes_uncompressed: u64,
    /// Version 2: bytes of the pack the checkpoint added.
    pub pack_bytes: u64,
    /// In file order (a valid image has them in name order).
    pub sections: Vec<(String, Vec<u8>)>,
    /// In file order (a valid image has them by index).
    pub memories: Vec<RawMemory>,
}

/// One memory: its size and its blocks, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMemory {
    pub index: u32,
    pub size_bytes: u64,
    pub blocks: Vec<RawBlock>,
    /// Version 2: the page table's bytes and the page count the table of
    /// contents claims for it.
    pub table: Option<(u64, Vec<u8>)>,
}

/// One page block: the pages its runs name and its zstd frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawBlock {
    pub runs: Vec<PageRun>,
    /// Pages the frame holds: what `decompress` expects. The file does not
    /// store it (a reader sums the runs), so `encode` ignores it.
    pub pages: u32,
    pub compressed: Vec<u8>,
}

impl RawImage {
    /// Splits a valid image into its parts, through the reader's checked
    /// decoders (header, table of contents, every section's and block's
    /// checksum; blocks are not decompressed). Returns why it is not valid.
    pub fn parse(bytes: &[u8]) -> Result<RawImage, String> {
        let err = |e: crate::ImageError| e.to_string();
        let image = ImageFile::open(
            Box::new(Cursor::new(bytes.to_vec())),
            PathBuf::from("the image"),
            None,
        )
        .map_err(err)?;
        let mut sections = Vec::with_capacity(image.toc.sections.len());
        for s in &image.toc.sections {
            let mut buf = Vec::new();
            image.read_section_into(s, &mut buf).map_err(err)?;
            sections.push((s.name.clone(), buf));
        }
        let mut memories = Vec::with_capacity(image.toc.memories.len());
        for m in &image.toc.memories {
            let mut blocks = Vec::with_capacity(m.blocks.len());
            for (i, b) in m.blocks.iter().enumerate() {
                let mut compressed = Vec::new();
                image
                    .read_block(m.index, i, b, &mut compressed)
                    .map_err(err)?;
                blocks.push(RawBlock {
                    runs: b.runs.clone(),
                    pages: b.pages,
                    compressed,
                });
            }
            let table = match &m.table {
                Some(t) => {
                    let mut buf = Vec::new();
                    image.read_table_into(m.index, t, &mut buf).map_err(err)?;
                    Some((t.pages, buf))
                }
                None => None,
            };
            memories.push(RawMemory {
                index: m.index,
                size_bytes: m.size_bytes,
                blocks,
                table,
            });
        }
        let h = &image.header;
        Ok(RawImage {
            version: h.version,
            id: h.id,
            parent: h.parent,
            created_unix_ns: h.created_unix_ns,
            pause_us: h.pause_us,
            dirty_pages: h.dirty_pages,
            bytes_uncompressed: h.bytes_uncompressed,
            pack_bytes: h.pack_bytes,
            sections,
            memories,
        })
    }

    /// Lays the parts out as the format says (header, sections and blocks
    /// in the given order, then the table of contents) with every offset,
    /// length, size and checksum computed from them. Nothing is checked:
    /// what does not fit its field saturates (a block's length) or keeps
    /// the field's low bits (a name's length, a run's count, as the
    /// writer's encoder does).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_SIZE];
        let mut toc = Toc::default();
        for (name, bytes) in &self.sections {
            toc.sections.push(SectionEntry {
                name: name.clone(),
                offset: out.len() as u64,
                len: bytes.len() as u64,
                checksum: xxh3_64(bytes),
            });
            out.extend_from_slice(bytes);
        }
        for m in &self.memories {
            let mut entry = MemoryEntry {
                index: m.index,
                size_bytes: m.size_bytes,
                blocks: Vec::with_capacity(m.blocks.len()),
                table: m.table.as_ref().map(|(pages, bytes)| {
                    let t = TableEntry {
                        offset: out.len() as u64,
                        len: bytes.len() as u64,
                        checksum: xxh3_64(bytes),
                        pages: *pages,
                    };
                    out.extend_from_slice(bytes);
                    t
                }),
            };
            for b in &m.blocks {
                entry.blocks.push(BlockEntry {
                    offset: out.len() as u64,
                    len: u32::try_from(b.compressed.len()).unwrap_or(u32::MAX),
                    checksum: xxh3_64(&b.compressed),
                    runs: b.runs.clone(),
                    pages: b.pages,
                });
                out.extend_from_slice(&b.compressed);
            }
            toc.memories.push(entry);
        }
        let toc_offset = out.len() as u64;
        let toc_bytes = toc.encode();
        out.extend_from_slice(&toc_bytes);
        let header = Header {
            version: self.version,
            id: self.id,
            parent: self.parent,
            created_unix_ns: self.created_unix_ns,
            pause_us: self.pause_us,
            dirty_pages: self.dirty_pages,
            bytes_uncompressed: self.bytes_uncompressed,
            file_size: out.len() as u64,
            toc_offset,
            toc_size: toc_bytes.len() as u64,
            toc_checksum: xxh3_64(&toc_bytes),
            pack_bytes: self.pack_bytes,
        };
        out[..HEADER_SIZE].copy_from_slice(&header.encode());
        out
    }
}

impl RawBlock {
    /// A block of `plain` (the runs' pages, 4096 bytes each), compressed as
    /// the writer compresses. `pages` is `plain`'s length in pages (a
    /// partial last page counts). Nothing is checked against `runs`.
    pub fn compress(runs: Vec<PageRun>, plain: &[u8]) -> RawBlock {
        let pages = u32::try_from(plain.len().div_ceil(PAGE_SIZE)).unwrap_or(u32::MAX);
        // zstd does not fail on an in-memory buffer; if it ever did, the
        // block would be empty, which every reader refuses.
        let compressed = zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .and_then(|mut c| c.compress(plain))
            .unwrap_or_default();
        RawBlock {
            runs,
            pages,
            compressed,
        }
    }

    /// The block's pages: exactly `pages * 4096` bytes, as a reader
    /// requires, or why not. At most `BLOCK_PAGES` pages are decompressed.
    pub fn decompress(&self) -> Result<Vec<u8>, String> {
        if self.pages as usize > BLOCK_PAGES {
            return Err(format!(
                "the block claims {} pages, over the cap of {BLOCK_PAGES}",
                self.pages
            ));
        }
        let want = self.pages as usize * PAGE_SIZE;
        let mut plain = vec![0u8; want];
        let mut dec = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
        match dec.decompress_to_buffer(&self.compressed, &mut plain[..]) {
            Ok(n) if n == want => Ok(plain),
            Ok(n) => Err(format!(
                "the block decompresses to {n} bytes, not its {} pages",
                self.pages
            )),
            Err(e) => Err(format!("the block does not decompress: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_parts_encode_without_panicking() {
        let image = RawImage {
            version: 1,
            id: 0,
            parent: Some(u64::MAX),
            created_unix_ns: u64::MAX,
            pause_us: 0,
            dirty_pages: u64::MAX,
            bytes_uncompressed: 0,
            pack_bytes: 0,
            sections: vec![
                ("x".repeat(70_000), vec![1; 3]),
                (String::new(), vec![]),
                (String::new(), vec![]),
            ],
            memories: vec![RawMemory {
                index: u32::MAX,
                size_bytes: 4097,
                blocks: vec![RawBlock {
                    runs: vec![
                        PageRun {
                            first: u64::MAX,
                            count: u64::MAX,
                        },
                        PageRun { first: 0, count: 0 },
                    ],
                    pages: u32::MAX,
                    compressed: vec![],
                }],
                table: None,
            }],
        };
        let bytes = image.encode();
        assert!(RawImage::parse(&bytes).is_err());
        assert!(image.memories[0].blocks[0].decompress().is_err());
    }

    #[test]
    fn block_codec_round_trips() {
        let plain: Vec<u8> = (0..3 * PAGE_SIZE).map(|i| (i / 7) as u8).collect();
        let b = RawBlock::compress(vec![PageRun { first: 4, count: 3 }], &plain);
        assert_eq!(b.pages, 3);
        assert_eq!(b.decompress().unwrap(), plain);
        let short = RawBlock {
            pages: 2,
            ..b.clone()
        };
        assert!(short.decompress().is_err(), "inflates beyond its pages");
        let long = RawBlock { pages: 4, ..b };
        assert!(long.decompress().is_err(), "fewer bytes than its pages");
    }
}
