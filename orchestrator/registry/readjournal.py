"""Resumable `--full` reads: the principals a full pass has read, journalled as it reads them.

A `--full` pass reads every thing's principals (`list_thing_principals`, one call per thing and
region, 10/s: 27.8 h at 1M things). Without a journal a pass cut short (a killed runner, a job
limit) starts over and, past the job limit, never finishes. With one, every chunk of things read
appends one line to a journal part beside the sync checkpoint, `<checkpoint stem>.reads-<run>-<seq>.jsonl`
(flushed and fsynced: a SIGKILL loses at most the chunk being read), and the next `--full` run takes
from the journal the things it already read instead of reading them again.

What is trusted, and for how long (the validity window):

- a line names its source and destination region; lines of another pair are ignored;
- a line is trusted for `READS_TTL_S` (24 hours, as the sync checkpoint) after it was written: a
  resumed pass is as current as the pass it continues was, and never older than a day;
- a thing is taken from the journal only when its registry `version` in this run's listing equals
  the version it had when it was read (a changed thing is read again; a thing without a version is
  always read). Attaching or detaching a certificate changes no version: a certificate moved
  between two journalled things inside the window is found by the next full pass, as it would
  have been had the first pass not been cut short;
- a destination read from the journal may predate writes the interrupted run made: what it plans
  from it is idempotent (attach what is attached, detach what is gone) and the read-back re-reads
  every thing an attachment was planned for;
- a torn last line (power loss) is ignored; a pass that ends clean and verified removes the parts
  and writes one holding a reset line: every line written before it is ignored, wherever it lies.

Parts are immutable once closed: at most every `STORE_EVERY_S` the part being written is closed
and copied to the shared backend through `store` (the checkpoint's), once, so the bytes uploaded
are O(things read), not O(things read x uploads); `checkpoint.pull_checkpoint` brings the parts
back and `push_checkpoint` removes those the cache no longer has, so another machine resumes too.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

READS_FORMAT = 1
READS_TTL_S = 24 * 3600.0
STORE_EVERY_S = 30.0


def reads_prefix(checkpoint_path: Path) -> str:
    """File names of the reads journal's parts of the sync whose checkpoint is `checkpoint_path`."""
    return f"{Path(checkpoint_path).stem}.reads-"


def read_parts(checkpoint_path: Path) -> list[Path]:
    directory, prefix = Path(checkpoint_path).parent, reads_prefix(checkpoint_path)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(prefix) and p.name.endswith(".jsonl"))


class ReadJournal:
    def __init__(self, checkpoint_path: Path, *, src_region: str, dst_region: str, ttl_s: float = READS_TTL_S,
                 clock: Callable[[], float] = time.time, store: Callable[[Path], None] | None = None,
                 store_every_s: float = STORE_EVERY_S) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.run = uuid.uuid4().hex[:12]
        self._seq = 0
        self._part: Path | None = None  # the part being written (not stored yet)
        self.src_region, self.dst_region = src_region, dst_region
        self._ttl_s, self._clock = ttl_s, clock
        self._store, self._store_every_s = store, store_every_s
        self._stored_at = clock()
        self._known: dict[str, dict[str, tuple[int, tuple[str, ...]]]] = {}
        self.reused = 0  # things taken from the journal (both regions)
        self._load()

    def _load(self) -> None:
        texts = []
        for part in read_parts(self.checkpoint_path):
            try:
                texts.append(part.read_text(encoding="utf-8"))
            except OSError:
                continue
        text = "\n".join(texts)
        now = self._clock()
        entries = []
        reset = now - self._ttl_s  # lines older than this are not trusted
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                if entry["f"] != READS_FORMAT or (entry["src"], entry["dst"]) != (self.src_region, self.dst_region):
                    continue
                if entry.get("reset"):
                    reset = max(reset, float(entry["at"]))
                else:
                    entries.append(entry)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn or foreign line: its things are read again
        for entry in sorted(entries, key=lambda e: float(e["at"]) if isinstance(e["at"], (int, float)) else 0.0):
            try:
                if not reset < float(entry["at"]) <= now + 60:
                    continue
                known = self._known.setdefault(str(entry["r"]), {})
                for name, (version, certs) in entry["t"].items():
                    if isinstance(version, int):
                        known[str(name)] = (version, tuple(str(c) for c in certs))
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line: its things are read again

    def __len__(self) -> int:
        return sum(len(v) for v in self._known.values())

    def known(self, region: str, name: str, version: int | None) -> tuple[str, ...] | None:
        """The certificate ids read for `name` in `region` when it had `version` (None: read it)."""
        if version is None:
            return None
        entry = self._known.get(region, {}).get(name)
        if entry is None or entry[0] != version:
            return None
        self.reused += 1
        return entry[1]

    def record(self, region: str, read: Mapping[str, tuple[int | None, Iterable[str]]]) -> None:
        """Append what was read in `region`: thing -> (its version when read, its certificate ids)."""
        things = {n: [v, sorted(c)] for n, (v, c) in read.items() if v is not None}
        if not things:
            return
        self._append({"f": READS_FORMAT, "src": self.src_region, "dst": self.dst_region,
                      "at": self._clock(), "r": region, "t": things})
        if self._clock() - self._stored_at >= self._store_every_s:
            self.flush_store()

    def _append(self, entry: dict[str, object]) -> None:
        if self._part is None:
            self._seq += 1
            self._part = self.checkpoint_path.with_name(
                f"{reads_prefix(self.checkpoint_path)}{self.run}-{self._seq:06d}.jsonl")
            self._part.parent.mkdir(parents=True, exist_ok=True)
        with open(self._part, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def flush_store(self) -> None:
        """Close the part being written and copy it to the backend (once: the next line opens a new part)."""
        self._stored_at = self._clock()
        part, self._part = self._part, None
        if part is not None and self._store is not None:
            self._store(part)

    def complete(self) -> None:
        """The pass ended clean and verified: nothing to resume. The parts are removed and one part
        holding a reset line is written and stored (lines written before it, in parts another copy
        still holds, are ignored)."""
        self._known.clear()
        self._part = None
        for part in read_parts(self.checkpoint_path):
            part.unlink(missing_ok=True)
        self._append({"f": READS_FORMAT, "src": self.src_region, "dst": self.dst_region, "at": self._clock(),
                      "reset": True})
        self.flush_store()


__all__ = ["READS_FORMAT", "READS_TTL_S", "ReadJournal", "read_parts", "reads_prefix"]
