"""Registry parity, pure parts: `verify.compare` by the sync's own rules, the version record's
in-progress mark, and `SyncReport.ok` meaning read back equal."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.registry import (
    Certificate,
    Policy,
    PolicyTarget,
    RegistrySnapshot,
    Shadow,
    SyncReport,
    TargetKind,
    Thing,
    ThingGroup,
    ThingPrincipal,
    ThingType,
)
from orchestrator.registry.policydoc import RegionRewrite
from orchestrator.registry.sync.model import SyncVerification, zero_counts
from orchestrator.registry.sync.run import VersionRecord
from orchestrator.registry.verify import VERIFY_KINDS, compare

A, B = "eu-west-1", "eu-central-1"


def pinned(region: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"arn:aws:iot:{region}:123456789012:topic/t/*"}]})


def region(name: str, **over: object) -> RegistrySnapshot:
    base: dict[str, object] = dict(
        thing_types=(ThingType("sensor", "s", ("model",)),),
        thing_groups=(ThingGroup("fleet", None, "all", {"tier": "1"}), ThingGroup("dyn", query="attributes.x:1")),
        things=(Thing("t1", "sensor", {"serial": "1"}, ("fleet",)), Thing("t2")),
        policies=(Policy("pinned", pinned(name)),),
        certificates=(Certificate("c1", "ACTIVE"), Certificate("c2", "INACTIVE")),
        thing_principals=(ThingPrincipal("t1", "c1"),),
        policy_targets=(PolicyTarget("pinned", TargetKind.CERTIFICATE, "c1"),),
        shadows=(Shadow("t1", "", '{"led":"on"}', None), Shadow("t1", "cfg", None, '{"fw":"1"}')),
    )
    base.update(over)
    return RegistrySnapshot(name, **base)  # type: ignore[arg-type]


def test_equal_regions_compare_as_parity_with_the_policy_region_rewritten() -> None:
    report = compare(region(A), region(B))
    assert report.equal and [k.kind for k in report.kinds] == list(VERIFY_KINDS)
    assert report.kind("policies").in_from == 1 and report.kind("shadows").in_to == 2
    assert any("dynamic thing groups are not compared" in n for n in report.notes)
    # the wildcard rewrite is accepted too, unless one mode is asked for
    wild = region(B, policies=(Policy("pinned", pinned("*")),))
    assert compare(region(A), wild).equal
    assert not compare(region(A), wild, rewrite=RegionRewrite.DESTINATION).equal
    # a policy that still names the source region in the destination grants nothing there: a difference
    assert compare(region(A), region(B, policies=(Policy("pinned", pinned(A)),))).kind("policies").differ == 1


def test_every_kind_counts_only_in_each_side_and_differing_values() -> None:
    b = region(B, thing_types=(ThingType("sensor", "s", ("model",), deprecated=True),),
               things=(Thing("t1", "sensor", {"serial": "9"}, ()), Thing("t3")),
               certificates=(Certificate("c1", "REVOKED"),),
               thing_principals=(ThingPrincipal("t3", "c1"),),
               policy_targets=(),
               shadows=(Shadow("t1", "", '{"led":"off"}', None),))
    r = compare(region(A), b, first=1)
    assert r.kind("thing_types").differ == 1 and r.kind("thing_types").first == ("sensor: deprecated differ",)
    assert (r.kind("things").only_in_from, r.kind("things").only_in_to, r.kind("things").differ) == (1, 1, 1)
    assert len(r.kind("things").first) == 1  # --first caps what is named, not what is counted
    assert r.kind("group_membership").only_in_from == 1
    assert r.kind("certificates").differ == 1 and r.kind("certificates").only_in_from == 1
    assert compare(region(A), b).kind("certificates").first[0] == "c2: only in eu-west-1"
    assert r.kind("thing_principals").differences == 2 and r.kind("policy_attachments").only_in_from == 1
    assert r.kind("shadows").differ == 1 and r.kind("shadows").only_in_from == 1
    assert r.differences == sum(k.differences for k in r.kinds) and not r.equal
    doc = r.to_json()
    assert doc["ok"] is False and doc["kinds"]["things"]["differences"] == 3 and doc["write_calls"] == 0


def test_statuses_are_compared_as_the_sync_maps_them() -> None:
    a = region(A, certificates=(Certificate("c1", "ACTIVE"), Certificate("c2", "PENDING_ACTIVATION"),
                                Certificate("c9", "PENDING_TRANSFER")))
    assert compare(a, region(B)).kind("certificates").differences == 0  # c2 -> INACTIVE; c9 never copied


def test_without_shadows_they_are_not_compared() -> None:
    r = compare(region(A), region(B, shadows=()), shadows=False)
    assert r.equal and not r.shadows and r.kind("shadows").in_from == 0
    assert "shadows not compared" in r.lines()[0]


def test_the_in_progress_mark_replaces_trust_until_a_clean_run_saves(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    VersionRecord(A, B, {"t1": (1, 1)}, {}).save(path)
    assert VersionRecord.load(path, A, B) is not None and VersionRecord.unfinished(path) is None
    VersionRecord.mark(path, A, B)
    assert VersionRecord.load(path, A, B) is None
    reason = VersionRecord.unfinished(path)
    assert reason and "did not finish cleanly" in reason and "started 20" in reason
    VersionRecord(A, B, {"t1": (2, 1)}, {}).save(path)
    assert VersionRecord.unfinished(path) is None and VersionRecord.load(path, A, B).things["t1"] == (2, 1)
    assert VersionRecord.unfinished(tmp_path / "missing.json") is None


def test_a_report_is_ok_only_when_it_reads_back_equal() -> None:
    base = SyncReport(A, B, False, 3, 3, zero_counts(), 3, 10, 0, 0, 0.1, 1, None)
    assert base.ok and base.to_json()["verification"] is None
    good = SyncReport(**{**base.__dict__, "verification": SyncVerification(0, things_reread=2)})
    assert good.ok and good.to_json()["verification"]["ok"] is True
    bad = SyncReport(**{**base.__dict__, "verification": SyncVerification(2, {"thing_principal": 2},
                                                                            ("attach thing principal t1/c1",))})
    assert not bad.ok and bad.to_json()["ok"] is False
    assert bad.to_json()["verification"]["counts"] == {"thing_principal": 2}
