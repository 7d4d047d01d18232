"""`routing.health_check` reads a CALCULATED gate through its children (the TCP check's checkers,
the canary alarm's state, the ARC routing control counted On) instead of asking Route 53 for
observations a calculated check does not have."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.aws import AwsContext
from orchestrator.readiness import Probe, Status
from orchestrator.readiness.model import RULES
from orchestrator.topology import parse

REGION = "eu-central-1"
ALARM_NAME = f"iot-dev-canary-{REGION}-mqtt"


class NoSuchHealthCheck(Exception):
    response = {"Error": {"Code": "NoSuchHealthCheck"}}


class Route53:
    def __init__(self, checks: dict[str, dict[str, Any]], failing: dict[str, int]) -> None:
        self.checks, self.failing = checks, failing
        self.status_asked: list[str] = []

    def get_health_check(self, HealthCheckId: str) -> dict:  # noqa: N803 - boto3's names
        if HealthCheckId not in self.checks:
            raise NoSuchHealthCheck(HealthCheckId)
        return {"HealthCheck": {"Id": HealthCheckId, "HealthCheckConfig": self.checks[HealthCheckId]}}

    def get_health_check_status(self, HealthCheckId: str) -> dict:  # noqa: N803
        self.status_asked.append(HealthCheckId)
        if self.checks[HealthCheckId]["Type"] == "CALCULATED":
            return {"HealthCheckObservations": []}  # as Route 53 answers for a calculated check
        bad = self.failing.get(HealthCheckId, 0)
        return {"HealthCheckObservations": [
            {"Region": f"r{i}", "StatusReport": {"Status": "Failure: connection refused" if i < bad else
                                                 "Success: TCP connection established"}} for i in range(8)]}


class CloudWatch:
    def __init__(self, states: dict[str, str]) -> None:
        self.states = states

    def describe_alarms(self, AlarmNames: list[str]) -> dict:  # noqa: N803
        return {"MetricAlarms": [{"AlarmName": n, "StateValue": self.states[n]} for n in AlarmNames
                                 if n in self.states]}


def gate(*, arc: bool = False, identifier: bool = True, insufficient: str = "Unhealthy") -> dict[str, dict]:
    cw: dict[str, Any] = {"Type": "CLOUDWATCH_METRIC", "InsufficientDataHealthStatus": insufficient}
    if identifier:
        cw["AlarmIdentifier"] = {"Region": REGION, "Name": ALARM_NAME}
    checks = {"tcp": {"Type": "TCP", "FullyQualifiedDomainName": f"abc-ats.iot.{REGION}.amazonaws.com",
                      "Port": 443}, "cw": cw}
    children = ["tcp", "cw"]
    if arc:
        checks["rc"] = {"Type": "RECOVERY_CONTROL", "RoutingControlArn": "arn:aws:route53-recovery-control::1:x"}
        children.append("rc")
    checks["gate"] = {"Type": "CALCULATED", "ChildHealthChecks": children, "HealthThreshold": len(children)}
    return checks


def verdict(checks: dict[str, dict], *, failing: dict[str, int] | None = None,
            alarms: dict[str, str] | None = None, arc: bool = False) -> tuple[Status, str, str, Route53]:
    import orchestrator.readiness.rules  # noqa: F401 - registers the rules

    topology = parse({"env": "dev", "domain": "iot.example.com", "hosted_zone": "example.com",
                      "primary": "eu-west-1", "secondaries": [REGION], "routing": "failover",
                      "residency": ["eu-west-1", REGION], **({"failover_control": "arc"} if arc else {})}, env="dev")
    probe = Probe(env="dev", topology=topology, ctx=AwsContext(endpoint_url="http://127.0.0.1:9"),
                  outputs=lambda _n: {"healthCheckIds": {REGION: "gate"}})
    r53 = Route53(checks, failing or {})
    probe._clients[("route53", "us-east-1")] = r53
    probe._clients[("cloudwatch", REGION)] = CloudWatch({ALARM_NAME: "OK"} if alarms is None else alarms)
    v = RULES["routing.health_check"].fn(probe, REGION)
    return v.status, v.evidence, v.fix, r53


def test_a_gate_whose_tcp_check_and_canary_alarm_are_healthy_is_ready() -> None:
    status, evidence, _fix, r53 = verdict(gate())
    assert status is Status.READY, evidence
    assert "2 of 2 children healthy" in evidence and f"canary alarm {ALARM_NAME} OK" in evidence
    assert "8 of 8 checkers healthy" in evidence
    assert "gate" not in r53.status_asked  # no observations are asked of the calculated check itself


def test_port_open_but_mqtt_failing_is_not_ready_and_says_where_to_look() -> None:
    status, evidence, fix, _ = verdict(gate(), alarms={ALARM_NAME: "ALARM"})
    assert status is Status.NOT_READY
    assert f"canary alarm {ALARM_NAME} in ALARM" in evidence and "1 of 2 children healthy" in evidence
    assert fix == f"read the canary's log group /aws/lambda/iot-dev-canary-{REGION}"


def test_a_failing_tcp_check_under_the_gate_is_not_ready() -> None:
    status, evidence, _fix, _ = verdict(gate(), failing={"tcp": 5})
    assert status is Status.NOT_READY and "5 of 8 checkers fail" in evidence


@pytest.mark.parametrize("insufficient, expected", [("Unhealthy", Status.NOT_READY), ("Healthy", Status.READY),
                                                    ("LastKnownStatus", Status.UNKNOWN)])
def test_a_canary_that_has_not_reported_reads_as_the_check_counts_insufficient_data(insufficient: str,
                                                                                    expected: Status) -> None:
    status, evidence, _fix, _ = verdict(gate(insufficient=insufficient), alarms={ALARM_NAME: "INSUFFICIENT_DATA"})
    assert status is expected, evidence
    assert "insufficient data" in evidence


def test_a_missing_alarm_is_not_ready_with_the_fix() -> None:
    status, evidence, fix, _ = verdict(gate(), alarms={})
    assert status is Status.NOT_READY and f"{ALARM_NAME} does not exist" in evidence
    assert fix == f"orchestrate up --region {REGION}"


def test_moto_shaped_check_without_alarm_identifier_is_read_through_the_contracts_alarm_name() -> None:
    status, evidence, _fix, _ = verdict(gate(identifier=False), alarms={ALARM_NAME: "ALARM"})
    assert status is Status.NOT_READY and ALARM_NAME in evidence


def test_a_check_watching_another_alarm_is_reported() -> None:
    checks = gate()
    checks["cw"]["AlarmIdentifier"] = {"Region": REGION, "Name": "something-else"}
    status, evidence, _fix, _ = verdict(checks)
    assert status is Status.NOT_READY and "not the region's canary alarm" in evidence


def test_arc_gate_counts_the_routing_control_on_so_a_standby_region_with_healthy_checks_is_ready() -> None:
    status, evidence, _fix, _ = verdict(gate(arc=True), arc=True)
    assert status is Status.READY and "3 of 3 children healthy" in evidence and "routing.arc_control" in evidence
    status, evidence, _fix, _ = verdict(gate(arc=True), alarms={ALARM_NAME: "ALARM"}, arc=True)
    assert status is Status.NOT_READY


def test_a_child_that_no_longer_exists_is_not_ready() -> None:
    checks = gate()
    del checks["cw"]
    status, evidence, fix, _ = verdict(checks)
    assert status is Status.NOT_READY and "child cw does not exist" in evidence and fix == "orchestrate up --all"


def test_a_plain_tcp_record_check_still_reads_its_checkers() -> None:
    checks = gate()
    checks["gate"] = checks["tcp"]
    status, evidence, fix, _ = verdict(checks, failing={"gate": 6})
    assert status is Status.NOT_READY and evidence == "health check gate: 6 of 8 checkers fail"
    assert fix == f"orchestrate status; check the endpoint of {REGION}"
