//! The backend trait is enough: the store's round trip, fallback, retention
//! and fsck over an in-memory backend (a `HashMap` behind a mutex), with the
//! same bytes as a local directory.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Cursor, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use phantom_snapshots::{
    CheckpointStore, ImageSource, MemoryDelta, NewCheckpoint, PageRun, StoreBackend, TempImage,
};

use super::common::*;

type Objects = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Images as byte vectors by name. A temporary lives in its writer until
/// `commit` inserts it whole: a crash before that leaves nothing.
#[derive(Clone, Debug, Default)]
struct MemoryBackend {
    objects: Objects,
}

impl MemoryBackend {
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.objects.lock().unwrap().keys().cloned().collect();
        v.sort();
        v
    }
}

impl StoreBackend for MemoryBackend {
    fn location(&self) -> &Path {
        Path::new("mem:")
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.objects.lock().unwrap().keys().cloned().collect())
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn ImageSource>> {
        match self.objects.lock().unwrap().get(name) {
            Some(bytes) => Ok(Box::new(Cursor::new(bytes.clone()))),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn create_temp(&self, name: &str) -> io::Result<Box<dyn TempImage>> {
        Ok(Box::new(MemoryTemp {
            bytes: Cursor::new(Vec::new()),
            name: name.to_string(),
            objects: self.objects.clone(),
        }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match self.objects.lock().unwrap().remove(name) {
            Some(_) => Ok(()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn remove_stale_temps(&self) {}
}

struct MemoryTemp {
    bytes: Cursor<Vec<u8>>,
    name: String,
    objects: Objects,
}

impl Write for MemoryTemp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for MemoryTemp {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.bytes.seek(pos)
    }
}

impl TempImage for MemoryTemp {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn commit(self: Box<Self>) -> io::Result<()> {
        let MemoryTemp {
            bytes,
            name,
            objects,
        } = *self;
        objects.lock().unwrap().insert(name, bytes.into_inner());
        Ok(())
    }
}

#[test]
fn store_round_trip_over_an_in_memory_backend() {
    let backend = MemoryBackend::default();
    let store = CheckpointStore::with_backend(Box::new(backend.clone()));
    store.set_write_version(1);
    assert_eq!(store.dir(), Path::new("mem:"));
    let models = small_chain(&store);
    assert_eq!(
        backend.names(),
        (1..=3)
            .map(|id| format!("ckpt-{id:020}.phi"))
            .collect::<Vec<_>>()
    );
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 3);
    assert!(loaded.skipped.is_empty());
    assert_restores(&loaded, &models[3]);
    assert_eq!(store.latest_id(), Some(3));
    assert!(store.fsck().unwrap().is_clean());
    let listed = store.list().unwrap();
    assert_eq!(listed.iter().map(|l| l.id).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(
        listed[0].path,
        Path::new("mem:/ckpt-00000000000000000003.phi")
    );

    // The same checkpoints in a local directory are the same bytes.
    let (_dir, local) = super::common::store();
    small_chain(&local);
    for id in 1..=3 {
        let name = format!("ckpt-{id:020}.phi");
        assert!(
            backend.objects.lock().unwrap()[&name]
                == std::fs::read(local.checkpoint_path(id)).unwrap(),
            "checkpoint {id}"
        );
    }

    // Fallback: a flipped byte in the newest image.
    {
        let mut objects = backend.objects.lock().unwrap();
        let newest = objects.get_mut("ckpt-00000000000000000003.phi").unwrap();
        newest[140] ^= 1;
    }
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 2);
    assert_eq!(loaded.skipped[0].0, 3);
    assert!(
        loaded.skipped[0]
            .1
            .starts_with("mem:/ckpt-00000000000000000003.phi is corrupt"),
        "{:?}",
        loaded.skipped
    );
    assert_restores(&loaded, &models[2]);
    assert!(!store.fsck().unwrap().is_clean());

    // Retention after two more FULL checkpoints: 1..=3 go.
    let m = models[2].clone();
    write(&store, 4, None, &m, &BTreeMap::new());
    write(&store, 5, None, &m, &BTreeMap::new());
    assert_eq!(
        backend.names(),
        [4, 5].map(|id| format!("ckpt-{id:020}.phi")).to_vec()
    );
    assert_restores(&store.load_latest().unwrap(), &m);
}

#[test]
fn failed_write_leaves_the_backend_unchanged() {
    let backend = MemoryBackend::default();
    let store = CheckpointStore::with_backend(Box::new(backend.clone()));
    store.set_write_version(1);
    small_chain(&store);
    let before = backend.objects.lock().unwrap().clone();
    // A source that cannot be read fails the write part way.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("write-only");
    std::fs::write(&path, vec![1u8; 8 * 4096]).unwrap();
    let src = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let err = store
        .write(&NewCheckpoint {
            id: 4,
            parent: Some(3),
            created_unix_ns: 0,
            pause_us: 0,
            sections: vec![],
            memories: vec![MemoryDelta {
                index: 0,
                size_bytes: 8 * 4096,
                dirty: vec![PageRun { first: 0, count: 8 }],
                source: src,
            }],
        })
        .unwrap_err();
    assert!(err.to_string().contains("cannot read page 0"), "{err}");
    assert!(*backend.objects.lock().unwrap() == before);
}
