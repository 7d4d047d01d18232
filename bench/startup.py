"""Start-up: `orchestrate --help` must not import pulumi, pulumi_aws or boto3.

Measures the median wall time of `orchestrate --help` (the installed console script) against
`python -c "import click"` over N runs each, interleaved. Target: ratio <= 1.5.

The venv is the one `make` sets up (an editable install in compat mode: a plain path entry, no
import hook on every import).

Run: .venv/bin/python -m bench.startup [--runs 30] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._report import machine, write_section

BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def heavy_modules() -> list[str]:
    probe = ("import sys; sys.argv=['orchestrate','--help']\n"
             "from orchestrator.cli.main import cli\n"
             "try:\n    cli.main(standalone_mode=False)\nexcept SystemExit:\n    pass\n"
             "print('HEAVY:' + ','.join(m for m in sys.modules\n"
             "      if m.split('.')[0] in ('pulumi', 'pulumi_aws', 'boto3', 'botocore', 'yaml')))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("HEAVY:")][-1]
    return [m for m in line[len("HEAVY:"):].split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    cli = [str(BIN / "orchestrate"), "--help"]
    base = [sys.executable, "-c", "import click"]
    timed(cli), timed(base)  # warm the file cache
    ours, theirs = [], []
    for _ in range(args.runs):
        ours.append(timed(cli))
        theirs.append(timed(base))
    a, b = statistics.median(ours), statistics.median(theirs)
    heavy = heavy_modules()
    body = "\n".join([
        f"Median of {args.runs} interleaved runs each; {machine()}. Target: ratio <= 1.5, and no pulumi, "
        "pulumi_aws, boto3 or PyYAML import for `--help`.",
        "",
        "| command | median (ms) |",
        "|---|---|",
        f"| `orchestrate --help` | {a * 1000:.1f} |",
        f"| `python -c \"import click\"` | {b * 1000:.1f} |",
        f"| **ratio** | **{a / b:.2f}** |",
        "",
        f"Heavy modules imported by `--help`: {', '.join(heavy) or 'none'}.",
        "",
        "Reproduce: `.venv/bin/python -m bench.startup --write`",
    ])
    print(body)
    if args.write:
        write_section("Start-up: orchestrate --help", body)


if __name__ == "__main__":
    main()
