//! `display-paint`: a display guest. It opens the display granted as
//! `screen` at `init` and paints frame 0 of a deterministic picture (a
//! background, a gradient band, rectangles, a border, single pixels), then
//! flushes; frame `n` moves a rectangle and tints the gradient by `n`.
//! Console lines:
//!
//! - `frame N`: paints frame N, flushes, prints `flushed N`;
//! - `animate MS N`: a periodic timer of MS ms; each tick paints the next
//!   frame, flushes and prints `tick <frame>`; after N ticks `animated`;
//! - `draw X Y W H LEN`: `display.draw` with LEN bytes of 0x80; `fill X Y
//!   W H RGB` (RGB in hex); `flush`; `info`; `open NAME`; `close`: each
//!   prints `ok ...` or `error <error>` (numbers may be negative: they are
//!   passed on as their u32 bit pattern, for the bounds tests).
//!
//! It uses the WIT bindings directly (the SDK is for `messaging-process`).

wit_bindgen::generate!({
    path: "../../wit",
    world: "phantom:devices/device-process",
    generate_all,
});

use phantom::devices::display;
use phantom::os::{console, timers};

use std::sync::Mutex;

struct State {
    screen: Option<display::Display>,
    frame: u32,
    timer: Option<u32>,
    ticks_left: u32,
}

static STATE: Mutex<State> = Mutex::new(State {
    screen: None,
    frame: 0,
    timer: None,
    ticks_left: 0,
});

fn say(text: &str) {
    console::write(format!("{text}\n").as_bytes());
}

fn format_name(f: display::PixelFormat) -> &'static str {
    match f {
        display::PixelFormat::Rgb888 => "rgb888",
        display::PixelFormat::Rgb565 => "rgb565",
        display::PixelFormat::Gray8 => "gray8",
    }
}

