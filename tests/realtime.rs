//! The Ably-compatible realtime protocol (`GET /` WebSocket) end to end
//! against the real binary:
//! - the official Ably SDK (npm `ably`, `tests/js/ably_scenarios.mjs`) in
//!   JSON and msgpack modes: connect, attach with modes, publish with ACK
//!   serials, subscribe (text, JSON object, binary, headers), ping, detach,
//!   close; presence enter/get (SYNC)/update/leave; capability denial
//!   40160; a bad key 40101;
//! - cross-protocol: MQTT 5 / 3.1.1 (rumqttc) publishers to an Ably
//!   subscriber and an Ably publisher to an MQTT 5 subscriber, checking
//!   the protocol mapping (payload format, content type, user properties,
//!   name);
//! - a raw WebSocket client (tokio-tungstenite) sending bad input:
//!   malformed JSON, an unknown action, an oversized frame and an
//!   oversized message, with another client unaffected; in-band AUTH.
//!
//! Every wait is bounded; child processes are killed after `CHILD_TIMEOUT`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Tern;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const ROOT: &str = "app.root:rootsecret";
const WAIT: Duration = Duration::from_secs(10);
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

fn server() -> Tern {
    Tern::start(&["--key", ROOT])
}

/// A running `node ably_scenarios.mjs ...`, killed on drop.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Node {
    fn spawn(args: &[&str]) -> Node {
        assert!(
            js_dir().join("node_modules/ably/package.json").exists(),
            "the Ably SDK is not installed: run scripts/test (or `npm ci` in tests/js)"
        );
        let mut child = Command::new("node")
            .arg(js_dir().join("ably_scenarios.mjs"))
            .args(args)
            .current_dir(js_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node (scripts/test installs it)");
        let out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }));
        Node {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The next event line, within `WAIT`.
    fn event(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no line from node; so far: {:?}", self.seen));
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not JSON from node ({e}): {line}"));
        assert_ne!(
            v["event"], "error",
            "node failed: {v}; before: {:?}",
            self.seen
        );
        self.seen.push(v.clone());
        v
    }

    /// Waits for the end (killing after `CHILD_TIMEOUT`); all events.
    fn finish(mut self) -> Vec<Value> {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            if let Ok(v) = serde_json::from_str(&l) {
                self.seen.push(v);
            }
        }
        // The pipe closed when the child ended, so this returns.
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "node {status:?}\nevents: {:#?}\nstderr: {err}",
            self.seen
        );
        self.seen.clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run_node(args: &[&str]) -> Vec<Value> {
    Node::spawn(args).finish()
}

fn events<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    all.iter().filter(|v| v["event"] == name).collect()
}

fn one<'a>(all: &'a [Value], name: &str) -> &'a Value {
    let e = events(all, name);
    assert_eq!(e.len(), 1, "one {name:?} event expected in {all:#?}");
    e[0]
}

// ---------------------------------------------------------------------------
// The official SDK
// ---------------------------------------------------------------------------

fn check_pubsub(format: &str) {
    let t = server();
    let port = t.http.port().to_string();
    let all = run_node(&["pubsub", &port, format, ROOT]);
    assert_eq!(one(&all, "connected")["clientId"], "alice");
    // RTL4m: the granted modes are in ATTACHED.
    assert_eq!(
        one(&all, "attached")["modes"],
        json!(["presence", "publish", "subscribe", "presence_subscribe"])
    );
    let results = one(&all, "published")["results"]
        .as_array()
        .unwrap()
        .clone();
    let serials: Vec<String> = results
        .iter()
        .map(|r| r["serials"][0].as_str().expect("a serial").to_owned())
        .collect();
    assert_eq!(serials.len(), 4);
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "{serials:?}");
    let msgs = events(&all, "message");
    assert_eq!(msgs.len(), 4, "{all:#?}");
    for (m, s) in msgs.iter().zip(&serials) {
        assert_eq!(m["serial"], *s, "delivered serial = ACK serial");
        assert_eq!(m["clientId"], "bob");
        assert!(m["connectionId"].is_string() && m["timestamp"].is_u64());
        assert!(m["id"].is_string());
    }
    assert_eq!(msgs[0]["name"], "greet");
    assert_eq!(msgs[0]["data"], "hello, wörld");
    assert_eq!(msgs[1]["data"], json!({"a": 1, "list": [true, null, "x"]}));
    assert_eq!(msgs[2]["data"], json!({"base64": "AAEC/f7/"}));
    assert_eq!(
        msgs[3]["extras"],
        json!({"headers": {"k1": "v1", "k2": "v2"}})
    );
    assert_eq!(one(&all, "ping")["ok"], true);
    assert_eq!(one(&all, "detached")["state"], "detached");
    one(&all, "closed");
}

