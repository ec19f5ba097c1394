//! `phantom:devices/display`: framebuffer displays opened by logical name.
//!
//! ```text
//!   open ──► policy (grant) ─► gate: the device acquired (journaled answer)
//!   draw / fill ──► the canvas (host state, section `display`; no device,
//!                   no journal entry: the result depends only on the process)
//!   flush ──► gate: is the device there? ─► shown = canvas ─► exit:
//!             Output::Device(DisplayFrame) held until the call is durable
//!             ─► release ─► Devices::apply ─► SimFramebuffer::show
//!   restore ─► replay (draws and flushes again, shows nothing) ─►
//!             Devices::reacquire: configure, show the last frame flushed
//! ```
//! A frame is state, not an event: showing the same frame twice changes
//! nothing, so "exactly once" for a display means the device ends up
//! showing the newest durable frame, never a frame that is not durable,
//! and never an older one after a newer. Of several flushes not yet
//! released, only the newest keeps its pixels (`supersede`): the host holds
//! at most one unreleased frame per display, whatever the guest does.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use phantom_devices::display::{DisplayRef, Geometry, PixelFormat};
use phantom_devices::{Backend, PolicyError};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower, WasmList};

use super::{Acquired, CODE_LOST, DeviceEffect, Devices, OpenDevice, OpenKind};
use crate::ctx::ProcessCtx;
use crate::exit::Output;

/// The interface's name in the linker.
const INTERFACE: &str = "phantom:devices/display@0.1.0";

/// `display.pixel-format`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum WitPixelFormat {
    /// RGB888.
    #[component(name = "rgb888")]
    Rgb888,
    /// RGB565.
    #[component(name = "rgb565")]
    Rgb565,
    /// Gray8.
    #[component(name = "gray8")]
    Gray8,
}

impl From<PixelFormat> for WitPixelFormat {
    fn from(f: PixelFormat) -> Self {
        match f {
            PixelFormat::Rgb888 => WitPixelFormat::Rgb888,
            PixelFormat::Rgb565 => WitPixelFormat::Rgb565,
            PixelFormat::Gray8 => WitPixelFormat::Gray8,
        }
    }
}

/// `display.display-info`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(record)]
pub struct WitDisplayInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format.
    pub format: WitPixelFormat,
}

/// `display.display-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum DisplayError {
    /// No grant of that name.
    #[component(name = "not-granted")]
    NotGranted,
    /// Open already.
    #[component(name = "already-open")]
    AlreadyOpen,
    /// No such open display.
    #[component(name = "not-open")]
    NotOpen,
    /// The rectangle is not inside the display.
    #[component(name = "out-of-bounds")]
    OutOfBounds,
    /// The pixel bytes do not fit the rectangle.
    #[component(name = "bad-length")]
    BadLength,
    /// The display is gone.
    #[component(name = "device-lost")]
    DeviceLost,
    /// The device failed.
    #[component(name = "other")]
    Other,
}

fn device(code: u8) -> DisplayError {
    if code == CODE_LOST {
        DisplayError::DeviceLost
    } else {
        DisplayError::Other
    }
}

/// A frame's pixels, shared (a flush does not copy the canvas; the next
/// draw does, if the frame is still held).
#[derive(Clone, PartialEq, Eq)]
pub struct FrameBytes(pub Arc<Vec<u8>>);

impl fmt::Debug for FrameBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameBytes({} bytes)", self.0.len())
    }
}

/// One open display's pixels: part of the process's state.
#[derive(Clone, PartialEq, Eq)]
pub struct DisplayFrames {
    /// Size and format (those of the grant when opened).
    pub geometry: Geometry,
    /// What the process drew, rows top to bottom.
    pub canvas: Arc<Vec<u8>>,
    /// The canvas as of the last flush: what the display shows (None:
    /// never flushed).
    pub shown: Option<Arc<Vec<u8>>>,
    /// Flushes so far.
    pub flushes: u64,
}

