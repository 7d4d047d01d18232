"""Benchmark: the cost of `registry verify` and of a sync after an interrupted one, in calls per thing.

Against a moto server started here on 127.0.0.1, for 1,000 and 5,000 things (each with its own
certificate, memberships, policies, a classic shadow, and every 10th a named shadow):

1. a first sync into an empty region (with a version record): the reference;
2. `registry verify` of the two regions (both read in full: listings, one ListThingPrincipals per
   thing and region, every shadow);
3. the issue's scenario: the destination's things deleted out of band, the next sync interrupted
   between creating the things and attaching their certificates (an exception raised at the first
   AttachThingPrincipal: no `finally` of the sync records anything, as after SIGKILL), then a
   plain re-run that must repair it (it trusts no version, reads every thing, applies, reads back);
4. an unchanged sync after that (the record trusted again).

    .venv/bin/python bench/registry_verify.py            # print the table
    .venv/bin/python bench/registry_verify.py --write    # also update docs/performance.md

Exit code 1 when the repair is not ok, verify does not find parity after it, or the repair leaves
attachments missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from bench.registry_sync import moto_server  # noqa: E402
from orchestrator.aws import AwsContext, client  # noqa: E402
from orchestrator.registry import SyncOptions, SyncReport, sync_clients  # noqa: E402
from orchestrator.registry.calls import Caller, RetryPolicy  # noqa: E402
from orchestrator.registry.quotas import SHADOW_APIS  # noqa: E402
from orchestrator.registry.verify import VerifyReport, verify_clients  # noqa: E402
from tests.moto_server import reset  # noqa: E402
from tests.ops.registry_world import seed, thing_name  # noqa: E402

SECTION = "Registry verify and the sync after an interrupted one"
COMMAND = ".venv/bin/python bench/registry_verify.py --write"
SRC, DST = "eu-west-1", "eu-central-1"
FAST = 100_000.0


class Interrupted(BaseException):
    """Stands for SIGKILL: not an Exception, so no operation error is recorded and the run stops."""


@dataclass(frozen=True)
class Row:
    things: int
    what: str
    seconds: float
    reads: int
    writes: int
    principals: int  # list_thing_principals calls
    ok: bool
    data_reads: int = 0  # Device Shadow data-plane reads (their own, far higher quota)
    note: str = ""

    def per_thing(self, n: int) -> float:
        return n / self.things


def iot(ctx: AwsContext, region: str) -> Any:
    return client(ctx, "iot", region, own_retries=True, max_pool_connections=32)


def data(ctx: AwsContext, region: str) -> Any:
    return client(ctx, "iot-data", region, own_retries=True, max_pool_connections=32)


def options(state: Path) -> SyncOptions:
    return SyncOptions(rate=FAST, read_rate=FAST, concurrency=4, state_path=state)


def run_sync(ctx: AwsContext, state: Path, dst_client: Any | None = None,
             concurrency: int = 4) -> tuple[SyncReport, float]:
    t0 = time.perf_counter()
    report = sync_clients(iot(ctx, SRC), dst_client or iot(ctx, DST), replace(options(state), concurrency=concurrency),
                          src_data=data(ctx, SRC), dst_data=data(ctx, DST))
    return report, time.perf_counter() - t0


def data_reads(by_api: Any) -> int:
    return sum(n for api, n in by_api.items() if api in SHADOW_APIS and api.startswith(("get", "list")))


def row(n: int, what: str, report: SyncReport, seconds: float, note: str = "") -> Row:
    return Row(n, what, seconds, report.read_calls, report.write_calls,
               report.calls_by_api.get("list_thing_principals", 0), report.ok,
               data_reads=data_reads(report.calls_by_api), note=note)


def run_verify(ctx: AwsContext) -> tuple[VerifyReport, float]:
    def caller(c: Any) -> Caller:
        return Caller(c, retry=RetryPolicy())

    t0 = time.perf_counter()
    report = verify_clients(caller(iot(ctx, SRC)), caller(iot(ctx, DST)), a_data=caller(data(ctx, SRC)),
                            b_data=caller(data(ctx, DST)), concurrency=4)
    return report, time.perf_counter() - t0


def seed_shadows(ctx: AwsContext, n: int) -> None:
    d = client(ctx, "iot-data", SRC, max_pool_connections=16)

    def one(i: int) -> None:
        doc = {"state": {"desired": {"led": "on", "i": i}, "reported": {"led": "off"}}}
        d.update_thing_shadow(thingName=thing_name(i), payload=json.dumps(doc).encode())
        if i % 10 == 0:
            d.update_thing_shadow(thingName=thing_name(i), shadowName="config",
                                  payload=json.dumps({"state": {"reported": {"fw": "1"}}}).encode())

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(n)))


def delete_destination_things(ctx: AwsContext) -> None:
    """The destination's registry rebuilt out of band: its things (and their attachments) gone."""
    d = client(ctx, "iot", DST, max_pool_connections=16)
    names = [t["thingName"] for page in d.get_paginator("list_things").paginate() for t in page["things"]]

    def one(name: str) -> None:
        for arn in d.list_thing_principals(thingName=name)["principals"]:
            d.detach_thing_principal(thingName=name, principal=arn)
        d.delete_thing(thingName=name)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, names))


