"""The spill store (orchestrator/registry/spill.py) and the scheduler that reads its plan from it."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from orchestrator.registry.spill import PAGE, SpillStore
from orchestrator.registry.sync import Action, Kind, SyncOp, SyncPlan, apply_sync
from orchestrator.registry.sync import apply as apply_mod


def test_rows_come_back_in_insertion_order_across_pages_and_per_group() -> None:
    with SpillStore() as store:
        t = store.table("ops")
        rows = [(f"k{i:05d}"[::-1], "even" if i % 2 == 0 else "odd", {"i": i}) for i in range(2 * PAGE + 7)]
        assert t.add(rows) == len(rows)
        assert [v["i"] for v in t.values()] == list(range(len(rows)))  # not sorted by key: reversed keys
        assert [v["i"] for v in t.values(group="odd", page=13)] == list(range(1, len(rows), 2))
        assert t.groups() == ["even", "odd"]
        first = t.page(group="even", limit=3)
        assert [v["i"] for _s, _k, v in first] == [0, 2, 4]
        nxt = t.page(group="even", after=first[-1][0], limit=2)
        assert [v["i"] for _s, _k, v in nxt] == [6, 8]


def test_a_duplicate_key_is_stored_once_and_the_first_insertion_wins() -> None:
    with SpillStore(memory=True) as store:
        t = store.table("ops")
        assert t.add([("a", "g", 1), ("b", "g", 2), ("a", "g", 3)]) == 2
        assert t.add([("b", "h", 4), ("c", "g", 5)]) == 1
        assert t.duplicates == 2
        assert len(t) == 3 == t.count()
        assert list(t.items()) == [("a", 1), ("b", 2), ("c", 5)]
        assert t.get("a") == 1 and t.get("zzz") is None
        assert "b" in t and "zzz" not in t and 3 not in t


def test_large_values_and_many_keys_round_trip() -> None:
    big = "x" * (8 * 1024 * 1024)  # 8 MB: above SQLite's page size and our page cache
    with SpillStore() as store:
        t = store.table("blobs")
        t.add([("big", "", {"doc": big}), ("small", "", b"\x00\xff")])
        assert t.get("big") == {"doc": big}
        assert t.get("small") == b"\x00\xff"
        keys = [f"key-{i}" for i in range(1234)]  # above SQLite's limit of bound parameters
        t.add((k, "", i) for i, k in enumerate(keys))
        t.set_state(keys[::2], 2)
        states = t.states([*keys, "missing"])
        assert "missing" not in states
        assert all(states[k] == (2 if i % 2 == 0 else 0) for i, k in enumerate(keys))
        assert t.count(state=2) == 617
        assert [k for k, _v in t.items(state=2)][:2] == ["key-0", "key-2"]


def test_the_file_lives_in_a_private_directory_without_a_write_ahead_log_and_is_removed_on_close() -> None:
    store = SpillStore()
    directory, path = store.directory, store.path
    assert directory is not None and path is not None
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    store.table("ops").add([("a", "", 1)])
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "memory"
    assert path.is_file()
    assert not any(p.name.endswith("-wal") for p in directory.iterdir())
    store.close()
    store.close()  # idempotent
    assert not directory.exists()
    assert store.closed
    with pytest.raises(sqlite3.ProgrammingError):
        store.db.execute("SELECT 1")


def test_the_directory_is_removed_when_the_run_stops_with_an_exception() -> None:
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with SpillStore() as store:
            seen.append(store.directory)
            store.table("ops").add([("a", "", 1)])
            raise RuntimeError("boom")
    assert seen[0] is not None and not seen[0].exists()


def test_a_failed_page_write_is_rolled_back_whole() -> None:
    class Unpicklable:
        def __reduce__(self) -> object:
            raise TypeError("cannot pickle this")

    with SpillStore() as store:
        t = store.table("ops")
        with pytest.raises(TypeError):
            t.add([("a", "", 1), ("b", "", Unpicklable())])
        assert t.count() == 0 and len(t) == 0
        t.add([("a", "", 1)])
        assert list(t.items()) == [("a", 1)]


def test_a_table_name_must_be_an_identifier() -> None:
    with SpillStore(memory=True) as store, pytest.raises(ValueError):
        store.table("ops; DROP TABLE x")


# -- the scheduler reads the plan from the spill table, a window at a time ---------------------------

class _Recorder:
    """A destination that records the calls the executor makes (creating things and groups)."""

    class meta:  # noqa: N801 - the boto3 client attribute
        region_name = "eu-central-1"

        class service_model:  # noqa: N801
            service_name = "iot"

        method_to_api_mapping: dict[str, str] = {}

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse or set()

    def create_thing_group(self, **kw: object) -> dict[str, str]:
        self.calls.append(("group", str(kw["thingGroupName"])))
        if kw["thingGroupName"] in self.refuse:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InvalidRequestException", "Message": "refused"}},
                              "CreateThingGroup")
        return {"thingGroupArn": f"arn:aws:iot:eu-central-1:1:thinggroup/{kw['thingGroupName']}"}

    def create_thing(self, **kw: object) -> dict[str, str]:
        self.calls.append(("thing", str(kw["thingName"])))
        return {"thingName": str(kw["thingName"])}

    def add_thing_to_thing_group(self, **kw: object) -> dict[str, str]:
        self.calls.append(("member", f"{kw['thingGroupName']}/{kw['thingName']}"))
        return {}


def _plan(n: int, groups: int = 3) -> SyncPlan:
    ops: list[SyncOp] = []
    group_ids = []
    for g in range(groups):
        op = SyncOp(Kind.THING_GROUP, Action.CREATE, f"g{g}", {"attributes": {}})
        ops.append(op)
        group_ids.append(op.id)
    things = [SyncOp(Kind.THING, Action.CREATE, f"t{i:05d}", {"attributes": {}}) for i in range(n)]
    ops += things
    ops += [SyncOp(Kind.GROUP_MEMBERSHIP, Action.CREATE, f"g{i % groups}/{t.name}",
                   {"group": f"g{i % groups}", "thing": t.name}, deps=(t.id, group_ids[i % groups]))
            for i, t in enumerate(things)]
    return SyncPlan("eu-west-1", "eu-central-1", False, tuple(ops))


def test_a_plan_larger_than_the_window_applies_every_operation_after_its_dependencies(monkeypatch) -> None:
    monkeypatch.setattr(apply_mod, "WINDOW", 16)  # many windows per API
    dst = _Recorder()
    report = apply_sync(_plan(200), dst, concurrency=4)
    assert report.ok and report.planned == 403 and report.applied == 403
    seen = {}
    for i, call in enumerate(dst.calls):
        seen[call] = i
    assert len(seen) == len(dst.calls) == 403  # each once
    for i in range(200):
        member = ("member", f"g{i % 3}/t{i:05d}")
        assert seen[member] > seen[("thing", f"t{i:05d}")] and seen[member] > seen[("group", f"g{i % 3}")]


def test_a_failed_dependency_blocks_its_dependents_loaded_before_and_after_it(monkeypatch) -> None:
    monkeypatch.setattr(apply_mod, "WINDOW", 8)
    dst = _Recorder(refuse={"g1"})
    report = apply_sync(_plan(90), dst, concurrency=2)
    assert [e.op for e in report.errors] == ["thing_group create g1"]
    assert report.blocked == 30  # every third membership, whenever it was loaded
    assert not any(c == "member" and v.startswith("g1/") for c, v in dst.calls)
    assert sum(1 for c, _v in dst.calls if c == "member") == 60
    assert report.planned == 183 and not report.ok
