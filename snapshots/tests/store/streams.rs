//! Streams: an image written with `write_image_to` into any `Write + Seek`
//! is byte for byte what the store writes, and `read_image_from` reads it
//! back from any `Read + Seek` (verify, sections, memories), shared across
//! threads.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Seek, SeekFrom, Write};

use phantom_snapshots::{
    CheckpointWriteError, ImageError, LoadedCheckpoint, PAGE_SIZE, read_image_from, write_image_to,
};

use super::common::*;

/// The requests `small_chain` makes, by id.
fn small_chain_request(models: &[Model], id: u64) -> phantom_snapshots::NewCheckpoint {
    match id {
        1 => checkpoint(1, None, &models[1], &BTreeMap::new()),
        2 => checkpoint(2, Some(1), &models[2], &BTreeMap::from([(0, runs(&[2]))])),
        3 => checkpoint(3, Some(2), &models[3], &BTreeMap::from([(0, runs(&[5]))])),
        _ => unreachable!(),
    }
}

fn stream_bytes(ckpt: &phantom_snapshots::NewCheckpoint) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let info = write_image_to(&mut out, ckpt).unwrap();
    assert_eq!(info.bytes_written, out.get_ref().len() as u64);
    assert_eq!(
        out.position(),
        info.bytes_written,
        "left at the image's end"
    );
    out.into_inner()
}

#[test]
fn stream_image_is_the_store_file() {
    let (_dir, store) = store();
    let models = small_chain(&store);
    let listed = store.list().unwrap();
    for id in 1..=3 {
        let bytes = stream_bytes(&small_chain_request(&models, id));
        let file = std::fs::read(store.checkpoint_path(id)).unwrap();
        assert!(
            bytes == file,
            "checkpoint {id} differs from the store's file"
        );
        let image = read_image_from(Cursor::new(bytes), "mem:image", Some(id)).unwrap();
        image.verify(true).unwrap();
        let stored = listed.iter().find(|l| l.id == id).unwrap();
        assert_eq!(&image.info(), stored.info.as_ref().unwrap());
    }
}

#[test]
fn full_image_restores_from_a_stream() {
    let model = small_model();
    let bytes = stream_bytes(&checkpoint(1, None, &model, &BTreeMap::new()));
    let image = read_image_from(Cursor::new(bytes), "mem:full", None).unwrap();
    image.verify(true).unwrap();
    let loaded = LoadedCheckpoint {
        info: image.info(),
        sections: image.sections().unwrap(),
        memories: image.memories(),
        chain_len: 1,
        skipped: vec![],
    };
    assert_restores(&loaded, &model);
}

#[test]
fn delta_from_a_stream_holds_only_its_pages() {
    let mut model = small_model();
    model.touch(0, 6, 60);
    let bytes = stream_bytes(&checkpoint(
        7,
        Some(3),
        &model,
        &BTreeMap::from([(0, runs(&[6]))]),
    ));
    let image = read_image_from(Cursor::new(bytes), "mem:delta", Some(7)).unwrap();
    image.verify(true).unwrap();
    assert_eq!(image.info().parent, Some(3));
    let memories = image.memories();
    assert_eq!(memories.len(), 2);
    let mut reader = memories[0].page_reader().unwrap();
    let mut page = [0u8; PAGE_SIZE];
    for p in 0..reader.page_count() {
        let stored = reader.read_page(p, &mut page).unwrap();
        assert_eq!(stored, p == 6, "page {p}");
        if stored {
            assert!(page[..] == model.memories[&0][6 * PAGE_SIZE..7 * PAGE_SIZE]);
        }
    }
}

#[test]
fn readers_share_one_stream_across_threads() {
    let mut model = Model::default();
    model.memories.insert(0, vec![0; 900 * PAGE_SIZE]);
    for p in 0..900 {
        model.touch(0, p, p * 31 + 1);
    }
    let bytes = stream_bytes(&checkpoint(1, None, &model, &BTreeMap::new()));
    let image = read_image_from(Cursor::new(bytes), "mem:shared", Some(1)).unwrap();
    let memory = image.memories().remove(0);
    let want = &model.memories[&0];
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let mut reader = memory.page_reader().unwrap();
            s.spawn(move || {
                let mut page = [0u8; PAGE_SIZE];
                // Each thread walks the pages in its own scattered order,
                // so their seeks interleave on the shared stream.
                for k in 0..900u64 {
                    let p = (k * (97 + 2 * t)) % 900;
                    assert!(reader.read_page(p, &mut page).unwrap());
                    assert!(page[..] == want[p as usize * PAGE_SIZE..][..PAGE_SIZE]);
                }
            });
        }
    });
}

#[test]
fn stream_errors_name_the_stream() {
    let model = small_model();
    let bytes = stream_bytes(&checkpoint(1, None, &model, &BTreeMap::new()));
    let cut = bytes[..bytes.len() - 1].to_vec();
    let err = read_image_from(Cursor::new(cut), "peer:ckpt-1", None).unwrap_err();
    assert!(matches!(err, ImageError::Truncated { .. }), "{err}");
    assert!(
        err.to_string().starts_with("peer:ckpt-1 is truncated"),
        "{err}"
    );
    let err = read_image_from(Cursor::new(bytes.clone()), "peer:ckpt-1", Some(2)).unwrap_err();
    assert!(
        err.to_string()
            .contains("its name says checkpoint 2 but its header says 1"),
        "{err}"
    );
    // A flipped payload byte opens (header and TOC are fine) but does not
    // verify.
    let mut bad = bytes;
    bad[130] ^= 4;
    let image = read_image_from(Cursor::new(bad), "peer:ckpt-1", None).unwrap();
    let err = image.verify(false).unwrap_err().to_string();
    assert!(err.contains("peer:ckpt-1 is corrupt"), "{err}");
}

#[test]
fn write_image_to_checks_the_request_like_the_store() {
    let model = small_model();
    let mut out = Cursor::new(Vec::new());
    let mut dup = checkpoint(1, None, &model, &BTreeMap::new());
    dup.sections.push(("host".into(), vec![]));
    let err = write_image_to(&mut out, &dup).unwrap_err().to_string();
    assert!(err.contains("section 'host' appears twice"), "{err}");
    let older = checkpoint(4, Some(4), &model, &BTreeMap::new());
    let err = write_image_to(&mut out, &older).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointWriteError::ParentNotOlder { id: 4, parent: 4 }
        ),
        "{err}"
    );
    assert!(
        out.get_ref().is_empty(),
        "nothing written for a bad request"
    );
}

/// A stream that fails once `limit` bytes were written.
struct FailingWriter {
    inner: Cursor<Vec<u8>>,
    limit: u64,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.inner.position() + buf.len() as u64 > self.limit {
            return Err(io::Error::other("disk full"));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for FailingWriter {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn failing_stream_is_a_write_error() {
    let model = small_model();
    let ckpt = checkpoint(1, None, &model, &BTreeMap::new());
    let full = stream_bytes(&ckpt).len() as u64;
    for limit in [0, 100, 200, full - 1] {
        let mut out = FailingWriter {
            inner: Cursor::new(Vec::new()),
            limit,
        };
        let err = write_image_to(&mut out, &ckpt).unwrap_err();
        assert!(
            matches!(err, CheckpointWriteError::Write { .. }),
            "limit {limit}: {err}"
        );
        assert!(
            err.to_string().contains("cannot write the image stream"),
            "{err}"
        );
        // Whatever made it out is not an image: the header comes last.
        let partial = out.inner.into_inner();
        assert!(read_image_from(Cursor::new(partial), "partial", None).is_err());
    }
}
