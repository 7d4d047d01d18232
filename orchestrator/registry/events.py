"""Registry and shadow events as the replication function receives them: DynamoDB stream records.

The replication stack's topic rules write every registry event (`$aws/events/thing...`) and every
shadow update document (`$aws/things/<thing>/shadow[/name/<shadow>]/update/documents`) into the
registry-events global table (the rule's DynamoDBv2 action: one attribute per JSON field), adding:

    originRegion   the region whose rule wrote the item (where the change happened)
    eventTimeMs    when it happened there (registry events: `timestamp` in ms; shadow documents:
                   `timestamp` in s, times 1000)
    expiresAt      the item's TTL (epoch seconds)
    shadow items:  eventType SHADOW_EVENT, thingName, shadowName ('' for the classic shadow),
                   version (`current.version`), current (the shadow document after the update)
    retained items: eventType RETAINED_EVENT, topic, payload (base64; empty: the retained message
                   is cleared), replicaToken (the publish's `orchestrate-replica` user property),
                   eventTimeMs (the rules engine's `timestamp()`, ms); one rule per configured prefix

`parse_record` turns one stream record (the Lambda event's `Records[i]`) into a frozen
`ReplicationEvent`, or raises `PoisonRecord` when the record cannot be understood (it then goes to
the batch's item failures and, after the retries, to the dead-letter queue). Pure: no AWS calls.

Order: `ReplicationEvent.order` is (event time, version). Registry versions restart at 1 when a
thing is deleted and created again, and shadow versions when a shadow is deleted, so the time comes
first and the version breaks ties within one millisecond (or one second for shadows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

# Shadow writes by `registry sync` and by the replication function carry a client token starting
# with this (`sync.apply.SYNC_CLIENT_TOKEN`; the function's are signed: `replicate.ShadowSigner`).
# The replication rules keep every update document: a device can set any token, so only a token
# whose signature verifies marks a replica write.
CLIENT_TOKEN_PREFIX = "orchestrate-"
METRIC_NAMESPACE = "IotPlatform/Replication"
LAG_METRIC = "ReplicationLag"  # milliseconds from the change in the origin to its apply here
SHADOW_EVENT = "SHADOW_EVENT"
RETAINED_EVENT = "RETAINED_EVENT"
# the MQTT 5 user property a replication function's retained republish carries: a token signed over
# the topic and payload (`replicate.ShadowSigner.retained_token`), by which the functions of the
# other regions recognise the republish's echo (the retained rules record it, `replicaToken`)
REPLICA_PROPERTY = "orchestrate-replica"


class EventKind(str, Enum):
    THING = "thing"
    THING_TYPE = "thing_type"
    THING_GROUP = "thing_group"
    MEMBERSHIP = "group_membership"
    SHADOW = "shadow"
    RETAINED = "retained"  # an MQTT publish under a configured retained-topic prefix
    IGNORED = "ignored"  # understood, nothing to replicate (e.g. a thing-type association: the
    #                      thing's own UPDATED event carries the new type)


class Operation(str, Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    ADDED = "ADDED"
    REMOVED = "REMOVED"


_KINDS = {
    "THING_EVENT": EventKind.THING,
    "THING_TYPE_EVENT": EventKind.THING_TYPE,
    "THING_GROUP_EVENT": EventKind.THING_GROUP,
    "THING_GROUP_MEMBERSHIP_EVENT": EventKind.MEMBERSHIP,
    "THING_TYPE_ASSOCIATION_EVENT": EventKind.IGNORED,
    "THING_GROUP_HIERARCHY_EVENT": EventKind.IGNORED,  # a group's parent is fixed at creation
    SHADOW_EVENT: EventKind.SHADOW,
    RETAINED_EVENT: EventKind.RETAINED,
}


class PoisonRecord(ValueError):
    """A stream record that cannot be understood; `sequence` identifies it in the batch."""

    def __init__(self, sequence: str, reason: str) -> None:
        super().__init__(f"record {sequence}: {reason}")
        self.sequence = sequence
        self.reason = reason


@dataclass(frozen=True)
class ReplicationEvent:
    kind: EventKind
    operation: Operation
    name: str  # thing, type or group name; `group/thing` for memberships; `thing/shadow` for shadows
    origin: str  # region where the change happened
    event_time_ms: int
    version: int
    event_id: str
    sequence: str  # the stream record's sequence number (the batch-item-failure identifier)
    body: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        """The replicated object: one watermark per key."""
        return f"{self.kind.value}/{self.name}"

    @property
    def order(self) -> tuple[int, int]:
        return (self.event_time_ms, self.version)


def plain(value: Any) -> Any:
    """DynamoDB-typed JSON (`{"S": ...}`, `{"M": ...}`) to plain Python; numbers to int or float."""
    from boto3.dynamodb.types import TypeDeserializer

    return _numbers(TypeDeserializer().deserialize(value))


def _numbers(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_numbers(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_numbers(v) for v in value)
    return value


def image(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The item after the change (None for a removal, e.g. a TTL expiry)."""
    new = (record.get("dynamodb") or {}).get("NewImage")
    if not new:
        return None
    return {k: plain(v) for k, v in new.items()}


