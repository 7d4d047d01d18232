"""The one resource -> AWS-call mirror: what pulumi-aws (terraform-provider-aws, bridged) sends to AWS
for each resource type the local world makes, used by every stand-in provider.

Three callers, one mapping:
- the drill's engine (`orchestrator/drill/world/engine.py`, `drill --local`) and the ops tier's provider
  simulation (`tests/ops/provider_sim.py`) apply a stack's resources, as evaluated under Pulumi mocks,
  with `StackApply`: a small engine that keeps what it made per logical name and runs
  create / update / replace / delete as Pulumi does (creates and updates in dependency order,
  replacements create-before-delete unless the provider says otherwise, every delete last);
- the engine tier's stand-in provider plugin (`tests/engine/fake_aws_provider/moto_mirror.py`) gets
  Create / Update / Delete from the real Pulumi engine and hands each to `Mirror`.

`Mirror.create` / `update` / `delete` are the calls the provider makes for one resource; `REPLACE_KEYS`
are the inputs it cannot change in place (the Diff answers "replace" for them). Sources:
- REFERENCE.md "What terraform-provider-aws sends for `aws_route53_record`"
  (internal/service/route53/record.go): create = CREATE (UPSERT with `allow_overwrite`); update =
  UPSERT when `type` and `set_identifier` are unchanged, else ONE batch [DELETE of the old set built
  from PRIOR STATE, CREATE new] (not what Route 53 lists now: after drift that DELETE fails with
  "values provided do not match", as in AWS); delete = list first, nothing if absent, else DELETE of
  the listed set, an InvalidChangeBatch ignored; only `name` and `zone_id` force replacement; TTL is
  sent only when set; every change waits for INSYNC (GetChange).
- REFERENCE.md "More AWS behaviour" (internal/service/iot/domain_configuration.go): `name`,
  `domain_name`, `server_certificate_arns`, `service_type`, `validation_certificate_arn` force
  replacement; an update sends UpdateDomainConfiguration with authorizer, status and TLS config only
  (the API has no other field); delete disables first; pulumi-terraform-bridge replaces
  delete-before-create when an autonamed property (here `name`) is set explicitly.
- internal/service/route53/health_check.go: `type`, `request_interval`, `routing_control_arn` (and
  `measure_latency`, `reference_name`) are ForceNew; UpdateHealthCheck carries only what changed.
- Route 53 ARC: a SafetyRule's `waitPeriodMs` is required by the resource and forwarded to the
  cluster, which refuses changes within it (REFERENCE.md "Route 53 ARC safety rules").
- CloudWatch PutMetricAlarm: a new alarm starts in INSUFFICIENT_DATA and an updated alarm keeps its
  state (CloudWatch User Guide, "Alarm states"); moto says OK, so the mirror sets the state.
- internal/service/dynamodb/table.go: create = CreateTable, UpdateTimeToLive when `ttl` is enabled,
  then one UpdateTable `ReplicaUpdates` Create per `replicas` region (createReplicas); update =
  the stream, the TTL, and the replicas that left deleted before the new ones are created
  (updateReplica); delete = the replicas first (deleteReplicas), then DeleteTable; `name`,
  `hash_key` and `range_key` force replacement. Point-in-time recovery, SSE and tags stay in the
  state only (nothing in the local world reads them).
- Route 53 refuses what `route53_model.apply_batch` refuses: every batch is checked with the one
  Route 53 model before it is sent (moto accepts any batch), so all three callers meet Route 53's
  rules whether or not the strict gate (tests/aws_gate.py) stands in front of moto.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

RECORD = "aws:route53/record:Record"
HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
ROUTING_CONTROL = "aws:route53recoverycontrol/routingControl:RoutingControl"
SAFETY_RULE = "aws:route53recoverycontrol/safetyRule:SafetyRule"
ARC_PREFIX = "aws:route53recoverycontrol/"
DOMAIN_CONFIGURATION = "aws:iot/domainConfiguration:DomainConfiguration"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
QUEUE = "aws:sqs/queue:Queue"
TABLE = "aws:dynamodb/table:Table"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
SCHEDULE = "aws:scheduler/schedule:Schedule"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"

# what a DNS stack's program makes in the local world (the other types stay in the state only)
DNS_TYPES = frozenset({"aws:route53/healthCheck:HealthCheck", "aws:route53/record:Record",
                       "aws:route53recoverycontrol/routingControl:RoutingControl",
                       "aws:route53recoverycontrol/safetyRule:SafetyRule"})

# inputs the provider cannot change in place (terraform-provider-aws ForceNew), per mirrored type;
# `region` forces a new resource on every regional type (pulumi-aws 7's per-resource region)
REPLACE_KEYS: dict[str, frozenset[str]] = {
    RECORD: frozenset({"name", "zoneId"}),  # record.go: only name and zone_id
    HEALTH_CHECK: frozenset({"type", "requestInterval", "routingControlArn", "measureLatency", "referenceName"}),
    # domain_configuration.go ForceNew; the API cannot change a certificate in place ("to change the
    # certificate of a domain configuration, you must delete and recreate it": docs/field-notes-route53-arc.md)
    DOMAIN_CONFIGURATION: frozenset({"name", "domainName", "serviceType", "serverCertificateArns",
                                     "validationCertificateArn"}),
    BUCKET: frozenset({"bucket", "bucketPrefix"}),
    BUCKET_V2: frozenset({"bucket", "bucketPrefix"}),
    BUCKET_VERSIONING: frozenset({"bucket", "expectedBucketOwner"}),
    BUCKET_REPLICATION: frozenset({"bucket"}),
    QUEUE: frozenset({"name", "namePrefix", "fifoQueue"}),
    TABLE: frozenset({"name", "hashKey", "rangeKey"}),  # table.go: name, hash_key, range_key ForceNew
    STATE_MACHINE: frozenset({"name", "namePrefix"}),
    SCHEDULE: frozenset({"name", "namePrefix", "groupName"}),
    METRIC_ALARM: frozenset({"name"}),
    "aws:route53recoverycontrol/cluster:Cluster": frozenset({"name"}),
    "aws:route53recoverycontrol/controlPanel:ControlPanel": frozenset({"clusterArn"}),
    ROUTING_CONTROL: frozenset({"clusterArn", "controlPanelArn", "name"}),
    SAFETY_RULE: frozenset({"controlPanelArn", "ruleConfig", "name", "assertedControls", "gatingControls",
                            "targetControls"}),
}
# the autonameable property per type. pulumi-terraform-bridge's Diff answers deleteBeforeReplace
# when a replacement is needed and that property was set by the program, not by the autonamer
# (pkg/tfbridge/provider.go: `nameRequiresDeleteBeforeReplace`): the same name cannot exist twice,
# so the old resource goes first (for the region's domain configuration, the custom domain is down
# in that region until the new one serves: why the program keeps the certificate ARN constant)
AUTONAMED: dict[str, str] = {DOMAIN_CONFIGURATION: "name", BUCKET: "bucket", BUCKET_V2: "bucket", QUEUE: "name",
                             TABLE: "name", STATE_MACHINE: "name", SCHEDULE: "name", METRIC_ALARM: "name"}


def delete_before_replace(token: str, news: Mapping[str, Any]) -> bool:
    """Whether a replacement of `token` with these inputs deletes the old resource first."""
    key = AUTONAMED.get(token)
    return key is not None and news.get(key) is not None


def replaces(token: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The changed inputs that force `token` to be replaced (empty: an in-place update)."""
    keys = REPLACE_KEYS.get(token, frozenset()) | {"region"}
    return sorted(k for k in keys if olds.get(k) != news.get(k))


