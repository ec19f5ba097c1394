//! The VM state: heap, internal classes, the class directory and cache,
//! threads and their frames, plus class loading and lookup (spec §1.5, §4.4).
//!
//! ```text
//!   Vm ─ heap: Heap (every object, class and code object)
//!      ─ internal: [Ref; 38] (the native classes, spec §3.4)
//!      ─ classes: ClassDir (the .pc files and bulk entries) ─► load_class
//!      ─ cache: name → class (the persistent class cache)
//!      ─ threads: Vec<Thread> ─ frames: Frames { code, ip, this, os, is, es }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::classfile::{self, Record, names_match};
use crate::code::Code;
use crate::heap::{ClassData, GcStats, Heap, Kind, Ref, TtyState, flags};
use crate::stack::Stack;

/// Internal classes in table order (spec §3.4); the index is `sys_table_id`.
pub const INTERNAL_CLASSES: [&str; 38] = [
    ".internal.void",
    ".internal.class",
    ".internal.interface",
    ".internal.code",
    ".internal.int",
    ".internal.long",
    ".internal.string",
    ".internal.container.array",
    ".internal.container.page",
    ".internal.thread",
    ".internal.call_frame",
    ".internal.istack",
    ".internal.ostack",
    ".internal.estack",
    ".internal.boot",
    ".internal.io.tty",
    ".internal.mutex",
    ".internal.cond",
    ".internal.sema",
    ".internal.binary",
    ".internal.bitmap",
    ".internal.closure",
    ".internal.world",
    ".internal.udp",
    ".internal.tcp",
    ".internal.window",
    ".internal.directory",
    ".internal.connection",
    ".internal.float",
    ".internal.double",
    ".internal.net",
    ".internal.http",
    ".internal.time",
    ".internal.stat",
    ".internal.io",
    ".internal.port",
    ".internal.ui.control",
    ".internal.ui.font",
];

/// Indices into [`INTERNAL_CLASSES`].
pub mod ic {
    #![allow(missing_docs)]
    pub const VOID: usize = 0;
    pub const CLASS: usize = 1;
    pub const INTERFACE: usize = 2;
    pub const CODE: usize = 3;
    pub const INT: usize = 4;
    pub const LONG: usize = 5;
    pub const STRING: usize = 6;
    pub const ARRAY: usize = 7;
    pub const THREAD: usize = 9;
    pub const BOOT: usize = 14;
    pub const TTY: usize = 15;
    pub const MUTEX: usize = 16;
    pub const BINARY: usize = 19;
    pub const BITMAP: usize = 20;
    pub const WORLD: usize = 22;
    pub const WINDOW: usize = 25;
    pub const DIRECTORY: usize = 26;
    pub const CONNECTION: usize = 27;
    pub const FLOAT: usize = 28;
    pub const DOUBLE: usize = 29;
}

/// Slots in the system interface every internal class shares (`N_SYS_METHODS`).
pub const N_SYS_METHODS: usize = 64;

/// VM limits and knobs.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Frames one thread (or one nested run) may hold; deeper calls fail
    /// the VM with "call depth limit".
    pub max_call_depth: usize,
    /// Nested synchronous runs (class loader calls, console `toString`)
    /// that may be active at once; each one uses host stack.
    pub max_nested_runs: usize,
    /// Instructions one nested run may execute before it is declared runaway.
    pub max_nested_instructions: u64,
    /// Instructions a thread runs before the scheduler switches threads.
    pub quantum: u64,
    /// Live objects above which the VM fails with "out of memory".
    pub max_heap_objects: usize,
    /// Allocations between collections (at least; grows with the live set).
    pub gc_min_interval: usize,
    /// Largest `.internal.binary` a program may create, in bytes.
    pub max_binary_bytes: usize,
    /// Object and integer stack cells one thread may hold in total;
    /// checked between quanta.
    pub max_stack_cells: usize,
    /// Longest string a native may build (`concat`), in bytes.
    pub max_string_bytes: usize,
    /// Also copy tty (`putws`) text to the console output.
    pub tty_to_console: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            max_call_depth: 4096,
            max_nested_runs: 32,
            max_nested_instructions: 1 << 32,
            quantum: 10_000,
            max_heap_objects: 16 << 20,
            gc_min_interval: 256 * 1024,
            max_binary_bytes: 16 << 20,
            max_stack_cells: 16 << 20,
            max_string_bytes: 16 << 20,
            tty_to_console: false,
        }
    }
}

