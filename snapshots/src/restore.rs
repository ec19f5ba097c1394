//! What a restore returns: a usable checkpoint's sections and, per memory,
//! the chain of images whose pages make it up. Pages are read block by
//! block only when `write_into` copies them out, or one at a time, on
//! demand, through a `PageReader` (lazy restore).
//!
//! ```text
//!  RestoredMemory { layers: newest image first, each Arc<ImageFile> }
//!   ├─ write_into(dest): layer by layer, block by block; a page already
//!   │                    written by a newer layer is skipped (PageSet)
//!   └─ page_reader() ──▶ PageReader: locate(p) = newest layer whose runs
//!                        hold p (binary search) ─ read block, check,
//!                        decompress ─ keep the last 4 blocks
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::CheckpointInfo;
use crate::backend::StoreBackend;
use crate::format::{BLOCK_BYTES, PAGE_SIZE, page_count};
use crate::image::{BlockDecompressor, ImageFile, block_name};
use crate::pages::{PageHash, PageLoc, RecordReader};

/// What `CheckpointStore::restore_newest` returns: the value `accept`
/// made of the first checkpoint it accepted.
#[derive(Debug)]
pub struct Restored<R> {
    pub value: R,
    pub info: CheckpointInfo,
    /// Files in its chain (1: a full image).
    pub chain_len: usize,
    /// Newer checkpoints that were skipped, newest first, with why:
    /// unusable, or refused by `accept` (its reason).
    pub skipped: Vec<(u64, String)>,
}

/// A checkpoint whose whole chain verified: the newest such from
/// `load_latest`, or a candidate handed to `restore_newest`'s `accept`.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    pub info: CheckpointInfo,
    /// The state sections of the loaded checkpoint, by name.
    pub sections: BTreeMap<String, Vec<u8>>,
    /// Its memories, by index.
    pub memories: Vec<RestoredMemory>,
    /// Files in its chain (1: a full image).
    pub chain_len: usize,
    /// Newer checkpoints that were skipped, newest first, with why.
    pub skipped: Vec<(u64, String)>,
}

/// One memory of a loaded checkpoint. Clones share the image files.
#[derive(Clone, Debug)]
pub struct RestoredMemory {
    pub index: u32,
    pub size_bytes: u64,
    /// The files holding this memory's pages, newest first, each with the
    /// position of this memory in its table of contents (version 1).
    pub(crate) layers: Vec<(Arc<ImageFile>, usize)>,
    /// Version 2: the memory's pages in the store's packs.
    pub(crate) paged: Option<Arc<PagedPages>>,
}

/// A version 2 memory's pages, each resolved to its record in a pack.
pub(crate) struct PagedPages {
    /// Sorted by page.
    pub entries: Vec<(u64, PageHash, PageLoc)>,
    pub backend: Arc<dyn StoreBackend>,
}

impl std::fmt::Debug for PagedPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagedPages")
            .field("pages", &self.entries.len())
            .finish()
    }
}

impl PagedPages {
    /// Writes every page into `dest`, reading packs in file order.
    fn write_into(&self, size_bytes: u64, dest: &File) -> io::Result<u64> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        order.sort_unstable_by_key(|&i| (self.entries[i].2.pack, self.entries[i].2.offset));
        let mut reader = RecordReader::new(self.backend.clone())?;
        let mut page = [0u8; PAGE_SIZE];
        for i in order {
            let (p, hash, loc) = &self.entries[i];
            reader.read_page(hash, *loc, &mut page)?;
            let at = p * PAGE_SIZE as u64;
            let len = (size_bytes - at).min(PAGE_SIZE as u64) as usize;
            dest.write_all_at(&page[..len], at)?;
        }
        Ok(self.entries.len() as u64)
    }
}

impl RestoredMemory {
    /// Pages of the memory (a partial last page counts).
    pub fn page_count(&self) -> u64 {
        page_count(self.size_bytes)
    }

