//! Live migration: `phantom migrate` moves a running process to a `phantom
//! serve` host (two network namespaces joined by a veth pair when the test
//! may make them, else loopback), `kill -9` of either side at any step
//! leaves exactly one owner and loses nothing acknowledged, and a wrong key
//! or a crafted peer changes nothing on the target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phantom_runtime::migrate::protocol::{FRAME_DATA, FileKind, Msg, recv_msg, send_msg};
use phantom_runtime::migrate::{MigrationKey, Security, connect};

use super::common::*;
use super::journal::dump;

/// A new key file in `dir`.
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    ok(&run(&["serve", "--new-key", s(&path)]));
    path
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two network namespaces joined by a veth pair, removed when dropped.
struct Netns {
    a: String,
    b: String,
}

impl Netns {
    /// Made if this test may (root, `ip` present); else None.
    fn make() -> Option<Netns> {
        let id = std::process::id() % 100_000;
        let n = Netns {
            a: format!("phm-a-{id}"),
            b: format!("phm-b-{id}"),
        };
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &n.a]) {
            return None;
        }
        let (va, vb) = (format!("pva{id}"), format!("pvb{id}"));
        let ok = ip(&["netns", "add", &n.b])
            && ip(&[
                "link", "add", &va, "netns", &n.a, "type", "veth", "peer", "name", &vb, "netns",
                &n.b,
            ])
            && ip(&["-n", &n.a, "addr", "add", "10.231.0.1/24", "dev", &va])
            && ip(&["-n", &n.b, "addr", "add", "10.231.0.2/24", "dev", &vb])
            && ip(&["-n", &n.a, "link", "set", &va, "up"])
            && ip(&["-n", &n.b, "link", "set", &vb, "up"])
            && ip(&["-n", &n.a, "link", "set", "lo", "up"])
            && ip(&["-n", &n.b, "link", "set", "lo", "up"]);
        ok.then_some(n)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(phantom_bin()).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Starts a host (`phantom serve` or `run`) with stdout and stderr to
/// files; waits until `ready` shows in its stderr.
fn start(mut cmd: Command, log: &Path, ready: &str) -> HostChild {
    let out = std::fs::File::create(log.with_extension("out")).unwrap();
    let err = std::fs::File::create(log.with_extension("err")).unwrap();
    let child = HostChild(
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let text = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
        if text.contains(ready) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "the host did not get ready: {}",
        std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
    );
}

fn serve_cmd(data: &Path, addr: &str, key: &Path) -> Command {
    let mut c = phantom();
    c.args([
        "serve",
        "--data",
        s(data),
        "--listen",
        addr,
        "--key-file",
        s(key),
        "--checkpoint-every",
        "100ms",
    ]);
    c
}

/// The state of process `name` in `data` as `ps --json` says.
fn state(data: &Path, name: &str) -> Option<String> {
    let ps = ps_json(data);
    ps.as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["state"].as_str().map(String::from))
}