/// A thread's frames, innermost last. Each is boxed, so that a call or a
/// return moves a pointer rather than the frame.
pub type Frames = Vec<Box<Frame>>;

/// One call frame (spec §2.1). Each frame has its own three stacks.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Bytecode of the running method.
    pub code: Arc<Code>,
    /// Offset of the next instruction.
    pub ip: usize,
    /// The receiver.
    pub this: Ref,
    /// Object stack.
    pub os: Stack<Ref>,
    /// Integer stack.
    pub is: Stack<i32>,
    /// Catchers: (class, absolute target).
    pub es: Vec<(Ref, usize)>,
    /// Method ordinal, for messages.
    pub ordinal: u32,
}

/// Why a thread is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadState {
    /// Ready to run.
    Runnable,
    /// Asleep until the clock reaches this value.
    Sleeping(u64),
    /// Waiting for a mutex to be unlocked; `sys lock` re-runs on wake.
    WaitMutex(Ref),
}

/// A green thread: its thread object and its frame stack.
#[derive(Debug, Clone)]
pub struct Thread {
    /// VM-wide thread id.
    pub id: u32,
    /// The `.internal.thread` object.
    pub obj: Ref,
    /// Frames, innermost last.
    pub frames: Frames,
    /// Scheduling state.
    pub state: ThreadState,
    /// `thread.getEnvironment` result, created lazily.
    pub environment: Ref,
}

/// The class directory: individual `.pc` files and bulk entries.
#[derive(Debug, Clone, Default)]
pub struct ClassDir {
    files: Vec<(String, Vec<u8>)>,
    bulk: Vec<(String, Vec<u8>)>,
}

impl ClassDir {
    /// Builds the directory from (file name, bytes) pairs: `*.pc` files and
    /// `classes` bulk containers; anything else is ignored.
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Result<ClassDir, classfile::LoadError> {
        let mut dir = ClassDir::default();
        for (name, bytes) in files {
            let base = name.rsplit('/').next().unwrap_or(&name).to_string();
            if base == "classes" {
                dir.bulk.extend(classfile::parse_bulk(&bytes)?);
            } else if let Some(stem) = base.strip_suffix(".pc") {
                dir.files.push((stem.to_string(), bytes));
            }
        }
        Ok(dir)
    }

    /// Finds a class's bytes (spec §1.8): files before the bulk container,
    /// exact names before a case-insensitive match.
    pub fn find(&self, name: &str) -> Option<&[u8]> {
        for ignore_case in [false, true] {
            for (n, bytes) in self.files.iter().chain(&self.bulk) {
                if names_match(n, name, ignore_case) {
                    return Some(bytes);
                }
            }
        }
        None
    }
}

/// Something that stops an instruction: a Phantom exception, a VM panic
/// (the C VM's `pvm_exec_panic`) or a program exit.
#[derive(Debug, Clone, PartialEq)]
pub enum Trap {
    /// Throw this object.
    Throw(Ref),
    /// Throw a new string with this text.
    ThrowMsg(String),
    /// The VM cannot go on.
    Panic(String),
    /// The program asked to exit (`boot.reboot`).
    Exit(i32),
}

/// Why `execute` returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// The instruction budget ran out.
    Quantum,
    /// The first frame returned this value.
    Ended(Ref),
    /// The thread went to sleep until this time.
    Sleep(u64),
    /// The thread waits for this mutex.
    Blocked(Ref),
    /// Nothing caught this exception.
    Unhandled(Ref),
    /// The VM panicked.
    Panic(String),
    /// The program asked to exit.
    Exit(i32),
}

