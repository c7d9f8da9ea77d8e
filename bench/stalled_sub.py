#!/usr/bin/env python3
"""A subscriber that never reads: connects (MQTT 3.1.1), subscribes, waits
for SUBACK, prints "subscribed", then sleeps without ever reading the socket
again until it is killed. Used by bench/compare.sh (stalled-subscriber RSS).

usage: stalled_sub.py PORT TOPIC_FILTER QOS [CLIENT_ID]
"""
import socket
import struct
import sys
import time


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def main() -> None:
    port = int(sys.argv[1])
    topic = sys.argv[2]
    qos = int(sys.argv[3])
    client_id = sys.argv[4] if len(sys.argv) > 4 else "bench-stalled"

    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    # Keep alive 0: the broker must not disconnect it for silence.
    var = utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
    body = var + utf8(client_id)
    s.sendall(bytes([0x10]) + remaining_length(len(body)) + body)
    connack = s.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        sys.exit(f"bad CONNACK {connack!r}")
    body = struct.pack("!H", 1) + utf8(topic) + bytes([qos])
    s.sendall(bytes([0x82]) + remaining_length(len(body)) + body)
    suback = s.recv(5)
    if len(suback) < 5 or suback[0] != 0x90 or suback[4] > 2:
        sys.exit(f"bad SUBACK {suback!r}")
    print("subscribed", flush=True)
    while True:  # never read again
        time.sleep(3600)


if __name__ == "__main__":
    main()
