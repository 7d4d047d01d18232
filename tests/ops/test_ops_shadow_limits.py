"""The Device Shadow service's limits in the strict world (tests/iot_strict.py), and how the
registry sync fits them (issue 21: "no 8 KB shadow limit").

AWS counts the desired and reported data *sent*: `shadow_patch` sends a null for every key only the
destination has, so a patch can exceed 8 KB where the result would fit. The sync then writes two
documents (`plan.shadow_writes`: the deletions, then the source's section), one operation for the
checkpoint, and reads the result back equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.aws import AwsContext, client
from orchestrator.registry import Caller, Checkpoint, SyncOptions, apply_sync, plan_sync, read_snapshot, sync_clients
from orchestrator.registry.sync.model import Kind
from tests.iot_strict import SHADOW_BYTES, state_bytes
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import HardCrashCheckpoint, SimulatedCrash, seed, thing_name

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


def shadow_updates(data_client: Any) -> list[dict[str, Any]]:
    """The UpdateThingShadow documents this client sends, in order."""
    sent: list[dict[str, Any]] = []

    def log(params: dict[str, Any], **_: Any) -> None:
        sent.append({"thing": params["thingName"], "document": json.loads(params["payload"])})

    data_client.meta.events.register("provide-client-params.iot-data.UpdateThingShadow", log)
    return sent


def desired(data_client: Any, thing: str) -> dict[str, Any]:
    state = json.loads(data_client.get_thing_shadow(thingName=thing)["payload"].read())["state"]
    return dict(state.get("desired") or {})


def over_the_limit(iot: IotFactory, data: Callable[[str], Any]) -> tuple[str, str]:
    """Source: one 7 KB value. Destination: 300 small keys the source does not have (written
    first: the source's section is the newer one, so the sync must carry it; a destination section
    written after the source's is kept: docs/registry.md). The result fits; the one-document patch
    (the 7 KB value plus 300 nulls) does not."""
    seed(iot(SRC), 2)
    seed(iot(DST), 2)
    big, small = thing_name(0), thing_name(1)
    put(data(DST), big, {"desired": {f"k{i:03d}": 1 for i in range(300)}})
    put(data(SRC), big, {"desired": {"blob": "x" * 7000}})
    put(data(SRC), small, {"desired": {"led": "on"}})
    patch = {"desired": {"blob": "x" * 7000, **{f"k{i:03d}": None for i in range(300)}}}
    assert state_bytes(patch) > SHADOW_BYTES  # AWS would refuse the patch as one document
    return big, small


def test_a_destination_with_many_extra_keys_is_synced_and_reads_back_equal(
        iot: IotFactory, data: Callable[[str], Any]) -> None:
    """Issue 21: before, the one-document patch was refused with 413 and the sync failed."""
    big, small = over_the_limit(iot, data)
    dst_data = data(DST)
    sent = shadow_updates(dst_data)

    report = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000.0), src_data=data(SRC), dst_data=dst_data)

    assert report.ok, report.errors
    assert report.verification is not None and report.verification.ok  # `ok` means read back equal
    assert desired(dst_data, big) == {"blob": "x" * 7000}
    assert desired(dst_data, small) == {"led": "on"}
    # two documents for the big one (the deletions, then the source's section), one for the other
    writes = [u["document"]["state"] for u in sent if u["thing"] == big]
    assert writes == [{"desired": {f"k{i:03d}": None for i in range(300)}}, {"desired": {"blob": "x" * 7000}}]
    assert [u["document"]["state"] for u in sent if u["thing"] == small] == [{"desired": {"led": "on"}}]
    assert report.counts["shadow"]["update"] == 2  # one operation per shadow
    again = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000.0), src_data=data(SRC), dst_data=dst_data)
    assert again.ok and again.write_calls == 0


def test_a_pair_interrupted_between_its_documents_is_redone_whole_on_resume(
        iot: IotFactory, data: Callable[[str], Any], tmp_path: Path) -> None:
    """A two-document write is one operation in the checkpoint: a crash after the deletions leaves
    it unmarked, and the resumed run (the same plan, the journal the crashed run left) skips what
    was marked and redoes the pair whole, which ends in the source's state."""
    big, _ = over_the_limit(iot, data)
    src_data, dst_data = Caller(data(SRC)), data(DST)
    plan = plan_sync(read_snapshot(iot(SRC), data_caller=src_data),
                     read_snapshot(iot(DST), pems=False, data_caller=Caller(dst_data)))
    (pair,) = [op for op in plan.ops if op.kind is Kind.SHADOW and op.params["thing"] == big]
    path = tmp_path / "dev-eu-west-1-eu-central-1.json"
    checkpoint = HardCrashCheckpoint(path, src_region=SRC, dst_region=DST, flush_every=1)
    sent = shadow_updates(dst_data)

    def crash_before_the_second_document(params: dict[str, Any], **_: Any) -> None:
        if params["thingName"] == big and len([u for u in sent if u["thing"] == big]) == 2:
            checkpoint.dead = True
            raise SimulatedCrash()

    dst_data.meta.events.register("provide-client-params.iot-data.UpdateThingShadow",
                                  crash_before_the_second_document)
    with pytest.raises(SimulatedCrash):
        apply_sync(plan, iot(DST), None, checkpoint, concurrency=1, data_caller=Caller(dst_data))
    assert desired(data(DST), big) == {}  # the deletions are in, the source's value is not
    saved = set(Checkpoint.saved(path)["done"])
    assert saved and pair.key not in saved

    fresh = data(DST)
    resent = shadow_updates(fresh)
    report = apply_sync(plan, iot(DST), None, Checkpoint(path, src_region=SRC, dst_region=DST),
                        data_caller=Caller(fresh))
    assert report.ok, report.errors
    assert report.resumed and report.skipped_from_checkpoint == len(saved)
    assert len([u for u in resent if u["thing"] == big]) == 2  # the pair again, whole
    assert desired(fresh, big) == {"blob": "x" * 7000}
    assert not path.exists()
