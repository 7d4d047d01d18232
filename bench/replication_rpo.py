"""Benchmark: the recovery point of continuous replication, locally (a moto server on 127.0.0.1).

A producer makes changes in the origin region at a steady rate and emits the stream records the
topic rules and the global table would deliver (new things with their certificate and policy,
attribute updates, group memberships, classic and named shadow updates); N consumers, each one
replication function (one per stream shard, as Lambda runs them), take what has arrived in
batches (at most 100, as the event source mapping) and apply it through
`orchestrator.registry.replicate.Replicator` into the destination region.

Measured per run: apply latency (the time from the change in the origin to its apply in the
destination: the `ReplicationLag` metric the function publishes) p50/p99/max, the events per
second each function sustained while busy, and whether the run kept up (backlog at the end).
A second set of runs adds a 50 ms round trip to every AWS call (moto answers in a few ms; real
IoT control-plane calls from Lambda take tens of ms) and the default per-API limits of the
function's `Caller` (10 writes/s, 20 reads/s).

    .venv/bin/python bench/replication_rpo.py            # print the table
    .venv/bin/python bench/replication_rpo.py --write    # also update docs/performance.md

Bounded: every run lasts `--seconds` of production plus at most `--drain` seconds of draining.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from bench.registry_sync import moto_server  # noqa: E402
from orchestrator.aws import AwsContext, client  # noqa: E402
from orchestrator.registry.calls import RetryPolicy  # noqa: E402
from orchestrator.registry.replicate import DynamoAppliedStore, Region, Replicator  # noqa: E402
from tests.moto_server import reset  # noqa: E402
from tests.ops.registry_world import device_policy, make_pem  # noqa: E402
from tests.ops.replication_world import applied_table, payload, rule_item, shadow_item, stream_record  # noqa: E402
from tests.quota_proxy import quota_proxy  # noqa: E402

SECTION = "Continuous replication: recovery point"
COMMAND = ".venv/bin/python bench/replication_rpo.py --write"
SRC, DST = "eu-west-1", "eu-central-1"
BATCH = 100
# one cycle of 10 changes: what a fleet's control plane does (shadows dominate)
MIX = ("create", "update", "shadow", "shadow", "named", "membership", "update", "shadow", "named", "shadow")


@dataclass(frozen=True)
class RunResult:
    rate: float
    functions: int
    latency_ms: float
    quotas: bool
    events: int
    applied: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    per_function_eps: float
    backlog: int


def region(ctx: AwsContext, name: str, latency_s: float, limited: bool) -> Region:
    iot = client(ctx, "iot", name, own_retries=True, max_pool_connections=16)
    data = client(ctx, "iot-data", name, own_retries=True, max_pool_connections=16)
    if latency_s:
        for c in (iot, data):
            c.meta.events.register("before-send", lambda **_: time.sleep(latency_s))
    rate = 10.0 if limited else 100_000.0
    return Region.of(name, iot, data, rate=rate, retry=RetryPolicy(max_attempts=4))


class Producer(threading.Thread):
    """Changes in the origin at `rate` per second for `seconds`; each emits its stream record."""

    def __init__(self, ctx: AwsContext, out: queue.Queue[dict[str, Any]], rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.iot = client(ctx, "iot", SRC, max_pool_connections=4)
        self.out, self.rate, self.seconds = out, rate, seconds
        self.things: list[str] = []
        self.count = 0
        self.serial = 0

    def setup(self) -> None:
        self.iot.create_policy(policyName="device", policyDocument=device_policy())
        self.iot.create_thing_group(thingGroupName="fleet")
        for _ in range(5):
            self.new_thing(emit=False)

    def new_thing(self, *, emit: bool = True) -> None:
        self.serial += 1
        name = f"dev-{self.serial:05d}"
        self.iot.create_thing(thingName=name, attributePayload={"attributes": {"fw": "1"}})
        cert = self.iot.register_certificate_without_ca(certificatePem=make_pem(name, self.serial), status="ACTIVE")
        self.iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
        self.iot.attach_policy(policyName="device", target=cert["certificateArn"])
        self.things.append(name)
        if emit:
            self.emit(payload("thing", thingName=name, operation="CREATED", timestamp=_ms(), eventId=f"c-{name}",
                              versionNumber=1, attributes={"fw": "1"}))
        else:  # seeded before the run: its create is replicated first, outside the measurement
            self.out.put(stream_record(rule_item(payload("thing", thingName=name, timestamp=_ms() - 60_000,
                                                         eventId=f"s-{name}", attributes={"fw": "1"}), SRC), DST))

    def emit(self, event: dict[str, Any]) -> None:
        self.out.put(stream_record(rule_item(event, SRC), DST))

    def run(self) -> None:
        start = time.perf_counter()
        interval = 1.0 / self.rate
        while True:
            due = start + self.count * interval
            if due - start >= self.seconds:
                return
            time.sleep(max(0.0, due - time.perf_counter()))
            self.change(MIX[self.count % len(MIX)])
            self.count += 1

    def change(self, kind: str) -> None:
        n = self.count
        # changes touch things created at least one cycle earlier (their create is replicated by then)
        thing = self.things[(n * 7) % max(1, len(self.things) - 3)]
        if kind == "create":
            self.new_thing()
        elif kind == "update":
            attributes = {"fw": str(n)}
            self.iot.update_thing(thingName=thing, attributePayload={"attributes": attributes, "merge": False})
            self.emit(payload("thing", thingName=thing, operation="UPDATED", timestamp=_ms(), eventId=f"u-{n}",
                              versionNumber=n, attributes=attributes))
        elif kind == "membership":
            self.emit(payload("membership", operation="ADDED", timestamp=_ms(), eventId=f"m-{n}",
                              groupArn=f"arn:aws:iot:{SRC}:123456789012:thinggroup/fleet",
                              thingArn=f"arn:aws:iot:{SRC}:123456789012:thing/{thing}"))
        else:
            now = time.time()
            doc = {"current": {"state": {"reported": {"temp": n % 40, "seq": n}}, "version": n},
                   "timestamp": int(now)}
            item = shadow_item(doc, thing, SRC, "config" if kind == "named" else "")
            item["eventTimeMs"] = int(now * 1000)  # the document's own time is in whole seconds
            self.out.put(stream_record(item, DST))


def _ms() -> int:
    return int(time.time() * 1000)


def consume(rep: Replicator, inbox: queue.Queue[dict[str, Any]], stop: threading.Event,
            lags: list[int], stats: dict[str, float], lock: threading.Lock) -> None:
    busy = 0.0
    applied = failed = 0
    while not (stop.is_set() and inbox.empty()):
        try:
            batch = [inbox.get(timeout=0.05)]
        except queue.Empty:
            continue
        while len(batch) < BATCH:
            try:
                batch.append(inbox.get_nowait())
            except queue.Empty:
                break
        t0 = time.perf_counter()
        result = rep.handle_batch(batch)
        busy += time.perf_counter() - t0
        applied += sum(1 for r in result.results if r.lag_ms is not None)
        failed += len(result.failures)
        with lock:
            lags.extend(r.lag_ms for r in result.results if r.lag_ms is not None)
    with lock:
        stats["busy"] += busy
        stats["applied"] += applied
        stats["failed"] += failed


def one_run(url: str, rate: float, functions: int, seconds: float, drain: float, latency_s: float,
            fn_url: str | None = None) -> RunResult:
    """`fn_url`: where the functions' AWS calls go (the quota proxy), else moto directly."""
    reset(url)
    ctx = AwsContext(endpoint_url=url)
    fn_ctx = AwsContext(endpoint_url=fn_url or url)
    dst_iot = client(ctx, "iot", DST)
    dst_iot.create_thing_group(thingGroupName="fleet")
    table = applied_table(ctx, DST)
    inboxes: list[queue.Queue[dict[str, Any]]] = [queue.Queue() for _ in range(functions)]
    merged: queue.Queue[dict[str, Any]] = queue.Queue()
    producer = Producer(ctx, merged, rate, seconds)
    producer.setup()
    seeded = len(producer.things)  # their creates are replicated before the measured load
    lags: list[int] = []
    stats = {"busy": 0.0, "applied": 0.0, "failed": 0.0}
    lock = threading.Lock()
    stop = threading.Event()
    reps = [Replicator(region(fn_ctx, DST, latency_s, bool(latency_s)),
                       DynamoAppliedStore(client(ctx, "dynamodb", DST), table),
                       lambda r: region(fn_ctx, r, latency_s, bool(latency_s)),
                       members=frozenset({SRC, DST})) for _ in range(functions)]

    def route() -> None:  # a stream shard per function: records of one thing stay on one shard
        while not (stop.is_set() and merged.empty()):
            try:
                record = merged.get(timeout=0.05)
            except queue.Empty:
                continue
            key = record["dynamodb"]["NewImage"].get("thingName", {}).get("S") or \
                record["dynamodb"]["NewImage"].get("thingArn", {}).get("S", "")
            inboxes[hash(key.rsplit("/", 1)[-1]) % functions].put(record)

    # seeded things first (not measured), then the steady load
    workers = [threading.Thread(target=consume, args=(rep, inboxes[i], stop, lags, stats, lock), daemon=True)
               for i, rep in enumerate(reps)]
    router = threading.Thread(target=route, daemon=True)
    for t in (*workers, router):
        t.start()
    deadline = time.monotonic() + drain
    while time.monotonic() < deadline:  # until every seeded create was applied (bounded)
        with lock:
            if len(lags) >= seeded:
                break
        time.sleep(0.05)
    with lock:
        lags.clear()
    producer.start()
    producer.join()
    deadline = time.monotonic() + drain
    while (not merged.empty() or any(not q.empty() for q in inboxes)) and time.monotonic() < deadline:
        time.sleep(0.05)
    backlog = merged.qsize() + sum(q.qsize() for q in inboxes)
    stop.set()
    for t in (*workers, router):
        t.join(timeout=drain + 60)
    ordered = sorted(lags)
    events = producer.count

    def pct(p: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(p * len(ordered)))]) if ordered else float("nan")

    busy = stats["busy"] / functions
    return RunResult(rate, functions, latency_s * 1000, fn_url is not None, events, len(ordered), int(stats["failed"]),
                     statistics.median(ordered) if ordered else float("nan"), pct(0.99),
                     float(ordered[-1]) if ordered else float("nan"),
                     (stats["applied"] / functions) / busy if busy else 0.0, backlog)


