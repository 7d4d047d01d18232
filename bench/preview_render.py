"""Benchmark: render the PR comment for a preview of 5,000 resource changes across 4 stacks.

Target: markdown rendering (model -> every comment part, scrubbed and split) in <= 0.5 s, and
every part <= 65,536 characters (GitHub's comment limit). Also measured, for information: turning
the engine events of those changes into the model (`orchestrator.engine.events.collect`), and the
text and JSON renderings.

    .venv/bin/python bench/preview_render.py            # print the numbers
    .venv/bin/python bench/preview_render.py --write    # also update docs/performance.md

Exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.engine.events import collect  # noqa: E402
from orchestrator.preview.comment import MAX_COMMENT_CHARS, comment_length  # noqa: E402
from orchestrator.preview.model import (  # noqa: E402
    EnvironmentPreview,
    Op,
    ResourceChange,
    StackPreview,
    ValueChange,
)
from orchestrator.preview.render import render_json, render_markdown, render_text  # noqa: E402

TARGET_SECONDS = 0.5
SECTION = "## Preview rendering"
COMMAND = ".venv/bin/python bench/preview_render.py --write"
RESOURCES = 5000
STACKS = 4
TYPES = ("aws:iot/thing:Thing", "aws:iot/topicRule:TopicRule", "aws:iot/policy:Policy",
         "aws:s3/bucket:Bucket", "aws:kinesis/stream:Stream", "aws:route53/record:Record",
         "aws:iam/rolePolicy:RolePolicy", "aws:cloudwatch/metricAlarm:MetricAlarm")
OPS = (Op.CREATE, Op.UPDATE, Op.UPDATE, Op.UPDATE, Op.REPLACE, Op.DELETE)


def stack_names() -> list[tuple[str, str, str]]:
    return [("prod-region-eu-west-1", "region", "eu-west-1"),
            ("prod-region-eu-central-1", "region", "eu-central-1"),
            ("prod-dns", "dns", "eu-west-1"), ("prod-replication", "replication", "eu-west-1")]


def build_model() -> EnvironmentPreview:
    stacks = []
    per = RESOURCES // STACKS
    for s, (name, kind, region) in enumerate(stack_names()):
        changes = []
        for i in range(per):
            t = TYPES[(i + s) % len(TYPES)]
            op = OPS[i % len(OPS)]
            values = ()
            if t == "aws:route53/record:Record" and op is Op.UPDATE:
                values = (ValueChange("records", f'["a{i}-ats.iot.eu-west-1.amazonaws.com"]',
                                      f'["b{i}-ats.iot.eu-central-1.amazonaws.com"]'),)
            changes.append(ResourceChange(
                urn=f"urn:pulumi:{name}::iot-platform::iotplatform:region:IotRegion${t}::res-{i:05d}",
                type=t, name=f"{name}-device-fleet-{i:05d}", op=op,
                diffs=("tags.team", "attributes.firmware", "policy.Statement[0].Resource")[: 1 + i % 3]
                if op in (Op.UPDATE, Op.REPLACE) else (),
                protected=t in ("aws:s3/bucket:Bucket", "aws:kinesis/stream:Stream") and i % 7 == 0,
                stateful=t in ("aws:s3/bucket:Bucket", "aws:kinesis/stream:Stream", "aws:iot/thing:Thing",
                               "aws:route53/record:Record"),
                replace_keys=("name",) if op is Op.REPLACE else (), values=values))
        counts: dict[Op, int] = {}
        for c in changes:
            counts[c.op] = counts.get(c.op, 0) + 1
        counts[Op.SAME] = 40
        stacks.append(StackPreview(name, kind, region, tuple(changes), counts))
    return EnvironmentPreview("prod", "0123456789abcdef0123456789abcdef01234567", tuple(stacks))


def build_events(n: int) -> list[object]:
    from pulumi.automation import events as ev

    out: list[object] = []
    for i in range(n):
        t = TYPES[i % len(TYPES)]
        op = ("create", "update", "same", "delete")[i % 4]
        urn = f"urn:pulumi:prod-region-eu-west-1::iot-platform::{t}::res-{i:05d}"
        meta = ev.StepEventMetadata(op=ev.OpType(op), urn=urn, type=t, provider="", diffs=["tags"],
                                    detailed_diff={"tags.team": ev.PropertyDiff(ev.DiffKind.UPDATE, True)})
        out.append(ev.EngineEvent(sequence=2 * i, timestamp=0, resource_pre_event=ev.ResourcePreEvent(meta)))
        out.append(ev.EngineEvent(sequence=2 * i + 1, timestamp=0,
                                  res_outputs_event=ev.ResOutputsEvent(meta)))
    return out


def timed(fn, repeat: int) -> tuple[float, object]:  # noqa: ANN001
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update the section in docs/performance.md")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    preview = build_model()
    md_s, parts = timed(lambda: render_markdown(preview), args.repeat)
    assert isinstance(parts, list)
    sizes = [comment_length(p) for p in parts]  # UTF-16 units: >= characters
    text_s, _ = timed(lambda: render_text(preview), args.repeat)
    json_s, _ = timed(lambda: render_json(preview), args.repeat)
    events = build_events(RESOURCES)
    collect_s, _ = timed(lambda: collect(events), args.repeat)

    ok_time = md_s <= TARGET_SECONDS
    ok_size = max(sizes) <= MAX_COMMENT_CHARS
    rows = [
        ("markdown (PR comment), 5,000 changes / 4 stacks", f"{md_s * 1000:.0f} ms",
         f"≤ {TARGET_SECONDS * 1000:.0f} ms", "met" if ok_time else "MISSED"),
        ("comment parts", f"{len(parts)} (largest {max(sizes):,} UTF-16 units)",
         f"each ≤ {MAX_COMMENT_CHARS:,}", "met" if ok_size else "MISSED"),
        ("text rendering", f"{text_s * 1000:.0f} ms", "-", "-"),
        ("JSON rendering", f"{json_s * 1000:.0f} ms", "-", "-"),
        ("collect: 10,000 engine events -> model", f"{collect_s * 1000:.0f} ms", "-", "-"),
    ]
    for r in rows:
        print(f"{r[0]:<50} {r[1]:>32}  target {r[2]:<12} {r[3]}")
    if args.write:
        write_section(rows, args.repeat)
    return 0 if ok_time and ok_size else 1


def write_section(rows: list[tuple[str, str, str, str]], repeat: int) -> None:
    path = ROOT / "docs" / "performance.md"
    machine = f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, " \
              f"{os.cpu_count()} CPUs"
    body = "\n".join([
        SECTION,
        "",
        "Rendering the pull-request comment for a preview of 5,000 resource changes across 4 stacks",
        "(region, region, DNS, replication; a mix of creates, updates with property diffs, replaces and",
        "deletes, DNS record values, protected and stateful resources), scrubbed and split into parts.",
        f"Median of {repeat} runs on {machine}, {time.strftime('%Y-%m-%d')}, load average "
        f"{os.getloadavg()[0]:.1f} (on a busy machine expect sizeable run-to-run variation).",
        "",
        "| measurement | result | target | |",
        "|:--|--:|:--|:--|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        f"Reproduce: `{COMMAND}` (prints the numbers; `--write` updates this section).",
        "",
    ])
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    print(f"updated {path.relative_to(ROOT)} ({SECTION})")


if __name__ == "__main__":
    sys.exit(main())
