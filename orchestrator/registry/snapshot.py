"""A region's IoT registry as typed, frozen values, and the reader that takes one.

What is captured: thing types, thing groups (static; dynamic groups are noted, not copied), things
(type, attributes, static groups, registry version), device shadows, policies (default version,
normalized JSON), certificates (id, PEM, status, mode), thing<->certificate attachments and
policy<->certificate/thing-group attachments. Certificate PEMs are public; private keys are never
fetched or stored (the API cannot return them anyway).

Identity across regions: things, types, groups and policies by name; certificates by id (the
SHA-256 of the certificate, the same in every region when the same PEM is registered). ARNs are
region-specific and kept only as hints (`compare=False`).

Reading is split by cost (the sync reads in proportion to what changed, sync/run.py):
`read_listing` takes what the paged listings give, per region: list_thing_types, list_thing_groups +
describe_thing_group per group, list_things (250 a page, with each thing's `version`),
list_things_in_thing_group per group, list_policies + get_policy + list_policy_versions per policy
(get_policy_version per non-default version), list_targets_for_policy per policy, list_certificates
(status and mode come with the listing);
the five independent listings run at once. `read_principals` is one list_thing_principals per
thing (no bulk form), `things_of_certificates` one list_principal_things per certificate,
`with_pems` one describe_certificate per certificate, and `read_shadows` (iot-data) one
list_named_shadows_for_thing plus one get_thing_shadow per shadow of each thing.

`Coverage` says what a read covered completely (which things' principals, policies' targets and
versions, groups' members): the planner tightens (detaches) only that.

Shadows (`Shadow`): classic (name "") and named; `state.desired` and `state.reported` as canonical
JSON; the version is the region's own counter (not compared across regions).
"""

from __future__ import annotations

import json
import sys
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Collection, Container, ItemsView, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, overload

from orchestrator.errors import InputRejected
from orchestrator.registry.calls import Caller, error_code
from orchestrator.registry.policydoc import neutral, normalize_document
from orchestrator.registry.spill import SortedRows, SpillStore, SpillTable

SNAPSHOT_FORMAT = 1

if TYPE_CHECKING:
    from orchestrator.registry.packed import CertificateColumns, TargetColumns, ThingColumns

T = TypeVar("T")
R = TypeVar("R")


class TargetKind(str, Enum):
    CERTIFICATE = "certificate"
    THING_GROUP = "thing_group"


@dataclass(frozen=True)
class ThingType:
    name: str
    description: str | None = None
    searchable_attributes: tuple[str, ...] = ()
    deprecated: bool = False


@dataclass(frozen=True)
class ThingGroup:
    name: str
    parent: str | None = None
    description: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    query: str | None = None  # dynamic groups have a fleet-indexing query; they are not copied
    arn: str | None = field(default=None, compare=False)

    @property
    def dynamic(self) -> bool:
        return self.query is not None


@dataclass(frozen=True, slots=True)
class Thing:
    name: str
    thing_type: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    groups: tuple[str, ...] = ()  # static groups it is a direct member of, sorted
    version: int | None = field(default=None, compare=False)  # the registry's, per region


CLASSIC = ""  # the name of a thing's classic (unnamed) shadow


@dataclass(frozen=True, order=True, slots=True)
class Shadow:
    """One device shadow: `state.desired` and `state.reported` as canonical JSON (None: absent).

    Versions are per region (each region counts its own updates): kept as hints, not compared.
    `desired_at` / `reported_at`: when that section was last written (epoch seconds, the newest of
    its per-field `metadata` timestamps; None: the section is empty or the times were not read, as
    in a backup). The document's top-level `timestamp` is not used: in a GetThingShadow answer it
    is the time the answer was generated, not of the last update. Not compared either.
    """

    thing: str
    name: str = CLASSIC
    desired: str | None = None
    reported: str | None = None
    version: int | None = field(default=None, compare=False)
    desired_at: int | None = field(default=None, compare=False)
    reported_at: int | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.thing}/{self.name or '$classic'}"

    @property
    def updated_at(self) -> int | None:
        """The last write this shadow's metadata shows (None: no times known)."""
        times = [t for t in (self.desired_at, self.reported_at) if t is not None]
        return max(times) if times else None


@dataclass(frozen=True, order=True)
class PolicyVersion:
    """One version of a policy: its id is the region's own (not compared across regions)."""

    id: str
    document: str  # normalized JSON
    default: bool = False


@dataclass(frozen=True)
class Policy:
    name: str
    document: str  # normalized JSON of the default version
    # every version (the default among them), or None when they were not read
    versions: tuple[PolicyVersion, ...] | None = field(default=None, compare=False, repr=False)


ALL = None  # a Coverage field that is None covers every object of its kind in the snapshot


@dataclass(frozen=True)
class Coverage:
    """What a read of a region covered *completely*, so that what the snapshot lacks there is
    known to be absent, not merely unread. Tightening (a detach, a removal from a group, a deleted
    policy version) is planned only from a source whose read covered it: a partial read never
    detaches what it did not look at.

    Each field is None (`ALL`: every such object in the snapshot was read completely) or the names
    of those that were: `principals` things whose certificates were listed (`list_thing_principals`),
    `policy_targets` policies whose targets were listed, `certificate_policies` certificates whose
    attached policies were listed (replication reads per certificate), `groups` static groups whose
    members were listed, `policy_versions` policies whose versions were listed. The default covers
    nothing (a backup, a hand-made snapshot)."""

    principals: frozenset[str] | None = frozenset()
    policy_targets: frozenset[str] | None = frozenset()
    certificate_policies: frozenset[str] | None = frozenset()
    groups: frozenset[str] | None = frozenset()
    policy_versions: frozenset[str] | None = frozenset()

    @classmethod
    def complete(cls) -> Coverage:
        return cls(ALL, ALL, ALL, ALL, ALL)

    @staticmethod
    def _has(names: frozenset[str] | None, name: str) -> bool:
        return names is None or name in names

    def thing(self, name: str) -> bool:
        return self._has(self.principals, name)

    def policy(self, name: str) -> bool:
        return self._has(self.policy_targets, name)

    def certificate(self, cert_id: str) -> bool:
        return self._has(self.certificate_policies, cert_id)

    def group(self, name: str) -> bool:
        return self._has(self.groups, name)

    def versions(self, name: str) -> bool:
        return self._has(self.policy_versions, name)

    def with_principals(self, things: Iterable[str] | None) -> Coverage:
        """This coverage, with the principals of `things` (None: of every thing) read."""
        return replace(self, principals=None if things is None else frozenset(things))


