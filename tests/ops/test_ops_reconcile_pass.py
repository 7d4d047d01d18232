"""The daily reconciliation as Step Functions runs it: the definition the replication program renders,
run by the strict stand-in (tests/states_language.py), invoking the real Lambda handler
(`replicate.handler`) slice by slice against a moto server, each invocation bounded in time (the
Task's TimeoutSeconds, passed to the handler as Lambda's remaining time) and in memory (the
function's 256 MB).

What a user would notice: the secondary verifies equal (`registry verify`'s code path) after a pass
of several slices; a pass killed in the middle continues where it was, and reads no thing's
principals it had already read; `orchestrate status` shows the pass's progress.
"""

from __future__ import annotations

import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import orchestrator.registry.replicate as replicate
from orchestrator.aws import AwsContext, client
from orchestrator.registry.reconcile_pass import PassStore, read_progress
from orchestrator.registry.verify import verify_clients
from programs.replication import RECONCILE_INPUT, reconcile_definition
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import device_policy, make_pem
from tests.ops.replication_world import replicator
from tests.states_language import Execution, TaskError, run

FUNCTION_ARN = f"arn:aws:lambda:{DST}:123456789012:function:iot-dev-replicator-{DST}"
MEMORY_LIMIT = 256 * 1024 * 1024  # the function's memory_size (programs/replication.py)
# small slices, so a fleet of a dozen things takes several: 2 pages of 3 things per slice
LIMITS = {"budget_s": 120, "max_pages": 2, "page_size": 3}
FLEET = 14


class Killed(Exception):
    """The slice dies in the middle of a read (a crash; Lambda reports the function's error)."""


class Stopped(BaseException):  # noqa: N818 - not an error the code sees: the sandbox stops
    """Lambda stops the invocation from outside (its timeout or memory limit): no Python code runs
    after it, so nothing is counted and the slice's lease is not released (`invoke`)."""


class Reads:
    """Per-thing reads of one client, by thing name (botocore's provide-client-params hook)."""

    def __init__(self, iot: Any, apis: tuple[str, ...] = ("ListThingPrincipals", "DescribeThing")) -> None:
        self.by_api: dict[str, Counter[str]] = {api: Counter() for api in apis}
        self.kill_at: int | None = None  # raise Killed on this ListThingPrincipals call (1-based)
        for api in apis:
            iot.meta.events.register(f"provide-client-params.iot.{api}", self._hook(api))

    def _hook(self, api: str) -> Any:
        def seen(params: Mapping[str, Any], **_: Any) -> None:
            counter = self.by_api[api]
            if api == "ListThingPrincipals" and self.kill_at is not None \
                    and sum(counter.values()) + 1 == self.kill_at:
                self.kill_at = None
                raise Killed(f"killed reading {params.get('thingName')}")
            counter[str(params.get("thingName"))] += 1
        return seen

    def names(self, api: str) -> set[str]:
        return set(self.by_api[api])

    def clear(self) -> None:
        for counter in self.by_api.values():
            counter.clear()


