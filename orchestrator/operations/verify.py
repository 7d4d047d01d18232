"""Checks against AWS itself (boto3) that each lifecycle step did what it claims.

Stack outputs say what Pulumi believes; these read the live configuration: the hosted zone, the
region's domain configuration, the primary bucket's replication rules, the DNS records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator import aws
from orchestrator.errors import InputRejected, OperationFailed


@dataclass(frozen=True)
class DnsRecord:
    set_identifier: str | None
    value: str
    failover: str | None  # PRIMARY | SECONDARY
    region: str | None  # latency region
    health_check_id: str | None


def hosted_zone_id(ctx: aws.AwsContext, zone: str) -> str:
    r53 = aws.client(ctx, "route53", "us-east-1")
    with aws.aws_errors(f"looking up hosted zone {zone}"):
        found = r53.list_hosted_zones_by_name(DNSName=zone, MaxItems="10")
    for hz in found.get("HostedZones", []):
        if hz["Name"].rstrip(".") == zone.rstrip(".") and not hz.get("Config", {}).get("PrivateZone"):
            return str(hz["Id"]).split("/")[-1]
    raise InputRejected(f"hosted zone {zone} was not found in this account",
                        hint="create the public zone or fix hosted_zone in the topology")


def domain_configuration(ctx: aws.AwsContext, region: str, name: str, domain: str) -> None:
    iot = aws.client(ctx, "iot", region)
    with aws.aws_errors(f"describing domain configuration {name} in {region}"):
        desc = iot.describe_domain_configuration(domainConfigurationName=name)
    if desc.get("domainName") not in (None, domain):
        raise OperationFailed(f"domain configuration {name} in {region} serves {desc.get('domainName')!r}, "
                              f"expected {domain!r}")
    status = desc.get("domainConfigurationStatus", "ENABLED")
    if status != "ENABLED":
        raise OperationFailed(f"domain configuration {name} in {region} is {status}, expected ENABLED")


def replication_targets(ctx: aws.AwsContext, region: str, bucket: str) -> list[str]:
    s3 = aws.client(ctx, "s3", region)
    with aws.aws_errors(f"reading the replication configuration of {bucket}"):
        try:
            config = s3.get_bucket_replication(Bucket=bucket)
        except Exception as exc:  # no configuration at all is a verification failure, not a crash
            if "ReplicationConfigurationNotFound" in str(exc):
                return []
            raise
    rules = config.get("ReplicationConfiguration", {}).get("Rules", [])
    return [r["Destination"]["Bucket"] for r in rules if r.get("Status") == "Enabled"]


def dns_records(ctx: aws.AwsContext, zone_id: str, domain: str) -> list[DnsRecord]:
    r53 = aws.client(ctx, "route53", "us-east-1")
    name = domain.rstrip(".") + "."
    with aws.aws_errors(f"listing records of {domain}"):
        page = r53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=name, StartRecordType="CNAME",
                                             MaxItems="100")
    out = []
    for rr in page.get("ResourceRecordSets", []):
        if rr["Name"].rstrip(".") != domain.rstrip(".") or rr["Type"] != "CNAME":
            continue
        values = [v["Value"] for v in rr.get("ResourceRecords", [])]
        out.append(DnsRecord(rr.get("SetIdentifier"), values[0] if values else "", rr.get("Failover"),
                             rr.get("Region"), rr.get("HealthCheckId")))
    return out


def expect_dns(records: Sequence[DnsRecord], routing: str, endpoints: Sequence[tuple[str, str]]) -> None:
    """`endpoints`: (region, endpoint) in routing order. Raise OperationFailed on any mismatch."""
    def fail(what: str) -> None:
        shown = ", ".join(f"{r.set_identifier or '-'}:{r.failover or r.region or 'simple'}->{r.value}" for r in records)
        raise OperationFailed(f"DNS verification failed: {what} (found: {shown or 'no records'})")

    by_value = {r.value.rstrip("."): r for r in records}
    if len(records) != len(endpoints):
        fail(f"expected {len(endpoints)} {routing} record(s), found {len(records)}")
    for i, (region, endpoint) in enumerate(endpoints):
        record = by_value.get(endpoint)
        if record is None:
            fail(f"no record points at {region} ({endpoint})")
            return
        if routing == "single":
            if record.set_identifier or record.failover:
                fail("single routing must be one simple record")
        elif routing == "failover":
            if record.failover != ("PRIMARY" if i == 0 else "SECONDARY"):
                fail(f"{region} should be {'PRIMARY' if i == 0 else 'SECONDARY'}, is {record.failover}")
            if not record.health_check_id:
                fail(f"failover record of {region} has no health check")
        elif routing == "latency":
            if record.region != region:
                fail(f"latency record for {endpoint} names region {record.region}, expected {region}")
            if not record.health_check_id:
                fail(f"latency record of {region} has no health check")


PROBE_TIMEOUT_S = 3.0


def region_answers(ctx: aws.AwsContext, region: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Does the region's IoT control plane answer within `timeout` seconds? One attempt, no retries:
    during an outage nothing waits on the failed region."""
    from botocore.config import Config

    sess = aws.session(ctx)
    dummy = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"} \
        if ctx.endpoint_url and sess.get_credentials() is None else {}
    try:
        iot = sess.client("iot", region_name=region, endpoint_url=ctx.endpoint_url, **dummy, config=Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1}))
        iot.list_things(maxResults=1)
        return True
    except Exception:  # noqa: BLE001 - any failure means "does not answer" here
        return False
