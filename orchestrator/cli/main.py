"""`orchestrate`: the root click group and the one error-to-exit-code mapping.

Commands live in one module per command group (`plan`, `stacks`, `preview`, `lifecycle`,
`registry`, `comment`, `secrets`, `drift`, `drill`), each command a top-level function, loaded
lazily by the root group so `orchestrate --help` imports nothing but click. Each command is thin:
parse, call an operation, render through the injected console.
"""

from __future__ import annotations

from typing import Any

import click

from orchestrator import __version__
from orchestrator.cli.app import Deps, LazyGroup, kind_of
from orchestrator.console import Console
from orchestrator.errors import ExitCode, OrchestrateError, Reported

COMMANDS = {
    "plan": "orchestrator.cli.plan:plan",
    "up": "orchestrator.cli.stacks:up",
    "destroy": "orchestrator.cli.stacks:destroy",
    "status": "orchestrator.cli.stacks:status",
    "outputs": "orchestrator.cli.stacks:outputs",
    "graph": "orchestrator.cli.stacks:graph",
    "recover": "orchestrator.cli.stacks:recover",
    "preview": "orchestrator.cli.preview:preview",
    "promote-secondary": "orchestrator.cli.lifecycle:promote_secondary",
    "failover": "orchestrator.cli.lifecycle:failover",
    "failback": "orchestrator.cli.lifecycle:failback",
    "rebuild-region": "orchestrator.cli.rebuild:rebuild_region",
    "registry": "orchestrator.cli.registry:registry",
    "comment": "orchestrator.cli.comment:comment",
    "secrets": "orchestrator.cli.secrets:secrets",
    "drift": "orchestrator.cli.drift:drift",
    "drill": "orchestrator.cli.drill:drill",
    "readiness": "orchestrator.cli.readiness:readiness",
    "device-check": "orchestrator.cli.device:device_check",
    "bootstrap": "orchestrator.cli.bootstrap:bootstrap",
}
# The first sentence of each command's help: `orchestrate --help` lists these without importing a
# command module (a test keeps them equal to the commands' own).
SUMMARIES = {
    "plan": "Evaluate the programs under Pulumi mocks and print the waves and resources (no cloud).",
    "up": "Deploy region stack(s), then DNS, then replication, in waves (shown, then confirmed).",
    "destroy": "Destroy in reverse order: replication, DNS, regions.",
    "status": "Every stack of the environment: deployed or not, last result, resources, routing role, the "
              "backend, the newest registry backup, the last registry verification per secondary, locks held "
              "and runs in progress (exit 1 when the backup vault cannot be read).",
    "outputs": "A stack's outputs; secrets are masked unless --show-secrets.",
    "graph": "The stack DAG and the region topology as a picture.",
    "recover": "After a crashed run: show who holds the lock and since when, cancel it, refresh with pending "
               "creates cleared.",
    "preview": "Preview every stack in DAG order, with placeholders for upstream values not known yet.",
    "promote-secondary": "Single -> multi-region: add R, verified step by step, DNS last (steps shown, then "
                         "confirmed).",
    "failover": "Send traffic to a secondary (final registry sync and in-flight jobs first when the primary answers).",
    "failback": "Return traffic to the old primary after syncing devices provisioned meanwhile and carrying jobs back.",
    "rebuild-region": "Primary down, no secondary: build R from the newest verified backup and send traffic there.",
    "registry": "Copy, back up, restore and verify the IoT registry between regions.",
    "comment": "Pull-request comments and the drift issue.",
    "secrets": "How stack secrets are encrypted (passphrase or a KMS key).",
    "drift": "Refresh in preview-only mode (nothing changes) and list what differs from the state: resource, "
             "property, expected, actual (secrets masked).",
    "drill": "A failover game day: kill a region, measure what devices see (RTO, lost messages, shadows).",
    "readiness": "A scorecard per rule and region: READY, NOT READY or UNKNOWN, the evidence and the command "
                 "that fixes it.",
    "device-check": "Score a device's reconnect profile (SNI, DNS re-resolved per attempt, jittered capped backoff, "
                    "resubscribe on sessionPresent=0) and say what to change.",
    "bootstrap": "Create what CI needs before the first `up`: the state bucket, its KMS key, the GitHub OIDC "
                 "provider and the four CI roles, each trusted only for one GitHub environment of --repo.",
}


# `orchestrate --help` lists the commands in the order a platform's life uses them.
SECTIONS = [
    ("Lifecycle (in order: one region -> promote -> failover -> failback)",
     ("plan", "preview", "up", "promote-secondary", "failover", "failback", "rebuild-region", "destroy")),
    ("Inspect", ("status", "readiness", "outputs", "graph", "drift")),
    ("Operate", ("registry", "recover", "drill", "device-check", "comment", "secrets", "bootstrap")),
]
ARGV_KEY = "orchestrate.argv"