impl fmt::Debug for DisplayFrames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DisplayFrames")
            .field("geometry", &self.geometry)
            .field("flushes", &self.flushes)
            .field("shown", &self.shown.is_some())
            .finish_non_exhaustive()
    }
}

impl DisplayFrames {
    /// A black canvas, never flushed.
    pub fn new(geometry: Geometry) -> Self {
        DisplayFrames {
            geometry,
            canvas: Arc::new(vec![0; geometry.frame_bytes()]),
            shown: None,
            flushes: 0,
        }
    }
}

/// The `display` section: the pixels of every open display, by number
/// (`persist/display.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisplaysState {
    /// Open displays by number.
    pub displays: BTreeMap<u32, DisplayFrames>,
}

/// Checks a rectangle against a geometry: the byte offset of its first
/// row, and its row length in bytes.
fn rect(g: Geometry, x: u32, y: u32, w: u32, h: u32) -> Result<(usize, usize), DisplayError> {
    let inside = |at: u32, len: u32, side: u32| at.checked_add(len).is_some_and(|end| end <= side);
    if !inside(x, w, g.width) || !inside(y, h, g.height) {
        return Err(DisplayError::OutOfBounds);
    }
    let bpp = g.format.bytes_per_pixel();
    Ok((
        y as usize * g.row_bytes() + x as usize * bpp,
        w as usize * bpp,
    ))
}

impl Devices {
    /// Acquires display `handle` on `device` and shows its last frame.
    pub(super) fn acquire_display(
        &mut self,
        handle: u32,
        device: &str,
        geometry: Geometry,
    ) -> Acquired {
        let Ok(device) = device.parse::<DisplayRef>() else {
            return Acquired::Lost;
        };
        if device.backend != Backend::Sim {
            // No Linux framebuffer backend yet: the grant names a device
            // this host cannot reach.
            return Acquired::Lost;
        }
        let fb = self.sim.framebuffer(&device.path);
        let shown = self
            .displays
            .displays
            .get(&handle)
            .and_then(|d| d.shown.clone());
        let applied = fb
            .configure(geometry)
            .and_then(|()| shown.map_or(Ok(()), |frame| fb.show(frame)));
        match applied {
            Ok(()) => Acquired::Display(fb),
            Err(_) => Acquired::Lost,
        }
    }

    /// Whether the grant of an open display still names it as opened (same
    /// device, size and format).
    pub(super) fn display_still_granted(&self, dev: &OpenDevice) -> bool {
        let OpenKind::Display { device, geometry } = &dev.kind else {
            return false;
        };
        self.manifest
            .display_open(&dev.name)
            .is_ok_and(|g| g.device.to_string() == *device && g.geometry() == *geometry)
    }

    /// Shows a released frame. A superseded frame (None: a newer flush
    /// followed, or the effect was restored from a checkpoint, where the
    /// restore showed the newest frame already) shows nothing.
    pub(super) fn show_frame(&mut self, handle: u32, frame: Option<&FrameBytes>) {
        let Some(frame) = frame else {
            return;
        };
        let open = self.find(handle).is_some();
        let acquired = if open {
            self.acquired(handle)
        } else {
            // Closed since the flush: shown through what was acquired.
            self.acquired.remove(&handle).unwrap_or(Acquired::Lost)
        };
        if let Acquired::Display(fb) = acquired
            && fb.show(frame.0.clone()).is_err()
            && open
        {
            self.acquired.insert(handle, Acquired::Lost);
        }
    }

    /// The pixels of open display `handle`.
    pub fn display_frames(&self, handle: u32) -> Option<&DisplayFrames> {
        self.displays.displays.get(&handle)
    }
}

impl ProcessCtx {
    /// The pixels of open display `handle`.
    fn frames_mut(&mut self, handle: u32) -> Result<&mut DisplayFrames, DisplayError> {
        self.devices
            .displays
            .displays
            .get_mut(&handle)
            .ok_or(DisplayError::NotOpen)
    }