#[test]
fn sdk_pubsub_json() {
    check_pubsub("json");
}

#[test]
fn sdk_pubsub_msgpack() {
    check_pubsub("msgpack");
}

fn check_presence(format: &str) {
    let t = server();
    let port = t.http.port().to_string();
    let all = run_node(&["presence", &port, format, ROOT]);
    assert_eq!(
        one(&all, "members")["members"],
        json!([{"clientId": "alice", "data": {"mood": "happy"}, "action": "present"}])
    );
    let ev = one(&all, "events")["events"].as_array().unwrap().clone();
    assert_eq!(
        ev,
        vec![
            json!({"action": "update", "clientId": "alice", "data": "busy"}),
            json!({"action": "enter", "clientId": "bob", "data": {"base64": "AQID"}}),
            json!({"action": "leave", "clientId": "alice", "data": "busy"}),
        ]
    );
    assert_eq!(one(&all, "after")["members"], json!(["bob"]));
}

#[test]
fn sdk_presence_json() {
    check_presence("json");
}

#[test]
fn sdk_presence_msgpack() {
    check_presence("msgpack");
}

#[test]
fn sdk_capability_denial_is_40160_and_leaves_the_connection() {
    let t = server();
    let token = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "token",
            "--key",
            ROOT,
            "--capability",
            r#"{"chat:*":["*"]}"#,
        ])
        .args(["--client-id", "carol"])
        .output()
        .expect("tern token");
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let port = t.http.port().to_string();
    let all = run_node(&["denied", &port, "json", &token]);
    assert_eq!(one(&all, "connected")["clientId"], "carol");
    assert_eq!(one(&all, "attached")["channel"], "chat:1");
    let f = one(&all, "attach_failed");
    assert_eq!(
        (f["code"].clone(), f["statusCode"].clone()),
        (json!(40160), json!(401))
    );
    assert_eq!(one(&all, "publish_failed")["code"], 40160);
    assert_eq!(one(&all, "connection")["state"], "connected");
}

#[test]
fn sdk_bad_key_fails_with_40101() {
    let t = server();
    let port = t.http.port().to_string();
    for key in ["app.root:wrong", "app.nokey:secret"] {
        let all = run_node(&["badkey", &port, "json", key]);
        let s = one(&all, "state");
        assert_eq!(s["state"], "failed", "{key}");
        assert_eq!(
            (s["code"].clone(), s["statusCode"].clone()),
            (json!(40101), json!(401))
        );
    }
}

// ---------------------------------------------------------------------------
// Across protocols
// ---------------------------------------------------------------------------

async fn mqtt5(t: &Tern, id: &str) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let mut o = rumqttc::v5::MqttOptions::new(id, t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_credentials("app.root", "rootsecret");
    rumqttc::v5::AsyncClient::new(o, 64)
}

