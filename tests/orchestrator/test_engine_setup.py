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
    monkeypatch.setenv("ORCHESTRATE_TOOLS_DIR", str(tmp_path / "no-tools"))  # nor a CLI the Go build cached
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


class _Install:
    """Stands in for `PulumiCommand.install` (no network in tests): records its arguments and
    either fails as a download does offline, or lays out `<root>/bin/pulumi` as the installer does."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[dict[str, object]] = []

    def __call__(self, *, version: object, root: str, skip_version_check: bool = False) -> None:
        self.calls.append({"version": str(version), "root": root})
        if self.error is not None:
            raise self.error
        (Path(root) / "bin").mkdir(parents=True)
        fake_cli(Path(root) / "bin")


@pytest.fixture
def downloads(no_pulumi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloading the CLI allowed (the suite turns it off), into a tools cache of this test's own."""
    monkeypatch.delenv("ORCHESTRATE_PULUMI_INSTALL", raising=False)
    monkeypatch.setenv("ORCHESTRATE_TOOLS_DIR", str(tmp_path / "tools"))
    return tmp_path / "tools"


def _use(monkeypatch: pytest.MonkeyPatch, install: _Install) -> None:
    from pulumi import automation as auto

    monkeypatch.setattr(auto.PulumiCommand, "install", install)


def _sdk() -> str:
    import importlib.metadata

    return importlib.metadata.version("pulumi")


def test_a_missing_cli_is_installed_at_the_pinned_version_when_the_network_allows(
        downloads: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli.app import context_for
    from orchestrator.engine.pulumi import PulumiEngine

    install = _Install()
    _use(monkeypatch, install)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "x")
    import click

    with click.Context(cli, obj=Deps()) as ctx:
        engine = PulumiEngine.from_context(context_for(ctx))
    root = downloads / f"pulumi-{_sdk()}"
    assert install.calls == [{"version": _sdk(), "root": str(root)}]
    assert engine.cli == root / "bin" / "pulumi"
    with click.Context(cli, obj=Deps()) as ctx:  # the next command finds it in the cache
        assert PulumiEngine.from_context(context_for(ctx)).cli == root / "bin" / "pulumi"
    assert len(install.calls) == 1


def test_a_failed_download_is_exit_2_naming_the_offline_go_build(downloads: Path, project: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    install = _Install(OSError("[Errno 101] Network is unreachable"))
    _use(monkeypatch, install)
    result = invoke("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("the Pulumi CLI was not found: installing Pulumi"), lines
    assert len(lines) == 2 and lines[1].startswith("error: the Pulumi CLI was not found on PATH"), lines
    assert f"installing Pulumi {_sdk()} with PulumiCommand.install failed: [Errno 101] Network is unreachable" \
        in lines[1]
    assert "tests/engine/build_pulumi.sh" in lines[1] and "download-install" in lines[1]
    assert len(install.calls) == 1 and not (project / ".pulumi-state").exists()


def test_the_go_builds_cli_in_the_tools_cache_is_used_without_a_download(downloads: Path, project: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.engine.pulumi import find_pulumi_cli

    install = _Install(AssertionError("must not download"))
    _use(monkeypatch, install)
    built = downloads / f"pulumi-{_sdk()}" / "bin"  # where tests/engine/build_pulumi.sh puts it
    built.mkdir(parents=True)
    fake_cli(built)
    assert find_pulumi_cli() == built / "pulumi"
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "x")
    result = invoke("--json", "graph")  # a command with no engine: nothing installs either
    assert result.exit_code == 0 and install.calls == []


def test_downloading_can_be_turned_off(downloads: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install = _Install()
    _use(monkeypatch, install)
    monkeypatch.setenv("ORCHESTRATE_PULUMI_INSTALL", "0")
    result = invoke("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 2 and install.calls == []
    assert "downloading it is off (ORCHESTRATE_PULUMI_INSTALL=0)" in result.stderr
    assert "tests/engine/build_pulumi.sh" in result.stderr
