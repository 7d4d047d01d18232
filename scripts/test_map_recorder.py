"""The test map's recorder: a pytest plugin that records what one pytest process runs, and the
Python processes it starts.

`scripts/affected_tests.py --build-map` (`make test-map`) runs each quick-tier test file in its own
process with `-p test_map_recorder` and TEST_MAP_OUT set; everything the process runs (collection,
conftests, fixtures, the tests) belongs to that file. It writes TEST_MAP_OUT as JSON:

- "ran": every function of the repository that was called, as "path::qualname" (`f.<locals>.g`;
  a lambda's or a comprehension's code counts as its function's, module-level code not at all:
  a module-level change is selected by imports);
- "read": the repository's Python files opened as data (a test that scans the sources), not by import;
- "opaque": why the record is not the whole story, or "" (see below). Such a file is selected by the
  static rule.

Subprocesses (coverage's way): the plugin puts a directory holding a `sitecustomize.py` first on
PYTHONPATH and names a directory for records in TEST_MAP_CHILD_DIR, in its own environment, which
the processes it starts inherit. A Python process that starts with both (a child, a grandchild
through a shell script or a console script, ...) records itself the same way (start_child): a
marker file when it starts, its record when it exits (atexit, SIGTERM while the handler is the
default one, before it SIGKILLs itself or execs another program); the plugin adds every child's
record to its own when pytest ends. Where a test gives a subprocess an environment of its own (a
dict without these variables), the plugin adds them to that dict before the process starts (the
audit event comes before subprocess builds the child's environment). Nothing of this exists unless
TEST_MAP_OUT is set: `make test-fast` and `make test` never load the plugin.

The record is opaque (the file keeps the import rule) when: a child started but left no record
(SIGKILLed by another process, os._exit, still running when pytest ended); a Python was started
with -I, -E or -S (no PYTHONPATH or no sitecustomize: it cannot record); a process forked without
exec (os.fork), or was started through os.posix_spawn/os.exec/os.spawn with an environment that
lacks the variables; more than MAX_CHILDREN processes recorded for one test file (the bound);
a process ran Python code from outside the repository and the environment (a copy of a module,
e.g. an unzipped function); or someone replaced the trace function.

sys.settrace's global hook is called once per new Python frame; returning None leaves the frame
untraced (no line events), so the cost is one call per Python call (Python 3.11 has no
sys.monitoring). Threads started after the recorder starts are traced too (threading.settrace).
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import signal
import site
import sys
import sysconfig
import threading
import uuid
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

PACKAGES = ("orchestrator", "programs", "tests", "bench", "scripts")  # as scripts/affected_tests.py
# Programs that cannot run this repository's Python code: starting one leaves the record whole.
RUNS_NO_PYTHON = frozenset({"git"})
# Audit events that start another process.
SPAWNS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn",
                    "os.system", "os.startfile", "pty.spawn"})
CHILD_DIR = "TEST_MAP_CHILD_DIR"  # where children write their records; set only while recording
REPO_VAR = "TEST_MAP_REPO"
HOOK = "test-map-hook"  # the directory of the sitecustomize.py, in the one for the children's records
MAX_CHILDREN = 400  # recorded processes per test file; past that the record is opaque
SITECUSTOMIZE = '''\
"""Written by scripts/test_map_recorder.py while `make test-map` records: this Python records what it runs."""
import os
if os.environ.get("TEST_MAP_CHILD_DIR"):
    import importlib.util
    _spec = importlib.util.spec_from_file_location("_test_map_child", {recorder!r})
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.start_child()
    del importlib, _spec, _module
{chain}
'''
# the sitecustomize this one hides (a later entry of sys.path, e.g. Debian's), run after it
CHAIN = '''\
def _chain():
    import importlib.machinery, sys
    path = [p for p in sys.path if os.path.basename(os.path.abspath(p or ".")) != {hook!r}]  # ours: once
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
import importlib.util
_chain()
del _chain
'''


_child: Recorder | None = None  # this process's, when it is a child (start_child)


def _function_name(qualname: str) -> str:
    parts = qualname.split(".")
    while parts and parts[-1].startswith("<"):
        parts.pop()
    return ".".join(parts)


def _python_flags_hide_us(argv: list[str]) -> str:
    """'-I' etc. when `argv` starts a Python that ignores PYTHONPATH or sitecustomize, else ""."""
    if not argv or not os.path.basename(argv[0]).startswith("python"):
        return ""
    args = iter(argv[1:])
    for arg in args:
        if not arg.startswith("-") or arg in ("-", "--") or arg.startswith("--"):
            return ""  # the script, stdin, or a long option (--help, --version): no more flags
        for i, flag in enumerate(arg[1:], 1):
            if flag in "IES":
                return f"-{flag}"
            if flag in "cm":  # -c CMD / -m MODULE: what follows is the program's
                return ""
            if flag in "WX":  # -W ARG / -X ARG: the argument is the rest of this word, or the next one
                if i == len(arg) - 1:
                    next(args, None)
                break
    return ""


class Recorder:
    def __init__(self, repo: Path, out: Path, children: Path) -> None:
        self.repo = str(repo.resolve()) + os.sep
        self.roots = tuple(f"{self.repo}{package}{os.sep}" for package in PACKAGES)
        self.out = out
        self.children = children  # the records of the processes this one starts (and theirs)
        # the sitecustomize.py: the one already on PYTHONPATH (a child's children use its parent's), or ours
        inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if os.path.basename(p) == HOOK]
        self.hook = inherited[0] if inherited else str(children / HOOK)
        self.ids: set[int] = set()
        self.codes: list[CodeType] = []  # held, so that no id is reused by a later code object
        self.read: set[str] = set()
        self.opaque: list[str] = []
        environment = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(),
                       site.getusersitepackages(), *sysconfig.get_paths().values()}
        self.environment = tuple(str(Path(p).resolve()) + os.sep for p in environment if p)
        self.finished = False

    def trace(self, frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if id(code) not in self.ids:
            self.ids.add(id(code))
            self.codes.append(code)
        return None

    # -- the environment children inherit ------------------------------------------------------
    def child_environment(self, env: Any) -> None:
        """Put the recording variables into `env` (os.environ or a dict a test passes to Popen)."""
        env[CHILD_DIR] = str(self.children)
        env[REPO_VAR] = self.repo.rstrip(os.sep)
        path = env.get("PYTHONPATH", "")
        if not any(os.path.basename(p) == HOOK for p in path.split(os.pathsep)):
            env["PYTHONPATH"] = os.pathsep.join([self.hook, path]) if path else self.hook

    def _environment_lacks(self, env: Any) -> bool:
        try:
            return env.get(CHILD_DIR) != str(self.children) or \
                not any(os.path.basename(p) == HOOK for p in str(env.get("PYTHONPATH", "")).split(os.pathsep))
        except AttributeError:  # a list of bytes, ...: cannot tell
            return True

    def _opaque(self, why: str) -> None:
        if not self.opaque or why not in self.opaque:
            self.opaque.append(why)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        # an exception here would fail the audited operation (open, Popen, ...): the test would not run as it does
        try:
            self._audit(event, args)
        except Exception as exc:  # noqa: BLE001
            self._opaque(f"the recorder failed on {event} ({type(exc).__name__}: {exc})")

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event in SPAWNS:
            self._spawn(event, args)
        elif event == "open" and isinstance(args[0], (str, os.PathLike)):
            path = os.path.abspath(os.fspath(args[0]))
            if path.startswith(self.roots) and path.endswith(".py") and not self._importing():
                self.read.add(path[len(self.repo):].replace(os.sep, "/"))
        elif event == "os.kill" and args[0] in (os.getpid(), 0) and args[1] in (signal.SIGKILL, signal.SIGTERM):
            self.finish()  # this process kills itself: its record first (written again if it lives on)

    def _spawn(self, event: str, args: tuple[Any, ...]) -> None:
        argv: Any = args[1] if event in ("subprocess.Popen", "os.posix_spawn", "os.exec") else \
            args[2] if event == "os.spawn" else args[0] if event == "pty.spawn" else None
        if isinstance(argv, (str, bytes, os.PathLike)):
            argv = [argv]
        argv = [os.fsdecode(a) for a in argv] if argv else []
        program = os.path.basename(argv[0]) if argv else ""
        if program in RUNS_NO_PYTHON:
            return
        shown = " ".join(argv)[:80] if argv else event
        if event in ("os.fork", "os.forkpty"):
            self._opaque(f"forked a process ({event})")
            return
        env = {"subprocess.Popen": 3, "os.posix_spawn": 2, "os.exec": 2, "os.spawn": 3}.get(event)
        given = args[env] if env is not None and len(args) > env else None
        if given is not None and self._environment_lacks(given):
            if event == "subprocess.Popen" and isinstance(given, dict):
                self.child_environment(given)  # subprocess builds the child's environment after this event
            else:
                self._opaque(f"started a subprocess without the recorder's environment ({shown})")
        elif given is None and self._environment_lacks(os.environ):
            self._opaque(f"started a subprocess after the recorder's environment was removed ({shown})")
        flag = _python_flags_hide_us(argv)
        if flag:
            self._opaque(f"started a Python with {flag}, which cannot record ({shown})")
        if event == "os.exec":
            self.finish()  # this process becomes another program: its record now

    @staticmethod
    def _importing() -> bool:
        try:
            frame = sys._getframe(3)  # _importing <- _audit <- audit <- who opened
        except ValueError:  # no Python frame that deep: the interpreter opening the main script
            return False
        for _ in range(4):
            if frame is None:
                return False
            filename = frame.f_code.co_filename  # the import system, or pytest rewriting a test's asserts
            if "importlib" in filename or filename.endswith(f"assertion{os.sep}rewrite.py"):
                return True
            frame = frame.f_back  # type: ignore[assignment]
        return False

    def start(self) -> None:
        self.children.mkdir(parents=True, exist_ok=True)
        hook = Path(self.hook) / "sitecustomize.py"
        if not hook.exists():
            hook.parent.mkdir(parents=True, exist_ok=True)
            hook.write_text(SITECUSTOMIZE.format(recorder=os.path.abspath(__file__), chain=CHAIN.format(hook=HOOK)))
        self.child_environment(os.environ)
        sys.addaudithook(self.audit)
        sys.settrace(self.trace)
        threading.settrace(self.trace)

    def finish(self) -> None:
        """Write the record: this process's calls and those of every child that recorded."""
        replaced = sys.gettrace() != self.trace and not self.finished
        if replaced:
            self._opaque("the trace function was replaced")
        self.finished = True
        ran: set[str] = set()
        outside: set[str] = set()
        for code in list(self.codes):
            filename = code.co_filename
            if filename == __file__ or not code.co_flags & inspect.CO_OPTIMIZED or \
                    os.path.basename(os.path.dirname(filename)) == HOOK:
                continue  # the recorder and its hook; module and class bodies (module level: selected by imports)
            if filename.startswith(self.roots):
                name = _function_name(getattr(code, "co_qualname", code.co_name))  # 3.11+
                if name:
                    ran.add(f"{filename[len(self.repo):].replace(os.sep, '/')}::{name}")
            elif os.path.isabs(filename) and filename.endswith(".py") and \
                    not os.path.realpath(filename).startswith(self.environment):
                outside.add(filename)
        if outside:
            self._opaque(f"ran code from outside the repository ({sorted(outside)[0]})")
        read = set(self.read)
        opaque = list(self.opaque)
        children, why_not = self._children(ran, read)
        opaque += [why for why in why_not if why not in opaque]
        partial = self.out.with_name(self.out.name + ".part")
        partial.write_text(json.dumps({"ran": sorted(ran), "read": sorted(read), "opaque": "; ".join(opaque),
                                       "children": children}))
        partial.replace(self.out)

    def _children(self, ran: set[str], read: set[str]) -> tuple[int, list[str]]:
        """Add the children's records to `ran` and `read`: how many, and why the whole is opaque, if it is."""
        if not self.children.is_dir():
            return 0, []
        opaque = []
        count = 0
        started = sorted(p for p in self.children.glob("*.started"))
        if (self.children / "overflow").exists():
            opaque.append(f"more than {MAX_CHILDREN} Python subprocesses")
        for marker in started:
            record = marker.with_suffix(".json")
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                argv = marker.read_text(errors="replace")[:80]
                opaque.append(f"a Python subprocess left no record: killed, or still running ({argv})")
                continue
            ran.update(data["ran"])
            read.update(data["read"])
            count += 1 + data.get("children", 0)
            if data["opaque"] and f"in a subprocess: {data['opaque']}" not in opaque:
                opaque.append(f"in a subprocess: {data['opaque']}")
        return count, opaque[:3]


