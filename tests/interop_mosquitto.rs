//! Interop with Debian's `mosquitto_pub` / `mosquitto_sub` (package
//! mosquitto-clients), and differential checks against Debian's `mosquitto`
//! broker: the same client commands against both brokers must print the same
//! lines. `scripts/test` installs both packages.
//!
//! Every client runs with a timeout (`-W` for mosquitto_sub, a kill after
//! `CLIENT_TIMEOUT` for anything), so no test can hang.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

fn start_tern(flags: &[&str]) -> common::Tern {
    // Loopback listeners accept anonymous clients by default.
    common::Tern::start(flags)
}

/// Finds an executable on PATH, or in the sbin directories (where Debian puts
/// the `mosquitto` broker, which a non-root PATH may lack).
fn find_exe(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} not found; run scripts/test, which installs mosquitto and mosquitto-clients");
}

/// Runs a client to completion (killing it after `CLIENT_TIMEOUT`); returns
/// (success, stdout, stderr).
fn run(exe: &str, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(find_exe(exe))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {exe}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let ok = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        ok,
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default(),
    )
}

/// `mosquitto_pub` with `args`, which must succeed.
fn publish(port: u16, version: &str, args: &[&str]) {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-V", version];
    all.extend_from_slice(args);
    let (ok, out, err) = run("mosquitto_pub", &all);
    assert!(
        ok,
        "mosquitto_pub {all:?} failed\nstdout: {out}\nstderr: {err}"
    );
}

/// A running `mosquitto_sub -d ...`; its debug lines tell when it has subscribed.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    args: Vec<String>,
}

impl Sub {
    /// Starts `mosquitto_sub -d -W 10 ARGS` and waits for its SUBACK(s).
    fn start(port: u16, version: &str, args: &[&str]) -> Sub {
        Sub::start_raw(port, version, args, true)
    }

