"""paho-mqtt 2.x checks of Tern's MQTT authentication, run by tests/mqtt_auth.rs.

    python3 auth_paho.py --port PORT --case CASE --version 3|5 [options]

The Rust test starts the broker, makes the credentials (Tern tokens with
tern-auth, JWTs with the independent signer crates/tern-auth/tests/py/sign.py)
and passes them here. A case prints `ok: ...` and exits 0, or prints
`FAIL: reason` and exits non-zero. Every wait is bounded, and a watchdog ends
the process if a case runs far too long.

Cases:
  login       connect with --user/--pass (a token as username, password
              absent), publish and receive on --topic; with --forbidden, a
              QoS 1 publish there is refused (v5 PUBACK 0x87) or acknowledged
              and dropped (3.1.1) and a --watch-user/--watch-pass client
              subscribed to it receives nothing; a subscription to it is
              refused (v5 0x87, 3.1.1 0x80).
  refused     the CONNACK refuses the login with reason --expect-rc (paho maps
              3.1.1 return codes onto v5 reason codes: 4 -> 134, 5 -> 135).
  enhanced    v5 enhanced authentication: Authentication Method "tern-token",
              Authentication Data = --token; the CONNACK carries the method.
  tokenevents subscribe to [mqtt]tokenevents, get one `expirywarning` (v5: user
              property expires = --expires) and no second one.
  expiry      the broker ends the connection when the token expires (v5:
              DISCONNECT 0xA0 Maximum connect time).
"""

import argparse
import os
import queue
import sys
import threading
import time
import traceback
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
# How long to wait for something that should happen.
WAIT = 5.0
# How long to watch for something that should not happen.
QUIET = 1.0
# The whole case must finish within this many seconds.
WATCHDOG = 50.0

TOKEN_EVENTS = "[mqtt]tokenevents"
NOT_AUTHORIZED = 0x87


