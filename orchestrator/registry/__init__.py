"""The IoT registry across regions: snapshot, sync (plan + apply), backup and restore.

Importing this package is cheap (no boto3): the CLI's `--help` must not pay for AWS.
"""

from orchestrator.registry.api import backup_age, backup_region, restore_region, sync_regions
from orchestrator.registry.backup import (
    BackupManifest,
    BackupResult,
    LoadedBackup,
    backup,
    latest_backup_age,
    load_backup,
    restore,
)
from orchestrator.registry.calls import Caller, CallStats, RateLimiter, RetriesExhausted, RetryPolicy
from orchestrator.registry.checkpoint import Checkpoint, checkpoint_path
from orchestrator.registry.policydoc import RegionRewrite
from orchestrator.registry.snapshot import (
    Certificate,
    Policy,
    PolicyTarget,
    RegistrySnapshot,
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
    plan_sync,
    sync_clients,
    sync_snapshot,
)

__all__ = [
    "DEFAULT_RATE", "Action", "BackupManifest", "BackupResult", "CallStats", "Caller", "Certificate",
    "Checkpoint", "Kind", "LoadedBackup", "OpError", "Policy", "PolicyTarget", "RateLimiter",
    "RegionRewrite", "RegistrySnapshot", "RetriesExhausted", "RetryPolicy", "SyncOp", "SyncOptions",
    "SyncPlan", "SyncPlanSummary", "SyncReport", "TargetKind", "Thing", "ThingGroup",
    "ThingPrincipal", "ThingType", "apply_sync", "backup", "backup_age", "backup_region",
    "checkpoint_path", "latest_backup_age", "load_backup", "plan_sync", "read_snapshot", "restore",
    "restore_region", "sync_clients", "sync_regions", "sync_snapshot", "with_pems",
]
