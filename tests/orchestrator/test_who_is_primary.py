"""Who is primary (docs/architecture.md): the last lifecycle transition recorded in the run state
backend wins over a stale topology file; commands that render DNS refuse the file (exit 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from orchestrator.operations.guards import recorded_transition, topology_disagreements
from orchestrator.topology import Topology, parse
from tests.doubles import InMemoryEngine
from tests.orchestrator.conftest import multi_region, write_topology

FAILED_OVER = {"operation": "failover", "region": "eu-central-1", "from": "eu-west-1", "status": "done",
               "done": ["check-target", "final-sync", "dns", "record-primary"], "started": "2026-12-02T20:00:00Z",
               "finished": "2026-12-02T20:01:00Z", "primary": "eu-central-1"}
AFTER_FAILOVER = """\
domain: iot.example.com
hosted_zone: example.com
primary: eu-central-1
secondaries: [eu-west-1]
routing: failover
residency: [eu-west-1, eu-central-1, eu-north-1, eu-west-2, eu-west-3, eu-south-1]
"""


def record(project: Path, data: dict[str, object], env: str = "dev") -> None:
    path = project / ".pulumi-state" / ".orchestrate" / "lifecycle" / f"{env}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def topo(secondaries: tuple[str, ...] = ("eu-central-1",), routing: str = "failover") -> Topology:
    return parse({"domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1",
                  "secondaries": list(secondaries), "routing": routing,
                  "residency": ["eu-west-1", "eu-central-1", "eu-north-1"]}, env="dev")


def test_a_failover_moved_traffic_once_its_dns_step_is_done() -> None:
    started = {"operation": "failover", "region": "eu-central-1", "from": "eu-west-1", "status": "failed",
               "failed_step": "dns", "done": ["check-target", "final-sync"], "started": "t"}
    assert recorded_transition(started).primary == "eu-west-1"  # type: ignore[union-attr]
    moved = dict(started, failed_step="record-primary", done=["check-target", "final-sync", "dns"])
    assert recorded_transition(moved).primary == "eu-central-1"  # type: ignore[union-attr]
    arc = dict(started, failed_step="record-primary", done=["check-target", "final-sync", "routing-controls"])
    assert recorded_transition(arc).primary == "eu-central-1"  # type: ignore[union-attr]
    assert recorded_transition(FAILED_OVER).primary == "eu-central-1"  # type: ignore[union-attr]
    assert recorded_transition(None) is None and recorded_transition({}) is None


def test_promotions_and_removals_are_compared_too() -> None:
    promoted = recorded_transition({"operation": "promote", "region": "eu-north-1", "routing": "latency",
                                    "previous_routing": "failover", "primary": "eu-west-1", "status": "done",
                                    "done": [], "finished": "t"})
    assert promoted is not None
    problems = topology_disagreements(topo(), promoted)
    assert problems == ["the file lacks member eu-north-1",
                        "the recorded routing is latency, the file's is failover"], problems
    assert not topology_disagreements(topo(("eu-central-1", "eu-north-1"), routing="latency"), promoted)
    removed = recorded_transition({"operation": "remove-secondary", "region": "eu-central-1", "primary": "eu-west-1",
                                   "routing": "single", "status": "done", "finished": "t"})
    assert removed is not None
    assert topology_disagreements(topo(), removed)[0] == "the file still lists removed region eu-central-1"
    assert not topology_disagreements(topo((), routing="single"), removed)


@pytest.mark.parametrize("args", [("up", "--all", "--yes"), ("preview",), ("drift", "--all"),
                                  ("destroy", "--region", "eu-central-1", "--yes")])
def test_a_stale_topology_is_refused_before_anything_runs(project: Path, run: Callable[..., Result],
                                                          engine: InMemoryEngine, args: tuple[str, ...]) -> None:
    multi_region(project, "dev", ["eu-central-1"])  # the file still says eu-west-1 is primary
    record(project, FAILED_OVER)
    result = run(*args)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "dev.topology.yaml disagrees with the last lifecycle transition" in line, line
    assert "failover eu-west-1 -> eu-central-1, done 2026-12-02T20:01:00Z" in line, line
    assert "the recorded primary is eu-central-1, the file's is eu-west-1" in line, line
    assert "commit" in line and "pull main" in line, line
    assert engine.calls == [], engine.calls  # nothing touched


def test_the_topology_the_transition_wrote_is_accepted(project: Path, run: Callable[..., Result],
                                                       engine: InMemoryEngine) -> None:
    write_topology(project, "dev", AFTER_FAILOVER)
    record(project, FAILED_OVER)
    result = run("up", "--all", "--yes")
    assert result.exit_code == 0, result.output + result.stderr
    assert ("up", "dev-dns") in engine.ops("up")
