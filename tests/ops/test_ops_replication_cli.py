"""`orchestrate status` (replication lag, dead letters, last reconciliation) and `orchestrate registry
replay --from-dlq`, through the CLI, against moto; stacks run on the in-memory engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
import yaml
from click.testing import Result

from orchestrator.aws import AwsContext, client
from orchestrator.registry.events import LAG_METRIC, METRIC_NAMESPACE
from programs.contract import ReplicationNames
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import make_pem
from tests.ops.replication_world import applied_table, events_table, now_ms, payload, rule_item
from tests.ops.test_ops_lifecycle import project, run  # noqa: F401 - fixtures (sim, engine: tests/ops/conftest.py)

NAMES = ReplicationNames.of("dev", DST)


@pytest.fixture
def deployed(run: Callable[..., Result], project: Any) -> None:  # noqa: F811
    path = project / "stacks" / "dev.topology.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(secondaries=[DST], routing="failover")
    path.write_text(yaml.safe_dump(doc))
    result = run("up", "--all", "--yes")
    assert result.exit_code == 0, result.output


def dead_letter_setup(ctx: AwsContext) -> str:
    """The destination's table stream holding one thing event, and a dead letter pointing at it."""
    src = client(ctx, "iot", SRC)
    src.create_thing(thingName="late-1", attributePayload={"attributes": {"fw": "7"}})
    cert = src.register_certificate_without_ca(certificatePem=make_pem("late-1", 5), status="ACTIVE")
    src.attach_thing_principal(thingName="late-1", principal=cert["certificateArn"])
    ddb = client(ctx, "dynamodb", DST)
    dead_letter_of(ctx, events_table(ddb), "iot-dev-registry-events",
                   payload("thing", thingName="late-1", timestamp=now_ms(), attributes={"fw": "7"}))
    return str(cert["certificateId"])


def dead_letter_of(ctx: AwsContext, table: dict[str, Any], name: str, event: dict[str, Any]) -> None:
    """`event` written to the table `name` (whose stream is `table`'s), and a dead letter in the env's
    queue pointing at that stream record, as Lambda sends one after the mapping's retries."""
    from boto3.dynamodb.types import TypeSerializer

    ddb, streams, sqs = (client(ctx, s, DST) for s in ("dynamodb", "dynamodbstreams", "sqs"))
    ddb.put_item(TableName=name, Item={k: TypeSerializer().serialize(v) for k, v in rule_item(event, SRC).items()})
    arn = table["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    seq = streams.get_records(ShardIterator=it)["Records"][0]["dynamodb"]["SequenceNumber"]
    letter = payload("dead_letter")
    letter["DDBStreamBatchInfo"].update(shardId=shard, streamArn=arn, startSequenceNumber=seq, endSequenceNumber=seq)
    url = sqs.create_queue(QueueName=NAMES.dead_letter_queue)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(letter))


def test_status_shows_lag_dead_letters_and_the_last_reconciliation(
        run: Callable[..., Result], deployed: None, ctx: AwsContext) -> None:  # noqa: F811
    dead_letter_setup(ctx)
    client(ctx, "cloudwatch", DST).put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=[{
        "MetricName": LAG_METRIC, "Dimensions": [{"Name": "Env", "Value": "dev"}, {"Name": "Region", "Value": DST}],
        "Values": [850.0, 1250.0], "Unit": "Milliseconds", "Timestamp": datetime.now(timezone.utc)}])
    table = applied_table(ctx, DST, NAMES.applied_table)
    last = {"at": "2026-11-30T03:00:00+00:00", "from": SRC, "ok": True, "applied": 3, "errors": 0}
    client(ctx, "dynamodb", DST).put_item(TableName=table, Item={
        "objectKey": {"S": "reconciliation"}, "result": {"S": json.dumps(last)}})

    doc = json.loads(run("status", "--json").stdout)
    (row,) = doc["replication"]
    assert row == {"region": DST, "lag_ms": 1250, "dead_letters": 1, "last_reconciliation": last,
                   "reconciling": None, "error": None}
    text = run("status").stdout
    assert "lag 1.2 s" in text and "1 dead letters" in text
    assert f"orchestrate registry replay --from-dlq --region {DST}" in text
    assert "last reconciliation ok at 2026-11-30T03:00:00+00:00" in text


