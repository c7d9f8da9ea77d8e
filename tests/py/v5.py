#!/usr/bin/env python3
"""MQTT 5.0 features through paho-mqtt."""

import time

from mqttcheck import PacketTypes, Peer, SubscribeOptions, check, main, prop, props, uniq


def _cid():
    return uniq("v").replace("/", "-")


def properties_pass_through(port, version):
    """User properties (order, duplicates), content type, response topic, correlation data and
    payload format indicator are forwarded unaltered [MQTT-3.3.2-4, -15, -16, -17, -18, -20]."""
    t = uniq("props") + "/req"
    s = Peer(port, 5, name="sub")
    s.connect()
    s.subscribe(t, 1)
    pub = Peer(port, 5, name="pub")
    pub.connect()
    user = [("b", "2"), ("a", "1"), ("a", "3"), ("k", "välue ✓")]
    p = props(
        PacketTypes.PUBLISH,
        UserProperty=user,
        ContentType="application/json; charset=utf-8",
        ResponseTopic=t + "/reply",
        CorrelationData=b"\x00\x01corr\xff",
        PayloadFormatIndicator=1,
    )
    pub.publish(t, '{"x": "ü"}'.encode(), qos=1, properties=p)
    m = s.expect_one()
    check(m.payload == '{"x": "ü"}'.encode(), f"payload {m.payload!r}")
    check(prop(m, "UserProperty") == user, f"user properties {prop(m, 'UserProperty')}, sent {user}")
    check(prop(m, "ContentType") == "application/json; charset=utf-8", f"content type {prop(m, 'ContentType')!r}")
    check(prop(m, "ResponseTopic") == t + "/reply", f"response topic {prop(m, 'ResponseTopic')!r}")
    check(prop(m, "CorrelationData") == b"\x00\x01corr\xff", f"correlation data {prop(m, 'CorrelationData')!r}")
    check(prop(m, "PayloadFormatIndicator") == 1, f"payload format indicator {prop(m, 'PayloadFormatIndicator')!r}")
    check(prop(m, "MessageExpiryInterval") is None, "message expiry interval added to a message sent without one")
    s.stop()
    pub.stop()


