"""The pure parts of the registry sync: planning, rate limits, retries, checkpoints, policies.
No server needed; the clocks, sleeps and random numbers are injected."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from orchestrator.errors import InputRejected
from orchestrator.registry import (
    Action,
    Caller,
    Certificate,
    Checkpoint,
    Kind,
    Policy,
    PolicyTarget,
    RateLimiter,
    RegionRewrite,
    RegistrySnapshot,
    RetriesExhausted,
    RetryPolicy,
    TargetKind,
    Thing,
    ThingGroup,
    ThingPrincipal,
    ThingType,
    plan_sync,
)
from orchestrator.registry.checkpoint import parts_of
from orchestrator.registry.policydoc import neutral, normalize_document, rewrite_region


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_token_bucket_spaces_calls_per_api() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    assert [limiter.reserve("create_thing") for _ in range(4)] == pytest.approx([0, 0.1, 0.2, 0.3])
    assert limiter.reserve("attach_policy") == 0  # another API has its own bucket
    assert limiter.peek("create_thing") == pytest.approx(0.4)
    assert limiter.peek("create_thing") == pytest.approx(0.4)  # peeking takes nothing


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(13):
        limiter.acquire("x")
    # 3 at once, then 10 more at 5/s
    assert clock.now == pytest.approx(10 / 5)


def test_rate_and_burst_are_validated() -> None:
    with pytest.raises(InputRejected):
        RateLimiter(0)
    with pytest.raises(InputRejected):
        RateLimiter(5, burst=0.5)


def test_backoff_is_full_jitter_bounded_and_deterministic_when_seeded() -> None:
    a = RetryPolicy.seeded(42, base_delay=0.5, max_delay=4.0)
    b = RetryPolicy.seeded(42, base_delay=0.5, max_delay=4.0)
    delays = [a.delay(n) for n in range(8)]
    assert delays == [b.delay(n) for n in range(8)]
    for n, d in enumerate(delays):
        assert 0 <= d <= min(4.0, 0.5 * 2 ** n)


def _error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "CreateThing")


class FlakyClient:
    """Answers `create_thing` with the queued outcomes (exceptions are raised)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def create_thing(self, **_: Any) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _caller(client: Any, sleeps: list[float], attempts: int = 5) -> Caller:
    return Caller(client, retry=RetryPolicy(max_attempts=attempts, rng=random.Random(0), sleep=sleeps.append))


def test_throttling_and_5xx_are_retried_and_counted() -> None:
    sleeps: list[float] = []
    flaky = FlakyClient(_error("ThrottlingException"), _error("TooManyRequestsException", 429),
                        _error("InternalFailureException", 500),
                        EndpointConnectionError(endpoint_url="http://x"), {"thingName": "t"})
    caller = _caller(flaky, sleeps)
    assert caller.call("create_thing", thingName="t") == {"thingName": "t"}
    counts = caller.stats.counts()
    assert (flaky.calls, counts.writes, counts.retries, counts.throttled) == (5, 5, 4, 2)
    assert len(sleeps) == 4


@pytest.mark.parametrize("code", ["LimitExceededException", "InvalidRequestException",
                                  "ResourceAlreadyExistsException", "UnauthorizedException"])
def test_errors_that_waiting_does_not_fix_are_not_retried(code: str) -> None:
    sleeps: list[float] = []
    flaky = FlakyClient(_error(code))
    with pytest.raises(ClientError):
        _caller(flaky, sleeps).call("create_thing", thingName="t")
    assert flaky.calls == 1 and sleeps == []


def test_attempts_are_bounded() -> None:
    sleeps: list[float] = []
    flaky = FlakyClient(*[_error("ThrottlingException")] * 3)
    with pytest.raises(RetriesExhausted) as stopped:
        _caller(flaky, sleeps, attempts=3).call("create_thing", thingName="t")
    assert flaky.calls == 3 and len(sleeps) == 2
    assert stopped.value.code == "ThrottlingException"


