"""Continuous replication: the function behind the registry-events table's stream in one region.

The replication stack deploys this module (with the rest of `orchestrator.registry`, packaged by
`programs.package`) as an AWS Lambda function in every region that receives changes: each secondary,
and every member in latency mode. Its stream records are registry events and shadow documents
written by the topic rules of the regions where changes happen (`orchestrator.registry.events`).
It imports neither click nor pulumi: only the standard library and boto3, as Lambda provides.

For each record, in stream order (one record at a time: one object's events never interleave):

0. trust: a record that is not an object, or cannot be read, and a record whose origin is not a
   member region of the environment (MEMBER_REGIONS) or whose event time is more than
   MAX_FUTURE_SKEW_MS ahead of the function's clock (or older than the table keeps items) is
   refused: sent to the dead-letter queue as `{"refusedRecord": ...}` (never retried, never applied,
   never a watermark) while the rest of the batch goes on;
1. own origin: an item written by this region's own rules is not applied (the change already
   happened here); a registry event's order only advances the watermark, so a late echo of an
   older state from another region cannot overwrite it. Shadows and retained messages do not
   advance it: which of the two is newer is read from the destination's own times when the
   source's change is applied (see 3), section by section for shadows, and our own replica
   writes (whose echoes arrive here as own-origin items too) never hold back a source change;
2. duplicates and reordering: every replicated object (a thing, a type, a group, a membership, a
   shadow) has a watermark (event time, version, event id) in the region's `applied` table; an
   event not newer than it is a no-op, a newer one advances it with a conditional write. The object
   is applied under a lease (a conditional item in the same table), so two invocations (stream
   shards, a replay) never interleave one object's read-compare-write. Two thing events in the same
   millisecond cannot be ordered (versions restart when a thing is deleted and created again): the
   thing is then read in its origin and made equal to that;
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
   destination's), with the registry sync's newer-wins rule (`plan.newer_in_destination`): a
   section (desired, reported) the destination wrote after the source last did, by the shadows'
   per-field metadata times, is kept (`Outcome.KEPT` when nothing else differs). The destination
   version our own write left is recorded (`AppliedStore.set_written`, the sync's
   `written_shadows`): while the destination still has it, its times are our write's, not newer
   state, and the source wins. Writes carry a client token signed by a KMS HMAC key
   (`ShadowSigner`) over the state the write leaves behind (kept sections included); the rules keep
   every update document (a device chooses its own token), and a function that receives one whose
   token verifies for its state knows it for a replica write and does not apply it. Retained
   messages under the configured prefixes (`EventKind.RETAINED`, `_retained`): the rule sees every
   publish and cannot tell a retained one, so the topic is made equal to the origin's retained
   message as it is now (GetRetainedMessage; absent: cleared) with `retained.apply_retained`
   (publish retain=true, read back), kept when the destination's message is newer and not our own
   republish; the republish carries the MQTT 5 user property `orchestrate-replica` (a token signed
   over topic and payload) by which the other regions' functions recognise its echo; a payload
   over IoT Core's 128 KB message limit or a topic outside the prefixes is refused;
4. AWS API calls that registry events do not carry (certificate status, policy attachments, policy
   versions: CloudTrail -> EventBridge, `handle_api_event`) only name an object: it is read in the
   call's region and this region made equal to it, under the same lease, with the same checks.
   Dynamic thing groups go this way from both paths (their THING_GROUP_EVENT has no query): the
   group is read in its origin and made equal here (`dynamic_groups.carry`), and membership events
   of a dynamic group are not applied (each region's query answers them);
5. failures: a record that cannot be applied is reported in `batchItemFailures` (the rest of the
   batch still applies); Lambda retries it and, after the mapping's retries, sends the batch's
   description to the dead-letter queue, from which `orchestrate registry replay --from-dlq`
   re-reads the records from the environment's own stream and the things and shadows they name
   from their origin (`replay_dead_letters`).

Replication lag (apply time minus event time) goes to CloudWatch as `ReplicationLag` (ms).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from orchestrator.registry import dynamic_groups
from orchestrator.registry.calls import Caller, RateLimiter, RetryPolicy, error_code
from orchestrator.registry.events import (
    CLIENT_TOKEN_PREFIX,
    LAG_METRIC,
    METRIC_NAMESPACE,
    REPLICA_PROPERTY,
    ApiCall,
    EventKind,
    ObjectKind,
    Operation,
    PoisonRecord,
    ReplicationEvent,
    is_api_call,
    parse_api_call,
    parse_record,
)
from orchestrator.registry.plane import PlaneAction, PlaneOp
from orchestrator.registry.policydoc import RegionRewrite, normalize_document
from orchestrator.registry.retained import KIND as RETAINED_KIND
from orchestrator.registry.retained import (
    RetainedMessage,
    RetainedSnapshot,
    apply_retained,
    get_retained,
    in_scope,
    user_properties_of,
    with_user_property,
)
from orchestrator.registry.snapshot import (
    Certificate,
    Coverage,
    Policy,
    PolicyTarget,
    RegistrySnapshot,
    Shadow,
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
from orchestrator.registry.sync import Action, Kind, SyncOp, SyncPlan, SyncReport, apply_sync, plan_sync
from orchestrator.registry.sync.plan import newer_in_destination, shadow_after, shadow_writes

RECONCILIATION_KEY = "reconciliation"
WATERMARK_TTL_S = 30 * 24 * 3600
_NOT_FOUND = "ResourceNotFoundException"
# trust bounds on what a record claims (`Replicator.check`)
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000  # an event time further ahead of the function's clock is refused
MAX_EVENT_AGE_MS = 7 * 24 * 3600 * 1000  # the table's item TTL: no genuine item is older
# one object is applied by one invocation at a time: a lease item in the applied table
LEASE_MS = 120_000  # longer than one record's reads and writes (20 s read timeout, bounded retries)
LEASE_WAIT_S = 30.0  # how long a record waits for another invocation's lease before failing (retried)
LEASE_PREFIX = "lease/"
# IoT Core's message size quota ("The payload for every publish request is limited to 128 KB",
# AWS IoT Core message broker limits; docs/field-notes-iot.md, "Retained messages"): a retained
# message is a published message; a record claiming a larger payload is refused (dead letter)
MAX_RETAINED_PAYLOAD = 128 * 1024


class Outcome(str, Enum):
    APPLIED = "applied"        # a write was sent
    UNCHANGED = "unchanged"    # the destination already held it: no write
    STALE = "stale"            # not newer than what was applied: duplicate or out of order
    OWN_ORIGIN = "own_origin"  # the change happened in this region
    IGNORED = "ignored"        # nothing to replicate (TTL removal, type association, a dynamic group's membership)
    ECHO = "echo"              # a replica write by a replication function (its signed client token)
    KEPT = "kept"              # the destination's own state is newer (shadow section times, retained message time)
    REFUSED = "refused"        # untrusted or malformed: sent to the dead-letter queue, never applied
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


class Refused(Exception):
    """A record whose claims are not trusted (origin outside the environment, time out of bounds,
    unreadable): it goes to the dead-letter queue and never moves a watermark."""


class LeaseBusy(Exception):
    """Another invocation is applying the same object: the record fails and is retried."""


# -- watermarks -------------------------------------------------------------------------------
class AppliedStore(Protocol):
    def get(self, key: str) -> tuple[int, int] | None: ...
    def advance(self, key: str, order: tuple[int, int], event_id: str = "") -> bool: ...
    def last_event(self, key: str) -> str | None: ...
    def written(self, key: str) -> int | None: ...
    def set_written(self, key: str, version: int) -> None: ...
    def acquire(self, key: str, owner: str, now_ms: int, lease_ms: int) -> bool: ...
    def release(self, key: str, owner: str) -> None: ...
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

    def advance(self, key: str, order: tuple[int, int], event_id: str = "") -> bool:
        t, v = order
        return self._update_if(
            key, "SET eventTimeMs = :t, version = :v, eventId = :e, expiresAt = :x",
            "attribute_not_exists(eventTimeMs) OR eventTimeMs < :t OR (eventTimeMs = :t AND version < :v)",
            {":t": {"N": str(t)}, ":v": {"N": str(v)}, ":e": {"S": event_id}})

    def last_event(self, key: str) -> str | None:
        item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": key}},
                                    ConsistentRead=True).get("Item") or {}
        return item.get("eventId", {}).get("S")

    def written(self, key: str) -> int | None:
        """The destination's shadow version our own last write of `key` left (None: none recorded)."""
        item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": key}},
                                    ConsistentRead=True).get("Item") or {}
        value = item.get("writtenVersion", {}).get("N")
        return int(value) if value is not None else None

    def set_written(self, key: str, version: int) -> None:
        """Record the destination's version our write of `key` left: while the destination still has
        it, nobody else wrote the shadow, so its times are ours, not newer device state."""
        self.client.update_item(
            TableName=self.table, Key={"objectKey": {"S": key}},
            UpdateExpression="SET writtenVersion = :w, expiresAt = :x",
            ExpressionAttributeValues={":w": {"N": str(int(version))},
                                       ":x": {"N": str(int(self.clock()) + WATERMARK_TTL_S)}})

    def acquire(self, key: str, owner: str, now_ms: int, lease_ms: int) -> bool:
        """Take (or renew) the object's lease; False while another owner holds an unexpired one."""
        return self._update_if(
            LEASE_PREFIX + key, "SET leaseOwner = :o, leaseUntil = :u, expiresAt = :x",
            "attribute_not_exists(leaseOwner) OR leaseOwner = :o OR leaseUntil < :n",
            {":o": {"S": owner}, ":u": {"N": str(now_ms + lease_ms)}, ":n": {"N": str(now_ms)}})

    def lease(self, key: str) -> tuple[str, int] | None:
        """Who holds the object's lease and until when (epoch ms); None when nobody does (never
        taken, or released: `release` deletes the item)."""
        item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": LEASE_PREFIX + key}},
                                    ConsistentRead=True).get("Item")
        if not item or "leaseOwner" not in item:
            return None
        return item["leaseOwner"]["S"], int(item.get("leaseUntil", {"N": "0"})["N"])

    def _update_if(self, object_key: str, update: str, condition: str, values: Mapping[str, Any]) -> bool:
        """One conditional UpdateItem that also sets the item's TTL (`:x`); False when the
        condition does not hold (another writer got there first)."""
        try:
            self.client.update_item(
                TableName=self.table, Key={"objectKey": {"S": object_key}}, UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues={**values, ":x": {"N": str(int(self.clock()) + WATERMARK_TTL_S)}})
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, key: str, owner: str) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key={"objectKey": {"S": LEASE_PREFIX + key}},
                                    ConditionExpression="leaseOwner = :o",
                                    ExpressionAttributeValues={":o": {"S": owner}})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

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