/// The whole VM.
#[derive(Debug, Clone)]
pub struct Vm {
    /// The object heap.
    pub heap: Heap,
    /// Limits.
    pub config: VmConfig,
    /// Internal classes by table index.
    pub internal: Vec<Ref>,
    /// The system interface: `sys k; ret` code objects.
    pub sys_stubs: Vec<Ref>,
    /// Class files available to the loader.
    pub classes: ClassDir,
    /// Persistent class cache, by the name used to look the class up.
    pub cache: BTreeMap<Vec<u8>, Ref>,
    /// The user class loader (`boot.setClassLoader`), or null.
    pub class_loader: Ref,
    /// The boot object.
    pub boot_object: Ref,
    /// The OS interface object (`boot.setOsInterface`), or null.
    pub os_entry: Ref,
    /// The kernel environment array.
    pub env: Ref,
    /// Green threads.
    pub threads: Vec<Thread>,
    /// Next thread id.
    pub next_thread_id: u32,
    /// Index in `threads` of the running thread.
    pub current: usize,
    /// Console output not yet handed to the host.
    pub console: Vec<u8>,
    /// The host's monotonic clock, as of the current slice.
    pub now_ns: u64,
    /// Instructions executed so far.
    pub instructions: u64,
    /// Active nested runs.
    pub nested: usize,
    /// Frames recycled to avoid reallocating stacks on every call.
    pub frame_pool: Frames,
    /// Why the dispatch loop last left a frame: kept here, in memory, so
    /// the loop carries no exit payload in registers.
    pub(crate) exit: crate::interp::Exit,
    /// The budget left while the dispatch loop runs windows.
    pub(crate) left: u64,
    /// The running frame's receiver, while the dispatch loop runs it.
    pub(crate) receiver: Ref,
    /// Class loads in progress (base classes load recursively).
    pub loading: usize,
    /// Internal classes the embedder added after [`INTERNAL_CLASSES`]
    /// (indices 38..). Plain `fn` pointers into this same binary.
    pub native_classes: &'static [crate::natives::NativeClass],
    /// The screen the windows and ttys are shown on.
    pub screen: crate::screen::Screen,
    /// Armed `tmr:` connections: when each calls its callback back. They
    /// keep their connections alive, as the kernel's timer did.
    pub conn_timers: Vec<(u64, Ref)>,
}

/// `method_in`'s errors: not a class; index out of bounds (true) or
/// method not defined (false) in the named class.
#[cold]
#[inline(never)]
fn method_error(class: Option<(&[u8], bool)>, ordinal: u32) -> Trap {
    Trap::Panic(match class {
        None => "method lookup: not a class".into(),
        Some((name, true)) => format!(
            "method index {ordinal} is out of bounds in {}",
            String::from_utf8_lossy(name)
        ),
        Some((name, false)) => format!(
            "method {ordinal} of {} is not defined",
            String::from_utf8_lossy(name)
        ),
    })
}

/// Deepest chain of base classes loaded at once; also stops cycles.
pub const MAX_CLASS_NESTING: usize = 64;

/// Flags of the instances of an internal class.
fn internal_flags(idx: usize) -> u32 {
    match idx {
        ic::VOID | ic::INT | ic::LONG | ic::STRING | ic::FLOAT | ic::DOUBLE => {
            flags::INTERNAL | flags::IMMUTABLE
        }
        _ => flags::INTERNAL,
    }
}

impl Vm {
    /// A VM with the internal classes, the null object and the boot object.
    pub fn new(classes: ClassDir, config: VmConfig) -> Vm {
        let mut heap = Heap::new();
        // Class objects first, so internal[i] exists before it is referenced.
        let internal: Vec<Ref> = INTERNAL_CLASSES
            .iter()
            .map(|_| heap.alloc(Ref::NULL, flags::INTERNAL, Kind::Opaque))
            .collect();
        let code_class = internal[ic::CODE];
        let sys_stubs: Vec<Ref> = (0..N_SYS_METHODS as u8)
            .map(|k| {
                heap.alloc(
                    code_class,
                    flags::INTERNAL,
                    Kind::Code(Arc::new(Code::new(&[0x0F, k, 0x08]))),
                )
            })
            .collect();
        for (i, name) in INTERNAL_CLASSES.iter().enumerate() {
            let data = ClassData {
                name: name.as_bytes().to_vec(),
                internal: Some(i),
                object_flags: internal_flags(i),
                parent: internal[ic::VOID],
                interface: sys_stubs.clone(),
                ..ClassData::default()
            };
            let obj = heap.get_mut(internal[i]);
            obj.class = internal[ic::CLASS];
            obj.kind = Kind::Class(Box::new(data));
        }
        heap.set_class(Ref::NULL, internal[ic::VOID]);
        // Room for the objects allocated before the first collection (plus
        // slack for the quantum in which it triggers), so the arena does not
        // grow by doubling there. In Wasm a doubling copies the whole arena
        // with memory.copy into freshly faulted pages; reserved but untouched
        // pages cost nothing until used.
        heap.reserve(
            (config.gc_min_interval + config.gc_min_interval / 8).min(config.max_heap_objects),
        );
        let mut vm = Vm {
            heap,
            config,
            internal,
            sys_stubs,
            classes,
            cache: BTreeMap::new(),
            class_loader: Ref::NULL,
            boot_object: Ref::NULL,
            os_entry: Ref::NULL,
            env: Ref::NULL,
            threads: Vec::new(),
            next_thread_id: 1,
            current: 0,
            console: Vec::new(),
            now_ns: 0,
            instructions: 0,
            nested: 0,
            frame_pool: Vec::new(),
            exit: crate::interp::Exit::Quantum,
            left: 0,
            receiver: Ref::NULL,
            loading: 0,
            native_classes: &[],
            screen: crate::screen::Screen::default(),
            conn_timers: Vec::new(),
        };
        vm.boot_object = vm.new_internal(ic::BOOT);
        let env: Vec<Ref> = [
            "root.shell=.ru.dz.phantom.system.shell",
            "root.init=.ru.dz.phantom.system.init",
            "root.boot=.ru.dz.phantom.system.boot",
        ]
        .iter()
        .map(|s| vm.new_string(s.as_bytes().to_vec()))
        .collect();
        vm.env = vm.new_array(env);
        vm
    }

