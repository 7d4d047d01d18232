"""The registry operations as the CLI calls them: one function per command, one result type each.

    plan_registry_sync(ctx, src, dst, ...) -> SyncPlanSummary    (registry sync --dry-run)
    sync_registry(ctx, src, dst, ...)      -> SyncReport         (registry sync)
    backup_region(ctx, env, region, dest)  -> BackupResult       (registry backup)
    plan_restore(ctx, src, dst, ...)       -> SyncPlanSummary    (registry restore --dry-run)
    restore_registry(ctx, src, dst, ...)   -> SyncReport         (registry restore)
    backup_age(ctx, dest, ...)             -> timedelta | None   (status)
    load_verified_backup(ctx, src, ...)    -> LoadedBackup       (rebuild-region: the backup chosen)
    restore_loaded(ctx, loaded, dst, ...)  -> SyncReport         (rebuild-region: restored)
    compare_with_backup(ctx, loaded, dst)  -> VerifyReport       (rebuild-region: read back)
    verify_registry(ctx, src, dst, ...)    -> VerifyReport       (registry verify: reads only)

Each makes its own clients (`orchestrator.aws`), validates its input before touching anything
(`InputRejected`, exit 2), refuses destinations outside the residency list (`InputRejected`,
exit 2) and maps botocore failures to the error family. Results have `to_json()`. A plan
function reads what its applying twin reads and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.aws import AwsContext, aws_errors, client
from orchestrator.errors import InputRejected
from orchestrator.registry import plane
from orchestrator.registry.backup import (
    PLANE,
    BackupResult,
    LoadedBackup,
    backup,
    is_s3,
    latest_backup_age,
    load_backup,
    plan_backup_restore,
    restore_backup,
)
from orchestrator.registry.calls import Caller, RetryPolicy
from orchestrator.registry.guards import PruneGuard, RestoreGuard
from orchestrator.registry.policydoc import RegionRewrite
from orchestrator.registry.pulse import ReadingPulse
from orchestrator.registry.quotas import AdaptiveLimiter, QuotaTable
from orchestrator.registry.signing import SIGNING_KEY_ENV, Signer, signer_from_spec
from orchestrator.registry.snapshot import read_snapshot
from orchestrator.registry.sync import (
    Progress,
    SyncOptions,
    SyncPlanSummary,
    SyncReport,
    plan_clients_sync,
    sync_clients,
    sync_snapshot,
)
from orchestrator.registry.verify import FIRST_DIFFERENCES, VerifyReport, verify_clients


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


def _iot_data(ctx: AwsContext, region: str, iot: Any, concurrency: int) -> Any:
    """The region's Device Shadow data plane (`iot-data`). With --endpoint-url every call goes
    there; otherwise to the account's `iot:Data-ATS` endpoint of that region (DescribeEndpoint)."""
    if ctx.endpoint_url:
        return client(ctx, "iot-data", region, own_retries=True, max_pool_connections=min(64, 16 * concurrency) + 4)
    address = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    return client(AwsContext(endpoint_url=f"https://{address}", profile=ctx.profile), "iot-data", region,
                  own_retries=True, max_pool_connections=min(64, 16 * concurrency) + 4)


@dataclass(frozen=True)
class SyncSettings:
    """The knobs of a sync or restore, as the CLI resolves them (one value, passed down)."""

    prune: bool = False
    rate: float | None = None  # caps every write API
    read_rate: float | None = None  # caps every read API
    quotas: QuotaTable | None = None  # None: AWS's default quotas
    concurrency: int = 4
    shadows: bool = True
    full: bool = False
    region_rewrite: RegionRewrite = RegionRewrite.DESTINATION

    uniform: bool = False  # `rate` for every write API, no quota table (moto has no quotas)
    distrust: str | None = None  # a reason not to trust the version record (a failed verification)
    retained_topics: tuple[str, ...] = ()  # MQTT retained-message prefixes carried (topology registry.retained_topics)

    def options(self, **more: Any) -> SyncOptions:
        quotas = None if self.uniform else (self.quotas or QuotaTable())
        return SyncOptions(prune=self.prune, rate=self.rate, read_rate=self.read_rate,
                           quotas=quotas, concurrency=self.concurrency,
                           shadows=self.shadows, full=self.full, region_rewrite=self.region_rewrite,
                           distrust=self.distrust, **more)


