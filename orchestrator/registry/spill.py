"""Spilling a sync's operations to disk: bounded memory whatever the fleet's size (issue 22).

A first sync of N things plans about 5 N operations. Held as Python objects, with the scheduler's
maps over all of them, they cost several KB per thing (8.7 GB at 1M things). Here they live in a
temporary SQLite file instead (standard library `sqlite3`):

- one file per run, in a private temporary directory (mode 0700) that `close()` removes, also when
  the run stops with an exception (`with SpillStore() as store:`), and at interpreter exit;
- no write-ahead log (`journal_mode=MEMORY`: a transaction's rollback journal is held in memory,
  bounded by one page of rows) and `synchronous=OFF`: the file is scratch space, never run state (a
  run that dies loses it and starts over from the checkpoint journal, which is durable);
- SQLite's page cache is bounded (`CACHE_KB`), rows are written and read in pages of `PAGE` rows,
  so the Python side holds one page at a time.

Small plans (an event-driven replicator applies a few operations per event) use the same code in
an in-memory database (`SpillStore(memory=True)`): no file, no directory, the same SQL.

The run's listings go to the same file (`snapshot.read_listing(spill=...)`): each region's things,
group members, certificates and policy targets are staged in `SpillTable`s as their pages arrive,
then copied in key order into `SortedRows`, which the snapshot reads by position, slice or key.

`SpillTable` is an ordered, keyed table of pickled values: insertion order is kept (`seq`), a key
is stored once (the first insertion wins; later duplicates are ignored and counted), each row has a
`group` (the scheduler's: the operation's API) and a small integer `state`. Values are pickled and
only ever read back from the store's own private file.
"""

from __future__ import annotations

import pickle
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PAGE = 1000  # rows per read or write
CACHE_KB = 8 * 1024  # SQLite's page cache per store
_MAX_PARAMS = 500  # below SQLite's default limit of bound parameters (999 before 3.32)


def _cleanup(db: sqlite3.Connection, directory: str | None) -> None:
    try:
        db.close()
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


