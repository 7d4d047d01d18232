"""Issue 22, the unchanged pass's memory: it holds both regions' listings and the version record
as objects, so what they repeat is held once. Checked here without timing or RSS:

- a listing's things with equal attributes share one dict, and things in the same static groups
  one tuple; a thing's attributes keep the order the listing gave them;
- a loaded version record's names are the interned strings the listings hold, and equal pairs of
  versions are one tuple;
- a listing read with `derived_arns` holds no certificate ARN it can make again from the region's
  prefix and the id, and every consumer (`certificate_arn`, a plan's `ArnsOf`) gets the listed ARN;
- the canary is still left out as before (a certificate with a canary and a fleet policy stays).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.fake_iot import FakeIot, fake_pem, pem_id
from orchestrator.registry.calls import Caller
from orchestrator.registry.regional import without_regional
from orchestrator.registry.snapshot import (
    Certificate,
    PolicyTarget,
    RegistrySnapshot,
    TargetKind,
    Thing,
    read_listing,
)
from orchestrator.registry.sync.plan import ArnsOf
from orchestrator.registry.sync.run import VersionRecord

SRC = "eu-west-1"
CANARY = "iot-dev-canary-eu-west-1"


def test_equal_attributes_and_groups_are_one_object_in_a_listing() -> None:
    world = FakeIot(scale=1000)
    world.seed(SRC, 300)  # attributes {"site": s<i % 97>, "batch": <i // 1000>}; group fleet-<i % 10>, beta if even
    things = world.region(SRC).things
    things["dev-0000001"][1] = {}
    things["dev-0000003"][1] = {}
    things["dev-0000005"][1] = {"batch": "0", "site": "s5"}  # the other order: kept as given
    listing = read_listing(Caller(world.client(SRC)), concurrency=2)
    by = listing.things_by_name
    assert by["dev-0000000"].attributes == {"site": "s0", "batch": "0"}
    assert by["dev-0000000"].attributes is by["dev-0000097"].attributes
    assert by["dev-0000000"].attributes is not by["dev-0000001"].attributes
    assert by["dev-0000001"].attributes == {} and by["dev-0000001"].attributes is by["dev-0000003"].attributes
    assert list(by["dev-0000005"].attributes) == ["batch", "site"]
    assert list(by["dev-0000102"].attributes) == ["site", "batch"]
    assert by["dev-0000000"].groups == ("beta", "fleet-0")
    assert by["dev-0000000"].groups is by["dev-0000010"].groups
    assert by["dev-0000011"].groups == ("fleet-1",) and by["dev-0000011"].groups is by["dev-0000021"].groups
    # every thing as it is in the fake (type, attributes, groups, version)
    for t in listing.things:
        kind, attributes, version = things[t.name]
        i = int(t.name.split("-")[1])
        assert (t.thing_type, dict(t.attributes), t.version) == (kind, attributes, version)
        assert t.groups == tuple(sorted({f"fleet-{i % 10}", *(["beta"] if i % 2 == 0 else [])}))


def test_a_loaded_version_record_holds_each_name_and_pair_once(tmp_path: Path) -> None:
    path = tmp_path / "versions.json"
    names = [f"thing-{i:05d}-{id(tmp_path)}" for i in range(50)]  # not interned by the compiler
    VersionRecord("eu-west-1", "eu-central-1", {n: (3 if i % 2 else 1, 7) for i, n in enumerate(names)},
                  {}, {}).save(path)
    canonical = {sys.intern(n) for n in names}  # as a listing read after the record interns them
    record = VersionRecord.load(path, "eu-west-1", "eu-central-1")
    assert record is not None and len(record.things) == 50
    by_value = {n: n for n in canonical}
    for name in record.things:
        assert name is by_value[name]
    assert record.things[names[0]] == (1, 7) and record.things[names[1]] == (3, 7)
    assert record.things[names[0]] is record.things[names[2]]
    assert record.things[names[1]] is record.things[names[3]]


def test_the_canary_is_left_out_as_before() -> None:
    only, both = pem_id(fake_pem("canary-only")), pem_id(fake_pem("canary-and-device"))
    fleet = pem_id(fake_pem("fleet"))
    snap = RegistrySnapshot(
        "eu-west-1", things=(Thing(CANARY), Thing("dev-1")),
        certificates=tuple(Certificate(c, "ACTIVE") for c in sorted((only, both, fleet))),
        policy_targets=tuple(sorted((PolicyTarget(CANARY, TargetKind.CERTIFICATE, only),
                                     PolicyTarget(CANARY, TargetKind.CERTIFICATE, both),
                                     PolicyTarget("device", TargetKind.CERTIFICATE, both),
                                     PolicyTarget("device", TargetKind.CERTIFICATE, fleet),
                                     PolicyTarget("device", TargetKind.THING_GROUP, "fleet")))))
    out = without_regional(snap)
    assert [t.name for t in out.things] == ["dev-1"]
    assert sorted(c.id for c in out.certificates) == sorted((both, fleet))
    assert set(out.policy_targets) == {PolicyTarget("device", TargetKind.CERTIFICATE, both),
                                       PolicyTarget("device", TargetKind.CERTIFICATE, fleet),
                                       PolicyTarget("device", TargetKind.THING_GROUP, "fleet")}
    assert any("1 certificate(s) attached only to canary policies" in n for n in out.notes)
    assert without_regional(RegistrySnapshot("eu-west-1", things=(Thing("dev-1"),))).notes == ()


def test_a_listing_with_derived_arns_makes_each_certificates_arn_again() -> None:
    world = FakeIot(scale=1000)
    world.seed(SRC, 40)
    caller = Caller(world.client(SRC))
    whole, lean = read_listing(caller, concurrency=2), read_listing(caller, concurrency=2, derived_arns=True)
    assert whole.certificate_arn_prefix is None and all(c.arn for c in whole.certificates)
    assert lean.certificate_arn_prefix == "arn:aws:iot:eu-west-1:123456789012:cert/"
    assert [c.arn for c in lean.certificates] == [None] * 40
    assert lean == whole  # ARNs are hints (not compared): the same registry
    assert [lean.certificate_arn(c) for c in lean.certificates] == [c.arn for c in whole.certificates]
    arns = ArnsOf(lean.certificates_by_id, lean.certificate_arn_prefix)
    assert dict(arns) == dict(ArnsOf(whole.certificates_by_id)) and len(arns) == 40


def test_an_arn_not_of_the_prefix_is_kept_and_one_without_a_prefix_is_absent() -> None:
    prefix = "arn:aws:iot:eu-west-1:123456789012:cert/"
    odd = Certificate("b" * 64, "ACTIVE", arn="arn:aws:iot:eu-west-1:210987654321:cert/" + "b" * 64)
    snap = RegistrySnapshot("eu-west-1", certificates=(Certificate("a" * 64, "ACTIVE"), odd),
                            certificate_arn_prefix=prefix)
    assert snap.certificate_arn(snap.certificates[0]) == prefix + "a" * 64
    assert snap.certificate_arn(odd) == odd.arn
    assert dict(ArnsOf(snap.certificates_by_id, prefix)) == {"a" * 64: prefix + "a" * 64, "b" * 64: odd.arn}
    plain = RegistrySnapshot("eu-west-1", certificates=snap.certificates)
    assert plain.certificate_arn(plain.certificates[0]) is None
    assert dict(ArnsOf(plain.certificates_by_id)) == {"b" * 64: odd.arn}


def test_the_streamed_record_is_the_same_bytes_as_the_whole(tmp_path: Path) -> None:
    """`save_state` writes an in-memory listing's record streamed, as a spilled one's."""
    things = {f"t{i:03d}": (i % 3 or None, 5) for i in range(30)}
    shadows, written = {"t001/$classic": 4, "t002/x": None}, {"t001/$classic": 9}
    VersionRecord("eu-west-1", "eu-central-1", things, shadows, written).save(tmp_path / "whole.json")
    VersionRecord.save_streamed(tmp_path / "streamed.json", "eu-west-1", "eu-central-1", iter(things.items()),
                                shadows, written)
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