def _settings(settings: SyncSettings | None, legacy: Mapping[str, Any]) -> SyncSettings:
    """`settings`, or the keyword arguments of old (`rate=` then means one uniform write rate)."""
    unknown = set(legacy) - {"rate", "read_rate", "concurrency", "prune", "region_rewrite", "shadows", "full"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
    base = settings or SyncSettings()
    given = {k: v for k, v in legacy.items() if v is not None}
    if settings is None and given.get("rate") is not None:
        given["uniform"] = True
    return replace(base, **given)


def _check_sync(src_region: str, dst_region: str, residency: Collection[str] | None) -> None:
    _check_region(src_region, "--from")
    _check_region(dst_region, "--to")
    if src_region == dst_region:
        raise InputRejected(f"--from and --to are the same region ({src_region})")
    _check_residency(dst_region, residency)


def plan_registry_sync(ctx: AwsContext, src_region: str, dst_region: str, *,
                       settings: SyncSettings | None = None, state_path: Path | None = None,
                       residency: Collection[str] | None = None, guard: PruneGuard | None = None,
                       **legacy: Any) -> SyncPlanSummary:
    """What `sync_registry` would change in `dst_region` (reads both regions, writes nothing). With
    `prune`, the guard's rules run in dry-run mode: what a real run would refuse is a warning."""
    settings = _settings(settings, legacy)
    _check_sync(src_region, dst_region, residency)
    if settings.prune:
        guard = replace(guard or PruneGuard(), dry_run=True, confirm=None)
    options = settings.options(state_path=state_path, guard=guard if settings.prune else None)
    with aws_errors(f"registry sync {src_region} -> {dst_region}"):
        src, dst = _iot(ctx, src_region, settings.concurrency), _iot(ctx, dst_region, settings.concurrency)
        data = _data_pair(ctx, settings, (src_region, src), (dst_region, dst))
        summary = plan_clients_sync(src, dst, options, src_data=data[0], dst_data=data[1])
        summary = plane.merge_report(summary, plane.sync_plane(*_plane_callers(settings, src, dst),
                                     mode=settings.region_rewrite, prune=settings.prune, dry_run=True))
        return _with_retained(ctx, settings, summary, (src_region, src), (dst_region, dst), guard=None, dry_run=True,
                              state_path=state_path)


def sync_registry(ctx: AwsContext, src_region: str, dst_region: str, *,
                  settings: SyncSettings | None = None, checkpoint_path: Path | None = None,
                  state_path: Path | None = None, progress: Progress | None = None,
                  residency: Collection[str] | None = None, guard: PruneGuard | None = None,
                  checkpoint_store: Callable[[Path], None] | None = None,
                  state_store: Callable[[Path], None] | None = None, **legacy: Any) -> SyncReport:
    """Copy the registry (and shadows) of `src_region` into `dst_region`. `checkpoint_path` (from
    `StateLayout.sync_checkpoint_path`) makes an interrupted run resumable, and `checkpoint_store`
    (`StateLayout.push`) copies it to the shared backend while the run goes on; `state_path`
    (`StateLayout.sync_versions_path`) lets the next run skip what did not change. With `prune`,
    deletions need a `guard` (complete listing, budget, confirmation: `orchestrator.registry.guards`).
    `state_store` (`StateLayout.push`) copies the version record's in-progress mark to the shared
    backend before the first write. The report is `ok` only when what the run changed reads back
    equal (`SyncReport.verification`)."""
    settings = _settings(settings, legacy)
    _check_sync(src_region, dst_region, residency)
    if settings.prune and guard is None:
        guard = PruneGuard()  # the default budget, and no confirmation: deletions are refused
    options = settings.options(checkpoint_path=checkpoint_path, progress=progress, state_path=state_path,
                               guard=guard, checkpoint_store=checkpoint_store,
                               state_store=state_store if state_path is not None else None)
    with aws_errors(f"registry sync {src_region} -> {dst_region}"):
        src, dst = _iot(ctx, src_region, settings.concurrency), _iot(ctx, dst_region, settings.concurrency)
        data = _data_pair(ctx, settings, (src_region, src), (dst_region, dst))
        with ReadingPulse(progress, [src, dst, *data]):  # the reads before the apply's bar has a total
            report = sync_clients(src, dst, options, src_data=data[0], dst_data=data[1])
            report = plane.merge_report(report, plane.sync_plane(*_plane_callers(settings, src, dst),
                                        mode=settings.region_rewrite, prune=settings.prune, guard=guard))
            return _with_retained(ctx, settings, report, (src_region, src), (dst_region, dst), guard=guard,
                                  dry_run=False, state_path=state_path)


def verify_registry(ctx: AwsContext, src_region: str, dst_region: str, *, shadows: bool = True,
                    first: int = FIRST_DIFFERENCES, concurrency: int = 4, read_rate: float | None = None,
                    quotas: QuotaTable | None = None, region_rewrite: RegionRewrite | None = None,
                    residency: Collection[str] | None = None, retained_topics: tuple[str, ...] = ()) -> VerifyReport:
    """Compare the registries (and shadows) of two regions kind by kind, writing nothing
    (`orchestrator.registry.verify`). Reads run at the quotas (`read_rate` caps them)."""
    _check_sync(src_region, dst_region, residency)
    if not 1 <= concurrency <= 16:
        raise InputRejected(f"concurrency must be between 1 and 16, got {concurrency}")
    if first < 0:
        raise InputRejected(f"--first must be 0 or more, got {first}")
    table = (quotas or QuotaTable()).with_overrides(read_cap=read_rate)

    def caller(c: Any) -> Caller:
        return Caller(c, limits=AdaptiveLimiter(table), retry=RetryPolicy())

    with aws_errors(f"registry verify {src_region} -> {dst_region}"):
        a, b = _iot(ctx, src_region, concurrency), _iot(ctx, dst_region, concurrency)
        a_data = b_data = None
        if shadows:
            a_data = caller(_iot_data(ctx, src_region, a, concurrency))
            b_data = caller(_iot_data(ctx, dst_region, b, concurrency))
        report = verify_clients(caller(a), caller(b), a_data=a_data, b_data=b_data, rewrite=region_rewrite,
                                first=first, concurrency=concurrency)
        kinds, notes = plane.compare_plane(plane.read_plane(caller(a)), plane.read_plane(caller(b)),
                                           mode=region_rewrite, first=first)
        if retained_topics:
            from orchestrator.registry.retained import compare_retained, read_retained

            held = [read_retained(_retained_caller(ctx, r, c, table), retained_topics)
                    for r, c in ((src_region, a), (dst_region, b))]
            kinds = (*kinds, compare_retained(*held, first=first))
        return replace(report, kinds=(*report.kinds, *kinds), notes=(*report.notes, *notes))


def _plane_callers(settings: SyncSettings, *clients: Any) -> list[Caller]:
    table = ((None if settings.uniform else settings.quotas) or QuotaTable()).with_overrides(
        read_cap=settings.read_rate, write_cap=settings.rate)
    return [Caller(c, limits=AdaptiveLimiter(table), retry=RetryPolicy()) for c in clients]


def _retained_caller(ctx: AwsContext, region: str, iot: Any, table: QuotaTable) -> Caller:
    """The region's iot-data plane for retained messages (ListRetainedMessages pages of 200)."""
    return Caller(_iot_data(ctx, region, iot, 1), limits=AdaptiveLimiter(table), retry=RetryPolicy(),
                  page_size=200)


def _retained_table(settings: SyncSettings) -> QuotaTable:
    return ((None if settings.uniform else settings.quotas) or QuotaTable()).with_overrides(
        read_cap=settings.read_rate, write_cap=settings.rate)


def _with_retained(ctx: AwsContext, settings: SyncSettings, report: Any, src: tuple[str, Any], dst: tuple[str, Any],
                   *, guard: PruneGuard | None, dry_run: bool, state_path: Path | None = None) -> Any:
    """The registry report with the retained messages under the topology's prefixes carried (or planned).
    Beside the version record (`state_path`), what the last run left equal is not read again, unless
    the run distrusts its records (--full, --prune, a failed verification)."""
    if not settings.retained_topics:
        return report
    from orchestrator.errors import GuardRefused
    from orchestrator.registry.plane import PlaneReport
    from orchestrator.registry.retained import record_path, sync_retained

    table = _retained_table(settings)
    try:
        done = sync_retained(_retained_caller(ctx, *src, table), _retained_caller(ctx, *dst, table),
                             settings.retained_topics, prune=settings.prune, guard=guard, dry_run=dry_run,
                             record=record_path(state_path) if state_path is not None else None,
                             trust=not (settings.full or settings.distrust))
    except GuardRefused:
        raise
    except Exception as exc:  # the registry part stands; the retained messages are reported as not carried
        from orchestrator.registry.calls import error_code

        reason = f"{error_code(exc) or type(exc).__name__}: {exc}"
        done = PlaneReport(src[0], dst[0], (), 0, errors=(("read retained messages", reason),), dry_run=dry_run)
        if dry_run:
            done = PlaneReport(src[0], dst[0], (), 0, warnings=(f"retained messages not planned: {reason}",),
                               dry_run=True)
    return plane.merge_report(report, done)


def _retained_restore(ctx: AwsContext, settings: SyncSettings, region: str, iot: Any, guard: RestoreGuard | None,
                      *, dry_run: bool) -> Callable[[Any, Any], Any]:
    """Puts the backup's retained messages back after its registry (additive unless the guard overwrites)."""
    def then(saved: Any, report: Any) -> Any:
        if saved is None:  # a backup without retained messages
            return report
        from orchestrator.registry.retained import restore_retained

        done = restore_retained(saved, _retained_caller(ctx, region, iot, _retained_table(settings)),
                                overwrite=guard is not None and guard.overwrite, dry_run=dry_run)
        return plane.merge_report(report, done)
    return then


def _plane_restore(settings: SyncSettings, iot: Any, guard: RestoreGuard | None,
                   *, dry_run: bool) -> Callable[[Any, Any], Any]:
    """Restores the backup's plane (when it has one) after its registry: additive unless the guard
    overwrites (`orchestrator.registry.plane`)."""
    def then(saved: Any, report: Any) -> Any:
        if saved is None:  # a backup made before the plane was backed up
            return report
        done = plane.apply_plane(plane.PlaneSnapshot.from_json(saved), _plane_callers(settings, iot)[0],
                                 mode=settings.region_rewrite, dry_run=dry_run,
                                 additive=not (guard is not None and guard.overwrite))
        return plane.merge_report(report, done)
    return then


def _data_pair(ctx: AwsContext, settings: SyncSettings, *regions: tuple[str, Any]) -> list[Any | None]:
    if not settings.shadows:
        return [None for _ in regions]
    return [_iot_data(ctx, region, iot, settings.concurrency) for region, iot in regions]


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
                  read_rate: float | None = None, concurrency: int = 4, kms_key_id: str | None = None,
                  now: datetime | None = None, shadows: bool = True,
                  quotas: QuotaTable | None = None, signing_key: str | None = None,
                  key_region: str | None = None, retained_topics: tuple[str, ...] = ()) -> BackupResult:
    """Snapshot the registry of `region` (with every certificate PEM, and every thing's classic and
    named shadows unless `shadows=False`) and write it to `dest`, its manifest signed with
    `signing_key` (`orchestrator.registry.signing`; required). Reads run at the quotas."""
    _check_region(region, "--region")
    if not 1 <= concurrency <= 16:
        raise InputRejected(f"concurrency must be between 1 and 16, got {concurrency}")
    signer = _signer(ctx, signing_key, key_region or region)
    with aws_errors(f"registry backup of {region}"):
        iot = _iot(ctx, region, concurrency)
        table = (quotas or QuotaTable()).with_overrides(read_cap=read_rate)
        caller = Caller(iot, limits=AdaptiveLimiter(table), retry=RetryPolicy())
        data_caller = None
        if shadows:
            data_caller = Caller(_iot_data(ctx, region, iot, concurrency), limits=AdaptiveLimiter(table),
                                 retry=RetryPolicy())
        snapshot = read_snapshot(iot, caller=caller, pems=True, concurrency=concurrency, data_caller=data_caller)
        retained = None
        if retained_topics:
            from orchestrator.registry.retained import read_retained

            retained = read_retained(_retained_caller(ctx, region, iot, table), retained_topics).to_json()
        s3 = client(ctx, "s3", region) if is_s3(str(dest)) else None
        return backup(snapshot, stack_exports or {}, dest, env=env, now=now, s3_client=s3,
                      kms_key_id=kms_key_id, signer=signer, plane=plane.read_plane(caller).to_json(),
                      retained=retained)


