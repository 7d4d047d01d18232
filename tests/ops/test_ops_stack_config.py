"""Stack config that travels: a KMS-encrypted stack's `stacks/Pulumi.<stack>.yaml`, left by clone
a's `up`, reaches clone b (which never had it) through the S3 backend (moto), before b's engine
set-up decides whether a passphrase is needed."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.cli.app import Deps, context_for
from orchestrator.cli.main import cli
from orchestrator.engine.pulumi import PulumiEngine, stack_secrets_providers
from orchestrator.engine.types import StackSpec
from orchestrator.errors import InputRejected
from tests.orchestrator.test_stack_config import USER_FILE, FileStack

REPO = Path(__file__).resolve().parents[2]
BUCKET = "team-pulumi-state"
BACKEND = f"s3://{BUCKET}/iot?region=us-east-1"
STACK = "dev-region-eu-west-1"


def clone(base: Path, name: str) -> Path:
    root = base / name
    (root / "stacks").mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(REPO / "stacks" / "dev.topology.yaml", root / "stacks" / "dev.topology.yaml")
    return root


@pytest.fixture
def team(tmp_path: Path, ctx: AwsContext, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    client(ctx, "s3", "us-east-1").create_bucket(Bucket=BUCKET)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"  # set-up only looks for it; nothing here runs it
    fake.write_text("#!/bin/sh\necho should-not-run >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", BACKEND)
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "ORCHESTRATE_ENV",
                 "ORCHESTRATE_SECRETS_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    return clone(tmp_path, "a"), clone(tmp_path, "b")


def engine_in(root: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> PulumiEngine:
    """The engine set-up every stack command (drift, recover, preview, up --resume) goes through."""
    monkeypatch.chdir(root)
    with click.Context(cli, obj=Deps(values={"endpoint_url": endpoint})) as ctx:
        return PulumiEngine.from_context(context_for(ctx))


def a_runs_up(a: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What clone a's `up` does to the stack file: Pulumi wrote it (KMS provider, encrypted key), the
    orchestrator merged its config into it and kept a copy in the backend."""
    path = a / "stacks" / f"Pulumi.{STACK}.yaml"
    path.write_text(USER_FILE)
    engine = engine_in(a, endpoint, monkeypatch)
    engine._configure_for_up(FileStack(path), StackSpec(STACK, "region", "eu-west-1", {"aws:region": "eu-west-1"}))
    return path


def test_a_clone_without_the_stack_file_opens_a_kms_stack_without_a_passphrase(
        team: tuple[Path, Path], endpoint: str, monkeypatch: pytest.MonkeyPatch, ctx: AwsContext) -> None:
    a, b = team
    path = a_runs_up(a, endpoint, monkeypatch)
    keys = [o["Key"] for o in client(ctx, "s3", "us-east-1").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert f"iot/.orchestrate/stacks/Pulumi.{STACK}.yaml" in keys
    assert not (b / "stacks" / path.name).exists()
    engine = engine_in(b, endpoint, monkeypatch)  # no "passphrase must be set": the provider is KMS
    assert (b / "stacks" / path.name).read_bytes() == path.read_bytes()
    assert stack_secrets_providers(b / "stacks", "dev") == {STACK: "awskms://alias/iot-state?region=eu-west-1"}
    assert engine.secrets_provider is None  # the stack's own provider is used, none forced


def test_a_clone_whose_file_lacks_the_secrets_keys_gets_only_those(
        team: tuple[Path, Path], endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = team
    a_runs_up(a, endpoint, monkeypatch)
    mine = "# my tags\nconfig:\n  aws:defaultTags:\n    tags:\n      Owner: team-b\n"
    (b / "stacks" / f"Pulumi.{STACK}.yaml").write_text(mine)
    engine_in(b, endpoint, monkeypatch)
    text = (b / "stacks" / f"Pulumi.{STACK}.yaml").read_text()
    assert text.startswith(mine)  # the user's text, comments included, is kept as it was
    assert "secretsprovider: awskms://alias/iot-state?region=eu-west-1" in text and "encryptedkey: " in text


def test_without_the_backend_copy_a_bare_clone_still_needs_the_passphrase(
        team: tuple[Path, Path], endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The restore is what makes the difference: with nothing in the backend, set-up refuses."""
    _a, b = team
    with pytest.raises(InputRejected, match="passphrase"):
        engine_in(b, endpoint, monkeypatch)
    assert list((b / "stacks").glob("Pulumi.*.yaml")) == []


