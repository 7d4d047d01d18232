"""Benchmark: registry sync (with shadows) at AWS IoT's per-API quotas, through the quota proxy.

A moto server on 127.0.0.1 behind tests/quota_proxy.py, which throttles every (region, API) at
the default quotas times `--scale`. The source holds N things, each with its own certificate,
1-2 group memberships, the device policy (every 4th also a region-pinned one), one classic and one
named shadow. For each size:

1. first sync into an empty region: wall time over the floor (the largest calls / quota over
   every (region, API) bucket, from the calls the proxy admitted); target <= 1.2;
2. an unchanged re-sync: calls per thing (control plane; target <= 0.05), and shadow calls;
3. 1% of things changed (attributes) and 1% of shadows changed: calls per changed thing;
4. (first size only) a first sync with `--concurrency 4` into another region: no abort.

Then each run is projected to 100k and 1M things at the real quotas (scale 1): calls per thing
per bucket x N / quota gives the floor; times the measured wall/floor ratio gives the estimate.

    .venv/bin/python -m bench.registry_quotas                   # print
    .venv/bin/python -m bench.registry_quotas --write           # also docs/performance.md

moto never increments thing versions: the sync's clients go through tests/ops/versioned.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from bench.registry_sync import moto_server  # noqa: E402
from orchestrator.aws import AwsContext, client  # noqa: E402
from orchestrator.registry import QuotaTable, SyncOptions, SyncReport, sync_clients  # noqa: E402
from orchestrator.registry.quotas import SHADOW_KEY, bucket_of  # noqa: E402
from tests.moto_server import reset  # noqa: E402
from tests.ops.registry_world import seed, thing_name  # noqa: E402
from tests.ops.versioned import ThingVersions  # noqa: E402
from tests.quota_proxy import QuotaProxy, quota_proxy  # noqa: E402

SECTION = "Registry sync at AWS's quotas"
SRC, DST, DST2 = "eu-west-1", "eu-central-1", "eu-west-2"
PROJECT = (100_000, 1_000_000)


@dataclass(frozen=True)
class Measured:
    label: str
    things: int
    concurrency: int
    wall_s: float
    floor_s: float
    floor_bucket: str
    control_calls: int  # iot control plane, both regions
    shadow_calls: int
    throttled: int
    ok: bool
    per_bucket: dict[tuple[str, str], int]  # admitted calls per (region, bucket)
    changed: int = 0

    @property
    def ratio(self) -> float:
        return self.wall_s / self.floor_s if self.floor_s else float("nan")


def floor(per_bucket: dict[tuple[str, str], int], table: QuotaTable) -> tuple[float, str]:
    best, name = 0.0, "-"
    for (region, bucket), n in per_bucket.items():
        t = n / table.quota(bucket)
        if t > best:
            best, name = t, f"{bucket} ({region})"
    return best, name


def admitted(proxy: QuotaProxy) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for (region, api), (forwarded, _) in proxy.counts().items():
        key = (region, bucket_of(api))
        out[key] = out.get(key, 0) + forwarded
    return out


def seed_world(url: str, n: int) -> float:
    ctx = AwsContext(endpoint_url=url)
    started = time.perf_counter()
    src = client(ctx, "iot", SRC, max_pool_connections=16)  # botocore's retries: moto can 500 under load
    seed(src, n, workers=8)
    data = client(ctx, "iot-data", SRC, max_pool_connections=16)

    def shadows(i: int) -> None:
        name = thing_name(i)
        data.update_thing_shadow(thingName=name, payload=json.dumps(
            {"state": {"desired": {"led": "on", "interval": 30 + i % 7}, "reported": {"led": "off"}}}).encode())
        data.update_thing_shadow(thingName=name, shadowName="config", payload=json.dumps(
            {"state": {"desired": {"mode": "eco"}, "reported": {"mode": "eco", "fw": "1.2.0"}}}).encode())

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(shadows, range(n)))
    return time.perf_counter() - started


def run_sync(proxy: QuotaProxy, versions: ThingVersions, dst: str, table: QuotaTable, *, concurrency: int,
             state: Path, full: bool = False) -> tuple[SyncReport, float, dict[tuple[str, str], int]]:
    ctx = AwsContext(endpoint_url=proxy.url)

    def iot(region: str) -> Any:
        return versions.install(client(ctx, "iot", region, own_retries=True, max_pool_connections=32))

    def data(region: str) -> Any:
        return client(ctx, "iot-data", region, own_retries=True, max_pool_connections=68)

    proxy.reset()
    started = time.perf_counter()
    report = sync_clients(iot(SRC), iot(dst), SyncOptions(quotas=table, concurrency=concurrency,
                                                            state_path=state, full=full),
                          src_data=data(SRC), dst_data=data(dst))
    return report, time.perf_counter() - started, admitted(proxy)


def measure(label: str, n: int, concurrency: int, report: SyncReport, wall: float,
            per_bucket: dict[tuple[str, str], int], table: QuotaTable, changed: int = 0) -> Measured:
    f, name = floor(per_bucket, table)
    shadow = sum(v for (_, b), v in per_bucket.items() if b == SHADOW_KEY)
    control = sum(v for (_, b), v in per_bucket.items() if b != SHADOW_KEY)
    return Measured(label, n, concurrency, wall, f, name, control, shadow, report.throttled, report.ok,
                    per_bucket, changed)


def change_one_percent(url: str, versions: ThingVersions, n: int) -> int:
    ctx = AwsContext(endpoint_url=url)
    src = versions.install(client(ctx, "iot", SRC))
    data = client(ctx, "iot-data", SRC)
    k = max(1, n // 100)
    for i in range(0, n, n // k)[:k]:
        src.update_thing(thingName=thing_name(i), attributePayload={"attributes": {"serial": f"x{i}"},
                                                                    "merge": True})
        j = (i + n // (2 * k)) % n  # another thing's shadow
        data.update_thing_shadow(thingName=thing_name(j), payload=json.dumps(
            {"state": {"desired": {"led": "off"}}}).encode())
    return k


def projection(m: Measured, scale_table: QuotaTable, real: QuotaTable, n_target: int) -> tuple[float, float]:
    """(floor, estimate) in seconds at `n_target` things and the real quotas."""
    per_thing = {k: v / m.things for k, v in m.per_bucket.items()}
    f = max((c * n_target / real.quota(b) for (_, b), c in per_thing.items()), default=0.0)
    return f, f * m.ratio


def fmt_s(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.0f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--scale", type=float, default=2.0, help="quotas x this (the proxy and the sync alike)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-seconds", type=float, default=2400.0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    deadline = time.monotonic() + args.max_seconds
    real = QuotaTable()
    table = real.scaled(args.scale)
    results: list[Measured] = []
    seeding: dict[int, float] = {}
    skipped: list[int] = []
    failed = False
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with moto_server() as url, quota_proxy(url, scale=args.scale) as proxy, \
            tempfile.TemporaryDirectory() as tmp:
        for index, n in enumerate(sizes):
            if time.monotonic() > deadline:
                skipped.append(n)
                continue
            reset(url)
            seeding[n] = seed_world(url, n)
            print(f"seeded {n} things in {seeding[n]:.0f}s", flush=True)
            versions = ThingVersions()
            state = Path(tmp) / f"versions-{n}.json"
            r, wall, per = run_sync(proxy, versions, DST, table, concurrency=args.concurrency, state=state)
            results.append(measure("first sync", n, args.concurrency, r, wall, per, table))
            print(results[-1].label, n, f"{wall:.1f}s", f"ratio {results[-1].ratio:.2f}", r.ok, flush=True)
            r, wall, per = run_sync(proxy, versions, DST, table, concurrency=args.concurrency, state=state)
            results.append(measure("unchanged re-sync", n, args.concurrency, r, wall, per, table))
            print(results[-1].label, n, f"{wall:.1f}s", results[-1].control_calls, results[-1].shadow_calls,
                  flush=True)
            k = change_one_percent(url, versions, n)
            r, wall, per = run_sync(proxy, versions, DST, table, concurrency=args.concurrency, state=state)
            results.append(measure("1% changed", n, args.concurrency, r, wall, per, table, changed=k))
            print(results[-1].label, n, f"{wall:.1f}s", r.counts["thing"], r.counts["shadow"], flush=True)
            if index == 0:
                r, wall, per = run_sync(proxy, versions, DST2, table, concurrency=4,
                                        state=Path(tmp) / "c4.json")
                results.append(measure("first sync, --concurrency 4", n, 4, r, wall, per, table))
                print(results[-1].label, n, f"{wall:.1f}s", r.ok, r.throttled, flush=True)
            failed = failed or not all(m.ok for m in results)

    lines = [
        f"Against a moto server behind the quota proxy (tests/quota_proxy.py: one token bucket per region "
        f"and API at AWS's default quotas x{args.scale:g}, Device Shadow APIs sharing one bucket; a refused "
        f"call gets `ThrottlingException`), with the sync's own table scaled alike; {machine()}, "
        f"{time.strftime('%Y-%m-%d')}, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end "
        f"(a shared machine). Each thing: its own certificate, 1-2 groups, the device policy (every 4th a "
        f"pinned one too), one classic and one named shadow. The floor is the largest calls / quota over "
        f"every (region, API) bucket, from the calls the proxy admitted.",
        "",
        "| run | things | concurrency | wall (s) | floor (s) | wall / floor | bound by | control-plane calls "
        "| per thing | shadow calls | per thing | throttled | ok |",
        "|:--|--:|--:|--:|--:|--:|:--|--:|--:|--:|--:|--:|:--|",
    ]
    for m in results:
        per = m.changed if m.changed else m.things
        lines.append(
            f"| {m.label} | {m.things:,} | {m.concurrency} | {m.wall_s:.1f} | {m.floor_s:.1f} | **{m.ratio:.2f}** "
            f"| {m.floor_bucket} | {m.control_calls:,} | {m.control_calls / per:.3f}"
            f"{' per changed thing' if m.changed else ''} | {m.shadow_calls:,} | {m.shadow_calls / per:.2f} "
            f"| {m.throttled} | {'yes' if m.ok else 'NO'} |")
    if m_ := [m for m in results if m.changed]:
        lines += ["", f"1% changed: {m_[0].changed} things had their attributes changed and {m_[0].changed} "
                      "other things a shadow; calls per changed thing count both."]
    lines += ["", "Projection to the real (default) quotas: calls per thing per bucket x N / quota = floor; "
                  "x the wall / floor ratio measured above = estimate. Listing pages (250 items) and shadow "
                  "reads grow with N; per-group and per-policy calls do not (they are counted at the measured "
                  "size, which overstates them slightly).", "",
              "| run (measured at) | " + " | ".join(f"floor at {n:,}" for n in PROJECT) + " | "
              + " | ".join(f"estimate at {n:,}" for n in PROJECT) + " |",
              "|:--|" + "--:|" * (2 * len(PROJECT))]
    for m in results:
        if m.changed:
            continue
        proj = [projection(m, table, real, n) for n in PROJECT]
        lines.append(f"| {m.label} ({m.things:,}) | " + " | ".join(fmt_s(f) for f, _ in proj) + " | "
                     + " | ".join(fmt_s(e) for _, e in proj) + " |")
    if seeding:
        lines += ["", "Seeding (8 threads, straight to moto): " + ", ".join(
            f"{n:,} things {s:.0f} s" for n, s in seeding.items()) + "."]
    if skipped:
        lines += ["", f"Not run (time budget `--max-seconds` spent): {', '.join(f'{n:,}' for n in skipped)} things."]
    lines += ["", f"Reproduce: `.venv/bin/python -m bench.registry_quotas --sizes {args.sizes} --scale {args.scale:g} "
                  f"--concurrency {args.concurrency} --write`"]
    body = "\n".join(lines)
    print(body)
    if args.write:
        print(f"wrote {write_section(SECTION, body)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
