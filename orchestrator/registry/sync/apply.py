"""Applying a plan to the destination: the executor (one operation) and the scheduler (all of them).

Entry points:

    apply_sync(plan, dst_client, ...)        a whole plan (registry sync, restore)
    apply_thing(src, dst_caller, ...)        one thing's (or a few things') changes, given the
                                             source's data for them: reads only those in the
                                             destination, plans and applies the difference
    apply_shadow(shadow, data_caller, ...)   one shadow's state, given the source's document
                                             (`snapshot.shadow_from_document` turns a
                                             `$aws/things/<thing>/shadow/.../update/documents`
                                             message's `current` into a `Shadow`)

The last two are what an event-driven replicator (registry events, shadow update documents) calls
per event; they write with the clientToken `SYNC_CLIENT_TOKEN`, so a replicator listening in the
destination can ignore the echo of its own writes.

`apply_sync` runs the plan against the destination: dependencies first, optionally on a small
thread pool whose dispatcher interleaves different APIs (each has its own rate limit, so four
workers on four APIs go four times as fast as four workers on one), every call through
`Caller` (rate limit, backoff, counting), and every operation idempotent: "already exists",
"not found" on delete/detach and a replayed policy version are all recognised as done.
An unchanged registry costs zero write calls.
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any, Protocol

from orchestrator.errors import InputRejected, OrchestrateError
from orchestrator.registry.calls import Caller, RateLimiter, RetryPolicy, error_code, is_write
from orchestrator.registry.checkpoint import Checkpoint
from orchestrator.registry.policydoc import normalize_document
from orchestrator.registry.quotas import SHADOW_APIS, AdaptiveLimiter
from orchestrator.registry.signing import certificate_id
from orchestrator.registry.snapshot import RegistrySnapshot, Shadow, TargetKind
from orchestrator.registry.spill import PAGE as SPILL_PAGE
from orchestrator.registry.spill import SpillStore, SpillTable
from orchestrator.registry.sync.model import (
    MAX_CONCURRENCY,
    Action,
    Kind,
    OpError,
    Progress,
    SyncOp,
    SyncPlan,
    SyncReport,
    counts_delta,
    zero_counts,
)

_DATA_APIS = SHADOW_APIS
WINDOW = 2000  # operations per API the scheduler holds in memory at a time (the rest are spilled)
SMALL_PLAN = 5000  # up to this many operations (and no feed) the spill table is an in-memory database


class _OpRejected(Exception):
    """An operation that cannot be applied (recorded as an error; the run goes on)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _code(exc: BaseException) -> str | None:
    return error_code(exc)


