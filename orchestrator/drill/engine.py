"""The local world's stack engine: the real programs, applied to the moto server.

`LocalEngine` implements the `Engine` protocol for `orchestrate drill --local`: `up` evaluates the
stack's program exactly as `orchestrate plan` does (Pulumi mocks, the same config the orchestrator
wrote) and then makes what the provider would make, in the local world's AWS (moto):
- region stacks: the data-lake bucket (versioned), the IoT domain configuration for the domain, and
  the MQTT canary's thing, policy and certificate (registered without a CA from a key made here: the
  drill's brokers trust registered certificates, and the drill's canary needs the private key,
  `canary_keys`) and its metric alarm (created as the program declares it, then set to
  INSUFFICIENT_DATA, the state CloudWatch gives a new alarm; moto says OK). The canary function and
  its schedule are not made: the drill runs the canary itself (`drill/cloudwatch.py`);
- the DNS stack: every `aws.route53.HealthCheck` (TCP, RECOVERY_CONTROL, CLOUDWATCH_METRIC, CALCULATED) and
  `aws.route53.Record` the program declares, with its TTL, set identifier, routing policy and health
  check; a record set is UPSERTed when it keeps its set identifier, CREATEd when new and DELETEd when
  the program no longer declares it (what terraform-provider-aws sends for `aws_route53_record`);
  every batch is first checked with the local world's Route 53 model (`change_record_sets`,
  `drill/route53_model.py`), so the drill refuses what Route 53 refuses (moto accepts any batch);
  with `failover_control: arc`, its routing controls and safety rules are registered with the local
  ARC cluster (`drill/arc.py`, standing in for ARC's control plane) and the stack's cluster
  endpoints are that cluster's. moto keeps no `RoutingControlArn` and no `AlarmIdentifier` on a
  health check, so the engine remembers which check watches which routing control (`control_checks`)
  and which alarm (`alarm_checks`) for the DNS server;
- the replication stack: the primary bucket's replication rules, and every DynamoDB table declared
  with replicas (the command outbox's global table) with its replicas, which the local world's moto
  replicates (`drill/global_tables.py`).
So the lifecycle (promote-secondary, failover, failback) runs its own code, verification included,
and the drill's DNS server answers from what the DNS program declared. Nothing here is Pulumi's
engine: no state file, no diff; a drill's world lives for one run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.aws import AwsContext, client
from orchestrator.engine.types import (
    LockInfo,
    Operation,
    OutputValue,
    ProgressFn,
    StackDrift,
    StackInfo,
    StackResult,
    StackSpec,
)
from orchestrator.engine.types import Outcome as O  # noqa: N817 - short in the results below

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.drill.arc import ArcCluster
    from orchestrator.drill.dns import AlarmRef
    from orchestrator.drill.pki import KeyPair

NS = "iot-platform:"
RECORD = "aws:route53/record:Record"
HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
ROUTING_CONTROL = "aws:route53recoverycontrol/routingControl:RoutingControl"
SAFETY_RULE = "aws:route53recoverycontrol/safetyRule:SafetyRule"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
IOT_THING = "aws:iot/thing:Thing"
IOT_POLICY = "aws:iot/policy:Policy"
DYNAMODB_TABLE = "aws:dynamodb/table:Table"


class LocalEngine:
    def __init__(self, ctx: AwsContext, zone_id: str, arc: ArcCluster | None = None, *,
                 time_scale: float = 1.0) -> None:
        from orchestrator.drill.route53_model import PROPAGATION_S, Propagation

        self.ctx = ctx
        self.zone_id = zone_id
        self.arc = arc  # the local ARC cluster (failover_control: arc), else None
        # Route 53's change propagation on the drill's time scale (PENDING until INSYNC): what the
        # engine's changes wait for, and what the drill's DNS server answers from (drill/dns.py)
        self.propagation = Propagation(PROPAGATION_S * time_scale)
        self.control_checks: dict[str, str] = {}  # real RECOVERY_CONTROL check id -> routing control ARN
        self.alarm_checks: dict[str, AlarmRef] = {}  # real CLOUDWATCH_METRIC check id -> its alarm
        self.canary_keys: dict[str, tuple[str, KeyPair]] = {}  # region -> (canary thing, its key pair)
        self._outputs: dict[str, dict[str, OutputValue]] = {}
        self._checks: dict[str, tuple[str, str]] = {}  # logical name -> (inputs digest, real id)
        self._lock = threading.Lock()
        self.applies: list[tuple[float, str]] = []  # (time, stack): when each up finished

    # -- the protocol ---------------------------------------------------------------------------
    def up(self, spec: StackSpec, on_progress: ProgressFn | None = None) -> StackResult:
        started = time.monotonic()
        from programs import mocks
        from programs.main import decode

        try:
            args = decode(lambda key: spec.config.get(NS + key))
            answered = mocks.PlatformMocks(default_region=mocks.home_region(args))
            evaluation = mocks.evaluate(args, stack=spec.name, mocks=answered)
            with self._lock:
                outputs = dict(evaluation.outputs)
                if spec.kind == "region":
                    self._region(spec, outputs)
                    self._canary(spec, evaluation.resources)
                elif spec.kind == "dns":
                    outputs = self._dns(spec, evaluation.resources, outputs, answered.states)
                else:
                    self._replication(spec)
                    self._global_tables(evaluation.resources)
                self._outputs[spec.name] = {k: OutputValue(v) for k, v in outputs.items()}
                self.applies.append((time.time(), spec.name))
        except Exception as exc:  # the engine reports failures as results, as PulumiEngine does
            return StackResult(spec.name, Operation.UP, O.FAILED, seconds=time.monotonic() - started,
                               message=f"{type(exc).__name__}: {exc}")
        return StackResult(spec.name, Operation.UP, O.SUCCEEDED, counts={"update": 1},
                           outputs=self._outputs[spec.name], seconds=time.monotonic() - started)

    def preview(self, spec: StackSpec) -> Any:
        raise NotImplementedError("the local drill engine does not preview")

    def destroy(self, spec: StackSpec, *, include_protected: bool = False,
                on_progress: ProgressFn | None = None) -> StackResult:
        self._outputs.pop(spec.name, None)
        return StackResult(spec.name, Operation.DESTROY, O.SUCCEEDED)

    def refresh(self, spec: StackSpec, *, clear_pending_creates: bool = False) -> StackResult:
        return StackResult(spec.name, Operation.REFRESH, O.SUCCEEDED, outputs=self._outputs.get(spec.name, {}))

    def outputs(self, stack: str) -> Mapping[str, OutputValue] | None:
        return self._outputs.get(stack)

    def info(self, stack: str) -> StackInfo:
        return StackInfo(stack, deployed=stack in self._outputs, last_result="succeeded" if stack in self._outputs
                         else None)

    def cancel(self, stack: str) -> None:
        return None

    def drift(self, stack: str) -> StackDrift:
        """The drill's world changes only through this engine: its state never drifts from it."""
        return StackDrift(stack, deployed=stack in self._outputs)

    def lock(self, stack: str) -> LockInfo | None:
        return None  # one drill, one process: nothing else can hold a lock

    def change_secrets_provider(self, stack: str, provider: str) -> None:
        return None  # the drill's stacks hold no secrets

    def export(self, stack: str) -> dict[str, Any]:
        return {"outputs": {k: v.value for k, v in self._outputs.get(stack, {}).items()}}

    def import_(self, stack: str, state: dict[str, Any]) -> None:
        self._outputs[stack] = {k: OutputValue(v) for k, v in state.get("outputs", {}).items()}

    # -- what the provider would make ------------------------------------------------------------------
    def _region(self, spec: StackSpec, outputs: dict[str, Any]) -> None:
        region = spec.region
        s3 = client(self.ctx, "s3", region)
        bucket = outputs["dataLakeBucketName"]
        if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        iot = client(self.ctx, "iot", region)
        name = outputs["domainConfigurationName"]
        known = {d["domainConfigurationName"] for d in iot.list_domain_configurations().get("domainConfigurations", [])}
        if name not in known:
            iot.create_domain_configuration(domainConfigurationName=name, domainName=spec.config[NS + "domain"],
                                            serverCertificateArns=[outputs["certificateArn"]], serviceType="DATA")

    def _canary(self, spec: StackSpec, resources: Any) -> None:
        """The region's MQTT canary thing, policy, certificate and alarm (programs/canary.py)."""
        region = spec.region
        by_type: dict[str, list[dict[str, Any]]] = {}
        for res in resources:
            by_type.setdefault(res.type, []).append(dict(res.inputs))
        alarms = by_type.get(METRIC_ALARM, [])
        if not alarms:
            return
        iot = client(self.ctx, "iot", region)
        thing = next(t["name"] for t in by_type.get(IOT_THING, []) if "-canary-" in t["name"])
        policy = next(p for p in by_type.get(IOT_POLICY, []) if p["name"] == thing)
        if region not in self.canary_keys:
            from orchestrator.drill import pki

            keys = pki.device_certificate(thing)
            iot.create_thing(thingName=thing)
            iot.create_policy(policyName=policy["name"], policyDocument=policy["policy"])
            cert = iot.register_certificate_without_ca(certificatePem=keys.cert_pem, status="ACTIVE")
            iot.attach_policy(policyName=policy["name"], target=cert["certificateArn"])
            iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
            self.canary_keys[region] = (thing, keys)
        cloudwatch = client(self.ctx, "cloudwatch", region)
        for a in alarms:
            known = cloudwatch.describe_alarms(AlarmNames=[a["name"]])["MetricAlarms"]
            cloudwatch.put_metric_alarm(
                AlarmName=a["name"], AlarmDescription=a.get("alarmDescription", ""), Namespace=a["namespace"],
                MetricName=a["metricName"], Dimensions=[{"Name": k, "Value": v} for k, v in
                                                        sorted(dict(a.get("dimensions") or {}).items())],
                Statistic=a["statistic"], Period=int(a["period"]), EvaluationPeriods=int(a["evaluationPeriods"]),
                DatapointsToAlarm=int(a.get("datapointsToAlarm") or a["evaluationPeriods"]),
                Threshold=float(a["threshold"]), ComparisonOperator=a["comparisonOperator"],
                TreatMissingData=a.get("treatMissingData") or "missing")
            # CloudWatch starts a new alarm in INSUFFICIENT_DATA and leaves an updated alarm's state
            # unchanged (PutMetricAlarm); moto puts either in OK
            state = known[0]["StateValue"] if known else "INSUFFICIENT_DATA"
            cloudwatch.set_alarm_state(AlarmName=a["name"], StateValue=state,
                                       StateReason="updated: state kept" if known else "new alarm: no data yet")

    def _replication(self, spec: StackSpec) -> None:
        apply_replication_rules(self.ctx, spec)

    def _global_tables(self, resources: Any) -> None:
        """Each `aws.dynamodb.Table` the program declares with replicas (the command outbox), as
        terraform-provider-aws makes it: CreateTable in the table's region (key, attributes, on-demand,
        the stream), then one UpdateTable `ReplicaUpdates` Create per replica region it lacks, then
        UpdateTimeToLive. The local world's moto makes the replicas and replicates (global_tables.py)."""
        for res in resources:
            inputs = dict(res.inputs)
            if res.type != DYNAMODB_TABLE or not inputs.get("replicas"):
                continue
            ddb = client(self.ctx, "dynamodb", str(inputs["region"]))
            name = str(inputs["name"])
            keys = [(inputs["hashKey"], "HASH"), *([(inputs["rangeKey"], "RANGE")] if inputs.get("rangeKey") else [])]
            if name not in ddb.list_tables().get("TableNames", []):
                extra: dict[str, Any] = {}
                if inputs.get("streamEnabled"):
                    view = inputs.get("streamViewType") or "NEW_AND_OLD_IMAGES"
                    extra["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
                ddb.create_table(TableName=name, BillingMode=str(inputs.get("billingMode") or "PAY_PER_REQUEST"),
                                 AttributeDefinitions=[{"AttributeName": a["name"], "AttributeType": a["type"]}
                                                       for a in inputs.get("attributes") or []],
                                 KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys], **extra)
            have = {r["RegionName"] for r in ddb.describe_table(TableName=name)["Table"].get("Replicas", [])}
            for replica in inputs["replicas"]:
                if replica["regionName"] not in have:
                    ddb.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": replica["regionName"]}}])
            ttl = inputs.get("ttl") or {}
            if ttl.get("enabled"):
                ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                    "Enabled": True, "AttributeName": ttl["attributeName"]})

    def _dns(self, spec: StackSpec, resources: Any, outputs: dict[str, Any],
             states: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[str, Any]:
        r53 = PropagatingRoute53(client(self.ctx, "route53", "us-east-1"), self.propagation)
        if self.arc is not None:
            self._arc(resources, states, outputs)
        real_ids: dict[str, str] = {}  # mock id -> real id
        checks = [res for res in resources if res.type == HEALTH_CHECK]
        # children first: a CALCULATED check names the real ids of the checks it combines
        for res in sorted(checks, key=lambda r: dict(r.inputs)["type"] == "CALCULATED"):
            inputs = dict(res.inputs)
            digest = json.dumps({k: v for k, v in inputs.items() if k != "tags"}, sort_keys=True)
            known = self._checks.get(res.name)
            if known is None or known[0] != digest:
                created = r53.create_health_check(CallerReference=f"{res.name}-{time.time_ns()}",
                                                  HealthCheckConfig=_check_config(inputs, real_ids))
                known = (digest, created["HealthCheck"]["Id"])
                self._checks[res.name] = known
                if inputs["type"] == "RECOVERY_CONTROL":
                    self.control_checks[known[1]] = str(inputs["routingControlArn"])
                if inputs["type"] == "CLOUDWATCH_METRIC":
                    from orchestrator.drill.dns import AlarmRef

                    self.alarm_checks[known[1]] = AlarmRef(str(inputs["cloudwatchAlarmRegion"]),
                                                           str(inputs["cloudwatchAlarmName"]),
                                                           str(inputs.get("insufficientDataHealthStatus")
                                                               or "LastKnownStatus"))
            real_ids[str(states[(HEALTH_CHECK, res.name)]["id"])] = known[1]
        mock_ids = dict(outputs.get("healthCheckIds") or {})
        desired: list[dict[str, Any]] = []
        for res in resources:
            if res.type != RECORD:
                continue
            i = dict(res.inputs)
            rr: dict[str, Any] = {"Name": i["name"].rstrip(".") + ".", "Type": i["type"], "TTL": int(i["ttl"]),
                                  "ResourceRecords": [{"Value": v} for v in i["records"]]}
            if i.get("setIdentifier"):
                rr["SetIdentifier"] = i["setIdentifier"]
                if i.get("healthCheckId"):
                    rr["HealthCheckId"] = real_ids.get(i["healthCheckId"], i["healthCheckId"])
                if i.get("failoverRoutingPolicies"):
                    rr["Failover"] = i["failoverRoutingPolicies"][0]["type"]
                if i.get("latencyRoutingPolicies"):
                    rr["Region"] = i["latencyRoutingPolicies"][0]["region"]
            desired.append(rr)
        names = {(rr["Name"], rr["Type"]) for rr in desired}
        existing = [rr for rr in r53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
                    if (rr["Name"], rr["Type"]) in names]
        keys = {(rr["Name"], rr["Type"], rr.get("SetIdentifier")) for rr in desired}
        leaving = [rr for rr in existing if (rr["Name"], rr["Type"], rr.get("SetIdentifier")) not in keys]
        if leaving:  # a simple record becoming routed (or the reverse) goes first, in its own batch
            wait_insync(r53, change_record_sets(r53, self.zone_id,
                                                [{"Action": "DELETE", "ResourceRecordSet": rr} for rr in leaving]))
        wait_insync(r53, change_record_sets(r53, self.zone_id,
                                            [{"Action": "UPSERT", "ResourceRecordSet": rr} for rr in desired]))
        outputs["healthCheckIds"] = {region: real_ids.get(mid, mid) for region, mid in mock_ids.items()}
        return outputs

    def _arc(self, resources: Any, states: Mapping[tuple[str, str], Mapping[str, Any]],
             outputs: dict[str, Any]) -> None:
        """ARC's control plane: the program's routing controls and safety rules, in the local cluster."""
        from orchestrator.drill.arc import DEFAULT_WAIT_PERIOD_MS

        assert self.arc is not None
        for res in resources:
            inputs = dict(res.inputs)
            if res.type == ROUTING_CONTROL:
                self.arc.add_control(str(states[(res.type, res.name)]["arn"]), str(inputs["name"]),
                                     str(inputs.get("controlPanelArn") or ""))
            elif res.type == SAFETY_RULE and inputs.get("assertedControls"):  # an assertion rule
                config = dict(inputs.get("ruleConfig") or {})
                self.arc.add_safety_rule(str(states[(res.type, res.name)]["arn"]), str(inputs["name"]),
                                         list(inputs["assertedControls"]), int(config.get("threshold", 1)),
                                         bool(config.get("inverted", False)), str(config.get("type", "ATLEAST")),
                                         int(inputs.get("waitPeriodMs", DEFAULT_WAIT_PERIOD_MS)))
        if outputs.get("routingControls"):
            outputs["clusterEndpoints"] = self.arc.endpoint_list


def apply_replication_rules(ctx: AwsContext, spec: StackSpec) -> None:
    """The replication stack's S3 rules, as the provider puts them: the primary's lake to each secondary's."""
    primary = json.loads(spec.config[NS + "primary"])
    secondaries = json.loads(spec.config[NS + "secondaries"])
    s3 = client(ctx, "s3", primary["region"])
    s3.put_bucket_replication(Bucket=primary["bucketName"], ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/iot-replication",
        "Rules": [{"ID": f"to-{s['region']}", "Priority": i + 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Enabled"},
                   "Destination": {"Bucket": s["bucketArn"]}} for i, s in enumerate(secondaries)]})


