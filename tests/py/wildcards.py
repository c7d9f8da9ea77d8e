#!/usr/bin/env python3
"""Topic wildcards and $SYS through paho-mqtt (run the broker with --sys-interval-secs 1)."""

from mqttcheck import Peer, check, main, uniq

SYS_TOPICS = [
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/retained messages/count",
    "$SYS/broker/subscriptions/count",
]


def _publish_all(pub, topics):
    for t in topics:
        pub.publish(t, t.encode(), qos=1)


def plus(port, version):
    """'+' matches exactly one level, an empty one included [MQTT-4.7.1-3]."""
    b = uniq("plus")
    s = Peer(port, version, name="sub")
    s.connect()
    s.subscribe(f"{b}/+/x", 1)
    pub = Peer(port, version, name="pub")
    pub.connect()
    match = [f"{b}/a/x", f"{b}//x", f"{b}/bb/x"]
    nomatch = [f"{b}/x", f"{b}/a/b/x", f"{b}/a/x/y", f"{b}/a/xx"]
    _publish_all(pub, nomatch + match)
    got = sorted(m.topic for m in s.expect(len(match)))
    check(got == sorted(match), f"'+' matched {got}, expected {sorted(match)}")
    s.expect_none(0.5, "non-matching topic")
    s.stop()
    pub.stop()


def hash_(port, version):
    """'#' matches the parent level and any number of child levels [MQTT-4.7.1-2]."""
    b = uniq("hash")
    s = Peer(port, version, name="sub")
    s.connect()
    s.subscribe(f"{b}/h/#", 1)
    pub = Peer(port, version, name="pub")
    pub.connect()
    match = [f"{b}/h", f"{b}/h/", f"{b}/h/a", f"{b}/h/a/b/c"]
    nomatch = [f"{b}/hx", f"{b}/hx/a", f"{b}", f"{b}/g/h"]
    _publish_all(pub, nomatch + match)
    got = sorted(m.topic for m in s.expect(len(match)))
    check(got == sorted(match), f"'#' matched {got}, expected {sorted(match)}")
    s.expect_none(0.5, "non-matching topic")
    s.stop()
    pub.stop()


def sys_not_matched_by_root_wildcards(port, version):
    """'#' and '+/...' at the root do not match topics starting with '$' [MQTT-4.7.2-1]."""
    b = uniq("sysx")
    s = Peer(port, version, name="sub")
    s.connect()
    s.subscribe("#", 0)
    s.subscribe("+/broker/uptime", 0)
    s.subscribe("+/broker/#", 0)
    pub = Peer(port, version, name="pub")
    pub.connect()
    pub.publish(f"{b}/marker", b"m", qos=1)
    # Longer than the $SYS interval (1 s), so at least one $SYS round happens.
    got = s.drain(2.5)
    sys_seen = [m.topic for m in got if m.topic.startswith("$")]
    check(not sys_seen, f"root wildcard matched $ topics: {sorted(set(sys_seen))}")
    mine = [m for m in got if m.topic == f"{b}/marker"]
    check(len(mine) == 1, f"'#' should deliver the normal marker once, got {[m.topic for m in got]}")
    s.stop()
    pub.stop()


def sys_uptime(port, version):
    """$SYS/broker/uptime arrives when subscribed directly; its payload is a number of seconds."""
    s = Peer(port, version, name="sub")
    s.connect()
    s.subscribe("$SYS/broker/uptime", 0)
    m = s.expect_one(timeout=4, what="$SYS/broker/uptime")
    check(m.topic == "$SYS/broker/uptime", f"topic {m.topic!r}")
    text = m.payload.decode("utf-8", "replace")
    check(text.split()[0].isdigit(), f"uptime payload {text!r} does not start with a number")
    # Published every second: a second one follows with a value at least as large.
    m2 = s.expect_one(timeout=4, what="second $SYS/broker/uptime")
    check(int(m2.payload.split()[0]) >= int(text.split()[0]), f"uptime went from {text!r} to {m2.payload!r}")
    s.stop()


def sys_all_topics(port, version):
    """Every documented $SYS topic is published (retained) under $SYS/#."""
    s = Peer(port, version, name="sub")
    s.connect()
    s.subscribe("$SYS/#", 0)
    seen = {}
    for m in s.drain(3.0):
        seen.setdefault(m.topic, m.payload)
    missing = [t for t in SYS_TOPICS if t not in seen]
    check(not missing, f"missing $SYS topics: {missing}; seen {sorted(seen)}")
    for t in SYS_TOPICS:
        text = seen[t].decode("utf-8", "replace")
        check(text.split() and text.split()[0].isdigit(), f"{t} payload {text!r} is not a number")
    # They are retained: a new subscriber gets them at once, RETAIN set.
    s2 = Peer(port, version, name="late")
    s2.connect()
    s2.subscribe("$SYS/broker/clients/connected", 0)
    m = s2.expect_one(timeout=1.0, what="retained $SYS/broker/clients/connected")
    check(m.retain, "$SYS message delivered on subscribe without RETAIN")
    s.stop()
    s2.stop()


if __name__ == "__main__":
    main(
        {
            "plus": plus,
            "hash": hash_,
            "sys_not_matched_by_root_wildcards": sys_not_matched_by_root_wildcards,
            "sys_uptime": sys_uptime,
            "sys_all_topics": sys_all_topics,
        }
    )
