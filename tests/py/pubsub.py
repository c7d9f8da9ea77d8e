#!/usr/bin/env python3
"""Publish/subscribe basics through paho-mqtt: QoS 0/1/2, downgrade, ordering."""

from mqttcheck import Peer, check, main, uniq


def _roundtrip(port, version, qos):
    base = uniq("pubsub")
    sub = Peer(port, version, name="sub")
    pub = Peer(port, version, name="pub")
    sub.connect()
    pub.connect()
    codes = sub.subscribe(f"{base}/x", qos)
    check(codes[0].value == qos, f"granted QoS {codes[0].value}, asked {qos}")
    pub.publish(f"{base}/x", f"hello-{qos}".encode(), qos=qos)
    m = sub.expect_one()
    check(m.topic == f"{base}/x", f"topic {m.topic!r}")
    check(m.payload == f"hello-{qos}".encode(), f"payload {m.payload!r}")
    check(m.qos == qos, f"delivered at QoS {m.qos}, expected {qos}")
    check(not m.retain, "live message delivered with RETAIN set")
    # Exactly once / no duplicate for this simple case.
    sub.expect_none(0.5, "duplicate")
    sub.stop()
    pub.stop()


def qos0(port, version):
    _roundtrip(port, version, 0)


def qos1(port, version):
    _roundtrip(port, version, 1)


def qos2(port, version):
    _roundtrip(port, version, 2)


def downgrade(port, version):
    """Delivered QoS = min(published QoS, granted QoS)."""
    base = uniq("down")
    pub = Peer(port, version, name="pub")
    pub.connect()
    subs = {}
    for q in (0, 1, 2):
        s = Peer(port, version, name=f"sub-q{q}")
        s.connect()
        s.subscribe(f"{base}/t", q)
        subs[q] = s
    for pq in (0, 1, 2):
        pub.publish(f"{base}/t", f"p{pq}".encode(), qos=pq)
        for sq, s in subs.items():
            m = s.expect_one()
            check(m.payload == f"p{pq}".encode(), f"{s.name} got {m.payload!r}")
            want = min(pq, sq)
            check(m.qos == want, f"published QoS {pq} to subscription QoS {sq}: delivered QoS {m.qos}, expected {want}")
    for s in subs.values():
        s.stop()
    pub.stop()


def order(port, version):
    """Messages from one publisher on one topic arrive in the order sent, per QoS."""
    base = uniq("order")
    sub = Peer(port, version, name="sub")
    pub = Peer(port, version, name="pub")
    sub.connect()
    pub.connect()
    n = 100
    for q in (0, 1, 2):
        sub.subscribe(f"{base}/q{q}", q)
    for q in (0, 1, 2):
        infos = [pub.publish(f"{base}/q{q}", str(i).encode(), qos=q, wait=False) for i in range(n)]
        for info in infos:
            info.wait_for_publish(timeout=10)
        got = [int(m.payload) for m in sub.expect(n, timeout=10)]
        check(got == list(range(n)), f"QoS {q}: order {got[:20]}... differs from 0..{n - 1}")
        print(f"QoS {q}: {n} messages in order")
    sub.stop()
    pub.stop()


if __name__ == "__main__":
    main({"qos0": qos0, "qos1": qos1, "qos2": qos2, "downgrade": downgrade, "order": order})
