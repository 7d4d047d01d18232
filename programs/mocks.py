"""Offline evaluation of the programs under Pulumi mocks: `orchestrate plan` and tests/programs.

`evaluate(args, stack=...)` encodes `args` as stack config (the contract), runs the same program
`pulumi up` runs (`programs.main.run`) against a mock engine, and returns every resource the program
declared, with its inputs, parent, dependencies and `protect` flag, and the resolved stack outputs.
No credentials, no network, no Pulumi CLI.

How the record is made: `PlatformMocks` answers resource registrations and invokes with plausible,
deterministic values (ids, ARNs in the resource's own region, account 123456789012, a stable ATS
endpoint per region). `_RecordingMonitor` extends Pulumi's `MockMonitor` and keeps the
`RegisterResource`/`ReadResource` requests the SDK sends: `protect`, `parent` and `dependencies`
are read from that request, i.e. from the resource options exactly as the engine would see them.

Each evaluation runs in its own short-lived thread with its own event loop. The Pulumi runtime keeps
its settings, config and root stack in context variables, so a fresh thread starts clean, nothing
leaks into the caller or the next evaluation, and a stuck program cannot hang the caller (timeout).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pulumi

from programs import contract
from programs.contract import DnsArgs, RegionArgs, ReplicationArgs

ACCOUNT_ID = "123456789012"
PARTITION = "aws"
DEFAULT_TIMEOUT = 120.0

Args = RegionArgs | DnsArgs | ReplicationArgs


class EvaluationFailed(Exception):
    """The program raised (e.g. a residency refusal) or did not finish; `__cause__` has the original."""


@dataclass(frozen=True)
class PlannedResource:
    type: str  # Pulumi type token, e.g. aws:iot/domainConfiguration:DomainConfiguration
    name: str  # logical name
    inputs: Mapping[str, Any] = field(hash=False)  # as sent to the engine (camelCase keys)
    protect: bool = False
    parent: str | None = None  # logical name of the parent; None when parented to the stack
    depends_on: tuple[str, ...] = ()  # logical names this resource waits for (inputs + depends_on)
    custom: bool = True  # False for component resources
    read: bool = False  # True for existing resources read with `.get` (observed, never managed)
    urn: str = ""
    aliases: tuple[str, ...] = ()  # earlier logical names (or URNs) this resource answers to
    provider: str | None = None  # logical name of an explicit provider; None: the stack's default provider


@dataclass(frozen=True)
class Evaluation:
    stack: str
    resources: tuple[PlannedResource, ...]
    outputs: Mapping[str, Any] = field(hash=False)

    def of_type(self, type_token: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str) -> PlannedResource:
        found = self.of_type(type_token)
        if len(found) != 1:
            raise LookupError(f"{self.stack}: expected one {type_token}, found {len(found)}")
        return found[0]

    def named(self, name: str) -> PlannedResource:
        for resource in self.resources:
            if resource.name == name:
                return resource
        raise LookupError(f"{self.stack}: no resource named {name}")

    @property
    def managed(self) -> tuple[PlannedResource, ...]:
        """Resources the stack creates and owns (custom, not read)."""
        return tuple(r for r in self.resources if r.custom and not r.read)

    @property
    def protected(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.resources if r.protect)


def _digest(*parts: str, length: int = 12) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def ats_endpoint(region: str) -> str:
    """The mock `iot:Data-ATS` endpoint of a region: stable per region, unlike moto's."""
    return f"{_digest('ats', region, length=14)}-ats.iot.{region}.amazonaws.com"


def zone_id(name: str) -> str:
    return "Z" + _digest("zone", name.rstrip("."), length=13).upper()


