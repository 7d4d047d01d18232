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
    message = "drift found" if report.drifted else "a refresh preview failed" if bad else None
    if output:  # the file in --format (JSON in its envelope, docs/json.md)
        from pathlib import Path

        from orchestrator.console import envelope
        from orchestrator.state import atomic_write_text

        text = (app.console.dumps(envelope("drift", report.to_json(), exit_code=1 if bad else 0, message=message))
                if fmt == "json" else report.markdown() if fmt == "markdown" else "\n".join(report.lines()) + "\n")
        atomic_write_text(Path(output), text)
        app.notify(f"drift report written to {output}")
    if app.json_output or (fmt == "json" and not output):  # stdout holds the one JSON document
        app.console.document(report.to_json())
        if bad:
            raise Reported(ExitCode.FAILED, message or "")
        return
    if not output:
        app.console.out(report.markdown() if fmt == "markdown" else "\n".join(report.lines()) + "\n")
    if bad:
        raise Reported(ExitCode.FAILED)