def plan_restore(ctx: AwsContext, src: str | Path, dst_region: str, *, env: str | None = None,
                 region: str | None = None, settings: SyncSettings | None = None,
                 residency: Collection[str] | None = None, guard: RestoreGuard | None = None,
                 signing_key: str | None = None, key_region: str | None = None,
                 **legacy: Any) -> SyncPlanSummary:
    """What `restore_registry` would change in `dst_region` (reads the backup and the region)."""
    settings = _settings(settings, legacy)
    _check_region(dst_region, "--to")
    _check_residency(dst_region, residency)
    verifier = _signer(ctx, signing_key, key_region or dst_region)
    options = settings.options(guard=guard or RestoreGuard())
    with aws_errors(f"registry restore into {dst_region}"):
        s3 = client(ctx, "s3", dst_region) if is_s3(str(src)) else None
        iot = _iot(ctx, dst_region, settings.concurrency)
        data = _data_pair(ctx, settings, (dst_region, iot))[0]
        return plan_backup_restore(src, iot, options=options, env=env, region=region, s3_client=s3,
                                   dst_data=data, verifier=verifier,
                                   then=_plane_restore(settings, iot, guard, dry_run=True),
                                   retained=_retained_restore(ctx, settings, dst_region, iot, guard, dry_run=True))


