"""Test world of continuous replication: payloads, what the topic rules write, stream records, and
replicators wired to a moto server (used by tests/ops/test_ops_replication.py and bench/replication_rpo.py).

`rule_item` and `shadow_item` build the item the replication stack's topic rules write for an event
(the SQL in programs/replication.py: the payload plus originRegion, eventTimeMs, expiresAt); they are
checked against that SQL's field list in tests/programs/test_replication_rules.py.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.aws import AwsContext, client
from orchestrator.registry.calls import RetryPolicy
from orchestrator.registry.replicate import DynamoAppliedStore, Region, Replicator

DATA = Path(__file__).parent / "data" / "replication_payloads.json"
TTL_S = 48 * 3600
_SEQ = itertools.count(100000000000000000001)
_SEQ_LOCK = threading.Lock()


@cache
def _payloads() -> dict[str, Any]:
    return dict(json.loads(DATA.read_text()))


def payload(kind: str, **changes: Any) -> dict[str, Any]:
    """A documented sample payload (tests/ops/data/replication_payloads.json), with `changes`."""
    return {**json.loads(json.dumps(_payloads()[kind])), **changes}


def rule_item(event: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """What the registry-events rule of `origin` writes for a registry event."""
    return {**event, "originRegion": origin, "eventTimeMs": event["timestamp"],
            "expiresAt": event["timestamp"] // 1000 + TTL_S}


def shadow_item(document: Mapping[str, Any], thing: str, origin: str, shadow: str = "") -> dict[str, Any]:
    """What a shadow rule of `origin` writes for an /update/documents message."""
    version = document["current"]["version"]
    item = {"eventId": f"shadow/{thing}/{shadow}/{version}/{document['timestamp']}", "eventType": "SHADOW_EVENT",
            "thingName": thing, "shadowName": shadow, "version": version, "current": document["current"],
            "eventTimeMs": document["timestamp"] * 1000, "originRegion": origin,
            "expiresAt": document["timestamp"] + TTL_S}
    if document.get("clientToken") is not None:
        item["clientToken"] = document["clientToken"]
    return item


def retained_item(topic: str, payload: bytes, origin: str, *, t_ms: int, token: str | None = None,
                  event_id: str | None = None) -> dict[str, Any]:
    """What a retained rule of `origin` (programs/replication.py `retained_rule_sql`) writes for a
    publish to `topic`: the payload base64 (`encode(*, 'base64')`), the publish's replica token
    as `get_user_property` answers it (a list of the property's values) when it carried one."""
    import base64

    item: dict[str, Any] = {"eventId": event_id or f"retained/{topic}/{t_ms}/{next(_SEQ)}",
                            "eventType": "RETAINED_EVENT", "topic": topic,
                            "payload": base64.b64encode(payload).decode(), "eventTimeMs": t_ms,
                            "originRegion": origin, "expiresAt": t_ms // 1000 + TTL_S}
    if token is not None:
        item["replicaToken"] = [token]
    return item


def rule_accepts(document: Mapping[str, Any]) -> bool:
    """The shadow rules' WHERE clause: none. Every update document is kept, whatever its client
    token (a device could set any token); replica writes are recognised by the function (a signed
    token, `replicate.ShadowSigner`)."""
    return isinstance(document, Mapping)


def stream_record(item: Mapping[str, Any], region: str, *, sequence: str | None = None,
                  event_name: str = "INSERT") -> dict[str, Any]:
    """A DynamoDB stream record as Lambda delivers it (the documented shape) for `item`."""
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer()
    if sequence is None:
        with _SEQ_LOCK:
            sequence = str(next(_SEQ))
    record = payload("stream_record")
    record.update(awsRegion=region, eventName=event_name,
                  eventSourceARN=f"arn:aws:dynamodb:{region}:123456789012:table/iot-dev-registry-events/stream/x")
    record["dynamodb"] = {**record["dynamodb"], "Keys": {"eventId": {"S": str(item.get("eventId"))}},
                          "NewImage": {k: ser.serialize(v) for k, v in item.items()},
                          "SequenceNumber": sequence, "ApproximateCreationDateTime": int(time.time())}
    return record


def events_table(ddb: Any, name: str = "iot-dev-registry-events") -> dict[str, Any]:
    """The registry-events table as the replication stack declares it (key, stream), in one region."""
    return ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "eventId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "eventId", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})["TableDescription"]


def now_ms() -> int:
    return int(time.time() * 1000)


def applied_table(ctx: AwsContext, region: str, name: str = "iot-dev-replication-applied") -> str:
    ddb = client(ctx, "dynamodb", region)
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "objectKey", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "objectKey", "KeyType": "HASH"}])
    return name


def region_of(ctx: AwsContext, name: str) -> Region:
    retry = RetryPolicy(max_attempts=2, sleep=lambda _s: None)
    return Region.of(name, client(ctx, "iot", name, own_retries=True), client(ctx, "iot-data", name, own_retries=True),
                     rate=1000.0, retry=retry)


MEMBERS = frozenset({"eu-west-1", "eu-central-1", "eu-west-2"})  # tests.ops.conftest's SRC, DST, THIRD


def replicator(ctx: AwsContext, region: str, *, lags: list[int] | None = None,
               clock: Callable[[], float] = time.time, members: frozenset[str] = MEMBERS,
               dead_letter: Callable[[Mapping[str, Any]], None] | None = None,
               table: str | None = None) -> Replicator:
    """A replicator of `region` whose environment is `members`; a new applied table unless `table`."""
    table = table or applied_table(ctx, region)
    store = DynamoAppliedStore(client(ctx, "dynamodb", region), table)
    metrics = None if lags is None else lags.extend
    return Replicator(region_of(ctx, region), store, lambda r: region_of(ctx, r), metrics, clock,
                      members=members, dead_letter=dead_letter)


def api_call_event(name: str, origin: str, params: Mapping[str, Any], *, t_ms: int | None = None,
                   error: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    """An "AWS API Call via CloudTrail" event as EventBridge delivers it (the documented envelope:
    EventBridge user guide, "AWS service events delivered via AWS CloudTrail"; the detail is a
    CloudTrail record, CloudTrail user guide "CloudTrail record contents")."""
    from datetime import datetime, timezone

    t_ms = now_ms() if t_ms is None else t_ms
    at = datetime.fromtimestamp(t_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with _SEQ_LOCK:
        ident = event_id or f"ct-{next(_SEQ)}"
    detail: dict[str, Any] = {
        "eventVersion": "1.09", "eventTime": at, "eventSource": "iot.amazonaws.com", "eventName": name,
        "awsRegion": origin, "sourceIPAddress": "203.0.113.10", "userAgent": "aws-cli/2",
        "userIdentity": {"type": "AssumedRole", "accountId": "123456789012"},
        "requestParameters": dict(params), "responseElements": None, "requestID": ident, "eventID": ident,
        "readOnly": False, "eventType": "AwsApiCall", "managementEvent": True,
        "recipientAccountId": "123456789012", "eventCategory": "Management"}
    if error:
        detail["errorCode"] = error
    return {"version": "0", "id": ident, "detail-type": "AWS API Call via CloudTrail", "source": "aws.iot",
            "account": "123456789012", "time": at, "region": origin, "resources": [], "detail": detail}
