"""What the real pulumi-aws provider would leave in AWS after an `up`, simulated into moto.

The in-memory engine stands in for Pulumi in tier 2 and 3; the lifecycle's verification steps read
AWS itself (Route 53 records, S3 replication rules, IoT domain configurations). This hook, run by
the engine double after each successful `up`, creates those few resources in the moto server from
the stack's config, the way the provider would from the program.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from orchestrator.aws import AwsContext, client
from orchestrator.engine.types import StackSpec
from tests.doubles import region_outputs

NS = "iot-platform:"


class ProviderSimulation:
    def __init__(self, ctx: AwsContext, zone: str = "example.com") -> None:
        self.ctx = ctx
        self.r53 = client(ctx, "route53", "us-east-1")
        self.zone_id = self.r53.create_hosted_zone(Name=zone, CallerReference="sim")["HostedZone"]["Id"]
        self.corrupt_dns_applies = 0  # the next N DNS applies write wrong records (a broken apply)

    def __call__(self, spec: StackSpec) -> None:
        handler: Callable[[StackSpec], None] = getattr(self, f"_{spec.kind}")
        handler(spec)

    def _region(self, spec: StackSpec) -> None:
        out = region_outputs(spec.region, spec.config[NS + "env"])
        s3 = client(self.ctx, "s3", spec.region)
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if out["dataLakeBucketName"] not in existing:
            s3.create_bucket(Bucket=out["dataLakeBucketName"],
                             CreateBucketConfiguration={"LocationConstraint": spec.region})
        s3.put_bucket_versioning(Bucket=out["dataLakeBucketName"], VersioningConfiguration={"Status": "Enabled"})
        iot = client(self.ctx, "iot", spec.region)
        names = {d["domainConfigurationName"] for d in iot.list_domain_configurations().get("domainConfigurations", [])}
        if out["domainConfigurationName"] not in names:
            iot.create_domain_configuration(
                domainConfigurationName=out["domainConfigurationName"], domainName=spec.config[NS + "domain"],
                serverCertificateArns=[out["certificateArn"]], serviceType="DATA")

    def _dns(self, spec: StackSpec) -> None:
        domain = spec.config[NS + "domain"]
        routing = spec.config[NS + "routing"]
        targets = json.loads(spec.config[NS + "targets"])
        name = domain.rstrip(".") + "."
        listing = self.r53.list_resource_record_sets(HostedZoneId=self.zone_id, StartRecordName=name,
                                                     StartRecordType="CNAME")["ResourceRecordSets"]
        stale = [{"Action": "DELETE", "ResourceRecordSet": rr} for rr in listing
                 if rr["Name"] == name and rr["Type"] == "CNAME"]
        if stale:  # moto checks a CREATE against records a DELETE of the same batch removes: two calls
            self.r53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": stale})
        changes: list[dict[str, Any]] = []
        corrupt = self.corrupt_dns_applies > 0
        self.corrupt_dns_applies = max(0, self.corrupt_dns_applies - 1)
        for i, t in enumerate(targets):
            value = "wrong.example.net" if corrupt else t["endpoint"]
            rr: dict[str, Any] = {"Name": name, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": value}]}
            if routing != "single":
                hc = self.r53.create_health_check(
                    CallerReference=f"{t['region']}-{i}-{value}-{id(changes)}",
                    HealthCheckConfig={"Type": "TCP", "FullyQualifiedDomainName": t["endpoint"], "Port": 443,
                                       "RequestInterval": 30, "FailureThreshold": 3})
                rr.update(SetIdentifier=t["region"], HealthCheckId=hc["HealthCheck"]["Id"])
                if routing == "failover":
                    rr["Failover"] = "PRIMARY" if i == 0 else "SECONDARY"
                else:
                    rr["Region"] = t["region"]
            changes.append({"Action": "CREATE", "ResourceRecordSet": rr})
        self.r53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": changes})

    def _replication(self, spec: StackSpec) -> None:
        primary = json.loads(spec.config[NS + "primary"])
        secondaries = json.loads(spec.config[NS + "secondaries"])
        s3 = client(self.ctx, "s3", primary["region"])
        s3.put_bucket_replication(Bucket=primary["bucketName"], ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/iot-replication",
            "Rules": [{"ID": f"to-{s['region']}", "Priority": i + 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Enabled"},
                       "Destination": {"Bucket": s["bucketArn"]}} for i, s in enumerate(secondaries)]})

    def records(self, domain: str = "iot.example.com") -> list[dict[str, Any]]:
        name = domain + "."
        return [rr for rr in self.r53.list_resource_record_sets(
            HostedZoneId=self.zone_id, StartRecordName=name, StartRecordType="CNAME")["ResourceRecordSets"]
            if rr["Name"] == name and rr["Type"] == "CNAME"]