def restore_registry(ctx: AwsContext, src: str | Path, dst_region: str, *, env: str | None = None,
                     region: str | None = None, settings: SyncSettings | None = None,
                     checkpoint_path: Path | None = None, progress: Progress | None = None,
                     residency: Collection[str] | None = None, guard: RestoreGuard | None = None,
                     signing_key: str | None = None, key_region: str | None = None,
                     allow_older: bool = False, **legacy: Any) -> SyncReport:
    """Rebuild a backed-up registry (and its shadows) in `dst_region`. `src` is one backup, or a
    location under which the newest valid backup (of `env`/`region`, when given; by signed
    creation time) is used. The backup's signature is verified before anything is read from it; a
    backup older than the newest valid one needs `allow_older`; the restore is additive unless
    `guard` says otherwise (`RestoreGuard(overwrite=True, confirm=...)`)."""
    settings = _settings(settings, legacy)
    _check_region(dst_region, "--to")
    _check_residency(dst_region, residency)
    verifier = _signer(ctx, signing_key, key_region or dst_region)
    prune = settings.prune
    if prune and guard is not None and guard.prune is None:
        guard = RestoreGuard(guard.overwrite, guard.confirm, guard.notify, PruneGuard(confirm=guard.confirm))
    options = settings.options(checkpoint_path=checkpoint_path, progress=progress,
                               guard=guard or RestoreGuard(prune=PruneGuard() if prune else None))
    with aws_errors(f"registry restore into {dst_region}"):
        s3 = client(ctx, "s3", dst_region) if is_s3(str(src)) else None
        iot = _iot(ctx, dst_region, settings.concurrency)
        data = _data_pair(ctx, settings, (dst_region, iot))[0]
        return restore_backup(src, iot, options=options, env=env, region=region, s3_client=s3, dst_data=data,
                              verifier=verifier, allow_older=allow_older,
                              then=_plane_restore(settings, iot, guard, dry_run=False),
                              retained=_retained_restore(ctx, settings, dst_region, iot, guard, dry_run=False))


