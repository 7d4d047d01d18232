"""A small but complete IoT registry, seeded through the real API, and tools to watch clients.

The world has every shape the sync must carry: thing types (one with searchable attributes,
one deprecated after its thing was made), a three-level group hierarchy plus a flat group,
things with and without types, attributes and memberships, real X.509 certificates (ACTIVE,
INACTIVE, REVOKED, one not attached to anything), a region-neutral policy, a policy that names
the source region in an ARN, and a policy attached to a thing group.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.httpsession import URLLib3Session

from orchestrator.registry import Checkpoint


@lru_cache(maxsize=1)
def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())  # throwaway, never written anywhere


def make_pem(common_name: str, serial: int) -> str:
    """A real self-signed device certificate (public part only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(_key().public_key()).serial_number(serial)
            .not_valid_before(now).not_valid_after(now + timedelta(days=3650))
            .sign(_key(), hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def device_policy() -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:*:*:topic/things/${iot:Connection.Thing.ThingName}/*"},
        ],
    })


def pinned_policy(region: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
                       "Resource": [f"arn:aws:iot:{region}:123456789012:topic/telemetry/*"],
                       "Condition": {"StringEquals": {"aws:RequestedRegion": region}}}],
    })


def thing_name(i: int) -> str:
    return f"dev-{i:04d}"


@dataclass
class World:
    region: str
    things: list[str] = field(default_factory=list)
    cert_ids: dict[str, str] = field(default_factory=dict)  # thing -> certificate id
    spare_cert_id: str = ""


def seed(iot: Any, n_things: int = 12, *, pinned_every: int = 4, statuses: bool = True,
         group_policy: bool = True, workers: int = 1) -> World:
    """Seed a region. `workers` > 1 seeds the per-thing part on a thread pool (benchmarks).

    `group_policy=False` leaves out the policy attached to a thing group: moto 5.2.5 answers
    DeleteCertificate with a 500 while any policy in the region targets a thing group."""
    region = iot.meta.region_name
    world = World(region)
    iot.create_thing_type(thingTypeName="sensor", thingTypeProperties={
        "thingTypeDescription": "temperature sensor", "searchableAttributes": ["model"]})
    iot.create_thing_type(thingTypeName="gateway")
    iot.create_thing_type(thingTypeName="legacy", thingTypeProperties={"thingTypeDescription": "old"})
    iot.create_thing_group(thingGroupName="fleet", thingGroupProperties={
        "thingGroupDescription": "all devices", "attributePayload": {"attributes": {"tier": "all"}}})
    iot.create_thing_group(thingGroupName="fleet-eu", parentGroupName="fleet")
    iot.create_thing_group(thingGroupName="fleet-eu-west", parentGroupName="fleet-eu",
                           thingGroupProperties={"attributePayload": {"attributes": {"site": "dub"}}})
    ops = iot.create_thing_group(thingGroupName="ops")
    iot.create_policy(policyName="device", policyDocument=device_policy())
    iot.create_policy(policyName="telemetry-pinned", policyDocument=pinned_policy(region))
    iot.create_policy(policyName="ops-policy", policyDocument=device_policy())
    if group_policy:
        iot.attach_policy(policyName="ops-policy", target=ops["thingGroupArn"])

    def one(i: int) -> tuple[str, str]:
        name = thing_name(i)
        kwargs: dict[str, Any] = {"thingName": name,
                                  "attributePayload": {"attributes": {"serial": str(i), "model": "m1"}}}
        if i % 5 != 4:
            kwargs["thingTypeName"] = "sensor" if i % 2 == 0 else "gateway"
        iot.create_thing(**kwargs)
        iot.add_thing_to_thing_group(thingGroupName="fleet-eu-west" if i % 2 == 0 else "fleet-eu",
                                     thingName=name)
        if i % 3 == 0:
            iot.add_thing_to_thing_group(thingGroupName="ops", thingName=name)
        status = "ACTIVE"
        if statuses and i == 1:
            status = "INACTIVE"
        elif statuses and i == 2:
            status = "REVOKED"
        cert = iot.register_certificate_without_ca(certificatePem=make_pem(name, 1000 + i), status=status)
        iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
        iot.attach_policy(policyName="device", target=cert["certificateArn"])
        if pinned_every and i % pinned_every == 0:
            iot.attach_policy(policyName="telemetry-pinned", target=cert["certificateArn"])
        return name, cert["certificateId"]

    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, range(n_things)))
    else:
        results = [one(i) for i in range(n_things)]
    for name, cert_id in results:
        world.things.append(name)
        world.cert_ids[name] = cert_id

    iot.create_thing(thingName="old-0001", thingTypeName="legacy")
    iot.deprecate_thing_type(thingTypeName="legacy", undoDeprecate=False)
    spare = iot.register_certificate_without_ca(certificatePem=make_pem("spare", 9), status="ACTIVE")
    world.spare_cert_id = spare["certificateId"]
    return world


# -- watching clients --------------------------------------------------------------------------

_READ = ("List", "Describe", "Get")


class CallLog:
    """Counts the API calls a client makes (every attempt: botocore `before-call`)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.iot", self._seen)

    def _seen(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self.calls[event_name.rsplit(".", 1)[-1]] += 1

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.calls.items() if not op.startswith(_READ))

    def write_ops(self) -> Counter[str]:
        return Counter({op: n for op, n in self.calls.items() if not op.startswith(_READ)})

    def reset(self) -> None:
        self.calls.clear()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._body


class FaultInjector:
    """Fails a fixed, seeded fraction of a client's requests before they reach moto: throttling
    (400 ThrottlingException, 429 TooManyRequestsException), 503 ServiceUnavailable, and, for
    writes, "applied but lost" (forwarded to moto, then answered with a 500). The extra faults
    "invalid" (400 InvalidRequestException) and "unauthorized" (401) are not retryable."""

    FAULTS = ("throttle", "too-many", "unavailable", "applied-then-500")

    def __init__(self, client: Any, *, rate: float, seed: int, only: Iterable[str] | None = None,
                 faults: Iterable[str] = FAULTS) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.only = set(only) if only is not None else None
        self.faults = tuple(faults)
        self.enabled = True
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._http = URLLib3Session()
        client.meta.events.register("before-send.iot", self._maybe_fail)

    def _maybe_fail(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        op = event_name.rsplit(".", 1)[-1]
        if not self.enabled or (self.only is not None and op not in self.only):
            return None
        with self._lock:
            if self.rng.random() >= self.rate:
                return None
            fault = self.rng.choice(self.faults)
            if fault == "applied-then-500" and op.startswith(_READ):
                fault = "unavailable"
            self.injected[fault] += 1
        if fault == "throttle":
            return self._error(request, 400, "ThrottlingException", "Rate exceeded")
        if fault == "too-many":
            return self._error(request, 429, "TooManyRequestsException", "Too Many Requests")
        if fault == "unavailable":
            return self._error(request, 503, "ServiceUnavailableException", "Service unavailable")
        if fault == "invalid":  # not retryable: the operation is refused
            return self._error(request, 400, "InvalidRequestException", "refused by the test")
        if fault == "unauthorized":  # not retryable, and no other call will do better
            return self._error(request, 401, "UnauthorizedException", "not authorized by the test")
        self._http.send(request)  # the write happens ...
        return self._error(request, 500, "InternalFailureException", "lost")  # ... the answer does not

    @staticmethod
    def _error(request: Any, status: int, code: str, message: str) -> AWSResponse:
        body = json.dumps({"message": message}).encode()
        headers = {"x-amzn-ErrorType": f"{code}:", "Content-Type": "application/json",
                   "x-amzn-RequestId": "fault-injected"}
        return AWSResponse(request.url, status, headers, _Raw(body))

    @property
    def total(self) -> int:
        return sum(self.injected.values())


def listing(client: Any) -> dict[str, Any]:
    """Everything a registry holds, in a comparable form (two regions in sync list the same)."""
    from orchestrator.registry import read_snapshot

    return read_snapshot(client).listing()


# -- a process that dies mid-apply (the resume tests) ----------------------------------------------
class SimulatedCrash(BaseException):
    """Like SIGKILL for our purposes: not an Exception, nothing handles it."""


class HardCrashCheckpoint(Checkpoint):
    """Loses everything not yet flushed when the process 'dies' (no final flush)."""

    dead = False

    def flush(self) -> None:
        if not self.dead:
            super().flush()
