//! Dirty-page tracking: which pages of a linear memory the guest wrote since
//! the last checkpoint.
//!
//! ```text
//!   DirtyTracker (trait)
//!   ├── PagemapTracker      reads /proc/self/pagemap: present && !file
//!   ├── PagemapScanTracker  PAGEMAP_SCAN ioctl: the kernel returns the runs
//!   └── PageCompareTracker  the oracle: compares every page with a copy
//! ```
//! The first two rely on the memory being a `MAP_PRIVATE` mapping of a memfd:
//! a page the guest wrote is a private (anonymous) copy, a clean page is the
//! file's. After a checkpoint the memory module writes dirty pages into the
//! memfd and discards the copies, which resets the tracking for free.

use std::io;

use phantom_snapshots::PageRun;

use crate::sys::MappedRegion;
use crate::sys::pagemap::{Pagemap, pagemap_bits, pagemap_scan};

/// The backends, by name (`--tracker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrackerKind {
    /// `/proc/self/pagemap`, read in chunks: works on any Linux.
    Pagemap,
    /// The `PAGEMAP_SCAN` ioctl (Linux 6.7+): the kernel reports only runs.
    PagemapScan,
    /// Compare every page with a copy taken at the last checkpoint: slow, the
    /// oracle the others are tested against.
    PageCompare,
}

impl TrackerKind {
    /// All backends.
    pub const ALL: [TrackerKind; 3] = [
        TrackerKind::Pagemap,
        TrackerKind::PagemapScan,
        TrackerKind::PageCompare,
    ];

    /// The fastest backend this kernel supports.
    pub fn best_available() -> TrackerKind {
        match Pagemap::open() {
            Ok(pm) if pagemap_scan::available(&pm) => TrackerKind::PagemapScan,
            _ => TrackerKind::Pagemap,
        }
    }

    /// Parses a `--tracker` value (`auto` picks the best available).
    pub fn parse(s: &str) -> Result<TrackerKind, String> {
        match s {
            "auto" => Ok(Self::best_available()),
            "pagemap" => Ok(Self::Pagemap),
            "pagemap-scan" => Ok(Self::PagemapScan),
            "page-compare" => Ok(Self::PageCompare),
            other => Err(format!(
                "unknown tracker '{other}' (auto, pagemap, pagemap-scan, page-compare)"
            )),
        }
    }

    /// The backend's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pagemap => "pagemap",
            Self::PagemapScan => "pagemap-scan",
            Self::PageCompare => "page-compare",
        }
    }

    /// Creates a tracker of this kind.
    pub(crate) fn create(self) -> io::Result<Box<dyn DirtyTracker>> {
        Ok(match self {
            Self::Pagemap => Box::new(PagemapTracker {
                pagemap: Pagemap::open()?,
                entries: Vec::new(),
            }),
            Self::PagemapScan => {
                let pagemap = Pagemap::open()?;
                if !pagemap_scan::available(&pagemap) {
                    return Err(io::Error::other(
                        "this kernel has no PAGEMAP_SCAN ioctl (Linux 6.7+)",
                    ));
                }
                Box::new(PagemapScanTracker {
                    pagemap,
                    buf: Vec::new(),
                })
            }
            Self::PageCompare => Box::new(PageCompareTracker { shadow: Vec::new() }),
        })
    }
}

/// Finds the pages written since the last reset.
pub(crate) trait DirtyTracker: Send {
    /// Which backend this is.
    fn kind(&self) -> TrackerKind;

    /// Appends to `out`, in ascending order and merged into maximal runs, the
    /// pages of `region[0..pages)` written since the memory was mapped or
    /// since the last `reset`.
    fn collect(
        &mut self,
        region: &MappedRegion,
        pages: u64,
        out: &mut Vec<PageRun>,
    ) -> io::Result<()>;

