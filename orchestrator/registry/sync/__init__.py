"""Registry sync: a pure plan (what to change in the destination) and its idempotent application.

    model.py  operations, plans, summaries, reports, options (no I/O)
    plan.py   plan_sync: two snapshots in, a dependency-ordered SyncPlan out (pure)
    apply.py  apply_sync: the scheduler (dependencies first, APIs interleaved on a small pool)
              and the executor (one idempotent operation)
    run.py    one sync end to end: plan_snapshot_sync / sync_snapshot, plan_clients_sync / sync_clients
"""

from orchestrator.registry.sync.apply import apply_sync
from orchestrator.registry.sync.model import (
    DEFAULT_RATE,
    DEFAULT_READ_RATE,
    MAX_CONCURRENCY,
    Action,
    Kind,
    OpError,
    Progress,
    SyncOp,
    SyncOptions,
    SyncPlan,
    SyncPlanSummary,
    SyncReport,
)
from orchestrator.registry.sync.plan import plan_sync
from orchestrator.registry.sync.run import plan_clients_sync, plan_snapshot_sync, sync_clients, sync_snapshot

__all__ = [
    "DEFAULT_RATE", "DEFAULT_READ_RATE", "MAX_CONCURRENCY", "Action", "Kind", "OpError", "Progress", "SyncOp",
    "SyncOptions", "SyncPlan", "SyncPlanSummary", "SyncReport", "apply_sync", "plan_clients_sync",
    "plan_snapshot_sync", "plan_sync", "sync_clients", "sync_snapshot",
]
