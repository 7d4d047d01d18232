"""The command outbox's Lambda function (docs/adr/0002-command-outbox.md), one per member region,
invoked by two topic rules of its region (programs/replication.py, `_command_outbox`):

- **connected**: `$aws/events/presence/connected/+`, IoT Core's lifecycle event for a client that
  connected (AWS IoT Core developer guide, "Lifecycle events", "Connect/Disconnect events": the JSON
  carries `clientId`, `eventType` "connected", `timestamp`, `versionNumber`, `sessionIdentifier`,
  `principalIdentifier`, `ipAddress`, and `thingName` only with the exclusive-thing feature; events may
  arrive out of order and more than once). The rule selects `clientId`, `eventType` and `timestamp`.
  The event carries no `sessionPresent` flag, so the function cannot tell a failover (a new session
  in this region) from an ordinary reconnect: it replays every PENDING, unexpired command of the
  client id on every connect (`outbox.replay`, QoS 1, at most 10 a second, in this region), and the
  device deduplicates by `commandId` (docs/devices.md, "Commands that survive a failover"). A
  duplicated lifecycle event costs a duplicated replay, never a duplicated execution. The client id
  is the thing name (docs/devices.md); a client id that is not a thing name is refused.
- **ack**: `cmd/ack/+`, the device's acknowledgement (`{"commandIds": [...]}`, and `"replay": true`
  to have what is still pending sent again now: a device sends it once it has resubscribed, which
  closes the race between the connect's replay and its subscription); the rule adds the
  thing from the topic (`topic(3) AS thing`, so a device acknowledges under its own name only as far
  as its policy lets it publish there) and `'ack' AS eventType`. The commands become DELIVERED
  (`outbox.acknowledge`, conditional: an unknown id is never created); global-table replication
  carries the state to the other regions.

A malformed event is refused before any call (`BadEvent`, one line naming what is wrong). Publishes
the data plane refuses are returned (`errors`) and stay PENDING: the next connect sends them again.

Configuration: AWS_REGION (set by Lambda), OUTBOX_TABLE (the global table's name: this region's
replica is the one read and written).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.registry import outbox

TABLE_ENV = "OUTBOX_TABLE"
MAX_ACK_IDS = 100  # one acknowledgement message: at most this many ids (each a conditional UpdateItem)


class BadEvent(ValueError):
    """An event the function cannot act on (not what its rules send)."""


def parse(event: Any) -> tuple[str, str, tuple[str, ...]]:
    """(kind, thing, command ids): ("connected", thing, ()), ("ack", thing, ids) or ("ack+replay",
    thing, ids: possibly none)."""
    if not isinstance(event, Mapping):
        raise BadEvent(f"outbox: the event must be a JSON object, not {type(event).__name__}")
    kind = event.get("eventType")
    if kind == "connected":
        thing = event.get("clientId")
    elif kind == "ack":
        thing = event.get("thing")
    else:
        raise BadEvent(f"outbox: eventType {str(kind)[:40]!r} is neither 'connected' (a presence event) nor 'ack'")
    if not isinstance(thing, str) or not outbox.THING.match(thing):
        raise BadEvent(f"outbox: {str(thing)[:60]!r} is not a thing name (the client id must be the thing name)")
    if kind == "connected":
        return kind, thing, ()
    again = event.get("replay", False)
    if not isinstance(again, bool):
        raise BadEvent("outbox: replay must be true or false")
    ids = event.get("commandIds", [] if again else None)
    if not isinstance(ids, list) or not (ids or again) or len(ids) > MAX_ACK_IDS or \
            not all(isinstance(i, str) and outbox.ULID.match(i) for i in ids):
        raise BadEvent(f"outbox: an acknowledgement carries commandIds, a list of 1-{MAX_ACK_IDS} ULIDs "
                       "(0 with replay: true)")
    return ("ack+replay" if again else kind), thing, tuple(dict.fromkeys(ids))


_CLIENTS: dict[str, Any] = {}


def clients(region: str) -> tuple[Any, Any]:
    """This region's DynamoDB and iot-data clients (the data plane at the account's ATS endpoint),
    made once per execution environment."""
    if region not in _CLIENTS:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=20)
        endpoint = os.environ.get("AWS_ENDPOINT_URL")  # tests: the local endpoint; Lambda: unset
        ddb = boto3.client("dynamodb", region_name=region, config=config)
        iot = boto3.client("iot", region_name=region, config=config)
        data_url = endpoint or "https://" + iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        _CLIENTS[region] = (ddb, boto3.client("iot-data", region_name=region, endpoint_url=data_url, config=config))
    return _CLIENTS[region]


def handler(event: Any, context: Any) -> dict[str, Any]:
    parsed = parse(event)  # a malformed event is refused before any client is made
    region, table = os.environ.get("AWS_REGION", ""), os.environ.get(TABLE_ENV, "")
    if not region or not table:
        raise BadEvent(f"outbox: AWS_REGION and {TABLE_ENV} must be set")
    ddb, data = clients(region)
    return process(parsed, region=region, table=table, ddb=ddb, data=data)


def run(event: Any, *, region: str, table: str, ddb: Any, data: Any,
        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One invocation with injected clients (the local world runs the function this way: its
    `iot-data` publishes reach that region's broker; `log` receives the log line)."""
    return process(parse(event), region=region, table=table, ddb=ddb, data=data, log=log)


def process(parsed: tuple[str, str, tuple[str, ...]], *, region: str, table: str, ddb: Any,
            data: Any, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    kind, thing, ids = parsed
    acknowledged = outbox.acknowledge(ddb, table, thing, ids) if ids else 0
    if kind == "ack":
        return {"thing": thing, "acknowledged": acknowledged}
    report = outbox.replay(ddb, data, table, thing)
    result: dict[str, Any] = {"thing": thing, "published": list(report.published),
                              "errors": [list(e) for e in report.errors]}
    if kind == "ack+replay":
        result["acknowledged"] = acknowledged
    if log is not None:  # Lambda: stdout is the function's log stream; ids and codes only, no payloads
        log(json.dumps({"outbox": "replay", "region": region, **result}))
    return result