# type token -> (ARN service, ARN resource kind, whether the ARN is regional)
_ARNS: dict[str, tuple[str, str, bool]] = {
    "aws:acm/certificate:Certificate": ("acm", "certificate/{uid}", True),
    "aws:iot/domainConfiguration:DomainConfiguration": ("iot", "domainconfiguration/{name}/{short}", True),
    "aws:iot/thingType:ThingType": ("iot", "thingtype/{name}", True),
    "aws:iot/thingGroup:ThingGroup": ("iot", "thinggroup/{name}", True),
    "aws:iot/policy:Policy": ("iot", "policy/{name}", True),
    "aws:iot/thing:Thing": ("iot", "thing/{name}", True),
    "aws:iot/certificate:Certificate": ("iot", "cert/{id}", True),
    "aws:secretsmanager/secret:Secret": ("secretsmanager", "secret:{name}-{short}", True),
    "aws:iot/topicRule:TopicRule": ("iot", "rule/{name}", True),
    "aws:kinesis/stream:Stream": ("kinesis", "stream/{name}", True),
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": ("firehose", "deliverystream/{name}", True),
    "aws:iam/role:Role": ("iam", "role/{name}", False),
    "aws:dynamodb/table:Table": ("dynamodb", "table/{name}", True),
    "aws:route53/healthCheck:HealthCheck": ("route53", "healthcheck/{id}", False),
    "aws:sqs/queue:Queue": ("sqs", "{name}", True),
    "aws:lambda/function:Function": ("lambda", "function:{name}", True),
    "aws:cloudwatch/logGroup:LogGroup": ("logs", "log-group:{name}", True),
    "aws:cloudwatch/eventRule:EventRule": ("events", "rule/{name}", True),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("cloudwatch", "alarm:{name}", True),
    "aws:kms/key:Key": ("kms", "key/{id}", True),
    "aws:cloudtrail/trail:Trail": ("cloudtrail", "trail/{name}", True),
    "aws:sfn/stateMachine:StateMachine": ("states", "stateMachine:{name}", True),
    "aws:scheduler/schedule:Schedule": ("scheduler", "schedule/default/{name}", True),
}
# resources whose physical name the provider would derive from the logical name (autonaming)
_AUTONAMED = {
    "aws:iam/role:Role": "name",
    "aws:iam/rolePolicy:RolePolicy": "name",
    "aws:kinesis/stream:Stream": "name",
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": "name",
    "aws:iot/policy:Policy": "name",
    "aws:iot/topicRule:TopicRule": "name",
    "aws:iot/domainConfiguration:DomainConfiguration": "name",
    "aws:dynamodb/table:Table": "name",
    "aws:sqs/queue:Queue": "name",
    "aws:lambda/function:Function": "name",
    "aws:cloudwatch/logGroup:LogGroup": "name",
    "aws:cloudwatch/eventRule:EventRule": "name",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "name",
    "aws:sfn/stateMachine:StateMachine": "name",
    "aws:scheduler/schedule:Schedule": "name",
}


