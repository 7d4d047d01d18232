"""The run journal: `.orchestrate/runs/<env>-<op>-<time>.json`.

It records the planned waves, each stack's result, the upstream outputs each downstream stack
consumed and the outputs each region stack produced, so `up --resume` can continue from the failed
stack, and can tell when upstream outputs changed since (then it re-plans instead of applying stale
wiring). Written atomically after every stack.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.state import atomic_write_json


@dataclass
class Journal:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(cls, runs_dir: Path, env: str, operation: str, waves: list[list[str]],
              resumed_from: str | None = None) -> Journal:
        runs_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = runs_dir / f"{env}-{operation}-{stamp}-{os.getpid()}.json"
        journal = cls(path, {
            "env": env, "operation": operation, "started": stamp, "status": "running",
            "resumed_from": resumed_from, "waves": waves, "stacks": {},
        })
        journal.flush()
        return journal

    @classmethod
    def latest(cls, runs_dir: Path, env: str, operation: str) -> Journal | None:
        if not runs_dir.is_dir():
            return None
        candidates = sorted(runs_dir.glob(f"{env}-{operation}-*.json"), key=lambda p: p.stat().st_mtime)
        for path in reversed(candidates):
            try:
                return cls(path, json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
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
        atomic_write_json(self.path, self.data)
