"""Change detection: a re-sync reads in proportion to what changed (thing versions, certificate
listings), and `--full` finds what versions cannot show. moto never increments thing versions,
so the clients here go through `tests/ops/versioned.py`, which does what AWS does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.registry import SyncOptions, SyncReport, read_snapshot, sync_clients
from orchestrator.registry.sync.run import VersionRecord
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import make_pem, seed, thing_name
from tests.ops.versioned import ThingVersions

IotFactory = Callable[[str], Any]
N = 12


@pytest.fixture
def versions() -> ThingVersions:
    return ThingVersions()


@pytest.fixture
def viot(iot: IotFactory, versions: ThingVersions) -> IotFactory:
    return lambda region: versions.install(iot(region))


def sync(viot: IotFactory, state: Path, **options: Any) -> SyncReport:
    return sync_clients(viot(SRC), viot(DST), SyncOptions(rate=10_000.0, state_path=state, **options))


def per_thing(report: SyncReport, api: str) -> int:
    return report.calls_by_api.get(api, 0)


def test_an_unchanged_resync_reads_no_principals(viot: IotFactory, tmp_path: Path) -> None:
    seed(viot(SRC), N)
    state = tmp_path / "versions.json"
    first = sync(viot, state)
    assert first.ok and first.things_checked == first.things_total == N + 1
    assert state.exists()

    second = sync(viot, state)
    assert second.ok and second.write_calls == 0
    assert second.things_checked == 0
    assert per_thing(second, "list_thing_principals") == 0
    assert per_thing(second, "list_principal_things") == 0
    assert per_thing(second, "describe_certificate") == 0
    # what is left is the paged listings (and the destination's things, listed again for the record)
    assert set(second.calls_by_api) <= {
        "list_thing_types", "list_thing_groups", "describe_thing_group", "list_things",
        "list_things_in_thing_group", "list_policies", "get_policy", "list_certificates",
        "list_targets_for_policy", "list_policy_versions"}
    # policy versions (tightening: a version deleted in the source goes): one listing per policy and
    # region, and no get_policy_version while each policy has only its default version
    assert second.calls_by_api["list_policy_versions"] == second.calls_by_api["list_targets_for_policy"]
    assert second.calls_by_api["list_things"] == 2  # one page per region (nothing written: no re-listing)


def test_a_changed_thing_is_the_only_one_read_and_its_update_applied(
        viot: IotFactory, tmp_path: Path) -> None:
    seed(viot(SRC), N)
    state = tmp_path / "versions.json"
    assert sync(viot, state).ok
    viot(SRC).update_thing(thingName=thing_name(3), attributePayload={"attributes": {"serial": "new"},
                                                                      "merge": True})

    report = sync(viot, state)
    assert report.ok and report.counts["thing"]["update"] == 1
    assert report.things_checked == 1
    assert per_thing(report, "list_thing_principals") == 2  # that thing, in both regions
    dst = read_snapshot(viot(DST), pems=False).things_by_name[thing_name(3)]
    assert dst.attributes["serial"] == "new"

    quiet = sync(viot, state)  # the destination's new version was recorded too
    assert quiet.things_checked == 0 and quiet.write_calls == 0


def test_a_rotated_certificate_is_found_from_the_certificate_listing(viot: IotFactory, tmp_path: Path) -> None:
    """A new certificate attached to an unchanged thing (its version does not move)."""
    src = viot(SRC)
    seed(src, N)
    state = tmp_path / "versions.json"
    assert sync(viot, state).ok
    cert = src.register_certificate_without_ca(certificatePem=make_pem("rotated", 7777), status="ACTIVE")
    src.attach_thing_principal(thingName=thing_name(5), principal=cert["certificateArn"])

    report = sync(viot, state)
    assert report.ok
    assert report.counts["certificate"]["create"] == 1 and report.counts["thing_principal"]["create"] == 1
    assert per_thing(report, "list_principal_things") == 1 and report.things_checked == 1
    principals = viot(DST).list_thing_principals(thingName=thing_name(5))["principals"]
    assert any(cert["certificateId"] in p for p in principals)


def test_a_certificate_moved_between_things_needs_the_full_pass(viot: IotFactory, tmp_path: Path) -> None:
    src = viot(SRC)
    world = seed(src, N)
    state = tmp_path / "versions.json"
    assert sync(viot, state).ok
    cert_id = world.cert_ids[thing_name(6)]
    arn = src.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]
    src.detach_thing_principal(thingName=thing_name(6), principal=arn)
    src.attach_thing_principal(thingName=thing_name(7), principal=arn)

    blind = sync(viot, state)
    assert blind.ok and blind.counts["thing_principal"]["create"] == 0  # no version moved: not seen

    full = sync(viot, state, full=True)
    assert full.ok and full.full and full.things_checked == N + 1
    assert full.counts["thing_principal"]["create"] == 1
    principals = viot(DST).list_thing_principals(thingName=thing_name(7))["principals"]
    assert any(cert_id in p for p in principals)


def test_without_a_record_every_thing_is_read(viot: IotFactory, tmp_path: Path) -> None:
    seed(viot(SRC), N)
    assert sync(viot, tmp_path / "a.json").ok
    fresh = sync(viot, tmp_path / "other.json")  # no record: correctness first, every thing read
    assert fresh.things_checked == N + 1 and fresh.write_calls == 0


def test_a_run_with_errors_drops_the_record_so_the_next_run_reads_everything(
        viot: IotFactory, tmp_path: Path) -> None:
    from tests.ops.registry_world import FaultInjector

    src = viot(SRC)
    seed(src, N)
    state = tmp_path / "versions.json"
    assert sync(viot, state).ok
    cert = src.register_certificate_without_ca(certificatePem=make_pem("rotated", 8888), status="ACTIVE")
    src.attach_thing_principal(thingName=thing_name(2), principal=cert["certificateArn"])
    dst = viot(DST)
    FaultInjector(dst, rate=1.0, seed=1, only={"AttachThingPrincipal"}, faults=("invalid",))
    failed = sync_clients(viot(SRC), dst, SyncOptions(rate=10_000.0, state_path=state))
    # the run's in-progress mark stays in place of the record (it used to be deleted): no version is trusted
    assert not failed.ok and VersionRecord.load(state, SRC, DST) is None and VersionRecord.unfinished(state)

    healed = sync(viot, state)  # the certificate is registered by now: only a full read finds the attachment
    assert healed.ok and healed.things_checked == N + 1 and healed.distrusted
    assert healed.counts["thing_principal"]["create"] == 1
