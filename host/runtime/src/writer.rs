//! The checkpoint writer: a background thread that compresses, checksums and
//! commits captured checkpoints while the guests run on.
//!
//! ```text
//!   Process::checkpoint ─ capture (pause) ─► WriteJob { store, NewCheckpoint, reply }
//!        ─► writer thread: CheckpointStore::write ─► reply: Result<CheckpointInfo, CheckpointError>
//! ```

use std::sync::{Arc, mpsc};

use phantom_snapshots::{CheckpointInfo, CheckpointStore, NewCheckpoint};

use crate::error::CheckpointError;

/// Where a write's result arrives.
pub type WriteReceipt = mpsc::Receiver<Result<CheckpointInfo, CheckpointError>>;

/// A captured checkpoint on its way to disk.
struct WriteJob {
    store: Arc<CheckpointStore>,
    checkpoint: NewCheckpoint,
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
                    let result = job
                        .store
                        .write(&job.checkpoint)
                        .map_err(CheckpointError::from);
                    let _ = job.reply.send(result);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Queues a checkpoint; its result arrives on the returned receipt.
    pub fn submit(&self, store: Arc<CheckpointStore>, checkpoint: NewCheckpoint) -> WriteReceipt {
        let (reply, receipt) = mpsc::channel();
        if let Err(mpsc::SendError(job)) = self.jobs.send(WriteJob {
            store,
            checkpoint,
            reply,
        }) {
            let _ = job.reply.send(Err(CheckpointError::WriterStopped));
        }
        receipt
    }
}
