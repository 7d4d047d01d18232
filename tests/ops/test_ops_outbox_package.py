"""The command outbox's function tested as deployed: the exact zip the replication program hands to
Lambda (`registry.command_outbox: true`), unzipped, run in a fresh interpreter (`python -I -S`: no
site-packages, no PYTHONPATH) whose path holds only that code and what Lambda's Python runtime
provides, against moto: a connect replays the device's pending commands once, in id order; its
acknowledgement (the `cmd/ack/+` rule's event) marks them DELIVERED; the next connect replays
nothing; malformed events are refused with a one-line error and publish nothing."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry import outbox
from programs import package
from programs.replication import OUTBOX_HANDLER
from tests.lambda_runtime import run_unzipped, unpack
from tests.ops.conftest import DST, SRC
from tests.passthrough import passthrough

FUNCTION = "aws:lambda/function:Function"
TABLE = "iot-dev-command-outbox"
THING = "sensor-7"
IDS = ["01JE0000000000000000000001", "01JE0000000000000000000002", "01JE0000000000000000000003"]

DRIVER = """
import json, os, sys
app, runtime, events_file = sys.argv[1:4]
sys.path[:0] = [app, runtime]
import orchestrator.registry.outbox_function as fn
for name, event in json.load(open(events_file)):
    try:
        if name.startswith("enqueue"):  # a sender writing a command between two events
            ddb, _ = fn.clients(os.environ["AWS_REGION"])
            out = fn.outbox.enqueue(ddb, os.environ["OUTBOX_TABLE"], thing=event["thing"],
                                    command_id=event["commandId"], topic="cmd/" + event["thing"],
                                    payload=json.dumps({"commandId": event["commandId"]}).encode(),
                                    origin_region=os.environ["AWS_REGION"])
        else:
            out = fn.handler(event, None)
    except Exception as exc:
        out = {"raised": type(exc).__name__ + ": " + str(exc)}
    print("RESULT " + json.dumps([name, out]), flush=True)
"""  # + lambda_runtime.DRIVER_END


class Publishes:
    """A pass-through proxy in front of the test endpoint (127.0.0.1), recording every data-plane
    publish (POST /topics/<topic>) it forwards; headers and body are passed on unchanged."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.published: list[str] = []
        self.url = ""

    def _record(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> None:
        if method == "POST" and path.startswith("/topics/"):
            self.published.append(urllib.parse.unquote(path.split("?")[0][len("/topics/"):]))

    def serve(self) -> Iterator[Publishes]:
        with passthrough(self.upstream, self._record) as self.url:
            yield self


@pytest.fixture
def publishes(endpoint: str) -> Iterator[Publishes]:
    yield from Publishes(endpoint).serve()


def deployed_zip() -> tuple[Path, str]:
    """The archive the replication program gives the outbox functions, and the hash it declares."""
    from programs.mocks import evaluate
    from tests.programs.conftest import SECONDARY, replication_args

    ev = evaluate(replace(replication_args(SECONDARY), routing="failover", command_outbox=True),
                  stack="dev-replication")
    functions = [fn for fn in ev.of_type(FUNCTION) if fn.inputs["handler"] == OUTBOX_HANDLER]
    assert len(functions) == 2  # one per member region
    paths = {fn.inputs["code"]["fileArchive"] for fn in functions}
    hashes = {fn.inputs["sourceCodeHash"] for fn in functions}
    assert len(paths) == len(hashes) == 1
    return Path(paths.pop()), hashes.pop()


def _table(ctx: AwsContext) -> Any:
    """The outbox table's replica in the region the device reached (moto makes no replicas: the
    replica is created here, shaped as the program declares it)."""
    ddb = client(ctx, "dynamodb", DST)
    ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"},
                                           {"AttributeName": "commandId", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"},
                                {"AttributeName": "commandId", "KeyType": "RANGE"}])
    return ddb


