"""What Pulumi would change, per stack, shown before a mutating command asks (as `pulumi up` and
`terraform apply` do): `up`'s prompt and `promote-secondary --dry-run`.

One line per stack: creates, updates, replaces, deletes (and what stays), from the same preview
machinery as `orchestrate preview` (orchestrator.stacks.preview), so downstream stacks whose
upstream is not deployed yet are previewed with marked placeholders. A stack whose preview failed
says so; it never reads as "no changes". Under the DNS stack's line, what each record that changes
answers before and after (its values, routing policy and health check), as the preview's values
hold them: the question is asked knowing where devices will be sent.
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


def stack_line(stack: StackPreview, *, answers: bool = True) -> str:
    """`dev-region-eu-west-1: 3 to create, 1 to update, 0 to replace, 0 to delete (38 unchanged)`."""
    from orchestrator.preview.model import Op

    if stack.error:
        return f"{stack.stack}: preview failed: {stack.error}"
    counts = ", ".join(f"{stack.count(op)} to {op.value}" for op in (Op.CREATE, Op.UPDATE, Op.REPLACE, Op.DELETE))
    risky = [c.name for c in stack.changes if c.risky]
    marked = " (placeholders for upstream values not known yet)" if stack.placeholders else ""
    warn = f"; PROTECTED/STATEFUL: {', '.join(risky[:5])}" if risky else ""
    shown = dns_answers(stack) if answers else []
    dns = f"; DNS: {'; '.join(shown)}" if shown else ""
    return f"{stack.stack}: {counts} ({stack.unchanged} unchanged){marked}{warn}{dns}"


RECORD = "aws:route53/record:Record"
# What a record answers with, in the order shown: the rest of SHOWN_VALUES (ttl, type) is detail.
_ANSWER_KEYS = ("records", "aliases", "failoverRoutingPolicies", "latencyRoutingPolicies",
                "weightedRoutingPolicies", "healthCheckId")


def dns_answers(stack: StackPreview) -> list[str]:
    """`record-primary (iot.example.com): records ["a.iot..."] -> ["b.iot..."]`, one per changed
    answer of each record the stack creates, updates, replaces or deletes."""
    from orchestrator.preview.model import Op

    out = []
    for ch in stack.changes:
        if ch.type != RECORD:
            continue
        values = {v.path: v for v in ch.values}
        name = values["name"].new or values["name"].old if "name" in values else None
        label = f"{ch.name} ({name})" if name else ch.name
        shown = [values[k] for k in _ANSWER_KEYS if k in values]
        if not shown:
            if ch.op in (Op.DELETE, Op.REPLACE, Op.CREATE):
                out.append(f"{label}: {ch.op.value}")
            continue
        for v in shown:
            out.append(f"{label}: {v.path} {v.old if v.old is not None else '(none)'} -> "
                       f"{v.new if v.new is not None else '(none)'}")
    return out


def preview_lines(preview: EnvironmentPreview) -> list[str]:
    lines = []
    for stack in preview.stacks:
        lines.append(stack_line(stack, answers=False))
        lines += [f"  DNS {answer}" for answer in dns_answers(stack)]
    return lines
