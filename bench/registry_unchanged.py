"""Benchmark helper: where the unchanged registry-sync pass's peak memory is (issue 22).

A first sync of N things (fast fake, as bench/registry_scale.py runs it; not measured), then the
unchanged pass (nothing changed in either region, a version record exists) with a thread sampling
VmRSS every 20 ms, each sample booked to the phase the main thread is in (`_Run.read_listings`,
`plan_entities`, `apply` with the reader thread's `stream_details`, `verify`, `save_state`).
Prints each phase's peak RSS above the RSS at the pass's start, and the pass's CPU seconds.

`--trim`: before the pass, collect garbage and hand the heap the first sync freed back to the
system (glibc `malloc_trim(0)`), so that the pass cannot hide its growth in memory the first sync
left free (in bench/registry_scale.py a size's passes run in one process, and the unchanged pass's
"peak above start" is low as long as it fits in that freed heap). What is left free inside
Python's partly used pools can still be reused: the figure may still be a little low.

`--tracemalloc`: also trace Python allocations through the pass and keep a snapshot taken each
time the traced total reaches a new high (5 % above the last snapshot's): the last one is the
allocations at (or just before) the peak; its top lines are printed. Tracing slows the pass and
its RSS figures are then not comparable (tracemalloc's own records are in them).

    .venv/bin/python -m bench.registry_unchanged 20000 --scale 200 [--trim] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fake_iot import FakeIot  # noqa: E402
from bench.registry_phases import run_options  # noqa: E402
from bench.registry_scale import DST, SRC, _cpu, _reset_peak, _status  # noqa: E402
from orchestrator.registry import sync_clients  # noqa: E402
from orchestrator.registry.sync import run as run_mod  # noqa: E402

PHASES = ("read_listings", "plan_entities", "apply", "verify", "save_state")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("things", type=int)
    ap.add_argument("--scale", type=float, default=200.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--trim", action="store_true", help="malloc_trim(0) before the pass")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    n = args.things
    phase = ["start"]
    peaks: dict[str, int] = {}
    stop = threading.Event()
    best: dict[str, Any] = {"size": 0, "snap": None, "phase": ""}
    traced: dict[str, int] = {}  # the most Python allocations traced per phase (--tracemalloc)

    def sample() -> None:
        while not stop.is_set():
            rss, now = _status("VmRSS"), phase[0]
            peaks[now] = max(peaks.get(now, 0), rss)
            if args.tracemalloc:
                cur, _ = tracemalloc.get_traced_memory()
                traced[now] = max(traced.get(now, 0), cur)
                if cur > best["size"] * 1.05:
                    best.update(size=cur, snap=tracemalloc.take_snapshot(), phase=now)
            time.sleep(0.02)

    def booked(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            if threading.current_thread() is not threading.main_thread():
                return fn(*a, **k)
            outer = phase[0]
            phase[0] = name if outer == "start" or outer.startswith("after ") else f"{outer} > {name}"
            try:
                return fn(*a, **k)
            finally:
                phase[0] = f"after {name}" if "> " not in phase[0] else outer

        return wrapper

    world = FakeIot(scale=args.scale)
    world.seed(SRC, n)
    with tempfile.TemporaryDirectory(prefix="registry-unchanged-") as tmp:
        options = run_options(tmp, args.scale, args.concurrency)
        first = sync_clients(world.client(SRC), world.client(DST), options)
        assert not first.errors, first.errors
        for name in PHASES:
            setattr(run_mod._Run, name, booked(name, getattr(run_mod._Run, name)))
        gc.collect()
        if args.trim:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        if args.tracemalloc:
            tracemalloc.start(1)
        sampler = threading.Thread(target=sample, daemon=True)
        rss0 = _status("VmRSS")
        _reset_peak()
        sampler.start()
        t0, cpu0 = time.perf_counter(), _cpu()
        report = sync_clients(world.client(SRC), world.client(DST), options)
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
        stop.set()
        sampler.join()
    ok = not report.errors and (report.verification is None or report.verification.ok)
    hwm = (_status("VmHWM") - rss0) / n
    print(f"{n:,} things, unchanged pass{' (heap trimmed first)' if args.trim else ''}: RSS at start "
          f"{rss0 / n:,.0f} B/thing, wall {wall:.1f} s, CPU {cpu:.1f} s, ok {ok}, calls "
          f"{report.read_calls + report.write_calls:,}, peak RSS above start {hwm:,.0f} B/thing")
    for name, peak in peaks.items():
        more = f", traced {traced[name] / n:7,.0f} B/thing" if name in traced else ""
        print(f"  {name:<32} peak above start {(peak - rss0) / 1e6:8.1f} MB = {(peak - rss0) / n:7,.0f} B/thing{more}")
    if args.tracemalloc and best["snap"] is not None:
        snap = best["snap"].filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        stats = snap.statistics("lineno")
        total = sum(s.size for s in stats)
        print(f"tracemalloc at the traced peak ({best['phase']}): {total / 1e6:.1f} MB = {total / n:,.0f} B/thing")
        for s in stats[:args.top]:
            frame = s.traceback[0]
            print(f"  {s.size / n:7,.0f} B/thing {s.count:>9,} blocks  {frame.filename.replace(str(ROOT) + '/', '')}"
                  f":{frame.lineno}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
