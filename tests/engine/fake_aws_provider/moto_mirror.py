"""Mirror the few resources the orchestrator verifies into a moto server (FAKE_AWS_MOTO_URL).

TEST FIXTURE ONLY. The stand-in provider keeps no cloud of its own; the lifecycle commands
(`promote-secondary`, `failover`, `failback`) verify each step by reading AWS with boto3. When
FAKE_AWS_MOTO_URL is set, the stand-in really creates those resources in moto, so "the provider
created it" and "AWS shows it" agree, as with the real provider:

- `aws:route53/getZone:getZone` looks the zone up in moto (it must exist, as in AWS) and answers
  with moto's zone id; `HealthCheck`s are created in moto and keep moto's id (records reference
  them);
- `Record`s get the change batches terraform-provider-aws sends (internal/service/route53/record.go):
  create = CREATE (UPSERT with `allowOverwrite`); update = UPSERT when `type` and `setIdentifier`
  are unchanged, else one batch [DELETE old, CREATE new]; delete = list the set first, nothing if
  it is absent, else DELETE of the set as listed (an InvalidChangeBatch on delete is ignored); each
  accepted change is waited on with GetChange until INSYNC. Point FAKE_AWS_MOTO_URL at the strict
  Route 53 gate (tests/aws_gate.py) and these batches meet Route 53's rules;
- ARC `RoutingControl`s and `SafetyRule`s are registered with the fake cluster data plane
  (FAKE_AWS_ARC_URL, orchestrator/drill/arc.py), standing in for ARC's control plane;
- S3 `Bucket` (created/deleted), `BucketVersioning` (status), `BucketReplicationConfig` (rules);
- IoT `DomainConfiguration`: created with CreateDomainConfiguration (a name that exists clashes,
  as in AWS: a create-before-delete replacement with the same name fails instead of deleting the
  new configuration afterwards); an update sends UpdateDomainConfiguration with only what that
  API can change (status, TLS policy, authorizer), and a change of anything else is refused
  (terraform-provider-aws replaces the resource for it); disabled then deleted;
- SQS `Queue` and DynamoDB `Table` (created by name, deleted): what `status` reads of continuous
  replication (dead-letter queues, watermark tables). moto keeps no replicas of a global table.
- Step Functions `StateMachine` (CreateStateMachine, UpdateStateMachine, DeleteStateMachine) and
  EventBridge Scheduler `Schedule` (CreateSchedule, UpdateSchedule, DeleteSchedule): the daily
  reconciliation. moto accepts any definition; AWS validates it (InvalidDefinition), so the mirror
  validates it first with the Amazon States Language stand-in (tests/states_language.py), and
  refuses a schedule whose flexible window is OFF yet has a maximum window (Scheduler API
  reference, FlexibleTimeWindow: MaximumWindowInMinutes only with FLEXIBLE).

Any other resource stays in the Pulumi state only. Errors from moto fail the operation, as an
AWS error would. Every call is made with the credentials the provider acts with (identity.py: an
assumed role's, so a resource lands in the role's account, as moto keeps accounts apart by them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

_KEY = "testing"
DOMAIN_CONFIGURATION = "aws:iot/domainConfiguration:DomainConfiguration"
# what UpdateDomainConfiguration cannot change (its request has no such field)
DOMAIN_FIXED = ("name", "domainName", "serviceType", "serverCertificateArns", "validationCertificateArn")


STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
SCHEDULE = "aws:scheduler/schedule:Schedule"


def _valid_definition(text: str) -> str:
    """The definition as CreateStateMachine takes it, refused as AWS refuses an invalid one."""
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[3])  # the repository: tests.states_language
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.states_language import InvalidDefinition, validate

    try:
        validate(json.loads(text))
    except (InvalidDefinition, ValueError) as exc:
        raise ValueError(f"InvalidDefinition: {exc}") from exc
    return text


def _first(value: Any) -> dict[str, Any]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


class MotoMirror:
    def __init__(self, url: str, credentials: Mapping[str, str] | None = None) -> None:
        """`credentials`: boto3 keyword credentials of the account the provider acts in (an
        assumed role's: moto keeps each account's resources apart by them); default moto's test keys."""
        self.url = url
        self.credentials = dict(credentials or {"aws_access_key_id": _KEY, "aws_secret_access_key": _KEY})

    def client(self, service: str, region: str) -> Any:
        import boto3  # deferred: only a mirrored run pays for it
        from botocore.config import Config

        return boto3.client(
            service, region_name=region, endpoint_url=self.url, **self.credentials,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
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
        if token == "aws:route53/record:Record":
            action = "UPSERT" if props.get("allowOverwrite") else "CREATE"
            self._batch(props["zoneId"], [(action, _rrset(props))])
            return None
        if self._arc(token, "created", props):
            return None
        self._apply(token, region, rid, props)
        return None

    def updated(self, token: str, region: str, rid: str, olds: dict[str, Any], news: dict[str, Any]) -> None:
        if token == "aws:route53/healthCheck:HealthCheck":
            config = _health_config(news)
            config.pop("Type")
            config.pop("RequestInterval", None)
            config.pop("RoutingControlArn", None)  # cannot change in place
            self.client("route53", "us-east-1").update_health_check(HealthCheckId=rid, **config)
            return
        if token == "aws:route53/record:Record":
            old, new = _rrset(olds), _rrset(news)
            if old["Type"] == new["Type"] and old.get("SetIdentifier") == new.get("SetIdentifier"):
                self._batch(news["zoneId"], [("UPSERT", new)])
            else:
                self._batch(news["zoneId"], [("DELETE", self._listed(olds) or old), ("CREATE", new)])
            return
        if self._arc(token, "created", news):
            return
        if token == DOMAIN_CONFIGURATION:
            self._update_domain_configuration(region, olds, news)
            return
        self._apply(token, region, rid, news)

    def _update_domain_configuration(self, region: str, olds: dict[str, Any], news: dict[str, Any]) -> None:
        """UpdateDomainConfiguration takes status, TLS config and authorizer config only (the API
        reference); anything else changing here means the stand-in failed to replace."""
        fixed = sorted(k for k in DOMAIN_FIXED if olds.get(k) != news.get(k))
        if fixed:
            raise ValueError(f"UpdateDomainConfiguration cannot change {', '.join(fixed)}: "
                             "the resource must be replaced")
        request: dict[str, Any] = {"domainConfigurationName": news["name"]}
        if olds.get("status") != news.get("status") and news.get("status"):
            request["domainConfigurationStatus"] = news["status"]
        tls = news.get("tlsConfig") if isinstance(news.get("tlsConfig"), dict) else _first(news.get("tlsConfig"))
        if olds.get("tlsConfig") != news.get("tlsConfig") and tls.get("securityPolicy"):
            request["tlsConfig"] = {"securityPolicy": tls["securityPolicy"]}
        if len(request) > 1:
            self.client("iot", region).update_domain_configuration(**request)

    def deleted(self, token: str, region: str, rid: str, props: dict[str, Any]) -> None:
        if token == "aws:route53/record:Record":
            listed = self._listed(props)
            if listed is not None:
                try:
                    self._batch(props["zoneId"], [("DELETE", listed)])
                except Exception as exc:  # noqa: BLE001 - the provider ignores InvalidChangeBatch on delete
                    if "InvalidChangeBatch" not in str(exc):
                        raise
        elif self._arc(token, "deleted", props):
            return
        elif token == "aws:route53/healthCheck:HealthCheck":
            self.client("route53", "us-east-1").delete_health_check(HealthCheckId=rid)
        elif token in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            self.client("s3", region).delete_bucket(Bucket=rid)
        elif token == "aws:s3/bucketVersioning:BucketVersioning":
            self.client("s3", region).put_bucket_versioning(
                Bucket=props["bucket"], VersioningConfiguration={"Status": "Suspended"})
        elif token == "aws:s3/bucketReplicationConfig:BucketReplicationConfig":
            self.client("s3", region).delete_bucket_replication(Bucket=props["bucket"])
        elif token == DOMAIN_CONFIGURATION:
            iot = self.client("iot", region)
            iot.update_domain_configuration(domainConfigurationName=props["name"],
                                            domainConfigurationStatus="DISABLED")
            iot.delete_domain_configuration(domainConfigurationName=props["name"])
        elif token == "aws:sqs/queue:Queue":
            sqs = self.client("sqs", region)
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=props["name"])["QueueUrl"])
        elif token == "aws:dynamodb/table:Table":
            self.client("dynamodb", region).delete_table(TableName=props["name"])
        elif token == STATE_MACHINE:
            self.client("stepfunctions", region).delete_state_machine(stateMachineArn=props["arn"])
        elif token == SCHEDULE:
            self.client("scheduler", region).delete_schedule(
                Name=props["name"], GroupName=props.get("groupName") or "default")

    def _apply(self, token: str, region: str, rid: str, props: dict[str, Any]) -> None:
        if token in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
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
        elif token == DOMAIN_CONFIGURATION:
            # always a create, as the provider sends it: a name that exists is AWS's
            # ResourceAlreadyExistsException, never a silent adoption
            self.client("iot", region).create_domain_configuration(
                domainConfigurationName=props["name"], domainName=props["domainName"],
                serverCertificateArns=list(props.get("serverCertificateArns") or []),
                serviceType=props.get("serviceType", "DATA"))

        elif token == STATE_MACHINE:
            definition = _valid_definition(props["definition"])
            sfn = self.client("stepfunctions", region)
            arn = props.get("arn")
            existing = {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
            if arn in existing:
                sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=props["roleArn"])
            else:
                sfn.create_state_machine(name=props["name"], definition=definition, roleArn=props["roleArn"],
                                         type=props.get("type") or "STANDARD")
        elif token == SCHEDULE:
            window = props.get("flexibleTimeWindow") or {}
            if window.get("mode") == "OFF" and window.get("maximumWindowInMinutes") is not None:
                raise ValueError("ValidationException: MaximumWindowInMinutes is only valid with mode FLEXIBLE")
            target = props["target"]
            request = {"Name": props["name"], "GroupName": props.get("groupName") or "default",
                       "ScheduleExpression": props["scheduleExpression"],
                       "FlexibleTimeWindow": {"Mode": window.get("mode", "OFF")},
                       "Target": {"Arn": target["arn"], "RoleArn": target["roleArn"],
                                  **({"Input": target["input"]} if target.get("input") else {})}}
            scheduler = self.client("scheduler", region)
            try:
                scheduler.get_schedule(Name=request["Name"], GroupName=request["GroupName"])
            except scheduler.exceptions.ResourceNotFoundException:
                scheduler.create_schedule(**request)
            else:
                scheduler.update_schedule(**request)
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

    def _batch(self, zone: str, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """One ChangeResourceRecordSets call, then GetChange until INSYNC (as the provider waits)."""
        r53 = self.client("route53", "us-east-1")
        info = r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={
            "Changes": [{"Action": a, "ResourceRecordSet": rr} for a, rr in changes]})["ChangeInfo"]
        for _ in range(30):
            if info.get("Status") == "INSYNC":
                return
            info = r53.get_change(Id=info["Id"])["ChangeInfo"]
        raise RuntimeError(f"change {info['Id']} not INSYNC")

    def _listed(self, props: dict[str, Any]) -> dict[str, Any] | None:
        """The record set as Route 53 lists it (name, type, set identifier), or None."""
        want = _rrset(props)
        r53 = self.client("route53", "us-east-1")
        listing = r53.list_resource_record_sets(
            HostedZoneId=props["zoneId"], StartRecordName=want["Name"], StartRecordType=want["Type"],
            **({"StartRecordIdentifier": want["SetIdentifier"]} if want.get("SetIdentifier") else {}),
        )["ResourceRecordSets"]
        for rr in listing:
            if rr["Name"].lower() == want["Name"].lower() and rr["Type"] == want["Type"] \
                    and rr.get("SetIdentifier") == want.get("SetIdentifier"):
                return rr
        return None

    def _arc(self, token: str, event: str, props: dict[str, Any]) -> bool:
        """Routing controls and safety rules reach the fake cluster (FAKE_AWS_ARC_URL)."""
        if token not in ("aws:route53recoverycontrol/routingControl:RoutingControl",
                         "aws:route53recoverycontrol/safetyRule:SafetyRule"):
            return token.startswith("aws:route53recoverycontrol/")
        url = os.environ.get("FAKE_AWS_ARC_URL")
        if not url:
            return True
        if event == "deleted":
            _post(f"{url}/_fake/delete", {"arn": props["arn"]})
        elif token.endswith("RoutingControl"):
            _post(f"{url}/_fake/control", {"arn": props["arn"], "name": props.get("name", ""),
                                           "panel": props.get("controlPanelArn", "")})
        else:
            rule = props.get("ruleConfig") or {}
            _post(f"{url}/_fake/safety-rule", {
                "arn": props["arn"], "name": props.get("name", ""), "asserted": props.get("assertedControls") or [],
                "threshold": int(rule.get("threshold") or 1), "inverted": bool(rule.get("inverted")),
                "type": rule.get("type", "ATLEAST"), "waitPeriodMs": int(props["waitPeriodMs"])})
        return True


def _post(url: str, body: dict[str, Any]) -> None:
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
        response.read()


def _rrset(props: dict[str, Any]) -> dict[str, Any]:
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
    return rrset


def _health_config(props: dict[str, Any]) -> dict[str, Any]:
    kind = props.get("type", "TCP")
    if kind == "CALCULATED":
        return {"Type": kind, "ChildHealthChecks": list(props.get("childHealthchecks") or []),
                "HealthThreshold": int(props.get("childHealthThreshold") or 0)}
    if kind == "RECOVERY_CONTROL":
        return {"Type": kind, "RoutingControlArn": props.get("routingControlArn", "")}
    if kind == "CLOUDWATCH_METRIC":  # the region's MQTT canary alarm (programs/canary.py)
        return {"Type": kind, "AlarmIdentifier": {"Region": props.get("cloudwatchAlarmRegion", ""),
                                                  "Name": props.get("cloudwatchAlarmName", "")},
                "InsufficientDataHealthStatus": props.get("insufficientDataHealthStatus") or "LastKnownStatus"}
    return {
        "Type": kind,
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
