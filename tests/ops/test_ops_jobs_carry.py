"""In-flight jobs follow the active region (orchestrator/registry/jobs.py, the lifecycle's carry-jobs
step), against moto with the strict world's job state machine (orchestrator/drill/world/iot_jobs.py):
devices really run their executions through `iot-jobs-data`, and none runs a job twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result

from orchestrator.aws import AwsContext, client
from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.registry.calls import Caller
from orchestrator.registry.jobs import carried_id, carry_in_flight
from tests.doubles import InMemoryEngine, project_copy
from tests.ops.conftest import DST, SRC

N = 10
DOCUMENT = json.dumps({"operation": "ota", "firmware": "2.0",
                       "signer": f"arn:aws:signer:{SRC}:123456789012:/signing-profiles/fw"})
ROLLOUT = {"maximumPerMinute": 50}
ABORT = {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 20.0,
                           "minNumberOfExecutedThings": 5}]}


@pytest.fixture
def iot(ctx: AwsContext) -> Callable[[str], Any]:
    """iot(region): one registry client per region for the whole test (making one per call is slow)."""
    return cache(lambda region: client(ctx, "iot", region, own_retries=True))


@pytest.fixture
def jobs(ctx: AwsContext) -> Callable[[str], Any]:
    """jobs(region): the devices' `iot-jobs-data` client."""
    return cache(lambda region: client(ctx, "iot-jobs-data", region, own_retries=True))


@pytest.fixture
def caller(iot: Any) -> Callable[[str], Caller]:
    return lambda region: Caller(iot(region))


def _fleet(iot: Any, *regions: str) -> list[str]:
    """N things registered in each region (what the registry sync leaves); their names."""
    names = [f"dev-{i:02d}" for i in range(N)]
    for region in regions:
        for name in names:
            iot(region).create_thing(thingName=name)
    return names


def _rollout(iot: Any, names: list[str], job_id: str = "ota-42") -> None:
    arns = [f"arn:aws:iot:{SRC}:123456789012:thing/{n}" for n in names]
    iot(SRC).create_job(jobId=job_id, targets=arns, document=DOCUMENT, description="firmware 2.0",
                        jobExecutionsRolloutConfig=ROLLOUT, abortConfig=ABORT,
                        timeoutConfig={"inProgressTimeoutInMinutes": 60})


def _run_device(device: Any, thing: str, ran: list[tuple[str, str]], region: str) -> None:
    """What a device does after connecting: start and finish every job it is given."""
    while True:
        started = device.start_next_pending_job_execution(thingName=thing)
        if "execution" not in started:
            return
        job_id = started["execution"]["jobId"]
        device.update_job_execution(thingName=thing, jobId=job_id, status="SUCCEEDED",
                                    expectedVersion=started["execution"]["versionNumber"])
        ran.append((thing, f"{region}/{job_id}"))


def _succeeded(iot: Any, region: str) -> dict[str, int]:
    """thing -> how many jobs it SUCCEEDED in the region."""
    out: dict[str, int] = {}
    for job in iot(region).list_jobs()["jobs"]:
        for row in iot(region).list_job_executions_for_job(jobId=job["jobId"], status="SUCCEEDED")[
                "executionSummaries"]:
            name = row["thingArn"].split("/")[-1]
            out[name] = out.get(name, 0) + 1
    return out


