//! `counter`: counts the ticks of a periodic timer and prints each count.
//!
//! Init args: `--period-ms N` (default 100). Every tick prints `count=<n>`,
//! n starting at 1; the console line `get` prints the current count.

use phantom_sdk::args::Options;
use phantom_sdk::{File, Process, TimerId, println, timers};
use std::time::Duration;

/// The tick period when `--period-ms` is not given.
const DEFAULT_PERIOD_MS: u64 = 100;

struct Counter {
    timer: TimerId,
    n: u64,
}

impl Process for Counter {
    fn init(args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        let period_ms = Options::parse(&args, &["period-ms"])?
            .get("period-ms")?
            .unwrap_or(DEFAULT_PERIOD_MS);
        let timer = timers::periodic(Duration::from_millis(period_ms))
            .map_err(|e| format!("cannot set a {period_ms} ms timer: {e:?}"))?;
        Ok(Counter { timer, n: 0 })
    }

    fn on_timer(&mut self, id: TimerId) {
        if id == self.timer {
            self.n += 1;
            println!("count={}", self.n);
        }
    }

    fn on_line(&mut self, line: String) {
        match line.trim() {
            "get" => println!("count={}", self.n),
            "" => {}
            other => println!("error: unknown command '{other}'"),
        }
    }
}

phantom_sdk::export_process!(Counter);
