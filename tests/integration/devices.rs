//! Devices (issue 12): grants at spawn. A component importing a
//! `phantom:devices` interface needs a grant for it in its device manifest
//! (`spawn --devices FILE`); a malformed manifest is refused naming its
//! line and key; a manifest is stored with the process.

use std::path::Path;

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

/// A scenario is checked at spawn: times and values a sensor can read,
/// and only pins a grant names (a scripted pin no grant names would never
/// reach the process); pins may be spelled as in the manifest.
#[test]
fn a_scenario_that_could_not_happen_is_refused_at_spawn() {
    let data = data_dir();
    let d = data.path();
    let manifest = d.join("m.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let spawn = |name: &str, scenario: &str| {
        let path = d.join(format!("{name}.toml"));
        std::fs::write(&path, scenario).unwrap();
        run(&[
            "spawn",
            phantom_tests::RELAY_SENSOR,
            "--data",
            s(d),
            "--name",
            name,
            "--devices",
            s(&manifest),
            "--scenario",
            s(&path),
        ])
    };
    for (name, scenario, needle) in [
        (
            "other-pin",
            "gpio = [{ at_s = 1, pin = \"0/9\", level = \"high\" }]",
            "no gpio grant",
        ),
        (
            "bogus-pin",
            "gpio = [{ at_s = 1, pin = \"bogus\", level = \"high\" }]",
            "not `<chip>/<line>`",
        ),
        (
            "nan",
            "temperature = [{ at_s = 0, value = nan }]",
            "outside what the simulated sensor measures",
        ),
        (
            "hot",
            "temperature = [{ at_s = 0, value = 1000.0 }]",
            "outside what the simulated sensor measures",
        ),
        (
            "never",
            "humidity = [{ at_s = inf, value = 50.0 }]",
            "times are seconds from 0",
        ),
    ] {
        let o = spawn(name, scenario);
        fails_with(&o, needle);
        assert!(!d.join(name).exists(), "{name} was spawned");
    }
    ok(&spawn(
        "manifest-spelling",
        "gpio = [{ at_s = 1, pin = \"sim:0/4\", level = \"high\" }]",
    ));
}

/// The grants of the device tests: a relay, a button, the BME280's bus.
const MANIFEST: &str = "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\ngpio.button = { pin = \"sim:0/4\", modes = [\"input\"] }\ni2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\n";

mod in_process {
    use phantom_devices::PinMode;
    use phantom_devices::sim::GpioOp;
    use phantom_runtime::exit::console_text;
    use phantom_runtime::process::{Process, SpawnRequest};
    use phantom_runtime::runtime::{Runtime, RuntimeConfig};

    use super::super::common::*;
    use super::MANIFEST;

    use crate::common::i2c_log;
    use crate::common::say_step as say;

    fn spawn(rt: &Runtime, data: &std::path::Path, scenario: &str) -> Process {
        let (p, out) = spawn_in_process(
            rt,
            phantom_tests::RELAY_SENSOR,
            data,
            "dev",
            MANIFEST,
            Some(scenario),
            &[],
        );
        assert_eq!(out, "", "init opens both");
        p
    }

    fn gpio_log(p: &Process) -> Vec<GpioOp> {
        p.devices()
            .sim()
            .banks()
            .get("0")
            .map(|b| b.log())
            .unwrap_or_default()
    }