/// Polls `el` until `f` returns `Some`, within `WAIT`.
async fn poll5<T>(
    el: &mut rumqttc::v5::EventLoop,
    mut f: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(p)) => {
                    if let Some(v) = f(&p) {
                        return v;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("MQTT connection failed: {e}"),
            }
        }
    })
    .await
    .expect("MQTT event in time")
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_publishers_reach_an_sdk_subscriber() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    let t = server();
    let port = t.http.port().to_string();
    let mut node = Node::spawn(&["subscribe", &port, "msgpack", ROOT, "cross/in", "5"]);
    let ready = tokio::task::block_in_place(|| node.event());
    assert_eq!(ready["event"], "ready");

    let (c, mut el) = mqtt5(&t, "mqtt-pub").await;
    poll5(&mut el, |p| matches!(p, Packet::ConnAck(_)).then_some(())).await;
    let text = PublishProperties {
        payload_format_indicator: Some(1),
        ..Default::default()
    };
    let json_props = PublishProperties {
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    let bin = PublishProperties {
        payload_format_indicator: Some(0),
        ..Default::default()
    };
    let headers = PublishProperties {
        user_properties: vec![("h1".into(), "one".into()), ("h2".into(), "two".into())],
        ..Default::default()
    };
    for (payload, props) in [
        ("héllo".as_bytes().to_vec(), text),
        (br#"{"n":[1,2]}"#.to_vec(), json_props),
        (b"abc".to_vec(), bin),
        (b"plain".to_vec(), headers),
    ] {
        c.publish_with_properties("cross/in", QoS::AtLeastOnce, false, payload, props)
            .await
            .unwrap();
        poll5(&mut el, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }
    // MQTT 3.1.1: no payload format; invalid UTF-8 arrives as bytes.
    let mut o = rumqttc::MqttOptions::new("mqtt-v4", t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_credentials("app.root", "rootsecret");
    let (c4, mut el4) = rumqttc::AsyncClient::new(o, 16);
    c4.publish(
        "cross/in",
        rumqttc::QoS::AtLeastOnce,
        false,
        vec![0xff, 0x00, 0x41],
    )
    .await
    .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = el4.poll().await {
                break;
            }
        }
    })
    .await
    .expect("PUBACK");

    let all = tokio::task::block_in_place(|| node.finish());
    let msgs = events(&all, "message");
    assert_eq!(msgs.len(), 5, "{all:#?}");
    assert_eq!(msgs[0]["data"], "héllo");
    assert_eq!(
        msgs[1]["data"],
        json!({"n": [1, 2]}),
        "content type JSON: encoding json"
    );
    assert_eq!(
        msgs[2]["data"],
        json!({"base64": "YWJj"}),
        "payload format 0: bytes"
    );
    assert_eq!(msgs[3]["data"], "plain");
    assert_eq!(
        msgs[3]["extras"],
        json!({"headers": {"h1": "one", "h2": "two"}})
    );
    assert_eq!(msgs[4]["data"], json!({"base64": "/wBB"}));
    let serials: Vec<&str> = msgs.iter().map(|m| m["serial"].as_str().unwrap()).collect();
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "{serials:?}");
    assert!(
        msgs.iter()
            .all(|m| m["id"].is_string() && m["timestamp"].is_u64())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_publisher_reaches_an_mqtt5_subscriber() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    let t = server();
    let (c, mut el) = mqtt5(&t, "mqtt-sub").await;
    poll5(&mut el, |p| matches!(p, Packet::ConnAck(_)).then_some(())).await;
    c.subscribe("cross/out", QoS::AtLeastOnce).await.unwrap();
    poll5(&mut el, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;

    let port = t.http.port().to_string();
    let node = Node::spawn(&["publish", &port, "json", ROOT, "cross/out"]);
    let mut got = Vec::new();
    while got.len() < 4 {
        let p = poll5(&mut el, |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await;
        got.push(p);
    }
    let all = tokio::task::block_in_place(|| node.finish());
    one(&all, "published");
    let props = |i: usize| got[i].properties.clone().unwrap_or_default();
    let user = |i: usize| props(i).user_properties;
    assert_eq!(&got[0].payload[..], "hello, wörld".as_bytes());
    assert_eq!(props(0).payload_format_indicator, Some(1));
    assert!(user(0).contains(&("name".into(), "greet".into())));
    assert_eq!(&got[1].payload[..], br#"{"a":1,"list":[true,null,"x"]}"#);
    assert_eq!(props(1).content_type.as_deref(), Some("application/json"));
    assert_eq!(&got[2].payload[..], &[0, 1, 2, 253, 254, 255]);
    assert_eq!(props(2).payload_format_indicator, Some(0));
    let headers: Vec<(String, String)> = user(3).into_iter().filter(|(k, _)| k != "name").collect();
    assert_eq!(
        headers,
        vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into())]
    );
}

// ---------------------------------------------------------------------------
// Raw WebSocket
// ---------------------------------------------------------------------------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw(t: &Tern, query: &str) -> Ws {
    let url = format!("ws://{}/?{query}", t.http);
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("WebSocket upgrade");
    ws
}

/// The next ProtocolMessage (JSON text frames); `None` once closed.
async fn next_pm(ws: &mut Ws) -> Option<Value> {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    return Some(serde_json::from_str(&t).expect("JSON frame"));
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("a frame in time")
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(WsMessage::Text(v.to_string().into()))
        .await
        .unwrap();
}

async fn connected(t: &Tern) -> (Ws, Value) {
    let mut ws = raw(t, &format!("key={ROOT}&format=json&v=6")).await;
    let c = next_pm(&mut ws).await.expect("CONNECTED");
    assert_eq!(c["action"], 4, "{c}");
    (ws, c)
}