def _name_from_arn(arn: Any, marker: str) -> str | None:
    if not isinstance(arn, str) or f":{marker}/" not in arn:
        return None
    return arn.split(f":{marker}/", 1)[1] or None


def _int(item: Mapping[str, Any], key: str, sequence: str, *, required: bool = True) -> int:
    value = item.get(key)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PoisonRecord(sequence, f"{key} is {value!r}, not a number")
    return int(value)


def _text(item: Mapping[str, Any], key: str, sequence: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise PoisonRecord(sequence, f"{key} is missing")
    return value


def parse_record(record: Mapping[str, Any]) -> ReplicationEvent | None:
    """One stream record -> an event; None for a removal (TTL expiry: nothing to replicate)."""
    sequence = str((record.get("dynamodb") or {}).get("SequenceNumber") or "")
    if not sequence:
        raise PoisonRecord("?", "no SequenceNumber")
    try:
        item = image(record)
    except Exception as exc:  # malformed attribute values
        raise PoisonRecord(sequence, f"unreadable image ({type(exc).__name__})") from exc
    if item is None:
        return None
    return parse_item(item, sequence)


def parse_item(item: Mapping[str, Any], sequence: str) -> ReplicationEvent:
    kind = _KINDS.get(str(item.get("eventType")))
    if kind is None:
        raise PoisonRecord(sequence, f"unknown eventType {item.get('eventType')!r}")
    origin = _text(item, "originRegion", sequence)
    time_ms = _int(item, "eventTimeMs", sequence)
    event_id = _text(item, "eventId", sequence)
    if kind is EventKind.SHADOW:
        thing = _text(item, "thingName", sequence)
        shadow = item.get("shadowName") or ""
        current = item.get("current")
        if not isinstance(current, Mapping) or not isinstance(current.get("state", {}), Mapping):
            raise PoisonRecord(sequence, "shadow document has no current state")
        version = _int(item, "version", sequence)
        return ReplicationEvent(kind, Operation.UPDATED, f"{thing}/{shadow}", origin, time_ms, version, event_id,
                                sequence, {"thing": thing, "shadow": shadow, "current": current,
                                           "clientToken": item.get("clientToken")})
    if kind is EventKind.RETAINED:
        return _retained(item, origin, time_ms, event_id, sequence)
    try:
        operation = Operation(str(item.get("operation")))
    except ValueError:
        raise PoisonRecord(sequence, f"unknown operation {item.get('operation')!r}") from None
    version = _int(item, "versionNumber", sequence, required=False)
    if kind is EventKind.THING:
        name = _text(item, "thingName", sequence)
    elif kind is EventKind.THING_TYPE:
        name = _text(item, "thingTypeName", sequence)
    elif kind is EventKind.THING_GROUP:
        name = _text(item, "thingGroupName", sequence)
    elif kind is EventKind.MEMBERSHIP:
        group_name = _name_from_arn(item.get("groupArn"), "thinggroup")
        thing_name = _name_from_arn(item.get("thingArn"), "thing")
        if not group_name or not thing_name:
            raise PoisonRecord(sequence, "membership event without groupArn/thingArn")
        return ReplicationEvent(kind, operation, f"{group_name}/{thing_name}", origin, time_ms, version, event_id,
                                sequence, {"group": group_name, "thing": thing_name})
    else:
        name = str(item.get("thingName") or item.get("thingGroupName") or event_id)
    return ReplicationEvent(kind, operation, name, origin, time_ms, version, event_id, sequence, dict(item))


def _retained(item: Mapping[str, Any], origin: str, time_ms: int, event_id: str, sequence: str) -> ReplicationEvent:
    """A publish under a configured retained-topic prefix, as the retained rules write it: the
    topic, the payload (base64, `encode(*, 'base64')`; empty: a clear) and the replica token the
    publish carried, if any (`get_user_property` answers a list of the property's values)."""
    import base64
    import binascii

    topic = _text(item, "topic", sequence)
    raw = item.get("payload")
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise PoisonRecord(sequence, "retained payload is not base64 text")
    try:
        payload = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise PoisonRecord(sequence, "retained payload is not base64") from None
    token = item.get("replicaToken")
    if isinstance(token, list):
        token = next((t for t in token if isinstance(t, str)), None)
    return ReplicationEvent(EventKind.RETAINED, Operation.UPDATED, topic, origin, time_ms, 0, event_id, sequence,
                            {"topic": topic, "payload": payload,
                             "replicaToken": token if isinstance(token, str) else None})


# -- AWS API calls recorded by CloudTrail (EventBridge "AWS API Call via CloudTrail", source aws.iot) --
# Changes registry events do not carry: certificate status, policy attachments, policy versions
# (and thing-principal attachments, which also have registry events), and dynamic thing groups'
# queries (their THING_GROUP_EVENT names the group but never has the query). The function never
# applies what such an event says: it re-reads the named object in the call's region and makes its
# own region equal to that, so a late, repeated or replayed event changes nothing.
API_CALL_DETAIL_TYPE = "AWS API Call via CloudTrail"
API_CALL_SOURCE = "aws.iot"
API_CALLS = (
    "UpdateCertificate", "AttachPolicy", "DetachPolicy", "AttachPrincipalPolicy", "DetachPrincipalPolicy",
    "CreatePolicyVersion", "SetDefaultPolicyVersion", "DeletePolicyVersion", "AttachThingPrincipal",
    "DetachThingPrincipal", "CreateDynamicThingGroup", "UpdateDynamicThingGroup", "DeleteDynamicThingGroup",
)


class ObjectKind(str, Enum):
    CERTIFICATE = "certificate"        # its status
    POLICY = "policy"                  # its default version's document
    POLICY_TARGET = "policy_target"    # one policy on one target (certificate or thing group)
    THING = "thing"                    # its certificates (the thing's own event path)
    DYNAMIC_GROUP = "dynamic_thing_group"  # its query, description and attributes


@dataclass(frozen=True)
class ApiCall:
    """One recorded API call: which object of which region to re-read."""

    name: str  # eventName
    origin: str  # detail.awsRegion: where the call changed the registry
    event_time_ms: int
    event_id: str
    kind: ObjectKind
    object: str  # certificate id, policy name, `policy|target-arn`, thing name

    @property
    def key(self) -> str:
        return f"api/{self.kind.value}/{self.object}"


def is_api_call(event: Any) -> bool:
    return isinstance(event, Mapping) and event.get("detail-type") == API_CALL_DETAIL_TYPE


def _iso_ms(value: Any, event_id: str) -> int:
    from datetime import datetime

    if not isinstance(value, str):
        raise PoisonRecord(event_id, "eventTime is missing")
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise PoisonRecord(event_id, f"eventTime {value!r} is not a time") from None


def parse_api_call(event: Mapping[str, Any]) -> ApiCall | None:
    """An EventBridge CloudTrail event -> the object to re-read; None when there is nothing to do
    (a call that failed, or one not in API_CALLS). Raises PoisonRecord when it cannot be read."""
    detail = event.get("detail")
    if event.get("source") != API_CALL_SOURCE or not isinstance(detail, Mapping):
        raise PoisonRecord(str(event.get("id") or "?"), "not an aws.iot CloudTrail event")
    event_id = str(detail.get("eventID") or event.get("id") or "")
    if not event_id:
        raise PoisonRecord("?", "eventID is missing")
    name = detail.get("eventName")
    if name not in API_CALLS or detail.get("errorCode"):
        return None
    origin = detail.get("awsRegion")
    if not isinstance(origin, str) or not origin:
        raise PoisonRecord(event_id, "awsRegion is missing")
    time_ms = _iso_ms(detail.get("eventTime"), event_id)
    params = detail.get("requestParameters")
    if not isinstance(params, Mapping):
        raise PoisonRecord(event_id, "requestParameters is missing")

    def text(key: str) -> str:
        value = params.get(key)
        if not isinstance(value, str) or not value:
            raise PoisonRecord(event_id, f"requestParameters.{key} is missing")
        return value

    if name == "UpdateCertificate":
        kind, obj = ObjectKind.CERTIFICATE, text("certificateId")
    elif name in ("AttachPolicy", "DetachPolicy"):
        kind, obj = ObjectKind.POLICY_TARGET, f"{text('policyName')}|{text('target')}"
    elif name in ("AttachPrincipalPolicy", "DetachPrincipalPolicy"):
        kind, obj = ObjectKind.POLICY_TARGET, f"{text('policyName')}|{text('principal')}"
    elif name in ("AttachThingPrincipal", "DetachThingPrincipal"):
        kind, obj = ObjectKind.THING, text("thingName")
    elif name.endswith("DynamicThingGroup"):
        kind, obj = ObjectKind.DYNAMIC_GROUP, text("thingGroupName")
    else:
        kind, obj = ObjectKind.POLICY, text("policyName")
    return ApiCall(name, origin, time_ms, event_id, kind, obj)