class PlatformMocks(pulumi.runtime.Mocks):
    """Plausible, deterministic answers for every resource and invoke the programs use.

    `versioning` maps a bucket name to the status a `BucketVersioning.get` read reports
    (default `Enabled`), so tests can show what happens when a lake is not versioned.
    `states` keeps what each resource was answered, by (type, logical name): the mocked ids and
    ARNs that other resources' inputs refer to (the local drill's engine maps them to real ones).
    """

    def __init__(self, *, default_region: str = "us-east-1",
                 versioning: Mapping[str, str] | None = None) -> None:
        self.default_region = default_region
        self.versioning = dict(versioning or {})
        self.states: dict[tuple[str, str], dict[str, Any]] = {}

    # pulumi.runtime.Mocks ------------------------------------------------------------------------
    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        inputs: dict[str, Any] = dict(args.inputs)
        token, name = args.typ, args.name
        region = inputs.get("region") or self.default_region
        state = dict(inputs)
        if token in _AUTONAMED and not state.get(_AUTONAMED[token]):
            state[_AUTONAMED[token]] = f"{name}-{_digest(token, name, length=7)}"
        physical = state.get("name") or name
        rid = args.resource_id or physical
        if token.startswith("aws:") and token not in _GLOBAL:
            state.setdefault("region", region)

        if token == "aws:s3/bucket:Bucket":
            suffix = _digest(name, region, length=26)  # the provider appends 26 characters
            bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name)}{suffix}"
            state.update(bucket=bucket, arn=f"arn:{PARTITION}:s3:::{bucket}",
                         bucketDomainName=f"{bucket}.s3.amazonaws.com", bucketRegion=region)
            rid = bucket
        elif token == "aws:s3/bucketVersioning:BucketVersioning":
            bucket = inputs.get("bucket") or args.resource_id
            state["bucket"] = bucket
            if args.resource_id is not None and "versioningConfiguration" not in inputs:  # a read
                state["versioningConfiguration"] = {"status": self.versioning.get(bucket, "Enabled")}
            rid = bucket
        elif token == "aws:acm/certificate:Certificate":
            domain = inputs["domainName"]
            label = _digest("acm", domain, length=32)  # same in every region: ACM's behaviour
            state["domainValidationOptions"] = [{
                "domainName": domain,
                "resourceRecordName": f"_{label}.{domain}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": f"_{_digest('acm-value', domain, length=32)}.acm-validations.aws.",
            }]
            state["status"] = "PENDING_VALIDATION"
        elif token == "aws:acm/certificateValidation:CertificateValidation":
            rid = inputs["certificateArn"]
        elif token == "aws:route53/record:Record":
            fqdn = str(inputs["name"]).rstrip(".")
            state["fqdn"] = fqdn
            rid = "_".join(x for x in (inputs.get("zoneId"), fqdn, inputs.get("type"),
                                       inputs.get("setIdentifier")) if x)
        elif token == "aws:route53/healthCheck:HealthCheck":
            rid = f"{_digest('hc', name, length=8)}-{_digest('hc2', name, length=4)}-mock"
        elif token == "aws:iam/rolePolicy:RolePolicy":
            rid = f"{inputs.get('role')}:{state['name']}"
        elif token == "aws:dynamodb/table:Table":
            def stream(r: str) -> str:
                return f"arn:{PARTITION}:dynamodb:{r}:{ACCOUNT_ID}:table/{state['name']}/stream/2024-01-01T00:00:00.000"

            state["streamArn"] = stream(region)
            state["replicas"] = [{**replica, "streamArn": stream(replica["regionName"]),
                                  "arn": f"arn:{PARTITION}:dynamodb:{replica['regionName']}:{ACCOUNT_ID}:table/"
                                         f"{state['name']}"}
                                 for replica in inputs.get("replicas") or []]
        elif token.startswith("aws:route53recoverycontrol/"):
            ident = _digest(token, name, length=12)
            kind = token.rsplit(":", 1)[-1]
            if kind == "Cluster":
                resource = f"cluster/{ident}"
                state["clusterEndpoints"] = [
                    {"region": r, "endpoint": f"https://host-{ident}.{r}.route53-recovery-cluster.amazonaws.com/v1"}
                    for r in ARC_CLUSTER_REGIONS]
            elif kind == "ControlPanel":
                resource = f"controlpanel/{ident}"
            else:
                panel = str(inputs.get("controlPanelArn") or "controlpanel/unknown").split(":")[-1]
                resource = f"{panel}/{'routingcontrol' if kind == 'RoutingControl' else 'safetyrule'}/{ident}"
            state["arn"] = f"arn:{PARTITION}:route53-recovery-control::{ACCOUNT_ID}:{resource}"
            state["status"] = "DEPLOYED"
            rid = state["arn"]
        elif token == "aws:sqs/queue:Queue":
            state["url"] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{state['name']}"
            rid = state["url"]
        elif token == "aws:kms/key:Key":  # AWS names a key by a generated UUID: its id and keyId
            uid = _digest(token, name, region, length=32)
            rid = f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}"
            if inputs.get("multiRegion"):  # multi-Region keys: mrk- and 32 hex digits, in every replica
                rid = f"mrk-{uid}"
            state["keyId"] = rid
        elif token == "aws:kms/replicaKey:ReplicaKey":  # the primary's key id, in the replica's region
            rid = str(inputs["primaryKeyArn"]).rsplit("/", 1)[-1]
            state.update(keyId=rid, arn=f"arn:{PARTITION}:kms:{region}:{ACCOUNT_ID}:key/{rid}")
        elif token == "aws:iot/certificate:Certificate":  # CreateKeysAndCertificate: id is a 64-hex digest
            rid = _digest(token, name, region, length=64)
            pem = "-----BEGIN {0}-----\nMOCK{1}\n-----END {0}-----\n"
            state.update(certificatePem=pem.format("CERTIFICATE", rid[:16]),
                         privateKey=pem.format("RSA PRIVATE KEY", rid[16:32]), publicKey="")
        elif token == "command:local:Command":
            state.update(stdout="", stderr="")
            rid = f"{name}-{_digest(name, length=8)}"

        if token in _ARNS:
            service, kind, regional = _ARNS[token]
            uid = _digest(token, name, region, length=32)
            uid = f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}"
            resource = kind.format(name=physical, uid=uid,
                                   short=_digest(name, length=5), id=rid)
            arn_region = region if regional else ""
            arn_account = ACCOUNT_ID if regional or service == "iam" else ""  # route53: neither
            state["arn"] = f"arn:{PARTITION}:{service}:{arn_region}:{arn_account}:{resource}"
        state.setdefault("id", rid)
        self.states[(token, name)] = state
        return str(rid), state

    def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        # (result, failures); Pulumi's MockMonitor iterates the failures, so never None
        return self._answer(args.token, dict(args.args)), []

    def _answer(self, token: str, a: dict[str, Any]) -> dict[str, Any]:
        region = a.get("region") or self.default_region
        if token == "aws:iot/getEndpoint:getEndpoint":
            kind = a.get("endpointType") or "iot:Data-ATS"
            if kind != "iot:Data-ATS":
                raise ValueError(f"mock getEndpoint knows only iot:Data-ATS, not {kind}")
            return {"endpointAddress": ats_endpoint(region), "endpointType": kind, "id": region,
                    "region": region}
        if token == "aws:route53/getZone:getZone":
            name = str(a.get("name") or "example.com").rstrip(".")
            zid = a.get("zoneId") or zone_id(name)
            return {"id": zid, "zoneId": zid, "name": name, "privateZone": False,
                    "arn": f"arn:{PARTITION}:route53:::hostedzone/{zid}",
                    "nameServers": [f"ns-{i}.awsdns-{i:02d}.org" for i in range(1, 5)],
                    "resourceRecordSetCount": 2, "callerReference": zid, "comment": "", "tags": {}}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "id": ACCOUNT_ID, "userId": "AIDAMOCKUSER",
                    "arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:user/plan"}
        if token == "aws:index/getRegion:getRegion":
            return {"id": region, "name": region, "region": region,
                    "endpoint": f"ec2.{region}.amazonaws.com", "description": region}
        if token == "aws:index/getPartition:getPartition":
            return {"id": PARTITION, "partition": PARTITION, "dnsSuffix": "amazonaws.com",
                    "reverseDnsPrefix": "com.amazonaws"}
        raise NotImplementedError(f"programs.mocks has no answer for invoke {token}; add one")


