"""The strict Route 53 gate and the ARC fake: they refuse what AWS refuses, in AWS's shapes.

A fake kinder than AWS hides the bugs users meet, so each rule is shown refused through boto3 (the
error code and messages a caller sees), and the answer model is checked against Route 53's
documented selection rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from orchestrator.drill.world.arc import ArcCluster, Conflict
from orchestrator.drill.world.route53_model import endpoint_region
from tests.aws_gate import Gate
from tests.doubles import ManualClock

NAME = "iot.example.com."
EU = "abc-ats.iot.eu-west-1.amazonaws.com"
DE = "abc-ats.iot.eu-central-1.amazonaws.com"
US = "abc-ats.iot.us-east-1.amazonaws.com"


@pytest.fixture
def r53(gate: Gate) -> Any:
    return boto3.client("route53", region_name="us-east-1", endpoint_url=gate.url)


@pytest.fixture
def zone(r53: Any) -> str:
    return r53.create_hosted_zone(Name="example.com", CallerReference="z")["HostedZone"]["Id"].split("/")[-1]


def rr(value: str, set_id: str | None = None, **policy: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": NAME, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": value}]}
    if set_id:
        out["SetIdentifier"] = set_id
    out.update(policy)
    return out


def change(r53: Any, zone: str, *changes: tuple[str, dict[str, Any]]) -> None:
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={
        "Changes": [{"Action": a, "ResourceRecordSet": r} for a, r in changes]})


def refused(r53: Any, zone: str, *changes: tuple[str, dict[str, Any]], code: str = "InvalidChangeBatch",
            status: int = 400) -> str:
    with pytest.raises(ClientError) as info:
        change(r53, zone, *changes)
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return str(info.value)


def cnames(gate: Gate, zone: str) -> list[tuple[str | None, str | None, str]]:
    return sorted((r.get("SetIdentifier"), r.get("Failover") or r.get("Region"), r["ResourceRecords"][0]["Value"])
                  for r in gate.records(zone) if r["Type"] == "CNAME")


def test_create_of_an_existing_set_is_refused(r53, zone, gate) -> None:  # noqa: ANN001
    change(r53, zone, ("CREATE", rr(EU)))
    assert "already exists" in refused(r53, zone, ("CREATE", rr(DE)))
    assert cnames(gate, zone) == [(None, None, EU)]


def test_delete_must_match_every_value(r53, zone, gate) -> None:  # noqa: ANN001
    change(r53, zone, ("CREATE", rr(EU)))
    assert "do not match" in refused(r53, zone, ("DELETE", {**rr(EU), "TTL": 300}))
    assert "not found" in refused(r53, zone, ("DELETE", rr(EU, "x", Failover="PRIMARY")))
    change(r53, zone, ("DELETE", rr(EU)))
    assert cnames(gate, zone) == []


def test_set_identifier_and_routing_policy_go_together(r53, zone) -> None:  # noqa: ANN001
    assert "Expected exactly one" in refused(r53, zone, ("CREATE", rr(EU, "eu")), code="InvalidInput")
    assert "SetIdentifier" in refused(r53, zone, ("CREATE", rr(EU, Failover="PRIMARY")), code="InvalidInput")


def test_a_cname_shares_its_name_with_no_other_type(r53, zone) -> None:  # noqa: ANN001
    change(r53, zone, ("CREATE", {"Name": NAME, "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": '"x"'}]}))
    assert "conflicts" in refused(r53, zone, ("CREATE", rr(EU)))


def test_simple_beside_routed_and_mixed_policies_are_refused(r53, zone) -> None:  # noqa: ANN001
    change(r53, zone, ("CREATE", rr(EU)))
    refused(r53, zone, ("CREATE", rr(DE, "de", Failover="SECONDARY")))
    change(r53, zone, ("DELETE", rr(EU)), ("CREATE", rr(EU, "eu", Failover="PRIMARY")))
    assert "mixed" in refused(r53, zone, ("CREATE", rr(DE, "de", Region="eu-central-1")))


def test_a_record_outside_the_zone_is_refused(r53, zone, gate) -> None:  # noqa: ANN001
    outside = {**rr(EU), "Name": "iot.example.org."}
    assert "RRSet with DNS name iot.example.org. is not permitted in zone example.com." in refused(
        r53, zone, ("CREATE", outside))
    # a name that merely ends like the zone is outside it too
    assert "not permitted in zone" in refused(r53, zone, ("UPSERT", {**rr(EU), "Name": "iot.badexample.com."}))
    # all-or-nothing: the valid change of the batch is not applied either
    refused(r53, zone, ("CREATE", rr(DE)), ("CREATE", outside))
    assert cnames(gate, zone) == []
    change(r53, zone, ("CREATE", {**rr(EU), "Name": "deep.iot.EXAMPLE.com"}))  # inside, any case


def test_a_cname_at_the_zone_apex_is_refused(r53, zone, gate) -> None:  # noqa: ANN001
    apex = {**rr(EU), "Name": "example.com."}
    assert "RRSet of type CNAME with DNS name example.com. is not permitted at apex in zone example.com." in \
        refused(r53, zone, ("CREATE", apex))
    refused(r53, zone, ("UPSERT", {**apex, "SetIdentifier": "primary", "Failover": "PRIMARY"}))
    assert cnames(gate, zone) == []
    # other types at the apex are fine
    txt = {"Name": "example.com.", "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": '"v"'}]}
    change(r53, zone, ("CREATE", txt))


def test_a_record_naming_a_missing_health_check_is_refused(r53, zone, gate) -> None:  # noqa: ANN001
    missing = "00000000-0000-0000-0000-000000000000"
    primary = rr(EU, "primary", Failover="PRIMARY", HealthCheckId=missing)
    assert "No health check exists with the specified ID" in refused(
        r53, zone, ("CREATE", primary), code="NoSuchHealthCheck", status=404)
    assert cnames(gate, zone) == []
    check = r53.create_health_check(CallerReference="c1", HealthCheckConfig={
        "Type": "TCP", "FullyQualifiedDomainName": EU, "Port": 443, "RequestInterval": 30,
        "FailureThreshold": 3})["HealthCheck"]["Id"]
    change(r53, zone, ("CREATE", {**primary, "HealthCheckId": check}))
    # a DELETE names what exists: it is matched, not re-checked (the check may be gone by then)
    r53.delete_health_check(HealthCheckId=check)
    refused(r53, zone, ("UPSERT", {**primary, "HealthCheckId": check, "TTL": 30}), code="NoSuchHealthCheck",
            status=404)
    change(r53, zone, ("DELETE", {**primary, "HealthCheckId": check}))
    assert cnames(gate, zone) == []


def test_one_primary_and_one_secondary_so_a_role_flip_is_refused_either_way(r53, zone, gate) -> None:  # noqa: ANN001
    change(r53, zone, ("CREATE", rr(EU, "eu-west-1", Failover="PRIMARY")),
           ("CREATE", rr(US, "us-east-1", Failover="SECONDARY")))
    # what `failover --to us-east-1` used to send, in either order
    assert "PRIMARY already exists" in refused(r53, zone, ("UPSERT", rr(US, "us-east-1", Failover="PRIMARY")))
    refused(r53, zone, ("UPSERT", rr(EU, "eu-west-1", Failover="SECONDARY")))
    assert cnames(gate, zone) == [("eu-west-1", "PRIMARY", EU), ("us-east-1", "SECONDARY", US)]
    # records named by role: the value moves, one valid UPSERT each
    change(r53, zone, ("DELETE", rr(EU, "eu-west-1", Failover="PRIMARY")),
           ("CREATE", rr(US, "primary", Failover="PRIMARY")))
    assert len(gate.rejected_batches) == 2
    assert cnames(gate, zone) == [("primary", "PRIMARY", US), ("us-east-1", "SECONDARY", US)]


def test_one_latency_record_per_region(r53, zone) -> None:  # noqa: ANN001
    change(r53, zone, ("CREATE", rr(EU, "a", Region="eu-west-1")))
    assert "latency record for region eu-west-1" in refused(r53, zone, ("CREATE", rr(DE, "b", Region="eu-west-1")))


def test_a_batch_over_route53s_size_limits_is_refused_as_route53_refuses_it(r53, zone, gate) -> None:  # noqa: ANN001
    """Developer Guide, "Quotas": at most 1,000 ResourceRecord elements and 32,000 Value characters
    per request, an UPSERT's counted twice; refused whole (InvalidChangeBatch, HTTP 400)."""
    values = [{"Value": f'"{i}"'} for i in range(100)]
    sets = [{"Name": f"t{i}.example.com", "Type": "TXT", "TTL": 60, "ResourceRecords": values} for i in range(6)]
    message = refused(r53, zone, *(("UPSERT", s) for s in sets))  # 600 records, counted 1,200
    assert message.endswith(": [Number of records limit of 1000 exceeded.]"), message
    assert not [r for r in gate.records(zone) if r["Type"] == "TXT"]  # nothing of it applied
    change(r53, zone, *(("CREATE", s) for s in sets))  # the same sets created: 600
    assert len([r for r in gate.records(zone) if r["Type"] == "TXT"]) == 6
    long = [{"Value": '"' + "v" * 3998 + '"'}]  # 4,000 characters, counted 8,000: five are 40,000
    big = [{"Name": f"l{i}.example.com", "Type": "TXT", "TTL": 60, "ResourceRecords": long} for i in range(5)]
    message = refused(r53, zone, *(("UPSERT", s) for s in big))
    assert message.endswith(": [Number of characters limit of 32000 exceeded.]"), message


