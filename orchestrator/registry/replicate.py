"""Continuous replication: the function behind the registry-events table's stream in one region.

The replication stack deploys this module (with the rest of `orchestrator.registry`, packaged by
`programs.package`) as an AWS Lambda function in every region that receives changes: each secondary,
and every member in latency mode. Its stream records are registry events and shadow documents
written by the topic rules of the regions where changes happen (`orchestrator.registry.events`).
It imports neither click nor pulumi: only the standard library and boto3, as Lambda provides.

For each record, in stream order:

1. own origin: an item written by this region's own rules is not applied (the change already
   happened here); its order only advances the watermark, so a late echo of an older state from
   another region cannot overwrite it;
2. duplicates and reordering: every replicated object (a thing, a type, a group, a membership, a
   shadow) has a watermark (event time, version) in the region's `applied` table; an event not newer
   than it is a no-op, a newer one advances it with a conditional write;
3. apply, with the registry sync's own code: the change becomes two small snapshots (the object as
   the event says it is, and as the destination has it), `plan_sync` compares them and `apply_sync`
   applies the difference (`SyncPlan`/`SyncOp`, the executor's idempotent operations). No
   difference, no write: replicated changes die out instead of ping-ponging between regions.
   Thing events also catch up what has no events: the thing's certificates (registered without a
   CA, same id, from the origin's PEM), their policies and attachments are read from the origin;
   certificates detached there are detached here (never deleted: another thing may use them),
   and policies detached there from those certificates are detached here, statuses (deactivated,
   revoked) copied: the snapshots carry a `Coverage` saying what the origin read completely, and
   the planner tightens only that (docs/registry.md, "Tightening and removal").
   Shadows go the same way (`Kind.SHADOW`: the shadow from the update document against the
   destination's), written with the sync's client token, which the rules filter out.
4. failures: a record that cannot be parsed or applied is reported in `batchItemFailures` (the
   rest of the batch still applies); Lambda retries it and, after the mapping's retries, sends the
   batch's description to the dead-letter queue, from which `orchestrate registry replay
   --from-dlq` re-reads the records from the stream (`replay_dead_letters`).

Replication lag (apply time minus event time) goes to CloudWatch as `ReplicationLag` (ms).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from orchestrator.registry.calls import Caller, RateLimiter, RetryPolicy, error_code
from orchestrator.registry.events import (
    LAG_METRIC,
    METRIC_NAMESPACE,
    EventKind,
    Operation,
    PoisonRecord,
    ReplicationEvent,
    parse_record,
)
from orchestrator.registry.policydoc import RegionRewrite, normalize_document
from orchestrator.registry.snapshot import (
    Certificate,
    Coverage,
    Policy,
    PolicyTarget,
    RegistrySnapshot,
    TargetKind,
    Thing,
    ThingGroup,
    ThingPrincipal,
    ThingType,
    describe_thing_group,
    read_shadows,
    shadow_from_document,
)
from orchestrator.registry.snapshot import missing as _missing
from orchestrator.registry.sync import Action, Kind, SyncOp, SyncPlan, apply_sync, plan_sync

RECONCILIATION_KEY = "reconciliation"
WATERMARK_TTL_S = 30 * 24 * 3600
_NOT_FOUND = "ResourceNotFoundException"


class Outcome(str, Enum):
    APPLIED = "applied"        # a write was sent
    UNCHANGED = "unchanged"    # the destination already held it: no write
    STALE = "stale"            # not newer than what was applied: duplicate or out of order
    OWN_ORIGIN = "own_origin"  # the change happened in this region
    IGNORED = "ignored"        # nothing to replicate (TTL removal, type association, dynamic group)
    FAILED = "failed"          # reported in batchItemFailures


@dataclass(frozen=True)
class RecordResult:
    sequence: str
    key: str
    outcome: Outcome
    detail: str = ""
    lag_ms: int | None = None


@dataclass(frozen=True)
class BatchResult:
    results: tuple[RecordResult, ...]

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(r.sequence for r in self.results if r.outcome is Outcome.FAILED)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    def response(self) -> dict[str, Any]:
        """Lambda's partial batch response (ReportBatchItemFailures)."""
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failures]}


