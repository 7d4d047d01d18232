"""A Route 53 ARC cluster data plane on 127.0.0.1, for the local drill and the tests (moto has no ARC).

The local drill's world runs it (`orchestrate drill --local --failover-control arc`), and the test
tiers drive the product against it. Speaks the real wire protocol of `route53-recovery-cluster`
(JSON 1.0, POST, `X-Amz-Target: ToggleCustomerAPI.<Operation>`, errors as
`{"__type": …, "message": …}`), so the product drives it with boto3's own client and an endpoint URL:

- GetRoutingControlState, UpdateRoutingControlState, UpdateRoutingControlStates (all-or-nothing,
  safety rules evaluated on the resulting states, `SafetyRulesToOverride` honoured),
  ListRoutingControls (by control panel, paged with NextToken/MaxResults);
- a cluster is five regional endpoints (one listening port each) over one shared state, as the
  real cluster's quorum; an endpoint whose region is in `down` closes connections unanswered;
- every request is counted by the endpoint's region and operation;
- the control plane (us-west-2 `route53-recovery-control-config`, which creates routing controls
  and safety rules) is stood in for by `add_control` / `add_safety_rule`, also reachable over HTTP
  (`POST /_fake/control`, `POST /_fake/safety-rule`, `POST /_fake/delete`) for the engine tier's
  stand-in provider. New routing controls start Off, as in ARC.

Only ATLEAST assertion rules are modelled (the kind the product creates); a gating rule is refused
at creation.

The wait period: a safety rule's `WaitPeriodMs` (5000 by default) is "an evaluation period during
which any request against the target routing controls will fail" (CloudFormation
AWS::Route53RecoveryControl::SafetyRule AssertionRule; pulumi_aws SafetyRule.waitPeriodMs). So an
update of any of a rule's asserted controls within that many ms of the last accepted update of one
of them is refused with ConflictException, as a rule violation is. Reads are refused the same way
(GetRoutingControlState of such a control, a ListRoutingControls page that lists one): the
sentence does not say whether reads count, so the stricter reading is taken and the product's
read-back waits it out (`routing_controls.read_states`). A rule
named in `SafetyRulesToOverride` is skipped, wait period included. `time_scale` shrinks every wait
period (the drill's time scale); `clock` is injectable so a test can make time pass without sleeping.

Throttling: "Number of mutating API calls to a cluster endpoint, per second: 3" (ARC Developer
Guide, "Quotas for routing control", routing-control.quotas). An UpdateRoutingControlState(s) to
an endpoint that has taken 3 mutating calls in the last second (on the time scale; calls refused
for a conflict count, calls refused for the rate do not) is answered ThrottlingException, HTTP 429
("The request was denied because of request throttling", with `retryAfterSeconds`: routing-control
API reference, UpdateRoutingControlStates, Errors). Reads are not limited (the quota names
mutating calls only). `throttle=False` turns it off for a test that measures something else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLUSTER_REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-2")
STATES = ("On", "Off")
MAX_ENTRIES = 10  # routing controls per UpdateRoutingControlStates call (ARC quotas for routing control)
DEFAULT_WAIT_PERIOD_MS = 5000  # a safety rule's WaitPeriodMs when none is given (CloudFormation AssertionRule)
MUTATING_PER_S = 3  # mutating API calls to a cluster endpoint, per second (ARC quotas for routing control)
MUTATING = frozenset({"UpdateRoutingControlState", "UpdateRoutingControlStates"})


class ArcError(Exception):
    def __init__(self, kind: str, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.kind, self.status, self.extra = kind, status, extra


@dataclass(frozen=True)
class ArcCall:
    region: str
    operation: str


@dataclass
class Control:
    arn: str
    name: str
    panel: str
    state: str = "Off"


@dataclass
class SafetyRule:
    arn: str
    name: str
    asserted: tuple[str, ...]
    threshold: int = 1
    inverted: bool = False
    wait_period_ms: int = DEFAULT_WAIT_PERIOD_MS

    def holds(self, states: dict[str, str]) -> bool:
        on = sum(1 for a in self.asserted if states.get(a) == "On")
        ok = on >= self.threshold
        return (not ok) if self.inverted else ok


@dataclass(frozen=True)
class Conflict:
    """A ConflictException the cluster answered: `why` is "safety-rule" or "wait-period"."""

    rule: str
    why: str


class ArcCluster:
    def __init__(self, regions: tuple[str, ...] = CLUSTER_REGIONS, *, time_scale: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, throttle: bool = True) -> None:
        self.regions = regions
        self.time_scale = time_scale
        self.clock = clock
        self.throttle = throttle
        self.mutations: dict[str, list[float]] = {}  # endpoint region -> clock() of its recent mutating calls
        self.throttled: list[ArcCall] = []
        self.last_change: dict[str, float] = {}  # rule ARN -> clock() of the last accepted update of its controls
        self.conflicts: list[Conflict] = []
        self.controls: dict[str, Control] = {}
        self.rules: dict[str, SafetyRule] = {}
        self.down: set[str] = set()
        self.calls: list[ArcCall] = []
        self.refused: list[ArcCall] = []
        self.endpoints: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- control plane stand-in -------------------------------------------------------------------
    def add_control(self, arn: str, name: str, panel: str) -> None:
        with self._lock:
            self.controls.setdefault(arn, Control(arn, name, panel))

    def add_safety_rule(self, arn: str, name: str, asserted: list[str], threshold: int = 1,
                        inverted: bool = False, kind: str = "ATLEAST",
                        wait_period_ms: int = DEFAULT_WAIT_PERIOD_MS) -> None:
        if kind != "ATLEAST":
            raise ValueError(f"the fake models ATLEAST assertion rules only, not {kind}")
        if wait_period_ms < 0:
            raise ValueError(f"WaitPeriodMs must not be negative, not {wait_period_ms}")
        with self._lock:
            self.rules[arn] = SafetyRule(arn, name, tuple(asserted), threshold, inverted, int(wait_period_ms))

    def delete(self, arn: str) -> None:
        with self._lock:
            self.controls.pop(arn, None)
            self.rules.pop(arn, None)
            self.last_change.pop(arn, None)

    def states(self) -> dict[str, str]:
        with self._lock:
            return {a: c.state for a, c in self.controls.items()}

    def count(self, region: str | None = None, operation: str | None = None) -> int:
        return sum(1 for c in self.calls if (region is None or c.region == region)
                   and (operation is None or c.operation == operation))

    @property
    def endpoint_list(self) -> list[dict[str, str]]:
        """As the control plane describes a cluster: `ClusterEndpoints` [{Endpoint, Region}]."""
        return [{"endpoint": url, "region": region} for region, url in self.endpoints.items()]

    # -- data plane -------------------------------------------------------------------------------
    def _control(self, arn: Any) -> Control:
        if not isinstance(arn, str) or not arn:
            raise ArcError("ValidationException", "RoutingControlArn is required", reason="fieldValidationFailed")
        control = self.controls.get(arn)
        if control is None:
            raise ArcError("ResourceNotFoundException", f"routing control {arn} not found", 404,
                           resourceId=arn, resourceType="RoutingControl")
        return control

    def _update(self, entries: list[dict[str, Any]], overrides: list[str]) -> None:
        with self._lock:
            proposed = {a: c.state for a, c in self.controls.items()}
            for entry in entries:
                control = self._control(entry.get("RoutingControlArn"))
                state = entry.get("RoutingControlState")
                if state not in STATES:
                    raise ArcError("ValidationException", f"RoutingControlState {state!r} is not On or Off",
                                   reason="fieldValidationFailed")
                proposed[control.arn] = state
            touched = {str(e.get("RoutingControlArn")) for e in entries}
            now = self.clock()
            for rule in self.rules.values():
                if rule.arn in overrides:
                    continue
                if not rule.holds(proposed):
                    self.conflicts.append(Conflict(rule.arn, "safety-rule"))
                    raise ArcError("ConflictException",
                                   f"the update would break safety rule {rule.name} ({rule.arn}): at least "
                                   f"{rule.threshold} of {len(rule.asserted)} routing controls must be On",
                                   409, resourceId=rule.arn, resourceType="SafetyRule")
                self._in_wait(rule, touched, now)
            for arn, state in proposed.items():
                self.controls[arn].state = state
            for rule in self.rules.values():
                if touched & set(rule.asserted):
                    self.last_change[rule.arn] = now

    def _rate(self, region: str, operation: str) -> None:
        """ThrottlingException for a mutating call over the endpoint's 3 per second."""
        if operation not in MUTATING or not self.throttle:
            return
        window = 1.0 * self.time_scale
        with self._lock:
            now = self.clock()
            recent = [t for t in self.mutations.get(region, []) if now - t < window]
            if len(recent) >= MUTATING_PER_S:
                self.mutations[region] = recent
                self.throttled.append(ArcCall(region, operation))
                raise ArcError("ThrottlingException", "The request was denied because of request throttling.",
                               429, retryAfterSeconds=1)
            self.mutations[region] = [*recent, now]

    def _in_wait(self, rule: SafetyRule, arns: set[str], now: float) -> None:
        """ConflictException when `rule` asserts one of `arns` and changed within its wait period
        (the caller holds the lock)."""
        last = self.last_change.get(rule.arn)
        window = rule.wait_period_ms / 1000 * self.time_scale
        if last is not None and arns & set(rule.asserted) and now - last < window:
            self.conflicts.append(Conflict(rule.arn, "wait-period"))
            raise ArcError("ConflictException",
                           f"routing controls of safety rule {rule.name} ({rule.arn}) changed "
                           f"{(now - last) * 1000:.0f} ms ago: requests against them fail for its wait "
                           f"period of {rule.wait_period_ms} ms", 409,
                           resourceId=rule.arn, resourceType="SafetyRule")

    def _readable(self, arns: set[str]) -> None:
        """A read of `arns` is refused as an update would be in a rule's wait period."""
        with self._lock:
            now = self.clock()
            for rule in self.rules.values():
                self._in_wait(rule, arns, now)

    def handle(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        if operation == "GetRoutingControlState":
            c = self._control(body.get("RoutingControlArn"))
            self._readable({c.arn})
            return {"RoutingControlArn": c.arn, "RoutingControlState": c.state, "RoutingControlName": c.name}
        if operation == "UpdateRoutingControlState":
            self._update([body], list(body.get("SafetyRulesToOverride") or []))
            return {}
        if operation == "UpdateRoutingControlStates":
            entries = list(body.get("UpdateRoutingControlStateEntries") or [])
            if not entries or len(entries) > MAX_ENTRIES:
                raise ArcError("ValidationException", f"UpdateRoutingControlStateEntries must hold 1 to "
                               f"{MAX_ENTRIES} entries, not {len(entries)}", reason="fieldValidationFailed")
            self._update(entries, list(body.get("SafetyRulesToOverride") or []))
            return {}
        if operation == "ListRoutingControls":
            panel = body.get("ControlPanelArn")
            items = sorted((c for c in self.controls.values() if not panel or c.panel == panel),
                           key=lambda c: c.arn)
            start = int(body.get("NextToken") or 0)
            size = int(body.get("MaxResults") or 500)
            page = items[start:start + size]
            self._readable({c.arn for c in page})
            out: dict[str, Any] = {"RoutingControls": [
                {"ControlPanelArn": c.panel, "RoutingControlArn": c.arn, "RoutingControlName": c.name,
                 "RoutingControlState": c.state, "Owner": "123456789012"} for c in page]}
            if start + size < len(items):
                out["NextToken"] = str(start + size)
            return out
        raise ArcError("UnknownOperationException", f"unknown operation {operation}")

    def _admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/control"):
            self.add_control(body["arn"], body["name"], body["panel"])
        elif path.endswith("/safety-rule"):
            self.add_safety_rule(body["arn"], body["name"], body["asserted"], int(body.get("threshold", 1)),
                                 bool(body.get("inverted", False)), body.get("type", "ATLEAST"),
                                 int(body.get("waitPeriodMs", DEFAULT_WAIT_PERIOD_MS)))
        elif path.endswith("/delete"):
            self.delete(body["arn"])
        elif path.endswith("/states"):
            return {"states": self.states()}
        else:
            raise ArcError("ValidationException", f"unknown admin path {path}")
        return {}

    # -- servers ----------------------------------------------------------------------------------
    @contextmanager
    def serve(self) -> Iterator[ArcCluster]:
        cluster = self

        def handler_for(region: str) -> type[BaseHTTPRequestHandler]:
            class Handler(BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"

                def log_message(self, *args: Any) -> None:
                    return

                def do_POST(self) -> None:  # noqa: N802
                    length = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(length) if length else b"{}"
                    if self.path.startswith("/_fake/"):
                        self._reply(200, cluster._admin(self.path, json.loads(raw or b"{}")))
                        return
                    target = self.headers.get("X-Amz-Target", "")
                    operation = target.split(".", 1)[-1]
                    call = ArcCall(region, operation)
                    if region in cluster.down:
                        cluster.refused.append(call)
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    cluster.calls.append(call)
                    try:
                        if not target.startswith("ToggleCustomerAPI."):
                            raise ArcError("UnknownOperationException", f"unknown target {target!r}")
                        if "application/x-amz-json-1.0" not in self.headers.get("Content-Type", ""):
                            raise ArcError("SerializationException", "expected application/x-amz-json-1.0")
                        cluster._rate(region, operation)
                        self._reply(200, cluster.handle(operation, json.loads(raw or b"{}")))
                    except ArcError as exc:
                        self._reply(exc.status, {"__type": exc.kind, "message": str(exc), **exc.extra})

                def _reply(self, status: int, body: dict[str, Any]) -> None:
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                    self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            return Handler

        with ExitStack() as stack:
            for region in self.regions:
                server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(region))
                server.daemon_threads = True
                threading.Thread(target=server.serve_forever, name=f"arc-{region}", daemon=True).start()
                stack.callback(server.server_close)
                stack.callback(server.shutdown)
                self.endpoints[region] = f"http://127.0.0.1:{server.server_address[1]}/v1"
            yield self
