"""IoT Core's front door for a drill broker: TLS with SNI, then every MQTT packet authorised.

A device's TLS connection ends here (the custom domain's certificate, mutual TLS against the
region's trust directory, `broker.TrustStore`); the front reads the SNI the device sent and the
certificate it presented, then relays MQTT to the broker's plain listener, asking
`iotpolicy.Authoriser` about each CONNECT (client id), PUBLISH (topic, QoS) and SUBSCRIBE (filters,
QoS) from the device and each PUBLISH delivered to it (iot:Receive). What IoT Core refuses:

- CONNECT: answered with CONNACK "not authorized" (MQTT 3.1.1 return code 5, MQTT 5 reason 0x87)
  and the connection closed;
- PUBLISH or SUBSCRIBE: the connection is closed (IoT Core disconnects a client that publishes
  where its policy does not allow; for a refused subscription it answers SUBACK 0x80, which the
  front does not rewrite: it disconnects, which is stricter);
- a delivery the policy does not allow to Receive is dropped (a QoS 1 one acknowledged to the
  broker in the device's place);
- a policy detached, or a policy's default version changed, while a connection is open: the
  connection's copy of its policies is re-read once it is as old as IoT Core's policy cache
  (`refresh_policies`, called by `iotdoor.RegionDoor`'s watch), and its next PUBLISH, SUBSCRIBE or
  delivery is decided by the new ones;
- a certificate deactivated or revoked while its connection is open: the connection is closed
  (`close_where`, called by `iotdoor.RegionDoor`'s watch within a second of the change), as IoT Core
  disconnects it, and its next CONNECT is refused.

`stop` is the region going down: the listener closes (a TCP health check sees the port refuse) and
every open connection is cut.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.drill.iotpolicy import Authoriser, Decision, Session

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE = 1, 2, 3, 4, 8


def certificate_key(der: bytes) -> str:
    """How the front names a client certificate: SHA-256 of its DER (IoT's certificate id)."""
    return hashlib.sha256(der).hexdigest()


class MalformedPacket(ValueError):
    pass


def read_packet(recv: Callable[[int], bytes]) -> bytes | None:
    """One whole MQTT control packet (fixed header included); None at end of stream."""
    first = recv(1)
    if not first:
        return None
    header = bytearray(first)
    length, shift = 0, 0
    for _ in range(4):
        b = recv(1)
        if not b:
            raise MalformedPacket("stream ended inside a fixed header")
        header += b
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    else:
        raise MalformedPacket("remaining length longer than 4 bytes")
    body = bytearray()
    while len(body) < length:
        chunk = recv(length - len(body))
        if not chunk:
            raise MalformedPacket("stream ended inside a packet")
        body += chunk
    return bytes(header + body)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    for i in range(4):
        b = data[at + i]
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, at + i + 1
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def _string(data: bytes, at: int) -> tuple[str, int]:
    n = int.from_bytes(data[at:at + 2], "big")
    return data[at + 2:at + 2 + n].decode("utf-8"), at + 2 + n


def _body(packet: bytes) -> bytes:
    _, at = _varint(packet, 1)
    return packet[at:]


@dataclass(frozen=True)
class Connect:
    level: int  # 4: MQTT 3.1.1, 5: MQTT 5
    client_id: str


def parse_connect(packet: bytes) -> Connect:
    body = _body(packet)
    _, at = _string(body, 0)
    level = body[at]
    at += 1 + 1 + 2  # level, flags, keep alive
    if level == 5:
        size, at = _varint(body, at)
        at += size
    client_id, _ = _string(body, at)
    return Connect(level, client_id)


def parse_publish(packet: bytes) -> tuple[str, int, int | None]:
    """(topic, QoS, packet id or None)."""
    qos = (packet[0] >> 1) & 0x03
    body = _body(packet)
    topic, at = _string(body, 0)
    pid = int.from_bytes(body[at:at + 2], "big") if qos else None
    return topic, qos, pid


def parse_subscribe(packet: bytes, level: int) -> list[tuple[str, int]]:
    body = _body(packet)
    at = 2  # packet id
    if level == 5:
        size, at = _varint(body, at)
        at += size
    out = []
    while at < len(body):
        topic_filter, at = _string(body, at)
        out.append((topic_filter, body[at] & 0x03))
        at += 1
    return out


def connack_refused(level: int) -> bytes:
    return bytes([CONNACK << 4, 3, 0, 0x87, 0]) if level == 5 else bytes([CONNACK << 4, 2, 0, 5])


class AuthorisingFront:
    """Listens on (address, port) for devices and relays to the broker at `upstream`."""

    def __init__(self, authoriser: Authoriser, context: ssl.SSLContext, address: str, port: int,
                 upstream: tuple[str, int], identify: Callable[[bytes], str | None] = certificate_key) -> None:
        self.authoriser = authoriser
        self.context = context
        self.address, self.port = address, port
        self.upstream = upstream
        self.identify = identify  # DER of the client certificate -> IoT certificate id
        self.refusals: list[str] = []
        self._sni: dict[int, str | None] = {}
        self._server: socket.socket | None = None
        self._closing = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._live: dict[int, tuple[Session, Any, socket.socket]] = {}  # id(device socket) -> open connection
        self._live_lock = threading.Lock()
        context.sni_callback = self._remember_sni

    def _remember_sni(self, sock: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        self._sni[id(sock)] = server_name

    def start(self) -> AuthorisingFront:
        server = socket.create_server((self.address, self.port))
        server.settimeout(0.2)  # the accept loop sees `stop` even if no device ever connects again
        self.port = server.getsockname()[1]
        self._server = server
        self._acceptor = threading.Thread(target=self._accept, name=f"iot-front-{self.port}", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """The region goes down: no new connection is accepted and every open one is cut."""
        self._closing.set()
        server = self._server
        if server is not None:
            try:  # wakes an accept() blocked in another thread (close alone does not, on Linux)
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()
        if self._acceptor is not None:
            self._acceptor.join(5)
        self.close_where(lambda _s: True, "the endpoint stopped")

    def live(self) -> list[Session]:
        """The sessions of the connections open now."""
        with self._live_lock:
            return [session for session, _, _ in self._live.values()]

    def refresh_policies(self, max_age_s: float) -> int:
        """Re-read the attached policies (and thing) of every open connection whose copy is at least
        `max_age_s` old, so its next publish, subscribe and delivery are decided by the registry as it
        is now (IoT Core evaluates each action against its cached policies; "Changes made to a policy
        can take anywhere between 6 and 8 minutes to become effective", IoT Developer Guide, "AWS IoT
        Core policies"). Returns how many were re-read; one that cannot be read keeps its copy."""
        now, done = time.monotonic(), 0
        for session in self.live():
            if now - session.read_at < max_age_s:
                continue
            try:
                self.authoriser.refresh(session)
            except Exception:  # noqa: BLE001 - an unreadable registry changes nothing; the next round retries
                continue
            done += 1
        return done

    def close_where(self, predicate: Callable[[Session], bool], reason: str) -> int:
        """Close every open connection whose session matches (device and broker side); returns how many."""
        with self._live_lock:
            doomed = [(k, v) for k, v in self._live.items() if predicate(v[0])]
            for k, _ in doomed:
                del self._live[k]
        for _, (session, device, broker) in doomed:
            self.refusals.append(f"{reason}: connection of {session.principal.client_id} closed")
            for s in (device, broker):
                try:  # shutdown wakes the relay threads blocked in recv; they close the sockets
                    socket.socket.shutdown(s, socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(doomed)

    def _accept(self) -> None:
        assert self._server is not None
        while not self._closing.is_set():
            try:
                raw, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(None)
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _refuse(self, decision: Decision) -> None:
        self.refusals.append(decision.reason)

    def _serve(self, raw: socket.socket) -> None:
        try:
            device = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        sni = self._sni.pop(id(device), None)
        broker: socket.socket | None = None
        try:
            der = device.getpeercert(binary_form=True) or b""
            first = read_packet(device.recv)
            if first is None or first[0] >> 4 != CONNECT:
                return
            connect = parse_connect(first)
            cert_id = self.identify(der)
            if cert_id is None:
                decision, session = Decision(False, "the client certificate is not registered"), None
            else:
                decision, session = self.authoriser.connect(cert_id, connect.client_id, sni)
            if not decision or session is None:
                self._refuse(decision)
                device.sendall(connack_refused(connect.level))
                return
            broker = socket.create_connection(self.upstream, timeout=10)
            broker.settimeout(None)
            with self._live_lock:
                if self._closing.is_set():
                    return
                self._live[id(device)] = (session, device, broker)
            broker.sendall(first)
            lock = threading.Lock()
            down = threading.Thread(target=self._deliver, args=(broker, device, session, lock), daemon=True)
            down.start()
            self._relay(device, broker, session, connect.level, lock)
        except (OSError, MalformedPacket, ValueError, IndexError):
            return
        finally:
            with self._live_lock:
                self._live.pop(id(device), None)
            for s in (device, broker):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _relay(self, device: Any, broker: socket.socket, session: Session, level: int, lock: threading.Lock) -> None:
        """Device -> broker: each PUBLISH and SUBSCRIBE asked about first."""
        while True:
            packet = read_packet(device.recv)
            if packet is None:
                return
            kind = packet[0] >> 4
            decision: Decision | None = None
            if kind == PUBLISH:
                topic, qos, _ = parse_publish(packet)
                decision = self.authoriser.publish(session, topic, qos)
            elif kind == SUBSCRIBE:
                for topic_filter, qos in parse_subscribe(packet, level):
                    decision = self.authoriser.subscribe(session, topic_filter, qos)
                    if not decision:
                        break
            if decision is not None and not decision:
                self._refuse(decision)
                return
            with lock:
                broker.sendall(packet)

    def _deliver(self, broker: socket.socket, device: Any, session: Session, lock: threading.Lock) -> None:
        """Broker -> device: a PUBLISH the policy does not let the device Receive is dropped."""
        try:
            while True:
                packet = read_packet(broker.recv)
                if packet is None:
                    break
                if packet[0] >> 4 == PUBLISH:
                    topic, qos, pid = parse_publish(packet)
                    decision = self.authoriser.receive(session, topic)
                    if not decision:
                        self._refuse(decision)
                        if qos == 1 and pid is not None:
                            with lock:
                                broker.sendall(bytes([PUBACK << 4, 2]) + pid.to_bytes(2, "big"))
                        continue
                device.sendall(packet)
        except (OSError, MalformedPacket, ValueError, IndexError):
            pass
        finally:
            try:
                device.close()
            except OSError:
                pass
