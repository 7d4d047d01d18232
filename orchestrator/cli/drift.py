"""`orchestrate drift`: refresh previews per stack, in waves; exit 1 on drift."""

from __future__ import annotations

import click

from orchestrator.cli.app import command
from orchestrator.context import Context
from orchestrator.errors import ExitCode, Reported


@command("drift")
@click.option("--region", metavar="R", help="Only this region's stack.")
@click.option("--all", "all_regions", is_flag=True, help="Every stack of the environment, in waves.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default=None,
              help="text (default), markdown (the drift issue's body) or json (as --json).")
@click.option("--output", metavar="FILE", type=click.Path(dir_okay=False), help="Write the report here.")
@click.option("--parallel", default=4, show_default=True, type=click.IntRange(1, 32))
def drift(app: Context, region: str | None, all_regions: bool, fmt: str | None, output: str | None,
          parallel: int) -> None:
    """Refresh in preview-only mode (nothing changes) and list what differs from the state:
    resource, property, expected, actual (secrets masked). Exit 1 on drift or when a refresh fails.

    \b
    Examples:
      orchestrate drift --all
      orchestrate drift --all --format markdown --output drift.md   the drift issue's body
    """
    from orchestrator.cli.options import exclusive_region
    from orchestrator.operations.drift import detect_drift

    region = exclusive_region(region, all_regions)
    report = detect_drift(app, region, parallel=parallel)
    fmt = fmt or ("json" if app.json_output else "text")
    bad = report.drifted or report.failed
    if fmt == "json" and not output:  # the enveloped document (docs/json.md)
        app.console.document(report.to_json())
        if bad:
            raise Reported(ExitCode.FAILED, "drift found" if report.drifted else "a refresh preview failed")
        return
    if fmt == "json":
        from orchestrator.console import envelope

        message = "drift found" if report.drifted else "a refresh preview failed" if bad else None
        text = app.console.dumps(envelope("drift", report.to_json(), exit_code=1 if bad else 0, message=message))
    else:
        text = report.markdown() if fmt == "markdown" else "\n".join(report.lines()) + "\n"
    if output:
        from pathlib import Path

        from orchestrator.state import atomic_write_text

        atomic_write_text(Path(output), text)
        app.notify(f"drift report written to {output}")
    else:
        app.console.out(text)
    if bad:
        raise Reported(ExitCode.FAILED)
