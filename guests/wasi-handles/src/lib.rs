//! `wasi-handles`: opens and drops WASI streams and pollables on command
//! and prints the handle index of each, so a test can check that a restored
//! process holds the same handles and gets the same next indices.
//!
//! Console lines (slots are positions in the guest's list of held handles):
//! - `stdout` | `stderr` | `stdin`: opens that stream;
//! - `sub <slot>`: subscribes to the stream in `slot` (a child pollable);
//! - `after <ns>`: a pollable ready `ns` nanoseconds from now;
//! - `drop <slot>`: drops what the slot holds;
//! - `write <slot> <text>`: writes `text` and a newline to an output stream;
//! - `ready <slot>`: whether a pollable is ready;
//! - `read <slot>`: reads from an input stream (always at its end);
//! - `poll <slot>...`: which of the pollables are ready (waits for one).
//!
//! Each command prints one line: `op=<line> -> <result>`, where a new
//! handle's result is `handle=<index>`.
//!
//! For `phantom bench wasi`, two commands print nothing but their payload:
//! `p64` prints 64 bytes with `std::println!` (WASI stdout) and `c64` writes
//! the same 64 bytes with `console.write`.

use phantom_sdk::{File, Process};

/// 63 bytes; with its newline, the 64 bytes each benchmark event prints.
macro_rules! PAYLOAD_LINE {
    () => {
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!"
    };
}
const PAYLOAD: &str = PAYLOAD_LINE!();
use wasi::cli::{stderr, stdin, stdout};
use wasi::clocks::monotonic_clock;
use wasi::io::poll::{self, Pollable};
use wasi::io::streams::{InputStream, OutputStream};

enum Held {
    Out(OutputStream),
    In(InputStream),
    Poll(Pollable),
}

impl Held {
    fn handle(&self) -> u32 {
        match self {
            Held::Out(s) => s.handle(),
            Held::In(s) => s.handle(),
            Held::Poll(p) => p.handle(),
        }
    }
}

#[derive(Default)]
struct Handles {
    held: Vec<Option<Held>>,
}

impl Handles {
    fn keep(&mut self, h: Held) -> String {
        let r = format!("handle={}", h.handle());
        self.held.push(Some(h));
        r
    }

    fn slot(&self, arg: Option<&str>) -> Result<&Held, String> {
        let i: usize = arg.and_then(|a| a.parse().ok()).ok_or("bad slot")?;
        self.held
            .get(i)
            .and_then(|h| h.as_ref())
            .ok_or_else(|| format!("slot {i} is empty"))
    }

    fn run(&mut self, line: &str) -> Result<String, String> {
        let mut words = line.split_whitespace();
        let op = words.next().unwrap_or("");
        let arg = words.next();
        Ok(match op {
            "stdout" => self.keep(Held::Out(stdout::get_stdout())),
            "stderr" => self.keep(Held::Out(stderr::get_stderr())),
            "stdin" => self.keep(Held::In(stdin::get_stdin())),
            "after" => {
                let ns: u64 = arg.and_then(|a| a.parse().ok()).ok_or("bad ns")?;
                self.keep(Held::Poll(monotonic_clock::subscribe_duration(ns)))
            }
            "sub" => {
                let p = match self.slot(arg)? {
                    Held::Out(s) => s.subscribe(),
                    Held::In(s) => s.subscribe(),
                    Held::Poll(_) => return Err("not a stream".into()),
                };
                self.keep(Held::Poll(p))
            }
            "drop" => {
                let i: usize = arg.and_then(|a| a.parse().ok()).ok_or("bad slot")?;
                let h = self.held.get_mut(i).and_then(Option::take);
                let h = h.ok_or_else(|| format!("slot {i} is empty"))?;
                let n = h.handle();
                drop(h);
                format!("dropped={n}")
            }
            "write" => {
                let text: Vec<&str> = words.collect();
                match self.slot(arg)? {
                    Held::Out(s) => {
                        let bytes = format!("{}\n", text.join(" "));
                        s.blocking_write_and_flush(bytes.as_bytes())
                            .map_err(|e| format!("{e:?}"))?;
                        "written".into()
                    }
                    _ => return Err("not an output stream".into()),
                }
            }
            "read" => match self.slot(arg)? {
                Held::In(s) => format!("read={:?}", s.read(16).map_err(|e| format!("{e:?}"))),
                _ => return Err("not an input stream".into()),
            },
            "ready" => match self.slot(arg)? {
                Held::Poll(p) => format!("ready={}", p.ready()),
                _ => return Err("not a pollable".into()),
            },
            "poll" => {
                let mut list = Vec::new();
                for a in std::iter::once(arg).chain(words.map(Some)) {
                    match self.slot(a)? {
                        Held::Poll(p) => list.push(p),
                        _ => return Err("not a pollable".into()),
                    }
                }
                format!("ready={:?}", poll::poll(&list))
            }
            other => return Err(format!("unknown command '{other}'")),
        })
    }
}

impl Process for Handles {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        Ok(Handles::default())
    }

    fn on_line(&mut self, line: String) {
        match line.as_str() {
            "p64" => return std::println!("{PAYLOAD}"),
            "c64" => return phantom_sdk::console::write(concat!(PAYLOAD_LINE!(), "\n").as_bytes()),
            _ => {}
        }
        let result = self.run(&line).unwrap_or_else(|e| format!("error: {e}"));
        phantom_sdk::println!("op={line} -> {result}");
    }
}

phantom_sdk::export_process!(Handles);
