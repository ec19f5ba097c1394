//! The console log (`phantom run --console-log`): a process's console
//! output appended to `<process dir>/console.log`, **exactly once** across
//! crashes. A file can confirm what it holds, so unlike stdout the effect
//! in flight at a crash is not written twice.
//!
//! ```text
//!   release (drive.rs): console bytes of held effects ─► ConsoleLog::append
//!        ─► write at `pos` ─► fdatasync ─► journal `released-logged`
//!           (the last call all of whose output is in, and the length then)
//!   restore: the journal's last recorded length L ─► ConsoleLog::open:
//!        bytes after L were written but not recorded (in flight at the
//!        crash); the replay writes them again: while what it writes
//!        matches them they are skipped, not written twice
//! ```
//!
//! Bytes after L that do not match what the process writes again (another
//! history: a rollback, a file edited by hand) are kept, and the process's
//! output goes on after them. Output of runs without `--console-log` is
//! not in the log, and a gap is not filled in.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The log's file name in the process directory.
pub const FILE: &str = "console.log";

/// At most this many bytes after the recorded length are compared with
/// what the restored process writes again; a longer tail is kept as is.
const MAX_UNRECORDED: u64 = 64 << 20;

/// An open console log.
#[derive(Debug)]
pub struct ConsoleLog {
    path: PathBuf,
    file: File,
    /// Where the process's next byte goes.
    pos: u64,
    /// Bytes at `pos` that were written before a crash and not recorded:
    /// compared with (and skipped while equal to) what is written next.
    unrecorded: Vec<u8>,
    /// Calls whose output was written, with the length after it, not yet
    /// recorded in the journal.
    marks: VecDeque<(u64, u64)>,
    /// The length last recorded.
    recorded: u64,
}

impl ConsoleLog {
    /// Opens (or creates) the log of the process in `dir`, whose journal
    /// last recorded the length `recorded`. Returns a warning to show if
    /// the file does not agree with the journal.
    pub fn open(
        dir: &Path,
        recorded: Option<u64>,
    ) -> std::io::Result<(ConsoleLog, Option<String>)> {
        let path = dir.join(FILE);
        // No log at all (a process imported, migrated or forked here, or
        // the file removed): a new log, not a short one.
        let recorded = recorded.filter(|_| path.exists());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let len = file.metadata()?.len();
        let from = recorded.unwrap_or(0);
        let mut warning = None;
        let (pos, unrecorded) = if from > len {
            warning = Some(format!(
                "{} is {len} bytes, shorter than the {from} recorded: bytes were lost outside phantom; the output goes on at its end",
                path.display()
            ));
            (len, Vec::new())
        } else if len - from > MAX_UNRECORDED {
            (len, Vec::new())
        } else {
            let mut tail = vec![0; (len - from) as usize];
            file.read_exact_at(&mut tail, from)?;
            (from, tail)
        };
        Ok((
            ConsoleLog {
                path,
                file,
                pos,
                unrecorded,
                marks: VecDeque::new(),
                recorded: pos,
            },
            warning,
        ))
    }

    /// Appends the console output of call `call`, skipping what is already
    /// there from before a crash.
    pub fn append(&mut self, call: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut bytes = bytes;
        if !self.unrecorded.is_empty() {
            let same = bytes
                .iter()
                .zip(&self.unrecorded)
                .take_while(|(a, b)| a == b)
                .count();
            if same == bytes.len().min(self.unrecorded.len()) {
                self.pos += same as u64;
                self.unrecorded.drain(..same);
                bytes = &bytes[same..];
            } else {
                // Another history: keep it, go on after it.
                self.pos += self.unrecorded.len() as u64;
                self.unrecorded.clear();
            }
        }
        if !bytes.is_empty() {
            self.file.write_all_at(bytes, self.pos)?;
            self.pos += bytes.len() as u64;
        }
        self.marks.push_back((call, self.pos));
        Ok(())
    }

    /// Makes what was appended durable.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// The length to record once every effect of the calls up to `call`
    /// has left: the end of the last output of such a call (calls after it
    /// may have written part of theirs already).
    pub fn recorded_for(&mut self, call: u64) -> u64 {
        while let Some(&(c, pos)) = self.marks.front() {
            if c > call {
                break;
            }
            self.recorded = pos;
            self.marks.pop_front();
        }
        self.recorded
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(FILE)).unwrap()
    }

    #[test]
    fn output_written_before_a_crash_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, w) = ConsoleLog::open(dir.path(), None).unwrap();
        assert!(w.is_none());
        log.append(1, b"one\n").unwrap();
        log.append(2, b"two\n").unwrap();
        log.sync().unwrap();
        assert_eq!(log.recorded_for(1), 4);
        // Call 3 wrote half of its output; the crash came before its
        // release was recorded (the journal says 4... then 8 for call 2).
        log.append(3, b"thr").unwrap();
        assert_eq!(log.recorded_for(2), 8);
        drop(log);
        // The replay writes calls 3's output again, whole, then more.
        let (mut log, w) = ConsoleLog::open(dir.path(), Some(8)).unwrap();
        assert!(w.is_none());
        log.append(3, b"three\n").unwrap();
        log.append(4, b"four\n").unwrap();
        assert_eq!(log.recorded_for(4), 19);
        assert_eq!(read(dir.path()), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn another_history_is_kept_and_a_short_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "one\nOTHER\n").unwrap();
        let (mut log, _) = ConsoleLog::open(dir.path(), Some(4)).unwrap();
        log.append(2, b"two\n").unwrap();
        assert_eq!(read(dir.path()), "one\nOTHER\ntwo\n");
        assert_eq!(log.recorded_for(2), 14);
        // Shorter than recorded: a warning, and the output goes on.
        let (mut log, w) = ConsoleLog::open(dir.path(), Some(100)).unwrap();
        assert!(w.unwrap().contains("shorter than the 100 recorded"));
        log.append(3, b"x").unwrap();
        assert_eq!(read(dir.path()), "one\nOTHER\ntwo\nx");
        // Gone altogether (an imported process): a new log, no warning.
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        let (mut log, w) = ConsoleLog::open(dir.path(), Some(100)).unwrap();
        assert!(w.is_none());
        log.append(4, b"y").unwrap();
        assert_eq!(read(dir.path()), "y");
        // Never recorded: what is there is compared from the start.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "hel").unwrap();
        let (mut log, _) = ConsoleLog::open(dir.path(), None).unwrap();
        log.append(1, b"hello\n").unwrap();
        assert_eq!(read(dir.path()), "hello\n");
    }
}
