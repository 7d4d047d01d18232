"""The command outbox in the local world: the global table's replication in the strict moto server
(orchestrator/drill/world/global_tables.py) and each region's outbox function on its broker's lifecycle
events and acknowledgements (orchestrator/drill/world/outbox_world.py), with a real moto server and mosquitto."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestrator.drill.world import global_tables
from orchestrator.drill.world.outbox_world import OutboxRegion, RuleSql, lifecycle_event, topic_matches, ulid
from orchestrator.registry import outbox
from programs.replication import outbox_rule_sql
from tests.drill.local_mosquitto import mosquitto
from tests.moto_server import moto_server
from tests.polling import until

A, B = "eu-west-1", "eu-central-1"
TABLE = "iot-drill-command-outbox"
DELAY = 0.4


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           global_tables.DELAY_ENV: str(DELAY)}
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log", env) as url:
        yield url


def ddb(endpoint: str, region: str) -> Any:
    return boto3.client("dynamodb", region_name=region, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def global_table(endpoint: str, name: str) -> tuple[Any, Any]:
    """The outbox table as terraform-provider-aws makes it: CreateTable, then ReplicaUpdates Create."""
    a, b = ddb(endpoint, A), ddb(endpoint, B)
    a.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"},
                                         {"AttributeName": "commandId", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"},
                              {"AttributeName": "commandId", "KeyType": "RANGE"}],
                   StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    a.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": B}}])
    return a, b


def command(thing: str, n: int = 0) -> tuple[str, bytes]:
    command_id = ulid()
    return command_id, json.dumps({"commandId": command_id, "n": n}).encode()


def states(client: Any, table: str, thing: str) -> dict[str, str]:
    items = client.query(TableName=table, KeyConditionExpression="thing = :t", ConsistentRead=True,
                         ExpressionAttributeValues={":t": {"S": thing}})["Items"]
    return {i["commandId"]["S"]: i["state"]["S"] for i in items}



# -- global tables ---------------------------------------------------------------------------------------
def test_a_replica_is_made_by_replica_updates_and_refused_twice(endpoint: str) -> None:
    a, b = ddb(endpoint, A), ddb(endpoint, B)
    a.create_table(TableName="gt-made", BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                   StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    a.put_item(TableName="gt-made", Item={"k": {"S": "before"}})
    a.update_table(TableName="gt-made", ReplicaUpdates=[{"Create": {"RegionName": B}}])
    described = b.describe_table(TableName="gt-made")["Table"]
    assert described["Replicas"] == [{"RegionName": A, "ReplicaStatus": "ACTIVE"}]
    assert described["GlobalTableVersion"] == "2019.11.21"
    # version 2019.11.21 adds replicas to a table holding data: the replica starts with a copy
    assert b.get_item(TableName="gt-made", Key={"k": {"S": "before"}}).get("Item")
    for region in (A, B):
        with pytest.raises(a.exceptions.ClientError, match="ValidationException"):
            a.update_table(TableName="gt-made", ReplicaUpdates=[{"Create": {"RegionName": region}}])


def test_writes_replicate_after_the_delay_both_ways_and_the_last_writer_wins(endpoint: str) -> None:
    a, b = global_table(endpoint, "gt-lww")
    thing = "d-1"
    command_id, body = command(thing)
    assert outbox.enqueue(a, "gt-lww", thing=thing, command_id=command_id, topic=f"cmd/{thing}", payload=body,
                          origin_region=A)
    assert states(b, "gt-lww", thing) == {}  # asynchronous: not there at once
    assert until(lambda: states(b, "gt-lww", thing) == {command_id: "PENDING"}, 5 * DELAY)
    # the acknowledgement written in B reaches A
    assert outbox.acknowledge(b, "gt-lww", thing, [command_id]) == 1
    assert until(lambda: states(a, "gt-lww", thing) == {command_id: "DELIVERED"}, 5 * DELAY)
    # two writes to the same item in both regions within the delay: the later one wins everywhere
    key = {"thing": {"S": thing}, "commandId": {"S": command_id}}
    a.update_item(TableName="gt-lww", Key=key, UpdateExpression="SET n = :v", ExpressionAttributeValues={
        ":v": {"S": "first"}})
    b.update_item(TableName="gt-lww", Key=key, UpdateExpression="SET n = :v", ExpressionAttributeValues={
        ":v": {"S": "second"}})
    time.sleep(3 * DELAY)
    assert [c.get_item(TableName="gt-lww", Key=key)["Item"]["n"]["S"] for c in (a, b)] == ["second", "second"]
    assert global_tables.control(endpoint)["superseded"] >= 1


def test_a_dead_region_keeps_what_it_had_not_replicated_until_it_comes_back(endpoint: str) -> None:
    a, b = global_table(endpoint, "gt-outage")
    early, body = command("d-2")
    outbox.enqueue(a, "gt-outage", thing="d-2", command_id=early, topic="cmd/d-2", payload=body, origin_region=A)
    assert until(lambda: early in states(b, "gt-outage", "d-2"), 5 * DELAY)
    late, body = command("d-2", 1)
    outbox.enqueue(a, "gt-outage", thing="d-2", command_id=late, topic="cmd/d-2", payload=body, origin_region=A)
    global_tables.control(endpoint, region=A, available=False)  # A dies within the delay of its last write
    try:
        time.sleep(3 * DELAY)
        assert set(states(b, "gt-outage", "d-2")) == {early}  # the survivor never sees the late one
        assert global_tables.control(endpoint)["held"] >= 1
    finally:
        global_tables.control(endpoint, region=A, available=True)
    assert until(lambda: set(states(b, "gt-outage", "d-2")) == {early, late}, 5 * DELAY)


# -- the rules and the lifecycle events ------------------------------------------------------------------
def test_the_programs_rules_are_evaluated_as_iot_sql_would() -> None:
    connected, ack = RuleSql(outbox_rule_sql()["connected"]), RuleSql(outbox_rule_sql()["ack"])
    event = {"clientId": "d-3", "eventType": "connected", "timestamp": 5, "ipAddress": "127.0.0.1"}
    assert connected.select("$aws/events/presence/connected/d-3", event) == {
        "clientId": "d-3", "eventType": "connected", "timestamp": 5}
    assert connected.select("cmd/ack/d-3", event) is None
    # the thing comes from the topic, never the payload; a field the message lacks is left out
    assert ack.select("cmd/ack/d-3", {"commandIds": ["X"], "thing": "other"}) == {
        "thing": "d-3", "commandIds": ["X"], "eventType": "ack"}
    assert ack.select("cmd/ack/d-3/extra", {}) is None
    with pytest.raises(ValueError, match="cannot evaluate"):
        RuleSql("SELECT * FROM 'cmd/ack/+' WHERE x = 1")
    assert topic_matches("a/+/c", "a/b/c") and topic_matches("a/#", "a/b/c") and not topic_matches("a/+", "a/b/c")


def test_a_broker_notice_of_a_connect_becomes_a_presence_event() -> None:
    line = "1796335919: New client connected from 127.0.0.2:50228 as drill-device-0001 (p5, c1, k30, u'x')."
    event = lifecycle_event(line, now=12.5)
    assert event is not None
    assert {k: event[k] for k in ("clientId", "eventType", "timestamp", "ipAddress")} == {
        "clientId": "drill-device-0001", "eventType": "connected", "timestamp": 12500, "ipAddress": "127.0.0.2"}
    assert lifecycle_event("1796335919: New connection from 127.0.0.2:50228 on port 1883.") is None
    assert outbox.ULID.match(ulid()) and ulid(1.0) < ulid(2.0)


# -- the function on a broker ---------------------------------------------------------------------------------
@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    # the drill's broker configuration's lifecycle hook (broker.py): notices published on $SYS
    with mosquitto(tmp_path, "allow_anonymous true", "log_dest topic", "log_type notice") as port:
        yield port


class Device:
    """A device on the outbox's contract: subscribes, asks for a replay, acknowledges what it gets."""

    def __init__(self, thing: str, port: int, *, ask_replay: bool) -> None:
        from awscrt import mqtt5

        self.thing = thing
        self.received: list[str] = []
        ready = threading.Event()

        def on_publish(data: Any) -> None:
            command_id = json.loads(bytes(data.publish_packet.payload))["commandId"]
            self.received.append(command_id)
            self.client.publish(mqtt5.PublishPacket(topic=f"cmd/ack/{thing}", qos=mqtt5.QoS.AT_LEAST_ONCE,
                                                    payload=json.dumps({"commandIds": [command_id]}).encode()))

        self.client = mqtt5.Client(mqtt5.ClientOptions(
            host_name="127.0.0.1", port=port, connect_options=mqtt5.ConnectPacket(client_id=thing),
            on_publish_callback_fn=on_publish, on_lifecycle_event_connection_success_fn=lambda _: ready.set()))
        self.client.start()
        assert ready.wait(10)
        self.client.subscribe(mqtt5.SubscribePacket(subscriptions=[
            mqtt5.Subscription(f"cmd/{thing}", mqtt5.QoS.AT_LEAST_ONCE)])).result(10)
        if ask_replay:
            self.client.publish(mqtt5.PublishPacket(topic=f"cmd/ack/{thing}", qos=mqtt5.QoS.AT_LEAST_ONCE,
                                                    payload=json.dumps({"commandIds": [], "replay": True}).encode()))

    def stop(self) -> None:
        self.client.stop()


