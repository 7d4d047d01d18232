"""The scheduled readiness function tested as deployed, against a real moto server.

- The zip and the READINESS_CONFIG the replication program hands Lambda, unzipped and run in a fresh
  interpreter (`python -I -S`) whose path holds only that code and what Lambda's Python runtime has
  (boto3 and its dependencies): its findings equal those of the CLI's evaluation of the same world,
  row by row (so no rule breaks there for a module the zip lacks), and its metrics read back.
- The role the program declares allows every call one evaluation makes (and its PutMetricData), on
  the resources it makes them on, in the regions it makes them in; and it allows nothing the
  evaluation does not call (paths a clean world does not reach are named).
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext
from orchestrator.readiness import deploy, evaluate
from orchestrator.readiness.probe import Probe, Settings
from orchestrator.readiness.scheduled import NAMESPACE, run
from orchestrator.topology import parse
from programs.contract import LakeRef, ReplicationArgs, rule_name
from programs.mocks import Evaluation
from programs.mocks import evaluate as evaluate_program
from tests.lambda_runtime import runtime_dir
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.readiness_world import ENV, ReadyWorld, build

NAME = "iot-dev-replication-readiness"
ACCOUNT = "123456789012"
SECRET_KEY = "sched-secret-key-Zq8Vd2"  # the function's credentials: never in its output or logs
BACKEND = f"s3://state-bucket?region={THIRD}"

DRIVER = """
import json, logging, sys
app, runtime = sys.argv[1:3]
sys.path[:0] = [app, runtime]
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(name)s %(message)s")
from orchestrator.readiness import scheduled
out = scheduled.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
print("RESULT " + json.dumps(out))
print("FOREIGN " + json.dumps(sorted({n.split(".")[0] for n in sys.modules}
                                     & {"click", "pulumi", "pulumi_aws", "yaml", "ruamel", "cryptography", "site"})))
