//! Incremental: a checkpoint writes (before compression) at most
//! 1.1 x K x 4096 bytes plus a small constant for K dirty pages, and K
//! follows what the guest touched, not the memory size.

use phantom_runtime::gate::Input;
use phantom_runtime::process::{Process, SpawnRequest};
use phantom_runtime::runtime::{Runtime, RuntimeConfig};

use super::common::*;

/// Sections, headers and the page index of an empty checkpoint stay below this.
const SMALL_CONSTANT: u64 = 16 * 1024;

#[test]
fn checkpoint_bytes_follow_dirty_pages() {
    let data = data_dir();
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let bytes = std::fs::read(phantom_tests::MEMTOUCH).unwrap();
    let request = SpawnRequest {
        name: "m".into(),
        args: vec!["--mib".into(), "64".into()],
        files: vec![],
        env: Vec::new(),
        devices: None,
        scenario: None,
    };
    let (mut p, _) = Process::spawn(&rt, &bytes, data.path(), request).unwrap();
    let full = p.last_committed().unwrap().clone();
    assert!(
        full.parent.is_none(),
        "the first checkpoint is a full image"
    );
    for touched in [0u64, 1, 10, 100, 1000] {
        if touched > 0 {
            p.offer(Input::ConsoleLine(format!("touch {touched} {touched}")))
                .unwrap();
            p.step(&rt).unwrap().unwrap();
        }
        let report = p.checkpoint(&rt).unwrap();
        let info = p.wait_for_write().unwrap().unwrap();
        let k = report.dirty_pages;
        assert_eq!(info.dirty_pages, k);
        assert!(
            info.parent.is_some(),
            "an incremental checkpoint has a parent"
        );
        // The guest's call also dirties a few pages of its stack and heap.
        assert!(
            k >= touched && k <= touched + 16,
            "touched {touched} pages but {k} were dirty"
        );
        let bound = (1.1 * k as f64 * 4096.0) as u64 + SMALL_CONSTANT;
        assert!(
            info.bytes_uncompressed <= bound,
            "{k} dirty pages wrote {} bytes (bound {bound})",
            info.bytes_uncompressed
        );
    }
}
