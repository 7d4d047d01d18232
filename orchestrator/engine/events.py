"""Pulumi engine events -> the preview model: what one stack's preview will change.

`PulumiEngine.preview` streams the engine events of `Stack.preview(on_event=...)` into a
`Collector` (or a recorded log goes through `collect`); the result is the changed resources, the
counts by op and the error of one `orchestrator.preview.model.StackPreview`. This is the engine
package's side of the preview: the Pulumi event shapes (step ops, replacement sub-steps, detailed
diffs, secret envelopes, unknowns, colour markup) are known here and nowhere else, so
`orchestrator.preview` stays a pure model and its renderings.

Importing this module never imports pulumi: the events are read by attribute, and the engine's
op and diff-kind names are compared as strings (they are the values of `OpType` and `DiffKind`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

from orchestrator.preview.model import (
    CHANGING_OPS,
    SHOWN_VALUES,
    Op,
    ResourceChange,
    ValueChange,
    is_stateful,
)

if TYPE_CHECKING:  # pragma: no cover
    from pulumi.automation.events import EngineEvent, StepEventMetadata, StepEventStateMetadata

MASK = "[secret]"  # how the engine serialises secret values in events; kept as is, never revealed
# A secret in serialised Pulumi property values: {"4dabf1…": "1b4706…", "value": …}.
_SECRET_SIG = "4dabf18193072939515e22adb298388d"
# A value the engine does not know during a preview (computed by the provider on `up`).
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
KNOWN_AFTER_UP = "(known after up)"

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
# pulumi.automation.events.DiffKind values of a property change that forces a replacement.
_REPLACE_DIFF_KINDS = frozenset({"add-replace", "delete-replace", "update-replace"})
# When several steps touch one URN, the strongest op describes the resource.
_STRENGTH = {Op.SAME: 0, Op.READ: 1, Op.REFRESH: 1, Op.UPDATE: 2, Op.IMPORT: 2, Op.CREATE: 3,
             Op.DISCARD: 3, Op.DELETE: 4, Op.REPLACE: 5}

Collected = tuple[tuple[ResourceChange, ...], dict[Op, int], str | None]


def collect(events: Iterable[EngineEvent]) -> Collected:
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
        self._lock = threading.Lock()
        self._steps: dict[str, _Step] = {}
        self._summary: dict[Op, int] | None = None
        self._errors: list[str] = []

    def __call__(self, event: EngineEvent) -> None:
        with self._lock:
            self._take(event)

    def _take(self, event: EngineEvent) -> None:
        for name in ("resource_pre_event", "res_outputs_event", "res_op_failed_event"):
            sub = getattr(event, name, None)
            if sub is not None and getattr(sub, "metadata", None) is not None:
                self._step(sub.metadata)
        summary = getattr(event, "summary_event", None)
        if summary is not None:
            self._summary = _summary_counts(summary.resource_changes or {})
        _note_error(event, self._errors)

    def _step(self, meta: StepEventMetadata) -> None:
        raw = _raw(meta.op)
        if raw in _IGNORED_ENGINE_OPS or not meta.urn:
            return
        op = _ENGINE_OPS.get(raw)
        if op is None:
            return
        step = self._steps.get(meta.urn)
        if step is None:
            step = self._steps[meta.urn] = _Step(meta.urn, meta.type or _type_of(meta.urn))
        step.merge(op, meta)

    def result(self) -> Collected:
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


def _scrubbed(value: Any) -> str:
    """A drift value as shown: secrets masked, secret shapes (keys, tokens, PEMs) redacted."""
    from orchestrator.scrub import scrub

    return scrub(_show(value))


def _raw(value: Any) -> str:
    """An engine enum (OpType, DiffKind) or plain string as its string value."""
    return str(value.value) if isinstance(value, Enum) else str(value)


def _summary_counts(changes: Mapping[Any, int]) -> dict[Op, int]:
    out: dict[Op, int] = {}
    for key, n in changes.items():
        raw = _raw(key)
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

    def merge(self, op: Op, meta: StepEventMetadata) -> None:
        if _STRENGTH[op] > _STRENGTH[self.op]:
            self.op = op
        detailed = meta.detailed_diff or {}
        paths = list(detailed) or list(meta.diffs or ())
        for path in paths:
            if path not in self.diffs:
                self.diffs.append(path)
        keys = [p for p, d in detailed.items()
                if _raw(getattr(d, "diff_kind", None)) in _REPLACE_DIFF_KINDS]
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


def _props(state: StepEventStateMetadata) -> Mapping[str, Any]:
    merged: dict[str, Any] = {}
    merged.update(state.outputs or {})
    merged.update(state.inputs or {})  # what the program asks for wins over stale outputs
    return merged


def _show(value: Any) -> str:
    """A property value as short text; secrets masked, unknowns named."""
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


def _note_error(event: EngineEvent, errors: list[str]) -> None:
    """An engine event's error diagnostic, cleaned, added once to `errors` (both collectors)."""
    diag = getattr(event, "diagnostic_event", None)
    if diag is not None and (diag.severity or "") == "error":
        message = clean_message(diag.message or "")
        if message and message not in errors:
            errors.append(message)


def clean_message(message: str) -> str:
    """An engine diagnostic without colour markup and trailing blank space."""
    return _COLOR_RE.sub("", message).strip()


GONE = "(resource)"
_GONE_TEXT = "(deleted outside Pulumi)"
# Properties every read returns fresh, or the engine's own bookkeeping: never drift.
_DRIFT_IGNORED = frozenset({"__meta", "__defaults", "__inputs", "tagsAll"})


class DriftCollector:
    """Engine events of a refresh preview (`Stack.preview_refresh`) -> property drift per resource.

    Pulumi 3.274's refresh preview sends, per resource, a pre-event (op `refresh`, `new` a copy of
    the state) and an outputs event (op `same`, `update` or `delete`) whose `new` outputs are what
    the provider read: those are compared with `old` key by key. Values are masked as in previews."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        self._errors: list[str] = []

    def __call__(self, event: EngineEvent) -> None:
        with self._lock:
            for name in ("resource_pre_event", "res_outputs_event"):
                sub = getattr(event, name, None)
                meta = getattr(sub, "metadata", None) if sub is not None else None
                if meta is not None:
                    self._step(meta)
            _note_error(event, self._errors)

    def _step(self, meta: StepEventMetadata) -> None:
        raw = _raw(meta.op)
        if raw not in ("refresh", "same", "update", "delete") or not meta.urn:
            return
        type_ = meta.type or _type_of(meta.urn)
        if type_.startswith("pulumi:"):
            return
        old = dict(getattr(meta.old, "outputs", None) or {}) if meta.old is not None else {}
        new_state = meta.new
        name = _name_of(meta.urn)
        if raw == "delete":
            self._found[(meta.urn, GONE)] = (name, type_, "exists", _GONE_TEXT)
            return
        if new_state is None:
            return
        new = dict(new_state.outputs or {})
        if not old or not new:
            return
        for key in sorted(set(old) | set(new)):
            if key in _DRIFT_IGNORED or key.startswith("__"):
                continue
            before, after = old.get(key), new.get(key)
            if _mask(before) != _mask(after):
                self._found[(meta.urn, key)] = (name, type_, _scrubbed(before), _scrubbed(after))

    def result(self) -> tuple[list[tuple[str, str, str, str, str]], str | None]:
        """([(resource, type, property, expected, actual)], error or None)"""
        with self._lock:
            rows = [(v[0], v[1], key[1], v[2], v[3]) for key, v in sorted(self._found.items())]
            return rows, ("\n".join(self._errors) if self._errors else None)

