"""Registry sync: a pure plan (what to change in the destination) and its idempotent application.

`plan_sync(src, dst, prune)` compares two snapshots and lists operations per kind, each with the
operations it depends on:

    creates/updates  thing types -> thing groups (parents first) -> policies -> certificates ->
                     things -> group membership -> thing<->certificate -> policy<->principal ->
                     deprecation of thing types (after the things that use them exist)
    deletions        the reverse, and only with `prune`: nothing in the destination is removed,
                     detached or taken out of a group without it.

Certificates are registered with `RegisterCertificateWithoutCA` and the *same PEM*, so the
certificate id is the same in both regions and devices keep their credentials. Registered
without a CA they are SNI_ONLY in the destination: devices must send SNI. Statuses ACTIVE,
INACTIVE and REVOKED are copied; a certificate REVOKED in the destination is never re-activated
by a sync (that is a security decision, not replication); PENDING_TRANSFER certificates are
skipped; PENDING_ACTIVATION / REGISTER_INACTIVE become INACTIVE.

`apply_sync` runs the plan against the destination: dependencies first, optionally on a small
thread pool whose dispatcher interleaves different APIs (each has its own rate limit, so four
workers on four APIs go four times as fast as four workers on one), every call through
`Caller` (rate limit, backoff, counting), and every operation idempotent: "already exists",
"not found" on delete/detach and a replayed policy version are all recognised as done.
An unchanged registry costs zero write calls.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Any

from orchestrator.errors import InputRejected, OrchestrateError
from orchestrator.registry.calls import CallCounts, Caller, RateLimiter, RetryPolicy, error_code
from orchestrator.registry.checkpoint import Checkpoint
from orchestrator.registry.policydoc import RegionRewrite, normalize_document, rewrite_region
from orchestrator.registry.snapshot import (
    RegistrySnapshot,
    TargetKind,
    ThingGroup,
    pmap,
    read_snapshot,
    with_pems,
)

DEFAULT_RATE = 10.0  # write calls per second per API: below AWS IoT's per-API control-plane limits
DEFAULT_READ_RATE = 20.0
MAX_CONCURRENCY = 16
FIRST_ITEMS = 5

Progress = Callable[[int, int], None]


class Kind(str, Enum):
    THING_TYPE = "thing_type"
    THING_GROUP = "thing_group"
    POLICY = "policy"
    CERTIFICATE = "certificate"
    THING = "thing"
    GROUP_MEMBERSHIP = "group_membership"
    THING_PRINCIPAL = "thing_principal"
    POLICY_ATTACHMENT = "policy_attachment"


class Action(str, Enum):
    CREATE = "create"  # attach / add for the relation kinds
    UPDATE = "update"
    DELETE = "delete"  # detach / remove for the relation kinds


_API = {
    (Kind.THING_TYPE, Action.CREATE): "create_thing_type",
    (Kind.THING_TYPE, Action.UPDATE): "deprecate_thing_type",
    (Kind.THING_TYPE, Action.DELETE): "delete_thing_type",
    (Kind.THING_GROUP, Action.CREATE): "create_thing_group",
    (Kind.THING_GROUP, Action.UPDATE): "update_thing_group",
    (Kind.THING_GROUP, Action.DELETE): "delete_thing_group",
    (Kind.POLICY, Action.CREATE): "create_policy",
    (Kind.POLICY, Action.UPDATE): "create_policy_version",
    (Kind.POLICY, Action.DELETE): "delete_policy",
    (Kind.CERTIFICATE, Action.CREATE): "register_certificate_without_ca",
    (Kind.CERTIFICATE, Action.UPDATE): "update_certificate",
    (Kind.CERTIFICATE, Action.DELETE): "delete_certificate",
    (Kind.THING, Action.CREATE): "create_thing",
    (Kind.THING, Action.UPDATE): "update_thing",
    (Kind.THING, Action.DELETE): "delete_thing",
    (Kind.GROUP_MEMBERSHIP, Action.CREATE): "add_thing_to_thing_group",
    (Kind.GROUP_MEMBERSHIP, Action.DELETE): "remove_thing_from_thing_group",
    (Kind.THING_PRINCIPAL, Action.CREATE): "attach_thing_principal",
    (Kind.THING_PRINCIPAL, Action.DELETE): "detach_thing_principal",
    (Kind.POLICY_ATTACHMENT, Action.CREATE): "attach_policy",
    (Kind.POLICY_ATTACHMENT, Action.DELETE): "detach_policy",
}


@dataclass(frozen=True)
class SyncOp:
    """One change to the destination. Names of relations: `group/thing`, `thing/cert-id`,
    `policy/certificate:id` or `policy/thing_group:name` (`/` never occurs in IoT names)."""

    kind: Kind
    action: Action
    name: str
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)
    deps: tuple[str, ...] = ()
    phase: int = 0
    step: str = ""

    @property
    def id(self) -> str:
        base = f"{self.kind.value} {self.action.value} {self.name}"
        return f"{base} ({self.step})" if self.step else base

    @cached_property
    def key(self) -> str:
        """The checkpoint key: identity plus a digest of the desired state."""
        digest = hashlib.sha256(json.dumps(self.params, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.id} #{digest[:12]}"

    @property
    def api(self) -> str:
        return _API[(self.kind, self.action)]

    def describe(self) -> str:
        verb = {
            (Kind.GROUP_MEMBERSHIP, Action.CREATE): "add", (Kind.GROUP_MEMBERSHIP, Action.DELETE): "remove",
            (Kind.THING_PRINCIPAL, Action.CREATE): "attach", (Kind.THING_PRINCIPAL, Action.DELETE): "detach",
            (Kind.POLICY_ATTACHMENT, Action.CREATE): "attach",
            (Kind.POLICY_ATTACHMENT, Action.DELETE): "detach",
        }.get((self.kind, self.action), self.action.value)
        text = f"{verb} {self.kind.value.replace('_', ' ')} {self.name}"
        return f"{text} ({self.step})" if self.step else text


def _zero_counts() -> dict[str, dict[str, int]]:
    return {k.value: {a.value: 0 for a in Action} for k in Kind}


@dataclass(frozen=True)
class SyncPlanSummary:
    """What a sync would do (`--dry-run`): counts per kind and operation, and the first items."""

    src_region: str
    dst_region: str
    prune: bool
    total: int
    counts: Mapping[str, Mapping[str, int]]
    first: Mapping[str, tuple[str, ...]]
    warnings: tuple[str, ...] = ()
    rewritten_policies: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "registry-sync-plan",
            "dry_run": True,
            "from": self.src_region,
            "to": self.dst_region,
            "prune": self.prune,
            "total": self.total,
            "counts": {k: dict(v) for k, v in self.counts.items()},
            "first": {k: list(v) for k, v in self.first.items()},
            "warnings": list(self.warnings),
            "rewritten_policies": list(self.rewritten_policies),
        }


@dataclass(frozen=True)
class SyncPlan:
    src_region: str
    dst_region: str
    prune: bool
    ops: tuple[SyncOp, ...]
    warnings: tuple[str, ...] = ()
    rewritten_policies: tuple[str, ...] = ()
    # where the destination's existing certificates and groups live (ARNs are per region)
    dst_certificate_arns: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    dst_group_arns: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def counts(self) -> dict[str, dict[str, int]]:
        counts = _zero_counts()
        for op in self.ops:
            counts[op.kind.value][op.action.value] += 1
        return counts

    def summary(self, first: int = FIRST_ITEMS) -> SyncPlanSummary:
        items: dict[str, list[str]] = {}
        for op in self.ops:
            bucket = items.setdefault(op.kind.value, [])
            if len(bucket) < first:
                bucket.append(op.describe())
        return SyncPlanSummary(
            src_region=self.src_region, dst_region=self.dst_region, prune=self.prune,
            total=len(self.ops), counts=self.counts(),
            first={k: tuple(v) for k, v in items.items()},
            warnings=self.warnings, rewritten_policies=self.rewritten_policies,
        )


@dataclass(frozen=True)
class OpError:
    op: str
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"op": self.op, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class SyncReport:
    """What a sync did. `counts` are the operations applied, per kind and operation."""

    src_region: str
    dst_region: str
    prune: bool
    planned: int
    applied: int
    counts: Mapping[str, Mapping[str, int]]
    write_calls: int
    read_calls: int
    retries: int
    throttled: int
    duration_s: float
    concurrency: int
    rate: float | None
    skipped_from_checkpoint: int = 0
    blocked: int = 0  # not attempted because an operation they depend on failed
    errors: tuple[OpError, ...] = ()
    warnings: tuple[str, ...] = ()
    rewritten_policies: tuple[str, ...] = ()
    resumed: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.blocked

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "registry-sync-report",
            "dry_run": False,
            "from": self.src_region,
            "to": self.dst_region,
            "prune": self.prune,
            "ok": self.ok,
            "planned": self.planned,
            "applied": self.applied,
            "counts": {k: dict(v) for k, v in self.counts.items()},
            "write_calls": self.write_calls,
            "read_calls": self.read_calls,
            "retries": self.retries,
            "throttled": self.throttled,
            "duration_s": round(self.duration_s, 3),
            "concurrency": self.concurrency,
            "rate": self.rate,
            "resumed": self.resumed,
            "skipped_from_checkpoint": self.skipped_from_checkpoint,
            "blocked": self.blocked,
            "errors": [e.to_json() for e in self.errors],
            "warnings": list(self.warnings),
            "rewritten_policies": list(self.rewritten_policies),
        }


# -- planning (pure) -----------------------------------------------------------------------------

_COPYABLE_STATUS = {"ACTIVE": "ACTIVE", "INACTIVE": "INACTIVE", "REVOKED": "REVOKED",
                    "PENDING_ACTIVATION": "INACTIVE", "REGISTER_INACTIVE": "INACTIVE"}


class _Builder:
    def __init__(self) -> None:
        self.ops: dict[str, SyncOp] = {}
        self.deps: dict[str, set[str]] = defaultdict(set)

    def add(self, kind: Kind, action: Action, name: str, phase: int, step: str = "",
            **params: Any) -> str:
        op = SyncOp(kind, action, name, params, (), phase, step)
        self.ops[op.id] = op
        return op.id

    def depend(self, op_id: str, *on: str | None) -> None:
        self.deps[op_id].update(d for d in on if d)

    def id_if(self, kind: Kind, action: Action, name: str, step: str = "") -> str | None:
        op_id = SyncOp(kind, action, name, step=step).id
        return op_id if op_id in self.ops else None

    def build(self) -> tuple[SyncOp, ...]:
        ops = [replace(op, deps=tuple(sorted(d for d in self.deps.get(op.id, ()) if d in self.ops)))
               for op in self.ops.values()]
        return tuple(sorted(ops, key=lambda op: (op.phase, list(Kind).index(op.kind), op.name, op.step)))


def _depths(groups: Mapping[str, ThingGroup]) -> dict[str, int]:
    depths: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in depths:
            return depths[name]
        group = groups.get(name)
        if group is None or not group.parent or group.parent not in groups or name in seen:
            value = 0
        else:
            value = depth(group.parent, seen | {name}) + 1
        depths[name] = value
        return value

    for name in groups:
        depth(name)
    return depths


def plan_sync(src: RegistrySnapshot, dst: RegistrySnapshot, prune: bool = False, *,
              region_rewrite: RegionRewrite = RegionRewrite.DESTINATION) -> SyncPlan:
    """The operations that make `dst` hold what `src` holds (pure: no I/O)."""
    p = _Planner(src, dst, region_rewrite)
    p.thing_types()
    p.thing_groups()
    p.policies()
    p.certificates()
    p.things()
    p.deprecations()
    p.memberships(prune)
    p.thing_principals()
    p.policy_targets()
    if prune:
        _plan_deletions(p.b, src, dst, set(src.thing_principals), set(dst.thing_principals),
                        set(src.policy_targets), set(dst.policy_targets))
    return SyncPlan(
        src_region=src.region, dst_region=dst.region, prune=prune, ops=p.b.build(),
        warnings=tuple(dict.fromkeys(p.warnings)), rewritten_policies=tuple(p.rewritten),
        dst_certificate_arns={c.id: c.arn for c in dst.certificates if c.arn},
        dst_group_arns={g.name: g.arn for g in dst.thing_groups if g.arn},
    )


_T, _G, _P, _C, _H = Kind.THING_TYPE, Kind.THING_GROUP, Kind.POLICY, Kind.CERTIFICATE, Kind.THING
_M, _TP, _PA = Kind.GROUP_MEMBERSHIP, Kind.THING_PRINCIPAL, Kind.POLICY_ATTACHMENT
_CREATE, _UPDATE, _DELETE = Action.CREATE, Action.UPDATE, Action.DELETE


class _Planner:
    """plan_sync's steps, in dependency order; each adds operations and their dependencies."""

    def __init__(self, src: RegistrySnapshot, dst: RegistrySnapshot, rewrite: RegionRewrite) -> None:
        self.src = src
        self.dst = dst
        self.rewrite = rewrite
        self.b = _Builder()
        self.warnings: list[str] = list(src.notes)
        self.rewritten: list[str] = []
        self.static = {n: g for n, g in src.groups_by_name.items() if not g.dynamic}
        self.skipped_certs: set[str] = set()
        self.types_in_use: set[str] = set()

    def thing_types(self) -> None:
        """Created active; deprecated (again) only after their things exist (`deprecations`)."""
        for t in self.src.thing_types:
            d = self.dst.types_by_name.get(t.name)
            if d is None:
                self.b.add(_T, _CREATE, t.name, 10, description=t.description,
                           searchable_attributes=list(t.searchable_attributes))
                continue
            if (t.description, tuple(t.searchable_attributes)) != \
                    (d.description, tuple(d.searchable_attributes)):
                self.warnings.append(f"thing type {t.name}: description/searchable attributes differ in "
                                     f"{self.dst.region}; thing types are immutable, left as they are")
            if d.deprecated and not t.deprecated:
                self.b.add(_T, _UPDATE, t.name, 10, step="undeprecate", deprecated=False)

    def thing_groups(self) -> None:
        """Static groups, parents first (a group's parent is fixed at creation)."""
        depth = _depths(self.static)
        for name in sorted(self.static, key=lambda n: (depth[n], n)):
            g = self.static[name]
            d = self.dst.groups_by_name.get(name)
            phase = 20 + depth[name]
            if d is None:
                op = self.b.add(_G, _CREATE, name, phase, parent=g.parent, description=g.description,
                                attributes=dict(g.attributes))
                if g.parent:
                    self.b.depend(op, self.b.id_if(_G, _CREATE, g.parent))
                continue
            if d.dynamic:
                self.warnings.append(f"thing group {name} is dynamic in {self.dst.region} and static "
                                     f"in {self.src.region}; not changed")
                continue
            if (g.parent or None) != (d.parent or None):
                self.warnings.append(f"thing group {name}: parent is {g.parent!r} in {self.src.region} "
                                     f"but {d.parent!r} in {self.dst.region}; a group's parent cannot change")
            if (g.description, dict(g.attributes)) != (d.description, dict(d.attributes)):
                self.b.add(_G, _UPDATE, name, phase, description=g.description,
                           attributes=dict(g.attributes))

    def policies(self) -> None:
        """Default versions; a literal source region in ARNs is rewritten (and reported)."""
        for p in self.src.policies:
            document, changed = rewrite_region(p.document, self.src.region, self.dst.region, self.rewrite)
            document = normalize_document(document)
            if changed:
                self.rewritten.append(p.name)
            d = self.dst.policies_by_name.get(p.name)
            if d is None:
                self.b.add(_P, _CREATE, p.name, 30, document=document)
            elif d.document != document:
                self.b.add(_P, _UPDATE, p.name, 30, document=document)
        if self.rewritten:
            target = self.dst.region if self.rewrite is RegionRewrite.DESTINATION else "*"
            self.warnings.append(f"policies naming {self.src.region} in ARNs were rewritten to "
                                 f"{target}: {', '.join(self.rewritten)}")

    def certificates(self) -> None:
        """Same PEM, same id; statuses copied, except that REVOKED in the destination stays."""
        with_ca = 0
        src, dst = self.src, self.dst
        for c in src.certificates:
            status = _COPYABLE_STATUS.get(c.status)
            if status is None:
                self.skipped_certs.add(c.id)
                self.warnings.append(f"certificate {c.id[:12]}… is {c.status} in {src.region}; not copied")
                continue
            if status != c.status:
                self.warnings.append(f"certificate {c.id[:12]}… is {c.status} in {src.region}; "
                                     f"registered as {status}")
            d = dst.certificates_by_id.get(c.id)
            if d is None:
                if not c.pem:
                    raise InputRejected(f"certificate {c.id} has no PEM in the {src.region} snapshot")
                if c.ca_certificate_id:
                    with_ca += 1
                self.b.add(_C, _CREATE, c.id, 40, pem=c.pem, status=status)
            elif d.status not in (status, c.status):
                if d.status == "REVOKED":
                    self.warnings.append(f"certificate {c.id[:12]}… is REVOKED in {dst.region}; a sync "
                                         f"does not re-activate it ({c.status} in {src.region})")
                elif d.status == "PENDING_TRANSFER":
                    self.warnings.append(f"certificate {c.id[:12]}… is PENDING_TRANSFER in "
                                         f"{dst.region}; left as is")
                else:
                    self.b.add(_C, _UPDATE, c.id, 40, status=status)
        if with_ca:
            self.warnings.append(f"{with_ca} CA-signed certificate(s) are registered without their CA "
                                 f"in {dst.region} (SNI_ONLY): devices must send SNI there")

    def things(self) -> None:
        for t in self.src.things:
            d = self.dst.things_by_name.get(t.name)
            if d is None:
                op = self.b.add(_H, _CREATE, t.name, 50, thing_type=t.thing_type,
                                attributes=dict(t.attributes))
            elif (t.thing_type, dict(t.attributes)) != (d.thing_type, dict(d.attributes)):
                op = self.b.add(_H, _UPDATE, t.name, 50, thing_type=t.thing_type,
                                attributes=dict(t.attributes),
                                remove_type=t.thing_type is None and d.thing_type is not None)
            else:
                continue
            if t.thing_type:
                self.types_in_use.add(t.thing_type)
                self.b.depend(op, self.b.id_if(_T, _CREATE, t.thing_type),
                              self.b.id_if(_T, _UPDATE, t.thing_type, "undeprecate"))

    def deprecations(self) -> None:
        """Deprecate last: a deprecated type takes no new things. A type deprecated in both regions
        but needed by new things is un-deprecated for the run and deprecated again at the end."""
        b = self.b
        for t in self.src.thing_types:
            d = self.dst.types_by_name.get(t.name)
            if not t.deprecated:
                continue
            if d is not None and d.deprecated:
                if t.name not in self.types_in_use:
                    continue
                b.add(_T, _UPDATE, t.name, 10, step="undeprecate", deprecated=False)
            op = b.add(_T, _UPDATE, t.name, 90, step="deprecate", deprecated=True)
            b.depend(op, b.id_if(_T, _CREATE, t.name), b.id_if(_T, _UPDATE, t.name, "undeprecate"))
            for thing in self.src.things:
                if thing.thing_type == t.name:
                    b.depend(op, b.id_if(_H, _CREATE, thing.name), b.id_if(_H, _UPDATE, thing.name))
        for thing in self.src.things:
            if thing.thing_type:
                for action in (_CREATE, _UPDATE):
                    op_id = b.id_if(_H, action, thing.name)
                    if op_id:
                        b.depend(op_id, b.id_if(_T, _UPDATE, thing.thing_type, "undeprecate"))

    def memberships(self, prune: bool) -> None:
        """Static groups only; removals only with prune, and not from groups that go away."""
        for t in self.src.things:
            d = self.dst.things_by_name.get(t.name)
            current = set(d.groups) if d else set()
            for group in sorted(set(t.groups) - current):
                if group not in self.static:
                    continue
                op = self.b.add(_M, _CREATE, f"{group}/{t.name}", 60, group=group, thing=t.name)
                self.b.depend(op, self.b.id_if(_H, _CREATE, t.name), self.b.id_if(_G, _CREATE, group))
            if prune and d is not None:
                for group in sorted(current - set(t.groups)):
                    if group in self.src.groups_by_name:
                        self.b.add(_M, _DELETE, f"{group}/{t.name}", 130, group=group, thing=t.name)

    def thing_principals(self) -> None:
        for a in sorted(set(self.src.thing_principals) - set(self.dst.thing_principals)):
            if a.certificate_id in self.skipped_certs or a.certificate_id not in self.src.certificates_by_id:
                continue
            op = self.b.add(_TP, _CREATE, f"{a.thing}/{a.certificate_id}", 70, thing=a.thing,
                            certificate_id=a.certificate_id)
            self.b.depend(op, self.b.id_if(_H, _CREATE, a.thing), self.b.id_if(_C, _CREATE, a.certificate_id))

    def policy_targets(self) -> None:
        for a in sorted(set(self.src.policy_targets) - set(self.dst.policy_targets)):
            if a.kind is TargetKind.CERTIFICATE:
                if a.target in self.skipped_certs or a.target not in self.src.certificates_by_id:
                    continue
                target_op = self.b.id_if(_C, _CREATE, a.target)
            else:
                if a.target not in self.static:
                    continue
                target_op = self.b.id_if(_G, _CREATE, a.target)
            op = self.b.add(_PA, _CREATE, f"{a.policy}/{a.kind.value}:{a.target}", 80, policy=a.policy,
                            target_kind=a.kind.value, target=a.target)
            self.b.depend(op, self.b.id_if(_P, _CREATE, a.policy), target_op)


