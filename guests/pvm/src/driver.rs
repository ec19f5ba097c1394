//! The PVM guest's driver, shared by every PVM guest (`guests/pvm`, and
//! `guests/pvm-stats`, which includes this file with `#[path]`): `init`
//! loads the class files and starts a thread; every `handle(resume)` runs
//! one bounded slice of the VM's green threads; a slice where all threads
//! sleep sets a one-shot timer for the earliest wake-up and goes idle.
//!
//! The including crate defines `static NATIVES: [NativeClass; N]`: its
//! extra internal classes (none for the plain VM), and `type ScreenImpl`:
//! where the VM's screen (its windows and ttys) is shown, [`NoScreen`]
//! for nowhere (`guests/pvm-display` shows it on a display). The VM keeps a
//! reference to that static in linear memory, which is checkpointed with
//! the rest; a restore is refused unless the component is the same binary,
//! so the function pointers in it stay valid.

use phantom_sdk::{File, Process, Status, TimerId, clocks, console, timers};
use pvm_vm::{PvmProcess, SliceOutcome, VmConfig};
use std::time::Duration;

/// Bytecodes per slice: small enough that a slice takes a few milliseconds,
/// so the host can checkpoint and deliver events often.
const SLICE_BUDGET: u64 = 200_000;

/// Shortest time between two frames shown while the VM is busy (30 per
/// second): a program that updates its windows in a tight loop does not
/// send a whole screen every slice.
const FRAME_INTERVAL_NS: u64 = 33_000_000;

/// Where the VM's screen is shown.
pub trait Screen: Sized + 'static {
    /// Opens it, taking the arguments it understands out of `args`; with
    /// its size, or `None` if there is nothing to show frames on.
    fn open(args: &mut Vec<String>) -> Result<Option<(Self, u32, u32)>, String>;

    /// Shows a frame: `0xAARRGGBB` pixels, rows top to bottom, of the size
    /// `open` gave.
    fn show(&mut self, frame: &[u32]);
}

/// No screen: windows are drawn in the VM's memory only.
#[allow(
    dead_code,
    reason = "pvm-display includes this file and shows its frames on a display instead"
)]
pub struct NoScreen;

impl Screen for NoScreen {
    fn open(_args: &mut Vec<String>) -> Result<Option<(Self, u32, u32)>, String> {
        Ok(None)
    }

    fn show(&mut self, _frame: &[u32]) {}
}

/// The VM as a process.
pub struct Pvm {
    vm: PvmProcess,
    status: Status,
    wake: Option<TimerId>,
    screen: Option<crate::ScreenImpl>,
    /// When the last frame was shown (monotonic ns).
    last_frame_ns: u64,
}

impl Pvm {
    fn slice(&mut self) {
        let now = clocks::monotonic_now().as_nanos() as u64;
        let mut out = Vec::new();
        let outcome = self.vm.run_slice(now, SLICE_BUDGET, &mut out);
        console::write(&out);
        // What was drawn: at most one frame per FRAME_INTERVAL while the VM
        // stays busy, and always before it waits or ends.
        let pausing = !matches!(outcome, SliceOutcome::Busy);
        if let Some(screen) = &mut self.screen
            && (pausing || now.saturating_sub(self.last_frame_ns) >= FRAME_INTERVAL_NS)
            && let Some(frame) = self.vm.take_frame()
        {
            screen.show(&frame);
            self.last_frame_ns = now;
        }
        self.status = match outcome {
            SliceOutcome::Busy => Status::Busy,
            SliceOutcome::Sleeping { until_ns } => {
                let delay = Duration::from_nanos(until_ns.saturating_sub(now).max(1_000_000));
                self.wake = timers::one_shot(delay).ok();
                // Without a timer the VM could never wake: keep slicing.
                if self.wake.is_some() {
                    Status::Idle
                } else {
                    Status::Busy
                }
            }
            SliceOutcome::Idle => Status::Idle,
            SliceOutcome::Finished { exit_code } => Status::Exit(exit_code),
            // The VM has already printed `Unhandled exception: ...` or
            // `pvm panic: ...` into `out`.
            SliceOutcome::Failed { .. } => Status::Exit(1),
        };
    }
}

impl Process for Pvm {
    fn init(mut args: Vec<String>, files: Vec<File>) -> Result<Self, String> {
        let screen = <crate::ScreenImpl as Screen>::open(&mut args)?;
        let files = files.into_iter().map(|f| (f.name, f.data)).collect();
        let mut vm =
            PvmProcess::init_with_natives(&args, files, VmConfig::default(), &crate::NATIVES)?;
        let screen = match screen {
            Some((screen, width, height)) => {
                if !vm.set_screen_size(width, height) {
                    return Err(format!(
                        "the display's size {width}x{height} is too large for the PVM's screen"
                    ));
                }
                Some(screen)
            }
            None => None,
        };
        Ok(Pvm {
            vm,
            status: Status::Busy,
            wake: None,
            screen,
            last_frame_ns: 0,
        })
    }

    fn on_resume(&mut self) {
        self.slice();
    }

    fn on_timer(&mut self, id: TimerId) {
        if self.wake == Some(id) {
            self.wake = None;
            self.slice();
        }
    }

    fn status(&self) -> Status {
        self.status
    }
}
