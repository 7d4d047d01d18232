"""What a preview of one environment will change: typed, frozen, built from Pulumi engine events.

The engine (the one module touching `pulumi.automation`) runs `preview(on_event=...)` per stack and
hands the engine events to `collect` (or streams them into a `Collector`); the result becomes a
`StackPreview`. An `EnvironmentPreview` is every stack of one environment plus the topology before
and after, and is what `orchestrator.preview.render` turns into a PR comment, text or JSON.

Importing this module never imports pulumi: `collect` imports `pulumi.automation.events` lazily.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.topology import Topology

MASK = "[secret]"  # how the engine serialises secret values in events; kept as is, never revealed
# A secret in serialised Pulumi property values: {"4dabf1…": "1b4706…", "value": …}.
_SECRET_SIG = "4dabf18193072939515e22adb298388d"
# A value the engine does not know during a preview (computed by the provider on `up`).
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
KNOWN_AFTER_UP = "(known after up)"


class Op(str, Enum):
    """What happens to one resource. The engine's replacement sub-steps fold into REPLACE."""

    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    SAME = "same"
    READ = "read"
    REFRESH = "refresh"
    IMPORT = "import"
    DISCARD = "discard"  # forgotten from state (retain_on_delete): the cloud resource stays


# Ops that change something and are listed resource by resource; the rest are only counted.
CHANGING_OPS: frozenset[Op] = frozenset({Op.CREATE, Op.UPDATE, Op.REPLACE, Op.DELETE, Op.IMPORT,
                                         Op.DISCARD})
# Ops that remove or recreate the cloud resource: data or traffic can be lost.
DESTRUCTIVE_OPS: frozenset[Op] = frozenset({Op.REPLACE, Op.DELETE})

# Engine step op (pulumi.automation.events.OpType value) -> our Op. The replacement sub-steps
# (create-replacement, delete-replaced, ...) are not "logical" steps: the engine's own summary
# does not count them; they only add detail to the resource's REPLACE.
_ENGINE_OPS: Mapping[str, Op] = {
    "create": Op.CREATE,
    "update": Op.UPDATE,
    "delete": Op.DELETE,
    "same": Op.SAME,
    "replace": Op.REPLACE,
    "create-replacement": Op.REPLACE,
    "delete-replaced": Op.REPLACE,
    "read": Op.READ,
    "read-replacement": Op.READ,
    "refresh": Op.REFRESH,
    "import": Op.IMPORT,
    "import-replacement": Op.REPLACE,
    "discard": Op.DISCARD,
    "discard-replaced": Op.REPLACE,
}
_IGNORED_ENGINE_OPS = frozenset({"remove-pending-replace"})  # state housekeeping, nothing in AWS
# When several steps touch one URN, the strongest op describes the resource.
_STRENGTH = {Op.SAME: 0, Op.READ: 1, Op.REFRESH: 1, Op.UPDATE: 2, Op.IMPORT: 2, Op.CREATE: 3,
             Op.DISCARD: 3, Op.DELETE: 4, Op.REPLACE: 5}

# Resource types that hold data, identity or live traffic. A replace or delete of one of them is a
# warning at the top of every preview, whether or not the program marks it `protect`. This is the
# only list of them; add a type here when a program starts declaring a new kind of state.
STATEFUL_TYPES: frozenset[str] = frozenset({
    "aws:s3/bucket:Bucket",                # the data lake: objects are lost on replace/delete
    "aws:s3/bucketV2:BucketV2",            # the deprecated name of the same bucket
    "aws:kinesis/stream:Stream",           # telemetry still in the stream's retention window
    "aws:dynamodb/table:Table",            # registry replication table
    "aws:dynamodb/tableReplica:TableReplica",
    "aws:route53/record:Record",           # a DNS record of a live region: devices resolve it
    "aws:iot/certificate:Certificate",     # device identities: devices cannot reconnect
    "aws:iot/caCertificate:CaCertificate",
    "aws:iot/thing:Thing",                 # registry entries devices and rules refer to
    "aws:iot/thingType:ThingType",
    "aws:iot/thingGroup:ThingGroup",
})

# Properties whose old and new values are shown (not just their names), because reviewers must
# see where DNS points. Only these types and properties; secret values stay masked.
SHOWN_VALUES: Mapping[str, frozenset[str]] = {
    "aws:route53/record:Record": frozenset({
        "name", "type", "records", "ttl", "setIdentifier", "healthCheckId",
        "failoverRoutingPolicies", "latencyRoutingPolicies", "weightedRoutingPolicies", "aliases",
    }),
    "aws:route53/healthCheck:HealthCheck": frozenset({"fqdn", "port", "resourcePath", "type",
                                                       "failureThreshold", "requestInterval"}),
}


