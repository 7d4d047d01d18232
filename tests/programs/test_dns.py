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
        "healthCheckIds": {}, "failoverControl": "dns", "routingControls": {}, "clusterEndpoints": [],
        "controlPanelArn": "", "safetyRule": {},
    }


def test_failover_is_primary_and_secondary_each_with_its_own_tcp_health_check() -> None:
    ev = dns_eval("failover", (PRIMARY, SECONDARY))
    assert Counter(r.type for r in ev.resources) == Counter(
        {"iotplatform:dns:GlobalDns": 1, RECORD: 2, CHECK: 6})  # per region: TCP, canary alarm, both
    records = {r.inputs["setIdentifier"]: r.inputs for r in ev.of_type(RECORD)}
    assert records["primary"]["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
    assert records["secondary"]["failoverRoutingPolicies"] == [{"type": "SECONDARY"}]
    ids = ev.outputs["healthCheckIds"]
    assert set(ids) == {PRIMARY, SECONDARY} and len(set(ids.values())) == 2
    for role, region in (("primary", PRIMARY), ("secondary", SECONDARY)):
        record = records[role]
        assert record["type"] == "CNAME" and record["name"] == DOMAIN and record["ttl"] == 60
        assert record["records"] == [ats_endpoint(region)]
        assert record["healthCheckId"] == ids[region]
    for check in (c for c in ev.of_type(CHECK) if c.inputs["type"] == "TCP"):
        c = check.inputs
        assert (c["type"], c["port"], c["failureThreshold"], c["requestInterval"]) == ("TCP", 443, 3, 30)
        assert c["fqdn"] in {ats_endpoint(PRIMARY), ats_endpoint(SECONDARY)}
    assert [(r["setIdentifier"], r["region"]) for r in ev.outputs["records"]] == [
        ("primary", PRIMARY), ("secondary", SECONDARY)]


def test_latency_is_one_record_per_region_each_checked() -> None:
    regions = (PRIMARY, SECONDARY, THIRD)
    ev = dns_eval("latency", regions)
    assert Counter(r.type for r in ev.resources)[RECORD] == 3
    assert Counter(r.type for r in ev.resources)[CHECK] == 9  # per region: TCP, canary alarm, both
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
    assert single == {"iot-dev-dns-record-primary"} and single < failover


def test_records_are_named_by_role_so_a_failover_moves_values_not_roles() -> None:
    """After a failover the same two records (same set identifiers and roles) point the other way:
    each change is one UPSERT, never a second PRIMARY."""
    before = {r.name: r.inputs for r in dns_eval("failover", (PRIMARY, SECONDARY)).of_type(RECORD)}
    after = {r.name: r.inputs for r in dns_eval("failover", (SECONDARY, PRIMARY)).of_type(RECORD)}
    assert set(before) == set(after) == {"iot-dev-dns-record-primary", "iot-dev-dns-record-secondary"}
    for name in before:
        assert before[name]["setIdentifier"] == after[name]["setIdentifier"]
        assert before[name]["failoverRoutingPolicies"] == after[name]["failoverRoutingPolicies"]
        assert before[name]["records"] != after[name]["records"]
        assert before[name]["healthCheckId"] != after[name]["healthCheckId"]
    assert after["iot-dev-dns-record-primary"]["records"] == [ats_endpoint(SECONDARY)]


def test_the_per_region_records_of_the_earlier_layout_are_aliases() -> None:
    """Upgrading renames nothing in AWS by delete-and-create: each old record becomes the role-named
    one in place (its set identifier changes in one [DELETE, CREATE] batch)."""
    ev = dns_eval("failover", (PRIMARY, SECONDARY))
    aliases = {r.name: r.aliases for r in ev.of_type(RECORD)}
    assert aliases == {"iot-dev-dns-record-primary": (f"iot-dev-dns-record-{PRIMARY}",),
                       "iot-dev-dns-record-secondary": (f"iot-dev-dns-record-{SECONDARY}",)}
    latency = {r.name: r.aliases for r in dns_eval("latency", (PRIMARY, SECONDARY, THIRD)).of_type(RECORD)}
    assert latency[f"iot-dev-dns-record-{PRIMARY}"] == ("iot-dev-dns-record-primary",)


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


@pytest.mark.parametrize("domain,zone,message", [
    ("example.com", "example.com", "is the apex of hosted zone 'example.com': no CNAME"),
    ("iot.example.org", "example.com", "is not inside hosted zone 'example.com'"),
    ("iot.badexample.com", "example.com", "is not inside hosted zone"),
])
def test_a_domain_route53_would_refuse_is_refused_before_anything_is_created(domain: str, zone: str,
                                                                            message: str) -> None:
    """Route 53 refuses a CNAME at the zone apex and a name outside the zone (orchestrator/drill/world/route53_model.py
    rules 8 and 9): the program says so instead of failing half-way through an update."""
    args = dns_args("failover", PRIMARY, SECONDARY)
    with pytest.raises(EvaluationFailed, match=message):
        evaluate(type(args)(**{**args.__dict__, "domain": domain, "hosted_zone": zone}), stack="dev-dns")


def test_failover_with_the_primary_alone_is_the_transition_state() -> None:
    """Taking a secondary out passes through failover with the PRIMARY record alone."""
    ev = evaluate(dns_args("failover", PRIMARY), stack="dev-dns")
    record = ev.one(RECORD)
    assert record.inputs["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
    assert record.inputs["setIdentifier"] == "primary"
    assert record.inputs["records"] == [ats_endpoint(PRIMARY)]


def test_other_records_wait_for_the_primary_record() -> None:
    """Route 53 refuses routed records beside a simple one: the primary's record changes first."""
    ev = dns_eval("latency", (PRIMARY, SECONDARY, THIRD))
    records = [r for r in ev.resources if r.type == RECORD]
    first = next(r for r in records if r.name.endswith(PRIMARY))
    others = [r for r in records if r is not first]
    assert len(others) == 2 and all(first.name in r.depends_on for r in others)
    assert first.name not in first.depends_on


# -- failover_control: arc -----------------------------------------------------------------------
CLUSTER = "aws:route53recoverycontrol/cluster:Cluster"
PANEL = "aws:route53recoverycontrol/controlPanel:ControlPanel"
CONTROL = "aws:route53recoverycontrol/routingControl:RoutingControl"
RULE = "aws:route53recoverycontrol/safetyRule:SafetyRule"


def arc_eval(routing: str, regions: tuple[str, ...]):  # noqa: ANN201 - an Evaluation
    args = dns_args(routing, *regions)
    return evaluate(type(args)(**{**args.__dict__, "failover_control": "arc"}), stack="dev-dns")


def test_arc_is_a_cluster_a_panel_a_control_per_region_and_an_at_least_one_on_rule() -> None:
    ev = arc_eval("failover", (PRIMARY, SECONDARY))
    kinds = Counter(r.type for r in ev.resources)
    assert (kinds[CLUSTER], kinds[PANEL], kinds[CONTROL], kinds[RULE]) == (1, 1, 2, 1)
    assert kinds[CHECK] == 8  # per region: TCP, canary alarm, RECOVERY_CONTROL, CALCULATED
    assert ev.one(PANEL).inputs["name"] == "iot-dev"
    controls = {r.inputs["name"]: r for r in ev.of_type(CONTROL)}
    assert set(controls) == {f"iot-dev-{PRIMARY}", f"iot-dev-{SECONDARY}"}
    assert {c.inputs["controlPanelArn"] for c in controls.values()} == {ev.outputs["controlPanelArn"]}
    rule = ev.one(RULE).inputs
    assert rule["ruleConfig"] == {"inverted": False, "threshold": 1, "type": "ATLEAST"}
    assert sorted(rule["assertedControls"]) == sorted(ev.outputs["routingControls"].values())
    assert set(ev.outputs["routingControls"]) == {PRIMARY, SECONDARY}
    assert ev.outputs["failoverControl"] == "arc"
    assert {e["region"] for e in ev.outputs["clusterEndpoints"]} == {
        "us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-2"}
    assert ev.outputs["controlPanelArn"].startswith("arn:aws:route53-recovery-control::")
    # the rule's wait period and threshold reach the orchestrator, which waits the period out
    assert rule["waitPeriodMs"] == 5000
    assert ev.outputs["safetyRule"] == {"threshold": 1, "waitPeriodMs": rule["waitPeriodMs"]}


def test_arc_records_use_a_calculated_check_healthy_only_when_endpoint_mqtt_and_control_are() -> None:
    ev = arc_eval("failover", (PRIMARY, SECONDARY))
    checks = {r.name: r.inputs for r in ev.of_type(CHECK)}
    ids = ev.outputs["healthCheckIds"]
    for role, region in (("primary", PRIMARY), ("secondary", SECONDARY)):
        record = next(r.inputs for r in ev.of_type(RECORD) if r.inputs["setIdentifier"] == role)
        gate = checks[f"iot-dev-dns-gate-{region}"]
        assert gate["type"] == "CALCULATED" and gate["childHealthThreshold"] == 3
        assert len(gate["childHealthchecks"]) == 3
        assert checks[f"iot-dev-dns-canary-check-{region}"]["type"] == "CLOUDWATCH_METRIC"
        assert {f"iot-dev-dns-{kind}-{region}" for kind in ("health", "control-check", "canary-check")} <= set(
            ev.named(f"iot-dev-dns-gate-{region}").depends_on)
        assert record["healthCheckId"] == ids[region]
        switch = checks[f"iot-dev-dns-control-check-{region}"]
        assert switch["type"] == "RECOVERY_CONTROL"
        assert switch["routingControlArn"] == ev.outputs["routingControls"][region]
        assert checks[f"iot-dev-dns-health-{region}"]["type"] == "TCP"


@pytest.mark.slow
def test_arc_failover_changes_no_record_input_a_routine_up_would_send() -> None:
    """ARC moves traffic with routing controls: the DNS stack is not updated on failover, and the
    record inputs for one role order are the same whatever the control states are."""
    a = {r.name: r.inputs for r in arc_eval("latency", (PRIMARY, SECONDARY)).of_type(RECORD)}
    b = {r.name: r.inputs for r in arc_eval("latency", (PRIMARY, SECONDARY)).of_type(RECORD)}
    assert a == b and all(r["latencyRoutingPolicies"] for r in a.values())


def test_single_routing_creates_no_arc_resources_even_with_arc_control() -> None:
    ev = arc_eval("single", (PRIMARY,))
    assert not ev.of_type(CLUSTER) and not ev.of_type(CHECK)
    assert ev.outputs["routingControls"] == {} and ev.outputs["failoverControl"] == "arc"


def test_an_unknown_failover_control_is_refused() -> None:
    args = dns_args("failover", PRIMARY, SECONDARY)
    with pytest.raises(EvaluationFailed, match="failover control 'weird'"):
        evaluate(type(args)(**{**args.__dict__, "failover_control": "weird"}), stack="dev-dns")
