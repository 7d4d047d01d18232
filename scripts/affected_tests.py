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

With a test map (`make test-map`: .cache/test-map.json, not committed), a change inside the body
of functions is finer: a test file the map recorded selects it only when it ran one of those
functions (or read the file as data), whatever it imports. What stays on the rule above: a change at
module level (imports, constants, class bodies outside methods, decorators, signatures, a function
added or deleted), a file that is not Python, a file the map does not know, and the test files the
map has no trustworthy record of (not recorded; a subprocess that could not record itself: killed, or
a Python started with -I; code run from outside the repository). What the Python subprocesses of a
test run (console scripts, `python -c`, scripts run by bash) is in its file's record. The map is
recorded on one tree: a file that differs from it counts as changed (test-fast says how many), so an
old map is still sound, only coarser; `make test-map` records it again.
`--no-map` leaves the map out; `--changed` names files, not lines, so it uses the rule above.

What is changed: the working tree (staged, unstaged and untracked files) against `--base`, by
default the merge base of HEAD with `main` (on main itself: HEAD, i.e. what is not committed yet).
With no change at all every test is selected: test-fast never answers "nothing to run" for a tree it
has not looked at.

    scripts/affected_tests.py --tier orchestrator          # paths for pytest, one per line
    scripts/affected_tests.py --changed orchestrator/registry/outbox.py --explain
    scripts/affected_tests.py --all --tier programs        # the whole tier (`make test-fast ALL=1`)
    scripts/affected_tests.py --build-map                  # record the test map (`make test-map`)

Only the standard library: `make` runs it with the system Python before the venv is used.
bench/affected_soundness.py checks the import rule against what the tests really execute;
bench/affected_mutants.py checks the per-function selection by breaking functions.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
    files: dict[str, list[str]]  # test file -> why (changed files or functions that reach it)
    notes: list[str] = field(default_factory=list)  # how the test map was used, for stderr


def _static_why(graph: Graph, changed: Iterable[str]) -> Callable[[Module], list[str]]:
    """The static rule: for a test file, the changed files in its reach (see the module docstring)."""
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

    def why(test: Module) -> list[str]:
        if not by_module and not mentioning:
            return []
        reach = graph.test_reach(test)
        return sorted({by_module[m] for m in reach if m in by_module}
                      | {c for m in reach if m in mentioning for c in mentioning[m]})
    return why


def select(changed: Iterable[str], graph: Graph | None = None, test_map: TestMap | None = None,
           texts: Callable[[str], tuple[str | None, str | None]] | None = None) -> Selection:
    """The test files `changed` reaches. With a test map and `texts` (a changed file -> its text at
    the base and now, None where it does not exist), a change inside function bodies selects only
    the recorded test files that ran those functions (see _precise)."""
    changed = sorted({c for c in changed if c})
    graph = graph or Graph()
    if not changed:
        return Selection(True, "no change found", {})
    hit = [c for c in changed if c in EVERYTHING]
    if hit:
        return Selection(True, f"{hit[0]} changed", {})
    static = _static_why(graph, changed)
    precise = _precise(graph, changed, test_map, texts) if test_map is not None and texts is not None else None
    if isinstance(precise, str):  # the map cannot be used at all: the static rule, and why
        selection = select(changed, graph)
        selection.notes.append(precise)
        return selection
    files: dict[str, list[str]] = {}
    for test in graph.test_files():
        recorded = precise.tests.get(test.path) if precise is not None else None
        why = precise.why(test, recorded) if precise is not None and recorded is not None else static(test)
        if why:
            files[test.path] = why
    return Selection(False, f"{len(changed)} changed file(s)", files, precise.notes if precise else [])


# --- Per-function selection: the test map -------------------------------------------------------
# `make test-map` (build_map) runs each quick-tier test file in its own pytest process with
# scripts/test_map_recorder.py, which records every function of this repository that ran in it (by
# file and qualified name), in the pytest process and in the Python processes it starts, the Python
# files it read as data, and why the record cannot be trusted (a subprocess that left no record, ...).
# A change inside function bodies then selects only the recorded files that ran those functions; a
# module-level change falls back to the static rule for that file (see _precise).

