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
- a persistent session not resumed within the account's persistent session expiry period (1 hour
  by default, `PERSISTENT_SESSION_S`, on the drill's time scale) is gone: the device resuming it
  gets sessionPresent 0 and none of the messages queued for it;
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

from orchestrator.drill.world.iotpolicy import Authoriser, Decision, Session

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
    clean: bool = True  # Clean Session (3.1.1) / Clean Start (5)
    session_expiry: int = 0  # MQTT 5's Session Expiry Interval in seconds (absent: 0); unused for 3.1.1


# the size of each MQTT 5 CONNECT property's value (MQTT 5.0, 3.1.2.11), -1: a UTF-8 string or binary
# data (two-byte length), -2: a string pair
_CONNECT_PROPERTIES = {0x11: 4, 0x21: 2, 0x27: 4, 0x22: 2, 0x19: 1, 0x17: 1, 0x26: -2, 0x15: -1, 0x16: -1}


def parse_connect(packet: bytes) -> Connect:
    body = _body(packet)
    _, at = _string(body, 0)
    level = body[at]
    flags = body[at + 1]
    at += 1 + 1 + 2  # level, flags, keep alive
    expiry = 0
    if level == 5:
        size, at = _varint(body, at)
        end = at + size
        while at < end:
            prop = body[at]
            kind = _CONNECT_PROPERTIES.get(prop)
            if kind is None:
                raise MalformedPacket(f"CONNECT property 0x{prop:02x}")
            at += 1
            if prop == 0x11:
                expiry = int.from_bytes(body[at:at + 4], "big")
            if kind > 0:
                at += kind
            else:
                for _ in range(-kind):
                    at += 2 + int.from_bytes(body[at:at + 2], "big")
        at = end
    client_id, _ = _string(body, at)
    return Connect(level, client_id, bool(flags & 0x02), expiry)


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


# AWS General Reference, "AWS IoT Core endpoints and quotas", message broker: "Persistent session
# expiry period: The duration for which the message broker stores an MQTT persistent session. The
# expiry period begins when the message broker detects the session has become disconnected. After
# the expiry period has elapsed, the message broker terminates the session and discards any
# associated queued messages." 1 hour by default (adjustable, 1 hour to 7 days).
PERSISTENT_SESSION_S = 3600.0


class AuthorisingFront:
    """Listens on (address, port) for devices and relays to the broker at `upstream`.

    Persistent sessions expire as IoT Core's do (`session_expiry_s`, the account's persistent
    session expiry period, scaled by the drill): a session kept after its connection ended (MQTT
    3.1.1 Clean Session 0; MQTT 5 a Session Expiry Interval above 0, capped at the period) and not
    resumed within that time is gone: a device resuming it later gets sessionPresent 0 and none of
    the messages queued for it. mosquitto keeps 3.1.1 sessions for ever (no
    `persistent_client_expiration` below an hour), so the front ends an expired session itself before
    it relays the resuming CONNECT (a Clean Session CONNECT of the same client id, then DISCONNECT)."""

    def __init__(self, authoriser: Authoriser, context: ssl.SSLContext, address: str, port: int,
                 upstream: tuple[str, int], identify: Callable[[bytes], str | None] = certificate_key,
                 session_expiry_s: float = PERSISTENT_SESSION_S) -> None:
        self.session_expiry_s = session_expiry_s
        self.expired: list[tuple[float, str]] = []  # (time, client id): sessions ended by expiry
        self._ended: dict[str, tuple[float, float]] = {}  # client id -> (disconnected at, lifetime)
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
        relayed: Connect | None = None
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
            self._expire(connect)
            broker = socket.create_connection(self.upstream, timeout=10)
            broker.settimeout(None)
            with self._live_lock:
                if self._closing.is_set():
                    return
                self._live[id(device)] = (session, device, broker)
            relayed = connect
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
            if relayed is not None:
                self._disconnected(relayed)
            for s in (device, broker):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    # -- persistent sessions ---------------------------------------------------------------------
    def _lifetime(self, connect: Connect) -> float:
        """How long the broker keeps this connection's session after it ends (0: not at all)."""
        if connect.level == 5:
            return min(float(connect.session_expiry), self.session_expiry_s)
        return 0.0 if connect.clean else self.session_expiry_s

    def _disconnected(self, connect: Connect) -> None:
        lifetime = self._lifetime(connect)
        with self._live_lock:
            if lifetime > 0:
                self._ended[connect.client_id] = (time.monotonic(), lifetime)
            else:
                self._ended.pop(connect.client_id, None)

    def _expire(self, connect: Connect) -> None:
        """Before a CONNECT is relayed: end the client's stored session if it outlived its expiry."""
        with self._live_lock:
            ended = self._ended.pop(connect.client_id, None)
        if ended is None or connect.clean or time.monotonic() - ended[0] < ended[1]:
            return  # nothing stored, a clean start discards it anyway, or still within its lifetime
        cid = connect.client_id.encode()
        body = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 10]) + len(cid).to_bytes(2, "big") + cid
        with socket.create_connection(self.upstream, timeout=10) as purge:
            purge.sendall(bytes([CONNECT << 4, len(body)]) + body)
            read_packet(purge.recv)  # CONNACK: the broker discarded the stored session
            purge.sendall(bytes([0xE0, 0]))  # DISCONNECT
        self.expired.append((time.time(), connect.client_id))

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
