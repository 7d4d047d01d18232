"""The command outbox (orchestrator/registry/outbox.py; docs/adr/0002-command-outbox.md) against the
moto server: a command written once survives in the table, a retried send changes nothing, bad
input writes nothing, a device that connects gets its pending, unexpired commands in commandId order
through the region it reached, and an acknowledged command is not sent again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.errors import InputRejected
from orchestrator.registry.outbox import DELIVERED, MAX_PAYLOAD_BYTES, acknowledge, enqueue, pending, replay
from tests.ops.conftest import DST, SRC

TABLE = "dev-command-outbox"
NOW = 1_800_000_000.0
IDS = ["01JE0000000000000000000001", "01JE0000000000000000000002", "01JE0000000000000000000003"]


@pytest.fixture
def ddb(ctx: AwsContext) -> Any:
    d = client(ctx, "dynamodb", SRC)
    d.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"},
                                         {"AttributeName": "commandId", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"},
                              {"AttributeName": "commandId", "KeyType": "RANGE"}])
    return d


def body(command_id: str, **extra: Any) -> bytes:
    return json.dumps({"commandId": command_id, "action": "reboot", **extra}).encode()


def put(ddb: Any, command_id: str, thing: str = "sensor-1", expires_in: int = 3600, now: float = NOW) -> bool:
    return enqueue(ddb, TABLE, thing=thing, command_id=command_id, topic=f"cmd/{thing}", payload=body(command_id),
                   origin_region=SRC, expires_in=expires_in, now=now)


def items(ddb: Any) -> list[dict[str, Any]]:
    return list(ddb.scan(TableName=TABLE)["Items"])


def test_a_command_is_written_once_and_a_retried_send_changes_nothing(ddb: Any) -> None:
    assert put(ddb, IDS[0]) is True
    first = items(ddb)
    assert put(ddb, IDS[0], now=NOW + 60) is False  # the sender retried: same id, nothing changes
    assert items(ddb) == first
    (item,) = first
    assert item["state"]["S"] == "PENDING" and item["originRegion"]["S"] == SRC
    assert int(item["expiresAt"]["N"]) == int(NOW) + 3600 and int(item["createdMs"]["N"]) == int(NOW * 1000)
    assert bytes(item["payload"]["B"]) == body(IDS[0])


@pytest.mark.parametrize(("change", "message"), [
    ({"command_id": "not-a-ulid"}, "not a ULID"),
    ({"thing": "bad thing"}, "not a thing name"),
    ({"topic": "cmd/+/x"}, "not a topic"),
    ({"topic": "$aws/things/sensor-1/shadow/update"}, "not a topic"),
    ({"topic": "devices/sensor-1/commands"}, "is not under cmd/"),  # the replay function publishes under cmd/ only
    ({"topic": "cmd/ack/sensor-1"}, "is not under cmd/"),  # the devices' acknowledgements
    ({"topic": "cmd/ack"}, "is not under cmd/"),
    ({"payload": b"x" * (MAX_PAYLOAD_BYTES + 1)}, "at most"),
    ({"payload": json.dumps({"commandId": IDS[1]}).encode()}, "same commandId"),
    ({"payload": b"reboot"}, "same commandId"),
    ({"expires_in": 7 * 24 * 3600 + 1}, "7 days"),
    ({"expires_in": 0}, "7 days"),
])
def test_bad_input_is_refused_and_nothing_is_written(ddb: Any, change: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"thing": "sensor-1", "command_id": IDS[0], "topic": "cmd/sensor-1",
                            "payload": body(IDS[0]), "origin_region": SRC, "now": NOW, **change}
    with pytest.raises(InputRejected, match=message):
        enqueue(ddb, TABLE, **args)
    assert items(ddb) == []


def test_pending_is_the_things_unexpired_commands_in_id_order_across_pages(ddb: Any) -> None:
    for command_id in reversed(IDS):  # written out of order
        put(ddb, command_id)
    put(ddb, "01JE0000000000000000000000", expires_in=10)  # expires before the device comes back
    put(ddb, "01JE0000000000000000000009", thing="sensor-2")  # another device's
    got = pending(ddb, TABLE, "sensor-1", now=NOW + 60, page_size=1)  # one item a page: every page followed
    assert [c.command_id for c in got] == IDS
    assert all(c.topic == "cmd/sensor-1" and c.state == "PENDING" for c in got)
    assert "reboot" not in repr(got[0])  # payloads are never printed


class Recording:
    """The region's iot-data client, recording each publish it passes on to moto."""

    def __init__(self, real: Any, fail: set[str] | None = None) -> None:
        self.real, self.fail, self.sent = real, fail or set(), []

    def publish(self, **kwargs: Any) -> Any:
        command_id = json.loads(kwargs["payload"])["commandId"]
        if command_id in self.fail:
            return self.real.publish(topic="cmd/+/bad", payload=b"", qos=1)  # refused by the data plane
        self.sent.append((kwargs["topic"], kwargs["qos"], command_id))
        return self.real.publish(**kwargs)


def test_a_device_reconnecting_in_another_region_gets_its_pending_commands_until_it_acknowledges(
        ddb: Any, ctx: AwsContext) -> None:
    for command_id in IDS:
        put(ddb, command_id)
    data = Recording(client(ctx, "iot-data", DST))  # the device connected to the secondary
    waits: list[float] = []
    report = replay(ddb, data, TABLE, "sensor-1", now=NOW + 60, sleep=waits.append)
    assert report.ok and report.published == tuple(IDS)
    assert data.sent == [("cmd/sensor-1", 1, c) for c in IDS]  # QoS 1, in order
    assert waits == [0.1, 0.1]  # at most 10 a second, like the broker's own replay
    assert acknowledge(ddb, TABLE, "sensor-1", IDS[:2]) == 2
    assert acknowledge(ddb, TABLE, "sensor-1", IDS[:2]) == 0  # already delivered: no change
    again = replay(ddb, Recording(client(ctx, "iot-data", DST)), TABLE, "sensor-1", now=NOW + 120, sleep=waits.append)
    assert again.published == (IDS[2],)  # the next connect sends only what is still pending
    states = {i["commandId"]["S"]: i["state"]["S"] for i in items(ddb)}
    assert states == {IDS[0]: DELIVERED, IDS[1]: DELIVERED, IDS[2]: "PENDING"}


def test_acknowledging_an_unknown_command_creates_nothing(ddb: Any) -> None:
    assert acknowledge(ddb, TABLE, "sensor-1", [IDS[0]]) == 0
    assert items(ddb) == []


def test_a_publish_the_data_plane_refuses_is_reported_and_stays_pending(ddb: Any, ctx: AwsContext) -> None:
    for command_id in IDS:
        put(ddb, command_id)
    data = Recording(client(ctx, "iot-data", DST), fail={IDS[1]})
    report = replay(ddb, data, TABLE, "sensor-1", now=NOW + 60, sleep=lambda _s: None)
    assert not report.ok and report.published == (IDS[0], IDS[2])
    assert [c for c, _code in report.errors] == [IDS[1]]
    assert [c.command_id for c in pending(ddb, TABLE, "sensor-1", now=NOW + 60)] == IDS
