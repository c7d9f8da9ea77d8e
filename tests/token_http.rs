//! Tern's HTTP token endpoint end to end against the real binary:
//! `POST /keys/{keyName}/requestToken` with a signed TokenRequest or with
//! HTTP Basic auth and TokenParams, `GET /time`, and the tokens it issues
//! used as MQTT usernames on every transport.
//!
//! TokenRequests and JWTs are signed by the independent Python signer
//! `crates/tern-auth/tests/py/sign.py` (standard library only), so the
//! server's HMAC and JWT checks are held against a second implementation.
//! HTTP requests are made with Python's urllib (`tests/py/token_http.py`),
//! MQTT with rumqttc (v4 / v5), paho-mqtt (`tests/py/transport_paho.py`) and
//! MQTT.js (`tests/js/ws_roundtrip.mjs`).
//!
//! Errors must have Ably's shape `{"error": {"code", "message",
//! "statusCode"}}`; the codes are those of `tern_auth::AuthError::ably_code`
//! (40101 bad credentials or mac, 40104 timestamp, 40105 replayed nonce,
//! 40003 bad parameter, 40160 capability, 40103 key over plain HTTP, 40000
//! bad JSON, 40009 body too large).
//!
//! Every wait is bounded; child processes are killed after `CHILD_TIMEOUT`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Tern;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

/// A key with every capability, given with `--key`.
const ROOT: &str = "app.root:rootsecret";
/// A key limited to `NARROW_CAP`, from the config file.
const NARROW: &str = "app.narrow:narrowsecret";
const NARROW_NAME: &str = "app.narrow";
/// Canonical: resources sorted, operations sorted.
const NARROW_CAP: &str = r#"{"chat:*":["publish","subscribe"],"sensors/#":["subscribe"]}"#;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh nonce (24 characters; Ably asks for at least 16).
fn nonce() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:08x}{:08x}{:08x}", std::process::id(), t, n)
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tern-token-http-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create a temporary directory");
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the config file with the narrow key and a CA-signed certificate
/// for `localhost` / `127.0.0.1`; returns the `tern serve` flags for keys
/// and TLS on `--mqtts` / `--https`.
fn setup(dir: &TempDir) -> Vec<String> {
    std::fs::write(
        dir.path("tern.toml"),
        format!("[[keys]]\nkey = \"{NARROW}\"\ncapability = '{NARROW_CAP}'\n"),
    )
    .expect("write the config file");

    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Tern token test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path("server.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.path("server.key"), leaf_key.serialize_pem()).unwrap();

    [
        "--key",
        ROOT,
        "--config",
        &dir.path("tern.toml").display().to_string(),
        "--mqtts",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        &dir.path("server.pem").display().to_string(),
        "--tls-key",
        &dir.path("server.key").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// tern with the two keys and TLS, plus `extra`.
fn server(extra: &[&str]) -> (TempDir, Tern) {
    let dir = TempDir::new("srv");
    let mut flags = setup(&dir);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let tern = Tern::start(&flags);
    (dir, tern)
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Runs `cmd` to the end (killing it after `CHILD_TIMEOUT`); panics with
/// its output unless it exits 0; returns its stdout.
fn run(mut cmd: Command, what: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (scripts/test installs it)"));
    let (out, err) = (reader(child.stdout.take()), reader(child.stderr.take()));
    let status = wait_bounded(&mut child);
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(s) if s.success() => out,
        s => panic!(
            "{what} {}\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
            s.map_or(format!("killed after {CHILD_TIMEOUT:?}"), |s| format!(
                "exited with {s}"
            ))
        ),
    }
}

fn reader(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        if let Some(s) = child.try_wait().expect("wait for a child") {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `sign.py token-request`: a TokenRequest signed by the Python signer.
fn sign_request(
    key: &str,
    timestamp: u64,
    nonce: &str,
    ttl: Option<u64>,
    capability: Option<&str>,
    client_id: Option<&str>,
) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("crates/tern-auth/tests/py/sign.py"))
        .args(["token-request", "--key", key])
        .args(["--timestamp", &timestamp.to_string(), "--nonce", nonce]);
    if let Some(t) = ttl {
        cmd.args(["--ttl", &t.to_string()]);
    }
    if let Some(c) = capability {
        cmd.args(["--capability", c]);
    }
    if let Some(c) = client_id {
        cmd.args(["--client-id", c]);
    }
    run(cmd, "sign.py token-request").trim().to_owned()
}

/// `sign.py jwt`: an Ably JWT (HS256) signed by the Python signer.
fn sign_jwt(
    key: &str,
    iat_s: u64,
    exp_s: u64,
    capability: &str,
    client_id: Option<&str>,
) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("crates/tern-auth/tests/py/sign.py"))
        .args(["jwt", "--key", key])
        .args(["--iat", &iat_s.to_string(), "--exp", &exp_s.to_string()])
        .args(["--capability", capability]);
    if let Some(c) = client_id {
        cmd.args(["--client-id", c]);
    }
    run(cmd, "sign.py jwt").trim().to_owned()
}

/// An HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    body: Value,
}

