//! The naive model (each memory as one byte vector) and helpers to write
//! it as checkpoints and compare restores against it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use phantom_snapshots::{
    CheckpointInfo, CheckpointStore, LoadedCheckpoint, MemoryDelta, NewCheckpoint, PAGE_SIZE,
    PageRun,
};

/// Memories and sections as plain values: what a restore must give back.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub memories: BTreeMap<u32, Vec<u8>>,
    pub sections: BTreeMap<String, Vec<u8>>,
}

impl Model {
    /// Fills page `page` of memory `mem` with a recognisable pattern.
    pub fn touch(&mut self, mem: u32, page: u64, seed: u64) {
        let m = self.memories.get_mut(&mem).unwrap();
        let start = page as usize * PAGE_SIZE;
        let end = (start + PAGE_SIZE).min(m.len());
        fill(&mut m[start..end], seed);
    }
}

/// Bytes that compress somewhat, differ per seed and are never all zero.
pub fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (i, b) in buf.iter_mut().enumerate() {
        if i % 64 == 0 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        *b = if i % 8 < 5 {
            (x >> (i % 8 * 8)) as u8
        } else {
            (i / 64) as u8
        };
    }
    buf[0] |= 1;
}

/// An unnamed temporary file holding `bytes`.
pub fn source(bytes: &[u8]) -> File {
    let f = tempfile::tempfile().unwrap();
    f.write_all_at(bytes, 0).unwrap();
    f.set_len(bytes.len() as u64).unwrap();
    f
}

/// Writes the model as checkpoint `id`: full if `parent` is None (every
/// page named), else a delta of the pages in `dirty`.
pub fn write(
    store: &CheckpointStore,
    id: u64,
    parent: Option<u64>,
    model: &Model,
    dirty: &BTreeMap<u32, Vec<PageRun>>,
) -> CheckpointInfo {
    store.write(&checkpoint(id, parent, model, dirty)).unwrap()
}

/// The request `write` makes: full if `parent` is None (every page named),
/// else a delta of the pages in `dirty`.
pub fn checkpoint(
    id: u64,
    parent: Option<u64>,
    model: &Model,
    dirty: &BTreeMap<u32, Vec<PageRun>>,
) -> NewCheckpoint {
    let memories = model
        .memories
        .iter()
        .map(|(i, m)| MemoryDelta {
            index: *i,
            size_bytes: m.len() as u64,
            dirty: if parent.is_none() {
                vec![PageRun {
                    first: 0,
                    count: (m.len() as u64).div_ceil(PAGE_SIZE as u64),
                }]
            } else {
                dirty.get(i).cloned().unwrap_or_default()
            },
            source: source(m),
        })
        .collect();
    NewCheckpoint {
        id,
        parent,
        created_unix_ns: 1_000 + id,
        pause_us: id * 3,
        sections: model
            .sections
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        memories,
    }
}

/// Restores every memory into fresh files and compares with the model.
pub fn assert_restores(loaded: &LoadedCheckpoint, model: &Model) {
    assert_eq!(loaded.sections, model.sections, "sections");
    let indices: Vec<u32> = loaded.memories.iter().map(|m| m.index).collect();
    assert_eq!(
        indices,
        model.memories.keys().copied().collect::<Vec<_>>(),
        "memory indices"
    );
    for m in &loaded.memories {
        let want = &model.memories[&m.index];
        assert_eq!(m.size_bytes, want.len() as u64);
        let dest = tempfile::tempfile().unwrap();
        dest.set_len(m.size_bytes).unwrap();
        m.write_into(&dest).unwrap();
        let mut got = vec![0u8; want.len()];
        dest.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(
            dest.metadata().unwrap().len(),
            m.size_bytes,
            "write_into must not grow the file"
        );
        for (p, (g, w)) in got
            .chunks(PAGE_SIZE)
            .zip(want.chunks(PAGE_SIZE))
            .enumerate()
        {
            assert!(g == w, "memory {} page {p} differs", m.index);
        }
        // The lazy path: every page read on its own equals what write_into
        // wrote; a page no file stores reads as zero. Pages are read in a
        // scattered order so the block cache misses and evicts.
        let mut reader = m.page_reader().unwrap();
        let pages = reader.page_count();
        assert_eq!(pages, (m.size_bytes).div_ceil(PAGE_SIZE as u64));
        let mut page = [0u8; PAGE_SIZE];
        for k in 0..pages {
            let p = (k * 7919) % pages;
            let stored = reader.read_page(p, &mut page).unwrap();
            let start = p as usize * PAGE_SIZE;
            let end = (start + PAGE_SIZE).min(got.len());
            assert!(
                page[..end - start] == got[start..end],
                "memory {} page {p} read alone differs from write_into",
                m.index
            );
            assert!(page[end - start..].iter().all(|&b| b == 0), "padding");
            if !stored {
                assert!(page.iter().all(|&b| b == 0), "unstored page not zero");
            }
        }
        assert!(reader.read_page(pages, &mut page).is_err(), "past the end");
    }
}

/// A small two-memory model with a few non-zero pages.
pub fn small_model() -> Model {
    let mut m = Model::default();
    m.memories.insert(0, vec![0; 8 * PAGE_SIZE]);
    m.memories.insert(1, vec![0; 3 * PAGE_SIZE]);
    m.sections.insert("host".into(), b"host state".to_vec());
    m.sections.insert("globals".into(), b"[1,2,3]".to_vec());
    m.touch(0, 1, 1);
    m.touch(0, 5, 2);
    m.touch(1, 2, 3);
    m
}

pub fn runs(pages: &[u64]) -> Vec<PageRun> {
    pages
        .iter()
        .map(|&p| PageRun { first: p, count: 1 })
        .collect()
}

/// Writes full 1 of `small_model`, then deltas 2 and 3 each touching one
/// page; returns the models after each checkpoint (index = id).
pub fn small_chain(store: &CheckpointStore) -> Vec<Model> {
    let mut models = vec![Model::default()];
    let mut m = small_model();
    write(store, 1, None, &m, &BTreeMap::new());
    models.push(m.clone());
    m.touch(0, 2, 20);
    write(store, 2, Some(1), &m, &BTreeMap::from([(0, runs(&[2]))]));
    models.push(m.clone());
    m.touch(0, 5, 30);
    m.sections.insert("host".into(), b"host state 3".to_vec());
    write(store, 3, Some(2), &m, &BTreeMap::from([(0, runs(&[5]))]));
    models.push(m);
    models
}

/// A store writing format version 1 (self-contained FULL and DELTA
/// images): most tests here check how version 1 stores, written by older
/// builds, are read, verified and retained. `pages.rs` tests version 2.
pub fn store() -> (tempfile::TempDir, CheckpointStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::create(&dir.path().join("proc")).unwrap();
    store.set_write_version(1);
    (dir, store)
}

/// A store writing format version 2 (content-addressed pages).
pub fn store_v2() -> (tempfile::TempDir, CheckpointStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::create(&dir.path().join("proc")).unwrap();
    (dir, store)
}

/// Flips bit `bit` of byte `at` of `path`.
pub fn flip(path: &Path, at: usize, bit: u8) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 1 << bit;
    std::fs::write(path, &b).unwrap();
}
