"""`orchestrate promote-secondary` through the real engine, verified step by step against AWS.

The lifecycle verifies each step with boto3 (Route 53 records and health checks, S3 replication
rules, the IoT domain configuration). Here AWS is a moto server: with FAKE_AWS_MOTO_URL the
stand-in provider creates those resources in moto as it creates them in the Pulumi state
(fake_aws_provider/moto_mirror.py), the way pulumi-aws creates them in AWS.
"""

from __future__ import annotations

from typing import Any

import boto3
import yaml

from tests.engine.helpers import OrchestrateProject, dev_topology, reset_moto

PRIMARY, SECONDARY = "eu-west-1", "eu-central-1"


def _client(url: str, service: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, region_name=region, endpoint_url=url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _cname_records(r53: Any, zone_id: str, name: str) -> list[dict[str, Any]]:
    listing = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return [rr for rr in listing if rr["Name"] == name + "." and rr["Type"] == "CNAME"]


def test_promote_secondary_single_to_failover(make_project, moto_server: str) -> None:
    reset_moto(moto_server)
    r53 = _client(moto_server, "route53")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="engine-tier")["HostedZone"]["Id"]
    project: OrchestrateProject = make_project(dev_topology())
    mirrored = {"FAKE_AWS_MOTO_URL": moto_server}
    project.run("up", "--yes", "--region", PRIMARY, "--endpoint-url", moto_server, env=mirrored)
    primary = project.json("outputs", f"dev-region-{PRIMARY}")["outputs"]
    assert [rr["ResourceRecords"][0]["Value"] for rr in _cname_records(r53, zone_id, "iot.example.com")] == [
        primary["iotEndpoint"]]

    report = project.json("promote-secondary", "--yes", "--region", SECONDARY, "--routing", "failover",
                          "--endpoint-url", moto_server, env=mirrored)

    assert report["ok"] is True, report
    assert [(s["step"], s["status"]) for s in report["steps"]] == [
        ("preflight", "done"), ("record-secondary", "done"), ("region-stack", "done"), ("registry-sync", "done"),
        ("replication", "done"), ("dns", "done"), ("mark-routing", "done")]

    # the topology file says what happened (reviewable in a PR)
    topology = project.read_topology()
    assert topology["secondaries"] == [SECONDARY] and topology["routing"] == "failover"

    # AWS itself: two failover records, primary first, each with a health check
    secondary = project.json("outputs", f"dev-region-{SECONDARY}")["outputs"]
    records = {rr["Failover"]: rr for rr in _cname_records(r53, zone_id, "iot.example.com")}
    assert sorted(records) == ["PRIMARY", "SECONDARY"]
    assert records["PRIMARY"]["ResourceRecords"] == [{"Value": primary["iotEndpoint"]}]
    assert records["SECONDARY"]["ResourceRecords"] == [{"Value": secondary["iotEndpoint"]}]
    checks = {hc["Id"] for hc in r53.list_health_checks()["HealthChecks"]}
    assert {rr["HealthCheckId"] for rr in records.values()} <= checks
    # the primary lake replicates to the secondary's
    rules = _client(moto_server, "s3", PRIMARY).get_bucket_replication(
        Bucket=primary["dataLakeBucketName"])["ReplicationConfiguration"]["Rules"]
    assert [r["Destination"]["Bucket"] for r in rules] == [secondary["dataLakeBucketArn"]]
    # the secondary serves the custom domain
    domain = _client(moto_server, "iot", SECONDARY).describe_domain_configuration(
        domainConfigurationName=secondary["domainConfigurationName"])
    assert domain["domainName"] == "iot.example.com"

    # and the stacks agree: DNS config holds both real endpoints
    dns_config = yaml.safe_load((project.stacks / "Pulumi.dev-dns.yaml").read_text())["config"]
    assert yaml.safe_load(dns_config["iot-platform:targets"]) == [
        {"region": PRIMARY, "endpoint": primary["iotEndpoint"]},
        {"region": SECONDARY, "endpoint": secondary["iotEndpoint"]}]
    report = project.json("status", "--endpoint-url", moto_server)
    status = {s["name"]: s for s in report["stacks"]}
    assert all(status[f"dev-region-{r}"]["routed"] for r in (PRIMARY, SECONDARY))
    assert status["dev-replication"]["deployed"]
    # continuous replication in the secondary: its dead-letter queue and watermark table exist (the
    # stand-in created them in moto), nothing dead-lettered, no reconciliation yet
    assert report["replication"] == [{"region": SECONDARY, "lag_ms": None, "dead_letters": 0,
                                      "last_reconciliation": None, "reconciling": None, "error": None}]