@dataclass(frozen=True, slots=True)
class Certificate:
    id: str
    status: str
    pem: str | None = field(default=None, compare=False, repr=False)  # None: not fetched
    mode: str | None = field(default=None, compare=False)  # DEFAULT | SNI_ONLY (moto: None)
    ca_certificate_id: str | None = field(default=None, compare=False)
    arn: str | None = field(default=None, compare=False)


@dataclass(frozen=True, order=True, slots=True)
class ThingPrincipal:
    thing: str
    certificate_id: str


@dataclass(frozen=True, order=True, slots=True)
class PolicyTarget:
    policy: str
    kind: TargetKind
    target: str  # a certificate id or a thing group name


@dataclass(frozen=True)
class RegistrySnapshot:
    region: str
    thing_types: tuple[ThingType, ...] = ()
    thing_groups: tuple[ThingGroup, ...] = ()
    things: tuple[Thing, ...] = ()
    policies: tuple[Policy, ...] = ()
    certificates: tuple[Certificate, ...] = ()
    thing_principals: tuple[ThingPrincipal, ...] = ()
    policy_targets: tuple[PolicyTarget, ...] = ()
    shadows: tuple[Shadow, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)  # what was seen but not captured
    # why the listing is not provably complete (a full page without a continuation token); empty:
    # every listing ended on a short page without a token. Pruning trusts only a complete listing.
    gaps: tuple[str, ...] = field(default=(), compare=False)
    coverage: Coverage = field(default_factory=Coverage, compare=False, repr=False)
    # a listing read with `derived_arns`: the ARN of a certificate whose `arn` is None is this prefix
    # and its id (`certificate_arn`); None: a certificate's ARN is its `arn`
    certificate_arn_prefix: str | None = field(default=None, compare=False, repr=False)

    def certificate_arn(self, cert: Certificate) -> str | None:
        """`cert`'s ARN: its own, or the one derived from the listing's prefix (`read_listing`'s
        `derived_arns`: the prefix was taken from an ARN the listing gave, and only a certificate
        whose listed ARN is exactly that prefix and its id is held without it)."""
        if cert.arn or self.certificate_arn_prefix is None:
            return cert.arn
        return self.certificate_arn_prefix + cert.id

    # -- lookups -------------------------------------------------------------------------------
    @cached_property
    def types_by_name(self) -> dict[str, ThingType]:
        return {t.name: t for t in self.thing_types}

    @cached_property
    def groups_by_name(self) -> dict[str, ThingGroup]:
        return {g.name: g for g in self.thing_groups}

    @cached_property
    def things_by_name(self) -> Mapping[str, Thing]:
        if isinstance(self.things, Keyed):
            return self.things.by_key()  # on disk or packed: look-ups by key, never a dict of the fleet
        return {t.name: t for t in self.things}

    @cached_property
    def policies_by_name(self) -> dict[str, Policy]:
        return {p.name: p for p in self.policies}

    @cached_property
    def certificates_by_id(self) -> Mapping[str, Certificate]:
        if isinstance(self.certificates, Keyed):
            return self.certificates.by_key()
        return {c.id: c for c in self.certificates}

    @property
    def spilled(self) -> bool:
        """Whether the per-thing listings (things, certificates, policy targets) are on disk."""
        return isinstance(self.things, Spilled)

    def counts(self) -> dict[str, int]:
        return {
            "thing_types": len(self.thing_types),
            "thing_groups": len(self.thing_groups),
            "things": len(self.things),
            "policies": len(self.policies),
            "certificates": len(self.certificates),
            "thing_principals": len(self.thing_principals),
            "policy_targets": len(self.policy_targets),
            "shadows": len(self.shadows),
        }

    # -- serialization -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "region": self.region,
            "thing_types": [
                {"name": t.name, "description": t.description,
                 "searchable_attributes": list(t.searchable_attributes), "deprecated": t.deprecated}
                for t in self.thing_types
            ],
            "thing_groups": [
                {"name": g.name, "parent": g.parent, "description": g.description,
                 "attributes": dict(g.attributes), "query": g.query}
                for g in self.thing_groups
            ],
            "things": [
                {"name": t.name, "thing_type": t.thing_type, "attributes": dict(t.attributes),
                 "groups": list(t.groups), "version": t.version}
                for t in self.things
            ],
            "policies": [{"name": p.name, "document": p.document} for p in self.policies],
            "certificates": [
                {"id": c.id, "status": c.status, "mode": c.mode,
                 "ca_certificate_id": c.ca_certificate_id, "pem": c.pem}
                for c in self.certificates
            ],
            "thing_principals": [
                {"thing": a.thing, "certificate_id": a.certificate_id} for a in self.thing_principals
            ],
            "policy_targets": [
                {"policy": a.policy, "kind": a.kind.value, "target": a.target}
                for a in self.policy_targets
            ],
            "shadows": [
                {"thing": sh.thing, "name": sh.name, "desired": sh.desired, "reported": sh.reported,
                 "version": sh.version}
                for sh in self.shadows
            ],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "<memory>") -> RegistrySnapshot:
        try:
            if data.get("format") != SNAPSHOT_FORMAT:
                raise InputRejected(f"{source}: registry snapshot format {data.get('format')!r} "
                                    f"is not supported (expected {SNAPSHOT_FORMAT})")
            return cls(
                region=str(data["region"]),
                thing_types=tuple(
                    ThingType(t["name"], t.get("description") or None,
                              tuple(t.get("searchable_attributes") or ()), bool(t.get("deprecated")))
                    for t in data.get("thing_types", [])),
                thing_groups=tuple(
                    ThingGroup(g["name"], g.get("parent"), g.get("description") or None,
                               dict(g.get("attributes") or {}), g.get("query"))
                    for g in data.get("thing_groups", [])),
                things=tuple(
                    Thing(t["name"], t.get("thing_type"), dict(t.get("attributes") or {}),
                          tuple(sorted(t.get("groups") or ())), t.get("version"))
                    for t in data.get("things", [])),
                policies=tuple(Policy(p["name"], normalize_document(p["document"]))
                               for p in data.get("policies", [])),
                certificates=tuple(
                    Certificate(c["id"], c["status"], c.get("pem"), c.get("mode"),
                                c.get("ca_certificate_id"))
                    for c in data.get("certificates", [])),
                thing_principals=tuple(sorted(
                    ThingPrincipal(a["thing"], a["certificate_id"])
                    for a in data.get("thing_principals", []))),
                policy_targets=tuple(sorted(
                    PolicyTarget(a["policy"], TargetKind(a["kind"]), a["target"])
                    for a in data.get("policy_targets", []))),
                shadows=tuple(sorted(
                    Shadow(str(sh["thing"]), str(sh.get("name") or CLASSIC),
                           canonical_state(sh.get("desired")), canonical_state(sh.get("reported")),
                           sh.get("version"))
                    for sh in data.get("shadows", []))),  # absent in backups made before shadows
                notes=tuple(data.get("notes", [])),
            )
        except InputRejected:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputRejected(f"{source}: malformed registry snapshot ({exc!r})") from None

    def listing(self) -> dict[str, Any]:
        """A region-neutral, order-independent view: equal listings mean equal registries."""
        doc = self.to_json()
        for cert in doc["certificates"]:
            for key in ("pem", "mode", "ca_certificate_id"):
                cert.pop(key)
        for item in (*doc["things"], *doc["shadows"]):
            item.pop("version")  # each region counts its own
        for policy in doc["policies"]:
            policy["document"] = neutral(policy["document"], self.region)
        doc.pop("region")
        doc.pop("notes")
        for key, value in doc.items():
            if isinstance(value, list):
                doc[key] = sorted(value, key=lambda item: json.dumps(item, sort_keys=True))
        return doc