def test_after_an_ambiguous_failure_a_write_is_verified_before_it_is_repeated() -> None:
    flaky = FlakyClient(_error("InternalFailureException", 500), {"never": "sent"})
    verified: list[str] = []

    def already_there() -> bool:
        verified.append("checked")
        return True

    _caller(flaky, []).call("create_thing", verify=already_there, thingName="t")
    assert flaky.calls == 1 and verified == ["checked"]

    verified.clear()
    throttled = FlakyClient(_error("ThrottlingException"), {"ok": 1})  # refused: not ambiguous
    _caller(throttled, []).call("create_thing", verify=already_there, thingName="t")
    assert throttled.calls == 2 and verified == []


# -- planning ---------------------------------------------------------------------------------

def snapshot(region: str = "eu-west-1", **parts: Any) -> RegistrySnapshot:
    return RegistrySnapshot(region=region, **{k: tuple(v) for k, v in parts.items()})


SRC = snapshot(
    thing_types=[ThingType("sensor"), ThingType("legacy", deprecated=True)],
    thing_groups=[ThingGroup("c", parent="b"), ThingGroup("a"), ThingGroup("b", parent="a"),
                  ThingGroup("dyn", query="attributes.x:1")],
    things=[Thing("t1", "sensor", {"k": "v"}, ("c",)), Thing("t2", "legacy", {}, ("a", "dyn"))],
    policies=[Policy("p", normalize_document('{"Resource": "arn:aws:iot:eu-west-1:1:topic/x"}'))],
    certificates=[Certificate("c1", "ACTIVE", pem="PEM1"), Certificate("c2", "PENDING_TRANSFER", pem="PEM2"),
                  Certificate("c3", "PENDING_ACTIVATION", pem="PEM3")],
    thing_principals=[ThingPrincipal("t1", "c1"), ThingPrincipal("t2", "c2")],
    policy_targets=[PolicyTarget("p", TargetKind.CERTIFICATE, "c1"),
                    PolicyTarget("p", TargetKind.THING_GROUP, "a")],
)


def ids(plan: Any) -> list[str]:
    return [op.id for op in plan.ops]


def test_plan_puts_dependencies_first() -> None:
    plan = plan_sync(SRC, snapshot("eu-central-1"))
    order = ids(plan)

    def at(op_id: str) -> int:
        return order.index(op_id)

    assert at("thing_group create a") < at("thing_group create b") < at("thing_group create c")
    assert at("thing_type create legacy") < at("thing create t2") < at("thing_type update legacy (deprecate)")
    assert at("certificate create c1") < at("thing_principal create t1/c1")
    assert at("thing create t1") < at("group_membership create c/t1")
    assert at("policy create p") < at("policy_attachment create p/certificate:c1")
    by_id = {op.id: op for op in plan.ops}
    assert set(by_id["thing_principal create t1/c1"].deps) == {"thing create t1", "certificate create c1"}
    assert by_id["thing_group create c"].deps == ("thing_group create b",)
    for op in plan.ops:  # every dependency comes earlier in the plan
        assert all(at(dep) < at(op.id) for dep in op.deps)


def test_plan_skips_what_cannot_be_copied_and_says_so() -> None:
    plan = plan_sync(SRC, snapshot("eu-central-1"))
    order = ids(plan)
    assert "certificate create c2" not in order  # PENDING_TRANSFER
    assert "thing_principal create t2/c2" not in order
    assert "group_membership create dyn/t2" not in order and "thing_group create dyn" not in order
    assert {op.name: op.params["status"] for op in plan.ops if op.kind is Kind.CERTIFICATE} == \
        {"c1": "ACTIVE", "c3": "INACTIVE"}
    text = " | ".join(plan.warnings)
    assert "PENDING_TRANSFER" in text and "registered as INACTIVE" in text
    assert plan.rewritten_policies == ("p",)
    doc = next(op for op in plan.ops if op.id == "policy create p").params["document"]
    assert "eu-central-1" in doc and "eu-west-1" not in doc


