//! Native method tables of the internal classes (spec §3.6), reached by
//! `sys k` in the system-interface stubs. `args[0]` is the first argument.
//!
//! ```text
//!   sys k ─► call(vm, class idx, k, this, args)
//!              ├─ class-specific table (int, string, array, boot, …)
//!              └─ defaults of .internal.void (ordinals 0..15)
//! ```

use std::fmt::Write;

use crate::heap::{Kind, Ref, flags};
use crate::vm::{INTERNAL_CLASSES, Trap, Vm, ic};

/// What a native did.
#[derive(Debug, Clone, PartialEq)]
pub enum Native {
    /// Return this value.
    Return(Ref),
    /// Return this value, then sleep until `until_ns`.
    Sleep { until_ns: u64, value: Ref },
    /// Block on this mutex; the `sys` instruction re-runs when woken.
    Block(Ref),
}

/// A native method supplied by the embedder: `this`, then the arguments
/// (`args[0]` is the first).
pub type NativeFn = fn(&mut Vm, Ref, &[Ref]) -> Result<Native, Trap>;

/// An internal class supplied by the embedder ([`Vm::add_native_classes`]).
/// Its instances are opaque; ordinals not listed fall back to the
/// `.internal.void` defaults.
#[derive(Debug, Clone, Copy)]
pub struct NativeClass {
    /// Full class name, e.g. `.internal.demo.stats`.
    pub name: &'static str,
    /// (ordinal, implementation).
    pub methods: &'static [(u8, NativeFn)],
}

/// `EEXIST`, returned by `directory.put` for a duplicate key.
pub const EEXIST: i32 = 17;
/// `ENOENT`, returned by `directory.remove` for a missing key.
pub const ENOENT: i32 = 2;

/// A Phantom exception with message `msg`.
pub fn throw(msg: &str) -> Trap {
    Trap::ThrowMsg(msg.to_string())
}

/// Argument `i` (the first pushed is 0).
pub fn arg(args: &[Ref], i: usize) -> Result<Ref, Trap> {
    args.get(i)
        .copied()
        .ok_or_else(|| throw("sys: need more parameters"))
}

/// Argument `i`, which must be an `.internal.int`.
pub fn int_arg(vm: &Vm, args: &[Ref], i: usize) -> Result<i32, Trap> {
    match vm.heap.get(arg(args, i)?).kind {
        Kind::Int(v) => Ok(v),
        _ => Err(throw("not an integer arg")),
    }
}

/// Argument `i`, which must be an `.internal.string`: its bytes.
pub fn str_arg(vm: &Vm, args: &[Ref], i: usize) -> Result<Vec<u8>, Trap> {
    vm.str_bytes(arg(args, i)?)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| throw("not a string arg"))
}

/// Returns `r`.
pub fn ret(r: Ref) -> Result<Native, Trap> {
    Ok(Native::Return(r))
}

/// Returns a new `.internal.int`.
pub fn ret_int(vm: &mut Vm, v: i32) -> Result<Native, Trap> {
    ret(vm.new_int(v))
}

/// Returns a new `.internal.string`.
pub fn ret_str(vm: &mut Vm, s: impl Into<Vec<u8>>) -> Result<Native, Trap> {
    ret(vm.new_string(s.into()))
}

/// FNV-1a over an object's data, for `hashCode`.
fn hash(vm: &Vm, this: Ref) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    };
    match &vm.heap.get(this).kind {
        Kind::Int(v) => return *v,
        Kind::Long(v) => eat(&v.to_le_bytes()),
        Kind::Float(v) => eat(&v.to_le_bytes()),
        Kind::Double(v) => eat(&v.to_le_bytes()),
        Kind::Str(s) | Kind::Binary(s) => eat(s),
        _ => eat(&this.index().to_le_bytes()),
    }
    h as i32
}

/// Prints an object the way `boot.consolePrint` does: strings raw, ints in
/// decimal, anything else through its method 5 (toString) on a nested run.
pub fn print_object(vm: &mut Vm, o: Ref) -> Result<(), Trap> {
    match &vm.heap.get(o).kind {
        Kind::Str(s) => {
            let s = s.clone();
            vm.console.extend_from_slice(&s);
        }
        Kind::Int(v) => {
            let v = *v;
            let _ = write!(StrOut(&mut vm.console), "{v}");
        }
        _ => {
            let s = vm.run_nested(o, 5, &[])?;
            if let Some(b) = vm.str_bytes(s) {
                let b = b.to_vec();
                vm.console.extend_from_slice(&b);
            }
        }
    }
    Ok(())
}