# -- listings on disk (issue 22) -------------------------------------------------------------------

class Keyed(Sequence[T]):
    """A listing's records (things, certificates or policy targets) in key order by construction,
    never held as a tuple of records: on disk (`Spilled`) or packed in memory (`packed.py`).
    `by_key`: look-ups by a thing's name or a certificate's id (as `RegistrySnapshot.things_by_name`
    and `certificates_by_id` give them)."""

    def by_key(self) -> Mapping[str, T]:
        raise NotImplementedError


class Spilled(Keyed[T]):
    """A listing's records (things, certificates or policy targets) in the run's spill file
    (`spill.SortedRows`), in the order the in-memory listing has them (by key): a sequence read a
    page at a time, by position or slice, never held whole. `decode(key, value)` makes a record
    (its key interned: the reads and plans that name it share one string). Used as a
    `RegistrySnapshot` field in place of a tuple; `things_by_name` / `certificates_by_id` are then
    `SpilledIndex` look-ups."""

    def __init__(self, rows: SortedRows, decode: Callable[[str, Any], T]) -> None:
        self.rows = rows
        self._decode = decode

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        n = len(self.rows)
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            return [self._decode(k, v) for k, v in self.rows.rows(start, stop)]
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(i)
        return self._decode(*self.rows.rows(j, j + 1)[0])

    def __iter__(self) -> Iterator[T]:
        for key, value in self.rows.items():
            yield self._decode(key, value)

    def __repr__(self) -> str:
        return f"Spilled({self.rows.name}, {len(self.rows)} rows)"

    def by_key(self) -> SpilledIndex[T]:
        return SpilledIndex(self)


class _SpilledItems(ItemsView[str, T]):
    def __iter__(self) -> Iterator[tuple[str, T]]:
        spilled: Spilled[T] = self._mapping.spilled  # type: ignore[attr-defined]
        for key, value in spilled.rows.items():
            yield key, spilled._decode(key, value)


class SpilledIndex(Mapping[str, T]):
    """A `Spilled` listing by key (a thing's name, a certificate's id): one indexed read per look-up."""

    def __init__(self, spilled: Spilled[T]) -> None:
        self.spilled = spilled

    def __getitem__(self, key: str) -> T:
        found, value = self.spilled.rows.get(key)
        if not found:
            raise KeyError(key)
        return self.spilled._decode(key, value)

    def __contains__(self, key: object) -> bool:
        return key in self.spilled.rows

    def __iter__(self) -> Iterator[str]:
        return self.spilled.rows.keys()

    def __len__(self) -> int:
        return len(self.spilled.rows)

    def items(self) -> ItemsView[str, T]:
        return _SpilledItems(self)


_KIND = {k.value: k for k in TargetKind}


def _thing_of(key: str, v: Any) -> Thing:
    return Thing(sys.intern(key), v[0], v[1], v[2], v[3])


def _certificate_of(key: str, v: Any) -> Certificate:
    return Certificate(sys.intern(key), v[0], v[1], v[2], v[3], v[4])


def _target_key(policy: str, kind: TargetKind, target: str) -> str:
    """A policy target's key: its order is `PolicyTarget`'s (policy, kind, target): no name holds NUL."""
    return f"{policy}\0{kind.value}\0{target}"


def _target_of(key: str, _v: Any) -> PolicyTarget:
    policy, kind, target = key.split("\0", 2)
    return PolicyTarget(policy, _KIND[kind], sys.intern(target))


def spilled_things(rows: SortedRows) -> Spilled[Thing]:
    return Spilled(rows, _thing_of)


def spilled_certificates(rows: SortedRows) -> Spilled[Certificate]:
    return Spilled(rows, _certificate_of)


def spilled_targets(rows: SortedRows) -> Spilled[PolicyTarget]:
    return Spilled(rows, _target_of)


# -- reading ---------------------------------------------------------------------------------------

