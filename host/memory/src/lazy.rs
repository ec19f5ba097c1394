//! Lazy restore: a restored memory's pages are written into its memfd on
//! first access (a userfaultfd missing fault) or by a background prefetch,
//! instead of all before the process starts.
//!
//! ```text
//!   PreparedMemory::lazy ─► memfd set_len only (holes) ─► LazySource {uffd, PageSource}
//!   MemoryCell::new  ─► register the private view ─► LazyFill::start (one thread)
//!
//!   filler thread, loop:
//!     faults pending? ─► for each: pwrite the image's page group into the memfd,
//!                        UFFDIO_WAKE (the retried fault maps the memfd's page)
//!     else prefetch   ─► the next PREFETCH_PAGES unfilled pages (zero pages stay holes)
//!     all filled      ─► close the uffd (unregisters), publish the stats, exit
//! ```
//! The thread is the only writer of pages not yet filled. The host writes
//! the memfd only at a capture, and only pages the guest wrote, which it
//! faulted in first, so the two never write the same page. A full capture
//! reads every page of the memfd, so it first waits for `wait_filled`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::sys::PAGE_SIZE;
use crate::sys::uffd::{EventFd, Userfaultfd};

/// Where a lazily restored memory's pages come from: random access to an
/// image's pages (a local checkpoint chain today; a remote image later).
pub trait PageSource: Send {
    /// Pages of the memory (a partial last page counts).
    fn page_count(&self) -> u64;

    /// Copies page `page` into `buf`; false (with `buf` zeroed) for a page
    /// the image does not store, which reads as zero. A page that cannot be
    /// read is an error.
    fn read_page(&mut self, page: u64, buf: &mut [u8; PAGE_SIZE]) -> io::Result<bool>;
}

impl PageSource for phantom_snapshots::PageReader {
    fn page_count(&self) -> u64 {
        phantom_snapshots::PageReader::page_count(self)
    }

    fn read_page(&mut self, page: u64, buf: &mut [u8; PAGE_SIZE]) -> io::Result<bool> {
        phantom_snapshots::PageReader::read_page(self, page, buf)
    }
}

/// Pages filled per fault: the aligned group around the faulting page.
/// Neighbours are usually next (a guest walks its memory), and a fault
/// costs two context switches and a wake; 16 pages (64 KiB) is a Wasm page.
const FAULT_AROUND: u64 = 16;

/// Most pages filled per fault when faults walk the memory in order: the
/// group doubles while each fault lands where the previous fill ended.
/// 256 pages (1 MiB) is one image block.
const FAULT_AROUND_MAX: u64 = 256;

/// Pages prefetched between two looks at the uffd: bounds how long a fault
/// waits behind the prefetch (a 256 KiB `pwrite` plus at most one block
/// decompressed, well under a millisecond).
const PREFETCH_PAGES: u64 = 64;

/// Compared with as a whole (`memcmp`): a byte loop that stops at the first
/// non-zero byte is several times slower on pages with one byte set.
const ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// What to restore a memory from, lazily.
pub(crate) struct LazySource {
    /// Opened when the memory is prepared, so a missing userfaultfd falls
    /// back to the eager path before anything is instantiated.
    pub uffd: Userfaultfd,
    /// The image's pages.
    pub reader: Box<dyn PageSource>,
    /// Whether the thread fills the rest in the background (tests turn it
    /// off to see the faults alone).
    pub prefetch: bool,
}

/// How a memory's lazy restore went so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LazyStats {
    /// Pages of the memory at restore.
    pub pages: u64,
    /// Pages filled because the guest (or the host) touched them.
    pub faulted: u64,
    /// Pages filled by the background prefetch.
    pub prefetched: u64,
    /// Page faults handled.
    pub faults: u64,
    /// Whether every page is filled (the thread has finished).
    pub complete: bool,
}

struct Shared {
    faulted: AtomicU64,
    prefetched: AtomicU64,
    faults: AtomicU64,
    /// The host asks for everything now (full capture).
    fill_all: AtomicBool,
    stop: AtomicBool,
    /// `Some` once the thread is done: `Ok` when every page is filled, or
    /// the first error (pages that failed read as zero and the process must
    /// not be checkpointed).
    done: Mutex<Option<Result<(), String>>>,
    done_cv: Condvar,
    /// First error while filling, kept even while the thread goes on.
    error: Mutex<Option<String>>,
}

/// The filler thread of one memory.
pub(crate) struct LazyFill {
    shared: Arc<Shared>,
    wake: Arc<EventFd>,
    pages: u64,
    thread: Option<JoinHandle<()>>,
}

