//! Instrumentation of a component at load, before it is compiled: what the
//! host changes so that everything a guest holds can be persisted. The
//! stored `component.wasm` stays the user's; only what is compiled (and
//! cached) is instrumented.
//!
//! ```text
//!   component ─► globals.rs: a getter and a setter per mutable global (appended)
//!             ─► handles.rs: WASI resource handles become u32 ids in a host table
//!             ─► compiled
//! ```

pub(crate) mod globals;
pub(crate) mod handles;

use crate::inspect::ComponentFacts;

/// Changes whenever instrumentation changes what it produces, so compiled
/// components cached by an older host are not reused.
pub(crate) const VERSION: u32 = 2;

/// The instrumented component, or None when it needs nothing.
pub(crate) fn instrument(bytes: &[u8], facts: &ComponentFacts) -> Result<Option<Vec<u8>>, String> {
    let with_globals = if facts.global_plan.is_empty() {
        None
    } else {
        Some(globals::instrument(bytes, &facts.global_plan)?)
    };
    let current = with_globals.as_deref().unwrap_or(bytes);
    Ok(match handles::rewrite(current)? {
        Some(rewritten) => Some(rewritten),
        None => with_globals,
    })
}
