"""A shadow patch that fits the Device Shadow service's 8 KB (`plan.shadow_writes`, issue 21).

AWS counts the desired and reported data of the document *sent* (tests/iot_strict.py's docstring),
and `shadow_patch` adds a null for every key only the destination has: a patch can be over the limit
where the result fits. Each case is checked against the strict gate's own model (`iot_strict`'s
`state_bytes` and `merge`, not the product's): every document fits, and so does the shadow after
each; the last leaves the destination equal to the source.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.registry.snapshot import Shadow, canonical_state
from orchestrator.registry.sync.model import Action, Kind, SyncOp
from orchestrator.registry.sync.plan import (
    SHADOW_STATE_BYTES,
    shadow_after,
    shadow_patch,
    shadow_state_bytes,
    shadow_writes,
)
from tests.iot_strict import SHADOW_BYTES, merge, state_bytes


def _shadow(desired: dict[str, Any] | None = None, reported: dict[str, Any] | None = None) -> Shadow:
    return Shadow("t", "", canonical_state(desired), canonical_state(reported))


def _write(src: Shadow, dst: Shadow | None) -> tuple[str, ...]:
    """The documents for src over dst, sent in order onto the gate's model of dst; asserts what the
    service asserts, and that the destination ends equal to the source."""
    patch = shadow_patch(src, dst)
    documents = shadow_writes(patch)
    stored: dict[str, Any] = {s: json.loads(v) for s in ("desired", "reported")
                              if dst is not None and (v := getattr(dst, s))}
    for document in documents:
        state = json.loads(document)["state"]
        assert state_bytes(state) <= SHADOW_BYTES, document[:200]
        stored = {s: merge(stored.get(s), state[s]) if s in state else stored.get(s) for s in ("desired", "reported")}
        stored = {s: v for s, v in stored.items() if v is not None}
        assert state_bytes(stored) <= SHADOW_BYTES
    assert (canonical_state(stored.get("desired")), canonical_state(stored.get("reported"))) == \
        (src.desired, src.reported)
    return documents


def test_the_product_limit_is_the_gates() -> None:
    assert SHADOW_STATE_BYTES == SHADOW_BYTES
    for state in ({"desired": {"a": "é" * 3}}, {"desired": None, "reported": {"b": [1, {"c": None}]}}, {}):
        assert shadow_state_bytes(state) >= state_bytes(state)  # never counts less than the service


def _extra(n: int) -> dict[str, int]:
    return {f"k{i:03d}": 1 for i in range(n)}


def _blob_for(total: int, extra: int) -> Shadow:
    """A source whose one-document patch over `_extra(extra)` is exactly `total` bytes."""
    base = shadow_state_bytes(json.loads(shadow_patch(_shadow({"blob": ""}), _shadow(_extra(extra))))["state"])
    return _shadow({"blob": "x" * (total - base)})


@pytest.mark.parametrize("total", [SHADOW_BYTES - 1, SHADOW_BYTES])
def test_a_patch_at_or_under_the_limit_is_one_document(total: int) -> None:
    src, dst = _blob_for(total, 300), _shadow(_extra(300))
    patch = shadow_patch(src, dst)
    assert shadow_state_bytes(json.loads(patch)["state"]) == total
    assert _write(src, dst) == (patch,)


@pytest.mark.parametrize("total", [SHADOW_BYTES + 1, SHADOW_BYTES + 2000])
def test_a_patch_over_the_limit_deletes_the_extra_keys_then_writes_the_source(total: int) -> None:
    src, dst = _blob_for(total, 300), _shadow(_extra(300))
    first, second = _write(src, dst)
    # the keys are deleted one by one (they fit): the device never sees an empty section
    assert json.loads(first) == {"state": {"desired": {f"k{i:03d}": None for i in range(300)}}}
    assert json.loads(second) == {"state": {"desired": json.loads(src.desired or "")}}


def test_nulls_over_the_limit_delete_the_section_itself() -> None:
    """`"k":null` is longer than `"k":1`: a destination near 8 KB of short keys has more than 8 KB
    of nulls. Only that section is deleted whole; the other keeps its key-by-key deletions."""
    dst = _shadow(_extra(900), {"fw": "1", "old": "x"})
    assert state_bytes({"desired": _extra(900)}) <= SHADOW_BYTES < state_bytes({"desired": dict.fromkeys(_extra(900))})
    src = _shadow({"led": "on"}, {"fw": "2"})
    first, second = _write(src, dst)
    assert json.loads(first) == {"state": {"desired": None, "reported": {"old": None}}}
    assert json.loads(second) == {"state": {"desired": {"led": "on"}, "reported": {"fw": "2"}}}


def test_nested_keys() -> None:
    dst = _shadow({"cfg": {"net": {"ssid": "a", **_extra(300)}, "gone": {"x": 1}}, "led": "off"})
    src = _shadow({"cfg": {"net": {"ssid": "b", "pad": "p" * 5000}}, "led": "on"})
    first, second = _write(src, dst)
    assert json.loads(first)["state"]["desired"] == {"cfg": {"net": dict.fromkeys(_extra(300)), "gone": None}}
    assert json.loads(second)["state"]["desired"] == json.loads(src.desired or "")


def test_a_section_absent_in_the_source_is_deleted_in_the_first_document() -> None:
    dst = _shadow(_extra(300), {"fw": "1", **{f"r{i:03d}": 1 for i in range(300)}})
    src = _shadow(None, {"fw": "2", "blob": "b" * 5000})
    first, second = _write(src, dst)
    state = json.loads(first)["state"]
    assert state["desired"] is None and set(state["reported"]) == {f"r{i:03d}" for i in range(300)}
    assert json.loads(second) == {"state": {"reported": json.loads(src.reported or "")}}


def test_a_source_over_the_limit_is_sent_as_it_is_and_refused_by_the_service() -> None:
    src, dst = _shadow({"blob": "x" * SHADOW_BYTES}), _shadow(_extra(10))
    patch = shadow_patch(src, dst)
    assert shadow_writes(patch) == (patch,)


def test_shadow_after_is_the_state_each_write_leaves() -> None:
    dst = _shadow({"a": 1, "b": {"c": 2, "d": 3}}, {"r": 1})
    assert shadow_after(dst, "t", "", '{"state":{"desired":{"b":{"c":null}},"reported":null}}') == \
        _shadow({"a": 1, "b": {"d": 3}})
    assert shadow_after(None, "t", "", '{"state":{"desired":{"a":1}}}') == _shadow({"a": 1})


def test_the_operation_and_its_checkpoint_key_are_as_before() -> None:
    """The split is computed from the patch when it is written: the operation's parameters, and so
    the checkpoint keys of journals written before this change, are unchanged (pinned here)."""
    src, dst = _shadow({"led": "on"}), _shadow({"led": "off", "old": 1})
    op = SyncOp(Kind.SHADOW, Action.UPDATE, "t/$classic",
                {"thing": "t", "shadow": "", "document": shadow_patch(src, dst)})
    assert op.params["document"] == '{"state":{"desired":{"led":"on","old":null}}}'
    assert op.key == KEY_BEFORE


KEY_BEFORE = "shadow update t/$classic #4628e6bed9de"  # computed on main at 8b8dbb6
