"""`orchestrate comment post`: create or update the environment's sticky preview comment on a PR."""

from __future__ import annotations

import click

from orchestrator.cli.app import command, group
from orchestrator.context import Context

comment = group("comment", help="Pull-request comments and the drift issue.",
                lazy={"post": "orchestrator.cli.comment:post", "issue": "orchestrator.cli.comment:issue"})


@command("post")
@click.option("--file", "file", required=True, type=click.Path(dir_okay=False),
              help="The markdown `orchestrate preview --format markdown --output F` wrote.")
@click.option("--repo", required=True, envvar="GITHUB_REPOSITORY", metavar="OWNER/NAME",
              help="Repository [env GITHUB_REPOSITORY].")
@click.option("--pr", required=True, type=click.IntRange(min=1), metavar="N", help="Pull request number.")
@click.option("--readiness", "readiness_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Add a readiness section: the JSON `orchestrate readiness --json` wrote.")
def post(app: Context, file: str, repo: str, pr: int, readiness_file: str | None) -> None:
    """Create or update this environment's preview comment (token: GITHUB_TOKEN).

    With --readiness, the comment ends with the regions that are NOT READY or UNKNOWN, why and the
    fix (or "all regions READY").
    """
    from orchestrator.errors import InputRejected
    from orchestrator.github import post_comment
    from orchestrator.preview.comment import split_parts

    try:
        with open(file, encoding="utf-8") as fh:  # (no pathlib: --help stays light)
            text = fh.read()
    except OSError as exc:
        raise InputRejected(f"{file}: cannot read the comment file: {exc.strerror}") from None
    parts = split_parts(text, app.env)
    ready_doc = None
    if readiness_file is not None:
        from orchestrator.preview import readiness as section

        ready_doc = section.load_file(readiness_file, env=app.env)
        parts = section.attach(parts, section.render_section(ready_doc), env=app.env)
    result = post_comment(parts, repo=repo, pr=pr, env=app.env)
    if app.json_output:
        doc: dict[str, object] = {
            "env": app.env, "created": result.created, "updated": result.updated,
            "unchanged": result.unchanged, "deleted": result.deleted, "urls": result.urls,
        }
        if ready_doc is not None:
            from orchestrator.preview.readiness import summary

            doc["readiness"] = summary(ready_doc)
        app.console.document(doc)
        return
    app.console.result(f"comment for env {app.env} on {repo}#{pr}: {result.summary()}")
    for url in result.urls:
        app.console.result(f"  {url}")


@command("issue")
@click.option("--file", "file", required=True, type=click.Path(dir_okay=False),
              help="The markdown `orchestrate drift --format markdown --output F` wrote.")
@click.option("--repo", required=True, envvar="GITHUB_REPOSITORY", metavar="OWNER/NAME",
              help="Repository [env GITHUB_REPOSITORY].")
@click.option("--resolved", is_flag=True, help="No drift any more: close the env's drift issue if one is open.")
def issue(app: Context, file: str, repo: str, resolved: bool) -> None:
    """Open or update the env's one drift issue, or close it when --resolved (token: GITHUB_TOKEN)."""
    from orchestrator.errors import InputRejected
    from orchestrator.github import sync_issue

    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise InputRejected(f"{file}: cannot read the issue file: {exc.strerror}") from None
    result = sync_issue(text, repo=repo, env=app.env, resolved=resolved)
    if app.json_output:
        app.console.document({"env": app.env, "action": result.action, "number": result.number, "url": result.url})
        return
    app.console.result(f"drift issue for env {app.env} on {repo}: {result.summary()} {result.url}".rstrip())
