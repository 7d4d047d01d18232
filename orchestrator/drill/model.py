"""What a drill is asked to do and what it measured: options, events, per-device outcomes, and the
recovery-time model (`project`) that turns detection, TTL and device backoff into an RTO.

No AWS, MQTT or DNS here: the report, the benchmark and the tests read these types.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Routing(str, Enum):
    FAILOVER = "failover"
    LATENCY = "latency"


class Phase(str, Enum):
    WARM_UP = "warm-up"
    OUTAGE = "outage"
    FAILOVER = "failover"
    FAILBACK = "failback"


# The device SDK's reconnect policy (awscrt MQTT 5 defaults, set explicitly on every client so the
# model below and the devices agree): exponential backoff with full jitter between 1 s and 120 s.
SDK_MIN_RECONNECT_S = 1.0
SDK_MAX_RECONNECT_S = 120.0

# Route 53's values as the DNS program declares them (programs/dns.py): the drill scales them.
ROUTE53_INTERVAL_S = 30.0
ROUTE53_THRESHOLD = 3
RECORD_TTL_S = 60


@dataclass(frozen=True)
class DrillOptions:
    devices: int = 5
    routing: Routing = Routing.FAILOVER
    kill: str | None = None  # the region whose broker dies (default: the primary)
    duration: float = 60.0  # seconds to wait for every device to come back after the kill
    time_scale: float = 0.1  # Route 53 intervals and record TTLs are multiplied by this
    publish_interval: float = 0.5  # seconds between two telemetry messages of one device
    transitions: bool = True  # run failover and failback through the orchestrator after the outage
    control: str | None = None  # failover control of the drill's world: dns | arc (default: the env's)
    connect_quota: float = 500.0  # IoT Core's account CONNECT/s per region (admission.py), on the time scale


@dataclass(frozen=True)
class HealthTransition:
    at: float
    check_id: str
    fqdn: str
    healthy: bool


@dataclass(frozen=True)
class DnsChange:
    at: float
    client_region: str | None
    before: str | None
    after: str | None


@dataclass(frozen=True)
class DeviceOutcome:
    thing: str
    location: str  # the region a latency record would call nearest
    before: str | None  # region connected to before the kill
    after: str | None  # region connected to after it
    moved: bool  # the device was connected to the killed region
    rto: float | None  # kill -> connected in the surviving region (None: never, or not affected)
    detection: float | None  # kill -> DNS answers the surviving region
    ttl: float | None  # DNS change -> the device's cached answer expired
    backoff: float | None  # cache expired -> connected (waiting for the SDK's next attempt, and the handshake)
    attempts: int  # connect attempts between the kill and the reconnection
    published: int
    received: int  # distinct sequence numbers some broker received
    lost: int  # published (handed to the SDK) and never received by the region's telemetry sink
    lost_after_ack: int  # ... of which a broker had acknowledged (PUBACK) before it died
    duplicated: int  # received more than once
    shadow_reported_found: bool | None  # on arrival, the new region's shadow held the last reported state
    shadow_desired_found: bool | None  # ... and the desired state
    shadow_restored: bool  # the shadow in the surviving region holds the device's state at the end
    landed_where_acked: int = 0  # acknowledged, and in the lake of the region that acknowledged it (landed.py)
    landed_elsewhere: int = 0  # acknowledged, and only in another region's lake
    acked_never_landed: int = 0  # acknowledged, and in no lake
    # cloud to device (c2d.py), measured by the device: on arrival in the survivor, its configuration
    # topic delivered a retained message on subscribe (None: not affected or never arrived) ...
    retained_found: bool | None = None
    retained_current: bool | None = None  # ... the one it last had from the killed region
    # QoS 1 commands enqueued in the killed region's command outbox (PutItem answered) before the kill
    # (outbox_world.py), then published through its broker
    commands_issued: int = 0
    commands_delivered_before: int = 0  # ... that reached the device before the kill
    commands_delivered_after: int = 0  # ... that first reached it after the kill, in the survivor (its replay)
    commands_lost: int = 0  # ... that never reached it
    commands_duplicates_dropped: int = 0  # receipts of a command it already had: dropped by commandId
    commands_lost_within_replication: int = 0  # lost ones enqueued within the replication delay before the kill


@dataclass(frozen=True)
class Stats:
    p50: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        if not values:
            return cls(None, None, None)
        s = sorted(values)
        return cls(percentile(s, 50), percentile(s, 95), s[-1])


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class StepRecord:
    operation: str
    ok: bool
    seconds: float
    detail: str
    at: float | None = None  # wall-clock start (the timeline's failover / failback markers); None: not timed


class DemoStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"  # a failed check: the drill fails (exit 1)
    SKIPPED = "skipped"  # not asked for by this run (e.g. --no-transitions): says why, fails nothing


@dataclass(frozen=True)
class ProvisionDemo:
    """A device with only a claim certificate provisions itself in the survivor (plane_demo.py)."""

    status: DemoStatus
    why: str = ""  # one line when not ok
    claim_connect: str = ""  # what the survivor's front door answered the claim certificate's CONNECT
    thing: str | None = None  # the thing RegisterThing made from the template
    certificate_id: str | None = None  # the certificate CreateKeysAndCertificate issued
    connect: str = ""  # what the front door answered the new certificate's CONNECT


@dataclass(frozen=True)
class CredentialsDemo:
    """A device using a role alias gets AWS credentials in the survivor, and they work."""

    status: DemoStatus
    why: str = ""
    thing: str | None = None
    role_alias: str = ""
    caller_arn: str | None = None  # STS GetCallerIdentity signed with the credentials (never the keys)


@dataclass(frozen=True)
class SleeperCommands:
    """A device asleep (disconnected) while the cloud queued commands for it in the region that then
    died; it wakes after the failover and connects to the survivor (outbox_world.py counts)."""

    thing: str
    woke_in: str | None  # the region it connected to on waking (None: it never connected)
    issued: int  # enqueued in the killed region before the kill
    delivered_after: int  # received in the survivor: replayed from the survivor's replica
    duplicates_dropped: int
    lost: int
    lost_within_replication: int  # ... enqueued within the replication delay before the kill


@dataclass(frozen=True)
class OutboxDemo:
    """The command outbox through the failover: the global table's replication in the local world and
    each region's outbox function (its invocations and errors: what Lambda's Errors metric counts)."""

    replication_delay_s: float
    sleepers: tuple[SleeperCommands, ...] = ()
    invocations: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)  # region -> the first few function errors
    # item changes held because the killed region was down, read once the sleepers are served: what it
    # wrote and had not replicated when it died, and what the survivor wrote for it since
    held_at_kill: int = 0
    replicated: int = 0  # item changes replicated between the regions during the drill


@dataclass(frozen=True)
class JobDemo:
    """A job part-done in the primary completes in the survivor (the failover's carry-jobs step),
    measured by the devices, which run it through the jobs data plane of the region they are
    connected to."""

    status: DemoStatus
    why: str = ""
    job: str = ""  # the job id in the primary
    carried_as: str | None = None  # the job id the devices found in the survivor
    targets: int = 0
    succeeded_before: int = 0  # SUCCEEDED in the primary before the kill
    in_progress_at_kill: int = 0  # started in the primary, unfinished when it died
    completed_after: int = 0  # SUCCEEDED in the survivor after the failover
    executed_twice: int = 0  # devices that ran the job's document to SUCCEEDED more than once
    never_completed: int = 0  # targets that SUCCEEDED nowhere


@dataclass(frozen=True)
class DrillResult:
    options: DrillOptions
    env: str
    domain: str
    regions: tuple[str, ...]
    killed: str
    survivor: str
    started: float
    killed_at: float
    detected_at: float | None  # the killed region's health check turned unhealthy
    dns_changed_at: float | None  # the first answer without the killed region
    all_back_at: float | None
    devices: tuple[DeviceOutcome, ...]
    steps: tuple[StepRecord, ...]
    health: tuple[HealthTransition, ...]
    dns: tuple[DnsChange, ...]
    samples: tuple[tuple[float, dict[str, int], dict[str, int]], ...]  # (t, connected per region, msgs/s)
    refused_unregistered: bool | None  # a device with an unsynced certificate was refused in the survivor
    scaled: dict[str, float] = field(default_factory=dict)  # the intervals actually used
    control: str = "dns"  # the failover control the transitions used
    files: dict[str, str] = field(default_factory=dict)
    admission: dict[str, dict[str, int]] = field(default_factory=dict)  # region -> CONNECTs admitted/throttled
    retained_changed_after_sync: str | None = None  # the device whose retained configuration changed after the sync
    # a device whose AttachPolicy the promotion's sync missed: region -> what its CONNECT got there
    unattached: dict[str, str] = field(default_factory=dict)
    refused_unattached: bool | None = None  # accepted in the primary, "not authorized" in the secondary
    # the device-management plane in the survivor after the failover (issue 26; plane_demo.py)
    provisioned_in_survivor: ProvisionDemo | None = None
    role_alias_credentials: CredentialsDemo | None = None
    job: JobDemo | None = None
    outbox: OutboxDemo | None = None  # the command outbox (None: a drill of an older world)

    @property
    def demos(self) -> dict[str, ProvisionDemo | CredentialsDemo | JobDemo]:
        found = {"provisioned_in_survivor": self.provisioned_in_survivor,
                 "role_alias_credentials": self.role_alias_credentials, "job": self.job}
        return {k: v for k, v in found.items() if v is not None}

    @property
    def affected(self) -> list[DeviceOutcome]:
        return [d for d in self.devices if d.moved]

    def rto(self) -> Stats:
        return Stats.of([d.rto for d in self.affected if d.rto is not None])

    def component(self, name: str) -> Stats:
        return Stats.of([getattr(d, name) for d in self.affected if getattr(d, name) is not None])

    @property
    def ok(self) -> bool:
        return bool(self.affected) and all(d.rto is not None for d in self.affected) and all(
            d.lost == 0 for d in self.devices) and all(s.ok for s in self.steps) and all(
            d.status is not DemoStatus.FAILED for d in self.demos.values())

    def outbox_totals(self) -> dict[str, Any] | None:
        """Commands enqueued in the killed region before the kill, fleet and sleepers together."""
        if self.outbox is None:
            return None
        sleepers = self.outbox.sleepers
        return {
            "replication_delay_s": self.outbox.replication_delay_s,
            "enqueued_before_kill": sum(d.commands_issued for d in self.devices) + sum(s.issued for s in sleepers),
            "delivered_before_kill": sum(d.commands_delivered_before for d in self.devices),
            "delivered_after_in_survivor": sum(d.commands_delivered_after for d in self.devices)
            + sum(s.delivered_after for s in sleepers),
            "duplicates_dropped": sum(d.commands_duplicates_dropped for d in self.devices)
            + sum(s.duplicates_dropped for s in sleepers),
            "lost": sum(d.commands_lost for d in self.devices) + sum(s.lost for s in sleepers),
            "lost_within_replication_delay": sum(d.commands_lost_within_replication for d in self.devices)
            + sum(s.lost_within_replication for s in sleepers),
            "function_errors": sum(len(e) for e in self.outbox.errors.values()),
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"]["routing"] = self.options.routing.value
        data["summary"] = {"ok": self.ok, "rto": asdict(self.rto()),
                           **{k: asdict(self.component(k)) for k in ("detection", "ttl", "backoff")},
                           "affected": len(self.affected),
                           "lost": sum(d.lost for d in self.devices),
                           "lost_after_ack": sum(d.lost_after_ack for d in self.devices),
                           "duplicated": sum(d.duplicated for d in self.devices),
                           **{k: sum(getattr(d, k) for d in self.devices)
                              for k in ("landed_where_acked", "landed_elsewhere", "acked_never_landed",
                                        "commands_issued", "commands_delivered_before", "commands_delivered_after",
                                        "commands_lost", "commands_duplicates_dropped",
                                        "commands_lost_within_replication")},
                           "outbox": self.outbox_totals(),
                           "retained_found": sum(1 for d in self.affected if d.retained_found),
                           "retained_current": sum(1 for d in self.affected if d.retained_current),
                           "plane": {name: {"status": d.status.value, "why": d.why}
                                     for name, d in self.demos.items()}}
        for name in self.demos:
            data[name]["status"] = self.demos[name].status.value
        if self.job is not None:
            data["summary"]["plane"]["job"].update(
                {k: getattr(self.job, k) for k in ("targets", "succeeded_before", "completed_after", "executed_twice")})
        return data


@dataclass(frozen=True)
class Projection:
    interval: float
    threshold: int
    ttl: float
    rto: Stats
    detection: float
    ttl_wait: Stats
    backoff: Stats


def backoff_schedule(rng: random.Random, horizon: float, min_s: float = SDK_MIN_RECONNECT_S,
                     max_s: float = SDK_MAX_RECONNECT_S) -> list[float]:
    """Connect attempt times after a disconnect at 0: exponential backoff with full jitter."""
    t, k, times = 0.0, 0, [0.0]
    while t < horizon:
        t += rng.uniform(0, min(max_s, min_s * 2 ** k))
        k += 1
        times.append(t)
    return times


def project(interval: float = ROUTE53_INTERVAL_S, threshold: int = ROUTE53_THRESHOLD, ttl: float = RECORD_TTL_S,
            samples: int = 5000, seed: int = 15, handshake: float = 0.0) -> Projection:
    """The drill's device, on paper: RTO = detection + TTL wait + backoff wait.

    Detection: the first failing probe lands at a uniform point of the check interval after the kill;
    the check flips after `threshold` failures in a row, and Route 53 answers the survivor from then on.
    The device: the SDK attempts at its backoff schedule from the disconnect; each attempt resolves
    the name, through a cache that keeps an answer for `ttl`; it connects at the first attempt whose
    answer is the survivor. As in the drill's measurement, TTL wait = from the flip until the answer
    cached before it expires, backoff wait = from then until the connecting attempt."""
    rng = random.Random(seed)
    rtos, ttls, backoffs, detections = [], [], [], []
    for _ in range(samples):
        detection = (threshold - 1) * interval + rng.uniform(0, interval)
        cached_until, cached_new, old_expiry, back = -1.0, False, detection, 0.0
        for t in backoff_schedule(rng, detection + ttl + 2 * SDK_MAX_RECONNECT_S):
            if t >= cached_until:  # cache miss: the resolver answers as Route 53 does at time t
                cached_new, cached_until = t >= detection, t + ttl
                if not cached_new:
                    old_expiry = cached_until
            if cached_new:
                back = t
                break
        fresh = min(max(detection, old_expiry), back)
        rtos.append(back + handshake)
        detections.append(detection)
        ttls.append(fresh - detection)
        backoffs.append(back - fresh + handshake)
    return Projection(interval, threshold, ttl, Stats.of(rtos), sum(detections) / len(detections), Stats.of(ttls),
                      Stats.of(backoffs))


@dataclass(frozen=True)
class FleetProjection:
    """One failover of a whole fleet on paper, with the survivor's CONNECT quotas: RTO = detection +
    DNS (the cached old answer expiring) + backoff (waiting for the next attempt once the answer is
    fresh) + admission (refused by the account's CONNECT/s or the client id's 1/s, retrying on the
    device's own backoff until let in). Stats are over devices (pooled over trials)."""

    devices: int
    connect_quota: float
    interval: float
    threshold: int
    ttl: float
    min_backoff: float
    max_backoff: float
    rto: Stats
    detection: Stats
    dns: Stats
    backoff: Stats
    admission: Stats
    throttled_per_device: float  # refused CONNECTs per device, mean

    @property
    def admission_floor(self) -> float:
        """The quota's lower bound on the last admission: devices / CONNECT per second."""
        return self.devices / self.connect_quota


def project_fleet(devices: int, connect_quota: float = 500.0, interval: float = ROUTE53_INTERVAL_S,
                  threshold: int = ROUTE53_THRESHOLD, ttl: float = RECORD_TTL_S,
                  min_backoff: float = SDK_MIN_RECONNECT_S, max_backoff: float = SDK_MAX_RECONNECT_S,
                  client_rate: float = 1.0, trials: int = 1, seed: int = 25,
                  sample: int | None = None) -> FleetProjection:
    """Every device loses its connection at 0 and retries on exponential backoff with full jitter
    (`min_backoff` doubling to `max_backoff`); each attempt resolves through a cache kept for `ttl`;
    the health check flips at `detection` (as in `project`, one draw per trial: the whole fleet shares
    it). An attempt with the survivor's answer is let in when the client id's last survivor attempt is
    at least 1/`client_rate` old and the survivor's account bucket (`connect_quota` per second,
    a second's burst) has a token; otherwise it is refused and the device waits for its next attempt.
    Attempts are processed in time order across the fleet, so the bucket sees the real arrival order.

    `sample`: above that many devices, `sample` of them are simulated against the account quota scaled
    by sample / devices (the same load per token: admission time is devices / quota; each device's
    schedule is independent of the others'), which keeps 1M devices to seconds instead of hours."""
    import heapq

    if devices < 1 or connect_quota <= 0 or trials < 1 or (sample is not None and sample < 1):
        raise ValueError("devices, connect_quota, trials and sample must be positive")
    fleet, quota = devices, connect_quota
    if sample is not None and devices > sample:
        devices, connect_quota = sample, connect_quota * sample / devices
    rng = random.Random(seed)
    rtos: list[float] = []
    dets: list[float] = []
    dnss: list[float] = []
    backs: list[float] = []
    adms: list[float] = []
    refused = 0
    for _ in range(trials):
        detection = (threshold - 1) * interval + rng.uniform(0, interval)
        burst = max(1.0, connect_quota)  # one second's worth of CONNECTs
        tokens, bucket_at = burst, 0.0
        cached_until = [-1.0] * devices
        cached_new = [False] * devices
        old_expiry = [detection] * devices
        first_fresh: list[float | None] = [None] * devices
        last_try = [-math.inf] * devices
        step = [0] * devices
        heap = [(0.0, i) for i in range(devices)]
        heapq.heapify(heap)
        while heap:
            t, i = heapq.heappop(heap)
            if t >= cached_until[i]:
                cached_new[i], cached_until[i] = t >= detection, t + ttl
                if not cached_new[i]:
                    old_expiry[i] = cached_until[i]
            if cached_new[i]:
                if first_fresh[i] is None:
                    first_fresh[i] = t
                admitted = False
                if t - last_try[i] >= 1.0 / client_rate:
                    tokens = min(burst, tokens + (t - bucket_at) * connect_quota)
                    bucket_at = t
                    if tokens >= 1.0:
                        tokens -= 1.0
                        admitted = True
                last_try[i] = t
                if admitted:
                    ff = first_fresh[i]
                    assert ff is not None
                    fresh = min(max(detection, old_expiry[i]), ff)
                    rtos.append(t)
                    dets.append(detection)
                    dnss.append(fresh - detection)
                    backs.append(ff - fresh)
                    adms.append(t - ff)
                    continue
                refused += 1
            heapq.heappush(heap, (t + rng.uniform(0, min(max_backoff, min_backoff * 2 ** step[i])), i))
            step[i] += 1
    return FleetProjection(fleet, quota, interval, threshold, ttl, min_backoff, max_backoff,
                           Stats.of(rtos), Stats.of(dets), Stats.of(dnss), Stats.of(backs), Stats.of(adms),
                           refused / (devices * trials))