class ApplyFailed(Exception):
    """The destination refused an operation of this record (the record is reported as failed)."""


# -- watermarks -------------------------------------------------------------------------------
class AppliedStore(Protocol):
    def get(self, key: str) -> tuple[int, int] | None: ...
    def advance(self, key: str, order: tuple[int, int]) -> bool: ...
    def put_reconciliation(self, result: Mapping[str, Any]) -> None: ...
    def reconciliation(self) -> dict[str, Any] | None: ...


class DynamoAppliedStore:
    """The region's `applied` table: one item per replicated object (objectKey -> eventTimeMs,
    version), advanced only forwards (a conditional update), and the last reconciliation."""

    def __init__(self, client: Any, table: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    def get(self, key: str) -> tuple[int, int] | None:
        item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": key}},
                                    ConsistentRead=True).get("Item")
        if not item or "eventTimeMs" not in item:
            return None
        return int(item["eventTimeMs"]["N"]), int(item.get("version", {"N": "0"})["N"])

    def advance(self, key: str, order: tuple[int, int]) -> bool:
        t, v = order
        try:
            self.client.update_item(
                TableName=self.table, Key={"objectKey": {"S": key}},
                UpdateExpression="SET eventTimeMs = :t, version = :v, expiresAt = :x",
                ConditionExpression=("attribute_not_exists(eventTimeMs) OR eventTimeMs < :t "
                                     "OR (eventTimeMs = :t AND version < :v)"),
                ExpressionAttributeValues={":t": {"N": str(t)}, ":v": {"N": str(v)},
                                           ":x": {"N": str(int(self.clock()) + WATERMARK_TTL_S)}})
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_reconciliation(self, result: Mapping[str, Any]) -> None:
        self.client.put_item(TableName=self.table, Item={
            "objectKey": {"S": RECONCILIATION_KEY}, "result": {"S": json.dumps(dict(result), sort_keys=True)}})

    def reconciliation(self) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": RECONCILIATION_KEY}},
                                    ConsistentRead=True).get("Item")
        if not item:
            return None
        value = json.loads(item["result"]["S"])
        return value if isinstance(value, dict) else None


# -- the function -----------------------------------------------------------------------------
@dataclass
class Region:
    """One region's clients, each behind a `Caller` (rate limits, retries, counting)."""

    name: str
    iot: Caller
    data: Caller

    @classmethod
    def of(cls, name: str, iot_client: Any, data_client: Any, *, rate: float = 10.0,
           retry: RetryPolicy | None = None) -> Region:
        retry = retry or RetryPolicy(max_attempts=4)
        return cls(name,
                   Caller(iot_client, writes=RateLimiter(rate), reads=RateLimiter(max(20.0, 2 * rate)), retry=retry),
                   Caller(data_client, writes=RateLimiter(20.0), reads=RateLimiter(20.0), retry=retry))


