"""Each region's IoT Core endpoint in the local world: the authorising front door on the region's
TLS port, in front of that region's mosquitto.

Every device connection of `drill --local` (the devices through their resolver and tunnel, the MQTT
canary, the drill's own probes) reaches `RegionDoor`, never mosquitto: TLS ends here with the custom
domain's certificate, mutual TLS trusting only the certificates registered in the region
(`broker.TrustStore`'s directory, followed while the door runs), then `authfront.AuthorisingFront`
asks `iotpolicy.Authoriser` about each CONNECT (certificate status, SNI, client id), PUBLISH,
SUBSCRIBE and delivery against the policies attached in THIS region's registry, and relays what is
allowed to mosquitto's plain listener. A sync that missed an AttachPolicy therefore locks the device
out of the secondary, as IoT Core would.

Certificate status (IoT Developer Guide, "UpdateCertificate": deactivating or revoking a certificate
disconnects the devices using it): the door's watch lists the region's certificates every
`WATCH_S` and closes each open connection whose certificate is no longer ACTIVE; its next CONNECT is
refused (CONNACK "not authorized"). The same listing answers the authoriser's per-packet status
checks, so a publish costs no registry call.

Policy changes (IoT Developer Guide, "AWS IoT Core policies": IoT caches policy documents and a
change takes 6 to 8 minutes to become effective): the watch re-reads the attached policies of each
open connection once its copy is `POLICY_CACHE_S` old (times the drill's time scale), so a policy
detached or narrowed while a device is connected refuses its next publish, subscribe or delivery
no later than AWS would. A policy granted (attached, or a wider default version) is cached the same
way: the door's authoriser keeps the view it read before the grant bounding every decision for
`POLICY_GRANT_S` (8 minutes, the page's upper end, times the time scale) after it first saw the
change, for open connections and new CONNECTs alike, so a grant is never effective sooner than
IoT Core may make it.

`stop` is the region's outage: the TLS port refuses (so the Route 53 TCP health checks see it) and
every open connection is cut; the drill stops the door with the region's broker and starts a new one
when the broker comes back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestrator.drill.world.authfront import CONNACK, CONNECT, PERSISTENT_SESSION_S, AuthorisingFront, read_packet
from orchestrator.drill.world.broker import TrustStore
from orchestrator.drill.world.iotpolicy import Authoriser, Session

WATCH_S = 0.5  # IoT Core disconnects at once; the local world within a second
STATUS_MAX_AGE_S = 1.0  # a per-packet status answer is never older than this
# IoT Developer Guide, "AWS IoT Core policies": "Changes made to a policy can take anywhere between 6
# and 8 minutes to become effective because of how AWS IoT caches the policy documents ... a resource
# may be accessible for several minutes after its access has been revoked". An open connection's
# policies are re-read once its copy is 6 minutes old (on the drill's time scale): a revoked grant
# stops no later than AWS's earliest.
POLICY_CACHE_S = 360.0
# The same page: "it may take a few minutes to access a resource that has recently been granted
# access". A grant is not effective at the door before 8 minutes (the upper end: the strictest
# reading) after the door first read it, at CONNECT or when an open connection's copy is re-read.
POLICY_GRANT_S = 480.0


class RegionDoor:
    """One region's front door: listens on (address, port) and relays to `upstream` (mosquitto's
    plain listener of the same region)."""

    def __init__(self, region: str, address: str, port: int, upstream: tuple[str, int], *, domain: str,
                 cert_file: Path, key_file: Path, trust: TrustStore, iot: Any, account: str,
                 time_scale: float = 1.0) -> None:
        self.region = region
        self.time_scale = time_scale
        self.policy_cache_s = POLICY_CACHE_S * time_scale  # how old an open connection's policies may get
        self.address, self.port, self.upstream = address, port, upstream
        self.domain = domain
        self.cert_file, self.key_file = cert_file, key_file
        self.trust, self.iot, self.account = trust, iot, account
        self.front: AuthorisingFront | None = None
        self.closed_on_status: list[tuple[float, str]] = []  # (time, certificate id) cut by the watch
        self._statuses: dict[str, str] = {}
        self._read_at = float("-inf")
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- certificate status ------------------------------------------------------------------------
    def read_statuses(self) -> dict[str, str]:
        """Every certificate of the region and its status (ListCertificates, all pages)."""
        out: dict[str, str] = {}
        for page in self.iot.get_paginator("list_certificates").paginate(PaginationConfig={"PageSize": 250}):
            for c in page.get("certificates", []):
                out[str(c["certificateId"])] = str(c.get("status"))
        return out

    def status_of(self, certificate_id: str) -> str | None:
        """The status from the watch's last listing; None (the authoriser asks the registry) when that
        is too old or does not name the certificate: a certificate registered after the listing was
        read has connected (its CONNECT read the registry) and must not be refused as unknown."""
        if time.monotonic() - self._read_at > STATUS_MAX_AGE_S:
            return None
        return self._statuses.get(certificate_id)

    def _gone(self, certificate_id: str, statuses: dict[str, str]) -> str | None:
        """Why an open connection of this certificate must be closed (its status), or None. A
        certificate the listing does not name is asked about once (DescribeCertificate): it may have
        been registered, and its device connected, after the listing was read."""
        status = statuses.get(certificate_id)
        if status is None:
            try:
                status = str(self.iot.describe_certificate(certificateId=certificate_id)[
                    "certificateDescription"].get("status"))
            except Exception as exc:  # noqa: BLE001 - only a certificate IoT does not know is closed
                status = "NOT_REGISTERED" if "ResourceNotFound" in str(exc) else "ACTIVE"
        return None if status == "ACTIVE" else status

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            try:
                statuses = self.read_statuses()
            except Exception:  # noqa: BLE001 - an unreadable registry closes nothing; the next round retries
                continue
            self._statuses, self._read_at = statuses, time.monotonic()
            front = self.front
            if front is None:
                continue
            front.refresh_policies(self.policy_cache_s)
            doomed = {cid: status for cid in {s.certificate_id for s in front.live()}
                      if (status := self._gone(cid, statuses)) is not None}
            for cid, status in sorted(doomed.items()):
                if front.close_where(_of_certificate(cid), f"certificate {cid} is {status}"):
                    self.closed_on_status.append((time.time(), cid))

    # -- lifecycle ---------------------------------------------------------------------------------
    def context(self) -> ssl.SSLContext:
        """TLS as IoT Core's data endpoint: 1.2 or later, the domain's certificate, a client
        certificate registered in this region required (looked up in the trust directory at each
        handshake, so a certificate synced while the door runs is trusted from its next connection)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.trust.directory.mkdir(parents=True, exist_ok=True)
        ctx.load_verify_locations(capath=str(self.trust.directory))
        return ctx

    def start(self) -> RegionDoor:
        self._stop.clear()
        authoriser = Authoriser(self.iot, self.region, self.account, custom_domain=self.domain,
                                status_of=self.status_of, grant_delay_s=POLICY_GRANT_S * self.time_scale)
        self.front = AuthorisingFront(authoriser, self.context(), self.address, self.port, self.upstream,
                                      identify=self.trust.identify,
                                      session_expiry_s=PERSISTENT_SESSION_S * self.time_scale).start()
        self.port = self.front.port
        self._watcher = threading.Thread(target=self._watch, name=f"drill-door-{self.region}", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.front is not None:
            self.front.stop()
        if self._watcher is not None:
            self._watcher.join(5)
            self._watcher = None

    @property
    def refusals(self) -> list[str]:
        return self.front.refusals if self.front is not None else []


def _of_certificate(certificate_id: str) -> Callable[[Session], bool]:
    return lambda session: session.certificate_id == certificate_id


@contextlib.contextmanager
def client_context(ca_pem: str, cert_pem: str, key_pem: str) -> Iterator[ssl.SSLContext]:
    """A device's TLS client context (server verified against the local CA, its own certificate)."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        with open(cert, "w") as f:
            f.write(cert_pem)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)
    yield ctx


def connect_verdict(address: str, port: int, domain: str, client_id: str, tls: ssl.SSLContext,
                    timeout: float = 5.0) -> str:
    """What a region answers a device's CONNECT (MQTT 3.1.1, clean session, the domain as SNI):
    `accepted`, `refused: not authorized` (CONNACK 5), `refused at the TLS handshake`, or
    `unreachable: ...`."""
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        return f"unreachable: {exc}"
    try:
        try:
            sock = tls.wrap_socket(raw, server_hostname=domain)
        except (ssl.SSLError, ConnectionError):
            return "refused at the TLS handshake"
        cid = client_id.encode()
        body = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 30]) + len(cid).to_bytes(2, "big") + cid
        try:
            sock.sendall(bytes([CONNECT << 4, len(body)]) + body)
            packet = read_packet(sock.recv)
        except (ssl.SSLError, ConnectionError):
            return "refused at the TLS handshake"  # TLS 1.3: a refused client certificate shows here
        if packet is None or packet[0] >> 4 != CONNACK or len(packet) < 4:
            return "refused: connection closed before CONNACK"
        code = packet[3]
        if code == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            return "accepted"
        return "refused: not authorized" if code == 5 else f"refused: CONNACK return code {code}"
    except OSError as exc:
        return f"unreachable: {exc}"
    finally:
        raw.close()


__all__ = ["RegionDoor", "client_context", "connect_verdict"]
