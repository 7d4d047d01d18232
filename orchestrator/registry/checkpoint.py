"""A resumable record of the sync operations already applied: an append-only journal in parts.

Callers ask `orchestrator.state.StateLayout.sync_checkpoint_path` for the checkpoint's path
(`.orchestrate/sync/<env>-<from>-<to>.json`). Format 3 keeps there only a small header (format,
source, destination); the operations done are journalled in parts beside it,
`<env>-<from>-<to>.part-<run>-<seq>.jsonl`: a part's first line names its run and the plan it was
written for, and every flush (every `flush_every` operations, and when the run stops) appends one
line with the keys done since the last flush. Nothing is ever rewritten, so the bytes written
over a run are O(operations), not O(operations^2) as when the whole document was rewritten per
batch (format 2, read still). A torn last line (power loss) is ignored: those operations are
replayed, which is harmless because every operation is idempotent.

The shared backend gets the parts, not the whole journal: at most every `store_every_s` while the
sync runs, the part being written is closed and `store(part)` copies it (then the header), so one
upload holds at most the keys of `store_every_s` seconds or `PART_KEYS` keys, whatever the fleet's
size. `pull_checkpoint` / `push_checkpoint` copy the header and every part between the cache and
the backend (parts are immutable and uniquely named: merging two machines' copies is their union).

A key is the operation's identity plus a digest of its parameters, so an operation whose desired
state changed since the crash is not skipped. A checkpoint is bound to its source and destination,
to the plan of the run that wrote it (a digest of the plan's operation keys, per part) and to its
age: `bind(keys)` drops every mark written for another plan, and a line older than
CHECKPOINT_TTL_S is ignored. A fresh plan is computed from the current destination listing, so each
of its operations is one that listing contradicts (the thing is missing, the status differs): such
operations are never skipped on the word of a checkpoint; only a re-application of the same plan
skips what it already did. `complete()` (a run that finished without errors) removes the header
and every part.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from orchestrator.errors import InputRejected
from orchestrator.state import atomic_write_json

CHECKPOINT_FORMAT = 3
CHECKPOINT_TTL_S = 24 * 3600.0  # an older checkpoint describes a destination that has moved on
STORE_EVERY_S = 30.0  # how often a running sync copies its new journal part to the shared backend
PART_KEYS = 20_000  # a part is closed after this many keys even between stores (bounded uploads)
_HINT = "delete it (and its .part-* files) to start the sync from scratch (it is safe)"


def plan_digest(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]


def _mark(key: str) -> int:
    """A key as held in memory: its 128-bit BLAKE2b digest (a collision among 10^7 keys: ~10^-25)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=16).digest(), "big")


def part_prefix(path: Path) -> str:
    """File names of a checkpoint's journal parts start with this."""
    return f"{Path(path).stem}.part-"


def parts_of(path: Path) -> list[Path]:
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = part_prefix(path)
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".jsonl"))