struct StrOut<'a>(&'a mut Vec<u8>);

impl Write for StrOut<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Runs native `ordinal` of internal class `class_idx` on `this`.
pub fn call(
    vm: &mut Vm,
    class_idx: usize,
    ordinal: u8,
    this: Ref,
    args: &[Ref],
) -> Result<Native, Trap> {
    let specific = match class_idx {
        ic::INT | ic::LONG | ic::FLOAT | ic::DOUBLE => number(vm, ordinal, this, args)?,
        ic::STRING => string(vm, ordinal, this, args)?,
        ic::ARRAY => array(vm, ordinal, this, args)?,
        ic::BOOT => boot(vm, ordinal, this, args)?,
        ic::CLASS => class(vm, ordinal, this, args)?,
        ic::THREAD => thread(vm, ordinal)?,
        ic::WORLD => match ordinal {
            5 => Some(ret_str(vm, "(world)")?),
            8 => Some(ret(vm.current_thread_obj())?),
            _ => None,
        },
        ic::BINARY => binary(vm, ordinal, this, args)?,
        ic::DIRECTORY => directory(vm, ordinal, this, args)?,
        ic::TTY => tty(vm, ordinal, this, args)?,
        ic::WINDOW => window(vm, ordinal, this, args)?,
        ic::BITMAP => bitmap(vm, ordinal, this, args)?,
        ic::CONNECTION => connection(vm, ordinal, this, args)?,
        ic::MUTEX => mutex(vm, ordinal, this)?,
        i if i >= INTERNAL_CLASSES.len() => {
            let f = vm
                .native_classes
                .get(i - INTERNAL_CLASSES.len())
                .and_then(|c| c.methods.iter().find(|m| m.0 == ordinal))
                .map(|m| m.1);
            match f {
                Some(f) => Some(f(vm, this, args)?),
                None => None,
            }
        }
        _ => None,
    };
    match specific {
        Some(n) => Ok(n),
        None => void_default(vm, ordinal, this, args),
    }
}

