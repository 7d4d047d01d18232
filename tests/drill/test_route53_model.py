"""The local world's one Route 53 model (orchestrator/drill/world/route53_model.py) in its two users: the
drill's engine refuses the batches Route 53 refuses before they reach moto, and the drill's DNS
answers (drill/world/dns.py) and the tests' answers (`route53_model.answers`) are the same selection."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.drill.world.dns import Route53Answers
from orchestrator.drill.world.engine import LocalEngine, PropagatingRoute53
from orchestrator.drill.world.mirror import HEALTH_CHECK, RECORD, Declared, change_record_sets
from orchestrator.drill.world.route53_model import PROPAGATION_S, Health, InvalidChangeBatch, Propagation, answers
from tests.moto_server import threaded_moto

WEST, CENTRAL = "a-ats.iot.eu-west-1.amazonaws.com", "b-ats.iot.eu-central-1.amazonaws.com"
REGION_OF = {WEST: "eu-west-1", CENTRAL: "eu-central-1"}
FAST = 0.002  # Route 53's 60 s propagation as 0.12 s


# -- the drill's engine refuses what Route 53 refuses ----------------------------------------------

@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with threaded_moto() as url:
        yield url


def _record(name: str, inputs: dict[str, Any]) -> Any:
    return Declared(RECORD, name, inputs)


def _dns(engine: LocalEngine, resources: list[Any]) -> None:
    spec = SimpleNamespace(name="dev-dns", kind="dns", config={})
    engine._dns(spec, resources, {}, {})  # type: ignore[arg-type]


def test_the_drills_engine_refuses_a_batch_route53_refuses_and_moto_keeps_nothing(moto_url: str) -> None:
    ctx = AwsContext(endpoint_url=moto_url)
    r53 = client(ctx, "route53", "us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="z")["HostedZone"]["Id"]
    engine = LocalEngine(ctx, zone_id, time_scale=FAST)
    before = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    primary = {"name": "iot.example.com", "type": "CNAME", "ttl": 60, "records": [WEST],
               "setIdentifier": "primary", "failoverRoutingPolicies": [{"type": "PRIMARY"}],
               "healthCheckId": "hc-that-does-not-exist"}
    # AWS: NoSuchHealthCheck (HTTP 404) for a record naming a missing check; moto accepts it
    with pytest.raises(InvalidChangeBatch, match="No health check exists") as refused:
        _dns(engine, [_record("primary", primary)])
    assert refused.value.code == "NoSuchHealthCheck"
    # AWS: no CNAME at the zone apex (Developer Guide, "Supported DNS record types")
    with pytest.raises(InvalidChangeBatch, match="not permitted at apex"):
        _dns(engine, [_record("apex", {"name": "example.com", "type": "CNAME", "ttl": 60, "records": [WEST]})])
    assert r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"] == before
    # what Route 53 accepts still reaches moto
    _dns(engine, [_record("simple", {"name": "iot.example.com", "type": "CNAME", "ttl": 60, "records": [WEST]})])
    listed = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    assert [(r["Name"], r["Type"]) for r in listed if r["Type"] == "CNAME"] == [("iot.example.com.", "CNAME")]


def test_the_drills_engine_accepts_records_naming_the_checks_it_made(moto_url: str) -> None:
    """The health check is made first, and the record names its real id: the model sees it exists."""
    ctx = AwsContext(endpoint_url=moto_url)
    r53 = client(ctx, "route53", "us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="z")["HostedZone"]["Id"]
    engine = LocalEngine(ctx, zone_id, time_scale=FAST)
    check = Declared(HEALTH_CHECK, "hc-west", {"type": "TCP", "fqdn": WEST, "port": 443, "requestInterval": 30,
                                               "failureThreshold": 3})
    record = _record("primary", {"name": "iot.example.com", "type": "CNAME", "ttl": 60, "records": [WEST],
                                 "setIdentifier": "primary", "failoverRoutingPolicies": [{"type": "PRIMARY"}],
                                 "healthCheckId": "mock-hc-west"})
    spec = SimpleNamespace(name="dev-dns", kind="dns", config={})
    engine._dns(spec, [check, record], {}, {(HEALTH_CHECK, "hc-west"): {"id": "mock-hc-west"}})  # type: ignore[arg-type]
    listed = [r for r in r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
              if r["Type"] == "CNAME"]
    assert [r.get("HealthCheckId") for r in listed] == [engine.world.state["dev-dns"]["hc-west"].id]


# -- one selection: the drill's answers are the model's --------------------------------------------

CHECKS: dict[str, dict[str, Any]] = {
    "tcp-w": {"Type": "TCP", "FullyQualifiedDomainName": WEST, "Port": 443, "RequestInterval": 30,
              "FailureThreshold": 3},
    "tcp-c": {"Type": "TCP", "FullyQualifiedDomainName": CENTRAL, "Port": 443, "RequestInterval": 30,
              "FailureThreshold": 3},
    "gate-w": {"Type": "CALCULATED", "ChildHealthChecks": ["tcp-w"], "HealthThreshold": 1},
    "not-c": {"Type": "CALCULATED", "ChildHealthChecks": ["tcp-c"], "HealthThreshold": 1, "Inverted": True},
}


def _sets(policy: str, checks: tuple[str | None, str | None]) -> list[dict[str, Any]]:
    out = []
    for value, role, check in ((WEST, "PRIMARY", checks[0]), (CENTRAL, "SECONDARY", checks[1])):
        rr: dict[str, Any] = {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60, "SetIdentifier": role.lower(),
                              "ResourceRecords": [{"Value": value}]}
        rr.update({"Failover": role} if policy == "failover" else {"Region": REGION_OF[value]})
        if check:
            rr["HealthCheckId"] = check
        out.append(rr)
    return out


class _Zone:
    def __init__(self, sets: list[dict[str, Any]]) -> None:
        self.sets = sets

    def list_resource_record_sets(self, HostedZoneId: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"ResourceRecordSets": self.sets}

    def get_health_check(self, HealthCheckId: str) -> dict[str, Any]:  # noqa: N803
        return {"HealthCheck": {"HealthCheckConfig": CHECKS[HealthCheckId]}}


def _near(client_region: str | None, region: str) -> float:
    return 0.0 if client_region == region else 1.0


CASES = [(policy, checks) for policy in ("failover", "latency")
         for checks in itertools.product((None, "tcp-w", "gate-w"), (None, "tcp-c", "not-c"))]


@pytest.mark.parametrize(("policy", "checks"), CASES, ids=[f"{p}-{c[0]}-{c[1]}" for p, c in CASES])
def test_the_drill_and_the_tests_give_the_same_answers_for_the_same_records_and_health(
        policy: str, checks: tuple[str | None, str | None]) -> None:
    sets = _sets(policy, checks)
    drill = Route53Answers(_Zone(sets), "Z1", "iot.example.com", {WEST: "127.0.0.2", CENTRAL: "127.0.0.3"}, 1,
                           1.0, _near)
    try:
        drill.records(max_age=0)  # reads the checks the records name; TCP probes every 30 s: none here
        for down in (frozenset(), *(frozenset({r}) for r in REGION_OF.values()), frozenset(REGION_OF.values())):
            for checker in drill._checkers:  # the drill's TCP measurements: a region down fails its probe
                for cid, spec in checker.specs.items():
                    checker.checks[cid].healthy = REGION_OF[spec.fqdn] not in down
            expected = answers(sets, "iot.example.com", Health(CHECKS, down))
            got = {drill.answer(client)[0] for client in (None, *REGION_OF.values())}
            # failover: one answer wherever the resolver is; latency: each resolver the nearest healthy record
            assert got == set(expected), (down, got, expected)
            assert len(expected) == 1 or policy == "latency"
    finally:
        drill.stop()


# -- Route 53 is not instant: PENDING, then INSYNC, and the answers follow INSYNC ----------------------

class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _simple(value: str) -> dict[str, Any]:
    return {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": value}]}


def test_a_change_is_pending_for_the_propagation_time_and_the_drills_dns_answers_the_old_record_until_insync(
        moto_url: str) -> None:
    """ChangeResourceRecordSets answers PENDING; GetChange says INSYNC only after the propagation
    time; the drill's DNS answers from INSYNC changes only; a batch touching the PENDING set is
    refused with PriorRequestNotComplete. moto answers INSYNC at once and serves the change at once."""
    ctx = AwsContext(endpoint_url=moto_url)
    moto = client(ctx, "route53", "us-east-1")
    zone_id = moto.create_hosted_zone(Name="example.com", CallerReference="z")["HostedZone"]["Id"]
    engine = LocalEngine(ctx, zone_id, time_scale=0.1)
    assert engine.propagation.delay_s == PROPAGATION_S * 0.1 == 6.0  # Route 53's 60 s on the drill's scale
    clock = ManualClock()
    engine.propagation.clock = clock
    r53 = PropagatingRoute53(moto, engine.propagation)
    dns = Route53Answers(moto, zone_id, "iot.example.com", {WEST: "127.0.0.2", CENTRAL: "127.0.0.3"}, 1, 0.1,
                         _near, propagation=engine.propagation)
    try:
        first = change_record_sets(r53, zone_id, [{"Action": "UPSERT", "ResourceRecordSet": _simple(WEST)}])
        assert first["Status"] == "PENDING"
        assert dns.answer(None)[0] is None  # a new record: nothing served until INSYNC
        clock.now += 6.0
        assert r53.get_change(Id=first["Id"])["ChangeInfo"]["Status"] == "INSYNC"
        assert dns.answer(None)[:2] == (WEST, "127.0.0.2")

        moved = change_record_sets(r53, zone_id, [{"Action": "UPSERT", "ResourceRecordSet": _simple(CENTRAL)}])
        clock.now += 5.9
        assert r53.get_change(Id=moved["Id"])["ChangeInfo"]["Status"] == "PENDING"
        listed = [r for r in moto.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
                  if r["Type"] == "CNAME"]
        assert [r["ResourceRecords"][0]["Value"] for r in listed] == [CENTRAL]  # the API lists it already
        assert dns.answer(None)[0] == WEST  # ... the name servers do not have it yet
        with pytest.raises(InvalidChangeBatch, match="still processing a prior request") as prior:
            change_record_sets(r53, zone_id, [{"Action": "UPSERT", "ResourceRecordSet": _simple(WEST)}])
        assert prior.value.code == "PriorRequestNotComplete" and prior.value.status == 400
        clock.now += 0.1
        assert r53.get_change(Id=moved["Id"])["ChangeInfo"]["Status"] == "INSYNC"
        assert dns.answer(None)[0] == CENTRAL
        assert [(c.before, c.after) for c in dns.changes] == [(WEST, CENTRAL)]
    finally:
        dns.stop()


def test_the_drills_engine_reports_a_dns_apply_done_only_once_its_changes_are_insync(moto_url: str) -> None:
    """As terraform-provider-aws waits for INSYNC after every change: the stack's `up` (and with it
    failover and failback) includes Route 53's propagation time."""
    ctx = AwsContext(endpoint_url=moto_url)
    moto = client(ctx, "route53", "us-east-1")
    zone_id = moto.create_hosted_zone(Name="example.com", CallerReference="z")["HostedZone"]["Id"]
    engine = LocalEngine(ctx, zone_id, time_scale=0.25 / PROPAGATION_S)  # 0.25 s
    submitted: list[str] = []
    submit = engine.propagation.submit

    def spy(*args: Any) -> str:
        token = submit(*args)
        submitted.append(token)
        return token

    engine.propagation.submit = spy  # type: ignore[method-assign,assignment]
    _dns(engine, [_record("simple", {"name": "iot.example.com", "type": "CNAME", "ttl": 60, "records": [WEST]})])
    assert len(submitted) == 1
    change = engine.propagation._changes[engine.propagation._order[-1]]
    assert engine.propagation.status(change.id) == "INSYNC"  # the apply waited for it
    served = engine.propagation.served(zone_id, moto.list_resource_record_sets(HostedZoneId=zone_id)[
        "ResourceRecordSets"])
    assert [r["ResourceRecords"][0]["Value"] for r in served if r["Type"] == "CNAME"] == [WEST]