def test_a_batch_is_all_or_nothing_and_checked_in_order(r53, zone, gate) -> None:  # noqa: ANN001
    change(r53, zone, ("CREATE", rr(EU)))
    # the documented pattern: DELETE the simple record and CREATE routed ones in one batch
    change(r53, zone, ("DELETE", rr(EU)), ("CREATE", rr(EU, "primary", Failover="PRIMARY")),
           ("CREATE", rr(DE, "secondary", Failover="SECONDARY")))
    before = cnames(gate, zone)
    # the first change alone is fine; the second fails: nothing of the batch is applied
    refused(r53, zone, ("UPSERT", rr(US, "primary", Failover="PRIMARY")),
            ("CREATE", rr(DE, "third", Failover="SECONDARY")))
    assert cnames(gate, zone) == before


def _check(r53: Any, **config: Any) -> str:
    return r53.create_health_check(CallerReference=str(config), HealthCheckConfig=config)["HealthCheck"]["Id"]


def test_answers_follow_route53_selection_rules(r53, zone, gate) -> None:  # noqa: ANN001
    eu = _check(r53, Type="TCP", FullyQualifiedDomainName=EU, Port=443)
    de = _check(r53, Type="TCP", FullyQualifiedDomainName=DE, Port=443)
    change(r53, zone, ("CREATE", rr(EU, "primary", Failover="PRIMARY", HealthCheckId=eu)),
           ("CREATE", rr(DE, "secondary", Failover="SECONDARY", HealthCheckId=de)))
    assert gate.answers(zone, NAME) == {"eu-west-1"}
    assert gate.answers(zone, NAME, down=frozenset({"eu-west-1"})) == {"eu-central-1"}
    # none healthy: all count as healthy, the PRIMARY answers
    assert gate.answers(zone, NAME, down=frozenset({"eu-west-1", "eu-central-1"})) == {"eu-west-1"}