@dataclass
class Replicator:
    """Applies stream records to `region`. `origin(region)` gives the clients of a source region."""

    region: Region
    store: AppliedStore
    origin: Callable[[str], Region]
    metrics: Callable[[Sequence[int]], None] | None = None
    clock: Callable[[], float] = time.time
    region_rewrite: RegionRewrite = RegionRewrite.DESTINATION
    _origins: dict[str, Region] = field(default_factory=dict, repr=False)

    # batch ------------------------------------------------------------------------------------
    def handle_batch(self, records: Iterable[Mapping[str, Any]]) -> BatchResult:
        results = []
        for record in records:
            results.append(self.handle_record(record))
        lags = [r.lag_ms for r in results if r.lag_ms is not None]
        if lags and self.metrics is not None:
            self.metrics(lags)
        return BatchResult(tuple(results))

    def handle_record(self, record: Mapping[str, Any]) -> RecordResult:
        try:
            event = parse_record(record)
        except PoisonRecord as exc:
            return RecordResult(exc.sequence, "?", Outcome.FAILED, exc.reason)
        if event is None:
            sequence = str(record.get("dynamodb", {}).get("SequenceNumber"))
            return RecordResult(sequence, "-", Outcome.IGNORED, "removal")
        try:
            outcome = self.handle(event)
        except Exception as exc:  # one bad record never blocks the batch
            code = error_code(exc) or type(exc).__name__
            detail = f"{code}: {' '.join(str(exc).split())}"[:300]
            return RecordResult(event.sequence, event.key, Outcome.FAILED, detail)
        lag = None
        if outcome in (Outcome.APPLIED, Outcome.UNCHANGED):
            lag = max(0, int(self.clock() * 1000) - event.event_time_ms)
        return RecordResult(event.sequence, event.key, outcome, lag_ms=lag)

    def handle(self, event: ReplicationEvent) -> Outcome:
        if event.kind is EventKind.IGNORED:
            return Outcome.IGNORED
        if event.origin == self.region.name:
            self.store.advance(event.key, event.order)
            return Outcome.OWN_ORIGIN
        seen = self.store.get(event.key)
        if seen is not None and event.order <= seen:
            return Outcome.STALE
        changed = self._apply(event)
        if changed is None:
            return Outcome.IGNORED
        self.store.advance(event.key, event.order)
        return Outcome.APPLIED if changed else Outcome.UNCHANGED

    def _source(self, name: str) -> Region:
        if name not in self._origins:
            self._origins[name] = self.origin(name)
        return self._origins[name]

    # apply ------------------------------------------------------------------------------------
    def _apply(self, event: ReplicationEvent) -> bool | None:
        if event.kind is EventKind.SHADOW:
            return self._run(*self._shadow_snapshots(event))
        if event.kind is EventKind.THING:
            if event.operation is Operation.DELETED:
                return self._delete_thing(event.name)
            src, dst = self._thing_snapshots(event)
            return self._run(src, dst)
        if event.kind is EventKind.THING_TYPE:
            return self._thing_type(event)
        if event.kind is EventKind.THING_GROUP:
            return self._thing_group(event)
        if event.kind is EventKind.MEMBERSHIP:
            return self._membership(event)
        return None

    def _run(self, src: RegistrySnapshot, dst: RegistrySnapshot, extra: Sequence[SyncOp] = ()) -> bool:
        """plan_sync + apply_sync, the registry sync's own plan and apply (never pruning)."""
        plan = plan_sync(src, dst, False, region_rewrite=self.region_rewrite)
        if extra:
            plan = replace(plan, ops=plan.ops + tuple(extra))
        return self._apply_plan(plan)

    def _apply_plan(self, plan: SyncPlan) -> bool:
        if not plan.ops:
            return False
        report = apply_sync(plan, self.region.iot.client, caller=self.region.iot, data_caller=self.region.data)
        if report.errors or report.blocked:
            first = report.errors[0] if report.errors else None
            raise ApplyFailed(f"{first.op}: {first.code} {first.message}" if first else
                              f"{report.blocked} operation(s) blocked")
        return True

    def _one(self, kind: Kind, action: Action, name: str, **params: Any) -> bool:
        op = SyncOp(kind, action, name, params)
        return self._apply_plan(SyncPlan(self.region.name, self.region.name, False, (op,)))

    # -- things: the thing from the event, certificates and policies from the origin ------------
    def _thing_snapshots(self, event: ReplicationEvent) -> tuple[RegistrySnapshot, RegistrySnapshot]:
        body, name = event.body, event.name
        thing_type = body.get("thingTypeName") or None
        thing = Thing(name, thing_type, {str(k): str(v) for k, v in (body.get("attributes") or {}).items()})
        src_region = self._source(event.origin)
        src_certs, src_tp, src_policies, src_pt = _principals(src_region.iot, name, pems=True)
        dst_thing = _describe_thing(self.region.iot, name)
        dst_certs, dst_tp, dst_policies, dst_pt = _principals(
            self.region.iot, name, pems=False, also=[c.id for c in src_certs],
            policies=[p.name for p in src_policies])
        src_types: tuple[ThingType, ...] = ()
        dst_types: tuple[ThingType, ...] = ()
        if thing_type:
            dst_type = _describe_thing_type(self.region.iot, thing_type)
            src_type = dst_type or _describe_thing_type(src_region.iot, thing_type)
            if src_type is None:
                raise ApplyFailed(f"thing type {thing_type} of {name} is not in {event.origin}")
            src_types = (replace(src_type, deprecated=dst_type.deprecated if dst_type else False),)
            dst_types = (dst_type,) if dst_type else ()
        # what was read completely in the origin: this thing's certificates, and each of those
        # certificates' policies; so the planner detaches what the origin detached (tightening)
        coverage = Coverage(principals=frozenset({name}),
                            certificate_policies=frozenset(c.id for c in src_certs))
        src = RegistrySnapshot(event.origin, thing_types=src_types, things=(thing,), policies=src_policies,
                               certificates=src_certs, thing_principals=src_tp, policy_targets=src_pt,
                               coverage=coverage)
        dst = RegistrySnapshot(self.region.name, thing_types=dst_types,
                               things=(dst_thing,) if dst_thing else (), policies=dst_policies,
                               certificates=dst_certs, thing_principals=dst_tp, policy_targets=dst_pt)
        return src, dst

    def _shadow_snapshots(self, event: ReplicationEvent) -> tuple[RegistrySnapshot, RegistrySnapshot]:
        """The shadow as the update document says, and as the destination has it (its thing must
        exist there: otherwise the record fails and is retried after the thing's own event)."""
        thing, name = event.body["thing"], event.body["shadow"]
        if _describe_thing(self.region.iot, thing) is None:
            raise ApplyFailed(f"thing {thing} does not exist in {self.region.name} yet")
        src = RegistrySnapshot(event.origin, shadows=(shadow_from_document(thing, name, event.body["current"]),))
        dst = RegistrySnapshot(self.region.name, things=(Thing(thing),),
                               shadows=read_shadows(self.region.data, [thing], names={thing: [name]}))
        return src, dst

    def _delete_thing(self, name: str) -> bool:
        if _describe_thing(self.region.iot, name) is None:
            return False
        _, attached, _, _ = _principals(self.region.iot, name, pems=False)
        ops = [SyncOp(Kind.THING_PRINCIPAL, Action.DELETE, f"{a.thing}/{a.certificate_id}",
                      {"thing": a.thing, "certificate_id": a.certificate_id}, (), 120) for a in attached]
        delete = SyncOp(Kind.THING, Action.DELETE, name, {}, tuple(op.id for op in ops), 140)
        return self._apply_plan(SyncPlan(self.region.name, self.region.name, False, (*ops, delete)))

    # -- thing types, groups, memberships: from the event ----------------------------------------
    def _thing_type(self, event: ReplicationEvent) -> bool:
        body, name = event.body, event.name
        current = _describe_thing_type(self.region.iot, name)
        if event.operation is Operation.DELETED:
            if current is None:
                return False
            return self._one(Kind.THING_TYPE, Action.DELETE, name, deprecated=current.deprecated)
        deprecated = bool(body.get("isDeprecated"))
        if current is None:
            src = ThingType(name, body.get("description") or None,
                            tuple(body.get("searchableAttributes") or ()), False)
            changed = self._run(RegistrySnapshot(event.origin, thing_types=(src,)),
                                RegistrySnapshot(self.region.name))
            if deprecated:
                self._one(Kind.THING_TYPE, Action.UPDATE, name, deprecated=True)
            return changed or deprecated
        if current.deprecated != deprecated:
            return self._one(Kind.THING_TYPE, Action.UPDATE, name, deprecated=deprecated)
        return False

    def _thing_group(self, event: ReplicationEvent) -> bool | None:
        body, name = event.body, event.name
        if body.get("dynamicGroupMappingId") or body.get("queryString"):
            return None  # dynamic groups are not copied (as in `registry sync`)
        current = describe_thing_group(self.region.iot, name)
        if event.operation is Operation.DELETED:
            if current is None:
                return False
            return self._one(Kind.THING_GROUP, Action.DELETE, name)
        attributes = {str(k): str(v) for k, v in (body.get("attributes") or {}).items()}
        src = ThingGroup(name, body.get("parentGroupName") or None, body.get("description") or None, attributes)
        return self._run(RegistrySnapshot(event.origin, thing_groups=(src,)),
                         RegistrySnapshot(self.region.name, thing_groups=(current,) if current else ()))

    def _membership(self, event: ReplicationEvent) -> bool:
        group, thing = event.body["group"], event.body["thing"]
        groups = {g["groupName"] for g in self.region.iot.pages("list_thing_groups_for_thing", thingName=thing)}
        if event.operation is Operation.ADDED:
            if group in groups:
                return False
            return self._one(Kind.GROUP_MEMBERSHIP, Action.CREATE, f"{group}/{thing}", group=group, thing=thing)
        if group not in groups:
            return False
        return self._one(Kind.GROUP_MEMBERSHIP, Action.DELETE, f"{group}/{thing}", group=group, thing=thing)