MAP_PATH = Path(".cache") / "test-map.json"  # under the repository; .cache/ is not committed
MAP_VERSION = 1
QUICK_TIERS = ("programs", "orchestrator")
FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class Shape:
    """A Python file as the test map compares it: a hash of its module level (every function body
    left out, the `def` lines, decorators and defaults kept) and one per function body (the bodies of
    the functions nested in it left out), by qualified name as `code.co_qualname` spells it."""

    skeleton: str
    functions: dict[str, str]


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _dump_blanked(nodes: list[ast.stmt]) -> str:
    """ast.dump of `nodes` (no line numbers, no comments) with every function body in them emptied."""
    inner = [n for stmt in nodes for n in ast.walk(stmt) if isinstance(n, FUNCS)]
    saved = [n.body for n in inner]
    try:
        for n in inner:
            n.body = []
        return _digest("\n".join(ast.dump(stmt) for stmt in nodes))
    finally:
        for n, body in zip(inner, saved, strict=True):
            n.body = body


def shape(text: str | None) -> Shape | None:
    if text is None:
        return None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    functions: dict[str, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, FUNCS):
                qualname = prefix + child.name
                body = _dump_blanked(child.body)  # two defs of one name (a property's setter): both
                functions[qualname] = body if qualname not in functions else _digest(functions[qualname] + body)
                visit(child, qualname + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)
    visit(tree, "")
    return Shape(_dump_blanked(tree.body), functions)


