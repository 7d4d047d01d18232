"""Benchmark helper: a first sync's apply phase, bucket by bucket over time (issue 22).

One first sync of N things against the fast fake (bench/fake_iot.py, AWS's per-API quotas x
`--scale`), as bench/registry_phases.py runs it, without the read-back (`--verify` adds it). Every
call the fake's token buckets admit or refuse is time-stamped; for the apply phase (`_Run.apply`,
the reader thread streaming the principals into it) it prints the apply's wall, its own floor
(the busiest (region, API) bucket's calls in the apply / its quota) and wall / floor, the busiest
buckets with their refused calls, and then per `--bin` seconds each bucket's admitted calls as a
share of its quota, the most operations the `OpFeed` held and the operations running per API
(sampled every 50 ms). A bucket below 100 % while it still has work is time lost to the floor.

    .venv/bin/python -m bench.registry_apply_timeline 10000 --scale 10 --bin 5
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fake_iot import FakeIot  # noqa: E402
from bench.registry_phases import recorded_feeds  # noqa: E402
from bench.registry_scale import DST, SRC  # noqa: E402
from orchestrator.registry import QuotaTable, SyncOptions, sync_clients  # noqa: E402
from orchestrator.registry.sync import apply as apply_mod  # noqa: E402
from orchestrator.registry.sync import run as run_mod  # noqa: E402


def _short(api: str) -> str:
    return "".join(w[0] for w in api.split("_"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("things", type=int)
    ap.add_argument("--scale", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--bin", type=float, default=1.0, help="seconds per timeline row")
    ap.add_argument("--verify", action="store_true", help="read back after the apply (not timed here)")
    args = ap.parse_args()
    world = FakeIot(scale=args.scale)
    world.seed(SRC, args.things)
    events: list[tuple[float, str, str, bool]] = []  # (time, region, api, admitted)
    take = world.buckets.take

    def timed_take(region: str, api: str) -> bool:
        ok = take(region, api)
        events.append((time.perf_counter(), region, api, ok))
        return ok

    world.buckets.take = timed_take  # type: ignore[method-assign]
    marks: dict[str, float] = {}

    def marked(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            marks[f"{name}0"] = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                marks[f"{name}1"] = time.perf_counter()
        return wrapper

    run_mod._Run.apply = marked("apply", run_mod._Run.apply)  # type: ignore[method-assign]
    run_mod._Run.stream_details = marked("read", run_mod._Run.stream_details)  # type: ignore[method-assign]
    active: Counter[str] = Counter()
    lock = threading.Lock()
    execute = apply_mod._Executor.run

    def counted(self: apply_mod._Executor, op: Any) -> None:
        with lock:
            active[op.api] += 1
        try:
            execute(self, op)
        finally:
            with lock:
                active[op.api] -= 1

    apply_mod._Executor.run = counted  # type: ignore[method-assign]
    feeds = recorded_feeds()
    samples: list[tuple[float, dict[str, int], int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with lock:
                snap = dict(active)
            samples.append((time.perf_counter(), snap, feeds[0].pending() if feeds else 0))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0 = time.process_time()
    options = SyncOptions(quotas=QuotaTable().scaled(args.scale), concurrency=args.concurrency, shadows=False,
                          verify=args.verify)
    t0 = time.perf_counter()
    report = sync_clients(world.client(SRC), world.client(DST), options)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    cpu = time.process_time() - cpu0
    a0, a1 = marks["apply0"], marks["apply1"]
    rate = world.buckets.rate
    admitted = Counter((r, api) for t, r, api, ok in events if ok and a0 <= t <= a1)
    refused = Counter((r, api) for t, r, api, ok in events if not ok and a0 <= t <= a1)
    floor = max((n / rate(k[1]) for k, n in admitted.items()), default=0.0)
    print(f"{args.things:,} things, quotas x {args.scale:g}, concurrency {args.concurrency}: run wall {wall:.1f} s, "
          f"CPU {cpu:.1f} s, errors {len(report.errors)}")
    print(f"apply {a1 - a0:.1f} s, its floor {floor:.1f} s: wall / floor {(a1 - a0) / max(floor, 1e-9):.2f}; "
          f"reader {marks['read0'] - a0:+.1f} .. {marks['read1'] - a0:+.1f} s; "
          f"refused calls {sum(refused.values())}")
    keys = sorted(admitted, key=lambda k: -admitted[k] / rate(k[1]))[:7]
    for k in keys:
        print(f"  {k[0]:<12} {k[1]:<34} {admitted[k]:>8,} calls = {admitted[k] / rate(k[1]):6.1f} s at quota, "
              f"{refused[k]} refused")
    bins: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
    for t, r, api, ok in events:
        if ok and a0 <= t <= a1:
            bins[int((t - a0) / args.bin)][(r, api)] += 1
    print("   t/s " + " ".join(f"{k[0][3:5]}.{_short(k[1]):<5}" for k in keys) + "  feed  running per API")
    for b in sorted(bins):
        lo = a0 + b * args.bin
        window = [s for s in samples if lo <= s[0] < lo + args.bin]
        running: Counter[str] = Counter()
        for s in window:
            running.update(s[1])
        shown = " ".join(f"{_short(a)}:{v / len(window):.1f}" for a, v in running.most_common(4) if v) if window else ""
        print(f"{b * args.bin:6.0f} " + " ".join(f"{100 * bins[b][k] / (rate(k[1]) * args.bin):7.0f}%" for k in keys)
              + f"  {max((s[2] for s in window), default=0):4d}  {shown}")
    return 0 if not report.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
