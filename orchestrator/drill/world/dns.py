"""The custom domain's answers, as Route 53 gives them, from the records the DNS stack holds.

`Route53Answers` reads the hosted zone's record sets (boto3, the moto server of the local world),
runs the health checks those records name as Route 53 would: TCP checks as real TCP connects to the
brokers (interval and failure threshold from the health check, scaled by the drill's time scale),
RECOVERY_CONTROL checks as the state of their ARC routing control (healthy when On),
CLOUDWATCH_METRIC checks as the state of their CloudWatch alarm in the local world's CloudWatch
(OK healthy, ALARM unhealthy, INSUFFICIENT_DATA as the check's `InsufficientDataHealthStatus` says:
Healthy, Unhealthy, or LastKnownStatus, which is healthy for a check that never had a status; the
alarms are evaluated by `drill/world/cloudwatch.py`, moto evaluates none), CALCULATED checks as at least
`HealthThreshold` healthy children; `Inverted` turns any check's result round
(`route53_model.check_healthy`). moto keeps neither a
RECOVERY_CONTROL check's routing control nor a CLOUDWATCH_METRIC check's alarm, so what the engine
created is passed in (`control_state`, `alarm_of`). Answers follow Route 53's selection rules as
the local world's one Route 53 model holds them (`orchestrator/drill/world/route53_model.py`, `select`):
what is measured here (TCP connects, ARC states, alarms) is the drill's, what Route 53 makes of it
is the model's.
A record change reaches the answers only once Route 53 reports it INSYNC (`propagation`, the
engine's `route53_model.Propagation`: PENDING for Route 53's propagation time on the drill's time
scale), so a transition that moves traffic by changing records waits for it as it would in AWS.
`DnsServer` serves those answers over UDP (dnslib): a CNAME to the region's ATS endpoint with the
record's (scaled) TTL, and the endpoint's address on this machine.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.drill.model import DnsChange, HealthTransition
from orchestrator.drill.world.route53_model import CheckStatus, Propagation, alarm_health, check_healthy, select


@dataclass(frozen=True)
class RecordSet:
    name: str
    value: str
    ttl: int
    set_id: str | None = None
    failover: str | None = None  # PRIMARY | SECONDARY
    region: str | None = None  # latency record's region
    health_check_id: str | None = None

    def rrset(self) -> dict[str, Any]:
        """The record set as Route 53 lists it (what the model's selection reads)."""
        out: dict[str, Any] = {"Name": self.name, "Type": "CNAME", "TTL": self.ttl,
                               "ResourceRecords": [{"Value": self.value}]}
        for k, v in (("SetIdentifier", self.set_id), ("Failover", self.failover), ("Region", self.region),
                     ("HealthCheckId", self.health_check_id)):
            if v:
                out[k] = v
        return out


@dataclass(frozen=True)
class AlarmRef:
    """What a CLOUDWATCH_METRIC check watches (`AlarmIdentifier`) and how it reads missing data."""

    region: str
    name: str
    insufficient: str = "LastKnownStatus"  # Healthy | Unhealthy | LastKnownStatus


@dataclass(frozen=True)
class CheckSpec:
    id: str
    fqdn: str
    port: int
    interval: float  # seconds, as configured
    threshold: int


def parse_records(listing: list[dict[str, Any]], name: str) -> list[RecordSet]:
    fqdn = name.rstrip(".") + "."
    out = []
    for rr in listing:
        if rr.get("Name") != fqdn or rr.get("Type") != "CNAME" or not rr.get("ResourceRecords"):
            continue
        out.append(RecordSet(name=fqdn, value=rr["ResourceRecords"][0]["Value"].rstrip("."), ttl=int(rr.get("TTL", 60)),
                             set_id=rr.get("SetIdentifier"), failover=rr.get("Failover"), region=rr.get("Region"),
                             health_check_id=rr.get("HealthCheckId")))
    return out


class HealthChecker:
    """Route 53 health checks as real TCP connects, at the checks' own interval times `scale`."""

    def __init__(self, specs: list[CheckSpec], address_of: Mapping[str, tuple[str, int]], scale: float) -> None:
        self.specs = {s.id: s for s in specs}
        self.address_of = dict(address_of)  # fqdn -> (address, port) on this machine
        self.scale = scale
        # Route 53's rule (`route53_model.CheckStatus`): healthy at first, FailureThreshold results in a row flip it
        self.checks: dict[str, CheckStatus] = {s.id: CheckStatus(s.threshold) for s in specs}
        self.transitions: list[HealthTransition] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def healthy(self, check_id: str) -> bool:
        check = self.checks.get(check_id)
        return True if check is None else check.healthy

    def start(self) -> None:
        for spec in self.specs.values():
            t = threading.Thread(target=self._loop, args=(spec,), name=f"drill-health-{spec.id}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _probe(self, spec: CheckSpec) -> bool:
        address, port = self.address_of.get(spec.fqdn, (spec.fqdn, spec.port))
        try:
            with socket.create_connection((address, port), timeout=max(0.2, min(10.0 * self.scale, 4.0))):
                return True
        except OSError:
            return False

    def _loop(self, spec: CheckSpec) -> None:
        interval = max(0.05, spec.interval * self.scale)
        while not self._stop.wait(interval):
            ok = self._probe(spec)
            if self.checks[spec.id].observe(ok):
                self.transitions.append(HealthTransition(time.time(), spec.id, spec.fqdn, ok))


class Route53Answers:
    def __init__(self, r53: Any, zone_id: str, domain: str, addresses: Mapping[str, str], tls_port: int,
                 scale: float, nearest: Callable[[str | None, str], float],
                 control_state: Callable[[str], str | None] = lambda _check_id: None,
                 alarm_of: Callable[[str], AlarmRef | None] = lambda _check_id: None,
                 alarm_state: Callable[[str, str], str | None] = lambda _region, _name: None,
                 propagation: Propagation | None = None) -> None:
        self.r53, self.zone_id, self.domain = r53, zone_id, domain.rstrip(".")
        # Route 53's change propagation (the engine's): answers come from INSYNC changes only
        self.propagation = propagation
        self._settled = -1
        self.control_state = control_state  # RECOVERY_CONTROL check id -> its routing control's state
        self.alarm_of = alarm_of  # CLOUDWATCH_METRIC check id -> its alarm (moto keeps no AlarmIdentifier)
        self.alarm_state = alarm_state  # (region, alarm name) -> OK | ALARM | INSUFFICIENT_DATA | None
        self._configs: dict[str, dict[str, Any]] = {}  # check id -> its HealthCheckConfig, as read
        self._metric_checks: dict[str, AlarmRef | None] = {}
        self._last_known: dict[str, bool] = {}  # CLOUDWATCH_METRIC check -> its last status from OK/ALARM
        self._alarm_read: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._metric_status: dict[str, bool] = {}  # CLOUDWATCH_METRIC check -> its status as last read
        self._metric_transitions: list[HealthTransition] = []
        self.addresses = dict(addresses)  # ATS endpoint -> loopback address
        self.tls_port, self.scale, self.nearest = tls_port, scale, nearest
        self.changes: list[DnsChange] = []
        self.served_ttl: int | None = None  # the TTL of the last answer, as served (scaled)
        self._last: dict[str | None, str | None] = {}
        self._records: list[RecordSet] = []
        self._read_at = 0.0
        self._lock = threading.Lock()
        self._checkers: list[HealthChecker] = []

    def records(self, max_age: float = 0.2) -> list[RecordSet]:
        with self._lock:
            settled = self.propagation.settled(self.zone_id) if self.propagation is not None else 0
            if time.monotonic() - self._read_at > max_age or settled != self._settled:
                listing = self.r53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
                if self.propagation is not None:  # what the name servers have: no PENDING change yet
                    listing = self.propagation.served(self.zone_id, listing)
                self._records = parse_records(listing, self.domain)
                self._settled = settled
                self._read_at = time.monotonic()
                self._sync_checks()
            return self._records

    def _sync_checks(self) -> None:
        """Health checks follow the records: a check named by a record (or by a CALCULATED check it
        names) starts being evaluated."""
        known = set(self._configs)
        missing = {r.health_check_id for r in self._records if r.health_check_id} - known
        specs = []
        read: dict[str, dict[str, Any]] = {}  # published together: a CALCULATED check with its children
        while missing:
            check_id = missing.pop()
            known.add(check_id)
            cfg = self.r53.get_health_check(HealthCheckId=check_id)["HealthCheck"]["HealthCheckConfig"]
            kind = cfg.get("Type", "TCP")
            if kind == "CALCULATED":
                missing |= set(cfg.get("ChildHealthChecks") or ()) - known
            elif kind == "CLOUDWATCH_METRIC":
                alarm = cfg.get("AlarmIdentifier")
                self._metric_checks[check_id] = AlarmRef(
                    alarm["Region"], alarm["Name"], cfg.get("InsufficientDataHealthStatus") or "LastKnownStatus"
                ) if alarm else self.alarm_of(check_id)
            elif kind in ("TCP", "HTTP", "HTTPS", "HTTP_STR_MATCH", "HTTPS_STR_MATCH"):
                specs.append(CheckSpec(check_id, cfg.get("FullyQualifiedDomainName", ""), int(cfg.get("Port", 443)),
                                       float(cfg.get("RequestInterval", 30)), int(cfg.get("FailureThreshold", 3))))
            elif kind != "RECOVERY_CONTROL":  # its routing control's state is read when asked
                raise ValueError(f"health check {check_id}: type {kind} is not evaluated by the local world")
            read[check_id] = dict(cfg)
        self._configs.update(read)
        if not specs:
            return
        address_of = {fqdn: (addr, self.tls_port) for fqdn, addr in self.addresses.items()}
        checker = HealthChecker(specs, address_of, self.scale)
        checker.start()
        self._checkers.append(checker)

    def healthy(self, check_id: str) -> bool:
        """Route 53's status of the check (the model's rules) over what the drill measures. A check
        not read yet counts as healthy (Route 53 considers a new health check healthy)."""
        if check_id not in self._configs:
            return True
        return check_healthy(check_id, self._configs.get, self._measured)

    def _measured(self, check_id: str, config: Mapping[str, Any]) -> bool:
        """What a leaf check measures in the local world."""
        kind = config.get("Type", "TCP")
        if kind == "RECOVERY_CONTROL":
            return self.control_state(check_id) == "On"
        if kind == "CLOUDWATCH_METRIC":
            return self._metric_health(check_id)
        for c in self._checkers:
            if check_id in c.specs:
                return c.healthy(check_id)
        return True

    def _metric_health(self, check_id: str, max_age: float = 0.2) -> bool:
        alarm = self._metric_checks[check_id]
        state = None
        if alarm is not None:
            key = (alarm.region, alarm.name)
            at, state = self._alarm_read.get(key, (-1.0, None))
            if time.monotonic() - at > max_age:  # read outside the records' lock: answers never wait on it
                try:
                    state = self.alarm_state(alarm.region, alarm.name)
                except Exception:  # noqa: BLE001 - an unreadable alarm is insufficient data
                    state = None
                self._alarm_read[key] = (time.monotonic(), state)
        last = self._last_known.get(check_id)
        ok = alarm_health(state, alarm.insufficient if alarm else "LastKnownStatus", last)
        if state in ("OK", "ALARM"):
            self._last_known[check_id] = ok
        previous = self._metric_status.get(check_id)
        self._metric_status[check_id] = ok
        if previous is not None and previous != ok:  # the first status is no transition
            self._metric_transitions.append(HealthTransition(time.time(), check_id,
                                                             f"alarm {alarm.name if alarm else '?'}", ok))
        return ok

    def healthy_endpoint(self, fqdn: str) -> bool:
        """Every check probing `fqdn`, and the check of every record answering `fqdn`, is healthy (as
        Route 53 reports it now): with the MQTT canary the record's check is a CALCULATED gate that
        also needs the region's canary alarm OK."""
        probing = all(c.healthy(cid) for c in self._checkers for cid, spec in c.specs.items() if spec.fqdn == fqdn)
        return probing and all(self.healthy(r.health_check_id) for r in self.records()
                               if r.value == fqdn and r.health_check_id)

    def transitions(self) -> list[HealthTransition]:
        return sorted([*(t for c in self._checkers for t in c.transitions), *self._metric_transitions],
                      key=lambda t: t.at)

    def stop(self) -> None:
        for c in self._checkers:
            c.stop()

    def answer(self, client_region: str | None) -> tuple[str | None, str | None, int]:
        """(ATS endpoint, its address, TTL in seconds as served) for a resolver near `client_region`."""
        records = self.records()
        sets = [r.rrset() for r in records]
        picked = select(sets, self.healthy, client_region, self.nearest)
        if picked is None:
            return None, None, 0
        chosen = next(r for r, s in zip(records, sets, strict=True) if s is picked)
        ttl = max(1, round(chosen.ttl * self.scale))
        self.served_ttl = ttl
        endpoint = chosen.value
        with self._lock:
            if self._last.get(client_region, "") != endpoint:
                if client_region in self._last:
                    self.changes.append(DnsChange(time.time(), client_region, self._last[client_region], endpoint))
                self._last[client_region] = endpoint
        return endpoint, self.addresses.get(endpoint), ttl


class DnsServer:
    """UDP DNS for the custom domain (dnslib). The resolver's source address tells where it is."""

    def __init__(self, answers: Route53Answers, region_of_source: Mapping[str, str], host: str = "127.0.0.1") -> None:
        self.answers = answers
        self.region_of_source = dict(region_of_source)
        self.host = host
        self.port = 0
        self._server: Any = None

    def start(self) -> None:
        from dnslib import CNAME, QTYPE, RR, A
        from dnslib.server import BaseResolver, DNSLogger, DNSServer

        outer = self

        class Resolver(BaseResolver):
            def resolve(self, request: Any, handler: Any) -> Any:
                reply = request.reply()
                qname = str(request.q.qname).rstrip(".")
                source = handler.client_address[0]
                if qname.lower() == outer.answers.domain.lower() and request.q.qtype in (QTYPE.A, QTYPE.CNAME):
                    endpoint, address, ttl = outer.answers.answer(outer.region_of_source.get(source))
                    if endpoint:
                        reply.add_answer(RR(qname + ".", QTYPE.CNAME, rdata=CNAME(endpoint + "."), ttl=ttl))
                        if address and request.q.qtype == QTYPE.A:
                            reply.add_answer(RR(endpoint + ".", QTYPE.A, rdata=A(address), ttl=ttl))
                else:
                    reply.header.rcode = 3  # NXDOMAIN: this server knows the custom domain only
                return reply

        port = _free_udp_port(self.host)
        self._server = DNSServer(Resolver(), address=self.host, port=port, logger=DNSLogger("-request,-reply,-truncated"
                                                                                            ",-error,-recv,-send,-data"))
        self._server.start_thread()
        self.port = port

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server.server.server_close()
            if self._server.thread is not None:
                self._server.thread.join(10)


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def query(server: tuple[str, int], name: str, source: str, timeout: float = 1.0) -> tuple[str | None, int]:
    """Resolve `name` (A) through `server` from the resolver address `source`: (address, ttl)."""
    from dnslib import QTYPE, DNSRecord

    q = DNSRecord.question(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(q.pack(), server)
        data, _ = s.recvfrom(4096)
    reply = DNSRecord.parse(data)
    for rr in reply.rr:
        if rr.rtype == QTYPE.A:
            return str(rr.rdata), int(rr.ttl)
    return None, 0
