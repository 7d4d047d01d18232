"""rebuild-region --from-backup at the CLI tier: what is refused before anything is read, and how the
backend's record of a rebuild decides who is primary (tests/ops/test_ops_rebuild_region.py runs it
end to end against moto with the primary refused)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from orchestrator.operations.guards import recorded_transition, topology_disagreements
from orchestrator.topology import parse
from tests.doubles import InMemoryEngine
from tests.orchestrator.test_who_is_primary import record

REBUILT = {"operation": "rebuild", "region": "eu-central-1", "from": "eu-west-1", "status": "done",
           "done": ["region-stack", "registry-restore", "dns", "record-primary"], "held": ["eu-west-1"],
           "started": "2026-12-03T10:00:00Z", "finished": "2026-12-03T10:20:00Z", "primary": "eu-central-1"}


def test_a_rebuild_moves_the_primary_once_its_dns_step_is_done() -> None:
    running = dict(REBUILT, status="failed", failed_step="dns", done=["region-stack", "registry-restore"],
                   primary="eu-west-1")
    before_dns = recorded_transition(running)
    assert before_dns is not None and before_dns.primary == "eu-west-1" and before_dns.members == ()
    assert "traffic not moved yet" in before_dns.summary
    moved = recorded_transition(dict(running, failed_step="record-primary",
                                     done=["region-stack", "registry-restore", "dns"]))
    assert moved is not None and moved.primary == "eu-central-1" and "traffic moved" in moved.summary
    done = recorded_transition(REBUILT)
    assert done is not None and (done.primary, done.members) == ("eu-central-1", ("eu-central-1",))
    assert done.summary == "rebuild-region eu-west-1 -> eu-central-1 from a backup, done 2026-12-03T10:20:00Z"
    # the file the rebuild wrote agrees; the file from before it is stale
    written = parse({"domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-central-1",
                     "secondaries": ["eu-west-1"], "home_region": "eu-west-1",
                     "residency": ["eu-west-1", "eu-central-1"]}, env="dev")
    stale = parse({"domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1",
                   "residency": ["eu-west-1", "eu-central-1"]}, env="dev")
    assert topology_disagreements(written, done) == []
    assert topology_disagreements(stale, done) == [
        "the recorded primary is eu-central-1, the file's is eu-west-1", "the file lacks member eu-central-1"]


@pytest.mark.parametrize("args, message", [
    (("--region", "eu-central-1"), "--from-backup"),
    (("--from-backup", "--region", "eu-centrl-1"), "did you mean eu-central-1?"),
    (("--from-backup", "--region", "eu-west-1"), "eu-west-1 is the primary of env dev"),
    (("--from-backup", "--region", "us-east-1"), "outside residency"),
])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(run: Callable[..., Result], engine: InMemoryEngine,
                                                         args: tuple[str, ...], message: str) -> None:
    result = run("rebuild-region", *args, "--yes")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert engine.calls == []


def test_a_file_that_lags_a_rebuild_is_refused_by_the_next_up(project: Path, run: Callable[..., Result],
                                                              engine: InMemoryEngine) -> None:
    record(project, REBUILT)  # the file still says eu-west-1 is primary, with no secondary
    result = run("up", "--all", "--yes")
    assert result.exit_code == 2, result.output
    assert "rebuild-region eu-west-1 -> eu-central-1 from a backup" in result.stderr
    assert engine.calls == []
