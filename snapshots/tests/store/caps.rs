//! Caps: files crafted with valid checksums but huge claims (sizes, counts)
//! are refused with a clear error before anything that size is allocated.
//! The files are built here from DESIGN.md ("Image format"), independently of the writer.

use std::fs;
use std::os::unix::fs::FileExt;

use phantom_snapshots::{CheckpointStore, MAX_MEMORY_BYTES, MAX_SECTION_BYTES, PAGE_SIZE};
use xxhash_rust::xxh3::xxh3_64;

/// A version 1 header (DESIGN.md ("Image format"), "Header").
fn header(id: u64, file_size: u64, toc_offset: u64, toc_size: u64, toc_checksum: u64) -> Vec<u8> {
    let mut b = vec![0u8; 128];
    b[0..8].copy_from_slice(b"PHANTIMG");
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    let pre = xxh3_64(&b[0..12]) as u32;
    b[12..16].copy_from_slice(&pre.to_le_bytes());
    b[16..20].copy_from_slice(&128u32.to_le_bytes());
    let fields = [
        id,
        0,
        0,
        0,
        0,
        0,
        file_size,
        toc_offset,
        toc_size,
        toc_checksum,
    ];
    for (i, v) in fields.iter().enumerate() {
        b[24 + 8 * i..32 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    let sum = xxh3_64(&b[0..120]);
    b[120..128].copy_from_slice(&sum.to_le_bytes());
    b
}

/// A whole file: header, `payload`, then `toc`.
fn image(id: u64, payload: &[u8], toc: &[u8]) -> Vec<u8> {
    let toc_offset = 128 + payload.len() as u64;
    let mut out = header(
        id,
        toc_offset + toc.len() as u64,
        toc_offset,
        toc.len() as u64,
        xxh3_64(toc),
    );
    out.extend_from_slice(payload);
    out.extend_from_slice(toc);
    out
}

struct Toc(Vec<u8>);
impl Toc {
    fn new(sections: u32, memories: u32) -> Self {
        let mut v = sections.to_le_bytes().to_vec();
        v.extend_from_slice(&memories.to_le_bytes());
        Toc(v)
    }
    fn u16(mut self, x: u16) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u32(mut self, x: u32) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn bytes(mut self, x: &[u8]) -> Self {
        self.0.extend_from_slice(x);
        self
    }
}

fn error_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::create(dir.path()).unwrap();
    store.set_write_version(1);
    fs::write(store.checkpoint_path(1), bytes).unwrap();
    let listed = store.list().unwrap();
    let err = listed[0]
        .info
        .as_ref()
        .expect_err("crafted file must be refused")
        .to_string();
    assert!(store.load_latest().is_err());
    assert!(!store.fsck().unwrap().is_clean());
    err
}

#[test]
fn crafted_file_without_claims_is_accepted() {
    // The encoder above is right: an empty image and a one-page image load.
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::create(dir.path()).unwrap();
    store.set_write_version(1);
    fs::write(store.checkpoint_path(1), image(1, &[], &Toc::new(0, 0).0)).unwrap();
    let page = vec![7u8; PAGE_SIZE];
    let block = zstd::bulk::compress(&page, 1).unwrap();
    let toc = Toc::new(1, 1)
        .u16(4)
        .bytes(b"host")
        .u64(128)
        .u64(2)
        .u64(xxh3_64(b"hi"))
        .u32(0)
        .u32(1)
        .u64(PAGE_SIZE as u64 * 4)
        .u64(130)
        .u32(block.len() as u32)
        .u32(1)
        .u64(xxh3_64(&block))
        .u64(2)
        .u32(1);
    let payload = [b"hi".as_slice(), &block].concat();
    fs::write(store.checkpoint_path(2), image(2, &payload, &toc.0)).unwrap();
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 2);
    assert_eq!(loaded.sections["host"], b"hi");
    let dest = tempfile::tempfile().unwrap();
    dest.set_len(4 * PAGE_SIZE as u64).unwrap();
    assert_eq!(loaded.memories[0].write_into(&dest).unwrap(), 1);
    let mut got = vec![0u8; PAGE_SIZE];
    dest.read_exact_at(&mut got, 2 * PAGE_SIZE as u64).unwrap();
    assert_eq!(got, page);
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn huge_table_of_contents_is_refused() {
    let h = header(1, 128 + (1 << 40), 128, 1 << 40, 0);
    let err = error_of(&h);
    assert!(err.contains("over the cap"), "{err}");
}

#[test]
fn huge_file_size_claim_is_truncation() {
    let toc = Toc::new(0, 0).0;
    let claimed = 32u64 << 30;
    let mut b = header(
        1,
        claimed,
        claimed - toc.len() as u64,
        toc.len() as u64,
        xxh3_64(&toc),
    );
    b.extend_from_slice(&toc);
    let err = error_of(&b);
    assert!(
        err.contains("is truncated") && err.contains(&claimed.to_string()),
        "{err}"
    );
    let claimed = 1u64 << 62;
    let mut b = header(
        1,
        claimed,
        claimed - toc.len() as u64,
        toc.len() as u64,
        xxh3_64(&toc),
    );
    b.extend_from_slice(&toc);
    assert!(error_of(&b).contains("over the cap"));
}

#[test]
fn huge_memory_is_refused() {
    let toc = Toc::new(0, 1)
        .u32(0)
        .u32(0)
        .u64(MAX_MEMORY_BYTES + PAGE_SIZE as u64);
    let err = error_of(&image(1, &[], &toc.0));
    assert!(
        err.contains("memory 0 claims") && err.contains("over the cap"),
        "{err}"
    );
}

#[test]
fn huge_section_is_refused() {
    let toc = Toc::new(1, 0)
        .u16(1)
        .bytes(b"x")
        .u64(128)
        .u64(MAX_SECTION_BYTES + 1)
        .u64(0);
    let err = error_of(&image(1, &[], &toc.0));
    assert!(err.contains("section 'x' claims"), "{err}");
    // Within the cap but beyond the file: refused, not read.
    let toc = Toc::new(1, 0)
        .u16(1)
        .bytes(b"x")
        .u64(128)
        .u64(1 << 20)
        .u64(0);
    let err = error_of(&image(1, &[], &toc.0));
    assert!(err.contains("runs past the payload area"), "{err}");
}

#[test]
fn huge_counts_are_refused() {
    let toc = Toc::new(u32::MAX, 0);
    assert!(error_of(&image(1, &[], &toc.0)).contains("sections, over the cap"));
    let toc = Toc::new(0, u32::MAX);
    assert!(error_of(&image(1, &[], &toc.0)).contains("memories, over the cap"));
    let toc = Toc::new(0, 1).u32(0).u32(u32::MAX).u64(PAGE_SIZE as u64);
    assert!(error_of(&image(1, &[], &toc.0)).contains("more than its table holds"));
    let toc = Toc::new(0, 1)
        .u32(0)
        .u32(1)
        .u64(PAGE_SIZE as u64)
        .u64(128)
        .u32(u32::MAX)
        .u32(1)
        .u64(0)
        .u64(0)
        .u32(1);
    assert!(error_of(&image(1, &[], &toc.0)).contains("compressed bytes"));
    let toc = Toc::new(0, 1)
        .u32(0)
        .u32(1)
        .u64(PAGE_SIZE as u64)
        .u64(128)
        .u32(10)
        .u32(u32::MAX)
        .u64(0);
    assert!(error_of(&image(1, &[0; 10], &toc.0)).contains("page runs"));
    // A page run past the memory's size.
    let toc = Toc::new(0, 1)
        .u32(0)
        .u32(1)
        .u64(PAGE_SIZE as u64)
        .u64(128)
        .u32(10)
        .u32(1)
        .u64(0)
        .u64(u64::MAX)
        .u32(2);
    assert!(error_of(&image(1, &[0; 10], &toc.0)).contains("beyond the memory"));
}

#[test]
fn block_that_inflates_beyond_its_pages_is_refused() {
    // Valid checksums, but the block holds 64 pages where the index says 1:
    // decompression stops at the claimed size.
    let big = zstd::bulk::compress(&vec![1u8; 64 * PAGE_SIZE], 1).unwrap();
    let toc = Toc::new(0, 1)
        .u32(0)
        .u32(1)
        .u64(64 * PAGE_SIZE as u64)
        .u64(128)
        .u32(big.len() as u32)
        .u32(1)
        .u64(xxh3_64(&big))
        .u64(0)
        .u32(1);
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::create(dir.path()).unwrap();
    store.set_write_version(1);
    fs::write(store.checkpoint_path(1), image(1, &big, &toc.0)).unwrap();
    let report = store.fsck().unwrap();
    let problems: Vec<String> = report.problems().iter().map(|p| p.to_string()).collect();
    assert!(
        problems[0].contains("does not decompress to its pages"),
        "{problems:?}"
    );
    let loaded = store.load_latest().unwrap();
    let dest = tempfile::tempfile().unwrap();
    dest.set_len(64 * PAGE_SIZE as u64).unwrap();
    let err = loaded.memories[0].write_into(&dest).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("does not decompress"), "{err}");
    // The lazy path fails the same way, on the first page of the block.
    let mut reader = loaded.memories[0].page_reader().unwrap();
    let mut page = [0u8; PAGE_SIZE];
    let err = reader.read_page(0, &mut page).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("does not decompress"), "{err}");
}

#[test]
fn unknown_version_is_named() {
    let mut b = image(1, &[], &Toc::new(0, 0).0);
    b[8..12].copy_from_slice(&9u32.to_le_bytes());
    let pre = xxh3_64(&b[0..12]) as u32;
    b[12..16].copy_from_slice(&pre.to_le_bytes());
    let err = error_of(&b);
    assert!(
        err.contains(
            "has format version 9, which this build cannot read (it reads versions 1 to 2)"
        ),
        "{err}"
    );
    let err = error_of(b"GIF89a and some more bytes to pass the preamble");
    assert!(err.contains("is not a Phantom image"), "{err}");
}
