"""`orchestrate registry sync|backup|restore`: the IoT registry across regions (boto3)."""

from __future__ import annotations

import sys
import time

import click

from orchestrator.cli.app import command, group
from orchestrator.context import Context
from orchestrator.errors import ExitCode, InputRejected, Reported


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
})


@command("sync")
@click.option("--from", "src", required=True, metavar="R1", help="Source region.")
@click.option("--to", "dst", required=True, metavar="R2", help="Destination region (must be in residency).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--prune", is_flag=True, help="Also delete what the source no longer has.")
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=None,
              help="Write calls per second (token bucket per API) [default: 10].")
@click.option("--concurrency", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--max-delete", metavar="N|P%", default=None,
              help="With --prune: most objects deleted, a number or a percentage of the destination's "
                   "[default: 5%].")
@click.option("--yes", is_flag=True, help="Confirm --prune's deletions without a prompt (needed without a terminal).")
def sync(app: Context, src: str, dst: str, dry_run: bool, prune: bool, rate: float | None,
         concurrency: int, max_delete: str | None, yes: bool) -> None:
    """Copy thing types, groups, things, policies, certificates and attachments R1 -> R2.

    Both regions must be members of the environment. --prune deletes only from a complete source
    listing, within the deletion budget, after confirmation."""
    from orchestrator.aws import AwsContext
    from orchestrator.cli.options import confirmer
    from orchestrator.registry import DEFAULT_RATE, plan_registry_sync, sync_registry
    from orchestrator.registry.guards import DeleteBudget, PruneGuard, check_member_regions

    topology = app.topology()
    ctx, residency = AwsContext(endpoint_url=app.endpoint_url), topology.residency
    check_member_regions(topology.regions, residency, src, dst, topology.source)
    budget = DeleteBudget.parse(max_delete)
    guard = PruneGuard(budget=budget, confirm=confirmer(yes), notify=app.notify,
                       record_path=app.state.listing_record_path(app.env, src, dst))
    if dry_run:
        plan = plan_registry_sync(ctx, src, dst, prune=prune, rate=rate or DEFAULT_RATE,
                                  concurrency=concurrency, residency=residency)
        lines = [f"dry run {src} -> {dst}: {plan.total} changes"] + _counts(plan.counts)
        lines += [f"  first {kind}: {', '.join(items)}" for kind, items in plan.first.items() if items]
        _render(app, plan, lines + [f"  warning: {w}" for w in plan.warnings])
        return
    checkpoint = app.state.sync_checkpoint_path(app.env, src, dst)
    listings = app.state.listing_record_path(app.env, src, dst)
    from orchestrator.registry.checkpoint import Checkpoint

    app.state.pull(checkpoint, merge=Checkpoint.merge_files)  # a sync interrupted elsewhere resumes here
    app.state.pull(listings)  # the counts of the last complete listings, wherever that sync ran
    try:
        result = sync_registry(ctx, src, dst, prune=prune, rate=rate or DEFAULT_RATE, concurrency=concurrency,
                               residency=residency, checkpoint_path=checkpoint,
                               progress=progress_bar(app, f"sync {src} -> {dst}"), guard=guard)
    finally:
        app.state.push(checkpoint)
        app.state.push(listings)
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
@click.option("--signing-key", metavar="awskms:KEY|secretsmanager:SECRET",
              help="Key that signs the manifest [default: $ORCHESTRATE_BACKUP_SIGNING_KEY].")
def backup(app: Context, region: str | None, dest: str | None, skip_stack_state: bool,
           kms_key_id: str | None, signing_key: str | None) -> None:
    """Snapshot the registry of R plus every stack's state export (secrets stay encrypted), signed."""
    from orchestrator.aws import AwsContext
    from orchestrator.operations.backups import backup_destination, check_destination
    from orchestrator.registry import backup_region
    from orchestrator.stacks.graph import all_stacks

    topology = app.topology()
    region = region or topology.primary
    if region not in topology.regions:
        raise InputRejected(f"--region {region} is not a member region of {topology.source}")
    dest = check_destination(app, dest or backup_destination(app))
    exports = {}
    if not skip_stack_state:
        engine = app.engine()
        for ref in all_stacks(app.topology()):
            if engine.info(ref.name).deployed:
                exports[ref.name] = engine.export(ref.name)
    result = backup_region(AwsContext(endpoint_url=app.endpoint_url), app.env, region, dest,
                           stack_exports=exports, kms_key_id=kms_key_id, signing_key=signing_key,
                           key_region=topology.home_region)
    _render(app, result, [f"backup of {region} written to {result.location} "
                          f"({len(exports)} stack exports)"])


@command("restore")
@click.option("--region", required=True, metavar="R", help="Region to rebuild the registry in.")
@click.option("--src", required=True, metavar="DIR|s3://…", help="A backup, or a location holding backups "
              "(the newest one is used).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=None)
@click.option("--overwrite", is_flag=True, help="Also change what exists (re-activate certificates, replace "
              "policy versions, re-attach) to match the backup; confirmed.")
@click.option("--signing-key", metavar="awskms:KEY|secretsmanager:SECRET",
              help="Key the backup's signature is verified with [default: $ORCHESTRATE_BACKUP_SIGNING_KEY].")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
def restore(app: Context, region: str, src: str, dry_run: bool, rate: float | None, overwrite: bool,
            signing_key: str | None, yes: bool) -> None:
    """Rebuild a registry from a signed backup. Additive: what exists is left as it is (and listed)."""
    from orchestrator.aws import AwsContext
    from orchestrator.cli.options import confirmer
    from orchestrator.registry import DEFAULT_RATE, plan_restore, restore_registry
    from orchestrator.registry.guards import RestoreGuard

    topology = app.topology()
    ctx, residency = AwsContext(endpoint_url=app.endpoint_url), topology.residency
    if dry_run:
        plan = plan_restore(ctx, src, region, env=app.env, rate=rate or DEFAULT_RATE, residency=residency,
                            guard=RestoreGuard(overwrite=overwrite), signing_key=signing_key,
                            key_region=topology.home_region)
        _render(app, plan, [f"dry run restore -> {region}: {plan.total} changes"] + _counts(plan.counts)
                + [f"  warning: {w}" for w in plan.warnings])
        return
    guard = RestoreGuard(overwrite=overwrite, confirm=confirmer(yes), notify=app.notify)
    result = restore_registry(ctx, src, region, env=app.env, rate=rate or DEFAULT_RATE, residency=residency,
                              progress=progress_bar(app, f"restore -> {region}"), guard=guard,
                              signing_key=signing_key, key_region=topology.home_region)
    _render(app, result, [f"restore -> {region}: {'ok' if result.ok else 'FAILED'}: {result.applied} applied, "
                          f"{result.write_calls} write calls"] + _counts(result.counts)
            + [f"  error: {e.op}: {e.code}: {e.message}" for e in result.errors[:20]]
            + [f"  warning: {w}" for w in result.warnings])
    if not result.ok:
        raise Reported(ExitCode.FAILED)
