"""An HTTP gate in front of the moto server: strict Route 53, region outages, call counting.

TEST FIXTURE ONLY. Every AWS request of a test (the orchestrator's boto3 clients, the ops tier's
provider simulation, the engine tier's stand-in provider through FAKE_AWS_MOTO_URL) goes to the
gate on 127.0.0.1, which

- counts it by the region and service it is signed for (SigV4 `Credential=…/<region>/<service>/…`)
  and its operation;
- refuses it when its region is in `down` (the connection is closed without an answer, as an
  unreachable region does);
- throttles Route 53 as Route 53 does (`route53_model.RequestRate`: the account's and each
  operation's token bucket; HTTP 400 Throttling "Rate exceeded"), on the gate's clock;
- checks every Route 53 ChangeResourceRecordSets batch with `orchestrator.drill.world.route53_model` (all-or-nothing,
  each change against the state earlier changes leave; names inside the zone, no CNAME at its apex,
  health checks that exist in moto) and answers a refusal in Route 53's shape
  (HTTP 400, `<InvalidChangeBatch><Messages>…`, or `<ErrorResponse>` with InvalidInput); an accepted
  batch is written to moto as its net effect (moto applies batches change by change);
- asks `tests.iot_strict` whether AWS IoT would refuse the request (what moto accepts that IoT
  does not) and answers its refusal in IoT's shape;
- remembers each health check's configuration as created (moto drops RecoveryControl ARNs), so
  `answers()` can say what the name resolves to;
- runs each endpoint health check as Route 53's checkers do (`route53_model.TimedChecks`, the
  model's one `CheckStatus` rule): checked every RequestInterval x `health_scale` on the gate's
  clock against the regions that were down at that time (`down` keeps its history), unhealthy only
  after FailureThreshold failed checks in a row and healthy again after as many successes; what
  `answers()` gives for the live outage and what GetHealthCheckStatus reports follow it.

Everything else is passed through unchanged.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orchestrator.drill.world import route53_model as strict
from tests import iot_strict

NS = "https://route53.amazonaws.com/doc/2013-04-01/"
_CRED = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_RRSET = re.compile(r"^/2013-04-01/hostedzone/([^/]+)/rrset/?$")
_HC = re.compile(r"^/2013-04-01/healthcheck/?([^/]*)$")
_CHANGE = re.compile(r"^/2013-04-01/change/([^/]+)$")
_HC_STATUS = re.compile(r"^/2013-04-01/healthcheck/([^/]+)/status$")


# The gate's health checks run on a compressed clock: a 30 s RequestInterval is 0.3 s of the gate's
# clock, so a check with FailureThreshold 3 turns unhealthy about 0.9 s after its region went down.
HEALTH_SCALE = 0.01


class Outages(set[str]):
    """The regions that do not answer (a set, as tests change it), with its history on `clock`:
    `at(t)` is the set as it was at time t (what a health check run at t saw)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock
        self.history: list[tuple[float, frozenset[str]]] = []

    def _noted(self) -> None:
        self.history.append((self._clock(), frozenset(self)))

    def add(self, region: str) -> None:
        super().add(region)
        self._noted()

    def discard(self, region: object) -> None:
        super().discard(region)
        self._noted()

    def remove(self, region: str) -> None:
        super().remove(region)
        self._noted()

    def update(self, *regions: Any) -> None:
        super().update(*regions)
        self._noted()

    def clear(self) -> None:
        super().clear()
        self._noted()

    def at(self, t: float) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for when, regions in self.history:
            if when > t:
                break
            found = regions
        return found


@dataclass(frozen=True)
class Call:
    region: str
    service: str
    operation: str
    key: str = ""  # the access key id that signed it (tells two clients of one test apart)


_ROUTE53_OPS: list[tuple[str, re.Pattern[str], int, str]] = []


