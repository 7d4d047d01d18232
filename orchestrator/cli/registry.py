"""`orchestrate registry sync|backup|restore`: the IoT registry across regions (boto3)."""

from __future__ import annotations

import sys
import time

import click

from orchestrator.cli.app import command, group
from orchestrator.context import Context
from orchestrator.errors import ExitCode, Reported


def progress_bar(app: Context, label: str):  # noqa: ANN201 - returns a Progress callback
    """A bar on stderr for long runs: redrawn in place on a terminal, a line every 10 % otherwise."""
    state = {"last": -1.0, "shown": -1}
    tty = sys.stderr.isatty()

    def draw(done: int, total: int) -> None:
        if total <= 0 or app.json_output and not tty:
            return
        pct = int(100 * done / total)
        now = time.monotonic()
        if tty and (now - state["last"] > 0.1 or done == total):
            filled = pct // 4
            app.console.err(f"\r{label} [{'#' * filled}{'.' * (25 - filled)}] {done}/{total}")
            if done == total:
                app.console.err("\n")
            state["last"] = now
        elif not tty and pct // 10 != state["shown"]:
            state["shown"] = pct // 10
            app.console.info(f"{label}: {done}/{total}")

    return draw


def _render(app: Context, result, lines: list[str]) -> None:  # noqa: ANN001
    if app.json_output:
        app.console.document(result.to_json())
    else:
        for line in lines:
            app.console.result(line)


def _counts(counts) -> list[str]:  # noqa: ANN001
    return [f"  {kind:<17} " + " ".join(f"{op}={n}" for op, n in ops.items() if n)
            for kind, ops in counts.items() if any(ops.values())]


registry = group("registry", help="Copy, back up and restore the IoT registry between regions.", lazy={
    "sync": "orchestrator.cli.registry:sync",
    "backup": "orchestrator.cli.registry:backup",
    "restore": "orchestrator.cli.registry:restore",
    "replay": "orchestrator.cli.registry:replay",
})


@command("sync")
@click.option("--from", "src", required=True, metavar="R1", help="Source region.")
@click.option("--to", "dst", required=True, metavar="R2", help="Destination region (must be in residency).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--prune", is_flag=True, help="Also delete what the source no longer has.")
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=None,
              help="Write calls per second (token bucket per API) [default: 10].")
@click.option("--concurrency", type=click.IntRange(1, 16), default=1, show_default=True)
def sync(app: Context, src: str, dst: str, dry_run: bool, prune: bool, rate: float | None,
         concurrency: int) -> None:
    """Copy thing types, groups, things, policies, certificates and attachments R1 -> R2."""
    from orchestrator.aws import AwsContext
    from orchestrator.registry import DEFAULT_RATE, plan_registry_sync, sync_registry

    ctx, residency = AwsContext(endpoint_url=app.endpoint_url), app.topology().residency
    if dry_run:
        plan = plan_registry_sync(ctx, src, dst, prune=prune, rate=rate or DEFAULT_RATE,
                                  concurrency=concurrency, residency=residency)
        lines = [f"dry run {src} -> {dst}: {plan.total} changes"] + _counts(plan.counts)
        lines += [f"  first {kind}: {', '.join(items)}" for kind, items in plan.first.items() if items]
        _render(app, plan, lines + [f"  warning: {w}" for w in plan.warnings])
        return
    result = sync_registry(ctx, src, dst, prune=prune, rate=rate or DEFAULT_RATE, concurrency=concurrency,
                           residency=residency, checkpoint_path=app.state.sync_checkpoint_path(app.env, src, dst),
                           progress=progress_bar(app, f"sync {src} -> {dst}"))
    lines = [f"sync {src} -> {dst}: {'ok' if result.ok else 'FAILED'}: {result.applied} applied, "
             f"{result.write_calls} write calls, {result.retries} retries, {result.duration_s:.1f}s"]
    lines += _counts(result.counts) + [f"  error: {e.op}: {e.code}: {e.message}" for e in result.errors[:20]]
    if len(result.errors) > 20:
        lines.append(f"  … and {len(result.errors) - 20} more errors (--json lists them all)")
    _render(app, result, lines + [f"  warning: {w}" for w in result.warnings])
    if not result.ok:
        raise Reported(ExitCode.FAILED)