"""


@pytest.fixture
def world(ctx: AwsContext) -> ReadyWorld:
    w = build(ctx)
    # the home stack's vault and signing key, as the function's configuration takes them
    bucket = w.backup_dest.split("/")[2]
    w.outputs[f"{ENV}-region-{SRC}"].update(backupBucketName=bucket, backupSigningKey=w.signing_key)
    return w


def program(w: ReadyWorld, config: dict[str, Any]) -> Evaluation:
    def lake(region: str) -> LakeRef:
        name = w.outputs[f"{ENV}-region-{region}"]["dataLakeBucketName"]
        return LakeRef(region, name, f"arn:aws:s3:::{name}")

    args = ReplicationArgs(env=ENV, primary=lake(SRC), secondaries=(lake(DST),), residency=(SRC, DST, THIRD),
                           routing="failover", readiness=deploy.encode(config))
    return evaluate_program(args, stack=f"{ENV}-replication")


def configuration(w: ReadyWorld, **extra: Any) -> dict[str, Any]:
    return {**deploy.function_config(w.topology, w.outputs.get, backend_url=BACKEND, secrets_provider=None),
            **extra}


def cli_probe(w: ReadyWorld, **kw: Any) -> Probe:
    """The probe `orchestrate readiness` builds (`run.probe_for`), on the same world."""
    return Probe(env=ENV, topology=w.topology, ctx=w.ctx, outputs=lambda n: w.outputs.get(n), settings=Settings(),
                 backend_url=BACKEND, secrets_provider=None, backup_dest=w.backup_dest, signing_key=w.signing_key,
                 **kw)




def test_the_deployed_function_finds_what_the_cli_finds_and_its_metrics_read_back(
        world: ReadyWorld, endpoint: str, tmp_path: Path) -> None:
    # one fault, so both evaluations have a NOT READY row to agree on
    world.c("iot", DST).disable_topic_rule(ruleName=rule_name(ENV, "registry-events", DST))
    ev = program(world, configuration(world, endpoint_url=endpoint))
    fn = ev.named(f"{NAME}-function").inputs
    app = tmp_path / "app"
    with zipfile.ZipFile(fn["code"]["fileArchive"]) as archive:  # the mocks record a FileArchive by its path
        archive.extractall(app)
    env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": fn["region"], "AWS_DEFAULT_REGION": fn["region"],
           "AWS_ACCESS_KEY_ID": "AKIASCHEDTESTKEY0001", "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           **fn["environment"]["variables"]}
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", DRIVER, str(app), str(runtime_dir(tmp_path))],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines()
             if line.startswith(("RESULT ", "FOREIGN "))}
    result, foreign = json.loads(lines["RESULT"]), json.loads(lines["FOREIGN"])
    assert foreign == []
    assert SECRET_KEY not in proc.stdout + proc.stderr and SECRET_KEY not in json.dumps(fn["environment"])

    # the CLI's evaluation of the same world (no overlay: the function has none either)
    report = evaluate(cli_probe(world))
    cli_rows = sorted(f"{f.region} {f.rule}: {f.status.value}" for f in report.not_ready())
    assert sorted(result["not_ready"]) == cli_rows
    assert f"{DST} data.replication_rules: NOT READY" in result["not_ready"] and result["ready"] is False
    assert not any("rule failed" in f.evidence for r in report.regions for f in r.findings)
    published = [f for r in report.regions for f in r.findings if f.status.value != "N/A"]
    assert result["datums"] == len(published) + len(report.regions) + 1

    cloudwatch = world.c("cloudwatch", fn["region"])

    def latest(metric: str, **dims: str) -> float | None:
        now = datetime.now(timezone.utc)
        got = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE, MetricName=metric, StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=1), Period=60, Statistics=["Minimum"],
            Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()])["Datapoints"]
        return min(p["Minimum"] for p in got) if got else None

    assert latest("Ready", Env=ENV) == 0.0
    assert latest("RegionReady", Env=ENV, Region=DST) == 0.0
    assert latest("RuleReady", Env=ENV, Region=DST, Rule="data.replication_rules") == 0.0
    assert latest("RuleReady", Env=ENV, Region=SRC, Rule="data.replication_rules") == 1.0
    assert latest("RuleReady", Env=ENV, Region="env", Rule="backups.restorable") == 1.0
    listed = cloudwatch.get_paginator("list_metrics").paginate(Namespace=NAMESPACE, MetricName="RuleReady")
    rows = {(d["Region"], d["Rule"]) for page in listed for m in page["Metrics"]
            for d in [{x["Name"]: x["Value"] for x in m["Dimensions"]}]}
    assert rows == {(f.region, f.rule) for f in published}


# -- the role: every call allowed, nothing more ----------------------------------------------------
def _arn(service: str, region: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def iam_request(service: str, op: str, region: str, params: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """(IAM action, resource ARN, condition context) of one boto3 call (`service` as boto3 names it),
    as IAM authorizes it."""
    ctx = {"aws:RequestedRegion": region}
    if service == "iot":
        listing = op.startswith("List") and op not in ("ListThingPrincipals", "ListNamedShadowsForThing")
        if listing or op == "DescribeEventConfigurations":
            return f"iot:{op}", "*", ctx
        return f"iot:{op}", _arn("iot", region, "resource"), ctx
    if service == "iot-data":
        return f"iot:{op}", _arn("iot", region, f"thing/{params['thingName']}"), ctx
    if service == "s3":
        bucket = f"arn:aws:s3:::{params['Bucket']}"
        action = {"GetBucketReplication": "GetReplicationConfiguration", "HeadObject": "GetObject",
                  "ListObjectsV2": "ListBucket"}.get(op, op)
        if op in ("GetObject", "HeadObject"):
            return f"s3:{action}", f"{bucket}/{params['Key']}", ctx
        if op == "ListObjectsV2":
            ctx["s3:prefix"] = params.get("Prefix", "")
        return f"s3:{action}", bucket, ctx
    if service == "dynamodb":
        return f"dynamodb:{op}", _arn("dynamodb", region, f"table/{params['TableName']}"), ctx
    if service == "sqs":
        queue = params.get("QueueName") or params["QueueUrl"].rsplit("/", 1)[1]
        return f"sqs:{op}", _arn("sqs", region, queue), ctx
    if service == "lambda":
        return f"lambda:{op}", _arn("lambda", region, f"function:{params['FunctionName']}"), ctx
    if service == "kinesis":
        return f"kinesis:{op}", _arn("kinesis", region, f"stream/{params['StreamName']}"), ctx
    if service == "acm":
        return f"acm:{op}", params["CertificateArn"], ctx
    if service == "kms":
        return f"kms:{op}", params["KeyId"], ctx
    if service == "route53":
        return f"route53:{op}", f"arn:aws:route53:::healthcheck/{params['HealthCheckId']}", ctx
    if service == "service-quotas":
        return f"servicequotas:{op}", "*", ctx
    if service == "cloudwatch":
        if op == "PutMetricData":
            ctx["cloudwatch:namespace"] = params["Namespace"]
        return f"cloudwatch:{op}", "*", ctx
    raise AssertionError(f"no IAM mapping for {service}.{op}: add it here (and to the role if the rules need it)")


def allowed(doc: dict[str, Any], action: str, resource: str, ctx: dict[str, str]) -> bool:
    """IAM's allow evaluation for the parts the role uses: Action, Resource wildcards, StringEquals/Like."""
    def listed(v: Any) -> list[str]:
        return [v] if isinstance(v, str) else list(v)

    for st in doc["Statement"]:
        if st["Effect"] != "Allow" or action not in listed(st["Action"]):
            continue
        if not any(fnmatch.fnmatchcase(resource, p) for p in listed(st["Resource"])):
            continue
        ok = True
        for operator, conditions in st.get("Condition", {}).items():
            for key, want in conditions.items():
                got = ctx.get(key)
                if operator == "StringEquals":
                    ok = ok and got in listed(want)
                elif operator == "StringLike":
                    ok = ok and got is not None and any(fnmatch.fnmatchcase(got, w) for w in listed(want))
                else:
                    ok = False
        if ok:
            return True
    return False