def _first(value: Any) -> dict[str, Any]:
    """A pulumi-aws single-block input: a dict, or a list of one dict (the bridge's shape)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return dict(value[0])
    return {}


# -- request shapes ------------------------------------------------------------------------------

def table_replicas(inputs: Mapping[str, Any]) -> list[str]:
    """The regions of an `aws.dynamodb.Table`'s declared `replicas`, in the order declared."""
    return [str(r["regionName"]) for r in inputs.get("replicas") or [] if isinstance(r, dict) and r.get("regionName")]


def record_set(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Route 53's ResourceRecordSet for an `aws.route53.Record`'s inputs (record.go's expand):
    TTL only when set (Route 53 itself refuses a non-alias record without one)."""
    rr: dict[str, Any] = {"Name": str(inputs["name"]).rstrip(".") + ".", "Type": inputs["type"]}
    if inputs.get("ttl") is not None:
        rr["TTL"] = int(inputs["ttl"])
    rr["ResourceRecords"] = [{"Value": str(v)} for v in inputs.get("records") or []]
    if inputs.get("setIdentifier"):
        rr["SetIdentifier"] = inputs["setIdentifier"]
    if inputs.get("healthCheckId"):
        rr["HealthCheckId"] = inputs["healthCheckId"]
    failover = _first(inputs.get("failoverRoutingPolicies")).get("type")
    if failover:
        rr["Failover"] = failover
    latency = _first(inputs.get("latencyRoutingPolicies")).get("region")
    if latency:
        rr["Region"] = latency
    return rr


def health_check_config(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Route 53's HealthCheckConfig for an `aws.route53.HealthCheck`'s inputs. Route 53's own
    defaults where it has them (RequestInterval 30, FailureThreshold 3: CreateHealthCheck API
    reference); a TCP check without a port is refused, as Route 53 refuses it."""
    kind = inputs["type"]
    if kind == "RECOVERY_CONTROL":
        return {"Type": kind, "RoutingControlArn": inputs["routingControlArn"]}
    if kind == "CLOUDWATCH_METRIC":  # the region's MQTT canary alarm (programs/canary.py)
        return {"Type": kind, "AlarmIdentifier": {"Region": inputs["cloudwatchAlarmRegion"],
                                                  "Name": inputs["cloudwatchAlarmName"]},
                "InsufficientDataHealthStatus": inputs.get("insufficientDataHealthStatus") or "LastKnownStatus",
                **({"Inverted": True} if inputs.get("invertHealthcheck") else {})}
    if kind == "CALCULATED":
        return {"Type": kind, "HealthThreshold": int(inputs["childHealthThreshold"]),
                "ChildHealthChecks": list(inputs["childHealthchecks"]),
                **({"Inverted": True} if inputs.get("invertHealthcheck") else {})}
    if kind == "TCP" and inputs.get("port") is None:
        raise ValueError("InvalidInput: a TCP health check needs a Port")
    config: dict[str, Any] = {"Type": kind, "FullyQualifiedDomainName": inputs["fqdn"],
                              "Port": int(inputs.get("port") or (443 if kind.startswith("HTTPS") else 80)),
                              "RequestInterval": int(inputs.get("requestInterval") or 30),
                              "FailureThreshold": int(inputs.get("failureThreshold") or 3)}
    if inputs.get("invertHealthcheck"):
        config["Inverted"] = True
    return config


# UpdateHealthCheck's request: HealthCheckConfig fields that can change in place (not Type,
# RequestInterval, RoutingControlArn: ForceNew) and that health_check.go sends when they changed
_HEALTH_UPDATABLE = ("FullyQualifiedDomainName", "Port", "FailureThreshold", "Inverted", "ChildHealthChecks",
                     "HealthThreshold", "AlarmIdentifier", "InsufficientDataHealthStatus")


def health_check_update(olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
    """UpdateHealthCheck's arguments (without the id) for a change that is not a replacement:
    only what changed. Empty when nothing Route 53 keeps changed (e.g. tags only)."""
    old, new = health_check_config(olds), health_check_config(news)
    request = {k: new[k] for k in _HEALTH_UPDATABLE if k in new and old.get(k) != new.get(k)}
    if old.get("Inverted") and not new.get("Inverted"):
        request["Inverted"] = False
    return request


def domain_configuration_update(olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
    """UpdateDomainConfiguration's arguments: status, TLS config and authorizer config only (the
    API reference has no other field; domain_configuration.go). A change of a field the API cannot
    change means the caller failed to replace: refused, never silently dropped."""
    fixed = sorted(k for k in REPLACE_KEYS[DOMAIN_CONFIGURATION] if olds.get(k) != news.get(k))
    if fixed:
        raise ValueError(f"UpdateDomainConfiguration cannot change {', '.join(fixed)}: the resource must be replaced")
    request: dict[str, Any] = {"domainConfigurationName": news["name"]}
    if olds.get("status") != news.get("status") and news.get("status"):
        request["domainConfigurationStatus"] = news["status"]
    tls = _first(news.get("tlsConfig"))
    if olds.get("tlsConfig") != news.get("tlsConfig") and tls.get("securityPolicy"):
        request["tlsConfig"] = {"securityPolicy": tls["securityPolicy"]}
    authorizer = _first(news.get("authorizerConfig"))
    if olds.get("authorizerConfig") != news.get("authorizerConfig") and authorizer:
        request["authorizerConfig"] = {k[0].lower() + k[1:]: v for k, v in authorizer.items()}
    return request if len(request) > 1 else {}


def replication_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """S3's ReplicationRule for one `rules` entry of an `aws.s3.BucketReplicationConfig`."""
    dest = _first(rule.get("destination"))
    out: dict[str, Any] = {
        "ID": rule.get("id", ""),
        "Priority": int(rule.get("priority") or 1),
        "Status": rule.get("status", "Enabled"),
        "Filter": {"Prefix": _first(rule.get("filter")).get("prefix", "")},
        "Destination": {"Bucket": dest.get("bucket", "")},
    }
    if dest.get("storageClass"):
        out["Destination"]["StorageClass"] = dest["storageClass"]
    marker = _first(rule.get("deleteMarkerReplication"))
    if marker:
        out["DeleteMarkerReplication"] = {"Status": marker.get("status", "Disabled")}
    return out


def metric_alarm(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """PutMetricAlarm's arguments for an `aws.cloudwatch.MetricAlarm`'s inputs."""
    return dict(
        AlarmName=inputs["name"], AlarmDescription=inputs.get("alarmDescription", ""),
        Namespace=inputs["namespace"], MetricName=inputs["metricName"],
        Dimensions=[{"Name": k, "Value": v} for k, v in sorted(dict(inputs.get("dimensions") or {}).items())],
        Statistic=inputs["statistic"], Period=int(inputs["period"]),
        EvaluationPeriods=int(inputs["evaluationPeriods"]),
        DatapointsToAlarm=int(inputs.get("datapointsToAlarm") or inputs["evaluationPeriods"]),
        Threshold=float(inputs["threshold"]), ComparisonOperator=inputs["comparisonOperator"],
        TreatMissingData=inputs.get("treatMissingData") or "missing")


# -- ARC's control plane ---------------------------------------------------------------------------

class ArcControlPlane(Protocol):
    """Where routing controls and safety rules are registered (orchestrator/drill/world/arc.py's
    ArcCluster, or the engine tier's HTTP client of it)."""

    def add_control(self, arn: str, name: str, panel: str) -> None: ...

    def add_safety_rule(self, arn: str, name: str, asserted: list[str], threshold: int = 1,
                        inverted: bool = False, kind: str = "ATLEAST", wait_period_ms: int = 5000) -> None: ...

    def delete(self, arn: str) -> None: ...


# -- Route 53's change API as the provider uses it -----------------------------------------------

def change_record_sets(r53: Any, zone_id: str, changes: list[dict[str, Any]]) -> Any:
    """ChangeResourceRecordSets as Route 53 answers it: moto accepts any batch, so the batch is first
    checked with the local world's Route 53 model (`route53_model.apply_batch`: all-or-nothing, each
    change against what the earlier ones leave, the zone's name and the account's health checks) and
    refused as Route 53 refuses it (`route53_model.InvalidChangeBatch`, nothing sent). The ChangeInfo
    of the accepted batch."""
    from orchestrator.drill.world.route53_model import apply_batch

    zone = r53.get_hosted_zone(Id=zone_id)["HostedZone"]["Name"]
    current = [rr for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
               for rr in page["ResourceRecordSets"]]
    checks = {hc["Id"] for page in r53.get_paginator("list_health_checks").paginate() for hc in page["HealthChecks"]}
    apply_batch(current, changes, zone=zone, health_checks=checks)
    answer = r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return answer["ChangeInfo"]


# terraform-provider-aws, internal/service/route53/change_info.go, waitChangeInsync: "Route53 is
# vulnerable to throttling so a longer delay and poll interval helps to avoid it": the first
# GetChange 15 s after the change, then one every 15 s (StateChangeConf Delay 15 s, PollInterval
# 15 s), until the resource's timeout (30 minutes by default). AWS's seconds; a stand-in on a time
# scale multiplies them (`InsyncWait.scaled`).
@dataclass(frozen=True)
class InsyncWait:
    delay_s: float = 15.0
    poll_s: float = 15.0
    timeout_s: float = 1800.0
    # a throttled GetChange is retried as the AWS SDKs' standard retry mode does (exponential backoff
    # with full jitter, base 1 s, capped at 20 s: "Retry behavior", AWS SDKs and Tools reference
    # guide), up to terraform-provider-aws's max_retries (25 by default)
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 20.0
    attempts: int = 25

    def scaled(self, time_scale: float) -> InsyncWait:
        return InsyncWait(self.delay_s * time_scale, self.poll_s * time_scale, self.timeout_s * time_scale,
                          self.backoff_base_s * time_scale, self.backoff_cap_s * time_scale, self.attempts)


# the error codes the SDKs' standard retry mode treats as throttling (botocore retries/standard.py)
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
                              "TooManyRequestsException", "ProvisionedThroughputExceededException",
                              "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
                              "LimitExceededException", "RequestThrottled", "SlowDown",
                              "PriorRequestNotComplete", "EC2ThrottledException"})


def throttled(exc: BaseException) -> bool:
    """A botocore ClientError whose code the SDKs retry as throttling."""
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") in THROTTLING_CODES


def wait_insync(r53: Any, info: Mapping[str, Any], *, timing: InsyncWait = InsyncWait(),
                sleep: Callable[[float], None] | None = None, clock: Callable[[], float] | None = None,
                jitter: Callable[[], float] | None = None) -> None:
    """Wait until Route 53 reports a change INSYNC, as terraform-provider-aws does after every
    ChangeResourceRecordSets (`InsyncWait`: its delay and poll interval, well inside Route 53's 10
    requests per second); an accepted change is PENDING until it has reached Route 53's
    authoritative servers (GetChange; docs/field-notes-route53-arc.md). A GetChange refused with
    Throttling (when the client's own retries gave up, or it has none) is retried after the SDK's
    backoff; TimeoutError after `timing.timeout_s`."""
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    jitter = jitter or random.random
    deadline = clock() + timing.timeout_s
    if info.get("Status") == "INSYNC":
        return
    sleep(timing.delay_s)
    refused = 0
    while True:
        try:
            info = r53.get_change(Id=info["Id"])["ChangeInfo"]
            refused = 0
        except Exception as exc:
            if not throttled(exc) or refused + 1 >= timing.attempts:
                raise
            refused += 1
            sleep(min(timing.backoff_cap_s, jitter() * timing.backoff_base_s * 2 ** refused))
            continue
        if info.get("Status") == "INSYNC":
            return
        if clock() >= deadline:
            raise TimeoutError(f"Route 53 change {info.get('Id')} still {info.get('Status')} after "
                               f"{timing.timeout_s:g} s")
        sleep(timing.poll_s)


# -- the calls, per resource ---------------------------------------------------------------------

Batch = list[tuple[str, dict[str, Any]]]  # [(action, ResourceRecordSet)]


class Mirror:
    """The calls the provider makes for one resource's create, update and delete, against the AWS
    `client(service, region)` answers (moto, or the strict gate in front of it)."""

    def __init__(self, client: Callable[[str, str], Any], *, arc: ArcControlPlane | None = None,
                 check_definition: Callable[[str], None] | None = None, time_scale: float = 1.0) -> None:
        self.client = client
        self.arc = arc  # None: routing controls and safety rules stay in the Pulumi state only
        self.check_definition = check_definition  # validates a state machine as AWS does (InvalidDefinition)
        # terraform-provider-aws's wait for INSYNC on the stand-in's time scale (the drill's, or the
        # test tier's: AWS's 15 s are 15 s x time_scale)
        self.insync = InsyncWait().scaled(time_scale)
        self.batches: list[Batch] = []  # every record batch sent, in order

    # -- Route 53 ----------------------------------------------------------------------------------
    def change(self, zone_id: str, changes: Batch) -> None:
        """One ChangeResourceRecordSets, checked with the Route 53 model, then GetChange until INSYNC."""
        r53 = self.client("route53", "us-east-1")
        info = change_record_sets(r53, zone_id, [{"Action": a, "ResourceRecordSet": rr} for a, rr in changes])
        self.batches.append(changes)  # accepted
        wait_insync(r53, info, timing=self.insync)

    def listed(self, zone_id: str, want: Mapping[str, Any]) -> dict[str, Any] | None:
        """The record set (name, type, set identifier) as Route 53 lists it now, or None."""
        r53 = self.client("route53", "us-east-1")
        start = {"StartRecordIdentifier": want["SetIdentifier"]} if want.get("SetIdentifier") else {}
        for rr in r53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=want["Name"],
                                                StartRecordType=want["Type"], **start)["ResourceRecordSets"]:
            if rr["Name"].lower() == want["Name"].lower() and rr["Type"] == want["Type"] \
                    and rr.get("SetIdentifier") == want.get("SetIdentifier"):
                return dict(rr)
        return None

    def zone_id(self, name: str) -> str | None:
        """aws.route53.getZone: the public zone of that name, or None (the provider's "not found")."""
        r53 = self.client("route53", "us-east-1")
        wanted = name.rstrip(".").lower() + "."
        for zone in r53.list_hosted_zones_by_name(DNSName=wanted).get("HostedZones", []):
            if zone["Name"].lower() == wanted and not zone.get("Config", {}).get("PrivateZone"):
                return str(zone["Id"]).split("/")[-1]
        return None

    # -- create ------------------------------------------------------------------------------------
    def create(self, token: str, region: str, rid: str, props: Mapping[str, Any]) -> str | None:
        """Create the resource; the id AWS assigned when it assigns one (a health check), else None."""
        if token == HEALTH_CHECK:
            created = self.client("route53", "us-east-1").create_health_check(
                CallerReference=f"{rid}-{uuid.uuid4().hex[:12]}", HealthCheckConfig=health_check_config(props))
            return str(created["HealthCheck"]["Id"])
        if token == RECORD:
            self.change(props["zoneId"], [("UPSERT" if props.get("allowOverwrite") else "CREATE", record_set(props))])
        elif token.startswith(ARC_PREFIX):
            self._arc_register(token, props)
        elif token in (BUCKET, BUCKET_V2):
            # CreateBucket outside us-east-1 names its region (S3 API reference, CreateBucketConfiguration)
            extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            self.client("s3", region).create_bucket(Bucket=props.get("bucket") or rid, **extra)
        elif token in (BUCKET_VERSIONING, BUCKET_REPLICATION, STATE_MACHINE, SCHEDULE, METRIC_ALARM):
            self._put(token, region, props, new=True)
        elif token == DOMAIN_CONFIGURATION:
            # always a create, as the provider sends it: a name that exists is AWS's
            # ResourceAlreadyExistsException, never a silent adoption
            request: dict[str, Any] = dict(
                domainConfigurationName=props["name"], domainName=props["domainName"],
                serverCertificateArns=list(props.get("serverCertificateArns") or []),
                serviceType=props.get("serviceType", "DATA"))
            if props.get("validationCertificateArn"):
                request["validationCertificateArn"] = props["validationCertificateArn"]
            self.client("iot", region).create_domain_configuration(**request)
        elif token == QUEUE:
            self.client("sqs", region).create_queue(QueueName=props["name"])
        elif token == TABLE:
            self._create_table(region, props)
        return None

    # -- update --------------------------------------------------------------------------------------
    def update(self, token: str, region: str, rid: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> None:
        """An in-place update (the caller replaces when `replaces` is not empty)."""
        forced = replaces(token, olds, news)
        if forced:
            raise ValueError(f"{token} cannot change {', '.join(forced)} in place: the resource must be replaced")
        if token == HEALTH_CHECK:
            request = health_check_update(olds, news)
            if request:
                self.client("route53", "us-east-1").update_health_check(HealthCheckId=rid, **request)
        elif token == RECORD:
            old, new = record_set(olds), record_set(news)
            if (old["Type"], old.get("SetIdentifier")) == (new["Type"], new.get("SetIdentifier")):
                self.change(news["zoneId"], [("UPSERT", new)])
            else:  # the DELETE is the set as recorded in the state, not as Route 53 lists it now
                self.change(news["zoneId"], [("DELETE", old), ("CREATE", new)])
        elif token.startswith(ARC_PREFIX):
            self._arc_register(token, news)
        elif token == DOMAIN_CONFIGURATION:
            request = domain_configuration_update(olds, news)
            if request:
                self.client("iot", region).update_domain_configuration(**request)
        elif token in (BUCKET_VERSIONING, BUCKET_REPLICATION, STATE_MACHINE, SCHEDULE, METRIC_ALARM):
            self._put(token, region, news, new=False)
        elif token == TABLE:
            self._update_table(region, olds, news)
        # buckets and queues: nothing the local world reads changes in place

    # -- delete --------------------------------------------------------------------------------------
    def delete(self, token: str, region: str, rid: str, props: Mapping[str, Any]) -> None:
        if token == RECORD:
            listed = self.listed(props["zoneId"], record_set(props))
            if listed is not None:
                try:
                    self.change(props["zoneId"], [("DELETE", listed)])
                except Exception as exc:  # record.go ignores InvalidChangeBatch on delete
                    if "InvalidChangeBatch" not in f"{type(exc).__name__}: {exc}":
                        raise
        elif token == HEALTH_CHECK:
            self.client("route53", "us-east-1").delete_health_check(HealthCheckId=rid)
        elif token.startswith(ARC_PREFIX):
            if self.arc is not None and token in (ROUTING_CONTROL, SAFETY_RULE):
                self.arc.delete(props["arn"])
        elif token in (BUCKET, BUCKET_V2):
            self.client("s3", region).delete_bucket(Bucket=props.get("bucket") or rid)
        elif token == BUCKET_VERSIONING:  # a versioned bucket can only be suspended (S3 user guide)
            self.client("s3", region).put_bucket_versioning(
                Bucket=props["bucket"], VersioningConfiguration={"Status": "Suspended"})
        elif token == BUCKET_REPLICATION:
            self.client("s3", region).delete_bucket_replication(Bucket=props["bucket"])
        elif token == DOMAIN_CONFIGURATION:  # domain_configuration.go: disabled, then deleted
            iot = self.client("iot", region)
            iot.update_domain_configuration(domainConfigurationName=props["name"],
                                            domainConfigurationStatus="DISABLED")
            iot.delete_domain_configuration(domainConfigurationName=props["name"])
        elif token == QUEUE:
            sqs = self.client("sqs", region)
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=props["name"])["QueueUrl"])
        elif token == TABLE:  # table.go resourceTableDelete: the replicas first, then the table
            ddb = self.client("dynamodb", region)
            for replica in table_replicas(props):
                ddb.update_table(TableName=props["name"], ReplicaUpdates=[{"Delete": {"RegionName": replica}}])
            ddb.delete_table(TableName=props["name"])
        elif token == STATE_MACHINE:
            self.client("stepfunctions", region).delete_state_machine(stateMachineArn=props["arn"])
        elif token == SCHEDULE:
            self.client("scheduler", region).delete_schedule(
                Name=props["name"], GroupName=props.get("groupName") or "default")
        elif token == METRIC_ALARM:
            self.client("cloudwatch", region).delete_alarms(AlarmNames=[props["name"]])

    # -- helpers -------------------------------------------------------------------------------------
    def _put(self, token: str, region: str, props: Mapping[str, Any], *, new: bool) -> None:
        """The types whose create and update are the same Put (or Create/Update pair)."""
        if token == BUCKET_VERSIONING:
            status = _first(props.get("versioningConfiguration")).get("status", "Enabled")
            self.client("s3", region).put_bucket_versioning(
                Bucket=props["bucket"], VersioningConfiguration={"Status": status})
        elif token == BUCKET_REPLICATION:
            self.client("s3", region).put_bucket_replication(
                Bucket=props["bucket"],
                ReplicationConfiguration={"Role": props["role"],
                                          "Rules": [replication_rule(r) for r in props["rules"]]})
        elif token == STATE_MACHINE:
            definition = str(props["definition"])
            if self.check_definition is not None:
                self.check_definition(definition)
            sfn = self.client("stepfunctions", region)
            if new:
                sfn.create_state_machine(name=props["name"], definition=definition, roleArn=props["roleArn"],
                                         type=props.get("type") or "STANDARD")
            else:
                sfn.update_state_machine(stateMachineArn=props["arn"], definition=definition,
                                         roleArn=props["roleArn"])
        elif token == SCHEDULE:
            window = _first(props.get("flexibleTimeWindow"))
            # Scheduler API reference, FlexibleTimeWindow: MaximumWindowInMinutes only with FLEXIBLE
            if window.get("mode") == "OFF" and window.get("maximumWindowInMinutes") is not None:
                raise ValueError("ValidationException: MaximumWindowInMinutes is only valid with mode FLEXIBLE")
            target = _first(props["target"])
            request = {"Name": props["name"], "GroupName": props.get("groupName") or "default",
                       "ScheduleExpression": props["scheduleExpression"],
                       "FlexibleTimeWindow": {"Mode": window.get("mode", "OFF")},
                       "Target": {"Arn": target["arn"], "RoleArn": target["roleArn"],
                                  **({"Input": target["input"]} if target.get("input") else {})}}
            scheduler = self.client("scheduler", region)
            (scheduler.create_schedule if new else scheduler.update_schedule)(**request)
        elif token == METRIC_ALARM:
            cloudwatch = self.client("cloudwatch", region)
            known = [] if new else cloudwatch.describe_alarms(AlarmNames=[props["name"]])["MetricAlarms"]
            cloudwatch.put_metric_alarm(**metric_alarm(props))
            # CloudWatch starts a new alarm in INSUFFICIENT_DATA and leaves an updated alarm's state
            # unchanged (PutMetricAlarm); moto puts either in OK
            state = known[0]["StateValue"] if known else "INSUFFICIENT_DATA"
            cloudwatch.set_alarm_state(AlarmName=props["name"], StateValue=state,
                                       StateReason="updated: state kept" if known else "new alarm: no data yet")

    def _create_table(self, region: str, props: Mapping[str, Any]) -> None:
        """table.go resourceTableCreate: CreateTable (the declared attributes, hash and range key,
        billing mode, stream), then UpdateTimeToLive when `ttl` is enabled, then one UpdateTable
        `ReplicaUpdates` Create per declared replica (createReplicas, one region at a time). The
        local world's moto makes the replicas and replicates (global_tables.py)."""
        ddb = self.client("dynamodb", region)
        keys = [(props["hashKey"], "HASH"), *([(props["rangeKey"], "RANGE")] if props.get("rangeKey") else [])]
        extra: dict[str, Any] = {}
        if props.get("streamEnabled"):
            extra["StreamSpecification"] = {
                "StreamEnabled": True, "StreamViewType": props.get("streamViewType") or "NEW_AND_OLD_IMAGES"}
        # billing_mode's default in table.go is PROVISIONED, which needs the declared capacities
        billing = str(props.get("billingMode") or "PROVISIONED")
        if billing == "PROVISIONED":
            extra["ProvisionedThroughput"] = {"ReadCapacityUnits": int(props.get("readCapacity") or 0),
                                              "WriteCapacityUnits": int(props.get("writeCapacity") or 0)}
        ddb.create_table(TableName=props["name"], BillingMode=billing,
                         AttributeDefinitions=[{"AttributeName": a["name"], "AttributeType": a["type"]}
                                               for a in props.get("attributes") or []],
                         KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys], **extra)
        ttl = _first(props.get("ttl"))
        if ttl.get("enabled"):
            ddb.update_time_to_live(TableName=props["name"], TimeToLiveSpecification={
                "Enabled": True, "AttributeName": ttl["attributeName"]})
        for replica in table_replicas(props):
            ddb.update_table(TableName=props["name"], ReplicaUpdates=[{"Create": {"RegionName": replica}}])

    def _update_table(self, region: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> None:
        """table.go resourceTableUpdate, for what the local world keeps: the stream (UpdateTable
        StreamSpecification), the TTL (UpdateTimeToLive) and the replicas (updateReplica: the
        regions that left deleted first, then the new ones created, one UpdateTable each)."""
        ddb = self.client("dynamodb", region)
        name = news["name"]
        if bool(olds.get("streamEnabled")) != bool(news.get("streamEnabled")):
            spec: dict[str, Any] = {"StreamEnabled": bool(news.get("streamEnabled"))}
            if news.get("streamEnabled"):
                spec["StreamViewType"] = news.get("streamViewType") or "NEW_AND_OLD_IMAGES"
            ddb.update_table(TableName=name, StreamSpecification=spec)
        old_ttl, new_ttl = _first(olds.get("ttl")), _first(news.get("ttl"))
        if old_ttl != new_ttl and (new_ttl or old_ttl).get("attributeName"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": bool(new_ttl.get("enabled")),
                "AttributeName": (new_ttl or old_ttl)["attributeName"]})
        before, after = table_replicas(olds), table_replicas(news)
        for gone in [r for r in before if r not in after]:
            ddb.update_table(TableName=name, ReplicaUpdates=[{"Delete": {"RegionName": gone}}])
        for added in [r for r in after if r not in before]:
            ddb.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": added}}])

    def _arc_register(self, token: str, props: Mapping[str, Any]) -> None:
        """Routing controls and assertion safety rules reach the ARC cluster (its control plane);
        a rule's `waitPeriodMs` is required (the resource requires it) and forwarded. Gating rules,
        clusters and control panels stay in the state (the cluster models assertion rules only)."""
        if self.arc is None:
            return
        if token == ROUTING_CONTROL:
            self.arc.add_control(str(props["arn"]), str(props.get("name", "")), str(props.get("controlPanelArn", "")))
        elif token == SAFETY_RULE and props.get("assertedControls"):
            rule = _first(props["ruleConfig"])
            self.arc.add_safety_rule(str(props["arn"]), str(props.get("name", "")), list(props["assertedControls"]),
                                     int(rule["threshold"]), bool(rule.get("inverted", False)),
                                     str(rule.get("type", "ATLEAST")), int(props["waitPeriodMs"]))


