//! Every `unsafe` of the host lives here: the memfd-backed mapping of a linear
//! memory, reading `/proc/self/pagemap`, the `PAGEMAP_SCAN` ioctl, and loading
//! a precompiled component.
//!
//! ```text
//!   reservation (PROT_NONE, reserve + guard bytes)
//!   ┌──────────────────────────────┬───────────────┬───────┐
//!   │ memfd MAP_PRIVATE [0, size)  │ PROT_NONE     │ guard │
//!   └──────────────────────────────┴───────────────┴───────┘
//!     clean page  = the memfd's page (file-backed in the page tables)
//!     dirty page  = a private copy made by the guest's first write
//! ```
//! A checkpoint copies each private page into the memfd (`pwrite`) and drops
//! the copy (`MADV_DONTNEED`), so the next write is visible again.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The host page size the trackers and the image store count in.
pub const PAGE_SIZE: usize = 4096;

/// A virtual-memory reservation whose low part maps a memfd privately.
///
/// The base address never moves: growth maps more of the file in place.
pub struct MappedRegion {
    base: *mut u8,
    /// Whether file mappings are `MAP_SHARED` (a writable view of the file)
    /// instead of `MAP_PRIVATE` (the guest's copy-on-write view).
    shared: bool,
    /// Bytes reserved, guard included.
    reserved: usize,
    /// Bytes currently mapped from the file (the linear memory's size).
    mapped: usize,
}

// SAFETY: the region is plain memory owned by this value; wasmtime moves
// `LinearMemory` objects between threads but never uses them concurrently,
// and every access from the host happens at quiescent points under `&self`
// or `&mut self`.
unsafe impl Send for MappedRegion {}
// SAFETY: see `Send`; shared references only read page-table state or copy
// bytes at quiescent points.
unsafe impl Sync for MappedRegion {}

impl MappedRegion {
    /// Reserves `reserve` bytes of address space, inaccessible; files will be
    /// mapped privately.
    pub fn reserve(reserve: usize) -> io::Result<Self> {
        Self::reserve_with(reserve, false)
    }

    /// Reserves address space for a shared, writable view of a file: stores
    /// through it go straight to the file.
    pub fn reserve_shared(reserve: usize) -> io::Result<Self> {
        Self::reserve_with(reserve, true)
    }