def backup_age(ctx: AwsContext, dest: str | Path, *, env: str | None = None,
               region: str | None = None, signing_key: str | None = None,
               key_region: str | None = None) -> timedelta | None:
    """Age of the newest valid backup under `dest` (for `status`), by the rule a restore uses: the
    signed creation time, and with `signing_key` the newest whose signature verifies; None when
    there is none."""
    verifier = _signer(ctx, signing_key, key_region or region or "") if signing_key else None
    with aws_errors("registry backup listing"):
        s3 = client(ctx, "s3", region or "us-east-1") if is_s3(str(dest)) else None
        return latest_backup_age(dest, env=env, region=region, s3_client=s3, verifier=verifier)


# -- rebuilding a region from a backup (`rebuild-region --from-backup`) ------------------------------

def load_verified_backup(ctx: AwsContext, src: str | Path, *, env: str, region: str | None,
                         signing_key: str | None, key_region: str, s3_region: str) -> LoadedBackup:
    """The backup a rebuild restores: `src` itself when it is one backup, else the newest under it
    (of `env`/`region`) whose signed manifest verifies and whose files match their digests
    (`backup.load_backup`: unsigned is exit 4, changed exit 2 when none is valid). Every call goes
    to `key_region` (the signing key, unless its ARN names another) and `s3_region` (the vault):
    never to a failed primary."""
    _check_region(s3_region, "backup region")
    verifier = _signer(ctx, signing_key, key_region)
    with aws_errors(f"reading the registry backups under {src}"):
        s3 = client(ctx, "s3", s3_region) if is_s3(str(src)) else None
        return load_backup(src, env=env, region=region, s3_client=s3, verifier=verifier)


