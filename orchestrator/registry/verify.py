"""Registry parity: a read-only comparison of two regions, kind by kind (`registry verify`).

    compare(a, b, rewrite=...)            -> VerifyReport    two snapshots in, differences out (pure)
    verify_clients(a_caller, b_caller, …) -> VerifyReport    reads both regions, then compares

What is compared, with the rules the sync copies by (so a region a clean sync just made is equal):

    thing_types         description, searchable attributes, deprecated
    thing_groups        static groups: parent, description, attributes (dynamic groups are not
                        copied by a sync: they are noted, not compared)
    things              thing type and attributes
    group_membership    each thing's static groups (`group/thing`)
    certificates        id (the same PEM has the same id everywhere) and status, the source's
                        status mapped as the sync maps it (PENDING_ACTIVATION -> INACTIVE; a
                        PENDING_TRANSFER certificate is not copied)
    thing_principals    thing <-> certificate attachments (`thing/certificate-id`)
    policies            the default version's document, normalized, the source region in ARNs
                        rewritten to the destination (or `*`) as the sync rewrites it
                        (`policydoc.rewrite_region`); version ids are per region, not compared
    policy_attachments  policy -> certificate or thing group (`policy/kind:target`)
    shadows             classic and named shadows: desired and reported state

Reads (per region): the paged listings (`snapshot.read_listing`: ListThings and ListCertificates
pages, group and policy listings, one ListTargetsForPolicy per policy), one ListThingPrincipals
per thing (there is no bulk form), and with shadows one ListNamedShadowsForThing plus one
GetThingShadow per shadow of each thing. Nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.registry.calls import Caller
from orchestrator.registry.policydoc import RegionRewrite, normalize_document, rewrite_region
from orchestrator.registry.snapshot import RegistrySnapshot, pmap, read_listing, read_principals, read_shadows

VERIFY_KINDS = ("thing_types", "thing_groups", "things", "group_membership", "certificates",
                "thing_principals", "policies", "policy_attachments", "shadows")
FIRST_DIFFERENCES = 5

# the statuses a sync registers a source certificate with (sync/plan.py); absent: not copied
_COPIED_STATUS = {"ACTIVE": "ACTIVE", "INACTIVE": "INACTIVE", "REVOKED": "REVOKED",
                  "PENDING_ACTIVATION": "INACTIVE", "REGISTER_INACTIVE": "INACTIVE"}


@dataclass(frozen=True)
class KindDiff:
    """One kind compared: how many each region holds, and what differs (the first few named)."""

    kind: str
    in_from: int
    in_to: int
    only_in_from: int = 0
    only_in_to: int = 0
    differ: int = 0
    first: tuple[str, ...] = ()

    @property
    def differences(self) -> int:
        return self.only_in_from + self.only_in_to + self.differ

    def to_json(self) -> dict[str, Any]:
        return {"from": self.in_from, "to": self.in_to, "only_in_from": self.only_in_from,
                "only_in_to": self.only_in_to, "differ": self.differ, "differences": self.differences,
                "first": list(self.first)}


@dataclass(frozen=True)
class VerifyReport:
    """Two regions compared per kind. `equal`: no difference in any kind compared."""

    src_region: str
    dst_region: str
    kinds: tuple[KindDiff, ...]
    shadows: bool = True
    things: int = 0
    read_calls: int = 0
    calls_by_api: Mapping[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    notes: tuple[str, ...] = ()
    checked_at: float = 0.0  # epoch seconds

    @property
    def differences(self) -> int:
        return sum(k.differences for k in self.kinds)

    @property
    def equal(self) -> bool:
        return self.differences == 0

    ok = equal

    def kind(self, name: str) -> KindDiff:
        return next(k for k in self.kinds if k.kind == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "registry-verify",
            "from": self.src_region,
            "to": self.dst_region,
            "ok": self.equal,
            "equal": self.equal,
            "differences": self.differences,
            "kinds": {k.kind: k.to_json() for k in self.kinds},
            "shadows": self.shadows,
            "things": self.things,
            "read_calls": self.read_calls,
            "write_calls": 0,
            "calls_by_api": dict(sorted(self.calls_by_api.items())),
            "duration_s": round(self.duration_s, 3),
            "notes": list(self.notes),
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.checked_at)),
        }

    def lines(self) -> list[str]:
        head = (f"verify {self.src_region} -> {self.dst_region}: "
                + ("parity" if self.equal else f"DIFFERENT: {self.differences} differences")
                + f" ({self.things} things, {self.read_calls} read calls, {self.duration_s:.1f}s"
                + ("" if self.shadows else ", shadows not compared") + ")")
        out = [head]
        for k in self.kinds:
            state = "equal" if not k.differences else (
                f"only in {self.src_region}={k.only_in_from} only in {self.dst_region}={k.only_in_to} "
                f"differ={k.differ}")
            out.append(f"  {k.kind:<19} {k.in_from:>7} / {k.in_to:<7} {state}")
            out.extend(f"    {item}" for item in k.first)
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def _diff(kind: str, a: Mapping[str, Any], b: Mapping[str, Any], first: int, a_region: str, b_region: str,
          describe: Callable[[str, Any, Any], str] | None = None) -> KindDiff:
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    shown = [f"{key}: only in {a_region}" for key in only_a[:first]]
    shown += [f"{key}: only in {b_region}" for key in only_b[:first - len(shown)]]
    shown += [describe(key, a[key], b[key]) if describe else f"{key}: differs"
              for key in differ[:first - len(shown)]]
    return KindDiff(kind, len(a), len(b), len(only_a), len(only_b), len(differ), tuple(shown))


def _fields(names: tuple[str, ...]) -> Callable[[str, Any, Any], str]:
    def describe(key: str, x: Any, y: Any) -> str:
        changed = [n for n, u, v in zip(names, x, y, strict=True) if u != v]
        return f"{key}: {', '.join(changed) or 'value'} differ"
    return describe


def _status(key: str, x: Any, y: Any) -> str:
    return f"{key}: status {x} vs {y}"


def _set(items: Iterable[str]) -> dict[str, bool]:
    return dict.fromkeys(items, True)


def policy_for(document: str, src_region: str, dst_region: str, rewrite: RegionRewrite) -> str:
    """The document a sync writes to `dst_region` for `document` of `src_region`."""
    return normalize_document(rewrite_region(document, src_region, dst_region, rewrite)[0])


def compare(a: RegistrySnapshot, b: RegistrySnapshot, *, rewrite: RegionRewrite | None = None,
            first: int = FIRST_DIFFERENCES, shadows: bool = True) -> VerifyReport:
    """`a` (the source) and `b` (the destination) compared kind by kind (pure). With `rewrite` None
    a policy matches when `b` holds either rewrite of `a`'s document (the destination region or `*`)."""
    ra, rb = a.region, b.region
    notes: list[str] = []
    kinds = [
        _diff("thing_types",
              {t.name: (t.description, tuple(t.searchable_attributes), t.deprecated) for t in a.thing_types},
              {t.name: (t.description, tuple(t.searchable_attributes), t.deprecated) for t in b.thing_types},
              first, ra, rb, _fields(("description", "searchable attributes", "deprecated"))),
    ]
    static_a = {g.name: (g.parent, g.description, dict(g.attributes)) for g in a.thing_groups if not g.dynamic}
    static_b = {g.name: (g.parent, g.description, dict(g.attributes)) for g in b.thing_groups if not g.dynamic}
    dynamic = sorted({g.name for g in (*a.thing_groups, *b.thing_groups) if g.dynamic})
    if dynamic:
        notes.append(f"dynamic thing groups are not compared as static groups (the plane's dynamic_thing_group "
                     f"kind compares their queries): {', '.join(dynamic)}")
    kinds.append(_diff("thing_groups", static_a, static_b, first, ra, rb,
                       _fields(("parent", "description", "attributes"))))
    kinds.append(_diff("things", {t.name: (t.thing_type, dict(t.attributes)) for t in a.things},
                       {t.name: (t.thing_type, dict(t.attributes)) for t in b.things}, first, ra, rb,
                       _fields(("thing type", "attributes"))))
    kinds.append(_diff("group_membership",
                       _set(f"{g}/{t.name}" for t in a.things for g in t.groups if g in static_a),
                       _set(f"{g}/{t.name}" for t in b.things for g in t.groups if g in static_b),
                       first, ra, rb))
    not_copied = {c.id for c in a.certificates if c.status not in _COPIED_STATUS}
    if not_copied:
        notes.append(f"{len(not_copied)} certificate(s) of {ra} are PENDING_TRANSFER: not copied, not compared")
    kinds.append(_diff("certificates",
                       {c.id: _COPIED_STATUS[c.status] for c in a.certificates if c.id not in not_copied},
                       {c.id: c.status for c in b.certificates if c.id not in not_copied},
                       first, ra, rb, _status))
    kinds.append(_diff("thing_principals",
                       _set(f"{p.thing}/{p.certificate_id}" for p in a.thing_principals
                            if p.certificate_id not in not_copied),
                       _set(f"{p.thing}/{p.certificate_id}" for p in b.thing_principals
                            if p.certificate_id not in not_copied), first, ra, rb))
    docs_b = {p.name: normalize_document(p.document) for p in b.policies}
    docs_a = {}
    for p in a.policies:
        modes = [rewrite] if rewrite is not None else [RegionRewrite.DESTINATION, RegionRewrite.WILDCARD]
        candidates = [policy_for(p.document, ra, rb, m) for m in modes]
        # the destination's document when it is one of the accepted rewrites, else the first
        docs_a[p.name] = docs_b[p.name] if docs_b.get(p.name) in candidates else candidates[0]
    kinds.append(_diff("policies", docs_a, docs_b, first, ra, rb,
                       lambda k, x, y: f"{k}: default version's document differs"))
    kinds.append(_diff("policy_attachments",
                       _set(f"{t.policy}/{t.kind.value}:{t.target}" for t in a.policy_targets
                            if t.target not in not_copied and (t.kind.value != "thing_group" or t.target in static_a)),
                       _set(f"{t.policy}/{t.kind.value}:{t.target}" for t in b.policy_targets
                            if t.target not in not_copied and (t.kind.value != "thing_group" or t.target in static_b)),
                       first, ra, rb))
    if shadows:
        kinds.append(_diff("shadows", {s.key: (s.desired, s.reported) for s in a.shadows},
                           {s.key: (s.desired, s.reported) for s in b.shadows}, first, ra, rb,
                           _fields(("desired", "reported"))))
    else:
        kinds.append(KindDiff("shadows", 0, 0))
    return VerifyReport(ra, rb, tuple(kinds), shadows=shadows, things=len(a.things),
                        notes=tuple(notes), checked_at=time.time())


