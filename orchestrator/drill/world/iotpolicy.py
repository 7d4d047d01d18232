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
- QoS 2 is not supported by IoT Core: a publish or subscribe asking for it is refused;
- NotAction / NotResource apply a statement to every action / resource they do not name; under a
  Version other than 2012-10-17 (or none) `${…}` is literal text, not a variable.

One parser (`parse_document`) reads a document for both the world's CreatePolicy /
CreatePolicyVersion (iot_plane.py: what AWS refuses as MalformedPolicyException, each rule with its
source) and the authoriser (`parse`: the same statements, or PolicyError for what it does not model).

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


class MalformedPolicy(PolicyError):
    """A document AWS IoT refuses at CreatePolicy / CreatePolicyVersion: MalformedPolicyException,
    "The policy documentation is not valid" (HTTP 400; AWS IoT API reference, CreatePolicy, Errors)."""


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]  # with `not_action`, the actions the statement does NOT apply to
    resources: tuple[str, ...]  # with `not_resource`, the resources it does NOT apply to
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (operator, key, values)
    not_action: bool = False
    not_resource: bool = False
    # policy variables are recognised only under Version 2012-10-17; otherwise `${…}` is literal text
    variables: bool = True
    principal: bool = False  # the statement has a Principal or NotPrincipal element


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


# -- the one parser: AWS's grammar (the validator) and the authoriser's statements ----------------
# IoT policies "are JSON documents. They follow the same conventions as IAM policies" (IoT Developer
# Guide, "AWS IoT Core policies"), so the rules below are IAM's policy grammar ("Grammar of the IAM
# JSON policy language", IAM User Guide) where the IoT pages confirm it or do not contradict it. What
# the pages do not settle is NOT refused here and is written down as unknown in
# docs/field-notes-iot.md ("Policy documents"): unknown `iot:` action names, ARNs of other services or
# of unknown IoT resource types, unknown policy variables, duplicate Sids, a Principal element.

# <version_block> = "Version" : ("2008-10-17" | "2012-10-17"); "The only allowed values are these";
# without a Version element "the value defaults to 2008-10-17" (IAM JSON policy elements: Version)
POLICY_VERSIONS = ("2012-10-17", "2008-10-17")
# "If your policy includes policy variables, you must include a Version element and set it to
# 2012-10-17. If you don't ..., variables ... won't be recognized as variables and will instead be
# treated as literal strings in the policy" (IAM JSON policy elements: Version)
VARIABLES_VERSION = "2012-10-17"
# <policy> = { <version_block?> <id_block?> <statement_block> } (IAM grammar)
_POLICY_ELEMENTS = frozenset({"Version", "Id", "Statement"})
# <statement> = { <sid_block?> <principal_block?> "Effect" <action_block> <resource_block>
# <condition_block?> }, with ("Principal" | "NotPrincipal"), ("Action" | "NotAction"),
# ("Resource" | "NotResource") (IAM grammar)
_STATEMENT_ELEMENTS = frozenset({"Sid", "Principal", "NotPrincipal", "Effect", "Action", "NotAction",
                                 "Resource", "NotResource", "Condition"})
# "you cannot use both Action and NotAction in the same policy statement. Other pairs that are
# mutually exclusive include Principal/NotPrincipal and Resource/NotResource" (IAM JSON policy
# element reference)
_EXCLUSIVE = (("Action", "NotAction"), ("Resource", "NotResource"), ("Principal", "NotPrincipal"))
# <condition_type_string> (IAM grammar; IAM JSON policy elements: Condition operators), each also with
# the `IfExists` suffix (but Null), and the set operators' `ForAllValues:` / `ForAnyValue:` prefixes
# (IAM User Guide, "Creating a condition with multiple keys or values")
CONDITION_OPERATORS = frozenset({
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike",
    "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
    "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals", "DateNotEquals", "DateLessThan",
    "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals", "Bool", "BinaryEquals", "IpAddress",
    "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Null",
})
# <action_string> = "*" | "<service-namespace>:<action-name>" (IAM grammar: a service namespace, a
# colon and the action's name, which may hold the wildcards `*` and `?`)
_ACTION = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+")


