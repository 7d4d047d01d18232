"""What a region's Route 53 health check says, read the way Route 53 computes it.

A record's check is either a plain endpoint check (TCP/HTTP: Route 53's checkers report
observations), or, with the MQTT canary, a CALCULATED check over the region's TCP check and its
canary's CLOUDWATCH_METRIC check (plus, with `failover_control: arc`, its RECOVERY_CONTROL check).
A CALCULATED check has no checker observations of its own (GetHealthCheckStatus answers none), so
it is read through its children:
- TCP/HTTP(S): healthy when fewer than half of the checkers report a failure;
- CLOUDWATCH_METRIC: its alarm's state in the alarm's region (DescribeAlarms): OK healthy, ALARM
  unhealthy, INSUFFICIENT_DATA as the check's InsufficientDataHealthStatus says (LastKnownStatus:
  not decidable from outside, so unknown). A check whose config names no alarm (moto keeps no
  AlarmIdentifier) is read through the alarm the contract names for the region
  (`contract.CanaryNames`); a check naming another alarm than that one is reported;
- RECOVERY_CONTROL: the traffic switch (`routing.arc_control` reports it); counted as On, so the
  verdict says whether the region could take traffic once its control is On;
- `Inverted` turns a child's result round.
The parent is healthy when at least `HealthThreshold` children are; children that cannot be read
make the verdict unknown only when they decide it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.readiness.probe import Unreadable, aws_read, not_found

ENDPOINT_TYPES = ("TCP", "HTTP", "HTTPS", "HTTP_STR_MATCH", "HTTPS_STR_MATCH")


@dataclass(frozen=True)
class CheckReading:
    check_id: str
    kind: str
    healthy: bool | None  # None: cannot be decided from what AWS answers
    detail: str
    fix: str = ""


def _observations(r53: Any, check_id: str) -> tuple[bool | None, str]:
    got = aws_read(f"GetHealthCheckStatus {check_id}", lambda: r53.get_health_check_status(HealthCheckId=check_id))
    observations = got.get("HealthCheckObservations") or []
    if not observations:
        return None, "no checker observations"
    bad = [o for o in observations if not str((o.get("StatusReport") or {}).get("Status", "")).startswith("Success")]
    if len(bad) * 2 >= len(observations):
        return False, f"{len(bad)} of {len(observations)} checkers fail"
    return True, f"{len(observations) - len(bad)} of {len(observations)} checkers healthy"


def _alarm(config: Mapping[str, Any], check_id: str, cloudwatch: Callable[[str], Any],
           expected: tuple[str, str] | None) -> CheckReading:
    kind = "CLOUDWATCH_METRIC"
    ident = config.get("AlarmIdentifier") or {}
    region, name = ident.get("Region"), ident.get("Name")
    if not name:
        if expected is None:
            return CheckReading(check_id, kind, None, f"check {check_id} names no alarm")
        region, name = expected
    elif expected is not None and (region, name) != expected:
        return CheckReading(check_id, kind, False, f"check {check_id} watches alarm {name} in {region}, not the "
                            f"region's canary alarm {expected[1]} in {expected[0]}", "orchestrate up --all")
    assert region and name
    found = aws_read(f"DescribeAlarms {name}",
                     lambda: cloudwatch(region).describe_alarms(AlarmNames=[name])["MetricAlarms"])
    if not found:
        return CheckReading(check_id, kind, False, f"canary alarm {name} does not exist in {region}",
                            f"orchestrate up --region {region}")
    state = str(found[0].get("StateValue"))
    function = name.removesuffix("-mqtt")
    if state == "OK":
        return CheckReading(check_id, kind, True, f"canary alarm {name} OK")
    if state == "ALARM":
        return CheckReading(check_id, kind, False, f"canary alarm {name} in ALARM: MQTT through the domain fails "
                            f"in {region}", f"read the canary's log group /aws/lambda/{function}")
    insufficient = str(config.get("InsufficientDataHealthStatus") or "LastKnownStatus")
    verdict = {"Healthy": True, "Unhealthy": False}.get(insufficient)
    return CheckReading(check_id, kind, verdict, f"canary alarm {name} has insufficient data (check counts it "
                        f"{insufficient}): the canary has not reported yet",
                        f"wait two minutes, then read /aws/lambda/{function}")


def _config(r53: Any, check_id: str) -> Mapping[str, Any]:
    got = aws_read(f"GetHealthCheck {check_id}", lambda: r53.get_health_check(HealthCheckId=check_id))
    return dict(got["HealthCheck"]["HealthCheckConfig"])


def read_check(r53: Any, check_id: str, cloudwatch: Callable[[str], Any],
               expected_alarm: tuple[str, str] | None = None) -> tuple[CheckReading, tuple[CheckReading, ...]]:
    """(the check, its children's readings). Raises Unreadable when GetHealthCheck does not answer."""
    config = _config(r53, check_id)
    kind = str(config.get("Type", "TCP"))
    if kind != "CALCULATED":
        reading = _child(r53, check_id, config, cloudwatch, expected_alarm)
        return reading, ()
    children = []
    for child in config.get("ChildHealthChecks") or ():
        try:
            child_config = _config(r53, str(child))
            children.append(_child(r53, child, child_config, cloudwatch, expected_alarm))
        except Unreadable as exc:
            children.append(CheckReading(child, "?", False if not_found(exc) else None,
                                         f"child {child} does not exist" if not_found(exc) else str(exc),
                                         "orchestrate up --all" if not_found(exc) else ""))
    threshold = int(config.get("HealthThreshold", len(children)))
    sure = sum(1 for c in children if c.healthy is True)
    maybe = sure + sum(1 for c in children if c.healthy is None)
    healthy = True if sure >= threshold else False if maybe < threshold else None
    if config.get("Inverted") and healthy is not None:
        healthy = not healthy
    summary = "; ".join(c.detail for c in children)
    reading = CheckReading(check_id, kind, healthy, f"health check {check_id} (CALCULATED, {sure} of {len(children)} "
                           f"children healthy, {threshold} needed): {summary}",
                           next((c.fix for c in children if c.healthy is not True and c.fix), ""))
    return reading, tuple(children)


def _child(r53: Any, check_id: str, config: Mapping[str, Any], cloudwatch: Callable[[str], Any],
           expected_alarm: tuple[str, str] | None) -> CheckReading:
    kind = str(config.get("Type", "TCP"))
    if kind == "RECOVERY_CONTROL":
        reading = CheckReading(check_id, kind, True, "routing control: counted On (see routing.arc_control)")
        return reading  # not inverted: the what-if is "its control On"
    if kind == "CLOUDWATCH_METRIC":
        reading = _alarm(config, check_id, cloudwatch, expected_alarm)
    elif kind in ENDPOINT_TYPES:
        healthy, detail = _observations(r53, check_id)
        where = config.get("FullyQualifiedDomainName") or config.get("IPAddress") or "?"
        reading = CheckReading(check_id, kind, healthy, f"{kind} check of {where}: {detail}",
                               "" if healthy is not False else f"orchestrate status; check the endpoint {where}")
    else:
        reading = CheckReading(check_id, kind, None, f"check {check_id}: type {kind} is not read by readiness")
    if config.get("Inverted") and reading.healthy is not None:
        reading = CheckReading(check_id, kind, not reading.healthy, f"{reading.detail} (inverted)", reading.fix)
    return reading
