"""MQTT retained messages across regions: the configured topic prefixes, read, compared, carried, backed up.

IoT Core keeps retained messages per account and Region: a device that fails over and subscribes to
its retained configuration topic in the secondary gets nothing unless someone put it there. The
topology names which topics matter (`registry.retained_topics`: literal topic prefixes); only those
are read, compared, written or cleared, never any other retained message of the account.

    read_retained(caller, prefixes)        ListRetainedMessages (paged) -> GetRetainedMessage per topic in scope
    plan_retained(src, dst, prune=...)     what makes dst equal to src (create / update / delete with prune)
    apply_retained(ops, src, caller)       Publish(retain=true) per op (an empty payload clears), then read back
    sync_retained(src, dst, prefixes)      list -> plan -> apply -> read back: a `plane.PlaneReport`
    compare_retained(a, b)                 one `verify.KindDiff` (registry verify)

An unchanged pass need not read payloads: with a `record` (a file beside the sync's version record),
a topic whose listing in both regions (lastModifiedTime, payloadSize, QoS) is what it was when the
last run left it verified equal is not read again (`trust=False`, as after a failed verification or
with --full, reads everything). A message already equal in the destination (payload, QoS, MQTT 5
user properties) is not published again: a sync of two equal regions writes nothing, so nothing
echoes between regions. Deleting (a topic the source no longer retains) happens only with `prune`,
within the prune guard's budget and after its confirmation, as for every other kind. The report is
`ok` only when every message written reads back equal. Payloads never reach a report, a log line
or --json: only topics and counts do.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import GuardRefused, InputRejected
from orchestrator.registry.calls import error_code
from orchestrator.registry.plane import PlaneAction, PlaneOp, PlaneReport

KIND = "retained_message"
MAX_PREFIXES = 50  # a topology names a few configuration trees, never a topic per device
MAX_TOPIC_BYTES = 256  # IoT Core topic size quota
LIST_PAGE = 200  # ListRetainedMessages maxResults ceiling (API reference)
RESERVED = "$aws/"  # AWS's own topics (shadows, jobs, events): not the user's retained configuration


def normalize_prefixes(raw: Any, *, source: str) -> tuple[str, ...]:
    """`registry.retained_topics` of a topology: a list of literal topic prefixes (exit 2 if bad)."""
    label = f"{source}: registry.retained_topics"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InputRejected(f"{label}: must be a list of topic prefixes, e.g. [config/, fleet/settings/]")
    if len(raw) > MAX_PREFIXES:
        raise InputRejected(f"{label}: {len(raw)} prefixes; at most {MAX_PREFIXES}")
    out: list[str] = []
    for i, value in enumerate(raw):
        where = f"{label}[{i}]"
        if not isinstance(value, str) or not value:
            raise InputRejected(f"{where}: must be a non-empty topic prefix (text)")
        shown = value[:60]
        if "+" in value or "#" in value:
            raise InputRejected(f"{where}: {shown!r} has an MQTT wildcard; give the literal prefix (config/ "
                                "carries config/a and config/b/c)")
        # the prefix becomes the IAM resource `topic/<prefix>*` (programs/policies.py): in an ARN, IAM
        # reads `*` and `?` as wildcards and `${...}` as a policy variable ("IAM JSON policy elements:
        # Resource": "You can use wildcard characters (* and ?) within any ARN segment"; "IAM policy
        # elements: Variables and tags"), so any of them would widen the grant beyond the literal prefix
        if "*" in value or "?" in value or "${" in value:
            raise InputRejected(f"{where}: {shown!r} has an IAM wildcard or policy variable (* ? ${{); the prefix "
                                "is granted as topic/<prefix>*, so give the literal prefix")
        if not value.endswith("/"):
            raise InputRejected(f"{where}: {shown!r} must end with / (a topic tree: {shown.rstrip('/')}/ ; "
                                f"without it the grant topic/{shown}* also covers {shown}-other/...)")
        if any(ord(c) < 32 for c in value):
            raise InputRejected(f"{where}: {shown!r} has a control character")
        if len(value.encode("utf-8")) > MAX_TOPIC_BYTES:
            raise InputRejected(f"{where}: longer than a topic may be ({MAX_TOPIC_BYTES} bytes)")
        if value.startswith(RESERVED):
            raise InputRejected(f"{where}: {shown!r} is a reserved AWS topic; shadows are carried by the shadow sync")
        if value in out:
            raise InputRejected(f"{where}: {shown!r} is listed twice")
        out.append(value)
    return tuple(out)


def in_scope(topic: str, prefixes: Iterable[str]) -> bool:
    return any(topic.startswith(p) for p in prefixes)


@dataclass(frozen=True)
class RetainedMessage:
    """One retained message: what a subscriber receives (payload, QoS, MQTT 5 user properties).
    The repr names the topic and size only: payloads may hold configuration secrets."""

    topic: str
    payload: bytes
    qos: int = 0
    user_properties: bytes | None = None

    def __repr__(self) -> str:
        return f"RetainedMessage({self.topic!r}, {len(self.payload)} bytes, qos={self.qos})"

    def same(self, other: RetainedMessage) -> bool:
        """Equal for a subscriber: payload, QoS and user properties, the latter parsed and without
        the replication function's own `orchestrate-replica` token (`user_properties_of`)."""
        return (self.payload, self.qos, user_properties_of(self.user_properties)) == \
            (other.payload, other.qos, user_properties_of(other.user_properties))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"topic": self.topic, "payload": base64.b64encode(self.payload).decode(),
                               "qos": self.qos}
        if self.user_properties:
            out["user_properties"] = base64.b64encode(self.user_properties).decode()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetainedMessage:
        props = data.get("user_properties")
        qos = int(data.get("qos", 0))
        if qos not in (0, 1):
            raise ValueError(f"qos {qos} of {data.get('topic')!r} is not 0 or 1")
        payload = base64.b64decode(str(data["payload"]), validate=True)
        if not payload:
            raise ValueError(f"retained message {data.get('topic')!r} has an empty payload")
        return cls(str(data["topic"]), payload, qos, base64.b64decode(str(props), validate=True) if props else None)


