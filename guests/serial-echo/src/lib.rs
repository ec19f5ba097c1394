//! `serial-echo`: a serial guest. At `init` it opens the port granted as
//! `link` and watches it; each line that arrives there (bytes up to `\n`,
//! in as many `serial-data` events as it takes) is answered on the port
//! with `<n> <LINE UPPER-CASED>\n`, `n` counting lines from 1, and logged
//! to the console as `echo <n> <line>`. The count and a line's first part
//! live in the guest's memory: they survive restores like everything else.
//! After each event a line still incomplete is logged as `partial <bytes>`.
//!
//! Console lines drive the other calls (each prints `ok ...` or
//! `error <serial-error>`, for the policy tests):
//! `open NAME`, `baud H RATE`, `send H TEXT` (TEXT and `\n`),
//! `send-big H N` (N bytes), `switch H RATE` (writes `rate RATE` and
//! sets the rate in one call), `read H` (prints `read <text>`),
//! `watch H on|off`, `close H`, `seq` (prints `seq <n>`).
//! Bytes arriving on a watched port other than `link` print `data H <text>`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "phantom:devices/device-process",
    generate_all,
});

use phantom::devices::serial;
use phantom::os::console;

use std::sync::Mutex;

struct State {
    link: Option<serial::Port>,
    seq: u64,
    partial: Vec<u8>,
}

static STATE: Mutex<State> = Mutex::new(State {
    link: None,
    seq: 0,
    partial: Vec::new(),
});

fn say(text: &str) {
    console::write(format!("{text}\n").as_bytes());
}

fn answer<T: std::fmt::Display>(r: Result<T, serial::SerialError>) {
    match r {
        Ok(v) => say(&format!("ok {v}")),
        Err(e) => say(&format!("error {}", e.name())),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

fn command(line: &str) {
    let words: Vec<&str> = line.splitn(3, ' ').collect();
    let port = |w: &str| w.parse::<serial::Port>().unwrap_or(u32::MAX);
    match words.as_slice() {
        ["open", name] => answer(serial::open(name)),
        ["baud", h, rate] => answer(
            serial::set_baud(port(h), rate.parse().unwrap_or(0)).map(|()| format!("baud {rate}")),
        ),
        ["send", h, t] => {
            answer(serial::write(port(h), format!("{t}\n").as_bytes()).map(|()| "sent"))
        }
        // A command sent at the old rate, then the switch (as a GPS or
        // Bluetooth module is told to change its rate).
        ["switch", h, rate] => answer(
            serial::write(port(h), format!("rate {rate}\n").as_bytes())
                .and_then(|()| serial::set_baud(port(h), rate.parse().unwrap_or(0)))
                .map(|()| format!("switched {rate}")),
        ),
        ["send-big", h, n] => {
            let n: usize = n.parse().unwrap_or(0);
            answer(serial::write(port(h), &vec![b'x'; n]).map(|()| "sent"))
        }
        ["read", h] => match serial::read(port(h), 4096) {
            Ok(b) => say(&format!("read {}", text(&b))),
            Err(e) => say(&format!("error {}", e.name())),
        },
        ["watch", h, on] => {
            answer(serial::watch(port(h), *on == "on").map(|()| format!("watch {on}")))
        }
        ["close", h] => say(&format!("closed {}", serial::close(port(h)))),
        ["seq"] => say(&format!(
            "seq {}",
            STATE.lock().unwrap_or_else(|e| e.into_inner()).seq
        )),
        _ => say(&format!("unknown command {line:?}")),
    }
}

/// Bytes from `link`: answers every complete line.
fn arrived(s: &mut State, port: serial::Port, data: &[u8]) {
    s.partial.extend_from_slice(data);
    while let Some(end) = s.partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = s.partial.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line[..end]);
        let line = line.trim_end_matches('\r');
        s.seq += 1;
        let reply = format!("{} {}\n", s.seq, line.to_uppercase());
        if let Err(e) = serial::write(port, reply.as_bytes()) {
            say(&format!("error write {}", e.name()));
        }
        say(&format!("echo {} {line}", s.seq));
    }
    if !s.partial.is_empty() {
        say(&format!("partial {}", s.partial.len()));
    }
}

struct SerialEcho;

impl Guest for SerialEcho {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Status, String> {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        // A missing grant is reported, not fatal: the policy tests spawn it
        // with other grants.
        match serial::open("link").and_then(|h| serial::watch(h, true).map(|()| h)) {
            Ok(h) => s.link = Some(h),
            Err(e) => say(&format!("link: error {}", e.name())),
        }
        Ok(Status::Idle)
    }

    fn handle(event: Event) -> Status {
        if let Event::ConsoleLine(line) = event {
            command(&line);
        }
        Status::Idle
    }

    fn handle_message(_message: phantom::os::messages::Message) -> Status {
        Status::Idle
    }

    fn handle_device_event(event: DeviceEvent) -> Status {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            DeviceEvent::SerialData(d) if Some(d.port) == s.link => {
                arrived(&mut s, d.port, &d.data)
            }
            DeviceEvent::SerialData(d) => say(&format!("data {} {}", d.port, text(&d.data))),
            DeviceEvent::GpioEdge(_) | DeviceEvent::SampleReady(_) => {}
        }
        Status::Idle
    }
}

export!(SerialEcho);
