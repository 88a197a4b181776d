"""Publishes N MQTT 3.1.1 messages as fast as a socket takes them.

    mqtt_pub.py PORT TOPIC COUNT QOS

Bare-number payloads (the sequence number). At QoS 1 a reader thread counts
PUBACKs and the script exits once the broker acknowledged every message.
(mosquitto_pub -l loses most QoS 1 lines at this rate: about 17k of 1M arrived in a test.)
"""
import socket
import struct
import sys
import threading


def varint(n):
    out = b""
    while True:
        d, n = n % 128, n // 128
        out += bytes([d | (0x80 if n else 0)])
        if not n:
            return out


def packet(kind, body):
    return bytes([kind]) + varint(len(body)) + body


def main():
    port, topic, count, qos = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = b"bench-pub"
    s.sendall(packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid))
    assert s.recv(4)[:2] == b"\x20\x02", "no CONNACK"
    acked = [0]

    def reader():
        buf = b""
        while acked[0] < count:
            data = s.recv(1 << 16)
            if not data:
                return
            buf += data
            # PUBACKs are 4 bytes: 0x40 0x02 id id
            n = len(buf) // 4
            acked[0] += n
            buf = buf[n * 4:]

    t = None
    if qos:
        t = threading.Thread(target=reader)
        t.start()
    head = struct.pack(">H", len(topic)) + topic
    chunk = []
    for i in range(count):
        payload = str(i).encode()
        if qos:
            body = head + struct.pack(">H", i % 65535 + 1) + payload
            chunk.append(packet(0x32, body))
        else:
            chunk.append(packet(0x30, head + payload))
        if len(chunk) == 2000:
            s.sendall(b"".join(chunk))
            chunk.clear()
    s.sendall(b"".join(chunk))
    if t:
        t.join()
    s.sendall(b"\xe0\x00")
    s.close()


main()
