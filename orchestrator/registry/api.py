"""The registry operations as the CLI calls them: one function per command, one result type each.

    plan_registry_sync(ctx, src, dst, ...) -> SyncPlanSummary    (registry sync --dry-run)
    sync_registry(ctx, src, dst, ...)      -> SyncReport         (registry sync)
    backup_region(ctx, env, region, dest)  -> BackupResult       (registry backup)
    plan_restore(ctx, src, dst, ...)       -> SyncPlanSummary    (registry restore --dry-run)
    restore_registry(ctx, src, dst, ...)   -> SyncReport         (registry restore)
    backup_age(ctx, dest, ...)             -> timedelta | None   (status)

Each makes its own clients (`orchestrator.aws`), validates its input before touching anything
(`InputRejected`, exit 2), refuses destinations outside the residency list (`InputRejected`,
exit 2) and maps botocore failures to the error family. Results have `to_json()`. A plan
function reads what its applying twin reads and writes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.aws import AwsContext, aws_errors, client
from orchestrator.errors import InputRejected
from orchestrator.registry.backup import (
    BackupResult,
    backup,
    is_s3,
    latest_backup_age,
    plan_backup_restore,
    restore_backup,
)
from orchestrator.registry.calls import Caller, RateLimiter, RetryPolicy
from orchestrator.registry.guards import PruneGuard, RestoreGuard
from orchestrator.registry.policydoc import RegionRewrite
from orchestrator.registry.signing import SIGNING_KEY_ENV, Signer, signer_from_spec
from orchestrator.registry.snapshot import read_snapshot
from orchestrator.registry.sync import (
    DEFAULT_RATE,
    Progress,
    SyncOptions,
    SyncPlanSummary,
    SyncReport,
    plan_clients_sync,
    sync_clients,
)


def _check_region(region: str, label: str) -> None:
    from orchestrator.topology import iot_regions

    if region not in iot_regions():
        raise InputRejected(f"{label}: {region!r} is not an AWS region where IoT Core is available")


def _check_residency(region: str, residency: Collection[str] | None) -> None:
    """A residency violation is bad input (exit 2), like the topology's own residency check."""
    if residency is not None and region not in residency:
        raise InputRejected(
            f"{region} is outside the environment's residency list ({', '.join(residency)}): "
            "registry data may not be copied there",
            hint="add the region to `residency` in the topology file, through a reviewed change",
        )


def _iot(ctx: AwsContext, region: str, concurrency: int) -> Any:
    return client(ctx, "iot", region, own_retries=True, max_pool_connections=concurrency + 4)


def _check_sync(src_region: str, dst_region: str, residency: Collection[str] | None) -> None:
    _check_region(src_region, "--from")
    _check_region(dst_region, "--to")
    if src_region == dst_region:
        raise InputRejected(f"--from and --to are the same region ({src_region})")
    _check_residency(dst_region, residency)


def plan_registry_sync(ctx: AwsContext, src_region: str, dst_region: str, *, prune: bool = False,
                       rate: float = DEFAULT_RATE, read_rate: float | None = None, concurrency: int = 1,
                       region_rewrite: RegionRewrite = RegionRewrite.DESTINATION,
                       residency: Collection[str] | None = None) -> SyncPlanSummary:
    """What `sync_registry` would change in `dst_region` (reads both regions, writes nothing)."""
    _check_sync(src_region, dst_region, residency)
    options = SyncOptions(prune=prune, rate=rate, read_rate=read_rate, concurrency=concurrency,
                          region_rewrite=region_rewrite)
    with aws_errors(f"registry sync {src_region} -> {dst_region}"):
        return plan_clients_sync(_iot(ctx, src_region, concurrency), _iot(ctx, dst_region, concurrency),
                                 options)


def sync_registry(ctx: AwsContext, src_region: str, dst_region: str, *, prune: bool = False,
                  rate: float = DEFAULT_RATE, read_rate: float | None = None, concurrency: int = 1,
                  checkpoint_path: Path | None = None, progress: Progress | None = None,
                  region_rewrite: RegionRewrite = RegionRewrite.DESTINATION,
                  residency: Collection[str] | None = None, guard: PruneGuard | None = None) -> SyncReport:
    """Copy the registry of `src_region` into `dst_region`. `checkpoint_path` (from
    `StateLayout.sync_checkpoint_path`) makes an interrupted run resumable. With `prune`, deletions
    need a `guard` (complete listing, budget, confirmation: `orchestrator.registry.guards`)."""
    _check_sync(src_region, dst_region, residency)
    if prune and guard is None:
        guard = PruneGuard()  # the default budget, and no confirmation: deletions are refused
    options = SyncOptions(prune=prune, rate=rate, read_rate=read_rate, concurrency=concurrency,
                          checkpoint_path=checkpoint_path, progress=progress, region_rewrite=region_rewrite,
                          guard=guard)
    with aws_errors(f"registry sync {src_region} -> {dst_region}"):
        return sync_clients(_iot(ctx, src_region, concurrency), _iot(ctx, dst_region, concurrency), options)


