"""A fast in-process fake of AWS IoT's control plane for benchmarks at fleet size (10k-1M things).

moto costs about 3 ms per call over HTTP; a first sync of 100k things makes about a million calls.
This fake answers the calls the registry sync makes (`orchestrator/registry/sync`, `snapshot.py`)
in microseconds, with the client surface the sync's `Caller` uses (`client.meta.region_name`,
`meta.service_model.service_name`, `meta.method_to_api_mapping`, one method per boto3 name) and
AWS's rules where they bound cost or correctness:

- paging as AWS pages: a page holds at most 250 items (`maxResults`/`pageSize` above 250 is an
  `InvalidRequestException`, as AWS answers), a listing ends on a page without a continuation token;
- per-API request quotas (`orchestrator.registry.quotas.DEFAULT_QUOTAS`, unlisted APIs at 10/s),
  per region, times `scale` (time scaling: scale 100 runs a 100k-thing floor of 10,000 s in 100 s).
  Each (region, bucket) is a token bucket holding at most 0.2 s of calls (as tests/quota_proxy.py);
  a call that finds it empty is refused with `ThrottlingException`, before it touches any state;
- the errors the sync handles: `ResourceNotFoundException`, `ResourceAlreadyExistsException`
  (CreateThing with the same name and a different configuration; a certificate registered twice),
  `InvalidRequestException` (attaching an unknown principal or to an unknown thing);
- a certificate's id is the SHA-256 of its PEM's DER bytes, as AWS computes it. The fake does not
  parse X.509 (generating a million real certificates would dominate the benchmark): a PEM is a
  base64 block of deterministic bytes. `tests/ops` (moto, real certificates) covers parsing.

`admitted()` gives the calls each (region, bucket) admitted, from which `floor_s()` computes the
quota floor honestly: max over buckets of calls / (quota x scale), the time no client could beat.
An API the sync calls that the fake does not implement raises NotImplementedError (never a silent
empty answer).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from orchestrator.registry.policydoc import normalize_document, rewrite_region
from orchestrator.registry.quotas import DEFAULT_QUOTAS, UNLISTED_RATE, bucket_of

ACCOUNT = "123456789012"
MAX_PAGE = 250
BURST_S = 0.2


@lru_cache(maxsize=1)
def _method_map() -> dict[str, str]:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("iot")
    return {xform_name(op): op for op in model.operation_names}


def _error(code: str, op: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def fake_pem(seed: str) -> str:
    """A PEM block of deterministic bytes (see the module doc: not X.509)."""
    der = hashlib.sha512(seed.encode()).digest() * 4
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def pem_id(pem: str) -> str:
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    return hashlib.sha256(base64.b64decode("".join(body.split()), validate=True)).hexdigest()


class _Buckets:
    """Token buckets per (region, bucket) at quota x scale; counts admitted and refused calls."""

    def __init__(self, scale: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.scale = scale
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, at)
        self.admitted: dict[tuple[str, str], int] = {}
        self.refused: dict[tuple[str, str], int] = {}

    def rate(self, bucket: str) -> float:
        return float(DEFAULT_QUOTAS.get(bucket, UNLISTED_RATE)) * self.scale

    def take(self, region: str, api: str) -> bool:
        key = (region, bucket_of(api))
        rate = self.rate(key[1])
        capacity = max(1.0, rate * BURST_S)
        now = self._clock()
        with self._lock:
            tokens, at = self._state.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * rate)
            if tokens < 1.0:
                self._state[key] = (tokens, now)
                self.refused[key] = self.refused.get(key, 0) + 1
                return False
            self._state[key] = (tokens - 1.0, now)
            self.admitted[key] = self.admitted.get(key, 0) + 1
            return True

    def floor_s(self) -> float:
        return max((n / self.rate(b) for (_r, b), n in self.admitted.items()), default=0.0)

    def bound(self) -> tuple[str, str, int] | None:
        """The (region, bucket, calls) that sets the floor."""
        if not self.admitted:
            return None
        (r, b), n = max(self.admitted.items(), key=lambda kv: kv[1] / self.rate(kv[0][1]))
        return r, b, n


class _Sorted:
    """Keys of a dict in sorted order, rebuilt only when the dict changed since the last listing."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._stamp = -1

    def keys(self, source: Iterable[str], stamp: int) -> list[str]:
        if stamp != self._stamp:
            self._keys = sorted(source)
            self._stamp = stamp
        return self._keys


