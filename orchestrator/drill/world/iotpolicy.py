"""IoT Core's authoriser for the drill's brokers: what a device may do, from the region's registry.

AWS IoT Core decides each MQTT action from the policies attached to the certificate the device
presented (IoT Developer Guide, "AWS IoT Core policies", "AWS IoT Core policy actions", "AWS IoT
Core action resources", "Policy variables"; the rules with their sources are in
docs/field-notes-route53-arc.md, IoT section):

- a connection needs an ACTIVE certificate (a deactivated or revoked one is refused at once, also
  for the next publish of a connection already open) and, on a custom domain, the SNI extension;
- iot:Connect is checked against `arn:<partition>:iot:<region>:<account>:client/<clientId>`;
  iot:Publish and iot:Receive against `…:topic/<topic name>`; iot:Subscribe against
  `…:topicfilter/<topic filter>`; the region and account are those of the broker, so a policy
  naming another region's ARNs grants nothing here;
- any explicit Deny wins, else any Allow, else the action is denied (default deny);
- `*` and `?` are wildcards in Action and Resource (actions ignore case); MQTT's `+` and `#` are
  literal characters in a policy;
- the policy variables `${iot:ClientId}` and `${iot:Connection.Thing.ThingName}` (the thing named
  by the client id, when that thing is attached to the certificate; else unresolved),
  `${iot:Connection.Thing.IsAttached}`; a statement whose resource holds an unresolved or unknown
  variable matches nothing;
- conditions with Bool, StringEquals and StringLike on those variables (others are refused as
  not modelled);
- QoS 2 is not supported by IoT Core: a publish or subscribe asking for it is refused.

Pure evaluation (`evaluate`, `resource_arn`) is separate from the registry reads (`Authoriser`), so
the rules are unit-tested without a broker.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Action(str, Enum):
    CONNECT = "iot:Connect"
    PUBLISH = "iot:Publish"
    SUBSCRIBE = "iot:Subscribe"
    RECEIVE = "iot:Receive"
    ASSUME_ROLE = "iot:AssumeRoleWithCertificate"  # the credentials provider (drill/world/device_services.py)


# what each action's resource is called in an ARN
_RESOURCE_KIND = {Action.CONNECT: "client", Action.PUBLISH: "topic", Action.RECEIVE: "topic",
                  Action.SUBSCRIBE: "topicfilter", Action.ASSUME_ROLE: "rolealias"}
_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class PolicyError(ValueError):
    """A policy document the drill's authoriser does not model (it refuses rather than guesses)."""


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (operator, key, values)


@dataclass(frozen=True)
class Principal:
    """Who is asking: the connection's certificate, client id and the thing it resolves to."""
    region: str
    account: str
    client_id: str
    thing_name: str | None = None  # the client id, when a thing of that name is attached
    partition: str = "aws"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def parse(document: str | Mapping[str, Any]) -> tuple[Statement, ...]:
    doc = json.loads(document) if isinstance(document, str) else document
    raw = doc.get("Statement", [])
    statements = [raw] if isinstance(raw, Mapping) else list(raw)
    out = []
    for s in statements:
        unsupported = sorted(set(s) & {"NotAction", "NotResource", "Principal", "NotPrincipal"})
        if unsupported:
            raise PolicyError(f"policy element {', '.join(unsupported)} is not modelled by the drill's authoriser")
        effect = s.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError(f"policy statement effect must be Allow or Deny, not {effect!r}")
        conditions = []
        for operator, tests in (s.get("Condition") or {}).items():
            if operator not in _CONDITIONS:
                raise PolicyError(f"condition operator {operator} is not modelled by the drill's authoriser")
            for key, values in tests.items():
                conditions.append((operator, key, _strings(values)))
        out.append(Statement(effect, _strings(s.get("Action")), _strings(s.get("Resource")), tuple(conditions)))
    return tuple(out)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


