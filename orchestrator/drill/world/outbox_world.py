"""The command outbox in the local world (docs/adr/0002-command-outbox.md): the deployed function,
invoked by its two topic rules on each region's broker, against the region's replica of the global table.

In AWS, each member region runs `orchestrator.registry.outbox_function` behind two topic rules
(programs/replication.py, `outbox_rule_sql`): IoT Core's presence event on a client's connect, and a
device's acknowledgement on `cmd/ack/<thing>`. Here, per region (`OutboxRegion`):

- **lifecycle events**: mosquitto publishes its connection notices on `broker.LIFECYCLE_LOG`
  ("New client connected from <address> as <client id> (...)"); each becomes the event IoT Core
  publishes on `$aws/events/presence/connected/<clientId>` (developer guide, "Lifecycle events":
  clientId, timestamp in epoch ms, eventType "connected", sessionIdentifier, principalIdentifier,
  ipAddress, versionNumber). Every client's connect is an event, the region's own service clients'
  too, as in IoT Core;
- **the rules**: the programs' own SQL (`outbox_rule_sql`), evaluated by `RuleSql`, which knows the
  few forms those rules use (a field of the message, `topic(n) AS name`, `'literal' AS name`, FROM one
  topic filter) and refuses any other at start, so a changed rule fails the drill instead of being
  misread. As in IoT SQL, a field the message lacks is left out of the result;
- **the function**: `outbox_function.run` (the handler's code with injected clients), one invocation
  at a time per region, as rules invoke Lambda asynchronously: the rule's callback only queues the
  event. Its DynamoDB client is the region's (moto; `global_tables.py` replicates the table), its
  `iot-data` client publishes on the region's broker and answers once the broker acknowledged
  (IoT's Publish API answers when the message broker took it). An exception is what Lambda's
  `Errors` metric counts (`errors`).

`OutboxSender` is the cloud's sender: `outbox.enqueue` in the region it talks to, then the publish
through that region's broker. Only commands whose PutItem succeeded count as enqueued.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CONNECTED = re.compile(r"New client connected from (\S+?)(?::\d+)? as (\S+) \(")
_SELECT = re.compile(r"^SELECT (?P<items>.+) FROM '(?P<filter>[^']+)'$")
_ITEM_TOPIC = re.compile(r"^topic\((\d+)\) AS (\w+)$")
_ITEM_LITERAL = re.compile(r"^'([^']*)' AS (\w+)$")
_ITEM_FIELD = re.compile(r"^(\w+)$")


def ulid(at: float | None = None) -> str:
    """A ULID: 48 bits of epoch milliseconds then 80 random bits, 26 characters of Crockford base32
    (the outbox orders and deduplicates by it: `outbox.ULID`)."""
    ms = int((time.time() if at is None else at) * 1000)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (`+` one level, `#` the rest)."""
    want, got = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(got) or (level != "+" and level != got[i]):
            return False
    return len(want) == len(got)


class RuleSql:
    """One topic rule's SQL (SQL version 2016-03-23), in the few forms the outbox's rules use."""

    def __init__(self, sql: str) -> None:
        found = _SELECT.match(sql.strip())
        if not found:
            raise ValueError(f"the local world cannot evaluate the rule {sql!r}")
        self.topic_filter = found["filter"]
        self.items: list[tuple[str, str, Any]] = []  # (kind, name, argument)
        for raw in (i.strip() for i in found["items"].split(",")):
            if m := _ITEM_TOPIC.match(raw):
                self.items.append(("topic", m[2], int(m[1])))
            elif m := _ITEM_LITERAL.match(raw):
                self.items.append(("literal", m[2], m[1]))
            elif m := _ITEM_FIELD.match(raw):
                self.items.append(("field", m[1], None))
            else:
                raise ValueError(f"the local world cannot evaluate {raw!r} in the rule {sql!r}")

    def select(self, topic: str, message: Any) -> dict[str, Any] | None:
        """The rule's result for a message on `topic` (None: the rule does not match the topic)."""
        if not topic_matches(self.topic_filter, topic):
            return None
        out: dict[str, Any] = {}
        levels = topic.split("/")
        for kind, name, arg in self.items:
            if kind == "topic":
                if len(levels) >= arg:
                    out[name] = levels[arg - 1]
            elif kind == "literal":
                out[name] = arg
            elif isinstance(message, dict) and name in message:  # an undefined field is left out
                out[name] = message[name]
        return out


