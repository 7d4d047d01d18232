"""Continuous replication's shadow path applies the registry sync's newer-wins rule (issue 21), with
the sync's own code (`plan_sync` -> `newer_in_destination`), against the moto server.

A shadow event can arrive late (a slow shard, a retry, `registry replay --from-dlq`) after a device
already reported to the destination's shadow: the destination's newer sections are kept. Our own
replica write's times are not newer device state: the destination version the write left is
recorded and, while the destination still has it, the source wins. The write's signed client token
covers the state the write leaves behind (kept sections included), so its echo is still
recognised.

Times: a shadow item's `current.metadata` carries the source's per-field times (epoch seconds, as
IoT and the documented sample have them); the tests set them in the past, so the destination's
writes (moto stamps every field with the time of the shadow's last update) are newer without
sleeping. moto's whole-shadow stamping hides the section-by-section rule here: that is tested with
IoT's per-field times in tests/orchestrator/test_registry_shadow_newer.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry.replicate import Outcome, Replicator
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.replication_world import now_ms, replicator, shadow_item, stream_record
from tests.ops.test_ops_registry_shadows import put
from tests.ops.test_ops_replication_trust import hmac_signer


def document(desired: dict[str, Any] | None, reported: dict[str, Any] | None, *, version: int,
             at_s: int, clientToken: str | None = None) -> dict[str, Any]:  # noqa: N803 - the document's field
    """An /update/documents message whose `current` was written at `at_s` (every field's time)."""
    state: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for section, values in (("desired", desired), ("reported", reported)):
        if values is not None:
            state[section] = values
            metadata[section] = {k: {"timestamp": at_s} for k in values}
    doc: dict[str, Any] = {"timestamp": at_s, "current": {"state": state, "metadata": metadata, "version": version}}
    if clientToken is not None:
        doc["clientToken"] = clientToken
    return doc


def record(doc: dict[str, Any], thing: str, origin: str = SRC) -> dict[str, Any]:
    return stream_record(shadow_item(doc, thing, origin), origin)


def held(data: Any, thing: str) -> dict[str, Any]:
    got = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
    state = dict(got["state"])
    state.pop("delta", None)
    return {**state, "version": got["version"]}


@pytest.fixture
def world(ctx: AwsContext) -> dict[str, Any]:
    rep = replicator(ctx, DST)
    rep.shadow_signer = hmac_signer(ctx)
    sent: list[dict[str, Any]] = []
    rep.region.data.client.meta.events.register(
        "before-call.iot-data.UpdateThingShadow", lambda params, **_: sent.append(json.loads(params["body"])))
    return {"rep": rep, "dst": client(ctx, "iot", DST), "data": client(ctx, "iot-data", DST), "sent": sent}


def test_a_late_event_for_shadow_state_a_device_reported_here_since_is_kept(world: dict[str, Any]) -> None:
    rep, data, sent = world["rep"], world["data"], world["sent"]
    world["dst"].create_thing(thingName="late-1")
    now = now_ms() // 1000
    # the device reconnected here and reported; the source's change of a minute ago arrives late
    put(data, "late-1", {"desired": {"led": "on"}, "reported": {"fw": "2.0"}})
    late = document({"led": "off"}, {"fw": "1.0"}, version=5, at_s=now - 60)
    result = rep.handle_batch([record(late, "late-1")])
    assert result.results[0].outcome is Outcome.KEPT, result.results[0]
    assert sent == []  # nothing written
    assert {k: v for k, v in held(data, "late-1").items() if k != "version"} == \
        {"desired": {"led": "on"}, "reported": {"fw": "2.0"}}


def test_a_newer_source_change_after_our_own_write_is_applied(world: dict[str, Any]) -> None:
    rep, data, sent = world["rep"], world["data"], world["sent"]
    world["dst"].create_thing(thingName="ours-1")
    now = now_ms() // 1000
    first = document({"led": "on"}, {"fw": "1.0"}, version=1, at_s=now - 20)
    assert rep.handle_batch([record(first, "ours-1")]).results[0].outcome is Outcome.APPLIED
    # our write stamped the destination's shadow now: later than the source's next change, which
    # was made before our write landed (lag); that time is ours, not newer state here
    second = document({"led": "off"}, {"fw": "1.0"}, version=2, at_s=now - 10)
    result = rep.handle_batch([record(second, "ours-1")])
    assert result.results[0].outcome is Outcome.APPLIED, result.results[0]
    assert held(data, "ours-1")["desired"] == {"led": "off"} and len(sent) == 2


def test_our_own_writes_echo_in_this_region_never_holds_back_the_sources_next_change(
        world: dict[str, Any]) -> None:
    rep, data = world["rep"], world["data"]
    world["dst"].create_thing(thingName="ours-2")
    now = now_ms() // 1000
    first = document({"mode": "eco"}, None, version=1, at_s=now - 20)
    assert rep.handle_batch([record(first, "ours-2")]).results[0].outcome is Outcome.APPLIED
    # the destination's rule records our write's update document (origin: this region, time: now)
    mine = held(data, "ours-2")
    echo = document(mine.get("desired"), mine.get("reported"), version=mine["version"], at_s=now,
                    clientToken=world["sent"][0]["clientToken"])
    assert rep.handle_batch([record(echo, "ours-2", DST)]).results[0].outcome is Outcome.OWN_ORIGIN
    second = document({"mode": "boost"}, None, version=2, at_s=now - 10)
    result = rep.handle_batch([record(second, "ours-2")])
    assert result.results[0].outcome is Outcome.APPLIED, result.results[0]
    assert held(data, "ours-2")["desired"] == {"mode": "boost"}


def test_a_device_write_after_ours_is_newer_again(world: dict[str, Any]) -> None:
    rep, data = world["rep"], world["data"]
    world["dst"].create_thing(thingName="ours-3")
    now = now_ms() // 1000
    first = document({"led": "on"}, {"fw": "1.0"}, version=1, at_s=now - 20)
    assert rep.handle_batch([record(first, "ours-3")]).results[0].outcome is Outcome.APPLIED
    put(data, "ours-3", {"reported": {"fw": "2.0"}})  # a device here, after our write: version moved
    late = document({"led": "on"}, {"fw": "1.1"}, version=2, at_s=now - 10)
    assert rep.handle_batch([record(late, "ours-3")]).results[0].outcome is Outcome.KEPT
    assert held(data, "ours-3")["reported"] == {"fw": "2.0"}


def test_a_write_that_keeps_a_newer_section_is_signed_for_what_it_leaves_so_its_echo_is_recognised(
        world: dict[str, Any]) -> None:
    rep, data, sent = world["rep"], world["data"], world["sent"]
    world["dst"].create_thing(thingName="merge-1")
    now = now_ms() // 1000
    put(data, "merge-1", {"reported": {"fw": "2.0"}})  # the device reported here; no desired here
    event = document({"led": "blink"}, {"fw": "1.0"}, version=4, at_s=now - 30)
    assert rep.handle_batch([record(event, "merge-1")]).results[0].outcome is Outcome.APPLIED
    after = held(data, "merge-1")
    # desired copied (the destination had none), reported kept (the device's is newer)
    assert (after["desired"], after["reported"]) == ({"led": "blink"}, {"fw": "2.0"})
    # that write's update document, as a rule records it, reaches a function with the same key
    echo = document(after["desired"], after["reported"], version=after["version"], at_s=now,
                    clientToken=sent[-1]["clientToken"])
    mirror = Replicator(rep.region, rep.store, rep.origin, members=rep.members, shadow_signer=rep.shadow_signer)
    assert mirror.handle_batch([record(echo, "merge-1", THIRD)]).results[0].outcome is Outcome.ECHO


def test_replay_reads_the_origin_now_and_still_keeps_what_a_device_reported_here(
        ctx: AwsContext, world: dict[str, Any]) -> None:
    rep, data = world["rep"], world["data"]
    client(ctx, "iot", SRC).create_thing(thingName="replay-1")
    world["dst"].create_thing(thingName="replay-1")
    put(client(ctx, "iot-data", SRC), "replay-1", {"desired": {"led": "off"}, "reported": {"fw": "1.0"}})
    # the device reports here a second later (shadow times are whole seconds)
    import time

    time.sleep(1.1)
    put(data, "replay-1", {"desired": {"led": "on"}, "reported": {"fw": "2.0"}})
    old = document({"led": "off"}, {"fw": "1.0"}, version=1, at_s=now_ms() // 1000 - 5)
    result = rep.handle_batch([record(old, "replay-1")], reread=True)
    assert result.results[0].outcome is Outcome.KEPT, result.results[0]
    assert (held(data, "replay-1")["desired"], held(data, "replay-1")["reported"]) == ({"led": "on"}, {"fw": "2.0"})
