//! Tern's transports end to end against the real binary: MQTT over TLS
//! (`--mqtts`), MQTT over WebSocket (`ws://HOST:PORT/mqtt` on `--http`) and
//! secure WebSocket (`wss://` on `--https`), and certificate reload.
//!
//! Certificates come from a test CA made here with rcgen (a CA, and server
//! certificates for `localhost` / `127.0.0.1` signed by it, written to a
//! temporary directory). Clients:
//! - rumqttc v4 and v5 over TLS, trusting the test CA;
//! - rustls directly, to see which certificate and TLS version the server
//!   presents, and that untrusted or misnamed servers are refused;
//! - paho-mqtt 2.x over TLS (`tls_set(ca_certs=...)`), `ws` and `wss`
//!   (`tests/py/transport_paho.py`);
//! - Debian's `mosquitto_pub` / `mosquitto_sub --cafile`;
//! - MQTT.js 5 in Node over `ws://` and `wss://` (`tests/js/ws_roundtrip.mjs`;
//!   `scripts/test` runs `npm ci` in `tests/js`);
//! - a hand-written WebSocket client, for frame-level behaviour (packets
//!   spanning frames, several packets in one frame, fragmented messages,
//!   text frames).
//!
//! Every read has a deadline and every child process is killed after
//! `CHILD_TIMEOUT`.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::Tern;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rumqttc::tokio_rustls::rustls;
use rustls::pki_types::{CertificateDer, ServerName};

/// Bound for "the server answers".
const WAIT: Duration = Duration::from_secs(10);
/// Any child process (python, node, mosquitto clients) is killed after this.
const CHILD_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a changed certificate may take to be served (`--tls-reload-secs 1`).
const RELOAD_WITHIN: Duration = Duration::from_secs(8);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Test PKI
// ---------------------------------------------------------------------------

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A test CA and a temporary directory for the files; removed on drop.
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
}

