"""The scheduled readiness check through the real engine: `up --all` of two regions deploys, in the
replication stack, the readiness function in the secondary with the outputs the region and DNS stacks
really produced, its schedule, its role and its alarm; a preview right after changes none of them
(the configuration `preview` builds is the one `up` built); then the deployed function's own
environment, pointed at moto, runs and publishes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import PASSPHRASE
from tests.engine.helpers import OrchestrateProject, dev_topology, reset_moto

PRIMARY, SECONDARY = "eu-west-1", "eu-central-1"
NAME = "iot-dev-replication-readiness"


@dataclass
class Deployed:
    project: OrchestrateProject
    endpoint: str
    report: dict[str, Any]


@pytest.fixture(scope="module")
def deployed(pulumi_tools, moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    reset_moto(moto_server)
    import boto3

    boto3.client("route53", region_name="us-east-1", endpoint_url=moto_server, aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_hosted_zone(Name="example.com", CallerReference="readiness")
    topology = dev_topology(secondaries=[SECONDARY], routing="failover", residency=[PRIMARY, SECONDARY])
    project = OrchestrateProject(pulumi_tools, tmp_path_factory.mktemp("readiness"), topology)
    report = project.json("up", "--yes", "--all", "--endpoint-url", moto_server,
                          env={"FAKE_AWS_MOTO_URL": moto_server})
    return Deployed(project, moto_server, report)


def _logical(resource: dict[str, Any]) -> str:
    return str(resource["urn"]).rsplit("::", 1)[-1]


def _readiness(d: Deployed) -> dict[str, dict[str, Any]]:
    return {_logical(r): r for r in d.project.resources("dev-replication") if _logical(r).startswith(NAME)}


def test_up_all_deploys_the_function_in_the_secondary_with_what_the_stacks_really_output(deployed: Deployed) -> None:
    assert deployed.report["ok"] is True, deployed.report
    found = _readiness(deployed)
    fn = found[f"{NAME}-function"]["outputs"]
    assert (fn["name"], fn["region"], fn["handler"]) == (
        "iot-dev-readiness", SECONDARY, "orchestrator.readiness.scheduled.handler")
    config = json.loads(fn["environment"]["variables"]["READINESS_CONFIG"])
    dns = deployed.project.json("outputs", "dev-dns")["outputs"]
    assert config["outputs"]["dev-dns"]["healthCheckIds"] == dns["healthCheckIds"]
    for region in (PRIMARY, SECONDARY):
        real = deployed.project.json("outputs", f"dev-region-{region}")["outputs"]
        assert config["outputs"][f"dev-region-{region}"]["streamName"] == real["streamName"]
        assert config["outputs"][f"dev-region-{region}"]["dataLakeBucketName"] == real["dataLakeBucketName"]
    assert config["topology"]["primary"] == PRIMARY and config["topology"]["secondaries"] == [SECONDARY]
    assert PASSPHRASE not in fn["environment"]["variables"]["READINESS_CONFIG"]  # the backend's secret
    assert found[f"{NAME}-schedule"]["outputs"]["scheduleExpression"] == "rate(5 minutes)"
    alarm = found[f"{NAME}-alarm"]["outputs"]
    assert (alarm["metricName"], alarm["treatMissingData"], alarm["region"]) == ("Ready", "breaching", SECONDARY)
    policy = json.loads(found[f"{NAME}-policy"]["outputs"]["policy"])
    [put] = [s for s in policy["Statement"] if s["Action"] == "cloudwatch:PutMetricData"]
    assert put["Condition"]["StringEquals"] == {"cloudwatch:namespace": "IotPlatform/Readiness",
                                                "aws:RequestedRegion": SECONDARY}
    checks = [s for s in policy["Statement"] if s["Sid"] == "HealthChecks"]
    assert checks and sorted(checks[0]["Resource"]) == sorted(
        f"arn:aws:route53:::healthcheck/{i}" for i in dns["healthCheckIds"].values())


def test_a_preview_right_after_up_changes_nothing_of_the_readiness_function(deployed: Deployed) -> None:
    preview = deployed.project.json("preview", "--all", "--endpoint-url", deployed.endpoint,
                                    env={"FAKE_AWS_MOTO_URL": deployed.endpoint})
    [replication] = [s for s in preview["stacks"] if s["stack"] == "dev-replication"]
    assert replication["error"] is None, replication["error"]
    changed = [(c["name"], c["op"], c["diffs"]) for c in replication["changes"]
               if NAME in c["urn"] and c["op"] != "same"]
    assert changed == [], changed


def test_the_deployed_environment_runs_the_handler_and_publishes(deployed: Deployed, tmp_path: Path) -> None:
    """The function as the engine deployed it: its archive and its READINESS_CONFIG (plus moto's URL)."""
    import boto3

    fn = _readiness(deployed)[f"{NAME}-function"]
    code = fn["inputs"]["code"]
    archive = Path(code.get("path") or code.get("assets", {}).get("path", ""))
    assert archive.is_file(), code
    app = tmp_path / "app"
    with zipfile.ZipFile(archive) as z:
        z.extractall(app)
    config = json.loads(fn["outputs"]["environment"]["variables"]["READINESS_CONFIG"])
    config["endpoint_url"] = deployed.endpoint
    env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": SECONDARY, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "READINESS_CONFIG": json.dumps(config)}
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]);"
              "from orchestrator.readiness import scheduled; print(json.dumps(scheduled.handler({}, None)))")
    proc = subprocess.run([sys.executable, "-I", "-c", script, str(app)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["datums"] > 30
    cw = boto3.client("cloudwatch", region_name=SECONDARY, endpoint_url=deployed.endpoint,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    metrics = cw.list_metrics(Namespace="IotPlatform/Readiness", MetricName="Ready")["Metrics"]
    assert [m["Dimensions"] for m in metrics] == [[{"Name": "Env", "Value": "dev"}]]
