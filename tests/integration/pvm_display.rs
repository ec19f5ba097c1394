//! Phantom programs draw (issue 12, item 5): the PVM's window, bitmap and
//! tty natives draw onto the display granted to the PVM process, so a
//! Phantom program's windows appear in `phantom display`. The demo program
//! `guests/pvm-display/windows.pasm` is rendered and compared with
//! `tests/golden/pvm-windows.png` (re-bless with `BLESS=1`); the windows
//! survive `kill -9`; the grant the VM needs is named in its error.

use std::path::Path;
use std::time::Duration;

use phantom_devices::display::decode_png;

use super::common::*;
use super::display::check_golden;

const WINDOWS: &str = include_str!("../../guests/pvm-display/windows.pasm");

/// The demo's screen: 860x440 RGB888 (its windows and tty fit).
const SCREEN: &str = "display.screen = { device = \"sim:framebuffer\", width = 860, height = 440, format = \"rgb888\" }\n";

/// Assembles the demo into a class directory under `data`; spawns the PVM
/// as `name` with `manifest`, running `.demo.windows` method `method`
/// (and `extra` arguments before the VM's own).
fn spawn_windows(
    data: &Path,
    name: &str,
    manifest: &str,
    method: &str,
    extra: &[&str],
) -> std::process::Output {
    let classes = data.join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    let bytes = pvm::asm::assemble(WINDOWS).unwrap();
    std::fs::write(classes.join("demo.windows.pc"), bytes).unwrap();
    let devices = data.join(format!("{name}.toml"));
    std::fs::write(&devices, manifest).unwrap();
    let mut args = vec![
        "spawn",
        "pvm",
        "--classes",
        s(&classes),
        "--data",
        s(data),
        "--name",
        name,
        "--devices",
        s(&devices),
        "--",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--class", ".demo.windows", "--method", method]);
    run(&args)
}

/// `phantom display` of `name` (and `extra` options): the PNG's bytes.
fn render_with(data: &Path, name: &str, extra: &[&str]) -> Vec<u8> {
    let png = data.join(format!("{name}.png"));
    let mut args = vec!["display", "--data", s(data), name, "-o", s(&png)];
    args.extend_from_slice(extra);
    ok(&run(&args));
    std::fs::read(&png).unwrap()
}

fn render(data: &Path, name: &str) -> Vec<u8> {
    render_with(data, name, &[])
}

/// RGB of the PNG's pixels in the rectangle whose top-left corner is
/// (`x`, `y`) (PNG rows go down).
fn region(png: &[u8], x: usize, y: usize, w: usize, h: usize) -> Vec<u8> {
    let (pw, _, rgb) = decode_png(png).unwrap();
    let pw = pw as usize;
    (y..y + h)
        .flat_map(|row| rgb[(row * pw + x) * 3..(row * pw + x + w) * 3].to_vec())
        .collect()
}

/// Black pixels in a region.
fn ink(rgb: &[u8]) -> usize {
    rgb.chunks_exact(3).filter(|p| *p == [0, 0, 0]).count()
}

/// The window with its border and title bar: content (20, 100) 400x300 in
/// Phantom's coordinates (y up), on a screen 440 high.
const WINDOW: (usize, usize, usize, usize) = (19, 440 - 100 - 300 - 20 - 1, 402, 322);
/// The tty's content: (440, 100), 400x300.
const TTY: (usize, usize, usize, usize) = (440, 440 - 100 - 300, 400, 300);

#[test]
fn a_phantom_programs_windows_appear_on_its_display() {
    let data = data_dir();
    ok(&spawn_windows(data.path(), "w", SCREEN, "16", &[]));
    // The scene is drawn in one slice and the program ends.
    let o = run(&["run", "--data", s(data.path()), "--no-stdin"]);
    ok(&o);
    let ps = ps_json(data.path());
    assert_eq!(ps[0]["state"], "exited(0)", "{ps}");
    let png = render(data.path(), "w");
    check_golden("pvm-windows.png", &png);
    // Not the desktop alone: the window's pixels and the tty's text.
    let (x, y, w, _) = TTY;
    assert!(ink(&region(&png, x, y, w, 40)) > 100);
}

#[test]
fn the_display_grant_the_vm_draws_on_is_named_in_its_error() {
    // One display of another name is the one meant.
    let data = data_dir();
    let panel = SCREEN.replace("display.screen", "display.panel");
    ok(&spawn_windows(data.path(), "w", &panel, "16", &[]));
    ok(&run(&["run", "--data", s(data.path()), "--no-stdin"]));
    check_golden("pvm-windows.png", &render(data.path(), "w"));
    // Of two, neither `screen`: refused, naming the grant it looks for.
    let data = data_dir();
    let two = format!(
        "{panel}{}",
        SCREEN
            .replace("display.screen", "display.side")
            .replace("sim:framebuffer", "sim:side")
    );
    let o = spawn_windows(data.path(), "w", &two, "16", &[]);
    fails_with(&o, "the display granted as `screen`");
    assert!(!data.path().join("w").exists());
    // `--display NAME` picks one.
    ok(&spawn_windows(
        data.path(),
        "w",
        &two,
        "16",
        &["--display", "side"],
    ));
    ok(&run(&["run", "--data", s(data.path()), "--no-stdin"]));
    let png = render_with(data.path(), "w", &["--device", "side"]);
    check_golden("pvm-windows.png", &png);
    // `--display` with no name.
    let data = data_dir();
    let o = spawn_windows(data.path(), "w", SCREEN, "16", &["--display"]);
    fails_with(&o, "--display needs the name of a display grant");
}

#[test]
fn a_phantom_programs_windows_survive_kill_9() {
    let data = data_dir();
    ok(&spawn_windows(data.path(), "w", SCREEN, "8", &[]));
    let golden =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/pvm-windows.png"))
            .unwrap();
    let (x, y, w, h) = WINDOW;
    let scene = region(&golden, x, y, w, h);
    let (tx, ty, tw, th) = TTY;
    let mut last_tty: Option<Vec<u8>> = None;
    for round in 0..3 {
        let mut host = quiet_host(data.path(), "100ms");
        std::thread::sleep(Duration::from_millis(1300));
        host.0.kill().unwrap();
        host.0.wait().unwrap();
        // What the display shows now was composed by the VM from its
        // memory: after a restore the window it drew once, at the start,
        // is still in every new frame, and the tty has gone on (its lines
        // differ; once full it scrolls, so its ink need not grow).
        let png = render(data.path(), "w");
        assert_eq!(
            region(&png, x, y, w, h),
            scene,
            "round {round}: the window's pixels changed"
        );
        let tty = region(&png, tx, ty, tw, th);
        assert!(ink(&tty) > 11 * 8, "round {round}: the tty shows no text");
        assert!(
            last_tty.as_ref() != Some(&tty),
            "round {round}: the tty did not go on"
        );
        last_tty = Some(tty);
    }
}