def is_stateful(type_: str) -> bool:
    return type_ in STATEFUL_TYPES


class PlaceholderReason(str, Enum):
    NOT_DEPLOYED = "not_deployed"  # the upstream stack has never been deployed
    WOULD_CHANGE = "would_change"  # the upstream's preview changes the value; known after its `up`


# The value prefix orchestrator.stacks.wiring gives placeholder outputs: "placeholder:<region>[:<output>]".
PLACEHOLDER_PREFIX = "placeholder:"
_PLACEHOLDER_RE = re.compile(r"placeholder:([a-z]{2}(?:-[a-z]+)+-\d)(?::([A-Za-z0-9_]+))?")


@dataclass(frozen=True)
class Placeholder:
    """A config key of a stack filled with a stand-in, because its upstream value is not known."""

    key: str  # the config key, e.g. "iot-platform:targets"
    upstream: str = ""  # the upstream stack, e.g. "dev-region-eu-central-1"
    output: str = ""  # the upstream output, e.g. "iotEndpoint"
    reason: PlaceholderReason = PlaceholderReason.NOT_DEPLOYED

    def describe(self) -> str:
        what = self.output or "value"
        key = _short_key(self.key)
        if self.upstream:
            why = ("not deployed yet" if self.reason is PlaceholderReason.NOT_DEPLOYED
                   else "changes in this preview")
            return (f"{what} of {self.upstream} {why}: placeholder used for {key}; "
                    "`up` will use the real value")
        return f"{key} holds a placeholder (upstream not deployed yet); `up` will use the real value"


def _short_key(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else key


def placeholders_in_config(config: Mapping[str, str], env: str,
                           reason: PlaceholderReason = PlaceholderReason.NOT_DEPLOYED,
                           ) -> tuple[Placeholder, ...]:
    """Every (key, upstream region stack, output) placeholder found in a stack's config values."""
    found: list[Placeholder] = []
    for key, value in config.items():
        if PLACEHOLDER_PREFIX not in value:
            continue
        seen = False
        for m in _PLACEHOLDER_RE.finditer(value):
            p = Placeholder(key, f"{env}-region-{m.group(1)}", m.group(2) or "", reason)
            if p not in found:
                found.append(p)
            seen = True
        if not seen:
            found.append(Placeholder(key, reason=reason))
    return tuple(found)


@dataclass(frozen=True)
class ValueChange:
    """Old and new value of one shown property (see SHOWN_VALUES), already masked and rendered."""

    path: str
    old: str | None  # None: absent before (create)
    new: str | None  # None: absent after (delete)


@dataclass(frozen=True)
class ResourceChange:
    urn: str
    type: str
    name: str
    op: Op
    diffs: tuple[str, ...] = ()  # changed property paths, e.g. ("tags.env", "records[0]")
    protected: bool = False
    stateful: bool = False
    replace_keys: tuple[str, ...] = ()  # properties that force the replacement
    values: tuple[ValueChange, ...] = ()  # old -> new of shown properties (DNS)

    @property
    def risky(self) -> bool:
        """A replace or delete of something protected or stateful: called out at the top."""
        return self.op in DESTRUCTIVE_OPS and (self.protected or self.stateful)


@dataclass(frozen=True)
class StackPreview:
    stack: str
    kind: str  # region | dns | replication
    region: str
    changes: tuple[ResourceChange, ...] = ()  # changed resources only (see CHANGING_OPS)
    counts: Mapping[Op, int] = field(default_factory=dict)  # every op, incl. SAME (unchanged)
    placeholders: tuple[Placeholder, ...] = ()  # plain config keys are accepted and wrapped
    error: str | None = None

    def __post_init__(self) -> None:
        counts: dict[Op, int] = {}
        for op, n in dict(self.counts).items():
            key = Op(op)
            counts[key] = counts.get(key, 0) + int(n)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "changes", tuple(self.changes))
        object.__setattr__(self, "placeholders", tuple(
            p if isinstance(p, Placeholder) else Placeholder(str(p)) for p in self.placeholders))

    def count(self, *ops: Op) -> int:
        return sum(self.counts.get(op, 0) for op in ops)

    @property
    def unchanged(self) -> int:
        return self.count(Op.SAME, Op.READ, Op.REFRESH)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or self.count(*CHANGING_OPS) > 0


