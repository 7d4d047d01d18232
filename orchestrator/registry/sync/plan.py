"""The pure planner: what to change in the destination so that it holds what the source holds.

`plan_sync(src, dst, prune)` compares two snapshots and lists operations per kind, each with the
operations it depends on:

    creates/updates  thing types -> thing groups (parents first) -> policies -> certificates ->
                     things -> group membership -> thing<->certificate -> shadows (after their
                     thing) -> policy<->principal -> deprecation of thing types (after the things
                     that use them exist)
    tightening       always, without `prune` (see docs/registry.md, "Tightening and removal"):
                     a policy detached from a certificate or thing group, a certificate detached
                     from a thing, a thing taken out of a static group, a policy version the
                     source no longer has deleted, a certificate deactivated or revoked, a policy's
                     new default version. Each only where the source still has the objects and its
                     read covered the relation (`RegistrySnapshot.coverage`): a partial read never
                     detaches what it did not look at.
    deletions        the reverse of creation, and only with `prune`: things, certificates,
                     policies, groups and types the source no longer has (and their relations).

Certificates are registered with `RegisterCertificateWithoutCA` and the *same PEM*, so the
certificate id is the same in both regions and devices keep their credentials. Registered
without a CA they are SNI_ONLY in the destination: devices must send SNI. Statuses ACTIVE,
INACTIVE and REVOKED are copied; a certificate REVOKED in the destination is never re-activated
by a sync (that is a security decision, not replication); PENDING_TRANSFER certificates are
skipped; PENDING_ACTIVATION / REGISTER_INACTIVE become INACTIVE.

No I/O here: the snapshots come in, a `SyncPlan` goes out.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from enum import Enum
from typing import Any

from orchestrator.errors import InputRejected
from orchestrator.registry.policydoc import RegionRewrite, normalize_document, rewrite_region
from orchestrator.registry.snapshot import (
    Certificate,
    Keyed,
    PolicyTarget,
    RegistrySnapshot,
    Shadow,
    TargetKind,
    Thing,
    ThingGroup,
    canonical_state,
)
from orchestrator.registry.sync.model import Action, Kind, SyncOp, SyncPlan

_COPYABLE_STATUS = {"ACTIVE": "ACTIVE", "INACTIVE": "INACTIVE", "REVOKED": "REVOKED",
                    "PENDING_ACTIVATION": "INACTIVE", "REGISTER_INACTIVE": "INACTIVE"}


class _Builder:
    """Collects operations and their dependencies. Memory matters at fleet size (issue 22): one id
    string per operation (look-ups return the stored one), dependencies as small tuples, and
    `build` frees each collected operation as it makes the final one."""

    def __init__(self, external: Container[str] = frozenset()) -> None:
        self.ops: dict[str, SyncOp] = {}
        self.deps: dict[str, tuple[str, ...]] = {}
        self.external = external  # ids of operations planned earlier (another part of the same run)

    def add(self, kind: Kind, action: Action, name: str, phase: int, step: str = "", *,
            tightens: bool = False, **params: Any) -> str:
        op = SyncOp(kind, action, name, params, (), phase, step, tightens)
        self.ops[op.id] = op
        return op.id

    def depend(self, op_id: str, *on: str | None) -> None:
        new = tuple(d for d in on if d)
        if new:
            self.deps[op_id] = self.deps.get(op_id, ()) + new

    def id_if(self, kind: Kind, action: Action, name: str, step: str = "") -> str | None:
        op_id = SyncOp(kind, action, name, step=step).id
        op = self.ops.get(op_id)
        if op is not None:
            return op.id  # the stored string, not a copy
        return op_id if op_id in self.external else None

    def build(self) -> tuple[SyncOp, ...]:
        known = {op_id: tuple(sorted({d for d in deps if d in self.ops or d in self.external}))
                 for op_id, deps in self.deps.items()}
        self.deps = {}
        kinds = {k: i for i, k in enumerate(Kind)}
        order = sorted(self.ops.values(), key=lambda op: (op.phase, kinds[op.kind], op.name, op.step))
        self.ops = {}
        out = []
        for i, op in enumerate(order):
            made = replace(op, deps=known.pop(op.id, ()))
            made.__dict__["id"] = op.id  # the cached id: one string shared with the dependencies naming it
            out.append(made)
            order[i] = out[-1]  # the collected operation is freed
        return tuple(out)


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


class PlanPart(str, Enum):
    """Which operations a plan holds: all, or one of the two passes of an overlapped sync."""

    ALL = "all"
    ENTITIES = "entities"  # everything but thing<->certificate attachments and shadows
    RELATIONS = "relations"  # only thing<->certificate attachments and shadows


def plan_sync(src: RegistrySnapshot, dst: RegistrySnapshot, prune: bool = False, *,
              region_rewrite: RegionRewrite = RegionRewrite.DESTINATION, part: PlanPart = PlanPart.ALL,
              fetch_pems: bool = False, after: SyncPlan | Container[str] | None = None) -> SyncPlan:
    """The operations that make `dst` hold what `src` holds (pure: no I/O).

    `fetch_pems`: certificates to register may come without their PEM; the executor fetches it
    from the source when it applies them (so fetching overlaps writing). `part` splits the plan
    into the two stages of an overlapped sync; deletions (`prune`) need `PlanPart.ALL`. `after`: the
    plan of the first stage, whose operations the relations depend on (things, certificates)."""
    if prune and part is not PlanPart.ALL:
        raise InputRejected("a pruning sync is planned in one part (it needs complete listings)")
    if isinstance(after, SyncPlan):
        after = frozenset(op.id for op in after.ops)
    p = _Planner(src, dst, region_rewrite, fetch_pems=fetch_pems, external=after if after is not None else frozenset())
    entities = part is not PlanPart.RELATIONS
    relations = part is not PlanPart.ENTITIES
    if not entities:
        p.warnings.clear()  # the first pass reported the source's notes
    if entities:
        p.thing_types()
        p.thing_groups()
        p.policies()
        p.policy_versions()
    p.certificates(emit=entities)
    if entities:
        p.things()
        p.deprecations()
        p.memberships(prune)
    if relations:
        p.thing_principals()
        p.shadows(prune)
    if entities:
        p.policy_targets()
    if entities:
        p.policy_detachments()
    if relations:
        p.thing_principal_detachments()
    if prune:
        _plan_deletions(p.b, src, dst, set(src.thing_principals), set(dst.thing_principals),
                        set(src.policy_targets), set(dst.policy_targets))
    return SyncPlan(
        src_region=src.region, dst_region=dst.region, prune=prune, ops=p.b.build(),
        warnings=tuple(dict.fromkeys(p.warnings)), rewritten_policies=tuple(p.rewritten),
        shadows_kept=p.shadows_kept,
        dst_certificate_arns=ArnsOf(dst.certificates_by_id, dst.certificate_arn_prefix),
        dst_group_arns=ArnsOf(dst.groups_by_name),
    )


STREAM_CHUNK = 2000  # source objects planned per chunk by `plan_entities_to`


def plan_entities_to(sink: Callable[[tuple[SyncOp, ...]], object], src: RegistrySnapshot, dst: RegistrySnapshot,
                     *, external: Container[str], region_rewrite: RegionRewrite = RegionRewrite.DESTINATION,
                     fetch_pems: bool = False, chunk: int = STREAM_CHUNK) -> SyncPlan:
    """`plan_sync(src, dst, False, part=PlanPart.ENTITIES)` handed to `sink` a chunk at a time,
    never held whole (issue 22: a first sync's entities plan, about 5 operations per thing held as
    objects, was most of its peak memory). `external` must contain the id of every operation
    `sink` was given (a spill table they are appended to): a dependency on an operation of an
    earlier chunk is looked up there. The operations and their dependencies are those of
    `plan_sync`; their order is by chunk (fleet-wide objects, certificates, things with their
    memberships, deprecations, policy attachments, policy detachments), each chunk in plan order.
    Policy attachments come by target (`_by_target`: a certificate's attachments in one chunk or
    the next), not policy after policy: the apply loads an API's operations in this order.
    Returns the plan without its operations (warnings, rewritten policies, destination ARNs)."""
    p = _Planner(src, dst, region_rewrite, fetch_pems=fetch_pems, external=external)

    def flush() -> None:
        ops = p.b.build()
        if ops:
            sink(ops)

    def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
        for i in range(0, len(items), chunk):
            yield items[i:i + chunk]

    p.thing_types()
    p.thing_groups()
    p.policies()
    p.policy_versions()
    p.undeprecations()  # before the things, which depend on them
    flush()
    with_ca = 0
    for certs in chunks(src.certificates):
        with_ca += p.cert_ops(certs)
        flush()
    if with_ca:
        p.warnings.append(f"{with_ca} CA-signed certificate(s) are registered without their CA "
                          f"in {dst.region} (SNI_ONLY): devices must send SNI there")
    for things in chunks(src.things):
        p.things(things)
        p.memberships(False, things)
        flush()
    p.deprecations(stream=True)
    flush()
    # a merge of the two sorted listings, not sets of them (issue 22: a spilled listing stays on disk)
    # each certificate's attachments together (target order), not one policy's after another's
    # (issue 22: the apply loads an API's operations in plan order, so a second policy's attachments
    # came after every first policy's one, a tail after the last certificate was registered)
    for targets in _batches(_by_target(src.policy_targets, dst.policy_targets), chunk):
        p.policy_targets(targets)
        flush()
    for targets in _batches(_minus(dst.policy_targets, src.policy_targets), chunk):
        p.policy_detachments(targets)
        flush()
    return SyncPlan(
        src_region=src.region, dst_region=dst.region, prune=False, ops=(),
        warnings=tuple(dict.fromkeys(p.warnings)), rewritten_policies=tuple(p.rewritten),
        shadows_kept=p.shadows_kept,
        dst_certificate_arns=ArnsOf(dst.certificates_by_id, dst.certificate_arn_prefix),
        dst_group_arns=ArnsOf(dst.groups_by_name),
    )


def _in_order(items: Sequence[Any]) -> Iterable[Any]:
    """`items` in order: a spilled listing is (by construction), a tuple is checked (and sorted
    when it is not: a hand-made snapshot)."""
    if isinstance(items, (Keyed, _Paged)):
        return items
    if all(items[i] <= items[i + 1] for i in range(len(items) - 1)):
        return items
    return sorted(items)


def _minus(a: Sequence[Any], b: Sequence[Any]) -> Iterator[Any]:
    """`sorted(set(a) - set(b))`, from two sorted sequences read once each (a merge)."""
    rest = iter(_in_order(b))
    other = next(rest, None)
    last = None
    for x in _in_order(a):
        if last is not None and x == last:
            continue
        last = x
        while other is not None and other < x:
            other = next(rest, None)
        if other is not None and other == x:
            continue
        yield x


MERGED_POLICIES = 64  # `_by_target` merges at most this many policies' targets (else policy order)
_MERGE_PAGE = 512  # targets read at a time from each policy's range


def _by_target(a: Sequence[PolicyTarget], b: Sequence[PolicyTarget]) -> Iterator[PolicyTarget]:
    """`_minus(a, b)` (policy targets sorted by policy, kind, target) in target order: a merge of
    each policy's sorted range, so a certificate's attachments come together. Memory: a page per
    policy. With more than `MERGED_POLICIES` policies, in policy order (`_minus`)."""
    from bisect import bisect_left, bisect_right

    a, b = _sorted_seq(a), _sorted_seq(b)
    ranges: list[tuple[str, int, int]] = []
    lo = 0
    while lo < len(a):
        policy = a[lo].policy
        hi = bisect_right(a, policy, lo, len(a), key=lambda t: t.policy)
        ranges.append((policy, lo, hi))
        if len(ranges) > MERGED_POLICIES:
            yield from _minus(a, b)
            return
        lo = hi
    if len(ranges) < 2:
        yield from _minus(a, b)
        return

    def of_policy(policy: str, lo: int, hi: int) -> Iterator[PolicyTarget]:
        b_lo = bisect_left(b, policy, key=lambda t: t.policy)
        b_hi = bisect_right(b, policy, b_lo, len(b), key=lambda t: t.policy)
        yield from _minus(_Paged(a, lo, hi), _Paged(b, b_lo, b_hi))

    yield from heapq.merge(*(of_policy(*r) for r in ranges), key=lambda t: (t.kind, t.target, t.policy))


def _sorted_seq(items: Sequence[Any]) -> Sequence[Any]:
    ordered = _in_order(items)
    return ordered if isinstance(ordered, Sequence) else list(ordered)


class _Paged(Sequence[Any]):
    """`seq[lo:hi]`, read `_MERGE_PAGE` items at a time (a spilled listing is not held whole)."""

    def __init__(self, seq: Sequence[Any], lo: int, hi: int) -> None:
        self.seq, self.lo, self.hi = seq, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i: Any) -> Any:
        raise NotImplementedError  # iterated only

    def __iter__(self) -> Iterator[Any]:
        for i in range(self.lo, self.hi, _MERGE_PAGE):
            yield from self.seq[i:min(i + _MERGE_PAGE, self.hi)]


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in items:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class ArnsOf(Mapping[str, str]):
    """The ARNs of a snapshot's certificates (or groups), read through its own index: a view, not
    a copy (issue 22: a copy per plan was an O(fleet) dict on every pass). Objects without an ARN
    are absent. `prefix` (a listing's `certificate_arn_prefix`): an object without its own ARN has
    the prefix and its key."""

    __slots__ = ("_by", "_prefix")

    def __init__(self, by_key: Mapping[str, Any], prefix: str | None = None) -> None:
        self._by = by_key
        self._prefix = prefix

    def __getitem__(self, key: str) -> str:
        arn = getattr(self._by[key], "arn", None)
        if not arn:
            if self._prefix is None:
                raise KeyError(key)
            return self._prefix + key
        return str(arn)

    def __iter__(self) -> Iterator[str]:
        if self._prefix is not None:
            return iter(self._by)
        return (k for k, v in self._by.items() if getattr(v, "arn", None))

    def __len__(self) -> int:
        return sum(1 for _ in self)


_T, _G, _P, _C, _H = Kind.THING_TYPE, Kind.THING_GROUP, Kind.POLICY, Kind.CERTIFICATE, Kind.THING
_M, _TP, _PA = Kind.GROUP_MEMBERSHIP, Kind.THING_PRINCIPAL, Kind.POLICY_ATTACHMENT
_S = Kind.SHADOW


def _patch(src: Any, dst: Any) -> Any:
    """What to write so that `dst` becomes `src`: src's values, and null for keys only dst has."""
    if not isinstance(src, dict) or not isinstance(dst, dict):
        return src
    out = {k: _patch(v, dst.get(k)) for k, v in src.items()}
    out.update({k: None for k in dst if k not in src})
    return out


def shadow_patch(src: Shadow, dst: Shadow | None) -> str:
    """The `update_thing_shadow` document that makes `dst` (None: no shadow yet) hold `src`'s
    desired and reported state; a section absent in the source is deleted (null)."""
    state: dict[str, Any] = {}
    for section in ("desired", "reported"):
        want = json.loads(getattr(src, section)) if getattr(src, section) else None
        have = json.loads(getattr(dst, section)) if dst is not None and getattr(dst, section) else None
        if want == have:
            continue
        state[section] = _patch(want, have) if want is not None else None
    return _document(state)


# The Device Shadow service's size limit: "The device's shadow supports 8 KB of data only ... Only
# the data for desired and reported state inside the state document sent to the device's shadow
# counts toward the limit" (https://docs.aws.amazon.com/iot/latest/developerguide/diagnosing-shadows.html);
# 413 RequestEntityTooLargeException otherwise. The drill's limits table has the row
# (orchestrator/drill/world/limits.py); tests/iot_strict.py enforces it.
SHADOW_STATE_BYTES = 8 * 1024
_SECTIONS = ("desired", "reported")


def shadow_state_bytes(state: Mapping[str, Any]) -> int:
    """What of an update's `state` counts toward SHADOW_STATE_BYTES: its desired and reported data
    as compact JSON; a section written as null (deleted) carries no data. Non-ASCII is counted as
    the `\\uXXXX` escapes the executor sends (never fewer bytes than the service counts)."""
    counted = {k: state[k] for k in _SECTIONS if state.get(k) is not None}
    return len(json.dumps(counted, separators=(",", ":")).encode()) if counted else 0


def _split_nulls(patch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A section's patch as (its nulls, its values): the deletions of keys only the destination
    has, and the rest, which is the source's section whole (`_patch` writes every source value)."""
    nulls: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for key, value in patch.items():
        if value is None:
            nulls[key] = None
        elif isinstance(value, dict):
            inner_nulls, inner_values = _split_nulls(value)
            if inner_nulls:
                nulls[key] = inner_nulls
            values[key] = inner_values
        else:
            values[key] = value
    return nulls, values


def _document(state: Mapping[str, Any]) -> str:
    return json.dumps({"state": state}, sort_keys=True, separators=(",", ":"))


def shadow_writes(document: str, limit: int = SHADOW_STATE_BYTES) -> tuple[str, ...]:
    """The `update_thing_shadow` documents, in order, that apply `document` (a `shadow_patch`)
    with each within the service's size limit, in as few writes as there can be.

    One: the patch itself whenever it fits (almost always). Two, when the patch is over the limit
    only because of the nulls for keys only the destination has (the result would fit): first the
    deletions, then the source's sections whole (the patch without its nulls, which is what the
    source has). The first document nulls those keys one by one where that fits, so a device never
    sees an empty section; where even the nulls are over the limit (many short keys: `"k":null` is
    longer than `"k":1`), the section itself is nulled (`{"desired": null}` deletes it), desired
    before reported. When the source's state alone is over the limit nothing can make it fit: the
    patch is returned as it is and the service refuses it (a failed operation, never `ok`).
    A pure function of the patch: the operation's parameters (and checkpoint key) do not change."""
    state = json.loads(document).get("state") or {}
    if shadow_state_bytes(state) <= limit:
        return (document,)
    deleted = [s for s in _SECTIONS if s in state and state[s] is None]
    split = {s: _split_nulls(state[s]) for s in _SECTIONS if isinstance(state.get(s), dict)}
    second = {s: values for s, (_, values) in split.items()}
    if not any(nulls for nulls, _ in split.values()) or shadow_state_bytes(second) > limit:
        return (document,)
    with_nulls = [s for s, (nulls, _) in split.items() if nulls]
    choices = [(), *((s,) for s in with_nulls), tuple(with_nulls)]
    for whole in choices:
        first: dict[str, Any] = {s: None for s in (*deleted, *whole)}
        first.update({s: nulls for s, (nulls, _) in split.items() if nulls and s not in whole})
        if shadow_state_bytes(first) <= limit:
            return _document(first), _document(second)
    raise AssertionError("nulling every section always fits")  # pragma: no cover


def _merge(stored: Any, update: Any) -> Any:
    """The Device Shadow service's merge: objects key by key, null deletes, anything else replaces."""
    if not isinstance(update, dict) or not isinstance(stored, dict):
        return update
    out = dict(stored)
    for key, value in update.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def shadow_after(current: Shadow | None, thing: str, name: str, document: str) -> Shadow:
    """The shadow (`thing`, `name`) holds after `document` is written onto `current` (None: no
    shadow yet): what a replica write's signed token must cover for each of `shadow_writes`."""
    state = json.loads(document).get("state") or {}
    out: dict[str, str | None] = {}
    for section in _SECTIONS:
        have = getattr(current, section) if current is not None else None
        stored = json.loads(have) if have else None
        out[section] = canonical_state(_merge(stored, state[section]) if section in state else stored)
    return Shadow(thing, name, out["desired"], out["reported"])


def newer_in_destination(src: Shadow, dst: Shadow) -> tuple[Shadow, bool]:
    """`src` with each section that the destination wrote after the source last wrote it taken
    from `dst` instead (last writer wins, by the shadows' own metadata times), and whether any
    was. A device that reconnected in the destination (a failover) and reported there is newer
    than the source's copy: a sync must not put the stale one back.

    A section's time is the newest of its per-field metadata timestamps. A section the source
    does not have (never written, or deleted) counts as written at the source's last write of
    any section; a section the destination does not have is never newer (nothing says it was
    deleted there). Without times on either side (a backup, a hand-made snapshot) the source
    wins, as before. Times are whole seconds: a tie goes to the source."""
    want = src
    kept = False
    for section in ("desired", "reported"):
        mine, theirs = getattr(src, section), getattr(dst, section)
        if mine == theirs or theirs is None:
            continue
        src_at = getattr(src, f"{section}_at") if mine is not None else src.updated_at
        dst_at = getattr(dst, f"{section}_at")
        if src_at is not None and dst_at is not None and dst_at > src_at:
            want = replace(want, **{section: theirs, f"{section}_at": dst_at})
            kept = True
    return want, kept


_CREATE, _UPDATE, _DELETE = Action.CREATE, Action.UPDATE, Action.DELETE


class _Planner:
    """plan_sync's steps, in dependency order; each adds operations and their dependencies."""

    def __init__(self, src: RegistrySnapshot, dst: RegistrySnapshot, rewrite: RegionRewrite, *,
                 fetch_pems: bool = False, external: Container[str] = frozenset()) -> None:
        self.fetch_pems = fetch_pems
        self.src = src
        self.dst = dst
        self.rewrite = rewrite
        self.b = _Builder(external)
        self.warnings: list[str] = list(src.notes)
        self.rewritten: list[str] = []
        self.static = {n: g for n, g in src.groups_by_name.items() if not g.dynamic}
        self.skipped_certs: set[str] = set()
        self.types_in_use: set[str] = set()
        self.shadows_kept = 0  # shadows with a section left as it is: newer in the destination

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

    def certificates(self, emit: bool = True) -> None:
        """Same PEM, same id; statuses copied, except that REVOKED in the destination stays.
        `emit=False` only works out which certificates are not copied (for the relations pass)."""
        if not emit:
            self.skipped_certs.update(c.id for c in self.src.certificates if c.status not in _COPYABLE_STATUS)
            return
        src, dst = self.src, self.dst
        with_ca = self.cert_ops(src.certificates)
        if with_ca:
            self.warnings.append(f"{with_ca} CA-signed certificate(s) are registered without their CA "
                                 f"in {dst.region} (SNI_ONLY): devices must send SNI there")

    def cert_ops(self, certs: Iterable[Certificate]) -> int:
        """`certificates`' operations for `certs`; returns how many are CA-signed."""
        with_ca = 0
        src, dst = self.src, self.dst
        for c in certs:
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
                if not c.pem and not self.fetch_pems:
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
                    self.b.add(_C, _UPDATE, c.id, 40, status=status, tightens=status != "ACTIVE")
        return with_ca

    def things(self, things: Iterable[Thing] | None = None) -> None:
        for t in self.src.things if things is None else things:
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

    def _changes(self, t: Thing) -> bool:
        """Whether `things` plans an operation (create or update) for the source thing `t`."""
        d = self.dst.things_by_name.get(t.name)
        return d is None or (t.thing_type, dict(t.attributes)) != (d.thing_type, dict(d.attributes))

    def deprecations(self, *, stream: bool = False) -> None:
        """Deprecate last: a deprecated type takes no new things. A type deprecated in both regions
        but needed by new things is un-deprecated for the run and deprecated again at the end.
        `stream`: the things were planned (and handed on) already; their dependencies on an
        un-deprecation were set then (`undeprecations` ran before them)."""
        b = self.b
        for t in self.src.thing_types:
            d = self.dst.types_by_name.get(t.name)
            if not t.deprecated:
                continue
            if d is not None and d.deprecated:
                if t.name not in self.types_in_use:
                    continue
                if not stream:  # else planned by `undeprecations`, before the things
                    b.add(_T, _UPDATE, t.name, 10, step="undeprecate", deprecated=False)
            op = b.add(_T, _UPDATE, t.name, 90, step="deprecate", deprecated=True)
            b.depend(op, b.id_if(_T, _CREATE, t.name), b.id_if(_T, _UPDATE, t.name, "undeprecate"))
            for thing in self.src.things:
                if thing.thing_type == t.name:
                    b.depend(op, b.id_if(_H, _CREATE, thing.name), b.id_if(_H, _UPDATE, thing.name))
        if stream:
            return
        for thing in self.src.things:
            if thing.thing_type:
                for action in (_CREATE, _UPDATE):
                    op_id = b.id_if(_H, action, thing.name)
                    if op_id:
                        b.depend(op_id, b.id_if(_T, _UPDATE, thing.thing_type, "undeprecate"))

    def undeprecations(self) -> None:
        """Streaming (`plan_entities_to`): the un-deprecations `deprecations` plans, before the
        things that depend on them are planned (and handed on)."""
        self.types_in_use = {t.thing_type for t in self.src.things if t.thing_type and self._changes(t)}
        for t in self.src.thing_types:
            d = self.dst.types_by_name.get(t.name)
            if t.deprecated and d is not None and d.deprecated and t.name in self.types_in_use:
                self.b.add(_T, _UPDATE, t.name, 10, step="undeprecate", deprecated=False)

    def memberships(self, prune: bool, things: Iterable[Thing] | None = None) -> None:
        """Static groups only. A thing the source took out of a group it still has is taken out
        here too (tightening: the group's policies no longer apply to it), when the source's
        listing of that group's members was complete; with prune, also from groups not covered."""
        for t in self.src.things if things is None else things:
            d = self.dst.things_by_name.get(t.name)
            current = set(d.groups) if d else set()
            for group in sorted(set(t.groups) - current):
                if group not in self.static:
                    continue
                op = self.b.add(_M, _CREATE, f"{group}/{t.name}", 60, group=group, thing=t.name)
                self.b.depend(op, self.b.id_if(_H, _CREATE, t.name), self.b.id_if(_G, _CREATE, group))
            if d is None:
                continue
            for group in sorted(current - set(t.groups)):
                if group in self.static and self.src.coverage.group(group):
                    self.b.add(_M, _DELETE, f"{group}/{t.name}", 130, group=group, thing=t.name, tightens=True)
                elif prune and group in self.src.groups_by_name:
                    self.b.add(_M, _DELETE, f"{group}/{t.name}", 130, group=group, thing=t.name)

    def thing_principals(self) -> None:
        for a in sorted(set(self.src.thing_principals) - set(self.dst.thing_principals)):
            if a.certificate_id in self.skipped_certs or a.certificate_id not in self.src.certificates_by_id:
                continue
            op = self.b.add(_TP, _CREATE, f"{a.thing}/{a.certificate_id}", 70, thing=a.thing,
                            certificate_id=a.certificate_id)
            self.b.depend(op, self.b.id_if(_H, _CREATE, a.thing), self.b.id_if(_C, _CREATE, a.certificate_id))

    def thing_principal_detachments(self) -> None:
        """A certificate the source detached from a thing it still has (tightening), when the
        source read that thing's principals."""
        src = self.src
        for a in sorted(set(self.dst.thing_principals) - set(src.thing_principals)):
            if a.thing in src.things_by_name and src.coverage.thing(a.thing):
                self.b.add(_TP, _DELETE, f"{a.thing}/{a.certificate_id}", 120, thing=a.thing,
                           certificate_id=a.certificate_id, tightens=True)

    def policy_detachments(self, targets: Iterable[PolicyTarget] | None = None) -> None:
        """A policy the source detached from a certificate or static group it still has
        (tightening), when the source listed that policy's targets (or, one certificate at a time,
        that certificate's policies)."""
        src = self.src
        for a in sorted(set(self.dst.policy_targets) - set(src.policy_targets)) if targets is None else targets:
            if a.kind is TargetKind.CERTIFICATE:
                exists = a.target in src.certificates_by_id
                covered = src.coverage.certificate(a.target) or (
                    a.policy in src.policies_by_name and src.coverage.policy(a.policy))
            else:
                exists = a.target in self.static
                covered = a.policy in src.policies_by_name and src.coverage.policy(a.policy)
            if exists and covered:
                self.b.add(_PA, _DELETE, f"{a.policy}/{a.kind.value}:{a.target}", 110, policy=a.policy,
                           target_kind=a.kind.value, target=a.target, tightens=True)

    def policy_versions(self) -> None:
        """The destination keeps only versions whose document the source still has as a version
        (tightening: a deleted version could be made the default again). AWS keeps at most five
        versions and never deletes the default one: stale non-default versions go before the new
        default is created (room under the limit); the old default, once replaced, after it."""
        src, dst = self.src, self.dst
        for p in src.policies:
            d = dst.policies_by_name.get(p.name)
            if d is None or p.versions is None or d.versions is None or not src.coverage.versions(p.name):
                continue
            keep = {normalize_document(rewrite_region(v.document, src.region, dst.region, self.rewrite)[0])
                    for v in p.versions}
            update = self.b.id_if(_P, _UPDATE, p.name)
            stale: list[str] = []
            for v in d.versions:
                if v.document in keep:
                    continue
                if v.default and update is None:
                    continue  # the default equals the source's (else `policies` planned an update)
                op = self.b.add(Kind.POLICY_VERSION, _DELETE, f"{p.name}/{v.id}", 31 if v.default else 29,
                                policy=p.name, version_id=v.id, tightens=True)
                if v.default:
                    self.b.depend(op, update)  # no longer the default once the new one is
                else:
                    stale.append(op)
            if update is not None:
                self.b.depend(update, *stale)

    def shadows(self, prune: bool) -> None:
        """Classic and named shadows, only of things that exist in the destination (or are created
        by this plan); an unchanged shadow (same desired and reported state) costs nothing. A
        section the destination wrote after the source last did is kept (`newer_in_destination`)."""
        dst_shadows = {(sh.thing, sh.name): sh for sh in self.dst.shadows}
        src_keys = set()
        absent = 0
        for sh in self.src.shadows:
            src_keys.add((sh.thing, sh.name))
            create = self.b.id_if(_H, _CREATE, sh.thing)
            if sh.thing not in self.dst.things_by_name and create is None:
                absent += 1
                continue
            d = dst_shadows.get((sh.thing, sh.name))
            if d is not None and (d.desired, d.reported) == (sh.desired, sh.reported):
                continue
            if d is None and sh.desired is None and sh.reported is None:
                continue
            if d is not None:
                sh, kept = newer_in_destination(sh, d)
                if kept:
                    self.shadows_kept += 1
                if (d.desired, d.reported) == (sh.desired, sh.reported):
                    continue  # all the destination has is newer: nothing to write
            document = shadow_patch(sh, d)
            op = self.b.add(_S, _UPDATE, sh.key, 75, thing=sh.thing, shadow=sh.name, document=document)
            self.b.depend(op, create)
        if absent:
            self.warnings.append(f"{absent} shadow(s) of things missing in {self.dst.region} not copied")
        if prune:
            for d in self.dst.shadows:
                if (d.thing, d.name) not in src_keys and d.thing in self.src.things_by_name:
                    self.b.add(_S, _DELETE, d.key, 125, thing=d.thing, shadow=d.name)

    def policy_targets(self, targets: Iterable[PolicyTarget] | None = None) -> None:
        for a in sorted(set(self.src.policy_targets) - set(self.dst.policy_targets)) if targets is None else targets:
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
        if b.id_if(PA, DELETE, f"{a.policy}/{a.kind.value}:{a.target}"):
            continue  # planned as tightening
        b.add(PA, DELETE, f"{a.policy}/{a.kind.value}:{a.target}", 110, policy=a.policy,
              target_kind=a.kind.value, target=a.target)
    for a in sorted(dst_tp - src_tp):
        if b.id_if(TP, DELETE, f"{a.thing}/{a.certificate_id}"):
            continue  # planned as tightening
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