    /// `display.open`.
    pub fn display_open(&mut self, name: &str) -> Result<u32, DisplayError> {
        let grant = self
            .devices
            .manifest
            .display_open(name)
            .map_err(|e| match e {
                PolicyError::NotGranted => DisplayError::NotGranted,
                _ => DisplayError::Other,
            })?
            .clone();
        if self
            .devices
            .holds_open(name, |k| matches!(k, OpenKind::Display { .. }))
        {
            return Err(DisplayError::AlreadyOpen);
        }
        let handle = self.devices.next_handle().ok_or(DisplayError::Other)?;
        let geometry = grant.geometry();
        let device_name = grant.device.to_string();
        self.device_op("a display open", |d| {
            let a = d.acquire_display(handle, &device_name, geometry);
            let lost = matches!(a, Acquired::Lost);
            d.acquired.insert(handle, a);
            if lost { Err(CODE_LOST) } else { Ok(Vec::new()) }
        })
        .map_err(device)?;
        let d = &mut self.devices;
        d.state.last_handle = handle;
        d.state.open.push(OpenDevice {
            handle,
            name: name.to_string(),
            kind: OpenKind::Display {
                device: device_name,
                geometry,
            },
        });
        d.displays
            .displays
            .insert(handle, DisplayFrames::new(geometry));
        Ok(handle)
    }

    /// `display.info`: from the process's state; no device is asked.
    pub fn display_info(&mut self, handle: u32) -> Result<WitDisplayInfo, DisplayError> {
        let g = self.frames_mut(handle)?.geometry;
        Ok(WitDisplayInfo {
            width: g.width,
            height: g.height,
            format: g.format.into(),
        })
    }

    /// Checks a `draw` before its pixels are read from the guest: the
    /// rectangle is inside, `len` bytes are its pixels.
    pub fn display_check_draw(
        &mut self,
        handle: u32,
        (x, y, w, h): (u32, u32, u32, u32),
        len: usize,
    ) -> Result<(), DisplayError> {
        let g = self.frames_mut(handle)?.geometry;
        let (_, row) = rect(g, x, y, w, h)?;
        if (row as u64).checked_mul(u64::from(h)) != Some(len as u64) {
            return Err(DisplayError::BadLength);
        }
        Ok(())
    }

    /// `display.draw`: copies rows of pixels into the canvas.
    pub fn display_draw(
        &mut self,
        handle: u32,
        (x, y, w, h): (u32, u32, u32, u32),
        pixels: &[u8],
    ) -> Result<(), DisplayError> {
        self.display_check_draw(handle, (x, y, w, h), pixels.len())?;
        let frames = self.frames_mut(handle)?;
        let (start, row) = rect(frames.geometry, x, y, w, h)?;
        if row == 0 {
            return Ok(());
        }
        let stride = frames.geometry.row_bytes();
        let canvas = Arc::make_mut(&mut frames.canvas);
        for (k, src) in pixels.chunks_exact(row).enumerate() {
            let at = start + k * stride;
            canvas[at..at + row].copy_from_slice(src);
        }
        Ok(())
    }

    /// `display.fill`: a rectangle of one colour.
    pub fn display_fill(
        &mut self,
        handle: u32,
        (x, y, w, h): (u32, u32, u32, u32),
        rgb: u32,
    ) -> Result<(), DisplayError> {
        let frames = self.frames_mut(handle)?;
        let (start, row) = rect(frames.geometry, x, y, w, h)?;
        if row == 0 || h == 0 {
            return Ok(());
        }
        let (bytes, n) = frames.geometry.format.encode(rgb);
        let pixel = &bytes[..n];
        let stride = frames.geometry.row_bytes();
        let canvas = Arc::make_mut(&mut frames.canvas);
        for k in 0..h as usize {
            let at = start + k * stride;
            for p in canvas[at..at + row].chunks_exact_mut(n) {
                p.copy_from_slice(pixel);
            }
        }
        Ok(())
    }