@dataclass(frozen=True)
class EnvironmentPreview:
    env: str
    commit: str
    stacks: tuple[StackPreview, ...]
    topology_before: Topology | None = None
    topology_after: Topology | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stacks", tuple(self.stacks))

    @property
    def topology_changed(self) -> bool:
        """Regions, roles or routing differ (the file's path or sizing do not count)."""
        return _shape(self.topology_before) != _shape(self.topology_after)

    def risky(self) -> list[tuple[StackPreview, ResourceChange]]:
        return [(s, c) for s in self.stacks for c in s.changes if c.risky]

    @property
    def failed(self) -> tuple[StackPreview, ...]:
        return tuple(s for s in self.stacks if s.error)

    def totals(self) -> dict[Op, int]:
        out: dict[Op, int] = {}
        for s in self.stacks:
            for op, n in s.counts.items():
                out[op] = out.get(op, 0) + n
        return out


def _shape(t: Topology | None) -> tuple[Any, ...] | None:
    if t is None:
        return None
    return (t.domain, t.primary, tuple(t.secondaries), t.routing.value)


# -- engine events -> model ------------------------------------------------------------------------

def collect(events: Iterable[Any]) -> tuple[tuple[ResourceChange, ...], dict[Op, int], str | None]:
    """Engine events of one stack's preview -> (changed resources, counts by op, error or None).

    Counts come from the engine's summary event when there is one (it counts logical steps only),
    else from the steps seen. Errors are the error-severity diagnostics, colour codes removed.
    """
    collector = Collector()
    for event in events:
        collector(event)
    return collector.result()


class Collector:
    """Streams engine events (thread-safe, usable as `on_event=`) into the preview model."""

    def __init__(self) -> None:
        from pulumi.automation import events as _events  # deferred: the CLI's --help stays light

        self._events = _events
        self._lock = threading.Lock()
        self._steps: dict[str, _Step] = {}
        self._summary: dict[Op, int] | None = None
        self._errors: list[str] = []

    def __call__(self, event: Any) -> None:
        with self._lock:
            self._take(event)

    def _take(self, event: Any) -> None:
        for name in ("resource_pre_event", "res_outputs_event", "res_op_failed_event"):
            sub = getattr(event, name, None)
            if sub is not None and getattr(sub, "metadata", None) is not None:
                self._step(sub.metadata)
        summary = getattr(event, "summary_event", None)
        if summary is not None:
            self._summary = _summary_counts(summary.resource_changes or {})
        diag = getattr(event, "diagnostic_event", None)
        if diag is not None and (diag.severity or "") == "error":
            message = clean_message(diag.message or "")
            if message and message not in self._errors:
                self._errors.append(message)

    def _step(self, meta: Any) -> None:
        raw = meta.op.value if isinstance(meta.op, Enum) else str(meta.op)
        if raw in _IGNORED_ENGINE_OPS or not meta.urn:
            return
        op = _ENGINE_OPS.get(raw)
        if op is None:
            return
        step = self._steps.get(meta.urn)
        if step is None:
            step = self._steps[meta.urn] = _Step(meta.urn, meta.type or _type_of(meta.urn))
        step.merge(op, meta, self._events)

    def result(self) -> tuple[tuple[ResourceChange, ...], dict[Op, int], str | None]:
        with self._lock:
            changes = tuple(s.change() for s in self._steps.values() if s.op in CHANGING_OPS)
            if self._summary is not None:
                counts = dict(self._summary)
            else:
                counts = {}
                for s in self._steps.values():
                    counts[s.op] = counts.get(s.op, 0) + 1
            error = "\n".join(self._errors) if self._errors else None
            return changes, counts, error


def _summary_counts(changes: Mapping[Any, int]) -> dict[Op, int]:
    out: dict[Op, int] = {}
    for key, n in changes.items():
        raw = key.value if isinstance(key, Enum) else str(key)
        if raw in _IGNORED_ENGINE_OPS or raw not in _ENGINE_OPS:
            continue
        if raw != "replace" and _ENGINE_OPS[raw] is Op.REPLACE:
            continue  # sub-steps of a replacement; the replace itself is counted
        op = _ENGINE_OPS[raw]
        out[op] = out.get(op, 0) + int(n)
    return out


