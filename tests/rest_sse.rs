//! The REST API and SSE against the real binary, with `curl` as the HTTP
//! client and rumqttc (MQTT 5) on the other side of the same channels:
//! publish over REST → MQTT, MQTT → REST history with pagination, SSE with
//! rewind and resume, idempotent publishing, occupancy, and every refusal
//! with its status, Ably error code and `x-ably-errorcode` header.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Tern;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::{Client, Event, MqttOptions};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// A curl response.
#[derive(Debug)]
struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// Asserts an Ably error response.
    fn assert_error(&self, status: u16, code: u64) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let j = self.json();
        assert_eq!(j["error"]["code"], code, "{j}");
        assert_eq!(j["error"]["statusCode"], status, "{j}");
        assert!(j["error"]["message"].is_string(), "{j}");
        assert_eq!(
            self.header("x-ably-errorcode"),
            Some(code.to_string().as_str())
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

/// Runs curl with `args` (the URL included) and parses the response.
fn curl(args: &[&str]) -> Http {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "-H", "Expect:"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Http {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn url(t: &Tern, path: &str) -> String {
    format!("http://{}{}", t.http, path)
}

/// An MQTT 5 subscriber on a thread, forwarding PUBLISHes.
struct Sub {
    rx: mpsc::Receiver<Publish>,
    _client: Client,
}

fn mqtt_sub(t: &Tern, id: &str, filter: &str) -> Sub {
    let mut o = MqttOptions::new(id, t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut conn) = Client::new(o, 64);
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    ready_rx.recv_timeout(WAIT).expect("SUBACK");
    Sub {
        rx,
        _client: client,
    }
}

impl Sub {
    fn next(&self) -> Publish {
        self.rx.recv_timeout(WAIT).expect("a PUBLISH")
    }
}

fn mqtt_pub(t: &Tern, topic: &str, payload: &[u8], props: Option<PublishProperties>) {
    let mut o = MqttOptions::new(
        format!("pub-{}", topic.replace('/', "-")),
        t.mqtt.ip().to_string(),
        t.mqtt.port(),
    );
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut conn) = Client::new(o, 16);
    match props {
        Some(p) => client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_vec(), p)
            .unwrap(),
        None => client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .unwrap(),
    }
    let deadline = Instant::now() + WAIT;
    for ev in conn.iter() {
        assert!(Instant::now() < deadline, "no PUBACK");
        if let Ok(Event::Incoming(Packet::PubAck(_))) = ev {
            break;
        }
        assert!(ev.is_ok(), "{ev:?}");
    }
    let _ = client.disconnect();
}

fn user_props(p: &Publish) -> Vec<(String, String)> {
    p.properties
        .as_ref()
        .map(|pp| pp.user_properties.clone())
        .unwrap_or_default()
}

#[test]
fn rest_publish_reaches_mqtt_as_raw_bytes_with_name_and_headers() {
    let t = Tern::start(&[]);
    let sub = mqtt_sub(&t, "rs1", "rest/#");
    // Text with a name and headers.
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name":"greet","data":"héllo","extras":{"headers":{"k":"v"}}}"#,
        &url(&t, "/channels/rest%2Ftext/messages"),
    ]);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["channel"], "rest/text");
    assert!(
        j["messageId"].is_string() && j["serials"][0].is_string(),
        "{j}"
    );
    let p = sub.next();
    assert_eq!(&p.topic[..], b"rest/text");
    assert_eq!(&p.payload[..], "héllo".as_bytes());
    let props = p.properties.clone().unwrap_or_default();
    assert_eq!(props.payload_format_indicator, Some(1));
    let up = user_props(&p);
    assert!(up.contains(&("k".into(), "v".into())), "{up:?}");
    assert!(up.contains(&("name".into(), "greet".into())), "{up:?}");

    // A JSON value: its serialised text, content type application/json.
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"[{"data":{"a":[1,2]}},{"data":"dGVybg==","encoding":"base64"}]"#,
        &url(&t, "/channels/rest%2Fjson/messages"),
    ]);
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["serials"].as_array().map(Vec::len), Some(2));
    let p = sub.next();
    assert_eq!(&p.payload[..], br#"{"a":[1,2]}"#);
    let props = p.properties.clone().unwrap_or_default();
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    // Binary (base64 in JSON): the bytes, payload format 0.
    let p = sub.next();
    assert_eq!(&p.payload[..], b"tern");
    assert_eq!(
        p.properties.and_then(|p| p.payload_format_indicator),
        Some(0)
    );

    // A raw body (enveloped=false): the body is the data.
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: text/plain",
        "--data-binary",
        "raw text",
        &url(&t, "/channels/rest%2Fraw/messages?enveloped=false&name=ev"),
    ]);
    assert_eq!(r.status, 201);
    let p = sub.next();
    assert_eq!(&p.payload[..], b"raw text");
    assert!(user_props(&p).contains(&("name".into(), "ev".into())));
}

