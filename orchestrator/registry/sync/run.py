"""One sync, end to end: read the regions, plan, and either summarize the plan or apply it.

Two entry points per source, one result type each:

    plan_snapshot_sync(src, dst_client, options)       -> SyncPlanSummary   (changes nothing)
    sync_snapshot(src, dst_client, options)            -> SyncReport
    plan_clients_sync(src_client, dst_client, options) -> SyncPlanSummary   (changes nothing)
    sync_clients(src_client, dst_client, options)      -> SyncReport

`src_data` / `dst_data` are the regions' `iot-data` clients: with them (and `options.shadows`)
classic and named shadows are synced too.

A clients sync reads in proportion to what changed:

1. Both regions' paged listings (things with their registry `version`, certificates, groups and
   their members, policies and their targets): about N/250 calls per region.
2. Which things to look at closely: with no version record (`options.state_path`), `--full` or
   `--prune`, all of them; otherwise the things whose version changed in either region since the
   last clean sync, things new to the destination, and the things of certificates new to the
   destination (`list_principal_things`, one per new certificate), and the things still attached in
   the destination to certificates the source deactivated or revoked. A certificate moved between
   two things (or only detached) changes neither version: the `--full` pass finds it.
   The principals read are the source snapshot's `Coverage`: a certificate detached from one of
   those things is detached in the destination (tightening, without `--prune`).
3. Their principals (`list_thing_principals`) and the shadows: every source thing's shadow list
   and documents, and the destination's documents only where the source's version changed.

Stages overlap: without `--prune` the first pass (types, groups, policies, certificates, things,
memberships, policy attachments) is applied while the principals and shadows are being read, and
each certificate's PEM is fetched from the source just before it is registered; the second pass
attaches certificates to things and writes shadows. In a first sync the certificates' registrations
and policy attachments are held back (`_Run.plan_entities`, `release`) and join the apply with the
chunk of things they are attached to. Every call draws from its own API's budget.

The run reads back what it changed (`_Run.verify`: the destination's listings, the principals of
every thing an attachment was planned for, every shadow written) and plans again; the report is
`ok` only when nothing is left (`SyncReport.verification`). Without `--prune` the attachments and
shadows are read back a chunk of things at a time alongside the apply, as soon as the apply has
resolved the chunk's operations (`_ReadBack`); after the apply, one relisting of the destination
(`_Run.verify_streamed`). A pruning run reads back after its apply (`_Run._verify_whole`). Before its first
write the run replaces the version record with an in-progress mark (stored through
`options.state_store`); only a clean, verified run writes a record again, so after a kill, an
error, a failed operation or a failed read-back the next run trusts no version (step 2 reads
every thing).

A plan-only run reads what the applying run reads (PEMs excepted) and writes nothing.

Memory (issue 22): the operations, the certificate ARNs learnt while applying and, in a first sync
(no version record to trust, no `--prune`, no `--full`: `SyncOptions.spill_listings`), the listings
(both regions', and the read-back's) are kept in the run's temporary SQLite file
(`orchestrator/registry/spill.py`), read a page or a chunk at a time, and the version record is
written as a stream. An unchanged, `--full` or `--prune` pass keeps its listings in memory packed as
columns (`orchestrator/registry/packed.py`: sorted keys and small integers, ≈ 0.5 KB per thing for
both regions with the version record; on disk its per-thing look-ups cost it 2-4x its CPU, as
records ≈ 1.1 KB per thing). What stays in memory per thing: the principals read
(both regions; without `--prune` only those of the chunks not read back yet, `_ReadBack`; with it,
also the names of the things whose attachments are read back), the source shadows read, and an
earlier run's checkpoint marks (what a resume skips).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

from orchestrator.errors import InputRejected
from orchestrator.registry.calls import CallCounts, Caller, error_code
from orchestrator.registry.checkpoint import Checkpoint
from orchestrator.registry.readjournal import READS_TTL_S, ReadJournal
from orchestrator.registry.snapshot import (
    CLASSIC,
    Keyed,
    RegistrySnapshot,
    Shadow,
    TargetKind,
    Thing,
    ThingPrincipal,
    in_sorted,
    named_shadows,
    pmap,
    read_listing,
    read_principals,
    read_shadows,
    read_snapshot,
    things_of_certificates,
)
from orchestrator.registry.spill import SpillStore, SpillTable
from orchestrator.registry.sync.apply import OpFeed, _op, _row, apply_sync, spill_ops, spilled_ops
from orchestrator.registry.sync.model import (
    FIRST_ITEMS,
    Action,
    Kind,
    Progress,
    SyncOp,
    SyncOptions,
    SyncPlan,
    SyncPlanSummary,
    SyncReport,
    SyncVerification,
    counts_delta,
    zero_counts,
)
from orchestrator.registry.sync.plan import PlanPart, plan_entities_to, plan_sync

STATE_FORMAT = 1
IN_PROGRESS = "in_progress"  # the version record's mark of a run that has started writing
READ_AHEAD = 2  # chunks `stream_details` reads while it hands one on


def plan_snapshot_sync(src: RegistrySnapshot, dst_client: Any, options: SyncOptions, *,
                       src_caller: Caller | None = None, dst_caller: Caller | None = None,
                       dst_data: Any | None = None) -> SyncPlanSummary:
    """What `sync_snapshot` would change in the destination (nothing is written)."""
    run = _Run.start(options, dst_client, None, dst_caller, src_caller, None, dst_data)
    return run.plan_snapshot(src).summary()


def sync_snapshot(src: RegistrySnapshot, dst_client: Any, options: SyncOptions, *,
                  src_caller: Caller | None = None, dst_caller: Caller | None = None,
                  dst_data: Any | None = None) -> SyncReport:
    """Make the destination hold what `src` holds (shadows too, given `dst_data`).
    `src_caller` (optional) fetches missing PEMs."""
    run = _Run.start(options, dst_client, None, dst_caller, src_caller, None, dst_data)
    plan = run.plan_snapshot(src)
    return run.finish([run.apply(plan, final=True)], src_total=None)


def plan_clients_sync(src_client: Any, dst_client: Any, options: SyncOptions, *,
                      src_caller: Caller | None = None, dst_caller: Caller | None = None,
                      src_data: Any | None = None, dst_data: Any | None = None) -> SyncPlanSummary:
    """Read both regions (in parallel) and summarize what `sync_clients` would change."""
    run = _Run.start(options, dst_client, src_client, dst_caller, src_caller, src_data, dst_data)
    listings = run.read_listings()
    reads = run.read_details(*listings)
    if options.prune:
        return run.guard(reads.src, reads.dst, plan_sync(reads.src, reads.dst, True,
                                                         region_rewrite=options.region_rewrite,
                                                         fetch_pems=True)).summary()
    first = run.guard(listings[0], listings[1],
                      plan_sync(listings[0], listings[1], False, region_rewrite=options.region_rewrite,
                                part=PlanPart.ENTITIES, fetch_pems=True))
    second = run.plan_relations(reads, listings[1], first)
    return replace(first, ops=first.ops + second.ops, warnings=first.warnings + second.warnings,
                   shadows_kept=first.shadows_kept + second.shadows_kept).summary()


def sync_clients(src_client: Any, dst_client: Any, options: SyncOptions, *,
                 src_caller: Caller | None = None, dst_caller: Caller | None = None,
                 src_data: Any | None = None, dst_data: Any | None = None) -> SyncReport:
    """Read both regions (in parallel), plan, and apply; stages overlap (see the module doc). The
    operations are spilled to a temporary SQLite file (`orchestrator.registry.spill`) as they are
    planned, so memory does not grow with the plan; the file is removed when the run ends."""
    with SpillStore() as store:
        return _sync_clients(store, src_client, dst_client, options, src_caller=src_caller,
                             dst_caller=dst_caller, src_data=src_data, dst_data=dst_data)


def _sync_clients(store: SpillStore, src_client: Any, dst_client: Any, options: SyncOptions, *,
                  src_caller: Caller | None, dst_caller: Caller | None, src_data: Any | None,
                  dst_data: Any | None) -> SyncReport:
    spilled = store.table("ops")
    back: _ReadBack | None = None
    run = _Run.start(options, dst_client, src_client, dst_caller, src_caller, src_data, dst_data)
    assert run.src_caller is not None
    if options.spill_listings and not options.prune and not options.full \
            and run.record_of(run.src_caller.region, run.dst_caller.region) is None:
        # a first sync (or one after an unfinished run): it reads, plans and writes every thing, and
        # its listings are ≈ 2 KB per thing as objects; an unchanged or --full pass holds them in
        # memory packed as columns (`_listing`: ≈ 0.5 KB per thing with the record, measured;
        # per-thing look-ups on disk cost it 2-4x its CPU)
        run.listings_store = store
    src_l, dst_l = run.read_listings()
    if options.prune:  # deletions are planned from complete listings, in one pass
        reads = run.read_details(src_l, dst_l)
        plan = plan_sync(reads.src, reads.dst, True, region_rewrite=options.region_rewrite, fetch_pems=True)
        plan = run.guard(reads.src, reads.dst, plan)  # deletions: complete listing, budget, confirmation
        run.mark_started(src_l, dst_l)
        parts = [run.apply(plan, final=True)]
        plans = [plan]
    else:
        # a first sync: certificates registered with the chunk of things they are attached to
        held = store.table("held") if run.listings_store is not None else None
        first = run.plan_entities(src_l, dst_l, spilled, held)  # its operations are in the spill table
        holder: dict[str, Any] = {}
        feed = OpFeed()

        relations: list[SyncPlan] = []  # their warnings (their operations go to the spill table)
        # the read-back of attachments and shadows, a chunk at a time as soon as the apply has
        # resolved the chunk's operations, alongside the apply (`_ReadBack`)
        back = _ReadBack(run, src_l, dst_l, spilled) if options.verify else None

        def feed_part(part: DetailReads) -> None:
            plan = run.plan_relations(part, dst_l, first, spilled=spilled)
            relations.append(replace(plan, ops=()))
            if back is not None:
                back.add(part, plan.ops)  # counted before the apply can resolve any of them
            feed.put([*(run.release(held, part) if held is not None else ()), *plan.ops])

        def read_then_feed() -> None:
            try:
                holder["reads"] = run.stream_details(src_l, dst_l, feed_part, chunk=options.stream_chunk,
                                                     keep_details=back is None)
                if held is not None:  # certificates attached to no thing read
                    feed.put(run.release(held, None))
            except BaseException as exc:  # re-raised in the calling thread
                holder["error"] = exc
            finally:
                feed.close()

        run.mark_started(src_l, dst_l)  # before the first write (the reader only reads)
        reader = threading.Thread(target=read_then_feed, name="registry-sync-reader", daemon=True)
        if back is not None:
            back.start()
        reader.start()
        try:
            one = run.apply(first, final=True, feed=feed, spilled=spilled,
                            on_done=back.done if back is not None else None)
        except BaseException:
            if back is not None:
                back.stop()
            raise
        finally:
            reader.join()
        if "error" in holder:
            if back is not None:
                back.stop()
            raise holder["error"]
        reads = holder["reads"]
        parts, plans = [one], [first, *relations]
        absent = sum(_absent(p.warnings) for p in relations)
        if absent:
            parts = [replace(one, warnings=(*one.warnings,
                                            f"{absent} shadow(s) of things missing in {dst_l.region} not copied"))]
        parts = [replace(parts[0], shadows_kept=parts[0].shadows_kept + sum(p.shadows_kept for p in relations))]
    applied = all(p.ok for p in parts)
    writes = {k: v for p in parts for k, v in p.shadow_writes.items()}
    verification = None
    if back is not None and not options.prune:
        if applied:
            verification = run.verify_streamed(reads, plans, spilled, writes, back)
        else:
            back.stop()  # something was not applied: no read-back is reported (as without streaming)
    elif applied and options.verify:
        verification = run.verify(reads, plans, spilled, writes)
    if applied and (verification is None or verification.ok) and options.state_path is not None:
        things_written = any(op.kind is Kind.THING and op.action is not Action.DELETE for p in plans for op in p.ops) \
            or any(spilled.page(group=api, limit=1) for api in ("create_thing", "update_thing"))
        run.save_state(src_l, dst_l, reads, relist=things_written)  # replaces the in-progress mark
    # else: something was not applied, or did not read back equal: the in-progress mark stays, so
    # the next run trusts no version and reads every thing's principals (and shadows) again
    journal = run._memo.get("journal")
    if isinstance(journal, ReadJournal):
        if applied and (verification is None or verification.ok):
            journal.complete()  # a clean, verified full pass: nothing to resume
        else:
            journal.flush_store()
    return replace(run.finish(parts, src_total=len(src_l.things), reads=reads), verification=verification,
                   distrusted=run.distrusted)


def _from_journal(journal: ReadJournal | None, listing: RegistrySnapshot,
                  names: list[str]) -> tuple[list[str], list[ThingPrincipal]]:
    """Which of `names` to read, and the principals the journal has for the others."""
    if journal is None or not len(journal):
        return names, []
    read: list[str] = []
    known: list[ThingPrincipal] = []
    by_name = listing.things_by_name
    for name in names:
        thing = by_name.get(name)
        certs = journal.known(listing.region, name, thing.version if thing is not None else None)
        if certs is None:
            read.append(name)
        else:
            known.extend(ThingPrincipal(name, c) for c in certs)
    return read, known


def _journal_lines(listing: RegistrySnapshot, names: list[str],
                   found: tuple[ThingPrincipal, ...]) -> dict[str, tuple[int | None, list[str]]]:
    by_name = listing.things_by_name
    out: dict[str, tuple[int | None, list[str]]] = {}
    for name in names:
        thing = by_name.get(name)
        out[name] = (thing.version if thing is not None else None, [])
    for a in found:
        if a.thing in out:
            out[a.thing][1].append(a.certificate_id)
    return out


def _absent(warnings: tuple[str, ...]) -> int:
    """The count in the relations planner's one warning ("N shadow(s) of things missing …")."""
    return sum(int(w.split(" ", 1)[0]) for w in warnings if "shadow(s) of things missing" in w)


