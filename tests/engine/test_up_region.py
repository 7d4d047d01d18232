"""`orchestrate up --region eu-west-1` through the real engine: what lands in the backend, in the
DNS stack's config, and where the plain `pulumi` CLI finds that config."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest
import yaml

from tests.engine.helpers import ENGINE_DIR, OrchestrateProject, dev_topology

REGION_STACK = "dev-region-eu-west-1"


def _fake_aws() -> Any:
    spec = importlib.util.spec_from_file_location("fake_aws", ENGINE_DIR / "fake_aws_provider" / "fake_aws.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _types(resources: list[dict[str, Any]]) -> list[str]:
    return sorted(r["type"] for r in resources)


@pytest.fixture(scope="module")
def deployed(pulumi_tools, tmp_path_factory: pytest.TempPathFactory) -> tuple[OrchestrateProject, Any]:
    """The dev topology after `orchestrate --json up --region eu-west-1` (shared by this module)."""
    project = OrchestrateProject(pulumi_tools, tmp_path_factory.mktemp("up-region"), dev_topology())
    return project, project.json("up", "--yes", "--region", "eu-west-1")


def test_up_region_deploys_region_and_dns_and_wires_the_real_endpoint(deployed) -> None:
    project, up = deployed

    assert up["ok"] is True
    assert [list(w) for w in up["waves"]] == [[REGION_STACK], ["dev-dns"]]
    assert {name: s["outcome"] for name, s in up["stacks"].items()} == {REGION_STACK: "succeeded",
                                                                        "dev-dns": "succeeded"}

    # the region stack: one IotRegion with its children, all in eu-west-1
    region = project.resources(REGION_STACK)
    types = _types(region)
    for expected in ("iotplatform:region:IotRegion", "aws:s3/bucket:Bucket", "aws:s3/bucketVersioning:BucketVersioning",
                     "aws:kinesis/stream:Stream", "aws:iot/domainConfiguration:DomainConfiguration",
                     "aws:acm/certificate:Certificate", "aws:iot/policy:Policy"):
        assert expected in types, f"{expected} missing from {types}"
    assert types.count("aws:iot/thingType:ThingType") == len(dev_topology()["registry"]["thing_types"])
    # everything in eu-west-1, except the home region's backup vault and the key that signs its
    # backups, kept in the backup region
    regions = {r["urn"].rsplit("::", 1)[-1]: r["outputs"].get("region") for r in region if r["type"].startswith("aws:")}
    vault = {n for n in regions if "-backups" in n or "-backup-signing" in n}
    assert {n for n, r in regions.items() if r != "eu-west-1"} == vault
    assert {regions[n] for n in vault} == {dev_topology()["backup_region"]}
    protected = sorted(r["urn"].rsplit("::", 1)[-1] for r in region if r.get("protect"))
    assert protected == ["iot-dev-eu-west-1-backup-signing", "iot-dev-eu-west-1-backups", "iot-dev-eu-west-1-lake",
                         "iot-dev-eu-west-1-telemetry"]

    # what the region stack really output, read back through the orchestrator
    outputs = project.json("outputs", REGION_STACK)["outputs"]
    endpoint = outputs["iotEndpoint"]
    assert endpoint == _fake_aws().iot_endpoint("eu-west-1")

    # the DNS stack: one simple CNAME to that endpoint, through the backend...
    dns = project.resources("dev-dns")
    records = [r for r in dns if r["type"] == "aws:route53/record:Record"]
    assert len(records) == 1
    assert records[0]["outputs"]["records"] == [endpoint]
    assert records[0]["outputs"]["name"] == "iot.example.com"
    assert not any(r["type"] == "aws:route53/healthCheck:HealthCheck" for r in dns)
    # ...and in its config file, where the orchestrator wrote the wired value
    dns_config = yaml.safe_load((project.stacks / "Pulumi.dev-dns.yaml").read_text())["config"]
    targets = yaml.safe_load(dns_config["iot-platform:targets"])
    assert targets == [{"region": "eu-west-1", "endpoint": endpoint}]
    assert dns_config["iot-platform:routing"] == "single"

    # status agrees; the backup vault it names exists only in the stand-in provider's state, with no
    # S3 to list it: status says the vault is unreachable (exit 1), never that it is empty
    proc = project.run("status", "--json", expect=1)
    report = json.loads(proc.stdout)
    assert report["backup"]["state"] == "unreachable" and report["newest_backup_age_hours"] is None
    assert "the backup vault could not be read" in proc.stderr
    status = {s["name"]: s for s in report["stacks"]}
    assert status[REGION_STACK]["deployed"] and status["dev-dns"]["deployed"]
    assert status[REGION_STACK]["resource_count"] == len(region)
    assert status[REGION_STACK]["pending_operations"] == 0


def test_stack_config_lives_where_stackconfigdir_says_and_the_plain_cli_reads_it(deployed) -> None:
    project, _ = deployed

    assert yaml.safe_load((project.root / "Pulumi.yaml").read_text())["stackConfigDir"] == "stacks"
    assert sorted(project.config_files()) == ["Pulumi.dev-dns.yaml", f"Pulumi.{REGION_STACK}.yaml"]
    # nowhere else: not in the project root, not in the per-stack workspaces; the only other copies
    # are the run state backend's (`.orchestrate/stacks/`, the config that travels to other clones),
    # byte-equal to the files `up` left
    backend = project.root / ".orchestrate" / "stacks"
    strays = [p for p in project.root.rglob("Pulumi.*.yaml") if p.parent not in (project.stacks, backend)]
    assert strays == []
    copies = sorted(p.name for p in backend.glob("Pulumi.*.yaml"))
    assert copies == sorted(project.config_files())
    assert all((backend / n).read_bytes() == (project.stacks / n).read_bytes() for n in copies)

    shown = project.pulumi("config", "--stack", REGION_STACK, "--json")
    cli_view = {k: v["value"] for k, v in json.loads(shown.stdout).items()}
    in_file = yaml.safe_load((project.stacks / f"Pulumi.{REGION_STACK}.yaml").read_text())["config"]
    assert cli_view == {k: str(v) for k, v in in_file.items()}
    assert cli_view["aws:region"] == "eu-west-1"
    assert cli_view["iot-platform:component"] == "region"
    assert cli_view["iot-platform:region"] == "eu-west-1"
    assert cli_view["iot-platform:domain"] == "iot.example.com"
