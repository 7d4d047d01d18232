"""The scheduled readiness function's configuration: `up` hands the replication stack what the rules
read (from the stacks it just brought up), `plan` shows the function, and nothing secret travels."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from orchestrator.engine.types import OutputValue
from orchestrator.readiness import deploy
from orchestrator.topology import parse
from tests.doubles import InMemoryEngine
from tests.orchestrator.conftest import multi_region

KEY = "iot-platform:readiness"


def _topology(**extra: Any) -> Any:
    return parse({"env": "dev", "domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1",
                  "secondaries": ["eu-central-1"], "routing": "failover", "failover_control": "arc",
                  "residency": ["eu-west-1", "eu-central-1", "eu-north-1"], "backup_region": "eu-north-1",
                  "home_region": "eu-central-1", **extra}, env="dev")


def test_the_topology_document_parses_back_to_the_same_members_modes_and_regions() -> None:
    top = _topology(registry={"thing_types": ["thermostat"]}, tags={"Team": "iot"})
    doc = deploy.topology_document(top)
    back = parse(json.loads(json.dumps(doc)), env="dev")
    for attr in ("env", "domain", "hosted_zone", "primary", "secondaries", "routing", "failover_control",
                 "residency", "home_region", "backup_region", "regions", "multi_region"):
        assert getattr(back, attr) == getattr(top, attr), attr
    assert "registry" not in doc and "tags" not in doc  # what no rule reads stays out of the 4 KB


def test_only_the_outputs_the_rules_read_and_never_a_secret_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRATE_BACKUP_DEST", raising=False)
    monkeypatch.delenv("ORCHESTRATE_BACKUP_SIGNING_KEY", raising=False)
    top = _topology()
    outputs = {
        "dev-region-eu-west-1": {"streamName": OutputValue("s1"), "iotEndpoint": OutputValue("x-ats.iot"),
                                 "certificateArn": OutputValue("arn:aws:acm:eu-west-1:1:certificate/a", secret=True)},
        "dev-region-eu-central-1": {"streamName": OutputValue("s2"), "backupBucketName": OutputValue("vault"),
                                    "backupSigningKey": OutputValue("awskms:arn:aws:kms:eu-central-1:1:key/k")},
        "dev-dns": {"healthCheckIds": OutputValue({"eu-west-1": "h1"}), "records": OutputValue(["a", "b"]),
                    "controlPanelArn": OutputValue("arn:cp")},
    }
    config = deploy.function_config(top, outputs.get, backend_url="s3://u:p@state?region=eu-north-1",
                                    secrets_provider="awskms://alias/k?region=eu-north-1")
    assert config["outputs"] == {"dev-region-eu-west-1": {"streamName": "s1"},
                                 "dev-region-eu-central-1": {"streamName": "s2"},
                                 "dev-dns": {"healthCheckIds": {"eu-west-1": "h1"}, "controlPanelArn": "arn:cp"}}
    # the vault and key come from the home region's stack (eu-central-1 here, not the primary)
    assert (config["backup_dest"], config["signing_key"]) == ("s3://vault/registry",
                                                              "awskms:arn:aws:kms:eu-central-1:1:key/k")
    assert config["backend_url"] == "s3://state?region=eu-north-1"
    assert config["secrets_provider"] == "awskms://alias/k?region=eu-north-1"
    monkeypatch.setenv("ORCHESTRATE_BACKUP_DEST", "s3://elsewhere/registry")
    assert deploy.function_config(top, outputs.get, backend_url=None, secrets_provider=None)["backup_dest"] == \
        "s3://elsewhere/registry"


def _replication_config(engine: InMemoryEngine) -> dict[str, Any]:
    ups = [c for c in engine.calls if c.operation == "up" and c.stack == "dev-replication"]
    assert ups, engine.ops()
    return json.loads(ups[-1].config[KEY])


def test_up_hands_the_replication_stack_the_outputs_of_the_stacks_it_just_brought_up(
        project: Path, engine: InMemoryEngine, run: Callable[..., Result]) -> None:
    multi_region(project, "dev", ["eu-central-1"])
    engine.output_overrides["dev-dns"] = {"healthCheckIds": {"eu-west-1": "hc-1", "eu-central-1": "hc-2"}}
    result = run("up", "--all", "--yes")
    assert result.exit_code == 0, result.output
    config = _replication_config(engine)
    assert config["env"] == "dev" and config["topology"]["primary"] == "eu-west-1"
    assert config["outputs"]["dev-dns"] == {"healthCheckIds": {"eu-west-1": "hc-1", "eu-central-1": "hc-2"}}
    deployed = engine.outputs("dev-region-eu-central-1") or {}
    assert config["outputs"]["dev-region-eu-central-1"] == {
        k: deployed[k].value for k in deploy.REGION_KEYS if k in deployed}
    assert set(config["outputs"]) == {"dev-region-eu-west-1", "dev-region-eu-central-1", "dev-dns"}


@pytest.mark.slow
def test_plan_shows_the_readiness_function_in_the_first_secondary(
        project: Path, run: Callable[..., Result]) -> None:
    multi_region(project, "dev", ["eu-central-1", "eu-north-1"])
    result = run("plan", "--all", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    stacks = doc.get("data", doc)["stacks"]
    names = {r["name"]: r["type"] for r in stacks["dev-replication"]["resources"]}
    assert names["iot-dev-replication-readiness-function"] == "aws:lambda/function:Function"
    assert names["iot-dev-replication-readiness-alarm"] == "aws:cloudwatch/metricAlarm:MetricAlarm"
    assert names["iot-dev-replication-readiness-schedule"] == "aws:cloudwatch/eventRule:EventRule"


def test_the_ci_apply_role_may_create_the_functions_and_pass_them_only_program_roles() -> None:
    """The replication stack declares Lambda functions (the replicator, the readiness check): the apply
    role needs lambda:* and may pass a role under the topology's path to Lambda, and to nothing else new."""
    from orchestrator.operations import bootstrap as op

    spec = op.BootstrapSpec("dev", "org/repo", "eu-north-1", "123456789012")
    apply = next(r for r in op.role_specs(spec, "k") if r.key == "apply").policy
    (manage,) = [s for s in apply["Statement"] if s["Sid"] == "ManageDeclaredServices"]
    assert "lambda:*" in manage["Action"]
    (passing,) = [s for s in apply["Statement"] if s["Sid"] == "PassProgramRoles"]
    assert passing["Resource"] == "arn:aws:iam::123456789012:role/*"
    assert sorted(passing["Condition"]["StringEquals"]["iam:PassedToService"]) == [
        "events.amazonaws.com", "firehose.amazonaws.com", "iot.amazonaws.com", "lambda.amazonaws.com",
        "s3.amazonaws.com"]
