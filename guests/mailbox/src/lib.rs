//! `mailbox`: keeps every message it gets in memory, in order, and can send
//! messages on a timer. The journal tests' guest.
//!
//! Init args: `--send-to NAME --period-ms N --limit K`: every N ms, sends
//! `ping <k>` (k from 1 to K) to NAME, printing `sent <k> id=<id>`.
//! `--random 1`: prints a random u64 and the wall clock on every message (the
//! journal replays them; a replay that saw other values would diverge).
//!
//! Console lines: `dump` prints `msg <i> <sender or -> <text>` for every
//! message, then `end <count>`; `count` prints `count <n>`;
//! `send NAME TEXT` sends TEXT to NAME.

use phantom_sdk::args::Options;
use phantom_sdk::{File, Message, Process, TimerId, clocks, messages, println, timers};
use std::time::Duration;

struct Mailbox {
    got: Vec<(String, u64, String)>,
    send_to: Option<String>,
    timer: Option<TimerId>,
    sent: u64,
    limit: u64,
    random: bool,
}

impl Process for Mailbox {
    fn init(args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        let opts = Options::parse(&args, &["send-to", "period-ms", "limit", "random"])?;
        let send_to: Option<String> = opts.get("send-to")?;
        let period: u64 = opts.get("period-ms")?.unwrap_or(10);
        let limit: u64 = opts.get("limit")?.unwrap_or(0);
        let random = opts.get::<u8>("random")?.unwrap_or(0) == 1;
        let timer = match &send_to {
            Some(_) if limit > 0 => Some(
                timers::periodic(Duration::from_millis(period))
                    .map_err(|e| format!("cannot set a timer: {e:?}"))?,
            ),
            _ => None,
        };
        Ok(Mailbox {
            got: Vec::new(),
            send_to,
            timer,
            sent: 0,
            limit,
            random,
        })
    }

    fn on_timer(&mut self, id: TimerId) {
        if Some(id) != self.timer {
            return;
        }
        let Some(to) = self.send_to.clone() else {
            return;
        };
        if self.sent >= self.limit {
            if let Some(t) = self.timer.take() {
                timers::cancel(t);
            }
            println!("done sending {}", self.sent);
            return;
        }
        self.sent += 1;
        match messages::send(&to, format!("ping {}", self.sent).as_bytes()) {
            Ok(id) => println!("sent {} id={id}", self.sent),
            Err(e) => println!("send failed: {e:?}"),
        }
    }

    fn on_message(&mut self, m: Message) {
        let text = String::from_utf8_lossy(&m.data).into_owned();
        if self.random {
            let r = phantom_sdk::bindings::phantom::os::clocks::wall_now();
            println!(
                "got {} {} at {}.{:09} mono {}",
                self.got.len() + 1,
                text,
                r.seconds,
                r.nanoseconds,
                clocks::monotonic_now().as_nanos()
            );
        }
        self.got.push((m.sender, m.id, text));
    }

    fn on_line(&mut self, line: String) {
        let mut words = line.trim().splitn(3, ' ');
        match words.next() {
            Some("dump") => {
                for (i, (from, _, text)) in self.got.iter().enumerate() {
                    let from = if from.is_empty() { "-" } else { from };
                    println!("msg {} {from} {text}", i + 1);
                }
                println!("end {}", self.got.len());
            }
            Some("count") => println!("count {}", self.got.len()),
            // A guest bug on demand: the call traps, the process fails.
            Some("trap") => panic!("asked to trap"),
            Some("send") => {
                let to = words.next().unwrap_or("");
                let text = words.next().unwrap_or("");
                match messages::send(to, text.as_bytes()) {
                    Ok(id) => println!("sent id={id}"),
                    Err(e) => println!("send failed: {e:?}"),
                }
            }
            _ => {}
        }
    }
}

phantom_sdk::export_process!(Mailbox);
