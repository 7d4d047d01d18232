"""After promote -> failover -> failback: preview agrees with what is deployed, a failed
`destroy --region` says what to run next, and `status` marks as receiving DNS traffic only the
regions DNS points at. Through the CLI, against moto (tests/ops/provider_sim.py applies DNS).

The preview here is the programs' own resource set: each stack's program evaluated under Pulumi
mocks with the config `preview` renders now and with the config last applied, compared by logical
name and inputs, which is what the engine compares (a resource only in the new set is a create).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.preview.model import Op, ResourceChange, StackPreview
from orchestrator.stacks.wiring import StackSpec
from tests.doubles import InMemoryEngine, project_copy
from tests.ops.conftest import DST, SRC
from tests.ops.provider_sim import ProviderSimulation
from tests.ops.registry_world import seed

NS = "iot-platform:"
LIFECYCLE = {"promote-secondary", "failover", "failback"}


def _resources(spec_kind: str, config: dict[str, str], stack: str) -> dict[str, Any]:
    from programs import contract
    from programs.mocks import evaluate

    cls = {"region": contract.RegionArgs, "dns": contract.DnsArgs, "replication": contract.ReplicationArgs}[spec_kind]
    args = cls.from_config(lambda key: config.get(NS + key))  # type: ignore[attr-defined]
    return {r.name: r for r in evaluate(args, stack=stack).resources if r.custom and not r.read}


def _plain(value: Any) -> str:
    """Inputs as the engine compares them: an archive or asset by the hash of its content."""
    def default(obj: Any) -> Any:
        path = getattr(obj, "path", None)
        if path and Path(path).is_file():
            import hashlib

            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return type(obj).__name__

    return json.dumps(value, sort_keys=True, default=default)


def program_preview(engine: InMemoryEngine) -> Callable[[StackSpec], StackPreview]:
    def preview(spec: StackSpec) -> StackPreview:
        deployed = engine.stacks.get(spec.name)
        new = _resources(spec.kind, dict(spec.config), spec.name)
        old = _resources(spec.kind, dict(deployed.config), spec.name) if deployed and deployed.deployed else {}
        changes = [ResourceChange(f"urn:{n}", r.type, n, Op.CREATE) for n, r in new.items() if n not in old]
        changes += [ResourceChange(f"urn:{n}", r.type, n, Op.DELETE) for n, r in old.items() if n not in new]
        changes += [ResourceChange(f"urn:{n}", r.type, n, Op.UPDATE) for n, r in new.items()
                    if n in old and _plain(r.inputs) != _plain(old[n].inputs)]
        counts: dict[Op, int] = {}
        for c in changes:
            counts[c.op] = counts.get(c.op, 0) + 1
        counts[Op.SAME] = len(new) - counts.get(Op.CREATE, 0) - counts.get(Op.UPDATE, 0)
        return StackPreview(spec.name, spec.kind, spec.region, tuple(changes), counts)

    return preview


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORCHESTRATE_DNS_DRAIN_SECONDS", "0")
    return project_copy(tmp_path, monkeypatch)



@pytest.fixture
def engine(sim: ProviderSimulation) -> InMemoryEngine:
    e = InMemoryEngine()
    sim.attach(e)  # the DNS stack exports what the program exports (its record list too)
    e.previews["*"] = program_preview(e)
    return e


@pytest.fixture
def run(project: Path, engine: InMemoryEngine, endpoint: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        extra = ["--sync-rate", "500"] if args and args[0] in LIFECYCLE else []
        return CliRunner().invoke(cli, [*args, *extra, "--endpoint-url", endpoint],
                                  obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)

    return invoke


@pytest.fixture
def two_regions(run, iot) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    seed(iot(SRC), n_things=3, group_policy=False)
    promoted = run("promote-secondary", "--yes", "--region", DST, "--routing", "failover")
    assert promoted.exit_code == 0, promoted.output


def test_preview_after_promote_failover_failback_wants_nothing(run, two_regions) -> None:  # noqa: ANN001
    assert run("failover", "--yes", "--to", DST).exit_code == 0
    assert run("failback", "--yes").exit_code == 0
    assert run("drift", "--all").exit_code == 0
    result = run("preview", "--all", "--expect-no-changes", "--format", "json")
    doc = json.loads(result.stdout)
    wanted = {s["stack"]: s.get("counts") for s in doc["stacks"] if any(
        op in (s.get("counts") or {}) and s["counts"][op] for op in ("create", "update", "replace", "delete"))}
    assert result.exit_code == 0 and wanted == {}, wanted


def _status_routed(run) -> dict[str, bool]:  # noqa: ANN001
    doc = json.loads(run("status", "--json").stdout)
    return {s["region"]: s["routed"] for s in doc["stacks"] if s["kind"] == "region"}


def test_failed_destroy_names_the_next_step_and_status_follows_dns(run, engine, two_regions, sim) -> None:  # noqa: ANN001
    assert _status_routed(run) == {SRC: True, DST: True}
    engine.locked["dev-replication"] = "ci@runner-7 (pid 4242)"  # a crashed run still holds its lock
    result = run("destroy", "--region", DST, "--yes")
    assert result.exit_code == 3, result.output
    nxt = [line for line in result.stdout.splitlines() if line.startswith("next: ")]
    assert len(nxt) == 1 and f"orchestrate destroy --region {DST}" in nxt[0] \
        and "orchestrate recover dev-replication" in nxt[0], result.stdout
    # DNS left DST (the records say so); the topology file still lists it as a secondary
    assert all(DST not in rr["ResourceRecords"][0]["Value"] for rr in sim.records())
    assert _status_routed(run) == {SRC: True, DST: False}
    engine.locked.clear()
    again = run("destroy", "--region", DST, "--yes")
    assert again.exit_code == 0, again.output
    assert "next:" not in again.stdout
