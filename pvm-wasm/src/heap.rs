//! The object heap: an arena of objects addressed by index ([`Ref`]), with
//! a precise stop-the-world mark & sweep collector.
//!
//! ```text
//!   Heap ─ objects: Vec<Object> ─┬─ Object { class: Ref, flags, kind: Kind }
//!        ─ free: Vec<u32>        │            └─ Plain(fields) | Int | Str | Array
//!        ─ marks (bitset)        │               | Class(ClassData) | Code(bytes) …
//!                                └─ slot 0 is the null object, never freed
//! ```
//!
//! Everything is plain data (indices, vectors, `Arc` byte slices), so a
//! linear-memory checkpoint of the process holds the whole VM as is.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::code::Code;

/// A reference to a heap object: its index in the arena. Identity (`os_eq`)
/// is index equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ref(pub(crate) u32);

impl Ref {
    /// The null object (slot 0). The VM has a single null (spec §2.9 quirk 3).
    pub const NULL: Ref = Ref(0);

    /// True for the null object.
    pub fn is_null(self) -> bool {
        self == Ref::NULL
    }

    /// The arena index.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// Object flags (spec §3.1).
pub mod flags {
    /// Setting a field panics.
    pub const IMMUTABLE: u32 = 0x2000;
    /// Native class.
    pub const INTERNAL: u32 = 0x80;
}

/// A class (spec §3.3).
#[derive(Debug, Clone, Default)]
pub struct ClassData {
    /// Fully qualified name.
    pub name: Vec<u8>,
    /// Index in the internal class table, `None` for user classes.
    pub internal: Option<usize>,
    /// Number of fields of an instance.
    pub n_fields: usize,
    /// Flags given to instances.
    pub object_flags: u32,
    /// Parent class; the null class `.internal.void` for roots.
    pub parent: Ref,
    /// Method table: code objects by ordinal, null for empty slots.
    pub interface: Vec<Ref>,
    /// Method names by ordinal, from this class's own `M` records.
    pub method_names: Vec<Option<Vec<u8>>>,
    /// Constant pool by index (null for unset entries).
    pub const_pool: Vec<Ref>,
    /// Static variables (`class.setStatic`/`getStatic`).
    pub statics: Vec<Ref>,
}

/// A tty window (`.internal.io.tty`): its text is drawn into its own
/// pixels (and kept as text too), never printed to stdout.
#[derive(Debug, Clone)]
pub struct TtyState {
    /// Text drawn so far (only the most recent [`TTY_KEEP`] bytes).
    pub text: Vec<u8>,
    /// Window title.
    pub title: Vec<u8>,
    /// The window's pixels.
    pub canvas: crate::screen::Canvas,
    /// Position of the window on the screen (bottom-left corner).
    pub x: i32,
    /// See [`TtyState::x`].
    pub y: i32,
    /// Text cursor: the bottom-left corner of the next character's cell.
    pub cursor: (i64, i64),
    /// Text colour.
    pub fg: u32,
    /// Background colour (`setbgcolor`; `clear` fills with it).
    pub bg: u32,
}

impl Default for TtyState {
    fn default() -> Self {
        use crate::screen::{
            BLACK, Canvas, DEFAULT_HEIGHT, DEFAULT_POS, DEFAULT_WIDTH, FONT_H, WHITE,
        };
        TtyState {
            text: Vec::new(),
            title: b"TTY".to_vec(),
            canvas: Canvas::new(DEFAULT_WIDTH, DEFAULT_HEIGHT, WHITE),
            x: DEFAULT_POS,
            y: DEFAULT_POS,
            cursor: (0, i64::from(DEFAULT_HEIGHT) - FONT_H),
            fg: BLACK,
            bg: WHITE,
        }
    }
}

/// What a connection is connected to (`vm_connect.c`'s table; the
/// hosted VM has the timer and the statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connected {
    /// `tmr:`: `invoke(ms, 0)` calls the callback once after `ms`;
    /// `block(_, ms)` sleeps `ms`.
    Timer,
    /// `stt:`: `block(counter, op)` reads a kernel statistic.
    Stats,
}

/// A `.internal.connection`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionState {
    /// The name connected to (`tmr:`), empty before `connect`.
    pub name: Vec<u8>,
    /// The kernel part serving it, if connected.
    pub kind: Option<Connected>,
    /// Called back (`setCallback`): the object, null for none.
    pub callback: Ref,
    /// ... and its method ordinal.
    pub method: u32,
}

/// How much tty text an object keeps.
pub const TTY_KEEP: usize = 64 * 1024;

