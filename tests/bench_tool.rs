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
