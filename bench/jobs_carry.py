"""Benchmark: what carrying an in-flight job to another region costs (orchestrator/registry/jobs.py).

Against a moto server started here on 127.0.0.1 with the strict world's job state machine: a fleet
of F things registered in both regions, one job in the source targeting them (through a static
thing group), 60 % of the devices SUCCEEDED there through `iot-jobs-data`, then `carry_in_flight`
to the destination (read, plan, create, cancel the source job, reconcile, read back). Counts the
API calls each region received and the wall time; the remainder over 100 things goes through a
thing group in the destination (one AddThingToThingGroup per thing).

    .venv/bin/python bench/jobs_carry.py            # print the table
    .venv/bin/python bench/jobs_carry.py --write    # also update docs/performance.md

Exit code 1 when a carry is not ok or a device would run the job twice.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from bench.registry_sync import moto_server  # noqa: E402
from orchestrator.aws import AwsContext, client  # noqa: E402
from orchestrator.registry.calls import Caller  # noqa: E402
from orchestrator.registry.jobs import carry_in_flight  # noqa: E402

SECTION = "In-flight jobs carried on failover: calls per job and per unfinished thing"
COMMAND = ".venv/bin/python bench/jobs_carry.py --write"
SRC, DST = "eu-west-1", "eu-central-1"


def run(url: str, fleet: int) -> dict[str, Any]:
    from tests.moto_server import reset

    reset(url)
    ctx = AwsContext(endpoint_url=url)
    src, dst = client(ctx, "iot", SRC, own_retries=True), client(ctx, "iot", DST, own_retries=True)
    device = client(ctx, "iot-jobs-data", SRC, own_retries=True)
    names = [f"dev-{i:05d}" for i in range(fleet)]
    for iot in (src, dst):
        for name in names:
            iot.create_thing(thingName=name)
    group = src.create_thing_group(thingGroupName="rollout")["thingGroupArn"]
    for name in names:
        src.add_thing_to_thing_group(thingGroupName="rollout", thingName=name)
    src.create_job(jobId="ota", targets=[group], document='{"firmware":"2.0"}',
                   jobExecutionsRolloutConfig={"maximumPerMinute": 1000})
    done = int(fleet * 0.6)
    for name in names[:done]:
        device.update_job_execution(thingName=name, jobId="ota", status="SUCCEEDED")
    a, b = Caller(src), Caller(dst)
    start = time.perf_counter()
    report = carry_in_flight(a, b)
    wall = time.perf_counter() - start
    counts = [c.stats.counts() for c in (a, b)]
    [job] = report.jobs
    return {"fleet": fleet, "pending": fleet - done, "src": (counts[0].reads, counts[0].writes),
            "dst": (counts[1].reads, counts[1].writes), "wall": wall, "group": bool(job.group),
            "ok": report.ok and job.targets == fleet - done and not job.executed_twice}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--sizes", default="50,250,1000")
    args = parser.parse_args()
    with moto_server() as url:
        rows = [run(url, int(n)) for n in args.sizes.split(",")]
    lines = ["| things targeted | unfinished (carried) | source: reads / writes | destination: reads / writes "
             "| destination writes per carried thing | via thing group | wall (s) | ok |",
             "|--:|--:|--:|--:|--:|:--|--:|:--|"]
    for r in rows:
        lines.append(f"| {r['fleet']} | {r['pending']} | {r['src'][0]} / {r['src'][1]} | {r['dst'][0]} / "
                     f"{r['dst'][1]} | {r['dst'][1] / r['pending']:.2f} | {'yes' if r['group'] else 'no'} | "
                     f"{r['wall']:.1f} | {'yes' if r['ok'] else 'NO'} |")
    body = ("One job, 60 % of its things SUCCEEDED in the source, carried to the destination against moto on "
            "127.0.0.1 (`orchestrator/registry/jobs.py`). The source: ListJobs, DescribeJob, GetJobDocument, and "
            "ListJobExecutionsForJob three times (the listing, the reconcile after the cancel, the read-back; "
            "pages of 250), plus one CancelJob; the destination: DescribeJob (not found), CreateJob, "
            "ListJobExecutionsForJob for the reconcile and the read-back, DescribeJob and GetJobDocument for the "
            "read-back. Up to 100 unfinished things the job targets them directly (a "
            "constant number of writes); above, each one costs one AddThingToThingGroup (quota 100/s) into the "
            "group made for the carry. Wall time is moto's on a shared 2-core machine, not AWS's.\n\n"
            + "\n".join(lines) + f"\n\n{machine()}. Reproduce: `{COMMAND}`.")
    print(body)
    if args.write:
        write_section(SECTION, body)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
