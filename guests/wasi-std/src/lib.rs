//! `wasi-std`: a guest written with plain Rust std over WASI 0.2, the way a
//! user would write one: `std::println!` and `eprintln!` (WASI stdout and
//! stderr, whose stream handles wasi-libc caches in linear memory), a
//! `HashMap` with the default hasher (seeded from WASI random), `Vec`
//! growth, `Instant` and `SystemTime` (WASI clocks).
//!
//! Init args: `--period-ms N` (default 100); `--exit-in-init` calls
//! `std::process::exit(0)` in `init`. Each tick `n` inserts `n` into
//! the map and the vector, checks every earlier entry, and prints
//! `count=<n> map=<len> sum=<sum of keys> ok=<bool>`; every 5th tick also
//! prints `note=<n>` on stderr. Console lines: `get` prints
//! `state=<n> map=...` for the current state; `clock` prints whether the monotonic clock went
//! backwards since init (it must not, across restores too); `env` prints
//! `GREETING`; `exit N` calls `std::process::exit(N)`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use phantom_sdk::args::Options;
use phantom_sdk::{File, Process, TimerId, timers};

struct WasiStd {
    timer: TimerId,
    n: u64,
    map: HashMap<u64, String>,
    seen: Vec<u64>,
    started: Instant,
    last: Instant,
    went_back: bool,
    wall_at_init: SystemTime,
}

impl WasiStd {
    fn report(&self, what: &str) {
        let ok = self.seen.len() as u64 == self.n
            && self.map.len() as u64 == self.n
            && self
                .seen
                .iter()
                .all(|k| self.map.get(k).map(String::as_str) == Some(format!("v{k}").as_str()));
        let sum: u64 = self.map.keys().sum();
        std::println!("{what}={} map={} sum={sum} ok={ok}", self.n, self.map.len());
    }
}

impl Process for WasiStd {
    fn init(args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        if args.iter().any(|a| a == "--exit-in-init") {
            std::println!("exiting in init");
            std::process::exit(0);
        }
        let period_ms = Options::parse(&args, &["period-ms"])?
            .get("period-ms")?
            .unwrap_or(100);
        let timer = timers::periodic(Duration::from_millis(period_ms))
            .map_err(|e| format!("cannot set a {period_ms} ms timer: {e:?}"))?;
        let now = Instant::now();
        std::println!(
            "started greeting={}",
            std::env::var("GREETING").unwrap_or_default()
        );
        Ok(WasiStd {
            timer,
            n: 0,
            map: HashMap::new(),
            seen: Vec::new(),
            started: now,
            last: now,
            went_back: false,
            wall_at_init: SystemTime::now(),
        })
    }

    fn on_timer(&mut self, id: TimerId) {
        if id != self.timer {
            return;
        }
        let now = Instant::now();
        if now < self.last {
            self.went_back = true;
        }
        self.last = now;
        self.n += 1;
        self.map.insert(self.n, format!("v{}", self.n));
        self.seen.push(self.n);
        self.report("count");
        if self.n % 5 == 0 {
            std::eprintln!("note={}", self.n);
        }
    }

    fn on_line(&mut self, line: String) {
        match line.trim() {
            "get" => self.report("state"),
            "clock" => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let init = self
                    .wall_at_init
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                std::println!(
                    "clock went_back={} running_ms={} wall_after_init={}",
                    self.went_back || Instant::now() < self.last,
                    self.started.elapsed().as_millis(),
                    wall >= init
                );
            }
            "env" => std::println!("env GREETING={:?}", std::env::var("GREETING").ok()),
            // WASI 0.2's `exit` carries success or failure: 0, else 1.
            exit if exit.starts_with("exit ") => {
                std::println!("exiting");
                std::process::exit(exit[5..].trim().parse().unwrap_or(1))
            }
            "" => {}
            other => std::println!("error: unknown command '{other}'"),
        }
    }
}

phantom_sdk::export_process!(WasiStd);
