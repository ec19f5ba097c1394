//! `phantom bench journal`: what the journal costs and gives, each against
//! a baseline measured in the same run (the `mailbox` guest):
//!
//! ```text
//!   durable messages/s, batches through the control socket, 1 and 16
//!     processes (a `phantom run` child), latency send → acknowledgement
//!   one message at a time, 1 and 16 clients  vs  redis-server with
//!     appendonly yes, appendfsync always, same disk, same clients
//!   event dispatch, journal off and on  vs  a plain wasmtime call
//!   recovery (restore + first new event) after 1k, 10k, 100k entries with
//!     a checkpoint every second  vs  the same with no checkpoint since spawn
//!   the same after a real kill -9 of a `phantom run` fed through its socket:
//!     from starting the next host to the guest's answer to a console line
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use phantom_runtime::bindings::Event;
use phantom_runtime::control::{Client, Request};
use phantom_runtime::gate::Input;
use phantom_runtime::process::{Process, SpawnRequest};
use phantom_runtime::runtime::{PlainInstance, Runtime, RuntimeConfig};
use serde_json::{Value, json};

use super::{median, tempdir, us};

/// Arguments of `phantom bench journal`.
#[derive(Args, Debug)]
pub struct JournalBenchArgs {
    /// The mailbox guest component.
    #[arg(long)]
    pub component: PathBuf,
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Messages per `send` request in the batched measurement.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Process counts of the batched measurement.
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    pub processes: Vec<usize>,
    /// Client counts of the one-at-a-time measurement.
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Events per dispatch measurement.
    #[arg(long, default_value_t = 20000)]
    pub events: usize,
    /// Journal lengths of the recovery measurement.
    #[arg(long, default_value = "1000,10000,100000", value_delimiter = ',')]
    pub recovery_entries: Vec<u64>,
    /// Entries per second written in the recovery measurement.
    #[arg(long, default_value_t = 20000)]
    pub recovery_rate: u64,
    /// Skip the Redis comparison.
    #[arg(long)]
    pub no_redis: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark.
pub fn run(a: &JournalBenchArgs) -> anyhow::Result<Value> {
    let bytes = std::fs::read(&a.component)
        .with_context(|| format!("cannot read {}", a.component.display()))?;
    let secs = Duration::from_secs_f64(a.seconds);
    let mut batched = Vec::new();
    for &n in &a.processes {
        batched.push(batched_throughput(&bytes, n, a.batch, secs)?);
    }
    // What the disk allows one client waiting for each acknowledgement:
    // one write and one fdatasync per message, nothing else.
    let floor = disk_floor(secs.min(Duration::from_secs(2)))?;
    let floor_rate = floor["per_second"].as_f64().unwrap_or(0.0);
    let mut single = Vec::new();
    for &c in &a.clients {
        let ours = one_at_a_time(&bytes, c, secs)?;
        let redis = if a.no_redis {
            json!({"skipped": true})
        } else {
            redis_one_at_a_time(c, secs).unwrap_or_else(|e| json!({"error": format!("{e:#}")}))
        };
        let ratio = match (ours["per_second"].as_f64(), redis["per_second"].as_f64()) {
            (Some(o), Some(r)) if r > 0.0 => json!(o / r),
            _ => Value::Null,
        };
        // Each sync carries at most one message per client.
        let ceiling = floor_rate * c as f64;
        let ceiling_vs_redis = match redis["per_second"].as_f64() {
            Some(r) if r > 0.0 => json!(ceiling / r),
            _ => Value::Null,
        };
        single.push(json!({
            "clients": c,
            "phantom": ours,
            "redis_appendfsync_always": redis,
            "ratio_vs_redis": ratio,
            "target_ratio_vs_redis": 10,
            "disk_ceiling_per_second": ceiling,
            "disk_ceiling_ratio_vs_redis": ceiling_vs_redis,
            "ratio_vs_disk_ceiling": ours["per_second"].as_f64().map(|o| o / ceiling),
        }));
    }
    let dispatch = dispatch(&bytes, a.events)?;
    let mut recovery = Vec::new();
    for &n in &a.recovery_entries {
        recovery.push(recovery_time(&bytes, n, a.recovery_rate, true)?);
        recovery.push(recovery_time(&bytes, n, a.recovery_rate, false)?);
    }
    let mut after_kill = Vec::new();
    for &n in &a.recovery_entries {
        after_kill.push(recovery_after_kill(&bytes, n, a.recovery_rate, true)?);
        after_kill.push(recovery_after_kill(&bytes, n, a.recovery_rate, false)?);
    }
    let out = json!({
        "benchmark": "journal",
        "disk_floor": floor,
        "durable_messages_batched": batched,
        "one_message_at_a_time": single,
        "dispatch": dispatch,
        "recovery": recovery,
        "recovery_after_kill_9": after_kill,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(out)
}

/// A `phantom run` over `data`, stopped (SIGTERM) when dropped.
struct Host(Child);

impl Host {
    fn start(data: &Path) -> anyhow::Result<Host> {
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(["run", "--data"])
            .arg(data)
            .args(["--no-stdin"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start phantom run")?;
        let host = Host(child);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = Client::connect(data)
                && c.request(&Request::Status).is_ok()
            {
                return Ok(host);
            }
            if Instant::now() > until {
                bail!("the host did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Spawns `bytes` as process `name` of `data`.
fn spawn(rt: &Runtime, bytes: &[u8], data: &Path, name: &str) -> anyhow::Result<Process> {
    let request = SpawnRequest {
        name: name.into(),
        ..Default::default()
    };
    Ok(Process::spawn(rt, bytes, data, request)?.0)
}

/// A data directory with `n` mailboxes named `p0`, `p1`, ...
fn mailboxes(bytes: &[u8], n: usize) -> anyhow::Result<PathBuf> {
    let rt = Runtime::new(RuntimeConfig::default())?;
    let data = tempdir()?;
    for i in 0..n {
        spawn(&rt, bytes, &data, &format!("p{i}"))?;
    }
    Ok(data)
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `clients` threads for `secs`, each with its own connection from
/// `connect(i)`, calling `op(connection, i, calls so far)` in a loop (it
/// returns the writes it made): total writes, time taken, call latencies.
fn run_clients<C>(
    clients: usize,
    secs: Duration,
    connect: impl Fn(usize) -> anyhow::Result<C> + Sync,
    op: impl Fn(&mut C, usize, u64) -> anyhow::Result<u64> + Sync,
) -> anyhow::Result<(u64, Duration, Vec<Duration>)> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<(u64, Vec<Duration>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let (connect, op) = (&connect, &op);
                s.spawn(move || -> anyhow::Result<(u64, Vec<Duration>)> {
                    let mut c = connect(i)?;
                    let (mut writes, mut calls) = (0u64, 0u64);
                    let mut lat = Vec::new();
                    while started.elapsed() < secs {
                        let t = Instant::now();
                        writes += op(&mut c, i, calls)?;
                        lat.push(t.elapsed());
                        calls += 1;
                    }
                    Ok((writes, lat))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut total = 0;
    let mut lat = Vec::new();
    for r in results {
        let (n, l) = r?;
        total += n;
        lat.extend(l);
    }
    Ok((total, elapsed, lat))
}

/// `clients` clients, client i sending to process `i % processes`, each
/// request `batch` messages, for `secs`.
fn drive_clients(
    data: &Path,
    processes: usize,
    clients: usize,
    batch: usize,
    secs: Duration,
) -> anyhow::Result<(u64, Duration, Vec<Duration>)> {
    let messages: Vec<String> = (0..batch).map(|k| format!("m{k}")).collect();
    run_clients(
        clients,
        secs,
        |_| Ok(Client::connect(data)?),
        |client, i, _| {
            client.request(&Request::Send {
                name: format!("p{}", i % processes),
                messages: messages.clone(),
                timeout_ms: None,
                key: None,
            })?;
            Ok(batch as u64)
        },
    )
}

fn batched_throughput(
    bytes: &[u8],
    processes: usize,
    batch: usize,
    secs: Duration,
) -> anyhow::Result<Value> {
    let data = mailboxes(bytes, processes)?;
    let host = Host::start(&data)?;
    let (total, elapsed, lat) = drive_clients(&data, processes, processes, batch, secs)?;
    drop(host);
    let _ = std::fs::remove_dir_all(&data);
    Ok(json!({
        "processes": processes,
        "messages_per_request": batch,
        "messages": total,
        "per_second": total as f64 / elapsed.as_secs_f64(),
        "latency_us_median": us(percentile(lat.clone(), 0.5)),
        "latency_us_p99": us(percentile(lat, 0.99)),
        "target_per_second": 100_000,
    }))
}

fn one_at_a_time(bytes: &[u8], clients: usize, secs: Duration) -> anyhow::Result<Value> {
    let data = mailboxes(bytes, 1)?;
    let host = Host::start(&data)?;
    let syncs_before = journal_syncs(&data)?;
    let (total, elapsed, lat) = drive_clients(&data, 1, clients, 1, secs)?;
    let syncs = journal_syncs(&data)? - syncs_before;
    drop(host);
    let _ = std::fs::remove_dir_all(&data);
    Ok(json!({
        "messages": total,
        // One client waits for each acknowledgement, so each took a sync
        // of its own: at least as many syncs as messages.
        "journal_syncs": syncs,
        "per_second": total as f64 / elapsed.as_secs_f64(),
        "latency_us_median": us(percentile(lat.clone(), 0.5)),
        "latency_us_p99": us(percentile(lat, 0.99)),
    }))
}

/// The fdatasyncs the journal of `data`'s process `p0` made so far (its
/// host's status).
fn journal_syncs(data: &Path) -> anyhow::Result<u64> {
    let status = Client::connect(data)?.request(&Request::Status)?;
    status["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "p0"))
        .and_then(|p| p["journal"]["syncs"].as_u64())
        .context("the host's status has no journal syncs for p0")
}

/// redis-server with every write fsynced, on a loopback port, in a
/// temporary directory on the same disk.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start() -> anyhow::Result<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempdir()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (Debian: apt-get install redis-server)")?;
        let redis = Redis { child, port, dir };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(mut c) = redis.connect()
                && c.command(&["PING"]).is_ok()
            {
                return Ok(redis);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server did not start");
    }

    fn connect(&self) -> anyhow::Result<RedisClient> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_nodelay(true)?;
        Ok(RedisClient {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct RedisClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RedisClient {
    fn command(&mut self, args: &[&str]) -> anyhow::Result<String> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.writer.write_all(req.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if line.starts_with('-') || line.is_empty() {
            bail!("redis: {line}");
        }
        Ok(line)
    }
}

fn redis_one_at_a_time(clients: usize, secs: Duration) -> anyhow::Result<Value> {
    let redis = Redis::start()?;
    let (total, elapsed, lat) = run_clients(
        clients,
        secs,
        |_| redis.connect(),
        |c, i, n| {
            c.command(&["SET", &format!("k{i}-{n}"), "m"])?;
            Ok(1)
        },
    )?;
    Ok(json!({
        "writes": total,
        "per_second": total as f64 / elapsed.as_secs_f64(),
        "latency_us_median": us(percentile(lat.clone(), 0.5)),
        "latency_us_p99": us(percentile(lat, 0.99)),
    }))
}

/// A `phantom run` of `data` (process `p0` takes stdin), with what it
/// prints piped.
fn start_host(data: &Path, checkpoint_every: &str) -> anyhow::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["run", "--verbose", "--input", "p0", "--checkpoint-every"])
        .arg(checkpoint_every)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start phantom run")
}

/// Recovery as a user sees it: a host fed messages through its control
/// socket at `rate` journal entries per second until its journal holds
/// `entries`, killed with SIGKILL; then the time from starting the next
/// host to the guest's answer to a console line (process start, restore,
/// replay, the new event). With `checkpoints`, the host checkpoints at
/// `phantom run`'s default interval (1 s); without, never.
fn recovery_after_kill(
    bytes: &[u8],
    entries: u64,
    rate: u64,
    checkpoints: bool,
) -> anyhow::Result<Value> {
    let data = mailboxes(bytes, 1)?;
    let every = if checkpoints { "1s" } else { "24h" };
    let mut host = start_host(&data, every)?;
    let until = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        if let Ok(mut c) = Client::connect(&data)
            && c.request(&Request::Status).is_ok()
        {
            break c;
        }
        if Instant::now() > until {
            let _ = host.kill();
            bail!("the host did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A request every 10 ms; a message costs about three entries (admit,
    // call, call-end).
    let per_request = (rate / 300).max(1) as usize;
    let started = Instant::now();
    let mut written = 0u64;
    let mut sent = 0usize;
    while written < entries {
        let messages = (sent..sent + per_request)
            .map(|k| format!("m{k}"))
            .collect();
        let reply = client.request(&Request::Send {
            name: "p0".into(),
            messages,
            timeout_ms: None,
            key: None,
        })?;
        sent += per_request;
        written = reply["position"].as_u64().map_or(written, |p| p + 1);
        let due = started + Duration::from_secs_f64(written as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    drop(client);
    host.kill()?;
    host.wait()?;
    let t = Instant::now();
    let mut host = start_host(&data, every)?;
    let mut stdin = host.stdin.take().context("no stdin")?;
    stdin.write_all(b"count\n")?;
    let mut out = BufReader::new(host.stdout.take().context("no stdout")?);
    let mut line = String::new();
    let answered = loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("the host ended before the guest answered");
        }
        if line.contains("count ") {
            break t.elapsed();
        }
    };
    drop(stdin);
    host.kill()?;
    host.wait()?;
    let mut log = String::new();
    if let Some(mut err) = host.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut log);
    }
    // "replayed the journal of 'p0': N entries, ..."
    let replayed = log
        .lines()
        .find_map(|l| l.split("replayed the journal of 'p0': ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    let _ = std::fs::remove_dir_all(&data);
    Ok(json!({
        "journal_entries": written,
        "checkpoint_every_s": if checkpoints { json!(1) } else { Value::Null },
        "entries_per_second": rate,
        "replayed_entries": replayed.unwrap_or(0),
        "host_start_to_first_event_ms": answered.as_secs_f64() * 1e3,
    }))
}

/// One thread appending 64 bytes and calling fdatasync, again and again,
/// in a pre-allocated file (written, so a sync flushes data, not extent
/// changes) on the disk the journals use: the most durable appends one
/// waiting client can get.
fn disk_floor(secs: Duration) -> anyhow::Result<Value> {
    use std::os::unix::fs::FileExt;
    const SIZE: u64 = 64 << 20;
    let dir = tempdir()?;
    let path = dir.join("floor");
    let file = std::fs::File::create(&path)?;
    let zeros = vec![0u8; 1 << 20];
    for at in (0..SIZE).step_by(zeros.len()) {
        file.write_all_at(&zeros, at)?;
    }
    file.sync_all()?;
    let record = [7u8; 64];
    let mut lat = Vec::new();
    let mut at = 0;
    let started = Instant::now();
    while started.elapsed() < secs && at + 64 <= SIZE {
        let t = Instant::now();
        file.write_all_at(&record, at)?;
        file.sync_data()?;
        lat.push(t.elapsed());
        at += 64;
    }
    let elapsed = started.elapsed();
    drop(file);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "what": "pwrite of 64 bytes + fdatasync, one thread, pre-allocated file",
        "syncs": lat.len(),
        "per_second": lat.len() as f64 / elapsed.as_secs_f64(),
        "latency_us_median": us(percentile(lat.clone(), 0.5)),
        "latency_us_p99": us(percentile(lat, 0.99)),
    }))
}

/// Per-event time of `handle(console-line)` with no output: plain wasmtime,
/// a process with the journal off, and on.
fn dispatch(bytes: &[u8], events: usize) -> anyhow::Result<Value> {
    let rounds = 5;
    let event = Event::ConsoleLine("x".into());
    let mut plain = PlainInstance::new(bytes, &[])?;
    let mut plain_t = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..events {
            plain.handle(&event)?;
        }
        plain_t.push(t.elapsed() / events as u32);
    }
    let mut per = Vec::new();
    for journal in [false, true] {
        let rt = Runtime::new(RuntimeConfig {
            journal,
            ..RuntimeConfig::default()
        })?;
        let data = tempdir()?;
        let mut p = spawn(&rt, bytes, &data, "d")?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..events {
                p.offer(Input::ConsoleLine("x".into()))?;
                p.step(&rt)?;
            }
            times.push(t.elapsed() / events as u32);
        }
        if let Some(log) = p.journal_log() {
            log.sync()?;
        }
        drop(p);
        let _ = std::fs::remove_dir_all(&data);
        per.push(median(times));
    }
    let base = median(plain_t);
    Ok(json!({
        "events": events,
        "plain_wasmtime_us": us(base),
        "journal_off_us": us(per[0]),
        "journal_on_us": us(per[1]),
        "journal_off_overhead_us": us(per[0].saturating_sub(base)),
        "journal_on_overhead_us": us(per[1].saturating_sub(base)),
        "limits_us": {"journal_off": 20, "journal_on": 50},
    }))
}

/// Writes `entries` journal entries at `rate` per second (four per
/// message: admit, call, call-end, released), checkpointing every second
/// (`checkpoints`) or never; then drops the process as a crash would and
/// times restore + the first new event.
fn recovery_time(
    bytes: &[u8],
    entries: u64,
    rate: u64,
    checkpoints: bool,
) -> anyhow::Result<Value> {
    let rt = Runtime::new(RuntimeConfig::default())?;
    let data = tempdir()?;
    let mut p = spawn(&rt, bytes, &data, "r")?;
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut written = 0u64;
    let mut k = 0u64;
    while written < entries {
        p.offer(Input::Message {
            from: String::new(),
            id: k,
            data: format!("m{k}").into_bytes(),
        })?;
        p.step(&rt)?;
        k += 1;
        written = p.journal_log().map_or(0, |l| l.next_seq());
        if checkpoints {
            if last_checkpoint.elapsed() >= Duration::from_secs(1) {
                p.checkpoint(&rt)?;
                last_checkpoint = Instant::now();
            }
            // Paced: a steady stream, not a burst between two checkpoints.
            let due = started + Duration::from_secs_f64(written as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    if let Some(log) = p.journal_log() {
        log.sync()?;
    }
    p.wait_for_write();
    drop(p); // as a crash: no final checkpoint
    let t = Instant::now();
    let (mut p, _) = Process::restore(&rt, &data.join("r"))?;
    p.offer(Input::ConsoleLine("count".into()))?;
    p.step(&rt)?;
    let elapsed = t.elapsed();
    let tail = p.last_replay().map_or(0, |r| r.entries);
    drop(p);
    let _ = std::fs::remove_dir_all(&data);
    Ok(json!({
        "journal_entries": written,
        "checkpoint_every_s": if checkpoints { json!(1) } else { Value::Null },
        "entries_per_second": if checkpoints { json!(rate) } else { Value::Null },
        "replayed_entries": tail,
        "restore_to_first_event_ms": elapsed.as_secs_f64() * 1e3,
    }))
}
