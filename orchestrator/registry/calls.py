"""Every registry API call goes through `Caller.call`: rate limits, retries and counting live here.

- `RateLimiter`: a token bucket per API name (GCRA form). AWS IoT throttles the control plane per
  API, per account and per region, so each region's client gets its own limiters.
- `RetryPolicy`: exponential backoff with full jitter on throttling, 5xx and connection errors,
  bounded attempts; the RNG and the sleep function are injected, so tests are deterministic.
- `Caller`: one client + its limiters + a retry policy + counters of read/write calls and retries.
  With an `AdaptiveLimiter` (`limits=`, orchestrator/registry/quotas.py) every API runs at its own
  quota, and a throttled call halves its API's rate before it is retried.
  After an *ambiguous* failure (5xx, connection reset: the write may have been applied) a
  non-idempotent call is retried only after its `verify` read says it did not happen.

`LimitExceededException` is deliberately *not* retried: on IoT it means a quota (five policy
versions, groups per thing ...), which waiting does not fix.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any

from orchestrator.errors import InputRejected, OperationFailed
from orchestrator.registry.quotas import AdaptiveLimiter

THROTTLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException", "SlowDown",
})
TRANSIENT_CODES = frozenset({
    "InternalFailureException", "InternalFailure", "InternalServerException", "InternalError",
    "ServiceUnavailableException", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException",
})
_READ_PREFIXES = ("list_", "describe_", "get_", "search_")


class Failure(str, Enum):
    THROTTLED = "throttled"   # the request was refused before it was applied: safe to repeat
    TRANSIENT = "transient"   # 5xx / connection trouble: the request may or may not have been applied


def is_write(api: str) -> bool:
    return not api.startswith(_READ_PREFIXES)


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def classify(exc: BaseException) -> Failure | None:
    """THROTTLED, TRANSIENT, or None (not retryable)."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ClientError):
        code = error_code(exc) or ""
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in THROTTLE_CODES or status == 429:
            return Failure.THROTTLED
        if code in TRANSIENT_CODES or status >= 500:
            return Failure.TRANSIENT
        return None
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return Failure.TRANSIENT
    return None


_UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                          "ConnectionClosedError"})


def _host_of(exc: BaseException) -> str | None:
    """The host:port a botocore connection error was talking to (its `endpoint_url`), if it says."""
    from urllib.parse import urlsplit

    url = (getattr(exc, "kwargs", None) or {}).get("endpoint_url")
    if not url:
        request = getattr(exc, "request", None)  # ConnectionClosedError and friends carry the request
        url = getattr(request, "url", None)
    return (urlsplit(str(url)).netloc or None) if url else None


class RetriesExhausted(OperationFailed):
    """A call kept failing with retryable errors; the run stops (and can be resumed)."""

    def __init__(self, api: str, attempts: int, cause: BaseException) -> None:
        code = error_code(cause) or type(cause).__name__
        host = _host_of(cause)
        super().__init__(
            f"{api} still failing after {attempts} attempts ({code}{f' from {host}' if host else ''})",
            hint="re-run the same command to resume from the checkpoint; lower --rate if throttled"
            if code not in _UNREACHABLE else "check that the endpoint is reachable (--endpoint-url, the network); "
                                             "re-run the same command to resume from the checkpoint",
        )
        self.api = api
        self.code = code