    #[test]
    fn a_relay_and_a_bme280_through_the_host() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(
            &rt,
            data.path(),
            "temperature = [{ at_s = 0, value = 21.5 }]",
        );
        assert_eq!(say(&rt, &mut p, "on"), "relay high switches=1\n");
        assert!(p.devices().sim().banks()["0"].pins()[&17].driven);
        assert_eq!(say(&rt, &mut p, "level"), "level high\n");
        assert_eq!(say(&rt, &mut p, "id"), "id 0x60\n");
        assert_eq!(say(&rt, &mut p, "read"), "temp 2150\n");
        assert_eq!(
            gpio_log(&p),
            [
                GpioOp::Configure {
                    line: 17,
                    mode: PinMode::Output
                },
                GpioOp::Drive {
                    line: 17,
                    high: false
                },
                GpioOp::Drive {
                    line: 17,
                    high: true
                },
            ]
        );
    }

    /// Each kind of ungranted access returns the policy error, and neither
    /// the bank nor the bus sees any operation for it.
    #[test]
    fn ungranted_access_is_refused_and_touches_nothing() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path(), "");
        let (gpio_before, i2c_before) = (gpio_log(&p), i2c_log(&p));
        for (line, want) in [
            ("open fan output", "error not-granted\n"),
            ("open relay input", "error mode-not-allowed\n"),
            ("open button output", "error mode-not-allowed\n"),
            ("i2c-open other", "error not-granted\n"),
            ("i2c 77", "error address-not-allowed\n"),
            ("i2c 0", "error address-not-allowed\n"),
        ] {
            assert_eq!(say(&rt, &mut p, line), want, "{line}");
        }
        assert_eq!(gpio_log(&p), gpio_before);
        assert_eq!(i2c_log(&p), i2c_before);
        // Driving a granted input: the open reaches the pin, the write not.
        assert_eq!(
            say(&rt, &mut p, "set-input button"),
            "error mode-not-allowed\n"
        );
        let mut want = gpio_before;
        want.push(GpioOp::Configure {
            line: 4,
            mode: PinMode::Input,
        });
        assert_eq!(gpio_log(&p), want);
    }

    /// After a restore each device is acquired again in the order opened
    /// with what the guest set; reads in the journal's tail are replayed
    /// from the journal, not from the device.
    #[test]
    fn devices_come_back_after_a_restore() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(
            &rt,
            data.path(),
            "temperature = [{ at_s = 0, value = 21.5 }]",
        );
        assert_eq!(say(&rt, &mut p, "open button input"), "ok 3\n");
        assert_eq!(say(&rt, &mut p, "on"), "relay high switches=1\n");
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        // In the journal's tail only: a measurement at 21.5 degrees.
        assert_eq!(say(&rt, &mut p, "read"), "temp 2150\n");
        p.journal_log().unwrap().sync().unwrap();
        drop(p);
        // The world changes while the process is down.
        let dir = data.path().join("dev");
        std::fs::write(
            dir.join("scenario.toml"),
            "temperature = [{ at_s = 0, value = 30.0 }]",
        )
        .unwrap();
        let (mut p, warnings) = Process::restore(&rt, &dir).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            gpio_log(&p),
            [
                GpioOp::Configure {
                    line: 17,
                    mode: PinMode::Output
                },
                GpioOp::Drive {
                    line: 17,
                    high: true
                },
                GpioOp::Configure {
                    line: 4,
                    mode: PinMode::Input
                },
            ],
            "re-acquired in the order opened, levels re-applied"
        );
        // The replayed measurement touched no bus.
        assert!(i2c_log(&p).is_empty(), "{:?}", i2c_log(&p));
        assert_eq!(say(&rt, &mut p, "level"), "level high\n");
        assert_eq!(say(&rt, &mut p, "read"), "temp 3000\n");
        assert_eq!(say(&rt, &mut p, "off"), "relay low switches=2\n");
    }

    /// An input's level is read from the device (the scenario's script)
    /// through the gate: a replay gets the recorded level, not the device's.
    #[test]
    fn input_levels_are_journaled_reads() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let high = "gpio = [{ at_s = 0, pin = \"0/4\", level = \"high\" }]";
        let mut p = spawn(&rt, data.path(), high);
        assert_eq!(say(&rt, &mut p, "open button input"), "ok 3\n");
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        assert_eq!(say(&rt, &mut p, "get 3"), "level high\n");
        assert_eq!(
            say(&rt, &mut p, "get 1"),
            "level low\n",
            "an output: its set level"
        );
        assert_eq!(say(&rt, &mut p, "get 9"), "error not-open\n");
        assert!(gpio_log(&p).contains(&GpioOp::Read {
            line: 4,
            high: true
        }));
        p.journal_log().unwrap().sync().unwrap();
        drop(p);
        let dir = data.path().join("dev");
        std::fs::write(dir.join("scenario.toml"), high.replace("high", "low")).unwrap();
        let (mut p, _) = Process::restore(&rt, &dir).unwrap();
        // The replayed `get 3` read no pin; the live one reads the new level.
        assert!(
            !gpio_log(&p)
                .iter()
                .any(|op| matches!(op, GpioOp::Read { .. }))
        );
        assert_eq!(say(&rt, &mut p, "get 3"), "level low\n");
    }

    /// Runs `p`'s turns until every one of `until` has been printed.
    fn run_until(rt: &Runtime, p: &mut Process, until: &[&str]) -> String {
        turns_until(rt, p, |text| until.iter().all(|u| text.contains(u)))
    }

    /// A watched input's edges arrive at `handle-device-event`, in order,
    /// through the journal (a restore replays them and goes on watching).
    #[test]
    fn watched_edges_arrive_as_events() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let script = "gpio = [{ at_s = 0.2, pin = \"0/4\", level = \"high\" }, { at_s = 0.4, pin = \"0/4\", level = \"low\" }, { at_s = 0.9, pin = \"0/4\", level = \"high\" }]";
        let mut p = spawn(&rt, data.path(), script);
        assert_eq!(say(&rt, &mut p, "watch 1 both"), "error mode-not-allowed\n");
        assert_eq!(say(&rt, &mut p, "open button input"), "ok 3\n");
        assert_eq!(say(&rt, &mut p, "watch 3 both"), "ok watching\n");
        let text = run_until(&rt, &mut p, &["level=low"]);
        assert_eq!(text, "edge pin=3 level=high\nedge pin=3 level=low\n");
        // The edges are in the journal's tail: replayed, not seen again.
        p.journal_log().unwrap().sync().unwrap();
        drop(p);
        let (mut p, _) = Process::restore(&rt, &data.path().join("dev")).unwrap();
        let text = run_until(&rt, &mut p, &["level=high"]);
        assert_eq!(text, "edge pin=3 level=high\n");
        assert_eq!(say(&rt, &mut p, "watch 3 none"), "ok watching\n");
    }

    /// A device that is gone after a restore (here: its grant was taken
    /// out of the stored manifest) is `device-lost` on next use, not a
    /// trap; so is a device unplugged while the process runs.
    #[test]
    fn a_device_gone_is_device_lost_never_a_trap() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut p = spawn(&rt, data.path(), "");
        assert_eq!(say(&rt, &mut p, "on"), "relay high switches=1\n");
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        p.unplug_devices();
        assert_eq!(say(&rt, &mut p, "off"), "error device-lost\n");
        assert_eq!(say(&rt, &mut p, "id"), "error device-lost\n");
        drop(p);
        let dir = data.path().join("dev");
        std::fs::write(
            dir.join("devices.toml"),
            "i2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\n",
        )
        .unwrap();
        let (mut p, warnings) = Process::restore(&rt, &dir).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("`relay` is gone")),
            "{warnings:?}"
        );
        assert_eq!(say(&rt, &mut p, "on"), "error device-lost\n");
        assert_eq!(say(&rt, &mut p, "level"), "error device-lost\n");
        assert_eq!(say(&rt, &mut p, "id"), "id 0x60\n");
    }

    /// Linux grants of a GPIO chip and an I2C bus that do not exist (no
    /// machine that runs the tests has either): the grants are valid, so
    /// the process spawns; every open is `device-lost`, never a trap; the
    /// policy still answers first; each failed open is a warning naming
    /// the grant, the device and the OS error; no simulated device is made.
    #[test]
    fn linux_devices_that_do_not_exist_are_device_lost() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let bytes = std::fs::read(phantom_tests::RELAY_SENSOR).unwrap();
        let request = SpawnRequest {
            name: "dev".into(),
            devices: Some(super::LINUX_MANIFEST.into()),
            ..Default::default()
        };
        let (mut p, out) = Process::spawn(&rt, &bytes, data.path(), request).unwrap();
        assert_eq!(
            console_text(&out),
            b"relay: error device-lost\nenv: error device-lost\n"
        );
        let warnings = p.take_device_warnings();
        for (open, device) in [
            (
                "gpio.open(`relay`)",
                "/dev/phantom-no-such-gpiochip line 17",
            ),
            ("i2c.open(`env`)", "/dev/phantom-no-such-i2c"),
        ] {
            assert!(
                warnings.iter().any(|w| w.contains(open)
                    && w.contains(&format!("{device}: No such file or directory (os error 2)"))),
                "{open}: {warnings:?}"
            );
        }
        for (line, want) in [
            ("open button input", "error device-lost\n"),
            ("open button input-pull-up", "error device-lost\n"),
            ("i2c-open env", "error device-lost\n"),
            ("open relay input", "error mode-not-allowed\n"),
            ("open fan output", "error not-granted\n"),
            ("i2c-open other", "error not-granted\n"),
            ("on", "error no relay\n"),
        ] {
            assert_eq!(say(&rt, &mut p, line), want, "{line}");
        }
        let warnings = p.take_device_warnings();
        assert_eq!(
            warnings.len(),
            3,
            "one per open that reached a device: {warnings:?}"
        );
        assert!(p.devices().sim().banks().is_empty());
        assert!(p.devices().sim().buses().is_empty());
        assert!(p.devices().state.open.is_empty(), "no number handed out");
    }
}