    /// Adds the embedder's internal classes (once, before any code runs).
    pub fn add_native_classes(&mut self, classes: &'static [crate::natives::NativeClass]) {
        assert!(self.native_classes.is_empty(), "native classes added twice");
        for (i, c) in classes.iter().enumerate() {
            let data = ClassData {
                name: c.name.as_bytes().to_vec(),
                internal: Some(INTERNAL_CLASSES.len() + i),
                object_flags: flags::INTERNAL,
                parent: self.internal[ic::VOID],
                interface: self.sys_stubs.clone(),
                ..ClassData::default()
            };
            let class = self.internal[ic::CLASS];
            let r = self
                .heap
                .alloc(class, flags::INTERNAL, Kind::Class(Box::new(data)));
            self.internal.push(r);
        }
        self.native_classes = classes;
    }

    /// A new `.internal.long`.
    pub fn new_long(&mut self, v: i64) -> Ref {
        self.heap.alloc(
            self.internal[ic::LONG],
            flags::INTERNAL | flags::IMMUTABLE,
            Kind::Long(v),
        )
    }

    // ----- object helpers -----

    /// A new instance of internal class `idx`, in its initial state.
    pub fn new_internal(&mut self, idx: usize) -> Ref {
        let kind = match idx {
            ic::INT => Kind::Int(0),
            ic::LONG => Kind::Long(0),
            ic::FLOAT => Kind::Float(0.0),
            ic::DOUBLE => Kind::Double(0.0),
            ic::STRING => Kind::Str(Vec::new()),
            ic::ARRAY => Kind::Array(Vec::new()),
            ic::BINARY => Kind::Binary(Vec::new()),
            ic::DIRECTORY => Kind::Directory(BTreeMap::new()),
            ic::TTY => Kind::Tty(Box::default()),
            ic::WINDOW => Kind::Window(Box::default()),
            ic::BITMAP => Kind::Bitmap(Box::default()),
            ic::CONNECTION => Kind::Connection(Box::default()),
            ic::MUTEX => Kind::Mutex(None),
            ic::CLASS => Kind::Class(Box::new(ClassData {
                parent: self.internal[ic::VOID],
                ..Default::default()
            })),
            ic::CODE => Kind::Code(Arc::new(Code::new(&[]))),
            _ => Kind::Opaque,
        };
        let shown = matches!(kind, Kind::Tty(_) | Kind::Window(_));
        let r = self
            .heap
            .alloc(self.internal[idx], internal_flags(idx), kind);
        if shown {
            self.screen.add(r);
        }
        r
    }

    /// A new `.internal.int`.
    #[inline]
    pub fn new_int(&mut self, v: i32) -> Ref {
        self.heap.alloc(
            self.internal[ic::INT],
            flags::INTERNAL | flags::IMMUTABLE,
            Kind::Int(v),
        )
    }

