"""paho-mqtt 2.x over Tern's transports, run by tests/transports.rs and tests/token_http.rs.

    python3 transport_paho.py --case CASE --version 3|5 --sub ENDPOINT [--pub ENDPOINT]
                              [--cafile CA.pem] [--username U] [--forbidden TOPIC]
                              [--expect-rc N]

An ENDPOINT is KIND:PORT on 127.0.0.1 (or KIND:HOST:PORT), KIND one of
  tcp   plain MQTT
  tls   MQTT over TLS, the server checked against --cafile (tls_set(ca_certs=...))
  ws    MQTT over WebSocket, ws://HOST:PORT/mqtt (transport="websockets")
  wss   MQTT over secure WebSocket, wss://HOST:PORT/mqtt, checked against --cafile

Cases:
  roundtrip  a subscriber on --sub and a publisher on --pub (default: --sub)
             exchange a QoS 0 message, a QoS 1 message and a 200 KB QoS 1
             message, each checked byte for byte; then the other way round
             (the subscriber publishes, the publisher receives), so two
             different transports see each other's messages both ways. With
             --forbidden, a QoS 1 publish there is refused (v5 PUBACK 0x87;
             3.1.1: acknowledged and never delivered) and a subscription to it
             is refused (0x87 / 0x80).
  refused    connecting on --sub is refused with CONNACK reason --expect-rc
             (v5 reason code; paho maps 3.1.1 return codes 4 -> 134, 5 -> 135).
  untrusted  the TLS handshake on --sub fails because the server certificate
             does not verify against --cafile (a CA that did not sign it).

A case prints `ok: ...` and exits 0, or prints `FAIL: reason` and exits 1.
Every wait is bounded and a watchdog ends the process after WATCHDOG seconds.
"""

import argparse
import hashlib
import os
import queue
import ssl
import sys
import threading
import time
import traceback
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

WAIT = 10.0
QUIET = 1.0
WATCHDOG = 50.0
BIG = 200 * 1024


class Fail(Exception):
    pass


def watchdog():
    def fire():
        print(f"FAIL: watchdog: the case did not finish within {WATCHDOG} s", flush=True)
        os._exit(3)

    t = threading.Timer(WATCHDOG, fire)
    t.daemon = True
    t.start()


def parse_endpoint(text):
    parts = text.split(":")
    if len(parts) == 2:
        kind, host, port = parts[0], "127.0.0.1", parts[1]
    elif len(parts) == 3:
        kind, host, port = parts
    else:
        raise SystemExit(f"bad endpoint {text!r}: expected KIND:PORT or KIND:HOST:PORT")
    if kind not in ("tcp", "tls", "ws", "wss"):
        raise SystemExit(f"bad endpoint kind {kind!r}")
    return kind, host, int(port)


def big_payload():
    # Deterministic, not compressible, not valid UTF-8 text.
    out = bytearray()
    block = b"tern"
    while len(out) < BIG:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:BIG])


class Client:
    """A paho client whose callbacks feed queues."""

    def __init__(self, args, endpoint, name):
        self.kind, self.host, self.port = endpoint
        self.version = mqtt.MQTTv5 if args.version == 5 else mqtt.MQTTv311
        self.v5 = args.version == 5
        self.name = name
        transport = "websockets" if self.kind in ("ws", "wss") else "tcp"
        self.c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{name}-{uuid.uuid4().hex[:10]}",
            protocol=self.version,
            transport=transport,
        )
        if transport == "websockets":
            self.c.ws_set_options(path="/mqtt")
        if self.kind in ("tls", "wss"):
            if not args.cafile:
                raise SystemExit("--cafile is needed for tls and wss endpoints")
            self.c.tls_set(ca_certs=args.cafile, cert_reqs=ssl.CERT_REQUIRED)
        if args.username:
            self.c.username_pw_set(args.username, None)
        self.connack = queue.Queue()
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        self.subacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.put((mid, rc))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put((mid, rcs))
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)

    def describe(self):
        return f"{self.name} over {self.kind}://{self.host}:{self.port}"

    def connect(self):
        """Connects; returns the CONNACK reason code (an int)."""
        if self.v5:
            self.c.connect(self.host, self.port, keepalive=30, clean_start=True)
        else:
            self.c.connect(self.host, self.port, keepalive=30)
        self.c.loop_start()
        try:
            rc = self.connack.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.describe()}: no CONNACK within {WAIT} s")
        return rc.value if hasattr(rc, "value") else int(rc)

    def subscribe(self, topic, qos=1):
        res, mid = self.c.subscribe(topic, qos)
        if res != mqtt.MQTT_ERR_SUCCESS:
            raise Fail(f"{self.describe()}: subscribe({topic}) returned {res}")
        try:
            got_mid, rcs = self.subacks.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.describe()}: no SUBACK for {topic} within {WAIT} s")
        return [rc.value for rc in rcs]

    def publish(self, topic, payload, qos):
        info = self.c.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise Fail(f"{self.describe()}: publish({topic}) returned {info.rc}")
        if qos == 0:
            return None
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{self.describe()}: no PUBACK for {topic} within {WAIT} s")
            try:
                mid, rc = self.acks.get(timeout=left)
            except queue.Empty:
                continue
            if mid == info.mid:
                return rc.value if hasattr(rc, "value") else int(rc)

    def expect_message(self, topic, payload, qos):
        try:
            m = self.messages.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.describe()}: no message on {topic} within {WAIT} s")
        if m.topic != topic:
            raise Fail(f"{self.describe()}: got topic {m.topic!r}, expected {topic!r}")
        if m.payload != payload:
            raise Fail(
                f"{self.describe()}: payload on {topic} differs: got {len(m.payload)} bytes "
                f"(sha256 {hashlib.sha256(m.payload).hexdigest()[:16]}), expected {len(payload)} "
                f"bytes (sha256 {hashlib.sha256(payload).hexdigest()[:16]})"
            )
        if m.qos != qos:
            raise Fail(f"{self.describe()}: message on {topic} has QoS {m.qos}, expected {qos}")

    def expect_no_message(self):
        try:
            m = self.messages.get(timeout=QUIET)
        except queue.Empty:
            return
        raise Fail(f"{self.describe()}: unexpected message on {m.topic!r}")

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def exchange(sender, receiver, base):
    """sender -> receiver: QoS 0, QoS 1 and a 200 KB QoS 1 message."""
    cases = [
        (f"{base}/small0", b"hello over " + sender.kind.encode(), 0),
        (f"{base}/small1", b"\x00\x01binary\xff" * 3, 1),
        (f"{base}/big", big_payload(), 1),
    ]
    for topic, payload, qos in cases:
        rc = sender.publish(topic, payload, qos)
        if qos == 1 and rc not in (0, 16):
            raise Fail(f"{sender.describe()}: PUBACK reason {rc} for {topic}")
        receiver.expect_message(topic, payload, qos)


