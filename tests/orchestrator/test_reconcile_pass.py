"""The reconciliation pass's pure parts: what the head item holds, how far a slice request may
go, and the progress `orchestrate status` shows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.registry.reconcile_pass import (
    SLICE_BUDGET_S,
    PassState,
    PassStore,
    SliceLimits,
    _notes,
)


class FakeTable:
    """PutItem/GetItem of one DynamoDB table, refusing an item over 400 KB as DynamoDB does
    (developer guide, "Service, account, and table quotas": item size, names and values included)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.puts: list[int] = []

    def put_item(self, TableName: str, Item: dict[str, Any]) -> None:  # noqa: N803 - boto3's names
        size = sum(len(k) + len(json.dumps(v)) for k, v in Item.items())
        if size > 400 * 1024:
            raise ValueError(f"ValidationException: Item size has exceeded the maximum allowed size ({size})")
        self.puts.append(size)
        self.items[Item["objectKey"]["S"]] = Item

    def get_item(self, TableName: str, Key: dict[str, Any], ConsistentRead: bool) -> dict[str, Any]:  # noqa: N803
        item = self.items.get(Key["objectKey"]["S"])
        return {"Item": item} if item else {}


def test_the_head_item_round_trips_and_stays_far_under_dynamodbs_item_limit() -> None:
    """The only item a pass writes (once per page): at its largest, 100 dynamic groups (AWS's
    per-account quota) of 128-character names and ten 300-character notes, it is a few tens of KB."""
    table = FakeTable()
    store = PassStore(table, "applied", "eu-west-1")
    state = PassState("p1", "eu-west-1", 0.0, phase="read", cursor="x" * 1024, read=750_000,
                      dynamic=tuple(f"{i:03d}" + "g" * 125 for i in range(100)),
                      notes=tuple("n" * 300 for _ in range(10)))
    store.save(state)
    assert store.load() == state
    assert max(table.puts) < 40 * 1024


def test_a_head_item_of_another_format_or_unreadable_is_not_continued() -> None:
    table = FakeTable()
    store = PassStore(table, "applied", "eu-west-1")
    table.items[store.head_key] = {"objectKey": {"S": store.head_key},
                                   "state": {"S": json.dumps({"pass_id": "p", "source": "eu-west-1",
                                                              "started_at": 0.0, "phase": "apply", "parts": 4})}}
    assert store.load() is None  # format 1 (a read phase, then one whole sync): a new pass starts
    table.items[store.head_key]["state"] = {"S": "{not json"}
    assert store.load() is None


def test_the_notes_kept_are_the_first_few_and_short() -> None:
    kept = _notes((), [f"w{i}" for i in range(30)] + ["x" * 1000])
    assert kept == tuple(f"w{i}" for i in range(10))
    assert _notes((), ["x" * 1000])[0] == "x" * 300


@pytest.mark.parametrize("value, expected", [
    (True, SliceLimits()),
    ({}, SliceLimits()),
    ({"budget_s": 5, "max_pages": 2, "page_size": 3}, SliceLimits(5.0, 2, 3)),
])
def test_a_slice_request_may_tighten_the_bounds(value: Any, expected: SliceLimits) -> None:
    assert SliceLimits.of(value) == expected


@pytest.mark.parametrize("value", [{"budget_s": SLICE_BUDGET_S + 1}, {"page_size": 251}, {"max_pages": 0},
                                   {"budget_s": True}, {"x": 1}, "600"])
def test_a_slice_request_cannot_widen_them(value: Any) -> None:
    with pytest.raises(ValueError, match="reconcile slice"):
        SliceLimits.of(value)


def test_progress_eta_is_what_is_left_at_the_rate_so_far() -> None:
    state = PassState("p", "eu-west-1", 1000.0, read=7200, total_estimate=36000, slices=2, updated_at=1000.0 + 720)
    p = state.progress(now=2000.0)
    assert (p["rate_per_s"], p["eta_s"]) == (10.0, 2880.0)
    assert PassState("p", "eu-west-1", 1000.0, read=10, updated_at=1010.0).progress(2000.0)["eta_s"] is None
    assert PassState("p", "eu-west-1", 1000.0, phase="apply", read=10, updated_at=1010.0).progress(2000.0)["eta_s"] == 0