#[test]
fn mqtt_messages_appear_in_rest_history_with_pagination() {
    let t = Tern::start(&["--history", "hist/#=100/3600"]);
    mqtt_pub(&t, "hist/a", b"plain text", None);
    mqtt_pub(&t, "hist/a", &[0xff, 0x00, 0x01], None);
    mqtt_pub(
        &t,
        "hist/a",
        br#"{"x":1}"#,
        Some(PublishProperties {
            content_type: Some("application/json".into()),
            user_properties: vec![("h".into(), "1".into())],
            ..PublishProperties::default()
        }),
    );
    for i in 0..3 {
        mqtt_pub(&t, "hist/a", format!("m{i}").as_bytes(), None);
    }
    mqtt_pub(&t, "nohist", b"not kept", None);

    let r = curl(&[&url(&t, "/channels/hist%2Fa/messages?limit=2")]);
    assert_eq!(r.status, 200);
    let page = r.json();
    let data: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, vec!["m2", "m1"], "newest first");
    for m in page.as_array().unwrap() {
        assert!(
            m["id"].is_string() && m["serial"].is_string() && m["timestamp"].is_u64(),
            "{m}"
        );
    }
    let link = r.header("link").expect("a Link header").to_owned();
    assert!(
        link.contains("rel=\"first\"") && link.contains("rel=\"next\""),
        "{link}"
    );
    let next = link
        .split(',')
        .find(|l| l.contains("rel=\"next\""))
        .and_then(|l| l.split_once('<'))
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(u, _)| u.trim_start_matches("./").to_owned())
        .unwrap();
    let r = curl(&[&url(&t, &format!("/channels/hist%2Fa/{next}"))]);
    let page = r.json();
    let msgs = page.as_array().unwrap();
    assert_eq!(msgs[0]["data"], "m0");
    // The JSON message: encoding json, headers in extras.
    assert_eq!(msgs[1]["data"], r#"{"x":1}"#);
    assert_eq!(msgs[1]["encoding"], "json");
    assert_eq!(msgs[1]["extras"]["headers"]["h"], "1");

    // Forwards, all of it: binary comes as base64 in JSON.
    let r = curl(&[&url(
        &t,
        "/channels/hist%2Fa/messages?direction=forwards&limit=10",
    )]);
    let all = r.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0]["data"], "plain text");
    assert_eq!(all[1]["data"], "/wAB");
    assert_eq!(all[1]["encoding"], "base64");
    assert!(
        r.header("link")
            .is_some_and(|l| !l.contains("rel=\"next\""))
    );
    // A time window.
    let ts = all[3]["timestamp"].as_u64().unwrap();
    let r = curl(&[&url(
        &t,
        &format!("/channels/hist%2Fa/messages?start={ts}&end={ts}&direction=forwards"),
    )]);
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["timestamp"] == ts)
    );
    // A channel without a history rule.
    let r = curl(&[&url(&t, "/channels/nohist/messages")]);
    assert_eq!(r.json(), serde_json::json!([]));
    // Browser envelope.
    let r = curl(&[&url(
        &t,
        "/channels/hist%2Fa/messages?limit=1&envelope=json",
    )]);
    let e = r.json();
    assert_eq!(e["statusCode"], 200);
    assert_eq!(e["response"][0]["data"], "m2");
    assert!(
        e["headers"]["link"]
            .as_str()
            .unwrap()
            .contains("rel=\"next\"")
    );
}

