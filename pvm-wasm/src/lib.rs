//! The Phantom VM.
