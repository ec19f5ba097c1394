//! Loading a component: inspection, then compilation, with two caches: the
//! runtime's memory (by content hash) and `<data>/.cache/<key>.cwasm` on
//! disk, so a restore does not recompile.
//!
//! ```text
//!   bytes ─► key = hash(engine compatibility, bytes) ─► memory cache? ─► done
//!         ─► inspect (imports, globals, memories) ─► .cwasm on disk? deserialize
//!                                                   else compile, write .cwasm
//! ```

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::ComponentError;
use crate::inspect::{self, ComponentFacts};
use crate::runtime::Runtime;

/// A compiled component plus what inspection found.
#[derive(Clone)]
pub struct LoadedComponent {
    /// The compiled component.
    pub component: Component,
    /// What inspection found: accepted globals, memories.
    pub facts: ComponentFacts,
}

/// Where the compiled-component cache of a data directory lives.
pub fn cache_dir(data: &Path) -> PathBuf {
    data.join(".cache")
}

impl Runtime {
    /// Compiles (or loads from the cache in `cache_dir`) the component in
    /// `bytes`, after checking that it can be a persistent process.
    pub fn load_component(
        &self,
        bytes: &[u8],
        cache_dir: Option<&Path>,
    ) -> Result<LoadedComponent, ComponentError> {
        let key = component_key(&self.engine, bytes);
        if let Some(loaded) = self.lock_components().get(&key) {
            return Ok(loaded.clone());
        }
        let facts = inspect::inspect_component(bytes)?;
        // What is compiled is the component instrumented for persistence
        // (WASI handles as host ids); the original stays what is stored.
        let instrumented =
            crate::instrument::instrument(bytes, &facts).map_err(ComponentError::Instrument)?;
        let bytes = instrumented.as_deref().unwrap_or(bytes);
        let cached = cache_dir.map(|d| d.join(format!("{key:016x}.cwasm")));
        let component = match cached.as_deref().filter(|p| p.exists()) {
            Some(path) => match phantom_memory::load_precompiled(&self.engine, path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("phantom: ignoring compiled cache {}: {e}", path.display());
                    self.compile_and_cache(bytes, cached.as_deref())?
                }
            },
            None => self.compile_and_cache(bytes, cached.as_deref())?,
        };
        // Belt and braces: the component model's own view of the imports.
        let refused: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .filter(|(_, item)| {
                !matches!(item.ty, wasmtime::component::types::ComponentItem::Type(_))
            })
            .map(|(name, _)| name.to_string())
            .filter(|name| !inspect::import_allowed(name))
            .collect();
        if !refused.is_empty() {
            return Err(inspect::InspectError::UnsupportedImports(refused).into());
        }
        // It must be a persistent process: `init` and `handle` exported.
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .filter(|name| !name.starts_with("phantom-global-"))
            .collect();
        let has = |n: &str| exports.iter().any(|e| e == n);
        if !has("init") || !has("handle") {
            return Err(inspect::InspectError::NotAProcess(exports).into());
        }
        let loaded = LoadedComponent { component, facts };
        self.lock_components().insert(key, loaded.clone());
        Ok(loaded)
    }

    fn lock_components(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, LoadedComponent>> {
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn compile_and_cache(
        &self,
        bytes: &[u8],
        cached: Option<&Path>,
    ) -> Result<Component, ComponentError> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| ComponentError::Compile(format!("{e:#}")))?;
        if let Some(path) = cached
            && let Ok(serialized) = component.serialize()
        {
            // The cache is an optimisation: failing to write it is not an
            // error. A temporary name per writer, so two hosts compiling the
            // same component never interleave their bytes.
            let _ = path.parent().map(std::fs::create_dir_all);
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            if std::fs::write(&tmp, serialized).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
        Ok(component)
    }
}

/// Identifies a component's bytes compiled by this engine's configuration.
fn component_key(engine: &Engine, bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    crate::instrument::VERSION.hash(&mut h);
    xxhash_rust::xxh3::xxh3_64(bytes).hash(&mut h);
    h.finish()
}
