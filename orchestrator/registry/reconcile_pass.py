"""The daily reconciliation as one pass of bounded, resumable slices (issue 22).

One Lambda invocation (at most 900 s, 256 MB) cannot hold a full pass beyond about 9,000 things: a
full sync reads every thing's principals, one `ListThingPrincipals` per thing and region at 10/s
(27.8 h at 1M things). So the replication stack's Step Functions state machine
(programs/replication.py) invokes the replication function again and again with
`{"reconcile": {"from": R, "slice": {...}}}`, and each invocation (`run_slice`) does a bounded part
of one *pass* and returns `{"done": bool, "progress": {...}}`. A pass has five phases, the first
four paged and committed to the head item after every page, so no slice ever holds more than one page:

1. `fleet` (pages of the account-wide configuration, not per device): the source's policies
   (`ListPolicies`, with their versions), then its thing types (`ListThingTypes`), then its thing
   groups (`ListThingGroups`; each group's ancestors are read with it, so a parent listed on a later
   page is made first; the static groups' attached policies, each group's list complete; the names
   of the dynamic ones kept for the pages), a page at a time from the head item's `fleet_cursor`.
   Each page is read in both regions, planned with the registry sync's planner (`plan_sync`, never
   pruning), applied (`apply_sync`), read back and planned again: what is left is counted as
   unequal. Its pages count against the slice's bounds like the others', so an account with
   thousands of groups or policies spans several slices.
1b. `retry` (pages of the last pass's failed objects): the things and certificates whose operations
   failed, were blocked or did not read back equal in the pass before, kept as items beside the head
   item (`reconcile-pass/<source>/failed/<pass id>/<n>`, one per page that had failures, at most
   `FAILED_MAX_ITEMS` = 40, so at most 10,000 objects; more are only counted, and then the next
   pass is a full one, whose listing reads them). Each item is re-checked like a page (things as in `read`,
   certificates as in `certificates`, with their policies), right after the fleet phase: a failure
   is repaired minutes into the next pass instead of when its listing reaches it (up to a day at
   1M things), and never restarts or lengthens a pass. What fails again goes on this pass's list.
2. `read` (pages of things): the source's `ListThings` from the pass's cursor, one page (at most
   `page_size` = 250 things) at a time. For the page's things, in both regions at once: the thing
   (`DescribeThing` in the destination), its certificates (`ListThingPrincipals`), each certificate
   (`DescribeCertificate`) and its policies (`ListAttachedPolicies`), its static groups
   (`ListThingGroupsForThing`), its thing type, and its shadows (classic and named; the
   destination's only where the source has one). The page is planned with `plan_sync` (the page's
   snapshots cover exactly these things and certificates, so tightening, a detach or a removal
   from a group, is planned for them and nothing else), applied, and what it changed is read back
   and planned again (the page's "verify equal"); then the cursor moves past the page and the
   head item is saved. A slice takes pages until its time budget (`SliceLimits.budget_s`, 600 s)
   or page count (`max_pages`) is spent or Lambda's remaining time falls below `LAMBDA_MARGIN_S`.
3. `certificates` (pages of certificates): certificates not attached to any thing are not seen by
   the thing pages. The source's `ListCertificates` is paged (250 a page, status included); every
   certificate INACTIVE or REVOKED there is looked up in the destination (`DescribeCertificate`)
   and tightened there as the sync does (tightening always reaches the secondaries). ACTIVE
   certificates are created there with their policies when it lacks them, as `registry sync`
   copies them, attached to a thing or not; to keep the floor, only those created since the last
   finished pass began (`certs_since`, less `CERT_MARGIN_S`: it looked up the older ones) are looked
   up (`DescribeCertificate` and `ListAttachedPolicies` in both regions). The first pass looks up
   every one, unless that would not end inside the validity window (one lookup a thing at 10/s):
   then those older than the pass are left to `registry sync --full` and the record says so.
4. `apply` (one slice): the device-management plane, as the unsliced reconcile carries it, and
   the reconciliation record (`put_reconciliation`): `ok` only when every page applied cleanly and
   read back equal, and the plane too. A slice that crashes here is counted like a page's
   attempt, and after `PAGE_ATTEMPTS` the pass ends FAILED without the plane (below).

Bounds per slice (the numbers are AWS's default quotas, orchestrator/registry/quotas.py and
docs/quotas.md; docs/registry.md "The daily reconciliation in slices" works them out):
- things in memory: one page, at most `PAGE_SIZE` = 250 (their certificates, groups and shadows);
  nothing is carried from page to page but the head item's counters (a few hundred bytes);
- things per slice: at most `SLICE_MAX_PAGES` x 250 = 10,000;
- calls per page, for a thing with one certificate, one group and its classic shadow: in the
  source ListThingPrincipals, ListThingGroupsForThing, DescribeCertificate, ListAttachedPolicies,
  ListNamedShadowsForThing and GetThingShadow (6); in the destination DescribeThing and the same
  reads (7; 8 when a certificate it lacks is described too); when the thing differs, its writes
  (CreateThing, RegisterCertificateWithoutCA with one more DescribeCertificate for the PEM,
  AttachThingPrincipal, AttachPolicy, AddThingToThingGroup, UpdateThingShadow) and their read-back
  (DescribeThing, ListThingPrincipals, ListThingGroupsForThing, DescribeCertificate,
  ListAttachedPolicies, GetThingShadow). `PAGE_CALLS_PER_THING` = 28 bounds that first copy (21.3
  measured, tests/ops/test_ops_reconcile_pass.py); an unchanged thing costs at most
  `UNCHANGED_CALLS_PER_THING` = 14 (13 and its share of ListThings; 13.3 measured). So a page makes at
  most 250 x 28 = 7,000 calls and a slice at most 40 pages x 7,000 = 280,000 (the time budget stops
  a slice long before: see the next point);
- time: the page's slowest APIs are ListThingPrincipals and DescribeCertificate at 10/s per region:
  25 s for 250 unchanged things (each API draws from its own budget and many things are read at
  once, `READ_CONCURRENCY`), up to 75 s for a page copied for the first time (three
  DescribeCertificate per thing in the destination). A slice stops taking pages at 600 s, so the
  page it started last ends by ~675 s, inside Lambda's 900 s; `LAMBDA_MARGIN_S` keeps 120 s too.
  So a slice does ~24 unchanged pages (6,000 things). 1M unchanged things = 4,000 pages ≈ 28 h of
  reads over ~170 slices: inside the 36 h validity window (a first copy of 1M through the pass is
  not: ~83 h; the first copy is `registry sync` and the stream's job, the pass repairs);
- memory: the page's snapshots (250 things, their certificates, attachments and shadows: a shadow
  document is at most 8 KB of state, so ~4 MB with one shadow a thing) and the operations of one
  page's plan; measured per invocation with tracemalloc in the tests, far under 256 MB.

Where the progress lives: in the function's own `applied` DynamoDB table (the replication stack's,
in the same region), not in S3: the table exists, the function's role may already read and write
it, its TTL attribute removes an old head item, and one item is at most 400 KB: the head item
(`reconcile-pass/<source>`: the pass id, phase, cursors, counters, the dynamic group names: at
most 100 per account, so a few KB) is written when the pass starts, once per page and once at
its end (and once per crashed attempt, `_Work.crashed`; the lease's GetItem a slice is a read);
the failed list's items beside it
(`reconcile-pass/<source>/failed/<pass id>/<n>`: the names of one page's failed things and
certificates, tens of KB at most) once per page that had failures, at most 40 a pass, and read
by the next pass's `retry` phase (one GetItem a page).

The validity window (`VALIDITY_S`, 36 hours): a pass older than that is discarded and a new one
starts. Why 36 h: the pages of a pass are as current as its oldest page, so the window bounds how
stale a completed pass can be; it must also exceed the pass's own floor, 27.8 h at 1M things with
ListThingPrincipals at 10/s (docs/performance.md), or no pass at 1M could finish.

One pass at a time: each slice holds a lease on the head item (`AppliedStore.acquire`, for
`LEASE_MS`: longer than one invocation), so a daily execution that starts while yesterday's pass is
still running ends at once (`busy`) and leaves the pass to the execution that holds it; the lease
expires if that execution stops, and the next execution continues the pass.

What resumes, and from where: every phase from its last committed page. A slice killed mid-page
does that page again (at most 250 things read again; every write is idempotent); a cursor the
service no longer accepts restarts that listing (`restarts` counts it). A head item of another
format (an older function's pass) is discarded: a new pass starts.

A page whose reads raise (`READ_ERRORS`: the service refused a read after the Caller's retries, a
throttling storm, an AccessDenied on one object, a poison name) is tried again, up to
`PAGE_ATTEMPTS` in the pass, with a backoff (`PAGE_BACKOFF_S`, doubling; in the same slice while its
budget lasts), each attempt counted in the head item (`page_attempts`, `page_error`). Then it is
given up (`_Work._give_up`): its listing is read once more and its objects checked one at a time, so
a poison object fails alone; those whose reads still fail (or the slice's time did not reach) go on
the failed list, and the pass moves past the page. When the listing call itself keeps failing, its
next cursor cannot be known: that listing stops there (`unlisted`, the marker kept in the failed
page's entry) and the pass goes on to the next phase. A given-up page that left anything unread is
counted (`pages_failed`, the first `FAILED_PAGES_KEPT` described in `failed_pages`) and the pass
ends FAILED, but it ends.
A crash is an attempt of the page too (a poison page: an exception not in READ_ERRORS, Lambda's
timeout or memory limit), counted in the same `page_attempts` (`page_error`: the exception's type,
or `DIED`). An exception is counted by `run_slice` before the invocation fails (`_Work.crashed`:
one head-item write, only then). A slice stopped from outside runs no code: the next slice counts
it, finding the pass's lease left behind and expired (`_lease_left`; every way out that Python sees
releases it), one GetItem a slice and no write while nothing crashes. The state machine tries a
crashed slice again `PAGE_ATTEMPTS` times in the same execution, each after the lease has expired
(programs/replication.py `CRASH_RETRY_INTERVAL_S`; with one attempt a day, the validity window
would discard the pass before its third), and the slice that finds `PAGE_ATTEMPTS` attempts gives
the page up without trying it whole again: its objects one at a time, each whatever it raises, so
a poison object fails alone. A give-up that crashes is counted too, and the next one does less:
after one, the page is listed again and its objects go on the failed list unread; after two, the
listing stops there unread, as when its listing call keeps failing.
A crash in the `apply` phase (the plane, the record: Lambda's timeout or memory limit in the
plane's reads and writes, an exception the record's or the head item's write raises; the plane's
own exceptions are caught by `reconcile_plane` and counted as its errors) is an attempt of the end,
counted the same way (`page_attempts` and `page_error` while the phase is `apply`; `orchestrate
status` says "the end (plane, record) failing"). The slice that finds `PAGE_ATTEMPTS` of them does
not try the plane again: it writes the record without it (`plane.given_up`, the end counted in
`pages_failed` with phase `apply` in `failed_pages`) and the pass ends FAILED; the next pass's end
tries the plane again. Not one plane operation at a time: the plane is planned from whole reads of
both regions, and those reads may be what runs out of time or memory. The give-up makes only the
record's and the head item's writes: if those keep failing (the table refuses every write) nothing
can count or record anything, and the failing executions are what says so.

What the pass does not carry: MQTT retained messages (orchestrator/registry/retained.py). The
continuous replication carries each publish under `registry.retained_topics` (programs/replication.py
`retained_rule_sql`, `Replicator._retained`); an event it loses after its retries waits in the
dead-letter queue for `registry replay`, and nothing in AWS repairs a retained message it missed.
The only scheduled repair is `registry sync --all-secondaries`, daily, from GitHub Actions
(.github/workflows/registry-sync.yml), when that workflow is set up. A phase here would list the
source's retained messages (`ListRetainedMessages`, 200 a page, summaries only), read each one in
scope in both regions (`GetRetainedMessage`, billed as messaging; unlisted in AWS's per-API table,
so 10/s unless `quotas:` raises it: ≈ 20 s a page, ≈ 14 h for the account quota's 500,000) and
publish (signed, as the function's republish) and read back what differs; a topic the source no
longer retains is seen only by listing the destination too; the function's role would need
`iot:ListRetainedMessages` (docs/registry.md, "Retained messages").

What does not resume: a pass that ended (done, or discarded at `VALIDITY_S`) is not continued.
Which pass follows (`_next_kind`): after a full pass whose failures are all on its failed list (none
dropped past the bound, no listing stopped) and that is inside the window, a *re-check* pass
(`kind` RECHECK): the fleet phase, the failed list (`retry`), the end; no listing, since the full
pass read, applied and read back every other object. Otherwise, and always after a re-check pass,
a full pass, which lists the whole fleet again (that is the backstop's job), re-checking first the
objects the last one failed on (`retry`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.registry.calls import Caller, RetriesExhausted, error_code
from orchestrator.registry.snapshot import (
    Certificate,
    Coverage,
    PolicyTarget,
    RegistrySnapshot,
    Shadow,
    TargetKind,
    Thing,
    ThingGroup,
    ThingPrincipal,
    ThingType,
    describe_thing_group,
    pmap,
    policy_versions,
    read_principals,
    read_shadows,
)

if TYPE_CHECKING:
    from orchestrator.registry.replicate import Replicator
    from orchestrator.registry.sync import SyncPlan
    from orchestrator.registry.sync.model import SyncOp

PASS_PREFIX = "reconcile-pass/"
FORMAT = 2  # the head item's format: 1 was a read phase plus one whole `--full` sync
VALIDITY_S = 36 * 3600.0
SLICE_BUDGET_S = 600.0  # stop taking new pages after this (Lambda's limit is 900 s)
SLICE_MAX_PAGES = 40  # a second bound: at most 10,000 things per slice
PAGE_SIZE = 250  # ListThings' and ListCertificates' maximum page
READ_CONCURRENCY = 10  # things read at once per region (each API at its own quota; botocore's pool is 10)
PAGE_CALLS_PER_THING = 28  # calls per thing of a page copied first (module doc), both regions
UNCHANGED_CALLS_PER_THING = 14  # calls per thing of a page found equal (reads only)
LEASE_MS = 960_000  # one invocation (900 s) and a margin
LAMBDA_MARGIN_S = 120.0  # what a slice leaves of the invocation's remaining time for its last page
FLEET, RETRY, READ, CERTS, APPLY, DONE = "fleet", "retry", "read", "certificates", "apply", "done"
FLEET_LISTINGS = ("policies", "types", "groups")  # the fleet phase's listings, in this order
_FLEET_APIS = {"policies": "list_policies", "types": "list_thing_types", "groups": "list_thing_groups"}
FAILED_MAX_ITEMS = 40  # items of one pass's failed-objects list (each at most one page: 10,000 objects)
CERT_MARGIN_S = 3600.0  # certificates created this long before the last finished pass are looked up again
CERT_LOOKUP_RATE = 10.0  # DescribeCertificate's default quota per second (a lookup of every certificate)
PAGE_ATTEMPTS = 3  # reads of one page that raise before the page is isolated and its failures listed
PAGE_BACKOFF_S = 5.0  # the wait before a page's second attempt, doubling (the Caller has retried each call)
PAGE_BACKOFF_MAX_S = 60.0
DIED = "SliceDied"  # a page's attempt whose slice was stopped from outside (timeout, memory): its lease was left
FAILED_PAGES_KEPT = 10  # failed pages described in the head item (all are counted)
FULL, RECHECK = "full", "recheck"  # a pass's kind: the whole fleet, or only the last pass's failed objects
_TIGHTENED = ("INACTIVE", "REVOKED")
# what a page's reads raise when the service refuses them (after the Caller's own retries): the page
# is tried again, then isolated; anything else (a crash) ends the slice and the next one does the page
READ_ERRORS: tuple[type[BaseException], ...] = (ClientError, BotoCoreError, RetriesExhausted)
# one page of a source listing: api -> (page size parameter, cursor parameter, next cursor key, items key)
_LISTINGS = {
    "list_things": ("maxResults", "nextToken", "nextToken", "things"),
    "list_certificates": ("pageSize", "marker", "nextMarker", "certificates"),
    "list_policies": ("pageSize", "marker", "nextMarker", "policies"),
    "list_thing_types": ("maxResults", "nextToken", "nextToken", "thingTypes"),
    "list_thing_groups": ("maxResults", "nextToken", "nextToken", "thingGroups"),
}


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
    phase: str = FLEET
    format: int = FORMAT
    cursor: str | None = None  # ListThings' nextToken of the next page (None: from the start)
    cert_cursor: str | None = None  # ListCertificates' marker of the next page
    pages: int = 0  # pages of things done (read, applied, read back)
    read: int = 0  # source things done
    cert_pages: int = 0
    certs_read: int = 0
    total_estimate: int | None = None  # the source's things (the last pass's count until listed)
    slices: int = 0
    applied: int = 0  # operations applied (fleet, pages, certificates)
    errors: int = 0  # operations failed or blocked
    unequal: int = 0  # differences left after a page's read-back
    updated_at: float = 0.0
    restarts: int = 0  # listings restarted because the service refused the cursor
    dynamic: tuple[str, ...] = field(default=())  # the source's dynamic groups (not copied)
    notes: tuple[str, ...] = field(default=())  # warnings of the plans, first few
    fleet_step: str = FLEET_LISTINGS[0]  # the fleet phase's listing in progress
    fleet_cursor: str | None = None  # its cursor
    retry_of: str | None = None  # the pass whose failed objects this one re-checks first (RETRY)
    retry_items: int = 0  # items of that pass's failed list
    retry_next: int = 0  # the next one to re-check
    failed_items: int = 0  # items of this pass's failed list written so far
    failed: int = 0  # objects in them
    failed_dropped: int = 0  # failed objects past the list's bound (found again by the next listing)
    certs_since: float | None = None  # ACTIVE certificates created since then are looked up (None: all)
    kind: str = FULL  # FULL: every listing; RECHECK: the fleet phase and the last pass's failed list only
    page_attempts: int = 0  # attempts of the current page whose reads raised (reset when a page commits)
    page_error: str | None = None  # the last one's error code
    pages_failed: int = 0  # pages given up after PAGE_ATTEMPTS (their unread objects listed, or a listing stopped)
    failed_pages: tuple[dict[str, Any], ...] = field(default=())  # the first FAILED_PAGES_KEPT of them
    unlisted: int = 0  # listings stopped at a page whose listing call kept failing (the rest unread)

    def progress(self, now: float) -> dict[str, Any]:
        """What `orchestrate status` shows: counts, the rate so far and the ETA of the read phase."""
        elapsed = max(0.0, (self.updated_at or now) - self.started_at)
        rate = self.read / elapsed if elapsed > 0 and self.read else None
        eta = None
        if self.phase in (FLEET, RETRY, READ) and rate and self.total_estimate is not None:
            eta = round(max(0, self.total_estimate - self.read) / rate, 1)
        elif self.phase not in (FLEET, RETRY, READ):
            eta = 0.0
        return {"pass": self.pass_id, "from": self.source, "phase": self.phase, "read": self.read,
                "total_estimate": self.total_estimate, "pages": self.pages, "slices": self.slices,
                "certificates": self.certs_read, "applied": self.applied, "errors": self.errors,
                "unequal": self.unequal, "failed": self.failed, "failed_dropped": self.failed_dropped,
                "kind": self.kind, "page_attempts": self.page_attempts, "page_error": self.page_error,
                "pages_failed": self.pages_failed, "failed_pages": [dict(p) for p in self.failed_pages],
                "unlisted": self.unlisted, "retry_items": self.retry_items, "retry_next": self.retry_next,
                "started_at": _iso(self.started_at), "updated_at": _iso(self.updated_at or now),
                "rate_per_s": round(rate, 3) if rate else None, "eta_s": eta}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


class PassStore:
    """The pass's head item in the region's `applied` table (see the module doc)."""

    def __init__(self, client: Any, table: str, source: str) -> None:
        self.client, self.table, self.source = client, table, source

    @property
    def head_key(self) -> str:
        return PASS_PREFIX + self.source

    def load(self) -> PassState | None:
        item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": self.head_key}},
                                    ConsistentRead=True).get("Item")
        if not item or "state" not in item:
            return None
        try:
            data = json.loads(item["state"]["S"])
            if data.get("format") != FORMAT:
                return None  # another function's pass: a new one starts
            fields = {k: data[k] for k in PassState.__dataclass_fields__ if k in data}
            for name in ("dynamic", "notes"):
                fields[name] = tuple(str(x) for x in fields.get(name) or ())
            fields["failed_pages"] = tuple(dict(p) for p in fields.get("failed_pages") or ())
            return PassState(**fields)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None  # unreadable: a new pass starts (costs reads, never correctness)

    def save(self, state: PassState) -> None:
        self.client.put_item(TableName=self.table, Item={
            "objectKey": {"S": self.head_key}, "state": {"S": json.dumps(asdict(state), sort_keys=True)},
            "expiresAt": {"N": str(int(state.started_at + 2 * VALIDITY_S))}})

    # -- the failed-objects list: items beside the head item, one per page that had failures --------
    def failed_key(self, pass_id: str, n: int) -> str:
        return f"{self.head_key}/failed/{pass_id}/{n}"

    def save_failed(self, state: PassState, n: int, things: Iterable[str], certificates: Iterable[str]) -> None:
        """Item `n` of `state`'s pass: the things and certificates of one page whose operations
        failed, were blocked or did not read back equal (at most one page of each)."""
        body = {"things": sorted(set(things)), "certificates": sorted(set(certificates))}
        self.client.put_item(TableName=self.table, Item={
            "objectKey": {"S": self.failed_key(state.pass_id, n)}, "state": {"S": json.dumps(body)},
            # read by the next pass, which starts at most VALIDITY_S after this one did
            "expiresAt": {"N": str(int(state.started_at + 3 * VALIDITY_S))}})

    def load_failed(self, pass_id: str, n: int) -> tuple[list[str], list[str]]:
        """(things, certificates) of item `n` of `pass_id`'s list; nothing when it is gone or unreadable."""
        item = self.client.get_item(TableName=self.table, Key={"objectKey": {"S": self.failed_key(pass_id, n)}},
                                    ConsistentRead=True).get("Item")
        try:
            body = json.loads(item["state"]["S"]) if item else {}
            return [str(x) for x in body.get("things") or ()], [str(x) for x in body.get("certificates") or ()]
        except (ValueError, TypeError, KeyError, AttributeError):
            return [], []


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
    left = _lease_left(replicator, lease, int(t0 * 1000))
    if not replicator.store.acquire(lease, replicator.owner, int(t0 * 1000), LEASE_MS):
        state = store.load()
        return {"done": True, "busy": True,
                "progress": state.progress(t0) if state is not None else None}
    try:
        state = _current(store, replicator, t0)
        state = replace(state, slices=state.slices + 1)
        work = _Work(replicator, store, limits, t0, clock, remaining_s)
        pages = {FLEET: work.fleet_page, RETRY: work.retry_page, READ: work.things_page,
                 CERTS: work.certificates_page}
        if left and (state.phase in pages or state.phase == APPLY):
            # the slice before this one died without releasing its lease (Lambda's timeout, out of
            # memory): it died in the page the head item points at (or in the end, APPLY), an
            # attempt of that page
            state = work.crashed(state, DIED)
        while state.phase in pages and work.more():
            try:
                try:
                    if state.page_attempts >= PAGE_ATTEMPTS:  # attempts that crashed the slice: no more
                        state = work._give_up(state)
                    else:
                        state = pages[state.phase](state)
                except READ_ERRORS as exc:  # the page's reads were refused: again (bounded), then listed
                    state = work.page_failed(state, exc)
            except Exception as exc:  # a crash (a poison page, or its give-up): counted, then the invocation fails
                work.crashed(state, _code(exc))
                raise
        if state.phase != APPLY or not work.time_left():
            # the end (the plane: a few reads per object) in this slice only while its time budget
            # lasts, else in the next one
            return {"done": False, "progress": state.progress(clock())}
        try:
            return _finish(replicator, store, state, clock, now)
        except Exception as exc:  # the end crashed (the record or the head item refused, a bug): counted
            work.crashed(state, _code(exc))
            raise
    finally:
        replicator.store.release(lease, replicator.owner)


