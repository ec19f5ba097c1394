//! Displays (issue 12): `phantom:devices/display` with the simulated
//! framebuffer, through the guest `guests/display-paint`. Grants refused at
//! spawn; ungranted access and bad rectangles are error values that touch
//! nothing; a frame reaches the device only when flushed; after a restore
//! the device shows the last frame flushed again and the replay showed
//! nothing; a display gone is `device-lost`; `phantom display` renders the
//! frame to PNG, compared with goldens in `tests/golden/` (re-bless with
//! `BLESS=1`); the frame is the same after `kill -9` of `phantom run`.

use std::path::{Path, PathBuf};

use phantom_devices::display::decode_png;

use super::common::*;

/// The display: 320x240 RGB888.
const MANIFEST: &str = "display.screen = { device = \"sim:framebuffer\", width = 320, height = 240, format = \"rgb888\" }\n";

fn manifest(format: &str, width: u32, height: u32) -> String {
    format!(
        "display.screen = {{ device = \"sim:framebuffer\", width = {width}, height = {height}, format = \"{format}\" }}\n"
    )
}

/// Spawns `display-paint` as `name` with `manifest`.
fn spawn_paint(data: &Path, name: &str, manifest: &str) -> std::process::Output {
    std::fs::create_dir_all(data).unwrap();
    let path = data.join(format!("{name}.toml"));
    std::fs::write(&path, manifest).unwrap();
    run(&[
        "spawn",
        phantom_tests::DISPLAY_PAINT,
        "--data",
        s(data),
        "--name",
        name,
        "--devices",
        s(&path),
    ])
}

/// `phantom display` of process `name` to a PNG; returns the PNG's bytes
/// and what the command printed.
fn render(data: &Path, name: &str, extra: &[&str]) -> (Vec<u8>, String) {
    let png = data.join(format!("{name}-frame.png"));
    let mut args = vec!["display", "--data", s(data), name, "-o", s(&png)];
    args.extend_from_slice(extra);
    let o = run(&args);
    ok(&o);
    (std::fs::read(&png).unwrap(), stdout(&o))
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// Compares a PNG's pixels with `tests/golden/<name>`; `BLESS=1` writes it.
#[track_caller]
pub(super) fn check_golden(name: &str, png: &[u8]) {
    let path = golden_dir().join(name);
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, png).unwrap();
        return;
    }
    let golden = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (write it with BLESS=1)", path.display()));
    let (gw, gh, want) = decode_png(&golden).unwrap();
    let (w, h, got) = decode_png(png).unwrap();
    assert_eq!((w, h), (gw, gh), "size differs from {}", path.display());
    let differing = want
        .chunks_exact(3)
        .zip(got.chunks_exact(3))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing,
        0,
        "{differing} pixels differ from {} (if the change is intended, re-bless with BLESS=1)",
        path.display()
    );
}

#[test]
fn a_display_import_without_a_grant_is_refused_at_spawn() {
    let data = data_dir();
    for manifest in [
        "",
        "gpio.relay = { pin = \"sim:0/17\", modes = [\"output\"] }\n",
    ] {
        let o = spawn_paint(data.path(), "paint", manifest);
        fails_with(&o, "imports `phantom:devices/display@0.1.0`");
        assert!(!data.path().join("paint").exists());
    }
    // A malformed display grant is refused naming its line and key.
    let o = spawn_paint(
        data.path(),
        "paint",
        "\ndisplay.screen = { device = \"sim:fb\", width = 0, height = 240, format = \"rgb888\" }\n",
    );
    fails_with(&o, "line 2");
    fails_with(&o, "width 0");
    let o = spawn_paint(
        data.path(),
        "paint",
        "display.screen = { device = \"sim:fb\", width = 8, height = 8, format = \"rgb888\", rotate = 90 }\n",
    );
    fails_with(&o, "rotate");
    assert!(!data.path().join("paint").exists());
}

