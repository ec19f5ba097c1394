//! Windows, bitmaps and ttys drawn by bytecode, composed on the screen
//! (`PvmProcess::take_frame`): the demo program of the pvm-display guest,
//! pixel by pixel, and the natives' errors.

use pvm::screen::{DESKTOP, TITLE_H};
use pvm::{PvmProcess, SliceOutcome, VmConfig};

use crate::file;

/// The demo program of the pvm-display guest.
const WINDOWS: &str = include_str!("../../../guests/pvm-display/windows.pasm");

fn start(class: &str, text: &str, method: u32) -> PvmProcess {
    let m = method.to_string();
    let args: Vec<String> = ["--class", class, "--method", &m]
        .map(String::from)
        .to_vec();
    PvmProcess::init(&args, vec![file(class, text)], VmConfig::default()).expect("init")
}

fn finish(p: &mut PvmProcess) -> String {
    let mut out = Vec::new();
    let outcome = p.run_to_end(100_000, 1000, &mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(
        matches!(
            outcome,
            SliceOutcome::Finished { .. } | SliceOutcome::Failed { .. }
        ),
        "{outcome:?} {out}"
    );
    out
}

/// A frame, addressed in Phantom's coordinates (y up).
struct Frame {
    w: u32,
    h: u32,
    px: Vec<u32>,
}

impl Frame {
    fn at(&self, x: u32, y: u32) -> u32 {
        self.px[((self.h - 1 - y) * self.w + x) as usize]
    }

    /// How many pixels of colour `c` the rectangle holds.
    fn count(&self, x: u32, y: u32, w: u32, h: u32, c: u32) -> usize {
        let mut n = 0;
        for yy in y..y + h {
            for xx in x..x + w {
                n += usize::from(self.at(xx, yy) == c);
            }
        }
        n
    }
}

fn frame(p: &mut PvmProcess) -> Frame {
    let (w, h) = p.vm().screen.size();
    let px = p.take_frame().expect("something was drawn");
    assert_eq!(px.len(), (w * h) as usize);
    Frame { w, h, px }
}

#[test]
fn the_demo_scene_is_drawn_where_its_natives_say() {
    let mut p = start(".demo.windows", WINDOWS, 16);
    assert!(p.set_screen_size(860, 440));
    let out = finish(&mut p);
    assert!(!out.contains("exception"), "{out}");
    let f = frame(&mut p);
    // Nothing changed since: no new frame.
    assert!(p.take_frame().is_none());
    // The window's content starts at (20, 100).
    let (wx, wy) = (20, 100);
    // fillBox(20, 20, 120, 80) in red: every pixel of it.
    assert_eq!(f.count(wx + 20, wy + 20, 120, 80, 0xFFC0_3030), 120 * 80);
    assert_eq!(f.at(wx + 19, wy + 20), 0xFFF0_F0E0, "the cream background");
    // fillEllipse(160, 20, 120, 80) in blue: its centre, not its corners,
    // about pi/4 of its box.
    assert_eq!(f.at(wx + 220, wy + 60), 0xFF20_60C0);
    assert_ne!(f.at(wx + 160, wy + 20), 0xFF20_60C0);
    let blue = f.count(wx + 160, wy + 20, 120, 80, 0xFF20_60C0) as f64;
    assert!(
        (blue / (120.0 * 80.0) - std::f64::consts::FRAC_PI_4).abs() < 0.02,
        "{blue}"
    );
    // drawBox(10, 10, 380, 280): its left edge, black.
    assert_eq!(f.at(wx + 10, wy + 200), 0xFF00_0000);
    assert_eq!(f.at(wx + 389, wy + 289), 0xFF00_0000);
    // drawLine(10, 150, +370, +100) in green: both ends.
    assert_eq!(f.at(wx + 10, wy + 150), 0xFF00_8000);
    assert_eq!(f.at(wx + 380, wy + 250), 0xFF00_8000);
    // drawString(20, 250, "Hello from Phantom!"): 19 cells of 8 x 16 with
    // some black ink, on the window's background.
    let ink = f.count(wx + 20, wy + 250, 19 * 8, 16, 0xFF00_0000);
    assert!(ink > 19 * 8, "{ink}");
    assert_eq!(f.count(wx + 20 + 19 * 8, wy + 250, 8, 16, 0xFF00_0000), 0);
    // drawImage(300, 200, 4 x 4 checker): the PPM's first row is the top.
    assert_eq!(f.at(wx + 300, wy + 203), 0xFFD0_C090);
    assert_eq!(f.at(wx + 301, wy + 203), 0xFF40_5060);
    assert_eq!(f.at(wx + 300, wy + 200), 0xFF40_5060);
    // The title bar above the content, with the title in it.
    let bar = f.count(wx, wy + 300, 400, TITLE_H as u32, 0xFF3A_6EA5);
    assert!(bar > 400 * 10 && bar < 400 * 20, "{bar}");
    assert!(f.count(wx + 4, wy + 302, 15 * 8, 16, 0xFFFF_FFFF) > 15 * 4);
    // The desktop: the bitmap tiled from (0, 0).
    assert_eq!(f.at(0, 0), 0xFF40_5060);
    assert_eq!(f.at(4, 3), 0xFFD0_C090);
    assert_eq!(f.at(859, 0), f.at(3, 0));
    // The tty at (440, 100): its text on its top line, white below.
    let tty_ink = f.count(440, 100 + 300 - 16, 11 * 8, 16, 0xFF00_0000);
    assert!(tty_ink > 11 * 8, "{tty_ink}");
    assert!(
        f.count(440, 100 + 300 - 32, 11 * 8, 16, 0xFF00_0000) > 0,
        "second line"
    );
    assert_eq!(f.count(440, 100, 400, 200, 0xFFFF_FFFF), 400 * 200);
}

#[test]
fn the_same_program_draws_the_same_frame() {
    let mut a = start(".demo.windows", WINDOWS, 16);
    let mut b = start(".demo.windows", WINDOWS, 16);
    finish(&mut a);
    // Run b in one-instruction slices: a frame depends on what was drawn,
    // never on where slices ended.
    let mut out = Vec::new();
    loop {
        match b.run_slice(0, 1, &mut out) {
            SliceOutcome::Busy => {}
            other => {
                assert!(matches!(other, SliceOutcome::Finished { .. }), "{other:?}");
                break;
            }
        }
    }
    assert_eq!(a.take_frame(), b.take_frame());
}

const DROPPED: &str = r#"
class ".t.dropped" fields 2 methods 17 base ".internal.object"
method "main" 16
    is_drop
    summon_by_name ".internal.window"
    new
    os_dup
    call_32bit 34 0                     ; update: shown
    os_drop
    os_drop                             ; and dropped
    summon_null
    ret
end
"#;

#[test]
fn a_window_nothing_refers_to_disappears_at_the_next_collection() {
    let mut p = start(".t.dropped", DROPPED, 16);
    finish(&mut p);
    let f = frame(&mut p);
    assert_eq!(f.at(150, 150), 0xFFFF_FFFF, "the window's white content");
    p.vm_mut().collect_garbage();
    let f = frame(&mut p);
    assert_eq!(f.at(150, 150), DESKTOP);
    assert!(f.px.iter().all(|&c| c == DESKTOP));
}

fn failing(body: &str) -> String {
    let text = format!(
        "class \".t.bad\" fields 3 methods 17 base \".internal.object\"\n\
         method \"main\" 16\n    is_drop\n\
         \x20   summon_by_name \".internal.window\"\n    new\n    os_save8 1\n\
         \x20   summon_by_name \".internal.bitmap\"\n    new\n    os_save8 2\n\
         {body}\n    summon_null\n    ret\nend\n"
    );
    let mut p = start(".t.bad", &text, 16);
    finish(&mut p)
}

#[test]
fn bad_arguments_throw_phantom_exceptions() {
    // drawImage of something that is not a bitmap.
    let out = failing(
        "    os_load8 1\n    iconst_0\n    i2o\n    iconst_0\n    i2o\n    os_load8 1\n    call_19 3",
    );
    assert!(out.contains("Unhandled exception: not a bitmap"), "{out}");
    // A string that is not a PPM, and a PPM shorter than its header says.
    for data in ["GIF89a", "P6 4 4 255 \\x01\\x02"] {
        let out = failing(&format!(
            "    os_load8 2\n    sconst_bin \"{data}\"\n    call_08 1"
        ));
        assert!(
            out.contains("Unhandled exception: can not parse graphics data"),
            "{out}"
        );
    }
    // setWinSize to nothing, and beyond PVM_MAX_WIN_PIXELS.
    for (x, y) in [(0, 5), (2048, 1024)] {
        let out = failing(&format!(
            "    os_load8 1\n    iconst_32bit {x}\n    i2o\n    iconst_32bit {y}\n    i2o\n    call_1a 2"
        ));
        assert!(out.contains("new win size > PVM_MAX_WIN_PIXELS"), "{out}");
    }
    // A colour that is not an int.
    let out = failing("    os_load8 1\n    sconst_bin \"red\"\n    call_16 1");
    assert!(out.contains("not an integer arg"), "{out}");
}

#[test]
fn set_win_size_resizes_and_scroll_reports_einval() {
    let body = "    os_load8 1\n    iconst_32bit 64\n    i2o\n    iconst_32bit 32\n    i2o\n    call_1a 2\n    os_drop\n\
                \x20   os_load8 0\n    os_load8 1\n    call_10 0\n    call_10 1\n    os_drop\n\
                \x20   os_load8 0\n    os_load8 1\n    iconst_0\n    i2o\n    iconst_0\n    i2o\n    iconst_32bit 65\n    i2o\n    iconst_1\n    i2o\n    iconst_1\n    i2o\n    call_32bit 35 5\n    call_10 1\n    os_drop";
    let out = failing(body);
    // boot.consolePrint(getXSize()), then the EINVAL of a 65-wide scroll.
    assert_eq!(out, "6422", "{out}");
}