def test_plan_without_prune_never_removes_anything() -> None:
    dst = snapshot("eu-central-1", things=[Thing("extra")], policies=[Policy("old", "{}")],
                   thing_groups=[ThingGroup("g")], certificates=[Certificate("cx", "ACTIVE")],
                   thing_principals=[ThingPrincipal("extra", "cx")])
    assert all(op.action is not Action.DELETE for op in plan_sync(SRC, dst).ops)
    pruned = plan_sync(SRC, dst, prune=True)
    order = ids(pruned)
    assert order.index("thing_principal delete extra/cx") < order.index("thing delete extra")
    assert order.index("thing_principal delete extra/cx") < order.index("certificate delete cx")
    assert {"thing delete extra", "policy delete old", "thing_group delete g",
            "certificate delete cx"} <= set(order)


def test_prune_deletes_children_before_parents() -> None:
    dst = snapshot("eu-central-1", thing_groups=[ThingGroup("x"), ThingGroup("y", parent="x"),
                                                 ThingGroup("z", parent="y")])
    order = [i for i in ids(plan_sync(snapshot("eu-central-1"), dst, prune=True))]
    assert order == ["thing_group delete z", "thing_group delete y", "thing_group delete x"]


def test_plan_of_equal_registries_is_empty_and_deterministic() -> None:
    dst = RegistrySnapshot.from_json({**SRC.to_json(), "region": "eu-west-1"})
    assert plan_sync(SRC, dst).ops == ()
    assert plan_sync(SRC, snapshot("eu-central-1")) == plan_sync(SRC, snapshot("eu-central-1"))


def test_a_missing_pem_is_an_input_error() -> None:
    src = snapshot(certificates=[Certificate("c1", "ACTIVE")])
    with pytest.raises(InputRejected, match="no PEM"):
        plan_sync(src, snapshot("eu-central-1"))


def test_summary_counts_and_first_items() -> None:
    summary = plan_sync(SRC, snapshot("eu-central-1")).summary(first=2)
    assert summary.counts["thing_group"]["create"] == 3
    assert summary.first["thing_group"] == ("create thing group a", "create thing group b")
    assert json.loads(json.dumps(summary.to_json()))["total"] == summary.total


# -- policy documents, checkpoints ------------------------------------------------------------

def test_policy_region_rewrite_touches_arns_only() -> None:
    doc = normalize_document({"Resource": ["arn:aws:iot:eu-west-1:1:topic/a", "arn:aws:s3:::b"],
                              "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}})
    moved, changed = rewrite_region(doc, "eu-west-1", "eu-central-1")
    assert changed and "arn:aws:iot:eu-central-1:1:topic/a" in moved
    assert '"aws:RequestedRegion":"eu-west-1"' in moved
    wild, _ = rewrite_region(doc, "eu-west-1", "eu-central-1", RegionRewrite.WILDCARD)
    assert "arn:aws:iot:*:1:topic/a" in wild
    neutral_doc = normalize_document({"Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"})
    assert rewrite_region(neutral_doc, "eu-west-1", "eu-central-1") == (neutral_doc, False)
    assert neutral(moved, "eu-central-1") == neutral(doc, "eu-west-1")
    assert normalize_document('{ "b": 1, "a": 2 }') == '{"a":2,"b":1}'


def test_checkpoint_persists_atomically_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "sync" / "dev-a-b.json"
    cp = Checkpoint(path, src_region="a", dst_region="b", flush_every=2)
    cp.mark_done("k1")
    assert not path.exists()
    cp.mark_done("k2")
    assert Checkpoint.saved(path)["done"] == ["k1", "k2"]
    # the header and one journal part (appended to, never rewritten); no temp files left
    assert sorted(p.name for p in path.parent.iterdir() if p.name != path.name) == \
        [p.name for p in parts_of(path)] and len(parts_of(path)) == 1
    again = Checkpoint(path, src_region="a", dst_region="b")
    assert again.resumed and again.is_done("k1") and not again.is_done("k3")
    with pytest.raises(InputRejected, match="not a -> c"):
        Checkpoint(path, src_region="a", dst_region="c")
    again.complete()
    assert not path.exists() and not parts_of(path)
    path.write_text("{not json")
    with pytest.raises(InputRejected, match="malformed"):
        Checkpoint(path, src_region="a", dst_region="b")