# -- a stack's resources, applied as Pulumi applies them ----------------------------------------------

@dataclass
class Applied:
    """What the stand-in engine keeps of one resource: its type, the inputs it was made with (ids
    already the real ones), the id AWS assigned (or the mock's) and the mock id other inputs name it by."""

    type: str
    inputs: dict[str, Any]
    id: str = ""
    mock_id: str = ""
    region: str = ""
    seq: int = 0  # when it was last made or updated: after everything it depends on


@dataclass
class StackApply:
    """Pulumi's engine in miniature for the resources the mirror makes: per stack, what exists by
    logical name. `apply` converges it on a program's evaluation (programs/mocks.py): creates and
    updates in dependency order (a resource after what it names), a replacement create-before-delete
    (delete-before-create when the program names it: `delete_before_replace`), every delete last and dependents first
    (records before the checks they name: the reverse of the order they were made), as Pulumi runs
    an update. Mock ids and ARNs in inputs become the real ones."""

    mirror: Mirror
    zone_id: str = ""  # the hosted zone records are written to (the program's getZone answer is a mock's)
    state: dict[str, dict[str, Applied]] = field(default_factory=dict)  # stack -> logical name -> resource
    real_ids: dict[str, str] = field(default_factory=dict)  # mock id -> the id AWS assigned
    _seq: int = 0

    def apply(self, stack: str, resources: Iterable[Any], mock_states: Mapping[tuple[str, str], Mapping[str, Any]],
              *, default_region: str = "us-east-1", only: Callable[[str], bool] | None = None,
              edit: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Applied]:
        """`only(token)` picks the types this caller makes (default every type the mirror knows);
        `edit(token, inputs)` lets a test change inputs before they are applied (a broken apply)."""
        wanted = [r for r in resources if getattr(r, "custom", True) and not getattr(r, "read", False)
                  and (only(r.type) if only is not None else r.type in REPLACE_KEYS)]
        state = self.state.setdefault(stack, {})
        doomed: list[Applied] = []
        seen: set[str] = set()
        declared = {r.name for r in wanted} | {a for r in wanted for a in getattr(r, "aliases", ())}
        for res in _dependency_order(wanted):
            previous = state.get(res.name)
            if previous is None:
                previous = next((state.pop(a) for a in getattr(res, "aliases", ()) if a in state), None)
            mocked = dict(mock_states.get((res.type, res.name)) or {})
            inputs = self._resolve(res.type, dict(res.inputs), mocked)
            if edit is not None:
                inputs = edit(res.type, inputs)
            region = str(inputs.get("region") or default_region)
            seen.add(res.name)
            self._seq += 1
            if previous is not None and previous.inputs == inputs:
                state[res.name] = replace(previous, seq=self._seq)
                continue
            if previous is not None and not replaces(res.type, previous.inputs, inputs):
                self.mirror.update(res.type, region, previous.id, previous.inputs, inputs)
                state[res.name] = Applied(res.type, inputs, previous.id, previous.mock_id, region, self._seq)
                continue
            if previous is not None and delete_before_replace(res.type, inputs):
                # what was made after it and leaves the program may depend on it: gone first
                for name in sorted((n for n, a in state.items() if n not in declared and a.seq > previous.seq),
                                   key=lambda n: -state[n].seq):
                    self._delete(state.pop(name))
                self._delete(previous)
            elif previous is not None:
                doomed.append(previous)
            state[res.name] = self._create(res.type, res.name, region, inputs, mocked)
        leaving = [state.pop(n) for n in [n for n in state if n not in seen]]
        for entry in sorted([*doomed, *leaving], key=lambda a: -a.seq):  # dependents first
            self._delete(entry)
        return state

    def forget(self, stack: str) -> None:
        self.state.pop(stack, None)

    def _create(self, token: str, name: str, region: str, inputs: dict[str, Any],
                mocked: Mapping[str, Any]) -> Applied:
        mock_id = str(mocked.get("id") or "")
        rid = str(inputs.get("bucket") or inputs.get("name") or mock_id or name) if token != HEALTH_CHECK else name
        real = self.mirror.create(token, region, rid, inputs)
        if real is not None and mock_id:
            self.real_ids[mock_id] = real
        return Applied(token, inputs, real or rid, mock_id, region, self._seq)

    def _delete(self, entry: Applied) -> None:
        self.mirror.delete(entry.type, entry.region, entry.id, entry.inputs)

    def _resolve(self, token: str, inputs: dict[str, Any], mocked: Mapping[str, Any]) -> dict[str, Any]:
        """Mock ids -> the ids AWS assigned; the record's zone -> the real zone; an ARC resource's
        ARN is the mock's (the ARC cluster takes what it is given: the program's outputs name it)."""
        resolved: dict[str, Any] = _replace_ids(inputs, self.real_ids)
        if token == RECORD:
            resolved["zoneId"] = self.zone_id.split("/")[-1]
            if resolved.get("setIdentifier") is None:
                resolved.pop("setIdentifier", None)
        if token.startswith(ARC_PREFIX) and mocked.get("arn"):
            resolved["arn"] = mocked["arn"]
        return resolved