class SharedValues:
    """One object for each distinct value a listing's records hold many times over (issue 22): a
    thing's attributes (a fleet's things often carry the same few sets of attributes, and most
    none) and its sorted static groups (the fleet's things fall in a few combinations of groups).
    Equal values are the same object; records are frozen, and their attributes are never mutated
    (every consumer copies them). An attributes dict keeps the order the listing gave (the key is
    its items in that order), so a record is exactly what it would be without sharing."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self._groups: dict[tuple[str, ...], tuple[str, ...]] = {}

    def attributes(self, raw: Mapping[str, str] | None) -> dict[str, str]:
        key = tuple(raw.items()) if raw else ()
        found = self._attributes.get(key)
        if found is None:
            found = self._attributes[key] = dict(key)
        return found

    def groups(self, names: Iterable[str]) -> tuple[str, ...]:
        key = tuple(sorted(names))
        return self._groups.setdefault(key, key)


def pmap(fn: Callable[[T], R], items: Iterable[T], concurrency: int) -> list[R]:
    """`fn` over `items` on `concurrency` threads, results in order. At most 8 x `concurrency`
    calls are submitted ahead (not one future per item: at 1M things those cost 1 KB per thing)."""
    items = list(items)
    if concurrency <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    out: list[R] = []
    ahead: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="registry-read") as pool:
        try:
            for item in items:
                ahead.append(pool.submit(fn, item))
                if len(ahead) >= 8 * concurrency:
                    out.append(ahead.popleft().result())
            while ahead:
                out.append(ahead.popleft().result())
        except BaseException:
            for future in ahead:
                future.cancel()
            raise
    return out


def missing(exc: BaseException) -> bool:
    """The error AWS IoT answers for an object that does not exist."""
    return error_code(exc) == "ResourceNotFoundException"


_missing = missing


def describe_thing_group(caller: Caller, name: str) -> ThingGroup | None:
    """One thing group as DescribeThingGroup gives it (None when it does not exist)."""
    try:
        d = caller.call("describe_thing_group", thingGroupName=name)
    except Exception as exc:
        if missing(exc):
            return None
        raise
    props = d.get("thingGroupProperties") or {}
    meta = d.get("thingGroupMetadata") or {}
    return ThingGroup(
        name=d.get("thingGroupName") or name,
        parent=meta.get("parentGroupName") or None,
        description=props.get("thingGroupDescription") or None,
        attributes={str(k): str(v) for k, v in ((props.get("attributePayload") or {}).get("attributes") or {}).items()},
        query=d.get("queryString"),
        arn=d.get("thingGroupArn"),
    )


def _cert_id_from_arn(arn: str) -> str | None:
    """Interned (issue 22): a certificate's id is held by its `Certificate`, its policy targets and
    its attachments, in both regions' listings; one string instead of one copy each."""
    return sys.intern(arn.rsplit(":cert/", 1)[1]) if ":cert/" in arn else None


def _group_from_arn(arn: str) -> str | None:
    return sys.intern(arn.rsplit(":thinggroup/", 1)[1]) if ":thinggroup/" in arn else None


def canonical_state(value: Any) -> str | None:
    """A shadow state section (dict or JSON text) as canonical JSON; None when absent or empty.

    Keys set to null and objects left empty are dropped: AWS deletes a key written as null, and
    moto leaves `{}` behind where it should not, so both regions compare alike."""
    if isinstance(value, str):
        value = json.loads(value)

    def prune(v: Any) -> Any:
        if isinstance(v, dict):
            out = {k: prune(x) for k, x in v.items() if x is not None}
            return {k: x for k, x in out.items() if x != {}}
        if isinstance(v, list):
            return [prune(x) for x in v]
        return v

    pruned = prune(value) if value is not None else None
    if pruned is None or pruned == {}:
        return None
    return json.dumps(pruned, sort_keys=True, separators=(",", ":"))


def read_snapshot(iot_client: Any, *, caller: Caller | None = None, pems: bool = True,
                  concurrency: int = 1, data_caller: Caller | None = None) -> RegistrySnapshot:
    """Read the registry of the client's region. `pems=False` skips describe_certificate;
    `data_caller` (an `iot-data` client's Caller) also reads every thing's shadows."""
    caller = caller or Caller(iot_client)
    listing = read_listing(caller, concurrency=concurrency)
    partial: set[str] = set()
    principals, notes = read_principals(caller, [t.name for t in listing.things], concurrency=concurrency,
                                        partial=partial)
    shadows: tuple[Shadow, ...] = ()
    if data_caller is not None:
        shadows = read_shadows(data_caller, [t.name for t in listing.things], concurrency=concurrency)
    covered = None if not partial else frozenset(t.name for t in listing.things if t.name not in partial)
    snapshot = replace(listing, thing_principals=principals, shadows=shadows,
                       notes=tuple(sorted(set(listing.notes) | set(notes))),
                       coverage=listing.coverage.with_principals(covered))
    if pems:
        snapshot = with_pems(snapshot, caller, [c.id for c in snapshot.certificates], concurrency=concurrency)
    return snapshot


def _listing_coverage(policies: Iterable[Policy], groups: Iterable[ThingGroup],
                      partial: Container[tuple[str, str]]) -> Coverage:
    """What a listing read completely: every policy's targets and every static group's members whose
    listing was not cut short (`partial`), each policy's versions; principals and certificate policies
    per certificate are not read by a listing (only through the policies' targets)."""
    policies = list(policies)
    return Coverage(
        principals=frozenset(),
        policy_targets=frozenset(p.name for p in policies if ("list_targets_for_policy", p.name) not in partial),
        certificate_policies=frozenset(),
        groups=frozenset(g.name for g in groups
                         if not g.dynamic and ("list_things_in_thing_group", g.name) not in partial),
        policy_versions=frozenset(p.name for p in policies if p.versions is not None),
    )


