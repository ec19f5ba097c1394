//! `/proc/self/pagemap` and its `PAGEMAP_SCAN` ioctl: what the page tables say
//! about each page of a mapping (present, file-backed, swapped).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::region::{MappedRegion, PAGE_SIZE};

/// Reads page-table entries of this process from `/proc/self/pagemap`.
pub struct Pagemap {
    file: File,
}

/// Bits of a pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
pub mod pagemap_bits {
    /// The page is present in RAM.
    pub const PRESENT: u64 = 1 << 63;
    /// The page is swapped out.
    pub const SWAPPED: u64 = 1 << 62;
    /// The page is a file page or shared anonymous.
    pub const FILE_OR_SHARED: u64 = 1 << 61;
}

impl Pagemap {
    /// Opens the pagemap of this process.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            file: File::open("/proc/self/pagemap")?,
        })
    }

    /// Reads the entries for `entries.len()` pages starting at page `first`
    /// of `region`.
    pub fn read(&self, region: &MappedRegion, first: u64, entries: &mut [u64]) -> io::Result<()> {
        let vpage = region.base() as u64 / PAGE_SIZE as u64 + first;
        // SAFETY: u64 has no invalid bit patterns and the byte view covers
        // exactly the slice's memory.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                entries.as_mut_ptr().cast::<u8>(),
                std::mem::size_of_val(entries),
            )
        };
        self.file.read_exact_at(bytes, vpage * 8)
    }
}

/// The `PAGEMAP_SCAN` ioctl (Linux 6.7+) on `/proc/self/pagemap`.
pub mod pagemap_scan {
    use super::*;

    /// Page categories (include/uapi/linux/fs.h).
    pub const PAGE_IS_FILE: u64 = 1 << 2;
    /// The page is present.
    pub const PAGE_IS_PRESENT: u64 = 1 << 3;
    /// The page is swapped.
    pub const PAGE_IS_SWAPPED: u64 = 1 << 4;

    #[repr(C)]
    #[derive(Default)]
    struct PmScanArg {
        size: u64,
        flags: u64,
        start: u64,
        end: u64,
        walk_end: u64,
        vec: u64,
        vec_len: u64,
        max_pages: u64,
        category_inverted: u64,
        category_mask: u64,
        category_anyof_mask: u64,
        return_mask: u64,
    }

    /// One run of pages the kernel reported.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct PageRegion {
        /// Start address.
        pub start: u64,
        /// End address (exclusive).
        pub end: u64,
        /// Categories of the run.
        pub categories: u64,
    }

    /// `_IOWR('f', 16, struct pm_scan_arg)`.
    const PAGEMAP_SCAN: libc::c_ulong = (3 << 30)
        | ((std::mem::size_of::<PmScanArg>() as libc::c_ulong) << 16)
        | ((b'f' as libc::c_ulong) << 8)
        | 16;

    /// Scans pages `[first, first+count)` of `region` for pages whose
    /// categories, after inverting `inverted`, include all of `mask`; calls
    /// `found(first_page, page_count)` for each run, in address order.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the ioctl's arguments one to one"
    )]
    pub fn scan(
        pagemap: &Pagemap,
        region: &MappedRegion,
        first: u64,
        count: u64,
        inverted: u64,
        mask: u64,
        buf: &mut Vec<PageRegion>,
        found: &mut dyn FnMut(u64, u64),
    ) -> io::Result<()> {
        if buf.len() < 512 {
            buf.resize(512, PageRegion::default());
        }
        let base = region.base() as u64;
        let mut start = base + first * PAGE_SIZE as u64;
        let end = start + count * PAGE_SIZE as u64;
        while start < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                start,
                end,
                vec: buf.as_mut_ptr() as u64,
                vec_len: buf.len() as u64,
                category_inverted: inverted,
                category_mask: mask,
                return_mask: mask,
                ..Default::default()
            };
            // SAFETY: `arg` is a correctly sized pm_scan_arg; `vec` points to
            // `vec_len` writable PageRegion entries that outlive the call; the
            // range lies in our own mapping and the scan only reads page
            // tables.
            let n = unsafe { libc::ioctl(pagemap.file.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for r in &buf[..n as usize] {
                found(
                    (r.start - base) / PAGE_SIZE as u64,
                    (r.end - r.start) / PAGE_SIZE as u64,
                );
            }
            if arg.walk_end <= start {
                break;
            }
            start = arg.walk_end;
        }
        Ok(())
    }

    /// Whether this kernel has `PAGEMAP_SCAN`.
    pub fn available(pagemap: &Pagemap) -> bool {
        let Ok(mut region) = MappedRegion::reserve(PAGE_SIZE) else {
            return false;
        };
        let Ok(fd) = memfd::MemfdOptions::default().create("phantom-probe") else {
            return false;
        };
        if fd.as_file().set_len(PAGE_SIZE as u64).is_err()
            || region.map_file(fd.as_file(), 0, PAGE_SIZE).is_err()
        {
            return false;
        }
        let mut buf = Vec::new();
        scan(
            pagemap,
            &region,
            0,
            1,
            0,
            PAGE_IS_PRESENT,
            &mut buf,
            &mut |_, _| {},
        )
        .is_ok()
    }
}