# -- recognising replica shadow writes ---------------------------------------------------------
class ShadowSigner:
    """Client tokens a device cannot forge: CLIENT_TOKEN_PREFIX + an HMAC-SHA256 (a KMS HMAC key,
    multi-Region, replicated to every function region; only the functions' role may use it) over
    the thing, the shadow and the state the write leaves behind. The shadow rules keep every update
    document; the function that receives one with a valid token knows it for another function's
    replica write (its echo) and does not apply it. A device that copies a token onto its own update
    changes the state, so the token no longer verifies and the update replicates like any other."""

    ALGORITHM = "HMAC_SHA_256"

    def __init__(self, kms: Any, key_id: str) -> None:
        self.kms = kms
        self.key_id = key_id

    @staticmethod
    def message(thing: str, shadow: str, desired: str | None, reported: str | None) -> bytes:
        body = json.dumps([thing, shadow, desired, reported], separators=(",", ":"))
        return hashlib.sha256(body.encode()).digest()  # KMS takes at most 4 KB; shadows reach 8 KB

    @staticmethod
    def retained_message(topic: str, payload: bytes) -> bytes:
        """What a retained republish's token covers: its topic and payload (a different kind of
        message than a shadow's, so neither token verifies as the other)."""
        body = json.dumps(["retained", topic, base64.b64encode(payload).decode()], separators=(",", ":"))
        return hashlib.sha256(body.encode()).digest()

    def token(self, thing: str, shadow: str, desired: str | None, reported: str | None) -> str:
        return self._token(self.message(thing, shadow, desired, reported))

    def retained_token(self, topic: str, payload: bytes) -> str:
        return self._token(self.retained_message(topic, payload))

    def _token(self, message: bytes) -> str:
        mac = self.kms.generate_mac(KeyId=self.key_id, MacAlgorithm=self.ALGORITHM, Message=message)["Mac"]
        return CLIENT_TOKEN_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()  # 55 of 64 chars

    def verify(self, token: str, thing: str, shadow: str, desired: str | None, reported: str | None) -> bool:
        return self._verify(token, self.message(thing, shadow, desired, reported))

    def verify_retained(self, token: str, topic: str, payload: bytes) -> bool:
        return self._verify(token, self.retained_message(topic, payload))

    def _verify(self, token: str, message: bytes) -> bool:
        if not token.startswith(CLIENT_TOKEN_PREFIX):
            return False
        raw = token[len(CLIENT_TOKEN_PREFIX):]
        try:
            mac = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (ValueError, TypeError):
            return False
        if len(mac) != 32:
            return False
        try:
            return bool(self.kms.verify_mac(KeyId=self.key_id, MacAlgorithm=self.ALGORITHM, Mac=mac,
                                            Message=message)["MacValid"])
        except Exception as exc:
            if error_code(exc) == "KMSInvalidMacException":
                return False
            raise


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
    """Applies stream records to `region`. `origin(region)` gives the clients of a source region.

    Trust: only `members` (the environment's regions) are accepted as origins, event times must lie
    within MAX_FUTURE_SKEW_MS ahead of and MAX_EVENT_AGE_MS behind `clock`; anything else, and any
    record that cannot be read, is `Outcome.REFUSED`: handed to `dead_letter` (the function's
    dead-letter queue) and never applied, never a watermark. Without `dead_letter` a refused record
    with a sequence number is reported as failed (Lambda retries it, then dead-letters the batch)."""

    region: Region
    store: AppliedStore
    origin: Callable[[str], Region]
    metrics: Callable[[Sequence[int]], None] | None = None
    clock: Callable[[], float] = time.time
    region_rewrite: RegionRewrite = RegionRewrite.DESTINATION
    members: frozenset[str] = frozenset()
    dead_letter: Callable[[Mapping[str, Any]], None] | None = None
    shadow_signer: ShadowSigner | None = None
    # the topology's `registry.retained_topics`: retained events for any other topic are refused
    retained_prefixes: tuple[str, ...] = ()
    lease_wait_s: float = LEASE_WAIT_S
    sleep: Callable[[float], None] = time.sleep
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    _origins: dict[str, Region] = field(default_factory=dict, repr=False)

    # batch ------------------------------------------------------------------------------------
    def handle_batch(self, records: Iterable[Any], *, reread: bool = False) -> BatchResult:
        """Records in stream order, one at a time (one object's events never interleave here; across
        invocations the object's lease keeps them apart). `reread`: things and shadows are taken
        from their origin as it is now, not from the record (`registry replay`)."""
        results = []
        for record in records:
            results.append(self.handle_record(record, reread=reread))
        lags = [r.lag_ms for r in results if r.lag_ms is not None]
        if lags and self.metrics is not None:
            self.metrics(lags)
        return BatchResult(tuple(results))

    def handle_record(self, record: Any, *, reread: bool = False) -> RecordResult:
        if not isinstance(record, Mapping):
            return self._refuse(record, "", "?", f"record is a {type(record).__name__}, not an object")
        try:
            event = parse_record(record)
        except PoisonRecord as exc:
            return self._refuse(record, exc.sequence if exc.sequence != "?" else "", "?", exc.reason)
        except Exception as exc:  # a record of the wrong shape (e.g. `dynamodb` not an object)
            return self._refuse(record, "", "?", f"unreadable record ({type(exc).__name__})")
        if event is None:
            sequence = str(record.get("dynamodb", {}).get("SequenceNumber"))
            return RecordResult(sequence, "-", Outcome.IGNORED, "removal")
        try:
            self.check(event)
        except Refused as exc:
            return self._refuse(record, event.sequence, event.key, str(exc), event)
        try:
            outcome = self.handle(event, reread=reread)
        except Exception as exc:  # one bad record never blocks the batch
            code = error_code(exc) or type(exc).__name__
            detail = f"{code}: {' '.join(str(exc).split())}"[:300]
            return RecordResult(event.sequence, event.key, Outcome.FAILED, detail)
        lag = None
        if outcome in (Outcome.APPLIED, Outcome.UNCHANGED, Outcome.KEPT):
            lag = max(0, int(self.clock() * 1000) - event.event_time_ms)
        return RecordResult(event.sequence, event.key, outcome, lag_ms=lag)

    def check(self, event: ReplicationEvent | ApiCall) -> None:
        """What a record claims, checked before anything is read or written (raises Refused)."""
        if event.origin not in self.members:
            raise Refused(f"origin {event.origin!r} is not a member region of this environment "
                          f"({', '.join(sorted(self.members)) or 'none configured'})")
        now = int(self.clock() * 1000)
        if event.event_time_ms > now + MAX_FUTURE_SKEW_MS:
            raise Refused(f"event time {event.event_time_ms} is {(event.event_time_ms - now) // 1000} s in the "
                          f"future (at most {MAX_FUTURE_SKEW_MS // 1000} s of clock skew is accepted)")
        if event.event_time_ms < now - MAX_EVENT_AGE_MS:
            raise Refused(f"event time {event.event_time_ms} is older than the table keeps items")
        if isinstance(event, ReplicationEvent) and event.kind is EventKind.RETAINED:
            topic, size = event.name, len(event.body["payload"])
            if not in_scope(topic, self.retained_prefixes):
                raise Refused(f"retained topic {topic!r} is not under the configured prefixes "
                              f"({', '.join(self.retained_prefixes) or 'none configured'})")
            if size > MAX_RETAINED_PAYLOAD:
                raise Refused(f"retained message on {topic!r} has a payload of {size} bytes, over IoT Core's "
                              f"{MAX_RETAINED_PAYLOAD}-byte message size limit: not replicated")

    def _refuse(self, record: Any, sequence: str, key: str, reason: str,
                event: ReplicationEvent | None = None) -> RecordResult:
        source = record.get("eventSourceARN") if isinstance(record, Mapping) else None
        letter = {"refusedRecord": {"reason": reason, "sequence": sequence, "key": key,
                                    "eventSourceARN": source if isinstance(source, str) else None,
                                    "region": self.region.name,
                                    **({"origin": event.origin, "eventTimeMs": event.event_time_ms,
                                        "eventId": event.event_id} if event else {})}}
        if self.dead_letter is None:
            if sequence:
                return RecordResult(sequence, key, Outcome.FAILED, reason)
            return RecordResult(sequence, key, Outcome.REFUSED, reason)
        try:
            self.dead_letter(letter)
        except Exception as exc:
            if sequence:  # not dead-lettered: Lambda retries it
                return RecordResult(sequence, key, Outcome.FAILED, f"{reason}; dead letter: {error_code(exc)}")
            raise
        return RecordResult(sequence, key, Outcome.REFUSED, reason)

    def handle(self, event: ReplicationEvent, *, reread: bool = False) -> Outcome:
        if event.kind is EventKind.IGNORED:
            return Outcome.IGNORED
        self.check(event)
        if event.origin == self.region.name:
            # a shadow's newer state here is told by its own section times (`_shadow`), not by this
            # event's time: such a watermark would hold back the other section's newer changes, and
            # our own replica writes (whose echoes arrive here too) would hold back every source
            # change older than the write
            if event.kind not in (EventKind.SHADOW, EventKind.RETAINED):
                self.store.advance(event.key, event.order, event.event_id)
            return Outcome.OWN_ORIGIN
        if event.kind is EventKind.SHADOW and self._is_echo(event):
            return Outcome.ECHO
        if event.kind is EventKind.RETAINED and self._is_retained_echo(event):
            return Outcome.ECHO
        with self._lease(event.key):
            seen = self.store.get(event.key)
            if event.kind is EventKind.RETAINED:
                # older than what was applied: stale; the same millisecond: the origin decides (as
                # for things), unless it is the very same event again
                if seen is not None and (event.order < seen or (
                        event.order == seen and self.store.last_event(event.key) == event.event_id)):
                    return Outcome.STALE
                outcome = self._retained(event)
                if seen is None or event.order > seen:
                    self.store.advance(event.key, event.order, event.event_id)
                return outcome
            if reread and event.kind is EventKind.SHADOW:
                outcome = self._reread_shadow(event)
                if seen is None or event.order > seen:
                    self.store.advance(event.key, event.order, event.event_id)
                return outcome
            if reread and event.kind is EventKind.THING:
                changed = self._reread(event)
                if seen is None or event.order > seen:
                    self.store.advance(event.key, event.order, event.event_id)
                return Outcome.APPLIED if changed else Outcome.UNCHANGED
            if (seen is not None and event.kind is EventKind.THING and event.event_time_ms == seen[0]):
                # the same millisecond as what was applied: versions restart when a thing is deleted
                # and created again, so the order is unknown; the origin says how it ended
                if self.store.last_event(event.key) == event.event_id:
                    return Outcome.STALE  # the very same event again
                return Outcome.APPLIED if self._reread(event) else Outcome.UNCHANGED
            if seen is not None and event.order <= seen:
                return Outcome.STALE
            if event.kind is EventKind.SHADOW:
                outcome = self._shadow(event.key, *self._shadow_snapshots(event))
                self.store.advance(event.key, event.order, event.event_id)
                return outcome
            applied = self._apply(event)
            if applied is None:
                return Outcome.IGNORED
            self.store.advance(event.key, event.order, event.event_id)
            return Outcome.APPLIED if applied else Outcome.UNCHANGED

    @contextlib.contextmanager
    def _lease(self, key: str) -> Iterator[None]:
        deadline = time.monotonic() + self.lease_wait_s
        while not self.store.acquire(key, self.owner, int(self.clock() * 1000), LEASE_MS):
            if time.monotonic() >= deadline:
                raise LeaseBusy(f"{key} is being applied by another invocation")
            self.sleep(0.05)
        try:
            yield
        finally:
            self.store.release(key, self.owner)

    # -- AWS API calls (CloudTrail via EventBridge): re-read the named object in its region --------
    def handle_api_event(self, event: Any) -> RecordResult:
        """One "AWS API Call via CloudTrail" event. Its contents only name the object: the object is
        read in the call's region and this region made equal to it (the registry sync's operations),
        under the object's lease. Idempotent, and loop-safe: this function's own calls happen here
        (own origin), and where they are forwarded the re-read finds nothing to change."""
        ident = str(event.get("id") or "") if isinstance(event, Mapping) else ""
        if not isinstance(event, Mapping):
            return self._refuse(event, "", "?", f"event is a {type(event).__name__}, not an object")
        try:
            call = parse_api_call(event)
        except PoisonRecord as exc:
            return self._refuse(event, "", "?", exc.reason)
        if call is None:
            return RecordResult(ident, "-", Outcome.IGNORED, "not a call that changes what is replicated")
        try:
            self.check(call)
        except Refused as exc:
            return self._refuse(event, "", call.key, str(exc))
        if call.origin == self.region.name:
            return RecordResult(call.event_id, call.key, Outcome.OWN_ORIGIN)
        lease = f"{EventKind.THING.value}/{call.object}" if call.kind is ObjectKind.THING else \
            f"{EventKind.THING_GROUP.value}/{call.object}" if call.kind is ObjectKind.DYNAMIC_GROUP else call.key
        try:
            with self._lease(lease):
                changed = self._reread_object(call)
        except Exception as exc:
            code = error_code(exc) or type(exc).__name__
            return RecordResult(call.event_id, call.key, Outcome.FAILED,
                                f"{code}: {' '.join(str(exc).split())}"[:300])
        if changed is None:
            return RecordResult(call.event_id, call.key, Outcome.IGNORED)
        lag = max(0, int(self.clock() * 1000) - call.event_time_ms)
        return RecordResult(call.event_id, call.key, Outcome.APPLIED if changed else Outcome.UNCHANGED, lag_ms=lag)

    def _reread_object(self, call: ApiCall) -> bool | None:
        src = self._source(call.origin)
        if call.kind is ObjectKind.THING:
            as_event = ReplicationEvent(EventKind.THING, Operation.UPDATED, call.object, call.origin,
                                        call.event_time_ms, 0, call.event_id, call.event_id)
            return self._reread(as_event)
        if call.kind is ObjectKind.CERTIFICATE:
            return self._certificate_status(src, call.object)
        if call.kind is ObjectKind.DYNAMIC_GROUP:
            carried = dynamic_groups.carry(src.iot, self.region.iot, call.object, src_region=call.origin,
                                           dst_region=self.region.name, mode=self.region_rewrite)
            return bool(carried)  # None: static in the origin and here: its registry events carry it
        if call.kind is ObjectKind.POLICY:
            theirs, ours = _get_policy(src.iot, call.object), _get_policy(self.region.iot, call.object)
            if theirs is None or ours is None:
                return False  # not here yet: the policy is copied with its first attachment
            return self._run(RegistrySnapshot(call.origin, policies=(theirs,)),
                             RegistrySnapshot(self.region.name, policies=(ours,)))
        policy, target = call.object.split("|", 1)
        return self._policy_target(src, policy, target)

    def _certificate_status(self, src: Region, cert_id: str) -> bool:
        theirs, ours = _cert_status(src.iot, cert_id), _cert_status(self.region.iot, cert_id)
        if theirs is None or ours is None or theirs == ours:
            return False  # not here yet: the thing's next event or the reconciliation brings it
        if theirs not in ("ACTIVE", "INACTIVE", "REVOKED") or ours == "REVOKED":
            raise ApplyFailed(f"certificate {cert_id} is {theirs} in the origin and {ours} here: "
                              f"not changed (a revocation is never undone)")
        return self._one(Kind.CERTIFICATE, Action.UPDATE, cert_id, status=theirs)

    def _policy_target(self, src: Region, policy: str, target: str) -> bool | None:
        if ":cert/" in target:
            kind, name = TargetKind.CERTIFICATE, target.rsplit(":cert/", 1)[1]
            ours = _cert_arn(self.region.iot, name)
        elif ":thinggroup/" in target:
            kind, name = TargetKind.THING_GROUP, target.rsplit(":thinggroup/", 1)[1]
            group = _call_or_none(self.region.iot, "describe_thing_group", thingGroupName=name)
            ours = group["thingGroupArn"] if group else None
        else:
            return None  # Cognito identities and other principals are not replicated
        if ours is None:
            return False  # the target is not here yet
        there = policy in _attached(src.iot, target)
        here = policy in _attached(self.region.iot, ours)
        op_name = f"{policy}/{kind.value}:{name}"
        params = {"policy": policy, "target_kind": kind.value, "target": name}
        if there and not here:
            theirs = _get_policy(src.iot, policy)
            if theirs is None:
                return False  # deleted there since: nothing to attach
            if _get_policy(self.region.iot, policy) is None:
                self._run(RegistrySnapshot(src.name, policies=(theirs,)), RegistrySnapshot(self.region.name))
            return self._one(Kind.POLICY_ATTACHMENT, Action.CREATE, op_name, **params)
        if here and not there:  # a permission taken away: always propagates (never waits for --prune)
            return self._one(Kind.POLICY_ATTACHMENT, Action.DELETE, op_name, **params)
        return False

    def _is_echo(self, event: ReplicationEvent) -> bool:
        token = event.body.get("clientToken")
        if self.shadow_signer is None or not isinstance(token, str) or not token.startswith(CLIENT_TOKEN_PREFIX):
            return False
        shadow = shadow_from_document(event.body["thing"], event.body["shadow"], event.body["current"])
        return self.shadow_signer.verify(token, shadow.thing, shadow.name, shadow.desired, shadow.reported)

    def _is_retained_echo(self, event: ReplicationEvent) -> bool:
        token = event.body.get("replicaToken")
        if self.shadow_signer is None or not isinstance(token, str):
            return False
        return self.shadow_signer.verify_retained(token, event.name, event.body["payload"])

    def _retained(self, event: ReplicationEvent) -> Outcome:
        """One retained topic: made equal to the origin's retained message as it is now (the rule
        sees every publish, retained or not, and cannot tell which: GetRetainedMessage in the origin
        can; absent there = cleared), with `retained.apply_retained` (publish with retain=true, an
        empty payload clears; read back). The destination's message is kept when it is newer
        (lastModifiedTime after the origin's, or after the event when the origin has none) and is
        not our own republish (its `orchestrate-replica` token verifies). Our republish carries
        that token, so its echo is recognised in the other regions and never applied back."""
        if self.shadow_signer is None:
            raise ApplyFailed("retained messages are replicated only with the signing key (SHADOW_TOKEN_KEY): "
                              "without it the function's own republish could not be told from newer messages")
        topic = event.name
        theirs, their_time = get_retained(self._source(event.origin).data, topic)
        ours, our_time = get_retained(self.region.data, topic)
        src_time = their_time if theirs is not None else event.event_time_ms
        if ours is not None and our_time > src_time and not self._our_republish(ours):
            return Outcome.KEPT if theirs is None or not theirs.same(ours) else Outcome.UNCHANGED
        if theirs is None:
            if ours is None:
                return Outcome.UNCHANGED
            op = PlaneOp(RETAINED_KIND, PlaneAction.DELETE, topic)
            want: dict[str, RetainedMessage] = {}
        else:
            if ours is not None and ours.same(theirs):
                return Outcome.UNCHANGED
            token = self.shadow_signer.retained_token(topic, theirs.payload)
            want = {topic: with_user_property(theirs, REPLICA_PROPERTY, token)}
            op = PlaneOp(RETAINED_KIND, PlaneAction.CREATE if ours is None else PlaneAction.UPDATE, topic)
        report = apply_retained((op,), RetainedSnapshot(event.origin, self.retained_prefixes, want),
                                self.region.data, self.region.name)
        if report.errors:
            where, error = report.errors[0]
            raise ApplyFailed(f"{where}: {error}")
        if report.unequal:
            # a later writer here (a device, an operator) between our publish and the read-back
            # superseded it, as a sync's read-back counts a superseded shadow: the newer state
            # stands. Anything else (nothing there, or our own republish not what we wrote) failed.
            now, _ = get_retained(self.region.data, topic)
            if now is not None and not self._our_republish(now):
                return Outcome.KEPT
            raise ApplyFailed(f"{report.unequal[0]} did not read back equal")
        return Outcome.APPLIED

    def _our_republish(self, message: RetainedMessage) -> bool:
        """Whether a retained message here is a replication function's republish (its token
        verifies for its topic and payload): its time is that of our write, not newer state."""
        tokens = [v for k, v in user_properties_of(message.user_properties, replica=True) if k == REPLICA_PROPERTY]
        return bool(tokens) and self.shadow_signer is not None and \
            self.shadow_signer.verify_retained(tokens[-1], message.topic, message.payload)

    def _source(self, name: str) -> Region:
        if name not in self._origins:
            self._origins[name] = self.origin(name)
        return self._origins[name]

    # apply ------------------------------------------------------------------------------------
    def _reread(self, event: ReplicationEvent) -> bool:
        """Apply the object as its origin has it now (not as the record says it was)."""
        src = self._source(event.origin)
        if event.kind is EventKind.SHADOW:
            return self._reread_shadow(event) is Outcome.APPLIED
        thing = _describe_thing(src.iot, event.name)
        if thing is None:
            return self._delete_thing(event.name)
        now = replace(event, operation=Operation.UPDATED,
                      body={"thingTypeName": thing.thing_type, "attributes": dict(thing.attributes)})
        src_snap, dst_snap = self._thing_snapshots(now)
        return self._run(src_snap, dst_snap)

    def _reread_shadow(self, event: ReplicationEvent) -> Outcome:
        """The shadow as its origin has it now against the destination's (`registry replay`)."""
        thing, name = event.body["thing"], event.body["shadow"]
        found = read_shadows(self._source(event.origin).data, [thing], names={thing: [name]})
        if not found:
            return Outcome.UNCHANGED  # deleted there: shadow deletions are not replicated (as in sync)
        if _describe_thing(self.region.iot, thing) is None:
            raise ApplyFailed(f"thing {thing} does not exist in {self.region.name} yet")
        return self._shadow(event.key, RegistrySnapshot(event.origin, shadows=tuple(found)),
                            self._dst_shadow(event.key, thing, name))

    def _apply(self, event: ReplicationEvent) -> bool | None:
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
        return self._apply_plan(plan)  # shadows go through `_shadow` (signed, their writes recorded)

    def _shadow(self, key: str, src: RegistrySnapshot, dst: RegistrySnapshot) -> Outcome:
        """One shadow, the registry sync's rule and code: `plan_sync` keeps each section the
        destination wrote after the source last did (`newer_in_destination`: a device that
        reported here after the change the event carries) and writes the rest; the write's client
        token is signed over the state it leaves behind, and the destination's version it leaves is
        recorded (`AppliedStore.set_written`) so that our own write's times never pass for newer
        state here (`_dst_shadow`). KEPT: the destination is newer in every section that differs."""
        plan = plan_sync(src, dst, False, region_rewrite=self.region_rewrite)
        if not plan.ops:
            return Outcome.KEPT if plan.shadows_kept else Outcome.UNCHANGED
        if self.shadow_signer is not None:
            ours = {sh.key: sh for sh in dst.shadows}
            targets = {sh.key: newer_in_destination(sh, ours[sh.key])[0] if sh.key in ours else sh
                       for sh in src.shadows}
            plan = replace(plan, ops=tuple(self._signed(op, targets, ours) for op in plan.ops))
        report = self._apply_report(plan)
        for version, _at in report.shadow_writes.values():
            if version is not None:
                self.store.set_written(key, version)
        return Outcome.APPLIED

    def _dst_shadow(self, key: str, thing: str, name: str) -> RegistrySnapshot:
        """The destination's shadow; when it still has the version our own last write left, its
        metadata times are those of our write, not of newer state here: they are dropped, and the
        source wins (the registry sync's `written_shadows`)."""
        found = read_shadows(self.region.data, [thing], names={thing: [name]})
        written = self.store.written(key) if found else None
        if written is not None:
            found = tuple(replace(sh, desired_at=None, reported_at=None) if sh.version == written else sh
                          for sh in found)
        return RegistrySnapshot(self.region.name, things=(Thing(thing),), shadows=found)

    def _signed(self, op: SyncOp, targets: Mapping[str, Shadow], ours: Mapping[str, Shadow]) -> SyncOp:
        """A shadow write carries a client token signed over the state it leaves behind, which the
        functions of the other regions verify to recognise its echo (a device cannot forge it).
        A patch over the 8 KB limit is written as two documents (`plan.shadow_writes`): the first
        leaves the destination's shadow (`ours`) with the deletions made, and its token covers that
        state, so its echo is recognised too (`client_tokens`, one per document)."""
        target = targets.get(op.name)
        signer = self.shadow_signer
        if op.kind is not Kind.SHADOW or op.action is not Action.UPDATE or target is None or signer is None:
            return op
        token = signer.token(target.thing, target.name, target.desired, target.reported)
        params = {**op.params, "client_token": token}
        documents = shadow_writes(str(op.params["document"]))
        if len(documents) > 1:
            tokens, state = [], ours.get(op.name)
            for document in documents[:-1]:
                state = shadow_after(state, target.thing, target.name, document)
                tokens.append(signer.token(target.thing, target.name, state.desired, state.reported))
            params["client_tokens"] = [*tokens, token]
        return replace(op, params=params)

    def _apply_plan(self, plan: SyncPlan) -> bool:
        if not plan.ops:
            return False
        self._apply_report(plan)
        return True

    def _apply_report(self, plan: SyncPlan) -> SyncReport:
        report = apply_sync(plan, self.region.iot.client, caller=self.region.iot, data_caller=self.region.data)
        if report.errors or report.blocked:
            first = report.errors[0] if report.errors else None
            raise ApplyFailed(f"{first.op}: {first.code} {first.message}" if first else
                              f"{report.blocked} operation(s) blocked")
        return report

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
        return src, self._dst_shadow(event.key, thing, name)

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
        current = describe_thing_group(self.region.iot, name)
        # a dynamic group's event never carries its query: the group is read in its origin
        # (`dynamic_groups.carry`); so is a group about to be made here, whose event may not say
        if body.get("dynamicGroupMappingId") or body.get("queryString") or (current is not None and current.dynamic) \
                or (current is None and event.operation is not Operation.DELETED):
            carried = dynamic_groups.carry(self._source(event.origin).iot, self.region.iot, name,
                                           src_region=event.origin, dst_region=self.region.name,
                                           mode=self.region_rewrite)
            if carried is not None:
                return carried
            if current is not None:  # a dynamic group here was deleted: the origin's is static
                current = describe_thing_group(self.region.iot, name)
        if event.operation is Operation.DELETED:
            if current is None:
                return False
            return self._one(Kind.THING_GROUP, Action.DELETE, name)
        attributes = {str(k): str(v) for k, v in (body.get("attributes") or {}).items()}
        src = ThingGroup(name, body.get("parentGroupName") or None, body.get("description") or None, attributes)
        return self._run(RegistrySnapshot(event.origin, thing_groups=(src,)),
                         RegistrySnapshot(self.region.name, thing_groups=(current,) if current else ()))

    def _membership(self, event: ReplicationEvent) -> bool | None:
        group, thing = event.body["group"], event.body["thing"]
        groups = {g["groupName"] for g in self.region.iot.pages("list_thing_groups_for_thing", thingName=thing)}
        if (event.operation is Operation.ADDED) == (group in groups):
            return False
        action = Action.CREATE if event.operation is Operation.ADDED else Action.DELETE
        try:
            return self._one(Kind.GROUP_MEMBERSHIP, action, f"{group}/{thing}", group=group, thing=thing)
        except ApplyFailed:
            # a dynamic group's things are its query's answer in each region (AWS refuses to add or
            # remove one by hand): checked only when the write failed, so a static one costs nothing
            ours = dynamic_groups.describe(self.region.iot, group)
            if dynamic_groups.is_dynamic(ours if ours is not None else
                                         dynamic_groups.describe(self._source(event.origin).iot, group)):
                return None
            raise


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