def lifecycle_event(line: str, now: float | None = None) -> dict[str, Any] | None:
    """The presence event IoT Core publishes for a broker notice of a client's connect (None: not one)."""
    found = _CONNECTED.search(line)
    if not found:
        return None
    return {"clientId": found[2], "timestamp": int((time.time() if now is None else now) * 1000),
            "eventType": "connected", "sessionIdentifier": str(uuid.uuid4()), "principalIdentifier": found[2],
            "ipAddress": found[1], "versionNumber": 0}


class _BrokerData:
    """The function's `iot-data` client in this world: Publish reaches the region's broker."""

    def __init__(self, client: Callable[[], Any], timeout: float = 5.0) -> None:
        self._client, self.timeout = client, timeout

    def publish(self, *, topic: str, qos: int = 0, payload: bytes = b"", **_: Any) -> dict[str, Any]:
        from awscrt import mqtt5

        mqtt = self._client()
        if mqtt is None:
            raise ConnectionError("the region's broker is not reachable")
        mqtt.publish(mqtt5.PublishPacket(topic=topic, payload=payload,
                                         qos=mqtt5.QoS.AT_LEAST_ONCE if qos else mqtt5.QoS.AT_MOST_ONCE)
                     ).result(self.timeout)
        return {}


class OutboxRegion:
    """One region's outbox function and its two rules, on its broker's service listener."""

    def __init__(self, region: str, address: str, port: int, ddb: Any, table: str,
                 rules: dict[str, str]) -> None:
        from orchestrator.drill.world.broker import LIFECYCLE_LOG

        self.region, self.address, self.port, self.ddb, self.table = region, address, port, ddb, table
        self.rules = {kind: RuleSql(sql) for kind, sql in rules.items()}
        self.lifecycle_log = LIFECYCLE_LOG
        self.invocations = 0
        self.errors: list[str] = []  # what Lambda's Errors metric would count, one line each
        self.results: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._client: Any = None
        self._worker: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        from awscrt import mqtt5

        self._worker = threading.Thread(target=self._serve, name=f"drill-outbox-{self.region}", daemon=True)
        self._worker.start()
        self._client = mqtt5.Client(mqtt5.ClientOptions(
            host_name=self.address, port=self.port,
            connect_options=mqtt5.ConnectPacket(client_id=f"iot-rules-outbox-{self.region}",
                                                keep_alive_interval_sec=30),
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            min_reconnect_delay_ms=200, max_reconnect_delay_ms=1000,
            on_publish_callback_fn=self._on_publish,
            on_lifecycle_event_connection_success_fn=lambda _: self._subscribe(),
            on_lifecycle_event_disconnection_fn=lambda _: self.connected.clear()))
        self._client.start()
        if not self.connected.wait(timeout):
            raise RuntimeError(f"the {self.region} outbox rules could not subscribe on {self.address}:{self.port}")

    def _subscribe(self) -> None:
        from awscrt import mqtt5

        filters = [self.lifecycle_log, *(r.topic_filter for r in self.rules.values()
                                         if not r.topic_filter.startswith("$aws/events/"))]
        future = self._client.subscribe(mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(f, mqtt5.QoS.AT_LEAST_ONCE) for f in filters]))
        future.add_done_callback(lambda _: self.connected.set())

    def _on_publish(self, data: Any) -> None:  # a CRT thread: only queue
        packet = data.publish_packet
        topic, raw = packet.topic, bytes(packet.payload or b"")
        if topic == self.lifecycle_log:
            event = lifecycle_event(raw.decode("utf-8", "replace"))
            if event is None:
                return
            topic, message = f"$aws/events/presence/connected/{event['clientId']}", event
        else:
            try:
                message = json.loads(raw)
            except ValueError:
                message = None  # IoT SQL selects nothing from a payload that is not JSON
        for rule in self.rules.values():
            selected = rule.select(topic, message)
            if selected is not None:
                self._events.put(selected)

    def _serve(self) -> None:
        from orchestrator.registry import outbox_function

        data = _BrokerData(lambda: self._client if self.connected.is_set() else None)
        while True:
            event = self._events.get()
            if event is None:
                return
            self.invocations += 1
            try:
                self.results.append(outbox_function.run(event, region=self.region, table=self.table, ddb=self.ddb,
                                                        data=data))
            except Exception as exc:  # noqa: BLE001 - a function error (Lambda's Errors metric), the next goes on
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])

    def idle(self) -> bool:
        return self._events.empty()

    def stop(self) -> None:
        self._events.put(None)
        if self._worker is not None:
            self._worker.join(10)
        from orchestrator.drill.world.c2d import retire

        retire(self._client)  # not dropped while the CRT may still call back (c2d.retire)
        self._client = None


