from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from tests.doubles import InMemoryEngine

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's Pulumi.yaml and topology files in a temp dir, as the working dir."""
    (tmp_path / "stacks").mkdir()
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    for f in (REPO / "stacks").glob("*.topology.yaml"):
        shutil.copy(f, tmp_path / "stacks" / f.name)
    monkeypatch.chdir(tmp_path)
    # the runner's CI, backend and ORCHESTRATE_* settings are gone for the whole run (tests/conftest.py)
    return tmp_path


def write_topology(project: Path, env: str, text: str) -> Path:
    path = project / "stacks" / f"{env}.topology.yaml"
    path.write_text(text)
    return path


@dataclass
class Cli:
    engine: InMemoryEngine
    invoke: Callable[..., Result]


@pytest.fixture
def engine() -> InMemoryEngine:
    return InMemoryEngine()


@pytest.fixture
def run(project: Path, engine: InMemoryEngine) -> Callable[..., Result]:
    """Invoke the CLI with the in-memory engine; returns click's Result (stdout and stderr apart)."""

    def invoke(*args: str, input: str | None = None) -> Result:
        deps = Deps(engine_factory=lambda app: engine)
        return CliRunner().invoke(cli, list(args), obj=deps, input=input, catch_exceptions=False)

    return invoke


MULTI = """\
domain: iot.example.com
hosted_zone: example.com
primary: eu-west-1
secondaries: [{secondaries}]
routing: {routing}
residency: [eu-west-1, eu-central-1, eu-north-1, eu-west-2, eu-west-3, eu-south-1]
"""


def multi_region(project: Path, env: str, secondaries: list[str], routing: str = "failover") -> Path:
    return write_topology(project, env, MULTI.format(secondaries=", ".join(secondaries), routing=routing))
