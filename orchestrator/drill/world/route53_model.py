"""The local world's one Route 53 model: which change batches Route 53 accepts, and what a name answers.

Used by the one resource -> AWS-call mirror (`drill/world/mirror.py`, behind the drill's engine and every
test tier's stand-in provider, checks every batch with `apply_batch` before it reaches moto;
`drill/world/dns.py` answers with `select` and evaluates health checks with `check_healthy`) and by the
tests (`tests/aws_gate.py` checks every batch the ops and engine tiers send; the ops tests ask
`answers`; both hold change propagation with `Propagation`). No other copy of these rules exists
(docs/architecture.md, "The local world").

moto accepts any change batch; real Route 53 checks each change of a batch against the record sets
the earlier changes of the same batch leave, and applies the batch only when every change passes
(all-or-nothing). Sources: Route 53 API reference, ChangeResourceRecordSets and ResourceRecordSet;
boto/boto3#1347 (a role flip refused).

Rules enforced (numbers as in issue 10):
1. CREATE of an existing set (name, type, SetIdentifier) is refused.
2. DELETE must match an existing set exactly (every value).
3. A SetIdentifier needs exactly one routing policy, and a routing policy needs a SetIdentifier
   (Route 53 answers InvalidInput for this one; the others are InvalidChangeBatch).
4. A CNAME shares its name with no record of another type.
5. A simple record cannot sit beside routed records of the same name and type; routed records of
   one name and type cannot mix routing policies.
6. At most one PRIMARY and one SECONDARY failover record per name and type.
7. At most one latency record per Region per name and type.
8. A record's name is the zone's name or inside it: "RRSet with DNS name … is not permitted in zone
   …" (InvalidChangeBatch; getmoto/moto#916 quotes the real answer).
9. No CNAME at the zone apex (Route 53 Developer Guide, "Supported DNS record types", CNAME: "You
   cannot create a CNAME record for the top node of a DNS namespace, also known as the zone apex").
10. A record's HealthCheckId must name an existing health check: NoSuchHealthCheck, HTTP 404
    (Route 53 API reference, ChangeResourceRecordSets, Errors).
Rules 8-10 are checked when `apply_batch` is told the zone's name and the account's health checks
(the gate and the drill's engine always tell it).
11. A batch holds at most 1,000 ResourceRecord elements, an UPSERT's counted twice (Developer Guide,
    "Quotas", "Number of elements and characters in ChangeResourceRecordSets requests"; the answer
    is InvalidChangeBatch "Number of records limit of 1000 exceeded.", as quoted in
    DNSControl/dnscontrol#1114 and kubernetes-sigs/external-dns#2537).
12. The characters of all Value elements of a batch sum to at most 32,000, an UPSERT's counted
    twice (same page; octodns/octodns-route53#17 quotes "character limit of 32000 exceeded").

Selection (`candidates`, `select`, `answers`; Route 53 Developer Guide, "How Amazon Route 53
chooses records when health checking is configured" and "Choosing a routing policy"): a record
without a health check counts as healthy; if none is healthy all count as healthy; failover =
healthy PRIMARY, else healthy SECONDARY, else PRIMARY; latency = the healthy record nearest the
resolver (`answers` gives every one a resolver somewhere may receive).

Health checks (`check_healthy`; Route 53 API reference, HealthCheckConfig): CALCULATED counts
healthy children against `HealthThreshold`; `Inverted` turns any check round; a CLOUDWATCH_METRIC
check follows its alarm (`alarm_health`: INSUFFICIENT_DATA as `InsufficientDataHealthStatus`,
LastKnownStatus healthy for a new check). What a leaf check measures is the caller's: the drill
probes TCP endpoints, reads ARC routing controls and CloudWatch alarms; `Health` (the tests) says
which regions are down: TCP/HTTP(S) follow the region of their endpoint, RECOVERY_CONTROL an ARC
routing control's state, CLOUDWATCH_METRIC its alarm (ALARM while the alarm's region is down, OK
otherwise, unless `alarms` says otherwise).

Health-check timing (`CheckStatus`, `TimedChecks`; Developer Guide, "How Amazon Route 53 determines
whether a health check is healthy"): an endpoint check turns only after FailureThreshold
consecutive results at RequestInterval; the drill's TCP checker and the tests' gate both use it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.drill.world.admission import TokenBucket

POLICY_KEYS = ("Weight", "Region", "Failover", "GeoLocation", "MultiValueAnswer", "GeoProximityLocation",
               "CidrRoutingConfig")
# what identifies a record set; everything else is a value DELETE must match
Key = tuple[str, str, str]


class InvalidChangeBatch(Exception):
    """Route 53's refusal of a batch: `code` is InvalidChangeBatch or InvalidInput, `messages` its list."""

    def __init__(self, messages: list[str], code: str = "InvalidChangeBatch", status: int = 400) -> None:
        super().__init__("; ".join(messages))
        self.code = code
        self.messages = messages
        self.status = status


def fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def key(rrset: Mapping[str, Any]) -> Key:
    return fqdn(rrset["Name"]), rrset["Type"], rrset.get("SetIdentifier") or ""


def policy(rrset: Mapping[str, Any]) -> str | None:
    found = [k for k in POLICY_KEYS if rrset.get(k) not in (None, "")]
    return found[0] if found else None


def normalise(rrset: Mapping[str, Any]) -> dict[str, Any]:
    """The set as Route 53 stores it: lower-case FQDN, values as a sorted list, no empty keys."""
    out = {k: v for k, v in rrset.items() if v not in (None, "", [])}
    out["Name"] = fqdn(rrset["Name"])
    if "ResourceRecords" in out:
        out["ResourceRecords"] = sorted(({"Value": str(r["Value"])} for r in out["ResourceRecords"]),
                                        key=lambda r: r["Value"])
    if "TTL" in out:
        out["TTL"] = int(out["TTL"])
    return out


def _describe(rrset: Mapping[str, Any]) -> str:
    n, t, s = key(rrset)
    return f"[name='{n}', type='{t}'" + (f", set-identifier='{s}'" if s else "") + "]"


def _check_shape(change: Mapping[str, Any]) -> None:
    """Rule 3: SetIdentifier and exactly one routing policy go together."""
    rr = change["ResourceRecordSet"]
    policies = [k for k in POLICY_KEYS if rr.get(k) not in (None, "")]
    set_id = rr.get("SetIdentifier")
    where = f"Change with [Action={change['Action']}, Name={fqdn(rr['Name'])}, Type={rr['Type']}" + \
        (f", SetIdentifier={set_id}]" if set_id else "]")
    if set_id and len(policies) != 1:
        found = "none" if not policies else ", ".join(policies)
        raise InvalidChangeBatch([f"Invalid request: Expected exactly one of [{', '.join(POLICY_KEYS)}], "
                                  f"but found {found} in {where}"], code="InvalidInput")
    if policies and not set_id:
        raise InvalidChangeBatch([f"Invalid request: Missing field 'SetIdentifier' in {where}"],
                                 code="InvalidInput")
    # a set is an alias or has both a TTL and its records (API reference, ResourceRecordSet: "If
    # you're creating or updating an alias resource record set, omit TTL"; a non-alias record must
    # name its TTL: there is no default through the API, re:Post "Route 53 default TTL")
    if not rr.get("AliasTarget") and (rr.get("TTL") is None or not rr.get("ResourceRecords")):
        raise InvalidChangeBatch(["Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and "
                                  f"ResourceRecords]], but found none in {where}"], code="InvalidInput")


def _check_state(state: Mapping[Key, dict[str, Any]], rr: Mapping[str, Any]) -> list[str]:
    """Rules 4-7 for the set `rr` as it stands in `state` (after the change)."""
    name, rtype, set_id = key(rr)
    same_name = [r for k, r in state.items() if k[0] == name and k != (name, rtype, set_id)]
    problems: list[str] = []
    if rtype == "CNAME" and any(r["Type"] != "CNAME" for r in same_name) or \
            rtype != "CNAME" and any(r["Type"] == "CNAME" for r in same_name):
        problems.append(f"RRSet of type CNAME with DNS name {name} is not permitted as it conflicts with "
                        f"other records with the same DNS name in zone")
    siblings = [r for r in same_name if r["Type"] == rtype]
    mine = policy(rr)
    for other in siblings:
        theirs = policy(other)
        if (mine is None) != (theirs is None):
            problems.append(f"RRSet with DNS name {name}, type {rtype} cannot be created as a "
                            f"{'non-' if mine is None else ''}routed record beside "
                            f"{'routed' if mine is None else 'a simple'} records of the same name and type")
            break
        if mine is not None and theirs != mine:
            problems.append(f"RRSet with DNS name {name}, type {rtype}, SetIdentifier {set_id} cannot be "
                            f"created because a {theirs} record exists with the same name and type "
                            f"(routing policies cannot be mixed)")
            break
    if mine == "Failover":
        clash = [r for r in siblings if r.get("Failover") == rr["Failover"]]
        if clash:
            problems.append(f"The resource record set with name {name}, type {rtype} and failover type "
                            f"{rr['Failover']} already exists (SetIdentifier {clash[0].get('SetIdentifier')}): "
                            f"a name and type has at most one PRIMARY and one SECONDARY record")
    if mine == "Region":
        clash = [r for r in siblings if r.get("Region") == rr["Region"]]
        if clash:
            problems.append(f"The resource record set with name {name}, type {rtype} has a latency record for "
                            f"region {rr['Region']} already (SetIdentifier {clash[0].get('SetIdentifier')})")
    return problems