# -- change detection ----------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionRecord:
    """What the last clean sync saw: each thing's registry version in both regions, and each
    shadow's version in the source. Versions are per region; only equality is used. `written`:
    the destination's version of each shadow as a sync's own write left it (read back equal): while
    the destination still has that version, nobody but the sync wrote it, so its times (those of
    the write) say nothing about which region is newer, and the source wins."""

    src_region: str
    dst_region: str
    things: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    shadows: Mapping[str, int | None] = field(default_factory=dict)
    written: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, src_region: str, dst_region: str) -> VersionRecord | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable: a full pass rebuilds it (costs calls, never correctness)
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT \
                or (data.get("src_region"), data.get("dst_region")) != (src_region, dst_region) \
                or IN_PROGRESS in data:
            return None
        try:
            # names interned (the listings' own strings: the record is read before them) and each
            # distinct pair of versions one tuple (most are alike): ≈ 130 B per thing less (issue 22)
            pairs: dict[tuple[Any, Any], tuple[int | None, int | None]] = {}
            things = {sys.intern(str(k)): pairs.setdefault((v[0], v[1]), (v[0], v[1]))
                      for k, v in data.pop("things", {}).items()}
            shadows = {str(k): v for k, v in data.get("shadows", {}).items()}
            written = {str(k): int(v) for k, v in data.get("written_shadows", {}).items()}
        except (TypeError, IndexError, AttributeError, ValueError):
            return None
        return cls(src_region, dst_region, things, shadows, written)

    @staticmethod
    def unfinished(path: Path) -> str | None:
        """Why the record at `path` cannot be trusted because a run did not finish cleanly (its
        in-progress mark is still there: killed, stopped by an error, an operation failed, or what
        it wrote did not read back equal); None when there is no such mark."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        mark = data.get(IN_PROGRESS) if isinstance(data, dict) else None
        if not isinstance(mark, dict):
            return None
        started = mark.get("started_at")
        when = time.strftime(" (started %Y-%m-%dT%H:%M:%SZ)", time.gmtime(float(started))) \
            if isinstance(started, (int, float)) else ""
        return (f"the sync before this one{when} did not finish cleanly (interrupted, an operation failed, "
                "or it did not read back equal): every thing was read again")

    @staticmethod
    def mark(path: Path, src_region: str, dst_region: str) -> None:
        """The in-progress mark, written before a run's first write and replaced by the record of
        a clean, verified run: while it stands, no version is trusted."""
        import os
        import socket

        from orchestrator.state import atomic_write_json

        atomic_write_json(path, {"format": STATE_FORMAT, "src_region": src_region, "dst_region": dst_region,
                                 IN_PROGRESS: {"started_at": time.time(), "host": socket.gethostname(),
                                               "pid": os.getpid()}}, indent=None)

    @staticmethod
    def save_streamed(path: Path, src_region: str, dst_region: str,
                      things: Iterable[tuple[str, tuple[int | None, int | None]]],
                      shadows: Mapping[str, int | None], written: Mapping[str, int]) -> None:
        """`save` with the things given in name order as a stream, written a line of JSON at a time
        to the temporary file that replaces `path` (the same bytes `save` writes: sorted keys)."""
        import os
        import tempfile

        def dump(x: Any) -> str:
            return json.dumps(x, sort_keys=True, default=str)

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f'{{"dst_region": {dump(dst_region)}, "format": {STATE_FORMAT}, '
                         f'"shadows": {dump(dict(shadows))}, "src_region": {dump(src_region)}, "things": {{')
                last: str | None = None
                for i, (name, versions) in enumerate(things):
                    if last is not None and name <= last:
                        raise ValueError(f"version record: thing {name!r} is not after {last!r}")
                    last = name
                    fh.write(f'{", " if i else ""}{dump(name)}: {dump(list(versions))}')
                fh.write(f'}}, "written_shadows": {dump(dict(written))}}}\n')
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def save(self, path: Path) -> None:
        from orchestrator.state import atomic_write_json

        atomic_write_json(path, {"format": STATE_FORMAT, "src_region": self.src_region,
                                 "dst_region": self.dst_region, "things": dict(self.things),
                                 "shadows": dict(self.shadows), "written_shadows": dict(self.written)},
                          indent=None)


@dataclass(frozen=True)
class DetailReads:
    """Both regions with the principals and shadows that were read (`src`, `dst`), and what was
    looked at: `checked` things; `shadows_changed` the source shadows whose version moved."""

    src: RegistrySnapshot
    dst: RegistrySnapshot
    checked: Collection[str]  # distinct names
    src_shadows: tuple[Shadow, ...] = ()
    shadows_read: bool = False


def things_to_check(src: RegistrySnapshot, dst: RegistrySnapshot, record: VersionRecord | None) -> set[str] | None:
    """The source things whose principals must be read; None: all of them (no usable record)."""
    if record is None:
        return None
    out = set()
    for t in src.things:
        d = dst.things_by_name.get(t.name)
        if d is None or t.version is None or d.version is None:
            out.add(t.name)
        elif record.things.get(t.name) != (t.version, d.version):
            out.add(t.name)
    return out


# -- one run ---------------------------------------------------------------------------------------

@dataclass
class _Run:
    """One sync: its callers, and their counters at the start (callers may be reused)."""

    options: SyncOptions
    dst_client: Any
    dst_caller: Caller
    src_caller: Caller | None
    src_data: Caller | None
    dst_data: Caller | None
    started: float
    base: dict[int, CallCounts]
    throttles: dict[str, int] = field(default_factory=dict)
    _first: SyncPlan | None = None
    _first_ids: frozenset[str] = frozenset()
    _created: frozenset[str] = frozenset()
    _after: Container[str] | None = None  # the first stage's operations: spilled, and held (`plan_entities`)
    distrusted: str | None = None  # why the version record was not trusted
    _memo: dict[str, Any] = field(default_factory=dict)
    _dst_now: RegistrySnapshot | None = None  # the destination's listing read back after applying
    # where the listings go (issue 22: both listings, and the read-back's, were ≈ 1 KB per thing
    # each as objects): the run's spill file; None: in memory
    listings_store: SpillStore | None = None

    @classmethod
    def start(cls, options: SyncOptions, dst_client: Any, src_client: Any | None, dst_caller: Caller | None,
              src_caller: Caller | None, src_data: Any | None, dst_data: Any | None) -> _Run:
        dst_caller = dst_caller or options.caller(dst_client, writes=True)
        if src_caller is None and src_client is not None:
            src_caller = options.caller(src_client, writes=False)
        if src_caller is not None and src_caller.region == dst_caller.region:
            raise InputRejected(f"source and destination are the same region ({src_caller.region})")
        src_dc = _data_caller(options, src_data, writes=False)
        dst_dc = _data_caller(options, dst_data, writes=True)
        callers = [c for c in (dst_caller, src_caller, src_dc, dst_dc) if c is not None]
        return cls(options, dst_client, dst_caller, src_caller, src_dc, dst_dc, time.monotonic(),
                   {id(c): c.stats.counts() for c in callers})

    @property
    def shadows(self) -> bool:
        return self.options.shadows and self.dst_data is not None

    def callers(self) -> list[Caller]:
        return [c for c in (self.dst_caller, self.src_caller, self.src_data, self.dst_data) if c is not None]

    # -- reading ---------------------------------------------------------------------------------
    def read_listings(self) -> tuple[RegistrySnapshot, RegistrySnapshot]:
        assert self.src_caller is not None
        src, dst = pmap(lambda args: self._listing(*args), [(self.src_caller, "src"), (self.dst_caller, "dst")], 2)
        return src, dst

    def _listing(self, caller: Caller, name: str) -> RegistrySnapshot:
        """One region's listing: into the run's spill file (`listings_store`), else in memory."""
        if self.listings_store is not None:
            return read_listing(caller, concurrency=self.options.concurrency, spill=self.listings_store, name=name)
        return read_listing(caller, concurrency=self.options.concurrency, packed=True)

    def journal(self, src_region: str, dst_region: str) -> ReadJournal | None:
        """The reads journal of a `--full` pass (without `--prune`) that has a checkpoint: principals
        read are journalled, and those a cut-short pass read are taken from it (readjournal.py)."""
        o = self.options
        if not o.full or o.prune or o.checkpoint_path is None:
            return None
        if "journal" not in self._memo:
            self._memo["journal"] = ReadJournal(o.checkpoint_path, src_region=src_region, dst_region=dst_region,
                                                store=o.checkpoint_store,
                                                ttl_s=o.reads_ttl_s if o.reads_ttl_s is not None else READS_TTL_S)
        journal: ReadJournal = self._memo["journal"]
        return journal

    def record(self, src: RegistrySnapshot, dst: RegistrySnapshot) -> VersionRecord | None:
        """The version record as it was when this run started (read once: the run's own in-progress
        mark replaces it before the first write)."""
        return self.record_of(src.region, dst.region)

    def record_of(self, src_region: str, dst_region: str) -> VersionRecord | None:
        """`record`, by the regions' names (known before the listings are read)."""
        if "record" not in self._memo:
            self._memo["record"] = self._load_record(src_region, dst_region)
        return self._memo["record"]

    def _load_record(self, src_region: str, dst_region: str) -> VersionRecord | None:
        o = self.options
        if o.full or o.prune or o.state_path is None:
            return None
        if o.distrust:
            self.distrusted = o.distrust
            return None
        unfinished = VersionRecord.unfinished(o.state_path)
        if unfinished:
            self.distrusted = unfinished
            return None
        return VersionRecord.load(o.state_path, src_region, dst_region)

    def read_details(self, src: RegistrySnapshot, dst: RegistrySnapshot) -> DetailReads:
        """Principals of the things that may have changed, and shadows (see the module doc)."""
        record, src_names, dst_names = self._targets(src, dst)
        return self._read_part(src, dst, record, src_names, dst_names, [t.name for t in src.things])

    def stream_details(self, src: RegistrySnapshot, dst: RegistrySnapshot, on_part: Callable[[DetailReads], None],
                       *, chunk: int = 200, keep_details: bool = True) -> DetailReads:
        """`read_details` in chunks of source things, each handed to `on_part` as soon as it is read
        (its snapshots hold only that chunk's things, certificates, principals and shadows), in
        order, while the next `READ_AHEAD` chunks are read; returns the whole. `keep_details=False`:
        the whole holds no principals and no shadows of either region (`src_shadows` are kept):
        `on_part` took what it needs of them (the streamed read-back, `_ReadBack`, keeps a chunk's
        only until the chunk is compared; issue 22)."""
        record, src_names, dst_names = self._targets(src, dst)
        # every thing (a first sync, --full): no set of N names to ask (issue 22)
        wanted = None if len(src_names) == len(src.things) else set(src_names)
        in_dst_wanted = None if len(dst_names) == len(src.things) else set(dst_names)
        # what the whole keeps of each part; the part itself (its chunk's things and certificates:
        # with a spilled listing, objects decoded for it alone, ≈ 0.5 KB per thing) is dropped as
        # soon as it is handed on, not held until every chunk is read (issue 22)
        src_tp: list[ThingPrincipal] = []
        dst_tp: list[ThingPrincipal] = []
        src_sh: list[Shadow] = []
        dst_sh: list[Shadow] = []
        src_shadows: list[Shadow] = []
        notes_set = set(src.notes)
        gaps = dict.fromkeys(src.gaps)
        # the things whose principals were read but whose listing may be short (few), and how many
        # were read completely: not a set of every name read (≈ 32-64 B per thing; issue 22)
        uncovered: set[str] = set()
        covered_n = 0

        def read(i: int) -> DetailReads:
            things = [t.name for t in src.things[i:i + chunk]]
            return self._read_part(src, dst, record, [n for n in things if wanted is None or n in wanted],
                                   [n for n in things if (n in in_dst_wanted if in_dst_wanted is not None
                                                          else n in dst.things_by_name)],
                                   things, restrict=True)

        # the next chunk is read while this one is handed on (planned, fed), and while this one's
        # last reads finish: the source's ListThingPrincipals, a quota-floor bucket of a first sync,
        # never waits for a chunk's planning or its slowest read (issue 22: 65-85 % of its quota
        # when each chunk was read, then planned, one after the other). A reads journal (--full)
        # is written by one chunk at a time: without read-ahead.
        ahead = READ_AHEAD if self.journal(src.region, dst.region) is None else 0
        pool = ThreadPoolExecutor(max_workers=max(ahead, 1), thread_name_prefix="registry-details-chunk")
        try:
            reading: deque[Future[DetailReads]] = deque()
            starts = iter(range(0, len(src.things), chunk))

            def fill(upto: int) -> None:
                while len(reading) < upto and (i := next(starts, None)) is not None:
                    reading.append(pool.submit(read, i))

            fill(max(ahead, 1))
            while reading:
                part = reading.popleft().result()
                fill(ahead)  # read while this one is handed on
                on_part(part)
                fill(max(ahead, 1))
                if keep_details:
                    src_tp += part.src.thing_principals
                    dst_tp += part.dst.thing_principals
                    src_sh += part.src.shadows
                    dst_sh += part.dst.shadows
                src_shadows += part.src_shadows
                notes_set.update(part.src.notes)
                gaps.update(dict.fromkeys(part.src.gaps))
                read_whole = part.src.coverage.principals or frozenset()
                covered_n += len(read_whole)
                uncovered.update(n for n in part.checked if n not in read_whole)
                del part
        finally:
            # after a failure (the apply stopped taking: FeedStopped; a read failed) the chunks
            # being read are waited for (at most READ_AHEAD chunks' reads): they use the run's
            # listings, which close with it
            pool.shutdown(wait=True, cancel_futures=True)
        src_tp.sort()
        dst_tp.sort()
        covered: frozenset[str] | None = None  # every thing's: `ALL`
        if covered_n != len(src.things):
            covered = frozenset(n for n in src_names if n not in uncovered)
        return DetailReads(
            replace(src, thing_principals=tuple(src_tp), shadows=tuple(src_sh), notes=tuple(sorted(notes_set)),
                    gaps=tuple(gaps), coverage=src.coverage.with_principals(covered)),
            replace(dst, thing_principals=tuple(dst_tp), shadows=tuple(dst_sh)),
            src_names, tuple(src_shadows), self.shadows)  # `checked`: the list read, not a set of it

    def _targets(self, src: RegistrySnapshot, dst: RegistrySnapshot) -> tuple[VersionRecord | None, list[str],
                                                                                list[str]]:
        """The version record, and whose principals to read in the source and in the destination."""
        assert self.src_caller is not None
        o = self.options
        record = self.record(src, dst)
        wanted = things_to_check(src, dst, record)
        if wanted is not None:
            # certificates new to the destination: the things they are attached to in the source
            # (a rotated certificate: the thing's old one is detached too); certificates deactivated
            # or revoked in the source: the things they are still attached to in the destination
            # (such a certificate is often detached too)
            new_certs = [arn for c in src.certificates if c.id not in dst.certificates_by_id
                         for arn in [src.certificate_arn(c)] if arn]
            tightened = [arn for c in src.certificates if c.status in ("INACTIVE", "REVOKED")
                         for d in [dst.certificates_by_id.get(c.id)] if d is not None and d.status != c.status
                         for arn in [dst.certificate_arn(d)] if arn]
            if new_certs:
                wanted |= things_of_certificates(self.src_caller, new_certs, concurrency=o.concurrency)
            if tightened:
                wanted |= things_of_certificates(self.dst_caller, tightened, concurrency=o.concurrency)
            wanted = {n for n in wanted if n in src.things_by_name}  # not a set of the fleet's names
        src_names = sorted(wanted) if wanted is not None else [t.name for t in src.things]
        dst_names = [n for n in src_names if n in dst.things_by_name]
        if o.prune:  # things only the destination has: their attachments go with them
            dst_names = [t.name for t in dst.things]
        return record, src_names, dst_names

    def _read_part(self, src: RegistrySnapshot, dst: RegistrySnapshot, record: VersionRecord | None,
                   src_names: list[str], dst_names: list[str], shadow_things: list[str], *,
                   restrict: bool = False) -> DetailReads:
        o = self.options
        src_caller = self.src_caller
        assert src_caller is not None

        src_gaps: list[str] = []  # pages of the source's principals that may not have been the last
        src_partial: set[str] = set()  # their things: not covered (nothing is detached from them)

        def principals() -> tuple[Any, tuple[str, ...], Any]:
            journal = self.journal(src.region, dst.region)
            src_read, src_known = _from_journal(journal, src, src_names)
            dst_read, dst_known = _from_journal(journal, dst, dst_names)
            (src_p, notes), (dst_p, _) = pmap(
                lambda args: read_principals(args[0], args[1], concurrency=o.concurrency, gaps=args[2],
                                             partial=args[3]),
                [(src_caller, src_read, src_gaps, src_partial), (self.dst_caller, dst_read, None, None)], 2)
            src_p, dst_p = _interned(src_p), _interned(dst_p)
            if journal is None:
                return src_p, notes, dst_p
            journal.record(src.region, _journal_lines(src, [n for n in src_read if n not in src_partial], src_p))
            journal.record(dst.region, _journal_lines(dst, dst_read, dst_p))
            return tuple(sorted((*src_p, *src_known))), notes, tuple(sorted((*dst_p, *dst_known)))

        def shadows() -> tuple[tuple[Shadow, ...], tuple[Shadow, ...], tuple[Shadow, ...]]:
            if not (self.shadows and self.src_data is not None and self.dst_data is not None):
                return (), (), ()
            width = o.data_concurrency
            src_sh = read_shadows(self.src_data, shadow_things, concurrency=width)
            shadow_record = record.shadows if record is not None else None
            changed_sh = tuple(sh for sh in src_sh
                               if shadow_record is None or shadow_record.get(sh.key, -1) != sh.version)
            in_dst = dst.things_by_name
            if o.prune:
                dst_sh = read_shadows(self.dst_data, [n for n in shadow_things if n in in_dst], concurrency=width)
            else:
                names: dict[str, set[str]] = {}
                for sh in changed_sh:
                    if sh.thing in in_dst:
                        names.setdefault(sh.thing, set()).add(sh.name)
                dst_sh = read_shadows(self.dst_data, sorted(names), concurrency=width, names=names)
            if record is not None and record.written:  # our own last write: its times are not the source's
                dst_sh = tuple(replace(sh, desired_at=None, reported_at=None)
                               if sh.version is not None and record.written.get(sh.key) == sh.version else sh
                               for sh in dst_sh)
            return src_sh, changed_sh, dst_sh

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="registry-details") as pool:
            f_principals, f_shadows = pool.submit(principals), pool.submit(shadows)
            (src_p, src_notes, dst_p), (src_sh, changed_sh, dst_sh) = f_principals.result(), f_shadows.result()
        checked = frozenset(src_names)
        src_base, dst_base = src, dst
        if restrict:  # only this chunk: planning it costs what the chunk holds, not the registry
            chunk = set(shadow_things)
            certs = {a.certificate_id for a in src_p}
            by_name = src.things_by_name  # look-ups, not a scan of the fleet per chunk (issue 22)
            src_base = RegistrySnapshot(src.region, things=tuple(t for t in map(by_name.get, shadow_things)
                                                                 if t is not None),
                                        certificates=tuple(src.certificates_by_id[c] for c in sorted(certs)
                                                           if c in src.certificates_by_id))
            dst_base = RegistrySnapshot(dst.region, things=tuple(dst.things_by_name[n] for n in sorted(chunk)
                                                                 if n in dst.things_by_name))
        covered = frozenset(n for n in src_names if n not in src_partial)
        src_full = replace(src_base, thing_principals=src_p, shadows=src_sh if o.prune else changed_sh,
                           notes=tuple(sorted(set(src_base.notes) | set(src_notes))),
                           gaps=(*src_base.gaps, *src_gaps),
                           coverage=src.coverage.with_principals(covered))
        dst_full = replace(dst_base, thing_principals=dst_p, shadows=dst_sh)
        return DetailReads(src_full, dst_full, checked, src_sh, self.shadows)

    # -- planning --------------------------------------------------------------------------------
    def plan_relations(self, reads: DetailReads, dst_listing: RegistrySnapshot, first: SyncPlan, *,
                       spilled: SpillTable | None = None) -> SyncPlan:
        """The second stage: attachments and shadows. They depend on the first stage's thing and
        certificate creations (so they wait for them, and are blocked if those fail); shadows only
        for things that exist in the destination or that the first stage creates. With `spilled`
        the first stage's operations are looked up in the spill table, not in `first`."""
        if spilled is not None:
            existing = list(reads.dst.things)
            created = [Thing(n) for n in reads.src.things_by_name
                       if SyncOp(Kind.THING, Action.CREATE, n).id in spilled]
            dst = replace(reads.dst, things=tuple(existing + created))
            return plan_sync(reads.src, dst, False, region_rewrite=self.options.region_rewrite,
                             part=PlanPart.RELATIONS, after=self._after or spilled)
        if self._first is not first:
            self._first = first
            self._first_ids = frozenset(op.id for op in first.ops)
            self._created = frozenset(op.name for op in first.ops
                                      if op.kind is Kind.THING and op.action is Action.CREATE)
        existing = list(reads.dst.things)  # the destination's things (of this chunk, when streamed)
        # the chunk's things the first stage creates: look-ups, not a scan of every creation per chunk
        created = [Thing(n) for n in reads.src.things_by_name if n in self._created]
        dst = replace(reads.dst, things=tuple(existing + created))
        return plan_sync(reads.src, dst, False, region_rewrite=self.options.region_rewrite,
                         part=PlanPart.RELATIONS, after=self._first_ids)

    def plan_entities(self, src: RegistrySnapshot, dst: RegistrySnapshot, spilled: SpillTable,
                      held: SpillTable | None = None) -> SyncPlan:
        """The first stage (`PlanPart.ENTITIES`), appended to the spill table and returned without
        its operations. Planned a chunk at a time (`plan_entities_to`: never the whole plan in
        memory) when there is no guard or a `PruneGuard`, which looks only at deletions: without
        --prune there are none (tightening is not guarded), and it records the complete source
        listing's counts. Another guard (one that may narrow the plan) gets the whole plan.

        `held` (a first sync): the certificates' registrations and their policy attachments go
        there instead, grouped by certificate, for `release` to hand to the apply with the chunk of
        things they are attached to (`_held`)."""
        from orchestrator.registry.guards import PruneGuard

        o = self.options

        def sink(ops: Iterable[SyncOp]) -> None:
            if held is None:
                spill_ops(spilled, ops)
                return
            keep: list[SyncOp] = []
            hold: list[tuple[str, str, tuple[Any, ...]]] = []
            for op in ops:
                cert = _held(op)
                if cert is None:
                    keep.append(op)
                else:
                    hold.append((op.id, cert, _row(op)))
            held.add(hold)
            spill_ops(spilled, keep)

        if held is not None:
            self._after = _Either(spilled, held)
        if o.guard is None or type(o.guard) is PruneGuard:
            first = plan_entities_to(sink, src, dst, external=self._after or spilled,
                                     region_rewrite=o.region_rewrite, fetch_pems=True)
            return self.guard(src, dst, first)
        first = self.guard(src, dst, plan_sync(src, dst, False, region_rewrite=o.region_rewrite,
                                               part=PlanPart.ENTITIES, fetch_pems=True))
        sink(first.ops)
        return replace(first, ops=())

    @staticmethod
    def release(held: SpillTable, part: DetailReads | None) -> list[SyncOp]:
        """The held operations (`plan_entities`) of the certificates attached to `part`'s things
        (None: of every certificate not released yet), in plan order, marked released."""
        if part is None:
            rows = [(key, value) for key, value in held.items(state=0)]
        else:
            rows = []
            for cert in sorted({a.certificate_id for a in part.src.thing_principals}):
                rows += held.items(group=cert, state=0)  # a page at a time: no bound written as a literal
        held.set_state((key for key, _ in rows), 1)
        return [_op(value) for _, value in rows]

    def plan_snapshot(self, src: RegistrySnapshot) -> SyncPlan:
        o = self.options
        dst_l = read_listing(self.dst_caller, concurrency=o.concurrency)
        names = [t.name for t in dst_l.things]
        dst_p, _ = read_principals(self.dst_caller, names, concurrency=o.concurrency)
        dst_sh: tuple[Shadow, ...] = ()
        if self.shadows and self.dst_data is not None and src.shadows:
            wanted = [n for n in names if n in src.things_by_name or o.prune]
            dst_sh = read_shadows(self.dst_data, wanted, concurrency=o.concurrency)
        dst = replace(dst_l, thing_principals=dst_p, shadows=dst_sh)
        if not self.shadows:
            src = replace(src, shadows=())
        missing = [c.id for c in src.certificates if c.id not in dst.certificates_by_id and c.pem is None]
        if missing and self.src_caller is not None:
            from orchestrator.registry.snapshot import with_pems

            src = with_pems(src, self.src_caller, missing, concurrency=o.concurrency)
        return self.guard(src, dst, plan_sync(src, dst, o.prune, region_rewrite=o.region_rewrite))

    def guard(self, src: RegistrySnapshot, dst: RegistrySnapshot, plan: SyncPlan) -> SyncPlan:
        """The full plan through `options.guard` (issue 11: before any write; records complete
        source listings)."""
        if self.options.guard is not None:
            return self.options.guard.check(src, dst, plan)
        return plan

    # -- applying --------------------------------------------------------------------------------
    def pem(self, cert_id: str) -> str | None:
        assert self.src_caller is not None
        try:
            d = self.src_caller.call("describe_certificate", certificateId=cert_id)["certificateDescription"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        pem = d.get("certificatePem")
        return str(pem) if pem else None

    def apply(self, plan: SyncPlan, *, final: bool, progress: Progress | None = None,
              feed: OpFeed | None = None, spilled: SpillTable | None = None,
              on_done: Callable[[SyncOp, bool], None] | None = None) -> SyncReport:
        o = self.options
        checkpoint = None
        if o.checkpoint_path is not None:
            checkpoint = Checkpoint(o.checkpoint_path, src_region=plan.src_region, dst_region=plan.dst_region,
                                    flush_every=o.flush_every, store=o.checkpoint_store)
        return apply_sync(plan, self.dst_client, self.dst_caller.writes, checkpoint, progress or o.progress,
                          concurrency=o.concurrency, caller=self.dst_caller, data_caller=self.dst_data,
                          pem_source=self.pem if self.src_caller is not None else None, final=final,
                          feed=feed, spilled=spilled, on_done=on_done)

    def finish(self, parts: list[SyncReport], *, src_total: int | None,
               reads: DetailReads | None = None) -> SyncReport:
        """One report for the run: its passes merged, and every call of every caller counted."""
        first = parts[0]
        counts = zero_counts()
        for part in parts:
            for kind, ops in part.counts.items():
                for action, n in ops.items():
                    counts[kind][action] += n
        by_api: dict[str, int] = {}
        retries = throttled = 0
        for caller in self.callers():
            base = self.base[id(caller)]
            now = caller.stats.counts()
            for api, n in counts_delta(now, base).items():
                by_api[api] = by_api.get(api, 0) + n
            retries += now.retries - base.retries
            throttled += now.throttled - base.throttled
        slowdowns: dict[str, int] = {}
        for caller in self.callers():
            limits = caller.limits
            if limits is not None:
                for api, n in limits.slowdowns().items():
                    slowdowns[api] = slowdowns.get(api, 0) + n
        from orchestrator.registry.calls import is_write

        return replace(
            first,
            planned=sum(p.planned for p in parts), applied=sum(p.applied for p in parts), counts=counts,
            write_calls=sum(n for a, n in by_api.items() if is_write(a)),
            read_calls=sum(n for a, n in by_api.items() if not is_write(a)),
            retries=retries, throttled=throttled, calls_by_api=by_api, throttled_by_api=slowdowns,
            skipped_from_checkpoint=sum(p.skipped_from_checkpoint for p in parts),
            blocked=sum(p.blocked for p in parts), errors=tuple(e for p in parts for e in p.errors),
            warnings=tuple(dict.fromkeys(w for p in parts for w in p.warnings)),
            duration_s=time.monotonic() - self.started,
            things_checked=len(reads.checked) if reads is not None else None, things_total=src_total,
            full=self.options.full or self.options.prune, shadows=self.shadows,
            shadows_kept=sum(p.shadows_kept for p in parts),
            shadow_writes={k: v for p in parts for k, v in p.shadow_writes.items()},
        )

    def mark_started(self, src: RegistrySnapshot, dst: RegistrySnapshot) -> None:
        """The in-progress mark (`VersionRecord.mark`), copied to the shared backend before the
        first write: a run killed with SIGKILL leaves it, and the next run, wherever it runs,
        trusts no version. A mark that cannot be stored stops the run before anything is written."""
        o = self.options
        if o.state_path is None:
            return
        self.record(src, dst)  # what the record said before this run marked it
        VersionRecord.mark(o.state_path, src.region, dst.region)
        if o.state_store is not None:
            o.state_store(o.state_path)

    def verify(self, reads: DetailReads, plans: list[SyncPlan], spilled: SpillTable | None = None,
               writes: Mapping[str, tuple[int | None, int | None]] | None = None) -> SyncVerification:
        """Read back what this run changed and plan again: the destination's listings (types,
        groups and members, things, policies and their targets, certificates: N/250 calls), the
        principals of every thing an attachment was planned for, and every shadow written. Every
        other detail compared was read from the destination by this run; the source is taken as
        this run read it (what it was asked to carry). Nothing planned: nothing to read back.
        The operations are those of `plans` and of the spill table (read a page at a time).

        A shadow written (`writes`: the version and time each write was answered with) that reads
        back different, with a version past the write's and a last write not older than it, was
        superseded by a later writer (a device reporting in the destination): counted as
        `superseded`, not as a difference. Any other difference stays one.

        Without `--prune` the comparison is made a chunk of things at a time (`_verify_chunked`:
        `options.verify_chunk` things' principals and shadows re-read, compared and dropped before
        the next chunk's); a pruning run plans its deletions from whole listings (`_verify_whole`).
        Both answer the same verification for the same regions. `sync_clients` without `--prune`
        reads back alongside its apply instead (`_ReadBack`, `verify_streamed`: the same chunk
        comparison, `_compare_chunk`, the same answer); this, after the apply, is the reference
        its tests compare it with."""
        touched, names, planned = _touched(plans, spilled)
        if not planned:
            return SyncVerification(0, reread=False)
        dst_now = self._listing(self.dst_caller, "back")
        self._dst_now = dst_now
        if self.options.prune:
            return self._verify_whole(reads, dst_now, touched, names, writes or {})
        return self._verify_chunked(reads, dst_now, touched, names, writes or {})

    def _verify_whole(self, reads: DetailReads, dst_now: RegistrySnapshot, touched: list[str],
                      names: dict[str, set[str]], writes: Mapping[str, tuple[int | None, int | None]]
                      ) -> SyncVerification:
        """`verify` with both regions whole in memory (one `plan_sync`; deletions need it)."""
        o = self.options
        tp_things = [n for n in touched if n in dst_now.things_by_name]  # a deleted thing has no principals
        reread_p, _ = read_principals(self.dst_caller, tp_things, concurrency=o.concurrency)
        # the destination's principals: re-read for the touched things, as read before for the others
        principals = _unique_sorted([*(a for a in reads.dst.thing_principals
                                       if not in_sorted(touched, a.thing) and a.thing in dst_now.things_by_name),
                                     *reread_p])
        del reread_p
        reread_sh: tuple[Shadow, ...] = ()
        if names and self.dst_data is not None:
            reread_sh = read_shadows(self.dst_data, sorted(n for n in names if n in dst_now.things_by_name),
                                     concurrency=o.data_concurrency, names=names)
        src = reads.src if self.shadows else replace(reads.src, shadows=())
        superseded = _superseded(src.shadows, reread_sh, writes)
        self._memo["written"] = _written(src.shadows, reread_sh)
        # a written shadow that was not superseded is compared without its times: our own write
        # made it newer than the source, which must not pass for a device's newer state
        reread_sh = tuple(sh if sh.key in superseded else replace(sh, desired_at=None, reported_at=None)
                          for sh in reread_sh)
        written = {(t, n) for t, ns in names.items() for n in ns}
        shadows = {sh for sh in reads.dst.shadows
                   if (sh.thing, sh.name) not in written and sh.thing in dst_now.things_by_name} | set(reread_sh)
        dst = replace(dst_now, thing_principals=tuple(principals), shadows=tuple(sorted(shadows)))
        del principals
        left = _Left()
        plan = plan_sync(src, dst, o.prune, region_rewrite=o.region_rewrite, fetch_pems=True)
        left.add(op for op in plan.ops
                 if not (op.kind is Kind.SHADOW and op.action is Action.UPDATE and op.name in superseded))
        return left.verification(things_reread=len(tp_things), shadows_reread=sum(len(v) for v in names.values()),
                                 superseded=len(superseded))

    def _verify_chunked(self, reads: DetailReads, dst_now: RegistrySnapshot, touched: list[str],
                        names: dict[str, set[str]], writes: Mapping[str, tuple[int | None, int | None]]
                        ) -> SyncVerification:
        """`verify` without deletions, holding a bounded number of things' details at a time
        (issue 22: the whole-registry read-back was a first sync's peak, ≈ 1 KB per thing at 100k).

        1. Everything but attachments and shadows (types, groups, policies and their versions,
           certificates, things and memberships, policy attachments): the source and the listing
           just read back, planned a chunk at a time (`plan_entities_to`) into `_Left`, which keeps
           only the counts and the first operations.
        2. Thing-certificate attachments and shadows, a chunk of `options.verify_chunk` source
           things (sorted by name) at a time: the chunk's touched things' principals and written
           shadows are re-read, the chunk is planned (`PlanPart.RELATIONS`, after the chunk's thing
           creations that step 1 found missing), and all of it is dropped before the next chunk.
           Every thing's name falls in exactly one chunk (the chunks are ranges of names), so every
           attachment and shadow is compared once, as `_verify_whole` compares it."""
        o = self.options
        src = reads.src if self.shadows else replace(reads.src, shadows=())
        left = _Left()
        plan_entities_to(left.add, src, dst_now, external=frozenset(), region_rewrite=o.region_rewrite,
                         fetch_pems=True, chunk=o.verify_chunk)
        in_dst = dst_now.things_by_name
        by_name = src.things_by_name
        src_tp = _sorted(src.thing_principals)
        old_tp = _sorted(reads.dst.thing_principals)
        src_sh = _sorted(src.shadows)
        old_sh = _sorted(reads.dst.shadows)
        shadow_things = sorted(names)
        # the chunks' bounds: the spilled listing's names by position (in order already), else sorted
        thing_names: Sequence[str] = _Names(src.things) if isinstance(src.things, Keyed) else sorted(by_name)
        written_versions: dict[str, int] = {}
        reread_things = superseded_n = 0
        for i in range(0, max(len(thing_names), 1), o.verify_chunk):
            lo = thing_names[i] if i else None  # the chunk: names in [lo, hi); the first and last are open
            hi = thing_names[i + o.verify_chunk] if i + o.verify_chunk < len(thing_names) else None
            chunk = thing_names[i:i + o.verify_chunk]
            touched_c = _range(touched, lo, hi, _same)
            names_c = {t: names[t] for t in _range(shadow_things, lo, hi, _same)}
            reread_p, reread_sh, n_reread = self._reread_chunk(touched_c, names_c, in_dst)
            reread_things += n_reread
            c_tp = tuple(_range(src_tp, lo, hi, _thing))
            certs = sorted({a.certificate_id for a in c_tp})
            src_c = RegistrySnapshot(src.region, things=tuple(by_name[n] for n in chunk),
                                     certificates=tuple(src.certificates_by_id[c] for c in certs
                                                        if c in src.certificates_by_id),
                                     thing_principals=c_tp, shadows=tuple(_range(src_sh, lo, hi, _thing)),
                                     coverage=src.coverage)
            superseded, versions = self._compare_chunk(
                left.add, src_c, tuple(in_dst[n] for n in chunk if n in in_dst), in_dst, touched_c,
                _range(old_tp, lo, hi, _thing), names_c, _range(old_sh, lo, hi, _thing), reread_p, reread_sh,
                writes)
            superseded_n += superseded
            written_versions.update(versions)
        self._memo["written"] = written_versions
        return left.verification(things_reread=reread_things, shadows_reread=sum(len(v) for v in names.values()),
                                 superseded=superseded_n)

    def _reread_chunk(self, touched: Sequence[str], names: Mapping[str, set[str]], in_dst: Container[str]
                      ) -> tuple[tuple[ThingPrincipal, ...], tuple[Shadow, ...], int]:
        """A chunk's read-back: the destination's principals of its `touched` things and its
        written shadows (`names`), of the things in the destination; and how many things were read."""
        o = self.options
        tp_things = [n for n in touched if n in in_dst]  # a thing that is not there has no principals
        reread_p, _ = read_principals(self.dst_caller, tp_things, concurrency=o.concurrency)
        reread_sh: tuple[Shadow, ...] = ()
        if names and self.dst_data is not None:
            reread_sh = read_shadows(self.dst_data, sorted(n for n in names if n in in_dst),
                                     concurrency=o.data_concurrency, names=dict(names))
        return reread_p, reread_sh, len(tp_things)

    def _compare_chunk(self, sink: Callable[[Iterable[SyncOp]], None], src_c: RegistrySnapshot,
                       dst_things: tuple[Thing, ...], in_dst: Container[str], touched: Sequence[str],
                       old_tp: Iterable[ThingPrincipal], names: Mapping[str, set[str]], old_sh: Iterable[Shadow],
                       reread_p: tuple[ThingPrincipal, ...], reread_sh: tuple[Shadow, ...],
                       writes: Mapping[str, tuple[int | None, int | None]]) -> tuple[int, dict[str, int]]:
        """Plan a chunk of things again (`PlanPart.RELATIONS`) against what was read back, handing
        what is left to `sink`: the destination's principals are those re-read for the `touched`
        things and those read before the apply (`old_tp`) for the others; its shadows those re-read
        for the written ones (`names`) and those read before for the others. Returns how many written
        shadows a later writer superseded, and the versions of those that read back equal."""
        o = self.options
        principals = sorted([*(a for a in old_tp if not in_sorted(touched, a.thing) and a.thing in in_dst),
                             *reread_p])
        superseded = _superseded(src_c.shadows, reread_sh, writes)
        versions = _written(src_c.shadows, reread_sh)
        # a written shadow that was not superseded is compared without its times: our own write
        # made it newer than the source, which must not pass for a device's newer state
        reread_sh = tuple(sh if sh.key in superseded else replace(sh, desired_at=None, reported_at=None)
                          for sh in reread_sh)
        written = {(t, n) for t, ns in names.items() for n in ns}
        shadows = {sh for sh in old_sh if (sh.thing, sh.name) not in written and sh.thing in in_dst} | set(reread_sh)
        dst_c = RegistrySnapshot(self.dst_caller.region, things=dst_things, thing_principals=tuple(principals),
                                 shadows=tuple(sorted(shadows)))
        created = frozenset(SyncOp(Kind.THING, Action.CREATE, t.name).id for t in src_c.things
                            if t.name not in in_dst)
        plan = plan_sync(src_c, dst_c, False, region_rewrite=o.region_rewrite, part=PlanPart.RELATIONS,
                         fetch_pems=True, after=created)
        sink(op for op in plan.ops
             if not (op.kind is Kind.SHADOW and op.action is Action.UPDATE and op.name in superseded))
        return len(superseded), versions

    def verify_streamed(self, reads: DetailReads, plans: list[SyncPlan], spilled: SpillTable,
                        writes: Mapping[str, tuple[int | None, int | None]], back: _ReadBack) -> SyncVerification:
        """`verify` after an apply alongside which `back` read back and compared the attachments and
        written shadows a chunk at a time: what is left is step 1 of `_verify_chunked` (everything
        but attachments and shadows, against one relisting of the destination) and the chunks not
        compared yet, which `back` compares meanwhile. The same verification as `_verify_chunked`
        for the same regions (a thing missing in the destination still shows: step 1 plans its
        creation, and its attachments, read back as none, are planned again too)."""
        planned = len(spilled) > 0 or any(p.ops for p in plans)
        if not planned:
            back.stop()
            return SyncVerification(0, reread=False)
        o = self.options
        try:
            dst_now = self._listing(self.dst_caller, "back")
            self._dst_now = dst_now
            src = reads.src if self.shadows else replace(reads.src, shadows=())
            plan_entities_to(back.add_left, src, dst_now, external=frozenset(), region_rewrite=o.region_rewrite,
                             fetch_pems=True, chunk=o.verify_chunk)
        except BaseException:
            back.stop()
            raise
        verification = back.finish(writes)
        self._memo["written"] = back.written_versions
        return verification

    def save_state(self, src: RegistrySnapshot, dst: RegistrySnapshot, reads: DetailReads, *,
                   relist: bool) -> None:
        """After a clean run: the versions both regions now have (when things were written, one more
        paged listing of the destination's things: N/250 calls), and the source shadows' versions."""
        o = self.options
        assert o.state_path is not None
        dst_versions: Mapping[str, int | None] | None = None  # None: looked up in `dst_by`
        dst_by: Mapping[str, Thing] = {}
        if self._dst_now is not None:  # the read-back listed the destination after the last write
            dst_by = self._dst_now.things_by_name
        elif relist:
            dst_versions = {t["thingName"]: t.get("version") for t in self.dst_caller.pages("list_things")}
        else:
            dst_by = dst.things_by_name
        shadows = {sh.key: sh.version for sh in reads.src_shadows} if reads.shadows_read else {}
        before = self._memo.get("record")
        written = {k: v for k, v in (before.written if isinstance(before, VersionRecord) else {}).items()
                   if k in shadows}
        written.update(self._memo.get("written", {}))

        def version_of(name: str) -> int | None:
            if dst_versions is not None:
                return dst_versions.get(name)
            d = dst_by.get(name)
            return d.version if d is not None else None

        # written as it is read: never a dict of the fleet, nor the whole document as one string (issue 22)
        if isinstance(src.things, Keyed) or _by_name(src.things):
            VersionRecord.save_streamed(o.state_path, src.region, reads.dst.region,
                                        ((t.name, (t.version, version_of(t.name))) for t in src.things),
                                        shadows, written)
            return
        things = {t.name: (t.version, version_of(t.name)) for t in src.things}
        VersionRecord(src.region, reads.dst.region, things, shadows, written).save(o.state_path)


def _touched(plans: list[SyncPlan], spilled: SpillTable | None) -> tuple[list[str], dict[str, set[str]], bool]:
    """From the operations of `plans` and of the spill table (read a page at a time): the things an
    attachment was planned for (sorted, each once), the shadows planned per thing, and whether
    anything was planned at all."""
    # the things an attachment was planned for, as a sorted list of the listing's own (interned)
    # name strings: a set of a first sync's N names and a copy of each name unpickled from the
    # spill table cost ≈ 150 B per thing of its peak (issue 22)
    touched: list[str] = []
    names: dict[str, set[str]] = {}
    planned = False
    spilled_now = spilled_ops(spilled) if spilled is not None else iter(())
    for op in itertools.chain((op for p in plans for op in p.ops), spilled_now):
        planned = True
        if op.kind is Kind.THING_PRINCIPAL:
            thing = sys.intern(str(op.params["thing"]))
            if not touched or touched[-1] != thing:
                touched.append(thing)
        elif op.kind is Kind.SHADOW:
            names.setdefault(str(op.params["thing"]), set()).add(str(op.params["shadow"]))
    return _unique_sorted(touched), names, planned


_KINDS = {k: i for i, k in enumerate(Kind)}


def _held(op: SyncOp) -> str | None:
    """The certificate whose operations a first sync holds back until the reader reaches a thing
    it is attached to: its registration, and its policy attachments (which wait for it). Held, they
    are applied in the order of the things (the reader's chunks) instead of the certificates' ids (a
    hash: every chunk's attachments waited for registrations spread over the whole apply, so no
    chunk could be read back before the apply's end; issue 22)."""
    if op.kind is Kind.CERTIFICATE and op.action is Action.CREATE:
        return op.name
    if op.kind is Kind.POLICY_ATTACHMENT and op.action is Action.CREATE \
            and op.params.get("target_kind") == TargetKind.CERTIFICATE.value:
        return str(op.params["target"])
    return None


class _Either(Container[str]):
    """Operation ids in any of some spill tables."""

    def __init__(self, *tables: SpillTable) -> None:
        self.tables = tables

    def __contains__(self, key: object) -> bool:
        return any(key in t for t in self.tables)


_RELATION_KINDS = (Kind.THING_PRINCIPAL, Kind.SHADOW)


@dataclass(eq=False)
class _Chunk:
    """What the streamed read-back keeps of one of the reader's chunks until it is compared: its
    position in the source listing, both regions' principals and shadows as read before the apply,
    and the things (and shadows) an attachment (a shadow write) was planned for. Never the chunk's
    things or certificates (looked up again in the listing when it is compared)."""

    index: int
    start: int
    size: int
    src_tp: tuple[ThingPrincipal, ...]
    old_tp: tuple[ThingPrincipal, ...]
    src_sh: tuple[Shadow, ...]
    old_sh: tuple[Shadow, ...]
    coverage: Any
    touched: list[str]
    names: dict[str, set[str]]
    open: int = 0  # its operations the apply has not resolved yet


class _ReadBack:
    """A first sync's read-back of attachments and shadows alongside its apply (issue 22): each of
    the reader's chunks (a range of sorted thing names) is re-read in the destination and compared
    as soon as the apply has resolved every one of its operations (applied, failed or blocked: a
    failed one reads back different, which is the truth), on a thread of its own, while the apply
    goes on and the reader reads later chunks in the source. The destination's ListThingPrincipals
    is a quota of its own, idle during a first sync's apply (the reader reads the source's).

    `add` (the reader, before the chunk's operations go to the apply) counts them per chunk;
    `done` (the apply's completion hook: a bisection of the chunk's first names, N/chunk strings,
    no per-thing state) counts them down; a chunk at zero is compared and dropped, so what is held
    is the chunks in flight, not the fleet. A chunk whose count never reaches zero (an operation
    the apply did not take) is compared when the apply is over (`finish`).

    What it can see, honestly: the destination as it is when the chunk is read back, after this
    run's writes to it. A change someone else makes to a chunk's attachments after that (a detach
    in the destination a second later) is not this run's to see: the next run's listings and
    version record see it. A chunk whose written shadows read back different from the source is
    compared when the apply is over: whether a later writer superseded our write needs the write's
    answer (`SyncReport.shadow_writes`)."""

    def __init__(self, run: _Run, src: RegistrySnapshot, dst: RegistrySnapshot, spilled: SpillTable) -> None:
        self.run, self.src, self.dst, self.spilled = run, src, dst, spilled
        self._cond = threading.Condition()
        self._lows: list[str] = []  # each chunk's first thing name
        self._chunks: dict[int, _Chunk] = {}  # added, not compared yet
        self._ready: deque[int] = deque()
        self._ordered = True
        self._last: list[str] = []  # the previous chunk's last name
        self._over = False
        self._stopped = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._next_start = 0
        self._left = _Left()
        self._left_lock = threading.Lock()
        self._deferred: list[tuple[_Chunk, tuple[ThingPrincipal, ...], tuple[Shadow, ...]]] = []
        self.written_versions: dict[str, int] = {}
        self.things_reread = 0
        self.shadows_reread = 0
        self.superseded = 0
        self.compared: list[int] = []  # the chunks' indexes in the order they were compared

    # -- the reader's side ---------------------------------------------------------------------
    def add(self, part: DetailReads, ops: Sequence[SyncOp]) -> None:
        names = [t.name for t in part.src.things]
        if not names:
            return
        touched: list[str] = []
        shadow_names: dict[str, set[str]] = {}
        count = 0
        for op in ops:
            if op.kind not in _RELATION_KINDS:
                continue
            count += 1
            thing = str(op.params["thing"])
            if op.kind is Kind.THING_PRINCIPAL:
                touched.append(thing)
            else:
                shadow_names.setdefault(thing, set()).add(str(op.params["shadow"]))
        shadows = self.run.shadows
        with self._cond:
            seq = [*self._last, *names]  # after the previous chunk's last name, in order
            if any(a >= b for a, b in zip(seq, seq[1:], strict=False)):
                self._ordered = False  # not ranges of sorted names: no chunk is ready before the apply's end
            index = len(self._lows)
            chunk = _Chunk(index, self._next_start, len(names), part.src.thing_principals,
                           part.dst.thing_principals, part.src.shadows if shadows else (),
                           part.dst.shadows, part.src.coverage, _unique_sorted(touched), shadow_names, count)
            self._next_start += len(names)
            self._lows.append(names[0])
            self._last = names[-1:]
            self._chunks[index] = chunk
            if not count and self._ordered:
                self._ready.append(index)
                self._cond.notify_all()

    # -- the apply's side ----------------------------------------------------------------------
    def done(self, op: SyncOp, ok: bool) -> None:
        """The apply resolved `op` (`ok` or not: either way the chunk can be read back)."""
        if op.kind not in _RELATION_KINDS:
            return
        thing = str(op.params.get("thing", ""))
        with self._cond:
            if not self._ordered:
                return
            index = bisect.bisect_right(self._lows, thing) - 1
            chunk = self._chunks.get(index) if index >= 0 else None
            if chunk is None or chunk.open <= 0:
                return
            chunk.open -= 1
            if not chunk.open:
                self._ready.append(index)
                self._cond.notify_all()

    # -- the verifier's thread -----------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="registry-sync-readback", daemon=True)
        self._thread.start()

    def _next(self) -> _Chunk | None:
        with self._cond:
            while True:
                if self._stopped:
                    return None
                while self._ready:
                    chunk = self._chunks.pop(self._ready.popleft(), None)
                    if chunk is not None:
                        return chunk
                if self._over:  # every operation is resolved: whatever is left is compared
                    return self._chunks.pop(min(self._chunks)) if self._chunks else None
                self._cond.wait()

    def _work(self) -> None:
        try:
            while (chunk := self._next()) is not None:
                self._compare(chunk, None)
        except BaseException as exc:  # re-raised by `finish`
            self._error = exc

    def _in_dst(self, things: Sequence[Thing]) -> tuple[tuple[Thing, ...], frozenset[str]]:
        """A chunk's `things` in the destination: those it had, and those this run created."""
        had = self.dst.things_by_name
        out = tuple(had[t.name] if t.name in had else Thing(t.name) for t in things
                    if t.name in had or SyncOp(Kind.THING, Action.CREATE, t.name).id in self.spilled)
        return out, frozenset(t.name for t in out)

    def _compare(self, chunk: _Chunk, writes: Mapping[str, tuple[int | None, int | None]] | None,
                 reread: tuple[tuple[ThingPrincipal, ...], tuple[Shadow, ...]] | None = None) -> None:
        run = self.run
        # the chunk's things, once (a spilled listing decodes them from its file for each slice)
        things = self.src.things[chunk.start:chunk.start + chunk.size]
        dst_things, in_dst = self._in_dst(things)
        if reread is None:
            reread_p, reread_sh, n = run._reread_chunk(chunk.touched, chunk.names, in_dst)
            self.things_reread += n
            self.shadows_reread += sum(len(v) for v in chunk.names.values())
            src_by_key = {sh.key: sh for sh in chunk.src_sh}
            if writes is None and any((want := src_by_key.get(sh.key)) is None
                                      or (want.desired, want.reported) != (sh.desired, sh.reported)
                                      for sh in reread_sh):
                self._deferred.append((chunk, reread_p, reread_sh))  # superseded? the writes' answers tell
                return
        else:
            reread_p, reread_sh = reread
        certs = sorted({a.certificate_id for a in chunk.src_tp})
        by_id = self.src.certificates_by_id
        src_c = RegistrySnapshot(self.src.region, things=tuple(things),
                                 certificates=tuple(by_id[c] for c in certs if c in by_id),
                                 thing_principals=chunk.src_tp, shadows=chunk.src_sh, coverage=chunk.coverage)
        superseded, versions = run._compare_chunk(self.add_left, src_c, dst_things, in_dst, chunk.touched,
                                                  chunk.old_tp, chunk.names, chunk.old_sh, reread_p, reread_sh,
                                                  writes or {})
        self.superseded += superseded
        self.written_versions.update(versions)
        self.compared.append(chunk.index)

    def add_left(self, ops: Iterable[SyncOp]) -> None:
        batch = list(ops)
        with self._left_lock:
            self._left.add(batch)

    # -- the end -------------------------------------------------------------------------------
    def finish(self, writes: Mapping[str, tuple[int | None, int | None]]) -> SyncVerification:
        """After the apply (every operation resolved, every chunk added): the chunks left are
        compared, then the deferred ones with the writes' answers; the verification of them all."""
        with self._cond:
            self._over = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        deferred, self._deferred = self._deferred, []
        for chunk, reread_p, reread_sh in deferred:
            self._compare(chunk, writes, (reread_p, reread_sh))
        return self._left.verification(things_reread=self.things_reread, shadows_reread=self.shadows_reread,
                                       superseded=self.superseded)

    def stop(self) -> None:
        """No read-back (the run failed): the thread ends after the chunk it is comparing."""
        with self._cond:
            self._stopped = True
            self._chunks.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()


def _order(op: SyncOp) -> tuple[int, int, str, str]:
    """A plan's order (`plan._Builder.build`): the first operations left are the same, however
    the read-back was chunked."""
    return (op.phase, _KINDS[op.kind], op.name, op.step)


class _Left:
    """What a read-back's plans still hold: how many operations, per kind, and the first
    `FIRST_ITEMS` in plan order; never the operations themselves (a failed first sync may leave N)."""

    def __init__(self) -> None:
        self.n = 0
        self.kinds: dict[str, tuple[int, tuple[int, int, str, str]]] = {}  # kind -> (count, first op's order)
        self.first: list[SyncOp] = []

    def add(self, ops: Iterable[SyncOp]) -> None:
        batch = []
        for op in ops:
            self.n += 1
            key = _order(op)
            n, first = self.kinds.get(op.kind.value, (0, key))
            self.kinds[op.kind.value] = (n + 1, min(first, key))
            batch.append(op)
            if len(batch) >= 4 * FIRST_ITEMS:
                self.first = heapq.nsmallest(FIRST_ITEMS, [*self.first, *batch], key=_order)
                batch = []
        if batch:
            self.first = heapq.nsmallest(FIRST_ITEMS, [*self.first, *batch], key=_order)

    def verification(self, *, things_reread: int, shadows_reread: int, superseded: int) -> SyncVerification:
        # per kind, in the order of its first operation in the plan (as counting the whole plan did)
        counts = {k: n for k, (n, _) in sorted(self.kinds.items(), key=lambda kv: kv[1][1])}
        return SyncVerification(self.n, counts, tuple(op.describe() for op in self.first),
                                things_reread=things_reread, shadows_reread=shadows_reread, superseded=superseded)


def _by_name(things: Sequence[Thing]) -> bool:
    """Whether `things` are in strictly ascending name order (a listing's are)."""
    return all(things[i].name < things[i + 1].name for i in range(len(things) - 1))


def _interned(found: tuple[ThingPrincipal, ...]) -> tuple[ThingPrincipal, ...]:
    """Principals whose certificate ids are the listing's own (interned) strings: a copy parsed
    from each principal's ARN costs ≈ 110 B per thing held (issue 22)."""
    return tuple(ThingPrincipal(a.thing, sys.intern(a.certificate_id)) for a in found)


def _same(x: str) -> str:
    return x


class _Names(Sequence[str]):
    """The names of a `Keyed` listing's things by position (read from disk, or packed, as asked)."""

    def __init__(self, things: Keyed[Thing]) -> None:
        self.things = things

    def __len__(self) -> int:
        return len(self.things)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [t.name for t in self.things[i]]
        return self.things[i].name


def _thing(x: Any) -> str:
    return str(x.thing)


def _sorted(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """`items` in order: itself when it is (the listings and reads are), else a sorted copy."""
    if all(items[i] <= items[i + 1] for i in range(len(items) - 1)):
        return items
    return tuple(sorted(items))


def _range(items: Sequence[Any], lo: str | None, hi: str | None, key: Callable[[Any], str]) -> Sequence[Any]:
    """The items of the sorted `items` whose `key` (a thing's name) is in [lo, hi) (None: open)."""
    start = bisect.bisect_left(items, lo, key=key) if lo is not None else 0
    end = bisect.bisect_left(items, hi, key=key) if hi is not None else len(items)
    return items[start:end]


def _written(src: Iterable[Shadow], reread: Iterable[Shadow]) -> dict[str, int]:
    """The versions of the shadows this run wrote that read back equal to the source."""
    by_key = {sh.key: sh for sh in src}
    return {sh.key: sh.version for sh in reread
            if sh.version is not None and sh.key in by_key
            and (by_key[sh.key].desired, by_key[sh.key].reported) == (sh.desired, sh.reported)}


def _unique_sorted(items: list[Any]) -> list[Any]:
    """`items` sorted, each once (a list: 8 bytes per item, where a set costs ≈ 100)."""
    items.sort()
    return [x for i, x in enumerate(items) if i == 0 or items[i - 1] != x]


def _superseded(src: tuple[Shadow, ...], reread: tuple[Shadow, ...],
                writes: Mapping[str, tuple[int | None, int | None]]) -> frozenset[str]:
    """Keys of the shadows this run wrote that read back different from the source because a later
    writer changed them: the destination's version is past the one our write was answered with
    (versions only grow within a region), and its last write (metadata) is not older than ours
    (whole seconds: a device writing in the same second as us has the same time). A shadow whose
    version did not move, or that moved with an older time, or that we have no answer for, is
    not in it: that difference is a failure."""
    by_key = {sh.key: sh for sh in src}
    out = set()
    for sh in reread:
        want = by_key.get(sh.key)
        if want is not None and (want.desired, want.reported) == (sh.desired, sh.reported):
            continue  # reads back equal
        version, at = writes.get(sh.key, (None, None))
        if version is None or at is None or sh.version is None or sh.updated_at is None:
            continue
        if sh.version > version and sh.updated_at >= at:
            out.add(sh.key)
    return frozenset(out)


def _data_caller(options: SyncOptions, client: Any | None, *, writes: bool) -> Caller | None:
    if client is None or not options.shadows:
        return None
    if isinstance(client, Caller):
        return client
    return options.caller(client, writes=writes)


__all__ = ["CLASSIC", "DetailReads", "VersionRecord", "named_shadows", "plan_clients_sync", "plan_snapshot_sync",
           "read_snapshot", "sync_clients", "sync_snapshot", "things_to_check"]
