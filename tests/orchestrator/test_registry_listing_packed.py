"""Issue 22, an unchanged or `--full` pass's listings packed as columns (`registry/packed.py`,
`read_listing(packed=True)`): the same registry as the listing of records, held without a record
per thing. Checked here without timing or RSS:

- a packed listing has the same things, certificates (with their ARNs), policy targets (in the
  same order), types, groups, policies, notes and coverage as the listing of records;
- the region's canary is left out as `without_regional` leaves it out, with the same note (a
  certificate a canary and a fleet policy share stays);
- look-ups by key, positions, negative positions and slices (one crossing policy runs) answer as a
  tuple and a dict would; a key not there is absent, not an error;
- the columns: keys sorted whatever order the pages gave, a key listed twice kept once, a version
  None kept, groups sorted and a member that is no thing ignored, and the distinct values held once;
- the sync's passes read their listings packed (a first sync's are spilled to disk).
"""

from __future__ import annotations

import json

import pytest

from bench.fake_iot import FakeIot, fake_pem, pem_id
from orchestrator.registry.calls import Caller
from orchestrator.registry.packed import (
    PackedCertificates,
    PackedTargets,
    PackedThings,
    TargetColumns,
    ThingColumns,
)
from orchestrator.registry.snapshot import PolicyTarget, TargetKind, Thing, read_listing
from orchestrator.registry.spill import SpillStore
from orchestrator.registry.sync.model import SyncOptions
from orchestrator.registry.sync.run import _Run

SRC, DST = "eu-west-1", "eu-central-1"
CANARY = "iot-dev-canary-eu-west-1"


def _world(n: int = 300) -> FakeIot:
    world = FakeIot(scale=1000)
    world.seed(SRC, n)
    r = world.region(SRC)
    r.things["dev-0000001"][1] = {}
    r.things["dev-0000002"][0] = None
    r.members["fleet-3"]["gone-thing"] = None  # a member that is no thing (moto keeps deleted ones)
    return world


def _add_canary(world: FakeIot) -> tuple[str, str]:
    """The stack's canary in `SRC`: its thing, its policy, a certificate only it is attached to
    and one the device policy is attached to as well."""
    r = world.region(SRC)
    only, both = pem_id(fake_pem("canary-only")), pem_id(fake_pem("canary-and-device"))
    r.things[CANARY] = [None, {}, 1]
    r.policies[CANARY] = {"document": json.dumps({"Version": "2012-10-17", "Statement": []}),
                          "versions": {"1": None}, "default": "1"}
    r.targets[CANARY] = {}
    for cid in (only, both):
        r.certs[cid] = ["ACTIVE", fake_pem(cid)]
        r.targets[CANARY][r.arn("cert", cid)] = None
    r.targets["device"][r.arn("cert", both)] = None
    r.touch()
    return only, both


def _both(world: FakeIot) -> tuple[object, object]:
    caller = Caller(world.client(SRC))
    return read_listing(caller, concurrency=2), read_listing(caller, concurrency=2, packed=True)


def test_a_packed_listing_is_the_same_registry() -> None:
    records, packed = _both(_world())
    assert isinstance(packed.things, PackedThings)
    assert isinstance(packed.certificates, PackedCertificates)
    assert isinstance(packed.policy_targets, PackedTargets)
    assert tuple(packed.things) == records.things
    assert [t.version for t in packed.things] == [t.version for t in records.things]
    assert [(t.thing_type, t.groups) for t in packed.things][:3] == \
        [(t.thing_type, t.groups) for t in records.things][:3]
    assert tuple(packed.certificates) == records.certificates
    assert [packed.certificate_arn(c) for c in packed.certificates] == [c.arn for c in records.certificates]
    assert [(c.status, c.mode, c.ca_certificate_id) for c in packed.certificates] == \
        [(c.status, c.mode, c.ca_certificate_id) for c in records.certificates]
    assert tuple(packed.policy_targets) == records.policy_targets
    assert len(packed.policy_targets) == len(records.policy_targets) == 300 + 75
    for field in ("thing_types", "thing_groups", "policies", "notes", "gaps", "coverage"):
        assert getattr(packed, field) == getattr(records, field), field
    assert packed.counts() == records.counts()
    # names and certificate ids are the interned strings: a target's id is its certificate's
    ids = {c.id: c.id for c in packed.certificates}
    assert all(a.target is ids[a.target] for a in packed.policy_targets if a.kind is TargetKind.CERTIFICATE)


def test_the_canary_is_left_out_as_the_listing_of_records_leaves_it() -> None:
    world = _world(40)
    only, both = _add_canary(world)
    records, packed = _both(world)
    assert CANARY not in packed.things_by_name and CANARY not in {p.name for p in packed.policies}
    assert only not in packed.certificates_by_id and both in packed.certificates_by_id
    assert tuple(packed.things) == records.things
    assert tuple(packed.certificates) == records.certificates
    assert tuple(packed.policy_targets) == records.policy_targets
    assert packed.policies == records.policies
    assert packed.notes == records.notes
    assert any("1 certificate(s) attached only to canary policies" in n for n in packed.notes)


