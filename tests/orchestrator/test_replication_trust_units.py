"""Pure units of the replication function's trust checks: what a record or an API call claims is
read (events.parse_api_call) and judged (Replicator.check) before anything touches AWS."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.registry.events import (
    EventKind,
    ObjectKind,
    Operation,
    PoisonRecord,
    ReplicationEvent,
    parse_api_call,
)
from orchestrator.registry.replicate import (
    MAX_EVENT_AGE_MS,
    MAX_FUTURE_SKEW_MS,
    Outcome,
    Refused,
    Region,
    Replicator,
    from_environment,
)

NOW_S = 1_800_000_000.0
NOW_MS = int(NOW_S * 1000)
EVENT_TIME_MS = 1_800_000_000_000


class NoAws:
    """A client that fails the test if anything calls AWS."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"AWS was called: {name}")


def replicator(sent: list[Any] | None = None) -> Replicator:
    def origin(name: str) -> Region:
        raise AssertionError(f"a client was opened in {name}")

    return Replicator(Region.of("eu-central-1", NoAws(), NoAws()), NoAws(), origin, clock=lambda: NOW_S,
                      members=frozenset({"eu-west-1", "eu-central-1"}),
                      dead_letter=None if sent is None else sent.append)


def event(origin: str = "eu-west-1", t: int = NOW_MS) -> ReplicationEvent:
    return ReplicationEvent(EventKind.THING, Operation.UPDATED, "t1", origin, t, 1, "e1", "100")


@pytest.mark.parametrize("origin, t, reason", [
    ("us-east-1", NOW_MS, "not a member region"),
    ("eu-west-1", 4_102_444_800_000, "in the future"),
    ("eu-west-1", NOW_MS + MAX_FUTURE_SKEW_MS + 1, "in the future"),
    ("eu-west-1", NOW_MS - MAX_EVENT_AGE_MS - 1, "older than the table keeps"),
])
def test_untrusted_claims_are_refused_before_any_call(origin: str, t: int, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        replicator().check(event(origin, t))


@pytest.mark.parametrize("t", [NOW_MS, NOW_MS + MAX_FUTURE_SKEW_MS, NOW_MS - 3_600_000])
def test_trusted_claims_pass(t: int) -> None:
    replicator().check(event(t=t))


def test_an_empty_member_list_trusts_nothing() -> None:
    rep = replicator()
    rep.members = frozenset()
    with pytest.raises(Refused, match="none configured"):
        rep.check(event())


@pytest.mark.parametrize("record", ["text", 7, None, ["list"], {"dynamodb": "x"}, {"dynamodb": {}}])
def test_unreadable_records_are_dead_lettered_not_raised(record: Any) -> None:
    sent: list[Any] = []
    result = replicator(sent).handle_batch([record])
    assert result.results[0].outcome is Outcome.REFUSED and result.response() == {"batchItemFailures": []}
    assert len(sent) == 1 and "reason" in sent[0]["refusedRecord"]


def api(name: str, params: dict[str, Any], **detail: Any) -> dict[str, Any]:
    return {"id": "1", "source": "aws.iot", "detail-type": "AWS API Call via CloudTrail",
            "detail": {"eventID": "e1", "eventName": name, "awsRegion": "eu-west-1",
                       "eventTime": "2027-01-15T08:00:00Z", "requestParameters": params, **detail}}


@pytest.mark.parametrize("name, params, kind, obj", [
    ("UpdateCertificate", {"certificateId": "c" * 64, "newStatus": "REVOKED"}, ObjectKind.CERTIFICATE, "c" * 64),
    ("DetachPolicy", {"policyName": "p", "target": "arn:aws:iot:eu-west-1:1:cert/c"}, ObjectKind.POLICY_TARGET,
     "p|arn:aws:iot:eu-west-1:1:cert/c"),
    ("AttachPrincipalPolicy", {"policyName": "p", "principal": "arn:aws:iot:eu-west-1:1:cert/c"},
     ObjectKind.POLICY_TARGET, "p|arn:aws:iot:eu-west-1:1:cert/c"),
    ("SetDefaultPolicyVersion", {"policyName": "p", "policyVersionId": "3"}, ObjectKind.POLICY, "p"),
    ("DeletePolicyVersion", {"policyName": "p", "policyVersionId": "2"}, ObjectKind.POLICY, "p"),
    ("DetachThingPrincipal", {"thingName": "t", "principal": "arn"}, ObjectKind.THING, "t"),
])
def test_api_calls_name_the_object_to_re_read(name: str, params: dict[str, Any], kind: ObjectKind,
                                              obj: str) -> None:
    call = parse_api_call(api(name, params))
    assert call is not None
    assert (call.kind, call.object, call.origin, call.event_id) == (kind, obj, "eu-west-1", "e1")


def test_api_call_time_is_the_calls_time() -> None:
    call = parse_api_call(api("UpdateCertificate", {"certificateId": "c"}))
    assert call is not None and call.event_time_ms == EVENT_TIME_MS  # 2027-01-15T08:00:00Z


def test_failed_and_other_calls_are_nothing_to_do_and_broken_ones_are_poison() -> None:
    assert parse_api_call(api("UpdateCertificate", {"certificateId": "c"}, errorCode="AccessDenied")) is None
    assert parse_api_call(api("DescribeThing", {"thingName": "t"})) is None
    with pytest.raises(PoisonRecord, match="certificateId"):
        parse_api_call(api("UpdateCertificate", {}))
    with pytest.raises(PoisonRecord, match="eventTime"):
        parse_api_call(api("UpdateCertificate", {"certificateId": "c"}, eventTime="yesterday"))
    with pytest.raises(PoisonRecord, match="not an aws.iot"):
        parse_api_call({**api("UpdateCertificate", {"certificateId": "c"}), "source": "aws.s3"})


def test_the_function_refuses_to_start_without_its_members(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AWS_REGION": "eu-central-1", "REPLICATION_ENV": "dev", "APPLIED_TABLE": "t",
           "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-central-1.amazonaws.com/1/q", "MEMBER_REGIONS": "eu-west-1"}
    with pytest.raises(ValueError, match="does not name the function's region"):
        from_environment(env)