/// What an object holds.
#[derive(Debug, Clone, Default)]
pub enum Kind {
    /// An unused arena slot.
    #[default]
    Free,
    /// The null object.
    Null,
    /// An instance of a user class: its fields.
    Plain(Vec<Ref>),
    /// `.internal.int`.
    Int(i32),
    /// `.internal.long`.
    Long(i64),
    /// `.internal.float`.
    Float(f32),
    /// `.internal.double`.
    Double(f64),
    /// `.internal.string`: raw bytes.
    Str(Vec<u8>),
    /// `.internal.container.array`.
    Array(Vec<Ref>),
    /// `.internal.binary`.
    Binary(Vec<u8>),
    /// `.internal.class`.
    Class(Box<ClassData>),
    /// `.internal.code`: method bytecode.
    Code(Arc<Code>),
    /// `.internal.directory`: string → object.
    Directory(BTreeMap<Vec<u8>, Ref>),
    /// `.internal.io.tty`.
    Tty(Box<TtyState>),
    /// `.internal.window`.
    Window(Box<crate::screen::WindowState>),
    /// `.internal.bitmap`: its pixels (empty until `loadFromString`).
    Bitmap(Box<crate::screen::Canvas>),
    /// `.internal.connection`.
    Connection(Box<ConnectionState>),
    /// `.internal.mutex`: the owning thread id, if locked.
    Mutex(Option<u32>),
    /// `.internal.thread`: the VM thread id.
    Thread(u32),
    /// Any other internal object without state (boot, world, …).
    Opaque,
}

/// One heap object.
#[derive(Debug, Clone)]
pub struct Object {
    /// The object's class.
    pub class: Ref,
    /// Object flags.
    pub flags: u32,
    /// Contents.
    pub kind: Kind,
}

/// Collector counters. Pause cost is given in objects visited, because the
/// VM has no clock of its own; hosts time [`Heap::collect`] if they need ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Completed collections.
    pub collections: u64,
    /// Objects freed in total.
    pub freed: u64,
    /// Objects marked in the last collection (its live set).
    pub last_live: u64,
    /// The largest number of slots one collection visited (mark + sweep).
    pub max_pause_work: u64,
    /// Objects allocated in total.
    pub allocated: u64,
}

/// The object arena.
#[derive(Debug, Clone)]
pub struct Heap {
    objects: Vec<Object>,
    free: Vec<u32>,
    marks: Vec<u64>,
    live: usize,
    since_gc: usize,
    stats: GcStats,
}

impl Heap {
    /// A heap holding only the null object; its class is patched in later
    /// with [`Heap::set_class`].
    pub fn new() -> Heap {
        let null = Object {
            class: Ref::NULL,
            flags: flags::IMMUTABLE,
            kind: Kind::Null,
        };
        Heap {
            objects: vec![null],
            free: Vec::new(),
            marks: Vec::new(),
            live: 1,
            since_gc: 0,
            stats: GcStats::default(),
        }
    }

    /// Allocates an object.
    #[inline]
    pub fn alloc(&mut self, class: Ref, flags: u32, kind: Kind) -> Ref {
        self.live += 1;
        self.since_gc += 1;
        self.stats.allocated += 1;
        let obj = Object { class, flags, kind };
        match self.free.pop() {
            Some(i) => {
                let old = std::mem::replace(&mut self.objects[i as usize], obj);
                discard(old.kind);
                Ref(i)
            }
            None => {
                self.objects.push(obj);
                Ref((self.objects.len() - 1) as u32)
            }
        }
    }

    /// [`Heap::alloc`] of an `Int` without any out-of-line call: `None`
    /// (and nothing changed) when the free slot on top still owns something
    /// to drop or the arena is full, so the interpreter's loop, which must
    /// not call anything, leaves those cases to `alloc`.
    #[inline(always)]
    pub fn alloc_int_inline(&mut self, class: Ref, flags: u32, v: i32) -> Option<Ref> {
        let r = match self.free.last() {
            Some(&i) => {
                let slot = self.objects.get_mut(i as usize)?;
                if !owns_nothing(&slot.kind) {
                    return None;
                }
                self.free.pop();
                slot.class = class;
                slot.flags = flags;
                // What `discard` would do: the old contents own nothing.
                std::mem::forget(std::mem::replace(&mut slot.kind, Kind::Int(v)));
                Ref(i)
            }
            None if self.objects.len() < self.objects.capacity() => {
                self.objects.push(Object {
                    class,
                    flags,
                    kind: Kind::Int(v),
                });
                Ref((self.objects.len() - 1) as u32)
            }
            None => return None,
        };
        self.live += 1;
        self.since_gc += 1;
        self.stats.allocated += 1;
        Some(r)
    }

    /// Makes room for `additional` more objects without moving the arena.
    pub fn reserve(&mut self, additional: usize) {
        self.objects.reserve(additional);
    }

    /// The object behind a reference.
    #[inline]
    pub fn get(&self, r: Ref) -> &Object {
        &self.objects[r.0 as usize]
    }

