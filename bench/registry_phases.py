"""Benchmark helper: where a first sync's peak memory is, phase by phase (issue 22).

One first sync of N things (fast fake, bench/fake_iot.py, as bench/registry_scale.py runs it) with a
thread sampling VmRSS every 20 ms, each sample booked to the phase the main thread is in: the
listings (`_Run.read_listings`), the first stage's plan (`_Run.plan_entities`), the apply (with the
reader thread streaming the principals and the relations into it, and the read-back of each chunk's
attachments on its own thread as soon as the apply has resolved the chunk: `run._ReadBack`), what is
left of the read-back after the apply (`_Run.verify_streamed`: one relisting of the destination and
the chunks not compared yet; `_Run.verify` and the `plan_sync` of each chunk it compares, for a
run that reads back after its apply), the version record (`_Run.save_state`). Prints each
phase's peak RSS above the RSS at the start (it includes the fake destination's growth: about
1.8-1.9 KB per thing by the end of the apply, see bench/registry_scale.py) and the most operations
the `OpFeed` held at once; each phase's wall time, the quota floor (the busiest bucket's calls /
(quota x scale)) with wall / floor, and the eight busiest buckets.

    .venv/bin/python -m bench.registry_phases 20000 --scale 200

Scale 200 (quotas x 200) makes the run CPU-bound rather than quota-bound: the phases' memory is
the same data, reached sooner. Sampling misses peaks shorter than 20 ms.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fake_iot import FakeIot  # noqa: E402
from bench.registry_scale import DST, SRC, _reset_peak, _status  # noqa: E402
from orchestrator.registry import QuotaTable, SyncOptions, sync_clients  # noqa: E402
from orchestrator.registry.sync import apply as apply_mod  # noqa: E402
from orchestrator.registry.sync import run as run_mod  # noqa: E402


def run_options(tmp: str, scale: float, concurrency: int) -> SyncOptions:
    """A sync's options as the CLI gives them: quotas x `scale`, no shadows, a checkpoint and a
    version record in `tmp`/local, each copied to `tmp`/backend (as `StateLayout.push` copies to S3)."""
    local, backend = Path(tmp) / "local", Path(tmp) / "backend"
    local.mkdir()
    backend.mkdir()

    def store(path: Path) -> None:
        shutil.copyfile(path, backend / path.name)

    return SyncOptions(quotas=QuotaTable().scaled(scale), concurrency=concurrency, shadows=False,
                       checkpoint_path=local / "checkpoint.json", checkpoint_store=store,
                       state_path=local / "versions.json", state_store=store)


def recorded_feeds() -> list[apply_mod.OpFeed]:
    """Every `OpFeed` made from now on, in order (to read how full each got)."""
    feeds: list[apply_mod.OpFeed] = []
    feed_init = apply_mod.OpFeed.__init__

    def init(self: apply_mod.OpFeed, *a: Any, **k: Any) -> None:
        feed_init(self, *a, **k)
        feeds.append(self)

    apply_mod.OpFeed.__init__ = init  # type: ignore[method-assign]
    return feeds


PHASES = ("read_listings", "plan_entities", "apply", "verify", "verify_streamed", "save_state")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("things", type=int)
    ap.add_argument("--scale", type=float, default=200.0)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    n = args.things
    phase = ["start"]
    peaks: dict[str, int] = {}
    walls: dict[str, float] = {}  # wall seconds of each top-level phase
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, now = _status("VmRSS"), phase[0]
            peaks[now] = max(peaks.get(now, 0), rss)
            time.sleep(0.02)

    def booked(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            if threading.current_thread() is not threading.main_thread():  # the reader's relation plans
                return fn(*a, **k)
            outer = phase[0]
            top = outer in ("start", *(f"after {p}" for p in PHASES))
            phase[0] = name if top else f"{outer} > {name}"
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phase[0] = f"after {name}" if "> " not in phase[0] else outer
                if top:
                    walls[name] = walls.get(name, 0.0) + time.perf_counter() - t0

        return wrapper

    for name in PHASES:
        setattr(run_mod._Run, name, booked(name, getattr(run_mod._Run, name)))
    run_mod.plan_sync = booked("plan_sync", run_mod.plan_sync)
    feeds = recorded_feeds()

    world = FakeIot(scale=args.scale)
    world.seed(SRC, n)
    with tempfile.TemporaryDirectory(prefix="registry-phases-") as tmp:
        options = run_options(tmp, args.scale, args.concurrency)
        sampler = threading.Thread(target=sample, daemon=True)
        rss0 = _status("VmRSS")
        _reset_peak()
        sampler.start()
        t0 = time.perf_counter()
        report = sync_clients(world.client(SRC), world.client(DST), options)
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
    ok = not report.errors and (report.verification is None or report.verification.ok)
    hwm = (_status("VmHWM") - rss0) / n
    print(f"{n:,} things: wall {wall:.0f} s, ok {ok}, peak RSS above start {hwm:,.0f} B/thing, "
          f"OpFeed held at most {max((f.high_water for f in feeds), default=0):,} operations")
    for name, peak in peaks.items():
        took = f", wall {walls[name]:7.1f} s" if name in walls else ""
        print(f"  {name:<24} peak above start {(peak - rss0) / 1e6:8.1f} MB = {(peak - rss0) / n:7,.0f} B/thing"
              f"{took}")
    bound = world.buckets.bound()
    if bound is not None:
        region, bucket, calls = bound
        print(f"  quota floor {world.buckets.floor_s():.1f} s ({bucket} in {region}, {calls:,} calls): "
              f"wall / floor {wall / max(world.buckets.floor_s(), 1e-9):.2f}")
    for (region, bucket), calls in sorted(world.buckets.admitted.items(),
                                          key=lambda kv: -kv[1] / world.buckets.rate(kv[0][1]))[:8]:
        print(f"    {region:<10} {bucket:<32} {calls:>9,} calls = {calls / world.buckets.rate(bucket):6.1f} s at quota")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