def test_a_rollout_60_percent_done_completes_in_the_survivor_and_nothing_runs_twice(
        iot: Any, jobs: Any, caller: Any) -> None:
    names = _fleet(iot, SRC, DST)
    _rollout(iot, names)
    ran: list[tuple[str, str]] = []
    for thing in names[:6]:  # 60 % succeed in the primary
        _run_device(jobs(SRC), thing, ran, SRC)
    jobs(SRC).start_next_pending_job_execution(thingName=names[6])  # one is mid-update when it fails

    record: dict[str, Any] = {}
    report = carry_in_flight(caller(SRC), caller(DST), record=record)
    assert report.ok, report.to_json()
    [carried] = report.jobs
    assert carried.dst_job == carried_id(SRC, "ota-42", "ota-42") and carried.action == "created"
    assert carried.targets == 4 and carried.finished_in_src == {"SUCCEEDED": 6}
    assert carried.executed_twice == () and carried.withdrawn == ()
    assert "carried 1 to" in report.summary() and "0 executing twice" in report.summary()
    assert record[f"{SRC}/ota-42"]["job"] == carried.dst_job and record[f"{SRC}/ota-42"]["phase"] == "done"

    # the primary's job is cancelled: the device that was mid-update can no longer finish it there
    assert iot(SRC).describe_job(jobId="ota-42")["job"]["status"] == "CANCELED"
    with pytest.raises(ClientError) as exc:
        jobs(SRC).update_job_execution(thingName=names[6], jobId="ota-42", status="SUCCEEDED")
    assert exc.value.response["Error"]["Code"] == "InvalidStateTransitionException"

    # the survivor's job: same document (region moved), rollout and abort configuration
    job = iot(DST).describe_job(jobId=carried.dst_job)["job"]
    assert (job["jobExecutionsRolloutConfig"], job["abortConfig"]) == (ROLLOUT, ABORT)
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 60}
    document = json.loads(iot(DST).get_job_document(jobId=carried.dst_job)["document"])
    assert document["signer"] == f"arn:aws:signer:{DST}:123456789012:/signing-profiles/fw"
    assert "firmware 2.0" in job["description"] and f"carried from {SRC} job ota-42" in job["description"]

    for thing in names:  # after the failover every device connects to the survivor
        _run_device(jobs(DST), thing, ran, DST)
    assert sorted(t for t, where in ran if where.startswith(DST)) == names[6:]  # the other 40 %
    done = {**_succeeded(iot, SRC)}
    for thing, n in _succeeded(iot, DST).items():
        done[thing] = done.get(thing, 0) + n
    assert done == {name: 1 for name in names}  # every device once, none twice
    final = iot(DST).describe_job(jobId=carried.dst_job)["job"]
    assert final["status"] == "COMPLETED" and final["jobProcessDetails"]["numberOfSucceededThings"] == 4

    again = carry_in_flight(caller(SRC), caller(DST), record=record)  # idempotent: nothing in flight
    assert again.ok and again.jobs == ()
    assert [j["jobId"] for j in iot(DST).list_jobs()["jobs"]] == [carried.dst_job]


def test_a_carry_that_died_part_way_is_finished_by_the_next_run(iot: Any, jobs: Any, caller: Any) -> None:
    names = _fleet(iot, SRC, DST)
    _rollout(iot, names)
    for thing in names[:6]:
        _run_device(jobs(SRC), thing, [], SRC)
    record: dict[str, Any] = {}

    def die(saved: dict[str, Any]) -> None:  # the machine dies once the carried job is made and recorded
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        carry_in_flight(caller(SRC), caller(DST), record=record, save=die)
    assert record[f"{SRC}/ota-42"]["phase"] == "created"
    assert iot(SRC).describe_job(jobId="ota-42")["job"]["status"] == "IN_PROGRESS"  # not cancelled yet
    _run_device(jobs(SRC), names[6], [], SRC)  # meanwhile one more device finishes in the primary

    report = carry_in_flight(caller(SRC), caller(DST), record=record)
    assert report.ok, report.to_json()
    [carried] = report.jobs
    assert carried.action == "existed" and carried.withdrawn == (names[6],)  # not sent to it a second time
    assert jobs(DST).get_pending_job_executions(thingName=names[6])["queuedJobs"] == []
    assert [j["jobId"] for j in jobs(DST).get_pending_job_executions(thingName=names[7])["queuedJobs"]] == \
        [carried.dst_job]
    assert len(iot(DST).list_jobs()["jobs"]) == 1 and record[f"{SRC}/ota-42"]["phase"] == "done"


def test_a_remainder_over_the_target_limit_goes_through_a_thing_group(iot: Any, caller: Any) -> None:
    names = _fleet(iot, SRC, DST)
    _rollout(iot, names)
    report = carry_in_flight(caller(SRC), caller(DST), max_targets=3)  # AWS: 100 targets per job
    assert report.ok, report.to_json()
    [carried] = report.jobs
    assert carried.group == f"job-carry-{carried.dst_job}"
    members = {t for t in iot(DST).list_things_in_thing_group(thingGroupName=carried.group)["things"]}
    assert members == set(names)
    assert iot(DST).describe_job(jobId=carried.dst_job)["job"]["targets"] == [
        iot(DST).describe_thing_group(thingGroupName=carried.group)["thingGroupArn"]]
    assert len(iot(DST).list_job_executions_for_job(jobId=carried.dst_job)["executionSummaries"]) == N


