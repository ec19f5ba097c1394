//! The interpreter loop (spec §2): instruction dispatch, the three call
//! forms, `sys`, exceptions and the long/float/double prefixes.
//!
//! ```text
//!   execute(frames, budget) ─► run() ─ fetch ─ match op ─┬─ call: push Frame
//!        ▲      │                                        ├─ ret: pop Frame
//!        │      └─ Trap::Throw ─► unwind (catchers) ─────┘─ sys: natives::call
//!        └── Stop { Quantum | Ended | Sleep | Blocked | Unhandled | Panic | Exit }
//! ```
//!
//! All state lives in the frames (IP included), so a slice can stop between
//! any two instructions.

use crate::heap::{Kind, Ref, flags};
use crate::natives::{self, Native};
use crate::opcode::op;
use crate::vm::{Frame, Stop, Trap, Vm, ic};

const PREFIX_NONE: u8 = 0;
const PREFIX_LONG: u8 = 1;
const PREFIX_FLOAT: u8 = 2;
const PREFIX_DOUBLE: u8 = 3;

fn underflow() -> Trap {
    Trap::Panic("stack underflow".into())
}

impl Frame {
    #[inline(always)]
    fn u8(&mut self) -> Result<u8, Trap> {
        match self.code.get(self.ip) {
            Some(&b) => {
                self.ip += 1;
                Ok(b)
            }
            None => Err(Trap::Panic(format!("IP {} is outside the code", self.ip))),
        }
    }