/// The `.internal.void` table every internal class falls back to.
fn void_default(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Native, Trap> {
    match ordinal {
        0 | 1 => ret(Ref::NULL),
        2 => ret(vm.class_of(this)),
        3 => Err(throw("void clone called")),
        4 => {
            let other = arg(args, 0)?;
            ret_int(vm, i32::from(this == other))
        }
        5 => ret_str(vm, "(void)"),
        6 => ret_str(vm, "<void>"),
        7 => ret_str(vm, "(void)"),
        14 => {
            if !this.is_null() {
                vm.heap.get_mut(this).flags |= flags::IMMUTABLE;
            }
            ret_int(vm, 0)
        }
        15 => {
            let h = hash(vm, this);
            ret_int(vm, h)
        }
        _ => Err(throw("invalid syscall called")),
    }
}

fn number(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    let kind = vm.heap.get(this).kind.clone();
    let class = vm.class_of(this);
    Ok(Some(match ordinal {
        3 => {
            let f = vm.heap.get(this).flags;
            ret(vm.heap.alloc(class, f, kind))?
        }
        4 => {
            let other = arg(args, 0)?;
            let same = vm.class_of(other) == class
                && match (&kind, &vm.heap.get(other).kind) {
                    (Kind::Int(a), Kind::Int(b)) => a == b,
                    (Kind::Long(a), Kind::Long(b)) => a == b,
                    (Kind::Float(a), Kind::Float(b)) => a == b,
                    (Kind::Double(a), Kind::Double(b)) => a == b,
                    _ => false,
                };
            ret_int(vm, i32::from(same))?
        }
        5 | 6 => {
            let (text, tag) = match kind {
                Kind::Int(v) => (v.to_string(), "int"),
                Kind::Long(v) => (v.to_string(), "long"),
                Kind::Float(v) => (format!("{v:.6}"), "float"),
                Kind::Double(v) => (format!("{v:.6}"), "double"),
                _ => ("?".to_string(), "?"),
            };
            if ordinal == 5 {
                ret_str(vm, text)?
            } else {
                ret_str(vm, format!("<{tag}>{text}</{tag}>"))?
            }
        }
        14 => Err(throw("invalid syscall called"))?,
        _ => return Ok(None),
    }))
}

fn string(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    let me = vm.str_bytes(this).map(<[u8]>::to_vec).unwrap_or_default();
    Ok(Some(match ordinal {
        3 => ret_str(vm, me)?,
        4 => {
            let other = arg(args, 0)?;
            if other.is_null() {
                ret_int(vm, 0)?
            } else {
                let s = vm
                    .str_bytes(other)
                    .ok_or_else(|| throw("not a string arg"))?;
                let eq = i32::from(s == me.as_slice());
                ret_int(vm, eq)?
            }
        }
        5 => ret(this)?,
        8 => {
            let index = int_arg(vm, args, 0)?;
            let len = int_arg(vm, args, 1)?;
            if index < 0 || index as usize >= me.len() {
                return Err(throw("string.substring index is out of bounds"));
            }
            if len < 0 {
                return Err(throw("string.substring length is negative"));
            }
            let n = (len as usize).min(me.len() - index as usize);
            ret_str(vm, me[index as usize..index as usize + n].to_vec())?
        }
        9 => {
            let index = int_arg(vm, args, 0)?;
            let b = usize::try_from(index).ok().and_then(|i| me.get(i).copied());
            let b = b.ok_or_else(|| throw("string.charAt index is out of bounds"))?;
            ret_int(vm, i32::from(b))?
        }
        10 => {
            let mut s = me;
            s.extend_from_slice(&str_arg(vm, args, 0)?);
            if s.len() > vm.config.max_string_bytes {
                return Err(throw("string.concat: result too long"));
            }
            ret_str(vm, s)?
        }
        11 => ret_int(vm, me.len() as i32)?,
        12 => {
            let needle = str_arg(vm, args, 0)?;
            let pos = if needle.is_empty() {
                Some(0)
            } else {
                me.windows(needle.len())
                    .position(|w| w == needle.as_slice())
            };
            ret_int(vm, pos.map_or(-1, |p| p as i32))?
        }
        13 | 14 => Err(throw("invalid syscall called"))?,
        16 | 17 => {
            let text = String::from_utf8_lossy(&me);
            let v = text.trim().parse::<i64>().unwrap_or(0);
            if ordinal == 16 {
                ret_int(vm, v as i32)?
            } else {
                let class = vm.internal[ic::LONG];
                ret(vm
                    .heap
                    .alloc(class, flags::INTERNAL | flags::IMMUTABLE, Kind::Long(v)))?
            }
        }
        18 | 19 => Err(throw("not impl"))?,
        20 => Err(throw("parseJson is not implemented"))?,
        _ => return Ok(None),
    }))
}

fn array(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    Ok(Some(match ordinal {
        5 => ret_str(vm, "array")?,
        8 | 9 => Err(throw("not implemented"))?,
        10 => {
            let i = int_arg(vm, args, 0)?;
            let Kind::Array(v) = &vm.heap.get(this).kind else {
                return Err(throw("not an array"));
            };
            let e = usize::try_from(i).ok().and_then(|i| v.get(i).copied());
            ret(e.ok_or_else(|| throw("array get - index is out of bounds"))?)?
        }
        11 => {
            let value = arg(args, 0)?;
            let i = int_arg(vm, args, 1)?;
            let i = usize::try_from(i).map_err(|_| throw("array set - index is out of bounds"))?;
            if i >= vm.config.max_heap_objects {
                return Err(throw("array set - index is out of bounds"));
            }
            let Kind::Array(v) = &mut vm.heap.get_mut(this).kind else {
                return Err(throw("not an array"));
            };
            if v.len() <= i {
                v.resize(i + 1, Ref::NULL);
            }
            v[i] = value;
            ret(value)?
        }
        12 => {
            let n = match &vm.heap.get(this).kind {
                Kind::Array(v) => v.len() as i32,
                _ => 0,
            };
            ret_int(vm, n)?
        }
        _ => return Ok(None),
    }))
}

fn boot(vm: &mut Vm, ordinal: u8, _this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    Ok(Some(match ordinal {
        5 => ret_str(vm, "bootstrap")?,
        8 => {
            let name = str_arg(vm, args, 0)?;
            match vm.load_class_by_name(&name) {
                Ok(Some(c)) => ret(c)?,
                _ => {
                    let mut msg = name;
                    msg.extend_from_slice(b" - class load error");
                    let s = vm.new_string(msg);
                    return Err(Trap::Throw(s));
                }
            }
        }
        16 => {
            for &o in args.iter().rev() {
                print_object(vm, o)?;
            }
            ret(Ref::NULL)?
        }
        17 => {
            vm.class_loader = arg(args, 0)?;
            ret(Ref::NULL)?
        }
        18 => {
            let obj = arg(args, 0)?;
            let boot = vm.boot_object;
            vm.spawn(obj, 8, &[boot])?;
            ret(Ref::NULL)?
        }
        19 => {
            let n = int_arg(vm, args, 0)?;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= vm.config.max_binary_bytes);
            let n = n.ok_or_else(|| throw("createBinary: bad size"))?;
            let class = vm.internal[ic::BINARY];
            ret(vm
                .heap
                .alloc(class, flags::INTERNAL, Kind::Binary(vec![0; n])))?
        }
        20 => {
            // setScreenBackground(bitmap): tiled under every window.
            let bmp = arg(args, 0)?;
            if let Kind::Bitmap(b) = &vm.heap.get(bmp).kind {
                vm.screen.background = Some((**b).clone());
                vm.screen.dirty = true;
            }
            ret(Ref::NULL)?
        }
        21 => {
            let ms = int_arg(vm, args, 0)?.max(0) as u64;
            Native::Sleep {
                until_ns: vm.now_ns.saturating_add(ms * 1_000_000),
                value: Ref::NULL,
            }
        }
        22 => {
            vm.os_entry = arg(args, 0)?;
            ret(Ref::NULL)?
        }
        23 => ret(vm.env)?,
        24 => return Err(Trap::Exit(33)),
        _ => return Ok(None),
    }))
}

