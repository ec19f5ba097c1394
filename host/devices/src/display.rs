//! Displays: what a display grant says, the pixel formats, the file a
//! simulated framebuffer keeps its frame in, and PNG.
//!
//! ```text
//!   display.screen = { device = "sim:framebuffer", width = 320, height = 240, format = "rgb888" }
//!        │  DisplayGrant (checked: 1..=4096 per side, ≤ 16 MiB of pixels in all grants)
//!        ▼
//!   PixelFormat: bytes per pixel, 0xRRGGBB ─► pixel bytes, pixel bytes ─► RGB8
//!   FrameFile:   the frame a simulated framebuffer shows, as a file (header + pixels)
//!   encode_png / decode_png: a frame as an RGB8 PNG (`phantom display`, goldens)
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use std::collections::BTreeMap;

use crate::manifest::{Backend, GrantName, MAX_GRANTS, MAX_NAME_BYTES, ManifestError};

/// Longest side of a display, in pixels.
pub const MAX_DISPLAY_SIDE: u32 = 4096;
/// Most pixel bytes of all display grants of a manifest together. A
/// checkpoint keeps each open display's canvas and the frame it shows
/// (zstd); with this bound even incompressible frames stay far under an
/// image section's 64 MiB cap. (1920x1080 RGB888 is 6 MiB.)
pub const MAX_DISPLAY_BYTES: u64 = 16 << 20;

/// How a display stores a pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PixelFormat {
    /// Three bytes: red, green, blue.
    Rgb888,
    /// Two bytes, a little-endian `u16`: red in bits 15..11, green 10..5,
    /// blue 4..0 (as a Linux framebuffer on a little-endian machine).
    Rgb565,
    /// One byte of luminance.
    Gray8,
}