def _plan_deletions(b: _Builder, src: RegistrySnapshot, dst: RegistrySnapshot,
                    src_tp: set[Any], dst_tp: set[Any], src_pt: set[Any], dst_pt: set[Any]) -> None:
    T, G, P, C, H = Kind.THING_TYPE, Kind.THING_GROUP, Kind.POLICY, Kind.CERTIFICATE, Kind.THING
    TP, PA, DELETE = Kind.THING_PRINCIPAL, Kind.POLICY_ATTACHMENT, Action.DELETE

    for a in sorted(dst_pt - src_pt):
        b.add(PA, DELETE, f"{a.policy}/{a.kind.value}:{a.target}", 110, policy=a.policy,
              target_kind=a.kind.value, target=a.target)
    for a in sorted(dst_tp - src_tp):
        b.add(TP, DELETE, f"{a.thing}/{a.certificate_id}", 120, thing=a.thing,
              certificate_id=a.certificate_id)
    for t in dst.things:
        if t.name not in src.things_by_name:
            op = b.add(H, DELETE, t.name, 140)
            b.depend(op, *(b.id_if(TP, DELETE, f"{a.thing}/{a.certificate_id}")
                           for a in dst_tp - src_tp if a.thing == t.name))
    for c in dst.certificates:
        if c.id not in src.certificates_by_id:
            op = b.add(C, DELETE, c.id, 150, status=c.status)
            b.depend(op, *(b.id_if(TP, DELETE, f"{a.thing}/{a.certificate_id}")
                           for a in dst_tp - src_tp if a.certificate_id == c.id))
            b.depend(op, *(b.id_if(PA, DELETE, f"{a.policy}/{a.kind.value}:{a.target}")
                           for a in dst_pt - src_pt
                           if a.kind is TargetKind.CERTIFICATE and a.target == c.id))
    for p in dst.policies:
        if p.name not in src.policies_by_name:
            op = b.add(P, DELETE, p.name, 160)
            b.depend(op, *(b.id_if(PA, DELETE, f"{a.policy}/{a.kind.value}:{a.target}")
                           for a in dst_pt - src_pt if a.policy == p.name))
    dst_static = {g.name: g for g in dst.thing_groups if not g.dynamic}
    depth = _depths(dst_static)
    deepest = max(depth.values(), default=0)
    for name in dst_static:
        if name in src.groups_by_name:
            continue
        op = b.add(G, DELETE, name, 170 + deepest - depth[name])
        b.depend(op, *(b.id_if(PA, DELETE, f"{a.policy}/{a.kind.value}:{a.target}")
                       for a in dst_pt - src_pt
                       if a.kind is TargetKind.THING_GROUP and a.target == name))
    for name, g in dst_static.items():  # children before parents
        parent_op = b.id_if(G, DELETE, g.parent) if g.parent else None
        child_op = b.id_if(G, DELETE, name)
        if parent_op and child_op:
            b.depend(parent_op, child_op)
    for ttype in dst.thing_types:
        if ttype.name in src.types_by_name:
            continue
        op = b.add(T, DELETE, ttype.name, 190, deprecated=ttype.deprecated)
        for thing in dst.things:
            if thing.thing_type == ttype.name:
                b.depend(op, b.id_if(H, DELETE, thing.name), b.id_if(H, Action.UPDATE, thing.name))