def _check_zone(rr: Mapping[str, Any], zone: str | None, health_checks: Collection[str] | None) -> None:
    """Rules 8-10: inside the zone, no CNAME at its apex, health checks that exist."""
    name = fqdn(rr["Name"])
    if zone is not None:
        apex = fqdn(zone)
        if name != apex and not name.endswith("." + apex):
            raise InvalidChangeBatch([f"RRSet with DNS name {name} is not permitted in zone {apex}"])
        if name == apex and rr["Type"] == "CNAME":
            raise InvalidChangeBatch([f"RRSet of type CNAME with DNS name {name} is not permitted at apex in "
                                      f"zone {apex}"])
    check = rr.get("HealthCheckId")
    if health_checks is not None and check and check not in health_checks:
        raise InvalidChangeBatch([f"No health check exists with the specified ID {check}"],
                                 code="NoSuchHealthCheck", status=404)


MAX_BATCH_RECORDS = 1000  # rule 11: ResourceRecord elements per request (UPSERT: each counts twice)
MAX_BATCH_VALUE_CHARS = 32000  # rule 12: characters of all Value elements per request (UPSERT: twice)


def batch_size(changes: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(ResourceRecord elements, Value characters) of a batch as Route 53 counts them against rules
    11 and 12: an UPSERT's count twice."""
    records = chars = 0
    for change in changes:
        weight = 2 if change.get("Action") == "UPSERT" else 1
        values = [str(r.get("Value", "")) for r in change["ResourceRecordSet"].get("ResourceRecords") or []]
        records += weight * len(values)
        chars += weight * sum(len(v) for v in values)
    return records, chars


def _check_size(changes: Sequence[Mapping[str, Any]]) -> None:
    records, chars = batch_size(changes)
    if records > MAX_BATCH_RECORDS:
        raise InvalidChangeBatch([f"Number of records limit of {MAX_BATCH_RECORDS} exceeded."])
    if chars > MAX_BATCH_VALUE_CHARS:
        raise InvalidChangeBatch([f"Number of characters limit of {MAX_BATCH_VALUE_CHARS} exceeded."])


def apply_batch(current: Iterable[Mapping[str, Any]], changes: Sequence[Mapping[str, Any]], *,
                zone: str | None = None, health_checks: Collection[str] | None = None) -> dict[Key, dict[str, Any]]:
    """The zone's record sets after `changes`, or InvalidChangeBatch (nothing applied). With `zone`
    (its name) and `health_checks` (the ids that exist), rules 8-10 too."""
    state: dict[Key, dict[str, Any]] = {key(r): normalise(r) for r in current}
    if not changes:
        raise InvalidChangeBatch(["Invalid request: the change batch has no changes"], code="InvalidInput")
    _check_size(changes)
    for change in changes:
        action = change["Action"]
        rr = normalise(change["ResourceRecordSet"])
        _check_shape({"Action": action, "ResourceRecordSet": rr})
        if action != "DELETE":  # a DELETE names what exists; it is matched below
            _check_zone(rr, zone, health_checks)
        k = key(rr)
        if action == "CREATE":
            if k in state:
                raise InvalidChangeBatch([f"Tried to create resource record set {_describe(rr)} but it already "
                                          f"exists"])
            state[k] = rr
        elif action == "UPSERT":
            state[k] = rr
        elif action == "DELETE":
            if k not in state:
                raise InvalidChangeBatch([f"Tried to delete resource record set {_describe(rr)} but it was not "
                                          f"found"])
            if state[k] != rr:
                raise InvalidChangeBatch([f"Tried to delete resource record set {_describe(rr)} but the values "
                                          f"provided do not match the current values"])
            del state[k]
            continue
        else:
            raise InvalidChangeBatch([f"Invalid action {action!r}"], code="InvalidInput")
        problems = _check_state(state, rr)
        if problems:
            raise InvalidChangeBatch(problems)
    return state


# -- health checks -------------------------------------------------------------------------------
_ENDPOINT_REGION = re.compile(r"\.iot\.([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com\.?$")


def endpoint_region(host: str) -> str | None:
    m = _ENDPOINT_REGION.search(host or "")
    return m.group(1) if m else None


def alarm_health(state: str | None, insufficient: str, last_known: bool | None) -> bool:
    """A CLOUDWATCH_METRIC check's status for its alarm's state (Route 53 API reference,
    HealthCheckConfig.InsufficientDataHealthStatus: Healthy, Unhealthy or LastKnownStatus). An alarm
    that cannot be read counts as insufficient data; LastKnownStatus of a check that never had a
    status is healthy (Route 53 considers a new health check healthy)."""
    if state == "OK":
        return True
    if state == "ALARM":
        return False
    if insufficient == "Healthy":
        return True
    if insufficient == "Unhealthy":
        return False
    return True if last_known is None else last_known


def check_healthy(check_id: str, config_of: Callable[[str], Mapping[str, Any] | None],
                  measure: Callable[[str, Mapping[str, Any]], bool]) -> bool:
    """Route 53's status of health check `check_id`. `config_of` gives a check's HealthCheckConfig
    (None: it does not exist, KeyError); `measure(id, config)` what a leaf check (any type but
    CALCULATED) measures. CALCULATED: healthy when at least `HealthThreshold` children are healthy
    (HealthCheckConfig.HealthThreshold; all children when unset); `Inverted` turns the result round
    (HealthCheckConfig.Inverted)."""
    config = config_of(check_id)
    if config is None:
        raise KeyError(f"record names health check {check_id}, which does not exist")
    if config.get("Type") == "CALCULATED":
        children = list(config.get("ChildHealthChecks") or [])
        ok = sum(check_healthy(c, config_of, measure) for c in children)
        result = ok >= int(config.get("HealthThreshold", len(children)))
    else:
        result = measure(check_id, config)
    return (not result) if config.get("Inverted") else result


# -- health-check timing ---------------------------------------------------------------------------
# Route 53 Developer Guide, "How Amazon Route 53 determines whether a health check is healthy"
# (dns-failover-determining-health-of-endpoints): each health checker sends a request every
# RequestInterval seconds and considers the endpoint unhealthy only once it fails the number of
# consecutive checks the failure threshold says, and healthy again after as many consecutive
# successes (API reference, HealthCheckConfig.FailureThreshold: "The number of consecutive health
# checks that an endpoint must pass or fail for Amazon Route 53 to change the current status of the
# endpoint from unhealthy to healthy or vice versa", 1-10, default 3; RequestInterval: 10 or 30,
# default 30). A new health check is healthy until then. The local world's checkers all see the
# same endpoint, so the aggregate (healthy when more than 18 % of the checkers say so) is the one
# checker's status. CALCULATED, RECOVERY_CONTROL and CLOUDWATCH_METRIC checks have no checkers of
# their own: they follow their children, routing control or alarm (`check_healthy`).
ENDPOINT_TYPES = ("TCP", "HTTP", "HTTPS", "HTTP_STR_MATCH", "HTTPS_STR_MATCH")
REQUEST_INTERVAL_DEFAULT_S = 30.0
FAILURE_THRESHOLD_DEFAULT = 3


def check_timing(config: Mapping[str, Any]) -> tuple[float, int]:
    """(RequestInterval in seconds, FailureThreshold) of an endpoint check, Route 53's defaults
    where the config names none."""
    return (float(config.get("RequestInterval") or REQUEST_INTERVAL_DEFAULT_S),
            int(config.get("FailureThreshold") or FAILURE_THRESHOLD_DEFAULT))


class CheckStatus:
    """An endpoint check's status as Route 53 decides it from its checker's results: healthy at
    first; `threshold` consecutive results that disagree with the status turn it round; a result
    that agrees with it starts the count again. The one implementation of this rule: the drill's
    TCP checker (`drill/world/dns.py`) feeds it real connects, `TimedChecks` (the tests' gate) the
    state of its outage timeline at each check's time."""

    def __init__(self, threshold: int, healthy: bool = True) -> None:
        self.threshold = max(1, int(threshold))
        self.healthy = healthy
        self.streak = 0
        self.last_ok: bool | None = None  # the latest result (GetHealthCheckStatus's observation)

    def observe(self, ok: bool) -> bool:
        """One check's result; True when it turned the status round."""
        self.last_ok = ok
        if ok == self.healthy:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak < self.threshold:
            return False
        self.healthy, self.streak = ok, 0
        return True


class TimedChecks:
    """Endpoint checks on a clock, for a stand-in without checker threads (the tests' gate): a
    check started at `start(id, at)` is checked every RequestInterval x `time_scale` after it;
    `status(id, config, measure_at)` runs the checks due up to now, each asking
    `measure_at(id, config, t)` what the endpoint answered at its time t, through `CheckStatus`.
    At most `MAX_BACKLOG` checks are run per call (a clock moved far ahead: the earlier ones are
    dropped; FailureThreshold is at most 10, so the status is decided by the latest ones)."""

    MAX_BACKLOG = 1000

    def __init__(self, clock: Callable[[], float], time_scale: float = 1.0) -> None:
        self.clock = clock
        self.time_scale = time_scale
        self._checks: dict[str, tuple[CheckStatus, float]] = {}  # id -> (status, time of its next check)
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self, check_id: str, at: float | None = None) -> None:
        with self._lock:
            self._started[check_id] = self.clock() if at is None else at
            self._checks.pop(check_id, None)

    def forget(self, check_id: str) -> None:
        with self._lock:
            self._started.pop(check_id, None)
            self._checks.pop(check_id, None)

    def state(self, check_id: str, config: Mapping[str, Any],
              measure_at: Callable[[str, Mapping[str, Any], float], bool]) -> CheckStatus:
        interval_s, threshold = check_timing(config)
        step = max(1e-6, interval_s * self.time_scale)
        with self._lock:
            now = self.clock()
            if check_id not in self._checks:
                started = self._started.setdefault(check_id, now)
                self._checks[check_id] = (CheckStatus(threshold), started + step)
            status, due = self._checks[check_id]
            behind = int((now - due) // step)
            if behind > self.MAX_BACKLOG:
                due += (behind - self.MAX_BACKLOG) * step
            while due <= now:
                status.observe(measure_at(check_id, config, due))
                due += step
            self._checks[check_id] = (status, due)
            return status

    def status(self, check_id: str, config: Mapping[str, Any],
               measure_at: Callable[[str, Mapping[str, Any], float], bool]) -> bool:
        return self.state(check_id, config, measure_at).healthy


@dataclass(frozen=True)
class Health:
    """A world for the tests' health checks: regions that do not answer, routing-control states."""

    checks: Mapping[str, Mapping[str, Any]]  # id -> HealthCheckConfig (as created)
    down: frozenset[str] = frozenset()
    controls: Mapping[str, str] = field(default_factory=dict)  # routing control ARN -> On | Off
    alarms: Mapping[str, str] = field(default_factory=dict)  # alarm name -> OK | ALARM | INSUFFICIENT_DATA
    # an endpoint check's status (id, config) -> healthy, as Route 53's checkers have decided it by
    # now (`TimedChecks`); None: settled, i.e. as its endpoint's region is in `down` (what Route 53
    # answers once FailureThreshold checks have counted it)
    endpoint: Callable[[str, Mapping[str, Any]], bool] | None = None

    def healthy(self, check_id: str) -> bool:
        return check_healthy(check_id, self.checks.get, self._measure)

    def _measure(self, check_id: str, config: Mapping[str, Any]) -> bool:
        kind = config.get("Type")
        if kind == "RECOVERY_CONTROL":
            return self.controls.get(config.get("RoutingControlArn", ""), "Off") == "On"
        if kind == "CLOUDWATCH_METRIC":
            alarm = config.get("AlarmIdentifier") or {}
            if not alarm.get("Name"):
                raise KeyError(f"CLOUDWATCH_METRIC health check {check_id} names no alarm")
            state = self.alarms.get(alarm["Name"]) or ("ALARM" if alarm.get("Region") in self.down else "OK")
            return alarm_health(state, config.get("InsufficientDataHealthStatus") or "LastKnownStatus", None)
        if self.endpoint is not None:
            return self.endpoint(check_id, config)
        return endpoint_region(config.get("FullyQualifiedDomainName", "")) not in self.down


# -- selection -------------------------------------------------------------------------------------
def candidates(sets: Sequence[Mapping[str, Any]], healthy: Callable[[str], bool]) -> list[Mapping[str, Any]]:
    """The record sets of one name and type Route 53 may answer with (Developer Guide, "How Amazon
    Route 53 chooses records when health checking is configured"): a simple record always; a record
    without a health check counts as healthy; when no record is healthy, all count as healthy;
    failover: the healthy PRIMARY, else the healthy SECONDARY ("Active-passive failover"); other
    routing policies (latency, weighted, ...): every healthy record, the resolver's place (or the
    weights) picking one of them."""
    if not sets:
        return []
    kind = policy(sets[0])
    if kind is None:
        return list(sets)
    considered = [r for r in sets if not r.get("HealthCheckId") or healthy(r["HealthCheckId"])] or list(sets)
    if kind == "Failover":
        for role in ("PRIMARY", "SECONDARY"):
            chosen = [r for r in considered if r.get("Failover") == role]
            if chosen:
                return chosen[:1]
        return []
    return considered


def select(sets: Sequence[Mapping[str, Any]], healthy: Callable[[str], bool], client_region: str | None,
           nearest: Callable[[str | None, str], float]) -> Mapping[str, Any] | None:
    """The record set a resolver near `client_region` receives: among `candidates`, the one whose
    Region has the lowest latency from it (`nearest`, the local world's stand-in for Route 53's
    latency measurements; "Latency-based routing")."""
    found = candidates(sets, healthy)
    return min(found, key=lambda r: nearest(client_region, str(r.get("Region") or ""))) if found else None


def record_value(rrset: Mapping[str, Any]) -> str:
    return str(rrset["ResourceRecords"][0]["Value"]).rstrip(".")


def answers(records: Iterable[Mapping[str, Any]], name: str, health: Health,
            rtype: str = "CNAME") -> frozenset[str]:
    """The values resolvers may receive for `name` (several for latency: depends on where they are)."""
    sets = [r for r in records if fqdn(r["Name"]) == fqdn(name) and r["Type"] == rtype]
    return frozenset(record_value(r) for r in candidates(sets, health.healthy))


def answer_regions(records: Iterable[Mapping[str, Any]], name: str, health: Health) -> frozenset[str]:
    """`answers` as regions (of the IoT endpoints answered)."""
    return frozenset(endpoint_region(v) or v for v in answers(records, name, health))


def scenarios(records: list[Mapping[str, Any]], name: str, checks: Mapping[str, Mapping[str, Any]],
              regions: Iterable[str], controls: Mapping[str, str] | None = None) -> dict[str, frozenset[str]]:
    """What the name answers with every region up ("all") and with each region down in turn."""
    out = {"all": answer_regions(records, name, Health(checks, frozenset(), controls or {}))}
    for region in regions:
        out[f"{region} down"] = answer_regions(records, name, Health(checks, frozenset({region}), controls or {}))
    return out


# -- change propagation ----------------------------------------------------------------------------
# Route 53 Developer Guide, "Editing records": "Changes generally propagate to all Route 53 name
# servers within 60 seconds"; the only way to know is GetChange (Status PENDING until the change
# has reached every authoritative server, then INSYNC; API reference, ChangeResourceRecordSets and
# GetChange). The local world takes the upper end of the normal case, on the drill's time scale.
PROPAGATION_S = 60.0
PRIOR_REQUEST = "The request was rejected because Route 53 was still processing a prior request."


@dataclass
class _Change:
    id: str
    zone: str
    insync_at: float
    before: dict[Key, Mapping[str, Any] | None]  # each set the change touched, as it was (None: absent)


class Propagation:
    """Route 53's change propagation, for a stand-in that (like moto) applies a batch at once:
    `submit` records a batch before the stand-in applies it and `bind` answers the accepted batch's
    ChangeInfo as PENDING; `status` is PENDING
    until `delay_s` after the submission, then INSYNC (GetChange); `served` is what Route 53's name
    servers answer from meanwhile: the zone's listing with every set a still-PENDING change touched
    put back as it was before (the strictest reading of "within 60 seconds": no name server has
    the change before it is INSYNC). `refuse_prior` answers PriorRequestNotComplete (HTTP 400) for
    a batch that touches a set a PENDING change of the same zone touched: "If Route 53 can't process
    a request before the next request for the same hosted zone, it rejects subsequent requests"
    (AWS Knowledge Center, "route-53-avoid-throttling-errors"; API reference, ChangeResourceRecordSets,
    Errors); narrowed to the same record sets (the documentation names no duration). Used by the
    drill's engine (`drill/world/engine.py`, `PropagatingRoute53`) and the tests' gate (`tests/aws_gate.py`)."""

    def __init__(self, delay_s: float = PROPAGATION_S, clock: Callable[[], float] | None = None) -> None:
        self.delay_s = delay_s
        self.clock: Callable[[], float] = clock or time.monotonic
        self._changes: dict[str, _Change] = {}
        self._order: list[str] = []
        self._submitted = 0
        self._lock = threading.Lock()

    @staticmethod
    def zone_of(zone_id: str) -> str:
        return zone_id.rstrip("/").split("/")[-1]

    @staticmethod
    def change_of(change_id: str) -> str:
        return change_id.rstrip("/").split("/")[-1]

    def _pending(self, zone: str, now: float) -> list[_Change]:
        return [c for c in (self._changes[i] for i in self._order) if c.zone == zone and c.insync_at > now]

    def refuse_prior(self, zone_id: str, keys: Collection[Key]) -> None:
        zone = self.zone_of(zone_id)
        with self._lock:
            if any(set(c.before) & set(keys) for c in self._pending(zone, self.clock())):
                raise InvalidChangeBatch([PRIOR_REQUEST], code="PriorRequestNotComplete")

    def submit(self, zone_id: str, before: Iterable[Mapping[str, Any]], keys: Collection[Key]) -> str:
        """Record a batch about to be applied (`before`: the zone's listing now; `keys`: the sets it
        names): from now on its sets are served as they were until it is INSYNC. Returns a token
        for `bind` (the stand-in accepted it) or `cancel` (it refused it)."""
        listed = {key(r): r for r in before}
        with self._lock:
            self._submitted += 1
            token = f"submitted-{self._submitted}"
            self._changes[token] = _Change(token, self.zone_of(zone_id), self.clock() + self.delay_s,
                                           {k: listed.get(k) for k in keys})
            self._order.append(token)
        return token

    def bind(self, token: str, info: Mapping[str, Any]) -> dict[str, Any]:
        """The accepted batch's ChangeInfo (the stand-in's id) as Route 53 answers it: PENDING."""
        change_id = self.change_of(str(info["Id"]))
        with self._lock:
            change = self._changes.pop(token)
            change.id = change_id
            self._changes[change_id] = change
            self._order[self._order.index(token)] = change_id
        return {**info, "Status": self.status(change_id)}

    def cancel(self, token: str) -> None:
        with self._lock:
            self._changes.pop(token, None)
            if token in self._order:
                self._order.remove(token)

    def knows(self, change_id: str) -> bool:
        return self.change_of(change_id) in self._changes

    def status(self, change_id: str) -> str:
        change = self._changes[self.change_of(change_id)]
        return "INSYNC" if self.clock() >= change.insync_at else "PENDING"

    def settled(self, zone_id: str) -> int:
        """How many of the zone's changes are INSYNC now (a reader's cache key)."""
        zone, now = self.zone_of(zone_id), self.clock()
        with self._lock:
            return sum(1 for c in self._changes.values() if c.zone == zone and c.insync_at <= now)

    def served(self, zone_id: str, listing: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """What the zone's name servers answer from: `listing` (the zone as the API lists it now)
        without the effect of any change still PENDING."""
        state: dict[Key, Mapping[str, Any]] = {key(r): r for r in listing}
        zone = self.zone_of(zone_id)
        with self._lock:
            pending = self._pending(zone, self.clock())
        for change in reversed(pending):  # newest first: each set ends as the oldest PENDING change found it
            for k, old in change.before.items():
                if old is None:
                    state.pop(k, None)
                else:
                    state[k] = old
        return list(state.values())


# -- request-rate throttling -------------------------------------------------------------------------
# Route 53 Developer Guide, "Throttling for Amazon Route 53 API requests" (throttling-api-requests;
# the updated limits, announced in "Introducing change-based throttling for Amazon Route 53 APIs":
# the default request rate went from 5 to 10 per second): Route 53 throttles per account with token
# buckets. Every request takes a token from the account's bucket (all Route 53 API operations
# combined: maximum capacity 50, refill 10 per second) AND from its operation's own bucket (any
# operation not listed: 50 / 10 per second; the ones listed below differ); when either is empty the
# request is refused with HTTP 400, Code "Throttling", Message "Rate exceeded". Refill tokens can be
# used as they arrive; a full bucket drops them. The page's second limit, change throughput (record
# changes per second across the actions that modify DNS data), is not modelled: its numbers are not
# in the copy of the page we could read (docs/field-notes-route53-arc.md).
THROTTLED = "Rate exceeded"
ACCOUNT_CAPACITY = 50.0  # all Route 53 API operations combined (the account's bucket): maximum capacity
ACCOUNT_REFILL_PER_S = 10.0  # ... and refill per second
OPERATION_CAPACITY_DEFAULT = 50.0  # any operation the page does not list: its own bucket's capacity
OPERATION_REFILL_PER_S_DEFAULT = 10.0  # ... and refill per second
# the page's "Request rate limits per API action": (maximum capacity, refill per second)
OPERATION_CAPACITY: dict[str, float] = {
    "AssociateVPCWithHostedZone": 20.0, "ChangeCidrCollection": 40.0, "CreateCidrCollection": 40.0,
    "CreateHealthCheck": 50.0, "CreateHostedZone": 40.0, "CreateReusableDelegationSet": 40.0,
    "CreateTrafficPolicyInstance": 1.0, "DeleteCidrCollection": 40.0, "DeleteHealthCheck": 15.0,
    "DeleteHostedZone": 40.0, "DeleteReusableDelegationSet": 40.0, "DeleteTrafficPolicyInstance": 1.0,
    "DisassociateVPCFromHostedZone": 10.0, "GetHealthCheckLastFailureReason": 4.0, "GetHealthCheckStatus": 4.0,
}
OPERATION_REFILL_PER_S: dict[str, float] = {
    "AssociateVPCWithHostedZone": 5.0, "ChangeCidrCollection": 5.0, "CreateCidrCollection": 5.0,
    "CreateHealthCheck": 0.5, "CreateHostedZone": 2.0, "CreateReusableDelegationSet": 2.0,
    "CreateTrafficPolicyInstance": 1.0, "DeleteCidrCollection": 5.0, "DeleteHealthCheck": 3.0,
    "DeleteHostedZone": 5.0, "DeleteReusableDelegationSet": 5.0, "DeleteTrafficPolicyInstance": 1.0,
    "DisassociateVPCFromHostedZone": 5.0, "GetHealthCheckLastFailureReason": 1.0, "GetHealthCheckStatus": 1.0,
}


class Throttled(Exception):
    """Route 53's refusal of a request over the account's or the operation's rate."""

    code = "Throttling"
    status = 400

    def __init__(self, operation: str) -> None:
        super().__init__(THROTTLED)
        self.operation = operation


class RequestRate:
    """Route 53's request-rate token buckets for one account, on a time scale: `take(operation)` is
    one request (raises `Throttled` when the account's or the operation's bucket is empty; a
    refused request takes no token). `time_scale` is the drill's (1.0: AWS's seconds; 0.1: ten AWS
    seconds pass in one second, so the buckets refill ten times as fast). `enabled=False` accepts
    everything (a test that measures something else may say so). Used by the tests' gate
    (`tests/aws_gate.py`) and the drill's engine (`drill/world/engine.py`, `PropagatingRoute53`)."""

    def __init__(self, time_scale: float = 1.0, clock: Callable[[], float] | None = None, *,
                 enabled: bool = True) -> None:
        self.time_scale = time_scale
        self.clock: Callable[[], float] = clock or time.monotonic
        self.enabled = enabled
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self.accepted = 0
        self.throttled: list[str] = []  # the operations refused, in order

    def _bucket(self, name: str, limits: tuple[float, float]) -> TokenBucket:
        if name not in self._buckets:  # (capacity, refill per AWS second): full at its first request
            self._buckets[name] = TokenBucket(rate=limits[1] / self.time_scale, burst=limits[0])
        return self._buckets[name]

    def take(self, operation: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = self.clock()
            account = self._bucket("", (ACCOUNT_CAPACITY, ACCOUNT_REFILL_PER_S))
            own = self._bucket(operation, (OPERATION_CAPACITY.get(operation, OPERATION_CAPACITY_DEFAULT),
                                           OPERATION_REFILL_PER_S.get(operation, OPERATION_REFILL_PER_S_DEFAULT)))
            if account.level(now) < 1.0 or own.level(now) < 1.0:
                self.throttled.append(operation)
                raise Throttled(operation)
            account.tokens -= 1.0
            own.tokens -= 1.0
            self.accepted += 1