class _Step:
    """Everything the events said about one URN, merged."""

    def __init__(self, urn: str, type_: str) -> None:
        self.urn = urn
        self.type = type_
        self.op = Op.SAME
        self.diffs: list[str] = []
        self.replace_keys: list[str] = []
        self.protected = False
        self.old: Mapping[str, Any] | None = None
        self.new: Mapping[str, Any] | None = None
        self.old_inputs: Mapping[str, Any] | None = None
        self.new_inputs: Mapping[str, Any] | None = None

    def merge(self, op: Op, meta: Any, events: Any) -> None:
        if _STRENGTH[op] > _STRENGTH[self.op]:
            self.op = op
        detailed = meta.detailed_diff or {}
        paths = list(detailed) or list(meta.diffs or ())
        for path in paths:
            if path not in self.diffs:
                self.diffs.append(path)
        replace_kinds = {events.DiffKind.ADD_REPLACE, events.DiffKind.DELETE_REPLACE,
                         events.DiffKind.UPDATE_REPLACE}
        keys = [p for p, d in detailed.items() if getattr(d, "diff_kind", None) in replace_kinds]
        if op is Op.REPLACE:
            keys += list(meta.keys or ())
        for key in keys:
            if key not in self.replace_keys:
                self.replace_keys.append(key)
        for state in (meta.old, meta.new):
            if state is not None and state.protect:
                self.protected = True
        if meta.old is not None and self.old is None:
            self.old = _props(meta.old)
            self.old_inputs = meta.old.inputs
        if meta.new is not None:
            self.new = _props(meta.new) or self.new
            self.new_inputs = meta.new.inputs or self.new_inputs

    def change(self) -> ResourceChange:
        diffs = list(self.diffs)
        if not diffs and self.op in (Op.UPDATE, Op.REPLACE):
            diffs = self._input_diffs()
        diffs += [k for k in self.replace_keys if k not in diffs]
        return ResourceChange(
            urn=self.urn, type=self.type, name=_name_of(self.urn), op=self.op,
            diffs=tuple(diffs), protected=self.protected, stateful=is_stateful(self.type),
            replace_keys=tuple(self.replace_keys), values=self._values(diffs),
        )

    def _input_diffs(self) -> list[str]:
        """Top-level inputs that differ, for providers that report no diff of their own (the CLI's
        display does the same). Secret values compare as equal: a changed secret is not seen."""
        old, new = self.old_inputs or {}, self.new_inputs or {}
        keys = [k for k in (*old, *(k for k in new if k not in old)) if not k.startswith("__")]
        return [k for k in keys if _mask(old.get(k)) != _mask(new.get(k))]

    def _values(self, diffs: list[str]) -> tuple[ValueChange, ...]:
        shown = SHOWN_VALUES.get(self.type)
        if not shown:
            return ()
        old = self.old if self.op is not Op.CREATE else None
        new = self.new if self.op is not Op.DELETE else None
        if self.op in (Op.CREATE, Op.DELETE):
            keys = sorted(k for k in shown if (old or new or {}).get(k) not in (None, "", [], {}))
        else:
            top = {re.split(r"[.\[]", p, maxsplit=1)[0] for p in diffs}
            keys = sorted(k for k in shown if k in top)
        out = []
        for k in keys:
            before = _show(old.get(k)) if old is not None and k in old else None
            after = _show(new.get(k)) if new is not None and k in new else None
            if before != after:
                out.append(ValueChange(k, before, after))
        return tuple(out)


def _props(state: Any) -> Mapping[str, Any]:
    merged: dict[str, Any] = {}
    merged.update(state.outputs or {})
    merged.update(state.inputs or {})  # what the program asks for wins over stale outputs
    return merged


def _show(value: Any) -> str:
    """A property value as short text; secrets masked, unknowns named."""
    import json

    masked = _mask(value)
    if isinstance(masked, str):
        return masked
    return json.dumps(masked, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        if value == _UNKNOWN:
            return KNOWN_AFTER_UP
        return MASK if value == MASK else value
    if isinstance(value, Mapping):
        if _SECRET_SIG in value:
            return MASK
        return {str(k): _mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(v) for v in value]
    return value


def _name_of(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<type chain>::<name>; names may contain "::"
    parts = urn.split("::", 3)
    return parts[3] if len(parts) == 4 else urn


def _type_of(urn: str) -> str:
    parts = urn.split("::", 3)
    return parts[2].rsplit("$", 1)[-1] if len(parts) == 4 else ""


_COLOR_RE = re.compile(r"<\{%[a-zA-Z]*%\}>|\x1b\[[0-9;]*[A-Za-z]")


def clean_message(message: str) -> str:
    """An engine diagnostic without colour markup and trailing blank space."""
    return _COLOR_RE.sub("", message).strip()
