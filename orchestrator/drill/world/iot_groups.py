"""Dynamic thing groups in the local AWS world: moto 5.2.5 has none (no Create/Update/
DeleteDynamicThingGroup, and DescribeThingGroup never says `queryString`).

Loaded by `orchestrator.drill.world.iot_plane.install` (so by `procs.STRICT_MOTO`), never by the
orchestrator itself. A dynamic group is one of moto's thing groups with a query kept beside it, so
ListThingGroups, DescribeThingGroup and DeleteThingGroup see it. The rules (AWS IoT API reference,
CreateDynamicThingGroup / UpdateDynamicThingGroup; developer guide, "Dynamic thing groups"; sources
in docs/field-notes-iot-jobs.md):

- names 1-128 of [a-zA-Z0-9:_-] (InvalidRequestException); an existing name is
  ResourceAlreadyExistsException; `queryString` is required (at least 1 character);
  `indexName` is AWS_Things ("Currently one index is supported"), anything else
  ResourceNotFoundException; `queryVersion` is 2017-09-30 ("Currently one query version is
  supported"), anything else InvalidRequestException;
- "Dynamic thing groups require fleet indexing enabled": with thing indexing OFF in the region the
  create is InvalidRequestException (the error code is this world's assumption);
- "Dynamic thing groups can't be part of a hierarchy": no parent, and no static group can name one
  as its parent (InvalidRequestException); things are never added by hand (AddThingToThingGroup
  is InvalidRequestException);
- membership is the query's answer at read time (moto's basic query matcher: `thingName:…`,
  `attributes.<name>:…`, wildcards), for ListThingsInThingGroup and for a job that targets the group;
- UpdateDynamicThingGroup changes the query and the description, honours `expectedVersion`
  (VersionConflictException) and increments the version.
"""

from __future__ import annotations

import re
from typing import Any, cast

_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
INDEX = "AWS_Things"
QUERY_VERSION = "2017-09-30"


