"""DNS transitions: moving the custom domain's records between topologies, and taking a secondary out.

Route 53 refuses some record-set changes (see docs/architecture.md, "DNS changes"); these functions
order the DNS stack's updates so each one is a change Route 53 accepts.
"""

from __future__ import annotations

import os
import time
from typing import Any

from orchestrator.context import Context
from orchestrator.engine.types import Engine, StackResult
from orchestrator.errors import InputRejected, OperationFailed
from orchestrator.operations import guards
from orchestrator.operations.recovery import Confirm
from orchestrator.stacks import wiring
from orchestrator.stacks.graph import dns_stack, dns_targets, region_stack, replication_stack
from orchestrator.stacks.runner import Notify, Runner, RunReport
from orchestrator.state import StateLayout
from orchestrator.topology import RoutingMode, Topology, save


def require_ok(report: RunReport) -> RunReport:
    for name, result in report.results.items():
        if not result.ok:
            raise OperationFailed(f"up of {name} {result.outcome.value}: {result.message}")
    return report


def transition_dns(engine: Engine, before: Topology, after: Topology, state: StateLayout,
                   notify: Notify) -> RunReport:
    """Apply DNS for `after`, coming from `before`, in at most two updates.

    Route 53 refuses a simple record beside routed ones of the same name, and a Pulumi update removes
    records only after it changed the others. So when records leave (a secondary goes, or routing
    falls back to `single`), a first update keeps `before`'s routing with only the staying regions;
    the second then changes the mode. Records that come in need no such step: the DNS program orders
    them after the primary's record.
    """
    routed_before, routed_after = dns_targets(before), set(dns_targets(after))
    staying = [r for r in routed_before if r in routed_after]
    results: dict[str, StackResult] = {}
    if before.routing is not RoutingMode.SINGLE and len(staying) < len(routed_before) \
            and staying[:1] == [before.primary]:
        runner = Runner(engine, before, state, notify=notify)
        outputs = {r: runner.validated_outputs(region_stack(before, r)) for r in staying}
        notify(f"[dns] first taking {', '.join(r for r in routed_before if r not in routed_after)} out "
               f"of {before.routing.value} routing")
        spec = wiring.dns_spec(before, outputs, staying)
        result = engine.up(spec, None)
        results[f"{spec.name} (shrink)"] = result
        if not result.ok:
            return RunReport(before.env, "up", ((spec.name,),), results)
    report = Runner(engine, after, state, notify=notify).up([dns_stack(after)])
    results.update(report.results)
    return RunReport(after.env, "up", report.waves, results, report.journal)


def remove_secondary(app: Context, region: str, *, include_protected: bool, confirm: Confirm) -> RunReport:
    """Take a secondary out: DNS first, then replication, then its region stack. Nothing is touched
    before `confirm` agreed (the typed stack name; the protected data asked for separately)."""
    topology = app.topology()
    guards.check_destroy_region(topology, region)
    after = topology.without_secondary(region)
    stack = region_stack(topology, region).name
    app.notify(f"destroy {stack}: DNS stops answering {region}, replication leaves it, {topology.source} "
               f"drops it, then the stack is destroyed")
    confirm(f"destroy {stack}", stack)
    if include_protected:
        confirm(f"permanently delete the protected data (data lake, streams, tables) of {stack}",
                f"delete {topology.env} data")
    engine = app.engine()
    results: dict[str, StackResult] = {}
    notify = app.console.info

    def run(report: RunReport) -> bool:
        results.update(report.results)
        return report.ok

    runner_after = Runner(engine, after, app.state, notify=notify)
    if not run(transition_dns(engine, topology, after, app.state, notify)):
        return _combined(topology, results)
    if after.multi_region:
        ok = run(runner_after.up([replication_stack(after)]))
    else:
        ok = run(Runner(engine, topology, app.state, notify=notify).destroy(
            [replication_stack(topology)], include_protected=include_protected))
    if not ok:
        return _combined(topology, results)
    save(after, app.config_path)
    # the removal is a lifecycle transition: a clone whose file still lists the region is refused
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    app.state.save(app.state.lifecycle_path(app.env), {
        "operation": "remove-secondary", "region": region, "primary": after.primary,
        "routing": after.routing.value, "status": "done", "done": [], "started": stamp, "finished": stamp})
    app.record_unrouted(app.unrouted_regions() - {region})
    app.reload_topology()
    notify(f"{region} removed from {topology.source}")
    # resolvers may hand out the leaving record until its TTL has passed (the provider already
    # waited for INSYNC): only then does the region's domain configuration go
    drain = drain_seconds(dns_ttl())
    if drain:
        notify(f"waiting {drain:g} s (the record TTL) before deleting {region}'s domain configuration")
        _sleep(drain)
    run(Runner(engine, topology, app.state, notify=notify).destroy(
        [region_stack(topology, region)], include_protected=include_protected))
    return _combined(topology, results)


def dns_ttl() -> int:
    """The TTL of the DNS stack's records (the contract's; the topology does not change it)."""
    from programs.contract import DnsArgs

    default: Any = DnsArgs.__dataclass_fields__["ttl"].default
    return int(default)


def drain_seconds(ttl: int) -> float:
    """How long to wait after a record left DNS: its TTL. ORCHESTRATE_DNS_DRAIN_SECONDS overrides it
    (for moto/LocalStack runs, where no resolver caches anything)."""
    override = os.environ.get("ORCHESTRATE_DNS_DRAIN_SECONDS")
    if override is not None:
        try:
            return max(0.0, float(override))
        except ValueError:
            raise InputRejected(f"ORCHESTRATE_DNS_DRAIN_SECONDS={override!r} is not a number") from None
    return float(ttl)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _combined(topology: Topology, results: dict[str, StackResult]) -> RunReport:
    return RunReport(topology.env, "destroy", tuple((name,) for name in results), dict(results))


__all__ = ["remove_secondary", "require_ok", "transition_dns"]
