//! `misbehave`: a guest that fails on request, for the host's robustness
//! tests. Every failure is confined to this one process.
//!
//! | line       | does                                                  |
//! |------------|-------------------------------------------------------|
//! | `spin`     | loops forever (the host must interrupt it)            |
//! | `eat`      | allocates 1 MiB blocks, written, without bound        |
//! | `trap`     | executes `unreachable`                                |
//! | `panic`    | panics (prints `panicked at ...`, then traps)         |
//! | `exit N`   | returns `exit(N)`                                     |
//! | `echo x`   | prints x                                              |
//! | `long N`   | prints one line of N `y`s                             |
//! | `poison`   | from now on every line traps (a persistent error: the |
//! |            | flag lives in memory, so every restore brings it back)|
//!
//! Init argument `--panic-in-init` makes `init` itself panic;
//! `--refuse-in-init` makes it print why, then return an error.

use phantom_sdk::{File, Process, Status, println};
use std::hint::black_box;

/// The block `eat` allocates at a time.
const EAT_BLOCK: usize = 1 << 20;

struct Misbehave {
    exit: Option<i32>,
    /// Set by `poison`: every later line traps.
    poisoned: bool,
    /// Where `eat` keeps its blocks, so nothing is freed or optimised away.
    eaten: Vec<Vec<u8>>,
}

impl Process for Misbehave {
    fn init(args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        if args.iter().any(|a| a == "--panic-in-init") {
            panic!("misbehave was told to panic in init");
        }
        if args.iter().any(|a| a == "--refuse-in-init") {
            println!("the configuration says no");
            return Err("refused".into());
        }
        Ok(Misbehave {
            exit: None,
            poisoned: false,
            eaten: Vec::new(),
        })
    }

    fn on_line(&mut self, line: String) {
        let (command, rest) = line.split_once(' ').unwrap_or((&line, ""));
        if self.poisoned {
            panic!("misbehave is poisoned");
        }
        match command {
            "poison" => {
                self.poisoned = true;
                println!("poisoned");
            }
            "spin" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "eat" => loop {
                // Nonzero, so every page is really written.
                self.eaten.push(black_box(vec![0xa5; EAT_BLOCK]));
            },
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("misbehave asked to panic"),
            "exit" => match rest.trim().parse() {
                Ok(code) => self.exit = Some(code),
                Err(_) => println!("error: usage: exit <code>"),
            },
            "echo" => println!("{rest}"),
            "long" => match rest.trim().parse::<usize>() {
                Ok(n) => println!("{}", "y".repeat(n)),
                Err(_) => println!("error: usage: long <bytes>"),
            },
            "" => {}
            other => println!("error: unknown command '{other}'"),
        }
    }

    fn status(&self) -> Status {
        match self.exit {
            Some(code) => Status::Exit(code),
            None => Status::Idle,
        }
    }
}

phantom_sdk::export_process!(Misbehave);
