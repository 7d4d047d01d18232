"""The replication function's deployment package, built reproducibly from the project's own code.

The function runs `orchestrator.registry.replicate.handler`. What goes into the zip is the handler's
**import closure**, computed from the source (never a hand-kept list, which once left out
`orchestrator/scrub.py`, imported inside `OpError`, and the first refused operation in Lambda raised
ModuleNotFoundError): every `orchestrator` module the handler's module imports, at module level or
inside a function (an import inside a function runs only on the path that needs it, which is exactly
the path a list forgets), with the package `__init__`s above each, followed transitively.
Imports under `if TYPE_CHECKING:` never run and are not followed.

Nothing else goes in: no click, no pulumi, no third-party package. Lambda's Python runtime provides
the standard library and boto3/botocore (RUNTIME_PROVIDED); any other package imported **at module
level** on the handler's import path fails the build (the function could not even start). One that is
imported only inside a function, or by a module reached only through such an import, is recorded in
`Package.lazy_unavailable` (`<package> <- <file>`): tests/ops/test_ops_replication_package.py runs
every handler path from the built zip in a fresh interpreter with only the zip and boto3 on the path,
proving none of them needs it.

Reproducible: the same source files give the same bytes on any machine and at any time, so an
unchanged function is never re-deployed. Entries are sorted by path, every entry has the same
timestamp (1980-01-01, the zip epoch), mode 0644, the same compression, no directory entries and
no extra fields; bytecode and caches are never included.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDLER = "orchestrator.registry.replicate.handler"
RUNTIME = "python3.12"
PROJECT = "orchestrator"  # the only top-level package whose modules go into the replicator's zip
# The scheduled readiness check (`orchestrator.readiness.scheduled.handler`): its rules read names from
# `programs.contract`, which imports nothing from Pulumi, so `programs` modules go into its zip too (one
# that imported Pulumi at module level on the handler's path would fail the build, as any package the
# runtime lacks does).
READINESS_HANDLER = "orchestrator.readiness.scheduled.handler"
READINESS_PROJECTS = ("orchestrator", "programs")
RUNTIME_PROVIDED = frozenset({"boto3", "botocore"})  # besides the standard library (Lambda Python runtime)
_EPOCH = (1980, 1, 1, 0, 0, 0)


class PackageError(Exception):
    """The handler's import closure cannot run in Lambda (a module-level import the runtime lacks)."""


@dataclass(frozen=True)
class Package:
    path: Path
    sha256_b64: str  # Lambda's CodeSha256 form (base64 of the SHA-256 of the zip)
    files: tuple[str, ...]
    lazy_unavailable: tuple[str, ...] = field(default=())  # "<package> <- <file>", see the module docstring


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, package: str) -> list[tuple[str, tuple[str, ...], bool]]:
    """(module, imported names, at module level) for every import that can run."""
    found: list[tuple[str, tuple[str, ...], bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for branch in node.orelse:
                visit(branch, top)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, (), top) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((module, tuple(alias.name for alias in node.names), top))
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    for statement in tree.body:
        visit(statement, True)
    return found


_PARSED: dict[Path, tuple[tuple[int, int], ast.Module]] = {}  # path -> ((mtime_ns, size), tree)
_IMPORTS: dict[Path, tuple[ast.Module, list[tuple[str, tuple[str, ...], bool]]]] = {}  # path -> (tree, imports)


def _parsed(path: Path) -> ast.Module:
    """`path` parsed, once per process while the file is unchanged (the replicator's and the readiness
    function's closures share most modules; a program evaluation builds both)."""
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    found = _PARSED.get(path)
    if found is None or found[0] != stamp:
        found = (stamp, ast.parse(path.read_text(), str(path)))
        _PARSED[path] = found
    return found[1]


class _Sources:
    """Each source file read and parsed once per closure (a module is asked about many names)."""

    def __init__(self) -> None:
        self._trees: dict[Path, ast.Module] = {}
        self._bound: dict[Path, frozenset[str] | None] = {}
        self._imports: dict[Path, list[tuple[str, tuple[str, ...], bool]]] = {}

    def tree(self, path: Path) -> ast.Module:
        if path not in self._trees:
            self._trees[path] = _parsed(path)
        return self._trees[path]

    def imports(self, path: Path, package: str) -> list[tuple[str, tuple[str, ...], bool]]:
        if path not in self._imports:  # a file belongs to one package: the key is the path alone
            tree = self.tree(path)
            known = _IMPORTS.get(path)
            if known is None or known[0] is not tree:  # walked once per parse of the file
                known = (tree, _imports(tree, package))
                _IMPORTS[path] = known
            self._imports[path] = known[1]
        return self._imports[path]

    def bound(self, path: Path) -> frozenset[str] | None:
        """The names `path` binds at its top level; None when a conditional definition may bind any."""
        if path not in self._bound:
            self._bound[path] = _bound_names(self.tree(path))
        return self._bound[path]


def _bound_names(tree: ast.Module) -> frozenset[str] | None:
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try)):
            return None  # conditional definitions: not followed, any name assumed bound
    return frozenset(bound)


