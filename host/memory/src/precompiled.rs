//! Loading a component this engine compiled earlier: wasmtime's
//! `deserialize` is `unsafe` (it maps native code), so it lives in this
//! crate with the rest of the host's `unsafe`.

use std::path::Path;

/// Loads a component that this engine compiled earlier.
///
/// Returns an error (never undefined behaviour) when the file was written by
/// another wasmtime version or configuration: wasmtime checks its header.
pub fn load_precompiled(
    engine: &wasmtime::Engine,
    path: &Path,
) -> wasmtime::Result<wasmtime::component::Component> {
    // SAFETY: the file is one this host wrote with `Component::serialize` into
    // the process's own data directory (see DESIGN.md, threat model: the data
    // directory is trusted as the host's own, image files inside are
    // checksummed); wasmtime verifies the engine fingerprint in its header.
    unsafe { wasmtime::component::Component::deserialize_file(engine, path) }
}