enum Body<'a> {
    Json(&'a str),
    Bytes(usize),
}

/// An HTTP request made with Python's urllib (`tests/py/token_http.py`).
fn http(
    method: &str,
    url: &str,
    body: Option<Body>,
    basic: Option<&str>,
    ca: Option<&Path>,
) -> Resp {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/py/token_http.py"))
        .args([method, url]);
    match body {
        Some(Body::Json(b)) => {
            cmd.args(["--body", b]);
        }
        Some(Body::Bytes(n)) => {
            cmd.args(["--body-bytes", &n.to_string()]);
        }
        None => {}
    }
    if let Some(b) = basic {
        cmd.args(["--basic", b]);
    }
    if let Some(ca) = ca {
        cmd.arg("--cafile").arg(ca);
    }
    let out = run(cmd, &format!("token_http.py {method} {url}"));
    let v: Value = serde_json::from_str(out.trim()).expect("token_http.py prints JSON");
    Resp {
        status: v["status"].as_u64().expect("status") as u16,
        body: v["body"].clone(),
    }
}

fn token_url(base: &str, key_name: &str) -> String {
    format!("{base}/keys/{key_name}/requestToken")
}

fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// POSTs a signed TokenRequest to `/keys/{key_name}/requestToken`.
fn post_request(base: &str, key_name: &str, request: &str) -> Resp {
    http(
        "post",
        &token_url(base, key_name),
        Some(Body::Json(request)),
        None,
        None,
    )
}

/// Asserts an Ably-shaped error with `status` and `code`.
#[track_caller]
fn assert_error(r: &Resp, status: u16, code: u64, what: &str) {
    assert_eq!(r.status, status, "{what}: HTTP status; body {}", r.body);
    let e = &r.body["error"];
    assert_eq!(
        e["code"].as_u64(),
        Some(code),
        "{what}: error.code; body {}",
        r.body
    );
    assert_eq!(
        e["statusCode"].as_u64(),
        Some(status as u64),
        "{what}: error.statusCode; body {}",
        r.body
    );
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: error.message; body {}",
        r.body
    );
}

/// Asserts a 200 TokenDetails and returns it.
#[track_caller]
fn assert_details(r: &Resp, what: &str) -> TokenDetails {
    assert_eq!(
        r.status, 200,
        "{what}: expected 200 TokenDetails, got {}",
        r.body
    );
    let b = &r.body;
    let d = TokenDetails {
        token: b["token"].as_str().expect("token").to_owned(),
        key_name: b["keyName"].as_str().expect("keyName").to_owned(),
        issued: b["issued"].as_u64().expect("issued"),
        expires: b["expires"].as_u64().expect("expires"),
        capability: b["capability"]
            .as_str()
            .expect("capability (a JSON string)")
            .to_owned(),
        client_id: b["clientId"].as_str().map(str::to_owned),
    };
    assert!(!d.token.is_empty(), "{what}: empty token");
    assert!(
        d.issued.abs_diff(now_ms()) < 10_000,
        "{what}: issued {} is far from the local clock {}",
        d.issued,
        now_ms()
    );
    d
}

#[derive(Debug)]
struct TokenDetails {
    token: String,
    key_name: String,
    issued: u64,
    expires: u64,
    capability: String,
    client_id: Option<String>,
}

fn paho(args: &[&str]) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/py/transport_paho.py"))
        .args(args);
    let out = run(cmd, &format!("transport_paho.py {}", args.join(" ")));
    assert!(out.contains("ok:"), "{out}");
}

