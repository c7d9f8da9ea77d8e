#!/usr/bin/env python3
"""Will messages through paho-mqtt."""

import time

from mqttcheck import PacketTypes, Peer, ReasonCode, check, main, props, uniq


def _watch(port, version, topic):
    w = Peer(port, version, name="watcher")
    w.connect()
    w.subscribe(topic, 1)
    return w


def on_abnormal_disconnect(port, version):
    """A connection closed without DISCONNECT publishes the will [MQTT-3.1.2-8]."""
    t = uniq("will") + "/status"
    w = _watch(port, version, t)
    c = Peer(port, version, client_id=uniq("w").replace("/", "-"), will=(t, b"gone", 1, False), name="dying")
    c.connect_raw()
    w.expect_none(0.3, "will while the client is connected")
    c.abort()
    m = w.expect_one(what="will message")
    check(m.payload == b"gone", f"will payload {m.payload!r}")
    check(m.qos == 1, f"will QoS {m.qos}, expected 1")
    w.expect_none(0.5, "second will")
    w.stop()


def not_on_clean_disconnect(port, version):
    """DISCONNECT (reason 0x00) discards the will [MQTT-3.14.4-3 / MQTT-3.1.2-10]."""
    t = uniq("will") + "/status"
    w = _watch(port, version, t)
    c = Peer(port, version, client_id=uniq("w").replace("/", "-"), will=(t, b"gone", 1, False), name="leaving")
    c.connect()
    c.disconnect()
    w.expect_none(1.5, "will after a clean DISCONNECT")
    w.stop()


def v5_disconnect_with_will(port, version):
    """v5 DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will."""
    check(version == 5, "v5 only")
    t = uniq("will") + "/status"
    w = _watch(port, 5, t)
    c = Peer(port, 5, client_id=uniq("w").replace("/", "-"), will=(t, b"gone-04", 1, False), name="leaving")
    c.connect()
    c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
    m = w.expect_one(what="will after DISCONNECT 0x04")
    check(m.payload == b"gone-04", f"will payload {m.payload!r}")
    w.stop()


def v5_will_delay(port, version):
    """v5 Will Delay Interval: the will is published only after the delay [MQTT-3.1.2-8]."""
    check(version == 5, "v5 only")
    t = uniq("will") + "/status"
    w = _watch(port, 5, t)
    wp = props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)
    c = Peer(
        port,
        5,
        client_id=uniq("w").replace("/", "-"),
        will=(t, b"late", 1, False, wp),
        expiry=60,
        clean=True,
        name="dying",
    )
    c.connect_raw()
    c.abort()
    t0 = time.monotonic()
    w.expect_none(1.5, "will before its 2 s delay")
    m = w.expect_one(timeout=4, what="delayed will")
    waited = time.monotonic() - t0
    check(m.payload == b"late", f"will payload {m.payload!r}")
    check(waited >= 1.5, f"will arrived after {waited:.2f}s, before its 2 s delay")
    w.stop()


def v5_will_delay_cancelled_by_reconnect(port, version):
    """v5: reconnecting to the session within the Will Delay Interval cancels the will [MQTT-3.1.3-9]."""
    check(version == 5, "v5 only")
    t = uniq("will") + "/status"
    cid = uniq("w").replace("/", "-")
    w = _watch(port, 5, t)
    wp = props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)
    c = Peer(port, 5, client_id=cid, will=(t, b"late", 1, False, wp), expiry=60, clean=True, name="dying")
    c.connect_raw()
    c.abort()
    time.sleep(0.3)
    back = Peer(port, 5, client_id=cid, expiry=60, clean=False, name="back")
    flags, _, _ = back.connect()
    check(flags.session_present, "session not present on reconnect within its expiry")
    w.expect_none(3.5, "will after the client reconnected within the will delay")
    back.disconnect()
    w.stop()


if __name__ == "__main__":
    main(
        {
            "on_abnormal_disconnect": on_abnormal_disconnect,
            "not_on_clean_disconnect": not_on_clean_disconnect,
            "v5_disconnect_with_will": v5_disconnect_with_will,
            "v5_will_delay": v5_will_delay,
            "v5_will_delay_cancelled_by_reconnect": v5_will_delay_cancelled_by_reconnect,
        }
    )