# -- the failed-objects list and the certificates' window ------------------------------------------
def _op(kind: str, name: str, **params: Any) -> Any:
    from orchestrator.registry.sync.model import Action, Kind, SyncOp

    return SyncOp(Kind(kind), Action.CREATE, name, params)


def test_a_pages_failed_operations_name_its_things_and_certificates() -> None:
    from orchestrator.registry.reconcile_pass import _objects

    things, certs = _objects([
        _op("thing", "meter-1"), _op("thing_principal", "meter-2/c2", thing="meter-2", certificate_id="c2"),
        _op("shadow", "meter-3/classic", thing="meter-3", shadow=""), _op("certificate", "c4"),
        _op("policy_attachment", "device/certificate:c5", policy="device", target_kind="certificate", target="c5"),
        _op("policy_attachment", "device/thing_group:g", policy="device", target_kind="thing_group", target="g"),
        _op("thing_group", "g"), _op("policy", "device")])
    assert (things, certs) == ({"meter-1", "meter-2", "meter-3"}, {"c2", "c4", "c5"})


def test_the_failed_list_is_written_page_by_page_and_bounded() -> None:
    """One item per page with failures, at most FAILED_MAX_ITEMS; past them the objects are only
    counted (the next pass's listing reads them anyway). Each item stays far under 400 KB."""
    from types import SimpleNamespace

    from orchestrator.registry.reconcile_pass import FAILED_MAX_ITEMS, _Work

    table = FakeTable()
    store = PassStore(table, "applied", "eu-west-1")
    state = PassState("p1", "eu-west-1", 0.0, phase="read")
    work = SimpleNamespace(store=store)
    page = [_op("thing_principal", f"{'t' * 120}{i:03d}/{'c' * 64}", thing=f"{'t' * 120}{i:03d}",
                certificate_id=f"{i:03d}{'c' * 61}") for i in range(250)]
    assert _Work._failed(work, state, []) == {}  # type: ignore[arg-type]
    for _ in range(FAILED_MAX_ITEMS):
        state = PassState(**{**state.__dict__, **_Work._failed(work, state, page)})  # type: ignore[arg-type]
    assert (state.failed_items, state.failed, state.failed_dropped) == (FAILED_MAX_ITEMS, FAILED_MAX_ITEMS * 500, 0)
    state = PassState(**{**state.__dict__, **_Work._failed(work, state, page[:3])})  # type: ignore[arg-type]
    assert (state.failed_items, state.failed_dropped) == (FAILED_MAX_ITEMS, 6)
    assert len(table.items) == FAILED_MAX_ITEMS and max(table.puts) < 100 * 1024
    things, certs = store.load_failed("p1", FAILED_MAX_ITEMS - 1)
    assert len(things) == 250 and len(certs) == 250
    assert store.load_failed("p1", FAILED_MAX_ITEMS) == ([], [])  # never written: nothing to re-check


def test_active_certificates_are_looked_up_since_the_last_finished_pass_began() -> None:
    """The first pass looks up every ACTIVE certificate; the next ones those created since the last
    finished pass began (less an hour); an unfinished pass's window carries over, but a pass that
    ran out of its window while looking up all of them is not repeated (and says so)."""
    from orchestrator.registry.reconcile_pass import CERT_MARGIN_S, DONE, _certs_since

    assert _certs_since(None) == (None, None)
    done = PassState("p", "eu-west-1", 5000.0, phase=DONE, certs_since=None)
    assert _certs_since(done) == (5000.0 - CERT_MARGIN_S, None)
    unfinished = PassState("p", "eu-west-1", 5000.0, phase="read", certs_since=1234.0)
    assert _certs_since(unfinished) == (1234.0, None)
    since, note = _certs_since(PassState("p", "eu-west-1", 5000.0, phase="certificates", certs_since=None))
    assert since == 5000.0 - CERT_MARGIN_S and note is not None and "registry sync --full" in note