    /// Called once the dirty pages are in the file and their private copies
    /// discarded: the region now reads exactly what the file holds.
    fn reset(&mut self, _region: &MappedRegion, _pages: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Appends page `page` (or a run) to `out`, merging with the last run.
fn push_run(out: &mut Vec<PageRun>, first: u64, count: u64) {
    if count == 0 {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.first + last.count == first
    {
        last.count += count;
        return;
    }
    out.push(PageRun { first, count });
}

/// Reads pagemap entries in chunks and keeps present, non-file pages (and
/// swapped ones: only private copies can be swapped out of a memfd mapping).
struct PagemapTracker {
    pagemap: Pagemap,
    entries: Vec<u64>,
}

/// Pagemap entries read per `pread` (64 KiB of entries = 32 MiB of memory).
const PAGEMAP_CHUNK: u64 = 8192;

impl DirtyTracker for PagemapTracker {
    fn kind(&self) -> TrackerKind {
        TrackerKind::Pagemap
    }

    fn collect(
        &mut self,
        region: &MappedRegion,
        pages: u64,
        out: &mut Vec<PageRun>,
    ) -> io::Result<()> {
        let mut first = 0;
        while first < pages {
            let n = PAGEMAP_CHUNK.min(pages - first);
            self.entries.resize(n as usize, 0);
            self.pagemap.read(region, first, &mut self.entries)?;
            for (i, &e) in self.entries.iter().enumerate() {
                let private_copy = (e & pagemap_bits::PRESENT != 0
                    && e & pagemap_bits::FILE_OR_SHARED == 0)
                    || e & pagemap_bits::SWAPPED != 0;
                if private_copy {
                    push_run(out, first + i as u64, 1);
                }
            }
            first += n;
        }
        Ok(())
    }
}

/// Asks the kernel for runs of present, non-file pages with `PAGEMAP_SCAN`.
struct PagemapScanTracker {
    pagemap: Pagemap,
    buf: Vec<pagemap_scan::PageRegion>,
}

impl DirtyTracker for PagemapScanTracker {
    fn kind(&self) -> TrackerKind {
        TrackerKind::PagemapScan
    }

    fn collect(
        &mut self,
        region: &MappedRegion,
        pages: u64,
        out: &mut Vec<PageRun>,
    ) -> io::Result<()> {
        use pagemap_scan::*;
        let start = out.len();
        // Present and not file-backed: the private copies in RAM.
        scan(
            &self.pagemap,
            region,
            0,
            pages,
            PAGE_IS_FILE,
            PAGE_IS_PRESENT | PAGE_IS_FILE,
            &mut self.buf,
            &mut |first, count| push_run(out, first, count),
        )?;
        // Swapped-out private copies (none on a machine without swap).
        let mut swapped = Vec::new();
        scan(
            &self.pagemap,
            region,
            0,
            pages,
            0,
            PAGE_IS_SWAPPED,
            &mut self.buf,
            &mut |first, count| swapped.push(PageRun { first, count }),
        )?;
        if !swapped.is_empty() {
            let mut all: Vec<PageRun> = out.drain(start..).chain(swapped).collect();
            all.sort_by_key(|r| r.first);
            for r in all {
                push_run(out, r.first, r.count);
            }
        }
        Ok(())
    }
}

/// The oracle: a page is dirty when its bytes differ from the copy taken at
/// the last reset.
struct PageCompareTracker {
    shadow: Vec<u8>,
}

impl DirtyTracker for PageCompareTracker {
    fn kind(&self) -> TrackerKind {
        TrackerKind::PageCompare
    }

    fn collect(
        &mut self,
        region: &MappedRegion,
        pages: u64,
        out: &mut Vec<PageRun>,
    ) -> io::Result<()> {
        let bytes = region.pages(0, pages)?;
        for (i, page) in bytes.chunks(crate::sys::PAGE_SIZE).enumerate() {
            let offset = i * crate::sys::PAGE_SIZE;
            let old = self.shadow.get(offset..offset + page.len());
            // Pages beyond the shadow (the memory grew) are compared with zero.
            let changed = match old {
                Some(old) => old != page,
                None => page.iter().any(|&b| b != 0),
            };
            if changed {
                push_run(out, i as u64, 1);
            }
        }
        Ok(())
    }

    fn reset(&mut self, region: &MappedRegion, pages: u64) -> io::Result<()> {
        self.shadow.clear();
        self.shadow.extend_from_slice(region.pages(0, pages)?);
        Ok(())
    }
}
