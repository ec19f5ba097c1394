//! `phantom bench migrate`: live migration of a process whose memory does
//! not compress and which dirties a share of its pages every second, over
//! loopback, against a stop-and-copy of the same process (export, then
//! import) in the same run.
//!
//! ```text
//!   feeder ─► source drive: memtouch `touch k s` every 10 ms (the dirt)
//!          ─► target drive: `touch 0 0` every ms (its first event)
//!   control: migrate ─► rounds while it runs ─► stop ─► commit ─► adopt
//!   downtime = the stop on the source ─► the first output on the target
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use phantom_runtime::control::{ControlServer, PendingRequest, ReplyTo, Request};
use phantom_runtime::datadir::DataDir;
use phantom_runtime::drive::{
    ChannelFeed, Console, Drive, DriveHooks, DriveOptions, FeedItem, Note, restore_all,
};
use phantom_runtime::exit::{Output, OutputSink};
use phantom_runtime::migrate::{MigrationKey, MigrationServer, Security, ServerOptions};

use super::tempdir;

/// Arguments of `phantom bench migrate`.
#[derive(Args, Debug)]
pub struct MigrateBenchArgs {
    /// The memtouch guest component.
    #[arg(long)]
    pub component: PathBuf,
    /// Size of the guest's buffer in MiB (filled with pseudo-random bytes).
    #[arg(long, default_value_t = 256)]
    pub memory_mib: usize,
    /// Percent of the pages dirtied per second while it runs.
    #[arg(long, default_value_t = 1.0)]
    pub dirty_percent: f64,
    /// How long it runs before it migrates (seconds).
    #[arg(long, default_value_t = 1.5)]
    pub warmup: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Records when the first output of the process appeared.
struct Watch {
    first: Arc<Mutex<Option<u64>>>,
}

impl OutputSink for Watch {
    fn emit(&mut self, _process: &str, _output: &Output) {
        let mut f = self.first.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert_with(unix_ns);
    }
}

impl DriveHooks for Watch {
    fn note(&mut self, _note: Note<'_>) {}
}

/// Runs the benchmark and prints JSON.
pub fn run(args: &MigrateBenchArgs) -> anyhow::Result<serde_json::Value> {
    use phantom_runtime::gate::Input;
    use phantom_runtime::process::{Process, SpawnRequest};
    use phantom_runtime::runtime::{Runtime, RuntimeConfig};
    use phantom_runtime::travel::{ExportPlan, import};
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let root = tempdir()?;
    let (src, dst) = (root.join("src"), root.join("dst"));
    std::fs::create_dir_all(&src)?;
    let rt_src = Runtime::new(RuntimeConfig::default())?;
    let request = SpawnRequest {
        name: "bench".into(),
        args: vec!["--mib".into(), args.memory_mib.to_string()],
        files: vec![],
        env: Vec::new(),
        ..Default::default()
    };
    let (mut p, _) = Process::spawn(&rt_src, &bytes, &src, request)?;
    p.offer(Input::ConsoleLine("fill 7".into()))?;
    p.step(&rt_src)?;
    p.require_full();
    p.checkpoint(&rt_src)?;
    p.wait_for_write().transpose()?;
    drop(p);

    // The baseline: stop and copy (export, then import) of the same process.
    let t = Instant::now();
    let plan = ExportPlan::prepare(&src, "bench", None)?;
    let mut bundle = Vec::new();
    let exported = plan.write(&mut bundle, &mut |_| {})?;
    import(
        &rt_src,
        &root.join("base"),
        &mut &bundle[..],
        None,
        false,
        &mut |_| {},
    )?;
    let baseline = t.elapsed();
    drop(bundle);

    // The target: a drive with its control socket and the listener.
    let key_path = root.join("key");
    std::fs::write(
        &key_path,
        MigrationKey::generate_hex().map_err(anyhow::Error::msg)?,
    )?;
    let key = MigrationKey::load(&key_path).map_err(anyhow::Error::msg)?;
    let data_dst = DataDir::create(&dst)?;
    let lock = data_dst.lock()?;
    let rt_dst = Runtime::new(RuntimeConfig::default())?;
    let server_rt = Arc::new(Runtime::new(RuntimeConfig::default())?);
    let mut drive_dst = Drive::new(&rt_dst, Some(dst.clone()));
    let (control_dst, requests_dst) = ControlServer::start(&data_dst, &lock, drive_dst.waker())?;
    let listener = MigrationServer::start(
        server_rt,
        ServerOptions {
            data: dst.clone(),
            listen: "127.0.0.1:0".into(),
            security: Security::Key(key),
            allow_host_devices: false,
            hand_over: true,
            log: Arc::new(|_| {}),
        },
    )?;
    let to = listener.local_addr.to_string();

    let mut drive_src = Drive::new(&rt_src, Some(src.clone()));
    let data_src = DataDir::open(&src)?;
    let mut quiet = Watch {
        first: Arc::default(),
    };
    restore_all(&mut drive_src, &data_src, false, &mut quiet)?;
    let (tx_src, rx_src) = mpsc::sync_channel::<FeedItem>(4096);
    let (tx_dst, rx_dst) = mpsc::sync_channel::<FeedItem>(4096);
    let (tx_ctl, rx_ctl) = mpsc::channel::<PendingRequest>();
    let first = Arc::new(Mutex::new(None));
    let stop_dst = Arc::new(AtomicBool::new(false));
    let feeding = Arc::new(AtomicBool::new(true));
    let pages = (args.memory_mib << 20) / 4096;
    // Pages per 10 ms tick.
    let per_tick = ((pages as f64 * args.dirty_percent / 100.0) / 100.0).max(1.0);
    let waker_src = drive_src.waker();
    let waker_dst = drive_dst.waker();

    let report = std::thread::scope(|scope| -> anyhow::Result<serde_json::Value> {
        let src_thread = scope.spawn(move || {
            let mut feed = ChannelFeed(rx_src);
            let opts = DriveOptions {
                checkpoint_every: Some(Duration::from_secs(1)),
                ..DriveOptions::default()
            };
            let mut hooks = Watch {
                first: Arc::default(),
            };
            let console = Console {
                target: "bench".into(),
                feed: &mut feed,
            };
            drive_src.run(&opts, Some(console), Some(&rx_ctl), &mut hooks);
        });
        let dst_thread = {
            let first = first.clone();
            let stop = stop_dst.clone();
            scope.spawn(move || {
                let mut feed = ChannelFeed(rx_dst);
                let opts = DriveOptions {
                    checkpoint_every: Some(Duration::from_secs(1)),
                    stop_when_empty: false,
                    stop,
                    ..DriveOptions::default()
                };
                let mut hooks = Watch { first };
                let console = Console {
                    target: "bench".into(),
                    feed: &mut feed,
                };
                drive_dst.run(&opts, Some(console), Some(&requests_dst), &mut hooks);
            })
        };
        let feeder = {
            let feeding = feeding.clone();
            scope.spawn(move || {
                let started = Instant::now();
                let mut tick = 0u64;
                let mut owed = 0.0;
                while feeding.load(Ordering::Relaxed) {
                    let now = started.elapsed();
                    if now >= Duration::from_millis(10 * tick) {
                        owed += per_tick;
                        let k = owed.floor();
                        owed -= k;
                        let _ = tx_src.try_send(FeedItem::Line(format!("touch {k} {tick}")));
                        waker_src.wake();
                        tick += 1;
                    }
                    let _ = tx_dst.try_send(FeedItem::Line("touch 0 0".into()));
                    waker_dst.wake();
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        std::thread::sleep(Duration::from_secs_f64(args.warmup));
        let (reply_tx, reply_rx) = ReplyTo::channel();
        tx_ctl.send(PendingRequest {
            request: Request::Migrate {
                name: "bench".into(),
                to: to.clone(),
                key_file: Some(key_path.clone()),
                insecure_plaintext: false,
                max_rounds: None,
            },
            reply: reply_tx,
        })?;
        let reply = reply_rx.recv_timeout(Duration::from_secs(600))?;
        if reply["ok"] != true {
            bail!("the migration failed: {}", reply["error"]);
        }
        let report = reply["report"].clone();
        let until = Instant::now() + Duration::from_secs(10);
        while first.lock().unwrap_or_else(|e| e.into_inner()).is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        feeding.store(false, Ordering::Relaxed);
        let _ = feeder.join();
        let _ = src_thread.join();
        stop_dst.store(true, Ordering::Relaxed);
        let _ = dst_thread.join();
        Ok(report)
    })?;
    drop(listener);
    drop(control_dst);
    drop(lock);
    let first_event = first
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .context("the target handled no event")?;
    let stopped = report["stopped_unix_ns"].as_u64().unwrap_or(0);
    let downtime_ms = first_event.saturating_sub(stopped) as f64 / 1e6;
    let sent = report["bytes_sent"].as_u64().unwrap_or(0);
    let image = report["image_bytes"].as_u64().unwrap_or(0);
    let dirtied = report["dirtied_bytes"].as_u64().unwrap_or(0);
    let bytes_ratio = sent as f64 / (image + dirtied).max(1) as f64;
    let _ = std::fs::remove_dir_all(&root);
    let out = serde_json::json!({
        "benchmark": "migrate",
        "memory_mib": args.memory_mib,
        "dirty_percent_per_s": args.dirty_percent,
        "downtime_ms": downtime_ms,
        "downtime_limit_ms": 50,
        "stopped_to_commit_ms": report["stopped_ms"],
        "rounds": report["rounds"],
        "bytes_sent": sent,
        "image_bytes": image,
        "dirtied_bytes": dirtied,
        "bytes_ratio": bytes_ratio,
        "bytes_ratio_limit": 1.2,
        "baseline_stop_and_copy_ms": baseline.as_secs_f64() * 1e3,
        "baseline_bundle_bytes": exported.bytes,
        "downtime_over_baseline": downtime_ms / (baseline.as_secs_f64() * 1e3).max(1e-9),
        "pass": downtime_ms <= 50.0 && bytes_ratio <= 1.2,
        "note": "downtime: the stop on the source to the first output on the target; bytes: everything written to the connection against the page bytes of the image (round 0) and of what was dirtied during the copy (later rounds), before compression; baseline: export then import of the same process (a stop-and-copy's downtime)",
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(out)
}
