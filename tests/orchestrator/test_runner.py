"""Runner details a user sees on stderr."""

from __future__ import annotations

from pathlib import Path

from orchestrator.stacks.runner import Runner
from orchestrator.state import StateLayout
from orchestrator.topology import load
from tests.doubles import InMemoryEngine

REPO = Path(__file__).resolve().parents[2]


def test_progress_is_one_line_per_stack_per_interval(tmp_path: Path) -> None:
    lines: list[str] = []
    topology = load(REPO / "stacks" / "dev.topology.yaml")
    runner = Runner(InMemoryEngine(), topology, StateLayout(tmp_path), notify=lines.append)
    for n in range(1, 200):  # an engine event per resource
        runner._progress("dev-region-eu-west-1", {"create": n})
    runner._progress("dev-dns", {"create": 1})
    assert lines == ["[dev-region-eu-west-1] create 1 so far", "[dev-dns] create 1 so far"]