# -- applying --------------------------------------------------------------------------------------

class _OpRejected(Exception):
    """An operation that cannot be applied (recorded as an error; the run goes on)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _code(exc: BaseException) -> str | None:
    return error_code(exc)


# the credentials or their permissions are wrong: every further call would fail the same way
_FATAL_CODES = frozenset({
    "UnauthorizedException", "AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException",
    "SignatureDoesNotMatch",
})


def _is_client_error(exc: BaseException) -> bool:
    """A refusal of this one operation (recorded; the run goes on), not of the whole run."""
    from botocore.exceptions import ClientError

    if isinstance(exc, _OpRejected):
        return True
    return isinstance(exc, ClientError) and _code(exc) not in _FATAL_CODES


_NOT_FOUND = "ResourceNotFoundException"
_EXISTS = "ResourceAlreadyExistsException"


class _Executor:
    """Applies one operation; idempotent, safe to replay."""

    def __init__(self, caller: Caller, plan: SyncPlan) -> None:
        self.caller = caller
        self._cert_arns = dict(plan.dst_certificate_arns)
        self._group_arns = dict(plan.dst_group_arns)
        self._lock = threading.Lock()

    def run(self, op: SyncOp) -> None:
        getattr(self, f"_{op.kind.value}_{op.action.value}")(op)

    def _call(self, api: str, *, ok: frozenset[str] = frozenset(), **kwargs: Any) -> Any:
        """Call; error codes in `ok` mean the desired state already holds (returns None)."""
        try:
            return self.caller.call(api, **kwargs)
        except Exception as exc:
            if _code(exc) in ok:
                return None
            raise

    # -- ARNs (region-specific: resolved in the destination) ---------------------------------
    def cert_arn(self, cert_id: str) -> str:
        with self._lock:
            arn = self._cert_arns.get(cert_id)
        if arn is None:
            d = self.caller.call("describe_certificate", certificateId=cert_id)
            arn = d["certificateDescription"]["certificateArn"]
            with self._lock:
                self._cert_arns[cert_id] = arn
        return arn

    def group_arn(self, name: str) -> str:
        with self._lock:
            arn = self._group_arns.get(name)
        if arn is None:
            arn = self.caller.call("describe_thing_group", thingGroupName=name)["thingGroupArn"]
            with self._lock:
                self._group_arns[name] = arn
        return arn

    def target_arn(self, kind: str, target: str) -> str:
        return self.cert_arn(target) if kind == TargetKind.CERTIFICATE.value else self.group_arn(target)

    # -- thing types -------------------------------------------------------------------------
    def _thing_type_create(self, op: SyncOp) -> None:
        props: dict[str, Any] = {}
        if op.params.get("description"):
            props["thingTypeDescription"] = op.params["description"]
        if op.params.get("searchable_attributes"):
            props["searchableAttributes"] = list(op.params["searchable_attributes"])
        self._call("create_thing_type", ok=frozenset({_EXISTS}), thingTypeName=op.name,
                   thingTypeProperties=props)

    def _thing_type_update(self, op: SyncOp) -> None:
        self._call("deprecate_thing_type", thingTypeName=op.name,
                   undoDeprecate=not op.params["deprecated"])

    def _thing_type_delete(self, op: SyncOp) -> None:
        if not op.params.get("deprecated"):
            if self._call("deprecate_thing_type", ok=frozenset({_NOT_FOUND}), thingTypeName=op.name,
                          undoDeprecate=False) is None:
                return
        # AWS refuses this for five minutes after deprecation: the error says so; re-run later
        self._call("delete_thing_type", ok=frozenset({_NOT_FOUND}), thingTypeName=op.name)

    # -- thing groups ------------------------------------------------------------------------
    @staticmethod
    def _group_props(op: SyncOp, *, merge: bool | None) -> dict[str, Any]:
        props: dict[str, Any] = {"attributePayload": {"attributes": dict(op.params["attributes"])}}
        if merge is not None:
            props["attributePayload"]["merge"] = merge
        if op.params.get("description") is not None or merge is not None:
            props["thingGroupDescription"] = op.params.get("description") or ""
        return props

    def _thing_group_create(self, op: SyncOp) -> None:
        kwargs: dict[str, Any] = {"thingGroupName": op.name,
                                  "thingGroupProperties": self._group_props(op, merge=None)}
        if op.params.get("parent"):
            kwargs["parentGroupName"] = op.params["parent"]
        try:
            response = self.caller.call("create_thing_group", **kwargs)
        except Exception as exc:
            if _code(exc) != _EXISTS:
                raise
            self._thing_group_update(op)  # exists with other properties: converge
            return
        with self._lock:
            self._group_arns[op.name] = response["thingGroupArn"]

    def _thing_group_update(self, op: SyncOp) -> None:
        self.caller.call("update_thing_group", thingGroupName=op.name,
                         thingGroupProperties=self._group_props(op, merge=False))

    def _thing_group_delete(self, op: SyncOp) -> None:
        self._call("delete_thing_group", ok=frozenset({_NOT_FOUND}), thingGroupName=op.name)

    # -- policies ----------------------------------------------------------------------------
    def _policy_matches(self, name: str, document: str) -> bool:
        current = self.caller.call("get_policy", policyName=name)
        return normalize_document(current["policyDocument"]) == document

    def _policy_create(self, op: SyncOp) -> None:
        document = op.params["document"]
        try:
            self.caller.call("create_policy", policyName=op.name, policyDocument=document)
        except Exception as exc:
            if _code(exc) != _EXISTS:
                raise
            self._policy_update(op)

    def _policy_update(self, op: SyncOp) -> None:
        name, document = op.name, op.params["document"]
        if self._policy_matches(name, document):  # replayed after a crash: no second version
            return

        def create_version() -> None:
            self.caller.call("create_policy_version", verify=lambda: self._policy_matches(name, document),
                             policyName=name, policyDocument=document, setAsDefault=True)

        try:
            create_version()
        except Exception as exc:
            if _code(exc) != "VersionsLimitExceededException":
                raise
            versions = self.caller.call("list_policy_versions", policyName=name)["policyVersions"]
            old = sorted((v for v in versions if not v.get("isDefaultVersion")),
                         key=lambda v: int(v["versionId"]))
            if not old:
                raise
            self._call("delete_policy_version", ok=frozenset({_NOT_FOUND}), policyName=name,
                       policyVersionId=old[0]["versionId"])
            create_version()

    def _policy_delete(self, op: SyncOp) -> None:
        listed = self._call("list_policy_versions", ok=frozenset({_NOT_FOUND}), policyName=op.name)
        if listed is None:
            return
        for v in listed.get("policyVersions", []):
            if not v.get("isDefaultVersion"):
                self._call("delete_policy_version", ok=frozenset({_NOT_FOUND}), policyName=op.name,
                           policyVersionId=v["versionId"])
        self._call("delete_policy", ok=frozenset({_NOT_FOUND}), policyName=op.name)

    # -- certificates ------------------------------------------------------------------------
    def _certificate_create(self, op: SyncOp) -> None:
        status = op.params["status"]
        try:
            response = self.caller.call("register_certificate_without_ca",
                                        certificatePem=op.params["pem"], status=status)
        except Exception as exc:
            if _code(exc) != _EXISTS:
                raise
            d = self.caller.call("describe_certificate", certificateId=op.name)["certificateDescription"]
            with self._lock:
                self._cert_arns[op.name] = d["certificateArn"]
            if d["status"] != status and d["status"] not in ("REVOKED", "PENDING_TRANSFER"):
                self.caller.call("update_certificate", certificateId=op.name, newStatus=status)
            return
        if response["certificateId"] != op.name:
            raise _OpRejected("CertificateIdMismatch",
                              f"registered as {response['certificateId']}, expected {op.name}")
        with self._lock:
            self._cert_arns[op.name] = response["certificateArn"]

    def _certificate_update(self, op: SyncOp) -> None:
        self.caller.call("update_certificate", certificateId=op.name, newStatus=op.params["status"])

    def _certificate_delete(self, op: SyncOp) -> None:
        if op.params.get("status") == "ACTIVE":
            if self._call("update_certificate", ok=frozenset({_NOT_FOUND}), certificateId=op.name,
                          newStatus="INACTIVE") is None:
                return
        self._call("delete_certificate", ok=frozenset({_NOT_FOUND}), certificateId=op.name)

    # -- things ------------------------------------------------------------------------------
    def _thing_create(self, op: SyncOp) -> None:
        kwargs: dict[str, Any] = {"thingName": op.name,
                                  "attributePayload": {"attributes": dict(op.params["attributes"])}}
        if op.params.get("thing_type"):
            kwargs["thingTypeName"] = op.params["thing_type"]
        try:
            self.caller.call("create_thing", **kwargs)
        except Exception as exc:
            if _code(exc) != _EXISTS:
                raise
            remove_type = not op.params.get("thing_type")
            self._thing_update(replace(op, params={**op.params, "remove_type": remove_type}))

    def _thing_update(self, op: SyncOp) -> None:
        kwargs: dict[str, Any] = {
            "thingName": op.name,
            "attributePayload": {"attributes": dict(op.params["attributes"]), "merge": False},
        }
        if op.params.get("thing_type"):
            kwargs["thingTypeName"] = op.params["thing_type"]
        elif op.params.get("remove_type"):
            kwargs["removeThingType"] = True
        self.caller.call("update_thing", **kwargs)

    def _thing_delete(self, op: SyncOp) -> None:
        self._call("delete_thing", ok=frozenset({_NOT_FOUND}), thingName=op.name)

    # -- relations ---------------------------------------------------------------------------
    def _group_membership_create(self, op: SyncOp) -> None:
        self.caller.call("add_thing_to_thing_group", thingGroupName=op.params["group"],
                         thingName=op.params["thing"])

    def _group_membership_delete(self, op: SyncOp) -> None:
        self._call("remove_thing_from_thing_group", ok=frozenset({_NOT_FOUND}),
                   thingGroupName=op.params["group"], thingName=op.params["thing"])

    def _thing_principal_create(self, op: SyncOp) -> None:
        self.caller.call("attach_thing_principal", thingName=op.params["thing"],
                         principal=self.cert_arn(op.params["certificate_id"]))

    def _thing_principal_delete(self, op: SyncOp) -> None:
        try:
            arn = self.cert_arn(op.params["certificate_id"])
        except Exception as exc:
            if _code(exc) == _NOT_FOUND:
                return
            raise
        self._call("detach_thing_principal", ok=frozenset({_NOT_FOUND}), thingName=op.params["thing"],
                   principal=arn)

    def _policy_attachment_create(self, op: SyncOp) -> None:
        self.caller.call("attach_policy", policyName=op.params["policy"],
                         target=self.target_arn(op.params["target_kind"], op.params["target"]))

    def _policy_attachment_delete(self, op: SyncOp) -> None:
        try:
            arn = self.target_arn(op.params["target_kind"], op.params["target"])
        except Exception as exc:
            if _code(exc) == _NOT_FOUND:
                return
            raise
        self._call("detach_policy", ok=frozenset({_NOT_FOUND}), policyName=op.params["policy"], target=arn)


def apply_sync(plan: SyncPlan, dst_client: Any, limiter: RateLimiter | None = None,
               checkpoint: Checkpoint | None = None, progress: Progress | None = None, *,
               concurrency: int = 1, caller: Caller | None = None,
               read_limiter: RateLimiter | None = None, retry: RetryPolicy | None = None,
               clock: Callable[[], float] = time.monotonic) -> SyncReport:
    """Apply `plan` to the destination. Raises only when the run cannot go on (retries exhausted,
    no credentials, a bug); per-operation refusals are collected in `SyncReport.errors`."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InputRejected(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    caller = caller or Caller(dst_client, writes=limiter, reads=read_limiter, retry=retry)
    executor = _Executor(caller, plan)
    started = clock()
    before = caller.stats.counts()
    resumed = checkpoint.resumed if checkpoint is not None else False

    ops = plan.ops
    total = len(ops)
    by_id = {op.id: op for op in ops}
    order = {op.id: i for i, op in enumerate(ops)}
    waiting = {op.id: {d for d in op.deps if d in by_id} for op in ops}
    dependents: dict[str, list[str]] = defaultdict(list)
    for op in ops:
        for dep in waiting[op.id]:
            dependents[dep].append(op.id)
    ready: dict[str, list[tuple[int, str]]] = defaultdict(list)  # api -> heap of (plan order, op id)

    def push(op_id: str) -> None:
        heapq.heappush(ready[by_id[op_id].api], (order[op_id], op_id))

    for op in ops:
        if not waiting[op.id]:
            push(op.id)

    applied: Counter[tuple[Kind, Action]] = Counter()
    errors: list[OpError] = []
    blocked: set[str] = set()
    finished = 0
    skipped = 0
    fatal: BaseException | None = None
    inflight: dict[Future[None], SyncOp] = {}
    inflight_per_api: Counter[str] = Counter()

    def tick() -> None:
        if progress is not None:
            progress(finished, total)

    def release(op_id: str) -> None:
        for child in dependents.get(op_id, ()):
            waiting[child].discard(op_id)
            if not waiting[child] and child not in blocked:
                push(child)

    def block(op_id: str) -> int:
        count = 0
        for child in dependents.get(op_id, ()):
            if child not in blocked:
                blocked.add(child)
                count += 1 + block(child)
        return count

    def score(api: str) -> tuple[float, int]:
        lim = caller.limiter_for(api)
        wait_s = lim.peek(api) + inflight_per_api[api] / lim.rate if lim else float(inflight_per_api[api])
        return wait_s, ready[api][0][0]

    tick()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="registry-sync")
    try:
        while True:
            while fatal is None and len(inflight) < concurrency and any(ready.values()):
                api = min((a for a, q in ready.items() if q), key=score)
                op = by_id[heapq.heappop(ready[api])[1]]
                if checkpoint is not None and checkpoint.is_done(op.key):
                    skipped += 1
                    finished += 1
                    tick()
                    release(op.id)
                    continue
                inflight[pool.submit(executor.run, op)] = op
                inflight_per_api[op.api] += 1
            if not inflight:
                break
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for future in done:
                op = inflight.pop(future)
                inflight_per_api[op.api] -= 1
                exc = future.exception()
                if exc is None:
                    applied[(op.kind, op.action)] += 1
                    if checkpoint is not None:
                        checkpoint.mark_done(op.key)
                    finished += 1
                    release(op.id)
                elif isinstance(exc, Exception) and _is_client_error(exc) \
                        and not isinstance(exc, OrchestrateError):
                    code = getattr(exc, "code", None) or _code(exc) or type(exc).__name__
                    message = getattr(exc, "message", None) or str(exc)
                    errors.append(OpError(op.id, code, " ".join(str(message).split())))
                    newly_blocked = block(op.id)
                    finished += 1 + newly_blocked
                else:
                    fatal = fatal or exc
                    continue
                tick()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if checkpoint is not None:
            if fatal is None and not errors and not blocked and finished == total:
                checkpoint.complete()
            else:
                checkpoint.flush()
    if fatal is not None:
        raise fatal

    after = caller.stats.counts()
    counts = _zero_counts()
    for (kind, action), n in applied.items():
        counts[kind.value][action.value] = n
    limiter_used = caller.writes
    return SyncReport(
        src_region=plan.src_region, dst_region=plan.dst_region, prune=plan.prune,
        planned=total, applied=sum(applied.values()), counts=counts,
        write_calls=after.writes - before.writes, read_calls=after.reads - before.reads,
        retries=after.retries - before.retries, throttled=after.throttled - before.throttled,
        duration_s=clock() - started, concurrency=concurrency,
        rate=limiter_used.rate if limiter_used else None,
        skipped_from_checkpoint=skipped, blocked=len(blocked), errors=tuple(errors),
        warnings=plan.warnings, rewritten_policies=plan.rewritten_policies, resumed=resumed,
    )