def _defines(root: Path, module: str, name: str, sources: _Sources | None = None) -> bool:
    """Whether `module` binds `name` at its top level (or may, through `*` or `__getattr__`)."""
    path = _module_file(root, module)
    if path is None:
        return False
    bound = (sources or _Sources()).bound(path)
    return bound is None or name in bound or "*" in bound or "__getattr__" in bound


def closure(root: Path = ROOT, handler: str = HANDLER,
            projects: tuple[str, ...] = (PROJECT,)) -> tuple[list[str], list[str]]:
    """(the files of the handler's import closure, the lazily imported packages the runtime lacks).
    Modules of the top-level packages `projects` go into the zip; any other import must be the
    standard library's or the runtime's."""
    eager: dict[str, Path] = {}
    lazy: dict[str, Path] = {}
    external: dict[str, set[str]] = {}  # package -> files importing it lazily
    sources = _Sources()
    todo: list[tuple[str, bool]] = [(handler.rsplit(".", 1)[0], True)]
    while todo:
        name, now = todo.pop()
        if name in eager or (name in lazy and not now):
            continue
        path = _module_file(root, name)
        if path is None and root.joinpath(*name.split(".")).is_dir():
            continue  # a namespace package (no __init__.py): nothing to pack, Python finds its modules
        if path is None:
            raise PackageError(f"{name} is imported on the handler's path but is not in "
                               f"{' or '.join(str(root / p) for p in projects)}")
        if now:
            lazy.pop(name, None)
        (eager if now else lazy)[name] = path
        parts = name.split(".")
        todo.extend((".".join(parts[:i]), now) for i in range(1, len(parts)))
        package = name if path.name == "__init__.py" else ".".join(parts[:-1])
        rel = path.relative_to(root).as_posix()
        for module, names, top in sources.imports(path, package):
            runs_now = now and top
            head = module.split(".")[0]
            if head in projects:
                todo.append((module, runs_now))
                for n in names:
                    if _module_file(root, f"{module}.{n}"):
                        todo.append((f"{module}.{n}", runs_now))
                    elif not _defines(root, module, n, sources):
                        raise PackageError(f"{module}.{n} is imported by {rel} but is neither a module in "
                                           f"{root / head} nor a name {module} defines")
            elif head in sys.stdlib_module_names or head in RUNTIME_PROVIDED or not head:
                continue
            elif runs_now:
                raise PackageError(f"{rel} imports {module} at module level: the Lambda runtime has no {head} "
                                   f"(only the standard library and {', '.join(sorted(RUNTIME_PROVIDED))})")
            else:
                external.setdefault(head, set()).add(rel)
    files = sorted({p.relative_to(root).as_posix() for p in [*eager.values(), *lazy.values()]})
    unavailable = sorted(f"{pkg} <- {f}" for pkg, where in external.items() for f in where)
    return files, unavailable


def build_readiness(root: Path = ROOT, out_dir: Path | None = None) -> Package:
    """The scheduled readiness function's package (the same rules `orchestrate readiness` runs)."""
    return build(root, out_dir, handler=READINESS_HANDLER, stem="readiness", projects=READINESS_PROJECTS)


def source_files(root: Path = ROOT) -> list[str]:
    return closure(root)[0]


def package_bytes(root: Path = ROOT, files: list[str] | None = None) -> tuple[bytes, tuple[str, ...]]:
    """The zip archive of the function's code, byte for byte the same for the same sources."""
    import io

    files = source_files(root) if files is None else files
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in files:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode below is what Lambda sees
            info.external_attr = (0o100644 & 0xFFFF) << 16
            archive.writestr(info, (root / name).read_bytes(), compresslevel=9)
    return buffer.getvalue(), tuple(files)


def build(root: Path = ROOT, out_dir: Path | None = None, *, handler: str = HANDLER, stem: str = "replicator",
          projects: tuple[str, ...] = (PROJECT,)) -> Package:
    """Write the package of `handler`'s import closure (named `<stem>-<digest>.zip`, written once,
    atomically) and describe it: the replication function by default; the MQTT canary and the
    readiness check too."""
    closure_files, lazy = closure(root, handler, projects)
    data, files = package_bytes(root, closure_files)
    unavailable = tuple(lazy)
    digest = hashlib.sha256(data).digest()
    out_dir = out_dir or Path(tempfile.gettempdir()) / "orchestrate-packages"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}-{digest.hex()[:16]}.zip"
    if not path.exists() or path.read_bytes() != data:
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".zip.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return Package(path, base64.b64encode(digest).decode(), files, unavailable)
