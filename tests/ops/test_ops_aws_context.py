"""orchestrator.aws: clients honour --endpoint-url, credentials are never invented for real AWS,
and botocore failures become the error family (exit codes 1 and 2)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext, aws_errors, client
from orchestrator.errors import ExitCode, InputRejected, OperationFailed

ROOT = Path(__file__).resolve().parents[2]


def _access_key_used(c: Any) -> list[str]:
    seen: list[str] = []

    def grab(request: Any, **_: Any) -> None:
        auth = request.headers.get("Authorization", b"")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        seen.append(auth.split("Credential=", 1)[1].split("/", 1)[0])

    c.meta.events.register("before-send", grab)
    return seen


def test_client_talks_to_the_endpoint_url(ctx: AwsContext) -> None:
    iot = client(ctx, "iot", "eu-west-1")
    iot.create_thing(thingName="probe")
    assert iot.meta.endpoint_url == ctx.endpoint_url
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["probe"]


def test_dummy_credentials_only_with_an_endpoint_and_no_configured_ones(
        endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    iot = client(AwsContext(endpoint_url=endpoint), "iot", "eu-west-1")
    used = _access_key_used(iot)
    iot.list_things()
    assert used == ["testing"]

    with pytest.raises(InputRejected) as no_creds:  # real AWS: nothing is invented
        with aws_errors("list things"):
            client(AwsContext(), "iot", "eu-west-1").list_things()
    assert no_creds.value.exit_code is ExitCode.BAD_INPUT
    assert "no AWS credentials" in no_creds.value.one_line()


def test_configured_credentials_win_over_the_dummy_ones(endpoint: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACONFIGURED")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "configured-secret")
    iot = client(AwsContext(endpoint_url=endpoint), "iot", "eu-west-1")
    used = _access_key_used(iot)
    iot.list_things()
    assert used == ["AKIACONFIGURED"]


def test_an_unreachable_endpoint_is_an_operation_failure_naming_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on exit: nothing listens there
    url = f"http://127.0.0.1:{port}"
    iot = client(AwsContext(endpoint_url=url), "iot", "eu-west-1", own_retries=True)
    with pytest.raises(OperationFailed) as failed:
        with aws_errors("list things"):
            iot.list_things()
    assert failed.value.exit_code is ExitCode.FAILED
    assert url in failed.value.one_line()
    assert "testing" not in failed.value.one_line()


def test_retry_modes_and_timeouts() -> None:
    ours = client(AwsContext(endpoint_url="http://127.0.0.1:9"), "iot", "eu-west-1", own_retries=True)
    theirs = client(AwsContext(endpoint_url="http://127.0.0.1:9"), "route53", "us-east-1")
    assert ours.meta.config.retries["total_max_attempts"] == 1
    assert theirs.meta.config.retries["mode"] == "adaptive"
    assert ours.meta.config.connect_timeout == 5 and ours.meta.config.read_timeout == 30


def test_bad_context_and_unknown_profile_are_input_errors() -> None:
    with pytest.raises(InputRejected):
        AwsContext(endpoint_url="localhost:4566")
    with pytest.raises(InputRejected, match="not configured"):
        client(AwsContext(profile="no-such-profile"), "iot", "eu-west-1")


def test_importing_the_aws_and_registry_modules_does_not_import_boto3() -> None:
    code = ("import sys, orchestrator.aws, orchestrator.registry; "
            "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


SSO_CONFIG = """\
[profile legacy-sso]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = Admin

[profile team-sso]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Admin

[sso-session corp]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
"""


@pytest.fixture
def sso_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Profiles that use AWS SSO, and no `aws sso login` ever run (an empty token cache)."""
    config = tmp_path / "aws-config"
    config.write_text(SSO_CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.aws/sso/cache holds no token
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    return config


def _cli(*args: str) -> Any:
    from click.testing import CliRunner

    from orchestrator.cli.app import Deps
    from orchestrator.cli.main import cli
    from tests.doubles import InMemoryEngine

    engine = InMemoryEngine()
    return CliRunner().invoke(cli, list(args), obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)


@pytest.mark.parametrize("profile", ["legacy-sso", "team-sso"])
def test_an_sso_profile_without_sso_login_is_a_setup_error(sso_profiles: Path, profile: str,
                                                           monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_PROFILE", profile)
    with pytest.raises(InputRejected) as caught, aws_errors("listing buckets"):
        client(AwsContext(endpoint_url=endpoint), "s3", "us-east-1").list_buckets()
    assert caught.value.exit_code is ExitCode.BAD_INPUT
    assert f"aws sso login --profile {profile}" in caught.value.one_line(), caught.value.one_line()


def test_the_cli_says_sso_login_instead_of_internal_error(sso_profiles: Path, tmp_path: Path, endpoint: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.doubles import project_copy

    (tmp_path / "project").mkdir()
    project_copy(tmp_path / "project", monkeypatch)
    monkeypatch.setenv("AWS_PROFILE", "team-sso")
    result = _cli("up", "--all", "--yes", "--backend", "s3://state/iot", "--endpoint-url", endpoint)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0], lines
    assert "SSO session of profile 'team-sso'" in lines[0] and "aws sso login --profile team-sso" in lines[0]


def test_an_unknown_profile_names_it_and_aws_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     endpoint: str) -> None:
    from tests.doubles import project_copy

    (tmp_path / "project").mkdir()
    project_copy(tmp_path / "project", monkeypatch)
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    result = _cli("up", "--all", "--yes", "--backend", "s3://state/iot", "--endpoint-url", endpoint)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "AWS profile 'no-such-profile' is not configured" in line and "set AWS_PROFILE" in line, line
    assert "--profile" not in line, line  # no such option