# IAM's condition operators the authoriser models; a key without a value makes the test false
_CONDITIONS: dict[str, Callable[[str, str], bool]] = {
    "Bool": lambda value, wanted: value.lower() == wanted.lower(),
    "StringEquals": lambda value, wanted: value == wanted,
    "StringLike": lambda value, wanted: _matches(wanted, value),
}


def _conditions_hold(statement: Statement, principal: Principal) -> bool:
    for operator, key, wanted in statement.conditions:
        value = _variables(principal).get(key)
        if value is None:
            return False
        test = _CONDITIONS[operator]
        if not any(test(value, w) for w in wanted):
            return False
    return True


def _variables(principal: Principal) -> dict[str, str | None]:
    return {
        "iot:ClientId": principal.client_id,
        "iot:Connection.Thing.ThingName": principal.thing_name,
        "iot:Connection.Thing.IsAttached": "true" if principal.thing_name else "false",
    }


def resource_arn(action: Action, principal: Principal, target: str) -> str:
    """The resource IoT checks `action` against: the client id for Connect, the topic name for
    Publish/Receive, the topic filter for Subscribe (`target`)."""
    return (f"arn:{principal.partition}:iot:{principal.region}:{principal.account}:"
            f"{_RESOURCE_KIND[action]}/{target}")


