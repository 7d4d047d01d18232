"""`rebuild-region --from-backup`: the primary is down and there is no secondary yet."""

from __future__ import annotations

import click

from orchestrator.cli.app import command
from orchestrator.cli.lifecycle import _render, sync_rate, yes
from orchestrator.context import Context
from orchestrator.errors import InputRejected


@command("rebuild-region")
@click.option("--from-backup", "from_backup", is_flag=True,
              help="Build from the signed registry backups (required: the source this command rebuilds from).")
@click.option("--region", required=True, metavar="R", help="The region to build; it becomes the primary.")
@click.option("--src", metavar="DIR|s3://…",
              help="A backup, or a location holding backups (the newest whose signed manifest verifies is used) "
                   "[default: $ORCHESTRATE_BACKUP_DEST, else the vault named by the home region stack's outputs].")
@click.option("--signing-key", metavar="awskms:KEY|secretsmanager:SECRET",
              help="Key the backups' signatures are verified with [default: $ORCHESTRATE_BACKUP_SIGNING_KEY, "
                   "else the key the home region's stack made beside the vault].")
@click.option("--max-age", "max_age", type=click.FloatRange(0.1, 24 * 366), default=48.0, show_default=True,
              metavar="HOURS", help="Refuse (exit 4) a backup older than this: the registry changes since it "
                                    "are lost.")
@click.option("--allow-older", is_flag=True, help="With --src naming one backup older than the newest valid one.")
@click.option("--force", is_flag=True, help="Rebuild although the primary answers its probe (it answers but "
                                            "cannot serve devices).")
@click.option("--dry-run", is_flag=True, help="Run the checks (probe, backup chosen and verified) and preview "
                                              "what each stack would change; change nothing.")
@sync_rate
@yes
def rebuild_region(app: Context, from_backup: bool, region: str, src: str | None, signing_key: str | None,
                   max_age: float, allow_older: bool, force: bool, dry_run: bool, sync_rate: float | None,
                   yes: bool) -> None:
    """Primary down, no secondary: build R from the newest verified backup and send traffic there.

    Never calls the failed primary (one probe aside); refuses when it answers (unless --force), and
    an unsigned (exit 4), changed (exit 2) or too old (exit 4) backup, before anything is
    touched. Then, shown and confirmed: R's region stack, the registry restored and read back equal
    to the backup, DNS to R, R recorded as primary in the topology file and the backend. Re-running
    resumes at a failed step. Runbook: docs/runbooks/rebuild-from-backups.md.

    \b
    Examples:
      orchestrate rebuild-region --from-backup --region eu-central-1 --dry-run
      orchestrate --env prod rebuild-region --from-backup --region eu-central-1
      orchestrate rebuild-region --from-backup --region eu-central-1 --src s3://vault/registry --yes --json
    """
    from orchestrator.cli.options import confirmer, known_region, will_ask
    from orchestrator.operations.rebuild import Rebuild, RebuildOptions
    from orchestrator.registry import SyncSettings
    from orchestrator.registry.quotas import resolve_quotas

    if not from_backup:
        raise InputRejected("say what to rebuild from: --from-backup (the signed registry backups)")
    known_region(region, "--region")
    settings = SyncSettings(rate=sync_rate, quotas=resolve_quotas(app.topology().quotas))
    options = RebuildOptions(region=region, src=src, signing_key=signing_key, force=force, max_age_h=max_age,
                             allow_older=allow_older, preview_first=not (dry_run or yes) and will_ask())
    _render(app, Rebuild(app, options, settings, confirm=None if dry_run else confirmer(yes)).run(dry_run=dry_run))
