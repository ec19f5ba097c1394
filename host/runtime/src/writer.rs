//! The checkpoint writer: a background thread that compresses, checksums and
//! commits captured checkpoints while the guests run on.
//!
//! ```text
//!   Process::checkpoint ─ capture (pause) ─► WriteJob { store, NewCheckpoint, journal, reply }
//!        ─► writer thread: the journal durable up to the checkpoint's position
//!        ─► CheckpointStore::write ─► reply: Result<CheckpointInfo, CheckpointError>
//! ```

use std::sync::{Arc, mpsc};

use phantom_snapshots::{CheckpointInfo, CheckpointStore, NewCheckpoint};

use crate::error::CheckpointError;
use crate::journal::Log;

/// Longest a checkpoint waits for the journal it covers to be durable.
const JOURNAL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until every journal entry before `position` is durable.
fn journal_durable(journal: Option<&(Arc<Log>, u64)>) -> Result<(), CheckpointError> {
    let Some((log, position)) = journal else {
        return Ok(());
    };
    if *position == 0 {
        return Ok(());
    }
    match log.wait_durable(position - 1, JOURNAL_WAIT) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CheckpointError::Journal(format!(
            "the journal did not become durable up to entry {position} within {JOURNAL_WAIT:?}"
        ))),
        Err(e) => Err(CheckpointError::Journal(e.to_string())),
    }
}

/// Where a write's result arrives.
pub type WriteReceipt = mpsc::Receiver<Result<CheckpointInfo, CheckpointError>>;

/// A captured checkpoint on its way to disk.
struct WriteJob {
    store: Arc<CheckpointStore>,
    checkpoint: NewCheckpoint,
    /// The journal and the position the checkpoint covers: durable first.
    journal: Option<(Arc<Log>, u64)>,
    reply: mpsc::Sender<Result<CheckpointInfo, CheckpointError>>,
}

/// The background writer.
pub struct CheckpointWriter {
    jobs: mpsc::Sender<WriteJob>,
}

impl CheckpointWriter {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("phantom-writer".into())
            .spawn(move || {
                for job in rx {
                    let result = match journal_durable(job.journal.as_ref()) {
                        Ok(()) => job
                            .store
                            .write(&job.checkpoint)
                            .map_err(CheckpointError::from),
                        Err(e) => Err(e),
                    };
                    let _ = job.reply.send(result);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Queues a checkpoint; its result arrives on the returned receipt.
    pub fn submit(
        &self,
        store: Arc<CheckpointStore>,
        checkpoint: NewCheckpoint,
        journal: Option<(Arc<Log>, u64)>,
    ) -> WriteReceipt {
        let (reply, receipt) = mpsc::channel();
        if let Err(mpsc::SendError(job)) = self.jobs.send(WriteJob {
            store,
            checkpoint,
            journal,
            reply,
        }) {
            let _ = job.reply.send(Err(CheckpointError::WriterStopped));
        }
        receipt
    }
}