# -- small reads (one object each) --------------------------------------------------------------
def _describe_thing(caller: Caller, name: str) -> Thing | None:
    try:
        d = caller.call("describe_thing", thingName=name)
    except Exception as exc:
        if _missing(exc):
            return None
        raise
    return Thing(name, d.get("thingTypeName") or None, {str(k): str(v) for k, v in (d.get("attributes") or {}).items()})


def _describe_thing_type(caller: Caller, name: str) -> ThingType | None:
    try:
        d = caller.call("describe_thing_type", thingTypeName=name)
    except Exception as exc:
        if _missing(exc):
            return None
        raise
    props = d.get("thingTypeProperties") or {}
    meta = d.get("thingTypeMetadata") or {}
    return ThingType(name, props.get("thingTypeDescription") or None,
                     tuple(props.get("searchableAttributes") or ()), bool(meta.get("deprecated")))


def _cert_id(arn: str) -> str | None:
    return arn.rsplit(":cert/", 1)[1] if ":cert/" in arn else None


def _principals(caller: Caller, thing: str, *, pems: bool, also: Sequence[str] = (), policies: Sequence[str] = ()
                ) -> tuple[tuple[Certificate, ...], tuple[ThingPrincipal, ...], tuple[Policy, ...],
                           tuple[PolicyTarget, ...]]:
    """A thing's certificates (plus `also`, when they exist), their policies and attachments."""
    try:
        arns = list(caller.pages("list_thing_principals", thingName=thing))
    except Exception as exc:
        if not _missing(exc):
            raise
        arns = []
    attached = [c for c in (_cert_id(a) for a in arns) if c]
    certs: dict[str, Certificate] = {}
    for cert_id in dict.fromkeys([*attached, *also]):
        try:
            d = caller.call("describe_certificate", certificateId=cert_id)["certificateDescription"]
        except Exception as exc:
            if _missing(exc):
                continue
            raise
        certs[cert_id] = Certificate(cert_id, d["status"], d.get("certificatePem") if pems else None,
                                     d.get("certificateMode"), d.get("caCertificateId"), d.get("certificateArn"))
    targets: list[PolicyTarget] = []
    names: dict[str, None] = dict.fromkeys(policies)
    for cert in certs.values():
        for p in caller.pages("list_attached_policies", target=cert.arn):
            targets.append(PolicyTarget(p["policyName"], TargetKind.CERTIFICATE, cert.id))
            names[p["policyName"]] = None
    docs: list[Policy] = []
    for name in names:
        try:
            d = caller.call("get_policy", policyName=name)
        except Exception as exc:
            if _missing(exc):
                continue
            raise
        docs.append(Policy(name, normalize_document(d["policyDocument"])))
    return (tuple(certs.values()), tuple(ThingPrincipal(thing, c) for c in attached if c in certs),
            tuple(docs), tuple(sorted(set(targets))))




