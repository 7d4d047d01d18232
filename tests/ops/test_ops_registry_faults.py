"""Registry sync under throttling, 5xx, lost answers and crashes: nothing lost, nothing doubled."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ExitCode, OperationFailed
from orchestrator.registry import (
    Caller,
    Checkpoint,
    RetriesExhausted,
    RetryPolicy,
    SyncOptions,
    SyncReport,
    apply_sync,
    plan_sync,
    read_snapshot,
    sync_clients,
)
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import CallLog, FaultInjector, HardCrashCheckpoint, SimulatedCrash, listing, seed

IotFactory = Callable[[str], Any]


def policy_versions(client: Any) -> dict[str, int]:
    names = [p["policyName"] for p in client.list_policies()["policies"]]
    return {n: len(client.list_policy_versions(policyName=n)["policyVersions"]) for n in names}


def test_throttling_and_5xx_on_a_seeded_fraction_of_calls_lose_and_double_nothing(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 20)
    src_faults = FaultInjector(src, rate=0.2, seed=11)
    dst_faults = FaultInjector(dst, rate=0.2, seed=12)
    sleeps: list[float] = []
    retry = RetryPolicy.seeded(3, sleep=sleeps.append)

    report = sync_clients(src, dst, SyncOptions(rate=10_000, retry=retry))

    assert isinstance(report, SyncReport)
    assert report.ok, report.errors
    assert src_faults.total > 0 and dst_faults.injected["applied-then-500"] > 0
    assert report.retries == src_faults.total + dst_faults.total == len(sleeps)
    assert report.throttled == (src_faults.injected["throttle"] + src_faults.injected["too-many"]
                                + dst_faults.injected["throttle"] + dst_faults.injected["too-many"])
    assert all(0 <= s <= retry.max_delay for s in sleeps)
    clean_src, clean_dst = iot(SRC), iot(DST)  # fresh clients: no faults while checking
    assert listing(clean_dst) == listing(clean_src)
    assert set(policy_versions(clean_dst).values()) == {1}
    assert len(clean_dst.list_certificates()["certificates"]) == 21  # 20 devices + the spare
    # and the next run finds nothing to do
    src_faults.enabled = dst_faults.enabled = False
    again = sync_clients(src, dst, SyncOptions(rate=10_000, retry=retry))
    assert isinstance(again, SyncReport) and again.write_calls == 0


def test_a_lost_answer_to_a_policy_version_does_not_create_a_second_version(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 4)
    sync_clients(src, dst, SyncOptions(rate=10_000))
    for name in ("device", "ops-policy"):
        src.create_policy_version(policyName=name, setAsDefault=True, policyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iot:*", "Resource": "*"}]}))
    faults = FaultInjector(dst, rate=1.0, seed=1, only={"CreatePolicyVersion"}, faults=("applied-then-500",))

    quiet = RetryPolicy.seeded(1, sleep=lambda s: None)
    report = sync_clients(src, dst, SyncOptions(rate=10_000, retry=quiet))

    assert isinstance(report, SyncReport)
    assert report.ok, report.errors
    assert faults.injected["applied-then-500"] == 2  # each applied once, answered with a 500 ...
    assert report.counts["policy"]["update"] == 2
    assert policy_versions(iot(DST)) == {"device": 2, "ops-policy": 2, "telemetry-pinned": 1}  # ... not twice


def test_retries_are_bounded_and_the_run_stops_resumably(iot: IotFactory, tmp_path: Path) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 6)
    FaultInjector(dst, rate=1.0, seed=2, only={"CreateThing"}, faults=("throttle",))
    sleeps: list[float] = []
    checkpoint = tmp_path / "sync.json"

    with pytest.raises(RetriesExhausted) as stopped:
        sync_clients(src, dst, SyncOptions(rate=10_000, checkpoint_path=checkpoint,
                                           retry=RetryPolicy.seeded(5, max_attempts=4, sleep=sleeps.append)))

    assert isinstance(stopped.value, OperationFailed) and stopped.value.exit_code is ExitCode.FAILED
    assert "re-run" in stopped.value.one_line()
    assert len(sleeps) == 3  # four attempts, three waits
    header, saved = json.loads(checkpoint.read_text()), Checkpoint.saved(checkpoint)
    assert header["src_region"] == SRC and header["dst_region"] == DST
    # what was applied before the stop is marked done (policies and groups need no thing; a first
    # sync registers certificates with the chunk of things they are attached to, so not before the
    # reader reaches them)
    assert any(key.startswith("policy create ") for key in saved["done"])
    assert not any(key.startswith("thing create ") for key in saved["done"])

    resumed = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000, checkpoint_path=checkpoint))
    assert isinstance(resumed, SyncReport) and resumed.ok and resumed.resumed
    assert resumed.counts["thing"]["create"] == 7 and resumed.counts["policy"]["create"] == 0
    assert listing(iot(DST)) == listing(iot(SRC))
    assert not checkpoint.exists()  # finished cleanly: nothing left to resume


def test_resume_after_a_hard_crash_skips_what_was_saved_and_replays_the_rest_safely(
        iot: IotFactory, tmp_path: Path) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 10)
    plan = plan_sync(read_snapshot(src), read_snapshot(dst, pems=False))
    path = tmp_path / "dev-eu-west-1-eu-central-1.json"
    checkpoint = HardCrashCheckpoint(path, src_region=SRC, dst_region=DST, flush_every=5)
    writes = 0

    def crash_after_23_writes(event_name: str, **_: Any) -> None:
        nonlocal writes
        if not event_name.rsplit(".", 1)[-1].startswith(("List", "Describe", "Get")):
            writes += 1
            if writes > 23:
                checkpoint.dead = True
                raise SimulatedCrash()

    dst.meta.events.register("before-call.iot", crash_after_23_writes)
    with pytest.raises(SimulatedCrash):
        apply_sync(plan, dst, None, checkpoint, concurrency=1)

    saved = set(Checkpoint.saved(path)["done"])
    assert len(saved) == 20  # 23 ops done, flushed every 5: three are lost with the process
    assert saved <= {op.key for op in plan.ops[:23]}

    fresh = iot(DST)
    log = CallLog(fresh)
    report = apply_sync(plan, fresh, None, Checkpoint(path, src_region=SRC, dst_region=DST),
                        caller=Caller(fresh))
    assert report.ok, report.errors
    assert report.resumed and report.skipped_from_checkpoint == 20
    assert report.applied == len(plan.ops) - 20  # the 3 lost ones are replayed: idempotent
    assert log.writes >= len(plan.ops) - 20
    assert listing(iot(DST)) == listing(iot(SRC))
    assert set(policy_versions(iot(DST)).values()) == {1}
    certificates = [len(iot(r).list_certificates()["certificates"]) for r in (SRC, DST)]
    assert certificates[0] == certificates[1]
    assert not path.exists()
    again = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000))
    assert isinstance(again, SyncReport) and again.write_calls == 0


def test_a_refused_operation_is_reported_and_blocks_only_its_dependents(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 4)
    FaultInjector(dst, rate=1.0, seed=3, only={"RegisterCertificateWithoutCA"}, faults=("invalid",))

    report = sync_clients(src, dst, SyncOptions(rate=10_000))

    assert isinstance(report, SyncReport)
    assert not report.ok
    assert len(report.errors) == 5  # 4 devices + the spare
    assert {e.code for e in report.errors} == {"InvalidRequestException"}
    assert all(e.op.startswith("certificate create ") for e in report.errors)
    # their attachments were not attempted ...
    assert report.blocked == 4 + (4 + 1)  # thing<->cert, policy<->cert (device x4, pinned x1)
    assert report.counts["thing_principal"]["create"] == 0
    # ... everything else was applied
    assert report.counts["thing"]["create"] == 5
    assert report.counts["policy_attachment"]["create"] == 1  # the thing-group policy
    assert json.loads(json.dumps(report.to_json()))["errors"][0]["code"] == "InvalidRequestException"


def test_a_group_with_another_parent_in_the_destination_is_reported_not_changed(iot: IotFactory) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 3)
    dst.create_thing_group(thingGroupName="other")
    dst.create_thing_group(thingGroupName="fleet-eu", parentGroupName="other")
    dst.create_thing_type(thingTypeName="gateway")
    dst.deprecate_thing_type(thingTypeName="gateway", undoDeprecate=False)

    report = sync_clients(src, dst, SyncOptions(rate=10_000))

    assert isinstance(report, SyncReport)
    assert report.ok, report.errors
    assert any("fleet-eu" in w and "parent" in w for w in report.warnings)
    snap = read_snapshot(dst, pems=False)
    assert snap.groups_by_name["fleet-eu"].parent == "other"
    # gateway is not deprecated in the source: un-deprecated before its things are created
    assert not snap.types_by_name["gateway"].deprecated
    assert snap.things_by_name["dev-0001"].thing_type == "gateway"


def test_missing_permissions_stop_the_run_as_an_input_error(iot: IotFactory, tmp_path: Path) -> None:
    from orchestrator.aws import aws_errors
    from orchestrator.errors import InputRejected

    src, dst = iot(SRC), iot(DST)
    seed(src, 3)
    FaultInjector(dst, rate=1.0, seed=4, only={"CreateThing"}, faults=("unauthorized",))
    checkpoint = tmp_path / "sync.json"

    with pytest.raises(InputRejected) as refused:
        with aws_errors("registry sync"):
            sync_clients(src, dst, SyncOptions(rate=10_000, checkpoint_path=checkpoint))

    assert refused.value.exit_code is ExitCode.BAD_INPUT
    assert "UnauthorizedException" in refused.value.one_line()
    assert Checkpoint.saved(checkpoint)["done"]  # what was done is kept for the re-run
