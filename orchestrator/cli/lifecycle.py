"""Lifecycle commands: promote-secondary, failover, failback."""

from __future__ import annotations

import click

from orchestrator.cli.app import command
from orchestrator.context import Context
from orchestrator.errors import ExitCode, Reported


def _render(app: Context, report) -> None:  # noqa: ANN001 - LifecycleReport, imported lazily
    for notice in report.notices:
        app.console.info(notice)
    if app.json_output:
        app.console.document(report.to_json())
    else:
        app.console.result(f"{report.operation} {report.region} (env {report.env}): "
                           f"{'ok' if report.ok else 'FAILED'}")
        for step in report.steps:
            app.console.result(f"  {step.step:<17} {step.status:<12} {step.detail}")
        for follow_up in report.follow_ups:
            app.console.result(f"next: {follow_up}")
    if not report.ok:
        app.console.info("fix the cause and re-run the same command: it resumes at the failed step")
        raise Reported(ExitCode.FAILED)


yes = click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
sync_rate = click.option("--sync-rate", type=click.FloatRange(0.1, 1000), default=None, metavar="N",
                         help="Cap on the registry sync's write calls per second per API "
                              "[default: each API's AWS quota].")


@command("promote-secondary")
@click.option("--region", required=True, metavar="R", help="The region to add as a secondary.")
@click.option("--routing", type=click.Choice(["failover", "latency"]), default="failover", show_default=True)
@click.option("--dry-run", is_flag=True,
              help="Run the preflight checks and preview what each step's stacks would change; "
                   "change nothing (exit 1 when the preflight fails).")
@sync_rate
@yes
def promote_secondary(app: Context, region: str, routing: str, dry_run: bool,
                      sync_rate: float | None, yes: bool) -> None:
    """Single -> multi-region: add R, verified step by step, DNS last (steps shown, then confirmed).

    \b
    Examples:
      orchestrate promote-secondary --region eu-central-1 --dry-run
      orchestrate promote-secondary --region eu-central-1 --routing latency
      orchestrate promote-secondary --region eu-central-1 --yes   resumes at a failed step
    """
    from orchestrator.cli.options import confirmer, known_region
    from orchestrator.operations.lifecycle import Lifecycle
    from orchestrator.topology import RoutingMode

    known_region(region, "--region")
    lifecycle = Lifecycle(app, sync_rate=sync_rate, confirm=None if dry_run else confirmer(yes))
    _render(app, lifecycle.promote(region, RoutingMode(routing), dry_run=dry_run))


@command("failover")
@click.option("--to", "to", required=True, metavar="R", help="The secondary that takes the traffic.")
@sync_rate
@yes
def failover(app: Context, to: str, sync_rate: float | None, yes: bool) -> None:
    """Send traffic to a secondary (final registry sync and in-flight jobs first when the primary answers).

    \b
    Examples:
      orchestrate failover --to eu-central-1
      orchestrate --env prod failover --to eu-central-1 --yes --json
    """
    from orchestrator.cli.options import confirmer, known_region
    from orchestrator.operations.lifecycle import Lifecycle

    known_region(to, "--to")
    _render(app, Lifecycle(app, sync_rate=sync_rate, confirm=confirmer(yes)).failover(to))


@command("failback")
@click.option("--to", "to", metavar="R", help="Region to return to [default: the one failed over from].")
@sync_rate
@yes
def failback(app: Context, to: str | None, sync_rate: float | None, yes: bool) -> None:
    """Return traffic to the old primary after syncing devices provisioned meanwhile and carrying jobs back.

    \b
    Examples:
      orchestrate failback                        to the region failed over from
      orchestrate failback --to eu-west-1 --yes
    """
    from orchestrator.cli.options import confirmer
    from orchestrator.operations.lifecycle import Lifecycle

    _render(app, Lifecycle(app, sync_rate=sync_rate, confirm=confirmer(yes)).failback(to))
