"""The command outbox (docs/adr/0002-command-outbox.md): a durable copy of cloud-to-device QoS 1
commands, so that a device that reconnects in another region gets the commands queued for it in
the region that died.

The API on the table (`enqueue`, `pending`, `replay`, `acknowledge`); the replication stack declares
the table (a DynamoDB global table with TTL on `expiresAt`, topology `registry.command_outbox`) and, in
every member region, the function (`orchestrator.registry.outbox_function`) that topic rules invoke on
a device's connect (replay) and on its acknowledgement (`cmd/ack/<thing>`). Not built: a rule that
writes commands published to `cmd/outbox/+` (senders call `enqueue`). The table's key: `thing`
(partition) and `commandId` (sort, a ULID chosen by the sender: orders and deduplicates). Items:

- `topic`, `payload` (binary, at most 128 KB: IoT's message size), `qos` (1), `originRegion`,
  `createdMs`, `expiresAt` (epoch seconds, DynamoDB's TTL attribute: `createdMs` + the expiry the
  sender chose, 1 s to 7 days as IoT's session expiry allows; DynamoDB deletes lazily, so readers
  skip expired items themselves), `state` PENDING or DELIVERED.

A command is sent again (`replay`) until the device acknowledges it; the device deduplicates by
`commandId`, which every payload carries.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import InputRejected

MAX_PAYLOAD_BYTES = 128 * 1024  # IoT Core's message size quota
MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7
MAX_EXPIRY_S = 7 * 24 * 3600  # IoT Core's longest persistent-session expiry
DEFAULT_EXPIRY_S = 3600  # IoT Core's default persistent-session expiry
REPLAY_PER_SECOND = 10.0  # what IoT Core's broker replays of a persistent session, per device
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # Crockford base32, 26 characters: ordered by time
THING = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")  # IoT thing names
PENDING, DELIVERED = "PENDING", "DELIVERED"
TTL_ATTRIBUTE = "expiresAt"  # epoch seconds: the table's TTL attribute (programs/replication.py)
# Commands are published under COMMAND_PREFIX (the replay function may publish there and nowhere else);
# ACK_PREFIX, under it, is the devices' acknowledgements, never a command's topic
COMMAND_PREFIX = "cmd/"
ACK_PREFIX = "cmd/ack/"


@dataclass(frozen=True)
class Command:
    thing: str
    command_id: str
    topic: str
    payload: bytes = field(repr=False)  # never printed
    origin_region: str
    created_ms: int
    expires_at: int
    state: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Command:
        payload = item["payload"]["B"]
        return cls(thing=item["thing"]["S"], command_id=item["commandId"]["S"], topic=item["topic"]["S"],
                   payload=bytes(payload), origin_region=item["originRegion"]["S"],
                   created_ms=int(item["createdMs"]["N"]), expires_at=int(item["expiresAt"]["N"]),
                   state=item["state"]["S"])


def check(thing: str, command_id: str, topic: str, payload: bytes, expires_in: int) -> None:
    """Refuse (exit 2) a command the outbox must not hold, before anything is written."""
    if not THING.match(thing or ""):
        raise InputRejected(f"outbox: {thing[:60]!r} is not a thing name (1-128 of a-z A-Z 0-9 : _ -)")
    if not ULID.match(command_id or ""):
        raise InputRejected(f"outbox: command id {command_id[:40]!r} is not a ULID (26 characters of Crockford "
                            "base32, upper case): the outbox orders and deduplicates by it")
    raw = topic.encode("utf-8")
    if not raw or len(raw) > MAX_TOPIC_BYTES or "+" in topic or "#" in topic or topic.startswith("$") \
            or topic.count("/") > MAX_TOPIC_SLASHES:
        raise InputRejected(f"outbox: {topic[:60]!r} is not a topic a command can be published to (1-{MAX_TOPIC_BYTES}"
                            f" bytes, no + or #, not $aws/..., at most {MAX_TOPIC_SLASHES} slashes)")
    if not topic.startswith(COMMAND_PREFIX) or topic == ACK_PREFIX.rstrip("/") or topic.startswith(ACK_PREFIX):
        raise InputRejected(f"outbox: {topic[:60]!r} is not under {COMMAND_PREFIX} (commands are published under "
                            f"{COMMAND_PREFIX}, acknowledgements under {ACK_PREFIX}: docs/devices.md)")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InputRejected(f"outbox: payload of {len(payload)} bytes; IoT Core publishes at most "
                            f"{MAX_PAYLOAD_BYTES} bytes")
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("commandId") != command_id:
        raise InputRejected("outbox: the payload must be a JSON object carrying the same commandId "
                            "(the device deduplicates by it; docs/devices.md)")
    if not 1 <= expires_in <= MAX_EXPIRY_S:
        raise InputRejected(f"outbox: expiry {expires_in} s; 1 s to {MAX_EXPIRY_S} s (7 days, IoT's longest "
                            "session expiry)")


def enqueue(ddb: Any, table: str, *, thing: str, command_id: str, topic: str, payload: bytes, origin_region: str,
            expires_in: int = DEFAULT_EXPIRY_S, now: float | None = None) -> bool:
    """Write one command (a conditional PutItem): True when written, False when that id is already
    there (a retried send: nothing changes)."""
    check(thing, command_id, topic, payload, expires_in)
    at = time.time() if now is None else now
    try:
        ddb.put_item(TableName=table, ConditionExpression="attribute_not_exists(commandId)", Item={
            "thing": {"S": thing}, "commandId": {"S": command_id}, "topic": {"S": topic}, "payload": {"B": payload},
            "qos": {"N": "1"}, "originRegion": {"S": origin_region}, "createdMs": {"N": str(int(at * 1000))},
            "expiresAt": {"N": str(int(at) + expires_in)}, "state": {"S": PENDING}})
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def pending(ddb: Any, table: str, thing: str, *, now: float | None = None, page_size: int = 100) -> list[Command]:
    """The thing's PENDING, unexpired commands in commandId order (strongly consistent reads, every page)."""
    at = int(time.time() if now is None else now)
    out: list[Command] = []
    kwargs: dict[str, Any] = {
        "TableName": table, "KeyConditionExpression": "thing = :t", "ConsistentRead": True, "Limit": page_size,
        "FilterExpression": "#s = :p AND expiresAt > :now", "ExpressionAttributeNames": {"#s": "state"},
        "ExpressionAttributeValues": {":t": {"S": thing}, ":p": {"S": PENDING}, ":now": {"N": str(at)}}}
    while True:
        page = ddb.query(**kwargs)
        out += [Command.from_item(item) for item in page.get("Items", [])]
        if not page.get("LastEvaluatedKey"):
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True)
class ReplayReport:
    thing: str
    published: tuple[str, ...]  # command ids, in the order sent
    errors: tuple[tuple[str, str], ...] = ()  # (command id, error code): not sent; the next connect retries

    @property
    def ok(self) -> bool:
        return not self.errors


