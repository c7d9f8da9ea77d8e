//! MQTT authentication and authorization of `tern`, end to end against the
//! real binary: API keys (`--key`, `[[keys]]`), anonymous access
//! (`--allow-anonymous`, `--anonymous-capability`), `--key-login-plain`,
//! the failed-login limiter, Tern tokens and JWTs as username, password or
//! MQTT 5 enhanced authentication (`tern-token`) with AUTH re-authentication,
//! capabilities and `[[deny]]` rules on PUBLISH / SUBSCRIBE / will / retained
//! messages, client ids bound by tokens, token expiry and the
//! `[mqtt]tokenevents` warning.
//!
//! Exact reason codes are checked over raw TCP with the project's codec
//! (`tern_mqtt_codec` encodes what we send and decodes what the broker sends);
//! third-party clients check the same behaviour from the outside: rumqttc
//! (v4 / v5), Debian's `mosquitto_pub` / `mosquitto_sub`, and paho-mqtt 2.x
//! (`tests/py/auth_paho.py`). JWTs are made by the independent Python signer
//! `crates/tern-auth/tests/py/sign.py`, so the broker is checked against a
//! second implementation of the format.
//!
//! Every read has a deadline, every child process is killed after a timeout.
//! Test names carry the MQTT 5.0 normative statement they check
//! (`mqtt_3_1_4_2` = [MQTT-3.1.4-2]) or section (`mqtt_4_12`); `_v311`
//! twins run the same behaviour over MQTT 3.1.1 (statement numbers in a
//! name ending in `_v311` are MQTT 3.1.1's when they differ).

mod common;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::Tern;
use tern_auth::{ApiKey, Capability, TokenDetails};
use tern_mqtt_codec::{
    self as codec, Auth, ConnAck, Connect, ConnectProperties, Disconnect, LastWill, Limits, Packet,
    ProtocolVersion, PubResp, Publish, QoS, Subscribe, SubscribeFilter, SubscriptionOptions,
    reason,
};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Bound for "the broker answers".
const WAIT: Duration = Duration::from_secs(5);
/// How long we listen to conclude that nothing (more) is coming.
const QUIET: Duration = Duration::from_millis(700);
/// Any child process (python, mosquitto clients, `tern token`) is killed after this.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// A key with every capability, given with `--key`.
const ROOT: &str = "app.root:rootsecret";
const ROOT_NAME: &str = "app.root";
const ROOT_SECRET: &str = "rootsecret";
/// Every operation on every channel.
const ALL: &str = r#"{"*":["*"]}"#;
const HOUR_MS: u64 = 3_600_000;
const TOKEN_EVENTS: &str = "[mqtt]tokenevents";

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

/// A Tern token signed with `key` (`appId.keyId:secret`), issued now.
fn token_details(
    key: &str,
    capability: &str,
    ttl_ms: u64,
    client_id: Option<&str>,
) -> TokenDetails {
    tern_auth::issue_token(
        &ApiKey::parse(key).expect("valid key"),
        ttl_ms,
        &Capability::parse(capability).expect("valid capability"),
        client_id,
        tern_auth::now_ms(),
    )
}

/// A token of the root key with `capability`, valid for an hour.
fn token(capability: &str) -> String {
    token_details(ROOT, capability, HOUR_MS, None).token
}

fn now_s() -> u64 {
    tern_auth::now_ms() / 1000
}

/// A JWT made by the independent Python signer (sign.py).
fn py_jwt(key: &str, capability: &str, iat_s: u64, exp_s: u64, client_id: Option<&str>) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/tern-auth/tests/py/sign.py"
    );
    let (iat, exp) = (iat_s.to_string(), exp_s.to_string());
    let mut args = vec![
        script,
        "jwt",
        "--key",
        key,
        "--iat",
        &iat,
        "--exp",
        &exp,
        "--capability",
        capability,
    ];
    if let Some(id) = client_id {
        args.extend(["--client-id", id]);
    }
    let out = run_child(Command::new("python3").args(&args), CHILD_TIMEOUT);
    assert!(out.ok(), "sign.py {args:?} failed: {out:?}");
    let jwt = out.stdout.trim().to_owned();
    assert_eq!(jwt.matches('.').count(), 2, "sign.py printed {jwt:?}");
    jwt
}

/// Runs `tern token ARGS`; returns its stdout.
fn tern_token_cli(args: &[&str]) -> String {
    let out = run_child(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("token")
            .args(args),
        CHILD_TIMEOUT,
    );
    assert!(out.ok(), "tern token {args:?} failed: {out:?}");
    out.stdout.trim().to_owned()
}

// ---------------------------------------------------------------------------
// Child processes and config files
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct ChildOutput {
    /// None when the process was killed at the timeout.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl ChildOutput {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// Runs `cmd` to completion, killing it (by its own `Child`) after `timeout`.
fn run_child(cmd: &mut Command, timeout: Duration) -> ChildOutput {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
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
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ChildOutput {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// A TOML config file in its own temporary directory, removed on drop.
struct ConfigFile {
    dir: PathBuf,
    path: String,
}

impl ConfigFile {
    fn new(toml: &str) -> ConfigFile {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tern-auth-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join("tern.toml");
        std::fs::write(&path, toml).expect("write config");
        ConfigFile {
            path: path.to_str().expect("UTF-8 temp path").to_owned(),
            dir,
        }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts tern with `toml` as its `--config` file and `extra` flags.
fn start_with_config(toml: &str, extra: &[&str]) -> (Tern, ConfigFile) {
    let cfg = ConfigFile::new(toml);
    let mut flags = vec!["--config", cfg.path.as_str()];
    flags.extend_from_slice(extra);
    (Tern::start(&flags), cfg)
}

// ---------------------------------------------------------------------------
// A raw MQTT client over std TcpStream, packets through the project's codec
// ---------------------------------------------------------------------------

/// A CONNECT under construction.
#[derive(Clone)]
struct Login(Connect);

fn login(v: ProtocolVersion, client_id: &str) -> Login {
    Login(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 60,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    })
}

impl Login {
    fn user(mut self, u: &str) -> Login {
        self.0.username = Some(u.to_owned());
        self
    }
    fn pass(mut self, p: &str) -> Login {
        self.0.password = Some(Bytes::copy_from_slice(p.as_bytes()));
        self
    }
    /// username = key name, password = secret.
    fn key(self, name: &str, secret: &str) -> Login {
        self.user(name).pass(secret)
    }
    /// username = token, password absent.
    fn token(self, t: &str) -> Login {
        self.user(t)
    }
    /// v5 enhanced authentication.
    fn method(mut self, method: &str, data: &str) -> Login {
        self.0.properties.authentication_method = Some(method.to_owned());
        self.0.properties.authentication_data = Some(Bytes::copy_from_slice(data.as_bytes()));
        self
    }
    fn will(mut self, topic: &str) -> Login {
        self.0.will = Some(LastWill {
            topic: topic.to_owned(),
            payload: Bytes::from_static(b"gone"),
            ..LastWill::default()
        });
        self
    }
    /// Clean start 0 (v5: with a session expiry of an hour).
    fn persistent(mut self) -> Login {
        self.0.clean_start = false;
        if self.0.protocol.is_v5() {
            self.0.properties.session_expiry_interval = Some(3600);
        }
        self
    }
}

/// `v5` on MQTT 5.0, `v3` on 3.1.1.
fn by_version(v: ProtocolVersion, v5: u8, v3: u8) -> u8 {
    if v.is_v5() { v5 } else { v3 }
}

/// SUBACK code of a subscription refused for authorization.
fn sub_refused(v: ProtocolVersion) -> u8 {
    by_version(v, reason::NOT_AUTHORIZED, 0x80)
}

struct Raw {
    s: TcpStream,
    v: ProtocolVersion,
    buf: BytesMut,
    /// Packets read while waiting for another kind.
    pending: VecDeque<Packet>,
    next_pid: u16,
    closed: bool,
    name: String,
}

impl Raw {
    fn open(t: &Tern, v: ProtocolVersion, name: &str) -> Raw {
        let s = TcpStream::connect_timeout(&t.mqtt, WAIT).expect("TCP connect to tern");
        s.set_nodelay(true).ok();
        s.set_write_timeout(Some(WAIT)).expect("write timeout");
        Raw {
            s,
            v,
            buf: BytesMut::new(),
            pending: VecDeque::new(),
            next_pid: 0,
            closed: false,
            name: name.to_owned(),
        }
    }

    fn send(&mut self, p: &Packet) {
        let mut b = BytesMut::new();
        codec::encode(p, self.v, &mut b).expect("encode");
        self.s
            .write_all(&b)
            .unwrap_or_else(|e| panic!("{}: write {}: {e}", self.name, p.name()));
    }

    /// The next packet off the wire before `until`: `Ok(None)` when the
    /// broker closed the connection, `Err(())` on timeout.
    fn read_packet(&mut self, until: Instant) -> Result<Option<Packet>, ()> {
        loop {
            let limits = Limits::default();
            match codec::decode(&mut self.buf, self.v, &limits) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => panic!("{}: the broker sent a malformed packet: {e}", self.name),
            }
            if self.closed {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= until {
                return Err(());
            }
            self.s
                .set_read_timeout(Some(until - now))
                .expect("read timeout");
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A reset is the broker closing too.
                Err(_) => self.closed = true,
            }
        }
    }

    /// The next packet (buffered ones first), or None when the broker closed
    /// the connection; panics after `d`.
    fn next(&mut self, d: Duration) -> Option<Packet> {
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        match self.read_packet(Instant::now() + d) {
            Ok(p) => p,
            Err(()) => panic!("{}: nothing from the broker within {d:?}", self.name),
        }
    }

    /// The next packet matching `f` within `d`; others are kept for later.
    fn expect_within(&mut self, what: &str, d: Duration, f: impl Fn(&Packet) -> bool) -> Packet {
        if let Some(i) = self.pending.iter().position(&f) {
            return self.pending.remove(i).unwrap_or_else(|| unreachable!());
        }
        let until = Instant::now() + d;
        loop {
            match self.read_packet(until) {
                Ok(Some(p)) if f(&p) => return p,
                Ok(Some(p)) => self.pending.push_back(p),
                Ok(None) => panic!(
                    "{}: connection closed while waiting for {what}; received before: {:?}",
                    self.name, self.pending
                ),
                Err(()) => panic!(
                    "{}: no {what} within {d:?}; received meanwhile: {:?}",
                    self.name, self.pending
                ),
            }
        }
    }

    fn expect(&mut self, what: &str, f: impl Fn(&Packet) -> bool) -> Packet {
        self.expect_within(what, WAIT, f)
    }

    /// Waits (up to `d`) for the broker to close the connection; returns
    /// every packet it sent before closing.
    fn expect_closed(&mut self, d: Duration) -> Vec<Packet> {
        let mut got: Vec<Packet> = self.pending.drain(..).collect();
        let until = Instant::now() + d;
        loop {
            match self.read_packet(until) {
                Ok(Some(p)) => got.push(p),
                Ok(None) => return got,
                Err(()) => panic!(
                    "{}: the broker did not close the connection within {d:?}; received: {got:?}",
                    self.name
                ),
            }
        }
    }

    /// Asserts the broker neither sends a PUBLISH nor closes for `d`.
    fn no_publish(&mut self, d: Duration) {
        if let Some(p) = self
            .pending
            .iter()
            .find(|p| matches!(p, Packet::Publish(_)))
        {
            panic!("{}: unexpected PUBLISH {p:?}", self.name);
        }
        let until = Instant::now() + d;
        loop {
            match self.read_packet(until) {
                Ok(Some(Packet::Publish(p))) => panic!("{}: unexpected PUBLISH {p:?}", self.name),
                Ok(Some(p)) => self.pending.push_back(p),
                Ok(None) => panic!("{}: connection closed unexpectedly", self.name),
                Err(()) => return,
            }
        }
    }

    /// PINGREQ answered by PINGRESP: the connection is alive.
    fn ping(&mut self) {
        self.send(&Packet::PingReq);
        self.expect("PINGRESP", |p| matches!(p, Packet::PingResp));
    }

    fn pid(&mut self) -> u16 {
        self.next_pid = self.next_pid % 65_000 + 1;
        self.next_pid
    }

    /// SUBSCRIBE one packet with every filter at `qos`; returns the SUBACK codes.
    fn subscribe(&mut self, filters: &[&str], qos: QoS) -> Vec<u8> {
        let pid = self.pid();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: pid,
            filters: filters
                .iter()
                .map(|f| SubscribeFilter {
                    filter: (*f).to_owned(),
                    options: SubscriptionOptions {
                        qos,
                        ..SubscriptionOptions::default()
                    },
                })
                .collect(),
            ..Subscribe::default()
        }));
        match self.expect(
            "SUBACK",
            |p| matches!(p, Packet::SubAck(a) if a.packet_id == pid),
        ) {
            Packet::SubAck(a) => a.reason_codes,
            _ => unreachable!(),
        }
    }

    /// Subscribes to one filter and asserts it is granted at `qos`.
    fn subscribe_ok(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe(&[filter], qos);
        assert_eq!(
            codes,
            vec![qos as u8],
            "{}: SUBACK for {filter:?}",
            self.name
        );
    }

    /// PUBLISH; for QoS 1 returns the PUBACK code, for QoS 2 the PUBREC code
    /// (completing PUBREL / PUBCOMP when it is a success), for QoS 0 None.
    fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Option<u8> {
        let pid = (qos != QoS::AtMostOnce).then(|| self.pid());
        self.send(&Packet::Publish(Publish {
            qos,
            retain,
            topic: topic.to_owned(),
            packet_id: pid,
            payload: Bytes::copy_from_slice(payload),
            ..Publish::default()
        }));
        let pid = pid?;
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => {
                match self.expect(
                    "PUBACK",
                    |p| matches!(p, Packet::PubAck(r) if r.packet_id == pid),
                ) {
                    Packet::PubAck(r) => Some(r.reason_code),
                    _ => unreachable!(),
                }
            }
            QoS::ExactlyOnce => {
                let Packet::PubRec(r) = self.expect(
                    "PUBREC",
                    |p| matches!(p, Packet::PubRec(r) if r.packet_id == pid),
                ) else {
                    unreachable!()
                };
                if r.reason_code < 0x80 {
                    self.send(&Packet::PubRel(PubResp {
                        packet_id: pid,
                        ..PubResp::default()
                    }));
                    let Packet::PubComp(c) = self.expect(
                        "PUBCOMP",
                        |p| matches!(p, Packet::PubComp(r) if r.packet_id == pid),
                    ) else {
                        unreachable!()
                    };
                    assert_eq!(c.reason_code, 0, "{}: PUBCOMP for {topic:?}", self.name);
                }
                Some(r.reason_code)
            }
        }
    }

    /// The next PUBLISH (QoS 1 is acknowledged).
    fn expect_publish(&mut self) -> Publish {
        self.expect_publish_within(WAIT)
    }

    fn expect_publish_within(&mut self, d: Duration) -> Publish {
        let Packet::Publish(p) =
            self.expect_within("PUBLISH", d, |p| matches!(p, Packet::Publish(_)))
        else {
            unreachable!()
        };
        if p.qos == QoS::AtLeastOnce {
            self.send(&Packet::PubAck(PubResp {
                packet_id: p.packet_id.unwrap_or(0),
                ..PubResp::default()
            }));
        }
        p
    }

    /// Sends an AUTH packet.
    fn auth(&mut self, reason_code: u8, method: Option<&str>, data: Option<&str>) {
        self.send(&Packet::Auth(Auth {
            reason_code,
            authentication_method: method.map(str::to_owned),
            authentication_data: data.map(|d| Bytes::copy_from_slice(d.as_bytes())),
            ..Auth::default()
        }));
    }

    /// A normal DISCONNECT.
    fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default()));
    }
}