    fn start_raw(port: u16, version: &str, args: &[&str], wait_suback: bool) -> Sub {
        let port = port.to_string();
        let mut all: Vec<String> = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-d",
            "-W",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe, which would hold
        // back the debug lines that tell it has subscribed.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(find_exe("mosquitto_sub"))
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto_sub");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx2.send(format!("stderr: {line}")).is_err() {
                    break;
                }
            }
        });
        let mut sub = Sub {
            child,
            lines: rx,
            seen: Vec::new(),
            args: all,
        };
        if wait_suback {
            sub.wait_for("received SUBACK");
        }
        sub
    }

    /// Waits (up to 10 s) for a debug line containing `needle`.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "mosquitto_sub {:?}: no {needle:?} within 10 s; output so far:\n{}",
                    self.args,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to end (it has -C and/or -W) and returns
    /// (exited successfully, message lines without the debug lines).
    fn finish(mut self) -> (bool, Vec<String>) {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let ok = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader threads end at EOF, closing the channel.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let messages = self
            .seen
            .iter()
            .filter(|l| !is_debug_line(l))
            .cloned()
            .collect();
        (ok, messages)
    }

    /// Like `finish`, but the subscriber must have exited 0 (it received its -C count).
    fn expect_lines(self) -> Vec<String> {
        let args = self.args.clone();
        let (ok, lines) = self.finish();
        assert!(
            ok,
            "mosquitto_sub {args:?} did not exit 0 (count not reached within -W?); message lines: {lines:?}"
        );
        lines
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_debug_line(line: &str) -> bool {
    line.starts_with("Client ")
        || line.starts_with("Subscribed (mid")
        || line.starts_with("stderr: ")
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}/{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// --- mosquitto clients against tern ---------------------------------------

fn sub_receives_pub(version: &str) {
    let tern = start_tern(&[]);
    let port = tern.mqtt.port();
    let topic = unique("hello");
    let sub = Sub::start(port, version, &["-t", &topic, "-C", "1"]);
    publish(port, version, &["-t", &topic, "-m", "hello world"]);
    assert_eq!(sub.expect_lines(), vec!["hello world"]);
}

#[test]
fn mosquitto_sub_receives_mosquitto_pub_v311() {
    sub_receives_pub("mqttv311");
}

#[test]
fn mosquitto_sub_receives_mosquitto_pub_v5() {
    sub_receives_pub("mqttv5");
}

/// `mosquitto_pub -r` stores a retained message that a later `mosquitto_sub`
/// gets with the retain flag; `-r -n` (empty payload) clears it.
fn retained(version: &str) {
    let tern = start_tern(&[]);
    let port = tern.mqtt.port();
    let topic = unique("ret");
    publish(
        port,
        version,
        &["-t", &topic, "-m", "kept", "-r", "-q", "1"],
    );
    let sub = Sub::start(
        port,
        version,
        &["-t", &topic, "-q", "1", "-C", "1", "-F", "%r %q %t %p"],
    );
    assert_eq!(sub.expect_lines(), vec![format!("1 1 {topic} kept")]);
    publish(port, version, &["-t", &topic, "-n", "-r", "-q", "1"]);
    let sub = Sub::start(
        port,
        version,
        &["-t", &topic, "-C", "1", "-W", "2", "-F", "%r %q %t %p"],
    );
    let (_, lines) = sub.finish();
    assert!(
        lines.is_empty(),
        "retained message survived an empty retained publish: {lines:?}"
    );
}

#[test]
fn mqtt_3_3_1_5_mosquitto_retained_v311() {
    retained("mqttv311");
}

#[test]
fn mqtt_3_3_1_5_mosquitto_retained_v5() {
    retained("mqttv5");
}

/// `-q 1` and `-q 2` round trips, and the downgrade to a QoS 1 subscription.
fn qos(version: &str) {
    let tern = start_tern(&[]);
    let port = tern.mqtt.port();
    let topic = unique("qos");
    let sub2 = Sub::start(
        port,
        version,
        &["-t", &topic, "-q", "2", "-C", "3", "-F", "%q %p"],
    );
    let sub1 = Sub::start(
        port,
        version,
        &["-t", &topic, "-q", "1", "-C", "3", "-F", "%q %p"],
    );
    for q in ["0", "1", "2"] {
        publish(
            port,
            version,
            &["-t", &topic, "-q", q, "-m", &format!("m{q}")],
        );
    }
    assert_eq!(sub2.expect_lines(), vec!["0 m0", "1 m1", "2 m2"]);
    assert_eq!(sub1.expect_lines(), vec!["0 m0", "1 m1", "1 m2"]);
}

#[test]
fn mqtt_3_8_4_8_mosquitto_qos1_qos2_and_downgrade_v311() {
    qos("mqttv311");
}

#[test]
fn mqtt_3_8_4_8_mosquitto_qos1_qos2_and_downgrade_v5() {
    qos("mqttv5");
}

fn wildcard_hash(version: &str) {
    let tern = start_tern(&[]);
    let port = tern.mqtt.port();
    let base = unique("wild");
    let filter = format!("{base}/#");
    let sub = Sub::start(port, version, &["-t", &filter, "-C", "3", "-v"]);
    for (t, m) in [
        (base.clone(), "parent"),
        (format!("{base}/a"), "child"),
        (format!("{base}/a/b"), "grandchild"),
    ] {
        publish(port, version, &["-t", &t, "-m", m]);
    }
    assert_eq!(
        sub.expect_lines(),
        vec![
            format!("{base} parent"),
            format!("{base}/a child"),
            format!("{base}/a/b grandchild")
        ]
    );
}

#[test]
fn mqtt_4_7_1_2_mosquitto_wildcard_hash_v311() {
    wildcard_hash("mqttv311");
}

#[test]
fn mqtt_4_7_1_2_mosquitto_wildcard_hash_v5() {
    wildcard_hash("mqttv5");
}

/// `mosquitto_pub -D publish ...` properties arrive unaltered at `mosquitto_sub -F`.
#[test]
fn mqtt_3_3_2_17_mosquitto_v5_publish_properties() {
    let tern = start_tern(&[]);
    let port = tern.mqtt.port();
    let topic = unique("props");
    let sub = Sub::start(
        port,
        "mqttv5",
        &["-t", &topic, "-C", "1", "-F", "%P|%C|%R|%D|%F|%t|%p"],
    );
    publish(
        port,
        "mqttv5",
        &[
            "-t",
            &topic,
            "-m",
            "payload",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "reply/here",
            "-D",
            "publish",
            "correlation-data",
            "corr-1",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
        ],
    );
    assert_eq!(
        sub.expect_lines(),
        vec![format!(
            "k:v k2:v2|text/plain|reply/here|corr-1|1|{topic}|payload"
        )]
    );
}

/// `mosquitto_sub -v` on a v5 connection with a user property still prints `topic payload`.
#[test]
fn mosquitto_v5_verbose_output() {
    let tern = start_tern(&[]);
    let port = tern.mqtt.port();
    let topic = unique("verbose");
    let sub = Sub::start(port, "mqttv5", &["-t", &topic, "-C", "1", "-v"]);
    publish(
        port,
        "mqttv5",
        &[
            "-t",
            &topic,
            "-m",
            "hi there",
            "-D",
            "publish",
            "user-property",
            "a",
            "b",
        ],
    );
    assert_eq!(sub.expect_lines(), vec![format!("{topic} hi there")]);
}

// --- the README's tour ----------------------------------------------------

/// The `mosquitto_sub` / `mosquitto_pub` commands of the README's tour, run
/// literally (through `sh -c`), pointed at a test broker by appending
/// `-h 127.0.0.1 -p PORT` (the last -h/-p wins), the subscriber bounded by
/// `-C N -W 10` (N = the number of publish commands). The subscriber must print
/// each published message (as `topic payload` when it has `-v`), and, when a
/// publish was retained, a new subscriber gets that message at once.
#[test]
fn readme_tour_works_literally() {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md at the repository root");
    let (sub_cmd, pub_cmds) = tour_commands(&text);
    let tern = start_tern(&[]);
    let port = tern.port();
    let verbose = sub_cmd.split_whitespace().any(|a| a == "-v");
    let expected: Vec<String> = pub_cmds
        .iter()
        .filter_map(|c| {
            let m = option_of(c, "-m")?;
            Some(match option_of(c, "-t") {
                Some(t) if verbose => format!("{t} {m}"),
                _ => m,
            })
        })
        .collect();
    let n = pub_cmds.len();
    let sub_line = format!("{sub_cmd} -d -C {n} -W 10 -h 127.0.0.1 -p {port}");
    let mut sub = Sub::shell(&sub_line);
    sub.wait_for("received SUBACK");
    for pub_cmd in &pub_cmds {
        let line = format!("{pub_cmd} -h 127.0.0.1 -p {port}");
        let (ok, out, err) = run("sh", &["-c", &line]);
        assert!(
            ok,
            "README tour command failed: {line}\nstdout: {out}\nstderr: {err}"
        );
    }
    let lines = sub.expect_lines();
    assert_eq!(lines, expected, "README tour subscriber output");
    // The retained publish, if any, reaches a new subscriber at once.
    let retained: Vec<&String> = pub_cmds
        .iter()
        .zip(&expected)
        .filter(|(c, _)| c.split_whitespace().any(|a| a == "-r"))
        .map(|(_, e)| e)
        .collect();
    if !retained.is_empty() {
        let n = retained.len();
        let late = Sub::shell(&format!("{sub_cmd} -d -C {n} -W 5 -h 127.0.0.1 -p {port}"));
        let lines = late.expect_lines();
        let want: Vec<String> = retained.into_iter().cloned().collect();
        assert_eq!(
            lines, want,
            "a new tour subscriber should get the retained message(s)"
        );
    }
}

impl Sub {
    /// `sh -c LINE` where LINE is a mosquitto_sub command including `-d`.
    fn shell(line: &str) -> Sub {
        let mut child = Command::new("sh")
            .args(["-c", &format!("exec stdbuf -oL {line}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx2.send(format!("stderr: {line}")).is_err() {
                    break;
                }
            }
        });
        Sub {
            child,
            lines: rx,
            seen: Vec::new(),
            args: vec![line.to_string()],
        }
    }
}

/// The tour's first `mosquitto_sub` command and its `mosquitto_pub` commands,
/// from the fenced code blocks of the README section whose heading mentions
/// "tour". A leading `$ ` prompt and a trailing `&` are dropped.
fn tour_commands(readme: &str) -> (String, Vec<String>) {
    let mut in_tour = false;
    let mut in_code = false;
    let mut subs = Vec::new();
    let mut pubs = Vec::new();
    for raw in readme.lines() {
        let line = raw.trim();
        if line.starts_with('#') && !in_code {
            in_tour = line.to_lowercase().contains("tour");
            continue;
        }
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !(in_tour && in_code) {
            continue;
        }
        let cmd = line.strip_prefix("$ ").unwrap_or(line);
        let cmd = cmd.split(" #").next().unwrap_or(cmd).trim();
        let cmd = cmd.strip_suffix('&').unwrap_or(cmd).trim();
        if cmd.starts_with("mosquitto_sub ") {
            subs.push(cmd.to_string());
        } else if cmd.starts_with("mosquitto_pub ") {
            pubs.push(cmd.to_string());
        }
    }
    assert!(
        !subs.is_empty() && !pubs.is_empty(),
        "README.md has no tour section (a heading containing \"tour\") with mosquitto_sub and \
         mosquitto_pub commands in fenced code blocks"
    );
    (subs.swap_remove(0), pubs)
}

/// The value of option `opt` (e.g. `-m`) in a command line, unquoted.
fn option_of(cmd: &str, opt: &str) -> Option<String> {
    let rest = cmd.split_once(&format!(" {opt} "))?.1.trim_start();
    let value = match rest.chars().next()? {
        q @ ('\'' | '"') => rest[1..].split(q).next()?.to_string(),
        _ => rest.split_whitespace().next()?.to_string(),
    };
    Some(value)
}

// --- differential: Debian's mosquitto vs tern ------------------------------

/// Debian's mosquitto broker on a free loopback port, killed (by PID) on drop.
struct Mosquitto {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            l.local_addr().expect("addr").port()
        };
        let dir =
            std::env::temp_dir().join(format!("tern-mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mosquitto temp dir");
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nsys_interval 1\n"
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(find_exe("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let m = Mosquitto { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `scenario(port)` against mosquitto and against tern (with
/// `--sys-interval-secs 1`); both must give the same lines.
fn differential(scenario: fn(u16, &str) -> Vec<String>) {
    let base = unique("diff");
    let reference = {
        let m = Mosquitto::start();
        scenario(m.port, &base)
    };
    let ours = {
        let t = start_tern(&["--sys-interval-secs", "1"]);
        scenario(t.mqtt.port(), &base)
    };
    assert!(
        !reference.is_empty(),
        "the scenario printed nothing against mosquitto"
    );
    println!("mosquitto:\n{}", reference.join("\n"));
    assert_eq!(
        ours, reference,
        "tern (left) differs from Debian's mosquitto (right)"
    );
}

/// Retained messages at several levels, read back through `+` and `#`
/// (retained order is unspecified, so the lines are sorted per subscriber).
fn scenario_retained_wildcards(port: u16, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for version in ["mqttv311", "mqttv5"] {
        let b = format!("{base}/{version}");
        for (t, m, q) in [
            ("", "root", "0"),
            ("/a", "a", "1"),
            ("/a/b", "ab", "2"),
            ("/c", "c", "1"),
        ] {
            publish(
                port,
                version,
                &["-t", &format!("{b}{t}"), "-m", m, "-r", "-q", q],
            );
        }
        // Replaced, then cleared.
        publish(
            port,
            version,
            &["-t", &format!("{b}/c"), "-m", "c2", "-r", "-q", "0"],
        );
        publish(
            port,
            version,
            &["-t", &format!("{b}/a"), "-n", "-r", "-q", "1"],
        );
        for (filter, count) in [
            (format!("{b}/#"), "3"),
            (format!("{b}/+"), "1"),
            (format!("{b}/+/b"), "1"),
        ] {
            let sub = Sub::start_raw(
                port,
                version,
                &["-t", &filter, "-q", "2", "-C", count, "-F", "%r %q %t %p"],
                false,
            );
            let (ok, mut lines) = sub.finish();
            lines.sort();
            out.push(format!("{version} {filter} exit-ok={ok}"));
            out.extend(lines.into_iter().map(|l| l.replace(base, "BASE")));
        }
    }
    out
}

/// QoS 2 subscription receiving QoS 0/1/2 publishes, and QoS 1 / QoS 0 subscriptions.
fn scenario_qos2(port: u16, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("{base}/{version}/q");
        let subs: Vec<(&str, Sub)> = ["2", "1", "0"]
            .into_iter()
            .map(|q| {
                (
                    q,
                    Sub::start(
                        port,
                        version,
                        &["-t", &topic, "-q", q, "-C", "3", "-F", "%q %r %p"],
                    ),
                )
            })
            .collect();
        for q in ["2", "1", "0"] {
            publish(
                port,
                version,
                &["-t", &topic, "-q", q, "-m", &format!("sent-at-{q}")],
            );
        }
        for (q, sub) in subs {
            let (ok, mut lines) = sub.finish();
            // Separate publisher connections: arrival order is not specified (and a QoS 2
            // message reaches mosquitto_sub's output only after its PUBREL).
            lines.sort();
            out.push(format!("{version} sub-qos {q} exit-ok={ok}"));
            out.extend(lines);
        }
    }
    out
}

/// `#` and `+/...` at the root do not get `$SYS` messages; `$SYS/broker/uptime`
/// subscribed directly does.
fn scenario_sys(port: u16, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for version in ["mqttv311", "mqttv5"] {
        let hash = Sub::start(
            port,
            version,
            &["-t", "#", "-t", "+/broker/uptime", "-W", "3", "-v"],
        );
        publish(
            port,
            version,
            &["-t", &format!("{base}/{version}/marker"), "-m", "m"],
        );
        let (_, lines) = hash.finish();
        out.push(format!("{version} root wildcards:"));
        // Other tests' traffic never reaches this broker, but keep only our own and $ topics.
        out.extend(
            lines
                .into_iter()
                .filter(|l| l.starts_with('$') || l.starts_with(base))
                .map(|l| l.replace(base, "BASE")),
        );
        let direct = Sub::start_raw(
            port,
            version,
            &["-t", "$SYS/broker/uptime", "-C", "1", "-W", "5", "-F", "%t"],
            false,
        );
        let (ok, lines) = direct.finish();
        out.push(format!("{version} direct exit-ok={ok}"));
        out.extend(lines);
    }
    out
}

#[test]
fn differential_retained_and_wildcards_match_mosquitto() {
    differential(scenario_retained_wildcards);
}

#[test]
fn differential_qos2_matches_mosquitto() {
    differential(scenario_qos2);
}

#[test]
fn differential_sys_excluded_from_root_wildcards_matches_mosquitto() {
    differential(scenario_sys);
}