def replay(ddb: Any, data: Any, table: str, thing: str, *, now: float | None = None,
           per_second: float = REPLAY_PER_SECOND, sleep: Callable[[float], None] = time.sleep) -> ReplayReport:
    """Publish the thing's pending commands (QoS 1, commandId order, at most `per_second`) through
    `data`, the iot-data client of the region the device connected to. A command stays PENDING
    until the device acknowledges it: the next connect sends it again (the device deduplicates)."""
    from orchestrator.registry.calls import error_code

    sent: list[str] = []
    errors: list[tuple[str, str]] = []
    for i, command in enumerate(pending(ddb, table, thing, now=now)):
        if i:
            sleep(1.0 / per_second)
        try:
            data.publish(topic=command.topic, qos=1, payload=command.payload)
        except Exception as exc:  # noqa: BLE001 - reported; the others still go
            errors.append((command.command_id, error_code(exc) or type(exc).__name__))
            continue
        sent.append(command.command_id)
    return ReplayReport(thing, tuple(sent), tuple(errors))


def acknowledge(ddb: Any, table: str, thing: str, command_ids: Iterable[str]) -> int:
    """Mark the device's executed commands DELIVERED; returns how many changed. An id the outbox does
    not hold (expired and deleted, or never written) is ignored, never created."""
    changed = 0
    for command_id in command_ids:
        try:
            ddb.update_item(TableName=table, Key={"thing": {"S": thing}, "commandId": {"S": command_id}},
                            UpdateExpression="SET #s = :d", ConditionExpression="attribute_exists(commandId) "
                            "AND #s = :p", ExpressionAttributeNames={"#s": "state"},
                            ExpressionAttributeValues={":d": {"S": DELIVERED}, ":p": {"S": PENDING}})
        except ddb.exceptions.ConditionalCheckFailedException:
            continue
        changed += 1
    return changed