def read_listing(caller: Caller, *, concurrency: int = 1, versions: bool = True,
                 spill: SpillStore | None = None, name: str = "listing", derived_arns: bool = False,
                 packed: bool = False) -> RegistrySnapshot:
    """Everything the paged listings give (types, groups, things with their versions and groups,
    policies with their versions, certificates, policy targets): no per-thing and no
    per-certificate call. The five independent listings run at the same time (each API has its
    own budget). `versions`: list each policy's versions (`list_policy_versions`, plus one
    `get_policy_version` per non-default version), so that a version deleted in one region can be
    deleted in another. The coverage says which policies' targets and versions and which groups'
    members were listed completely (the principals of things are not read here).

    `spill` (issue 22): the per-thing listings (things, group members, certificates, policy
    targets) go to tables of that spill file (named after `name`) a page at a time as they are
    read, and the snapshot's `things`, `certificates` and `policy_targets` are `Spilled` sequences
    over them: the listing is never held whole. Same calls, same records, same order.

    `derived_arns` (issue 22, in memory only): a certificate whose listed ARN is the region's
    certificate ARN prefix (`arn:<partition>:iot:<region>:<account>:cert/`, taken from the first
    listed ARN) and its id is held with `arn=None`, and the snapshot's `certificate_arn_prefix`
    says how to make it again (`RegistrySnapshot.certificate_arn`): one string per listing instead
    of one ARN per certificate (≈ 150 B per thing and region). Any other ARN is kept as listed.

    `packed` (issue 22, in memory only; implies `derived_arns`): the things, certificates and
    policy targets are held as columns (`packed.py`: ≈ 50 B per thing beside the names' and ids'
    strings, where records took ≈ 300-375 B), filled a page at a time and sorted once; the
    snapshot's `things`, `certificates` and `policy_targets` are `packed.Packed*` sequences. Same
    calls, same records, same order, the region's own canary left out as `without_regional` does."""
    from orchestrator.registry import packed as pk

    region = caller.region
    derived_arns = derived_arns or packed
    thing_cols = pk.ThingColumns() if packed else None
    cert_cols = pk.CertificateColumns() if packed else None
    target_cols = pk.TargetColumns() if packed else None
    stage: dict[str, SpillTable] = {}
    if spill is not None:
        for what in ("things", "members", "certificates", "targets"):
            spill.drop(f"{name}_{what}")
            spill.drop(f"{name}_{what}_stage")  # a read stopped by an error may have left one
            stage[what] = spill.table(f"{name}_{what}_stage")
    notes: list[str] = []
    gaps: list[str] = []
    partial: set[tuple[str, str]] = set()  # (api, owner) whose listing may be short
    arn_prefix: list[str] = []  # `derived_arns`: the certificate ARN prefix, once seen

    def checked(api: str, owner: str | None = None, **kwargs: Any) -> Any:
        """caller.pages, noting a page that may not be the last: full, yet without a continuation
        token (AWS ends a listing on a page with a token or on a short page)."""
        def on_page(items: int, asked: int | None, more: bool) -> None:
            if not more and asked is not None and items >= asked:
                what = f" {kwargs}" if kwargs else ""
                gaps.append(f"{api}{what}: a full page of {items} without a continuation token")
                if owner is not None:
                    partial.add((api, owner))

        return caller.pages(api, on_page=on_page, **kwargs)

    def thing_types() -> list[ThingType]:
        types = []
        for t in checked("list_thing_types"):
            props = t.get("thingTypeProperties") or {}
            meta = t.get("thingTypeMetadata") or {}
            types.append(ThingType(
                name=t["thingTypeName"],
                description=props.get("thingTypeDescription") or None,
                searchable_attributes=tuple(props.get("searchableAttributes") or ()),
                deprecated=bool(meta.get("deprecated")),
            ))
        return types

    def members(name: str) -> tuple[str, list[str]]:
        try:
            if spill is not None:  # (thing NUL group): in (thing, group) order
                stage["members"].add((f"{t}\0{name}", "", None)
                                     for t in checked("list_things_in_thing_group", name, thingGroupName=name))
                return name, []
            return name, [sys.intern(t) for t in checked("list_things_in_thing_group", name, thingGroupName=name)]
        except Exception as exc:
            if _missing(exc):
                return name, []
            raise

    def groups_and_members() -> tuple[list[ThingGroup], list[tuple[str, list[str]]]]:
        group_names = sorted({g["groupName"] for g in checked("list_thing_groups")})
        described = pmap(lambda name: describe_thing_group(caller, name), group_names, concurrency)
        groups = [g for g in described if g is not None]
        return groups, pmap(members, [g.name for g in groups if not g.dynamic], concurrency)

    def policy(name: str) -> Policy | None:
        try:
            p = caller.call("get_policy", policyName=name)
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        document = normalize_document(p["policyDocument"])
        found = None
        if versions:
            found = policy_versions(caller, name, default=(p.get("defaultVersionId"), document))
        return Policy(name=p["policyName"], document=document, versions=found)

    def targets(name: str) -> list[PolicyTarget]:
        if spill is not None:
            try:
                stage["targets"].add(_target_row(name, arn, notes)
                                     for arn in checked("list_targets_for_policy", name, policyName=name))
            except Exception as exc:
                if not _missing(exc):
                    raise
            return []
        try:
            arns = list(checked("list_targets_for_policy", name, policyName=name))
        except Exception as exc:
            if _missing(exc):
                return []
            raise
        found = []
        for arn in arns:
            cert_id = _cert_id_from_arn(arn)
            group = _group_from_arn(arn)
            if target_cols is not None and (cert_id is not None or group is not None):
                target_cols.add(name, *((TargetKind.CERTIFICATE, sys.intern(cert_id)) if cert_id is not None
                                        else (TargetKind.THING_GROUP, sys.intern(group or ""))))
            elif cert_id is not None:
                found.append(PolicyTarget(name, TargetKind.CERTIFICATE, cert_id))
            elif group is not None:
                found.append(PolicyTarget(name, TargetKind.THING_GROUP, group))
            else:
                notes.append(f"policy {name}: target {arn} is not a certificate or thing group; not copied")
        return found

    def policies_and_targets() -> tuple[list[Policy], list[PolicyTarget]]:
        policy_names = sorted({p["policyName"] for p in checked("list_policies")})
        policies = [p for p in pmap(policy, policy_names, concurrency) if p is not None]
        found = [a for batch in pmap(targets, [p.name for p in policies], concurrency) for a in batch]
        return policies, found

    def certificates() -> list[Certificate]:
        if spill is not None:
            stage["certificates"].add((c["certificateId"], "", (c["status"], None, c.get("certificateMode"),
                                                                c.get("caCertificateId"), c.get("certificateArn")))
                                      for c in checked("list_certificates"))
            return []
        out = []
        for c in checked("list_certificates"):
            cert_id, arn = sys.intern(c["certificateId"]), c.get("certificateArn")
            if derived_arns and arn:
                if not arn_prefix and arn.endswith(":cert/" + cert_id):
                    arn_prefix.append(sys.intern(arn[:len(arn) - len(cert_id)]))
                if arn_prefix and len(arn) == len(arn_prefix[0]) + len(cert_id) \
                        and arn.startswith(arn_prefix[0]) and arn.endswith(cert_id):
                    arn = None  # `certificate_arn` makes it again
            if cert_cols is not None:
                cert_cols.add(cert_id, c["status"], c.get("certificateMode"), c.get("caCertificateId"), arn)
                continue
            out.append(Certificate(id=cert_id, status=c["status"], mode=c.get("certificateMode"),
                                   ca_certificate_id=c.get("caCertificateId"), arn=arn))
        return out

    def things() -> list[Thing]:
        """Each page's things as `Thing` values as they come (the raw pages are not held: issue 22),
        names interned (held again by principals and the other region's listing); groups are
        filled in below, once the members are known."""
        if spill is not None:
            stage["things"].add((t["thingName"], "", (t.get("thingTypeName") or None, dict(t.get("attributes") or {}),
                                                      t.get("version")))
                                for t in checked("list_things"))
            return []
        if thing_cols is not None:
            for t in checked("list_things"):
                thing_cols.add(sys.intern(t["thingName"]), t.get("thingTypeName") or None, t.get("attributes"),
                               t.get("version"))
            return []
        shared = SharedValues()
        return [Thing(name=sys.intern(t["thingName"]), thing_type=t.get("thingTypeName") or None,
                      attributes=shared.attributes(t.get("attributes")), version=t.get("version"))
                for t in checked("list_things")]

    with ThreadPoolExecutor(max_workers=5, thread_name_prefix="registry-list") as pool:
        f_types, f_groups, f_things = pool.submit(thing_types), pool.submit(groups_and_members), pool.submit(things)
        f_policies, f_certs = pool.submit(policies_and_targets), pool.submit(certificates)
        types, (groups, group_members), raw_things = f_types.result(), f_groups.result(), f_things.result()
        (policies, policy_targets), certs = f_policies.result(), f_certs.result()

    dynamic = [g.name for g in groups if g.dynamic]
    if dynamic:
        notes.append(f"dynamic thing groups are not copied (fleet indexing queries): {', '.join(dynamic)}")
    if spill is not None:
        return _spilled_listing(spill, name, stage, region, types, groups, policies, notes, gaps, partial)
    if thing_cols is not None and cert_cols is not None and target_cols is not None:
        return _packed_listing(region, types, groups, group_members, policies, thing_cols, cert_cols, target_cols,
                               notes, gaps, partial, arn_prefix[0] if arn_prefix else None)
    # each member's groups; a member that is no thing is never looked up (moto keeps deleted things
    # in their groups; AWS lags a bit). No set of the things' names (≈ 100 B per thing; issue 22)
    # and each member's groups the shared sorted tuple, as they come (not a list per thing; issue 22)
    shared = SharedValues()
    membership: dict[str, tuple[str, ...]] = {}
    for group, names in group_members:
        for thing in names:
            membership[thing] = shared.groups((*membership.get(thing, ()), group))
    del group_members
    for i, t in enumerate(raw_things):  # in place: one `Thing` per thing at any time
        groups_of = membership.pop(t.name, None)
        if groups_of:
            raw_things[i] = replace(t, groups=groups_of)  # every other field as listed
    del membership
    raw_things.sort(key=lambda t: t.name)

    from orchestrator.registry.regional import without_regional  # a region's own canary is not fleet

    return without_regional(RegistrySnapshot(
        region=region,
        thing_types=tuple(sorted(types, key=lambda t: t.name)),
        thing_groups=tuple(sorted(groups, key=lambda g: g.name)),
        things=tuple(raw_things),
        policies=tuple(sorted(policies, key=lambda p: p.name)),
        certificates=tuple(sorted(certs, key=lambda c: c.id)),
        policy_targets=tuple(sorted(policy_targets)),
        notes=tuple(sorted(set(notes))),
        gaps=tuple(gaps),
        coverage=_listing_coverage(policies, groups, partial),
        certificate_arn_prefix=arn_prefix[0] if arn_prefix else None,
    ))


