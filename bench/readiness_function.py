"""Benchmark: the scheduled readiness function (programs/readiness.py) as deployed.

- its package: files, bytes, build time (closure + zip), and the cold import of the handler and every
  rule from the unzipped package in a fresh interpreter (`python -I -S`, only boto3 and its
  dependencies besides): Lambda's init phase without the runtime's own start;
- its READINESS_CONFIG by topology size, in `dns` and `arc` mode, against Lambda's 4 KB for all of
  a function's environment variables: the largest environment it can serve;
- what it costs to run: CloudWatch custom metrics it keeps alive (RuleReady per rule and region,
  RegionReady, Ready), PutMetricData requests and invocations per month.

    .venv/bin/python bench/readiness_function.py            # print the section
    .venv/bin/python bench/readiness_function.py --write    # also update docs/performance.md
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REGIONS = ["eu-west-1", "eu-central-1", "eu-north-1", "eu-west-2", "eu-west-3", "us-east-1", "us-east-2",
           "us-west-2"]
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
RUNS_PER_MONTH = 12 * 24 * 30  # every 5 minutes
ACCOUNT = "123456789012"


def _outputs(top: Any) -> dict[str, dict[str, Any]]:
    """Realistic output lengths: autonamed buckets, UUID certificate ARNs, health check UUIDs."""
    found: dict[str, dict[str, Any]] = {}
    for r in top.regions:
        found[f"{top.env}-region-{r}"] = {
            "streamName": f"iot-{top.env}-{r}-telemetry", "dataLakeBucketName": f"iot-{top.env}-lake-{r}-" + "0" * 26,
            "domainConfigurationName": f"iot-{top.env}-{r}-domain",
            "certificateArn": f"arn:aws:acm:{r}:{ACCOUNT}:certificate/" + "a" * 8 + "-bbbb-cccc-dddd-" + "e" * 12}
    found[f"{top.env}-region-{top.primary}"].update(
        backupBucketName=f"iot-{top.env}-backups-" + "0" * 26,
        backupSigningKey=f"awskms:arn:aws:kms:{top.primary}:{ACCOUNT}:key/" + "f" * 8 + "-1111-2222-3333-" + "4" * 12)
    dns: dict[str, Any] = {"healthCheckIds": {r: "0" * 8 + "-1111-2222-3333-" + "4" * 12 for r in top.regions}}
    if top.failover_control.value == "arc":
        dns.update(
            routingControls={r: f"arn:aws:route53-recovery-control::{ACCOUNT}:controlpanel/" + "a" * 32
                             + "/routingcontrol/" + "b" * 16 for r in top.regions},
            clusterEndpoints=[{"Region": r, "Endpoint": f"https://{'c' * 8}.route53-recovery-cluster.{r}"
                                                        f".amazonaws.com/v1"} for r in REGIONS[:5]],
            controlPanelArn=f"arn:aws:route53-recovery-control::{ACCOUNT}:controlpanel/" + "a" * 32,
            safetyRule={"threshold": 1, "waitPeriodMs": 5000})
    found[f"{top.env}-dns"] = dns
    return found


def config_bytes(n: int, control: str, env: str = "production") -> tuple[int, int]:
    """(the configuration's JSON, the READINESS_CONFIG variable as deployed: name + value, packed above 3 KB)."""
    from orchestrator.readiness import deploy
    from orchestrator.readiness.scheduled import pack
    from orchestrator.topology import parse

    regions = REGIONS[:n]
    top = parse({"env": env, "domain": "iot.example.com", "hosted_zone": "example.com", "primary": regions[0],
                 "secondaries": regions[1:], "routing": "latency" if n > 2 else "failover",
                 "failover_control": control, "residency": regions, "backup_region": regions[-1]}, env=env)
    text = deploy.encode(deploy.function_config(
        top, _outputs(top).get, backend_url=f"s3://iot-{env}-state-{ACCOUNT}?region={regions[-1]}",
        secrets_provider=f"awskms://alias/iot-{env}-state?region={regions[-1]}"))
    return len(text.encode()), len("READINESS_CONFIG") + len(pack(text).encode())


def metrics(n: int, control: str) -> int:
    """Custom metrics kept alive: one RuleReady per applicable (rule, region) minus N/A, RegionReady, Ready."""
    from orchestrator.readiness.evaluate import ENV_ROW, applicable
    from orchestrator.readiness.probe import Probe
    from orchestrator.topology import parse

    regions = REGIONS[:n]
    top = parse({"env": "p", "domain": "iot.example.com", "hosted_zone": "example.com", "primary": regions[0],
                 "secondaries": regions[1:], "routing": "failover", "failover_control": control,
                 "residency": regions}, env="p")
    probe = Probe(env="p", topology=top, ctx=None, outputs=lambda _: {})  # type: ignore[arg-type]
    rows = applicable(probe)
    return len(rows) + len([*top.regions, ENV_ROW]) + 1


def _runtime(tmp: Path) -> Path:
    out = tmp / "runtime"
    out.mkdir()
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (out / source.name).symlink_to(source)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    from programs import package

    builds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(opts.repeat):
            started = time.perf_counter()
            built = package.build_readiness(out_dir=Path(tmp) / str(i))
            builds.append(time.perf_counter() - started)
        with zipfile.ZipFile(built.path) as z:
            unpacked = sum(i.file_size for i in z.infolist())
            z.extractall(Path(tmp) / "app")
        zipped = built.path.stat().st_size
        runtime = _runtime(Path(tmp))
        script = ("import sys, time; t = time.perf_counter(); sys.path[:0] = sys.argv[1:3];"
                  "from orchestrator.readiness import scheduled, evaluate; import orchestrator.readiness.rules;"
                  "print(time.perf_counter() - t)")
        imports = []
        for _ in range(opts.repeat):
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(Path(tmp) / "app"), str(runtime)],
                                  capture_output=True, text=True, check=True)
            imports.append(float(proc.stdout.strip()))
    rows = []
    for n in (2, 3, 4, 6, 8):
        (dj, dv), (aj, av) = config_bytes(n, "dns"), config_bytes(n, "arc")
        rows.append(f"| {n} | {dj:,} | {dv:,} | {aj:,} | {av:,} | {metrics(n, 'dns'):,} | {metrics(n, 'arc'):,} |")
    from bench._report import machine, write_section

    m2 = metrics(2, "dns")
    body = f"""Reproduce: `.venv/bin/python bench/readiness_function.py --write` ({machine()}; no AWS, no moto).

The function's package (`programs.package.build_readiness`): {len(built.files)} files, {zipped:,} bytes zipped
({unpacked:,} unzipped); build (closure + zip): first in the process {builds[0] * 1000:.0f} ms, then (sources
parsed once per process) median {statistics.median(builds[1:]) * 1000:.0f} ms of {opts.repeat - 1}.
Cold import of the handler, `evaluate` and every rule from the unzipped package in `python -I -S` (boto3
and its dependencies only): median {statistics.median(imports) * 1000:.0f} ms of {opts.repeat}.

The configuration (JSON bytes) and the READINESS_CONFIG variable as deployed (name and value; the
value is zlib + base64 above 3,072 bytes of JSON; Lambda allows 4,096 for all of a function's
environment variables, and `up` refuses more by name), and the custom metrics one evaluation keeps
alive (RuleReady per rule and region except N/A rows, which are fewer in practice, plus RegionReady
per row and Ready), by member regions, with realistic output lengths (autonamed buckets, UUID ARNs,
five ARC cluster endpoints; their characters repeat, so the packed sizes are optimistic: real UUIDs
compress less, and a value that still exceeds 4 KB is refused by `up`, naming its size):

| regions | JSON, dns | variable, dns | JSON, arc | variable, arc | metrics, dns | metrics, arc |
|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Cost per environment and month ({RUNS_PER_MONTH:,} runs): at two regions {m2} custom metrics (at AWS's list
price of $0.30 per metric-month for the first 10,000: about ${m2 * 0.30:.0f}; check the CloudWatch pricing page),
one PutMetricData request per run (150 datums per request), one alarm; Lambda: {RUNS_PER_MONTH:,} invocations
of 512 MB for the evaluation's duration (27.7 s at 10,000 things against moto, `bench/readiness.py`:
about {RUNS_PER_MONTH * 27.7 * 0.5:,.0f} GB-s, ${RUNS_PER_MONTH * 27.7 * 0.5 * 0.0000166667:.2f} at $0.0000166667
per GB-s, x86);
control-plane reads: {RUNS_PER_MONTH:,} x 449 at 10,000 things (0.045 per thing per run).
"""
    print(body)
    if opts.write:
        write_section("Readiness on a schedule: the function, its configuration and its cost", body)
    over = [r for r in rows if any(int(r.split("|")[i].strip().replace(",", "")) > 4096 for i in (3, 5))]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