def _page(keys: list[str], token: str | None, size: int) -> tuple[list[str], str | None]:
    start = bisect_right(keys, token) if token else 0
    chunk = keys[start:start + size]
    more = start + size < len(keys)
    return chunk, (chunk[-1] if more and chunk else None)


@dataclass
class FakeRegion:
    """One region's registry."""

    region: str
    things: dict[str, list[Any]] = field(default_factory=dict)  # name -> [type, attrs, version]
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> parent, desc, attrs
    members: dict[str, dict[str, None]] = field(default_factory=dict)  # group -> things
    certs: dict[str, list[str]] = field(default_factory=dict)  # id -> [status, pem]
    principals: dict[str, dict[str, None]] = field(default_factory=dict)  # thing -> cert arns
    principal_things: dict[str, dict[str, None]] = field(default_factory=dict)  # arn -> things
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> document, versions
    targets: dict[str, dict[str, None]] = field(default_factory=dict)  # policy -> target arns
    stamp: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    _sorted: dict[str, _Sorted] = field(default_factory=dict)

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{ACCOUNT}:{kind}/{name}"

    def sorted_keys(self, what: str, source: dict[str, Any]) -> list[str]:
        return self._sorted.setdefault(what, _Sorted()).keys(source, self.stamp)

    def touch(self) -> None:
        self.stamp += 1