/// A server certificate and its key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "tern-transports-{}-{}-{name}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Tern test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write ca.pem");
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            ca_der: cert.der().clone(),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1` (CN `cn`) with
    /// serial number `serial`, signed by the CA.
    fn leaf(&self, serial: u64, cn: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_path()).expect("read ca.pem")
    }
    fn cert_path(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    fn key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Writes `leaf` over `server.pem` / `server.key` (in place, as a
    /// renewal job would).
    fn install(&self, leaf: &Leaf) {
        std::fs::write(self.cert_path(), &leaf.cert_pem).expect("write server.pem");
        std::fs::write(self.key_path(), &leaf.key_pem).expect("write server.key");
    }

    /// The `tern serve` flags for TLS on both TLS listeners.
    fn flags(&self) -> Vec<String> {
        vec![
            "--mqtts".into(),
            "127.0.0.1:0".into(),
            "--https".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            self.cert_path().display().to_string(),
            "--tls-key".into(),
            self.key_path().display().to_string(),
            "--tls-reload-secs".into(),
            "1".into(),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, a certificate for `localhost`/`127.0.0.1` installed, and tern
/// serving it on `--mqtts` and `--https`.
fn tls_server(extra: &[&str]) -> (Pki, Leaf, Tern) {
    let pki = Pki::new("ca");
    let leaf = pki.leaf(1, "localhost");
    pki.install(&leaf);
    let mut flags = pki.flags();
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let tern = Tern::start(&flags);
    assert!(tern.mqtts.is_some(), "no `listening mqtts` line");
    assert!(tern.https.is_some(), "no `listening https` line");
    (pki, leaf, tern)
}

// ---------------------------------------------------------------------------
// rustls directly
// ---------------------------------------------------------------------------

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration trusting `roots`, speaking `versions`, offering `alpn`.
fn client_config(
    roots: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).expect("add a root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// What a finished handshake showed.
#[derive(Debug)]
struct Handshake {
    cert: CertificateDer<'static>,
    version: rustls::ProtocolVersion,
    alpn: Option<Vec<u8>>,
}

/// A TLS handshake with `addr` as `server_name`, bounded by [`WAIT`].
fn handshake(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<Handshake, String> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    let mut sock = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.set_write_timeout(Some(WAIT)).unwrap();
    let deadline = Instant::now() + WAIT;
    while conn.is_handshaking() {
        if Instant::now() > deadline {
            return Err("handshake did not finish in time".into());
        }
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err("the server closed the connection during the handshake".into());
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no server certificate")?
        .clone()
        .into_owned();
    let version = conn.protocol_version().ok_or("no protocol version")?;
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    Ok(Handshake {
        cert,
        version,
        alpn,
    })
}

fn tls13_12() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

// ---------------------------------------------------------------------------
// rumqttc
// ---------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A connected rumqttc v4 client; its event loop feeds `rx`.
struct V4 {
    c: rumqttc::AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<rumqttc::Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl V4 {
    /// Connects and waits for a successful CONNACK; `Err` with the reason
    /// when the connection (TLS included) fails.
    async fn connect(o: rumqttc::MqttOptions) -> Result<V4, String> {
        let (c, mut el) = rumqttc::AsyncClient::new(o, 64);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            break;
                        }
                    }
                    Ok(rumqttc::Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        let mut v = V4 { c, rx, task };
        match v.next("CONNACK").await? {
            rumqttc::Packet::ConnAck(a) if a.code == rumqttc::ConnectReturnCode::Success => Ok(v),
            p => Err(format!("expected a successful CONNACK, got {p:?}")),
        }
    }

    async fn next(&mut self, what: &str) -> Result<rumqttc::Packet, String> {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Err(_) => Err(format!("timed out waiting for {what}")),
            Ok(None) => Err(format!("event loop ended while waiting for {what}")),
            Ok(Some(r)) => r,
        }
    }

    /// Subscribes to `topic` (QoS 1).
    async fn subscribe(&mut self, topic: &str) -> Result<(), String> {
        self.c
            .subscribe(topic, rumqttc::QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            if let rumqttc::Packet::SubAck(a) = self.next("SUBACK").await? {
                return match a.return_codes.as_slice() {
                    [rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)] => Ok(()),
                    rc => Err(format!("SUBACK {rc:?} for {topic}")),
                };
            }
        }
    }

    /// Waits for a PUBLISH on `topic` with `payload`.
    async fn expect_publish(&mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
        loop {
            if let rumqttc::Packet::Publish(p) = self.next("PUBLISH").await? {
                if p.topic == topic && p.payload.as_ref() == payload {
                    return Ok(());
                }
                return Err(format!(
                    "unexpected PUBLISH on {} ({} bytes)",
                    p.topic,
                    p.payload.len()
                ));
            }
        }
    }

    async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.c
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .map_err(|e| e.to_string())
    }

    /// Subscribes to `topic`, publishes to it and receives the message back.
    async fn roundtrip(&mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.subscribe(topic).await?;
        self.publish(topic, payload).await?;
        self.expect_publish(topic, payload).await
    }

    async fn close(self) {
        let _ = self.c.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

fn v4_options(
    id: &str,
    host: &str,
    port: u16,
    transport: rumqttc::Transport,
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(transport);
    o
}

fn tls_transport(cfg: Arc<rustls::ClientConfig>) -> rumqttc::Transport {
    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(cfg))
}

/// A v5 client: connect, subscribe, publish QoS 1, receive it back.
async fn v5_roundtrip(
    o: rumqttc::v5::MqttOptions,
    topic: &str,
    payload: &[u8],
) -> Result<(), String> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, SubscribeReasonCode};
    use rumqttc::v5::{AsyncClient, Event};
    let (c, mut el) = AsyncClient::new(o, 64);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut next = async || -> Result<Packet, String> {
        loop {
            match tokio::time::timeout_at(deadline, el.poll()).await {
                Err(_) => return Err("timed out".into()),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(Event::Incoming(p))) => return Ok(p),
                Ok(Ok(Event::Outgoing(_))) => {}
            }
        }
    };
    match next().await? {
        Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {}
        p => return Err(format!("expected a successful CONNACK, got {p:?}")),
    }
    c.subscribe(topic, QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if let Packet::SubAck(a) = next().await? {
            if a.return_codes != [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
                return Err(format!("SUBACK {:?}", a.return_codes));
            }
            break;
        }
    }
    c.publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if let Packet::Publish(p) = next().await? {
            if p.topic.as_ref() != topic.as_bytes() || p.payload.as_ref() != payload {
                return Err(format!("unexpected PUBLISH {p:?}"));
            }
            break;
        }
    }
    let _ = c.disconnect().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process killed (by its own handle) when dropped, with its stdout
/// lines arriving on a channel and its stderr collected.
struct Proc {
    child: Child,
    what: String,
    lines: mpsc::Receiver<String>,
    stdout_seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(mut cmd: Command, what: &str) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e} (scripts/test installs it)"));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            child,
            what: what.to_owned(),
            lines,
            stdout_seen: Vec::new(),
            stderr,
        }
    }

    /// The next stdout line within `within`.
    fn line(&mut self, within: Duration) -> Option<String> {
        let l = self.lines.recv_timeout(within).ok()?;
        self.stdout_seen.push(l.clone());
        Some(l)
    }

    /// Waits for the process to end (killing it after `CHILD_TIMEOUT`);
    /// returns its status (`None` if killed) and whole stdout.
    fn finish(mut self) -> (Option<ExitStatus>, String, String) {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for child") {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end at EOF, shortly after exit.
        let end = Instant::now() + Duration::from_secs(2);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => self.stdout_seen.push(l),
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().unwrap().clone();
        (status, self.stdout_seen.join("\n"), stderr)
    }

    /// Runs to the end and panics, with its output, unless it succeeded.
    fn success(self) -> String {
        let what = self.what.clone();
        let (status, out, err) = self.finish();
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
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `python3 tests/py/transport_paho.py ARGS`, which must print `ok`.
fn paho(args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/py/transport_paho.py"))
        .args(args);
    let out = Proc::spawn(cmd, &format!("transport_paho.py {}", args.join(" "))).success();
    assert!(out.contains("ok:"), "no `ok` from transport_paho.py: {out}");
    out
}

fn js_dir() -> PathBuf {
    repo().join("tests/js")
}

/// `node tests/js/ws_roundtrip.mjs ARGS`, not yet waited for.
fn node(args: &[&str]) -> Proc {
    assert!(
        js_dir().join("node_modules/mqtt/package.json").exists(),
        "MQTT.js is not installed: run scripts/test (or `npm ci` in tests/js)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(js_dir().join("ws_roundtrip.mjs"))
        .args(args)
        .current_dir(js_dir());
    Proc::spawn(cmd, &format!("node ws_roundtrip.mjs {}", args.join(" ")))
}

/// A `tern serve` whose stderr (the log) is kept, for tests that check it.
/// Started like `common::Tern`, plus `extra`.
struct LoggedTern {
    child: Child,
    mqtts: SocketAddr,
    https: SocketAddr,
    log: Arc<Mutex<String>>,
    data_dir: PathBuf,
}

impl LoggedTern {
    fn start(extra: &[String]) -> LoggedTern {
        let data_dir = std::env::temp_dir().join(format!(
            "tern-transports-data-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["serve", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tern");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                let mut l = sink.lock().unwrap();
                l.push_str(&strip_ansi(&line));
                l.push('\n');
            }
        });
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
        let (mut mqtts, mut https) = (None, None);
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("tern did not print `ready` within 30 s");
            let parse = |a: &str| -> SocketAddr { a.trim().parse().expect("listening address") };
            if let Some(a) = line.strip_prefix("listening mqtts ") {
                mqtts = Some(parse(a));
            } else if let Some(a) = line.strip_prefix("listening https ") {
                https = Some(parse(a));
            } else if line.trim() == "ready" {
                break;
            }
        }
        LoggedTern {
            child,
            mqtts: mqtts.expect("no `listening mqtts` line"),
            https: https.expect("no `listening https` line"),
            log,
            data_dir,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for LoggedTern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The log without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// MQTT bytes and a hand-written WebSocket client
// ---------------------------------------------------------------------------

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    remaining_length(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

fn utf8(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// MQTT 3.1.1 CONNECT, clean session, keep alive 60 s.
fn connect_v311(client_id: &str) -> Vec<u8> {
    let mut b = Vec::new();
    utf8("MQTT", &mut b);
    b.extend_from_slice(&[4, 0x02, 0, 60]);
    utf8(client_id, &mut b);
    packet(0x10, &b)
}

/// MQTT 3.1.1 SUBSCRIBE of `filter` at QoS 0.
fn subscribe_v311(pkid: u16, filter: &str) -> Vec<u8> {
    let mut b = pkid.to_be_bytes().to_vec();
    utf8(filter, &mut b);
    b.push(0);
    packet(0x82, &b)
}

/// MQTT PUBLISH at QoS 0.
fn publish_qos0(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    utf8(topic, &mut b);
    b.extend_from_slice(payload);
    packet(0x30, &b)
}

/// Splits the first complete MQTT packet off the front of `buf`.
fn take_packet(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let mut mult = 1usize;
    let mut i = 1;
    let end = loop {
        let &b = buf.get(i)?;
        len += (b & 0x7f) as usize * mult;
        mult *= 128;
        i += 1;
        if b & 0x80 == 0 {
            break i + len;
        }
    };
    (buf.len() >= end).then(|| buf.drain(..end).collect())
}

const WS_BINARY: u8 = 0x2;
const WS_TEXT: u8 = 0x1;
const WS_CONTINUATION: u8 = 0x0;
const WS_CLOSE: u8 = 0x8;
const WS_PING: u8 = 0x9;

/// A minimal RFC 6455 client on a plain TCP stream.
struct RawWs {
    s: TcpStream,
    buf: Vec<u8>,
    /// MQTT bytes received in binary frames, not yet split into packets.
    mqtt: Vec<u8>,
    /// The subprotocol the server chose.
    protocol: Option<String>,
}

impl RawWs {
    /// Opens `ws://addr/mqtt` offering `protocols`; panics unless the server
    /// switches protocols.
    fn connect(addr: SocketAddr, protocols: &[&str]) -> RawWs {
        let mut s = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the HTTP listener");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        let mut req = format!(
            "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if !protocols.is_empty() {
            req.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                protocols.join(", ")
            ));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())
            .expect("send the upgrade request");
        let mut buf = Vec::new();
        let deadline = Instant::now() + WAIT;
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(Instant::now() < deadline, "no upgrade response in time");
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).expect("read the upgrade response");
            assert!(n > 0, "connection closed before the upgrade response");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols, got:\n{head}"
        );
        // RFC 6455: base64(SHA-1(key + GUID)) for the sample key.
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "wrong Sec-WebSocket-Accept:\n{head}"
        );
        let protocol = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-protocol")
                .then(|| v.trim().to_owned())
        });
        RawWs {
            s,
            buf: buf[head_end..].to_vec(),
            mqtt: Vec::new(),
            protocol,
        }
    }

    /// Sends one frame (masked, as a client must).
    fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f)
    }

    fn send_binary(&mut self, payload: &[u8]) {
        self.send_frame(true, WS_BINARY, payload)
            .expect("send a binary frame");
    }

    /// The next frame `(fin, opcode, payload)`; `None` when the server closed
    /// the TCP connection (or reset it); panics after [`WAIT`].
    fn read_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "the server masked a frame");
                let (len, at) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((b0 & 0x80 != 0, b0 & 0x0f, payload));
                }
            }
            assert!(
                Instant::now() < deadline,
                "no WebSocket frame within {WAIT:?}"
            );
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("no WebSocket frame within {WAIT:?}")
                }
                Err(_) => return None,
            }
        }
    }

    /// The next MQTT packet from binary frames (answering pings).
    fn read_packet(&mut self) -> Vec<u8> {
        loop {
            if let Some(p) = take_packet(&mut self.mqtt) {
                return p;
            }
            match self.read_frame() {
                None => panic!("the server closed the WebSocket while an MQTT packet was expected"),
                Some((_, WS_BINARY | WS_CONTINUATION, data)) => self.mqtt.extend_from_slice(&data),
                Some((_, WS_PING, data)) => {
                    let _ = self.send_frame(true, 0xA, &data);
                }
                Some((_, op, data)) => panic!("unexpected frame opcode {op:#x}: {data:?}"),
            }
        }
    }
}

