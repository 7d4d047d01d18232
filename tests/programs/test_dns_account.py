"""A hosted zone in its own account (topology `accounts.dns`): the home region's stack writes the ACM
validation record into that zone through a provider assuming the DNS role; everything else of the
region stays on the stack's own provider."""

from __future__ import annotations

import json
from dataclasses import replace

from programs.contract import RegionArgs
from programs.mocks import evaluate
from tests.programs.conftest import PRIMARY, region_args

DNS_ROLE = "arn:aws:iam::222222222222:role/orchestrate-dns"
RECORD = "aws:route53/record:Record"


def test_the_validation_record_goes_through_a_provider_assuming_the_dns_role() -> None:
    args = replace(region_args(PRIMARY), dns_role_arn=DNS_ROLE)
    ev = evaluate(args, stack="dev-region-eu-west-1",
                  aws_config={"aws:allowedAccountIds": json.dumps(["111111111111", "222222222222"])})
    provider = ev.one("pulumi:providers:aws")
    assert provider.name == "iot-dev-eu-west-1-dns-provider"
    assert provider.inputs["region"] == PRIMARY
    assert json.loads(provider.inputs["assumeRoles"]) == [{"roleArn": DNS_ROLE, "sessionName": "orchestrate-dev"}]
    assert json.loads(provider.inputs["allowedAccountIds"]) == ["111111111111", "222222222222"]
    (record,) = ev.of_type(RECORD)
    assert record.name == "iot-dev-eu-west-1-cert-validation-record" and record.provider == provider.name
    others = [r for r in ev.managed if r.type not in (RECORD, "pulumi:providers:aws")]
    assert others and {r.provider for r in others} == {None}


def test_without_a_dns_role_the_record_uses_the_stack_provider_and_the_role_travels_in_config() -> None:
    ev = evaluate(region_args(PRIMARY), stack="dev-region-eu-west-1")
    assert not ev.of_type("pulumi:providers:aws")
    assert ev.one(RECORD).provider is None
    args = replace(region_args(PRIMARY), dns_role_arn=DNS_ROLE)
    assert args.to_config()["dnsRoleArn"] == DNS_ROLE
    assert RegionArgs.from_config(args.to_config().get) == args
    assert "dnsRoleArn" not in region_args(PRIMARY).to_config()
