"""The daily reconciliation as one pass of bounded, resumable slices (issue 22).

One Lambda invocation (at most 900 s) cannot hold a full pass beyond about 9,000 things: a full
sync reads every thing's principals, one `ListThingPrincipals` per thing and region at 10/s (27.8 h
at 1M things). So the replication stack's Step Functions state machine (programs/replication.py)
invokes the replication function again and again with `{"reconcile": {"from": R, "slice": {...}}}`,
and each invocation (`run_slice`) does a bounded part of one *pass* and returns
`{"done": bool, "progress": {...}}`:

1. read slices: page the source's `ListThings` from the pass's cursor (its `nextToken`), and for
   every thing of a page read its principals in the source and, where the thing exists there
   (`DescribeThing`: 350/s), in the destination. What is read is journalled in the read journal's
   own format (`readjournal.ReadJournal`: thing -> (version when read, certificate ids), per region),
   and each page's journal part is stored before the cursor moves past it. A slice stops taking
   pages at its time budget (`SliceLimits.budget_s`, 600 s by default: a page is at most 250 things,
   about 50 s of reads at the quota, so the slice ends well inside Lambda's 900 s) or page count;
2. the apply slice (when the listing has no next page): the registry sync itself (`sync_clients`,
   `--full`), with the pass's journal parts in its checkpoint directory: every thing whose version
   is unchanged since it was read takes its principals from the journal, so the sync reads only
   what changed or was never read, then plans, applies and reads back as a CLI sync does. Its
   result is the reconciliation record (`put_reconciliation`), as before slices.

Where the progress lives: in the function's own `applied` DynamoDB table (the replication stack's,
in the same region), not in S3. The table exists already, the function's role may already read and
write it (no new bucket, no new grant), its TTL attribute removes a pass's parts after the validity
window without a sweeper, and an item is at most 400 KB, which bounds every upload: one head item
(`reconcile-pass/<source>`: the pass id, phase, cursor, counters; a few hundred bytes) and one item
per stored journal part (`reconcile-pass/<source>/<pass>/<n>`, split below `PART_MAX_BYTES`). Parts
are written once and never rewritten, so the bytes written over a pass are O(things read).

The validity window (`VALIDITY_S`, 36 hours): a pass older than that is discarded and a new one
starts; its journal lines are trusted for as long (a thing's lines only while its version is the
one read). Why 36 h: the reads of a pass are as current as its oldest slice, and a certificate moved
between two things changes no version (the same limit as the CLI's journal, readjournal.py), so the
window bounds how stale a completed pass can be; it must also exceed the pass's own floor, 27.8 h at
1M things with ListThingPrincipals at 10/s (docs/performance.md), or no pass at 1M could finish.

One pass at a time: each slice holds a lease on the head item (`AppliedStore.acquire`, for
`LEASE_MS`: longer than one invocation), so a daily execution that starts while yesterday's pass is
still running ends at once (`busy`) and leaves the pass to the execution that holds it; the lease
expires if that execution stops, and the next execution continues the pass.

What resumes, and what does not: the principals read (journalled per page) and the cursor. A slice
killed mid-page re-reads that page (at most `page_size` things) on the next slice; a cursor the
service no longer accepts restarts the listing (the journalled things are not read again, their
pages are listed again). The apply slice reads the listings again and every shadow (the journal
holds principals only), plans from scratch and applies idempotent operations: a killed apply slice
is repeated, not resumed.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.registry.calls import Caller, error_code
from orchestrator.registry.readjournal import ReadJournal, reads_prefix
from orchestrator.registry.snapshot import RegistrySnapshot, Thing, pmap, read_principals

if TYPE_CHECKING:
    from orchestrator.registry.replicate import Replicator

PASS_PREFIX = "reconcile-pass/"
VALIDITY_S = 36 * 3600.0
SLICE_BUDGET_S = 600.0  # stop taking new pages after this (Lambda's limit is 900 s)
SLICE_MAX_PAGES = 400  # a second bound: at most 100,000 things per slice
PAGE_SIZE = 250  # ListThings' maximum page
PART_MAX_BYTES = 350_000  # a DynamoDB item is at most 400 KB (name and attributes included)
LEASE_MS = 960_000  # one invocation (900 s) and a margin
LAMBDA_MARGIN_S = 120.0  # what a slice leaves of the invocation's remaining time for its last page
JOURNAL_NAME = "reconcile.json"  # the sync checkpoint's name in the slice's directory (parts beside it)
READ, APPLY, DONE = "read", "apply", "done"


@dataclass(frozen=True)
class SliceLimits:
    """How much one slice may do. An event may only tighten the defaults (`of`)."""

    budget_s: float = SLICE_BUDGET_S
    max_pages: int = SLICE_MAX_PAGES
    page_size: int = PAGE_SIZE

    @classmethod
    def of(cls, value: Any) -> SliceLimits:
        """From a slice request's `slice` object (`true` or `{}`: the defaults); values past the
        defaults or below 1 are refused (ValueError), so an event cannot widen a slice."""
        if value is True or value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(f"reconcile slice: expected an object, got {type(value).__name__}")
        unknown = set(value) - {"budget_s", "max_pages", "page_size"}
        if unknown:
            raise ValueError(f"reconcile slice: unknown field(s) {sorted(unknown)}")
        base = cls()
        out = {}
        for name, top in (("budget_s", base.budget_s), ("max_pages", base.max_pages), ("page_size", base.page_size)):
            raw = value.get(name, top)
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw <= top:
                raise ValueError(f"reconcile slice: {name} must be in (0, {top}], got {raw!r}")
            out[name] = raw
        return cls(float(out["budget_s"]), int(out["max_pages"]), int(out["page_size"]))


@dataclass(frozen=True)
class PassState:
    """The head item: one pass of one source into this region."""

    pass_id: str
    source: str
    started_at: float
    phase: str = READ
    cursor: str | None = None  # ListThings' nextToken of the next page (None: from the start)
    parts: int = 0  # journal parts stored: items 0 .. parts-1
    pages: int = 0
    read: int = 0  # source things whose principals were read
    total_estimate: int | None = None  # the source's things (the last pass's count until listed)
    slices: int = 0
    applied: int = 0
    errors: int = 0
    apply_attempts: int = 0
    updated_at: float = 0.0
    restarts: int = 0  # listings restarted because the service refused the cursor

    def progress(self, now: float) -> dict[str, Any]:
        """What `orchestrate status` shows: counts, the rate so far and the ETA of the read phase."""
        elapsed = max(0.0, (self.updated_at or now) - self.started_at)
        rate = self.read / elapsed if elapsed > 0 and self.read else None
        eta = None
        if self.phase == READ and rate and self.total_estimate is not None:
            eta = round(max(0, self.total_estimate - self.read) / rate, 1)
        elif self.phase != READ:
            eta = 0.0
        return {"pass": self.pass_id, "from": self.source, "phase": self.phase, "read": self.read,
                "total_estimate": self.total_estimate, "pages": self.pages, "slices": self.slices,
                "applied": self.applied, "errors": self.errors,
                "started_at": _iso(self.started_at), "updated_at": _iso(self.updated_at or now),
                "rate_per_s": round(rate, 3) if rate else None, "eta_s": eta}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


class PassStore:
    """The pass's head item and journal parts in the region's `applied` table (see the module doc)."""

    def __init__(self, client: Any, table: str, source: str) -> None:
        self.client, self.table, self.source = client, table, source

    @property
    def head_key(self) -> str:
        return PASS_PREFIX + self.source

    def part_key(self, pass_id: str, n: int) -> str:
        return f"{PASS_PREFIX}{self.source}/{pass_id}/{n:06d}"

    def load(self) -> PassState | None:
        item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": self.head_key}},
                                    ConsistentRead=True).get("Item")
        if not item or "state" not in item:
            return None
        try:
            data = json.loads(item["state"]["S"])
            return PassState(**{k: data[k] for k in PassState.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None  # unreadable: a new pass starts (costs reads, never correctness)

    def save(self, state: PassState) -> None:
        self.client.put_item(TableName=self.table, Item={
            "objectKey": {"S": self.head_key}, "state": {"S": json.dumps(asdict(state), sort_keys=True)},
            "expiresAt": {"N": str(int(state.started_at + 2 * VALIDITY_S))}})

    def put_part(self, state: PassState, text: str) -> PassState:
        """Store one journal part (split at line ends below PART_MAX_BYTES); the state with the new
        part count, to be saved by the caller after the parts are in."""
        n = state.parts
        for chunk in _chunks(text, PART_MAX_BYTES):
            self.client.put_item(TableName=self.table, Item={
                "objectKey": {"S": self.part_key(state.pass_id, n)}, "text": {"S": chunk},
                "expiresAt": {"N": str(int(state.started_at + VALIDITY_S + 3600))}})
            n += 1
        return replace(state, parts=n)

    def parts(self, state: PassState) -> list[str]:
        out = []
        for n in range(state.parts):
            item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": self.part_key(state.pass_id, n)}},
                                        ConsistentRead=True).get("Item")
            if item and "text" in item:
                out.append(str(item["text"]["S"]))
        return out


def _chunks(text: str, limit: int) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        n = len(line.encode("utf-8"))
        if n > limit:
            raise ValueError(f"a journal line of {n} bytes does not fit one part ({limit})")
        if size + n > limit and current:
            out.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        out.append("".join(current))
    return out


def pass_store(replicator: Replicator, source: str) -> PassStore:
    store = replicator.store
    client, table = getattr(store, "client", None), getattr(store, "table", None)
    if client is None or not isinstance(table, str):
        raise TypeError("the sliced reconciliation keeps its progress in the applied table (DynamoAppliedStore)")
    return PassStore(client, table, source)


def read_progress(client: Any, table: str, source: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The pass in progress from `source`, as `orchestrate status` shows it (None: none)."""
    state = PassStore(client, table, source).load()
    if state is None:
        return None
    now = time.time() if now is None else now
    out = state.progress(now)
    out["stale"] = now - state.started_at > VALIDITY_S
    return out


