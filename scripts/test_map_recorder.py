"""The test map's recorder: a pytest plugin that records what one pytest process runs.

`scripts/affected_tests.py --build-map` (`make test-map`) runs each quick-tier test file in its own
process with `-p test_map_recorder` and TEST_MAP_OUT set; everything the process runs (collection,
conftests, fixtures, the tests) belongs to that file. It writes TEST_MAP_OUT as JSON:

- "ran": every function of the repository that was called, as "path::qualname" (`f.<locals>.g`;
  a lambda's or a comprehension's code counts as its function's, module-level code not at all:
  a module-level change is selected by imports);
- "read": the repository's Python files opened as data (a test that scans the sources), not by import;
- "opaque": why the record is not the whole story, or "": the process started a subprocess (its code
  is not traced), ran Python code from outside the repository and the environment (a copy of a
  module, e.g. an unzipped function), or someone replaced the trace function. Such a file is
  selected by the static rule.

sys.settrace's global hook is called once per new Python frame; returning None leaves the frame
untraced (no line events), so the cost is one call per Python call (Python 3.11 has no
sys.monitoring). Threads started after the plugin loads are traced too (threading.settrace).
"""

from __future__ import annotations

import inspect
import json
import os
import site
import sys
import sysconfig
import threading
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

PACKAGES = ("orchestrator", "programs", "tests", "bench", "scripts")  # as scripts/affected_tests.py
# Programs that cannot run this repository's Python code: starting one leaves the record whole.
RUNS_NO_PYTHON = frozenset({"git"})
# Audit events that start another process: its Python code would not be traced here.
SPAWNS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn",
                    "os.system", "os.startfile", "pty.spawn"})


def _function_name(qualname: str) -> str:
    parts = qualname.split(".")
    while parts and parts[-1].startswith("<"):
        parts.pop()
    return ".".join(parts)


class Recorder:
    def __init__(self, repo: Path, out: Path) -> None:
        self.repo = str(repo.resolve()) + os.sep
        self.roots = tuple(f"{self.repo}{package}{os.sep}" for package in PACKAGES)
        self.out = out
        self.ids: set[int] = set()
        self.codes: list[CodeType] = []  # held, so that no id is reused by a later code object
        self.read: set[str] = set()
        self.opaque: list[str] = []
        environment = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(),
                       site.getusersitepackages(), *sysconfig.get_paths().values()}
        self.environment = tuple(str(Path(p).resolve()) + os.sep for p in environment if p)

    def trace(self, frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if id(code) not in self.ids:
            self.ids.add(id(code))
            self.codes.append(code)
        return None

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event in SPAWNS:
            argv = args[1] if event in ("subprocess.Popen", "os.posix_spawn", "os.exec") else None
            if isinstance(argv, (str, bytes, os.PathLike)):
                argv = [argv]
            program = os.path.basename(os.fsdecode(argv[0])) if argv else ""
            if program not in RUNS_NO_PYTHON and not self.opaque:
                shown = " ".join(os.fsdecode(a) for a in argv)[:80] if argv else event
                self.opaque.append(f"started a subprocess ({shown})")
        elif event == "open" and isinstance(args[0], (str, os.PathLike)):
            path = os.path.abspath(os.fspath(args[0]))
            if path.startswith(self.roots) and path.endswith(".py") and not self._importing():
                self.read.add(path[len(self.repo):].replace(os.sep, "/"))

    @staticmethod
    def _importing() -> bool:
        frame = sys._getframe(2)
        for _ in range(4):
            if frame is None:
                return False
            filename = frame.f_code.co_filename  # the import system, or pytest rewriting a test's asserts
            if "importlib" in filename or filename.endswith(f"assertion{os.sep}rewrite.py"):
                return True
            frame = frame.f_back  # type: ignore[assignment]
        return False

    def start(self) -> None:
        sys.addaudithook(self.audit)
        sys.settrace(self.trace)
        threading.settrace(self.trace)

    def finish(self) -> None:
        if sys.gettrace() != self.trace:
            self.opaque.append("the trace function was replaced")
        sys.settrace(None)
        threading.settrace(None)
        ran: set[str] = set()
        outside: set[str] = set()
        for code in self.codes:
            filename = code.co_filename
            if filename == __file__ or not code.co_flags & inspect.CO_OPTIMIZED:
                continue  # the recorder itself; module and class bodies (module level: selected by imports)
            if filename.startswith(self.roots):
                name = _function_name(getattr(code, "co_qualname", code.co_name))  # 3.11+
                if name:
                    ran.add(f"{filename[len(self.repo):].replace(os.sep, '/')}::{name}")
            elif os.path.isabs(filename) and filename.endswith(".py") and \
                    not os.path.realpath(filename).startswith(self.environment):
                outside.add(filename)
        if outside:
            self.opaque.append(f"ran code from outside the repository ({sorted(outside)[0]})")
        self.out.write_text(json.dumps({"ran": sorted(ran), "read": sorted(self.read),
                                        "opaque": "; ".join(self.opaque)}))


def _start() -> Recorder | None:
    # at import (`-p` loads the plugin before the conftests), so that what conftests run is recorded
    out = os.environ.get("TEST_MAP_OUT")
    if not out:
        return None
    recorder = Recorder(Path(os.environ.get("TEST_MAP_REPO", ".")), Path(out))
    recorder.start()
    return recorder


_recorder = _start()


def pytest_unconfigure(config: Any) -> None:
    if _recorder is not None:
        _recorder.finish()