fn mqttjs(args: &[&str]) {
    let js = repo().join("tests/js");
    assert!(
        js.join("node_modules/mqtt/package.json").exists(),
        "MQTT.js is not installed: run scripts/test (or `npm ci` in tests/js)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(js.join("ws_roundtrip.mjs"))
        .args(args)
        .current_dir(&js);
    let out = run(cmd, &format!("node ws_roundtrip.mjs {}", args.join(" ")));
    assert!(out.contains("ok:"), "{out}");
}

// ---------------------------------------------------------------------------
// rumqttc
// ---------------------------------------------------------------------------

mod v5 {
    use super::WAIT;
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::mqttbytes::v5::{
        ConnectReturnCode, Packet, PubAckReason, Publish, SubscribeReasonCode,
    };
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
    use tokio::sync::mpsc;

    /// A connected rumqttc v5 client whose event loop feeds `rx`.
    pub struct Client {
        c: AsyncClient,
        rx: mpsc::UnboundedReceiver<Result<Packet, String>>,
        task: tokio::task::JoinHandle<()>,
    }

    pub fn options(id: &str, port: u16, username: Option<&str>) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(std::time::Duration::from_secs(30));
        if let Some(u) = username {
            o.set_credentials(u, "");
        }
        o
    }

    impl Client {
        /// Connects; `Err` holds the CONNACK refusal code, or the error text.
        pub async fn connect(o: MqttOptions) -> Result<Client, Result<ConnectReturnCode, String>> {
            let (c, mut el) = AsyncClient::new(o, 64);
            let first = loop {
                match tokio::time::timeout(WAIT, el.poll()).await {
                    Err(_) => return Err(Err("no CONNACK in time".into())),
                    Ok(Err(ConnectionError::ConnectionRefused(code))) => return Err(Ok(code)),
                    Ok(Err(e)) => return Err(Err(e.to_string())),
                    Ok(Ok(Event::Incoming(p))) => break p,
                    Ok(Ok(Event::Outgoing(_))) => {}
                }
            };
            match first {
                Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {}
                Packet::ConnAck(a) => return Err(Ok(a.code)),
                p => return Err(Err(format!("expected CONNACK, got {p:?}"))),
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(p)) => {
                            if tx.send(Ok(p)).is_err() {
                                break;
                            }
                        }
                        Ok(Event::Outgoing(_)) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            break;
                        }
                    }
                }
            });
            Ok(Client { c, rx, task })
        }

        async fn next(&mut self, what: &str) -> Packet {
            match tokio::time::timeout(WAIT, self.rx.recv()).await {
                Err(_) => panic!("timed out waiting for {what}"),
                Ok(None) => panic!("event loop ended while waiting for {what}"),
                Ok(Some(Err(e))) => panic!("connection error while waiting for {what}: {e}"),
                Ok(Some(Ok(p))) => p,
            }
        }

        /// Subscribes to `filter` at QoS 1; the SUBACK's reason codes.
        pub async fn subscribe(&mut self, filter: &str) -> Vec<SubscribeReasonCode> {
            self.c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
            loop {
                if let Packet::SubAck(a) = self.next("SUBACK").await {
                    return a.return_codes;
                }
            }
        }

        /// Publishes at QoS 1; the PUBACK's reason.
        pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> PubAckReason {
            self.c
                .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
                .await
                .unwrap();
            loop {
                if let Packet::PubAck(a) = self.next("PUBACK").await {
                    return a.reason;
                }
            }
        }

        /// The next PUBLISH (other packets skipped).
        pub async fn next_publish(&mut self) -> Publish {
            loop {
                if let Packet::Publish(p) = self.next("PUBLISH").await {
                    return p;
                }
            }
        }

        /// Asserts no PUBLISH arrives within `d`.
        pub async fn no_publish(&mut self, d: std::time::Duration) {
            let deadline = tokio::time::Instant::now() + d;
            loop {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Err(_) => return,
                    Ok(Some(Ok(Packet::Publish(p)))) => panic!("unexpected PUBLISH {p:?}"),
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => panic!("connection error: {e}"),
                    Ok(None) => panic!("event loop ended"),
                }
            }
        }

        pub async fn close(self) {
            let _ = self.c.disconnect().await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.task).await;
        }
    }
}

/// rumqttc v4: the CONNACK code (`Err` with the error text if none came).
async fn v4_connack(
    port: u16,
    id: &str,
    username: Option<&str>,
) -> Result<rumqttc::ConnectReturnCode, String> {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    if let Some(u) = username {
        o.set_credentials(u, "");
    }
    let (c, mut el) = rumqttc::AsyncClient::new(o, 16);
    let r = loop {
        match tokio::time::timeout(WAIT, el.poll()).await {
            Err(_) => break Err("no CONNACK in time".into()),
            Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => break Ok(code),
            Ok(Err(e)) => break Err(e.to_string()),
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)))) => break Ok(a.code),
            Ok(Ok(_)) => {}
        }
    };
    let _ = c.try_disconnect();
    r
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What a token (or JWT) with the narrow capability may and may not do,
/// over MQTT 5: `chat:*` publish and subscribe, `sensors/#` subscribe only,
/// nothing else.
async fn check_narrow_capability(port: u16, token: &str, client_id: &str) {
    use v5::{PubAckReason, SubscribeReasonCode};
    let mut c = v5::Client::connect(v5::options(client_id, port, Some(token)))
        .await
        .unwrap_or_else(|e| panic!("the token is refused as MQTT username: {e:?}"));
    assert_eq!(
        c.subscribe("chat:room1").await,
        [SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)]
    );
    assert_eq!(
        c.subscribe("sensors/#").await,
        [SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)]
    );
    assert_eq!(
        c.subscribe("admin/#").await,
        [SubscribeReasonCode::NotAuthorized],
        "subscribing outside the capability"
    );
    assert_eq!(c.publish("chat:room1", b"hi").await, PubAckReason::Success);
    let p = c.next_publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"chat:room1"[..], &b"hi"[..])
    );
    assert_eq!(
        c.publish("sensors/temp", b"21").await,
        PubAckReason::NotAuthorized,
        "publishing where the token may only subscribe: v5 PUBACK 0x87"
    );
    assert_eq!(
        c.publish("admin/x", b"no").await,
        PubAckReason::NotAuthorized,
        "publishing outside the capability: v5 PUBACK 0x87"
    );
    c.no_publish(Duration::from_millis(700)).await;
    c.close().await;
}

