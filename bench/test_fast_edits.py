"""Wall time of `make test-fast` for typical one-function changes, against `make test-fast ALL=1`.

A typical change: a line (`pass`) added to the body of one function of orchestrator/ or programs/,
after its docstring, in the working tree; the functions are a random sample (seeded) of those some
quick-tier test runs according to the test map (a function no test runs selects nothing with the map
and would flatter it). Each edit is made, `make test-fast BASE=HEAD` runs (the whole target: ruff
and the import rules, then the selected programs and orchestrator files, with the map), and the file
is restored. `make test-fast ALL=1` (every quick test but mypy and the slow-marked ones) runs before
the first edit, between every `--every` edits and after the last, and each edit's run is compared
with the mean of the `ALL=1` runs around it, so both sides see about the same load.

    python -m bench.test_fast_edits              # 6 functions, seed 27, ALL=1 every 3
    python -m bench.test_fast_edits 4 --seed 1 --every 2

Needs a test map recorded on this tree (`make test-map`) and a clean working tree (the edits are
measured against HEAD). The recipe runs without make (a make variable on the command line would reach
the tests that run `make -n` themselves). Prints one line per run and
a markdown table; exits 1 when a run fails (the file is restored first).
"""

from __future__ import annotations

import argparse
import ast
import os
import random
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
# `make test-fast`'s recipe (the Makefile), run without make: a make variable on the command line
# (ALL=1, BASE=HEAD) reaches the tests' own `make -n` runs through MAKEFLAGS and changes what they see.
LINT = ["-m", "pytest", "-x", "tests/test_lint.py", "--deselect", "tests/test_lint.py::test_mypy_finds_nothing"]
SELECTED = ["scripts/affected_tests.py", "--run", "--tier", "programs", "--tier", "orchestrator", "--jobs", "auto"]


def edited(text: str, qualname: str) -> str | None:
    """`text` with `pass` added to the body of `qualname`, after its docstring (None: a one-line body)."""
    tree = ast.parse(text)
    node = at.find_function(tree, qualname)
    assert isinstance(node, at.FUNCS), qualname
    body = node.body
    docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str)
    anchor = body[1] if docstring and len(body) > 1 else None if docstring else body[0]
    if anchor is None or anchor.lineno == node.lineno or (docstring and body[0].end_lineno == anchor.lineno):
        return None
    lines = text.splitlines(keepends=True)
    lines.insert(anchor.lineno - 1, " " * anchor.col_offset + "pass\n")
    return "".join(lines)


def run(*args: str) -> tuple[float, int, int, float]:
    """test-fast with ARGS (`--all`, `--base HEAD`): wall seconds, tests passed, programs and orchestrator
    files run, load before."""
    load = os.getloadavg()[0]
    start = time.monotonic()
    out = ""
    for command in (LINT, [*SELECTED, *args]):
        proc = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True)
        out += proc.stdout + proc.stderr
        if proc.returncode != 0:
            break
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(out[-4000:])
        raise SystemExit(f"test_fast_edits: test-fast {' '.join(args)} failed")
    passed = sum(int(w.split()[0]) for w in re.findall(r"(\d+) passed", out)[1:])  # [0]: the lint tier
    files = sum(int(n) for n in re.findall(r"\((\d+) file\(s\) reached by the change\)", out))
    if "(every file)" in out:
        files = -1
    return wall, passed, files, load


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=6)
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument("--every", type=int, default=3, help="an ALL=1 run after this many edits")
    args = parser.parse_args(argv)
    test_map, why_not = at.TestMap.load(REPO / at.MAP_PATH)
    if test_map is None:
        raise SystemExit(f"test_fast_edits: {why_not}")
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                      text=True).stdout.strip():
        raise SystemExit("test_fast_edits: the working tree has changes; the edits are measured against HEAD")
    ran = {r for path, rec in test_map.tests.items() if path.startswith(QUICK) and not rec.opaque for r in rec.ran}
    candidates = sorted(f"{path}::{q}" for path, s in test_map.shapes.items()
                        if path.startswith(("orchestrator/", "programs/")) for q in s.functions
                        if f"{path}::{q}" in ran)
    rng = random.Random(args.seed)
    rng.shuffle(candidates)
    picks = []
    for function in candidates:
        path, qualname = function.split("::")
        if edited((REPO / path).read_text(), qualname) is not None:
            picks.append(function)
        if len(picks) == args.n:
            break
    every: list[tuple[float, int]] = []  # (wall, tests) of each ALL=1 run, in order
    rows: list[tuple[str, float, int, int, float, int]] = []  # function, wall, tests, files, load, ALL=1 runs before

    def everything() -> None:
        wall, passed, _, load = run("--all")
        every.append((wall, passed))
        print(f"ALL=1: {wall:.1f} s, {passed} tests, load {load:.1f}", file=sys.stderr, flush=True)
    everything()
    for i, function in enumerate(picks):
        path, qualname = function.split("::")
        text = (REPO / path).read_text()
        (REPO / path).write_text(edited(text, qualname) or text)
        try:
            wall, passed, files, load = run("--base", "HEAD")
        finally:
            (REPO / path).write_text(text)
        rows.append((function, wall, passed, files, load, len(every)))
        print(f"{function}: {files} files, {wall:.1f} s, {passed} tests, load {load:.1f}", file=sys.stderr, flush=True)
        if (i + 1) % args.every == 0 or i == len(picks) - 1:
            everything()
    total = len([t for t in at.Graph(REPO).test_files() if t.path.startswith(QUICK)])
    print(f"\n| function changed (a `pass` added) | test files run (of {total}) | tests | wall | load | "
          "vs. `ALL=1` around it |")
    print("|---|--:|--:|--:|--:|--:|")
    ratios = []
    for function, wall, passed, files, load, before in rows:
        around = statistics.mean([every[before - 1][0], every[before][0]])
        ratios.append(wall / around)
        print(f"| {function} | {'all' if files < 0 else files} | {passed} | {wall:.1f} s | {load:.1f} | "
              f"{wall / around:.2f} |")
    print(f"| `ALL=1`, {len(every)} runs (min-max) | {total} | {every[0][1]} | "
          f"{statistics.median(w for w, _ in every):.1f} s ({min(w for w, _ in every):.1f}-"
          f"{max(w for w, _ in every):.1f}) | | 1.00 |")
    print(f"\nmedian ratio {statistics.median(ratios):.2f} over {len(ratios)} one-function changes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