def test_every_listing_pages_from_its_cursor_and_starts_over_when_it_is_refused() -> None:
    """One helper pages every listing of the pass (things, certificates, and the fleet's policies,
    types and groups) with that API's own parameter names; a cursor the service refuses restarts
    that listing (counted), whichever listing it is."""
    from dataclasses import replace
    from types import SimpleNamespace

    from botocore.exceptions import ClientError

    from orchestrator.registry.reconcile_pass import _Work

    asked: list[tuple[str, dict[str, Any]]] = []

    def call(api: str, **kwargs: Any) -> dict[str, Any]:
        asked.append((api, kwargs))
        if kwargs.get("marker") == "stale":
            raise ClientError({"Error": {"Code": "InvalidRequestException", "Message": "bad marker"}}, api)
        return {"policies": [{"policyName": "p"}], "nextMarker": "m2"}

    work = SimpleNamespace(src=SimpleNamespace(call=call), limits=SliceLimits(page_size=7), pages=0,
                           _commit=lambda st, **changes: replace(st, **changes))
    state = PassState("p", "eu-west-1", 0.0, fleet_cursor="m1")
    got, items, token = _Work._listing(work, state, "list_policies", "m1", "fleet_cursor")  # type: ignore[arg-type]
    assert (items, token) == ([{"policyName": "p"}], "m2")
    assert asked[-1] == ("list_policies", {"pageSize": 7, "marker": "m1"})
    got, items, token = _Work._listing(work, state, "list_policies", "stale", "fleet_cursor")  # type: ignore[arg-type]
    assert items is None and (got.fleet_cursor, got.restarts) == (None, 1)
    _Work._listing(work, state, "list_thing_groups", None, "fleet_cursor")  # type: ignore[arg-type]
    assert asked[-1] == ("list_thing_groups", {"maxResults": 7})


# -- a page whose reads keep failing ------------------------------------------------------------------
def _denied(api: str = "ListThings") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied by the test"}}, api)


def _work(table: FakeTable, call: Any, things: Any = None, budget_s: float = SLICE_BUDGET_S) -> Any:
    """A `_Work` on a fake table and a fake source (`call`), without a replicator: the page's
    own reads (`_things`) are `things` when given."""
    from types import SimpleNamespace

    from orchestrator.registry.reconcile_pass import _Work

    work: Any = _Work.__new__(_Work)
    work.store = PassStore(table, "applied", "eu-west-1")
    work.limits = SliceLimits(budget_s=budget_s, page_size=3)
    work.t0, work.clock, work.remaining_s, work.pages = 0.0, lambda: 1.0, None, 0
    work.src = SimpleNamespace(call=call)
    work.slept = []
    work.sleep = work.slept.append
    if things is not None:
        work._things = things
    return work


def test_a_failing_page_is_tried_again_with_backoff_and_its_attempts_are_in_the_head_item() -> None:
    from orchestrator.registry.reconcile_pass import PAGE_ATTEMPTS, PAGE_BACKOFF_S

    table = FakeTable()
    work = _work(table, lambda api, **kw: {})
    state = PassState("p1", "eu-west-1", 0.0, phase="read", cursor="m3")
    for attempt in range(1, PAGE_ATTEMPTS):
        state = work.page_failed(state, _denied())
        assert (state.phase, state.cursor, state.page_attempts, state.page_error) == \
            ("read", "m3", attempt, "AccessDeniedException")
        assert work.store.load() == state  # a slice killed now keeps the count
    assert work.slept == [PAGE_BACKOFF_S, 2 * PAGE_BACKOFF_S]
    assert state.pages_failed == 0  # not given up yet


def test_no_time_to_wait_leaves_the_next_attempt_to_the_next_slice() -> None:
    table = FakeTable()
    work = _work(table, lambda api, **kw: {}, budget_s=3.0)
    state = work.page_failed(PassState("p1", "eu-west-1", 0.0, phase="read"), _denied())
    assert state.page_attempts == 1 and work.slept == [] and not work.more()


