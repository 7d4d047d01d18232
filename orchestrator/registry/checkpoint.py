"""A resumable record of the sync operations already applied.

The file (`.orchestrate/sync/<env>-<from>-<to>.json`: callers ask
`orchestrator.state.StateLayout.sync_checkpoint_path` for it) holds the keys of the operations done
so far. A key is the operation's identity plus a digest of its parameters, so an operation whose
desired state changed since the crash is not skipped. Writes go through
`orchestrator.state.atomic_write_json` (temp file, fsync, rename) and happen every `flush_every`
operations and when the run stops for any reason; the file is removed when a run finishes
without errors. Operations replayed after a hard crash (done, but not yet flushed)
are harmless: every operation is idempotent.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from orchestrator.errors import InputRejected
from orchestrator.state import atomic_write_json

CHECKPOINT_FORMAT = 1


class Checkpoint:
    def __init__(self, path: Path, *, src_region: str, dst_region: str, flush_every: int = 25) -> None:
        self.path = Path(path)
        self.src_region = src_region
        self.dst_region = dst_region
        self.flush_every = max(1, flush_every)
        self._done: set[str] = set()
        self._unflushed = 0
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise InputRejected(f"{self.path}: cannot read sync checkpoint: {exc.strerror}") from None
        try:
            data = json.loads(text)
            fmt, src, dst, done = data["format"], data["src_region"], data["dst_region"], data["done"]
        except (ValueError, KeyError, TypeError):
            raise InputRejected(f"{self.path}: malformed sync checkpoint",
                                hint="delete it to start the sync from scratch (it is safe)") from None
        if fmt != CHECKPOINT_FORMAT:
            raise InputRejected(f"{self.path}: checkpoint format {fmt!r} is not supported",
                                hint="delete it to start the sync from scratch (it is safe)")
        if (src, dst) != (self.src_region, self.dst_region):
            raise InputRejected(
                f"{self.path}: checkpoint is for {src} -> {dst}, not {self.src_region} -> {self.dst_region}")
        self._done = {str(k) for k in done}

    @property
    def resumed(self) -> bool:
        return bool(self._done)

    def __len__(self) -> int:
        with self._lock:
            return len(self._done)

    def is_done(self, key: str) -> bool:
        with self._lock:
            return key in self._done

    def mark_done(self, key: str) -> None:
        with self._lock:
            self._done.add(key)
            self._unflushed += 1
            due = self._unflushed >= self.flush_every
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._unflushed and self.path.exists():
                return
            payload = {
                "format": CHECKPOINT_FORMAT,
                "src_region": self.src_region,
                "dst_region": self.dst_region,
                "done": sorted(self._done),
            }
            self._unflushed = 0
            atomic_write_json(self.path, payload, indent=None)  # one line: it can hold many keys

    @staticmethod
    def merge_files(local: bytes, stored: bytes) -> bytes:
        """One checkpoint file from two of the same sync (the cached one and the stored one): the
        union of their done keys (every operation is idempotent, and a key names the desired state,
        so a key from either is safe to skip). Anything else: the stored one."""
        try:
            a, b = json.loads(local), json.loads(stored)
            same = all(a[k] == b[k] for k in ("format", "src_region", "dst_region"))
            done = sorted({*map(str, a["done"]), *map(str, b["done"])})
        except (ValueError, KeyError, TypeError):
            return stored
        if not same:
            return stored
        return (json.dumps({**b, "done": done}, sort_keys=True) + "\n").encode("utf-8")

    def complete(self) -> None:
        """The run finished cleanly: nothing to resume."""
        with self._lock:
            self._done.clear()
            self._unflushed = 0
            self.path.unlink(missing_ok=True)
