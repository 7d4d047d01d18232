"""Benchmark: iot-data calls per retained message of the retained-message sync (orchestrator/registry/retained.py).

Against a moto server started here on 127.0.0.1 (with the strict world's retained-message API, as in
every test tier), N retained messages under `config/` in the source (and N/10 under another prefix,
never read), then:

1. a first sync into an empty region (list both, get each in scope, publish each, read each back);
2. an unchanged sync with the record the first one left (list both regions, nothing else);
3. an unchanged sync without a record (--full: list and get in both regions, nothing published);
4. `registry verify`'s retained part (both regions read).

    .venv/bin/python bench/retained.py            # print the table
    .venv/bin/python bench/retained.py --write    # also update docs/performance.md

Exit code 1 when a sync is not ok or the unchanged sync publishes anything.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from bench.registry_sync import moto_server  # noqa: E402
from orchestrator.aws import AwsContext, client  # noqa: E402
from orchestrator.registry.calls import Caller  # noqa: E402
from orchestrator.registry.retained import compare_retained, read_retained, sync_retained  # noqa: E402

SECTION = "Retained messages: calls per message"
COMMAND = ".venv/bin/python bench/retained.py --write"
SRC, DST = "eu-west-1", "eu-central-1"
PREFIXES = ("config/",)


def calls(*callers: Caller) -> tuple[int, int]:
    return (sum(c.stats.counts().reads for c in callers), sum(c.stats.counts().writes for c in callers))


def run(url: str, n: int) -> dict[str, Any]:
    from tests.moto_server import reset

    reset(url)
    ctx = AwsContext(endpoint_url=url)
    src, dst = client(ctx, "iot-data", SRC), client(ctx, "iot-data", DST)
    for i in range(n):
        src.publish(topic=f"config/site-{i:05d}", payload=b'{"interval": 30, "mode": "eco"}', qos=1, retain=True)
    for i in range(n // 10):
        src.publish(topic=f"telemetry/last-{i:05d}", payload=b"x", retain=True)
    out: dict[str, Any] = {"messages": n}

    def callers() -> tuple[Caller, Caller]:
        return Caller(src, page_size=200), Caller(dst, page_size=200)

    record = Path(tempfile.mkdtemp()) / "dev-a-b.retained.json"
    a, b = callers()
    t0 = time.perf_counter()
    first = sync_retained(a, b, PREFIXES, record=record)
    out["first_s"] = time.perf_counter() - t0
    out["first"] = calls(a, b)
    a, b = callers()
    quiet = sync_retained(a, b, PREFIXES, record=record)
    out["recorded"] = calls(a, b)
    a, b = callers()
    again = sync_retained(a, b, PREFIXES, record=record, trust=False)
    out["unchanged"] = calls(a, b)
    a, b = callers()
    diff = compare_retained(read_retained(a, PREFIXES), read_retained(b, PREFIXES))
    out["verify"] = calls(a, b)
    out["ok"] = first.ok and first.applied == n and again.ok and not again.ops and out["unchanged"][1] == 0 \
        and quiet.ok and not quiet.ops and out["recorded"][1] == 0 and diff.differences == 0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    rows = []
    with moto_server() as url:
        for n in (int(x) for x in args.sizes.split(",")):
            rows.append(run(url, n))
    lines = ["| messages | first sync: reads / writes per message | first sync wall (s, moto) "
             "| unchanged, with the record: reads / writes per message "
             "| unchanged, --full: reads / writes per message | verify: reads per message | ok |",
             "|--:|--:|--:|--:|--:|--:|:--|"]
    for r in rows:
        m = r["messages"]
        lines.append(f"| {m} | {r['first'][0] / m:.2f} / {r['first'][1] / m:.2f} | {r['first_s']:.1f} | "
                     f"{r['recorded'][0] / m:.3f} / {r['recorded'][1] / m:.2f} | "
                     f"{r['unchanged'][0] / m:.2f} / {r['unchanged'][1] / m:.2f} | {r['verify'][0] / m:.2f} | "
                     f"{'yes' if r['ok'] else 'NO'} |")
    body = ("N retained messages under `config/` in the source (and N/10 under `telemetry/`, outside the "
            "configured prefix: listed, never read), against moto on 127.0.0.1, no rate limiter (the "
            "product runs these APIs at the unlisted 10/s unless `quotas:` raises them: 1,000 messages "
            "take about 200 s of GetRetainedMessage at that rate). Per message in scope: one "
            "GetRetainedMessage in each region read, one Publish on a first sync and one "
            "GetRetainedMessage of the read-back; ListRetainedMessages adds one call per 200 topics per "
            "region (all topics, in scope or not). Unchanged, with the record the last run left beside the "
            "pair's version record: only the listings (a topic whose lastModifiedTime, size and QoS did "
            "not change in either region is not read). Unchanged with --full (or after a failed "
            "verification): every payload is read in both regions (GetRetainedMessage is billed as "
            "messaging), nothing published.\n\n"
            + "\n".join(lines) + f"\n\n{machine()}; load average {os.getloadavg()[0]:.1f} when measured (the wall "
            f"column is moto's and the machine's, not AWS's). Reproduce: `{COMMAND}`.")
    print(body)
    if args.write:
        write_section(SECTION, body)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
