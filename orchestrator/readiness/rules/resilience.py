"""What a failover must not depend on: the state backend and the KMS key for secrets outside the
primary (`operations.status.resilience_warnings`, as `status` warns), and data residency: every
member region, lake bucket, registry table replica and backup inside the allowed regions."""

from __future__ import annotations

from orchestrator.readiness.model import Scope, Verdict, not_ready, ready, rule, unknown
from orchestrator.readiness.probe import Probe, Unreadable, aws_read, plain


def _warnings(probe: Probe, *, backend: bool) -> list[str]:
    from orchestrator.operations.status import resilience_warnings

    def locate(bucket: str) -> str | None:
        try:
            got = aws_read(f"GetBucketLocation {bucket}", lambda: probe.client("s3", "us-east-1")
                           .get_bucket_location(Bucket=bucket))
        except Unreadable:
            return None
        return str(got.get("LocationConstraint") or "us-east-1")

    found = resilience_warnings(probe.topology, probe.backend_url if backend else None,
                                None if backend else probe.secrets_provider, "file:///not-checked-here",
                                bucket_region=locate, default_region=_default_region(probe))
    return [w for w in found if w.startswith("the state backend" if backend else "the KMS key")]


def _default_region(probe: Probe) -> str | None:
    from orchestrator.aws import session
    from orchestrator.errors import OrchestrateError

    try:
        return session(probe.ctx).region_name
    except OrchestrateError:
        return None


@rule("resilience.state_backend", "resilience", "the state backend is outside the primary", scope=Scope.ENV)
def state_backend(probe: Probe, _: str) -> Verdict:
    url = probe.backend_url or ""
    found = _warnings(probe, backend=True)
    if found:
        return not_ready(found[0].split(": during")[0],
                         "move the backend to another region (docs/runbooks/failover.md)")
    if url.startswith("s3://") or "region=" in url:
        return ready(f"{url.split('?')[0]} is not in {probe.topology.primary}")
    return ready(f"{url or 'local file backend'}: not in any AWS region")


@rule("resilience.kms_key", "resilience", "the KMS key for secrets is outside the primary", scope=Scope.ENV)
def kms_key(probe: Probe, _: str) -> Verdict:
    provider = probe.secrets_provider or ""
    if not provider.startswith("awskms://"):
        return ready(f"secrets provider {provider.split(':')[0] or 'passphrase'}: no KMS key to lose")
    found = _warnings(probe, backend=False)
    if found:
        return not_ready(found[0].split(": during")[0], "use a multi-Region key or one in another region")
    return ready("the KMS key is not in the primary")


@rule("residency.region", "resilience", "the region and its data stay inside residency")
def residency_region(probe: Probe, region: str) -> Verdict:
    allowed = probe.topology.residency
    if not allowed:
        return ready("no residency list: every region allowed")
    if region not in allowed:
        return not_ready(f"{region} is not in residency {', '.join(allowed)}", "remove it from the topology")
    bucket = plain(probe.region_outputs(region).get("dataLakeBucketName"))
    where = [region]
    if bucket:
        try:
            got = aws_read(f"GetBucketLocation {bucket}", lambda: probe.client("s3", "us-east-1")
                           .get_bucket_location(Bucket=bucket))
        except Unreadable as exc:
            return unknown(str(exc))
        loc = str(got.get("LocationConstraint") or "us-east-1")
        if loc not in allowed:
            return not_ready(f"lake bucket {bucket} is in {loc}, outside residency",
                             f"orchestrate up --region {region}")
        where.append(f"lake in {loc}")
    return ready("inside residency: " + ", ".join(where))


@rule("residency.replicas", "resilience", "every registry-table replica inside residency", scope=Scope.ENV)
def residency_replicas(probe: Probe, _: str) -> Verdict:
    allowed = probe.topology.residency
    if not probe.topology.multi_region:
        return ready("single-region: no replicas")
    name = f"iot-{probe.env}-registry-events"
    home = probe.topology.home_region
    try:
        table = aws_read(f"DescribeTable {name}", lambda: probe.client("dynamodb", home)
                         .describe_table(TableName=name))["Table"]
    except Unreadable as exc:
        return unknown(str(exc))
    regions = sorted({home, *(r.get("RegionName") for r in table.get("Replicas") or [] if r.get("RegionName"))})
    outside = [r for r in regions if allowed and r not in allowed]
    if outside:
        return not_ready(f"replicas outside residency: {', '.join(outside)}", "orchestrate up --all")
    if not table.get("Replicas"):
        return ready(f"{name} in {home}; the endpoint reports no replicas (moto creates no global tables)")
    return ready(f"replicas in {', '.join(regions)}")