def _call_or_none(caller: Caller, api: str, **kwargs: Any) -> dict[str, Any] | None:
    try:
        return dict(caller.call(api, **kwargs))
    except Exception as exc:
        if _missing(exc):
            return None
        raise


def _get_policy(caller: Caller, name: str) -> Policy | None:
    d = _call_or_none(caller, "get_policy", policyName=name)
    return Policy(name, normalize_document(d["policyDocument"])) if d else None


def _cert_status(caller: Caller, cert_id: str) -> str | None:
    d = _call_or_none(caller, "describe_certificate", certificateId=cert_id)
    return str(d["certificateDescription"]["status"]) if d else None


def _cert_arn(caller: Caller, cert_id: str) -> str | None:
    d = _call_or_none(caller, "describe_certificate", certificateId=cert_id)
    return str(d["certificateDescription"]["certificateArn"]) if d else None


def _attached(caller: Caller, target: str) -> set[str]:
    try:
        return {p["policyName"] for p in caller.pages("list_attached_policies", target=target)}
    except Exception as exc:
        if _missing(exc):
            return set()
        raise



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
                  "errors": len(report.errors) + report.blocked, "things": report.things_total}
    result["plane"] = plane = reconcile_plane(replicator, source_region)
    result["ok"] = bool(result["ok"] and plane["ok"])
    result["errors"] += plane["errors"]
    result["duration_s"] = round(time.monotonic() - started, 3)
    replicator.store.put_reconciliation(result)
    return result


