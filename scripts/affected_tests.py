#!/usr/bin/env python3
"""The test files a change can reach: what `make test-fast` runs.

A test file is selected when a changed file is in its reach:
- a Python module it imports, directly or through other modules of this repository (every `import`
  in a file counts, those inside functions too, and importing `a.b.c` runs `a/__init__.py` and
  `a/b/__init__.py` first);
- a module a string in a reached module names: `mock.patch("orchestrator.aws.boto3")`, a file path
  (`"tests/iot_strict.py:SHADOW_BYTES"`), `"-m", "orchestrator"` in a test (then its `__main__`), or
  the console script `orchestrate` in a test (`orchestrator.cli.main`);
- the CLI's lazy commands (`{"drill": "orchestrator.cli.drill:drill", ...}`): one when a reached
  module says its name as a string (`["drill", "--local"]`), all when a test uses the table's name
  or lists the commands (`list_commands`);
- a `conftest.py` in its directory or above it, and what that imports;
- a file that is not Python (docs, workflows, topologies): when a reached module names it by its
  path, its file name, or one of its directories as a whole string (`REPO / "docs"`), or by a glob
  of its suffix (`"*.md"`);
- the test file itself.
A change to pyproject.toml, constraints.txt, the Makefile or this script selects every test, and so
does a change that cannot be read (not a git checkout). Deleted and renamed files count by their old
names too, so a test that still imports a removed module is selected.

What is changed: the working tree (staged, unstaged and untracked files) against `--base`, by
default the merge base of HEAD with `main` (on main itself: HEAD, i.e. what is not committed yet).
With no change at all every test is selected: test-fast never answers "nothing to run" for a tree it
has not looked at.

    scripts/affected_tests.py --tier orchestrator          # paths for pytest, one per line
    scripts/affected_tests.py --changed orchestrator/registry/outbox.py --explain
    scripts/affected_tests.py --all --tier programs        # the whole tier (`make test-fast ALL=1`)

Only the standard library: `make` runs it with the system Python before the venv is used.
bench/affected_soundness.py checks the selection against what the tests really execute.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "programs", "tests", "bench", "scripts")
TIERS = ("programs", "orchestrator", "ops", "engine", "drill")
# Files whose change can alter any test's outcome (test configuration, pins, the tiers themselves).
EVERYTHING = frozenset({"pyproject.toml", "constraints.txt", "Makefile", "scripts/affected_tests.py"})
CONSOLE_SCRIPT = ("orchestrate", "orchestrator.cli.main")
LISTING = "list_commands"  # a test that lists the CLI's commands may load every one of them


def module_name(rel: Path) -> str:
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@dataclass
class Module:
    path: str  # repository-relative
    name: str
    is_package: bool
    imports: set[str] = field(default_factory=set)  # dotted names, maybe not modules of ours
    strings: set[str] = field(default_factory=set)  # every string constant in the file
    names: set[str] = field(default_factory=set)  # identifiers used (names, attributes)
    # {"drill": "orchestrator.cli.drill:drill", ...} assigned to a name: a registry of lazy imports,
    # reached per key (see Graph.test_reach); variable name -> [(key, "module:attr")]
    keyed: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _parse(path: Path, rel: str) -> Module:
    name = module_name(Path(rel))
    module = Module(rel, name, path.name == "__init__.py")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    except (SyntaxError, UnicodeDecodeError, ValueError):
        module.imports.add("*")  # unreadable: reaches everything (ruff reports it)
        return module
    package = name if module.is_package else name.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            module.imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[:len(base_parts) - node.level + 1]
                base = ".".join(p for p in base_parts if p)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            module.imports.add(target)
            module.imports.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 300:
            module.strings.add(node.value)
        elif isinstance(node, ast.Name):
            module.names.add(node.id)
        elif isinstance(node, ast.Attribute):
            module.names.add(node.attr)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            pairs = [(k.value, v.value) for k, v in zip(node.value.keys, node.value.values, strict=True)
                     if isinstance(k, ast.Constant) and isinstance(k.value, str)
                     and isinstance(v, ast.Constant) and isinstance(v.value, str) and ":" in v.value]
            if pairs and len(pairs) == len(node.value.keys):
                assigned = node.targets if isinstance(node, ast.Assign) else [node.target]
                for var in assigned:
                    if isinstance(var, ast.Name):
                        module.keyed[var.id] = pairs
    keyed_values = {v for pairs in module.keyed.values() for _, v in pairs}
    module.strings -= keyed_values  # reached per key, not as plain strings
    return module


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, less the bodies of `if TYPE_CHECKING:` (imports there never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class Graph:
    """The repository's Python modules and what each reaches."""

    def __init__(self, repo: Path = REPO) -> None:
        self.repo = repo
        self.modules: dict[str, Module] = {}  # by dotted name
        for package in PACKAGES:
            for path in sorted((repo / package).rglob("*.py")):
                rel = path.relative_to(repo).as_posix()
                if "/." in f"/{rel}" or "__pycache__" in rel:
                    continue
                module = _parse(path, rel)
                self.modules[module.name] = module
        self._edges: dict[str, set[str]] = {}
        self._reach: dict[str, frozenset[str]] = {}

    def _ours(self, dotted: str) -> list[str]:
        """`a.b.c` -> the modules of ours that importing it runs: a, a.b, a.b.c (those that exist)."""
        parts = dotted.split(".")
        return [n for n in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if n in self.modules]

    def edges(self, name: str) -> set[str]:
        if name in self._edges:
            return self._edges[name]
        module = self.modules[name]
        out: set[str] = set()
        if "*" in module.imports:
            out.update(self.modules)
        for dotted in module.imports:
            out.update(self._ours(dotted))
            if dotted not in self.modules:
                out.add(f"?{dotted}")  # maybe a module that was deleted: kept by name
        for text in module.strings:
            out.update(self._named_by(text, test=name.startswith("tests.")))
        out.update(self._ours(name.rpartition(".")[0]))  # a module's package runs first
        out.discard(name)
        self._edges[name] = out
        return out

    def _named_by(self, text: str, *, test: bool) -> Iterator[str]:
        # the console script, where a test runs it (elsewhere "orchestrate" is a word in a message)
        if test and (text == CONSOLE_SCRIPT[0] or text.endswith("/" + CONSOLE_SCRIPT[0])):
            yield CONSOLE_SCRIPT[1]
            return
        head = text.split(":", 1)[0]
        if head.endswith(".py") and "/" in head:  # "tests/iot_strict.py:SHADOW_BYTES": loaded by its path
            name = module_name(Path(head))
            if name in self.modules:
                yield from self._ours(name)
            return
        if not head or head.split(".", 1)[0] not in PACKAGES or not head.replace(".", "").replace("_", "").isalnum():
            return
        parts = head.split(".")
        for i in range(len(parts), 0, -1):  # "orchestrator.aws.boto3" -> orchestrator.aws
            prefix = ".".join(parts[:i])
            if prefix in self.modules:
                yield from self._ours(prefix)
                if test and self.modules[prefix].is_package and f"{prefix}.__main__" in self.modules:
                    yield f"{prefix}.__main__"
                return
        yield f"?{head}"

    def reach(self, name: str) -> frozenset[str]:
        """Every module `name` runs or names, itself included (iterative: the graph has cycles)."""
        if name in self._reach:
            return self._reach[name]
        seen = {name}
        stack = [name]
        while stack:
            for nxt in self.edges(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    if not nxt.startswith("?"):
                        stack.append(nxt)
        found = frozenset(seen)
        self._reach[name] = found
        return found

    def test_files(self) -> list[Module]:
        return [m for m in self.modules.values() if m.path.startswith("tests/")
                and Path(m.path).name.startswith("test_")]

    def conftests(self, test: Module) -> list[str]:
        parent = Path(test.path).parent
        out = []
        while True:
            name = module_name(parent / "conftest.py")
            if name in self.modules:
                out.append(name)
            if parent == Path("tests") or parent == Path("."):
                return out
            parent = parent.parent

    def test_reach(self, test: Module) -> frozenset[str]:
        """What a test file reaches: itself, its conftests, and the lazy entries of a keyed registry
        (the CLI's commands) whose key a reached module says as a string (`["drill", "--local"]`)
        or, when a test module uses the registry's name or lists the commands, all of them
        (`for name in COMMANDS`, `group.list_commands(ctx)`)."""
        found: set[str] = set(self.reach(test.name))
        for conftest in self.conftests(test):
            found |= self.reach(conftest)
        taken: set[tuple[str, str, str]] = set()
        while True:
            grown = False
            for owner, var, key, target in self._keyed_entries():
                if owner not in found or (owner, var, key) in taken:
                    continue
                if self._says(found, owner, var, key):
                    taken.add((owner, var, key))
                    for name in self._named_by(target, test=False):
                        if name not in found:
                            found |= self.reach(name) if not name.startswith("?") else {name}
                            grown = True
            if not grown:
                return frozenset(found)

    def _keyed_entries(self) -> list[tuple[str, str, str, str]]:
        if not hasattr(self, "_keyed_cache"):
            self._keyed_cache = [(name, var, key, target) for name, m in self.modules.items()
                                 for var, pairs in m.keyed.items() for key, target in pairs]
        return self._keyed_cache

    def _says(self, found: set[str], owner: str, var: str, key: str) -> bool:
        for name in found:
            module = self.modules.get(name)
            if module is None or name == owner:
                continue
            listed = name.startswith("tests.") and (var in module.names or LISTING in module.names)
            if key in module.strings or listed:
                return True
        return False


def _mentions(module: Module, changed: str) -> bool:
    """Whether a module names the non-Python file `changed` (path, file name, a directory, a glob)."""
    path = Path(changed)
    names = {changed, path.name}
    names.update(p.as_posix() for p in path.parents if p != Path("."))
    names.update(p.name for p in path.parents if p != Path("."))
    for text in module.strings:
        if text in names or (text.endswith(path.name) and "/" in text and changed.endswith(text.lstrip("./"))):
            return True
        last = text.rsplit("/", 1)[-1]  # "**/*.md" -> "*.md"; "iot:*" or "*" alone is not a file glob
        if "*" in last and "." in last and last.strip("*.") and fnmatch.fnmatch(path.name, last):
            return True
    return False


@dataclass
class Selection:
    everything: bool
    reason: str
    files: dict[str, list[str]]  # test file -> why (changed files that reach it)


def select(changed: Iterable[str], graph: Graph | None = None) -> Selection:
    changed = sorted({c for c in changed if c})
    graph = graph or Graph()
    if not changed:
        return Selection(True, "no change found", {})
    hit = [c for c in changed if c in EVERYTHING]
    if hit:
        return Selection(True, f"{hit[0]} changed", {})
    by_module: dict[str, str] = {}  # module name (or ?name) -> changed file
    other: list[str] = []
    for c in changed:
        top = c.split("/", 1)[0]
        if c.endswith(".py") and top in PACKAGES:
            name = module_name(Path(c))
            by_module[name] = c
            by_module[f"?{name}"] = c
        else:
            other.append(c)
    mentioning: dict[str, list[str]] = {}  # module -> non-Python changed files it names
    for name, module in graph.modules.items():
        names = [c for c in other if _mentions(module, c)]
        if names:
            mentioning[name] = names
    files: dict[str, list[str]] = {}
    for test in graph.test_files():
        reach = graph.test_reach(test)
        why = sorted({by_module[m] for m in reach if m in by_module}
                     | {c for m in reach if m in mentioning for c in mentioning[m]})
        if why:
            files[test.path] = why
    return Selection(False, f"{len(changed)} changed file(s)", files)


def _git(*args: str) -> list[str]:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"git {' '.join(args)} failed")
    return [line for line in proc.stdout.splitlines() if line]


