"""The DNS program (`iotplatform:dns:GlobalDns`) for each routing mode."""

from __future__ import annotations

from collections import Counter

import pytest

from programs.contract import DNS_OUTPUTS
from programs.mocks import EvaluationFailed, ats_endpoint, evaluate, zone_id
from tests.programs.conftest import DOMAIN, PRIMARY, SECONDARY, THIRD, ZONE, dns_args, dns_eval

RECORD = "aws:route53/record:Record"
CHECK = "aws:route53/healthCheck:HealthCheck"


def test_single_is_one_plain_cname_to_the_primary_without_health_check() -> None:
    ev = dns_eval("single", (PRIMARY,))
    assert Counter(r.type for r in ev.resources) == Counter({"iotplatform:dns:GlobalDns": 1, RECORD: 1})
    record = ev.one(RECORD).inputs
    assert record == {
        "zoneId": zone_id(ZONE), "name": DOMAIN, "type": "CNAME", "ttl": 60,
        "records": [ats_endpoint(PRIMARY)],
    }
    assert ev.outputs == {
        "fqdn": DOMAIN, "routing": "single",
        "records": [{"setIdentifier": None, "region": PRIMARY, "endpoint": ats_endpoint(PRIMARY)}],
        "healthCheckIds": {},
    }


def test_failover_is_primary_and_secondary_each_with_its_own_tcp_health_check() -> None:
    ev = dns_eval("failover", (PRIMARY, SECONDARY))
    assert Counter(r.type for r in ev.resources) == Counter(
        {"iotplatform:dns:GlobalDns": 1, RECORD: 2, CHECK: 2})
    records = {r.inputs["setIdentifier"]: r.inputs for r in ev.of_type(RECORD)}
    assert records[PRIMARY]["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
    assert records[SECONDARY]["failoverRoutingPolicies"] == [{"type": "SECONDARY"}]
    ids = ev.outputs["healthCheckIds"]
    assert set(ids) == {PRIMARY, SECONDARY} and len(set(ids.values())) == 2
    for region, record in records.items():
        assert record["type"] == "CNAME" and record["name"] == DOMAIN and record["ttl"] == 60
        assert record["records"] == [ats_endpoint(region)]
        assert record["healthCheckId"] == ids[region]
    for check in ev.of_type(CHECK):
        c = check.inputs
        assert (c["type"], c["port"], c["failureThreshold"], c["requestInterval"]) == ("TCP", 443, 3, 30)
        assert c["fqdn"] in {ats_endpoint(PRIMARY), ats_endpoint(SECONDARY)}
    assert [r["setIdentifier"] for r in ev.outputs["records"]] == [PRIMARY, SECONDARY]


def test_latency_is_one_record_per_region_each_checked() -> None:
    regions = (PRIMARY, SECONDARY, THIRD)
    ev = dns_eval("latency", regions)
    assert Counter(r.type for r in ev.resources)[RECORD] == 3
    assert Counter(r.type for r in ev.resources)[CHECK] == 3
    ids = ev.outputs["healthCheckIds"]
    for record in ev.of_type(RECORD):
        region = record.inputs["setIdentifier"]
        assert record.inputs["latencyRoutingPolicies"] == [{"region": region}]
        assert record.inputs["records"] == [ats_endpoint(region)]
        assert record.inputs["healthCheckId"] == ids[region]
        assert "failoverRoutingPolicies" not in record.inputs
    assert [r["region"] for r in ev.outputs["records"]] == list(regions)


@pytest.mark.parametrize("routing,regions", [
    ("single", (PRIMARY,)), ("failover", (PRIMARY, SECONDARY)), ("latency", (PRIMARY, SECONDARY))])
def test_outputs_have_exactly_the_contract_names(routing: str, regions: tuple[str, ...]) -> None:
    assert list(dns_eval(routing, regions).outputs) == list(DNS_OUTPUTS)


def test_primary_record_keeps_its_logical_name_across_routing_modes() -> None:
    """Promotion updates the primary's record instead of adding a conflicting second CNAME."""
    single = {r.name for r in dns_eval("single", (PRIMARY,)).of_type(RECORD)}
    failover = {r.name for r in dns_eval("failover", (PRIMARY, SECONDARY)).of_type(RECORD)}
    assert single == {f"iot-dev-dns-record-{PRIMARY}"} and single < failover


def test_ttl_comes_from_args() -> None:
    args = dns_args("single", PRIMARY)
    ev = evaluate(type(args)(**{**args.__dict__, "ttl": 300}), stack="dev-dns")
    assert ev.one(RECORD).inputs["ttl"] == 300


@pytest.mark.parametrize("routing,regions,message", [
    ("failover", (PRIMARY, SECONDARY, THIRD), "failover routing needs at least 1"),
    ("single", (PRIMARY, SECONDARY), "single routing needs exactly 1"),
    ("weighted", (PRIMARY,), "not one of single, failover, latency"),
    ("latency", (PRIMARY, PRIMARY), "twice"),
])
def test_target_lists_that_do_not_fit_the_mode_are_refused(routing: str, regions: tuple[str, ...],
                                                           message: str) -> None:
    with pytest.raises(EvaluationFailed, match=message):
        evaluate(dns_args(routing, *regions), stack="dev-dns")


def test_failover_with_the_primary_alone_is_the_transition_state() -> None:
    """Taking a secondary out passes through failover with the PRIMARY record alone."""
    ev = evaluate(dns_args("failover", PRIMARY), stack="dev-dns")
    record = ev.one(RECORD)
    assert record.inputs["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
    assert record.inputs["setIdentifier"] == PRIMARY


def test_other_records_wait_for_the_primary_record() -> None:
    """Route 53 refuses routed records beside a simple one: the primary's record changes first."""
    ev = dns_eval("latency", (PRIMARY, SECONDARY, THIRD))
    records = [r for r in ev.resources if r.type == RECORD]
    first = next(r for r in records if r.name.endswith(PRIMARY))
    others = [r for r in records if r is not first]
    assert len(others) == 2 and all(first.name in r.depends_on for r in others)
    assert first.name not in first.depends_on
