"""Mirror the few resources the orchestrator verifies into a moto server (FAKE_AWS_MOTO_URL).

TEST FIXTURE ONLY. The stand-in provider keeps no cloud of its own; the lifecycle commands
(`promote-secondary`, `failover`, `failback`) verify each step by reading AWS with boto3. When
FAKE_AWS_MOTO_URL is set, the stand-in really creates those resources in moto, so "the provider
created it" and "AWS shows it" agree, as with the real provider:

- `aws:route53/getZone:getZone` looks the zone up in moto (it must exist, as in AWS) and answers
  with moto's zone id; `Record`s are UPSERTed into / DELETEd from that zone; `HealthCheck`s are
  created in moto and keep moto's id (records reference them);
- S3 `Bucket` (created/deleted), `BucketVersioning` (status), `BucketReplicationConfig` (rules);
- IoT `DomainConfiguration` (created; disabled then deleted);
- SQS `Queue` and DynamoDB `Table` (created by name, deleted): what `status` reads of continuous
  replication (dead-letter queues, watermark tables). moto keeps no replicas of a global table.

Any other resource stays in the Pulumi state only. Errors from moto fail the operation, as an
AWS error would.
"""

from __future__ import annotations

from typing import Any

_KEY = "testing"


def _first(value: Any) -> dict[str, Any]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


