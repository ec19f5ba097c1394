//! `Memories` and `Quiescent`: guest bytes only with proof that no call of
//! the owning store runs; memories bound to the store they were
//! instantiated in; instantiation on several threads keeps them apart;
//! prepared memories that do not fit are the image's fault.
#![forbid(unsafe_code)]

use std::sync::Arc;

use phantom_memory::{
    InstantiateError, PhantomMemoryCreator, PreparedMemory, Quiescent, TrackerKind, instantiate,
    new_memfd,
};
use wasm_encoder::{Component, InstanceSection, MemorySection, MemoryType, Module, ModuleSection};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, Store};

/// A component whose one core module defines a memory of `pages` 64 KiB
/// pages (at most `max`).
fn component(pages: u64, max: Option<u64>) -> Vec<u8> {
    let mut module = Module::new();
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: max,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut c = Component::new();
    c.section(&ModuleSection(&module));
    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
    c.section(&instances);
    c.finish()
}

struct Host {
    engine: Engine,
    creator: Arc<PhantomMemoryCreator>,
}

fn host() -> Host {
    let creator = Arc::new(PhantomMemoryCreator::default());
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.with_host_memory(creator.clone());
    config.memory_init_cow(false);
    Host {
        engine: Engine::new(&config).unwrap(),
        creator,
    }
}

/// Store data: anything with a size.
struct Data(#[allow(dead_code)] u64);

fn make(
    h: &Host,
    bytes: &[u8],
    prepared: Vec<PreparedMemory>,
) -> Result<(Store<Data>, phantom_memory::Memories), InstantiateError> {
    let component = wasmtime::component::Component::new(&h.engine, bytes).unwrap();
    let linker = Linker::new(&h.engine);
    let mut store = Store::new(&h.engine, Data(0));
    let (_instance, memories) = instantiate(
        &h.creator,
        &mut store,
        &linker,
        &component,
        prepared,
        TrackerKind::best_available(),
    )?;
    Ok((store, memories))
}

#[test]
fn a_token_opens_only_the_memories_of_its_own_store() {
    let h = host();
    let bytes = component(2, None);
    let (mut a, mem_a) = make(&h, &bytes, vec![]).unwrap();
    let (mut b, mem_b) = make(&h, &bytes, vec![]).unwrap();
    assert_eq!(mem_a.sizes(), [2 * 65536]);
    {
        let qa = Quiescent::new(&mut a);
        assert_eq!(mem_a.copy_bytes(&qa).unwrap()[0].len(), 2 * 65536);
        let err = mem_b.copy_bytes(&qa).unwrap_err();
        assert!(err.to_string().contains("another store"), "{err}");
        assert!(mem_b.capture(&qa, false).is_err());
        assert!(mem_b.revert_to_file(&qa).is_err());
        assert!(mem_b.with_bytes(&qa, 0, |_| ()).is_err());
    }
    let qb = Quiescent::new(&mut b);
    assert!(mem_b.capture(&qb, true).is_ok());
}

#[test]
fn the_binding_survives_moving_the_store() {
    let h = host();
    let (store, memories) = make(&h, &component(1, None), vec![]).unwrap();
    let mut moved = [Box::new(store)];
    let q = Quiescent::new(&mut *moved[0]);
    assert!(memories.copy_bytes(&q).is_ok());
}

#[test]
fn instantiations_on_several_threads_keep_their_memories_apart() {
    let h = Arc::new(host());
    let threads: Vec<_> = (1..=4u64)
        .map(|pages| {
            let h = h.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let (_, m) = make(&h, &component(pages, None), vec![]).unwrap();
                    assert_eq!(m.sizes(), [pages as usize * 65536]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn prepared_memories_that_do_not_fit_are_the_images_fault() {
    let h = host();
    let bytes = component(2, Some(4));
    let prepared = |size: u64| {
        let file = new_memfd().unwrap();
        PreparedMemory::filled(file, size).unwrap()
    };
    // Smaller than the minimum, larger than the maximum, one too many.
    for memories in [
        vec![prepared(65536)],
        vec![prepared(5 * 65536)],
        vec![prepared(2 * 65536), prepared(65536)],
    ] {
        match make(&h, &bytes, memories) {
            Err(InstantiateError::Image(why)) => assert!(!why.is_empty()),
            Err(other) => panic!("expected an image error, got {other}"),
            Ok(_) => panic!("expected an image error"),
        }
    }
    // One that fits restores with the prepared bytes.
    let file = new_memfd().unwrap();
    file.set_len(3 * 65536).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"restored", 65536).unwrap();
    let (mut store, memories) = make(
        &h,
        &bytes,
        vec![PreparedMemory::filled(file, 3 * 65536).unwrap()],
    )
    .unwrap();
    let q = Quiescent::new(&mut store);
    memories.revert_to_file(&q).unwrap();
    let bytes = memories.copy_bytes(&q).unwrap();
    assert_eq!(&bytes[0][65536..65544], b"restored");
    // Sizes that are not whole WebAssembly pages are refused up front.
    for size in [1, 4096, 65536 + 4096, 1 << 40] {
        assert!(
            PreparedMemory::filled(new_memfd().unwrap(), size).is_err(),
            "{size}"
        );
    }
}
