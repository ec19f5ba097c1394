//! Windows, bitmaps and the screen they are composed on (spec §3.6:
//! `.internal.window` 16..37, `.internal.bitmap` 8, `boot.20`
//! setScreenBackground; `.internal.io.tty` windows draw their text too).
//!
//! ```text
//!   window / tty natives ─► Canvas (the window's own pixels, in its heap object)
//!   update, autoupdate, move, title, putws ─► Screen::dirty
//!   PvmProcess::take_frame ─► Screen::compose: desktop colour, background
//!        bitmap (tiled), then every live window and tty in creation order,
//!        each decorated (border, title bar) ─► ARGB rows, top row first
//! ```
//!
//! Coordinates are Phantom's: (0, 0) is the bottom-left corner and y grows
//! upwards, in windows and on the screen; a window's position is that of
//! its content's bottom-left corner. Colours are `0xAARRGGBB` ints; alpha is
//! ignored (windows are opaque). Everything here is plain data in the
//! heap, so a checkpoint of linear memory keeps every window's pixels.

use crate::heap::{Heap, Kind, Ref};

/// A window's default size and position (`PVM_DEF_TTY_XSIZE`/`YSIZE`, and
/// `drv_video_window_init(.., 100, 100, ..)` in the C VM).
pub const DEFAULT_WIDTH: u32 = 400;
/// See [`DEFAULT_WIDTH`].
pub const DEFAULT_HEIGHT: u32 = 300;
/// See [`DEFAULT_WIDTH`].
pub const DEFAULT_POS: i32 = 100;
/// Largest window (`PVM_MAX_WIN_PIXELS`).
pub const MAX_WINDOW_PIXELS: u64 = 1024 * 1024;
/// Longest window title kept, in bytes (`PVM_MAX_TTY_TITLE` - 1).
pub const MAX_TITLE: usize = 127;
/// The screen when the host gives no display.
pub const DEFAULT_SCREEN: (u32, u32) = (1024, 768);
/// Largest screen the VM composes.
pub const MAX_SCREEN_PIXELS: u64 = 4096 * 4096;

/// The text cell: 8x8 glyphs with every row doubled.
pub const FONT_W: i64 = 8;
/// See [`FONT_W`].
pub const FONT_H: i64 = 16;

/// Opaque black and white (`COLOR_BLACK`, `COLOR_WHITE`).
pub const BLACK: u32 = 0xFF00_0000;
/// See [`BLACK`].
pub const WHITE: u32 = 0xFFFF_FFFF;
/// The desktop under every window.
pub const DESKTOP: u32 = 0xFF30_5070;
/// Window decoration: border, title bar, title text.
const BORDER: u32 = 0xFF20_2020;
const TITLE_BAR: u32 = 0xFF3A_6EA5;
const TITLE_TEXT: u32 = WHITE;
/// Height of the title bar above a window's content.
pub const TITLE_H: i64 = 20;

/// Pixels, row 0 at the bottom.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
}

impl Canvas {
    /// A canvas of `width` x `height` filled with `color`.
    pub fn new(width: u32, height: u32, color: u32) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![color; width as usize * height as usize],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixel at (`x`, `y`), if inside.
    pub fn pixel(&self, x: i64, y: i64) -> Option<u32> {
        self.index(x, y).map(|i| self.pixels[i])
    }

