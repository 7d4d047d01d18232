"""`orchestrate preview`: previews in DAG order; markdown is the pull-request comment."""

from __future__ import annotations

import os

import click

from orchestrator.cli.app import command
from orchestrator.context import Context
from orchestrator.errors import OperationFailed


@command("preview")
@click.option("--region", metavar="R", help="Preview one region stack (then DNS and replication).")
@click.option("--all", "all_regions", is_flag=True, help="Preview every stack [default].")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True)
@click.option("--output", "output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")
@click.option("--max-parts", type=click.IntRange(1, 50), help="Markdown: at most N comment parts.")
@click.option("--base-ref", metavar="REF", default=lambda: os.environ.get("GITHUB_BASE_REF") and
              f"origin/{os.environ['GITHUB_BASE_REF']}", help="Git ref of the topology before this change "
              "(mermaid before/after) [default: origin/$GITHUB_BASE_REF].")
@click.option("--expect-no-changes", is_flag=True,
              help="Exit 1 when the programs would change anything. Compares the programs with the state "
                   "only: for changes made outside Pulumi, use `orchestrate drift`.")
@click.option("--parallel", default=4, show_default=True, type=click.IntRange(1, 32))
def preview(app: Context, region: str | None, all_regions: bool, fmt: str, output: str | None,
            max_parts: int | None, base_ref: str | None, expect_no_changes: bool, parallel: int) -> None:
    """Preview every stack in DAG order, with placeholders for upstream values not known yet.

    \b
    Examples:
      orchestrate preview --all
      orchestrate preview --all --format markdown --output preview.md   the PR comment
      orchestrate preview --all --expect-no-changes                     exit 1 when anything would change
    """
    from orchestrator.cli.options import exclusive_region
    from orchestrator.console import envelope
    from orchestrator.operations.guards import check_primary
    from orchestrator.preview.comment import join_parts
    from orchestrator.preview.render import render, render_json
    from orchestrator.stacks.graph import up_selection
    from orchestrator.stacks.preview import current_commit, preview_environment, topology_at

    check_primary(app)  # docs/architecture.md, "Who is primary"
    topology = app.topology()
    selection = up_selection(topology, exclusive_region(region, all_regions, required=False))
    before = topology_at(app.project_dir, app.config_path, app.env, base_ref) if base_ref else None
    result = preview_environment(app.engine(), topology, selection, before=before,
                                 commit=current_commit(app.project_dir), parallel=parallel,
                                 backend=app.backend_name)
    if app.json_output:
        fmt = "json"
    error = None
    if result.failed:
        error = OperationFailed(f"preview failed for {', '.join(s.stack for s in result.failed)}")
    elif expect_no_changes and any(s.has_changes for s in result.stacks):
        error = OperationFailed("changes found and --expect-no-changes was given")
    if output:  # the file in --format (JSON in its envelope, docs/json.md)
        text = app.console.dumps(envelope("preview", render_json(result), exit_code=error.exit_code if error else 0,
                                          message=error.one_line() if error else None)) if fmt == "json" \
            else join_parts(render(result, fmt, max_parts=max_parts))
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        app.console.info(f"preview of env {app.env} written to {output}")
    if app.json_output or (fmt == "json" and not output):
        app.console.document(render_json(result))  # enveloped by the root once the exit code is known
    elif not output:
        app.console.out(join_parts(render(result, fmt, max_parts=max_parts)))
    if error:
        raise error
