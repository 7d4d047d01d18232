"""The replication function's trust boundaries (issue 19, item 4), against a real moto server.

Each test is an attack from the issue: what a record claims (origin, event time, shape) is checked
before anything is read or written; one object's events never interleave; what the order cannot
decide is decided by the origin; `replay` trusts a dead letter only as a pointer into the
environment's own stream; a device cannot keep its shadow updates out of replication.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry.events import CLIENT_TOKEN_PREFIX
from orchestrator.registry.replicate import (
    DynamoAppliedStore,
    Outcome,
    Replicator,
    ShadowSigner,
    own_streams,
    replay_dead_letters,
)
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.registry_world import make_pem
from tests.ops.replication_world import (
    events_table,
    now_ms,
    payload,
    region_of,
    replicator,
    rule_accepts,
    rule_item,
    shadow_item,
    stream_record,
)
from tests.ops.test_ops_replication import principals, provision, thing_event

FOREIGN = "us-east-1"  # a region outside the environment (SRC, DST, THIRD)
YEAR_2100_MS = 4_102_444_800_000


class DeadLetters:
    """The function's dead-letter queue in DST, and a sink that sends to it (as `from_environment`)."""

    def __init__(self, ctx: AwsContext) -> None:
        self.sqs = client(ctx, "sqs", DST)
        self.url = self.sqs.create_queue(QueueName="iot-dev-replication-dlq-trust")["QueueUrl"]

    def __call__(self, letter: Any) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(letter, default=str))

    def bodies(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=300)
            if not got.get("Messages"):
                return out
            out += [json.loads(m["Body"]) for m in got["Messages"]]


@pytest.fixture
def trust(ctx: AwsContext) -> dict[str, Any]:
    letters = DeadLetters(ctx)
    rep = replicator(ctx, DST, dead_letter=letters)
    return {"rep": rep, "letters": letters, "src": client(ctx, "iot", SRC), "dst": client(ctx, "iot", DST),
            "ctx": ctx}


def missing(iot: Any, thing: str) -> bool:
    try:
        iot.describe_thing(thingName=thing)
    except iot.exceptions.ResourceNotFoundException:
        return True
    return False


# -- event time ------------------------------------------------------------------------------------
@pytest.mark.parametrize("claimed_origin", [DST, SRC], ids=["own-region", "member-region"])
def test_an_event_time_in_2100_is_a_dead_letter_and_never_moves_the_watermark(
        trust: dict[str, Any], claimed_origin: str) -> None:
    src, dst, rep, letters = trust["src"], trust["dst"], trust["rep"], trust["letters"]
    provision(src, "clock-1", 41)
    forged = thing_event("clock-1", "UPDATED", t=YEAR_2100_MS, version=99, origin=claimed_origin)
    result = rep.handle_batch([forged])
    assert result.results[0].outcome is Outcome.REFUSED and "in the future" in result.results[0].detail
    assert result.response() == {"batchItemFailures": []}  # dead-lettered, not retried
    assert rep.store.get("thing/clock-1") is None  # no watermark
    (letter,) = letters.bodies()
    assert letter["refusedRecord"]["key"] == "thing/clock-1"
    assert letter["refusedRecord"]["eventTimeMs"] == YEAR_2100_MS
    # the real create is not skipped as stale
    real = rep.handle_batch([thing_event("clock-1", t=now_ms())])
    assert real.results[0].outcome is Outcome.APPLIED
    assert dst.describe_thing(thingName="clock-1")["thingName"] == "clock-1"


def test_a_time_within_the_allowed_skew_applies(trust: dict[str, Any]) -> None:
    src, rep = trust["src"], trust["rep"]
    provision(src, "clock-2", 42)
    result = rep.handle_batch([thing_event("clock-2", t=now_ms() + 60_000)])  # a minute fast: accepted
    assert result.results[0].outcome is Outcome.APPLIED


# -- origin ----------------------------------------------------------------------------------------
def test_an_origin_outside_the_environment_is_refused_and_never_read(trust: dict[str, Any]) -> None:
    ctx, dst, letters = trust["ctx"], trust["dst"], trust["letters"]
    foreign = client(ctx, "iot", FOREIGN)
    foreign.create_thing(thingName="intruder")
    cert = foreign.register_certificate_without_ca(certificatePem=make_pem("intruder", 43), status="ACTIVE")
    foreign.create_policy(policyName="everything", policyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}))
    foreign.attach_thing_principal(thingName="intruder", principal=cert["certificateArn"])
    foreign.attach_policy(policyName="everything", target=cert["certificateArn"])
    opened: list[str] = []
    rep = trust["rep"]
    rep.origin = lambda name: opened.append(name) or region_of(ctx, name)

    result = rep.handle_batch([thing_event("intruder", t=now_ms(), origin=FOREIGN)])
    assert result.results[0].outcome is Outcome.REFUSED
    assert "not a member region" in result.results[0].detail
    assert opened == []  # no client was opened in the foreign region
    assert missing(dst, "intruder")
    assert dst.list_certificates()["certificates"] == []
    assert [p["policyName"] for p in dst.list_policies()["policies"]] == []
    assert letters.bodies()[0]["refusedRecord"]["origin"] == FOREIGN