fn class(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    Ok(Some(match ordinal {
        5 => ret_str(vm, "class")?,
        8 => Err(throw("newClass is not implemented"))?,
        10 => {
            let slot = int_arg(vm, args, 0)?;
            let value = arg(args, 1)?;
            let slot = usize::try_from(slot)
                .ok()
                .filter(|&s| s < 1 << 16)
                .ok_or_else(|| throw("bad static slot"))?;
            if let Kind::Class(c) = &mut vm.heap.get_mut(this).kind {
                if c.statics.len() <= slot {
                    c.statics.resize(slot + 1, Ref::NULL);
                }
                c.statics[slot] = value;
            }
            ret(Ref::NULL)?
        }
        11 => {
            let slot = int_arg(vm, args, 0)?;
            let v = vm.class_data(this).and_then(|c| {
                usize::try_from(slot)
                    .ok()
                    .and_then(|s| c.statics.get(s).copied())
            });
            ret(v.unwrap_or(Ref::NULL))?
        }
        14 => {
            let obj = arg(args, 0)?;
            let yes = vm.is_or_child(obj, this);
            ret_int(vm, i32::from(yes))?
        }
        _ => return Ok(None),
    }))
}

fn thread(vm: &mut Vm, ordinal: u8) -> Result<Option<Native>, Trap> {
    Ok(Some(match ordinal {
        5 => ret_str(vm, "thread")?,
        10 | 11 => Err(throw("Not this way"))?,
        12 => {
            let cur = vm.current;
            let existing = vm
                .threads
                .get(cur)
                .map(|t| t.environment)
                .unwrap_or(Ref::NULL);
            if !existing.is_null() {
                ret(existing)?
            } else {
                let class = vm.lookup_class(b".phantom.environment")?;
                let env = if class.is_null() {
                    Ref::NULL
                } else {
                    vm.instantiate(class)?
                };
                if let Some(t) = vm.threads.get_mut(cur) {
                    t.environment = env;
                }
                ret(env)?
            }
        }
        13 => ret(Ref::NULL)?,
        14 => ret(vm.os_entry)?,
        _ => return Ok(None),
    }))
}

fn binary(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    let oob = || throw("binary index is out of bounds");
    Ok(Some(match ordinal {
        5 => {
            let bytes = match &vm.heap.get(this).kind {
                Kind::Binary(b) => b.clone(),
                _ => Vec::new(),
            };
            let mut out = StrOut(&mut vm.console);
            for (i, chunk) in bytes.chunks(16).enumerate() {
                let _ = write!(out, "{:04x}:", i * 16);
                for b in chunk {
                    let _ = write!(out, " {b:02x}");
                }
                let _ = writeln!(out);
            }
            ret_str(vm, "(binary)")?
        }
        8 => {
            let i = int_arg(vm, args, 0)?;
            let Kind::Binary(b) = &vm.heap.get(this).kind else {
                return Err(oob());
            };
            let v = usize::try_from(i)
                .ok()
                .and_then(|i| b.get(i).copied())
                .ok_or_else(oob)?;
            ret_int(vm, i32::from(v))?
        }
        9 => {
            let i = int_arg(vm, args, 0)?;
            let v = int_arg(vm, args, 1)?;
            let Kind::Binary(b) = &mut vm.heap.get_mut(this).kind else {
                return Err(oob());
            };
            let cell = usize::try_from(i)
                .ok()
                .and_then(|i| b.get_mut(i))
                .ok_or_else(oob)?;
            *cell = v as u8;
            ret(Ref::NULL)?
        }
        10 => {
            let src = arg(args, 0)?;
            let to = int_arg(vm, args, 1)?;
            let from = int_arg(vm, args, 2)?;
            let len = int_arg(vm, args, 3)?;
            let Kind::Binary(s) = &vm.heap.get(src).kind else {
                return Err(throw("not a binary arg"));
            };
            let (to, from, len) = (
                usize::try_from(to).map_err(|_| oob())?,
                usize::try_from(from).map_err(|_| oob())?,
                usize::try_from(len).map_err(|_| oob())?,
            );
            let chunk = s
                .get(from..from.checked_add(len).ok_or_else(oob)?)
                .ok_or_else(oob)?
                .to_vec();
            let Kind::Binary(d) = &mut vm.heap.get_mut(this).kind else {
                return Err(oob());
            };
            let dst = d
                .get_mut(to..to.checked_add(len).ok_or_else(oob)?)
                .ok_or_else(oob)?;
            dst.copy_from_slice(&chunk);
            ret(Ref::NULL)?
        }
        _ => return Ok(None),
    }))
}