def _packed_listing(region: str, types: list[ThingType], groups: list[ThingGroup],
                    group_members: list[tuple[str, list[str]]], policies: list[Policy], thing_cols: ThingColumns,
                    cert_cols: CertificateColumns, target_cols: TargetColumns, notes: list[str], gaps: list[str],
                    partial: set[tuple[str, str]], arn_prefix: str | None) -> RegistrySnapshot:
    """`read_listing(packed=True)`'s end: the columns sorted, each thing given its static groups,
    and the region's own canary left out as `regional.without_regional` leaves it out (with the
    same note): its things, its policies and their targets, and the certificates attached only to
    canary policies."""
    from orchestrator.registry.regional import is_canary

    canary_things = [n for n in thing_cols.names if "-canary-" in n and is_canary(n)]
    canary_policies = [p.name for p in policies if is_canary(p.name)]
    canary_certs: set[str] = set()
    for policy in canary_policies:
        canary_certs.update(target_cols.sorted_run(policy, TargetKind.CERTIFICATE))
    if canary_certs:  # less those a fleet policy is attached to too
        for p in policies:
            if not is_canary(p.name):
                run = target_cols.sorted_run(p.name, TargetKind.CERTIFICATE)
                canary_certs -= {c for c in canary_certs if in_sorted(run, c)}
    things = thing_cols.finish(group_members, leave_out=canary_things)
    del group_members[:]
    return _keyed_listing(region, types, groups, policies, notes, gaps, partial, things,
                          cert_cols.finish(leave_out=canary_certs), target_cols.finish(leave_out=canary_policies),
                          (canary_things, canary_policies, len(canary_certs)), arn_prefix)