def test_served_puts_back_every_set_a_pending_change_touched_oldest_first() -> None:
    clock = ManualClock()
    prop = Propagation(10.0, clock=clock)
    west, central = _simple(WEST), _simple(CENTRAL)
    other = {"Name": "other.example.com.", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]}
    key = ("iot.example.com.", "CNAME", "")
    a = prop.bind(prop.submit("/hostedzone/Z1", [west], [key]), {"Id": "/change/A", "Status": "INSYNC"})
    assert a["Status"] == "PENDING"
    clock.now += 4.0
    prop.bind(prop.submit("Z1", [central], [key, ("other.example.com.", "A", "")]), {"Id": "/change/B"})
    now = [_simple("c.example.net"), other]  # what the API lists after both
    assert prop.served("Z1", now) == [west]  # both PENDING: the set as before A; `other` did not exist
    clock.now += 6.0  # A INSYNC, B PENDING
    assert prop.served("Z1", now) == [central]
    assert prop.served("Z2", now) == now  # another zone is not held back
    clock.now += 4.0
    assert prop.served("Z1", now) == now and prop.settled("Z1") == 2
    token = prop.submit("Z1", now, [key])
    prop.cancel(token)  # refused by the stand-in: nothing held back
    assert prop.served("Z1", now) == now


