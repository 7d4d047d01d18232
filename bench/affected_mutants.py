"""Does test-fast's per-function selection miss a test that a function-body change breaks?

For each of N functions of orchestrator/ and programs/ (half of them ones the test map says some
quick-tier test file ran, half any other), insert `raise RuntimeError(...)` as the first statement
of its body in a copy of the repository, ask scripts/affected_tests.py which quick-tier test files
that change selects (with the test map, as `make test-fast` does), run the quick-tier test files
that import the module (the static reach, which bench/affected_soundness.py checks against every
call the tests make; the tests marked slow left out, as test-fast does) and compare: a test file
that fails with the mutant, was not selected, and passes without the mutant is a miss.

    python -m bench.affected_mutants              # 8 functions, seed 27
    python -m bench.affected_mutants 20 --seed 1

Needs a test map recorded on this tree (`make test-map`). Prints one line per function and a
summary; exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import affected_tests as at  # noqa: E402

QUICK = ("tests/programs/", "tests/orchestrator/")


def mutant(text: str, qualname: str) -> str | None:
    """`text` with `raise RuntimeError` first in the body of the function `qualname` (None for a
    function written on one line)."""
    tree = ast.parse(text)
    node = at.find_function(tree, qualname)
    assert isinstance(node, at.FUNCS), qualname
    first = node.body[0]
    if first.lineno == node.lineno:
        return None
    lines = text.splitlines(keepends=True)
    indent = " " * first.col_offset
    lines.insert(first.lineno - 1, f"{indent}raise RuntimeError('affected_mutants: {qualname}')\n")
    return "".join(lines)


def failing(copy: Path, files: list[str]) -> set[str]:
    """The test files among `files` with a failing or erroring test, run in `copy`."""
    if not files:
        return set()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "-n", "2",
                           "-m", "not slow", *files], cwd=copy, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(copy)})
    return {m.split("::")[0] for m in re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=8)
    parser.add_argument("--seed", type=int, default=27)
    args = parser.parse_args(argv)
    test_map, why_not = at.TestMap.load(REPO / at.MAP_PATH)
    if test_map is None:
        raise SystemExit(f"affected_mutants: {why_not}")
    graph = at.Graph(REPO)
    current = at.file_digests(REPO)
    drift = [p for p in set(test_map.files) | set(current) if test_map.files.get(p) != current.get(p)
             and p.endswith(".py") and (p.startswith(("orchestrator/", "programs/")) or p.endswith("conftest.py"))]
    if drift:  # they would count as changed, and the selection be wider than the mutant's own
        raise SystemExit(f"affected_mutants: {len(drift)} Python file(s) differ from the test map ({drift[0]}): "
                         "make test-map first")
    ran = {r for rec in test_map.tests.values() for r in rec.ran}
    functions = sorted(f"{path}::{q}" for path, s in test_map.shapes.items()
                       if path.startswith(("orchestrator/", "programs/")) for q in s.functions)
    rng = random.Random(args.seed)
    editable = [f for f in functions if mutant((REPO / f.split("::")[0]).read_text(), f.split("::")[1])]
    some = rng.sample([f for f in editable if f in ran], args.n - args.n // 2)
    some += rng.sample([f for f in editable if f not in ran], args.n // 2)
    misses: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copy = Path(tmp) / "repo"
        for rel in at._tree_files(REPO):
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, copy / rel)
        (copy / ".venv").symlink_to((REPO / ".venv").resolve())
        for function in some:
            path, qualname = function.split("::")
            text = (REPO / path).read_text()
            changed = mutant(text, qualname) or text
            selection = at.select([path], graph, test_map, lambda p, t=text, c=changed: (t, c))
            selected = {f for f in selection.files if f.startswith(QUICK)}
            static = {f for f in at.select([path], graph).files if f.startswith(QUICK)}
            (copy / path).write_text(changed)
            try:
                broken = failing(copy, sorted(static))
            finally:
                (copy / path).write_text(text)
            # a file that fails without the mutant too is not the mutant's doing
            broken -= failing(copy, sorted(broken - selected))
            missed = sorted(broken - selected)
            misses += [(function, m) for m in missed]
            print(f"{function}: selected {len(selected)} (imports: {len(static)}), failing {len(broken)}, "
                  f"missed {len(missed)}{' ' + ' '.join(missed) if missed else ''}", flush=True)
    print(f"affected_mutants: {len(some)} function-body mutants, {len(misses)} missed test file(s)")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
