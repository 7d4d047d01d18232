"""The local world's one Route 53 model (orchestrator/drill/route53_model.py) in its two users: the
drill's engine refuses the batches Route 53 refuses before they reach moto, and the drill's DNS
answers (drill/dns.py) and the tests' answers (`route53_model.answers`) are the same selection."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.drill.dns import Route53Answers
from orchestrator.drill.engine import LocalEngine
from orchestrator.drill.mirror import HEALTH_CHECK, RECORD, Declared
from orchestrator.drill.route53_model import Health, InvalidChangeBatch, answers

WEST, CENTRAL = "a-ats.iot.eu-west-1.amazonaws.com", "b-ats.iot.eu-central-1.amazonaws.com"
REGION_OF = {WEST: "eu-west-1", CENTRAL: "eu-central-1"}


# -- the drill's engine refuses what Route 53 refuses ----------------------------------------------

@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _record(name: str, inputs: dict[str, Any]) -> Any:
    return Declared(RECORD, name, inputs)


def _dns(engine: LocalEngine, resources: list[Any]) -> None:
    spec = SimpleNamespace(name="dev-dns", kind="dns", config={})
    engine._dns(spec, resources, {}, {})  # type: ignore[arg-type]


def test_the_drills_engine_refuses_a_batch_route53_refuses_and_moto_keeps_nothing(moto_url: str) -> None:
    ctx = AwsContext(endpoint_url=moto_url)
    r53 = client(ctx, "route53", "us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="z")["HostedZone"]["Id"]
    engine = LocalEngine(ctx, zone_id)
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
    engine = LocalEngine(ctx, zone_id)
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
                    checker.status[cid] = REGION_OF[spec.fqdn] not in down
            expected = answers(sets, "iot.example.com", Health(CHECKS, down))
            got = {drill.answer(client)[0] for client in (None, *REGION_OF.values())}
            # failover: one answer wherever the resolver is; latency: each resolver the nearest healthy record
            assert got == set(expected), (down, got, expected)
            assert len(expected) == 1 or policy == "latency"
    finally:
        drill.stop()