def restore_loaded(ctx: AwsContext, loaded: LoadedBackup, dst_region: str, *, settings: SyncSettings,
                   s3_region: str, residency: Collection[str] | None = None,
                   progress: Progress | None = None) -> SyncReport:
    """Rebuild `loaded` (verified by `load_verified_backup`) into `dst_region`, additively, its
    device-management plane after its registry, as `restore_registry` does; the plane file is
    checked against the signed manifest's digest before anything is written."""
    _check_region(dst_region, "--region")
    _check_residency(dst_region, residency)
    options = settings.options(progress=progress, guard=RestoreGuard())
    with aws_errors(f"registry restore into {dst_region}"):
        s3 = client(ctx, "s3", s3_region) if is_s3(loaded.location) else None
        saved_plane = loaded.extra(PLANE, s3_client=s3)
        iot = _iot(ctx, dst_region, settings.concurrency)
        data = _data_pair(ctx, settings, (dst_region, iot))[0]
        report = sync_snapshot(loaded.snapshot, iot, options, dst_data=data)
        return _plane_restore(settings, iot, None, dry_run=False)(saved_plane, report)


def compare_with_backup(ctx: AwsContext, loaded: LoadedBackup, dst_region: str, *, settings: SyncSettings,
                        s3_region: str) -> VerifyReport:
    """Read `dst_region` back and compare it with the backup, kind by kind (things, types, groups,
    certificates and status, attachments, policies, shadows, and the plane's kinds); reads only."""
    from orchestrator.registry.verify import compare, read_region

    table = (settings.quotas or QuotaTable()).with_overrides(read_cap=settings.read_rate)

    def caller(c: Any) -> Caller:
        return Caller(c, limits=AdaptiveLimiter(table), retry=RetryPolicy())

    with aws_errors(f"reading the registry of {dst_region} back"):
        s3 = client(ctx, "s3", s3_region) if is_s3(loaded.location) else None
        saved_plane = loaded.extra(PLANE, s3_client=s3)
        iot = _iot(ctx, dst_region, settings.concurrency)
        data = caller(_iot_data(ctx, dst_region, iot, settings.concurrency)) if settings.shadows else None
        restored = read_region(caller(iot), data, concurrency=settings.concurrency)
        report = compare(loaded.snapshot, restored, rewrite=settings.region_rewrite, shadows=settings.shadows)
        if saved_plane is None:
            return report
        kinds, notes = plane.compare_plane(plane.PlaneSnapshot.from_json(saved_plane), plane.read_plane(caller(iot)),
                                           mode=settings.region_rewrite)
        return replace(report, kinds=(*report.kinds, *kinds), notes=(*report.notes, *notes))
