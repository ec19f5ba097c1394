//! The `display` section: the pixels of every open display (what the
//! process drew, and the frame it last flushed), zstd-compressed, in
//! binary (a 320x240 RGB888 frame is 225 KiB; as JSON numbers it would be
//! four times that). Images without it restore with no pixels, and then a
//! display in the `devices` section is a bad image.
//!
//! | Offset | Size | What |
//! |---|---|---|
//! | 0 | 4 | magic `PDSP` |
//! | 4 | 4 | version, 1 |
//! | 8 | 4 | count of displays |
//!
//! then per display, in increasing number:
//!
//! | Size | What |
//! |---|---|
//! | 4 | its number |
//! | 4, 4, 1 | width, height, pixel format code |
//! | 8 | flushes so far |
//! | 1 | what is shown: 0 nothing (never flushed), 1 the canvas, 2 the frame that follows |
//! | 4 + n | the canvas: n, then n bytes of zstd |
//! | 4 + m | (shown = 2) the frame shown: m, then m bytes of zstd |
//!
//! Integers are little-endian. Each frame decompresses to exactly the
//! geometry's size, or the section is refused (a lying length cannot make
//! the host allocate more than one frame); the displays' geometries
//! together hold at most `MAX_DISPLAY_BYTES` (16 MiB) of pixels, as a
//! manifest's grants do, checked before any frame decompresses.

use std::collections::BTreeMap;
use std::sync::Arc;

use phantom_devices::display::{Geometry, MAX_DISPLAY_BYTES, PixelFormat};

use super::Section;
use crate::iface::devices::{
    DevicesState, DisplayFrames, DisplaysState, MAX_OPEN_DEVICES, OpenKind,
};

const MAGIC: &[u8; 4] = b"PDSP";
const VERSION: u32 = 1;
/// zstd level: frames are mostly flat colour and gradients; level 3 takes
/// ~1 ms for a 320x240 frame.
const LEVEL: i32 = 3;

const SHOWN_NONE: u8 = 0;
const SHOWN_CANVAS: u8 = 1;
const SHOWN_OWN: u8 = 2;

fn compress(bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(bytes, LEVEL).unwrap_or_default()
}

fn put_blob(out: &mut Vec<u8>, pixels: &[u8]) {
    let z = compress(pixels);
    out.extend_from_slice(&(z.len() as u32).to_le_bytes());
    out.extend_from_slice(&z);
}

/// Reads the section's bytes in order, every read checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("it ends early".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from(self.u32()?) | (u64::from(self.u32()?) << 32))
    }
    fn frame(&mut self, g: Geometry, what: &str) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        let z = self.take(n)?;
        let pixels = zstd::bulk::decompress(z, g.frame_bytes())
            .map_err(|e| format!("{what} does not decompress: {e}"))?;
        if pixels.len() != g.frame_bytes() {
            return Err(format!(
                "{what} is {} bytes, a {g} frame is {}",
                pixels.len(),
                g.frame_bytes()
            ));
        }
        Ok(pixels)
    }
}

impl Section for DisplaysState {
    const NAME: &'static str = "display";

    fn save(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.displays.len() as u32).to_le_bytes());
        for (handle, d) in &self.displays {
            out.extend_from_slice(&handle.to_le_bytes());
            out.extend_from_slice(&d.geometry.width.to_le_bytes());
            out.extend_from_slice(&d.geometry.height.to_le_bytes());
            out.push(d.geometry.format.code());
            out.extend_from_slice(&d.flushes.to_le_bytes());
            let shown = match &d.shown {
                None => SHOWN_NONE,
                Some(s) if Arc::ptr_eq(s, &d.canvas) || **s == *d.canvas => SHOWN_CANVAS,
                Some(_) => SHOWN_OWN,
            };
            out.push(shown);
            put_blob(&mut out, &d.canvas);
            if let (SHOWN_OWN, Some(s)) = (shown, &d.shown) {
                put_blob(&mut out, s);
            }
        }
        out
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes };
        if r.take(4)? != MAGIC {
            return Err("it does not start with PDSP".into());
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!("version {version}, this host reads {VERSION}"));
        }
        let count = r.u32()? as usize;
        if count > MAX_OPEN_DEVICES {
            return Err(format!("over {MAX_OPEN_DEVICES} displays"));
        }
        let mut displays = BTreeMap::new();
        let mut last = 0;
        // The pixels of all of them together, as a manifest bounds its
        // grants: checked before a frame decompresses, so a small crafted
        // section cannot make the host allocate gigabytes.
        let mut pixels = 0u64;
        for _ in 0..count {
            let handle = r.u32()?;
            if handle <= last {
                return Err(format!("display {handle} is 0, repeated or out of order"));
            }
            last = handle;
            let (width, height) = (r.u32()?, r.u32()?);
            let code = r.u8()?;
            let format = PixelFormat::from_code(code)
                .ok_or_else(|| format!("display {handle}: unknown pixel format code {code}"))?;
            let geometry = Geometry::new(width, height, format)
                .map_err(|e| format!("display {handle}: {e}"))?;
            pixels += geometry.frame_bytes() as u64;
            if pixels > MAX_DISPLAY_BYTES {
                return Err(format!(
                    "its displays hold over {MAX_DISPLAY_BYTES} bytes of pixels, more than a manifest grants"
                ));
            }
            let flushes = r.u64()?;
            let shown_kind = r.u8()?;
            let canvas = Arc::new(r.frame(geometry, &format!("display {handle}'s canvas"))?);
            let shown = match shown_kind {
                SHOWN_NONE => None,
                SHOWN_CANVAS => Some(canvas.clone()),
                SHOWN_OWN => Some(Arc::new(
                    r.frame(geometry, &format!("display {handle}'s shown frame"))?,
                )),
                k => return Err(format!("display {handle}: unknown shown kind {k}")),
            };
            if shown.is_some() != (flushes > 0) {
                return Err(format!(
                    "display {handle}: {flushes} flushes, but {} frame shown",
                    if shown.is_some() { "a" } else { "no" }
                ));
            }
            displays.insert(
                handle,
                DisplayFrames {
                    geometry,
                    canvas,
                    shown,
                    flushes,
                },
            );
        }
        if !r.bytes.is_empty() {
            return Err(format!("{} bytes follow its last display", r.bytes.len()));
        }
        Ok(DisplaysState { displays })
    }
}