def route53_operation(method: str, path: str) -> str:
    """The Route 53 API operation of a REST request (from botocore's service model: each
    operation's HTTP method and request URI); "?" when none matches."""
    if not _ROUTE53_OPS:
        import botocore.session

        model = botocore.session.get_session().get_service_model("route53")
        for name in model.operation_names:
            http = model.operation_model(name).http
            uri = http["requestUri"].split("?")[0].rstrip("/")
            holes = uri.count("{")
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(uri)) + "/?$")
            _ROUTE53_OPS.append((http["method"], pattern, holes, name))
        _ROUTE53_OPS.sort(key=lambda op: op[2])  # the most literal match first
    plain = urllib.parse.urlsplit(path).path
    return next((name for m, pattern, _, name in _ROUTE53_OPS if m == method and pattern.match(plain)), "?")


def _strip(tag: str) -> str:
    return tag.split("}", 1)[-1]


def _xml_to_rrset(node: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in node:
        tag = _strip(child.tag)
        if tag == "ResourceRecords":
            out[tag] = [{"Value": (v.text or "")} for rr in child for v in rr if _strip(v.tag) == "Value"]
        elif tag in ("GeoLocation", "AliasTarget", "CidrRoutingConfig", "GeoProximityLocation"):
            out[tag] = {_strip(c.tag): c.text for c in child}
        elif tag in ("TTL", "Weight"):
            out[tag] = int(child.text or 0)
        elif tag == "MultiValueAnswer":
            out[tag] = (child.text or "").lower() == "true"
        else:
            out[tag] = child.text
    return out


def parse_change_batch(body: bytes) -> list[dict[str, Any]]:
    root = ET.fromstring(body)
    changes = []
    for change in root.iter(f"{{{NS}}}Change"):
        action = change.find(f"{{{NS}}}Action")
        rrset = change.find(f"{{{NS}}}ResourceRecordSet")
        assert action is not None and rrset is not None
        changes.append({"Action": action.text, "ResourceRecordSet": _xml_to_rrset(rrset)})
    return changes


def _health_config(body: bytes) -> dict[str, Any]:
    root = ET.fromstring(body)
    node = root.find(f"{{{NS}}}HealthCheckConfig")
    if node is None:  # UpdateHealthCheck: the fields sit at the top level
        node = root
    config: dict[str, Any] = {}
    for child in node:
        tag = _strip(child.tag)
        if tag == "ChildHealthChecks":
            config[tag] = [c.text for c in child]
        elif tag in ("Port", "FailureThreshold", "RequestInterval", "HealthThreshold"):
            config[tag] = int(child.text or 0)
        elif tag in ("Inverted", "Disabled"):
            config[tag] = (child.text or "").lower() == "true"
        elif tag == "AlarmIdentifier":  # CLOUDWATCH_METRIC: {Region, Name}
            config[tag] = {_strip(c.tag): c.text for c in child}
        else:
            config[tag] = child.text
    return config


def _error_xml(exc: strict.InvalidChangeBatch) -> bytes:
    """Route 53's error document: InvalidChangeBatch lists its messages in brackets, as boto3 shows
    them ("An error occurred (InvalidChangeBatch) …: [Tried to create resource record set …]")."""
    rid = uuid.uuid4()
    message = f"[{', '.join(exc.messages)}]" if exc.code == "InvalidChangeBatch" else exc.messages[0]
    return (f'<?xml version="1.0"?>\n<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{exc.code}</Code>'
            f"<Message>{_esc(message)}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>").encode()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Gate:
    """Run with `serve(moto_url)`; `url` is what clients use."""

    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url.rstrip("/")
        self.clock: Callable[[], float] = time.monotonic
        self.down = Outages(lambda: self.clock())
        self.calls: list[Call] = []
        self.refused: list[Call] = []
        self.rejected_batches: list[tuple[list[dict[str, Any]], list[str]]] = []
        self.accepted_batches: list[list[dict[str, Any]]] = []
        self.health_checks: dict[str, dict[str, Any]] = {}
        # Route 53's timing, the model's (`route53_model.Propagation`, as the drill's engine uses it):
        # a change is PENDING for `propagation_s` after it is accepted, then INSYNC (GetChange); a
        # batch that touches a record set with a change still PENDING is refused with
        # PriorRequestNotComplete. 0 (the default): INSYNC at the first GetChange.
        self.propagation = strict.Propagation(0.0, clock=lambda: self.clock())
        self.propagation_s = 0.0  # the property below: the time of the changes accepted from now on
        self.change_reads: list[tuple[str, str]] = []  # (change id, status answered)
        # Route 53's request rate (route53_model.RequestRate: 50 at once, 10 per second per account
        # and per operation), on the gate's clock; every Route 53 request a test sends takes a token
        self.route53_rate = strict.RequestRate(clock=lambda: self.clock())
        # Route 53's checkers, on the gate's clock (HEALTH_SCALE); `health_scale` may be changed by a test
        self.checkers = strict.TimedChecks(lambda: self.clock(), HEALTH_SCALE)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    @property
    def propagation_s(self) -> float:
        return float(self.propagation.delay_s)

    @propagation_s.setter
    def propagation_s(self, seconds: float) -> None:  # applies to the changes accepted from now on
        self.propagation.delay_s = seconds

    # -- what tests read ------------------------------------------------------------------------------
    def count(self, region: str | None = None, service: str | None = None) -> int:
        return sum(1 for c in self.calls if (region is None or c.region == region)
                   and (service is None or c.service == service))

    def by_region_and_service(self) -> Counter[tuple[str, str]]:
        return Counter((c.region, c.service) for c in self.calls)

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
            self.refused.clear()

    def reset(self) -> None:
        """Forget everything (the moto server behind was reset)."""
        with self._lock:
            self.down = Outages(lambda: self.clock())
            self.checkers = strict.TimedChecks(lambda: self.clock(), HEALTH_SCALE)
            self.calls.clear()
            self.refused.clear()
            self.rejected_batches.clear()
            self.accepted_batches.clear()
            self.health_checks.clear()
            self.clock = time.monotonic  # a test's manual clock ends with it (the rate refills in real time)
            self.propagation = strict.Propagation(0.0, clock=lambda: self.clock())
            self.route53_rate = strict.RequestRate(clock=lambda: self.clock())
            self.change_reads.clear()

    def r53(self) -> Any:
        import boto3

        return boto3.client("route53", region_name="us-east-1", endpoint_url=self.moto_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def iot(self, region: str) -> Any:
        import boto3

        return boto3.client("iot", region_name=region, endpoint_url=self.moto_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stored_shadow(self, region: str, thing: str, name: str) -> dict[str, Any] | None:
        """A shadow's `state` as moto holds it (None: no shadow)."""
        import boto3

        data = boto3.client("iot-data", region_name=region, endpoint_url=self.moto_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
        try:
            payload = data.get_thing_shadow(thingName=thing, **({"shadowName": name} if name else {}))["payload"]
        except data.exceptions.ResourceNotFoundException:
            return None
        state = json.loads(payload.read()).get("state")
        return state if isinstance(state, dict) else None

    def records(self, zone_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self.r53().get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
            out.extend(page["ResourceRecordSets"])
        return out

    @property
    def health_scale(self) -> float:
        return self.checkers.time_scale

    @health_scale.setter
    def health_scale(self, scale: float) -> None:
        self.checkers.time_scale = scale

    def check_healthy(self, check_id: str) -> bool:
        """An endpoint check's status as Route 53's checkers have decided it by now (live outage)."""
        return self.checkers.status(check_id, self.health_checks[check_id], self._measure_at)

    def _measure_at(self, check_id: str, config: Any, t: float) -> bool:
        """What a checker saw at time t: the endpoint answers unless its region was down then."""
        return strict.endpoint_region(config.get("FullyQualifiedDomainName", "")) not in self.down.at(t)

    def answers(self, zone_id: str, name: str, *, down: frozenset[str] | None = None,
                controls: dict[str, str] | None = None) -> frozenset[str]:
        """What resolvers may receive for `name`. Without `down`: now, the endpoint checks as Route
        53's checkers have decided them by now over the live outage (`self.down`: a region that went
        down counts only after FailureThreshold checks). With `down`: settled, what Route 53 answers
        once its checks have counted those regions down (and every other one up)."""
        if down is None:
            health = strict.Health(dict(self.health_checks), frozenset(), controls or {},
                                   endpoint=lambda cid, _cfg: self.check_healthy(cid))
        else:
            health = strict.Health(dict(self.health_checks), down, controls or {})
        return strict.answer_regions(self.records(zone_id), name, health)

    # -- the proxy ------------------------------------------------------------------------------------
    @contextmanager
    def serve(self) -> Iterator[Gate]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                call = gate._classify(self.command, self.path, self.headers, body)
                with gate._lock:
                    if call.region in gate.down:
                        gate.refused.append(call)
                    else:
                        gate.calls.append(call)
                if call.region in gate.down:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                throttled = gate._throttle(call.service, self.command, self.path)
                status, headers, payload = throttled or gate._dispatch(self.command, self.path,
                                                                       dict(self.headers), body)
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle  # noqa: N815

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, name="aws-gate", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()

    def _classify(self, method: str, path: str, headers: Any, body: bytes) -> Call:
        m = _CRED.search(headers.get("Authorization", ""))
        key, region, service = (m.group(1), m.group(2), m.group(3)) if m else ("", "?", "?")
        target = headers.get("X-Amz-Target")
        if target:
            op = target.split(".", 1)[-1]
        elif body.startswith(b"Action=") or b"&Action=" in body:
            op = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
        else:
            op = f"{method} {urllib.parse.urlsplit(path).path}"
        return Call(region, service, op, key)

    def _throttle(self, service: str, method: str, path: str) -> tuple[int, list, bytes] | None:
        """Route 53's answer to a request over its rate (None: under it)."""
        if service != "route53":
            return None
        try:
            self.route53_rate.take(route53_operation(method, path))
        except strict.Throttled:
            return 400, [("Content-Type", "text/xml")], _error_xml(
                strict.InvalidChangeBatch([strict.THROTTLED], code="Throttling"))
        return None

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        parts = urllib.parse.urlsplit(self.moto_url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers={
                k: v for k, v in headers.items() if k.lower() not in ("transfer-encoding", "connection")})
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        plain = urllib.parse.urlsplit(path).path
        rrset = _RRSET.match(plain)
        if rrset and method == "POST":
            return self._change_batch(rrset.group(1), body)
        change = _CHANGE.match(plain)
        if change and method == "GET":  # PENDING until the change's propagation time has passed
            with self._lock:
                known = self.propagation.knows(change.group(1))
                answered = self.propagation.status(change.group(1)) if known else "INSYNC"
                self.change_reads.append((change.group(1), answered))
            return 200, [("Content-Type", "text/xml")], (
                f'<?xml version="1.0"?>\n<GetChangeResponse xmlns="{NS}"><ChangeInfo><Id>{change.group(1)}</Id>'
                f"<Status>{answered}</Status><SubmittedAt>2026-01-01T00:00:00.000Z</SubmittedAt></ChangeInfo>"
                f"</GetChangeResponse>").encode()
        m = _CRED.search(headers.get("Authorization", "") or headers.get("authorization", ""))
        refusal = iot_strict.check(m.group(3) if m else "?", m.group(2) if m else "?", method, path, body,
                                   self.iot, self.stored_shadow)
        if refusal is not None:
            return refusal.answer()
        hc = _HC.match(plain)
        status, out_headers, payload = self._forward(method, path, headers, body)
        observed = _HC_STATUS.match(plain)
        if observed and method == "GET" and status == 200:
            payload = self._observations(observed.group(1), payload)
        status, payload = iot_strict.page(m.group(3) if m else "?", method, path, status, payload)
        if hc and status < 300:
            with self._lock:
                if method == "POST" and not hc.group(1):
                    created = ET.fromstring(payload).find(f".//{{{NS}}}Id")
                    if created is not None and created.text:
                        self.health_checks[created.text] = _health_config(body)
                        self.checkers.start(created.text)  # healthy; first checked one interval on
                elif method == "POST" and hc.group(1):
                    self.health_checks.setdefault(hc.group(1), {}).update(_health_config(body))
                elif method == "DELETE" and hc.group(1):
                    self.health_checks.pop(hc.group(1), None)
                    self.checkers.forget(hc.group(1))
        return status, out_headers, payload

    def _observations(self, check_id: str, payload: bytes) -> bytes:
        """GetHealthCheckStatus as Route 53 answers it for an endpoint check: each checker's latest
        observation (moto always reports success). The local world's checkers all see the same
        endpoint, so every observation is the latest result of the check's one `CheckStatus`."""
        config = self.health_checks.get(check_id)
        if config is None or config.get("Type", "TCP") not in strict.ENDPOINT_TYPES:
            return payload
        last = self.checkers.state(check_id, config, self._measure_at).last_ok
        if last is None or last:  # not checked yet: Route 53 considers a new check healthy
            return payload
        return re.sub(rb"<Status>Success[^<]*</Status>",
                      b"<Status>Failure: Connection timed out. The endpoint or the internet connection is down, "
                      b"or requests are being blocked by your firewall.</Status>", payload)

    def _change_batch(self, zone_id: str, body: bytes) -> tuple[int, list, bytes]:
        changes = parse_change_batch(body)
        xml_headers = [("Content-Type", "text/xml")]
        touched = {strict.key(c["ResourceRecordSet"]) for c in changes
                   if c["ResourceRecordSet"].get("Name") and c["ResourceRecordSet"].get("Type")}
        with self._lock:  # Route 53 serialises the batches of one zone
            try:
                self.propagation.refuse_prior(zone_id, touched)
            except strict.InvalidChangeBatch as exc:  # PriorRequestNotComplete
                return exc.status, xml_headers, _error_xml(exc)
            current = [r for r in self.records(zone_id)]
            r53 = self.r53()
            zone = r53.get_hosted_zone(Id=zone_id)["HostedZone"]["Name"]
            checks = {c["Id"] for page in r53.get_paginator("list_health_checks").paginate()
                      for c in page["HealthChecks"]}
            try:
                after = strict.apply_batch(current, changes, zone=zone, health_checks=checks)
            except strict.InvalidChangeBatch as exc:
                self.rejected_batches.append((changes, exc.messages))
                return exc.status, xml_headers, _error_xml(exc)
            before = {strict.key(r): strict.normalise(r) for r in current}
            # the net effect, one set per call (moto's own batch handling is not Route 53's)
            for k, rr in before.items():
                if k not in after:
                    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
                        "Changes": [{"Action": "DELETE", "ResourceRecordSet": rr}]})
            for k, rr in after.items():
                if before.get(k) != rr:
                    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
                        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": rr}]})
            self.accepted_batches.append(changes)
            change_id = "C" + uuid.uuid4().hex[:12].upper()
            self.propagation.bind(self.propagation.submit(zone_id, current, touched), {"Id": f"/change/{change_id}"})
        payload = (f'<?xml version="1.0"?>\n<ChangeResourceRecordSetsResponse xmlns="{NS}"><ChangeInfo>'
                   f"<Id>/change/{change_id}</Id><Status>PENDING</Status>"
                   f"<SubmittedAt>2026-01-01T00:00:00.000Z</SubmittedAt></ChangeInfo>"
                   f"</ChangeResourceRecordSetsResponse>").encode()
        return 200, xml_headers, payload
