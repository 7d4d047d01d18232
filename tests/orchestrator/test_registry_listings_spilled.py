"""Issue 22, the listings' memory: a sync reads both regions' listings (and the read-back's) into
its spill file (`read_listing(spill=...)`, `SyncOptions.spill_listings`), so no listing of the
fleet is held as Python objects. What is checked here, without timing or RSS:

- a spilled listing holds what the in-memory listing holds (records, order, notes, coverage; the
  region's canary left out the same way), read by position, slice and key;
- the run's listings (source, destination, read-back) are the spilled ones, every read of them is
  bounded (no call asks for more rows than a chunk), and the run reports, verifies and records
  (byte for byte) what a run with the listings in memory does;
- the merge that replaced the planner's set differences is the sorted set difference.
"""

from __future__ import annotations

import gc
import random
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.fake_iot import FakeIot, fake_pem, pem_id
from orchestrator.registry import QuotaTable, SyncOptions, sync_clients
from orchestrator.registry.calls import Caller
from orchestrator.registry.snapshot import RegistrySnapshot, Spilled, read_listing
from orchestrator.registry.spill import PAGE, SortedRows, SpillStore
from orchestrator.registry.sync import run as run_mod
from orchestrator.registry.sync.plan import STREAM_CHUNK, _minus
from orchestrator.registry.sync.run import VersionRecord

SRC, DST = "eu-west-1", "eu-central-1"
CANARY = "iot-dev-canary-eu-west-1"


def _world(n: int) -> FakeIot:
    """`n` things of the bench's fleet, the region's MQTT canary (thing, policy, a certificate
    attached only to it, another also carrying the device policy: fleet) and a group member
    that is no thing (moto keeps deleted things in their groups)."""
    world = FakeIot(scale=1000)
    world.seed(SRC, n)
    c = world.client(SRC)
    c.create_thing(thingName=CANARY)
    c.create_policy(policyName=CANARY, policyDocument='{"Version":"2012-10-17","Statement":[]}')
    for seed, fleet in (("canary-only", False), ("canary-and-device", True)):
        arn = c.register_certificate_without_ca(certificatePem=fake_pem(seed), status="ACTIVE")["certificateArn"]
        c.attach_policy(policyName=CANARY, target=arn)
        if fleet:
            c.attach_policy(policyName="device", target=arn)
    world.region(SRC).members["beta"]["ghost-thing"] = None
    return world


def _fields(s: RegistrySnapshot) -> dict[str, Any]:
    return {
        "things": [(t.name, t.thing_type, dict(t.attributes), t.groups, t.version) for t in s.things],
        "certificates": [(c.id, c.status, c.pem, c.mode, c.ca_certificate_id, c.arn) for c in s.certificates],
        "policy_targets": list(s.policy_targets),
        "policies": s.policies, "thing_groups": s.thing_groups, "thing_types": s.thing_types,
        "notes": s.notes, "gaps": s.gaps, "coverage": s.coverage,
    }


def test_a_spilled_listing_holds_what_the_listing_in_memory_holds() -> None:
    world = _world(700)
    caller = Caller(world.client(SRC))
    whole = read_listing(caller, concurrency=4)
    with SpillStore() as store:
        spilled = read_listing(caller, concurrency=4, spill=store, name="src")
        assert spilled.spilled and not whole.spilled
        for what in ("things", "certificates", "policy_targets"):
            assert isinstance(getattr(spilled, what), Spilled)
        assert _fields(spilled) == _fields(whole)
        assert CANARY not in spilled.things_by_name and CANARY not in {p.name for p in spilled.policies}
        assert pem_id(fake_pem("canary-only")) not in spilled.certificates_by_id
        assert pem_id(fake_pem("canary-and-device")) in spilled.certificates_by_id
        assert any("canary" in n for n in spilled.notes)
        # by position, slice and key, as a tuple answers
        things = tuple(whole.things)
        assert spilled.things[0] == things[0] and spilled.things[-1] == things[-1]
        assert spilled.things[250:260] == list(things[250:260]) and spilled.things[695:9999] == list(things[695:])
        assert spilled.things[::100] == list(things[::100])
        with pytest.raises(IndexError):
            spilled.things[len(things)]
        name = things[123].name
        assert spilled.things_by_name[name] == whole.things_by_name[name]
        assert spilled.things_by_name.get("ghost-thing") is None and "ghost-thing" not in spilled.things_by_name
        assert list(spilled.things_by_name) == [t.name for t in things]
        assert dict(spilled.certificates_by_id.items()) == dict(whole.certificates_by_id)
        # read again under the same name: the earlier tables are replaced, not appended to
        again = read_listing(caller, concurrency=4, spill=store, name="src")
        assert _fields(again) == _fields(whole)
    assert store.path is None or not store.path.exists()