// ===========================================================================
// Signed TokenRequest
// ===========================================================================

/// A TokenRequest signed by the Python signer gets 200 TokenDetails: the
/// key name, the capability in canonical form, the client id, expires −
/// issued = ttl. The token then logs in over MQTT 5 as username (empty
/// password), bound to its client id, and its capability is enforced.
#[test]
fn signed_token_request_gives_a_working_token() {
    let (_dir, tern) = server(&[]);
    // Whitespace, unsorted resources, a repeated operation: the signer
    // canonicalises, the server must agree on the mac and echo canonical text.
    let asked =
        r#"{ "sensors/#": ["subscribe"], "chat:*": ["subscribe", "publish", "subscribe"] }"#;
    let ttl = 10 * 60 * 1000;
    let req = sign_request(
        NARROW,
        now_ms(),
        &nonce(),
        Some(ttl),
        Some(asked),
        Some("alice"),
    );
    let d = assert_details(
        &post_request(&base(tern.http), NARROW_NAME, &req),
        "signed request",
    );
    assert_eq!(d.key_name, NARROW_NAME);
    assert_eq!(d.capability, NARROW_CAP, "the capability in canonical form");
    assert_eq!(d.client_id.as_deref(), Some("alice"));
    assert_eq!(d.expires - d.issued, ttl, "expires - issued = ttl");

    let rt = runtime();
    rt.block_on(check_narrow_capability(tern.mqtt.port(), &d.token, "alice"));
    // The token binds client id `alice`: another id is refused.
    let refused = rt.block_on(v5::Client::connect(v5::options(
        "mallory",
        tern.mqtt.port(),
        Some(&d.token),
    )));
    assert!(
        refused.is_err(),
        "a token bound to alice must not log in as mallory"
    );

    // Over HTTPS the same works (the CA from setup).
    let https = format!("https://localhost:{}", tern.https.unwrap().port());
    let req = sign_request(NARROW, now_ms(), &nonce(), None, None, None);
    let r = http(
        "post",
        &token_url(&https, NARROW_NAME),
        Some(Body::Json(&req)),
        None,
        Some(&_dir.path("ca.pem")),
    );
    let d = assert_details(&r, "signed request over HTTPS");
    assert_eq!(d.capability, NARROW_CAP, "no capability asked: the key's");
    assert_eq!(d.expires - d.issued, HOUR_MS, "no ttl asked: one hour");
    assert_eq!(d.client_id, None);
}

/// A token as MQTT username works on every transport (TCP, TLS, ws, wss)
/// with paho-mqtt and over ws/wss with MQTT.js, its capability enforced
/// there too; without credentials the CONNECT is refused (5 / 0x87) on
/// every transport, because keys are configured.
#[test]
fn token_works_on_every_transport_and_anonymous_is_refused() {
    let (dir, tern) = server(&[]);
    let req = sign_request(
        NARROW,
        now_ms(),
        &nonce(),
        Some(HOUR_MS),
        Some(NARROW_CAP),
        None,
    );
    let d = assert_details(
        &post_request(&base(tern.http), NARROW_NAME, &req),
        "signed request",
    );
    let ca = dir.path("ca.pem").display().to_string();
    let endpoints = [
        format!("tcp:{}", tern.mqtt.port()),
        format!("tls:{}", tern.mqtts.unwrap().port()),
        format!("ws:{}", tern.http.port()),
        format!("wss:{}", tern.https.unwrap().port()),
    ];
    for v in ["3", "5"] {
        for ep in &endpoints {
            paho(&[
                "--case",
                "roundtrip",
                "--version",
                v,
                "--sub",
                ep,
                "--pub",
                &endpoints[0],
                "--cafile",
                &ca,
                "--username",
                &d.token,
                "--topic-prefix",
                "chat:paho",
                "--forbidden",
                "admin/x",
            ]);
            // paho reports 3.1.1's return code 5 as reason code 135.
            paho(&[
                "--case",
                "refused",
                "--version",
                v,
                "--sub",
                ep,
                "--cafile",
                &ca,
                "--expect-rc",
                "135",
            ]);
        }
    }
    let ws = format!("ws://{}/mqtt", tern.http);
    let wss = format!("wss://127.0.0.1:{}/mqtt", tern.https.unwrap().port());
    for (v, rc) in [("4", "5"), ("5", "135")] {
        for url in [&ws, &wss] {
            mqttjs(&[
                "--url",
                url,
                "--version",
                v,
                "--ca",
                &ca,
                "--username",
                &d.token,
                "--prefix",
                "chat:mqttjs",
            ]);
            mqttjs(&[
                "--url",
                url,
                "--version",
                v,
                "--ca",
                &ca,
                "--case",
                "refused",
                "--expect-rc",
                rc,
            ]);
        }
    }
}