def test_the_survivors_function_replays_what_its_replica_holds_and_marks_it_delivered(
        endpoint: str, broker: int) -> None:
    a, b = global_table(endpoint, "gt-function")
    thing = "drill-device-0100"
    ids = []
    for n in range(3):
        command_id, body = command(thing, n)
        outbox.enqueue(a, "gt-function", thing=thing, command_id=command_id, topic=f"cmd/{thing}", payload=body,
                       origin_region=A)
        ids.append(command_id)
    assert until(lambda: set(states(b, "gt-function", thing)) == set(ids), 5 * DELAY)
    region = OutboxRegion(B, "127.0.0.1", broker, b, "gt-function", outbox_rule_sql())
    region.start()
    try:
        device = Device(thing, broker, ask_replay=True)
        try:
            # the connect's replay and the device's own request: every command arrives, in order
            assert until(lambda: set(device.received) == set(ids), 10.0), (device.received, region.errors)
            assert [c for c in dict.fromkeys(device.received)] == ids
            # its acknowledgements reach B's function: DELIVERED in B, then replicated to A
            assert until(lambda: set(states(b, "gt-function", thing).values()) == {"DELIVERED"}, 10.0)
            assert until(lambda: set(states(a, "gt-function", thing).values()) == {"DELIVERED"}, 5 * DELAY)
        finally:
            device.stop()
        assert until(region.idle, 10.0)
        # the function ran for the connect (every client's, the rules' own included) and the acknowledgements
        replays = [r for r in region.results if r.get("thing") == thing and "published" in r]
        assert replays and region.errors == []
        # a device that connects again gets nothing: nothing is pending
        again = Device(thing, broker, ask_replay=True)
        try:
            time.sleep(1.0)
            assert again.received == []
        finally:
            again.stop()
    finally:
        region.stop()