#[test]
fn a_running_counter_moves_live_and_goes_on_where_it_was() {
    let root = data_dir();
    let (src, dst) = (root.path().join("src"), root.path().join("dst"));
    let key = new_key(root.path(), "key");
    spawn(&src, phantom_tests::COUNTER, "c", &["--period-ms", "10"]);
    // Its keep policy and pins go along (a migration carries the history).
    ok(&run(&["keep", "--data", s(&src), "c", "--keep-last", "7"]));
    ok(&run(&["pin", "--data", s(&src), "c", "1"]));
    let netns = Netns::make();
    let port = free_port().to_string();
    let (mut source, mut target, to) = match &netns {
        Some(n) => {
            let to = format!("10.231.0.2:{port}");
            let target = start(
                n.exec(
                    &n.b,
                    &[
                        "serve",
                        "--data",
                        s(&dst),
                        "--listen",
                        &to,
                        "--key-file",
                        s(&key),
                    ],
                ),
                &root.path().join("dst"),
                "serving",
            );
            let mut c = n.exec(&n.a, &["run", "--data", s(&src), "--no-stdin", "-v"]);
            c.env("RUST_LOG", "");
            let source = start(c, &root.path().join("src"), "restored 'c'");
            (source, target, to)
        }
        None => {
            let to = format!("127.0.0.1:{port}");
            let target = start(
                serve_cmd(&dst, &to, &key),
                &root.path().join("dst"),
                "serving",
            );
            let mut c = phantom();
            c.args(["run", "--data", s(&src), "--no-stdin", "-v"]);
            let source = start(c, &root.path().join("src"), "restored 'c'");
            (source, target, to)
        }
    };
    eprintln!(
        "migrating over {}",
        if netns.is_some() {
            "a veth pair between two network namespaces"
        } else {
            "loopback (no network namespaces here)"
        }
    );
    std::thread::sleep(Duration::from_millis(500));
    let o = run(&[
        "migrate",
        "c",
        "--data",
        s(&src),
        "--to",
        &to,
        "--key-file",
        s(&key),
        "--json",
    ]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["live"], true, "{report:#}");
    assert!(
        report["rounds"].as_array().unwrap().len() >= 2,
        "{report:#}"
    );
    std::thread::sleep(Duration::from_millis(500));
    // The source's host stopped by itself (its only process left).
    let until = Instant::now() + Duration::from_secs(10);
    while source.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        source.try_wait().unwrap().is_some_and(|s| s.success()),
        "the source host did not stop cleanly"
    );
    sigterm(&mut target);
    let src_counts = counts(&std::fs::read_to_string(root.path().join("src.out")).unwrap());
    let dst_counts = counts(&std::fs::read_to_string(root.path().join("dst.out")).unwrap());
    let last = *src_counts.last().expect("the source counted");
    assert!(
        dst_counts.len() > 5,
        "the target did not count: {dst_counts:?}"
    );
    assert_eq!(
        dst_counts[0],
        last + 1,
        "the counter did not go on from {last}: {dst_counts:?}"
    );
    assert!(dst_counts.windows(2).all(|w| w[1] == w[0] + 1));
    for file in ["keep", "pins"] {
        assert_eq!(
            std::fs::read(src.join("c").join(file)).unwrap(),
            std::fs::read(dst.join("c").join(file)).unwrap(),
            "{file} did not move along"
        );
    }

    // The image is the source's, byte for byte, up to the checkpoint it
    // resumed from.
    let at = report["checkpoint"].as_u64().unwrap();
    for id in 1..=at {
        let name = phantom_snapshots::CheckpointStore::file_name(id);
        let (a, b) = (src.join("c").join(&name), dst.join("c").join(&name));
        if a.exists() {
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{name}"
            );
        }
    }
    // The source no longer runs it, and says where it went.
    assert_eq!(state(&src, "c").as_deref(), Some("moved"));
    fails_with(
        &run(&["send", "--data", s(&src), "c", "get"]),
        "has moved to",
    );
    let o = run(&["run", "--data", s(&src), "--for", "0.3", "--no-stdin"]);
    assert!(counts(&stdout(&o)).is_empty(), "{}", stdout(&o));
    assert!(stderr(&o).contains("moved to"), "{}", stderr(&o));
    ok(&run(&["fsck", "--data", s(&src)]));
    ok(&run(&["fsck", "--data", s(&dst)]));
    assert_eq!(state(&dst, "c").as_deref(), Some("ready"));
}

/// Two data directories `a` and `b` under one root with a shared key and a
/// free port each; a mailbox `box` spawned in `a`.
fn two_hosts_with_a_mailbox() -> (tempfile::TempDir, PathBuf, [PathBuf; 2], [String; 2]) {
    let root = data_dir();
    let key = new_key(root.path(), "key");
    let dirs = [root.path().join("a"), root.path().join("b")];
    let addrs = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    spawn(&dirs[0], phantom_tests::MAILBOX, "box", &[]);
    (root, key, dirs, addrs)
}

/// Kills `child` with SIGKILL.
fn kill9(child: &mut HostChild) {
    let _ = child.0.kill();
    let _ = child.0.wait();
}

