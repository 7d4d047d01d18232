"""Continuous replication in the replication program: topic rules, functions, IAM, package, alarms."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from orchestrator.registry.events import CLIENT_TOKEN_PREFIX, LAG_METRIC, METRIC_NAMESPACE
from programs import package, policies
from programs.contract import ReplicationNames
from programs.mocks import Evaluation, evaluate
from programs.replication import (
    CRASH_RETRY_ATTEMPTS,
    CRASH_RETRY_INTERVAL_S,
    MAX_RECONCILE_SLICES,
    RECONCILE_INPUT,
    RECONCILE_RETRY_ATTEMPTS,
    reconcile_definition,
    rule_sql,
)
from tests.programs.conftest import PRIMARY, SECONDARY, THIRD, policy_attached_to, replication_args
from tests.states_language import InvalidDefinition, TaskError, run, validate

NAME = "iot-dev-replication"
ACCOUNT = "123456789012"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
RULE = "aws:iot/topicRule:TopicRule"


@cache
def routed(routing: str) -> Evaluation:
    return evaluate(replace(replication_args(SECONDARY, THIRD), routing=routing), stack="dev-replication")


def regions_of(ev: Evaluation, token: str) -> list[str]:
    return sorted({r.inputs["region"] for r in ev.of_type(token)})


@pytest.mark.parametrize("routing, rule_regions, function_regions", [
    ("single", [PRIMARY], [SECONDARY, THIRD]),
    ("failover", [PRIMARY, SECONDARY], [SECONDARY, THIRD]),
    ("latency", [PRIMARY, SECONDARY, THIRD], [PRIMARY, SECONDARY, THIRD]),
])
@pytest.mark.slow
def test_rules_where_changes_happen_and_functions_where_they_are_applied(
        routing: str, rule_regions: list[str], function_regions: list[str]) -> None:
    ev = routed(routing)
    assert regions_of(ev, RULE) == sorted(rule_regions)
    assert len(ev.of_type(RULE)) == 3 * len(rule_regions)
    assert regions_of(ev, FUNCTION) == sorted(function_regions)
    assert len(ev.of_type(FUNCTION)) == len(function_regions)


def test_each_rule_writes_its_regions_replica_with_origin_time_and_ttl() -> None:
    ev = routed("latency")
    for region in (PRIMARY, SECONDARY, THIRD):
        role = ev.named(f"{NAME}-events-role-{region}")
        doc = policy_attached_to(ev, role.name)
        assert policies.resources_of(doc) == [f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/iot-dev-registry-events"]
        assert policies.actions_of(doc) == ["dynamodb:PutItem"]
        for kind in ("registry-events", "shadow-classic", "shadow-named"):
            resource = ev.named(f"{NAME}-{kind}-rule-{region}")
            rule = resource.inputs
            assert rule["region"] == region and rule["sql"] == rule_sql(region)[kind]
            assert role.name in resource.depends_on  # that region's role, no other
            assert rule["dynamodbv2s"][0]["roleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/{role.name}-")
            assert rule["dynamodbv2s"][0]["putItem"] == {"tableName": "iot-dev-registry-events"}
            assert f"'{region}' AS originRegion" in rule["sql"]
            assert "AS expiresAt" in rule["sql"] and "AS eventTimeMs" in rule["sql"]


def test_rule_topics_and_no_client_token_filter_a_device_could_use() -> None:
    sql = rule_sql(PRIMARY)
    assert "FROM '$aws/events/#' WHERE startswith(topic(), '$aws/events/thing')" in sql["registry-events"]
    assert "FROM '$aws/things/+/shadow/update/documents'" in sql["shadow-classic"]
    assert "FROM '$aws/things/+/shadow/name/+/update/documents'" in sql["shadow-named"]
    for kind in ("shadow-classic", "shadow-named"):
        # a device chooses its client token: no token (prefix or otherwise) keeps an update out;
        # the function recognises replica writes by their signed token instead
        assert "WHERE" not in sql[kind] and CLIENT_TOKEN_PREFIX not in sql[kind]
        assert "clientToken" in sql[kind]  # carried, for the function's signature check
        # every field the function reads from a shadow item is written by the rule
        for field in ("eventType", "thingName", "shadowName", "version", "eventId", "eventTimeMs", "current"):
            assert f"{field}" in sql[kind]
    assert "topic(6) AS shadowName" in sql["shadow-named"] and "'' AS shadowName" in sql["shadow-classic"]
    assert "timestamp * 1000 AS eventTimeMs" in sql["shadow-classic"]  # shadow timestamps are seconds


@pytest.mark.slow
def test_each_function_reads_its_own_regions_stream_reports_item_failures_and_has_a_dead_letter_queue() -> None:
    ev = routed("latency")
    for region in (PRIMARY, SECONDARY, THIRD):
        names = ReplicationNames.of("dev", region)
        mapping = ev.named(f"{NAME}-replicator-stream-{region}").inputs
        assert mapping["region"] == region
        assert mapping["eventSourceArn"] == (f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/iot-dev-registry-events"
                                             "/stream/2024-01-01T00:00:00.000")
        assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["bisectBatchOnFunctionError"] is True
        assert 0 < mapping["maximumRetryAttempts"] <= 10_000 and mapping["maximumRecordAgeInSeconds"] <= 86_400
        assert mapping["destinationConfig"]["onFailure"]["destinationArn"] == \
            f"arn:aws:sqs:{region}:{ACCOUNT}:{names.dead_letter_queue}"
        (criteria,) = mapping["filterCriteria"]["filters"]
        assert json.loads(criteria["pattern"]) == {"eventName": ["INSERT", "MODIFY"]}
        fn = ev.named(f"{NAME}-replicator-{region}").inputs
        assert fn["handler"] == "orchestrator.registry.replicate.handler" and fn["runtime"].startswith("python3")
        variables = fn["environment"]["variables"]
        key = variables.pop("SHADOW_TOKEN_KEY")
        assert variables == {"REPLICATION_ENV": "dev", "APPLIED_TABLE": names.applied_table,
                             "METRIC_NAMESPACE": METRIC_NAMESPACE,
                             "MEMBER_REGIONS": ",".join((PRIMARY, SECONDARY, THIRD)),
                             "DEAD_LETTER_QUEUE_URL": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/"
                                                      f"{names.dead_letter_queue}"}
        # the signing key's replica in the function's own region (one multi-Region key: same id)
        assert key.startswith(f"arn:aws:kms:{region}:{ACCOUNT}:key/mrk-")
        assert fn["sourceCodeHash"] == package.build().sha256_b64


def test_function_role_is_scoped_to_its_region_its_stream_table_queue_and_sources() -> None:
    ev = routed("failover")
    region = THIRD
    names = ReplicationNames.of("dev", region)
    doc = policy_attached_to(ev, ev.named(f"{NAME}-replicator-role-{region}").name)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["ReadTheStream"]["Resource"] == \
        f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/iot-dev-registry-events/stream/*"
    assert by_sid["Watermarks"]["Resource"] == f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{names.applied_table}"
    assert by_sid["DeadLetters"] == {"Sid": "DeadLetters", "Effect": "Allow", "Action": "sqs:SendMessage",
                                     "Resource": f"arn:aws:sqs:{region}:{ACCOUNT}:{names.dead_letter_queue}"}
    assert by_sid["RegistryHere"]["Resource"] == f"arn:aws:iot:{region}:{ACCOUNT}:*"
    # failover: changes happen in the primary and the failover target, so those are the sources
    assert by_sid["RegistrySources"]["Resource"] == [f"arn:aws:iot:{r}:{ACCOUNT}:*" for r in (PRIMARY, SECONDARY)]
    assert not any(a.startswith(("iot:Create", "iot:Update", "iot:Delete", "iot:Attach", "iot:Detach",
                                 "iot:Register"))
                   for a in by_sid["RegistrySources"]["Action"]), "sources are read, never written"
    for statement in doc["Statement"]:
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        assert not any(a.endswith("*") for a in actions)
        if statement["Resource"] == "*":  # only calls without resource-level permissions, and conditioned
            assert statement["Sid"] in {"ListStreams", "LagMetric", "Listings", "IndexingHere", "EventsHere",
                                        "PlaneListings"}
            assert statement["Condition"]
    assert by_sid["LagMetric"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}}
    assert by_sid["Listings"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": [THIRD, PRIMARY, SECONDARY]}}
    # the one singleton it writes (fleet indexing, for a dynamic group it carries): its own region only
    assert by_sid["IndexingHere"]["Action"] == ["iot:UpdateIndexingConfiguration"]
    assert by_sid["IndexingHere"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": THIRD}}
    # the daily reconciliation carries the device-management plane (replicate.reconcile_plane): written
    # in its own region only, read in the sources, the roles it names passed to IoT only
    assert by_sid["PlaneHere"]["Resource"] == f"arn:aws:iot:{THIRD}:{ACCOUNT}:*"
    assert "iot:CreateRoleAlias" in by_sid["PlaneHere"]["Action"]
    assert not any(a.startswith("iot:Delete") and a in ("iot:DeleteRoleAlias", "iot:DeleteCACertificate")
                   for a in by_sid["PlaneHere"]["Action"]), "reconciliation never prunes"
    assert by_sid["EventsHere"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": THIRD}}
    assert by_sid["PlaneReads"]["Resource"] == [f"arn:aws:iot:{r}:{ACCOUNT}:*" for r in (THIRD, PRIMARY, SECONDARY)]
    assert by_sid["PassPlaneRoles"]["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/*"
    assert by_sid["PassPlaneRoles"]["Condition"]["StringEquals"]["iam:PassedToService"]


def test_alarms_on_dead_letters_and_on_replication_lag() -> None:
    ev = routed("single")
    for region in (SECONDARY, THIRD):
        dlq = ev.named(f"{NAME}-dlq-alarm-{region}").inputs
        assert (dlq["namespace"], dlq["metricName"], dlq["threshold"], dlq["comparisonOperator"]) == \
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")
        assert dlq["dimensions"] == {"QueueName": ReplicationNames.of("dev", region).dead_letter_queue}
        lag = ev.named(f"{NAME}-lag-alarm-{region}").inputs
        assert (lag["namespace"], lag["metricName"], lag["statistic"]) == (METRIC_NAMESPACE, LAG_METRIC, "Maximum")
        assert lag["dimensions"] == {"Env": "dev", "Region": region} and lag["region"] == region


def test_daily_reconciliation_from_the_primary_into_each_secondary_only() -> None:
    """One STANDARD state machine per secondary (never the primary), started daily by EventBridge
    Scheduler with no flexible window; no EventBridge rule invokes the function any more."""
    ev = routed("latency")
    machines = {m.inputs["region"]: m for m in ev.of_type("aws:sfn/stateMachine:StateMachine")}
    assert sorted(machines) == [SECONDARY, THIRD]
    assert not [r for r in ev.of_type("aws:cloudwatch/eventRule:EventRule") if "reconcile" in r.name]
    schedules = {s.inputs["region"]: s for s in ev.of_type("aws:scheduler/schedule:Schedule")}
    assert sorted(schedules) == [SECONDARY, THIRD]
    for region, machine in machines.items():
        names = ReplicationNames.of("dev", region)
        assert machine.inputs["type"] == "STANDARD" and machine.inputs["name"] == names.reconcile_state_machine
        definition = json.loads(machine.inputs["definition"])
        validate(definition)  # the strict stand-in: Step Functions would accept it
        task = definition["States"]["Slice"]
        assert task["Parameters"]["FunctionName"] == f"arn:aws:lambda:{region}:{ACCOUNT}:function:{names.function}"
        assert task["Parameters"]["Payload"] == {"reconcile": {"from": PRIMARY, "slice": {}}}
        schedule = schedules[region].inputs
        assert schedule["scheduleExpression"] == "rate(1 day)"
        assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
        target = schedule["target"]
        assert target["arn"] == f"arn:aws:states:{region}:{ACCOUNT}:stateMachine:{names.reconcile_state_machine}"
        assert json.loads(target["input"]) == {"slices": 0}


def test_reconciliation_roles_may_do_exactly_one_thing_each() -> None:
    """The machine's role invokes that one function (its ARN and its versions); the schedule's role
    starts that one machine; each trusts its own service on behalf of our account only."""
    ev = routed("latency")
    for region in (SECONDARY, THIRD):
        function = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{ReplicationNames.of('dev', region).function}"
        machine = f"arn:aws:states:{region}:{ACCOUNT}:stateMachine:iot-dev-reconcile-{region}"
        for role, service, action, resources in (
                ("machine", "states.amazonaws.com", "lambda:InvokeFunction", [function, f"{function}:*"]),
                ("schedule", "scheduler.amazonaws.com", "states:StartExecution", [machine])):
            r = ev.named(f"{NAME}-reconcile-{role}-role-{region}")
            trust = json.loads(r.inputs["assumeRolePolicy"])["Statement"]
            assert [s["Principal"] for s in trust] == [{"Service": service}]
            assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
            doc = policy_attached_to(ev, r.name)
            assert policies.actions_of(doc) == [action]
            assert sorted(policies.resources_of(doc)) == sorted(resources)
        assert ev.named(f"{NAME}-reconcile-{region}").inputs["roleArn"].startswith(
            f"arn:aws:iam::{ACCOUNT}:role/{NAME}-reconcile-machine-role-{region}-")
        assert schedules_target_role(ev, region).startswith(
            f"arn:aws:iam::{ACCOUNT}:role/{NAME}-reconcile-schedule-role-{region}-")


def schedules_target_role(ev: Evaluation, region: str) -> str:
    return str(ev.named(f"{NAME}-reconcile-schedule-{region}").inputs["target"]["roleArn"])


def test_the_reconciliation_loop_is_bounded_by_the_execution_history_quota() -> None:
    """However a pass goes (every slice not done, every attempt retried to the limit: Lambda's
    transient errors and crashes), one execution ends before its history reaches Step Functions'
    25,000 events: OutOfSlices, never the quota."""
    definition = reconcile_definition(f"arn:aws:lambda:{SECONDARY}:{ACCOUNT}:function:f", PRIMARY)
    calls = {"n": 0}
    per_slice = RECONCILE_RETRY_ATTEMPTS + CRASH_RETRY_ATTEMPTS + 1

    def never_done(resource: str, params: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        calls["n"] += 1
        attempt = (calls["n"] - 1) % per_slice
        if attempt < RECONCILE_RETRY_ATTEMPTS:  # every attempt but the last of each slice fails
            raise TaskError("Lambda.TooManyRequestsException", "rate exceeded")
        if attempt < per_slice - 1:
            raise TaskError("Sandbox.Timedout", "Task timed out after 900.00 seconds")
        return {"Payload": {"done": False, "progress": {}}}

    ex = run(definition, dict(RECONCILE_INPUT), never_done)
    assert (ex.status, ex.error) == ("FAILED", "Reconcile.OutOfSlices")
    assert calls["n"] == MAX_RECONCILE_SLICES * per_slice
    assert len(ex.events) <= 25_000
    assert MAX_RECONCILE_SLICES >= 900  # 1M things at ~6,000 per 600 s slice need ~170


def test_a_crashed_slice_is_tried_again_after_its_lease_expired_then_the_execution_fails() -> None:
    """A crash (the function's error, its timeout) is retried CRASH_RETRY_ATTEMPTS times, each after
    the pass's lease has expired (so the retry takes the pass over and counts the crash against
    its page: reconcile_pass), then the execution fails; Lambda's transient errors keep their own
    quick retries."""
    from orchestrator.registry.reconcile_pass import LEASE_MS, PAGE_ATTEMPTS

    definition = reconcile_definition(f"arn:aws:lambda:{SECONDARY}:{ACCOUNT}:function:f", PRIMARY)
    assert CRASH_RETRY_ATTEMPTS == PAGE_ATTEMPTS and CRASH_RETRY_INTERVAL_S * 1000 > LEASE_MS
    calls = {"n": 0}

    def crashes(resource: str, params: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        calls["n"] += 1
        raise TaskError("KeyError", "a poison page")

    ex = run(definition, dict(RECONCILE_INPUT), crashes)
    assert (ex.status, ex.error, calls["n"]) == ("FAILED", "KeyError", CRASH_RETRY_ATTEMPTS + 1)
    assert ex.slept_s == CRASH_RETRY_ATTEMPTS * CRASH_RETRY_INTERVAL_S
    once = reconcile_definition(f"arn:aws:lambda:{SECONDARY}:{ACCOUNT}:function:f", PRIMARY, crash_attempts=0)
    calls["n"] = 0
    assert run(once, dict(RECONCILE_INPUT), crashes).status == "FAILED" and calls["n"] == 1


@pytest.mark.parametrize("broken, message", [
    (lambda d: d.update(StartAt="Nope"), "names no state"),
    (lambda d: d["States"]["Count"].update(Next="Nowhere"), "names no state"),
    (lambda d: d["States"]["Count"].pop("Next"), "exactly one of Next or End"),
    (lambda d: d["States"]["Done?"]["Choices"][0].update(BooleanEquals="true"), "boolean"),
    (lambda d: d["States"]["Done?"]["Choices"][0].update(NumericEquals=1), "exactly one comparison"),
    (lambda d: d["States"]["Slice"]["Retry"][0].update(ErrorEquals=[]), "non-empty"),
    (lambda d: d["States"]["Slice"]["Retry"][0].update(IntervalSeconds=0), "IntervalSeconds"),
    (lambda d: d["States"]["Slice"]["Retry"][0].update(MaxAttempts=-1), "MaxAttempts"),
    (lambda d: d["States"]["Slice"]["Retry"][0].update(BackoffRate=0.5), "BackoffRate"),
    (lambda d: d["States"]["Slice"].update(Resource="lambda-please"), "not an ARN"),
    (lambda d: d["States"].update(Orphan={"Type": "Succeed"}), "unreachable"),
])
def test_the_stand_in_refuses_what_step_functions_refuses(broken: Any, message: str) -> None:
    definition = reconcile_definition(f"arn:aws:lambda:{SECONDARY}:{ACCOUNT}:function:f", PRIMARY)
    validate(definition)
    broken(definition)
    with pytest.raises(InvalidDefinition, match=message):
        validate(definition)


# -- the package ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_package_is_reproducible_same_bytes_for_the_same_source(tmp_path: Path) -> None:
    first = package.build(out_dir=tmp_path / "a")
    # another checkout of the same source: other mtimes, other permissions, bytecode lying around
    copy = tmp_path / "checkout"
    for name in package.source_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package.ROOT / name, copy / name)
        os.utime(copy / name, (1_000_000, 1_000_000))
        os.chmod(copy / name, 0o600)
    (copy / "orchestrator/registry/__pycache__").mkdir()
    (copy / "orchestrator/registry/__pycache__/events.cpython-311.pyc").write_bytes(b"\0")
    second = package.build(copy, out_dir=tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256_b64 == second.sha256_b64 == \
        __import__("base64").b64encode(hashlib.sha256(first.path.read_bytes()).digest()).decode()
    with zipfile.ZipFile(first.path) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos) == list(first.files)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert not any("__pycache__" in i.filename or i.filename.endswith(".pyc") for i in infos)
    # a changed source is a new package
    (copy / "orchestrator/registry/events.py").write_text((copy / "orchestrator/registry/events.py").read_text() + "\n")
    assert package.build(copy, out_dir=tmp_path / "c").sha256_b64 != first.sha256_b64


@pytest.mark.slow
def test_the_handler_imports_from_the_package_alone_without_click_pulumi_or_yaml(tmp_path: Path) -> None:
    built = package.build(out_dir=tmp_path)
    probe = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'click', 'pulumi', 'pulumi_aws', 'yaml', 'programs', 'cryptography'}:\n"
        "            raise ImportError('not in the Lambda runtime: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path = [{str(built.path)!r}] + [p for p in sys.path if 'site-packages' in p or 'lib/python' in p]\n"
        "sys.path = [p for p in sys.path if not p.rstrip('/').endswith('wt13') and '.egg-link' not in p]\n"
        "import orchestrator.registry.replicate as r\n"
        "assert r.__file__.startswith(sys.path[0]), r.__file__\n"
        "assert callable(r.handler)\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# -- trust: what the function accepts, and how it recognises its own shadow writes ----------------
def test_function_role_may_sign_with_its_regions_key_replica_and_release_leases() -> None:
    ev = routed("failover")
    for region in (SECONDARY, THIRD):
        doc = policy_attached_to(ev, ev.named(f"{NAME}-replicator-role-{region}").name)
        by_sid = {s["Sid"]: s for s in doc["Statement"]}
        assert by_sid["SignShadowWrites"]["Action"] == ["kms:GenerateMac", "kms:VerifyMac"]
        key = ev.named(f"{NAME}-shadow-key-{region}").inputs
        assert key["region"] == region and key["primaryKeyArn"].startswith(f"arn:aws:kms:{PRIMARY}:{ACCOUNT}:key/mrk-")
        assert by_sid["SignShadowWrites"]["Resource"] == \
            f"arn:aws:kms:{region}:{ACCOUNT}:key/" + key["primaryKeyArn"].rsplit("/", 1)[1]
        assert "dynamodb:DeleteItem" in by_sid["Watermarks"]["Action"]  # a lease is released
    primary = ev.named(f"{NAME}-shadow-key").inputs
    assert (primary["customerMasterKeySpec"], primary["keyUsage"], primary["multiRegion"]) == \
        ("HMAC_256", "GENERATE_VERIFY_MAC", True)
    # only the functions' roles compute MACs (the default policy would let any kms:GenerateMac on *)
    replicas = [ev.named(f"{NAME}-shadow-key-{r}").inputs for r in (SECONDARY, THIRD)]
    for key in (primary, *replicas):
        doc = json.loads(key["policy"])
        by_sid = {s["Sid"]: s for s in doc["Statement"]}
        assert "kms:GenerateMac" not in by_sid["AccountAdministersTheKey"]["Action"]
        use = by_sid["ReplicatorsSignAndVerify"]
        assert use["Action"] == ["kms:GenerateMac", "kms:VerifyMac"]
        arns = use["Condition"]["ArnEquals"]["aws:PrincipalArn"]
        assert sorted(a.split(f"role/{NAME}-replicator-role-", 1)[1].rsplit("-", 1)[0] for a in arns) == \
            sorted((SECONDARY, THIRD))


# -- API calls: CloudTrail -> EventBridge -> the function ---------------------------------------------
API_PATTERN_DETAIL = {"eventSource": ["iot.amazonaws.com"], "eventName": [
    "UpdateCertificate", "AttachPolicy", "DetachPolicy", "AttachPrincipalPolicy", "DetachPrincipalPolicy",
    "CreatePolicyVersion", "SetDefaultPolicyVersion", "DeletePolicyVersion", "AttachThingPrincipal",
    "DetachThingPrincipal", "CreateDynamicThingGroup", "UpdateDynamicThingGroup", "DeleteDynamicThingGroup"]}


def test_a_multi_region_trail_records_management_writes_so_eventbridge_receives_api_calls() -> None:
    ev = routed("failover")
    (trail,) = ev.of_type("aws:cloudtrail/trail:Trail")
    t = trail.inputs
    assert t["isMultiRegionTrail"] is True and t["enableLogging"] is True and t["region"] == PRIMARY
    assert t["eventSelectors"] == [{"includeManagementEvents": True, "readWriteType": "WriteOnly"}]
    bucket = ev.one("aws:s3/bucket:Bucket")
    assert t["s3BucketName"] == bucket.inputs.get("bucket", t["s3BucketName"])
    policy = json.loads(ev.named(f"{NAME}-trail-logs-policy").inputs["policy"])
    write = next(s for s in policy["Statement"] if s["Sid"] == "Write")
    assert write["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert write["Condition"]["StringEquals"]["aws:SourceArn"] == \
        f"arn:aws:cloudtrail:{PRIMARY}:{ACCOUNT}:trail/iot-dev-registry-changes"
    assert f"{NAME}-trail-logs-policy" in trail.depends_on  # CloudTrail checks the bucket policy on create
    block = ev.named(f"{NAME}-trail-logs-public").inputs
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))


@pytest.mark.parametrize("routing", ["single", "failover", "latency"])
def test_api_calls_reach_every_function_and_only_a_regions_own_calls_are_forwarded(routing: str) -> None:
    from programs.contract import function_regions

    ev = routed(routing)
    functions = function_regions(routing, PRIMARY, (SECONDARY, THIRD))
    args = replace(replication_args(SECONDARY, THIRD), routing=routing)
    for region in functions:
        rule = ev.named(f"{NAME}-api-calls-{region}").inputs
        assert rule["region"] == region
        assert json.loads(rule["eventPattern"]) == {"source": ["aws.iot"], "detail-type": [
            "AWS API Call via CloudTrail"], "detail": API_PATTERN_DETAIL}
        target = ev.named(f"{NAME}-api-calls-target-{region}").inputs
        assert target["arn"] == f"arn:aws:lambda:{region}:{ACCOUNT}:function:iot-dev-replicator-{region}"
        names = ReplicationNames.of("dev", region)
        assert target["deadLetterConfig"]["arn"] == f"arn:aws:sqs:{region}:{ACCOUNT}:{names.dead_letter_queue}"
        permission = ev.named(f"{NAME}-api-calls-permission-{region}").inputs
        assert permission["principal"] == "events.amazonaws.com"
        assert permission["sourceArn"] == f"arn:aws:events:{region}:{ACCOUNT}:rule/iot-dev-api-calls-{region}"
        invoke = ev.named(f"{NAME}-api-calls-invoke-{region}").inputs
        assert invoke["destinationConfig"]["onFailure"]["destination"] == target["deadLetterConfig"]["arn"]
        queue_policy = json.loads(ev.named(f"{NAME}-dlq-policy-{region}").inputs["policy"])
        assert queue_policy["Statement"][0]["Condition"] == {"ArnEquals": {"aws:SourceArn": permission["sourceArn"]}}
    expected = {s: sorted(d for d in functions if s in args.source_regions(d)) for d in functions
                for s in args.source_regions(d)}
    forwards = {r.name.rsplit("-api-calls-forward-", 1)[1]: r for r in ev.of_type("aws:cloudwatch/eventRule:EventRule")
                if "-api-calls-forward-" in r.name}
    assert sorted(forwards) == sorted(expected)
    for source, rule in forwards.items():
        pattern = json.loads(rule.inputs["eventPattern"])
        assert pattern["detail"] == {**API_PATTERN_DETAIL, "awsRegion": [source]}  # never forwarded twice
        assert rule.inputs["region"] == source
        targets = sorted(t.inputs["arn"] for t in ev.of_type("aws:cloudwatch/eventTarget:EventTarget")
                         if t.name.startswith(f"{NAME}-api-calls-forward-{source}-to-"))
        assert targets == [f"arn:aws:events:{r}:{ACCOUNT}:event-bus/default" for r in expected[source]]
        assert source not in expected[source]
    role = ev.named(f"{NAME}-api-calls-forward-role")
    doc = policy_attached_to(ev, role.name)
    assert policies.actions_of(doc) == ["events:PutEvents"]
    assert sorted(policies.resources_of(doc)) == sorted(
        f"arn:aws:events:{r}:{ACCOUNT}:event-bus/default" for r in functions)


# -- retained messages under the topology's prefixes (issue 25, item 3) ---------------------------
RETAINED = ("config/", "fleet/set")


@cache
def retained_routed(routing: str) -> Evaluation:
    args = replace(replication_args(SECONDARY, THIRD), routing=routing, retained_topics=RETAINED)
    return evaluate(args, stack="dev-replication")


def _allows(doc: dict, action: str, resource: str) -> bool:
    """IAM's evaluation of an Allow-only document: `*` matches any characters, `?` one."""
    import fnmatch

    for statement in doc["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if statement["Effect"] == "Allow" and action in actions and \
                any(fnmatch.fnmatchcase(resource, r.replace("[", "[[]")) for r in resources):
            return True
    return False


def test_each_retained_prefix_has_a_rule_in_every_region_where_changes_happen() -> None:
    from programs.replication import retained_rule_name, retained_rule_sql

    ev = retained_routed("failover")
    rules = [r for r in ev.of_type(RULE) if r.inputs["name"].startswith("iot_dev_retained_")]
    assert sorted((r.inputs["region"], r.inputs["sql"]) for r in rules) == sorted(
        (region, retained_rule_sql(region, p)) for region in (PRIMARY, SECONDARY) for p in RETAINED)
    assert {r.inputs["name"] for r in rules} == {retained_rule_name("dev", p, region)
                                                  for region in (PRIMARY, SECONDARY) for p in RETAINED}
    for rule in rules:
        region = rule.inputs["region"]
        assert rule.inputs["dynamodbv2s"][0]["putItem"] == {"tableName": "iot-dev-registry-events"}
        assert ev.named(f"{NAME}-events-role-{region}").name in rule.depends_on  # that region's replica only
    sql = retained_rule_sql(PRIMARY, "config/")
    assert "FROM 'config/#' WHERE startswith(topic(), 'config/')" in sql
    assert "FROM 'fleet/#' WHERE startswith(topic(), 'fleet/set')" in retained_rule_sql(PRIMARY, "fleet/set")
    # the payload as any bytes, the replica token carried (not filtered on: a device sets any
    # property), the origin and the rules engine's time in ms
    assert "encode(*, 'base64') AS payload" in sql and "topic() AS topic" in sql
    assert "get_user_property('orchestrate-replica') AS replicaToken" in sql
    assert "'RETAINED_EVENT' AS eventType" in sql and "timestamp() AS eventTimeMs" in sql
    assert f"'{PRIMARY}' AS originRegion" in sql and "AS expiresAt" in sql and "newuuid()" in sql
    # every field the function reads from a retained item is written by the rule
    from tests.ops.replication_world import retained_item

    for field in retained_item("config/a", b"x", PRIMARY, t_ms=1, token="t"):
        assert f"AS {field}" in sql, field


def test_the_function_may_republish_and_read_retained_messages_only_under_the_prefixes() -> None:
    ev = retained_routed("failover")
    fn = ev.named(f"{NAME}-replicator-{THIRD}").inputs
    assert json.loads(fn["environment"]["variables"]["RETAINED_TOPICS"]) == list(RETAINED)
    doc = policy_attached_to(ev, ev.named(f"{NAME}-replicator-role-{THIRD}").name)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    here = [f"arn:aws:iot:{THIRD}:{ACCOUNT}:topic/config/*", f"arn:aws:iot:{THIRD}:{ACCOUNT}:topic/fleet/set*"]
    assert by_sid["RetainedHere"] == {"Sid": "RetainedHere", "Effect": "Allow",
                                      "Action": ["iot:GetRetainedMessage", "iot:Publish", "iot:RetainPublish"],
                                      "Resource": here}
    assert by_sid["RetainedSources"]["Action"] == "iot:GetRetainedMessage"
    for action in ("iot:Publish", "iot:RetainPublish"):
        assert _allows(doc, action, f"arn:aws:iot:{THIRD}:{ACCOUNT}:topic/config/dev-1")
        assert _allows(doc, action, f"arn:aws:iot:{THIRD}:{ACCOUNT}:topic/fleet/settings/a")
        assert not _allows(doc, action, f"arn:aws:iot:{THIRD}:{ACCOUNT}:topic/telemetry/dev-1")
        assert not _allows(doc, action, f"arn:aws:iot:{THIRD}:{ACCOUNT}:topic/$aws/things/t/shadow/update")
        for other in (PRIMARY, SECONDARY):  # never in another region
            assert not _allows(doc, action, f"arn:aws:iot:{other}:{ACCOUNT}:topic/config/dev-1")
    for source in (PRIMARY, SECONDARY):
        assert _allows(doc, "iot:GetRetainedMessage", f"arn:aws:iot:{source}:{ACCOUNT}:topic/config/dev-1")
        assert not _allows(doc, "iot:GetRetainedMessage", f"arn:aws:iot:{source}:{ACCOUNT}:topic/telemetry/x")


def test_without_retained_prefixes_no_retained_rule_permission_or_setting() -> None:
    ev = routed("failover")
    assert not [r for r in ev.of_type(RULE) if "retained" in r.inputs["name"]]
    assert "RETAINED_TOPICS" not in ev.named(f"{NAME}-replicator-{THIRD}").inputs["environment"]["variables"]
    doc = policy_attached_to(ev, ev.named(f"{NAME}-replicator-role-{THIRD}").name)
    assert not _allows(doc, "iot:Publish", f"arn:aws:iot:{THIRD}:{ACCOUNT}:topic/config/dev-1")
    assert not {"RetainedHere", "RetainedSources"} & {s["Sid"] for s in doc["Statement"]}


def test_the_topologys_retained_topics_reach_the_replication_stack(tmp_path: Path) -> None:
    from programs.contract import ReplicationArgs

    args = replace(replication_args(SECONDARY), retained_topics=RETAINED)
    config = args.to_config()
    assert ReplicationArgs.from_config(config.get).retained_topics == RETAINED
    assert "retainedTopics" not in replication_args(SECONDARY).to_config()
