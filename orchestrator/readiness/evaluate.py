"""One evaluation: every registered rule for every region it applies to, on a small thread pool."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from orchestrator.readiness.model import (
    RULES,
    Finding,
    ReadinessReport,
    RegionReadiness,
    Rule,
    Scope,
    Status,
    Verdict,
    unknown,
)
from orchestrator.readiness.probe import Probe, Unreadable

ENV_ROW = "env"


def applicable(probe: Probe, regions: tuple[str, ...] | None = None) -> list[tuple[Rule, str]]:
    """(rule, region) pairs to evaluate: per region (primary too, unless the rule compares with it),
    and the environment-wide rules once (their row's region is `env`)."""
    from orchestrator.readiness import rules as _rules  # noqa: F401 - registers the rules

    topology = probe.topology
    arc = topology.failover_control.value == "arc" and topology.multi_region
    wanted = regions or topology.regions
    pairs: list[tuple[Rule, str]] = []
    for region in wanted:
        for r in RULES.values():
            if r.scope is Scope.ENV or (r.arc_only and not arc):
                continue
            if r.scope is Scope.SECONDARY and region == topology.primary:
                continue
            pairs.append((r, region))
    pairs.extend((r, ENV_ROW) for r in RULES.values() if r.scope is Scope.ENV)
    return pairs


def _run(probe: Probe, r: Rule, region: str) -> Finding:
    try:
        verdict = r.fn(probe, region)
    except Unreadable as exc:  # its evidence did not answer: UNKNOWN, with the read that failed and why
        verdict = unknown(str(exc))
    except Exception as exc:  # noqa: BLE001 - a rule that breaks is UNKNOWN, never READY
        from orchestrator.registry.calls import error_code

        verdict = unknown(f"the rule failed: {error_code(exc) or type(exc).__name__}")
    if not isinstance(verdict, Verdict):
        verdict = unknown("the rule returned no verdict")
    return Finding(r.id, r.group, r.title, region, verdict.status, verdict.evidence, verdict.fix)


def evaluate(probe: Probe, regions: tuple[str, ...] | None = None, *, workers: int = 8) -> ReadinessReport:
    started = time.monotonic()
    pairs = applicable(probe, regions)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="readiness") as pool:
        findings = list(pool.map(lambda p: _run(probe, p[0], p[1]), pairs))
    topology = probe.topology
    rows = []
    for region in (*(regions or topology.regions), ENV_ROW):
        mine = tuple(f for f in findings if f.region == region)
        role = "environment" if region == ENV_ROW else topology.role(region)
        rows.append(RegionReadiness(region, role, mine))
    parity_things = [v for k, v in probe._cache.items() if isinstance(k, tuple) and k[:1] == ("parity",)]
    things = max((p.things for p in parity_things), default=None)
    sample = "; ".join(dict.fromkeys(probe.notes)) or (
        f"every thing read ({things} things)" if things is not None else None)
    by_api = dict(probe.calls)
    return ReadinessReport(topology.env, topology.primary, tuple(rows), probe.control_plane_calls, by_api,
                           things, sample, time.monotonic() - started)


__all__ = ["ENV_ROW", "Status", "applicable", "evaluate"]
