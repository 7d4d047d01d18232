"""The live-replacement guard against moto (issue 21): a secondary that DNS does not answer yet (its
promotion stopped after the registry sync) is live because its registry holds things; `up` then
refuses to replace its domain configuration before any change. Without things it may go ahead.
The previews are the programs' own resource sets (tests/ops/test_ops_after_transitions.py) plus the
one replacement a new server certificate would force."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner, Result

from orchestrator.aws import AwsContext
from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.operations.replace_guard import aws_things_probe
from orchestrator.preview.model import Op, ResourceChange, StackPreview
from orchestrator.stacks.wiring import StackSpec
from orchestrator.topology import load
from tests.doubles import InMemoryEngine, project_copy
from tests.ops.conftest import DST, SRC
from tests.ops.provider_sim import ProviderSimulation
from tests.ops.registry_world import seed
from tests.ops.test_ops_after_transitions import program_preview

DOMAIN_TYPE = "aws:iot/domainConfiguration:DomainConfiguration"
URN = f"urn:pulumi:dev-region-{DST}::iot-platform::iotplatform:region:IotRegion${DOMAIN_TYPE}::iot-dev-{DST}-domain"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORCHESTRATE_DNS_DRAIN_SECONDS", "0")
    return project_copy(tmp_path, monkeypatch)


@pytest.fixture
def engine(sim: ProviderSimulation) -> InMemoryEngine:
    e = InMemoryEngine()
    sim.attach(e)
    base = program_preview(e)

    def preview(spec: StackSpec) -> StackPreview:
        found = base(spec)
        if spec.name != f"dev-region-{DST}" or not (e.stacks.get(spec.name) and e.stacks[spec.name].deployed):
            return found
        replace = ResourceChange(URN, DOMAIN_TYPE, f"iot-dev-{DST}-domain", Op.REPLACE,
                                 diffs=("serverCertificateArns",), stateful=True,
                                 replace_keys=("serverCertificateArns",))
        return StackPreview(found.stack, found.kind, found.region, (*found.changes, replace),
                            {**found.counts, Op.REPLACE: 1})

    e.previews["*"] = preview
    return e


@pytest.fixture
def run(project: Path, engine: InMemoryEngine, endpoint: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        extra = ["--sync-rate", "500"] if args[0] == "promote-secondary" else []
        return CliRunner().invoke(cli, [*args, *extra, "--endpoint-url", endpoint],
                                  obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)

    return invoke


def _stopped_promotion(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    """DST's stack is up and its registry synced, but DNS does not answer it (replication failed)."""
    engine.fail_on["dev-replication"] = "injected failure"
    failed = run("promote-secondary", "--yes", "--region", DST, "--routing", "failover")
    assert failed.exit_code == 1, failed.output
    del engine.fail_on["dev-replication"]
    engine.calls.clear()


def test_an_unrouted_secondary_holding_things_is_not_replaced(run, engine, iot) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    seed(iot(SRC), n_things=3, group_policy=False)
    _stopped_promotion(run, engine)
    assert iot(DST).list_things(maxResults=1)["things"]  # the sync carried them
    result = run("up", "--yes", "--region", DST)
    assert result.exit_code == 4, result.output
    assert f"up would replace DomainConfiguration iot-dev-{DST}-domain in {DST} (forced by serverCertificateArns), " \
           "which holds things" in result.stderr
    assert engine.ops("up") == []


def test_an_unrouted_secondary_without_things_may_be_replaced(run, engine, iot) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    _stopped_promotion(run, engine)
    assert iot(DST).list_things(maxResults=1)["things"] == []
    result = run("up", "--yes", "--region", DST)
    assert result.exit_code == 0, result.output
    assert ("up", f"dev-region-{DST}") in engine.ops("up")


def test_the_things_probe_reads_the_registry(ctx: AwsContext, iot, project: Path) -> None:  # noqa: ANN001
    topology = load(project / "stacks" / "dev.topology.yaml", env="dev")
    probe = aws_things_probe(SimpleNamespace(aws=lambda: ctx), topology)  # type: ignore[arg-type]
    assert probe(DST) is False
    iot(DST).create_thing(thingName="sensor-1")
    assert probe(DST) is True
    broken = aws_things_probe(SimpleNamespace(aws=lambda: AwsContext(endpoint_url="http://127.0.0.1:9")), topology)  # type: ignore[arg-type]
    assert isinstance(broken(DST), str) and "127.0.0.1:9" in broken(DST)


def test_promote_refuses_to_replace_the_domain_configuration_of_a_region_holding_things(
        run, engine, iot, project: Path) -> None:  # noqa: ANN001
    """promote-secondary's region-stack step runs `up` through the same guard: a re-run over a region
    stack that exists and holds things stops there (exit 4, recorded as refused), and says how."""
    import json

    from orchestrator.stacks import wiring

    assert run("up", "--yes", "--region", SRC).exit_code == 0
    engine.fail_on[f"dev-region-{DST}"] = "injected failure"
    assert run("promote-secondary", "--yes", "--region", DST, "--routing", "failover").exit_code == 1
    del engine.fail_on[f"dev-region-{DST}"]
    topology = load(project / "stacks" / "dev.topology.yaml", env="dev")
    engine.deploy(wiring.region_spec(topology, DST))  # the stack exists (an earlier run made it) ...
    iot(DST).create_thing(thingName="sensor-1")  # ... and the region holds things
    engine.calls.clear()
    result = run("promote-secondary", "--yes", "--region", DST, "--routing", "failover")
    assert result.exit_code == 4, result.output
    assert "which holds things" in result.stderr and f"orchestrate up --region {DST} --allow-replace" in result.stderr
    assert engine.ops("up") == []
    record = json.loads((project / ".pulumi-state" / ".orchestrate" / "lifecycle" / "dev.json").read_text())
    assert record["status"] == "refused" and record["failed_step"] == "region-stack"