def _keyed_listing(region: str, types: list[ThingType], groups: list[ThingGroup], policies: list[Policy],
                   notes: list[str], gaps: list[str], partial: set[tuple[str, str]], things: Keyed[Thing],
                   certificates: Keyed[Certificate], targets: Keyed[PolicyTarget],
                   canary: tuple[list[str], list[str], int], arn_prefix: str | None = None) -> RegistrySnapshot:
    """The snapshot of a spilled or packed listing (`_spilled_listing`, `_packed_listing`), whose
    things, certificates and targets were built without the region's canary: its policies left out
    too, and the canary's note (`canary`: its things, its policies, how many certificates)."""
    from orchestrator.registry.regional import canary_note, is_canary

    canary_things, canary_policies, canary_certs = canary
    if canary_things or canary_policies or canary_certs:
        notes.append(canary_note(canary_things, canary_policies, canary_certs))
    return RegistrySnapshot(
        region=region,
        thing_types=tuple(sorted(types, key=lambda t: t.name)),
        thing_groups=tuple(sorted(groups, key=lambda g: g.name)),
        things=things,  # type: ignore[arg-type]  # a Sequence on disk or of columns in place of a tuple
        policies=tuple(sorted((p for p in policies if not is_canary(p.name)), key=lambda p: p.name)),
        certificates=certificates,  # type: ignore[arg-type]
        policy_targets=targets,  # type: ignore[arg-type]
        notes=tuple(sorted(set(notes))),
        gaps=tuple(gaps),
        coverage=_listing_coverage(policies, groups, partial),
        certificate_arn_prefix=arn_prefix,
    )


def in_sorted(items: Sequence[str], x: str) -> bool:
    """Whether `x` is in the sorted `items` (a bisection)."""
    i = bisect_left(items, x)
    return i < len(items) and items[i] == x


def _target_row(policy: str, arn: str, notes: list[str]) -> tuple[str, str, None]:
    """A spilled policy target's row: its key (`_target_key`) and, as its group, the target (the
    canary certificates are found by it). An ARN that is neither is noted and given no row."""
    cert_id = _cert_id_from_arn(arn)
    group = _group_from_arn(arn) if cert_id is None else None
    if cert_id is not None:
        return _target_key(policy, TargetKind.CERTIFICATE, cert_id), cert_id, None
    if group is not None:
        return _target_key(policy, TargetKind.THING_GROUP, group), group, None
    notes.append(f"policy {policy}: target {arn} is not a certificate or thing group; not copied")
    return "", "", None  # one row under the empty key (no target has it), dropped below


def _spilled_listing(spill: SpillStore, name: str, stage: dict[str, SpillTable], region: str,
                     types: list[ThingType], groups: list[ThingGroup], policies: list[Policy], notes: list[str],
                     gaps: list[str], partial: set[tuple[str, str]]) -> RegistrySnapshot:
    """`read_listing`'s end for a spilled listing: the staged rows copied in key order into
    `SortedRows` (things joined with their groups' members, a merge of two sorted reads), the
    region's own canary left out as `regional.without_regional` leaves it out, and the snapshot
    made over them."""
    from orchestrator.registry.regional import is_canary

    # certificates attached only to canary policies (the canary's own): few, found by their rows
    canary_policies = [p.name for p in policies if is_canary(p.name)]
    canary_certs: set[str] = set()
    for policy in canary_policies:
        prefix = _target_key(policy, TargetKind.CERTIFICATE, "")
        for key, _v in stage["targets"].sorted_items(start=prefix, stop=prefix[:-1] + "\x01"):
            cert_id = key.rsplit("\0", 1)[1]
            owners = [k.split("\0", 1)[0] for _s, k, _v2 in stage["targets"].page(group=cert_id, limit=10 ** 9)]
            if owners and all(is_canary(p) for p in owners):
                canary_certs.add(cert_id)
    canary_things: list[str] = []

    def things_with_groups() -> Iterator[tuple[str, Any]]:
        members = stage["members"].sorted_items()
        pending = next(members, None)
        for thing, (thing_type, attributes, version) in stage["things"].sorted_items():
            of: list[str] = []
            while pending is not None:
                member, group = pending[0].split("\0", 1)
                if member > thing:
                    break
                if member == thing:  # else a member that is no thing (moto keeps deleted things in groups)
                    of.append(group)
                pending = next(members, None)
            if is_canary(thing):
                canary_things.append(thing)
                continue
            yield thing, (thing_type, attributes, tuple(of), version)

    things = SortedRows(spill, f"{name}_things")
    things.extend(things_with_groups())
    certificates = SortedRows(spill, f"{name}_certificates")
    certificates.extend((k, v) for k, v in stage["certificates"].sorted_items() if k not in canary_certs)
    targets = SortedRows(spill, f"{name}_targets")

    def fleet_targets() -> Iterator[tuple[str, None]]:
        for key, _v in stage["targets"].sorted_items():
            if not key:
                continue
            policy, kind, target = key.split("\0", 2)
            if is_canary(policy) or (kind == TargetKind.CERTIFICATE.value and target in canary_certs):
                continue
            yield key, None

    targets.extend(fleet_targets())
    for what in stage:
        spill.drop(f"{name}_{what}_stage")
    return _keyed_listing(region, types, groups, policies, notes, gaps, partial, spilled_things(things),
                          spilled_certificates(certificates), spilled_targets(targets),
                          (canary_things, canary_policies, len(canary_certs)))


def policy_versions(caller: Caller, name: str, *, default: tuple[str | None, str] | None = None
                    ) -> tuple[PolicyVersion, ...] | None:
    """Every version of policy `name` (at most five: AWS keeps no more): one `list_policy_versions`
    and one `get_policy_version` per version whose document is not known yet (`default`: the
    default version's id and document, as `get_policy` gave them). None: the policy is gone."""
    try:
        listed = caller.call("list_policy_versions", policyName=name).get("policyVersions") or []
    except Exception as exc:
        if _missing(exc):
            return None
        raise
    out = []
    for v in listed:
        vid, is_default = str(v["versionId"]), bool(v.get("isDefaultVersion"))
        if default is not None and (is_default or vid == default[0]):
            out.append(PolicyVersion(vid, default[1], True))
            continue
        try:
            got = caller.call("get_policy_version", policyName=name, policyVersionId=vid)
        except Exception as exc:
            if _missing(exc):
                continue  # deleted meanwhile
            raise
        out.append(PolicyVersion(vid, normalize_document(got["policyDocument"]), is_default))
    return tuple(sorted(out, key=lambda v: int(v.id) if v.id.isdigit() else 0))


