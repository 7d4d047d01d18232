"""scripts/affected_tests.py: which test files a change reaches (what `make test-fast` runs)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
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


# --- Per-function selection with a test map --------------------------------------------------------

HUB = '''import os

LIMIT = 3


def used_by_a():
    return 1


def used_by_b():
    return os.sep and 2


class Box:
    size = 1

    def open(self):
        return self.size
'''

MAPPED = {
    "orchestrator/__init__.py": "",
    "orchestrator/hub.py": HUB,
    "orchestrator/other.py": "def helper():\n    return 5\n",
    "tests/__init__.py": "",
    "tests/orchestrator/__init__.py": "",
    "tests/orchestrator/test_a.py": "from orchestrator.hub import used_by_a\n\n"
                                    "def test_a():\n    assert used_by_a() == 1\n",
    "tests/orchestrator/test_b.py": "from orchestrator.hub import used_by_b\nfrom orchestrator.other import helper\n\n"
                                    "def test_b():\n    assert used_by_b() + helper() == 7\n",
    "tests/orchestrator/test_box.py": "from orchestrator.hub import Box\n\n"
                                      "def test_box():\n    assert Box().open() == 1\n",
    "tests/orchestrator/test_scan.py": "import orchestrator.hub\nfrom pathlib import Path\n\n"
                                       "def test_scan():\n"
                                       "    assert 'print(' not in Path('orchestrator/hub.py').read_text()\n",
    "tests/orchestrator/test_spawns.py": "import subprocess, sys\nimport orchestrator.hub\n\n"
                                         "def test_spawns():\n"
                                         "    subprocess.run([sys.executable, '-c', 'import orchestrator.hub'])\n",
    "tests/orchestrator/test_unrecorded.py": "import orchestrator.hub\n",
}
EVERY_MAPPED = {"test_a", "test_b", "test_box", "test_scan", "test_spawns", "test_unrecorded"}


def _recorded(ran: list[str], read: list[str] = (), opaque: str = "") -> at.Recorded:  # type: ignore[assignment]
    return at.Recorded(frozenset(ran), frozenset(read), opaque)


def mapped_tree(tmp_path: Path) -> tuple[at.Graph, at.TestMap]:
    """The made-up tree and a map as the recorder writes it (test_unrecorded left no record)."""
    for rel, text in MAPPED.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    test_map = at.TestMap(
        files=at.file_digests(tmp_path),
        shapes={rel: s for rel, text in MAPPED.items() if (s := at.shape(text))},
        tests={"tests/orchestrator/test_a.py": _recorded(["orchestrator/hub.py::used_by_a",
                                                          "tests/orchestrator/test_a.py::test_a"]),
               "tests/orchestrator/test_b.py": _recorded(["orchestrator/hub.py::used_by_b",
                                                          "orchestrator/other.py::helper",
                                                          "tests/orchestrator/test_b.py::test_b"]),
               "tests/orchestrator/test_box.py": _recorded(["orchestrator/hub.py::Box.open",
                                                            "tests/orchestrator/test_box.py::test_box"]),
               "tests/orchestrator/test_scan.py": _recorded(["tests/orchestrator/test_scan.py::test_scan"],
                                                            read=["orchestrator/hub.py"]),
               "tests/orchestrator/test_spawns.py": _recorded(["tests/orchestrator/test_spawns.py::test_spawns"],
                                                              opaque="started a subprocess (python)")},
        created=0.0)
    return at.Graph(tmp_path), test_map


def edit(graph: at.Graph, rel: str, old: str, new: str, *, base: str | None = None) -> Callable[..., object]:
    """Change `old` to `new` in the working tree's `rel`; the base holds `base` (default: the text before)."""
    before = (graph.repo / rel).read_text()
    assert old in before
    (graph.repo / rel).write_text(before.replace(old, new))
    texts = {rel: (before if base is None else base, before.replace(old, new))}
    return lambda path: texts[path]


def selected_with_map(graph: at.Graph, test_map: at.TestMap, texts: Callable[..., object], *changed: str) -> set[str]:
    selection = at.select(changed, graph, test_map, texts)  # type: ignore[arg-type]
    assert not selection.everything
    return {Path(f).stem for f in selection.files}