mod in_process {
    use phantom_devices::sim::{FramebufferOp, SimFramebuffer, framebuffer::checksum};
    use phantom_runtime::exit::Output;
    use phantom_runtime::gate::Input;
    use phantom_runtime::process::Process;
    use phantom_runtime::runtime::{Runtime, RuntimeConfig};

    use super::super::common::*;

    /// The process's display number (display-paint opens it first).
    const SCREEN: u32 = 1;

    use crate::common::say_step as say;

    fn spawn(rt: &Runtime, data: &std::path::Path, manifest: &str) -> (Process, String) {
        spawn_in_process(
            rt,
            phantom_tests::DISPLAY_PAINT,
            data,
            "paint",
            manifest,
            None,
            &[],
        )
    }

    fn fb(p: &Process) -> SimFramebuffer {
        p.devices().sim().framebuffers()["framebuffer"].clone()
    }

    fn canvas(p: &Process) -> Vec<u8> {
        p.devices().display_frames(SCREEN).unwrap().canvas.to_vec()
    }

    fn shows(p: &Process) -> Vec<u64> {
        fb(p)
            .log()
            .iter()
            .filter_map(|op| match op {
                FramebufferOp::Show { checksum } => Some(*checksum),
                FramebufferOp::Configure(_) => None,
            })
            .collect()
    }

    /// What the guest draws reaches the device only with `flush`; the
    /// device's file holds the frame it shows.
    #[test]
    fn a_frame_reaches_the_display_when_flushed() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let (mut p, out) = spawn(&rt, data.path(), super::MANIFEST);
        assert_eq!(out, "", "init opens and paints");
        let frame0 = fb(&p).frame().unwrap();
        assert_eq!(*frame0, canvas(&p), "init flushed what it drew");
        assert_eq!(say(&rt, &mut p, "info"), "info 320x240 rgb888\n");
        assert_eq!(say(&rt, &mut p, "fill 0 0 10 10 abcdef"), "ok ()\n");
        assert_eq!(&canvas(&p)[..3], [0xab, 0xcd, 0xef]);
        assert_eq!(fb(&p).frame().unwrap(), frame0, "not flushed: not shown");
        assert_eq!(say(&rt, &mut p, "flush"), "ok ()\n");
        assert_eq!(&fb(&p).frame().unwrap()[..3], [0xab, 0xcd, 0xef]);
        // The device's file: the process directory was renamed after
        // init's flush, and the file moved with it.
        let file = data.path().join("paint/sim-framebuffer.fb");
        let f =
            phantom_devices::display::FrameFile::decode(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(f.pixels, canvas(&p));
        assert_eq!(shows(&p).len(), 2);
    }