# -- metrics ------------------------------------------------------------------------------------
def put_lag_metrics(cloudwatch: Any, namespace: str, dimensions: Sequence[Mapping[str, str]],
                    lags_ms: Sequence[int]) -> None:
    """Replication lag samples (ms) as one metric; PutMetricData takes at most 150 values a call."""
    for start in range(0, len(lags_ms), 150):
        chunk = lags_ms[start:start + 150]
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=[{
            "MetricName": LAG_METRIC, "Dimensions": [dict(d) for d in dimensions],
            "Values": [float(x) for x in chunk], "Unit": "Milliseconds"}])


# -- the scheduled reconciliation (the backstop for anything events missed) ----------------------
def reconcile(replicator: Replicator, source_region: str, *, now: datetime | None = None) -> dict[str, Any]:
    """A registry sync from `source_region` into the function's region (never pruning); its result
    is kept in the applied table for `orchestrate status`."""
    from orchestrator.registry.sync import SyncOptions, sync_clients

    src = replicator._source(source_region)
    started = time.monotonic()
    at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    try:
        # change detection (versions of the last clean run) as far as the function's /tmp keeps
        # them: a warm container reads only changed things; a cold one compares everything
        options = SyncOptions(state_path=Path(tempfile.gettempdir()) / f"reconcile-{source_region}.json")
        report = sync_clients(src.iot.client, replicator.region.iot.client, options,
                              src_caller=src.iot, dst_caller=replicator.region.iot,
                              src_data=src.data.client, dst_data=replicator.region.data.client)
    except Exception as exc:
        result: dict[str, Any] = {"at": at, "from": source_region, "ok": False, "applied": 0, "errors": 1,
                                  "error": f"{error_code(exc) or type(exc).__name__}"}
    else:
        result = {"at": at, "from": source_region, "ok": report.ok, "applied": report.applied,
                  "errors": len(report.errors) + report.blocked}
    result["duration_s"] = round(time.monotonic() - started, 3)
    replicator.store.put_reconciliation(result)
    return result