def test_a_change_in_a_function_body_selects_the_test_files_that_ran_it(tmp_path: Path) -> None:
    graph, test_map = mapped_tree(tmp_path)
    # without the map: every test file importing the hub
    assert selected(graph, "orchestrator/hub.py") == EVERY_MAPPED
    texts = edit(graph, "orchestrator/hub.py", "return 1", "return 1 + 0")
    # test_scan reads the file as data; test_spawns ran a subprocess, test_unrecorded has no record:
    # those two by imports
    assert selected_with_map(graph, test_map, texts, "orchestrator/hub.py") == \
        {"test_a", "test_scan", "test_spawns", "test_unrecorded"}
    why = at.select(["orchestrator/hub.py"], graph, test_map, texts).files  # type: ignore[arg-type]
    assert why["tests/orchestrator/test_a.py"] == ["orchestrator/hub.py::used_by_a"]


def test_a_method_body_selects_who_called_the_method(tmp_path: Path) -> None:
    graph, test_map = mapped_tree(tmp_path)
    texts = edit(graph, "orchestrator/hub.py", "return self.size", "return self.size * 1")
    assert selected_with_map(graph, test_map, texts, "orchestrator/hub.py") == \
        {"test_box", "test_scan", "test_spawns", "test_unrecorded"}


@pytest.mark.parametrize(("old", "new"), [
    ("LIMIT = 3", "LIMIT = 4"),  # a constant
    ("import os\n", "import os\nimport sys\n"),  # an import
    ("    size = 1", "    size = 2"),  # a class body outside its methods
    ("def used_by_a():", "@staticmethod\ndef used_by_a():"),  # a decorator
    ("class Box:", "def added():\n    return 0\n\n\nclass Box:"),  # a new function
    ("def used_by_b():\n    return os.sep and 2\n", ""),  # a deleted function
    ("def used_by_a():", "def used_by_a(x=1):"),  # a signature
])
def test_a_module_level_change_falls_back_to_the_imports(tmp_path: Path, old: str, new: str) -> None:
    graph, test_map = mapped_tree(tmp_path)
    texts = edit(graph, "orchestrator/hub.py", old, new)
    assert selected_with_map(graph, test_map, texts, "orchestrator/hub.py") == EVERY_MAPPED


def test_a_map_recorded_on_another_tree_falls_back_where_it_differs(tmp_path: Path) -> None:
    graph, test_map = mapped_tree(tmp_path)
    # the base's hub differs from the recorded one at module level (the map is older than the base):
    # what the tests ran then is no guide to the base, so the hub's change is selected by imports
    base = HUB.replace("LIMIT = 3", "LIMIT = 3\nMORE = 1")
    (graph.repo / "orchestrator/hub.py").write_text(base)
    texts = edit(graph, "orchestrator/hub.py", "return 1", "return 1 + 0", base=base)
    assert selected_with_map(graph, test_map, texts, "orchestrator/hub.py") == EVERY_MAPPED


def test_a_file_that_differs_from_the_map_counts_as_changed(tmp_path: Path) -> None:
    graph, test_map = mapped_tree(tmp_path)
    # other.py was edited since the map was recorded (in a body), the diff against the base is the
    # hub's used_by_a: test_b ran other.helper, so it runs too
    (graph.repo / "orchestrator/other.py").write_text("def helper():\n    return 2 + 3\n")
    texts = edit(graph, "orchestrator/hub.py", "return 1", "return 1 + 0")
    selection = at.select(["orchestrator/hub.py"], graph, test_map, texts)  # type: ignore[arg-type]
    assert {Path(f).stem for f in selection.files} == {"test_a", "test_b", "test_scan", "test_spawns",
                                                       "test_unrecorded"}
    assert any("1 file(s) differ from when it was recorded" in note for note in selection.notes)


def test_a_map_of_another_format_or_python_is_not_used(tmp_path: Path) -> None:
    graph, test_map = mapped_tree(tmp_path)
    path = tmp_path / "map.json"
    assert at.TestMap.load(path)[0] is None  # missing
    path.write_text(test_map.to_json())
    loaded, _ = at.TestMap.load(path)
    assert loaded is not None and loaded.tests == test_map.tests and loaded.shapes == test_map.shapes
    path.write_text(test_map.to_json().replace(f'"version":{at.MAP_VERSION}', '"version":0'))
    assert at.TestMap.load(path)[0] is None