def message_expiry_retained(port, version):
    """A retained message whose Message Expiry Interval has passed is not delivered [MQTT-3.3.2-5]."""
    base = uniq("exp")
    pub = Peer(port, 5, name="pub")
    pub.connect()
    pub.publish(f"{base}/short", b"stale", qos=1, retain=True, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish(f"{base}/long", b"fresh", qos=1, retain=True, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    time.sleep(2.2)
    s = Peer(port, 5, name="sub")
    s.connect()
    s.subscribe(f"{base}/#", 1)
    got = [(m.topic, m.payload) for m in s.drain(1.0)]
    check(got == [(f"{base}/long", b"fresh")], f"after 2.2 s got {got}, expected only the unexpired retained message")
    s.stop()
    pub.stop()


def message_expiry_queued(port, version):
    """A message queued for an offline session expires [MQTT-3.3.2-5]; one that has not carries the
    Message Expiry Interval minus the time it waited [MQTT-3.3.2-6]."""
    base = uniq("exp")
    cid = _cid()
    s = Peer(port, 5, client_id=cid, clean=True, expiry=300, name="first")
    s.connect()
    s.subscribe(f"{base}/t", 1)
    s.disconnect()
    pub = Peer(port, 5, name="pub")
    pub.connect()
    pub.publish(f"{base}/t", b"stale", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish(f"{base}/t", b"fresh", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=30))
    time.sleep(2.2)
    s2 = Peer(port, 5, client_id=cid, clean=False, expiry=300, name="again")
    flags, _, _ = s2.connect()
    check(flags.session_present, "session not present")
    got = s2.drain(1.0)
    check([m.payload for m in got] == [b"fresh"], f"got {[m.payload for m in got]}, expected only b'fresh'")
    left = prop(got[0], "MessageExpiryInterval")
    check(left is not None, "forwarded message lost its Message Expiry Interval")
    check(left <= 28, f"Message Expiry Interval {left} after waiting 2.2 s, expected at most 28 (30 - 2)")
    check(left >= 20, f"Message Expiry Interval {left} decremented far too much")
    s2.disconnect()
    pub.stop()


def message_expiry_retained_decremented(port, version):
    """A retained message sent on subscribe carries the remaining Message Expiry Interval [MQTT-3.3.2-6]."""
    t = uniq("exp") + "/r"
    pub = Peer(port, 5, name="pub")
    pub.connect()
    pub.publish(t, b"r", qos=1, retain=True, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=30))
    time.sleep(2.2)
    s = Peer(port, 5, name="sub")
    s.connect()
    s.subscribe(t, 1)
    m = s.expect_one()
    left = prop(m, "MessageExpiryInterval")
    check(left is not None and 20 <= left <= 28, f"retained Message Expiry Interval {left} after 2.2 s, expected 20..28")
    pub.publish(t, b"", qos=1, retain=True)
    s.stop()
    pub.stop()


def subscription_identifiers(port, version):
    """Subscription Identifiers come back with matching messages; a message matching two overlapping
    subscriptions of one client arrives once with both identifiers [MQTT-3.3.4-3, MQTT-3.3.4-4]."""
    base = uniq("sid")
    s = Peer(port, 5, name="sub")
    s.connect()
    s.subscribe(f"{base}/+", 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    s.subscribe(f"{base}/#", 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=300000))
    s.subscribe(f"{base}/a/none", 1)
    pub = Peer(port, 5, name="pub")
    pub.connect()
    pub.publish(f"{base}/a", b"both", qos=1)
    m = s.expect_one()
    s.expect_none(0.5, "second copy (overlapping subscriptions are delivered once by default)")
    ids = sorted(prop(m, "SubscriptionIdentifier") or [])
    check(ids == [7, 300000], f"subscription identifiers {ids}, expected [7, 300000]")
    pub.publish(f"{base}/a/b", b"one", qos=1)
    m = s.expect_one()
    check(prop(m, "SubscriptionIdentifier") == [300000], f"identifiers {prop(m, 'SubscriptionIdentifier')}, expected [300000]")
    pub.publish(f"{base}/a/none", b"none", qos=1)
    m = s.expect_one()
    check(m.payload == b"none", f"payload {m.payload!r}")
    check(prop(m, "SubscriptionIdentifier") == [300000], f"identifiers {prop(m, 'SubscriptionIdentifier')}, expected [300000] only")
    s.stop()
    pub.stop()


def overlap_deliver_each(port, version):
    """With --overlap-deliver-each, each matching subscription gets its own copy with its own
    identifier and QoS [MQTT-3.3.4-5]."""
    base = uniq("sid")
    s = Peer(port, 5, name="sub")
    s.connect()
    s.subscribe(f"{base}/+", 0, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=1))
    s.subscribe(f"{base}/#", 2, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=2))
    pub = Peer(port, 5, name="pub")
    pub.connect()
    pub.publish(f"{base}/a", b"x", qos=2)
    got = sorted((tuple(prop(m, "SubscriptionIdentifier") or []), m.qos) for m in s.expect(2))
    check(got == [((1,), 0), ((2,), 2)], f"copies (ids, qos) {got}, expected [((1,), 0), ((2,), 2)]")
    s.expect_none(0.5, "third copy")
    s.stop()
    pub.stop()


def no_local(port, version):
    """No Local: a client's own messages are not sent back to it [MQTT-3.8.3-3]."""
    t = uniq("nl") + "/t"
    me = Peer(port, 5, client_id=_cid(), name="me")
    me.connect()
    me.subscribe(t, options=SubscribeOptions(qos=1, noLocal=True))
    me.publish(t, b"mine", qos=1)
    me.expect_none(1.0, "own message with No Local")
    other = Peer(port, 5, name="other")
    other.connect()
    other.publish(t, b"theirs", qos=1)
    check(me.expect_one().payload == b"theirs", "message from another client not delivered")
    me.stop()
    other.stop()


def shared_subscription(port, version):
    """$share/g/filter: each message goes to exactly one member of the group; both members get some;
    a plain subscriber still gets every message [MQTT-4.8.2]."""
    base = uniq("share")
    members = []
    for i in range(2):
        m = Peer(port, 5, name=f"member{i}")
        m.connect()
        m.subscribe(f"$share/g/{base}/+", 1)
        members.append(m)
    plain = Peer(port, 5, name="plain")
    plain.connect()
    plain.subscribe(f"{base}/+", 1)
    pub = Peer(port, 5, name="pub")
    pub.connect()
    n = 20
    for i in range(n):
        pub.publish(f"{base}/x", str(i).encode(), qos=1)
    all_plain = sorted(int(m.payload) for m in plain.expect(n))
    check(all_plain == list(range(n)), f"plain subscriber got {all_plain}")
    time.sleep(1.0)
    per = [[int(m.payload) for m in mb.drain(0.2)] for mb in members]
    counts = [len(p) for p in per]
    merged = sorted(per[0] + per[1])
    check(merged == list(range(n)), f"group members together got {merged} ({counts}), expected each of 0..{n - 1} exactly once")
    check(all(c > 0 for c in counts), f"one member got nothing: {counts}")
    print(f"shared split {counts}")
    for c in members + [plain, pub]:
        c.stop()


