"""A resumable record of the sync operations already applied.

The file (`.orchestrate/sync/<env>-<from>-<to>.json`: callers ask
`orchestrator.state.StateLayout.sync_checkpoint_path` for it) holds the keys of the operations done
so far. A key is the operation's identity plus a digest of its parameters, so an operation whose
desired state changed since the crash is not skipped. Writes go through
`orchestrator.state.atomic_write_json` (temp file, fsync, rename) and happen every `flush_every`
operations and when the run stops for any reason; the file is removed when a run finishes
without errors. Operations replayed after a hard crash (done, but not yet flushed)
are harmless: every operation is idempotent.

A checkpoint is bound to its source and destination, to the plan of the run that wrote it (a
digest of the plan's operation keys) and to its age: `bind(keys)` drops every mark when the plan
being applied is not the one the file was written for, and a file older than CHECKPOINT_TTL_S is
ignored. A fresh plan is computed from the current destination listing, so each of its operations
is one that listing contradicts (the thing is missing, the status differs): such operations are
never skipped on the word of a checkpoint; only a re-application of the same plan skips what it
already did.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from orchestrator.errors import InputRejected
from orchestrator.state import atomic_write_json

CHECKPOINT_FORMAT = 2
CHECKPOINT_TTL_S = 24 * 3600.0  # an older checkpoint describes a destination that has moved on
STORE_EVERY_S = 30.0  # how often a running sync copies its checkpoint to the shared backend


def plan_digest(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]


class Checkpoint:
    def __init__(self, path: Path, *, src_region: str, dst_region: str, flush_every: int = 25,
                 ttl_s: float = CHECKPOINT_TTL_S, clock: Callable[[], float] = time.time,
                 store: Callable[[Path], None] | None = None, store_every_s: float | None = None) -> None:
        """`store(path)` copies the flushed file to the shared backend, at most every `store_every_s`
        while the sync runs: a run killed with SIGKILL (no `finally` runs) still leaves a checkpoint
        another machine can resume from, at most that many seconds old."""
        self.path = Path(path)
        self.src_region = src_region
        self.dst_region = dst_region
        self.flush_every = max(1, flush_every)
        self.ttl_s = ttl_s
        self._clock = clock
        self.run = uuid.uuid4().hex[:16]
        self.plan: str | None = None
        self.dropped = 0  # marks not trusted: another plan, or expired
        self._done: set[str] = set()
        self._resumed = False
        self._unflushed = 0
        self._lock = threading.Lock()
        self._store = store
        self._store_every_s = STORE_EVERY_S if store_every_s is None else store_every_s
        self._stored_at = clock()  # the caller stored (pulled) the checkpoint just before the run
        self.store_errors = 0
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
        if fmt not in (1, CHECKPOINT_FORMAT):
            raise InputRejected(f"{self.path}: checkpoint format {fmt!r} is not supported",
                                hint="delete it to start the sync from scratch (it is safe)")
        if (src, dst) != (self.src_region, self.dst_region):
            raise InputRejected(
                f"{self.path}: checkpoint is for {src} -> {dst}, not {self.src_region} -> {self.dst_region}")
        written = data.get("written_at") if isinstance(data, dict) else None
        if not isinstance(written, (int, float)) or self._clock() - written > self.ttl_s:
            self.dropped = len(done) if isinstance(done, list) else 0  # unbound (format 1) or expired
            return
        self._done = {str(k) for k in done}
        self._resumed = bool(self._done)
        self.plan = data.get("plan") if isinstance(data.get("plan"), str) else None
        self.run = str(data.get("run") or self.run)

    def bind(self, keys: Iterable[str]) -> None:
        """Bind to the plan being applied: marks written for another plan are dropped."""
        digest = plan_digest(keys)
        with self._lock:
            if self.plan != digest and self._done:
                self.dropped += len(self._done)
                self._done.clear()
            if self.plan != digest:
                self.run = uuid.uuid4().hex[:16]
            self.plan = digest

    @property
    def resumed(self) -> bool:
        """An earlier run left marks here (trusted or not)."""
        return self._resumed

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
                "run": self.run,
                "plan": self.plan,
                "written_at": self._clock(),
                "done": sorted(self._done),
            }
            self._unflushed = 0
            atomic_write_json(self.path, payload, indent=None)  # one line: it can hold many keys
            due = self._store is not None and self._clock() - self._stored_at >= self._store_every_s
            if due:
                self._stored_at = self._clock()
        if due:
            self._store_now()

    def _store_now(self) -> None:
        """Copy to the backend; a failure here must not stop the sync (the copy the caller makes
        when the run ends reports it), so it is counted, not raised; except LeaseLost: another run
        holds the region pair now (`state.Lease.guard`), and this one stops."""
        from orchestrator.errors import LeaseLost, OrchestrateError

        assert self._store is not None
        try:
            self._store(self.path)
        except LeaseLost:  # another run holds the pair now: this one must stop writing
            raise
        except (OrchestrateError, OSError):
            self.store_errors += 1

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