# -- Route 53 throttles: token buckets per account and per operation ---------------------------------

def test_the_request_rate_is_route53s_token_buckets_on_the_drills_time_scale() -> None:
    """Route 53 Developer Guide, "Throttling for Amazon Route 53 API requests": 50 at once, 10 per
    second, per account and per operation (CreateHealthCheck: 0.5 per second); a refused request
    takes no token; on the drill's time scale the buckets refill as fast as the scaled seconds pass."""
    from orchestrator.drill.world.route53_model import RequestRate, Throttled

    clock = ManualClock()
    rate = RequestRate(clock=clock)
    for _ in range(50):
        rate.take("GetChange")
    with pytest.raises(Throttled, match="Rate exceeded") as refused:
        rate.take("ListHostedZones")  # the account's bucket is empty, whatever the operation
    assert (refused.value.code, refused.value.status) == ("Throttling", 400)
    clock.now += 0.1  # one token back
    rate.take("ListHostedZones")
    with pytest.raises(Throttled):
        rate.take("GetChange")
    clock.now += 10.0  # full again
    rate.take("CreateHealthCheck")
    assert rate.throttled == ["ListHostedZones", "GetChange"] and rate.accepted == 52

    health = RequestRate(clock=clock)  # CreateHealthCheck's own bucket: 50 at once, then 0.5 per second
    for _ in range(50):
        health.take("CreateHealthCheck")
    clock.now += 1.0  # the account's bucket has 10 tokens again, CreateHealthCheck's half of one
    with pytest.raises(Throttled):
        health.take("CreateHealthCheck")
    health.take("GetHealthCheck")  # another operation passes
    clock.now += 1.0
    health.take("CreateHealthCheck")

    scaled = RequestRate(0.1, clock=clock)  # 10 AWS seconds per second: 100 tokens per second
    for _ in range(50):
        scaled.take("GetChange")
    clock.now += 0.011  # a 1.1 AWS-second pause: one token back
    scaled.take("GetChange")
    with pytest.raises(Throttled):
        scaled.take("GetChange")


