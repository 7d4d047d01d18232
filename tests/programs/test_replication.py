"""The replication program (`iotplatform:replication:CrossRegionReplication`)."""

from __future__ import annotations

from collections import Counter

import pytest

from programs import policies
from programs.contract import REPLICATION_OUTPUTS
from programs.mocks import Evaluation, EvaluationFailed, PlatformMocks, evaluate
from tests.programs.conftest import (
    PRIMARY,
    SECONDARY,
    THIRD,
    lake,
    policy_attached_to,
    policy_of,
    replication_args,
    replication_eval,
)

NAME = "iot-dev-replication"
CONFIG = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"


@pytest.mark.slow
def test_inventory_for_two_secondaries(replication: Evaluation) -> None:
    managed = Counter(r.type for r in replication.managed)
    assert managed == Counter({
        # S3 replication, the primary's rules, one function per secondary, forwarding API calls,
        # per secondary the reconciliation's state machine and schedule
        "aws:iam/role:Role": 9,
        "aws:iam/rolePolicy:RolePolicy": 9,
        CONFIG: 1,
        "aws:dynamodb/table:Table": 3,  # the registry-events table, a watermark table per function
        "aws:iot/topicRule:TopicRule": 3,  # single routing: registry, classic and named shadows in the primary
        "command:local:Command": 2,
        "aws:sqs/queue:Queue": 2,
        "aws:sqs/queuePolicy:QueuePolicy": 2,  # EventBridge may dead-letter undelivered API calls
        "aws:lambda/function:Function": 2,
        "aws:lambda/eventSourceMapping:EventSourceMapping": 2,
        "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": 2,
        "aws:cloudwatch/logGroup:LogGroup": 2,
        "aws:cloudwatch/metricAlarm:MetricAlarm": 4,  # dead letters and lag, per function
        # per function the API-call rule; the primary's forwarding rule
        "aws:cloudwatch/eventRule:EventRule": 3,
        "aws:cloudwatch/eventTarget:EventTarget": 4,  # 2 functions, forwarding to 2 buses
        "aws:lambda/permission:Permission": 2,
        # per secondary the daily reconciliation: a state machine started by EventBridge Scheduler
        "aws:sfn/stateMachine:StateMachine": 2,
        "aws:scheduler/schedule:Schedule": 2,
        "aws:kms/key:Key": 1,  # the multi-Region HMAC key signing replica shadow writes
        "aws:kms/replicaKey:ReplicaKey": 2,  # ... in each function region
        "aws:cloudtrail/trail:Trail": 1,  # makes IoT API calls reach EventBridge
        "aws:s3/bucket:Bucket": 1,  # the trail's logs
        "aws:s3/bucketPolicy:BucketPolicy": 1,
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 1,
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 1,
    })
    reads = [r for r in replication.resources if r.read]
    assert {(r.type, r.inputs["region"]) for r in reads} == {
        (VERSIONING, PRIMARY), (VERSIONING, SECONDARY), (VERSIONING, THIRD)}
    assert not replication.of_type("aws:dynamodb/tableReplica:TableReplica")


def test_outputs_have_exactly_the_contract_names(replication: Evaluation) -> None:
    assert list(replication.outputs) == list(REPLICATION_OUTPUTS)
    assert replication.outputs["registryTableName"] == "iot-dev-registry-events"
    assert [t["region"] for t in replication.outputs["targets"]] == [SECONDARY, THIRD]
    assert replication.outputs["replicationRoleArn"].startswith("arn:aws:iam::123456789012:role/")


@pytest.mark.slow
def test_replication_config_lives_on_the_primary_bucket_with_one_rule_per_secondary(
        replication: Evaluation) -> None:
    config = replication.one(CONFIG).inputs
    assert config["bucket"] == lake(PRIMARY).bucket_name and config["region"] == PRIMARY
    assert config["role"] == replication.outputs["replicationRoleArn"]
    rules = config["rules"]
    assert [r["destination"]["bucket"] for r in rules] == [lake(SECONDARY).bucket_arn, lake(THIRD).bucket_arn]
    assert sorted(r["priority"] for r in rules) == [1, 2]
    for rule in rules:
        assert rule["status"] == "Enabled"
        assert rule["filter"] == {"prefix": ""}
        assert rule["deleteMarkerReplication"] == {"status": "Enabled"}
        assert rule["destination"]["storageClass"]


def test_replication_waits_for_observed_versioning_on_both_buckets(replication: Evaluation) -> None:
    config = replication.one(CONFIG)
    reads = {r.inputs["region"]: r for r in replication.of_type(VERSIONING)}
    for region in (PRIMARY, SECONDARY, THIRD):
        assert reads[region].read, "versioning is observed, never managed here"
        assert reads[region].name in config.depends_on
    assert not any(r.type == VERSIONING and not r.read for r in replication.resources)