def changed_files(base: str | None) -> tuple[list[str], str]:
    """The files that differ from `base` (default: the merge base of HEAD with main), and the base."""
    if base is None:
        try:
            base = _git("merge-base", "HEAD", "main")[0]
        except (RuntimeError, IndexError):
            base = "HEAD"
    files = _git("diff", "--name-only", "--no-renames", base, "--")
    files += _git("ls-files", "--others", "--exclude-standard")
    return sorted(set(files)), base


def run_tiers(tiers: list[str], selection: Selection, *, jobs: str, junit_dir: str | None,
              pytest_args: list[str]) -> int:
    """`make test-fast`: each tier's selected files under pytest, stopping at the first failing tier.
    Tests marked slow are left out; a tier with a few files runs in this process (starting
    pytest-xdist's workers costs more than it saves there)."""
    for tier in tiers:
        prefix = f"tests/{tier}/"
        files = [prefix.rstrip("/")] if selection.everything else \
            sorted(f for f in selection.files if f.startswith(prefix))
        if not files:
            print(f"test tier {tier}: no test file reaches what changed ({selection.reason})", file=sys.stderr)
            continue
        workers = jobs if selection.everything or len(files) > SERIAL_UP_TO else "0"
        args = ["-x", "-n", workers, *files, "-m", "not slow"]
        if junit_dir:
            args.append(f"--junitxml={junit_dir}/{tier}.xml")
        args += pytest_args
        what = "every file" if selection.everything else f"{len(files)} file(s) reached by the change"
        print(f"test tier {tier} ({what}): {' '.join(args)}", file=sys.stderr)
        status = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=REPO).returncode
        if status not in (0, 5):  # 5: nothing collected (e.g. every selected test is marked slow)
            return status
    if not selection.everything:  # where else the change reaches: the slow tiers, not run here
        for tier in (t for t in TIERS if t not in tiers):
            files = sorted(f for f in selection.files if f.startswith(f"tests/{tier}/"))
            if files:
                shown = " ".join(files[:6]) + (f" ... ({len(files)} files)" if len(files) > 6 else "")
                print(f"also reached, in the {tier} tier (not run by test-fast): pytest {shown}", file=sys.stderr)
    return 0