def start_child() -> Recorder | None:
    """In a Python process started while a test file records (sitecustomize): record it too."""
    global _child
    if _child is not None:
        return None  # once per process
    parent = Path(os.environ[CHILD_DIR])
    repo = Path(os.environ.get(REPO_VAR, "."))
    if not parent.is_dir():
        return None  # the recording that started this process is over: nothing to add to
    if sum(1 for _ in parent.glob("*.started")) >= MAX_CHILDREN:
        (parent / "overflow").touch()
        return None
    name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (parent / f"{name}.started").write_text(" ".join(sys.orig_argv))
    recorder = _child = Recorder(repo, parent / f"{name}.json", parent / f"{name}.d")
    recorder.start()
    atexit.register(recorder.finish)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def terminated(signum: int, frame: Any) -> None:  # the default action, after the record
            recorder.finish()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        signal.signal(signal.SIGTERM, terminated)
    return recorder


def _start() -> Recorder | None:
    # at import (`-p` loads the plugin before the conftests), so that what conftests run is recorded
    out = os.environ.pop("TEST_MAP_OUT", "")  # not for the processes the tests start: they are children
    if not out:
        return None
    out_path = Path(out)
    recorder = Recorder(Path(os.environ.get(REPO_VAR, ".")), out_path, out_path.with_name(out_path.name + ".d"))
    recorder.start()
    return recorder


_recorder = _start() if __name__ == "test_map_recorder" and "TEST_MAP_OUT" in os.environ else None


def pytest_unconfigure(config: Any) -> None:
    if _recorder is not None:
        _recorder.finish()