def assigned_client_identifier(port, version):
    """An empty client id gets an Assigned Client Identifier in CONNACK [MQTT-3.2.2-16]."""
    ids = []
    peers = []
    for i in range(2):
        c = Peer(port, 5, client_id="", name=f"anon{i}")
        _, _, p = c.connect()
        aid = prop(p, "AssignedClientIdentifier")
        check(aid, f"no Assigned Client Identifier in CONNACK (properties {p})")
        ids.append(aid)
        peers.append(c)
    check(ids[0] != ids[1], f"two connections were assigned the same id {ids[0]!r}")
    # The assigned identifier works like any other: a message round trip.
    t = uniq("aid") + "/t"
    peers[0].subscribe(t, 1)
    peers[1].publish(t, b"x", qos=1)
    check(peers[0].expect_one().payload == b"x", "round trip failed")
    for c in peers:
        c.stop()


def topic_alias_from_client(port, version):
    """The broker resolves a Topic Alias set by the publishing client [MQTT-3.3.2-12]."""
    t = uniq("alias") + "/long/topic/name"
    s = Peer(port, 5, name="sub")
    s.connect()
    s.subscribe(t, 1)
    pub = Peer(port, 5, name="pub")
    _, _, cp = pub.connect()
    amax = prop(cp, "TopicAliasMaximum", 0)
    check(amax >= 1, f"CONNACK Topic Alias Maximum {amax}, expected the default 64 (at least 1)")
    pub.publish(t, b"first", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", b"second", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", b"third", qos=0, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    got = [(m.topic, m.payload) for m in s.expect(3)]
    check(got == [(t, b"first"), (t, b"second"), (t, b"third")], f"got {got}")
    s.stop()
    pub.stop()


def server_keep_alive(port, version):
    """A keep alive above --keepalive-max-secs 10 is answered with Server Keep Alive 10."""
    c = Peer(port, 5, keepalive=60, name="c")
    _, _, p = c.connect()
    ska = prop(p, "ServerKeepAlive")
    check(ska == 10, f"CONNACK Server Keep Alive {ska!r}, expected 10")
    c.stop()
    c2 = Peer(port, 5, keepalive=5, name="c2")
    _, _, p = c2.connect()
    ska = prop(p, "ServerKeepAlive")
    check(ska in (None, 5), f"CONNACK Server Keep Alive {ska!r} for a client asking 5 s")
    c2.stop()


def invalid_utf8_payload_rejected(port, version):
    """A PUBLISH with Payload Format Indicator 1 and a payload that is not UTF-8 is rejected with
    reason 0x99 (PUBACK or DISCONNECT) and is not forwarded."""
    t = uniq("pfi") + "/t"
    s = Peer(port, 5, name="sub")
    s.connect()
    s.subscribe(t, 1)
    pub = Peer(port, 5, name="pub")
    pub.connect()
    info = pub.c.publish(t, b"\xff\xfe\xc3", qos=1, properties=props(PacketTypes.PUBLISH, PayloadFormatIndicator=1))
    deadline = time.monotonic() + 5
    outcome = None
    while outcome is None and time.monotonic() < deadline:
        with pub.acks_lock:
            if info.mid in pub.acks:
                outcome = ("puback", pub.acks.pop(info.mid))
        if outcome is None and not pub.disconnects.empty():
            rc = pub.disconnects.get()[0]
            raw = pub.server_disconnect_reason()
            outcome = ("disconnect", raw if raw is not None else rc.value)
        time.sleep(0.01)
    check(outcome is not None, "invalid UTF-8 payload: no PUBACK and no DISCONNECT within 5 s")
    kind, rc = outcome
    if kind == "puback":
        rc = rc.value
    check(rc == 0x99, f"{kind} reason code 0x{rc:02X}, expected 0x99 Payload format invalid")
    s.expect_none(1.0, "forwarded invalid payload")
    s.stop()
    pub.stop()


if __name__ == "__main__":
    main(
        {
            "properties_pass_through": properties_pass_through,
            "message_expiry_retained": message_expiry_retained,
            "message_expiry_queued": message_expiry_queued,
            "message_expiry_retained_decremented": message_expiry_retained_decremented,
            "subscription_identifiers": subscription_identifiers,
            "overlap_deliver_each": overlap_deliver_each,
            "no_local": no_local,
            "shared_subscription": shared_subscription,
            "assigned_client_identifier": assigned_client_identifier,
            "topic_alias_from_client": topic_alias_from_client,
            "server_keep_alive": server_keep_alive,
            "invalid_utf8_payload_rejected": invalid_utf8_payload_rejected,
        }
    )