# -- one sync, end to end ----------------------------------------------------------------------

@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    prune: bool = False
    rate: float = DEFAULT_RATE
    read_rate: float | None = None  # None: max(DEFAULT_READ_RATE, 2 * rate)
    burst: float = 1.0
    concurrency: int = 1
    checkpoint_path: Path | None = None
    flush_every: int = 25
    progress: Progress | None = None
    region_rewrite: RegionRewrite = RegionRewrite.DESTINATION
    retry: RetryPolicy | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InputRejected(
                f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}")
        if not self.rate > 0:
            raise InputRejected(f"rate must be a positive number of calls per second, got {self.rate!r}")

    @property
    def effective_read_rate(self) -> float:
        return self.read_rate if self.read_rate else max(DEFAULT_READ_RATE, 2 * self.rate)

    def caller(self, client: Any, *, writes: bool) -> Caller:
        retry = self.retry or RetryPolicy()
        return Caller(
            client,
            writes=RateLimiter(self.rate, self.burst) if writes else None,
            reads=RateLimiter(self.effective_read_rate, self.burst),
            retry=retry,
        )


def sync_snapshot(src: RegistrySnapshot, dst_client: Any, options: SyncOptions, *,
                  src_caller: Caller | None = None,
                  dst_caller: Caller | None = None) -> SyncReport | SyncPlanSummary:
    """Make the destination hold what `src` holds. `src_caller` (optional) fetches missing PEMs."""
    run = _Run.start(options, dst_caller or options.caller(dst_client, writes=True), src_caller)
    dst = read_snapshot(dst_client, caller=run.dst_caller, pems=False, concurrency=options.concurrency)
    return run.plan_and_apply(src, dst, dst_client)