def _lease_left(replicator: Replicator, lease: str, now_ms: int) -> bool:
    """Whether the pass's lease is still there though expired: the slice that took it never
    released it (`run_slice` releases it on every way out Python sees), so it was stopped from
    outside, Lambda's timeout or memory limit. A lease unexpired is another slice's, at work (the
    caller finds it busy). One GetItem a slice; the store without leases to read says no."""
    read = getattr(replicator.store, "lease", None)
    holder = read(lease) if callable(read) else None
    return holder is not None and holder[0] != replicator.owner and holder[1] < now_ms


def _current(store: PassStore, replicator: Replicator, now: float) -> PassState:
    """The pass to continue, or a new one (none yet, the last one finished, or older than the
    window). A new pass re-checks the last pass's failed objects first (RETRY) and looks up the
    ACTIVE certificates created since the last finished pass began (`_certs_since`)."""
    prev = store.load()
    if prev is not None and prev.phase != DONE and now - prev.started_at <= VALIDITY_S:
        return prev
    last = replicator.store.reconciliation() or {}
    things = last.get("things")
    since, note = _certs_since(prev)
    state = PassState(uuid.uuid4().hex[:12], store.source, now,
                      total_estimate=things if isinstance(things, int) else None, updated_at=now,
                      certs_since=since, notes=(note,) if note else (), kind=_next_kind(prev, now),
                      retry_of=prev.pass_id if prev is not None and prev.failed_items else None,
                      retry_items=prev.failed_items if prev is not None else 0)
    store.save(state)
    return state