def test_recovery_control_and_calculated_checks_follow_routing_controls(r53, zone, gate) -> None:  # noqa: ANN001
    arn = "arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/eu"
    tcp = _check(r53, Type="TCP", FullyQualifiedDomainName=EU, Port=443)
    rc = _check(r53, Type="RECOVERY_CONTROL", RoutingControlArn=arn)
    calc = _check(r53, Type="CALCULATED", ChildHealthChecks=[tcp, rc], HealthThreshold=2)
    de = _check(r53, Type="TCP", FullyQualifiedDomainName=DE, Port=443)
    change(r53, zone, ("CREATE", rr(EU, "primary", Failover="PRIMARY", HealthCheckId=calc)),
           ("CREATE", rr(DE, "secondary", Failover="SECONDARY", HealthCheckId=de)))
    assert gate.health_checks[rc]["RoutingControlArn"] == arn
    assert gate.answers(zone, NAME, controls={arn: "On"}) == {"eu-west-1"}
    assert gate.answers(zone, NAME, controls={arn: "Off"}) == {"eu-central-1"}
    assert gate.answers(zone, NAME, controls={arn: "On"}, down=frozenset({"eu-west-1"})) == {"eu-central-1"}


def _failover_pair(r53: Any, zone: str, **timing: Any) -> tuple[str, str]:
    eu = _check(r53, Type="TCP", FullyQualifiedDomainName=EU, Port=443, **timing)
    de = _check(r53, Type="TCP", FullyQualifiedDomainName=DE, Port=443, **timing)
    change(r53, zone, ("CREATE", rr(EU, "primary", Failover="PRIMARY", HealthCheckId=eu)),
           ("CREATE", rr(DE, "secondary", Failover="SECONDARY", HealthCheckId=de)))
    return eu, de


def _observed(r53: Any, check: str) -> list[str]:
    return [o["StatusReport"]["Status"].split(":")[0]
            for o in r53.get_health_check_status(HealthCheckId=check)["HealthCheckObservations"]]


def test_an_outage_turns_a_check_unhealthy_only_after_failure_threshold_checks(r53, zone, gate) -> None:  # noqa: ANN001
    """Route 53 Developer Guide, "How Amazon Route 53 determines whether a health check is healthy":
    FailureThreshold consecutive failed checks, one every RequestInterval, before the answer moves;
    as many successes before it moves back. On the gate's clock (a manual one here), unscaled."""
    clock = ManualClock()
    gate.clock, gate.health_scale = clock, 1.0
    clock.advance(1000.0)
    eu, _ = _failover_pair(r53, zone, RequestInterval=10, FailureThreshold=3)
    clock.advance(5.0)
    gate.down.add("eu-west-1")  # checks at +10, +20, +30 after the check was created fail
    clock.advance(10.0)  # one failed check (+10)
    assert gate.answers(zone, NAME) == {"eu-west-1"} and gate.check_healthy(eu)
    assert _observed(r53, eu) == ["Failure"]  # the checkers report the failure; the status waits
    clock.advance(14.9)  # two (+20)
    assert gate.answers(zone, NAME) == {"eu-west-1"}
    clock.advance(0.1)  # the third: 30 s after creation, 25 s after the outage began
    assert gate.answers(zone, NAME) == {"eu-central-1"} and not gate.check_healthy(eu)
    gate.down.discard("eu-west-1")
    clock.advance(29.9)  # successes at +40 and +50
    assert gate.answers(zone, NAME) == {"eu-central-1"}
    assert _observed(r53, eu) == ["Success"]
    clock.advance(0.1)  # and +60
    assert gate.answers(zone, NAME) == {"eu-west-1"}


