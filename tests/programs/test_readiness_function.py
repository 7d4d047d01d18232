"""The scheduled readiness check in the replication program: the function (packaged from its import
closure, tested as deployed), its 5-minute schedule, its read-only role, and the overall alarm."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from orchestrator.readiness import deploy
from orchestrator.readiness.scheduled import NAMESPACE
from orchestrator.topology import parse
from programs import package
from programs.contract import ReadinessNames
from programs.mocks import Evaluation, evaluate
from tests.lambda_runtime import runtime_dir
from tests.programs.conftest import PRIMARY, SECONDARY, THIRD, lake, policy_attached_to, replication_args

NAME = "iot-dev-replication-readiness"
ACCOUNT = "123456789012"
FUNCTION = "aws:lambda/function:Function"
VAULT = "iot-dev-vault-7"
KEY = f"arn:aws:kms:{PRIMARY}:{ACCOUNT}:key/0b1e2c3d"


def topology(routing: str = "failover", control: str = "dns") -> Any:
    return parse({"env": "dev", "domain": "iot.example.com", "hosted_zone": "example.com", "primary": PRIMARY,
                  "secondaries": [SECONDARY, THIRD], "routing": routing, "failover_control": control,
                  "residency": [PRIMARY, SECONDARY, THIRD], "backup_region": THIRD}, env="dev")


def outputs(top: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {
        f"dev-region-{r}": {"streamName": f"iot-dev-{r}-telemetry", "dataLakeBucketName": lake(r).bucket_name,
                            "domainConfigurationName": f"iot-dev-{r}-domain", "iotEndpoint": f"x-ats.iot.{r}",
                            "certificateArn": f"arn:aws:acm:{r}:{ACCOUNT}:certificate/c-{r}"}
        for r in top.regions}
    found[f"dev-region-{PRIMARY}"].update(backupBucketName=VAULT, backupSigningKey=f"awskms:{KEY}")
    found["dev-dns"] = {"healthCheckIds": {PRIMARY: "hc-primary", SECONDARY: "hc-secondary"}, "fqdn": "iot.example.com"}
    if top.failover_control.value == "arc":
        found["dev-dns"].update(routingControls={r: f"arn:aws:route53-recovery-control::{ACCOUNT}:rc/{r}"
                                                 for r in top.regions},
                                clusterEndpoints=[{"Region": PRIMARY, "Endpoint": "https://a.example/v1"}],
                                controlPanelArn=f"arn:aws:route53-recovery-control::{ACCOUNT}:cp/p",
                                safetyRule={"threshold": 1, "waitPeriodMs": 5000})
    return found


def config(routing: str = "failover", control: str = "dns") -> str:
    top = topology(routing, control)
    return deploy.encode(deploy.function_config(top, outputs(top).get, backend_url="s3://state?region=eu-north-1",
                                                secrets_provider=None))


@cache
def scheduled(routing: str = "failover", control: str = "dns") -> Evaluation:
    args = replace(replication_args(SECONDARY, THIRD), routing=routing, readiness=config(routing, control))
    return evaluate(args, stack="dev-replication")


def readiness_resources(ev: Evaluation) -> dict[str, str]:
    return {r.name: r.type for r in ev.resources if r.name.startswith(NAME)}


@pytest.mark.slow
def test_without_a_configuration_there_is_no_readiness_function() -> None:
    ev = evaluate(replace(replication_args(SECONDARY, THIRD), routing="failover"), stack="dev-replication")
    assert readiness_resources(ev) == {}


@pytest.mark.slow
@pytest.mark.parametrize("routing", ["single", "failover", "latency"])
def test_one_function_in_the_first_secondary_never_the_primary_with_its_schedule_role_and_alarm(routing: str) -> None:
    ev = scheduled(routing)
    assert readiness_resources(ev) == {
        NAME: "iotplatform:readiness:ScheduledReadiness",
        f"{NAME}-role": "aws:iam/role:Role", f"{NAME}-policy": "aws:iam/rolePolicy:RolePolicy",
        f"{NAME}-logs": "aws:cloudwatch/logGroup:LogGroup", f"{NAME}-function": FUNCTION,
        f"{NAME}-invoke": "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
        f"{NAME}-schedule": "aws:cloudwatch/eventRule:EventRule",
        f"{NAME}-permission": "aws:lambda/permission:Permission",
        f"{NAME}-target": "aws:cloudwatch/eventTarget:EventTarget",
        f"{NAME}-alarm": "aws:cloudwatch/metricAlarm:MetricAlarm",
    }
    regional = [r for r in ev.resources if r.name.startswith(NAME) and "region" in r.inputs]
    assert {r.inputs["region"] for r in regional} == {SECONDARY}
    assert ev.named(NAME).parent == "iot-dev-replication"


@pytest.mark.slow
def test_every_five_minutes_a_missed_run_is_not_retried() -> None:
    ev = scheduled()
    names = ReadinessNames.of("dev")
    rule = ev.named(f"{NAME}-schedule").inputs
    assert (rule["name"], rule["scheduleExpression"]) == (names.schedule, "rate(5 minutes)")
    target = ev.named(f"{NAME}-target").inputs
    assert target["rule"] == names.schedule
    assert target["arn"] == f"arn:aws:lambda:{SECONDARY}:{ACCOUNT}:function:{names.function}"
    assert target["retryPolicy"] == {"maximumEventAgeInSeconds": 300, "maximumRetryAttempts": 0}
    permission = ev.named(f"{NAME}-permission").inputs
    assert (permission["action"], permission["principal"], permission["sourceArn"]) == (
        "lambda:InvokeFunction", "events.amazonaws.com", f"arn:aws:events:{SECONDARY}:{ACCOUNT}:rule/{names.schedule}")
    invoke = ev.named(f"{NAME}-invoke").inputs
    assert (invoke["maximumRetryAttempts"], invoke["maximumEventAgeInSeconds"]) == (0, 300)
    fn = ev.named(f"{NAME}-function").inputs
    assert fn["timeout"] < 300  # two evaluations never overlap


def test_the_overall_alarm_breaches_on_not_ready_and_on_missing_data() -> None:
    alarm = scheduled().named(f"{NAME}-alarm").inputs
    assert alarm["name"] == "iot-dev-not-ready"
    assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"], alarm["statistic"]) == (
        NAMESPACE, "Ready", {"Env": "dev"}, "Minimum")
    assert (alarm["comparisonOperator"], alarm["threshold"], alarm["treatMissingData"]) == (
        "LessThanThreshold", 1, "breaching")
    assert (alarm["period"], alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (300, 3, 2)
    assert "orchestrate readiness --env dev" in alarm["alarmDescription"]


def _expected_policy(*, arc: bool = False) -> dict[str, Any]:
    regions = sorted([PRIMARY, SECONDARY, THIRD])
    in_regions = {"StringEquals": {"aws:RequestedRegion": regions}}
    logs = f"arn:aws:logs:{SECONDARY}:{ACCOUNT}:log-group:/aws/lambda/iot-dev-readiness"
    statements: list[dict[str, Any]] = [
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{logs}:*"},
        {"Sid": "PublishReadiness", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": "IotPlatform/Readiness",
                                        "aws:RequestedRegion": SECONDARY}}},
        {"Sid": "ReadMetrics", "Effect": "Allow", "Action": "cloudwatch:GetMetricStatistics", "Resource": "*",
         "Condition": in_regions},
        {"Sid": "Quotas", "Effect": "Allow", "Action": "servicequotas:ListServiceQuotas", "Resource": "*",
         "Condition": in_regions},
        {"Sid": "RegistryListings", "Effect": "Allow", "Action": [
            "iot:DescribeEventConfigurations", "iot:ListCertificates", "iot:ListPolicies", "iot:ListTargetsForPolicy",
            "iot:ListThingGroups", "iot:ListThingTypes", "iot:ListThings", "iot:ListThingsInThingGroup"],
         "Resource": "*", "Condition": in_regions},
        {"Sid": "RegistryReads", "Effect": "Allow", "Action": [
            "iot:DescribeDomainConfiguration", "iot:DescribeThingGroup", "iot:GetPolicy", "iot:GetThingShadow",
            "iot:GetTopicRule", "iot:ListNamedShadowsForThing", "iot:ListThingPrincipals"],
         "Resource": [f"arn:aws:iot:{r}:{ACCOUNT}:*" for r in regions]},
        {"Sid": "Certificates", "Effect": "Allow", "Action": "acm:DescribeCertificate",
         "Resource": [f"arn:aws:acm:{r}:{ACCOUNT}:certificate/*" for r in regions]},
        {"Sid": "Streams", "Effect": "Allow", "Action": "kinesis:DescribeStreamSummary",
         "Resource": [f"arn:aws:kinesis:{r}:{ACCOUNT}:stream/iot-dev-{r}-telemetry" for r in regions]},
        {"Sid": "Lakes", "Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:GetBucketVersioning"],
         "Resource": sorted(lake(r).bucket_arn for r in regions)},
        {"Sid": "LakeReplication", "Effect": "Allow", "Action": "s3:GetReplicationConfiguration",
         "Resource": lake(PRIMARY).bucket_arn},
        {"Sid": "RegistryTable", "Effect": "Allow", "Action": "dynamodb:DescribeTable",
         "Resource": [f"arn:aws:dynamodb:{r}:{ACCOUNT}:table/iot-dev-registry-events" for r in regions]},
        {"Sid": "ReplicationFunctions", "Effect": "Allow", "Action": "lambda:GetFunction",
         "Resource": [f"arn:aws:lambda:{r}:{ACCOUNT}:function:iot-dev-replicator-{r}" for r in (SECONDARY, THIRD)]},
        {"Sid": "DeadLetters", "Effect": "Allow", "Action": ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
         "Resource": [f"arn:aws:sqs:{r}:{ACCOUNT}:iot-dev-replication-dlq-{r}" for r in (SECONDARY, THIRD)]},
        {"Sid": "Reconciliations", "Effect": "Allow", "Action": "dynamodb:GetItem",
         "Resource": [f"arn:aws:dynamodb:{r}:{ACCOUNT}:table/iot-dev-replication-applied-{r}"
                      for r in (SECONDARY, THIRD)]},
        {"Sid": "HealthChecks", "Effect": "Allow", "Action": ["route53:GetHealthCheck", "route53:GetHealthCheckStatus"],
         "Resource": ["arn:aws:route53:::healthcheck/hc-primary", "arn:aws:route53:::healthcheck/hc-secondary"]},
    ]
    if arc:
        statements.append({"Sid": "RoutingControls", "Effect": "Allow",
                           "Action": ["route53-recovery-cluster:GetRoutingControlState",
                                      "route53-recovery-cluster:ListRoutingControls"], "Resource": "*"})
    statements += [
        {"Sid": "BucketRegions", "Effect": "Allow", "Action": "s3:GetBucketLocation",
         "Resource": ["arn:aws:s3:::iot-dev-vault-7", "arn:aws:s3:::state"]},
        {"Sid": "ListBackups", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{VAULT}",
         "Condition": {"StringLike": {"s3:prefix": "registry/*"}}},
        {"Sid": "ReadBackups", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{VAULT}/registry/*"},
        {"Sid": "VerifyBackups", "Effect": "Allow", "Action": "kms:Verify", "Resource": KEY},
    ]
    return {"Version": "2012-10-17", "Statement": statements}


@pytest.mark.slow
@pytest.mark.parametrize("control", ["dns", "arc"])
def test_the_role_may_read_what_the_rules_read_and_write_only_its_metrics(control: str) -> None:
    ev = scheduled("failover", control)
    role = ev.named(f"{NAME}-role")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"}
    assert policy_attached_to(ev, role.name) == _expected_policy(arc=control == "arc")
    writes = [a for a in _actions(policy_attached_to(ev, role.name))
              if not a.split(":")[1].startswith(("Get", "List", "Describe", "Verify"))]
    assert writes == ["logs:CreateLogStream", "logs:PutLogEvents", "cloudwatch:PutMetricData"]


def _actions(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for s in doc["Statement"]:
        out.extend([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return out


def test_a_signing_key_named_in_secrets_manager_is_read_there_and_only_that_secret() -> None:
    from programs import policies

    doc = policies.readiness(
        account_id=ACCOUNT, env="dev", regions=[PRIMARY], function_regions=[], table_regions=[PRIMARY],
        lake_bucket_arns=[lake(PRIMARY).bucket_arn], primary_lake_arn=lake(PRIMARY).bucket_arn,
        stream_names={PRIMARY: "s"}, log_group_arn="arn:aws:logs:x", metric_namespace=NAMESPACE,
        metric_region=SECONDARY, signing_key="secretsmanager:backup-hmac", key_region=PRIMARY)
    verify = [s for s in doc["Statement"] if s["Sid"] == "VerifyBackups"]
    assert verify == [{"Sid": "VerifyBackups", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                       "Resource": f"arn:aws:secretsmanager:{PRIMARY}:{ACCOUNT}:secret:backup-hmac-??????"}]


def test_the_function_runs_the_cli_rules_configured_by_its_environment_within_lambdas_4_kb() -> None:
    ev = scheduled()
    fn = ev.named(f"{NAME}-function").inputs
    assert (fn["name"], fn["runtime"], fn["handler"]) == (
        "iot-dev-readiness", "python3.12", "orchestrator.readiness.scheduled.handler")
    assert fn["role"].startswith(f"arn:aws:iam::{ACCOUNT}:role/") and f"{NAME}-role" in fn["role"]
    variables = fn["environment"]["variables"]
    assert list(variables) == ["READINESS_CONFIG"] and variables["READINESS_CONFIG"] == config()
    assert sum(len(k) + len(v) for k, v in variables.items()) <= 4096
    sent = json.loads(variables["READINESS_CONFIG"])
    assert sent["outputs"]["dev-dns"] == {"healthCheckIds": {PRIMARY: "hc-primary", SECONDARY: "hc-secondary"}}
    assert (sent["backup_dest"], sent["signing_key"]) == (f"s3://{VAULT}/registry", f"awskms:{KEY}")


@pytest.mark.slow
def test_a_large_configuration_is_packed_and_the_handler_reads_back_exactly_what_up_built() -> None:
    from orchestrator.readiness.scheduled import PACKED, unpack

    big = json.loads(config("latency", "arc"))
    for r in ("eu-west-2", "eu-west-3", "us-east-1", "us-east-2", "us-west-2"):  # eight regions' worth of ARNs
        big["outputs"][f"dev-region-{r}"] = {
            "streamName": f"iot-dev-{r}-telemetry", "domainConfigurationName": f"iot-dev-{r}-domain",
            "dataLakeBucketName": f"iot-dev-lake-{r}-20240101000000000000000001",
            "certificateArn": f"arn:aws:acm:{r}:{ACCOUNT}:certificate/0b1e2c3d-1111-2222-3333-444444444444"}
        big["outputs"]["dev-dns"]["healthCheckIds"][r] = f"{r}-0000-1111-2222-333333333333"
        big["outputs"]["dev-dns"]["routingControls"][r] = (
            f"arn:aws:route53-recovery-control::{ACCOUNT}:controlpanel/{'a' * 32}/routingcontrol/{r}")
    big["outputs"]["dev-dns"]["clusterEndpoints"] = [
        {"Region": r, "Endpoint": f"https://0123abcd.route53-recovery-cluster.{r}.amazonaws.com/v1"}
        for r in ("us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-2")]
    text = deploy.encode(big)
    assert len(text) > 4096
    args = replace(replication_args(SECONDARY, THIRD), routing="latency", readiness=text)
    value = evaluate(args, stack="dev-replication").named(f"{NAME}-function").inputs[
        "environment"]["variables"]["READINESS_CONFIG"]
    assert value.startswith(PACKED) and len("READINESS_CONFIG") + len(value) <= 4096
    assert unpack(value) == big and unpack(config()) == json.loads(config())


@pytest.mark.slow
def test_an_environment_over_4_kb_even_packed_is_refused_naming_its_size() -> None:
    import random

    rng = random.Random(7)  # incompressible values
    big = json.loads(config())
    big["outputs"]["dev-dns"]["healthCheckIds"] = {f"r{i}": f"{rng.getrandbits(240):060x}" for i in range(120)}
    args = replace(replication_args(SECONDARY, THIRD), routing="failover", readiness=deploy.encode(big))
    with pytest.raises(Exception, match=r"environment is \d+ bytes; Lambda allows 4096"):
        evaluate(args, stack="dev-replication")


# -- what AWS deploys, tested as deployed ---------------------------------------------------------
def deployed_zip(ev: Evaluation) -> Path:
    fn = ev.named(f"{NAME}-function").inputs
    path = Path(fn["code"]["fileArchive"])  # the mocks record a FileArchive by its path
    import base64
    import hashlib

    assert fn["sourceCodeHash"] == base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()
    return path


def test_the_zip_holds_the_handler_and_its_import_closure_and_nothing_else() -> None:
    path = deployed_zip(scheduled())
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    files, lazy = package.closure(handler=package.READINESS_HANDLER, projects=package.READINESS_PROJECTS)
    assert names == files
    assert "orchestrator/readiness/scheduled.py" in names and "programs/contract.py" in names
    assert {f for f in names if f.startswith("orchestrator/readiness/rules/")} == {
        f"orchestrator/readiness/rules/{m}.py" for m in (
            "__init__", "backups", "data", "domain", "quotas", "registry", "replication", "resilience", "routing")}
    assert not any(f.startswith(("orchestrator/cli/", "orchestrator/engine/", "orchestrator/drill/"))
                   or (f.startswith("programs/") and f not in ("programs/__init__.py", "programs/contract.py"))
                   for f in names)
    # what the runtime lacks is imported only inside functions the scheduled evaluation never calls
    assert lazy == ["ruamel <- orchestrator/topology.py", "yaml <- orchestrator/registry/quotas.py",
                    "yaml <- orchestrator/topology.py"]




@pytest.mark.slow
def test_every_module_of_the_zip_imports_in_a_clean_interpreter_with_only_the_lambda_runtime(tmp_path: Path) -> None:
    path = deployed_zip(scheduled())
    app = tmp_path / "app"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(app)
        modules = [n[:-3].replace("/", ".").removesuffix(".__init__") for n in archive.namelist()]
    script = (
        "import importlib, json, sys\n"
        "sys.path[:0] = sys.argv[1:3]\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from orchestrator.readiness import evaluate, model, scheduled\n"
        "import orchestrator.readiness.rules\n"
        "assert callable(scheduled.handler) and len(model.RULES) >= 30\n"
        "files = {n: m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in ('orchestrator', 'programs')}\n"
        "assert all(f.startswith(sys.argv[1]) for f in files.values()), files\n"
        "print(json.dumps({'rules': len(model.RULES), 'foreign': sorted({n.split('.')[0] for n in sys.modules}"
        " & {'click', 'pulumi', 'pulumi_aws', 'yaml', 'ruamel', 'cryptography', 'site'})}))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(app), str(runtime_dir(tmp_path))],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["foreign"] == [] and out["rules"] >= 30