/// Checks that the open displays of the `devices` section and the frames
/// of this one are the same displays, of the same geometry.
pub(super) fn check_against(
    devices: &DevicesState,
    displays: &DisplaysState,
) -> Result<(), String> {
    let mut open = 0;
    for d in &devices.open {
        if let OpenKind::Display { geometry, .. } = &d.kind {
            open += 1;
            match displays.displays.get(&d.handle) {
                Some(f) if f.geometry == *geometry => {}
                Some(f) => {
                    return Err(format!(
                        "display {} is {geometry} in `devices` but {} here",
                        d.handle, f.geometry
                    ));
                }
                None => return Err(format!("it has no pixels of open display {}", d.handle)),
            }
        }
    }
    if open != displays.displays.len() {
        return Err("it has pixels of a display that is not open".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> DisplaysState {
        let g = Geometry::new(4, 2, PixelFormat::Rgb565).unwrap();
        let mut a = DisplayFrames::new(g);
        Arc::make_mut(&mut a.canvas)[3] = 9;
        a.shown = Some(a.canvas.clone());
        a.flushes = 2;
        let mut b = DisplayFrames::new(Geometry::new(3, 3, PixelFormat::Gray8).unwrap());
        b.shown = Some(Arc::new(vec![7; 9]));
        b.flushes = 1;
        let c = DisplayFrames::new(Geometry::new(1, 1, PixelFormat::Rgb888).unwrap());
        DisplaysState {
            displays: [(2, a), (5, b), (6, c)].into_iter().collect(),
        }
    }

    #[test]
    fn round_trip() {
        let s = state();
        let bytes = s.save();
        assert_eq!(DisplaysState::restore(&bytes).unwrap(), s);
        assert_eq!(
            DisplaysState::restore(&DisplaysState::default().save()).unwrap(),
            DisplaysState::default()
        );
    }

    /// Displays whose geometries hold more pixels than a manifest grants
    /// are refused before their frames decompress.
    #[test]
    fn more_pixels_than_a_manifest_grants_are_refused() {
        let side = 4096;
        let g = Geometry::new(side, side / 2, PixelFormat::Gray8).unwrap();
        let state = |n: u32| DisplaysState {
            displays: (1..=n).map(|h| (h, DisplayFrames::new(g))).collect(),
        };
        // Two halves are the whole allowance; a third is over it.
        assert!(DisplaysState::restore(&state(2).save()).is_ok());
        let e = DisplaysState::restore(&state(3).save()).unwrap_err();
        assert!(e.contains("bytes of pixels"), "{e}");
    }

    /// Every truncation and every single-byte change is refused or reads
    /// back something well-formed: never a panic.
    #[test]
    fn crafted_sections_are_refused_not_panicked_on() {
        let bytes = state().save();
        for n in 0..bytes.len() {
            assert!(DisplaysState::restore(&bytes[..n]).is_err(), "cut at {n}");
        }
        for k in 0..bytes.len() {
            for v in [0u8, 1, 2, 0x7f, 0xff] {
                let mut b = bytes.clone();
                b[k] = v;
                if let Ok(s) = DisplaysState::restore(&b) {
                    for d in s.displays.values() {
                        assert_eq!(d.canvas.len(), d.geometry.frame_bytes());
                    }
                }
            }
        }
        let mut b = bytes.clone();
        b.push(0);
        assert!(DisplaysState::restore(&b).unwrap_err().contains("follow"));
        assert!(DisplaysState::restore(b"JSON").is_err());
    }

    /// The `devices` and `display` sections must name the same displays,
    /// of the same sizes.
    #[test]
    fn the_displays_must_match_the_devices_section() {
        use crate::iface::devices::OpenDevice;
        let pixels = state();
        let open = |handle, geometry| OpenDevice {
            handle,
            name: format!("d{handle}"),
            kind: OpenKind::Display {
                device: format!("sim:d{handle}"),
                geometry,
            },
        };
        let g = |h: u32| pixels.displays[&h].geometry;
        let devices = DevicesState {
            open: vec![open(2, g(2)), open(5, g(5)), open(6, g(6))],
            last_handle: 6,
        };
        check_against(&devices, &pixels).unwrap();
        let mut fewer = devices.clone();
        fewer.open.pop();
        assert!(
            check_against(&fewer, &pixels)
                .unwrap_err()
                .contains("not open")
        );
        let mut resized = devices.clone();
        resized.open[0] = open(2, g(5));
        assert!(
            check_against(&resized, &pixels)
                .unwrap_err()
                .contains("3x3 gray8")
        );
        assert!(
            check_against(&devices, &DisplaysState::default())
                .unwrap_err()
                .contains("no pixels of open display 2")
        );
    }

    /// A frame that decompresses to more than its geometry is refused
    /// without allocating it.
    #[test]
    fn a_lying_frame_is_refused() {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&2u32.to_le_bytes());
        out.push(PixelFormat::Gray8.code());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.push(SHOWN_NONE);
        put_blob(&mut out, &vec![1; 1 << 20]);
        let e = DisplaysState::restore(&out).unwrap_err();
        assert!(e.contains("canvas"), "{e}");
    }
}
