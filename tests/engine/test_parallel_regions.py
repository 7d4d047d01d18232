"""`up --all` of three region stacks in parallel through the real engine: each in its own
workspace, nothing crossed between them, DNS with three latency records and health checks."""

from __future__ import annotations

import yaml

from tests.engine.helpers import OrchestrateProject, dev_topology, gate_children

REGIONS = ["eu-west-1", "eu-central-1", "eu-north-1"]
STACKS = [f"dev-region-{r}" for r in REGIONS]


def _urn_stack(urn: str) -> str:
    return urn.split("::", 2)[0].removeprefix("urn:pulumi:")


SLOW = "lake-versioning"  # one create per region stack made to take SLOW_S seconds
SLOW_S = 4


def _span(events: list[dict], stack: str) -> tuple[float, float]:
    """When the stack's slow create began and ended (provider log)."""
    mine = [e for e in events if SLOW in e["urn"] and _urn_stack(e["urn"]) == stack]
    begin = [e["time"] for e in mine if e["op"] == "create-begin"]
    end = [e["time"] for e in mine if e["op"] == "create"]
    assert len(begin) == len(end) == 1, mine
    return begin[0], end[0]


def test_up_all_three_regions_in_parallel_stay_consistent(make_project, moto_server: str) -> None:
    project: OrchestrateProject = make_project(dev_topology(
        secondaries=REGIONS[1:], routing="latency", residency=REGIONS))

    report = project.json("up", "--yes", "--all", "--parallel", "3", "--endpoint-url", moto_server,
                          env={"FAKE_AWS_DELAY": str(SLOW_S), "FAKE_AWS_DELAY_ON": SLOW})

    assert report["ok"] is True, report
    assert sorted(report["waves"][0]) == sorted(STACKS)
    assert {n: s["outcome"] for n, s in report["stacks"].items()} == {
        **dict.fromkeys(STACKS, "succeeded"), "dev-dns": "succeeded", "dev-replication": "succeeded"}

    # they really ran at once: the three slow creates were in progress together (one after the
    # other they would take 3 x SLOW_S; the rest of a stack's create phase takes well under 1 s,
    # so the stacks' creates alone can finish one before the next begins)
    events = project.provider_events()
    spans = {s: _span(events, s) for s in STACKS}
    assert max(begin for begin, _ in spans.values()) < min(end for _, end in spans.values()), spans

    endpoints = {}
    for region, stack in zip(REGIONS, STACKS, strict=True):
        # one workspace per stack, whose Pulumi.yaml points back at stacks/
        workspace = project.root / ".orchestrate" / "workspaces" / stack
        assert yaml.safe_load((workspace / "Pulumi.yaml").read_text())["stackConfigDir"] == "../../../stacks"
        # its own config...
        config = yaml.safe_load((project.stacks / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert (config["aws:region"], config["iot-platform:region"]) == (region, region)
        # ...and its own resources: all of this stack, all named for this region
        resources = project.export(stack)["deployment"]["resources"]
        assert {_urn_stack(r["urn"]) for r in resources} == {stack}
        named = [r["urn"].rsplit("::", 1)[-1] for r in resources if r["type"].startswith(("aws:", "iotplatform:"))]
        assert named and all(n.startswith(f"iot-dev-{region}") for n in named), named
        assert len(named) == len(set(named))
        outputs = project.json("outputs", stack)["outputs"]
        assert outputs["region"] == region
        endpoints[region] = outputs["iotEndpoint"]
    assert len(set(endpoints.values())) == 3

    # DNS: three latency records, one per region, each with its own health check
    dns = project.resources("dev-dns")
    records = [r["outputs"] for r in dns if r["type"] == "aws:route53/record:Record"]
    checks = {r["id"]: r["outputs"] for r in dns if r["type"] == "aws:route53/healthCheck:HealthCheck"}
    assert sorted(r["setIdentifier"] for r in records) == sorted(REGIONS)
    for record in records:
        region = record["setIdentifier"]
        assert record["latencyRoutingPolicies"] == [{"region": region}]
        assert record["records"] == [endpoints[region]]
        assert gate_children(checks, record["healthCheckId"]) == (endpoints[region], f"iot-dev-canary-{region}-mqtt")
    assert len(checks) == 9  # per region: TCP, canary alarm, the CALCULATED gate the record uses

    # replication: the primary lake to both secondaries
    replication = project.resources("dev-replication")
    [config] = [r["outputs"] for r in replication if r["type"].endswith("BucketReplicationConfig")]
    assert sorted(rule["id"] for rule in config["rules"]) == sorted(f"to-{r}" for r in REGIONS[1:])