impl PixelFormat {
    /// Every format, in WIT order.
    pub const ALL: [PixelFormat; 3] =
        [PixelFormat::Rgb888, PixelFormat::Rgb565, PixelFormat::Gray8];

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb888 => 3,
            PixelFormat::Rgb565 => 2,
            PixelFormat::Gray8 => 1,
        }
    }

    /// The manifest's spelling.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb888 => "rgb888",
            PixelFormat::Rgb565 => "rgb565",
            PixelFormat::Gray8 => "gray8",
        }
    }

    /// The format's code in a frame file and a `display` section.
    pub fn code(self) -> u8 {
        match self {
            PixelFormat::Rgb888 => 1,
            PixelFormat::Rgb565 => 2,
            PixelFormat::Gray8 => 3,
        }
    }

    /// The format of a code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The bytes of colour `rgb` (0xRRGGBB; the top byte is ignored).
    /// Gray is BT.601 luma in integers: (77 R + 150 G + 29 B + 128) / 256.
    pub fn encode(self, rgb: u32) -> ([u8; 3], usize) {
        let [_, r, g, b] = rgb.to_be_bytes();
        match self {
            PixelFormat::Rgb888 => ([r, g, b], 3),
            PixelFormat::Rgb565 => {
                let v = (u16::from(r >> 3) << 11) | (u16::from(g >> 2) << 5) | u16::from(b >> 3);
                let [lo, hi] = v.to_le_bytes();
                ([lo, hi, 0], 2)
            }
            PixelFormat::Gray8 => {
                let y = (77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8;
                ([y as u8, 0, 0], 1)
            }
        }
    }

    /// `pixels` (whole pixels of this format) as RGB8. RGB565 widens each
    /// channel by repeating its top bits, so 0x1f becomes 0xff.
    pub fn to_rgb8(self, pixels: &[u8]) -> Vec<u8> {
        match self {
            PixelFormat::Rgb888 => pixels.to_vec(),
            PixelFormat::Rgb565 => pixels
                .chunks_exact(2)
                .flat_map(|p| {
                    let v = u16::from_le_bytes([p[0], p[1]]);
                    let (r, g, b) = ((v >> 11) as u8, ((v >> 5) & 0x3f) as u8, (v & 0x1f) as u8);
                    [
                        (r << 3) | (r >> 2),
                        (g << 2) | (g >> 4),
                        (b << 3) | (b >> 2),
                    ]
                })
                .collect(),
            PixelFormat::Gray8 => pixels.iter().flat_map(|&y| [y, y, y]).collect(),
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A display's size and pixel format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Geometry {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format.
    pub format: PixelFormat,
}

impl Geometry {
    /// A geometry, if each side is 1 to `MAX_DISPLAY_SIDE` and the frame at
    /// most `MAX_DISPLAY_BYTES`.
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Result<Self, String> {
        let g = Geometry {
            width,
            height,
            format,
        };
        for (what, side) in [("width", width), ("height", height)] {
            if !(1..=MAX_DISPLAY_SIDE).contains(&side) {
                return Err(format!(
                    "{what} {side} is not 1 to {MAX_DISPLAY_SIDE} pixels"
                ));
            }
        }
        if g.frame_bytes() as u64 > MAX_DISPLAY_BYTES {
            return Err(format!(
                "a {width}x{height} {format} frame is over {MAX_DISPLAY_BYTES} bytes"
            ));
        }
        Ok(g)
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.width as usize * self.format.bytes_per_pixel()
    }

    /// Bytes of a whole frame.
    pub fn frame_bytes(&self) -> usize {
        self.row_bytes() * self.height as usize
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{} {}", self.width, self.height, self.format)
    }
}

/// A display: `sim:<name>` (a simulated framebuffer, `name` 1 to 64 of
/// `a-z 0-9 - _`: it names the file the frame is kept in) or
/// `linux:/dev/fb<N>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DisplayRef {
    /// Its backend.
    pub backend: Backend,
    /// The simulated display's name, or the device path.
    pub path: String,
}

impl std::str::FromStr for DisplayRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("sim:") {
            let ok = !name.is_empty()
                && name.len() <= MAX_NAME_BYTES
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !ok {
                return Err(format!(
                    "display `{s}`: a simulated display's name is 1 to {MAX_NAME_BYTES} of a-z, 0-9, `-`, `_`"
                ));
            }
            Ok(DisplayRef {
                backend: Backend::Sim,
                path: name.to_string(),
            })
        } else if let Some(path) = s.strip_prefix("linux:") {
            let n = path.strip_prefix("/dev/fb").unwrap_or_default();
            if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "display `{s}`: a Linux display is `linux:/dev/fb<N>`"
                ));
            }
            Ok(DisplayRef {
                backend: Backend::Linux,
                path: path.to_string(),
            })
        } else {
            Err(format!(
                "`{s}` names no backend: it must start with `sim:` or `linux:`"
            ))
        }
    }
}

impl fmt::Display for DisplayRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.backend, self.path)
    }
}

impl Serialize for DisplayRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DisplayRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn side<'de, D: Deserializer<'de>>(d: D, what: &str) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| (1..=MAX_DISPLAY_SIDE).contains(v))
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{what} {v} is not 1 to {MAX_DISPLAY_SIDE} pixels"))
        })
}

fn width<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    side(d, "width")
}

fn height<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    side(d, "height")
}

/// A display the process may open: which device, its size and format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayGrant {
    /// The display.
    pub device: DisplayRef,
    /// Width in pixels (1 to 4096).
    #[serde(deserialize_with = "width")]
    pub width: u32,
    /// Height in pixels (1 to 4096).
    #[serde(deserialize_with = "height")]
    pub height: u32,
    /// Pixel format.
    pub format: PixelFormat,
}

impl DisplayGrant {
    /// Its size and format.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            width: self.width,
            height: self.height,
            format: self.format,
        }
    }
}

/// The checks of a manifest's display grants that span grants: their
/// count, one grant per display, and the pixel bytes of all together.
pub(crate) fn check_grants(
    grants: &BTreeMap<GrantName, DisplayGrant>,
) -> Result<(), ManifestError> {
    if grants.len() > MAX_GRANTS {
        return Err(ManifestError::TooMany("display"));
    }
    let mut devices: BTreeMap<&DisplayRef, &GrantName> = BTreeMap::new();
    let mut total = 0u64;
    for (name, g) in grants {
        if let Some(first) = devices.insert(&g.device, name) {
            return Err(ManifestError::Duplicate {
                first: format!("display.{}", first.as_str()),
                second: format!("display.{}", name.as_str()),
                what: format!("display {}", g.device),
            });
        }
        let geometry = Geometry::new(g.width, g.height, g.format)
            .map_err(|e| ManifestError::Invalid(format!("`display.{}`: {e}", name.as_str())))?;
        total += geometry.frame_bytes() as u64;
        if total > MAX_DISPLAY_BYTES {
            return Err(ManifestError::Invalid(format!(
                "`display.{}`: the display grants hold over {MAX_DISPLAY_BYTES} bytes of pixels in all",
                name.as_str()
            )));
        }
    }
    Ok(())
}