/// 0xRRGGBB as the display's pixel bytes (the same conversion the host
/// documents for `fill`).
fn encode(format: display::PixelFormat, rgb: u32, out: &mut Vec<u8>) {
    let [_, r, g, b] = rgb.to_be_bytes();
    match format {
        display::PixelFormat::Rgb888 => out.extend_from_slice(&[r, g, b]),
        display::PixelFormat::Rgb565 => {
            let v = (u16::from(r >> 3) << 11) | (u16::from(g >> 2) << 5) | u16::from(b >> 3);
            out.extend_from_slice(&v.to_le_bytes());
        }
        display::PixelFormat::Gray8 => {
            let y = (77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8;
            out.push(y as u8);
        }
    }
}

/// Paints frame `n` and flushes it.
fn paint(screen: display::Display, n: u32) -> Result<(), display::DisplayError> {
    let info = display::info(screen)?;
    let (w, h) = (info.width, info.height);
    // Background.
    display::fill(screen, 0, 0, w, h, 0x10_2030)?;
    // A gradient band across the top quarter: red rises left to right,
    // blue falls, green is the frame's tint. One `draw` of the whole band.
    let band = (h / 4).max(1);
    let mut pixels = Vec::new();
    for y in 0..band {
        // Darker towards the bottom of the band.
        let shade = 255 - y * 96 / band;
        for x in 0..w {
            let r = x * 255 / (w - 1).max(1);
            let g = n.wrapping_mul(37) % 256;
            let b = 255 - r;
            let [r, g, b] = [r, g, b].map(|c| c * shade / 255);
            encode(info.format, (r << 16) | (g << 8) | b, &mut pixels);
        }
    }
    display::draw(screen, 0, 0, w, band, &pixels)?;
    // Rectangles: a red one that moves with the frame, a green one, a
    // white border.
    let x = w / 8 + n.wrapping_mul(4) % (w / 2).max(1);
    display::fill(screen, x, h / 3, (w / 4).max(1), (h / 4).max(1), 0xff_0000)?;
    display::fill(
        screen,
        w / 2,
        h / 2,
        (w / 3).max(1),
        (h / 3).max(1),
        0x00_ff00,
    )?;
    display::fill(screen, 0, 0, w, 1, 0xff_ffff)?;
    display::fill(screen, 0, h - 1, w, 1, 0xff_ffff)?;
    display::fill(screen, 0, 0, 1, h, 0xff_ffff)?;
    display::fill(screen, w - 1, 0, 1, h, 0xff_ffff)?;
    // Single yellow pixels on the diagonal.
    let mut yellow = Vec::new();
    encode(info.format, 0xff_ff00, &mut yellow);
    for k in 1..16 {
        display::draw(screen, k * w / 16, k * h / 16, 1, 1, &yellow)?;
    }
    display::flush(screen)
}

/// A number as its u32 bit pattern (`-1` is 0xffffffff).
fn num(s: &str) -> u32 {
    s.parse::<i64>().map_or(0, |v| v as u32)
}

fn report<T: std::fmt::Debug>(r: Result<T, display::DisplayError>) {
    match r {
        Ok(v) => say(&format!("ok {v:?}")),
        Err(e) => say(&format!("error {}", e.name())),
    }
}

fn command(s: &mut State, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    // Not open: a number the host never handed out, so it says `not-open`.
    let screen = s.screen.unwrap_or(u32::MAX);
    match words.as_slice() {
        ["frame", n] => {
            let n = num(n);
            match paint(screen, n) {
                Ok(()) => {
                    s.frame = n;
                    say(&format!("flushed {n}"));
                }
                Err(e) => say(&format!("error {}", e.name())),
            }
        }
        ["animate", ms, n] => match timers::periodic(u64::from(num(ms)) * 1_000_000) {
            Ok(id) => {
                s.timer = Some(id);
                s.ticks_left = num(n);
                say("ok animating");
            }
            Err(_) => say("error timer"),
        },
        ["draw", x, y, w, h, len] => {
            let pixels = vec![0x80; num(len) as usize];
            report(display::draw(
                screen,
                num(x),
                num(y),
                num(w),
                num(h),
                &pixels,
            ));
        }
        ["fill", x, y, w, h, rgb] => {
            let rgb = u32::from_str_radix(rgb.trim_start_matches("0x"), 16).unwrap_or(0);
            report(display::fill(screen, num(x), num(y), num(w), num(h), rgb));
        }
        ["flush"] => report(display::flush(screen)),
        ["info"] => match display::info(screen) {
            Ok(i) => say(&format!(
                "info {}x{} {}",
                i.width,
                i.height,
                format_name(i.format)
            )),
            Err(e) => say(&format!("error {}", e.name())),
        },
        ["open", name] => match display::open(name) {
            Ok(h) => {
                s.screen = Some(h);
                say(&format!("ok {h}"));
            }
            Err(e) => say(&format!("error {}", e.name())),
        },
        ["close"] => say(&format!("closed {}", display::close(screen))),
        _ => say(&format!("unknown command {line:?}")),
    }
}

struct DisplayPaint;

impl Guest for DisplayPaint {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Status, String> {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        // A missing grant is reported, not fatal: the policy tests spawn it
        // with other manifests.
        match display::open("screen") {
            Ok(h) => {
                s.screen = Some(h);
                if let Err(e) = paint(h, 0) {
                    say(&format!("paint: error {}", e.name()));
                }
            }
            Err(e) => say(&format!("screen: error {}", e.name())),
        }
        Ok(Status::Idle)
    }

    fn handle(event: Event) -> Status {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::ConsoleLine(line) => command(&mut s, &line),
            Event::Timer(id) if Some(id) == s.timer => {
                let Some(screen) = s.screen else {
                    return Status::Idle;
                };
                let n = s.frame + 1;
                match paint(screen, n) {
                    Ok(()) => {
                        s.frame = n;
                        say(&format!("tick {n}"));
                    }
                    Err(e) => say(&format!("error {}", e.name())),
                }
                s.ticks_left = s.ticks_left.saturating_sub(1);
                if s.ticks_left == 0 {
                    timers::cancel(id);
                    s.timer = None;
                    say("animated");
                }
            }
            _ => {}
        }
        Status::Idle
    }

    fn handle_message(_message: phantom::os::messages::Message) -> Status {
        Status::Idle
    }

    fn handle_device_event(_event: phantom::devices::events::DeviceEvent) -> Status {
        Status::Idle
    }
}

export!(DisplayPaint);
