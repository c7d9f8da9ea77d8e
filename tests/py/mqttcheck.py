"""Small helpers shared by the paho-mqtt interop scripts in this folder.

Every script is run as `python3 SCRIPT --port PORT --case NAME [--version 3|5]`
against a running broker on 127.0.0.1. A script prints what it checked and
exits 0, or prints `FAIL: reason` and exits 1. Nothing in here blocks without a
timeout, and a watchdog ends the process if a case runs far too long.
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
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
# How long to wait for something that should happen.
WAIT = 5.0
# How long to watch for something that should not happen.
QUIET = 1.0
# The whole case must finish within this many seconds.
WATCHDOG = 50.0

__all__ = [
    "Fail",
    "Peer",
    "PacketTypes",
    "Properties",
    "ReasonCode",
    "SubscribeOptions",
    "check",
    "main",
    "mqtt",
    "props",
    "uniq",
]


class Fail(Exception):
    """A failed expectation; the message says what was expected and seen."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def uniq(prefix="t"):
    """A topic prefix unique to this run, so cases never see each other."""
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def props(packet_type, **kw):
    """Properties(packet_type) with the given attributes set."""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def prop(message_or_props, name, default=None):
    """A property of a received message (or Properties), or default."""
    if isinstance(message_or_props, Properties):
        p = message_or_props
    else:
        p = getattr(message_or_props, "properties", None)
    if p is None:
        return default
    return getattr(p, name, default)


def describe(m):
    extra = ""
    if m.properties is not None:
        extra = f" props={m.properties}"
    return f"<{m.topic!r} {m.payload!r} qos={m.qos} retain={int(m.retain)}{extra}>"


def rc_value(rc):
    if isinstance(rc, ReasonCode):
        return rc.value
    return int(rc)