def sync_clients(src_client: Any, dst_client: Any, options: SyncOptions, *,
                 src_caller: Caller | None = None,
                 dst_caller: Caller | None = None) -> SyncReport | SyncPlanSummary:
    """Read both regions (in parallel), plan, and apply (or summarize, with `dry_run`)."""
    src_caller = src_caller or options.caller(src_client, writes=False)
    dst_caller = dst_caller or options.caller(dst_client, writes=True)
    if src_caller.region == dst_caller.region:
        raise InputRejected(f"source and destination are the same region ({src_caller.region})")
    run = _Run.start(options, dst_caller, src_caller)
    src, dst = pmap(lambda c: read_snapshot(c.client, caller=c, pems=False, concurrency=options.concurrency),
                    [src_caller, dst_caller], 2)
    return run.plan_and_apply(src, dst, dst_client)


@dataclass
class _Run:
    """One sync: its callers, and their counters at the start (callers may be reused)."""

    options: SyncOptions
    dst_caller: Caller
    src_caller: Caller | None
    started: float
    base: tuple[CallCounts, CallCounts | None]

    @classmethod
    def start(cls, options: SyncOptions, dst_caller: Caller, src_caller: Caller | None) -> _Run:
        base = (dst_caller.stats.counts(), src_caller.stats.counts() if src_caller else None)
        return cls(options, dst_caller, src_caller, time.monotonic(), base)

    def plan_and_apply(self, src: RegistrySnapshot, dst: RegistrySnapshot,
                       dst_client: Any) -> SyncReport | SyncPlanSummary:
        options = self.options
        missing = [c.id for c in src.certificates if c.id not in dst.certificates_by_id and c.pem is None]
        if missing and self.src_caller is not None:
            src = with_pems(src, self.src_caller, missing, concurrency=options.concurrency)
        plan = plan_sync(src, dst, options.prune, region_rewrite=options.region_rewrite)
        if options.dry_run:
            return plan.summary()
        checkpoint = None
        if options.checkpoint_path is not None:
            checkpoint = Checkpoint(options.checkpoint_path, src_region=src.region, dst_region=dst.region,
                                    flush_every=options.flush_every)
        report = apply_sync(plan, dst_client, self.dst_caller.writes, checkpoint, options.progress,
                            concurrency=options.concurrency, caller=self.dst_caller)
        reads = retries = throttled = 0
        for caller, base in ((self.dst_caller, self.base[0]), (self.src_caller, self.base[1])):
            if caller is None or base is None:
                continue
            now = caller.stats.counts()
            reads += now.reads - base.reads
            retries += now.retries - base.retries
            throttled += now.throttled - base.throttled
        return replace(report, read_calls=reads, retries=retries, throttled=throttled,
                       duration_s=time.monotonic() - self.started)