def test_look_ups_positions_and_slices_answer_as_a_tuple_and_a_dict() -> None:
    records, packed = _both(_world(120))
    by, want = packed.things_by_name, records.things_by_name
    assert by.get("dev-0000007") == want["dev-0000007"] and by["dev-0000119"] == want["dev-0000119"]
    assert "dev-0000120" not in by and by.get("dev-0000120") is None and by.get("a") is None
    assert 7 not in by and by.get("zzz", "default") == "default"  # type: ignore[operator]
    with pytest.raises(KeyError):
        by["dev-9999999"]
    assert len(by) == 120 and list(by) == [t.name for t in records.things]
    assert dict(by.items()) == dict(want.items())
    assert dict(packed.certificates_by_id) == dict(records.certificates_by_id)
    for seq, ref in ((packed.things, records.things), (packed.certificates, records.certificates),
                     (packed.policy_targets, records.policy_targets)):
        assert seq[0] == ref[0] and seq[-1] == ref[-1] and seq[len(ref) - 1] == ref[-1]
        assert seq[5:17] == list(ref[5:17]) and seq[::7] == list(ref[::7]) and seq[100:10_000] == list(ref[100:])
        with pytest.raises(IndexError):
            seq[len(ref)]
    # a slice across the device policy's run and the telemetry policy's
    targets = packed.policy_targets
    assert isinstance(targets, PackedTargets)
    edge = len(targets.of("device", TargetKind.CERTIFICATE))
    assert targets[edge - 2:edge + 2] == list(records.policy_targets[edge - 2:edge + 2])
    assert {a.policy for a in targets[edge - 2:edge + 2]} == {"device", "telemetry"}
    assert targets.of("nothing", TargetKind.CERTIFICATE) == []


def test_columns_sort_keep_one_of_a_name_and_hold_each_distinct_value_once() -> None:
    cols = ThingColumns()
    for name, kind, attributes, version in (("b", "sensor", {"site": "s1"}, 3), ("a", None, None, None),
                                            ("c", "sensor", {"site": "s1"}, 1), ("a", "gate", {}, 9)):
        cols.add(name, kind, attributes, version)
    things = cols.finish([("zeta", ["c", "nobody"]), ("alpha", ["c", "a"]), ("zeta", ["a"])])
    assert [t.name for t in things] == ["a", "b", "c"]
    assert things[0] == Thing("a", None, {}, ("alpha", "zeta")) and things[0].version is None
    assert things[1] == Thing("b", "sensor", {"site": "s1"}, ()) and things[1].version == 3
    assert things[2].groups == ("alpha", "zeta") and things[2].groups is things[0].groups
    assert things[1].attributes is things[2].attributes
    # each distinct value once (the tables also hold what a dropped duplicate and a thing's groups
    # on the way to its last had: a few values, not one per thing)
    assert things.attributes == [{}, {"site": "s1"}] and things.types == [None, "sensor", "gate"]
    assert len(set(things.groups)) == len(things.groups) == 4
    assert things.type_of.typecode == "I" and len(things.versions) == 3
    assert len(cols.finish([], leave_out=["b"])) == 2

    targets = TargetColumns()
    for policy, kind, target in (("p2", TargetKind.CERTIFICATE, "y"), ("p1", TargetKind.THING_GROUP, "g"),
                                 ("p1", TargetKind.CERTIFICATE, "z"), ("p1", TargetKind.CERTIFICATE, "x")):
        targets.add(policy, kind, target)
    packed = targets.finish(leave_out=["p2"])
    assert list(packed) == [PolicyTarget("p1", TargetKind.CERTIFICATE, "x"),
                            PolicyTarget("p1", TargetKind.CERTIFICATE, "z"),
                            PolicyTarget("p1", TargetKind.THING_GROUP, "g")]
    with pytest.raises(TypeError):
        packed.by_key()


def test_the_sync_reads_its_listings_packed_and_a_first_sync_spills_them(tmp_path: object) -> None:
    world = _world(30)
    world.region(DST)
    options = SyncOptions(shadows=False)
    run = _Run.start(options, world.client(DST), world.client(SRC), None, None, None, None)
    src, dst = run.read_listings()
    assert isinstance(src.things, PackedThings) and isinstance(dst.things, PackedThings)
    assert len(src.things) == 30 and len(dst.things) == 0
    with SpillStore() as store:
        run.listings_store = store
        src, _dst = run.read_listings()
        assert not isinstance(src.things, PackedThings) and src.spilled


def test_a_streamed_read_covers_what_a_whole_read_covers_when_some_listings_may_be_short() -> None:
    """A thing whose principals came as a full page without a continuation token is not covered
    (nothing is detached from it): the streamed read counts the things read whole and keeps only
    the few that were not, and answers the same coverage as the whole read."""
    world = _world(40)
    world.region(DST)
    r = world.region(SRC)
    for i in range(0, 40, 2):
        r.principals[f"dev-{i:07d}"] = {}  # no certificate: an empty page, read whole
    run = _Run.start(SyncOptions(shadows=False), world.client(DST), world.client(SRC), None, None, None, None)
    src, dst = run.read_listings()
    assert run.src_caller is not None
    run.src_caller.page_size = 1  # a thing's one certificate fills its page: it may not be the last
    streamed = run.stream_details(src, dst, lambda _part: None, chunk=7, keep_details=False)
    whole = run.read_details(src, dst)
    odd = {f"dev-{i:07d}" for i in range(1, 40, 2)}
    assert streamed.src.coverage.principals == whole.src.coverage.principals \
        == frozenset(t.name for t in src.things if t.name not in odd)
    assert sorted(streamed.checked) == sorted(whole.checked) == sorted(t.name for t in src.things)
    assert streamed.src.gaps == whole.src.gaps and len(whole.src.gaps) >= len(odd)
