"""Dynamic thing groups carried by continuous replication (orchestrator/registry/dynamic_groups.py),
against the moto server with the local world's dynamic groups (orchestrator/drill/world/iot_groups.py).

The events are AWS's documented thing-group payload (tests/ops/data/replication_payloads.json, the
registry events page: a THING_GROUP_EVENT names the group and has `dynamicGroupMappingId`, never the
query) and CloudTrail records of Create/Update/DeleteDynamicThingGroup, as EventBridge delivers them.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry.replicate import Outcome
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import CallLog
from tests.ops.replication_world import api_call_event, now_ms, payload, replicator, rule_item, stream_record

X1, X2 = "attributes.model:X1", "attributes.model:X2"


def group_event(name: str, operation: str, *, t: int, version: int = 1, mapping: str | None = "m-1",
                origin: str = SRC, description: str = "") -> dict[str, Any]:
    """The documented THING_GROUP_EVENT (a dynamic group's has a mapping id), as the rule writes it."""
    event = payload("thing_group", thingGroupName=name, operation=operation, timestamp=t, versionNumber=version,
                    eventId=f"g-{name}-{operation}-{t}", dynamicGroupMappingId=mapping, description=description)
    return stream_record(rule_item(event, origin), origin)


def membership_event(group: str, thing: str, operation: str, *, t: int) -> dict[str, Any]:
    event = payload("membership", operation=operation, timestamp=t, eventId=f"m-{group}-{thing}-{t}",
                    groupArn=f"arn:aws:iot:{SRC}:123456789012:thinggroup/{group}",
                    thingArn=f"arn:aws:iot:{SRC}:123456789012:thing/{thing}")
    return stream_record(rule_item(event, SRC), SRC)


@pytest.fixture
def world(ctx: AwsContext) -> dict[str, Any]:
    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    src.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "REGISTRY"})
    for region in (src, dst):  # the same fleet in both regions (as the thing events carry it)
        for i, model in enumerate(("X1", "X1", "X2")):
            region.create_thing(thingName=f"d{i}", attributePayload={"attributes": {"model": model}})
    rep = replicator(ctx, DST)
    return {"src": src, "dst": dst, "rep": rep, "log": CallLog(rep.region.iot.client)}  # the function's writes


def outcome(result: Any) -> Outcome:
    assert result.failures == (), [r.detail for r in result.results]
    (one,) = result.results
    return one.outcome