def test_the_deployed_outbox_zip_replays_once_until_acknowledged_and_refuses_malformed_events(
        ctx: AwsContext, publishes: Publishes, tmp_path: Path) -> None:
    app = unpack(*deployed_zip(), package.closure(handler=OUTBOX_HANDLER)[0], tmp_path)

    ddb = _table(ctx)
    for command_id in reversed(IDS[:2]):  # written out of order, in the region that later died
        assert outbox.enqueue(ddb, TABLE, thing=THING, command_id=command_id, topic=f"cmd/{THING}",
                              payload=json.dumps({"commandId": command_id, "action": "open"}).encode(),
                              origin_region=SRC)
    outbox.enqueue(ddb, TABLE, thing="sensor-8", command_id="01JE0000000000000000000009", topic="cmd/sensor-8",
                   payload=b'{"commandId": "01JE0000000000000000000009"}', origin_region=SRC)  # not this device's

    # what the rules deliver (AWS IoT Core developer guide, "Lifecycle events": the connected event's
    # clientId, eventType, timestamp; the ack rule's topic(3) AS thing, commandIds, 'ack' AS eventType)
    connected = {"clientId": THING, "eventType": "connected", "timestamp": 1_800_000_000_000}
    events: list[tuple[str, Any]] = [
        ("first-connect", connected),
        ("ack", {"thing": THING, "commandIds": IDS, "eventType": "ack"}),
        ("second-connect", connected),
        # written after the connect (or published before the device had resubscribed): the device
        # asks again once subscribed, acknowledging nothing
        ("enqueue-3", {"thing": THING, "commandId": IDS[2]}),
        ("replay-request", {"thing": THING, "commandIds": [], "replay": True, "eventType": "ack"}),
        ("replay-and-ack", {"thing": THING, "commandIds": [IDS[2]], "replay": True, "eventType": "ack"}),
        ("no-client-id", {"eventType": "connected", "timestamp": 1}),
        ("not-a-thing", {"clientId": "a/b#", "eventType": "connected"}),
        ("disconnected", {"clientId": THING, "eventType": "disconnected"}),
        ("bad-ack", {"thing": THING, "commandIds": ["not-a-ulid"], "eventType": "ack"}),
        ("empty-ack", {"thing": THING, "commandIds": [], "eventType": "ack"}),
        ("bad-replay", {"thing": THING, "replay": "yes", "eventType": "ack"}),
        ("not-an-object", ["connected"]),
    ]
    results, _ = run_unzipped(DRIVER, app, events, {"AWS_REGION": DST, "OUTBOX_TABLE": TABLE,
                                                     "AWS_ENDPOINT_URL": publishes.url}, tmp_path)

    # the connect replays this device's pending commands, in id order, once each
    assert results["first-connect"] == {"thing": THING, "published": IDS[:2], "errors": []}
    assert results["ack"] == {"thing": THING, "acknowledged": 2}
    # after the acknowledgement, the next connect replays nothing
    assert results["second-connect"] == {"thing": THING, "published": [], "errors": []}
    assert results["enqueue-3"] is True
    # the command written after that connect goes out on the device's request, until acknowledged
    assert results["replay-request"] == {"thing": THING, "published": [IDS[2]], "errors": [], "acknowledged": 0}
    assert results["replay-and-ack"] == {"thing": THING, "published": [], "errors": [], "acknowledged": 1}
    assert publishes.published == [f"cmd/{THING}"] * 3
    states = {i["commandId"]["S"]: i["state"]["S"] for i in ddb.scan(TableName=TABLE)["Items"]}
    assert states == {**{i: outbox.DELIVERED for i in IDS}, "01JE0000000000000000000009": "PENDING"}

    # malformed events: refused with one line saying what is wrong; nothing published for them
    expected = {"no-client-id": "is not a thing name", "not-a-thing": "is not a thing name",
                "disconnected": "neither 'connected'", "bad-ack": "list of 1-100 ULIDs",
                "empty-ack": "list of 1-100 ULIDs", "bad-replay": "replay must be true or false",
                "not-an-object": "must be a JSON object"}
    for name, message in expected.items():
        raised = results[name]["raised"]
        assert raised.startswith("BadEvent: outbox: ") and message in raised and "\n" not in raised, raised
    assert len(publishes.published) == 3


def test_the_handler_refuses_before_any_call_without_its_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.registry import outbox_function

    monkeypatch.delenv("OUTBOX_TABLE", raising=False)
    monkeypatch.setattr(outbox_function, "clients", lambda region: pytest.fail("no client may be made"))
    with pytest.raises(outbox_function.BadEvent, match="OUTBOX_TABLE must be set"):
        outbox_function.handler({"clientId": THING, "eventType": "connected"}, None)

