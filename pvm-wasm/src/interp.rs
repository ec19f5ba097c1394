//! The interpreter loop (spec §2): instruction dispatch, the three call
//! forms, `sys`, exceptions and the long/float/double prefixes.
//!
//! ```text
//!   execute(frames, budget) ─► run() ─► run_frame: insns[ip] ─ match key ─┐
//!        ▲      │        ▲                (hot opcodes, state in locals)  │
//!        │      │        └── Vm::exit ◄───────────────────────────────────┘
//!        │      │             ├─ Call: push Frame    ├─ Ret: pop Frame
//!        │      │             ├─ Sys: natives::call  ├─ Cold: Vm::cold (rare opcodes)
//!        │      │             └─ PushInt/PushObj: grow a full stack
//!        │      └─ Trap::Throw ─► unwind (catchers)
//!        └── Stop { Quantum | Ended | Sleep | Blocked | Unhandled | Panic | Exit }
//! ```
//!
//! All state lives in the frames (IP included), so a slice can stop between
//! any two instructions. DESIGN.md ("The dispatch loop") says why the loop
//! is shaped this way.

use crate::code::Code;
use crate::heap::{Kind, Ref, flags};
use crate::natives::{self, Native};
use crate::opcode::op;
use crate::stack::Stack;
use crate::vm::{Frame, Frames, Stop, Trap, Vm, ic};

/// The float/double arm of a typed arithmetic or comparison opcode on the
/// integer stack `$is`: pops `u` then `l` with `$pop`, pushes the result
/// with `$push` (or an int boolean for comparisons).
macro_rules! ieee_arith {
    ($opcode:expr, $is:expr, $pop:ident, $push:ident) => {{
        let is = $is;
        let u = $pop(is)?;
        let l = $pop(is)?;
        match $opcode {
            op::ISUM => $push(is, l + u),
            op::IMUL => $push(is, l * u),
            op::ISUBUL => $push(is, u - l),
            op::ISUBLU => $push(is, l - u),
            op::IDIVUL => $push(is, u / l),
            op::IDIVLU => $push(is, l / u),
            op::IGE => is.push(bool_i(l >= u)),
            op::ILE => is.push(bool_i(l <= u)),
            op::IGT => is.push(bool_i(l > u)),
            _ => is.push(bool_i(l < u)),
        }
    }};
}

const PREFIX_LONG: u8 = 1;
const PREFIX_FLOAT: u8 = 2;
const PREFIX_DOUBLE: u8 = 3;

#[cold]
#[inline(never)]
fn underflow() -> Trap {
    Trap::Panic("stack underflow".into())
}

/// An error of the dispatch loop: small and `Copy`, so the loop builds no
/// message and calls nothing on its error paths (inside the component every
/// call site makes Cranelift spill what is live across it). The message is
/// made once the loop has exited, by `Trap::from`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    Underflow,
    IpOutside(usize),
    OperandOutside(usize),
    JumpOutside(i64),
    OutOfStack(&'static str),
    NegativeArgCount,
    DivZero,
    InvalidArgCount,
    LoadSlot(usize),
    LoadInternal,
    SaveImmutable,
    SaveSlot(usize),
    SaveInternal,
    UnboxNull,
    UnboxNotNumber,
}

impl From<Fault> for Trap {
    #[cold]
    #[inline(never)]
    fn from(f: Fault) -> Trap {
        match f {
            Fault::Underflow => Trap::Panic("stack underflow".into()),
            Fault::IpOutside(ip) => Trap::Panic(format!("IP {ip} is outside the code")),
            Fault::OperandOutside(ip) => {
                Trap::Panic(format!("operand at {ip} is outside the code"))
            }
            Fault::JumpOutside(t) => Trap::Panic(format!("jump to {t} is outside the code")),
            Fault::OutOfStack(what) => Trap::Panic(format!("{what}: out of stack")),
            Fault::NegativeArgCount => Trap::Panic("negative argument count".into()),
            Fault::DivZero => div0(),
            Fault::InvalidArgCount => Trap::ThrowMsg("invalid arg count".into()),
            Fault::LoadSlot(slot) => Trap::Panic(format!("load: slot {slot} is out of bounds")),
            Fault::LoadInternal => Trap::Panic("attempt to load from internal".into()),
            Fault::SaveImmutable => Trap::Panic("attempt to save to immutable object".into()),
            Fault::SaveSlot(slot) => Trap::Panic(format!("save: slot {slot} is out of bounds")),
            Fault::SaveInternal => Trap::Panic("attempt to save to internal".into()),
            Fault::UnboxNull => Trap::ThrowMsg("o2i(null)".into()),
            Fault::UnboxNotNumber => Trap::ThrowMsg("o2i: not a number".into()),
        }
    }
}

/// The running frame's code and IP, held in locals by the dispatch loop.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    code: &'a [u8],
    pc: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn u8(&mut self) -> Result<u8, Fault> {
        match self.code.get(self.pc) {
            Some(&b) => {
                self.pc += 1;
                Ok(b)
            }
            None => Err(Fault::IpOutside(self.pc)),
        }
    }

    #[inline(always)]
    fn i32(&mut self) -> Result<i32, Fault> {
        match self.code.get(self.pc..self.pc + 4) {
            Some(b) => {
                self.pc += 4;
                Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            None => Err(Fault::OperandOutside(self.pc)),
        }
    }

    #[inline(always)]
    fn i64(&mut self) -> Result<i64, Fault> {
        let hi = self.i32()? as u32 as u64;
        let lo = self.i32()? as u32 as u64;
        Ok(((hi << 32) | lo) as i64)
    }

    /// A relative jump operand resolved to an absolute offset.
    #[inline(always)]
    fn rel(&mut self) -> Result<usize, Fault> {
        let at = self.pc as i64;
        let target = at + i64::from(self.i32()?);
        usize::try_from(target).map_err(|_| Fault::JumpOutside(target))
    }

    #[inline(always)]
    fn bytes(&mut self) -> Result<Vec<u8>, Trap> {
        let n = self.i32()?;
        let (s, end) = string_operand(self.code, self.pc, n)?;
        self.pc = end;
        Ok(s)
    }
}

/// A string operand of `n` bytes at `pc`, and the IP after it.
#[inline(never)]
fn string_operand(code: &[u8], pc: usize, n: i32) -> Result<(Vec<u8>, usize), Trap> {
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| pc.checked_add(n))
        .filter(|&e| e <= code.len());
    let end = end.ok_or_else(|| Trap::Panic("string operand is outside the code".into()))?;
    Ok((code[pc..end].to_vec(), end))
}

