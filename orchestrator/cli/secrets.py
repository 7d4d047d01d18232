"""`secrets change-provider`: re-encrypt stack secrets with another provider, explicitly."""

from __future__ import annotations

import click

from orchestrator.cli.app import command, group
from orchestrator.context import Context

secrets = group("secrets", lazy={"change-provider": "orchestrator.cli.secrets:change_provider"},
                help="How stack secrets are encrypted (passphrase or a KMS key).")


@command("change-provider")
@click.option("--to", "provider", required=True, metavar="URL", help="passphrase or awskms://… (the new provider).")
@click.option("--stack", metavar="STACK", help="One stack [default: every existing stack of the env].")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def change_provider(app: Context, provider: str, stack: str | None, yes: bool) -> None:
    """Re-encrypt the secrets of existing stacks (config and state) with another provider."""
    from orchestrator.cli.options import confirmer
    from orchestrator.operations.secrets import change_provider as change

    result = change(app, provider, stack=stack, confirm=confirmer(yes))
    if app.json_output:
        app.console.document(result.to_json())
        return
    app.console.result(f"secrets of {', '.join(result.changed)}: {result.provider}")
    if result.missing:
        app.console.result(f"not created yet (pass --secrets-provider when they are): {', '.join(result.missing)}")
