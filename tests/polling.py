"""Waiting in tests for something another thread or process does: bounded, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(cond: Callable[[], object], timeout: float, every: float = 0.05) -> bool:
    """True once `cond()` is truthy, polling every `every` seconds; False if it still is not after
    `timeout` seconds (asked one last time at the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return bool(cond())
