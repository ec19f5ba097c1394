//! `PvmProcess`: the VM as a persistent-process body. The host calls
//! [`PvmProcess::run_slice`] repeatedly with a clock and an instruction
//! budget; green threads run round-robin in quanta inside each slice.
//!
//! ```text
//!   init(args, files) ─► Vm + first thread
//!   run_slice(now, budget, out) ─► wake sleepers ─► run quanta ─► GC ─► SliceOutcome
//! ```

use crate::heap::Ref;
use crate::vm::{ClassDir, Stop, ThreadState, Vm, VmConfig};

/// Outcome of one bounded slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceOutcome {
    /// Runnable threads remain; call again.
    Busy,
    /// Every live thread sleeps; nothing to do before `until_ns`.
    Sleeping { until_ns: u64 },
    /// Threads remain but all are blocked with no timer (a deadlock).
    Idle,
    /// All threads have ended.
    Finished { exit_code: i32 },
    /// The VM stopped: a panic or an unhandled exception.
    Failed { message: String },
}

/// Name of the boot class run when no arguments are given.
pub const BOOT_CLASS: &str = ".ru.dz.phantom.system.boot";
/// Method the boot class and runnables start in.
pub const ENTRY_METHOD: u32 = 8;

/// A PVM as a persistent-process body.
#[derive(Debug, Clone)]
pub struct PvmProcess {
    vm: Vm,
    next: usize,
    done: Option<SliceOutcome>,
}

fn parse_args(args: &[String]) -> Result<Option<(String, u32)>, String> {
    match args {
        [] => Ok(None),
        [c, name, m, ord] if c == "--class" && m == "--method" => {
            let ord = ord
                .parse::<u32>()
                .map_err(|_| format!("bad method ordinal `{ord}`"))?;
            Ok(Some((name.clone(), ord)))
        }
        _ => Err(format!(
            "unsupported arguments {args:?}; use none or --class NAME --method ORDINAL"
        )),
    }
}

impl PvmProcess {
    /// Boots the VM. `[]` runs `.ru.dz.phantom.system.boot` method 8 with
    /// a boot object; `["--class", NAME, "--method", N]` creates an instance
    /// of NAME, stores a boot object in field 0 and runs method N on a new
    /// thread, passing the boot object as the first argument if the class's
    /// signature record says the method takes arguments (others are null).
    pub fn init(
        args: &[String],
        files: Vec<(String, Vec<u8>)>,
        config: VmConfig,
    ) -> Result<PvmProcess, String> {
        Self::init_with_natives(args, files, config, &[])
    }

    /// [`PvmProcess::init`] with extra internal classes of the embedder.
    pub fn init_with_natives(
        args: &[String],
        files: Vec<(String, Vec<u8>)>,
        config: VmConfig,
        natives: &'static [crate::natives::NativeClass],
    ) -> Result<PvmProcess, String> {
        let target = parse_args(args)?;
        let dir = ClassDir::new(files).map_err(|e| e.to_string())?;
        let mut vm = Vm::new(dir, config);
        vm.add_native_classes(natives);
        let (name, ordinal) = target.unwrap_or_else(|| (BOOT_CLASS.to_string(), ENTRY_METHOD));
        let bytes = vm
            .classes
            .find(&name)
            .ok_or_else(|| format!("class {name} not found"))?
            .to_vec();
        let n_args = match crate::classfile::parse(&bytes) {
            Ok(file) => file
                .arg_count(ordinal as i32)
                .unwrap_or(usize::from(args.is_empty())),
            Err(e) => return Err(format!("cannot load {name}: {e}")),
        };
        let class = vm
            .load_class_by_name(name.as_bytes())
            .map_err(|e| format!("cannot load {name}: {e}"))?
            .ok_or_else(|| format!("class {name} not found"))?;
        let this = vm
            .instantiate(class)
            .map_err(|t| format!("cannot create {name}: {t:?}"))?;
        let boot = vm.boot_object;
        if let crate::heap::Kind::Plain(fields) = &mut vm.heap.get_mut(this).kind
            && let Some(f0) = fields.first_mut()
        {
            *f0 = boot;
        }
        let mut call_args = vec![Ref::NULL; n_args.min(255)];
        if let Some(a0) = call_args.first_mut() {
            *a0 = boot;
        }
        vm.spawn(this, ordinal, &call_args).map_err(|t| {
            let why = match t {
                crate::vm::Trap::Panic(m) | crate::vm::Trap::ThrowMsg(m) => m,
                other => format!("{other:?}"),
            };
            format!("cannot start {name}.{ordinal}: {why}")
        })?;
        Ok(PvmProcess {
            vm,
            next: 0,
            done: None,
        })
    }

