"""What the live-replacement guard costs an `up` (orchestrator/operations/replace_guard.py).

Before `up --yes` changes anything, the guard previews every stack it will update that is already
deployed (a stateful replace in a live region is refused) and lists each region's things (is the
region live?). On a first `up` nothing is deployed and there is nothing to preview; on every later
`up` (the usual one: a CI deploy of a small change) each deployed stack costs one extra `pulumi
preview` before its update.

Through the REAL Pulumi CLI with the engine tier's stand-in provider (as `bench.engine_up`), three
regions (latency routing) + DNS + replication: a first `up --all --yes`, then `--repeat` more on the
same backend with nothing changed. A shim `pulumi` logs every CLI call; for each run:

- *guard*: the `pulumi preview` calls before the first `pulumi up` (count, and their summed seconds);
- *before the first update*: from the process start to the first `pulumi up` call (start-up, the
  guard's previews and the things probe);
- *updates*: the summed seconds of the `pulumi up` calls; and the whole wall time.

Run: .venv/bin/python -m bench.replace_guard [--repeat 2] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench._report import machine, write_section
from bench.engine_up import new_project, pulumi_bin, start_moto
from tests.engine.helpers import ORCHESTRATE, OrchestrateProject

SECTION = "Live-replacement guard: what its previews cost an up"


@dataclass
class UpRun:
    wall: float
    guard_previews: int
    guard_seconds: float
    before_first_update: float
    update_seconds: float
    updates: int


def _calls(log: Path, since: float) -> list[tuple[float, float, list[str]]]:
    out = []
    for line in log.read_text().splitlines():
        s, e, _rc, *args = line.split()
        if float(s) >= since:  # the Automation API puts --non-interactive first
            out.append((float(s), float(e), [a for a in args if a != "--non-interactive"]))
    return out


def one_up(project: OrchestrateProject, moto: str, log: Path) -> UpRun:
    started = time.time()
    proc = subprocess.run([str(ORCHESTRATE), "--json", "up", "--all", "--yes", "--parallel", "3",
                           "--endpoint-url", moto], cwd=project.root, env=project.env,
                          capture_output=True, text=True, timeout=900, check=False)
    ended = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"up --all failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    json.loads(proc.stdout)  # the run's report: a broken one is a failed run
    calls = _calls(log, started)
    ups = [(s, e) for s, e, args in calls if args[:1] == ["up"]]
    first_up = min((s for s, _ in ups), default=ended)
    previews = [(s, e) for s, e, args in calls if args[:1] == ["preview"] and s < first_up]
    return UpRun(ended - started, len(previews), sum(e - s for s, e in previews), first_up - started,
                 sum(e - s for s, e in ups), len(ups))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="`up`s of the deployed stacks after the first")
    ap.add_argument("--write", action="store_true", help=f"write the '{SECTION}' section of docs/performance.md")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    bin_dir = pulumi_bin()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-replace-guard-") as tmp:
        base = Path(tmp)
        moto_proc, moto = start_moto(base)
        try:
            project, log = new_project(bin_dir, base)
            first = one_up(project, moto, log)
            print(f"first up: wall {first.wall:.1f}s, {first.guard_previews} guard previews", file=sys.stderr)
            again = []
            for _ in range(args.repeat):
                run = one_up(project, moto, log)
                again.append(run)
                print(f"up again: wall {run.wall:.1f}s, {run.guard_previews} guard previews "
                      f"({run.guard_seconds:.1f}s)", file=sys.stderr)
        finally:
            moto_proc.terminate()
            moto_proc.wait(timeout=10)
    median = sorted(again, key=lambda r: r.wall)[len(again) // 2]
    rows = [
        "| run | wall (s) | guard: previews (summed s) | process start to the first update (s) "
        "| updates (summed s) |",
        "|:--|--:|--:|--:|--:|",
        f"| first `up --all` (nothing deployed) | {first.wall:.1f} | {first.guard_previews} "
        f"({first.guard_seconds:.1f}) | {first.before_first_update:.1f} | {first.updates} "
        f"({first.update_seconds:.1f}) |",
        *(f"| `up --all` again, nothing changed (run {i}) | {r.wall:.1f} | {r.guard_previews} "
          f"({r.guard_seconds:.1f}) | {r.before_first_update:.1f} | {r.updates} ({r.update_seconds:.1f}) |"
          for i, r in enumerate(again, 1)),
    ]
    share = median.before_first_update / median.wall if median.wall else 0.0
    body = "\n".join([
        f"3 region stacks (latency routing) + DNS + replication through the real Pulumi CLI with the engine "
        f"tier's stand-in provider, a file backend and a moto server (as `bench.engine_up`). {machine()}; "
        f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
        "",
        *rows,
        "",
        f"On an `up` of deployed stacks (the median run again) the guard previews "
        f"{median.guard_previews} stacks ({median.guard_seconds:.1f} s of CLI time in all) and "
        f"the process spends {median.before_first_update:.1f} s ({share:.0%} of its wall) before the first "
        "update. Interactively that preview is the one shown at the prompt and is not repeated; with "
        "`--yes` (CI) it is the guard's own.",
        "",
        f"Reproduce: `.venv/bin/python -m bench.replace_guard --repeat {args.repeat} --write` (needs the "
        "engine tier's CLI: `PYTHON=.venv/bin/python tests/engine/build_pulumi.sh`, cached after the first build).",
    ])
    print(body)
    if args.write:
        print(f"\nwrote {write_section(SECTION, body)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