def reconcile_plane(replicator: Replicator, source_region: str) -> dict[str, Any]:
    """The device-management plane (role aliases, CA certificates, job and provisioning templates,
    authorizers, fleet indexing, dynamic groups, event configurations: `orchestrator.registry.plane`)
    from `source_region` into the function's region, as `registry sync` carries it but never pruning:
    most of these kinds emit no registry event, so this daily pass is what catches a lost or
    never-sent change up. `ok` only when what it wrote reads back equal."""
    from orchestrator.registry.plane import sync_plane

    try:
        report = sync_plane(replicator._source(source_region).iot, replicator.region.iot,
                            mode=replicator.region_rewrite, prune=False)
    except Exception as exc:
        return {"ok": False, "applied": 0, "errors": 1, "counts": {},
                "error": f"{error_code(exc) or type(exc).__name__}"}
    return {"ok": report.ok, "applied": report.applied, "errors": len(report.errors) + len(report.unequal),
            "counts": report.counts()}


# -- dead letters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayReport:
    """What `replay_dead_letters` did: dead-letter messages read, re-applied (and deleted), left;
    `refused`: messages naming a stream that is not the environment's own table's in this region, or
    records the function refused (untrusted origin or time, unreadable): never applied, left for a human."""

    region: str
    messages: int
    replayed: int
    records: int
    failed_records: int
    expired: int  # batches whose records the stream no longer holds (24 h retention)
    refused: int = 0

    @property
    def ok(self) -> bool:
        return self.replayed == self.messages

    def to_json(self) -> dict[str, Any]:
        return {"kind": "registry-replay", "region": self.region, "ok": self.ok, "messages": self.messages,
                "replayed": self.replayed, "records": self.records, "failed_records": self.failed_records,
                "expired": self.expired, "refused": self.refused}


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