/// Connects and reads the CONNACK.
fn connect(t: &Tern, l: Login, name: &str) -> (Raw, ConnAck) {
    let mut r = Raw::open(t, l.0.protocol, name);
    r.send(&Packet::Connect(Box::new(l.0)));
    match r.next(WAIT) {
        Some(Packet::ConnAck(a)) => (r, a),
        Some(p) => panic!("{name}: expected CONNACK, got {p:?}"),
        None => panic!("{name}: connection closed without CONNACK"),
    }
}

/// Connects; the CONNACK must be a success.
fn accepted(t: &Tern, l: Login, name: &str) -> (Raw, ConnAck) {
    let (r, a) = connect(t, l, name);
    assert_eq!(
        a.reason_code, 0,
        "{name}: CONNACK refused: {:#04x} {:?}",
        a.reason_code, a.properties.reason_string
    );
    (r, a)
}

/// Connects; the CONNACK must refuse with `code`, then the broker must close
/// the connection ([MQTT-3.2.2-7] v5, [MQTT-3.2.2-5] 3.1.1).
fn refused(t: &Tern, l: Login, code: u8, name: &str) -> ConnAck {
    let (mut r, a) = connect(t, l, name);
    assert_eq!(
        a.reason_code, code,
        "{name}: CONNACK code {:#04x} (reason string {:?}), expected {code:#04x}",
        a.reason_code, a.properties.reason_string
    );
    assert!(
        !a.session_present,
        "{name}: refused CONNACK with session present"
    );
    let after = r.expect_closed(WAIT);
    assert!(
        after.is_empty(),
        "{name}: packets after a refusing CONNACK: {after:?}"
    );
    a
}

/// A client with the root key (every capability) subscribed to `filter` at QoS 1.
fn watcher(t: &Tern, filter: &str) -> Raw {
    let (mut w, _) = accepted(
        t,
        login(V5, "watcher").key(ROOT_NAME, ROOT_SECRET),
        "watcher",
    );
    w.subscribe_ok(filter, QoS::AtLeastOnce);
    w
}

fn tern_with_root(extra: &[&str]) -> Tern {
    let mut flags = vec!["--key", ROOT];
    flags.extend_from_slice(extra);
    Tern::start(&flags)
}