    /// [`Vm::new_int`] when it needs no out-of-line call (see
    /// [`crate::heap::Heap::alloc_int_inline`]).
    #[inline(always)]
    pub(crate) fn new_int_inline(&mut self, v: i32) -> Option<Ref> {
        self.heap.alloc_int_inline(
            self.internal[ic::INT],
            flags::INTERNAL | flags::IMMUTABLE,
            v,
        )
    }

    /// A new `.internal.string`.
    pub fn new_string(&mut self, v: Vec<u8>) -> Ref {
        self.heap.alloc(
            self.internal[ic::STRING],
            flags::INTERNAL | flags::IMMUTABLE,
            Kind::Str(v),
        )
    }

    /// A new array holding `v`.
    pub fn new_array(&mut self, v: Vec<Ref>) -> Ref {
        self.heap
            .alloc(self.internal[ic::ARRAY], flags::INTERNAL, Kind::Array(v))
    }

    /// The class of an object.
    #[inline]
    pub fn class_of(&self, r: Ref) -> Ref {
        self.heap.get(r).class
    }

    /// Class data of a class object, if it is one.
    pub fn class_data(&self, class: Ref) -> Option<&ClassData> {
        match &self.heap.get(class).kind {
            Kind::Class(c) => Some(c),
            _ => None,
        }
    }

    /// A class's name, for messages.
    pub fn class_name(&self, class: Ref) -> String {
        self.class_data(class)
            .map(|c| String::from_utf8_lossy(&c.name).into_owned())
            .unwrap_or_else(|| "?".into())
    }