fn directory(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    Ok(Some(match ordinal {
        4 => Err(throw("directory equals is not implemented"))?,
        5 => ret_str(vm, "(directory)")?,
        8 => {
            let key = str_arg(vm, args, 0)?;
            let value = arg(args, 1)?;
            let Kind::Directory(d) = &mut vm.heap.get_mut(this).kind else {
                return Err(throw("not a directory"));
            };
            let rc = match d.entry(key) {
                std::collections::btree_map::Entry::Occupied(_) => EEXIST,
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(value);
                    0
                }
            };
            ret_int(vm, rc)?
        }
        9 => {
            let key = str_arg(vm, args, 0)?;
            let Kind::Directory(d) = &vm.heap.get(this).kind else {
                return Err(throw("not a directory"));
            };
            ret(d.get(&key).copied().unwrap_or(Ref::NULL))?
        }
        10 => {
            let key = str_arg(vm, args, 0)?;
            let Kind::Directory(d) = &mut vm.heap.get_mut(this).kind else {
                return Err(throw("not a directory"));
            };
            let rc = if d.remove(&key).is_some() { 0 } else { ENOENT };
            ret_int(vm, rc)?
        }
        11 => {
            let n = match &vm.heap.get(this).kind {
                Kind::Directory(d) => d.len() as i32,
                _ => 0,
            };
            ret_int(vm, n)?
        }
        12 => Err(throw("directory iterate is not implemented"))?,
        _ => return Ok(None),
    }))
}

fn tty(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    Ok(Some(match ordinal {
        5 => ret_str(vm, "tty window")?,
        16 => ret_int(vm, 0)?,
        17 => {
            let s = str_arg(vm, args, 0)?;
            vm.tty_write(this, &s);
            ret(Ref::NULL)?
        }
        // debug(obj) and setcolor are no-ops (spec §3.6).
        18 | 21 => ret(Ref::NULL)?,
        19 => {
            // gotoxy(x, y): in character cells from the top-left corner.
            let (x, y) = (int_arg(vm, args, 0)?, int_arg(vm, args, 1)?);
            if let Kind::Tty(t) = &mut vm.heap.get_mut(this).kind {
                let top = i64::from(t.canvas.height()) - crate::screen::FONT_H;
                t.cursor = (
                    i64::from(x.max(0)) * crate::screen::FONT_W,
                    (top - i64::from(y.max(0)) * crate::screen::FONT_H).max(0),
                );
            }
            ret(Ref::NULL)?
        }
        20 => {
            if let Kind::Tty(t) = &mut vm.heap.get_mut(this).kind {
                t.text.clear();
                t.canvas.fill(t.bg);
                t.cursor = (0, i64::from(t.canvas.height()) - crate::screen::FONT_H);
                vm.screen.dirty = true;
            }
            ret(Ref::NULL)?
        }
        22 | 23 => Err(throw("not implemented"))?,
        24 => {
            let (x, y) = (int_arg(vm, args, 0)?, int_arg(vm, args, 1)?);
            if let Kind::Tty(t) = &mut vm.heap.get_mut(this).kind {
                (t.x, t.y) = (x, y);
                vm.screen.dirty = true;
            }
            ret(Ref::NULL)?
        }
        25 => {
            let mut s = str_arg(vm, args, 0)?;
            s.truncate(crate::screen::MAX_TITLE);
            if let Kind::Tty(t) = &mut vm.heap.get_mut(this).kind {
                t.title = s;
                vm.screen.dirty = true;
            }
            ret(Ref::NULL)?
        }
        26 => {
            let c = int_arg(vm, args, 0)? as u32;
            if let Kind::Tty(t) = &mut vm.heap.get_mut(this).kind {
                t.bg = c;
            }
            ret(Ref::NULL)?
        }
        _ => return Ok(None),
    }))
}