/// The peer closes after the frame (read to the end).
async fn closes(ws: &mut Ws) {
    assert_eq!(next_pm(ws).await, None, "the connection should close");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_connected_has_connection_details_and_heartbeat_echo() {
    let t = server();
    let (mut ws, c) = connected(&t).await;
    let d = &c["connectionDetails"];
    assert!(d["connectionKey"].is_string());
    assert_eq!(d["maxMessageSize"], 65536);
    assert_eq!(d["maxIdleInterval"], 15000);
    assert_eq!(d["connectionStateTtl"], 120000);
    send(&mut ws, json!({"action": 0, "id": "ping-1"})).await;
    assert_eq!(
        next_pm(&mut ws).await.unwrap(),
        json!({"action": 0, "id": "ping-1"})
    );
    send(&mut ws, json!({"action": 7})).await;
    assert_eq!(next_pm(&mut ws).await.unwrap(), json!({"action": 8}));
    closes(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_bad_input_is_error_40000_or_40009_and_others_are_unaffected() {
    let t = server();
    let (mut bystander, _) = connected(&t).await;
    send(&mut bystander, json!({"action": 10, "channel": "calm"})).await;
    assert_eq!(next_pm(&mut bystander).await.unwrap()["action"], 11);

    let (mut ws, _) = connected(&t).await;
    ws.send(WsMessage::Text("{not json".into())).await.unwrap();
    let e = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (
            e["action"].clone(),
            e["error"]["code"].clone(),
            e["error"]["statusCode"].clone()
        ),
        (json!(9), json!(40000), json!(400))
    );
    closes(&mut ws).await;

    let (mut ws, _) = connected(&t).await;
    send(&mut ws, json!({"action": 99})).await;
    let e = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (e["action"].clone(), e["error"]["code"].clone()),
        (json!(9), json!(40000))
    );
    closes(&mut ws).await;

    let (mut ws, _) = connected(&t).await;
    ws.send(WsMessage::Binary(vec![0xc1, 0x00].into()))
        .await
        .unwrap();
    let e = next_pm(&mut ws).await.unwrap();
    assert_eq!(e["error"]["code"], 40000, "malformed msgpack");
    closes(&mut ws).await;

    // A message over maxMessageSize in a frame the server reads: NACK, and
    // the connection stays.
    let (mut ws, _) = connected(&t).await;
    let big = "x".repeat(70_000);
    send(
        &mut ws,
        json!({"action": 15, "channel": "calm", "msgSerial": 0, "messages": [{"data": big}]}),
    )
    .await;
    let n = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (
            n["action"].clone(),
            n["msgSerial"].clone(),
            n["error"]["code"].clone(),
            n["error"]["statusCode"].clone()
        ),
        (json!(2), json!(0), json!(40009), json!(400))
    );
    send(
        &mut ws,
        json!({"action": 15, "channel": "calm", "msgSerial": 1, "messages": [{"data": "ok"}]}),
    )
    .await;
    let a = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (
            a["action"].clone(),
            a["msgSerial"].clone(),
            a["count"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    // A frame over the frame limit: ERROR 40009, closed.
    let huge = "y".repeat(100_000);
    send(
        &mut ws,
        json!({"action": 15, "channel": "calm", "msgSerial": 2, "messages": [{"data": huge}]}),
    )
    .await;
    let e = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (e["action"].clone(), e["error"]["code"].clone()),
        (json!(9), json!(40009))
    );
    closes(&mut ws).await;

    // The bystander got the one good message and still answers.
    let m = next_pm(&mut bystander).await.unwrap();
    assert_eq!(
        (m["action"].clone(), m["messages"][0]["data"].clone()),
        (json!(15), json!("ok"))
    );
    send(&mut bystander, json!({"action": 0, "id": "still"})).await;
    assert_eq!(next_pm(&mut bystander).await.unwrap()["id"], "still");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_refusals_are_error_then_close() {
    let t = server();
    for (query, code) in [
        ("key=app.root:nope&format=json", 40101),
        ("access_token=not-a-token&format=json", 40145),
        ("format=xml", 40003),
        ("key=app.root:rootsecret&v=99", 40017),
    ] {
        let mut ws = raw(&t, query).await;
        let e = next_pm(&mut ws).await.expect("ERROR");
        assert_eq!(
            (e["action"].clone(), e["error"]["code"].clone()),
            (json!(9), json!(code)),
            "{query}"
        );
        assert!(e["error"]["statusCode"].is_u64() && e["error"]["message"].is_string());
        closes(&mut ws).await;
    }
    // Without credentials on a server with keys.
    let mut ws = raw(&t, "format=json").await;
    assert_eq!(next_pm(&mut ws).await.unwrap()["error"]["code"], 40101);
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_echo_false_resume_and_in_band_auth() {
    let t = server();
    // echo=false: its own message is not delivered back; another's is.
    let mut ws = raw(
        &t,
        &format!("key={ROOT}&format=json&echo=false&resume=stale"),
    )
    .await;
    let c = next_pm(&mut ws).await.unwrap();
    // resume is answered with a new connection and 80008 (RTN15c7).
    assert_eq!(
        (c["action"].clone(), c["error"]["code"].clone()),
        (json!(4), json!(80008))
    );
    let id = c["connectionId"].clone();
    send(&mut ws, json!({"action": 10, "channel": "e"})).await;
    assert_eq!(next_pm(&mut ws).await.unwrap()["action"], 11);
    send(
        &mut ws,
        json!({"action": 15, "channel": "e", "msgSerial": 0, "messages": [{"data": "mine"}]}),
    )
    .await;
    assert_eq!(next_pm(&mut ws).await.unwrap()["action"], 1);
    let (mut other, _) = connected(&t).await;
    send(
        &mut other,
        json!({"action": 15, "channel": "e", "msgSerial": 0, "messages": [{"data": "theirs"}]}),
    )
    .await;
    let m = next_pm(&mut ws).await.unwrap();
    assert_eq!(m["messages"][0]["data"], "theirs");

    // In-band AUTH with a token: CONNECTED again, same connectionId.
    let token = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["token", "--key", ROOT])
        .output()
        .expect("tern token");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    send(
        &mut ws,
        json!({"action": 17, "auth": {"accessToken": token}}),
    )
    .await;
    let c2 = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (c2["action"].clone(), c2["connectionId"].clone()),
        (json!(4), id)
    );
    // A bad token in AUTH: ERROR, closed.
    send(
        &mut ws,
        json!({"action": 17, "auth": {"accessToken": "bad.token"}}),
    )
    .await;
    let e = next_pm(&mut ws).await.unwrap();
    assert_eq!(e["action"], 9);
    assert!(
        (40140..=40149).contains(&e["error"]["code"].as_u64().unwrap()),
        "{e}"
    );
    closes(&mut ws).await;
}

// ---------------------------------------------------------------------------
// Rewind, resume, idempotent publishing
// ---------------------------------------------------------------------------

/// Publishes `payload` on `topic` over MQTT 5 (QoS 1, PUBACK awaited).
async fn mqtt_publish(
    c: &rumqttc::v5::AsyncClient,
    el: &mut rumqttc::v5::EventLoop,
    topic: &str,
    payload: &str,
    retain: bool,
) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    c.publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
        .await
        .unwrap();
    poll5(el, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
}

/// Publishes over REST (`POST /channels/{name}/messages`) with curl.
fn rest_publish(t: &Tern, channel: &str, data: &str) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-u", ROOT, "-H", "content-type: application/json", "-d"])
        .arg(json!({ "data": data }).to_string())
        .arg(format!(
            "http://{}/channels/{}/messages",
            t.http,
            channel.replace('/', "%2F")
        ))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201", "REST publish");
}

