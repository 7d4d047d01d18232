"""Continuous replication of MQTT retained messages under the configured prefixes (issue 25, item 3):
the retained rules' items (tests/ops/replication_world.py `retained_item`) applied by the function
(orchestrator/registry/replicate.py `Replicator._retained`) against the moto server with the local
world's retained-message API (orchestrator/drill/world/retained_plane.py).

What is asserted: a retained publish in the origin is republished retained in the destination
(payload, QoS, user properties; plus the function's signed `orchestrate-replica` token); the
republish's echo is recognised in every other region and never applied back; an empty retained
publish (a clear) clears; an older event never overwrites a newer message, and a message the
destination holds from after the origin's is kept; a payload over IoT Core's 128 KB message limit and
a topic outside the prefixes are dead letters with the reason; a publish that was not retained
changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry.events import REPLICA_PROPERTY
from orchestrator.registry.replicate import MAX_RETAINED_PAYLOAD, Outcome, Replicator
from orchestrator.registry.retained import RetainedMessage
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.replication_world import now_ms, replicator, retained_item, stream_record
from tests.ops.test_ops_replication_trust import DeadLetters, hmac_signer

PREFIXES = ("config/",)


def record(topic: str, payload: bytes, origin: str = SRC, *, t_ms: int | None = None,
           token: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    item = retained_item(topic, payload, origin, t_ms=now_ms() if t_ms is None else t_ms, token=token,
                         event_id=event_id)
    return stream_record(item, origin)


def get(data: Any, topic: str) -> RetainedMessage | None:
    try:
        got = data.get_retained_message(topic=topic)
    except data.exceptions.ResourceNotFoundException:
        return None
    props = got.get("userProperties")
    return RetainedMessage(topic, got["payload"], int(got.get("qos") or 0), bytes(props) if props else None)


def token_of(message: RetainedMessage) -> str:
    (value,) = [v for row in json.loads(message.user_properties or b"[]") for k, v in row.items()
                if k == REPLICA_PROPERTY]
    return str(value)


@pytest.fixture
def world(ctx: AwsContext) -> dict[str, Any]:
    letters = DeadLetters(ctx)
    rep = replicator(ctx, DST, dead_letter=letters)
    rep.shadow_signer = hmac_signer(ctx)
    rep.retained_prefixes = PREFIXES
    publishes: list[str] = []
    rep.region.data.client.meta.events.register(
        "before-call.iot-data.Publish", lambda params, **_: publishes.append(params["url_path"]))
    return {"rep": rep, "letters": letters, "src": client(ctx, "iot-data", SRC),
            "dst": client(ctx, "iot-data", DST), "third": client(ctx, "iot-data", THIRD),
            "publishes": publishes, "ctx": ctx}


def test_a_retained_publish_is_republished_retained_with_qos_and_user_properties(world: dict[str, Any]) -> None:
    rep, src, dst = world["rep"], world["src"], world["dst"]
    src.publish(topic="config/dev-1", payload=b'{"interval": 30}', qos=1, retain=True,
                userProperties=[{"schema": "v2"}])
    event = record("config/dev-1", b'{"interval": 30}')
    calls: list[str] = []
    for region in (rep.region, rep._source(SRC)):
        region.data.client.meta.events.register(
            "before-call.iot-data", lambda model, r=region.name, **_: calls.append(f"{r}:{model.name}"))
    result = rep.handle_batch([event])
    assert result.results[0].outcome is Outcome.APPLIED, result.results[0]
    here, there = get(dst, "config/dev-1"), get(src, "config/dev-1")
    assert here is not None and there is not None and here.same(there)
    assert (here.payload, here.qos) == (b'{"interval": 30}', 1)
    assert ["schema", REPLICA_PROPERTY] == [k for row in json.loads(here.user_properties or b"") for k in row]
    # per change (docs/registry.md): one read in the origin; here a read, the publish, the read-back
    assert sorted(calls) == sorted([f"{SRC}:GetRetainedMessage", f"{DST}:GetRetainedMessage", f"{DST}:Publish",
                                    f"{DST}:GetRetainedMessage"])
    # the same record again (a retry) is stale; a later publish of the same message writes nothing
    assert rep.handle_batch([event]).results[0].outcome is Outcome.STALE
    again = rep.handle_batch([record("config/dev-1", b'{"interval": 30}')])
    assert again.results[0].outcome is Outcome.UNCHANGED and len(world["publishes"]) == 1


def test_the_republishs_echo_is_recognised_everywhere_and_a_copied_token_is_not(
        ctx: AwsContext, world: dict[str, Any]) -> None:
    rep, src, dst, third = world["rep"], world["src"], world["dst"], world["third"]
    src.publish(topic="config/dev-2", payload=b"v1", qos=0, retain=True)
    assert rep.handle_batch([record("config/dev-2", b"v1")]).results[0].outcome is Outcome.APPLIED
    token = token_of(get(dst, "config/dev-2") or RetainedMessage("", b""))
    # the destination's rule records the republish (origin DST) for the functions of the other
    # regions (latency mode: the origin's own function too): each recognises it and writes nothing
    src.publish(topic="config/dev-2", payload=b"v2", qos=0, retain=True)  # the origin moved on meanwhile
    for region in (SRC, THIRD):
        other = replicator(ctx, region)
        other.shadow_signer, other.retained_prefixes = rep.shadow_signer, PREFIXES
        echo = record("config/dev-2", b"v1", DST, token=token)
        assert other.handle_batch([echo]).results[0].outcome is Outcome.ECHO
    assert (get(src, "config/dev-2") or RetainedMessage("", b"")).payload == b"v2"  # not put back to v1
    # a device copying the token onto another payload is not an echo: it replicates
    third.publish(topic="config/dev-2", payload=b"device-v3", qos=0, retain=True)
    copied = record("config/dev-2", b"device-v3", THIRD, token=token)
    assert rep.handle_batch([copied]).results[0].outcome is Outcome.APPLIED
    assert (get(dst, "config/dev-2") or RetainedMessage("", b"")).payload == b"device-v3"


def test_an_empty_retained_publish_clears_the_topic_in_the_destination(world: dict[str, Any]) -> None:
    rep, src, dst = world["rep"], world["src"], world["dst"]
    src.publish(topic="config/dev-3", payload=b"on", retain=True)
    assert rep.handle_batch([record("config/dev-3", b"on")]).results[0].outcome is Outcome.APPLIED
    src.publish(topic="config/dev-3", payload=b"", retain=True)  # AWS: deletes the retained message
    assert get(src, "config/dev-3") is None
    assert rep.handle_batch([record("config/dev-3", b"")]).results[0].outcome is Outcome.APPLIED
    assert get(dst, "config/dev-3") is None
    # nothing left to clear: no publish
    assert rep.handle_batch([record("config/dev-3", b"")]).results[0].outcome is Outcome.UNCHANGED
    assert len(world["publishes"]) == 2


def test_an_older_event_never_overwrites_a_newer_retained_message(world: dict[str, Any]) -> None:
    rep, src, dst = world["rep"], world["src"], world["dst"]
    t = now_ms()
    src.publish(topic="config/dev-4", payload=b"old", retain=True)
    src.publish(topic="config/dev-4", payload=b"new", retain=True)
    assert rep.handle_batch([record("config/dev-4", b"new", t_ms=t)]).results[0].outcome is Outcome.APPLIED
    late = rep.handle_batch([record("config/dev-4", b"old", t_ms=t - 5)])
    assert late.results[0].outcome is Outcome.STALE
    assert (get(dst, "config/dev-4") or RetainedMessage("", b"")).payload == b"new"


def test_a_message_published_here_after_the_origins_is_kept(world: dict[str, Any]) -> None:
    rep, src, dst = world["rep"], world["src"], world["dst"]
    src.publish(topic="config/dev-5", payload=b"from-primary", retain=True)
    t = now_ms()
    dst.publish(topic="config/dev-5", payload=b"set-here-after-failover", retain=True)
    result = rep.handle_batch([record("config/dev-5", b"from-primary", t_ms=t)])
    assert result.results[0].outcome is Outcome.KEPT, result.results[0]
    assert (get(dst, "config/dev-5") or RetainedMessage("", b"")).payload == b"set-here-after-failover"
    assert world["publishes"] == []


def test_our_own_republish_is_not_newer_than_a_source_change_made_while_we_wrote(world: dict[str, Any]) -> None:
    rep, src, dst = world["rep"], world["src"], world["dst"]
    src.publish(topic="config/dev-6", payload=b"v1", retain=True)
    changed: list[bool] = []

    def source_changes_first(**_: Any) -> None:  # the origin's v2 lands just before our v1 does
        if not changed:
            changed.append(True)
            src.publish(topic="config/dev-6", payload=b"v2", retain=True)

    rep.region.data.client.meta.events.register("before-call.iot-data.Publish", source_changes_first)
    t = now_ms()
    assert rep.handle_batch([record("config/dev-6", b"v1", t_ms=t)]).results[0].outcome is Outcome.APPLIED
    assert (get(dst, "config/dev-6") or RetainedMessage("", b"")).payload == b"v1"  # what it read
    # v2's event: older than our republish by the clocks, but our republish is no newer state
    result = rep.handle_batch([record("config/dev-6", b"v2", t_ms=t + 1)])
    assert result.results[0].outcome is Outcome.APPLIED, result.results[0]
    assert (get(dst, "config/dev-6") or RetainedMessage("", b"")).payload == b"v2"


def test_a_payload_over_the_message_limit_is_a_dead_letter_with_the_reason(world: dict[str, Any]) -> None:
    rep = world["rep"]
    big = b"x" * (MAX_RETAINED_PAYLOAD + 1)
    result = rep.handle_batch([record("config/huge", big)])
    assert result.results[0].outcome is Outcome.REFUSED and result.failures == ()
    (letter,) = world["letters"].bodies()
    reason = letter["refusedRecord"]["reason"]
    assert f"payload of {len(big)} bytes" in reason and "128 KB" not in reason
    assert f"over IoT Core's {MAX_RETAINED_PAYLOAD}-byte message size limit" in reason
    assert world["publishes"] == [] and get(world["dst"], "config/huge") is None
    assert rep.store.get("retained/config/huge") is None  # never a watermark


def test_a_topic_outside_the_configured_prefixes_is_refused_and_never_read(world: dict[str, Any]) -> None:
    rep, src = world["rep"], world["src"]
    src.publish(topic="telemetry/dev-7", payload=b"1", retain=True)
    reads: list[str] = []
    rep.region.data.client.meta.events.register("before-call.iot-data.GetRetainedMessage",
                                                lambda **_: reads.append("x"))
    result = rep.handle_batch([record("telemetry/dev-7", b"1")])
    assert result.results[0].outcome is Outcome.REFUSED
    assert "not under the configured prefixes (config/)" in world["letters"].bodies()[0]["refusedRecord"]["reason"]
    assert reads == [] and world["publishes"] == []


def test_a_publish_that_was_not_retained_changes_nothing(world: dict[str, Any]) -> None:
    rep, src = world["rep"], world["src"]
    src.publish(topic="config/dev-8", payload=b"retained", retain=True)
    assert rep.handle_batch([record("config/dev-8", b"retained")]).results[0].outcome is Outcome.APPLIED
    src.publish(topic="config/dev-8", payload=b"just-a-message")  # retain=false: the rule still fires
    result = rep.handle_batch([record("config/dev-8", b"just-a-message")])
    assert result.results[0].outcome is Outcome.UNCHANGED
    assert (get(world["dst"], "config/dev-8") or RetainedMessage("", b"")).payload == b"retained"
    assert len(world["publishes"]) == 1


def test_without_the_signing_key_a_retained_event_fails_rather_than_loop(ctx: AwsContext) -> None:
    rep = replicator(ctx, DST)
    rep.retained_prefixes = PREFIXES
    client(ctx, "iot-data", SRC).publish(topic="config/dev-9", payload=b"1", retain=True)
    result = rep.handle_batch([record("config/dev-9", b"1")])
    assert result.results[0].outcome is Outcome.FAILED and "SHADOW_TOKEN_KEY" in result.results[0].detail
    assert isinstance(rep, Replicator)


def test_the_lambda_entry_point_carries_retained_messages_from_its_environment(
        ctx: AwsContext, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`handler` as Lambda calls it: RETAINED_TOPICS (JSON, from the stack) and the signing key
    from the environment; a retained record applied, its echo skipped; a bad setting refused."""
    import orchestrator.registry.replicate as replicate
    from tests.ops.replication_world import applied_table

    table = applied_table(ctx, DST, "iot-dev-replication-applied-r")
    queue = client(ctx, "sqs", DST).create_queue(QueueName="iot-dev-replication-dlq-r")["QueueUrl"]
    key = client(ctx, "kms", DST).create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
    for name, value in {"AWS_REGION": DST, "REPLICATION_ENV": "dev", "APPLIED_TABLE": table,
                        "MEMBER_REGIONS": f"{SRC},{DST},{THIRD}", "DEAD_LETTER_QUEUE_URL": queue,
                        "SHADOW_TOKEN_KEY": key, "RETAINED_TOPICS": json.dumps(list(PREFIXES)),
                        "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(replicate, "_REPLICATOR", None)
    src, dst = client(ctx, "iot-data", SRC), client(ctx, "iot-data", DST)
    src.publish(topic="config/entry-1", payload=b"cfg", qos=1, retain=True)
    assert replicate.handler({"Records": [record("config/entry-1", b"cfg")]}, None) == {"batchItemFailures": []}
    here = get(dst, "config/entry-1")
    assert here is not None and here.payload == b"cfg" and here.qos == 1
    echo = record("config/entry-1", b"cfg", THIRD, token=token_of(here))
    assert replicate.handler({"Records": [echo]}, None) == {"batchItemFailures": []}
    # applied as a change, THIRD's (absent) retained message would have cleared the topic here
    assert get(dst, "config/entry-1") == here
    assert replicate._REPLICATOR is not None and replicate._REPLICATOR.retained_prefixes == PREFIXES
    monkeypatch.setenv("RETAINED_TOPICS", '"config/"')
    with pytest.raises(ValueError, match="RETAINED_TOPICS"):
        replicate.from_environment()


def test_a_message_published_here_between_our_republish_and_its_read_back_is_superseded_not_failed(
        world: dict[str, Any]) -> None:
    rep, src, dst = world["rep"], world["src"], world["dst"]
    src.publish(topic="config/dev-10", payload=b"from-primary", retain=True)
    device = client(world["ctx"], "iot-data", DST)

    def operator_publishes_here(**_: Any) -> None:
        device.publish(topic="config/dev-10", payload=b"set-here", retain=True)

    rep.region.data.client.meta.events.register("after-call.iot-data.Publish", operator_publishes_here)
    result = rep.handle_batch([record("config/dev-10", b"from-primary")])
    assert result.results[0].outcome is Outcome.KEPT, result.results[0]
    assert result.failures == () and (get(dst, "config/dev-10") or RetainedMessage("", b"")).payload == b"set-here"


def test_a_republish_that_did_not_take_is_a_failure_and_retried(world: dict[str, Any]) -> None:
    rep, src = world["rep"], world["src"]
    src.publish(topic="config/dev-11", payload=b"v1", retain=True)

    def lost(params: dict[str, Any], **_: Any) -> None:  # the publish goes out without RETAIN
        assert "retain=true" in params["url"]
        params["url"] = params["url"].replace("retain=true", "retain=false")

    rep.region.data.client.meta.events.register("before-call.iot-data.Publish", lost)
    result = rep.handle_batch([record("config/dev-11", b"v1")])
    assert result.results[0].outcome is Outcome.FAILED and "did not read back equal" in result.results[0].detail
    assert len(result.failures) == 1
