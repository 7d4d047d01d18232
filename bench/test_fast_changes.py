"""What `make test-fast` costs for a one-file change, over the modules of orchestrator/ and programs/.

For every module it counts the quick-tier test files a change to it reaches (scripts/affected_tests.py,
no test run); then it times the selected run (`affected_tests.py --run --changed FILE`, the part of
test-fast after the lint tier) for modules at the 10th, 25th, 50th, 75th and 90th percentile of that
count, and the whole quick tiers (`--all`) before and after them, so all runs see the same load.

    python -m bench.test_fast_changes              # prints a markdown table and one summary line
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import affected_tests as at  # noqa: E402

QUICK = ("tests/programs/", "tests/orchestrator/")


def timed(*args: str) -> tuple[float, int]:
    load = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "scripts/affected_tests.py", "--run", "--tier", "programs",
                           "--tier", "orchestrator", *args, "--", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"test-fast failed for {args}")
    passed = sum(int(w.split()[0]) for w in re.findall(r"\d+ passed", proc.stdout))
    print(f"  {' '.join(args)[:70]}: {wall:.1f} s, {passed} tests, load {load:.1f}", file=sys.stderr)
    return wall, passed


def main() -> int:
    graph = at.Graph(REPO)
    modules = sorted(m.path for m in graph.modules.values() if m.path.startswith(("orchestrator/", "programs/")))
    total = len([t for t in graph.test_files() if t.path.startswith(QUICK)])
    counts = []
    for path in modules:
        selection = at.select([path], graph)
        counts.append((len([f for f in selection.files if f.startswith(QUICK)]), path))
    counts.sort()
    sizes = [c for c, _ in counts]
    print(f"modules: {len(modules)}; quick-tier test files: {total}; files reached by a one-module change: "
          f"median {statistics.median(sizes):.0f}, p25 {sizes[len(sizes) // 4]}, p75 {sizes[3 * len(sizes) // 4]}, "
          f"none {sizes.count(0)}, all {sizes.count(total)}")
    picks = [counts[min(len(counts) - 1, int(q * len(counts)))] for q in (0.10, 0.25, 0.50, 0.75, 0.90)]
    every_before = timed("--all")
    rows = [(q, n, path, *timed("--changed", path)) for q, (n, path) in zip((10, 25, 50, 75, 90), picks, strict=True)]
    every_after = timed("--all")
    every = (every_before[0] + every_after[0]) / 2
    print("\n| percentile | module changed | test files | tests | wall | vs. every quick test |")
    print("|--:|---|--:|--:|--:|--:|")
    for q, n, path, wall, passed in rows:
        print(f"| p{q} | {path} | {n} of {total} | {passed} | {wall:.1f} s | {wall / every:.2f} |")
    print(f"| | every quick test (`ALL=1`), mean of before and after | {total} | {every_before[1]} "
          f"| {every:.1f} s | 1.00 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
