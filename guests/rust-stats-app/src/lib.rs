//! `rust-stats-app`: a persistent process in Rust that keeps its own record
//! of the numbers it is given and hands each one to the `demo:interop/stats`
//! interface, which a library component in another language implements
//! (`phantom compose rust-stats-app.wasm --with c-stats.wasm`).
//!
//! Console lines: a number `N` is added (to the app's own list and to the
//! library); `get` adds nothing. Both print
//! `app=rust lines=<n> sum=<sum> | lib count=<count> total=<total> | <describe>`:
//! the app's half from its memory, the library's half from the library's,
//! so after any restore `lines == count` and `sum == total` hold only if
//! both parts kept their state.
//!
//! Init args: `--period-ms N` adds the tick number `n` (1, 2, ...) at every
//! tick of a periodic timer and prints
//! `count=<n> list=<app's count> sum=<app's sum> lib=<library's count> total=<library's total> ok=<1 if they agree> | <describe>`.

use std::time::Duration;

use phantom_sdk::args::Options;
use phantom_sdk::{File, Process, TimerId, println, timers};

wit_bindgen::generate!({
    path: "../interop",
    world: "demo:interop/user",
});

use demo::interop::stats;

struct App {
    values: Vec<i64>,
    timer: Option<TimerId>,
    ticks: u64,
}

impl App {
    fn report(&self) {
        println!(
            "app=rust lines={} sum={} | lib count={} total={} | {}",
            self.values.len(),
            self.values.iter().sum::<i64>(),
            stats::count(),
            stats::total(),
            stats::describe()
        );
    }
}

impl Process for App {
    fn init(args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        let period_ms: Option<u64> = Options::parse(&args, &["period-ms"])?.get("period-ms")?;
        let timer = match period_ms {
            Some(ms) => Some(
                timers::periodic(Duration::from_millis(ms))
                    .map_err(|e| format!("cannot set a {ms} ms timer: {e:?}"))?,
            ),
            None => None,
        };
        println!("rust-stats-app started: {}", stats::describe());
        Ok(App {
            values: Vec::new(),
            timer,
            ticks: 0,
        })
    }

    fn on_timer(&mut self, id: TimerId) {
        if Some(id) != self.timer {
            return;
        }
        self.ticks += 1;
        let n = self.ticks as i64;
        self.values.push(n);
        stats::add(n);
        let (count, total) = (stats::count(), stats::total());
        let sum: i64 = self.values.iter().sum();
        let ok = count as usize == self.values.len() && total == sum;
        println!(
            "count={n} list={} sum={sum} lib={count} total={total} ok={} | {}",
            self.values.len(),
            u8::from(ok),
            stats::describe()
        );
    }

    fn on_line(&mut self, line: String) {
        let line = line.trim();
        if line == "get" {
            self.report();
        } else if let Ok(n) = line.parse::<i64>() {
            self.values.push(n);
            let count = stats::add(n);
            if count as usize != self.values.len() {
                println!(
                    "error: the library counts {count}, the app {}",
                    self.values.len()
                );
            }
            self.report();
        } else if !line.is_empty() {
            println!("error: not a number: '{line}'");
        }
    }
}

phantom_sdk::export_process!(App);
