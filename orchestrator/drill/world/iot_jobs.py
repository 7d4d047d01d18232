r"""AWS IoT Jobs as a device sees it, added to the local AWS world: moto 5.2.5's job executions
never leave QUEUED (no `iot-jobs-data` API, no status transitions, no status filter on ListJobs).

Loaded into the moto server by `orchestrator.drill.world.iot_plane.install` (so by `procs.STRICT_MOTO`:
the drill's world and every test tier), never by the orchestrator itself. State lives on moto's
per-region IoT backend (its FakeJob / FakeJobExecution objects), so `/moto-api/reset` clears it.
The rules, with their sources, are in docs/field-notes-iot-jobs.md:

- The device-side data plane (`iot-jobs-data`, signing name `iot-jobs-data`): DescribeJobExecution
  (`$next` included), GetPendingJobExecutions, StartNextPendingJobExecution, UpdateJobExecution.
  A device sets IN_PROGRESS, SUCCEEDED, FAILED or REJECTED (InvalidRequestException otherwise);
  SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED and REMOVED are terminal: any update of a
  terminal execution is InvalidStateTransitionException (409), describing one from the device side
  is TerminalStateException (410). Every update increments `versionNumber` (1 when queued); an
  `expectedVersion` that differs is VersionConflictException (409: the HTTP form of the MQTT
  API's VersionMismatch, as the control plane's CancelJobExecution names it). statusDetails keys
  are 1-128 of [a-zA-Z0-9:_-], values 1-1024 characters without control characters.
  `stepTimeoutInMinutes` (1-10080) and the job's `timeoutConfig.inProgressTimeoutInMinutes` make an
  IN_PROGRESS execution TIMED_OUT when they pass (checked whenever the execution is read).
- The control plane around it: CreateJob refuses a job id that exists (ResourceAlreadyExists, moto
  replaces the job), a target thing that does not exist (ResourceNotFound), more than 100 targets
  (LimitExceededException), expands a static thing
  group into one execution per member thing (moto makes one execution named after the group), and
  starts the job IN_PROGRESS (moto says QUEUED, which is not a JobStatus). A SNAPSHOT job becomes
  COMPLETED once every execution is terminal; `jobProcessDetails` counts executions by status.
  CancelJob cancels QUEUED executions, and IN_PROGRESS ones only with `force` (moto cancels none);
  an unforced cancel of a job leaves IN_PROGRESS executions running, and they may still finish.
  CancelJobExecution honours `expectedVersion` (VersionConflictException). ListJobs filters by
  `status` and `targetSelection` (moto ignores both); ListJobExecutionsForJob/ForThing refuse a
  status outside the enum.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

DEVICE_STATUSES = ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED")
EXECUTION_STATUSES = ("QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED",
                      "CANCELED")
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED", "CANCELED"})
JOB_STATUSES = ("IN_PROGRESS", "CANCELED", "COMPLETED", "DELETION_IN_PROGRESS", "SCHEDULED")
_DETAILS_KEY = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
DETAILS_VALUE_MAX = 1024
STEP_TIMEOUT_MAX = 10080
MAX_JOB_TARGETS = 100  # AssociateTargetsWithJob: "The total number of targets associated with a job must not exceed
# 100"
_COUNTS = {"QUEUED": "numberOfQueuedThings", "IN_PROGRESS": "numberOfInProgressThings",
           "SUCCEEDED": "numberOfSucceededThings", "FAILED": "numberOfFailedThings",
           "REJECTED": "numberOfRejectedThings", "CANCELED": "numberOfCanceledThings",
           "REMOVED": "numberOfRemovedThings", "TIMED_OUT": "numberOfTimedOutThings"}


def _err(code: str, status: int, message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    exc = JsonRESTError(code, message)
    exc.code = status
    return exc


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _epoch(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


# -- execution state (kept on moto's FakeJobExecution) ---------------------------------------------

def _init_execution(backend: Any, execution: Any) -> None:
    numbers: dict[str, int] = backend.__dict__.setdefault("_orchestrate_exec_numbers", {})
    thing = execution.thing_arn.split("/")[-1]
    numbers[thing] = numbers.get(thing, 0) + 1
    now = _now()
    execution.status = "QUEUED"
    execution.version_number = 1
    execution.execution_number = numbers[thing]
    execution.queued_at = now
    execution.started_at = None
    execution.last_updated_at = now
    execution.status_details_map = {}
    execution.approximate_seconds_before_time_out = None
    execution.force_canceled = False
    execution._orchestrate_step_deadline = None


def _expire(backend: Any, execution: Any) -> None:
    """An IN_PROGRESS execution whose step or in-progress timer has passed is TIMED_OUT."""
    if execution.status != "IN_PROGRESS":
        return
    deadlines = [d for d in (getattr(execution, "_orchestrate_step_deadline", None),) if d is not None]
    job = backend.jobs.get(execution.job_id)
    minutes = ((job.timeout_config or {}).get("inProgressTimeoutInMinutes") if job is not None else None)
    if minutes and execution.started_at is not None:
        deadlines.append(execution.started_at.timestamp() + 60 * float(minutes))
    if deadlines and time.time() >= min(deadlines):
        _set(backend, execution, "TIMED_OUT")


def _set(backend: Any, execution: Any, status: str) -> None:
    now = _now()
    if execution.started_at is None and status != "QUEUED":
        execution.started_at = now
    execution.status = status
    execution.version_number += 1
    execution.last_updated_at = now
    if status in TERMINAL:
        execution._orchestrate_step_deadline = None
    _refresh_job(backend, execution.job_id)


def _refresh_job(backend: Any, job_id: str) -> None:
    """jobProcessDetails from the executions; a SNAPSHOT job with every execution terminal is COMPLETED."""
    job = backend.jobs.get(job_id)
    if job is None:
        return
    executions = [e for (j, _), e in backend.job_executions.items() if j == job_id]
    details: dict[str, Any] = {name: 0 for name in _COUNTS.values()}
    for e in executions:
        details[_COUNTS[e.status]] += 1
    details["processingTargets"] = [e.thing_arn for e in executions if e.status in ("QUEUED", "IN_PROGRESS")]
    job.job_process_details = details
    job.last_updated_at = _now()
    if job.status == "IN_PROGRESS" and (job.target_selection or "SNAPSHOT") == "SNAPSHOT" \
            and executions and all(e.status in TERMINAL for e in executions):
        job.status = "COMPLETED"
        job.completed_at = _now()


def _details(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err("InvalidRequestException", 400, "statusDetails must be a map of strings")
    for k, v in value.items():
        if not _DETAILS_KEY.match(str(k)):
            raise _err("InvalidRequestException", 400, f"statusDetails key {k!r} must match [a-zA-Z0-9:_-]{{1,128}}")
        text = str(v)
        if not 1 <= len(text) <= DETAILS_VALUE_MAX or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise _err("InvalidRequestException", 400,
                       f"statusDetails[{k}] must be 1-{DETAILS_VALUE_MAX} characters without control characters")
    return {str(k): str(v) for k, v in value.items()}


def _step_timeout(value: Any) -> float | None:
    if value is None:
        return None
    minutes = int(value)
    if not 1 <= minutes <= STEP_TIMEOUT_MAX:
        raise _err("InvalidRequestException", 400, f"stepTimeoutInMinutes must be 1-{STEP_TIMEOUT_MAX}")
    return time.time() + 60 * minutes


def _job_execution(backend: Any, execution: Any, thing: str, document: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobId": execution.job_id, "thingName": thing, "status": execution.status,
        "statusDetails": dict(execution.status_details_map) or None, "queuedAt": _epoch(execution.queued_at),
        "startedAt": _epoch(execution.started_at), "lastUpdatedAt": _epoch(execution.last_updated_at),
        "versionNumber": execution.version_number, "executionNumber": execution.execution_number}
    deadline = getattr(execution, "_orchestrate_step_deadline", None)
    if execution.status == "IN_PROGRESS" and deadline is not None:
        out["approximateSecondsBeforeTimedOut"] = max(0, int(deadline - time.time()))
    if document:
        out["jobDocument"] = backend.jobs[execution.job_id].document
    return {k: v for k, v in out.items() if v is not None}


def _summary(execution: Any) -> dict[str, Any]:
    out = {"jobId": execution.job_id, "queuedAt": _epoch(execution.queued_at),
           "startedAt": _epoch(execution.started_at), "lastUpdatedAt": _epoch(execution.last_updated_at),
           "versionNumber": execution.version_number, "executionNumber": execution.execution_number}
    return {k: v for k, v in out.items() if v is not None}


def _for_thing(backend: Any, thing: str) -> list[Any]:
    found = [e for (_, t), e in backend.job_executions.items() if t == thing]
    for e in found:
        _expire(backend, e)
    return sorted(found, key=lambda e: (e.queued_at, e.job_id))


def _next_pending(backend: Any, thing: str) -> Any | None:
    executions = _for_thing(backend, thing)
    for status in ("IN_PROGRESS", "QUEUED"):
        for e in executions:
            if e.status == status:
                return e
    return None


def _thing_known(backend: Any, thing: str) -> None:
    if not any(t.thing_name == thing for t in backend.things.values()):
        raise _err("ResourceNotFoundException", 404, f"Thing {thing} does not exist")


def _execution(backend: Any, job_id: str, thing: str) -> Any:
    execution = backend.job_executions.get((job_id, thing))
    if execution is None:
        raise _err("ResourceNotFoundException", 404, f"No job execution of job {job_id} on thing {thing}")
    _expire(backend, execution)
    return execution


# -- the device-side data plane --------------------------------------------------------------------

def _data_plane_class() -> Any:
    from moto.core.responses import ActionResult, BaseResponse
    from moto.iot.models import iot_backends

    class IoTJobsDataResponse(BaseResponse):
        def __init__(self) -> None:
            super().__init__(service_name="iot-jobs-data")
            self.automated_parameter_parsing = True

        @property
        def backend(self) -> Any:
            return iot_backends[self.current_account][self.region]

        def describe_job_execution(self) -> Any:
            thing, job_id = self._get_param("thingName"), self._get_param("jobId")
            include = self._get_param("includeJobDocument")
            document = True if include is None else bool(include)
            if job_id == "$next":
                _thing_known(self.backend, thing)
                found = _next_pending(self.backend, thing)
                return ActionResult({} if found is None else
                                    {"execution": _job_execution(self.backend, found, thing, document)})
            execution = _execution(self.backend, job_id, thing)
            number = self._get_param("executionNumber")
            if number is not None and int(number) != execution.execution_number:
                raise _err("ResourceNotFoundException", 404, f"No execution {number} of job {job_id} on {thing}")
            if execution.status in TERMINAL:
                raise _err("TerminalStateException", 410,
                           f"The job execution of {job_id} on {thing} is {execution.status}")
            return ActionResult({"execution": _job_execution(self.backend, execution, thing, document)})

        def get_pending_job_executions(self) -> Any:
            thing = self._get_param("thingName")
            _thing_known(self.backend, thing)
            executions = _for_thing(self.backend, thing)
            return ActionResult({"inProgressJobs": [_summary(e) for e in executions if e.status == "IN_PROGRESS"],
                                 "queuedJobs": [_summary(e) for e in executions if e.status == "QUEUED"]})

        def start_next_pending_job_execution(self) -> Any:
            thing = self._get_param("thingName")
            _thing_known(self.backend, thing)
            details = self._get_param("statusDetails")
            deadline = _step_timeout(self._get_param("stepTimeoutInMinutes"))
            found = _next_pending(self.backend, thing)
            if found is None:
                return ActionResult({})
            if found.status == "QUEUED":
                if details is not None:
                    found.status_details_map = _details(details)
                found._orchestrate_step_deadline = deadline
                _set(self.backend, found, "IN_PROGRESS")
            return ActionResult({"execution": _job_execution(self.backend, found, thing, True)})

        def update_job_execution(self) -> Any:
            thing, job_id = self._get_param("thingName"), self._get_param("jobId")
            status = self._get_param("status")
            if status not in DEVICE_STATUSES:
                raise _err("InvalidRequestException", 400,
                           f"status must be one of {', '.join(DEVICE_STATUSES)}, not {status!r}")
            details = self._get_param("statusDetails")
            details = None if details is None else _details(details)
            deadline = _step_timeout(self._get_param("stepTimeoutInMinutes"))
            execution = _execution(self.backend, job_id, thing)
            number = self._get_param("executionNumber")
            if number is not None and int(number) != execution.execution_number:
                raise _err("ResourceNotFoundException", 404, f"No execution {number} of job {job_id} on {thing}")
            expected = self._get_param("expectedVersion")
            if expected is not None and int(expected) != execution.version_number:
                raise _err("VersionConflictException", 409,
                           f"expectedVersion {expected} does not match the job execution's version "
                           f"{execution.version_number} (status {execution.status})")
            if execution.status in TERMINAL:
                raise _err("InvalidStateTransitionException", 409,
                           f"The job execution of {job_id} on {thing} is {execution.status}: it cannot become "
                           f"{status}")
            if details is not None:
                execution.status_details_map = details
            if deadline is not None and status == "IN_PROGRESS":
                execution._orchestrate_step_deadline = deadline
            _set(self.backend, execution, status)
            out: dict[str, Any] = {}
            if self._get_param("includeJobExecutionState"):
                out["executionState"] = {"status": execution.status,
                                         "statusDetails": dict(execution.status_details_map),
                                         "versionNumber": execution.version_number}
            if self._get_param("includeJobDocument"):
                out["jobDocument"] = self.backend.jobs[job_id].document
            return ActionResult(out)

    return IoTJobsDataResponse


# -- the control plane around it -------------------------------------------------------------------

def _control_plane(cls: Any) -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.iot.models import FakeJobExecution

    original_create = cls.create_job
    original_describe_exec = cls.describe_job_execution

    def create_job(self: Any) -> Any:
        backend = self.iot_backend
        job_id = self._get_param("jobId")
        if job_id in backend.jobs:
            from moto.iot.exceptions import ResourceAlreadyExistsException

            raise ResourceAlreadyExistsException(f"Job {job_id} already exists", job_id, backend.jobs[job_id].job_arn)
        targets = self._get_param("targets") or []
        if len(targets) > MAX_JOB_TARGETS:
            raise _err("LimitExceededException", 410,
                       f"a job has at most {MAX_JOB_TARGETS} targets (things or thing groups), not {len(targets)}")
        things: list[str] = []
        for arn in targets:
            kind, _, name = str(arn).split(":")[-1].partition("/")
            if kind == "thing":
                _thing_known(backend, name)
                things.append(arn)
            elif kind == "thinggroup":
                members = backend.list_things_in_thing_group(name)
                things.extend(t.arn for t in members)
            else:
                raise _err("InvalidRequestException", 400, f"target {arn} is not a thing or thing group ARN")
        result = original_create(self)
        job = backend.jobs[job_id]
        for key in [k for k in backend.job_executions if k[0] == job_id]:
            del backend.job_executions[key]  # moto's one-per-target (a group became a "thing")
        for arn in dict.fromkeys(things):
            execution = FakeJobExecution(job_id, arn)
            _init_execution(backend, execution)
            backend.job_executions[(job_id, arn.split("/")[-1])] = execution
        job.status = "IN_PROGRESS"
        job.completed_at = None
        _refresh_job(backend, job_id)
        return result

    def cancel_job(self: Any) -> Any:
        backend = self.iot_backend
        job_id = self._get_param("jobId")
        job = backend.jobs.get(job_id)
        if job is None:
            raise _err("ResourceNotFoundException", 404, f"Job {job_id} not found")
        if job.status in ("COMPLETED", "CANCELED") and not self._get_bool_param("force"):
            raise _err("InvalidStateTransitionException", 409, f"Job {job_id} is {job.status}")
        force = bool(self._get_bool_param("force"))
        for (j, _), e in list(backend.job_executions.items()):
            if j == job_id:
                _expire(backend, e)
                if e.status == "QUEUED" or (force and e.status == "IN_PROGRESS"):
                    e.force_canceled = e.status == "IN_PROGRESS"
                    _set(backend, e, "CANCELED")
        job.status = "CANCELED"
        job.force = force
        job.reason_code = self._get_param("reasonCode") or job.reason_code
        job.comment = self._get_param("comment") or job.comment
        _refresh_job(backend, job_id)
        job.status = "CANCELED"
        return ActionResult({"jobArn": job.job_arn, "jobId": job_id, "description": job.description})

    def cancel_job_execution(self: Any) -> Any:
        backend = self.iot_backend
        job_id, thing = self._get_param("jobId"), self._get_param("thingName")
        execution = _execution(backend, job_id, thing)
        expected = self._get_param("expectedVersion")
        if expected is not None and int(expected) != execution.version_number:
            raise _err("VersionConflictException", 409, f"expectedVersion {expected} does not match "
                                                        f"{execution.version_number}")
        force = bool(self._get_bool_param("force"))
        if execution.status in TERMINAL or (execution.status == "IN_PROGRESS" and not force):
            raise _err("InvalidStateTransitionException", 409,
                       f"The job execution of {job_id} on {thing} is {execution.status}")
        details = self._get_param("statusDetails")
        if details is not None:
            if len(details) > 10:
                raise _err("InvalidRequestException", 400, "at most 10 statusDetails pairs")
            execution.status_details_map = _details(details)
        execution.force_canceled = execution.status == "IN_PROGRESS"
        _set(backend, execution, "CANCELED")
        return EmptyResult()

    def describe_job_execution(self: Any) -> Any:
        execution = _execution(self.iot_backend, self._get_param("jobId"), self._get_param("thingName"))
        number = self._get_param("executionNumber")
        if number is not None and int(number) != execution.execution_number:
            raise _err("ResourceNotFoundException", 404, "no such execution number")
        return original_describe_exec(self)

    def _status_filter(self: Any, enum: tuple[str, ...]) -> str | None:
        status = self._get_param("status")
        if status is not None and status not in enum:
            raise _err("InvalidRequestException", 400, f"Invalid status: {status}")
        return str(status) if status is not None else None

    def _page(self: Any, rows: list[Any]) -> tuple[list[Any], str | None]:
        size = int(self._get_param("maxResults") or 50)
        if not 1 <= size <= 250:
            raise _err("InvalidRequestException", 400, "maxResults must be 1-250")
        token = self._get_param("nextToken")
        try:
            start = int(token) if token else 0
        except ValueError:
            raise _err("InvalidRequestException", 400, "invalid nextToken") from None
        end = start + size
        return rows[start:end], (str(end) if end < len(rows) else None)

    def list_jobs(self: Any) -> Any:
        status = _status_filter(self, JOB_STATUSES)
        selection = self._get_param("targetSelection")
        if selection not in (None, "SNAPSHOT", "CONTINUOUS"):
            raise _err("InvalidRequestException", 400, f"Invalid targetSelection: {selection}")
        jobs = sorted(self.iot_backend.jobs.values(), key=lambda j: (j.created_at, j.job_id))
        rows = [j for j in jobs if (status is None or j.status == status)
                and (selection is None or (j.target_selection or "SNAPSHOT") == selection)]
        page, token = _page(self, rows)
        return ActionResult({"jobs": [{"jobArn": j.job_arn, "jobId": j.job_id, "status": j.status,
                                       "targetSelection": j.target_selection or "SNAPSHOT",
                                       "createdAt": j.created_at, "lastUpdatedAt": j.last_updated_at,
                                       "completedAt": j.completed_at} for j in page], "nextToken": token})

    def _executions(self: Any, key: int, value: str) -> list[Any]:
        status = _status_filter(self, EXECUTION_STATUSES)
        backend = self.iot_backend
        found = [e for k, e in backend.job_executions.items() if k[key] == value]
        for e in found:
            _expire(backend, e)
        return sorted((e for e in found if status is None or e.status == status),
                      key=lambda e: (e.queued_at, e.job_id, e.thing_arn))

    def _summary_row(e: Any) -> dict[str, Any]:
        return {"status": e.status, "queuedAt": e.queued_at, "startedAt": e.started_at,
                "lastUpdatedAt": e.last_updated_at, "executionNumber": e.execution_number}

    def list_job_executions_for_job(self: Any) -> Any:
        job_id = self._get_param("jobId")
        if job_id not in self.iot_backend.jobs:
            raise _err("ResourceNotFoundException", 404, f"Job {job_id} not found")
        page, token = _page(self, _executions(self, 0, job_id))
        return ActionResult({"executionSummaries": [{"thingArn": e.thing_arn, "jobExecutionSummary": _summary_row(e)}
                                                    for e in page], "nextToken": token})

    def list_job_executions_for_thing(self: Any) -> Any:
        page, token = _page(self, _executions(self, 1, self._get_param("thingName")))
        return ActionResult({"executionSummaries": [{"jobId": e.job_id, "jobExecutionSummary": _summary_row(e)}
                                                    for e in page], "nextToken": token})

    def to_get_dict(self: Any) -> dict[str, Any]:
        out = {"jobId": self.job_id, "status": self.status, "forceCanceled": self.force_canceled,
               "statusDetails": {"detailsMap": dict(self.status_details_map)}, "thingArn": self.thing_arn,
               "queuedAt": self.queued_at, "startedAt": self.started_at, "lastUpdatedAt": self.last_updated_at,
               "executionNumber": self.execution_number, "versionNumber": self.version_number}
        return {k: v for k, v in out.items() if v is not None}

    setattr(FakeJobExecution, "to_get_dict", to_get_dict)  # noqa: B010 - a foreign class
    for fn in (create_job, cancel_job, cancel_job_execution, describe_job_execution, list_jobs,
               list_job_executions_for_job, list_job_executions_for_thing):
        setattr(cls, fn.__name__, fn)


def install() -> None:
    """Route `iot-jobs-data` requests to the data plane above and tighten moto's job calls (idempotent)."""
    from moto.iot.responses import IoTResponse
    from moto.moto_server import werkzeug_app

    if getattr(IoTResponse, "_orchestrate_jobs", False):
        return
    data_plane = _data_plane_class()
    # the server picks a backend by the request's signing name; iot-jobs-data has none in moto, so it
    # is sent to the IoT app, which hands it to the data plane (the paths overlap with IoT's own)
    werkzeug_app.SIGNING_ALIASES["iot-jobs-data"] = "iot"
    original_dispatch = IoTResponse._dispatch

    def _dispatch(self: Any, request: Any, full_url: Any = None, headers: Any = None) -> Any:
        auth = (headers if headers is not None else request.headers).get("Authorization") or ""
        if "/iot-jobs-data/aws4_request" in auth:
            return data_plane()._dispatch(request, full_url, headers)
        return original_dispatch(self, request, full_url, headers)

    setattr(IoTResponse, "_dispatch", _dispatch)  # noqa: B010 - a foreign class
    _control_plane(IoTResponse)
    setattr(IoTResponse, "_orchestrate_jobs", True)  # noqa: B010 - a flag on a foreign class