def test_the_drills_route53_client_answers_throttling_as_route53_does(moto_url: str) -> None:
    """The engine's client (PropagatingRoute53) answers a request over the rate with Route 53's
    error (HTTP 400, Throttling, "Rate exceeded") before moto sees it, paginated reads included;
    a client with the SDK's retries waits and gets through."""
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from orchestrator.drill.world.route53_model import RequestRate

    ctx = AwsContext(endpoint_url=moto_url)
    zone_id = client(ctx, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference="z")["HostedZone"]["Id"]
    import boto3

    bare = boto3.client("route53", region_name="us-east-1", endpoint_url=moto_url, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))
    clock = ManualClock()
    rate = RequestRate(clock=clock)
    r53 = PropagatingRoute53(bare, Propagation(0.0), rate)
    for _ in range(49):
        r53.get_hosted_zone(Id=zone_id)
    list(r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id))  # the 50th
    with pytest.raises(ClientError) as refused:
        r53.list_hosted_zones()
    error = refused.value.response
    assert error["Error"]["Code"] == "Throttling" and error["Error"]["Message"] == "Rate exceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    clock.now += 0.3  # three tokens: the change (its own listing of the zone is not a request) and GetChange
    info = change_record_sets_direct(r53, zone_id)
    assert r53.get_change(Id=info["Id"])["ChangeInfo"]["Status"] == "INSYNC"
    assert rate.throttled == ["ListHostedZones"] and rate.accepted == 52

    # with the SDK's retries (the engine's client: adaptive mode) a throttled request is retried
    retrying = PropagatingRoute53(client(ctx, "route53", "us-east-1"), Propagation(0.0), RequestRate(0.05))
    for _ in range(70):  # over the burst: refill 200 per second on this time scale
        retrying.get_hosted_zone(Id=zone_id)
    assert retrying.rate.accepted == 70