def test_failback_carries_the_unfinished_part_back_under_the_same_root(iot: Any, jobs: Any, caller: Any) -> None:
    names = _fleet(iot, SRC, DST)
    _rollout(iot, names)
    ran: list[tuple[str, str]] = []
    for thing in names[:6]:
        _run_device(jobs(SRC), thing, ran, SRC)
    record: dict[str, Any] = {}
    out = carry_in_flight(caller(SRC), caller(DST), record=record)
    for thing in names[6:8]:  # two of the four finish in the survivor before failback
        _run_device(jobs(DST), thing, ran, DST)

    back = carry_in_flight(caller(DST), caller(SRC), record=record)
    assert back.ok, back.to_json()
    [returned] = back.jobs
    assert returned.src_job == out.jobs[0].dst_job and returned.targets == 2
    assert returned.dst_job == carried_id(DST, out.jobs[0].dst_job, "ota-42")
    assert returned.dst_job.startswith("ota-42-") and len(returned.dst_job) == len(out.jobs[0].dst_job)
    for thing in names:
        _run_device(jobs(SRC), thing, ran, SRC)
    assert sorted(t for t, where in ran if where == f"{SRC}/{returned.dst_job}") == names[8:]
    assert sorted(t for t, _ in ran) == names  # each device ran the rollout once, wherever it was


def test_an_unknown_thing_in_the_survivor_fails_that_job_and_is_reported(iot: Any, caller: Any) -> None:
    names = _fleet(iot, SRC)
    iot(DST).create_thing(thingName=names[0])  # the survivor lacks nine (no registry sync ran)
    _rollout(iot, names)
    report = carry_in_flight(caller(SRC), caller(DST))
    assert not report.ok
    [failed] = report.jobs
    assert failed.action == "failed" and "ResourceNotFoundException" in failed.error
    assert iot(SRC).describe_job(jobId="ota-42")["job"]["status"] == "IN_PROGRESS"  # left running there
    assert iot(DST).list_jobs()["jobs"] == []


# -- through the lifecycle -------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_copy(tmp_path, monkeypatch)


@pytest.fixture
def run(project: Path, engine: InMemoryEngine, endpoint: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        extra = ["--sync-rate", "500"] if args[0] in ("promote-secondary", "failover", "failback") else []
        return CliRunner().invoke(cli, [*args, *extra, "--endpoint-url", endpoint],
                                  obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)

    return invoke


def test_failover_and_failback_carry_the_rollout_and_record_the_mapping(
        run: Any, iot: Any, jobs: Any, project: Path) -> None:
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    names = [f"dev-{i:02d}" for i in range(N)]
    for name in names:
        iot(SRC).create_thing(thingName=name)
    assert run("promote-secondary", "--yes", "--region", DST).exit_code == 0  # the registry sync carries them
    _rollout(iot, names)
    ran: list[tuple[str, str]] = []
    for thing in names[:6]:
        _run_device(jobs(SRC), thing, ran, SRC)

    result = run("failover", "--yes", "--to", DST)
    assert result.exit_code == 0, result.output
    assert "carry-jobs" in result.stdout and "for 4 unfinished things" in result.stdout
    assert "0 executing twice" in result.stdout
    mapping = json.loads((project / ".orchestrate" / "lifecycle" / "dev-jobs.json").read_text())
    dst_job = carried_id(SRC, "ota-42", "ota-42")
    assert mapping[f"{SRC}/ota-42"]["job"] == dst_job and mapping[f"{SRC}/ota-42"]["to"] == DST
    for thing in names[6:9]:  # three of the four before the primary is back
        _run_device(jobs(DST), thing, ran, DST)

    back = run("failback", "--yes")
    assert back.exit_code == 0, back.output
    assert yaml.safe_load((project / "stacks" / "dev.topology.yaml").read_text())["primary"] == SRC
    for thing in names:
        _run_device(jobs(SRC), thing, ran, SRC)
    assert sorted(t for t, _ in ran) == names  # 6 in the primary, 3 in the survivor, the last one back home
    assert [t for t, where in ran if where.startswith(f"{SRC}/ota-42-")] == [names[9]]