/// The frame a simulated framebuffer shows, as the file it keeps it in
/// (`<process dir>/sim-<name>.fb`), so a reader sees the live frame while
/// a host runs the process, as it would read `/dev/fb0`:
///
/// | Offset | Size | What |
/// |---|---|---|
/// | 0 | 4 | magic `PHFB` |
/// | 4 | 4 | version, 1 |
/// | 8 | 4 | width |
/// | 12 | 4 | height |
/// | 16 | 4 | pixel format code (1 rgb888, 2 rgb565, 3 gray8) |
/// | 20 | 4 | zero |
/// | 24 | width × height × bytes per pixel | the pixels, rows top to bottom |
///
/// Integers are little-endian. The host writes it whole (a temporary file
/// renamed over it), so a reader never sees half a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameFile {
    /// Size and format.
    pub geometry: Geometry,
    /// The pixels.
    pub pixels: Vec<u8>,
}

/// The frame file's magic.
pub const FRAME_MAGIC: &[u8; 4] = b"PHFB";
/// The frame file's format version.
pub const FRAME_VERSION: u32 = 1;
const FRAME_HEADER: usize = 24;

impl FrameFile {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_HEADER + self.pixels.len());
        out.extend_from_slice(FRAME_MAGIC);
        out.extend_from_slice(&FRAME_VERSION.to_le_bytes());
        out.extend_from_slice(&self.geometry.width.to_le_bytes());
        out.extend_from_slice(&self.geometry.height.to_le_bytes());
        out.extend_from_slice(&u32::from(self.geometry.format.code()).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.pixels);
        out
    }

    /// Reads a frame file, checking every field.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if bytes.len() < FRAME_HEADER || &bytes[..4] != FRAME_MAGIC {
            return Err("not a framebuffer file (no PHFB header)".into());
        }
        let version = word(4).unwrap_or_default();
        if version != FRAME_VERSION {
            return Err(format!(
                "framebuffer file version {version}, this host reads {FRAME_VERSION}"
            ));
        }
        let code = word(16).unwrap_or_default();
        let format = u8::try_from(code)
            .ok()
            .and_then(PixelFormat::from_code)
            .ok_or_else(|| format!("unknown pixel format code {code}"))?;
        let geometry = Geometry::new(
            word(8).unwrap_or_default(),
            word(12).unwrap_or_default(),
            format,
        )?;
        let pixels = &bytes[FRAME_HEADER..];
        if pixels.len() != geometry.frame_bytes() {
            return Err(format!(
                "{} bytes of pixels, a {geometry} frame has {}",
                pixels.len(),
                geometry.frame_bytes()
            ));
        }
        Ok(FrameFile {
            geometry,
            pixels: pixels.to_vec(),
        })
    }
}