def test_a_dynamic_group_is_made_updated_and_deleted_by_its_registry_events(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    assert dst.get_indexing_configuration()["thingIndexingConfiguration"]["thingIndexingMode"] == "OFF"
    src.create_dynamic_thing_group(thingGroupName="x1", queryString=X1,
                                   thingGroupProperties={"thingGroupDescription": "model X1",
                                                         "attributePayload": {"attributes": {"team": "ota"}}})
    t = now_ms()
    assert outcome(rep.handle_batch([group_event("x1", "CREATED", t=t)])) is Outcome.APPLIED
    assert world["log"].write_ops() == {"UpdateIndexingConfiguration": 1, "CreateDynamicThingGroup": 1}
    got = dst.describe_thing_group(thingGroupName="x1")
    assert (got["queryString"], got["indexName"], got["queryVersion"]) == (X1, "AWS_Things", "2017-09-30")
    assert got["thingGroupProperties"]["thingGroupDescription"] == "model X1"
    assert got["thingGroupProperties"]["attributePayload"]["attributes"] == {"team": "ota"}
    # the group needed fleet indexing: the origin's configuration was written first
    assert dst.get_indexing_configuration()["thingIndexingConfiguration"]["thingIndexingMode"] == "REGISTRY"
    assert sorted(dst.list_things_in_thing_group(thingGroupName="x1")["things"]) == ["d0", "d1"]

    src.update_dynamic_thing_group(thingGroupName="x1", queryString=X2,
                                   thingGroupProperties={"thingGroupDescription": "model X2"})
    world["log"].reset()
    assert outcome(rep.handle_batch([group_event("x1", "UPDATED", t=t + 1, version=2)])) is Outcome.APPLIED
    # the cost docs/registry.md states: the destination read, the write, the read-back (+ 1 origin read)
    assert world["log"].calls == {"DescribeThingGroup": 3, "UpdateDynamicThingGroup": 1}
    got = dst.describe_thing_group(thingGroupName="x1")
    assert got["queryString"] == X2 and got["thingGroupProperties"]["thingGroupDescription"] == "model X2"
    assert dst.list_things_in_thing_group(thingGroupName="x1")["things"] == ["d2"]
    # the same event again (a redelivery) is stale; a later one with nothing new writes nothing
    assert outcome(rep.handle_batch([group_event("x1", "UPDATED", t=t + 1, version=2)])) is Outcome.STALE
    world["log"].reset()
    assert outcome(rep.handle_batch([group_event("x1", "UPDATED", t=t + 2, version=3)])) is Outcome.UNCHANGED
    assert world["log"].calls == {"DescribeThingGroup": 2}  # no write, no read-back

    src.delete_dynamic_thing_group(thingGroupName="x1")
    assert outcome(rep.handle_batch([group_event("x1", "DELETED", t=t + 3, version=3)])) is Outcome.APPLIED
    with pytest.raises(dst.exceptions.ResourceNotFoundException):
        dst.describe_thing_group(thingGroupName="x1")


def test_an_event_that_does_not_say_dynamic_makes_the_dynamic_group_not_a_static_one(
        world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    src.create_dynamic_thing_group(thingGroupName="x1", queryString=X1)
    assert outcome(rep.handle_batch([group_event("x1", "CREATED", t=now_ms(), mapping=None)])) is Outcome.APPLIED
    assert dst.describe_thing_group(thingGroupName="x1")["queryString"] == X1


def test_a_delete_event_deletes_nothing_while_the_origin_still_has_the_group(world: dict[str, Any]) -> None:
    """Deleted and made again in the origin: the late DELETED event is newer than what was applied
    here, but the origin answers that the group exists, so it stays (and is made equal)."""
    src, dst, rep = world["src"], world["dst"], world["rep"]
    src.create_dynamic_thing_group(thingGroupName="x1", queryString=X1)
    t = now_ms()
    assert outcome(rep.handle_batch([group_event("x1", "CREATED", t=t)])) is Outcome.APPLIED
    src.delete_dynamic_thing_group(thingGroupName="x1")
    src.create_dynamic_thing_group(thingGroupName="x1", queryString=X2)
    assert outcome(rep.handle_batch([group_event("x1", "DELETED", t=t + 1)])) is Outcome.APPLIED
    assert dst.describe_thing_group(thingGroupName="x1")["queryString"] == X2


def test_static_and_dynamic_groups_of_one_name_follow_the_origin(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    dst.create_thing_group(thingGroupName="g")
    dst.add_thing_to_thing_group(thingGroupName="g", thingName="d2")
    src.create_dynamic_thing_group(thingGroupName="g", queryString=X1)
    t = now_ms()
    assert outcome(rep.handle_batch([group_event("g", "CREATED", t=t)])) is Outcome.APPLIED
    assert dst.describe_thing_group(thingGroupName="g")["queryString"] == X1  # AWS cannot convert: remade
    assert sorted(dst.list_things_in_thing_group(thingGroupName="g")["things"]) == ["d0", "d1"]

    src.delete_dynamic_thing_group(thingGroupName="g")
    src.create_thing_group(thingGroupName="g", thingGroupProperties={"thingGroupDescription": "static again"})
    assert outcome(rep.handle_batch([group_event("g", "CREATED", t=t + 1, mapping=None,
                                                 description="static again")])) is Outcome.APPLIED
    got = dst.describe_thing_group(thingGroupName="g")
    assert "queryString" not in got and got["thingGroupProperties"]["thingGroupDescription"] == "static again"


def test_membership_events_of_a_dynamic_group_are_not_applied_and_fail_nothing(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    src.create_dynamic_thing_group(thingGroupName="x1", queryString=X1)
    t = now_ms()
    # before the group is here (the origin says it is dynamic) and after it is
    assert outcome(rep.handle_batch([membership_event("x1", "d0", "ADDED", t=t)])) is Outcome.IGNORED
    rep.handle_batch([group_event("x1", "CREATED", t=t)])
    assert outcome(rep.handle_batch([membership_event("x1", "d2", "ADDED", t=t + 1)])) is Outcome.IGNORED
    assert sorted(dst.list_things_in_thing_group(thingGroupName="x1")["things"]) == ["d0", "d1"]  # the query's
    # a static group's membership still applies
    src.create_thing_group(thingGroupName="static")
    dst.create_thing_group(thingGroupName="static")
    assert outcome(rep.handle_batch([membership_event("static", "d2", "ADDED", t=t + 2)])) is Outcome.APPLIED
    assert dst.list_things_in_thing_group(thingGroupName="static")["things"] == ["d2"]


def test_cloudtrail_calls_carry_a_dynamic_group_and_a_repeat_writes_nothing(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    src.create_dynamic_thing_group(thingGroupName="x1", queryString=X1)
    t = now_ms()
    made = rep.handle_api_event(api_call_event("CreateDynamicThingGroup", SRC,
                                               {"thingGroupName": "x1", "queryString": X1}, t_ms=t))
    assert (made.outcome, made.key) == (Outcome.APPLIED, "api/dynamic_thing_group/x1")
    assert dst.describe_thing_group(thingGroupName="x1")["queryString"] == X1
    src.update_dynamic_thing_group(thingGroupName="x1", queryString=X2, thingGroupProperties={})
    update = api_call_event("UpdateDynamicThingGroup", SRC, {"thingGroupName": "x1", "queryString": X2}, t_ms=t + 1)
    assert rep.handle_api_event(update).outcome is Outcome.APPLIED
    assert dst.describe_thing_group(thingGroupName="x1")["queryString"] == X2
    world["log"].reset()
    assert rep.handle_api_event(update).outcome is Outcome.UNCHANGED  # replayed: re-read, equal, no write
    assert world["log"].writes == 0
    src.delete_dynamic_thing_group(thingGroupName="x1")
    gone = rep.handle_api_event(api_call_event("DeleteDynamicThingGroup", SRC, {"thingGroupName": "x1"}, t_ms=t + 2))
    assert gone.outcome is Outcome.APPLIED
    assert dst.list_thing_groups()["thingGroups"] == []
    # a failed call changes nothing and is not read
    failed = rep.handle_api_event(api_call_event("CreateDynamicThingGroup", SRC, {"thingGroupName": "x9"},
                                                 error="InvalidQueryException"))
    assert failed.outcome is Outcome.IGNORED


def test_a_call_without_the_group_name_is_refused_not_applied(world: dict[str, Any]) -> None:
    letters: list[Any] = []
    rep = world["rep"]
    rep.dead_letter = letters.append
    result = rep.handle_api_event(api_call_event("UpdateDynamicThingGroup", SRC, {"queryString": X1}))
    assert result.outcome is Outcome.REFUSED and "thingGroupName" in result.detail
    assert len(letters) == 1 and world["dst"].list_thing_groups()["thingGroups"] == []