def test_qualified_names_are_the_ones_code_objects_carry() -> None:
    text = ("def f():\n    class C:\n        def m(self):\n            return [x for x in ()]\n"
            "    return C\n\nclass K:\n    @property\n    def p(self):\n        return 1\n"
            "    @p.setter\n    def p(self, v):\n        pass\n")
    assert set(at.shape(text).functions) == {"f", "f.<locals>.C.m", "K.p"}  # type: ignore[union-attr]
    namespace: dict[str, object] = {}
    exec(compile(text, "made_up.py", "exec"), namespace)
    method = namespace["f"]().m  # type: ignore[operator]
    assert at.function_name(method.__code__.co_qualname) == "f.<locals>.C.m"
    assert at.function_name("f.<locals>.<lambda>") == "f" and at.function_name("<module>") == ""
    # a nested function's body is its own: changing it leaves f's hash alone
    changed = at.shape(text.replace("return [x for x in ()]", "return []"))
    assert changed.functions["f"] == at.shape(text).functions["f"]  # type: ignore[union-attr]
    assert changed.functions["f.<locals>.C.m"] != at.shape(text).functions["f.<locals>.C.m"]  # type: ignore[union-attr]


# Test files whose tests start processes: what a Python subprocess runs belongs to its test file.
SPAWNING = {
    # its own environment (a dict without the recorder's variables): recorded all the same
    "tests/orchestrator/test_child.py": "import os, subprocess, sys\n\n"
                                        "def test_child():\n"
                                        "    subprocess.run([sys.executable, '-c', 'from orchestrator.hub import "
                                        "used_by_b; assert used_by_b() == 2'], check=True, timeout=120, "
                                        "env={'PATH': os.environ['PATH']})\n",
    # a shell that starts a Python that starts a Python (as a bash script running a console script would)
    "tests/orchestrator/test_grandchild.py": "import subprocess, sys\n\n"
                                             "CHILD = (\"import subprocess, sys; subprocess.run([sys.executable, '-c', "
                                             "'from orchestrator.hub import Box; Box().open()'], check=True, "
                                             "timeout=120)\")\n\n"
                                             "def test_grandchild():\n"
                                             "    subprocess.run(['bash', '-c', f'{sys.executable} -c \"{CHILD}\"'], "
                                             "check=True, timeout=120)\n",
    # -I: no PYTHONPATH, no record
    "tests/orchestrator/test_isolated.py": "import subprocess, sys\nimport orchestrator.hub\n\n"
                                           "def test_isolated():\n"
                                           "    subprocess.run([sys.executable, '-I', '-c', 'pass'], check=True)\n",
    # killed by the test: its record never written
    "tests/orchestrator/test_killed.py": "import subprocess, sys, time\nimport orchestrator.hub\n\n"
                                         "def test_killed(tmp_path):\n"
                                         "    ready = tmp_path / 'ready'\n"
                                         "    p = subprocess.Popen([sys.executable, '-c', 'import pathlib, sys, time; "
                                         "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)', str(ready)])\n"
                                         "    for _ in range(600):\n"
                                         "        if ready.exists():\n"
                                         "            break\n"
                                         "        time.sleep(0.05)\n"
                                         "    p.kill()\n    p.wait()\n",
    # a file of the repository run as a script (the interpreter opens it before any Python frame exists)
    "orchestrator/tool.py": "from orchestrator.other import helper\n\nif __name__ == '__main__':\n    helper()\n",
    "tests/orchestrator/test_script.py": "import subprocess, sys\n\n"
                                         "def test_script():\n"
                                         "    subprocess.run([sys.executable, 'orchestrator/tool.py'], check=True, "
                                         "timeout=120)\n",
    # a failing test: what its file ran is not what it runs when it passes
    "tests/orchestrator/test_fails.py": "from orchestrator.other import helper\n\n"
                                        "def test_fails():\n    assert helper() == 6\n",
    # a test marked slow is recorded like any other
    "tests/orchestrator/test_slow.py": "import pytest\nfrom orchestrator.other import helper\n\n"
                                       "@pytest.mark.slow\ndef test_slow():\n    assert helper() == 5\n",
}


