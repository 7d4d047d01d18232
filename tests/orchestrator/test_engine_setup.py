"""Set-up problems of the real engine are exit code 2 with one clear line, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli


def invoke(*args: str):  # noqa: ANN201
    return CliRunner().invoke(cli, list(args), obj=Deps(), catch_exceptions=False)


@pytest.fixture
def no_pulumi(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    return empty


def fake_cli(bin_dir: Path, script: str = "exit 0") -> None:
    """A `pulumi` on PATH that set-up checks find (it must never be run by them)."""
    fake = bin_dir / "pulumi"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)


def test_missing_cli_names_how_to_install(no_pulumi: Path, project: Path) -> None:
    result = invoke("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 2
    assert "the Pulumi CLI was not found on PATH" in result.stderr and "install" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / ".pulumi-state").exists()


def test_missing_passphrase_is_reported_before_anything_runs(no_pulumi: Path, project: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cli(no_pulumi, "echo should-not-run >&2\nexit 1")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    result = invoke("up", "--yes", "--all")
    assert result.exit_code == 2
    assert "no passphrase for the stack secrets" in result.stderr
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr and "should-not-run" not in result.output
    assert not (project / ".pulumi-state").exists()


def test_kms_secrets_provider_needs_no_passphrase(no_pulumi: Path, project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli.app import context_for
    from orchestrator.engine.pulumi import PulumiEngine

    fake_cli(no_pulumi)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    import click

    ctx = click.Context(cli, obj=Deps(values={"secrets_provider": "awskms://alias/iot-state"}))
    with ctx:
        engine = PulumiEngine.from_context(context_for(ctx))
    assert engine.secrets_provider == "awskms://alias/iot-state"
    assert engine.backend_url == f"file://{(project / '.pulumi-state').as_posix()}"


def test_unknown_secrets_provider_is_rejected(no_pulumi: Path, project: Path) -> None:
    fake_cli(no_pulumi)
    result = invoke("up", "--yes", "--all", "--secrets-provider", "rot13://")
    assert result.exit_code == 2 and "unknown secrets provider" in result.stderr
