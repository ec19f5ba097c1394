//! What `load_latest` returns: the newest usable checkpoint's sections and,
//! per memory, the chain of files whose pages make it up. Pages are read
//! block by block only when `write_into` copies them out.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::CheckpointInfo;
use crate::format::{BLOCK_BYTES, PAGE_SIZE, page_count};
use crate::image::{BlockDecompressor, ImageFile, block_name};

/// The newest checkpoint whose whole chain verified.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    pub info: CheckpointInfo,
    /// The state sections of the loaded checkpoint, by name.
    pub sections: BTreeMap<String, Vec<u8>>,
    /// Its memories, by index.
    pub memories: Vec<RestoredMemory>,
    /// Newer checkpoints that were skipped, newest first, with why.
    pub skipped: Vec<(u64, String)>,
}

/// One memory of a loaded checkpoint.
#[derive(Debug)]
pub struct RestoredMemory {
    pub index: u32,
    pub size_bytes: u64,
    /// The files holding this memory's pages, newest first, each with the
    /// position of this memory in its table of contents.
    pub(crate) layers: Vec<(Arc<ImageFile>, usize)>,
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