#[inline(always)]
fn ipop(is: &mut Stack<i32>) -> Result<i32, Trap> {
    is.pop().ok_or_else(underflow)
}

#[inline(always)]
fn opop(os: &mut Stack<Ref>) -> Result<Ref, Trap> {
    os.pop().ok_or_else(underflow)
}

fn lpop(is: &mut Stack<i32>) -> Result<i64, Trap> {
    let lo = ipop(is)? as u32 as u64;
    let hi = ipop(is)? as u32 as u64;
    Ok(((hi << 32) | lo) as i64)
}

fn lpush(is: &mut Stack<i32>, v: i64) {
    is.push((v >> 32) as i32);
    is.push(v as i32);
}

fn fpop(is: &mut Stack<i32>) -> Result<f32, Trap> {
    Ok(f32::from_bits(ipop(is)? as u32))
}

fn fpush(is: &mut Stack<i32>, v: f32) {
    is.push(v.to_bits() as i32);
}

fn dpop(is: &mut Stack<i32>) -> Result<f64, Trap> {
    Ok(f64::from_bits(lpop(is)? as u64))
}

fn dpush(is: &mut Stack<i32>, v: f64) {
    lpush(is, v.to_bits() as i64);
}

#[inline(always)]
fn abs_slot(abs: i32, len: usize, what: &'static str) -> Result<usize, Fault> {
    match usize::try_from(abs) {
        Ok(a) if a < len => Ok(a),
        _ => Err(Fault::OutOfStack(what)),
    }
}

impl Frame {
    #[inline(always)]
    fn ipop(&mut self) -> Result<i32, Trap> {
        ipop(&mut self.is)
    }

    #[inline(always)]
    fn opop(&mut self) -> Result<Ref, Trap> {
        opop(&mut self.os)
    }
}

fn bool_i(b: bool) -> i32 {
    i32::from(b)
}

#[cold]
#[inline(never)]
fn div0() -> Trap {
    Trap::ThrowMsg("division by zero".into())
}

/// Why the dispatch loop left the running frame (kept in `Vm::exit`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Exit {
    /// The budget ran out.
    #[default]
    Quantum,
    /// A jump's target window is longer than the budget left (nothing of
    /// it is charged).
    Window,
    /// A fault entry of the code (index into `Code::faults`).
    BadCode(u32),
    /// A virtual call: method ordinal, argument count.
    Call(u32, usize),
    Ret,
    Sys(u8),
    /// The integer stack's cells were full: grow it and push this.
    PushInt(i32),
    /// The object stack's cells were full: grow it and push this.
    PushObj(Ref),
    /// `i2o` of this value needs [`Vm::new_int`]'s slow path: box it and
    /// push it.
    NewInt(i32),
    /// `is_save8` of this value to this slot needs [`Vm::new_int`]'s slow
    /// path.
    SaveInt(u32, i32),
    /// An opcode for [`Vm::cold`]; the IP is just past it.
    Cold(u8),
    /// An error.
    Fault(Fault),
}

/// A stack lent to the dispatch loop: its cells, and its depth in a local.
struct Cells<'a, T> {
    cells: &'a mut [T],
    depth: &'a mut usize,
}

/// What the dispatch loop keeps in locals, for [`Vm::run_stepwise`].
#[derive(Clone, Copy)]
struct Registers {
    pc: usize,
    rem: u64,
    isp: usize,
    osp: usize,
}

/// How a call finds its receiver and method.
enum CallForm {
    Virtual,
    Static,
    Dynamic,
}

impl Vm {
    /// Runs `frames` (innermost last) for at most `budget` instructions.
    pub fn execute(&mut self, frames: &mut Frames, budget: u64) -> Stop {
        let mut remaining = budget;
        let stop = loop {
            match self.run(frames, &mut remaining) {
                Ok(stop) => break stop,
                Err(Trap::Throw(o)) => {
                    if !self.unwind(frames, o) {
                        break Stop::Unhandled(o);
                    }
                }
                Err(Trap::ThrowMsg(m)) => {
                    let o = self.new_string(m.into_bytes());
                    if !self.unwind(frames, o) {
                        break Stop::Unhandled(o);
                    }
                }
                Err(Trap::Panic(m)) => break Stop::Panic(self.locate(frames, m)),
                Err(Trap::Exit(c)) => break Stop::Exit(c),
            }
        };
        self.instructions += budget - remaining;
        stop
    }

    fn locate(&self, frames: &[Box<Frame>], message: String) -> String {
        // Located once, where it happened: a panic rising through nested
        // runs keeps the innermost place (not one per level).
        if message.contains(" near IP ") {
            return message;
        }
        match frames.last() {
            Some(f) => format!(
                "{message} (in {}.{} near IP {})",
                self.class_name(self.class_of(f.this)),
                f.ordinal,
                f.ip
            ),
            None => message,
        }
    }

    /// Finds a catcher for `obj` (spec §2.5): newest first, frame by frame.
    /// The catcher stays installed and the ostack is not truncated.
    fn unwind(&mut self, frames: &mut Frames, obj: Ref) -> bool {
        loop {
            let Some(f) = frames.last_mut() else {
                return false;
            };
            if let Some(&(_, target)) =
                f.es.iter()
                    .rev()
                    .find(|(class, _)| self.is_or_child(obj, *class))
            {
                f.ip = target;
                f.os.push(obj);
                return true;
            }
            if frames.len() == 1 {
                return false;
            }
            if let Some(f) = frames.pop() {
                self.recycle(f);
            }
        }
    }

    /// A call: the virtual form inline (the common one), the others out of line.
    #[inline(always)]
    fn call(
        &mut self,
        frames: &mut Frames,
        ordinal: u32,
        n: usize,
        form: CallForm,
    ) -> Result<(), Trap> {
        match form {
            CallForm::Virtual => self.call_virtual(frames, ordinal, n),
            form => self.call_other(frames, ordinal, n, form),
        }
    }

