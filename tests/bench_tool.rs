//! `tern bench` against the real broker: correctness of one short run
//! (never its speed).

mod common;

use std::process::Command;

#[test]
fn bench_pairs_qos1_delivers_everything_once() {
    // A deep session queue: the broker's default (1000, drop-oldest) may
    // drop QoS 1 messages by design when a subscriber falls behind on a
    // loaded machine, and this test checks the tool's accounting.
    let t = common::Tern::start(&["--session-queue-max", "1000000"]);
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "bench",
            "--scenario",
            "pairs",
            "--count",
            "4",
            "--qos",
            "1",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--port",
            &t.port(),
            "--json",
        ])
        .output()
        .expect("run tern bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tern bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{stdout}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("the JSON line parses");
    assert_eq!(v["scenario"], "pairs");
    assert_eq!(v["qos"], 1);
    assert!(v["sent"].as_u64().expect("sent") > 0, "{line}");
    assert!(
        v["sent_per_sec"].as_f64().expect("sent_per_sec") > 0.0,
        "{line}"
    );
    assert_eq!(v["lost"].as_u64(), Some(0), "{line}");
    assert_eq!(v["dup"].as_u64(), Some(0), "{line}");
    assert_eq!(v["expected"], v["received"], "{line}");
    for key in ["delivered_per_sec", "p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(v.get(key).is_some(), "{key} missing from {line}");
    }
}

#[test]
fn bench_reports_an_unreachable_broker() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "bench",
            "--scenario",
            "fanin",
            "--duration",
            "1",
            "--port",
            &port.to_string(),
        ])
        .output()
        .expect("run tern bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to 127.0.0.1"),
        "unexpected error output:\n{stderr}"
    );
}

/// Runs `tern bench` with `args` against `port` (`--json` added), checks it
/// succeeded and returns its JSON line.
fn bench_json(port: &str, args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("bench")
        .args(args)
        .args(["--port", port, "--json"])
        .output()
        .expect("run tern bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tern bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{stdout}"))
        .to_owned();
    let v: serde_json::Value = serde_json::from_str(&line).expect("the JSON line parses");
    (v, line)
}

/// Every QoS 1 message the broker acknowledged reached the subscriber, once.
fn assert_all_acked_delivered(v: &serde_json::Value, line: &str) {
    let acked = v["acked"].as_u64().expect("acked");
    assert!(acked > 0, "{line}");
    assert_eq!(v["lost"].as_u64(), Some(0), "{line}");
    assert_eq!(v["unacked"].as_u64(), Some(0), "{line}");
    assert_eq!(v["refused"].as_u64(), Some(0), "{line}");
    // One subscriber: what it was owed is what the publishers got PUBACK for.
    assert_eq!(v["expected"].as_u64(), Some(acked), "{line}");
    assert_eq!(v["received"].as_u64(), Some(acked), "{line}");
    assert_eq!(v["foreign"].as_u64(), Some(0), "{line}");
}