def _check_config(inputs: Mapping[str, Any], real_ids: Mapping[str, str]) -> dict[str, Any]:
    """Route 53's HealthCheckConfig for the program's `aws.route53.HealthCheck` inputs."""
    kind = inputs["type"]
    if kind == "RECOVERY_CONTROL":
        return {"Type": kind, "RoutingControlArn": inputs["routingControlArn"]}
    if kind == "CLOUDWATCH_METRIC":  # the region's MQTT canary alarm (programs/canary.py)
        return {"Type": kind, "AlarmIdentifier": {"Region": inputs["cloudwatchAlarmRegion"],
                                                  "Name": inputs["cloudwatchAlarmName"]},
                "InsufficientDataHealthStatus": inputs.get("insufficientDataHealthStatus") or "LastKnownStatus"}
    if kind == "CALCULATED":
        return {"Type": kind, "HealthThreshold": int(inputs["childHealthThreshold"]),
                "ChildHealthChecks": [real_ids[c] for c in inputs["childHealthchecks"]],
                **({"Inverted": True} if inputs.get("invertHealthcheck") else {})}
    return {"Type": kind, "FullyQualifiedDomainName": inputs["fqdn"], "Port": int(inputs["port"]),
            "RequestInterval": int(inputs["requestInterval"]), "FailureThreshold": int(inputs["failureThreshold"])}