def change_record_sets_direct(r53: Any, zone_id: str) -> Any:
    return r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": _simple(WEST)}]})["ChangeInfo"]


# -- health checks turn only after FailureThreshold checks at RequestInterval ---------------------
# Route 53 Developer Guide, "How Amazon Route 53 determines whether a health check is healthy".

def test_a_check_turns_after_threshold_results_in_a_row_and_a_disagreeing_one_starts_the_count_again() -> None:
    from orchestrator.drill.world.route53_model import CheckStatus

    check = CheckStatus(3)
    assert check.healthy  # a new check is healthy
    assert [check.observe(False), check.observe(False)] == [False, False] and check.healthy
    assert not check.observe(True) and check.healthy  # a success: the count starts again
    assert [check.observe(False) for _ in range(3)] == [False, False, True] and not check.healthy
    assert [check.observe(True) for _ in range(2)] == [False, False] and not check.healthy
    assert check.observe(True) and check.healthy  # as many successes bring it back
    assert CheckStatus(1).observe(False)  # FailureThreshold 1: the first failure


def test_timed_checks_run_at_the_request_interval_on_the_clock_and_scale() -> None:
    from orchestrator.drill.world.route53_model import TimedChecks

    now = [0.0]
    down_from, up_from = 10.0, 100.0
    checks = TimedChecks(lambda: now[0], time_scale=1.0)
    checks.start("hc", at=0.0)
    config = {"Type": "TCP", "RequestInterval": 30, "FailureThreshold": 3}

    def measure_at(_cid: str, _cfg: Any, t: float) -> bool:
        return not (down_from <= t < up_from)

    seen = {}
    for t in (89.0, 90.0, 179.0, 180.0):
        now[0] = t
        seen[t] = checks.status("hc", config, measure_at)
    # failed checks at 30, 60 and 90: unhealthy at 90, not before; back after 120, 150 and 180
    assert seen == {89.0: True, 90.0: False, 179.0: False, 180.0: True}
    # the same on a tenth of the time: 30 s checks every 3 s of the clock; defaults 30 s and 3
    fast = TimedChecks(lambda: now[0], time_scale=0.1)
    fast.start("hc", at=0.0)
    now[0] = 8.9
    assert fast.status("hc", {"Type": "TCP"}, lambda *_: False)
    now[0] = 9.0
    assert not fast.status("hc", {"Type": "TCP"}, lambda *_: False)


def test_timed_checks_catch_up_a_clock_moved_far_ahead_in_bounded_steps() -> None:
    from orchestrator.drill.world.route53_model import TimedChecks

    now = [0.0]
    checks = TimedChecks(lambda: now[0])
    checks.start("hc", at=0.0)
    asked: list[float] = []
    now[0] = 30.0 * 10**7
    assert not checks.status("hc", {"Type": "TCP", "FailureThreshold": 10},
                             lambda _c, _f, t: bool(asked.append(t)))
    assert len(asked) == TimedChecks.MAX_BACKLOG + 1 and asked[-1] == now[0]


# -- one account, one request rate: the product's Route 53 clients in the drill -------------------

