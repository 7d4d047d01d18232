"""Issue 22, a first sync's peak memory: the entities plan is handed to the spill table a chunk at
a time (`plan_entities_to`) instead of being held whole, the overlapped sync's `OpFeed` is
bounded (back-pressure on the reader, never a hang once the apply has stopped), and the
checkpoint does not hold the run's own marks."""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from orchestrator.registry.checkpoint import Checkpoint
from orchestrator.registry.snapshot import (
    Certificate,
    Coverage,
    Policy,
    PolicyTarget,
    PolicyVersion,
    RegistrySnapshot,
    TargetKind,
    Thing,
    ThingGroup,
    ThingType,
)
from orchestrator.registry.spill import SpillStore
from orchestrator.registry.sync import plan_sync
from orchestrator.registry.sync.apply import FeedStopped, OpFeed, spill_ops, spilled_ops
from orchestrator.registry.sync.model import Action, Kind, SyncOp
from orchestrator.registry.sync.plan import PlanPart, plan_entities_to

DOC = '{"Statement":[{"Action":"iot:Connect","Effect":"Allow","Resource":"*"}],"Version":"2012-10-17"}'
DOC2 = '{"Statement":[{"Action":"iot:Publish","Effect":"Allow","Resource":"*"}],"Version":"2012-10-17"}'


def _regions(n: int) -> tuple[RegistrySnapshot, RegistrySnapshot]:
    """A source with every kind the entities plan covers (new, changed and deprecated types, nested
    and dynamic groups, new, changed and tightened policies, certificates of every status, things
    created and updated, memberships added and removed, policy attachments added and detached),
    and a destination that has part of it."""
    types = (ThingType("sensor"), ThingType("old", deprecated=True), ThingType("both", deprecated=True),
             ThingType("back"))
    dst_types = (ThingType("both", deprecated=True), ThingType("back", deprecated=True))
    groups = (ThingGroup("root"), ThingGroup("child", parent="root", attributes={"a": "1"}),
              ThingGroup("dyn", query="thingName:x*"), ThingGroup("kept", description="new"))
    dst_groups = (ThingGroup("kept", description="old"),)
    policies = (Policy("device", DOC), Policy("extra", DOC2, versions=(PolicyVersion("2", DOC2, True),)))
    dst_policies = (Policy("extra", DOC, versions=(PolicyVersion("1", DOC, True), PolicyVersion("3", DOC2))),)
    statuses = ("ACTIVE", "INACTIVE", "REVOKED", "PENDING_TRANSFER", "PENDING_ACTIVATION")
    certs, dst_certs, things, dst_things, targets, dst_targets = [], [], [], [], [], []
    for i in range(n):
        cert = f"{i:064x}"
        certs.append(Certificate(cert, statuses[i % 5], pem=None, ca_certificate_id="ca" if i % 7 == 0 else None))
        if i % 3 == 0:
            dst_certs.append(Certificate(cert, "ACTIVE" if i % 2 else "REVOKED", arn=f"arn:cert/{cert}"))
        kind = ("sensor", "old", "both", "back", None)[i % 5]
        member = ("root", "child") if i % 2 else ("kept",)
        things.append(Thing(f"t{i:05d}", kind, {"n": str(i)}, member))
        if i % 4 == 0:
            dst_things.append(Thing(f"t{i:05d}", kind if i % 8 else None, {"n": str(i)}, ("kept",)))
        targets.append(PolicyTarget("device", TargetKind.CERTIFICATE, cert))
        if i % 5 == 0:
            dst_targets.append(PolicyTarget("extra", TargetKind.CERTIFICATE, cert))
    targets.append(PolicyTarget("extra", TargetKind.THING_GROUP, "root"))
    src = RegistrySnapshot("eu-west-1", types, groups, tuple(things), policies, tuple(certs),
                           policy_targets=tuple(targets), coverage=Coverage.complete())
    dst = RegistrySnapshot("eu-central-1", dst_types, dst_groups, tuple(dst_things), dst_policies,
                           tuple(dst_certs), policy_targets=tuple(dst_targets))
    return src, dst


def _fields(op: SyncOp) -> tuple[object, ...]:
    return (op.id, op.key, op.phase, op.tightens, frozenset(op.deps))