@command("backup")
@click.option("--region", metavar="R", help="Region whose registry is snapshotted [default: the primary].")
@click.option("--dest", metavar="DIR|s3://bucket/prefix",
              help="Where backups go [default: $ORCHESTRATE_BACKUP_DEST, else the backup vault of the home "
                   "region's stack].")
@click.option("--skip-stack-state", is_flag=True, help="Registry only: no stack state exports.")
@click.option("--kms-key-id", metavar="KEY", help="SSE-KMS key for s3:// destinations [default: SSE-S3].")
def backup(app: Context, region: str | None, dest: str | None, skip_stack_state: bool,
           kms_key_id: str | None) -> None:
    """Snapshot the registry of R plus every stack's state export (secrets stay encrypted)."""
    from orchestrator.aws import AwsContext
    from orchestrator.operations.backups import backup_destination
    from orchestrator.registry import backup_region
    from orchestrator.stacks.graph import all_stacks

    region = region or app.topology().primary
    dest = dest or backup_destination(app)
    exports = {}
    if not skip_stack_state:
        engine = app.engine()
        for ref in all_stacks(app.topology()):
            if engine.info(ref.name).deployed:
                exports[ref.name] = engine.export(ref.name)
    result = backup_region(AwsContext(endpoint_url=app.endpoint_url), app.env, region, dest,
                           stack_exports=exports, kms_key_id=kms_key_id)
    _render(app, result, [f"backup of {region} written to {result.location} "
                          f"({len(exports)} stack exports)"])


@command("restore")
@click.option("--region", required=True, metavar="R", help="Region to rebuild the registry in.")
@click.option("--src", required=True, metavar="DIR|s3://…", help="A backup, or a location holding backups "
              "(the newest one is used).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=None)
def restore(app: Context, region: str, src: str, dry_run: bool, rate: float | None) -> None:
    """Rebuild a registry from a backup, idempotently (what exists is left alone)."""
    from orchestrator.aws import AwsContext
    from orchestrator.registry import DEFAULT_RATE, plan_restore, restore_registry

    ctx, residency = AwsContext(endpoint_url=app.endpoint_url), app.topology().residency
    if dry_run:
        plan = plan_restore(ctx, src, region, env=app.env, rate=rate or DEFAULT_RATE, residency=residency)
        _render(app, plan, [f"dry run restore -> {region}: {plan.total} changes"] + _counts(plan.counts))
        return
    result = restore_registry(ctx, src, region, env=app.env, rate=rate or DEFAULT_RATE, residency=residency,
                              progress=progress_bar(app, f"restore -> {region}"))
    _render(app, result, [f"restore -> {region}: {'ok' if result.ok else 'FAILED'}: {result.applied} applied, "
                          f"{result.write_calls} write calls"] + _counts(result.counts))
    if not result.ok:
        raise Reported(ExitCode.FAILED)


@command("replay")
@click.option("--from-dlq", "from_dlq", is_flag=True, required=True,
              help="Re-apply what continuous replication gave up on (its dead-letter queue).")
@click.option("--region", required=True, metavar="R",
              help="Region whose replication function's dead letters to replay.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def replay(app: Context, from_dlq: bool, region: str, yes: bool) -> None:
    """Re-read each dead letter's batch from the stream and apply it in R; what fails again stays."""
    from orchestrator.cli.options import confirm
    from orchestrator.operations.replication import check_replay_region, count_dead_letters, replay_from_dlq
    from orchestrator.registry.replicate import ReplayReport

    topology, ctx = app.topology(), app.aws()
    check_replay_region(topology, region)
    waiting = count_dead_letters(ctx, app.env, region)
    if waiting == 0:
        _render(app, ReplayReport(region, 0, 0, 0, 0, 0), [f"replay {region}: no dead letters"])
        return
    confirm(f"re-apply {waiting} dead-lettered replication batch(es) to the registry of {region}",
            expected=region, assume_yes=yes)
    result = replay_from_dlq(ctx, topology, region)
    line = (f"replay {region}: {'ok' if result.ok else 'INCOMPLETE'}: {result.replayed}/{result.messages} dead "
            f"letters re-applied ({result.records} records, {result.failed_records} failed again, "
            f"{result.expired} no longer in the stream)")
    _render(app, result, [line])
    if not result.ok:
        raise Reported(ExitCode.FAILED)

