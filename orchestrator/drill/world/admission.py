"""IoT Core's CONNECT quotas at a region's front door: an account-level CONNECT/s bucket and one
CONNECT per second per client id, on the drill's time scale.

AWS documents both quotas per account and region (docs/field-notes-iot.md): "Connect requests per
second per account" (adjustable; 500 in the developer guide's table, 3,000 in the large regions
today) and "Connect requests per second per client ID" (1, not adjustable). A CONNECT over either
quota is refused: IoT Core drops the connection without a session (lifecycle `disconnectReason`
THROTTLED, metric `Connect.Throttle`), and the device's next attempt follows its own backoff.

The drill applies the verdict where it sees every attempt: the devices' network stub
(`DeviceNetwork`, which opens one tunnel per MQTT connection attempt) asks `admit` before it
connects to the broker and answers 429 when refused, so the device sees a failed attempt, as on
AWS. Every request counts towards the client id's limit, admitted or not (the quota is on requests);
a request refused by its client id's limit does not spend the account's bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

ACCOUNT_CONNECTS_PER_S = 500.0  # the conservative default (developer guide); 3,000 in the large regions today
CLIENT_CONNECTS_PER_S = 1.0  # not adjustable
EPSILON = 1e-9  # clock arithmetic: one second later is never refused for being 0.999999999 s


class Verdict(str, Enum):
    ADMITTED = "admitted"
    THROTTLED_ACCOUNT = "throttled-account"  # over the account's CONNECT/s in that region
    THROTTLED_CLIENT = "throttled-client"  # a second CONNECT within a second for the client id


@dataclass
class TokenBucket:
    """`rate` tokens per second, holding at most `burst` (IoT Core's per-second quota: burst = rate)."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def level(self, now: float) -> float:
        """The tokens held at `now` (full at the first look; a clock that went back refills nothing)."""
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        return self.tokens

    def take(self, now: float) -> bool:
        if self.level(now) >= 1.0 - EPSILON:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class RegionCounts:
    admitted: int = 0
    throttled_account: int = 0
    throttled_client: int = 0


@dataclass
class Admission:
    """One region's (one account's) front door. Rates are AWS's per real second; `time_scale` is the
    drill's (0.1: ten drill seconds pass in one): the quotas apply per scaled second, so the ratio
    of fleet size to quota, which sets the admission time, is the real one."""

    account_rate: float = ACCOUNT_CONNECTS_PER_S
    client_rate: float = CLIENT_CONNECTS_PER_S
    time_scale: float = 1.0
    clock: Callable[[], float] = time.monotonic
    counts: dict[str, RegionCounts] = field(default_factory=dict)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _last: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.account_rate <= 0 or self.client_rate <= 0 or self.time_scale <= 0:
            raise ValueError("CONNECT quotas and the time scale must be positive")

    def admit(self, region: str, client_id: str) -> Verdict:
        """Count one CONNECT request of `client_id` in `region` and say whether it is let in."""
        now = self.clock()
        with self._lock:
            counts = self.counts.setdefault(region, RegionCounts())
            key = (region, client_id)
            last = self._last.get(key)
            self._last[key] = now
            if last is not None and now - last < self.time_scale / self.client_rate - EPSILON:
                counts.throttled_client += 1
                return Verdict.THROTTLED_CLIENT
            rate = self.account_rate / self.time_scale
            bucket = self._buckets.setdefault(region, TokenBucket(rate, max(1.0, self.account_rate)))
            if not bucket.take(now):
                counts.throttled_account += 1
                return Verdict.THROTTLED_ACCOUNT
            counts.admitted += 1
            return Verdict.ADMITTED