/// `LINUX_MANIFEST`'s devices are named by path; a chip by name under
/// `/dev` is the same grant syntax (`linux:gpiochip0/17`).
const LINUX_MANIFEST: &str = "gpio.relay = { pin = \"linux:/dev/phantom-no-such-gpiochip/17\", modes = [\"output\"] }\ngpio.button = { pin = \"linux:phantom-no-such-gpiochip/4\", modes = [\"input\", \"input-pull-up\"] }\ni2c.env = { bus = \"linux:/dev/phantom-no-such-i2c\", addresses = [0x76] }\n";

/// A real `phantom spawn` and `phantom run` of a process granted Linux
/// devices that do not exist: it runs, the guest gets `device-lost`, and
/// both warn on stderr naming each device and the OS error.
#[test]
fn a_host_warns_of_linux_devices_that_cannot_be_opened() {
    let data = data_dir();
    let o = spawn_with(
        data.path(),
        phantom_tests::RELAY_SENSOR,
        Some(LINUX_MANIFEST),
    );
    ok(&o);
    // `init` opened `relay` and `env`: spawn warns of both.
    assert!(
        stderr(&o).contains("warning: 'dev': gpio.open(`relay`): linux:/dev/phantom-no-such-gpiochip/17 cannot be opened (/dev/phantom-no-such-gpiochip line 17: No such file or directory (os error 2))"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("i2c.open(`env`)"), "{}", stderr(&o));
    let o = feed(data.path(), "dev", "open button input\ni2c-open env\n");
    ok(&o);
    assert_eq!(
        stdout(&o).matches("error device-lost").count(),
        2,
        "{}",
        stdout(&o)
    );
    let err = stderr(&o);
    for want in [
        "gpio.open(`button`): linux:phantom-no-such-gpiochip/4 cannot be opened (/dev/phantom-no-such-gpiochip line 4: No such file or directory (os error 2))",
        "i2c.open(`env`): linux:/dev/phantom-no-such-i2c cannot be opened (/dev/phantom-no-such-i2c: No such file or directory (os error 2))",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

/// A bundle does not grant itself this host's hardware: importing a
/// process whose manifest names `linux:` devices is refused (naming them,
/// the target left as it was) unless `--allow-host-devices`, and then
/// they are named.
#[test]
fn an_import_grants_host_devices_only_when_asked() {
    let data = data_dir();
    ok(&spawn_with(
        data.path(),
        phantom_tests::RELAY_SENSOR,
        Some(LINUX_MANIFEST),
    ));
    let bundle = data.path().join("dev.phb");
    ok(&run(&[
        "export",
        "--data",
        s(data.path()),
        "dev",
        "-o",
        s(&bundle),
    ]));
    let other = data_dir();
    let o = run(&["import", s(&bundle), "--data", s(other.path())]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("this host's own devices")
            && err.contains("gpio.relay.pin = linux:/dev/phantom-no-such-gpiochip/17")
            && err.contains("--allow-host-devices"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
    let o = run(&[
        "import",
        s(&bundle),
        "--data",
        s(other.path()),
        "--allow-host-devices",
    ]);
    ok(&o);
    assert!(
        stderr(&o).contains("is granted this host's devices: "),
        "{}",
        stderr(&o)
    );
}

/// A device lost while a host runs the process: `phantom devices` shows it
/// as lost with why, and the restore warned naming it (here the pin's
/// grant was taken out of `devices.toml` while no host ran).
#[test]
fn phantom_devices_shows_a_lost_device_and_why() {
    let data = data_dir();
    ok(&spawn_with(
        data.path(),
        phantom_tests::RELAY_SENSOR,
        Some(MANIFEST),
    ));
    std::fs::write(
        data.path().join("dev").join("devices.toml"),
        "i2c.env = { bus = \"sim:bme280\", addresses = [0x76] }\n",
    )
    .unwrap();
    let log = data.path().join("stderr.log");
    let mut talk = Conversation::start(data.path(), "dev", Some(&log));
    talk.say("level\nid\n");
    let seen = talk.until(|l| l.contains("id 0x60")).to_vec();
    assert!(
        seen.iter().any(|l| l.ends_with("error device-lost")),
        "{seen:?}"
    );
    let v = devices_json(data.path(), "dev");
    assert_eq!(v["live"], true, "{v}");
    assert_eq!(
        v["lost"]["1"], "its grant was taken out of devices.toml",
        "{v}"
    );
    assert!(v["lost"].get("2").is_none(), "the bus is there: {v}");
    let human = stdout(ok(&run(&["devices", "--data", s(data.path()), "dev"])));
    assert!(
        human.contains(
            "1 relay gpio sim:0/17 output low\n    lost: its grant was taken out of devices.toml"
        ),
        "{human}"
    );
    talk.kill();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(
        err.contains("device `relay` is gone (its grant was taken out of devices.toml)"),
        "{err}"
    );
}

/// Real processes and `kill -9`: the relay's level, the open pins and the
/// bus are the same after the restore, and `phantom devices` shows them.
#[test]
fn devices_survive_kill_9() {
    let data = data_dir();
    let manifest = data.path().join("manifest.toml");
    let scenario = data.path().join("scenario.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    std::fs::write(&scenario, "temperature = [{ at_s = 0, value = 19.25 }]").unwrap();
    ok(&run(&[
        "spawn",
        phantom_tests::RELAY_SENSOR,
        "--data",
        s(data.path()),
        "--name",
        "dev",
        "--devices",
        s(&manifest),
        "--scenario",
        s(&scenario),
    ]));
    let mut talk = Conversation::start(data.path(), "dev", None);
    talk.say("on\nopen button input\nread\n");
    let seen = talk.until(|l| l.contains("temp ")).to_vec();
    assert!(
        seen.iter().any(|l| l.ends_with("relay high switches=1")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l.ends_with("ok 3")), "{seen:?}");
    assert!(seen.iter().any(|l| l.ends_with("temp 1925")), "{seen:?}");
    // `phantom devices` asks the running host: the state now.
    let live = devices_json(data.path(), "dev");
    assert_eq!(live["live"], true, "{live}");
    assert_eq!(live["open"][0]["high"], true, "{live}");
    assert_eq!(live["open"][2]["name"], "button", "{live}");
    // Output is released only once durable: the kill loses none of it.
    talk.kill();
    assert_eq!(devices_json(data.path(), "dev")["live"], false);

    let o = feed(
        data.path(),
        "dev",
        "level\nid\nopen fan output\ni2c 77\ntoggle\n",
    );
    ok(&o);
    let text = stdout(&o);
    for want in [
        "level high",
        "id 0x60",
        "error not-granted",
        "error address-not-allowed",
        "relay low switches=2",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    let v = devices_json(data.path(), "dev");
    let open = v["open"].as_array().unwrap();
    let brief: Vec<(u64, &str, &str)> = open
        .iter()
        .map(|d| {
            (
                d["handle"].as_u64().unwrap(),
                d["name"].as_str().unwrap(),
                d["interface"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            (1, "relay", "gpio"),
            (2, "env", "i2c"),
            (3, "button", "gpio")
        ]
    );
    assert_eq!(open[0]["high"], false, "toggled after the restore");
    assert_eq!(open[0]["mode"], "output");
    assert_eq!(open[1]["bus"], "sim:bme280");
    assert_eq!(v["grants"]["i2c"]["env"]["addresses"][0], 0x76);
    let human = stdout(ok(&run(&["devices", "--data", s(data.path()), "dev"])));
    assert!(
        human.contains("grant gpio.relay pin sim:0/17 modes output"),
        "{human}"
    );
    assert!(
        human.contains("1 relay gpio sim:0/17 output low"),
        "{human}"
    );
}

/// A fork holds the same open devices, so it takes the grants along.
#[test]
fn a_fork_keeps_the_grants() {
    let data = data_dir();
    let manifest = data.path().join("manifest.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    ok(&run(&[
        "spawn",
        phantom_tests::RELAY_SENSOR,
        "--data",
        s(data.path()),
        "--name",
        "dev",
        "--devices",
        s(&manifest),
    ]));
    ok(&feed(data.path(), "dev", "on\n"));
    ok(&run(&[
        "fork",
        "--data",
        s(data.path()),
        "dev",
        "--as",
        "twin",
    ]));
    let o = feed(data.path(), "twin", "level\nid\n");
    ok(&o);
    assert!(stdout(&o).contains("level high"), "{}", stdout(&o));
    assert!(stdout(&o).contains("id 0x60"), "{}", stdout(&o));
}

/// The drive loop looks at watched inputs: a scripted button press arrives
/// at the guest while `phantom run` runs.
#[test]
fn the_drive_loop_delivers_edges() {
    let data = data_dir();
    let manifest = data.path().join("manifest.toml");
    let scenario = data.path().join("scenario.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    std::fs::write(
        &scenario,
        "gpio = [{ at_s = 0.5, pin = \"0/4\", level = \"high\" }]",
    )
    .unwrap();
    ok(&run(&[
        "spawn",
        phantom_tests::RELAY_SENSOR,
        "--data",
        s(data.path()),
        "--name",
        "dev",
        "--devices",
        s(&manifest),
        "--scenario",
        s(&scenario),
    ]));
    let o = run_with_input(
        &[
            "run",
            "--data",
            s(data.path()),
            "--input",
            "dev",
            "--for",
            "2",
        ],
        "open button input\nwatch 3 rising\n",
    );
    ok(&o);
    let text = stdout(&o);
    assert!(text.contains("ok watching"), "{text}");
    assert!(text.contains("edge pin=3 level=high"), "{text}");
    let v = devices_json(data.path(), "dev");
    assert_eq!(v["open"][2]["watch"], "rising", "{v}");
}

/// `phantom-device-sdk` (guest `guests/doorbell`, its demo manifest and
/// scenario of five presses): the bell's edges arrive at
/// `DeviceProcess::on_device_event` across repeated `kill -9`s of the
/// host, each counted once, and the chime pin holds the level the count
/// says. (`c_guests.rs` runs the same for the C SDK.)
#[test]
fn a_device_process_written_with_the_device_sdk_survives_kill_9() {
    doorbell_survives_kill_9(Path::new(phantom_tests::DOORBELL));
}

/// The doorbell of `guests/doorbell` (Rust) or `guests/c-doorbell` (C),
/// spawned with the demo's manifest and scenario, across six kills.
pub fn doorbell_survives_kill_9(component: &Path) {
    let data = data_dir();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/doorbell/demo");
    ok(&run(&[
        "spawn",
        s(component),
        "--data",
        s(data.path()),
        "--name",
        "door",
        "--devices",
        s(&demo.join("devices.toml")),
        "--scenario",
        s(&demo.join("scenario.toml")),
    ]));
    // Process time only passes while a host runs: six runs of about 0.4 s
    // cover the presses (0.3 s to 1.9 s), each ended by SIGKILL.
    let mut rang = Vec::new();
    for i in 0..6u64 {
        let log = data.path().join(format!("run-{i}.log"));
        let mut host = HostChild(
            phantom()
                .args(["run", "--data", s(data.path()), "--no-stdin"])
                .args(["--checkpoint-every", "50ms"])
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(std::time::Duration::from_millis(300 + 37 * i));
        host.kill().unwrap();
        host.wait().unwrap();
        rang.extend(
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix("ring "))
                .map(|l| l.split(" at ").next().unwrap().to_string()),
        );
    }
    // Whatever process time the kills left: the rest of the presses.
    let run_door = |secs: &str, input: &str| {
        run_with_input(
            &[
                "run",
                "--data",
                s(data.path()),
                "--input",
                "door",
                "--for",
                secs,
            ],
            input,
        )
    };
    let o = run_door("2.5", "");
    let out = stdout(ok(&o));
    rang.extend(
        out.lines()
            .filter_map(|l| l.strip_prefix("ring "))
            .map(|l| l.split(" at ").next().unwrap().to_string()),
    );
    // Every ring once (a line in flight at a kill may print twice, the
    // same), in order, with the chime toggling.
    rang.dedup();
    let want: Vec<String> = (1..=5)
        .map(|n| format!("{n} chime {}", if n % 2 == 1 { "high" } else { "low" }))
        .collect();
    assert_eq!(rang, want);
    let o = run_door("0.3", "status\n");
    assert!(
        stdout(ok(&o)).contains("rings 5 chime high"),
        "{}",
        stdout(&o)
    );
    let v = devices_json(data.path(), "door");
    assert_eq!(v["open"][1]["name"], "chime", "{v}");
    assert_eq!(v["open"][1]["high"], true, "{v}");
    assert_eq!(v["open"][0]["watch"], "rising", "{v}");
}
