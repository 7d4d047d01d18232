"""`orchestrate bootstrap`: the state bucket, its KMS key, the GitHub OIDC provider and the CI roles."""

from __future__ import annotations

import json

import click

from orchestrator.cli.app import command
from orchestrator.context import Context


@command("bootstrap")
@click.option("--repo", required=True, metavar="OWNER/NAME",
              help="The GitHub repository whose workflows assume the roles.")
@click.option("--state-region", required=True, metavar="R", help="Where the state lives (never the primary region).")
@click.option("--bucket", metavar="NAME", help="State bucket name [default: iot-<env>-state-<account>].")
@click.option("--print", "print_only", is_flag=True, help="Print the plan and every policy document; create nothing.")
@click.option("--yes", is_flag=True, help="Do not ask (automation).")
def bootstrap(app: Context, repo: str, state_region: str, bucket: str | None, print_only: bool, yes: bool) -> None:
    """Create what CI needs before the first `up`: the state bucket, its KMS key, the GitHub OIDC
    provider and the four CI roles, each trusted only for one GitHub environment of --repo.
    Idempotent: a second run changes nothing and says so. docs/runbooks/bootstrap.md lists the
    GitHub settings to make next.

    \b
    Examples:
      orchestrate bootstrap --env prod --repo acme/iot --state-region eu-central-1 --print
      orchestrate bootstrap --env prod --repo acme/iot --state-region eu-central-1 --yes
    """
    from orchestrator.aws import account_id, aws_errors
    from orchestrator.cli.options import confirmer, known_region
    from orchestrator.errors import OperationFailed
    from orchestrator.operations import bootstrap as op

    topology = app.topology()
    known_region(state_region, "--state-region")
    ctx = app.aws()
    with aws_errors("bootstrap"):
        spec = op.BootstrapSpec(env=topology.env, repo=repo, state_region=state_region, account="000000000000",
                                bucket=bucket or "", iam_path=topology.iam.path,
                                permissions_boundary=topology.iam.permissions_boundary,
                                account_roles=tuple(sorted(topology.accounts.items())))
        op.validate(spec, topology.primary)  # before any AWS call
        from dataclasses import replace

        spec = replace(spec, account=account_id(ctx))
        op.validate(spec, topology.primary)
        outcome = op.bootstrap(spec, op.make_clients(ctx, state_region), print_only=print_only,
                               confirm=confirmer(yes), notify=app.notify)
    if app.json_output:
        app.console.document(outcome.to_json())
    elif print_only:
        for line in op.plan_lines(outcome, False):
            app.console.result(line)
        app.console.result("bucket policy:\n" + json.dumps(op.bucket_policy(spec), indent=2))
        for r in outcome.roles:
            app.console.result(f"role {r.name} trust:\n{json.dumps(r.trust, indent=2)}")
            app.console.result(f"role {r.name} policy {op.POLICY_NAME}:\n{json.dumps(r.policy, indent=2)}")
        app.console.result("printed only: nothing was created")
    else:
        for change in outcome.changes:
            app.console.result(change)
        if not outcome.changes:
            app.console.result(f"nothing to change: env {spec.env} is bootstrapped")
        app.console.result(f"backend: {spec.backend_url}")
    if not print_only and not outcome.ok:
        bad = [name for name, good in outcome.checks if not good]
        raise OperationFailed(f"bootstrap: {len(bad)} setting(s) did not read back as asked: {', '.join(bad)}")