    /// Runs threads for at most `budget` instructions; console output is
    /// appended to `out`. `now_ns` is the host's monotonic clock.
    pub fn run_slice(&mut self, now_ns: u64, budget: u64, out: &mut Vec<u8>) -> SliceOutcome {
        if let Some(done) = &self.done {
            return done.clone();
        }
        let vm = &mut self.vm;
        vm.now_ns = vm.now_ns.max(now_ns);
        for t in &mut vm.threads {
            if let ThreadState::Sleeping(until) = t.state
                && until <= vm.now_ns
            {
                t.state = ThreadState::Runnable;
            }
        }
        vm.fire_connection_timers();
        let start = vm.instructions;
        let mut outcome = None;
        while vm.instructions - start < budget {
            let n = vm.threads.len();
            let Some(pick) = (0..n)
                .map(|i| (self.next + i) % n)
                .find(|&i| vm.threads[i].state == ThreadState::Runnable)
            else {
                break;
            };
            self.next = pick + 1;
            vm.current = pick;
            let quantum = vm.config.quantum.min(budget - (vm.instructions - start));
            let mut frames = std::mem::take(&mut vm.threads[pick].frames);
            let stop = vm.execute(&mut frames, quantum);
            vm.threads[pick].frames = frames;
            match stop {
                Stop::Quantum => {}
                Stop::Ended(_) => {
                    let t = vm.threads.remove(pick);
                    for f in t.frames {
                        vm.recycle(f);
                    }
                    self.next = pick;
                }
                Stop::Sleep(until) => vm.threads[pick].state = ThreadState::Sleeping(until),
                Stop::Blocked(m) => vm.threads[pick].state = ThreadState::WaitMutex(m),
                Stop::Unhandled(o) => {
                    let text = vm.describe(o);
                    vm.console
                        .extend_from_slice(format!("Unhandled exception: {text}\n").as_bytes());
                    outcome = Some(SliceOutcome::Failed {
                        message: format!("Unhandled exception: {text}"),
                    });
                    break;
                }
                Stop::Panic(m) => {
                    vm.console
                        .extend_from_slice(format!("pvm panic: {m}\n").as_bytes());
                    outcome = Some(SliceOutcome::Failed { message: m });
                    break;
                }
                Stop::Exit(code) => {
                    outcome = Some(SliceOutcome::Finished { exit_code: code });
                    break;
                }
            }
            let cells: usize = vm.threads.get(pick).map_or(0, |t| {
                t.frames.iter().map(|f| f.os.len() + f.is.len()).sum()
            });
            if cells > vm.config.max_stack_cells {
                let message = format!("stack overflow: {cells} stack cells");
                vm.console
                    .extend_from_slice(format!("pvm panic: {message}\n").as_bytes());
                outcome = Some(SliceOutcome::Failed { message });
                break;
            }
            vm.maybe_collect();
            if vm.heap.live() > vm.config.max_heap_objects {
                // Said on the console, as every other VM panic is.
                let message = format!(
                    "out of memory: {} live objects, over the limit of {}",
                    vm.heap.live(),
                    vm.config.max_heap_objects
                );
                vm.console
                    .extend_from_slice(format!("pvm panic: {message}\n").as_bytes());
                outcome = Some(SliceOutcome::Failed { message });
                break;
            }
        }
        out.append(&mut vm.console);
        let outcome = outcome.unwrap_or_else(|| {
            // An armed timer connection will start a callback thread.
            let timers = vm.conn_timers.iter().map(|t| t.0);
            if vm.threads.is_empty() && vm.conn_timers.is_empty() {
                SliceOutcome::Finished { exit_code: 0 }
            } else if vm.threads.iter().any(|t| t.state == ThreadState::Runnable) {
                SliceOutcome::Busy
            } else {
                let until = vm.threads.iter().filter_map(|t| match t.state {
                    ThreadState::Sleeping(u) => Some(u),
                    _ => None,
                });
                match until.chain(timers).min() {
                    Some(until_ns) => SliceOutcome::Sleeping { until_ns },
                    None => SliceOutcome::Idle,
                }
            }
        });
        if matches!(
            outcome,
            SliceOutcome::Finished { .. } | SliceOutcome::Failed { .. }
        ) {
            self.done = Some(outcome.clone());
        }
        outcome
    }

    /// Bytecodes executed so far (nested runs included).
    pub fn instructions_executed(&self) -> u64 {
        self.vm.instructions
    }

    /// Garbage collector counters.
    pub fn gc_stats(&self) -> crate::GcStats {
        self.vm.gc_stats()
    }

    /// Makes the screen `width` x `height` (the display's size); false,
    /// and nothing changed, if that is empty or above
    /// [`crate::screen::MAX_SCREEN_PIXELS`].
    pub fn set_screen_size(&mut self, width: u32, height: u32) -> bool {
        self.vm.screen.set_size(width, height)
    }

    /// The screen (desktop, background, every live window and tty) as
    /// `0xAARRGGBB` pixels in rows top to bottom, if something shown
    /// changed since the last call; `None` otherwise.
    pub fn take_frame(&mut self) -> Option<Vec<u32>> {
        if !self.vm.screen.dirty {
            return None;
        }
        self.vm.screen.dirty = false;
        Some(self.vm.screen.compose_top_down(&self.vm.heap))
    }

    /// The VM, for inspection.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The VM, mutably (tests, explicit collections).
    pub fn vm_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }

    /// Runs slices until the process finishes or fails, for tests and
    /// tools; sleeping advances the given fake clock. Gives up (returning
    /// the last outcome) after `max_slices`.
    pub fn run_to_end(
        &mut self,
        budget: u64,
        max_slices: usize,
        out: &mut Vec<u8>,
    ) -> SliceOutcome {
        let mut now = self.vm.now_ns;
        let mut last = SliceOutcome::Busy;
        for _ in 0..max_slices {
            last = self.run_slice(now, budget, out);
            match last {
                SliceOutcome::Busy => {}
                SliceOutcome::Sleeping { until_ns } => now = now.max(until_ns),
                _ => return last,
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    /// The component wrapper keeps the process in a global.
    #[test]
    fn process_is_send() {
        fn is_send<T: Send>() {}
        is_send::<super::PvmProcess>();
    }
}