def test_sorted_rows_keep_their_order_and_refuse_a_key_out_of_it() -> None:
    with SpillStore(memory=True) as store:
        rows = SortedRows(store, "t")
        assert rows.extend((f"k{i:05d}", i) for i in range(2500)) == 2500
        assert len(rows) == 2500 and rows.rows(1998, 2003) == [(f"k{i:05d}", i) for i in range(1998, 2003)]
        assert rows.get("k00042") == (True, 42) and rows.get("nope") == (False, None)
        assert "k02499" in rows and "k02500" not in rows and 7 not in rows
        assert list(rows.keys()) == [f"k{i:05d}" for i in range(2500)]
        with pytest.raises(ValueError, match="not after"):
            rows.extend([("k00001", 1)])
        with pytest.raises(ValueError, match="not after"):
            rows.extend([("k09999", 0), ("k09999", 1)])


def test_the_merge_is_the_sorted_set_difference() -> None:
    rnd = random.Random(22)
    for _ in range(300):
        a = [rnd.randrange(40) for _ in range(rnd.randrange(30))]
        b = [rnd.randrange(40) for _ in range(rnd.randrange(30))]
        for x, y in ((sorted(a), sorted(b)), (a, b), (tuple(sorted(a)), tuple(b))):
            assert list(_minus(x, y)) == sorted(set(a) - set(b))


def _sync(world: FakeIot, tmp: Path, **kwargs: Any) -> tuple[Any, dict[str, RegistrySnapshot]]:
    seen: dict[str, RegistrySnapshot] = {}
    read, verify, streamed = run_mod._Run.read_listings, run_mod._Run.verify, run_mod._Run.verify_streamed

    def reading(self: run_mod._Run) -> tuple[RegistrySnapshot, RegistrySnapshot]:
        seen["src"], seen["dst"] = read(self)
        return seen["src"], seen["dst"]

    def verifying(self: run_mod._Run, *a: Any, **k: Any) -> Any:
        out = verify(self, *a, **k)
        if self._dst_now is not None:  # None: nothing was planned, nothing read back
            seen["back"] = self._dst_now
        return out

    def verifying_streamed(self: run_mod._Run, *a: Any, **k: Any) -> Any:
        out = streamed(self, *a, **k)
        if self._dst_now is not None:
            seen["back"] = self._dst_now
        return out

    options = SyncOptions(quotas=QuotaTable().scaled(1000), concurrency=4, shadows=False, stream_chunk=50,
                          verify_chunk=300, state_path=tmp / "versions.json",
                          checkpoint_path=tmp / "checkpoint.json", **kwargs)
    mp = pytest.MonkeyPatch()
    mp.setattr(run_mod._Run, "read_listings", reading)
    mp.setattr(run_mod._Run, "verify", verifying)
    mp.setattr(run_mod._Run, "verify_streamed", verifying_streamed)  # a first sync's (alongside its apply)
    try:
        return sync_clients(world.client(SRC), world.client(DST), options), seen
    finally:
        mp.undo()


def test_a_first_sync_holds_its_listings_on_disk_and_reports_what_one_in_memory_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 2500  # more things than any chunk the run reads at a time (STREAM_CHUNK, PAGE, verify_chunk)
    assert n > max(STREAM_CHUNK, PAGE, 300)
    asked: list[int] = []
    rows = SortedRows.rows

    def counted(self: SortedRows, start: int, stop: int) -> list[tuple[str, Any]]:
        asked.append(min(stop, len(self)) - start)
        return rows(self, start, stop)

    monkeypatch.setattr(SortedRows, "rows", counted)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    world = _world(n)
    report, seen = _sync(world, tmp_path / "a")
    assert report.verification is not None and report.verification.ok and not report.errors
    assert {k: v.spilled for k, v in seen.items()} == {"src": True, "dst": True, "back": True}
    assert len(seen["src"].things) == n and len(seen["back"].things) == n
    assert asked and max(asked) <= STREAM_CHUNK  # every read of a listing is a bounded page or chunk

    whole, seen_whole = _sync(_world(n), tmp_path / "b", spill_listings=False)
    assert {k: v.spilled for k, v in seen_whole.items()} == {"src": False, "dst": False, "back": False}
    for field in ("planned", "applied", "counts", "calls_by_api", "warnings", "things_checked", "things_total"):
        assert getattr(report, field) == getattr(whole, field), field
    assert report.verification == whole.verification
    # the version record written as a stream is the one written from a dict, byte for byte
    assert (tmp_path / "a" / "versions.json").read_bytes() == (tmp_path / "b" / "versions.json").read_bytes()
    assert VersionRecord.load(tmp_path / "a" / "versions.json", SRC, DST) is not None

    # the next pass, with the record: nothing to do; it keeps its listings in memory (spilled, its
    # per-thing look-ups cost an unchanged pass 2-4x its CPU), and so does a --full pass
    unchanged, seen_next = _sync(world, tmp_path / "a")
    assert unchanged.planned == 0 and not unchanged.errors and unchanged.things_checked == 0
    assert not seen_next["src"].spilled and not seen_next["dst"].spilled and "back" not in seen_next
    full, seen_full = _sync(world, tmp_path / "a", full=True)
    assert full.planned == 0 and not full.errors and not seen_full["src"].spilled
    # an unfinished run's mark (a kill, a failed read-back): the next run reads everything, spilled
    VersionRecord.mark(tmp_path / "a" / "versions.json", SRC, DST)
    again, seen_again = _sync(world, tmp_path / "a")
    assert again.planned == 0 and not again.errors and again.things_checked == n
    assert seen_again["src"].spilled and seen_again["dst"].spilled


