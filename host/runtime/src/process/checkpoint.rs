//! Checkpointing a process: the capture (the pause), then the write on the
//! writer thread while the guest runs on.
//!
//! ```text
//!   checkpoint ─► wait for this process's previous write (the memfds must not
//!                 change under it)
//!              ─► capture: Memories::capture(&Quiescent) ─► Vec<MemoryDelta>
//!                          + HostParts::save ─► sections
//!              ─► NewCheckpoint ─► writer thread ─► Result<CheckpointInfo, CheckpointError>
//! ```

use std::time::{Duration, Instant};

use phantom_snapshots::{CheckpointInfo, NewCheckpoint};

use super::spawn::unix_ns;
use super::{FULL_EVERY, Process};
use crate::error::CheckpointError;
use crate::runtime::Runtime;

/// What a capture did.
#[derive(Clone, Debug)]
pub struct CaptureReport {
    /// The checkpoint id.
    pub id: u64,
    /// Dirty pages captured.
    pub dirty_pages: u64,
    /// The stop-the-world pause.
    pub pause: Duration,
    /// Whether it is a full image.
    pub full: bool,
}

impl Process {
    /// Captures a checkpoint (the pause) and hands it to the background
    /// writer. Waits first for this process's previous write.
    pub fn checkpoint(&mut self, rt: &Runtime) -> Result<CaptureReport, CheckpointError> {
        self.wait_for_write();
        let chain = &self.chain;
        let full = chain.needs_full || chain.parent.is_none() || chain.since_full >= FULL_EVERY;
        let (report, checkpoint) = self.capture(full)?;
        // The checkpoint commits only once the journal it covers is durable
        // (the journal never ends before a checkpoint's position).
        let journal = self.journal_log().map(|log| (log.clone(), log.next_seq()));
        if let Some((_, position)) = &journal {
            self.positions.insert(report.id, *position);
        }
        self.in_flight = Some(rt.writer.submit(self.images.clone(), checkpoint, journal));
        Ok(report)
    }

    /// Makes the next checkpoint a full image.
    pub fn require_full(&mut self) {
        self.chain.needs_full = true;
    }

    /// Waits for the write in flight, if any; returns what it committed.
    pub fn wait_for_write(&mut self) -> Option<Result<CheckpointInfo, CheckpointError>> {
        let receipt = self.in_flight.take()?;
        let result = receipt
            .recv()
            .unwrap_or(Err(CheckpointError::WriterStopped));
        Some(self.settle(result))
    }

    /// The write in flight's result, if it has finished.
    pub fn poll_write(&mut self) -> Option<Result<CheckpointInfo, CheckpointError>> {
        let result = match self.in_flight.as_ref()?.try_recv() {
            Ok(r) => r,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(CheckpointError::WriterStopped),
        };
        self.in_flight = None;
        Some(self.settle(result))
    }

    fn settle(
        &mut self,
        result: Result<CheckpointInfo, CheckpointError>,
    ) -> Result<CheckpointInfo, CheckpointError> {
        match &result {
            Ok(info) => {
                self.last_committed = Some(info.clone());
                self.truncate_journal();
            }
            // The pages of the failed delta are no longer tracked as dirty,
            // so only a full image can follow it.
            Err(_) => self.chain.needs_full = true,
        }
        result
    }

    /// The pause: dirty pages into the memfds, host state into sections.
    pub(super) fn capture(
        &mut self,
        full: bool,
    ) -> Result<(CaptureReport, NewCheckpoint), CheckpointError> {
        let started = Instant::now();
        if let Some(why) = self.memories.lazy_error() {
            // The memory has zeroes where the image had bytes: never make
            // them a checkpoint.
            return Err(CheckpointError::BrokenMemory(why));
        }
        // Globals first: reading them runs guest code (the accessors), and a
        // failure must leave the dirty pages tracked. A process that exited
        // (through WASI `exit`, its instance cannot be entered again) never
        // runs again: its globals are not read.
        let globals = if self.exited().is_some() {
            None
        } else {
            self.store.set_epoch_deadline(u64::MAX / 2);
            Some(
                self.global_access
                    .read(&mut self.store)
                    .map_err(|e| CheckpointError::Globals(format!("{e:#}")))?,
            )
        };
        let id = self
            .chain
            .last_id
            .checked_add(1)
            .filter(|&id| id <= crate::persist::MAX_CHECKPOINT_ID)
            .ok_or_else(|| {
                CheckpointError::NoIdLeft(format!(
                    "no checkpoint id is left after {} (at most {}): a checkpoint file of {} was not made by a host; move it away",
                    self.chain.last_id,
                    crate::persist::MAX_CHECKPOINT_ID,
                    self.dir.display()
                ))
            })?;
        let now = self.now_ns();
        {
            let state = &mut self.store.data_mut().state;
            state.checkpoint_id = id;
            state.process_time_ns = now;
        }
        let captured = {
            let (q, memories) = self.quiescent();
            memories.capture(&q, full)
        };
        let memories = match captured {
            Ok(m) => m,
            Err(e) => {
                // Some memories may have been captured (their dirty pages
                // are no longer tracked): only a full image can follow.
                self.chain.needs_full = true;
                return Err(CheckpointError::Capture(e));
            }
        };
        let dirty_pages = memories
            .iter()
            .flat_map(|m| &m.dirty)
            .map(|r| r.count)
            .sum();
        let sections = self.host_parts(globals).save();
        let pause = started.elapsed();
        let parent = if full { None } else { self.chain.parent };
        self.chain.last_id = id;
        self.chain.parent = Some(id);
        if full {
            self.chain.since_full = 1;
            self.chain.needs_full = false;
        } else {
            self.chain.since_full += 1;
        }
        let checkpoint = NewCheckpoint {
            id,
            parent,
            created_unix_ns: unix_ns(),
            pause_us: pause.as_micros() as u64,
            sections,
            memories,
        };
        Ok((
            CaptureReport {
                id,
                dirty_pages,
                pause,
                full,
            },
            checkpoint,
        ))
    }
}
