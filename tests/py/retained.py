#!/usr/bin/env python3
"""Retained messages through paho-mqtt: set, replace, clear, wildcard, v5 options."""

from mqttcheck import Peer, SubscribeOptions, check, main, uniq


def _fresh_sub(port, version, topic, qos=1, name="sub", options=None):
    s = Peer(port, version, name=name)
    s.connect()
    s.subscribe(topic, qos, options=options)
    return s


def delivered_on_subscribe(port, version):
    """A retained message is stored and sent, RETAIN set, to a later subscriber."""
    t = uniq("ret") + "/state"
    pub = Peer(port, version, name="pub")
    pub.connect()
    pub.publish(t, b"on", qos=1, retain=True)
    s = _fresh_sub(port, version, t, qos=1)
    m = s.expect_one(what="retained message")
    check(m.payload == b"on", f"payload {m.payload!r}")
    check(m.retain, "retained message delivered on subscribe without the RETAIN flag")
    check(m.qos == 1, f"QoS {m.qos}, expected 1")
    s.expect_none(0.5, "second copy")
    # A live message to an established subscription has RETAIN 0, even when published retained.
    pub.publish(t, b"off", qos=1, retain=True)
    m = s.expect_one()
    check(m.payload == b"off", f"payload {m.payload!r}")
    check(not m.retain, "live retained publish forwarded to an established subscription with RETAIN 1")
    s.stop()
    pub.stop()


def replace(port, version):
    """A new retained message replaces the old one; a non-retained publish leaves it."""
    t = uniq("ret") + "/r"
    pub = Peer(port, version, name="pub")
    pub.connect()
    pub.publish(t, b"v1", qos=1, retain=True)
    pub.publish(t, b"v2", qos=0, retain=True)
    pub.publish(t, b"live", qos=1, retain=False)
    s = _fresh_sub(port, version, t)
    m = s.expect_one()
    check(m.payload == b"v2", f"retained payload {m.payload!r}, expected b'v2'")
    check(m.retain, "RETAIN flag not set")
    check(m.qos == 0, f"retained message stored at QoS 0 delivered at QoS {m.qos}")
    s.expect_none(0.5, "second retained message")
    s.stop()
    pub.stop()


def clear(port, version):
    """An empty retained payload removes the retained message and is not stored itself."""
    t = uniq("ret") + "/c"
    pub = Peer(port, version, name="pub")
    pub.connect()
    watcher = _fresh_sub(port, version, t, name="watcher")
    pub.publish(t, b"x", qos=1, retain=True)
    check(watcher.expect_one().payload == b"x", "watcher missed the retained publish")
    pub.publish(t, b"", qos=1, retain=True)
    m = watcher.expect_one(what="empty retained publish forwarded as normal")
    check(m.payload == b"", f"payload {m.payload!r}")
    s = _fresh_sub(port, version, t)
    s.expect_none(QUIET_LONG, "retained message after clearing")
    s.stop()
    watcher.stop()
    pub.stop()


QUIET_LONG = 1.5


def wildcard(port, version):
    """Subscribing with wildcards delivers every matching retained message."""
    base = uniq("retw")
    pub = Peer(port, version, name="pub")
    pub.connect()
    topics = {f"{base}/a/1": b"a1", f"{base}/a/2": b"a2", f"{base}/b/1": b"b1", f"{base}/a/1/deep": b"deep"}
    for t, p in topics.items():
        pub.publish(t, p, qos=1, retain=True)
    s = _fresh_sub(port, version, f"{base}/a/+", name="plus")
    got = sorted((m.topic, m.payload, m.retain) for m in s.expect(2))
    check(got == [(f"{base}/a/1", b"a1", True), (f"{base}/a/2", b"a2", True)], f"a/+ got {got}")
    s.expect_none(0.5, "extra retained message")
    s.stop()
    s = _fresh_sub(port, version, f"{base}/#", name="hash")
    got = sorted((m.topic, m.payload) for m in s.expect(4))
    check(got == sorted(topics.items()), f"# got {got}")
    s.expect_none(0.5, "extra retained message")
    s.stop()
    pub.stop()


def retain_handling(port, version):
    """v5 Retain Handling 0: always; 1: only for a new subscription; 2: never."""
    check(version == 5, "v5 only")
    base = uniq("rh")
    pub = Peer(port, 5, name="pub")
    pub.connect()
    for rh in (0, 1, 2):
        pub.publish(f"{base}/{rh}", f"r{rh}".encode(), qos=1, retain=True)
    for rh in (0, 1, 2):
        s = Peer(port, 5, name=f"sub-rh{rh}")
        s.connect()
        opts = SubscribeOptions(qos=1, retainHandling=rh)
        s.subscribe(f"{base}/{rh}", options=opts)
        if rh == 2:
            s.expect_none(QUIET_LONG, "retained message with Retain Handling 2 [MQTT-3.3.1-11]")
        else:
            m = s.expect_one(what=f"retained message with Retain Handling {rh}")
            check(m.retain and m.payload == f"r{rh}".encode(), f"got {m.payload!r} retain={m.retain}")
        # Subscribe again to the same filter: the subscription now exists.
        s.subscribe(f"{base}/{rh}", options=SubscribeOptions(qos=1, retainHandling=rh))
        if rh == 0:
            m = s.expect_one(what="retained message on re-subscribe with Retain Handling 0 [MQTT-3.3.1-9]")
            check(m.retain, "RETAIN flag not set on re-subscribe delivery")
        else:
            s.expect_none(QUIET_LONG, f"retained message on re-subscribe with Retain Handling {rh}")
        s.stop()
    pub.stop()


def retain_as_published(port, version):
    """v5 Retain As Published 1 keeps RETAIN on live forwards; 0 clears it."""
    check(version == 5, "v5 only")
    t = uniq("rap") + "/t"
    keep = Peer(port, 5, name="rap1")
    keep.connect()
    keep.subscribe(t, options=SubscribeOptions(qos=1, retainAsPublished=True))
    clear_ = Peer(port, 5, name="rap0")
    clear_.connect()
    clear_.subscribe(t, options=SubscribeOptions(qos=1, retainAsPublished=False))
    pub = Peer(port, 5, name="pub")
    pub.connect()
    pub.publish(t, b"kept", qos=1, retain=True)
    pub.publish(t, b"plain", qos=1, retain=False)
    a, b = keep.expect(2)
    check(a.payload == b"kept" and a.retain, f"Retain As Published 1: {a.payload!r} retain={a.retain}, expected RETAIN 1 [MQTT-3.3.1-13]")
    check(b.payload == b"plain" and not b.retain, f"Retain As Published 1: {b.payload!r} retain={b.retain}, expected RETAIN 0")
    a, b = clear_.expect(2)
    check(a.payload == b"kept" and not a.retain, f"Retain As Published 0: {a.payload!r} retain={a.retain}, expected RETAIN 0 [MQTT-3.3.1-12]")
    check(not b.retain, "Retain As Published 0: RETAIN set")
    pub.publish(t, b"", qos=1, retain=True)
    for s in (keep, clear_, pub):
        s.stop()


if __name__ == "__main__":
    main(
        {
            "delivered_on_subscribe": delivered_on_subscribe,
            "replace": replace,
            "clear": clear,
            "wildcard": wildcard,
            "retain_handling": retain_handling,
            "retain_as_published": retain_as_published,
        }
    )