class RateLimiter:
    """A token bucket per key (an API name): at most `rate` calls/second, bursts up to `burst`.

    Thread-safe. `acquire` blocks (through the injected `sleep`) until a token is available.
    """

    def __init__(self, rate: float, burst: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate > 0:
            raise InputRejected(f"rate must be a positive number of calls per second, got {rate!r}")
        if burst < 1:
            raise InputRejected(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._interval = 1.0 / self.rate
        self._tolerance = (self.burst - 1.0) * self._interval
        self._tat: dict[str, float] = {}  # theoretical arrival time of the next call, per key
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def reserve(self, key: str) -> float:
        """Take the next token for `key`; return how long to wait before using it."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat.get(key, now), now)
            delay = max(0.0, tat - self._tolerance - now)
            self._tat[key] = tat + self._interval
            return delay

    def peek(self, key: str) -> float:
        """How long a call to `key` would wait now (takes nothing)."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat.get(key, now), now)
            return max(0.0, tat - self._tolerance - now)

    def acquire(self, key: str) -> float:
        delay = self.reserve(key)
        if delay > 0:
            self._sleep(delay)
        return delay


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n))."""

    max_attempts: int = 8
    base_delay: float = 0.2
    max_delay: float = 20.0
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InputRejected("max_attempts must be at least 1")

    def delay(self, retry_number: int) -> float:
        return self.rng.uniform(0.0, min(self.max_delay, self.base_delay * (2 ** retry_number)))

    @classmethod
    def seeded(cls, seed: int, **kwargs: Any) -> RetryPolicy:
        return cls(rng=random.Random(seed), **kwargs)


@dataclass(frozen=True)
class CallCounts:
    reads: int = 0
    writes: int = 0
    retries: int = 0
    throttled: int = 0
    by_api: tuple[tuple[str, int], ...] = ()


class CallStats:
    """Thread-safe counters of the requests actually sent (every attempt counts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_api: Counter[str] = Counter()
        self.reads = 0
        self.writes = 0
        self.retries = 0
        self.throttled = 0

    def sent(self, api: str, *, retry: bool) -> None:
        with self._lock:
            self._by_api[api] += 1
            if is_write(api):
                self.writes += 1
            else:
                self.reads += 1
            if retry:
                self.retries += 1

    def throttle(self) -> None:
        with self._lock:
            self.throttled += 1

    def counts(self) -> CallCounts:
        with self._lock:
            return CallCounts(self.reads, self.writes, self.retries, self.throttled,
                              tuple(sorted(self._by_api.items())))


@lru_cache(maxsize=8)
def _paginator_model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_paginator_model(service)


def _op_name(client: Any, api: str) -> str:
    return str(client.meta.method_to_api_mapping[api])


class Caller:
    """One client, its limiters, the retry policy and the counters."""

    def __init__(self, client: Any, *, writes: RateLimiter | None = None,
                 reads: RateLimiter | None = None, retry: RetryPolicy | None = None,
                 stats: CallStats | None = None, page_size: int = 250,
                 limits: AdaptiveLimiter | None = None) -> None:
        self.client = client
        self.writes: RateLimiter | AdaptiveLimiter | None = limits or writes
        self.reads: RateLimiter | AdaptiveLimiter | None = limits or reads
        self.limits = limits
        self.retry = retry or RetryPolicy()
        self.stats = stats or CallStats()
        self.page_size = page_size

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name)

    def limiter_for(self, api: str) -> RateLimiter | AdaptiveLimiter | None:
        return self.writes if is_write(api) else self.reads

    def rate_for(self, api: str) -> float | None:
        limiter = self.limiter_for(api)
        if limiter is None:
            return None
        return limiter.rate_for(api) if isinstance(limiter, AdaptiveLimiter) else limiter.rate

    def call(self, api: str, *, verify: Callable[[], bool] | None = None, **kwargs: Any) -> Any:
        """Call `api` with rate limiting and retries. `verify()` -> True means "already applied"."""
        method = getattr(self.client, api)
        limiter = self.limiter_for(api)
        retries = 0
        ambiguous = False
        while True:
            if ambiguous and verify is not None and verify():
                return {}
            if limiter is not None:
                limiter.acquire(api)
            self.stats.sent(api, retry=retries > 0)
            try:
                result = method(**kwargs)
            except Exception as exc:
                failure = classify(exc)
                if failure is None:
                    raise
                if failure is Failure.THROTTLED:
                    self.stats.throttle()
                    if isinstance(limiter, AdaptiveLimiter):
                        limiter.throttled(api)
                retries += 1
                if retries >= self.retry.max_attempts:
                    raise RetriesExhausted(api, retries, exc) from exc
                ambiguous = ambiguous or failure is Failure.TRANSIENT
                self.retry.sleep(self.retry.delay(retries - 1))
                continue
            if isinstance(limiter, AdaptiveLimiter):
                limiter.succeeded(api)
            return result

    def pages(self, api: str, *, on_page: Callable[[int, int | None, bool], None] | None = None,
              **kwargs: Any) -> Iterator[Any]:
        """Every item of a paginated list call; each page is one retried, rate-limited call.
        `on_page(items, page size asked, has a continuation token)` sees every page."""
        model = _paginator_model(self.client.meta.service_model.service_name)
        config = model.get_paginator(_op_name(self.client, api))
        limit_key = config.get("limit_key")
        if limit_key and limit_key not in kwargs:
            kwargs[limit_key] = self.page_size
        token = None
        seen: set[str] = set()
        while True:
            if token is not None:
                kwargs[config["input_token"]] = token
            response = self.call(api, **kwargs)
            items = response.get(config["result_key"], [])
            token = response.get(config["output_token"])
            if on_page is not None:
                on_page(len(items), kwargs.get(limit_key) if limit_key else None, bool(token))
            yield from items
            if not token or token in seen:
                return
            seen.add(token)