# -- one thing's events never interleave -----------------------------------------------------------
def test_an_older_and_a_newer_event_handled_concurrently_leave_the_newer_state(
        trust: dict[str, Any]) -> None:
    """Two invocations: the older one has checked its watermark and is about to write when the
    newer one runs. The object's lease makes the newer wait for the older, then apply over it."""
    ctx, src, dst, first = trust["ctx"], trust["src"], trust["dst"], trust["rep"]
    provision(src, "race-1", 44)
    t = now_ms()
    assert first.handle_batch([thing_event("race-1", t=t)]).failures == ()
    table = first.store.table  # type: ignore[attr-defined]
    second = Replicator(region_of(ctx, DST), DynamoAppliedStore(client(ctx, "dynamodb", DST), table),
                        lambda r: region_of(ctx, r), members=first.members)
    older = thing_event("race-1", "UPDATED", t=t + 10, version=2, attributes={"fw": "2"})
    newer = thing_event("race-1", "UPDATED", t=t + 20, version=3, attributes={"fw": "3"})
    newer_done = threading.Event()
    older_writing = threading.Event()

    def hold(**_: Any) -> None:  # the older invocation, just before its write
        older_writing.set()
        newer_done.wait(3)

    first.region.iot.client.meta.events.register("before-call.iot.UpdateThing", hold)
    results: dict[str, Any] = {}

    def run_older() -> None:
        results["older"] = first.handle_batch([older])

    thread = threading.Thread(target=run_older)
    thread.start()
    assert older_writing.wait(30)
    results["newer"] = second.handle_batch([newer])
    newer_done.set()
    thread.join(30)
    assert results["older"].failures == () and results["newer"].failures == ()
    assert dst.describe_thing(thingName="race-1")["attributes"] == {"fw": "3"}


def test_a_lease_held_by_another_invocation_fails_the_record_for_a_retry(trust: dict[str, Any]) -> None:
    src, rep = trust["src"], trust["rep"]
    provision(src, "race-2", 45)
    assert rep.store.acquire("thing/race-2", "someone-else", now_ms(), 60_000)
    rep.lease_wait_s = 0.2
    record = thing_event("race-2", t=now_ms())
    result = rep.handle_batch([record])
    assert result.failures == (record["dynamodb"]["SequenceNumber"],)
    assert "another invocation" in result.results[0].detail
    rep.store.release("thing/race-2", "someone-else")
    assert rep.handle_batch([record]).results[0].outcome is Outcome.APPLIED


# -- the same millisecond ----------------------------------------------------------------------------
def test_a_delete_and_a_re_create_in_the_same_millisecond_keep_the_thing(trust: dict[str, Any]) -> None:
    src, dst, rep = trust["src"], trust["dst"], trust["rep"]
    cert_id = provision(src, "phoenix", 46)
    t = now_ms()
    assert rep.handle_batch([thing_event("phoenix", t=t - 1000)]).failures == ()
    # in the origin the thing was deleted and created again within one millisecond: both events
    # carry the same time and version 1 (versions restart with the new thing)
    src.update_thing(thingName="phoenix", attributePayload={"attributes": {"serial": "2"}, "merge": False})
    result = rep.handle_batch([thing_event("phoenix", "DELETED", t=t, version=1),
                               thing_event("phoenix", "CREATED", t=t, version=1, attributes={"serial": "2"})])
    assert result.failures == ()
    assert dst.describe_thing(thingName="phoenix")["attributes"] == {"serial": "2"}
    assert principals(dst, "phoenix") == {cert_id}


def test_a_create_and_a_delete_in_the_same_millisecond_end_deleted(trust: dict[str, Any]) -> None:
    src, dst, rep = trust["src"], trust["dst"], trust["rep"]
    t = now_ms()
    provision(src, "mayfly", 47)
    created = thing_event("mayfly", t=t, version=1)
    deleted = thing_event("mayfly", "DELETED", t=t, version=1)
    assert rep.handle_batch([created]).failures == ()
    src.detach_thing_principal(thingName="mayfly", principal=src.list_thing_principals(
        thingName="mayfly")["principals"][0])
    src.delete_thing(thingName="mayfly")
    result = rep.handle_batch([deleted, created])  # the very same create again is stale
    assert [r.outcome for r in result.results] == [Outcome.APPLIED, Outcome.STALE]
    assert missing(dst, "mayfly")