def find_function(tree: ast.AST, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The def named `qualname` (as `shape` names them: `Class.method`, `f.<locals>.g`) in `tree`."""
    def find(node: ast.AST, prefix: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        for child in ast.iter_child_nodes(node):
            found: ast.FunctionDef | ast.AsyncFunctionDef | None
            if isinstance(child, FUNCS):
                name = prefix + child.name
                if name == qualname:
                    return child
                found = find(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                found = find(child, prefix + child.name + ".")
            else:
                found = find(child, prefix)
            if found is not None:
                return found
        return None
    return find(tree, "")


def function_name(qualname: str) -> str:
    """`f.<locals>.<lambda>` -> `f`: a lambda's or a comprehension's code runs inside its function's
    body (a change there is a change to `f`); `<module>` -> "" (module level)."""
    parts = qualname.split(".")
    while parts and parts[-1].startswith("<"):
        parts.pop()
    return ".".join(parts)


def _tree_files(repo: Path) -> list[str]:
    """Every file of the checkout that is not ignored (repository-relative)."""
    try:
        proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo, capture_output=True,
                              text=True, timeout=60, check=True)
        return sorted({line for line in proc.stdout.splitlines() if line and (repo / line).is_file()})
    except (OSError, subprocess.SubprocessError):
        return sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()
                      and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(repo).parts))


def file_digests(repo: Path) -> dict[str, str]:
    return {rel: hashlib.sha1((repo / rel).read_bytes()).hexdigest()[:16] for rel in _tree_files(repo)}


def _is_python(path: str) -> bool:
    return path.endswith(".py") and path.split("/", 1)[0] in PACKAGES


@dataclass
class Recorded:
    ran: frozenset[str]  # "path::qualname" of every function that ran
    read: frozenset[str]  # Python files of the repository read as data (open(), not import)
    opaque: str  # why the record cannot be trusted (a subprocess that could not record, ...), or ""
    children: int = 0  # Python subprocesses whose records are in `ran` and `read`


@dataclass
class TestMap:
    files: dict[str, str]  # every file of the checkout when recorded -> its digest
    shapes: dict[str, Shape]  # the Python files' shapes then
    tests: dict[str, Recorded]  # quick-tier test file -> what it ran
    created: float = 0.0

    def to_json(self) -> str:
        return json.dumps({
            "version": MAP_VERSION, "python": list(sys.version_info[:2]), "created": self.created,
            "files": self.files,
            "shapes": {p: {"skeleton": s.skeleton, "functions": s.functions} for p, s in sorted(self.shapes.items())},
            "tests": {t: {"ran": sorted(r.ran), "read": sorted(r.read), "opaque": r.opaque, "children": r.children}
                      for t, r in sorted(self.tests.items())},
        }, separators=(",", ":"))

    @classmethod
    def load(cls, path: Path) -> tuple[TestMap | None, str]:
        """The map at `path`, or None and why not (missing, another format, another Python)."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None, "no test map (make test-map records one)"
        except (OSError, ValueError) as exc:
            return None, f"test map unreadable ({exc}); make test-map records it again"
        if not isinstance(data, dict) or data.get("version") != MAP_VERSION \
                or data.get("python") != list(sys.version_info[:2]):
            return None, "test map from another version or Python; make test-map records it again"
        return cls(
            files=data["files"],
            shapes={p: Shape(s["skeleton"], s["functions"]) for p, s in data["shapes"].items()},
            tests={t: Recorded(frozenset(r["ran"]), frozenset(r["read"]), r["opaque"], r.get("children", 0))
                   for t, r in data["tests"].items()},
            created=data.get("created", 0.0)), ""


@dataclass
class _Precise:
    tests: dict[str, Recorded]  # the recorded test files whose record is trusted
    functions: set[str]  # "path::qualname" changed (against the base, or against the map)
    files: set[str]  # every changed file, for the recorded reads
    fallback: Callable[[Module], list[str]]  # the static rule over the files whose change is not in bodies
    notes: list[str]

    def why(self, test: Module, recorded: Recorded) -> list[str]:
        return sorted(set(self.fallback(test)) | (recorded.ran & self.functions) | (recorded.read & self.files))


def _precise(graph: Graph, changed: list[str], test_map: TestMap,
             texts: Callable[[str], tuple[str | None, str | None]]) -> _Precise | str:
    """Which functions changed, and which files must fall back to the static rule.

    The map was recorded on some tree M; the change is base -> now. A test's outcome can differ
    between the base and now only if it runs code that differs between M and the base or between M
    and now (on everything else its run is the recorded one), so each changed file is compared three
    ways (map, base, now), and so is each file that differs from the map while the change leaves it
    alone (the map is older than the base, or than an edit). A Python file whose module level differs
    in any of them (imports, constants, class bodies, decorators, a function added or deleted), that
    the map does not hold, or that does not parse, falls back to the static rule; so does every file
    that is not Python. A file that selects everything (pyproject.toml, ...) and differs from the map
    leaves the map out (the string returned says so)."""
    current = file_digests(graph.repo)
    drift = sorted(p for p in set(test_map.files) | set(current)
                   if test_map.files.get(p) != current.get(p) and p not in changed)
    config = [p for p in drift if p in EVERYTHING]
    if config:
        return f"test map not used: {config[0]} changed since it was recorded (make test-map records it again)"
    fallback: set[str] = set()
    functions: set[str] = set()
    for path in [*changed, *drift]:
        if not _is_python(path):
            fallback.add(path)
            continue
        if path in changed:
            old, new = texts(path)
        else:
            old = new = (graph.repo / path).read_text(encoding="utf-8") if path in current else None
        shapes = [test_map.shapes.get(path), shape(old), shape(new)]
        known = [s for s in shapes if s is not None]
        if len(known) < 3 or len({s.skeleton for s in known}) > 1:
            fallback.add(path)
            continue
        for qualname in sorted({q for s in known for q in s.functions}):
            if len({s.functions.get(qualname) for s in known}) > 1:
                functions.add(f"{path}::{qualname}")
    notes = []
    if drift:
        age = (time.time() - test_map.created) / 3600
        notes.append(f"test map: {len(drift)} file(s) differ from when it was recorded {age:.1f} h ago, "
                     "counted as changed (make test-map records it again)")
    notes.append(f"test map: {len(functions)} function(s) changed in their bodies; "
                 f"{len([f for f in fallback if _is_python(f)])} Python file(s) changed at module level, "
                 f"new or deleted, selected by imports")
    tests = {t: r for t, r in test_map.tests.items() if not r.opaque}
    return _Precise(tests, functions, set(changed) | set(drift), _static_why(graph, sorted(fallback)), notes)


def build_map(repo: Path = REPO, *, jobs: int = 0, tiers: Iterable[str] = QUICK_TIERS,
              out: Path | None = None) -> int:
    """`make test-map`: run each quick-tier test file (every test, those marked slow too: the map
    then holds what `make test` runs, and a superset of what test-fast runs) in its own pytest process
    under the recorder, and write the map. A process of its own per file: what a file's tests run
    includes what its imports and session fixtures run, wherever another file would have run them
    first. The Python processes the tests start record themselves and add to their file's record
    (scripts/test_map_recorder.py)."""
    out = out or repo / MAP_PATH
    graph = Graph(repo)
    before = file_digests(repo)
    shapes = {p: s for p in before if _is_python(p) and (s := shape((repo / p).read_text(encoding="utf-8")))}
    tests = sorted(t.path for t in graph.test_files() if t.path.startswith(tuple(f"tests/{x}/" for x in tiers)))
    jobs = jobs or os.cpu_count() or 1
    start = time.monotonic()
    recorded: dict[str, Recorded] = {}
    with tempfile.TemporaryDirectory(prefix="test-map-") as tmp:
        def record(index_test: tuple[int, str]) -> None:
            index, test = index_test
            result = Path(tmp) / f"{index}.json"
            here = str(Path(__file__).resolve().parent)  # the recorder, scripts/test_map_recorder.py
            env = {**os.environ, "TEST_MAP_OUT": str(result), "TEST_MAP_REPO": str(repo),
                   "PYTHONPATH": os.pathsep.join([here, str(repo), os.environ.get("PYTHONPATH", "")])}
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                                   "test_map_recorder", test], cwd=repo, env=env,
                                  capture_output=True, text=True)
            try:
                data = json.loads(result.read_text())
            except (OSError, ValueError):
                print(f"test-map: {test}: no record (pytest exit {proc.returncode}); it is selected by imports",
                      file=sys.stderr)
                return
            opaque = data["opaque"]
            status = "" if proc.returncode in (0, 5) else f" (pytest exit {proc.returncode})"
            if status:  # a test failed or errored while recorded: the run may have stopped short of what it runs
                opaque = "; ".join(w for w in (opaque, f"a test failed while recorded{status}") if w)
            recorded[test] = Recorded(frozenset(data["ran"]), frozenset(data["read"]), opaque, data.get("children", 0))
            subprocesses = f" (with {data['children']} Python subprocesses)" if data.get("children") else ""
            print(f"test-map: [{len(recorded)}/{len(tests)}] {test}: {len(data['ran'])} functions{subprocesses}"
                  f"{'; ' + opaque if opaque else ''}", file=sys.stderr)
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(record, enumerate(tests)))
    after = file_digests(repo)
    moved = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if moved:  # recorded against the tree as it was at the start: what moved since counts as changed
        print(f"test-map: {len(moved)} file(s) changed while the tests ran ({', '.join(moved[:3])}): "
              "they count as changed until the next make test-map", file=sys.stderr)
    test_map = TestMap(before, shapes, recorded, time.time())
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".tmp")
    partial.write_text(test_map.to_json())
    partial.replace(out)
    opaque = sum(1 for r in recorded.values() if r.opaque)
    children = sum(1 for r in recorded.values() if r.children)
    print(f"test-map: {len(recorded)} of {len(tests)} test files recorded ({children} with what their Python "
          f"subprocesses ran; {opaque} selected by imports only: a subprocess that could not record, code from "
          f"outside the repository) in {time.monotonic() - start:.0f} s; "
          f"written to {out.relative_to(repo) if out.is_relative_to(repo) else out}", file=sys.stderr)
    return 0


