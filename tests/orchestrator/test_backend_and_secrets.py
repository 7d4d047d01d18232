"""Which backend and secrets provider a run uses, and the refusals that keep state from being lost.

A CI job whose variables are not defined for its environment sees them set but empty: that must be
exit 2 naming the variable, never a silent local `.pulumi-state` that leaves with the runner.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from tests.doubles import InMemoryEngine
from tests.orchestrator.test_engine_setup import fake_cli, invoke


@pytest.mark.slow
def test_an_empty_backend_variable_is_refused_naming_it(run, engine: InMemoryEngine, project: Path,  # noqa: ANN001
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", "")
    for args in (("preview", "--all"), ("up", "--all"), ("status",)):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "PULUMI_BACKEND_URL is set but empty" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert engine.calls == [] and not (project / ".pulumi-state").exists() and not (project / ".orchestrate").exists()


def test_on_ci_the_default_local_backend_is_refused(run, engine: InMemoryEngine, project: Path,  # noqa: ANN001
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = run("preview", "--all")
    assert result.exit_code == 2 and "CI is set and no state backend is configured" in result.stderr
    assert engine.calls == []
    # offline commands need no backend, on CI either
    assert run("graph").exit_code == 0
    # with a backend named, CI runs
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{project / 'team-state'}")
    assert run("up", "--region", "eu-west-1", "--yes").exit_code == 0
    assert list((project / "team-state" / ".orchestrate" / "runs").glob("dev-up-*.json"))


def test_an_empty_backend_option_is_refused(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    result = run("up", "--all", "--backend", "", "--yes")
    assert result.exit_code == 2 and "--backend is empty" in result.stderr and engine.calls == []


@pytest.fixture
def pulumi_on_path(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_cli(bin_dir, "echo should-not-run >&2\nexit 1")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    return bin_dir


def stack_file(project: Path, stack: str, text: str) -> None:
    (project / "stacks" / f"Pulumi.{stack}.yaml").write_text(text)


KMS = "awskms://alias/iot-state?region=eu-west-1"


def test_an_empty_passphrase_is_refused_naming_it(pulumi_on_path: Path, project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    result = invoke("preview", "--all")
    assert result.exit_code == 2, result.output
    assert "PULUMI_CONFIG_PASSPHRASE is set but empty" in result.stderr and "should-not-run" not in result.output


def engine_for(values: dict[str, str]):  # noqa: ANN201
    import click

    from orchestrator.cli.app import context_for
    from orchestrator.engine.pulumi import PulumiEngine

    ctx = click.Context(cli, obj=Deps(values=values))
    with ctx:
        return PulumiEngine.from_context(context_for(ctx))


def test_kms_only_stacks_need_no_passphrase(pulumi_on_path: Path, project: Path) -> None:
    for stack in ("dev-region-eu-west-1", "dev-dns"):
        stack_file(project, stack, f"secretsprovider: {KMS}\nencryptedkey: AQICAHh0\nconfig: {{}}\n")
    engine = engine_for({})
    assert engine.secrets_provider is None  # each stack keeps its own (KMS): none forced
    # one passphrase stack among them needs the passphrase again
    stack_file(project, "dev-replication", "encryptionsalt: v1:abc:def\nconfig: {}\n")
    result = invoke("preview", "--all")
    assert result.exit_code == 2 and "no passphrase for the stack secrets" in result.stderr


def test_orchestrate_secrets_provider_variable_is_the_default_provider(pulumi_on_path: Path, project: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATE_SECRETS_PROVIDER", KMS)
    engine = engine_for({})
    assert engine.secrets_provider == KMS  # and no passphrase was asked for


def test_a_provider_that_an_existing_stack_does_not_use_is_refused_not_ignored(pulumi_on_path: Path,
                                                                               project: Path) -> None:
    stack_file(project, "dev-region-eu-west-1", "encryptionsalt: v1:abc:def\nconfig: {}\n")
    result = invoke("up", "--all", "--secrets-provider", KMS)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "dev-region-eu-west-1 uses passphrase secrets, not awskms://alias/iot-state" in line
    assert "orchestrate secrets change-provider" in line and "should-not-run" not in result.output
    # the provider it already uses is fine
    stack_file(project, "dev-region-eu-west-1", f"secretsprovider: {KMS}\nconfig: {{}}\n")
    assert engine_for({"secrets_provider": KMS}).secrets_provider == KMS


def test_secrets_change_provider_reencrypts_existing_stacks_only(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    assert run("up", "--region", "eu-west-1", "--yes").exit_code == 0
    refused = run("secrets", "change-provider", "--to", KMS)
    assert refused.exit_code == 4 and engine.secrets_providers == {}  # no terminal, no --yes
    result = run("secrets", "change-provider", "--to", KMS, "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert engine.secrets_providers == {"dev-region-eu-west-1": KMS, "dev-dns": KMS}
    assert '"provider": "awskms://alias/iot-state"' in result.stdout and "region=eu-west-1" not in result.stdout
    assert run("secrets", "change-provider", "--to", "rot13://").exit_code == 2


def test_secrets_change_provider_with_no_stacks_says_so(run, engine: InMemoryEngine) -> None:  # noqa: ANN001
    result = run("secrets", "change-provider", "--to", KMS, "--yes")
    assert result.exit_code == 2 and "nothing to re-encrypt" in result.stderr


def test_status_names_the_backend_without_credentials(run, project: Path,  # noqa: ANN001
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.state

    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://team-state/iot?region=eu-west-1&profile=ci")
    monkeypatch.setenv("ORCHESTRATE_BACKUP_DEST", str(project / "backups"))
    # the bucket is not reachable from tier 2: run state (read for the routing state) from a directory
    monkeypatch.setattr(orchestrator.state, "store_for",
                        lambda url, **_: orchestrator.state.LocalStore(project / "s3-stand-in"))
    result = CliRunner().invoke(cli, ["status", "--json"], obj=Deps(engine_factory=lambda app: InMemoryEngine()),
                                catch_exceptions=False)
    assert '"backend": "s3://team-state/iot"' in result.stdout, result.output


@pytest.mark.slow
def test_status_tells_an_empty_vault_from_an_unreachable_one(run, project: Path,  # noqa: ANN001
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("ORCHESTRATE_BACKUP_DEST", str(project / "backups"))
    (project / "backups").mkdir()
    empty = run("status", "--json")
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout)["backup"] == {"state": "none found", "age_hours": None,
                                                  "reason": f"in {project / 'backups'}"}
    assert "newest registry backup: none found" in run("status").stdout

    # nothing listens on port 9: the vault cannot be read, which is not the same as empty
    monkeypatch.setenv("ORCHESTRATE_BACKUP_DEST", "s3://iot-dev-backups/registry")
    down = run("status", "--endpoint-url", "http://127.0.0.1:9")
    assert down.exit_code == 1, down.output
    assert "newest registry backup: unreachable (cannot reach http://127.0.0.1:9" in down.stdout
    assert "the backup vault could not be read" in down.stderr
    as_json = run("status", "--json", "--endpoint-url", "http://127.0.0.1:9")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["backup"]["state"] == "unreachable"


def test_status_without_a_vault_says_so_and_succeeds(run) -> None:  # noqa: ANN001
    result = run("status")
    assert result.exit_code == 0, result.output
    assert "newest registry backup: no vault (no backup destination" in result.stdout


def test_the_preview_comment_names_the_backend_and_the_previewed_commit(run, engine: InMemoryEngine,  # noqa: ANN001
                                                                       project: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.orchestrator.test_cli_preview import previews

    previews(engine)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{project / 'team-state'}?secret=hunter2")
    monkeypatch.setenv("ORCHESTRATE_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    result = run("preview", "--all", "--format", "markdown", "--output", str(project / "comment.md"))
    assert result.exit_code == 0, result.output
    text = (project / "comment.md").read_text()
    assert f"backend `file://{project / 'team-state'}`" in text and "hunter2" not in text
    assert "commit `0123456789ab`" in text