def _written(response: Any) -> tuple[int | None, int | None]:
    """The version and time an `update_thing_shadow` answer carries ((None, None) if unreadable)."""
    try:
        payload = response["payload"]
        doc = json.loads(payload.read() if hasattr(payload, "read") else payload)
    except (KeyError, TypeError, ValueError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    version, ts = doc.get("version"), doc.get("timestamp")
    return (version if isinstance(version, int) else None,
            int(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else None)


# the credentials or their permissions are wrong: every further call would fail the same way
_FATAL_CODES = frozenset({
    "UnauthorizedException", "AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException",
    "SignatureDoesNotMatch",
})


def _is_client_error(exc: BaseException) -> bool:
    """A refusal of this one operation (recorded; the run goes on), not of the whole run."""
    from botocore.exceptions import ClientError

    if isinstance(exc, _OpRejected):
        return True
    return isinstance(exc, ClientError) and _code(exc) not in _FATAL_CODES


_NOT_FOUND = "ResourceNotFoundException"
SYNC_CLIENT_TOKEN = "orchestrate-registry-sync"
_EXISTS = "ResourceAlreadyExistsException"


PemSource = Callable[[str], "str | None"]


class _ArnCache(Protocol):
    def get(self, key: str, /) -> str | None: ...

    def __setitem__(self, key: str, value: str, /) -> None: ...


class _SpilledArns:
    """Certificate id -> ARN in a spill table (one row per certificate; an id's ARN in a region
    never changes, so the first one stored stands). New ARNs are written a page at a time (one
    transaction per `PAGE`, not per certificate: a commit per row rewrote a page of the file each)."""

    def __init__(self, table: SpillTable) -> None:
        self._table = table
        self._pending: dict[str, str] = {}

    def get(self, key: str, /) -> str | None:
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        value = self._table.get(key)
        return str(value) if value is not None else None

    def __setitem__(self, key: str, value: str, /) -> None:
        self._pending.setdefault(key, value)
        if len(self._pending) >= SPILL_PAGE:
            self._table.add((k, "", v) for k, v in self._pending.items())
            self._pending.clear()


class _Executor:
    """Applies one operation; idempotent, safe to replay."""

    def __init__(self, caller: Caller, plan: SyncPlan, *, data_caller: Caller | None = None,
                 pem_source: PemSource | None = None, arns: SpillTable | None = None) -> None:
        self.caller = caller
        self.data_caller = data_caller
        self.pem_source = pem_source
        # the destination's ARNs the plan read (a view of its listing, not a copy), and those learnt
        # while applying (registered certificates: about one per thing of a first sync), in the
        # spill file when `arns` is given (issue 22), else in memory
        self._known_cert_arns = plan.dst_certificate_arns
        self._cert_arns: _ArnCache = _SpilledArns(arns) if arns is not None else {}
        self._group_arns = dict(plan.dst_group_arns)
        self._lock = threading.Lock()
        # shadow key -> (version, time) of the destination's answer to our write: the read-back
        # tells a write that a device superseded from one that did not take
        self.shadow_writes: dict[str, tuple[int | None, int | None]] = {}

    def run(self, op: SyncOp) -> None:
        getattr(self, f"_{op.kind.value}_{op.action.value}")(op)

    # -- shadows (data plane) -----------------------------------------------------------------
    def _data(self) -> Caller:
        if self.data_caller is None:
            raise _OpRejected("NoDataPlane", "no iot-data client was given for shadow operations")
        return self.data_caller

    def _shadow_update(self, op: SyncOp) -> None:
        """The patch in as few documents as fit the service's 8 KB (`plan.shadow_writes`: one,
        or the deletions then the source's sections). A pair is one operation: marked done after
        both writes; redone whole after an interruption, which ends in the same state."""
        from orchestrator.registry.sync.plan import shadow_writes

        documents = shadow_writes(op.params["document"])
        # marks replica writes; the replication function's are signed (`replicate.ShadowSigner`),
        # one token per document, each over the state that document leaves behind
        final = op.params.get("client_token") or SYNC_CLIENT_TOKEN
        tokens = list(op.params.get("client_tokens") or ())
        if len(tokens) != len(documents):
            tokens = [final] * len(documents)
        response = None
        for text, token in zip(documents, tokens, strict=True):
            document = json.loads(text)
            document["clientToken"] = token
            kwargs: dict[str, Any] = {"thingName": op.params["thing"],
                                      "payload": json.dumps(document, separators=(",", ":")).encode()}
            if op.params["shadow"]:
                kwargs["shadowName"] = op.params["shadow"]
            response = self._data().call("update_thing_shadow", **kwargs)
        written = _written(response)  # the last write's version: what the destination holds now
        with self._lock:
            self.shadow_writes[op.name] = written

    def _shadow_delete(self, op: SyncOp) -> None:
        kwargs: dict[str, Any] = {"thingName": op.params["thing"]}
        if op.params["shadow"]:
            kwargs["shadowName"] = op.params["shadow"]
        try:
            self._data().call("delete_thing_shadow", **kwargs)
        except Exception as exc:
            if _code(exc) != _NOT_FOUND:
                raise

    def _call(self, api: str, *, ok: frozenset[str] = frozenset(), **kwargs: Any) -> Any:
        """Call; error codes in `ok` mean the desired state already holds (returns None)."""
        try:
            return self.caller.call(api, **kwargs)
        except Exception as exc:
            if _code(exc) in ok:
                return None
            raise

    # -- ARNs (region-specific: resolved in the destination) ---------------------------------
    def cert_arn(self, cert_id: str) -> str:
        arn = self._known_cert_arns.get(cert_id)
        if arn is None:
            with self._lock:
                arn = self._cert_arns.get(cert_id)
        if arn is None:
            d = self.caller.call("describe_certificate", certificateId=cert_id)
            arn = d["certificateDescription"]["certificateArn"]
            with self._lock:
                self._cert_arns[cert_id] = arn
        return arn

    def group_arn(self, name: str) -> str:
        with self._lock:
            arn = self._group_arns.get(name)
        if arn is None:
            arn = self.caller.call("describe_thing_group", thingGroupName=name)["thingGroupArn"]
            with self._lock:
                self._group_arns[name] = arn
        return arn

    def target_arn(self, kind: str, target: str) -> str:
        return self.cert_arn(target) if kind == TargetKind.CERTIFICATE.value else self.group_arn(target)

    # -- thing types -------------------------------------------------------------------------
    def _thing_type_create(self, op: SyncOp) -> None:
        props: dict[str, Any] = {}
        if op.params.get("description"):
            props["thingTypeDescription"] = op.params["description"]
        if op.params.get("searchable_attributes"):
            props["searchableAttributes"] = list(op.params["searchable_attributes"])
        self._call("create_thing_type", ok=frozenset({_EXISTS}), thingTypeName=op.name,
                   thingTypeProperties=props)

    def _thing_type_update(self, op: SyncOp) -> None:
        self._call("deprecate_thing_type", thingTypeName=op.name,
                   undoDeprecate=not op.params["deprecated"])

    def _thing_type_delete(self, op: SyncOp) -> None:
        if not op.params.get("deprecated"):
            if self._call("deprecate_thing_type", ok=frozenset({_NOT_FOUND}), thingTypeName=op.name,
                          undoDeprecate=False) is None:
                return
        # AWS refuses this for five minutes after deprecation: the error says so; re-run later
        self._call("delete_thing_type", ok=frozenset({_NOT_FOUND}), thingTypeName=op.name)

    # -- thing groups ------------------------------------------------------------------------
    @staticmethod
    def _group_props(op: SyncOp, *, merge: bool | None) -> dict[str, Any]:
        props: dict[str, Any] = {"attributePayload": {"attributes": dict(op.params["attributes"])}}
        if merge is not None:
            props["attributePayload"]["merge"] = merge
        if op.params.get("description") is not None or merge is not None:
            props["thingGroupDescription"] = op.params.get("description") or ""
        return props

    def _thing_group_create(self, op: SyncOp) -> None:
        kwargs: dict[str, Any] = {"thingGroupName": op.name,
                                  "thingGroupProperties": self._group_props(op, merge=None)}
        if op.params.get("parent"):
            kwargs["parentGroupName"] = op.params["parent"]
        try:
            response = self.caller.call("create_thing_group", **kwargs)
        except Exception as exc:
            if _code(exc) != _EXISTS:
                raise
            self._thing_group_update(op)  # exists with other properties: converge
            return
        with self._lock:
            self._group_arns[op.name] = response["thingGroupArn"]

    def _thing_group_update(self, op: SyncOp) -> None:
        self.caller.call("update_thing_group", thingGroupName=op.name,
                         thingGroupProperties=self._group_props(op, merge=False))

    def _thing_group_delete(self, op: SyncOp) -> None:
        self._call("delete_thing_group", ok=frozenset({_NOT_FOUND}), thingGroupName=op.name)

    # -- policies ----------------------------------------------------------------------------
    def _policy_matches(self, name: str, document: str) -> bool:
        current = self.caller.call("get_policy", policyName=name)
        return normalize_document(current["policyDocument"]) == document

    def _policy_create(self, op: SyncOp) -> None:
        document = op.params["document"]
        try:
            self.caller.call("create_policy", policyName=op.name, policyDocument=document)
        except Exception as exc:
            if _code(exc) != _EXISTS:
                raise
            if op.params.get("additive"):  # a restore never replaces a policy's current version
                return
            self._policy_update(op)

    def _policy_update(self, op: SyncOp) -> None:
        name, document = op.name, op.params["document"]
        if self._policy_matches(name, document):  # replayed after a crash: no second version
            return

        def create_version() -> None:
            self.caller.call("create_policy_version", verify=lambda: self._policy_matches(name, document),
                             policyName=name, policyDocument=document, setAsDefault=True)

        try:
            create_version()
        except Exception as exc:
            if _code(exc) != "VersionsLimitExceededException":
                raise
            versions = self.caller.call("list_policy_versions", policyName=name)["policyVersions"]
            old = sorted((v for v in versions if not v.get("isDefaultVersion")),
                         key=lambda v: int(v["versionId"]))
            if not old:
                raise
            self._call("delete_policy_version", ok=frozenset({_NOT_FOUND}), policyName=name,
                       policyVersionId=old[0]["versionId"])
            create_version()

    def _policy_delete(self, op: SyncOp) -> None:
        listed = self._call("list_policy_versions", ok=frozenset({_NOT_FOUND}), policyName=op.name)
        if listed is None:
            return
        for v in listed.get("policyVersions", []):
            if not v.get("isDefaultVersion"):
                self._call("delete_policy_version", ok=frozenset({_NOT_FOUND}), policyName=op.name,
                           policyVersionId=v["versionId"])
        self._call("delete_policy", ok=frozenset({_NOT_FOUND}), policyName=op.name)

    def _policy_version_delete(self, op: SyncOp) -> None:
        """A version the source no longer has. AWS refuses to delete a policy's default version
        (the plan deletes a replaced default only after its successor is the default): such a
        refusal is reported, never worked around."""
        self._call("delete_policy_version", ok=frozenset({_NOT_FOUND}), policyName=op.params["policy"],
                   policyVersionId=op.params["version_id"])

    # -- certificates ------------------------------------------------------------------------
    def _certificate_create(self, op: SyncOp) -> None:
        status = op.params["status"]
        pem = op.params.get("pem")
        if not pem and self.pem_source is not None:
            pem = self.pem_source(op.name)  # fetched from the source now: fetching overlaps writing
        if not pem:
            raise _OpRejected("NoCertificatePem", f"the PEM of certificate {op.name} is not available")
        try:
            local_id = certificate_id(pem)  # the id AWS will give it: SHA-256 of the DER
        except InputRejected as exc:
            raise _OpRejected("InvalidCertificatePem", exc.message) from None
        if local_id != op.name:
            raise _OpRejected("CertificateIdMismatch", f"the PEM's id is {local_id}, not {op.name}; not registered")
        try:
            response = self.caller.call("register_certificate_without_ca", certificatePem=pem, status=status)
        except Exception as exc:
            if _code(exc) != _EXISTS:
                raise
            d = self.caller.call("describe_certificate", certificateId=op.name)["certificateDescription"]
            with self._lock:
                self._cert_arns[op.name] = d["certificateArn"]
            if op.params.get("additive"):  # a restore never changes a certificate that exists
                return
            if d["status"] != status and d["status"] not in ("REVOKED", "PENDING_TRANSFER"):
                self.caller.call("update_certificate", certificateId=op.name, newStatus=status)
            return
        if response["certificateId"] != op.name:
            raise _OpRejected("CertificateIdMismatch",
                              f"registered as {response['certificateId']}, expected {op.name}")
        with self._lock:
            self._cert_arns[op.name] = response["certificateArn"]

    def _certificate_update(self, op: SyncOp) -> None:
        self.caller.call("update_certificate", certificateId=op.name, newStatus=op.params["status"])

    def _certificate_delete(self, op: SyncOp) -> None:
        if op.params.get("status") == "ACTIVE":
            if self._call("update_certificate", ok=frozenset({_NOT_FOUND}), certificateId=op.name,
                          newStatus="INACTIVE") is None:
                return
        self._call("delete_certificate", ok=frozenset({_NOT_FOUND}), certificateId=op.name)

    # -- things ------------------------------------------------------------------------------
    def _thing_create(self, op: SyncOp) -> None:
        kwargs: dict[str, Any] = {"thingName": op.name,
                                  "attributePayload": {"attributes": dict(op.params["attributes"])}}
        if op.params.get("thing_type"):
            kwargs["thingTypeName"] = op.params["thing_type"]
        try:
            self.caller.call("create_thing", **kwargs)
        except Exception as exc:
            if _code(exc) != _EXISTS:
                raise
            remove_type = not op.params.get("thing_type")
            self._thing_update(replace(op, params={**op.params, "remove_type": remove_type}))

    def _thing_update(self, op: SyncOp) -> None:
        kwargs: dict[str, Any] = {
            "thingName": op.name,
            "attributePayload": {"attributes": dict(op.params["attributes"]), "merge": False},
        }
        if op.params.get("thing_type"):
            kwargs["thingTypeName"] = op.params["thing_type"]
        elif op.params.get("remove_type"):
            kwargs["removeThingType"] = True
        self.caller.call("update_thing", **kwargs)

    def _thing_delete(self, op: SyncOp) -> None:
        self._call("delete_thing", ok=frozenset({_NOT_FOUND}), thingName=op.name)

    # -- relations ---------------------------------------------------------------------------
    def _group_membership_create(self, op: SyncOp) -> None:
        self.caller.call("add_thing_to_thing_group", thingGroupName=op.params["group"],
                         thingName=op.params["thing"])

    def _group_membership_delete(self, op: SyncOp) -> None:
        self._call("remove_thing_from_thing_group", ok=frozenset({_NOT_FOUND}),
                   thingGroupName=op.params["group"], thingName=op.params["thing"])

    def _thing_principal_create(self, op: SyncOp) -> None:
        self.caller.call("attach_thing_principal", thingName=op.params["thing"],
                         principal=self.cert_arn(op.params["certificate_id"]))

    def _thing_principal_delete(self, op: SyncOp) -> None:
        try:
            arn = self.cert_arn(op.params["certificate_id"])
        except Exception as exc:
            if _code(exc) == _NOT_FOUND:
                return
            raise
        self._call("detach_thing_principal", ok=frozenset({_NOT_FOUND}), thingName=op.params["thing"],
                   principal=arn)

    def _policy_attachment_create(self, op: SyncOp) -> None:
        self.caller.call("attach_policy", policyName=op.params["policy"],
                         target=self.target_arn(op.params["target_kind"], op.params["target"]))

    def _policy_attachment_delete(self, op: SyncOp) -> None:
        try:
            arn = self.target_arn(op.params["target_kind"], op.params["target"])
        except Exception as exc:
            if _code(exc) == _NOT_FOUND:
                return
            raise
        self._call("detach_policy", ok=frozenset({_NOT_FOUND}), policyName=op.params["policy"], target=arn)


FEED_MAX = 5000  # operations an OpFeed holds before the producer waits (a few MB; a chunk brings ~1-2 per thing)


class FeedStopped(Exception):
    """The apply that takes from an `OpFeed` has stopped (finished, failed or never started):
    nothing more will be taken, so `put` refuses instead of waiting for room forever."""


class OpFeed:
    """Operations that join a running `apply_sync` (planned while it runs: the second stage of an
    overlapped sync). Their dependencies may name operations of the plan: a dependency already
    applied is satisfied, one that failed blocks them. `close()` says nothing more will come.

    Bounded (issue 22): it holds at most `maxsize` operations; `put` waits for room (back-pressure
    on the producer, the reader thread), a batch larger than the room going in as room is made.
    `stop()` (the apply's end, whatever ended it) drops what is held and makes every `put`, a
    waiting one too, raise `FeedStopped`: a producer never waits for a consumer that is gone."""

    def __init__(self, maxsize: int = FEED_MAX) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.high_water = 0  # the most operations held at once
        self._items: list[SyncOp] = []
        self._closed = False
        self._stopped = False
        self._cond = threading.Condition()

    def put(self, ops: Iterable[SyncOp]) -> None:
        batch = ops if isinstance(ops, (list, tuple)) else list(ops)
        i = 0
        with self._cond:
            while True:
                while not self._stopped and len(self._items) >= self.maxsize:
                    self._cond.wait()  # woken by take() and stop()
                if self._stopped:
                    raise FeedStopped("the apply taking these operations has stopped")
                if i >= len(batch):
                    return
                room = self.maxsize - len(self._items)
                self._items.extend(batch[i:i + room])
                i += room
                self.high_water = max(self.high_water, len(self._items))
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stop(self) -> None:
        """The consumer is gone: drop what is held; `put` raises `FeedStopped` from now on."""
        with self._cond:
            self._stopped = True
            self._items = []
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._items)

    def take(self, timeout: float | None = None) -> tuple[list[SyncOp], bool]:
        """What arrived (waiting up to `timeout` for something), and whether the feed is closed."""
        with self._cond:
            if not self._items and not self._closed and timeout:
                self._cond.wait(timeout)
            items, self._items = self._items, []
            if items:
                self._cond.notify_all()  # room for a waiting producer
            return items, self._closed


def apply_sync(plan: SyncPlan, dst_client: Any, limiter: RateLimiter | AdaptiveLimiter | None = None,
               checkpoint: Checkpoint | None = None, progress: Progress | None = None, *,
               concurrency: int = 1, caller: Caller | None = None,
               read_limiter: RateLimiter | None = None, retry: RetryPolicy | None = None,
               clock: Callable[[], float] = time.monotonic, data_caller: Caller | None = None,
               pem_source: PemSource | None = None, final: bool = True,
               feed: OpFeed | None = None, spilled: SpillTable | None = None,
               on_done: Callable[[SyncOp, bool], None] | None = None) -> SyncReport:
    """Apply `plan` to the destination. Raises only when the run cannot go on (retries exhausted,
    no credentials, a bug); per-operation refusals are collected in `SyncReport.errors`.

    `data_caller` (the destination's iot-data plane) applies shadow operations; `pem_source`
    fetches a certificate's PEM from the source when the plan does not carry it; `final=False`
    keeps the checkpoint for a further pass instead of completing it; `feed` brings operations
    planned while this runs (progress is held back until the feed closes: the total never moves).
    `on_done(op, applied)` (optional, called on the scheduler's thread: keep it short) is told of
    every operation as it is resolved: applied or skipped from the checkpoint (True), failed or
    blocked by a failed dependency (False).

    The operations live in a spill table (`orchestrator.registry.spill`), not in the scheduler's
    memory: `spilled` (the caller's, which may already hold operations: they are applied too, and
    the caller can read them back afterwards) or a private one (in memory up to `SMALL_PLAN`
    operations, else a temporary file), removed when the run ends. The scheduler holds at most
    `WINDOW` operations per API at a time, loaded in plan order."""
    own = None
    try:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InputRejected(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
        if spilled is None:
            own = SpillStore(memory=feed is None and len(plan.ops) <= SMALL_PLAN)
            spilled = own.table("ops")
        return _apply(plan, dst_client, limiter, checkpoint, progress, concurrency=concurrency, caller=caller,
                      read_limiter=read_limiter, retry=retry, clock=clock, data_caller=data_caller,
                      pem_source=pem_source, final=final, feed=feed, spilled=spilled, on_done=on_done)
    finally:
        if feed is not None:
            feed.stop()  # nothing more is taken: a producer waiting for room must not wait forever
        if own is not None:
            own.close()


def spill_ops(table: SpillTable, ops: Iterable[SyncOp]) -> int:
    """Append operations to a spill table (keyed by id, grouped by API; a duplicate id is ignored).
    A row holds the operation's fields (not its cached id and key: they are computed again)."""
    return table.add((op.id, op.api, _row(op)) for op in ops)


def _row(op: SyncOp) -> tuple[Any, ...]:
    """A spill table's row of `op` (`_op` reads it back)."""
    return (op.kind.value, op.action.value, op.name, dict(op.params), op.deps, op.phase, op.step, op.tightens)


def _op(row: tuple[Any, ...]) -> SyncOp:
    kind, action, name, params, deps, phase, step, tightens = row
    return SyncOp(Kind(kind), Action(action), name, params, tuple(deps), phase, step, tightens)


def spilled_ops(table: SpillTable) -> Iterator[SyncOp]:
    """The operations of a spill table in plan order, read a page at a time."""
    for row in table.values():
        yield _op(row)


def _apply(plan: SyncPlan, dst_client: Any, limiter: RateLimiter | AdaptiveLimiter | None,
           checkpoint: Checkpoint | None, progress: Progress | None, *, concurrency: int, caller: Caller | None,
           read_limiter: RateLimiter | None, retry: RetryPolicy | None, clock: Callable[[], float],
           data_caller: Caller | None, pem_source: PemSource | None, final: bool, feed: OpFeed | None,
           spilled: SpillTable, on_done: Callable[[SyncOp, bool], None] | None = None) -> SyncReport:
    if caller is None:
        if isinstance(limiter, AdaptiveLimiter):
            caller = Caller(dst_client, limits=limiter, retry=retry)
        else:
            caller = Caller(dst_client, writes=limiter, reads=read_limiter, retry=retry)
    executor = _Executor(caller, plan, data_caller=data_caller, pem_source=pem_source,
                         arns=spilled.store.table("cert_arns"))
    started = clock()
    before = caller.stats.counts()
    data_before = data_caller.stats.counts() if data_caller is not None else None
    resumed = checkpoint.resumed if checkpoint is not None else False

    spill_ops(spilled, plan.ops)
    if checkpoint is not None:
        checkpoint.bind(op.key for op in spilled_ops(spilled))  # marks of another plan are not trusted
    total = len(spilled)

    # bounded state: only the operations loaded from the spill table (at most WINDOW per API)
    loaded: dict[str, SyncOp] = {}
    seq_of: dict[str, int] = {}
    waiting: dict[str, int] = {}  # loaded op id -> dependencies not yet applied
    dependents: dict[str, list[str]] = defaultdict(list)  # op id -> loaded ops waiting for it
    per_api: Counter[str] = Counter()  # loaded, unfinished operations per API
    cursor: dict[str, int] = {}  # API -> the last seq loaded
    exhausted: dict[str, bool] = {}
    apis = set(spilled.groups())
    failed: set[str] = set()  # ids of operations that failed or were blocked (their dependents are blocked)
    ready: dict[str, list[tuple[int, str]]] = defaultdict(list)  # api -> heap of (plan order, op id)

    applied: Counter[tuple[Kind, Action]] = Counter()
    errors: list[OpError] = []
    blocked: set[str] = set()
    feed_open = feed is not None
    finished = 0
    skipped = 0
    fatal: BaseException | None = None
    inflight: dict[Future[None], SyncOp] = {}
    inflight_per_api: Counter[str] = Counter()

    def unload(op_id: str, ok: bool) -> SyncOp:
        op = loaded.pop(op_id)
        seq_of.pop(op_id, None)
        waiting.pop(op_id, None)
        per_api[op.api] -= 1
        if on_done is not None:
            on_done(op, ok)
        return op

    def applied_before(dep: str, where: tuple[str, int]) -> bool:
        """A dependency in the plan that is neither loaded nor failed was applied (or skipped) if it
        was loaded already: operations are loaded in plan order per API and leave when finished."""
        return dep not in loaded and dep not in failed and where[1] <= cursor.get(where[0], 0)

    def load(api: str, limit: int) -> None:
        nonlocal finished
        page = spilled.page(group=api, after=cursor.get(api, 0), limit=limit)
        exhausted[api] = len(page) < limit
        if not page:
            return
        rows = [(seq, op_id, _op(row)) for seq, op_id, row in page]
        where = spilled.locate(d for _seq, _id, op in rows for d in op.deps)  # deps outside the plan: ignored
        for seq, op_id, op in rows:
            deps = [d for d in op.deps if d in where]
            if any(d in failed for d in deps):
                blocked.add(op_id)  # a dependency failed (or was blocked) before this was loaded
                failed.add(op_id)
                if on_done is not None:
                    on_done(op, False)
                finished += 1 + block(op_id)  # and what was loaded before it and waits for it
                continue
            loaded[op_id], seq_of[op_id] = op, seq
            per_api[api] += 1
            pending = [d for d in deps if not applied_before(d, where[d])]
            waiting[op_id] = len(pending)
            for dep in pending:
                dependents[dep].append(op_id)
            if not pending:
                heapq.heappush(ready[api], (seq, op_id))
        cursor[api] = page[-1][0]  # after the loop: a dependency later in this page is not applied yet

    def refill() -> None:
        for api in sorted(apis):
            if not exhausted.get(api) and per_api[api] < WINDOW // 2:
                load(api, WINDOW - per_api[api])

    def tick() -> None:
        if progress is not None and not feed_open:
            progress(finished, total)

    def join(new: list[SyncOp]) -> None:
        nonlocal total
        if not new:
            return
        total += spill_ops(spilled, new)
        for op in new:
            apis.add(op.api)
            exhausted[op.api] = False

    def release(op_id: str) -> None:
        for child in dependents.pop(op_id, ()):
            if child in waiting:
                waiting[child] -= 1
                if not waiting[child]:
                    heapq.heappush(ready[loaded[child].api], (seq_of[child], child))

    def block(op_id: str) -> int:
        count = 0
        for child in dependents.pop(op_id, ()):
            if child not in blocked and child in loaded:
                blocked.add(child)
                failed.add(child)
                unload(child, False)
                count += 1 + block(child)
        return count

    def score(api: str) -> tuple[float, int]:
        owner = data_caller if data_caller is not None and api in _DATA_APIS else caller
        lim, rate = owner.limiter_for(api), owner.rate_for(api)
        wait_s = lim.peek(api) + inflight_per_api[api] / rate if lim and rate else float(inflight_per_api[api])
        return wait_s, ready[api][0][0]

    tick()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="registry-sync")
    try:
        while True:
            if fatal is None:
                refill()
            while fatal is None and len(inflight) < concurrency and any(ready.values()):
                api = min((a for a, q in ready.items() if q), key=score)
                op = loaded[heapq.heappop(ready[api])[1]]
                if checkpoint is not None and checkpoint.is_done(op.key):
                    skipped += 1
                    finished += 1
                    unload(op.id, True)
                    tick()
                    release(op.id)
                    continue
                inflight[pool.submit(executor.run, op)] = op
                inflight_per_api[op.api] += 1
            if feed is not None and feed_open and fatal is None:
                new, closed = feed.take(timeout=None if inflight or any(ready.values()) else 0.2)
                join(new)
                if closed:
                    feed_open = False
                    if progress is not None:
                        progress(0, total)
                    tick()
                if new or closed:
                    continue
            if not inflight:
                if fatal is None and not any(ready.values()):
                    behind = [a for a in sorted(apis) if not exhausted.get(a)]
                    if behind:  # everything loaded waits: load further (a dependency later in the plan)
                        for api in behind:
                            load(api, WINDOW)
                        continue
                if fatal is None and (feed_open or any(ready.values())):
                    continue
                break
            done, _ = wait(list(inflight), timeout=0.1 if feed_open else None, return_when=FIRST_COMPLETED)
            for future in done:
                op = inflight.pop(future)
                inflight_per_api[op.api] -= 1
                exc = future.exception()
                if exc is None:
                    applied[(op.kind, op.action)] += 1
                    if checkpoint is not None:
                        checkpoint.mark_done(op.key)
                    finished += 1
                    unload(op.id, True)
                    release(op.id)
                elif isinstance(exc, Exception) and _is_client_error(exc) \
                        and not isinstance(exc, OrchestrateError):
                    code = getattr(exc, "code", None) or _code(exc) or type(exc).__name__
                    message = getattr(exc, "message", None) or str(exc)
                    errors.append(OpError(op.id, code, " ".join(str(message).split())))
                    unload(op.id, False)
                    failed.add(op.id)
                    newly_blocked = block(op.id)
                    finished += 1 + newly_blocked
                else:
                    fatal = fatal or exc
                    continue
                tick()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if checkpoint is not None:
            if final and fatal is None and not errors and not blocked and finished == total:
                checkpoint.complete()
            else:
                checkpoint.close()  # the journal part is flushed and closed; the run can resume
    if fatal is not None:
        raise fatal

    after = caller.stats.counts()
    by_api = counts_delta(after, before)
    if data_caller is not None and data_before is not None and data_caller is not caller:
        for api, n in counts_delta(data_caller.stats.counts(), data_before).items():
            by_api[api] = by_api.get(api, 0) + n
    counts = zero_counts()
    for (kind, action), n in applied.items():
        counts[kind.value][action.value] = n
    limiter_used = caller.writes
    rate = limiter_used.rate if limiter_used else None
    return SyncReport(
        src_region=plan.src_region, dst_region=plan.dst_region, prune=plan.prune,
        planned=total, applied=sum(applied.values()), counts=counts,
        write_calls=sum(n for api, n in by_api.items() if is_write(api)),
        read_calls=sum(n for api, n in by_api.items() if not is_write(api)), calls_by_api=by_api,
        retries=after.retries - before.retries, throttled=after.throttled - before.throttled,
        duration_s=clock() - started, concurrency=concurrency,
        rate=rate,
        skipped_from_checkpoint=skipped, blocked=len(blocked), errors=tuple(errors),
        unapplied=frozenset(blocked) | {e.op for e in errors},
        warnings=plan.warnings, rewritten_policies=plan.rewritten_policies, resumed=resumed,
        shadows_kept=plan.shadows_kept, shadow_writes=dict(executor.shadow_writes),
    )


# -- one thing, one shadow: entry points for event-driven replication -----------------------------

def apply_shadow(shadow: Shadow, data_caller: Caller, *, current: Shadow | None = None,
                 read_current: bool = True) -> bool:
    """Make the destination's shadow (`shadow.thing`, `shadow.name`) hold `shadow`'s desired and
    reported state; returns whether anything was written. The destination's shadow is read first
    (one `get_thing_shadow`) unless `read_current=False`, when `current` is taken as it. An equal
    shadow costs no write; keys the source no longer has are deleted (written as null). The thing
    must exist in the destination (AWS refuses shadows of unknown things). A section the
    destination wrote after the source last did is kept, as in a sync (`plan.newer_in_destination`)."""
    from orchestrator.registry.snapshot import read_shadows
    from orchestrator.registry.sync.plan import newer_in_destination, shadow_patch

    if read_current:
        found = read_shadows(data_caller, [shadow.thing], names={shadow.thing: [shadow.name]})
        current = found[0] if found else None
    if current is not None:
        shadow, _ = newer_in_destination(shadow, current)
    if current is not None and (current.desired, current.reported) == (shadow.desired, shadow.reported):
        return False
    if current is None and shadow.desired is None and shadow.reported is None:
        return False
    op = SyncOp(Kind.SHADOW, Action.UPDATE, shadow.key,
                {"thing": shadow.thing, "shadow": shadow.name, "document": shadow_patch(shadow, current)})
    _Executor(data_caller, SyncPlan("", "", False, ()), data_caller=data_caller).run(op)
    return True


def apply_thing(src: RegistrySnapshot, dst_caller: Caller, *, data_caller: Caller | None = None,
                pem_source: PemSource | None = None, concurrency: int = 1) -> SyncReport:
    """Apply the changes of one thing (or a few) given the source's data, without reading whole
    registries: `src` holds the things, their certificates (with PEMs, or `pem_source`), their
    principals, the policies and policy targets of those certificates, their groups and types, and
    (with `data_caller`) their shadows. Only the destination's state of exactly those is read
    (describe_thing, list_thing_groups_for_thing, list_thing_principals, describe_certificate,
    get_policy, list_targets_for_policy, describe_thing_group/type, get_thing_shadow), then the
    same planner and executor as a full sync apply the difference. Nothing is deleted."""
    from orchestrator.registry.snapshot import (
        Certificate,
        Policy,
        PolicyTarget,
        Thing,
        ThingGroup,
        ThingPrincipal,
        ThingType,
        read_principals,
        read_shadows,
    )
    from orchestrator.registry.sync.plan import plan_sync

    def get(api: str, **kwargs: Any) -> Any:
        try:
            return dst_caller.call(api, **kwargs)
        except Exception as exc:
            if _code(exc) == _NOT_FOUND:
                return None
            raise

    names = [t.name for t in src.things]
    things = []
    for name in names:
        d = get("describe_thing", thingName=name)
        if d is not None:
            member_of = tuple(sorted(g["groupName"] for g in dst_caller.pages("list_thing_groups_for_thing",
                                                                                thingName=name)))
            things.append(Thing(name, d.get("thingTypeName") or None, dict(d.get("attributes") or {}), member_of,
                                d.get("version")))
    principals, _ = read_principals(dst_caller, [t.name for t in things])
    certs, arns = [], {}
    for c in src.certificates:
        d = get("describe_certificate", certificateId=c.id)
        if d is not None:
            desc = d["certificateDescription"]
            certs.append(Certificate(c.id, desc["status"], arn=desc.get("certificateArn")))
            arns[c.id] = desc.get("certificateArn")
    policies, targets = [], []
    for p in src.policies:
        d = get("get_policy", policyName=p.name)
        if d is not None:
            policies.append(Policy(p.name, normalize_document(d["policyDocument"])))
            for arn in dst_caller.pages("list_targets_for_policy", policyName=p.name):
                cert_id = arn.rsplit(":cert/", 1)[1] if ":cert/" in arn else None
                if cert_id is not None:
                    targets.append(PolicyTarget(p.name, TargetKind.CERTIFICATE, cert_id))
    groups = []
    for g in src.thing_groups:
        d = get("describe_thing_group", thingGroupName=g.name)
        if d is not None:
            props = d.get("thingGroupProperties") or {}
            groups.append(ThingGroup(g.name, (d.get("thingGroupMetadata") or {}).get("parentGroupName"),
                                     props.get("thingGroupDescription") or None,
                                     dict((props.get("attributePayload") or {}).get("attributes") or {}),
                                     d.get("queryString"), d.get("thingGroupArn")))
    types = []
    for t in src.thing_types:
        d = get("describe_thing_type", thingTypeName=t.name)
        if d is not None:
            props = d.get("thingTypeProperties") or {}
            types.append(ThingType(t.name, props.get("thingTypeDescription") or None,
                                   tuple(props.get("searchableAttributes") or ()),
                                   bool((d.get("thingTypeMetadata") or {}).get("deprecated"))))
    shadows: tuple[Shadow, ...] = ()
    if data_caller is not None and src.shadows:
        wanted: dict[str, set[str]] = {}
        for sh in src.shadows:
            wanted.setdefault(sh.thing, set()).add(sh.name)
        shadows = read_shadows(data_caller, sorted(n for n in wanted if n in {t.name for t in things}),
                               names=wanted)
    dst = RegistrySnapshot(
        region=dst_caller.region, thing_types=tuple(types), thing_groups=tuple(groups), things=tuple(things),
        policies=tuple(policies), certificates=tuple(certs),
        thing_principals=tuple(sorted(a for a in principals if isinstance(a, ThingPrincipal))),
        policy_targets=tuple(sorted(targets)), shadows=shadows)
    if data_caller is None:
        src = replace(src, shadows=())
    plan = plan_sync(src, dst, False, fetch_pems=pem_source is not None)
    return apply_sync(plan, dst_caller.client, caller=dst_caller, data_caller=data_caller, pem_source=pem_source,
                      concurrency=concurrency)
