"""Registry parity of a secondary with the primary, kind by kind, from `registry verify`'s
comparison (`orchestrator.registry.verify.compare`).

The paged listings (thing types, groups, things, certificates, policies and their targets) are
read in full: they cost one call per page, not per thing. The per-thing reads (thing principals,
shadows) are read in full up to `Settings.sample_above` things and sampled above it: a uniform
sample of `Settings.sample_size` things of the primary, the same names read in both regions.
A sample of n finds a difference present in a fraction p of things with probability 1-(1-p)^n
(n=150: p=2 % with 95 %, p=1 % with 78 %); `--full` reads every thing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from orchestrator.readiness.model import Scope, Verdict, not_ready, ready, rule
from orchestrator.readiness.probe import Probe, aws_read
from orchestrator.registry.verify import VerifyReport


@dataclass(frozen=True)
class Parity:
    report: VerifyReport
    sampled: int | None  # things whose principals and shadows were read (None: every thing)
    things: int


def detectable_fraction(n: int, confidence: float = 0.95) -> float:
    """The smallest share of differing things a uniform sample of n finds with `confidence`."""
    return 1.0 - (1.0 - confidence) ** (1.0 / n) if n > 0 else 1.0


def sample_statement(n: int, total: int) -> str:
    p = detectable_fraction(n)
    return (f"thing principals and shadows sampled: {n} of {total} things (a difference in >= "
            f"{math.ceil(p * 1000) / 10:g} % of things is found with >= 95 % confidence); listings compared in full")


def parity(probe: Probe, region: str) -> Parity:
    return probe.once(("parity", region), lambda: _parity(probe, region))


def _parity(probe: Probe, region: str) -> Parity:
    from orchestrator.registry.calls import Caller
    from orchestrator.registry.snapshot import pmap, read_listing, read_principals, read_shadows
    from orchestrator.registry.verify import compare

    primary = probe.topology.primary
    iot = {r: Caller(probe.client("iot", r)) for r in (primary, region)}
    data = {r: Caller(probe.client("iot-data", r)) for r in (primary, region)}
    listings = aws_read("registry listing", lambda: pmap(lambda r: read_listing(iot[r], concurrency=4, versions=False),
                                                         [primary, region], 2))
    names = sorted(t.name for t in listings[0].things)
    sampled: int | None = None
    s = probe.settings
    if not s.full and len(names) > s.sample_above:
        rng = random.Random(s.seed)
        names = sorted(rng.sample(names, min(s.sample_size, len(names))))
        sampled = len(names)

    def per_thing(r: str) -> tuple[object, object]:
        principals, _ = read_principals(iot[r], names, concurrency=4)
        shadows = read_shadows(data[r], names, concurrency=8)
        return principals, shadows

    reads = aws_read("registry per-thing reads", lambda: pmap(per_thing, [primary, region], 2))
    snaps = [replace(listing, thing_principals=got[0], shadows=got[1])  # type: ignore[arg-type]
             for listing, got in zip(listings, reads, strict=True)]
    report = compare(snaps[0], snaps[1], shadows=True)
    total = len(listings[0].things)
    if sampled is not None:
        probe.notes.append(sample_statement(sampled, total))
    return Parity(report, sampled, total)


FIX = "orchestrate registry sync --from {primary} --to {region}"
TIGHTEN = "orchestrate registry sync --from {primary} --to {region}  (tightening reaches it without --prune)"


def _kind_rule(kind: str, fix: str = FIX) -> None:
    def check(probe: Probe, region: str) -> Verdict:
        par = parity(probe, region)
        k = par.report.kind(kind)
        scope = f" (sample of {par.sampled})" if par.sampled is not None and kind in ("thing_principals",
                                                                                       "shadows") else ""
        if not k.differences:
            return ready(f"{k.in_from} in {probe.topology.primary}, {k.in_to} here, equal{scope}")
        first = "; ".join(k.first[:3])
        return not_ready(f"{k.differences} differ{scope}: {first}",
                         fix.format(primary=probe.topology.primary, region=region))

    check.__name__ = f"parity_{kind}"
    rule(f"registry.parity.{kind}", "registry", f"registry parity: {kind.replace('_', ' ')}",
         scope=Scope.SECONDARY)(check)


for _kind in ("thing_types", "thing_groups", "things", "group_membership", "thing_principals", "policies"):
    _kind_rule(_kind)
_kind_rule("certificates", TIGHTEN)  # certificate status parity: a revoked one still ACTIVE here
_kind_rule("policy_attachments", TIGHTEN)
_kind_rule("shadows")
