"""How traffic reaches each region: its Route 53 health check, and in `arc` mode its routing
control and the safety rule (read through the cluster's data plane, as `failover` does)."""

from __future__ import annotations

from typing import Any

from orchestrator.readiness.model import Verdict, not_applicable, not_ready, ready, rule, unknown
from orchestrator.readiness.probe import Probe, Unreadable, not_found, plain


def _dns(probe: Probe) -> dict[str, Any]:
    from orchestrator.stacks.graph import dns_stack

    return {k: plain(v) for k, v in probe.stack_outputs(dns_stack(probe.topology).name).items()}


@rule("routing.health_check", "routing", "the region's Route 53 health check exists and is healthy")
def health_check(probe: Probe, region: str) -> Verdict:
    if not probe.topology.multi_region:
        return not_applicable("single-region: DNS has no health-checked records")
    ids = _dns(probe).get("healthCheckIds") or {}
    check_id = ids.get(region) if isinstance(ids, dict) else None
    if not check_id:
        return not_ready(f"the DNS stack exports no health check for {region}", "orchestrate up --all")
    r53 = probe.client("route53", "us-east-1")
    from orchestrator.readiness.healthcheck import ENDPOINT_TYPES, read_check
    from programs.contract import CanaryNames

    try:
        reading, _children = read_check(r53, check_id, lambda r: probe.client("cloudwatch", r),
                                        (region, CanaryNames.of(probe.env, region).alarm))
    except Unreadable as exc:
        if not_found(exc):
            return not_ready(f"health check {check_id} does not exist", "orchestrate up --all")
        return unknown(str(exc))
    if reading.kind != "CALCULATED":
        detail = reading.detail.split(": ", 1)[-1]
        if reading.healthy is None:
            return unknown(f"health check {check_id}: {detail}")
        if not reading.healthy:
            endpoint_fix = f"orchestrate status; check the endpoint of {region}"
            return not_ready(f"health check {check_id}: {detail}",
                             endpoint_fix if reading.kind in ENDPOINT_TYPES else reading.fix or endpoint_fix)
        return ready(f"health check {check_id}: {detail}")
    # a CALCULATED gate (TCP + MQTT canary alarm [+ ARC routing control]): read through its children
    if reading.healthy is None:
        return unknown(reading.detail, reading.fix)
    if not reading.healthy:
        return not_ready(reading.detail, reading.fix or f"orchestrate status; check the endpoint of {region}")
    return ready(reading.detail)


def _wiring(probe: Probe) -> Any:
    from orchestrator.routing_controls import ArcWiring

    return probe.once("arc-wiring", lambda: ArcWiring.from_outputs(_dns(probe)))


@rule("routing.arc_control", "routing", "the region's ARC routing control exists and answers", arc_only=True)
def arc_control(probe: Probe, region: str) -> Verdict:
    from orchestrator.errors import OrchestrateError
    from orchestrator.routing_controls import read_states

    try:
        wiring = _wiring(probe)
        states = probe.once("arc-states", lambda: read_states(probe.ctx, wiring))
    except OrchestrateError as exc:
        return unknown(exc.one_line(), "orchestrate up --all  (failover_control: arc)")
    if region not in wiring.controls:
        return not_ready(f"no routing control for {region}", "orchestrate up --all")
    state = states.states.get(region)
    if state is None:
        return not_ready(f"routing control of {region} not found in the cluster", "orchestrate up --all")
    return ready(f"routing control {state.value} (read from {states.endpoint_region})")


@rule("routing.arc_safety_rule", "routing", "the ARC safety rule lets traffic move to this region", arc_only=True)
def arc_safety_rule(probe: Probe, region: str) -> Verdict:
    from orchestrator.errors import OrchestrateError

    try:
        wiring = _wiring(probe)
    except OrchestrateError as exc:
        return unknown(exc.one_line())
    if not wiring.control_panel_arn:
        return not_ready("no control panel exported", "orchestrate up --all")
    if wiring.min_on > len(wiring.controls) - 1:
        return not_ready(f"the safety rule needs {wiring.min_on} controls On: with one region down it blocks "
                         "every failover", "set the safety rule's threshold to 1 and orchestrate up --all")
    return ready(f"safety rule: at least {wiring.min_on} On, wait period {wiring.wait_period_ms} ms")
