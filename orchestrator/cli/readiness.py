"""`orchestrate readiness`: can each region take the traffic now?"""

from __future__ import annotations

import click

from orchestrator.cli.app import command
from orchestrator.context import Context
from orchestrator.errors import ExitCode, Reported


@command("readiness")
@click.option("--region", metavar="R", help="Only this member region (and the environment-wide rules).")
@click.option("--markdown", is_flag=True, help="A CI job summary / pull-request comment section on stdout.")
@click.option("--full", is_flag=True, help="Read every thing's principals and shadows (never sample).")
@click.option("--output", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write the markdown section here (e.g. $GITHUB_STEP_SUMMARY).")
def readiness(app: Context, region: str | None, markdown: bool, full: bool, output: str | None) -> None:
    """A scorecard per rule and region: READY, NOT READY or UNKNOWN, the evidence and the command
    that fixes it. Exit 0 only when every region (and the environment-wide rules) is READY; exit 1
    when any rule is NOT READY or UNKNOWN (as `drift` exits 1 on drift).

    \b
    Examples:
      orchestrate readiness
      orchestrate readiness --region eu-central-1 --json | jq '.rules[] | select(.status != "READY")'
      orchestrate readiness --markdown --output "$GITHUB_STEP_SUMMARY"
    """
    from orchestrator.errors import InputRejected
    from orchestrator.readiness import Settings, evaluate
    from orchestrator.readiness.run import probe_for

    topology = app.topology()
    if region is not None and region not in topology.regions:
        raise InputRejected(f"--region {region[:40]}: not a member of env {topology.env} "
                            f"({', '.join(topology.regions)})")
    report = evaluate(probe_for(app, Settings(full=full)), (region,) if region else None)
    if output:
        from pathlib import Path

        from orchestrator.state import atomic_write_text

        atomic_write_text(Path(output), report.markdown())
        app.notify(f"readiness section written to {output}")
    if app.json_output:
        app.console.document(report.to_json())
    elif markdown:
        app.console.out(report.markdown())
    else:
        for line in report.lines():
            app.console.result(line)
    if not report.ready:
        bad = sorted({f.region for f in report.not_ready()})
        raise Reported(ExitCode.FAILED, f"not ready: {', '.join(bad)} (see the rows above)")
