"""The reconciliation pass's pure parts: what one stored item may hold, how far a slice request may
go, and the progress `orchestrate status` shows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.registry.reconcile_pass import (
    PART_MAX_BYTES,
    SLICE_BUDGET_S,
    PassState,
    PassStore,
    SliceLimits,
    _chunks,
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


def test_a_large_journal_part_is_stored_in_items_under_dynamodbs_limit_and_read_back_whole() -> None:
    line = json.dumps({"f": 1, "r": "eu-west-1", "t": {f"thing-{i:07d}": [3, ["a" * 64]] for i in range(40)}})
    text = "\n".join([line] * 400) + "\n"  # ≈ 1.5 MB: more than three items' worth
    table = FakeTable()
    store = PassStore(table, "applied", "eu-west-1")
    state = store.put_part(PassState("p1", "eu-west-1", 0.0), text)
    assert state.parts >= 4 and max(table.puts) <= 400 * 1024
    assert "".join(store.parts(state)) == text  # every line whole, in order


def test_a_line_longer_than_an_item_is_refused_not_cut() -> None:
    with pytest.raises(ValueError, match="does not fit one part"):
        _chunks("x" * (PART_MAX_BYTES + 1) + "\n", PART_MAX_BYTES)


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
