"""Continuous replication of what registry events do not carry (issue 19, item 3): AWS API calls
recorded by CloudTrail reach the function through EventBridge; the function re-reads the named
object in the call's region and never applies what the event says. Against a real moto server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry.replicate import Outcome
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import CallLog
from tests.ops.replication_world import api_call_event, now_ms, replicator
from tests.ops.test_ops_replication import provision, thing_event


@pytest.fixture
def world(ctx: AwsContext) -> dict[str, Any]:
    rep = replicator(ctx, DST, lags=[])
    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    cert_id = provision(src, "lock-1", 61)
    assert rep.handle_batch([thing_event("lock-1", t=now_ms())]).failures == ()
    arn = src.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]
    return {"rep": rep, "src": src, "dst": dst, "cert": cert_id, "src_arn": arn, "ctx": ctx}


def status(iot: Any, cert_id: str) -> str:
    return str(iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"])


def attached(iot: Any, cert_id: str) -> list[str]:
    arn = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]
    return [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]]


@pytest.mark.parametrize("new_status", ["REVOKED", "INACTIVE"])
def test_a_certificate_revoked_or_deactivated_in_the_origin_follows_at_once(
        world: dict[str, Any], new_status: str) -> None:
    src, dst, rep, cert = world["src"], world["dst"], world["rep"], world["cert"]
    src.update_certificate(certificateId=cert, newStatus=new_status)
    event = api_call_event("UpdateCertificate", SRC, {"certificateId": cert, "newStatus": new_status})
    result = rep.handle_api_event(event)
    assert result.outcome is Outcome.APPLIED and result.lag_ms is not None
    assert status(dst, cert) == new_status
    log = CallLog(dst)
    assert rep.handle_api_event(event).outcome is Outcome.UNCHANGED  # a repeat changes nothing
    assert log.writes == 0


def test_the_event_is_not_trusted_the_origin_is_read(world: dict[str, Any]) -> None:
    """An event saying REVOKED while the origin's certificate is ACTIVE changes nothing."""
    dst, rep, cert = world["dst"], world["rep"], world["cert"]
    result = rep.handle_api_event(api_call_event("UpdateCertificate", SRC, {"certificateId": cert,
                                                                            "newStatus": "REVOKED"}))
    assert result.outcome is Outcome.UNCHANGED and status(dst, cert) == "ACTIVE"


def test_a_policy_detached_in_the_origin_is_detached_here_without_prune(world: dict[str, Any]) -> None:
    src, dst, rep, cert = world["src"], world["dst"], world["rep"], world["cert"]
    assert attached(dst, cert) == ["device"]
    src.detach_policy(policyName="device", target=world["src_arn"])
    result = rep.handle_api_event(api_call_event("DetachPolicy", SRC, {"policyName": "device",
                                                                       "target": world["src_arn"]}))
    assert result.outcome is Outcome.APPLIED and attached(dst, cert) == []
    # attached again there: attached again here
    src.attach_policy(policyName="device", target=world["src_arn"])
    result = rep.handle_api_event(api_call_event("AttachPolicy", SRC, {"policyName": "device",
                                                                       "target": world["src_arn"]}))
    assert result.outcome is Outcome.APPLIED and attached(dst, cert) == ["device"]


def test_an_attach_copies_a_policy_the_destination_does_not_have(world: dict[str, Any]) -> None:
    src, dst, rep, cert = world["src"], world["dst"], world["rep"], world["cert"]
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
                                                   "Resource": f"arn:aws:iot:{SRC}:123456789012:topic/x"}]}
    src.create_policy(policyName="extra", policyDocument=json.dumps(doc))
    src.attach_policy(policyName="extra", target=world["src_arn"])
    rep.handle_api_event(api_call_event("AttachPolicy", SRC, {"policyName": "extra", "target": world["src_arn"]}))
    assert sorted(attached(dst, cert)) == ["device", "extra"]
    copied = json.loads(dst.get_policy(policyName="extra")["policyDocument"])
    assert copied["Statement"][0]["Resource"] == f"arn:aws:iot:{DST}:123456789012:topic/x"  # region rewritten


@pytest.mark.parametrize("call", ["CreatePolicyVersion", "SetDefaultPolicyVersion", "DeletePolicyVersion"])
def test_a_policy_narrowed_in_the_origin_is_narrowed_here(world: dict[str, Any], call: str) -> None:
    src, dst, rep = world["src"], world["dst"], world["rep"]
    narrow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect",
                                                      "Resource": f"arn:aws:iot:{SRC}:123456789012:client/x"}]}
    src.create_policy_version(policyName="device", policyDocument=json.dumps(narrow), setAsDefault=True)
    result = rep.handle_api_event(api_call_event(call, SRC, {"policyName": "device"}))
    assert result.outcome is Outcome.APPLIED
    here = json.loads(dst.get_policy(policyName="device")["policyDocument"])
    assert [s["Action"] for s in here["Statement"]] == ["iot:Connect"]