/// A JWT signed by the Python signer is accepted as MQTT username (3.1.1
/// and 5) and its capability is enforced; one signed with another secret,
/// or expired, is refused (v5 0x86, 3.1.1 4); no credentials at all is
/// refused (v5 0x87, 3.1.1 5).
#[test]
fn python_signed_jwt_as_mqtt_username() {
    let (_dir, tern) = server(&[]);
    let port = tern.mqtt.port();
    let now_s = now_ms() / 1000;
    let jwt = sign_jwt(ROOT, now_s, now_s + 600, NARROW_CAP, Some("bob"));
    let rt = runtime();
    rt.block_on(check_narrow_capability(port, &jwt, "bob"));
    assert_eq!(
        rt.block_on(v4_connack(port, "bob", Some(&jwt))),
        Ok(rumqttc::ConnectReturnCode::Success),
        "the JWT over MQTT 3.1.1"
    );

    let forged = sign_jwt(
        "app.root:not-the-secret",
        now_s,
        now_s + 600,
        NARROW_CAP,
        None,
    );
    let expired = sign_jwt(ROOT, now_s - 1200, now_s - 600, NARROW_CAP, None);
    for (what, jwt) in [("forged", &forged), ("expired", &expired)] {
        let r = rt.block_on(v5::Client::connect(v5::options("jwt-bad", port, Some(jwt))));
        assert!(
            matches!(r, Err(Ok(v5::ConnectReturnCode::BadUserNamePassword))),
            "{what} JWT over v5: expected CONNACK 0x86, got {:?}",
            r.err()
        );
        assert_eq!(
            rt.block_on(v4_connack(port, "jwt-bad", Some(jwt))),
            Ok(rumqttc::ConnectReturnCode::BadUserNamePassword),
            "{what} JWT over 3.1.1: expected CONNACK 4"
        );
    }
    let r = rt.block_on(v5::Client::connect(v5::options("anon", port, None)));
    assert!(
        matches!(r, Err(Ok(v5::ConnectReturnCode::NotAuthorized))),
        "anonymous over v5 with keys configured: expected 0x87, got {:?}",
        r.err()
    );
    assert_eq!(
        rt.block_on(v4_connack(port, "anon", None)),
        Ok(rumqttc::ConnectReturnCode::NotAuthorized),
        "anonymous over 3.1.1 with keys configured: expected 5"
    );
}

// ===========================================================================
// Basic auth with the key
// ===========================================================================