    /// Writes every stored page (newest wins) into `dest` at
    /// `page * PAGE_SIZE`, and returns how many distinct pages it wrote.
    /// `dest` must already be `size_bytes` long and zero-filled: pages never
    /// stored are not written. Blocks are read, checked and decompressed one
    /// at a time, newest file first; a block whose pages all came from a
    /// newer file is not read at all.
    pub fn write_into(&self, dest: &File) -> io::Result<u64> {
        if let Some(paged) = &self.paged {
            return paged.write_into(self.size_bytes, dest);
        }
        let pages = self.page_count();
        let mut done = PageSet::new(pages);
        let mut compressed = Vec::new();
        let mut plain = vec![0u8; BLOCK_BYTES];
        let mut written = 0;
        for (image, mi) in &self.layers {
            let mem = &image.toc.memories[*mi];
            let mut dec = BlockDecompressor::new(&image.path).map_err(|e| e.into_io())?;
            for (i, block) in mem.blocks.iter().enumerate() {
                let needed = block
                    .runs
                    .iter()
                    .any(|r| (r.first..(r.first + r.count).min(pages)).any(|p| !done.has(p)));
                if !needed {
                    continue;
                }
                image
                    .read_block(mem.index, i, block, &mut compressed)
                    .map_err(|e| e.into_io())?;
                dec.decompress(&image.path, &compressed, block, &mut plain, || {
                    block_name(mem.index, i, block)
                })
                .map_err(|e| e.into_io())?;
                let mut slot = 0u64;
                for r in &block.runs {
                    let end = (r.first + r.count).min(pages);
                    let mut p = r.first;
                    while p < end {
                        if done.has(p) {
                            p += 1;
                            continue;
                        }
                        let start = p;
                        while p < end && !done.has(p) {
                            done.set(p);
                            p += 1;
                        }
                        let from = (slot + start - r.first) as usize * PAGE_SIZE;
                        let to_byte = (p * PAGE_SIZE as u64).min(self.size_bytes);
                        let len = (to_byte - start * PAGE_SIZE as u64) as usize;
                        dest.write_all_at(&plain[from..from + len], start * PAGE_SIZE as u64)?;
                        written += p - start;
                    }
                    slot += r.count;
                }
            }
        }
        Ok(written)
    }
}

/// Blocks a `PageReader` keeps decompressed: a fault usually comes near the
/// previous one, and a chain of deltas interleaves a few files' blocks.
/// Four blocks are 4 MiB per reader.
const CACHED_BLOCKS: usize = 4;

impl RestoredMemory {
    /// Random access to the memory's pages, for restoring it lazily. The
    /// reader owns what it needs (it can move to another thread and outlive
    /// `self`).
    pub fn page_reader(&self) -> io::Result<PageReader> {
        let paged = match &self.paged {
            Some(p) => Some((p.clone(), RecordReader::new(p.backend.clone())?)),
            None => None,
        };
        let mut layers = Vec::with_capacity(self.layers.len());
        for (image, mi) in &self.layers {
            let mem = &image.toc.memories[*mi];
            // Each block's end page, to find a page's block by binary search
            // (runs are strictly increasing across a memory's blocks).
            let ends = mem
                .blocks
                .iter()
                .map(|b| b.runs.last().map_or(0, |r| r.first + r.count))
                .collect();
            layers.push(Layer {
                image: image.clone(),
                mi: *mi,
                ends,
            });
        }
        let path = self.layers.first().map(|(i, _)| i.path.clone());
        Ok(PageReader {
            pages: self.page_count(),
            paged,
            layers,
            dec: BlockDecompressor::new(path.as_deref().unwrap_or(std::path::Path::new("")))
                .map_err(|e| e.into_io())?,
            compressed: Vec::new(),
            cache: Vec::with_capacity(CACHED_BLOCKS),
            clock: 0,
            blocks_read: 0,
        })
    }
}

/// Reads single pages of a restored memory: finds the newest file holding
/// the page, reads its block (checksum checked again) and decompresses it,
/// keeping the last few blocks decompressed.
pub struct PageReader {
    pages: u64,
    /// Version 2: the pages and a reader of their packs.
    paged: Option<(Arc<PagedPages>, RecordReader)>,
    /// Newest first, like `RestoredMemory::layers`.
    layers: Vec<Layer>,
    dec: BlockDecompressor,
    compressed: Vec<u8>,
    cache: Vec<CachedBlock>,
    clock: u64,
    blocks_read: u64,
}

// The host moves a reader to the thread that fills a memory lazily.
const _: () = {
    const fn send<T: Send>() {}
    send::<PageReader>();
};

struct Layer {
    image: Arc<ImageFile>,
    mi: usize,
    ends: Vec<u64>,
}

struct CachedBlock {
    layer: usize,
    block: usize,
    plain: Vec<u8>,
    last_used: u64,
}

