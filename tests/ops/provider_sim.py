"""What the real pulumi-aws provider would leave in AWS after an `up`, simulated into moto.

The in-memory engine stands in for Pulumi in tier 2 and 3; the lifecycle's verification steps read
AWS itself (Route 53 records, S3 replication rules, IoT domain configurations). This hook, run by
the engine double after each successful `up`, creates those few resources in the moto server from
the stack's config, the way the provider would from the program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.aws import AwsContext, client
from orchestrator.drill.arc import ArcCluster
from orchestrator.drill.engine import apply_replication_rules
from orchestrator.engine.types import StackSpec
from tests.doubles import region_outputs

NS = "iot-platform:"
RECORD = "aws:route53/record:Record"
CHECK = "aws:route53/healthCheck:HealthCheck"


class _Overrides(dict):  # type: ignore[type-arg]
    """The engine's output overrides, with the simulated DNS exports layered under them."""

    def __init__(self, base: dict[str, Any], dns: dict[str, dict[str, Any]]) -> None:
        super().__init__(base)
        self.dns = dns

    def get(self, key: Any, default: Any = None) -> Any:
        return {**self.dns.get(key, {}), **super().get(key, {})} or default


def _apply_order(resource: Any) -> tuple[int, str]:
    rank = {"Cluster": 0, "ControlPanel": 1, "RoutingControl": 2, "SafetyRule": 3}.get(resource.type.rsplit(":", 1)[-1])
    if rank is None and resource.type == CHECK:
        rank = {"TCP": 4, "RECOVERY_CONTROL": 5, "CALCULATED": 6}.get(resource.inputs.get("type"), 4)
    if rank is None:  # records that wait for another record (the first one) come after it
        rank = 8 if any("-record-" in d for d in resource.depends_on) else 7
    return rank, resource.name


def _delete_order(rtype: str) -> int:
    return 0 if rtype == RECORD else 1 if rtype == CHECK else 2


def _mock_check_id(name: str) -> str:
    from programs.mocks import _digest

    return f"{_digest('hc', name, length=8)}-{_digest('hc2', name, length=4)}-mock"


def _arc_arn(rtype: str, name: str, inputs: dict[str, Any]) -> str:
    from programs.mocks import ACCOUNT_ID, _digest

    ident = _digest(rtype, name, length=12)
    kind = rtype.rsplit(":", 1)[-1]
    panel = str(inputs.get("controlPanelArn") or "controlpanel/unknown").split(":")[-1]
    resource = {"Cluster": f"cluster/{ident}", "ControlPanel": f"controlpanel/{ident}",
                "RoutingControl": f"{panel}/routingcontrol/{ident}"}.get(kind, f"{panel}/safetyrule/{ident}")
    return f"arn:aws:route53-recovery-control::{ACCOUNT_ID}:{resource}"


def _rrset(inputs: dict[str, Any]) -> dict[str, Any]:
    rr: dict[str, Any] = {"Name": str(inputs["name"]).rstrip(".") + ".", "Type": inputs["type"],
                          "TTL": int(inputs.get("ttl") or 300),
                          "ResourceRecords": [{"Value": v} for v in inputs.get("records") or []]}
    if inputs.get("setIdentifier"):
        rr["SetIdentifier"] = inputs["setIdentifier"]
    if inputs.get("healthCheckId"):
        rr["HealthCheckId"] = inputs["healthCheckId"]
    for policy in inputs.get("failoverRoutingPolicies") or []:
        rr["Failover"] = policy["type"]
    for policy in inputs.get("latencyRoutingPolicies") or []:
        rr["Region"] = policy["region"]
    return rr


def _check_config(inputs: dict[str, Any]) -> dict[str, Any]:
    kind = inputs["type"]
    if kind == "CALCULATED":
        return {"Type": kind, "ChildHealthChecks": list(inputs["childHealthchecks"]),
                "HealthThreshold": int(inputs["childHealthThreshold"])}
    if kind == "RECOVERY_CONTROL":
        return {"Type": kind, "RoutingControlArn": inputs["routingControlArn"]}
    if kind == "CLOUDWATCH_METRIC":  # the region's MQTT canary alarm (programs/canary.py)
        return {"Type": kind, "AlarmIdentifier": {"Region": inputs["cloudwatchAlarmRegion"],
                                                  "Name": inputs["cloudwatchAlarmName"]},
                "InsufficientDataHealthStatus": inputs.get("insufficientDataHealthStatus") or "LastKnownStatus"}
    return {"Type": kind, "FullyQualifiedDomainName": inputs["fqdn"], "Port": int(inputs.get("port") or 443),
            "RequestInterval": int(inputs.get("requestInterval") or 30),
            "FailureThreshold": int(inputs.get("failureThreshold") or 3)}