    /// The string bytes of an object, if it is a string.
    pub fn str_bytes(&self, r: Ref) -> Option<&[u8]> {
        match &self.heap.get(r).kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short description of an object for messages ("Unhandled exception").
    pub fn describe(&self, r: Ref) -> String {
        match &self.heap.get(r).kind {
            Kind::Str(s) => String::from_utf8_lossy(s).into_owned(),
            Kind::Int(v) => v.to_string(),
            Kind::Long(v) => v.to_string(),
            Kind::Null => "(null)".into(),
            _ => format!("<{}>", self.class_name(self.class_of(r))),
        }
    }

    /// `pvm_object_class_is_or_child`: is `obj` an instance of `class` or a
    /// subclass? False for a null object or a null class.
    pub fn is_or_child(&self, obj: Ref, class: Ref) -> bool {
        if obj.is_null() || class.is_null() {
            return false;
        }
        let void = self.internal[ic::VOID];
        let mut c = self.class_of(obj);
        for _ in 0..1024 {
            if c == class {
                return true;
            }
            if c == void {
                return false;
            }
            match self.class_data(c) {
                Some(d) => c = d.parent,
                None => return false,
            }
        }
        false
    }

    /// The code of method `ordinal` in `class`'s method table.
    // Inlined into the call path inside the component, where a call costs
    // more (every register is caller-saved); natively a call is cheaper
    // than the code growth (measured both ways with `bench pvm`).
    #[cfg_attr(target_arch = "wasm32", inline(always))]
    #[cfg_attr(not(target_arch = "wasm32"), inline)]
    pub fn method_in(&self, class: Ref, ordinal: u32) -> Result<Arc<Code>, Trap> {
        let Kind::Class(data) = &self.heap.get(class).kind else {
            return Err(method_error(None, ordinal));
        };
        let Some(&code) = data.interface.get(ordinal as usize) else {
            return Err(method_error(Some((&data.name, true)), ordinal));
        };
        match &self.heap.get(code).kind {
            Kind::Code(c) => Ok(c.clone()),
            _ => Err(method_error(Some((&data.name, false)), ordinal)),
        }
    }

    /// A fresh frame (stacks recycled from the pool). Frames are boxed so
    /// that a call or a return moves a pointer, not the frame.
    // Inlined into the call path inside the component, where a call costs
    // more (every register is caller-saved); natively a call is cheaper
    // than the code growth (measured both ways with `bench pvm`).
    #[cfg_attr(target_arch = "wasm32", inline(always))]
    #[cfg_attr(not(target_arch = "wasm32"), inline)]
    pub fn frame(&mut self, code: Arc<Code>, this: Ref, args: &[Ref], ordinal: u32) -> Box<Frame> {
        let mut f = self.frame_pool.pop().unwrap_or_else(|| {
            Box::new(Frame {
                code: code.clone(),
                ip: 0,
                this,
                os: Stack::with_capacity(16),
                is: Stack::with_capacity(16),
                es: Vec::new(),
                ordinal,
            })
        });
        f.code = code;
        f.ip = 0;
        f.this = this;
        f.ordinal = ordinal;
        f.os.extend_from_slice(args);
        f.is.push(args.len() as i32);
        f
    }

    /// Returns a frame's stacks to the pool.
    // Inlined into the call path inside the component, where a call costs
    // more (every register is caller-saved); natively a call is cheaper
    // than the code growth (measured both ways with `bench pvm`).
    #[cfg_attr(target_arch = "wasm32", inline(always))]
    #[cfg_attr(not(target_arch = "wasm32"), inline)]
    pub fn recycle(&mut self, mut f: Box<Frame>) {
        if self.frame_pool.len() < 256 {
            f.os.clear();
            f.is.clear();
            f.es.clear();
            self.frame_pool.push(f);
        }
    }

    // ----- classes -----

    /// Loads a class from `.pc` bytes and builds its class object (spec §1.5).
    pub fn load_class_bytes(&mut self, bytes: &[u8]) -> Result<Ref, String> {
        if self.loading >= MAX_CLASS_NESTING {
            return Err("class hierarchy is too deep or cyclic".into());
        }
        self.loading += 1;
        let result = self.load_class_inner(bytes);
        self.loading -= 1;
        result
    }

    fn load_class_inner(&mut self, bytes: &[u8]) -> Result<Ref, String> {
        let file = classfile::parse(bytes).map_err(|e| e.to_string())?;
        let header = file.header().ok_or("class file has no class record")?;
        let name = header.name.to_vec();
        let n_slots = header.n_method_slots;
        let n_fields = header.n_object_slots;
        let base = header.base.to_vec();
        let void = self.internal[ic::VOID];
        let parent = if base == b".internal.object" {
            void
        } else {
            let p = self.lookup_class(&base).map_err(|t| match t {
                Trap::Panic(m) => m,
                other => format!("{other:?}"),
            })?;
            if p.is_null() {
                return Err(format!(
                    "base class {} not found",
                    String::from_utf8_lossy(&base)
                ));
            }
            match self.class_data(p) {
                Some(d) if d.internal.is_some() => void,
                Some(_) => p,
                None => return Err("base class is not a class".into()),
            }
        };
        let parent_iface = self
            .class_data(parent)
            .map(|d| d.interface.clone())
            .unwrap_or_default();
        let mut interface = vec![Ref::NULL; n_slots];
        for (slot, code) in interface.iter_mut().zip(parent_iface) {
            *slot = code;
        }
        let mut method_names = vec![None; n_slots];
        let mut const_pool = Vec::new();
        let code_class = self.internal[ic::CODE];
        for r in &file.records {
            match r {
                Record::Method {
                    name,
                    ordinal,
                    code,
                } => {
                    let o = *ordinal as usize;
                    interface[o] = self.heap.alloc(
                        code_class,
                        flags::INTERNAL,
                        Kind::Code(Arc::new(Code::new(code))),
                    );
                    method_names[o] = Some(name.clone());
                }
                Record::Const { index, ty, value }
                    if ty.container == 0
                        && ty.main == b".internal.string"
                        && (0..1 << 16).contains(index) =>
                {
                    let i = *index as usize;
                    if const_pool.len() <= i {
                        const_pool.resize(i + 1, Ref::NULL);
                    }
                    const_pool[i] = self.new_string(value.clone());
                }
                _ => {}
            }
        }
        let data = ClassData {
            name,
            internal: None,
            n_fields,
            object_flags: 0,
            parent,
            interface,
            method_names,
            const_pool,
            statics: Vec::new(),
        };
        Ok(self.heap.alloc(
            self.internal[ic::CLASS],
            flags::INTERNAL,
            Kind::Class(Box::new(data)),
        ))
    }

    /// `boot.loadClass`: the cache, else the class directory (adding the
    /// result to the cache). `Ok(None)` when no file has that name.
    pub fn load_class_by_name(&mut self, name: &[u8]) -> Result<Option<Ref>, String> {
        if let Some(&c) = self.cache.get(name) {
            return Ok(Some(c));
        }
        let text = String::from_utf8_lossy(name).into_owned();
        let Some(bytes) = self.classes.find(&text) else {
            return Ok(None);
        };
        let bytes = bytes.to_vec();
        let class = self.load_class_bytes(&bytes)?;
        self.cache.insert(name.to_vec(), class);
        Ok(Some(class))
    }

    /// Run-time class lookup (spec §4.4): internal table, class cache, the
    /// user class loader (nested run of its method 8). Without a registered
    /// loader the class directory is searched directly (a deliberate
    /// extension; see DESIGN.md ("The Phantom VM")). Returns null when nothing is found.
    pub fn lookup_class(&mut self, name: &[u8]) -> Result<Ref, Trap> {
        if name == b".internal.object" {
            return Ok(self.internal[ic::VOID]);
        }
        if let Some(i) = INTERNAL_CLASSES.iter().position(|n| n.as_bytes() == name) {
            return Ok(self.internal[i]);
        }
        if let Some(i) = self
            .native_classes
            .iter()
            .position(|c| c.name.as_bytes() == name)
        {
            return Ok(self.internal[INTERNAL_CLASSES.len() + i]);
        }
        if let Some(&c) = self.cache.get(name) {
            return Ok(c);
        }
        if !self.class_loader.is_null() {
            let s = self.new_string(name.to_vec());
            let loader = self.class_loader;
            let r = self.run_nested(loader, 8, &[s])?;
            if !r.is_null() {
                self.cache.insert(name.to_vec(), r);
            }
            return Ok(r);
        }
        match self.load_class_by_name(name) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Ok(Ref::NULL),
            // Said once: loading a base class that fails fails each class
            // above it the same way (a cycle, 64 deep).
            Err(e) if e.contains(" - class load error: ") => Err(Trap::Panic(e)),
            Err(e) => Err(Trap::Panic(format!(
                "{} - class load error: {e}",
                String::from_utf8_lossy(name)
            ))),
        }
    }

