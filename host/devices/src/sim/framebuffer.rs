//! A simulated framebuffer: a size and format it is configured to, the
//! frame it shows, a log of every operation, and (optionally) a file it
//! keeps the frame in, as a Linux framebuffer is a file (`FrameFile`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::display::{FrameFile, Geometry};

/// One operation that reached the framebuffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramebufferOp {
    /// It was set to a size and format.
    Configure(Geometry),
    /// A frame was shown.
    Show {
        /// FNV-1a 64 of its pixels.
        checksum: u64,
    },
}

/// Why a simulated framebuffer operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimFramebufferError {
    /// It was unplugged.
    #[error("the framebuffer is gone")]
    Lost,
    /// A frame that is not the configured size, or shown before any
    /// configuration.
    #[error("the frame does not fit the framebuffer's configuration")]
    WrongSize,
}

struct FramebufferState {
    geometry: Option<Geometry>,
    frame: Option<Arc<Vec<u8>>>,
    log: Vec<FramebufferOp>,
    lost: bool,
    file: Option<PathBuf>,
    file_error: Option<String>,
}

/// A framebuffer; clones share it.
#[derive(Clone)]
pub struct SimFramebuffer {
    state: Arc<Mutex<FramebufferState>>,
}

/// FNV-1a, 64 bits: a frame's checksum in the log.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl SimFramebuffer {
    /// A framebuffer that keeps its frame in `file` (None: in memory only).
    pub fn new(file: Option<PathBuf>) -> Self {
        SimFramebuffer {
            state: Arc::new(Mutex::new(FramebufferState {
                geometry: None,
                frame: None,
                log: Vec::new(),
                lost: false,
                file,
                file_error: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FramebufferState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets its size and format. A change clears what it shows.
    pub fn configure(&self, geometry: Geometry) -> Result<(), SimFramebufferError> {
        let mut s = self.lock();
        if s.lost {
            return Err(SimFramebufferError::Lost);
        }
        if s.geometry != Some(geometry) {
            s.frame = None;
        }
        s.geometry = Some(geometry);
        super::push_log(&mut s.log, FramebufferOp::Configure(geometry));
        Ok(())
    }

    /// Shows `frame` (whole, rows top to bottom) and writes it to the
    /// file, if it has one. A file that cannot be written does not fail the
    /// device (the frame is shown); `file_error` says why.
    pub fn show(&self, frame: Arc<Vec<u8>>) -> Result<(), SimFramebufferError> {
        let mut s = self.lock();
        if s.lost {
            return Err(SimFramebufferError::Lost);
        }
        let Some(geometry) = s.geometry.filter(|g| g.frame_bytes() == frame.len()) else {
            return Err(SimFramebufferError::WrongSize);
        };
        super::push_log(
            &mut s.log,
            FramebufferOp::Show {
                checksum: checksum(&frame),
            },
        );
        if let Some(file) = s.file.clone() {
            let bytes = FrameFile {
                geometry,
                pixels: frame.to_vec(),
            }
            .encode();
            s.file_error = write_atomically(&file, &bytes).err().map(|e| e.to_string());
        }
        s.frame = Some(frame);
        Ok(())
    }

    /// Whether it is still there.
    pub fn present(&self) -> Result<(), SimFramebufferError> {
        if self.lock().lost {
            Err(SimFramebufferError::Lost)
        } else {
            Ok(())
        }
    }

    /// Unplugs it: every later operation fails as lost.
    pub fn unplug(&self) {
        self.lock().lost = true;
    }

    /// Moves its file to `file` (the process directory was renamed).
    pub fn set_file(&self, file: Option<PathBuf>) {
        self.lock().file = file;
    }

    /// Its size and format, if configured.
    pub fn geometry(&self) -> Option<Geometry> {
        self.lock().geometry
    }

    /// The frame it shows.
    pub fn frame(&self) -> Option<Arc<Vec<u8>>> {
        self.lock().frame.clone()
    }

    /// Every operation so far.
    pub fn log(&self) -> Vec<FramebufferOp> {
        self.lock().log.clone()
    }

    /// Why the last frame could not be written to the file, if it could not.
    pub fn file_error(&self) -> Option<String> {
        self.lock().file_error.clone()
    }
}

/// Writes `bytes` to a temporary file next to `path` and renames it over
/// `path`, so a reader sees the old frame or the new one, never half. Not
/// synced: a framebuffer's contents do not survive a power cut either (a
/// restore shows the frame again).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the framebuffer file has no name"))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::PixelFormat;

    #[test]
    fn configure_show_log_file_and_unplug() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("sim-fb.fb");
        let fb = SimFramebuffer::new(Some(path.clone()));
        let g = Geometry::new(2, 1, PixelFormat::Rgb888).unwrap();
        let frame = Arc::new(vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(fb.show(frame.clone()), Err(SimFramebufferError::WrongSize));
        fb.configure(g).unwrap();
        assert_eq!(
            fb.show(Arc::new(vec![0; 5])),
            Err(SimFramebufferError::WrongSize)
        );
        fb.show(frame.clone()).unwrap();
        assert_eq!(fb.frame().as_deref(), Some(&*frame));
        assert_eq!(
            fb.log(),
            [
                FramebufferOp::Configure(g),
                FramebufferOp::Show {
                    checksum: checksum(&frame)
                }
            ]
        );
        let file = FrameFile::decode(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!((file.geometry, file.pixels), (g, frame.to_vec()));
        assert!(fb.file_error().is_none());
        // Configured the same: the frame stays; differently: it goes.
        fb.configure(g).unwrap();
        assert!(fb.frame().is_some());
        fb.configure(Geometry::new(1, 1, PixelFormat::Gray8).unwrap())
            .unwrap();
        assert!(fb.frame().is_none());
        // A file that cannot be written does not fail the device.
        fb.set_file(Some(dir.join("no-such-dir/sim-fb.fb")));
        fb.show(Arc::new(vec![7])).unwrap();
        assert!(fb.file_error().is_some());
        fb.unplug();
        assert_eq!(fb.present(), Err(SimFramebufferError::Lost));
        assert_eq!(fb.show(Arc::new(vec![7])), Err(SimFramebufferError::Lost));
        assert_eq!(fb.configure(g), Err(SimFramebufferError::Lost));
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
    }
}
