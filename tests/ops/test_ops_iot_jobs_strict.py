"""AWS IoT Jobs as devices run them, in the local AWS world (orchestrator/drill/world/iot_jobs.py): the
`iot-jobs-data` calls moto lacks, the execution state machine, and the control-plane calls around
it, against the moto server behind the strict gate. Rules and sources: docs/field-notes-iot-jobs.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.aws import AwsContext, client
from tests.ops.conftest import SRC


@pytest.fixture
def jobs(ctx: AwsContext) -> Callable[[str], Any]:
    """jobs(region): a device-side `iot-jobs-data` client on the moto server."""
    return lambda region: client(ctx, "iot-jobs-data", region, own_retries=True)


def _things(iot: Any, n: int, prefix: str = "dev") -> list[str]:
    return [iot.create_thing(thingName=f"{prefix}-{i:02d}")["thingArn"] for i in range(n)]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_device_takes_its_execution_from_queued_to_succeeded_and_the_job_completes(
        iot: Any, jobs: Any) -> None:
    control, device = iot(SRC), jobs(SRC)
    arns = _things(control, 2)
    control.create_job(jobId="ota-1", targets=arns, document=json.dumps({"fw": "2.0"}))
    assert control.describe_job(jobId="ota-1")["job"]["status"] == "IN_PROGRESS"  # moto says QUEUED

    pending = device.get_pending_job_executions(thingName="dev-00")
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["ota-1"] and pending["inProgressJobs"] == []
    started = device.start_next_pending_job_execution(thingName="dev-00", statusDetails={"step": "download"})
    assert started["execution"]["status"] == "IN_PROGRESS"
    assert json.loads(started["execution"]["jobDocument"]) == {"fw": "2.0"}
    version = started["execution"]["versionNumber"]
    assert version == 2  # 1 when queued, +1 for the start
    done = device.update_job_execution(thingName="dev-00", jobId="ota-1", status="SUCCEEDED",
                                       expectedVersion=version, includeJobExecutionState=True)
    assert done["executionState"] == {"status": "SUCCEEDED", "statusDetails": {"step": "download"},
                                      "versionNumber": 3}
    job = control.describe_job(jobId="ota-1")["job"]
    assert job["status"] == "IN_PROGRESS"  # dev-01 still queued
    assert (job["jobProcessDetails"]["numberOfSucceededThings"], job["jobProcessDetails"]["numberOfQueuedThings"]) \
        == (1, 1)

    device.update_job_execution(thingName="dev-01", jobId="ota-1", status="FAILED")  # straight from QUEUED
    job = control.describe_job(jobId="ota-1")["job"]
    assert job["status"] == "COMPLETED" and "completedAt" in job
    assert [j["jobId"] for j in control.list_jobs(status="COMPLETED")["jobs"]] == ["ota-1"]
    assert control.list_jobs(status="IN_PROGRESS")["jobs"] == []
    seen = control.describe_job_execution(jobId="ota-1", thingName="dev-00")["execution"]
    assert (seen["status"], seen["versionNumber"], seen["statusDetails"]["detailsMap"]) == \
        ("SUCCEEDED", 3, {"step": "download"})


def test_terminal_states_are_immutable_and_versions_conflict(iot: Any, jobs: Any) -> None:
    control, device = iot(SRC), jobs(SRC)
    arns = _things(control, 2)
    control.create_job(jobId="ota-2", targets=arns, document="{}")
    device.update_job_execution(thingName="dev-00", jobId="ota-2", status="REJECTED")
    for status in ("IN_PROGRESS", "SUCCEEDED"):
        with pytest.raises(ClientError) as exc:
            device.update_job_execution(thingName="dev-00", jobId="ota-2", status=status)
        assert _code(exc) == ("InvalidStateTransitionException", 409)
    with pytest.raises(ClientError) as exc:  # a device never describes a finished execution
        device.describe_job_execution(thingName="dev-00", jobId="ota-2")
    assert _code(exc) == ("TerminalStateException", 410)

    with pytest.raises(ClientError) as exc:
        device.update_job_execution(thingName="dev-01", jobId="ota-2", status="IN_PROGRESS", expectedVersion=7)
    assert _code(exc)[0] == "VersionConflictException"
    assert control.describe_job_execution(jobId="ota-2", thingName="dev-01")["execution"]["status"] == "QUEUED"
    for status in ("QUEUED", "CANCELED", "TIMED_OUT", "SUCCESS"):  # not a device's to set
        with pytest.raises(ClientError) as exc:
            device.update_job_execution(thingName="dev-01", jobId="ota-2", status=status)
        assert _code(exc)[0] in ("InvalidRequestException", "ValidationException")
    with pytest.raises(ClientError) as exc:
        device.update_job_execution(thingName="dev-01", jobId="ota-2", status="IN_PROGRESS",
                                    statusDetails={"bad key!": "x"})
    assert _code(exc)[0] == "InvalidRequestException"
    with pytest.raises(ClientError) as exc:
        device.update_job_execution(thingName="dev-01", jobId="nope", status="IN_PROGRESS")
    assert _code(exc) == ("ResourceNotFoundException", 404)


def test_next_pending_prefers_in_progress_then_the_oldest_queued(iot: Any, jobs: Any) -> None:
    control, device = iot(SRC), jobs(SRC)
    arn = _things(control, 1)
    control.create_job(jobId="first", targets=arn, document='{"n": 1}')
    control.create_job(jobId="second", targets=arn, document='{"n": 2}')
    assert device.describe_job_execution(thingName="dev-00", jobId="$next")["execution"]["jobId"] == "first"
    device.update_job_execution(thingName="dev-00", jobId="second", status="IN_PROGRESS")
    assert device.start_next_pending_job_execution(thingName="dev-00")["execution"]["jobId"] == "second"
    device.update_job_execution(thingName="dev-00", jobId="second", status="SUCCEEDED")
    assert device.start_next_pending_job_execution(thingName="dev-00")["execution"]["jobId"] == "first"
    device.update_job_execution(thingName="dev-00", jobId="first", status="SUCCEEDED")
    assert "execution" not in device.start_next_pending_job_execution(thingName="dev-00")
    assert device.get_pending_job_executions(thingName="dev-00")["queuedJobs"] == []


def test_create_job_is_as_strict_as_aws_and_expands_groups(iot: Any) -> None:
    control = iot(SRC)
    arns = _things(control, 3)
    group = control.create_thing_group(thingGroupName="canary")["thingGroupArn"]
    for name in ("dev-01", "dev-02"):
        control.add_thing_to_thing_group(thingGroupName="canary", thingName=name)
    control.create_job(jobId="by-group", targets=[arns[0], group], document="{}")
    rows = control.list_job_executions_for_job(jobId="by-group")["executionSummaries"]
    assert sorted(r["thingArn"] for r in rows) == sorted(arns)  # one execution per member thing
    with pytest.raises(ClientError) as exc:  # moto would replace the job and its executions
        control.create_job(jobId="by-group", targets=[arns[0]], document="{}")
    assert _code(exc)[0] == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as exc:
        control.create_job(jobId="ghost", targets=[arns[0].replace("dev-00", "missing")], document="{}")
    assert _code(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        control.list_job_executions_for_job(jobId="by-group", status="DONE")
    assert _code(exc)[0] in ("InvalidRequestException", "ValidationException")


def test_cancel_job_cancels_queued_and_only_forced_in_progress(iot: Any, jobs: Any) -> None:
    control, device = iot(SRC), jobs(SRC)
    arns = _things(control, 3)
    control.create_job(jobId="a", targets=arns, document="{}")
    device.update_job_execution(thingName="dev-00", jobId="a", status="SUCCEEDED")
    device.update_job_execution(thingName="dev-01", jobId="a", status="IN_PROGRESS")
    control.cancel_job(jobId="a", reasonCode="FAILOVER", comment="moved")
    status = {r["thingArn"].split("/")[-1]: r["jobExecutionSummary"]["status"]
              for r in control.list_job_executions_for_job(jobId="a")["executionSummaries"]}
    assert status == {"dev-00": "SUCCEEDED", "dev-01": "IN_PROGRESS", "dev-02": "CANCELED"}
    job = control.describe_job(jobId="a")["job"]
    assert (job["status"], job["reasonCode"]) == ("CANCELED", "FAILOVER")
    device.update_job_execution(thingName="dev-01", jobId="a", status="SUCCEEDED")  # unforced: it may finish

    control.create_job(jobId="b", targets=arns, document="{}")
    device.update_job_execution(thingName="dev-01", jobId="b", status="IN_PROGRESS")
    with pytest.raises(ClientError) as exc:
        control.cancel_job_execution(jobId="b", thingName="dev-01")
    assert _code(exc)[0] == "InvalidStateTransitionException"
    control.cancel_job(jobId="b", force=True)
    with pytest.raises(ClientError) as exc:  # the device can no longer report on it
        device.update_job_execution(thingName="dev-01", jobId="b", status="SUCCEEDED")
    assert _code(exc)[0] == "InvalidStateTransitionException"
    assert [r["jobExecutionSummary"]["status"] for r in
            control.list_job_executions_for_job(jobId="b", status="CANCELED")["executionSummaries"]] == ["CANCELED"] * 3
    assert [j["jobId"] for j in control.list_jobs(status="CANCELED")["jobs"]] == ["a", "b"]


def test_list_job_executions_pages(iot: Any) -> None:
    control = iot(SRC)
    arns = _things(control, 5)
    control.create_job(jobId="paged", targets=arns, document="{}")
    seen: list[str] = []
    token = ""
    while True:
        more = {"nextToken": token} if token else {}
        page = control.list_job_executions_for_job(jobId="paged", maxResults=2, **more)
        seen += [r["thingArn"] for r in page["executionSummaries"]]
        token = page.get("nextToken", "")
        if not token:
            break
    assert sorted(seen) == sorted(arns) and len(seen) == 5