def _err(code: str, status: int, message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    exc = JsonRESTError(code, message)
    exc.code = status
    return exc


def _query(group: Any) -> str | None:
    return getattr(group, "_orchestrate_query", None)


def install() -> None:
    """Add the dynamic-group calls to moto's IoT responses (idempotent)."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.iot.models import IoTBackend
    from moto.iot.responses import IoTResponse

    if getattr(IoTResponse, "_orchestrate_dynamic_groups", False):
        return
    original_list = IoTBackend.list_things_in_thing_group
    original_add = IoTBackend.add_thing_to_thing_group
    original_describe = IoTResponse.describe_thing_group
    original_create = IoTResponse.create_thing_group

    def list_things_in_thing_group(self: Any, thing_group_name: str) -> Any:
        group = self.describe_thing_group(thing_group_name)
        query = _query(group)
        if query is None:
            return original_list(self, thing_group_name)
        return [t for t in self.things.values() if t.matches(query)]

    def add_thing_to_thing_group(self: Any, thing_group_name: Any, thing_group_arn: Any, thing_name: Any,
                                 thing_arn: Any) -> Any:
        groups = [g for g in self.thing_groups.values()
                  if g.thing_group_name == thing_group_name or g.arn == thing_group_arn]
        if groups and _query(groups[0]) is not None:
            raise _err("InvalidRequestException", 400,
                       f"{groups[0].thing_group_name} is a dynamic thing group: its query decides its things")
        return original_add(self, thing_group_name, thing_group_arn, thing_name, thing_arn)

    def describe_thing_group(self: Any) -> Any:
        result = original_describe(self)
        body: dict[str, Any] = dict(cast(dict, result.result))
        group = self.iot_backend.describe_thing_group(body["thingGroupName"])
        if _query(group) is not None:
            body.update(queryString=_query(group), indexName=INDEX, queryVersion=QUERY_VERSION, status="ACTIVE")
        return ActionResult(body)

    def create_thing_group(self: Any) -> Any:
        parent = self._get_param("parentGroupName")
        if parent:
            found = [g for g in self.iot_backend.thing_groups.values() if g.thing_group_name == parent]
            if found and _query(found[0]) is not None:
                raise _err("InvalidRequestException", 400,
                           f"{parent} is a dynamic thing group: dynamic groups can't be part of a hierarchy")
        return original_create(self)

    def _checked(self: Any, name: str, query: Any, index: Any, version: Any) -> None:
        if index not in (None, INDEX):
            raise _err("ResourceNotFoundException", 404, f"index {index} not found (only {INDEX})")
        if version not in (None, QUERY_VERSION):
            raise _err("InvalidRequestException", 400, f"queryVersion {version}: only {QUERY_VERSION}")
        if query is not None and not str(query).strip():
            raise _err("InvalidRequestException", 400, "queryString must not be empty")

    def create_dynamic_thing_group(self: Any) -> Any:
        from moto.iot.exceptions import ResourceAlreadyExistsException

        name = self._get_param("thingGroupName") or ""
        if not _NAME.match(name):
            raise _err("InvalidRequestException", 400, f"thingGroupName {name!r} must match [a-zA-Z0-9:_-]{{1,128}}")
        backend = self.iot_backend
        for g in backend.thing_groups.values():
            if g.thing_group_name == name:
                raise ResourceAlreadyExistsException(f"Thing group {name} already exists", g.thing_group_id, g.arn)
        query = self._get_param("queryString")
        if query is None:
            raise _err("InvalidRequestException", 400, "queryString is required")
        _checked(self, name, query, self._get_param("indexName"), self._get_param("queryVersion"))
        mode = (backend.get_indexing_configuration().get("thingIndexingConfiguration") or {}).get(
            "thingIndexingMode", "OFF")
        if mode == "OFF":
            raise _err("InvalidRequestException", 400,
                       "dynamic thing groups need fleet indexing: thing indexing is OFF in this region")
        group_name, group_arn, group_id = backend.create_thing_group(
            name, None, self._get_param("thingGroupProperties") or {})
        group = backend.describe_thing_group(name)
        group._orchestrate_query = str(query)
        return ActionResult({"thingGroupName": group_name, "thingGroupArn": group_arn, "thingGroupId": group_id,
                             "indexName": INDEX, "queryString": str(query), "queryVersion": QUERY_VERSION})

    def _dynamic(self: Any) -> Any:
        name = self._get_param("thingGroupName")
        group = self.iot_backend.describe_thing_group(name)
        if _query(group) is None:
            raise _err("InvalidRequestException", 400, f"{name} is a static thing group")
        return group

    def update_dynamic_thing_group(self: Any) -> Any:
        group = _dynamic(self)
        expected = self._get_param("expectedVersion")
        if expected is not None and int(expected) != group.version:
            raise _err("VersionConflictException", 409,
                       f"expectedVersion {expected} does not match the group's version {group.version}")
        query = self._get_param("queryString")
        _checked(self, group.thing_group_name, query, self._get_param("indexName"), self._get_param("queryVersion"))
        if query is not None:
            group._orchestrate_query = str(query)
        props = self._get_param("thingGroupProperties") or {}
        if "thingGroupDescription" in props:
            group.thing_group_properties["thingGroupDescription"] = props["thingGroupDescription"]
        payload = props.get("attributePayload")
        if payload is not None:
            attrs = dict(group.thing_group_properties.get("attributePayload", {}).get("attributes", {})) \
                if payload.get("merge") else {}
            attrs.update(payload.get("attributes") or {})
            group.thing_group_properties["attributePayload"] = {"attributes": attrs}
        group.version += 1
        return ActionResult({"version": group.version})

    def delete_dynamic_thing_group(self: Any) -> Any:
        group = _dynamic(self)
        self.iot_backend.delete_thing_group(group.thing_group_name)
        return EmptyResult()

    IoTBackend.list_things_in_thing_group = list_things_in_thing_group  # type: ignore[method-assign]
    IoTBackend.add_thing_to_thing_group = add_thing_to_thing_group  # type: ignore[method-assign]
    for fn in (describe_thing_group, create_thing_group, create_dynamic_thing_group, update_dynamic_thing_group,
               delete_dynamic_thing_group):
        setattr(IoTResponse, fn.__name__, fn)
    setattr(IoTResponse, "_orchestrate_dynamic_groups", True)  # noqa: B010 - a flag on a foreign class
