//! What the process knows about itself.

use crate::bindings::phantom::os::process;

/// The name given at `phantom spawn`.
pub fn name() -> String {
    process::name()
}

/// How many times this process has been restored from an image.
pub fn restore_count() -> u64 {
    process::restore_count()
}

/// The id of the checkpoint last restored from or captured (0 before the
/// first).
pub fn checkpoint_id() -> u64 {
    process::checkpoint_id()
}

/// Asks the host to take a checkpoint as soon as the current call returns.
pub fn request_checkpoint() {
    process::request_checkpoint()
}