def test_an_outage_on_the_real_clock_moves_the_answer_within_the_scaled_detection_time(r53, zone, gate) -> None:  # noqa: ANN001
    """The same on the gate's own clock (HEALTH_SCALE: a 30 s interval is 0.3 s): the answer moves
    once the checkers have counted the failures, and back once they have counted the successes."""
    from tests.polling import until

    eu, _ = _failover_pair(r53, zone)  # Route 53's defaults: RequestInterval 30, FailureThreshold 3
    assert gate.answers(zone, NAME) == {"eu-west-1"}
    gate.down.add("eu-west-1")
    assert until(lambda: gate.answers(zone, NAME) == {"eu-central-1"}, timeout=30, every=0.1)
    state = gate.checkers.state(eu, gate.health_checks[eu], gate._measure_at)
    assert not state.healthy and state.last_ok is False
    gate.down.discard("eu-west-1")
    assert until(lambda: gate.answers(zone, NAME) == {"eu-west-1"}, timeout=30, every=0.1)


def test_an_outage_refuses_the_region_and_counts_every_call(gate: Gate) -> None:
    if True:
        gate.down.add("eu-west-1")
        ok = boto3.client("iot", region_name="eu-central-1", endpoint_url=gate.url)
        ok.list_things()
        dead = boto3.client("iot", region_name="eu-west-1", endpoint_url=gate.url,
                            config=__import__("botocore.config").config.Config(retries={"max_attempts": 1}))
        with pytest.raises((EndpointConnectionError, ClientError, Exception)):
            dead.list_things()
        assert gate.by_region_and_service() == {("eu-central-1", "iot"): 1}
        assert gate.refused and all(c.region == "eu-west-1" for c in gate.refused)


# -- ARC -------------------------------------------------------------------------------------------
PANEL = "arn:aws:route53-recovery-control::123456789012:controlpanel/p"