/// Two tests, one per version, from one `fn(ProtocolVersion)`.
macro_rules! both_versions {
    ($(#[$m:meta])* $v5:ident, $v3:ident, $f:ident) => {
        $(#[$m])*
        #[test]
        fn $v5() {
            $f(V5)
        }
        $(#[$m])*
        #[test]
        fn $v3() {
            $f(V3)
        }
    };
}

// ---------------------------------------------------------------------------
// Keys, anonymous clients
// ---------------------------------------------------------------------------

fn key_login(v: ProtocolVersion) {
    // --key is repeatable.
    let t = tern_with_root(&["--key", "app.second:secondsecret"]);
    accepted(
        &t,
        login(v, "k2").key("app.second", "secondsecret"),
        "second key",
    )
    .0
    .disconnect();
    let (mut c, _) = accepted(&t, login(v, "k1").key(ROOT_NAME, ROOT_SECRET), "key client");
    c.subscribe_ok("a/b", QoS::AtLeastOnce);
    assert_eq!(c.publish("a/b", b"hi", QoS::AtLeastOnce, false), Some(0));
    let p = c.expect_publish();
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("a/b", &b"hi"[..]));
}
both_versions!(
    /// `--key appId.keyId:secret` (repeatable): username = key name, password = secret logs in with every capability.
    key_name_and_secret_log_in_with_all_capabilities_v5,
    key_name_and_secret_log_in_with_all_capabilities_v311,
    key_login
);

fn wrong_secret(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let code = by_version(v, reason::BAD_USER_NAME_OR_PASSWORD, 4);
    refused(
        &t,
        login(v, "k1").key(ROOT_NAME, "not-the-secret"),
        code,
        "wrong secret",
    );
    refused(
        &t,
        login(v, "k2").key("app.nokey", ROOT_SECRET),
        code,
        "unknown key",
    );
}
both_versions!(
    /// A wrong secret or an unknown key name: CONNACK 0x86 / 4, then close.
    mqtt_3_1_4_2_wrong_secret_or_unknown_key_refused_bad_user_name_or_password_v5,
    mqtt_3_1_4_2_wrong_secret_or_unknown_key_refused_bad_user_name_or_password_v311,
    wrong_secret
);

fn anonymous_refused(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let code = by_version(v, reason::NOT_AUTHORIZED, 5);
    refused(&t, login(v, "anon"), code, "anonymous");
}
both_versions!(
    /// Once a key exists, a CONNECT without credentials is refused: 0x87 / 5.
    mqtt_3_1_4_2_anonymous_refused_not_authorized_once_a_key_exists_v5,
    mqtt_3_1_4_2_anonymous_refused_not_authorized_once_a_key_exists_v311,
    anonymous_refused
);

fn allow_anonymous(v: ProtocolVersion) {
    let t = tern_with_root(&["--allow-anonymous=true"]);
    let (mut c, _) = accepted(&t, login(v, "anon"), "anonymous");
    c.subscribe_ok("any/#", QoS::AtLeastOnce);
    assert_eq!(c.publish("any/x", b"1", QoS::AtLeastOnce, false), Some(0));
    c.expect_publish();
    // Keys still work beside anonymous access.
    accepted(&t, login(v, "k").key(ROOT_NAME, ROOT_SECRET), "key client");
}
both_versions!(
    /// `--allow-anonymous` with a key configured: anonymous clients connect (with every capability by default).
    allow_anonymous_accepts_anonymous_clients_beside_keys_v5,
    allow_anonymous_accepts_anonymous_clients_beside_keys_v311,
    allow_anonymous
);

fn anonymous_capability(v: ProtocolVersion) {
    let t = tern_with_root(&[
        "--allow-anonymous=true",
        "--anonymous-capability",
        r#"{"public/#":["publish","subscribe"]}"#,
    ]);
    let mut w = watcher(&t, "private/#");
    let (mut c, _) = accepted(&t, login(v, "anon"), "anonymous");
    assert_eq!(
        c.subscribe(&["public/#", "private/#", "#"], QoS::AtLeastOnce),
        vec![1, sub_refused(v), sub_refused(v)],
        "SUBACK codes for public/#, private/#, #"
    );
    assert_eq!(
        c.publish("private/x", b"no", QoS::AtLeastOnce, false),
        Some(by_version(v, reason::NOT_AUTHORIZED, 0)),
        "PUBACK for a publish outside the anonymous capability"
    );
    w.no_publish(QUIET);
    assert_eq!(
        c.publish("public/x", b"yes", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(&c.expect_publish().payload[..], b"yes");
    // A key login is not limited by the anonymous capability.
    let (mut k, _) = accepted(&t, login(v, "k").key(ROOT_NAME, ROOT_SECRET), "key client");
    assert_eq!(
        k.publish("private/x", b"key", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(&w.expect_publish().payload[..], b"key");
}
both_versions!(
    /// `--anonymous-capability` limits what anonymous clients may publish and subscribe; keys are not limited by it.
    anonymous_capability_limits_anonymous_clients_v5,
    anonymous_capability_limits_anonymous_clients_v311,
    anonymous_capability
);

const DEV_KEY_TOML: &str = r#"
[[keys]]
key = "app.dev:devsecret"
capability = '{"sensors/+/temp":["publish","subscribe"]}'
"#;

fn config_key_capability(v: ProtocolVersion) {
    let (t, _cfg) = start_with_config(DEV_KEY_TOML, &["--key", ROOT]);
    let mut w = watcher(&t, "sensors/#");
    let (mut c, _) = accepted(&t, login(v, "dev").key("app.dev", "devsecret"), "dev key");
    assert_eq!(
        c.publish("sensors/1/humidity", b"no", QoS::AtLeastOnce, false),
        Some(by_version(v, reason::NOT_AUTHORIZED, 0))
    );
    assert_eq!(
        c.publish("sensors/1/temp", b"yes", QoS::AtLeastOnce, false),
        Some(0)
    );
    let p = w.expect_publish();
    assert_eq!(
        p.topic, "sensors/1/temp",
        "the refused publish must not be delivered"
    );
    w.no_publish(QUIET);
    assert_eq!(
        c.subscribe(&["sensors/#", "sensors/+/temp"], QoS::AtMostOnce),
        vec![sub_refused(v), 0]
    );
    // A token the dev key signed claiming everything still gets only the key's capability.
    let tok = token_details("app.dev:devsecret", ALL, HOUR_MS, None).token;
    let (mut c2, _) = accepted(&t, login(v, "dev-token").token(&tok), "dev token");
    assert_eq!(
        c2.publish("sensors/2/humidity", b"no", QoS::AtLeastOnce, false),
        Some(by_version(v, reason::NOT_AUTHORIZED, 0))
    );
    assert_eq!(c2.subscribe(&["#"], QoS::AtMostOnce), vec![sub_refused(v)]);
    w.no_publish(QUIET);
}
both_versions!(
    /// `[[keys]]` in the --config file: the key logs in with its configured capability, and tokens it signs are held to it.
    config_file_key_is_limited_to_its_capability_and_so_are_its_tokens_v5,
    config_file_key_is_limited_to_its_capability_and_so_are_its_tokens_v311,
    config_key_capability
);

// ---------------------------------------------------------------------------
// Credential forms
// ---------------------------------------------------------------------------

fn token_username(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let tok = token(r#"{"ok/#":["publish","subscribe"]}"#);
    // Password absent.
    let (mut c, _) = accepted(&t, login(v, "t1").token(&tok), "token, no password");
    c.subscribe_ok("ok/#", QoS::AtLeastOnce);
    assert_eq!(c.publish("ok/1", b"a", QoS::AtLeastOnce, false), Some(0));
    c.expect_publish();
    assert_eq!(
        c.subscribe(&["nope/#"], QoS::AtMostOnce),
        vec![sub_refused(v)]
    );
    // Password present but empty.
    let (mut c2, _) = accepted(
        &t,
        login(v, "t2").token(&tok).pass(""),
        "token, empty password",
    );
    c2.ping();
}
both_versions!(
    /// username = Tern token, password empty or absent: logs in with the token's capability.
    token_as_username_with_empty_or_absent_password_logs_in_v5,
    token_as_username_with_empty_or_absent_password_logs_in_v311,
    token_username
);

#[test]
fn token_as_v5_password_without_username_logs_in() {
    let t = tern_with_root(&[]);
    let tok = token(r#"{"ok/#":["publish","subscribe"]}"#);
    let (mut c, _) = accepted(&t, login(V5, "p1").pass(&tok), "token as password");
    c.subscribe_ok("ok/#", QoS::AtMostOnce);
    assert_eq!(
        c.subscribe(&["nope/#"], QoS::AtMostOnce),
        vec![reason::NOT_AUTHORIZED]
    );
    refused(
        &t,
        login(V5, "p2").pass("not.a-token"),
        reason::BAD_USER_NAME_OR_PASSWORD,
        "bad token as password",
    );
}

#[test]
fn mqtt_4_12_enhanced_auth_tern_token_connack_carries_method() {
    let t = tern_with_root(&[]);
    let tok = token(r#"{"ok/#":["publish","subscribe"]}"#);
    let (mut c, a) = accepted(
        &t,
        login(V5, "e1").method("tern-token", &tok),
        "enhanced auth",
    );
    assert_eq!(
        a.properties.authentication_method.as_deref(),
        Some("tern-token"),
        "CONNACK Authentication Method"
    );
    c.subscribe_ok("ok/#", QoS::AtMostOnce);
    assert_eq!(
        c.subscribe(&["nope/#"], QoS::AtMostOnce),
        vec![reason::NOT_AUTHORIZED]
    );
}

#[test]
fn mqtt_4_12_0_6_no_authentication_method_in_connack_without_enhanced_auth() {
    let t = tern_with_root(&[]);
    let (_c, a) = accepted(&t, login(V5, "n1").token(&token(ALL)), "token username");
    assert_eq!(a.properties.authentication_method, None);
    assert_eq!(a.properties.authentication_data, None);
}

#[test]
fn mqtt_4_12_0_1_unknown_authentication_method_refused_bad_authentication_method() {
    let t = tern_with_root(&[]);
    refused(
        &t,
        login(V5, "m1").method("SCRAM-SHA-1", "whatever"),
        reason::BAD_AUTHENTICATION_METHOD,
        "unknown method",
    );
}

#[test]
fn mqtt_4_12_enhanced_auth_with_bad_token_refused_bad_user_name_or_password() {
    let t = tern_with_root(&[]);
    refused(
        &t,
        login(V5, "m1").method("tern-token", "garbage"),
        reason::BAD_USER_NAME_OR_PASSWORD,
        "enhanced auth, bad token",
    );
    let expired = tern_auth::issue_token(
        &ApiKey::parse(ROOT).unwrap(),
        1000,
        &Capability::all(),
        None,
        tern_auth::now_ms() - 60_000,
    );
    refused(
        &t,
        login(V5, "m2").method("tern-token", &expired.token),
        reason::BAD_USER_NAME_OR_PASSWORD,
        "enhanced auth, expired token",
    );
}

fn bad_tokens(v: ProtocolVersion) {
    let t = tern_with_root(&["--login-failures-max", "1000"]);
    let code = by_version(v, reason::BAD_USER_NAME_OR_PASSWORD, 4);
    let good = token(ALL);
    // Tampered: one character of the tag changed.
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expired = tern_auth::issue_token(
        &ApiKey::parse(ROOT).unwrap(),
        1000,
        &Capability::all(),
        None,
        tern_auth::now_ms() - 60_000,
    )
    .token;
    let other_key = token_details("app.other:othersecret", ALL, HOUR_MS, None).token;
    let wrong_secret = token_details("app.root:notthesecret", ALL, HOUR_MS, None).token;
    let now = now_s();
    let jwt_wrong_secret = py_jwt("app.root:notthesecret", ALL, now, now + 3600, None);
    let jwt_expired = py_jwt(ROOT, ALL, now - 7200, now - 3600, None);
    let jwt_other_key = py_jwt("app.other:othersecret", ALL, now, now + 3600, None);
    for (what, tok) in [
        ("garbage", "garbage"),
        ("tampered token", tampered.as_str()),
        ("expired token", expired.as_str()),
        ("token of an unknown key", other_key.as_str()),
        ("token signed with the wrong secret", wrong_secret.as_str()),
        (
            "JWT signed with the wrong secret",
            jwt_wrong_secret.as_str(),
        ),
        ("expired JWT", jwt_expired.as_str()),
        ("JWT of an unknown key", jwt_other_key.as_str()),
    ] {
        refused(&t, login(v, "bad").token(tok), code, what);
    }
    accepted(&t, login(v, "good").token(&good), "good token");
}
both_versions!(
    /// Tokens and JWTs that do not verify (garbage, tampered, expired, unknown key, wrong secret): 0x86 / 4.
    mqtt_3_1_4_2_bad_tokens_and_jwts_refused_bad_user_name_or_password_v5,
    mqtt_3_1_4_2_bad_tokens_and_jwts_refused_bad_user_name_or_password_v311,
    bad_tokens
);

fn key_login_plain_false(v: ProtocolVersion) {
    let t = tern_with_root(&["--key-login-plain=false"]);
    refused(
        &t,
        login(v, "k").key(ROOT_NAME, ROOT_SECRET),
        by_version(v, reason::NOT_AUTHORIZED, 5),
        "key name + secret over plain TCP",
    );
    let tok = token(ALL);
    let (mut c, _) = accepted(&t, login(v, "t").token(&tok), "token username");
    c.ping();
    if v.is_v5() {
        accepted(&t, login(v, "tp").pass(&tok), "token password");
        accepted(
            &t,
            login(v, "te").method("tern-token", &tok),
            "enhanced auth",
        );
    }
}
both_versions!(
    /// `--key-login-plain false`: key name + secret over plain TCP refused (0x87 / 5); tokens still log in.
    key_login_plain_false_refuses_key_secret_over_tcp_but_tokens_work_v5,
    key_login_plain_false_refuses_key_secret_over_tcp_but_tokens_work_v311,
    key_login_plain_false
);

fn login_failures_max(v: ProtocolVersion) {
    let t = tern_with_root(&["--login-failures-max", "3"]);
    let bad = by_version(v, reason::BAD_USER_NAME_OR_PASSWORD, 4);
    let limited = by_version(v, reason::CONNECTION_RATE_EXCEEDED, 3);
    refused(&t, login(v, "b1").key(ROOT_NAME, "wrong"), bad, "failure 1");
    refused(&t, login(v, "b2").token("garbage"), bad, "failure 2");
    // Below the limit, good credentials still log in.
    accepted(
        &t,
        login(v, "g1").key(ROOT_NAME, ROOT_SECRET),
        "good before the limit",
    )
    .0
    .disconnect();
    refused(&t, login(v, "b3").key(ROOT_NAME, "wrong"), bad, "failure 3");
    // At the limit, even good credentials are refused.
    refused(
        &t,
        login(v, "g2").key(ROOT_NAME, ROOT_SECRET),
        limited,
        "good key after the limit",
    );
    refused(
        &t,
        login(v, "g3").token(&token(ALL)),
        limited,
        "good token after the limit",
    );
}
both_versions!(
    /// `--login-failures-max N`: after N bad logins from an address, its CONNECTs get 0x9F / 3 even with good credentials.
    login_failures_max_blocks_the_address_connection_rate_exceeded_v5,
    login_failures_max_blocks_the_address_connection_rate_exceeded_v311,
    login_failures_max
);

#[test]
fn refusals_other_than_bad_credentials_do_not_count_as_failed_logins() {
    let t = tern_with_root(&["--login-failures-max", "2"]);
    for i in 0..4 {
        refused(
            &t,
            login(V5, &format!("a{i}")),
            reason::NOT_AUTHORIZED,
            "anonymous",
        );
    }
    accepted(&t, login(V5, "g").key(ROOT_NAME, ROOT_SECRET), "good key");
}

// ---------------------------------------------------------------------------
// `tern token` and JWTs
// ---------------------------------------------------------------------------

#[test]
fn tern_token_cli_prints_a_token_that_logs_in_with_its_capability() {
    let t = tern_with_root(&[]);
    let tok = tern_token_cli(&[
        "--key",
        ROOT,
        "--capability",
        r#"{"ok/#":["publish","subscribe"]}"#,
        "--ttl",
        "1h",
    ]);
    for v in [V5, V3] {
        let (mut c, _) = accepted(&t, login(v, "cli").token(&tok), "tern token");
        assert_eq!(
            c.subscribe(&["ok/#", "bad/#"], QoS::AtMostOnce),
            vec![0, sub_refused(v)]
        );
        assert_eq!(
            c.publish("bad/1", b"x", QoS::AtLeastOnce, false),
            Some(by_version(v, reason::NOT_AUTHORIZED, 0))
        );
        c.disconnect();
    }
}

#[test]
fn tern_token_cli_json_with_client_id_binds_the_token() {
    let t = tern_with_root(&[]);
    let out = tern_token_cli(&[
        "--key",
        ROOT,
        "--ttl",
        "1h",
        "--client-id",
        "dev-7",
        "--json",
    ]);
    let details: serde_json::Value =
        serde_json::from_str(&out).expect("tern token --json prints JSON");
    let tok = details["token"].as_str().expect("token field").to_owned();
    assert_eq!(details["clientId"], "dev-7", "{details}");
    let (issued, expires) = (
        details["issued"].as_u64().expect("issued"),
        details["expires"].as_u64().expect("expires"),
    );
    assert_eq!(expires - issued, HOUR_MS, "{details}");
    refused(
        &t,
        login(V3, "dev-8").token(&tok),
        2,
        "client id differing from the bound one (3.1.1)",
    );
    accepted(&t, login(V3, "dev-7").token(&tok), "bound client id");
}

fn jwt_username(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let now = now_s();
    let jwt = py_jwt(
        ROOT,
        r#"{"ok/#":["publish","subscribe"]}"#,
        now,
        now + 3600,
        None,
    );
    let mut w = watcher(&t, "#");
    let (mut c, _) = accepted(&t, login(v, "jwt").token(&jwt), "JWT username");
    assert_eq!(
        c.subscribe(&["ok/#", "bad/#"], QoS::AtLeastOnce),
        vec![1, sub_refused(v)]
    );
    assert_eq!(
        c.publish("bad/1", b"no", QoS::AtLeastOnce, false),
        Some(by_version(v, reason::NOT_AUTHORIZED, 0))
    );
    assert_eq!(c.publish("ok/1", b"yes", QoS::AtLeastOnce, false), Some(0));
    assert_eq!(w.expect_publish().topic, "ok/1");
    w.no_publish(QUIET);
    assert_eq!(c.expect_publish().topic, "ok/1");
}
both_versions!(
    /// A JWT from the independent Python signer as username logs in, with its x-ably-capability enforced.
    jwt_from_python_signer_as_username_logs_in_with_its_capability_v5,
    jwt_from_python_signer_as_username_logs_in_with_its_capability_v311,
    jwt_username
);

#[test]
fn jwt_from_python_signer_as_v5_password_and_enhanced_auth() {
    let t = tern_with_root(&[]);
    let now = now_s();
    let jwt = py_jwt(ROOT, r#"{"ok/#":["subscribe"]}"#, now, now + 3600, None);
    let (mut c, _) = accepted(&t, login(V5, "jp").pass(&jwt), "JWT password");
    assert_eq!(
        c.subscribe(&["ok/#", "x"], QoS::AtMostOnce),
        vec![0, reason::NOT_AUTHORIZED]
    );
    let (mut c, a) = accepted(
        &t,
        login(V5, "je").method("tern-token", &jwt),
        "JWT enhanced",
    );
    assert_eq!(
        a.properties.authentication_method.as_deref(),
        Some("tern-token")
    );
    assert_eq!(
        c.subscribe(&["ok/#", "x"], QoS::AtMostOnce),
        vec![0, reason::NOT_AUTHORIZED]
    );
}

fn jwt_client_id(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let now = now_s();
    let jwt = py_jwt(ROOT, ALL, now, now + 3600, Some("jwt-dev"));
    refused(
        &t,
        login(v, "someone-else").token(&jwt),
        by_version(v, reason::CLIENT_IDENTIFIER_NOT_VALID, 2),
        "JWT bound to another client id",
    );
    accepted(&t, login(v, "jwt-dev").token(&jwt), "JWT bound client id")
        .0
        .ping();
}
both_versions!(
    /// A JWT with x-ably-clientId binds the client id like a token: another id gets 0x85 / 2.
    mqtt_3_1_3_8_jwt_client_id_binding_refuses_other_ids_v5,
    mqtt_3_1_3_8_jwt_client_id_binding_refuses_other_ids_v311,
    jwt_client_id
);

// ---------------------------------------------------------------------------
// Capability enforcement
// ---------------------------------------------------------------------------

#[test]
fn mqtt_3_4_2_1_v5_publish_outside_capability_refused_not_authorized_and_not_delivered() {
    let t = tern_with_root(&[]);
    let mut w = watcher(&t, "#");
    let tok = token(r#"{"ok/#":["publish"]}"#);
    let (mut c, _) = accepted(&t, login(V5, "pub").token(&tok), "publisher");
    assert_eq!(
        c.publish("secret/1", b"q1", QoS::AtLeastOnce, false),
        Some(reason::NOT_AUTHORIZED),
        "PUBACK"
    );
    assert_eq!(
        c.publish("secret/2", b"q2", QoS::ExactlyOnce, false),
        Some(reason::NOT_AUTHORIZED),
        "PUBREC"
    );
    // QoS 0: silently dropped, the connection stays.
    c.publish("secret/0", b"q0", QoS::AtMostOnce, false);
    c.ping();
    // An allowed publish afterwards is the first (and only) thing the watcher gets.
    assert_eq!(c.publish("ok/1", b"fine", QoS::AtLeastOnce, false), Some(0));
    let p = w.expect_publish();
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("ok/1", &b"fine"[..]));
    w.no_publish(QUIET);
    // Subscribe is not in the capability either.
    assert_eq!(
        c.subscribe(&["ok/#"], QoS::AtMostOnce),
        vec![reason::NOT_AUTHORIZED]
    );
}

#[test]
fn mqtt_v311_3_3_5_2_publish_outside_capability_acknowledged_and_dropped() {
    let t = tern_with_root(&[]);
    let mut w = watcher(&t, "#");
    let tok = token(r#"{"ok/#":["publish"]}"#);
    let (mut c, _) = accepted(&t, login(V3, "pub").token(&tok), "publisher");
    assert_eq!(
        c.publish("secret/1", b"q1", QoS::AtLeastOnce, false),
        Some(0),
        "PUBACK"
    );
    // QoS 2 runs the whole PUBREC / PUBREL / PUBCOMP exchange.
    assert_eq!(
        c.publish("secret/2", b"q2", QoS::ExactlyOnce, false),
        Some(0),
        "PUBREC"
    );
    c.publish("secret/0", b"q0", QoS::AtMostOnce, false);
    c.ping();
    assert_eq!(c.publish("ok/1", b"fine", QoS::AtLeastOnce, false), Some(0));
    let p = w.expect_publish();
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("ok/1", &b"fine"[..]));
    w.no_publish(QUIET);
}

fn subscribe_coverage(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let tok = token(r#"{"sensors/+/temp":["subscribe"]}"#);
    let (mut c, _) = accepted(&t, login(v, "sub").token(&tok), "subscriber");
    let no = sub_refused(v);
    assert_eq!(
        c.subscribe(
            &[
                "sensors/#",
                "sensors/1/temp",
                "sensors/+/temp",
                "#",
                "sensors/+/+",
                "sensors/1/humidity",
                "$share/g/sensors/+/temp",
            ],
            QoS::AtLeastOnce
        ),
        vec![no, 1, 1, no, no, no, 1],
        "SUBACK codes in filter order"
    );
    // Refused filters deliver nothing; granted ones do.
    let (mut p, _) = accepted(
        &t,
        login(V5, "root-pub").key(ROOT_NAME, ROOT_SECRET),
        "publisher",
    );
    assert_eq!(
        p.publish("sensors/1/humidity", b"h", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(
        p.publish("sensors/1/temp", b"t", QoS::AtLeastOnce, false),
        Some(0)
    );
    let mut topics = Vec::new();
    // sensors/1/temp matches two non-shared subscriptions and a shared one:
    // whatever the overlap policy, only that topic may arrive.
    let first = c.expect_publish();
    topics.push(first.topic.clone());
    let until = Instant::now() + QUIET;
    while let Ok(Some(pk)) = c.read_packet(until) {
        if let Packet::Publish(pb) = pk {
            if pb.qos == QoS::AtLeastOnce {
                c.send(&Packet::PubAck(PubResp {
                    packet_id: pb.packet_id.unwrap_or(0),
                    ..PubResp::default()
                }));
            }
            topics.push(pb.topic);
        }
    }
    assert!(
        topics.iter().all(|t| t == "sensors/1/temp"),
        "a refused subscription delivered: {topics:?}"
    );
}
both_versions!(
    /// SUBSCRIBE outside the capability or wider than it is refused per filter (0x87 / 0x80): `sensors/+/temp` allows `sensors/1/temp`, not `sensors/#`.
    mqtt_3_9_3_subscribe_wider_than_capability_refused_per_filter_v5,
    mqtt_3_9_3_subscribe_wider_than_capability_refused_per_filter_v311,
    subscribe_coverage
);

fn retained_forbidden(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let tok = token(r#"{"ok/#":["publish"]}"#);
    let (mut c, _) = accepted(&t, login(v, "pub").token(&tok), "publisher");
    assert_eq!(
        c.publish("secret/r", b"retained", QoS::AtLeastOnce, true),
        Some(by_version(v, reason::NOT_AUTHORIZED, 0))
    );
    c.publish("secret/r0", b"retained0", QoS::AtMostOnce, true);
    assert_eq!(c.publish("ok/r", b"kept", QoS::AtLeastOnce, true), Some(0));
    // A later subscriber allowed on those topics gets only the allowed retained message.
    let (mut s, _) = accepted(
        &t,
        login(V5, "late").key(ROOT_NAME, ROOT_SECRET),
        "late subscriber",
    );
    s.subscribe_ok("secret/#", QoS::AtLeastOnce);
    s.no_publish(QUIET);
    s.subscribe_ok("ok/#", QoS::AtLeastOnce);
    let p = s.expect_publish();
    assert!(p.retain, "retained flag on {p:?}");
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("ok/r", &b"kept"[..]));
}
both_versions!(
    /// A retained PUBLISH outside the capability is refused and not stored: a later subscriber gets nothing.
    retained_publish_outside_capability_is_not_stored_v5,
    retained_publish_outside_capability_is_not_stored_v311,
    retained_forbidden
);

fn will_forbidden(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let tok = token(r#"{"ok/#":["publish","subscribe"]}"#);
    refused(
        &t,
        login(v, "w1").token(&tok).will("secret/will"),
        by_version(v, reason::NOT_AUTHORIZED, 5),
        "will outside the capability",
    );
    // The same token with an allowed will topic connects, and the will works.
    let mut w = watcher(&t, "ok/#");
    let (c, _) = accepted(
        &t,
        login(v, "w2").token(&tok).will("ok/will"),
        "allowed will",
    );
    drop(c); // network failure: the will is published
    let p = w.expect_publish();
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("ok/will", &b"gone"[..])
    );
}
both_versions!(
    /// A will on a topic the credentials may not publish to: CONNACK 0x87 / 5 (MQTT 5.0 §3.1.4: authorization of the CONNECT).
    mqtt_3_1_4_2_will_topic_outside_capability_refused_not_authorized_v5,
    mqtt_3_1_4_2_will_topic_outside_capability_refused_not_authorized_v311,
    will_forbidden
);

// ---------------------------------------------------------------------------
// Deny rules
// ---------------------------------------------------------------------------

const DENY_TOML: &str = r#"
allow_anonymous = true

[[keys]]
key = "app.root:rootsecret"

[[keys]]
key = "app.other:othersecret"

[[deny]]
who = "anyone"
ops = ["subscribe"]
filter = "admin/#"

[[deny]]
who = "key:app.other"
filter = "restricted/#"

[[deny]]
who = "client:bad-client"
ops = ["publish"]
filter = "sensors/#"

[[deny]]
who = "anonymous"
ops = ["publish"]
filter = "public/#"
"#;

fn deny_anyone(v: ProtocolVersion) {
    let (t, _cfg) = start_with_config(DENY_TOML, &[]);
    let no = sub_refused(v);
    for (what, l) in [
        ("root key", login(v, "r").key(ROOT_NAME, ROOT_SECRET)),
        ("root token", login(v, "rt").token(&token(ALL))),
        ("anonymous", login(v, "an")),
    ] {
        let (mut c, _) = accepted(&t, l, what);
        assert_eq!(
            c.subscribe(
                &[
                    "#",
                    "admin/x",
                    "admin/#",
                    "+/x",
                    "users/#",
                    "$share/g/admin/#"
                ],
                QoS::AtMostOnce
            ),
            vec![no, no, no, no, 0, no],
            "{what}: SUBACK for #, admin/x, admin/#, +/x, users/#, $share/g/admin/#"
        );
        // The rule lists only subscribe: publishing to admin/ is allowed.
        assert_eq!(
            c.publish("admin/x", b"p", QoS::AtLeastOnce, false),
            Some(0),
            "{what}"
        );
        c.disconnect();
    }
}
both_versions!(
    /// `[[deny]] who="anyone" ops=["subscribe"] filter="admin/#"` wins over an all capability: `#` and `admin/x` refused, `users/#` allowed.
    mqtt_3_9_3_deny_rule_wins_over_capability_for_overlapping_subscriptions_v5,
    mqtt_3_9_3_deny_rule_wins_over_capability_for_overlapping_subscriptions_v311,
    deny_anyone
);

fn deny_key(v: ProtocolVersion) {
    let (t, _cfg) = start_with_config(DENY_TOML, &[]);
    let mut w = watcher(&t, "restricted/#");
    let (mut o, _) = accepted(
        &t,
        login(v, "o").key("app.other", "othersecret"),
        "other key",
    );
    // ops defaults to every operation.
    assert_eq!(
        o.subscribe(&["restricted/#", "free/#"], QoS::AtMostOnce),
        vec![sub_refused(v), 0]
    );
    assert_eq!(
        o.publish("restricted/1", b"no", QoS::AtLeastOnce, false),
        Some(by_version(v, reason::NOT_AUTHORIZED, 0))
    );
    // Tokens signed by that key are covered by the rule too.
    let tok = token_details("app.other:othersecret", ALL, HOUR_MS, None).token;
    let (mut ot, _) = accepted(&t, login(v, "ot").token(&tok), "other key's token");
    assert_eq!(
        ot.publish("restricted/2", b"no", QoS::AtLeastOnce, false),
        Some(by_version(v, reason::NOT_AUTHORIZED, 0))
    );
    w.no_publish(QUIET);
    // Another key is not.
    let (mut r, _) = accepted(&t, login(v, "r").key(ROOT_NAME, ROOT_SECRET), "root key");
    assert_eq!(
        r.publish("restricted/3", b"yes", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(w.expect_publish().topic, "restricted/3");
}
both_versions!(
    /// `[[deny]] who="key:NAME"` (ops default ["*"]) refuses that key and its tokens, not other keys.
    deny_rule_for_a_key_covers_the_key_and_its_tokens_only_v5,
    deny_rule_for_a_key_covers_the_key_and_its_tokens_only_v311,
    deny_key
);

fn deny_client_and_anonymous(v: ProtocolVersion) {
    let (t, _cfg) = start_with_config(DENY_TOML, &[]);
    // Not `#`: the admin/# rule refuses every filter overlapping it.
    let mut w = watcher(&t, "sensors/#");
    w.subscribe_ok("public/#", QoS::AtLeastOnce);
    let refused_pub = Some(by_version(v, reason::NOT_AUTHORIZED, 0));
    let (mut b, _) = accepted(
        &t,
        login(v, "bad-client").key(ROOT_NAME, ROOT_SECRET),
        "bad-client",
    );
    assert_eq!(
        b.publish("sensors/1", b"no", QoS::AtLeastOnce, false),
        refused_pub
    );
    b.subscribe_ok("sensors/#", QoS::AtMostOnce);
    let (mut a, _) = accepted(&t, login(v, "anon"), "anonymous");
    assert_eq!(
        a.publish("public/1", b"no", QoS::AtLeastOnce, false),
        refused_pub
    );
    w.no_publish(QUIET);
    let (mut g, _) = accepted(
        &t,
        login(v, "good-client").key(ROOT_NAME, ROOT_SECRET),
        "good-client",
    );
    assert_eq!(
        g.publish("sensors/1", b"yes", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(w.expect_publish().topic, "sensors/1");
    assert_eq!(
        g.publish("public/1", b"yes", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(w.expect_publish().topic, "public/1");
}
both_versions!(
    /// `[[deny]] who="client:ID"` and `who="anonymous"` apply to that client id / to anonymous clients only.
    deny_rules_for_a_client_id_and_for_anonymous_clients_v5,
    deny_rules_for_a_client_id_and_for_anonymous_clients_v311,
    deny_client_and_anonymous
);

// ---------------------------------------------------------------------------
// Client ids bound by tokens
// ---------------------------------------------------------------------------

fn bound_client_id_other(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let tok = token_details(ROOT, ALL, HOUR_MS, Some("dev-x")).token;
    refused(
        &t,
        login(v, "dev-y").token(&tok),
        by_version(v, reason::CLIENT_IDENTIFIER_NOT_VALID, 2),
        "other client id",
    );
    accepted(&t, login(v, "dev-x").token(&tok), "bound client id")
        .0
        .ping();
    // A token bound to "*" allows any client id.
    let any = token_details(ROOT, ALL, HOUR_MS, Some("*")).token;
    accepted(&t, login(v, "whatever").token(&any), "wildcard client id")
        .0
        .ping();
}
both_versions!(
    /// A token bound to client id X: CONNECT with client id Y is refused 0x85 / 2.
    mqtt_3_1_3_8_token_bound_client_id_other_id_refused_client_identifier_not_valid_v5,
    mqtt_3_1_3_8_token_bound_client_id_other_id_refused_client_identifier_not_valid_v311,
    bound_client_id_other
);

#[test]
fn token_bound_client_id_empty_id_connects_as_the_bound_id_v5() {
    let t = tern_with_root(&[]);
    let tok = token_details(ROOT, ALL, HOUR_MS, Some("dev-x")).token;
    // A persistent session, created through the empty client id.
    let (mut c, a) = accepted(&t, login(V5, "").token(&tok).persistent(), "empty id");
    assert!(!a.session_present);
    c.subscribe_ok("bound/t", QoS::AtLeastOnce);
    // Taking over with id X ends the first connection and finds its session.
    let (mut c2, a2) = accepted(
        &t,
        login(V5, "dev-x").key(ROOT_NAME, ROOT_SECRET).persistent(),
        "takeover as dev-x",
    );
    assert!(
        a2.session_present,
        "the empty-id connection did not use the bound id"
    );
    let got = c.expect_closed(WAIT);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == reason::SESSION_TAKEN_OVER),
        "first connection should get DISCONNECT 0x8E, got {got:?}"
    );
    // The subscription made through the empty id is in the session.
    assert_eq!(
        c2.publish("bound/t", b"s", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(c2.expect_publish().topic, "bound/t");
}

#[test]
fn token_bound_client_id_empty_id_connects_as_the_bound_id_v311() {
    let t = tern_with_root(&[]);
    let tok = token_details(ROOT, ALL, HOUR_MS, Some("dev-x")).token;
    let (mut c, _) = accepted(&t, login(V3, "").token(&tok), "empty id");
    c.ping();
    let (mut c2, _) = accepted(
        &t,
        login(V3, "dev-x").key(ROOT_NAME, ROOT_SECRET),
        "takeover as dev-x",
    );
    // [MQTT-3.1.4-2] (3.1.1): the existing client with the same id is disconnected.
    let got = c.expect_closed(WAIT);
    assert!(
        got.is_empty(),
        "3.1.1 takeover sends nothing before closing: {got:?}"
    );
    c2.ping();
}

#[test]
fn mqtt_3_1_3_7_empty_client_id_with_bound_token_connack_returns_assigned_client_identifier() {
    // [MQTT-3.1.3-7]: a server accepting a zero-length ClientID "MUST return
    // the Assigned Client Identifier in the CONNACK packet". With a token
    // bound to dev-x, the id the server uses is dev-x.
    let t = tern_with_root(&[]);
    let tok = token_details(ROOT, ALL, HOUR_MS, Some("dev-x")).token;
    let (_c, a) = accepted(&t, login(V5, "").token(&tok), "empty id");
    assert_eq!(
        a.properties.assigned_client_identifier.as_deref(),
        Some("dev-x"),
        "CONNACK properties: {:?}",
        a.properties
    );
}

#[test]
fn mqtt_v311_3_1_3_8_empty_client_id_with_clean_session_0_refused_even_with_bound_token() {
    // MQTT 3.1.1 [MQTT-3.1.3-8]: "If the Client supplies a zero-byte ClientId
    // with CleanSession set to 0, the Server MUST respond to the CONNECT
    // Packet with a CONNACK return code 0x02 (Identifier rejected) and then
    // close the Network Connection."
    let t = tern_with_root(&[]);
    let tok = token_details(ROOT, ALL, HOUR_MS, Some("dev-x")).token;
    refused(
        &t,
        login(V3, "").token(&tok).persistent(),
        2,
        "empty id, clean session 0",
    );
}

// ---------------------------------------------------------------------------
// Token expiry and [mqtt]tokenevents
// ---------------------------------------------------------------------------

fn token_expiry(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let issued = Instant::now();
    let tok = token_details(ROOT, ALL, 2000, None).token;
    let (mut c, _) = accepted(
        &t,
        login(v, "exp").token(&tok).keep_alive_secs(0),
        "short token",
    );
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(issued.elapsed()));
    c.ping(); // alive before expiry
    let got = c.expect_closed(Duration::from_secs(10));
    let at = issued.elapsed();
    assert!(
        at >= Duration::from_millis(1900),
        "closed {at:?} after issuing a 2 s token"
    );
    if v.is_v5() {
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == reason::MAXIMUM_CONNECT_TIME),
            "expected one DISCONNECT 0xA0 before the close, got {got:?}"
        );
    } else {
        assert!(
            got.is_empty(),
            "3.1.1: nothing is sent before the close, got {got:?}"
        );
    }
}
both_versions!(
    /// At token expiry the connection is closed; v5 first gets DISCONNECT 0xA0 (Maximum connect time).
    mqtt_3_14_2_1_token_expiry_closes_the_connection_maximum_connect_time_v5,
    mqtt_3_14_2_1_token_expiry_closes_the_connection_v311,
    token_expiry
);

#[test]
fn jwt_expiry_closes_the_connection_maximum_connect_time_v5() {
    let t = tern_with_root(&[]);
    let now_ms = tern_auth::now_ms();
    // exp is in whole seconds: expires 1–2 s from now.
    let exp = now_ms / 1000 + 2;
    let jwt = py_jwt(ROOT, ALL, now_ms / 1000, exp, None);
    let (mut c, _) = accepted(
        &t,
        login(V5, "jexp").token(&jwt).keep_alive_secs(0),
        "short JWT",
    );
    let got = c.expect_closed(Duration::from_secs(10));
    assert!(
        tern_auth::now_ms() + 50 >= exp * 1000,
        "closed before the JWT's exp"
    );
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == reason::MAXIMUM_CONNECT_TIME),
        "expected DISCONNECT 0xA0, got {got:?}"
    );
}

impl Login {
    fn keep_alive_secs(mut self, s: u16) -> Login {
        self.0.keep_alive = s;
        self
    }
}

fn token_events(v: ProtocolVersion) {
    let t = tern_with_root(&[]);
    let issued = Instant::now();
    // Expires in 31.5 s: the warning is due 1.5 s from now.
    let d = token_details(ROOT, r#"{"ok/#":["subscribe"]}"#, 31_500, None);
    let (mut c, _) = accepted(&t, login(v, "ev").token(&d.token), "token events");
    // Granted although the capability does not name it.
    assert_eq!(c.subscribe(&[TOKEN_EVENTS], QoS::AtMostOnce), vec![0]);
    let p = c.expect_publish_within(Duration::from_secs(15));
    let at = issued.elapsed();
    assert_eq!(p.topic, TOKEN_EVENTS);
    assert_eq!(&p.payload[..], b"expirywarning");
    assert!(
        at >= Duration::from_millis(1400),
        "warning {at:?} after issue; due 30 s before expiry = 1.5 s after issue"
    );
    if v.is_v5() {
        assert_eq!(
            p.properties.user_properties,
            vec![("expires".to_owned(), d.expires.to_string())],
            "v5 user property expires = expiry ms"
        );
    }
    // One warning only, and the connection stays until expiry.
    c.no_publish(Duration::from_secs(1));
    c.ping();
}
both_versions!(
    /// Subscribed to `[mqtt]tokenevents`: one PUBLISH `expirywarning` 30 s before expiry (v5: user property `expires`).
    token_events_expiry_warning_30s_before_expiry_v5,
    token_events_expiry_warning_30s_before_expiry_v311,
    token_events
);

#[test]
fn token_events_no_warning_without_subscription() {
    let t = tern_with_root(&[]);
    let d = token_details(ROOT, ALL, 31_500, None);
    let (mut c, _) = accepted(&t, login(V5, "ev").token(&d.token), "not subscribed");
    c.subscribe_ok("other/#", QoS::AtMostOnce);
    c.no_publish(Duration::from_secs(3));
    c.ping();
}

#[test]
fn token_events_unsubscribe_stops_the_warning() {
    let t = tern_with_root(&[]);
    let d = token_details(ROOT, ALL, 31_800, None);
    let (mut c, _) = accepted(&t, login(V5, "ev").token(&d.token), "unsubscribed");
    assert_eq!(c.subscribe(&[TOKEN_EVENTS], QoS::AtMostOnce), vec![0]);
    let pid = c.pid();
    c.send(&Packet::Unsubscribe(tern_mqtt_codec::Unsubscribe {
        packet_id: pid,
        filters: vec![TOKEN_EVENTS.to_owned()],
        ..Default::default()
    }));
    let Packet::UnsubAck(u) = c.expect("UNSUBACK", |p| matches!(p, Packet::UnsubAck(_))) else {
        unreachable!()
    };
    assert_eq!(u.reason_codes, vec![0]);
    c.no_publish(Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// MQTT 5 re-authentication
// ---------------------------------------------------------------------------

/// Expects AUTH reason 0x00 with method tern-token.
fn expect_auth_success(c: &mut Raw) {
    let Packet::Auth(a) = c.expect("AUTH", |p| matches!(p, Packet::Auth(_))) else {
        unreachable!()
    };
    assert_eq!(a.reason_code, reason::SUCCESS, "AUTH {a:?}");
    assert_eq!(
        a.authentication_method.as_deref(),
        Some("tern-token"),
        "AUTH {a:?}"
    );
}

#[test]
fn mqtt_4_12_1_reauth_keeps_the_connection_past_the_first_tokens_expiry() {
    let t = tern_with_root(&[]);
    let issued = Instant::now();
    let first = token_details(ROOT, ALL, 2000, None).token;
    let (mut c, _) = accepted(
        &t,
        login(V5, "re")
            .method("tern-token", &first)
            .keep_alive_secs(0),
        "enhanced auth, 2 s token",
    );
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(issued.elapsed()));
    c.auth(
        reason::REAUTHENTICATE,
        Some("tern-token"),
        Some(&token(ALL)),
    );
    expect_auth_success(&mut c);
    std::thread::sleep(Duration::from_millis(3500).saturating_sub(issued.elapsed()));
    c.ping();
    assert!(c.pending.is_empty(), "unexpected packets: {:?}", c.pending);
}

#[test]
fn mqtt_4_12_1_reauth_replaces_the_capability() {
    let t = tern_with_root(&[]);
    let first = token(r#"{"a/#":["publish","subscribe"]}"#);
    let (mut c, _) = accepted(
        &t,
        login(V5, "re").method("tern-token", &first),
        "enhanced auth",
    );
    assert_eq!(c.publish("a/1", b"x", QoS::AtLeastOnce, false), Some(0));
    assert_eq!(
        c.publish("b/1", b"x", QoS::AtLeastOnce, false),
        Some(reason::NOT_AUTHORIZED)
    );
    c.auth(
        reason::REAUTHENTICATE,
        Some("tern-token"),
        Some(&token(r#"{"b/#":["publish","subscribe"]}"#)),
    );
    expect_auth_success(&mut c);
    assert_eq!(
        c.publish("a/1", b"x", QoS::AtLeastOnce, false),
        Some(reason::NOT_AUTHORIZED)
    );
    assert_eq!(c.publish("b/1", b"x", QoS::AtLeastOnce, false), Some(0));
    assert_eq!(
        c.subscribe(&["a/#", "b/#"], QoS::AtMostOnce),
        vec![reason::NOT_AUTHORIZED, 0]
    );
}

#[test]
fn mqtt_4_12_1_reauth_with_a_jwt_from_the_python_signer() {
    let t = tern_with_root(&[]);
    let (mut c, _) = accepted(
        &t,
        login(V5, "rj").method("tern-token", &token(ALL)),
        "enhanced auth",
    );
    let now = now_s();
    let jwt = py_jwt(ROOT, r#"{"j/#":["publish"]}"#, now, now + 3600, None);
    c.auth(reason::REAUTHENTICATE, Some("tern-token"), Some(&jwt));
    expect_auth_success(&mut c);
    assert_eq!(c.publish("j/1", b"x", QoS::AtLeastOnce, false), Some(0));
    assert_eq!(
        c.publish("k/1", b"x", QoS::AtLeastOnce, false),
        Some(reason::NOT_AUTHORIZED)
    );
}

/// Connects with enhanced auth, sends `auth`, expects DISCONNECT `code` and the close.
fn reauth_ends_with(auth: (u8, Option<&str>, Option<&str>), enhanced: bool, code: u8) {
    let t = tern_with_root(&[]);
    let tok = token_details(ROOT, ALL, HOUR_MS, Some("re-id")).token;
    let l = if enhanced {
        login(V5, "re-id").method("tern-token", &tok)
    } else {
        login(V5, "re-id").token(&tok)
    };
    let (mut c, _) = accepted(&t, l, "client");
    c.auth(auth.0, auth.1, auth.2);
    let got = c.expect_closed(WAIT);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == code),
        "expected DISCONNECT {code:#04x} then close, got {got:?}"
    );
}

#[test]
fn mqtt_4_12_1_2_failed_reauth_disconnect_not_authorized() {
    reauth_ends_with(
        (reason::REAUTHENTICATE, Some("tern-token"), Some("garbage")),
        true,
        reason::NOT_AUTHORIZED,
    );
}

#[test]
fn mqtt_4_12_1_2_reauth_with_an_expired_token_disconnect_not_authorized() {
    let expired = tern_auth::issue_token(
        &ApiKey::parse(ROOT).unwrap(),
        1000,
        &Capability::all(),
        None,
        tern_auth::now_ms() - 60_000,
    )
    .token;
    reauth_ends_with(
        (reason::REAUTHENTICATE, Some("tern-token"), Some(&expired)),
        true,
        reason::NOT_AUTHORIZED,
    );
}

#[test]
fn mqtt_4_12_1_2_reauth_with_a_token_bound_to_another_client_id_disconnect_not_authorized() {
    let other = token_details(ROOT, ALL, HOUR_MS, Some("someone-else")).token;
    reauth_ends_with(
        (reason::REAUTHENTICATE, Some("tern-token"), Some(&other)),
        true,
        reason::NOT_AUTHORIZED,
    );
}

#[test]
fn mqtt_4_12_0_7_auth_without_enhanced_auth_at_connect_protocol_error() {
    reauth_ends_with(
        (
            reason::REAUTHENTICATE,
            Some("tern-token"),
            Some(&token(ALL)),
        ),
        false,
        reason::PROTOCOL_ERROR,
    );
}

#[test]
fn mqtt_4_12_1_1_reauth_with_another_method_protocol_error() {
    reauth_ends_with(
        (
            reason::REAUTHENTICATE,
            Some("SCRAM-SHA-1"),
            Some(&token(ALL)),
        ),
        true,
        reason::PROTOCOL_ERROR,
    );
}

#[test]
fn mqtt_4_12_0_auth_continue_without_a_server_challenge_protocol_error() {
    reauth_ends_with(
        (
            reason::CONTINUE_AUTHENTICATION,
            Some("tern-token"),
            Some(&token(ALL)),
        ),
        true,
        reason::PROTOCOL_ERROR,
    );
}

#[test]
fn token_events_warning_rearmed_by_reauth() {
    let t = tern_with_root(&[]);
    let d1 = token_details(ROOT, ALL, 31_500, None);
    let (mut c, _) = accepted(
        &t,
        login(V5, "ew").method("tern-token", &d1.token),
        "enhanced auth",
    );
    assert_eq!(c.subscribe(&[TOKEN_EVENTS], QoS::AtMostOnce), vec![0]);
    let p = c.expect_publish_within(Duration::from_secs(15));
    assert_eq!(&p.payload[..], b"expirywarning");
    let d2 = token_details(ROOT, ALL, 32_000, None);
    c.auth(reason::REAUTHENTICATE, Some("tern-token"), Some(&d2.token));
    expect_auth_success(&mut c);
    let p = c.expect_publish_within(Duration::from_secs(15));
    assert_eq!(&p.payload[..], b"expirywarning");
    assert_eq!(
        p.properties.user_properties,
        vec![("expires".to_owned(), d2.expires.to_string())],
        "the second warning names the new token's expiry"
    );
}

// ---------------------------------------------------------------------------
// rumqttc
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rumqttc_v4_key_login_pubsub_and_bad_secret_refused() {
    use rumqttc::{
        AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet as P, QoS as Q,
    };
    let t = tern_with_root(&[]);
    let mut o = MqttOptions::new("rq4", t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_credentials(ROOT_NAME, ROOT_SECRET);
    let (c, mut el) = AsyncClient::new(o, 16);
    c.subscribe("rq/#", Q::AtLeastOnce).await.unwrap();
    c.publish("rq/1", Q::AtLeastOnce, false, "hello")
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT * 2, async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(P::Publish(p))) => return p,
                Ok(_) => {}
                Err(e) => panic!("rumqttc v4: {e}"),
            }
        }
    })
    .await
    .expect("no PUBLISH within the timeout");
    assert_eq!(&got.payload[..], b"hello");

    // A token as username works too.
    let mut o = MqttOptions::new("rq4t", t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_credentials(token(ALL), "");
    let (_c, mut el) = AsyncClient::new(o, 16);
    let ev = tokio::time::timeout(WAIT, el.poll())
        .await
        .expect("CONNACK in time");
    assert!(
        matches!(ev, Ok(Event::Incoming(P::ConnAck(ref a))) if a.code == ConnectReturnCode::Success),
        "token login: {ev:?}"
    );

    let mut o = MqttOptions::new("rq4b", t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_credentials(ROOT_NAME, "wrong");
    let (_c, mut el) = AsyncClient::new(o, 16);
    let ev = tokio::time::timeout(WAIT, el.poll())
        .await
        .expect("CONNACK in time");
    assert!(
        matches!(
            ev,
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword
            ))
        ),
        "bad secret: {ev:?}"
    );
}

#[tokio::test]
async fn rumqttc_v5_token_username_enhanced_auth_and_expiry_disconnect() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, DisconnectReasonCode, Packet as P};
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
    let t = tern_with_root(&[]);

    // Token as username, capability enforced (PUBACK 0x87 is an error for rumqttc? it
    // reports the PubAck; we only check the allowed round trip here).
    let mut o = MqttOptions::new("rq5", t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_credentials(token(r#"{"rq/#":["publish","subscribe"]}"#), "");
    let (c, mut el) = AsyncClient::new(o, 16);
    c.subscribe("rq/#", Q::AtLeastOnce).await.unwrap();
    c.publish("rq/1", Q::AtLeastOnce, false, "hello")
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT * 2, async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(P::Publish(p))) => return p,
                Ok(_) => {}
                Err(e) => panic!("rumqttc v5: {e}"),
            }
        }
    })
    .await
    .expect("no PUBLISH within the timeout");
    assert_eq!(&got.payload[..], b"hello");

    // Enhanced authentication: the CONNACK carries the method.
    let mut o = MqttOptions::new("rq5e", t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_authentication_method(Some("tern-token".into()));
    o.set_authentication_data(Some(Bytes::from(token(ALL))));
    let (_c, mut el) = AsyncClient::new(o, 16);
    let ev = tokio::time::timeout(WAIT, el.poll())
        .await
        .expect("CONNACK in time");
    match ev {
        Ok(Event::Incoming(P::ConnAck(a))) => {
            assert_eq!(a.code, ConnectReturnCode::Success);
            let method = a.properties.and_then(|p| p.authentication_method);
            assert_eq!(method.as_deref(), Some("tern-token"));
        }
        other => panic!("enhanced auth: {other:?}"),
    }

    // Bad token: refused 0x86.
    let mut o = MqttOptions::new("rq5b", t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_credentials("garbage", "");
    let (_c, mut el) = AsyncClient::new(o, 16);
    let ev = tokio::time::timeout(WAIT, el.poll())
        .await
        .expect("CONNACK in time");
    assert!(
        matches!(
            ev,
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword
            ))
        ),
        "bad token: {ev:?}"
    );

    // Expiry: DISCONNECT 0xA0 reaches the client.
    let mut o = MqttOptions::new("rq5x", t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_credentials(token_details(ROOT, ALL, 2000, None).token, "");
    o.set_keep_alive(Duration::from_secs(30));
    let (_c, mut el) = AsyncClient::new(o, 16);
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(P::Disconnect(d))) => return Some(d.reason_code),
                Ok(_) => {}
                // rumqttc reports a server DISCONNECT as this error.
                Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                    reason_code,
                    ..
                })) => return Some(reason_code),
                Err(e) => {
                    eprintln!("rumqttc v5 ended with {e} before a DISCONNECT");
                    return None;
                }
            }
        }
    })
    .await
    .expect("the connection outlived its 2 s token by 8 s");
    assert_eq!(reason, Some(DisconnectReasonCode::MaximumConnectTime));
}

// ---------------------------------------------------------------------------
// mosquitto_pub / mosquitto_sub
// ---------------------------------------------------------------------------

fn mosquitto(exe: &str, t: &Tern, version: &str, args: &[&str]) -> ChildOutput {
    let port = t.port();
    run_child(
        Command::new(exe)
            .args(["-h", "127.0.0.1", "-p", &port, "-V", version])
            .args(args),
        CHILD_TIMEOUT,
    )
}

fn mosquitto_pub_logins(version: &str) {
    let t = tern_with_root(&["--login-failures-max", "1000"]);
    let v5 = version == "mqttv5";
    let mut w = watcher(&t, "mq/#");
    let tok = token(r#"{"mq/#":["publish"]}"#);
    for (what, creds) in [
        ("key", vec!["-u", ROOT_NAME, "-P", ROOT_SECRET]),
        ("token username", vec!["-u", tok.as_str()]),
    ] {
        let mut args = creds.clone();
        args.extend(["-t", "mq/1", "-m", what, "-q", "1"]);
        let out = mosquitto("mosquitto_pub", &t, version, &args);
        assert!(out.ok(), "mosquitto_pub {what}: {out:?}");
        let p = w.expect_publish();
        assert_eq!(&p.payload[..], what.as_bytes());
    }
    // mosquitto_pub exits with the CONNACK code.
    for (what, creds, code) in [
        (
            "wrong secret",
            vec!["-u", ROOT_NAME, "-P", "wrong"],
            if v5 { 0x86 } else { 4 },
        ),
        (
            "bad token",
            vec!["-u", "garbage"],
            if v5 { 0x86 } else { 4 },
        ),
        ("anonymous", vec![], if v5 { 0x87 } else { 5 }),
    ] {
        let mut args = creds.clone();
        args.extend(["-t", "mq/1", "-m", "refused"]);
        let out = mosquitto("mosquitto_pub", &t, version, &args);
        assert_eq!(out.code(), Some(code), "mosquitto_pub {what}: {out:?}");
    }
    // Outside the capability: v5 reports the PUBACK reason, 3.1.1 sees a normal PUBACK.
    let out = mosquitto(
        "mosquitto_pub",
        &t,
        version,
        &["-u", &tok, "-t", "mq-no/1", "-m", "x", "-q", "1", "-d"],
    );
    let rc = if v5 { "RC:135" } else { "RC:0" };
    assert!(
        out.stdout.contains(rc),
        "mosquitto_pub outside the capability: {out:?}"
    );
    if v5 {
        assert!(out.stderr.contains("Not authorized"), "{out:?}");
    }
    w.no_publish(QUIET);
}

#[test]
fn mosquitto_pub_key_and_token_logins_and_refusals_v5() {
    mosquitto_pub_logins("mqttv5");
}

#[test]
fn mosquitto_pub_key_and_token_logins_and_refusals_v311() {
    mosquitto_pub_logins("mqttv311");
}

/// A running `mosquitto_sub -d`, killed on drop.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Sub {
    fn start(t: &Tern, version: &str, args: &[&str]) -> Sub {
        let port = t.port();
        // stdbuf: keep mosquitto_sub's stdout line-buffered on a pipe.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
            ])
            .args(["-d", "-W", "20"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto_sub");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Sub {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "mosquitto_sub printed no line with {needle:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_sub_token(version: &str) {
    let t = tern_with_root(&[]);
    let v5 = version == "mqttv5";
    let tok = token(r#"{"ms/#":["subscribe"]}"#);
    let mut s = Sub::start(
        &t,
        version,
        &["-u", &tok, "-t", "ms/#", "-t", "admin/#", "-q", "1"],
    );
    // One SUBACK line per mosquitto_sub SUBSCRIBE: granted QoS 1, refused.
    let line = s.wait_line("Subscribed (mid:");
    let refused = if v5 { "135" } else { "128" };
    assert!(
        line.ends_with(&format!(": 1, {refused}")),
        "SUBACK codes for ms/#, admin/#: {line:?}"
    );
    let (mut p, _) = accepted(
        &t,
        login(V5, "pub").key(ROOT_NAME, ROOT_SECRET),
        "publisher",
    );
    assert_eq!(
        p.publish("admin/1", b"hidden", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(
        p.publish("ms/1", b"visible", QoS::AtLeastOnce, false),
        Some(0)
    );
    s.wait_line("visible");
    assert!(
        !s.seen.iter().any(|l| l.contains("hidden")),
        "a refused subscription delivered: {:?}",
        s.seen
    );
}

#[test]
fn mosquitto_sub_token_subscription_partly_refused_v5() {
    mosquitto_sub_token("mqttv5");
}

#[test]
fn mosquitto_sub_token_subscription_partly_refused_v311() {
    mosquitto_sub_token("mqttv311");
}

// ---------------------------------------------------------------------------
// paho-mqtt 2.x (tests/py/auth_paho.py)
// ---------------------------------------------------------------------------

/// Runs one case of auth_paho.py against `t`; fails with its output.
fn paho(t: &Tern, case: &str, version: u8, args: &[&str]) {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py");
    let port = t.port();
    let version = version.to_string();
    let out = run_child(
        Command::new("python3")
            .arg(py.join("auth_paho.py"))
            .args(["--port", &port, "--case", case, "--version", &version])
            .args(args)
            .current_dir(&py)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1"),
        Duration::from_secs(90),
    );
    assert!(
        out.ok(),
        "auth_paho.py --case {case} --version {version} {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        match out.status {
            Some(s) => format!("exited with {s}"),
            None => "was killed after 90 s".to_owned(),
        },
        out.stdout,
        out.stderr
    );
    print!("{}", out.stdout);
}

fn paho_token_username(v: u8) {
    let t = tern_with_root(&[]);
    let tok = token(r#"{"ok/#":["publish","subscribe"]}"#);
    paho(
        &t,
        "login",
        v,
        &[
            "--user",
            &tok,
            "--topic",
            "ok",
            "--forbidden",
            "secret/x",
            "--watch-user",
            ROOT_NAME,
            "--watch-pass",
            ROOT_SECRET,
        ],
    );
    paho(
        &t,
        "refused",
        v,
        &["--user", "garbage", "--expect-rc", "0x86"],
    );
}

#[test]
fn paho_token_as_username_capability_enforced_v5() {
    paho_token_username(5);
}

#[test]
fn paho_token_as_username_capability_enforced_v311() {
    paho_token_username(3);
}

fn paho_jwt_username(v: u8) {
    let t = tern_with_root(&[]);
    let now = now_s();
    let jwt = py_jwt(
        ROOT,
        r#"{"ok/#":["publish","subscribe"]}"#,
        now,
        now + 3600,
        None,
    );
    paho(
        &t,
        "login",
        v,
        &[
            "--user",
            &jwt,
            "--topic",
            "ok",
            "--forbidden",
            "secret/x",
            "--watch-user",
            ROOT_NAME,
            "--watch-pass",
            ROOT_SECRET,
        ],
    );
    let bad = py_jwt("app.root:wrong", ALL, now, now + 3600, None);
    paho(&t, "refused", v, &["--user", &bad, "--expect-rc", "0x86"]);
}

#[test]
fn paho_jwt_from_python_signer_as_username_v5() {
    paho_jwt_username(5);
}

#[test]
fn paho_jwt_from_python_signer_as_username_v311() {
    paho_jwt_username(3);
}

#[test]
fn paho_key_login_and_anonymous_refused() {
    let t = tern_with_root(&[]);
    for v in [5, 3] {
        paho(
            &t,
            "login",
            v,
            &["--user", ROOT_NAME, "--password", ROOT_SECRET],
        );
        paho(&t, "refused", v, &["--expect-rc", "0x87"]);
    }
}

#[test]
fn paho_enhanced_auth_v5() {
    let t = tern_with_root(&[]);
    let tok = token(r#"{"ok/#":["publish","subscribe"]}"#);
    paho(&t, "enhanced", 5, &["--token", &tok, "--topic", "ok"]);
}

fn paho_tokenevents(v: u8) {
    let t = tern_with_root(&[]);
    // python3 + paho start in well under the 1.5 s before the warning is
    // due; if not, the warning comes at once on subscribing.
    let d = token_details(ROOT, ALL, 31_500, None);
    let expires = d.expires.to_string();
    paho(
        &t,
        "tokenevents",
        v,
        &["--user", &d.token, "--expires", &expires],
    );
}

#[test]
fn paho_token_events_expiry_warning_v5() {
    paho_tokenevents(5);
}

#[test]
fn paho_token_events_expiry_warning_v311() {
    paho_tokenevents(3);
}

fn paho_expiry(v: u8) {
    let t = tern_with_root(&[]);
    let d = token_details(ROOT, ALL, 3000, None);
    paho(&t, "expiry", v, &["--user", &d.token]);
}

#[test]
fn paho_token_expiry_disconnects_v5() {
    paho_expiry(5);
}

#[test]
fn paho_token_expiry_disconnects_v311() {
    paho_expiry(3);
}

// ---------------------------------------------------------------------------
// Deliveries to subscriptions the current credentials no longer cover
// ---------------------------------------------------------------------------

#[test]
fn reauth_with_a_narrower_capability_stops_deliveries_outside_it() {
    // The new token replaces the credentials: a subscription made under the
    // first token that the new capability does not cover must not keep
    // delivering (Ably detaches channels a renewed token no longer allows).
    let t = tern_with_root(&[]);
    let (mut c, _) = accepted(
        &t,
        login(V5, "re").method("tern-token", &token(ALL)),
        "enhanced auth",
    );
    c.subscribe_ok("a/#", QoS::AtLeastOnce);
    c.subscribe_ok("b/#", QoS::AtLeastOnce);
    c.auth(
        reason::REAUTHENTICATE,
        Some("tern-token"),
        Some(&token(r#"{"b/#":["publish","subscribe"]}"#)),
    );
    expect_auth_success(&mut c);
    let (mut p, _) = accepted(
        &t,
        login(V5, "pub").key(ROOT_NAME, ROOT_SECRET),
        "publisher",
    );
    assert_eq!(
        p.publish("a/1", b"no longer allowed", QoS::AtLeastOnce, false),
        Some(0)
    );
    assert_eq!(
        p.publish("b/1", b"allowed", QoS::AtLeastOnce, false),
        Some(0)
    );
    let got = c.expect_publish();
    assert_eq!(
        (
            got.topic.as_str(),
            String::from_utf8_lossy(&got.payload).as_ref()
        ),
        ("b/1", "allowed"),
        "a/1 is outside the re-authenticated capability"
    );
    c.no_publish(QUIET);
}

fn session_resumed_by_narrower_principal(v: ProtocolVersion) {
    // A persistent session made with the root key, resumed (same client id,
    // clean start 0) by a token that may not subscribe to secret/#: neither
    // the message queued while offline nor a new one may reach it.
    let t = tern_with_root(&[]);
    let (mut c, _) = accepted(
        &t,
        login(v, "shared-id")
            .key(ROOT_NAME, ROOT_SECRET)
            .persistent(),
        "root",
    );
    c.subscribe_ok("secret/#", QoS::AtLeastOnce);
    c.subscribe_ok("ok/#", QoS::AtLeastOnce);
    c.disconnect();
    let (mut p, _) = accepted(
        &t,
        login(V5, "pub").key(ROOT_NAME, ROOT_SECRET),
        "publisher",
    );
    // The broker has processed the DISCONNECT once a later packet is answered;
    // give it a moment anyway, the session must be offline for the queue test.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        p.publish("secret/queued", b"queued", QoS::AtLeastOnce, false),
        Some(0)
    );
    let tok = token(r#"{"ok/#":["publish","subscribe"]}"#);
    let (mut n, a) = accepted(
        &t,
        login(v, "shared-id").token(&tok).persistent(),
        "narrow token",
    );
    let mut got = Vec::new();
    if a.session_present {
        assert_eq!(
            p.publish("secret/live", b"live", QoS::AtLeastOnce, false),
            Some(0)
        );
        assert_eq!(
            p.publish("ok/live", b"ok", QoS::AtLeastOnce, false),
            Some(0)
        );
        let until = Instant::now() + WAIT;
        while got.last().map(String::as_str) != Some("ok/live") {
            match n.read_packet(until) {
                Ok(Some(Packet::Publish(pb))) => {
                    if pb.qos == QoS::AtLeastOnce {
                        n.send(&Packet::PubAck(PubResp {
                            packet_id: pb.packet_id.unwrap_or(0),
                            ..PubResp::default()
                        }));
                    }
                    got.push(pb.topic);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(()) => break,
            }
        }
    }
    assert!(
        got.iter().all(|t| !t.starts_with("secret/")),
        "a token that may not subscribe to secret/# received {got:?} through the session it resumed"
    );
}
both_versions!(
    /// A session resumed by credentials with a narrower capability must not deliver what they may not subscribe to.
    session_resumed_by_a_narrower_principal_delivers_nothing_outside_its_capability_v5,
    session_resumed_by_a_narrower_principal_delivers_nothing_outside_its_capability_v311,
    session_resumed_by_narrower_principal
);
