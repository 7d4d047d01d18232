"""Benchmark: registry sync between two regions of a moto server started here on 127.0.0.1.

For 500, 1,000 and 2,000 things (each with its own certificate, group memberships, the device
policy, and every 4th with a region-pinned policy), measure the first sync into an empty region
with concurrency 1, 2 and 4 and the write-rate limit set high (moto's own speed), then the same
against a realistic limit (10 writes/s and 20 reads/s per API, the defaults) on a smaller
registry, and the write calls of a second, unchanged sync (target: 0).

    .venv/bin/python bench/registry_sync.py            # print the table
    .venv/bin/python bench/registry_sync.py --write    # also update docs/performance.md

Bounded: `--max-seconds` (default 1,800) stops starting new runs once exceeded. Exit code 1 when
an unchanged sync writes anything or a sync reports errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from orchestrator.aws import AwsContext, client  # noqa: E402
from orchestrator.registry import SyncOptions, SyncReport, sync_clients  # noqa: E402
from tests.moto_server import MotoUnavailable, reset  # noqa: E402
from tests.moto_server import moto_server as run_moto  # noqa: E402
from tests.ops.registry_world import seed  # noqa: E402

SECTION = "Registry sync"
COMMAND = ".venv/bin/python bench/registry_sync.py --write"
SRC = "eu-west-1"
DESTINATIONS = ("eu-central-1", "eu-west-2", "eu-west-3", "eu-north-1", "us-east-1", "us-west-2")
HIGH_RATE = 100_000.0
REALISTIC_RATE = 10.0
REALISTIC_READ_RATE = 20.0


@contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[str]:
    """A moto server on 127.0.0.1 for the benchmark (tests/moto_server.py), its log in a temp dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with run_moto(Path(tmp) / "moto.log", env, timeout) as url:
                yield url
        except MotoUnavailable as exc:
            raise SystemExit(str(exc)) from None


@dataclass(frozen=True)
class Run:
    things: int
    concurrency: int
    rate: float
    latency_s: float
    total_s: float
    apply_s: float
    write_calls: int
    read_calls: int
    retries: int
    errors: int

    @property
    def things_per_s(self) -> float:
        return self.things / self.total_s


def iot(ctx: AwsContext, region: str, latency_s: float = 0.0) -> Any:
    c = client(ctx, "iot", region, own_retries=True, max_pool_connections=16)
    if latency_s:  # a network round trip moto on 127.0.0.1 does not have
        c.meta.events.register("before-send.iot", lambda **_: time.sleep(latency_s))
    return c


def one_sync(ctx: AwsContext, dst: str, things: int, *, concurrency: int, rate: float,
             read_rate: float, latency_s: float = 0.0) -> tuple[Run, SyncReport]:
    marks: list[float] = []

    def progress(done: int, total: int) -> None:
        if done == 0 or done == total:
            marks.append(time.perf_counter())

    started = time.perf_counter()
    report = sync_clients(iot(ctx, SRC, latency_s), iot(ctx, dst, latency_s),
                          SyncOptions(rate=rate, read_rate=read_rate, concurrency=concurrency,
                                      progress=progress))
    total = time.perf_counter() - started
    apply_s = marks[-1] - marks[0] if len(marks) >= 2 else 0.0
    return Run(things, concurrency, rate, latency_s, total, apply_s, report.write_calls,
               report.read_calls, report.retries, len(report.errors)), report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,1000,2000", help="registry sizes (things)")
    ap.add_argument("--concurrency", default="1,2,4")
    ap.add_argument("--realistic-things", type=int, default=200,
                    help="registry size for the runs at the realistic rate limit (0: skip)")
    ap.add_argument("--latency-ms", type=float, default=50.0,
                    help="round trip added to every call of the realistic runs (moto answers in ~3 ms)")
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    ap.add_argument("--write", action="store_true", help="update the section in docs/performance.md")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    deadline = time.monotonic() + args.max_seconds
    first: list[Run] = []
    unchanged: list[tuple[int, Run]] = []
    seeding: dict[int, float] = {}
    skipped: list[str] = []
    failed = False

    with moto_server() as url:
        ctx = AwsContext(endpoint_url=url)
        plan = [(n, levels, HIGH_RATE, HIGH_RATE, 0.0) for n in sizes]
        if args.realistic_things:
            plan.append((args.realistic_things, levels, REALISTIC_RATE, REALISTIC_READ_RATE,
                         args.latency_ms / 1000))
        for n, concurrencies, rate, read_rate, latency_s in plan:
            if time.monotonic() > deadline:
                skipped.append(f"{n} things at {rate:g}/s")
                continue
            reset(url)
            t0 = time.perf_counter()
            # moto is not thread-safe (a dict can change size under a look-up: HTTP 500), so the
            # seeding client keeps botocore's retries; the syncs retry through their own Caller
            seed(client(ctx, "iot", SRC, max_pool_connections=16), n, workers=8)
            seeding[n] = time.perf_counter() - t0
            for dst, c in zip(DESTINATIONS, concurrencies, strict=False):
                if time.monotonic() > deadline:
                    skipped.append(f"{n} things, concurrency {c} at {rate:g}/s")
                    continue
                run, report = one_sync(ctx, dst, n, concurrency=c, rate=rate, read_rate=read_rate,
                                       latency_s=latency_s)
                first.append(run)
                failed |= bool(report.errors)
                print(f"first sync {n:>5} things  c={c}  rate={rate:g}/s  {run.total_s:7.1f}s "
                      f"(apply {run.apply_s:.1f}s)  {run.things_per_s:6.1f} things/s  "
                      f"writes={run.write_calls} reads={run.read_calls} retries={run.retries}", flush=True)
                if rate == HIGH_RATE and c == max(concurrencies):
                    again, _ = one_sync(ctx, dst, n, concurrency=c, rate=rate, read_rate=read_rate)
                    unchanged.append((n, again))
                    failed |= again.write_calls != 0
                    print(f"unchanged  {n:>5} things  c={c}  {again.total_s:7.1f}s  "
                          f"writes={again.write_calls} reads={again.read_calls}", flush=True)

    body = render(first, unchanged, seeding, skipped)
    print()
    print(body)
    if args.write:
        print(f"\nwrote {write_section(SECTION, body)}")
    return 1 if failed else 0