def test_a_page_given_up_is_isolated_one_thing_at_a_time_and_only_the_poison_one_is_listed() -> None:
    """Third failure: the listing is read again, each thing checked alone; the one whose reads
    still fail goes on the failed list, the others are done, and the pass moves past the page."""
    from orchestrator.registry.reconcile_pass import PAGE_ATTEMPTS

    table = FakeTable()
    checked: list[str] = []

    def things(page: list[Any], dynamic: Any) -> tuple[int, int, int, tuple[str, ...], list[Any]]:
        checked.append(page[0].name)
        if page[0].name == "meter-07":
            raise _denied("ListThingPrincipals")
        return 1, 0, 0, (), []

    def call(api: str, **kwargs: Any) -> dict[str, Any]:
        assert (api, kwargs) == ("list_things", {"maxResults": 3, "nextToken": "m2"})
        return {"things": [{"thingName": n} for n in ("meter-06", "meter-07", "meter-08")], "nextToken": "m3"}

    work = _work(table, call, things)
    state = PassState("p1", "eu-west-1", 0.0, phase="read", cursor="m2", read=6, pages=2,
                      page_attempts=PAGE_ATTEMPTS - 1)
    state = work.page_failed(state, _denied())
    assert checked == ["meter-06", "meter-07", "meter-08"]
    assert (state.phase, state.cursor, state.read, state.pages, state.page_attempts) == ("read", "m3", 9, 3, 0)
    assert (state.applied, state.pages_failed, state.failed_items, state.failed, state.unlisted) == (2, 1, 1, 1, 0)
    page = state.failed_pages[0]
    assert (page["phase"], page["marker"], page["error"], page["objects"]) == \
        ("read", "m2", "AccessDeniedException", ["meter-07"])
    assert work.store.load_failed("p1", 0) == (["meter-07"], [])
    assert work.store.load() == state


def test_a_listing_that_keeps_failing_stops_there_and_the_pass_moves_on() -> None:
    """ListThings itself refused: its next page cannot be known, so the listing stops at that
    marker (kept in the failed page), the certificates phase follows, and the next pass is full."""
    from orchestrator.registry.reconcile_pass import FULL, PAGE_ATTEMPTS, _next_kind

    def call(api: str, **kwargs: Any) -> dict[str, Any]:
        raise _denied()

    work = _work(FakeTable(), call)
    state = PassState("p1", "eu-west-1", 0.0, phase="read", cursor="m2", page_attempts=PAGE_ATTEMPTS - 1)
    state = work.page_failed(state, _denied())
    assert (state.phase, state.cursor, state.unlisted, state.pages_failed) == ("certificates", None, 1, 1)
    assert state.failed_pages[0]["marker"] == "m2" and state.failed_pages[0]["unread"] == "the rest of the listing"
    from dataclasses import replace
    assert _next_kind(replace(state, phase="done", failed_items=1, failed=1), 10.0) == FULL


def test_the_failed_pages_kept_are_bounded_and_all_are_counted() -> None:
    from orchestrator.registry.reconcile_pass import FAILED_PAGES_KEPT, _Work

    state = PassState("p1", "eu-west-1", 0.0)
    for i in range(FAILED_PAGES_KEPT + 5):
        state = PassState(**{**state.__dict__, **_Work._failed_page(state, {"phase": "read", "marker": str(i)})})
    assert state.pages_failed == FAILED_PAGES_KEPT + 5 and len(state.failed_pages) == FAILED_PAGES_KEPT


@pytest.mark.parametrize("changes, now, expected", [
    ({}, 10.0, "full"),  # nothing failed
    ({"failed_items": 2, "failed": 3}, 10.0, "recheck"),  # all the failures by name: only those
    ({"failed_items": 2, "failed": 3, "failed_dropped": 1}, 10.0, "full"),  # the list overflowed
    ({"failed_items": 2, "failed": 3, "unlisted": 1}, 10.0, "full"),  # a listing stopped short
    ({"failed_items": 2, "failed": 3}, 40 * 3600.0, "full"),  # past the window: its reads are stale
    ({"failed_items": 2, "failed": 3, "kind": "recheck"}, 10.0, "full"),  # never two re-checks in a row
    ({"failed_items": 2, "failed": 3, "phase": "read"}, 10.0, "full"),  # not finished
])
def test_which_pass_follows(changes: dict[str, Any], now: float, expected: str) -> None:
    from orchestrator.registry.reconcile_pass import _next_kind

    prev = PassState(**{**PassState("p", "eu-west-1", 0.0, phase="done").__dict__, **changes})
    assert _next_kind(prev, now) == expected


def test_a_recheck_pass_leaves_the_certificate_window_where_the_full_pass_put_it() -> None:
    from orchestrator.registry.reconcile_pass import _certs_since

    recheck = PassState("r", "eu-west-1", 9000.0, phase="done", kind="recheck", certs_since=1234.0)
    assert _certs_since(recheck) == (1234.0, None)