fn datas(all: &[Value]) -> Vec<String> {
    events(all, "message")
        .iter()
        .map(|m| m["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_rewind_replays_history_then_live_and_the_retained_message() {
    let t = Tern::start(&["--key", ROOT, "--history", "hist/#=100/3600"]);
    let (c, mut el) = mqtt5(&t, "rewind-pub").await;
    poll5(&mut el, |p| {
        matches!(p, rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_)).then_some(())
    })
    .await;
    let port = t.http.port().to_string();
    for (name, channel, param) in [
        ("hist/q", "[?rewind=3]hist/q", None),
        ("hist/p", "hist/p", Some("3")),
    ] {
        // Five messages in history, over MQTT and REST.
        for i in 1..=3 {
            mqtt_publish(&c, &mut el, name, &format!("m{i}"), false).await;
        }
        for i in 4..=5 {
            tokio::task::block_in_place(|| rest_publish(&t, name, &format!("m{i}")));
        }
        let mut args = vec!["rewind", &port, "json", ROOT, channel, "5"];
        args.extend(param);
        let mut node = Node::spawn(&args);
        let ready = tokio::task::block_in_place(|| node.event());
        assert_eq!(ready["event"], "ready");
        assert_eq!(ready["hasBacklog"], true, "{ready}");
        if param.is_some() {
            assert_eq!(ready["params"], json!({"rewind": "3"}));
        }
        // Live after the replay: no gap, no duplicate.
        mqtt_publish(&c, &mut el, name, "live1", false).await;
        tokio::task::block_in_place(|| rest_publish(&t, name, "live2"));
        let all = tokio::task::block_in_place(|| node.finish());
        assert_eq!(
            datas(&all),
            ["m3", "m4", "m5", "live1", "live2"],
            "{channel}"
        );
        let serials: Vec<&str> = events(&all, "message")
            .iter()
            .map(|m| m["serial"].as_str().unwrap())
            .collect();
        assert!(serials.windows(2).all(|w| w[0] < w[1]), "{serials:?}");
    }

    // No history for this channel, but a retained MQTT message: rewind=1
    // gets it (the last message of the channel).
    mqtt_publish(&c, &mut el, "ret/x", "kept", true).await;
    mqtt_publish(&c, &mut el, "ret/x", "not-retained", false).await;
    let all = tokio::task::block_in_place(|| {
        run_node(&["rewind", &port, "msgpack", ROOT, "[?rewind=1]ret/x", "1"])
    });
    assert_eq!(datas(&all), ["kept"]);
    assert_eq!(one(&all, "ready")["hasBacklog"], true);
}

/// A TCP proxy in front of the server that the test can cut: every open
/// pipe is closed (the server sees the socket go) and new connections
/// wait until `release`.
struct Proxy {
    addr: std::net::SocketAddr,
    /// (cut epoch, holding new connections)
    ctl: tokio::sync::watch::Sender<(u64, bool)>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (ctl, _) = tokio::sync::watch::channel((0u64, false));
        let tx = ctl.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = l.accept().await {
                let mut rx = tx.subscribe();
                tokio::spawn(async move {
                    let Ok(epoch) = rx.wait_for(|s| !s.1).await.map(|s| s.0) else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx.wait_for(|s| s.0 != epoch) => {}
                    }
                });
            }
        });
        Proxy { addr, ctl }
    }

    /// Closes every pipe; holds new connections.
    fn cut(&self) {
        self.ctl.send_modify(|s| *s = (s.0 + 1, true));
    }

    fn release(&self) {
        self.ctl.send_modify(|s| s.1 = false);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_resume_after_the_socket_drops_replays_what_was_missed_once() {
    let t = Tern::start(&["--key", ROOT, "--history", "res/#=100/3600"]);
    let proxy = Proxy::start(t.http).await;
    let (c, mut el) = mqtt5(&t, "resume-pub").await;
    poll5(&mut el, |p| {
        matches!(p, rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_)).then_some(())
    })
    .await;
    let port = proxy.addr.port().to_string();
    for format in ["json", "msgpack"] {
        let channel = format!("res/{format}");
        let mut node = Node::spawn(&["resume", &port, format, ROOT, &channel, "2", "7"]);
        let ready = tokio::task::block_in_place(|| node.event());
        assert_eq!(ready["event"], "ready");
        for i in 1..=2 {
            mqtt_publish(&c, &mut el, &channel, &format!("m{i}"), false).await;
        }
        assert_eq!(
            tokio::task::block_in_place(|| node.event())["event"],
            "before"
        );
        // The socket drops; published while the client is away.
        proxy.cut();
        for i in 3..=5 {
            mqtt_publish(&c, &mut el, &channel, &format!("m{i}"), false).await;
        }
        proxy.release();
        let re = tokio::task::block_in_place(|| node.event());
        assert_eq!(re["event"], "reattached", "{re}");
        assert_eq!(
            re["id"], ready["id"],
            "the same connectionId (RTN15c6): {re}"
        );
        assert_eq!(re["errorCode"], Value::Null, "{re}");
        assert_eq!(re["resumed"], true, "RESUMED: {re}");
        for i in 6..=7 {
            mqtt_publish(&c, &mut el, &channel, &format!("m{i}"), false).await;
        }
        let all = tokio::task::block_in_place(|| node.finish());
        assert_eq!(
            datas(&all),
            ["m1", "m2", "m3", "m4", "m5", "m6", "m7"],
            "{format}: each message once, in order"
        );
    }
}

