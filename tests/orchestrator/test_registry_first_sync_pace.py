"""Issue 22, a first sync's apply at its quota floor: what kept the floor's buckets below their
quota, each pinned by order and concurrency (never by timing; bench/registry_phases.py measures).

- the entities plan lists policy attachments by target (a certificate's attachments together), so
  the apply, which loads an API's operations in plan order, never leaves a second policy's
  attachments until after the last certificate is registered;
- the reader reads the next chunk's principals while it hands one on (plans it, feeds it);
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from orchestrator.registry.snapshot import (
    Certificate,
    Coverage,
    Policy,
    PolicyTarget,
    RegistrySnapshot,
    TargetKind,
    Thing,
)
from orchestrator.registry.spill import SpillStore
from orchestrator.registry.sync import plan_sync
from orchestrator.registry.sync import run as run_mod
from orchestrator.registry.sync.apply import spill_ops, spilled_ops
from orchestrator.registry.sync.model import Kind, SyncOp, SyncOptions
from orchestrator.registry.sync.plan import MERGED_POLICIES, PlanPart, plan_entities_to

DOC = '{"Statement":[{"Action":"iot:Connect","Effect":"Allow","Resource":"*"}],"Version":"2012-10-17"}'


def _fleet(n: int, policies: int = 2) -> tuple[RegistrySnapshot, RegistrySnapshot]:
    """`n` certificates, each with policy p0 attached, every 4th also p1 (... p<policies-1>); a
    destination that has p0 on the first ten already."""
    names = [f"p{k:03d}" for k in range(policies)]
    certs = tuple(Certificate(f"{i:064x}", "ACTIVE") for i in range(n))
    targets = sorted(PolicyTarget(p, TargetKind.CERTIFICATE, c.id) for c in certs for k, p in enumerate(names)
                     if k == 0 or int(c.id, 16) % 4 == k % 4)
    dst_targets = tuple(PolicyTarget(names[0], TargetKind.CERTIFICATE, c.id) for c in certs[:10])
    src = RegistrySnapshot("eu-west-1", policies=tuple(Policy(p, DOC) for p in names), certificates=certs,
                           policy_targets=tuple(targets), coverage=Coverage.complete())
    dst = RegistrySnapshot("eu-central-1", policies=tuple(Policy(p, DOC) for p in names),
                           certificates=certs[:10], policy_targets=dst_targets)
    return src, dst


def _streamed(src: RegistrySnapshot, dst: RegistrySnapshot, chunk: int) -> list[SyncOp]:
    with SpillStore(memory=True) as store:
        table = store.table("ops")
        plan_entities_to(lambda ops: spill_ops(table, ops), src, dst, external=table, fetch_pems=True, chunk=chunk)
        return list(spilled_ops(table))


@pytest.mark.parametrize("chunk", [7, 2000])
def test_policy_attachments_are_planned_a_certificate_at_a_time(chunk: int) -> None:
    """Old order: every p000 attachment, then every p001 one: the apply registered the last
    certificate with a quarter of the attachments still to come (a 3 s tail at 10k things)."""
    src, dst = _fleet(200)
    ops = _streamed(src, dst, chunk)
    attached = [op for op in ops if op.kind is Kind.POLICY_ATTACHMENT]
    whole = plan_sync(src, dst, False, part=PlanPart.ENTITIES, fetch_pems=True)
    assert sorted(op.id for op in attached) == sorted(op.id for op in whole.ops if op.kind is Kind.POLICY_ATTACHMENT)
    assert not any(op.params["target"] == f"{i:064x}" and op.params["policy"] == "p000" for op in attached
                   for i in range(10))  # the destination has those
    # chunks in target order: a certificate's attachments are in the same or the next chunk
    position = {op.id: i for i, op in enumerate(attached)}
    for op in attached:
        if op.params["policy"] != "p000" and int(op.params["target"], 16) >= 10:
            first = f"policy_attachment create p000/certificate:{op.params['target']}"
            assert abs(position[op.id] - position[first]) < 2 * chunk, op.id
    if chunk >= len(attached):  # one chunk: the builder's order (policy, target) within it
        assert [op.params["policy"] for op in attached] == sorted(op.params["policy"] for op in attached)
    else:
        targets = [op.params["target"] for op in attached]
        chunks = [targets[i:i + chunk] for i in range(0, len(targets), chunk)]
        assert all(max(a) <= min(b) for a, b in zip(chunks, chunks[1:], strict=False))


def test_more_policies_than_merged_keep_policy_order_and_the_same_operations() -> None:
    src, dst = _fleet(30, policies=MERGED_POLICIES + 1)
    ops = _streamed(src, dst, 5)
    whole = plan_sync(src, dst, False, part=PlanPart.ENTITIES, fetch_pems=True)
    assert sorted(op.id for op in ops) == sorted(op.id for op in whole.ops)
    attached = [op.params["policy"] for op in ops if op.kind is Kind.POLICY_ATTACHMENT]
    assert attached == sorted(attached)


def _reader(monkeypatch: pytest.MonkeyPatch, n_chunks: int, *, journal: bool) -> tuple[run_mod._Run, list[str]]:
    """A `_Run` whose `_read_part` records when each chunk's read starts and ends (no AWS)."""
    names = [f"t{i:03d}" for i in range(n_chunks * 10)]
    events: list[str] = []
    started = [threading.Event() for _ in range(n_chunks)]
    lock = threading.Lock()

    def read_part(self: run_mod._Run, src: RegistrySnapshot, dst: RegistrySnapshot, record: Any,
                  src_names: list[str], dst_names: list[str], shadow_things: list[str], *,
                  restrict: bool = False) -> run_mod.DetailReads:
        k = names.index(shadow_things[0]) // 10
        with lock:
            events.append(f"read {k}")
        started[k].set()
        part = RegistrySnapshot(src.region)
        with lock:
            events.append(f"read {k} done")
        return run_mod.DetailReads(part, RegistrySnapshot(dst.region), frozenset(src_names))

    monkeypatch.setattr(run_mod._Run, "_read_part", read_part)
    monkeypatch.setattr(run_mod._Run, "_targets", lambda self, src, dst: (None, names, []))
    monkeypatch.setattr(run_mod._Run, "journal", lambda self, a, b: object() if journal else None)
    run = run_mod._Run(SyncOptions(), None, None, None, None, None, 0.0, {})  # type: ignore[arg-type]
    run._memo["started"] = started
    return run, events