def test_status_says_which_pages_failed_and_what_the_next_pass_does() -> None:
    from orchestrator.operations.replication import failed_pages

    record = {"pages_failed": 1, "failed_pages": [{"phase": "read", "marker": "m2", "error": "AccessDeniedException",
                                                   "unread": "1 things, 0 certificates (on the failed list)"}],
              "retry_next_pass": {"objects": 1, "dropped": 0, "next": "recheck"}}
    line = failed_pages(record)
    assert "1 page(s) failed" in line and "read at m2: AccessDeniedException" in line
    assert "re-checks only the 1 failed objects" in line
    over = failed_pages({"retry_next_pass": {"objects": 10_000, "dropped": 7, "next": "full"}})
    assert "7 failed objects past the failed list's bound" in over and "lists the whole fleet" in over
    assert failed_pages({}) == ""


def test_status_of_a_recheck_pass_counts_failed_list_items_not_things() -> None:
    from orchestrator.operations.replication import ReplicationHealth

    state = PassState("r", "eu-west-1", 1000.0, phase="retry", kind="recheck", retry_items=3, retry_next=1,
                      total_estimate=1_000_000, page_attempts=2, page_error="ThrottlingException",
                      updated_at=1010.0)
    line = ReplicationHealth("eu-central-1", 0, 0, None, reconciling={**state.progress(1010.0), "stale": False}).line()
    assert "re-checking the last pass's failed objects" in line and "1/3 failed-list items re-checked" in line
    assert "page failing (ThrottlingException, attempt 2)" in line


# -- a page that crashes the slice ------------------------------------------------------------------
def _three_things(api: str, **kwargs: Any) -> dict[str, Any]:
    assert (api, kwargs) == ("list_things", {"maxResults": 3, "nextToken": "m2"})
    return {"things": [{"thingName": n} for n in ("meter-06", "meter-07", "meter-08")], "nextToken": "m3"}


def test_a_crash_is_an_attempt_of_the_page_written_before_the_slice_fails() -> None:
    """A crash is counted in the head item at once, so the slice after the last attempt gives the
    page up instead of doing it again; a head item that cannot be written does not hide the crash."""
    from orchestrator.registry.reconcile_pass import DIED

    table = FakeTable()
    work = _work(table, _three_things)
    state = PassState("p1", "eu-west-1", 0.0, phase="read", cursor="m2")
    state = work.crashed(state, "KeyError")
    assert (state.page_attempts, state.page_error) == (1, "KeyError") and work.store.load() == state
    state = work.crashed(state, DIED)
    assert (state.page_attempts, state.page_error) == (2, DIED) and work.store.load() == state

    def refused(**_: Any) -> None:
        raise RuntimeError("the table is down too")

    table.put_item = refused  # type: ignore[assignment, method-assign]
    assert work.crashed(state, "KeyError").page_attempts == 3  # nothing raised but the caller's crash


def test_an_object_that_crashes_its_check_fails_alone_in_a_give_up() -> None:
    """Given up after crashes, each thing is checked alone: one whose check raises anything, not only a
    refused read, goes on the failed list and the others are done."""
    from orchestrator.registry.reconcile_pass import PAGE_ATTEMPTS

    def things(page: list[Any], dynamic: Any) -> tuple[int, int, int, tuple[str, ...], list[Any]]:
        if page[0].name == "meter-07":
            raise KeyError("certificateDescription")  # a crash, not in READ_ERRORS
        return 1, 0, 0, (), []

    work = _work(FakeTable(), _three_things, things)
    state = PassState("p1", "eu-west-1", 0.0, phase="read", cursor="m2", read=6, pages=2,
                      page_attempts=PAGE_ATTEMPTS, page_error="KeyError")
    state = work._give_up(state)
    assert (state.phase, state.cursor, state.read, state.page_attempts) == ("read", "m3", 9, 0)
    assert (state.applied, state.pages_failed, state.failed, state.unlisted) == (2, 1, 1, 0)
    assert state.failed_pages[0]["objects"] == ["meter-07"] and state.failed_pages[0]["error"] == "KeyError"
    assert work.store.load_failed("p1", 0) == (["meter-07"], [])


