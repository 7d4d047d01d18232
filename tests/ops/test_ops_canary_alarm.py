"""The local world's CloudWatch on a real moto server: the canary alarm the region program declares is
created as CloudWatch starts it (INSUFFICIENT_DATA), and evaluated from the metric data in moto
(moto evaluates no alarm), so Route 53's CLOUDWATCH_METRIC check reads what the canary measured."""

from __future__ import annotations

import datetime as dt
import math
import types

from orchestrator.aws import AwsContext, client
from orchestrator.drill.canary import METRIC_NAME, METRIC_NAMESPACE
from orchestrator.drill.world.cloudwatch import ALARM, INSUFFICIENT, OK, AlarmEvaluator
from orchestrator.drill.world.engine import LocalEngine
from programs import mocks
from programs.contract import CanaryNames
from tests.ops.conftest import DST, SRC
from tests.programs.conftest import region_args

SCALE = 0.1  # the alarm's 60 s periods are 6 s


def _region_up(engine: LocalEngine, region: str) -> None:
    ev = mocks.evaluate(region_args(region, owner=region == SRC), stack=f"dev-region-{region}")
    engine._canary(types.SimpleNamespace(region=region), ev.resources)  # type: ignore[arg-type]


def test_the_engine_creates_the_programs_canary_alarm_thing_and_certificate(ctx: AwsContext) -> None:
    engine = LocalEngine(ctx, "Z1")
    _region_up(engine, SRC)
    _region_up(engine, SRC)  # a second up changes nothing it need not
    names = CanaryNames.of("dev", SRC)
    cw = client(ctx, "cloudwatch", SRC)
    (alarm,) = cw.describe_alarms(AlarmNames=[names.alarm])["MetricAlarms"]
    assert alarm["StateValue"] == INSUFFICIENT  # as CloudWatch starts a new alarm (moto would say OK)
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Period"],
            alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["TreatMissingData"]) == (
        METRIC_NAMESPACE, METRIC_NAME, "Minimum", 60, 2, 2, "breaching")
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"Env": "dev", "Region": SRC}
    iot = client(ctx, "iot", SRC)
    (principal,) = iot.list_thing_principals(thingName=names.thing)["principals"]
    assert iot.list_attached_policies(target=principal)["policies"][0]["policyName"] == names.thing
    thing, keys = engine.canary_keys[SRC]
    assert thing == names.thing and "PRIVATE KEY" in keys.key_pem
    assert not client(ctx, "cloudwatch", DST).describe_alarms()["MetricAlarms"]  # only its own region


def _put(cw: object, region: str, at: float, value: float) -> None:
    cw.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=[{  # type: ignore[attr-defined]
        "MetricName": METRIC_NAME, "Dimensions": [{"Name": "Env", "Value": "dev"}, {"Name": "Region", "Value": region}],
        "Value": value, "Unit": "Count", "Timestamp": dt.datetime.fromtimestamp(at, dt.timezone.utc)}])


def test_the_alarm_follows_the_canarys_data_in_moto(ctx: AwsContext) -> None:
    engine = LocalEngine(ctx, "Z1")
    _region_up(engine, SRC)
    name = CanaryNames.of("dev", SRC).alarm
    cw = client(ctx, "cloudwatch", SRC)
    p = 6
    now = [math.floor(dt.datetime.now(dt.timezone.utc).timestamp() / p) * p - 10 * p + 1]
    evaluator = AlarmEvaluator(cw, [name], SCALE, clock=lambda: now[0])

    assert evaluator.evaluate() == {name: ALARM}  # two missing periods: breaching (a silent canary fails)
    end = math.floor(now[0] / p) * p
    _put(cw, SRC, end - 2 * p + 1, 1.0)
    _put(cw, SRC, end - p + 1, 1.0)
    _put(cw, DST, end - p + 1, 0.0)  # another region's datum is another metric
    assert evaluator.evaluate() == {name: OK}
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == OK

    now[0] += p  # next period: one failed round trip -> still OK (2 of 2 needed)
    _put(cw, SRC, end + 1, 0.0)
    assert evaluator.evaluate() == {name: OK}
    now[0] += p
    _put(cw, SRC, end + p + 1, 0.0)
    assert evaluator.evaluate() == {name: ALARM}
    now[0] += 2 * p  # the canary stopped reporting: missing is breaching, it stays in ALARM
    assert evaluator.evaluate() == {name: ALARM}
    assert [state for _t, _n, state in evaluator.transitions] == [ALARM, OK, ALARM]
    _region_up(engine, SRC)  # an update of the stack keeps the alarm's state (PutMetricAlarm does)
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == ALARM


def test_the_strict_route53_model_follows_the_canary_alarm_under_the_gate() -> None:
    """drill/world/route53_model.py (the gate's answers): a region's gate needs its TCP endpoint and alarm."""
    import pytest

    from orchestrator.drill.world.route53_model import Health, answer_regions

    def endpoint(region: str) -> str:
        return f"abc-ats.iot.{region}.amazonaws.com"

    checks: dict[str, dict] = {}
    for r in (SRC, DST):
        checks[f"tcp-{r}"] = {"Type": "TCP", "FullyQualifiedDomainName": endpoint(r)}
        checks[f"cw-{r}"] = {"Type": "CLOUDWATCH_METRIC", "InsufficientDataHealthStatus": "Unhealthy",
                             "AlarmIdentifier": {"Region": r, "Name": CanaryNames.of("dev", r).alarm}}
        checks[f"gate-{r}"] = {"Type": "CALCULATED", "ChildHealthChecks": [f"tcp-{r}", f"cw-{r}"],
                               "HealthThreshold": 2}
    records = [{"Name": "iot.example.com.", "Type": "CNAME", "SetIdentifier": role, "Failover": role.upper(),
                "HealthCheckId": f"gate-{r}", "ResourceRecords": [{"Value": endpoint(r)}]}
               for role, r in (("primary", SRC), ("secondary", DST))]
    alarm = CanaryNames.of("dev", SRC).alarm

    assert answer_regions(records, "iot.example.com", Health(checks)) == {SRC}
    assert answer_regions(records, "iot.example.com", Health(checks, frozenset({SRC}))) == {DST}  # down: both fail
    assert answer_regions(records, "iot.example.com", Health(checks, alarms={alarm: ALARM})) == {DST}  # MQTT only
    assert answer_regions(records, "iot.example.com", Health(checks, alarms={alarm: INSUFFICIENT})) == {DST}
    checks[f"cw-{SRC}"]["InsufficientDataHealthStatus"] = "LastKnownStatus"  # counts healthy here
    assert answer_regions(records, "iot.example.com", Health(checks, alarms={alarm: INSUFFICIENT})) == {SRC}
    del checks[f"cw-{SRC}"]["AlarmIdentifier"]
    with pytest.raises(KeyError, match="names no alarm"):
        Health(checks).healthy(f"gate-{SRC}")
