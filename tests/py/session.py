#!/usr/bin/env python3
"""Persistent sessions and session takeover through paho-mqtt."""

import time

from mqttcheck import Peer, check, main, uniq


def _cid():
    return uniq("s").replace("/", "-")


def _persistent(port, version, cid, clean, name):
    # v3: Clean Session 0 keeps the session; v5: Clean Start 0 plus a Session Expiry Interval.
    return Peer(port, version, client_id=cid, clean=clean, expiry=300 if version == 5 else None, name=name)


def offline_messages_delivered(port, version):
    """QoS 1/2 messages published while a persistent session is offline are delivered on reconnect, in order."""
    base = uniq("sess")
    cid = _cid()
    s = _persistent(port, version, cid, clean=False, name="first")
    flags, _, _ = s.connect()
    check(not flags.session_present, "session present on the first connection of a new client id")
    s.subscribe(f"{base}/#", 1)
    s.disconnect()
    pub = Peer(port, version, name="pub")
    pub.connect()
    for i in range(3):
        pub.publish(f"{base}/q1", f"m{i}".encode(), qos=1)
    pub.publish(f"{base}/q2", b"m3", qos=2)
    s2 = _persistent(port, version, cid, clean=False, name="again")
    flags, _, _ = s2.connect()
    check(flags.session_present, "session present flag 0 when resuming a stored session [MQTT-3.2.2-3]")
    got = [m.payload for m in s2.expect(4, what="queued message")]
    check(got == [b"m0", b"m1", b"m2", b"m3"], f"queued messages {got}")
    # The subscription survived as well.
    pub.publish(f"{base}/after", b"live", qos=1)
    check(s2.expect_one().payload == b"live", "subscription lost with the session")
    s2.disconnect()
    pub.stop()


def clean_start_discards_session(port, version):
    """Clean Session / Clean Start 1 discards the stored session: no queued messages, no subscriptions."""
    base = uniq("sess")
    cid = _cid()
    s = _persistent(port, version, cid, clean=False, name="first")
    s.connect()
    s.subscribe(f"{base}/t", 1)
    s.disconnect()
    pub = Peer(port, version, name="pub")
    pub.connect()
    pub.publish(f"{base}/t", b"queued", qos=1)
    s2 = _persistent(port, version, cid, clean=True, name="clean")
    flags, _, _ = s2.connect()
    check(not flags.session_present, "session present flag 1 with Clean Start/Session 1 [MQTT-3.2.2-2]")
    s2.expect_none(1.0, "message from the discarded session")
    pub.publish(f"{base}/t", b"live", qos=1)
    s2.expect_none(1.0, "message for a subscription of the discarded session")
    s2.disconnect()
    pub.stop()


def v5_session_expiry_zero_ends_session(port, version):
    """v5: with Session Expiry Interval 0 (absent) the session ends when the connection closes."""
    check(version == 5, "v5 only")
    base = uniq("sess")
    cid = _cid()
    s = Peer(port, 5, client_id=cid, clean=False, expiry=None, name="first")
    s.connect()
    s.subscribe(f"{base}/t", 1)
    s.disconnect()
    pub = Peer(port, 5, name="pub")
    pub.connect()
    pub.publish(f"{base}/t", b"queued", qos=1)
    s2 = Peer(port, 5, client_id=cid, clean=False, expiry=60, name="again")
    flags, _, _ = s2.connect()
    check(not flags.session_present, "session outlived a Session Expiry Interval of 0")
    s2.expect_none(1.0, "message queued for an ended session")
    s2.disconnect()
    pub.stop()


def v5_session_expires(port, version):
    """v5: a session with Session Expiry Interval 1 is gone 2.5 s after disconnect."""
    check(version == 5, "v5 only")
    base = uniq("sess")
    cid = _cid()
    s = Peer(port, 5, client_id=cid, clean=False, expiry=1, name="first")
    s.connect()
    s.subscribe(f"{base}/t", 1)
    s.disconnect()
    time.sleep(2.5)
    s2 = Peer(port, 5, client_id=cid, clean=False, expiry=60, name="again")
    flags, _, _ = s2.connect()
    check(not flags.session_present, "session still present after its expiry interval")
    s2.disconnect()


def takeover(port, version):
    """A second connection with the same client id takes over; the first is disconnected
    (v5: DISCONNECT 0x8E Session taken over) [MQTT-3.1.4-3]."""
    base = uniq("take")
    cid = _cid()
    a = Peer(port, version, client_id=cid, name="first")
    a.connect()
    b = Peer(port, version, client_id=cid, name="second")
    b.connect()
    a.wait_disconnected()
    if version == 5:
        reason = a.server_disconnect_reason()
        check(reason is not None, "first connection was closed without a DISCONNECT packet, expected DISCONNECT 0x8E Session taken over")
        check(reason == 0x8E, f"first connection's DISCONNECT reason 0x{reason:02X}, expected 0x8E Session taken over")
    # The second connection is the live one.
    b.subscribe(f"{base}/t", 1)
    b.publish(f"{base}/t", b"still here", qos=1)
    check(b.expect_one().payload == b"still here", "second connection does not work")
    time.sleep(0.5)
    check(b.connected and b.disconnects.empty(), "second connection was dropped too")
    b.disconnect()
    a.stop()


if __name__ == "__main__":
    main(
        {
            "offline_messages_delivered": offline_messages_delivered,
            "clean_start_discards_session": clean_start_discards_session,
            "v5_session_expiry_zero_ends_session": v5_session_expiry_zero_ends_session,
            "v5_session_expires": v5_session_expires,
            "takeover": takeover,
        }
    )
