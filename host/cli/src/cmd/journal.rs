//! `phantom journal`: the entries of a process's journal after its newest
//! checkpoint, what a restore would replay.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use phantom_runtime::datadir::DataDir;
use phantom_runtime::gate::Input;
use phantom_runtime::journal::offline;
use phantom_runtime::journal::{CallKind, Ended, Entry, HostValue};
use serde_json::{Value, json};

/// Arguments of `phantom journal`.
#[derive(Args)]
pub struct JournalArgs {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// The process.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Cut the journal before this entry (no host may run the data
    /// directory): a restore then replays up to it and the process runs on
    /// live from there. The way past an entry that diverges or does not
    /// decode; the inputs and results removed are lost to the process (it
    /// never sees them), but kept in `journal-cut-<entry>-<time>` in its
    /// directory.
    #[arg(long, value_name = "ENTRY")]
    cut_at: Option<u64>,
    #[command(flatten)]
    engine: crate::EngineArgs,
}

fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 80 {
        let mut end = 77;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}...", &s[..end])
    } else {
        format!("{s:?}")
    }
}

/// An entry as one line of text and as JSON.
fn describe(entry: &Entry) -> (String, Value) {
    let kind = entry.kind_name();
    match entry {
        Entry::Admit { time_ns, input } => {
            let (what, v) = match input {
                Input::Timer(id) => (
                    format!("timer {id}"),
                    json!({"input": "timer", "timer": id}),
                ),
                Input::ConsoleLine(l) => (
                    format!("console line {}", text(l.as_bytes())),
                    json!({"input": "console-line", "line": l}),
                ),
                Input::ConsoleClosed => {
                    ("console closed".into(), json!({"input": "console-closed"}))
                }
                Input::Resume => ("resume".into(), json!({"input": "resume"})),
                Input::GpioEdge { pin, high, .. } => (
                    format!(
                        "gpio edge of pin {pin} to {}",
                        if *high { "high" } else { "low" }
                    ),
                    json!({"input": "gpio-edge", "pin": pin, "high": high}),
                ),
                Input::SerialData { port, bytes, .. } => (
                    format!(
                        "serial data on port {port} ({} bytes) {}",
                        bytes.len(),
                        text(bytes)
                    ),
                    json!({"input": "serial-data", "port": port, "bytes": bytes.len(),
                           "text": String::from_utf8_lossy(bytes)}),
                ),
                Input::SensorSample {
                    sensor, readings, ..
                } => (
                    match readings {
                        Ok(v) => format!(
                            "sensor sample of sensor {sensor}: {}",
                            v.iter()
                                .map(|r| format!(
                                    "{} {}",
                                    f64::from_bits(r.bits),
                                    r.quantity.unit()
                                ))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        Err(code) => format!("sensor sample of sensor {sensor}: error {code}"),
                    },
                    json!({"input": "sensor-sample", "sensor": sensor,
                           "readings": readings.as_ref().ok().map(|v| v.iter()
                               .map(|r| json!({"quantity": r.quantity, "value": f64::from_bits(r.bits)}))
                               .collect::<Vec<_>>()),
                           "error": readings.as_ref().err()}),
                ),
                Input::Message { from, id, data } => {
                    // `phantom send`'s key (the guest sees an empty sender).
                    let (sender, key) = match from.strip_prefix('.') {
                        Some(_) => ("", Some(from.as_str())),
                        None => (from.as_str(), None),
                    };
                    let mut v = json!({"input": "message", "from": sender, "id": id,
                           "bytes": data.len(), "text": String::from_utf8_lossy(data)});
                    if let Some(k) = key {
                        v["send_key"] = json!(k);
                    }
                    (
                        format!(
                            "message {id} from {} ({} bytes) {}",
                            match key {
                                Some(k) => format!("outside ({k})"),
                                None if sender.is_empty() => "outside".to_string(),
                                None => sender.to_string(),
                            },
                            data.len(),
                            text(data)
                        ),
                        v,
                    )
                }
            };
            let mut v = v;
            v["time_ns"] = json!(time_ns);
            (format!("{what} at {time_ns} ns"), v)
        }
        Entry::Call { time_ns, kind } => {
            let k = match kind {
                CallKind::Next => "next",
                CallKind::Resume => "resume",
            };
            (
                format!("{k} at {time_ns} ns"),
                json!({"call": k, "time_ns": time_ns}),
            )
        }
        Entry::CallEnd { ended, digest } => {
            let e = match ended {
                Ended::Idle => "idle".to_string(),
                Ended::Busy => "busy".to_string(),
                Ended::Exit(c) => format!("exit {c}"),
            };
            (
                format!("{e}, digest {digest:016x}"),
                json!({"ended": e, "digest": format!("{digest:016x}")}),
            )
        }
        Entry::RandomBytes(b) => (format!("{} bytes", b.len()), json!({"bytes": b.len()})),
        Entry::RandomU64(v) => (format!("{v}"), json!({"value": v})),
        Entry::WallClock {
            seconds,
            nanoseconds,
        } => (
            format!("{seconds}.{nanoseconds:09}"),
            json!({"seconds": seconds, "nanoseconds": nanoseconds}),
        ),
        Entry::Monotonic(v) => (format!("{v} ns"), json!({"value": v})),
        Entry::HostValue(which, v) => {
            let _ = matches!(which, HostValue::RestoreCount);
            (format!("{v}"), json!({"value": v}))
        }
        Entry::Released { call } => (
            format!("effects up to the call of entry {call}"),
            json!({"call": call}),
        ),
        Entry::ReleasedLogged { call, offset } => (
            format!("effects up to the call of entry {call}; console.log is {offset} bytes"),
            json!({"call": call, "offset": offset}),
        ),
        Entry::CallAbandoned { call } => (
            format!("the call of entry {call} never finished: its input goes again"),
            json!({"call": call}),
        ),
        Entry::CallFailed { call } => (
            format!("the call of entry {call} failed: its input is consumed"),
            json!({"call": call}),
        ),
        Entry::DeviceRead(Ok(b)) => (
            format!("{} bytes {b:02x?}", b.len()),
            json!({"ok": true, "bytes": b}),
        ),
        Entry::DeviceRead(Err(code)) => {
            (format!("error {code}"), json!({"ok": false, "error": code}))
        }
    }
    .pipe(|(line, mut v)| {
        v["kind"] = json!(kind);
        (line, v)
    })
}

trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

/// Runs `phantom journal`.
pub fn run(a: JournalArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(&a.data)?;
    let dir = data.process_dir(&a.name)?;
    if let Some(at) = a.cut_at {
        let _lock = data.lock()?;
        let cut = offline::cut(&dir, at).map_err(anyhow::Error::msg)?;
        let failed = dir.join("failed.json").exists();
        // Its message ids go on after those the cut entries may have used.
        let moved = a
            .engine
            .runtime()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                phantom_runtime::travel::move_on_after_cut(&rt, &dir).map_err(|e| e.to_string())
            });
        if let Err(why) = &moved {
            eprintln!(
                "phantom: warning: '{}' was not checkpointed after the cut ({why}): messages it sends next may reuse ids of messages it sent after entry {at}, and their receivers drop those",
                a.name
            );
        }
        if a.json {
            println!(
                "{}",
                json!({
                    "process": a.name,
                    "cut_at": cut.at,
                    "removed": cut.removed,
                    "kept": cut.kept,
                    "failed": failed,
                    "checkpoint": moved.as_ref().ok(),
                })
            );
        } else {
            println!(
                "{}: journal cut before entry {}: {} entr{} removed, kept in {}{}",
                a.name,
                cut.at,
                cut.removed,
                if cut.removed == 1 { "y" } else { "ies" },
                cut.kept.display(),
                match &moved {
                    Ok(c) => format!("; it goes on from checkpoint {c}"),
                    Err(_) => String::new(),
                }
            );
            if failed {
                println!(
                    "{} is marked failed: `phantom run --retry-failed` resumes it from the cut",
                    a.name
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let tail = offline::tail(&dir).map_err(anyhow::Error::msg)?;
    let mut bad = false;
    if a.json {
        let entries: Vec<Value> = tail
            .entries
            .iter()
            .map(|(seq, e)| match e {
                Ok(e) => {
                    let mut v = describe(e).1;
                    v["seq"] = json!(seq);
                    v
                }
                Err(why) => {
                    bad = true;
                    json!({"seq": seq, "kind": "invalid", "error": why})
                }
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "process": a.name,
                "checkpoint": tail.checkpoint,
                "position": tail.position,
                "entries": entries,
                "damage": tail.damage,
            }))?
        );
    } else {
        println!(
            "{}: checkpoint {} covers the journal up to entry {}; {} entr{} after it",
            a.name,
            tail.checkpoint,
            tail.position,
            tail.entries.len(),
            if tail.entries.len() == 1 { "y" } else { "ies" }
        );
        for (seq, e) in &tail.entries {
            match e {
                Ok(e) => println!("{seq:>10}  {:<13} {}", e.kind_name(), describe(e).0),
                Err(why) => {
                    bad = true;
                    println!("{seq:>10}  INVALID       {why}");
                }
            }
        }
        if let Some(d) = &tail.damage {
            println!("damaged: {d}");
        }
    }
    Ok(if bad || tail.damage.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