/// `EINVAL`, returned by `window.scrollHor` for a rectangle outside.
pub const EINVAL: i32 = 22;

/// Copies part of bitmap `img` into window `this`: `f` gets the window's
/// canvas and the bitmap's, borrowed in place (a bitmap may be 16 MiB: it
/// is not copied). Throws what the C VM's missing class checks should.
fn blit_bitmap(
    vm: &mut Vm,
    this: Ref,
    img: Ref,
    f: impl FnOnce(&mut crate::screen::Canvas, &crate::screen::Canvas),
) -> Result<Native, Trap> {
    if !matches!(vm.heap.get(img).kind, Kind::Bitmap(_)) {
        return Err(throw("not a bitmap"));
    }
    // The window's canvas is taken out for the copy (the bitmap is another
    // object of the same heap), then put back.
    let (mut canvas, autoupdate) = match &mut vm.heap.get_mut(this).kind {
        Kind::Window(w) => (std::mem::take(&mut w.canvas), w.autoupdate),
        _ => return Err(throw("not a window")),
    };
    if let Kind::Bitmap(b) = &vm.heap.get(img).kind {
        f(&mut canvas, b);
    }
    if let Kind::Window(w) = &mut vm.heap.get_mut(this).kind {
        w.canvas = canvas;
    }
    if autoupdate {
        vm.screen.dirty = true;
    }
    ret(Ref::NULL)
}

