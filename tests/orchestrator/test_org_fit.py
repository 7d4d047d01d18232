"""Org rules in the topology: extra tags, IAM role settings, allowed accounts and a role per
account. Each bad value is one line naming file and field (exit 2); good values reach every
stack's provider config."""

from __future__ import annotations

import json

import pytest

from orchestrator.errors import InputRejected
from orchestrator.stacks import wiring
from orchestrator.topology import parse
from tests.orchestrator.test_topology import BASE

DNS_ROLE = "arn:aws:iam::222222222222:role/orchestrate-dns"
BACKUP_ROLE = "arn:aws:iam::333333333333:role/orchestrate-backups"
BOUNDARY = "arn:aws:iam::111111111111:policy/Boundary"
ORG = {
    "secondaries": ["eu-central-1"], "routing": "failover", "backup_region": "eu-central-1",
    "tags": {"CostCenter": "cc-4711", "Owner": "platform@example.com"},
    "iam": {"permissions_boundary": BOUNDARY, "path": "/platform/"},
    "allowed_account_ids": ["111111111111", "222222222222", "333333333333"],
    "accounts": {"dns": DNS_ROLE, "backups": BACKUP_ROLE},
}


def topo(**changes: object):  # noqa: ANN201
    return parse({**BASE, **ORG, **changes}, env="dev", source="stacks/dev.topology.yaml")


def rejected(**changes: object) -> str:
    with pytest.raises(InputRejected) as info:
        topo(**changes)
    assert info.value.exit_code == 2
    line = info.value.one_line()
    assert line.startswith("stacks/dev.topology.yaml: ") and "\n" not in line
    return line


def test_org_settings_parse_and_round_trip() -> None:
    t = topo()
    assert dict(t.tags) == ORG["tags"]
    assert (t.iam.path, t.iam.permissions_boundary) == ("/platform/", BOUNDARY)
    assert t.allowed_account_ids == ("111111111111", "222222222222", "333333333333")
    assert t.role_for("dns") == DNS_ROLE and t.role_for("eu-west-1") is None
    again = parse(t.to_document(), env="dev", source=t.source)
    assert (again.tags, again.iam, again.allowed_account_ids, again.accounts) == \
        (t.tags, t.iam, t.allowed_account_ids, t.accounts)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"tags": {"aws:cost": "x"}}, "tags.'aws:cost': the aws: prefix is reserved"),
    ({"tags": {"AWS:Cost": "x"}}, "the aws: prefix is reserved"),
    ({"tags": {"k" * 129: "x"}}, "a tag key must be 1-128"),
    ({"tags": {"Owner": "v" * 257}}, "a tag value must be 0-256"),
    ({"tags": {"Owner": "a;b"}}, "a tag value must be"),
    ({"tags": {"Environment": "prod"}}, "is set by the orchestrator"),
    ({"tags": {f"k{i}": "v" for i in range(48)}}, "48 tags: at most 47"),
    ({"tags": ["Owner"]}, "tags: must be a mapping"),
    ({"iam": {"path": "platform"}}, "iam.path: 'platform' must be / or /a/path/"),
    ({"iam": {"permissions_boundary": "Boundary"}}, "iam.permissions_boundary: 'Boundary' is not the ARN"),
    ({"iam": {"boundary": BOUNDARY}}, "iam.boundary: unknown key"),
    ({"allowed_account_ids": [111111111111]}, "allowed_account_ids[0]: 111111111111 is not a 12-digit account id"),
    ({"allowed_account_ids": ["12345"]}, "is not a 12-digit account id"),
    ({"accounts": {"dns": "arn:aws:iam::222222222222:user/x"}}, "accounts.dns: "),
    ({"accounts": {"dns": "arn:aws:iam::444444444444:role/x"}}, "account 444444444444 is not in allowed_account_ids"),
    ({"accounts": {"us-west-2": DNS_ROLE}}, "accounts.us-west-2: unknown key"),
    ({"accounts": {"eu-west-1": DNS_ROLE}}, "accounts: member regions eu-west-1, eu-central-1 must share one account"),
])
def test_bad_org_values_are_one_line(changes: dict[str, object], expected: str) -> None:
    assert expected in rejected(**changes)


def test_exactly_47_extra_tags_fill_aws_limit_of_50() -> None:
    assert len(topo(tags={f"k{i}": "v" for i in range(47)}).tags) == 47


def test_every_stack_gets_the_org_provider_config() -> None:
    t = topo()
    outputs = {r: wiring.placeholder_outputs(r) for r in t.regions}
    region = wiring.region_spec(t, "eu-west-1").config
    dns = wiring.dns_spec(t, outputs).config
    replication = wiring.replication_spec(t, outputs).config
    for config in (region, dns, replication):
        assert json.loads(config["aws:defaultTags"]) == {"tags": ORG["tags"]}
        assert json.loads(config["aws:allowedAccountIds"]) == ORG["allowed_account_ids"]
    assert json.loads(dns["aws:assumeRoles"]) == [{"roleArn": DNS_ROLE, "sessionName": "orchestrate-dev"}]
    assert "aws:assumeRoles" not in region and "aws:assumeRoles" not in replication
    iam = json.loads(region["iot-platform:iam"])
    assert iam == {"path": "/platform/", "permissionsBoundary": BOUNDARY}
    assert json.loads(replication["iot-platform:iam"]) == iam
    assert region["iot-platform:backupRoleArn"] == BACKUP_ROLE
    assert "iot-platform:backupRoleArn" not in wiring.region_spec(t, "eu-central-1").config


def test_member_regions_in_one_other_account_assume_its_role() -> None:
    role = "arn:aws:iam::111111111111:role/workload"
    t = topo(accounts={"eu-west-1": role, "eu-central-1": role})
    outputs = {r: wiring.placeholder_outputs(r) for r in t.regions}
    for config in (wiring.region_spec(t, "eu-central-1").config, wiring.replication_spec(t, outputs).config):
        assert json.loads(config["aws:assumeRoles"])[0]["roleArn"] == role


def test_without_org_settings_no_provider_keys_are_written() -> None:
    t = parse(BASE, env="dev", source="stacks/dev.topology.yaml")
    config = wiring.region_spec(t, "eu-west-1").config
    assert not {"aws:defaultTags", "aws:allowedAccountIds", "aws:assumeRoles", "iot-platform:iam"} & set(config)
