"""The local world's stack engine: the real programs, applied to the moto server.

`LocalEngine` implements the `Engine` protocol for `orchestrate drill --local`: `up` evaluates the
stack's program exactly as `orchestrate plan` does (Pulumi mocks, the same config the orchestrator
wrote) and then makes what the provider would make, in the local world's AWS (moto), through the one
resource -> AWS-call mirror (`orchestrator/drill/world/mirror.py`: `Mirror` for the calls, `StackApply`
for create / update / replace / delete in Pulumi's order, with what it made kept per stack):
- region stacks: the data-lake bucket (versioned) and the IoT domain configuration for the domain
  (from the stack's outputs), the MQTT canary's metric alarm (as the program declares it; a new
  alarm starts INSUFFICIENT_DATA, as in CloudWatch), and the canary's thing, policy and certificate
  (registered without a CA from a key made here: the drill's brokers trust registered certificates,
  and the drill's canary needs the private key, `canary_keys`). The canary function and its
  schedule are not made: the drill runs the canary itself (`drill/world/cloudwatch.py`);
- the DNS stack: every `aws.route53.HealthCheck` and `aws.route53.Record` the program declares, as
  terraform-provider-aws sends them (each batch checked with the Route 53 model first, so the drill
  refuses what Route 53 refuses); with `failover_control: arc`, its routing controls and safety
  rules (with their wait period) are registered with the local ARC cluster (`drill/world/arc.py`,
  standing in for ARC's control plane) and the stack's cluster endpoints are that cluster's. moto
  keeps no `RoutingControlArn` and no `AlarmIdentifier` on a health check, so the engine remembers
  which check watches which routing control (`control_checks`) and which alarm (`alarm_checks`)
  for the DNS server;
- the replication stack: the primary bucket's replication rules, and every DynamoDB table the
  program declares, through the mirror like everything else: a table declared with replicas (the
  command outbox's global table) gets them as terraform-provider-aws sends them (UpdateTable
  `ReplicaUpdates`), and the local world's moto replicates (`drill/world/global_tables.py`).
Route 53 calls go through `PropagatingRoute53`: each change is PENDING for Route 53's propagation
time on the drill's time scale before GetChange answers INSYNC (moto answers INSYNC at once), and
every request is under Route 53's request rate on the same scale (`route53_model.RequestRate`).
That rate is the account's: `share_route53_rate` puts the product's own Route 53 clients for the
drill's endpoint under the same buckets (the drill does it once the engine is made).
So the lifecycle (promote-secondary, failover, failback) runs its own code, verification included,
and the drill's DNS server answers from what the DNS program declared. Nothing here is Pulumi's
engine beyond that: no state file, no preview; a drill's world lives for one run.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.aws import AwsContext, client, on_clients_for
from orchestrator.drill.world.mirror import (  # noqa: F401 - RECORD, change_record_sets: the engine's names for tests
    DNS_TYPES,
    HEALTH_CHECK,
    METRIC_ALARM,
    RECORD,
    TABLE,
    Mirror,
    StackApply,
    change_record_sets,
    region_resources,
    replication_resources,
)
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
    from orchestrator.drill.world.arc import ArcCluster
    from orchestrator.drill.world.dns import AlarmRef
    from orchestrator.drill.world.pki import KeyPair

NS = "iot-platform:"
IOT_THING = "aws:iot/thing:Thing"
IOT_POLICY = "aws:iot/policy:Policy"


class LocalEngine:
    def __init__(self, ctx: AwsContext, zone_id: str, arc: ArcCluster | None = None, *,
                 time_scale: float = 1.0) -> None:
        from orchestrator.drill.world.route53_model import PROPAGATION_S, Propagation, RequestRate

        self.ctx = ctx
        self.zone_id = zone_id
        self.arc = arc  # the local ARC cluster (failover_control: arc), else None
        # Route 53's change propagation on the drill's time scale (PENDING until INSYNC): what the
        # engine's changes wait for, and what the drill's DNS server answers from (drill/world/dns.py)
        self.propagation = Propagation(PROPAGATION_S * time_scale)
        # Route 53's request rate (10 per second per account and per operation, 50 at once) on the
        # drill's time scale: every Route 53 request the engine sends takes a token
        self.route53_rate = RequestRate(time_scale)
        self.control_checks: dict[str, str] = {}  # real RECOVERY_CONTROL check id -> routing control ARN
        self.alarm_checks: dict[str, AlarmRef] = {}  # real CLOUDWATCH_METRIC check id -> its alarm
        self.canary_keys: dict[str, tuple[str, KeyPair]] = {}  # region -> (canary thing, its key pair)
        self._outputs: dict[str, dict[str, OutputValue]] = {}
        # the one resource -> AWS-call mirror, and what it made per stack (orchestrator/drill/world/mirror.py)
        # one Route 53 client with the propagation above (it serialises a zone's batches)
        r53 = PropagatingRoute53(client(ctx, "route53", "us-east-1"), self.propagation, self.route53_rate)
        self.mirror = Mirror(lambda service, region: r53 if service == "route53" else client(ctx, service, region),
                             arc=arc, time_scale=time_scale)
        self.world = StackApply(self.mirror, zone_id=zone_id)
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
                    self._replication(spec, evaluation.resources)
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

    # -- what the provider would make (orchestrator/drill/world/mirror.py) ---------------------------------
    def _region(self, spec: StackSpec, outputs: dict[str, Any]) -> None:
        """The lake bucket (versioned) and the domain configuration, from the stack's outputs;
        created, updated or replaced as pulumi-aws would."""
        self.world.apply(spec.name, region_resources(spec.region, spec.config[NS + "domain"], outputs), {},
                         default_region=spec.region)

    def _canary(self, spec: StackSpec, resources: Any) -> None:
        """The region's MQTT canary (programs/canary.py): its thing, policy and certificate,
        registered from a key made here (the drill's canary needs the private key), and its metric
        alarms as the program declares them, through the mirror (a new alarm starts INSUFFICIENT_DATA)."""
        region = spec.region
        by_type: dict[str, list[dict[str, Any]]] = {}
        for res in resources:
            by_type.setdefault(res.type, []).append(dict(res.inputs))
        alarms = [res for res in resources if res.type == METRIC_ALARM]
        if alarms and region not in self.canary_keys:
            from orchestrator.drill.world import pki

            iot = client(self.ctx, "iot", region)
            thing = next(t["name"] for t in by_type.get(IOT_THING, []) if "-canary-" in t["name"])
            policy = next(p for p in by_type.get(IOT_POLICY, []) if p["name"] == thing)
            keys = pki.device_certificate(thing)
            iot.create_thing(thingName=thing)
            iot.create_policy(policyName=policy["name"], policyDocument=policy["policy"])
            cert = iot.register_certificate_without_ca(certificatePem=keys.cert_pem, status="ACTIVE")
            iot.attach_policy(policyName=policy["name"], target=cert["certificateArn"])
            iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
            self.canary_keys[region] = (thing, keys)
        self.world.apply(f"canary-{region}", alarms, {}, default_region=region)

    def _replication(self, spec: StackSpec, resources: Any) -> None:
        """The primary bucket's replication rules (from the stack's config) and every DynamoDB table
        the program declares (the command outbox's and the registry events' global tables with their
        replicas, the per-region tables), created, updated or deleted through the mirror as
        terraform-provider-aws makes them."""
        tables = [res for res in resources if res.type == TABLE]
        self.world.apply(spec.name, [*replication_resources(spec.config), *tables], {})

    def _dns(self, spec: StackSpec, resources: Any, outputs: dict[str, Any],
             states: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[str, Any]:
        """Health checks, records and (with `failover_control: arc`) routing controls and safety
        rules, as pulumi-aws makes them; moto keeps no RoutingControlArn or AlarmIdentifier on a
        check, so which check watches which control and which alarm is remembered for the DNS server."""
        from orchestrator.drill.world.dns import AlarmRef

        applied = self.world.apply(spec.name, resources, states, only=DNS_TYPES.__contains__)
        for entry in applied.values():
            if entry.type != HEALTH_CHECK:
                continue
            if entry.inputs["type"] == "RECOVERY_CONTROL":
                self.control_checks[entry.id] = str(entry.inputs["routingControlArn"])
            if entry.inputs["type"] == "CLOUDWATCH_METRIC":
                self.alarm_checks[entry.id] = AlarmRef(str(entry.inputs["cloudwatchAlarmRegion"]),
                                                       str(entry.inputs["cloudwatchAlarmName"]),
                                                       str(entry.inputs.get("insufficientDataHealthStatus")
                                                           or "LastKnownStatus"))
        mock_ids = dict(outputs.get("healthCheckIds") or {})
        outputs["healthCheckIds"] = {region: self.world.real_ids.get(mid, mid) for region, mid in mock_ids.items()}
        if self.arc is not None and outputs.get("routingControls"):
            outputs["clusterEndpoints"] = self.arc.endpoint_list
        return outputs


class _Body(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:  # what botocore reads an AWSResponse's body with
        yield self.getvalue()


def throttled_answer(rate: Any, request: Any, event_name: str) -> Any:
    """Route 53's answer to a request over `rate` (`route53_model.RequestRate`): HTTP 400,
    Throttling, "Rate exceeded", built before the request reaches moto (botocore's `before-send`
    hook; the operation is the event's last part); None when a token was taken."""
    from botocore.awsrequest import AWSResponse

    from orchestrator.drill.world.route53_model import THROTTLED, Throttled

    try:
        rate.take(event_name.rsplit(".", 1)[-1])
    except Throttled:
        body = ('<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
                f"<Error><Type>Sender</Type><Code>Throttling</Code><Message>{THROTTLED}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()
        return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, _Body(body))
    return None


def share_route53_rate(endpoint_url: str, rate: Any) -> Callable[[], None]:
    """Put every Route 53 client the product makes for `endpoint_url` (its readers: hosted zone,
    records, health checks, changes) under `rate`, the account's one set of request-rate buckets
    the engine's client takes from ("Throttling for Amazon Route 53 API requests": the limit is per
    account, all Route 53 API operations combined). Returns what ends it. The local DNS stand-in's
    own reads are Route 53's name servers and health checkers, not API requests of the account,
    and stay outside (it makes its client before)."""
    def hook(made: Any, service: str, _region: str) -> None:
        if service == "route53":
            made.meta.events.register("before-send.route-53",
                                      lambda request, event_name="", **_: throttled_answer(rate, request, event_name))

    return on_clients_for(endpoint_url, hook)


class PropagatingRoute53:
    """The engine's Route 53 client: moto, with Route 53's change propagation (moto answers every
    change INSYNC at once) and request rate (moto throttles nothing). ChangeResourceRecordSets
    answers PENDING and GetChange turns INSYNC only after the propagation time
    (`route53_model.Propagation`: Route 53 Developer Guide, "Editing records", "within 60 seconds";
    API reference, GetChange); a batch touching a record set whose change is still PENDING is
    refused with PriorRequestNotComplete. Every request (paginated listings included) takes a token
    of `rate` (`route53_model.RequestRate`, "Throttling for Amazon Route 53 API requests"); over
    the rate it is answered as Route 53 answers (HTTP 400, Throttling, "Rate exceeded") before it
    reaches moto, through botocore's `before-send` hook, so the client's own retry mode (adaptive,
    `orchestrator.aws.client`) retries it as it would AWS's answer. Every other call goes to moto."""

    def __init__(self, r53: Any, propagation: Any, rate: Any | None = None) -> None:
        self._r53 = r53
        self.propagation = propagation
        self.rate = rate
        self._lock = threading.Lock()
        self._internal = threading.local()  # the stand-in's own reads are not the caller's requests
        if rate is not None:
            r53.meta.events.register("before-send.route-53", self._throttle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r53, name)

    def _throttle(self, request: Any, event_name: str = "", **_: Any) -> Any:
        if self.rate is None or getattr(self._internal, "on", False):
            return None
        return throttled_answer(self.rate, request, event_name)

    def change_resource_record_sets(self, *, HostedZoneId: str, ChangeBatch: Mapping[str, Any]) -> Any:  # noqa: N803
        from orchestrator.drill.world.route53_model import key

        keys = {key(c["ResourceRecordSet"]) for c in ChangeBatch["Changes"]}
        with self._lock:  # Route 53 serialises the batches of one zone
            self.propagation.refuse_prior(HostedZoneId, keys)
            self._internal.on = True
            try:
                before = [rr for page in self._r53.get_paginator("list_resource_record_sets").paginate(
                    HostedZoneId=HostedZoneId) for rr in page["ResourceRecordSets"]]
            finally:
                self._internal.on = False
            token = self.propagation.submit(HostedZoneId, before, keys)  # served as before from now on
            try:
                answer = self._r53.change_resource_record_sets(HostedZoneId=HostedZoneId, ChangeBatch=ChangeBatch)
            except Exception:
                self.propagation.cancel(token)
                raise
            info = self.propagation.bind(token, answer["ChangeInfo"])
        return {**answer, "ChangeInfo": info}

    def get_change(self, *, Id: str) -> Any:  # noqa: N803 - boto3's names
        answer = self._r53.get_change(Id=Id)  # a request like any other (rate), answered below
        if not self.propagation.knows(Id):
            return answer
        return {"ChangeInfo": {"Id": Id, "Status": self.propagation.status(Id)}}