@pytest.fixture
def world(ctx: AwsContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    rep = replicator(ctx, DST)
    monkeypatch.setattr(replicate, "_REPLICATOR", rep)
    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    src.create_policy(policyName="device", policyDocument=device_policy())
    for i in range(FLEET):
        thing = f"meter-{i:02d}"
        src.create_thing(thingName=thing, attributePayload={"attributes": {"serial": str(i)}})
        cert = src.register_certificate_without_ca(certificatePem=make_pem(thing, 100 + i), status="ACTIVE")
        src.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
        src.attach_policy(policyName="device", target=cert["certificateArn"])
        if i % 3 == 0:  # a third of the fleet is there already (without its certificate)
            dst.create_thing(thingName=thing, attributePayload={"attributes": {"serial": str(i)}})
    yield {"rep": rep, "src": src, "dst": dst, "ctx": ctx,
           "src_reads": Reads(rep._source(SRC).iot.client), "dst_reads": Reads(rep.region.iot.client)}


def invoke(peaks: list[int]) -> Any:
    """The Lambda integration (`arn:aws:states:::lambda:invoke`) calling the real handler: the
    Payload in, `{"Payload": result}` out; the function's error becomes the task's error (its
    type name, as Lambda reports `errorType`); Lambda's remaining time is the Task's timeout; an
    invocation past its time or memory is the sandbox's failure, as in Lambda."""

    def call(resource: str, params: Mapping[str, Any], timeout_s: float) -> Any:
        assert resource == "arn:aws:states:::lambda:invoke" and params["FunctionName"] == FUNCTION_ARN
        started = time.monotonic()

        class Context:
            @staticmethod
            def get_remaining_time_in_millis() -> int:
                return int((timeout_s - (time.monotonic() - started)) * 1000)

        tracemalloc.start()
        try:
            result = replicate.handler(params["Payload"], Context())
        except Stopped as exc:
            # the sandbox stopped: its `finally` clauses never ran, so the pass's lease stays,
            # expired by the time the state machine's retry runs (CRASH_RETRY_INTERVAL_S > LEASE_MS);
            # the retry runs in a new sandbox (another owner)
            from orchestrator.registry.reconcile_pass import LEASE_MS

            rep = replicate._REPLICATOR
            assert rep is not None
            rep.store.acquire(f"reconcile-pass/{SRC}", "a-stopped-invocation",
                              int(time.time() * 1000) - LEASE_MS - 1000, LEASE_MS)
            raise TaskError("Sandbox.Timedout", "the function ran out of its time") from exc
        except Exception as exc:
            raise TaskError(type(exc).__name__, str(exc)) from exc
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            peaks.append(peak)
        if peak > MEMORY_LIMIT:
            raise TaskError("Runtime.OutOfMemory", f"{peak} bytes")
        if time.monotonic() - started > timeout_s:
            raise TaskError("States.Timeout", f"the slice ran past {timeout_s} s")
        return {"StatusCode": 200, "Payload": result}

    return call


def execute(peaks: list[int], crash_attempts: int | None = None, **kwargs: Any) -> Execution:
    """One execution of the definition as deployed (`crash_attempts` 0: a crash fails it at once, so
    a test sees what the next execution continues; a retry continues the same way)."""
    definition = reconcile_definition(FUNCTION_ARN, SRC, slice_limits=LIMITS,
                                      **({} if crash_attempts is None else {"crash_attempts": crash_attempts}))
    return run(definition, dict(RECONCILE_INPUT), invoke(peaks), **kwargs)


def execute_poisoned(w: dict[str, Any], thing: str) -> tuple[Execution, list[str]]:
    """An execution in which every read of `thing`'s principals in the source crashes its slice
    (`Killed`: not a refused read); and one entry per such crash."""
    src_iot = w["rep"]._source(SRC).iot.client
    crashes: list[str] = []

    def poison(params: Mapping[str, Any], **_: Any) -> None:
        if params.get("thingName") == thing:
            crashes.append(thing)
            raise Killed(f"{thing}'s reads crash the slice")

    src_iot.meta.events.register("provide-client-params.iot.ListThingPrincipals", poison)
    try:
        return execute([]), crashes
    finally:
        src_iot.meta.events.unregister("provide-client-params.iot.ListThingPrincipals", poison)


def execute_plane_stopped(w: dict[str, Any]) -> tuple[Execution, list[str]]:
    """An execution in which the device-management plane's first read in the source
    (`ListRoleAliases`, `plane.read_plane`) never returns: Lambda stops the slice (`Stopped`); and
    one entry per such stop."""
    src_iot = w["rep"]._source(SRC).iot.client
    stops: list[str] = []

    def stop(**_: Any) -> None:
        stops.append("ListRoleAliases")
        raise Stopped

    src_iot.meta.events.register("provide-client-params.iot.ListRoleAliases", stop)
    try:
        return execute([]), stops
    finally:
        src_iot.meta.events.unregister("provide-client-params.iot.ListRoleAliases", stop)


def verify(w: dict[str, Any]) -> Any:
    rep = w["rep"]
    src = rep._source(SRC)
    return verify_clients(src.iot, rep.region.iot, a_data=src.data, b_data=rep.region.data)


def test_a_pass_of_several_slices_completes_and_the_secondary_verifies_equal(world: dict[str, Any]) -> None:
    w = world
    assert not verify(w).equal
    w["src_reads"].clear()
    w["dst_reads"].clear()
    peaks: list[int] = []
    ex = execute(peaks)
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    # 14 things and 14 certificates, 3 a page, 2 pages a slice, after the fleet's three listings (a
    # page each: policies, thing types, thing groups): policies and types, groups and things' page
    # 1, their pages 2-3, pages 4-5 (the listing ends), the certificates' pages 1-2, pages 3-4, page
    # 5 and the end
    assert ex.invocations == 7 and ex.output["result"]["done"] is True
    assert max(peaks) < MEMORY_LIMIT
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True and record["things"] == FLEET and record["slices"] == 7
    assert (record["errors"], record["unequal"], record["certificates"], record["pages"]) == (0, 0, FLEET, 5)
    assert record["plane"]["ok"] is True  # the device-management plane rides the last slice
    assert record["applied"] >= FLEET  # certificates, attachments, things
    # each source thing's principals were read once, by the slice that did its page (verify's own
    # reads come after, on the same clients: cleared first)
    src_reads = w["src_reads"].by_api["ListThingPrincipals"]
    assert sorted(src_reads) == [f"meter-{i:02d}" for i in range(FLEET)]
    assert set(src_reads.values()) == {1}
    assert verify(w).equal
    progress = read_progress(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    assert progress is not None and progress["phase"] == "done" and progress["read"] == FLEET


def test_a_pass_killed_in_the_middle_continues_and_reads_nothing_twice(world: dict[str, Any]) -> None:
    w = world
    src_reads, dst_reads = w["src_reads"], w["dst_reads"]
    src_reads.clear()
    dst_reads.clear()
    # the fourth slice dies on its first page's second thing: pages 1-3 (9 things) were stored
    src_reads.kill_at = 3 + 3 + 3 + 2
    peaks: list[int] = []
    first = execute(peaks, crash_attempts=0)
    assert (first.status, first.error) == ("FAILED", "Killed")
    read_before = {api: set(c) for api, c in src_reads.by_api.items()}
    stored = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC).load()
    assert stored is not None and stored.read == 9 and stored.phase == "read"
    dst_before = dst_reads.names("ListThingPrincipals") | dst_reads.names("DescribeThing")
    src_reads.clear()
    dst_reads.clear()
    again = execute(peaks)  # the next execution (tomorrow's, or started by hand)
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    pages_done = {f"meter-{i:02d}" for i in range(9)}
    # nothing the killed execution had stored is read again in the source ...
    assert not src_reads.names("ListThingPrincipals") & pages_done
    # ... only the page it died in (meter-09, meter-10 partly read) and those never reached
    assert src_reads.names("ListThingPrincipals") == {f"meter-{i:02d}" for i in range(9, FLEET)}
    assert read_before["ListThingPrincipals"] >= pages_done
    # in the destination a stored thing is read again only to read back an attachment the apply
    # step made (the sync's verification), never before it
    reread = dst_reads.names("ListThingPrincipals") & pages_done
    assert reread <= {t for t in pages_done if t in dst_before}
    assert not dst_reads.names("DescribeThing") & pages_done
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True and record["things"] == FLEET
    assert verify(w).equal


def test_a_stopped_execution_is_continued_by_the_next_one(world: dict[str, Any]) -> None:
    """StopExecution between slices (an operator, or a deployment replacing the machine): the next
    execution starts at the stored cursor."""
    w = world
    w["src_reads"].clear()
    first = execute([], stop_after=lambda ex: ex.invocations >= 3)
    assert first.status == "ABORTED"
    read_first = w["src_reads"].names("ListThingPrincipals")
    assert len(read_first) == 9  # the fleet's pages, then three pages of three things
    w["src_reads"].clear()
    again = execute([])
    # the things' pages 4-5, the certificates' pages 1-2, 3-4, page 5 and the end
    assert again.status == "SUCCEEDED" and again.invocations == 4
    assert w["src_reads"].names("ListThingPrincipals") == {f"meter-{i:02d}" for i in range(9, FLEET)}
    assert verify(w).equal


def test_a_pass_older_than_the_validity_window_starts_over(world: dict[str, Any]) -> None:
    from dataclasses import replace

    from orchestrator.registry.reconcile_pass import VALIDITY_S

    w = world
    execute([], stop_after=lambda ex: ex.invocations >= 3)
    store = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    old = store.load()
    assert old is not None and old.read == 9
    store.save(replace(old, started_at=old.started_at - VALIDITY_S - 60))
    w["src_reads"].clear()
    ex = execute([])
    assert ex.status == "SUCCEEDED"
    assert len(w["src_reads"].names("ListThingPrincipals")) == FLEET  # stale reads are not trusted
    new = store.load()
    assert new is not None and new.pass_id != old.pass_id


def test_a_second_execution_while_a_pass_runs_leaves_it_alone(world: dict[str, Any]) -> None:
    """Two executions never interleave one pass: the one that finds the lease held ends at once."""
    w = world
    rep = w["rep"]
    assert rep.store.acquire("reconcile-pass/" + SRC, "another-container", int(time.time() * 1000), 60_000)
    ex = execute([])
    assert ex.status == "SUCCEEDED" and ex.invocations == 1
    assert ex.output["result"]["done"] is True
    assert not w["src_reads"].names("ListThingPrincipals")


@pytest.mark.parametrize("bad", [{"budget_s": 9999}, {"page_size": 0}, {"max_pages": "2"}, {"other": 1}, []])
def test_a_slice_request_cannot_widen_the_bounds(world: dict[str, Any], bad: Any) -> None:
    with pytest.raises(ValueError, match="reconcile slice"):
        replicate.handler({"reconcile": {"from": SRC, "slice": bad}}, None)


# -- bounds, tightening, and kills in the later phases ------------------------------------------------
class Calls:
    """Every IoT and IoT-data request of the function's clients, counted per invocation."""

    def __init__(self, clients: list[Any]) -> None:
        self.total = 0
        self.per_slice: list[int] = []
        self.things: list[set[str]] = []  # per invocation: the things named by a per-thing read
        self._current: set[str] = set()
        for c in clients:
            c.meta.events.register("before-call", self._seen)

    def _seen(self, model: Any = None, params: Any = None, **_: Any) -> None:
        self.total += 1
        body = (params or {}).get("url_path", "") if isinstance(params, Mapping) else ""
        if model is not None and model.name in ("ListThingPrincipals", "DescribeThing"):
            self._current.add(str(body).rsplit("/things/", 1)[-1].split("/")[0])

    def around(self, inner: Any) -> Any:
        def call(resource: str, params: Mapping[str, Any], timeout_s: float) -> Any:
            before, self._current = self.total, set()
            try:
                return inner(resource, params, timeout_s)
            finally:
                self.per_slice.append(self.total - before)
                self.things.append(self._current)
        return call


def test_each_slice_holds_one_page_at_a_time_and_stays_within_its_call_bound(world: dict[str, Any]) -> None:
    """The middle slices (no fleet phase, no plane) make at most pages x page size x
    PAGE_CALLS_PER_THING requests, on a first copy (every thing, certificate and attachment
    written and read back); no slice names more things than its pages hold."""
    from orchestrator.registry.reconcile_pass import PAGE_CALLS_PER_THING, UNCHANGED_CALLS_PER_THING

    w = world
    rep = w["rep"]
    calls = Calls([rep._source(SRC).iot.client, rep.region.iot.client, rep._source(SRC).data.client,
                   rep.region.data.client])
    peaks: list[int] = []
    ex = run(reconcile_definition(FUNCTION_ARN, SRC, slice_limits=LIMITS), dict(RECONCILE_INPUT),
             calls.around(invoke(peaks)))
    assert ex.status == "SUCCEEDED" and ex.invocations == 7
    per_page = LIMITS["max_pages"] * LIMITS["page_size"]
    assert all(len(names) <= per_page for names in calls.things), calls.things
    # the fleet's pages, then pages of things (the groups' page shares a slice with the first), then
    # certificates
    assert [len(names) for names in calls.things[:5]] == [0, 3, 6, 5, 0]
    middle = calls.per_slice[2:4]
    assert max(middle) <= per_page * PAGE_CALLS_PER_THING, calls.per_slice
    assert verify(w).equal
    # the next pass finds everything equal: reads only (UNCHANGED_CALLS_PER_THING a thing)
    calls.per_slice.clear()
    calls.things.clear()
    again = run(reconcile_definition(FUNCTION_ARN, SRC, slice_limits=LIMITS), dict(RECONCILE_INPUT),
                calls.around(invoke(peaks)))
    assert again.status == "SUCCEEDED" and again.invocations == 7
    assert max(calls.per_slice[2:4]) <= per_page * UNCHANGED_CALLS_PER_THING, calls.per_slice
    assert max(peaks) < MEMORY_LIMIT


def test_a_later_pass_carries_tightening_found_only_by_reading_every_thing(world: dict[str, Any]) -> None:
    """After a clean pass: a certificate detached from its thing in the source (no version moves),
    a thing taken into a static group, a shadow, and a certificate revoked in the source while
    attached to nothing (only the certificates phase sees it). The next pass carries all of them."""
    w = world
    src, dst = w["src"], w["dst"]
    assert execute([]).status == "SUCCEEDED" and verify(w).equal
    detached = src.list_thing_principals(thingName="meter-04")["principals"][0]
    src.detach_thing_principal(thingName="meter-04", principal=detached)
    loose = src.list_thing_principals(thingName="meter-07")["principals"][0]
    src.detach_thing_principal(thingName="meter-07", principal=loose)
    src.update_certificate(certificateId=loose.rsplit("/", 1)[1], newStatus="REVOKED")
    src.create_thing_group(thingGroupName="fleet-a")
    src.add_thing_to_thing_group(thingGroupName="fleet-a", thingName="meter-05")
    data = w["rep"]._source(SRC).data.client
    data.update_thing_shadow(thingName="meter-06", payload=b'{"state": {"reported": {"fw": "2.1"}}}')
    assert not verify(w).equal
    ex = execute([])
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True and (record["errors"], record["unequal"]) == (0, 0)
    assert dst.list_thing_principals(thingName="meter-04")["principals"] == []
    dst_cert = dst.describe_certificate(certificateId=loose.rsplit("/", 1)[1])["certificateDescription"]
    assert dst_cert["status"] == "REVOKED"
    assert [g["groupName"] for g in dst.list_thing_groups_for_thing(thingName="meter-05")["thingGroups"]] == ["fleet-a"]
    got = w["rep"].region.data.client.get_thing_shadow(thingName="meter-06")["payload"].read()
    assert b'"fw": "2.1"' in got or b'"fw":"2.1"' in got
    assert verify(w).equal


def test_a_pass_killed_in_the_certificates_phase_continues_from_its_last_page(world: dict[str, Any]) -> None:
    """The certificates' pages commit like the things' pages: a kill in the middle of one, and the
    next execution lists from that page on (the pages of things are not read again)."""
    w = world
    w["src_reads"].clear()
    first = execute([], stop_after=lambda ex: ex.invocations >= 5)  # things done, certificates' pages 1-2
    assert first.status == "ABORTED"
    store = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    state = store.load()
    assert state is not None and (state.phase, state.read, state.certs_read) == ("certificates", FLEET, 6)
    listed: list[dict[str, Any]] = []
    src_iot = w["rep"]._source(SRC).iot.client

    def seen(params: Mapping[str, Any], **_: Any) -> None:
        listed.append(dict(params))
        if len(listed) == 2:
            raise Killed("killed listing certificates")

    src_iot.meta.events.register("provide-client-params.iot.ListCertificates", seen)
    w["src_reads"].clear()
    killed = execute([], crash_attempts=0)
    assert (killed.status, killed.error) == ("FAILED", "Killed")
    after_kill = store.load()
    assert after_kill is not None and after_kill.certs_read == 9  # the page before the kill committed
    src_iot.meta.events.unregister("provide-client-params.iot.ListCertificates", seen)
    again = execute([])
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    assert not w["src_reads"].names("ListThingPrincipals")  # no page of things again
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True and record["certificates"] == FLEET
    assert verify(w).equal


def test_a_head_item_of_the_old_format_starts_a_new_pass(world: dict[str, Any]) -> None:
    """A pass the previous function left (format 1: a read phase, then one whole sync) is not
    continued: its apply step no longer exists, so a new pass starts from the fleet phase."""
    import json as _json

    w = world
    ddb = client(w["ctx"], "dynamodb", DST)
    ddb.put_item(TableName=w["rep"].store.table, Item={
        "objectKey": {"S": "reconcile-pass/" + SRC},
        "state": {"S": _json.dumps({"pass_id": "old", "source": SRC, "started_at": time.time(), "phase": "apply",
                                    "read": FLEET, "parts": 3})}})
    assert PassStore(ddb, w["rep"].store.table, SRC).load() is None
    ex = execute([])
    assert ex.status == "SUCCEEDED" and ex.invocations == 7
    assert verify(w).equal


def test_a_slice_killed_after_writing_a_page_does_that_page_again_and_nothing_else(world: dict[str, Any]) -> None:
    """Killed after applying part of page 2 (before its commit): the next execution starts at page 2
    (its writes are idempotent), reads pages 1's things no more, and ends equal."""
    w = world
    dst_iot = w["rep"].region.iot.client
    attached: list[str] = []

    def attach(params: Mapping[str, Any], **_: Any) -> None:
        attached.append(str(params.get("thingName")))
        if len(attached) == 5:  # page 1 wrote meter-00..02; page 2 dies on its second attachment
            raise Killed("killed applying page 2")

    dst_iot.meta.events.register("provide-client-params.iot.AttachThingPrincipal", attach)
    first = execute([], crash_attempts=0)
    assert (first.status, first.error) == ("FAILED", "Killed")
    dst_iot.meta.events.unregister("provide-client-params.iot.AttachThingPrincipal", attach)
    stored = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC).load()
    assert stored is not None and (stored.phase, stored.read, stored.pages) == ("read", 3, 1)
    w["src_reads"].clear()
    again = execute([])
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    assert w["src_reads"].names("ListThingPrincipals") == {f"meter-{i:02d}" for i in range(3, FLEET)}
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True and (record["errors"], record["unequal"]) == (0, 0)
    assert verify(w).equal


