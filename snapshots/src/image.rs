//! Reading one checkpoint file: open (header and table of contents,
//! checked), verify (every payload's checksum) and read sections and page
//! blocks. Every read is bounded by the caps in `format`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use crate::CheckpointInfo;
use crate::error::ImageError;
use crate::format::{BLOCK_BYTES, BlockEntry, HEADER_SIZE, Header, HeaderProblem, PAGE_SIZE, Toc};

/// An opened checkpoint file whose header and table of contents are valid.
/// Payloads are checked when read (and all at once by `verify`).
#[derive(Debug)]
pub struct ImageFile {
    pub path: PathBuf,
    file: File,
    pub header: Header,
    pub toc: Toc,
}

impl ImageFile {
    /// Opens `path` and checks its header and table of contents.
    /// `expected_id` is the id its file name claims.
    pub fn open(path: &Path, expected_id: Option<u64>) -> Result<ImageFile, ImageError> {
        let io = |source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let actual = file.metadata().map_err(io)?.len();
        let mut head = [0u8; HEADER_SIZE];
        let n = read_full_at(&file, &mut head, 0).map_err(io)?;
        let path_buf = path.to_path_buf();
        let header = Header::decode(&head[..n]).map_err(|p| match p {
            HeaderProblem::NotAnImage => ImageError::NotAnImage {
                path: path_buf.clone(),
            },
            HeaderProblem::Truncated => ImageError::Truncated {
                path: path_buf.clone(),
                actual,
                expected: None,
            },
            HeaderProblem::PreambleChecksum => ImageError::Checksum {
                path: path_buf.clone(),
                what: "the magic number and format version".into(),
            },
            HeaderProblem::UnsupportedVersion(version) => ImageError::UnsupportedVersion {
                path: path_buf.clone(),
                version,
            },
            HeaderProblem::Checksum => ImageError::Checksum {
                path: path_buf.clone(),
                what: "the header".into(),
            },
            HeaderProblem::Malformed(what) => ImageError::Malformed {
                path: path_buf.clone(),
                what,
            },
        })?;
        let malformed = |what: String| ImageError::Malformed {
            path: path.to_path_buf(),
            what,
        };
        if actual < header.file_size {
            return Err(ImageError::Truncated {
                path: path.to_path_buf(),
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
        // toc_size is capped and lies within the real file, so this
        // allocation is bounded by both.
        let mut toc_bytes = vec![0u8; header.toc_size as usize];
        file.read_exact_at(&mut toc_bytes, header.toc_offset)
            .map_err(io)?;
        if xxh3_64(&toc_bytes) != header.toc_checksum {
            return Err(ImageError::Checksum {
                path: path.to_path_buf(),
                what: "the table of contents".into(),
            });
        }
        let toc =
            Toc::decode(&toc_bytes, HEADER_SIZE as u64, header.toc_offset).map_err(malformed)?;
        Ok(ImageFile {
            path: path.to_path_buf(),
            file,
            header,
            toc,
        })
    }

    pub fn info(&self) -> CheckpointInfo {
        let h = &self.header;
        CheckpointInfo {
            id: h.id,
            parent: h.parent,
            created_unix_ns: h.created_unix_ns,
            pause_us: h.pause_us,
            dirty_pages: h.dirty_pages,
            bytes_uncompressed: h.bytes_uncompressed,
            bytes_written: h.file_size,
        }
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

    fn read_section_into(
        &self,
        s: &crate::format::SectionEntry,
        buf: &mut Vec<u8>,
    ) -> Result<(), ImageError> {
        self.read_checked(s.offset, s.len as usize, s.checksum, buf, || {
            format!("section '{}'", s.name)
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
        // Lengths were checked against the file's real size on open.
        buf.clear();
        buf.resize(len, 0);
        self.file
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

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
