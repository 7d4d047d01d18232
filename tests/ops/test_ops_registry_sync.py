"""Registry sync between two regions of a real moto server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.aws import AwsContext
from orchestrator.errors import InputRejected
from orchestrator.registry import (
    RegistrySnapshot,
    SyncOptions,
    SyncPlanSummary,
    SyncReport,
    plan_clients_sync,
    plan_registry_sync,
    read_snapshot,
    sync_clients,
    sync_registry,
)
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import CallLog, listing, seed, thing_name

FAST = {"rate": 10_000.0}

IotFactory = Callable[[str], Any]


def run(src: Any, dst: Any, **options: Any) -> SyncReport:
    return sync_clients(src, dst, SyncOptions(**{**FAST, **options}))


def plan(src: Any, dst: Any, **options: Any) -> SyncPlanSummary:
    return plan_clients_sync(src, dst, SyncOptions(**{**FAST, **options}))


def test_sync_copies_the_whole_registry_and_keeps_certificate_ids(ctx: AwsContext, iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    world = seed(src, 12)

    report = sync_registry(ctx, SRC, DST, rate=10_000)

    assert isinstance(report, SyncReport)
    assert report.ok, report.errors
    assert listing(dst) == listing(src)
    after = read_snapshot(dst)
    # same PEM -> same certificate id, same status, in both regions
    src_snap = read_snapshot(src)
    assert {c.id: c.status for c in after.certificates} == {c.id: c.status for c in src_snap.certificates}
    assert {c.id: c.pem for c in after.certificates} == {c.id: c.pem for c in src_snap.certificates}
    assert after.certificates_by_id[world.cert_ids[thing_name(1)]].status == "INACTIVE"
    assert after.certificates_by_id[world.cert_ids[thing_name(2)]].status == "REVOKED"
    # hierarchy, parents preserved
    groups = after.groups_by_name
    assert groups["fleet-eu-west"].parent == "fleet-eu" and groups["fleet-eu"].parent == "fleet"
    assert groups["fleet"].attributes == {"tier": "all"}
    # the deprecated type is deprecated in the destination too, and still has its thing
    assert after.types_by_name["legacy"].deprecated
    assert after.things_by_name["old-0001"].thing_type == "legacy"
    assert after.types_by_name["sensor"].searchable_attributes == ("model",)


def test_policy_with_a_literal_region_is_rewritten_and_reported(ctx: AwsContext, iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 4)

    report = sync_registry(ctx, SRC, DST, rate=10_000)

    assert isinstance(report, SyncReport)
    assert report.rewritten_policies == ("telemetry-pinned",)
    assert any("telemetry-pinned" in w and DST in w for w in report.warnings)
    pinned = json.loads(dst.get_policy(policyName="telemetry-pinned")["policyDocument"])
    resource = pinned["Statement"][0]["Resource"][0]
    assert resource == f"arn:aws:iot:{DST}:123456789012:topic/telemetry/*"
    # a region in a condition value is data, not an address: left alone
    assert pinned["Statement"][0]["Condition"]["StringEquals"]["aws:RequestedRegion"] == SRC
    # region-neutral documents are copied unchanged
    assert json.loads(dst.get_policy(policyName="device")["policyDocument"]) == \
        json.loads(src.get_policy(policyName="device")["policyDocument"])


def test_policy_region_can_be_rewritten_to_a_wildcard(iot: IotFactory) -> None:
    from orchestrator.registry import RegionRewrite

    src, dst = iot(SRC), iot(DST)
    seed(src, 4)
    run(src, dst, region_rewrite=RegionRewrite.WILDCARD)
    pinned = json.loads(dst.get_policy(policyName="telemetry-pinned")["policyDocument"])
    assert pinned["Statement"][0]["Resource"][0] == "arn:aws:iot:*:123456789012:topic/telemetry/*"
    again = run(src, dst, region_rewrite=RegionRewrite.WILDCARD)
    assert isinstance(again, SyncReport) and again.write_calls == 0


def test_second_run_with_nothing_changed_makes_zero_write_calls(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 12)
    first = run(src, dst)
    assert isinstance(first, SyncReport) and first.applied > 0

    log = CallLog(dst)
    second = run(src, dst)

    assert isinstance(second, SyncReport)
    assert second.planned == 0 and second.applied == 0
    assert second.write_calls == 0
    assert log.writes == 0, log.write_ops()


def test_changing_5_of_n_things_writes_only_those_5(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    world = seed(src, 40)
    run(src, dst)
    changed = world.things[3:8]
    for name in changed:
        src.update_thing(thingName=name, attributePayload={"attributes": {"serial": "x", "model": "m2"},
                                                           "merge": False})
    log = CallLog(dst)

    report = run(src, dst)

    assert isinstance(report, SyncReport)
    assert report.counts["thing"] == {"create": 0, "update": 5, "delete": 0}
    assert report.write_calls == 5
    assert log.write_ops() == {"UpdateThing": 5}
    snap = read_snapshot(dst, pems=False)
    assert all(snap.things_by_name[n].attributes == {"serial": "x", "model": "m2"} for n in changed)


def test_changed_policy_and_certificate_status_are_updated_in_place(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    world = seed(src, 6)
    run(src, dst)
    new_doc = json.dumps({"Version": "2012-10-17",
                          "Statement": [{"Effect": "Deny", "Action": "iot:*", "Resource": "*"}]})
    src.create_policy_version(policyName="device", policyDocument=new_doc, setAsDefault=True)
    src.update_certificate(certificateId=world.cert_ids[thing_name(3)], newStatus="INACTIVE")

    report = run(src, dst)

    assert isinstance(report, SyncReport)
    assert report.counts["policy"]["update"] == 1
    assert report.counts["certificate"]["update"] == 1
    assert json.loads(dst.get_policy(policyName="device")["policyDocument"]) == json.loads(new_doc)
    described = dst.describe_certificate(certificateId=world.cert_ids[thing_name(3)])
    assert described["certificateDescription"]["status"] == "INACTIVE"
    assert listing(dst) == listing(src)


def test_a_certificate_revoked_in_the_destination_is_not_reactivated(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    world = seed(src, 4)
    run(src, dst)
    cert_id = world.cert_ids[thing_name(0)]
    dst.update_certificate(certificateId=cert_id, newStatus="REVOKED")

    report = run(src, dst)

    assert isinstance(report, SyncReport)
    assert report.write_calls == 0
    assert any("REVOKED" in w and cert_id[:12] in w for w in report.warnings)
    assert dst.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "REVOKED"


def test_dry_run_reports_the_plan_and_changes_nothing(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 12)
    before = listing(dst)
    log = CallLog(dst)

    summary = plan(src, dst)

    assert isinstance(summary, SyncPlanSummary)
    assert log.writes == 0
    assert listing(dst) == before
    assert summary.counts["thing"]["create"] == 13
    assert summary.counts["certificate"]["create"] == 13
    assert summary.counts["thing_group"]["create"] == 4
    assert summary.counts["policy_attachment"]["create"] == 12 + 3 + 1
    assert summary.first["thing"][0] == "create thing dev-0000"
    assert len(summary.first["thing"]) == 5
    assert summary.total == sum(n for kind in summary.counts.values() for n in kind.values())
    payload = summary.to_json()
    assert payload["dry_run"] is True and json.dumps(payload)


def _add_destination_extras(dst: Any) -> None:
    """Things only the destination has (devices registered there directly, a stale group ...)."""
    from tests.ops.registry_world import make_pem

    dst.create_thing_type(thingTypeName="rogue-type")
    dst.create_thing_group(thingGroupName="rogue-group")
    dst.create_thing_group(thingGroupName="rogue-child", parentGroupName="rogue-group")
    dst.create_thing(thingName="rogue-1", thingTypeName="rogue-type")
    dst.add_thing_to_thing_group(thingGroupName="rogue-child", thingName="rogue-1")
    cert = dst.register_certificate_without_ca(certificatePem=make_pem("rogue", 777), status="ACTIVE")
    dst.attach_thing_principal(thingName="rogue-1", principal=cert["certificateArn"])
    dst.create_policy(policyName="rogue-policy", policyDocument='{"Version":"2012-10-17","Statement":'
                      '[{"Effect":"Deny","Action":"iot:*","Resource":"*"}]}')
    dst.attach_policy(policyName="rogue-policy", target=cert["certificateArn"])
    dst.add_thing_to_thing_group(thingGroupName="ops", thingName=thing_name(1))  # extra membership


def test_prune_deletes_destination_extras_only_when_asked(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 6, group_policy=False)  # moto cannot delete certificates next to group policies
    run(src, dst)
    _add_destination_extras(dst)

    kept = run(src, dst)
    assert isinstance(kept, SyncReport)
    # only tightening without --prune: the extra membership of a thing the source has, in a group
    # the source has, is removed (docs/registry.md); nothing the source lacks is deleted
    assert kept.write_calls == 1 and kept.calls_by_api == {**kept.calls_by_api, "remove_thing_from_thing_group": 1}
    assert {k: v["delete"] for k, v in kept.counts.items() if v["delete"]} == {"group_membership": 1}
    snap = read_snapshot(dst, pems=False)
    assert "rogue-1" in snap.things_by_name and "rogue-policy" in snap.policies_by_name
    assert "ops" not in snap.things_by_name[thing_name(1)].groups

    dry = plan(src, dst, prune=True)
    assert isinstance(dry, SyncPlanSummary)
    assert dry.counts["thing"]["delete"] == 1 and dry.counts["thing_group"]["delete"] == 2
    assert read_snapshot(dst, pems=False).things_by_name.get("rogue-1") is not None

    pruned = run(src, dst, prune=True)
    assert isinstance(pruned, SyncReport)
    assert pruned.ok, pruned.errors
    assert pruned.counts["thing"]["delete"] == 1
    assert pruned.counts["certificate"]["delete"] == 1
    assert pruned.counts["policy"]["delete"] == 1
    assert pruned.counts["thing_group"]["delete"] == 2
    assert pruned.counts["thing_type"]["delete"] == 1
    assert pruned.counts["group_membership"]["delete"] == 0  # taken out by the first run already
    assert listing(dst) == listing(src)


def test_concurrent_sync_gives_the_same_result(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 30)
    report = run(src, dst, concurrency=4)
    assert isinstance(report, SyncReport)
    assert report.ok, report.errors
    assert report.concurrency == 4
    assert listing(dst) == listing(src)
    assert run(src, dst, concurrency=4).write_calls == 0


def test_progress_is_reported_up_to_the_total(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 5)
    seen: list[tuple[int, int]] = []
    report = run(src, dst, progress=lambda done, total: seen.append((done, total)))
    assert isinstance(report, SyncReport)
    assert seen[0] == (0, report.planned) and seen[-1] == (report.planned, report.planned)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_report_json_is_plain_and_holds_no_pem(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 3)
    report = run(src, dst)
    text = json.dumps(report.to_json())
    assert "BEGIN CERTIFICATE" not in text
    assert json.loads(text)["counts"]["thing"]["create"] == 4


@pytest.mark.parametrize("entry", [sync_registry, plan_registry_sync])
def test_sync_and_its_plan_validate_before_touching_anything(ctx: AwsContext, entry: Callable[..., Any]) -> None:
    with pytest.raises(InputRejected):
        entry(ctx, SRC, SRC)
    with pytest.raises(InputRejected):
        entry(ctx, SRC, "mars-north-1")
    with pytest.raises(InputRejected):
        entry(ctx, SRC, DST, concurrency=0)
    with pytest.raises(InputRejected) as refused:
        entry(ctx, SRC, DST, residency=[SRC, "eu-west-2"])
    assert refused.value.exit_code == 2 and "outside the environment's residency" in refused.value.one_line()


def test_snapshot_round_trips_through_json(iot: IotFactory) -> None:
    src = iot(SRC)
    seed(src, 5)
    snap = read_snapshot(src)
    again = RegistrySnapshot.from_json(json.loads(json.dumps(snap.to_json())))
    assert again == snap
    assert {c.id: c.pem for c in again.certificates} == {c.id: c.pem for c in snap.certificates}
