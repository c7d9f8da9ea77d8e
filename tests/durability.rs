//! Crash tests: the real binary is killed with SIGKILL at random points
//! while paho-mqtt clients (tests/py/crash.py) publish and subscribe, then
//! restarted on the same data directory. Every message the broker
//! acknowledged must reach the persistent subscribers, in order per
//! publisher, and QoS 2 messages exactly once.
//!
//! The kill points come from a seed printed by each test; set
//! `TERN_CRASH_SEED` to replay one.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Tern;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/crash.py")
}

/// A running crash.py with its stdout lines.
struct Py {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Py {
    fn spawn(args: &[String]) -> Py {
        let mut child = Command::new("python3")
            .arg(script())
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Py { child, lines }
    }

    /// Waits for the script to end (killing it after `limit`) and returns
    /// the lines not read yet.
    fn finish(mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut lines = vec![];
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => lines.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        let _ = self.child.kill();
                        panic!("crash.py did not finish in {limit:?}; got {lines:?}");
                    }
                }
            }
        }
        let _ = self.child.wait();
        lines
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(port: u16, mode: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec![mode.to_string(), "--port".into(), port.to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

/// A small deterministic generator for the kill points.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed = std::env::var("TERN_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: TERN_CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn setup(port: u16, client: &str, qos: u8, topic: &str) {
    let lines = Py::spawn(&args(
        port,
        "setup",
        &[
            "--client",
            client,
            "--qos",
            &qos.to_string(),
            "--topic",
            topic,
        ],
    ))
    .finish(Duration::from_secs(30));
    assert_eq!(lines, vec!["ready"], "setup of {client}");
}

/// Messages a subscriber printed: (qos, topic, payload number).
fn messages(lines: &[String]) -> Vec<(u8, String, u64)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut it = l.strip_prefix("msg ")?.splitn(3, ' ');
            let qos = it.next()?.parse().ok()?;
            let topic = it.next()?.to_string();
            // The number leads the payload (padding may follow).
            let n = it.next()?.split(' ').next()?.parse().ok()?;
            Some((qos, topic, n))
        })
        .collect()
}

/// Runs publishers until the first has `kill_after` acknowledgements, then
/// kills the broker with SIGKILL and returns every number acknowledged
/// per publisher.
fn publish_and_kill(
    tern: &mut Tern,
    publishers: &[(&str, u8, &str, u64, bool)],
    kill_after: usize,
) -> Vec<BTreeSet<u64>> {
    let port = tern.mqtt.port();
    let mut pys: Vec<Py> = publishers
        .iter()
        .map(|(client, qos, topic, start, retain)| {
            let qos = qos.to_string();
            let start = start.to_string();
            let mut rest = vec![
                "--client", client, "--qos", &qos, "--topic", topic, "--start", &start, "--count",
                "5000",
            ];
            if *retain {
                rest.push("--retain");
            }
            Py::spawn(&args(port, "publish", &rest))
        })
        .collect();
    let mut acked: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); pys.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    'outer: loop {
        for (i, p) in pys.iter_mut().enumerate() {
            while let Ok(l) = p.lines.try_recv() {
                if let Some(n) = l.strip_prefix("acked ") {
                    acked[i].insert(n.parse().expect("number"));
                }
            }
        }
        if acked[0].len() >= kill_after {
            break 'outer;
        }
        assert!(
            Instant::now() < deadline,
            "publishers too slow: {} acknowledged",
            acked[0].len()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    tern.kill9();
    for (i, p) in pys.drain(..).enumerate() {
        for l in p.finish(Duration::from_secs(40)) {
            if let Some(n) = l.strip_prefix("acked ") {
                acked[i].insert(n.parse().expect("number"));
            }
        }
    }
    acked
}

/// Queues hold everything the tests publish (the default bound of 1000
/// per session would drop the oldest, by design).
const FLAGS: &[&str] = &["--session-queue-max", "100000"];

fn restart(dir: &Path, port: u16) -> Tern {
    Tern::start_in(dir, &format!("127.0.0.1:{port}"), FLAGS)
}

/// Every acknowledged number is present; numbers appear in increasing
/// order (first occurrences, for QoS 1 where a repeat is allowed); with
/// `exactly_once`, no number appears twice.
fn check_delivery(what: &str, got: &[u64], acked: &BTreeSet<u64>, exactly_once: bool) {
    let set: BTreeSet<u64> = got.iter().copied().collect();
    let missing: Vec<&u64> = acked.difference(&set).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} acknowledged messages lost, e.g. {:?} (got {}, acked {})",
        missing.len(),
        &missing[..missing.len().min(10)],
        got.len(),
        acked.len()
    );
    let mut seen = BTreeSet::new();
    let mut last = None;
    for &n in got {
        if !seen.insert(n) {
            assert!(!exactly_once, "{what}: {n} delivered twice");
            continue;
        }
        if let Some(l) = last {
            assert!(n > l, "{what}: {n} delivered after {l}");
        }
        last = Some(n);
    }
}

