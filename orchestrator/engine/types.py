"""The engine interface every stack operation goes through, and the values it returns.

`orchestrator.engine.pulumi.PulumiEngine` implements it over the Pulumi Automation API (only the
engine package imports `pulumi.automation`); tests use an in-memory double with the same interface. Nothing
here imports Pulumi.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.state import lock_age

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.preview.model import StackPreview


class Operation(str, Enum):
    UP = "up"
    PREVIEW = "preview"
    DESTROY = "destroy"
    REFRESH = "refresh"


class Outcome(str, Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run because an upstream failed or it was done already (resume)
    REFUSED = "refused"  # a wiring contract or guard stopped it before the engine ran


MASK = "[secret]"


@dataclass(frozen=True)
class OutputValue:
    value: Any
    secret: bool = False

    def __repr__(self) -> str:
        shown = MASK if self.secret else repr(self.value)
        return f"OutputValue({shown}, secret={self.secret})"

    def shown(self, show_secrets: bool = False) -> Any:
        return self.value if (show_secrets or not self.secret) else MASK


@dataclass(frozen=True)
class StackSpec:
    """Everything the engine needs to run one stack: its name, where, and its full config."""

    name: str
    kind: str  # region | dns | replication
    region: str  # aws:region of the stack's provider
    config: Mapping[str, str]  # fully qualified keys, e.g. "iot-platform:domain", "aws:region"
    secret_keys: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        shown = {k: (MASK if k in self.secret_keys else v) for k, v in self.config.items()}
        return f"StackSpec(name={self.name!r}, kind={self.kind!r}, region={self.region!r}, config={shown!r})"


@dataclass(frozen=True)
class StackResult:
    stack: str
    operation: Operation
    outcome: Outcome
    counts: Mapping[str, int] = field(default_factory=dict)  # create/update/delete/replace/same
    outputs: Mapping[str, OutputValue] = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""
    locked_by: str | None = None  # set when another update held the lock ("" when the holder is unknown)

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.SUCCEEDED, Outcome.SKIPPED)


@dataclass(frozen=True)
class StackInfo:
    name: str
    deployed: bool
    resource_count: int = 0
    last_result: str | None = None  # succeeded | failed | in-progress
    last_update: str | None = None  # ISO 8601
    pending_operations: tuple[str, ...] = ()  # "creating urn..." left by a crashed run


@dataclass(frozen=True)
class PropertyDrift:
    """One property of one resource whose value in the cloud differs from the stack's state."""

    resource: str  # the resource's name (from its URN)
    type: str  # e.g. aws:kinesis/stream:Stream
    property: str  # top-level property name; "(resource)" when the resource itself is gone
    expected: str  # what the state holds (secrets masked)
    actual: str  # what the cloud holds (secrets masked)


@dataclass(frozen=True)
class StackDrift:
    stack: str
    deployed: bool = True
    differences: tuple[PropertyDrift, ...] = ()
    error: str | None = None  # the refresh preview failed: drift unknown

    @property
    def drifted(self) -> bool:
        return bool(self.differences)


@dataclass(frozen=True)
class LockInfo:
    """Who holds a stack's lock (the backend's lock file) and since when."""

    stack: str
    holder: str  # "user@host (pid N)"
    since: str | None  # ISO 8601, UTC
    age_seconds: float | None
    host: str | None = None
    pid: int | None = None

    def describe(self) -> str:
        return f"{self.holder}{lock_age(self.since, self.age_seconds)}"


ProgressFn = Callable[[str, Mapping[str, int]], None]  # (stack, counts so far)


class Engine(Protocol):
    """One object per run; thread-safe for different stacks."""

    def up(self, spec: StackSpec, on_progress: ProgressFn | None = None) -> StackResult: ...

    def preview(self, spec: StackSpec) -> StackPreview: ...

    def destroy(self, spec: StackSpec, *, include_protected: bool = False,
                on_progress: ProgressFn | None = None) -> StackResult: ...

    def refresh(self, spec: StackSpec, *, clear_pending_creates: bool = False) -> StackResult: ...

    def outputs(self, stack: str) -> Mapping[str, OutputValue] | None:
        """The stack's outputs, or None when the stack does not exist or was never deployed."""
        ...

    def info(self, stack: str) -> StackInfo: ...

    def cancel(self, stack: str) -> None: ...

    def drift(self, stack: str) -> StackDrift:
        """A refresh in preview-only mode: what differs between the stack's state and the cloud.
        Changes nothing (neither the cloud nor the state)."""
        ...

    def lock(self, stack: str) -> LockInfo | None:
        """Who holds the stack's lock, or None when it is not locked (reads only)."""
        ...

    def export(self, stack: str) -> dict[str, Any]: ...

    def import_(self, stack: str, state: dict[str, Any]) -> None: ...

    def change_secrets_provider(self, stack: str, provider: str) -> None:
        """Re-encrypt the stack's secrets with `provider` (passphrase, awskms://…)."""
        ...
