"""Previews before changes (issue 23, item 2): `promote-secondary --dry-run` runs its preflight
and shows, per stack, what Pulumi would change. Against moto (the preflight reads Route 53); the
previews are the programs' own resource sets (tests/ops/test_ops_after_transitions.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.aws import AwsContext
from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from tests.doubles import InMemoryEngine, project_copy
from tests.ops.conftest import DST, SRC
from tests.ops.provider_sim import ProviderSimulation
from tests.ops.test_ops_after_transitions import program_preview


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_copy(tmp_path, monkeypatch)


@pytest.fixture
def engine(ctx: AwsContext) -> InMemoryEngine:
    e = InMemoryEngine()
    ProviderSimulation(ctx).attach(e)
    e.previews["*"] = program_preview(e)
    return e


@pytest.fixture
def run(project: Path, engine: InMemoryEngine, endpoint: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, [*args, "--endpoint-url", endpoint],
                                  obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)

    return invoke


def test_dry_run_with_the_primary_down_fails_its_preflight(run, engine, project) -> None:  # noqa: ANN001
    result = run("promote-secondary", "--region", DST, "--dry-run", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and doc["ok"] is False, result.output
    assert doc["steps"][0]["step"] == "preflight" and doc["steps"][0]["status"] == "failed"
    assert f"dev-region-{SRC} is not up" in doc["steps"][0]["detail"]
    assert engine.ops("up") == [] and engine.ops("preview") == []


def test_dry_run_shows_per_stack_changes_and_changes_nothing(run, engine, project) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    before = (project / "stacks" / "dev.topology.yaml").read_text()
    engine.calls.clear()
    result = run("promote-secondary", "--region", DST, "--dry-run")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.startswith("  ")}
    assert "passed" in rows["preflight"] and "zone example.com" in rows["preflight"]
    created = re.search(rf"dev-region-{DST}: (\d+) to create, 0 to update, 0 to replace, 0 to delete",
                        rows["region-stack"])
    assert created and int(created.group(1)) > 0, rows["region-stack"]
    assert re.search(r"dev-replication: [1-9]\d* to create", rows["replication"]), rows["replication"]
    # single -> failover: health checks and a second record appear in the DNS stack
    dns = re.search(r"dev-dns: (\d+) to create, (\d+) to update", rows["dns"])
    assert dns and int(dns.group(1)) + int(dns.group(2)) > 0, rows["dns"]
    assert {op for op, _ in engine.ops()} == {"preview"}
    assert (project / "stacks" / "dev.topology.yaml").read_text() == before
