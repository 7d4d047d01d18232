"""Write one `## Section` of docs/performance.md, leaving the other sections as they are."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

PERF = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
HEADER = ("# Performance\n\nTargets live in the benchmarks under `bench/`; they are run on demand, never as "
          "timed assertions in the test suite. Each section says how to reproduce it.\n")


def machine() -> str:
    return (f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
            f"{platform.system()}")


def write_section(title: str, body: str) -> Path:
    text = PERF.read_text(encoding="utf-8") if PERF.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    PERF.parent.mkdir(parents=True, exist_ok=True)
    PERF.write_text(text, encoding="utf-8")
    return PERF
