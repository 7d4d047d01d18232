"""`up --all` for 4 regions with the in-memory engine at a fixed time per stack.

Critical path: the 4 region stacks in wave 1, then DNS, then replication: 3 waves, 3 s at 1 s per
stack. Target: wall / critical path <= 1.10. Also reported: the sequential ratio (--parallel 1).

Run: .venv/bin/python -m bench.waves [--latency 1.0] [--write]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench._report import machine, write_section
from orchestrator.stacks.graph import plan_waves, up_selection
from orchestrator.stacks.runner import Runner
from orchestrator.state import StateLayout
from orchestrator.topology import parse
from tests.doubles import InMemoryEngine

REGIONS = ["eu-west-1", "eu-central-1", "eu-north-1", "eu-west-2"]


def measure(latency: float, parallel: int) -> tuple[float, float, int]:
    topology = parse({"domain": "iot.example.com", "hosted_zone": "example.com", "primary": REGIONS[0],
                      "secondaries": REGIONS[1:], "routing": "latency", "residency": REGIONS},
                     env="bench", source="bench")
    selection = up_selection(topology, None)
    waves = plan_waves(topology, selection)
    critical = latency * len(waves)
    engine = InMemoryEngine(latency=latency)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(engine, topology, StateLayout(Path(tmp)), parallel=parallel)
        started = time.perf_counter()
        report = runner.up(selection)
        wall = time.perf_counter() - started
    assert report.ok
    return wall, critical, len(waves)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    wall, critical, n_waves = measure(args.latency, parallel=4)
    seq, _, _ = measure(args.latency, parallel=1)
    stacks = len(REGIONS) + 2
    rows = [
        "| mode | wall (s) | critical path (s) | wall / critical path |",
        "|---|---|---|---|",
        f"| `up --all` (--parallel 4) | {wall:.3f} | {critical:.1f} ({n_waves} waves) | **{wall / critical:.3f}** |",
        f"| sequential (--parallel 1) | {seq:.3f} | {critical:.1f} | {seq / critical:.3f} |",
    ]
    body = "\n".join([
        f"4 region stacks + DNS + replication ({stacks} stacks), in-memory engine at {args.latency:.1f} s per stack; "
        f"{machine()}. Target: wall / critical path <= 1.10.",
        "",
        *rows,
        "",
        "Reproduce: `.venv/bin/python -m bench.waves --write`",
    ])
    print(body)
    if args.write:
        write_section("Waves: up --all, 4 regions", body)


if __name__ == "__main__":
    main()
