#!/usr/bin/env python3
"""Client side of the crash tests (tests/durability.rs), with paho-mqtt.

Modes (each prints one line per event, flushed, for the Rust test to read):
  setup    --client C --qos Q --topic F   persistent session C subscribes to F, then leaves
  publish  --client C --qos Q --topic T --start N --count M [--retain]
           publishes payloads "N", "N+1", ... to T (or T/<n> with --retain),
           at most --window unacknowledged; prints "acked <n>" for every
           acknowledgement, "gone" when the connection drops
  collect  --client C --idle S            resumes session C, prints "msg <qos> <topic> <payload>"
           for every message until none came for S seconds, then "done"
  listen   --client C --qos Q --topic F --idle S
           persistent subscriber that stays online across broker restarts
           (paho reconnects to the same port, keeping its QoS 2 state),
           prints "msg ..." lines, then "done" after S idle seconds once
           it has been reconnected at least --reconnects times
"""

import argparse
import random
import string
import sys
import threading
import time

import paho.mqtt.client as mqtt


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def client(cid, clean, v5=False):
    if v5:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    else:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cid,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
    c.max_inflight_messages_set(20)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
    return c


def setup(a):
    c = client(a.client, False)
    subbed = threading.Event()
    c.on_subscribe = lambda *args: subbed.set()
    c.connect("127.0.0.1", a.port)
    c.loop_start()
    c.subscribe(a.topic, a.qos)
    if not subbed.wait(10):
        out("error no SUBACK")
        sys.exit(1)
    c.disconnect()
    c.loop_stop()
    out("ready")


def publish(a):
    c = client(a.client, True, a.mqtt5)
    lock = threading.Condition()
    # mid -> number; acknowledgements may arrive before publish() returns
    # the mid, so those are parked in "early". paho calls on_publish with
    # its own lock held: never call into paho while holding ours.
    state = {"unacked": {}, "early": set(), "gone": False}

    def on_publish(_c, _u, mid, _rc, _p):
        with lock:
            n = state["unacked"].pop(mid, None)
            if n is None:
                state["early"].add(mid)
            lock.notify_all()
        if n is not None:
            out(f"acked {n}")

    def on_disconnect(_c, _u, _flags, rc, _p):
        with lock:
            if not state["gone"]:
                out(f"disconnected {int(rc.value) if hasattr(rc, 'value') else rc}")
            state["gone"] = True
            lock.notify_all()

    c.on_publish = on_publish
    c.on_disconnect = on_disconnect
    c.connect("127.0.0.1", a.port)
    c.loop_start()
    # No reconnect: a disconnect ends the run.
    c.reconnect_delay_set(min_delay=3600, max_delay=3600)
    for n in range(a.start, a.start + a.count):
        with lock:
            while len(state["unacked"]) >= a.window and not state["gone"]:
                lock.wait(1)
            if state["gone"]:
                break
        topic = f"{a.topic}/{n}" if a.retain else a.topic
        info = c.publish(topic, str(n).encode(), qos=a.qos, retain=a.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            break
        with lock:
            if info.mid in state["early"]:
                state["early"].discard(info.mid)
                acked_now = True
            else:
                state["unacked"][info.mid] = n
                acked_now = False
        if acked_now:
            out(f"acked {n}")
    deadline = time.time() + 30
    with lock:
        while state["unacked"] and not state["gone"] and time.time() < deadline:
            lock.wait(1)
    out("gone" if state["gone"] else "finished")
    c.loop_stop()


def receive(a, clean_exit_after_reconnects):
    c = client(a.client, False)
    state = {"last": time.time(), "connects": 0}
    lock = threading.Lock()

    def on_message(_c, _u, m):
        with lock:
            state["last"] = time.time()
        out(f"msg {m.qos} {m.topic} {m.payload.decode()}")

    def on_connect(_c, _u, flags, rc, _p):
        with lock:
            state["connects"] += 1
            state["last"] = time.time()
        out(f"connected {flags.session_present} {rc}")
        if a.topic and state["connects"] == 1:
            c.subscribe(a.topic, a.qos)

    c.on_message = on_message
    c.on_connect = on_connect
    c.connect("127.0.0.1", a.port)
    c.loop_start()
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.1)
        with lock:
            idle = time.time() - state["last"]
            enough = state["connects"] > clean_exit_after_reconnects
        if enough and idle >= a.idle:
            break
    c.disconnect()
    c.loop_stop()
    out("done")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["setup", "publish", "collect", "listen"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--client", required=True)
    p.add_argument("--qos", type=int, default=1)
    p.add_argument("--topic", default="")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--retain", action="store_true")
    p.add_argument("--pad", type=int, default=0, help="bytes of padding after the number")
    p.add_argument("--mqtt5", action="store_true", help="publish over MQTT 5 (prints the DISCONNECT reason)")
    p.add_argument("--idle", type=float, default=2.0)
    p.add_argument("--reconnects", type=int, default=0)
    a = p.parse_args()
    if a.mode == "setup":
        setup(a)
    elif a.mode == "publish":
        publish(a)
    elif a.mode == "collect":
        receive(a, 0)
    else:
        receive(a, a.reconnects)


if __name__ == "__main__":
    main()