@pytest.mark.slow
@pytest.mark.parametrize("status", ["Suspended", ""])
def test_unversioned_destination_stops_replication_with_a_clear_message(status: str) -> None:
    bucket = lake(SECONDARY).bucket_name
    # "": the read reports no status at all, i.e. versioning was never enabled
    mocks = PlatformMocks(default_region=PRIMARY, versioning={bucket: status})
    with pytest.raises(EvaluationFailed, match=f"bucket {bucket} in {SECONDARY} has versioning"):
        evaluate(replication_args(SECONDARY), stack="dev-replication", mocks=mocks)


def test_replication_role_names_exactly_the_source_and_destination_buckets(replication: Evaluation) -> None:
    role = replication.named(f"{NAME}-s3-role")
    doc = policy_attached_to(replication, role.name)
    src = lake(PRIMARY).bucket_arn
    dests = [lake(SECONDARY).bucket_arn, lake(THIRD).bucket_arn]
    assert set(policies.resources_of(doc)) == {src, f"{src}/*", *(f"{d}/*" for d in dests)}
    assert "*" not in policies.resources_of(doc)
    assert not any(a.endswith("*") for a in policies.actions_of(doc))
    trust = policy_of(role, "assumeRolePolicy")["Statement"][0]
    assert trust["Principal"] == {"Service": "s3.amazonaws.com"}
    assert trust["Condition"]["ArnLike"] == {"aws:SourceArn": src}


def test_registry_table_is_a_protected_encrypted_global_table(replication: Evaluation) -> None:
    table = replication.named(f"{NAME}-registry-events")
    t = table.inputs
    assert table.protect is True
    assert t["ttl"] == {"attributeName": "expiresAt", "enabled": True}
    assert t["region"] == PRIMARY
    assert t["hashKey"] == "eventId" and {"name": "eventId", "type": "S"} in t["attributes"]
    assert t["streamEnabled"] is True and t["streamViewType"] == "NEW_AND_OLD_IMAGES"
    assert t["pointInTimeRecovery"]["enabled"] is True
    assert t["serverSideEncryption"]["enabled"] is True
    assert [r["regionName"] for r in t["replicas"]] == [SECONDARY, THIRD]
    assert replication.protected == (table.name,)


def test_registry_events_rule_writes_only_to_that_table(replication: Evaluation) -> None:
    rule = replication.named(f"{NAME}-registry-events-rule-{PRIMARY}").inputs
    assert "FROM '$aws/events/#'" in rule["sql"] and "$aws/events/thing" in rule["sql"]
    assert rule["region"] == PRIMARY
    (action,) = rule["dynamodbv2s"]
    assert action["putItem"]["tableName"] == "iot-dev-registry-events"
    role = replication.named(f"{NAME}-events-role-{PRIMARY}")
    doc = policy_attached_to(replication, role.name)
    table_arn = f"arn:aws:dynamodb:{PRIMARY}:123456789012:table/iot-dev-registry-events"
    assert policies.resources_of(doc) == [table_arn]
    assert policies.actions_of(doc) == ["dynamodb:PutItem"]


@pytest.mark.slow
def test_registry_sync_runs_per_secondary_and_reruns_when_the_region_set_changes(
        replication: Evaluation) -> None:
    commands = {c.name: c.inputs for c in replication.of_type("command:local:Command")}
    for region in (SECONDARY, THIRD):
        cmd = commands[f"{NAME}-registry-sync-{region}"]
        assert cmd["create"] == f"orchestrate registry sync --env dev --from {PRIMARY} --to {region}"
        assert cmd["triggers"] == sorted([PRIMARY, SECONDARY, THIRD])
    two = replication_eval((SECONDARY,)).one("command:local:Command").inputs["triggers"]
    assert two == sorted([PRIMARY, SECONDARY]) != commands[f"{NAME}-registry-sync-{SECONDARY}"]["triggers"]


def test_secondary_outside_residency_is_refused_naming_region_and_residency() -> None:
    args = replication_args(SECONDARY, "us-east-1", residency=(PRIMARY, SECONDARY))
    expected = r"us-east-1.*outside the residency list.*eu-west-1.*eu-central-1"
    with pytest.raises(EvaluationFailed, match=expected) as info:
        evaluate(args, stack="dev-replication")
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.slow
def test_table_home_stays_in_the_home_region_after_failover() -> None:
    """After a failover the primary moves; the protected table must not (no replacement)."""
    from programs.contract import LakeRef, ReplicationArgs
    from programs.mocks import evaluate

    def lake(region: str) -> LakeRef:
        return LakeRef(region, f"iot-dev-lake-{region}-x", f"arn:aws:s3:::iot-dev-lake-{region}-x")

    residency = ("eu-west-1", "eu-central-1")
    before = ReplicationArgs("dev", lake("eu-west-1"), (lake("eu-central-1"),), residency, home_region="eu-west-1")
    after = ReplicationArgs("dev", lake("eu-central-1"), (lake("eu-west-1"),), residency, home_region="eu-west-1")
    tables = []
    for args in (before, after):
        ev = evaluate(args, stack="dev-replication")
        table = ev.named("iot-dev-replication-registry-events")
        tables.append((table.inputs["region"], [r["regionName"] for r in table.inputs["replicas"]]))
    assert tables[0] == tables[1] == ("eu-west-1", ["eu-central-1"])