def user_properties_of(raw: bytes | None, *, replica: bool = False) -> tuple[tuple[str, str], ...]:
    """A message's MQTT 5 user properties (GetRetainedMessage's `userProperties`: JSON, an array of
    one-key objects, in order) as pairs; without `replica`, the continuous replication's own token
    (`events.REPLICA_PROPERTY`) is left out: a republished message equals its source. Unreadable
    bytes are one opaque pair, so they still compare."""
    from orchestrator.registry.events import REPLICA_PROPERTY

    if not raw:
        return ()
    try:
        rows = json.loads(raw)
        pairs = tuple((str(k), str(v)) for row in rows for k, v in dict(row).items())
    except (ValueError, TypeError, AttributeError):
        return (("", raw.hex()),)
    return pairs if replica else tuple(p for p in pairs if p[0] != REPLICA_PROPERTY)


def with_user_property(message: RetainedMessage, key: str, value: str) -> RetainedMessage:
    """The message with user property `key` set to `value` (any earlier values of `key` dropped)."""
    pairs = [p for p in user_properties_of(message.user_properties, replica=True) if p[0] != key]
    pairs.append((key, value))
    return RetainedMessage(message.topic, message.payload, message.qos,
                           json.dumps([{k: v} for k, v in pairs], separators=(",", ":")).encode())


