"""Route 53 ARC routing controls, through the cluster's data plane only.

A cluster answers on five regional endpoints (its `clusterEndpoints`, exported by the DNS stack);
any of them changes or reads a routing control state. AWS's guidance for recovery is to depend on
data planes: so `failover`/`failback` in `failover_control: arc` call only these endpoints (no
Pulumi update, no Route 53 control-plane call), try them one after the other with short timeouts,
and never call an endpoint in a region they were told to avoid (the failed one).

Writes use UpdateRoutingControlStates: every state of a transition in one all-or-nothing call, so
the cluster's safety rule (at least one region On) is evaluated on the result, not on a half-done
sequence.

ARC answers ConflictException for two reasons. (1) The change would break a safety rule: when the
requested states, read against the rule the DNS stack exports (`safetyRule`: at least `threshold`
controls On), leave too few On, that is a refusal and it stops at once (GuardRefused). (2) The
rule's wait period: for `WaitPeriodMs` (5000 by default) after a change, any request against the
rule's controls fails (CloudFormation AssertionRule; pulumi_aws SafetyRule.waitPeriodMs). So
promote -> failover -> failback run back to back meet it; the change is retried, pausing 0.25 s then
doubling up to 1 s, for at most the wait period plus WAIT_MARGIN_S (15 s for the default rule), and
the result says how long it waited. Still refused after that: GuardRefused naming the wait. Whether
"any request" includes reads is not documented: `read_states` (the read-back after a change) waits
the same way, so it holds if it does.

ARC also throttles: at most 3 mutating calls per second to a cluster endpoint ("Quotas for routing
control"), answered ThrottlingException (HTTP 429). A throttled call is tried at the next endpoint
(each endpoint has its own quota); when every endpoint that answered throttled it, the call is
retried after a pause (0.25 s, doubling up to 1 s, as the SDKs back off) for at most
THROTTLE_BUDGET_S, and the result says how long it backed off. Still throttled after that:
OperationFailed naming the rate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from orchestrator.aws import AwsContext, session
from orchestrator.errors import GuardRefused, InputRejected, OperationFailed

SERVICE = "route53-recovery-cluster"
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 5
MAX_STATES_PER_CALL = 10  # ARC quota: routing controls per UpdateRoutingControlStates call
DEFAULT_WAIT_PERIOD_MS = 5000  # a safety rule's WaitPeriodMs when the DNS stack exports none (ARC's default)
WAIT_MARGIN_S = 10.0  # retry for the wait period plus this much: 15 s for the default rule
FIRST_PAUSE_S = 0.25
MAX_PAUSE_S = 1.0
THROTTLE_BUDGET_S = 10.0  # back off a throttled call (every endpoint said ThrottlingException) this long at most
THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException"})


def _sleep(seconds: float) -> None:  # replaced by tests that make time pass without sleeping
    time.sleep(seconds)


class ControlState(str, Enum):
    ON = "On"
    OFF = "Off"


@dataclass(frozen=True)
class ClusterEndpoint:
    region: str
    url: str


@dataclass(frozen=True)
class ArcWiring:
    """What the DNS stack exports for ARC: one routing control per region, the cluster endpoints."""

    controls: Mapping[str, str]  # region -> routing control ARN
    endpoints: tuple[ClusterEndpoint, ...]
    control_panel_arn: str = ""
    wait_period_ms: int = DEFAULT_WAIT_PERIOD_MS  # the safety rule's wait period
    min_on: int = 1  # the safety rule: at least this many of the controls On

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> ArcWiring:
        def plain(value: Any) -> Any:
            return getattr(value, "value", value)

        controls = dict(plain(outputs.get("routingControls")) or {})
        endpoints = tuple(ClusterEndpoint(str(e["region"]), str(e["endpoint"]))
                          for e in plain(outputs.get("clusterEndpoints")) or [])
        if not controls or not endpoints:
            raise OperationFailed("the DNS stack exports no ARC routing controls or cluster endpoints",
                                  hint="run `orchestrate up` with failover_control: arc first")
        rule = dict(plain(outputs.get("safetyRule")) or {})
        return cls(controls, endpoints, str(plain(outputs.get("controlPanelArn")) or ""),
                   int(rule.get("waitPeriodMs", DEFAULT_WAIT_PERIOD_MS)), int(rule.get("threshold", 1)))


@dataclass(frozen=True)
class ControlCall:
    """One attempt against one cluster endpoint."""

    region: str
    operation: str
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class ControlResult:
    states: Mapping[str, ControlState]  # region -> state (what was set, or what was read)
    endpoint_region: str  # the endpoint that answered
    calls: tuple[ControlCall, ...] = field(default=())
    waited_s: float = 0.0  # paused for the safety rule's wait period before the change was accepted
    throttled_s: float = 0.0  # backed off because every endpoint answered ThrottlingException


class _Throttled(Exception):
    def __init__(self, calls: tuple[ControlCall, ...]) -> None:
        super().__init__("throttled")
        self.calls = calls


class _Backoff:
    """The pauses of a throttled call: 0.25 s, doubling up to 1 s, for at most THROTTLE_BUDGET_S."""

    def __init__(self, operation: str) -> None:
        self.operation, self.spent, self.pause = operation, 0.0, FIRST_PAUSE_S

    def wait(self, throttled: _Throttled) -> None:
        if self.spent >= THROTTLE_BUDGET_S:
            tried = "; ".join(f"{c.region}: {c.error}" for c in throttled.calls)
            raise OperationFailed(f"ARC still throttles {self.operation} after backing off {self.spent:.1f} s "
                                  f"(at most 3 mutating calls per second per cluster endpoint): {tried}",
                                  hint="another client is changing routing controls; routing-control states are "
                                       "unchanged unless an endpoint says otherwise; re-run")
        step = min(self.pause, THROTTLE_BUDGET_S - self.spent)
        _sleep(step)
        self.spent, self.pause = self.spent + step, min(self.pause * 2, MAX_PAUSE_S)


class _Conflict(Exception):
    def __init__(self, message: str, calls: tuple[ControlCall, ...]) -> None:
        super().__init__(message)
        self.message, self.calls = message, calls


class _WaitPeriod:
    """The pauses of a call the safety rule's wait period refuses: 0.25 s, doubling up to 1 s (a
    read-back: see below), for at most the wait period plus WAIT_MARGIN_S; `wait` returns False
    once that is spent."""

    def __init__(self, wiring: ArcWiring, *, read_back: bool = False) -> None:
        self.wait_s = wiring.wait_period_ms / 1000
        self.budget, self.started = self.wait_s + WAIT_MARGIN_S, time.monotonic()
        self.waited, self.pause = 0.0, FIRST_PAUSE_S
        # a read right after the change it reads back: the wait period began about when this did, so
        # the pauses double without the 1 s cap but never past its end (0.25, 0.5, 1, 2, then the
        # rest: six reads for the default 5 s, one or two for a short one such as the drill's)
        self.read_back = read_back

    @property
    def spent(self) -> float:
        return max(self.waited, time.monotonic() - self.started)

    def wait(self) -> bool:
        spent = self.spent
        if spent >= self.budget:
            return False
        step = min(self.pause, self.budget - spent)
        if self.read_back:  # by the pauses alone: a slow machine's requests must not shorten them
            step = min(step, max(self.wait_s - self.waited, FIRST_PAUSE_S))
        _sleep(step)
        self.waited += step
        self.pause = self.pause * 2 if self.read_back else min(self.pause * 2, MAX_PAUSE_S)
        return True


def _client(ctx: AwsContext, endpoint: ClusterEndpoint) -> Any:
    from botocore.config import Config

    sess = session(ctx)
    kwargs: dict[str, Any] = {}
    if sess.get_credentials() is None and ctx.endpoint_url:  # a test endpoint: dummy credentials
        kwargs = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return sess.client(SERVICE, region_name=endpoint.region, endpoint_url=endpoint.url, **kwargs,
                       config=Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                                     retries={"mode": "standard", "total_max_attempts": 1}))


def _ordered(wiring: ArcWiring, avoid: Sequence[str]) -> list[ClusterEndpoint]:
    usable = [e for e in wiring.endpoints if e.region not in set(avoid)]
    if not usable:
        raise OperationFailed(f"every cluster endpoint is in an avoided region ({', '.join(avoid)})")
    return usable


def _attempt(ctx: AwsContext, wiring: ArcWiring, avoid: Sequence[str], operation: str,
             call: Any) -> tuple[Any, str, tuple[ControlCall, ...]]:
    """Run `call(client)` against each usable endpoint in turn until one answers."""
    from botocore.exceptions import BotoCoreError, ClientError

    calls: list[ControlCall] = []
    for endpoint in _ordered(wiring, avoid):
        try:
            answer = call(_client(ctx, endpoint))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            calls.append(ControlCall(endpoint.region, operation, False, f"{code}: {message}"))
            if code == "ConflictException":  # an answer from the shared state: no other endpoint differs
                raise _Conflict(message, tuple(calls)) from None
            if code in ("ValidationException", "ResourceNotFoundException", "AccessDeniedException"):
                raise OperationFailed(f"{operation} via {endpoint.region} failed: {code}: {message}") from None
            continue  # throttled, endpoint temporarily unavailable, 5xx: the next endpoint
        except BotoCoreError as exc:
            calls.append(ControlCall(endpoint.region, operation, False, type(exc).__name__))
            continue
        calls.append(ControlCall(endpoint.region, operation, True))
        return answer, endpoint.region, tuple(calls)
    if any(c.error.split(":", 1)[0] in THROTTLED for c in calls):  # answered, but over the rate: back off
        raise _Throttled(tuple(calls))
    tried = "; ".join(f"{c.region}: {c.error}" for c in calls)
    raise OperationFailed(f"no ARC cluster endpoint answered {operation} ({tried})",
                          hint="routing-control states are unchanged unless an endpoint says otherwise; re-run")


def set_states(ctx: AwsContext, wiring: ArcWiring, states: Mapping[str, ControlState], *,
               avoid: Sequence[str] = ()) -> ControlResult:
    """Set the routing controls of `states` (region -> On/Off) in one all-or-nothing call."""
    unknown = sorted(set(states) - set(wiring.controls))
    if unknown:
        raise OperationFailed(f"no routing control for {', '.join(unknown)} (controls: {', '.join(wiring.controls)})")
    entries = [{"RoutingControlArn": wiring.controls[r], "RoutingControlState": s.value}
               for r, s in sorted(states.items())]
    if len(entries) > MAX_STATES_PER_CALL:  # splitting would lose all-or-nothing
        raise InputRejected(f"{len(entries)} routing controls in one transition; ARC takes at most "
                            f"{MAX_STATES_PER_CALL} per UpdateRoutingControlStates call")
    def update(c: Any) -> Any:
        return c.update_routing_control_states(UpdateRoutingControlStateEntries=entries)

    on = sum(1 for s in states.values() if s is ControlState.ON)
    breaks_rule = set(states) >= set(wiring.controls) and on < wiring.min_on
    period = _WaitPeriod(wiring)
    tried: list[ControlCall] = []
    backoff = _Backoff("UpdateRoutingControlStates")
    while True:
        try:
            _, region, calls = _attempt(ctx, wiring, avoid, "UpdateRoutingControlStates", update)
        except _Throttled as throttled:
            tried.extend(throttled.calls)
            backoff.wait(throttled)
            continue
        except _Conflict as conflict:
            tried.extend(conflict.calls)
            if breaks_rule:
                raise GuardRefused(f"ARC refused the change: it would leave {on} routing control(s) On "
                                   f"(ARC: {conflict.message})",
                                   hint=f"the safety rule keeps at least {wiring.min_on} region(s) On") from None
            if not period.wait():
                raise GuardRefused(f"ARC still refuses the change after {period.spent:.1f} s (the safety rule's "
                                   f"wait period is {period.wait_s:g} s): {conflict.message}",
                                   hint="another change to the routing controls may be under way, or a rule the DNS "
                                        "stack does not declare refuses it: read them with `orchestrate status`, "
                                        "then re-run") from None
            continue
        return ControlResult(dict(states), region, (*tried, *calls), round(period.waited, 3), round(backoff.spent, 3))


def read_states(ctx: AwsContext, wiring: ArcWiring, *, avoid: Sequence[str] = ()) -> ControlResult:
    """Every region's routing-control state, from the first endpoint that answers."""
    def listing(c: Any) -> dict[str, str]:
        found: dict[str, str] = {}
        kwargs: dict[str, Any] = {"ControlPanelArn": wiring.control_panel_arn} if wiring.control_panel_arn else {}
        while True:
            page = c.list_routing_controls(**kwargs)
            for rc in page.get("RoutingControls", []):
                found[rc["RoutingControlArn"]] = rc["RoutingControlState"]
            if not page.get("NextToken"):
                return found
            kwargs["NextToken"] = page["NextToken"]

    backoff, period, tried = _Backoff("ListRoutingControls"), _WaitPeriod(wiring, read_back=True), list[ControlCall]()
    while True:
        try:
            by_arn, region, calls = _attempt(ctx, wiring, avoid, "ListRoutingControls", listing)
            break
        except _Throttled as throttled:  # ARC limits mutating calls only; another service in front may not
            tried.extend(throttled.calls)
            backoff.wait(throttled)
        except _Conflict as conflict:  # "any request against the target routing controls" in the wait period
            tried.extend(conflict.calls)
            if not period.wait():
                raise OperationFailed(f"ARC still refuses ListRoutingControls after {period.spent:.1f} s (the "
                                      f"safety rule's wait period is {period.wait_s:g} s): {conflict.message}",
                                      hint="another change to the routing controls may be under way; re-run "
                                           "`orchestrate status` to read them") from None
    states = {r: ControlState(by_arn[arn]) for r, arn in wiring.controls.items() if arn in by_arn}
    return ControlResult(states, region, (*tried, *calls), round(period.waited, 3), round(backoff.spent, 3))


def only(target: str, regions: Sequence[str]) -> dict[str, ControlState]:
    """The states that send all traffic to `target`: it On, every other region Off."""
    return {r: ControlState.ON if r == target else ControlState.OFF for r in regions}


__all__ = ["ArcWiring", "ClusterEndpoint", "ControlResult", "ControlState", "only", "read_states", "set_states"]