#[test]
fn repeated_message_id_is_published_once() {
    let t = Tern::start(&["--history", "idem=100/3600"]);
    let sub = mqtt_sub(&t, "idem-sub", "idem");
    for _ in 0..3 {
        let r = curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"id":"abc:0","data":"once"}"#,
            &url(&t, "/channels/idem/messages"),
        ]);
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["messageId"], "abc:0");
    }
    assert_eq!(&sub.next().payload[..], b"once");
    assert!(
        sub.rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "a duplicate was delivered"
    );
    let r = curl(&[&url(&t, "/channels/idem/messages")]);
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
}

#[test]
fn msgpack_bodies_both_ways() {
    let t = Tern::start(&["--history", "mp=100/3600"]);
    // [{"name":"n","data":<bin 01 02>}] as msgpack.
    let body: &[u8] = &[
        0x91, 0x82, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'n', 0xa4, b'd', b'a', b't', b'a', 0xc4,
        0x02, 0x01, 0x02,
    ];
    let path = std::env::temp_dir().join(format!("tern-mp-{}", std::process::id()));
    std::fs::write(&path, body).unwrap();
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/x-msgpack",
        "-H",
        "accept: application/x-msgpack",
        "--data-binary",
        &format!("@{}", path.display()),
        &url(&t, "/channels/mp/messages"),
    ]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/x-msgpack"));
    let r = curl(&[
        "-H",
        "accept: application/x-msgpack",
        &url(&t, "/channels/mp/messages"),
    ]);
    assert_eq!(r.status, 200);
    // The bytes come back as msgpack bin (0xc4 0x02 0x01 0x02), not base64.
    assert!(
        r.body.windows(4).any(|w| w == [0xc4, 0x02, 0x01, 0x02]),
        "{:x?}",
        r.body
    );
    let r = curl(&[&url(&t, "/channels/mp/messages")]);
    assert_eq!(r.json()[0]["data"], "AQI=");
    assert_eq!(r.json()[0]["encoding"], "base64");
    assert_eq!(r.json()[0]["name"], "n");
}