impl LazyFill {
    /// Starts filling `file` (holes, `pages` long) from `source`; the
    /// guest's private view at `base` must already be registered with
    /// `source.uffd`.
    pub fn start(source: LazySource, file: File, base: u64, pages: u64) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            faulted: AtomicU64::new(0),
            prefetched: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            fill_all: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            done: Mutex::new(None),
            done_cv: Condvar::new(),
            error: Mutex::new(None),
        });
        let wake = Arc::new(EventFd::new()?);
        let filler = Filler {
            uffd: Some(source.uffd),
            reader: source.reader,
            prefetch: source.prefetch,
            file,
            base,
            pages,
            filled: vec![0; pages.div_ceil(64) as usize],
            present: vec![0; pages.div_ceil(64) as usize],
            remaining: pages,
            cursor: 0,
            around: FAULT_AROUND,
            last_fill_end: u64::MAX,
            shared: shared.clone(),
            wake: wake.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("phantom-lazy-fill".into())
            .spawn(move || filler.run())?;
        Ok(Self {
            shared,
            wake,
            pages,
            thread: Some(thread),
        })
    }

    /// Progress so far.
    pub fn stats(&self) -> LazyStats {
        let s = &self.shared;
        LazyStats {
            pages: self.pages,
            faulted: s.faulted.load(Ordering::Relaxed),
            prefetched: s.prefetched.load(Ordering::Relaxed),
            faults: s.faults.load(Ordering::Relaxed),
            complete: matches!(*lock(&s.done), Some(Ok(()))),
        }
    }

    /// The first error while filling, if any: the memory no longer holds
    /// the image (the failed pages read as zero).
    pub fn error(&self) -> Option<String> {
        lock(&self.shared.error).clone()
    }

    /// Fills everything not filled yet and waits until it is.
    pub fn wait_filled(&self) -> io::Result<()> {
        self.shared.fill_all.store(true, Ordering::Relaxed);
        self.wake.signal();
        let mut done = lock(&self.shared.done);
        while done.is_none() {
            done = self
                .shared
                .done_cv
                .wait(done)
                .unwrap_or_else(|e| e.into_inner());
        }
        match &*done {
            Some(Err(e)) => Err(io::Error::other(e.clone())),
            _ => Ok(()),
        }
    }
}

