"""Two AWS accounts on one moto server (moto keeps each account's resources apart by the
credentials: the dummy keys act in 123456789012, an assumed role's keys in the role's account).
The topology's `accounts:` role reaches the boto3 sessions the orchestrator uses, and
`allowed_account_ids` refuses credentials of another account before anything is touched."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator import aws
from orchestrator.aws import AwsContext, client
from orchestrator.errors import ExitCode, InputRejected
from orchestrator.operations import verify

HOME = "123456789012"  # moto's account for the dummy keys
DNS_ACCOUNT = "222222222222"
DNS_ROLE = f"arn:aws:iam::{DNS_ACCOUNT}:role/orchestrate-dns"
ZONE = "example.com"


@pytest.fixture(autouse=True)
def _fresh_assumed_credentials() -> Any:
    aws._ASSUMED.clear()
    yield
    aws._ASSUMED.clear()


def _dns_account(ctx: AwsContext) -> AwsContext:
    """Account B: its role (trusting account A) and a public hosted zone made there."""
    dns = ctx.assuming(DNS_ROLE)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{HOME}:root"}}]}
    client(dns, "iam", "us-east-1").create_role(RoleName="orchestrate-dns", AssumeRolePolicyDocument=json.dumps(trust))
    client(dns, "route53", "us-east-1").create_hosted_zone(Name=ZONE, CallerReference="dns-account")
    return dns


def test_an_assumed_role_acts_in_its_own_account(ctx: AwsContext) -> None:
    assert aws.account_id(ctx) == HOME
    assert aws.account_id(ctx.assuming(DNS_ROLE)) == DNS_ACCOUNT


def test_the_dns_accounts_zone_is_seen_only_through_its_role(ctx: AwsContext) -> None:
    dns = _dns_account(ctx)
    zone_id = verify.hosted_zone_id(dns, ZONE)
    assert zone_id
    with pytest.raises(InputRejected, match="hosted zone example.com was not found in this account"):
        verify.hosted_zone_id(ctx, ZONE)  # account A has no such zone
    # the zones are really apart: account A lists none
    assert client(ctx, "route53", "us-east-1").list_hosted_zones()["HostedZones"] == []


def test_assumed_credentials_are_reused_until_near_expiry(ctx: AwsContext, gate: Any) -> None:
    dns = ctx.assuming(DNS_ROLE)
    gate.reset_counts()
    for _ in range(3):
        client(dns, "route53", "us-east-1").list_hosted_zones()
    assert gate.by_region_and_service()[("us-east-1", "sts")] == 1


def test_allowed_account_ids_refuse_other_credentials_before_any_call(ctx: AwsContext, gate: Any) -> None:
    assert aws.require_allowed_account(ctx, (HOME, DNS_ACCOUNT), "dev") == HOME
    gate.reset_counts()
    with pytest.raises(InputRejected) as info:
        aws.require_allowed_account(ctx, (DNS_ACCOUNT,), "env dev")
    assert info.value.exit_code is ExitCode.BAD_INPUT
    line = info.value.one_line()
    assert f"account {HOME}, which is not in allowed_account_ids ['{DNS_ACCOUNT}']" in line and "\n" not in line
    assert set(gate.by_region_and_service()) <= {("us-east-1", "sts")}  # only the identity was asked


# -- through the CLI: the guards run the check before any stack or AWS change -------------------------
def _cli(tmp_path: Any, monkeypatch: Any, endpoint: str, allowed: list[str], accounts: dict[str, str]) -> Any:
    import yaml
    from click.testing import CliRunner

    from orchestrator.cli.app import Deps
    from orchestrator.cli.main import cli
    from tests.doubles import InMemoryEngine, project_copy

    project = project_copy(tmp_path, monkeypatch)
    path = project / "stacks" / "dev.topology.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(allowed_account_ids=allowed, accounts=accounts)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    engine = InMemoryEngine()

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, [*args, "--endpoint-url", endpoint],
                                  obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)

    return run, engine


def test_up_in_a_disallowed_account_is_refused_before_any_stack(tmp_path: Any, monkeypatch: Any,
                                                                  endpoint: str) -> None:
    run, engine = _cli(tmp_path, monkeypatch, endpoint, ["999999999999", DNS_ACCOUNT], {"dns": DNS_ROLE})
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 2, result.output
    assert f"account {HOME}, which is not in allowed_account_ids" in result.output
    assert engine.calls == []


def test_up_with_allowed_accounts_and_a_dns_role_runs(tmp_path: Any, monkeypatch: Any, endpoint: str,
                                                      ctx: AwsContext) -> None:
    _dns_account(ctx)
    run, engine = _cli(tmp_path, monkeypatch, endpoint, [HOME, DNS_ACCOUNT], {"dns": DNS_ROLE})
    result = run("up", "--yes", "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    assert engine.ops("up") == [("up", "dev-region-eu-west-1"), ("up", "dev-dns")]
    config = {c.stack: c.config for c in engine.calls if c.operation == "up"}
    assert json.loads(config["dev-dns"]["aws:assumeRoles"])[0]["roleArn"] == DNS_ROLE
    assert "aws:assumeRoles" not in config["dev-region-eu-west-1"]
    for stack_config in config.values():
        assert json.loads(stack_config["aws:allowedAccountIds"]) == [HOME, DNS_ACCOUNT]