def own_streams(streams: Any, table_name: str) -> frozenset[str]:
    """Every stream of the environment's registry-events table in the client's region."""
    found: set[str] = set()
    kwargs: dict[str, Any] = {"TableName": table_name}
    while True:
        page = streams.list_streams(**kwargs)
        found.update(s["StreamArn"] for s in page.get("Streams", []))
        if not page.get("LastEvaluatedStreamArn"):
            return frozenset(found)
        kwargs["ExclusiveStartStreamArn"] = page["LastEvaluatedStreamArn"]


def _batch_info(body: Any, allowed: frozenset[str]) -> Mapping[str, Any] | str:
    """The message's batch description, or why it is refused."""
    info = body.get("DDBStreamBatchInfo") if isinstance(body, Mapping) else None
    if not isinstance(info, Mapping):
        if isinstance(body, Mapping) and isinstance(body.get("refusedRecord"), Mapping):
            return f"a record the function refused: {body['refusedRecord'].get('reason')}"
        return "not a stream batch description"
    fields = ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber")
    if not all(isinstance(info.get(k), (str, int)) and not isinstance(info.get(k), bool) for k in fields):
        return "a batch description without " + "/".join(fields)
    if info["streamArn"] not in allowed:
        return f"stream {info['streamArn']} is not the environment's registry-events table's stream here"
    try:
        start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    except ValueError:
        return "sequence numbers that are not numbers"
    if start > end:
        return "a start sequence number after its end"
    return info


