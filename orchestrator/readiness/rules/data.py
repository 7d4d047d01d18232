"""Ingestion in each region: the topic rules, the Kinesis stream, the data lake and its replication."""

from __future__ import annotations

from typing import Any

from orchestrator.readiness.model import Scope, Verdict, not_applicable, not_ready, ready, rule, unknown
from orchestrator.readiness.probe import Probe, Unreadable, aws_read, not_found, plain


def _up(region: str) -> str:
    return f"orchestrate up --region {region}"


def telemetry_rule_name(env: str, region: str) -> str:
    return f"iot_{env}_{region}_telemetry".replace("-", "_")


def _topic_rule(probe: Probe, region: str, name: str) -> dict[str, Any] | None:
    try:
        got = aws_read(f"GetTopicRule {name}", lambda: probe.client("iot", region).get_topic_rule(ruleName=name))
    except Unreadable as exc:
        if not_found(exc):
            return None
        raise
    return dict(got.get("rule") or {})


def _rules_verdict(probe: Probe, region: str, names: list[str], fix: str) -> Verdict:
    missing, disabled = [], []
    for name in names:
        found = _topic_rule(probe, region, name)
        if found is None:
            missing.append(name)
        elif found.get("ruleDisabled"):
            disabled.append(name)
    if missing or disabled:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + \
            ([f"disabled: {', '.join(disabled)}"] if disabled else [])
        return not_ready("; ".join(parts), fix)
    return ready(f"{len(names)} rule(s) present and enabled")


@rule("data.telemetry_rule", "data", "the telemetry topic rule exists and is enabled")
def telemetry_rule(probe: Probe, region: str) -> Verdict:
    return _rules_verdict(probe, region, [telemetry_rule_name(probe.env, region)], _up(region))


@rule("data.replication_rules", "data", "registry-event and shadow topic rules exist and are enabled")
def replication_rules(probe: Probe, region: str) -> Verdict:
    from programs.contract import RULE_DESCRIPTIONS, rule_name

    if not probe.topology.multi_region:
        return not_applicable("single-region: no replication rules")
    names = [rule_name(probe.env, kind, region) for kind in RULE_DESCRIPTIONS]
    return _rules_verdict(probe, region, names, "orchestrate up --all  (the replication stack)")


def stream(probe: Probe, region: str) -> dict[str, Any] | None:
    def read() -> dict[str, Any] | None:
        name = str(plain(probe.region_outputs(region).get("streamName")) or f"iot-{probe.env}-{region}-telemetry")
        try:
            got = aws_read(f"DescribeStreamSummary {name}", lambda: probe.client("kinesis", region)
                           .describe_stream_summary(StreamName=name))
        except Unreadable as exc:
            if not_found(exc):
                return None
            raise
        return dict(got["StreamDescriptionSummary"])
    return probe.once(("stream", region), read)


@rule("data.kinesis_stream", "data", "the telemetry Kinesis stream is ACTIVE and encrypted")
def kinesis_stream(probe: Probe, region: str) -> Verdict:
    found = stream(probe, region)
    if found is None:
        return not_ready("no telemetry stream", _up(region))
    if found.get("StreamStatus") not in ("ACTIVE", "UPDATING"):
        return not_ready(f"{found['StreamName']} is {found.get('StreamStatus')}", _up(region))
    if found.get("EncryptionType") not in (None, "KMS"):
        return not_ready(f"{found['StreamName']} is not KMS-encrypted", _up(region))
    return ready(f"{found['StreamName']} {found.get('StreamStatus')}")


@rule("data.kinesis_shards", "data", "stream capacity at least the primary's", scope=Scope.SECONDARY)
def kinesis_shards(probe: Probe, region: str) -> Verdict:
    here, there = stream(probe, region), stream(probe, probe.topology.primary)
    if here is None or there is None:
        return unknown("a stream to compare is missing (see data.kinesis_stream)")
    mode = (here.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        return ready("ON_DEMAND: capacity follows the traffic")
    a, b = int(there.get("OpenShardCount") or 0), int(here.get("OpenShardCount") or 0)
    if b < a:
        return not_ready(f"{b} open shards here, {a} in {probe.topology.primary}",
                         f"raise kinesis_shards for {region} in the topology, then {_up(region)}")
    return ready(f"{b} open shards (primary {a})")


def _lake(probe: Probe, region: str) -> str | None:
    return plain(probe.region_outputs(region).get("dataLakeBucketName")) or None


@rule("data.lake_bucket", "data", "the data lake bucket exists, versioned")
def lake_bucket(probe: Probe, region: str) -> Verdict:
    bucket = _lake(probe, region)
    if not bucket:
        return unknown("the region stack exports no dataLakeBucketName (not deployed?)", _up(region))
    try:
        got = aws_read(f"GetBucketVersioning {bucket}", lambda: probe.client("s3", region)
                       .get_bucket_versioning(Bucket=bucket))
    except Unreadable as exc:
        if not_found(exc):
            return not_ready(f"bucket {bucket} does not exist", _up(region))
        return unknown(str(exc))
    if got.get("Status") != "Enabled":
        return not_ready(f"{bucket} versioning {got.get('Status') or 'off'} (replication needs it)", _up(region))
    return ready(f"{bucket} versioned")


@rule("data.lake_replication", "data", "the primary's lake replicates into this region",
      scope=Scope.SECONDARY)
def lake_replication(probe: Probe, region: str) -> Verdict:
    src, dst = _lake(probe, probe.topology.primary), _lake(probe, region)
    if not src or not dst:
        return unknown("a lake bucket name is not exported (see data.lake_bucket)")
    try:
        got = aws_read(f"GetBucketReplication {src}", lambda: probe.client("s3", probe.topology.primary)
                       .get_bucket_replication(Bucket=src))
    except Unreadable as exc:
        code = str(exc)
        if "ReplicationConfigurationNotFoundError" in code or not_found(exc):
            return not_ready(f"{src} has no replication configuration", "orchestrate up --all  (the replication stack)")
        return unknown(code)
    rules = got.get("ReplicationConfiguration", {}).get("Rules", [])
    arn = f"arn:aws:s3:::{dst}"
    hit = [r for r in rules if (r.get("Destination") or {}).get("Bucket") == arn]
    if not hit:
        return not_ready(f"no replication rule of {src} targets {dst}", "orchestrate up --all  (the replication stack)")
    if not any(r.get("Status") == "Enabled" for r in hit):
        return not_ready(f"the rule of {src} -> {dst} is disabled", "orchestrate up --all  (the replication stack)")
    return ready(f"{src} -> {dst} enabled (configuration; object replication status is not sampled)")