    /// Every refused display operation is an error value and changes
    /// neither the canvas nor the device.
    #[test]
    fn ungranted_access_and_bad_rectangles_touch_nothing() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let two = format!(
            "{}display.panel = {{ device = \"sim:panel\", width = 8, height = 8, format = \"gray8\" }}\n",
            super::MANIFEST
        );
        let (mut p, _) = spawn(&rt, data.path(), &two);
        let (log, pixels) = (fb(&p).log(), canvas(&p));
        for (line, want) in [
            ("open tv", "error not-granted\n"),
            ("open screen", "error already-open\n"),
            ("draw 0 0 321 1 963", "error out-of-bounds\n"),
            ("draw -1 0 1 1 3", "error out-of-bounds\n"),
            ("draw 0 -1 1 1 3", "error out-of-bounds\n"),
            ("draw 319 0 2 1 6", "error out-of-bounds\n"),
            ("draw 0 0 2 2 11", "error bad-length\n"),
            ("draw 0 0 2 2 13", "error bad-length\n"),
            ("draw 0 0 0 5 3", "error bad-length\n"),
            ("draw 0 0 320 240 0", "error bad-length\n"),
            ("fill 0 0 4294967295 1 ff", "error out-of-bounds\n"),
            ("fill 300 0 21 1 ff", "error out-of-bounds\n"),
            ("fill 0 240 1 1 ff", "error out-of-bounds\n"),
            ("fill 0 0 -1 -1 ff", "error out-of-bounds\n"),
        ] {
            assert_eq!(say(&rt, &mut p, line), want, "{line}");
        }
        assert_eq!(canvas(&p), pixels, "nothing drawn");
        assert_eq!(fb(&p).log(), log, "nothing reached the display");
        assert!(!p.devices().sim().framebuffers().contains_key("panel"));
        // Empty rectangles draw nothing, successfully.
        assert_eq!(say(&rt, &mut p, "draw 320 240 0 0 0"), "ok ()\n");
        assert_eq!(say(&rt, &mut p, "fill 0 0 0 0 ff"), "ok ()\n");
        assert_eq!(canvas(&p), pixels);
        // Another number is not open; a closed one neither.
        assert_eq!(say(&rt, &mut p, "close"), "closed true\n");
        assert_eq!(say(&rt, &mut p, "close"), "closed false\n");
        assert_eq!(say(&rt, &mut p, "flush"), "error not-open\n");
        assert_eq!(say(&rt, &mut p, "info"), "error not-open\n");
        assert_eq!(fb(&p).log(), log);
        // Closed, it can be opened again: a new number, a black canvas,
        // the display still showing the old frame until a flush.
        assert_eq!(say(&rt, &mut p, "open screen"), "ok 2\n");
        assert_eq!(say(&rt, &mut p, "info"), "info 320x240 rgb888\n");
        assert_eq!(fb(&p).frame().as_deref(), Some(&pixels));
        assert_eq!(say(&rt, &mut p, "flush"), "ok ()\n");
        assert!(fb(&p).frame().unwrap().iter().all(|&b| b == 0));
    }

    /// After a restore the display shows the last frame flushed (drawn
    /// again by the replay of the journal's tail, which showed nothing on
    /// the device), and the canvas is what the guest drew.
    #[test]
    fn the_frame_comes_back_after_a_restore() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let (mut p, _) = spawn(&rt, data.path(), super::MANIFEST);
        assert_eq!(say(&rt, &mut p, "frame 2"), "flushed 2\n");
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        // In the journal's tail only: frame 3, flushed, then a drawing
        // not flushed.
        assert_eq!(say(&rt, &mut p, "frame 3"), "flushed 3\n");
        let frame3 = fb(&p).frame().unwrap();
        assert_eq!(say(&rt, &mut p, "fill 0 0 4 4 ff0000"), "ok ()\n");
        let drawn = canvas(&p);
        p.journal_log().unwrap().sync().unwrap();
        drop(p);
        // The display loses its contents while the host is down.
        let file = data.path().join("paint/sim-framebuffer.fb");
        std::fs::remove_file(&file).unwrap();
        let (mut p, warnings) = Process::restore(&rt, &data.path().join("paint")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(fb(&p).frame().unwrap(), frame3);
        assert_eq!(
            shows(&p),
            [checksum(&frame3)],
            "shown once, by the restore; the replay showed nothing"
        );
        assert_eq!(canvas(&p), drawn, "the canvas is the process's state");
        let f =
            phantom_devices::display::FrameFile::decode(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(f.pixels, *frame3);
        assert_eq!(say(&rt, &mut p, "flush"), "ok ()\n");
        assert_eq!(*fb(&p).frame().unwrap(), drawn);
    }

    /// A display gone is `device-lost` on its next flush, never a trap:
    /// unplugged while running, or after a restore whose grant was taken
    /// out or changed.
    #[test]
    fn a_display_gone_is_device_lost_never_a_trap() {
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let (mut p, _) = spawn(&rt, data.path(), super::MANIFEST);
        p.checkpoint(&rt).unwrap();
        p.wait_for_write().unwrap().unwrap();
        p.unplug_devices();
        assert_eq!(say(&rt, &mut p, "flush"), "error device-lost\n");
        assert_eq!(say(&rt, &mut p, "frame 1"), "error device-lost\n");
        // Drawing is on the canvas, which is still there.
        assert_eq!(say(&rt, &mut p, "fill 0 0 1 1 ff"), "ok ()\n");
        drop(p);
        let dir = data.path().join("paint");
        for (manifest, what) in [
            (String::new(), "taken out"),
            (super::manifest("rgb888", 160, 120), "resized"),
            (super::manifest("rgb565", 320, 240), "another format"),
            (
                super::MANIFEST.replace("sim:framebuffer", "linux:/dev/fb0"),
                "a Linux display (no backend yet)",
            ),
        ] {
            std::fs::write(dir.join("devices.toml"), &manifest).unwrap();
            let (mut p, warnings) = Process::restore(&rt, &dir).unwrap();
            assert!(
                warnings.iter().any(|w| w.contains("`screen` is gone")),
                "{what}: {warnings:?}"
            );
            assert_eq!(say(&rt, &mut p, "flush"), "error device-lost\n", "{what}");
            assert_eq!(say(&rt, &mut p, "info"), "info 320x240 rgb888\n", "{what}");
        }
        std::fs::write(dir.join("devices.toml"), super::MANIFEST).unwrap();
        let (mut p, warnings) = Process::restore(&rt, &dir).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(say(&rt, &mut p, "frame 1"), "flushed 1\n");
    }

    /// Of several frames flushed before they are released, only the newest
    /// keeps its pixels: the older ones show nothing when released, and
    /// the host holds one unreleased frame per display.
    #[test]
    fn only_the_newest_unreleased_frame_keeps_its_pixels() {
        use phantom_runtime::devices::DeviceEffect;
        let data = data_dir();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let (mut p, _) = spawn(&rt, data.path(), super::MANIFEST);
        for k in 1..=3 {
            p.offer(Input::ConsoleLine(format!("frame {k}"))).unwrap();
            p.step_held(&rt).unwrap().unwrap();
        }
        assert_eq!(p.held_effects(), 6, "three frames and three lines held");
        p.journal_log().unwrap().sync().unwrap();
        let frames: Vec<(u64, bool)> = p
            .take_ready()
            .into_iter()
            .filter_map(|h| match h.output {
                Output::Device(DeviceEffect::DisplayFrame { flush, frame, .. }) => {
                    Some((flush, frame.is_some()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(frames, [(2, false), (3, false), (4, true)]);
    }
}

/// `phantom display` renders the frame to PNG: the same pixels as the
/// goldens, in each pixel format.
#[test]
fn the_display_renders_to_the_golden_png() {
    let data = data_dir();
    for (name, manifest, golden) in [
        ("rgb888", MANIFEST.to_string(), "display-rgb888.png"),
        ("rgb565", manifest("rgb565", 96, 64), "display-rgb565.png"),
        ("gray8", manifest("gray8", 96, 64), "display-gray8.png"),
    ] {
        ok(&spawn_paint(data.path(), name, &manifest));
        let (png, said) = render(data.path(), name, &[]);
        assert!(said.contains("display screen"), "{said}");
        assert!(said.ends_with("live\n"), "{said}");
        check_golden(golden, &png);
        // The newest checkpoint (spawn's) holds the same frame.
        let (from_checkpoint, said) = render(data.path(), name, &["--checkpoint"]);
        assert!(said.contains("checkpoint 1"), "{said}");
        assert_eq!(decode_png(&from_checkpoint), decode_png(&png));
    }
}

/// What `phantom display` says when there is nothing to render.
#[test]
fn phantom_display_names_what_is_missing() {
    let data = data_dir();
    let png = data.path().join("x.png");
    let display = |name: &str, extra: &[&str]| {
        let mut args = vec!["display", "--data", s(data.path()), name, "-o", s(&png)];
        args.extend_from_slice(extra);
        run(&args)
    };
    // (In a data directory of its own: the counter's timer would keep the
    // `--until-idle` runs below from ever being idle.)
    let other = data_dir();
    spawn(other.path(), phantom_tests::COUNTER, "plain", &[]);
    let o = run(&["display", "--data", s(other.path()), "plain", "-o", s(&png)]);
    fails_with(&o, "no display granted");
    fails_with(&display("nobody", &[]), "nobody");
    // Granted as `panel` only: display-paint opens `screen`, which fails.
    let panel =
        "display.panel = { device = \"sim:panel\", width = 8, height = 8, format = \"gray8\" }\n";
    ok(&spawn_paint(data.path(), "panel", panel));
    fails_with(&display("panel", &[]), "`panel` is not open at checkpoint");
    fails_with(
        &display("panel", &["--device", "screen"]),
        "no display granted as `screen`",
    );
    // Opened but never flushed.
    ok(&feed(data.path(), "panel", "open panel\n"));
    fails_with(&display("panel", &[]), "never flushed");
    // Two displays: say which.
    let two = format!("{MANIFEST}{panel}");
    ok(&spawn_paint(data.path(), "two", &two));
    fails_with(&display("two", &[]), "--device");
    let (png, said) = render(data.path(), "two", &["--device", "screen"]);
    assert!(said.contains("display screen (320x240 rgb888)"), "{said}");
    check_golden("display-rgb888.png", &png);
    assert!(!png.is_empty());
    // `phantom devices` lists the grants and the open display.
    let human = stdout(ok(&run(&["devices", "--data", s(data.path()), "two"])));
    assert!(
        human.contains("grant display.screen device sim:framebuffer 320x240 rgb888"),
        "{human}"
    );
    assert!(
        human.contains("1 screen display sim:framebuffer 320x240 rgb888"),
        "{human}"
    );
}

/// Real processes and `kill -9`: the frame the display shows is the same
/// after a restart, even if the display lost it meanwhile (its file
/// deleted), and equals a fresh process's rendering of the same frame.
#[test]
fn the_frame_survives_kill_9() {
    let data = data_dir();
    ok(&spawn_paint(data.path(), "paint", MANIFEST));
    let mut talk = Conversation::start(data.path(), "paint", None);
    // Five frames on a timer.
    talk.say("animate 20 5\n");
    let seen = talk.until(|l| l.ends_with("animated")).to_vec();
    assert!(seen.iter().any(|l| l.ends_with("tick 5")), "{seen:?}");
    // Output is released once durable, after the frame of the same call.
    let (before, said) = render(data.path(), "paint", &[]);
    assert!(said.ends_with("live\n"), "{said}");
    talk.kill();
    // The display loses what it showed.
    std::fs::remove_file(data.path().join("paint/sim-framebuffer.fb")).unwrap();
    ok(&run_for(data.path(), "1"));
    let (after, said) = render(data.path(), "paint", &[]);
    assert!(said.ends_with("live\n"), "{said}");
    assert_eq!(decode_png(&after), decode_png(&before));
    let (from_checkpoint, _) = render(data.path(), "paint", &["--checkpoint"]);
    assert_eq!(decode_png(&from_checkpoint), decode_png(&before));
    // A fresh process painting frame 5 shows the same pixels.
    ok(&spawn_paint(data.path(), "fresh", MANIFEST));
    ok(&feed(data.path(), "fresh", "frame 5\n"));
    let (fresh, _) = render(data.path(), "fresh", &[]);
    assert_eq!(decode_png(&fresh), decode_png(&before));
    let text = stdout(ok(&feed(data.path(), "paint", "info\n")));
    assert!(text.contains("info 320x240 rgb888"), "{text}");
}