def read_principals(caller: Caller, things: Iterable[str], *, concurrency: int = 1,
                    gaps: list[str] | None = None, partial: set[str] | None = None,
                    ) -> tuple[tuple[ThingPrincipal, ...], tuple[str, ...]]:
    """The certificates attached to `things`: one `list_thing_principals` per thing (no bulk form).
    `gaps` (optional) collects the pages that may not have been the last (see `read_listing`),
    `partial` (optional) the names of those things."""
    notes: list[str] = []

    def principals(thing: str) -> list[ThingPrincipal]:
        def on_page(items: int, asked: int | None, more: bool) -> None:
            if not more and asked is not None and items >= asked:
                if gaps is not None:
                    gaps.append(f"list_thing_principals {{'thingName': {thing!r}}}: a full page of {items} "
                                "without a continuation token")
                if partial is not None:
                    partial.add(thing)

        try:
            arns = list(caller.pages("list_thing_principals", thingName=thing, on_page=on_page))
        except Exception as exc:
            if _missing(exc):
                return []
            raise
        found = []
        for arn in arns:
            cert_id = _cert_id_from_arn(arn)
            if cert_id is None:
                notes.append(f"thing {thing}: principal {arn} is not a certificate; not copied")
            else:
                found.append(ThingPrincipal(thing, cert_id))
        return found

    found = tuple(sorted(a for batch in pmap(principals, list(things), concurrency) for a in batch))
    return found, tuple(sorted(set(notes)))


def things_of_certificates(caller: Caller, arns: Iterable[str], *, concurrency: int = 1) -> set[str]:
    """The things the certificates `arns` are attached to (`list_principal_things`, one per certificate)."""
    def things(arn: str) -> list[str]:
        try:
            return list(caller.pages("list_principal_things", principal=arn))
        except Exception as exc:
            if _missing(exc):
                return []
            raise

    return {t for batch in pmap(things, list(arns), concurrency) for t in batch}


def read_shadows(data_caller: Caller, things: Iterable[str], *, concurrency: int = 1,
                 names: Mapping[str, Collection[str]] | None = None) -> tuple[Shadow, ...]:
    """Every shadow of `things` (classic and named): per thing one `list_named_shadows_for_thing`,
    one `get_thing_shadow` for the classic shadow and one per named shadow. With `names` (thing ->
    shadow names, CLASSIC for the classic one) only those shadows are read."""

    def get(thing: str, name: str) -> Shadow | None:
        kwargs: dict[str, Any] = {"thingName": thing, **({"shadowName": name} if name else {})}
        try:
            response = data_caller.call("get_thing_shadow", **kwargs)
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        return shadow_from_document(thing, name, json.loads(response["payload"].read()))

    def of_thing(thing: str) -> list[Shadow]:
        if names is not None:
            wanted = sorted(names.get(thing, ()))
        else:
            try:
                listed = named_shadows(data_caller, thing)
            except Exception as exc:
                if _missing(exc):
                    return []
                raise
            wanted = [CLASSIC, *sorted(set(listed))]
        return [sh for sh in (get(thing, n) for n in wanted) if sh is not None]

    return tuple(sorted(sh for batch in pmap(of_thing, list(things), concurrency) for sh in batch))


def named_shadows(data_caller: Caller, thing: str) -> list[str]:
    """The names of a thing's named shadows (botocore has no paginator for this one: 100 a page)."""
    names: list[str] = []
    kwargs: dict[str, Any] = {"thingName": thing, "pageSize": 100}
    seen: set[str] = set()
    while True:
        response = data_caller.call("list_named_shadows_for_thing", **kwargs)
        names.extend(response.get("results") or [])
        token = response.get("nextToken")
        if not token or token in seen:
            return names
        seen.add(token)
        kwargs["nextToken"] = token


def shadow_from_document(thing: str, name: str, document: Mapping[str, Any]) -> Shadow:
    """A shadow from the document `get_thing_shadow` answers (or an `update/documents` `current`)."""
    state = document.get("state") or {}
    metadata = document.get("metadata") or {}
    return Shadow(thing, name, canonical_state(state.get("desired")), canonical_state(state.get("reported")),
                  document.get("version"), _newest_timestamp(metadata.get("desired")),
                  _newest_timestamp(metadata.get("reported")))


def _newest_timestamp(metadata: Any) -> int | None:
    """The newest `timestamp` in a shadow section's per-field metadata (nested like the state;
    arrays hold one entry per element); None when it has none."""
    newest: int | None = None
    stack = [metadata]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ts = node.get("timestamp")
            if isinstance(ts, (int, float)) and not isinstance(ts, bool):
                newest = int(ts) if newest is None else max(newest, int(ts))
            stack.extend(v for k, v in node.items() if k != "timestamp" or not isinstance(v, (int, float)))
        elif isinstance(node, list):
            stack.extend(node)
    return newest


def with_pems(snapshot: RegistrySnapshot, caller: Caller, ids: Collection[str], *,
              concurrency: int = 1) -> RegistrySnapshot:
    """The snapshot with the PEM (and mode, CA id) of the certificates `ids` filled in."""
    wanted_ids = set(ids)
    wanted = [c for c in snapshot.certificates if c.id in wanted_ids and c.pem is None]

    def describe(cert: Certificate) -> Certificate:
        try:
            d = caller.call("describe_certificate", certificateId=cert.id)["certificateDescription"]
        except Exception as exc:
            if _missing(exc):
                return cert
            raise
        return replace(cert, pem=d.get("certificatePem"), status=d.get("status", cert.status),
                       mode=d.get("certificateMode") or cert.mode,
                       ca_certificate_id=d.get("caCertificateId") or cert.ca_certificate_id,
                       arn=d.get("certificateArn") or cert.arn)

    filled = {c.id: c for c in pmap(describe, wanted, concurrency)}
    if not filled:
        return snapshot
    return replace(snapshot, certificates=tuple(filled.get(c.id, c) for c in snapshot.certificates))
