"""Stack commands: up, destroy, status, outputs, graph, recover."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from orchestrator.cli.app import command
from orchestrator.context import Context
from orchestrator.errors import ExitCode, InputRejected, Reported

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.stacks.runner import Runner, RunReport


def _runner(app: Context, parallel: int = 4, label: str | None = None) -> Runner:
    from orchestrator.stacks.runner import Runner

    progress = app.console.progress(label, unit="stacks", lines=False) if label else None
    return Runner(app.engine(), app.topology(), app.state, notify=app.notify, parallel=parallel, progress=progress)


def summary_markdown(report: RunReport, next_step: str | None = None) -> str:
    """A RunReport as markdown for a CI job summary: the verdict, then one row per stack."""
    verdict = "ok" if report.ok else ("LOCKED" if report.locked else "FAILED")
    lines = [f"### orchestrate {report.operation} {report.env}: {verdict}", "",
             "| stack | outcome | changes | seconds | message |", "|---|---|---|--:|---|"]
    for name, r in report.results.items():
        counts = " ".join(f"{k}={v}" for k, v in r.counts.items() if v) or "-"
        message = (r.message or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {r.outcome.value} | {counts} | {r.seconds:.1f} | {message} |")
    if not report.results:
        lines.append("| (none) | | | | |")
    lines += [f"- {notice}" for notice in report.notices]
    if next_step:
        lines += ["", f"next: `{next_step}`"]
    return "\n".join(lines) + "\n"


def write_summary(path: str | None, report: RunReport, next_step: str | None = None) -> None:
    """Append the report's markdown to `path` (e.g. $GITHUB_STEP_SUMMARY), scrubbed of secrets."""
    if not path:
        return
    from orchestrator.scrub import scrub

    with open(path, "a", encoding="utf-8") as f:
        f.write(scrub(summary_markdown(report, next_step)))


def render_report(app: Context, report: RunReport, next_step: str | None = None,
                  summary: str | None = None) -> None:
    """Print a RunReport (and, after a failure, what to run next), append it to the `summary` file
    when one is given, and leave with the contract's exit code."""
    write_summary(summary, report, next_step)
    for notice in report.notices:
        app.console.info(notice)
    if app.json_output:
        app.console.document({**report.to_json(), **({"next": next_step} if next_step else {})})
    else:
        app.console.result(f"{report.operation} {report.env}: {'ok' if report.ok else 'FAILED'}")
        for name, r in report.results.items():
            counts = " ".join(f"{k}={v}" for k, v in r.counts.items() if v)
            detail = f" - {r.message}" if r.message else ""
            app.console.result(f"  {name:<34} {r.outcome.value:<10} {counts}{detail}")
        if next_step:
            app.console.result(f"next: {next_step}")
    if report.locked:
        raise Reported(ExitCode.LOCKED)
    if not report.ok:
        raise Reported(ExitCode.FAILED)


@command("up")
@click.option("--region", metavar="R", help="The region stack to deploy (then DNS and replication).")
@click.option("--all", "all_regions", is_flag=True, help="Every region stack in parallel, then DNS, then replication.")
@click.option("--parallel", default=4, show_default=True, type=click.IntRange(1, 32),
              help="Most stacks of one wave run at once.")
