//! Differential: running N events straight gives the same memory bytes and
//! the same outputs as running k, checkpointing, restoring in a fresh host
//! (a new runtime: new engine, new memories) and running N-k.

use phantom_runtime::gate::Input;
use phantom_runtime::process::{Process, SpawnRequest};
use phantom_runtime::runtime::{Runtime, RuntimeConfig};

use super::common::*;

fn events() -> Vec<String> {
    let mut v: Vec<String> = (0..40u64)
        .map(|i| format!("touch {} {}", 1 + (i * 37) % 300, i))
        .collect();
    v.insert(20, "sum".into());
    v.push("sum".into());
    v
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

fn deliver(rt: &Runtime, p: &mut Process, lines: &[String], out: &mut Vec<u8>) {
    for l in lines {
        p.offer(Input::ConsoleLine(l.clone())).expect("queued");
        while let Some(o) = p.step(rt).expect("step") {
            out.extend(phantom_runtime::exit::console_text(&o));
        }
    }
}

fn memory_bytes(p: &mut Process) -> Vec<Vec<u8>> {
    p.memory_bytes().unwrap()
}

fn memtouch(name: &str) -> SpawnRequest {
    SpawnRequest {
        name: name.into(),
        args: vec!["--mib".into(), "4".into()],
        files: vec![],
        env: Vec::new(),
        devices: None,
        scenario: None,
    }
}

fn straight(events: &[String]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let data = data_dir();
    let rt = runtime();
    let bytes = std::fs::read(phantom_tests::MEMTOUCH).unwrap();
    let (mut p, _) = Process::spawn(&rt, &bytes, data.path(), memtouch("m")).unwrap();
    let mut out = Vec::new();
    deliver(&rt, &mut p, events, &mut out);
    (out, memory_bytes(&mut p))
}

fn split(events: &[String], k: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let data = data_dir();
    let bytes = std::fs::read(phantom_tests::MEMTOUCH).unwrap();
    let mut out = Vec::new();
    {
        let rt = runtime();
        let (mut p, _) = Process::spawn(&rt, &bytes, data.path(), memtouch("m")).unwrap();
        deliver(&rt, &mut p, &events[..k], &mut out);
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
    }
    let rt = runtime();
    let (mut p, warnings) = Process::restore(&rt, &data.path().join("m")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(p.state().restore_count, 1);
    deliver(&rt, &mut p, &events[k..], &mut out);
    (out, memory_bytes(&mut p))
}

#[test]
fn straight_run_equals_checkpoint_restore_run() {
    let events = events();
    let (out, mem) = straight(&events);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("sum="), "memtouch printed no sum: {text}");
    for k in [0, 1, 17, 21, events.len() - 1, events.len()] {
        let (out_k, mem_k) = split(&events, k);
        assert_eq!(
            String::from_utf8_lossy(&out_k),
            text,
            "outputs differ when split at {k}"
        );
        assert_eq!(mem_k.len(), mem.len());
        for (i, (a, b)) in mem.iter().zip(&mem_k).enumerate() {
            assert_eq!(
                a.len(),
                b.len(),
                "memory {i} size differs when split at {k}"
            );
            if a != b {
                let page = a.iter().zip(b).position(|(x, y)| x != y).unwrap() / 4096;
                panic!("memory {i} differs at page {page} when split at {k}");
            }
        }
    }
}