// ===========================================================================
// MQTT over TLS
// ===========================================================================

/// rumqttc v4 over TLS (a rustls `ClientConfig` trusting the test CA,
/// server name `localhost`): subscribe, publish QoS 1, receive.
#[test]
fn tls_rumqttc_v4_round_trip() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let port = tern.mqtts.unwrap().port();
    let cfg = client_config(&[&pki.ca_der], &tls13_12(), &[]);
    runtime().block_on(async {
        let mut c = V4::connect(v4_options("tls-v4", "localhost", port, tls_transport(cfg)))
            .await
            .expect("rumqttc v4 connects over TLS");
        c.roundtrip("tls/v4", b"hello over TLS, v4")
            .await
            .expect("round trip over TLS");
        c.close().await;
    });
}

/// rumqttc v5 over TLS with `TlsConfiguration::Simple { ca }` (the CA PEM),
/// server name `127.0.0.1` (an IP address SAN).
#[test]
fn tls_rumqttc_v5_round_trip() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let port = tern.mqtts.unwrap().port();
    let mut o = rumqttc::v5::MqttOptions::new("tls-v5", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(rumqttc::Transport::tls(pki.ca_pem(), None, None));
    runtime()
        .block_on(v5_roundtrip(o, "tls/v5", b"hello over TLS, v5"))
        .expect("rumqttc v5 round trip over TLS");
}

