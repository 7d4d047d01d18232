"""The replication function under Lambda's real retry rule for stream batches (tests/lambda_stream.py):
a reported failure makes Lambda deliver that record and every later record of the batch again, so the
records the function already applied arrive twice and must change nothing the second time."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry.replicate import Outcome
from tests.lambda_stream import Shard
from tests.ops.conftest import DST, SRC
from tests.ops.replication_world import now_ms, payload, replicator, rule_item, stream_record


def thing_event(name: str, operation: str, *, t: int, attributes: dict[str, str], version: int = 1) -> dict[str, Any]:
    event = payload("thing", thingName=name, operation=operation, timestamp=t, versionNumber=version,
                    eventId=f"{name}-{operation}-{t}", thingTypeName=None, attributes=attributes)
    return stream_record(rule_item(event, SRC), SRC)


def membership_event(group: str, thing: str, *, t: int) -> dict[str, Any]:
    event = payload("membership", operation="ADDED", timestamp=t, eventId=f"m-{group}-{thing}-{t}",
                    groupArn=f"arn:aws:iot:{SRC}:123456789012:thinggroup/{group}",
                    thingArn=f"arn:aws:iot:{SRC}:123456789012:thing/{thing}")
    return stream_record(rule_item(event, SRC), SRC)


def seq(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


class Recorder:
    """The function as Lambda calls it, keeping every record's outcome per delivery."""

    def __init__(self, rep: Any) -> None:
        self.rep = rep
        self.outcomes: dict[str, list[Outcome]] = {}

    def __call__(self, event: dict[str, Any]) -> Any:
        result = self.rep.handle_batch(event["Records"])
        for r in result.results:
            self.outcomes.setdefault(r.sequence, []).append(r.outcome)
        return result.response()


def test_records_after_a_failed_one_are_delivered_again_and_change_nothing(ctx: AwsContext) -> None:
    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    src.create_thing_group(thingGroupName="fleet")
    for name in ("meter-a", "meter-b"):
        src.create_thing(thingName=name, attributePayload={"attributes": {"serial": "1"}})
    src.add_thing_to_thing_group(thingGroupName="fleet", thingName="meter-a")
    src.update_thing(thingName="meter-a", attributePayload={"attributes": {"serial": "2"}})
    t = now_ms()
    records = [thing_event("meter-a", "CREATED", t=t, attributes={"serial": "1"}),
               membership_event("fleet", "meter-a", t=t + 5),  # fails: the group is not in DST yet
               thing_event("meter-b", "CREATED", t=t + 6, attributes={"serial": "1"}),
               thing_event("meter-a", "UPDATED", t=t + 10, attributes={"serial": "2"}, version=2)]
    function = Recorder(replicator(ctx, DST))

    def world_moves_on(invocation: int) -> None:
        if invocation == 1:  # the group's own event is applied from another shard meanwhile
            dst.create_thing_group(thingGroupName="fleet")

    shard = Shard(between=world_moves_on)
    shard.run(function, records)
    assert shard.invocations == 2 and shard.whole_failures == 0 and shard.on_failure == []
    # Lambda's rule: everything from the failed record on came again, not only the failed record
    assert [shard.deliveries[seq(r)] for r in records] == [1, 2, 2, 2]
    assert function.outcomes[seq(records[1])] == [Outcome.FAILED, Outcome.APPLIED]
    for again in records[2:]:
        first, second = function.outcomes[seq(again)]
        assert first is Outcome.APPLIED and second in (Outcome.STALE, Outcome.UNCHANGED), (first, second)
    assert dst.describe_thing(thingName="meter-a")["attributes"] == {"serial": "2"}
    assert [g["groupName"] for g in dst.list_thing_groups_for_thing(thingName="meter-a")["thingGroups"]] == ["fleet"]
    assert dst.describe_thing(thingName="meter-b")["thingName"] == "meter-b"


def test_a_record_that_keeps_failing_goes_to_on_failure_after_the_retries_and_the_rest_applied_once(
        ctx: AwsContext) -> None:
    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    src.create_thing_group(thingGroupName="never-in-dst")
    src.create_thing(thingName="meter-c", attributePayload={"attributes": {"serial": "1"}})
    src.create_thing(thingName="meter-d", attributePayload={"attributes": {"serial": "1"}})
    src.add_thing_to_thing_group(thingGroupName="never-in-dst", thingName="meter-c")
    t = now_ms()
    records = [thing_event("meter-c", "CREATED", t=t, attributes={"serial": "1"}),
               membership_event("never-in-dst", "meter-c", t=t + 5),
               thing_event("meter-d", "CREATED", t=t + 6, attributes={"serial": "1"})]
    function = Recorder(replicator(ctx, DST))
    shard = Shard(max_retry_attempts=3)
    shard.run(function, records)
    # the first delivery, then 3 retries from the failing record; then Lambda gives up on that batch
    assert shard.invocations == 4 and shard.whole_failures == 0
    assert shard.on_failure == [(seq(records[1]), seq(records[2]))]
    assert [shard.deliveries[seq(r)] for r in records] == [1, 4, 4]
    applied = Counter(o for o in function.outcomes[seq(records[2])])
    assert applied[Outcome.APPLIED] == 1 and applied[Outcome.FAILED] == 0, applied
    assert dst.describe_thing(thingName="meter-d")["thingName"] == "meter-d"


# -- the stand-in itself ---------------------------------------------------------------------------
def _batch(*sequences: str) -> list[dict[str, Any]]:
    return [{"dynamodb": {"SequenceNumber": s}} for s in sequences]


@pytest.mark.parametrize("response", [None, "", {}, {"batchItemFailures": []}, {"batchItemFailures": None}])
def test_the_stand_in_counts_the_documented_success_responses_as_complete_success(response: Any) -> None:
    assert Shard().checkpoint_after(_batch("1", "2"), response) is None


@pytest.mark.parametrize("item", [{"itemIdentifier": ""}, {"itemIdentifier": None}, {"itemId": "1"},
                                  {"itemIdentifier": "99"}, "1"])
def test_the_stand_in_fails_the_whole_batch_on_an_unusable_identifier(item: Any) -> None:
    with pytest.raises(ValueError):
        Shard().checkpoint_after(_batch("1", "2"), {"batchItemFailures": [item]})


def test_the_stand_in_restarts_at_the_lowest_reported_sequence() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]}
    assert Shard().checkpoint_after(_batch("1", "2", "3", "4"), response) == 1


def test_the_stand_in_bisects_a_batch_whose_function_raised() -> None:
    seen: list[list[str]] = []

    def handler(event: dict[str, Any]) -> Any:
        batch = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        seen.append(batch)
        if "3" in batch and len(batch) > 1:
            raise RuntimeError("boom")
        return None

    shard = Shard(max_retry_attempts=5)
    shard.run(handler, _batch("1", "2", "3", "4"))
    assert seen[0] == ["1", "2", "3", "4"] and ["3"] in seen and shard.on_failure == []