    /// The object behind a reference, mutably.
    #[inline]
    pub fn get_mut(&mut self, r: Ref) -> &mut Object {
        &mut self.objects[r.0 as usize]
    }

    /// Changes an object's class (used once, for the null object).
    pub fn set_class(&mut self, r: Ref, class: Ref) {
        self.objects[r.0 as usize].class = class;
    }

    /// Live objects (allocated and not yet swept).
    pub fn live(&self) -> usize {
        self.live
    }

    /// Allocations since the last collection.
    pub fn since_gc(&self) -> usize {
        self.since_gc
    }

    /// Collector counters.
    pub fn stats(&self) -> GcStats {
        self.stats
    }

    fn mark(&mut self, r: Ref) -> bool {
        let (w, b) = ((r.0 / 64) as usize, r.0 % 64);
        let was = self.marks[w] & (1 << b) != 0;
        self.marks[w] |= 1 << b;
        !was
    }

    /// Marks everything reachable from `roots` and frees the rest.
    /// Returns the number of objects freed.
    pub fn collect(&mut self, roots: impl IntoIterator<Item = Ref>) -> usize {
        self.marks.clear();
        self.marks.resize(self.objects.len().div_ceil(64), 0);
        let mut stack: Vec<Ref> = roots.into_iter().collect();
        stack.push(Ref::NULL);
        let mut marked = 0u64;
        while let Some(r) = stack.pop() {
            if !self.mark(r) {
                continue;
            }
            marked += 1;
            let obj = &self.objects[r.0 as usize];
            stack.push(obj.class);
            match &obj.kind {
                Kind::Plain(v) | Kind::Array(v) => stack.extend_from_slice(v),
                Kind::Class(c) => {
                    stack.push(c.parent);
                    stack.extend_from_slice(&c.interface);
                    stack.extend_from_slice(&c.const_pool);
                    stack.extend_from_slice(&c.statics);
                }
                Kind::Directory(d) => stack.extend(d.values().copied()),
                Kind::Connection(c) => stack.push(c.callback),
                _ => {}
            }
        }
        // Every allocated object that was not marked is freed: one exact
        // reservation instead of doubling the free list while sweeping.
        self.free.reserve(self.live.saturating_sub(marked as usize));
        let mut freed = 0;
        for (i, obj) in self.objects.iter_mut().enumerate() {
            let is_marked = self.marks[i / 64] & (1 << (i % 64)) != 0;
            if !is_marked && !matches!(obj.kind, Kind::Free) {
                discard(std::mem::take(&mut obj.kind));
                obj.class = Ref::NULL;
                self.free.push(i as u32);
                freed += 1;
            }
        }
        self.live -= freed;
        self.since_gc = 0;
        self.stats.collections += 1;
        self.stats.freed += freed as u64;
        self.stats.last_live = marked;
        self.stats.max_pause_work = self
            .stats
            .max_pause_work
            .max(marked + self.objects.len() as u64);
        freed
    }
}

/// Drops a replaced object's contents; the variants that own nothing are
/// forgotten on the spot, so the common case (a free slot, a boxed number)
/// makes no out-of-line drop call.
#[inline(always)]
fn discard(kind: Kind) {
    if owns_nothing(&kind) {
        std::mem::forget(kind);
    } else {
        drop(kind);
    }
}

/// Whether dropping `kind` would free nothing.
#[inline(always)]
fn owns_nothing(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Free
            | Kind::Null
            | Kind::Int(_)
            | Kind::Long(_)
            | Kind::Float(_)
            | Kind::Double(_)
            | Kind::Mutex(_)
            | Kind::Thread(_)
            | Kind::Opaque
    )
}

impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_objects_are_freed_and_slots_reused() {
        let mut h = Heap::new();
        let keep = h.alloc(Ref::NULL, 0, Kind::Array(vec![]));
        let child = h.alloc(Ref::NULL, 0, Kind::Int(7));
        h.get_mut(keep).kind = Kind::Array(vec![child]);
        let junk = h.alloc(Ref::NULL, 0, Kind::Int(1));
        let cycle_a = h.alloc(Ref::NULL, 0, Kind::Array(vec![]));
        let cycle_b = h.alloc(Ref::NULL, 0, Kind::Array(vec![cycle_a]));
        h.get_mut(cycle_a).kind = Kind::Array(vec![cycle_b]);
        assert_eq!(h.collect([keep]), 3);
        assert!(matches!(h.get(child).kind, Kind::Int(7)));
        assert!(matches!(h.get(junk).kind, Kind::Free));
        let again = h.alloc(Ref::NULL, 0, Kind::Int(2));
        assert!([junk, cycle_a, cycle_b].contains(&again));
        assert_eq!(h.live(), 4);
    }
}
