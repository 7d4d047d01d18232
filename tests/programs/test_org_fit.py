"""Org rules in the programs: every IAM role carries the topology's path and permissions boundary,
and a backup vault in its own account is declared through a provider that assumes that account's
role and keeps the stack's default tags and allowed accounts."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from programs.contract import IamRoleSettings, RegionArgs
from programs.mocks import evaluate
from tests.programs.conftest import PRIMARY, SECONDARY, THIRD, region_args, replication_args

ROLE = "aws:iam/role:Role"
BOUNDARY = "arn:aws:iam::111111111111:policy/org/DeveloperBoundary"
IAM = IamRoleSettings(path="/platform/iot/", permissions_boundary=BOUNDARY)
BACKUP_ROLE = "arn:aws:iam::222222222222:role/orchestrate-backups"
TAGS = {"CostCenter": "cc-4711", "Owner": "platform-team"}


def test_every_region_role_has_the_boundary_and_path() -> None:
    ev = evaluate(replace(region_args(PRIMARY), iam=IAM), stack="dev-region-eu-west-1")
    roles = ev.of_type(ROLE)
    assert len(roles) == 4  # rule, rule errors, firehose, MQTT canary
    for role in roles:
        assert role.inputs["path"] == "/platform/iot/", role.name
        assert role.inputs["permissionsBoundary"] == BOUNDARY, role.name


@pytest.mark.slow
def test_every_replication_role_has_the_boundary_and_path() -> None:
    args = replace(replication_args(SECONDARY, THIRD), routing="latency", iam=IAM)
    ev = evaluate(args, stack="dev-replication")
    roles = ev.of_type(ROLE)
    assert len(roles) >= 4  # S3 replication, the functions' roles, events forwarding
    for role in roles:
        assert (role.inputs["path"], role.inputs["permissionsBoundary"]) == ("/platform/iot/", BOUNDARY), role.name


def test_without_iam_settings_roles_keep_the_default_path_and_no_boundary() -> None:
    ev = evaluate(region_args(PRIMARY), stack="dev-region-eu-west-1")
    for role in ev.of_type(ROLE):
        assert role.inputs["path"] == "/" and "permissionsBoundary" not in role.inputs


def test_iam_settings_travel_through_stack_config() -> None:
    args = replace(region_args(PRIMARY), iam=IAM, backup_region=SECONDARY, backup_role_arn=BACKUP_ROLE)
    config = args.to_config()
    assert RegionArgs.from_config(config.get) == args


def _vault(**aws_config: str):  # noqa: ANN202
    args = replace(region_args(PRIMARY), backup_region=SECONDARY, backup_role_arn=BACKUP_ROLE)
    return evaluate(args, stack="dev-region-eu-west-1", aws_config=aws_config)


def test_a_vault_in_another_account_goes_through_a_provider_assuming_its_role() -> None:
    ev = _vault(**{"aws:defaultTags": json.dumps({"tags": TAGS}),
                   "aws:allowedAccountIds": json.dumps(["111111111111", "222222222222"])})
    provider = ev.one("pulumi:providers:aws")
    assert provider.name == "iot-dev-eu-west-1-backups-provider"
    assert provider.inputs["region"] == SECONDARY
    assert json.loads(provider.inputs["assumeRoles"]) == [
        {"roleArn": BACKUP_ROLE, "sessionName": "orchestrate-dev-backups"}]
    assert json.loads(provider.inputs["defaultTags"]) == {"tags": TAGS}
    assert json.loads(provider.inputs["allowedAccountIds"]) == ["111111111111", "222222222222"]
    backups = [r for r in ev.managed if "-backup" in r.name and r.type != "pulumi:providers:aws"]
    assert len(backups) >= 10  # bucket and its settings, lifecycle, lock, signing key and alias
    assert {r.provider for r in backups} == {provider.name}
    # the region's own resources stay on the stack's (default) provider
    assert ev.named("iot-dev-eu-west-1-lake").provider is None


def test_without_a_backups_role_the_vault_uses_the_stack_provider() -> None:
    ev = evaluate(replace(region_args(PRIMARY), backup_region=SECONDARY), stack="dev-region-eu-west-1")
    assert not ev.of_type("pulumi:providers:aws")
    assert ev.named("iot-dev-eu-west-1-backups").provider is None