impl std::fmt::Debug for PageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageReader")
            .field("pages", &self.pages)
            .field("layers", &self.layers.len())
            .field("blocks_read", &self.blocks_read)
            .finish()
    }
}

impl PageReader {
    /// Pages of the memory.
    pub fn page_count(&self) -> u64 {
        self.pages
    }

    /// Blocks read and decompressed so far (cache misses).
    pub fn blocks_read(&self) -> u64 {
        self.blocks_read
    }

    /// The newest stored version of `page`: where it is (layer, block,
    /// page slot in the block), or None if no file stores it.
    fn locate(&self, page: u64) -> Option<(usize, usize, usize)> {
        for (li, layer) in self.layers.iter().enumerate() {
            let i = layer.ends.partition_point(|&end| end <= page);
            let Some(block) = layer.image.toc.memories[layer.mi].blocks.get(i) else {
                continue;
            };
            let mut slot = 0u64;
            for r in &block.runs {
                if page < r.first {
                    break;
                }
                if page < r.first + r.count {
                    return Some((li, i, (slot + page - r.first) as usize));
                }
                slot += r.count;
            }
        }
        None
    }

    /// Copies page `page` into `buf` (a partial last page comes
    /// zero-padded). Returns false, with `buf` zeroed, for a page no file
    /// stores (it is zero). A page past the memory's end is an error.
    pub fn read_page(&mut self, page: u64, buf: &mut [u8; PAGE_SIZE]) -> io::Result<bool> {
        if page >= self.pages {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("page {page} is past the memory's {} pages", self.pages),
            ));
        }
        if let Some((paged, reader)) = &mut self.paged {
            let Ok(i) = paged.entries.binary_search_by_key(&page, |e| e.0) else {
                buf.fill(0);
                return Ok(false);
            };
            let (_, hash, loc) = &paged.entries[i];
            reader.read_page(hash, *loc, buf)?;
            self.blocks_read += 1;
            return Ok(true);
        }
        let Some((li, bi, slot)) = self.locate(page) else {
            buf.fill(0);
            return Ok(false);
        };
        self.clock += 1;
        let c = match self
            .cache
            .iter()
            .position(|c| c.layer == li && c.block == bi)
        {
            Some(c) => c,
            None => self.load(li, bi)?,
        };
        let cached = &mut self.cache[c];
        cached.last_used = self.clock;
        buf.copy_from_slice(&cached.plain[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE]);
        Ok(true)
    }

    /// Reads, checks and decompresses block `bi` of layer `li` into the
    /// cache (evicting the least recently used); returns its cache slot.
    fn load(&mut self, li: usize, bi: usize) -> io::Result<usize> {
        let layer = &self.layers[li];
        let image = &layer.image;
        let mem = &image.toc.memories[layer.mi];
        let block = &mem.blocks[bi];
        image
            .read_block(mem.index, bi, block, &mut self.compressed)
            .map_err(|e| e.into_io())?;
        let c = if self.cache.len() < CACHED_BLOCKS {
            self.cache.push(CachedBlock {
                layer: li,
                block: bi,
                plain: vec![0u8; BLOCK_BYTES],
                last_used: 0,
            });
            self.cache.len() - 1
        } else {
            let (c, _) = self
                .cache
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.last_used)
                .expect("the cache is full, so not empty");
            c
        };
        let cached = &mut self.cache[c];
        // Mark the slot empty until the block decompressed correctly.
        cached.layer = usize::MAX;
        self.dec
            .decompress(
                &image.path,
                &self.compressed,
                block,
                &mut cached.plain,
                || block_name(mem.index, bi, block),
            )
            .map_err(|e| e.into_io())?;
        cached.layer = li;
        cached.block = bi;
        self.blocks_read += 1;
        Ok(c)
    }
}

/// A bitmap of page numbers below a bound (at most 512 KiB for a 16 GiB
/// memory).
struct PageSet(Vec<u64>);

impl PageSet {
    fn new(pages: u64) -> Self {
        PageSet(vec![0; pages.div_ceil(64) as usize])
    }
    fn has(&self, p: u64) -> bool {
        self.0[(p / 64) as usize] & (1 << (p % 64)) != 0
    }
    fn set(&mut self, p: u64) {
        self.0[(p / 64) as usize] |= 1 << (p % 64);
    }
}
