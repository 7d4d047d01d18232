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
