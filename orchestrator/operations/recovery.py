"""`recover STACK`: the designed path after a crashed run (pending operations, stale lock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrator.engine.types import StackSpec
from orchestrator.errors import InputRejected, OperationFailed
from orchestrator.stacks.graph import all_stacks

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context


Confirm = Callable[[str, str], None]  # (question, what the user must type); raises GuardRefused when refused


def recover_stack(app: Context, stack: str, *, confirm: Confirm) -> dict[str, Any]:
    """Cancel a stale lock and refresh `stack` with pending creates cleared, after `confirm` agreed."""
    refs = {s.name: s for s in all_stacks(app.topology())}
    ref = refs.get(stack)
    if ref is None:
        raise InputRejected(f"{stack!r} is not a stack of env {app.env} (stacks: {', '.join(sorted(refs))})")
    engine = app.engine()
    info = engine.info(stack)
    if not info.deployed and not info.pending_operations:
        # Nothing to refresh, but a run killed before its first resource still leaves the lock.
        app.notify(f"recover {stack}: no resources and no pending operations; "
                         "clearing a lock a crashed run may have left")
        confirm(f"recover {stack}", stack)
        engine.cancel(stack)
        return {"stack": stack, "pending_cleared": 0, "pending_left": 0, "counts": {}}
    app.notify(f"recover {stack}: {len(info.pending_operations)} pending operations")
    for op in info.pending_operations:
        app.notify(f"  {op}")
    app.notify("will: cancel any update still holding the lock, then refresh the stack against the "
                     "cloud with pending creates cleared (resources that were never created are dropped "
                     "from the state; existing ones are read back)")
    confirm(f"recover {stack}", stack)
    engine.cancel(stack)
    spec = StackSpec(ref.name, ref.kind.value, ref.region, {"aws:region": ref.region})
    result = engine.refresh(spec, clear_pending_creates=True)
    if not result.ok:
        raise OperationFailed(f"refresh of {stack} failed: {result.message}")
    after = engine.info(stack)
    return {"stack": stack, "pending_cleared": len(info.pending_operations),
            "pending_left": len(after.pending_operations), "counts": dict(result.counts)}