def read_region(caller: Caller, data_caller: Caller | None, *, concurrency: int = 4) -> RegistrySnapshot:
    """Everything `compare` looks at in one region (no PEMs: certificates compare by id)."""
    listing = read_listing(caller, concurrency=concurrency)
    names = [t.name for t in listing.things]
    principals, notes = read_principals(caller, names, concurrency=concurrency)
    shadows = read_shadows(data_caller, names, concurrency=min(64, 16 * concurrency)) \
        if data_caller is not None else ()
    return replace(listing, thing_principals=principals, shadows=shadows,
                   notes=tuple(sorted(set(listing.notes) | set(notes))))


def verify_clients(a: Caller, b: Caller, *, a_data: Caller | None = None, b_data: Caller | None = None,
                   rewrite: RegionRewrite | None = None, first: int = FIRST_DIFFERENCES,
                   concurrency: int = 4) -> VerifyReport:
    """Read both regions (at once) and compare them. With `a_data` and `b_data` (iot-data callers)
    shadows are compared too. Reads only."""
    callers = [c for c in (a, b, a_data, b_data) if c is not None]
    base = {id(c): dict(c.stats.counts().by_api) for c in callers}
    started = time.monotonic()
    shadows = a_data is not None and b_data is not None
    snap_a, snap_b = pmap(lambda pair: read_region(pair[0], pair[1] if shadows else None, concurrency=concurrency),
                          [(a, a_data), (b, b_data)], 2)
    report = compare(snap_a, snap_b, rewrite=rewrite, first=first, shadows=shadows)
    by_api: dict[str, int] = {}
    for c in callers:
        before = base[id(c)]
        for api, n in c.stats.counts().by_api:
            delta = n - before.get(api, 0)
            if delta:
                by_api[api] = by_api.get(api, 0) + delta
    notes = tuple(dict.fromkeys((*report.notes, *snap_a.notes, *snap_b.notes)))
    return replace(report, read_calls=sum(by_api.values()), calls_by_api=by_api,
                   duration_s=time.monotonic() - started, notes=notes)


__all__ = ["FIRST_DIFFERENCES", "VERIFY_KINDS", "KindDiff", "VerifyReport", "compare", "policy_for",
           "read_region", "verify_clients"]