def test_the_role_allows_every_call_of_an_evaluation_where_it_is_made_and_nothing_else(
        world: ReadyWorld) -> None:
    from tests.programs.conftest import policy_attached_to

    ev = program(world, configuration(world))
    role = ev.named(f"{NAME}-role")
    doc = policy_attached_to(ev, role.name)
    region = ev.named(f"{NAME}-function").inputs["region"]
    seen: list[tuple[str, str, str, dict[str, Any]]] = []  # (service, operation, region, params)

    def hook(made: Any, service: str, where: str) -> None:
        world.overlay.install(made, service, where)  # every rule reaches its calls (event configs, quotas)
        made.meta.events.register("provide-client-params", lambda params, model, **kw: seen.append(
            (service, model.name, where, dict(params))))

    probe = cli_probe(world, client_hook=hook)
    result = run(probe, probe.client("cloudwatch", region))
    assert result["datums"] > 40 and len(seen) > 50
    requests = [iam_request(*call) for call in seen]
    assert [r for r in requests if not allowed(doc, *r)] == []
    granted = {a for st in doc["Statement"]
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    # granted but not called here: the function's own logs (Lambda's runtime writes them)
    assert granted - {r[0] for r in requests} == {"logs:CreateLogStream", "logs:PutLogEvents"}


def test_a_metric_outside_the_namespace_or_region_and_any_write_are_denied(world: ReadyWorld) -> None:
    ev = program(world, configuration(world))
    from tests.programs.conftest import policy_attached_to

    doc = policy_attached_to(ev, ev.named(f"{NAME}-role").name)
    region = ev.named(f"{NAME}-function").inputs["region"]
    put = "cloudwatch:PutMetricData"
    assert allowed(doc, put, "*", {"aws:RequestedRegion": region, "cloudwatch:namespace": NAMESPACE})
    assert not allowed(doc, put, "*", {"aws:RequestedRegion": region, "cloudwatch:namespace": "AWS/Lambda"})
    assert not allowed(doc, put, "*", {"aws:RequestedRegion": SRC, "cloudwatch:namespace": NAMESPACE})
    for action, resource in [("iot:UpdateCertificate", "*"), ("iot:ListThings", "*"),
                             ("s3:GetObject", "arn:aws:s3:::state-bucket/.pulumi/stacks/dev.json"),
                             ("dynamodb:PutItem", _arn("dynamodb", DST, f"table/iot-{ENV}-replication-applied-{DST}"))]:
        ctx = {"aws:RequestedRegion": "us-west-2" if action == "iot:ListThings" else DST}
        assert not allowed(doc, action, resource, ctx), action


def test_the_configuration_carries_no_secret_output_and_no_backend_credentials(world: ReadyWorld) -> None:
    from orchestrator.engine.types import OutputValue

    raw = {k: OutputValue(v, False) for k, v in world.outputs[f"{ENV}-region-{DST}"].items()}
    raw["certificateArn"] = OutputValue("arn:aws:acm:secret", True)
    outputs = {**world.outputs, f"{ENV}-region-{DST}": raw}
    config = deploy.function_config(world.topology, outputs.get, backend_url="https://user:hunter22@state.example/x",
                                    secrets_provider=None)
    text = deploy.encode(config)
    assert "hunter22" not in text and "arn:aws:acm:secret" not in text
    assert config["backend_url"] == "https://state.example/x"
    assert "certificateArn" not in config["outputs"][f"{ENV}-region-{DST}"]
    assert parse(config["topology"], env=ENV) == replace(world.topology, source="<memory>")