def test_a_certificate_detached_from_a_thing_in_the_origin_is_detached_here(world: dict[str, Any]) -> None:
    src, dst, rep, cert = world["src"], world["dst"], world["rep"], world["cert"]
    src.detach_thing_principal(thingName="lock-1", principal=world["src_arn"])
    result = rep.handle_api_event(api_call_event("DetachThingPrincipal", SRC, {"thingName": "lock-1",
                                                                               "principal": world["src_arn"]}))
    assert result.outcome is Outcome.APPLIED
    assert dst.list_thing_principals(thingName="lock-1")["principals"] == []
    assert status(dst, cert) == "ACTIVE"  # detached, never deleted (another thing may use it)


def test_loop_safety_own_calls_are_own_origin_and_a_forwarded_echo_writes_nothing(
        world: dict[str, Any]) -> None:
    ctx, src, dst, rep, cert = world["ctx"], world["src"], world["dst"], world["rep"], world["cert"]
    src.update_certificate(certificateId=cert, newStatus="INACTIVE")
    assert status(dst, cert) == "ACTIVE"
    rep.handle_api_event(api_call_event("UpdateCertificate", SRC, {"certificateId": cert, "newStatus": "INACTIVE"}))
    # the function's own UpdateCertificate in DST is recorded by CloudTrail in DST ...
    echo = api_call_event("UpdateCertificate", DST, {"certificateId": cert, "newStatus": "INACTIVE"})
    assert rep.handle_api_event(echo).outcome is Outcome.OWN_ORIGIN
    # ... and, forwarded to SRC's function (latency mode), re-reads DST, finds SRC equal: no write
    back = replicator(ctx, SRC)
    log = CallLog(src)
    assert back.handle_api_event(echo).outcome is Outcome.UNCHANGED
    assert log.writes == 0


def test_untrusted_api_calls_are_refused(world: dict[str, Any]) -> None:
    rep, cert = world["rep"], world["cert"]
    letters: list[Any] = []
    rep.dead_letter = letters.append
    foreign = rep.handle_api_event(api_call_event("UpdateCertificate", "us-east-1", {"certificateId": cert}))
    future = rep.handle_api_event(api_call_event("UpdateCertificate", SRC, {"certificateId": cert},
                                                 t_ms=4_102_444_800_000))
    broken = rep.handle_api_event(api_call_event("UpdateCertificate", SRC, {}))
    assert [r.outcome for r in (foreign, future, broken)] == [Outcome.REFUSED] * 3
    assert len(letters) == 3
    failed = rep.handle_api_event(api_call_event("UpdateCertificate", SRC, {"certificateId": cert},
                                                 error="AccessDenied"))
    assert failed.outcome is Outcome.IGNORED  # a call that failed changed nothing


def test_the_lambda_entry_point_takes_api_calls(world: dict[str, Any], endpoint: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.registry.replicate as replicate

    ctx, src, dst, cert = world["ctx"], world["src"], world["dst"], world["cert"]
    queue = client(ctx, "sqs", DST).create_queue(QueueName="iot-dev-replication-dlq-api")["QueueUrl"]
    for key, value in {"AWS_REGION": DST, "REPLICATION_ENV": "dev", "APPLIED_TABLE": world["rep"].store.table,
                       "MEMBER_REGIONS": f"{SRC},{DST}", "DEAD_LETTER_QUEUE_URL": queue,
                       "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(replicate, "_REPLICATOR", None)
    src.update_certificate(certificateId=cert, newStatus="REVOKED")
    out = replicate.handler(api_call_event("UpdateCertificate", SRC, {"certificateId": cert}), None)
    assert out == {"outcome": "applied", "key": f"api/certificate/{cert}"}
    assert status(dst, cert) == "REVOKED"


def test_replay_re_reads_dead_lettered_api_calls_and_refuses_foreign_ones(world: dict[str, Any]) -> None:
    """What the asynchronous invocation (`requestPayload`) or EventBridge (the event itself) gave
    up on is replayed by re-reading the object in its origin; a foreign origin is refused."""
    from orchestrator.registry.replicate import replay_dead_letters

    ctx, src, dst, rep, cert = world["ctx"], world["src"], world["dst"], world["rep"], world["cert"]
    src.update_certificate(certificateId=cert, newStatus="INACTIVE")
    src.detach_policy(policyName="device", target=world["src_arn"])
    sqs = client(ctx, "sqs", DST)
    queue = sqs.create_queue(QueueName="iot-dev-replication-dlq-api-replay")["QueueUrl"]
    invoke_failure = {"version": "1.0",
                      "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
                      "requestPayload": api_call_event("UpdateCertificate", SRC, {"certificateId": cert}),
                      "responsePayload": {"errorType": "ApplyFailed"}}
    undelivered = api_call_event("DetachPolicy", SRC, {"policyName": "device", "target": world["src_arn"]})
    foreign = api_call_event("UpdateCertificate", "us-east-1", {"certificateId": cert, "newStatus": "ACTIVE"})
    for body in (invoke_failure, undelivered, {"requestPayload": foreign}):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    report = replay_dead_letters(sqs, client(ctx, "dynamodbstreams", DST), queue, rep, allowed_streams=frozenset())
    assert (report.messages, report.replayed, report.refused, report.ok) == (3, 2, 1, False)
    assert status(dst, cert) == "INACTIVE" and attached(dst, cert) == []
