"""The local world's Route 53 health model with the MQTT canary: CLOUDWATCH_METRIC checks follow
their alarm (Route 53's InsufficientDataHealthStatus rules), CALCULATED gates combine them with the
TCP check (and Inverted turns a result round), and CloudWatch's alarm evaluation the world runs."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.drill.world.cloudwatch import ALARM, INSUFFICIENT, OK, alarm_state
from orchestrator.drill.world.dns import AlarmRef, Route53Answers
from orchestrator.drill.world.route53_model import alarm_health
from tests.polling import until


def far(client: str | None, record: str) -> float:
    return 0.0 if client == record else 1.0


# -- CLOUDWATCH_METRIC: alarm state -> health ----------------------------------------------------

@pytest.mark.parametrize("state, insufficient, last, healthy", [
    ("OK", "Unhealthy", False, True),
    ("ALARM", "Healthy", True, False),
    ("INSUFFICIENT_DATA", "Healthy", False, True),
    ("INSUFFICIENT_DATA", "Unhealthy", True, False),
    ("INSUFFICIENT_DATA", "LastKnownStatus", False, False),
    ("INSUFFICIENT_DATA", "LastKnownStatus", True, True),
    ("INSUFFICIENT_DATA", "LastKnownStatus", None, True),  # a new check without a last status is healthy
    (None, "Unhealthy", True, False),  # an alarm that cannot be read is insufficient data
])
def test_alarm_health_follows_route53s_insufficient_data_rules(state: str | None, insufficient: str,
                                                                last: bool | None, healthy: bool) -> None:
    assert alarm_health(state, insufficient, last) is healthy


# -- CloudWatch's evaluation (what moto does not do) ----------------------------------------------

CANARY = {"threshold": 1.0, "comparison": "LessThanThreshold", "datapoints": 2}


@pytest.mark.parametrize("values, treat, current, expected", [
    ([1.0, 1.0], "breaching", INSUFFICIENT, OK),
    ([1.0, 0.0], "breaching", OK, OK),  # one failed minute of two: no failover
    ([0.0, 0.0], "breaching", OK, ALARM),
    ([0.0, None], "breaching", OK, ALARM),  # a canary that stopped reporting is failing
    ([None, None], "breaching", INSUFFICIENT, ALARM),
    ([None, None], "missing", OK, INSUFFICIENT),
    ([None, None], "ignore", OK, OK),  # ignore: keeps its state
    ([None, 0.0], "notBreaching", ALARM, OK),
])
def test_alarm_evaluation_counts_breaching_periods_and_treats_missing_data_as_configured(
        values: list[float | None], treat: str, current: str, expected: str) -> None:
    assert alarm_state(values, treat_missing=treat, current=current, **CANARY) == expected  # type: ignore[arg-type]


def test_a_comparison_the_evaluator_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="static-threshold"):
        alarm_state([1.0], threshold=1, comparison="LessThanLowerOrGreaterThanUpperThreshold", datapoints=1,
                    treat_missing="missing", current=OK)


# -- Route53Answers over the DNS program's gates ----------------------------------------------------

class _Zone:
    """Route 53 as the DNS program leaves it with the canary (`failover_control: dns`), in moto's shapes:
    moto keeps no AlarmIdentifier on a CLOUDWATCH_METRIC check."""

    def __init__(self, *, inverted_gate: bool = False, alarm_identifier: bool = False) -> None:
        self.checks: dict[str, dict[str, Any]] = {}
        for r in ("a", "b"):
            self.checks[f"gate-{r}"] = {"Type": "CALCULATED", "ChildHealthChecks": [f"tcp-{r}", f"cw-{r}"],
                                        "HealthThreshold": 2, "Inverted": inverted_gate and r == "a"}
            self.checks[f"tcp-{r}"] = {"Type": "TCP", "FullyQualifiedDomainName": r, "Port": 443,
                                       "RequestInterval": 30, "FailureThreshold": 3}
            self.checks[f"cw-{r}"] = {"Type": "CLOUDWATCH_METRIC", "Port": 80}
            if alarm_identifier:  # what real Route 53 returns
                self.checks[f"cw-{r}"].update(AlarmIdentifier={"Region": f"region-{r}", "Name": f"alarm-{r}"},
                                              InsufficientDataHealthStatus="Unhealthy")

    def list_resource_record_sets(self, HostedZoneId: str) -> dict:  # noqa: N803 - boto3's names
        return {"ResourceRecordSets": [
            {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60, "SetIdentifier": "primary",
             "Failover": "PRIMARY", "HealthCheckId": "gate-a", "ResourceRecords": [{"Value": "a"}]},
            {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60, "SetIdentifier": "secondary",
             "Failover": "SECONDARY", "HealthCheckId": "gate-b", "ResourceRecords": [{"Value": "b"}]}]}

    def get_health_check(self, HealthCheckId: str) -> dict:  # noqa: N803
        return {"HealthCheck": {"HealthCheckConfig": self.checks[HealthCheckId]}}


def _answers(zone: _Zone, alarms: dict[str, str], engine_knows: bool = True) -> Route53Answers:
    refs = {f"cw-{r}": AlarmRef(f"region-{r}", f"alarm-{r}", "Unhealthy") for r in ("a", "b")}
    return Route53Answers(zone, "Z1", "iot.example.com", {"a": "127.0.0.2", "b": "127.0.0.3"}, 1, 1.0, far,
                          alarm_of=refs.get if engine_knows else lambda _c: None,
                          alarm_state=lambda region, name: alarms.get(name))


@pytest.mark.parametrize("identifier", [False, True], ids=["moto-shape", "route53-shape"])
def test_a_region_whose_canary_alarm_fires_is_failed_over_though_its_tcp_port_answers(identifier: bool) -> None:
    alarms = {"alarm-a": OK, "alarm-b": OK}
    answers = _answers(_Zone(alarm_identifier=identifier), alarms, engine_knows=not identifier)
    try:
        assert answers.answer(None)[0] == "a"
        alarms["alarm-a"] = ALARM  # MQTT refused in a; its TCP check is still healthy
        assert answers._checkers[0].healthy("tcp-a")
        assert until(lambda: answers.answer(None)[0] == "b", 2.0)
        assert not answers.healthy_endpoint("a")  # failback waits for the gate, not the TCP check alone
        alarms["alarm-a"] = INSUFFICIENT  # the check says Unhealthy for insufficient data
        assert until(lambda: answers.answer(None)[0] == "b", 2.0)
        alarms["alarm-a"] = OK
        assert until(lambda: answers.answer(None)[0] == "a", 2.0)
        assert answers.healthy_endpoint("a")
        flips = [(t.check_id, t.healthy) for t in answers.transitions()]
        assert flips == [("cw-a", False), ("cw-a", True)]
    finally:
        answers.stop()


def test_both_canaries_silent_counts_all_unhealthy_so_route53_answers_the_primary() -> None:
    alarms = {"alarm-a": INSUFFICIENT, "alarm-b": INSUFFICIENT}  # before any canary reported
    answers = _answers(_Zone(), alarms)
    try:
        answers.records(max_age=0)  # the checks the records name are read
        assert not answers.healthy("gate-a") and not answers.healthy("gate-b")
        assert answers.answer(None)[0] == "a"  # none healthy: all count as healthy
        alarms["alarm-b"] = OK
        assert until(lambda: answers.answer(None)[0] == "b", 2.0)  # the only healthy region
    finally:
        answers.stop()


def test_an_inverted_calculated_check_answers_the_opposite() -> None:
    answers = _answers(_Zone(inverted_gate=True), {"alarm-a": OK, "alarm-b": OK})
    try:
        answers.records(max_age=0)
        assert not answers.healthy("gate-a") and answers.healthy("gate-b")
        assert answers.answer(None)[0] == "b"
    finally:
        answers.stop()


def test_a_check_type_the_world_cannot_evaluate_is_an_error_not_a_healthy_tcp_check() -> None:
    zone = _Zone()
    zone.checks["cw-a"] = {"Type": "CLOUDWATCH_METRIC_MATH"}
    answers = _answers(zone, {})
    with pytest.raises(ValueError, match="not evaluated by the local world"):
        answers.records(max_age=0)
    answers.stop()