    /// `display.flush`: the canvas becomes what the display shows, once
    /// the call is durable.
    pub fn display_flush(&mut self, handle: u32) -> Result<(), DisplayError> {
        self.frames_mut(handle)?;
        self.device_op("a display's presence", |d| d.present(handle))
            .map_err(device)?;
        let frames = self.frames_mut(handle)?;
        let frame = frames.canvas.clone();
        frames.shown = Some(frame.clone());
        frames.flushes += 1;
        let flush = frames.flushes;
        self.supersede(handle);
        self.exit(Output::Device(DeviceEffect::DisplayFrame {
            handle,
            flush,
            frame: Some(FrameBytes(frame)),
        }));
        Ok(())
    }

    /// Drops the pixels of every frame of display `handle` not yet
    /// released (in this call's outbox and held): a newer one follows.
    fn supersede(&mut self, handle: u32) {
        let held = self.journal.state.held.iter_mut().map(|h| &mut h.output);
        for o in held.chain(self.outbox.outputs_mut()) {
            if let Output::Device(DeviceEffect::DisplayFrame {
                handle: h, frame, ..
            }) = o
                && *h == handle
            {
                *frame = None;
            }
        }
    }

    /// Whether a frame of display `handle` waits to be shown.
    fn frame_pending(&mut self, handle: u32) -> bool {
        let held = self.journal.state.held.iter_mut().map(|h| &mut h.output);
        held.chain(self.outbox.outputs_mut()).any(|o| {
            matches!(o, Output::Device(DeviceEffect::DisplayFrame { handle: h, frame: Some(_), .. }) if *h == handle)
        })
    }

    /// `display.close`: the display keeps what it shows (a frame flushed
    /// and not yet released is still shown).
    pub fn display_close(&mut self, handle: u32) -> bool {
        if !self
            .devices
            .forget(handle, |k| matches!(k, OpenKind::Display { .. }))
        {
            return false;
        }
        self.devices.displays.displays.remove(&handle);
        if !self.frame_pending(handle) {
            self.devices.acquired.remove(&handle);
        }
        true
    }
}

/// Adds `phantom:devices/display` to the linker.
pub fn add_to_linker(linker: &mut Linker<ProcessCtx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    i.func_wrap(
        "open",
        |mut s: StoreContextMut<'_, ProcessCtx>, (name,): (String,)| {
            Ok((s.data_mut().display_open(&name),))
        },
    )?;
    i.func_wrap(
        "info",
        |mut s: StoreContextMut<'_, ProcessCtx>, (d,): (u32,)| Ok((s.data_mut().display_info(d),)),
    )?;
    i.func_wrap(
        "draw",
        |mut s: StoreContextMut<'_, ProcessCtx>,
         (d, x, y, w, h, pixels): (u32, u32, u32, u32, u32, WasmList<u8>)| {
            // Checked before a byte is copied out of the guest: a wrong
            // length or rectangle costs nothing.
            if let Err(e) = s
                .data_mut()
                .display_check_draw(d, (x, y, w, h), pixels.len())
            {
                return Ok((Err(e),));
            }
            let bytes = pixels.as_le_slice(&s).to_vec();
            Ok((s.data_mut().display_draw(d, (x, y, w, h), &bytes),))
        },
    )?;
    i.func_wrap(
        "fill",
        |mut s: StoreContextMut<'_, ProcessCtx>,
         (d, x, y, w, h, rgb): (u32, u32, u32, u32, u32, u32)| {
            Ok((s.data_mut().display_fill(d, (x, y, w, h), rgb),))
        },
    )?;
    i.func_wrap(
        "flush",
        |mut s: StoreContextMut<'_, ProcessCtx>, (d,): (u32,)| Ok((s.data_mut().display_flush(d),)),
    )?;
    i.func_wrap(
        "close",
        |mut s: StoreContextMut<'_, ProcessCtx>, (d,): (u32,)| Ok((s.data_mut().display_close(d),)),
    )?;
    Ok(())
}

