"""README's walk from one region to two, a failover and back, run as written against moto.

The block between `<!-- walk:start -->` and `<!-- walk:end -->` in README.md is read, and each
command runs through the CLI in order (with `--endpoint-url` added, as README says), after
`orchestrate up --region eu-west-1` (step 5) and a seeded registry. Every command must exit 0,
except a line ending in `|| true`, whose exit code README says is not checked. Afterwards DNS
sends traffic to eu-west-1 again, with eu-central-1 as the secondary, and both registries hold the
seeded things with the same certificate ids.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from tests.doubles import InMemoryEngine, project_copy, stable_endpoint
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import seed

README = Path(__file__).resolve().parents[2] / "README.md"


def walk() -> list[tuple[list[str], bool]]:
    """The walk's commands: (argv without `orchestrate`, whether its exit code is checked)."""
    text = README.read_text()
    block = re.search(r"<!-- walk:start -->\s*```sh\n(.*?)```\s*<!-- walk:end -->", text, re.S)
    assert block, "README.md has no walk block"
    out = []
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        checked = not line.endswith("|| true")
        command = line.removesuffix("|| true").split(">", 1)[0].strip()  # redirections are the shell's
        argv = shlex.split(command)
        assert argv[0] == "orchestrate", line
        out.append((argv[1:], checked))
    return out


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: InMemoryEngine,
        endpoint: str) -> Callable[..., Result]:
    project_copy(tmp_path, monkeypatch)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, [*args, "--endpoint-url", endpoint],
                                  obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)

    return invoke


def test_the_readme_walk_runs_as_written(run, sim, iot, tmp_path: Path) -> None:  # noqa: ANN001
    commands = walk()
    assert [a[0] for a, _ in commands].count("failover") == 1 and any(a[0] == "failback" for a, _ in commands)
    assert run("up", "--yes", "--region", SRC).exit_code == 0  # step 5
    world = seed(iot(SRC), n_things=6, group_policy=False)
    for argv, checked in commands:
        result = run(*argv)
        if checked:
            assert result.exit_code == 0, f"orchestrate {' '.join(argv)}:\n{result.output}"
    topology = yaml.safe_load((tmp_path / "stacks" / "dev.topology.yaml").read_text())
    assert topology["primary"] == SRC and topology["secondaries"] == [DST]
    records = sorted((rr.get("Failover"), rr["ResourceRecords"][0]["Value"]) for rr in sim.records())
    assert records == [("PRIMARY", stable_endpoint(SRC)), ("SECONDARY", stable_endpoint(DST))]
    for region in (SRC, DST):
        certs = {c["certificateId"] for c in iot(region).list_certificates()["certificates"]}
        assert set(world.cert_ids.values()) <= certs, region