RULE = f"{PANEL}/safetyrule/one-on"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The cluster's time; the product's pauses advance it (no test sleeps for a wait period)."""
    clock = ManualClock()
    monkeypatch.setattr("orchestrator.routing_controls._sleep", clock.sleep)
    return clock


@pytest.fixture
def arc(clock: ManualClock) -> Iterator[ArcCluster]:
    with ArcCluster(clock=clock).serve() as cluster:
        for region in ("eu-west-1", "eu-central-1"):
            cluster.add_control(f"{PANEL}/routingcontrol/{region}", f"iot-dev-{region}", PANEL)
        cluster.add_safety_rule(RULE, "at-least-one-on",
                                [f"{PANEL}/routingcontrol/eu-west-1", f"{PANEL}/routingcontrol/eu-central-1"], 1,
                                wait_period_ms=5000)
        yield cluster


def _arc_client(arc: ArcCluster, region: str) -> Any:
    return boto3.client("route53-recovery-cluster", region_name=region, endpoint_url=arc.endpoints[region])


def test_arc_speaks_the_toggle_customer_api_through_boto3(arc: ArcCluster, clock: ManualClock) -> None:
    c = _arc_client(arc, "us-west-2")
    eu, de = f"{PANEL}/routingcontrol/eu-west-1", f"{PANEL}/routingcontrol/eu-central-1"
    assert c.get_routing_control_state(RoutingControlArn=eu)["RoutingControlState"] == "Off"  # new: Off
    c.update_routing_control_states(UpdateRoutingControlStateEntries=[
        {"RoutingControlArn": eu, "RoutingControlState": "On"},
        {"RoutingControlArn": de, "RoutingControlState": "On"}])
    # the safety rule's wait period: for 5000 ms after a change, requests against its controls fail
    # (reads too: the stricter reading of "any request", see orchestrator/drill/world/arc.py)
    with pytest.raises(ClientError) as waiting:
        c.update_routing_control_state(RoutingControlArn=eu, RoutingControlState="Off")
    assert waiting.value.response["Error"]["Code"] == "ConflictException"
    assert "wait period of 5000 ms" in waiting.value.response["Error"]["Message"]
    for read in (lambda: c.list_routing_controls(ControlPanelArn=PANEL),
                 lambda: c.get_routing_control_state(RoutingControlArn=de)):
        with pytest.raises(ClientError) as refused:
            read()
        assert refused.value.response["Error"]["Code"] == "ConflictException"
    assert arc.states()[eu] == "On" and arc.conflicts == [Conflict(RULE, "wait-period")] * 3
    clock.advance(5.0)
    listed = c.list_routing_controls(ControlPanelArn=PANEL)["RoutingControls"]
    assert {x["RoutingControlName"]: x["RoutingControlState"] for x in listed} == {
        "iot-dev-eu-west-1": "On", "iot-dev-eu-central-1": "On"}
    c.update_routing_control_state(RoutingControlArn=eu, RoutingControlState="Off")
    clock.advance(5.0)
    # the safety rule: at least one On
    with pytest.raises(ClientError) as info:
        c.update_routing_control_state(RoutingControlArn=de, RoutingControlState="Off")
    assert info.value.response["Error"]["Code"] == "ConflictException"
    assert arc.states()[de] == "On" and arc.conflicts[-1] == Conflict(RULE, "safety-rule")
    with pytest.raises(ClientError) as missing:
        c.get_routing_control_state(RoutingControlArn=f"{PANEL}/routingcontrol/nope")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert arc.count("us-west-2") == 9


def test_arc_endpoints_share_one_state_and_a_down_region_does_not_answer(arc: ArcCluster,
                                                                        clock: ManualClock) -> None:
    eu = f"{PANEL}/routingcontrol/eu-west-1"
    _arc_client(arc, "us-east-1").update_routing_control_state(RoutingControlArn=eu, RoutingControlState="On")
    clock.advance(5.0)  # past the safety rule's wait period, which refuses reads too
    assert _arc_client(arc, "ap-northeast-1").get_routing_control_state(
        RoutingControlArn=eu)["RoutingControlState"] == "On"
    arc.down.add("eu-west-1")
    from botocore.config import Config

    dead = boto3.client("route53-recovery-cluster", region_name="eu-west-1", endpoint_url=arc.endpoints["eu-west-1"],
                        config=Config(retries={"max_attempts": 1}))
    with pytest.raises(Exception):  # noqa: B017 - a connection error of some kind
        dead.get_routing_control_state(RoutingControlArn=eu)
    assert arc.count("eu-west-1") == 0 and len(arc.refused) >= 1


def test_endpoint_region_of_an_iot_endpoint() -> None:
    assert endpoint_region(EU) == "eu-west-1" and endpoint_region("example.net") is None


# -- the product's ARC client against the fake cluster -----------------------------------------------
def _wiring(arc: ArcCluster) -> Any:
    from orchestrator.routing_controls import ArcWiring, ClusterEndpoint

    return ArcWiring({r: f"{PANEL}/routingcontrol/{r}" for r in ("eu-west-1", "eu-central-1")},
                     tuple(ClusterEndpoint(r, u) for r, u in arc.endpoints.items()), PANEL)


def test_routing_controls_move_traffic_in_one_call_avoiding_the_failed_region(arc: ArcCluster,
                                                                             clock: ManualClock) -> None:
    from orchestrator.aws import AwsContext
    from orchestrator.routing_controls import ControlState, only, read_states, set_states

    ctx = AwsContext(endpoint_url="http://127.0.0.1:1")  # dummy credentials; ARC uses its own endpoints
    wiring = _wiring(arc)
    set_states(ctx, wiring, {"eu-west-1": ControlState.ON, "eu-central-1": ControlState.ON})
    clock.advance(5.0)  # past the safety rule's wait period (waiting it out: the tests below)
    arc.down.update({"us-east-1", "eu-west-1"})  # the first endpoint is out; eu-west-1 must not be called
    arc.calls.clear()
    result = set_states(ctx, wiring, only("eu-central-1", list(wiring.controls)), avoid=["eu-west-1"])
    assert result.endpoint_region == "us-west-2"
    assert [(c.region, c.ok) for c in result.calls] == [("us-east-1", False), ("us-west-2", True)]
    assert arc.count("eu-west-1") == 0 and arc.count(operation="UpdateRoutingControlStates") == 1
    assert read_states(ctx, wiring, avoid=["eu-west-1"]).states == {
        "eu-west-1": ControlState.OFF, "eu-central-1": ControlState.ON}


def test_a_safety_rule_refusal_is_a_guard_not_an_outage(arc: ArcCluster) -> None:
    from orchestrator.aws import AwsContext
    from orchestrator.errors import GuardRefused
    from orchestrator.routing_controls import ControlState, set_states

    wiring = _wiring(arc)
    with pytest.raises(GuardRefused, match="at least 1"):
        set_states(AwsContext(endpoint_url="http://127.0.0.1:1"), wiring,
                   {"eu-west-1": ControlState.OFF, "eu-central-1": ControlState.OFF})
    assert len(arc.calls) == 1  # not retried against the other endpoints


def test_arc_wait_period_covers_the_rules_controls_reads_included_and_overrides(arc: ArcCluster,
                                                                               clock: ManualClock) -> None:
    eu, de = f"{PANEL}/routingcontrol/eu-west-1", f"{PANEL}/routingcontrol/eu-central-1"
    other = f"{PANEL}/routingcontrol/elsewhere"
    arc.add_control(other, "not-in-the-rule", PANEL)
    c = _arc_client(arc, "us-east-1")
    c.update_routing_control_states(UpdateRoutingControlStateEntries=[
        {"RoutingControlArn": eu, "RoutingControlState": "On"}, {"RoutingControlArn": de, "RoutingControlState": "On"}])
    clock.advance(4.999)
    with pytest.raises(ClientError) as read:  # "any request against the target routing controls"
        c.get_routing_control_state(RoutingControlArn=eu)
    assert read.value.response["Error"]["Code"] == "ConflictException"
    assert c.get_routing_control_state(RoutingControlArn=other)["RoutingControlState"] == "Off"  # not the rule's
    c.update_routing_control_state(RoutingControlArn=other, RoutingControlState="On")  # not the rule's control
    with pytest.raises(ClientError) as refused:
        c.update_routing_control_state(RoutingControlArn=de, RoutingControlState="Off")
    assert refused.value.response["Error"]["Code"] == "ConflictException"
    # naming the rule in SafetyRulesToOverride skips it, wait period included
    c.update_routing_control_state(RoutingControlArn=de, RoutingControlState="Off", SafetyRulesToOverride=[RULE])
    assert arc.states() == {eu: "On", de: "Off", other: "On"}
    assert [x.why for x in arc.conflicts] == ["wait-period", "wait-period"]


def test_arc_wait_period_follows_the_time_scale_and_the_control_plane_takes_it_over_http(clock: ManualClock) -> None:
    import json
    import urllib.request

    with ArcCluster(clock=clock, time_scale=0.01).serve() as cluster:  # 5000 ms -> 50 ms
        url = cluster.endpoints["us-east-1"].rsplit("/v1", 1)[0]
        for body, path in (({"arn": "rc/a", "name": "a", "panel": PANEL}, "control"),
                           ({"arn": "rc/b", "name": "b", "panel": PANEL}, "control"),
                           ({"arn": "sr/1", "name": "one-on", "asserted": ["rc/a", "rc/b"], "threshold": 1,
                             "type": "ATLEAST", "waitPeriodMs": 5000}, "safety-rule")):
            request = urllib.request.Request(f"{url}/_fake/{path}", data=json.dumps(body).encode(), method="POST")
            urllib.request.urlopen(request, timeout=5).read()  # noqa: S310 - 127.0.0.1
        assert cluster.rules["sr/1"].wait_period_ms == 5000
        c = _arc_client(cluster, "us-east-1")
        c.update_routing_control_state(RoutingControlArn="rc/a", RoutingControlState="On")
        clock.advance(0.049)
        with pytest.raises(ClientError):
            c.update_routing_control_state(RoutingControlArn="rc/b", RoutingControlState="On")
        clock.advance(0.002)
        c.update_routing_control_state(RoutingControlArn="rc/b", RoutingControlState="On")
        assert cluster.states() == {"rc/a": "On", "rc/b": "On"}


def test_the_engine_tiers_mirror_forwards_the_programs_wait_period(clock: ManualClock,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in provider's mirror (tests/engine/fake_aws_provider/moto_mirror.py) registers a
    SafetyRule with the cluster carrying the program's waitPeriodMs, and refuses one without it."""
    from tests.engine.fake_aws_provider.moto_mirror import MotoMirror

    with ArcCluster(clock=clock).serve() as cluster:
        monkeypatch.setenv("FAKE_AWS_ARC_URL", cluster.endpoints["us-east-1"].rsplit("/v1", 1)[0])
        mirror = MotoMirror("http://127.0.0.1:1")
        props = {"arn": "sr/1", "name": "one-on", "assertedControls": ["rc/a"], "waitPeriodMs": 7000,
                 "ruleConfig": {"threshold": 1, "inverted": False, "type": "ATLEAST"}}
        mirror.created("aws:route53recoverycontrol/safetyRule:SafetyRule", "us-east-1", "sr/1", props)
        assert cluster.rules["sr/1"].wait_period_ms == 7000
        with pytest.raises(KeyError):
            mirror.created("aws:route53recoverycontrol/safetyRule:SafetyRule", "us-east-1", "sr/1",
                           {k: v for k, v in props.items() if k != "waitPeriodMs"})