_GLOBAL = {  # resources of global services: no `region` input, no region in state
    "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy", "aws:route53/record:Record",
    "aws:route53/healthCheck:HealthCheck", "aws:route53recoverycontrol/cluster:Cluster",
    "aws:route53recoverycontrol/controlPanel:ControlPanel",
    "aws:route53recoverycontrol/routingControl:RoutingControl",
    "aws:route53recoverycontrol/safetyRule:SafetyRule",
}
# the five Regions a Route 53 ARC cluster's data-plane endpoints are in
ARC_CLUSTER_REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-2")


def _alias_names(request: Any) -> tuple[str, ...]:
    names: list[str] = []
    for alias in getattr(request, "aliases", ()):
        if alias.HasField("spec") and alias.spec.name:
            names.append(alias.spec.name)
        elif alias.urn:
            names.append(alias.urn.rsplit("::", 1)[-1])
    names.extend(u.rsplit("::", 1)[-1] for u in getattr(request, "aliasURNs", ()))
    return tuple(names)


def _make_monitor(mocks: PlatformMocks) -> Any:
    from pulumi.runtime import rpc
    from pulumi.runtime.mocks import MockMonitor

    class _RecordingMonitor(MockMonitor):
        """Pulumi's MockMonitor, keeping what each registration request carried."""

        def __init__(self) -> None:
            super().__init__(mocks)
            self.lock = threading.Lock()
            self.records: list[dict[str, Any]] = []

        def _keep(self, request: Any, urn: str, *, read: bool, inputs: Any) -> None:
            with self.lock:
                self.records.append({
                    "type": request.type, "name": request.name, "urn": urn,
                    "inputs": _plain(rpc.deserialize_properties(inputs)),
                    "protect": bool(getattr(request, "protect", False)) and not read,
                    "parent": request.parent or None,
                    "dependencies": tuple(request.dependencies),
                    "custom": True if read else bool(request.custom),
                    "read": read,
                    "aliases": _alias_names(request),
                    "provider": getattr(request, "provider", "") or None,
                })

        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC name)
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                self._keep(request, response.urn, read=False, inputs=request.object)
            return response

        def ReadResource(self, request: Any) -> Any:  # noqa: N802
            response = super().ReadResource(request)
            self._keep(request, response.urn, read=True, inputs=request.properties)
            return response

    return _RecordingMonitor()


def _plain(value: Any) -> Any:
    """Engine-shaped values as plain Python: dicts, lists, strings, numbers, bools, None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format has only doubles; 60.0 was written as 60
    if isinstance(value, pulumi.FileArchive):  # a function's code: by its path (the zip is named by digest)
        return {"fileArchive": value.path}
    return value


def home_region(args: Args) -> str:
    """The region a stack's provider is configured for (what `aws:region` would be)."""
    if isinstance(args, RegionArgs):
        return args.region
    if isinstance(args, DnsArgs):
        return "us-east-1"  # Route 53 is global; its API (and the DNS stack's provider) is there
    return args.primary.region