class Fail(Exception):
    """A failed expectation; the message says what was expected and seen."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def value(rc):
    """The integer of a paho ReasonCode (or int)."""
    return rc.value if hasattr(rc, "value") else int(rc)


class Peer:
    """A paho 2.x client whose callbacks feed queues."""

    def __init__(self, port, version, name, client_id="", user=None, password=None, connect_props=None):
        self.port = port
        self.version = version
        self.name = name
        kwargs = dict(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        if version != 5:
            kwargs["clean_session"] = True
        self.c = mqtt.Client(**kwargs)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.connect_props = connect_props
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.subacks = queue.Queue()
        self.acks = {}
        self.lock = threading.Lock()
        self.c.on_connect = lambda c, u, flags, rc, props: self.connacks.put((flags, rc, props))
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put((rc, props))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put((mid, rcs))
        self.c.on_publish = self._on_publish
        # The raw body of a DISCONNECT from the broker (paho 2.1 reports a reason-code-only
        # DISCONNECT as "Success"): its first byte is the reason code.
        self.raw_disconnect = None
        original = self.c._handle_disconnect

        def handle_disconnect():
            self.raw_disconnect = bytes(self.c._in_packet["packet"])
            return original()

        self.c._handle_disconnect = handle_disconnect

    def _on_publish(self, client, userdata, mid, rc, props):
        with self.lock:
            self.acks[mid] = rc

    def connect(self, expect_ok=True):
        if self.version == 5:
            self.c.connect(HOST, self.port, 30, clean_start=True, properties=self.connect_props)
        else:
            self.c.connect(HOST, self.port, 30)
        self.c.loop_start()
        try:
            flags, rc, props = self.connacks.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.name}: no CONNACK within {WAIT}s")
        if expect_ok:
            check(not rc.is_failure, f"{self.name}: CONNACK refused: {rc} ({value(rc):#04x})")
        return flags, rc, props

    def subscribe(self, topic, qos=1):
        if self.version == 5:
            result, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos))
        else:
            result, mid = self.c.subscribe(topic, qos)
        check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: SUBSCRIBE {topic!r} not sent: {result}")
        try:
            got, codes = self.subacks.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.name}: no SUBACK for {topic!r} within {WAIT}s")
        check(got == mid, f"{self.name}: SUBACK for mid {got}, expected {mid}")
        return [value(c) for c in codes]

    def publish(self, topic, payload, qos=1):
        """Publishes; for QoS > 0 returns the PUBACK/PUBREC reason code value."""
        info = self.c.publish(topic, payload, qos=qos)
        check(info.rc == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: PUBLISH {topic!r} not sent: {info.rc}")
        deadline = time.monotonic() + WAIT
        if qos == 0:
            info.wait_for_publish(timeout=WAIT)
            return None
        while True:
            with self.lock:
                if info.mid in self.acks:
                    return value(self.acks.pop(info.mid))
            check(time.monotonic() < deadline, f"{self.name}: no ack for {topic!r} within {WAIT}s")
            time.sleep(0.01)

    def expect_one(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise Fail(f"{self.name}: no message within {timeout}s")

    def expect_none(self, duration=QUIET):
        try:
            m = self.messages.get(timeout=duration)
        except queue.Empty:
            return
        raise Fail(f"{self.name}: expected no message, got {m.topic!r} {m.payload!r}")

    def wait_disconnected(self, timeout):
        try:
            return self.disconnects.get(timeout=timeout)
        except queue.Empty:
            raise Fail(f"{self.name}: still connected after {timeout}s")

    def stop(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        try:
            self.c.loop_stop()
        except Exception:
            pass


def case_login(a):
    p = Peer(a.port, a.version, "client", user=a.user, password=a.password)
    p.connect()
    topic = f"{a.topic}/{uuid.uuid4().hex[:8]}"
    codes = p.subscribe(topic, 1)
    check(codes == [1], f"SUBACK for allowed {topic!r}: {codes}, expected [1]")
    rc = p.publish(topic, b"hello", 1)
    check(rc == 0, f"PUBACK for allowed {topic!r}: {rc:#04x}, expected 0")
    m = p.expect_one()
    check(m.topic == topic and m.payload == b"hello", f"got {m.topic!r} {m.payload!r}")
    if a.forbidden:
        watcher = None
        if a.watch_user:
            watcher = Peer(a.port, a.version, "watcher", user=a.watch_user, password=a.watch_pass)
            watcher.connect()
            check(watcher.subscribe(a.forbidden, 1) == [1], "watcher could not subscribe")
        codes = p.subscribe(a.forbidden, 1)
        want = NOT_AUTHORIZED if a.version == 5 else 0x80
        check(codes == [want], f"SUBACK for forbidden {a.forbidden!r}: {codes}, expected [{want:#04x}]")
        rc = p.publish(a.forbidden, b"secret", 1)
        want = NOT_AUTHORIZED if a.version == 5 else 0
        check(rc == want, f"PUBACK for forbidden {a.forbidden!r}: {rc:#04x}, expected {want:#04x}")
        if watcher is not None:
            watcher.expect_none()
            watcher.stop()
        p.expect_none(0.2)
    p.stop()
    print(f"logged in and published as {a.user[:24]!r}...")


def case_refused(a):
    p = Peer(a.port, a.version, "client", user=a.user, password=a.password)
    _, rc, _ = p.connect(expect_ok=False)
    check(value(rc) == a.expect_rc, f"CONNACK {rc} ({value(rc):#04x}), expected {a.expect_rc:#04x}")
    p.wait_disconnected(WAIT)
    p.stop()


def case_enhanced(a):
    check(a.version == 5, "enhanced authentication is MQTT 5 only")
    props = Properties(PacketTypes.CONNECT)
    props.AuthenticationMethod = "tern-token"
    props.AuthenticationData = a.token.encode()
    p = Peer(a.port, 5, "client", connect_props=props)
    _, rc, cprops = p.connect()
    method = getattr(cprops, "AuthenticationMethod", None)
    check(method == "tern-token", f"CONNACK Authentication Method {method!r}, expected 'tern-token'")
    topic = f"{a.topic}/{uuid.uuid4().hex[:8]}"
    check(p.subscribe(topic, 1) == [1], "subscribe refused")
    check(p.publish(topic, b"x", 1) == 0, "publish refused")
    p.expect_one()
    p.stop()


def case_tokenevents(a):
    p = Peer(a.port, a.version, "client", user=a.user, password=a.password)
    p.connect()
    codes = p.subscribe(TOKEN_EVENTS, 0)
    check(codes == [0], f"SUBACK for {TOKEN_EVENTS}: {codes}, expected [0]")
    m = p.expect_one(timeout=15)
    check(m.topic == TOKEN_EVENTS, f"topic {m.topic!r}, expected {TOKEN_EVENTS!r}")
    check(m.payload == b"expirywarning", f"payload {m.payload!r}, expected b'expirywarning'")
    if a.version == 5:
        users = dict(getattr(m.properties, "UserProperty", None) or [])
        check(
            users.get("expires") == str(a.expires),
            f"user property expires = {users.get('expires')!r}, expected {a.expires!r} (all: {users})",
        )
    p.expect_none(QUIET)
    p.stop()


def case_expiry(a):
    p = Peer(a.port, a.version, "client", user=a.user, password=a.password)
    p.connect()
    rc, _ = p.wait_disconnected(15)
    if a.version == 5:
        code = p.raw_disconnect[0] if p.raw_disconnect else None
        check(code == 0xA0, f"DISCONNECT reason {code}, expected 0xa0 (Maximum connect time); paho said {rc}")
    p.c.loop_stop()


CASES = {
    "login": case_login,
    "refused": case_refused,
    "enhanced": case_enhanced,
    "tokenevents": case_tokenevents,
    "expiry": case_expiry,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--version", type=int, choices=(3, 5), default=5)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--token")
    ap.add_argument("--topic", default="ok")
    ap.add_argument("--forbidden")
    ap.add_argument("--watch-user")
    ap.add_argument("--watch-pass")
    ap.add_argument("--expires")
    ap.add_argument("--expect-rc", type=lambda s: int(s, 0))
    args = ap.parse_args()

    def watchdog():
        print(f"FAIL: case {args.case} still running after {WATCHDOG}s", flush=True)
        os._exit(3)

    timer = threading.Timer(WATCHDOG, watchdog)
    timer.daemon = True
    timer.start()
    label = f"{args.case} (MQTT {'5.0' if args.version == 5 else '3.1.1'})"
    try:
        CASES[args.case](args)
    except Fail as e:
        print(f"FAIL: {label}: {e}", flush=True)
        os._exit(1)
    except Exception:
        traceback.print_exc()
        print(f"FAIL: {label}: unexpected exception", flush=True)
        os._exit(2)
    print(f"ok: {label}", flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
