"""CloudWatch alarms in the local world, and the canary that feeds them.

moto stores metric alarms and metric data but never evaluates an alarm: an alarm keeps the state it
was created with (moto: OK, AWS: INSUFFICIENT_DATA) whatever data arrives. The local world therefore
evaluates them itself, from the data in moto, as CloudWatch does (`AlarmEvaluator`), and writes the
result back with SetAlarmState, so everything that reads the alarm (DescribeAlarms, the drill's
Route 53 CLOUDWATCH_METRIC checks, `orchestrate readiness`) reads one state.

Evaluation (CloudWatch User Guide, "Evaluating an alarm"): the last `EvaluationPeriods` complete
periods, each the alarm's statistic over that period; a period without data is breaching,
not breaching, or left out as `TreatMissingData` says (`missing`/`ignore`: left out); ALARM when at
least `DatapointsToAlarm` periods breach, OK when fewer do and at least one period was evaluated,
otherwise INSUFFICIENT_DATA (`missing`) or unchanged (`ignore`). Periods are scaled by the drill's
time scale (60 s at 0.1 is 6 s), as health-check intervals and TTLs are.

`DrillCanary` is the canary function's schedule in the local world: every scaled minute, per region,
the same round trip (`canary.probe`) the Lambda makes, to that region's broker with the custom
domain as SNI and the region's canary thing's certificate, and the same datum
(`canary_handler.datum`) put into moto; then each alarm is evaluated. A killed broker fails the probe
(TCP), so its alarm goes to ALARM after `DatapointsToAlarm` periods and back to OK after as many good
ones once the broker runs again: the alarm reflects the brokers, not a script.
"""

from __future__ import annotations

import datetime as dt
import math
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def alarm_state(values: Sequence[float | None], *, threshold: float, comparison: str, datapoints: int,
                treat_missing: str, current: str) -> str:
    """CloudWatch's verdict over the evaluation range (`values`, oldest first, None = no data)."""
    compare = _COMPARE.get(comparison)
    if compare is None:
        raise ValueError(f"comparison operator {comparison!r} is not a static-threshold operator")
    breaching = evaluated = 0
    for value in values:
        if value is None:
            if treat_missing == "breaching":
                breaching, evaluated = breaching + 1, evaluated + 1
            elif treat_missing == "notBreaching":
                evaluated += 1
            continue
        evaluated += 1
        breaching += compare(value, threshold)
    if breaching >= datapoints:
        return ALARM
    if evaluated:
        return OK
    return current if treat_missing == "ignore" else INSUFFICIENT


