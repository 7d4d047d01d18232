"""Benchmark: registry sync at fleet size (10k-1M things) against the fast fake (bench/fake_iot.py).

For each size N, three passes of `sync_clients` (no shadows: the control plane is what bounds
them) from a seeded source region into an empty destination, with a checkpoint, a version record
and a "backend" copy of both (a directory here, as `StateLayout.push` copies to S3):

1. first sync (the destination is empty);
2. unchanged pass (nothing changed in either region);
3. `--full` pass (every thing's principals read again, whatever the versions say).

Per pass: wall time; the quota floor (max over (region, API bucket) of the calls the fake admitted
/ (quota x scale): no client could finish sooner) and wall / floor; peak RSS above the RSS at the
start of the pass (Linux VmHWM, reset per pass through /proc/self/clear_refs; it includes the fake
destination's own growth, so it is an upper bound for the sync); run-state bytes written
(`wchar` of /proc/self/io: every byte the process wrote through write(2) during the pass:
checkpoint, version record, their backend copies); control-plane calls per thing.

    .venv/bin/python -m bench.registry_scale --sizes 10000,20000            # print
    .venv/bin/python -m bench.registry_scale --sizes 10000,100000 --write   # also docs/performance.md

The fake destination lives in this process, so its growth is in the peak RSS of a first sync. To
tell the sync's own share, `fake_growth(N)` measures (in a fresh process) the RSS a fake region takes
when seeded with the same N things: "sync's share" = peak RSS - that. It is an estimate (the
sync's writes build the same objects as seeding, in another order).

`--scale S` runs every quota S times faster (default 50): the floor scales by 1/S; the ratio
wall / floor says whether the client keeps up with AWS's quotas. Exit 1 when a pass reports errors
or does not verify equal.

Stable peaks: every (size, repeat) runs in a fresh child process (`--repeat R`, default 2), with
MALLOC_ARENA_MAX set (`--arena-max`, default 2; 0 leaves glibc's default of 8 arenas per core).
Sizes used to run one after another in one process: the freed heap a smaller size left behind was
in the next size's starting RSS and was reused, so the larger size's "peak above start" came out
lower (the negative 50k->100k slope of an earlier session). Per size, the summary gives the min and
median of the repeats and the slopes between sizes. `--passes first` runs only the first sync.

`--dst seeded`: the `--full` and unchanged passes at sizes where a first sync costs too much to run
first (≈ 260 s of CPU per 100k things on 2 cores: ≈ 45-60 min at 1M). The destination is seeded as
a first sync leaves it (`FakeIot.seed_synced`: the same things, certificates under the same ids and
PEMs, policies, groups, memberships and attachments; tests/orchestrator/test_bench_registry_seeded.py
checks it field by field against a real first sync at 2,000 things), then, with no checkpoint and
no version record, each pass in its own fresh process (the regions seeded again, alike; the run
state directory carried from one to the next):

1. `--full` pass: it reads every thing's principals in both regions and writes the version record,
   as `registry sync --full` does after a first sync whose record was lost;
2. unchanged pass: it starts from that record, as the unchanged pass after a first sync does.

What this skips is the first sync, and only that: its figures are not produced (run `--passes
first` for them). It does not flatter the two passes: they read the same two regions, with the same
contents, through the same fake and quotas, and neither pass depends on the first sync's process
state (each builds its own from the regions and the run-state files: `--full` reads both regions
whatever the version record says, and the unchanged pass reads the record `--full` wrote). One
thing differs, on purpose: in a fresh process a pass cannot reuse heap an earlier pass freed (as
the unchanged and `--full` passes after a first sync in one process do), and it pays a process's
one-off costs (≈ 28 MB at 2,000 things), so its peak above start is, if anything, higher. The
fake's own RSS (both regions, seeded) is measured in each pass's process around the seeding and
reported as "fake regions' RSS"; the fake does not grow during these passes (nothing is written),
so a pass's peak above its start is the sync's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from bench.fake_iot import FakeIot  # noqa: E402
from orchestrator.registry import QuotaTable, SyncOptions, SyncReport, sync_clients  # noqa: E402
from orchestrator.registry.quotas import DEFAULT_QUOTAS, UNLISTED_RATE  # noqa: E402

SECTION = "Registry sync at fleet size (fast fake)"
SEEDED_SECTION = "Registry sync at fleet size: --full and unchanged from a seeded destination (fast fake)"
COMMAND = (".venv/bin/python -m bench.registry_scale --sizes {sizes} --scale {scale:g} "
           "--concurrency {concurrency} --repeat {repeat} --arena-max {arena_max} --passes {passes}{dst} --write")
SRC, DST = "eu-west-1", "eu-central-1"


def _status(field: str) -> int:
    """A VmRSS/VmHWM line of /proc/self/status, in bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _cpu() -> float:
    """CPU seconds of this process (user + system): the sync's and the fake's."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _wchar() -> int:
    with open("/proc/self/io", encoding="ascii") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


@dataclass(frozen=True)
class Pass:
    things: int
    label: str
    wall_s: float
    floor_s: float
    cpu_s: float
    bound: str
    peak_rss: int
    written: int
    calls: int
    write_calls: int
    throttled: int
    ok: bool
    note: str
    fake: int = 0  # RSS the fake destination's growth takes (first sync only; 0: none)
    world_rss: int = 0  # RSS the seeded fake regions hold at the run's start (measured around the seeding)
    start_rss: int = 0  # the process's RSS at the pass's start
    uploaded: int = 0  # run-state bytes copied to the backend (checkpoint parts and header, version record)

    @property
    def ratio(self) -> float:
        return self.wall_s / self.floor_s if self.floor_s else float("nan")


def _child_env(arena_max: int) -> dict[str, str]:
    env = dict(os.environ)
    if arena_max:
        env["MALLOC_ARENA_MAX"] = str(arena_max)
    return env


def fake_growth(n: int, arena_max: int = 0) -> int:
    """Bytes of RSS a fake region seeded with `n` things takes, measured in a fresh process."""
    out = subprocess.run([sys.executable, "-m", "bench.registry_scale", "--fake-growth", str(n)], cwd=ROOT,
                         check=True, capture_output=True, text=True, env=_child_env(arena_max)).stdout
    return int(json.loads(out.strip().splitlines()[-1])["bytes"])


def _fake_growth_here(n: int) -> int:
    world = FakeIot(scale=1.0)
    world.region(DST)
    rss0 = _status("VmRSS")
    world.seed(DST, n)
    return _status("VmRSS") - rss0


def one_pass(world: FakeIot, n: int, label: str, options: SyncOptions) -> Pass:
    before = dict(world.buckets.admitted)
    _reset_peak()
    rss0, w0 = _status("VmRSS"), _wchar()
    t0, cpu0 = time.perf_counter(), _cpu()
    report: SyncReport = sync_clients(world.client(SRC), world.client(DST), options)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    written, peak = _wchar() - w0, _status("VmHWM") - rss0
    delta = {k: v - before.get(k, 0) for k, v in world.buckets.admitted.items() if v - before.get(k, 0)}

    def rate(bucket: str) -> float:
        return float(DEFAULT_QUOTAS.get(bucket, UNLISTED_RATE)) * world.buckets.scale

    (region, bucket), calls = max(delta.items(), key=lambda kv: kv[1] / rate(kv[0][1]))
    floor = calls / rate(bucket)
    verified = report.verification is None or report.verification.ok
    ok = not report.errors and verified
    note = "" if ok else f"errors={len(report.errors)} verification={report.verification}"
    return Pass(n, label, wall, floor, cpu, f"{bucket} in {region} ({calls:,} calls)", peak, written,
                report.read_calls + report.write_calls, report.write_calls, report.throttled, ok, note,
                start_rss=rss0)


PASSES = (("first sync", False), ("unchanged", False), ("--full", True))
SEEDED_PASSES = (("--full", True), ("unchanged", False))  # --dst seeded: no first sync before them


def run_size(n: int, scale: float, concurrency: int, fake: int, passes: int = len(PASSES),
             seeded: bool = False, only: str = "", state_dir: Path | None = None) -> list[Pass]:
    """The first `passes` passes of size `n` in this process (a child of `run_child`); with `seeded`,
    the destination seeded as a first sync leaves it and the one pass `only` (of SEEDED_PASSES) runs,
    its run state (checkpoint, version record, backend copies) in `state_dir`, which the next pass's
    process reads."""
    world = FakeIot(scale=scale)
    world.region(SRC)
    world.region(DST)
    rss0 = _status("VmRSS")
    world.seed(SRC, n)
    if seeded:
        world.seed_synced(SRC, DST)
    world_rss = _status("VmRSS") - rss0
    plan = [p for p in SEEDED_PASSES if p[0] == only] if seeded else list(PASSES[:passes])
    if not plan:
        raise ValueError(f"no pass {only!r} in {SEEDED_PASSES}")
    out = []
    with tempfile.TemporaryDirectory(prefix="registry-scale-") as tmp:
        root = state_dir or Path(tmp)
        local, backend = root / "local", root / "backend"
        local.mkdir(exist_ok=True)
        backend.mkdir(exist_ok=True)

        uploaded = [0]

        def store(path: Path) -> None:  # what StateLayout.push does, to a directory
            shutil.copyfile(path, backend / path.name)
            uploaded[0] += path.stat().st_size

        base = SyncOptions(quotas=QuotaTable().scaled(scale), concurrency=concurrency, shadows=False,
                           checkpoint_path=local / "checkpoint.json", checkpoint_store=store,
                           state_path=local / "versions.json", state_store=store)
        for label, full in plan:
            uploaded[0] = 0
            p = one_pass(world, n, label, SyncOptions(**{**base.__dict__, "full": full}))
            p = Pass(**{**p.__dict__, "fake": fake if label == "first sync" else 0, "uploaded": uploaded[0],
                        "world_rss": world_rss})
            out.append(p)
            print(f"{n:>9,} {label:<11} wall {p.wall_s:8.1f}s cpu {p.cpu_s:7.1f}s floor {p.floor_s:8.1f}s "
                  f"x{p.ratio:5.2f}  "
                  f"peak RSS {p.peak_rss / n:7.0f} B/thing (sync's share {(p.peak_rss - p.fake) / n:7.0f})  "
                  f"written {p.written / n:8.0f} B/thing (run state uploaded {p.uploaded / n:6.0f})  "
                  f"calls/thing {p.calls / n:6.3f}  throttled {p.throttled}  "
                  f"fake regions {p.world_rss / n:6.0f} B/thing  {'ok' if p.ok else p.note}",
                  flush=True)
    return out


def run_child(n: int, scale: float, concurrency: int, fake: int, passes: int, arena_max: int,
              seeded: bool = False, only: str = "", state_dir: Path | None = None) -> list[Pass]:
    """One repeat of size `n` in a fresh process: no heap left over from another size in its RSS
    (seeded: one pass of it, its run state in `state_dir`)."""
    cmd = [sys.executable, "-m", "bench.registry_scale", "--one", str(n), "--scale", f"{scale:g}",
           "--concurrency", str(concurrency), "--fake", str(fake), "--npasses", str(passes),
           *(["--dst", "seeded", f"--only={only}", "--state-dir", str(state_dir)] if seeded else [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=_child_env(arena_max))
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        if line.startswith("[{"):
            last = line
        else:
            print(line, end="", flush=True)
    if proc.wait() != 0 and not last:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return [Pass(**d) for d in json.loads(last)]


def summary(passes: list[Pass]) -> list[str]:
    """Min and median of the sync's share per size and pass, and the slopes between sizes."""
    by: dict[tuple[str, int], list[int]] = {}
    for p in passes:
        by.setdefault((p.label, p.things), []).append(p.peak_rss - p.fake)
    lines = ["| pass | things | runs | sync's share of peak RSS: min | median | per thing (median) "
             "| slope from the size before: min | median |", "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for label in dict.fromkeys(p.label for p in passes):
        sizes = sorted(n for (lab, n) in by if lab == label)
        prev: tuple[int, float, float] | None = None
        for n in sizes:
            vals = by[(label, n)]
            lo, med = float(min(vals)), float(statistics.median(vals))
            slope = (f"{(lo - prev[1]) / (n - prev[0]):,.0f} B | {(med - prev[2]) / (n - prev[0]):,.0f} B"
                     if prev else "- | -")
            lines.append(f"| {label} | {n:,} | {len(vals)} | {lo / 1e6:,.1f} MB | {med / 1e6:,.1f} MB "
                         f"| {med / n:,.0f} B | {slope} |")
            prev = (n, lo, med)
    return lines


def render(passes: list[Pass], scale: float, concurrency: int, repeat: int = 1, arena_max: int = 0,
           npasses: int = len(PASSES), seeded: bool = False) -> str:
    date = time.strftime("%Y-%m-%d", time.gmtime())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"`sync_clients` (no shadows) against bench/fake_iot.py: AWS paging (250 a page) and AWS IoT's "
        f"per-API quotas x {scale:g} (time-scaled), concurrency {concurrency}; each size {repeat} time(s), "
        f"every run in a fresh process, MALLOC_ARENA_MAX={arena_max or 'unset'}; {machine()}, {date}, load "
        f"average at the end {load} (2 cores shared with other work). Each thing has its own certificate, "
        "1-2 group memberships, the device policy (every 4th also a second one), a type on half of them.",
        "Peak RSS: Linux VmHWM above the RSS at the pass's start; it includes the fake destination's growth "
        "(first sync: a fake region of N things, measured apart in a fresh process), so the sync's share is "
        "the difference. "
        "Written: /proc/self/io wchar during the pass (checkpoint, version record and their backend copies, "
        "and the spill file's scratch writes); run state uploaded: the bytes of the checkpoint and version "
        "record copies to the backend (each is also written once locally). "
        "CPU: user + system seconds of the process (the sync's and the fake's). "
        "Fake regions' RSS: what seeding the fake's regions took in the run's process (the source; "
        "with `--dst seeded` the destination too).",
        *(["The destination was seeded as a first sync leaves it (`--dst seeded`, see the bench's "
           "docstring): no first sync ran; `--full` ran first (no version record), then the unchanged "
           "pass, each in its own fresh process (the regions seeded again alike, the run state carried "
           "over)."] if seeded else []),
        "",
        "| things | pass | wall (s) | CPU (s) | quota floor (s) | wall / floor | floor set by | peak RSS / thing "
        "| of which the fake | sync's share / thing | written / thing | run state uploaded / thing "
        "| calls / thing | fake regions' RSS / thing | ok |",
        "|--:|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for p in passes:
        lines.append(f"| {p.things:,} | {p.label} | {p.wall_s:.1f} | {p.cpu_s:.1f} | {p.floor_s:.1f} | {p.ratio:.2f} "
                     f"| {p.bound} "
                     f"| {p.peak_rss / p.things:,.0f} B | {p.fake / p.things:,.0f} B "
                     f"| {(p.peak_rss - p.fake) / p.things:,.0f} B | {p.written / p.things:,.0f} B "
                     f"| {p.uploaded / p.things:,.0f} B "
                     f"| {p.calls / p.things:.3f} | {p.world_rss / p.things:,.0f} B "
                     f"| {'yes' if p.ok else 'NO: ' + p.note} |")
    sizes = ",".join(str(n) for n in dict.fromkeys(p.things for p in passes))
    command = COMMAND.format(sizes=sizes, scale=scale, concurrency=concurrency, repeat=repeat,
                             arena_max=arena_max, passes="first" if npasses == 1 else "all",
                             dst=" --dst seeded" if seeded else "")
    lines += ["", *summary(passes), "", f"Reproduce: `{command}`"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,20000", help="fleet sizes (things)")
    ap.add_argument("--scale", type=float, default=50.0, help="quota time-scaling factor")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--write", action="store_true", help="update the section in docs/performance.md")
    ap.add_argument("--repeat", type=int, default=2, help="runs per size, each in a fresh process")
    ap.add_argument("--arena-max", type=int, default=2, help="MALLOC_ARENA_MAX of the runs (0: unset)")
    ap.add_argument("--passes", choices=("first", "all"), default="all",
                    help="the first sync only, or first, unchanged and --full")
    ap.add_argument("--dst", choices=("empty", "seeded"), default="empty",
                    help="seeded: the destination as a first sync leaves it; runs --full, then unchanged")
    ap.add_argument("--only", default="", help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", default="", help=argparse.SUPPRESS)
    ap.add_argument("--fake-growth", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--fake", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--npasses", type=int, default=len(PASSES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fake_growth:
        print(json.dumps({"bytes": _fake_growth_here(args.fake_growth)}))
        return 0
    if args.one:
        done = run_size(args.one, args.scale, args.concurrency, args.fake, args.npasses, args.dst == "seeded",
                        args.only, Path(args.state_dir) if args.state_dir else None)
        print(json.dumps([p.__dict__ for p in done]))
        return 0
    seeded = args.dst == "seeded"
    if seeded and args.passes == "first":
        ap.error("--dst seeded runs --full and unchanged; a first sync needs --dst empty")
    npasses = 1 if args.passes == "first" else len(PASSES)
    passes: list[Pass] = []
    for n in (int(s) for s in args.sizes.split(",") if s):
        fake = 0  # seeded: the destination does not grow (its RSS is in world_rss, measured in the run)
        if not seeded:
            fake = fake_growth(n, args.arena_max)
            print(f"{n:>9,} a fake region of {n:,} things takes {fake / n:,.0f} B/thing of RSS", flush=True)
        for _ in range(args.repeat):
            if not seeded:
                passes += run_child(n, args.scale, args.concurrency, fake, npasses, args.arena_max)
                continue
            with tempfile.TemporaryDirectory(prefix="registry-scale-state-") as state:
                for label, _full in SEEDED_PASSES:  # each in its own process, the run state carried over
                    passes += run_child(n, args.scale, args.concurrency, fake, npasses, args.arena_max, True,
                                        label, Path(state))
    body = render(passes, args.scale, args.concurrency, args.repeat, args.arena_max, npasses, seeded)
    print()
    print(body)
    if args.write:
        print(f"\nwrote {write_section(SEEDED_SECTION if seeded else SECTION, body)}")
    return 0 if all(p.ok for p in passes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