/// `.internal.window` (spec §3.6; `syscall_win.c`): a window's pixels are
/// its own canvas; `update` (or, with autoupdate on, `clear`, `drawString`
/// and the image draws) shows them on the screen.
fn window(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    use crate::screen::WindowState;
    // Integer arguments first (they may throw), then the window.
    let ints = |vm: &Vm, n: usize| -> Result<Vec<i64>, Trap> {
        (0..n)
            .map(|i| int_arg(vm, args, i).map(i64::from))
            .collect()
    };
    fn win(vm: &mut Vm, this: Ref) -> Result<&mut WindowState, Trap> {
        match &mut vm.heap.get_mut(this).kind {
            Kind::Window(w) => Ok(w),
            _ => Err(throw("not a window")),
        }
    }
    // Runs a drawing operation; `shows` says whether it updates the screen
    // when autoupdate is on.
    fn draw(
        vm: &mut Vm,
        this: Ref,
        shows: bool,
        f: impl FnOnce(&mut WindowState),
    ) -> Result<Native, Trap> {
        let w = win(vm, this)?;
        f(w);
        if shows && w.autoupdate {
            vm.screen.dirty = true;
        }
        ret(Ref::NULL)
    }
    Ok(Some(match ordinal {
        5 => ret_str(vm, "(window)")?,
        16 => {
            let v = win(vm, this)?.canvas.width() as i32;
            ret_int(vm, v)?
        }
        17 => {
            let v = win(vm, this)?.canvas.height() as i32;
            ret_int(vm, v)?
        }
        18 => {
            let v = win(vm, this)?.x;
            ret_int(vm, v)?
        }
        19 => {
            let v = win(vm, this)?.y;
            ret_int(vm, v)?
        }
        20 => draw(vm, this, true, |w| w.canvas.fill(w.bg))?,
        21 => {
            let c = int_arg(vm, args, 0)? as u32;
            draw(vm, this, false, |w| w.canvas.fill(c))?
        }
        22 => {
            let c = int_arg(vm, args, 0)? as u32;
            draw(vm, this, false, |w| w.fg = c)?
        }
        23 => {
            let c = int_arg(vm, args, 0)? as u32;
            draw(vm, this, false, |w| w.bg = c)?
        }
        24 => {
            let p = ints(vm, 2)?;
            let mut text = str_arg(vm, args, 2)?;
            text.truncate(1024);
            draw(vm, this, true, |w| {
                let (mut x, mut y) = (p[0], p[1]);
                w.canvas.text(&mut x, &mut y, &text, w.fg, w.bg);
            })?
        }
        25 => {
            let p = ints(vm, 2)?;
            blit_bitmap(vm, this, arg(args, 2)?, |canvas, img| {
                let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
                canvas.blit(img, p[0], p[1], 0, 0, iw, ih)
            })?
        }
        26 => {
            let p = ints(vm, 2)?;
            let (x, y) = (p[0], p[1]);
            if x <= 0 || y <= 0 || (x * y) as u64 > crate::screen::MAX_WINDOW_PIXELS {
                return Err(throw("new win size > PVM_MAX_WIN_PIXELS"));
            }
            vm.screen.dirty = true;
            draw(vm, this, false, |w| {
                w.canvas.resize(x as u32, y as u32, w.bg)
            })?
        }
        27 => {
            let p = ints(vm, 2)?;
            vm.screen.dirty = true;
            draw(vm, this, false, |w| (w.x, w.y) = (p[0] as i32, p[1] as i32))?
        }
        28 => {
            let p = ints(vm, 4)?;
            draw(vm, this, false, |w| {
                w.canvas
                    .draw_line(p[0], p[1], p[0] + p[2], p[1] + p[3], w.fg)
            })?
        }
        29 => {
            let p = ints(vm, 4)?;
            draw(vm, this, false, |w| {
                w.canvas.draw_box(p[0], p[1], p[2], p[3], w.fg)
            })?
        }
        30 => {
            let p = ints(vm, 4)?;
            draw(vm, this, false, |w| {
                w.canvas.fill_box(p[0], p[1], p[2], p[3], w.fg)
            })?
        }
        31 => {
            let p = ints(vm, 4)?;
            draw(vm, this, false, |w| {
                w.canvas.fill_ellipse(p[0], p[1], p[2], p[3], w.fg)
            })?
        }
        // setEventHandler: displays have no input, so no event ever comes.
        32 => {
            arg(args, 0)?;
            ret(Ref::NULL)?
        }
        33 => {
            let mut s = str_arg(vm, args, 0)?;
            s.truncate(crate::screen::MAX_TITLE);
            vm.screen.dirty = true;
            draw(vm, this, false, |w| w.title = s)?
        }
        34 => {
            win(vm, this)?;
            vm.screen.dirty = true;
            ret(Ref::NULL)?
        }
        35 => {
            let p = ints(vm, 5)?;
            let w = win(vm, this)?;
            let bg = w.bg;
            let ok = w.canvas.scroll_hor(p[0], p[1], p[2], p[3], p[4], bg);
            ret_int(vm, if ok { 0 } else { EINVAL })?
        }
        36 => {
            let p = ints(vm, 2)?;
            let q: Vec<i64> = (3..7)
                .map(|i| int_arg(vm, args, i).map(i64::from))
                .collect::<Result<_, _>>()?;
            let (xs, ys, w_, h_) = (q[0], q[1], q[2], q[3]);
            blit_bitmap(vm, this, arg(args, 2)?, |canvas, img| {
                canvas.blit(img, p[0] + xs, p[1] + ys, xs, ys, w_, h_)
            })?
        }
        37 => {
            let on = int_arg(vm, args, 0)? != 0;
            draw(vm, this, false, |w| w.autoupdate = on)?
        }
        _ => return Ok(None),
    }))
}

/// `ENXIO`: a connection to nothing the VM serves.
pub const ENXIO: i32 = 6;