def _replace_ids(value: Any, ids: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_replace_ids(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _replace_ids(v, ids) for k, v in value.items()}
    return value


def _dependency_order(resources: list[Any]) -> list[Any]:
    """Each resource after the ones it depends on (inputs and depends_on), else in program order."""
    names = {r.name for r in resources}
    done: set[str] = set()
    out: list[Any] = []
    pending = list(resources)
    while pending:
        ready = [r for r in pending if all(d in done or d not in names for d in getattr(r, "depends_on", ()))]
        if not ready:  # a cycle cannot come from a program; keep program order rather than loop
            ready = pending[:1]
        for r in ready:
            out.append(r)
            done.add(r.name)
        pending = [r for r in pending if r.name not in done]
    return out


@dataclass(frozen=True)
class Declared:
    """A resource as a program declares it (the shape of programs/mocks.py's evaluated resources),
    for the resources a caller declares from a stack's outputs or config instead of evaluating it."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    custom: bool = True
    read: bool = False
    aliases: tuple[str, ...] = ()


def region_resources(region: str, domain: str, outputs: Mapping[str, Any]) -> list[Declared]:
    """What the orchestrator's verifications read of a region stack (programs/region.py): the data
    lake bucket, versioned, and the custom domain's IoT domain configuration, from the stack's outputs."""
    bucket = str(outputs["dataLakeBucketName"])
    return [
        Declared(BUCKET, "lake", {"bucket": bucket, "region": region}),
        Declared(BUCKET_VERSIONING, "lake-versioning", {
            "bucket": bucket, "region": region, "versioningConfiguration": {"status": "Enabled"}}, ("lake",)),
        Declared(DOMAIN_CONFIGURATION, "domain", {
            "name": outputs["domainConfigurationName"], "domainName": domain, "serviceType": "DATA",
            "serverCertificateArns": [outputs["certificateArn"]], "region": region}),
    ]


def replication_resources(config: Mapping[str, str], ns: str = "iot-platform:") -> list[Declared]:
    """The replication stack's `aws.s3.BucketReplicationConfig` (programs/replication.py), from the
    stack's config: the primary's lake replicating to each secondary's, in the primary's region."""
    primary = json.loads(config[ns + "primary"])
    secondaries = json.loads(config[ns + "secondaries"])
    return [Declared(BUCKET_REPLICATION, "lake-replication", {
        "bucket": primary["bucketName"], "region": primary["region"],
        "role": "arn:aws:iam::123456789012:role/iot-replication",
        "rules": [{"id": f"to-{s['region']}", "priority": i + 1, "status": "Enabled", "filter": {"prefix": ""},
                   "deleteMarkerReplication": {"status": "Enabled"},
                   "destination": {"bucket": s["bucketArn"]}} for i, s in enumerate(secondaries)]})]
