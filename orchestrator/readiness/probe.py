"""What the rules read through: AWS clients (cached, counted), stack outputs, thresholds, and reads
shared by several rules (the registry parity report) computed once.

Every AWS call a rule makes goes through `Probe.client`, whose clients count each API call
(botocore `after-call`; botocore's own retries inside one call are not counted), so the report
says how many control-plane calls one evaluation cost.
`iot-data` (shadows) and the ARC cluster's data plane are counted apart: they are data-plane calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.registry.calls import error_code

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.aws import AwsContext
    from orchestrator.topology import Topology

T = TypeVar("T")
DATA_PLANE = frozenset({"iot-data-plane", "route53-recovery-cluster"})  # botocore's event names


@dataclass(frozen=True)
class Settings:
    """Thresholds (the defaults are the documented ones: docs/runbooks/failover.md)."""

    max_lag_ms: int = 60_000  # replication lag above this: NOT READY
    max_backup_age_h: float = 26.0  # a daily backup, plus slack
    max_reconciliation_age_h: float = 26.0  # the daily backstop sync
    # a reconciliation pass in progress whose head item has not moved for longer than this is stuck:
    # the head item is written after every page (<= ~50 s of reads at the quota) and at the end of
    # every slice, and one slice lasts at most the state machine Task's bound (programs/replication.py
    # SLICE_TIMEOUT_S, 960 s; the apply slice writes only at its end); two slices' worth leaves room
    # for one slice at its bound plus the Task's retries of Lambda's transient errors (2+4+8 s)
    max_reconcile_stall_s: float = 2 * 960.0
    min_cert_days: int = 30  # ACM certificate days to expiry
    max_iterator_age_ms: int = 60_000
    sample_above: int = 1_000  # things: above this the per-thing reads are sampled
    sample_size: int = 150  # finds a difference in >= 2 % of things with >= 95 % confidence
    full: bool = False  # --full: never sample
    seed: int | None = None  # the sample's seed (None: a new sample every run)
    metric_window_h: int = 24 * 14  # how far back the primary's peak use is read


@dataclass
class Probe:
    env: str
    topology: Topology
    ctx: AwsContext
    outputs: Callable[[str], Mapping[str, Any] | None]  # stack name -> its outputs (plain values)
    settings: Settings = field(default_factory=Settings)
    backend_url: str | None = None
    secrets_provider: str | None = None
    backup_dest: str | None = None
    signing_key: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    client_hook: Callable[[Any, str, str], None] | None = None  # (client, service, region): tests
    calls: Counter[str] = field(default_factory=Counter)  # "service.Operation" -> attempts
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._cache: dict[Any, Any] = {}
        self._key_locks: dict[Any, threading.Lock] = {}
        self._session: Any = None

    # -- clients ------------------------------------------------------------------------------
    def client(self, service: str, region: str) -> Any:
        with self._lock:
            found = self._clients.get((service, region))
            if found is not None:
                return found
            from orchestrator.aws import client, session

            if self._session is None:
                self._session = session(self.ctx)  # one session: each service model is loaded once
            made = client(self.ctx, service, region, max_pool_connections=16, sess=self._session)
            made.meta.events.register("after-call", self._count)
            if self.client_hook is not None:
                self.client_hook(made, service, region)
            self._clients[(service, region)] = made
            return made

    def _count(self, event_name: str, **_kw: Any) -> None:
        _, service, op = event_name.split(".", 2)
        with self._lock:
            self.calls[service + "." + op] += 1

    @property
    def control_plane_calls(self) -> int:
        return sum(n for k, n in self.calls.items() if k.split(".", 1)[0] not in DATA_PLANE)

    # -- shared reads ---------------------------------------------------------------------------
    def once(self, key: Any, compute: Callable[[], T]) -> T:
        """`compute()` once per key (threads asking for the same key wait for the first)."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            value = compute()
            with self._lock:
                self._cache[key] = value
            return value

    def region_outputs(self, region: str) -> Mapping[str, Any]:
        from orchestrator.stacks.graph import region_stack

        return self.once(("outputs", region),
                         lambda: dict(self.outputs(region_stack(self.topology, region).name) or {}))

    def stack_outputs(self, name: str) -> Mapping[str, Any]:
        return self.once(("stack", name), lambda: dict(self.outputs(name) or {}))


def plain(value: Any) -> Any:
    """A Pulumi OutputValue's value (or the value itself)."""
    return getattr(value, "value", value)


class Unreadable(Exception):
    """An AWS read that did not answer: the rule reports UNKNOWN with this reason."""


def aws_read(what: str, call: Callable[[], T]) -> T:
    """`call()`, its failure turned into `Unreadable` naming the API's error code (never a secret)."""
    from orchestrator.errors import OrchestrateError

    try:
        return call()
    except OrchestrateError as exc:
        raise Unreadable(f"{what}: {exc.one_line()}") from exc
    except Exception as exc:  # botocore ClientError, endpoint errors
        code = error_code(exc) or type(exc).__name__
        raise Unreadable(f"{what}: {code}") from exc


def not_found(exc: BaseException) -> bool:
    code = error_code(exc.__cause__ or exc) or ""
    return code in {"ResourceNotFoundException", "NoSuchBucket", "NotFoundException", "NoSuchResourceException",
                    "NoSuchResource", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",
                    "NoSuchHealthCheck"}


def region_data(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return {k: plain(v) for k, v in mapping.items()}