class MotoMirror:
    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, service: str, region: str) -> Any:
        import boto3  # deferred: only a mirrored run pays for it
        from botocore.config import Config

        return boto3.client(
            service, region_name=region, endpoint_url=self.url, aws_access_key_id=_KEY,
            aws_secret_access_key=_KEY, config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    # -- invokes --------------------------------------------------------------------------------
    def zone_id(self, name: str) -> str | None:
        r53 = self.client("route53", "us-east-1")
        wanted = name.rstrip(".").lower() + "."
        for zone in r53.list_hosted_zones_by_name(DNSName=wanted).get("HostedZones", []):
            if zone["Name"].lower() == wanted and not zone.get("Config", {}).get("PrivateZone"):
                return zone["Id"].split("/")[-1]
        return None

    # -- resources --------------------------------------------------------------------------------
    def created(self, token: str, region: str, rid: str, props: dict[str, Any]) -> str | None:
        """Create the resource in moto; a new id when moto assigns it (health checks)."""
        if token == "aws:route53/healthCheck:HealthCheck":
            hc = self.client("route53", "us-east-1").create_health_check(
                CallerReference=rid, HealthCheckConfig=_health_config(props))
            return str(hc["HealthCheck"]["Id"])
        self._apply(token, region, rid, props)
        return None

    def updated(self, token: str, region: str, rid: str, olds: dict[str, Any], news: dict[str, Any]) -> None:
        if token == "aws:route53/healthCheck:HealthCheck":
            config = _health_config(news)
            self.client("route53", "us-east-1").update_health_check(
                HealthCheckId=rid, FullyQualifiedDomainName=config["FullyQualifiedDomainName"],
                Port=config["Port"], FailureThreshold=config["FailureThreshold"])
            return
        self._apply(token, region, rid, news)

    def deleted(self, token: str, region: str, rid: str, props: dict[str, Any]) -> None:
        if token == "aws:route53/record:Record":
            self._change("DELETE", props)
        elif token == "aws:route53/healthCheck:HealthCheck":
            self.client("route53", "us-east-1").delete_health_check(HealthCheckId=rid)
        elif token in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            self.client("s3", region).delete_bucket(Bucket=rid)
        elif token == "aws:s3/bucketVersioning:BucketVersioning":
            self.client("s3", region).put_bucket_versioning(
                Bucket=props["bucket"], VersioningConfiguration={"Status": "Suspended"})
        elif token == "aws:s3/bucketReplicationConfig:BucketReplicationConfig":
            self.client("s3", region).delete_bucket_replication(Bucket=props["bucket"])
        elif token == "aws:iot/domainConfiguration:DomainConfiguration":
            iot = self.client("iot", region)
            iot.update_domain_configuration(domainConfigurationName=props["name"],
                                            domainConfigurationStatus="DISABLED")
            iot.delete_domain_configuration(domainConfigurationName=props["name"])
        elif token == "aws:sqs/queue:Queue":
            sqs = self.client("sqs", region)
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=props["name"])["QueueUrl"])
        elif token == "aws:dynamodb/table:Table":
            self.client("dynamodb", region).delete_table(TableName=props["name"])

    def _apply(self, token: str, region: str, rid: str, props: dict[str, Any]) -> None:
        if token == "aws:route53/record:Record":
            self._change("UPSERT", props)
        elif token in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            s3 = self.client("s3", region)
            if rid not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
                extra = {} if region == "us-east-1" else {
                    "CreateBucketConfiguration": {"LocationConstraint": region}}
                s3.create_bucket(Bucket=rid, **extra)
        elif token == "aws:s3/bucketVersioning:BucketVersioning":
            status = (props.get("versioningConfiguration") or {}).get("status", "Enabled")
            self.client("s3", region).put_bucket_versioning(
                Bucket=props["bucket"], VersioningConfiguration={"Status": status})
        elif token == "aws:s3/bucketReplicationConfig:BucketReplicationConfig":
            self.client("s3", region).put_bucket_replication(
                Bucket=props["bucket"],
                ReplicationConfiguration={"Role": props["role"], "Rules": [_rule(r) for r in props["rules"]]})
        elif token == "aws:iot/domainConfiguration:DomainConfiguration":
            iot = self.client("iot", region)
            names = {d["domainConfigurationName"]
                     for d in iot.list_domain_configurations().get("domainConfigurations", [])}
            if props["name"] not in names:
                iot.create_domain_configuration(
                    domainConfigurationName=props["name"], domainName=props["domainName"],
                    serverCertificateArns=list(props.get("serverCertificateArns") or []),
                    serviceType=props.get("serviceType", "DATA"))

        elif token == "aws:sqs/queue:Queue":
            self.client("sqs", region).create_queue(QueueName=props["name"])  # idempotent for equal attributes
        elif token == "aws:dynamodb/table:Table":
            ddb = self.client("dynamodb", region)
            if props["name"] not in ddb.list_tables().get("TableNames", []):
                hash_key = props["hashKey"]
                types = {a["name"]: a["type"] for a in props.get("attributes") or []}
                extra: dict[str, Any] = {}
                if props.get("streamEnabled"):
                    extra["StreamSpecification"] = {"StreamEnabled": True,
                                                    "StreamViewType": props.get("streamViewType", "NEW_AND_OLD_IMAGES")}
                ddb.create_table(TableName=props["name"], BillingMode="PAY_PER_REQUEST",
                                 AttributeDefinitions=[{"AttributeName": hash_key, "AttributeType": types[hash_key]}],
                                 KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}], **extra)

    def _change(self, action: str, props: dict[str, Any]) -> None:
        rrset: dict[str, Any] = {
            "Name": str(props["name"]).rstrip(".") + ".",
            "Type": props["type"],
            "TTL": int(props.get("ttl") or 300),
            "ResourceRecords": [{"Value": str(v)} for v in props.get("records") or []],
        }
        if props.get("setIdentifier"):
            rrset["SetIdentifier"] = props["setIdentifier"]
        if props.get("healthCheckId"):
            rrset["HealthCheckId"] = props["healthCheckId"]
        failover = _first(props.get("failoverRoutingPolicies")).get("type")
        if failover:
            rrset["Failover"] = failover
        latency = _first(props.get("latencyRoutingPolicies")).get("region")
        if latency:
            rrset["Region"] = latency
        r53 = self.client("route53", "us-east-1")
        zone = props["zoneId"]
        siblings = []
        if action == "DELETE":
            # moto deletes every set of that name and type, whatever its SetIdentifier; Route 53
            # deletes exactly the one named: put the others back afterwards
            listing = r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName=rrset["Name"],
                                                    StartRecordType=rrset["Type"])["ResourceRecordSets"]
            siblings = [rr for rr in listing if rr["Name"] == rrset["Name"] and rr["Type"] == rrset["Type"]
                        and rr.get("SetIdentifier") != rrset.get("SetIdentifier")]
        r53.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": rrset}]})
        if siblings:
            r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
                {"Action": "UPSERT", "ResourceRecordSet": rr} for rr in siblings]})


def _health_config(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": props.get("type", "TCP"),
        "FullyQualifiedDomainName": props.get("fqdn", ""),
        "Port": int(props.get("port") or 443),
        "RequestInterval": int(props.get("requestInterval") or 30),
        "FailureThreshold": int(props.get("failureThreshold") or 3),
    }


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    dest = rule.get("destination") or {}
    out: dict[str, Any] = {
        "ID": rule.get("id", ""),
        "Priority": int(rule.get("priority") or 1),
        "Status": rule.get("status", "Enabled"),
        "Filter": {"Prefix": (rule.get("filter") or {}).get("prefix", "")},
        "Destination": {"Bucket": dest.get("bucket", "")},
    }
    if dest.get("storageClass"):
        out["Destination"]["StorageClass"] = dest["storageClass"]
    if rule.get("deleteMarkerReplication"):
        out["DeleteMarkerReplication"] = {"Status": rule["deleteMarkerReplication"].get("status", "Disabled")}
    return out
