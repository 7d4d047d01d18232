"""What a registry sync works with: operations, plans, reports and options (no I/O).

`SyncOp` is one change to the destination; `SyncPlan` the dependency-ordered operations that
`plan.plan_sync` computes; `SyncPlanSummary` what a plan-only run (`--dry-run`) reports;
`SyncReport` what an applied run did; `SyncOptions` how a run goes (rates, concurrency,
checkpoint, progress).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InputRejected
from orchestrator.registry.calls import CallCounts, Caller, RateLimiter, RetryPolicy
from orchestrator.registry.policydoc import RegionRewrite
from orchestrator.registry.quotas import AdaptiveLimiter, QuotaTable

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.registry.guards import PruneGuard, RestoreGuard

DEFAULT_RATE = 10.0  # the lowest published per-API quota (a uniform --rate of old; see quotas.py)
DEFAULT_READ_RATE = 10.0
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
    SHADOW = "shadow"  # a device shadow (classic or named), through the iot-data plane
    POLICY_VERSION = "policy_version"  # a non-default version of a policy (only ever deleted)


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
    (Kind.SHADOW, Action.UPDATE): "update_thing_shadow",
    (Kind.SHADOW, Action.DELETE): "delete_thing_shadow",
    (Kind.POLICY_VERSION, Action.DELETE): "delete_policy_version",
}
DATA_PLANE_KINDS = frozenset({Kind.SHADOW})


@dataclass(frozen=True)
class SyncOp:
    """One change to the destination. Names of relations: `group/thing`, `thing/cert-id`,
    `policy/certificate:id` or `policy/thing_group:name`, of policy versions `policy/version-id`
    (`/` never occurs in IoT names).

    `tightens`: the change takes a permission away from something the source still has (a policy
    or certificate detached, a thing taken out of a group, a policy version deleted): it is always
    carried, without `--prune`, and the prune guard does not count it as a deletion."""

    kind: Kind
    action: Action
    name: str
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)
    deps: tuple[str, ...] = ()
    phase: int = 0
    step: str = ""
    tightens: bool = False

    @cached_property
    def id(self) -> str:
        """Computed once per operation: the scheduler's maps and the planner's dependency sets
        then share one string per operation instead of a copy per look-up (issue 22: at 5k things
        the copies were 4.9 KB per thing of a first sync's peak)."""
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


def zero_counts() -> dict[str, dict[str, int]]:
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
    shadows_kept: int = 0  # shadows left (wholly or a section) as they are: newer in the destination

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
            "shadows_kept": self.shadows_kept,
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
    # shadows with a section the destination wrote after the source did: kept, not overwritten
    # (`plan.newer_in_destination`)
    shadows_kept: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        counts = zero_counts()
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
            warnings=self.warnings, rewritten_policies=self.rewritten_policies, shadows_kept=self.shadows_kept,
        )


@dataclass(frozen=True)
class OpError:
    """One refused operation. Built only here: the AWS message is scrubbed of secret shapes and
    values (it reaches stdout, --json, state files and the replication stack's Command output)."""

    op: str
    code: str
    message: str

    def __post_init__(self) -> None:
        from orchestrator.scrub import scrub

        object.__setattr__(self, "message", scrub(self.message))

    def to_json(self) -> dict[str, str]:
        return {"op": self.op, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class SyncVerification:
    """The read-back of a sync: what it was asked to carry, read again from the destination after
    applying, and planned again against the source as this run read it. `remaining` operations
    are what still differs (0: verified). `reread` is False when nothing was planned: both regions
    were read by this very run and agreed, so there was nothing to read back. `superseded`: shadows
    this run wrote that a later writer (a device) changed again before the read-back (the
    destination's version moved past the one the write returned, with a time not older than the
    write's): not a difference, the newer state stands."""

    remaining: int
    counts: Mapping[str, int] = field(default_factory=dict)  # kind -> operations still needed
    first: tuple[str, ...] = ()
    reread: bool = True
    things_reread: int = 0  # things whose principals were read again
    shadows_reread: int = 0
    superseded: int = 0

    @property
    def ok(self) -> bool:
        return self.remaining == 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "remaining": self.remaining, "counts": dict(self.counts), "first": list(self.first),
                "reread": self.reread, "things_reread": self.things_reread, "shadows_reread": self.shadows_reread,
                "superseded": self.superseded}


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
    calls_by_api: Mapping[str, int] = field(default_factory=dict)  # every request sent, both regions
    throttled_by_api: Mapping[str, int] = field(default_factory=dict)
    things_checked: int | None = None  # things whose principals were read (None: not a clients run)
    things_total: int | None = None
    full: bool = False
    shadows: bool = True
    unapplied: frozenset[str] = field(default=frozenset(), repr=False)  # ids of failed and blocked ops
    verification: SyncVerification | None = None  # the read-back (clients syncs); None: not read back
    distrusted: str | None = None  # why the version record was not trusted (every thing was read)
    shadows_kept: int = 0  # shadows (or a section of them) left as they are: newer in the destination
    # shadow key -> (version, time) the destination answered each shadow write with (the read-back
    # tells a later writer from a lost write by them)
    shadow_writes: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict, repr=False,
                                                                        compare=False)

    @property
    def ok(self) -> bool:
        """Nothing failed, and (when read back) what the run carried reads back equal."""
        verified = self.verification is None or self.verification.ok
        return not self.errors and not self.blocked and verified

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
            "calls_by_api": dict(sorted(self.calls_by_api.items())),
            "throttled_by_api": dict(sorted(self.throttled_by_api.items())),
            "full": self.full,
            "shadows": self.shadows,
            "things_checked": self.things_checked,
            "things_total": self.things_total,
            "verification": self.verification.to_json() if self.verification is not None else None,
            "distrusted": self.distrusted,
            "shadows_kept": self.shadows_kept,
        }