#[test]
fn kill_nine_at_any_step_leaves_one_owner_and_loses_nothing() {
    let kills: usize = std::env::var("PHANTOM_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(22);
    let (root, key, dirs, addrs) = two_hosts_with_a_mailbox();
    let host = |i: usize, round: usize| {
        let mut c = serve_cmd(&dirs[i], &addrs[i], &key);
        // Every step of the protocol takes a little longer, so the kills
        // land at every step.
        c.env("PHANTOM_MIGRATE_PAUSE", "*=15");
        start(c, &root.path().join(format!("h{i}-{round}")), "serving")
    };
    let mut hosts = [host(0, 0), host(1, 0)];
    let mut owner = 0;
    let mut acked: Vec<String> = Vec::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut outcomes = BTreeMap::<String, usize>::new();
    for k in 0..kills {
        let msg = format!("m{k}");
        let o = run(&["send", "--data", s(&dirs[owner]), "box", &msg]);
        if o.status.success() {
            acked.push(msg);
        }
        let other = 1 - owner;
        let mut mig = phantom()
            .args([
                "migrate",
                "box",
                "--data",
                s(&dirs[owner]),
                "--to",
                &addrs[other],
                "--key-file",
                s(&key),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A message while it moves: acknowledged or refused, never lost.
        let during = format!("d{k}");
        std::thread::sleep(Duration::from_millis(rand(40)));
        if run(&["send", "--data", s(&dirs[owner]), "box", &during])
            .status
            .success()
        {
            acked.push(during);
        }
        std::thread::sleep(Duration::from_millis(rand(420)));
        let victim = if rand(2) == 0 { owner } else { other };
        kill9(&mut hosts[victim]);
        // Back at once: a living source's worker asks it the outcome.
        hosts[victim] = host(victim, k + 1);
        let _ = mig.wait();
        // Settles: the restarted source asks the target; a living source's
        // worker keeps asking until the restarted target answers.
        let until = Instant::now() + Duration::from_secs(40);
        let settled = loop {
            let states = [state(&dirs[0], "box"), state(&dirs[1], "box")];
            let owners: Vec<usize> = (0..2)
                .filter(|&i| matches!(states[i].as_deref(), Some("running" | "ready")))
                .collect();
            let pending = states.iter().any(|s| s.as_deref() == Some("migrating"));
            if owners.len() == 1 && !pending {
                break owners[0];
            }
            let logs = || {
                let mut logs = String::new();
                let mut files: Vec<_> = std::fs::read_dir(root.path())
                    .unwrap()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".err"))
                    .collect();
                files.sort_by_key(|e| e.file_name());
                for e in files {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    logs += &format!("== {}\n{text}\n", e.file_name().to_string_lossy());
                }
                logs
            };
            assert!(
                owners.len() < 2,
                "two owners after kill {k} (owner {owner}, victim {victim}): {states:?}\n{}",
                logs()
            );
            if Instant::now() > until {
                panic!("not settled after kill {k}: {states:?}\n{}", logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        *outcomes
            .entry(format!(
                "{} killed, {}",
                if victim == owner { "source" } else { "target" },
                if settled == owner { "stayed" } else { "moved" }
            ))
            .or_default() += 1;
        owner = settled;
        let other_state = state(&dirs[1 - owner], "box");
        assert!(
            matches!(other_state.as_deref(), None | Some("moved")),
            "{other_state:?}"
        );
    }
    eprintln!("kill outcomes: {outcomes:?}");
    for h in &mut hosts {
        sigterm(h);
    }
    for d in &dirs {
        ok(&run(&["fsck", "--data", s(d)]));
        // No staging is left behind.
        let hidden: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".spawning-"))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
    }
    let got: Vec<String> = dump(&dirs[owner], "box")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let mut at = 0;
    for m in &acked {
        let found = got[at..].iter().position(|g| g == m);
        assert!(
            found.is_some(),
            "acknowledged message {m} is missing (or out of order): {got:?}"
        );
        at += found.unwrap() + 1;
    }
}

/// Every file under `dir` (the lock, the socket and the compile cache
/// excepted) with its bytes.
/// A process that arrived but is not adopted yet (the target's host is
/// slow to take it) is migrated on at once, from its files: the late
/// adoption waits for that migration's outcome instead of running it here
/// too (it used to: two owners).
#[test]
fn an_adoption_during_a_migration_from_files_waits_for_its_outcome() {
    let (root, key, dirs, addrs) = two_hosts_with_a_mailbox();
    ok(&run(&["send", "--data", s(&dirs[0]), "box", "before"]));
    let mut a = start(
        serve_cmd(&dirs[0], &addrs[0], &key),
        &root.path().join("a-host"),
        "serving",
    );
    // b asks its host to adopt an arrival 0.4 s after the commit, and a
    // migration it starts waits 0.8 s once connected (before its intent
    // is on disk): the adoption lands inside that migration.
    let mut cb = serve_cmd(&dirs[1], &addrs[1], &key);
    cb.env(
        "PHANTOM_MIGRATE_PAUSE",
        "target-adopt-asked=400,connected=800",
    );
    let mut b = start(cb, &root.path().join("b-host"), "serving");
    let migrate = |from: usize, to: usize| {
        run(&[
            "migrate",
            "box",
            "--data",
            s(&dirs[from]),
            "--to",
            &addrs[to],
            "--key-file",
            s(&key),
        ])
    };
    ok(&migrate(0, 1));
    // At once back, while b has not adopted it: from b's files.
    ok(&migrate(1, 0));
    std::thread::sleep(Duration::from_millis(500));
    let states = [state(&dirs[0], "box"), state(&dirs[1], "box")];
    assert_eq!(states[0].as_deref(), Some("running"), "{states:?}");
    assert!(
        matches!(states[1].as_deref(), None | Some("moved")),
        "two owners: {states:?}"
    );
    ok(&run(&["send", "--data", s(&dirs[0]), "box", "after"]));
    for h in [&mut a, &mut b] {
        sigterm(h);
    }
    let got: Vec<String> = dump(&dirs[0], "box").into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, ["before", "after"]);
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if [".lock", ".control.sock", ".cache"].contains(&name.as_str()) {
                continue;
            }
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, Vec::new());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_wrong_key_or_a_crafted_peer_is_refused_and_changes_nothing() {
    let root = data_dir();
    let (src, dst) = (root.path().join("src"), root.path().join("dst"));
    let key = new_key(root.path(), "key");
    let wrong = new_key(root.path(), "wrong");
    spawn(&src, phantom_tests::MAILBOX, "box", &[]);
    ok(&run(&["send", "--data", s(&src), "box", "before"]));
    let to = format!("127.0.0.1:{}", free_port());
    let mut target = start(
        serve_cmd(&dst, &to, &key),
        &root.path().join("dst"),
        "serving",
    );
    let before = tree(&dst);
    let src_before = tree(&src);

    // A wrong key: refused on both sides.
    let o = run(&[
        "migrate",
        "box",
        "--data",
        s(&src),
        "--to",
        &to,
        "--key-file",
        s(&wrong),
    ]);
    fails_with(&o, "wrong key");
    // No key at all, and plaintext against a keyed target.
    fails_with(
        &run(&["migrate", "box", "--data", s(&src), "--to", &to]),
        "--key-file",
    );
    fails_with(
        &run(&[
            "migrate",
            "box",
            "--data",
            s(&src),
            "--to",
            &to,
            "--insecure-plaintext",
        ]),
        "requires an encrypted",
    );

    // Garbage on the port.
    {
        use std::io::{Read, Write};
        let mut g = std::net::TcpStream::connect(&to).unwrap();
        let _ = g.write_all(b"GET / HTTP/1.1\r\nHost: phantom\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx");
        let mut sink = Vec::new();
        let _ = g.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = g.read_to_end(&mut sink);
    }
    // A peer with the key that sends things a source never would.
    let security = Security::Key(MigrationKey::load(&key).unwrap());
    let refused = |msgs: &mut dyn FnMut(&mut phantom_runtime::migrate::wire::Channel)| {
        let mut ch = connect(&to, &security).unwrap();
        msgs(&mut ch);
        loop {
            match recv_msg(&mut ch) {
                Ok(Msg::Refused { error }) => return error,
                Ok(Msg::Ready) => continue,
                Ok(other) => panic!("not refused: {other:?}"),
                Err(e) => return e.to_string(),
            }
        }
    };
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("box/process.json")).unwrap()).unwrap();
    let ids = std::cell::Cell::new(0x1000u64);
    let begin = |name: &str| Msg::Begin {
        id: {
            ids.set(ids.get() + 1);
            format!("{:032x}", ids.get())
        },
        name: name.into(),
        producer: "0.1.0".into(),
        meta: meta.clone(),
    };
    let why = refused(&mut |ch| send_msg(ch, &begin("../escape")).unwrap());
    assert!(why.contains("not a valid process name"), "{why}");
    let why = refused(&mut |ch| {
        send_msg(
            ch,
            &Msg::Begin {
                id: "0123456789abcdef0123456789abcde0".into(),
                name: "box".into(),
                producer: "99.0.0".into(),
                meta: meta.clone(),
            },
        )
        .unwrap()
    });
    assert!(why.contains("newer"), "{why}");
    // A component that is not one, of the announced length.
    let why = refused(&mut |ch| {
        let mut m = meta.clone();
        m["component_bytes"] = 8.into();
        send_msg(
            ch,
            &Msg::Begin {
                id: "0123456789abcdef0123456789abcde1".into(),
                name: "box".into(),
                producer: "0.1.0".into(),
                meta: m,
            },
        )
        .unwrap();
        send_msg(
            ch,
            &Msg::File {
                kind: FileKind::Component,
                name: "component.wasm".into(),
                len: 8,
                delta: None,
            },
        )
        .unwrap();
        ch.send(FRAME_DATA, b"\0asm\x01\0\0\0").unwrap();
        send_msg(
            ch,
            &Msg::FileEnd {
                xxh3: xxhash_rust::xxh3::xxh3_64(b"\0asm\x01\0\0\0"),
            },
        )
        .unwrap();
    });
    assert!(why.contains("component"), "{why}");
    // A checkpoint file before the component, a length over the cap, a
    // path for a name, a patch of a component, a patch against a file
    // never sent.
    let patch = |base: &str, zlen| {
        Some(phantom_runtime::migrate::protocol::Delta {
            base: base.into(),
            zlen,
        })
    };
    for (kind, name, len, delta) in [
        (
            FileKind::Checkpoint,
            "ckpt-00000000000000000001.phi",
            10,
            None,
        ),
        (FileKind::Failure, "failed.json", 1 << 40, None),
        (FileKind::Component, "../../x", 10, None),
        (
            FileKind::Component,
            "component.wasm",
            10,
            patch("ckpt-00000000000000000001.phi", 5),
        ),
        (
            FileKind::Checkpoint,
            "ckpt-00000000000000000002.phi",
            10,
            patch("ckpt-00000000000000000001.phi", 5),
        ),
    ] {
        let why = refused(&mut |ch| {
            send_msg(ch, &begin("box")).unwrap();
            send_msg(
                ch,
                &Msg::File {
                    kind,
                    name: name.into(),
                    len,
                    delta: delta.clone(),
                },
            )
            .unwrap();
        });
        assert!(!why.is_empty());
    }
    // A commit with nothing sent.
    let why = refused(&mut |ch| {
        send_msg(ch, &begin("box")).unwrap();
        send_msg(ch, &Msg::Commit { newest: 1 }).unwrap();
    });
    assert!(
        why.contains("component") || why.contains("aborted"),
        "{why}"
    );

    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(tree(&dst), before, "the target changed");
    assert_eq!(tree(&src), src_before, "the source changed");
    let log = std::fs::read_to_string(root.path().join("dst.err")).unwrap();
    assert!(log.contains("wrong key"), "{log}");
    assert!(log.contains("does not speak"), "{log}");
    assert!(!host_panicked(&log), "{log}");
    // And the source still owns and runs its process.
    let want: Vec<(String, String)> = vec![("-".into(), "before".into())];
    assert_eq!(dump(&src, "box"), want);
    sigterm(&mut target);
}