# -- malformed records ---------------------------------------------------------------------------------
def test_records_that_are_not_objects_go_to_the_dead_letter_queue_and_the_batch_applies(
        trust: dict[str, Any]) -> None:
    src, dst, rep, letters = trust["src"], trust["dst"], trust["rep"], trust["letters"]
    provision(src, "steady-1", 48)
    no_origin = stream_record({"eventId": "x1", "eventType": "THING_EVENT", "operation": "CREATED",
                               "thingName": "steady-1", "eventTimeMs": now_ms()}, SRC)
    wrong_shape = {"dynamodb": "not an object"}
    batch = ["not a record", 42, None, wrong_shape, no_origin, thing_event("steady-1", t=now_ms())]
    result = rep.handle_batch(batch)
    assert result.response() == {"batchItemFailures": []}  # never an empty or null itemIdentifier
    assert [r.outcome for r in result.results] == [Outcome.REFUSED] * 5 + [Outcome.APPLIED]
    assert dst.describe_thing(thingName="steady-1")["thingName"] == "steady-1"
    reasons = [b["refusedRecord"]["reason"] for b in letters.bodies()]
    assert len(reasons) == 5 and any("originRegion is missing" in r for r in reasons)
    assert any("not an object" in r for r in reasons)


def test_without_a_dead_letter_queue_a_poison_record_with_a_sequence_is_retried(ctx: AwsContext) -> None:
    rep = replicator(ctx, DST)
    poison = stream_record({"eventId": "x", "eventType": "THING_EVENT", "eventTimeMs": now_ms()}, SRC)
    result = rep.handle_batch([poison, "garbage"])
    assert result.failures == (poison["dynamodb"]["SequenceNumber"],)
    assert result.results[1].outcome is Outcome.REFUSED


