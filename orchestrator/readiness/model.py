"""The readiness scorecard's vocabulary: a rule, its verdict, the report.

A rule is a small function `(probe, region) -> Verdict`, registered with `@rule(...)`. It reads
only what it needs through the probe (which caches and counts every AWS call) and answers:

    READY       the evidence shows the region can take this part of the traffic
    NOT READY   the evidence shows it cannot; `fix` is the command (or step) that repairs it
    UNKNOWN     the evidence could not be read (an API the endpoint does not offer, no permission,
                nothing deployed to read): never reported as READY

A region is ready when every rule evaluated for it is READY. No click here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.readiness.probe import Probe


class Status(str, Enum):
    READY = "READY"
    NOT_READY = "NOT READY"
    UNKNOWN = "UNKNOWN"
    NOT_APPLICABLE = "N/A"  # the rule has nothing to check in this region by design (counts as ready)


class Scope(str, Enum):
    EVERY = "every"  # every member region (the primary too: it must take the traffic back)
    SECONDARY = "secondary"  # every member but the primary (parity against the primary)
    ENV = "env"  # once per environment (backups, the state backend): its row's region is `env`


@dataclass(frozen=True)
class Verdict:
    status: Status
    evidence: str
    fix: str = ""


def ready(evidence: str) -> Verdict:
    return Verdict(Status.READY, evidence)


def not_ready(evidence: str, fix: str) -> Verdict:
    return Verdict(Status.NOT_READY, evidence, fix)


def unknown(evidence: str, fix: str = "") -> Verdict:
    return Verdict(Status.UNKNOWN, evidence, fix)


def not_applicable(evidence: str) -> Verdict:
    return Verdict(Status.NOT_APPLICABLE, evidence)


RuleFn = Callable[["Probe", str], Verdict]


@dataclass(frozen=True)
class Rule:
    id: str  # stable, dotted: `registry.parity.things`
    group: str  # registry | domain | data | replication | quotas | routing | backups | resilience
    title: str
    scope: Scope
    fn: RuleFn
    arc_only: bool = False  # evaluated only when failover_control is arc


RULES: dict[str, Rule] = {}


def rule(rule_id: str, group: str, title: str, *, scope: Scope = Scope.EVERY,
         arc_only: bool = False) -> Callable[[RuleFn], RuleFn]:
    """Register a rule. Ids are unique: registering one twice is a programming error."""
    def register(fn: RuleFn) -> RuleFn:
        if rule_id in RULES:
            raise ValueError(f"readiness rule {rule_id} registered twice")
        RULES[rule_id] = Rule(rule_id, group, title, scope, fn, arc_only)
        return fn
    return register


@dataclass(frozen=True)
class Finding:
    rule: str
    group: str
    title: str
    region: str
    status: Status
    evidence: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "group": self.group, "title": self.title, "region": self.region,
                "status": self.status.value, "evidence": self.evidence, "fix": self.fix or None}


@dataclass(frozen=True)
class RegionReadiness:
    region: str
    role: str
    findings: tuple[Finding, ...]

    def count(self, status: Status) -> int:
        return sum(1 for f in self.findings if f.status is status)

    @property
    def status(self) -> Status:
        if self.count(Status.NOT_READY):
            return Status.NOT_READY
        if self.count(Status.UNKNOWN):
            return Status.UNKNOWN
        return Status.READY

    @property
    def ready(self) -> bool:
        return self.status is Status.READY


@dataclass(frozen=True)
class ReadinessReport:
    env: str
    primary: str
    regions: tuple[RegionReadiness, ...]
    control_plane_calls: int = 0
    calls_by_api: dict[str, int] = field(default_factory=dict)
    things: int | None = None
    sample: str | None = None  # how the registry parity sample was drawn (size, confidence)
    duration_s: float = 0.0

    @property
    def ready(self) -> bool:
        return all(r.ready for r in self.regions)

    def not_ready(self) -> list[Finding]:
        return [f for r in self.regions for f in r.findings if f.status in (Status.NOT_READY, Status.UNKNOWN)]

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "primary": self.primary,
            "ready": self.ready,
            "regions": [{"region": r.region, "role": r.role, "status": r.status.value,
                         "ready": r.count(Status.READY), "not_ready": r.count(Status.NOT_READY),
                         "unknown": r.count(Status.UNKNOWN)} for r in self.regions],
            "rules": [f.to_json() for r in self.regions for f in r.findings],
            "sample": self.sample,
            "things": self.things,
            "control_plane_calls": self.control_plane_calls,
            "calls_by_api": dict(sorted(self.calls_by_api.items())),
            "duration_s": round(self.duration_s, 3),
        }

    def lines(self, *, all_rows: bool = True) -> list[str]:
        out = [f"readiness of env {self.env} (primary {self.primary}): "
               + ("every region READY" if self.ready else
                  "NOT READY: " + ", ".join(f"{r.region} {r.status.value}" for r in self.regions if not r.ready))]
        for r in self.regions:
            out.append(f"{r.region} ({r.role}): {r.status.value}  ready={r.count(Status.READY)} "
                       f"not_ready={r.count(Status.NOT_READY)} unknown={r.count(Status.UNKNOWN)}")
            for f in r.findings:
                if not all_rows and f.status in (Status.READY, Status.NOT_APPLICABLE):
                    continue
                out.append(f"  {f.status.value:<9} {f.rule:<34} {f.evidence}")
                if f.fix and f.status in (Status.NOT_READY, Status.UNKNOWN):
                    out.append(f"  {'':<9} {'':<34} fix: {f.fix}")
        if self.sample:
            out.append(f"registry parity: {self.sample}")
        out.append(f"{self.control_plane_calls} control-plane calls in {self.duration_s:.1f} s")
        return out

    def markdown(self) -> str:
        """A CI job summary / pull-request comment section."""
        out = ["## Readiness", ""]
        if self.ready:
            out.append(f"Every region of `{self.env}` is **READY** to take the traffic.")
        for r in self.regions:
            if r.ready:
                continue
            bad = [f for f in r.findings if f.status is Status.NOT_READY]
            unk = [f for f in r.findings if f.status is Status.UNKNOWN]
            because = "; ".join(f"{f.rule}: {f.evidence}" for f in bad[:5]) or \
                "; ".join(f"{f.rule}: {f.evidence}" for f in unk[:5])
            out.append(f"This change makes **{r.region} {r.status.value}** because {_md(because)}"
                       + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))
        out += ["", "| region | rule | status | evidence | fix |", "|---|---|---|---|---|"]
        for r in self.regions:
            for f in r.findings:
                icon = {"READY": "✅", "NOT READY": "❌", "UNKNOWN": "❔", "N/A": "➖"}[f.status.value]
                fix = f"`{f.fix}`" if f.fix and f.status in (Status.NOT_READY, Status.UNKNOWN) else ""
                out.append(f"| {r.region} | `{f.rule}` | {icon} {f.status.value} | {_md(f.evidence)} | {_md(fix)} |")
        if self.sample:
            out += ["", f"Registry parity: {_md(self.sample)}."]
        return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())
