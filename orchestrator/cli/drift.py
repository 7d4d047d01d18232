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
    resource, property, expected, actual (secrets masked). Exit 1 on drift or when a refresh fails."""
    import json

    from orchestrator.cli.options import exclusive_region
    from orchestrator.operations.drift import detect_drift

    region = exclusive_region(region, all_regions)
    report = detect_drift(app, region, parallel=parallel)
    fmt = fmt or ("json" if app.json_output else "text")
    text = {"json": lambda: json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n",
            "markdown": report.markdown, "text": lambda: "\n".join(report.lines()) + "\n"}[fmt]()
    if output:
        from pathlib import Path

        from orchestrator.state import atomic_write_text

        atomic_write_text(Path(output), text)
        app.notify(f"drift report written to {output}")
    else:
        app.console.out(text)
    if report.drifted or report.failed:
        raise Reported(ExitCode.FAILED)