def _certs_since(prev: PassState | None) -> tuple[float | None, str | None]:
    """From when a new pass looks up ACTIVE certificates in the destination (None: all of them), and
    a note when some are left to `registry sync --full`. The last finished pass listed every
    certificate that existed when its listing began and looked up those created since its own
    window: so one it did not look up was created after that pass began, and the new pass looks up
    those created since then, less `CERT_MARGIN_S` (clocks). An unfinished pass's window carries
    over, but one that ran out of its validity window while looking up every certificate (a first
    pass over a large fleet: one DescribeCertificate per certificate) is not repeated."""
    if prev is None:
        return None, None
    if prev.phase == DONE and prev.kind == RECHECK:
        return prev.certs_since, None  # it listed no certificate: the full pass before it did
    if prev.phase == DONE:
        return prev.started_at - CERT_MARGIN_S, None
    if prev.certs_since is not None:
        return prev.certs_since, None
    return _window_note(prev.started_at - CERT_MARGIN_S)


def _next_kind(prev: PassState | None, now: float) -> str:
    """RECHECK after a full pass that finished with failed objects, all of them on its list (none
    past the list's bound, no listing stopped short) and still inside its validity window: the
    other objects were read, applied and read back equal by that pass, so re-checking the listed
    ones (and the fleet phase, which every pass does) completes the proof without listing the fleet
    again. Otherwise (no failures, a list that overflowed, a listing that stopped, a re-check pass
    before, a pass too old) a FULL pass, which re-checks the last pass's list first anyway."""
    if prev is None or prev.phase != DONE or prev.kind != FULL or not prev.failed_items:
        return FULL
    if prev.failed_dropped or prev.unlisted or now - prev.started_at > VALIDITY_S:
        return FULL
    return RECHECK