@dataclass(frozen=True)
class RetainedSnapshot:
    """The retained messages of one region under the configured prefixes."""

    region: str
    prefixes: tuple[str, ...]
    messages: Mapping[str, RetainedMessage]

    def digest(self) -> str:
        """SHA-256 over topics and contents (the same messages give the same digest in any region)."""
        h = hashlib.sha256()
        for topic in sorted(self.messages):
            h.update(json.dumps(self.messages[topic].to_json(), sort_keys=True).encode() + b"\n")
        return h.hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "prefixes": list(self.prefixes), "digest": self.digest(),
                "messages": [self.messages[t].to_json() for t in sorted(self.messages)]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetainedSnapshot:
        """A snapshot read back from a backup; every message under its prefixes, its digest matching."""
        prefixes = tuple(str(p) for p in data.get("prefixes") or ())
        messages: dict[str, RetainedMessage] = {}
        for row in data.get("messages") or []:
            m = RetainedMessage.from_json(row)
            if not in_scope(m.topic, prefixes):
                raise ValueError(f"retained message {m.topic!r} is outside the backup's prefixes")
            messages[m.topic] = m
        snap = cls(str(data["region"]), prefixes, messages)
        if data.get("digest") != snap.digest():
            raise ValueError("the retained messages do not match their digest")
        return snap


def read_retained(caller: Any, prefixes: Sequence[str]) -> RetainedSnapshot:
    """Every retained message of the caller's region (an iot-data `Caller`) under `prefixes`: one
    ListRetainedMessages page per 200 topics, one GetRetainedMessage per topic in scope. A topic
    cleared between the listing and its read is not there."""
    messages: dict[str, RetainedMessage] = {}
    if prefixes:
        size = min(int(getattr(caller, "page_size", LIST_PAGE)), LIST_PAGE)
        topics = [row["topic"] for row in caller.pages("list_retained_messages", maxResults=size)
                  if in_scope(row["topic"], prefixes)]
        for topic in topics:
            got = _get(caller, topic)
            if got is not None:
                messages[topic] = got
    return RetainedSnapshot(caller.region, tuple(prefixes), messages)


def get_retained(caller: Any, topic: str) -> tuple[RetainedMessage | None, int]:
    """The topic's retained message in the caller's region (None: it has none) and its
    lastModifiedTime (epoch ms; 0 when there is none)."""
    meta: dict[str, Meta] = {}
    found = _get(caller, topic, meta=meta)
    return found, meta[topic][0] if topic in meta else 0


def _get(caller: Any, topic: str, *, meta: dict[str, Meta] | None = None) -> RetainedMessage | None:
    """The topic's retained message (None: it has none); `meta` receives its listing metadata."""
    try:
        got = caller.call("get_retained_message", topic=topic)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    payload = got.get("payload") or b""
    if hasattr(payload, "read"):
        payload = payload.read()
    props = got.get("userProperties") or None
    qos = int(got.get("qos") or 0)
    if meta is not None:
        meta[topic] = (int(got.get("lastModifiedTime") or 0), len(payload), qos)
    return RetainedMessage(topic, bytes(payload), qos, bytes(props) if props else None)


def plan_retained(src: RetainedSnapshot, dst: RetainedSnapshot, *, prune: bool = False,
                  additive: bool = False) -> tuple[PlaneOp, ...]:
    """What makes `dst` hold `src`'s messages: create what it lacks, update what differs (not with
    `additive`: a restore leaves what exists as it is), delete what only it has (only with `prune`)."""
    ops: list[PlaneOp] = []
    for topic in sorted(src.messages):
        have = dst.messages.get(topic)
        if have is None:
            ops.append(PlaneOp(KIND, PlaneAction.CREATE, topic))
        elif not additive and not have.same(src.messages[topic]):
            ops.append(PlaneOp(KIND, PlaneAction.UPDATE, topic))
    if prune:
        ops += [PlaneOp(KIND, PlaneAction.DELETE, t) for t in sorted(set(dst.messages) - set(src.messages))]
    return tuple(ops)


