//! Reading one checkpoint image from any `Read + Seek`: open (header and
//! table of contents, checked), verify (every payload's checksum) and read
//! sections and page blocks. Every read is bounded by the caps in `format`.
//!
//! ```text
//!  Read + Seek ──▶ ImageFile::open ──▶ ImageFile (header, TOC checked)
//!  (a file, a        seek end: real     │ Mutex<source>: one seek + read_exact
//!   Cursor, ...)     length; header;    ├─ verify(deep)   every checksum
//!                    TOC (capped)       ├─ read_sections
//!                                       └─ read_block ──▶ PageReader, write_into
//!  read_image_from ──▶ ImageReader: the same, public, for one stream
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use xxhash_rust::xxh3::xxh3_64;

use crate::CheckpointInfo;
use crate::error::ImageError;
use crate::format::{
    BLOCK_BYTES, BlockEntry, HEADER_SIZE, Header, HeaderProblem, MemoryEntry, PAGE_SIZE,
    SectionEntry, TableEntry, Toc, page_count,
};
use crate::manifest::{PageTable, decode_table};
use crate::restore::RestoredMemory;

/// Where an image's bytes are read from: a file, a `Cursor`, a network
/// buffer. `Send` because restore reads pages on other threads.
pub trait ImageSource: Read + Seek + Send {}

impl<T: Read + Seek + Send> ImageSource for T {}

/// An opened checkpoint image whose header and table of contents are valid.
/// Payloads are checked when read (and all at once by `verify`).
#[derive(Debug)]
pub struct ImageFile {
    /// How errors name the image (a file's path, or a caller's name).
    pub path: PathBuf,
    /// Shared by every reader of the image (restore's `PageReader`s run on
    /// other threads), so each read is one seek and one `read_exact` under
    /// the lock.
    source: Mutex<Source>,
    pub header: Header,
    pub toc: Toc,
}

/// The image's bytes and where the next read starts, so sequential reads
/// (verify, write_into) need no seek.
struct Source {
    reader: Box<dyn ImageSource>,
    /// `None` when unknown (after a failed read).
    pos: Option<u64>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("pos", &self.pos).finish()
    }
}

impl Source {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.pos != Some(offset) {
            self.pos = None;
            self.reader.seek(SeekFrom::Start(offset))?;
        }
        self.pos = None;
        self.reader.read_exact(buf)?;
        self.pos = Some(offset + buf.len() as u64);
        Ok(())
    }
}

impl ImageFile {
    /// Checks the header and table of contents of the image `reader` holds
    /// (from its byte 0 to its end). `path` names it in errors;
    /// `expected_id` is the id its name claims.
    pub fn open(
        mut reader: Box<dyn ImageSource>,
        path: PathBuf,
        expected_id: Option<u64>,
    ) -> Result<ImageFile, ImageError> {
        let io = |source| ImageError::Io {
            path: path.clone(),
            source,
        };
        // The real length bounds every claim the header makes.
        let actual = reader.seek(SeekFrom::End(0)).map_err(io)?;
        reader.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut head = [0u8; HEADER_SIZE];
        let n = read_full(&mut reader, &mut head).map_err(io)?;
        let header = Header::decode(&head[..n]).map_err(|p| match p {
            HeaderProblem::NotAnImage => ImageError::NotAnImage { path: path.clone() },
            HeaderProblem::Truncated => ImageError::Truncated {
                path: path.clone(),
                actual,
                expected: None,
            },
            HeaderProblem::PreambleChecksum => ImageError::Checksum {
                path: path.clone(),
                what: "the magic number and format version".into(),
            },
            HeaderProblem::UnsupportedVersion(version) => ImageError::UnsupportedVersion {
                path: path.clone(),
                version,
            },
            HeaderProblem::Checksum => ImageError::Checksum {
                path: path.clone(),
                what: "the header".into(),
            },
            HeaderProblem::Malformed(what) => ImageError::Malformed {
                path: path.clone(),
                what,
            },
        })?;
        let malformed = |what: String| ImageError::Malformed {
            path: path.clone(),
            what,
        };
        if actual < header.file_size {
            return Err(ImageError::Truncated {
                path: path.clone(),
                actual,
                expected: Some(header.file_size),
            });
        }
        if actual > header.file_size {
            return Err(malformed(format!(
                "it has {actual} bytes but its header says {} (trailing bytes)",
                header.file_size
            )));
        }
        if let Some(id) = expected_id
            && id != header.id
        {
            return Err(malformed(format!(
                "its name says checkpoint {id} but its header says {}",
                header.id
            )));
        }
        // toc_size is capped and lies within the real image, so this
        // allocation is bounded by both.
        let mut toc_bytes = vec![0u8; header.toc_size as usize];
        let mut source = Source { reader, pos: None };
        source
            .read_exact_at(&mut toc_bytes, header.toc_offset)
            .map_err(io)?;
        if xxh3_64(&toc_bytes) != header.toc_checksum {
            return Err(ImageError::Checksum {
                path: path.clone(),
                what: "the table of contents".into(),
            });
        }
        let toc = Toc::decode(
            &toc_bytes,
            HEADER_SIZE as u64,
            header.toc_offset,
            header.version,
        )
        .map_err(malformed)?;
        Ok(ImageFile {
            path,
            source: Mutex::new(source),
            header,
            toc,
        })
    }