/// A frame `phantom display` renders.
#[derive(Clone, Debug)]
pub struct RenderedFrame {
    /// The grant's name.
    pub name: String,
    /// Size and format.
    pub geometry: Geometry,
    /// The pixels.
    pub pixels: Vec<u8>,
    /// Where it came from: `live` (the device's file) or `checkpoint <id>`.
    pub source: String,
}

/// The frame display `name` of the process in `dir` shows (`None`: its
/// only display grant): a simulated display's live frame, from the file
/// the host writes at every frame it shows, unless `from_checkpoint` or
/// there is no such file; else the last frame flushed as of the newest
/// checkpoint.
pub fn rendered_frame(
    dir: &Path,
    name: Option<&str>,
    from_checkpoint: bool,
) -> Result<RenderedFrame, String> {
    let devices = Devices::load(dir)?;
    let grants = &devices.manifest.display;
    let (name, grant) = match name {
        Some(n) => grants
            .iter()
            .find(|(g, _)| g.as_str() == n)
            .ok_or_else(|| format!("the process has no display granted as `{n}`"))?,
        None => {
            let mut all = grants.iter();
            match (all.next(), all.next()) {
                (Some(one), None) => one,
                (None, _) => return Err("the process has no display granted".into()),
                _ => {
                    let names: Vec<&str> = grants.keys().map(|g| g.as_str()).collect();
                    return Err(format!(
                        "the process has {} displays ({}): name one with --device",
                        names.len(),
                        names.join(", ")
                    ));
                }
            }
        }
    };
    let name = name.as_str().to_string();
    if !from_checkpoint && grant.device.backend == Backend::Sim {
        let file = phantom_devices::sim::framebuffer_file(dir, &grant.device.path);
        match std::fs::read(&file) {
            Ok(bytes) => {
                let f = phantom_devices::display::FrameFile::decode(&bytes)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                return Ok(RenderedFrame {
                    name,
                    geometry: f.geometry,
                    pixels: f.pixels,
                    source: "live".into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        }
    }
    let store = phantom_snapshots::CheckpointStore::open(dir)
        .map_err(|e| format!("cannot open the checkpoints of {}: {e}", dir.display()))?;
    let id = store.latest_id().ok_or("the process has no checkpoint")?;
    let sections = store
        .sections_of(id)
        .map_err(|e| format!("checkpoint {id}: {e}"))?;
    let parts = crate::persist::HostParts::restore(&sections)
        .map_err(|e| format!("checkpoint {id}: {e}"))?;
    let open = parts
        .devices
        .open
        .iter()
        .rev()
        .find(|d| d.name == name && matches!(d.kind, OpenKind::Display { .. }))
        .ok_or_else(|| format!("display `{name}` is not open at checkpoint {id}"))?;
    let frames = parts
        .displays
        .displays
        .get(&open.handle)
        .ok_or_else(|| format!("checkpoint {id} has no pixels of display `{name}`"))?;
    let shown = frames
        .shown
        .as_ref()
        .ok_or_else(|| format!("display `{name}` was never flushed as of checkpoint {id}"))?;
    Ok(RenderedFrame {
        name,
        geometry: frames.geometry,
        pixels: shown.to_vec(),
        source: format!("checkpoint {id}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_are_inside_or_refused() {
        let g = Geometry::new(4, 3, PixelFormat::Rgb565).unwrap();
        assert_eq!(rect(g, 0, 0, 4, 3), Ok((0, 8)));
        assert_eq!(rect(g, 1, 2, 3, 1), Ok((2 * 8 + 2, 6)));
        assert_eq!(rect(g, 4, 3, 0, 0), Ok((3 * 8 + 8, 0)));
        for (x, y, w, h) in [
            (0, 0, 5, 1),
            (0, 0, 1, 4),
            (4, 0, 1, 1),
            (u32::MAX, 0, 2, 1),
            (0, u32::MAX, 1, u32::MAX),
            (1, 1, u32::MAX, 1),
        ] {
            assert_eq!(
                rect(g, x, y, w, h),
                Err(DisplayError::OutOfBounds),
                "{x} {y} {w} {h}"
            );
        }
    }
}
