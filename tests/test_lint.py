"""House style is checked with the tests: ruff over every Python file of the project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extra: pip install -e '.[test]'"
    proc = subprocess.run([ruff, "check", "--no-cache", "orchestrator", "programs", "tests", "bench"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_finds_nothing() -> None:
    """Types are checked with the tests (settings in pyproject.toml, [tool.mypy])."""
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "orchestrator", "programs"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


# Who may import what (DESIGN.md, layout): (importing package prefix allowed, imported module prefix).
_RULES = [
    ("orchestrator.cli", "only orchestrator/cli/ imports the CLI", ("orchestrator.cli", "orchestrator.__main__")),
    ("pulumi.automation", "only orchestrator/engine/ imports the Automation API", ("orchestrator.engine",)),
    ("pulumi_aws", "only programs/ imports pulumi_aws", ("programs",)),
    ("click", "only orchestrator/cli/ imports click", ("orchestrator.cli",)),
    # the local AWS world (orchestrator/drill/world/__init__.py) stands in for AWS for the drill and
    # the tests; the product never depends on it (it is not AWS, and it does not ship to Lambda)
    ("orchestrator.drill.world", "only the drill (orchestrator/drill/), tests/ and bench/ import the local AWS world",
     ("orchestrator.drill", "tests", "bench")),
]
# importers inside a rule's allowed packages that still must not import its target: the canary the
# platform deploys to Lambda lives in orchestrator/drill/ but is product code
_DENIED = {"orchestrator.drill.world": ("orchestrator.drill.canary", "orchestrator.drill.canary_handler")}


def _imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    import ast

    found: list[tuple[int, str]] = []
    source = path.read_text(encoding="utf-8") if text is None else text
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def import_violations(files: list[Path], text: str | None = None) -> list[str]:
    """Each import that breaks a rule; `text` checks it in place of each file's contents."""
    out = []
    for path in files:
        importer = _module_name(path)
        for lineno, imported in _imports(path, text):
            for target, rule, allowed in _RULES:
                hit = imported == target or imported.startswith(target + ".")
                denied = importer in _DENIED.get(target, ())
                if hit and (denied or not any(importer == a or importer.startswith(a + ".") for a in allowed)):
                    out.append(f"{path.relative_to(REPO)}:{lineno}: imports {imported} ({rule})")
    return sorted(set(out))


def _project_files() -> list[Path]:
    return sorted(p for top in ("orchestrator", "programs") for p in (REPO / top).rglob("*.py"))


def test_import_rules_hold() -> None:
    assert import_violations(_project_files()) == []


def test_import_rules_catch_a_violation(tmp_path: Path) -> None:
    """The rule check itself works: a domain module importing click or the CLI is reported."""
    bad = REPO / "orchestrator" / "operations" / "_lint_probe_tmp.py"
    bad.write_text("import click\nfrom orchestrator.cli.app import command\nfrom pulumi import automation\n")
    try:
        found = import_violations([bad])
    finally:
        bad.unlink()
    assert any("imports click" in v for v in found)
    assert any("imports orchestrator.cli" in v for v in found)
    assert any("imports pulumi.automation" in v for v in found)


_CLOCKS = {"monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "time", "time_ns"}
_DURATION_NAMES = ("elapsed", "took", "duration", "wall")


def timed_assertions(files: list[Path]) -> list[str]:
    """`assert`s on how long something took (a clock read, or a variable named like a duration, in a
    comparison): performance targets live in bench/, and a timed assertion fails on a loaded machine."""
    import ast

    out = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assert):
                continue
            for sub in ast.walk(node.test):
                if not isinstance(sub, ast.Compare):
                    continue
                parts = list(ast.walk(sub))
                clock = any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr in _CLOCKS
                            and isinstance(c.func.value, ast.Name) and c.func.value.id == "time" for c in parts)
                named = any(isinstance(n, ast.Name) and any(w in n.id.lower() for w in _DURATION_NAMES)
                            for n in parts)
                if clock or named:
                    out.append(f"{path.relative_to(REPO)}:{node.lineno}: asserts on a duration")
                    break
    return out


def test_no_test_asserts_on_wall_time() -> None:
    assert timed_assertions(sorted((REPO / "tests").rglob("*.py"))) == []


def test_a_timed_assertion_is_reported(tmp_path: Path) -> None:
    probe = REPO / "tests" / "_lint_probe_timed_tmp.py"
    probe.write_text("import time\nstarted = time.monotonic()\nassert time.monotonic() - started < 5\n"
                     "elapsed = 1.0\nassert elapsed <= 2\nassert started\n")
    try:
        found = timed_assertions([probe])
    finally:
        probe.unlink()
    assert [v.rsplit(":", 2)[1] for v in found] == ["3", "5"]


def test_only_the_drill_the_tests_and_bench_import_the_local_world() -> None:
    """The product (here operations/ and programs/) and the deployed canary importing the world, in
    any of the three forms, are reported; the drill's game day, the tests and bench/ are not."""
    probe = ("from orchestrator.drill.world.mirror import Mirror\nfrom orchestrator.drill import world\n"
             "import orchestrator.drill.world.pki\n")
    product = [REPO / "orchestrator" / "operations" / "lifecycle.py", REPO / "programs" / "dns.py",
               REPO / "orchestrator" / "drill" / "canary_handler.py", REPO / "orchestrator" / "drill" / "canary.py"]
    found = import_violations(product, probe)
    assert {tuple(v.split(":")[:2]) for v in found} == {
        (str(p.relative_to(REPO)), str(n)) for p in product for n in (1, 2, 3)}, found
    assert all("local AWS world" in v for v in found)
    allowed = [REPO / "orchestrator" / "drill" / "local.py", REPO / "tests" / "drill" / "test_mirror.py",
               REPO / "bench" / "drill.py"]
    assert import_violations(allowed, probe) == []
