//! A persistent process: its state is this struct, and it survives restarts
//! and `kill -9` without a line of persistence code. `init` runs once, when
//! the process is spawned; after that it only handles events.
//!
//! Build: `phantom build`. Run: `phantom spawn {name}.wasm --data data --name
//! {name}`, then `phantom run --data data` (type lines; Ctrl-C; run again).

use std::collections::HashMap;
use std::time::Duration;

use phantom_sdk::{File, Process, TimerId, timers};

struct App {
    ticks: u64,
    words: HashMap<String, u64>,
    timer: TimerId,
}

impl Process for App {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        let timer = timers::periodic(Duration::from_secs(1))
            .map_err(|e| format!("cannot set a timer: {e:?}"))?;
        println!("hello from a persistent process");
        Ok(App {
            ticks: 0,
            words: HashMap::new(),
            timer,
        })
    }

    fn on_timer(&mut self, id: TimerId) {
        if id == self.timer {
            self.ticks += 1;
            println!("tick {}", self.ticks);
        }
    }

    fn on_line(&mut self, line: String) {
        for word in line.split_whitespace() {
            *self.words.entry(word.to_string()).or_default() += 1;
        }
        let mut counts: Vec<_> = self.words.iter().collect();
        counts.sort();
        println!("words so far: {counts:?}");
    }
}

phantom_sdk::export_process!(App);
