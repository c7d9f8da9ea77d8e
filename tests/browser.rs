//! End to end in a real browser: headless Chromium (Debian's `chromium`,
//! installed by scripts/test) opens the channel page Tern serves
//! (`/demo/channel`, which loads `/lib/tern.js`), an MQTT client publishes,
//! and the page shows the message; then the page publishes (REST, from
//! `tern.js`) and the MQTT subscriber receives it. The page is read and
//! driven over the DevTools protocol.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Tern;
use futures_util::{SinkExt, StreamExt};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{Client, Event, MqttOptions};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(20);

struct Browser {
    child: Child,
    profile: std::path::PathBuf,
    devtools_port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn launch(url: &str) -> Browser {
    let profile = common::temp_dir();
    let mut child = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (scripts/test installs Debian's chromium)");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(WAIT)
        .expect("chromium printed no DevTools address")
        .parse()
        .expect("a port");
    Browser {
        child,
        profile,
        devtools_port: port,
    }
}

/// The DevTools WebSocket URL of the page showing `path`.
fn page_target(b: &Browser, path: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}/json/list", b.devtools_port))
            .output()
            .expect("curl");
        if let Ok(Value::Array(targets)) = serde_json::from_slice::<Value>(&out.stdout) {
            for t in targets {
                if t["type"] == "page"
                    && t["url"].as_str().is_some_and(|u| u.contains(path))
                    && let Some(ws) = t["webSocketDebuggerUrl"].as_str()
                {
                    return ws.to_owned();
                }
            }
        }
        assert!(Instant::now() < deadline, "no page target for {path}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Evaluates `expr` in the page (awaiting promises) and returns its value.
async fn eval(ws: &mut Ws, id: &mut u64, expr: &str) -> Value {
    match try_eval(ws, id, expr).await {
        Ok(v) => v,
        Err(e) => panic!("page exception: {e}"),
    }
}

/// [`eval`], with a page exception as `Err`.
async fn try_eval(ws: &mut Ws, id: &mut u64, expr: &str) -> Result<Value, String> {
    *id += 1;
    let req = json!({
        "id": *id,
        "method": "Runtime.evaluate",
        "params": { "expression": expr, "returnByValue": true, "awaitPromise": true },
    });
    ws.send(WsMessage::Text(req.to_string().into()))
        .await
        .expect("DevTools send");
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("DevTools answer")
            .expect("DevTools stream")
            .expect("DevTools frame");
        if let WsMessage::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("DevTools JSON");
            if v["id"] == *id {
                if let Some(ex) = v["result"]["exceptionDetails"].as_object() {
                    return Err(format!("{ex:?}"));
                }
                return Ok(v["result"]["result"]["value"].clone());
            }
        }
    }
}

/// Polls `expr` until `ok` holds for its value (exceptions, e.g. while
/// the page is still loading, count as not yet).
async fn wait_for(ws: &mut Ws, id: &mut u64, expr: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = try_eval(ws, id, expr).await.unwrap_or(Value::Null);
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "page never reached it: {expr} = {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mqtt_client(t: &Tern, id: &str) -> (Client, mpsc::Receiver<Packet>) {
    let mut o = MqttOptions::new(id, t.mqtt.ip().to_string(), t.mqtt.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut conn) = Client::new(o, 64);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(p)) => {
                    if tx.send(p).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, rx)
}

fn expect(rx: &mpsc::Receiver<Packet>, what: &str, f: impl Fn(&Packet) -> bool) -> Packet {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let p = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what}"));
        if f(&p) {
            return p;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_page_sees_mqtt_messages_and_publishes_back() {
    let t = Tern::start(&["--history", "browser/#=100/3600"]);
    // History to rewind over, before the page opens.
    let (publisher, prx) = mqtt_client(&t, "browser-pub");
    expect(&prx, "CONNACK", |p| matches!(p, Packet::ConnAck(_)));
    publisher
        .publish("browser/room", QoS::AtLeastOnce, false, b"earlier".to_vec())
        .unwrap();
    expect(&prx, "PUBACK", |p| matches!(p, Packet::PubAck(_)));

    let path = "/demo/channel?channel=browser%2Froom&rewind=5";
    let b = launch(&format!("http://{}{path}", t.http));
    let target = page_target(&b, "/demo/channel");
    let (mut ws, _) = tokio_tungstenite::connect_async(target.as_str())
        .await
        .expect("DevTools WebSocket");
    let mut id = 0;
    wait_for(
        &mut ws,
        &mut id,
        "document.getElementById('status').textContent",
        |v| v == "live",
    )
    .await;
    // The rewound message is on the page.
    wait_for(
        &mut ws,
        &mut id,
        "document.getElementById('log').innerText",
        |v| v.as_str().is_some_and(|s| s.contains("earlier")),
    )
    .await;

    // MQTT → page: text and JSON.
    publisher
        .publish(
            "browser/room",
            QoS::AtLeastOnce,
            false,
            b"hello from mqtt".to_vec(),
        )
        .unwrap();
    let log = wait_for(
        &mut ws,
        &mut id,
        "document.getElementById('log').innerText",
        |v| v.as_str().is_some_and(|s| s.contains("hello from mqtt")),
    )
    .await;
    assert!(log.as_str().unwrap().find("earlier") < log.as_str().unwrap().find("hello from mqtt"));

    // Page → MQTT: tern.js publishes over REST.
    let (sub, srx) = mqtt_client(&t, "browser-sub");
    sub.subscribe("browser/#", QoS::AtLeastOnce).unwrap();
    expect(&srx, "SUBACK", |p| matches!(p, Packet::SubAck(_)));
    let r = eval(
        &mut ws,
        &mut id,
        "tern.publish('browser/room', {from: 'the page'}, {name: 'greet'}).then(r => r.serials.length)",
    )
    .await;
    assert_eq!(r, 1);
    let p = expect(&srx, "the page's message", |p| {
        matches!(p, Packet::Publish(_))
    });
    let Packet::Publish(p) = p else {
        unreachable!()
    };
    assert_eq!(&p.topic[..], b"browser/room");
    assert_eq!(&p.payload[..], br#"{"from":"the page"}"#);
    let props = p.properties.unwrap_or_default();
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert!(
        props
            .user_properties
            .contains(&("name".into(), "greet".into()))
    );
    // And the page saw its own message come back, decoded as an object.
    wait_for(
        &mut ws,
        &mut id,
        "document.getElementById('log').innerText",
        |v| {
            v.as_str()
                .is_some_and(|s| s.contains(r#"greet: {"from":"the page"}"#))
        },
    )
    .await;
    let _ = publisher.disconnect();
    let _ = sub.disconnect();
}
