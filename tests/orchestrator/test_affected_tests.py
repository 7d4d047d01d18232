"""scripts/affected_tests.py: which test files a change reaches (what `make test-fast` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import affected_tests as at  # noqa: E402

FILES = {
    "orchestrator/__init__.py": "",
    "orchestrator/a.py": "def f():\n    from orchestrator.b import g\n    return g()\n",
    "orchestrator/b.py": "def g():\n    return 1\n",
    "orchestrator/c.py": "C = 1\n",
    "orchestrator/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import orchestrator.c\n",
    "orchestrator/cli/__init__.py": "",
    "orchestrator/cli/main.py": 'COMMANDS = {"xx": "orchestrator.cli.xx:xx", "yy": "orchestrator.cli.yy:yy"}\n',
    "orchestrator/cli/xx.py": "from orchestrator import c\n",
    "orchestrator/cli/yy.py": "",
    "orchestrator/reads_docs.py": 'from pathlib import Path\nDOCS = Path("docs")\n',
    "tests/__init__.py": "",
    "tests/conftest.py": "",
    "tests/orchestrator/__init__.py": "",
    "tests/orchestrator/conftest.py": "from orchestrator.cli.main import COMMANDS\n",
    "tests/orchestrator/test_runs_xx.py": 'def test_it(): run(["xx", "--help"])\n',
    "tests/orchestrator/test_a.py": "from orchestrator.a import f\n",
    "tests/orchestrator/test_patch.py": 'def test_it(mocker): mocker.patch("orchestrator.b.g")\n',
    "tests/orchestrator/test_docs.py": "import orchestrator.reads_docs\n",
    "tests/orchestrator/test_typed.py": "import orchestrator.typed\n",
    "tests/orchestrator/test_every_command.py": "from orchestrator.cli import main\nfor n in main.COMMANDS: pass\n",
    "tests/orchestrator/test_gone.py": "from orchestrator.gone import x\n",
    "tests/orchestrator/test_lists.py": "from orchestrator.cli.main import cli\nnames = cli.list_commands(None)\n",
    "tests/orchestrator/test_by_path.py": 'LOCATION = "orchestrator/b.py:g"\n',
    "tests/ops/__init__.py": "",
    "tests/ops/test_console.py": 'import subprocess\nsubprocess.run(["orchestrate", "yy"])\n',
    "tests/ops/test_leaf.py": "from orchestrator.c import C\n",
}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> at.Graph:
    repo = tmp_path_factory.mktemp("repo")
    for rel, text in FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    return at.Graph(repo)


def selected(graph: at.Graph, *changed: str) -> set[str]:
    selection = at.select(changed, graph)
    assert not selection.everything
    return {Path(f).stem for f in selection.files}


def test_imports_inside_functions_patched_names_and_paths_count(graph: at.Graph) -> None:
    assert selected(graph, "orchestrator/b.py") == {"test_a", "test_patch", "test_by_path"}


def test_a_lazy_command_is_reached_by_the_tests_that_say_its_name(graph: at.Graph) -> None:
    # test_runs_xx says "xx"; test_every_command iterates COMMANDS; test_leaf imports c itself;
    # test_typed imports c only under TYPE_CHECKING, which never runs.
    assert selected(graph, "orchestrator/c.py") == {"test_runs_xx", "test_every_command", "test_lists", "test_leaf"}
    assert selected(graph, "orchestrator/cli/yy.py") == {"test_every_command", "test_lists", "test_console"}


def test_a_conftest_reaches_every_test_below_it(graph: at.Graph) -> None:
    below = {Path(p).stem for p in FILES if p.startswith("tests/orchestrator/test_")}
    assert selected(graph, "tests/orchestrator/conftest.py") == below


def test_a_file_that_is_not_python_is_reached_through_whoever_names_it(graph: at.Graph) -> None:
    assert selected(graph, "docs/runbook.md") == {"test_docs"}
    assert selected(graph, "elsewhere/notes.txt") == set()


def test_a_deleted_module_reaches_who_still_imports_it(graph: at.Graph) -> None:
    assert selected(graph, "orchestrator/gone.py") == {"test_gone"}


def test_a_test_file_reaches_itself(graph: at.Graph) -> None:
    assert selected(graph, "tests/ops/test_leaf.py") == {"test_leaf"}


def test_configuration_or_no_change_selects_everything(graph: at.Graph) -> None:
    for changed in (["pyproject.toml"], ["Makefile", "orchestrator/b.py"], ["constraints.txt"], []):
        assert at.select(changed, graph).everything, changed


def test_in_this_repository_a_module_selects_its_own_tests_and_not_every_test() -> None:
    graph = at.Graph()
    selection = at.select(["orchestrator/registry/outbox.py"], graph)
    assert not selection.everything
    assert "tests/ops/test_ops_command_outbox.py" in selection.files
    assert len(selection.files) < len(graph.test_files())


def test_the_command_line_prints_one_tiers_files() -> None:
    proc = subprocess.run([sys.executable, "scripts/affected_tests.py", "--changed", "orchestrator/registry/outbox.py",
                           "--tier", "ops"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tests/ops/test_ops_command_outbox.py" in proc.stdout.split()
    assert all(line.startswith("tests/ops/") for line in proc.stdout.split())