@pytest.mark.parametrize("journal", [False, True])
def test_the_reader_reads_the_next_chunk_while_it_hands_one_on(monkeypatch: pytest.MonkeyPatch,
                                                                journal: bool) -> None:
    """Old: chunk k+1 was asked for only after chunk k was planned and fed. A --full pass's reads
    journal is written a chunk at a time: no read-ahead there."""
    n = 4
    run, events = _reader(monkeypatch, n, journal=journal)
    started: list[threading.Event] = run._memo["started"]
    src = RegistrySnapshot("eu-west-1", things=tuple(Thing(f"t{i:03d}") for i in range(n * 10)))
    handed: list[int] = []
    ahead_seen: list[bool] = []

    def on_part(part: run_mod.DetailReads) -> None:
        k = len(handed)
        handed.append(k)
        if k + 1 < n:  # bounded wait: the next chunk's read began while this one is handed on
            ahead_seen.append(started[k + 1].wait(timeout=0.5 if journal else 10))
        events.append(f"handed {k}")

    run.stream_details(src, RegistrySnapshot("eu-central-1"), on_part, chunk=10)
    assert handed == list(range(n))
    assert [e for e in events if e.startswith("handed")] == [f"handed {k}" for k in range(n)]  # in order
    if journal:
        assert ahead_seen == [False] * (n - 1)
        assert events == [e for k in range(n) for e in (f"read {k}", f"read {k} done", f"handed {k}")]
    else:
        assert ahead_seen == [True] * (n - 1)
        # never more than READ_AHEAD chunks beyond the one handed on
        for k in range(n):
            before = events[:events.index(f"handed {k}")]
            assert sum(e.startswith("read ") and not e.endswith("done") for e in before) <= k + 1 + run_mod.READ_AHEAD


def test_a_stopped_apply_stops_the_reader_within_its_read_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply stops taking (`FeedStopped` from `on_part`): the reader raises it, having started
    no chunk beyond the READ_AHEAD it was reading, and leaves none of them running."""
    from orchestrator.registry.sync.apply import FeedStopped

    n = 8
    run, events = _reader(monkeypatch, n, journal=False)
    src = RegistrySnapshot("eu-west-1", things=tuple(Thing(f"t{i:03d}") for i in range(n * 10)))

    def on_part(part: run_mod.DetailReads) -> None:
        raise FeedStopped("the apply taking these operations has stopped")

    with pytest.raises(FeedStopped):
        run.stream_details(src, RegistrySnapshot("eu-central-1"), on_part, chunk=10)
    started = [e for e in events if e.startswith("read ") and not e.endswith("done")]
    assert 1 <= len(started) <= 1 + run_mod.READ_AHEAD
    assert len([e for e in events if e.endswith("done")]) == len(started)  # none left running