def replay_dead_letters(sqs: Any, streams: Any, queue_url: str, replicator: Replicator, *,
                        allowed_streams: frozenset[str], max_messages: int = 1000) -> ReplayReport:
    """Re-apply the batches the event source mapping gave up on. A message is trusted only as a
    pointer into one of `allowed_streams` (the environment's own table's, from its stack outputs);
    its records pass the function's checks (member origin, time skew) and things and shadows are
    taken from their origin as it is now, not from the records. A message is deleted only when every
    record of its batch applied (or was a no-op); otherwise it stays for the next replay; a refused
    message stays for a human."""
    messages = replayed = records = failed = expired = refused = 0
    kept: list[str] = []  # receipt handles of messages that stay: visible again when the replay ends
    while messages < max_messages:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, max_messages - messages),
                                    WaitTimeSeconds=0, VisibilityTimeout=60).get("Messages", [])
        if not batch:
            break
        for message in batch:
            messages += 1
            try:
                body = json.loads(message["Body"])
            except (KeyError, ValueError, TypeError):
                body = None
            # an API call given up on: by the asynchronous invocation (`requestPayload`) or by
            # EventBridge (the event itself)
            payload = body if is_api_call(body) else body.get("requestPayload") if isinstance(body, Mapping) else None
            if is_api_call(payload):
                outcome = replicator.handle_api_event(payload).outcome
                records += 1
                if outcome is Outcome.REFUSED:
                    refused += 1
                    kept.append(message["ReceiptHandle"])
                elif outcome is Outcome.FAILED:
                    failed += 1
                    kept.append(message["ReceiptHandle"])
                else:
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                    replayed += 1
                continue
            info = _batch_info(body, allowed_streams)
            if isinstance(info, str):
                refused += 1
                kept.append(message["ReceiptHandle"])
                continue
            found = _batch_records(streams, info)
            if found is None:
                expired += 1
                kept.append(message["ReceiptHandle"])
                continue
            result = replicator.handle_batch(found, reread=True)
            records += len(found)
            failed += len(result.failures)
            if result.count(Outcome.REFUSED):
                refused += 1
                kept.append(message["ReceiptHandle"])
                continue
            if not result.failures:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                replayed += 1
            else:
                kept.append(message["ReceiptHandle"])
    for handle in kept:  # what stays is visible again at once (for `status` and the next replay)
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return ReplayReport(replicator.region.name, messages, replayed, records, failed, expired, refused)


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
    MEMBER_REGIONS (comma-separated: the only origins accepted), DEAD_LETTER_QUEUE_URL (where refused
    records go), SHADOW_TOKEN_KEY (the KMS HMAC key of replica shadow writes and retained republishes;
    optional), RETAINED_TOPICS (JSON list: the topology's retained-topic prefixes; optional),
    METRIC_NAMESPACE; AWS_ENDPOINT_URL only in tests (moto)."""
    import boto3

    region = env["AWS_REGION"]
    members = frozenset(r.strip() for r in env.get("MEMBER_REGIONS", "").split(",") if r.strip())
    if region not in members:
        raise ValueError(f"MEMBER_REGIONS {sorted(members)} does not name the function's region {region}")
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    cloudwatch = boto3.client("cloudwatch", region_name=region, endpoint_url=endpoint)
    dimensions = [{"Name": "Env", "Value": env["REPLICATION_ENV"]}, {"Name": "Region", "Value": region}]
    namespace = env.get("METRIC_NAMESPACE") or METRIC_NAMESPACE

    def metrics(lags: Sequence[int]) -> None:
        put_lag_metrics(cloudwatch, namespace, dimensions, lags)

    sqs = boto3.client("sqs", region_name=region, endpoint_url=endpoint)
    queue_url = env["DEAD_LETTER_QUEUE_URL"]

    def dead_letter(letter: Mapping[str, Any]) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(letter, sort_keys=True, default=str))

    key = env.get("SHADOW_TOKEN_KEY") or None
    signer = ShadowSigner(boto3.client("kms", region_name=region, endpoint_url=endpoint), key) if key else None
    store = DynamoAppliedStore(boto3.client("dynamodb", region_name=region, endpoint_url=endpoint),
                               env["APPLIED_TABLE"])
    prefixes = json.loads(env.get("RETAINED_TOPICS") or "[]")
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        raise ValueError("RETAINED_TOPICS must be a JSON list of topic prefixes")
    return Replicator(region_clients(region, endpoint), store, lambda r: region_clients(r, endpoint), metrics,
                      members=members, dead_letter=dead_letter, shadow_signer=signer,
                      retained_prefixes=tuple(prefixes))


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda: stream batches (`Records`), CloudTrail API calls from EventBridge (`detail-type` "AWS
    API Call via CloudTrail"), the daily reconciliation's slices (`{"reconcile": {"from": R, "slice":
    {...}}}`, from the state machine: `reconcile_pass.run_slice`) and a whole reconciliation in one
    invocation (`{"reconcile": {"from": R}}`: small fleets, by hand)."""
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
    if is_api_call(event):
        outcome = _REPLICATOR.handle_api_event(event)
        if outcome.lag_ms is not None and _REPLICATOR.metrics is not None:
            _REPLICATOR.metrics([outcome.lag_ms])
        log.info(json.dumps({"api_call": outcome.key, "outcome": outcome.outcome.value, "detail": outcome.detail}))
        if outcome.outcome is Outcome.FAILED:  # asynchronous invocation: retried, then dead-lettered
            raise ApplyFailed(f"{outcome.key}: {outcome.detail}")
        return {"outcome": outcome.outcome.value, "key": outcome.key}
    if isinstance(event.get("reconcile"), Mapping):
        request = event["reconcile"]
        if "slice" in request:  # one slice of the Step Functions pass (reconcile_pass.py)
            from orchestrator.registry.reconcile_pass import SliceLimits, run_slice

            remaining = getattr(context, "get_remaining_time_in_millis", None)
            step = run_slice(_REPLICATOR, str(request["from"]), SliceLimits.of(request["slice"]),
                             remaining_s=(lambda: remaining() / 1000.0) if callable(remaining) else None)
            log.info(json.dumps(step, sort_keys=True, default=str))
            return step
        summary = reconcile(_REPLICATOR, str(request["from"]))
        log.info(json.dumps(summary))
        return summary
    raise ValueError("unknown event: expected stream Records or a reconcile request")