@pytest.mark.parametrize("chunk", [1, 7, 50, 10_000])
def test_the_streamed_entities_plan_is_plan_syncs_with_the_same_dependencies(chunk: int) -> None:
    src, dst = _regions(120)
    whole = plan_sync(src, dst, False, part=PlanPart.ENTITIES, fetch_pems=True)
    with SpillStore(memory=True) as store:
        table = store.table("ops")
        sizes: list[int] = []

        def sink(ops: tuple[SyncOp, ...]) -> None:
            sizes.append(len(ops))
            spill_ops(table, ops)

        streamed = plan_entities_to(sink, src, dst, external=table, fetch_pems=True, chunk=chunk)
        ops = list(spilled_ops(table))
    assert streamed.ops == ()
    assert sorted(map(_fields, ops)) == sorted(map(_fields, whole.ops))
    assert len(ops) == len(whole.ops) == sum(sizes)
    assert streamed.warnings == whole.warnings
    assert streamed.rewritten_policies == whole.rewritten_policies
    # the deprecations wait for every thing of their type, the things for their type's un-deprecation
    by_id = {op.id: op for op in ops}
    deprecate = by_id["thing_type update old (deprecate)"]
    assert {d for d in deprecate.deps if d.startswith("thing create")} == \
        {f"thing create t{i:05d}" for i in range(120) if i % 5 == 1 and i % 4}
    assert "thing_type update both (undeprecate)" in by_id["thing create t00002"].deps
    if chunk < 120:  # never the whole plan at once: at most a chunk's objects (and their relations)
        assert max(sizes[1:]) <= 3 * chunk  # a chunk of things with their memberships (1-2 each)


def _ops(n: int, start: int = 0) -> list[SyncOp]:
    return [SyncOp(Kind.THING, Action.CREATE, f"t{i}") for i in range(start, start + n)]


def test_the_feed_never_holds_more_than_its_bound_under_a_fast_producer() -> None:
    feed = OpFeed(maxsize=50)
    seen: list[int] = []
    taken: list[SyncOp] = []

    def producer() -> None:
        for i in range(40):
            feed.put(_ops(30, 30 * i))  # 1,200 operations, put faster than they are taken
        feed.close()

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    closed = False
    while not closed:
        seen.append(feed.pending())
        items, closed = feed.take(timeout=0.05)
        taken.extend(items)
        time.sleep(0.002)  # a slow consumer
    thread.join(5)
    assert not thread.is_alive()
    assert [op.name for op in taken] == [f"t{i}" for i in range(1200)]  # all of them, in order
    assert max(seen) <= 50 and feed.high_water <= 50


def test_a_stopped_consumer_does_not_hang_the_producer() -> None:
    feed = OpFeed(maxsize=10)
    outcome: list[BaseException | None] = []

    def producer() -> None:
        try:
            for i in range(100):
                feed.put(_ops(5, 5 * i))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test reports what the producer saw
            outcome.append(exc)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while feed.pending() < 10 and time.monotonic() < deadline:  # the producer now waits for room
        time.sleep(0.01)
    feed.stop()  # the apply stopped (failed): nobody takes any more
    thread.join(5)
    assert not thread.is_alive(), "put blocked forever after the consumer stopped"
    assert len(outcome) == 1 and isinstance(outcome[0], FeedStopped)
    with pytest.raises(FeedStopped):
        feed.put(_ops(1))


def test_a_runs_own_checkpoint_marks_are_journalled_not_held(tmp_path: Path) -> None:
    """A first sync marks ≈ 5.8 operations per thing; held as digests they were ≈ 0.46 KB per thing
    of its peak. Only an earlier run's marks (what a resume skips) are held."""
    path = tmp_path / "cp.json"
    keys = [f"thing create t{i:06d} #0123456789ab" for i in range(20_000)]
    cp = Checkpoint(path, src_region="a", dst_region="b", flush_every=25)
    cp.bind(keys)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key in keys:
            cp.mark_done(key)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    cp.close()
    assert held < 200_000, f"{held} bytes held for 20,000 marks"  # a set of digests: ≈ 1.6 MB
    assert len(cp) == 20_000 and len(Checkpoint.saved(path)["done"]) == 20_000
    resumed = Checkpoint(path, src_region="a", dst_region="b")
    resumed.bind(keys)
    assert all(resumed.is_done(k) for k in keys[::997])  # a resume skips them
