"""The run journal: `runs/<env>-<op>-<time>-<pid>.json` in the run state store (beside the Pulumi
state; `.orchestrate/runs/` holds a copy), so a run started on one machine resumes on another.

It records the planned waves, each stack's result, the upstream outputs each downstream stack
consumed and the outputs each region stack produced, so `up --resume` can continue from the failed
stack, and can tell when upstream outputs changed since (then it re-plans instead of applying stale
wiring). Written atomically after every stack.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import InputRejected
from orchestrator.state import StateLayout


@dataclass
class Journal:
    path: Path
    state: StateLayout
    data: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(cls, state: StateLayout, env: str, operation: str, waves: list[list[str]],
              resumed_from: str | None = None) -> Journal:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = state.runs_dir / f"{env}-{operation}-{stamp}-{os.getpid()}.json"
        journal = cls(path, state, {
            "env": env, "operation": operation, "started": stamp, "status": "running",
            "resumed_from": resumed_from, "waves": waves, "stacks": {}, "host": socket.gethostname(),
        })
        journal.flush()
        return journal

    @classmethod
    def latest(cls, state: StateLayout, env: str, operation: str) -> Journal | None:
        """The most recently changed journal of `env` and `operation` in the store, whoever ran it."""
        for path in reversed(state.documents(state.runs_dir, f"{env}-{operation}-")):
            try:
                data = state.load(path)
            except (OSError, InputRejected):
                continue
            if isinstance(data, dict):
                return cls(path, state, data)
        return None

    @property
    def run_id(self) -> str:
        return self.path.stem

    def record(self, stack: str, **fields: Any) -> None:
        with self._lock:
            self.data["stacks"].setdefault(stack, {}).update(fields)
            self.flush()

    def finish(self, status: str) -> None:
        with self._lock:
            self.data["status"] = status
            self.data["finished"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            self.flush()

    def succeeded(self) -> set[str]:
        return {name for name, s in self.data.get("stacks", {}).items() if s.get("outcome") == "succeeded"}

    def produced(self, stack: str) -> dict[str, Any] | None:
        return self.data.get("stacks", {}).get(stack, {}).get("produced")

    def flush(self) -> None:
        self.state.save(self.path, self.data)
