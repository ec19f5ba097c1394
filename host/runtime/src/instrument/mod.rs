//! Instrumentation of a component at load, before it is compiled: what the
//! host changes so that everything a guest holds can be persisted.
//!
//! - `handles.rs`: WASI resource handles become u32 ids in a host table
//!   that is saved with every checkpoint.

pub(crate) mod handles;

/// Changes whenever instrumentation changes what it produces, so compiled
/// components cached by an older host are not reused.
pub(crate) const VERSION: u32 = 1;
