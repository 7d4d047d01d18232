"""What to run next after a command failed part-way: one line, named for the stack that failed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.engine.types import Outcome

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.stacks.runner import RunReport
    from orchestrator.topology import Topology


def after_failed_destroy(topology: Topology, region: str, report: RunReport) -> str | None:
    """The next step after `destroy --region R` failed (None when it did not fail).

    `remove_secondary` goes DNS -> replication -> topology file -> region stack and stops at the
    first failure; re-running the same command starts again where it stopped (a region already out
    of the topology file is destroyed as a plain stack)."""
    if report.ok and not report.locked:
        return None
    rerun = f"`orchestrate destroy --region {region}`"
    failed = [name for name, r in report.results.items() if r.outcome in (Outcome.FAILED, Outcome.REFUSED)]
    stack = failed[0] if failed else ""
    if report.locked:
        return (f"another update holds the lock of {stack or 'a stack'}: wait for it to finish (or, if it "
                f"died, `orchestrate recover {stack}`), then re-run {rerun}")
    if stack.endswith("-dns"):
        return (f"DNS may still answer {region}: fix the cause above, check the records with "
                f"`orchestrate status`, then re-run {rerun} (it starts again at DNS)")
    if stack.endswith("-replication"):
        return (f"DNS no longer answers {region} but replication still joins it: fix the cause above, "
                f"then re-run {rerun}")
    return (f"{region} is out of DNS and replication; only its stack {stack or 'remains'} is left: fix the "
            f"cause above, then re-run {rerun}")