def _signer(ctx: AwsContext, spec: str | None, region: str) -> Signer:
    """The backup signing key (`--signing-key`, else $ORCHESTRATE_BACKUP_SIGNING_KEY); a KMS key ARN
    names its region, other references live in `region`."""
    import os

    spec = spec or os.environ.get(SIGNING_KEY_ENV)
    ref = (spec or "").partition(":")[2]
    if ref.startswith("arn:") and len(ref.split(":")) > 4 and ref.split(":")[3]:
        region = ref.split(":")[3]
    if region:
        _check_region(region, "signing key region")
    with aws_errors("reading the backup signing key"):
        return signer_from_spec(spec, kms=lambda: client(ctx, "kms", region),
                                secrets=lambda: client(ctx, "secretsmanager", region))


def backup_region(ctx: AwsContext, env: str, region: str, dest: str | Path, *,
                  stack_exports: Mapping[str, dict[str, Any]] | None = None,
                  read_rate: float = 20.0, concurrency: int = 1, kms_key_id: str | None = None,
                  now: datetime | None = None, signing_key: str | None = None,
                  key_region: str | None = None) -> BackupResult:
    """Snapshot the registry of `region` (with every certificate PEM) and write it to `dest`,
    its manifest signed with `signing_key` (`orchestrator.registry.signing`; required)."""
    _check_region(region, "--region")
    if not 1 <= concurrency <= 16:
        raise InputRejected(f"concurrency must be between 1 and 16, got {concurrency}")
    signer = _signer(ctx, signing_key, key_region or region)
    with aws_errors(f"registry backup of {region}"):
        iot = _iot(ctx, region, concurrency)
        caller = Caller(iot, reads=RateLimiter(read_rate), retry=RetryPolicy())
        snapshot = read_snapshot(iot, caller=caller, pems=True, concurrency=concurrency)
        s3 = client(ctx, "s3", region) if is_s3(str(dest)) else None
        return backup(snapshot, stack_exports or {}, dest, env=env, now=now, s3_client=s3,
                      kms_key_id=kms_key_id, signer=signer)


def plan_restore(ctx: AwsContext, src: str | Path, dst_region: str, *, env: str | None = None,
                 region: str | None = None, prune: bool = False, rate: float = DEFAULT_RATE,
                 read_rate: float | None = None, concurrency: int = 1,
                 region_rewrite: RegionRewrite = RegionRewrite.DESTINATION,
                 residency: Collection[str] | None = None, guard: RestoreGuard | None = None,
                 signing_key: str | None = None, key_region: str | None = None) -> SyncPlanSummary:
    """What `restore_registry` would change in `dst_region` (reads the backup and the region)."""
    _check_region(dst_region, "--to")
    _check_residency(dst_region, residency)
    verifier = _signer(ctx, signing_key, key_region or dst_region)
    options = SyncOptions(prune=prune, rate=rate, read_rate=read_rate, concurrency=concurrency,
                          region_rewrite=region_rewrite, guard=guard or RestoreGuard())
    with aws_errors(f"registry restore into {dst_region}"):
        s3 = client(ctx, "s3", dst_region) if is_s3(str(src)) else None
        return plan_backup_restore(src, _iot(ctx, dst_region, concurrency), options=options, env=env,
                                   region=region, s3_client=s3, verifier=verifier)


def restore_registry(ctx: AwsContext, src: str | Path, dst_region: str, *, env: str | None = None,
                     region: str | None = None, prune: bool = False, rate: float = DEFAULT_RATE,
                     read_rate: float | None = None, concurrency: int = 1,
                     checkpoint_path: Path | None = None, progress: Progress | None = None,
                     region_rewrite: RegionRewrite = RegionRewrite.DESTINATION,
                     residency: Collection[str] | None = None, guard: RestoreGuard | None = None,
                     signing_key: str | None = None, key_region: str | None = None) -> SyncReport:
    """Rebuild a backed-up registry in `dst_region`. `src` is one backup, or a location under
    which the newest backup (of `env`/`region`, when given) is used. The backup's signature is
    verified before anything is read from it; the restore is additive unless `guard` says
    otherwise (`RestoreGuard(overwrite=True, confirm=...)`)."""
    _check_region(dst_region, "--to")
    _check_residency(dst_region, residency)
    verifier = _signer(ctx, signing_key, key_region or dst_region)
    if prune and guard is not None and guard.prune is None:
        guard = RestoreGuard(guard.overwrite, guard.confirm, guard.notify, PruneGuard(confirm=guard.confirm))
    options = SyncOptions(prune=prune, rate=rate, read_rate=read_rate, concurrency=concurrency,
                          checkpoint_path=checkpoint_path, progress=progress, region_rewrite=region_rewrite,
                          guard=guard or RestoreGuard(prune=PruneGuard() if prune else None))
    with aws_errors(f"registry restore into {dst_region}"):
        s3 = client(ctx, "s3", dst_region) if is_s3(str(src)) else None
        return restore_backup(src, _iot(ctx, dst_region, concurrency), options=options, env=env,
                              region=region, s3_client=s3, verifier=verifier)


def backup_age(ctx: AwsContext, dest: str | Path, *, env: str | None = None,
               region: str | None = None) -> timedelta | None:
    """Age of the newest complete backup under `dest` (for `status`); None when there is none."""
    with aws_errors("registry backup listing"):
        s3 = client(ctx, "s3", region or "us-east-1") if is_s3(str(dest)) else None
        return latest_backup_age(dest, env=env, region=region, s3_client=s3)