class FakeIot:
    """The fake's world: regions and the quota buckets they share with their clients."""

    def __init__(self, *, scale: float = 1.0) -> None:
        self.buckets = _Buckets(scale)
        self.regions: dict[str, FakeRegion] = {}

    def region(self, name: str) -> FakeRegion:
        return self.regions.setdefault(name, FakeRegion(name))

    def client(self, region: str) -> FakeIotClient:
        return FakeIotClient(self, self.region(region))

    def seed(self, region: str, n: int, *, start: int = 0) -> None:
        """N things as a fleet has them: each with its own ACTIVE certificate attached and the
        device policy on it (every 4th also the telemetry policy), half of a thing type, in one of
        ten groups under a parent (every 2nd also in `beta`), two attributes. Without quotas."""
        r = self.region(region)
        with r.lock:
            r.types.setdefault("sensor", {"description": "a sensor", "searchable": ["site"], "deprecated": False})
            r.groups.setdefault("fleet", {"parent": None, "description": "all devices", "attributes": {}})
            r.members.setdefault("fleet", {})
            for g in [f"fleet-{k}" for k in range(10)] + ["beta"]:
                r.groups.setdefault(g, {"parent": "fleet" if g != "beta" else None, "description": None,
                                        "attributes": {"tier": g}})
                r.members.setdefault(g, {})
            for p in ("device", "telemetry"):
                r.policies.setdefault(p, {"document": json.dumps({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"arn:aws:iot:*:*:client/{p}-*"}]}),
                    "versions": {"1": None}, "default": "1"})
                r.targets.setdefault(p, {})
            for i in range(start, start + n):
                name = f"dev-{i:07d}"
                r.things[name] = ["sensor" if i % 2 else None, {"site": f"s{i % 97}", "batch": str(i // 1000)}, 1]
                pem = fake_pem(f"{region}/{name}")
                cid = pem_id(pem)
                r.certs[cid] = ["ACTIVE", pem]
                arn = r.arn("cert", cid)
                r.principals[name] = {arn: None}
                r.principal_things[arn] = {name: None}
                r.members[f"fleet-{i % 10}"][name] = None
                if i % 2 == 0:
                    r.members["beta"][name] = None
                r.targets["device"][arn] = None
                if i % 4 == 0:
                    r.targets["telemetry"][arn] = None
            r.touch()

    def seed_synced(self, source: str, dest: str) -> None:
        """`dest` as a first sync from `source` leaves it, without the sync's calls: the same things
        (type, attributes, version 1 as CreateThing gives), thing types, groups and their members,
        certificates under the same ids, statuses and PEMs (RegisterCertificateWithoutCA computes the
        id from the PEM), the same policies (one version, as CreatePolicy makes; the document as the sync sends it:
        normalized JSON, source-region ARNs moved to `dest`) and the same
        attachments, every ARN in `dest`'s region. Without quotas; `dest` must be empty.
        tests/orchestrator/test_bench_registry_seeded.py checks it against a real first sync."""
        s, d = self.region(source), self.region(dest)
        with s.lock, d.lock:
            if d.things or d.certs or d.groups or d.policies or d.types:
                raise ValueError(f"seed_synced: {dest} is not empty")
            old, new = f"arn:aws:iot:{source}:", f"arn:aws:iot:{dest}:"

            def arn(a: str) -> str:
                return new + a[len(old):] if a.startswith(old) else a

            for name, (ttype, attrs, _version) in s.things.items():
                d.things[name] = [ttype, dict(attrs), 1]
            for name, t in s.types.items():
                d.types[name] = {"description": t["description"], "searchable": list(t["searchable"]),
                                 "deprecated": t["deprecated"]}
            for name, g in s.groups.items():
                d.groups[name] = {"parent": g["parent"], "description": g["description"],
                                  "attributes": dict(g["attributes"])}
            for name, m in s.members.items():
                d.members[name] = dict(m)
            for cid, (status, pem) in s.certs.items():
                d.certs[cid] = [status, pem]
            for thing, arns in s.principals.items():
                d.principals[thing] = {arn(a): None for a in arns}
            for a, things in s.principal_things.items():
                d.principal_things[arn(a)] = dict(things)
            for name, p in s.policies.items():  # the sync writes the document normalized, ARNs moved
                document = rewrite_region(normalize_document(p["document"]), source, dest)[0]
                d.policies[name] = {"document": document, "versions": {"1": None}, "default": "1"}
            for name, targets in s.targets.items():
                d.targets[name] = {arn(a): None for a in targets}
            d.touch()


class _Meta:
    def __init__(self, region: str) -> None:
        self.region_name = region
        self.service_model = type("ServiceModel", (), {"service_name": "iot"})()
        self.method_to_api_mapping = _method_map()


class FakeIotClient:
    """A boto3 `iot` client's surface over one FakeRegion; every call draws from its quota bucket."""

    def __init__(self, world: FakeIot, region: FakeRegion) -> None:
        self._world = world
        self._r = region
        self.meta = _Meta(region.region)

    def __getattr__(self, api: str) -> Callable[..., Any]:
        handler = getattr(type(self), f"_{api}", None)
        if api.startswith("_") or api not in _method_map():
            raise AttributeError(api)
        if handler is None:
            raise NotImplementedError(f"bench/fake_iot.py does not implement {api}")
        op = _method_map()[api]

        def call(**kwargs: Any) -> Any:
            if not self._world.buckets.take(self._r.region, api):
                raise _error("ThrottlingException", op, "Rate exceeded")
            with self._r.lock:
                return handler(self, op, **kwargs)

        return call

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _size(op: str, value: Any) -> int:
        size = MAX_PAGE if value is None else int(value)
        if not 1 <= size <= MAX_PAGE:
            raise _error("InvalidRequestException", op, f"page size {size} is not within 1-{MAX_PAGE}")
        return size

    def _listing(self, op: str, what: str, source: dict[str, Any], size: Any, token: str | None
                 ) -> tuple[list[str], str | None]:
        return _page(self._r.sorted_keys(what, source), token, self._size(op, size))

    def _thing_or_404(self, op: str, name: str) -> list[Any]:
        t = self._r.things.get(name)
        if t is None:
            raise _error("ResourceNotFoundException", op, f"thing {name} not found", 404)
        return t

    # -- things ---------------------------------------------------------------------------------
    def _list_things(self, op: str, maxResults: int | None = None, nextToken: str | None = None) -> Any:
        r = self._r
        names, token = self._listing(op, "things", r.things, maxResults, nextToken)
        out = []
        for n in names:
            ttype, attrs, version = r.things[n]
            item = {"thingName": n, "thingArn": r.arn("thing", n), "attributes": dict(attrs), "version": version}
            if ttype:
                item["thingTypeName"] = ttype
            out.append(item)
        return {"things": out, **({"nextToken": token} if token else {})}

    def _create_thing(self, op: str, thingName: str, thingTypeName: str | None = None,
                      attributePayload: dict[str, Any] | None = None) -> Any:
        r = self._r
        attrs = dict((attributePayload or {}).get("attributes") or {})
        if thingTypeName is not None and thingTypeName not in r.types:
            raise _error("ResourceNotFoundException", op, f"thing type {thingTypeName} not found", 404)
        have = r.things.get(thingName)
        if have is not None:
            if have[0] != thingTypeName or have[1] != attrs:
                raise _error("ResourceAlreadyExistsException", op, f"thing {thingName} already exists", 409)
        else:
            r.things[thingName] = [thingTypeName, attrs, 1]
            r.touch()
        return {"thingName": thingName, "thingArn": r.arn("thing", thingName), "thingId": thingName}

    def _update_thing(self, op: str, thingName: str, thingTypeName: str | None = None,
                      attributePayload: dict[str, Any] | None = None, removeThingType: bool = False,
                      expectedVersion: int | None = None) -> Any:
        t = self._thing_or_404(op, thingName)
        if thingTypeName is not None:
            t[0] = thingTypeName
        elif removeThingType:
            t[0] = None
        if attributePayload is not None:
            attrs = dict(attributePayload.get("attributes") or {})
            if attributePayload.get("merge"):
                t[1].update(attrs)
            else:
                t[1] = attrs
        t[2] += 1
        return {}

    def _delete_thing(self, op: str, thingName: str, expectedVersion: int | None = None) -> Any:
        r = self._r
        if thingName in r.things:
            if r.principals.get(thingName):
                raise _error("InvalidRequestException", op, "thing has principals attached")
            del r.things[thingName]
            r.principals.pop(thingName, None)
            for m in r.members.values():
                m.pop(thingName, None)
            r.touch()
        return {}

    def _describe_thing(self, op: str, thingName: str) -> Any:
        ttype, attrs, version = self._thing_or_404(op, thingName)
        out = {"thingName": thingName, "thingArn": self._r.arn("thing", thingName), "attributes": dict(attrs),
               "version": version}
        if ttype:
            out["thingTypeName"] = ttype
        return out

    # -- thing types ----------------------------------------------------------------------------
    def _list_thing_types(self, op: str, maxResults: int | None = None, nextToken: str | None = None) -> Any:
        r = self._r
        names, token = self._listing(op, "types", r.types, maxResults, nextToken)
        out = []
        for n in names:
            t = r.types[n]
            props: dict[str, Any] = {"searchableAttributes": list(t["searchable"])}
            if t["description"]:
                props["thingTypeDescription"] = t["description"]
            out.append({"thingTypeName": n, "thingTypeArn": r.arn("thingtype", n), "thingTypeProperties": props,
                        "thingTypeMetadata": {"deprecated": t["deprecated"]}})
        return {"thingTypes": out, **({"nextToken": token} if token else {})}

    def _create_thing_type(self, op: str, thingTypeName: str, thingTypeProperties: dict[str, Any] | None = None,
                           tags: Any = None) -> Any:
        r = self._r
        props = thingTypeProperties or {}
        if thingTypeName in r.types:
            raise _error("ResourceAlreadyExistsException", op, f"thing type {thingTypeName} exists", 409)
        r.types[thingTypeName] = {"description": props.get("thingTypeDescription"),
                                  "searchable": list(props.get("searchableAttributes") or []), "deprecated": False}
        r.touch()
        return {"thingTypeName": thingTypeName, "thingTypeArn": r.arn("thingtype", thingTypeName)}

    # -- groups ---------------------------------------------------------------------------------
    def _list_thing_groups(self, op: str, maxResults: int | None = None, nextToken: str | None = None,
                           **_: Any) -> Any:
        r = self._r
        names, token = self._listing(op, "groups", r.groups, maxResults, nextToken)
        return {"thingGroups": [{"groupName": n, "groupArn": r.arn("thinggroup", n)} for n in names],
                **({"nextToken": token} if token else {})}

    def _describe_thing_group(self, op: str, thingGroupName: str) -> Any:
        r = self._r
        g = r.groups.get(thingGroupName)
        if g is None:
            raise _error("ResourceNotFoundException", op, f"group {thingGroupName} not found", 404)
        props: dict[str, Any] = {"attributePayload": {"attributes": dict(g["attributes"])}}
        if g["description"]:
            props["thingGroupDescription"] = g["description"]
        meta: dict[str, Any] = {"parentGroupName": g["parent"]} if g["parent"] else {}
        return {"thingGroupName": thingGroupName, "thingGroupArn": r.arn("thinggroup", thingGroupName),
                "thingGroupId": thingGroupName, "version": 1, "thingGroupProperties": props,
                "thingGroupMetadata": meta}

    def _create_thing_group(self, op: str, thingGroupName: str, parentGroupName: str | None = None,
                            thingGroupProperties: dict[str, Any] | None = None, tags: Any = None) -> Any:
        r = self._r
        props = thingGroupProperties or {}
        if parentGroupName is not None and parentGroupName not in r.groups:
            raise _error("ResourceNotFoundException", op, f"parent group {parentGroupName} not found", 404)
        if thingGroupName not in r.groups:
            r.groups[thingGroupName] = {"parent": parentGroupName, "description": props.get("thingGroupDescription"),
                                        "attributes": dict((props.get("attributePayload") or {}).get("attributes")
                                                           or {})}
            r.members[thingGroupName] = {}
            r.touch()
        return {"thingGroupName": thingGroupName, "thingGroupArn": r.arn("thinggroup", thingGroupName),
                "thingGroupId": thingGroupName}

    def _list_things_in_thing_group(self, op: str, thingGroupName: str, maxResults: int | None = None,
                                    nextToken: str | None = None, recursive: bool = False) -> Any:
        r = self._r
        if thingGroupName not in r.groups:
            raise _error("ResourceNotFoundException", op, f"group {thingGroupName} not found", 404)
        names, token = self._listing(op, f"members/{thingGroupName}", r.members[thingGroupName], maxResults,
                                     nextToken)
        return {"things": names, **({"nextToken": token} if token else {})}

    def _add_thing_to_thing_group(self, op: str, thingGroupName: str, thingName: str, **_: Any) -> Any:
        r = self._r
        if thingGroupName not in r.groups:
            raise _error("ResourceNotFoundException", op, f"group {thingGroupName} not found", 404)
        self._thing_or_404(op, thingName)
        if thingName not in r.members[thingGroupName]:
            r.members[thingGroupName][thingName] = None
            r.touch()
        return {}

    def _remove_thing_from_thing_group(self, op: str, thingGroupName: str, thingName: str, **_: Any) -> Any:
        r = self._r
        if thingGroupName not in r.groups:
            raise _error("ResourceNotFoundException", op, f"group {thingGroupName} not found", 404)
        if r.members[thingGroupName].pop(thingName, 0) is None:
            r.touch()
        return {}

    def _list_thing_groups_for_thing(self, op: str, thingName: str, maxResults: int | None = None,
                                     nextToken: str | None = None) -> Any:
        r = self._r
        self._thing_or_404(op, thingName)
        names = sorted(g for g, m in r.members.items() if thingName in m)
        chunk, token = _page(names, nextToken, self._size(op, maxResults))
        return {"thingGroups": [{"groupName": g, "groupArn": r.arn("thinggroup", g)} for g in chunk],
                **({"nextToken": token} if token else {})}

    # -- certificates ---------------------------------------------------------------------------
    def _list_certificates(self, op: str, pageSize: int | None = None, marker: str | None = None,
                           ascendingOrder: bool = False) -> Any:
        r = self._r
        ids, token = self._listing(op, "certs", r.certs, pageSize, marker)
        return {"certificates": [{"certificateId": c, "certificateArn": r.arn("cert", c), "status": r.certs[c][0],
                                  "certificateMode": "SNI_ONLY"} for c in ids],
                **({"nextMarker": token} if token else {})}

    def _describe_certificate(self, op: str, certificateId: str) -> Any:
        r = self._r
        c = r.certs.get(certificateId)
        if c is None:
            raise _error("ResourceNotFoundException", op, f"certificate {certificateId} not found", 404)
        return {"certificateDescription": {"certificateId": certificateId,
                                           "certificateArn": r.arn("cert", certificateId), "status": c[0],
                                           "certificatePem": c[1], "certificateMode": "SNI_ONLY"}}

    def _register_certificate_without_ca(self, op: str, certificatePem: str, status: str = "INACTIVE") -> Any:
        r = self._r
        try:
            cid = pem_id(certificatePem)
        except (IndexError, ValueError):
            raise _error("CertificateValidationException", op, "not a PEM certificate") from None
        if cid in r.certs:
            raise _error("ResourceAlreadyExistsException", op, f"certificate {cid} exists", 409)
        r.certs[cid] = [status, certificatePem]
        r.touch()
        return {"certificateId": cid, "certificateArn": r.arn("cert", cid)}

    def _update_certificate(self, op: str, certificateId: str, newStatus: str) -> Any:
        c = self._r.certs.get(certificateId)
        if c is None:
            raise _error("ResourceNotFoundException", op, f"certificate {certificateId} not found", 404)
        c[0] = newStatus
        return {}

    # -- principals -----------------------------------------------------------------------------
    def _list_thing_principals(self, op: str, thingName: str, maxResults: int | None = None,
                               nextToken: str | None = None) -> Any:
        self._thing_or_404(op, thingName)
        arns = sorted(self._r.principals.get(thingName, {}))
        chunk, token = _page(arns, nextToken, self._size(op, maxResults))
        return {"principals": chunk, **({"nextToken": token} if token else {})}

    def _list_principal_things(self, op: str, principal: str, maxResults: int | None = None,
                               nextToken: str | None = None) -> Any:
        things = sorted(self._r.principal_things.get(principal, {}))
        chunk, token = _page(things, nextToken, self._size(op, maxResults))
        return {"things": chunk, **({"nextToken": token} if token else {})}

    def _cert_of(self, op: str, arn: str) -> str:
        cid = arn.rsplit(":cert/", 1)[1] if ":cert/" in arn else ""
        if cid not in self._r.certs:
            raise _error("ResourceNotFoundException", op, f"principal {arn} not found", 404)
        return cid

    def _attach_thing_principal(self, op: str, thingName: str, principal: str, **_: Any) -> Any:
        r = self._r
        self._thing_or_404(op, thingName)
        self._cert_of(op, principal)
        r.principals.setdefault(thingName, {})[principal] = None
        r.principal_things.setdefault(principal, {})[thingName] = None
        return {}

    def _detach_thing_principal(self, op: str, thingName: str, principal: str) -> Any:
        r = self._r
        self._thing_or_404(op, thingName)
        r.principals.get(thingName, {}).pop(principal, None)
        r.principal_things.get(principal, {}).pop(thingName, None)
        return {}

    # -- policies -------------------------------------------------------------------------------
    def _policy_or_404(self, op: str, name: str) -> dict[str, Any]:
        p = self._r.policies.get(name)
        if p is None:
            raise _error("ResourceNotFoundException", op, f"policy {name} not found", 404)
        return p

    def _list_policies(self, op: str, pageSize: int | None = None, marker: str | None = None,
                       ascendingOrder: bool = False) -> Any:
        r = self._r
        names, token = self._listing(op, "policies", r.policies, pageSize, marker)
        return {"policies": [{"policyName": n, "policyArn": r.arn("policy", n)} for n in names],
                **({"nextMarker": token} if token else {})}

    def _get_policy(self, op: str, policyName: str) -> Any:
        p = self._policy_or_404(op, policyName)
        return {"policyName": policyName, "policyArn": self._r.arn("policy", policyName),
                "policyDocument": p["document"], "defaultVersionId": p["default"]}

    def _list_policy_versions(self, op: str, policyName: str) -> Any:
        p = self._policy_or_404(op, policyName)
        return {"policyVersions": [{"versionId": v, "isDefaultVersion": v == p["default"]} for v in p["versions"]]}

    def _get_policy_version(self, op: str, policyName: str, policyVersionId: str) -> Any:
        p = self._policy_or_404(op, policyName)
        if policyVersionId not in p["versions"]:
            raise _error("ResourceNotFoundException", op, f"version {policyVersionId} not found", 404)
        doc = p["document"] if policyVersionId == p["default"] else p["versions"][policyVersionId]
        return {"policyName": policyName, "policyVersionId": policyVersionId, "policyDocument": doc,
                "isDefaultVersion": policyVersionId == p["default"]}

    def _create_policy(self, op: str, policyName: str, policyDocument: str, tags: Any = None) -> Any:
        r = self._r
        if policyName in r.policies:
            raise _error("ResourceAlreadyExistsException", op, f"policy {policyName} exists", 409)
        r.policies[policyName] = {"document": policyDocument, "versions": {"1": None}, "default": "1"}
        r.targets[policyName] = {}
        r.touch()
        return {"policyName": policyName, "policyArn": r.arn("policy", policyName), "policyVersionId": "1"}

    def _list_targets_for_policy(self, op: str, policyName: str, pageSize: int | None = None,
                                 marker: str | None = None) -> Any:
        r = self._r
        self._policy_or_404(op, policyName)
        arns, token = self._listing(op, f"targets/{policyName}", r.targets[policyName], pageSize, marker)
        return {"targets": arns, **({"nextMarker": token} if token else {})}

    def _attach_policy(self, op: str, policyName: str, target: str) -> Any:
        r = self._r
        self._policy_or_404(op, policyName)
        if ":cert/" in target:
            self._cert_of(op, target)
        elif ":thinggroup/" in target:
            if target.rsplit("/", 1)[1] not in r.groups:
                raise _error("ResourceNotFoundException", op, f"target {target} not found", 404)
        else:
            raise _error("InvalidRequestException", op, f"target {target} is not a principal or group")
        if target not in r.targets[policyName]:
            r.targets[policyName][target] = None
            r.touch()
        return {}

    def _detach_policy(self, op: str, policyName: str, target: str) -> Any:
        r = self._r
        self._policy_or_404(op, policyName)
        if r.targets[policyName].pop(target, 0) is None:
            r.touch()
        return {}
