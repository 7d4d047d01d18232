"""The planner carries tightening without --prune, and only what the source's read covered.

Tightening: a policy detached from a certificate or group, a certificate detached from a thing,
a thing taken out of a group, a certificate deactivated or revoked, a policy narrowed (new default,
versions the source deleted). Removal (things, certificates ... the source no longer has) stays
behind --prune and its guard.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from orchestrator.errors import GuardRefused
from orchestrator.registry.guards import PruneGuard, additive
from orchestrator.registry.policydoc import normalize_document
from orchestrator.registry.snapshot import (
    Certificate,
    Coverage,
    Policy,
    PolicyTarget,
    PolicyVersion,
    RegistrySnapshot,
    TargetKind,
    Thing,
    ThingGroup,
    ThingPrincipal,
)
from orchestrator.registry.sync.model import Action, Kind
from orchestrator.registry.sync.plan import PlanPart, plan_sync

SRC, DST = "eu-west-1", "eu-central-1"
CERT, OTHER = "a" * 64, "b" * 64


def doc(*actions: str) -> str:
    return normalize_document(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}))


BROAD, NARROW = doc("iot:*"), doc("iot:Connect")


def region(name: str, *, coverage: Coverage | None = None, status: str = "ACTIVE", attached: bool = True,
           policy_on_cert: bool = True, groups: tuple[str, ...] = ("fleet",),
           policy: Policy | None = None, extra_things: tuple[str, ...] = ()) -> RegistrySnapshot:
    things = (Thing("dev-1", groups=groups), *(Thing(t) for t in extra_things))
    return RegistrySnapshot(
        name,
        thing_groups=(ThingGroup("fleet"),),
        things=tuple(sorted(things, key=lambda t: t.name)),
        policies=(policy or Policy("device", BROAD, (PolicyVersion("1", BROAD, True),)),),
        certificates=(Certificate(CERT, status), Certificate(OTHER, "ACTIVE")),
        thing_principals=(ThingPrincipal("dev-1", CERT),) if attached else (),
        policy_targets=((PolicyTarget("device", TargetKind.CERTIFICATE, CERT),) if policy_on_cert else ())
        + (PolicyTarget("device", TargetKind.THING_GROUP, "fleet"),),
        coverage=coverage if coverage is not None else Coverage.complete(),
    )


def ops(plan, kind: Kind, action: Action):  # type: ignore[no-untyped-def]
    return [op for op in plan.ops if op.kind is kind and op.action is action]


def test_a_policy_detached_from_a_certificate_is_detached_without_prune() -> None:
    plan = plan_sync(region(SRC, policy_on_cert=False), region(DST))
    [op] = ops(plan, Kind.POLICY_ATTACHMENT, Action.DELETE)
    assert op.name == f"device/certificate:{CERT}" and op.tightens and op.api == "detach_policy"
    assert not plan.prune and len(plan.ops) == 1


def test_a_policy_detached_from_a_group_is_detached_without_prune() -> None:
    src = region(SRC)
    src = replace(src, policy_targets=src.policy_targets[:1])
    [op] = ops(plan_sync(src, region(DST)), Kind.POLICY_ATTACHMENT, Action.DELETE)
    assert op.name == "device/thing_group:fleet" and op.tightens


def test_a_partial_read_never_detaches_what_it_did_not_look_at() -> None:
    """The source listed no targets of `device` completely, no principals of dev-1, no members
    of `fleet`: every relation the destination has more of stays."""
    partial = Coverage(principals=frozenset({"someone-else"}), policy_targets=frozenset(),
                       groups=frozenset(), policy_versions=frozenset())
    src = region(SRC, coverage=partial, attached=False, policy_on_cert=False, groups=())
    plan = plan_sync(src, region(DST))
    assert not [op for op in plan.ops if op.action is Action.DELETE]
    # the same source, fully covered, detaches all three
    full = plan_sync(region(SRC, attached=False, policy_on_cert=False, groups=()), region(DST))
    assert sorted(op.kind.value for op in full.ops if op.action is Action.DELETE) == [
        "group_membership", "policy_attachment", "thing_principal"]
    assert all(op.tightens for op in full.ops)


def test_a_snapshot_made_by_hand_or_from_a_backup_covers_nothing() -> None:
    src = region(SRC, attached=False, policy_on_cert=False, groups=())
    bare = RegistrySnapshot.from_json(src.to_json())
    assert bare.coverage == Coverage()
    assert not [op for op in plan_sync(bare, region(DST)).ops if op.action is Action.DELETE]


def test_a_certificate_detached_from_a_thing_is_detached_only_where_principals_were_read() -> None:
    covered = plan_sync(region(SRC, attached=False), region(DST))
    [op] = ops(covered, Kind.THING_PRINCIPAL, Action.DELETE)
    assert op.name == f"dev-1/{CERT}" and op.tightens and op.api == "detach_thing_principal"
    # the relations pass of an incremental run that read other things' principals only
    other = Coverage.complete().with_principals({"dev-2"})
    src = region(SRC, attached=False, coverage=other, extra_things=("dev-2",))
    relations = plan_sync(src, region(DST, extra_things=("dev-2",)), part=PlanPart.RELATIONS)
    assert not ops(relations, Kind.THING_PRINCIPAL, Action.DELETE)
    read = plan_sync(replace_coverage(src, Coverage.complete().with_principals({"dev-1"})),
                     region(DST, extra_things=("dev-2",)), part=PlanPart.RELATIONS)
    assert [op.name for op in ops(read, Kind.THING_PRINCIPAL, Action.DELETE)] == [f"dev-1/{CERT}"]


def replace_coverage(snapshot: RegistrySnapshot, coverage: Coverage) -> RegistrySnapshot:
    return replace(snapshot, coverage=coverage)


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_a_deactivated_or_revoked_certificate_is_carried(status: str) -> None:
    [op] = plan_sync(region(SRC, status=status), region(DST)).ops
    assert (op.kind, op.action, op.params["status"], op.tightens) == (Kind.CERTIFICATE, Action.UPDATE, status, True)


def test_a_thing_taken_out_of_a_group_is_taken_out() -> None:
    [op] = plan_sync(region(SRC, groups=()), region(DST)).ops
    assert (op.kind, op.action, op.name, op.tightens) == (Kind.GROUP_MEMBERSHIP, Action.DELETE, "fleet/dev-1", True)


def test_a_narrowed_policy_gets_its_new_default_and_loses_the_versions_the_source_deleted() -> None:
    """Source: version 1 (BROAD) deleted, 2 (NARROW) the default and only one. Destination: five
    versions (AWS's maximum), default BROAD, four older ones the source does not have."""
    src = region(SRC, policy=Policy("device", NARROW, (PolicyVersion("2", NARROW, True),)))
    dst_versions = (PolicyVersion("1", doc("iot:Publish")), PolicyVersion("2", doc("iot:Receive")),
                    PolicyVersion("3", doc("iot:Subscribe")), PolicyVersion("4", doc("iot:GetThingShadow")),
                    PolicyVersion("5", BROAD, True))
    dst = region(DST, policy=Policy("device", BROAD, dst_versions))
    plan = plan_sync(src, dst)
    [update] = ops(plan, Kind.POLICY, Action.UPDATE)
    deletes = {op.params["version_id"]: op for op in ops(plan, Kind.POLICY_VERSION, Action.DELETE)}
    assert sorted(deletes) == ["1", "2", "3", "4", "5"] and all(op.tightens for op in deletes.values())
    # room under the five-version limit first; the old default only once it is no longer the default
    assert {deletes[v].id for v in "1234"} <= set(update.deps)
    assert update.id in deletes["5"].deps
    order = [op.id for op in plan.ops]
    assert order.index(deletes["1"].id) < order.index(update.id) < order.index(deletes["5"].id)
    assert deletes["1"].api == "delete_policy_version"


def test_versions_the_source_still_has_are_kept_and_an_equal_default_is_never_deleted() -> None:
    versions = (PolicyVersion("1", BROAD), PolicyVersion("2", NARROW, True))
    src = region(SRC, policy=Policy("device", NARROW, versions))
    dst = region(DST, policy=Policy("device", NARROW, (PolicyVersion("7", BROAD), PolicyVersion("8", NARROW, True),
                                                      PolicyVersion("9", doc("iot:Publish")))))
    [op] = plan_sync(src, dst).ops
    assert (op.kind, op.params["version_id"]) == (Kind.POLICY_VERSION, "9")
    # versions not read in the source (or not covered): none deleted
    unread = region(SRC, policy=Policy("device", NARROW, None))
    assert not plan_sync(unread, dst).ops
    uncovered = replace_coverage(src, Coverage(policy_versions=frozenset()))
    assert not plan_sync(uncovered, dst).ops


def test_objects_the_source_no_longer_has_are_removed_only_with_prune() -> None:
    """A thing and a certificate only the destination has (devices): kept, with their relations."""
    dst = RegistrySnapshot(DST, things=(Thing("dev-1"), Thing("gone")),
                           certificates=(Certificate(CERT, "ACTIVE"), Certificate(OTHER, "ACTIVE")),
                           thing_principals=(ThingPrincipal("gone", OTHER),),
                           policies=(Policy("device", BROAD),),
                           policy_targets=(PolicyTarget("device", TargetKind.CERTIFICATE, OTHER),))
    src = RegistrySnapshot(SRC, things=(Thing("dev-1"),), certificates=(Certificate(CERT, "ACTIVE"),),
                           policies=(Policy("device", BROAD),), coverage=Coverage.complete())
    assert not plan_sync(src, dst).ops
    pruned = plan_sync(src, dst, True)
    assert {(op.kind.value, op.name) for op in pruned.ops if op.action is Action.DELETE} == {
        ("thing", "gone"), ("certificate", OTHER), ("thing_principal", f"gone/{OTHER}"),
        ("policy_attachment", f"device/certificate:{OTHER}")}
    assert not any(op.tightens for op in pruned.ops)


def test_the_prune_guard_confirms_deletions_only_never_tightening() -> None:
    src, dst = region(SRC, attached=False, policy_on_cert=False, groups=()), region(DST)
    plan = plan_sync(src, dst, True)
    assert len(plan.ops) == 3 and all(op.tightens for op in plan.ops)
    asked: list[str] = []
    guard = PruneGuard(confirm=lambda q, _: asked.append(q))
    assert guard.check(src, dst, plan) is plan and asked == []
    # no confirmation at all: tightening still passes; a deletion is refused
    assert PruneGuard(confirm=None).check(src, dst, plan) is plan
    extra = replace(dst, things=(*dst.things, Thing("gone")))
    with pytest.raises(GuardRefused):
        PruneGuard(confirm=None).check(src, extra, plan_sync(src, extra, True))


def test_a_restore_is_additive_and_never_tightens() -> None:
    plan = plan_sync(region(SRC, attached=False, policy_on_cert=False, groups=(), status="REVOKED"), region(DST))
    kept, left = additive(plan)
    assert kept.ops == () and len(left) == 4
