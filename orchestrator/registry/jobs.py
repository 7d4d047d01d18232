"""In-flight jobs when the active region changes (failover, failback): list -> plan -> apply -> read back.

A job lives in one region: after a failover its devices connect to the survivor, where the job does
not exist, so a rollout that was 60 % done stops there. `carry_in_flight(src, dst)` moves the
unfinished part:

1. list: every IN_PROGRESS job of `src`, its document and configuration, and each target thing's
   execution status; plus any job this module started carrying and did not finish (the mapping).
2. plan: per job, the things whose execution is not terminal in `src` (QUEUED or IN_PROGRESS). A
   terminal execution stays where it is: SUCCEEDED must never run twice, and FAILED, REJECTED,
   TIMED_OUT, CANCELED and REMOVED are outcomes the job's abort and retry rules already counted
   (a re-run would be a second execution too). The job in `dst` is keyed by (source region,
   source job id) - `carried_id` - so a re-run finds it instead of making another.
3. apply: create the job in `dst` (same document with the source region's ARNs moved, the same
   rollout, abort, timeout, retry and presigned-URL configuration; SNAPSHOT; at most
   `MAX_JOB_TARGETS` targets, so a larger remainder goes through a static thing group made for it),
   record the mapping, then cancel the job in `src` with `force` (reason `REGION_CHANGE`): a device
   still connected there can no longer finish it there. A thing whose execution finished in `src`
   between the listing and the cancel has its execution in `dst` cancelled (withdrawn).
4. read back: the `dst` job exists with that document and configuration, its live executions are
   exactly the planned things less the withdrawn ones, and no thing that SUCCEEDED in `src` has an
   execution in `dst` that is not CANCELED (`executed_twice`, which must be empty).

On failback the same runs the other way (the survivor's in-flight jobs, carried ones included, go
back); a carried job keeps its root id (`ota-42` -> `ota-42-<digest>`), never growing a suffix per
trip. A CONTINUOUS job is carried as a SNAPSHOT of its unfinished things (a continuous job in `dst`
would run again on the group members that already succeeded): the report says so. A job's
scheduling configuration is not carried (the report says so). AWS sources: docs/field-notes-iot-jobs.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.registry.policydoc import RegionRewrite, normalize_document, rewrite_region

PENDING = frozenset({"QUEUED", "IN_PROGRESS"})
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED", "CANCELED"})
MAX_JOB_TARGETS = 100  # "The total number of targets associated with a job must not exceed 100"
REASON = "REGION_CHANGE"  # CancelJob reasonCode: [\p{Upper}\p{Digit}_]+
CONFIG_FIELDS = ("presignedUrlConfig", "jobExecutionsRolloutConfig", "abortConfig", "timeoutConfig",
                 "jobExecutionsRetryConfig")
DESCRIPTION_MAX = 2028
_MARKER = re.compile(r"\s*\[carried from (?P<region>[a-z0-9-]+) job (?P<job>[A-Za-z0-9_-]+), root "
                     r"(?P<root>[A-Za-z0-9_-]+)\]$")
_ROOT_MAX = 64 - 9  # room for "-" and 8 hex digits in a 64-character job id


def carried_id(src_region: str, src_job: str, root: str) -> str:
    """The id of `src_job`'s carried copy: the root job's id and a digest of where it came from."""
    digest = hashlib.sha256(f"{src_region}/{src_job}".encode()).hexdigest()[:8]
    return f"{root[:_ROOT_MAX]}-{digest}"


def _root_of(job_id: str, description: str) -> str:
    m = _MARKER.search(description or "")
    return m.group("root") if m else job_id


def _plain_description(description: str) -> str:
    return _MARKER.sub("", description or "")


def _description(original: str, src_region: str, src_job: str, root: str) -> str:
    marker = f" [carried from {src_region} job {src_job}, root {root}]"
    return (_plain_description(original)[:DESCRIPTION_MAX - len(marker)] + marker).strip()


def _thing_arn(arn: str, region: str) -> str:
    parts = arn.split(":", 5)
    return ":".join([*parts[:3], region, *parts[4:]])


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _clean(v) for k, v in value.items() if v not in (None, {}, [], "")}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


# -- list ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceJob:
    job_id: str
    status: str  # the job's status in the source (IN_PROGRESS, or CANCELED by an unfinished carry)
    description: str
    document: str
    config: Mapping[str, Any]
    target_selection: str
    scheduled: bool
    executions: Mapping[str, str]  # thing name -> execution status
    thing_arns: Mapping[str, str]  # thing name -> thing ARN in the source


def _read_job(caller: Any, job_id: str) -> SourceJob:
    job = caller.call("describe_job", jobId=job_id)["job"]
    document = caller.call("get_job_document", jobId=job_id).get("document") or ""
    statuses: dict[str, str] = {}
    arns: dict[str, str] = {}
    for row in caller.pages("list_job_executions_for_job", jobId=job_id):
        name = row["thingArn"].split("/")[-1]
        statuses[name] = row["jobExecutionSummary"]["status"]
        arns[name] = row["thingArn"]
    return SourceJob(job_id, job.get("status", ""), job.get("description") or "", document,
                     _clean({f: job.get(f) for f in CONFIG_FIELDS}), job.get("targetSelection") or "SNAPSHOT",
                     bool(job.get("schedulingConfig")), statuses, arns)


def read_in_flight(caller: Any, unfinished: tuple[str, ...] = ()) -> list[SourceJob]:
    """The caller's region's IN_PROGRESS jobs, and the `unfinished` ones (carries begun earlier)."""
    ids = [j["jobId"] for j in caller.pages("list_jobs", status="IN_PROGRESS")]
    out = [_read_job(caller, job_id) for job_id in ids]
    for job_id in (j for j in unfinished if j not in ids):
        try:
            out.append(_read_job(caller, job_id))
        except Exception as exc:  # deleted since: nothing left to finish
            if _code(exc) != "ResourceNotFoundException":
                raise
    return out


# -- plan ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CarryPlan:
    src_job: str
    dst_job: str
    root: str
    targets: tuple[str, ...]  # thing names whose execution was QUEUED or IN_PROGRESS in the source
    finished: Mapping[str, int]  # terminal status -> things, in the source
    create: Mapping[str, Any]  # the CreateJob request (targets aside)
    notes: tuple[str, ...] = ()


def plan_carry(sources: list[SourceJob], src_region: str, dst_region: str,
               mode: RegionRewrite = RegionRewrite.DESTINATION) -> list[CarryPlan]:
    plans = []
    for job in sources:
        root = _root_of(job.job_id, job.description)
        targets = tuple(sorted(t for t, s in job.executions.items() if s in PENDING))
        finished: dict[str, int] = {}
        for s in job.executions.values():
            if s in TERMINAL:
                finished[s] = finished.get(s, 0) + 1
        notes = []
        if job.target_selection == "CONTINUOUS":
            notes.append(f"{job.job_id} is CONTINUOUS: carried as a SNAPSHOT of its {len(targets)} unfinished "
                         f"things (things joining its groups in {dst_region} are not targeted)")
        if job.scheduled:
            notes.append(f"{job.job_id}: its scheduling configuration is not carried (the job starts at once)")
        config = json.loads(rewrite_region(json.dumps(dict(job.config), sort_keys=True), src_region, dst_region,
                                           mode)[0])
        create = {"document": rewrite_region(job.document, src_region, dst_region, mode)[0],
                  "description": _description(job.description, src_region, job.job_id, root),
                  "targetSelection": "SNAPSHOT", **config}
        plans.append(CarryPlan(job.job_id, carried_id(src_region, job.job_id, root), root, targets,
                               dict(sorted(finished.items())), create, tuple(notes)))
    return plans


# -- apply -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CarriedJob:
    src_job: str
    dst_job: str
    action: str  # created | existed | nothing pending | failed
    targets: int = 0
    finished_in_src: Mapping[str, int] = field(default_factory=dict)
    withdrawn: tuple[str, ...] = ()  # finished in the source after the listing: cancelled in dst
    executed_twice: tuple[str, ...] = ()  # SUCCEEDED in the source and live in dst (must be empty)
    unequal: tuple[str, ...] = ()  # what did not read back as planned
    error: str = ""
    group: str = ""  # the static thing group made for a remainder over MAX_JOB_TARGETS

    @property
    def ok(self) -> bool:
        return not self.error and not self.executed_twice and not self.unequal

    @property
    def why(self) -> str:
        if self.error:
            return self.error
        if self.executed_twice:
            return f"executing twice: {', '.join(self.executed_twice[:5])}"
        return f"did not read back equal: {', '.join(self.unequal)}"

    def to_json(self) -> dict[str, Any]:
        return {"from_job": self.src_job, "to_job": self.dst_job, "action": self.action, "ok": self.ok,
                "targets": self.targets, "finished_in_source": dict(self.finished_in_src),
                "withdrawn": list(self.withdrawn), "executed_twice": list(self.executed_twice),
                "unequal": list(self.unequal), "error": self.error, "group": self.group}


@dataclass(frozen=True)
class JobsReport:
    src_region: str
    dst_region: str
    jobs: tuple[CarriedJob, ...]
    notes: tuple[str, ...] = ()
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(j.ok for j in self.jobs)

    def summary(self) -> str:
        carried = [j for j in self.jobs if j.action in ("created", "existed")]
        left = sum(j.targets - len(j.withdrawn) for j in carried)
        done = sum(j.finished_in_src.get("SUCCEEDED", 0) for j in self.jobs)
        twice = sum(len(j.executed_twice) for j in self.jobs)
        verb = "would carry" if self.dry_run else "carried"
        return (f"{len(self.jobs)} in-flight jobs in {self.src_region}; {verb} {len(carried)} to {self.dst_region} "
                f"for {left} unfinished things ({done} already SUCCEEDED in {self.src_region}, not re-sent); "
                f"{twice} executing twice")

    def to_json(self) -> dict[str, Any]:
        return {"from": self.src_region, "to": self.dst_region, "ok": self.ok, "dry_run": self.dry_run,
                "jobs": [j.to_json() for j in self.jobs], "notes": list(self.notes)}


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _exists(caller: Any, job_id: str) -> dict[str, Any] | None:
    try:
        return dict(caller.call("describe_job", jobId=job_id)["job"])
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        raise


def _targets(caller: Any, plan: CarryPlan, src: SourceJob, max_targets: int) -> tuple[list[str], str]:
    """(CreateJob targets, the thing group made for them or "")."""
    region = caller.region
    arns = [_thing_arn(src.thing_arns[t], region) for t in plan.targets]
    if len(arns) <= max_targets:
        return arns, ""
    group = f"job-carry-{plan.dst_job}"
    try:
        arn = caller.call("create_thing_group", thingGroupName=group,
                          thingGroupProperties={"thingGroupDescription": f"things {plan.src_job} had not "
                                                                          f"finished in {src.job_id}'s region"})
        group_arn = arn["thingGroupArn"]
    except Exception as exc:
        if _code(exc) != "ResourceAlreadyExistsException":
            raise
        group_arn = caller.call("describe_thing_group", thingGroupName=group)["thingGroupArn"]
    for thing in plan.targets:
        caller.call("add_thing_to_thing_group", thingGroupName=group, thingName=thing)
    return [group_arn], group


def _live(caller: Any, job_id: str) -> dict[str, str]:
    return {r["thingArn"].split("/")[-1]: r["jobExecutionSummary"]["status"]
            for r in caller.pages("list_job_executions_for_job", jobId=job_id)}


def _carry_one(src: Any, dst: Any, job: SourceJob, plan: CarryPlan, record: dict[str, Any],
               save: Callable[[dict[str, Any]], None], max_targets: int) -> CarriedJob:
    key = f"{src.region}/{job.job_id}"
    had = _exists(dst, plan.dst_job)
    group = ""
    if had is None:
        if not plan.targets:
            return CarriedJob(job.job_id, plan.dst_job, "nothing pending", 0, plan.finished)
        targets, group = _targets(dst, plan, job, max_targets)
        try:
            dst.call("create_job", jobId=plan.dst_job, targets=targets, **plan.create)
        except Exception as exc:
            if _code(exc) != "ResourceAlreadyExistsException":  # made by a run that died before recording it
                raise
        action = "created"
    else:
        action = "existed"
    record[key] = {"to": dst.region, "job": plan.dst_job, "root": plan.root, "phase": "created",
                   "targets": len(plan.targets) if had is None else record.get(key, {}).get("targets")}
    save(record)
    if job.status == "IN_PROGRESS":
        src.call("cancel_job", jobId=job.job_id, force=True, reasonCode=REASON,
                 comment=f"carried to {dst.region} as {plan.dst_job}")
    # what finished in the source between the listing and the cancel must not run again in dst
    after = _live(src, job.job_id)
    in_dst = _live(dst, plan.dst_job)
    withdrawn: list[str] = []
    for thing, status in sorted(in_dst.items()):
        if after.get(thing, "CANCELED") != "CANCELED" and status == "QUEUED":
            dst.call("cancel_job_execution", jobId=plan.dst_job, thingName=thing)
            withdrawn.append(thing)
    record[key] = {**record[key], "phase": "done", "withdrawn": len(withdrawn)}
    save(record)
    targets_count = len(in_dst)
    return CarriedJob(job.job_id, plan.dst_job, action, targets_count, plan.finished, tuple(withdrawn), group=group)


# -- read back -------------------------------------------------------------------------------------

def _read_back(src: Any, dst: Any, plan: CarryPlan, carried: CarriedJob) -> CarriedJob:
    from dataclasses import replace

    if carried.action not in ("created", "existed"):
        return carried
    unequal: list[str] = []
    job = dst.call("describe_job", jobId=plan.dst_job)["job"]
    document = dst.call("get_job_document", jobId=plan.dst_job).get("document") or ""
    if normalize_document(document) != normalize_document(plan.create["document"]):
        unequal.append("document")
    for f in CONFIG_FIELDS:
        if _clean(job.get(f)) != _clean(plan.create.get(f)):
            unequal.append(f)
    in_src = _live(src, plan.src_job)
    in_dst = _live(dst, plan.dst_job)
    live = {t for t, s in in_dst.items() if s != "CANCELED"}
    if carried.action == "created" and live != set(plan.targets) - set(carried.withdrawn):
        unequal.append(f"targets ({len(live)} live in {dst.region}, "
                       f"{len(set(plan.targets) - set(carried.withdrawn))} planned)")
    twice = tuple(sorted(t for t in live if in_src.get(t) == "SUCCEEDED"))
    return replace(carried, unequal=tuple(unequal), executed_twice=twice)


def carry_in_flight(src: Any, dst: Any, *, record: dict[str, Any] | None = None,
                    save: Callable[[dict[str, Any]], None] | None = None, dry_run: bool = False,
                    mode: RegionRewrite = RegionRewrite.DESTINATION,
                    max_targets: int = MAX_JOB_TARGETS) -> JobsReport:
    """Carry `src`'s in-flight jobs to `dst` (two `registry.calls.Caller`s). `record` is the mapping
    kept in run state (`<src region>/<job>` -> the carried job and its phase); `save` persists it
    after each change, so a run that dies part-way is finished by the next one."""
    record = record if record is not None else {}
    save = save or (lambda _: None)
    unfinished = tuple(k.split("/", 1)[1] for k, v in record.items()
                       if k.startswith(f"{src.region}/") and v.get("to") == dst.region and v.get("phase") != "done")
    sources = read_in_flight(src, unfinished)
    plans = plan_carry(sources, src.region, dst.region, mode)
    notes = tuple(n for p in plans for n in p.notes)
    if dry_run:
        return JobsReport(src.region, dst.region, tuple(
            CarriedJob(p.src_job, p.dst_job, "planned" if p.targets else "nothing pending", len(p.targets),
                       p.finished) for p in plans), notes, dry_run=True)
    out = []
    for job, plan in zip(sources, plans, strict=True):
        try:
            carried = _carry_one(src, dst, job, plan, record, save, max_targets)
            out.append(_read_back(src, dst, plan, carried))
        except Exception as exc:  # one job that cannot be carried does not stop the others; it is reported
            if not hasattr(exc, "response") and type(exc).__name__ != "RetriesExhausted":
                raise
            from orchestrator.scrub import scrub

            out.append(CarriedJob(job.job_id, plan.dst_job, "failed", len(plan.targets), plan.finished,
                                  error=scrub(str(exc))[:300]))
    return JobsReport(src.region, dst.region, tuple(out), notes)


__all__ = ["MAX_JOB_TARGETS", "CarriedJob", "CarryPlan", "JobsReport", "SourceJob", "carried_id",
           "carry_in_flight", "plan_carry", "read_in_flight"]