def change_record_sets(r53: Any, zone_id: str, changes: list[dict[str, Any]]) -> Any:
    """ChangeResourceRecordSets as Route 53 answers it: moto accepts any batch, so the batch is first
    checked with the local world's Route 53 model (`route53_model.apply_batch`: all-or-nothing, each
    change against what the earlier ones leave, the zone's name and the account's health checks) and
    refused as Route 53 refuses it (`route53_model.InvalidChangeBatch`, nothing sent to moto). The
    ChangeInfo of the accepted batch."""
    from orchestrator.drill.route53_model import apply_batch

    zone = r53.get_hosted_zone(Id=zone_id)["HostedZone"]["Name"]
    current = [rr for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
               for rr in page["ResourceRecordSets"]]
    checks = {hc["Id"] for page in r53.get_paginator("list_health_checks").paginate() for hc in page["HealthChecks"]}
    apply_batch(current, changes, zone=zone, health_checks=checks)
    answer = r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return answer["ChangeInfo"]


class PropagatingRoute53:
    """The engine's Route 53 client: moto, with Route 53's change propagation (moto answers every
    change INSYNC at once). ChangeResourceRecordSets answers PENDING and GetChange turns INSYNC only
    after the propagation time (`route53_model.Propagation`: Route 53 Developer Guide, "Editing
    records", "within 60 seconds"; API reference, GetChange); a batch touching a record set whose
    change is still PENDING is refused with PriorRequestNotComplete. Every other call goes to moto."""

    def __init__(self, r53: Any, propagation: Any) -> None:
        self._r53 = r53
        self.propagation = propagation
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r53, name)

    def change_resource_record_sets(self, *, HostedZoneId: str, ChangeBatch: Mapping[str, Any]) -> Any:  # noqa: N803
        from orchestrator.drill.route53_model import key

        keys = {key(c["ResourceRecordSet"]) for c in ChangeBatch["Changes"]}
        with self._lock:  # Route 53 serialises the batches of one zone
            self.propagation.refuse_prior(HostedZoneId, keys)
            before = [rr for page in self._r53.get_paginator("list_resource_record_sets").paginate(
                HostedZoneId=HostedZoneId) for rr in page["ResourceRecordSets"]]
            token = self.propagation.submit(HostedZoneId, before, keys)  # served as before from now on
            try:
                answer = self._r53.change_resource_record_sets(HostedZoneId=HostedZoneId, ChangeBatch=ChangeBatch)
            except Exception:
                self.propagation.cancel(token)
                raise
            info = self.propagation.bind(token, answer["ChangeInfo"])
        return {**answer, "ChangeInfo": info}

    def get_change(self, *, Id: str) -> Any:  # noqa: N803 - boto3's names
        if not self.propagation.knows(Id):
            return self._r53.get_change(Id=Id)
        return {"ChangeInfo": {"Id": Id, "Status": self.propagation.status(Id)}}


def wait_insync(r53: Any, info: Mapping[str, Any], *, poll_s: float = 0.1, timeout_s: float = 300.0,
                sleep: Callable[[float], None] | None = None, clock: Callable[[], float] | None = None) -> None:
    """Wait until Route 53 reports a change INSYNC, as terraform-provider-aws does after every
    ChangeResourceRecordSets: an accepted change is PENDING until it has reached Route 53's
    authoritative servers (GetChange; docs/field-notes-route53-arc.md)."""
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    deadline = clock() + timeout_s
    while info.get("Status") != "INSYNC":
        if clock() > deadline:
            raise TimeoutError(f"Route 53 change {info.get('Id')} still {info.get('Status')} after {timeout_s:g} s")
        info = r53.get_change(Id=info["Id"])["ChangeInfo"]
        if info.get("Status") != "INSYNC":
            sleep(poll_s)