# -- dead letters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayReport:
    """What `replay_dead_letters` did: dead-letter messages read, re-applied (and deleted), left."""

    region: str
    messages: int
    replayed: int
    records: int
    failed_records: int
    expired: int  # batches whose records the stream no longer holds (24 h retention)

    @property
    def ok(self) -> bool:
        return self.replayed == self.messages

    def to_json(self) -> dict[str, Any]:
        return {"kind": "registry-replay", "region": self.region, "ok": self.ok, "messages": self.messages,
                "replayed": self.replayed, "records": self.records, "failed_records": self.failed_records,
                "expired": self.expired}


def _batch_records(streams: Any, info: Mapping[str, Any], max_pages: int = 100) -> list[dict[str, Any]] | None:
    """The stream records a dead letter describes (DDBStreamBatchInfo); None when they are gone."""
    start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"], ShardId=info["shardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=str(info["startSequenceNumber"]))["ShardIterator"]
    except Exception as exc:
        if error_code(exc) in ("TrimmedDataAccessException", _NOT_FOUND):
            return None
        raise
    out: list[dict[str, Any]] = []
    for _ in range(max_pages):  # bounded: a shard of the batch's range is finite
        if not iterator:
            break
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        records = page.get("Records", [])
        for r in records:
            seq = int(r["dynamodb"]["SequenceNumber"])
            if start <= seq <= end:
                out.append(r)
        if not records or int(records[-1]["dynamodb"]["SequenceNumber"]) >= end:
            break
        iterator = page.get("NextShardIterator")
    return out or None  # none of the batch's records is left in the stream