def test_status_shows_the_reconciliation_pass_in_progress_with_its_eta(
        run: Callable[..., Result], deployed: None, ctx: AwsContext) -> None:  # noqa: F811
    """A pass of the daily reconciliation (Step Functions slices) half read: status shows what it
    has read of the estimated total, its slices and when its reads will be done at the rate so far."""
    import time

    from orchestrator.registry.reconcile_pass import PassState, PassStore

    table = applied_table(ctx, DST, NAMES.applied_table)
    client(ctx, "sqs", DST).create_queue(QueueName=NAMES.dead_letter_queue)
    now = time.time()
    # 36,000 of 100,000 things read in the first hour: 10 things/s, 64,000 left: 1 h 46 min
    state = PassState("abc123", SRC, now - 3600, phase="read", read=36_000, total_estimate=100_000, slices=7, pages=144,
                      updated_at=now)
    PassStore(client(ctx, "dynamodb", DST), table, SRC).save(state)
    (row,) = json.loads(run("status", "--json").stdout)["replication"]
    rec = row["reconciling"]
    assert (rec["phase"], rec["read"], rec["total_estimate"], rec["slices"], rec["stale"]) == \
        ("read", 36_000, 100_000, 7, False)
    assert 6390 <= rec["eta_s"] <= 6410 and rec["rate_per_s"] == 10.0
    text = run("status").stdout
    assert "reconciling since" in text and "36000/100000 things read (36 %), 7 slices, ETA 1 h 46 min" in text
    # a finished pass is not "in progress"
    PassStore(client(ctx, "dynamodb", DST), table, SRC).save(PassState("abc123", SRC, now - 3600, phase="done"))
    assert "reconciling" not in run("status").stdout


def test_status_reports_unreadable_replication_without_failing(
        run: Callable[..., Result], deployed: None) -> None:  # noqa: F811
    result = run("status", "--json")
    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)["replication"]
    assert row["region"] == DST and row["error"] and row["lag_ms"] is None


def test_replay_from_dlq_reapplies_the_batch_and_empties_the_queue(
        run: Callable[..., Result], deployed: None, ctx: AwsContext) -> None:  # noqa: F811
    cert_id = dead_letter_setup(ctx)
    applied_table(ctx, DST, NAMES.applied_table)
    refused = run("registry", "replay", "--from-dlq", "--region", DST)  # no terminal, no --yes
    assert refused.exit_code == 4 and "refusing without confirmation" in refused.stderr
    dst = client(ctx, "iot", DST)
    with pytest.raises(dst.exceptions.ResourceNotFoundException):
        dst.describe_thing(thingName="late-1")

    result = run("registry", "replay", "--from-dlq", "--region", DST, "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"kind": "registry-replay", "version": 1, "ok": True, "error": None,
                                         "region": DST, "messages": 1,
                                         "replayed": 1, "records": 1, "failed_records": 0, "expired": 0,
                                         "refused": 0}
    assert dst.describe_thing(thingName="late-1")["attributes"] == {"fw": "7"}
    assert cert_id in dst.list_thing_principals(thingName="late-1")["principals"][0]
    again = run("registry", "replay", "--from-dlq", "--region", DST)
    assert again.exit_code == 0 and "no dead letters" in again.stdout


def test_replay_in_a_region_without_a_function_is_bad_input(
        run: Callable[..., Result], deployed: None) -> None:  # noqa: F811
    result = run("registry", "replay", "--from-dlq", "--region", SRC, "--yes")
    assert result.exit_code == 2
    assert f"{SRC} has no replication function in env dev" in result.stderr


def test_replay_refuses_a_dead_letter_naming_another_tables_stream(
        run: Callable[..., Result], deployed: None, ctx: AwsContext) -> None:  # noqa: F811
    """The issue's attack: a message naming another table's stream was replayed with the operator's
    credentials. Only the env's own table (the replication stack's `registryTableName`) is read."""
    src = client(ctx, "iot", SRC)
    src.create_thing(thingName="smuggled")
    ddb = client(ctx, "dynamodb", DST)
    events_table(ddb)  # the env's own table exists, with nothing dead-lettered from it
    dead_letter_of(ctx, events_table(ddb, "someone-elses-events"), "someone-elses-events",
                   payload("thing", thingName="smuggled", timestamp=now_ms(), eventId="smuggled-1"))
    applied_table(ctx, DST, NAMES.applied_table)

    result = run("registry", "replay", "--from-dlq", "--region", DST, "--yes", "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc.pop("error")["exit_code"] == 1
    assert doc == {"kind": "registry-replay", "version": 1, "region": DST, "ok": False, "messages": 1,
                   "replayed": 0, "records": 0, "failed_records": 0, "expired": 0, "refused": 1}
    dst = client(ctx, "iot", DST)
    with pytest.raises(dst.exceptions.ResourceNotFoundException):
        dst.describe_thing(thingName="smuggled")
    text = run("registry", "replay", "--from-dlq", "--region", DST, "--yes")
    assert text.exit_code == 1 and "1 refused" in text.stdout  # the message stays for a human