    #[inline(always)]
    fn i32(&mut self) -> Result<i32, Trap> {
        match self.code.get(self.ip..self.ip + 4) {
            Some(b) => {
                self.ip += 4;
                Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            None => Err(Trap::Panic(format!(
                "operand at {} is outside the code",
                self.ip
            ))),
        }
    }

    fn i64(&mut self) -> Result<i64, Trap> {
        let hi = self.i32()? as u32 as u64;
        let lo = self.i32()? as u32 as u64;
        Ok(((hi << 32) | lo) as i64)
    }

    /// A relative jump operand resolved to an absolute offset.
    #[inline(always)]
    fn rel(&mut self) -> Result<usize, Trap> {
        let at = self.ip as i64;
        let target = at + i64::from(self.i32()?);
        usize::try_from(target)
            .map_err(|_| Trap::Panic(format!("jump to {target} is outside the code")))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, Trap> {
        let n = self.i32()?;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.ip.checked_add(n))
            .filter(|&e| e <= self.code.len());
        let end = end.ok_or_else(|| Trap::Panic("string operand is outside the code".into()))?;
        let s = self.code[self.ip..end].to_vec();
        self.ip = end;
        Ok(s)
    }

    #[inline(always)]
    fn ipop(&mut self) -> Result<i32, Trap> {
        self.is.pop().ok_or_else(underflow)
    }

    #[inline(always)]
    fn opop(&mut self) -> Result<Ref, Trap> {
        self.os.pop().ok_or_else(underflow)
    }

    fn lpop(&mut self) -> Result<i64, Trap> {
        let lo = self.ipop()? as u32 as u64;
        let hi = self.ipop()? as u32 as u64;
        Ok(((hi << 32) | lo) as i64)
    }

    fn lpush(&mut self, v: i64) {
        self.is.push((v >> 32) as i32);
        self.is.push(v as i32);
    }

    fn fpop(&mut self) -> Result<f32, Trap> {
        Ok(f32::from_bits(self.ipop()? as u32))
    }

    fn fpush(&mut self, v: f32) {
        self.is.push(v.to_bits() as i32);
    }

    fn dpop(&mut self) -> Result<f64, Trap> {
        Ok(f64::from_bits(self.lpop()? as u64))
    }

    fn dpush(&mut self, v: f64) {
        self.lpush(v.to_bits() as i64);
    }

    fn abs_slot(&self, abs: i32, len: usize, what: &str) -> Result<usize, Trap> {
        usize::try_from(abs)
            .ok()
            .filter(|&a| a < len)
            .ok_or_else(|| Trap::Panic(format!("{what}: out of stack")))
    }
}

fn bool_i(b: bool) -> i32 {
    i32::from(b)
}

fn div0() -> Trap {
    Trap::ThrowMsg("division by zero".into())
}

/// How a call finds its receiver and method.
enum CallForm {
    Virtual,
    Static,
    Dynamic,
}

impl Vm {
    /// Runs `frames` (innermost last) for at most `budget` instructions.
    pub fn execute(&mut self, frames: &mut Vec<Frame>, budget: u64) -> Stop {
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

    fn locate(&self, frames: &[Frame], message: String) -> String {
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
    fn unwind(&mut self, frames: &mut Vec<Frame>, obj: Ref) -> bool {
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

    fn call(
        &mut self,
        frames: &mut Vec<Frame>,
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
        let new = self.frame(code, this, &f.os[base..], ordinal);
        f.os.truncate(base);
        if let CallForm::Virtual = form {
            f.os.pop();
        }
        frames.push(new);
        Ok(())
    }

    fn sys(&mut self, frames: &mut [Frame], k: u8) -> Result<Option<Stop>, Trap> {
        let f = frames.last_mut().ok_or_else(underflow)?;
        let this = f.this;
        let n = *f.is.last().ok_or_else(underflow)?;
        let n =
            usize::try_from(n).map_err(|_| Trap::Panic("sys: negative argument count".into()))?;
        let base = f.os.len().checked_sub(n).ok_or_else(underflow)?;
        let args: Vec<Ref> = f.os[base..].to_vec();
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

    fn field_load(&self, this: Ref, slot: usize) -> Result<Ref, Trap> {
        match &self.heap.get(this).kind {
            Kind::Plain(v) | Kind::Array(v) => v
                .get(slot)
                .copied()
                .ok_or_else(|| Trap::Panic(format!("load: slot {slot} is out of bounds"))),
            _ => Err(Trap::Panic("attempt to load from internal".into())),
        }
    }

    fn field_save(&mut self, this: Ref, slot: usize, v: Ref) -> Result<(), Trap> {
        let obj = self.heap.get_mut(this);
        if obj.flags & flags::IMMUTABLE != 0 {
            return Err(Trap::Panic("attempt to save to immutable object".into()));
        }
        match &mut obj.kind {
            Kind::Plain(fields) => {
                let cell = fields
                    .get_mut(slot)
                    .ok_or_else(|| Trap::Panic(format!("save: slot {slot} is out of bounds")))?;
                *cell = v;
                Ok(())
            }
            _ => Err(Trap::Panic("attempt to save to internal".into())),
        }
    }

    /// `o2i` without a prefix: the int value of a numeric object.
    fn unbox_int(&self, o: Ref) -> Result<i32, Trap> {
        match self.heap.get(o).kind {
            Kind::Int(v) => Ok(v),
            Kind::Long(v) => Ok(v as i32),
            Kind::Float(v) => Ok(v.to_bits() as i32),
            Kind::Double(v) => Ok(v.to_bits() as i32),
            Kind::Null => Err(Trap::ThrowMsg("o2i(null)".into())),
            _ => Err(Trap::ThrowMsg("o2i: not a number".into())),
        }
    }

    fn run(&mut self, frames: &mut Vec<Frame>, remaining: &mut u64) -> Result<Stop, Trap> {
        let mut prefix = PREFIX_NONE;
        loop {
            if *remaining == 0 {
                return Ok(Stop::Quantum);
            }
            *remaining -= 1;
            let f = frames.last_mut().ok_or_else(underflow)?;
            let opcode = f.u8()?;
            if prefix != PREFIX_NONE {
                let p = prefix;
                prefix = PREFIX_NONE;
                if self.typed(p, opcode, f)? {
                    continue;
                }
            }
            match opcode {
                op::NOP => {}
                op::DEBUG => {
                    if f.u8()? & 0x80 != 0 {
                        f.bytes()?;
                    }
                }
                op::DJNZ => {
                    let target = f.rel()?;
                    let top = f.is.last_mut().ok_or_else(underflow)?;
                    *top = top.wrapping_sub(1);
                    if *top != 0 {
                        f.ip = target;
                    }
                }
                op::JZ => {
                    let target = f.rel()?;
                    if f.ipop()? == 0 {
                        f.ip = target;
                    }
                }
                op::JMP => f.ip = f.rel()?,
                op::SWITCH => {
                    let n = f.i32()? as u32;
                    let shift = f.i32()?;
                    let div = f.i32()? as u32;
                    let v = f.ipop()?;
                    if div == 0 {
                        return Err(div0());
                    }
                    let table = f.ip as u64;
                    let d = (v.wrapping_add(shift) as u32) / div;
                    let entry = table + 4 * u64::from(if d < n { d } else { n });
                    f.ip = usize::try_from(entry)
                        .map_err(|_| Trap::Panic("switch table too large".into()))?;
                    if d < n {
                        f.ip = f.rel()?;
                    }
                }
                op::RET => {
                    let done = frames.pop().ok_or_else(underflow)?;
                    let value = done.os.last().copied().unwrap_or(Ref::NULL);
                    self.recycle(done);
                    match frames.last_mut() {
                        Some(caller) => caller.os.push(value),
                        None => return Ok(Stop::Ended(value)),
                    }
                }
                op::SHORT_CALL_0..=op::SHORT_CALL_3 => {
                    self.call(
                        frames,
                        u32::from(opcode - op::SHORT_CALL_0),
                        0,
                        CallForm::Virtual,
                    )?;
                }
                op::CALL_8BIT => {
                    let m = f.u8()?;
                    let n = f.i32()?;
                    let n = usize::try_from(n)
                        .map_err(|_| Trap::Panic("negative argument count".into()))?;
                    self.call(frames, u32::from(m), n, CallForm::Virtual)?;
                }
                op::CALL_32BIT => {
                    let m = f.i32()?;
                    let n = f.i32()?;
                    let (m, n) = (
                        m as u32,
                        usize::try_from(n)
                            .map_err(|_| Trap::Panic("negative argument count".into()))?,
                    );
                    self.call(frames, m, n, CallForm::Virtual)?;
                }
                op::CALL_00..=op::CALL_1F => {
                    let n = f.u8()?;
                    self.call(
                        frames,
                        u32::from(opcode & 0x1F),
                        usize::from(n),
                        CallForm::Virtual,
                    )?;
                }
                op::STATIC_INVOKE => {
                    let m = f.i32()? as u32;
                    let n = f.i32()?;
                    let n = usize::try_from(n)
                        .map_err(|_| Trap::Panic("negative argument count".into()))?;
                    self.call(frames, m, n, CallForm::Static)?;
                }
                op::DYNAMIC_INVOKE => self.call(frames, 0, 0, CallForm::Dynamic)?,
                op::SYS => {
                    let k = f.u8()?;
                    if let Some(stop) = self.sys(frames, k)? {
                        return Ok(stop);
                    }
                }
                op::IS_DUP => {
                    let v = *f.is.last().ok_or_else(underflow)?;
                    f.is.push(v);
                }
                op::IS_DROP => {
                    f.ipop()?;
                }
                op::OS_DUP => {
                    let v = *f.os.last().ok_or_else(underflow)?;
                    f.os.push(v);
                }
                op::OS_DROP => {
                    f.opop()?;
                }
                op::OS_LOAD8 | op::OS_LOAD32 => {
                    let slot = if opcode == op::OS_LOAD8 {
                        usize::from(f.u8()?)
                    } else {
                        f.i32()? as u32 as usize
                    };
                    let v = self.field_load(f.this, slot)?;
                    f.os.push(v);
                }
                op::OS_SAVE8 | op::OS_SAVE32 => {
                    let slot = if opcode == op::OS_SAVE8 {
                        usize::from(f.u8()?)
                    } else {
                        f.i32()? as u32 as usize
                    };
                    let v = f.opop()?;
                    let this = f.this;
                    self.field_save(this, slot, v)?;
                }
                op::NEW => {
                    let class = f.opop()?;
                    let o = self.instantiate(class)?;
                    f.os.push(o);
                }
                op::OS_PULL32 => {
                    let d = f.i32()?;
                    let len = f.os.len();
                    let i = usize::try_from(d)
                        .ok()
                        .and_then(|d| len.checked_sub(d + 1))
                        .ok_or_else(underflow)?;
                    let v = f.os[i];
                    f.os.push(v);
                }
                op::OS_GET32 => {
                    let a = f.i32()?;
                    let i = f.abs_slot(a, f.os.len(), "o abs_get")?;
                    let v = f.os[i];
                    f.os.push(v);
                }
                op::OS_SET32 => {
                    let a = f.i32()?;
                    let v = f.opop()?;
                    let i = f.abs_slot(a, f.os.len(), "o abs_set")?;
                    f.os[i] = v;
                }
                op::ICONST_0 => f.is.push(0),
                op::ICONST_1 => f.is.push(1),
                op::ICONST_8BIT => {
                    let v = f.u8()?;
                    f.is.push(i32::from(v));
                }
                op::ICONST_32BIT => {
                    let v = f.i32()?;
                    f.is.push(v);
                }
                op::SCONST_BIN => {
                    let s = f.bytes()?;
                    let o = self.new_string(s);
                    f.os.push(o);
                }
                op::ICONST_64BIT => {
                    let v = f.i64()?;
                    f.lpush(v);
                }
                op::IS_GET32 => {
                    let a = f.i32()?;
                    let i = f.abs_slot(a, f.is.len(), "i abs_get")?;
                    let v = f.is[i];
                    f.is.push(v);
                }
                op::IS_SET32 => {
                    let a = f.i32()?;
                    let v = f.ipop()?;
                    let i = f.abs_slot(a, f.is.len(), "i abs_set")?;
                    f.is[i] = v;
                }
                op::CONST_POOL => {
                    let idx = f.i32()?;
                    let class = self.class_of(f.this);
                    let v = self
                        .class_data(class)
                        .and_then(|c| {
                            usize::try_from(idx)
                                .ok()
                                .and_then(|i| c.const_pool.get(i).copied())
                        })
                        .unwrap_or(Ref::NULL);
                    f.os.push(v);
                }
                op::STACK_RESERVE => {
                    let o = f.u8()?;
                    let i = f.u8()?;
                    f.os.extend(std::iter::repeat_n(Ref::NULL, usize::from(o)));
                    f.is.extend(std::iter::repeat_n(0, usize::from(i)));
                }
                op::CAST => {
                    let class = f.opop()?;
                    let obj = f.opop()?;
                    if !self.is_or_child(obj, class) {
                        return Err(Trap::ThrowMsg("cast to not parent".into()));
                    }
                    f.os.push(obj);
                }
                op::PUSH_CATCHER => {
                    let target = f.rel()?;
                    let class = f.opop()?;
                    f.es.push((class, target));
                }
                op::POP_CATCHER => {
                    f.es.pop();
                }
                op::THROW => return Err(Trap::Throw(f.opop()?)),
                op::SUMMON_THREAD => {
                    let t = self.current_thread_obj();
                    f.os.push(t);
                }
                op::SUMMON_THIS => f.os.push(f.this),
                op::SUMMON_NULL => f.os.push(Ref::NULL),
                op::SUMMON_CLASS_CLASS => f.os.push(self.internal[ic::CLASS]),
                op::SUMMON_INT_CLASS => f.os.push(self.internal[ic::INT]),
                op::SUMMON_STRING_CLASS => f.os.push(self.internal[ic::STRING]),
                op::SUMMON_INTERFACE_CLASS => f.os.push(self.internal[ic::INTERFACE]),
                op::SUMMON_CODE_CLASS => f.os.push(self.internal[ic::CODE]),
                op::SUMMON_ARRAY_CLASS => f.os.push(self.internal[ic::ARRAY]),
                op::SUMMON_BY_NAME => {
                    let name = f.bytes()?;
                    let class = self.lookup_class(&name)?;
                    if class.is_null() {
                        return Err(Trap::Panic(format!(
                            "summon by name: no class found: {}",
                            String::from_utf8_lossy(&name)
                        )));
                    }
                    frames.last_mut().ok_or_else(underflow)?.os.push(class);
                }
                op::I2O => {
                    let v = f.ipop()?;
                    let o = self.new_int(v);
                    f.os.push(o);
                }
                op::O2I => {
                    let o = f.opop()?;
                    let v = self.unbox_int(o)?;
                    f.is.push(v);
                }
                op::ISUM
                | op::IMUL
                | op::ISUBUL
                | op::ISUBLU
                | op::IOR
                | op::IAND
                | op::IXOR
                | op::LOG_OR
                | op::LOG_AND
                | op::LOG_XOR
                | op::IGE
                | op::ILE
                | op::IGT
                | op::ILT
                | op::ISHL
                | op::ISHR
                | op::USHR => {
                    let u = f.ipop()?;
                    let l = f.ipop()?;
                    f.is.push(match opcode {
                        op::ISUM => l.wrapping_add(u),
                        op::IMUL => l.wrapping_mul(u),
                        op::ISUBUL => u.wrapping_sub(l),
                        op::ISUBLU => l.wrapping_sub(u),
                        op::IOR => l | u,
                        op::IAND => l & u,
                        op::IXOR => l ^ u,
                        op::LOG_OR => bool_i(l != 0 || u != 0),
                        op::LOG_AND => bool_i(l != 0 && u != 0),
                        op::LOG_XOR => bool_i((l != 0) ^ (u != 0)),
                        op::IGE => bool_i(l >= u),
                        op::ILE => bool_i(l <= u),
                        op::IGT => bool_i(l > u),
                        op::ILT => bool_i(l < u),
                        // exec.c order: the top is shifted by the cell below.
                        op::ISHL => u.wrapping_shl(l as u32),
                        op::ISHR => u.wrapping_shr(l as u32),
                        _ => (u as u32).wrapping_shr(l as u32) as i32,
                    });
                }
                op::IDIVUL | op::IDIVLU | op::IREMUL | op::IREMLU => {
                    let u = f.ipop()?;
                    let l = f.ipop()?;
                    let (a, b) = if opcode == op::IDIVLU || opcode == op::IREMLU {
                        (l, u)
                    } else {
                        (u, l)
                    };
                    if b == 0 {
                        return Err(div0());
                    }
                    f.is.push(if opcode == op::IDIVLU || opcode == op::IDIVUL {
                        a.wrapping_div(b)
                    } else {
                        a.wrapping_rem(b)
                    });
                }
                op::INOT => {
                    let v = f.ipop()?;
                    f.is.push(!v);
                }
                op::LOG_NOT => {
                    let v = f.ipop()?;
                    f.is.push(bool_i(v == 0));
                }
                op::IS_LOAD8 => {
                    let slot = usize::from(f.u8()?);
                    let o = self.field_load(f.this, slot)?;
                    let v = self.unbox_int(o)?;
                    f.is.push(v);
                }
                op::IS_SAVE8 => {
                    let slot = usize::from(f.u8()?);
                    let v = f.ipop()?;
                    let this = f.this;
                    let o = self.new_int(v);
                    self.field_save(this, slot, o)?;
                }
                op::OS_EQ | op::OS_NEQ => {
                    let a = f.opop()?;
                    let b = f.opop()?;
                    f.is.push(bool_i((a == b) == (opcode == op::OS_EQ)));
                }
                op::OS_ISNULL => {
                    let a = f.opop()?;
                    f.is.push(bool_i(a.is_null()));
                }
                op::PREFIX_LONG => prefix = PREFIX_LONG,
                op::PREFIX_FLOAT => prefix = PREFIX_FLOAT,
                op::PREFIX_DOUBLE => prefix = PREFIX_DOUBLE,
                op::GENERAL_LOCK | op::GENERAL_UNLOCK => {
                    f.opop()?;
                }
                op::ARG_COUNT => {
                    let want = f.u8()?;
                    let have = f.ipop()?;
                    if have != i32::from(want) {
                        return Err(Trap::ThrowMsg("invalid arg count".into()));
                    }
                }
                op::FROMI => {}
                op::FROML => {
                    let v = f.lpop()?;
                    f.is.push(v as i32);
                }
                op::FROMF => {
                    let v = f.fpop()?;
                    f.is.push(v as i32);
                }
                op::FROMD => {
                    let v = f.dpop()?;
                    f.is.push(v as i32);
                }
                other => {
                    return Err(Trap::Panic(format!(
                        "unknown opcode 0x{other:02X} at {}",
                        f.ip - 1
                    )));
                }
            }
        }
    }

    /// Runs `opcode` under a type prefix (spec §2.8). Returns false when the
    /// opcode has no typed meaning, so the plain implementation runs.
    fn typed(&mut self, prefix: u8, opcode: u8, f: &mut Frame) -> Result<bool, Trap> {
        let wide = prefix != PREFIX_FLOAT;
        match opcode {
            op::IS_DUP if wide => {
                let v = f.lpop()?;
                f.lpush(v);
                f.lpush(v);
            }
            op::IS_DROP if wide => {
                f.lpop()?;
            }
            op::ICONST_0 if wide => f.lpush(0),
            op::ICONST_1 if wide => f.lpush(1),
            op::ICONST_8BIT if wide => {
                let v = f.u8()?;
                f.lpush(i64::from(v));
            }
            op::ICONST_32BIT if wide => {
                let v = f.i32()?;
                f.lpush(i64::from(v));
            }
            op::IS_GET32 if wide => {
                let a = f.i32()?;
                let i = f.abs_slot(a, f.is.len().saturating_sub(1), "i abs_get")?;
                let (hi, lo) = (f.is[i], f.is[i + 1]);
                f.is.push(hi);
                f.is.push(lo);
            }
            op::IS_SET32 if wide => {
                let a = f.i32()?;
                let v = f.lpop()?;
                let i = f.abs_slot(a, f.is.len().saturating_sub(1), "i abs_set")?;
                f.is[i] = (v >> 32) as i32;
                f.is[i + 1] = v as i32;
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
                    let u = f.lpop()?;
                    let l = f.lpop()?;
                    match opcode {
                        op::ISUM => f.lpush(l.wrapping_add(u)),
                        op::IMUL => f.lpush(l.wrapping_mul(u)),
                        op::ISUBUL => f.lpush(u.wrapping_sub(l)),
                        op::ISUBLU => f.lpush(l.wrapping_sub(u)),
                        op::IDIVUL => f.lpush(
                            u.checked_div(l)
                                .or(if l == 0 { None } else { Some(i64::MIN) })
                                .ok_or_else(div0)?,
                        ),
                        op::IDIVLU => f.lpush(
                            l.checked_div(u)
                                .or(if u == 0 { None } else { Some(i64::MIN) })
                                .ok_or_else(div0)?,
                        ),
                        op::IGE => f.is.push(bool_i(l >= u)),
                        op::ILE => f.is.push(bool_i(l <= u)),
                        op::IGT => f.is.push(bool_i(l > u)),
                        _ => f.is.push(bool_i(l < u)),
                    }
                }
                PREFIX_FLOAT => {
                    let u = f.fpop()?;
                    let l = f.fpop()?;
                    match opcode {
                        op::ISUM => f.fpush(l + u),
                        op::IMUL => f.fpush(l * u),
                        op::ISUBUL => f.fpush(u - l),
                        op::ISUBLU => f.fpush(l - u),
                        op::IDIVUL => f.fpush(u / l),
                        op::IDIVLU => f.fpush(l / u),
                        op::IGE => f.is.push(bool_i(l >= u)),
                        op::ILE => f.is.push(bool_i(l <= u)),
                        op::IGT => f.is.push(bool_i(l > u)),
                        _ => f.is.push(bool_i(l < u)),
                    }
                }
                _ => {
                    let u = f.dpop()?;
                    let l = f.dpop()?;
                    match opcode {
                        op::ISUM => f.dpush(l + u),
                        op::IMUL => f.dpush(l * u),
                        op::ISUBUL => f.dpush(u - l),
                        op::ISUBLU => f.dpush(l - u),
                        op::IDIVUL => f.dpush(u / l),
                        op::IDIVLU => f.dpush(l / u),
                        op::IGE => f.is.push(bool_i(l >= u)),
                        op::ILE => f.is.push(bool_i(l <= u)),
                        op::IGT => f.is.push(bool_i(l > u)),
                        _ => f.is.push(bool_i(l < u)),
                    }
                }
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
                        let v = f.lpop()?;
                        let s = f.ipop()? as u32;
                        f.lpush(match opcode {
                            op::ISHL => v.wrapping_shl(s),
                            op::ISHR => v.wrapping_shr(s),
                            _ => (v as u64).wrapping_shr(s) as i64,
                        });
                    }
                    op::INOT => {
                        let v = f.lpop()?;
                        f.lpush(!v);
                    }
                    op::LOG_NOT => {
                        let v = f.lpop()?;
                        f.lpush(i64::from(v == 0));
                    }
                    _ => {
                        let u = f.lpop()?;
                        let l = f.lpop()?;
                        f.lpush(match opcode {
                            op::IOR => l | u,
                            op::IAND => l & u,
                            op::IXOR => l ^ u,
                            op::LOG_OR => i64::from(l != 0 || u != 0),
                            op::LOG_AND => i64::from(l != 0 && u != 0),
                            _ => i64::from((l != 0) ^ (u != 0)),
                        });
                    }
                }
            }
            op::I2O => {
                let (idx, kind) = match prefix {
                    PREFIX_LONG => (ic::LONG, Kind::Long(f.lpop()?)),
                    PREFIX_FLOAT => (ic::FLOAT, Kind::Float(f.fpop()?)),
                    _ => (ic::DOUBLE, Kind::Double(f.dpop()?)),
                };
                let o =
                    self.heap
                        .alloc(self.internal[idx], flags::INTERNAL | flags::IMMUTABLE, kind);
                f.os.push(o);
            }
            op::O2I => {
                let o = f.opop()?;
                let kind = &self.heap.get(o).kind;
                match prefix {
                    PREFIX_LONG => f.lpush(match *kind {
                        Kind::Long(v) => v,
                        Kind::Int(v) => i64::from(v),
                        _ => return Err(Trap::ThrowMsg("o2i: not a long".into())),
                    }),
                    PREFIX_FLOAT => f.fpush(match *kind {
                        Kind::Float(v) => v,
                        Kind::Int(v) => f32::from_bits(v as u32),
                        _ => return Err(Trap::ThrowMsg("o2i: not a float".into())),
                    }),
                    _ => f.dpush(match *kind {
                        Kind::Double(v) => v,
                        _ => return Err(Trap::ThrowMsg("type assert failed".into())),
                    }),
                }
            }
            op::FROMI | op::FROML | op::FROMF | op::FROMD => {
                match (prefix, opcode) {
                    (PREFIX_LONG, op::FROMI) => {
                        let v = f.ipop()?;
                        f.lpush(i64::from(v));
                    }
                    (PREFIX_LONG, op::FROMF) => {
                        let v = f.fpop()?;
                        f.lpush(v as i64);
                    }
                    (PREFIX_LONG, op::FROMD) => {
                        let v = f.dpop()?;
                        f.lpush(v as i64);
                    }
                    (PREFIX_FLOAT, op::FROMI) => {
                        let v = f.ipop()?;
                        f.fpush(v as f32);
                    }
                    (PREFIX_FLOAT, op::FROML) => {
                        let v = f.lpop()?;
                        f.fpush(v as f32);
                    }
                    (PREFIX_FLOAT, op::FROMD) => {
                        let v = f.dpop()?;
                        f.fpush(v as f32);
                    }
                    (PREFIX_DOUBLE, op::FROMI) => {
                        let v = f.ipop()?;
                        f.dpush(f64::from(v));
                    }
                    (PREFIX_DOUBLE, op::FROML) => {
                        let v = f.lpop()?;
                        f.dpush(v as f64);
                    }
                    (PREFIX_DOUBLE, op::FROMF) => {
                        let v = f.fpop()?;
                        f.dpush(f64::from(v));
                    }
                    _ => {} // same type: nop
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