def check_prune(ops: Sequence[PlaneOp], dst: RetainedSnapshot, guard: Any | None) -> None:
    """Clearing retained messages goes through the prune guard: its budget over the destination's
    retained messages in scope, then its confirmation (GuardRefused, exit 4, nothing written)."""
    deletions = [op for op in ops if op.action is PlaneAction.DELETE]
    if not deletions:
        return
    if guard is None:
        raise GuardRefused(f"prune would clear {len(deletions)} retained messages in {dst.region} without a guard")
    allowed = guard.budget.limit(len(dst.messages))
    if len(deletions) > allowed:
        raise GuardRefused(f"prune would clear {len(deletions)} retained messages in {dst.region}; the deletion "
                           f"budget is {allowed} (--max-delete {guard.budget}); nothing was cleared",
                           hint="check the source region; raise --max-delete only if this is meant")
    if getattr(guard, "notify", None) is not None:
        for op in deletions:
            guard.notify(f"  clear retained message {op.name}")
    if guard.confirm is None:
        raise GuardRefused(f"prune would clear {len(deletions)} retained messages in {dst.region}; not confirmed, "
                           "nothing was cleared", hint="pass --yes in automation")
    guard.confirm(f"clear {len(deletions)} retained messages in {dst.region}?", dst.region)


def _publish(caller: Any, message: RetainedMessage | None, topic: str) -> None:
    if message is None:  # an empty retained publish clears the topic
        caller.call("publish", topic=topic, payload=b"", qos=0, retain=True)
        return
    extra: dict[str, Any] = {}
    if message.user_properties:
        # botocore JSON-encodes this header's value: hand it the decoded list to send the same bytes
        extra["userProperties"] = json.loads(message.user_properties)
    caller.call("publish", topic=topic, payload=message.payload, qos=message.qos, retain=True, **extra)


def apply_retained(ops: Sequence[PlaneOp], src: RetainedSnapshot, caller: Any, dst_region: str) -> PlaneReport:
    """Publish each op's message retained in the destination (DELETE: an empty retained publish),
    then read every written topic back; what does not read back equal is `unequal`."""
    return _apply(ops, src, caller, dst_region)[0]


def _apply(ops: Sequence[PlaneOp], src: RetainedSnapshot, caller: Any,
           dst_region: str) -> tuple[PlaneReport, dict[str, Meta]]:
    """`apply_retained`, and the listing metadata of every topic written that read back equal."""
    errors: list[tuple[str, str]] = []
    now: dict[str, Meta] = {}
    written: list[PlaneOp] = []
    for op in ops:
        try:
            _publish(caller, None if op.action is PlaneAction.DELETE else src.messages[op.name], op.name)
            written.append(op)
        except Exception as exc:  # one topic's failure is reported; the others still go
            errors.append((op.describe(), f"{error_code(exc) or type(exc).__name__}: {exc}"))
    unequal: list[str] = []
    for op in written:
        want = None if op.action is PlaneAction.DELETE else src.messages[op.name]
        try:
            have = _get(caller, op.name, meta=now)
        except Exception as exc:
            errors.append((f"read back {op.name}", f"{error_code(exc) or type(exc).__name__}: {exc}"))
            continue
        if (want is None) != (have is None) or (want is not None and have is not None and not want.same(have)):
            unequal.append(f"{KIND} {op.name}")
            now.pop(op.name, None)
    return PlaneReport(src.region, dst_region, tuple(ops), len(written), tuple(errors), tuple(unequal)), now


Meta = tuple[int, int, int]  # what a listing says of a message: lastModifiedTime, payloadSize, qos


def record_path(versions: Path) -> Path:
    """Where a pair's retained-message record lives: beside its sync version record."""
    return versions.with_name(versions.name.replace(".versions.json", "") + ".retained.json")


def _listing(caller: Any, prefixes: Sequence[str]) -> dict[str, Meta]:
    size = min(int(getattr(caller, "page_size", LIST_PAGE)), LIST_PAGE)
    return {row["topic"]: (int(row.get("lastModifiedTime") or 0), int(row.get("payloadSize") or 0),
                           int(row.get("qos") or 0))
            for row in caller.pages("list_retained_messages", maxResults=size) if in_scope(row["topic"], prefixes)}