@pytest.mark.slow
def test_the_recorder_records_what_each_test_file_ran(tmp_path: Path) -> None:
    for rel, text in {**MAPPED, **SPAWNING}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert at.build_map(tmp_path, jobs=2, tiers=("orchestrator",)) == 0
    test_map, why_not = at.TestMap.load(tmp_path / at.MAP_PATH)
    assert test_map is not None, why_not
    tests = {Path(t).stem: r for t, r in test_map.tests.items()}
    assert tests["test_a"].ran == {"orchestrator/hub.py::used_by_a", "tests/orchestrator/test_a.py::test_a"}
    assert not tests["test_a"].opaque and tests["test_a"].children == 0
    assert "orchestrator/hub.py::Box.open" in tests["test_box"].ran
    assert tests["test_scan"].read == {"orchestrator/hub.py"}
    assert tests["test_unrecorded"].ran == frozenset()
    # what the subprocesses ran is in their test file's record, which stays trusted
    assert not tests["test_spawns"].opaque and tests["test_spawns"].children == 1
    assert not tests["test_child"].opaque and tests["test_child"].children == 1
    assert "orchestrator/hub.py::used_by_b" in tests["test_child"].ran
    assert not tests["test_grandchild"].opaque and tests["test_grandchild"].children == 2
    assert "orchestrator/hub.py::Box.open" in tests["test_grandchild"].ran
    assert "orchestrator/hub.py::used_by_b" not in tests["test_grandchild"].ran
    assert not tests["test_script"].opaque and tests["test_script"].children == 1
    assert "orchestrator/other.py::helper" in tests["test_script"].ran
    assert "a test failed while recorded (pytest exit 1)" in tests["test_fails"].opaque
    assert "started a Python with -I" in tests["test_isolated"].opaque
    assert "left no record" in tests["test_killed"].opaque
    assert tests["test_slow"].ran == {"orchestrator/other.py::helper", "tests/orchestrator/test_slow.py::test_slow"}

    # a change to a function only a subprocess ran selects that test file and not the others that
    # import the module (test_unrecorded ran none of its functions); the opaque ones by imports
    graph = at.Graph(tmp_path)
    hub = (tmp_path / "orchestrator/hub.py").read_text()
    texts = edit(graph, "orchestrator/hub.py", "return os.sep and 2", "return os.sep and 1 + 1")
    assert selected_with_map(graph, test_map, texts, "orchestrator/hub.py") == \
        {"test_b", "test_child", "test_scan", "test_isolated", "test_killed"}
    (tmp_path / "orchestrator/hub.py").write_text(hub)
    texts = edit(graph, "orchestrator/hub.py", "return self.size", "return self.size * 1")
    assert selected_with_map(graph, test_map, texts, "orchestrator/hub.py") == \
        {"test_box", "test_grandchild", "test_scan", "test_isolated", "test_killed"}


def test_a_python_started_with_flags_that_hide_the_recorder_is_told_apart() -> None:
    import test_map_recorder as recorder

    hides = recorder._python_flags_hide_us
    assert hides(["/venv/bin/python", "-I", "-c", "pass"]) == "-I"
    assert hides(["python3", "-u", "-S", "x.py"]) == "-S"
    assert hides(["python3.11", "-Wignore", "-E", "x.py"]) == "-E"
    assert hides(["python", "-W", "ignore", "-IS", "x.py"]) == "-I"
    assert hides(["python", "-c", "import sys; sys.argv[1] == '-I'", "-I"]) == ""
    assert hides(["python", "-m", "pytest", "-I"]) == ""
    assert hides(["python", "x.py", "-E"]) == ""
    assert hides(["bash", "-I"]) == ""


def test_a_map_recorded_under_another_pytest_configuration_is_not_used(tmp_path: Path) -> None:
    graph, test_map = mapped_tree(tmp_path)
    (graph.repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-p no:randomly'\n")
    texts = edit(graph, "orchestrator/hub.py", "return 1", "return 1 + 0")
    selection = at.select(["orchestrator/hub.py"], graph, test_map, texts)  # type: ignore[arg-type]
    assert {Path(f).stem for f in selection.files} == EVERY_MAPPED
    assert selection.notes == ["test map not used: pyproject.toml changed since it was recorded "
                               "(make test-map records it again)"]
