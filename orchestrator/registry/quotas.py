"""AWS IoT's per-API request quotas, as one rate table per API, and the adaptive limiter that obeys it.

AWS IoT Core throttles its control plane per API, per account and per region (calls per second,
adjustable through Service Quotas). `DEFAULT_QUOTAS` holds the published defaults (AWS IoT Core
endpoints and quotas, "AWS IoT Core API throttling limits"; mirrored in
aws-iot-builder-tools/thingpress doc/aws-api-limits.md, checked June 2025), keyed by boto3 method
name. An API the table does not name runs at `UNLISTED_RATE` (10/s, the lowest published control-
plane quota), so an unknown API is never driven faster than any known one. The Device Shadow
data plane (`iot-data`) shares one bucket, `SHADOW_KEY` (4,000/s per account; 20/s per thing,
which a sync never approaches: it makes at most three shadow calls per thing and region).

A `QuotaTable` is resolved once at the edge: defaults <- the topology's `quotas:` section (or a
YAML/JSON file given with `--quotas`) <- `--quota API=RATE` overrides; then `--rate` caps every
write API and `--read-rate` every read API (caps only lower a rate; the table is the ceiling).

`AdaptiveLimiter` is a token bucket per API (GCRA form, thread-safe) whose rate starts at the
table's and is halved on every throttling answer for that API (multiplicative decrease, floor
`MIN_RATE`) and raised again by a twentieth of the quota per success (additive increase), never
above the table. A throttled call is retried at the slower rate: a run does not abort on
throttling that a slower rate would pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import InputRejected

SHADOW_KEY = "shadow"
SHADOW_APIS = frozenset({"get_thing_shadow", "update_thing_shadow", "delete_thing_shadow",
                         "list_named_shadows_for_thing"})
UNLISTED_RATE = 10.0
MIN_RATE = 0.05
_READ_PREFIXES = ("list_", "describe_", "get_", "search_")

DEFAULT_QUOTAS: Mapping[str, float] = {
    # 10 calls/s
    "list_thing_principals": 10.0, "describe_certificate": 10.0, "list_things": 10.0,
    "list_certificates": 10.0, "list_targets_for_policy": 10.0, "list_principal_things": 10.0,
    "get_policy": 10.0, "create_policy": 10.0, "register_certificate_without_ca": 10.0,
    # 15 calls/s
    "list_principal_policies": 15.0, "list_attached_policies": 15.0, "attach_policy": 15.0,
    "search_index": 15.0,
    # 25 calls/s
    "list_things_in_thing_group": 25.0,
    # 100 calls/s
    "create_thing": 100.0, "update_thing": 100.0, "attach_thing_principal": 100.0,
    "add_thing_to_thing_group": 100.0, "list_thing_groups_for_thing": 100.0,
    # 350 calls/s
    "describe_thing": 350.0,
    # Device Shadow data plane: one bucket per account (and region)
    SHADOW_KEY: 4000.0,
}


def is_read(api: str) -> bool:
    return api.startswith(_READ_PREFIXES)


def bucket_of(api: str) -> str:
    """The bucket an API draws from: its own, or the shared shadow bucket."""
    return SHADOW_KEY if api in SHADOW_APIS else api


@dataclass(frozen=True)
class QuotaTable:
    """Calls per second per API (boto3 method names), with read and write caps applied."""

    rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    read_cap: float | None = None
    write_cap: float | None = None
    unlisted: float = UNLISTED_RATE

    def __post_init__(self) -> None:
        for api, rate in self.rates.items():
            if not (isinstance(rate, (int, float)) and rate > 0):
                raise InputRejected(f"quota for {api} must be a positive number of calls per second, got {rate!r}")
        for label, cap in (("--read-rate", self.read_cap), ("--rate", self.write_cap)):
            if cap is not None and not cap > 0:
                raise InputRejected(f"{label} must be a positive number of calls per second, got {cap!r}")

    def quota(self, api: str) -> float:
        """The table's rate for `api` (before caps)."""
        key = bucket_of(api)
        return float(self.rates.get(key, self.unlisted))

    def rate(self, api: str) -> float:
        """The rate `api` runs at: its quota, lowered by the read or write cap."""
        rate = self.quota(api)
        if bucket_of(api) == SHADOW_KEY:
            return rate  # the data plane has its own quota; --rate/--read-rate are control-plane caps
        cap = self.read_cap if is_read(api) else self.write_cap
        return min(rate, cap) if cap is not None else rate

    def with_overrides(self, overrides: Mapping[str, float] | None = None, *, read_cap: float | None = None,
                       write_cap: float | None = None) -> QuotaTable:
        rates = dict(self.rates)
        rates.update(normalize_quotas(overrides or {}, source="--quota"))
        return QuotaTable(rates, read_cap if read_cap is not None else self.read_cap,
                          write_cap if write_cap is not None else self.write_cap, self.unlisted)

    def scaled(self, factor: float) -> QuotaTable:
        """Every quota times `factor` (benchmarks and tests against a scaled quota proxy)."""
        return QuotaTable({k: v * factor for k, v in self.rates.items()},
                          self.read_cap * factor if self.read_cap else None,
                          self.write_cap * factor if self.write_cap else None, self.unlisted * factor)

    def to_json(self) -> dict[str, Any]:
        return {"rates": dict(sorted(self.rates.items())), "read_cap": self.read_cap,
                "write_cap": self.write_cap, "unlisted": self.unlisted}