def _window_note(since: float) -> tuple[float, str]:
    return since, (f"ACTIVE certificates attached to no thing and created before {_iso(since)} are not "
                   "looked up (looking up every certificate does not fit the pass's window): "
                   "`registry sync --full` copies them")


def callers(replicator: Replicator, source: str) -> tuple[Caller, Caller]:
    """Read callers of the source and the destination with every API at its own AWS quota
    (`SyncOptions().caller`: ListThings and ListThingPrincipals 10/s, DescribeThing 350/s), on the
    replicator's clients."""
    from orchestrator.registry.sync import SyncOptions

    options = SyncOptions()
    return (options.caller(replicator._source(source).iot.client, writes=False),
            options.caller(replicator.region.iot.client, writes=False))


# what checking a page's things or certificates gives: applied, failed, left unequal, warnings, the
# operations failed, blocked or left (`_Work._things`, `_Work._certificates`)
_Checked = tuple[int, int, int, tuple[str, ...], list["SyncOp"]]
_T = TypeVar("_T")


@dataclass
class _Tally:
    """The sum of `_Checked` results (a page given up, checked one object at a time)."""

    applied: int = 0
    failed: int = 0
    left: int = 0
    warnings: list[str] = field(default_factory=list)
    bad: list[SyncOp] = field(default_factory=list)

    def add(self, result: _Checked) -> None:
        a, f, left, w, b = result
        self.applied, self.failed, self.left = self.applied + a, self.failed + f, self.left + left
        self.warnings.extend(w)
        self.bad.extend(b)


@dataclass(frozen=True)
class _ThingRead:
    """One thing as one region has it (`_Work._read_thing`)."""

    thing: Thing
    principals: tuple[ThingPrincipal, ...]
    partial: bool  # its principals' last page may have been short: not covered
    certs: tuple[Certificate, ...]
    targets: tuple[PolicyTarget, ...]
    shadows: tuple[Shadow, ...]
    notes: tuple[str, ...]


@dataclass
class _Page:
    """One page's reads in one region: snapshots restricted to the page's things (or certificates)."""

    snapshot: RegistrySnapshot
    partial: frozenset[str] = frozenset()  # things whose principals' last page may have been short