def _operator_known(operator: str) -> bool:
    base = operator.split(":", 1)[1] if operator.startswith(("ForAllValues:", "ForAnyValue:")) else operator
    if base.endswith("IfExists") and base != "NullIfExists":
        base = base[: -len("IfExists")]
    return base in CONDITION_OPERATORS


def _resource_valid(resource: str) -> bool:
    # "*" or an ARN: "To specify a resource for an AWS IoT Core policy action, use the Amazon Resource
    # Name (ARN) of the resource. All resource ARNs follow the following format:
    # arn:partition:iot:region:AWS-account-ID:Resource-type/Resource-name" (IoT Developer Guide, "AWS
    # IoT Core action resources"): six colon-separated fields, the resource last (it may hold colons).
    # Which services' ARNs IoT takes is not documented (IoT policies also name Greengrass ARNs): any.
    if resource == "*":
        return True
    parts = resource.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and all(parts[i] for i in (1, 2, 5))


def _string_list(statement: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = statement[key]
    values = [value] if isinstance(value, str) else value
    # "Arrays can take one or more values" (IAM grammar, "The policy language and JSON")
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise MalformedPolicy(f"{where}: {key} must be a non-empty string or a non-empty list of strings")
    return tuple(values)


def _scalar(value: str | float | bool) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)  # a JSON true is "true"


def parse_document(document: str | Mapping[str, Any]) -> tuple[Statement, ...]:
    """The statements of a policy document, or MalformedPolicy for a document AWS IoT refuses.

    The one parser: the world's CreatePolicy / CreatePolicyVersion (iot_plane.py) validate with it,
    and the authoriser (`parse`) evaluates what it returns."""
    if isinstance(document, str):
        try:
            doc = json.loads(document)  # "The JSON document that describes the policy" (CreatePolicy)
        except ValueError as exc:
            raise MalformedPolicy(f"the policy document is not JSON: {exc}") from None
    else:
        doc = document
    if not isinstance(doc, Mapping):
        raise MalformedPolicy("the policy document must be a JSON object")  # <policy> = { … }
    unknown = sorted(set(doc) - _POLICY_ELEMENTS)
    if unknown:
        raise MalformedPolicy(f"unknown policy element(s) {', '.join(unknown)}; a policy has Version, Id, Statement")
    version = doc.get("Version", "2008-10-17")
    if version not in POLICY_VERSIONS:
        raise MalformedPolicy(f"Version {version!r}: the only allowed values are {' and '.join(POLICY_VERSIONS)}")
    if "Statement" not in doc:
        raise MalformedPolicy("the policy has no Statement")  # <statement_block> is not optional
    raw = doc["Statement"]
    statements = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(statements, list) or not statements:
        raise MalformedPolicy("Statement must be a statement or a non-empty list of statements")
    return tuple(_statement(s, f"statement {n}", version) for n, s in enumerate(statements, 1))