/// The connectionKey of a CONNECTED.
fn key_of(c: &Value) -> String {
    c["connectionDetails"]["connectionKey"]
        .as_str()
        .expect("connectionKey")
        .to_owned()
}

/// The next frame is the echo of a HEARTBEAT with `id` (nothing else came
/// before it).
async fn nothing_before_ping(ws: &mut Ws, id: &str) {
    send(ws, json!({"action": 0, "id": id})).await;
    let f = next_pm(ws).await.expect("HEARTBEAT echo");
    assert_eq!(f, json!({"action": 0, "id": id}));
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_resume_keeps_the_connection_and_a_resent_msg_serial_is_acked_once() {
    let t = server();
    let (mut sub, _) = connected(&t).await;
    send(&mut sub, json!({"action": 10, "channel": "rs"})).await;
    assert_eq!(next_pm(&mut sub).await.unwrap()["action"], 11);

    let (mut ws, c) = connected(&t).await;
    let id = c["connectionId"].clone();
    send(
        &mut ws,
        json!({"action": 15, "channel": "rs", "msgSerial": 0, "messages": [{"data": "first"}]}),
    )
    .await;
    let a = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (a["action"].clone(), a["msgSerial"].clone()),
        (json!(1), json!(0))
    );
    let serial0 = a["res"][0]["serials"][0].clone();
    assert!(serial0.is_string(), "{a}");
    // The socket goes without CLOSE; the client resumes.
    drop(ws);
    let mut ws = raw(
        &t,
        &format!("key={ROOT}&format=json&v=6&resume={}", key_of(&c)),
    )
    .await;
    let c2 = next_pm(&mut ws).await.unwrap();
    assert_eq!(c2["action"], 4, "{c2}");
    assert_eq!(c2["connectionId"], id, "the same connection: {c2}");
    assert_eq!(c2["error"], Value::Null, "no error on a resume: {c2}");
    // msgSerial 0 again (its ACK was lost, say): ACKed with the same
    // serial, not published twice (RTN19a); 1 is new.
    send(
        &mut ws,
        json!({"action": 15, "channel": "rs", "msgSerial": 0, "messages": [{"data": "first"}]}),
    )
    .await;
    let a = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (
            a["action"].clone(),
            a["msgSerial"].clone(),
            a["res"][0]["serials"][0].clone()
        ),
        (json!(1), json!(0), serial0.clone())
    );
    send(
        &mut ws,
        json!({"action": 15, "channel": "rs", "msgSerial": 1, "messages": [{"data": "second"}]}),
    )
    .await;
    let a = next_pm(&mut ws).await.unwrap();
    assert_eq!(
        (a["action"].clone(), a["msgSerial"].clone()),
        (json!(1), json!(1))
    );
    assert_ne!(a["res"][0]["serials"][0], serial0);

    let mut got = Vec::new();
    while got.len() < 2 {
        let m = next_pm(&mut sub).await.expect("MESSAGE");
        assert_eq!(m["action"], 15, "{m}");
        for x in m["messages"].as_array().unwrap() {
            got.push(x["data"].clone());
        }
    }
    assert_eq!(got, [json!("first"), json!("second")]);
    nothing_before_ping(&mut sub, "after-resume").await;

    // CLOSE ends the state: the key no longer resumes.
    send(&mut ws, json!({"action": 7})).await;
    assert_eq!(next_pm(&mut ws).await.unwrap()["action"], 8);
    let mut ws = raw(
        &t,
        &format!("key={ROOT}&format=json&v=6&resume={}", key_of(&c)),
    )
    .await;
    let c3 = next_pm(&mut ws).await.unwrap();
    assert_eq!(c3["error"]["code"], 80008, "{c3}");
    assert_ne!(c3["connectionId"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_repeated_message_id_is_delivered_once() {
    let t = server();
    let (mut sub, _) = connected(&t).await;
    send(&mut sub, json!({"action": 10, "channel": "idem"})).await;
    assert_eq!(next_pm(&mut sub).await.unwrap()["action"], 11);
    let (mut ws, _) = connected(&t).await;
    let mut serials = Vec::new();
    for s in 0..3 {
        send(
            &mut ws,
            json!({"action": 15, "channel": "idem", "msgSerial": s,
                   "messages": [{"id": "fixed:0", "data": "once"}]}),
        )
        .await;
        let a = next_pm(&mut ws).await.unwrap();
        assert_eq!(
            (a["action"].clone(), a["msgSerial"].clone()),
            (json!(1), json!(s))
        );
        serials.push(a["res"][0]["serials"][0].clone());
    }
    assert!(serials.iter().all(|s| *s == serials[0]), "{serials:?}");
    let m = next_pm(&mut sub).await.unwrap();
    assert_eq!(
        (
            m["messages"][0]["data"].clone(),
            m["messages"][0]["id"].clone()
        ),
        (json!("once"), json!("fixed:0"))
    );
    assert_eq!(m["messages"].as_array().map(Vec::len), Some(1));
    nothing_before_ping(&mut sub, "after-dups").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_settings_reach_connections_and_rewind_echoes_the_channel() {
    let t = Tern::start(&[
        "--key",
        ROOT,
        "--history",
        "h=100/3600",
        "--realtime-message-bytes-max",
        "1000",
        "--realtime-rewind-max",
        "2",
    ]);
    let (mut ws, c) = connected(&t).await;
    assert_eq!(c["connectionDetails"]["maxMessageSize"], 1000);
    for s in 0..3 {
        send(
            &mut ws,
            json!({"action": 15, "channel": "h", "msgSerial": s, "messages": [{"data": format!("m{s}")}]}),
        )
        .await;
        assert_eq!(next_pm(&mut ws).await.unwrap()["action"], 1);
    }
    let (mut r, _) = connected(&t).await;
    send(&mut r, json!({"action": 10, "channel": "[?rewind=5]h"})).await;
    let a = next_pm(&mut r).await.unwrap();
    assert_eq!(
        (a["action"].clone(), a["channel"].clone()),
        (json!(11), json!("[?rewind=5]h"))
    );
    assert_ne!(a["flags"].as_u64().unwrap() & 2, 0, "HAS_BACKLOG: {a}");
    let m = next_pm(&mut r).await.unwrap();
    assert_eq!(m["channel"], "[?rewind=5]h", "the exact channel string");
    let data: Vec<&Value> = m["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["data"])
        .collect();
    assert_eq!(data, [&json!("m1"), &json!("m2")], "at most rewind_max");
    // A bad rewind fails the channel only.
    send(&mut r, json!({"action": 10, "channel": "[?rewind=soon]h"})).await;
    let e = next_pm(&mut r).await.unwrap();
    assert_eq!(
        (
            e["action"].clone(),
            e["channel"].clone(),
            e["error"]["code"].clone()
        ),
        (json!(9), json!("[?rewind=soon]h"), json!(40003))
    );
    nothing_before_ping(&mut r, "still-here").await;
}

/// The SDK's `history()` (Realtime and Rest clients, JSON and msgpack):
/// pages of two followed with `next()`, binary and JSON data decoded,
/// `direction: forwards`; REST publish results carry serials; REST
/// `presence.get()` and `time()` answer.
#[test]
fn sdk_history_pages_through_realtime_and_rest_clients() {
    let t = Tern::start(&["--key", ROOT, "--history", "h:*=100/3600"]);
    let port = t.http.port().to_string();
    for format in ["json", "msgpack"] {
        let channel = format!("h:{format}");
        let all = Node::spawn(&["history", &port, format, ROOT, &channel]).finish();
        let published = one(&all, "published");
        let serials = published["serials"].as_array().expect("serials");
        assert_eq!(serials.len(), 5, "{published}");
        assert!(serials.iter().all(|s| s[0].is_string()), "{published}");
        for p in events(&all, "pages") {
            let pages = p["pages"].as_array().unwrap();
            let sizes: Vec<usize> = pages
                .iter()
                .map(|pg| pg.as_array().unwrap().len())
                .collect();
            assert_eq!(sizes, [2, 2, 1], "{} ({format}): {p}", p["from"]);
            let flat: Vec<&Value> = pages.iter().flat_map(|pg| pg.as_array().unwrap()).collect();
            assert_eq!(flat[0]["data"], "five", "newest first");
            assert_eq!(flat[1]["data"], json!({"n": 4}), "JSON decoded");
            assert_eq!(flat[2]["data"], json!({"base64": "AQID"}), "bytes decoded");
            assert_eq!(flat[4]["data"], "one");
            assert_eq!(flat[4]["name"], "t");
        }
        assert_eq!(events(&all, "pages").len(), 2);
        let fwd = one(&all, "forwards")["items"].as_array().unwrap().clone();
        let order: Vec<Value> = fwd.iter().map(|m| m["name"].clone()).collect();
        assert_eq!(
            order,
            [json!("t"), json!("t"), json!("b"), json!("j"), json!("t")]
        );
        assert_eq!(one(&all, "presence")["count"], 0);
        assert!(
            one(&all, "time")["ms"]
                .as_u64()
                .is_some_and(|ms| ms > 1_700_000_000_000)
        );
    }
}