def findings(first: list[Run], unchanged: list[tuple[int, Run]]) -> list[str]:
    """What the numbers say, computed from them (so the text cannot drift from the table)."""
    out = []
    groups: dict[tuple[int, float, float], dict[int, Run]] = {}
    for r in first:
        groups.setdefault((r.things, r.rate, r.latency_s), {})[r.concurrency] = r
    for (things, rate, latency), runs in groups.items():
        lo, hi = min(runs), max(runs)
        if lo == hi:
            continue
        speedup = runs[lo].total_s / runs[hi].total_s
        apply_rate = runs[hi].write_calls / runs[hi].apply_s if runs[hi].apply_s else 0.0
        if rate >= HIGH_RATE:
            out.append(f"- {things:,} things, no limit: concurrency {hi} is x{speedup:.2f} of concurrency "
                       f"{lo} ({apply_rate:.0f} writes/s while applying). Client and moto share 2 "
                       "cores: this is CPU-bound, so more threads add little.")
        else:
            lo_rate = runs[lo].write_calls / runs[lo].apply_s if runs[lo].apply_s else 0.0
            out.append(f"- {things:,} things at {rate:g} writes/s per API with a {latency * 1000:g} ms round "
                       f"trip: concurrency {hi} is x{speedup:.2f} of concurrency {lo} ({lo_rate:.0f} -> "
                       f"{apply_rate:.0f} writes/s while applying). One worker is bound by the round "
                       "trip; more workers fill the per-API token buckets"
                       + (", and as the dispatcher interleaves APIs (certificates, things, memberships, "
                          "attachments: one bucket each) the total is above a single API's limit."
                          if apply_rate > rate else "."))
    for things, r in unchanged:
        out.append(f"- Unchanged, {things:,} things: {r.write_calls} writes, {r.read_calls:,} reads "
                   f"({r.read_calls / things:.2f} per thing: one `list_thing_principals` per thing and "
                   "region, there is no bulk form). At a real 20 reads/s per API that is about "
                   f"{things / 20:.0f} s, the two regions read in parallel.")
    return out


def render(first: list[Run], unchanged: list[tuple[int, Run]], seeding: dict[int, float],
           skipped: list[str]) -> str:
    date = time.strftime("%Y-%m-%d", time.gmtime())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"First sync of a registry into an empty region, and a second, unchanged sync, against a "
        f"moto server (subprocess, same machine) on 127.0.0.1; {machine()}, {date}, load average "
        f"at the end {load} (a shared machine: expect run-to-run variation). Each thing has "
        "its own certificate, 1-2 group memberships, the device policy and every 4th a "
        "region-pinned policy (about 5.6 writes per thing); time includes reading both regions.",
        "",
        "| things | concurrency | write limit per API | first sync (s) | of which apply (s) | things/s "
        "| write calls | read calls | retries |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in first:
        limit = "none (moto's speed)" if r.rate >= HIGH_RATE else f"{r.rate:g}/s"
        if r.latency_s:
            limit += f" + {r.latency_s * 1000:g} ms round trip"
        lines.append(f"| {r.things:,} | {r.concurrency} | {limit} | {r.total_s:.1f} | {r.apply_s:.1f} | "
                     f"{r.things_per_s:.1f} | {r.write_calls:,} | {r.read_calls:,} | {r.retries} |")
    lines += ["", "Second sync, nothing changed (target: 0 write calls):", "",
              "| things | concurrency | write calls | read calls | duration (s) |", "|--:|--:|--:|--:|--:|"]
    for n, r in unchanged:
        lines.append(f"| {n:,} | {r.concurrency} | **{r.write_calls}** | {r.read_calls:,} "
                     f"| {r.total_s:.1f} |")
    if seeding:
        lines += ["", "Seeding the source region (8 threads): " +
                  ", ".join(f"{n:,} things {s:.0f} s" for n, s in sorted(seeding.items())) + "."]
    if skipped:
        lines += ["", f"Skipped (time budget): {'; '.join(skipped)}."]
    lines += ["", "Reading it:", ""] + findings(first, unchanged)
    lines += ["", f"Reproduce: `{COMMAND}`"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