#[test]
fn offline_persistent_subscribers_get_every_acknowledged_message_across_kill9() {
    let mut rng = Rng::new("offline");
    let dir = common::temp_dir();
    let mut tern = Tern::start_in(&dir, "127.0.0.1:0", FLAGS);
    let port = tern.mqtt.port();
    setup(port, "off-q1", 1, "crash/q1");
    setup(port, "off-q2", 2, "crash/q2");
    let mut acked1 = BTreeSet::new();
    let mut acked2 = BTreeSet::new();
    for it in 0..3u64 {
        let kill_after = 50 + rng.below(600) as usize;
        let a = publish_and_kill(
            &mut tern,
            &[
                (&format!("pub1-{it}"), 1, "crash/q1", it * 100_000, false),
                (&format!("pub2-{it}"), 2, "crash/q2", it * 100_000, false),
            ],
            kill_after,
        );
        eprintln!(
            "iteration {it}: killed after {} QoS 1 and {} QoS 2 acknowledgements",
            a[0].len(),
            a[1].len()
        );
        acked1.extend(&a[0]);
        acked2.extend(&a[1]);
        tern = restart(&dir, port);
    }
    let collect = |client: &str| {
        let lines = Py::spawn(&args(port, "collect", &["--client", client, "--idle", "2"]))
            .finish(Duration::from_secs(120));
        assert!(
            lines.iter().any(|l| l.starts_with("connected True")),
            "{client}: session not resumed: {:?}",
            &lines[..lines.len().min(5)]
        );
        messages(&lines)
    };
    let got1: Vec<u64> = collect("off-q1").into_iter().map(|m| m.2).collect();
    let got2: Vec<u64> = collect("off-q2").into_iter().map(|m| m.2).collect();
    check_delivery("QoS 1 offline", &got1, &acked1, false);
    check_delivery("QoS 2 offline", &got2, &acked2, true);
    drop(tern);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn online_subscribers_keep_inflight_state_across_kill9() {
    let mut rng = Rng::new("online");
    let dir = common::temp_dir();
    let mut tern = Tern::start_in(&dir, "127.0.0.1:0", FLAGS);
    let port = tern.mqtt.port();
    let iterations = 3u64;
    let listen = |client: &str, qos: &str, topic: &str| {
        let it = iterations.to_string();
        let p = Py::spawn(&args(
            port,
            "listen",
            &[
                "--client",
                client,
                "--qos",
                qos,
                "--topic",
                topic,
                "--idle",
                "3",
                "--reconnects",
                &it,
            ],
        ));
        // Subscribed before anything is published.
        let l = p
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("listener connected");
        assert!(l.starts_with("connected"), "{l}");
        p
    };
    let l1 = listen("on-q1", "1", "crash/o1");
    let l2 = listen("on-q2", "2", "crash/o2");
    std::thread::sleep(Duration::from_millis(500));
    let mut acked1 = BTreeSet::new();
    let mut acked2 = BTreeSet::new();
    for it in 0..iterations {
        let kill_after = 50 + rng.below(600) as usize;
        let a = publish_and_kill(
            &mut tern,
            &[
                (&format!("opub1-{it}"), 1, "crash/o1", it * 100_000, false),
                (&format!("opub2-{it}"), 2, "crash/o2", it * 100_000, false),
            ],
            kill_after,
        );
        eprintln!(
            "iteration {it}: killed after {} QoS 1 and {} QoS 2 acknowledgements",
            a[0].len(),
            a[1].len()
        );
        acked1.extend(&a[0]);
        acked2.extend(&a[1]);
        tern = restart(&dir, port);
    }
    let lines1 = l1.finish(Duration::from_secs(120));
    let lines2 = l2.finish(Duration::from_secs(120));
    let got1: Vec<u64> = messages(&lines1).into_iter().map(|m| m.2).collect();
    let got2: Vec<u64> = messages(&lines2).into_iter().map(|m| m.2).collect();
    check_delivery("QoS 1 online", &got1, &acked1, false);
    check_delivery("QoS 2 online", &got2, &acked2, true);
    drop(tern);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retained_messages_survive_kill9() {
    let mut rng = Rng::new("retained");
    let dir = common::temp_dir();
    let mut tern = Tern::start_in(&dir, "127.0.0.1:0", FLAGS);
    let port = tern.mqtt.port();
    let kill_after = 50 + rng.below(600) as usize;
    let a = publish_and_kill(&mut tern, &[("rpub", 1, "crash/r", 0, true)], kill_after);
    tern = restart(&dir, port);
    let lines = Py::spawn(&args(
        port,
        "listen",
        &[
            "--client",
            "rsub",
            "--qos",
            "1",
            "--topic",
            "crash/r/#",
            "--idle",
            "2",
        ],
    ))
    .finish(Duration::from_secs(120));
    let got: HashMap<String, u64> = messages(&lines)
        .into_iter()
        .map(|(_, t, n)| (t, n))
        .collect();
    for n in &a[0] {
        assert_eq!(
            got.get(&format!("crash/r/{n}")),
            Some(n),
            "acknowledged retained message {n} lost ({} acked, {} retained after restart)",
            a[0].len(),
            got.len()
        );
    }
    drop(tern);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn graceful_restart_keeps_sessions_queues_and_retained() {
    let dir = common::temp_dir();
    let mut tern = Tern::start_in(&dir, "127.0.0.1:0", FLAGS);
    let port = tern.mqtt.port();
    setup(port, "g-q1", 1, "grace/#");
    let lines = Py::spawn(&args(
        port,
        "publish",
        &[
            "--client", "gpub", "--qos", "1", "--topic", "grace/t", "--count", "200",
        ],
    ))
    .finish(Duration::from_secs(60));
    assert_eq!(lines.iter().filter(|l| l.starts_with("acked")).count(), 200);
    tern.terminate();
    let tern = restart(&dir, port);
    let lines = Py::spawn(&args(port, "collect", &["--client", "g-q1", "--idle", "2"]))
        .finish(Duration::from_secs(60));
    let got: Vec<u64> = messages(&lines).into_iter().map(|m| m.2).collect();
    assert_eq!(got, (0..200).collect::<Vec<u64>>());
    drop(tern);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_will_of_a_client_connected_at_kill9_is_published_after_restart() {
    let dir = common::temp_dir();
    let mut tern = Tern::start_in(&dir, "127.0.0.1:0", FLAGS);
    let port = tern.mqtt.port();
    setup(port, "will-watch", 1, "crash/will/#");
    // A persistent device with a will, connected when the server dies.
    let mut device = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-i",
            "will-dev",
            "-c",
            "-q",
            "1",
        ])
        .args(["-t", "crash/ignored", "--will-topic", "crash/will/dev"])
        .args(["--will-payload", "device lost", "--will-qos", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    // Wait until the device's session exists (its subscription is live).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://{}/channels/crash%2Fignored", tern.http))
            .output()
            .expect("curl");
        if String::from_utf8_lossy(&out.stdout).contains("\"subscribers\":1") {
            break;
        }
        assert!(Instant::now() < deadline, "the device never subscribed");
        std::thread::sleep(Duration::from_millis(50));
    }
    tern.kill9();
    let _ = device.kill();
    let _ = device.wait();
    let tern = restart(&dir, port);
    let lines = Py::spawn(&args(
        port,
        "collect",
        &["--client", "will-watch", "--idle", "2"],
    ))
    .finish(Duration::from_secs(60));
    assert!(
        lines
            .iter()
            .any(|l| l == "msg 1 crash/will/dev device lost"),
        "the will was not published after the restart: {lines:?}"
    );
    drop(tern);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs of `mb` MiB mounted at a fresh directory (root, or
/// password-less sudo, as scripts/test's package installs need too);
/// unmounted on drop.
struct SmallDisk(PathBuf);

/// `mount`/`umount` as root.
fn privileged(cmd: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        Command::new(cmd)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", cmd]);
        c
    }
}

impl SmallDisk {
    fn mount(mb: u32) -> SmallDisk {
        let dir = common::temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let st = privileged("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "the disk-full test mounts a small tmpfs: it needs root or password-less sudo"
        );
        SmallDisk(dir)
    }

    fn grow(&self, mb: u32) {
        let st = privileged("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(st.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = privileged("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_full_disk_stops_acknowledgements_with_quota_exceeded_and_loses_nothing() {
    let disk = SmallDisk::mount(3);
    let data = disk.0.join("data");
    let mut tern = Tern::start_in(&data, "127.0.0.1:0", FLAGS);
    let port = tern.mqtt.port();
    setup(port, "full-sub", 1, "full/#");
    // Publish 1 KiB messages to the persistent subscriber until the disk
    // is full: the publisher is disconnected with 0x97 (quota exceeded).
    let lines = Py::spawn(&args(
        port,
        "publish",
        &[
            "--client", "full-pub", "--qos", "1", "--topic", "full/t", "--count", "100000",
            "--pad", "1024", "--mqtt5",
        ],
    ))
    .finish(Duration::from_secs(120));
    let acked: BTreeSet<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("acked ")?.parse().ok())
        .collect();
    assert!(
        lines.iter().any(|l| l == "disconnected 151"),
        "no DISCONNECT 0x97: {:?}",
        &lines[lines.len().saturating_sub(3)..]
    );
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());
    // Clients that need no durability are unaffected (QoS 0, clean).
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "free/t",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let st = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "free/t",
            "-m",
            "still here",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let out = sub.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "still here");
    // With room again, a restart delivers every acknowledged message.
    tern.kill9();
    disk.grow(64);
    let tern = restart(&data, port);
    let lines = Py::spawn(&args(
        port,
        "collect",
        &["--client", "full-sub", "--idle", "3"],
    ))
    .finish(Duration::from_secs(120));
    let got: Vec<u64> = messages(&lines).into_iter().map(|m| m.2).collect();
    check_delivery("after a full disk", &got, &acked, false);
    drop(tern);
}