#[test]
fn refusals_have_status_code_and_headers() {
    let key = "app.k1:secret1";
    let t = Tern::start(&[
        "--key",
        key,
        "--key-login-plain",
        "true",
        "--history",
        "*=10/3600",
    ]);
    let post = |path: &str, body: &str, extra: &[&str]| {
        let u = url(&t, path);
        let mut a = vec!["-X", "POST", "-H", "content-type: application/json"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["-d", body, &u]);
        curl(&a)
    };
    // No credentials.
    post("/channels/x/messages", r#"{"data":"d"}"#, &[]).assert_error(401, 40101);
    // Wrong secret.
    post(
        "/channels/x/messages",
        r#"{"data":"d"}"#,
        &["-u", "app.k1:nope"],
    )
    .assert_error(401, 40101);
    let auth = ["-u", key];
    // Malformed JSON.
    post("/channels/x/messages", r#"{"data":"#, &auth).assert_error(400, 40000);
    // Invalid channel name.
    post("/channels/a%2Bb/messages", r#"{"data":"d"}"#, &auth).assert_error(400, 40010);
    // Too large.
    let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(70_000));
    let r = post("/channels/x/messages", &big, &auth);
    assert!(r.status == 400 || r.status == 413, "{}", r.status);
    assert_eq!(r.json()["error"]["code"], 40009);
    // Bad history parameters.
    curl(&["-u", key, &url(&t, "/channels/x/messages?limit=5000")]).assert_error(400, 40003);
    curl(&["-u", key, &url(&t, "/channels/x/messages?direction=up")]).assert_error(400, 40003);
    // A token that may only subscribe to "ro": publishing is refused.
    let tok = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "token",
            "--key",
            key,
            "--capability",
            r#"{"ro":["subscribe","history"]}"#,
        ])
        .output()
        .unwrap();
    let tok = String::from_utf8(tok.stdout).unwrap().trim().to_owned();
    let bearer = format!("authorization: Bearer {tok}");
    post("/channels/ro/messages", r#"{"data":"d"}"#, &["-H", &bearer]).assert_error(401, 40160);
    let r = curl(&["-H", &bearer, &url(&t, "/channels/ro/messages")]);
    assert_eq!(r.status, 200);
    curl(&["-H", &bearer, &url(&t, "/channels/other/messages")]).assert_error(401, 40160);
    // And the server still serves others.
    assert_eq!(
        post("/channels/x/messages", r#"{"data":"ok"}"#, &auth).status,
        201
    );
}

#[test]
fn channel_details_count_subscribers_of_every_protocol() {
    let t = Tern::start(&[]);
    let _a = mqtt_sub(&t, "occ-a", "room/1");
    let _b = mqtt_sub(&t, "occ-b", "room/+");
    let r = curl(&[&url(&t, "/channels/room%2F1")]);
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["name"], "room/1");
    assert_eq!(j["status"]["occupancy"]["metrics"]["subscribers"], 2, "{j}");
    assert_eq!(j["status"]["isActive"], true);
    let r = curl(&[&url(&t, "/channels?by=id&prefix=room")]);
    assert_eq!(
        r.json(),
        serde_json::json!(["room/1"]),
        "wildcards are not channels"
    );
    let r = curl(&[&url(&t, "/channels/empty")]);
    assert_eq!(r.json()["status"]["occupancy"]["metrics"]["subscribers"], 0);
}

/// A running `curl -N` on `/sse`, with its `id:`/`data:` pairs.
struct SseClient {
    child: std::process::Child,
    rx: mpsc::Receiver<(String, String)>,
}

impl SseClient {
    /// The next `n` events.
    fn events(&mut self, n: usize) -> Vec<(String, String)> {
        let mut got = vec![];
        let deadline = Instant::now() + WAIT;
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => got.push(e),
                Err(_) => panic!("SSE: {} of {n} events: {got:?}", got.len()),
            }
        }
        got
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sse(t: &Tern, query: &str, last_event: Option<&str>) -> SseClient {
    let mut c = Command::new("curl");
    c.args(["-sS", "-N", "--max-time", "30"]);
    if let Some(l) = last_event {
        c.args(["-H", &format!("Last-Event-ID: {l}")]);
    }
    let mut child = c
        .arg(url(t, &format!("/sse?{query}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let (open_tx, open_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut id = String::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(": subscribed") {
                let _ = open_tx.send(());
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:")
                && tx.send((id.clone(), v.trim().to_owned())).is_err()
            {
                break;
            }
        }
    });
    open_rx
        .recv_timeout(WAIT)
        .expect("the stream's `: subscribed` comment");
    SseClient { child, rx }
}

/// The `data` field of enveloped events.
fn data_of(events: &[(String, String)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["data"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn sse_streams_live_messages_with_rewind_and_resume() {
    let t = Tern::start(&["--history", "feed/#=100/3600"]);
    for i in 0..3 {
        mqtt_pub(&t, "feed/a", format!("old{i}").as_bytes(), None);
    }
    // Rewind 2, then live messages.
    let mut c = sse(&t, "channels=feed%2Fa,feed%2Fb&rewind=2", None);
    let rewound = c.events(2);
    assert_eq!(data_of(&rewound), vec!["old1", "old2"]);
    let first: Value = serde_json::from_str(&rewound[1].1).unwrap();
    assert_eq!(first["channel"], "feed/a");
    let mut live = Vec::new();
    for (topic, p) in [("feed/b", "live-b"), ("feed/a", "live-a")] {
        mqtt_pub(&t, topic, p.as_bytes(), None);
        live.extend(c.events(1));
    }
    drop(c);
    assert_eq!(data_of(&live), vec!["live-b", "live-a"]);

    // Resume after old1 on feed/a: old2 and live-a again, from history.
    let after = rewound[0].0.clone();
    let mut c = sse(&t, "channels=feed%2Fa", Some(&after));
    assert_eq!(data_of(&c.events(2)), vec!["old2", "live-a"]);
    drop(c);

    // Raw payloads without the envelope.
    let mut c = sse(&t, "channels=feed%2Fc&enveloped=false", None);
    mqtt_pub(&t, "feed/c", b"just text", None);
    assert_eq!(c.events(1)[0].1, "just text");
}

#[test]
fn sse_refuses_forbidden_and_invalid_channels() {
    let key = "app.k2:secret2";
    let t = Tern::start(&["--key", key, "--key-login-plain", "true"]);
    curl(&[&url(&t, "/sse?channels=x")]).assert_error(401, 40101);
    let tok = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "token",
            "--key",
            key,
            "--capability",
            r#"{"ok":["subscribe"]}"#,
        ])
        .output()
        .unwrap();
    let tok = String::from_utf8(tok.stdout).unwrap().trim().to_owned();
    curl(&[&url(
        &t,
        &format!("/sse?channels=ok,secret&accessToken={tok}"),
    )])
    .assert_error(401, 40160);
    curl(&[&url(&t, &format!("/sse?channels=a%2Bb&accessToken={tok}"))]).assert_error(400, 40010);
    curl(&[&url(&t, &format!("/sse?accessToken={tok}"))]).assert_error(400, 40000);
}

#[test]
fn cross_origin_pages_get_cors_headers_and_preflights() {
    let t = Tern::start(&[]);
    let r = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        "origin: https://app.example",
        "-H",
        "access-control-request-method: POST",
        "-H",
        "access-control-request-headers: authorization, content-type",
        &url(&t, "/channels/x/messages"),
    ]);
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
    let r = curl(&[
        "-H",
        "origin: https://app.example",
        &url(&t, "/channels/x/messages"),
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        r.header("access-control-expose-headers")
            .is_some_and(|h| h.contains("link"))
    );
    // No Origin, no CORS headers.
    let r = curl(&[&url(&t, "/channels/x/messages")]);
    assert!(r.header("access-control-allow-origin").is_none());
}

#[test]
fn mqtt_subscribers_rewind_with_a_qualifier() {
    let t = Tern::start(&["--history", "rw/#=100/3600"]);
    for i in 0..5 {
        mqtt_pub(&t, "rw/a", format!("old{i}").as_bytes(), None);
    }
    let sub = mqtt_sub(&t, "rewinder", "[?rewind=3]rw/a");
    let got: Vec<String> = (0..3)
        .map(|_| String::from_utf8_lossy(&sub.next().payload).into_owned())
        .collect();
    assert_eq!(got, ["old2", "old3", "old4"]);
    mqtt_pub(&t, "rw/a", b"live", None);
    let p = sub.next();
    assert_eq!(&p.payload[..], b"live", "live after the backlog");
    assert_eq!(&p.topic[..], b"rw/a");
    assert!(
        sub.rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "no duplicate"
    );
    // Wildcards cannot rewind (history is per channel): the filter is refused.
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &t.port(),
            "-V",
            "mqttv5",
            "-t",
            "[?rewind=2]rw/#",
            "-W",
            "2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("denied"), "{err}");
}
