"""The IoT registry across regions: snapshot, sync (plan + apply), backup and restore.

Every operation has a plan-only twin with its own result type: `plan_registry_sync` ->
`SyncPlanSummary` beside `sync_registry` -> `SyncReport` (and `plan_restore` / `restore_registry`,
`plan_clients_sync` / `sync_clients`, `plan_snapshot_sync` / `sync_snapshot`,
`plan_backup_restore` / `restore_backup`).

Importing this package is cheap (no boto3): the CLI's `--help` must not pay for AWS.
"""

from orchestrator.registry.api import (
    SyncSettings,
    backup_age,
    backup_region,
    plan_registry_sync,
    plan_restore,
    restore_registry,
    sync_registry,
    verify_registry,
)
from orchestrator.registry.backup import (
    BackupManifest,
    BackupResult,
    LoadedBackup,
    backup,
    latest_backup_age,
    load_backup,
    plan_backup_restore,
    restore_backup,
)
from orchestrator.registry.calls import Caller, CallStats, RateLimiter, RetriesExhausted, RetryPolicy
from orchestrator.registry.checkpoint import Checkpoint
from orchestrator.registry.policydoc import RegionRewrite
from orchestrator.registry.quotas import DEFAULT_QUOTAS, AdaptiveLimiter, QuotaTable
from orchestrator.registry.snapshot import (
    Certificate,
    Policy,
    PolicyTarget,
    RegistrySnapshot,
    Shadow,
    TargetKind,
    Thing,
    ThingGroup,
    ThingPrincipal,
    ThingType,
    read_snapshot,
    with_pems,
)
from orchestrator.registry.sync import (
    DEFAULT_RATE,
    Action,
    Kind,
    OpError,
    SyncOp,
    SyncOptions,
    SyncPlan,
    SyncPlanSummary,
    SyncReport,
    apply_sync,
    plan_clients_sync,
    plan_snapshot_sync,
    plan_sync,
    sync_clients,
    sync_snapshot,
)
from orchestrator.registry.verify import KindDiff, VerifyReport

__all__ = [
    "DEFAULT_QUOTAS", "DEFAULT_RATE", "Action", "AdaptiveLimiter", "QuotaTable", "Shadow", "SyncSettings",
    "BackupManifest", "BackupResult", "CallStats", "Caller", "Certificate",
    "Checkpoint", "Kind", "LoadedBackup", "OpError", "Policy", "PolicyTarget", "RateLimiter",
    "RegionRewrite", "RegistrySnapshot", "RetriesExhausted", "RetryPolicy", "SyncOp", "SyncOptions",
    "SyncPlan", "SyncPlanSummary", "SyncReport", "TargetKind", "Thing", "ThingGroup",
    "ThingPrincipal", "ThingType", "apply_sync", "backup", "backup_age", "backup_region",
    "latest_backup_age", "load_backup", "plan_backup_restore", "plan_clients_sync", "plan_registry_sync",
    "plan_restore", "plan_snapshot_sync", "plan_sync", "read_snapshot", "restore_backup", "restore_registry",
    "sync_clients", "sync_registry", "sync_snapshot", "with_pems", "KindDiff", "VerifyReport",
    "verify_registry",
]