/// A process granted this host's own hardware (`linux:`) migrates only to
/// a target that says it takes such processes (`serve
/// --allow-host-devices`), as `import` takes them only with the flag;
/// refused, it stays on its source.
#[test]
fn host_devices_migrate_only_to_a_target_that_allows_them() {
    let root = tempfile::tempdir().unwrap();
    let key = new_key(root.path(), "key");
    let (src, dst) = (root.path().join("src"), root.path().join("dst"));
    let manifest = root.path().join("devices.toml");
    std::fs::write(
        &manifest,
        "serial.log = { port = \"linux:/dev/ttyS0\", baud = 9600 }\n",
    )
    .unwrap();
    ok(&run(&[
        "spawn",
        phantom_tests::COUNTER,
        "--data",
        s(&src),
        "--name",
        "c",
        "--devices",
        s(&manifest),
    ]));
    let migrate = |to: &str| {
        run(&[
            "migrate",
            "c",
            "--data",
            s(&src),
            "--to",
            to,
            "--key-file",
            s(&key),
        ])
    };
    let to = format!("127.0.0.1:{}", free_port());
    let mut target = start(
        serve_cmd(&dst, &to, &key),
        &root.path().join("dst1"),
        "serving",
    );
    let o = migrate(&to);
    fails_with(&o, "--allow-host-devices");
    assert!(src.join("c/process.json").exists(), "the source lost it");
    assert!(!dst.join("c").exists(), "the target took it");
    sigterm(&mut target);
    let to = format!("127.0.0.1:{}", free_port());
    let mut cmd = serve_cmd(&dst, &to, &key);
    cmd.arg("--allow-host-devices");
    let mut target = start(cmd, &root.path().join("dst2"), "serving");
    ok(&migrate(&to));
    assert!(
        dst.join("c/process.json").exists(),
        "the target did not take it"
    );
    sigterm(&mut target);
}
