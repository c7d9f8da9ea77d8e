//! Interop with a third-party client: each test starts the real `tern` binary
//! and runs one case of a Python script in `tests/py/` (paho-mqtt 2.x) against
//! it, failing with the script's output when the script fails.
//!
//! `scripts/test` installs paho-mqtt (pinned in `tests/py/requirements.txt`).
//! Every script passes against Debian's mosquitto 2.0.11 as well, except where
//! a test's comment says mosquitto differs.
//!
//! Test names carry the MQTT 5.0 normative statement (`mqtt_3_3_1_9` for
//! `[MQTT-3.3.1-9]`) or section (`mqtt_4_8_2`) they check; a `_v311` twin runs
//! the same behaviour over MQTT 3.1.1.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A script that runs longer than this is killed and the test fails; the
/// scripts' own watchdog (50 s) normally fires first.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

fn py_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py")
}

/// Starts tern with `flags` and runs `script --case case --version version`.
fn run_case(script: &str, case: &str, version: u8, flags: &[&str]) {
    // Loopback listeners accept anonymous clients by default.
    let tern = common::Tern::start(flags);
    let port = tern.port();
    let version = version.to_string();
    let mut child = Command::new("python3")
        .arg(py_dir().join(script))
        .args(["--port", &port, "--case", case, "--version", &version])
        .current_dir(py_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (scripts/test installs paho-mqtt)");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let ok = status.is_some_and(|s| s.success());
    if !ok {
        let what = match status {
            Some(s) => format!("exited with {s}"),
            None => format!("killed after {SCRIPT_TIMEOUT:?}"),
        };
        panic!(
            "{script} --case {case} --version {version} against tern on port {port} {what}\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        );
    }
    print!("{stdout}");
}

/// `paho!(test_name, "script.py", "case", version, ["--flag", ...]);`
macro_rules! paho {
    ($(#[$meta:meta])* $name:ident, $script:literal, $case:literal, $version:literal $(, [$($flag:literal),*])?) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            run_case($script, $case, $version, &[$($($flag),*)?]);
        }
    };
}

// --- publish / subscribe -------------------------------------------------

paho!(mqtt_4_3_1_qos0_pubsub_v311, "pubsub.py", "qos0", 3);
paho!(mqtt_4_3_1_qos0_pubsub_v5, "pubsub.py", "qos0", 5);
paho!(mqtt_4_3_2_qos1_pubsub_v311, "pubsub.py", "qos1", 3);
paho!(mqtt_4_3_2_qos1_pubsub_v5, "pubsub.py", "qos1", 5);
paho!(
    mqtt_4_3_3_qos2_pubsub_exactly_once_v311,
    "pubsub.py",
    "qos2",
    3
);
paho!(
    mqtt_4_3_3_qos2_pubsub_exactly_once_v5,
    "pubsub.py",
    "qos2",
    5
);
paho!(
    /// Delivered QoS is min(published QoS, granted QoS) (v5 MQTT-3.8.4-8, v3.1.1 MQTT-3.8.4-6).
    mqtt_3_8_4_8_qos_downgraded_to_subscription_qos_v311,
    "pubsub.py",
    "downgrade",
    3
);
paho!(
    mqtt_3_8_4_8_qos_downgraded_to_subscription_qos_v5,
    "pubsub.py",
    "downgrade",
    5
);
paho!(
    /// 100 messages per QoS from one publisher arrive in order (Ordered Topic).
    mqtt_4_6_0_6_order_preserved_per_publisher_v311,
    "pubsub.py",
    "order",
    3
);
paho!(
    mqtt_4_6_0_6_order_preserved_per_publisher_v5,
    "pubsub.py",
    "order",
    5
);

// --- retained messages ---------------------------------------------------

paho!(
    /// Stored, sent to a new subscriber with RETAIN 1; live forwards have RETAIN 0
    /// (v3.1.1 MQTT-3.3.1-5/-6/-8/-9).
    mqtt_3_3_1_5_retained_delivered_on_subscribe_v311,
    "retained.py",
    "delivered_on_subscribe",
    3
);
paho!(
    mqtt_3_3_1_5_retained_delivered_on_subscribe_v5,
    "retained.py",
    "delivered_on_subscribe",
    5
);
paho!(
    /// A newer retained message (any QoS) replaces the older; a non-retained one leaves it.
    mqtt_3_3_1_5_retained_replaced_by_newer_v311,
    "retained.py",
    "replace",
    3
);
paho!(
    mqtt_3_3_1_5_retained_replaced_by_newer_v5,
    "retained.py",
    "replace",
    5
);
paho!(
    /// An empty retained payload is forwarded as normal and clears the topic (v5 MQTT-3.3.1-6/-7).
    mqtt_3_3_1_6_empty_retained_payload_clears_v311,
    "retained.py",
    "clear",
    3
);
paho!(
    mqtt_3_3_1_6_empty_retained_payload_clears_v5,
    "retained.py",
    "clear",
    5
);
paho!(
    mqtt_3_3_1_9_retained_matched_by_wildcard_filters_v311,
    "retained.py",
    "wildcard",
    3
);
paho!(
    mqtt_3_3_1_9_retained_matched_by_wildcard_filters_v5,
    "retained.py",
    "wildcard",
    5
);
paho!(
    /// Retain Handling 0 sends on every subscribe, 1 only for a new subscription, 2 never.
    mqtt_3_3_1_9_to_11_v5_retain_handling,
    "retained.py",
    "retain_handling",
    5
);
paho!(
    mqtt_3_3_1_12_and_13_v5_retain_as_published,
    "retained.py",
    "retain_as_published",
    5
);

// --- wildcards and $SYS --------------------------------------------------

paho!(
    mqtt_4_7_1_3_plus_matches_exactly_one_level_v311,
    "wildcards.py",
    "plus",
    3
);
paho!(
    mqtt_4_7_1_3_plus_matches_exactly_one_level_v5,
    "wildcards.py",
    "plus",
    5
);
paho!(
    mqtt_4_7_1_2_hash_matches_parent_and_descendants_v311,
    "wildcards.py",
    "hash",
    3
);
paho!(
    mqtt_4_7_1_2_hash_matches_parent_and_descendants_v5,
    "wildcards.py",
    "hash",
    5
);
paho!(
    /// `#`, `+/broker/uptime` and `+/broker/#` do not match `$SYS/...`.
    mqtt_4_7_2_1_sys_topics_not_matched_by_root_wildcards_v311,
    "wildcards.py",
    "sys_not_matched_by_root_wildcards",
    3,
    ["--sys-interval-secs", "1"]
);
paho!(
    mqtt_4_7_2_1_sys_topics_not_matched_by_root_wildcards_v5,
    "wildcards.py",
    "sys_not_matched_by_root_wildcards",
    5,
    ["--sys-interval-secs", "1"]
);
paho!(
    sys_broker_uptime_received_when_subscribed_directly_v311,
    "wildcards.py",
    "sys_uptime",
    3,
    ["--sys-interval-secs", "1"]
);
paho!(
    sys_broker_uptime_received_when_subscribed_directly_v5,
    "wildcards.py",
    "sys_uptime",
    5,
    ["--sys-interval-secs", "1"]
);
paho!(
    /// All eight documented `$SYS/broker/...` topics, numeric, retained.
    sys_documented_topics_published_retained,
    "wildcards.py",
    "sys_all_topics",
    5,
    ["--sys-interval-secs", "1"]
);

// --- will messages -------------------------------------------------------

paho!(
    /// TCP closed without DISCONNECT: the will is published.
    mqtt_3_1_2_8_will_published_on_abnormal_disconnect_v311,
    "will.py",
    "on_abnormal_disconnect",
    3
);
paho!(
    mqtt_3_1_2_8_will_published_on_abnormal_disconnect_v5,
    "will.py",
    "on_abnormal_disconnect",
    5
);
paho!(
    /// DISCONNECT with reason 0x00 discards the will.
    mqtt_3_14_4_3_no_will_after_clean_disconnect_v311,
    "will.py",
    "not_on_clean_disconnect",
    3
);
paho!(
    mqtt_3_14_4_3_no_will_after_clean_disconnect_v5,
    "will.py",
    "not_on_clean_disconnect",
    5
);
paho!(
    /// DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will.
    mqtt_3_14_2_1_v5_disconnect_0x04_publishes_will,
    "will.py",
    "v5_disconnect_with_will",
    5
);
paho!(
    /// Will Delay Interval 2 s: nothing for 1.5 s, then the will.
    mqtt_3_1_3_2_2_v5_will_published_after_will_delay,
    "will.py",
    "v5_will_delay",
    5
);
paho!(
    /// Reconnecting to the session within the Will Delay Interval: no will.
    mqtt_3_1_3_9_v5_will_cancelled_by_reconnect_within_delay,
    "will.py",
    "v5_will_delay_cancelled_by_reconnect",
    5
);

// --- sessions ------------------------------------------------------------

paho!(
    /// Clean Session 0: QoS 1/2 messages published while offline are delivered on
    /// reconnect, in order, with Session Present 1 (v3.1.1 MQTT-3.1.2-5, MQTT-3.2.2-2).
    mqtt_3_1_2_5_offline_messages_delivered_on_resume_v311,
    "session.py",
    "offline_messages_delivered",
    3
);
paho!(
    /// Clean Start 0 with a Session Expiry Interval: as above (v5 MQTT-3.1.2-5, MQTT-3.2.2-3).
    mqtt_3_1_2_5_offline_messages_delivered_on_resume_v5,
    "session.py",
    "offline_messages_delivered",
    5
);
paho!(
    /// Clean Session/Start 1 discards the stored session (Session Present 0).
    mqtt_3_1_2_4_clean_start_discards_session_v311,
    "session.py",
    "clean_start_discards_session",
    3
);
paho!(
    mqtt_3_1_2_4_clean_start_discards_session_v5,
    "session.py",
    "clean_start_discards_session",
    5
);
paho!(
    v5_3_1_2_11_session_expiry_zero_ends_session_at_disconnect,
    "session.py",
    "v5_session_expiry_zero_ends_session",
    5
);
paho!(
    v5_3_1_2_11_session_expires_after_interval,
    "session.py",
    "v5_session_expires",
    5
);
paho!(
    /// A second connection with the same client id disconnects the first.
    mqtt_3_1_4_3_session_takeover_disconnects_first_connection_v311,
    "session.py",
    "takeover",
    3
);
paho!(
    /// As above, and the first v5 connection gets DISCONNECT 0x8E (Session taken over).
    /// (Debian's mosquitto 2.0.11 closes the socket without the DISCONNECT.)
    mqtt_3_1_4_3_session_takeover_sends_disconnect_0x8e_v5,
    "session.py",
    "takeover",
    5
);

// --- MQTT 5.0 features ---------------------------------------------------

paho!(
    /// User properties (order, duplicates), content type, response topic, correlation data
    /// and payload format indicator are forwarded unaltered (MQTT-3.3.2-4/-15/-16/-17/-18/-20).
    mqtt_3_3_2_17_v5_publish_properties_forwarded_unaltered,
    "v5.py",
    "properties_pass_through",
    5
);
paho!(
    /// A retained message with Message Expiry Interval 1 is not delivered after 2.2 s.
    mqtt_3_3_2_5_v5_expired_retained_message_not_delivered,
    "v5.py",
    "message_expiry_retained",
    5
);
paho!(
    /// A message queued for an offline session expires; an unexpired one carries the
    /// decremented Message Expiry Interval (MQTT-3.3.2-5, MQTT-3.3.2-6).
    mqtt_3_3_2_5_v5_expired_queued_message_not_delivered,
    "v5.py",
    "message_expiry_queued",
    5
);
paho!(
    mqtt_3_3_2_6_v5_retained_message_expiry_interval_decremented,
    "v5.py",
    "message_expiry_retained_decremented",
    5
);
paho!(
    /// Overlapping subscriptions of one client: one copy carrying both identifiers (tern's
    /// default; Debian's mosquitto sends one copy per subscription, which the spec also allows).
    mqtt_3_3_4_4_v5_subscription_identifiers_delivered,
    "v5.py",
    "subscription_identifiers",
    5
);
paho!(
    /// `--overlap-deliver-each`: one copy per matching subscription, each with its own
    /// identifier and QoS.
    mqtt_3_3_4_5_v5_overlap_deliver_each_copy_per_subscription,
    "v5.py",
    "overlap_deliver_each",
    5,
    ["--overlap-deliver-each"]
);
paho!(
    mqtt_3_8_3_3_v5_no_local_not_sent_back_to_publisher,
    "v5.py",
    "no_local",
    5
);
paho!(
    /// `$share/g/filter` with two members: each message to exactly one, both get some.
    mqtt_4_8_2_v5_shared_subscription_each_message_to_one_member,
    "v5.py",
    "shared_subscription",
    5
);
paho!(
    mqtt_3_2_2_16_v5_assigned_client_identifier_for_empty_id,
    "v5.py",
    "assigned_client_identifier",
    5
);
paho!(
    /// The broker resolves a Topic Alias set by the publishing client.
    mqtt_3_3_2_3_4_v5_topic_alias_from_client,
    "v5.py",
    "topic_alias_from_client",
    5
);
paho!(
    /// `--keepalive-max-secs 10` and a client asking 60: CONNACK Server Keep Alive 10.
    mqtt_3_2_2_21_v5_server_keep_alive_caps_client_keep_alive,
    "v5.py",
    "server_keep_alive",
    5,
    ["--keepalive-max-secs", "10"]
);
paho!(
    /// Payload Format Indicator 1 with invalid UTF-8: PUBACK or DISCONNECT 0x99, not forwarded.
    /// (Debian's mosquitto 2.0.11 accepts and forwards it; the spec makes the check a MAY.)
    mqtt_3_3_2_3_2_v5_invalid_utf8_payload_rejected_0x99,
    "v5.py",
    "invalid_utf8_payload_rejected",
    5
);
