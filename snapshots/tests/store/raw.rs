//! The raw codec: `encode(parse(f)) == f` for the files the store writes,
//! edited parts load as edited (every checksum recomputed), and images
//! with randomly mutated parts never panic the store or a stream reader.

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use phantom_snapshots::raw::{RawBlock, RawImage};
use phantom_snapshots::{CheckpointStore, PAGE_SIZE, PageRun, RestoredMemory, read_image_from};
use proptest::prelude::*;

use super::common::*;

/// A chain with more structure than `small_chain`: a memory over three
/// blocks, one with a partial last page, three sections; deltas whose runs
/// span blocks. Returns each file's id and bytes, oldest first.
fn fuzz_chain() -> &'static [(u64, Vec<u8>)] {
    static CHAIN: OnceLock<Vec<(u64, Vec<u8>)>> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let (_dir, store) = store();
        let mut m = Model::default();
        m.memories.insert(0, vec![0; 600 * PAGE_SIZE]);
        m.memories.insert(2, vec![0; 3 * PAGE_SIZE + 100]);
        m.sections.insert("host".into(), b"host 1".to_vec());
        m.sections.insert("globals".into(), vec![5; 40]);
        m.sections.insert("host/timers".into(), vec![]);
        for p in 0..600 {
            m.touch(0, p, p + 1);
        }
        m.touch(2, 3, 9);
        write(&store, 1, None, &m, &BTreeMap::new());
        let pages: Vec<u64> = (1..=300).step_by(3).collect();
        for &p in &pages {
            m.touch(0, p, p + 1000);
        }
        m.touch(2, 0, 77);
        write(
            &store,
            2,
            Some(1),
            &m,
            &BTreeMap::from([(0, runs(&pages)), (2, runs(&[0]))]),
        );
        m.touch(0, 599, 5);
        m.touch(0, 0, 6);
        m.sections.insert("host".into(), b"host 3".to_vec());
        write(
            &store,
            3,
            Some(2),
            &m,
            &BTreeMap::from([(0, runs(&[599, 0]))]),
        );
        (1..=3)
            .map(|id| (id, fs::read(store.checkpoint_path(id)).unwrap()))
            .collect()
    })
}

#[test]
fn encode_of_parse_is_the_file() {
    let mut files: Vec<(PathBuf, Vec<u8>)> = fuzz_chain()
        .iter()
        .map(|(id, b)| (PathBuf::from(format!("fuzz chain {id}")), b.clone()))
        .collect();
    let (_dir, store) = store();
    small_chain(&store);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    for dir in [store.dir(), &fixture] {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            files.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
    assert_eq!(files.len(), 3 + 3 + 2);
    for (path, bytes) in &files {
        let raw = RawImage::parse(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            raw.encode() == *bytes,
            "{} re-encodes differently",
            path.display()
        );
    }
    let full = RawImage::parse(&fuzz_chain()[0].1).unwrap();
    assert_eq!(full.parent, None);
    let names: Vec<&str> = full.sections.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["globals", "host", "host/timers"]);
    assert_eq!(full.memories.len(), 2);
    assert_eq!(full.memories[0].blocks.len(), 3);
    let block = &full.memories[0].blocks[2];
    assert_eq!(block.pages, 600 - 512);
    assert_eq!(
        block.runs,
        [PageRun {
            first: 512,
            count: 88
        }]
    );
    assert_eq!(block.decompress().unwrap().len(), 88 * PAGE_SIZE);
    assert!(RawImage::parse(&fuzz_chain()[0].1[..100]).is_err());
}

#[test]
fn edited_parts_load_as_edited() {
    let chain = fuzz_chain();
    let mut raw = RawImage::parse(&chain[2].1).unwrap();
    raw.sections[1].1 = b"edited host state".to_vec();
    // Memory 0's only block holds pages 0 and 599; rewrite page 599.
    let block = &mut raw.memories[0].blocks[0];
    assert_eq!(block.runs.len(), 2);
    let mut plain = block.decompress().unwrap();
    plain[PAGE_SIZE..].fill(0xEE);
    *block = RawBlock::compress(block.runs.clone(), &plain);
    let dir = tempfile::tempdir().unwrap();
    for (id, bytes) in &chain[..2] {
        fs::write(dir.path().join(format!("ckpt-{id:020}.phi")), bytes).unwrap();
    }
    fs::write(dir.path().join(format!("ckpt-{:020}.phi", 3)), raw.encode()).unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    assert!(store.fsck().unwrap().is_clean());
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.info.id, 3);
    assert_eq!(loaded.sections["host"], b"edited host state");
    let mut reader = loaded.memories[0].page_reader().unwrap();
    let mut page = [0u8; PAGE_SIZE];
    assert!(reader.read_page(599, &mut page).unwrap());
    assert!(page.iter().all(|&b| b == 0xEE));
}

