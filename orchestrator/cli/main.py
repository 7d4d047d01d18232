"""`orchestrate`: the root click group, its global options and the one error-to-exit-code mapping.

Command modules register themselves here (`register`); each command is thin: parse, call the
orchestrator, render through the injected console.
"""

from __future__ import annotations

from typing import Any

import click

from orchestrator import __version__
from orchestrator.cli.app import Deps, global_options
from orchestrator.cli.console import Console
from orchestrator.errors import ExitCode, OrchestrateError


class OrchestrateGroup(click.Group):
    """Maps the error family to exit codes in one place, for every command and subgroup."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OrchestrateError as exc:
            _console(ctx).error(_scrubbed(exc.one_line()))
            raise click.exceptions.Exit(int(exc.exit_code)) from None
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            _console(ctx).error("interrupted")
            raise click.exceptions.Exit(130) from None
        except Exception as exc:  # an unexpected failure: one line, the traceback only with -v
            console = _console(ctx)
            if ctx.ensure_object(Deps).values.get("verbose"):
                import traceback

                console.err(_scrubbed(traceback.format_exc()))
            console.error(_scrubbed(f"internal error: {type(exc).__name__}: {exc}") + " (run with -v for details)")
            raise click.exceptions.Exit(int(ExitCode.FAILED)) from None


def _console(ctx: click.Context) -> Console:
    deps = ctx.ensure_object(Deps)
    return deps.console or Console()


def _scrubbed(text: str) -> str:
    try:
        from orchestrator.scrub import scrub
    except ImportError:  # pragma: no cover - scrub ships with the package
        return text
    return scrub(text)


@click.group(cls=OrchestrateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orchestrate")
@global_options
def cli() -> None:
    """Stand up, wire and promote the IoT platform's Pulumi stacks across AWS regions.

    \b
    Exit codes: 0 success, 1 an operation failed, 2 bad input or config (nothing touched),
    3 a stack is locked by another update, 4 refused by a safety guard.
    """


def register() -> None:
    """Attach every command module (each imports only click at module level)."""
    from orchestrator.cli import comment, lifecycle, plan, preview, registry, stacks

    for module in (plan, stacks, preview, lifecycle, registry, comment):
        module.register(cli)


register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="orchestrate")
