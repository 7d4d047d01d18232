"""The Device Shadow service's limits in the strict world (tests/iot_strict.py), and what the
registry sync does when the destination refuses a shadow patch (issue 21: "no 8 KB shadow limit").

AWS counts the desired and reported data *sent*: `shadow_patch` sends a null for every key only the
destination has, so a patch can exceed 8 KB where the result would fit. Such a refusal must be a
failed operation in the sync's report, never `ok`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.aws import AwsContext, client
from orchestrator.registry import SyncOptions, sync_clients
from tests.iot_strict import SHADOW_BYTES, state_bytes
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import seed, thing_name

IotFactory = Callable[[str], Any]


@pytest.fixture
def data(ctx: AwsContext) -> Callable[[str], Any]:
    return lambda region: client(ctx, "iot-data", region)


def put(data_client: Any, thing: str, state: dict[str, Any], **extra: Any) -> None:
    data_client.update_thing_shadow(thingName=thing, payload=json.dumps({"state": state, **extra}).encode())


def test_an_update_over_8_kb_of_state_sent_is_refused_with_413(iot: IotFactory, data: Callable[[str], Any]) -> None:
    seed(iot(SRC), 1)
    thing = thing_name(0)
    fits = {"desired": {"blob": "x" * (SHADOW_BYTES - 30)}}
    assert state_bytes(fits) <= SHADOW_BYTES
    put(data(SRC), thing, fits)
    with pytest.raises(ClientError) as info:
        put(data(SRC), thing, {"desired": {"blob": "x" * SHADOW_BYTES}})
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    # metadata outside desired/reported does not count; the stored shadow is unchanged
    stored = json.loads(data(SRC).get_thing_shadow(thingName=thing)["payload"].read())
    assert stored["state"]["desired"] == fits["desired"]


def test_an_update_whose_merged_shadow_exceeds_8_kb_is_refused(iot: IotFactory, data: Callable[[str], Any]) -> None:
    seed(iot(SRC), 1)
    thing = thing_name(0)
    put(data(SRC), thing, {"desired": {"a": "x" * 5000}})
    with pytest.raises(ClientError) as info:
        put(data(SRC), thing, {"reported": {"b": "y" * 5000}})  # 5 KB sent, 10 KB stored
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    put(data(SRC), thing, {"desired": {"a": None}, "reported": {"b": "y" * 5000}})  # the delete makes room


@pytest.mark.parametrize(("payload", "message"), [
    (b"{not json", "Invalid JSON"),
    (b'{"desired": {}}', "Missing required node: state"),
    (b'{"state": []}', "State node must be an object"),
    (b'{"state": {"desired": 3}}', "Desired node must be an object"),
    (json.dumps({"state": {"reported": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}).encode(),
     "too many levels of nesting; maximum is 6"),
    (json.dumps({"state": {"desired": {}}, "clientToken": "t" * 65}).encode(), "Invalid clientToken"),
])
def test_malformed_shadow_updates_are_refused_as_the_service_does(
        iot: IotFactory, data: Callable[[str], Any], payload: bytes, message: str) -> None:
    seed(iot(SRC), 1)
    with pytest.raises(ClientError, match=message) as info:
        data(SRC).update_thing_shadow(thingName=thing_name(0), payload=payload)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(("name", "accepted"), [
    ("n" * 64, True), ("$cfg:a_b-1", True), ("n" * 65, False), ("has space", False), ("a/b", False), ("é", False),
])
def test_named_shadow_names_follow_the_api_constraint(
        iot: IotFactory, data: Callable[[str], Any], name: str, accepted: bool) -> None:
    """shadowName: 1-64 characters of [$a-zA-Z0-9:_-] (GetThingShadow / UpdateThingShadow API reference)."""
    seed(iot(SRC), 1)
    payload = json.dumps({"state": {"reported": {"on": True}}}).encode()
    if accepted:
        data(SRC).update_thing_shadow(thingName=thing_name(0), shadowName=name, payload=payload)
        return
    with pytest.raises(ClientError) as info:
        data(SRC).update_thing_shadow(thingName=thing_name(0), shadowName=name, payload=payload)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_six_levels_and_a_64_byte_token_are_accepted(iot: IotFactory, data: Callable[[str], Any]) -> None:
    seed(iot(SRC), 1)
    put(data(SRC), thing_name(0), {"reported": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, clientToken="t" * 64)


def test_a_shadow_patch_over_the_limit_is_a_failed_sync_not_ok(iot: IotFactory, data: Callable[[str], Any]) -> None:
    """Source: one 7 KB value. Destination: 300 small keys the source does not have. The result
    would fit; the patch (the 7 KB value plus 300 nulls) does not, and the sync says so."""
    seed(iot(SRC), 2)
    seed(iot(DST), 2)
    big, small = thing_name(0), thing_name(1)
    # the destination's keys are written first: the source's section is the newer one, so the sync
    # must carry it (a destination section written after the source's is kept: docs/registry.md)
    put(data(DST), big, {"desired": {f"k{i:03d}": 1 for i in range(300)}})
    put(data(SRC), big, {"desired": {"blob": "x" * 7000}})
    put(data(SRC), small, {"desired": {"led": "on"}})

    report = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000.0), src_data=data(SRC), dst_data=data(DST))
    assert not report.ok
    refused = [e for e in report.errors if big in e.op]
    assert len(refused) == 1 and refused[0].code == "RequestEntityTooLargeException", report.errors
    assert "exceeds the maximum size" in refused[0].message
    # the other shadow was still carried; the refused one is unchanged in the destination
    carried = json.loads(data(DST).get_thing_shadow(thingName=small)["payload"].read())["state"]["desired"]
    assert carried == {"led": "on"}
    kept = json.loads(data(DST).get_thing_shadow(thingName=big)["payload"].read())["state"]["desired"]
    assert "blob" not in kept and len(kept) == 300
