//! A virtual-memory reservation that maps a memfd: the guest's private view
//! and the host's shared view of a linear memory, with every `unsafe` they need.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

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
        // Sizes come from images and guests: a bad one is an error, never a
        // panic of the host.
        if !(from.is_multiple_of(PAGE_SIZE) && to.is_multiple_of(PAGE_SIZE) && from <= to) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot map bytes {from}..{to}: not a range of whole {PAGE_SIZE}-byte pages"
                ),
            ));
        }
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

    pub(crate) fn page_range(&self, first: u64, count: u64) -> io::Result<(usize, usize)> {
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
