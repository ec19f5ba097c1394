//! Devices (issue 12): grants at spawn. A component importing a
//! `phantom:devices` interface needs a grant for it in its device manifest
//! (`spawn --devices FILE`); a malformed manifest is refused naming its
//! line and key; a manifest is stored with the process.

use super::common::*;

/// A persistent process (idle on every event) that also imports
/// `phantom:devices/gpio` and calls nothing of it.
const WAT: &str = r#"
(module
  (import "phantom:devices/gpio@0.1.0" "close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func (export "init") (param i32 i32 i32 i32) (result i32)
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.store8 (i32.const 1028) (i32.const 0))
    (i32.const 1024))
  (func (export "handle") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 1536) (i32.const 0))
    (i32.const 1536))
)
"#;

/// The component of `WAT`: `persistent-process` plus `phantom:devices/gpio`.
fn gpio_component() -> Vec<u8> {
    let mut module = wat::parse_str(WAT).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    resolve.push_dir(&wit).unwrap();
    let pkg = resolve
        .push_str(
            "gpio-user.wit",
            "package test:devices;\nworld gpio-user {\n  include phantom:os/persistent-process@0.1.0;\n  import phantom:devices/gpio@0.1.0;\n}\n",
        )
        .unwrap();
    let world = resolve.select_world(&[pkg], Some("gpio-user")).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .unwrap()
        .encode()
        .unwrap()
}

fn spawn_with(
    data: &std::path::Path,
    component: &str,
    manifest: Option<&str>,
) -> std::process::Output {
    let mut args = vec!["spawn", component, "--data", s(data), "--name", "dev"];
    let path = data.join("manifest.toml");
    if let Some(text) = manifest {
        std::fs::create_dir_all(data).unwrap();
        std::fs::write(&path, text).unwrap();
        args.extend(["--devices", s(&path)]);
    }
    run(&args)
}

#[test]
fn a_device_import_without_a_grant_is_refused_at_spawn_naming_it() {
    let data = data_dir();
    let wasm = data.path().join("gpio.wasm");
    std::fs::write(&wasm, gpio_component()).unwrap();
    for manifest in [
        None,
        Some("i2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\n"),
    ] {
        let o = spawn_with(data.path(), s(&wasm), manifest);
        fails_with(&o, "imports `phantom:devices/gpio@0.1.0`");
        fails_with(&o, "grants no such device");
        assert!(!data.path().join("dev").exists());
    }
}

#[test]
fn a_malformed_manifest_is_refused_at_spawn_naming_line_and_key() {
    let data = data_dir();
    for (text, needles) in [
        (
            "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\ni2c.env = { bus = \"sim:bme280\", addresses = [0x80] }\n",
            &["line 2", "7-bit"][..],
        ),
        (
            "\ngpio.relay = { pin = \"sim:0/17\", mode = [\"output\"] }\n",
            &["line 2", "mode"][..],
        ),
        (
            "serial.log = { port = \"sim:pty\" }\n",
            &["line 1", "serial"][..],
        ),
    ] {
        let o = spawn_with(data.path(), phantom_tests::COUNTER, Some(text));
        for n in needles {
            fails_with(&o, n);
        }
        fails_with(&o, "invalid device manifest");
        assert!(!data.path().join("dev").exists());
    }
}

#[test]
fn a_manifest_is_stored_with_the_process() {
    let data = data_dir();
    let text = "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\n";
    ok(&spawn_with(data.path(), phantom_tests::COUNTER, Some(text)));
    let stored = std::fs::read_to_string(data.path().join("dev/devices.toml")).unwrap();
    assert_eq!(stored, text);
}