def replay_dead_letters(sqs: Any, streams: Any, queue_url: str, replicator: Replicator, *,
                        max_messages: int = 1000) -> ReplayReport:
    """Re-apply the batches the event source mapping gave up on. A message is deleted only when every
    record of its batch applied (or was a no-op); otherwise it stays for the next replay."""
    messages = replayed = records = failed = expired = 0
    while messages < max_messages:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, max_messages - messages),
                                    WaitTimeSeconds=0, VisibilityTimeout=60).get("Messages", [])
        if not batch:
            break
        for message in batch:
            messages += 1
            try:
                info = json.loads(message["Body"])["DDBStreamBatchInfo"]
            except (KeyError, ValueError, TypeError):
                failed += 1
                continue
            found = _batch_records(streams, info)
            if found is None:
                expired += 1
                continue
            result = replicator.handle_batch(found)
            records += len(found)
            failed += len(result.failures)
            if not result.failures:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                replayed += 1
    return ReplayReport(replicator.region.name, messages, replayed, records, failed, expired)


# -- the Lambda entry point ----------------------------------------------------------------------
_REPLICATOR: Replicator | None = None


def region_clients(name: str, endpoint_url: str | None = None) -> Region:
    """boto3 clients of one region; the shadow data plane at the account's ATS endpoint."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=20)
    iot = boto3.client("iot", region_name=name, endpoint_url=endpoint_url, config=config)
    data_url = endpoint_url or "https://" + iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    data = boto3.client("iot-data", region_name=name, endpoint_url=data_url, config=config)
    return Region.of(name, iot, data)


def from_environment(env: Mapping[str, str] = os.environ) -> Replicator:
    """The function's configuration: AWS_REGION (set by Lambda), REPLICATION_ENV, APPLIED_TABLE,
    METRIC_NAMESPACE; AWS_ENDPOINT_URL only in tests (moto)."""
    import boto3

    region = env["AWS_REGION"]
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    cloudwatch = boto3.client("cloudwatch", region_name=region, endpoint_url=endpoint)
    dimensions = [{"Name": "Env", "Value": env["REPLICATION_ENV"]}, {"Name": "Region", "Value": region}]
    namespace = env.get("METRIC_NAMESPACE") or METRIC_NAMESPACE

    def metrics(lags: Sequence[int]) -> None:
        put_lag_metrics(cloudwatch, namespace, dimensions, lags)

    store = DynamoAppliedStore(boto3.client("dynamodb", region_name=region, endpoint_url=endpoint),
                               env["APPLIED_TABLE"])
    return Replicator(region_clients(region, endpoint), store, lambda r: region_clients(r, endpoint), metrics)


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda: stream batches (`Records`) and the daily reconciliation (`{"reconcile": {"from": R}}`)."""
    import logging

    global _REPLICATOR
    if _REPLICATOR is None:
        _REPLICATOR = from_environment()
    log = logging.getLogger("orchestrate.replication")
    if "Records" in event:
        result = _REPLICATOR.handle_batch(event["Records"])
        log.info(json.dumps({o.value: result.count(o) for o in Outcome}))
        for r in result.results:
            if r.outcome is Outcome.FAILED:
                log.warning(json.dumps({"sequence": r.sequence, "key": r.key, "error": r.detail}))
        return result.response()
    if isinstance(event.get("reconcile"), Mapping):
        outcome = reconcile(_REPLICATOR, str(event["reconcile"]["from"]))
        log.info(json.dumps(outcome))
        return outcome
    raise ValueError("unknown event: expected stream Records or a reconcile request")