def _git(*args: str) -> list[str]:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"git {' '.join(args)} failed")
    return [line for line in proc.stdout.splitlines() if line]


def _texts(base: str, path: str) -> tuple[str | None, str | None]:
    """`path` at `base` and in the working tree (None where it does not exist or is not text)."""
    proc = subprocess.run(["git", "show", f"{base}:{path}"], cwd=REPO, capture_output=True, timeout=60)
    try:
        old = proc.stdout.decode() if proc.returncode == 0 else None
    except UnicodeDecodeError:
        old = None
    try:
        new: str | None = (REPO / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        new = None
    return old, new


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
    parser.add_argument("--no-map", action="store_true",
                        help="the static rule only, without the test map's per-function selection")
    parser.add_argument("--build-map", action="store_true",
                        help=f"record the test map ({MAP_PATH}): every quick-tier test file under the recorder")
    args = parser.parse_args(argv)
    if args.build_map:
        jobs = 0 if args.jobs == "auto" else max(1, int(args.jobs))
        return build_map(REPO, jobs=jobs)
    if args.all:
        selection = Selection(True, "--all", {})
    else:
        try:
            changed, base = (args.changed, "--changed") if args.changed is not None else changed_files(args.base)
        except (RuntimeError, OSError) as exc:
            print(f"affected_tests: cannot list changes ({exc}): every test selected", file=sys.stderr)
            changed, base = [], "?"
        test_map, why_not = (None, "--no-map") if args.no_map else \
            (None, "--changed names files, not lines: the static rule") if base == "--changed" else \
            TestMap.load(REPO / MAP_PATH)
        selection = select(changed, test_map=test_map, texts=lambda path: _texts(base, path))
        shown = "--changed" if base == "--changed" else base[:12]
        print(f"affected_tests: {selection.reason} against {shown}", file=sys.stderr)
        if not selection.everything:
            for note in selection.notes or [f"test map not used: {why_not}"]:
                print(f"affected_tests: {note}", file=sys.stderr)
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
