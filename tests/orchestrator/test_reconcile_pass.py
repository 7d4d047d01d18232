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
