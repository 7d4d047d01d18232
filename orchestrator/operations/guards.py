"""Safety guards: checked before anything is touched; a refusal is exit code 4.

- A region still receiving DNS traffic, or the primary while secondaries depend on it, is never
  destroyed; the message says what to run first.
- The home region (the shared ACM validation record, the registry-events table) is not destroyed
  while other regions rely on it.
- Replication never targets a region outside the environment's residency list (topology parsing
  rejects such a file; `check_residency` guards commands that add a region).
- Who is primary: a topology file that contradicts the last lifecycle transition recorded in the
  backend (or, in `arc` mode, the routing controls) is refused before DNS is rendered from it
  (`check_primary`, exit 2): a stale file never moves traffic back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from orchestrator.errors import GuardRefused, InputRejected
from orchestrator.topology import Topology

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context


def check_destroy_region(topology: Topology, region: str) -> None:
    if region == topology.primary and topology.secondaries:
        raise GuardRefused(
            f"{region} is the primary of env {topology.env} and secondaries depend on it "
            f"({', '.join(topology.secondaries)})",
            hint=f"run `orchestrate failover --to {topology.secondaries[0]}` or remove the secondaries first",
        )
    if region == topology.primary:
        raise GuardRefused(
            f"{region} is the only region of env {topology.env} and receives all DNS traffic",
            hint="to tear the environment down run `orchestrate destroy --all --yes`",
        )
    if region == topology.home_region and topology.multi_region:
        raise GuardRefused(
            f"{region} is the home region: it owns the ACM validation record the other regions' certificates "
            "rely on and the registry-events table",
            hint="move home_region to another member region in the topology first",
        )


def check_residency(topology: Topology, region: str) -> None:
    if region not in topology.residency:
        raise InputRejected(
            f"{topology.source}: {region} is outside residency {list(topology.residency)} of env {topology.env}: "
            "data may not be copied there"
        )


# -- who is primary (docs/architecture.md, "Who is primary") ---------------------------------------
@dataclass(frozen=True)
class RecordedTransition:
    """What the last lifecycle transition on record (in the run state backend) says the topology
    must hold: the primary, members it added or removed, the routing it set."""

    primary: str | None
    summary: str  # "failover eu-west-1 -> eu-central-1, done 2026-12-02T20:31:00Z"
    members: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    routing: str | None = None


TRAFFIC_STEPS = ("dns", "routing-controls")  # the steps of failover/failback that move traffic


def recorded_transition(record: Mapping[str, Any] | None) -> RecordedTransition | None:
    """Read a lifecycle record (`StateLayout.lifecycle_path`); None when it says nothing about roles.

    A failover or failback moved traffic once its traffic step is done (or it is done): the primary
    is then its target, else still the region it started from."""
    if not isinstance(record, Mapping) or not record.get("operation"):
        return None
    op, status = str(record["operation"]), str(record.get("status", "?"))
    region = record.get("region")
    done = set(record.get("done") or ())
    finished = status == "done"
    if finished:
        when = f"done {record.get('finished') or record.get('started') or '?'}"
    else:
        step = f" at step {record['failed_step']}" if record.get("failed_step") else ""
        when = f"{status}{step}, started {record.get('started') or '?'}"
    if op in ("failover", "failback"):
        moved = finished or bool(done & set(TRAFFIC_STEPS))
        primary = region if moved else record.get("from")
        summary = f"{op} {record.get('from') or '?'} -> {region}, {when}"
        if not finished:
            summary += ", traffic moved" if moved else ", traffic not moved yet"
        return RecordedTransition(str(primary) if primary else None, summary)
    if op == "rebuild":  # rebuild-region --from-backup: traffic moved once its DNS step is done
        moved = finished or "dns" in done
        primary = region if moved else record.get("from")
        summary = f"rebuild-region {record.get('from') or '?'} -> {region} from a backup, {when}"
        if not finished:
            summary += ", traffic moved" if moved else ", traffic not moved yet"
        return RecordedTransition(str(primary) if primary else None, summary,
                                  members=(str(region),) if finished and region else ())
    if op == "promote":
        member = finished or "record-secondary" in done
        routed = finished or "dns" in done
        routing = record.get("routing") if routed else record.get("previous_routing")
        return RecordedTransition(record.get("primary"), f"promote-secondary {region}, {when}",
                                  members=(str(region),) if member and region else (),
                                  routing=str(routing) if routing else None)
    if op == "remove-secondary" and finished:
        return RecordedTransition(record.get("primary"), f"destroy --region {region} (secondary removed), {when}",
                                  removed=(str(region),) if region else (), routing=record.get("routing"))
    return None


def topology_disagreements(topology: Topology, recorded: RecordedTransition) -> list[str]:
    """How `topology` contradicts the recorded transition (empty: it agrees)."""
    out = []
    if recorded.primary and recorded.primary != topology.primary:
        out.append(f"the recorded primary is {recorded.primary}, the file's is {topology.primary}")
    missing = [r for r in recorded.members if r not in topology.regions]
    if missing:
        out.append(f"the file lacks member {', '.join(missing)}")
    stale = [r for r in recorded.removed if r in topology.regions]
    if stale:
        out.append(f"the file still lists removed region {', '.join(stale)}")
    if recorded.routing and recorded.routing != topology.routing.value:
        out.append(f"the recorded routing is {recorded.routing}, the file's is {topology.routing.value}")
    return out


def check_primary(app: Context, *, controls: bool = True) -> None:
    """Refuse (exit 2, nothing touched) a topology file that contradicts the live roles: the last
    lifecycle transition recorded in the run state backend and, in `arc` mode with `controls`, the
    routing controls. The file is then stale (not committed or not pulled); rendering DNS from it
    would silently move traffic back. The lifecycle commands pass `controls=False`: during an outage
    they must call no endpoint of the failed region, and their own steps read the controls back.
    First, with `allowed_account_ids`, the accounts the credentials act in (`accounts.check_accounts`)."""
    if app.backend_error:
        return  # the command refuses the backend itself
    from orchestrator.operations.accounts import check_accounts

    check_accounts(app)  # allowed_account_ids: the wrong credentials touch nothing either
    topology = app.topology()
    record = app.state.load(app.state.lifecycle_path(app.env))
    recorded = recorded_transition(record)
    problems = topology_disagreements(topology, recorded) if recorded else []
    where = f"{app.state.location}/{app.state.key(app.state.lifecycle_path(app.env))}"
    live = f"the last lifecycle transition in {where} ({recorded.summary})" if recorded else ""
    arc = _arc_disagreement(app, topology) if controls else None
    if arc:
        problems.append(arc)
        live = f"{live} and the ARC routing controls" if live else "the ARC routing controls"
    if problems:
        raise InputRejected(
            f"{topology.source} disagrees with {live}: {'; '.join(problems)}; nothing was touched",
            hint="the transition wrote the topology on the machine that ran it: commit its "
                 f"{PurePath(topology.source).name} (or pull main) and re-run; to move traffic back run "
                 "`orchestrate failback`, never an older file")


def _arc_disagreement(app: Context, topology: Topology) -> str | None:
    """In `arc` mode, the routing controls are the live truth: the file's primary Off while another
    region is On is a disagreement. A cluster that cannot be read leaves the record to decide."""
    from orchestrator.errors import OrchestrateError
    from orchestrator.topology import FailoverControl

    if topology.failover_control is not FailoverControl.ARC or not topology.multi_region:
        return None
    from orchestrator.routing_controls import ArcWiring, ControlState, read_states
    from orchestrator.stacks.graph import dns_stack

    try:
        outputs = app.engine().outputs(dns_stack(topology).name) or {}
        if not outputs:
            return None
        states = read_states(app.aws(), ArcWiring.from_outputs(outputs)).states
    except OrchestrateError as exc:
        app.notify(f"routing controls not read ({exc.one_line()}): the recorded transition decides")
        return None
    on = sorted(r for r, s in states.items() if s is ControlState.ON)
    if states.get(topology.primary) is ControlState.OFF and on:
        shown = ", ".join(f"{r}={s.value}" for r, s in sorted(states.items()))
        return f"the routing controls send traffic to {', '.join(on)} ({shown}), the file's primary is " \
               f"{topology.primary}"
    return None