def _statement(s: Any, where: str, version: str) -> Statement:
    if not isinstance(s, Mapping):
        raise MalformedPolicy(f"{where} is not a JSON object")
    unknown = sorted(set(s) - _STATEMENT_ELEMENTS)
    if unknown:
        raise MalformedPolicy(f"{where}: unknown element(s) {', '.join(unknown)}")
    for a, b in _EXCLUSIVE:
        if a in s and b in s:
            raise MalformedPolicy(f"{where}: {a} and {b} cannot both be in one statement")
    effect = s.get("Effect")
    if effect not in ("Allow", "Deny"):  # "Effect" : ("Allow" | "Deny") (IAM grammar)
        raise MalformedPolicy(f"{where}: Effect must be Allow or Deny, not {effect!r}")
    if "Sid" in s and not isinstance(s["Sid"], str):
        raise MalformedPolicy(f"{where}: Sid must be a string")
    # "Each statement contains: Effect, ... Action, ... Resource" (IoT Developer Guide, "AWS IoT Core
    # policies"); the grammar's <action_block> and <resource_block>
    action_key = "NotAction" if "NotAction" in s else "Action"
    resource_key = "NotResource" if "NotResource" in s else "Resource"
    for key, either in ((action_key, "Action or NotAction"), (resource_key, "Resource or NotResource")):
        if key not in s:
            raise MalformedPolicy(f"{where} has no {either}")
    actions = _string_list(s, action_key, where)
    bad = [a for a in actions if not _ACTION.fullmatch(a)]
    if bad:
        raise MalformedPolicy(f"{where}: {bad[0]!r} is not an action (<service>:<action> or *)")
    resources = _string_list(s, resource_key, where)
    bad = [r for r in resources if not _resource_valid(r)]
    if bad:
        raise MalformedPolicy(f"{where}: resource {bad[0]!r} is not an ARN or *")
    # <condition_block> = "Condition" : { <condition_type_string> : { <condition_key_string> :
    # <condition_value_list> }, … }; a value is a string, a number or a Boolean, or a list of them
    block = s.get("Condition", {})
    if not isinstance(block, Mapping):
        raise MalformedPolicy(f"{where}: Condition must be a JSON object")
    conditions = []
    for operator, tests in block.items():
        if not _operator_known(operator):
            raise MalformedPolicy(f"{where}: {operator} is not a condition operator")
        if not isinstance(tests, Mapping) or not tests:
            raise MalformedPolicy(f"{where}: condition {operator} must map condition keys to values")
        for key, values in tests.items():
            listed = values if isinstance(values, list) else [values]
            if not listed or not all(isinstance(v, (str, int, float, bool)) for v in listed):
                raise MalformedPolicy(f"{where}: condition {operator} {key}: values must be strings, numbers "
                                      "or Booleans")
            conditions.append((operator, str(key), tuple(_scalar(v) for v in listed)))
    return Statement(effect, actions, resources, tuple(conditions), not_action=action_key == "NotAction",
                     not_resource=resource_key == "NotResource", variables=version == VARIABLES_VERSION,
                     principal="Principal" in s or "NotPrincipal" in s)


def validate(document: str | Mapping[str, Any]) -> None:
    """Raise MalformedPolicy for a document AWS IoT refuses (`parse_document`)."""
    parse_document(document)


def parse(document: str | Mapping[str, Any]) -> tuple[Statement, ...]:
    """The statements the authoriser evaluates: `parse_document`'s, or PolicyError for a valid
    document using what the authoriser does not model (a Principal, a condition operator outside
    `_CONDITIONS`)."""
    statements = parse_document(document)
    for s in statements:
        if s.principal:
            raise PolicyError("policy element Principal/NotPrincipal is not modelled by the drill's authoriser")
        for operator, _key, _values in s.conditions:
            if operator not in _CONDITIONS:
                raise PolicyError(f"condition operator {operator} is not modelled by the drill's authoriser")
    return statements


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


def substitute(pattern: str, principal: Principal, *, variables: bool = True) -> str | None:
    """The pattern with its policy variables resolved; None when one cannot be. With `variables`
    False (a document whose Version is not 2012-10-17) `${…}` is literal text (VARIABLES_VERSION)."""
    if not variables:
        return pattern
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
        # NotAction / NotResource: the statement applies to every action / resource it does not name
        if any(_matches(a, action.value, ignore_case=True) for a in s.actions) == s.not_action:
            continue
        resources = [substitute(r, principal, variables=s.variables) for r in s.resources]
        if s.not_resource and None in resources:
            continue  # an unresolved variable in NotResource: the statement is not applied (either way)
        if any(r is not None and _matches(r, arn) for r in resources) == s.not_resource:
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


__all__ = ["Action", "Authoriser", "Decision", "MalformedPolicy", "PolicyError", "Principal", "Session", "Statement",
           "evaluate", "parse", "parse_document", "resource_arn", "substitute", "topic_filter_valid", "validate"]
