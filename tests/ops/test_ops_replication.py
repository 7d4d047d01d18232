"""The replication function (orchestrator.registry.replicate) as a function, against a real moto server.

Payloads are AWS's documented samples (tests/ops/data/replication_payloads.json, sources noted
there), wrapped as the topic rules write them and as DynamoDB streams deliver them.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry.events import CLIENT_TOKEN_PREFIX, EventKind, PoisonRecord, parse_record
from orchestrator.registry.replicate import Outcome, Replicator, reconcile, replay_dead_letters
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.registry_world import CallLog, device_policy, make_pem
from tests.ops.replication_world import (
    events_table,
    now_ms,
    payload,
    replicator,
    rule_accepts,
    rule_item,
    shadow_item,
    stream_record,
)


def thing_event(name: str, operation: str = "CREATED", *, t: int, version: int = 1,
                attributes: dict[str, str] | None = None, thing_type: str | None = None,
                origin: str = SRC) -> dict[str, Any]:
    event = payload("thing", thingName=name, operation=operation, timestamp=t, versionNumber=version,
                    eventId=f"{name}-{operation}-{t}-{version}", thingTypeName=thing_type,
                    attributes=attributes if attributes is not None else {"serial": "1"})
    return stream_record(rule_item(event, origin), origin)


def membership_event(group: str, thing: str, operation: str, *, t: int, origin: str = SRC) -> dict[str, Any]:
    event = payload("membership", operation=operation, timestamp=t, eventId=f"m-{group}-{thing}-{operation}-{t}",
                    groupArn=f"arn:aws:iot:{origin}:123456789012:thinggroup/{group}",
                    thingArn=f"arn:aws:iot:{origin}:123456789012:thing/{thing}")
    return stream_record(rule_item(event, origin), origin)


@pytest.fixture
def world(ctx: AwsContext) -> dict[str, Any]:
    lags: list[int] = []
    rep = replicator(ctx, DST, lags=lags)
    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    # the log counts the replicator's own calls (a separate client of the same region would see none)
    return {"rep": rep, "src": src, "dst": dst, "log": CallLog(rep.region.iot.client), "lags": lags, "ctx": ctx}


def provision(src: Any, thing: str, serial: int, *, attributes: dict[str, str] | None = None) -> str:
    """A thing with a certificate (no CA) and the device policy in the origin; the certificate id."""
    src.create_thing(thingName=thing, attributePayload={"attributes": attributes or {"serial": "1"}})
    cert = src.register_certificate_without_ca(certificatePem=make_pem(thing, serial), status="ACTIVE")
    try:
        src.create_policy(policyName="device", policyDocument=device_policy())
    except src.exceptions.ResourceAlreadyExistsException:
        pass
    src.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    src.attach_policy(policyName="device", target=cert["certificateArn"])
    return str(cert["certificateId"])


def principals(iot: Any, thing: str) -> set[str]:
    return {a.rsplit("/", 1)[1] for a in iot.list_thing_principals(thingName=thing)["principals"]}


# -- parsing the documented shapes -------------------------------------------------------------
@pytest.mark.parametrize("kind, expected, name", [
    ("thing", EventKind.THING, "MyThing"),
    ("thing_type", EventKind.THING_TYPE, "MyThingType"),
    ("thing_group", EventKind.THING_GROUP, "Tg_level5"),
    ("membership", EventKind.MEMBERSHIP, "Tg_level5/MyThing"),
])
def test_documented_registry_payloads_parse(kind: str, expected: EventKind, name: str) -> None:
    event = parse_record(stream_record(rule_item(payload(kind), SRC), SRC, sequence="7"))
    assert event is not None
    assert (event.kind, event.name, event.origin, event.sequence) == (expected, name, SRC, "7")
    assert event.order[0] == payload(kind)["timestamp"]


def test_documented_shadow_document_parses_with_seconds_as_milliseconds() -> None:
    doc = payload("shadow_documents")
    event = parse_record(stream_record(shadow_item(doc, "MyThing", SRC, "config"), SRC))
    assert event is not None and event.kind is EventKind.SHADOW
    assert event.name == "MyThing/config" and event.order == (1469529571000, 2)
    assert event.body["current"]["state"]["desired"] == {"color": "blue"}


def test_the_documented_stream_record_alone_is_poison_and_a_removal_is_nothing() -> None:
    with pytest.raises(PoisonRecord, match="unknown eventType"):
        parse_record(payload("stream_record"))
    removal = payload("stream_record", eventName="REMOVE")
    removal["dynamodb"] = {k: v for k, v in removal["dynamodb"].items() if k != "NewImage"}
    assert parse_record(removal) is None


# -- things, certificates, policies ------------------------------------------------------------
def test_thing_event_creates_the_thing_and_catches_up_certificate_policy_and_attachments(
        world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    cert_id = provision(src, "meter-1", 11, attributes={"serial": "1", "site": "dub"})
    result = rep.handle_batch([thing_event("meter-1", t=now_ms(), attributes={"serial": "1", "site": "dub"})])
    assert result.failures == () and result.results[0].outcome is Outcome.APPLIED
    assert dst.describe_thing(thingName="meter-1")["attributes"] == {"serial": "1", "site": "dub"}
    d = dst.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert d["certificateId"] == cert_id and d["status"] == "ACTIVE"  # same id, registered without a CA
    assert principals(dst, "meter-1") == {cert_id}
    assert [p["policyName"] for p in dst.list_attached_policies(target=d["certificateArn"])["policies"]] == ["device"]
    assert len(world["lags"]) == 1 and 0 <= world["lags"][0] < 60_000


def test_a_duplicate_is_a_no_op_with_no_write(world: dict[str, Any]) -> None:
    src, rep, log = world["src"], world["rep"], world["log"]
    provision(src, "meter-2", 12)
    record = thing_event("meter-2", t=now_ms())
    rep.handle_batch([record])
    assert log.writes > 0  # the log sees the function's writes
    log.reset()
    again = rep.handle_batch([record, record])
    assert [r.outcome for r in again.results] == [Outcome.STALE, Outcome.STALE]
    assert log.writes == 0


def test_out_of_order_an_older_event_never_overwrites_a_newer_state(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    provision(src, "meter-3", 13)
    t = now_ms()
    newer = thing_event("meter-3", "UPDATED", t=t + 50, version=3, attributes={"fw": "3"})
    older = thing_event("meter-3", "UPDATED", t=t + 10, version=2, attributes={"fw": "2"})
    created = thing_event("meter-3", "CREATED", t=t, version=1, attributes={"fw": "1"})
    result = rep.handle_batch([newer, older, created])
    assert [r.outcome for r in result.results] == [Outcome.APPLIED, Outcome.STALE, Outcome.STALE]
    assert dst.describe_thing(thingName="meter-3")["attributes"] == {"fw": "3"}


def test_delete_then_a_late_create_of_the_same_thing_stays_deleted(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    cert_id = provision(src, "meter-4", 14)
    t = now_ms()
    rep.handle_batch([thing_event("meter-4", t=t)])
    assert principals(dst, "meter-4") == {cert_id}
    result = rep.handle_batch([thing_event("meter-4", "DELETED", t=t + 100, version=1),
                               thing_event("meter-4", "UPDATED", t=t + 50, version=2)])
    assert [r.outcome for r in result.results] == [Outcome.APPLIED, Outcome.STALE]
    with pytest.raises(dst.exceptions.ResourceNotFoundException):
        dst.describe_thing(thingName="meter-4")
    # the certificate stays (another thing may use it); only the attachment went with the thing
    assert dst.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "ACTIVE"


def test_certificate_rotation_attaches_the_new_and_detaches_the_old(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    old = provision(src, "meter-5", 15)
    t = now_ms()
    rep.handle_batch([thing_event("meter-5", t=t)])
    new = src.register_certificate_without_ca(certificatePem=make_pem("meter-5b", 16), status="ACTIVE")
    src.attach_thing_principal(thingName="meter-5", principal=new["certificateArn"])
    src.attach_policy(policyName="device", target=new["certificateArn"])
    old_arn = src.describe_certificate(certificateId=old)["certificateDescription"]["certificateArn"]
    src.detach_thing_principal(thingName="meter-5", principal=old_arn)
    # rotation fires no certificate event; the thing's next event (any update) carries it over
    result = rep.handle_batch([thing_event("meter-5", "UPDATED", t=t + 10, version=2)])
    assert result.failures == ()
    assert principals(dst, "meter-5") == {new["certificateId"]}
    assert dst.describe_certificate(certificateId=old)["certificateDescription"]["certificateId"] == old


def test_a_thing_event_carries_a_detached_policy_and_a_revocation(world: dict[str, Any]) -> None:
    """Tightening in continuous replication (issue 19, item 2): the origin detached the device
    policy from the thing's certificate and revoked it; the thing's next event detaches and revokes
    in the destination too (before: the policy stayed attached and the certificate ACTIVE)."""
    src, dst, rep = world["src"], world["dst"], world["rep"]
    cert = provision(src, "meter-8", 19)
    t = now_ms()
    rep.handle_batch([thing_event("meter-8", t=t)])
    dst_arn = dst.describe_certificate(certificateId=cert)["certificateDescription"]["certificateArn"]
    assert [p["policyName"] for p in dst.list_attached_policies(target=dst_arn)["policies"]] == ["device"]
    src_arn = src.describe_certificate(certificateId=cert)["certificateDescription"]["certificateArn"]
    src.detach_policy(policyName="device", target=src_arn)
    src.update_certificate(certificateId=cert, newStatus="REVOKED")

    result = rep.handle_batch([thing_event("meter-8", "UPDATED", t=t + 10, version=2)])

    assert result.failures == ()
    assert dst.list_attached_policies(target=dst_arn)["policies"] == []
    assert dst.describe_certificate(certificateId=cert)["certificateDescription"]["status"] == "REVOKED"
    assert principals(dst, "meter-8") == {cert}  # still attached in the origin: kept


def test_an_item_from_the_functions_own_region_is_ignored(world: dict[str, Any]) -> None:
    rep, dst, log = world["rep"], world["dst"], world["log"]
    result = rep.handle_batch([thing_event("local-1", t=now_ms(), origin=DST)])
    assert result.results[0].outcome is Outcome.OWN_ORIGIN
    assert log.writes == 0
    with pytest.raises(dst.exceptions.ResourceNotFoundException):
        dst.describe_thing(thingName="local-1")


def test_a_poison_item_goes_to_batch_item_failures_while_the_rest_applies(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    provision(src, "meter-6", 17)
    provision(src, "meter-7", 18)
    t = now_ms()
    poison = stream_record({"eventId": "x", "eventType": "SOMETHING_ELSE", "originRegion": SRC,
                            "eventTimeMs": t}, SRC)
    unappliable = membership_event("no-such-group", "meter-6", "ADDED", t=t)
    batch = [thing_event("meter-6", t=t), poison, unappliable, thing_event("meter-7", t=t)]
    result = rep.handle_batch(batch)
    assert result.response() == {"batchItemFailures": [
        {"itemIdentifier": poison["dynamodb"]["SequenceNumber"]},
        {"itemIdentifier": unappliable["dynamodb"]["SequenceNumber"]}]}
    assert {dst.describe_thing(thingName=n)["thingName"] for n in ("meter-6", "meter-7")} == {"meter-6", "meter-7"}


def test_an_event_for_a_thing_not_yet_in_the_destination_fails_then_applies_on_retry(
        world: dict[str, Any]) -> None:
    """Membership before the thing exists: the record fails (Lambda retries it); the retry applies."""
    src, dst, rep = world["src"], world["dst"], world["rep"]
    provision(src, "meter-8", 19)
    src.create_thing_group(thingGroupName="fleet")
    dst.create_thing_group(thingGroupName="fleet")
    t = now_ms()
    membership = membership_event("fleet", "meter-8", "ADDED", t=t + 5)
    assert rep.handle_batch([membership]).failures == (membership["dynamodb"]["SequenceNumber"],)
    rep.handle_batch([thing_event("meter-8", t=t)])
    assert rep.handle_batch([membership]).failures == ()
    groups = dst.list_thing_groups_for_thing(thingName="meter-8")["thingGroups"]
    assert [g["groupName"] for g in groups] == ["fleet"]
    removed = rep.handle_batch([membership_event("fleet", "meter-8", "REMOVED", t=t + 9)])
    assert removed.results[0].outcome is Outcome.APPLIED
    assert dst.list_thing_groups_for_thing(thingName="meter-8")["thingGroups"] == []


# -- thing types and groups --------------------------------------------------------------------
def test_thing_type_create_deprecate_delete(world: dict[str, Any]) -> None:
    dst, rep = world["dst"], world["rep"]
    t = now_ms()

    def event(operation: str, at: int, deprecated: bool) -> dict[str, Any]:
        e = payload("thing_type", operation=operation, timestamp=at, isDeprecated=deprecated, eventId=f"tt-{at}")
        return stream_record(rule_item(e, SRC), SRC)

    assert rep.handle_batch([event("CREATED", t, False)]).failures == ()
    d = dst.describe_thing_type(thingTypeName="MyThingType")
    assert d["thingTypeProperties"]["searchableAttributes"] == ["attribute1", "attribute2", "attribute3"]
    assert rep.handle_batch([event("UPDATED", t + 1, True)]).results[0].outcome is Outcome.APPLIED
    assert dst.describe_thing_type(thingTypeName="MyThingType")["thingTypeMetadata"]["deprecated"] is True
    assert rep.handle_batch([event("DELETED", t + 2, True)]).failures == ()
    with pytest.raises(dst.exceptions.ResourceNotFoundException):
        dst.describe_thing_type(thingTypeName="MyThingType")


def test_thing_group_create_update_delete(world: dict[str, Any]) -> None:
    dst, rep = world["dst"], world["rep"]
    t = now_ms()

    def event(operation: str, at: int, version: int, **changes: Any) -> dict[str, Any]:
        e = payload("thing_group", operation=operation, timestamp=at, versionNumber=version, eventId=f"g-{at}",
                    **changes)
        return stream_record(rule_item(e, SRC), SRC)

    assert rep.handle_batch([event("CREATED", t, 1)]).failures == ()
    d = dst.describe_thing_group(thingGroupName="Tg_level5")
    assert d["thingGroupProperties"]["thingGroupDescription"] == "New description for Tg_level5"
    rep.handle_batch([event("UPDATED", t + 1, 2, description="v2", attributes={"site": "dub"})])
    props = dst.describe_thing_group(thingGroupName="Tg_level5")["thingGroupProperties"]
    assert props["thingGroupDescription"] == "v2" and props["attributePayload"]["attributes"] == {"site": "dub"}
    rep.handle_batch([event("DELETED", t + 2, 2)])
    with pytest.raises(dst.exceptions.ResourceNotFoundException):
        dst.describe_thing_group(thingGroupName="Tg_level5")


# -- shadows -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shadow", ["", "config"])
def test_shadow_documents_reach_the_destination_with_the_sync_client_token(
        world: dict[str, Any], shadow: str) -> None:
    ctx, dst, rep = world["ctx"], world["dst"], world["rep"]
    dst.create_thing(thingName="MyThing")
    data = client(ctx, "iot-data", DST)
    sent: list[dict[str, Any]] = []
    rep.region.data.client.meta.events.register(
        "before-call.iot-data.UpdateThingShadow", lambda params, **_: sent.append(json.loads(params["body"])))
    # the documented sample, stamped now (a 2016 event time is older than the table keeps items)
    doc = payload("shadow_documents", timestamp=now_ms() // 1000)
    result = rep.handle_batch([stream_record(shadow_item(doc, "MyThing", SRC, shadow), SRC)])
    assert result.results[0].outcome is Outcome.APPLIED
    kwargs = {"thingName": "MyThing", **({"shadowName": shadow} if shadow else {})}
    state = json.loads(data.get_thing_shadow(**kwargs)["payload"].read())["state"]
    state.pop("delta", None)  # computed by the service (desired differs from reported)
    assert state == {"desired": {"color": "blue"}, "reported": {"color": "red"}}
    assert len(sent) == 1 and sent[0]["clientToken"].startswith(CLIENT_TOKEN_PREFIX)
    assert rule_accepts(sent[0]), "the rules keep every document; echoes are recognised by signature"
    # the next version removes a key and adds one: the removed key is deleted (null), and a replay
    # writes nothing. (A whole section removed is written as a null section, which AWS deletes and
    # moto 5.2.5 does not: not exercised here.)
    newer = {**doc, "timestamp": doc["timestamp"] + 1,
             "current": {"state": {"desired": {"mode": "eco"}, "reported": {"color": "red"}}, "version": 3}}
    rep.handle_batch([stream_record(shadow_item(newer, "MyThing", SRC, shadow), SRC)])
    state = json.loads(data.get_thing_shadow(**kwargs)["payload"].read())["state"]
    state.pop("delta", None)
    assert state == {"desired": {"mode": "eco"}, "reported": {"color": "red"}}
    again = rep.handle_batch([stream_record(shadow_item(newer, "MyThing", SRC, shadow), SRC)])
    assert again.results[0].outcome is Outcome.STALE and len(sent) == 2


# -- latency mode: writes in every region, each change applied once per region --------------------
class LoopWorld:
    """Three regions, each with a function; registry writes in a region publish registry events
    there (moto has none: a botocore hook plays the registry and the rule), shadow writes publish
    update documents that the rule filters (`rule_accepts`); every item reaches every region's
    stream (the global table)."""

    WRITES = {"CreateThing": "CREATED", "UpdateThing": "UPDATED", "DeleteThing": "DELETED"}

    def __init__(self, ctx: AwsContext, regions: tuple[str, ...]) -> None:
        self.ctx = ctx
        self.reps: dict[str, Replicator] = {r: replicator(ctx, r) for r in regions}
        self.users = {r: client(ctx, "iot", r) for r in regions}
        self.pending: list[dict[str, Any]] = []
        self.writes: Counter[tuple[str, str]] = Counter()
        self.versions: Counter[str] = Counter()
        for region in regions:
            for iot in (self.reps[region].region.iot.client, self.users[region]):
                iot.meta.events.register("provide-client-params.iot", self._keep_params)
                iot.meta.events.register("after-call.iot", self._publisher(region))

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def _publisher(self, region: str) -> Any:
        def after(event_name: str, context: dict[str, Any], http_response: Any, **_: Any) -> None:
            op = event_name.rsplit(".", 1)[-1]
            if op not in self.WRITES or http_response.status_code != 200:
                return
            params = context["api_params"]
            self.writes[(region, op)] += 1
            name = params["thingName"]
            self.versions[f"{region}/{name}"] += 1
            e = payload("thing", operation=self.WRITES[op], thingName=name, timestamp=now_ms(),
                        versionNumber=self.versions[f"{region}/{name}"], eventId=f"{region}-{name}-{len(self.writes)}",
                        attributes=(params.get("attributePayload") or {}).get("attributes", {}),
                        thingTypeName=params.get("thingTypeName"))
            self.pending.append(rule_item(e, region))
        return after

    def run(self, max_rounds: int = 50) -> int:
        rounds = 0
        while self.pending and rounds < max_rounds:
            rounds += 1
            item = self.pending.pop(0)
            for region, rep in self.reps.items():
                assert rep.handle_batch([stream_record(item, region)]).failures == ()
        assert not self.pending, f"replication did not die out within {max_rounds} rounds"
        return rounds


def test_latency_mode_each_change_is_applied_once_per_region_and_dies_out(ctx: AwsContext) -> None:
    w = LoopWorld(ctx, (SRC, DST, THIRD))
    w.users[SRC].create_thing(thingName="roamer", attributePayload={"attributes": {"fw": "1"}})
    w.run()
    assert w.writes == Counter({(SRC, "CreateThing"): 1, (DST, "CreateThing"): 1, (THIRD, "CreateThing"): 1})
    w.writes.clear()
    w.users[DST].update_thing(thingName="roamer", attributePayload={"attributes": {"fw": "2"}, "merge": False})
    w.run()
    assert w.writes == Counter({(DST, "UpdateThing"): 1, (SRC, "UpdateThing"): 1, (THIRD, "UpdateThing"): 1})
    for region in (SRC, DST, THIRD):
        assert w.users[region].describe_thing(thingName="roamer")["attributes"] == {"fw": "2"}


# -- reconciliation and dead letters ---------------------------------------------------------------
def test_reconciliation_copies_what_events_missed_and_keeps_its_result(world: dict[str, Any]) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    cert_id = provision(src, "quiet-1", 21)
    result = reconcile(rep, SRC)
    assert result["ok"] is True and result["applied"] >= 4 and result["from"] == SRC
    assert principals(dst, "quiet-1") == {cert_id}
    assert rep.store.reconciliation() == result


def test_replay_from_the_dead_letter_queue_reads_the_batch_from_the_stream(world: dict[str, Any]) -> None:
    ctx, src, dst, rep = world["ctx"], world["src"], world["dst"], world["rep"]
    provision(src, "late-1", 22)
    ddb, streams, sqs = (client(ctx, s, DST) for s in ("dynamodb", "dynamodbstreams", "sqs"))
    table = events_table(ddb)
    record = thing_event("late-1", t=now_ms())
    ddb.put_item(TableName="iot-dev-registry-events", Item=record["dynamodb"]["NewImage"])
    stream_arn = table["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    seq = streams.get_records(ShardIterator=iterator)["Records"][0]["dynamodb"]["SequenceNumber"]
    queue = sqs.create_queue(QueueName="iot-dev-replication-dlq")["QueueUrl"]
    letter = payload("dead_letter")
    letter["DDBStreamBatchInfo"].update(shardId=shard["ShardId"], streamArn=stream_arn,
                                        startSequenceNumber=seq, endSequenceNumber=seq)
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(letter))
    gone = payload("dead_letter")
    # records the stream no longer holds (past its 24 h retention)
    gone["DDBStreamBatchInfo"].update(streamArn=stream_arn, shardId=shard["ShardId"],
                                      startSequenceNumber=str(int(seq) + 500), endSequenceNumber=str(int(seq) + 501))
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(gone))

    report = replay_dead_letters(sqs, streams, queue, rep, allowed_streams=frozenset({stream_arn}))
    assert (report.messages, report.replayed, report.records, report.expired) == (2, 1, 1, 1)
    assert dst.describe_thing(thingName="late-1")["thingName"] == "late-1"
    left = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages",
                                                                    "ApproximateNumberOfMessagesNotVisible"])
    assert sum(int(v) for v in left["Attributes"].values()) == 1  # the expired one stays, for a human


def test_a_shadow_update_for_a_thing_not_yet_in_the_destination_fails_and_is_retried(
        world: dict[str, Any]) -> None:
    dst, rep = world["dst"], world["rep"]
    record = stream_record(shadow_item(payload("shadow_documents", timestamp=now_ms() // 1000), "late-thing", SRC),
                           SRC)
    first = rep.handle_batch([record])
    assert first.failures == (record["dynamodb"]["SequenceNumber"],)
    assert "does not exist" in first.results[0].detail
    dst.create_thing(thingName="late-thing")  # its own event arrived meanwhile
    assert rep.handle_batch([record]).results[0].outcome is Outcome.APPLIED


def test_the_lambda_entry_point_configured_from_its_environment(
        ctx: AwsContext, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`handler` as Lambda calls it: configuration from the environment, a stream batch, then the
    scheduled reconciliation; the lag goes to CloudWatch."""
    import orchestrator.registry.replicate as replicate
    from tests.ops.replication_world import applied_table

    table = applied_table(ctx, DST, "iot-dev-replication-applied-x")
    queue = client(ctx, "sqs", DST).create_queue(QueueName="iot-dev-replication-dlq-x")["QueueUrl"]
    for key, value in {"AWS_REGION": DST, "REPLICATION_ENV": "dev", "APPLIED_TABLE": table,
                       "MEMBER_REGIONS": f"{SRC},{DST}", "DEAD_LETTER_QUEUE_URL": queue,
                       "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(replicate, "_REPLICATOR", None)
    src = client(ctx, "iot", SRC)
    cert_id = provision(src, "entry-1", 31)
    record = thing_event("entry-1", t=now_ms())
    assert replicate.handler({"Records": [record]}, None) == {"batchItemFailures": []}
    assert principals(client(ctx, "iot", DST), "entry-1") == {cert_id}
    provision(src, "entry-2", 32)
    outcome = replicate.handler({"reconcile": {"from": SRC}}, None)
    assert outcome["ok"] is True and outcome["applied"] >= 1
    assert client(ctx, "iot", DST).describe_thing(thingName="entry-2")["thingName"] == "entry-2"
    metrics = client(ctx, "cloudwatch", DST).list_metrics(Namespace="IotPlatform/Replication")["Metrics"]
    assert [m["MetricName"] for m in metrics] == ["ReplicationLag"]
    with pytest.raises(ValueError, match="unknown event"):
        replicate.handler({"something": 1}, None)