def attachments(ctx: AwsContext) -> int:
    d = client(ctx, "iot", DST, max_pool_connections=16)
    names = [t["thingName"] for page in d.get_paginator("list_things").paginate() for t in page["things"]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(pool.map(lambda t: len(d.list_thing_principals(thingName=t)["principals"]), names))


def one_size(url: str, n: int) -> tuple[list[Row], bool]:
    reset(url)
    ctx = AwsContext(endpoint_url=url)
    seed(client(ctx, "iot", SRC, max_pool_connections=16), n, workers=8)
    seed_shadows(ctx, n)
    rows: list[Row] = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "versions.json"
        first, s = run_sync(ctx, state)
        rows.append(row(n, "first sync into an empty region", first, s))
        failed |= not first.ok
        v, s = run_verify(ctx)
        rows.append(Row(n, "`registry verify` (registry and shadows)", s, v.read_calls, 0,
                        v.calls_by_api.get("list_thing_principals", 0), v.equal,
                        data_reads=data_reads(v.calls_by_api)))
        failed |= not v.equal
        print(f"{n}: first sync {first.read_calls} reads; verify {v.read_calls} reads, equal={v.equal}", flush=True)

        delete_destination_things(ctx)
        dst = iot(ctx, DST)

        def kill(**_: Any) -> None:
            raise Interrupted

        dst.meta.events.register("before-send.iot.AttachThingPrincipal", kill)
        t0 = time.perf_counter()
        try:  # one worker: every thing is created before the first attachment (the scenario)
            run_sync(ctx, state, dst, concurrency=1)
        except Interrupted:
            pass
        else:
            failed = True
        interrupted_s = time.perf_counter() - t0
        things_before = len(list(iot(ctx, DST).get_paginator("list_things").paginate().build_full_result()["things"]))
        repair, s = run_sync(ctx, state)
        left = attachments(ctx)
        rows.append(row(n, "sync after the interrupted one (repairs)", repair, s,
                        f"{things_before:,} things in the destination before it, "
                        f"{repair.counts['thing_principal']['create']:,} attachments made, {left:,} in place after; "
                        f"interrupted run {interrupted_s:.0f} s"))
        failed |= not repair.ok or left != n
        quiet, s = run_sync(ctx, state)
        rows.append(row(n, "unchanged sync after that", quiet, s))
        failed |= not quiet.ok or quiet.write_calls != 0
        after, s = run_verify(ctx)
        failed |= not after.equal
        print(f"{n}: repair ok={repair.ok} reads={repair.read_calls}; unchanged reads={quiet.read_calls}; "
              f"verify after: equal={after.equal}", flush=True)
    return rows, failed


def render(rows: list[Row]) -> str:
    date = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        f"Calls per thing (both regions counted) against a moto server on 127.0.0.1; {machine()}, {date}. "
        "Each thing has its own certificate, 1-2 group memberships, the device policy (every 4th a "
        "region-pinned one too), a classic shadow and every 10th a named shadow. Times are moto's "
        "speed on a shared machine, for orientation only; the call counts are what AWS would bill "
        "against the quotas.",
        "",
        "| things | run | ok | read calls / thing | control-plane reads / thing | of which ListThingPrincipals "
        "/ thing | write calls / thing | time (s) | |",
        "|--:|:--|:-:|--:|--:|--:|--:|--:|:--|",
    ]
    for r in rows:
        lines.append(f"| {r.things:,} | {r.what} | {'yes' if r.ok else 'NO'} | {r.per_thing(r.reads):.2f} | "
                     f"{r.per_thing(r.reads - r.data_reads):.2f} | {r.per_thing(r.principals):.2f} | "
                     f"{r.per_thing(r.writes):.2f} | {r.seconds:.0f} | {r.note} |")
    lines += ["", "Reading it:", ""]
    by = {(r.things, r.what.split()[0]): r for r in rows}
    for n in sorted({r.things for r in rows}):
        first, repair = by.get((n, "first")), by.get((n, "sync"))
        verify = by.get((n, "`registry"))
        if first and repair:
            cp_repair, cp_first = repair.reads - repair.data_reads, first.reads - first.data_reads
            lines.append(f"- {n:,} things: the repairing sync read {repair.per_thing(repair.reads):.2f} calls per "
                         f"thing against the first sync's {first.per_thing(first.reads):.2f} "
                         f"(x{repair.reads / max(1, first.reads):.2f}; control plane "
                         f"x{cp_repair / max(1, cp_first):.2f}): it trusts no version, so it reads every "
                         "thing's certificates in both regions (the destination's things exist now; into an "
                         "empty region the first sync had none to read there), then reads back the "
                         "attachments it made. Both include the read-back (one ListThingPrincipals per "
                         "thing an attachment was made for, and the destination's listings again).")
        if verify:
            lines.append(f"- {n:,} things: `registry verify` costs {verify.per_thing(verify.reads):.2f} reads per "
                         "thing: one ListThingPrincipals per thing and region (no bulk form exists), one "
                         "ListNamedShadowsForThing and one GetThingShadow per shadow per region; the rest "
                         "(ListThings, ListCertificates pages, group listings, one ListTargetsForPolicy per "
                         "policy) is a few hundredths. At AWS's default 20/s for ListThingPrincipals, "
                         f"{n:,} things take about {n / 20 / 60:.0f} min per region (both read in parallel); "
                         "`--no-shadows` leaves the data-plane reads out.")
    lines += ["", "The first-sync figures of \"Registry sync\" above predate the read-back: a first sync now also "
              "reads back what it wrote, one more ListThingPrincipals per thing (in the 2.00 per thing here, both "
              "regions and the read-back counted) plus one GetThingShadow per shadow written."]
    lines += ["", f"Reproduce: `{COMMAND}`"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--write", action="store_true", help="update the section in docs/performance.md")
    args = ap.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    rows: list[Row] = []
    failed = False
    with moto_server() as url:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            got, bad = one_size(url, n)
            rows += got
            failed |= bad
            for r in got:  # the raw figures, as soon as they exist
                print(json.dumps(r.__dict__), flush=True)
    body = render(rows)
    print()
    print(body)
    if args.write:
        print(f"\nwrote {write_section(SECTION, body)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
