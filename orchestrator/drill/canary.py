"""An MQTT-level health canary: connect through the custom domain, subscribe to its own topic,
publish one QoS 1 message and receive it back; healthy only when the whole round trip completes.

A TCP health check (what Route 53 probes) calls a region healthy when its port answers; a region whose
port answers but whose MQTT refuses (expired domain certificate, authoriser failure, a broken policy)
looks healthy to it and not to this canary. Standard library only (socket, ssl), synchronous, so the
same module runs in a scheduled Lambda (publishing `MqttRoundTrip` to CloudWatch) and in the drill's
world against its brokers.

The TLS connection is made to the resolved address with the custom domain as SNI and as the name the
server certificate must match, with the canary thing's certificate for mutual TLS; `tls=None` speaks
plain MQTT (the drill's service listeners and tests).
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass

METRIC_NAMESPACE = "IotPlatform/Canary"
METRIC_NAME = "MqttRoundTrip"  # 1 healthy, 0 not; dimension Region


@dataclass(frozen=True)
class CanaryResult:
    healthy: bool
    stage: str  # the last stage reached: tcp, tls, connack, suback, puback, echo (all done)
    detail: str
    seconds: float

    def metric(self, region: str) -> dict[str, object]:
        """The CloudWatch datum the Lambda puts (`put_metric_data(Namespace=METRIC_NAMESPACE, ...)`)."""
        return {"MetricName": METRIC_NAME, "Dimensions": [{"Name": "Region", "Value": region}],
                "Value": 1.0 if self.healthy else 0.0, "Unit": "Count"}


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray([first])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def _read(sock: socket.socket | ssl.SSLSocket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            buf += chunk
        return buf

    first = exactly(1)[0]
    n, mult = 0, 1
    while True:
        b = exactly(1)[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return first, exactly(n)


CONNACK_CODES = {1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
                 4: "bad user name or password", 5: "not authorized"}


def probe(address: str, port: int, domain: str, client_id: str, *, tls: ssl.SSLContext | None = None,
          timeout: float = 5.0, topic: str | None = None) -> CanaryResult:
    """One round trip. `address` is where the custom domain resolves (the caller resolves: the Lambda
    through DNS, the drill through its own resolver); `domain` is the SNI and certificate name."""
    t0 = time.monotonic()
    stage = "tcp"
    topic = topic or f"canary/{client_id}/{os.urandom(4).hex()}"
    payload = os.urandom(8).hex().encode()

    def result(healthy: bool, detail: str) -> CanaryResult:
        return CanaryResult(healthy, stage, detail, time.monotonic() - t0)

    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        return result(False, f"TCP connect failed: {exc}")
    sock: socket.socket | ssl.SSLSocket = raw
    try:
        raw.settimeout(timeout)
        if tls is not None:
            stage = "tls"
            sock = tls.wrap_socket(raw, server_hostname=domain)
        stage = "connack"
        body = _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 30) + _str(client_id)
        sock.sendall(_packet(0x10, body))
        kind, ack = _read(sock)
        if kind >> 4 != 2 or len(ack) < 2:
            return result(False, f"expected CONNACK, got packet type {kind >> 4}")
        if ack[1] != 0:
            return result(False, f"CONNECT refused: {CONNACK_CODES.get(ack[1], ack[1])}")
        stage = "suback"
        sock.sendall(_packet(0x82, struct.pack("!H", 1) + _str(topic) + b"\x01"))
        while True:
            kind, body = _read(sock)
            if kind >> 4 == 9:
                if body[2:3] == b"\x80":
                    return result(False, f"SUBSCRIBE to {topic} refused")
                break
        stage = "puback"
        sock.sendall(_packet(0x32, _str(topic) + struct.pack("!H", 2) + payload))
        acked = echoed = False
        while not (acked and echoed):
            kind, body = _read(sock)
            if kind >> 4 == 4:
                acked, stage = True, "echo"
            elif kind >> 4 == 3:
                tlen = struct.unpack("!H", body[:2])[0]
                qos = (kind >> 1) & 3
                start = 2 + tlen + (2 if qos else 0)
                if qos:
                    sock.sendall(b"\x40\x02" + body[2 + tlen:4 + tlen])
                if body[2:2 + tlen].decode() == topic and body[start:] == payload:
                    echoed = True
        stage = "echo"
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        return result(True, "connected, subscribed, published and received its own message")
    except (OSError, ConnectionError, ssl.SSLError, ValueError) as exc:
        return result(False, f"{stage}: {type(exc).__name__}: {exc}")
    finally:
        sock.close()


def tcp_open(address: str, port: int, timeout: float = 2.0) -> bool:
    """What a Route 53 TCP health check sees: the port accepts a connection."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