#[test]
fn bench_persistent_fanin_qos1_delivers_every_acked_message() {
    let t = common::Tern::start(&["--session-queue-max", "100000"]);
    // Open loop at a modest rate: a correctness check, not a speed test.
    let (v, line) = bench_json(
        &t.port(),
        &[
            "--scenario",
            "fanin",
            "--qos",
            "1",
            "--persistent",
            "--rate",
            "5000",
            "--duration",
            "1",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(v["persistent"], true, "{line}");
    assert!(v.get("offline").is_none(), "{line}");
    assert_all_acked_delivered(&v, &line);
    for key in ["acked_per_sec", "late", "delivered_per_sec", "p50_us"] {
        assert!(v.get(key).is_some(), "{key} missing from {line}");
    }
}

#[test]
fn bench_offline_fanin_qos1_drains_every_acked_message() {
    let t = common::Tern::start(&["--session-queue-max", "100000"]);
    for version in ["5", "3"] {
        let (v, line) = bench_json(
            &t.port(),
            &[
                "--scenario",
                "fanin",
                "--qos",
                "1",
                "--persistent",
                "--offline",
                "--mqtt-version",
                version,
                "--rate",
                "5000",
                "--duration",
                "1",
                "--warmup",
                "0",
            ],
        );
        assert_eq!(v["offline"], true, "{line}");
        assert_all_acked_delivered(&v, &line);
        assert_eq!(v["sessions_resumed"].as_u64(), Some(1), "{line}");
        assert_eq!(v["drained"], true, "{line}");
        assert_eq!(v["dup"].as_u64(), Some(0), "{line}");
        assert!(v["drain_per_sec"].as_f64().is_some(), "{line}");
        // Offline delivery has no meaningful latency.
        for key in ["p50_us", "p99_us", "max_us", "delivered_per_sec"] {
            assert!(v.get(key).is_none(), "{key} present in {line}");
        }
    }
}

#[test]
fn bench_offline_needs_persistent_and_a_fan_scenario() {
    for args in [
        &["--scenario", "fanin", "--offline"][..],
        &["--scenario", "pairs", "--persistent", "--offline"][..],
        &["--scenario", "conns", "--persistent"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("bench")
            .args(args)
            .args(["--duration", "1", "--port", "1"])
            .output()
            .expect("run tern bench");
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("persistent") || stderr.contains("offline"),
            "{args:?}: unexpected error output:\n{stderr}"
        );
    }
}

/// A short open-loop QoS 0 run against `t` (MQTT and HTTP ports given)
/// that must deliver every message once; returns the JSON line.
fn assert_ws_run_delivers_everything(t: &common::Tern, args: &[&str]) -> serde_json::Value {
    let ws_port = t.http.port().to_string();
    let mut all: Vec<&str> = vec![
        "--rate",
        "2000",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--ws-port",
        &ws_port,
    ];
    all.extend_from_slice(args);
    let (v, line) = bench_json(&t.port(), &all);
    assert!(v["sent"].as_u64().expect("sent") > 0, "{line}");
    assert_eq!(v["lost"].as_u64(), Some(0), "{line}");
    assert_eq!(v["dup"].as_u64(), Some(0), "{line}");
    assert_eq!(v["foreign"].as_u64(), Some(0), "{line}");
    assert_eq!(v["expected"], v["received"], "{line}");
    assert!(v["expected"].as_u64().expect("expected") > 0, "{line}");
    assert!(v.get("p99_us").is_some(), "{line}");
    v
}

#[test]
fn bench_fanout_over_mqtt_websocket_delivers_everything() {
    let t = common::Tern::start(&[]);
    for version in ["5", "3"] {
        let v = assert_ws_run_delivers_everything(
            &t,
            &[
                "--scenario",
                "fanout",
                "--subscribers",
                "5",
                "--transport",
                "ws",
                "--mqtt-version",
                version,
            ],
        );
        assert_eq!(v["transport"], "ws");
        // 5 subscribers each owed every message.
        assert_eq!(
            v["expected"].as_u64(),
            v["sent"].as_u64().map(|s| s * 5),
            "warm-up 0: all sent are measured"
        );
    }
}

#[test]
fn bench_fanout_to_realtime_subscribers_delivers_everything() {
    let t = common::Tern::start(&[]);
    for transport in ["tcp", "ws"] {
        let v = assert_ws_run_delivers_everything(
            &t,
            &[
                "--scenario",
                "fanout",
                "--subscribers",
                "5",
                "--sub-protocol",
                "realtime",
                "--transport",
                transport,
            ],
        );
        assert_eq!(v["sub_protocol"], "realtime");
        assert_eq!(v["pub_protocol"], "mqtt");
    }
}

#[test]
fn bench_fanin_from_realtime_publishers_delivers_everything() {
    let t = common::Tern::start(&[]);
    let v = assert_ws_run_delivers_everything(
        &t,
        &[
            "--scenario",
            "fanin",
            "--publishers",
            "4",
            "--pub-protocol",
            "realtime",
        ],
    );
    assert_eq!(v["pub_protocol"], "realtime");
    // Every realtime publish was ACKed, none refused or left unanswered.
    assert_eq!(v["acked"], v["expected"], "{v}");
    assert_eq!(v["refused"].as_u64(), Some(0), "{v}");
    assert_eq!(v["unacked"].as_u64(), Some(0), "{v}");
}

#[test]
fn bench_realtime_needs_qos0_and_a_channel_per_subscriber() {
    for args in [
        &[
            "--scenario",
            "fanout",
            "--sub-protocol",
            "realtime",
            "--qos",
            "1",
        ][..],
        &["--scenario", "fanin", "--sub-protocol", "realtime"][..],
        &["--scenario", "conns", "--pub-protocol", "realtime"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("bench")
            .args(args)
            .args(["--duration", "1", "--port", "1", "--ws-port", "1"])
            .output()
            .expect("run tern bench");
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("realtime"),
            "{args:?}: unexpected error output:\n{stderr}"
        );
    }
}
