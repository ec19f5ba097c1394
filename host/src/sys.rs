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

/// The `LinearMemory` wasmtime owns: a view of a `MemoryCell`.
pub struct GuestMemory {
    cell: std::sync::Arc<crate::memory::MemoryCell>,
    base: *mut u8,
    capacity: usize,
}

impl GuestMemory {
    /// Wraps `cell`, whose guest view starts at `base` and may grow to
    /// `capacity` bytes without moving.
    pub(crate) fn new(
        cell: std::sync::Arc<crate::memory::MemoryCell>,
        base: *mut u8,
        capacity: usize,
    ) -> Self {
        Self {
            cell,
            base,
            capacity,
        }
    }
}

// SAFETY: `base` points into the cell's reservation, which lives as long as
// the Arc; the cell itself is Send + Sync.
unsafe impl Send for GuestMemory {}
// SAFETY: see `Send`.
unsafe impl Sync for GuestMemory {}

// SAFETY: the base pointer never moves (growth maps inside the reservation),
// the first `byte_size()` bytes are always mapped read-write, and the guard
// region wasmtime asked for stays PROT_NONE (it is part of the reservation).
unsafe impl wasmtime::LinearMemory for GuestMemory {
    fn byte_size(&self) -> usize {
        self.cell.size()
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        self.cell.grow(new_size).map_err(wasmtime::Error::from)
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

// SAFETY: every memory returned is a `GuestMemory` (above), made by
// `create_memory`, which reserves `reserved_size_in_bytes` (or 4 GiB) plus
// `guard_size_in_bytes` of address space and never maps the guard.
unsafe impl wasmtime::MemoryCreator for crate::memory::PhantomMemoryCreator {
    fn new_memory(
        &self,
        ty: wasmtime::MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn wasmtime::LinearMemory>, String> {
        self.create_memory(
            ty,
            minimum,
            maximum,
            reserved_size_in_bytes,
            guard_size_in_bytes,
        )
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

/// `userfaultfd(2)` for lazy restore: the guest's private view of a restored
/// memfd is registered for *missing* faults (`UFFD_FEATURE_MISSING_SHMEM`),
/// so the first access to a page the memfd does not hold yet blocks the
/// faulting thread and sends the page's address here. The filler writes the
/// page into the memfd (`pwrite`) and wakes the thread; the retried fault
/// then maps the memfd's page like any clean page (file-backed, not dirty).
///
/// ```text
///   guest touches page p ─► shmem fault: no page cache page, uffd registered
///        │ (thread sleeps)            ─► message {address of p} on the uffd
///   filler: pwrite(memfd, image page p) ─► UFFDIO_WAKE [p] ─► fault retried:
///        maps the memfd's page (a write makes the private copy, as always)
/// ```
/// `UFFDIO_COPY` is not an option: on a private mapping it installs an
/// anonymous page, which the trackers would report dirty.
pub mod uffd {
    use super::*;
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};

    /// `UFFD_API`: the API version.
    const UFFD_API: u64 = 0xAA;
    /// `UFFD_USER_MODE_ONLY`: let an unprivileged process (without
    /// `vm.unprivileged_userfaultfd`) handle faults it takes in user mode.
    const UFFD_USER_MODE_ONLY: libc::c_int = 1;
    /// `UFFD_FEATURE_MISSING_SHMEM`: missing faults on shmem (memfd) mappings.
    const UFFD_FEATURE_MISSING_SHMEM: u64 = 1 << 5;
    /// `UFFDIO_REGISTER_MODE_MISSING`.
    const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
    /// `UFFD_EVENT_PAGEFAULT`.
    const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
    /// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
    const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
    /// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
    const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
    /// `_IOR(0xAA, 0x02, struct uffdio_range)`.
    const UFFDIO_WAKE: libc::c_ulong = 0x8010_AA02;
    /// Size of `struct uffd_msg`.
    const MSG_SIZE: usize = 32;

    #[repr(C)]
    struct UffdioApi {
        api: u64,
        features: u64,
        ioctls: u64,
    }

    #[repr(C)]
    struct UffdioRange {
        start: u64,
        len: u64,
    }

    #[repr(C)]
    struct UffdioRegister {
        range: UffdioRange,
        mode: u64,
        ioctls: u64,
    }

    /// A userfaultfd handling missing faults of shmem mappings.
    pub struct Userfaultfd {
        file: File,
        /// Whether only user-mode faults are handled (unprivileged).
        pub user_mode_only: bool,
    }

    impl Userfaultfd {
        /// Opens a non-blocking userfaultfd with missing-shmem faults; with
        /// `UFFD_USER_MODE_ONLY` if the full one is not permitted. Fails with
        /// the kernel's error (`EPERM`, `ENOSYS`, `EINVAL` for a kernel
        /// without `UFFD_FEATURE_MISSING_SHMEM`).
        pub fn open() -> io::Result<Self> {
            let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
            // SAFETY: userfaultfd takes flags and returns a new fd or -1.
            let mut fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
            let mut user_mode_only = false;
            if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
                // SAFETY: as above.
                fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY) };
                user_mode_only = true;
            }
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a new file descriptor that nothing else owns.
            let file = File::from(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
            let mut api = UffdioApi {
                api: UFFD_API,
                features: UFFD_FEATURE_MISSING_SHMEM,
                ioctls: 0,
            };
            // SAFETY: `api` is a correctly sized uffdio_api the kernel reads
            // and writes during the call.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), UFFDIO_API as _, &mut api) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            if api.features & UFFD_FEATURE_MISSING_SHMEM == 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            Ok(Self {
                file,
                user_mode_only,
            })
        }

        /// Registers pages `[first, first+count)` of `region` (a private
        /// mapping of a memfd) for missing faults.
        pub fn register_missing(
            &self,
            region: &MappedRegion,
            first: u64,
            count: u64,
        ) -> io::Result<()> {
            let (start, len) = region.page_range(first, count)?;
            let mut reg = UffdioRegister {
                range: UffdioRange {
                    start: region.base() as u64 + start as u64,
                    len: len as u64,
                },
                mode: UFFDIO_REGISTER_MODE_MISSING,
                ioctls: 0,
            };
            // SAFETY: `reg` is a correctly sized uffdio_register; the range
            // is mapped memory of our own region (checked by `page_range`).
            // Registering changes no memory: accesses to pages the file does
            // not hold will wait for this fd's owner to fill them.
            let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), UFFDIO_REGISTER as _, &mut reg) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Wakes the threads waiting on faults in `[addr, addr+len)`.
        pub fn wake(&self, addr: u64, len: u64) -> io::Result<()> {
            let mut range = UffdioRange { start: addr, len };
            // SAFETY: `range` is a correctly sized uffdio_range the kernel
            // only reads; waking touches no memory (a range with no waiter,
            // or no longer mapped, wakes nothing).
            let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), UFFDIO_WAKE as _, &mut range) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Appends the addresses of pending page faults to `out`, without
        /// blocking.
        pub fn read_faults(&self, out: &mut Vec<u64>) -> io::Result<()> {
            let mut buf = [0u8; MSG_SIZE * 64];
            loop {
                let n = match (&self.file).read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                for msg in buf[..n].chunks_exact(MSG_SIZE) {
                    if msg[0] == UFFD_EVENT_PAGEFAULT {
                        let addr = u64::from_le_bytes(msg[16..24].try_into().expect("8 bytes"));
                        out.push(addr);
                    }
                }
                if n < buf.len() {
                    return Ok(());
                }
            }
        }

        /// Waits until a fault is pending or `other` is readable, at most
        /// `timeout_ms` (-1: no limit). Returns (fault pending, other ready).
        pub fn poll_with(&self, other: &EventFd, timeout_ms: i32) -> io::Result<(bool, bool)> {
            let mut fds = [
                libc::pollfd {
                    fd: self.file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: other.file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is an array of two pollfd that outlives the call.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok((false, false));
                }
                return Err(e);
            }
            Ok((fds[0].revents != 0, fds[1].revents != 0))
        }
    }

    /// An eventfd: how the host tells a filler thread to look at its flags.
    pub struct EventFd {
        file: File,
    }

    impl EventFd {
        /// A new non-blocking eventfd.
        pub fn new() -> io::Result<Self> {
            // SAFETY: eventfd takes an initial value and flags and returns a
            // new fd or -1.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Self {
                // SAFETY: `fd` is a new file descriptor that nothing else owns.
                file: File::from(unsafe { OwnedFd::from_raw_fd(fd) }),
            })
        }

        /// Makes the eventfd readable.
        pub fn signal(&self) {
            // Only fails if the counter would overflow, which means it is
            // readable already.
            let _ = (&self.file).write_all(&1u64.to_ne_bytes());
        }

        /// Resets the eventfd.
        pub fn drain(&self) {
            let mut b = [0u8; 8];
            let _ = (&self.file).read(&mut b);
        }
    }

    use std::io::Write;
}