@dataclass(frozen=True)
class AlarmSpec:
    """What evaluating a static-threshold metric alarm needs, as DescribeAlarms returns it."""

    name: str
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str
    period: int
    periods: int
    datapoints: int
    threshold: float
    comparison: str
    treat_missing: str

    @classmethod
    def of(cls, alarm: Mapping[str, Any]) -> AlarmSpec:
        return cls(name=alarm["AlarmName"], namespace=alarm["Namespace"], metric=alarm["MetricName"],
                   dimensions=tuple((d["Name"], d["Value"]) for d in alarm.get("Dimensions") or ()),
                   statistic=alarm["Statistic"], period=int(alarm["Period"]), periods=int(alarm["EvaluationPeriods"]),
                   datapoints=int(alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"]),
                   threshold=float(alarm["Threshold"]), comparison=alarm["ComparisonOperator"],
                   treat_missing=alarm.get("TreatMissingData") or "missing")


class AlarmEvaluator:
    """Evaluates one region's metric alarms from moto's metric data and sets their state."""

    def __init__(self, cloudwatch: Any, names: Sequence[str], scale: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.cloudwatch, self.names, self.scale, self.clock = cloudwatch, list(names), scale, clock
        self.transitions: list[tuple[float, str, str]] = []  # (time, alarm, new state)

    def period_s(self, spec: AlarmSpec) -> int:
        return max(1, round(spec.period * self.scale))

    def evaluate(self) -> dict[str, str]:
        """Evaluate every alarm now; returns name -> state (as set in moto)."""
        found = self.cloudwatch.describe_alarms(AlarmNames=self.names)["MetricAlarms"]
        out = {}
        for alarm in found:
            spec = AlarmSpec.of(alarm)
            state = alarm_state(self._values(spec), threshold=spec.threshold, comparison=spec.comparison,
                                datapoints=spec.datapoints, treat_missing=spec.treat_missing,
                                current=alarm["StateValue"])
            if state != alarm["StateValue"]:
                self.cloudwatch.set_alarm_state(AlarmName=spec.name, StateValue=state,
                                                StateReason=f"local evaluation of {spec.periods} periods of "
                                                            f"{self.period_s(spec)} s (scaled)")
                self.transitions.append((self.clock(), spec.name, state))
            out[spec.name] = state
        return out

    def _values(self, spec: AlarmSpec) -> list[float | None]:
        """The statistic of each of the last `periods` complete (scaled) periods, oldest first."""
        p = self.period_s(spec)
        end = math.floor(self.clock() / p) * p  # the last complete period ends here
        values: list[float | None] = []
        for k in range(spec.periods - 1, -1, -1):
            start = end - (k + 1) * p
            got = self.cloudwatch.get_metric_statistics(
                Namespace=spec.namespace, MetricName=spec.metric,
                Dimensions=[{"Name": n, "Value": v} for n, v in spec.dimensions],
                StartTime=dt.datetime.fromtimestamp(start, dt.timezone.utc),
                EndTime=dt.datetime.fromtimestamp(start + p, dt.timezone.utc),
                Period=max(60, p), Statistics=[spec.statistic])["Datapoints"]
            values.append(float(got[0][spec.statistic]) if got else None)
        return values


@dataclass(frozen=True)
class CanaryTarget:
    """One region's canary in the local world: where its broker listens and who it connects as."""

    region: str
    address: str
    port: int
    client_id: str
    topic_prefix: str
    tls: ssl.SSLContext | None
    cloudwatch: Any
    alarm: str


class DrillCanary:
    """The canary schedule of every region (one scaled minute), feeding and evaluating its alarm."""

    def __init__(self, env: str, domain: str, targets: Sequence[CanaryTarget], scale: float,
                 schedule_s: float = 60.0, timeout_s: float = 2.0) -> None:
        self.env, self.domain, self.targets = env, domain, list(targets)
        # whole seconds, as the alarm's scaled period: one run (one datum) in each period
        self.interval = max(1, round(schedule_s * scale))
        self.timeout = timeout_s
        self.evaluators = {t.region: AlarmEvaluator(t.cloudwatch, [t.alarm], scale) for t in self.targets}
        self.results: list[tuple[float, str, bool, str]] = []  # (time, region, healthy, stage)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, str]:
        """One scheduled run in every region: probe, put the datum, evaluate; region -> alarm state."""
        from orchestrator.drill.canary import METRIC_NAMESPACE, probe
        from orchestrator.drill.canary_handler import datum

        states = {}
        for t in self.targets:
            result = probe(t.address, t.port, self.domain, t.client_id, tls=t.tls, timeout=self.timeout,
                           topic=f"{t.topic_prefix}/{time.time_ns():x}")
            self.results.append((time.time(), t.region, result.healthy, result.stage))
            t.cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE,
                                         MetricData=[datum(result, env=self.env, region=t.region)])
            states[t.region] = self.evaluators[t.region].evaluate()[t.alarm]
        return states

    def states(self) -> dict[str, str]:
        """Each region's alarm state as moto holds it now (no run, no evaluation)."""
        out = {}
        for t in self.targets:
            found = t.cloudwatch.describe_alarms(AlarmNames=[t.alarm])["MetricAlarms"]
            out[t.region] = found[0]["StateValue"] if found else "absent"
        return out

    def transitions(self) -> list[tuple[float, str, str]]:
        return sorted((x for e in self.evaluators.values() for x in e.transitions), key=lambda x: x[0])

    def start(self) -> None:
        def loop() -> None:
            while True:
                try:
                    self.run_once()
                except Exception:  # noqa: BLE001, S112 - a run that cannot report leaves its data missing
                    pass
                # EventBridge's `rate(1 minute)` fires once a minute, so each alarm period holds one
                # datum: the next run starts a tenth into the next period, not `interval` after this one
                now = time.time()
                if self._stop.wait((math.floor(now / self.interval) + 1.1) * self.interval - now):
                    return

        self._thread = threading.Thread(target=loop, name="drill-canary", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
