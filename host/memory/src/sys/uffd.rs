//! `userfaultfd(2)` for lazy restore: the guest's private view of a restored
//! memfd is registered for *missing* faults (`UFFD_FEATURE_MISSING_SHMEM`),
//! so the first access to a page the memfd does not hold yet blocks the
//! faulting thread and sends the page's address here. The filler writes the
//! page into the memfd (`pwrite`) and wakes the thread; the retried fault
//! then maps the memfd's page like any clean page (file-backed, not dirty).
//!
//! ```text
//!   guest touches page p ─► shmem fault: no page cache page, uffd registered
//!        │ (thread sleeps)            ─► message {address of p} on the uffd
//!   filler: pwrite(memfd, image page p) ─► UFFDIO_WAKE [p] ─► fault retried:
//!        maps the memfd's page (a write makes the private copy, as always)
//! ```
//! `UFFDIO_COPY` is not an option: on a private mapping it installs an
//! anonymous page, which the trackers would report dirty.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::region::MappedRegion;

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
        if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            // SAFETY: as above.
            fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY) };
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
        Ok(Self { file })
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::super::pagemap::{Pagemap, pagemap_bits};
    use super::super::region::{MappedRegion, PAGE_SIZE};
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