def counts_delta(now: CallCounts, base: CallCounts) -> dict[str, int]:
    before = dict(base.by_api)
    return {api: n - before.get(api, 0) for api, n in now.by_api if n - before.get(api, 0)}


@dataclass(frozen=True)
class SyncOptions:
    """How a sync runs.

    Rates: with `quotas` (or with neither `quotas` nor `rate`: the default table) every API runs
    at its own quota through an `AdaptiveLimiter`, `rate` caps every write API and `read_rate`
    every read API. With `rate` and no `quotas` every write API runs at `rate` and every read
    API at `read_rate` (default max(10, 2 x rate)): a uniform limit for tests and benchmarks
    against moto, which has no quotas.
    """

    prune: bool = False
    rate: float | None = None
    read_rate: float | None = None
    burst: float = 1.0
    concurrency: int = 1
    checkpoint_path: Path | None = None
    checkpoint_store: Callable[[Path], None] | None = None  # copies the checkpoint to the shared backend
    flush_every: int = 25
    progress: Progress | None = None
    region_rewrite: RegionRewrite = RegionRewrite.DESTINATION
    retry: RetryPolicy | None = None
    guard: PruneGuard | RestoreGuard | None = None  # checks (and may narrow) the plan before any write
    quotas: QuotaTable | None = None
    shadows: bool = True  # sync classic and named shadows (needs a data-plane client)
    full: bool = False  # read every thing's principals and shadows, whatever the versions say
    state_path: Path | None = None  # versions seen at the last clean sync (change detection)
    stream_chunk: int = 200  # things read (principals, shadows) before their changes join the apply
    state_store: Callable[[Path], None] | None = None  # copies `state_path` to the shared backend
    distrust: str | None = None  # a reason not to trust the version record (e.g. a failed verification)
    verify: bool = True  # read back what was applied; `ok` only when it reads back equal
    verify_chunk: int = 2000  # things compared at a time by the read-back (principals, shadows: issue 22)
    reads_ttl_s: float | None = None  # how long the reads journal trusts a line (None: READS_TTL_S)
    # a first sync's listings (source, destination, the read-back's) in the run's spill file, not in
    # memory (issue 22: ≈ 1 KB per thing each as objects): when the run has no version record to
    # trust (it reads every thing) and neither prunes nor is a --full pass (see sync/run.py)
    spill_listings: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InputRejected(
                f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}")
        if self.rate is not None and not self.rate > 0:
            raise InputRejected(f"rate must be a positive number of calls per second, got {self.rate!r}")
        if self.read_rate is not None and not self.read_rate > 0:
            raise InputRejected(f"read rate must be a positive number of calls per second, got {self.read_rate!r}")
        if self.verify_chunk < 1:
            raise InputRejected(f"verify chunk must be at least 1 thing, got {self.verify_chunk}")

    @property
    def data_concurrency(self) -> int:
        """Shadow reads in flight: the data plane's quota (4,000/s) is far above the control
        plane's, so only latency bounds it; sixteen times `concurrency`, at most 64."""
        return min(64, 16 * self.concurrency)

    @property
    def uniform(self) -> bool:
        """A uniform `rate` for every write API (no quota table)."""
        return self.quotas is None and self.rate is not None

    @property
    def effective_read_rate(self) -> float:
        if self.read_rate:
            return self.read_rate
        return max(DEFAULT_READ_RATE, 2 * (self.rate or DEFAULT_RATE))

    def table(self) -> QuotaTable:
        base = self.quotas or QuotaTable()
        return base.with_overrides(read_cap=self.read_rate, write_cap=self.rate)

    def caller(self, client: Any, *, writes: bool) -> Caller:
        retry = self.retry or RetryPolicy()
        if self.uniform:
            return Caller(
                client,
                writes=RateLimiter(self.rate or DEFAULT_RATE, self.burst) if writes else None,
                reads=RateLimiter(self.effective_read_rate, self.burst),
                retry=retry,
            )
        return Caller(client, limits=AdaptiveLimiter(self.table(), burst=self.burst), retry=retry)