# -- dead letters: only the environment's own stream, and the origin's current state ----------------
def _stream_letter(ctx: AwsContext, table: str, item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Put `item` in `table` (DST) and a dead letter describing its stream record."""
    from boto3.dynamodb.types import TypeSerializer

    ddb, streams = client(ctx, "dynamodb", DST), client(ctx, "dynamodbstreams", DST)
    arn = events_table(ddb, table)["LatestStreamArn"]
    ddb.put_item(TableName=table, Item={k: TypeSerializer().serialize(v) for k, v in item.items()})
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    seq = streams.get_records(ShardIterator=it)["Records"][-1]["dynamodb"]["SequenceNumber"]
    letter = payload("dead_letter")
    letter["DDBStreamBatchInfo"].update(shardId=shard, streamArn=arn, startSequenceNumber=seq, endSequenceNumber=seq)
    return arn, letter


def test_replay_refuses_a_dead_letter_naming_another_tables_stream(trust: dict[str, Any]) -> None:
    ctx, dst, rep = trust["ctx"], trust["dst"], trust["rep"]
    provision(trust["src"], "smuggled", 49)
    events_table(client(ctx, "dynamodb", DST))  # the environment's own table
    event = payload("thing", thingName="smuggled", timestamp=now_ms(), eventId="smuggled-1")
    _, letter = _stream_letter(ctx, "someone-elses-events", rule_item(event, SRC))
    sqs = client(ctx, "sqs", DST)
    queue = sqs.create_queue(QueueName="iot-dev-replication-dlq-replay")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(letter))
    allowed = own_streams(client(ctx, "dynamodbstreams", DST), "iot-dev-registry-events")
    report = replay_dead_letters(sqs, client(ctx, "dynamodbstreams", DST), queue, rep, allowed_streams=allowed)
    assert (report.messages, report.replayed, report.refused, report.ok) == (1, 0, 1, False)
    assert missing(dst, "smuggled")


def test_replay_applies_the_origins_current_state_not_the_records(trust: dict[str, Any]) -> None:
    ctx, src, dst, rep = trust["ctx"], trust["src"], trust["dst"], trust["rep"]
    provision(src, "drifted", 50, attributes={"fw": "8"})
    event = payload("thing", thingName="drifted", timestamp=now_ms(), eventId="drifted-1", attributes={"fw": "7"})
    arn, letter = _stream_letter(ctx, "iot-dev-registry-events", rule_item(event, SRC))
    sqs = client(ctx, "sqs", DST)
    queue = sqs.create_queue(QueueName="iot-dev-replication-dlq-replay")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(letter))
    report = replay_dead_letters(sqs, client(ctx, "dynamodbstreams", DST), queue, rep,
                                 allowed_streams=frozenset({arn}))
    assert (report.replayed, report.refused) == (1, 0)
    assert dst.describe_thing(thingName="drifted")["attributes"] == {"fw": "8"}


def test_replay_refuses_a_record_from_a_foreign_origin_in_the_own_stream(trust: dict[str, Any]) -> None:
    ctx, dst, rep = trust["ctx"], trust["dst"], trust["rep"]
    event = payload("thing", thingName="stranger", timestamp=now_ms(), eventId="stranger-1")
    arn, letter = _stream_letter(ctx, "iot-dev-registry-events", rule_item(event, FOREIGN))
    sqs = client(ctx, "sqs", DST)
    queue = sqs.create_queue(QueueName="iot-dev-replication-dlq-replay")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(letter))
    report = replay_dead_letters(sqs, client(ctx, "dynamodbstreams", DST), queue, rep,
                                 allowed_streams=frozenset({arn}))
    assert (report.replayed, report.refused, report.ok) == (0, 1, False)
    assert missing(dst, "stranger")


# -- shadows: a device cannot keep its updates out; replica writes are recognised by signature -------
def hmac_signer(ctx: AwsContext) -> ShadowSigner:
    kms = client(ctx, "kms", DST)
    key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
    return ShadowSigner(kms, key)


def test_a_device_client_token_with_the_replicators_prefix_still_replicates(trust: dict[str, Any]) -> None:
    ctx, dst, rep = trust["ctx"], trust["dst"], trust["rep"]
    rep.shadow_signer = hmac_signer(ctx)
    dst.create_thing(thingName="sneaky")
    doc = payload("shadow_documents", timestamp=now_ms() // 1000, clientToken=CLIENT_TOKEN_PREFIX + "registry-sync")
    doc["current"] = {"state": {"desired": {"door": "unlocked"}}, "version": 7}
    assert rule_accepts(doc), "the shadow rules keep every update document"
    result = rep.handle_batch([stream_record(shadow_item(doc, "sneaky", SRC), SRC)])
    assert result.results[0].outcome is Outcome.APPLIED
    state = json.loads(client(ctx, "iot-data", DST).get_thing_shadow(thingName="sneaky")["payload"].read())["state"]
    assert state["desired"] == {"door": "unlocked"}


def test_a_signed_replica_write_is_recognised_as_an_echo_and_a_copied_token_is_not(
        trust: dict[str, Any]) -> None:
    ctx, dst, rep = trust["ctx"], trust["dst"], trust["rep"]
    signer = hmac_signer(ctx)
    rep.shadow_signer = signer
    dst.create_thing(thingName="echo-1")
    sent: list[dict[str, Any]] = []
    rep.region.data.client.meta.events.register(
        "before-call.iot-data.UpdateThingShadow", lambda params, **_: sent.append(json.loads(params["body"])))
    doc = payload("shadow_documents", timestamp=now_ms() // 1000)
    assert rep.handle_batch([stream_record(shadow_item(doc, "echo-1", SRC), SRC)]).results[0].outcome \
        is Outcome.APPLIED
    token = sent[0]["clientToken"]
    assert token.startswith(CLIENT_TOKEN_PREFIX) and len(token) <= 64
    # the write's own update document, as a rule records it (here: THIRD's function's write seen in DST)
    echo = {"timestamp": doc["timestamp"] + 1, "clientToken": token,
            "current": {"state": doc["current"]["state"], "version": 1}}
    assert signer.verify(token, "echo-1", "", *_state(doc["current"]["state"]))
    mirror = Replicator(rep.region, rep.store, rep.origin, members=rep.members, shadow_signer=signer)
    result = mirror.handle_batch([stream_record(shadow_item(echo, "echo-1", THIRD), THIRD)])
    assert result.results[0].outcome is Outcome.ECHO
    # a device copying the token onto a different state is not an echo: it replicates
    copied = {**echo, "timestamp": echo["timestamp"] + 1,
              "current": {"state": {"desired": {"door": "unlocked"}}, "version": 2}}
    result = mirror.handle_batch([stream_record(shadow_item(copied, "echo-1", THIRD), THIRD)])
    assert result.results[0].outcome is Outcome.APPLIED


def _state(state: dict[str, Any]) -> tuple[str | None, str | None]:
    from orchestrator.registry.snapshot import shadow_from_document

    s = shadow_from_document("echo-1", "", {"state": state})
    return s.desired, s.reported