@click.option("--resume", is_flag=True, help="Continue the last failed `up` from the failed stack.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--summary", "summary", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also append the result as markdown to FILE, failed or not (CI: $GITHUB_STEP_SUMMARY).")
@click.option("--allow-replace", "allow_replace", multiple=True, metavar="URN",
              help="Let up replace or delete this stateful resource of a live region (refused, exit 4, "
                   "otherwise); asked to confirm, --yes confirms. Repeatable.")
def up(app: Context, region: str | None, all_regions: bool, parallel: int, resume: bool, yes: bool,
       summary: str | None, allow_replace: tuple[str, ...]) -> None:
    """Deploy region stack(s), then DNS, then replication, in waves (shown, then confirmed).

    A replace or delete of a stateful resource (domain configuration, certificate, bucket, stream,
    table, thing) in a region that receives traffic or holds things is refused (exit 4) before any
    change, unless --allow-replace names it.

    \b
    Examples:
      orchestrate up --region eu-west-1           one region, then DNS (asks first)
      orchestrate --env prod up --all --yes       every region, in CI
      orchestrate up --all --resume --yes         continue from the stack that failed
      orchestrate up --all --yes --summary "$GITHUB_STEP_SUMMARY"   the result in the job summary
    """
    from orchestrator.cli.options import confirm, confirmer, exclusive_region, will_ask
    from orchestrator.operations.guards import check_primary
    from orchestrator.operations.replace_guard import aws_things_probe, check_up
    from orchestrator.stacks.graph import plan_waves, up_selection

    region = exclusive_region(region, all_regions)
    if summary is not None and not os.path.isdir(os.path.dirname(os.path.abspath(summary))):
        raise InputRejected(f"--summary {summary}: its directory does not exist",
                            hint="pass a file in an existing directory (CI: \"$GITHUB_STEP_SUMMARY\")")
    check_primary(app)  # a stale topology file never moves traffic back
    topology = app.topology()
    selection = up_selection(topology, region)
    # set-up problems (no CLI, no passphrase) come before the question
    runner = _runner(app, parallel, label=f"up {topology.env}")
    for i, wave in enumerate(plan_waves(topology, selection), 1):
        app.notify(f"up wave {i}: {', '.join(ref.name for ref in wave)}")
    preview = None
    if not yes and will_ask():  # what Pulumi would change, per stack, before the question
        from orchestrator.operations.change_preview import preview_changes, preview_lines

        preview = preview_changes(app.engine(), topology, selection)
        app.notify("what would change:")
        for line in preview_lines(preview):
            app.notify(f"  {line}")
    check_up(app.engine(), topology, selection, things=aws_things_probe(app, topology), allow=allow_replace,
             confirm=confirmer(yes), preview=preview, notify=app.notify)
    confirm(f"update {len(selection)} stacks of env {topology.env}", expected=topology.env, assume_yes=yes)
    render_report(app, runner.up(selection, resume=resume), summary=summary)


@command("destroy")
@click.option("--region", metavar="R", help="Destroy one region stack (guarded).")
@click.option("--all", "all_regions", is_flag=True, help="Destroy every stack of the environment.")
@click.option("--include-protected", is_flag=True,
              help="Also delete protected stateful resources (data lake, streams, tables, the backup vault and "
                   "its signing key).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--parallel", default=4, show_default=True, type=click.IntRange(1, 32))
def destroy(app: Context, region: str | None, all_regions: bool, include_protected: bool, yes: bool,
            parallel: int) -> None:
    """Destroy in reverse order: replication, DNS, regions. Protected resources stay by default.

    \b
    Examples:
      orchestrate destroy --region eu-central-1   a secondary (DNS first stops sending to it)
      orchestrate destroy --all                   everything but the protected data
      orchestrate destroy --all --include-protected --yes
    """
    from orchestrator.cli.options import confirm, exclusive_region
    from orchestrator.operations import guards
    from orchestrator.stacks.graph import all_stacks, region_stack

    topology = app.topology()
    region = exclusive_region(region, all_regions)
    if region is not None:
        guards.check_primary(app)  # the roles the guard reads must be the live ones
        guards.check_destroy_region(topology, region)
        if region in topology.secondaries:
            from orchestrator.cli.options import confirmer
            from orchestrator.operations.dns import remove_secondary
            from orchestrator.operations.next_steps import after_failed_destroy

            report = remove_secondary(app, region, include_protected=include_protected, confirm=confirmer(yes))
            render_report(app, report, after_failed_destroy(topology, region, report))
            return
    selection = all_stacks(topology) if region is None else [region_stack(topology, region)]
    for ref in reversed(selection):
        app.notify(f"destroy: {ref.name}")
    if region is None:
        confirm(f"destroy every stack of env {topology.env}", expected=topology.env, assume_yes=yes)
    else:
        confirm(f"destroy {selection[0].name}", expected=selection[0].name, assume_yes=yes)
    if include_protected:
        confirm(f"permanently delete the protected data (data lake, streams, tables, backup vault and its "
                f"signing key) of env {topology.env}",
                expected=f"delete {topology.env} data", assume_yes=yes)
    report = _runner(app, parallel).destroy(selection, include_protected=include_protected)
    if region is None:
        render_report(app, report)
    else:
        from orchestrator.operations.next_steps import after_failed_destroy

        render_report(app, report, after_failed_destroy(topology, region, report))


@command("status")
def status(app: Context) -> None:
    """Every stack of the environment: deployed or not, last result, resources, routing role, the
    backend, the newest registry backup, the last registry verification per secondary, locks held
    and runs in progress (exit 1 when the backup vault cannot be read).

    \b
    Examples:
      orchestrate status
      orchestrate --env prod status --json | jq '.stacks'
    """
    from orchestrator.operations.status import environment_status

    report = environment_status(app)
    if app.json_output:
        app.console.document(report.to_json())
    else:
        for line in report.lines():
            app.console.result(line)
    if not report.ok:
        raise Reported(ExitCode.FAILED, f"the backup vault could not be read: {report.backup.reason}")


@command("outputs")
@click.argument("stack")
@click.option("--show-secrets", is_flag=True, help="Show secret outputs in clear text.")
def outputs(app: Context, stack: str, show_secrets: bool) -> None:
    """A stack's outputs; secrets are masked unless --show-secrets.

    \b
    Examples:
      orchestrate outputs dev-region-eu-west-1
      orchestrate outputs dev-region-eu-west-1 --json | jq -r '.outputs.iotEndpoint'
    """
    from orchestrator.errors import OperationFailed
    from orchestrator.stacks.graph import all_stacks

    known = {s.name for s in all_stacks(app.topology())}
    if stack not in known:  # names come from the graph only: never a path, never another env's stack
        name = stack if len(stack) <= 80 else stack[:80] + "…"
        raise InputRejected(f"{name!r} is not a stack of env {app.env} (stacks: {', '.join(sorted(known))})")
    values = app.engine().outputs(stack)
    if values is None:
        raise OperationFailed(f"{stack} is not deployed")
    shown = {k: v.shown(show_secrets) for k, v in sorted(values.items())}
    if app.json_output:
        app.console.document({"stack": stack, "outputs": shown})
        return
    import json

    for key, value in shown.items():  # strings as they are, everything else as JSON (never a Python repr)
        app.console.result(f"{key}: {value if isinstance(value, str) else json.dumps(value, default=str)}")


@command("graph")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
def graph(app: Context, fmt: str) -> None:
    """The stack DAG and the region topology as a picture.

    With --json: the nodes (stacks, their kind, region, role), the edges (who consumes whose
    outputs; replication's targets) and the waves `up` runs them in, instead of a picture.

    \b
    Examples:
      orchestrate graph > stacks.mmd                 mermaid, for a README or a PR
      orchestrate graph --format dot | dot -Tsvg > stacks.svg
      orchestrate --env prod graph --json | jq '.waves'
    """
    from orchestrator.stacks import graph as g

    if app.json_output:
        app.console.document(g.graph_document(app.topology()))
        return
    render = g.render_mermaid if fmt == "mermaid" else g.render_dot
    app.console.out(render(app.topology()))


@command("recover")
@click.argument("stack", required=False)
@click.option("--all", "all_stacks", is_flag=True, help="Every stack of the env with a lock or pending operations.")
@click.option("--force", is_flag=True,
              help="Clear a lock that may still be alive (younger than 2 h, held elsewhere): only when you "
                   "know its run is dead, e.g. after a cancelled CI job.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def recover(app: Context, stack: str | None, all_stacks: bool, force: bool, yes: bool) -> None:
    """After a crashed run: show who holds the lock and since when, cancel it, refresh with pending
    creates cleared. A lock that may still be alive is refused (exit 4) unless --force.

    \b
    Examples:
      orchestrate recover dev-dns                 one stack
      orchestrate recover --all --yes             every locked stack of the env
    """
    from orchestrator.cli.options import confirmer
    from orchestrator.operations.recovery import recover_stack, stacks_to_recover

    if bool(stack) == all_stacks:
        raise InputRejected("say which stack: STACK or --all")
    names = stacks_to_recover(app) if all_stacks else [stack or ""]
    results = [recover_stack(app, name, confirm=confirmer(yes), force=force) for name in names]
    if app.json_output:
        app.console.document(results[0] if stack else {"recovered": results})
        return
    if not results:
        app.console.result(f"env {app.env}: no stack is locked or has pending operations")
    for result in results:
        lock = result["lock"]
        held = f"lock of {lock['holder']} (since {lock['since']}) cleared, " if lock else ""
        app.console.result(f"{result['stack']}: recovered ({held}{result['pending_cleared']} pending operations "
                           "cleared)")
