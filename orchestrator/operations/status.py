"""`status`: what is deployed where, and how it is routed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.operations.replication import ReplicationHealth, replication_health, replication_regions
from orchestrator.stacks.graph import all_stacks, dns_targets

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context


@dataclass(frozen=True)
class StackStatus:
    name: str
    kind: str
    region: str
    role: str  # primary | secondary | none (dns/replication)
    routed: bool
    deployed: bool
    resource_count: int
    last_result: str | None
    last_update: str | None
    pending_operations: int


@dataclass(frozen=True)
class EnvironmentStatus:
    env: str
    domain: str
    routing: str
    stacks: tuple[StackStatus, ...]
    newest_backup_age_hours: float | None = None
    replication: tuple[ReplicationHealth, ...] = ()  # per region with a replication function

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "domain": self.domain,
            "routing": self.routing,
            "newest_backup_age_hours": self.newest_backup_age_hours,
            "stacks": [s.__dict__ for s in self.stacks],
            "replication": [r.to_json() for r in self.replication],
        }

    def lines(self) -> list[str]:
        out = [f"env {self.env}: {self.domain} routing={self.routing}"]
        out.append(f"  {'stack':<34} {'kind':<12} {'region':<15} {'role':<10} {'deployed':<9} "
                   f"{'resources':>9}  last update")
        for s in self.stacks:
            role = s.role + ("*" if s.routed else "")
            last = f"{s.last_result or '-'} {s.last_update or ''}".strip()
            warn = f"  ({s.pending_operations} pending operations: run `orchestrate recover {s.name}`)" \
                if s.pending_operations else ""
            out.append(f"  {s.name:<34} {s.kind:<12} {s.region:<15} {role:<10} {'yes' if s.deployed else 'no':<9} "
                       f"{s.resource_count:>9}  {last}{warn}")
        out.append("  (* receives DNS traffic)")
        if self.newest_backup_age_hours is None:
            out.append("newest registry backup: none found")
        else:
            out.append(f"newest registry backup: {self.newest_backup_age_hours:.1f} h old")
        if self.replication:
            out.append("continuous replication (lag: apply time minus event time, newest 1-min maximum):")
            out.extend(r.line() for r in self.replication)
        return out


def environment_status(app: Context) -> EnvironmentStatus:
    topology = app.topology()
    engine = app.engine()
    routed = set(dns_targets(topology))
    refs = all_stacks(topology)
    with ThreadPoolExecutor(max_workers=min(4, len(refs)), thread_name_prefix="status") as pool:
        infos = list(pool.map(lambda ref: engine.info(ref.name), refs))
    rows = []
    for ref, info in zip(refs, infos, strict=True):
        region_role = topology.role(ref.region) if ref.kind.value == "region" else "none"
        rows.append(StackStatus(
            name=ref.name, kind=ref.kind.value, region=ref.region, role=region_role,
            routed=ref.kind.value == "region" and ref.region in routed, deployed=info.deployed,
            resource_count=info.resource_count, last_result=info.last_result, last_update=info.last_update,
            pending_operations=len(info.pending_operations),
        ))
    replication_deployed = any(r.kind == "replication" and r.deployed for r in rows)
    return EnvironmentStatus(topology.env, topology.domain, topology.routing.value, tuple(rows),
                             _backup_age(app), _replication(app) if replication_deployed else ())


def _replication(app: Context) -> tuple[ReplicationHealth, ...]:
    """Lag, dead letters and the last reconciliation per region with a replication function."""
    regions = replication_regions(app.topology())
    if not regions:
        return ()
    ctx = app.aws()
    with ThreadPoolExecutor(max_workers=min(4, len(regions)), thread_name_prefix="status-replication") as pool:
        return tuple(pool.map(lambda r: replication_health(ctx, app.env, r), regions))


def _backup_age(app: Context) -> float | None:
    """Age of the newest backup where the backup job writes ($ORCHESTRATE_BACKUP_DEST, else the vault)."""
    from orchestrator.errors import OrchestrateError
    from orchestrator.operations.backups import backup_destination
    from orchestrator.registry import backup_age

    try:
        dest = backup_destination(app)
        age = backup_age(app.aws(), dest, env=app.env)
    except OrchestrateError as exc:  # status reports, it does not fail on an unreadable location
        app.console.debug(f"newest backup: {exc.one_line()}")
        return None
    return None if age is None else round(age.total_seconds() / 3600, 2)