impl Drop for LazyFill {
    fn drop(&mut self) {
        // The memory is going away: no guest runs, nothing needs the rest.
        self.shared.stop.store(true, Ordering::Relaxed);
        self.wake.signal();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state the filler thread owns.
struct Filler {
    uffd: Option<Userfaultfd>,
    reader: Box<dyn PageSource>,
    prefetch: bool,
    file: File,
    base: u64,
    pages: u64,
    /// Pages whose final bytes the memfd holds (written, or a hole that
    /// reads as the zero page it should be).
    filled: Vec<u64>,
    /// Pages written into the memfd (a hole is not present, and a fault on
    /// it must still write it, or the fault would repeat).
    present: Vec<u64>,
    remaining: u64,
    /// Where the prefetch goes on.
    cursor: u64,
    /// Pages the next fault fills, and where the last fault's fill ended
    /// (a fault there is sequential and doubles the group).
    around: u64,
    last_fill_end: u64,
    shared: Arc<Shared>,
    wake: Arc<EventFd>,
}

fn has(bits: &[u64], p: u64) -> bool {
    bits[(p / 64) as usize] & (1 << (p % 64)) != 0
}

fn set(bits: &mut [u64], p: u64) {
    bits[(p / 64) as usize] |= 1 << (p % 64);
}

impl Filler {
    fn run(mut self) {
        let result = self.serve();
        if let Err(e) = &result {
            // Closing the uffd below lets waiting faults map holes as zero
            // pages: the memory no longer holds the image.
            lock(&self.shared.error).get_or_insert_with(|| format!("cannot fill the memory: {e}"));
        }
        // Closing the uffd unregisters the view. Only safe for the guest
        // once every page is filled (a waiting fault then retries and maps
        // the memfd's page, or a hole's zero page); on stop no guest runs.
        drop(self.uffd.take());
        let result = match lock(&self.shared.error).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        *lock(&self.shared.done) = Some(result);
        self.shared.done_cv.notify_all();
    }

    fn serve(&mut self) -> io::Result<()> {
        let mut faults = Vec::new();
        let mut page = Box::new([0u8; PAGE_SIZE]);
        let mut batch = vec![0u8; PREFETCH_PAGES.max(FAULT_AROUND_MAX) as usize * PAGE_SIZE];
        while self.remaining > 0 {
            if self.shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let prefetching = self.prefetch || self.shared.fill_all.load(Ordering::Relaxed);
            let uffd = self.uffd.as_ref().expect("open until the end");
            let (_, woken) = uffd.poll_with(&self.wake, if prefetching { 0 } else { -1 })?;
            if woken {
                self.wake.drain();
            }
            faults.clear();
            uffd.read_faults(&mut faults)?;
            for &addr in &faults {
                self.shared.faults.fetch_add(1, Ordering::Relaxed);
                self.fill_fault(addr, &mut page, &mut batch)?;
            }
            if prefetching && faults.is_empty() {
                self.prefetch_batch(&mut batch)?;
            }
        }
        Ok(())
    }

    /// Fills the group of pages around the one at `addr` and wakes the
    /// faulting thread.
    fn fill_fault(
        &mut self,
        addr: u64,
        page: &mut [u8; PAGE_SIZE],
        batch: &mut [u8],
    ) -> io::Result<()> {
        let p = addr.wrapping_sub(self.base) / PAGE_SIZE as u64;
        let uffd = self.uffd.as_ref().expect("open until the end");
        if addr < self.base || p >= self.pages {
            // Not ours (cannot happen: only our range is registered).
            return uffd.wake(addr & !(PAGE_SIZE as u64 - 1), PAGE_SIZE as u64);
        }
        let first = p / FAULT_AROUND * FAULT_AROUND;
        self.around = if first == self.last_fill_end {
            (self.around * 2).min(FAULT_AROUND_MAX)
        } else {
            FAULT_AROUND
        };
        let end = (first + self.around).min(self.pages);
        self.last_fill_end = end;
        // Runs of needed pages go to the memfd with one `pwrite` each.
        let mut run: Option<(u64, usize)> = None;
        for q in first..end {
            // The faulting page is always written if not present (a hole
            // left by the prefetch would fault forever); its neighbours
            // only if not filled yet.
            let needed = if q == p {
                !has(&self.present, q)
            } else {
                !has(&self.filled, q)
            };
            if !needed {
                self.flush(&mut run, batch)?;
                continue;
            }
            self.read(q, page);
            let slot = match run {
                Some((f, n)) if f + n as u64 == q => n,
                _ => {
                    self.flush(&mut run, batch)?;
                    run = Some((q, 0));
                    0
                }
            };
            batch[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE].copy_from_slice(&page[..]);
            run = run.map(|(f, n)| (f, n + 1));
            set(&mut self.present, q);
            if !has(&self.filled, q) {
                set(&mut self.filled, q);
                self.remaining -= 1;
                self.shared.faulted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.flush(&mut run, batch)?;
        let uffd = self.uffd.as_ref().expect("open until the end");
        uffd.wake(
            self.base + first * PAGE_SIZE as u64,
            (end - first) * PAGE_SIZE as u64,
        )
    }

    /// Fills up to `PREFETCH_PAGES` unfilled pages from the cursor on,
    /// writing runs of non-zero pages with one `pwrite` each.
    fn prefetch_batch(&mut self, batch: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        // The run being assembled in `batch`: first page, pages.
        let mut run: Option<(u64, usize)> = None;
        let mut page = [0u8; PAGE_SIZE];
        while done < PREFETCH_PAGES && self.cursor < self.pages {
            let p = self.cursor;
            self.cursor += 1;
            if has(&self.filled, p) {
                continue;
            }
            done += 1;
            let stored = self.read(p, &mut page);
            set(&mut self.filled, p);
            self.remaining -= 1;
            self.shared.prefetched.fetch_add(1, Ordering::Relaxed);
            // A never-stored or all-zero page stays a hole: it reads as zero.
            if !stored || page == ZERO_PAGE {
                self.flush(&mut run, batch)?;
                continue;
            }
            let slot = match run {
                Some((first, n)) if first + n as u64 == p => n,
                _ => {
                    self.flush(&mut run, batch)?;
                    run = Some((p, 0));
                    0
                }
            };
            batch[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE].copy_from_slice(&page);
            run = run.map(|(f, n)| (f, n + 1));
            set(&mut self.present, p);
        }
        self.flush(&mut run, batch)
    }

    fn flush(&self, run: &mut Option<(u64, usize)>, batch: &[u8]) -> io::Result<()> {
        if let Some((first, n)) = run.take()
            && n > 0
        {
            self.file
                .write_all_at(&batch[..n * PAGE_SIZE], first * PAGE_SIZE as u64)?;
        }
        Ok(())
    }

    /// Reads page `p` of the image into `page`; whether it holds data. A
    /// page that cannot be read is recorded as the memory's error and
    /// reads as zero, so the guest is not left waiting on its fault; the
    /// host fails the process before it can be checkpointed.
    fn read(&mut self, p: u64, page: &mut [u8; PAGE_SIZE]) -> bool {
        match self.reader.read_page(p, page) {
            Ok(stored) => stored,
            Err(e) => {
                let mut error = lock(&self.shared.error);
                if error.is_none() {
                    *error = Some(format!("cannot restore page {p}: {e}"));
                }
                page.fill(0);
                false
            }
        }
    }
}