/// A frame as an RGB8 PNG (every format is widened to RGB8).
pub fn encode_png(geometry: Geometry, pixels: &[u8]) -> Result<Vec<u8>, String> {
    if pixels.len() != geometry.frame_bytes() {
        return Err(format!(
            "{} bytes of pixels, a {geometry} frame has {}",
            pixels.len(),
            geometry.frame_bytes()
        ));
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, geometry.width, geometry.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&geometry.format.to_rgb8(pixels))
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// A PNG's width, height and pixels as RGB8 (8-bit RGB and RGBA, gray and
/// gray-alpha are converted; alpha is dropped). For comparing frames.
pub fn decode_png(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let size = reader
        .output_buffer_size()
        .ok_or("the PNG is too large to decode")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(info.buffer_size());
    if info.bit_depth != png::BitDepth::Eight {
        return Err(format!("a {:?}-bit PNG, not 8-bit", info.bit_depth));
    }
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&y| [y, y, y]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        png::ColorType::Indexed => return Err("an indexed PNG was not expanded".into()),
    };
    Ok((info.width, info.height, rgb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_in_each_format() {
        assert_eq!(
            PixelFormat::Rgb888.encode(0x12_3456),
            ([0x12, 0x34, 0x56], 3)
        );
        assert_eq!(
            PixelFormat::Rgb888.encode(0xff12_3456),
            ([0x12, 0x34, 0x56], 3)
        );
        // Pure red, green, blue and white in RGB565, little-endian.
        assert_eq!(PixelFormat::Rgb565.encode(0xff0000).0[..2], [0x00, 0xf8]);
        assert_eq!(PixelFormat::Rgb565.encode(0x00ff00).0[..2], [0xe0, 0x07]);
        assert_eq!(PixelFormat::Rgb565.encode(0x0000ff).0[..2], [0x1f, 0x00]);
        assert_eq!(PixelFormat::Rgb565.encode(0xffffff).0[..2], [0xff, 0xff]);
        assert_eq!(PixelFormat::Gray8.encode(0xffffff).0[0], 255);
        assert_eq!(PixelFormat::Gray8.encode(0x000000).0[0], 0);
        assert_eq!(PixelFormat::Gray8.encode(0xff0000).0[0], 77);
        // Back to RGB8: 565 widens by repeating the top bits.
        assert_eq!(
            PixelFormat::Rgb565.to_rgb8(&[0xff, 0xff, 0x00, 0xf8, 0x10, 0x84]),
            [255, 255, 255, 255, 0, 0, 0x84, 0x82, 0x84]
        );
        assert_eq!(PixelFormat::Gray8.to_rgb8(&[7, 9]), [7, 7, 7, 9, 9, 9]);
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_code(f.code()), Some(f));
        }
        assert_eq!(PixelFormat::from_code(0), None);
    }

    #[test]
    fn geometry_bounds() {
        let g = Geometry::new(320, 240, PixelFormat::Rgb565).unwrap();
        assert_eq!((g.row_bytes(), g.frame_bytes()), (640, 153_600));
        assert!(
            Geometry::new(0, 1, PixelFormat::Gray8)
                .unwrap_err()
                .contains("width 0")
        );
        assert!(
            Geometry::new(1, 4097, PixelFormat::Gray8)
                .unwrap_err()
                .contains("height 4097")
        );
        assert!(Geometry::new(4096, 4096, PixelFormat::Gray8).is_ok());
        assert!(
            Geometry::new(4096, 4096, PixelFormat::Rgb888)
                .unwrap_err()
                .contains("over")
        );
    }

    #[test]
    fn display_refs() {
        let r: DisplayRef = "sim:framebuffer".parse().unwrap();
        assert_eq!((r.backend, r.path.as_str()), (Backend::Sim, "framebuffer"));
        assert_eq!(r.to_string(), "sim:framebuffer");
        let r: DisplayRef = "linux:/dev/fb1".parse().unwrap();
        assert_eq!(
            (r.backend, r.to_string()),
            (Backend::Linux, "linux:/dev/fb1".into())
        );
        for bad in [
            "sim:",
            "sim:../x",
            "sim:a/b",
            "sim:Big",
            "linux:/dev/sda",
            "linux:/dev/fb",
            "linux:/dev/fb1/../x",
            "usb:fb0",
        ] {
            assert!(bad.parse::<DisplayRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn frame_files_round_trip_and_refuse_what_is_wrong() {
        let f = FrameFile {
            geometry: Geometry::new(3, 2, PixelFormat::Rgb565).unwrap(),
            pixels: (0..12).collect(),
        };
        let bytes = f.encode();
        assert_eq!(FrameFile::decode(&bytes).unwrap(), f);
        assert!(
            FrameFile::decode(&bytes[..bytes.len() - 1])
                .unwrap_err()
                .contains("bytes of pixels")
        );
        assert!(FrameFile::decode(b"PHFB").is_err());
        let mut bad = bytes.clone();
        bad[4] = 2;
        assert!(FrameFile::decode(&bad).unwrap_err().contains("version 2"));
        let mut bad = bytes.clone();
        bad[16] = 9;
        assert!(
            FrameFile::decode(&bad)
                .unwrap_err()
                .contains("format code 9")
        );
        let mut bad = bytes;
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(FrameFile::decode(&bad).unwrap_err().contains("width"));
    }

    #[test]
    fn display_grants_parse_and_the_policy_follows_them() {
        use crate::manifest::{DeviceManifest, PolicyError};
        let m = DeviceManifest::parse(
            "display.screen = { device = \"sim:framebuffer\", width = 320, height = 240, format = \"rgb888\" }\n\
             display.panel = { device = \"linux:/dev/fb0\", width = 128, height = 64, format = \"gray8\" }\n",
        )
        .unwrap();
        let g = m.display_open("screen").unwrap();
        assert_eq!(g.device.to_string(), "sim:framebuffer");
        assert_eq!(
            g.geometry(),
            Geometry::new(320, 240, PixelFormat::Rgb888).unwrap()
        );
        assert_eq!(m.display_open("panel").unwrap().format, PixelFormat::Gray8);
        assert_eq!(m.display_open("tv").unwrap_err(), PolicyError::NotGranted);
        assert_eq!(m.granted_interfaces(), ["display"]);
        assert!(!m.is_empty());
        assert_eq!(DeviceManifest::parse(&m.to_toml()).unwrap(), m);
    }

    /// Each malformed display grant is refused with a message naming where.
    #[test]
    fn malformed_display_grants_name_the_line_and_key() {
        use crate::manifest::DeviceManifest;
        let grant = |device: &str, w: &str, h: &str, format: &str| {
            format!(
                "display.screen = {{ device = \"{device}\", width = {w}, height = {h}, format = \"{format}\" }}"
            )
        };
        let cases: Vec<(String, &[&str])> = vec![
            (grant("sim:fb", "0", "240", "rgb888"), &["line 1", "width 0"]),
            (grant("sim:fb", "-5", "240", "rgb888"), &["line 1", "width -5"]),
            (grant("sim:fb", "320", "5000", "rgb888"), &["line 1", "height 5000"]),
            (grant("sim:fb", "320", "240", "rgb555"), &["line 1", "rgb555"]),
            (grant("sim:../x", "320", "240", "rgb888"), &["line 1", "sim:../x"]),
            (grant("linux:/dev/mem", "320", "240", "rgb888"), &["line 1", "/dev/fb"]),
            (grant("sim:fb", "4096", "4096", "rgb888"), &["display.screen", "over"]),
            (
                "display.screen = { device = \"sim:fb\", width = 1, height = 1 }".into(),
                &["line 1", "format"],
            ),
            (
                "display.screen = { device = \"sim:fb\", width = 1, height = 1, format = \"gray8\", depth = 8 }".into(),
                &["line 1", "depth"],
            ),
            (
                format!("{}\n{}", grant("sim:fb", "8", "8", "gray8"), grant("sim:fb", "8", "8", "gray8").replace("screen", "other")),
                &["display.other", "display.screen", "sim:fb"],
            ),
            (
                format!(
                    "{}\n{}",
                    grant("sim:a", "4096", "2048", "gray8"),
                    grant("sim:b", "4096", "2049", "gray8").replace("screen", "two")
                ),
                &["display.two", "in all"],
            ),
        ];
        for (text, wants) in cases {
            let e = DeviceManifest::parse(&text).unwrap_err().to_string();
            for w in wants {
                assert!(e.contains(w), "{text:?}: {e:?} does not contain {w:?}");
            }
        }
    }

    #[test]
    fn png_round_trip() {
        let g = Geometry::new(2, 2, PixelFormat::Gray8).unwrap();
        let png = encode_png(g, &[0, 64, 128, 255]).unwrap();
        let (w, h, rgb) = decode_png(&png).unwrap();
        assert_eq!((w, h), (2, 2));
        assert_eq!(rgb, [0, 0, 0, 64, 64, 64, 128, 128, 128, 255, 255, 255]);
        assert!(encode_png(g, &[0; 3]).is_err());
        assert!(decode_png(b"not a png").is_err());
    }
}
