"""Is `make test-fast`'s selection sound? Run tests with every Python call in this repository
recorded, per test file, and check that each file whose code ran is in that test file's reach as
scripts/affected_tests.py computes it (so a change to it would have selected the test file).

    python -m bench.affected_soundness                    # the quick tiers: tests/programs tests/orchestrator
    python -m bench.affected_soundness tests/ops -n 2     # any pytest arguments

Prints one line per miss (test file, file that ran, reach says no) and a summary line; exits 1 when
a miss is found. What it cannot see: code that runs in a subprocess (the console script, a Pulumi
language host, a moto server) and data read from files (a non-Python file's reach is by name).
The recording (sys.settrace, one call per Python call) makes the run slower: a check, not the
edit-run loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = tuple(f"{REPO / p}{os.sep}" for p in ("orchestrator", "programs", "tests", "bench", "scripts"))


class Recorder:
    """The repository files whose code runs, per test file (pytest plugin, one per worker)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.owner: str | None = None
        self.ran: dict[str, set[str]] = {}

    def _trace(self, frame: Any, event: str, arg: Any) -> None:
        # the global trace function: called once per new Python frame ("call"); returning None
        # leaves the frame untraced (no line events), which keeps the cost to one call per call
        if self.owner is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(ROOTS):
                self.ran.setdefault(self.owner, set()).add(filename)
        return None

    def start(self) -> None:
        sys.settrace(self._trace)
        threading.settrace(self._trace)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        self.owner = str(Path(collector.path).relative_to(REPO)) if isinstance(collector, pytest.Module) else None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Any:
        self.owner = str(Path(item.path).relative_to(REPO))
        yield
        self.owner = None

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        sys.settrace(None)
        threading.settrace(None)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        ran = {k: sorted(str(Path(f).relative_to(REPO)) for f in v) for k, v in self.ran.items()}
        (self.out / f"{worker}.json").write_text(json.dumps(ran))


def pytest_configure(config: pytest.Config) -> None:  # loaded with -p bench.affected_soundness
    out = os.environ.get("AFFECTED_SOUNDNESS_OUT")
    if out and not config.pluginmanager.has_plugin("affected-recorder"):
        recorder = Recorder(Path(out))
        config.pluginmanager.register(recorder, "affected-recorder")
        recorder.start()


def check(ran: dict[str, set[str]]) -> list[tuple[str, str]]:
    sys.path.insert(0, str(REPO / "scripts"))
    import affected_tests as at

    graph = at.Graph(REPO)
    misses = []
    for test_file, files in sorted(ran.items()):
        test = graph.modules.get(at.module_name(Path(test_file)))
        if test is None:
            continue
        reach = graph.test_reach(test)
        for f in sorted(files):
            if f in at.EVERYTHING or f == "bench/affected_soundness.py":  # selects all / the recorder
                continue
            if f.endswith(".py") and at.module_name(Path(f)) not in reach:
                misses.append((test_file, f))
    return misses


def main(argv: list[str]) -> int:
    args = argv or ["tests/programs", "tests/orchestrator", "-n", "2"]
    with tempfile.TemporaryDirectory(prefix="affected-") as out:
        env = {**os.environ, "AFFECTED_SOUNDNESS_OUT": out, "PYTHONPATH": str(REPO)}
        status = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "-p", "bench.affected_soundness", *args], cwd=REPO, env=env).returncode
        ran: dict[str, set[str]] = {}
        for part in Path(out).glob("*.json"):
            for k, v in json.loads(part.read_text()).items():
                ran.setdefault(k, set()).update(v)
    misses = check(ran)
    for test_file, f in misses:
        print(f"miss: {test_file} ran {f}, which its reach does not hold")
    pairs = sum(len(v) for v in ran.values())
    print(f"affected_soundness: {len(ran)} test files, {pairs} (test file, file that ran) pairs, "
          f"{len(misses)} misses; pytest exit {status}")
    return 1 if misses or not ran else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
