"""An in-memory engine: the same interface as orchestrator.engine.pulumi.PulumiEngine, for tier-2 tests.

It records every call (operation, stack, start and end time), returns plausible region outputs
(a stable ATS hostname per region, ARNs of the right service and region), and can be told to fail,
to be locked, to take a fixed time, or to return bad outputs.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.engine.types import (
    LockInfo,
    Operation,
    Outcome,
    OutputValue,
    ProgressFn,
    PropertyDrift,
    StackDrift,
    StackInfo,
    StackResult,
    StackSpec,
)
from orchestrator.errors import OperationFailed, StackLocked

ACCOUNT = "123456789012"


def stable_endpoint(region: str) -> str:
    digest = hashlib.sha256(region.encode()).hexdigest()
    prefix = "".join(c for c in digest if c.isalnum())[:14]
    return f"a{prefix[1:]}-ats.iot.{region}.amazonaws.com"


def region_outputs(region: str, env: str = "dev") -> dict[str, Any]:
    bucket = f"iot-{env}-lake-{region}-0a1b2c"
    return {
        "region": region,
        "iotEndpoint": stable_endpoint(region),
        "domainConfigurationName": f"iot-{env}-{region}",
        "domainConfigurationArn": f"arn:aws:iot:{region}:{ACCOUNT}:domainconfiguration/iot-{env}-{region}/ab12",
        "certificateArn": f"arn:aws:acm:{region}:{ACCOUNT}:certificate/0f0e0d0c-1111-2222-3333-444455556666",
        "streamName": f"iot-{env}-telemetry",
        "streamArn": f"arn:aws:kinesis:{region}:{ACCOUNT}:stream/iot-{env}-telemetry",
        "dataLakeBucketName": bucket,
        "dataLakeBucketArn": f"arn:aws:s3:::{bucket}",
        "devicePolicyName": f"iot-{env}-device",
    }


@dataclass
class Call:
    operation: str
    stack: str
    started: float
    ended: float = 0.0
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass
class FakeStack:
    config: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, OutputValue] = field(default_factory=dict)
    deployed: bool = False
    resources: int = 0
    protected: int = 0
    last_result: str | None = None
    pending: tuple[str, ...] = ()


class InMemoryEngine:
    def __init__(self, *, latency: float = 0.0, resources_per_stack: int = 12) -> None:
        self.latency = latency
        self.resources_per_stack = resources_per_stack
        self.stacks: dict[str, FakeStack] = {}
        self.calls: list[Call] = []
        self.fail_on: dict[str, str] = {}  # stack -> failure message for up
        self.locked: dict[str, str] = {}  # stack -> who holds the lock
        self.drifted: dict[str, list[PropertyDrift]] = {}  # stack -> what changed behind Pulumi's back
        self.drift_errors: dict[str, str] = {}  # stack -> refresh preview failure
        self.lock_since: dict[str, str] = {}  # stack -> ISO time the lock was taken (default: a day ago)
        self.secrets_providers: dict[str, str] = {}  # stack -> provider set by change_secrets_provider
        self.output_overrides: dict[str, dict[str, Any]] = {}  # stack -> outputs to merge in
        self.secret_outputs: dict[str, dict[str, Any]] = {}
        self.previews: dict[str, Any] = {}
        self.after_up: list[Callable[[StackSpec], None]] = []  # e.g. a provider simulation into moto
        self._lock = threading.Lock()

    # helpers for tests
    def ops(self, operation: str | None = None) -> list[tuple[str, str]]:
        return [(c.operation, c.stack) for c in self.calls if operation is None or c.operation == operation]

    def deploy(self, spec: StackSpec) -> None:
        """Put a stack into the deployed state without recording a call (test set-up)."""
        self.stacks[spec.name] = self._deployed_state(spec)

    def _begin(self, operation: str, spec_or_name: StackSpec | str) -> Call:
        name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.name
        config = {} if isinstance(spec_or_name, str) else dict(spec_or_name.config)
        call = Call(operation, name, time.monotonic(), config=config)
        with self._lock:
            self.calls.append(call)
        if name in self.locked and operation in ("up", "destroy", "refresh"):
            call.ended = time.monotonic()
            raise StackLocked(f"{name} is locked by {self.locked[name]}", stack=name, holder=self.locked[name],
                              since=self._since(name))
        if self.latency:
            time.sleep(self.latency)
        return call

    def _deployed_state(self, spec: StackSpec) -> FakeStack:
        outputs: dict[str, Any] = {}
        if spec.kind == "region":
            outputs = region_outputs(spec.region, spec.config.get("iot-platform:env", "dev"))
        elif spec.kind == "dns":
            outputs = {"fqdn": spec.config.get("iot-platform:domain"),
                       "routing": spec.config.get("iot-platform:routing")}
        elif spec.kind == "replication":  # the names programs/replication.py gives
            env = spec.config.get("iot-platform:env", "dev")
            outputs = {"registryTableName": f"iot-{env}-registry-events",
                       "replicationRoleArn": f"arn:aws:iam::123456789012:role/iot-{env}-replication", "targets": []}
        outputs.update(self.output_overrides.get(spec.name, {}))
        values = {k: OutputValue(v) for k, v in outputs.items()}
        values.update({k: OutputValue(v, secret=True) for k, v in self.secret_outputs.get(spec.name, {}).items()})
        return FakeStack(config=dict(spec.config), outputs=values, deployed=True,
                         resources=self.resources_per_stack, protected=2 if spec.kind == "region" else 0,
                         last_result="succeeded")

    def up(self, spec: StackSpec, on_progress: ProgressFn | None = None) -> StackResult:
        call = self._begin("up", spec)
        try:
            if spec.name in self.fail_on:
                with self._lock:
                    self.stacks.setdefault(spec.name, FakeStack()).last_result = "failed"
                return StackResult(spec.name, Operation.UP, Outcome.FAILED, seconds=self.latency,
                                   message=self.fail_on[spec.name])
            for hook in self.after_up:  # what the provider leaves in AWS; may add to the outputs
                hook(spec)
            state = self._deployed_state(spec)
            created = 0 if self.stacks.get(spec.name, FakeStack()).deployed else state.resources
            with self._lock:
                self.stacks[spec.name] = state
            if on_progress:
                on_progress(spec.name, {"create": created})
            return StackResult(spec.name, Operation.UP, Outcome.SUCCEEDED,
                               counts={"create": created, "same": state.resources - created},
                               outputs=dict(state.outputs), seconds=self.latency)
        finally:
            call.ended = time.monotonic()

    def preview(self, spec: StackSpec) -> Any:
        call = self._begin("preview", spec)
        call.ended = time.monotonic()
        factory: Callable[[StackSpec], Any] | None = self.previews.get(spec.name) or self.previews.get("*")
        if factory is None:
            raise OperationFailed(f"no preview configured for {spec.name}")
        return factory(spec)

    def destroy(self, spec: StackSpec, *, include_protected: bool = False,
                on_progress: ProgressFn | None = None) -> StackResult:
        call = self._begin("destroy", spec)
        try:
            state = self.stacks.get(spec.name)
            if state is None or not state.deployed:
                return StackResult(spec.name, Operation.DESTROY, Outcome.SUCCEEDED)
            kept = 0 if include_protected else state.protected
            deleted = state.resources - kept
            with self._lock:
                state.resources = kept
                state.protected = kept
                state.deployed = kept > 0
                state.outputs = {} if not kept else state.outputs
            return StackResult(spec.name, Operation.DESTROY, Outcome.SUCCEEDED, counts={"delete": deleted},
                               seconds=self.latency)
        finally:
            call.ended = time.monotonic()

    def refresh(self, spec: StackSpec, *, clear_pending_creates: bool = False) -> StackResult:
        call = self._begin("refresh", spec)
        state = self.stacks.setdefault(spec.name, FakeStack())
        cleared = len(state.pending)
        if clear_pending_creates:
            state.pending = ()
        call.ended = time.monotonic()
        return StackResult(spec.name, Operation.REFRESH, Outcome.SUCCEEDED, counts={"delete": cleared})

    def outputs(self, stack: str) -> Mapping[str, OutputValue] | None:
        state = self.stacks.get(stack)
        if state is None or not state.deployed:
            return None
        return dict(state.outputs)

    def info(self, stack: str) -> StackInfo:
        state = self.stacks.get(stack)
        if state is None:
            return StackInfo(stack, deployed=False)
        return StackInfo(stack, deployed=state.deployed, resource_count=state.resources,
                         last_result=state.last_result, last_update="2026-11-26T12:00:00Z",
                         pending_operations=state.pending)

    def drift(self, stack: str) -> StackDrift:
        self._begin("drift", stack).ended = time.monotonic()
        state = self.stacks.get(stack)
        if state is None or not state.deployed:
            return StackDrift(stack, deployed=False)
        if stack in self.drift_errors:
            return StackDrift(stack, error=self.drift_errors[stack])
        return StackDrift(stack, differences=tuple(self.drifted.get(stack, ())))

    def _since(self, stack: str) -> str:
        from datetime import datetime, timedelta, timezone

        default = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.lock_since.get(stack, default)

    def lock(self, stack: str) -> LockInfo | None:
        """Who holds the lock (a read: not recorded as a call)."""
        from datetime import datetime, timezone

        if stack not in self.locked:
            return None
        since = self._since(stack)
        then = datetime.fromisoformat(since.replace("Z", "+00:00"))
        return LockInfo(stack, self.locked[stack], since, (datetime.now(timezone.utc) - then).total_seconds())

    def cancel(self, stack: str) -> None:
        self._begin("cancel", stack).ended = time.monotonic()
        self.locked.pop(stack, None)

    def export(self, stack: str) -> dict[str, Any]:
        state = self.stacks.get(stack)
        return {"version": 3, "deployment": {"resources": [] if state is None else
                                             [{"urn": f"urn:{i}"} for i in range(state.resources)]}}

    def change_secrets_provider(self, stack: str, provider: str) -> None:
        self._begin("change-secrets-provider", stack).ended = time.monotonic()
        if stack not in self.stacks:
            raise OperationFailed(f"{stack} does not exist")
        self.secrets_providers[stack] = provider

    def import_(self, stack: str, state: dict[str, Any]) -> None:
        self._begin("import", stack).ended = time.monotonic()


def project_copy(tmp_path: Path, monkeypatch: Any) -> Path:  # monkeypatch: pytest.MonkeyPatch
    """The project's Pulumi.yaml and dev topology in a temp dir, as the working dir (env `dev`)."""
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "stacks").mkdir()
    shutil.copy(repo / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(repo / "stacks" / "dev.topology.yaml", tmp_path / "stacks" / "dev.topology.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATE_ENV", raising=False)
    return tmp_path


class ManualClock:
    """A clock that moves only when told: the ARC cluster's (`ArcCluster(clock=...)`), advanced by the
    product's pauses (`orchestrator.routing_controls._sleep`) so a wait period passes without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []  # every pause the product asked for, in order

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.advance(seconds)