/// One edit of a parsed image. Indices are taken modulo the number of
/// things present (an edit of nothing does nothing).
#[derive(Clone, Debug)]
enum Mutation {
    Id(u64),
    Parent(Option<u64>),
    Counters(u64, u64, u64),
    SectionName(usize, String),
    SectionBytes(usize, Vec<u8>),
    DuplicateSection(usize),
    RemoveSection(usize),
    SwapSections(usize, usize),
    MemoryIndex(usize, u32),
    MemorySize(usize, u64),
    DuplicateMemory(usize),
    RemoveMemory(usize),
    SwapMemories(usize, usize),
    RunFirst(usize, usize, usize, u64),
    RunCount(usize, usize, usize, u64),
    AddRun(usize, usize, u64, u64),
    RemoveRun(usize, usize, usize),
    ReverseRuns(usize, usize),
    BlockPages(usize, usize, u32),
    Recompress(usize, usize, u16, u8),
    Junk(usize, usize, Vec<u8>),
    TruncateBlock(usize, usize, usize),
    DuplicateBlock(usize, usize),
    RemoveBlock(usize, usize),
    MoveBlock(usize, usize, usize),
}

/// Numbers a fuzzer would try: small, near page and block bounds, at the
/// caps and the integer limits, and anything.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..8,
        0u64..1200,
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        Just(u64::MAX),
        Just(16 << 30),
        Just((16 << 30) + 1),
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = || any::<usize>();
    prop_oneof![
        number().prop_map(Mutation::Id),
        prop::option::of(number()).prop_map(Mutation::Parent),
        (number(), number(), number()).prop_map(|(a, b, c)| Mutation::Counters(a, b, c)),
        (i(), "[a-z/]{0,4}|.{0,300}").prop_map(|(s, n)| Mutation::SectionName(s, n)),
        (i(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(s, b)| Mutation::SectionBytes(s, b)),
        i().prop_map(Mutation::DuplicateSection),
        i().prop_map(Mutation::RemoveSection),
        (i(), i()).prop_map(|(a, b)| Mutation::SwapSections(a, b)),
        (i(), prop_oneof![0u32..4, any::<u32>()]).prop_map(|(m, x)| Mutation::MemoryIndex(m, x)),
        (i(), number()).prop_map(|(m, x)| Mutation::MemorySize(m, x)),
        i().prop_map(Mutation::DuplicateMemory),
        i().prop_map(Mutation::RemoveMemory),
        (i(), i()).prop_map(|(a, b)| Mutation::SwapMemories(a, b)),
        (i(), i(), i(), number()).prop_map(|(m, b, r, x)| Mutation::RunFirst(m, b, r, x)),
        (i(), i(), i(), number()).prop_map(|(m, b, r, x)| Mutation::RunCount(m, b, r, x)),
        (i(), i(), number(), number()).prop_map(|(m, b, f, c)| Mutation::AddRun(m, b, f, c)),
        (i(), i(), i()).prop_map(|(m, b, r)| Mutation::RemoveRun(m, b, r)),
        (i(), i()).prop_map(|(m, b)| Mutation::ReverseRuns(m, b)),
        (i(), i(), prop_oneof![0u32..300, any::<u32>()])
            .prop_map(|(m, b, p)| Mutation::BlockPages(m, b, p)),
        (i(), i(), 0u16..300, any::<u8>())
            .prop_map(|(m, b, p, f)| Mutation::Recompress(m, b, p, f)),
        (i(), i(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(m, b, j)| Mutation::Junk(m, b, j)),
        (i(), i(), i()).prop_map(|(m, b, n)| Mutation::TruncateBlock(m, b, n)),
        (i(), i()).prop_map(|(m, b)| Mutation::DuplicateBlock(m, b)),
        (i(), i()).prop_map(|(m, b)| Mutation::RemoveBlock(m, b)),
        (i(), i(), i()).prop_map(|(m, b, to)| Mutation::MoveBlock(m, b, to)),
    ]
}

fn pick(len: usize, i: usize) -> Option<usize> {
    (len > 0).then(|| i % len)
}

fn block_mut(raw: &mut RawImage, m: usize, b: usize) -> Option<&mut RawBlock> {
    let m = pick(raw.memories.len(), m)?;
    let blocks = &mut raw.memories[m].blocks;
    let b = pick(blocks.len(), b)?;
    Some(&mut blocks[b])
}

fn run_mut(raw: &mut RawImage, m: usize, b: usize, r: usize) -> Option<&mut PageRun> {
    let block = block_mut(raw, m, b)?;
    let r = pick(block.runs.len(), r)?;
    Some(&mut block.runs[r])
}

fn apply(raw: &mut RawImage, m: &Mutation) {
    use Mutation::*;
    let sections = raw.sections.len();
    let memories = raw.memories.len();
    match m.clone() {
        Id(x) => raw.id = x,
        Parent(x) => raw.parent = x,
        Counters(a, b, c) => {
            raw.created_unix_ns = a;
            raw.dirty_pages = b;
            raw.bytes_uncompressed = c;
        }
        SectionName(s, n) => {
            if let Some(s) = pick(sections, s) {
                raw.sections[s].0 = n;
            }
        }
        SectionBytes(s, b) => {
            if let Some(s) = pick(sections, s) {
                raw.sections[s].1 = b;
            }
        }
        DuplicateSection(s) => {
            if let Some(s) = pick(sections, s) {
                raw.sections.insert(s, raw.sections[s].clone());
            }
        }
        RemoveSection(s) => {
            if let Some(s) = pick(sections, s) {
                raw.sections.remove(s);
            }
        }
        SwapSections(a, b) => {
            if let (Some(a), Some(b)) = (pick(sections, a), pick(sections, b)) {
                raw.sections.swap(a, b);
            }
        }
        MemoryIndex(i, x) => {
            if let Some(i) = pick(memories, i) {
                raw.memories[i].index = x;
            }
        }
        MemorySize(i, x) => {
            if let Some(i) = pick(memories, i) {
                raw.memories[i].size_bytes = x;
            }
        }
        DuplicateMemory(i) => {
            if let Some(i) = pick(memories, i) {
                raw.memories.insert(i, raw.memories[i].clone());
            }
        }
        RemoveMemory(i) => {
            if let Some(i) = pick(memories, i) {
                raw.memories.remove(i);
            }
        }
        SwapMemories(a, b) => {
            if let (Some(a), Some(b)) = (pick(memories, a), pick(memories, b)) {
                raw.memories.swap(a, b);
            }
        }
        RunFirst(m, b, r, x) => {
            if let Some(run) = run_mut(raw, m, b, r) {
                run.first = x;
            }
        }
        RunCount(m, b, r, x) => {
            if let Some(run) = run_mut(raw, m, b, r) {
                run.count = x;
            }
        }
        AddRun(m, b, first, count) => {
            if let Some(block) = block_mut(raw, m, b) {
                block.runs.push(PageRun { first, count });
            }
        }
        RemoveRun(m, b, r) => {
            if let Some(block) = block_mut(raw, m, b)
                && let Some(r) = pick(block.runs.len(), r)
            {
                block.runs.remove(r);
            }
        }
        ReverseRuns(m, b) => {
            if let Some(block) = block_mut(raw, m, b) {
                block.runs.reverse();
            }
        }
        BlockPages(m, b, p) => {
            if let Some(block) = block_mut(raw, m, b) {
                block.pages = p;
            }
        }
        Recompress(m, b, pages, fill) => {
            if let Some(block) = block_mut(raw, m, b) {
                let plain = vec![fill; usize::from(pages) * PAGE_SIZE];
                *block = RawBlock::compress(block.runs.clone(), &plain);
            }
        }
        Junk(m, b, junk) => {
            if let Some(block) = block_mut(raw, m, b) {
                block.compressed = junk;
            }
        }
        TruncateBlock(m, b, n) => {
            if let Some(block) = block_mut(raw, m, b) {
                let keep = n % (block.compressed.len() + 1);
                block.compressed.truncate(keep);
            }
        }
        DuplicateBlock(m, b) => {
            if let Some(m) = pick(memories, m) {
                let blocks = &mut raw.memories[m].blocks;
                if let Some(b) = pick(blocks.len(), b) {
                    blocks.insert(b, blocks[b].clone());
                }
            }
        }
        RemoveBlock(m, b) => {
            if let Some(m) = pick(memories, m) {
                let blocks = &mut raw.memories[m].blocks;
                if let Some(b) = pick(blocks.len(), b) {
                    blocks.remove(b);
                }
            }
        }
        MoveBlock(m, b, to) => {
            if let (Some(m), Some(to)) = (pick(memories, m), pick(memories, to)) {
                let blocks = &mut raw.memories[m].blocks;
                if let Some(b) = pick(blocks.len(), b) {
                    let block = blocks.remove(b);
                    raw.memories[to].blocks.push(block);
                }
            }
        }
    }
}

/// Reads what a restore reads: every page through `write_into`, and some
/// pages one at a time. Errors are fine; panics are not.
fn exercise(memories: &[RestoredMemory]) {
    for m in memories {
        let dest = tempfile::tempfile().unwrap();
        dest.set_len(m.size_bytes).unwrap();
        if let Err(e) = m.write_into(&dest) {
            let _ = e.to_string();
        }
        if let Ok(mut r) = m.page_reader() {
            let pages = r.page_count();
            let mut page = [0u8; PAGE_SIZE];
            for p in (0..pages.min(40)).chain(pages.saturating_sub(40)..pages + 1) {
                let _ = r.read_page(p, &mut page);
            }
        }
    }
}

fn check_mutated(target: usize, name_by_new_id: bool, mutations: &[Mutation]) {
    let chain = fuzz_chain();
    let mut raw = RawImage::parse(&chain[target].1).unwrap();
    for m in mutations {
        apply(&mut raw, m);
    }
    let bytes = raw.encode();
    // Whatever parses re-encodes to itself: encode is canonical.
    if let Ok(again) = RawImage::parse(&bytes) {
        assert!(
            again.encode() == bytes,
            "parse then encode changed the image"
        );
    }

    // As a stream.
    match read_image_from(Cursor::new(bytes.clone()), "fuzzed", None) {
        Ok(image) => {
            let _ = image.info();
            let _ = image.verify(true).map_err(|e| e.to_string());
            let _ = image.sections().map_err(|e| e.to_string());
            exercise(&image.memories());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    // In a store, with the rest of the chain.
    let dir = tempfile::tempdir().unwrap();
    for (i, (id, original)) in chain.iter().enumerate() {
        if i != target {
            fs::write(dir.path().join(format!("ckpt-{id:020}.phi")), original).unwrap();
        }
    }
    let id = if name_by_new_id {
        raw.id
    } else {
        chain[target].0
    };
    fs::write(dir.path().join(format!("ckpt-{id:020}.phi")), &bytes).unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    for l in store.list().unwrap() {
        let _ = l.info.map_err(|e| e.to_string());
    }
    for p in store.fsck().unwrap().problems() {
        let _ = p.to_string();
    }
    match store.load_latest() {
        Ok(loaded) => exercise(&loaded.memories),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let newest = store.latest_id();
    let _ = store.restore_newest(|l| {
        if Some(l.info.id) == newest {
            Err("refused".to_string())
        } else {
            Ok(l.memories.clone())
        }
    });
}

#[test]
fn unmutated_chain_is_clean() {
    for target in 0..3 {
        check_mutated(target, false, &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    for (id, bytes) in fuzz_chain() {
        let raw = RawImage::parse(bytes).unwrap();
        fs::write(dir.path().join(format!("ckpt-{id:020}.phi")), raw.encode()).unwrap();
    }
    let store = CheckpointStore::open(dir.path()).unwrap();
    assert!(store.fsck().unwrap().is_clean());
    assert_eq!(store.load_latest().unwrap().info.id, 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_images_never_panic(
        target in 0usize..3,
        name_by_new_id in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        check_mutated(target, name_by_new_id, &mutations);
    }
}