def test_routing_controls_wait_out_the_wait_period_and_say_so(arc: ArcCluster, clock: ManualClock) -> None:
    from orchestrator.aws import AwsContext
    from orchestrator.routing_controls import ControlState, only, set_states

    ctx, wiring = AwsContext(endpoint_url="http://127.0.0.1:1"), _wiring(arc)
    assert set_states(ctx, wiring, {"eu-west-1": ControlState.ON, "eu-central-1": ControlState.ON}).waited_s == 0
    moved = set_states(ctx, wiring, only("eu-central-1", list(wiring.controls)))  # at once: inside the wait
    assert arc.states() == {f"{PANEL}/routingcontrol/eu-west-1": "Off", f"{PANEL}/routingcontrol/eu-central-1": "On"}
    assert {x.why for x in arc.conflicts} == {"wait-period"} and len(arc.conflicts) >= 1
    # paused at most 1 s at a time, and only as long as the wait period needed
    assert moved.waited_s == pytest.approx(sum(clock.pauses)) and 5.0 <= moved.waited_s < 6.0
    assert max(clock.pauses) <= 1.0
    # each refused call is a conflict or (a 4th mutating call within a second at one endpoint) throttled
    assert [c.ok for c in moved.calls] == [False] * (len(arc.conflicts) + len(arc.throttled)) + [True]


