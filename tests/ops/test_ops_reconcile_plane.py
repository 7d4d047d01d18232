"""The daily reconciliation catches the device-management plane up (issue 26): role aliases and
provisioning templates emit no registry event, and a dynamic group's event can be lost, so an object
created in the primary whose event never reached the function is carried by `reconcile`, never
pruning what only the function's region has. Against a real moto server with the local world."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry.replicate import reconcile, reconcile_plane
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import CallLog
from tests.ops.replication_world import replicator

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "credentials.iot.amazonaws.com"}}]}
BODY = {"Parameters": {"SerialNumber": {"Type": "String"}},
        "Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "SerialNumber"}}}}}
QUERY = "attributes.site:dub"


@pytest.fixture
def world(ctx: AwsContext) -> dict[str, Any]:
    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    role = client(ctx, "iam", SRC).create_role(RoleName="iot-uploads",
                                               AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    return {"rep": replicator(ctx, DST), "src": src, "dst": dst, "role": role}


def test_reconcile_carries_plane_objects_whose_events_were_lost(world: dict[str, Any]) -> None:
    src, dst, rep, role = world["src"], world["dst"], world["rep"], world["role"]
    # made in the primary; no event reaches the function (none exists for these, or it was lost)
    src.create_role_alias(roleAlias="uploads", roleArn=role, credentialDurationSeconds=900)
    src.create_provisioning_template(templateName="fleet", templateBody=json.dumps(BODY), enabled=True,
                                     provisioningRoleArn=role)
    src.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "REGISTRY"})
    src.create_dynamic_thing_group(thingGroupName="dublin", queryString=QUERY)
    # the function's region has an alias the primary does not: reconciliation never prunes
    dst.create_role_alias(roleAlias="local-only", roleArn=role)

    result = reconcile(rep, SRC)

    assert result["ok"] is True, result
    plane = result["plane"]
    assert plane["ok"] is True and plane["errors"] == 0
    assert plane["counts"]["role_alias"] == {"create": 1}
    assert plane["counts"]["provisioning_template"] == {"create": 1}
    assert plane["counts"]["dynamic_thing_group"] == {"create": 1}
    assert plane["applied"] >= 4  # and the indexing / event configurations the group and replication need
    assert dst.describe_role_alias(roleAlias="uploads")["roleAliasDescription"]["roleArn"] == role
    template = dst.describe_provisioning_template(templateName="fleet")
    assert template["enabled"] is True and json.loads(template["templateBody"]) == BODY
    assert dst.describe_thing_group(thingGroupName="dublin")["queryString"] == QUERY
    assert "local-only" in dst.list_role_aliases()["roleAliases"]
    # kept for `orchestrate status` with the plane's counts
    assert rep.store.reconciliation() == result

    # a second pass finds nothing to do: reads only, one listing per kind and one describe per
    # object in each region (ListThingGroups cannot tell dynamic groups apart: each group is described)
    here, there = CallLog(rep.region.iot.client), CallLog(rep._source(SRC).iot.client)
    again = reconcile_plane(rep, SRC)
    assert again == {"ok": True, "applied": 0, "errors": 0, "counts": {}}
    assert here.writes == 0 and there.writes == 0
    assert there.calls["ListRoleAliases"] == 1 and there.calls["DescribeRoleAlias"] == 1
    assert here.calls["DescribeRoleAlias"] == 2  # uploads and local-only
    assert sum(there.calls.values()) == 8 + 3, there.calls  # 8 listings and singletons, 3 objects
    assert sum(here.calls.values()) == 8 + 4, here.calls


def test_a_plane_object_the_destination_refuses_fails_the_reconciliation(ctx: AwsContext,
                                                                       world: dict[str, Any]) -> None:
    from tests.ops.test_ops_registry_plane import _function

    src, dst, rep, role = world["src"], world["dst"], world["rep"], world["role"]
    # the template's pre-provisioning hook exists in the primary only: AWS refuses a template whose
    # hook is not a function of its own region, so the destination cannot have it yet
    hook = _function(ctx, SRC, "provision-hook")
    src.create_provisioning_template(templateName="fleet", templateBody=json.dumps(BODY), enabled=True,
                                     provisioningRoleArn=role,
                                     preProvisioningHook={"targetArn": hook, "payloadVersion": "2020-04-01"})
    src.create_role_alias(roleAlias="uploads", roleArn=role)

    result = reconcile(rep, SRC)

    assert result["ok"] is False and result["errors"] >= 1 and result["plane"]["ok"] is False
    assert result["plane"]["errors"] == 1
    assert dst.describe_role_alias(roleAlias="uploads")  # the rest of the plane is still carried
    assert rep.store.reconciliation() == result
