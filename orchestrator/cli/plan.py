"""`orchestrate plan`: offline, no credentials: the waves and every stack's resources under mocks."""

from __future__ import annotations

import click

from orchestrator.cli.app import command
from orchestrator.context import Context


@command("plan")
@click.option("--region", metavar="R", help="Plan one region stack (then DNS and replication).")
@click.option("--all", "all_regions", is_flag=True, help="Plan every region stack [default].")
def plan(app: Context, region: str | None, all_regions: bool) -> None:
    """Evaluate the programs under Pulumi mocks and print the waves and resources (no cloud).

    \b
    Examples:
      orchestrate plan --all                      the waves and every stack's resources
      orchestrate --env prod plan --region eu-west-1 --json | jq '.waves'
    """
    from orchestrator.cli.options import exclusive_region
    from orchestrator.stacks.offline import offline_plan

    result = offline_plan(app.topology(), exclusive_region(region, all_regions, required=False))
    if app.json_output:
        app.console.document(result.to_json())
        return
    for i, wave in enumerate(result.waves, 1):
        app.console.result(f"wave {i}: {', '.join(wave)}")
    for name, stack in result.stacks.items():
        app.console.result(f"\n{name} ({stack.kind}, {stack.region}): {len(stack.resources)} resources")
        for r in stack.resources:
            app.console.result(f"  {r.type}  {r.name}{'  [protected]' if r.protected else ''}")
