"""`orchestrate registry sync|backup|restore`: the IoT registry across regions (boto3)."""

from __future__ import annotations

import sys
import time

import click

from orchestrator.cli.app import AppContext, command, global_options
from orchestrator.errors import ExitCode


def progress_bar(app: AppContext, label: str):  # noqa: ANN201 - returns a Progress callback
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


def _render(app: AppContext, result, lines: list[str]) -> None:  # noqa: ANN001
    if app.json_output:
        app.console.document(result.to_json())
    else:
        for line in lines:
            app.console.result(line)


def _counts(counts) -> list[str]:  # noqa: ANN001
    return [f"  {kind:<17} " + " ".join(f"{op}={n}" for op, n in ops.items() if n)
            for kind, ops in counts.items() if any(ops.values())]


def register(cli: click.Group) -> None:
    @cli.group("registry")
    @global_options
    def registry() -> None:
        """Copy, back up and restore the IoT registry between regions."""

    @command(registry, "sync")
    @click.option("--from", "src", required=True, metavar="R1", help="Source region.")
    @click.option("--to", "dst", required=True, metavar="R2", help="Destination region (must be in residency).")
    @click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
    @click.option("--prune", is_flag=True, help="Also delete what the source no longer has.")
    @click.option("--rate", type=click.FloatRange(0.1, 1000), default=None,
                  help="Write calls per second (token bucket per API) [default: 10].")
    @click.option("--concurrency", type=click.IntRange(1, 16), default=1, show_default=True)
    def sync(app: AppContext, src: str, dst: str, dry_run: bool, prune: bool, rate: float | None,
             concurrency: int) -> None:
        """Copy thing types, groups, things, policies, certificates and attachments R1 -> R2."""
        from orchestrator.aws import AwsContext
        from orchestrator.registry import DEFAULT_RATE, checkpoint_path, sync_regions

        topology = app.topology()
        result = sync_regions(
            AwsContext(endpoint_url=app.endpoint_url), src, dst, dry_run=dry_run, prune=prune,
            rate=rate or DEFAULT_RATE, concurrency=concurrency, residency=topology.residency,
            checkpoint_path=checkpoint_path(app.state_dir, app.env, src, dst),
            progress=progress_bar(app, f"sync {src} -> {dst}"))
        if dry_run:
            lines = [f"dry run {src} -> {dst}: {result.total} changes"] + _counts(result.counts)
            lines += [f"  first {kind}: {', '.join(items)}" for kind, items in result.first.items() if items]
        else:
            lines = [f"sync {src} -> {dst}: {'ok' if result.ok else 'FAILED'}: {result.applied} applied, "
                     f"{result.write_calls} write calls, {result.retries} retries, {result.duration_s:.1f}s"]
            lines += _counts(result.counts) + [f"  error: {e.op}: {e.code}: {e.message}" for e in result.errors[:20]]
            if len(result.errors) > 20:
                lines.append(f"  … and {len(result.errors) - 20} more errors (--json lists them all)")
        lines += [f"  warning: {w}" for w in result.warnings]
        _render(app, result, lines)
        if not dry_run and not result.ok:
            raise click.exceptions.Exit(int(ExitCode.FAILED))

    @command(registry, "backup")
    @click.option("--region", metavar="R", help="Region whose registry is snapshotted [default: the primary].")
    @click.option("--dest", metavar="DIR|s3://bucket/prefix",
                  help="Where backups go [default: $ORCHESTRATE_BACKUP_DEST, else the backup vault of the home "
                       "region's stack].")
    @click.option("--skip-stack-state", is_flag=True, help="Registry only: no stack state exports.")
    @click.option("--kms-key-id", metavar="KEY", help="SSE-KMS key for s3:// destinations [default: SSE-S3].")
    def backup(app: AppContext, region: str | None, dest: str | None, skip_stack_state: bool,
               kms_key_id: str | None) -> None:
        """Snapshot the registry of R plus every stack's state export (secrets stay encrypted)."""
        from orchestrator.aws import AwsContext
        from orchestrator.stacks.graph import all_stacks
        from orchestrator.registry import backup_region
        from orchestrator.operations.backups import backup_destination

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

    @command(registry, "restore")
    @click.option("--region", required=True, metavar="R", help="Region to rebuild the registry in.")
    @click.option("--src", required=True, metavar="DIR|s3://…", help="A backup, or a location holding backups "
                  "(the newest one is used).")
    @click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
    @click.option("--rate", type=click.FloatRange(0.1, 1000), default=None)
    def restore(app: AppContext, region: str, src: str, dry_run: bool, rate: float | None) -> None:
        """Rebuild a registry from a backup, idempotently (what exists is left alone)."""
        from orchestrator.aws import AwsContext
        from orchestrator.registry import DEFAULT_RATE, restore_region

        result = restore_region(AwsContext(endpoint_url=app.endpoint_url), src, region, env=app.env,
                                dry_run=dry_run, rate=rate or DEFAULT_RATE,
                                residency=app.topology().residency,
                                progress=progress_bar(app, f"restore -> {region}"))
        if dry_run:
            lines = [f"dry run restore -> {region}: {result.total} changes"] + _counts(result.counts)
        else:
            lines = [f"restore -> {region}: {'ok' if result.ok else 'FAILED'}: {result.applied} applied, "
                     f"{result.write_calls} write calls"] + _counts(result.counts)
        _render(app, result, lines)
        if not dry_run and not result.ok:
            raise click.exceptions.Exit(int(ExitCode.FAILED))
