//! The process's console: bytes out. Input arrives as `on_line` events.

use crate::bindings::phantom::os::console;

/// Writes bytes to the console; the host flushes them when the current call
/// returns.
pub fn write(bytes: &[u8]) {
    console::write(bytes);
}

/// Writes a string to the console.
pub fn write_str(text: &str) {
    console::write(text.as_bytes());
}

/// Makes a panic print its message to the console before it aborts (which
/// the host sees as a trap), so the message is not lost: wasm32-unknown-unknown
/// has no stderr. The hook is a value in linear memory, so it survives restores
/// like everything else; installed once, by `init`.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        write_str(&format!("{info}\n"));
    }));
}