/// paho-mqtt (Python's ssl) over TLS with `tls_set(ca_certs=...)`, 3.1.1 and
/// 5, including a 200 KB message; and TLS <-> plain TCP clients on one topic.
#[test]
fn tls_paho_round_trip() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let tls = format!("tls:{}", tern.mqtts.unwrap().port());
    let tcp = format!("tcp:{}", tern.mqtt.port());
    let ca = pki.ca_path().display().to_string();
    for v in ["3", "5"] {
        paho(&[
            "--case",
            "roundtrip",
            "--version",
            v,
            "--sub",
            &tls,
            "--cafile",
            &ca,
        ]);
        paho(&[
            "--case",
            "roundtrip",
            "--version",
            v,
            "--sub",
            &tls,
            "--pub",
            &tcp,
            "--cafile",
            &ca,
        ]);
    }
}

/// `mosquitto_sub` / `mosquitto_pub --cafile` (OpenSSL) over TLS: a retained
/// message, then a live one, v5 subscriber and 3.1.1 publisher.
#[test]
fn tls_mosquitto_clients() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let port = tern.mqtts.unwrap().port().to_string();
    let ca = pki.ca_path().display().to_string();
    let base = ["-h", "localhost", "-p", &port, "--cafile", &ca];
    let publish = |msg: &str, retain: bool, version: &str| {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(base)
            .args(["-V", version, "-q", "1", "-t", "tls/mosquitto", "-m", msg]);
        if retain {
            cmd.arg("-r");
        }
        Proc::spawn(cmd, &format!("mosquitto_pub -m {msg}")).success();
    };
    publish("retained over TLS", true, "mqttv311");
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(base).args([
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-t",
        "tls/mosquitto",
        "-C",
        "2",
        "-W",
        "20",
        "-v",
    ]);
    let mut sub = Proc::spawn(cmd, "mosquitto_sub over TLS");
    assert_eq!(
        sub.line(WAIT).as_deref(),
        Some("tls/mosquitto retained over TLS"),
        "mosquitto_sub did not get the retained message over TLS"
    );
    // The retained message came after SUBACK: the subscription is in place.
    publish("live over TLS", false, "mqttv5");
    assert_eq!(
        sub.line(WAIT).as_deref(),
        Some("tls/mosquitto live over TLS"),
        "mosquitto_sub did not get the live message over TLS"
    );
    sub.success();
}

/// Clients that do not trust the server fail the handshake (unknown CA, or
/// a name the certificate is not for), and the server keeps serving others.
#[test]
fn tls_untrusted_client_fails_and_others_are_served() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let (mqtts, https) = (tern.mqtts.unwrap(), tern.https.unwrap());
    let other = Pki::new("other");

    // rustls with another CA: UnknownIssuer, on both TLS listeners.
    for addr in [mqtts, https] {
        let err = handshake(
            addr,
            client_config(&[&other.ca_der], &tls13_12(), &[]),
            "localhost",
        )
        .expect_err("a client trusting another CA must not complete the handshake");
        assert!(
            err.contains("UnknownIssuer") || err.contains("unknown issuer"),
            "expected an unknown-issuer failure, got: {err}"
        );
    }
    // The right CA but a name the certificate is not for.
    let err = handshake(
        mqtts,
        client_config(&[&pki.ca_der], &tls13_12(), &[]),
        "example.com",
    )
    .expect_err("a certificate for localhost must not pass for example.com");
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for name"),
        "expected a name mismatch, got: {err}"
    );

    let rt = runtime();
    // rumqttc with another CA: the connection fails with a TLS error.
    let other_cfg = client_config(&[&other.ca_der], &tls13_12(), &[]);
    let err = rt
        .block_on(V4::connect(v4_options(
            "untrusted",
            "localhost",
            mqtts.port(),
            tls_transport(other_cfg),
        )))
        .err()
        .expect("rumqttc trusting another CA must not connect");
    assert!(err.contains("TLS") || err.contains("certificate"), "{err}");

    // paho (Python ssl) with another CA.
    paho(&[
        "--case",
        "untrusted",
        "--sub",
        &format!("tls:{}", mqtts.port()),
        "--cafile",
        &other.ca_path().display().to_string(),
    ]);
    // mosquitto_pub with another CA fails.
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "localhost", "-p", &mqtts.port().to_string()])
        .args(["--cafile", &other.ca_path().display().to_string()])
        .args(["-t", "tls/untrusted", "-m", "x"]);
    let (status, out, err) = Proc::spawn(cmd, "mosquitto_pub with another CA").finish();
    assert!(
        status.is_some_and(|s| !s.success()),
        "mosquitto_pub trusting another CA should fail: {status:?}\n{out}\n{err}"
    );

    // Trusting clients are still served, on both listeners.
    let cfg = client_config(&[&pki.ca_der], &tls13_12(), &[]);
    handshake(https, cfg.clone(), "localhost").expect("HTTPS still serves");
    rt.block_on(async {
        let mut c = V4::connect(v4_options(
            "trusted",
            "localhost",
            mqtts.port(),
            tls_transport(cfg),
        ))
        .await
        .expect("a trusting client still connects");
        c.roundtrip("tls/after-untrusted", b"still here")
            .await
            .expect("round trip after failed handshakes");
        c.close().await;
    });
}