class _Work:
    """The phases' pages (module doc): each reads, plans, applies, reads back and commits."""

    def __init__(self, replicator: Replicator, store: PassStore, limits: SliceLimits, t0: float,
                 clock: Callable[[], float], remaining_s: Callable[[], float] | None) -> None:
        self.rep, self.store, self.limits = replicator, store, limits
        self.t0, self.clock, self.remaining_s = t0, clock, remaining_s
        self.src, self.dst = callers(replicator, store.source)
        self.src_data = replicator._source(store.source).data
        self.dst_data = replicator.region.data
        self.pages = 0
        self.sleep: Callable[[float], None] = time.sleep

    def more(self) -> bool:
        """Whether this slice may take another page (page count, time budget, Lambda's time left)."""
        return self.pages < self.limits.max_pages and self.time_left()

    def time_left(self) -> bool:
        return self.clock() - self.t0 < self.limits.budget_s \
            and (self.remaining_s is None or self.remaining_s() > LAMBDA_MARGIN_S)

    # -- applying one plan and reading back what it changed -------------------------------------
    def _apply(self, plan: SyncPlan) -> tuple[int, int, dict[str, tuple[int | None, int | None]], list[SyncOp]]:
        """The plan applied with the sync's executor: (applied, failed or blocked, shadow writes, the
        operations failed or blocked)."""
        from orchestrator.registry.sync import apply_sync

        if not plan.ops:
            return 0, 0, {}, []
        report = apply_sync(plan, self.rep.region.iot.client, caller=self.rep.region.iot,
                            data_caller=self.dst_data, pem_source=self._pem)
        unapplied = [op for op in plan.ops if op.id in report.unapplied]
        return report.applied, len(report.errors) + report.blocked, dict(report.shadow_writes), unapplied

    def _pem(self, cert_id: str) -> str | None:
        from orchestrator.registry.replicate import _call_or_none

        d = _call_or_none(self.src, "describe_certificate", certificateId=cert_id)
        pem = (d or {}).get("certificateDescription", {}).get("certificatePem")
        return str(pem) if pem else None

    def _commit(self, state: PassState, **changes: Any) -> PassState:
        state = replace(state, updated_at=self.clock(), **changes)
        self.store.save(state)  # a kill after this does nothing of this page again
        return state

    def _listing(self, state: PassState, api: str, cursor: str | None,
                 cursor_field: str) -> tuple[PassState, list[dict[str, Any]] | None, str | None]:
        """One page of a source listing from `cursor` (the state's `cursor_field`): (state, items,
        the next page's cursor or None at the end). Items None: the service no longer takes the
        cursor, so the listing starts again from the beginning (committed; the pages done are done
        again: idempotent, and counted in `restarts`)."""
        size_arg, cursor_arg, next_key, items_key = _LISTINGS[api]
        kwargs: dict[str, Any] = {size_arg: self.limits.page_size}
        if cursor:
            kwargs[cursor_arg] = cursor
        try:
            page = self.src.call(api, **kwargs)
        except Exception as exc:
            if cursor and error_code(exc) in ("InvalidRequestException", "InvalidNextTokenException"):
                return self._commit(state, **{cursor_field: None, "restarts": state.restarts + 1}), None, None
            raise
        self.pages += 1
        return state, list(page.get(items_key) or ()), page.get(next_key) or None

    def _failed(self, state: PassState, ops: Iterable[SyncOp], things_left: Iterable[str] = (),
                certs_left: Iterable[str] = ()) -> dict[str, Any]:
        """The head item's changes for one page's failed objects (`_objects` of `ops`, and the
        objects whose reads kept failing, `things_left` and `certs_left`): written as the next item
        of the pass's failed list (before the page's commit, so a kill between the two writes the
        same item again), or counted as dropped past `FAILED_MAX_ITEMS`."""
        things, certs = _objects(ops)
        things |= set(things_left)
        certs |= set(certs_left)
        n = len(things) + len(certs)
        if not n:
            return {}
        if state.failed_items >= FAILED_MAX_ITEMS:
            return {"failed_dropped": state.failed_dropped + n}
        self.store.save_failed(state, state.failed_items, things, certs)
        return {"failed_items": state.failed_items + 1, "failed": state.failed + n}

    # -- a page that crashes the slice ---------------------------------------------------------------
    def crashed(self, state: PassState, code: str) -> PassState:
        """The current page crashed a slice (an exception not in READ_ERRORS, or the slice died:
        `DIED`): one more attempt of it in the head item, written now, so that after
        `PAGE_ATTEMPTS` of them the next slice gives the page up (`_give_up`; in the APPLY phase,
        the end without the plane: `_finish`) instead of trying it again. A write that fails too
        is left (the slice is failing anyway)."""
        counted = replace(state, page_attempts=state.page_attempts + 1, page_error=code)
        try:
            return self._commit(counted)
        except Exception:  # noqa: BLE001 - the crash itself is what the caller raises
            return counted

    # -- a page whose reads keep failing ------------------------------------------------------------
    def page_failed(self, state: PassState, exc: BaseException) -> PassState:
        """The current page's reads raised (`exc`): the attempt is counted in the head item; before
        `PAGE_ATTEMPTS` the page is tried again after a backoff (in this slice while its time lasts,
        else in the next), then it is given up (`_give_up`) and the pass moves on."""
        self.pages += 1  # an attempt is a page of this slice's bound: a slice never spins on one page
        attempts, code = state.page_attempts + 1, _code(exc)
        if attempts < PAGE_ATTEMPTS:
            state = self._commit(state, page_attempts=attempts, page_error=code)
            delay = min(PAGE_BACKOFF_MAX_S, PAGE_BACKOFF_S * 2 ** (attempts - 1))
            if self.clock() + delay - self.t0 < self.limits.budget_s and \
                    (self.remaining_s is None or self.remaining_s() - delay > LAMBDA_MARGIN_S):
                self.sleep(delay)
            else:
                self.pages = self.limits.max_pages  # no time to wait here: the next slice tries it
            return state
        return self._give_up(replace(state, page_error=code))

    def _give_up(self, state: PassState) -> PassState:
        """The page failed `PAGE_ATTEMPTS` times. Its listing is read once more: if that fails too,
        the listing stops there (its cursor kept in the failed page's entry, the rest of it unread:
        the next pass is a full one); else the page's objects are checked one at a time, and those
        whose reads still fail (or were not reached in the slice's time) go on the failed list, with
        what the others' operations left. Either way the page is committed as done; when anything
        of it was left unread (an object, the rest of a listing, a fleet page) it is counted in
        `pages_failed` and the pass cannot end ok (objects that all read back equal one at a time
        leave nothing to count).

        The attempts may have crashed the slice (`crashed`), and so may a give-up: the head item
        counts that too, and each give-up that crashed makes the next one do less: after one, the
        page is listed again but its objects go on the failed list unread; after two, the listing
        stops there unread, like a listing that keeps failing."""
        phase = state.phase
        crashed = state.page_attempts - PAGE_ATTEMPTS  # > 0: give-ups of this page that crashed
        entry: dict[str, Any] = {"phase": phase, "error": state.page_error,
                                 "attempts": max(PAGE_ATTEMPTS, state.page_attempts), "at": _iso(self.clock())}
        if phase == RETRY:
            names, cert_ids = self.store.load_failed(state.retry_of or "", state.retry_next)
            following = state.retry_next + 1
            after: dict[str, Any] = {"retry_next": following, "page_attempts": 0,
                                     "phase": RETRY if following < state.retry_items else _after_retry(state)}
            entry["item"] = state.retry_next
            things = [Thing(n) for n in names]  # names only: each is described in the source below
            certs = [Certificate(c, "ACTIVE") for c in cert_ids]
            listed_certs = False
        else:
            api, cursor, field_name = {READ: ("list_things", state.cursor, "cursor"),
                                       CERTS: ("list_certificates", state.cert_cursor, "cert_cursor"),
                                       FLEET: (_FLEET_APIS[state.fleet_step], state.fleet_cursor,
                                               "fleet_cursor")}[phase]
            entry["marker"] = cursor
            if phase == FLEET:
                entry["listing"] = state.fleet_step
            if crashed >= 2:  # the give-up crashed even with no object read: not even listed again
                entry["unread"] = "the rest of the listing"
                return self._commit(state, **self._past(state, None), unlisted=state.unlisted + 1,
                                    **self._failed_page(state, entry))
            try:
                state, items, token = self._listing(state, api, cursor, field_name)
            except READ_ERRORS as exc:
                entry["unread"] = "the rest of the listing"
                entry["error"] = _code(exc)
                return self._commit(state, **self._past(state, None), unlisted=state.unlisted + 1,
                                    **self._failed_page(state, entry))
            if items is None:  # the cursor was refused: the listing starts over (counted)
                return replace(state, page_attempts=0)
            after = self._past(state, token)
            things, certs, listed_certs = [], [], False
            if phase == READ:
                things = [Thing(t["thingName"], t.get("thingTypeName") or None,
                                {str(k): str(v) for k, v in (t.get("attributes") or {}).items()},
                                version=t.get("version")) for t in items]
                after.update(pages=state.pages + 1, read=state.read + len(things),
                             total_estimate=state.read + len(things) if not token
                             else max(state.total_estimate or 0, state.read + len(things)) or None)
            elif phase == CERTS:
                certs, _ = _cert_checks(items, state.certs_since)
                listed_certs = True
                after.update(cert_pages=state.cert_pages + 1, certs_read=state.certs_read + len(items))
            else:  # a fleet page: its objects are not listed (every pass's fleet phase checks them all)
                entry["unread"] = f"{len(items)} {state.fleet_step} of this page (the next pass's fleet phase)"
                return self._commit(state, **after, errors=state.errors + 1, **self._failed_page(state, entry))
        dynamic = frozenset(state.dynamic)

        def thing_check(t: Thing) -> _Checked | None:
            if phase == RETRY:  # a listed name: the thing as the source has it now
                found = _thing(self.src, t.name)
                if found is None:
                    return None
                t = found
            return self._things([t], dynamic)

        def cert_check(c: Certificate) -> _Checked | None:
            if not listed_certs:  # a listed id: its status and ARN as the source has them now
                found = _certificate(self.src, c.id)
                if found is None:
                    return None
                c = found
            return self._certificates([c], {c.id} if not listed_certs or c.status == "ACTIVE" else ())

        tally = _Tally()
        if crashed >= 1:  # a give-up of this page crashed: its objects go on the failed list unread
            unread_things, unread_certs = [t.name for t in things], [c.id for c in certs]
        else:
            unread_things = self._one_at_a_time(things, lambda t: t.name, thing_check, tally)
            unread_certs = self._one_at_a_time(certs, lambda c: c.id, cert_check, tally)
        changes: dict[str, Any] = {}
        if unread_things or unread_certs:
            entry["unread"] = f"{len(unread_things)} things, {len(unread_certs)} certificates (on the failed list)"
            entry["objects"] = sorted(unread_things)[:5] + sorted(unread_certs)[:5]
            changes = self._failed_page(state, entry)
        return self._commit(state, **after, applied=state.applied + tally.applied,
                            errors=state.errors + tally.failed, unequal=state.unequal + tally.left,
                            notes=_notes(state.notes, tally.warnings), **changes,
                            **self._failed(state, tally.bad, unread_things, unread_certs))

    def _one_at_a_time(self, objects: Iterable[_T], name: Callable[[_T], str],
                       check: Callable[[_T], _Checked | None], tally: _Tally) -> list[str]:
        """`objects` of a page given up, checked one at a time (`check`: read both regions, plan,
        apply, read back; None: the source no longer has it), each result added to `tally`: a
        poison object fails alone, whatever it raises (a refused read, or an exception that would
        crash the slice). The names of those that raised, or that the slice's time did not reach
        (the failed list's)."""
        unread: list[str] = []
        for obj in objects:
            if not self.time_left():
                unread.append(name(obj))
                continue
            try:
                result = check(obj)
            except Exception:  # noqa: BLE001 - refused reads, and a crash of this object alone
                unread.append(name(obj))
                continue
            if result is not None:
                tally.add(result)
        return unread

    def _past(self, state: PassState, token: str | None) -> dict[str, Any]:
        """The head item's changes that move the pass past its current page (`token`: the next
        page's cursor; None: the listing ends here), the page's attempts reset."""
        out: dict[str, Any] = {"page_attempts": 0}
        if state.phase == READ:
            out.update(cursor=token, phase=READ if token else CERTS)
        elif state.phase == CERTS:
            out.update(cert_cursor=token, phase=CERTS if token else APPLY)
        elif state.phase == FLEET:
            out["fleet_cursor"] = token
            if token is None:
                following = FLEET_LISTINGS.index(state.fleet_step) + 1
                if following < len(FLEET_LISTINGS):
                    out["fleet_step"] = FLEET_LISTINGS[following]
                else:
                    out["phase"] = RETRY if state.retry_next < state.retry_items else _after_retry(state)
        return out

    @staticmethod
    def _failed_page(state: PassState, entry: dict[str, Any]) -> dict[str, Any]:
        kept = state.failed_pages if len(state.failed_pages) >= FAILED_PAGES_KEPT else (*state.failed_pages, entry)
        return {"pages_failed": state.pages_failed + 1, "failed_pages": kept}

    # -- 1. fleet: pages of policies, thing types and thing groups ----------------------------------
    def fleet_page(self, state: PassState) -> PassState:
        """One page of the fleet phase's listing in progress (`FLEET_LISTINGS`: policies first, so
        the groups' attachments find them; thing types; thing groups, each with its ancestors, so
        a parent on a later page is made first), read in both regions, planned, applied, read back."""
        from orchestrator.registry.sync import plan_sync

        step = state.fleet_step
        api = _FLEET_APIS[step]
        state, items, token = self._listing(state, api, state.fleet_cursor, "fleet_cursor")
        if items is None:
            return state
        dynamic = set(state.dynamic)
        side: Callable[[Caller], RegistrySnapshot]
        if step == "policies":
            names = sorted({p["policyName"] for p in items})
            side = lambda caller: _policies(caller, names)  # noqa: E731
        elif step == "types":
            listed = _listed_types(items)
            side = lambda caller: RegistrySnapshot(  # noqa: E731
                caller.region, thing_types=listed if caller is self.src else _types(caller, [t.name for t in listed]))
        else:
            found = _groups_with_ancestors(self.src, sorted({g["groupName"] for g in items}))
            dynamic |= {g.name for g in found if g.dynamic}
            static = sorted(g.name for g in found if not g.dynamic)
            known = {g.name: g for g in found}  # the source's, described once
            side = lambda caller: _groups(caller, static, known if caller is self.src else None)  # noqa: E731
        src, dst = pmap(side, [self.src, self.dst], 2)
        if step == "groups":  # the policies the groups' targets name, equal on both sides (their pages)
            src, dst = _with_policy_stubs(src, dst)
        plan = plan_sync(src, dst, False, region_rewrite=self.rep.region_rewrite)
        applied, failed, _, _ = self._apply(plan)
        left = 0
        if plan.ops:
            again = side(self.dst)
            if step == "groups":
                _, again = _with_policy_stubs(src, again)
            left = len(plan_sync(src, again, False, region_rewrite=self.rep.region_rewrite).ops)
        changes: dict[str, Any] = {"fleet_cursor": token}
        if token is None:
            following = FLEET_LISTINGS.index(step) + 1
            if following < len(FLEET_LISTINGS):
                changes["fleet_step"] = FLEET_LISTINGS[following]
            else:
                changes["phase"] = RETRY if state.retry_next < state.retry_items else _after_retry(state)
        return self._commit(state, dynamic=tuple(sorted(dynamic)), applied=state.applied + applied,
                            page_attempts=0, page_error=None,
                            errors=state.errors + failed, unequal=state.unequal + left,
                            notes=_notes(state.notes, plan.warnings), **changes)

    # -- 1b. the last pass's failed objects, first ------------------------------------------------
    def retry_page(self, state: PassState) -> PassState:
        """One item of the last pass's failed list: its things and certificates re-checked as their
        pages were (read in both regions, planned, applied, read back). What fails again goes on
        this pass's list; the listing that follows checks every thing anyway."""
        if state.retry_of is None or state.retry_next >= state.retry_items:
            return self._commit(state, phase=_after_retry(state), page_attempts=0, page_error=None)
        self.pages += 1
        names, cert_ids = self.store.load_failed(state.retry_of, state.retry_next)
        things = [t for t in pmap(lambda n: _thing(self.src, n), names, READ_CONCURRENCY) if t is not None]
        applied, failed, left, warnings, bad = self._things(things, frozenset(state.dynamic))
        certs = [c for c in pmap(lambda c: _certificate(self.src, c), cert_ids, READ_CONCURRENCY) if c is not None]
        c_applied, c_failed, c_left, c_warnings, c_bad = self._certificates(certs, {c.id for c in certs})
        following = state.retry_next + 1
        return self._commit(state, retry_next=following,
                            phase=RETRY if following < state.retry_items else _after_retry(state),
                            page_attempts=0, page_error=None,
                            applied=state.applied + applied + c_applied, errors=state.errors + failed + c_failed,
                            unequal=state.unequal + left + c_left,
                            notes=_notes(state.notes, (*warnings, *c_warnings)),
                            **self._failed(state, (*bad, *c_bad)))

    # -- 2. pages of things -----------------------------------------------------------------------
    def things_page(self, state: PassState) -> PassState:
        state, listed, token = self._listing(state, "list_things", state.cursor, "cursor")
        if listed is None:
            return state
        things = [Thing(t["thingName"], t.get("thingTypeName") or None,
                        {str(k): str(v) for k, v in (t.get("attributes") or {}).items()}, version=t.get("version"))
                  for t in listed]
        applied, failed, left, warnings, bad = self._things(things, frozenset(state.dynamic))
        read = state.read + len(things)
        since, note = state.certs_since, None
        if token is None and since is None and \
                self.clock() - state.started_at + read / CERT_LOOKUP_RATE > VALIDITY_S:
            # looking up every ACTIVE certificate (about one a thing) would not end in the window
            since, note = _window_note(state.started_at - CERT_MARGIN_S)
        return self._commit(state, cursor=token, pages=state.pages + 1, read=read, phase=READ if token else CERTS,
                            page_attempts=0, page_error=None,
                            total_estimate=read if not token else max(state.total_estimate or 0, read) or None,
                            applied=state.applied + applied, errors=state.errors + failed,
                            unequal=state.unequal + left, certs_since=since,
                            notes=_notes(state.notes, (*warnings, *((note,) if note else ()))),
                            **self._failed(state, bad))

    def _things(self, things: list[Thing],
                dynamic: frozenset[str]) -> tuple[int, int, int, tuple[str, ...], list[SyncOp]]:
        """One page of things: read both regions, plan, apply, read back what changed, plan again.
        (applied, failed, left unequal, warnings, the operations failed, blocked or left)."""
        from orchestrator.registry.regional import without_regional
        from orchestrator.registry.sync import Kind, plan_sync

        if not things:
            return 0, 0, 0, (), []
        names = [t.name for t in things]
        (src_p, dst_p) = pmap(lambda side: side(), [lambda: self._source_page(things, dynamic),
                                                    lambda: self._dest_page(names, dynamic, None)], 2)
        src = without_regional(src_p.snapshot)
        # a group the destination has the thing in must be known as static in the source's page
        # too (the planner takes a thing out only of the source's static groups): the fleet phase
        # made every static group, and the dynamic ones are left out of both sides
        src = replace(src, thing_groups=tuple(ThingGroup(g) for g in sorted(
            {g.name for g in src.thing_groups} | {g.name for g in dst_p.snapshot.thing_groups})))
        dst = self._with_certs(dst_p.snapshot, src)
        plan = plan_sync(src, dst, False, region_rewrite=self.rep.region_rewrite, fetch_pems=True)
        applied, failed, writes, unapplied = self._apply(plan)
        if not plan.ops:
            return 0, 0, 0, plan.warnings, []
        # the page's "verify equal": the things an operation named are read again in the
        # destination, the others are as read before; what the plan would still do is a difference
        touched = sorted({str(op.params.get("thing") or op.name) for op in plan.ops
                          if op.kind in (Kind.THING, Kind.THING_PRINCIPAL, Kind.GROUP_MEMBERSHIP, Kind.SHADOW)}
                         & set(names))
        certs = {op.name for op in plan.ops if op.kind is Kind.CERTIFICATE} | \
            {str(op.params["target"]) for op in plan.ops if op.kind is Kind.POLICY_ATTACHMENT
             and op.params.get("target_kind") == TargetKind.CERTIFICATE.value}
        shadow_names: dict[str, set[str]] = {}
        for op in plan.ops:
            if op.kind is Kind.SHADOW:
                shadow_names.setdefault(str(op.params["thing"]), set()).add(str(op.params["shadow"]))
        again = self._dest_page(touched, dynamic, shadow_names).snapshot if touched else RegistrySnapshot(dst.region)
        after = self._merge(dst, again, set(touched), certs, src, writes)
        left = plan_sync(src, after, False, region_rewrite=self.rep.region_rewrite, fetch_pems=True)
        return applied, failed, len(left.ops), plan.warnings, [*unapplied, *left.ops]

    def _read_thing(self, caller: Caller, data: Caller | None, name: str, listed: Thing | None,
                    dynamic: frozenset[str], shadow_names: Collection[str] | None) -> _ThingRead | None:
        """One thing's reads in one region, one call after the other, so that the page's things
        (`READ_CONCURRENCY` at a time) keep every API's bucket busy at once: the thing
        (`DescribeThing`, unless `listed`), its certificates, each certificate and its policies, its
        static groups, its shadows (`shadow_names`: only those; None: all). None: no such thing."""
        thing = listed if listed is not None else _thing(caller, name)
        if thing is None:
            return None
        partial: set[str] = set()
        principals, notes = read_principals(caller, [name], partial=partial)
        groups = _groups_of(caller, name, dynamic)
        certs = [c for c in (_certificate(caller, a.certificate_id) for a in principals) if c is not None]
        targets = [t for c in certs for t in _cert_policies(caller, c)]
        shadows: tuple[Shadow, ...] = ()
        if data is not None and (shadow_names is None or shadow_names):
            shadows = read_shadows(data, [name], names=None if shadow_names is None else {name: sorted(shadow_names)})
        return _ThingRead(replace(thing, groups=groups), principals, bool(partial), tuple(certs), tuple(targets),
                          shadows, notes)

    def _side(self, caller: Caller, data: Caller | None, names: list[str], listed: Mapping[str, Thing] | None,
              dynamic: frozenset[str], shadow_names: Mapping[str, Collection[str]] | None = None) -> _Page:
        """A page's things read in one region (`_read_thing` each) as one snapshot."""
        reads = [r for r in pmap(lambda n: self._read_thing(
            caller, data, n, listed.get(n) if listed is not None else None, dynamic,
            None if shadow_names is None else shadow_names.get(n, ())), names, READ_CONCURRENCY) if r is not None]
        certs = {c.id: c for r in reads for c in r.certs}
        things = [r.thing for r in reads]
        member_of = sorted({g for t in things for g in t.groups})
        snapshot = RegistrySnapshot(
            caller.region, thing_types=_types(caller, {t.thing_type for t in things if t.thing_type}),
            thing_groups=tuple(ThingGroup(g) for g in member_of), things=tuple(things),
            certificates=tuple(sorted(certs.values(), key=lambda c: c.id)),
            thing_principals=tuple(sorted(a for r in reads for a in r.principals)),
            policy_targets=tuple(sorted({t for r in reads for t in r.targets})),
            shadows=tuple(sorted(sh for r in reads for sh in r.shadows)),
            notes=tuple(sorted({n for r in reads for n in r.notes})),
            coverage=Coverage(principals=frozenset(r.thing.name for r in reads if not r.partial),
                              policy_targets=frozenset(), certificate_policies=frozenset(certs),
                              groups=None, policy_versions=frozenset()))
        return _Page(snapshot, frozenset(r.thing.name for r in reads if r.partial))

    def _source_page(self, things: list[Thing], dynamic: frozenset[str]) -> _Page:
        """The source's side: the things as `ListThings` gave them, every shadow."""
        return self._side(self.src, self.src_data, [t.name for t in things], {t.name: t for t in things}, dynamic)

    def _dest_page(self, names: list[str], dynamic: frozenset[str],
                   shadow_names: Mapping[str, Collection[str]] | None) -> _Page:
        """The destination's side of `names` (those it has): every shadow, or those of `shadow_names`
        (a read-back). Its coverage is not used (the planner reads the source's)."""
        return self._side(self.dst, self.dst_data, names, None, dynamic, shadow_names)

    def _with_certs(self, dst: RegistrySnapshot, src: RegistrySnapshot) -> RegistrySnapshot:
        """The destination's page completed with what depends on the source's side: the source's
        certificates it has but attached elsewhere (or to nothing), their policies, and the source's
        thing types and groups as they are here."""
        have = dst.certificates_by_id
        extra = [c for c in pmap(lambda c: _certificate(self.dst, c),
                                 [c.id for c in src.certificates if c.id not in have], READ_CONCURRENCY)
                 if c is not None]
        targets = [t for batch in pmap(lambda c: _cert_policies(self.dst, c), extra, READ_CONCURRENCY) for t in batch]
        types = {t.name: t for t in dst.thing_types}
        for t in _types(self.dst, {t.name for t in src.thing_types} - set(types)):
            types[t.name] = t
        groups = {g.name: g for g in (*dst.thing_groups, *src.thing_groups)}  # static groups exist (fleet)
        return replace(dst, certificates=tuple(sorted((*dst.certificates, *extra), key=lambda c: c.id)),
                       policy_targets=tuple(sorted({*dst.policy_targets, *targets})),
                       thing_types=tuple(sorted(types.values(), key=lambda t: t.name)),
                       thing_groups=tuple(sorted(groups.values(), key=lambda g: g.name)))

    def _merge(self, before: RegistrySnapshot, again: RegistrySnapshot, touched: set[str], certs: set[str],
               src: RegistrySnapshot, writes: Mapping[str, tuple[int | None, int | None]]) -> RegistrySnapshot:
        """The destination's page after the apply: `touched` things as read again, the others (and
        their principals and shadows) as read before; the certificates the plan created, updated or
        attached a policy to are described again. A shadow we wrote is compared without its times
        (our write made it newer than the source) unless a later writer superseded it (the sync's
        own rule, `sync.run._superseded`)."""
        from orchestrator.registry.sync.run import _superseded

        cert_ids = sorted(certs | {a.certificate_id for a in again.thing_principals})
        fresh = {c.id: c for c in pmap(lambda c: _certificate(self.dst, c), cert_ids, READ_CONCURRENCY) if c}
        fresh_targets = [t for batch in pmap(lambda c: _cert_policies(self.dst, c), list(fresh.values()),
                                             READ_CONCURRENCY) for t in batch]
        reread = again.shadows
        superseded = _superseded(src.shadows, reread, writes)
        reread = tuple(sh if sh.key in superseded else replace(sh, desired_at=None, reported_at=None) for sh in reread)
        written = {(sh.thing, sh.name) for sh in reread}
        return replace(
            before,
            thing_types=_types(self.dst, {t.name for t in src.thing_types}),
            things=tuple(sorted((*(t for t in before.things if t.name not in touched), *again.things),
                                key=lambda t: t.name)),
            thing_principals=tuple(sorted({*(a for a in before.thing_principals if a.thing not in touched),
                                           *again.thing_principals})),
            certificates=tuple(sorted({**{c.id: c for c in before.certificates}, **fresh}.values(),
                                      key=lambda c: c.id)),
            policy_targets=tuple(sorted({*(t for t in before.policy_targets
                                           if t.kind is not TargetKind.CERTIFICATE or t.target not in fresh),
                                         *fresh_targets})),
            thing_groups=tuple(sorted({g.name: g for g in (*before.thing_groups, *again.thing_groups)}.values(),
                                      key=lambda g: g.name)),
            shadows=tuple(sorted({*(sh for sh in before.shadows if (sh.thing, sh.name) not in written), *reread})))

    # -- 3. pages of certificates -------------------------------------------------------------------
    def certificates_page(self, state: PassState) -> PassState:
        """One page of the source's certificates: those INACTIVE or REVOKED are tightened in the
        destination, and ACTIVE ones created since `certs_since` (attached to a thing or not) are
        created there with their policies when it lacks them, as `registry sync` copies them."""
        state, listed, marker = self._listing(state, "list_certificates", state.cert_cursor, "cert_cursor")
        if listed is None:
            return state
        check, with_policies = _cert_checks(listed, state.certs_since)
        applied, failed, left, warnings, bad = self._certificates(check, with_policies)
        return self._commit(state, cert_cursor=marker, cert_pages=state.cert_pages + 1, page_attempts=0,
                            page_error=None,
                            certs_read=state.certs_read + len(listed), phase=CERTS if marker else APPLY,
                            applied=state.applied + applied, errors=state.errors + failed,
                            unequal=state.unequal + left, notes=_notes(state.notes, warnings),
                            **self._failed(state, bad))

    def _certificates(self, certs: list[Certificate],
                      with_policies: Collection[str]) -> tuple[int, int, int, tuple[str, ...], list[SyncOp]]:
        """Certificates of the source checked in the destination (`DescribeCertificate` each):
        planned (created when missing, status tightened), applied, read back, planned again. The
        attached policies of `with_policies` are read in both regions (the source's list complete:
        one it detached is detached here too). (applied, failed, left, warnings, ops failed or left)."""
        from orchestrator.registry.sync import plan_sync

        if not certs:
            return 0, 0, 0, (), []
        listed = tuple(sorted(certs, key=lambda c: c.id))
        src_targets = tuple(sorted(t for batch in pmap(lambda c: _cert_policies(self.src, c),
                                                       [c for c in listed if c.id in with_policies],
                                                       READ_CONCURRENCY) for t in batch))
        src = RegistrySnapshot(self.src.region, certificates=listed, policy_targets=src_targets,
                               coverage=Coverage(principals=frozenset(), policy_targets=frozenset(),
                                                 certificate_policies=frozenset(with_policies), groups=frozenset(),
                                                 policy_versions=frozenset()))

        def here() -> RegistrySnapshot:
            found = [c for c in pmap(lambda c: _certificate(self.dst, c.id), listed, READ_CONCURRENCY)
                     if c is not None]
            targets = [t for batch in pmap(lambda c: _cert_policies(self.dst, c),
                                           [c for c in found if c.id in with_policies], READ_CONCURRENCY)
                       for t in batch]
            return RegistrySnapshot(self.dst.region, certificates=tuple(found), policy_targets=tuple(sorted(targets)))

        plan = plan_sync(src, here(), False, region_rewrite=self.rep.region_rewrite, fetch_pems=True)
        applied, failed, _, unapplied = self._apply(plan)
        left: list[SyncOp] = []
        if plan.ops:
            left = list(plan_sync(src, here(), False, region_rewrite=self.rep.region_rewrite, fetch_pems=True).ops)
        return applied, failed, len(left), plan.warnings, [*unapplied, *left]


