"""One sync, end to end: read the regions, plan, and either summarize the plan or apply it.

Two entry points per source, one result type each:

    plan_snapshot_sync(src, dst_client, options)       -> SyncPlanSummary   (changes nothing)
    sync_snapshot(src, dst_client, options)            -> SyncReport
    plan_clients_sync(src_client, dst_client, options) -> SyncPlanSummary   (changes nothing)
    sync_clients(src_client, dst_client, options)      -> SyncReport

A plan-only run reads exactly what the applying run reads (both registries, and the PEMs of
certificates the destination lacks); it ignores the options about applying (checkpoint,
progress).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.errors import InputRejected
from orchestrator.registry.calls import CallCounts, Caller
from orchestrator.registry.checkpoint import Checkpoint
from orchestrator.registry.snapshot import RegistrySnapshot, pmap, read_snapshot, with_pems
from orchestrator.registry.sync.apply import apply_sync
from orchestrator.registry.sync.model import SyncOptions, SyncPlan, SyncPlanSummary, SyncReport
from orchestrator.registry.sync.plan import plan_sync


def plan_snapshot_sync(src: RegistrySnapshot, dst_client: Any, options: SyncOptions, *,
                       src_caller: Caller | None = None,
                       dst_caller: Caller | None = None) -> SyncPlanSummary:
    """What `sync_snapshot` would change in the destination (nothing is written)."""
    _, plan = _snapshot_run(src, dst_client, options, src_caller, dst_caller)
    return plan.summary()


def sync_snapshot(src: RegistrySnapshot, dst_client: Any, options: SyncOptions, *,
                  src_caller: Caller | None = None,
                  dst_caller: Caller | None = None) -> SyncReport:
    """Make the destination hold what `src` holds. `src_caller` (optional) fetches missing PEMs."""
    run, plan = _snapshot_run(src, dst_client, options, src_caller, dst_caller)
    return run.apply(plan, dst_client)


def plan_clients_sync(src_client: Any, dst_client: Any, options: SyncOptions, *,
                      src_caller: Caller | None = None,
                      dst_caller: Caller | None = None) -> SyncPlanSummary:
    """Read both regions (in parallel) and summarize what `sync_clients` would change."""
    _, plan = _clients_run(src_client, dst_client, options, src_caller, dst_caller)
    return plan.summary()


def sync_clients(src_client: Any, dst_client: Any, options: SyncOptions, *,
                 src_caller: Caller | None = None,
                 dst_caller: Caller | None = None) -> SyncReport:
    """Read both regions (in parallel), plan, and apply."""
    run, plan = _clients_run(src_client, dst_client, options, src_caller, dst_caller)
    return run.apply(plan, dst_client)


def _snapshot_run(src: RegistrySnapshot, dst_client: Any, options: SyncOptions, src_caller: Caller | None,
                  dst_caller: Caller | None) -> tuple[_Run, SyncPlan]:
    run = _Run.start(options, dst_caller or options.caller(dst_client, writes=True), src_caller)
    dst = read_snapshot(dst_client, caller=run.dst_caller, pems=False, concurrency=options.concurrency)
    return run, run.plan(src, dst)


def _clients_run(src_client: Any, dst_client: Any, options: SyncOptions, src_caller: Caller | None,
                 dst_caller: Caller | None) -> tuple[_Run, SyncPlan]:
    src_caller = src_caller or options.caller(src_client, writes=False)
    dst_caller = dst_caller or options.caller(dst_client, writes=True)
    if src_caller.region == dst_caller.region:
        raise InputRejected(f"source and destination are the same region ({src_caller.region})")
    run = _Run.start(options, dst_caller, src_caller)
    src, dst = pmap(lambda c: read_snapshot(c.client, caller=c, pems=False, concurrency=options.concurrency),
                    [src_caller, dst_caller], 2)
    return run, run.plan(src, dst)


@dataclass
class _Run:
    """One sync: its callers, and their counters at the start (callers may be reused)."""

    options: SyncOptions
    dst_caller: Caller
    src_caller: Caller | None
    started: float
    base: tuple[CallCounts, CallCounts | None]

    @classmethod
    def start(cls, options: SyncOptions, dst_caller: Caller, src_caller: Caller | None) -> _Run:
        base = (dst_caller.stats.counts(), src_caller.stats.counts() if src_caller else None)
        return cls(options, dst_caller, src_caller, time.monotonic(), base)

    def plan(self, src: RegistrySnapshot, dst: RegistrySnapshot) -> SyncPlan:
        options = self.options
        missing = [c.id for c in src.certificates if c.id not in dst.certificates_by_id and c.pem is None]
        if missing and self.src_caller is not None:
            src = with_pems(src, self.src_caller, missing, concurrency=options.concurrency)
        plan = plan_sync(src, dst, options.prune, region_rewrite=options.region_rewrite)
        if options.guard is not None:
            plan = options.guard.check(src, dst, plan)
        return plan

    def apply(self, plan: SyncPlan, dst_client: Any) -> SyncReport:
        options = self.options
        checkpoint = None
        if options.checkpoint_path is not None:
            checkpoint = Checkpoint(options.checkpoint_path, src_region=plan.src_region,
                                    dst_region=plan.dst_region, flush_every=options.flush_every)
        report = apply_sync(plan, dst_client, self.dst_caller.writes, checkpoint, options.progress,
                            concurrency=options.concurrency, caller=self.dst_caller)
        reads = retries = throttled = 0
        for caller, base in ((self.dst_caller, self.base[0]), (self.src_caller, self.base[1])):
            if caller is None or base is None:
                continue
            now = caller.stats.counts()
            reads += now.reads - base.reads
            retries += now.retries - base.retries
            throttled += now.throttled - base.throttled
        return replace(report, read_calls=reads, retries=retries, throttled=throttled,
                       duration_s=time.monotonic() - self.started)
