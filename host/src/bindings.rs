//! Host bindings of the `phantom:os` world (`wit/phantom-os.wit`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "persistent-process",
});

pub use phantom::os::types::File as GuestFile;