class Peer:
    """A paho-mqtt 2.x client whose callbacks feed queues.

    version: 3 (MQTT 3.1.1) or 5. clean: Clean Session (v3) / Clean Start (v5).
    expiry: v5 Session Expiry Interval. will: (topic, payload, qos, retain[, props]).
    """

    def __init__(
        self,
        port,
        version=5,
        client_id="",
        clean=True,
        expiry=None,
        will=None,
        keepalive=30,
        connect_props=None,
        name=None,
    ):
        self.port = port
        self.version = version
        self.name = name or client_id or "client"
        self.clean = clean
        proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        kwargs = dict(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=proto,
            reconnect_on_failure=False,
        )
        if version != 5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        self.acks = {}
        self.acks_lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_publish = self._on_publish
        # The raw body of a DISCONNECT from the broker. paho 2.1 reads the reason code of a
        # DISCONNECT only when the remaining length is > 2, so `E0 01 8E` (a valid DISCONNECT
        # carrying only a reason code) reaches on_disconnect as "Success": keep the bytes.
        self.raw_disconnect = None
        original = self.c._handle_disconnect

        def handle_disconnect():
            self.raw_disconnect = bytes(self.c._in_packet["packet"])
            return original()

        self.c._handle_disconnect = handle_disconnect
        if will is not None:
            topic, payload, qos, retain, *rest = will
            self.c.will_set(topic, payload, qos, retain, properties=rest[0] if rest else None)
        self.keepalive = keepalive
        self.connect_props = connect_props
        if version == 5 and expiry is not None:
            if self.connect_props is None:
                self.connect_props = Properties(PacketTypes.CONNECT)
            self.connect_props.SessionExpiryInterval = expiry
        self.connected = False

    # --- callbacks (run on paho's network thread) ---
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connacks.put((flags, reason_code, properties))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected = False
        self.disconnects.put((reason_code, properties))

    def _on_message(self, client, userdata, message):
        self.messages.put(message)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.subacks.put((mid, reason_codes, properties))

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        self.unsubacks.put((mid, reason_codes, properties))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.acks_lock:
            self.acks[mid] = reason_code

    # --- connection ---
    def connect(self, expect_ok=True):
        """Connects, starts the network thread, returns (flags, reason_code, properties)."""
        if self.version == 5:
            self.c.connect(
                HOST,
                self.port,
                self.keepalive,
                clean_start=self.clean,
                properties=self.connect_props,
            )
        else:
            self.c.connect(HOST, self.port, self.keepalive)
        self.c.loop_start()
        try:
            flags, rc, p = self.connacks.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.name}: no CONNACK within {WAIT}s")
        if expect_ok:
            check(not rc.is_failure, f"{self.name}: CONNACK refused: {rc}")
            self.connected = True
        return flags, rc, p

    def connect_raw(self):
        """Connects without the network thread: for an abrupt close later."""
        if self.version == 5:
            self.c.connect(
                HOST,
                self.port,
                self.keepalive,
                clean_start=self.clean,
                properties=self.connect_props,
            )
        else:
            self.c.connect(HOST, self.port, self.keepalive)
        deadline = time.monotonic() + WAIT
        while self.connacks.empty():
            check(time.monotonic() < deadline, f"{self.name}: no CONNACK within {WAIT}s")
            self.c.loop(timeout=0.05)
        flags, rc, p = self.connacks.get_nowait()
        check(not rc.is_failure, f"{self.name}: CONNACK refused: {rc}")
        return flags, rc, p

    def abort(self):
        """Closes the TCP connection without sending DISCONNECT (network failure)."""
        sock = self.c.socket()
        check(sock is not None, f"{self.name}: no socket to abort")
        try:
            import socket

            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def disconnect(self, reasoncode=None, properties=None):
        """A clean DISCONNECT, then waits for the connection to end."""
        self.c.disconnect(reasoncode=reasoncode, properties=properties)
        try:
            self.disconnects.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.name}: disconnect did not complete within {WAIT}s")
        self.c.loop_stop()
        self.connected = False

    def stop(self):
        """Best-effort teardown, for the end of a case."""
        try:
            self.c.disconnect()
        except Exception:
            pass
        try:
            self.c.loop_stop()
        except Exception:
            pass

    def wait_disconnected(self, timeout=WAIT):
        """Waits for the broker to end this connection; returns (reason_code, properties)."""
        try:
            return self.disconnects.get(timeout=timeout)
        except queue.Empty:
            raise Fail(f"{self.name}: still connected after {timeout}s")

    def server_disconnect_reason(self):
        """The reason code of the DISCONNECT the broker sent, or None if it sent none."""
        if self.raw_disconnect is None:
            return None
        return self.raw_disconnect[0] if self.raw_disconnect else 0

    # --- subscribe / publish ---
    def subscribe(self, topic, qos=0, options=None, properties=None, expect_ok=True):
        if self.version == 5:
            if options is None:
                options = SubscribeOptions(qos=qos)
            result, mid = self.c.subscribe(topic, options=options, properties=properties)
        else:
            result, mid = self.c.subscribe(topic, qos)
        check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: subscribe({topic}) failed to send: {result}")
        try:
            got_mid, codes, _ = self.subacks.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.name}: no SUBACK for {topic!r} within {WAIT}s")
        check(got_mid == mid, f"{self.name}: SUBACK for mid {got_mid}, expected {mid}")
        if expect_ok:
            for rc in codes:
                check(not rc.is_failure, f"{self.name}: SUBACK refused {topic!r}: {rc}")
        return codes

    def unsubscribe(self, topic):
        result, mid = self.c.unsubscribe(topic)
        check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: unsubscribe failed to send")
        try:
            self.unsubacks.get(timeout=WAIT)
        except queue.Empty:
            raise Fail(f"{self.name}: no UNSUBACK within {WAIT}s")

    def publish(self, topic, payload, qos=0, retain=False, properties=None, wait=True):
        """Publishes; for QoS > 0 with wait, waits for the PUBACK/PUBCOMP and returns its reason code."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        check(
            info.rc == mqtt.MQTT_ERR_SUCCESS,
            f"{self.name}: publish to {topic!r} failed to send: {mqtt.error_string(info.rc)}",
        )
        if not wait:
            return info
        deadline = time.monotonic() + WAIT
        if qos == 0:
            info.wait_for_publish(timeout=WAIT)
            check(info.is_published(), f"{self.name}: QoS 0 publish not written within {WAIT}s")
            return None
        while True:
            with self.acks_lock:
                if info.mid in self.acks:
                    return self.acks.pop(info.mid)
            if time.monotonic() > deadline:
                raise Fail(f"{self.name}: no ack for QoS {qos} publish to {topic!r} within {WAIT}s")
            if not self.connected and not self.disconnects.empty():
                raise Fail(f"{self.name}: disconnected while waiting for ack of {topic!r}")
            time.sleep(0.01)

    # --- receiving ---
    def expect(self, n=1, timeout=WAIT, what="message"):
        """Exactly waits for n messages (each within timeout overall); returns them."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(left, 0.001)))
            except queue.Empty:
                got = ", ".join(describe(m) for m in out) or "nothing"
                raise Fail(f"{self.name}: expected {n} {what}(s) within {timeout}s, got {len(out)}: {got}")
        return out

    def expect_one(self, timeout=WAIT, what="message"):
        return self.expect(1, timeout, what)[0]

    def expect_none(self, duration=QUIET, what="message"):
        """Watches for duration seconds; fails if any message arrives."""
        try:
            m = self.messages.get(timeout=duration)
        except queue.Empty:
            return
        raise Fail(f"{self.name}: expected no {what}, got {describe(m)}")

    def drain(self, duration=QUIET):
        """Collects every message arriving within duration seconds."""
        out = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                return out


def main(cases):
    """Parses --port/--case/--version, runs the case, and exits 0/1."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--case", required=True, choices=sorted(cases))
    ap.add_argument("--version", type=int, choices=(3, 5), default=5)
    args = ap.parse_args()

    def watchdog():
        print(f"FAIL: case {args.case} still running after {WATCHDOG}s", flush=True)
        os._exit(3)

    timer = threading.Timer(WATCHDOG, watchdog)
    timer.daemon = True
    timer.start()
    label = f"{args.case} (MQTT {'5.0' if args.version == 5 else '3.1.1'})"
    try:
        cases[args.case](args.port, args.version)
    except Fail as e:
        print(f"FAIL: {label}: {e}", flush=True)
        os._exit(1)
    except Exception:
        traceback.print_exc()
        print(f"FAIL: {label}: unexpected exception", flush=True)
        os._exit(2)
    print(f"ok: {label}", flush=True)
    sys.stdout.flush()
    # Skip interpreter teardown: paho threads of peers left connected must not delay exit.
    os._exit(0)
