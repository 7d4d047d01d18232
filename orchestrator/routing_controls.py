"""Route 53 ARC routing controls, through the cluster's data plane only.

A cluster answers on five regional endpoints (its `clusterEndpoints`, exported by the DNS stack);
any of them changes or reads a routing control state. AWS's guidance for recovery is to depend on
data planes: so `failover`/`failback` in `failover_control: arc` call only these endpoints (no
Pulumi update, no Route 53 control-plane call), try them one after the other with short timeouts,
and never call an endpoint in a region they were told to avoid (the failed one).

Writes use UpdateRoutingControlStates: every state of a transition in one all-or-nothing call, so
the cluster's safety rule (at least one region On) is evaluated on the result, not on a half-done
sequence. A safety-rule refusal (ConflictException) is an answer, not an outage: it stops at once.
"""

from __future__ import annotations

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
        return cls(controls, endpoints, str(plain(outputs.get("controlPanelArn")) or ""))


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
            if code == "ConflictException":
                raise GuardRefused(f"ARC refused the change: {message}",
                                   hint="a safety rule keeps at least one region On") from None
            if code in ("ValidationException", "ResourceNotFoundException", "AccessDeniedException"):
                raise OperationFailed(f"{operation} via {endpoint.region} failed: {code}: {message}") from None
            continue  # throttled, endpoint temporarily unavailable, 5xx: the next endpoint
        except BotoCoreError as exc:
            calls.append(ControlCall(endpoint.region, operation, False, type(exc).__name__))
            continue
        calls.append(ControlCall(endpoint.region, operation, True))
        return answer, endpoint.region, tuple(calls)
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
    _, region, calls = _attempt(ctx, wiring, avoid, "UpdateRoutingControlStates",
                                lambda c: c.update_routing_control_states(UpdateRoutingControlStateEntries=entries))
    return ControlResult(dict(states), region, calls)


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

    by_arn, region, calls = _attempt(ctx, wiring, avoid, "ListRoutingControls", listing)
    states = {r: ControlState(by_arn[arn]) for r, arn in wiring.controls.items() if arn in by_arn}
    return ControlResult(states, region, calls)


def only(target: str, regions: Sequence[str]) -> dict[str, ControlState]:
    """The states that send all traffic to `target`: it On, every other region Off."""
    return {r: ControlState.ON if r == target else ControlState.OFF for r in regions}


__all__ = ["ArcWiring", "ClusterEndpoint", "ControlResult", "ControlState", "only", "read_states", "set_states"]