def test_a_give_up_that_crashed_reads_less_the_next_time() -> None:
    """A give-up crashed once: the page is listed again, its things go on the failed list unread.
    Crashed twice: the listing stops there, not even listed again, and the next pass is a full one."""
    from orchestrator.registry.reconcile_pass import PAGE_ATTEMPTS

    checked: list[str] = []

    def things(page: list[Any], dynamic: Any) -> tuple[int, int, int, tuple[str, ...], list[Any]]:
        checked.append(page[0].name)
        return 1, 0, 0, (), []

    work = _work(FakeTable(), _three_things, things)
    state = PassState("p1", "eu-west-1", 0.0, phase="read", cursor="m2", read=6, pages=2,
                      page_attempts=PAGE_ATTEMPTS + 1, page_error="SliceDied")
    state = work._give_up(state)
    assert checked == [] and (state.cursor, state.read, state.failed, state.pages_failed) == ("m3", 9, 3, 1)
    assert state.failed_pages[0]["attempts"] == PAGE_ATTEMPTS + 1
    assert work.store.load_failed("p1", 0) == (["meter-06", "meter-07", "meter-08"], [])

    def no_listing(api: str, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("listed again")

    work = _work(FakeTable(), no_listing, things)
    state = PassState("p1", "eu-west-1", 0.0, phase="read", cursor="m2", read=6,
                      page_attempts=PAGE_ATTEMPTS + 2, page_error="SliceDied")
    state = work._give_up(state)
    assert (state.phase, state.cursor, state.unlisted, state.pages_failed, state.page_attempts) == \
        ("certificates", None, 1, 1, 0)
    assert state.failed_pages[0]["marker"] == "m2" and state.failed_pages[0]["unread"] == "the rest of the listing"


# -- a crash at the end (apply: the plane, the record) ----------------------------------------------
class FakeStore:
    """The replicator's applied store on a FakeTable: the pass's lease (taken, renewed, released as
    `DynamoAppliedStore` does) and the reconciliation record (JSON, as the real one writes it)."""

    def __init__(self, table: FakeTable, clock: Any) -> None:
        self.client, self.table, self.clock = table, "applied", clock
        self.leases: dict[str, tuple[str, int]] = {}
        self.record: dict[str, Any] | None = None

    def acquire(self, key: str, owner: str, now_ms: int, lease_ms: int) -> bool:
        held = self.leases.get(key)
        if held is not None and held[0] != owner and held[1] >= now_ms:
            return False
        self.leases[key] = (owner, now_ms + lease_ms)
        return True

    def lease(self, key: str) -> tuple[str, int] | None:
        return self.leases.get(key)

    def release(self, key: str, owner: str) -> None:
        if self.leases.get(key, ("",))[0] == owner:
            del self.leases[key]

    def put_reconciliation(self, result: Any) -> None:
        self.record = json.loads(json.dumps(dict(result), sort_keys=True))  # what the table would refuse

    def reconciliation(self) -> dict[str, Any] | None:
        return self.record


class Stopped(BaseException):  # noqa: N818 - Lambda stopping the sandbox: no Python code runs after it
    """The slice stopped from outside in the plane (Lambda's timeout or memory limit)."""


def _at_the_end(monkeypatch: pytest.MonkeyPatch, plane: Any) -> tuple[Any, FakeTable, list[str]]:
    """A replicator whose pass from eu-west-1 is at its end (APPLY, every page done, ok so far) and
    whose plane is `plane` (called with nothing; each call noted)."""
    from types import SimpleNamespace

    import orchestrator.registry.reconcile_pass as rp
    import orchestrator.registry.replicate as replicate

    table = FakeTable()
    clock = iter(range(10_000, 10**9))  # a second a reading
    calls: list[str] = []

    def reconcile_plane(rep: Any, source: str) -> dict[str, Any]:
        calls.append(source)
        return plane()

    monkeypatch.setattr(replicate, "reconcile_plane", reconcile_plane)
    monkeypatch.setattr(rp, "callers", lambda rep, source: (SimpleNamespace(), SimpleNamespace()))
    side = SimpleNamespace(data=None)
    rep = SimpleNamespace(owner="me", store=FakeStore(table, None), _source=lambda r: side, region=side)
    rep.clock = lambda: float(next(clock))
    PassStore(table, "applied", "eu-west-1").save(
        PassState("p1", "eu-west-1", 9_000.0, phase="apply", read=12, pages=4, updated_at=9_000.0))
    return rep, table, calls


def _slice(rep: Any) -> dict[str, Any]:
    from orchestrator.registry.reconcile_pass import run_slice

    return run_slice(rep, "eu-west-1", clock=rep.clock)


def _killed(rep: Any) -> None:
    """What a slice stopped from outside leaves: its lease, not released (here: the dead invocation's,
    expired: the state machine's retry waits it out, programs/replication.py CRASH_RETRY_INTERVAL_S)."""
    rep.store.leases["reconcile-pass/eu-west-1"] = ("a-dead-invocation", 0)


def test_a_plane_that_kills_its_slice_is_counted_and_given_up_after_three_attempts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The plane runs out of Lambda's time every time. Each slice finds the lease the one before
    left and counts an attempt of the end (SliceDied); the slice that finds the third does not run
    the plane again: the pass ends FAILED, the plane given up in the record and the end counted in
    its failed pages. (Before, the end was not counted: every slice ran the plane again, forever.)"""
    from orchestrator.registry.reconcile_pass import DIED, PAGE_ATTEMPTS

    def plane() -> dict[str, Any]:
        raise Stopped

    rep, table, calls = _at_the_end(monkeypatch, plane)
    store = PassStore(table, "applied", "eu-west-1")
    for attempt in range(PAGE_ATTEMPTS):
        with pytest.raises(Stopped):
            _slice(rep)
        _killed(rep)
        state = store.load()
        assert state is not None and state.phase == "apply" and len(calls) == attempt + 1
        assert (state.page_attempts, state.page_error) == (attempt, DIED if attempt else None)
    out = _slice(rep)
    assert out["done"] is True and len(calls) == PAGE_ATTEMPTS  # not run a fourth time
    record = rep.store.record
    assert record["ok"] is False and record["pages_failed"] == 1 and record["things"] == 12
    assert record["plane"]["ok"] is False and record["plane"]["error"] == DIED and "given_up" in record["plane"]
    page = record["failed_pages"][0]
    assert (page["phase"], page["error"], page["attempts"]) == ("apply", DIED, PAGE_ATTEMPTS)
    assert "device-management plane" in page["unread"]
    done = store.load()
    assert done is not None and done.phase == "done" and done.pages_failed == 1


def test_an_end_that_raises_is_counted_before_the_slice_fails_and_given_up_after_three(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The plane's result makes the record's write raise every time (a value JSON cannot hold): each
    crash is written to the head item before the invocation fails; after the third the plane is not
    run and the record, without it, is written: FAILED, with the reason."""
    from orchestrator.registry.reconcile_pass import PAGE_ATTEMPTS

    rep, table, calls = _at_the_end(monkeypatch, lambda: {"ok": True, "applied": 1, "errors": 0,
                                                          "counts": {"role_aliases": {"created"}}})
    store = PassStore(table, "applied", "eu-west-1")
    for attempt in range(1, PAGE_ATTEMPTS + 1):
        with pytest.raises(TypeError):
            _slice(rep)
        state = store.load()
        assert state is not None and (state.phase, state.page_attempts, state.page_error) == \
            ("apply", attempt, "TypeError")
    assert _slice(rep)["done"] is True and len(calls) == PAGE_ATTEMPTS
    record = rep.store.record
    assert record["ok"] is False and record["plane"]["error"] == "TypeError"
    assert record["failed_pages"][0]["phase"] == "apply" and record["errors"] == 1


def test_an_end_that_does_not_crash_writes_the_head_item_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting crashes at the end costs nothing while none happens: one head-item write, the end's."""
    rep, table, calls = _at_the_end(monkeypatch, lambda: {"ok": True, "applied": 0, "errors": 0, "counts": {}})
    table.puts.clear()
    out = _slice(rep)
    assert out["done"] is True and rep.store.record["ok"] is True and "pages_failed" not in rep.store.record
    assert len(table.puts) == 1 and calls == ["eu-west-1"]


def test_status_says_the_end_is_failing_and_that_its_plane_was_given_up() -> None:
    from orchestrator.operations.replication import ReplicationHealth, failed_pages

    state = PassState("p", "eu-west-1", 1000.0, phase="apply", read=12, total_estimate=12, page_attempts=2,
                      page_error="SliceDied", updated_at=1010.0)
    line = ReplicationHealth("eu-central-1", 0, 0, None, reconciling={**state.progress(1010.0), "stale": False}).line()
    assert "reads done, applying, the end (plane, record) failing (SliceDied, attempt 2)" in line
    record = {"pages_failed": 1, "failed_pages": [{"phase": "apply", "error": "SliceDied", "attempts": 3,
                                                   "unread": "the device-management plane (not applied)"}]}
    assert "[apply: SliceDied, unread the device-management plane (not applied)]" in failed_pages(record)
