"""Dynamic thing groups in continuous replication (the replication function, `replicate.Replicator`).

What AWS emits for a dynamic group (sources in docs/registry.md, "Dynamic thing groups"):

- registry events: creating, updating or deleting a thing group publishes
  `$aws/events/thingGroup/<name>/created|updated|deleted` (THING_GROUP_EVENT, "Registry events",
  AWS IoT developer guide). The payload has the group's name, version, description, attributes and
  parent, and `dynamicGroupMappingId` (null for a static group); it never has the query
  (`queryString`, `indexName`, `queryVersion`). So the event only *names* the group;
- CloudTrail: CreateDynamicThingGroup, UpdateDynamicThingGroup and DeleteDynamicThingGroup are
  management write events (`events.API_CALLS`), which reach the function as "AWS API Call via
  CloudTrail" through EventBridge, as certificate and policy calls do.

Either way the group is read in its origin (DescribeThingGroup) and the function's region is made
equal to it with the plane's own operations (`plane.plan_plane` / `plane.apply_op`:
Create/Update/DeleteDynamicThingGroup), then read back: `carry` says changed only when what it
wrote reads back equal, and raises `NotEqual` otherwise. A group is deleted here only when its
origin answers that it does not exist (never on a failed read). A dynamic group needs fleet
indexing ("Dynamic thing groups require fleet indexing enabled"): when thing indexing is OFF here,
the origin's indexing configuration is written first, as `registry sync` does.

Membership of a dynamic group is its query's answer in each region: things are never added to or
removed from one by hand (AWS refuses it), so membership events naming one are not applied
(`is_dynamic`). The developer guide does not say whether AWS publishes membership events for
dynamic groups; if it does, they are ignored here.

Imports only the standard library and the plane module (it runs in the replication function).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.registry.plane import (
    PlaneAction,
    PlaneKind,
    PlaneOp,
    PlaneSnapshot,
    apply_op,
    dynamic_group_description,
    indexing_description,
    plan_plane,
)
from orchestrator.registry.policydoc import RegionRewrite
from orchestrator.registry.snapshot import missing

_KINDS = (PlaneKind.INDEXING.value, PlaneKind.DYNAMIC_GROUP.value)


class NotEqual(Exception):
    """What was written does not read back equal to the origin's group."""


def describe(caller: Any, name: str) -> dict[str, Any] | None:
    """DescribeThingGroup, or None when the group does not exist (any other failure raises)."""
    try:
        return dict(caller.call("describe_thing_group", thingGroupName=name))
    except Exception as exc:
        if missing(exc):
            return None
        raise


def is_dynamic(group: Mapping[str, Any] | None) -> bool:
    return bool(group and group.get("queryString"))


def _indexing_off(caller: Any) -> dict[str, Any] | None:
    """This region's indexing configuration when thing indexing is OFF (None when it is on)."""
    idx = indexing_description(caller.call("get_indexing_configuration"))
    return idx if idx["thingIndexingConfiguration"].get("thingIndexingMode", "OFF") == "OFF" else None


def _plan(name: str, src_region: str, dst_region: str, theirs: Mapping[str, Any], ours: Mapping[str, Any] | None,
          mode: RegionRewrite, indexing: tuple[Mapping[str, Any], Mapping[str, Any]] | None) -> list[PlaneOp]:
    """The plane's operations for this one group (and the indexing configuration, when given as
    (the origin's, ours))."""
    src_items: dict[str, dict[str, Any]] = {PlaneKind.DYNAMIC_GROUP.value: {name: dict(theirs)}}
    dst_items: dict[str, dict[str, Any]] = {PlaneKind.DYNAMIC_GROUP.value: {name: dict(ours)} if ours else {}}
    if indexing is not None:
        src_items[PlaneKind.INDEXING.value] = {"default": dict(indexing[0])}
        dst_items[PlaneKind.INDEXING.value] = {"default": dict(indexing[1])}
    ops = plan_plane(PlaneSnapshot(src_region, src_items), PlaneSnapshot(dst_region, dst_items), mode=mode)
    return [op for op in ops if op.kind in _KINDS and (indexing is not None or op.kind != PlaneKind.INDEXING.value)]


def carry(src: Any, dst: Any, name: str, *, src_region: str, dst_region: str,
          mode: RegionRewrite = RegionRewrite.DESTINATION) -> bool | None:
    """Make `dst`'s group `name` what `src` has, where one of them is dynamic.

    True: something was written (and reads back equal); False: nothing to do; None: the group is
    dynamic neither in the origin nor here (the static group path applies). A dynamic group
    here whose origin now has a static group of that name is deleted first, then None (the static
    path makes the static one); a static group here whose origin's group is dynamic is deleted and
    the dynamic one made (AWS cannot convert one kind into the other)."""
    theirs, ours = describe(src, name), describe(dst, name)
    if not is_dynamic(theirs):
        if is_dynamic(ours):
            apply_op(dst, PlaneOp(PlaneKind.DYNAMIC_GROUP.value, PlaneAction.DELETE, name))
            if describe(dst, name) is not None:
                raise NotEqual(f"dynamic thing group {name} is still in {dst_region} after its delete")
            return True if theirs is None else None
        return None
    assert theirs is not None
    changed = False
    if ours is not None and not is_dynamic(ours):  # the origin's is dynamic now: the static one goes
        dst.call("delete_thing_group", thingGroupName=name)
        ours, changed = None, True
    want = dynamic_group_description(theirs)
    have = dynamic_group_description(ours) if ours is not None else None
    off = _indexing_off(dst) if have is None else None
    indexing = (indexing_description(src.call("get_indexing_configuration")), off) if off is not None else None
    ops = _plan(name, src_region, dst_region, want, have, mode, indexing)
    for op in ops:
        apply_op(dst, op)
    if not ops:
        return changed
    after = describe(dst, name)
    left = _plan(name, src_region, dst_region, want,
                 dynamic_group_description(after) if after is not None and is_dynamic(after) else None, mode, None)
    if left:
        raise NotEqual(f"dynamic thing group {name} does not read back equal in {dst_region}: "
                       f"{', '.join(op.describe() for op in left)}")
    return True