def render(results: list[RunResult], seconds: float) -> str:
    def extra(r: RunResult) -> str:
        if not r.latency_ms:
            return "none"
        return f"{r.latency_ms:g} ms + 10 writes/s per API" + (" + AWS quotas (proxy)" if r.quotas else "")

    rows = "\n".join(
        f"| {r.rate:g}/s | {r.functions} | {extra(r)} | {r.events} | {r.applied} | {r.failed} | {r.p50_ms:,.0f}"
        f" | {r.p99_ms:,.0f} | {r.max_ms:,.0f} | {r.per_function_eps:.1f} | {r.backlog} |" for r in results)
    kept_up = sum(1 for r in results if not r.backlog)
    # runs whose change rate the functions could carry (rate <= functions x events/s per function)
    carried = [r for r in results if r.latency_ms and r.rate <= r.functions * r.per_function_eps]
    worst_p99 = max((r.p99_ms for r in carried), default=float("nan"))
    overloaded = [r for r in results if r.rate > r.functions * r.per_function_eps]  # with the round trip
    overloaded_runs = ", ".join(dict.fromkeys(f"{r.rate:g}/s on {r.functions}" for r in overloaded)) or "none"
    header = ("| change rate | functions (shards) | added round trip | changes | applied | failed | p50 (ms) "
              "| p99 (ms) | max (ms) | events/s per function | backlog at end |")
    return f"""\
Changes made in an origin region at a steady rate for {seconds:g} s, delivered as DynamoDB stream records
and applied into the destination by the replication function (`Replicator`, the code Lambda runs),
against a moto server on 127.0.0.1 (subprocess, same machine); {machine()}, {time.strftime('%Y-%m-%d')}
(a shared machine: expect run-to-run variation). Mix per 10 changes: 1 new thing (certificate,
policy and attachments caught up from the origin), 2 attribute updates, 1 group membership,
4 classic and 2 named shadow updates. Latency is apply time minus change time (the
`ReplicationLag` metric); events/s is per function while busy. "round trip" runs add 50 ms to
every AWS call and the function's default limits (10 writes/s, 20 reads/s per API); "AWS quotas"
runs also send the function's calls through the device-state issue's quota proxy (tests/quota_proxy.py:
AWS IoT's published per-API rates, per region, ThrottlingException as AWS answers; the function's
`Caller` backs off and retries).

{header}
|--:|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|
{rows}

The recovery point on paper (a change in the primary until it is applied in a secondary):

- topic rule to the table in the origin: the rule engine's action latency (AWS publishes no figure;
  milliseconds to tens of milliseconds in practice);
- global table replication to the secondary's replica: asynchronous; AWS's DynamoDB guide says a
  newly written item is usually propagated to all replicas within a second, and publishes the
  `ReplicationLatency` metric per region pair (alarm on it in production; not measured here:
  moto creates no global tables);
- stream to function: Lambda polls each stream shard four times a second, and the mapping's
  batching window is 1 s (`maximum_batching_window_in_seconds`), so up to about 1.25 s;
- apply: measured above: p99 {worst_p99:,.0f} ms with a 50 ms round trip per call, in the runs
  whose change rate the functions could carry.

So about 3-4 s from change to apply while the functions keep up, i.e. an RPO of seconds instead of
"the last sync". A function keeps up while the change rate of its shard stays below its events/s
(the table above: about 2 per second with a 50 ms round trip, as each change costs 3-15 IoT calls,
read and write, in both regions for a new thing); beyond that a backlog builds, the lag grows
(overloaded here: {overloaded_runs}), and the lag
alarm (60 s for 5 minutes) fires. More shards (the table's write throughput decides how many)
mean more concurrent functions. {kept_up} of {len(results)} runs drained their backlog within the drain time.

Reproduce: `{COMMAND}`"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="5,20", help="changes per second in the origin")
    ap.add_argument("--functions", default="1,2", help="concurrent functions (stream shards)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--drain", type=float, default=120.0)
    ap.add_argument("--latency-ms", type=float, default=50.0, help="round trip of the second set (0: skip)")
    ap.add_argument("--no-quotas", action="store_true", help="skip the runs through the quota proxy")
    ap.add_argument("--write", action="store_true", help="update the section in docs/performance.md")
    args = ap.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    os.environ.pop("AWS_PROFILE", None)
    rates = [float(r) for r in args.rates.split(",") if r]
    functions = [int(f) for f in args.functions.split(",") if f]
    modes = [(0.0, False)] + ([(args.latency_ms / 1000, False)] if args.latency_ms else [])
    if args.latency_ms and not args.no_quotas:
        modes.append((args.latency_ms / 1000, True))
    results = []
    with moto_server() as url, quota_proxy(url, scale=1.0) as proxy:
        for latency, quotas in modes:
            for rate in rates:
                for n in functions:
                    r = one_run(url, rate, n, args.seconds, args.drain, latency, proxy.url if quotas else None)
                    results.append(r)
                    print(f"rate {rate:g}/s functions {n} rtt {latency * 1000:g} ms quotas {quotas}: "
                          f"{r.applied}/{r.events} applied, "
                          f"p50 {r.p50_ms:.0f} ms p99 {r.p99_ms:.0f} ms max {r.max_ms:.0f} ms, "
                          f"{r.per_function_eps:.1f} ev/s per function, backlog {r.backlog}, failed {r.failed}",
                          flush=True)
    body = render(results, args.seconds)
    print()
    print(body)
    if args.write:
        print(f"\nwrote {write_section(SECTION, body)}")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