def _cert_checks(listed: Iterable[Mapping[str, Any]], since: float | None) -> tuple[list[Certificate], set[str]]:
    """Of one page of `ListCertificates`, the certificates to check in the destination (INACTIVE or
    REVOKED ones, and ACTIVE ones created since `since`) and those whose policies are read too."""
    check, with_policies = [], set()
    for c in listed:
        cert = Certificate(c["certificateId"], c["status"], mode=c.get("certificateMode"),
                           ca_certificate_id=c.get("caCertificateId"), arn=c.get("certificateArn"))
        created = _created(c)
        if c.get("status") in _TIGHTENED:
            check.append(cert)
        elif c.get("status") == "ACTIVE" and (since is None or created is None or created >= since):
            check.append(cert)
            with_policies.add(cert.id)
    return check, with_policies


def _after_retry(state: PassState) -> str:
    """The phase after the re-check of the last pass's list: the listing (FULL) or the end (RECHECK)."""
    return APPLY if state.kind == RECHECK else READ


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "code", None) or error_code(exc) or type(exc).__name__)[:100]


def _created(listed: Mapping[str, Any]) -> float | None:
    """A listed certificate's creation time (epoch seconds), None when not given."""
    at = listed.get("creationDate")
    if isinstance(at, datetime):
        return at.timestamp()
    return float(at) if isinstance(at, (int, float)) else None