class SpillStore:
    """One temporary SQLite database (a file in a private temporary directory, or in memory)."""

    def __init__(self, *, memory: bool = False, directory: str | Path | None = None,
                 prefix: str = "orchestrate-spill-") -> None:
        self.lock = threading.RLock()
        self.directory: Path | None = None
        if memory:
            target = ":memory:"
        else:
            self.directory = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))  # mode 0700
            target = str(self.directory / "spill.sqlite")
        try:
            self.db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            for pragma in ("journal_mode=MEMORY", "synchronous=OFF", "temp_store=FILE",
                           f"cache_size=-{CACHE_KB}"):
                self.db.execute(f"PRAGMA {pragma}")
        except BaseException:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
            raise
        # runs on close(), when the store is collected, and at interpreter exit, whichever comes first
        self._finalizer = weakref.finalize(self, _cleanup, self.db,
                                           str(self.directory) if self.directory is not None else None)
        self._tables: dict[str, SpillTable] = {}

    @property
    def path(self) -> Path | None:
        return self.directory / "spill.sqlite" if self.directory is not None else None

    def table(self, name: str) -> SpillTable:
        with self.lock:
            if name not in self._tables:
                self._tables[name] = SpillTable(self, name)
            return self._tables[name]

    def drop(self, name: str) -> None:
        """Drop table `name` (its pages are reused by the tables written after it)."""
        if not name.isidentifier():
            raise ValueError(f"table name must be an identifier, got {name!r}")
        with self.lock:
            self._tables.pop(name, None)
            self.db.execute(f"DROP TABLE IF EXISTS {name}")

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Close the database and remove its directory (idempotent)."""
        with self.lock:
            self._finalizer()

    def __enter__(self) -> SpillStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpillTable:
    """Rows (seq, key, group, state, value) of one table; see the module doc."""

    def __init__(self, store: SpillStore, name: str) -> None:
        if not name.isidentifier():
            raise ValueError(f"table name must be an identifier, got {name!r}")
        self.store = store
        self.name = name
        self.duplicates = 0  # insertions ignored because the key was already stored
        self._n = 0
        with store.lock:
            store.db.execute(f"CREATE TABLE IF NOT EXISTS {name} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "key TEXT NOT NULL UNIQUE, grp TEXT NOT NULL DEFAULT '', "
                             "state INTEGER NOT NULL DEFAULT 0, value BLOB NOT NULL)")
            store.db.execute(f"CREATE INDEX IF NOT EXISTS {name}_grp ON {name} (grp, seq)")
            self._n = int(store.db.execute(f"SELECT count(*) FROM {name}").fetchone()[0])

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self.store.db.execute(sql.replace("{t}", self.name), tuple(args))

    def add(self, rows: Iterable[tuple[str, str, Any]]) -> int:
        """Append (key, group, value) rows in order, a page per transaction; a key already stored
        is ignored (the first insertion wins). Returns how many rows were added."""
        added = 0
        batch: list[tuple[str, str, bytes]] = []

        def flush() -> None:
            nonlocal added
            with self.store.lock:
                db = self.store.db
                db.execute("BEGIN")
                try:
                    before = db.total_changes
                    db.executemany(f"INSERT OR IGNORE INTO {self.name} (key, grp, value) VALUES (?, ?, ?)", batch)
                    n = db.total_changes - before
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            added += n
            self.duplicates += len(batch) - n
            self._n += n
            batch.clear()

        for key, group, value in rows:
            batch.append((key, group, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))
            if len(batch) >= PAGE:
                flush()
        if batch:
            flush()
        return added

    def __len__(self) -> int:
        return self._n

    def get(self, key: str) -> Any | None:
        with self.store.lock:
            row = self._exec("SELECT value FROM {t} WHERE key = ?", (key,)).fetchone()
        return pickle.loads(row[0]) if row is not None else None

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self.store.lock:
            return self._exec("SELECT 1 FROM {t} WHERE key = ?", (key,)).fetchone() is not None

    def states(self, keys: Iterable[str]) -> dict[str, int]:
        """The state of each of `keys` that is stored (absent keys are left out)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, int] = {}
        with self.store.lock:
            for i in range(0, len(keys), _MAX_PARAMS):
                part = keys[i:i + _MAX_PARAMS]
                marks = ",".join("?" * len(part))
                out.update(self._exec(f"SELECT key, state FROM {{t}} WHERE key IN ({marks})", part).fetchall())
        return out

    def locate(self, keys: Iterable[str]) -> dict[str, tuple[str, int]]:
        """(group, seq) of each of `keys` that is stored (absent keys are left out). Read only."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, tuple[str, int]] = {}
        with self.store.lock:
            for i in range(0, len(keys), _MAX_PARAMS):
                part = keys[i:i + _MAX_PARAMS]
                marks = ",".join("?" * len(part))
                for key, grp, seq in self._exec(f"SELECT key, grp, seq FROM {{t}} WHERE key IN ({marks})", part):
                    out[key] = (grp, seq)
        return out

    def set_state(self, keys: Iterable[str], state: int) -> None:
        keys = list(keys)
        if not keys:
            return
        with self.store.lock:
            db = self.store.db
            db.execute("BEGIN")
            try:
                db.executemany(f"UPDATE {self.name} SET state = ? WHERE key = ?", [(state, k) for k in keys])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def page(self, *, group: str | None = None, after: int = 0, limit: int = PAGE,
             state: int | None = None) -> list[tuple[int, str, Any]]:
        """Up to `limit` rows (seq, key, value) after `after` in insertion order (of `group`, in
        `state`, when given)."""
        where, args = ["seq > ?"], list[Any]([after])
        if group is not None:
            where.append("grp = ?")
            args.append(group)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        with self.store.lock:
            rows = self._exec(f"SELECT seq, key, value FROM {{t}} WHERE {' AND '.join(where)} "
                              "ORDER BY seq LIMIT ?", [*args, limit]).fetchall()
        return [(seq, key, pickle.loads(value)) for seq, key, value in rows]

    def groups(self) -> list[str]:
        with self.store.lock:
            return [g for (g,) in self._exec("SELECT DISTINCT grp FROM {t} ORDER BY grp").fetchall()]

    def count(self, *, state: int | None = None) -> int:
        with self.store.lock:
            if state is None:
                return int(self._exec("SELECT count(*) FROM {t}").fetchone()[0])
            return int(self._exec("SELECT count(*) FROM {t} WHERE state = ?", (state,)).fetchone()[0])

    def items(self, *, group: str | None = None, state: int | None = None,
              page: int = PAGE) -> Iterator[tuple[str, Any]]:
        """(key, value) in insertion order, read a page at a time (rows added while iterating are
        seen when they come after the current page)."""
        after = 0
        while True:
            rows = self.page(group=group, after=after, limit=page, state=state)
            if not rows:
                return
            for _seq, key, value in rows:
                yield key, value
            after = rows[-1][0]

    def values(self, **kwargs: Any) -> Iterator[Any]:
        for _key, value in self.items(**kwargs):
            yield value

    def sorted_items(self, *, start: str | None = None, stop: str | None = None,
                     page: int = PAGE) -> Iterator[tuple[str, Any]]:
        """(key, value) in key order (keys in [start, stop) when given), a page at a time."""
        after, first = start, True
        while True:
            where, args = [], list[Any]()
            if after is not None:
                where.append("key >= ?" if first else "key > ?")
                args.append(after)
            if stop is not None:
                where.append("key < ?")
                args.append(stop)
            sql = "SELECT key, value FROM {t}" + (f" WHERE {' AND '.join(where)}" if where else "") \
                + " ORDER BY key LIMIT ?"
            with self.store.lock:
                rows = self._exec(sql, [*args, page]).fetchall()
            for key, value in rows:
                yield key, pickle.loads(value)
            if len(rows) < page:
                return
            after, first = rows[-1][0], False


class SortedRows:
    """Rows (idx, key, value) numbered 0, 1, … in key order, written once and then read by position,
    by key or a page at a time: a sorted sequence and its index on disk (issue 22: a listing of the
    fleet, held as Python objects, cost ≈ 1 KB per thing). `extend` takes rows in strictly
    increasing key order (a key out of order is refused). Values are pickled, as in `SpillTable`."""

    def __init__(self, store: SpillStore, name: str) -> None:
        if not name.isidentifier():
            raise ValueError(f"table name must be an identifier, got {name!r}")
        self.store = store
        self.name = name
        with store.lock:
            store.db.execute(f"CREATE TABLE IF NOT EXISTS {name} (idx INTEGER PRIMARY KEY, "
                             "key TEXT NOT NULL UNIQUE, value BLOB NOT NULL)")
            row = store.db.execute(f"SELECT count(*), max(key) FROM {name}").fetchone()
        self._n = int(row[0])
        self._last: str | None = row[1]

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self.store.db.execute(sql.replace("{t}", self.name), tuple(args))

    def extend(self, rows: Iterable[tuple[str, Any]]) -> int:
        """Append (key, value) rows, keys in increasing order after the last one stored; returns
        how many were added. A page per transaction."""
        added = 0
        batch: list[tuple[int, str, bytes]] = []

        def flush() -> None:
            with self.store.lock:
                db = self.store.db
                db.execute("BEGIN")
                try:
                    db.executemany(f"INSERT INTO {self.name} (idx, key, value) VALUES (?, ?, ?)", batch)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            batch.clear()

        for key, value in rows:
            if self._last is not None and key <= self._last:
                raise ValueError(f"{self.name}: key {key!r} is not after {self._last!r}")
            batch.append((self._n + added, key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))
            self._last = key
            added += 1
            if len(batch) >= PAGE:
                flush()
        if batch:
            flush()
        self._n += added
        return added

    def __len__(self) -> int:
        return self._n

    def rows(self, start: int, stop: int) -> list[tuple[str, Any]]:
        """(key, value) of positions [start, stop)."""
        start, stop = max(start, 0), min(stop, self._n)
        if start >= stop:
            return []
        with self.store.lock:
            found = self._exec("SELECT key, value FROM {t} WHERE idx >= ? AND idx < ? ORDER BY idx",
                               (start, stop)).fetchall()
        return [(key, pickle.loads(value)) for key, value in found]

    def get(self, key: str) -> tuple[bool, Any]:
        """(found, value) of `key`."""
        with self.store.lock:
            row = self._exec("SELECT value FROM {t} WHERE key = ?", (key,)).fetchone()
        return (True, pickle.loads(row[0])) if row is not None else (False, None)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self.store.lock:
            return self._exec("SELECT 1 FROM {t} WHERE key = ?", (key,)).fetchone() is not None

    def keys(self, *, page: int = PAGE) -> Iterator[str]:
        for i in range(0, self._n, page):
            with self.store.lock:
                found = self._exec("SELECT key FROM {t} WHERE idx >= ? AND idx < ? ORDER BY idx",
                                   (i, i + page)).fetchall()
            for (key,) in found:
                yield key

    def items(self, *, page: int = PAGE) -> Iterator[tuple[str, Any]]:
        for i in range(0, self._n, page):
            yield from self.rows(i, i + page)


__all__ = ["CACHE_KB", "PAGE", "SortedRows", "SpillStore", "SpillTable"]
