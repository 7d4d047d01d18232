"""`recover STACK`: the designed path after a crashed run (pending operations, stale lock).

On a shared backend a lock may belong to a run that is still alive on another machine: recover
shows who holds it and since when, and refuses a lock that may be alive (younger than
FRESH_LOCK_S, unless it was taken on this host by a process that is gone) unless `force`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrator.engine.types import Engine, LockInfo, StackSpec
from orchestrator.errors import GuardRefused, InputRejected, OperationFailed
from orchestrator.stacks.graph import all_stacks

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context

FRESH_LOCK_S = 2 * 3600  # longer than any update the workflows allow (apply: 90 min)


Confirm = Callable[[str, str], None]  # (question, what the user must type); raises GuardRefused when refused


def may_be_alive(lock: LockInfo) -> bool:
    """A lock whose update may still run: taken on another host (or at an unknown time) less than
    FRESH_LOCK_S ago. A lock of this host whose process is gone is dead whatever its age."""
    if lock.host == socket.gethostname() and lock.pid:
        try:
            os.kill(lock.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, someone else's
            return True
        return True
    return lock.age_seconds is None or lock.age_seconds < FRESH_LOCK_S


def _lock_json(lock: LockInfo | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    age = None if lock.age_seconds is None else round(lock.age_seconds)
    return {"holder": lock.holder, "since": lock.since, "age_seconds": age}


def recover_stack(app: Context, stack: str, *, confirm: Confirm, force: bool = False) -> dict[str, Any]:
    """Cancel a stale lock and refresh `stack` with pending creates cleared, after `confirm` agreed."""
    refs = {s.name: s for s in all_stacks(app.topology())}
    ref = refs.get(stack)
    if ref is None:
        raise InputRejected(f"{stack!r} is not a stack of env {app.env} (stacks: {', '.join(sorted(refs))})")
    engine = app.engine()
    lock = engine.lock(stack)
    if lock is None:
        app.notify(f"recover {stack}: not locked")
    else:
        app.notify(f"recover {stack}: locked by {lock.describe()}")
        if may_be_alive(lock) and not force:
            raise GuardRefused(
                f"{stack} is locked by {lock.describe()}: that update may still be running; nothing was touched",
                hint="wait for it to finish; if you know it is dead (a cancelled or killed job), pass --force")
    info = engine.info(stack)
    if not info.deployed and not info.pending_operations:
        # Nothing to refresh, but a run killed before its first resource still leaves the lock.
        app.notify(f"recover {stack}: no resources and no pending operations; "
                         "clearing a lock a crashed run may have left")
        confirm(f"recover {stack}", stack)
        _cancel(engine, stack)
        return {"stack": stack, "lock": _lock_json(lock), "pending_cleared": 0, "pending_left": 0, "counts": {}}
    app.notify(f"recover {stack}: {len(info.pending_operations)} pending operations")
    for op in info.pending_operations:
        app.notify(f"  {op}")
    app.notify("will: cancel any update still holding the lock, then refresh the stack against the "
                     "cloud with pending creates cleared (resources that were never created are dropped "
                     "from the state; existing ones are read back)")
    confirm(f"recover {stack}", stack)
    _cancel(engine, stack)
    spec = StackSpec(ref.name, ref.kind.value, ref.region, {"aws:region": ref.region})
    result = engine.refresh(spec, clear_pending_creates=True)
    if not result.ok:
        raise OperationFailed(f"refresh of {stack} failed: {result.message}")
    after = engine.info(stack)
    return {"stack": stack, "lock": _lock_json(lock), "pending_cleared": len(info.pending_operations),
            "pending_left": len(after.pending_operations), "counts": dict(result.counts)}


def _cancel(engine: Engine, stack: str) -> None:
    """Cancel the update holding `stack`'s lock, then read the lock back: `ok` means it is gone."""
    engine.cancel(stack)
    left = engine.lock(stack)
    if left is not None:
        raise OperationFailed(
            f"{stack} is still locked by {left.describe()} after the cancel: nothing was refreshed",
            hint="the backend kept the lock file (.pulumi/locks/<org>/<project>/<stack>/<id>.json in the state "
                 "backend); if a run still holds it, wait for it; if you know it is dead, delete that file "
                 "and re-run `orchestrate recover`")


def stacks_to_recover(app: Context) -> list[str]:
    """The stacks of the env with a lock or pending operations (what `recover --all` handles)."""
    engine = app.engine()
    out = []
    for ref in all_stacks(app.topology()):
        if engine.lock(ref.name) is not None or engine.info(ref.name).pending_operations:
            out.append(ref.name)
    return out