    /// The same steps, in the same order, as `call_other` with `CallForm::Virtual`.
    #[inline(always)]
    fn call_virtual(&mut self, frames: &mut Frames, ordinal: u32, n: usize) -> Result<(), Trap> {
        let depth = frames.len();
        let f = frames.last_mut().ok_or_else(underflow)?;
        let base = f.os.len().checked_sub(n + 1).ok_or_else(underflow)?;
        let this = f.os[base];
        let code = self.method_in(self.class_of(this), ordinal)?;
        if depth >= self.config.max_call_depth {
            return Err(self.depth_exceeded(this, ordinal));
        }
        let new = self.frame(code, this, &f.os.as_slice()[base + 1..], ordinal);
        f.os.truncate(base);
        frames.push(new);
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn depth_exceeded(&self, this: Ref, ordinal: u32) -> Trap {
        Trap::Panic(format!(
            "call depth limit {} exceeded calling {}.{ordinal}",
            self.config.max_call_depth,
            self.class_name(self.class_of(this))
        ))
    }

    #[inline(never)]
    fn call_other(
        &mut self,
        frames: &mut Frames,
        ordinal: u32,
        n: usize,
        form: CallForm,
    ) -> Result<(), Trap> {
        let f = frames.last_mut().ok_or_else(underflow)?;
        let (this, code, ordinal, n) = match form {
            CallForm::Virtual => {
                let base = f.os.len().checked_sub(n + 1).ok_or_else(underflow)?;
                let this = f.os[base];
                (
                    this,
                    self.method_in(self.class_of(this), ordinal)?,
                    ordinal,
                    n,
                )
            }
            CallForm::Static => {
                let class = f.opop()?;
                let this = f.opop()?;
                if !self.is_or_child(this, class) {
                    return Err(Trap::Panic(
                        "static_invoke: non-related class is given".into(),
                    ));
                }
                (this, self.method_in(class, ordinal)?, ordinal, n)
            }
            CallForm::Dynamic => {
                let name = f.opop()?;
                let this = f.opop()?;
                let n = usize::try_from(f.ipop()?)
                    .map_err(|_| Trap::Panic("dynamic invoke: bad count".into()))?;
                let name = self
                    .str_bytes(name)
                    .ok_or_else(|| Trap::Panic("dynamic invoke: name is not a string".into()))?;
                let class = self
                    .class_data(self.class_of(this))
                    .ok_or_else(|| Trap::Panic("no class".into()))?;
                let ordinal = class
                    .method_names
                    .iter()
                    .position(|m| m.as_deref() == Some(name))
                    .ok_or_else(|| {
                        Trap::Panic(format!(
                            "dynamic invoke failed: {}",
                            String::from_utf8_lossy(name)
                        ))
                    })?;
                (
                    this,
                    self.method_in(self.class_of(this), ordinal as u32)?,
                    ordinal as u32,
                    n,
                )
            }
        };
        if frames.len() >= self.config.max_call_depth {
            return Err(Trap::Panic(format!(
                "call depth limit {} exceeded calling {}.{ordinal}",
                self.config.max_call_depth,
                self.class_name(self.class_of(this))
            )));
        }
        let f = frames.last_mut().ok_or_else(underflow)?;
        let base = f.os.len().checked_sub(n).ok_or_else(underflow)?;
        let new = self.frame(code, this, &f.os.as_slice()[base..], ordinal);
        f.os.truncate(base);
        if let CallForm::Virtual = form {
            f.os.pop();
        }
        frames.push(new);
        Ok(())
    }

    fn sys(&mut self, frames: &mut [Box<Frame>], k: u8) -> Result<Option<Stop>, Trap> {
        let f = frames.last_mut().ok_or_else(underflow)?;
        let this = f.this;
        let n = *f.is.last().ok_or_else(underflow)?;
        let n =
            usize::try_from(n).map_err(|_| Trap::Panic("sys: negative argument count".into()))?;
        let base = f.os.len().checked_sub(n).ok_or_else(underflow)?;
        let args: Vec<Ref> = f.os.as_slice()[base..].to_vec();
        let mut class = self.class_of(this);
        let idx = loop {
            let data = self
                .class_data(class)
                .ok_or_else(|| Trap::Panic("sys: no class".into()))?;
            if let Some(idx) = data.internal {
                break idx;
            }
            if k != 0 {
                return Err(Trap::Panic(
                    "find_syscall: not internal class in SYS > 0".into(),
                ));
            }
            class = data.parent;
        };
        let outcome = natives::call(self, idx, k, this, &args)?;
        let f = frames.last_mut().ok_or_else(underflow)?;
        let (value, stop) = match outcome {
            Native::Return(v) => (v, None),
            Native::Sleep { until_ns, value } => (value, Some(Stop::Sleep(until_ns))),
            Native::Block(mutex) => {
                // Restartable: run this `sys` again when woken.
                f.ip -= 2;
                return Ok(Some(Stop::Blocked(mutex)));
            }
        };
        f.is.pop();
        f.os.truncate(base);
        f.os.push(value);
        Ok(stop)
    }

    #[inline(always)]
    fn field_load(&self, this: Ref, slot: usize) -> Result<Ref, Fault> {
        match &self.heap.get(this).kind {
            Kind::Plain(v) | Kind::Array(v) => match v.get(slot) {
                Some(&r) => Ok(r),
                None => Err(Fault::LoadSlot(slot)),
            },
            _ => Err(Fault::LoadInternal),
        }
    }

    #[inline(always)]
    fn field_save(&mut self, this: Ref, slot: usize, v: Ref) -> Result<(), Fault> {
        let obj = self.heap.get_mut(this);
        if obj.flags & flags::IMMUTABLE != 0 {
            return Err(Fault::SaveImmutable);
        }
        match &mut obj.kind {
            Kind::Plain(fields) => match fields.get_mut(slot) {
                Some(cell) => {
                    *cell = v;
                    Ok(())
                }
                None => Err(Fault::SaveSlot(slot)),
            },
            _ => Err(Fault::SaveInternal),
        }
    }

    /// `o2i` without a prefix: the int value of a numeric object.
    #[inline(always)]
    fn unbox_int(&self, o: Ref) -> Result<i32, Fault> {
        match self.heap.get(o).kind {
            Kind::Int(v) => Ok(v),
            Kind::Long(v) => Ok(v as i32),
            Kind::Float(v) => Ok(v.to_bits() as i32),
            Kind::Double(v) => Ok(v.to_bits() as i32),
            Kind::Null => Err(Fault::UnboxNull),
            _ => Err(Fault::UnboxNotNumber),
        }
    }

    fn run(&mut self, frames: &mut Frames, remaining: &mut u64) -> Result<Stop, Trap> {
        loop {
            // One frame at a time: its IP and its stack depths live in
            // locals while it runs and are stored back whenever the loop
            // leaves it (call, return, sys, a cold opcode, a full stack,
            // stop or trap).
            let Some(f) = frames.last_mut() else {
                // What the loop did before frames were run one at a time.
                if *remaining == 0 {
                    return Ok(Stop::Quantum);
                }
                *remaining -= 1;
                return Err(underflow());
            };
            let Frame {
                code,
                ip,
                this,
                os,
                is,
                ..
            } = &mut **f;
            let code: &Code = code;
            let mut c = Cursor {
                code: code.bytes(),
                pc: *ip,
            };
            let mut rem = *remaining;
            let (icells, mut isp) = is.parts();
            let (ocells, mut osp) = os.parts();
            // Charge the first window up front when the budget covers it;
            // otherwise (the end of a slice, or code with windows too long
            // to measure) count instruction by instruction.
            let window = code.window(c.pc);
            if rem >= window && !code.long_windows() {
                // The budget stays in memory while windows run: it changes
                // only at jumps, and a register is worth more to the loop.
                self.left = rem - window;
                let ints = Cells {
                    cells: icells,
                    depth: &mut isp,
                };
                let objs = Cells {
                    cells: ocells,
                    depth: &mut osp,
                };
                self.run_frame::<true>(code, &mut c, &mut 0, *this, ints, objs);
                rem = self.left;
            } else {
                // By value: a local whose address went to a function not
                // inlined would live in memory, inside the component on
                // its shadow stack, for the fast loop too.
                let at = Registers {
                    pc: c.pc,
                    rem,
                    isp,
                    osp,
                };
                let at = self.run_stepwise(code, at, *this, icells, ocells);
                (c.pc, rem, isp, osp) = (at.pc, at.rem, at.isp, at.osp);
            }
            is.set_len(isp);
            os.set_len(osp);
            *ip = c.pc;
            *remaining = rem;
            match self.exit {
                Exit::Fault(fault) => return Err(fault.into()),
                Exit::BadCode(index) => {
                    let f = frames.last_mut().ok_or_else(underflow)?;
                    let (fault, ip) = f.code.fault(index);
                    f.ip = ip;
                    return Err(fault.into());
                }
                Exit::Quantum => return Ok(Stop::Quantum),
                // The next window is longer than the budget left: go on
                // instruction by instruction.
                Exit::Window => {}
                Exit::Call(ordinal, n) => self.call_virtual(frames, ordinal, n)?,
                Exit::Ret => {
                    let done = frames.pop().ok_or_else(underflow)?;
                    let value = done.os.last().copied().unwrap_or(Ref::NULL);
                    self.recycle(done);
                    match frames.last_mut() {
                        Some(caller) => caller.os.push(value),
                        None => return Ok(Stop::Ended(value)),
                    }
                }
                Exit::Sys(k) => {
                    if let Some(stop) = self.sys(frames, k)? {
                        return Ok(stop);
                    }
                }
                Exit::PushInt(v) => frames.last_mut().ok_or_else(underflow)?.is.push(v),
                Exit::PushObj(v) => frames.last_mut().ok_or_else(underflow)?.os.push(v),
                Exit::NewInt(v) => {
                    let o = self.new_int(v);
                    frames.last_mut().ok_or_else(underflow)?.os.push(o);
                }
                Exit::SaveInt(slot, v) => {
                    let o = self.new_int(v);
                    let this = frames.last().ok_or_else(underflow)?.this;
                    self.field_save(this, slot as usize, o)
                        .map_err(Trap::from)?;
                }
                Exit::Cold(opcode) => {
                    if let Some((ordinal, n, form)) = self.cold(frames, opcode, remaining)? {
                        self.call(frames, ordinal, n, form)?;
                    }
                }
            }
        }
    }

    /// [`Vm::run_frame`] counting every instruction: out of line, since it
    /// runs only at the ends of slices and for code whose windows are too
    /// long to measure.
    #[inline(never)]
    fn run_stepwise(
        &mut self,
        code: &Code,
        mut at: Registers,
        this: Ref,
        icells: &mut [i32],
        ocells: &mut [Ref],
    ) -> Registers {
        let mut c = Cursor {
            code: code.bytes(),
            pc: at.pc,
        };
        let ints = Cells {
            cells: icells,
            depth: &mut at.isp,
        };
        let objs = Cells {
            cells: ocells,
            depth: &mut at.osp,
        };
        self.run_frame::<false>(code, &mut c, &mut at.rem, this, ints, objs);
        at.pc = c.pc;
        at
    }

    /// Runs the innermost frame until it calls, returns, enters `sys`, meets
    /// an opcode it leaves to [`Vm::cold`], fills a stack, runs out of budget
    /// or traps. Inlined into `run` so that the cursor and both stack depths
    /// stay in registers. Inside the component, registers are what the loop
    /// runs short of (DESIGN.md, "The dispatch loop"), so the budget and the
    /// receiver, which few instructions touch, wait in `Vm::left` and
    /// `Vm::receiver`.
    ///
    /// With `WINDOWS`, the budget is charged a window at a time rather than
    /// per instruction: a window is the run of instructions from where the
    /// loop enters up to the next jump or exit ([`Code::window`]). The
    /// caller charges the first; each jump charges the window it goes to,
    /// or leaves with [`Exit::Window`] if the budget does not cover it; an
    /// exit in the middle of a window gives back the part not run. The
    /// count stays exact, and the loop keeps no counter per instruction.
    #[inline(always)]
    fn run_frame<const WINDOWS: bool>(
        &mut self,
        code: &Code,
        c: &mut Cursor<'_>,
        rem: &mut u64,
        this: Ref,
        is: Cells<'_, i32>,
        os: Cells<'_, Ref>,
    ) {
        let insns = code.insns();
        self.receiver = this;
        let Cells {
            cells: icells,
            depth: isp,
        } = is;
        let Cells {
            cells: ocells,
            depth: osp,
        } = os;
        // Every exit stores its reason in `self.exit` and returns nothing,
        // so no payload is a value the loop carries (inside the component,
        // such values became block parameters Cranelift spilled on every
        // instruction).
        //
        // Leaves from an instruction that ends its window (a jump, a
        // call, `ret`, `sys`, a fault entry): nothing to give back.
        macro_rules! leave {
            ($e:expr) => {{
                self.exit = $e;
                return;
            }};
        }
        // Leaves from the middle of a window, the IP just past this
        // instruction: gives back the rest of the window, charged but
        // not run here. That rest is the window starting at the IP, so
        // the loop keeps nothing per instruction for it.
        macro_rules! leave_mid {
            ($e:expr) => {{
                if WINDOWS {
                    self.left += insns.get(c.pc).map_or(1, |i| u64::from(i.window));
                }
                self.exit = $e;
                return;
            }};
        }
        // Goes on at `$next`; a window starts there. (`Code::window`,
        // written out on the entries: sharing one helper with it changed
        // the component's code and made the spin loop 13% slower.)
        macro_rules! enter {
            ($next:expr) => {{
                let next = $next;
                c.pc = next;
                if WINDOWS {
                    let w = insns.get(next).map_or(1, |i| u64::from(i.window));
                    if self.left < w {
                        leave!(Exit::Window);
                    }
                    self.left -= w;
                }
            }};
        }
        macro_rules! t {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(f) => leave_mid!(Exit::Fault(f)),
                }
            };
        }
        // Pushes leave the loop when the cells are full; `run` grows the
        // stack and pushes there, so every push must be its opcode's last step.
        macro_rules! push {
            ($cells:ident, $depth:ident, $full:path, $v:expr) => {{
                let v = $v;
                let d = *$depth;
                match $cells.get_mut(d) {
                    Some(cell) => {
                        *cell = v;
                        *$depth = d + 1;
                    }
                    None => leave_mid!($full(v)),
                }
            }};
        }
        macro_rules! pop {
            ($cells:ident, $depth:ident) => {{
                let d = $depth.wrapping_sub(1);
                match $cells.get(d) {
                    Some(&v) => {
                        *$depth = d;
                        v
                    }
                    None => leave_mid!(Exit::Fault(Fault::Underflow)),
                }
            }};
        }
        macro_rules! ipush {
            ($v:expr) => {
                push!(icells, isp, Exit::PushInt, $v)
            };
        }
        macro_rules! opush {
            ($v:expr) => {
                push!(ocells, osp, Exit::PushObj, $v)
            };
        }
        macro_rules! ipop {
            () => {
                pop!(icells, isp)
            };
        }
        macro_rules! opop {
            () => {
                pop!(ocells, osp)
            };
        }
        // Pops the top `u` and the cell below it `l`, pushes `$e`.
        macro_rules! binop {
            (|$l:ident, $u:ident| $e:expr) => {{
                let $u = ipop!();
                let $l = ipop!();
                ipush!($e);
            }};
        }
        // Division and remainder: `$ab` orders the operands.
        macro_rules! divop {
            (|$l:ident, $u:ident| $ab:expr, $f:ident) => {{
                let $u = ipop!();
                let $l = ipop!();
                let (a, b): (i32, i32) = $ab;
                if b == 0 {
                    leave_mid!(Exit::Fault(Fault::DivZero));
                }
                ipush!(a.$f(b));
            }};
        }
        // One instruction: the loop's body. Inside the component the loop
        // runs four of them per pass: Cranelift puts an epoch check (a load
        // through a pointer and a compare against the cached deadline, both
        // kept in stack slots) at every loop header, and four per pass pay
        // it once per four (measured 10% faster in the component). Natively
        // there is no such check, and the bigger loop was slower.
        macro_rules! step {
            () => {{
                if !WINDOWS {
                    if *rem == 0 {
                        self.exit = Exit::Quantum;
                        return;
                    }
                    *rem -= 1;
                }
                let pc = c.pc;
                let Some(&insn) = insns.get(pc) else {
                    // Charged as a window of its own (see `Code::window`).
                    self.exit = Exit::Fault(Fault::IpOutside(pc));
                    return;
                };
                // Past the instruction; jumps overwrite it, and a cold opcode
                // (length 1) leaves the IP just past its opcode byte.
                c.pc = pc + usize::from(insn.len);
                let opcode = insn.key;
                match opcode {
                    op::NOP => {
                        if insn.len == 0 {
                            // A fault entry: operands that do not decode.
                            leave!(Exit::BadCode(insn.arg));
                        }
                    }
                    op::DJNZ => {
                        let target = insn.arg as usize;
                        // Jumps end windows: their faults give nothing back.
                        let Some(top) = icells.get_mut(isp.wrapping_sub(1)) else {
                            leave!(Exit::Fault(Fault::Underflow));
                        };
                        *top = top.wrapping_sub(1);
                        if *top != 0 {
                            enter!(target);
                        } else {
                            enter!(c.pc);
                        }
                    }
                    op::JZ => {
                        let target = insn.arg as usize;
                        let d = isp.wrapping_sub(1);
                        let Some(&v) = icells.get(d) else {
                            leave!(Exit::Fault(Fault::Underflow));
                        };
                        *isp = d;
                        if v == 0 {
                            enter!(target);
                        } else {
                            enter!(c.pc);
                        }
                    }
                    op::JMP => enter!(insn.arg as usize),
                    op::RET => leave!(Exit::Ret),
                    op::SHORT_CALL_0..=op::SHORT_CALL_3 => {
                        leave!(Exit::Call(u32::from(opcode - op::SHORT_CALL_0), 0));
                    }
                    op::CALL_8BIT => {
                        leave!(Exit::Call(u32::from(insn.small), insn.arg as usize));
                    }
                    op::CALL_00..=op::CALL_1F => {
                        leave!(Exit::Call(u32::from(opcode & 0x1F), insn.arg as usize));
                    }
                    op::SYS => {
                        leave!(Exit::Sys(insn.arg as u8));
                    }
                    op::IS_DUP => {
                        let v = *t!(icells.get(isp.wrapping_sub(1)).ok_or(Fault::Underflow));
                        ipush!(v);
                    }
                    op::IS_DROP => {
                        ipop!();
                    }
                    op::OS_DUP => {
                        let v = *t!(ocells.get(osp.wrapping_sub(1)).ok_or(Fault::Underflow));
                        opush!(v);
                    }
                    op::OS_DROP => {
                        opop!();
                    }
                    op::OS_LOAD8 => {
                        let slot = insn.arg as usize;
                        let v = t!(self.field_load(self.receiver, slot));
                        opush!(v);
                    }
                    op::OS_LOAD32 => {
                        let slot = insn.arg as usize;
                        let v = t!(self.field_load(self.receiver, slot));
                        opush!(v);
                    }
                    op::OS_SAVE8 => {
                        let slot = insn.arg as usize;
                        let v = opop!();
                        t!(self.field_save(self.receiver, slot, v));
                    }
                    op::OS_SAVE32 => {
                        let slot = insn.arg as usize;
                        let v = opop!();
                        t!(self.field_save(self.receiver, slot, v));
                    }
                    op::OS_PULL32 => {
                        let d = insn.arg as i32;
                        let v = t!(usize::try_from(d)
                            .ok()
                            .and_then(|d| osp.checked_sub(d + 1))
                            .and_then(|i| ocells.get(i).copied())
                            .ok_or(Fault::Underflow));
                        opush!(v);
                    }
                    op::OS_GET32 => {
                        let a = insn.arg as i32;
                        let i = t!(abs_slot(a, *osp, "o abs_get"));
                        let v = *t!(ocells.get(i).ok_or(Fault::OutOfStack("o abs_get")));
                        opush!(v);
                    }
                    op::OS_SET32 => {
                        let a = insn.arg as i32;
                        let v = opop!();
                        let i = t!(abs_slot(a, *osp, "o abs_set"));
                        *t!(ocells.get_mut(i).ok_or(Fault::OutOfStack("o abs_set"))) = v;
                    }
                    op::ICONST_0 => ipush!(0),
                    op::ICONST_1 => ipush!(1),
                    op::ICONST_8BIT => {
                        ipush!(insn.arg as i32);
                    }
                    op::ICONST_32BIT => {
                        ipush!(insn.arg as i32);
                    }
                    op::IS_GET32 => {
                        let a = insn.arg as i32;
                        let i = t!(abs_slot(a, *isp, "i abs_get"));
                        let v = *t!(icells.get(i).ok_or(Fault::OutOfStack("i abs_get")));
                        ipush!(v);
                    }
                    op::IS_SET32 => {
                        let a = insn.arg as i32;
                        let v = ipop!();
                        let i = t!(abs_slot(a, *isp, "i abs_set"));
                        *t!(icells.get_mut(i).ok_or(Fault::OutOfStack("i abs_set"))) = v;
                    }
                    op::SUMMON_THIS => opush!(self.receiver),
                    op::SUMMON_NULL => opush!(Ref::NULL),
                    op::I2O => {
                        let v = ipop!();
                        let Some(o) = self.new_int_inline(v) else {
                            leave_mid!(Exit::NewInt(v));
                        };
                        opush!(o);
                    }
                    op::O2I => {
                        let o = opop!();
                        let v = t!(self.unbox_int(o));
                        ipush!(v);
                    }
                    // One arm per opcode: an arm shared by several opcodes and
                    // a second `match` inside it cost a second indirect jump.
                    op::ISUM => binop!(|l, u| l.wrapping_add(u)),
                    op::IMUL => binop!(|l, u| l.wrapping_mul(u)),
                    op::ISUBUL => binop!(|l, u| u.wrapping_sub(l)),
                    op::ISUBLU => binop!(|l, u| l.wrapping_sub(u)),
                    op::IOR => binop!(|l, u| l | u),
                    op::IAND => binop!(|l, u| l & u),
                    op::IXOR => binop!(|l, u| l ^ u),
                    op::LOG_OR => binop!(|l, u| bool_i(l != 0 || u != 0)),
                    op::LOG_AND => binop!(|l, u| bool_i(l != 0 && u != 0)),
                    op::LOG_XOR => binop!(|l, u| bool_i((l != 0) ^ (u != 0))),
                    op::IGE => binop!(|l, u| bool_i(l >= u)),
                    op::ILE => binop!(|l, u| bool_i(l <= u)),
                    op::IGT => binop!(|l, u| bool_i(l > u)),
                    op::ILT => binop!(|l, u| bool_i(l < u)),
                    // exec.c order: the top is shifted by the cell below.
                    op::ISHL => binop!(|l, u| u.wrapping_shl(l as u32)),
                    op::ISHR => binop!(|l, u| u.wrapping_shr(l as u32)),
                    op::USHR => binop!(|l, u| (u as u32).wrapping_shr(l as u32) as i32),
                    op::IDIVUL => divop!(|l, u| (u, l), wrapping_div),
                    op::IDIVLU => divop!(|l, u| (l, u), wrapping_div),
                    op::IREMUL => divop!(|l, u| (u, l), wrapping_rem),
                    op::IREMLU => divop!(|l, u| (l, u), wrapping_rem),
                    op::INOT => {
                        let v = ipop!();
                        ipush!(!v);
                    }
                    op::LOG_NOT => {
                        let v = ipop!();
                        ipush!(bool_i(v == 0));
                    }
                    op::IS_LOAD8 => {
                        let slot = insn.arg as usize;
                        let o = t!(self.field_load(self.receiver, slot));
                        let v = t!(self.unbox_int(o));
                        ipush!(v);
                    }
                    op::IS_SAVE8 => {
                        let slot = insn.arg as usize;
                        let v = ipop!();
                        let Some(o) = self.new_int_inline(v) else {
                            leave_mid!(Exit::SaveInt(insn.arg, v));
                        };
                        t!(self.field_save(self.receiver, slot, o));
                    }
                    op::OS_EQ => {
                        let a = opop!();
                        let b = opop!();
                        ipush!(bool_i(a == b));
                    }
                    op::OS_NEQ => {
                        let a = opop!();
                        let b = opop!();
                        ipush!(bool_i(a != b));
                    }
                    op::OS_ISNULL => {
                        let a = opop!();
                        ipush!(bool_i(a.is_null()));
                    }
                    op::ARG_COUNT => {
                        let want = insn.arg as u8;
                        let have = ipop!();
                        if have != i32::from(want) {
                            leave_mid!(Exit::Fault(Fault::InvalidArgCount));
                        }
                    }
                    _ => leave_mid!(Exit::Cold(opcode)),
                }
            }};
        }
        loop {
            step!();
            #[cfg(target_arch = "wasm32")]
            {
                step!();
                step!();
                step!();
            }
        }
    }

    /// The opcodes the dispatch loop leaves to this function: rare ones, and
    /// ones whose work dwarfs a call. Keeping them out of `run` keeps that
    /// function small, which matters most inside the Wasm component, where
    /// Cranelift's register allocator spills more the larger a function is.
    /// Returns the call to make, for the call forms handled here.
    #[inline(never)]
    fn cold(
        &mut self,
        frames: &mut [Box<Frame>],
        opcode: u8,
        remaining: &mut u64,
    ) -> Result<Option<(u32, usize, CallForm)>, Trap> {
        let f = frames.last_mut().ok_or_else(underflow)?;
        let Frame {
            code,
            ip,
            this,
            os,
            is,
            es,
            ..
        } = &mut **f;
        let mut c = Cursor {
            code: code.bytes(),
            pc: *ip,
        };
        let r = self.cold_op(opcode, &mut c, *this, is, os, es, remaining);
        *ip = c.pc;
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn cold_op(
        &mut self,
        opcode: u8,
        c: &mut Cursor<'_>,
        this: Ref,
        is: &mut Stack<i32>,
        os: &mut Stack<Ref>,
        es: &mut Vec<(Ref, usize)>,
        remaining: &mut u64,
    ) -> Result<Option<(u32, usize, CallForm)>, Trap> {
        match opcode {
            op::DEBUG => {
                if c.u8()? & 0x80 != 0 {
                    c.bytes()?;
                }
            }
            op::SWITCH => {
                let n = c.i32()? as u32;
                let shift = c.i32()?;
                let div = c.i32()? as u32;
                let v = ipop(is)?;
                if div == 0 {
                    return Err(div0());
                }
                let table = c.pc as u64;
                let d = (v.wrapping_add(shift) as u32) / div;
                let entry = table + 4 * u64::from(if d < n { d } else { n });
                c.pc = usize::try_from(entry)
                    .map_err(|_| Trap::Panic("switch table too large".into()))?;
                if d < n {
                    c.pc = c.rel()?;
                }
            }
            op::CALL_32BIT => {
                let m = c.i32()?;
                let n = c.i32()?;
                let (m, n) = (
                    m as u32,
                    usize::try_from(n)
                        .map_err(|_| Trap::Panic("negative argument count".into()))?,
                );
                return Ok(Some((m, n, CallForm::Virtual)));
            }
            op::STATIC_INVOKE => {
                let m = c.i32()? as u32;
                let n = c.i32()?;
                let n = usize::try_from(n)
                    .map_err(|_| Trap::Panic("negative argument count".into()))?;
                return Ok(Some((m, n, CallForm::Static)));
            }
            op::DYNAMIC_INVOKE => return Ok(Some((0, 0, CallForm::Dynamic))),
            op::NEW => {
                let class = opop(os)?;
                let o = self.instantiate(class)?;
                os.push(o);
            }
            op::STACK_RESERVE => {
                let o = c.u8()?;
                let i = c.u8()?;
                os.push_n(Ref::NULL, usize::from(o));
                is.push_n(0, usize::from(i));
            }
            op::ICONST_64BIT => {
                let v = c.i64()?;
                lpush(is, v);
            }
            op::SCONST_BIN => {
                let s = c.bytes()?;
                let o = self.new_string(s);
                os.push(o);
            }
            op::CONST_POOL => {
                let idx = c.i32()?;
                let class = self.class_of(this);
                let v = self
                    .class_data(class)
                    .and_then(|c| {
                        usize::try_from(idx)
                            .ok()
                            .and_then(|i| c.const_pool.get(i).copied())
                    })
                    .unwrap_or(Ref::NULL);
                os.push(v);
            }
            op::CAST => {
                let class = opop(os)?;
                let obj = opop(os)?;
                if !self.is_or_child(obj, class) {
                    return Err(Trap::ThrowMsg("cast to not parent".into()));
                }
                os.push(obj);
            }
            op::PUSH_CATCHER => {
                let target = c.rel()?;
                let class = opop(os)?;
                es.push((class, target));
            }
            op::POP_CATCHER => {
                es.pop();
            }
            op::THROW => return Err(Trap::Throw(opop(os)?)),
            op::SUMMON_THREAD => {
                let t = self.current_thread_obj();
                os.push(t);
            }
            op::SUMMON_CLASS_CLASS => os.push(self.internal[ic::CLASS]),
            op::SUMMON_INT_CLASS => os.push(self.internal[ic::INT]),
            op::SUMMON_STRING_CLASS => os.push(self.internal[ic::STRING]),
            op::SUMMON_INTERFACE_CLASS => os.push(self.internal[ic::INTERFACE]),
            op::SUMMON_CODE_CLASS => os.push(self.internal[ic::CODE]),
            op::SUMMON_ARRAY_CLASS => os.push(self.internal[ic::ARRAY]),
            op::SUMMON_BY_NAME => {
                let name = c.bytes()?;
                let class = self.lookup_class(&name)?;
                if class.is_null() {
                    return Err(Trap::Panic(format!(
                        "summon by name: no class found: {}",
                        String::from_utf8_lossy(&name)
                    )));
                }
                os.push(class);
            }
            op::PREFIX_LONG | op::PREFIX_FLOAT | op::PREFIX_DOUBLE => {
                let prefix = match opcode {
                    op::PREFIX_LONG => PREFIX_LONG,
                    op::PREFIX_FLOAT => PREFIX_FLOAT,
                    _ => PREFIX_DOUBLE,
                };
                // The prefixed opcode runs at once, whatever the budget: a
                // slice never ends between a prefix and its opcode. It is
                // counted even when the budget has nothing left (the slice
                // then runs one past it), so the count of instructions does
                // not depend on where slices end.
                let at = c.pc;
                let next = c.u8()?;
                let charged = *remaining > 0;
                if charged {
                    *remaining -= 1;
                } else {
                    self.instructions += 1;
                }
                if !self.typed_op(prefix, next, c, is, os)? {
                    // No typed meaning: the dispatch loop runs it plain.
                    c.pc = at;
                    if charged {
                        *remaining += 1;
                    } else {
                        self.instructions -= 1;
                    }
                }
            }
            op::GENERAL_LOCK | op::GENERAL_UNLOCK => {
                opop(os)?;
            }
            op::FROMI => {}
            op::FROML => {
                let v = lpop(is)?;
                is.push(v as i32);
            }
            op::FROMF => {
                let v = fpop(is)?;
                is.push(v as i32);
            }
            op::FROMD => {
                let v = dpop(is)?;
                is.push(v as i32);
            }
            other => {
                return Err(Trap::Panic(format!(
                    "unknown opcode 0x{other:02X} at {}",
                    c.pc - 1
                )));
            }
        }
        Ok(None)
    }

    /// Runs `opcode` under a type prefix (spec §2.8). Returns false when the
    /// opcode has no typed meaning, so the plain implementation runs.
    fn typed_op(
        &mut self,
        prefix: u8,
        opcode: u8,
        c: &mut Cursor<'_>,
        is: &mut Stack<i32>,
        os: &mut Stack<Ref>,
    ) -> Result<bool, Trap> {
        let wide = prefix != PREFIX_FLOAT;
        match opcode {
            op::IS_DUP if wide => {
                let v = lpop(is)?;
                lpush(is, v);
                lpush(is, v);
            }
            op::IS_DROP if wide => {
                lpop(is)?;
            }
            op::ICONST_0 if wide => lpush(is, 0),
            op::ICONST_1 if wide => lpush(is, 1),
            op::ICONST_8BIT if wide => {
                let v = c.u8()?;
                lpush(is, i64::from(v));
            }
            op::ICONST_32BIT if wide => {
                let v = c.i32()?;
                lpush(is, i64::from(v));
            }
            op::IS_GET32 if wide => {
                let a = c.i32()?;
                let i = abs_slot(a, is.len().saturating_sub(1), "i abs_get")?;
                let (hi, lo) = (is[i], is[i + 1]);
                is.push(hi);
                is.push(lo);
            }
            op::IS_SET32 if wide => {
                let a = c.i32()?;
                let v = lpop(is)?;
                let i = abs_slot(a, is.len().saturating_sub(1), "i abs_set")?;
                is[i] = (v >> 32) as i32;
                is[i + 1] = v as i32;
            }
            op::ISUM
            | op::IMUL
            | op::ISUBUL
            | op::ISUBLU
            | op::IDIVUL
            | op::IDIVLU
            | op::IGE
            | op::ILE
            | op::IGT
            | op::ILT => match prefix {
                PREFIX_LONG => {
                    let u = lpop(is)?;
                    let l = lpop(is)?;
                    match opcode {
                        op::ISUM => lpush(is, l.wrapping_add(u)),
                        op::IMUL => lpush(is, l.wrapping_mul(u)),
                        op::ISUBUL => lpush(is, u.wrapping_sub(l)),
                        op::ISUBLU => lpush(is, l.wrapping_sub(u)),
                        op::IDIVUL => lpush(
                            is,
                            u.checked_div(l)
                                .or(if l == 0 { None } else { Some(i64::MIN) })
                                .ok_or_else(div0)?,
                        ),
                        op::IDIVLU => lpush(
                            is,
                            l.checked_div(u)
                                .or(if u == 0 { None } else { Some(i64::MIN) })
                                .ok_or_else(div0)?,
                        ),
                        op::IGE => is.push(bool_i(l >= u)),
                        op::ILE => is.push(bool_i(l <= u)),
                        op::IGT => is.push(bool_i(l > u)),
                        _ => is.push(bool_i(l < u)),
                    }
                }
                // Float and double: IEEE arithmetic (division by zero gives
                // inf or NaN), the same for both widths.
                PREFIX_FLOAT => ieee_arith!(opcode, &mut *is, fpop, fpush),
                _ => ieee_arith!(opcode, &mut *is, dpop, dpush),
            },
            op::ISHL
            | op::ISHR
            | op::USHR
            | op::IOR
            | op::IAND
            | op::IXOR
            | op::INOT
            | op::LOG_OR
            | op::LOG_AND
            | op::LOG_XOR
            | op::LOG_NOT => {
                if prefix != PREFIX_LONG {
                    let kind = if prefix == PREFIX_FLOAT {
                        "float"
                    } else {
                        "double"
                    };
                    return Err(Trap::Panic(format!("invalid {kind} op")));
                }
                match opcode {
                    op::ISHL | op::ISHR | op::USHR => {
                        let v = lpop(is)?;
                        let s = ipop(is)? as u32;
                        lpush(
                            is,
                            match opcode {
                                op::ISHL => v.wrapping_shl(s),
                                op::ISHR => v.wrapping_shr(s),
                                _ => (v as u64).wrapping_shr(s) as i64,
                            },
                        );
                    }
                    op::INOT => {
                        let v = lpop(is)?;
                        lpush(is, !v);
                    }
                    op::LOG_NOT => {
                        let v = lpop(is)?;
                        lpush(is, i64::from(v == 0));
                    }
                    _ => {
                        let u = lpop(is)?;
                        let l = lpop(is)?;
                        lpush(
                            is,
                            match opcode {
                                op::IOR => l | u,
                                op::IAND => l & u,
                                op::IXOR => l ^ u,
                                op::LOG_OR => i64::from(l != 0 || u != 0),
                                op::LOG_AND => i64::from(l != 0 && u != 0),
                                _ => i64::from((l != 0) ^ (u != 0)),
                            },
                        );
                    }
                }
            }
            op::I2O => {
                let (idx, kind) = match prefix {
                    PREFIX_LONG => (ic::LONG, Kind::Long(lpop(is)?)),
                    PREFIX_FLOAT => (ic::FLOAT, Kind::Float(fpop(is)?)),
                    _ => (ic::DOUBLE, Kind::Double(dpop(is)?)),
                };
                let o =
                    self.heap
                        .alloc(self.internal[idx], flags::INTERNAL | flags::IMMUTABLE, kind);
                os.push(o);
            }
            op::O2I => {
                let o = opop(os)?;
                let kind = &self.heap.get(o).kind;
                match prefix {
                    PREFIX_LONG => lpush(
                        is,
                        match *kind {
                            Kind::Long(v) => v,
                            Kind::Int(v) => i64::from(v),
                            _ => return Err(Trap::ThrowMsg("o2i: not a long".into())),
                        },
                    ),
                    PREFIX_FLOAT => fpush(
                        is,
                        match *kind {
                            Kind::Float(v) => v,
                            Kind::Int(v) => f32::from_bits(v as u32),
                            _ => return Err(Trap::ThrowMsg("o2i: not a float".into())),
                        },
                    ),
                    _ => dpush(
                        is,
                        match *kind {
                            Kind::Double(v) => v,
                            _ => return Err(Trap::ThrowMsg("type assert failed".into())),
                        },
                    ),
                }
            }
            op::FROMI | op::FROML | op::FROMF | op::FROMD => {
                match (prefix, opcode) {
                    (PREFIX_LONG, op::FROMI) => {
                        let v = ipop(is)?;
                        lpush(is, i64::from(v));
                    }
                    (PREFIX_LONG, op::FROMF) => {
                        let v = fpop(is)?;
                        lpush(is, v as i64);
                    }
                    (PREFIX_LONG, op::FROMD) => {
                        let v = dpop(is)?;
                        lpush(is, v as i64);
                    }
                    (PREFIX_FLOAT, op::FROMI) => {
                        let v = ipop(is)?;
                        fpush(is, v as f32);
                    }
                    (PREFIX_FLOAT, op::FROML) => {
                        let v = lpop(is)?;
                        fpush(is, v as f32);
                    }
                    (PREFIX_FLOAT, op::FROMD) => {
                        let v = dpop(is)?;
                        fpush(is, v as f32);
                    }
                    (PREFIX_DOUBLE, op::FROMI) => {
                        let v = ipop(is)?;
                        dpush(is, f64::from(v));
                    }
                    (PREFIX_DOUBLE, op::FROML) => {
                        let v = lpop(is)?;
                        dpush(is, v as f64);
                    }
                    (PREFIX_DOUBLE, op::FROMF) => {
                        let v = fpop(is)?;
                        dpush(is, f64::from(v));
                    }
                    _ => {} // same type: nop
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