SERIAL_UP_TO = 4  # files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", choices=TIERS, action="append",
                        help="only this tier's test files (repeatable; with --run, in this order)")
    parser.add_argument("--run", action="store_true", help="run the selected files of each --tier with pytest")
    parser.add_argument("--jobs", default="auto", help="pytest-xdist workers for a tier with many files (--run)")
    parser.add_argument("--junit-dir", default=None, help="each tier's JUnit XML there (--run)")
    parser.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments (--run)")
    parser.add_argument("--base", default=None, help="git revision to compare with (default: merge base with main)")
    parser.add_argument("--changed", nargs="*", default=None, help="these files changed (instead of asking git)")
    parser.add_argument("--all", action="store_true", help="every test file (the whole tier)")
    parser.add_argument("--explain", action="store_true", help="say why each file is selected, on stderr")
    args = parser.parse_args(argv)
    if args.all:
        selection = Selection(True, "--all", {})
    else:
        try:
            changed, base = (args.changed, "--changed") if args.changed is not None else changed_files(args.base)
        except (RuntimeError, OSError) as exc:
            print(f"affected_tests: cannot list changes ({exc}): every test selected", file=sys.stderr)
            changed, base = [], "?"
        selection = select(changed)
        shown = "--changed" if base == "--changed" else base[:12]
        print(f"affected_tests: {selection.reason} against {shown}", file=sys.stderr)
    if args.run:
        return run_tiers(args.tier or ["programs", "orchestrator"], selection, jobs=args.jobs,
                         junit_dir=args.junit_dir, pytest_args=args.pytest_args)
    prefixes = [f"tests/{t}/" for t in args.tier] if args.tier else ["tests/"]
    if selection.everything:
        for prefix in prefixes:
            print(prefix.rstrip("/"))
        return 0
    for f in sorted(f for f in selection.files if f.startswith(tuple(prefixes))):
        if args.explain:
            print(f"  {f}  <- {', '.join(selection.files[f][:3])}", file=sys.stderr)
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