/// Plain MQTT sent to the TLS port (and plain HTTP to the HTTPS port) gets
/// no MQTT/HTTP answer and the connection is closed; a TLS client connected
/// meanwhile keeps working, and new ones connect.
#[test]
fn tls_port_refuses_plain_bytes_without_affecting_others() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let (mqtts, https) = (tern.mqtts.unwrap(), tern.https.unwrap());
    let cfg = client_config(&[&pki.ca_der], &tls13_12(), &[]);
    let rt = runtime();
    let mut before = rt
        .block_on(V4::connect(v4_options(
            "before",
            "localhost",
            mqtts.port(),
            tls_transport(cfg.clone()),
        )))
        .expect("TLS client connects");
    rt.block_on(before.subscribe("tls/plain-bytes")).unwrap();

    for (addr, bytes, what) in [
        (mqtts, connect_v311("plain-on-tls"), "MQTT CONNECT"),
        (
            https,
            b"GET /time HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "HTTP request",
        ),
    ] {
        let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        let started = Instant::now();
        let mut chunk = [0u8; 1024];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("plain {what} on a TLS port: the connection stayed open for {WAIT:?}")
                }
                Err(_) => break, // reset
            }
        }
        assert!(started.elapsed() < WAIT);
        assert!(
            got.is_empty() || got[0] == 0x15,
            "plain {what} on a TLS port got a non-alert answer: {got:02x?}"
        );
    }

    rt.block_on(async {
        before
            .publish("tls/plain-bytes", b"unaffected")
            .await
            .unwrap();
        before
            .expect_publish("tls/plain-bytes", b"unaffected")
            .await
            .expect("the client connected before still works");
        before.close().await;
        let mut after = V4::connect(v4_options(
            "after",
            "localhost",
            mqtts.port(),
            tls_transport(cfg),
        ))
        .await
        .expect("a new TLS client connects");
        after
            .roundtrip("tls/plain-bytes-after", b"ok")
            .await
            .unwrap();
        after.close().await;
    });
    // Plain MQTT on the plain port is unaffected too.
    rt.block_on(async {
        let mut c = V4::connect(v4_options(
            "plain",
            "127.0.0.1",
            tern.mqtt.port(),
            rumqttc::Transport::Tcp,
        ))
        .await
        .unwrap();
        c.roundtrip("plain/ok", b"ok").await.unwrap();
        c.close().await;
    });
}

