"""Continuous replication keeps the destination's newer shadow sections, section by section, as the
registry sync does (issue 21), with IoT's per-field metadata times.

moto stamps every field with the time of the shadow's last update, so the ops tests
(tests/ops/test_ops_replication_shadow_newer.py) cannot tell one section from the other. This
double keeps a `timestamp` per field, as the Device Shadow service documents ("metadata ... the
timestamp of each attribute in the state section"), stamps only the fields an update writes, and
answers an update with the new version and time, as UpdateThingShadow does.
"""

from __future__ import annotations

import io
import json
from typing import Any

from orchestrator.registry.calls import Caller, RetryPolicy
from orchestrator.registry.events import CLIENT_TOKEN_PREFIX
from orchestrator.registry.replicate import Outcome, Region, Replicator

SRC, DST = "eu-west-1", "eu-central-1"


class NotFound(Exception):
    response = {"Error": {"Code": "ResourceNotFoundException"}}


class _Meta:
    def __init__(self, region: str) -> None:
        self.region_name = region


class ShadowPlane:
    """iot-data's shadow calls with per-field times (a clock the test moves)."""

    def __init__(self, region: str) -> None:
        self.meta = _Meta(region)
        self.now = 1_000
        self.docs: dict[str, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []

    def get_thing_shadow(self, thingName: str, shadowName: str = "") -> dict[str, Any]:  # noqa: N803
        doc = self.docs.get(thingName)
        if doc is None:
            raise NotFound("No shadow exists with name")
        return {"payload": io.BytesIO(json.dumps({**doc, "timestamp": self.now}).encode())}

    def update_thing_shadow(self, thingName: str, payload: bytes, shadowName: str = "") -> dict[str, Any]:  # noqa: N803
        body = json.loads(payload)
        self.updates.append(body)
        doc = self.docs.setdefault(thingName, {"state": {}, "metadata": {}, "version": 0})
        for section, values in body["state"].items():
            state = doc["state"].setdefault(section, {})
            meta = doc["metadata"].setdefault(section, {})
            for key, value in (values or {}).items():
                if value is None:
                    state.pop(key, None)
                    meta.pop(key, None)
                else:
                    state[key] = value
                    meta[key] = {"timestamp": self.now}
        doc["version"] += 1
        return {"payload": io.BytesIO(json.dumps({"version": doc["version"], "timestamp": self.now}).encode())}


class Registry:
    def __init__(self, region: str, things: set[str]) -> None:
        self.meta = _Meta(region)
        self.things = things

    def describe_thing(self, thingName: str) -> dict[str, Any]:  # noqa: N803
        if thingName not in self.things:
            raise NotFound(thingName)
        return {"thingName": thingName, "attributes": {}}


class Store:
    """The applied table in memory (watermarks, written versions, leases)."""

    def __init__(self) -> None:
        self.marks: dict[str, tuple[int, int]] = {}
        self.written_versions: dict[str, int] = {}

    def get(self, key: str) -> tuple[int, int] | None:
        return self.marks.get(key)

    def advance(self, key: str, order: tuple[int, int], event_id: str = "") -> bool:
        if key in self.marks and self.marks[key] >= order:
            return False
        self.marks[key] = order
        return True

    def last_event(self, key: str) -> str | None:
        return None

    def written(self, key: str) -> int | None:
        return self.written_versions.get(key)

    def set_written(self, key: str, version: int) -> None:
        self.written_versions[key] = version

    def acquire(self, key: str, owner: str, now_ms: int, lease_ms: int) -> bool:
        return True

    def release(self, key: str, owner: str) -> None:
        pass

    def put_reconciliation(self, result: Any) -> None:
        pass

    def reconciliation(self) -> dict[str, Any] | None:
        return None


def _region(name: str, data: ShadowPlane) -> Region:
    retry = RetryPolicy(max_attempts=1, sleep=lambda _s: None)
    return Region(name, Caller(Registry(name, {"t"}), retry=retry), Caller(data, retry=retry))


def _event(desired: dict[str, Any], reported: dict[str, Any], *, at: dict[str, int], version: int) -> dict[str, Any]:
    """The shadow item of a source update document whose sections were last written at `at`."""
    from tests.ops.replication_world import shadow_item, stream_record

    current = {"state": {"desired": desired, "reported": reported}, "version": version,
               "metadata": {"desired": {k: {"timestamp": at["desired"]} for k in desired},
                            "reported": {k: {"timestamp": at["reported"]} for k in reported}}}
    doc = {"timestamp": max(at.values()), "current": current}
    return stream_record(shadow_item(doc, "t", SRC), SRC)


def _replicator(dst: ShadowPlane) -> Replicator:
    return Replicator(_region(DST, dst), Store(), lambda r: _region(r, ShadowPlane(r)), members=frozenset({SRC, DST}),
                      clock=lambda: 2_000.0)


def test_a_late_event_keeps_the_section_a_device_reported_here_and_applies_the_other() -> None:
    dst = ShadowPlane(DST)
    rep = _replicator(dst)
    dst.now = 1_000
    dst.update_thing_shadow(thingName="t", payload=json.dumps({"state": {"desired": {"led": "on"}}}).encode())
    dst.now = 1_100  # the device reconnected here and reported
    dst.update_thing_shadow(thingName="t", payload=json.dumps({"state": {"reported": {"fw": "2.0"}}}).encode())
    dst.updates.clear()
    # the source's change: desired at 1_050 (after the destination's desired), reported at 1_050
    # (before the device's report here); delivered late
    dst.now = 1_200
    result = rep.handle_batch([_event({"led": "off"}, {"fw": "1.0"}, at={"desired": 1_050, "reported": 1_050},
                                      version=7)])
    assert result.results[0].outcome is Outcome.APPLIED
    assert dst.docs["t"]["state"] == {"desired": {"led": "off"}, "reported": {"fw": "2.0"}}
    (update,) = dst.updates
    assert update["state"] == {"desired": {"led": "off"}}  # the reported section is not written
    assert update["clientToken"].startswith(CLIENT_TOKEN_PREFIX)


def test_an_event_older_in_every_differing_section_is_kept_and_writes_nothing() -> None:
    dst = ShadowPlane(DST)
    rep = _replicator(dst)
    dst.now = 1_100
    dst.update_thing_shadow(thingName="t", payload=json.dumps(
        {"state": {"desired": {"led": "on"}, "reported": {"fw": "2.0"}}}).encode())
    dst.updates.clear()
    result = rep.handle_batch([_event({"led": "off"}, {"fw": "1.0"}, at={"desired": 1_000, "reported": 1_000},
                                      version=3)])
    assert result.results[0].outcome is Outcome.KEPT and dst.updates == []


def test_a_newer_event_is_applied_over_our_own_earlier_write() -> None:
    dst = ShadowPlane(DST)
    rep = _replicator(dst)
    dst.now = 1_100  # our write of the source's state of 1_000 lands at 1_100
    first = rep.handle_batch([_event({"led": "on"}, {"fw": "1.0"}, at={"desired": 1_000, "reported": 1_000},
                                     version=1)])
    assert first.results[0].outcome is Outcome.APPLIED
    dst.now = 1_200
    second = rep.handle_batch([_event({"led": "off"}, {"fw": "1.1"}, at={"desired": 1_050, "reported": 1_050},
                                      version=2)])
    assert second.results[0].outcome is Outcome.APPLIED
    assert dst.docs["t"]["state"] == {"desired": {"led": "off"}, "reported": {"fw": "1.1"}}


def test_apply_shadow_the_entry_point_keeps_a_newer_section_too() -> None:
    from orchestrator.registry.snapshot import Shadow
    from orchestrator.registry.sync.apply import apply_shadow

    dst = ShadowPlane(DST)
    dst.now = 1_100
    dst.update_thing_shadow(thingName="t", payload=json.dumps({"state": {"reported": {"fw": "2.0"}}}).encode())
    dst.updates.clear()
    caller = Caller(dst, retry=RetryPolicy(max_attempts=1, sleep=lambda _s: None))
    older = Shadow("t", "", None, '{"fw":"1.0"}', 3, None, 1_000)
    assert apply_shadow(older, caller) is False and dst.updates == []
    newer = Shadow("t", "", '{"led":"on"}', '{"fw":"1.0"}', 4, 1_000, 1_000)  # desired only it has: copied
    assert apply_shadow(newer, caller) is True
    assert dst.docs["t"]["state"] == {"desired": {"led": "on"}, "reported": {"fw": "2.0"}}


class LocalKms:
    """KMS's GenerateMac / VerifyMac with a local HMAC-SHA256 key (one key: the multi-Region replica)."""

    key = b"k" * 32

    def generate_mac(self, KeyId: str, MacAlgorithm: str, Message: bytes) -> dict[str, Any]:  # noqa: N803
        import hashlib
        import hmac
        return {"Mac": hmac.new(self.key, Message, hashlib.sha256).digest()}

    def verify_mac(self, KeyId: str, MacAlgorithm: str, Mac: bytes, Message: bytes) -> dict[str, Any]:  # noqa: N803
        return {"MacValid": Mac == self.generate_mac(KeyId, MacAlgorithm, Message)["Mac"]}


def test_a_replica_write_over_8_kb_is_two_documents_each_signed_for_the_state_it_leaves() -> None:
    """The function's shadow path writes through the sync's executor (`plan.shadow_writes`): 300
    keys only the destination has make the one-document patch too big for AWS, so the deletions go
    first. Each document's token covers the state that document leaves behind, so the other
    region's function recognises both echoes (an unrecognised first one would replicate the
    half-written state back)."""
    from orchestrator.registry.replicate import ShadowSigner
    from orchestrator.registry.snapshot import shadow_from_document

    dst = ShadowPlane(DST)
    dst.now = 1_000
    extra = {f"k{i:03d}": 1 for i in range(300)}
    dst.update_thing_shadow(thingName="t", payload=json.dumps({"state": {"desired": extra}}).encode())
    dst.updates.clear()
    after: list[dict[str, Any]] = []
    write = dst.update_thing_shadow

    def recording(**kwargs: Any) -> dict[str, Any]:
        answer = write(**kwargs)
        after.append(json.loads(json.dumps(dst.docs["t"])))
        return answer

    dst.update_thing_shadow = recording  # type: ignore[method-assign,assignment]
    signer = ShadowSigner(LocalKms(), "alias/shadow")
    rep = Replicator(_region(DST, dst), Store(), lambda r: _region(r, ShadowPlane(r)), members=frozenset({SRC, DST}),
                     clock=lambda: 2_000.0, shadow_signer=signer)
    dst.now = 1_200
    result = rep.handle_batch([_event({"blob": "x" * 7000}, {}, at={"desired": 1_050, "reported": 1_050}, version=3)])

    assert result.results[0].outcome is Outcome.APPLIED
    assert [u["state"] for u in dst.updates] == [{"desired": dict.fromkeys(extra)}, {"desired": {"blob": "x" * 7000}}]
    assert dst.docs["t"]["state"]["desired"] == {"blob": "x" * 7000}
    for update, doc in zip(dst.updates, after, strict=True):
        left = shadow_from_document("t", "", doc)
        assert signer.verify(update["clientToken"], "t", "", left.desired, left.reported)
    assert dst.updates[0]["clientToken"] != dst.updates[1]["clientToken"]