    fn reserve_with(reserve: usize, shared: bool) -> io::Result<Self> {
        // SAFETY: an anonymous PROT_NONE mapping at an address of the kernel's
        // choosing touches no existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: base.cast(),
            shared,
            reserved: reserve,
            mapped: 0,
        })
    }

    /// Maps `[from, to)` of `file` privately at the same offsets of the region.
    pub fn map_file(&mut self, file: &File, from: usize, to: usize) -> io::Result<()> {
        assert!(from.is_multiple_of(PAGE_SIZE) && to.is_multiple_of(PAGE_SIZE) && from <= to);
        if to > self.reserved {
            return Err(io::Error::other("mapping past the reservation"));
        }
        if to == from {
            return Ok(());
        }
        // SAFETY: `[base+from, base+to)` lies inside our own reservation
        // (checked above), so MAP_FIXED replaces only pages this region owns;
        // a shared view is only ever written by the host at quiescent points.
        let addr = unsafe {
            libc::mmap(
                self.base.add(from).cast(),
                to - from,
                libc::PROT_READ | libc::PROT_WRITE,
                if self.shared {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                } | libc::MAP_FIXED,
                file.as_raw_fd(),
                from as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.mapped = self.mapped.max(to);
        Ok(())
    }

    /// The base address.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// Bytes mapped from the file.
    pub fn mapped(&self) -> usize {
        self.mapped
    }

    /// Bytes reserved.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Drops the private copies of pages `[first, first+count)`, so they map
    /// the file again.
    pub fn discard(&self, first: u64, count: u64) -> io::Result<()> {
        let (start, len) = self.page_range(first, count)?;
        // SAFETY: the range is inside the mapped part of our region (checked by
        // `page_range`); MADV_DONTNEED on a private file mapping only drops
        // private copies, the file's contents are what the pages read after.
        let rc = unsafe { libc::madvise(self.base.add(start).cast(), len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Drops the private copies of many runs of pages at once: one
    /// `process_madvise` call per 1024 runs where the kernel allows
    /// `MADV_DONTNEED` through it on the calling process (Linux 6.13+),
    /// otherwise one `madvise` per run.
    pub fn discard_runs(&self, runs: &[(u64, u64)]) -> io::Result<()> {
        let mut done = 0;
        if let Some(pidfd) = self_pidfd() {
            let mut iov = Vec::with_capacity(runs.len().min(IOV_MAX));
            while done < runs.len() {
                let batch = &runs[done..(done + IOV_MAX).min(runs.len())];
                iov.clear();
                let mut bytes = 0usize;
                for &(first, count) in batch {
                    let (start, len) = self.page_range(first, count)?;
                    // SAFETY: `start` is inside the mapped part of our region
                    // (checked by `page_range`), so the pointer is in bounds.
                    let iov_base = unsafe { self.base.add(start) }.cast();
                    iov.push(libc::iovec {
                        iov_base,
                        iov_len: len,
                    });
                    bytes += len;
                }
                // SAFETY: every iovec names a range of our own private file
                // mapping (checked above); MADV_DONTNEED only drops private
                // copies. The iovec array outlives the call.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_process_madvise,
                        pidfd,
                        iov.as_ptr(),
                        iov.len(),
                        libc::MADV_DONTNEED,
                        0,
                    )
                };
                if rc < 0 || rc as usize != bytes {
                    // Not supported here, or partial: finish one by one.
                    break;
                }
                done += batch.len();
            }
        }
        for &(first, count) in &runs[done..] {
            self.discard(first, count)?;
        }
        Ok(())
    }

    /// Copies pages `[first, first+count)` of the mapping into `file` at the
    /// same offsets.
    pub fn write_pages_to(&self, file: &File, first: u64, count: u64) -> io::Result<()> {
        file.write_all_at(self.pages(first, count)?, first * PAGE_SIZE as u64)
    }

    /// The bytes of pages `[first, first+count)`.
    ///
    /// Only meaningful at a quiescent point: no guest code runs while the
    /// returned slice is alive, because the caller holds the store.
    pub fn pages(&self, first: u64, count: u64) -> io::Result<&[u8]> {
        let (start, len) = self.page_range(first, count)?;
        // SAFETY: the range is mapped readable (checked by `page_range`), and
        // the guest cannot write while the caller borrows the process.
        Ok(unsafe { std::slice::from_raw_parts(self.base.add(start), len) })
    }

    /// Mutable bytes of pages, for tests and benchmarks that play the guest.
    pub fn pages_mut(&mut self, first: u64, count: u64) -> io::Result<&mut [u8]> {
        let (start, len) = self.page_range(first, count)?;
        // SAFETY: as in `pages`, and `&mut self` makes the borrow unique.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.base.add(start), len) })
    }

    fn page_range(&self, first: u64, count: u64) -> io::Result<(usize, usize)> {
        let start = usize::try_from(first)
            .ok()
            .and_then(|p| p.checked_mul(PAGE_SIZE));
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(PAGE_SIZE));
        match (start, len) {
            (Some(start), Some(len))
                if start.checked_add(len).is_some_and(|end| end <= self.mapped) =>
            {
                Ok((start, len))
            }
            _ => Err(io::Error::other(format!(
                "pages {first}+{count} lie outside the {} mapped bytes",
                self.mapped
            ))),
        }
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: we own the whole reservation and nothing refers to it once
        // the region is dropped (wasmtime drops the memory after its store).
        unsafe {
            libc::munmap(self.base.cast(), self.reserved);
        }
    }
}

/// Most iovecs one `process_madvise` call takes (UIO_MAXIOV).
const IOV_MAX: usize = 1024;

/// A pidfd of this process, for `process_madvise`; None where the kernel
/// has no `pidfd_open`.
fn self_pidfd() -> Option<libc::c_int> {
    static PIDFD: std::sync::OnceLock<Option<libc::c_int>> = std::sync::OnceLock::new();
    *PIDFD.get_or_init(|| {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
        // the fd is kept for the life of the process.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
        (fd >= 0).then_some(fd as libc::c_int)
    })
}

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
    /// The page maps the shared zero page.
    pub const PAGE_IS_PFNZERO: u64 = 1 << 5;

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

/// Loads a component that this engine compiled earlier.
///
/// Returns an error (never undefined behaviour) when the file was written by
/// another wasmtime version or configuration: wasmtime checks its header.
pub fn load_precompiled(
    engine: &wasmtime::Engine,
    path: &Path,
) -> wasmtime::Result<wasmtime::component::Component> {
    // SAFETY: the file is one this host wrote with `Component::serialize` into
    // the process's own data directory (see DESIGN.md, threat model: the data
    // directory is trusted as the host's own, image files inside are
    // checksummed); wasmtime verifies the engine fingerprint in its header.
    unsafe { wasmtime::component::Component::deserialize_file(engine, path) }
}