/// TLS 1.2 and TLS 1.3 are both accepted on both TLS listeners; ALPN `mqtt`
/// is agreed on `--mqtts` and `http/1.1` on `--https`.
#[test]
fn tls_versions_and_alpn() {
    let (pki, leaf, tern) = tls_server(&[]);
    let (mqtts, https) = (tern.mqtts.unwrap(), tern.https.unwrap());
    for addr in [mqtts, https] {
        for (v, want) in [
            (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
            (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        ] {
            let h = handshake(addr, client_config(&[&pki.ca_der], &[v], &[]), "localhost")
                .unwrap_or_else(|e| panic!("{want:?} handshake with {addr}: {e}"));
            assert_eq!(h.version, want);
            assert_eq!(h.cert, leaf.der, "the configured certificate is served");
        }
    }
    let h = handshake(
        mqtts,
        client_config(&[&pki.ca_der], &tls13_12(), &[b"mqtt"]),
        "localhost",
    )
    .expect("ALPN mqtt on --mqtts");
    assert_eq!(h.alpn.as_deref(), Some(&b"mqtt"[..]));
    let h = handshake(
        https,
        client_config(&[&pki.ca_der], &tls13_12(), &[b"http/1.1"]),
        "localhost",
    )
    .expect("ALPN http/1.1 on --https");
    assert_eq!(h.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

/// Waits until new handshakes on `addr` present `want`; returns how long it took.
fn wait_for_cert(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    want: &CertificateDer,
) -> Duration {
    let started = Instant::now();
    loop {
        let h = handshake(addr, cfg.clone(), "localhost");
        if let Ok(h) = &h
            && h.cert == *want
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < RELOAD_WITHIN,
            "{addr} still does not present the new certificate after {RELOAD_WITHIN:?} (last: {:?})",
            h.map(|h| h.cert == *want)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Certificate reload: cert A (serial 1) is served; after the files are
/// overwritten with cert B (serial 2, same CA), new connections get B within
/// a few seconds, without a restart, while a connection made with A keeps
/// working. A corrupt certificate file, and then a key that does not match,
/// are refused with a warning in the log and B stays in service.
#[test]
fn tls_certificate_reload() {
    let pki = Pki::new("reload");
    let a = pki.leaf(1, "localhost");
    let b = pki.leaf(2, "localhost");
    assert_ne!(a.der, b.der);
    pki.install(&a);
    let tern = LoggedTern::start(&pki.flags());
    let pid = tern.child.id();
    let cfg = client_config(&[&pki.ca_der], &tls13_12(), &[]);
    for addr in [tern.mqtts, tern.https] {
        let h = handshake(addr, cfg.clone(), "localhost").expect("handshake with A");
        assert!(
            h.cert == a.der,
            "{addr} should present certificate A (serial 1)"
        );
    }
    let rt = runtime();
    let mut old = rt
        .block_on(V4::connect(v4_options(
            "made-with-a",
            "localhost",
            tern.mqtts.port(),
            tls_transport(cfg.clone()),
        )))
        .expect("connect with A");
    rt.block_on(old.subscribe("tls/reload")).unwrap();

    // Renew: B over A, in place.
    std::thread::sleep(Duration::from_millis(20));
    pki.install(&b);
    let took = wait_for_cert(tern.mqtts, &cfg, &b.der);
    wait_for_cert(tern.https, &cfg, &b.der);
    eprintln!("certificate B served {took:?} after the files were replaced");
    assert_eq!(tern.child.id(), pid);
    assert!(
        tern.log().contains("TLS certificate reloaded"),
        "no reload in the log:\n{}",
        tern.log()
    );
    rt.block_on(async {
        old.publish("tls/reload", b"across the reload")
            .await
            .unwrap();
        old.expect_publish("tls/reload", b"across the reload")
            .await
            .expect("a connection made with A keeps working after the reload");
    });

    // A corrupt certificate file: refused, B kept, a warning logged.
    std::fs::write(
        pki.cert_path(),
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let deadline = Instant::now() + RELOAD_WITHIN;
    while !tern.log().contains("TLS certificate not reloaded") {
        assert!(
            Instant::now() < deadline,
            "no warning about the corrupt certificate file within {RELOAD_WITHIN:?}:\n{}",
            tern.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        tern.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("TLS certificate not reloaded")),
        "the corrupt file should be reported at WARN level:\n{}",
        tern.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    for addr in [tern.mqtts, tern.https] {
        let h = handshake(addr, cfg.clone(), "localhost").expect("still serving");
        assert!(
            h.cert == b.der,
            "{addr} should keep presenting B after a corrupt file"
        );
    }

    // A valid certificate with a key that does not match it: refused too.
    let c = pki.leaf(3, "localhost");
    let warnings_before = tern.log().matches("does not fit the certificate").count();
    std::fs::write(pki.cert_path(), &c.cert_pem).unwrap();
    std::fs::write(pki.key_path(), &b.key_pem).unwrap();
    let deadline = Instant::now() + RELOAD_WITHIN;
    while tern.log().matches("does not fit the certificate").count() == warnings_before {
        assert!(
            Instant::now() < deadline,
            "no warning about the mismatched key within {RELOAD_WITHIN:?}:\n{}",
            tern.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let h = handshake(tern.mqtts, cfg.clone(), "localhost").expect("still serving");
    assert!(
        h.cert == b.der,
        "B stays in service while the pair does not match"
    );

    // And once the pair is whole again, it is picked up.
    std::fs::write(pki.key_path(), &c.key_pem).unwrap();
    wait_for_cert(tern.mqtts, &cfg, &c.der);
    rt.block_on(async {
        let mut n = V4::connect(v4_options(
            "after-c",
            "localhost",
            tern.mqtts.port(),
            tls_transport(cfg),
        ))
        .await
        .expect("connect with C");
        n.roundtrip("tls/reload-c", b"c").await.unwrap();
        n.close().await;
        old.close().await;
    });
}

// ===========================================================================
// MQTT over WebSocket
// ===========================================================================

/// MQTT.js 5 over `ws://`, MQTT 3.1.1 and 5: QoS 0, QoS 1, 200 KB, a burst.
#[test]
fn ws_mqttjs_round_trip() {
    let tern = Tern::start(&[]);
    let url = format!("ws://{}/mqtt", tern.http);
    for v in ["4", "5"] {
        let out = node(&["--url", &url, "--version", v]).success();
        assert!(out.contains("ok:"), "{out}");
    }
}

/// MQTT.js 5 over `wss://`, trusting the test CA, MQTT 3.1.1 and 5.
#[test]
fn wss_mqttjs_round_trip() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let url = format!("wss://127.0.0.1:{}/mqtt", tern.https.unwrap().port());
    let ca = pki.ca_path().display().to_string();
    for v in ["4", "5"] {
        let out = node(&["--url", &url, "--version", v, "--ca", &ca]).success();
        assert!(out.contains("ok:"), "{out}");
    }
}

/// paho-mqtt with `transport="websockets"` over `ws://` and `wss://`,
/// 3.1.1 and 5, 200 KB messages included.
#[test]
fn ws_paho_round_trip() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let ws = format!("ws:{}", tern.http.port());
    let wss = format!("wss:{}", tern.https.unwrap().port());
    let ca = pki.ca_path().display().to_string();
    for v in ["3", "5"] {
        for ep in [&ws, &wss] {
            paho(&[
                "--case",
                "roundtrip",
                "--version",
                v,
                "--sub",
                ep,
                "--cafile",
                &ca,
            ]);
        }
    }
}

/// A client over TCP and one over WebSocket on the same topics see each
/// other's messages: rumqttc (TCP) <-> MQTT.js (ws), and with paho
/// TCP <-> ws and TLS <-> wss, both directions.
#[test]
fn ws_and_tcp_clients_see_each_other() {
    let (pki, _leaf, tern) = tls_server(&[]);
    let url = format!("ws://{}/mqtt", tern.http);
    let rt = runtime();
    for v in ["4", "5"] {
        let (to_ws, to_tcp) = (format!("cross/{v}/to-ws"), format!("cross/{v}/to-tcp"));
        let mut tcp = rt
            .block_on(V4::connect(v4_options(
                &format!("tcp-side-{v}"),
                "127.0.0.1",
                tern.mqtt.port(),
                rumqttc::Transport::Tcp,
            )))
            .expect("TCP client connects");
        rt.block_on(tcp.subscribe(&to_tcp)).unwrap();
        let mut js = node(&[
            "--url",
            &url,
            "--version",
            v,
            "--case",
            "bridge",
            "--sub-topic",
            &to_ws,
            "--pub-topic",
            &to_tcp,
            "--expect",
            "from tcp",
            "--reply",
            "from ws",
        ]);
        let first = js.line(Duration::from_secs(30));
        assert_eq!(
            first.as_deref(),
            Some("subscribed"),
            "MQTT.js did not subscribe"
        );
        rt.block_on(async {
            tcp.publish(&to_ws, b"from tcp").await.unwrap();
            tcp.expect_publish(&to_tcp, b"from ws")
                .await
                .expect("the TCP client receives the WebSocket client's reply");
            tcp.close().await;
        });
        js.success();
    }
    let ca = pki.ca_path().display().to_string();
    let (tcp, ws) = (
        format!("tcp:{}", tern.mqtt.port()),
        format!("ws:{}", tern.http.port()),
    );
    let (tls, wss) = (
        format!("tls:{}", tern.mqtts.unwrap().port()),
        format!("wss:{}", tern.https.unwrap().port()),
    );
    for v in ["3", "5"] {
        paho(&[
            "--case",
            "roundtrip",
            "--version",
            v,
            "--sub",
            &tcp,
            "--pub",
            &ws,
        ]);
        paho(&[
            "--case",
            "roundtrip",
            "--version",
            v,
            "--sub",
            &wss,
            "--pub",
            &tls,
            "--cafile",
            &ca,
        ]);
    }
}

/// The WebSocket subprotocol: `mqtt` is chosen when offered, and `mqttv3.1`
/// (MQTT 3.1 clients) too.
#[test]
fn ws_subprotocols() {
    let tern = Tern::start(&[]);
    let ws = RawWs::connect(tern.http, &["mqtt"]);
    assert_eq!(ws.protocol.as_deref(), Some("mqtt"));
    let ws = RawWs::connect(tern.http, &["mqttv3.1"]);
    assert_eq!(ws.protocol.as_deref(), Some("mqttv3.1"));
    let ws = RawWs::connect(tern.http, &["something-else", "mqtt"]);
    assert_eq!(ws.protocol.as_deref(), Some("mqtt"));
}

/// MQTT packets may span WebSocket frames and several packets may share
/// one frame [MQTT-6.0.0-2]; a WebSocket message may itself be fragmented
/// into frames.
#[test]
fn ws_packets_span_and_share_frames() {
    let tern = Tern::start(&[]);
    let mut ws = RawWs::connect(tern.http, &["mqtt"]);
    // CONNECT in three frames: the first byte, the length, the rest.
    let connect = connect_v311("ws-frames");
    ws.send_binary(&connect[..1]);
    ws.send_binary(&connect[1..2]);
    ws.send_binary(&connect[2..]);
    assert_eq!(ws.read_packet(), vec![0x20, 2, 0, 0], "CONNACK accepted");

    // SUBSCRIBE + PUBLISH + the first half of a second PUBLISH in one frame,
    // the rest of it in the next.
    let mut frame = subscribe_v311(1, "ws/frames");
    frame.extend(publish_qos0("ws/frames", b"one"));
    let second = publish_qos0("ws/frames", &[7u8; 3000]);
    frame.extend_from_slice(&second[..1500]);
    ws.send_binary(&frame);
    ws.send_binary(&second[1500..]);
    assert_eq!(
        ws.read_packet(),
        vec![0x90, 3, 0, 1, 0],
        "SUBACK granted QoS 0"
    );
    assert_eq!(ws.read_packet(), publish_qos0("ws/frames", b"one"));
    assert_eq!(ws.read_packet(), second);

    // A PINGREQ as one fragmented message: binary (FIN=0) + continuation.
    ws.send_frame(false, WS_BINARY, &[0xC0]).unwrap();
    ws.send_frame(true, WS_CONTINUATION, &[0x00]).unwrap();
    assert_eq!(ws.read_packet(), vec![0xD0, 0], "PINGRESP");

    // A 200 KB publish (64-bit frame length) in one frame comes back whole.
    let big = publish_qos0("ws/frames", &vec![0x5a; 200 * 1024]);
    ws.send_binary(&big);
    assert_eq!(ws.read_packet(), big);

    // DISCONNECT, then the server closes.
    ws.send_binary(&[0xE0, 0]);
    let deadline = Instant::now() + WAIT;
    loop {
        match ws.read_frame() {
            None | Some((_, WS_CLOSE, _)) => break,
            Some(_) => assert!(Instant::now() < deadline),
        }
    }
}

/// A text frame is a protocol error on an MQTT WebSocket [MQTT-6.0.0-1]:
/// the connection is closed; another WebSocket client is unaffected.
#[test]
fn ws_text_frame_closes_the_connection() {
    let tern = Tern::start(&[]);
    let mut other = RawWs::connect(tern.http, &["mqtt"]);
    other.send_binary(&connect_v311("ws-bystander"));
    assert_eq!(other.read_packet(), vec![0x20, 2, 0, 0]);
    other.send_binary(&subscribe_v311(1, "ws/text"));
    assert_eq!(other.read_packet(), vec![0x90, 3, 0, 1, 0]);

    let mut ws = RawWs::connect(tern.http, &["mqtt"]);
    ws.send_binary(&connect_v311("ws-text"));
    assert_eq!(ws.read_packet(), vec![0x20, 2, 0, 0]);
    // A well-formed PUBLISH, but in a text frame (its bytes are valid UTF-8).
    ws.send_frame(true, WS_TEXT, &publish_qos0("ws/text", b"via text"))
        .unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        match ws.read_frame() {
            None => break,
            Some((_, WS_CLOSE, data)) => {
                seen.push(format!("close {data:?}"));
                break;
            }
            Some((_, op, data)) => seen.push(format!("opcode {op:#x} {data:?}")),
        }
    }
    assert!(started.elapsed() < WAIT);
    assert!(
        seen.iter().all(|s| s.starts_with("close")),
        "after a text frame the server sent more than a close: {seen:?}"
    );
    // Nothing was published by the text frame, and the bystander still works.
    other.send_binary(&publish_qos0("ws/text", b"binary is fine"));
    assert_eq!(
        other.read_packet(),
        publish_qos0("ws/text", b"binary is fine"),
        "the text frame published nothing and the other connection still works"
    );
}

/// WebSocket pings are answered with a pong carrying the same data
/// (RFC 6455 5.5.2), in the middle of an MQTT session.
#[test]
fn ws_ping_is_answered() {
    let tern = Tern::start(&[]);
    let mut ws = RawWs::connect(tern.http, &["mqtt"]);
    ws.send_binary(&connect_v311("ws-ping"));
    assert_eq!(ws.read_packet(), vec![0x20, 2, 0, 0]);
    ws.send_frame(true, WS_PING, b"are you there").unwrap();
    match ws.read_frame() {
        Some((true, 0xA, data)) => assert_eq!(data, b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    ws.send_binary(&[0xC0, 0]);
    assert_eq!(
        ws.read_packet(),
        vec![0xD0, 0],
        "MQTT still works after the ping"
    );
}

/// A client's Close frame is answered with a Close frame before the
/// server drops the TCP connection: "If an endpoint receives a Close frame
/// and did not previously send a Close frame, the endpoint MUST send a
/// Close frame in response" (RFC 6455 5.5.1). MQTT.js and browsers close
/// this way after DISCONNECT.
#[test]
fn ws_close_frame_is_answered_with_close() {
    let tern = Tern::start(&[]);
    let mut ws = RawWs::connect(tern.http, &["mqtt"]);
    ws.send_binary(&connect_v311("ws-close"));
    assert_eq!(ws.read_packet(), vec![0x20, 2, 0, 0]);
    ws.send_binary(&[0xE0, 0]); // DISCONNECT
    ws.send_frame(true, WS_CLOSE, &[0x03, 0xE8]).unwrap(); // 1000 normal closure
    let mut seen = Vec::new();
    loop {
        match ws.read_frame() {
            None => break,
            Some((_, WS_CLOSE, data)) => {
                seen.push(WS_CLOSE);
                assert!(
                    data.is_empty() || data.len() >= 2,
                    "a close payload is empty or starts with a status code: {data:?}"
                );
                break;
            }
            Some((_, op, _)) => seen.push(op),
        }
    }
    assert_eq!(
        seen,
        vec![WS_CLOSE],
        "the server must answer a Close frame with a Close frame (got only EOF or other frames)"
    );
}

/// Reads from `s` until EOF/reset; returns how long after `since` that
/// happened, or `None` if the connection was still open after `max`.
fn closed_after(s: &mut impl Read, since: Instant, max: Duration) -> Option<Duration> {
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Some(since.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if since.elapsed() >= max {
                    return None;
                }
            }
            Err(_) => return Some(since.elapsed()),
        }
    }
}

/// `--connect-timeout-secs` is the "time allowed from TCP accept to a
/// complete CONNECT". Over WebSocket that covers the HTTP upgrade, so a
/// connection to the HTTP listener that sends nothing, or only part of its
/// request headers, must not be held open much longer than that (otherwise
/// idle sockets pile up without bound: the connection limit is only checked
/// at the upgrade). Connections that upgrade and then send no CONNECT are
/// closed on time.
#[test]
fn http_listener_closes_connections_that_never_upgrade() {
    let (pki, _leaf, tern) = tls_server(&["--connect-timeout-secs", "2"]);
    let limit = Duration::from_secs(2 + 3);
    let observe = Duration::from_secs(12);

    // Upgraded, then silent: the MQTT connect timeout applies.
    let mut ws = RawWs::connect(tern.http, &["mqtt"]);
    ws.s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t = Instant::now();
    let after = closed_after(&mut ws.s, t, observe);
    assert!(
        after.is_some_and(|d| d <= limit),
        "an upgraded WebSocket without CONNECT should be closed within {limit:?}: {after:?}"
    );

    let mut results = Vec::new();
    let started = Instant::now();
    let mut silent = TcpStream::connect_timeout(&tern.http, WAIT).unwrap();
    let mut partial = TcpStream::connect_timeout(&tern.http, WAIT).unwrap();
    partial
        .write_all(b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .unwrap();
    // TLS done, then nothing on the HTTPS listener.
    let cfg = client_config(&[&pki.ca_der], &tls13_12(), &[]);
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut tls_sock = TcpStream::connect_timeout(&tern.https.unwrap(), WAIT).unwrap();
    tls_sock.set_read_timeout(Some(WAIT)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tls_sock).expect("TLS handshake");
    }
    for s in [&mut silent, &mut partial, &mut tls_sock] {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    results.push((
        "silent TCP connection to --http",
        closed_after(&mut silent, started, observe),
    ));
    results.push((
        "partial request headers on --http",
        closed_after(&mut partial, started, observe),
    ));
    let mut tls = rustls::Stream::new(&mut conn, &mut tls_sock);
    results.push((
        "silent TLS connection to --https",
        closed_after(&mut tls, started, observe),
    ));
    let late: Vec<_> = results
        .iter()
        .filter(|(_, d)| !d.is_some_and(|d| d <= limit))
        .collect();
    assert!(
        late.is_empty(),
        "with --connect-timeout-secs 2 these were not closed within {limit:?} \
         (None = still open after {observe:?}): {late:?}"
    );
}

/// The TLS handshake and the CONNECT share one deadline, counted from TCP
/// accept (`--connect-timeout-secs`: "time allowed from TCP accept to a
/// complete CONNECT"): a client that takes 1.8 s of a 2 s budget for its
/// handshake and then sends nothing is closed about 2 s after accept, not
/// 2 s after the handshake.
#[test]
fn tls_connect_timeout_counts_from_tcp_accept() {
    let (pki, _leaf, tern) = tls_server(&["--connect-timeout-secs", "2"]);
    let cfg = client_config(&[&pki.ca_der], &tls13_12(), &[]);
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut sock = TcpStream::connect_timeout(&tern.mqtts.unwrap(), WAIT).unwrap();
    let accepted = Instant::now();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    std::thread::sleep(Duration::from_millis(1800));
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .expect("TLS handshake within the budget");
    }
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let after = closed_after(&mut tls, accepted, Duration::from_secs(8));
    let limit = Duration::from_millis(3000);
    assert!(
        after.is_some_and(|d| d <= limit),
        "closed {after:?} after TCP accept; expected within {limit:?} (2 s timeout + 1 s slack)"
    );
}