/// `.internal.connection` (spec §3.6, `syscall.c`; the kernel parts of
/// `vm_cn_timer.c` and `vm_cn_stats.c`): 8 connect(name) → 0 or ENXIO,
/// 9 disconnect, 10 check → ENXIO, 11 invoke(arg, op), 12 setCallback(obj,
/// method), 13 block(arg, op).
fn connection(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    use crate::heap::{Connected, ConnectionState};
    fn state(vm: &mut Vm, this: Ref) -> Result<&mut ConnectionState, Trap> {
        match &mut vm.heap.get_mut(this).kind {
            Kind::Connection(c) => Ok(c),
            _ => Err(throw("not a connection")),
        }
    }
    Ok(Some(match ordinal {
        5 => ret_str(vm, "(connection)")?,
        8 => {
            let name = match &vm.heap.get(arg(args, 0)?).kind {
                Kind::Str(s) => s.clone(),
                _ => return Err(throw("connection.connect: not a string arg")),
            };
            if name.len() >= 1024 {
                return Err(throw("string arg too long"));
            }
            let kind = match name.get(..4) {
                Some(b"tmr:") => Some(Connected::Timer),
                Some(b"stt:") => Some(Connected::Stats),
                _ => None,
            };
            let c = state(vm, this)?;
            c.name = name;
            c.kind = kind;
            ret_int(vm, if kind.is_some() { 0 } else { ENXIO })?
        }
        9 => {
            state(vm, this)?.kind = None;
            vm.conn_timers.retain(|t| t.1 != this);
            ret_int(vm, 0)?
        }
        10 => {
            int_arg(vm, args, 0)?;
            ret_int(vm, ENXIO)?
        }
        11 => {
            let op = int_arg(vm, args, 1)?;
            let value = &vm.heap.get(arg(args, 0)?).kind;
            let ms = match value {
                Kind::Int(v) => Some(*v),
                _ => None,
            };
            let rc = match (state(vm, this)?.kind, op, ms) {
                (None, ..) => ENXIO,
                // Op 0 of a timer: call back once, `ms` from now (a new
                // request replaces the one pending, as set_net_timer does).
                (Some(Connected::Timer), 0, Some(ms)) => {
                    let due = vm
                        .now_ns
                        .saturating_add(u64::from(ms.max(0) as u32) * 1_000_000);
                    vm.conn_timers.retain(|t| t.1 != this);
                    vm.conn_timers.push((due, this));
                    0
                }
                _ => EINVAL,
            };
            ret_int(vm, rc)?
        }
        12 => {
            let obj = arg(args, 0)?;
            let method = int_arg(vm, args, 1)?;
            let method = u32::try_from(method).map_err(|_| throw("bad callback method"))?;
            let c = state(vm, this)?;
            let had = !c.callback.is_null();
            c.callback = obj;
            c.method = method;
            ret_int(vm, i32::from(had))?
        }
        13 => {
            let value = arg(args, 0)?;
            let op = int_arg(vm, args, 1)?;
            match state(vm, this)?.kind {
                None => return Err(throw("connection: not connected")),
                // The timer's blocking call sleeps `op` milliseconds.
                Some(Connected::Timer) => Native::Sleep {
                    until_ns: vm
                        .now_ns
                        .saturating_add(u64::from(op.max(0) as u32) * 1_000_000),
                    value: Ref::NULL,
                },
                // Statistics: op 0..=4 read counter `value` (current,
                // average, this run, previous run, all runs), op 5 the
                // CPU's idle percentage. The hosted VM keeps no kernel
                // counters: every counter reads 0 and the CPU is 100%
                // idle; a bad op or a non-int counter is -1.
                Some(Connected::Stats) => {
                    let counter = match vm.heap.get(value).kind {
                        Kind::Int(v) => Some(v),
                        _ => None,
                    };
                    let v = match (op, counter) {
                        (0..=4, Some(0..)) => 0,
                        (5, Some(_)) => 100,
                        _ => -1,
                    };
                    ret_int(vm, v)?
                }
            }
        }
        _ => return Ok(None),
    }))
}

/// `.internal.bitmap`: 8 loadFromString(ppm), 9 paintTo (a no-op, as in
/// the C VM, where its body is compiled out).
fn bitmap(vm: &mut Vm, ordinal: u8, this: Ref, args: &[Ref]) -> Result<Option<Native>, Trap> {
    Ok(Some(match ordinal {
        5 => ret_str(vm, "(bitmap)")?,
        8 => {
            let data = str_arg(vm, args, 0)?;
            let max = (vm.config.max_binary_bytes / 4) as u64;
            let canvas = crate::screen::parse_ppm(&data, max)
                .ok_or_else(|| throw("can not parse graphics data"))?;
            match &mut vm.heap.get_mut(this).kind {
                Kind::Bitmap(b) => **b = canvas,
                _ => return Err(throw("not a bitmap")),
            }
            ret(Ref::NULL)?
        }
        9 => ret(Ref::NULL)?,
        _ => return Ok(None),
    }))
}

fn mutex(vm: &mut Vm, ordinal: u8, this: Ref) -> Result<Option<Native>, Trap> {
    let me = vm.current_thread_id();
    let Kind::Mutex(owner) = vm.heap.get(this).kind else {
        return Ok(None);
    };
    Ok(Some(match ordinal {
        8 | 10 => match owner {
            Some(o) if o != me => {
                if ordinal == 8 {
                    Native::Block(this)
                } else {
                    ret_int(vm, 0)?
                }
            }
            _ => {
                vm.heap.get_mut(this).kind = Kind::Mutex(Some(me));
                if ordinal == 8 {
                    ret(Ref::NULL)?
                } else {
                    ret_int(vm, 1)?
                }
            }
        },
        9 => {
            vm.heap.get_mut(this).kind = Kind::Mutex(None);
            vm.wake_mutex_waiters(this);
            ret(Ref::NULL)?
        }
        _ => return Ok(None),
    }))
}
