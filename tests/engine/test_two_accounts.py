"""Two AWS accounts through the real engine: the region in account A (moto's account for the test
keys), the DNS stack in account B through the topology's `accounts: {dns: <role>}`.

The stand-in provider assumes the role its stack's `aws:assumeRoles` names with STS on the moto
server and acts with the returned credentials, so moto keeps what it creates in the role's account;
it refuses an AssumeRole AWS would refuse (missing role, a trust policy that does not name the
caller) and an account `aws:allowedAccountIds` does not list, with the provider's messages
(fake_aws_provider/identity.py). Each test reads moto once per account: every resource is in its
own account and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import yaml

from tests.engine.helpers import OrchestrateProject, dev_topology, reset_moto

HOME = "123456789012"  # moto's account for the test keys: account A, the region's
DNS_ACCOUNT = "222222222222"  # account B: the hosted zone and the DNS stack
OTHER = "333333333333"
DNS_ROLE = f"arn:aws:iam::{DNS_ACCOUNT}:role/orchestrate-dns"
REGION = "eu-west-1"
REGION_STACK = f"dev-region-{REGION}"
NAME = "iot.example.com."


class Account:
    """boto3 clients acting in one account of the moto server."""

    def __init__(self, url: str, role: str | None = None) -> None:
        self.url = url
        self.creds: dict[str, str] = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if role is not None:  # moto hands out any role's credentials: the test's own way in
            found = self.client("sts").assume_role(RoleArn=role, RoleSessionName="test-reader")["Credentials"]
            self.creds = {"aws_access_key_id": found["AccessKeyId"], "aws_secret_access_key": found["SecretAccessKey"],
                          "aws_session_token": found["SessionToken"]}

    def client(self, service: str, region: str = "us-east-1") -> Any:
        return boto3.client(service, region_name=region, endpoint_url=self.url, **self.creds)

    def account_id(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])

    def zones(self) -> dict[str, str]:
        return {z["Name"]: z["Id"].split("/")[-1] for z in self.client("route53").list_hosted_zones()["HostedZones"]}

    def cnames(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        r53 = self.client("route53")
        for zone in self.zones().values():
            for rr in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]:
                if rr["Type"] == "CNAME":
                    out[rr["Name"]] = [r["Value"] for r in rr.get("ResourceRecords", [])]
        return out

    def buckets(self) -> set[str]:
        return {b["Name"] for b in self.client("s3").list_buckets().get("Buckets", [])}

    def domain_configurations(self, region: str = REGION) -> set[str]:
        found = self.client("iot", region).list_domain_configurations(serviceType="DATA")
        return {d["domainConfigurationName"] for d in found.get("domainConfigurations", [])}

    def held(self) -> dict[str, Any]:
        """What this account holds of what the stacks create."""
        return {"zones": sorted(self.zones()), "cnames": self.cnames(), "buckets": sorted(self.buckets()),
                "domain_configurations": sorted(self.domain_configurations())}


@pytest.fixture
def moto(moto_server: str) -> Iterator[str]:
    reset_moto(moto_server)
    yield moto_server


def _account_b(url: str, trusted: str | None = f"arn:aws:iam::{HOME}:root") -> Account:
    """Account B: its public hosted zone, and (unless `trusted` is None) the DNS role trusting
    `trusted` to assume it."""
    b = Account(url, DNS_ROLE)
    assert b.account_id() == DNS_ACCOUNT
    if trusted is not None:
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": trusted}, "Action": "sts:AssumeRole"}]}
        b.client("iam").create_role(RoleName="orchestrate-dns", AssumeRolePolicyDocument=json.dumps(trust))
    b.client("route53").create_hosted_zone(Name="example.com", CallerReference="dns-account")
    return b


def _up(project: OrchestrateProject, url: str, expect: int) -> Any:
    return project.run("up", "--yes", "--region", REGION, "--endpoint-url", url,
                       env={"FAKE_AWS_MOTO_URL": url}, expect=expect)


def _created(project: OrchestrateProject) -> list[dict[str, Any]]:
    return [e for e in project.provider_events() if e["op"] in ("create", "create-begin")]


def test_the_dns_stack_lands_in_its_own_account_and_the_region_in_the_callers(make_project, moto: str) -> None:
    b = _account_b(moto)
    a = Account(moto)
    empty_b = b.held()
    project: OrchestrateProject = make_project(dev_topology(allowed_account_ids=[HOME, DNS_ACCOUNT],
                                                            accounts={"dns": DNS_ROLE}))
    report = json.loads(project.run("--json", "up", "--yes", "--region", REGION, "--endpoint-url", moto,
                                    env={"FAKE_AWS_MOTO_URL": moto}).stdout)
    assert report["ok"] is True, report
    endpoint = project.json("outputs", REGION_STACK)["outputs"]["iotEndpoint"]

    # account A: the region's data lake and domain configuration, no zone, no record
    held_a = a.held()
    assert held_a["zones"] == [] and held_a["cnames"] == {}, held_a
    assert any(name.startswith("iot-dev-eu-west-1-lake") for name in held_a["buckets"]), held_a
    assert held_a["domain_configurations"], held_a
    # account B: the zone it had, now with the record pointing at A's endpoint and the ACM validation
    # record of A's certificate (written by the region stack through the DNS role); nothing else
    held_b = b.held()
    validation = {n: v for n, v in held_b["cnames"].items() if n != NAME}
    assert held_b["zones"] == ["example.com."] and held_b["cnames"][NAME] == [endpoint], held_b
    assert len(validation) == 1 and next(iter(validation.values()))[0].endswith(".acm-validations.aws."), held_b
    record = next(r for r in project.resources(REGION_STACK) if r["type"] == "aws:route53/record:Record")
    assert "::iot-dev-eu-west-1-dns-provider::" in record["provider"], record
    assert record["outputs"]["name"].rstrip(".") + "." in validation
    assert held_b["buckets"] == empty_b["buckets"] == [] and held_b["domain_configurations"] == [], held_b
    # and no third account got anything
    other = Account(moto, f"arn:aws:iam::{OTHER}:role/reader").held()
    assert other == {"zones": [], "cnames": {}, "buckets": [], "domain_configurations": []}, other

    # the providers: the DNS stack's assumed the role (and no other stack's did); the region
    # stack's outputs name account A, the DNS stack's account B
    assumed = [e for e in project.provider_events() if e["op"] == "assumed"]
    assert assumed and {e["id"] for e in assumed} == {DNS_ACCOUNT}, assumed
    assert {tuple(e["roles"]) for e in assumed} == {(DNS_ROLE,)}
    own = [r for r in project.resources(REGION_STACK) if "dns-provider" not in r.get("provider", "")]
    region_arns = {r["outputs"].get("arn", "") for r in own} - {""}
    assert region_arns and not any(f":{DNS_ACCOUNT}:" in arn for arn in region_arns), region_arns
    dns_arns = {r["outputs"].get("arn", "") for r in project.resources("dev-dns")
                if r["type"].startswith("aws:")} - {""}
    assert dns_arns and all(f":{DNS_ACCOUNT}:" in arn for arn in dns_arns), dns_arns
    configs = {stack: yaml.safe_load((project.stacks / f"Pulumi.{stack}.yaml").read_text())["config"]
               for stack in (REGION_STACK, "dev-dns")}
    assert json.loads(configs["dev-dns"]["aws:assumeRoles"])[0]["roleArn"] == DNS_ROLE
    assert "aws:assumeRoles" not in configs[REGION_STACK]


def test_credentials_of_an_account_the_topology_does_not_allow_touch_nothing(make_project, moto: str) -> None:
    b = _account_b(moto)
    a = Account(moto)
    project: OrchestrateProject = make_project(dev_topology(allowed_account_ids=[DNS_ACCOUNT, OTHER],
                                                            accounts={"dns": DNS_ROLE}))
    proc = _up(project, moto, expect=2)
    out = proc.stdout + proc.stderr
    assert f"account {HOME}, which is not in allowed_account_ids" in out, out
    assert _created(project) == [] and not list(project.state.rglob("*.json"))
    assert a.held() == {"zones": [], "cnames": {}, "buckets": [], "domain_configurations": []}
    assert b.held()["cnames"] == {} and b.held()["buckets"] == []


def test_the_provider_refuses_an_account_its_stack_config_does_not_allow(make_project, moto: str) -> None:
    """`aws:allowedAccountIds` added by hand to a stack's config file (a user key the orchestrator
    keeps; the topology says nothing): the provider itself refuses to start in account A, before the
    first resource, and nothing downstream runs."""
    b = _account_b(moto)
    a = Account(moto)
    project: OrchestrateProject = make_project(dev_topology(accounts={"dns": DNS_ROLE}))
    (project.stacks / f"Pulumi.{REGION_STACK}.yaml").write_text(
        yaml.safe_dump({"config": {"aws:allowedAccountIds": json.dumps([DNS_ACCOUNT])}}))
    proc = _up(project, moto, expect=1)
    out = proc.stdout + proc.stderr
    assert f"AWS account ID not allowed: {HOME}" in out, out
    assert _created(project) == []
    assert [r["urn"] for r in project.resources(REGION_STACK) if r.get("custom")] == []
    assert a.held() == {"zones": [], "cnames": {}, "buckets": [], "domain_configurations": []}
    assert b.held()["cnames"] == {}


@pytest.mark.parametrize("trusted", [None, f"arn:aws:iam::{OTHER}:root"], ids=["role-missing", "role-not-trusting"])
def test_an_assume_role_aws_would_refuse_fails_the_update_with_the_providers_error(make_project, moto: str,
                                                                                   trusted: str | None) -> None:
    """The home region's stack is the first to need the DNS role (its ACM validation record goes
    into the zone): its update fails naming the role and AWS's refusal, the DNS stack does not run,
    and nothing reaches account B."""
    b = _account_b(moto, trusted=trusted)
    a = Account(moto)
    project: OrchestrateProject = make_project(dev_topology(accounts={"dns": DNS_ROLE}))
    proc = project.run("--json", "up", "--yes", "--region", REGION, "--endpoint-url", moto,
                       env={"FAKE_AWS_MOTO_URL": moto}, expect=1)
    report = json.loads(proc.stdout)
    failed = report["stacks"][REGION_STACK]
    assert failed["outcome"] == "failed", report
    assert f"IAM Role ({DNS_ROLE}) cannot be assumed" in failed["message"], failed
    assert f"is not authorized to perform: sts:AssumeRole on resource: {DNS_ROLE}" in failed["message"], failed
    assert report["stacks"]["dev-dns"]["outcome"] == "skipped", report
    refused = [e for e in project.provider_events() if e["op"] == "configure-refused"]
    assert refused and all(DNS_ROLE in e["error"] for e in refused), refused
    # no record anywhere, nothing in B; A holds no zone and no domain configuration (it waits on
    # the certificate's validation, which waits on the record)
    assert not [e for e in _created(project) if e["type"] == "aws:route53/record:Record"]
    assert b.held()["cnames"] == {} and b.held()["buckets"] == []
    assert a.zones() == {} and a.domain_configurations() == set()