def _load_record(path: Path | None, src: str, dst: str, prefixes: Sequence[str]) -> dict[str, list[int]]:
    """topic -> source and destination listing metadata when the last run left it equal ({}: none,
    unreadable, or of other regions or prefixes)."""
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("from") != src or doc.get("to") != dst or doc.get("prefixes") != list(prefixes):
            return {}
        return {str(t): [int(x) for x in v] for t, v in dict(doc.get("equal") or {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _save_record(path: Path, src: str, dst: str, prefixes: Sequence[str], equal: Mapping[str, list[int]]) -> None:
    from orchestrator.state import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"from": src, "to": dst, "prefixes": list(prefixes),
                                        "equal": dict(sorted(equal.items()))}, separators=(",", ":")))


def sync_retained(src_caller: Any, dst_caller: Any, prefixes: Sequence[str], *, prune: bool = False,
                  guard: Any | None = None, dry_run: bool = False, record: Path | None = None,
                  trust: bool = True) -> PlaneReport:
    """list -> plan -> apply -> read back, for the topics under `prefixes` only. With `record`, the
    topics the last run left equal and whose listings did not change since are not read again, and
    the record is rewritten with what is equal after this run (not on a dry run)."""
    a, b = _listing(src_caller, prefixes), _listing(dst_caller, prefixes)
    known = _load_record(record, src_caller.region, dst_caller.region, prefixes) if trust else {}
    same = {t for t in a if t in b and known.get(t) == [*a[t], *b[t]]}
    src = RetainedSnapshot(src_caller.region, tuple(prefixes),
                           {t: m for t in sorted(set(a) - same) if (m := _get(src_caller, t)) is not None})
    dst = RetainedSnapshot(dst_caller.region, tuple(prefixes),
                           {t: m for t in sorted(set(b) - same) if t in a and (m := _get(dst_caller, t)) is not None})
    ops = plan_retained(src, dst)
    if prune:
        ops += tuple(PlaneOp(KIND, PlaneAction.DELETE, t) for t in sorted(set(b) - set(a)))
    if dry_run:
        return PlaneReport(src.region, dst.region, ops, 0, dry_run=True)
    check_prune(ops, RetainedSnapshot(dst.region, tuple(prefixes), dict.fromkeys(b, _EMPTY)), guard)
    report, now = _apply(ops, src, dst_caller, dst.region)
    if record is not None:
        changed = {op.name for op in ops}
        equal = {t: [*a[t], *b[t]] for t in a if t in b and t not in changed
                 and (t in same or (t in src.messages and t in dst.messages))}
        equal.update({t: [*a[t], *meta] for t, meta in now.items() if t in a})
        _save_record(record, src.region, dst.region, prefixes, equal)
    return report


_EMPTY = RetainedMessage("", b"")


def restore_retained(saved: RetainedSnapshot, caller: Any, *, overwrite: bool = False,
                     dry_run: bool = False) -> PlaneReport:
    """Put a backup's retained messages back: additive (a topic holding another message keeps it)
    unless `overwrite`; never clears anything."""
    dst = read_retained(caller, saved.prefixes)
    ops = plan_retained(saved, dst, additive=not overwrite)
    if dry_run:
        return PlaneReport(saved.region, dst.region, ops, 0, dry_run=True)
    return apply_retained(ops, saved, caller, dst.region)


def compare_retained(a: RetainedSnapshot, b: RetainedSnapshot, *, first: int = 5) -> Any:
    """`verify.KindDiff` of the retained messages: b against a, topics named (never payloads)."""
    from orchestrator.registry.verify import KindDiff

    only_a = sorted(set(a.messages) - set(b.messages))
    only_b = sorted(set(b.messages) - set(a.messages))
    differ = sorted(t for t in set(a.messages) & set(b.messages) if not a.messages[t].same(b.messages[t]))
    names = [f"{KIND} {t}: only in {a.region}" for t in only_a] + \
        [f"{KIND} {t}: only in {b.region}" for t in only_b] + [f"{KIND} {t}: differs" for t in differ]
    return KindDiff(KIND, len(a.messages), len(b.messages), len(only_a), len(only_b), len(differ), tuple(names[:first]))
