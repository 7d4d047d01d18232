"""Reads every JUnit XML file a `make test` run wrote (one per tier, JUNIT_DIR) and prints the run's
summary: the engine tier's line and the whole run's closing line.

    python .ci/junit_summary.py DIR

Exit status: 0 when at least one test ran and none failed; 1 when a test failed or errored, when no
test ran at all (every tier exiting 5 would otherwise pass), or when DIR holds no JUnit file.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def summarize(directory: Path) -> tuple[list[str], int]:
    files = sorted(directory.glob("*.xml"))
    if not files:
        return [f"no JUnit files in {directory}: no test tier ran"], 1
    passed = failed = skipped = 0
    engine_ran = engine_skipped = 0
    for path in files:
        for case in ET.parse(path).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
            if case.get("classname", "").startswith("tests.engine"):
                if case.find("skipped") is None:
                    engine_ran += 1
                else:
                    engine_skipped += 1
    tiers = ", ".join(path.stem for path in files)
    lines = [f"engine tier: {engine_ran} tests ran, {engine_skipped} skipped",
             f"tiers: {tiers}",
             f"total: {passed} passed, {failed} failed, {skipped} skipped"]
    if passed + failed == 0:
        lines.append("no test ran")
        return lines, 1
    return lines, 1 if failed else 0


def main(argv: list[str]) -> int:
    lines, status = summarize(Path(argv[1] if len(argv) > 1 else ".ci-results"))
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