def test_a_streamed_version_record_is_the_record_save_writes(tmp_path: Path) -> None:
    things = {f"t{i:03d}": (i, i + 1 if i % 3 else None) for i in range(50)}
    shadows = {"t001/$classic": 4, "t002/named": None}
    written = {"t001/$classic": 7}
    VersionRecord(SRC, DST, things, shadows, written).save(tmp_path / "dict.json")
    VersionRecord.save_streamed(tmp_path / "stream.json", SRC, DST, iter(things.items()), shadows, written)
    assert (tmp_path / "stream.json").read_bytes() == (tmp_path / "dict.json").read_bytes()
    with pytest.raises(ValueError, match="not after"):
        VersionRecord.save_streamed(tmp_path / "bad.json", SRC, DST, iter([("b", (1, 1)), ("a", (1, 1))]), {}, {})
    assert not (tmp_path / "bad.json").exists() and not list(tmp_path.glob(".bad.json.*"))


def test_a_streamed_read_holds_no_chunk_it_handed_on_and_returns_what_a_whole_read_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`stream_details` keeps, of each chunk it hands on, only the principals, shadows, notes, gaps
    and coverage: the chunk's things and certificates (decoded from the spill file for it alone)
    are dropped before the next chunk is read (issue 22). What it returns is what `read_details`
    returns for the same listings, field by field, and the run's plan is unchanged. A first sync
    (its read-back alongside the apply, `_ReadBack`) asks it to keep no principals or shadows at
    all (`keep_details=False`): the read-back takes each chunk's, and drops them once compared."""
    stream = run_mod._Run.stream_details
    alive_before: list[int] = []
    compared: list[tuple[Any, Any, Any, frozenset[str]]] = []

    def streaming(self: run_mod._Run, src: RegistrySnapshot, dst: RegistrySnapshot, on_part: Any,
                  *, chunk: int = 200, keep_details: bool = True) -> Any:
        refs: list[weakref.ref[Any]] = []

        def handed(part: Any) -> None:
            gc.collect()
            alive_before.append(sum(r() is not None for r in refs))
            refs.append(weakref.ref(part))
            on_part(part)

        out = stream(self, src, dst, handed, chunk=chunk, keep_details=keep_details)
        kept = stream(self, src, dst, lambda _part: None, chunk=chunk)
        compared.append((out, kept, self.read_details(src, dst), frozenset(t.name for t in src.things)))
        return out

    monkeypatch.setattr(run_mod._Run, "stream_details", streaming)
    n = 600
    report, seen = _sync(_world(n), tmp_path)
    assert report.verification is not None and report.verification.ok and not report.errors
    assert seen["src"].spilled
    assert len(alive_before) == n // 50  # chunks of 50 (stream_chunk; the canary is left out)
    assert max(alive_before) == 0  # no chunk handed on is alive when the next one is read
    (streamed, kept, whole, names), = compared
    assert len(kept.src.thing_principals) >= n
    assert not streamed.src.thing_principals and not streamed.dst.thing_principals  # the read-back had them
    for side in ("src", "dst"):
        a, b, k = getattr(streamed, side), getattr(whole, side), getattr(kept, side)
        for field in ("thing_principals", "shadows"):
            assert getattr(k, field) == getattr(b, field), (side, field)
        for field in ("notes", "gaps"):
            assert getattr(a, field) == getattr(b, field) == getattr(k, field), (side, field)
    # coverage: the streamed read says "every thing" (None) where the whole read lists every name
    assert [c.principals if c.principals is not None else names
            for c in (streamed.src.coverage, whole.src.coverage)] == [names, names]
    assert replace(streamed.src.coverage, principals=None) == replace(whole.src.coverage, principals=None)
    assert set(streamed.checked) == set(whole.checked) and streamed.src_shadows == whole.src_shadows