class Checkpoint:
    def __init__(self, path: Path, *, src_region: str, dst_region: str, flush_every: int = 25,
                 ttl_s: float = CHECKPOINT_TTL_S, clock: Callable[[], float] = time.time,
                 store: Callable[[Path], None] | None = None, store_every_s: float | None = None) -> None:
        """`store(path)` copies a closed journal part (then the header) to the shared backend, at
        most every `store_every_s` while the sync runs: a run killed with SIGKILL (no `finally`
        runs) still leaves a checkpoint another machine can resume from, at most that many seconds
        old."""
        self.path = Path(path)
        self.src_region = src_region
        self.dst_region = dst_region
        self.flush_every = max(1, flush_every)
        self.ttl_s = ttl_s
        self._clock = clock
        self.run = uuid.uuid4().hex[:16]
        self.plan: str | None = None
        self.dropped = 0  # marks not trusted: another plan, or expired
        # marks of earlier runs (what a resume skips), held as 128-bit digests of the keys (`_mark`):
        # 44 bytes each instead of a ~170-byte string (issue 22); the files hold the keys. This
        # run's own marks are journalled, not held: an apply never submits an operation twice, and
        # holding them cost ≈ 80 B per operation, ≈ 0.46 KB per thing of a first sync's peak
        self._done: set[int] = set()
        self._marked = 0  # marked by this run (journalled)
        self._other: dict[str | None, set[int]] = {}  # marks of other plans (dropped at bind)
        self._resumed = False
        self._pending: list[str] = []  # marked, not yet flushed
        self._lock = threading.Lock()
        self._store = store
        self._store_every_s = STORE_EVERY_S if store_every_s is None else store_every_s
        self._stored_at = clock()  # the caller stored (pulled) the checkpoint just before the run
        self.store_errors = 0
        self.bytes_written = 0
        self._part: Path | None = None
        self._part_fh: IO[str] | None = None
        self._part_keys = 0
        self._seq = 0
        self._closed: list[Path] = []  # closed parts not yet copied to the backend
        self._header_written = False
        self._stale = False
        self._load()

    # -- reading -------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        except OSError as exc:
            raise InputRejected(f"{self.path}: cannot read sync checkpoint: {exc.strerror}") from None
        if text is not None:
            try:
                data = json.loads(text)
                fmt, src, dst = data["format"], data["src_region"], data["dst_region"]
            except (ValueError, KeyError, TypeError):
                raise InputRejected(f"{self.path}: malformed sync checkpoint", hint=_HINT) from None
            if fmt not in (1, 2, CHECKPOINT_FORMAT):
                raise InputRejected(f"{self.path}: checkpoint format {fmt!r} is not supported", hint=_HINT)
            if (src, dst) != (self.src_region, self.dst_region):
                raise InputRejected(
                    f"{self.path}: checkpoint is for {src} -> {dst}, not {self.src_region} -> {self.dst_region}")
            if fmt != CHECKPOINT_FORMAT:
                self._load_single(data)
            self._header_written = fmt == CHECKPOINT_FORMAT
        newest: tuple[float, str | None] | None = None
        for part in parts_of(self.path):
            loaded = self._load_part(part)
            if loaded is None:
                continue
            plan, keys, last = loaded
            self._other.setdefault(plan, set()).update(_mark(k) for k in keys)
            if keys and (newest is None or last > newest[0]):
                newest = (last, plan)
        if newest is not None:
            self.plan = newest[1]
            self._done = self._other.pop(self.plan, set()) | self._done
        self._resumed = bool(self._done) or any(self._other.values())

    def _load_single(self, data: dict[str, Any]) -> None:
        """Formats 1 and 2: one document holding every key (written by an older version)."""
        done = data.get("done")
        if not isinstance(done, list):
            raise InputRejected(f"{self.path}: malformed sync checkpoint", hint=_HINT)
        written = data.get("written_at")
        if not isinstance(written, (int, float)) or self._clock() - written > self.ttl_s:
            self.dropped += len(done)  # unbound (format 1) or expired
            return
        self._done = {_mark(str(k)) for k in done}
        self.plan = data.get("plan") if isinstance(data.get("plan"), str) else None
        self.run = str(data.get("run") or self.run)

    def _load_part(self, part: Path) -> tuple[str | None, set[str], float] | None:
        """(plan, keys within the validity window, time of the last line); None: not this pair's."""
        try:
            lines = part.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        try:
            head = json.loads(lines[0])
            if (head["src_region"], head["dst_region"]) != (self.src_region, self.dst_region):
                return None
            plan = head.get("plan") if isinstance(head.get("plan"), str) else None
        except (ValueError, KeyError, TypeError, IndexError):
            return None
        keys: set[str] = set()
        last = 0.0
        now = self._clock()
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                at, done = float(entry["at"]), [str(k) for k in entry["done"]]
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: those operations are replayed (idempotent)
            if now - at > self.ttl_s:
                self.dropped += len(done)
                continue
            keys.update(done)
            last = max(last, at)
        return plan, keys, last

    @staticmethod
    def saved(path: Path) -> dict[str, Any]:
        """What a checkpoint on disk holds, whatever its format: run, plan and written_at of its
        newest part, and every key done (for tools and tests)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict) and data.get("format") in (1, 2):
            return {k: data.get(k) for k in ("run", "plan", "written_at")} | {"done": sorted(data.get("done", []))}
        out: dict[str, Any] = {"run": None, "plan": None, "written_at": None, "done": []}
        done: set[str] = set()
        for part in parts_of(path):
            try:
                lines = part.read_text(encoding="utf-8").splitlines()
                head = json.loads(lines[0])
            except (OSError, ValueError, IndexError):
                continue
            for line in lines[1:]:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                done.update(entry["done"])
                if out["written_at"] is None or entry["at"] >= out["written_at"]:
                    out.update(run=head.get("run"), plan=head.get("plan"), written_at=entry["at"])
        out["done"] = sorted(done)
        return out

    # -- binding and marking ---------------------------------------------------------------------
    def bind(self, keys: Iterable[str]) -> None:
        """Bind to the plan being applied: marks written for another plan are dropped (and their
        parts removed at the next flush, and from the backend at the next `push_checkpoint`)."""
        digest = plan_digest(keys)
        with self._lock:
            stale = [p for p in self._other if p != digest]
            for plan in stale:
                self.dropped += len(self._other.pop(plan))
            if self.plan != digest:
                if self._done or self._marked:
                    self.dropped += len(self._done) + self._marked
                    self._done.clear()
                self._marked = 0
                self._done = self._other.pop(digest, set())
                self._close_part()
                self._closed.clear()
                self.run = uuid.uuid4().hex[:16]
                self._seq = 0
                self._stale = True  # parts of other plans are removed at the next flush
            self.plan = digest

    @staticmethod
    def _part_plan(part: Path) -> str | None:
        try:
            with part.open(encoding="utf-8") as fh:
                head = json.loads(fh.readline())
            return head.get("plan") if isinstance(head, dict) else None
        except (OSError, ValueError):
            return None

    @property
    def resumed(self) -> bool:
        """An earlier run left marks here (trusted or not)."""
        return self._resumed

    def __len__(self) -> int:
        """Marks trusted from earlier runs plus those made by this one."""
        with self._lock:
            return len(self._done) + self._marked

    def is_done(self, key: str) -> bool:
        """Whether an earlier run of this plan applied `key` (a resumed run skips it). This run's
        own marks are not asked for: the scheduler submits each operation once."""
        with self._lock:
            return _mark(key) in self._done

    def mark_done(self, key: str) -> None:
        with self._lock:
            self._marked += 1
            self._pending.append(key)
            due = len(self._pending) >= self.flush_every
        if due:
            self.flush()

    # -- writing ---------------------------------------------------------------------------------
    def _write_header(self) -> None:
        if not self._header_written:
            atomic_write_json(self.path, {"format": CHECKPOINT_FORMAT, "src_region": self.src_region,
                                          "dst_region": self.dst_region}, indent=None)
            self.bytes_written += self.path.stat().st_size
            self._header_written = True

    def _open_part(self) -> IO[str]:
        if self._part_fh is None:
            self._seq += 1
            self._part = self.path.parent / f"{part_prefix(self.path)}{self.run}-{self._seq:06d}.jsonl"
            self._part.parent.mkdir(parents=True, exist_ok=True)
            self._part_fh = self._part.open("a", encoding="utf-8")
            head = json.dumps({"run": self.run, "plan": self.plan, "src_region": self.src_region,
                               "dst_region": self.dst_region}, sort_keys=True) + "\n"
            self._part_fh.write(head)
            self.bytes_written += len(head)
            self._part_keys = 0
        return self._part_fh

    def _close_part(self) -> None:
        if self._part_fh is not None:
            self._part_fh.flush()
            os.fsync(self._part_fh.fileno())
            self._part_fh.close()
            assert self._part is not None
            self._closed.append(self._part)
            self._part_fh = None
            self._part = None

    def flush(self) -> None:
        """Append the keys marked since the last flush (one line); copy the closed part to the
        backend when due."""
        with self._lock:
            if not self._pending and self._header_written:
                return
            self._write_header()
            if self._stale:
                for part in parts_of(self.path):
                    if part != self._part and self._part_plan(part) != self.plan:
                        part.unlink(missing_ok=True)
                self._stale = False
            if self._pending:
                fh = self._open_part()
                line = json.dumps({"at": self._clock(), "done": self._pending}) + "\n"
                fh.write(line)
                fh.flush()  # to the OS: survives SIGKILL; fsync when the part is closed
                self.bytes_written += len(line)
                self._part_keys += len(self._pending)
                self._pending = []
                if self._part_keys >= PART_KEYS:
                    self._close_part()
            due = self._store is not None and self._clock() - self._stored_at >= self._store_every_s
            if due:
                self._stored_at = self._clock()
                self._close_part()
            to_store = list(self._closed) if due else []
            if due:
                self._closed.clear()
        if due:
            self._store_now(to_store)

    def _store_now(self, parts: list[Path]) -> None:
        """Copy the closed parts, then the header, to the backend; a failure here must not stop the
        sync (the copy the caller makes when the run ends reports it), so it is counted, not
        raised; except LeaseLost: another run holds the region pair now (`state.Lease.guard`), and
        this one stops."""
        from orchestrator.errors import LeaseLost, OrchestrateError

        assert self._store is not None
        try:
            for part in parts:
                self._store(part)
            self._store(self.path)
        except LeaseLost:  # another run holds the pair now: this one must stop writing
            raise
        except (OrchestrateError, OSError):
            self.store_errors += 1
            with self._lock:  # copied by the next store, or by push_checkpoint at the end
                self._closed[:0] = parts

    def close(self) -> None:
        """Flush and close the part being written (the run stops; the checkpoint stays)."""
        self.flush()
        with self._lock:
            self._close_part()

    @staticmethod
    def merge_files(local: bytes, stored: bytes) -> bytes:
        """One checkpoint header from two of the same sync (the cached one and the stored one).
        Formats 1 and 2 (one document with every key): the union of their done keys (every
        operation is idempotent, and a key names the desired state, so a key from either is safe
        to skip). Anything else: the stored one (format 3 keeps its keys in parts, merged by
        `pull_checkpoint`)."""
        try:
            a, b = json.loads(local), json.loads(stored)
            same = all(a[k] == b[k] for k in ("format", "src_region", "dst_region"))
            if a["format"] == CHECKPOINT_FORMAT:
                return stored
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
            self._marked = 0
            self._other.clear()
            self._pending = []
            if self._part_fh is not None:
                self._part_fh.close()
                self._part_fh = None
            self._closed.clear()
            for part in parts_of(self.path):
                part.unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)
            self._header_written = False


def pull_checkpoint(state: Any, path: Path) -> bool:
    """Copy a checkpoint from the backend into the cache (`StateLayout`): the header (merged with
    a cached one) and every stored part the cache lacks; a cached part the backend lacks (a run
    killed before it could copy it) is kept. True when the cache then holds a checkpoint."""
    found = bool(state.pull(path, merge=Checkpoint.merge_files))
    from orchestrator.registry.readjournal import reads_prefix

    for part in state.documents(Path(path).parent, reads_prefix(path)):  # a cut-short --full pass's reads
        if not part.exists():
            state.pull(part)
    for part in state.documents(Path(path).parent, part_prefix(path)):
        if not part.exists():
            state.pull(part)
        found = True
    return found or bool(parts_of(path))


def push_checkpoint(state: Any, path: Path) -> None:
    """Make the backend hold what the cache holds: the header, every part (a part is immutable:
    one already stored is not copied again), and no part the cache no longer has."""
    from orchestrator.registry.readjournal import read_parts, reads_prefix

    for prefix, local_parts in ((part_prefix(path), parts_of(path)), (reads_prefix(path), read_parts(path))):
        stored = {p.name for p in state.documents(Path(path).parent, prefix)}
        local = {p.name for p in local_parts}
        for name in sorted(local - stored):
            state.push(Path(path).parent / name)
        for name in sorted(stored - local):
            state.delete(Path(path).parent / name)
    state.push(path)