    /// `new`: an instance of `class` with null fields, or the initial state
    /// of an internal class. No constructor runs.
    pub fn instantiate(&mut self, class: Ref) -> Result<Ref, Trap> {
        let data = self
            .class_data(class)
            .ok_or_else(|| Trap::Panic("new: not a class".into()))?;
        Ok(match data.internal {
            Some(idx) => self.new_internal(idx),
            None => {
                let n = data.n_fields;
                let f = data.object_flags;
                self.heap.alloc(class, f, Kind::Plain(vec![Ref::NULL; n]))
            }
        })
    }

    // ----- threads -----

    /// Creates a green thread whose first frame runs `this.method[ordinal](args)`.
    pub fn spawn(&mut self, this: Ref, ordinal: u32, args: &[Ref]) -> Result<u32, Trap> {
        let code = self.method_in(self.class_of(this), ordinal)?;
        let id = self.next_thread_id;
        self.next_thread_id += 1;
        let obj = self
            .heap
            .alloc(self.internal[ic::THREAD], flags::INTERNAL, Kind::Thread(id));
        let frame = self.frame(code, this, args, ordinal);
        self.threads.push(Thread {
            id,
            obj,
            frames: vec![frame],
            state: ThreadState::Runnable,
            environment: Ref::NULL,
        });
        Ok(id)
    }

    /// Runs `this.method[ordinal](args)` to completion on a nested,
    /// synchronous interpreter (`pvm_exec_run_method`). Exceptions do not
    /// cross the boundary: an uncaught one is a VM panic.
    pub fn run_nested(&mut self, this: Ref, ordinal: u32, args: &[Ref]) -> Result<Ref, Trap> {
        if self.nested >= self.config.max_nested_runs {
            return Err(Trap::Panic("nested run limit exceeded".into()));
        }
        let code = self.method_in(self.class_of(this), ordinal)?;
        let mut frames = vec![self.frame(code, this, args, ordinal)];
        self.nested += 1;
        let start = self.instructions;
        let result = loop {
            match self.execute(&mut frames, self.config.quantum) {
                Stop::Quantum | Stop::Sleep(_) => {
                    if self.instructions - start > self.config.max_nested_instructions {
                        break Err(Trap::Panic("nested run did not finish".into()));
                    }
                }
                Stop::Ended(v) => break Ok(v),
                Stop::Blocked(_) => break Err(Trap::Panic("nested run blocked on a mutex".into())),
                Stop::Unhandled(o) => {
                    break Err(Trap::Panic(format!(
                        "Unhandled exception in nested run: {}",
                        self.describe(o)
                    )));
                }
                Stop::Panic(m) => break Err(Trap::Panic(m)),
                Stop::Exit(c) => break Err(Trap::Exit(c)),
            }
        };
        self.nested -= 1;
        result
    }