_LOCK = threading.Lock()


def evaluate(args: Args, *, stack: str, project: str = contract.PROJECT,
             mocks: PlatformMocks | None = None, timeout: float = DEFAULT_TIMEOUT,
             aws_config: Mapping[str, str] | None = None) -> Evaluation:
    """Run the program for `args` under mocks; raise `EvaluationFailed` if the program raises.
    `aws_config`: more provider config of the stack (`aws:defaultTags`, `aws:assumeRoles` …)."""
    mocks = mocks or PlatformMocks(default_region=home_region(args))
    box: dict[str, Any] = {}
    worker = threading.Thread(target=_run, args=(args, stack, project, mocks, box, dict(aws_config or {})),
                              name=f"evaluate-{stack}", daemon=True)
    with _LOCK:  # the Pulumi runtime has process-wide pieces; one evaluation at a time
        worker.start()
        worker.join(timeout)
    if worker.is_alive():
        raise EvaluationFailed(f"{stack}: the program did not finish within {timeout:g}s")
    if "error" in box:
        error = box["error"]
        raise EvaluationFailed(f"{stack}: {_message(error)}") from error
    return box["result"]


def _message(error: BaseException) -> str:
    """The program's own words: Pulumi prefixes "While processing resource …: X has risen: "."""
    text = " ".join((str(error).strip() or type(error).__name__).split())
    return re.split(r"\w+ has risen: ", text)[-1]


def _run(args: Args, stack: str, project: str, mocks: PlatformMocks, box: dict[str, Any],
         aws_config: dict[str, str]) -> None:
    loop = asyncio.new_event_loop()
    # The first failure is reported to the caller; the futures that failed because of it would
    # only repeat it as "exception was never retrieved" noise on stderr.
    loop.set_exception_handler(lambda _loop, _context: None)
    # The mock monitor runs in executor threads and gives each one an event loop; own those
    # threads so their loops are closed here, not garbage-collected noisily at interpreter exit.
    thread_loops: list[asyncio.AbstractEventLoop] = []

    def give_thread_a_loop() -> None:
        thread_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(thread_loop)
        thread_loops.append(thread_loop)

    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix=f"evaluate-{stack}",
                                                 initializer=give_thread_a_loop))
    asyncio.set_event_loop(loop)
    try:
        box["result"] = _evaluate_here(args, stack, project, mocks, aws_config)
    except BaseException as error:  # noqa: BLE001 (handed to the caller's thread)
        box["error"] = error
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            for thread_loop in thread_loops:
                thread_loop.close()


def _evaluate_here(args: Args, stack: str, project: str, mocks: PlatformMocks,
                   aws_config: Mapping[str, str] | None = None) -> Evaluation:
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from programs import main

    settings.reset_options(project=project, stack=stack, preview=False)  # fresh settings, no root
    pulumi.runtime.set_all_config(
        {f"{contract.NAMESPACE}:{key}": value for key, value in args.to_config().items()}
        | {"aws:region": home_region(args)} | dict(aws_config or {}))
    monitor = _make_monitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    root = settings.get_root_resource()
    exported: dict[str, Any] = {}

    async def resolve_exports() -> None:
        # `pulumi.export` records on the root stack; resolve those values as the engine would.
        exported.update(await pulumi.Output.from_input(root.outputs).future() or {})  # type: ignore[union-attr]

    def program() -> Any:
        main.run()
        return resolve_exports()

    _sync_await(run_pulumi_func(program))

    by_urn = {r["urn"]: r["name"] for r in monitor.records}
    resources = tuple(sorted((
        PlannedResource(
            type=r["type"], name=r["name"], inputs=r["inputs"], protect=r["protect"],
            parent=by_urn.get(r["parent"]) if r["parent"] else None,
            depends_on=tuple(sorted({by_urn[d] for d in r["dependencies"] if d in by_urn})),
            custom=r["custom"], read=r["read"], urn=r["urn"], aliases=r["aliases"],
            # a provider reference is `<urn>::<id>`
            provider=by_urn.get(r["provider"].rsplit("::", 1)[0]) if r["provider"] else None)
        for r in monitor.records), key=lambda r: (r.name, r.type)))
    return Evaluation(stack=stack, resources=resources, outputs=_plain(exported))