def case_roundtrip(args):
    sub_ep = parse_endpoint(args.sub)
    pub_ep = parse_endpoint(args.pub or args.sub)
    a = Client(args, sub_ep, "a")
    b = Client(args, pub_ep, "b")
    for c in (a, b):
        rc = c.connect()
        if rc != 0:
            raise Fail(f"{c.describe()}: CONNACK reason {rc}")
    run = uuid.uuid4().hex[:8]
    a_base = f"{args.topic_prefix}/{run}/to-a"
    b_base = f"{args.topic_prefix}/{run}/to-b"
    for c, base in ((a, a_base), (b, b_base)):
        rcs = c.subscribe(f"{base}/#", 1)
        if rcs != [1]:
            raise Fail(f"{c.describe()}: SUBACK {rcs} for {base}/#, expected [1]")
    exchange(b, a, a_base)
    exchange(a, b, b_base)
    if args.forbidden:
        rcs = b.subscribe(args.forbidden, 1)
        want = 135 if a.v5 else 128
        if rcs != [want]:
            raise Fail(f"{b.describe()}: SUBACK {rcs} for forbidden {args.forbidden}, expected [{want}]")
        rc = a.publish(args.forbidden, b"must not pass", 1)
        if a.v5 and rc != 135:
            raise Fail(f"{a.describe()}: PUBACK reason {rc} for forbidden {args.forbidden}, expected 135")
        a.expect_no_message()
        b.expect_no_message()
    for c in (a, b):
        c.close()
    extra = f", {args.forbidden} refused" if args.forbidden else ""
    print(f"ok: {a.describe()} <-> {b.describe()}: QoS 0, QoS 1 and {BIG} bytes both ways{extra}")


def case_refused(args):
    c = Client(args, parse_endpoint(args.sub), "refused")
    rc = c.connect()
    c.c.loop_stop()
    if rc != args.expect_rc:
        raise Fail(f"{c.describe()}: CONNACK reason {rc}, expected {args.expect_rc}")
    print(f"ok: {c.describe()} refused with {rc}")


def case_untrusted(args):
    c = Client(args, parse_endpoint(args.sub), "untrusted")
    try:
        c.c.connect(c.host, c.port, keepalive=30)
    except ssl.SSLCertVerificationError as e:
        print(f"ok: {c.describe()}: handshake refused by the client: {e.verify_message}")
        return
    except ssl.SSLError as e:
        raise Fail(f"{c.describe()}: TLS error, but not a verification failure: {e}")
    raise Fail(f"{c.describe()}: connected although the CA does not match")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", required=True, choices=["roundtrip", "refused", "untrusted"])
    p.add_argument("--version", type=int, choices=[3, 5], default=5)
    p.add_argument("--sub", required=True)
    p.add_argument("--pub")
    p.add_argument("--cafile")
    p.add_argument("--username")
    p.add_argument("--forbidden")
    p.add_argument("--topic-prefix", default="tern/paho")
    p.add_argument("--expect-rc", type=int)
    args = p.parse_args()
    watchdog()
    try:
        {"roundtrip": case_roundtrip, "refused": case_refused, "untrusted": case_untrusted}[args.case](args)
    except Fail as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
    except Exception:
        print("FAIL: exception", flush=True)
        traceback.print_exc()
        sys.exit(1)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