def test_a_read_back_inside_the_wait_period_waits_it_out_instead_of_failing(arc: ArcCluster,
                                                                           clock: ManualClock) -> None:
    """The cluster refuses reads of the rule's controls in the wait period too (the stricter reading of
    "any request"): the read-back right after a change waits to the end of that period and reads
    once more; before, the refusal escaped `read_states` as an unhandled exception."""
    from orchestrator.aws import AwsContext
    from orchestrator.routing_controls import ControlState, read_states, set_states

    ctx, wiring = AwsContext(endpoint_url="http://127.0.0.1:1"), _wiring(arc)
    set_states(ctx, wiring, {"eu-west-1": ControlState.ON, "eu-central-1": ControlState.ON})
    clock.pauses.clear()
    read = read_states(ctx, wiring)
    assert read.states == {"eu-west-1": ControlState.ON, "eu-central-1": ControlState.ON}
    # 0.25, 0.5, 1 and 2 s, then the rest of the 5 s: six reads, the last one answered at its end
    assert clock.pauses == [0.25, 0.5, 1.0, 2.0, 1.25] and read.waited_s == pytest.approx(5.0)
    assert [c.ok for c in read.calls] == [False] * 5 + [True]
    assert arc.count(operation="ListRoutingControls") == 6


def test_a_wait_that_outlasts_the_budget_is_refused_naming_the_wait(arc: ArcCluster, clock: ManualClock) -> None:
    """A rule whose wait period is longer than the DNS stack says (or a change made by someone else
    every few seconds): after the wait period plus the margin, a refusal that names the wait."""
    from dataclasses import replace

    from orchestrator.aws import AwsContext
    from orchestrator.errors import GuardRefused
    from orchestrator.routing_controls import WAIT_MARGIN_S, ControlState, only, set_states

    arc.add_safety_rule(RULE, "at-least-one-on", [f"{PANEL}/routingcontrol/{r}" for r in ("eu-west-1", "eu-central-1")],
                        1, wait_period_ms=60_000)
    ctx, wiring = AwsContext(endpoint_url="http://127.0.0.1:1"), replace(_wiring(arc), wait_period_ms=2000)
    set_states(ctx, wiring, {"eu-west-1": ControlState.ON, "eu-central-1": ControlState.ON})
    with pytest.raises(GuardRefused, match=r"still refuses the change after [\d.]+ s .*wait period is 2 s") as info:
        set_states(ctx, wiring, only("eu-central-1", list(wiring.controls)))
    # the budget (wait period + margin) is spent, counting both pauses and the time the calls took
    spent = float(str(info.value).split("after ")[1].split(" s")[0])
    assert spent >= 2.0 + WAIT_MARGIN_S and sum(clock.pauses) <= 2.0 + WAIT_MARGIN_S + 1e-9
    assert set(arc.states().values()) == {"On"}  # nothing changed


def test_a_real_safety_rule_violation_is_reported_at_once_even_inside_the_wait_period(
        arc: ArcCluster, clock: ManualClock) -> None:
    from orchestrator.aws import AwsContext
    from orchestrator.errors import GuardRefused
    from orchestrator.routing_controls import ControlState, set_states

    ctx, wiring = AwsContext(endpoint_url="http://127.0.0.1:1"), _wiring(arc)
    set_states(ctx, wiring, {"eu-west-1": ControlState.ON, "eu-central-1": ControlState.ON})
    arc.calls.clear()
    with pytest.raises(GuardRefused, match="would leave 0 routing control") as info:
        set_states(ctx, wiring, {"eu-west-1": ControlState.OFF, "eu-central-1": ControlState.OFF})
    assert "the safety rule keeps at least 1 region(s) On" in info.value.one_line()
    assert len(arc.calls) == 1 and clock.pauses == []  # no retry, no wait
    assert set(arc.states().values()) == {"On"}


def test_the_drills_engine_forwards_the_programs_wait_period(clock: ManualClock) -> None:
    """`drill --local`'s LocalEngine registers the DNS program's SafetyRule with its waitPeriodMs."""
    from types import SimpleNamespace

    from orchestrator.aws import AwsContext
    from orchestrator.drill.world.engine import LocalEngine
    from orchestrator.drill.world.mirror import ROUTING_CONTROL, SAFETY_RULE

    with ArcCluster(clock=clock).serve() as cluster:
        engine = LocalEngine(AwsContext(endpoint_url="http://127.0.0.1:1"), "Z1", arc=cluster)
        resources = [SimpleNamespace(type=ROUTING_CONTROL, name="c", inputs={"name": "c", "controlPanelArn": PANEL}),
                     SimpleNamespace(type=SAFETY_RULE, name="r", inputs={
                         "name": "one-on", "assertedControls": ["rc/c"], "waitPeriodMs": 2500,
                         "ruleConfig": {"threshold": 1, "inverted": False, "type": "ATLEAST"}})]
        states = {(ROUTING_CONTROL, "c"): {"arn": "rc/c"}, (SAFETY_RULE, "r"): {"arn": "sr/r"}}
        outputs: dict[str, Any] = {"routingControls": {"eu-west-1": "rc/c"}}
        spec = SimpleNamespace(name="dev-dns", kind="dns", config={})
        engine._dns(spec, resources, outputs, states)  # type: ignore[arg-type]
        assert cluster.rules["sr/r"].wait_period_ms == 2500
        assert outputs["clusterEndpoints"] == cluster.endpoint_list