def normalize_quotas(data: Mapping[str, Any], *, source: str) -> dict[str, float]:
    """`{"ListThingPrincipals": 20, "attach_policy": 30}` -> boto3 names -> floats (exit 2 if bad)."""
    if not isinstance(data, Mapping):
        raise InputRejected(f"{source}: quotas must be a mapping of API name to calls per second")
    out: dict[str, float] = {}
    for name, value in data.items():
        api = api_name(str(name))
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise InputRejected(f"{source}: quota for {name} is not a number: {value!r}") from None
        if not rate > 0:
            raise InputRejected(f"{source}: quota for {name} must be positive, got {value!r}")
        out[api] = rate
    return out


def api_name(name: str) -> str:
    """`ListThingPrincipals` or `list_thing_principals` -> `list_thing_principals`; `shadow` stays."""
    name = name.strip()
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise InputRejected(f"not an API name: {name!r}")
    if "_" in name or name.islower():
        return name.lower().replace("-", "_")
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def parse_override(text: str) -> tuple[str, float]:
    """`API=RATE` (command line) -> (boto3 name, rate)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise InputRejected(f"--quota {text!r}: expected API=CALLS_PER_SECOND, e.g. ListThingPrincipals=20")
    return next(iter(normalize_quotas({name: value}, source="--quota").items()))


def load_quota_file(path: Path) -> dict[str, float]:
    """A YAML or JSON file: either a mapping of API -> rate, or one with a `quotas:` key."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputRejected(f"{path}: cannot read quotas file: {exc.strerror}") from None
    except yaml.YAMLError:
        raise InputRejected(f"{path}: quotas file is not YAML or JSON") from None
    if isinstance(data, Mapping) and "quotas" in data:
        data = data["quotas"]
    return normalize_quotas(data or {}, source=str(path))


class AdaptiveLimiter:
    """A token bucket per API at the table's rate; throttling halves it, successes restore it.

    Thread-safe; `clock` and `sleep` are injected (tests run without waiting). `rate` is kept for
    callers that want one number: the lowest configured rate.
    """

    def __init__(self, table: QuotaTable, *, burst: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if burst < 1:
            raise InputRejected(f"burst must be at least 1, got {burst!r}")
        self.table = table
        self.burst = float(burst)
        self._current: dict[str, float] = {}
        self._tat: dict[str, float] = {}
        self._slowdowns: dict[str, int] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    @property
    def rate(self) -> float:
        return min([self.table.rate(k) for k in self.table.rates] or [self.table.unlisted])

    def rate_for(self, api: str) -> float:
        key = bucket_of(api)
        with self._lock:
            return self._current.get(key) or self.table.rate(api)

    def reserve(self, api: str) -> float:
        key = bucket_of(api)
        with self._lock:
            rate = self._current.get(key) or self.table.rate(api)
            interval = 1.0 / rate
            now = self._clock()
            tat = max(self._tat.get(key, now), now)
            delay = max(0.0, tat - (self.burst - 1.0) * interval - now)
            self._tat[key] = tat + interval
            return delay

    def peek(self, api: str) -> float:
        key = bucket_of(api)
        with self._lock:
            rate = self._current.get(key) or self.table.rate(api)
            now = self._clock()
            tat = max(self._tat.get(key, now), now)
            return max(0.0, tat - (self.burst - 1.0) / rate - now)

    def acquire(self, api: str) -> float:
        delay = self.reserve(api)
        if delay > 0:
            self._sleep(delay)
        return delay

    def throttled(self, api: str) -> float:
        """AWS said slow down: halve this API's rate (not below MIN_RATE); return the new rate."""
        key = bucket_of(api)
        with self._lock:
            rate = max(MIN_RATE, (self._current.get(key) or self.table.rate(api)) / 2.0)
            self._current[key] = rate
            self._slowdowns[key] = self._slowdowns.get(key, 0) + 1
            # the calls already reserved at the old rate are spaced out at the new one
            now = self._clock()
            self._tat[key] = max(self._tat.get(key, now), now) + 1.0 / rate
            return rate

    def succeeded(self, api: str) -> None:
        key = bucket_of(api)
        with self._lock:
            current = self._current.get(key)
            if current is None:
                return
            ceiling = self.table.rate(api)
            raised = current + ceiling / 20.0
            if raised >= ceiling:
                del self._current[key]
            else:
                self._current[key] = raised

    def slowdowns(self) -> dict[str, int]:
        with self._lock:
            return dict(self._slowdowns)


def resolve_quotas(topology_quotas: Mapping[str, float] | None = None, quota_file: str | Path | None = None,
                   overrides: tuple[str, ...] = ()) -> QuotaTable:
    """AWS's defaults <- the topology's `quotas:` <- a `--quotas` file <- `--quota API=RATE` flags."""
    rates = dict(DEFAULT_QUOTAS)
    rates.update(normalize_quotas(topology_quotas or {}, source="topology quotas"))
    if quota_file is not None:
        rates.update(load_quota_file(Path(quota_file)))
    rates.update(dict(parse_override(o) for o in overrides))
    return QuotaTable(rates)