/// HTTP Basic auth with the key and TokenParams JSON: the token asked for;
/// an empty body gets the key's capability and a one-hour ttl; a wrong
/// secret, an unknown key, a key differing from the path, and bad JSON are
/// refused.
#[test]
fn basic_auth_token_params() {
    let (_dir, tern) = server(&[]);
    let base = base(tern.http);
    let url = token_url(&base, NARROW_NAME);
    let params = r#"{"ttl":60000,"capability":"{\"sensors/#\":[\"subscribe\"],\"chat:*\":[\"subscribe\",\"publish\"]}","clientId":"carol"}"#;
    let r = http("post", &url, Some(Body::Json(params)), Some(NARROW), None);
    let d = assert_details(&r, "Basic auth with TokenParams");
    assert_eq!(d.key_name, NARROW_NAME);
    assert_eq!(d.capability, NARROW_CAP);
    assert_eq!(d.client_id.as_deref(), Some("carol"));
    assert_eq!(d.expires - d.issued, 60_000);
    runtime().block_on(check_narrow_capability(tern.mqtt.port(), &d.token, "carol"));

    // No body: the key's capability, the default ttl, no client id.
    let r = http("post", &url, Some(Body::Json("")), Some(NARROW), None);
    let d = assert_details(&r, "Basic auth without TokenParams");
    assert_eq!(d.capability, NARROW_CAP);
    assert_eq!(d.expires - d.issued, HOUR_MS);
    assert_eq!(d.client_id, None);

    // The root key's capability is everything.
    let r = http(
        "post",
        &token_url(&base, "app.root"),
        Some(Body::Json(r#"{"ttl":1000}"#)),
        Some(ROOT),
        None,
    );
    let d = assert_details(&r, "Basic auth with the root key");
    assert_eq!(d.capability, r#"{"*":["*"]}"#);
    assert_eq!(d.expires - d.issued, 1000);

    let body = Some(Body::Json("{}"));
    assert_error(
        &http("post", &url, body, Some("app.narrow:wrong"), None),
        401,
        40101,
        "wrong secret",
    );
    assert_error(
        &http(
            "post",
            &token_url(&base, "app.ghost"),
            Some(Body::Json("{}")),
            Some("app.ghost:whatever"),
            None,
        ),
        401,
        40101,
        "unknown key",
    );
    assert_error(
        &http("post", &url, Some(Body::Json("{}")), Some(ROOT), None),
        401,
        40101,
        "Basic auth key differing from the key in the path",
    );
    assert_error(
        &http(
            "post",
            &url,
            Some(Body::Json("{not json")),
            Some(NARROW),
            None,
        ),
        400,
        40000,
        "TokenParams that are not JSON",
    );
    assert_error(
        &http(
            "post",
            &url,
            Some(Body::Json(r#"{"ttl":86400001}"#)),
            Some(NARROW),
            None,
        ),
        400,
        40003,
        "Basic auth ttl over 24 h",
    );
    assert_error(
        &http(
            "post",
            &url,
            Some(Body::Json(r#"{"capability":"{\"admin\":[\"publish\"]}"}"#)),
            Some(NARROW),
            None,
        ),
        401,
        40160,
        "Basic auth capability outside the key's",
    );
}

/// A `tern serve` started without the test harness (which always binds
/// `--http` to loopback), so the HTTP listener can be non-loopback.
struct OwnTern {
    child: Child,
    http: SocketAddr,
    _data: TempDir,
}

impl OwnTern {
    fn start(args: &[&str]) -> OwnTern {
        let data = TempDir::new("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(data.path("d"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tern");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut http = None;
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("tern did not print `ready` within 30 s");
            if let Some(a) = line.strip_prefix("listening http ") {
                let a: SocketAddr = a.trim().parse().expect("address");
                // Reach a wildcard listener through loopback.
                http = Some(SocketAddr::from(([127, 0, 0, 1], a.port())));
            } else if line.trim() == "ready" {
                break;
            }
        }
        OwnTern {
            child,
            http: http.expect("no `listening http` line"),
            _data: data,
        }
    }
}

impl Drop for OwnTern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Basic auth with the key sends the secret: on plain HTTP it is refused
/// (401 40103) unless the listener is loopback or `--key-login-plain true`;
/// over HTTPS it is always accepted. Signed TokenRequests (no secret on the
/// wire) are accepted everywhere.
#[test]
fn basic_auth_refused_on_plain_http_unless_allowed() {
    let dir = TempDir::new("plain");
    let flags = setup(&dir);
    let key_and_config: Vec<&str> = flags[..4].iter().map(String::as_str).collect();

    // A non-loopback (wildcard) HTTP listener, default settings.
    let mut args = vec!["--mqtt", "127.0.0.1:0", "--http", "0.0.0.0:0"];
    args.extend(&key_and_config);
    let t = OwnTern::start(&args);
    let url = token_url(&base(t.http), NARROW_NAME);
    assert_error(
        &http("post", &url, Some(Body::Json("{}")), Some(NARROW), None),
        401,
        40103,
        "Basic auth on a plain non-loopback listener",
    );
    let req = sign_request(NARROW, now_ms(), &nonce(), None, None, None);
    assert_details(
        &http("post", &url, Some(Body::Json(&req)), None, None),
        "a signed TokenRequest on a plain non-loopback listener",
    );
    drop(t);

    // The same listener with --key-login-plain true.
    args.extend(["--key-login-plain", "true"]);
    let t = OwnTern::start(&args);
    assert_details(
        &http(
            "post",
            &token_url(&base(t.http), NARROW_NAME),
            Some(Body::Json("{}")),
            Some(NARROW),
            None,
        ),
        "Basic auth with --key-login-plain true",
    );
    drop(t);

    // Loopback (the harness), default: accepted on plain HTTP.
    let (_d, tern) = server(&[]);
    assert_details(
        &http(
            "post",
            &token_url(&base(tern.http), NARROW_NAME),
            Some(Body::Json("{}")),
            Some(NARROW),
            None,
        ),
        "Basic auth on a loopback listener",
    );
    drop(tern);

    // Loopback with --key-login-plain false: refused on HTTP, fine on HTTPS.
    let (d, tern) = server(&["--key-login-plain", "false"]);
    assert_error(
        &http(
            "post",
            &token_url(&base(tern.http), NARROW_NAME),
            Some(Body::Json("{}")),
            Some(NARROW),
            None,
        ),
        401,
        40103,
        "Basic auth on plain HTTP with --key-login-plain false",
    );
    let https = format!("https://localhost:{}", tern.https.unwrap().port());
    assert_details(
        &http(
            "post",
            &token_url(&https, NARROW_NAME),
            Some(Body::Json("{}")),
            Some(NARROW),
            Some(&d.path("ca.pem")),
        ),
        "Basic auth over HTTPS with --key-login-plain false",
    );
}

// ===========================================================================
// Refusals
// ===========================================================================

/// Every TokenRequest the server must refuse, with its HTTP status and
/// Ably error code; and the accepted cases just inside each limit.
#[test]
fn token_request_refusals() {
    let (_dir, tern) = server(&[]);
    let base = base(tern.http);
    let post = |key_name: &str, body: &str| post_request(&base, key_name, body);
    let now = now_ms();

    // The mac: signed with another secret, or a field changed after signing.
    let req = sign_request("app.narrow:not-the-secret", now, &nonce(), None, None, None);
    assert_error(
        &post(NARROW_NAME, &req),
        401,
        40101,
        "mac made with a wrong secret",
    );
    let req = sign_request(NARROW, now, &nonce(), Some(60_000), None, None);
    let tampered = req.replace("\"ttl\": 60000", "\"ttl\": 60001");
    assert_ne!(req, tampered, "the signer's JSON changed shape: {req}");
    assert_error(
        &post(NARROW_NAME, &tampered),
        401,
        40101,
        "ttl changed after signing",
    );
    let req = sign_request(NARROW, now, &nonce(), None, None, Some("alice"));
    let tampered = req.replace("\"alice\"", "\"admin\"");
    assert_error(
        &post(NARROW_NAME, &tampered),
        401,
        40101,
        "clientId changed after signing",
    );

    // The timestamp: more than 2 minutes off either way; 1 minute is fine.
    for (off, what) in [(-150_000i64, "150 s old"), (150_000, "150 s ahead")] {
        let ts = (now as i64 + off) as u64;
        let req = sign_request(NARROW, ts, &nonce(), None, None, None);
        assert_error(
            &post(NARROW_NAME, &req),
            401,
            40104,
            &format!("timestamp {what}"),
        );
    }
    let req = sign_request(NARROW, now - 60_000, &nonce(), None, None, None);
    assert_details(&post(NARROW_NAME, &req), "timestamp 60 s old");

    // The nonce: at least 16 characters.
    let req = sign_request(NARROW, now, "0123456789abcde", None, None, None);
    assert_error(&post(NARROW_NAME, &req), 400, 40003, "15-character nonce");
    let sixteen = nonce()[8..].to_owned();
    assert_eq!(sixteen.len(), 16);
    let req = sign_request(NARROW, now, &sixteen, None, None, None);
    assert_details(&post(NARROW_NAME, &req), "16-character nonce");

    // The ttl: at most 24 h, and positive.
    let req = sign_request(NARROW, now, &nonce(), Some(DAY_MS + 1), None, None);
    assert_error(&post(NARROW_NAME, &req), 400, 40003, "ttl of 24 h + 1 ms");
    let req = sign_request(NARROW, now, &nonce(), Some(0), None, None);
    assert_error(&post(NARROW_NAME, &req), 400, 40003, "ttl of 0");
    let req = sign_request(NARROW, now, &nonce(), Some(DAY_MS), None, None);
    let d = assert_details(&post(NARROW_NAME, &req), "ttl of exactly 24 h");
    assert_eq!(d.expires - d.issued, DAY_MS);

    // The capability: nothing in common with the key's is refused; a
    // request reaching beyond the key's is cut down to it, never widened.
    let req = sign_request(
        NARROW,
        now,
        &nonce(),
        None,
        Some(r#"{"admin/#":["publish"]}"#),
        None,
    );
    assert_error(
        &post(NARROW_NAME, &req),
        401,
        40160,
        "capability outside the key's",
    );
    let req = sign_request(
        NARROW,
        now,
        &nonce(),
        None,
        Some(r#"{"chat:*":["publish","subscribe","presence"]}"#),
        None,
    );
    let d = assert_details(&post(NARROW_NAME, &req), "an operation the key lacks");
    assert_eq!(
        d.capability, r#"{"chat:*":["publish","subscribe"]}"#,
        "cut down to the key's operations"
    );
    let req = sign_request(
        NARROW,
        now,
        &nonce(),
        None,
        Some(r#"{"*":["*"],"admin":["publish"]}"#),
        None,
    );
    let d = assert_details(&post(NARROW_NAME, &req), "capability beyond the key's");
    assert_eq!(d.capability, NARROW_CAP, "cut down to the key's capability");

    // The key: the path names another key, or no such key.
    let req = sign_request(NARROW, now, &nonce(), None, None, None);
    assert_error(
        &post("app.root", &req),
        401,
        40101,
        "keyName differing from the path",
    );
    let req = sign_request("app.ghost:secret", now, &nonce(), None, None, None);
    assert_error(&post("app.ghost", &req), 401, 40101, "unknown key");

    // Malformed bodies.
    assert_error(&post(NARROW_NAME, "{not json"), 400, 40000, "not JSON");
    let req = sign_request(NARROW, now, &nonce(), None, None, None);
    let mut v: Value = serde_json::from_str(&req).unwrap();
    v.as_object_mut().unwrap().remove("mac");
    assert_error(&post(NARROW_NAME, &v.to_string()), 400, 40003, "no mac");
    let mut v: Value = serde_json::from_str(&req).unwrap();
    v.as_object_mut().unwrap().remove("nonce");
    assert_error(&post(NARROW_NAME, &v.to_string()), 400, 40003, "no nonce");
    assert_error(
        &http(
            "post",
            &token_url(&base, NARROW_NAME),
            Some(Body::Bytes(100 * 1024)),
            None,
            None,
        ),
        413,
        40009,
        "a 100 KB body",
    );
}

/// A nonce is single-use: the same signed TokenRequest twice is refused the
/// second time (40105), and so is a new request reusing the nonce.
#[test]
fn replayed_nonce_is_refused() {
    let (_dir, tern) = server(&[]);
    let base = base(tern.http);
    let n = nonce();
    let req = sign_request(NARROW, now_ms(), &n, Some(60_000), None, None);
    assert_details(&post_request(&base, NARROW_NAME, &req), "first use");
    assert_error(
        &post_request(&base, NARROW_NAME, &req),
        401,
        40105,
        "replay",
    );
    let again = sign_request(NARROW, now_ms() + 1, &n, Some(30_000), None, None);
    assert_error(
        &post_request(&base, NARROW_NAME, &again),
        401,
        40105,
        "a new request with a used nonce",
    );
    // A fresh nonce is fine.
    let req = sign_request(NARROW, now_ms(), &nonce(), Some(60_000), None, None);
    assert_details(&post_request(&base, NARROW_NAME, &req), "fresh nonce");
}

/// `GET /time` is `[ms]` within a few seconds of the local clock, on HTTP
/// and HTTPS.
#[test]
fn server_time() {
    let (dir, tern) = server(&[]);
    let https = format!("https://localhost:{}", tern.https.unwrap().port());
    for (url, ca) in [
        (format!("{}/time", base(tern.http)), None),
        (format!("{https}/time"), Some(dir.path("ca.pem"))),
    ] {
        let before = now_ms();
        let r = http("get", &url, None, None, ca.as_deref());
        let after = now_ms();
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        let arr = r.body.as_array().expect("an array");
        assert_eq!(arr.len(), 1, "{url}: {}", r.body);
        let t = arr[0].as_u64().expect("an integer");
        assert!(
            t + 3_000 >= before && t <= after + 3_000,
            "{url}: server time {t} is not within 3 s of [{before}, {after}]"
        );
    }
}

/// Every error of the endpoint has Ably's shape, whatever the body size:
/// a 3 MB body gets 413 with `error.code` 40009 like a 100 KB one (not the
/// HTTP framework's plain-text "length limit exceeded").
#[test]
fn oversized_body_gets_an_ably_error_at_any_size() {
    let (_dir, tern) = server(&[]);
    let url = token_url(&base(tern.http), NARROW_NAME);
    for bytes in [65 * 1024, 3 * 1024 * 1024] {
        assert_error(
            &http("post", &url, Some(Body::Bytes(bytes)), None, None),
            413,
            40009,
            &format!("a {bytes}-byte body"),
        );
    }
}

/// The HTTP authentication scheme name is case-insensitive (RFC 9110
/// 11.1): `basic` works like `Basic`.
#[test]
fn basic_auth_scheme_is_case_insensitive() {
    let (_dir, tern) = server(&[]);
    let url = token_url(&base(tern.http), NARROW_NAME);
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(
            r#"
import base64, json, sys, urllib.request, urllib.error
url, scheme, cred = sys.argv[1:4]
req = urllib.request.Request(url, data=b"{}", method="POST")
req.add_header("Authorization", scheme + " " + base64.b64encode(cred.encode()).decode())
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
print(json.dumps({"status": status, "body": json.loads(body)}))
"#,
        )
        .args([&url, "basic", NARROW]);
    let out = run(cmd, "python3 (lowercase basic)");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let r = Resp {
        status: v["status"].as_u64().unwrap() as u16,
        body: v["body"].clone(),
    };
    assert_details(&r, "Authorization: basic ... (lowercase scheme)");
}
