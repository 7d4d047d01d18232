"""What `make test-fast` costs for a change inside one function of a hub module, with the test map
(per-function selection) and without it (the import reach), against every quick test (`ALL=1`).

The hub modules are the ones nearly every test imports: orchestrator/topology.py,
orchestrator/console.py and the modules of orchestrator/registry/ whose import reach is at least
half of the quick-tier test files. For every function of each (as the test map knows them), a
change is a line inserted at the start of its body (bench/affected_mutants.py's edit; nothing is
written, the selection is computed); the table gives the median number of quick-tier test files
selected over the functions some quick test runs and over all of them. Then, for topology.py,
console.py and the registry module with the widest reach, it times the run of the files selected
for the function at the median (the programs and orchestrator tiers as test-fast runs them, tests
marked slow left out), between two `ALL=1` runs so that all see the same load.

    python -m bench.test_fast_functions          # needs `make test-map` on this tree
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.affected_mutants import QUICK, mutant
from bench.test_fast_changes import timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import affected_tests as at  # noqa: E402


def run_selected(files: list[str]) -> tuple[float, int]:
    """The programs then the orchestrator tier's `files`, as affected_tests.run_tiers runs them."""
    load = os.getloadavg()[0]
    start = time.monotonic()
    passed = 0
    for tier in ("programs", "orchestrator"):
        mine = [f for f in files if f.startswith(f"tests/{tier}/")]
        if not mine:
            continue
        workers = "auto" if len(mine) > at.SERIAL_UP_TO else "0"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-n", workers, *mine, "-m", "not slow", "-q",
                               "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True)
        if proc.returncode not in (0, 5):
            sys.stderr.write(proc.stdout[-3000:])
            raise SystemExit(f"selected run failed: {mine}")
        passed += sum(int(w.split()[0]) for w in re.findall(r"\d+ passed", proc.stdout))
    wall = time.monotonic() - start
    print(f"  {len(files)} files: {wall:.1f} s, {passed} tests, load {load:.1f}", file=sys.stderr)
    return wall, passed


def main() -> int:
    test_map, why_not = at.TestMap.load(REPO / at.MAP_PATH)
    if test_map is None:
        raise SystemExit(f"test_fast_functions: {why_not}")
    graph = at.Graph(REPO)
    total = len([t for t in graph.test_files() if t.path.startswith(QUICK)])
    ran = {r for rec in test_map.tests.values() for r in rec.ran}
    static = {}
    for path in sorted(test_map.shapes):
        if path.startswith("orchestrator/registry/") or path in ("orchestrator/topology.py", "orchestrator/console.py"):
            static[path] = sorted(f for f in at.select([path], graph).files if f.startswith(QUICK))
    hubs = [p for p in static if not p.startswith("orchestrator/registry/") or len(static[p]) >= total / 2]
    rows = []
    for path in hubs:
        text = (REPO / path).read_text()
        counts: list[tuple[int, bool, str, list[str]]] = []
        for qualname in sorted(test_map.shapes[path].functions):
            changed = mutant(text, qualname)
            if changed is None:
                continue
            selection = at.select([path], graph, test_map, lambda p, t=text, c=changed: (t, c))
            files = sorted(f for f in selection.files if f.startswith(QUICK))
            counts.append((len(files), f"{path}::{qualname}" in ran, qualname, files))
        counts.sort()
        run = [c for c in counts if c[1]]
        median_run = run[len(run) // 2] if run else None
        rows.append((path, len(static[path]), len(counts), statistics.median(c[0] for c in counts) if counts else 0,
                     len(run), statistics.median(c[0] for c in run) if run else 0, median_run))
    print(f"quick-tier test files: {total}; hub modules: {len(hubs)}")
    print("\n| module | imports (before) | functions | median selected, all | run by a quick test | "
          "median selected, those |")
    print("|---|--:|--:|--:|--:|--:|")
    for path, before, n, med, n_run, med_run, _ in rows:
        print(f"| {path} | {before} | {n} | {med:g} | {n_run} | {med_run:g} |")
    timed_rows = [r for r in rows if r[0] in ("orchestrator/topology.py", "orchestrator/console.py")]
    registry = [r for r in rows if r[0].startswith("orchestrator/registry/")]
    if registry:
        timed_rows.append(max(registry, key=lambda r: (r[1], r[4])))
    every_before = timed("--all")
    walls = []
    for path, before, *_, median_run in timed_rows:
        if median_run is None:
            continue
        _, _, qualname, files = median_run
        print(f"{path}::{qualname}: {len(files)} of {total} files (imports: {before})", file=sys.stderr)
        walls.append((path, qualname, len(files), before, *run_selected(files)))
    every_after = timed("--all")
    every = (every_before[0] + every_after[0]) / 2
    print("\n| change in the body of (median function) | files, map | files, imports | tests | wall | vs. `ALL=1` |")
    print("|---|--:|--:|--:|--:|--:|")
    for path, qualname, n, before, wall, passed in walls:
        print(f"| {path}::{qualname} | {n} | {before} | {passed} | {wall:.1f} s | {wall / every:.2f} |")
    print(f"| every quick test (`ALL=1`), mean of {every_before[0]:.1f} s and {every_after[0]:.1f} s | {total} | "
          f"{total} | {every_before[1]} | {every:.1f} s | 1.00 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