def test_the_products_route53_readers_share_the_engines_account_rate_and_get_through(moto_url: str) -> None:
    """Route 53 Developer Guide, "Throttling for Amazon Route 53 API requests": the request rate is
    per account, all operations combined. In the drill the engine's client and the product's own
    readers (`orchestrator.aws.client` for the drill's endpoint) take from the same buckets; the
    product's adaptive retries get its read through once tokens are back."""
    from orchestrator.aws import client, on_clients_for
    from orchestrator.drill.world.engine import share_route53_rate
    from orchestrator.operations import verify

    ctx = AwsContext(endpoint_url=moto_url)
    own = client(ctx, "route53", "us-east-1")  # made before: like the DNS stand-in's, outside the rate
    zone = own.create_hosted_zone(Name="rate.example.net", CallerReference="rate")["HostedZone"]["Id"].split("/")[-1]
    engine = LocalEngine(ctx, zone, time_scale=1.0)
    rate = engine.route53_rate
    rate.take("GetChange")  # the account's bucket exists (the engine's change waits take from it)

    def empty_first(made: Any, service: str, _region: str) -> None:
        """Just before a product client's first request, the engine's calls have emptied the
        account's bucket (its operation's own bucket stays full)."""
        emptied: list[bool] = []

        def empty(**_: Any) -> None:
            if not emptied:
                emptied.append(True)
                account = rate._buckets[""]
                account.level(rate.clock())
                account.tokens = 0.0

        made.meta.events.register("before-send.route-53", empty)

    stops = [on_clients_for(moto_url, empty_first), share_route53_rate(moto_url, rate)]
    try:
        assert verify.hosted_zone_id(ctx, "rate.example.net") == zone
        assert rate.throttled[0] == "ListHostedZonesByName"  # refused at first, retried, through
        refused = len(rate.throttled)
        assert verify.dns_records(ctx, zone, "iot.rate.example.net") == []  # another reader, the same bucket
        assert rate.throttled[refused] == "ListResourceRecordSets"
    finally:
        for stop in stops:
            stop()
    accepted = rate.accepted
    verify.hosted_zone_id(ctx, "rate.example.net")  # ended: clients made now are not under the rate
    assert rate.accepted == accepted


# -- the size of a batch: 1,000 ResourceRecord elements, 32,000 Value characters, UPSERT twice -----
# Route 53 Developer Guide, "Quotas", "Number of elements and characters in ChangeResourceRecordSets requests".

def _a_set(name: str, values: list[str]) -> dict[str, Any]:
    return {"Name": f"{name}.example.com", "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": v} for v in values]}


def test_a_batch_over_1000_resource_records_is_refused_and_an_upsert_counts_twice() -> None:
    from orchestrator.drill.world.route53_model import apply_batch, batch_size

    creates = [{"Action": "CREATE", "ResourceRecordSet": _a_set(f"n{i}", [f'"{j}"' for j in range(100)])}
               for i in range(10)]
    assert batch_size(creates)[0] == 1000
    assert len(apply_batch([], creates, zone="example.com")) == 10  # exactly at the limit
    with pytest.raises(InvalidChangeBatch, match="Number of records limit of 1000 exceeded"):
        apply_batch([], [*creates, {"Action": "CREATE", "ResourceRecordSet": _a_set("one", ['"x"'])}])
    upserts = [{**c, "Action": "UPSERT"} for c in creates[:5]]  # 500 records, counted 1,000
    assert batch_size(upserts)[0] == 1000 and apply_batch([], upserts)
    with pytest.raises(InvalidChangeBatch, match="Number of records limit") as refused:
        apply_batch([], [*upserts, {"Action": "UPSERT", "ResourceRecordSet": _a_set("one", ['"x"'])}])
    assert refused.value.code == "InvalidChangeBatch" and refused.value.status == 400


def test_a_batch_over_32000_value_characters_is_refused_and_an_upsert_counts_twice() -> None:
    from orchestrator.drill.world.route53_model import apply_batch, batch_size

    value = '"' + "v" * 3998 + '"'  # 4,000 characters: ResourceRecord's longest Value
    creates = [{"Action": "CREATE", "ResourceRecordSet": _a_set(f"n{i}", [value, value])} for i in range(4)]
    assert batch_size(creates) == (8, 32000) and apply_batch([], creates)
    with pytest.raises(InvalidChangeBatch, match="characters limit of 32000 exceeded"):
        apply_batch([], [*creates, {"Action": "CREATE", "ResourceRecordSet": _a_set("one", ['"x"'])}])
    upserts = [{**c, "Action": "UPSERT"} for c in creates[:2]]  # 16,000 characters, counted 32,000
    assert batch_size(upserts) == (8, 32000) and apply_batch([], upserts)
    with pytest.raises(InvalidChangeBatch, match="characters limit"):
        apply_batch([], [*upserts, {"Action": "DELETE", "ResourceRecordSet": _a_set("one", ['"x"'])}])