    /// Starts the callback threads of the `tmr:` connections that are due
    /// (at the start of a slice, after sleepers wake).
    pub fn fire_connection_timers(&mut self) {
        let now = self.now_ns;
        let due: Vec<Ref> = self
            .conn_timers
            .iter()
            .filter(|t| t.0 <= now)
            .map(|t| t.1)
            .collect();
        if due.is_empty() {
            return;
        }
        self.conn_timers.retain(|t| t.0 > now);
        for conn in due {
            let Kind::Connection(c) = &self.heap.get(conn).kind else {
                continue;
            };
            let (callback, method) = (c.callback, c.method);
            if callback.is_null() {
                continue;
            }
            // `phantom_connection_callback_int(c, time)`: the callback's
            // method on a thread of its own, with the time in seconds.
            let time = self.new_int((now / 1_000_000_000) as i32);
            if let Err(t) = self.spawn(callback, method, &[time]) {
                let text = format!("pvm: timer callback {method} failed: {t:?}\n");
                self.console.extend_from_slice(text.as_bytes());
            }
        }
    }

    /// Wakes the threads waiting for `mutex`.
    pub fn wake_mutex_waiters(&mut self, mutex: Ref) {
        for t in &mut self.threads {
            if t.state == ThreadState::WaitMutex(mutex) {
                t.state = ThreadState::Runnable;
            }
        }
    }

    /// The running thread's object (null outside any thread).
    pub fn current_thread_obj(&self) -> Ref {
        self.threads
            .get(self.current)
            .map(|t| t.obj)
            .unwrap_or(Ref::NULL)
    }

    /// The running thread's id (0 outside any thread).
    pub fn current_thread_id(&self) -> u32 {
        self.threads.get(self.current).map(|t| t.id).unwrap_or(0)
    }

    /// Appends tty text to a tty object (and optionally to the console).
    pub fn tty_write(&mut self, tty: Ref, text: &[u8]) {
        if self.config.tty_to_console {
            self.console.extend_from_slice(text);
        }
        if let Kind::Tty(t) = &mut self.heap.get_mut(tty).kind {
            let t: &mut TtyState = t;
            t.text.extend_from_slice(text);
            if t.text.len() > crate::heap::TTY_KEEP {
                let cut = t.text.len() - crate::heap::TTY_KEEP;
                t.text.drain(..cut);
            }
            let (mut x, mut y) = t.cursor;
            t.canvas.text(&mut x, &mut y, text, t.fg, t.bg);
            t.cursor = (x, y);
            self.screen.dirty = true;
        }
    }

    // ----- garbage collection -----

    /// Every root: VM globals, classes, and every thread's frames.
    fn roots(&self) -> Vec<Ref> {
        let mut roots = Vec::with_capacity(1024);
        roots.extend_from_slice(&self.internal);
        roots.extend_from_slice(&self.sys_stubs);
        roots.extend(self.cache.values().copied());
        roots.extend([self.class_loader, self.boot_object, self.os_entry, self.env]);
        roots.extend(self.conn_timers.iter().map(|t| t.1));
        for t in &self.threads {
            roots.extend([t.obj, t.environment]);
            for f in &t.frames {
                roots.push(f.this);
                roots.extend_from_slice(f.os.as_slice());
                roots.extend(f.es.iter().map(|e| e.0));
            }
        }
        roots
    }

    /// Collects garbage. Only call between thread quanta, when every live
    /// frame is in `threads` (not during a nested run).
    pub fn collect_garbage(&mut self) -> usize {
        let roots = self.roots();
        let freed = self.heap.collect(roots);
        self.screen.prune(&self.heap);
        freed
    }

    /// Collects if enough was allocated since the last collection.
    pub fn maybe_collect(&mut self) {
        // Collect when allocation since the last collection matches the
        // live set it left (at least `gc_min_interval`): amortised O(1).
        let interval = self
            .config
            .gc_min_interval
            .max(self.heap.stats().last_live as usize);
        if self.heap.since_gc() >= interval {
            self.collect_garbage();
        }
    }

    /// Collector counters.
    pub fn gc_stats(&self) -> GcStats {
        self.heap.stats()
    }
}
