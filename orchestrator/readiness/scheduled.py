"""The scheduled readiness check: one evaluation, published as CloudWatch metrics.

Meant to run every 5 minutes in a region that is not the primary (so it still reports while the
primary is down), as a Lambda handler: `handler(event, context)` reads its configuration from the
`READINESS_CONFIG` environment variable (JSON: env, the topology document, the stack outputs the
rules read, backup destination and signing key spec, backend URL and secrets provider), evaluates
every rule and publishes, in namespace `IotPlatform/Readiness`:

    RuleReady    {Env, Region, Rule}   1 READY, 0 NOT READY or UNKNOWN (N/A rows are not published)
    RegionReady  {Env, Region}         1 when every rule of the region (or `env`) is READY
    Ready        {Env}                 1 when every region is READY: the overall alarm's metric
                                       (missing data must count as breaching: a check that stopped
                                       running proves nothing)

Declared by the replication stack (`programs/readiness.py`): the function in the first secondary,
packaged from this handler's import closure (`programs.package.build_readiness`), invoked every 5
minutes, with a read-only role, and the alarm on `Ready`. `orchestrator.readiness.deploy` builds its
READINESS_CONFIG at `up`. The handler logs nothing and returns no evidence: only `region rule: STATUS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from orchestrator.readiness.model import ReadinessReport, Status

NAMESPACE = "IotPlatform/Readiness"
BATCH = 150  # datums per PutMetricData request (CloudWatch accepts up to 1,000)
PACKED = "zlib:"  # READINESS_CONFIG too large as JSON: zlib-compressed, base64
PLAIN_UP_TO = 3_072  # bytes of JSON kept readable in the console; above, packed (Lambda's limit: 4 KB in all)


def pack(config_json: str) -> str:
    """The READINESS_CONFIG value for `config_json`: the JSON itself while it is small, else packed."""
    if len(config_json.encode()) <= PLAIN_UP_TO:
        return config_json
    import base64
    import zlib

    return PACKED + base64.b64encode(zlib.compress(config_json.encode(), 9)).decode()


def unpack(value: str) -> dict[str, Any]:
    """The configuration from a READINESS_CONFIG value (plain or packed JSON)."""
    if value.startswith(PACKED):
        import base64
        import zlib

        value = zlib.decompress(base64.b64decode(value[len(PACKED):])).decode()
    return dict(json.loads(value))


def metric_data(report: ReadinessReport) -> list[dict[str, Any]]:
    env = report.env
    out: list[dict[str, Any]] = []
    for region in report.regions:
        for f in region.findings:
            if f.status is Status.NOT_APPLICABLE:
                continue
            out.append({"MetricName": "RuleReady", "Value": 1.0 if f.status is Status.READY else 0.0,
                        "Unit": "Count", "Dimensions": [{"Name": "Env", "Value": env},
                                                        {"Name": "Region", "Value": f.region},
                                                        {"Name": "Rule", "Value": f.rule}]})
        out.append({"MetricName": "RegionReady", "Value": 1.0 if region.ready else 0.0, "Unit": "Count",
                    "Dimensions": [{"Name": "Env", "Value": env}, {"Name": "Region", "Value": region.region}]})
    out.append({"MetricName": "Ready", "Value": 1.0 if report.ready else 0.0, "Unit": "Count",
                "Dimensions": [{"Name": "Env", "Value": env}]})
    return out


def publish(cloudwatch: Any, report: ReadinessReport) -> int:
    """PutMetricData in batches; returns how many datums were sent."""
    data = metric_data(report)
    for i in range(0, len(data), BATCH):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[i:i + BATCH])
    return len(data)


def probe_from_config(config: Mapping[str, Any]) -> Any:
    from orchestrator.aws import AwsContext
    from orchestrator.readiness.probe import Probe, Settings
    from orchestrator.topology import parse

    env = str(config["env"])
    outputs = {str(k): dict(v) for k, v in (config.get("outputs") or {}).items()}
    return Probe(env=env, topology=parse(config["topology"], env=env, source="READINESS_CONFIG"),
                 ctx=AwsContext(endpoint_url=config.get("endpoint_url")), outputs=outputs.get,
                 settings=Settings(), backend_url=config.get("backend_url"),
                 secrets_provider=config.get("secrets_provider"), backup_dest=config.get("backup_dest"),
                 signing_key=config.get("signing_key"))


def run(probe: Any, cloudwatch: Any) -> dict[str, Any]:
    from orchestrator.readiness.evaluate import evaluate

    report = evaluate(probe)
    sent = publish(cloudwatch, report)
    return {"ready": report.ready, "datums": sent,
            "not_ready": [f"{f.region} {f.rule}: {f.status.value}" for f in report.not_ready()]}


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:  # pragma: no cover - Lambda entry
    probe = probe_from_config(unpack(os.environ["READINESS_CONFIG"]))
    return run(probe, probe.client("cloudwatch", os.environ.get("AWS_REGION", probe.topology.secondaries[0])))
