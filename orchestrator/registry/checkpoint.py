"""A resumable record of the sync operations already applied.

`.orchestrate/sync/<env>-<from>-<to>.json` holds the keys of the operations done so far. A key
is the operation's identity plus a digest of its parameters, so an operation whose desired state
changed since the crash is not skipped. Writes are atomic (temp file, fsync, rename) and happen
every `flush_every` operations and when the run stops for any reason; the file is removed when a
run finishes without errors. Operations replayed after a hard crash (done, but not yet flushed)
are harmless: every operation is idempotent.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from orchestrator.errors import InputRejected

CHECKPOINT_FORMAT = 1


def checkpoint_path(workdir: Path, env: str, src_region: str, dst_region: str) -> Path:
    return workdir / ".orchestrate" / "sync" / f"{env}-{src_region}-{dst_region}.json"


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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(payload, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def complete(self) -> None:
        """The run finished cleanly: nothing to resume."""
        with self._lock:
            self._done.clear()
            self._unflushed = 0
            self.path.unlink(missing_ok=True)