# -- one slice -------------------------------------------------------------------------------------
def run_slice(replicator: Replicator, source: str, limits: SliceLimits = SliceLimits(), *,
              remaining_s: Callable[[], float] | None = None, clock: Callable[[], float] = time.time,
              now: datetime | None = None) -> dict[str, Any]:
    """One bounded slice of the pass from `source` into the replicator's region (module doc)."""
    store = pass_store(replicator, source)
    lease = f"{PASS_PREFIX}{source}"
    t0 = clock()
    if not replicator.store.acquire(lease, replicator.owner, int(t0 * 1000), LEASE_MS):
        state = store.load()
        return {"done": True, "busy": True,
                "progress": state.progress(t0) if state is not None else None}
    try:
        state = _current(store, replicator, t0)
        state = replace(state, slices=state.slices + 1)
        if state.phase == READ:
            state = _read(replicator, store, state, limits, t0, clock, remaining_s)
            store.save(state)
            return {"done": False, "progress": state.progress(clock())}
        return _apply(replicator, store, state, clock, now)
    finally:
        replicator.store.release(lease, replicator.owner)


def _current(store: PassStore, replicator: Replicator, now: float) -> PassState:
    """The pass to continue, or a new one (none yet, the last one finished, or older than the window)."""
    state = store.load()
    if state is not None and state.phase != DONE and now - state.started_at <= VALIDITY_S:
        return state
    last = replicator.store.reconciliation() or {}
    things = last.get("things")
    state = PassState(uuid.uuid4().hex[:12], store.source, now,
                      total_estimate=things if isinstance(things, int) else None, updated_at=now)
    store.save(state)
    return state