def test_a_write_that_does_not_read_back_makes_the_pass_fail(world: dict[str, Any]) -> None:
    """AWS answers one AttachThingPrincipal with success but the attachment is not there (the
    destination changed under us, or a lost write): the page's read-back finds it, the record says
    FAILED with the difference counted, and `ok` is never claimed."""
    from types import SimpleNamespace

    w = world
    dst_iot = w["rep"].region.iot.client
    dropped: list[str] = []

    def lose(params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        body = (params or {}).get("url_path", "")
        if "meter-07" in str(body) and not dropped:
            dropped.append(str(body))
            return SimpleNamespace(status_code=200, headers={}), {}
        return None

    dst_iot.meta.events.register("before-call.iot.AttachThingPrincipal", lose)
    ex = execute([])
    dst_iot.meta.events.unregister("before-call.iot.AttachThingPrincipal", lose)
    assert ex.status == "SUCCEEDED" and dropped
    record = w["rep"].store.reconciliation()
    assert record["ok"] is False and record["unequal"] >= 1 and record["errors"] == 0
    assert not verify(w).equal  # the difference is real


def test_the_end_of_a_pass_waits_for_the_next_slice_when_the_time_is_spent(world: dict[str, Any]) -> None:
    """The last page leaves the slice without time (Lambda's remaining time under the margin): the
    plane and the record are left to the next slice, which does only that."""
    from orchestrator.registry.reconcile_pass import SliceLimits, run_slice

    w = world
    rep = w["rep"]
    asked: list[int] = []

    def remaining() -> float:  # the whole invocation until the pages are done, then almost nothing
        asked.append(1)
        return 800.0 if len(asked) <= 5 else 60.0

    # the fleet's 3 pages, 1 page of things, 1 of certificates
    first = run_slice(rep, SRC, SliceLimits(), remaining_s=remaining)
    assert first["done"] is False and first["progress"]["phase"] == "apply"
    assert rep.store.reconciliation() is None
    w["src_reads"].clear()
    second = run_slice(rep, SRC, SliceLimits())
    assert second["done"] is True and second["result"]["ok"] is True and second["result"]["slices"] == 2
    assert not w["src_reads"].names("ListThingPrincipals")  # the end reads no thing again
    assert verify(w).equal


# -- failed objects, the paged fleet phase, certificates attached to no thing -----------------------
def _refuse(thing: str, refused: list[str]) -> Any:
    """A before-call hook: the destination refuses AttachThingPrincipal for `thing` (a 400 that is
    not retried), as AWS refuses a request it will not take."""
    from types import SimpleNamespace

    def hook(params: Mapping[str, Any] | None = None, **_: Any) -> Any:
        if f"/things/{thing}/" in str((params or {}).get("url_path", "")):
            refused.append(thing)
            return (SimpleNamespace(status_code=400, headers={}),
                    {"Error": {"Code": "InvalidRequestException", "Message": "refused by the test"}})
        return None
    return hook


def test_a_failed_operation_is_rechecked_first_by_the_next_pass(world: dict[str, Any]) -> None:
    """One thing's attachment is refused: the pass ends FAILED and keeps that thing on its failed
    list (an item beside the head item); the next pass re-checks it right after the fleet phase, so
    two slices in the secondary is equal again; as every failure of the pass before was on its
    list, that pass is a re-check pass (it lists no thing) and ends ok; the one after is full."""
    w = world
    dst_iot = w["rep"].region.iot.client
    refused: list[str] = []
    hook = _refuse("meter-07", refused)
    dst_iot.meta.events.register("before-call.iot.AttachThingPrincipal", hook)
    ex = execute([])
    dst_iot.meta.events.unregister("before-call.iot.AttachThingPrincipal", hook)
    assert ex.status == "SUCCEEDED" and refused
    record = w["rep"].store.reconciliation()
    assert record["ok"] is False and record["errors"] >= 1
    assert record["retry_next_pass"]["objects"] >= 1 and record["retry_next_pass"]["dropped"] == 0
    store = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    done = store.load()
    assert done is not None and done.failed_items == 1
    things, certs = store.load_failed(done.pass_id, 0)
    assert things == ["meter-07"] and len(certs) == 1
    assert not verify(w).equal
    w["src_reads"].clear()
    # the next pass: the fleet's pages (policies, types), then groups and the failed list's item,
    # then its end: two slices, and it lists no thing (every failure before was on the list)
    second = execute([])
    assert second.status == "SUCCEEDED" and second.invocations == 2
    assert w["src_reads"].names("ListThingPrincipals") == {"meter-07"}
    state = store.load()
    assert state is not None and state.retry_of == done.pass_id and state.kind == "recheck"
    assert verify(w).equal
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True and "retry_next_pass" not in record
    assert (record["kind"], record["rechecked_pass"], record["things"]) == ("recheck", done.pass_id, FLEET)
    w["src_reads"].clear()
    full = execute([])  # and after a re-check pass, a full one: every thing, once
    assert full.status == "SUCCEEDED"
    assert len(w["src_reads"].names("ListThingPrincipals")) == FLEET
    assert w["rep"].store.reconciliation()["kind"] == "full"


def test_the_fleet_phase_is_paged_and_bounded_like_the_others(world: dict[str, Any]) -> None:
    """Eight policies, four thing types and five groups (a parent listed after its child, policies
    attached to groups): with 3 a page and 2 pages a slice, the fleet phase spans several slices,
    each listing at most two pages (a fleet at 1M things cannot outgrow one invocation), and the
    secondary verifies equal at the end."""
    w = world
    src = w["src"]
    for i in range(7):
        src.create_policy(policyName=f"pol-{i}", policyDocument=device_policy())
    for i in range(4):
        src.create_thing_type(thingTypeName=f"type-{i}", thingTypeProperties={"thingTypeDescription": f"t{i}"})
    src.create_thing_group(thingGroupName="z-parent")
    src.create_thing_group(thingGroupName="a-child", parentGroupName="z-parent")
    for g in ("b-site", "c-site", "d-site"):
        src.create_thing_group(thingGroupName=g)
    arn = src.describe_thing_group(thingGroupName="a-child")["thingGroupArn"]
    src.attach_policy(policyName="pol-3", target=arn)
    lists: list[str] = []
    src_iot = w["rep"]._source(SRC).iot.client
    for api in ("ListPolicies", "ListThingTypes", "ListThingGroups"):
        # the pass's listing pages only (its page size); the plane's own listings are not its pages
        src_iot.meta.events.register(
            f"provide-client-params.iot.{api}",
            lambda params, _api=api, **_: lists.append(_api) if 3 in (params.get("pageSize"),
                                                                       params.get("maxResults")) else None)
    per_slice: list[list[str]] = []

    def counting(inner: Any) -> Any:
        def call(resource: str, params: Mapping[str, Any], timeout_s: float) -> Any:
            before = len(lists)
            try:
                return inner(resource, params, timeout_s)
            finally:
                per_slice.append(lists[before:])
        return call

    ex = run(reconcile_definition(FUNCTION_ARN, SRC, slice_limits=LIMITS), dict(RECONCILE_INPUT),
             counting(invoke([])), stop_after=lambda ex: ex.invocations >= 1)
    assert ex.status == "ABORTED"
    store = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    first = store.load()
    # 8 policies at 3 a page: the first slice's two pages are policies, and the phase goes on
    assert first is not None and (first.phase, first.fleet_step) == ("fleet", "policies")
    assert per_slice == [["ListPolicies", "ListPolicies"]]
    ex = run(reconcile_definition(FUNCTION_ARN, SRC, slice_limits=LIMITS), dict(RECONCILE_INPUT),
             counting(invoke([])))
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert all(len(listed) <= LIMITS["max_pages"] for listed in per_slice), per_slice
    assert sum(len(listed) for listed in per_slice) == 3 + 2 + 2  # policies, types, groups: 3 a page
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True, record
    dst = w["dst"]
    assert dst.describe_thing_group(thingGroupName="a-child")["thingGroupMetadata"]["parentGroupName"] == "z-parent"
    child = dst.describe_thing_group(thingGroupName="a-child")["thingGroupArn"]
    assert [p["policyName"] for p in dst.list_attached_policies(target=child)["policies"]] == ["pol-3"]
    assert verify(w).equal


def test_an_active_certificate_attached_to_no_thing_is_created_with_its_policies(world: dict[str, Any]) -> None:
    """As `registry sync` copies it: a certificate registered ACTIVE in the primary (a device not
    yet provisioned to a thing), with the device policy attached, is created in the secondary."""
    w = world
    src, dst = w["src"], w["dst"]
    loose = src.register_certificate_without_ca(certificatePem=make_pem("spare", 999), status="ACTIVE")
    src.attach_policy(policyName="device", target=loose["certificateArn"])
    ex = execute([])
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True and record["certificates"] == FLEET + 1
    got = dst.describe_certificate(certificateId=loose["certificateId"])["certificateDescription"]
    assert got["status"] == "ACTIVE"
    assert [p["policyName"] for p in dst.list_attached_policies(target=got["certificateArn"])["policies"]] == ["device"]
    assert verify(w).equal


def test_a_first_pass_whose_certificate_lookups_would_outlast_the_window_looks_up_only_recent_ones(
        world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A first pass (no finished one to start from) looks up every ACTIVE certificate unless that
    (about one DescribeCertificate a thing, at its quota) would end outside the validity window: then
    only those created since the pass began, less the clock margin, and the record says the older
    ones are left to `registry sync --full`. Here the lookup rate is made tiny so that 14 things are
    too many; a certificate attached to no thing registered just now is still created."""
    import orchestrator.registry.reconcile_pass as reconcile_pass

    monkeypatch.setattr(reconcile_pass, "CERT_LOOKUP_RATE", 1e-6)
    w = world
    loose = w["src"].register_certificate_without_ca(certificatePem=make_pem("spare", 998), status="ACTIVE")
    ex = execute([])
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True
    assert any("are not looked up" in n and "registry sync --full" in n for n in record.get("warnings", [])), record
    store = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    done = store.load()
    assert done is not None and done.certs_since is not None and done.certs_since < done.started_at
    got = w["dst"].describe_certificate(certificateId=loose["certificateId"])["certificateDescription"]
    assert got["status"] == "ACTIVE"


# -- a page whose reads keep failing ------------------------------------------------------------------
def _deny_reads(thing: str, denied: list[str]) -> Any:
    """A before-call hook on the source: ListThingPrincipals of `thing` is refused (AccessDenied, a
    400 botocore does not retry), as AWS refuses a read the role may not make on one object."""
    from types import SimpleNamespace

    def hook(params: Mapping[str, Any] | None = None, **_: Any) -> Any:
        if f"/things/{thing}/principals" in str((params or {}).get("url_path", "")):
            denied.append(thing)
            return (SimpleNamespace(status_code=400, headers={}),
                    {"Error": {"Code": "AccessDeniedException", "Message": "denied by the test"}})
        return None
    return hook


def test_a_page_whose_reads_keep_failing_is_listed_and_the_pass_completes_failed(
        world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """One thing's reads are refused in the source for the whole first pass: its page is tried
    PAGE_ATTEMPTS times, then read one thing at a time; meter-07 alone goes on the failed list and
    the pass goes on, completing FAILED (the page is unverified) with the failed page in the record
    and in `orchestrate status`. The reads are allowed again: the next pass re-checks only meter-07
    (no listing of the fleet), ends ok, and the secondary verifies equal. (Before this, the pass
    did that page again in every slice until its window discarded it.)"""
    import orchestrator.registry.reconcile_pass as reconcile_pass
    from orchestrator.operations.replication import ReplicationHealth

    monkeypatch.setattr(reconcile_pass, "PAGE_BACKOFF_S", 0.0)  # the backoff's wait, not its count
    w = world
    src_iot = w["rep"]._source(SRC).iot.client
    denied: list[str] = []
    hook = _deny_reads("meter-07", denied)
    src_iot.meta.events.register("before-call.iot.ListThingPrincipals", hook)
    w["src_reads"].clear()
    first = execute([])
    src_iot.meta.events.unregister("before-call.iot.ListThingPrincipals", hook)
    assert first.status == "SUCCEEDED", (first.error, first.cause)  # the pass completed
    # three attempts of the page (meter-06..08), then meter-07 alone once
    assert len(denied) == reconcile_pass.PAGE_ATTEMPTS + 1
    record = w["rep"].store.reconciliation()
    assert record["ok"] is False and record["pages_failed"] == 1
    page = record["failed_pages"][0]
    assert (page["phase"], page["error"], page["objects"]) == ("read", "AccessDeniedException", ["meter-07"])
    assert record["retry_next_pass"] == {"objects": 1, "dropped": 0, "next": "recheck"}
    assert record["things"] == FLEET  # the pass went on past the page to the end of the listing
    store = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    done = store.load()
    assert done is not None and store.load_failed(done.pass_id, 0) == (["meter-07"], [])
    line = ReplicationHealth(DST, 0, 0, record).line()
    assert "1 page(s) failed" in line and "AccessDeniedException" in line and "re-checks only the 1" in line
    assert not verify(w).equal  # meter-07 was never copied
    w["src_reads"].clear()
    w["dst_reads"].clear()
    listed: list[str] = []
    src_iot.meta.events.register("provide-client-params.iot.ListThings", lambda **_: listed.append("x"))
    again = execute([])
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    # only the failed page's object is read again: one ListThingPrincipals, no listing
    assert dict(w["src_reads"].by_api["ListThingPrincipals"]) == {"meter-07": 1}
    assert listed == []
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True and record["kind"] == "recheck" and "pages_failed" not in record
    assert verify(w).equal


def test_a_page_that_crashes_its_slice_is_given_up_after_three_attempts(world: dict[str, Any]) -> None:
    """meter-07's reads crash the slice every time (an exception not in READ_ERRORS: a poison
    page). Each crash is counted in the head item before the invocation fails; the state machine
    tries the slice again (after the lease expired); after PAGE_ATTEMPTS crashes the fourth slice
    gives the page up: its things one at a time, meter-07 alone on the failed list, and the pass
    goes on to its end, FAILED with the page in `failed_pages`. (Before, every retry did the page
    again and crashed, and the execution failed: the pass never ended.)"""
    from orchestrator.registry.reconcile_pass import PAGE_ATTEMPTS
    from programs.replication import CRASH_RETRY_INTERVAL_S

    w = world
    ex, crashes = execute_poisoned(w, "meter-07")
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    # three attempts of the page (each crashed its slice), then meter-07 alone in the give-up
    assert len(crashes) == PAGE_ATTEMPTS + 1
    # slices: policies+types, groups+page 1, page 2 then the crash on page 3, two more crashes on
    # it, the give-up of page 3 + page 4, page 5 + certificates 1, certificates 2-3, 4-5 and the end;
    # the state machine waited out the lease before each crash's retry
    assert ex.invocations == 9 and ex.slept_s == PAGE_ATTEMPTS * CRASH_RETRY_INTERVAL_S
    record = w["rep"].store.reconciliation()
    assert record["ok"] is False and record["pages_failed"] == 1 and record["things"] == FLEET
    page = record["failed_pages"][0]
    assert (page["phase"], page["error"], page["attempts"], page["objects"]) == \
        ("read", "Killed", PAGE_ATTEMPTS, ["meter-07"])
    assert record["retry_next_pass"] == {"objects": 1, "dropped": 0, "next": "recheck"}
    store = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    done = store.load()
    assert done is not None and store.load_failed(done.pass_id, 0) == (["meter-07"], [])


def test_a_slice_stopped_from_outside_is_counted_by_the_lease_it_left(world: dict[str, Any]) -> None:
    """Lambda's timeout or memory limit stops a slice where no code runs: its lease is left behind,
    expired. The next slice finds it so and counts an attempt of the page the head item points
    at: here the page (meter-03..05, meter-04 a poison thing) had crashed twice before, so that is
    its third, and the page is given up at once instead of being tried a fourth time: its things
    one at a time, meter-04 alone on the failed list."""
    from dataclasses import replace

    from orchestrator.registry.reconcile_pass import DIED, LEASE_MS, PAGE_ATTEMPTS

    w = world
    execute([], stop_after=lambda ex: ex.invocations >= 2)  # the fleet's three pages, the things' page 1
    ddb = client(w["ctx"], "dynamodb", DST)
    store = PassStore(ddb, w["rep"].store.table, SRC)
    state = store.load()
    assert state is not None and (state.phase, state.read) == ("read", 3)
    store.save(replace(state, page_attempts=PAGE_ATTEMPTS - 1, page_error="Killed"))
    # what a slice stopped from outside leaves: its lease, taken more than LEASE_MS ago
    dead = int(time.time() * 1000) - LEASE_MS - 1000
    w["rep"].store.acquire(f"reconcile-pass/{SRC}", "a-dead-invocation", dead, LEASE_MS)
    ex, crashes = execute_poisoned(w, "meter-04")
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert crashes == ["meter-04"] and ex.slept_s == 0  # read once, alone; no slice crashed
    record = w["rep"].store.reconciliation()
    assert record["ok"] is False and record["pages_failed"] == 1 and record["things"] == FLEET
    page = record["failed_pages"][0]
    assert (page["phase"], page["error"], page["attempts"], page["marker"], page["objects"]) == \
        ("read", DIED, PAGE_ATTEMPTS, state.cursor, ["meter-04"])


def test_a_pass_costs_one_head_item_write_a_page_and_one_lease_read_a_slice(world: dict[str, Any]) -> None:
    """The cost model of docs/performance.md: the head item is written once when the pass starts,
    once per page (fleet, things, certificates) and once at the end; counting a crash costs
    nothing while no slice crashes but one lease GetItem a slice."""
    w = world
    ddb = w["rep"].store.client
    head = f"reconcile-pass/{SRC}"
    writes: Counter[str] = Counter()
    lease_reads: list[str] = []

    def put(params: Mapping[str, Any], **_: Any) -> None:
        key = params["Item"]["objectKey"]["S"]
        if key.startswith(head):
            writes["head" if key == head else "failed"] += 1

    def get(params: Mapping[str, Any], **_: Any) -> None:
        if params["Key"]["objectKey"]["S"] == f"lease/{head}":
            lease_reads.append("x")

    ddb.meta.events.register("provide-client-params.dynamodb.PutItem", put)
    ddb.meta.events.register("provide-client-params.dynamodb.GetItem", get)
    ex = execute([])
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    record = w["rep"].store.reconciliation()
    assert record["ok"] is True
    fleet_pages = 3  # one page each: policies, thing types, thing groups
    pages = fleet_pages + record["pages"] + 5  # 14 certificates, 3 a page
    assert writes == Counter(head=1 + pages + 1)
    assert len(lease_reads) == ex.invocations == record["slices"]


def test_a_plane_that_stops_its_slice_is_given_up_after_three_attempts(world: dict[str, Any]) -> None:
    """The end of the pass (apply) never gets through the plane: its first read outlasts Lambda's
    time every time, and the sandbox is stopped with the lease left. Each retry of the slice finds
    the lease so and counts an attempt of the end (SliceDied); the slice after the third does not
    run the plane again: the pass ends FAILED, the plane given up in the record and the end in
    `failed_pages`, which `orchestrate status` shows. (Before, every retry ran the plane again and
    was stopped, and the execution failed: the pass never ended, and nothing said why.)"""
    from orchestrator.operations.replication import ReplicationHealth
    from orchestrator.registry.reconcile_pass import DIED, PAGE_ATTEMPTS
    from programs.replication import CRASH_RETRY_INTERVAL_S

    w = world
    ex, stops = execute_plane_stopped(w)
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert len(stops) == PAGE_ATTEMPTS and ex.slept_s == PAGE_ATTEMPTS * CRASH_RETRY_INTERVAL_S
    record = w["rep"].store.reconciliation()
    assert record["ok"] is False and record["things"] == FLEET and record["unequal"] == 0
    assert record["pages_failed"] == 1 and record["plane"]["error"] == DIED and "given_up" in record["plane"]
    page = record["failed_pages"][0]
    assert (page["phase"], page["error"], page["attempts"]) == ("apply", DIED, PAGE_ATTEMPTS)
    store = PassStore(client(w["ctx"], "dynamodb", DST), w["rep"].store.table, SRC)
    done = store.load()
    assert done is not None and done.phase == "done" and record["slices"] == ex.invocations
    line = ReplicationHealth(DST, 0, 0, record).line()
    assert "last reconciliation FAILED" in line and "[apply: SliceDied, unread the device-management plane" in line
