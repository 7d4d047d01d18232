"""moto answers ListTargetsForPolicy, ListThingsInThingGroup, ListThingGroupsForThing, ListThingGroups
and ListCertificates unpaged;
the strict gate pages them as AWS does (tests/iot_strict.py, `page`), and the product follows
every page (issue 21, issue 19's note)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.registry.calls import Caller
from orchestrator.registry.snapshot import TargetKind, read_listing
from tests.aws_gate import Gate
from tests.ops.conftest import SRC

IotFactory = Callable[[str], Any]
N = 5


def world(iot: Any) -> list[str]:
    """A policy attached to N certificates, a group of N things, a thing in N groups."""
    iot.create_policy(policyName="p", policyDocument='{"Version":"2012-10-17","Statement":'
                      '[{"Effect":"Deny","Action":"iot:*","Resource":"*"}]}')
    certs = []
    for _ in range(N):
        cert = iot.create_keys_and_certificate(setAsActive=True)
        iot.attach_policy(policyName="p", target=cert["certificateArn"])
        certs.append(cert["certificateId"])
    iot.create_thing_group(thingGroupName="g")
    iot.create_thing(thingName="t0")
    for i in range(N):
        iot.create_thing(thingName=f"m{i}")
        iot.add_thing_to_thing_group(thingGroupName="g", thingName=f"m{i}")
        iot.create_thing_group(thingGroupName=f"h{i}")
        iot.add_thing_to_thing_group(thingGroupName=f"h{i}", thingName="t0")
    return certs


def test_the_three_listings_come_in_pages_with_tokens(iot: IotFactory) -> None:
    client = iot(SRC)
    world(client)
    first = client.list_targets_for_policy(policyName="p", pageSize=2)
    assert len(first["targets"]) == 2 and first["nextMarker"]
    rest = client.list_targets_for_policy(policyName="p", pageSize=2, marker=first["nextMarker"])
    last = client.list_targets_for_policy(policyName="p", pageSize=2, marker=rest["nextMarker"])
    assert len(last["targets"]) == 1 and "nextMarker" not in last
    assert len(set(first["targets"] + rest["targets"] + last["targets"])) == N

    members = client.list_things_in_thing_group(thingGroupName="g", maxResults=3)
    assert len(members["things"]) == 3 and members["nextToken"]
    more = client.list_things_in_thing_group(thingGroupName="g", maxResults=3, nextToken=members["nextToken"])
    assert sorted(members["things"] + more["things"]) == [f"m{i}" for i in range(N)] and not more.get("nextToken")

    groups = client.list_thing_groups_for_thing(thingName="t0", maxResults=4)
    assert len(groups["thingGroups"]) == 4 and groups["nextToken"]
    assert len(client.list_thing_groups(maxResults=2)["thingGroups"]) == 2
    certificates = client.list_certificates(pageSize=3)
    assert len(certificates["certificates"]) == 3 and certificates["nextMarker"]


def test_bad_page_sizes_and_tokens_are_refused(iot: IotFactory) -> None:
    client = iot(SRC)
    world(client)
    with pytest.raises(ClientError, match="InvalidRequest"):
        client.list_targets_for_policy(policyName="p", pageSize=251)
    with pytest.raises(ClientError, match="InvalidRequest"):
        client.list_things_in_thing_group(thingGroupName="g", nextToken="not-a-token")
    token = client.list_things_in_thing_group(thingGroupName="g", maxResults=1)["nextToken"]
    with pytest.raises(ClientError, match="InvalidRequest"):  # a token is for its own listing only
        client.list_thing_groups_for_thing(thingName="t0", nextToken=token)


def test_the_registry_read_follows_every_page(iot: IotFactory, gate: Gate) -> None:
    """With four items a page, the snapshot still holds every target and member, and calls it a
    complete listing (on moto's unpaged answer it saw a full page without a token: a gap)."""
    certs = world(iot(SRC))
    gate.reset_counts()
    snapshot = read_listing(Caller(iot(SRC), page_size=4))
    assert snapshot.gaps == (), snapshot.gaps
    targets = {t.target for t in snapshot.policy_targets if t.policy == "p" and t.kind is TargetKind.CERTIFICATE}
    assert targets == set(certs)
    members = sorted(t.name for t in snapshot.things if "g" in t.groups)
    assert members == [f"m{i}" for i in range(N)]
    calls = [c.operation for c in gate.calls]
    assert sum(1 for op in calls if op.startswith("POST /policy-targets/p")) == 2  # 4 + 1
    assert sum(1 for op in calls if op.startswith("GET /thing-groups/g/things")) == 2
    assert sum(1 for op in calls if op == "GET /certificates") == 2
    assert len(snapshot.thing_groups) == N + 1 and len(snapshot.certificates) == N
    groups = sorted(g["groupName"] for g in Caller(iot(SRC), page_size=2).pages(
        "list_thing_groups_for_thing", thingName="t0"))
    assert groups == sorted(f"h{i}" for i in range(N))
