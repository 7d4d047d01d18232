"""What Pulumi would change, per stack, shown before a mutating command asks (as `pulumi up` and
`terraform apply` do): `up`'s prompt and `promote-secondary --dry-run`.

One line per stack: creates, updates, replaces, deletes (and what stays), from the same preview
machinery as `orchestrate preview` (orchestrator.stacks.preview), so downstream stacks whose
upstream is not deployed yet are previewed with marked placeholders. A stack whose preview failed
says so; it never reads as "no changes".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.engine.types import Engine
    from orchestrator.preview.model import EnvironmentPreview, StackPreview
    from orchestrator.stacks.graph import StackRef
    from orchestrator.topology import Topology


def preview_changes(engine: Engine, topology: Topology, selection: Sequence[StackRef], *,
                    before: Topology | None = None) -> EnvironmentPreview:
    from orchestrator.stacks.preview import preview_environment

    return preview_environment(engine, topology, selection, before=before, commit="working tree")


def stack_line(stack: StackPreview) -> str:
    """`dev-region-eu-west-1: 3 to create, 1 to update, 0 to replace, 0 to delete (38 unchanged)`."""
    from orchestrator.preview.model import Op

    if stack.error:
        return f"{stack.stack}: preview failed: {stack.error}"
    counts = ", ".join(f"{stack.count(op)} to {op.value}" for op in (Op.CREATE, Op.UPDATE, Op.REPLACE, Op.DELETE))
    risky = [c.name for c in stack.changes if c.risky]
    marked = " (placeholders for upstream values not known yet)" if stack.placeholders else ""
    warn = f"; PROTECTED/STATEFUL: {', '.join(risky[:5])}" if risky else ""
    return f"{stack.stack}: {counts} ({stack.unchanged} unchanged){marked}{warn}"


def preview_lines(preview: EnvironmentPreview) -> list[str]:
    return [stack_line(s) for s in preview.stacks]