def _objects(ops: Iterable[SyncOp]) -> tuple[set[str], set[str]]:
    """The things and certificates operations name (fleet objects are not listed: every pass's
    fleet phase checks them all first)."""
    from orchestrator.registry.sync import Kind

    things: set[str] = set()
    certs: set[str] = set()
    for op in ops:
        if op.kind in (Kind.THING, Kind.THING_PRINCIPAL, Kind.GROUP_MEMBERSHIP, Kind.SHADOW):
            things.add(str(op.params.get("thing") or op.name))
        if op.kind is Kind.CERTIFICATE:
            certs.add(op.name)
        elif op.kind is Kind.THING_PRINCIPAL and op.params.get("certificate_id"):
            certs.add(str(op.params["certificate_id"]))
        elif op.kind is Kind.POLICY_ATTACHMENT and op.params.get("target_kind") == TargetKind.CERTIFICATE.value:
            certs.add(str(op.params["target"]))
    return things, certs


def _notes(kept: tuple[str, ...], new: Iterable[str], limit: int = 10) -> tuple[str, ...]:
    """The plans' warnings, the first `limit` distinct ones (the head item stays small)."""
    out = list(kept)
    for w in new:
        if w not in out and len(out) < limit:
            out.append(w[:300])
    return tuple(out)


# -- small reads (one object each; missing -> None) -------------------------------------------------
def _thing(caller: Caller, name: str) -> Thing | None:
    from orchestrator.registry.replicate import _call_or_none

    d = _call_or_none(caller, "describe_thing", thingName=name)
    if d is None:
        return None
    return Thing(name, d.get("thingTypeName") or None, {str(k): str(v) for k, v in (d.get("attributes") or {}).items()},
                 version=d.get("version"))


def _groups_of(caller: Caller, thing: str, dynamic: frozenset[str]) -> tuple[str, ...]:
    """The static groups `thing` is a member of (ListThingGroupsForThing, 100/s)."""
    try:
        names = {g["groupName"] for g in caller.pages("list_thing_groups_for_thing", thingName=thing)}
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return ()
        raise
    return tuple(sorted(names - dynamic))