# -- ARC throttles: 3 mutating calls per second per cluster endpoint --------------------------------

def test_arc_throttles_a_fourth_mutating_call_per_second_at_an_endpoint(clock: ManualClock) -> None:
    """ARC Developer Guide, "Quotas for routing control": "Number of mutating API calls to a cluster
    endpoint, per second: 3"; over it ThrottlingException (HTTP 429). Each endpoint has its own
    count; reads are not mutating calls."""
    with ArcCluster(clock=clock).serve() as cluster:
        cluster.add_control(f"{PANEL}/routingcontrol/eu-west-1", "iot-dev-eu-west-1", PANEL)
        eu = f"{PANEL}/routingcontrol/eu-west-1"
        from botocore.config import Config

        c = boto3.client("route53-recovery-cluster", region_name="us-west-2",
                         endpoint_url=cluster.endpoints["us-west-2"], config=Config(retries={"total_max_attempts": 1}))
        for state in ("On", "Off", "On"):
            c.update_routing_control_state(RoutingControlArn=eu, RoutingControlState=state)
        with pytest.raises(ClientError) as throttled:
            c.update_routing_control_states(UpdateRoutingControlStateEntries=[
                {"RoutingControlArn": eu, "RoutingControlState": "Off"}])
        assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
        assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert cluster.states()[eu] == "On"  # nothing changed
        for _ in range(5):  # reads are not limited
            assert c.get_routing_control_state(RoutingControlArn=eu)["RoutingControlState"] == "On"
        _arc_client(cluster, "us-east-1").update_routing_control_state(RoutingControlArn=eu, RoutingControlState="Off")
        clock.advance(1.0)
        c.update_routing_control_state(RoutingControlArn=eu, RoutingControlState="On")
        assert [(t.region, t.operation) for t in cluster.throttled] == [("us-west-2", "UpdateRoutingControlStates")]


def test_routing_controls_back_off_when_every_endpoint_throttles_and_say_so(arc: ArcCluster,
                                                                          clock: ManualClock) -> None:
    """Another client has spent every endpoint's 3 calls of this second: the product tries each
    endpoint, then backs off (0.25 s, doubling) until ARC takes the change, and the lifecycle's line
    says how long; a rate that does not clear within THROTTLE_BUDGET_S fails naming the rate."""
    from orchestrator.aws import AwsContext
    from orchestrator.errors import OperationFailed
    from orchestrator.operations.lifecycle import _waited
    from orchestrator.routing_controls import ControlState, set_states

    other = f"{PANEL}/routingcontrol/other"
    arc.add_control(other, "someone-elses", PANEL)
    ctx, wiring = AwsContext(endpoint_url="http://127.0.0.1:1"), _wiring(arc)

    def spend_every_endpoint() -> None:
        for region in arc.endpoints:
            for state in ("On", "Off", "On"):
                _arc_client(arc, region).update_routing_control_state(RoutingControlArn=other,
                                                                      RoutingControlState=state)

    _arc_client(arc, "us-east-1").update_routing_control_state(RoutingControlArn=wiring.controls["eu-west-1"],
                                                              RoutingControlState="On")
    clock.advance(6.0)  # past the safety rule's wait period
    spend_every_endpoint()
    moved = set_states(ctx, wiring, {"eu-west-1": ControlState.ON, "eu-central-1": ControlState.ON})
    assert set(arc.states().values()) == {"On"}
    assert moved.throttled_s == pytest.approx(sum(clock.pauses)) and 1.0 <= moved.throttled_s <= 2.0
    assert moved.waited_s == 0 and len(arc.throttled) >= len(arc.endpoints)
    assert "backed off 1.8 s for ARC's request rate (throttled)" in _waited(moved)

    arc.time_scale = 100.0  # a second of ARC's lasts 100 s: longer than the product backs off
    clock.advance(600.0)  # past the (scaled) wait period
    spend_every_endpoint()
    with pytest.raises(OperationFailed, match="still throttles UpdateRoutingControlStates after backing off 10.0 s"):
        set_states(ctx, wiring, {"eu-west-1": ControlState.OFF, "eu-central-1": ControlState.ON})
    assert set(arc.states().values()) == {"On"}