def _read(replicator: Replicator, store: PassStore, state: PassState, limits: SliceLimits, t0: float,
          clock: Callable[[], float], remaining_s: Callable[[], float] | None) -> PassState:
    """Pages of the source's things from the cursor: principals in both regions, journalled and
    stored page by page, until the budget, the page count or the end of the listing."""
    src, dst = callers(replicator, store.source)
    workdir = Path(tempfile.mkdtemp(prefix="reconcile-"))
    holder = {"state": state}

    def keep(part: Path) -> None:
        holder["state"] = store.put_part(holder["state"], part.read_text(encoding="utf-8"))

    try:
        journal = ReadJournal(workdir / JOURNAL_NAME, src_region=src.region, dst_region=dst.region,
                              ttl_s=VALIDITY_S, clock=clock, store=keep, store_every_s=math.inf)
        pages = 0
        while pages < limits.max_pages and clock() - t0 < limits.budget_s \
                and (remaining_s is None or remaining_s() > LAMBDA_MARGIN_S):
            cursor = holder["state"].cursor
            kwargs: dict[str, Any] = {"maxResults": limits.page_size}
            if cursor:
                kwargs["nextToken"] = cursor
            try:
                page = src.call("list_things", **kwargs)
            except Exception as exc:
                if cursor and error_code(exc) in ("InvalidRequestException", "InvalidNextTokenException"):
                    # the service no longer takes the cursor: list again from the start (journalled
                    # things are skipped by version; their pages cost one ListThings call each)
                    holder["state"] = replace(holder["state"], cursor=None, restarts=holder["state"].restarts + 1)
                    continue
                raise
            things = [Thing(t["thingName"], version=t.get("version")) for t in page.get("things", [])]
            _read_page(journal, src, dst, things)
            journal.flush_store()  # the page's part is stored before the cursor moves past it
            token = page.get("nextToken") or None
            s = holder["state"]
            read = s.read + len(things)
            s = replace(s, cursor=token, pages=s.pages + 1, read=read, updated_at=clock(),
                        phase=READ if token else APPLY,
                        total_estimate=read if not token else max(s.total_estimate or 0, read) or None)
            holder["state"] = s
            store.save(s)  # a kill after this re-reads nothing of the page
            pages += 1
            if not token:
                break
        return holder["state"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _read_page(journal: ReadJournal, src: Caller, dst: Caller, things: list[Thing]) -> None:
    """One page's principals: the source's and the destination's at the same time (separate
    regions, separate quotas), each API at its own quota (`callers`); journalled per region."""
    from orchestrator.registry.replicate import _call_or_none  # a missing thing: None
    from orchestrator.registry.sync.run import _journal_lines

    names = [t.name for t in things]
    partial: set[str] = set()  # a thing whose principals' last page may be short: not journalled

    def source() -> tuple[str, dict[str, tuple[int | None, list[str]]]]:
        src_p, _ = read_principals(src, names, partial=partial)
        listing = RegistrySnapshot(src.region, things=tuple(things))
        return src.region, _journal_lines(listing, [n for n in names if n not in partial], src_p)

    def destination() -> tuple[str, dict[str, tuple[int | None, list[str]]]]:
        here = [Thing(name, version=d.get("version")) for name in names
                if (d := _call_or_none(dst, "describe_thing", thingName=name)) is not None]
        dst_names = [t.name for t in here]
        dst_p, _ = read_principals(dst, dst_names) if here else ((), ())
        return dst.region, _journal_lines(RegistrySnapshot(dst.region, things=tuple(here)), dst_names, dst_p)

    for region, lines in pmap(lambda f: f(), [source, destination], 2):  # journalled in this thread
        journal.record(region, lines)


def callers(replicator: Replicator, source: str) -> tuple[Caller, Caller]:
    """Read callers of the source and the destination with every API at its own AWS quota
    (`SyncOptions().caller`: ListThings and ListThingPrincipals 10/s, DescribeThing 350/s), on the
    replicator's clients."""
    from orchestrator.registry.sync import SyncOptions

    options = SyncOptions()
    return (options.caller(replicator._source(source).iot.client, writes=False),
            options.caller(replicator.region.iot.client, writes=False))


def _apply(replicator: Replicator, store: PassStore, state: PassState, clock: Callable[[], float],
           now: datetime | None) -> dict[str, Any]:
    """The registry sync (`--full`) with the pass's journal; its result is the reconciliation."""
    from orchestrator.registry.sync import SyncOptions, sync_clients

    src = replicator._source(store.source)
    started = clock()
    at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    workdir = Path(tempfile.mkdtemp(prefix="reconcile-"))
    holder = {"state": replace(state, apply_attempts=state.apply_attempts + 1)}
    store.save(holder["state"])

    def keep(part: Path) -> None:  # reads of the apply step (changed things) join the pass's journal
        if part.name.startswith(reads_prefix(workdir / JOURNAL_NAME)):
            holder["state"] = store.put_part(holder["state"], part.read_text(encoding="utf-8"))
            store.save(holder["state"])

    try:
        prefix = reads_prefix(workdir / JOURNAL_NAME)
        for n, text in enumerate(store.parts(state)):
            (workdir / f"{prefix}{state.pass_id}-{n:06d}.jsonl").write_text(text, encoding="utf-8")
        options = SyncOptions(full=True, checkpoint_path=workdir / JOURNAL_NAME, checkpoint_store=keep,
                              reads_ttl_s=VALIDITY_S)
        try:
            report = sync_clients(src.iot.client, replicator.region.iot.client, options,
                                  src_caller=src.iot, dst_caller=replicator.region.iot,
                                  src_data=src.data.client, dst_data=replicator.region.data.client)
        except Exception as exc:
            result: dict[str, Any] = {"at": at, "from": store.source, "ok": False, "applied": 0, "errors": 1,
                                      "error": f"{error_code(exc) or type(exc).__name__}"}
        else:
            result = {"at": at, "from": store.source, "ok": report.ok, "applied": report.applied,
                      "errors": len(report.errors) + report.blocked, "things": report.things_total}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # the device-management plane, as the unsliced reconcile carries it (a few reads per object)
    from orchestrator.registry.replicate import reconcile_plane

    result["plane"] = plane = reconcile_plane(replicator, store.source)
    result["ok"] = bool(result["ok"] and plane["ok"])
    result["errors"] += plane["errors"]
    s = holder["state"]
    end = clock()
    result.update(duration_s=round(end - started, 3), slices=s.slices, pass_s=round(end - s.started_at, 3))
    replicator.store.put_reconciliation(result)
    # clean: the pass is done (the next execution starts a new one); not clean: the pass stays in
    # its apply phase, so the next execution applies again with the journal (reads only what changed)
    final = replace(s, phase=DONE if result["ok"] else APPLY, applied=int(result["applied"]),
                    errors=int(result["errors"]), updated_at=end)
    store.save(final)
    return {"done": True, "progress": final.progress(end), "result": result}


__all__ = ["APPLY", "DONE", "PASS_PREFIX", "READ", "SLICE_BUDGET_S", "VALIDITY_S", "PassState", "PassStore",
           "SliceLimits", "read_progress", "run_slice"]