#[cfg(test)]
mod tests {
    use super::uffd::{EventFd, Userfaultfd};
    use super::*;

    /// The mechanism lazy restore rests on, checked on this kernel: a read
    /// and a write fault on the private view of a memfd hole both reach the
    /// userfaultfd; after `pwrite` + `UFFDIO_WAKE` the retried read maps the
    /// memfd's page (file-backed: clean), and the retried write makes a
    /// private copy of the written page (dirty), leaving the memfd as is.
    #[test]
    fn missing_fault_then_pwrite_and_wake_maps_the_file_page() {
        let uffd = match Userfaultfd::open() {
            Ok(u) => u,
            Err(e) => {
                eprintln!("skipped: no userfaultfd here ({e})");
                return;
            }
        };
        let file = memfd::MemfdOptions::default()
            .create("uffd-probe")
            .unwrap()
            .into_file();
        file.set_len(2 * PAGE_SIZE as u64).unwrap();
        let mut region = MappedRegion::reserve(2 * PAGE_SIZE).unwrap();
        region.map_file(&file, 0, 2 * PAGE_SIZE).unwrap();
        uffd.register_missing(&region, 0, 2).unwrap();
        let base = region.base() as u64;
        let filler_file = file.try_clone().unwrap();
        let handler = std::thread::spawn(move || {
            let never = EventFd::new().unwrap();
            let mut seen = Vec::new();
            let mut faults = Vec::new();
            while seen.len() < 2 {
                let (ready, _) = uffd.poll_with(&never, 5000).unwrap();
                assert!(ready, "no fault reached the userfaultfd");
                faults.clear();
                uffd.read_faults(&mut faults).unwrap();
                for &addr in &faults {
                    let page = (addr - base) / PAGE_SIZE as u64;
                    filler_file
                        .write_all_at(&[page as u8 + 1; PAGE_SIZE], page * PAGE_SIZE as u64)
                        .unwrap();
                    uffd.wake(base + page * PAGE_SIZE as u64, PAGE_SIZE as u64)
                        .unwrap();
                    seen.push(page);
                }
            }
            seen
        });
        let pagemap = Pagemap::open().unwrap();
        let mut entry = [0u64; 1];
        // A read fault.
        assert_eq!(region.pages(0, 1).unwrap()[100], 1);
        pagemap.read(&region, 0, &mut entry).unwrap();
        assert_ne!(entry[0] & pagemap_bits::PRESENT, 0, "read page present");
        assert_ne!(
            entry[0] & pagemap_bits::FILE_OR_SHARED,
            0,
            "read page maps the memfd's page"
        );
        // A write fault.
        region.pages_mut(1, 1).unwrap()[0] = 9;
        assert_eq!(region.pages(1, 1).unwrap()[..2], [9, 2]);
        pagemap.read(&region, 1, &mut entry).unwrap();
        assert_ne!(entry[0] & pagemap_bits::PRESENT, 0, "written page present");
        assert_eq!(
            entry[0] & pagemap_bits::FILE_OR_SHARED,
            0,
            "written page is a private copy"
        );
        let mut back = [0u8; 2];
        file.read_exact_at(&mut back, PAGE_SIZE as u64).unwrap();
        assert_eq!(back, [2, 2], "the memfd keeps the filled bytes");
        assert_eq!(handler.join().unwrap(), vec![0, 1]);
    }
}
