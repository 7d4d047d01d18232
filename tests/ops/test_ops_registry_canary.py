"""Registry sync, verify and backup against moto leave each region's MQTT canary alone: its thing,
policy and certificate are the region stack's (programs/canary.py), not fleet."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from orchestrator.registry import SyncOptions, read_snapshot, sync_clients
from orchestrator.registry.calls import Caller
from orchestrator.registry.verify import verify_clients
from programs.contract import CanaryNames
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import listing, make_pem, seed

IotFactory = Callable[[str], Any]
FAST = {"rate": 10_000.0}


def canary(iot: Any, env: str, region: str, serial: int) -> str:
    """What the region stack creates: the canary thing, its policy (same name), a certificate on both."""
    names = CanaryNames.of(env, region)
    iot.create_thing(thingName=names.thing)
    iot.create_policy(policyName=names.thing, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect",
         "Resource": f"arn:aws:iot:{region}:123456789012:client/{names.thing}"}]}))
    cert = iot.register_certificate_without_ca(certificatePem=make_pem(names.thing, serial), status="ACTIVE")
    iot.attach_policy(policyName=names.thing, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=names.thing, principal=cert["certificateArn"])
    return str(cert["certificateId"])


def raw_things(iot: Any) -> set[str]:
    return {t["thingName"] for t in iot.list_things()["things"]}


def test_sync_with_prune_neither_copies_nor_deletes_either_regions_canary(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 6)
    src_cert = canary(src, "dev", SRC, 7001)
    dst_cert = canary(dst, "dev", DST, 7002)
    staging = canary(dst, "staging", DST, 7003)  # another env sharing the account: its canary is regional too

    report = sync_clients(src, dst, SyncOptions(prune=True, **FAST))

    assert report.ok, report.errors
    things = raw_things(dst)
    assert CanaryNames.of("dev", SRC).thing not in things  # not copied
    assert {CanaryNames.of("dev", DST).thing, CanaryNames.of("staging", DST).thing} <= things  # not pruned
    certs = {c["certificateId"]: c["status"] for c in dst.list_certificates()["certificates"]}
    assert src_cert not in certs and certs[dst_cert] == "ACTIVE" and certs[staging] == "ACTIVE"
    policies = {p["policyName"] for p in dst.list_policies()["policies"]}
    assert CanaryNames.of("dev", DST).thing in policies and CanaryNames.of("dev", SRC).thing not in policies
    # still attached: nothing tightened on the destination's canary
    assert dst.list_thing_principals(thingName=CanaryNames.of("dev", DST).thing)["principals"]
    assert dst.list_targets_for_policy(policyName=CanaryNames.of("dev", DST).thing)["targets"]
    # the fleet did move, and reads back equal (canaries are in neither listing)
    assert listing(dst) == listing(src)
    assert "per-region infrastructure left alone" in " ".join(read_snapshot(src, pems=False).notes)


def test_verify_counts_no_difference_for_the_regions_own_canaries(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 4)
    assert sync_clients(src, dst, SyncOptions(**FAST)).ok
    canary(src, "dev", SRC, 7101)
    canary(dst, "dev", DST, 7102)

    report = verify_clients(Caller(src), Caller(dst))

    assert report.equal, report.lines()
    # a fleet difference is still one
    dst.create_thing(thingName="stray-device")
    assert verify_clients(Caller(src), Caller(dst)).differences == 1


def test_a_certificate_carrying_a_fleet_policy_beside_the_canary_policy_stays_fleet(iot: IotFactory) -> None:
    src = iot(SRC)
    seed(src, 2)
    canary(src, "dev", SRC, 7201)
    shared = src.register_certificate_without_ca(certificatePem=make_pem("shared", 7202), status="ACTIVE")
    src.attach_policy(policyName=CanaryNames.of("dev", SRC).thing, target=shared["certificateArn"])
    src.attach_policy(policyName="device", target=shared["certificateArn"])

    snap = read_snapshot(src, pems=False)

    assert shared["certificateId"] in snap.certificates_by_id
    assert not any(t.policy.startswith("iot-dev-canary-") for t in snap.policy_targets)
    assert not any(t.name.startswith("iot-dev-canary-") for t in snap.things)