def _certificate(caller: Caller, cert_id: str) -> Certificate | None:
    from orchestrator.registry.replicate import _call_or_none

    d = _call_or_none(caller, "describe_certificate", certificateId=cert_id)
    if d is None:
        return None
    c = d["certificateDescription"]
    return Certificate(cert_id, c["status"], None, c.get("certificateMode"), c.get("caCertificateId"),
                       c.get("certificateArn"))


def _cert_policies(caller: Caller, cert: Certificate) -> list[PolicyTarget]:
    if not cert.arn:
        return []
    try:
        return [PolicyTarget(p["policyName"], TargetKind.CERTIFICATE, cert.id)
                for p in caller.pages("list_attached_policies", target=cert.arn)]
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return []
        raise


def _types(caller: Caller, names: Iterable[str]) -> tuple[ThingType, ...]:
    from orchestrator.registry.replicate import _describe_thing_type

    found = [_describe_thing_type(caller, n) for n in sorted(names)]
    return tuple(t for t in found if t is not None)


def _policies(caller: Caller, names: Collection[str]) -> RegistrySnapshot:
    """One page of policies as a region has them (those it has of `names`), each with its versions."""
    from orchestrator.registry.policydoc import normalize_document
    from orchestrator.registry.regional import without_regional
    from orchestrator.registry.replicate import _call_or_none
    from orchestrator.registry.snapshot import Policy

    def policy(name: str) -> Policy | None:
        d = _call_or_none(caller, "get_policy", policyName=name)
        if d is None:
            return None
        document = normalize_document(d["policyDocument"])
        return Policy(name, document, policy_versions(caller, name, default=(d.get("defaultVersionId"), document)))

    policies = [p for p in pmap(policy, sorted(names), 4) if p is not None]
    return without_regional(RegistrySnapshot(
        caller.region, policies=tuple(policies),
        coverage=Coverage(principals=frozenset(), policy_targets=frozenset(), certificate_policies=frozenset(),
                          groups=frozenset(), policy_versions=frozenset(p.name for p in policies
                                                                        if p.versions is not None))))


def _listed_types(items: Iterable[Mapping[str, Any]]) -> tuple[ThingType, ...]:
    """One page of `ListThingTypes` as the snapshot's thing types."""
    types = []
    for t in items:
        props, meta = t.get("thingTypeProperties") or {}, t.get("thingTypeMetadata") or {}
        types.append(ThingType(t["thingTypeName"], props.get("thingTypeDescription") or None,
                               tuple(props.get("searchableAttributes") or ()), bool(meta.get("deprecated"))))
    return tuple(sorted(types, key=lambda t: t.name))


def _groups_with_ancestors(caller: Caller, names: Iterable[str]) -> list[ThingGroup]:
    """The groups of one page of `ListThingGroups` and their ancestors (a parent is made before its
    children: one on a later page is made with this one, again when its page comes: idempotent)."""
    found: dict[str, ThingGroup] = {}
    todo = sorted(set(names))
    while todo:
        for g in pmap(lambda n: describe_thing_group(caller, n), todo, 4):
            if g is not None:
                found[g.name] = g
        todo = sorted({g.parent for g in found.values() if g.parent and g.parent not in found} - set(todo))
    return sorted(found.values(), key=lambda g: g.name)


def _groups(caller: Caller, names: Collection[str], known: Mapping[str, ThingGroup] | None = None) -> RegistrySnapshot:
    """Static groups as a region has them (those it has of `names`; `known`: as described already)
    with the policies attached to each (`ListAttachedPolicies` per group: each group's list is
    complete, so a policy the destination has beyond it is detached: tightening)."""
    from orchestrator.registry.regional import without_regional

    if known is not None:
        groups = [known[n] for n in sorted(names) if n in known]
    else:
        groups = [g for g in pmap(lambda n: describe_thing_group(caller, n), sorted(names), 4) if g is not None]

    def group_policies(g: ThingGroup) -> list[PolicyTarget]:
        if not g.arn:
            return []
        return [PolicyTarget(p["policyName"], TargetKind.THING_GROUP, g.name)
                for p in caller.pages("list_attached_policies", target=g.arn)]

    targets = [t for batch in pmap(group_policies, [g for g in groups if not g.dynamic], 4) for t in batch]
    return without_regional(RegistrySnapshot(
        caller.region, thing_groups=tuple(groups), policy_targets=tuple(sorted(targets)),
        coverage=Coverage(principals=frozenset(), policy_targets=None, certificate_policies=frozenset(),
                          groups=frozenset(), policy_versions=frozenset())))


def _with_policy_stubs(src: RegistrySnapshot, dst: RegistrySnapshot) -> tuple[RegistrySnapshot, RegistrySnapshot]:
    """Both sides of a page of groups with the policies their targets name, as one identical stub
    each: the planner attaches and detaches a group's policies only of policies the source has,
    and the policies' own pages (before the groups') made them equal, so nothing else is planned."""
    from orchestrator.registry.snapshot import Policy

    names = sorted({t.policy for t in (*src.policy_targets, *dst.policy_targets)})
    stubs = tuple(Policy(n, "{}") for n in names)
    return replace(src, policies=stubs), replace(dst, policies=stubs)


# -- 4. the end of the pass ----------------------------------------------------------------------------
def _finish(replicator: Replicator, store: PassStore, state: PassState, clock: Callable[[], float],
            now: datetime | None) -> dict[str, Any]:
    """The device-management plane, then the reconciliation record of the whole pass.

    The end is one attempt, like a page's: a slice that crashed in it (an exception here, or the
    slice died: `page_attempts` of the APPLY phase, `run_slice`) is counted, and once
    `PAGE_ATTEMPTS` of them did, the plane is not tried again in this pass: the pass ends FAILED,
    the plane given up in the record (`plane.given_up`) and the end counted in `pages_failed`
    (`failed_pages`: phase `apply`, the last crash's error). The next pass's end tries the plane
    again. Not one plane operation at a time: the plane is planned from whole reads of both
    regions, and what kills a slice there (Lambda's time or memory) may be those reads."""
    from orchestrator.registry.replicate import reconcile_plane

    started = clock()
    at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    given_up = state.page_attempts >= PAGE_ATTEMPTS
    if given_up:
        entry = {"phase": APPLY, "error": state.page_error, "attempts": state.page_attempts, "at": _iso(started),
                 "unread": "the device-management plane (not applied; `registry sync` carries it)"}
        state = replace(state, **_Work._failed_page(state, entry))
    # ok only when every page was read, applied and read back equal: a page given up (its objects
    # on the failed list, or a listing stopped) is unverified, so the pass is FAILED though complete
    result: dict[str, Any] = {"at": at, "from": store.source,
                              "ok": state.errors == 0 and state.unequal == 0 and state.pages_failed == 0
                              and state.failed == 0 and state.failed_dropped == 0,
                              "applied": state.applied, "errors": state.errors, "unequal": state.unequal,
                              "things": state.read, "certificates": state.certs_read, "pages": state.pages,
                              "kind": state.kind}
    if state.kind == RECHECK:
        # the full pass before this one read every other object; this one re-checked its failed list
        result.update(rechecked_pass=state.retry_of, things=state.total_estimate or 0)
    if state.pages_failed:
        result["pages_failed"] = state.pages_failed
        result["failed_pages"] = [dict(p) for p in state.failed_pages]
        if state.unlisted:
            result["unlisted"] = state.unlisted
    if state.failed or state.failed_dropped:
        # the objects the next pass re-checks first (its RETRY phase), and those past the list's
        # bound; `next`: whether that pass re-checks only the list or lists the whole fleet again
        result["retry_next_pass"] = {"objects": state.failed, "dropped": state.failed_dropped,
                                     "next": _next_kind(replace(state, phase=DONE), clock())}
    elif state.unlisted:
        result["retry_next_pass"] = {"objects": 0, "dropped": 0, "next": FULL}
    if state.notes:
        result["warnings"] = list(state.notes)
    if given_up:  # the plane crashed its slice PAGE_ATTEMPTS times: not tried whole again
        plane: dict[str, Any] = {
            "ok": False, "applied": 0, "errors": 1, "counts": {}, "error": state.page_error,
            "given_up": f"crashed its slice {state.page_attempts} times; the next pass tries it again"}
    else:
        plane = reconcile_plane(replicator, store.source)
    result["plane"] = plane
    result["ok"] = bool(result["ok"] and plane["ok"])
    result["errors"] += plane["errors"]
    end = clock()
    result.update(duration_s=round(end - started, 3), slices=state.slices, pass_s=round(end - state.started_at, 3))
    replicator.store.put_reconciliation(result)
    # the pass is done either way: what failed is counted in the record (readiness says NOT READY),
    # and the next execution starts a new pass, which re-checks the failed objects first (RETRY)
    final = replace(state, phase=DONE, errors=int(result["errors"]), updated_at=end, page_attempts=0)
    out = {"done": True, "progress": final.progress(end), "result": result}
    store.save(final)  # the last thing this slice does: a crash before it is an attempt of the end
    return out


__all__ = ["APPLY", "CERTS", "DONE", "FLEET", "FULL", "PASS_PREFIX", "READ", "RECHECK", "RETRY", "SLICE_BUDGET_S",
           "VALIDITY_S",
           "PassState", "PassStore", "SliceLimits", "read_progress", "run_slice"]
