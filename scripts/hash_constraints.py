#!/usr/bin/env python3
"""Writes the sha256 of every file the index holds for each pin in constraints.txt, next to the pin.

    .venv/bin/python scripts/hash_constraints.py [constraints.txt]

Run it after changing a pin (the header of constraints.txt says when). For each `name==version`
line it asks the index's JSON simple API (PEP 691; `PIP_INDEX_URL` or https://pypi.org/simple/)
for that project, keeps every wheel and sdist whose file name parses to exactly that version and
is not yanked, and writes their hashes as `--hash=sha256:...` continuation lines. Every file, not
only this machine's wheel: a laptop, CI and the workflows pick different wheels of one pin.
Comments and the order of the lines are kept; a pin that the index has no file for is an error and
nothing is written. Needs `packaging` (in the venv `make` builds).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import sys
import urllib.request
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([0-9][0-9A-Za-z.+!]*)\s*\\?$")
ACCEPT = "application/vnd.pypi.simple.v1+json"


def pins(lines: list[str]) -> list[tuple[str, str]]:
    """The `name==version` pins, with any hash continuation lines dropped."""
    out = []
    for line in lines:
        match = PIN.match(line)
        if match:
            out.append((match.group(1), match.group(2)))
    return out


def hashes(index: str, name: str, version: str) -> list[str]:
    url = f"{index.rstrip('/')}/{canonicalize_name(name)}/"
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (the configured index)
        files = json.load(response)["files"]
    wanted = Version(version)
    found = set()
    for entry in files:
        filename = entry["filename"]
        try:
            if filename.endswith(".whl"):
                got = parse_wheel_filename(filename)[1]
            else:
                got = parse_sdist_filename(filename)[1]
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue
        if got == wanted and not entry.get("yanked") and "sha256" in entry.get("hashes", {}):
            found.add(entry["hashes"]["sha256"])
    return sorted(found)


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parents[1] / "constraints.txt")
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--hash=")]
    wanted = pins(lines)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        found = dict(zip(wanted, pool.map(lambda pin: hashes(index, *pin), wanted), strict=True))
    missing = [f"{name}=={version}" for (name, version), digests in found.items() if not digests]
    if missing:
        print(f"hash_constraints: the index has no file for {', '.join(missing)}; nothing written", file=sys.stderr)
        return 1
    out = []
    for line in lines:
        match = PIN.match(line)
        if not match:
            out.append(line)
            continue
        digests = found[(match.group(1), match.group(2))]
        out.append(f"{match.group(1)}=={match.group(2)} \\")
        last = len(digests) - 1
        out += [f"    --hash=sha256:{digest}" + (" \\" if i < last else "") for i, digest in enumerate(digests)]
    path.write_text("\n".join(out) + "\n")
    print(f"hash_constraints: {len(found)} pins, {sum(map(len, found.values()))} hashes -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