def substitute(pattern: str, principal: Principal) -> str | None:
    """The pattern with its policy variables resolved; None when one cannot be."""
    values = _variables(principal)
    missing = False

    def one(m: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(m.group(1))
        if value is None:
            missing = True
            return ""
        return value

    out = _VARIABLE.sub(one, pattern)
    return None if missing else out


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    # IAM-style wildcards: `*` any run of characters (slashes too), `?` one; nothing else special
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def evaluate(statements: Iterable[Statement], action: Action, target: str, principal: Principal) -> Decision:
    """Deny wins over Allow, and nothing allowed is denied."""
    arn = resource_arn(action, principal, target)
    allowed = False
    for s in statements:
        if not any(_matches(a, action.value, ignore_case=True) for a in s.actions):
            continue
        resources = (substitute(r, principal) for r in s.resources)
        if not any(r is not None and _matches(r, arn) for r in resources):
            continue
        if not _conditions_hold(s, principal):
            continue
        if s.effect == "Deny":
            return Decision(False, f"{action.value} on {arn} is explicitly denied")
        allowed = True
    if allowed:
        return Decision(True, f"{action.value} on {arn} is allowed")
    return Decision(False, f"no attached policy allows {action.value} on {arn}")


def topic_filter_valid(topic_filter: str) -> bool:
    """MQTT's rules for a filter: `#` only last and alone in its level, `+` alone in its level."""
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return bool(topic_filter)


@dataclass
class Session:
    """One MQTT connection as the authoriser knows it."""
    certificate_id: str
    certificate_arn: str
    principal: Principal
    statements: tuple[Statement, ...] = field(default_factory=tuple)
    read_at: float = field(default_factory=time.monotonic)  # when `statements` were read from the registry
    # views of the certificate's policies the authoriser saw before the current one, each with the
    # time until which it still bounds what is allowed (a grant is not effective before then)
    priors: tuple[tuple[tuple[Statement, ...], Principal, float], ...] = ()


class Authoriser:
    """Decides a region's MQTT actions from its IoT registry (`iot`: a boto3 IoT client of that
    region). The certificate's status is read at CONNECT and again for every publish, subscribe and
    delivery, so a deactivated or revoked certificate is refused at once; the attached policies are
    read at CONNECT, and `refresh` re-reads them for an open session (the front door does it once a
    session's copy is as old as IoT Core's policy cache: `iotdoor.POLICY_CACHE_S`). `status_of` (certificate id -> its
    status, None when it does not know) answers the per-packet reads from a listing at most a second
    old (`iotdoor.RegionDoor`'s watch) instead of one DescribeCertificate per packet; CONNECT always
    asks the registry.

    A grant is cached as a revoke is (IoT Developer Guide, "AWS IoT Core policies": "Changes made to
    a policy can take anywhere between 6 and 8 minutes to become effective because of how AWS IoT
    caches the policy documents. That is, it may take a few minutes to access a resource that has
    recently been granted access"; the page names no difference between open connections and new
    CONNECTs). With `grant_delay_s` (the door: 8 minutes, the upper end, on the drill's time scale)
    the authoriser remembers, per certificate and client id, the view of the policies it read last;
    when a read (a CONNECT, or `refresh` of an open connection) finds a different view, the old one
    keeps bounding every decision for `grant_delay_s` after the change was seen: an action is
    allowed only when the new view AND every such earlier view allow it. A revoke still takes
    effect at the read that sees it (stricter than AWS, which may keep granting for minutes). The
    first view of a certificate the authoriser has never seen is not delayed (nothing is cached for it)."""

    def __init__(self, iot: Any, region: str, account: str, *, custom_domain: str | None = None,
                 partition: str = "aws", status_of: Callable[[str], str | None] | None = None,
                 grant_delay_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.grant_delay_s = grant_delay_s
        self.clock = clock
        # (certificate ARN, client id) -> the last view read (statements, thing) and the earlier views
        # still bounding decisions (statements, principal, until)
        self._views: dict[tuple[str, str], tuple[tuple[Statement, ...], str | None]] = {}
        self._priors: dict[tuple[str, str], list[tuple[tuple[Statement, ...], Principal, float]]] = {}
        self.iot = iot
        self.status_of = status_of
        self.region = region
        self.account = account
        self.custom_domain = custom_domain.lower().rstrip(".") if custom_domain else None
        self.partition = partition
        self._lock = threading.Lock()

    # -- the registry ------------------------------------------------------------------------------
    def _certificate(self, certificate_id: str) -> Mapping[str, Any] | None:
        try:
            return self.iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
        except Exception as exc:  # noqa: BLE001 - a certificate IoT does not know is refused
            if "ResourceNotFound" in str(exc):
                return None
            raise

    def _pages(self, call: Callable[..., Any], key: str, **kwargs: Any) -> list[Any]:
        out: list[Any] = []
        marker: str | None = None
        while True:
            page = call(**kwargs, **({"marker": marker} if marker else {}))
            out.extend(page.get(key, []))
            marker = page.get("nextMarker")
            if not marker:
                return out

    def _statements(self, certificate_arn: str) -> tuple[Statement, ...]:
        names = [p["policyName"] for p in self._pages(self.iot.list_attached_policies, "policies",
                                                      target=certificate_arn)]
        out: list[Statement] = []
        for name in names:
            out.extend(parse(self.iot.get_policy(policyName=name)["policyDocument"]))
        return tuple(out)

    def _thing(self, certificate_arn: str, client_id: str) -> str | None:
        things: list[str] = []
        token: str | None = None
        while True:
            page = self.iot.list_principal_things(principal=certificate_arn, **({"nextToken": token} if token else {}))
            things.extend(page.get("things", []))
            token = page.get("nextToken")
            if not token:
                break
        return client_id if client_id in things else None

    def _active(self, certificate_id: str) -> Decision:
        return self._status(certificate_id, self._certificate(certificate_id))

    def _status(self, certificate_id: str, cert: Mapping[str, Any] | None) -> Decision:
        if cert is None:
            return Decision(False, f"certificate {certificate_id} is not registered in {self.region}")
        if cert.get("status") != "ACTIVE":
            return Decision(False, f"certificate {certificate_id} is {cert.get('status')}")
        return Decision(True, "active")

    # -- MQTT ---------------------------------------------------------------------------------------
    def connect(self, certificate_id: str, client_id: str, sni: str | None) -> tuple[Decision, Session | None]:
        if self.custom_domain and not sni:
            return Decision(False, f"no SNI: a connection to the custom domain {self.custom_domain} must send "
                                   "the TLS SNI extension"), None
        if self.custom_domain and sni and sni.lower().rstrip(".") != self.custom_domain:
            return Decision(False, f"SNI {sni} is no domain this endpoint serves"), None
        cert = self._certificate(certificate_id)  # one DescribeCertificate: its status and its ARN
        active = self._status(certificate_id, cert)
        if not active or cert is None:
            return active, None
        arn = str(cert.get("certificateArn", ""))
        principal = Principal(self.region, self.account, client_id, self._thing(arn, client_id), self.partition)
        session = Session(certificate_id, arn, principal, self._statements(arn))
        session.priors = self._observe(session)
        decision = self._bounded(session, evaluate(session.statements, Action.CONNECT, client_id, principal),
                                 Action.CONNECT, client_id)
        return decision, (session if decision else None)

    def refresh(self, session: Session) -> None:
        """Re-read the session's policies and thing attachment (after a registry change)."""
        thing = self._thing(session.certificate_arn, session.principal.client_id)
        session.principal = Principal(self.region, self.account, session.principal.client_id, thing, self.partition)
        session.statements = self._statements(session.certificate_arn)
        session.read_at = time.monotonic()
        session.priors = self._observe(session)

    def _observe(self, session: Session) -> tuple[tuple[tuple[Statement, ...], Principal, float], ...]:
        """Record the view just read for the session's certificate and client id; the earlier views
        that still bound its decisions (see the class)."""
        if self.grant_delay_s <= 0:
            return ()
        key, now = (session.certificate_arn, session.principal.client_id), self.clock()
        view = (session.statements, session.principal.thing_name)
        with self._lock:
            last = self._views.get(key)
            priors = [p for p in self._priors.get(key, []) if p[2] > now]
            if last is not None and last != view:
                before = Principal(self.region, self.account, key[1], last[1], self.partition)
                priors.append((last[0], before, now + self.grant_delay_s))
            self._views[key] = view
            self._priors[key] = priors
            return tuple(priors)

    def _bounded(self, session: Session, decision: Decision, action: Action, target: str) -> Decision:
        """`decision` unless an earlier view still in its cache period refuses the action."""
        if not decision or not session.priors:
            return decision
        now = self.clock()
        for statements, principal, until in session.priors:
            if until <= now:
                continue
            earlier = evaluate(statements, action, target, principal)
            if not earlier:
                return Decision(False, f"{earlier.reason} (a policy change granting it was seen; IoT Core's "
                                       f"policy cache makes it effective in {until - now:.0f} s)")
        return decision

    def publish(self, session: Session, topic: str, qos: int = 0) -> Decision:
        if qos > 1:
            return Decision(False, "QoS 2 is not supported by AWS IoT Core")
        if not topic or "+" in topic or "#" in topic:
            return Decision(False, f"{topic!r} is not a topic name")
        return self._action(session, Action.PUBLISH, topic)

    def subscribe(self, session: Session, topic_filter: str, qos: int = 0) -> Decision:
        if qos > 1:
            return Decision(False, "QoS 2 is not supported by AWS IoT Core")
        if not topic_filter_valid(topic_filter):
            return Decision(False, f"{topic_filter!r} is not a topic filter")
        return self._action(session, Action.SUBSCRIBE, topic_filter)

    def receive(self, session: Session, topic: str) -> Decision:
        return self._action(session, Action.RECEIVE, topic)

    def _action(self, session: Session, action: Action, target: str) -> Decision:
        status = self.status_of(session.certificate_id) if self.status_of is not None else None
        if status is not None:
            active = Decision(status == "ACTIVE", f"certificate {session.certificate_id} is {status}")
        else:
            active = self._active(session.certificate_id)
        if not active:
            return active
        return self._bounded(session, evaluate(session.statements, action, target, session.principal),
                             action, target)


__all__ = ["Action", "Authoriser", "Decision", "PolicyError", "Principal", "Session", "Statement",
           "evaluate", "parse", "resource_arn", "substitute", "topic_filter_valid"]
