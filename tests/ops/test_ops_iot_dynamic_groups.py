"""Dynamic thing groups: in the local AWS world (orchestrator/drill/world/iot_groups.py, moto has none) and
carried by `registry sync` as a device-management plane kind (orchestrator/registry/plane.py)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.registry import sync_registry, verify_registry
from tests.ops.conftest import DST, SRC

QUERY = "attributes.model:X1"


def _indexing(iot: Any) -> None:
    iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "REGISTRY"})


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_a_dynamic_group_answers_its_query_and_is_as_strict_as_aws(iot: Any) -> None:
    src = iot(SRC)
    for i, model in enumerate(("X1", "X1", "X2")):
        src.create_thing(thingName=f"d{i}", attributePayload={"attributes": {"model": model}})
    with pytest.raises(ClientError) as exc:  # fleet indexing is off in a new region
        src.create_dynamic_thing_group(thingGroupName="x1", queryString=QUERY)
    assert _code(exc) == "InvalidRequestException"
    _indexing(src)
    made = src.create_dynamic_thing_group(thingGroupName="x1", queryString=QUERY,
                                          thingGroupProperties={"thingGroupDescription": "model X1"})
    assert (made["queryString"], made["indexName"], made["queryVersion"]) == (QUERY, "AWS_Things", "2017-09-30")
    assert sorted(src.list_things_in_thing_group(thingGroupName="x1")["things"]) == ["d0", "d1"]
    src.create_thing(thingName="d3", attributePayload={"attributes": {"model": "X1"}})
    assert "d3" in src.list_things_in_thing_group(thingGroupName="x1")["things"]  # the query, at read time
    described = src.describe_thing_group(thingGroupName="x1")
    assert described["queryString"] == QUERY and described["status"] == "ACTIVE"

    with pytest.raises(ClientError) as exc:
        src.create_dynamic_thing_group(thingGroupName="x1", queryString=QUERY)
    assert _code(exc) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as exc:
        src.create_dynamic_thing_group(thingGroupName="other", queryString=QUERY, indexName="AWS_Groups")
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        src.add_thing_to_thing_group(thingGroupName="x1", thingName="d2")
    assert _code(exc) == "InvalidRequestException"
    with pytest.raises(ClientError) as exc:  # no hierarchy
        src.create_thing_group(thingGroupName="child", parentGroupName="x1")
    assert _code(exc) == "InvalidRequestException"
    with pytest.raises(ClientError) as exc:
        src.update_dynamic_thing_group(thingGroupName="x1", queryString="attributes.model:X2", expectedVersion=9,
                                       thingGroupProperties={})
    assert _code(exc) == "VersionConflictException"
    assert src.update_dynamic_thing_group(thingGroupName="x1", queryString="attributes.model:X2",
                                          expectedVersion=1, thingGroupProperties={})["version"] == 2
    assert src.list_things_in_thing_group(thingGroupName="x1")["things"] == ["d2"]
    src.delete_dynamic_thing_group(thingGroupName="x1")
    assert src.list_thing_groups()["thingGroups"] == []


def test_sync_carries_dynamic_groups_and_verify_compares_them(ctx: Any, iot: Any) -> None:
    src, dst = iot(SRC), iot(DST)
    _indexing(src)
    for i, model in enumerate(("X1", "X2")):
        src.create_thing(thingName=f"d{i}", attributePayload={"attributes": {"model": model}})
    src.create_dynamic_thing_group(thingGroupName="x1", queryString=QUERY,
                                   thingGroupProperties={"thingGroupDescription": "model X1"})
    src.create_thing_group(thingGroupName="static")

    report = sync_registry(ctx, SRC, DST, rate=10_000, shadows=False)
    assert report.ok, report.errors
    assert report.counts["dynamic_thing_group"] == {"create": 1}
    got = dst.describe_thing_group(thingGroupName="x1")
    assert got["queryString"] == QUERY and got["thingGroupProperties"]["thingGroupDescription"] == "model X1"
    assert dst.list_things_in_thing_group(thingGroupName="x1")["things"] == ["d0"]  # the synced things answer
    assert "queryString" not in dst.describe_thing_group(thingGroupName="static")  # static stays static
    assert verify_registry(ctx, SRC, DST, shadows=False).equal

    src.update_dynamic_thing_group(thingGroupName="x1", queryString="attributes.model:X2", thingGroupProperties={})
    changed = verify_registry(ctx, SRC, DST, shadows=False)
    assert not changed.equal and changed.kind("dynamic_thing_group").differ == 1
    again = sync_registry(ctx, SRC, DST, rate=10_000, shadows=False)
    assert again.ok and again.counts["dynamic_thing_group"] == {"update": 1}
    assert dst.list_things_in_thing_group(thingGroupName="x1")["things"] == ["d1"]
