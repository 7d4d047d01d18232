"""`--endpoint-url` (and AWS_ENDPOINT_URL) reach every AWS call, including what the programs run.

The replication stack runs `orchestrate registry sync` through the command provider, with the
environment the engine gives the Pulumi CLI (`PulumiEngine._env`): these tests run exactly that
command line, in exactly that environment, against moto on its own (non-default) loopback port,
with a seeded registry and no `--endpoint-url` on the command line.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.engine.pulumi import PulumiEngine
from programs.replication import sync_command
from tests.aws_gate import Gate
from tests.doubles import InMemoryEngine, project_copy
from tests.moto_server import free_port
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import seed

ORCHESTRATE = str(Path(sys.executable).with_name("orchestrate"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = project_copy(tmp_path, monkeypatch)
    path = root / "stacks" / "dev.topology.yaml"  # the replication stack exists once DST is a member
    doc = yaml.safe_load(path.read_text())
    doc.update(secondaries=[DST], routing="failover")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def engine_env(project: Path, endpoint: str | None) -> dict[str, str]:
    """What the Pulumi CLI, and so the command provider, sees: the process env plus the engine's."""
    engine = PulumiEngine(project_dir=project, stacks_dir=project / "stacks",
                          backend_url=f"file://{project / '.pulumi-state'}", secrets_provider=None,
                          endpoint_url=endpoint, cli=Path("pulumi"),
                          config_path=project / "stacks" / "dev.topology.yaml")
    return {**os.environ, **engine._env()}


def run_replication_sync(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The replication stack's `registry-sync-<region>` command, run where the engine runs it."""
    args = SimpleNamespace(sync_command=ORCHESTRATE, env="dev", primary=SimpleNamespace(region=SRC))
    work = project / ".orchestrate" / "workspaces" / "dev-replication"
    work.mkdir(parents=True, exist_ok=True)
    (work / "Pulumi.yaml").write_text((project / "Pulumi.yaml").read_text())
    return subprocess.run([*shlex.split(sync_command(args, DST)), "--json"], cwd=work, env=env,  # type: ignore[arg-type]
                          capture_output=True, text=True, timeout=240, check=False)


def test_replication_stack_sync_follows_the_engine_endpoint(project, iot, endpoint) -> None:  # noqa: ANN001
    world = seed(iot(SRC), n_things=6, group_policy=False)
    env = engine_env(project, endpoint)
    assert "--endpoint-url" not in sync_command(SimpleNamespace(sync_command="orchestrate", env="dev",
                                                                primary=SimpleNamespace(region=SRC)), DST)
    done = run_replication_sync(project, env)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["ok"] is True and doc["write_calls"] > 0
    things = {t["thingName"] for t in iot(DST).list_things()["things"]}
    assert things == {t["thingName"] for t in iot(SRC).list_things()["things"]} and len(things) >= 6
    dst_certs = {c["certificateId"] for c in iot(DST).list_certificates()["certificates"]}
    assert set(world.cert_ids.values()) <= dst_certs


def test_aws_endpoint_url_alone_is_the_endpoint_of_every_call(project, iot, endpoint) -> None:  # noqa: ANN001
    """With only AWS_ENDPOINT_URL set (no flag): the data plane too goes there, not to DescribeEndpoint's host."""
    seed(iot(SRC), n_things=4, group_policy=False)
    env = {**engine_env(project, None), "AWS_ENDPOINT_URL": endpoint}
    done = run_replication_sync(project, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(iot(DST).list_things()["things"]) == len(iot(SRC).list_things()["things"]) > 0


# -- a sync that cannot reach its endpoint, inside promote-secondary -----------------------------
@pytest.fixture
def run(project: Path, engine: InMemoryEngine, endpoint: str) -> Callable[..., Result]:
    def invoke(*args: str, endpoint_url: str = endpoint) -> Result:
        return CliRunner().invoke(cli, [*args, "--endpoint-url", endpoint_url],
                                  obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)

    return invoke


def test_unreachable_registry_error_names_the_host_and_the_lifecycle_flag(
        run, iot, gate: Gate, project: Path, monkeypatch) -> None:  # noqa: ANN001
    path = project / "stacks" / "dev.topology.yaml"  # start single-region
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc.update(secondaries=[], routing="single")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    seed(iot(SRC), n_things=3, group_policy=False)

    from orchestrator.operations import verify

    checked = verify.domain_configuration

    def region_goes_dark(*args: Any, **kwargs: Any) -> Any:  # the new region is verified, then answers no more
        answer = checked(*args, **kwargs)
        gate.down.add(DST)
        return answer

    monkeypatch.setattr(verify, "domain_configuration", region_goes_dark)
    result = run("promote-secondary", "--yes", "--region", DST, "--sync-rate", "500")
    assert result.exit_code == 1, result.output
    host = gate.url.removeprefix("http://")
    assert host in result.output, result.output
    assert "--rate" not in result.output, result.output
    assert result.output.count(f"registry sync {SRC} -> {DST}") <= 1, result.output


def test_throttled_sync_inside_promote_names_the_flag_promote_has(run, iot, project: Path, monkeypatch) -> None:  # noqa: ANN001
    path = project / "stacks" / "dev.topology.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc.update(secondaries=[], routing="single")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    seed(iot(SRC), n_things=2, group_policy=False)
    from orchestrator.registry import api
    from tests.ops.registry_world import FaultInjector

    made = api.client

    def throttled(ctx: Any, service: str, region: str, **kwargs: Any) -> Any:  # AWS throttles every listing
        c = made(ctx, service, region, **kwargs)
        if service == "iot":
            FaultInjector(c, rate=1.0, seed=1, only={"ListThingTypes"}, faults=("throttle",))
        return c

    monkeypatch.setattr(api, "client", throttled)
    result = run("promote-secondary", "--yes", "--region", DST, "--sync-rate", "500")
    assert result.exit_code == 1, result.output
    failed = next(x for x in result.stdout.splitlines() if x.strip().startswith("registry-sync"))
    assert "ThrottlingException" in failed and "lower --sync-rate" in failed, failed


def test_endpoint_that_nothing_answers_names_itself(run, project: Path) -> None:  # noqa: ANN001
    dead = f"http://127.0.0.1:{free_port()}"
    result = run("registry", "sync", "--from", SRC, "--to", DST, "--rate", "500", endpoint_url=dead)
    assert result.exit_code == 1, result.output
    assert dead.removeprefix("http://") in result.stderr, result.stderr