class ProviderSimulation:
    def __init__(self, ctx: AwsContext, zone: str = "example.com", arc: ArcCluster | None = None) -> None:
        self.ctx = ctx
        self.arc = arc
        self.r53 = client(ctx, "route53", "us-east-1")
        self.zone_id = self.r53.create_hosted_zone(Name=zone, CallerReference="sim")["HostedZone"]["Id"]
        self.corrupt_dns_applies = 0  # the next N DNS applies write wrong records (a broken apply)
        self.applied: dict[str, dict[str, dict[str, Any]]] = {}  # stack -> logical name -> what exists
        self.ids: dict[str, str] = {}  # mock health-check id -> moto's
        self.doomed: list[dict[str, Any]] = []  # replaced resources, deleted at the end of the update
        self.batches: list[list[tuple[str, dict[str, Any]]]] = []
        # what the DNS stack exports, merged into the in-memory engine's outputs (see `attach`)
        self.engine_outputs: dict[str, dict[str, Any]] = {}

    def attach(self, engine: Any) -> None:
        """Run after each `up` of `engine`, and let the DNS stack export what the program exports."""
        engine.after_up.append(self)
        engine.output_overrides = _Overrides(engine.output_overrides, self.engine_outputs)

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
        """Apply the DNS program as Pulumi and pulumi-aws would: the program (under mocks) says what
        exists; creates and updates run in dependency order, deletes last; each record change is the
        batch terraform-provider-aws sends (create = CREATE; update = UPSERT when type and set
        identifier are unchanged, else [DELETE old, CREATE new]; delete = DELETE of the listed set)."""
        from programs.contract import DnsArgs
        from programs.mocks import evaluate

        args = DnsArgs.from_config(lambda key: spec.config.get(NS + key))
        evaluation = evaluate(args, stack=spec.name)
        corrupt = self.corrupt_dns_applies > 0
        self.corrupt_dns_applies = max(0, self.corrupt_dns_applies - 1)
        state = self.applied.setdefault(spec.name, {})
        wanted = [r for r in evaluation.resources if r.custom and not r.read]
        seen: set[str] = set()
        for resource in sorted(wanted, key=_apply_order):
            previous = state.get(resource.name)
            if previous is None:
                previous = next((state.pop(a) for a in resource.aliases if a in state), None)
            inputs = self._resolve(dict(resource.inputs), corrupt)
            if resource.type == RECORD and inputs.get("setIdentifier") is None:
                inputs.pop("setIdentifier", None)
            state[resource.name] = self._converge(resource.type, resource.name, previous, inputs)
            seen.add(resource.name)
        for name in sorted((n for n in state if n not in seen), key=lambda n: _delete_order(state[n]["type"])):
            self._delete(state.pop(name))
        outputs = dict(evaluation.outputs)
        outputs["healthCheckIds"] = {r: self.ids.get(i, i) for r, i in (outputs.get("healthCheckIds") or {}).items()}
        if self.arc is not None and outputs.get("routingControls"):
            outputs["clusterEndpoints"] = self.arc.endpoint_list
        self.engine_outputs[spec.name] = outputs

    def _resolve(self, inputs: dict[str, Any], corrupt: bool) -> dict[str, Any]:
        """Mock ids -> the ids moto assigned; the mock zone -> the real zone."""
        if "healthCheckId" in inputs:
            inputs["healthCheckId"] = self.ids.get(inputs["healthCheckId"], inputs["healthCheckId"])
        if "childHealthchecks" in inputs:
            inputs["childHealthchecks"] = [self.ids.get(c, c) for c in inputs["childHealthchecks"]]
        if "zoneId" in inputs:
            inputs["zoneId"] = self.zone_id.split("/")[-1]
        if corrupt and "records" in inputs:
            inputs["records"] = ["wrong.example.net"]
        return inputs

    def _converge(self, rtype: str, name: str, previous: dict[str, Any] | None,
                  inputs: dict[str, Any]) -> dict[str, Any]:
        if rtype == RECORD:
            if previous is None:
                self._batch([("CREATE", _rrset(inputs))])
            elif previous["inputs"] != inputs:
                old, new = _rrset(previous["inputs"]), _rrset(inputs)
                if (old["Type"], old.get("SetIdentifier")) == (new["Type"], new.get("SetIdentifier")):
                    self._batch([("UPSERT", new)])
                else:
                    self._batch([("DELETE", self._listed(old) or old), ("CREATE", new)])
            return {"type": rtype, "inputs": inputs}
        if rtype == CHECK:
            mock_id = _mock_check_id(name)
            if previous is not None and previous["inputs"].get("type") == inputs.get("type") and \
                    previous["inputs"].get("routingControlArn") == inputs.get("routingControlArn"):
                real = previous["id"]
                if previous["inputs"] != inputs and inputs.get("type") == "CALCULATED":
                    self.r53.update_health_check(HealthCheckId=real, ChildHealthChecks=inputs["childHealthchecks"],
                                                 HealthThreshold=inputs["childHealthThreshold"])
                elif previous["inputs"] != inputs and inputs.get("type") == "TCP":
                    self.r53.update_health_check(HealthCheckId=real, FullyQualifiedDomainName=inputs["fqdn"])
            else:
                if previous is not None:  # replaced: create the new one, the old goes last
                    self.doomed.append(previous)
                real = self.r53.create_health_check(CallerReference=f"{name}-{len(self.ids)}-{id(inputs)}",
                                                    HealthCheckConfig=_check_config(inputs))["HealthCheck"]["Id"]
            self.ids[mock_id] = real
            return {"type": rtype, "inputs": inputs, "id": real}
        if rtype.startswith("aws:route53recoverycontrol/") and self.arc is not None:
            arn = _arc_arn(rtype, name, inputs)
            if rtype.endswith(":RoutingControl"):
                self.arc.add_control(arn, inputs["name"], inputs["controlPanelArn"])
            elif rtype.endswith(":SafetyRule"):
                rule = inputs["ruleConfig"]
                self.arc.add_safety_rule(arn, inputs["name"], list(inputs["assertedControls"]),
                                         int(rule["threshold"]), bool(rule["inverted"]), rule["type"],
                                         int(inputs["waitPeriodMs"]))
            return {"type": rtype, "inputs": inputs, "arn": arn}
        return {"type": rtype, "inputs": inputs}

    def _delete(self, entry: dict[str, Any]) -> None:
        for old in [*self.doomed, entry]:
            if old["type"] == RECORD:
                listed = self._listed(_rrset(old["inputs"]))
                if listed is not None:
                    self._batch([("DELETE", listed)])
            elif old["type"] == CHECK:
                self.r53.delete_health_check(HealthCheckId=old["id"])
            elif "arn" in old and self.arc is not None:
                self.arc.delete(old["arn"])
        self.doomed.clear()

    def _batch(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        from orchestrator.drill.engine import wait_insync

        self.batches.append(changes)
        # as terraform-provider-aws: the change, then GetChange until INSYNC
        wait_insync(self.r53, self.r53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={
            "Changes": [{"Action": a, "ResourceRecordSet": rr} for a, rr in changes]})["ChangeInfo"], poll_s=0.05)

    def _listed(self, want: dict[str, Any]) -> dict[str, Any] | None:
        for rr in self.r53.list_resource_record_sets(HostedZoneId=self.zone_id, StartRecordName=want["Name"],
                                                     StartRecordType=want["Type"])["ResourceRecordSets"]:
            if rr["Name"] == want["Name"] and rr["Type"] == want["Type"] and \
                    rr.get("SetIdentifier") == want.get("SetIdentifier"):
                return rr
        return None

    def _replication(self, spec: StackSpec) -> None:
        apply_replication_rules(self.ctx, spec)  # the same rules the drill's engine puts

    def records(self, domain: str = "iot.example.com") -> list[dict[str, Any]]:
        name = domain + "."
        return [rr for rr in self.r53.list_resource_record_sets(
            HostedZoneId=self.zone_id, StartRecordName=name, StartRecordType="CNAME")["ResourceRecordSets"]
            if rr["Name"] == name and rr["Type"] == "CNAME"]