class OutboxSender:
    """The cloud's commands to devices through one region: `outbox.enqueue` there, then the publish."""

    def __init__(self, region: str, address: str, port: int, ddb: Any, table: str) -> None:
        from orchestrator.drill.world.c2d import _ServiceClient

        self.region, self.ddb, self.table = region, ddb, table
        self.enqueued: dict[str, tuple[str, float]] = {}  # commandId -> (thing, when its PutItem answered)
        self.errors: list[str] = []
        self._mqtt = _ServiceClient(f"iot-commands-{region}", address, port)

    def start(self) -> None:
        self._mqtt.start()

    def send(self, things: list[str], per_device: int, timeout: float = 5.0) -> int:
        """Enqueue then publish `per_device` commands to each thing; returns how many were enqueued."""
        from orchestrator.drill.world.c2d import command_topic
        from orchestrator.registry import outbox

        futures = []
        count = 0
        for n in range(per_device):
            for thing in things:
                command_id = ulid()
                body = json.dumps({"commandId": command_id, "action": "set-interval", "n": n}).encode()
                try:
                    outbox.enqueue(self.ddb, self.table, thing=thing, command_id=command_id,
                                   topic=command_topic(thing), payload=body, origin_region=self.region)
                except Exception as exc:  # noqa: BLE001 - not enqueued: not issued
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                self.enqueued[command_id] = (thing, time.time())
                count += 1
                futures.append(self._mqtt.publish(command_topic(thing), body, 1))
        deadline = time.monotonic() + timeout
        for future in futures:
            try:
                future.result(max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - the outbox holds it: the device's next connect replays it
                continue
        return count

    def issued(self, thing: str, before: float) -> dict[str, float]:
        """commandId -> when it was enqueued, of the thing's commands enqueued before `before`."""
        return {c: at for c, (t, at) in self.enqueued.items() if t == thing and at <= before}

    def stop(self) -> None:
        self._mqtt.stop()


@dataclass(frozen=True)
class OutboxCount:
    """One device's commands enqueued in the killed region before the kill, as the device received them."""

    issued: int
    delivered_before: int  # first received before the kill (or from the dying region as it died)
    delivered_after: int  # first received after the kill, in the survivor (replayed from its replica)
    duplicates_dropped: int  # received again after the first time: the device dropped it by commandId
    lost: int  # never received
    lost_within_replication: int  # ... of which enqueued within the replication delay before the kill


def count_commands(issued: dict[str, float], received: Sequence[tuple[float, str | None, str]], killed_at: float,
                   survivor: str, replication_delay_s: float) -> OutboxCount:
    first: dict[str, tuple[float, str | None]] = {}
    duplicates = 0
    for t, region, command_id in received:
        if command_id not in issued:
            continue
        if command_id in first:
            duplicates += 1
        else:
            first[command_id] = (t, region)
    # a receipt from the dying broker stamped just after the kill began is still the killed region's delivery
    after = {c for c, (t, r) in first.items() if t >= killed_at and r == survivor}
    before = set(first) - after
    lost = set(issued) - set(first)
    return OutboxCount(issued=len(issued), delivered_before=len(before), delivered_after=len(after),
                       duplicates_dropped=duplicates, lost=len(lost),
                       lost_within_replication=sum(1 for c in lost if issued[c] > killed_at - replication_delay_s))
