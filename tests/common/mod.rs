//! Shared harness for the integration tests: runs the real `tern` binary on
//! free ports and stops it (by PID, through `Child`) when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `tern serve` process.
pub struct Tern {
    child: Child,
    /// The MQTT TCP listener's address, read from the `listening mqtt ADDR` line.
    pub mqtt: SocketAddr,
    /// The HTTP listener (`/mqtt` WebSocket, `/time`, `/keys/.../requestToken`).
    pub http: SocketAddr,
    /// The MQTT/TLS listener, when started with `--mqtts`.
    pub mqtts: Option<SocketAddr>,
    /// The HTTPS listener, when started with `--https`.
    pub https: Option<SocketAddr>,
    /// Lines the server printed on stdout after the listening line.
    pub stdout: mpsc::Receiver<String>,
    /// Data directory; removed on drop when the harness created it.
    pub data_dir: std::path::PathBuf,
    owns_dir: bool,
}

impl Tern {
    /// Starts `tern serve --mqtt 127.0.0.1:0` with `extra` flags appended.
    pub fn start(extra: &[&str]) -> Tern {
        let mut t = Tern::start_in(&temp_dir(), "127.0.0.1:0", extra);
        t.owns_dir = true;
        t
    }

    /// Starts `tern serve` on `data_dir` (kept on drop, for restarts) with
    /// the MQTT listener on `mqtt` (`127.0.0.1:0` for any free port).
    pub fn start_in(data_dir: &std::path::Path, mqtt: &str, extra: &[&str]) -> Tern {
        let data_dir = data_dir.to_path_buf();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
        cmd.arg("serve")
            .arg("--mqtt")
            .arg(mqtt)
            .arg("--http")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn tern");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut mqtt, mut http, mut mqtts, mut https) = (None, None, None, None);
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("tern did not print its listening lines and `ready` within 30 s");
            let parse = |a: &str| -> SocketAddr { a.trim().parse().expect("listening address") };
            if let Some(a) = line.strip_prefix("listening mqtt ") {
                mqtt = Some(parse(a));
            } else if let Some(a) = line.strip_prefix("listening mqtts ") {
                mqtts = Some(parse(a));
            } else if let Some(a) = line.strip_prefix("listening https ") {
                https = Some(parse(a));
            } else if let Some(a) = line.strip_prefix("listening http ") {
                http = Some(parse(a));
            } else if line.trim() == "ready" {
                break;
            }
        }
        Tern {
            child,
            mqtt: mqtt.expect("no `listening mqtt` line"),
            http: http.expect("no `listening http` line"),
            mqtts,
            https,
            stdout: rx,
            data_dir,
            owns_dir: false,
        }
    }

    /// Kills the server with SIGKILL (no chance to flush anything) and
    /// waits for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM (graceful shutdown) and waits.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// The MQTT port as a string, handy for command-line clients.
    pub fn port(&self) -> String {
        self.mqtt.port().to_string()
    }

    /// The OS process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A fresh, unused directory path under the system's temporary directory.
pub fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "tern-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for Tern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