    pub fn info(&self) -> CheckpointInfo {
        self.header.info()
    }

    /// Checks every section's and every block's checksum. With `deep`, also
    /// decompresses every block and checks it yields exactly its pages.
    pub fn verify(&self, deep: bool) -> Result<(), ImageError> {
        let mut buf = Vec::new();
        for s in &self.toc.sections {
            self.read_section_into(s, &mut buf)?;
        }
        let mut plain = if deep {
            vec![0u8; BLOCK_BYTES]
        } else {
            Vec::new()
        };
        let mut dec = BlockDecompressor::new(&self.path)?;
        for m in &self.toc.memories {
            if m.table.is_some() {
                self.read_table(m)?;
            }
            for (i, b) in m.blocks.iter().enumerate() {
                self.read_block(m.index, i, b, &mut buf)?;
                if deep {
                    dec.decompress(&self.path, &buf, b, &mut plain, || {
                        block_name(m.index, i, b)
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Reads every section (checksums checked).
    pub fn read_sections(&self) -> Result<BTreeMap<String, Vec<u8>>, ImageError> {
        let mut out = BTreeMap::new();
        for s in &self.toc.sections {
            let mut buf = Vec::new();
            self.read_section_into(s, &mut buf)?;
            out.insert(s.name.clone(), buf);
        }
        Ok(out)
    }

    pub fn read_section_into(&self, s: &SectionEntry, buf: &mut Vec<u8>) -> Result<(), ImageError> {
        self.read_checked(s.offset, s.len as usize, s.checksum, buf, || {
            format!("section '{}'", s.name)
        })
    }

    /// Reads the page table of memory `memory` (version 2; checksum
    /// checked) into `buf`.
    pub fn read_table_into(
        &self,
        memory: u32,
        t: &TableEntry,
        buf: &mut Vec<u8>,
    ) -> Result<(), ImageError> {
        self.read_checked(t.offset, t.len as usize, t.checksum, buf, || {
            format!("the page table of memory {memory}")
        })
    }

    /// Reads and decodes the page table of memory entry `m` (version 2).
    pub fn read_table(&self, m: &MemoryEntry) -> Result<PageTable, ImageError> {
        let Some(t) = &m.table else {
            return Ok(Vec::new());
        };
        let mut buf = Vec::new();
        self.read_table_into(m.index, t, &mut buf)?;
        decode_table(&buf, page_count(m.size_bytes), t.pages).map_err(|what| {
            ImageError::Malformed {
                path: self.path.clone(),
                what: format!("memory {}: {what}", m.index),
            }
        })
    }

    /// Reads block `i` of memory `memory` (compressed, checksum checked)
    /// into `buf`.
    pub fn read_block(
        &self,
        memory: u32,
        i: usize,
        b: &BlockEntry,
        buf: &mut Vec<u8>,
    ) -> Result<(), ImageError> {
        self.read_checked(b.offset, b.len as usize, b.checksum, buf, || {
            block_name(memory, i, b)
        })
    }

    fn read_checked(
        &self,
        offset: u64,
        len: usize,
        checksum: u64,
        buf: &mut Vec<u8>,
        what: impl Fn() -> String,
    ) -> Result<(), ImageError> {
        // Lengths were checked against the image's real size on open.
        buf.clear();
        buf.resize(len, 0);
        self.source
            .lock()
            // A panic elsewhere cannot leave the source inconsistent: its
            // position is unknown (None) during every read.
            .unwrap_or_else(PoisonError::into_inner)
            .read_exact_at(buf, offset)
            .map_err(|source| ImageError::Io {
                path: self.path.clone(),
                source,
            })?;
        if xxh3_64(buf) != checksum {
            return Err(ImageError::Checksum {
                path: self.path.clone(),
                what: what(),
            });
        }
        Ok(())
    }
}

/// How errors name a block.
pub fn block_name(memory: u32, i: usize, b: &BlockEntry) -> String {
    let first = b.runs.first().map_or(0, |r| r.first);
    format!("page block {i} of memory {memory} (from page {first})")
}

/// A reusable zstd decompressor that writes into a bounded buffer.
pub struct BlockDecompressor(zstd::bulk::Decompressor<'static>);

impl BlockDecompressor {
    pub fn new(path: &Path) -> Result<Self, ImageError> {
        zstd::bulk::Decompressor::new()
            .map(BlockDecompressor)
            .map_err(|source| ImageError::Io {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Decompresses `compressed` into `plain[..pages * PAGE_SIZE]`, which
    /// must come out exactly full. `plain` is `BLOCK_BYTES` long.
    pub fn decompress(
        &mut self,
        path: &Path,
        compressed: &[u8],
        b: &BlockEntry,
        plain: &mut [u8],
        what: impl Fn() -> String,
    ) -> Result<(), ImageError> {
        let want = b.pages as usize * PAGE_SIZE;
        match self.0.decompress_to_buffer(compressed, &mut plain[..want]) {
            Ok(n) if n == want => Ok(()),
            _ => Err(ImageError::Decompress {
                path: path.to_path_buf(),
                what: what(),
            }),
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads `file` at `offset` until `buf` is full or the file ends; returns
/// the bytes read. (Checkpoint sources are read with positioned reads, so
/// a source shared with the host needs no seek.)
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// One checkpoint image read from a stream rather than from a store: its
/// header and table of contents are checked; `verify` checks the rest.
/// Clones share the stream.
#[derive(Clone, Debug)]
pub struct ImageReader {
    image: Arc<ImageFile>,
}

/// Opens the checkpoint image `r` holds (its bytes from offset 0 to its
/// end) and checks its header and table of contents, with the same caps as
/// a store: nothing is allocated before the claim behind it is checked
/// against the caps and the stream's real length. `name_for_errors` names
/// the image in errors; `expected_id`, if given, must be its id.
pub fn read_image_from<R: Read + Seek + Send + 'static>(
    r: R,
    name_for_errors: &str,
    expected_id: Option<u64>,
) -> Result<ImageReader, ImageError> {
    ImageFile::open(Box::new(r), PathBuf::from(name_for_errors), expected_id).map(|image| {
        ImageReader {
            image: Arc::new(image),
        }
    })
}

impl ImageReader {
    /// What the header says, and the image's size.
    pub fn info(&self) -> CheckpointInfo {
        self.image.info()
    }

    /// Checks every section's and every block's checksum; with `deep`,
    /// also decompresses every block and checks it yields exactly its pages.
    pub fn verify(&self, deep: bool) -> Result<(), ImageError> {
        self.image.verify(deep)
    }

    /// Every state section, by name (checksums checked).
    pub fn sections(&self) -> Result<BTreeMap<String, Vec<u8>>, ImageError> {
        self.image.read_sections()
    }

    /// The image's memories, by index, with only the pages this image
    /// stores: other pages read as zero. A DELTA's memories are complete
    /// only with its chain (which `CheckpointStore` resolves).
    pub fn memories(&self) -> Vec<RestoredMemory> {
        self.image
            .toc
            .memories
            .iter()
            .enumerate()
            .map(|(mi, m)| RestoredMemory {
                paged: None,
                index: m.index,
                size_bytes: m.size_bytes,
                layers: vec![(self.image.clone(), mi)],
            })
            .collect()
    }
}