class OrchestrateGroup(LazyGroup):
    """Maps the error family to exit codes in one place, for every command and subgroup, and emits
    the run's one JSON document (console.envelope) once the outcome is known."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = list(args)
        ctx.ensure_object(Deps)  # one Deps (and console) for the root and every command under it
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:  # a bad global option: click prints it; --json also gets a document
            self._finish(ctx, exc.exit_code, exc.format_message())
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
        except Reported as exc:  # the command already rendered its outcome
            if exc.message:
                _console(ctx).error(_scrubbed(exc.one_line()))
            self._finish(ctx, int(exc.exit_code), exc.one_line() if exc.message else None)
            raise click.exceptions.Exit(int(exc.exit_code)) from None
        except OrchestrateError as exc:
            _console(ctx).error(_scrubbed(exc.one_line()))
            self._finish(ctx, int(exc.exit_code), exc.one_line())
            raise click.exceptions.Exit(int(exc.exit_code)) from None
        except click.exceptions.Exit as exc:
            if exc.exit_code or _console(ctx).has_document:  # not `--help`'s exit 0
                self._finish(ctx, exc.exit_code, None)
            raise
        except click.ClickException as exc:  # a usage error: click prints it to stderr
            self._finish(ctx, exc.exit_code, exc.format_message())
            raise
        except click.exceptions.Abort:
            self._finish(ctx, int(ExitCode.FAILED), "aborted")
            raise
        except KeyboardInterrupt:
            _console(ctx).error("interrupted")
            self._finish(ctx, 130, "interrupted")
            raise click.exceptions.Exit(130) from None
        except Exception as exc:  # an unexpected failure: one line, the traceback only with -v
            console = _console(ctx)
            mapped = _setup_error(exc)
            if mapped is not None:  # a botocore set-up error raised outside `aws_errors` (a profile, SSO)
                console.error(_scrubbed(mapped.one_line()))
                self._finish(ctx, int(mapped.exit_code), mapped.one_line())
                raise click.exceptions.Exit(int(mapped.exit_code)) from None
            if ctx.ensure_object(Deps).values.get("verbose"):
                import traceback

                console.err(_scrubbed(traceback.format_exc()))
            line = f"internal error: {type(exc).__name__}: {exc}"
            console.error(_scrubbed(line) + " (run with -v for details)")
            self._finish(ctx, int(ExitCode.FAILED), line)
            raise click.exceptions.Exit(int(ExitCode.FAILED)) from None
        self._finish(ctx, 0, None)
        return result

    def _finish(self, ctx: click.Context, exit_code: int, message: str | None) -> None:
        """The run's JSON document: under --json always (a failure too), else when a command made
        one (`--format json`)."""
        console = _console(ctx)
        wanted = ctx.ensure_object(Deps).values.get("json_output") or "--json" in ctx.meta.get(ARGV_KEY, ())
        if wanted or console.has_document:
            console.emit_document(kind_of(ctx), exit_code=exit_code,
                                  message=_scrubbed(message) if message else None)


def _setup_error(exc: Exception) -> OrchestrateError | None:
    """The orchestrator error for a botocore exception (credentials, profile, SSO), else None."""
    if not type(exc).__module__.startswith("botocore"):
        return None
    from orchestrator.aws import translate

    return translate(exc)


def _console(ctx: click.Context) -> Console:
    deps = ctx.ensure_object(Deps)
    if deps.console is None:
        deps.console = Console()
    return deps.console


def _scrubbed(text: str) -> str:
    from orchestrator.scrub import scrub

    return scrub(text)


@click.group(cls=OrchestrateGroup, lazy=COMMANDS, summaries=SUMMARIES,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orchestrate")
def cli() -> None:
    """Stand up, wire and promote the IoT platform's Pulumi stacks across AWS regions.

    \b
    A platform's life, in order:
      orchestrate plan --all                                   offline: what would be built
      orchestrate up --region eu-west-1                        one region, DNS in front
      orchestrate promote-secondary --region eu-central-1      add a secondary, DNS last
      orchestrate failover --to eu-central-1                   traffic to the secondary
      orchestrate failback                                     and back
    Primary down and no secondary yet (docs/runbooks/rebuild-from-backups.md):
      orchestrate rebuild-region --from-backup --region eu-central-1
    Global options (--env, --config, --backend, --endpoint-url, --json, -v) go before or after
    the command. `orchestrate COMMAND --help` shows a command's options and examples.

    \b
    Exit codes: 0 success, 1 an operation failed, 2 bad input or config (nothing touched),
    3 a stack is locked by another update, 4 refused by a safety guard.
    """


cli.sections = SECTIONS


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="orchestrate")
