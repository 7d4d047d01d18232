"""Small parsing helpers shared by command modules."""

from __future__ import annotations

import sys
from collections.abc import Callable

from orchestrator.errors import GuardRefused, InputRejected


def exclusive_region(region: str | None, all_regions: bool, *, required: bool = True) -> str | None:
    """`--region R` or `--all`: exactly one when required, at most one otherwise. None means all."""
    if region and all_regions:
        raise InputRejected("--region and --all exclude each other")
    if required and not region and not all_regions:
        raise InputRejected("say which stacks: --region R or --all")
    if region:
        known_region(region, "--region")
    return region or None


def known_region(region: str, label: str) -> str:
    from orchestrator.topology import iot_regions

    regions = iot_regions()
    if region not in regions:
        import difflib

        close = difflib.get_close_matches(region, sorted(regions), n=1)
        raise InputRejected(f"{label}: {region!r} is not an AWS region where IoT Core is available",
                            hint=f"did you mean {close[0]}?" if close else None)
    return region


def _interactive() -> bool:
    """A person at a terminal can answer (stdin is a TTY)."""
    return sys.stdin.isatty()


def confirm(question: str, *, expected: str, assume_yes: bool, ask: bool | None = None) -> None:
    """Refuse (exit 4) unless --yes was given or the user types `expected` at an interactive prompt."""
    if assume_yes:
        return
    interactive = _interactive() if ask is None else ask
    if not interactive:
        raise GuardRefused(f"{question}: refusing without confirmation", hint="pass --yes to confirm")
    import click

    try:
        answer = click.prompt(f"{question}\nType {expected!r} to confirm", default="", show_default=False,
                              err=True)
    except click.exceptions.Abort:  # Ctrl-D (end of input) or Ctrl-C at the prompt: a refusal, exit 4
        click.echo("", err=True)  # the prompt's line is left open
        raise GuardRefused("not confirmed (no answer): nothing was touched") from None
    if answer.strip() != expected:
        raise GuardRefused("not confirmed: nothing was touched")


def will_ask() -> bool:
    """True when `confirm` without --yes would prompt (a terminal), so a preview shown first is read."""
    return _interactive()


def confirmer(assume_yes: bool) -> Callable[[str, str], None]:
    """`confirm` as the callback operations take: (question, what to type)."""

    def ask(question: str, expected: str) -> None:
        confirm(question, expected=expected, assume_yes=assume_yes)

    return ask