    /// All pixels, bottom row first.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        ((0..w).contains(&x) && (0..h).contains(&y)).then(|| (y * w + x) as usize)
    }

    /// Sets one pixel; outside the canvas nothing happens.
    pub fn plot(&mut self, x: i64, y: i64, c: u32) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i] = c;
        }
    }

    /// Fills the whole canvas.
    pub fn fill(&mut self, c: u32) {
        self.pixels.fill(c);
    }

    /// Fills the rectangle with its bottom-left corner at (`x`, `y`),
    /// clipped to the canvas.
    pub fn fill_box(&mut self, x: i64, y: i64, w: i64, h: i64, c: u32) {
        let x0 = x.max(0);
        let y0 = y.max(0);
        let x1 = x.saturating_add(w).min(i64::from(self.width));
        let y1 = y.saturating_add(h).min(i64::from(self.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let stride = self.width as usize;
        for row in y0..y1 {
            let start = row as usize * stride;
            self.pixels[start + x0 as usize..start + x1 as usize].fill(c);
        }
    }

    /// The outline of a rectangle (`w_draw_box`: four lines).
    pub fn draw_box(&mut self, x: i64, y: i64, w: i64, h: i64, c: u32) {
        let (r, t) = (x + w - 1, y + h - 1);
        self.draw_line(x, y, r, y, c);
        self.draw_line(x, t, r, t, c);
        self.draw_line(x, y, x, t, c);
        self.draw_line(r, y, r, t, c);
    }

    /// A line from (`x0`, `y0`) to (`x1`, `y1`), both ends included,
    /// clipped to the canvas first (so a line of any length costs at most
    /// the canvas's width plus height).
    pub fn draw_line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: u32) {
        let Some((x0, y0, x1, y1)) = self.clip_line(x0, y0, x1, y1) else {
            return;
        };
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = ((x1 - x0).signum(), (y1 - y0).signum());
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.plot(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Liang-Barsky clipping of a segment to the canvas; `None` if it
    /// misses. Segments inside are returned unchanged.
    fn clip_line(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Option<(i64, i64, i64, i64)> {
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        if w == 0 || h == 0 {
            return None;
        }
        let inside = |x: i64, y: i64| (0..w).contains(&x) && (0..h).contains(&y);
        if inside(x0, y0) && inside(x1, y1) {
            return Some((x0, y0, x1, y1));
        }
        let (fx0, fy0) = (x0 as f64, y0 as f64);
        let (dx, dy) = ((x1 - x0) as f64, (y1 - y0) as f64);
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        for (p, q) in [
            (-dx, fx0),
            (dx, (w - 1) as f64 - fx0),
            (-dy, fy0),
            (dy, (h - 1) as f64 - fy0),
        ] {
            if p == 0.0 {
                if q < 0.0 {
                    return None;
                }
            } else {
                let r = q / p;
                if p < 0.0 {
                    t0 = t0.max(r);
                } else {
                    t1 = t1.min(r);
                }
            }
        }
        if t0 > t1 {
            return None;
        }
        let at = |t: f64| ((fx0 + t * dx).round() as i64, (fy0 + t * dy).round() as i64);
        let (a, b) = (at(t0), at(t1));
        Some((a.0, a.1, b.0, b.1))
    }

    /// The ellipse inscribed in the rectangle at (`x`, `y`) of `w` x `h`,
    /// filled row by row.
    pub fn fill_ellipse(&mut self, x: i64, y: i64, w: i64, h: i64, c: u32) {
        if w <= 0 || h <= 0 {
            return;
        }
        let (rx, ry) = (w as f64 / 2.0, h as f64 / 2.0);
        let cx = x as f64 + rx;
        let rows = y.max(0)..y.saturating_add(h).min(i64::from(self.height));
        for row in rows {
            let v = ((row - y) as f64 + 0.5 - ry) / ry;
            let half = rx * (1.0 - v * v).max(0.0).sqrt();
            // Mirror images: left + right is twice the centre.
            let left = (cx - half).round() as i64;
            let right = 2 * x + w - left;
            self.fill_box(left, row, right - left, 1, c);
        }
    }

    /// Copies the `w` x `h` part of `src` at (`sx`, `sy`) to (`dx`, `dy`),
    /// clipped to both canvases (`bitmap2bitmap`).
    #[allow(clippy::too_many_arguments)]
    pub fn blit(&mut self, src: &Canvas, dx: i64, dy: i64, sx: i64, sy: i64, w: i64, h: i64) {
        // Clip the source rectangle to the source, moving the destination
        // with it, then to the destination.
        let (mut dx, mut dy, mut sx, mut sy, mut w, mut h) = (dx, dy, sx, sy, w, h);
        for (s, d, len, lim) in [
            (&mut sx, &mut dx, &mut w, i64::from(src.width)),
            (&mut sy, &mut dy, &mut h, i64::from(src.height)),
        ] {
            if *s < 0 {
                *d -= *s;
                *len += *s;
                *s = 0;
            }
            *len = (*len).min(lim - *s);
        }
        for (d, s, len, lim) in [
            (&mut dx, &mut sx, &mut w, i64::from(self.width)),
            (&mut dy, &mut sy, &mut h, i64::from(self.height)),
        ] {
            if *d < 0 {
                *s -= *d;
                *len += *d;
                *d = 0;
            }
            *len = (*len).min(lim - *d);
        }
        if w <= 0 || h <= 0 {
            return;
        }
        let (ss, ds) = (src.width as usize, self.width as usize);
        for row in 0..h as usize {
            let from = (sy as usize + row) * ss + sx as usize;
            let to = (dy as usize + row) * ds + dx as usize;
            self.pixels[to..to + w as usize].copy_from_slice(&src.pixels[from..from + w as usize]);
        }
    }

    /// Moves the `w` x `h` rectangle at (`x`, `y`) right by `s` pixels
    /// (left if negative), filling what is uncovered with `bg`. False (and
    /// nothing changed) unless the rectangle is inside the canvas
    /// (`w_scroll_hor`'s EINVAL).
    pub fn scroll_hor(&mut self, x: i64, y: i64, w: i64, h: i64, s: i64, bg: u32) -> bool {
        if x < 0
            || y < 0
            || w < 0
            || h < 0
            || x + w > i64::from(self.width)
            || y + h > i64::from(self.height)
        {
            return false;
        }
        let stride = self.width as usize;
        for row in y..y + h {
            let start = row as usize * stride + x as usize;
            let line = &mut self.pixels[start..start + w as usize];
            let n = s.unsigned_abs().min(w as u64) as usize;
            if s >= 0 {
                line.rotate_right(n);
                line[..n].fill(bg);
            } else {
                line.rotate_left(n);
                let len = line.len();
                line[len - n..].fill(bg);
            }
        }
        true
    }

    /// Moves everything up by `n` rows, filling the bottom with `bg`.
    pub fn scroll_up(&mut self, n: i64, bg: u32) {
        let stride = self.width as usize;
        let n = (n.clamp(0, i64::from(self.height)) as usize) * stride;
        let len = self.pixels.len();
        self.pixels.copy_within(0..len - n, n);
        self.pixels[..n].fill(bg);
    }

    /// One glyph cell with its bottom-left corner at (`x`, `y`).
    pub fn glyph(&mut self, x: i64, y: i64, ch: u8, fg: u32, bg: u32) {
        let rows = glyph_rows(ch);
        for (r, bits) in rows.iter().enumerate() {
            // Font rows go top to bottom; each is drawn twice.
            for dup in 0..2 {
                let py = y + FONT_H - 1 - (2 * r as i64 + dup);
                for col in 0..FONT_W {
                    let on = bits & (1 << col) != 0;
                    self.plot(x + col, py, if on { fg } else { bg });
                }
            }
        }
    }

    /// Draws `text` like a terminal (`w_font_tty_string`): from the cell at
    /// (`x`, `y`), `\n` steps a line down (scrolling the canvas up at the
    /// bottom), `\r` returns, `\t` goes to the next multiple of 8, ANSI
    /// escapes (`ESC [ n m`) are skipped, and a line that reaches the right
    /// edge wraps. Leaves the cursor after the text.
    pub fn text(&mut self, x: &mut i64, y: &mut i64, text: &[u8], fg: u32, bg: u32) {
        let mut i = 0;
        while i < text.len() {
            let ch = text[i];
            i += 1;
            match ch {
                b'\n' => self.newline(x, y, bg),
                b'\r' => *x = 0,
                b'\t' => {
                    *x += 1;
                    while *x % 8 != 0 {
                        *x += 1;
                    }
                }
                0x1B => {
                    if text.get(i) == Some(&b'[') {
                        i += 1;
                        while i < text.len() && text[i].is_ascii_digit() {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                _ => {
                    if *x + FONT_W > i64::from(self.width) && *x > 0 {
                        self.newline(x, y, bg);
                    }
                    self.glyph(*x, *y, ch, fg, bg);
                    *x += FONT_W;
                }
            }
        }
    }

    fn newline(&mut self, x: &mut i64, y: &mut i64, bg: u32) {
        if *y < FONT_H {
            self.scroll_up(FONT_H, bg);
        } else {
            *y -= FONT_H;
        }
        *x = 0;
    }

    /// Resizes to `w` x `h`, keeping the bottom-left part that still fits
    /// and filling the rest with `bg`.
    pub fn resize(&mut self, w: u32, h: u32, bg: u32) {
        let mut next = Canvas::new(w, h, bg);
        next.blit(
            self,
            0,
            0,
            0,
            0,
            i64::from(self.width),
            i64::from(self.height),
        );
        *self = next;
    }
}

/// The 8 rows of a character's glyph (bit 0 is the leftmost column);
/// bytes outside ASCII show as `?`.
fn glyph_rows(ch: u8) -> [u8; 8] {
    let ch = if ch < 0x80 { ch } else { b'?' };
    font8x8::legacy::BASIC_LEGACY[usize::from(ch)]
}

/// A `.internal.window`.
#[derive(Debug, Clone)]
pub struct WindowState {
    /// The window's pixels.
    pub canvas: Canvas,
    /// Position of the content's bottom-left corner on the screen.
    pub x: i32,
    /// See [`WindowState::x`].
    pub y: i32,
    /// Colour of lines, boxes and text.
    pub fg: u32,
    /// Colour of `clear` and of text backgrounds.
    pub bg: u32,
    /// Shown in the title bar.
    pub title: Vec<u8>,
    /// Whether `clear`, `drawString` and the image draws update the screen
    /// themselves (default on, as in the C VM).
    pub autoupdate: bool,
}

impl Default for WindowState {
    fn default() -> Self {
        WindowState {
            canvas: Canvas::new(DEFAULT_WIDTH, DEFAULT_HEIGHT, WHITE),
            x: DEFAULT_POS,
            y: DEFAULT_POS,
            fg: BLACK,
            bg: WHITE,
            title: b"Window".to_vec(),
            autoupdate: true,
        }
    }
}

/// Parses a binary PPM (`P6`, what `bitmap.loadFromString` takes, as in
/// `drv_video_string2bmp`) into a canvas, row 0 at the bottom. `None` if
/// the header is malformed, the size is zero or above `max_pixels`, or the
/// data is shorter than the header says.
pub fn parse_ppm(data: &[u8], max_pixels: u64) -> Option<Canvas> {
    let rest = data.strip_prefix(b"P6")?;
    let mut pos = 0usize;
    let mut fields = [0u64; 3];
    for f in &mut fields {
        // Whitespace and `#` comments before each number.
        loop {
            match rest.get(pos)? {
                b' ' | b'\t' | b'\n' | b'\r' => pos += 1,
                b'#' => {
                    while !matches!(rest.get(pos)?, b'\n' | b'\r') {
                        pos += 1;
                    }
                }
                _ => break,
            }
        }
        let start = pos;
        while rest.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
            if pos - start > 9 {
                return None;
            }
        }
        if pos == start {
            return None;
        }
        *f = std::str::from_utf8(&rest[start..pos]).ok()?.parse().ok()?;
    }
    // Exactly one whitespace byte ends the header.
    if !matches!(rest.get(pos)?, b' ' | b'\t' | b'\n' | b'\r') {
        return None;
    }
    let body = &rest[pos + 1..];
    let [w, h, maxval] = fields;
    if w == 0 || h == 0 || maxval == 0 || maxval > 65535 || w * h > max_pixels {
        return None;
    }
    let bytes_per = if maxval > 255 { 2 } else { 1 };
    let row_bytes = w as usize * 3 * bytes_per;
    if body.len() < row_bytes * h as usize {
        return None;
    }
    let mut canvas = Canvas::new(w as u32, h as u32, BLACK);
    for (row, chunk) in body.chunks_exact(row_bytes).take(h as usize).enumerate() {
        // The file's first row is the top: canvas row h - 1.
        let y = h as usize - 1 - row;
        for (col, px) in chunk.chunks_exact(3 * bytes_per).enumerate() {
            // Of a two-byte sample, the high (first) byte.
            let (r, g, b) = (px[0], px[bytes_per], px[2 * bytes_per]);
            canvas.pixels[y * w as usize + col] =
                0xFF00_0000 | u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
        }
    }
    Some(canvas)
}

/// The screen: its size, the background bitmap, and the windows shown
/// (weakly: a window the program drops disappears at the next collection,
/// as the C VM's finaliser destroys it).
#[derive(Debug, Clone)]
pub struct Screen {
    width: u32,
    height: u32,
    /// `boot.setScreenBackground`'s bitmap, tiled over the desktop.
    pub background: Option<Canvas>,
    /// Windows and ttys in creation order (the last is on top).
    windows: Vec<Ref>,
    /// Something shown changed since the last [`Screen::compose`].
    pub dirty: bool,
}

impl Default for Screen {
    fn default() -> Self {
        Screen {
            width: DEFAULT_SCREEN.0,
            height: DEFAULT_SCREEN.1,
            background: None,
            windows: Vec::new(),
            dirty: false,
        }
    }
}

impl Screen {
    /// The screen's size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Sets the screen's size (the display's); false if it is empty or
    /// larger than [`MAX_SCREEN_PIXELS`].
    pub fn set_size(&mut self, width: u32, height: u32) -> bool {
        if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_SCREEN_PIXELS {
            return false;
        }
        (self.width, self.height) = (width, height);
        self.dirty = true;
        true
    }

    /// Shows a new window or tty (on top).
    pub fn add(&mut self, r: Ref) {
        self.windows.push(r);
        self.dirty = true;
    }

    /// Forgets windows the collector freed (their slots are free now and
    /// nothing has been allocated since).
    pub fn prune(&mut self, heap: &Heap) {
        let before = self.windows.len();
        self.windows
            .retain(|&r| matches!(heap.get(r).kind, Kind::Window(_) | Kind::Tty(_)));
        if self.windows.len() != before {
            self.dirty = true;
        }
    }

    /// The windows shown, bottom first.
    pub fn windows(&self) -> &[Ref] {
        &self.windows
    }

    /// Composes the screen: the desktop, the background tiled from the
    /// bottom-left corner, then every window with its decoration.
    pub fn compose(&self, heap: &Heap) -> Canvas {
        let mut out = Canvas::new(self.width, self.height, DESKTOP);
        if let Some(bg) = &self.background
            && bg.width > 0
            && bg.height > 0
        {
            let (bw, bh) = (i64::from(bg.width), i64::from(bg.height));
            let mut y = 0;
            while y < i64::from(self.height) {
                let mut x = 0;
                while x < i64::from(self.width) {
                    out.blit(bg, x, y, 0, 0, bw, bh);
                    x += bw;
                }
                y += bh;
            }
        }
        for &r in &self.windows {
            let (canvas, x, y, title) = match &heap.get(r).kind {
                Kind::Window(w) => (&w.canvas, w.x, w.y, &w.title),
                Kind::Tty(t) => (&t.canvas, t.x, t.y, &t.title),
                _ => continue,
            };
            let (x, y) = (i64::from(x), i64::from(y));
            let (w, h) = (i64::from(canvas.width), i64::from(canvas.height));
            // Border around content and title bar, the bar, its text.
            out.draw_box(x - 1, y - 1, w + 2, h + TITLE_H + 2, BORDER);
            out.fill_box(x, y + h, w, TITLE_H, TITLE_BAR);
            let (mut tx, ty) = (x + 4, y + h + (TITLE_H - FONT_H) / 2);
            let room = ((w - 8) / FONT_W).max(0) as usize;
            let shown: Vec<u8> = title
                .iter()
                .copied()
                .filter(|c| !c.is_ascii_control())
                .take(room)
                .collect();
            for ch in shown {
                out.glyph(tx, ty, ch, TITLE_TEXT, TITLE_BAR);
                tx += FONT_W;
            }
            out.blit(canvas, x, y, 0, 0, w, h);
        }
        out
    }

    /// [`Screen::compose`] as rows top to bottom (what a display takes).
    pub fn compose_top_down(&self, heap: &Heap) -> Vec<u32> {
        let c = self.compose(heap);
        let w = c.width as usize;
        let mut rows = Vec::with_capacity(c.pixels.len());
        for row in c.pixels.chunks_exact(w.max(1)).rev() {
            rows.extend_from_slice(row);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_clipped_and_include_both_ends() {
        let mut c = Canvas::new(10, 10, 0);
        c.draw_line(2, 3, 6, 3, 1);
        assert_eq!(
            (1..8).map(|x| c.pixel(x, 3).unwrap()).collect::<Vec<_>>(),
            [0, 1, 1, 1, 1, 1, 0]
        );
        // A vertical line far beyond the canvas: clipped, not walked.
        c.draw_line(4, -1_000_000_000, 4, 2_000_000_000, 2);
        assert!((0..10).all(|y| c.pixel(4, y) == Some(2)));
        // A line that misses draws nothing.
        let before = c.clone();
        c.draw_line(-5, -5, -1, 20, 3);
        assert_eq!(c, before);
        // Diagonal.
        let mut d = Canvas::new(5, 5, 0);
        d.draw_line(0, 0, 4, 4, 7);
        assert!((0..5).all(|i| d.pixel(i, i) == Some(7)));
        assert_eq!(d.pixels().iter().filter(|&&p| p == 7).count(), 5);
    }

    #[test]
    fn boxes_fill_and_outline_within_bounds() {
        let mut c = Canvas::new(8, 6, 0);
        c.fill_box(-3, 4, 5, 10, 9);
        assert_eq!(c.pixels().iter().filter(|&&p| p == 9).count(), 2 * 2);
        let mut o = Canvas::new(8, 6, 0);
        o.draw_box(1, 1, 4, 3, 5);
        // A 4x3 outline has 4 + 4 + 1 + 1 pixels.
        assert_eq!(o.pixels().iter().filter(|&&p| p == 5).count(), 10);
        assert_eq!(o.pixel(2, 2), Some(0));
    }

    #[test]
    fn ellipse_is_symmetric_and_inside_its_box() {
        let mut c = Canvas::new(20, 20, 0);
        c.fill_ellipse(2, 4, 12, 8, 1);
        for y in 0..20 {
            for x in 0..20 {
                let on = c.pixel(x, y) == Some(1);
                if on {
                    assert!((2..14).contains(&x) && (4..12).contains(&y), "{x},{y}");
                }
                // Mirror images across the box's centre lines.
                if (2..14).contains(&x) && (4..12).contains(&y) {
                    assert_eq!(on, c.pixel(15 - x, y) == Some(1), "{x},{y}");
                    assert_eq!(on, c.pixel(x, 15 - y) == Some(1), "{x},{y}");
                }
            }
        }
        assert_eq!(c.pixel(8, 8), Some(1));
        assert_eq!(c.pixel(2, 4), Some(0));
    }

    #[test]
    fn blit_clips_on_both_sides() {
        let mut src = Canvas::new(4, 4, 0);
        for y in 0..4 {
            for x in 0..4 {
                src.plot(x, y, (10 * y + x) as u32);
            }
        }
        let mut dst = Canvas::new(5, 5, 99);
        dst.blit(&src, -1, 3, 0, 0, 4, 4);
        // Source (1, 0) lands on (0, 3); rows above 4 are cut.
        assert_eq!(dst.pixel(0, 3), Some(1));
        assert_eq!(dst.pixel(2, 4), Some(13));
        assert_eq!(dst.pixel(3, 3), Some(99));
        assert_eq!(dst.pixel(0, 2), Some(99));
    }

    #[test]
    fn text_wraps_steps_down_and_scrolls() {
        let mut c = Canvas::new(16, 32, 0);
        let (mut x, mut y) = (0, 16);
        c.text(&mut x, &mut y, b"AB", 1, 0);
        assert_eq!((x, y), (16, 16));
        // The third character wraps to the line below.
        c.text(&mut x, &mut y, b"C", 1, 0);
        assert_eq!((x, y), (8, 0));
        assert!(c.pixels()[..16 * 16].contains(&1));
        // A newline on the bottom line scrolls: the C moves up a line.
        let bottom: Vec<u32> = c.pixels()[..16 * 16].to_vec();
        c.text(&mut x, &mut y, b"\n", 1, 0);
        assert_eq!((x, y), (0, 0));
        assert_eq!(&c.pixels()[16 * 16..], &bottom[..]);
        assert!(c.pixels()[..16 * 16].iter().all(|&p| p == 0));
    }

    #[test]
    fn ppm_parses_rows_bottom_up_and_rejects_bad_input() {
        let mut data = b"P6\n# a comment\n2 2\n255\n".to_vec();
        data.extend_from_slice(&[255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3]);
        let c = parse_ppm(&data, 100).unwrap();
        assert_eq!((c.width(), c.height()), (2, 2));
        // First file row is the top (y = 1).
        assert_eq!(c.pixel(0, 1), Some(0xFFFF_0000));
        assert_eq!(c.pixel(1, 1), Some(0xFF00_FF00));
        assert_eq!(c.pixel(1, 0), Some(0xFF01_0203));
        assert!(parse_ppm(&data[..data.len() - 1], 100).is_none());
        assert!(parse_ppm(b"P3\n2 2\n255\n", 100).is_none());
        assert!(parse_ppm(&data, 3).is_none());
        assert!(parse_ppm(b"P6 0 5 255 ", 100).is_none());
        assert!(parse_ppm(b"P6 99999999999 1 255 ", u64::MAX).is_none());
        // Sixteen-bit samples take the high byte.
        let mut wide = b"P6 1 1 65535\n".to_vec();
        wide.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC]);
        assert_eq!(parse_ppm(&wide, 10).unwrap().pixel(0, 0), Some(0xFF12_569A));
    }

    #[test]
    fn scroll_hor_shifts_and_refuses_outside() {
        let mut c = Canvas::new(4, 1, 0);
        for x in 0..4 {
            c.plot(x, 0, x as u32 + 1);
        }
        assert!(c.scroll_hor(0, 0, 4, 1, 1, 9));
        assert_eq!(c.pixels(), &[9, 1, 2, 3]);
        assert!(c.scroll_hor(0, 0, 4, 1, -2, 8));
        assert_eq!(c.pixels(), &[2, 3, 8, 8]);
        assert!(!c.scroll_hor(1, 0, 4, 1, 1, 0));
        assert_eq!(c.pixels(), &[2, 3, 8, 8]);
    }
}
